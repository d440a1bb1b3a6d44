//! `credit_ledger`: one row per credit movement, each with a unique idempotency key.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{accounts, new_id, DbError, DbResult};
use crate::domain::credits::{Balances, Deltas};

/// A stored ledger row.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerEntry {
    pub id: String,
    pub user_id: String,
    pub kind: String,
    pub amount: i64,
    pub bucket: Option<String>,
    pub deltas: Deltas,
    pub job_id: Option<String>,
    pub task_id: Option<String>,
    pub stripe_event_id: Option<String>,
    pub reason: Option<String>,
    pub idempotency_key: String,
    pub available_after: i64,
    pub created_at: i64,
}

/// A movement to record.
#[derive(Debug, Clone, Default)]
pub struct NewEntry<'a> {
    pub user_id: &'a str,
    pub kind: &'a str,
    pub amount: i64,
    pub bucket: Option<&'a str>,
    pub deltas: Deltas,
    pub job_id: Option<&'a str>,
    pub task_id: Option<&'a str>,
    pub stripe_event_id: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub idempotency_key: &'a str,
}

const COLUMNS: &str = "id, user_id, kind, amount, bucket, subscription_delta, purchased_delta,
    held_delta, debt_delta, job_id, task_id, stripe_event_id, reason, idempotency_key,
    available_after, created_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<LedgerEntry> {
    Ok(LedgerEntry {
        id: row.get(0)?,
        user_id: row.get(1)?,
        kind: row.get(2)?,
        amount: row.get(3)?,
        bucket: row.get(4)?,
        deltas: Deltas {
            subscription: row.get(5)?,
            purchased: row.get(6)?,
            held: row.get(7)?,
            debt: row.get(8)?,
        },
        job_id: row.get(9)?,
        task_id: row.get(10)?,
        stripe_event_id: row.get(11)?,
        reason: row.get(12)?,
        idempotency_key: row.get(13)?,
        available_after: row.get(14)?,
        created_at: row.get(15)?,
    })
}

/// The row recorded under an idempotency key, if any.
pub fn find_by_key(conn: &Connection, key: &str) -> DbResult<Option<LedgerEntry>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM credit_ledger WHERE idempotency_key = ?1"
        ))?
        .query_row([key], from_row)
        .optional()?)
}

/// Applies the entry's deltas to the account and writes the row, in the caller's
/// transaction. Returns the row and the balances after it.
pub fn record(
    conn: &Connection,
    entry: &NewEntry<'_>,
    now: i64,
) -> DbResult<(LedgerEntry, Balances)> {
    if entry.amount <= 0 {
        return Err(DbError::Other(format!(
            "ledger amount must be positive, got {}",
            entry.amount
        )));
    }
    let after = accounts::apply_deltas(conn, entry.user_id, &entry.deltas, now)?;
    let stored = LedgerEntry {
        id: new_id(),
        user_id: entry.user_id.to_string(),
        kind: entry.kind.to_string(),
        amount: entry.amount,
        bucket: entry.bucket.map(str::to_string),
        deltas: entry.deltas,
        job_id: entry.job_id.map(str::to_string),
        task_id: entry.task_id.map(str::to_string),
        stripe_event_id: entry.stripe_event_id.map(str::to_string),
        reason: entry.reason.map(str::to_string),
        idempotency_key: entry.idempotency_key.to_string(),
        available_after: after.available(),
        created_at: now,
    };
    conn.prepare_cached(&format!(
        "INSERT INTO credit_ledger ({COLUMNS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
    ))?
    .execute(params![
        stored.id,
        stored.user_id,
        stored.kind,
        stored.amount,
        stored.bucket,
        stored.deltas.subscription,
        stored.deltas.purchased,
        stored.deltas.held,
        stored.deltas.debt,
        stored.job_id,
        stored.task_id,
        stored.stripe_event_id,
        stored.reason,
        stored.idempotency_key,
        stored.available_after,
        stored.created_at,
    ])?;
    Ok((stored, after))
}

/// A user's rows, newest first, strictly older than the row `before` when given.
pub fn list_for_user(
    conn: &Connection,
    user_id: &str,
    limit: u32,
    before: Option<&str>,
) -> DbResult<Vec<LedgerEntry>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM credit_ledger
         WHERE user_id = ?1 AND (?2 IS NULL OR id < ?2)
         ORDER BY id DESC LIMIT ?3"
    ))?;
    let rows = stmt.query_map(params![user_id, before, limit], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Each user's balances recomputed from the ledger alone, beside the stored ones:
/// `(user_id, from_ledger, stored)`.
pub fn recompute_all(conn: &Connection) -> DbResult<Vec<(String, Balances, Balances)>> {
    let mut stmt = conn.prepare(
        "SELECT a.user_id,
                COALESCE(SUM(l.subscription_delta), 0), COALESCE(SUM(l.purchased_delta), 0),
                COALESCE(SUM(l.held_delta), 0), COALESCE(SUM(l.debt_delta), 0),
                a.subscription, a.purchased, a.held, a.debt
         FROM credit_accounts a LEFT JOIN credit_ledger l ON l.user_id = a.user_id
         GROUP BY a.user_id ORDER BY a.user_id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get(0)?,
            Balances {
                subscription: r.get(1)?,
                purchased: r.get(2)?,
                held: r.get(3)?,
                debt: r.get(4)?,
            },
            Balances {
                subscription: r.get(5)?,
                purchased: r.get(6)?,
                held: r.get(7)?,
                debt: r.get(8)?,
            },
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Settlement problems: accounts whose `held` differs from what their jobs hold, and
/// units settled other than once (a terminal paid unit needs exactly one capture or
/// release, an open unit none). Each as `(what, problem)`.
pub fn audit_settlements(conn: &Connection) -> DbResult<Vec<(String, String)>> {
    let mut problems = Vec::new();
    let mut stmt = conn.prepare(
        "SELECT a.user_id, a.held, COALESCE(SUM(j.held_amount), 0)
         FROM credit_accounts a LEFT JOIN generation_jobs j ON j.user_id = a.user_id
         GROUP BY a.user_id HAVING a.held != COALESCE(SUM(j.held_amount), 0)",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    for row in rows {
        let (user, held, jobs) = row?;
        problems.push((
            format!("account {user}"),
            format!("holds {held} but its jobs hold {jobs}"),
        ));
    }
    let mut stmt = conn.prepare(
        "SELECT t.id, t.status, t.cost, COUNT(l.id)
         FROM generation_tasks t
         LEFT JOIN credit_ledger l ON l.task_id = t.id AND l.kind IN ('capture', 'release')
         GROUP BY t.id
         HAVING COUNT(l.id) > 1
             OR (t.status IN ('queued', 'running') AND COUNT(l.id) > 0)
             OR (t.status NOT IN ('queued', 'running') AND t.cost > 0 AND COUNT(l.id) != 1)",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    for row in rows {
        let (task, status, cost, settled) = row?;
        problems.push((
            format!("unit {task}"),
            format!("{status}, costs {cost}, settled {settled} time(s)"),
        ));
    }
    Ok(problems)
}
