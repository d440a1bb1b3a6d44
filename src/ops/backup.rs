//! Online backups and restores of the SQLite file. A backup is `VACUUM INTO` from a read
//! transaction: a consistent snapshot taken while the server keeps writing, compacted,
//! written to a temporary name and renamed into place only once it checks out.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use crate::db::migrate;

/// What a backup or restore produced.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub path: PathBuf,
    pub bytes: u64,
    pub schema_version: i64,
}

/// Why a backup or restore failed, as one line for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BackupError(pub String);

fn sql_error(what: &str) -> impl Fn(rusqlite::Error) -> BackupError + '_ {
    move |e| BackupError(format!("{what}: {e}"))
}

/// Writes a consistent copy of the database at `db_path` to `out` (which must not exist).
pub fn backup(db_path: &Path, out: &Path) -> Result<Snapshot, BackupError> {
    if out.exists() {
        return Err(BackupError(format!(
            "{} already exists; choose a new file name",
            out.display()
        )));
    }
    if !db_path.exists() {
        return Err(BackupError(format!("no database at {}", db_path.display())));
    }
    let tmp = temp_name(out);
    let _ = std::fs::remove_file(&tmp);
    let conn = Connection::open_with_flags(db_path, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(sql_error("cannot open the database"))?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(sql_error("cannot set a busy timeout"))?;
    let target = tmp.to_string_lossy().into_owned();
    conn.execute("VACUUM INTO ?1", [&target])
        .map_err(sql_error("the snapshot failed"))?;
    let checked = verify(&tmp);
    if let Err(err) = checked {
        let _ = std::fs::remove_file(&tmp);
        return Err(err);
    }
    std::fs::rename(&tmp, out)
        .map_err(|e| BackupError(format!("cannot move the backup into place: {e}")))?;
    snapshot_of(out)
}

/// Replaces the database at `db_path` with the backup `from`. The server must be
/// stopped. An existing database is kept beside it as `<name>.before-restore`.
pub fn restore(from: &Path, db_path: &Path) -> Result<Snapshot, BackupError> {
    let version = verify(from)?;
    if version > migrate::latest_version() {
        return Err(BackupError(format!(
            "the backup has schema version {version}, newer than this binary's {}",
            migrate::latest_version()
        )));
    }
    if let Some(dir) = db_path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| BackupError(format!("cannot create {}: {e}", dir.display())))?;
    }
    let tmp = temp_name(db_path);
    std::fs::copy(from, &tmp)
        .map_err(|e| BackupError(format!("cannot copy {}: {e}", from.display())))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| BackupError(format!("cannot sync the copy: {e}")))?;
    if db_path.exists() {
        let kept = db_path.with_extension("db.before-restore");
        std::fs::rename(db_path, &kept)
            .map_err(|e| BackupError(format!("cannot keep the old database: {e}")))?;
    }
    for suffix in ["-wal", "-shm"] {
        let mut side = db_path.as_os_str().to_owned();
        side.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(side));
    }
    std::fs::rename(&tmp, db_path)
        .map_err(|e| BackupError(format!("cannot move the restored database into place: {e}")))?;
    snapshot_of(db_path)
}

/// Checks a database file: SQLite's integrity check passes and it has Atelier's schema.
/// Returns its schema version.
pub fn verify(path: &Path) -> Result<i64, BackupError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(sql_error("cannot open the backup"))?;
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(sql_error("cannot check the backup"))?;
    if integrity != "ok" {
        return Err(BackupError(format!(
            "{} fails SQLite's integrity check: {integrity}",
            path.display()
        )));
    }
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sql_error("cannot read the schema version"))?;
    let has_ledger: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'credit_ledger'",
            [],
            |r| r.get(0),
        )
        .map_err(sql_error("cannot read the schema"))?;
    if version == 0 || !has_ledger {
        return Err(BackupError(format!(
            "{} is not an Atelier database",
            path.display()
        )));
    }
    Ok(version)
}

fn snapshot_of(path: &Path) -> Result<Snapshot, BackupError> {
    let bytes = std::fs::metadata(path)
        .map_err(|e| BackupError(format!("cannot read {}: {e}", path.display())))?
        .len();
    Ok(Snapshot {
        path: path.to_path_buf(),
        bytes,
        schema_version: verify(path)?,
    })
}

/// `<file>.partial` beside `path`.
fn temp_name(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;
    use std::time::Duration;

    #[test]
    fn a_backup_restores_to_the_same_data_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("atelier.db");
        let db = Db::open(&live, 2, Duration::from_secs(1)).unwrap();
        db.heartbeat().unwrap();
        let out = dir.path().join("backup.db");
        let taken = backup(&live, &out).unwrap();
        assert_eq!(taken.schema_version, migrate::latest_version());
        assert!(backup(&live, &out).is_err(), "an existing file is kept");

        let restored_path = dir.path().join("restored/atelier.db");
        let restored = restore(&out, &restored_path).unwrap();
        assert_eq!(restored.schema_version, taken.schema_version);
        let conn = Connection::open(&restored_path).unwrap();
        let beats: i64 = conn
            .query_row("SELECT count(*) FROM heartbeat", [], |r| r.get(0))
            .unwrap();
        assert_eq!(beats, 1);
    }

    #[test]
    fn a_file_that_is_not_atelier_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        assert!(verify(&other).is_err());
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, b"not a database at all").unwrap();
        assert!(restore(&junk, &dir.path().join("a.db")).is_err());
    }
}
