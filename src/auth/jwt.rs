//! HS256 access tokens: the claims of API.md §1, verified for signature, algorithm,
//! audience and expiry.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The audience of every user token.
pub const AUDIENCE: &str = "authenticated";

/// Claims carried by an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub email: String,
    pub role: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub session_id: String,
    /// A random id per token (RFC 7519 `jti`): a token renewed within the same second is
    /// still a new token.
    #[serde(default)]
    pub jti: String,
}

/// Signs and verifies tokens with one secret.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKeys(<redacted>)")
    }
}

impl JwtKeys {
    /// Keys from the shared secret.
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        validation.leeway = 0;
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// Signs the claims.
    pub fn sign(&self, claims: &Claims) -> Result<String, String> {
        encode(&Header::new(Algorithm::HS256), claims, &self.encoding).map_err(|e| e.to_string())
    }

    /// Verifies a token and returns its claims; any defect is an error.
    pub fn verify(&self, token: &str) -> Result<Claims, String> {
        decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn claims(exp_offset: i64) -> Claims {
        let now = crate::domain::time::now_ms() / 1000;
        Claims {
            sub: "u1".into(),
            email: "a@b.c".into(),
            role: "authenticated".into(),
            aud: AUDIENCE.into(),
            iat: now,
            exp: now + exp_offset,
            session_id: "s1".into(),
            jti: "t1".into(),
        }
    }

    #[test]
    fn round_trip() {
        let keys = JwtKeys::new(b"0123456789abcdef0123456789abcdef");
        let token = keys.sign(&claims(60)).unwrap();
        assert_eq!(keys.verify(&token).unwrap().sub, "u1");
    }

    #[test]
    fn refuses_expired_wrong_secret_wrong_audience_and_alg_none() {
        let keys = JwtKeys::new(b"0123456789abcdef0123456789abcdef");
        assert!(keys.verify(&keys.sign(&claims(-5)).unwrap()).is_err());
        let other = JwtKeys::new(b"another-secret-another-secret-xx");
        assert!(keys.verify(&other.sign(&claims(60)).unwrap()).is_err());
        let mut wrong_aud = claims(60);
        wrong_aud.aud = "service".into();
        assert!(keys.verify(&keys.sign(&wrong_aud).unwrap()).is_err());
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none = format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(serde_json::to_vec(&claims(60)).unwrap())
        );
        assert!(keys.verify(&none).is_err());
        assert!(keys.verify("garbage").is_err());
    }
}
