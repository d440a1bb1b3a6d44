//! `users` and `credit_accounts`: who can sign in, and their balances.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::Value;

use super::{DbError, DbResult};
use crate::domain::credits::{Balances, Deltas};

/// A user as the rest of Atelier sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: String,
    pub email: String,
    pub role: String,
    pub user_metadata: Value,
    pub created_at: i64,
    pub updated_at: i64,
    /// When the address was confirmed; `None` while a confirmation code is pending.
    pub email_confirmed_at: Option<i64>,
}

impl User {
    /// Whether the user may use admin routes and models.
    pub fn is_admin(&self) -> bool {
        self.role == "admin"
    }
}

/// Columns read into a [`User`]; every query aliases `users` as `u`.
const USER_COLUMNS: &str =
    "u.id, u.email, u.role, u.user_metadata, u.created_at, u.updated_at, u.email_confirmed_at";

fn user_from_row(row: &Row<'_>) -> rusqlite::Result<User> {
    let metadata: String = row.get(3)?;
    Ok(User {
        id: row.get(0)?,
        email: row.get(1)?,
        role: row.get(2)?,
        user_metadata: serde_json::from_str(&metadata).unwrap_or(Value::Object(Default::default())),
        created_at: row.get(4)?,
        updated_at: row.get(5)?,
        email_confirmed_at: row.get(6)?,
    })
}

/// Inserts a user and an empty credit account. Fails with `Constraint` on a taken email.
pub fn insert_user(conn: &Connection, user: &User, password_hash: &str) -> DbResult<()> {
    conn.execute(
        "INSERT INTO users (id, email, role, password_hash, user_metadata, created_at, updated_at,
             email_confirmed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)",
        params![
            user.id,
            user.email,
            user.role,
            password_hash,
            user.user_metadata.to_string(),
            user.created_at,
            user.email_confirmed_at
        ],
    )?;
    conn.execute(
        "INSERT INTO credit_accounts (user_id, updated_at) VALUES (?1, ?2)",
        params![user.id, user.created_at],
    )?;
    super::growth::assign_invite_code(conn, &user.id)?;
    Ok(())
}

/// A user by id.
pub fn find_by_id(conn: &Connection, id: &str) -> DbResult<Option<User>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.id = ?1"
        ))?
        .query_row([id], user_from_row)
        .optional()?)
}

/// A user and their password hash by email (case-insensitive).
pub fn find_login(conn: &Connection, email: &str) -> DbResult<Option<(User, String)>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {USER_COLUMNS}, u.password_hash FROM users u WHERE u.email = ?1"
        ))?
        .query_row([email], |row| Ok((user_from_row(row)?, row.get(7)?)))
        .optional()?)
}

/// A user by email (case-insensitive).
pub fn find_by_email(conn: &Connection, email: &str) -> DbResult<Option<User>> {
    Ok(find_login(conn, email)?.map(|(user, _)| user))
}

/// Every user, oldest first.
pub fn list(conn: &Connection) -> DbResult<Vec<(User, Balances)>> {
    search(conn, None, u32::MAX)
}

/// Users whose email contains `query` (case-insensitive; all when `None`), oldest first,
/// at most `limit`, with their credits.
pub fn search(
    conn: &Connection,
    query: Option<&str>,
    limit: u32,
) -> DbResult<Vec<(User, Balances)>> {
    let pattern = query.map(|q| {
        let escaped = q
            .to_ascii_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("%{escaped}%")
    });
    let mut stmt = conn.prepare(&format!(
        "SELECT {USER_COLUMNS}, a.subscription, a.purchased, a.held, a.debt
         FROM users u JOIN credit_accounts a ON a.user_id = u.id
         WHERE ?1 IS NULL OR u.email LIKE ?1 ESCAPE '\\'
         ORDER BY u.created_at, u.id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![pattern, limit], |row| {
        Ok((
            user_from_row(row)?,
            Balances {
                subscription: row.get(7)?,
                purchased: row.get(8)?,
                held: row.get(9)?,
                debt: row.get(10)?,
            },
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Changes a user's role.
pub fn set_role(conn: &Connection, user_id: &str, role: &str, now: i64) -> DbResult<()> {
    let n = conn.execute(
        "UPDATE users SET role = ?2, updated_at = ?3 WHERE id = ?1",
        params![user_id, role, now],
    )?;
    if n == 0 {
        return Err(DbError::Other(format!("no user {user_id}")));
    }
    Ok(())
}

/// A user's balances (`None` when the user has no account).
pub fn credits(conn: &Connection, user_id: &str) -> DbResult<Option<Balances>> {
    Ok(conn
        .prepare_cached(
            "SELECT subscription, purchased, held, debt FROM credit_accounts WHERE user_id = ?1",
        )?
        .query_row([user_id], |row| {
            Ok(Balances {
                subscription: row.get(0)?,
                purchased: row.get(1)?,
                held: row.get(2)?,
                debt: row.get(3)?,
            })
        })
        .optional()?)
}

/// Applies balance deltas to an account; the table's CHECKs refuse anything negative.
/// The new balances are computed here with checked arithmetic (SQLite would turn an
/// overflowing sum into a float), and written as they are.
pub fn apply_deltas(
    conn: &Connection,
    user_id: &str,
    delta: &Deltas,
    now: i64,
) -> DbResult<Balances> {
    let before = credits(conn, user_id)?
        .ok_or_else(|| DbError::Other(format!("no credit account for user {user_id}")))?;
    let add = |a: i64, b: i64| {
        a.checked_add(b)
            .ok_or_else(|| DbError::Other(format!("credit balance overflow for user {user_id}")))
    };
    let after = Balances {
        subscription: add(before.subscription, delta.subscription)?,
        purchased: add(before.purchased, delta.purchased)?,
        held: add(before.held, delta.held)?,
        debt: add(before.debt, delta.debt)?,
    };
    conn.prepare_cached(
        "UPDATE credit_accounts SET subscription = ?2, purchased = ?3, held = ?4, debt = ?5,
            updated_at = ?6
         WHERE user_id = ?1",
    )?
    .execute(params![
        user_id,
        after.subscription,
        after.purchased,
        after.held,
        after.debt,
        now
    ])?;
    Ok(after)
}
