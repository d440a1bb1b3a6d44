use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use base64::Engine;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use rand::RngCore;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::jwt::{Claims, JwtKeys, AUDIENCE};
use super::{password, AuthError};
use crate::actors::ledger::{LedgerHandle, OpenAccountError};
use crate::config::AuthConfig;
use crate::db::accounts::{self, User};
use crate::db::sessions::{self, RefreshLookup};
use crate::db::{new_id, Db};
use crate::domain::time::now_ms;

/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 8;
const MAX_PASSWORD_LEN: usize = 1024;
const MAX_EMAIL_LEN: usize = 254;

/// A signed-in session as handed to the client.
#[derive(Debug, Clone)]
pub struct Session {
    pub access_token: String,
    pub expires_in: u64,
    pub expires_at: i64,
    pub refresh_token: String,
    pub user: User,
}

/// Accounts, logins and token checks.
#[derive(Clone)]
pub struct AuthService {
    pub(super) db: Db,
    pub(super) ledger: LedgerHandle,
    keys: JwtKeys,
    pub(super) config: AuthConfig,
    limiter: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    pub(super) hashing: password::HashPool,
    /// The HMAC key of one-time codes (derived from the signing secret).
    pub(super) code_key: Arc<Vec<u8>>,
    /// One code mail per address per `auth.email_interval_secs` (none when 0).
    pub(super) mail_limiter: Option<Arc<DefaultKeyedRateLimiter<String>>>,
}

/// What a signup came to.
#[derive(Debug, Clone)]
pub enum Signup {
    /// Signed in at once (`auth.confirm_email` off).
    Session(Session),
    /// Created, waiting for its mailed code; GoTrue answers the bare user.
    Pending(User),
}

impl AuthService {
    /// A service signing with `secret`.
    pub fn new(db: Db, ledger: LedgerHandle, secret: &[u8], config: AuthConfig) -> Self {
        let per_minute = NonZeroU32::new(config.rate_limit_per_minute).unwrap_or(NonZeroU32::MIN);
        let code_key = Sha256::new()
            .chain_update(b"atelier one-time codes\n")
            .chain_update(secret)
            .finalize()
            .to_vec();
        let mail_limiter =
            Quota::with_period(std::time::Duration::from_secs(config.email_interval_secs))
                .map(|quota| Arc::new(RateLimiter::keyed(quota)));
        AuthService {
            code_key: Arc::new(code_key),
            mail_limiter,
            db,
            ledger,
            keys: JwtKeys::new(secret),
            limiter: Arc::new(RateLimiter::keyed(Quota::per_minute(per_minute))),
            hashing: password::HashPool::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
            config,
        }
    }

    /// The signing keys (tests and tools mint tokens with them).
    pub fn keys(&self) -> &JwtKeys {
        &self.keys
    }

    /// Counts one signup/token request from `ip` against the per-IP limit.
    pub fn check_rate(&self, ip: Option<IpAddr>) -> Result<(), AuthError> {
        match ip {
            Some(ip) if self.limiter.check_key(&ip).is_err() => Err(AuthError::rate_limited()),
            _ => Ok(()),
        }
    }

    /// Creates an account and signs it in (with its signup bonus), or, with
    /// `auth.confirm_email`, creates it unconfirmed and mails its code.
    pub async fn signup(&self, email: &str, pass: &str, data: Value) -> Result<Signup, AuthError> {
        if !self.config.allow_signup {
            return Err(AuthError::signup_disabled());
        }
        if self.config.confirm_email {
            return self
                .signup_unconfirmed(email, pass, data)
                .await
                .map(Signup::Pending);
        }
        let user = self
            .create_account(email, pass, data, "authenticated")
            .await?;
        self.start_session(user).await.map(Signup::Session)
    }

    /// Creates a confirmed account with `role` and grants the signup bonus (once per
    /// address), in one transaction.
    pub async fn create_account(
        &self,
        email: &str,
        pass: &str,
        data: Value,
        role: &str,
    ) -> Result<User, AuthError> {
        let email = normalize_email(email)?;
        let hash = self.hash_password(pass).await?;
        let user = new_user(email, role, data, true);
        let user = self
            .ledger
            .open_account(user, hash, self.config.signup_bonus_credits)
            .await
            .map_err(|e| match e {
                OpenAccountError::EmailTaken => AuthError::user_already_exists(),
                OpenAccountError::Failed(err) => AuthError::from(err),
            })?;
        tracing::info!(user_id = %user.id, role, "account created");
        Ok(user)
    }

    /// Checks and hashes a new password (off the runtime).
    pub(super) async fn hash_password(&self, pass: &str) -> Result<String, AuthError> {
        check_password(pass)?;
        let pass = pass.to_string();
        self.hashing
            .run(move || password::hash(&pass))
            .await
            .ok_or_else(AuthError::internal)?
            .map_err(|e| {
                tracing::error!(error = %e, "password hashing failed");
                AuthError::internal()
            })
    }

    /// The password grant.
    pub async fn login_password(&self, email: &str, pass: &str) -> Result<Session, AuthError> {
        let email = email.trim().to_ascii_lowercase();
        if email.is_empty() || pass.is_empty() {
            return Err(AuthError::validation_failed(
                "email and password are required",
            ));
        }
        if pass.len() > MAX_PASSWORD_LEN {
            return Err(AuthError::invalid_credentials());
        }
        let found = self
            .db
            .read(move |conn| accounts::find_login(conn, &email))
            .await?;
        let pass = pass.to_string();
        let user = self
            .hashing
            .run(move || match found {
                Some((user, hash)) if password::verify(&pass, &hash) => Some(user),
                Some(_) => None,
                None => {
                    password::verify_dummy(&pass);
                    None
                }
            })
            .await
            .ok_or_else(AuthError::internal)?
            .ok_or_else(AuthError::invalid_credentials)?;
        if user.email_confirmed_at.is_none() {
            return Err(AuthError::email_not_confirmed());
        }
        self.start_session(user).await
    }

    /// The refresh-token grant: spends the token and issues the next one of the family.
    /// Presenting a spent token revokes the whole session.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Session, AuthError> {
        if refresh_token.is_empty() || refresh_token.len() > 256 {
            return Err(AuthError::refresh_token_not_found());
        }
        let hash = token_hash(refresh_token);
        let max_age_ms = (self.config.refresh_token_ttl_secs as i64).saturating_mul(1000);
        let next = random_token();
        let next_hash = token_hash(&next);
        let outcome = self
            .db
            .write(move |conn| {
                let now = now_ms();
                let lookup = sessions::spend_refresh_token(conn, &hash, now, max_age_ms)?;
                match &lookup {
                    RefreshLookup::AlreadyUsed { session_id } => {
                        sessions::revoke_session(conn, session_id, "refresh token reused", now)?;
                    }
                    RefreshLookup::Spent {
                        session_id,
                        user_id,
                    } => {
                        sessions::insert_refresh_token(conn, &next_hash, session_id, now)?;
                        let user = accounts::find_by_id(conn, user_id)?;
                        return Ok::<_, AuthError>((lookup.clone(), user));
                    }
                    RefreshLookup::NotFound => {}
                }
                Ok((lookup, None))
            })
            .await?;
        match outcome {
            (RefreshLookup::Spent { session_id, .. }, Some(user)) => {
                self.session_response(user, session_id, next)
            }
            (RefreshLookup::AlreadyUsed { session_id }, _) => {
                tracing::warn!(%session_id, "refresh token reused; session revoked");
                Err(AuthError::refresh_token_already_used())
            }
            _ => Err(AuthError::refresh_token_not_found()),
        }
    }

    /// Revokes the caller's session (`local`), every session (`global`, the default) or
    /// every other one (`others`).
    pub async fn logout(&self, claims: &Claims, scope: &str) -> Result<(), AuthError> {
        let (user_id, session_id) = (claims.sub.clone(), claims.session_id.clone());
        let scope = scope.to_string();
        self.db
            .write(move |conn| {
                let now = now_ms();
                match scope.as_str() {
                    "local" => sessions::revoke_session(conn, &session_id, "logout", now),
                    "others" => sessions::revoke_user_sessions(
                        conn,
                        &user_id,
                        Some(&session_id),
                        "logout others",
                        now,
                    ),
                    _ => sessions::revoke_user_sessions(conn, &user_id, None, "logout", now),
                }
            })
            .await?;
        Ok(())
    }

    /// Verifies a bearer token: signature, algorithm, audience, expiry, a live session
    /// and an existing user. The error text is for logs, not for clients.
    pub async fn authenticate(&self, token: &str) -> Result<(User, Claims), String> {
        if self.config.anon_key.as_deref() == Some(token) {
            return Err("anonymous key".into());
        }
        let claims = self.keys.verify(token)?;
        let (user_id, session_id) = (claims.sub.clone(), claims.session_id.clone());
        let user = self
            .db
            .read(move |conn| {
                if !sessions::is_active(conn, &session_id, &user_id)? {
                    return Ok(None);
                }
                accounts::find_by_id(conn, &user_id)
            })
            .await
            .map_err(|e| e.to_string())?
            .ok_or("unknown user or ended session")?;
        Ok((user, claims))
    }

    pub(super) async fn start_session(&self, user: User) -> Result<Session, AuthError> {
        let session_id = new_id();
        let refresh = random_token();
        let (sid, uid, hash) = (session_id.clone(), user.id.clone(), token_hash(&refresh));
        self.db
            .write(move |conn| {
                let now = now_ms();
                sessions::create_session(conn, &sid, &uid, now)?;
                sessions::insert_refresh_token(conn, &hash, &sid, now)
            })
            .await?;
        self.session_response(user, session_id, refresh)
    }

    fn session_response(
        &self,
        user: User,
        session_id: String,
        refresh: String,
    ) -> Result<Session, AuthError> {
        let iat = now_ms() / 1000;
        let ttl = self.config.access_token_ttl_secs;
        let claims = Claims {
            sub: user.id.clone(),
            email: user.email.clone(),
            role: user.role.clone(),
            aud: AUDIENCE.into(),
            iat,
            exp: iat + ttl as i64,
            session_id,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let access_token = self.keys.sign(&claims).map_err(|e| {
            tracing::error!(error = %e, "cannot sign access token");
            AuthError::internal()
        })?;
        Ok(Session {
            access_token,
            expires_in: ttl,
            expires_at: claims.exp,
            refresh_token: refresh,
            user,
        })
    }
}

/// A new user (not yet stored) with a fresh id; `confirmed` says whether the address
/// counts as confirmed from the start.
pub(super) fn new_user(email: String, role: &str, data: Value, confirmed: bool) -> User {
    let now = now_ms();
    User {
        id: new_id(),
        email,
        role: role.to_string(),
        user_metadata: if data.is_object() {
            data
        } else {
            Value::Object(Default::default())
        },
        created_at: now,
        updated_at: now,
        email_confirmed_at: confirmed.then_some(now),
    }
}

/// Trims and lower-cases an email and checks its shape.
pub(super) fn normalize_email(email: &str) -> Result<String, AuthError> {
    let email = email.trim().to_ascii_lowercase();
    let invalid =
        || AuthError::validation_failed("Unable to validate email address: invalid format");
    if email.is_empty()
        || email.len() > MAX_EMAIL_LEN
        || email.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid());
    }
    let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
    let domain_ok = domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !domain.contains("..");
    if local.is_empty() || !domain_ok {
        return Err(invalid());
    }
    Ok(email)
}

fn check_password(pass: &str) -> Result<(), AuthError> {
    if pass.chars().count() < MIN_PASSWORD_LEN {
        return Err(AuthError::weak_password(MIN_PASSWORD_LEN));
    }
    if pass.len() > MAX_PASSWORD_LEN {
        return Err(AuthError::validation_failed("Password is too long"));
    }
    Ok(())
}

/// 32 random bytes, URL-safe base64.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn token_hash(token: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalized_and_checked() {
        assert_eq!(
            normalize_email("  A@Example.COM ").unwrap(),
            "a@example.com"
        );
        for bad in [
            "", "a", "a@b", "@b.c", "a@.c", "a@b.", "a b@c.d", "a@b@c.d", "a@b..c",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn password_length_rules() {
        assert_eq!(
            check_password("1234567").unwrap_err().error_code,
            "weak_password"
        );
        assert!(check_password("12345678").is_ok());
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(token_hash(&a).len(), 43);
        assert_ne!(token_hash(&a), a);
    }
}
