//! `atelier audit`: the money invariants, checked on the database alone. Every account
//! equals the sum of its ledger rows (debt included), no balance is negative, nothing is
//! available while debt is owed, each account holds what its jobs hold, and every unit
//! was settled (captured or released) exactly once.

use rusqlite::Connection;

use crate::db::{jobs, ledger, DbResult};

/// What an audit found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditReport {
    /// Accounts looked at.
    pub accounts: usize,
    /// One line per problem, for people.
    pub problems: Vec<String>,
}

/// Audits the whole database, in one read transaction (one consistent snapshot while
/// the server keeps working).
pub fn audit(conn: &Connection) -> DbResult<AuditReport> {
    let snapshot = conn.unchecked_transaction()?;
    let conn: &Connection = &snapshot;
    let accounts = ledger::recompute_all(conn)?;
    let mut problems = Vec::new();
    for (user_id, from_ledger, stored) in &accounts {
        if from_ledger != stored {
            problems.push(format!(
                "MISMATCH account {user_id}: stored {stored:?}, ledger says {from_ledger:?}"
            ));
        }
        if let Some(violation) = stored.violation() {
            problems.push(format!(
                "INVALID account {user_id}: {violation} ({stored:?})"
            ));
        }
    }
    for (job_id, problem) in jobs::audit_jobs(conn)? {
        problems.push(format!("MISMATCH job {job_id}: {problem}"));
    }
    for (what, problem) in ledger::audit_settlements(conn)? {
        problems.push(format!("MISMATCH {what}: {problem}"));
    }
    snapshot.commit()?;
    Ok(AuditReport {
        accounts: accounts.len(),
        problems,
    })
}
