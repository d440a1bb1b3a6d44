//! Applies `schema.sql` section by section, tracked in `PRAGMA user_version`.

use rusqlite::Connection;

use super::{DbError, DbResult};

/// The whole schema, compiled into the binary.
pub const SCHEMA: &str = include_str!("../../schema.sql");

/// The numbered sections of the schema: `(version, sql)`.
pub fn migrations() -> Vec<(i64, String)> {
    let mut out: Vec<(i64, String)> = Vec::new();
    for line in SCHEMA.lines() {
        if let Some(n) = line.trim().strip_prefix("-- migration:") {
            if let Ok(version) = n.trim().parse() {
                out.push((version, String::new()));
                continue;
            }
        }
        if let Some((_, sql)) = out.last_mut() {
            sql.push_str(line);
            sql.push('\n');
        }
    }
    out
}

/// The newest schema version this binary knows.
pub fn latest_version() -> i64 {
    migrations().last().map(|(v, _)| *v).unwrap_or(0)
}

/// Brings the database up to [`latest_version`]; returns the versions applied.
pub fn migrate(conn: &Connection) -> DbResult<()> {
    migrate_reporting(conn).map(|_| ())
}

/// [`migrate`], returning the versions it applied (empty when already current).
pub fn migrate_reporting(conn: &Connection) -> DbResult<Vec<i64>> {
    let fresh = current_version(conn)? == 0;
    let applied = migrate_to(conn, latest_version())?;
    if fresh && !applied.is_empty() {
        // A new database sells the current default packages; an existing one keeps its own.
        conn.execute_batch("BEGIN IMMEDIATE")?;
        match super::packages::seed_defaults(conn, crate::domain::time::now_ms()) {
            Ok(()) => conn.execute_batch("COMMIT")?,
            Err(err) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(err);
            }
        }
    }
    // Profiles created before invite codes existed get theirs (a no-op once done).
    let given = super::growth::backfill_invite_codes(conn)?;
    if given > 0 {
        tracing::info!(users = given, "invite codes given to existing users");
    }
    // Bonuses paid before their claims were recorded count as claimed.
    for (user_id, email, key) in super::auth_codes::unrecorded_bonuses(conn)? {
        let hash = crate::domain::otp::bonus_address_hash(&email);
        super::auth_codes::claim_signup_bonus(conn, &hash, &user_id, &key, 0)?;
    }
    Ok(applied)
}

/// Applies the migrations up to `target` only (tests build databases of older versions
/// with it); returns the versions applied.
pub fn migrate_to(conn: &Connection, target: i64) -> DbResult<Vec<i64>> {
    let current = current_version(conn)?;
    if current > latest_version() {
        return Err(DbError::Other(format!(
            "database schema version {current} is newer than this binary ({}); upgrade atelier",
            latest_version()
        )));
    }
    let mut applied = Vec::new();
    for (version, sql) in migrations() {
        if version <= current || version > target {
            continue;
        }
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version = {version};\nCOMMIT;"
        ))
        .map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            DbError::Other(format!("migration {version} failed: {e}"))
        })?;
        applied.push(version);
    }
    Ok(applied)
}

/// `PRAGMA user_version`.
pub fn current_version(conn: &Connection) -> DbResult<i64> {
    Ok(conn.query_row("PRAGMA user_version", [], |row| row.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_numbered_in_order() {
        let versions: Vec<i64> = migrations().iter().map(|(v, _)| *v).collect();
        assert!(!versions.is_empty());
        for (i, v) in versions.iter().enumerate() {
            assert_eq!(*v, i as i64 + 1);
        }
    }

    #[test]
    fn migrating_twice_is_a_no_op() {
        let conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate_reporting(&conn).unwrap().len(), migrations().len());
        assert!(migrate_reporting(&conn).unwrap().is_empty());
        assert_eq!(current_version(&conn).unwrap(), latest_version());
        let packages: i64 = conn
            .query_row("SELECT count(*) FROM packages", [], |r| r.get(0))
            .unwrap();
        assert_eq!(packages, 6);
    }
}
