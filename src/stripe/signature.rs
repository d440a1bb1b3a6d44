//! `Stripe-Signature` verification: HMAC-SHA256 over `"{t}.{raw body}"` keyed by the
//! whole `whsec_…` string, any of several `v1` entries, constant-time compare.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a signature was refused (all answered as `STRIPE_SIGNATURE_INVALID`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no Stripe-Signature header")]
    Missing,
    #[error("malformed Stripe-Signature header")]
    Malformed,
    #[error("no v1 signature matches")]
    NoMatch,
    #[error("signature timestamp outside the tolerance")]
    TooOld,
}

/// Checks `header` against `payload` at time `now` (unix seconds).
pub fn verify(
    payload: &[u8],
    header: Option<&str>,
    secret: &str,
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let header = header
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or(SignatureError::Missing)?;
    let mut timestamp: Option<i64> = None;
    let mut signatures: Vec<Vec<u8>> = Vec::new();
    for item in header.split(',') {
        let Some((key, value)) = item.trim().split_once('=') else {
            continue;
        };
        match key {
            "t" => timestamp = Some(value.parse().map_err(|_| SignatureError::Malformed)?),
            // A v1 that is not hex can never match; skip it like the official libraries.
            "v1" => signatures.extend(crate::domain::hex::decode(value)),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let mut matched = false;
    for signature in &signatures {
        // `verify_slice` compares in constant time.
        if mac(secret, timestamp, payload)
            .verify_slice(signature)
            .is_ok()
        {
            matched = true;
        }
    }
    if !matched {
        return Err(SignatureError::NoMatch);
    }
    if (now - timestamp).abs() > tolerance_secs {
        return Err(SignatureError::TooOld);
    }
    Ok(())
}

/// The hex `v1` signature of `payload` at `timestamp`.
pub fn compute(payload: &[u8], secret: &str, timestamp: i64) -> String {
    crate::domain::hex::encode(&mac(secret, timestamp, payload).finalize().into_bytes())
}

/// A whole `Stripe-Signature` header value, as Stripe would send it.
pub fn header(payload: &[u8], secret: &str, timestamp: i64) -> String {
    format!("t={timestamp},v1={}", compute(payload, secret, timestamp))
}

fn mac(secret: &str, timestamp: i64, payload: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    // Generated once with the official library (`pip install stripe`, stripe-python 16.1.0):
    //   import stripe
    //   sig = stripe.WebhookSignature._compute_signature(f"{T}.{PAYLOAD}", SECRET)
    //   header = f"t={T},v1={sig}"
    // and checked with stripe.Webhook.construct_event(PAYLOAD, header, SECRET, tolerance=…).
    const VECTOR_SECRET: &str = "whsec_test_secret";
    const VECTOR_T: i64 = 1_700_000_000;
    const VECTOR_PAYLOAD: &str = r#"{"id":"evt_test","object":"event"}"#;
    const VECTOR_HEADER: &str =
        "t=1700000000,v1=8042376f6ca064adbe037642a718227dfd59047137eb49497a54c49eb0cfb724";

    fn check(
        payload: &str,
        header: Option<&str>,
        secret: &str,
        now: i64,
    ) -> Result<(), SignatureError> {
        verify(payload.as_bytes(), header, secret, now, 300)
    }

    #[test]
    fn the_official_test_vector_verifies() {
        assert_eq!(
            check(VECTOR_PAYLOAD, Some(VECTOR_HEADER), VECTOR_SECRET, VECTOR_T),
            Ok(())
        );
        assert_eq!(
            header(VECTOR_PAYLOAD.as_bytes(), VECTOR_SECRET, VECTOR_T),
            VECTOR_HEADER
        );
    }

    /// A second vector from the same library, with an event-shaped body.
    #[test]
    fn an_event_shaped_vector_verifies() {
        let payload = r#"{"id":"evt_1Qvector","object":"event","type":"checkout.session.completed","data":{"object":{"id":"cs_test_a1"}}}"#;
        let header =
            "t=1732500000,v1=7a83362314523c99718034620c49b4e21c3fc01f9920103640d002295ea15f2a";
        assert_eq!(
            check(payload, Some(header), "whsec_9f2c1e7a4b", 1_732_500_000),
            Ok(())
        );
    }

    #[test]
    fn tampering_wrong_secret_and_age_are_refused() {
        let tampered = VECTOR_PAYLOAD.replace("evt_test", "evt_tesu");
        assert_eq!(
            check(&tampered, Some(VECTOR_HEADER), VECTOR_SECRET, VECTOR_T),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            check(VECTOR_PAYLOAD, Some(VECTOR_HEADER), "whsec_other", VECTOR_T),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            check(
                VECTOR_PAYLOAD,
                Some(VECTOR_HEADER),
                VECTOR_SECRET,
                VECTOR_T + 301
            ),
            Err(SignatureError::TooOld)
        );
        assert_eq!(
            check(
                VECTOR_PAYLOAD,
                Some(VECTOR_HEADER),
                VECTOR_SECRET,
                VECTOR_T + 300
            ),
            Ok(())
        );
    }

    #[test]
    fn missing_and_malformed_headers_are_refused() {
        let v = |h: &str| check(VECTOR_PAYLOAD, Some(h), VECTOR_SECRET, VECTOR_T);
        assert_eq!(
            check(VECTOR_PAYLOAD, None, VECTOR_SECRET, VECTOR_T),
            Err(SignatureError::Missing)
        );
        assert_eq!(v(""), Err(SignatureError::Missing));
        assert_eq!(v("garbage"), Err(SignatureError::Malformed));
        assert_eq!(v("t=abc,v1=00"), Err(SignatureError::Malformed));
        assert_eq!(v("v1=8042376f"), Err(SignatureError::Malformed));
        let v0_only = VECTOR_HEADER.replace("v1=", "v0=");
        assert_eq!(v(&v0_only), Err(SignatureError::Malformed));
    }

    #[test]
    fn any_v1_entry_may_match() {
        let good = compute(VECTOR_PAYLOAD.as_bytes(), VECTOR_SECRET, VECTOR_T);
        let two = format!("t={VECTOR_T},v1={},v1={good},v0=zz", "ab".repeat(32));
        assert_eq!(
            check(VECTOR_PAYLOAD, Some(&two), VECTOR_SECRET, VECTOR_T),
            Ok(())
        );
        let odd = format!("t={VECTOR_T},v1=xyz,v1={good}");
        assert_eq!(
            check(VECTOR_PAYLOAD, Some(&odd), VECTOR_SECRET, VECTOR_T),
            Ok(())
        );
    }
}
