//! The form fields Atelier sends to Stripe (bracket keys, in a fixed order).

use crate::domain::billing::PurchaseType;

/// What a Checkout Session is created from.
#[derive(Debug, Clone)]
pub struct CheckoutParams<'a> {
    pub purchase: PurchaseType,
    pub price_id: &'a str,
    pub success_url: &'a str,
    pub cancel_url: &'a str,
    pub user_id: &'a str,
    pub email: &'a str,
    pub package_id: &'a str,
    /// `usd`, `cny` or `hkd`: picks the payment methods of a one-time checkout.
    pub currency: &'a str,
    /// The user's Stripe customer, reused when known (else `customer_email`).
    pub customer_id: Option<&'a str>,
}

/// `POST /v1/checkout/sessions` fields.
pub fn checkout(p: &CheckoutParams<'_>) -> Vec<(String, String)> {
    let mut form: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, v: &str| form.push((k.to_string(), v.to_string()));
    put("mode", p.purchase.stripe_mode());
    let one_time = p.purchase == PurchaseType::OneTime;
    if one_time {
        for (i, method) in payment_methods(p.currency).iter().enumerate() {
            put(&format!("payment_method_types[{i}]"), method);
        }
    }
    put("line_items[0][price]", p.price_id);
    put("line_items[0][quantity]", "1");
    put("success_url", p.success_url);
    put("cancel_url", p.cancel_url);
    put("allow_promotion_codes", "true");
    if one_time && wechat_pay(p.currency) {
        // WeChat Pay in Checkout needs the client it runs in.
        put("payment_method_options[wechat_pay][client]", "web");
    }
    put("client_reference_id", p.user_id);
    match p.customer_id {
        Some(customer) => put("customer", customer),
        None => put("customer_email", p.email),
    }
    let metadata = [
        ("user_id", p.user_id),
        ("package_id", p.package_id),
        ("purchase_type", p.purchase.as_str()),
        ("currency", p.currency),
    ];
    for (k, v) in metadata {
        put(&format!("metadata[{k}]"), v);
    }
    // Session metadata is not copied to the subscription / payment intent; later
    // invoice and refund events only carry these.
    let nested = match p.purchase {
        PurchaseType::Subscription => "subscription_data",
        PurchaseType::OneTime => "payment_intent_data",
    };
    for (k, v) in metadata {
        put(&format!("{nested}[metadata][{k}]"), v);
    }
    if p.purchase == PurchaseType::OneTime && p.customer_id.is_none() {
        // A customer for the portal and for refunds to point at.
        put("customer_creation", "always");
    }
    form
}

/// WeChat Pay is offered for the currencies it settles in (as the reference does).
fn wechat_pay(currency: &str) -> bool {
    matches!(currency, "cny" | "hkd")
}

/// The `payment_method_types` of a one-time checkout: card and Alipay, plus WeChat Pay
/// for cny and hkd.
pub fn payment_methods(currency: &str) -> &'static [&'static str] {
    if wechat_pay(currency) {
        &["card", "alipay", "wechat_pay"]
    } else {
        &["card", "alipay"]
    }
}

/// `POST /v1/billing_portal/sessions` fields.
pub fn portal(customer_id: &str, return_url: &str) -> Vec<(String, String)> {
    vec![
        ("customer".into(), customer_id.into()),
        ("return_url".into(), return_url.into()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_form_carries_metadata_twice() {
        let form = checkout(&CheckoutParams {
            purchase: PurchaseType::Subscription,
            price_id: "price_1",
            success_url: "s",
            cancel_url: "c",
            user_id: "u",
            email: "e@x",
            package_id: "p",
            currency: "usd",
            customer_id: Some("cus_1"),
        });
        let get = |k: &str| {
            form.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("mode"), Some("subscription"));
        assert_eq!(get("customer"), Some("cus_1"));
        assert_eq!(get("customer_email"), None);
        assert_eq!(get("subscription_data[metadata][user_id]"), Some("u"));
        assert_eq!(get("metadata[purchase_type]"), Some("subscription"));
        assert_eq!(get("customer_creation"), None);
        assert_eq!(get("allow_promotion_codes"), Some("true"));
        assert_eq!(get("payment_method_types[0]"), None);
    }
}
