//! `auth_codes` (live one-time codes, hashed), `signup_bonus_claims` (addresses that
//! had their signup bonus), and the account columns confirmation changes.

use rusqlite::{params, Connection, OptionalExtension};

use super::DbResult;
use crate::domain::otp::Purpose;

/// A live code.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCode {
    pub user_id: String,
    pub code_hash: String,
    pub new_email: Option<String>,
    pub attempts: i64,
    pub expires_at: i64,
}

/// Stores a new code for `(user_id, purpose)`, replacing the previous one (and its
/// spent tries).
pub fn put(
    conn: &Connection,
    user_id: &str,
    purpose: Purpose,
    code_hash: &str,
    new_email: Option<&str>,
    expires_at: i64,
    now: i64,
) -> DbResult<()> {
    conn.execute(
        "INSERT INTO auth_codes (user_id, purpose, code_hash, new_email, attempts, expires_at, created_at)
         VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6)
         ON CONFLICT (user_id, purpose) DO UPDATE SET code_hash = excluded.code_hash,
             new_email = excluded.new_email, attempts = 0, expires_at = excluded.expires_at,
             created_at = excluded.created_at",
        params![user_id, purpose.as_str(), code_hash, new_email, expires_at, now],
    )?;
    Ok(())
}

/// The live code of `(user_id, purpose)`.
pub fn get(conn: &Connection, user_id: &str, purpose: Purpose) -> DbResult<Option<StoredCode>> {
    Ok(conn
        .query_row(
            "SELECT user_id, code_hash, new_email, attempts, expires_at FROM auth_codes
             WHERE user_id = ?1 AND purpose = ?2",
            params![user_id, purpose.as_str()],
            |r| {
                Ok(StoredCode {
                    user_id: r.get(0)?,
                    code_hash: r.get(1)?,
                    new_email: r.get(2)?,
                    attempts: r.get(3)?,
                    expires_at: r.get(4)?,
                })
            },
        )
        .optional()?)
}

/// The user whose pending e-mail change names `new_email`.
pub fn user_changing_to(conn: &Connection, new_email: &str) -> DbResult<Option<String>> {
    Ok(conn
        .query_row(
            "SELECT user_id FROM auth_codes WHERE purpose = 'email_change'
             AND new_email = ?1 COLLATE NOCASE ORDER BY created_at DESC LIMIT 1",
            [new_email],
            |r| r.get(0),
        )
        .optional()?)
}

/// Counts one wrong try.
pub fn spend_try(conn: &Connection, user_id: &str, purpose: Purpose) -> DbResult<()> {
    conn.execute(
        "UPDATE auth_codes SET attempts = attempts + 1 WHERE user_id = ?1 AND purpose = ?2",
        params![user_id, purpose.as_str()],
    )?;
    Ok(())
}

/// Removes the code of `(user_id, purpose)` (used, or superseded).
pub fn remove(conn: &Connection, user_id: &str, purpose: Purpose) -> DbResult<()> {
    conn.execute(
        "DELETE FROM auth_codes WHERE user_id = ?1 AND purpose = ?2",
        params![user_id, purpose.as_str()],
    )?;
    Ok(())
}

/// Marks the address of `user_id` confirmed (first time only); whether it changed.
pub fn confirm_email(conn: &Connection, user_id: &str, now: i64) -> DbResult<bool> {
    Ok(conn.execute(
        "UPDATE users SET email_confirmed_at = ?2, updated_at = ?2
         WHERE id = ?1 AND email_confirmed_at IS NULL",
        params![user_id, now],
    )? == 1)
}

/// When `user_id` confirmed their address, if they did (and the account is not deleted).
pub fn confirmed_at(conn: &Connection, user_id: &str) -> DbResult<Option<Option<i64>>> {
    Ok(conn
        .query_row(
            "SELECT email_confirmed_at FROM users WHERE id = ?1 AND deleted_at IS NULL",
            [user_id],
            |r| r.get(0),
        )
        .optional()?)
}

/// Sets a new address (already confirmed). Fails with `Constraint` when it is taken.
pub fn set_email(conn: &Connection, user_id: &str, email: &str, now: i64) -> DbResult<()> {
    conn.execute(
        "UPDATE users SET email = ?2, email_confirmed_at = COALESCE(email_confirmed_at, ?3),
             updated_at = ?3 WHERE id = ?1",
        params![user_id, email, now],
    )?;
    Ok(())
}

/// The password hash of `user_id`.
pub fn password_hash_of(conn: &Connection, user_id: &str) -> DbResult<Option<String>> {
    Ok(conn
        .query_row(
            "SELECT password_hash FROM users WHERE id = ?1",
            [user_id],
            |r| r.get(0),
        )
        .optional()?)
}

/// Sets a new password hash.
pub fn set_password(conn: &Connection, user_id: &str, hash: &str, now: i64) -> DbResult<()> {
    conn.execute(
        "UPDATE users SET password_hash = ?2, updated_at = ?3 WHERE id = ?1",
        params![user_id, hash, now],
    )?;
    Ok(())
}

/// Replaces the user's metadata (a JSON object).
pub fn set_metadata(conn: &Connection, user_id: &str, metadata: &str, now: i64) -> DbResult<()> {
    conn.execute(
        "UPDATE users SET user_metadata = ?2, updated_at = ?3 WHERE id = ?1",
        params![user_id, metadata, now],
    )?;
    Ok(())
}

/// Deletes an account the way a ledger allows: the address and password are released
/// (so the address can sign up again), metadata and codes cleared; balances and ledger
/// rows stay for the audit. Sessions are revoked by the caller.
pub fn mark_deleted(conn: &Connection, user_id: &str, now: i64) -> DbResult<bool> {
    let n = conn.execute(
        "UPDATE users SET email = 'deleted+' || id || '@deleted.invalid', password_hash = '!',
             user_metadata = '{}', deleted_at = ?2, updated_at = ?2
         WHERE id = ?1 AND deleted_at IS NULL",
        params![user_id, now],
    )?;
    conn.execute("DELETE FROM auth_codes WHERE user_id = ?1", [user_id])?;
    Ok(n == 1)
}

/// Records that the address with `email_hash` had its signup bonus; `false` when it
/// already had (the bonus must then not be paid).
pub fn claim_signup_bonus(
    conn: &Connection,
    email_hash: &str,
    user_id: &str,
    ledger_key: &str,
    now: i64,
) -> DbResult<bool> {
    Ok(conn.execute(
        "INSERT INTO signup_bonus_claims (email_hash, user_id, ledger_key, created_at)
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (email_hash) DO NOTHING",
        params![email_hash, user_id, ledger_key, now],
    )? == 1)
}

/// Users who received a signup bonus before its claims were recorded: `(id, email,
/// ledger key)`.
pub fn unrecorded_bonuses(conn: &Connection) -> DbResult<Vec<(String, String, String)>> {
    let mut stmt = conn.prepare(
        "SELECT u.id, u.email, l.idempotency_key FROM users u
         JOIN credit_ledger l ON l.idempotency_key = 'signup:' || u.id
         WHERE NOT EXISTS (SELECT 1 FROM signup_bonus_claims c WHERE c.user_id = u.id)",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
