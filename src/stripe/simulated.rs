//! The simulated Stripe: ids, the events Stripe would send, and the checkout page.
//! The events go through the same signature check and handlers as real ones.

use serde_json::{json, Value};

use crate::db::billing::{CheckoutSession, Payment};

/// A new simulated id with Stripe's prefix, e.g. `cs_sim_0190…`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_sim_{}", uuid::Uuid::now_v7().simple())
}

/// A whole event envelope around `object`, as Stripe would send it.
pub fn event(kind: &str, object: Value, created: i64) -> Value {
    json!({
        "id": new_id("evt"),
        "object": "event",
        "type": kind,
        "api_version": "2025-03-31.basil",
        "created": created,
        "livemode": false,
        "data": {"object": object},
        "request": {"id": null, "idempotency_key": null},
    })
}

/// `checkout.session.completed` for a paid session.
pub fn checkout_completed(
    session: &CheckoutSession,
    email: &str,
    customer_id: &str,
    created: i64,
) -> Value {
    let subscription = session.purchase_type == "subscription";
    let metadata = json!({
        "user_id": session.user_id,
        "package_id": session.package_id,
        "purchase_type": session.purchase_type,
    });
    let object = json!({
        "id": session.id,
        "object": "checkout.session",
        "mode": if subscription { "subscription" } else { "payment" },
        "status": "complete",
        "payment_status": "paid",
        "customer": customer_id,
        "customer_details": {"email": email},
        "client_reference_id": session.user_id,
        "subscription": if subscription { Value::from(new_id("sub")) } else { Value::Null },
        "invoice": if subscription { Value::from(new_id("in")) } else { Value::Null },
        "payment_intent": if subscription { Value::Null } else { Value::from(new_id("pi")) },
        "amount_total": session.amount,
        "currency": session.currency,
        "metadata": metadata,
    });
    event("checkout.session.completed", object, created)
}

/// `charge.refunded` for a payment, `refunded_total` (cumulative) of its amount refunded.
pub fn charge_refunded(payment: &Payment, refunded_total: i64, created: i64) -> Value {
    let object = json!({
        "id": new_id("ch"),
        "object": "charge",
        "amount": payment.amount,
        "amount_refunded": refunded_total,
        "refunded": refunded_total >= payment.amount,
        "currency": payment.currency,
        "payment_intent": payment.payment_intent_id,
        "invoice": payment.invoice_id,
        "metadata": {"user_id": payment.user_id},
    });
    event("charge.refunded", object, created)
}

/// The webhook secret of simulated mode when none is configured: derived from the JWT
/// secret, so it is stable across restarts and unknown outside this installation.
pub fn derived_webhook_secret(jwt_secret: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(jwt_secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(b"atelier simulated stripe webhook secret");
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("whsec_sim_{hex}")
}

/// A small page for the simulated customer portal.
pub fn portal_page(customer_id: &str, plan: &str, status: &str) -> String {
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Billing portal (simulated)</title></head>
<body><h1>Simulated billing portal</h1>
<p>Customer <code>{}</code>: plan <b>{}</b>, status <b>{}</b>.</p>
<p>Use <code>atelier stripe trigger</code> to simulate renewals, cancellations and refunds.</p>
</body></html>
"#,
        escape(customer_id),
        escape(plan),
        escape(status)
    )
}

/// A renewal invoice of a subscription (basil shape): `invoice.paid` or
/// `invoice.payment_failed`.
pub fn renewal_invoice(
    kind: &str,
    subscription_id: &str,
    customer_id: Option<&str>,
    user_id: &str,
    package_id: &str,
    amount: i64,
    created: i64,
) -> Value {
    let object = json!({
        "id": new_id("in"),
        "object": "invoice",
        "billing_reason": "subscription_cycle",
        "status": if kind == "invoice.paid" { "paid" } else { "open" },
        "customer": customer_id,
        "amount_due": amount,
        "amount_paid": if kind == "invoice.paid" { amount } else { 0 },
        "currency": "usd",
        "parent": {"type": "subscription_details", "subscription_details": {
            "subscription": subscription_id,
            "metadata": {"user_id": user_id, "package_id": package_id}}},
        "lines": {"data": [{"period": {"start": created, "end": created + 30 * 24 * 3600}}]},
        "payments": {"data": [{"payment": {"type": "payment_intent",
            "payment_intent": new_id("pi")}}]},
    });
    event(kind, object, created)
}

/// `customer.subscription.updated` / `.deleted` with a Stripe status.
pub fn subscription_event(
    kind: &str,
    subscription_id: &str,
    customer_id: Option<&str>,
    user_id: &str,
    status: &str,
    created: i64,
) -> Value {
    let object = json!({
        "id": subscription_id,
        "object": "subscription",
        "status": status,
        "customer": customer_id,
        "metadata": {"user_id": user_id},
        "items": {"data": [{"current_period_end": created + 30 * 24 * 3600}]},
    });
    event(kind, object, created)
}

/// Minor units as money text, e.g. `20.00 USD`.
pub fn money(amount: i64, currency: &str) -> String {
    format!(
        "{}.{:02} {}",
        amount / 100,
        amount % 100,
        currency.to_ascii_uppercase()
    )
}

/// The checkout page: package, price, Pay and Cancel.
pub fn checkout_page(session: &CheckoutSession, package_name: &str, credits: i64) -> String {
    let id = escape(&session.id);
    let what = if session.purchase_type == "subscription" {
        "subscription, renews monthly"
    } else {
        "one-time credit pack"
    };
    let state = match session.status.as_str() {
        "open" => format!(
            r#"<form method="post" action="/dev/checkout/{id}/pay"><button type="submit">Pay</button></form>
<form method="post" action="/dev/checkout/{id}/cancel"><button type="submit">Cancel</button></form>"#
        ),
        other => format!("<p>This checkout is {}.</p>", escape(other)),
    };
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Checkout (simulated)</title></head>
<body>
<h1>Simulated checkout</h1>
<p>No money moves: Atelier runs without Stripe keys.</p>
<table>
<tr><th>Package</th><td class="package">{name}</td></tr>
<tr><th>Kind</th><td>{what}</td></tr>
<tr><th>Credits</th><td class="credits">{credits}</td></tr>
<tr><th>Price</th><td class="price">{price}</td></tr>
</table>
{state}
</body></html>
"#,
        name = escape(package_name),
        price = escape(&money(session.amount, &session.currency)),
    )
}

/// HTML-escapes text.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(kind: &str) -> CheckoutSession {
        CheckoutSession {
            id: "cs_sim_1".into(),
            user_id: "u1".into(),
            package_id: "p1".into(),
            purchase_type: kind.into(),
            currency: "usd".into(),
            amount: 2000,
            success_url: "http://app/pricing?success=true".into(),
            cancel_url: "http://app/pricing?canceled=true".into(),
            status: "open".into(),
            created_at: 0,
        }
    }

    #[test]
    fn completed_events_have_stripes_shape() {
        let ev = checkout_completed(&session("subscription"), "a@b.c", "cus_1", 77);
        let o = &ev["data"]["object"];
        assert_eq!(ev["type"], "checkout.session.completed");
        assert_eq!(ev["created"], 77);
        assert_eq!(o["mode"], "subscription");
        assert!(o["subscription"].as_str().unwrap().starts_with("sub_sim_"));
        assert!(o["payment_intent"].is_null());
        assert_eq!(o["metadata"]["package_id"], "p1");
        let ev = checkout_completed(&session("one_time"), "a@b.c", "cus_1", 77);
        assert_eq!(ev["data"]["object"]["mode"], "payment");
        assert!(ev["data"]["object"]["subscription"].is_null());
    }

    #[test]
    fn the_page_escapes_and_offers_pay_only_when_open() {
        let mut s = session("one_time");
        let page = checkout_page(&s, "<Pack>", 250);
        assert!(page.contains("&lt;Pack&gt;") && page.contains("20.00 USD"));
        assert!(page.contains("/dev/checkout/cs_sim_1/pay"));
        s.status = "complete".into();
        assert!(!checkout_page(&s, "Pack", 250).contains("/pay"));
    }
}
