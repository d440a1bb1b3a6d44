//! E-mail one-time codes and the signup-bonus address key: pure rules, no I/O.
//!
//! A code is 6 digits, kept only as an HMAC-SHA256 (keyed by the server's secret, bound
//! to the user and the purpose), lives [`CODE_TTL_MS`] by default and allows
//! [`MAX_ATTEMPTS`] wrong tries before it is spent.

use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::{Digest, Sha256};

/// Wrong tries a code allows; after them only a new code helps.
pub const MAX_ATTEMPTS: i64 = 5;

/// What a code confirms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A new account's address.
    Signup,
    /// A password reset.
    Recovery,
    /// A new address for an existing account.
    EmailChange,
}

impl Purpose {
    /// The stored name (`signup`, `recovery`, `email_change`).
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Signup => "signup",
            Purpose::Recovery => "recovery",
            Purpose::EmailChange => "email_change",
        }
    }

    /// GoTrue's `type` of `/verify` and `/resend` (`email` is the newer name of `signup`).
    pub fn parse(kind: &str) -> Option<Purpose> {
        match kind {
            "signup" | "email" => Some(Purpose::Signup),
            "recovery" => Some(Purpose::Recovery),
            "email_change" => Some(Purpose::EmailChange),
            _ => None,
        }
    }
}

/// A fresh 6-digit code.
pub fn new_code() -> String {
    format!("{:06}", rand::rng().random_range(0..1_000_000u32))
}

/// The stored form of `code` for `user_id` and `purpose`: hex HMAC-SHA256 under `key`.
pub fn code_hash(key: &[u8], user_id: &str, purpose: Purpose, code: &str) -> String {
    super::hex::encode(&mac(key, user_id, purpose, code).finalize().into_bytes())
}

fn mac(key: &[u8], user_id: &str, purpose: Purpose, code: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("{user_id}\n{}\n{code}", purpose.as_str()).as_bytes());
    mac
}

/// Whether `typed` (spaces ignored, as people paste codes) matches `stored`, in
/// constant time.
pub fn code_matches(
    key: &[u8],
    user_id: &str,
    purpose: Purpose,
    typed: &str,
    stored: &str,
) -> bool {
    let typed: String = typed.chars().filter(|c| !c.is_whitespace()).collect();
    if typed.len() != 6 || !typed.chars().all(|c| c.is_ascii_digit()) {
        return false;
    }
    match super::hex::decode(stored) {
        Some(bytes) => mac(key, user_id, purpose, &typed)
            .verify_slice(&bytes)
            .is_ok(),
        None => false,
    }
}

/// Why a presented code is refused, or that it is good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Good,
    /// Wrong digits: one try is spent.
    Wrong,
    /// Expired, or its tries are used up: nothing to spend.
    Dead,
}

/// Judges a code: `attempts` tries were spent already; `matches` says whether the
/// digits are right.
pub fn check(now: i64, expires_at: i64, attempts: i64, matches: bool) -> Check {
    if now >= expires_at || attempts >= MAX_ATTEMPTS {
        Check::Dead
    } else if matches {
        Check::Good
    } else {
        Check::Wrong
    }
}

/// The address as the signup bonus counts it: lower case, no `+tag`, and for Gmail no
/// dots, so `A.B+x@gmail.com` and `ab@googlemail.com` are one address.
pub fn bonus_address(email: &str) -> String {
    let email = email.trim().to_ascii_lowercase();
    let Some((local, domain)) = email.rsplit_once('@') else {
        return email;
    };
    let local = local.split('+').next().unwrap_or(local);
    let (local, domain) = if domain == "gmail.com" || domain == "googlemail.com" {
        (local.replace('.', ""), "gmail.com")
    } else {
        (local.to_string(), domain)
    };
    format!("{local}@{domain}")
}

/// The key of [`bonus_address`] in `signup_bonus_claims`: hex SHA-256.
pub fn bonus_address_hash(email: &str) -> String {
    super::hex::encode(&Sha256::digest(bonus_address(email).as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits_and_stored_hashed() {
        let code = new_code();
        assert_eq!(code.len(), 6);
        assert!(code.chars().all(|c| c.is_ascii_digit()));
        let stored = code_hash(b"k", "u1", Purpose::Signup, &code);
        assert_eq!(stored.len(), 64, "an HMAC, not the code");
        assert!(code_matches(b"k", "u1", Purpose::Signup, &code, &stored));
        let spaced = format!("{} {}", &code[..3], &code[3..]);
        assert!(code_matches(b"k", "u1", Purpose::Signup, &spaced, &stored));
        assert!(!code_matches(b"k", "u2", Purpose::Signup, &code, &stored));
        assert!(!code_matches(b"k", "u1", Purpose::Recovery, &code, &stored));
        assert!(!code_matches(
            b"other",
            "u1",
            Purpose::Signup,
            &code,
            &stored
        ));
        assert!(!code_matches(
            b"k",
            "u1",
            Purpose::Signup,
            "abcdef",
            &stored
        ));
    }

    #[test]
    fn expiry_and_tries() {
        assert_eq!(check(10, 20, 0, true), Check::Good);
        assert_eq!(check(10, 20, 4, false), Check::Wrong);
        assert_eq!(check(10, 20, MAX_ATTEMPTS, true), Check::Dead);
        assert_eq!(check(20, 20, 0, true), Check::Dead);
    }

    #[test]
    fn bonus_addresses_fold_tags_case_and_gmail_dots() {
        assert_eq!(bonus_address(" A.B+promo@GMail.com"), "ab@gmail.com");
        assert_eq!(bonus_address("ab@googlemail.com"), "ab@gmail.com");
        assert_eq!(bonus_address("a.b+x@example.com"), "a.b@example.com");
        assert_eq!(
            bonus_address_hash("a+1@example.com"),
            bonus_address_hash("A@example.com")
        );
    }
}
