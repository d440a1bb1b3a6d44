//! Billing rules: the checkout request, redirect URLs. Pure functions.

use serde::Deserialize;
use serde_json::Value;

use super::{ApiError, ErrorCode};

/// What is bought: a subscription or a one-time credit pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurchaseType {
    Subscription,
    OneTime,
}

impl PurchaseType {
    /// The stored and wire spelling (also the package `type`).
    pub fn as_str(self) -> &'static str {
        match self {
            PurchaseType::Subscription => "subscription",
            PurchaseType::OneTime => "one_time",
        }
    }

    /// The reference function that starts this purchase.
    pub fn endpoint(self) -> &'static str {
        match self {
            PurchaseType::Subscription => "create-credit-checkout",
            PurchaseType::OneTime => "create-onetime-checkout",
        }
    }

    /// Stripe Checkout's `mode`.
    pub fn stripe_mode(self) -> &'static str {
        match self {
            PurchaseType::Subscription => "subscription",
            PurchaseType::OneTime => "payment",
        }
    }
}

/// Currencies a package may be priced in.
pub const CURRENCIES: &[&str] = &["usd", "cny", "hkd"];

/// A validated `create-*-checkout` body.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckoutRequest {
    pub package_id: String,
    pub return_to: String,
    pub currency: String,
}

/// The fields a checkout body may carry; others are ignored (as the reference does).
pub const CHECKOUT_FIELDS: &[&str] = &["packageId", "returnTo", "currency"];

#[derive(Deserialize)]
struct RawCheckout {
    #[serde(rename = "packageId")]
    package_id: Option<Value>,
    #[serde(rename = "returnTo")]
    return_to: Option<Value>,
    currency: Option<Value>,
}

impl CheckoutRequest {
    /// Parses a checkout body. `packageId` must be a UUID; an invalid `returnTo` or
    /// `currency` falls back to `/pricing` and `usd` as the reference does
    /// (create-credit-checkout/index.ts L27–28, L52–53); unknown fields are ignored.
    pub fn parse(raw: &Value) -> Result<CheckoutRequest, ApiError> {
        let body: RawCheckout = serde_json::from_value(raw.clone()).map_err(|e| {
            ApiError::with_message(ErrorCode::BAD_REQUEST, format!("invalid request body: {e}"))
        })?;
        let package_id = body
            .package_id
            .as_ref()
            .and_then(Value::as_str)
            .filter(|id| uuid::Uuid::parse_str(id).is_ok())
            .ok_or_else(|| ApiError::bad_field("packageId", "packageId must be a UUID"))?
            .to_ascii_lowercase();
        let return_to = return_to_or(body.return_to.as_ref(), "/pricing");
        let currency = match &body.currency {
            Some(Value::String(c)) if CURRENCIES.contains(&c.to_ascii_lowercase().as_str()) => {
                c.to_ascii_lowercase()
            }
            None | Some(Value::Null) => "usd".to_string(),
            Some(other) => {
                tracing::debug!(currency = %other, "unknown currency; falling back to usd");
                "usd".to_string()
            }
        };
        Ok(CheckoutRequest {
            package_id,
            return_to,
            currency,
        })
    }
}

/// `returnTo` when it is a path on the app itself, else `default` (the reference's
/// fallback; a `//host` or `/\\host` path is refused too, where the reference would
/// redirect off-site).
pub fn return_to_or(value: Option<&Value>, default: &str) -> String {
    match value {
        Some(Value::String(path)) if is_local_path(path) => path.clone(),
        None | Some(Value::Null) => default.to_string(),
        Some(other) => {
            tracing::debug!(return_to = %other, "invalid returnTo; falling back to {default}");
            default.to_string()
        }
    }
}

/// A path on the app itself: starts with one `/`, not `//` or `/\` (which browsers
/// read as another host), no control characters.
pub fn is_local_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && !path.starts_with("/\\")
        && !path.chars().any(char::is_control)
}

/// `<app_url><returnTo>?success=true` and `?canceled=true` (`&` when returnTo has a query).
pub fn redirect_urls(app_url: &str, return_to: &str) -> (String, String) {
    let base = format!("{}{}", app_url.trim_end_matches('/'), return_to);
    let sep = if return_to.contains('?') { '&' } else { '?' };
    (
        format!("{base}{sep}success=true"),
        format!("{base}{sep}canceled=true"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PKG: &str = "0190a000-0000-7000-8000-000000000001";

    #[test]
    fn defaults_and_checks() {
        let req = CheckoutRequest::parse(&json!({"packageId": PKG})).unwrap();
        assert_eq!(req.return_to, "/pricing");
        assert_eq!(req.currency, "usd");
        let req = CheckoutRequest::parse(
            &json!({"packageId": PKG, "returnTo": "/a?b=1", "currency": "HKD"}),
        )
        .unwrap();
        assert_eq!(
            (req.return_to.as_str(), req.currency.as_str()),
            ("/a?b=1", "hkd")
        );
        for (body, field) in [
            (json!({}), "packageId"),
            (json!({"packageId": "nope"}), "packageId"),
            (json!({"packageId": 5}), "packageId"),
        ] {
            let err = CheckoutRequest::parse(&body).unwrap_err();
            assert_eq!(err.code, ErrorCode::BAD_REQUEST);
            assert_eq!(err.details.unwrap()["field"], field, "{body}");
        }
        for body in [
            json!({"packageId": PKG, "returnTo": "https://evil.example", "currency": "eur"}),
            json!({"packageId": PKG, "returnTo": "//evil.example", "currency": 3}),
            json!({"packageId": PKG, "returnTo": 3, "extra": 1}),
        ] {
            let req = CheckoutRequest::parse(&body).unwrap();
            assert_eq!(
                (req.return_to.as_str(), req.currency.as_str()),
                ("/pricing", "usd")
            );
        }
    }

    #[test]
    fn redirect_urls_join_cleanly() {
        assert_eq!(
            redirect_urls("https://app.example/", "/pricing"),
            (
                "https://app.example/pricing?success=true".into(),
                "https://app.example/pricing?canceled=true".into()
            )
        );
        assert_eq!(
            redirect_urls("http://a", "/p?x=1").0,
            "http://a/p?x=1&success=true"
        );
    }
}
