//! `auth_sessions` and `refresh_tokens`: logins and their rotating refresh tokens.

use rusqlite::{params, Connection, OptionalExtension};

use super::DbResult;

/// What a presented refresh token turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshLookup {
    /// Unknown token, or its session was revoked or has expired.
    NotFound,
    /// Already exchanged once: a reuse.
    AlreadyUsed { session_id: String },
    /// Valid and now spent by this call.
    Spent { session_id: String, user_id: String },
}

/// A refresh token joined with its session: session id, user id, session revoked at,
/// token used at, token created at.
type TokenRow = (String, String, Option<i64>, Option<i64>, i64);

/// Starts a session for a user.
pub fn create_session(conn: &Connection, id: &str, user_id: &str, now: i64) -> DbResult<()> {
    conn.execute(
        "INSERT INTO auth_sessions (id, user_id, created_at) VALUES (?1, ?2, ?3)",
        params![id, user_id, now],
    )?;
    Ok(())
}

/// Stores a new refresh token (by its hash) for a session.
pub fn insert_refresh_token(
    conn: &Connection,
    token_hash: &str,
    session_id: &str,
    now: i64,
) -> DbResult<()> {
    conn.execute(
        "INSERT INTO refresh_tokens (token_hash, session_id, created_at) VALUES (?1, ?2, ?3)",
        params![token_hash, session_id, now],
    )?;
    Ok(())
}

/// Spends a refresh token if it is current; call inside a write transaction.
pub fn spend_refresh_token(
    conn: &Connection,
    token_hash: &str,
    now: i64,
    max_age_ms: i64,
) -> DbResult<RefreshLookup> {
    let found: Option<TokenRow> = conn
        .query_row(
            "SELECT s.id, s.user_id, s.revoked_at, t.used_at, t.created_at
             FROM refresh_tokens t JOIN auth_sessions s ON s.id = t.session_id
             WHERE t.token_hash = ?1",
            [token_hash],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()?;
    let Some((session_id, user_id, revoked_at, used_at, created_at)) = found else {
        return Ok(RefreshLookup::NotFound);
    };
    if revoked_at.is_some() || now - created_at > max_age_ms {
        return Ok(RefreshLookup::NotFound);
    }
    if used_at.is_some() {
        return Ok(RefreshLookup::AlreadyUsed { session_id });
    }
    let n = conn.execute(
        "UPDATE refresh_tokens SET used_at = ?2 WHERE token_hash = ?1 AND used_at IS NULL",
        params![token_hash, now],
    )?;
    Ok(if n == 1 {
        RefreshLookup::Spent {
            session_id,
            user_id,
        }
    } else {
        RefreshLookup::AlreadyUsed { session_id }
    })
}

/// Whether a session of this user exists and is not revoked.
pub fn is_active(conn: &Connection, session_id: &str, user_id: &str) -> DbResult<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM auth_sessions WHERE id = ?1 AND user_id = ?2 AND revoked_at IS NULL",
        )?
        .exists([session_id, user_id])?)
}

/// Revokes one session (its whole refresh-token family).
pub fn revoke_session(conn: &Connection, session_id: &str, reason: &str, now: i64) -> DbResult<()> {
    conn.execute(
        "UPDATE auth_sessions SET revoked_at = ?2, revoke_reason = ?3
         WHERE id = ?1 AND revoked_at IS NULL",
        params![session_id, now, reason],
    )?;
    Ok(())
}

/// Revokes every session of a user, optionally sparing one.
pub fn revoke_user_sessions(
    conn: &Connection,
    user_id: &str,
    except: Option<&str>,
    reason: &str,
    now: i64,
) -> DbResult<()> {
    conn.execute(
        "UPDATE auth_sessions SET revoked_at = ?2, revoke_reason = ?3
         WHERE user_id = ?1 AND revoked_at IS NULL AND id IS NOT ?4",
        params![user_id, now, reason, except],
    )?;
    Ok(())
}
