//! `system_settings`: JSON values by key that operators change at runtime.

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

use super::DbResult;

/// One stored setting.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub value: Value,
    pub updated_at: i64,
    pub updated_by: Option<String>,
}

/// The setting stored under `key`, if any (a value that is not JSON reads as null).
pub fn get(conn: &Connection, key: &str) -> DbResult<Option<Setting>> {
    let row = conn
        .query_row(
            "SELECT value, updated_at, updated_by FROM system_settings WHERE key = ?1",
            params![key],
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, Option<String>>(2)?,
                ))
            },
        )
        .optional()?;
    Ok(row.map(|(value, updated_at, updated_by)| Setting {
        value: serde_json::from_str(&value).unwrap_or(Value::Null),
        updated_at,
        updated_by,
    }))
}

/// Stores `value` under `key` (replacing what was there).
pub fn put(
    conn: &Connection,
    key: &str,
    value: &Value,
    updated_by: Option<&str>,
    now: i64,
) -> DbResult<()> {
    conn.execute(
        "INSERT INTO system_settings (key, value, updated_at, updated_by)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value,
             updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        params![key, value.to_string(), now, updated_by],
    )?;
    Ok(())
}
