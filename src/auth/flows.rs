//! GoTrue's confirmation and recovery flows: the signup that waits for a mailed code,
//! `/verify`, `/resend`, `/recover`, `PUT /user` and the admin's account deletion.
//!
//! Codes are 6 digits, stored as HMACs, valid `auth.code_ttl_secs`, 5 tries each; one
//! code mail per address per `auth.email_interval_secs` whether or not the address has
//! an account, so neither the answers nor the limits tell who has one.

use serde_json::Value;

use super::service::{new_user, normalize_email, AuthService, Session};
use super::{password, AuthError};
use crate::actors::accounts::{CodeMail, Presented, Verified};
use crate::actors::ledger::OpenAccountError;
use crate::db::accounts::{self, User};
use crate::db::auth_codes as codes;
use crate::db::{sessions, DbError};
use crate::domain::otp::{self, Purpose};
use crate::domain::time::now_ms;
use crate::mail::{user_locale, Message};

/// What `PUT /auth/v1/user` may change.
#[derive(Debug, Default, Clone)]
pub struct UserUpdate {
    pub email: Option<String>,
    pub password: Option<String>,
    /// Merged into `user_metadata`: a `null` value removes its key.
    pub data: Option<Value>,
}

/// Most `user_metadata` keeps, serialised.
const MAX_METADATA_BYTES: usize = 16 * 1024;

impl AuthService {
    /// Whether new accounts confirm their address first.
    pub fn confirms_email(&self) -> bool {
        self.config.confirm_email
    }

    /// Counts one code mail to `email` against the per-address limit.
    fn check_mail_rate(&self, email: &str) -> Result<(), AuthError> {
        let Some(limiter) = &self.mail_limiter else {
            return Ok(());
        };
        if limiter.len() > 100_000 {
            limiter.retain_recent();
        }
        limiter
            .check_key(&otp::bonus_address(email))
            .map_err(|_| AuthError::email_rate_limited(self.config.email_interval_secs))
    }

    /// A fresh code for `user_id` and the mail that carries it to `to`.
    fn code_mail(&self, user_id: &str, purpose: Purpose, to: &str, metadata: &Value) -> CodeMail {
        let code = otp::new_code();
        let minutes = self.config.code_ttl_secs.div_ceil(60);
        let message = match purpose {
            Purpose::Recovery => Message::Recovery {
                code: code.clone(),
                minutes,
            },
            _ => Message::Confirmation {
                code: code.clone(),
                minutes,
            },
        };
        CodeMail {
            purpose,
            code_hash: otp::code_hash(&self.code_key, user_id, purpose, &code),
            new_email: (purpose == Purpose::EmailChange).then(|| to.to_string()),
            expires_at: now_ms() + (self.config.code_ttl_secs as i64) * 1000,
            to: to.to_string(),
            locale: user_locale(metadata).to_string(),
            message,
        }
    }

    /// Stores a new code for `user` and queues its mail.
    async fn send_code(&self, user: &User, purpose: Purpose, to: &str) -> Result<(), AuthError> {
        let mail = self.code_mail(&user.id, purpose, to, &user.user_metadata);
        let user_id = user.id.clone();
        self.db
            .write(move |conn| crate::actors::accounts::put_code(conn, &user_id, &mail))
            .await?;
        tracing::info!(user_id = %user.id, purpose = purpose.as_str(), "code mailed");
        Ok(())
    }

    /// The signup of `auth.confirm_email`: a new account waits unconfirmed for the code
    /// mailed to it. A taken, confirmed address gets a look-alike answer and no mail
    /// (GoTrue's answer, which does not tell that the address has an account); a taken,
    /// unconfirmed one gets a new code.
    pub(super) async fn signup_unconfirmed(
        &self,
        email: &str,
        pass: &str,
        data: Value,
    ) -> Result<User, AuthError> {
        let email = normalize_email(email)?;
        let hash = self.hash_password(pass).await?;
        let lookup = email.clone();
        let existing = self
            .db
            .read(move |conn| accounts::find_by_email(conn, &lookup))
            .await?;
        match existing {
            Some(user) if user.email_confirmed_at.is_some() => {
                Ok(new_user(email, "authenticated", Value::Null, false))
            }
            Some(user) => {
                self.check_mail_rate(&email)?;
                self.send_code(&user, Purpose::Signup, &email).await?;
                Ok(user)
            }
            None => {
                self.check_mail_rate(&email)?;
                let user = new_user(email.clone(), "authenticated", data, false);
                let mail = self.code_mail(&user.id, Purpose::Signup, &email, &user.user_metadata);
                let user = self
                    .ledger
                    .open_unconfirmed(user, hash, mail)
                    .await
                    .map_err(|e| match e {
                        OpenAccountError::EmailTaken => AuthError::user_already_exists(),
                        OpenAccountError::Failed(err) => AuthError::from(err),
                    })?;
                tracing::info!(user_id = %user.id, "account created, waiting for its code");
                Ok(user)
            }
        }
    }

    /// `POST /verify {type, email, token}`: spends the code and signs the user in.
    pub async fn verify(&self, kind: &str, email: &str, token: &str) -> Result<Session, AuthError> {
        let purpose = Purpose::parse(kind).ok_or_else(|| {
            AuthError::validation_failed("type must be signup, recovery or email_change")
        })?;
        let email = email.trim().to_ascii_lowercase();
        if email.is_empty() || token.trim().is_empty() {
            return Err(AuthError::validation_failed("email and token are required"));
        }
        if token.len() > 64 || email.len() > 254 {
            return Err(AuthError::otp_expired());
        }
        let presented = Presented {
            purpose,
            email,
            token: token.to_string(),
            key: self.code_key.clone(),
            bonus: self.config.signup_bonus_credits,
        };
        match self.ledger.verify_code(presented).await? {
            Verified::Done(user) => {
                tracing::info!(user_id = %user.id, purpose = purpose.as_str(), "code verified");
                self.start_session(user).await
            }
            Verified::Refused => Err(AuthError::otp_expired()),
            Verified::EmailTaken => Err(AuthError::email_exists()),
        }
    }

    /// `POST /resend {type, email}`: a new code for a pending signup or address change;
    /// the same empty answer whatever the address.
    pub async fn resend(&self, kind: &str, email: &str) -> Result<(), AuthError> {
        let purpose = match Purpose::parse(kind) {
            Some(p @ (Purpose::Signup | Purpose::EmailChange)) => p,
            _ => {
                return Err(AuthError::validation_failed(
                    "type must be signup or email_change",
                ))
            }
        };
        let email = normalize_email(email)?;
        self.check_mail_rate(&email)?;
        let lookup = email.clone();
        let user = self
            .db
            .read(move |conn| {
                let id = match purpose {
                    Purpose::EmailChange => codes::user_changing_to(conn, &lookup)?,
                    _ => accounts::find_by_email(conn, &lookup)?
                        .filter(|u| u.email_confirmed_at.is_none())
                        .map(|u| u.id),
                };
                match id {
                    Some(id) => accounts::find_by_id(conn, &id),
                    None => Ok(None),
                }
            })
            .await?;
        if let Some(user) = user {
            self.send_code(&user, purpose, &email).await?;
        }
        Ok(())
    }

    /// `POST /recover {email}`: mails a recovery code if the address has an account;
    /// the same empty answer either way.
    pub async fn recover(&self, email: &str) -> Result<(), AuthError> {
        let email = normalize_email(email)?;
        self.check_mail_rate(&email)?;
        let lookup = email.clone();
        let user = self
            .db
            .read(move |conn| accounts::find_by_email(conn, &lookup))
            .await?;
        if let Some(user) = user {
            self.send_code(&user, Purpose::Recovery, &email).await?;
        }
        Ok(())
    }

    /// `PUT /user`: a new password, merged metadata, and a new address (confirmed by a
    /// code mailed to it when `auth.confirm_email` is on, else set at once). Answers the
    /// user and the address waiting for confirmation, if any.
    pub async fn update_user(
        &self,
        user: &User,
        update: UserUpdate,
    ) -> Result<(User, Option<String>), AuthError> {
        let password_hash = match &update.password {
            Some(pass) => {
                let (new, id) = (pass.clone(), user.id.clone());
                let same = self
                    .db
                    .read(move |conn| codes::password_hash_of(conn, &id))
                    .await?;
                let is_same = match same {
                    Some(stored) => self
                        .hashing
                        .run(move || password::verify(&new, &stored))
                        .await
                        .unwrap_or(false),
                    None => false,
                };
                if is_same {
                    return Err(AuthError::same_password());
                }
                Some(self.hash_password(pass).await?)
            }
            None => None,
        };
        let metadata = match update.data {
            None => None,
            Some(Value::Object(changes)) => {
                let mut merged = user.user_metadata.as_object().cloned().unwrap_or_default();
                for (key, value) in changes {
                    if value.is_null() {
                        merged.remove(&key);
                    } else {
                        merged.insert(key, value);
                    }
                }
                let text = Value::Object(merged).to_string();
                if text.len() > MAX_METADATA_BYTES {
                    return Err(AuthError::validation_failed("data is too large"));
                }
                Some(text)
            }
            Some(_) => return Err(AuthError::validation_failed("data must be an object")),
        };
        let new_email = match &update.email {
            Some(email) => {
                let email = normalize_email(email)?;
                (email != user.email).then_some(email)
            }
            None => None,
        };
        let mail = match &new_email {
            Some(email) if self.config.confirm_email => {
                let lookup = email.clone();
                let taken = self
                    .db
                    .read(move |conn| accounts::find_by_email(conn, &lookup))
                    .await?;
                if taken.is_some() {
                    return Err(AuthError::email_exists());
                }
                self.check_mail_rate(email)?;
                Some(self.code_mail(&user.id, Purpose::EmailChange, email, &user.user_metadata))
            }
            _ => None,
        };
        let pending = mail.as_ref().map(|m| m.to.clone());
        let immediate = new_email.filter(|_| mail.is_none());
        let id = user.id.clone();
        let updated = self
            .db
            .write(move |conn| {
                let now = now_ms();
                if let Some(hash) = &password_hash {
                    codes::set_password(conn, &id, hash, now)?;
                }
                if let Some(text) = &metadata {
                    codes::set_metadata(conn, &id, text, now)?;
                }
                if let Some(email) = &immediate {
                    match codes::set_email(conn, &id, email, now) {
                        Ok(()) => {}
                        Err(DbError::Constraint(_)) => return Err(AuthError::email_exists()),
                        Err(err) => return Err(err.into()),
                    }
                }
                if let Some(mail) = &mail {
                    crate::actors::accounts::put_code(conn, &id, mail)?;
                }
                accounts::find_by_id(conn, &id)?.ok_or_else(AuthError::internal)
            })
            .await?;
        tracing::info!(user_id = %user.id, password = update.password.is_some(),
            email_change = pending.is_some(), "user updated");
        Ok((updated, pending))
    }

    /// Deletes an account (`DELETE /admin/users/{id}`): its address and password are
    /// released and its sessions ended; its ledger stays. Its address never gets a
    /// second signup bonus.
    pub async fn delete_user(&self, user_id: &str) -> Result<User, AuthError> {
        let id = user_id.to_string();
        let deleted = self
            .db
            .write(move |conn| {
                let Some(user) = accounts::find_by_id(conn, &id)? else {
                    return Ok(None);
                };
                let now = now_ms();
                if !codes::mark_deleted(conn, &id, now)? {
                    return Ok(None);
                }
                sessions::revoke_user_sessions(conn, &id, None, "account deleted", now)?;
                Ok::<_, DbError>(Some(user))
            })
            .await?
            .ok_or_else(AuthError::user_not_found)?;
        tracing::info!(user_id = %deleted.id, "account deleted");
        Ok(deleted)
    }
}
