//! `mail_outbox`: messages waiting to be sent, sent, or given up on.

use rusqlite::{params, Connection, Row};

use super::DbResult;

/// One message of the outbox.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OutboxMail {
    pub id: String,
    pub to_addr: String,
    pub kind: String,
    pub locale: String,
    pub subject: String,
    pub text_body: String,
    pub html_body: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

const COLUMNS: &str = "id, to_addr, kind, locale, subject, text_body, html_body, status,
    attempts, next_attempt_at, last_error, created_at, sent_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<OutboxMail> {
    Ok(OutboxMail {
        id: row.get(0)?,
        to_addr: row.get(1)?,
        kind: row.get(2)?,
        locale: row.get(3)?,
        subject: row.get(4)?,
        text_body: row.get(5)?,
        html_body: row.get(6)?,
        status: row.get(7)?,
        attempts: row.get(8)?,
        next_attempt_at: row.get(9)?,
        last_error: row.get(10)?,
        created_at: row.get(11)?,
        sent_at: row.get(12)?,
    })
}

/// Queues a message (due at once); with a `dedup_key` only if no message had that key
/// (`false` then).
pub fn enqueue(conn: &Connection, m: &OutboxMail, dedup_key: Option<&str>) -> DbResult<bool> {
    let n = conn.execute(
        "INSERT INTO mail_outbox (id, to_addr, kind, locale, subject, text_body, html_body,
             status, attempts, next_attempt_at, created_at, dedup_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'queued', 0, ?8, ?8, ?9)
         ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING",
        params![
            m.id,
            m.to_addr,
            m.kind,
            m.locale,
            m.subject,
            m.text_body,
            m.html_body,
            m.created_at,
            dedup_key
        ],
    )?;
    Ok(n == 1)
}

/// Queued messages due by `now`, oldest first, at most `limit`.
pub fn due(conn: &Connection, now: i64, limit: u32) -> DbResult<Vec<OutboxMail>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM mail_outbox WHERE status = 'queued' AND next_attempt_at <= ?1
         ORDER BY next_attempt_at, id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![now, limit], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// When the next queued message is due, if any.
pub fn next_due(conn: &Connection) -> DbResult<Option<i64>> {
    Ok(conn.query_row(
        "SELECT min(next_attempt_at) FROM mail_outbox WHERE status = 'queued'",
        [],
        |r| r.get(0),
    )?)
}

/// Records a sent message.
pub fn mark_sent(conn: &Connection, id: &str, now: i64) -> DbResult<()> {
    conn.execute(
        "UPDATE mail_outbox SET status = 'sent', attempts = attempts + 1, sent_at = ?2,
             last_error = NULL WHERE id = ?1",
        params![id, now],
    )?;
    Ok(())
}

/// Records a failed attempt: queued again at `retry_at`, or `failed` when `None`.
pub fn mark_attempt_failed(
    conn: &Connection,
    id: &str,
    error: &str,
    retry_at: Option<i64>,
) -> DbResult<()> {
    conn.execute(
        "UPDATE mail_outbox SET attempts = attempts + 1, last_error = ?2,
             status = CASE WHEN ?3 IS NULL THEN 'failed' ELSE 'queued' END,
             next_attempt_at = COALESCE(?3, next_attempt_at)
         WHERE id = ?1",
        params![id, error, retry_at],
    )?;
    Ok(())
}

/// The latest messages, newest first.
pub fn recent(conn: &Connection, limit: u32) -> DbResult<Vec<OutboxMail>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM mail_outbox ORDER BY created_at DESC, id DESC LIMIT ?1"
    ))?;
    let rows = stmt.query_map([limit], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}
