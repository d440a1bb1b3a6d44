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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheckout {
    #[serde(rename = "packageId")]
    package_id: Option<Value>,
    #[serde(rename = "returnTo")]
    return_to: Option<Value>,
    currency: Option<Value>,
}

impl CheckoutRequest {
    /// Parses and checks a checkout body (unknown fields are refused).
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
        let return_to = match &body.return_to {
            None | Some(Value::Null) => "/pricing".to_string(),
            Some(Value::String(path)) if is_local_path(path) => path.clone(),
            Some(_) => {
                return Err(ApiError::bad_field(
                    "returnTo",
                    "returnTo must be a path starting with /",
                ))
            }
        };
        let currency = match &body.currency {
            None | Some(Value::Null) => "usd".to_string(),
            Some(Value::String(c)) if CURRENCIES.contains(&c.to_ascii_lowercase().as_str()) => {
                c.to_ascii_lowercase()
            }
            Some(_) => {
                return Err(ApiError::bad_field(
                    "currency",
                    "currency must be usd, cny or hkd",
                ))
            }
        };
        Ok(CheckoutRequest {
            package_id,
            return_to,
            currency,
        })
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
            (
                json!({"packageId": PKG, "returnTo": "https://evil.example"}),
                "returnTo",
            ),
            (
                json!({"packageId": PKG, "returnTo": "//evil.example"}),
                "returnTo",
            ),
            (json!({"packageId": PKG, "returnTo": 3}), "returnTo"),
            (json!({"packageId": PKG, "currency": "eur"}), "currency"),
        ] {
            let err = CheckoutRequest::parse(&body).unwrap_err();
            assert_eq!(err.code, ErrorCode::BAD_REQUEST);
            assert_eq!(err.details.unwrap()["field"], field, "{body}");
        }
        let err = CheckoutRequest::parse(&json!({"packageId": PKG, "extra": 1})).unwrap_err();
        assert_eq!(err.code, ErrorCode::BAD_REQUEST);
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
