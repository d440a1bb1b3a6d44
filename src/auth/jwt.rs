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

/// The role of a project key: the service role (reads every row of `/rest/v1`) or the
/// public anon role.
pub const SERVICE_ROLE: &str = "service_role";
/// The role of the public anon key (`atelier keys` prints one when none is configured).
pub const ANON_ROLE: &str = "anon";

/// Claims of a project key, as Supabase issues them: no user, no audience.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyClaims {
    pub iss: String,
    pub role: String,
    pub iat: i64,
    pub exp: i64,
}

/// Signs and verifies tokens with one secret.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    key_validation: Validation,
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
        let mut key_validation = Validation::new(Algorithm::HS256);
        key_validation.algorithms = vec![Algorithm::HS256];
        key_validation.validate_aud = false;
        key_validation.set_required_spec_claims(&["exp"]);
        key_validation.leeway = 0;
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            key_validation,
        }
    }

    /// A project key for `role` ([`SERVICE_ROLE`] or [`ANON_ROLE`]) valid for `days`.
    pub fn sign_key(&self, role: &str, days: i64) -> Result<String, String> {
        let iat = crate::domain::time::now_ms() / 1000;
        let claims = KeyClaims {
            iss: "atelier".into(),
            role: role.into(),
            iat,
            exp: iat + days * 86_400,
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(|e| e.to_string())
    }

    /// The role of a project key (signature, algorithm and expiry checked), or an error
    /// for anything else, user tokens included (they carry `aud` and `sub`).
    pub fn verify_key(&self, token: &str) -> Result<String, String> {
        let data = decode::<serde_json::Value>(token, &self.decoding, &self.key_validation)
            .map_err(|e| e.to_string())?;
        let claims = data.claims;
        if claims.get("sub").is_some() || claims.get("aud").is_some() {
            return Err("a user token is not a project key".into());
        }
        match claims.get("role").and_then(|r| r.as_str()) {
            Some(role) if role == SERVICE_ROLE || role == ANON_ROLE => Ok(role.to_string()),
            _ => Err("not a project key role".into()),
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
    fn project_keys_are_not_user_tokens() {
        let keys = JwtKeys::new(b"0123456789abcdef0123456789abcdef");
        let service = keys.sign_key(SERVICE_ROLE, 1).unwrap();
        assert_eq!(keys.verify_key(&service).unwrap(), SERVICE_ROLE);
        assert!(
            keys.verify(&service).is_err(),
            "no user behind a project key"
        );
        let user = keys.sign(&claims(60)).unwrap();
        assert!(
            keys.verify_key(&user).is_err(),
            "a user token is never a key"
        );
        let other = JwtKeys::new(b"another-secret-another-secret-xx");
        assert!(keys
            .verify_key(&other.sign_key(SERVICE_ROLE, 1).unwrap())
            .is_err());
        assert!(keys
            .verify_key(&keys.sign_key(SERVICE_ROLE, -1).unwrap())
            .is_err());
        assert!(keys
            .verify_key(&keys.sign_key("admin", 1).unwrap())
            .is_err());
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
