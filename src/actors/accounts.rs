//! Account confirmation in the ledger's actor: opening an unconfirmed account with its
//! code and mail, and spending a code (confirming an address, a recovery, an address
//! change) with the signup bonus it may pay, each one transaction.
//!
//! The signup bonus is paid once per address: [`grant_signup_bonus`] first records the
//! address's hash in `signup_bonus_claims` (which outlives the account), and pays only
//! when that record is new.

use std::sync::Arc;

use rusqlite::Connection;

use super::ledger::{grant, LedgerHandle, OpenAccountError};
use crate::db::accounts::{self, User};
use crate::db::auth_codes as codes;
use crate::db::DbError;
use crate::domain::credits::Bucket;
use crate::domain::otp::{self, Check, Purpose};
use crate::domain::time::now_ms;
use crate::domain::ApiError;
use crate::mail::Message;

/// A code to store and the mail that carries it, queued in the same transaction.
pub struct CodeMail {
    pub purpose: Purpose,
    pub code_hash: String,
    pub new_email: Option<String>,
    pub expires_at: i64,
    pub to: String,
    pub locale: String,
    pub message: Message,
}

/// Stores the code of `mail` for `user_id` (replacing a previous one) and queues its mail.
pub fn put_code(conn: &Connection, user_id: &str, mail: &CodeMail) -> Result<(), DbError> {
    codes::put(
        conn,
        user_id,
        mail.purpose,
        &mail.code_hash,
        mail.new_email.as_deref(),
        mail.expires_at,
        now_ms(),
    )?;
    crate::mail::enqueue(conn, &mail.to, &mail.locale, &mail.message)?;
    Ok(())
}

/// What spending a code came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Verified {
    /// The code was good: the user as they are now.
    Done(User),
    /// Unknown address, no live code, expired, tries used up, or wrong digits (one try
    /// spent): GoTrue gives all of them one answer.
    Refused,
    /// An address change to an address another account took meanwhile.
    EmailTaken,
}

/// A code presented to `/verify`.
pub struct Presented {
    pub purpose: Purpose,
    pub email: String,
    pub token: String,
    pub key: Arc<Vec<u8>>,
    pub bonus: i64,
}

impl LedgerHandle {
    /// Creates `user` unconfirmed (no bonus yet) with its confirmation code and mail.
    pub async fn open_unconfirmed(
        &self,
        user: User,
        password_hash: String,
        mail: CodeMail,
    ) -> Result<User, OpenAccountError> {
        self.run_with(false, move |conn| {
            match accounts::insert_user(conn, &user, &password_hash) {
                Ok(()) => {}
                Err(DbError::Constraint(_)) => return Err(OpenAccountError::EmailTaken),
                Err(err) => return Err(OpenAccountError::Failed(err.into())),
            }
            put_code(conn, &user.id, &mail).map_err(ApiError::from)?;
            Ok(user)
        })
        .await
    }

    /// Spends a code: on success the code is gone and its effect applied (the address
    /// confirmed with the signup bonus, or the new address set); a wrong code costs one
    /// of its tries.
    pub async fn verify_code(&self, presented: Presented) -> Result<Verified, ApiError> {
        self.run_with(false, move |conn| verify_code(conn, &presented))
            .await
    }
}

fn verify_code(conn: &Connection, p: &Presented) -> Result<Verified, ApiError> {
    let user_id = match p.purpose {
        Purpose::EmailChange => codes::user_changing_to(conn, &p.email)?,
        _ => accounts::find_by_email(conn, &p.email)?.map(|u| u.id),
    };
    let Some(user_id) = user_id else {
        return Ok(Verified::Refused);
    };
    let Some(stored) = codes::get(conn, &user_id, p.purpose)? else {
        return Ok(Verified::Refused);
    };
    let matches = otp::code_matches(&p.key, &user_id, p.purpose, &p.token, &stored.code_hash);
    let now = now_ms();
    match otp::check(now, stored.expires_at, stored.attempts, matches) {
        Check::Dead => return Ok(Verified::Refused),
        Check::Wrong => {
            codes::spend_try(conn, &user_id, p.purpose)?;
            return Ok(Verified::Refused);
        }
        Check::Good => codes::remove(conn, &user_id, p.purpose)?,
    }
    match p.purpose {
        // A recovery code proves the address as well as a confirmation code does.
        Purpose::Signup | Purpose::Recovery => {
            if codes::confirm_email(conn, &user_id, now)? {
                codes::remove(conn, &user_id, Purpose::Signup)?;
                grant_signup_bonus(conn, &user_id, &p.email, p.bonus)?;
            }
        }
        Purpose::EmailChange => {
            let new_email = stored.new_email.unwrap_or_else(|| p.email.clone());
            match codes::set_email(conn, &user_id, &new_email, now) {
                Ok(()) => {}
                Err(DbError::Constraint(_)) => return Ok(Verified::EmailTaken),
                Err(err) => return Err(err.into()),
            }
        }
    }
    let user = accounts::find_by_id(conn, &user_id)?
        .ok_or_else(|| ApiError::internal().cause("the verified user is gone"))?;
    Ok(Verified::Done(user))
}

/// Pays the signup bonus of `user_id` (purchased credits, ledger key `signup:<id>`) if
/// the address `email` never had one; a second account of the same address (after a
/// deletion, or with a `+tag`) gets nothing.
pub(super) fn grant_signup_bonus(
    conn: &Connection,
    user_id: &str,
    email: &str,
    bonus: i64,
) -> Result<(), ApiError> {
    if bonus <= 0 {
        return Ok(());
    }
    let key = format!("signup:{user_id}");
    let hash = otp::bonus_address_hash(email);
    if !codes::claim_signup_bonus(conn, &hash, user_id, &key, now_ms())? {
        tracing::info!(%user_id, "this address had its signup bonus already; none paid");
        return Ok(());
    }
    grant(
        conn,
        user_id,
        Bucket::Purchased,
        bonus,
        &key,
        Some("signup bonus"),
        None,
        "grant",
    )?;
    Ok(())
}
