//! Growth tables: invite codes (`users.invite_code`), `referral_bindings`,
//! `redeem_codes` and `redeem_code_claims`.

use rand::Rng;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{DbError, DbResult};

/// The characters of invite codes (the reference's alphabet).
const INVITE_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
/// The characters of generated redeem codes: no 0/O, 1/I/L to misread.
const REDEEM_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
/// Length of an invite code.
pub const INVITE_CODE_LEN: usize = 8;

/// A random code of `len` characters from `alphabet`.
fn random_code(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

/// A fresh redeem code (12 characters, unambiguous).
pub fn generate_redeem_code() -> String {
    random_code(REDEEM_ALPHABET, 12)
}

/// Gives `user_id` an invite code if it has none (a few tries on a collision).
pub fn assign_invite_code(conn: &Connection, user_id: &str) -> DbResult<()> {
    for _ in 0..10 {
        let code = random_code(INVITE_ALPHABET, INVITE_CODE_LEN);
        match conn.execute(
            "UPDATE users SET invite_code = ?2 WHERE id = ?1 AND invite_code IS NULL",
            params![user_id, code],
        ) {
            Ok(_) => return Ok(()),
            Err(err) => match DbError::from(err) {
                DbError::Constraint(_) => continue,
                other => return Err(other),
            },
        }
    }
    Err(DbError::Other("no free invite code after 10 tries".into()))
}

/// Gives every user without an invite code one; returns how many were given.
pub fn backfill_invite_codes(conn: &Connection) -> DbResult<usize> {
    let ids: Vec<String> = conn
        .prepare("SELECT id FROM users WHERE invite_code IS NULL")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in &ids {
        assign_invite_code(conn, id)?;
    }
    Ok(ids.len())
}

/// A user's invite code.
pub fn invite_code_of(conn: &Connection, user_id: &str) -> DbResult<Option<String>> {
    Ok(conn
        .query_row(
            "SELECT invite_code FROM users WHERE id = ?1",
            [user_id],
            |r| r.get::<_, Option<String>>(0),
        )
        .optional()?
        .flatten())
}

/// The user whose invite code is `code` (exact, upper case).
pub fn user_by_invite_code(conn: &Connection, code: &str) -> DbResult<Option<String>> {
    Ok(conn
        .query_row("SELECT id FROM users WHERE invite_code = ?1", [code], |r| {
            r.get(0)
        })
        .optional()?)
}

/// Whether the user has paid for a package (a payment with a positive amount).
pub fn has_paid(conn: &Connection, user_id: &str) -> DbResult<bool> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM payments WHERE user_id = ?1 AND amount > 0
                          AND package_id IS NOT NULL)",
        [user_id],
        |r| r.get(0),
    )?)
}

/// One invitee bound to an inviter.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    pub id: String,
    pub inviter_id: String,
    pub invitee_id: String,
    pub code: String,
    pub reward_rate: f64,
    pub created_at: i64,
    pub rewarded_at: Option<i64>,
    pub reward_credits: i64,
    pub reward_key: Option<String>,
    pub reward_for: Option<String>,
    pub reward_reversed: i64,
    /// The other party's email, when the query joined it (inviter lists show invitees).
    pub email: Option<String>,
}

const BINDING_COLUMNS: &str = "b.id, b.inviter_id, b.invitee_id, b.code, b.reward_rate,
    b.created_at, b.rewarded_at, b.reward_credits, b.reward_key, b.reward_for,
    b.reward_reversed";

fn binding_from_row(row: &Row<'_>) -> rusqlite::Result<Binding> {
    Ok(Binding {
        id: row.get(0)?,
        inviter_id: row.get(1)?,
        invitee_id: row.get(2)?,
        code: row.get(3)?,
        reward_rate: row.get(4)?,
        created_at: row.get(5)?,
        rewarded_at: row.get(6)?,
        reward_credits: row.get(7)?,
        reward_key: row.get(8)?,
        reward_for: row.get(9)?,
        reward_reversed: row.get(10)?,
        email: None,
    })
}

/// Records a binding; `Constraint` if the invitee is already bound.
pub fn insert_binding(conn: &Connection, b: &Binding) -> DbResult<()> {
    conn.execute(
        "INSERT INTO referral_bindings (id, inviter_id, invitee_id, code, reward_rate, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            b.id,
            b.inviter_id,
            b.invitee_id,
            b.code,
            b.reward_rate,
            b.created_at
        ],
    )?;
    Ok(())
}

/// The binding of an invitee.
pub fn binding_of_invitee(conn: &Connection, invitee_id: &str) -> DbResult<Option<Binding>> {
    Ok(conn
        .query_row(
            &format!("SELECT {BINDING_COLUMNS} FROM referral_bindings b WHERE b.invitee_id = ?1"),
            [invitee_id],
            binding_from_row,
        )
        .optional()?)
}

/// The binding whose reward came with the invitee's grant `grant_key`.
pub fn binding_rewarded_for(conn: &Connection, grant_key: &str) -> DbResult<Option<Binding>> {
    Ok(conn
        .query_row(
            &format!("SELECT {BINDING_COLUMNS} FROM referral_bindings b WHERE b.reward_for = ?1"),
            [grant_key],
            binding_from_row,
        )
        .optional()?)
}

/// An inviter's invitees, newest first, with the invitee's email.
pub fn invitees_of(conn: &Connection, inviter_id: &str) -> DbResult<Vec<Binding>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {BINDING_COLUMNS}, u.email FROM referral_bindings b
         JOIN users u ON u.id = b.invitee_id
         WHERE b.inviter_id = ?1 ORDER BY b.created_at DESC, b.id DESC"
    ))?;
    let rows = stmt.query_map([inviter_id], |row| {
        let mut b = binding_from_row(row)?;
        b.email = row.get(11)?;
        Ok(b)
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A binding as the admin console lists it: with both emails.
#[derive(Debug, Clone, PartialEq)]
pub struct BindingListing {
    pub binding: Binding,
    pub inviter_email: String,
    pub invitee_email: String,
}

/// The latest bindings, newest first.
pub fn recent_bindings(conn: &Connection, limit: u32) -> DbResult<Vec<BindingListing>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {BINDING_COLUMNS}, i.email, e.email FROM referral_bindings b
         JOIN users i ON i.id = b.inviter_id JOIN users e ON e.id = b.invitee_id
         ORDER BY b.created_at DESC, b.id DESC LIMIT ?1"
    ))?;
    let rows = stmt.query_map([limit], |row| {
        Ok(BindingListing {
            binding: binding_from_row(row)?,
            inviter_email: row.get(11)?,
            invitee_email: row.get(12)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Marks a binding rewarded (only once: false if it already was).
pub fn mark_rewarded(
    conn: &Connection,
    id: &str,
    credits: i64,
    reward_key: &str,
    reward_for: &str,
    now: i64,
) -> DbResult<bool> {
    let n = conn.execute(
        "UPDATE referral_bindings SET rewarded_at = ?2, reward_credits = ?3, reward_key = ?4,
             reward_for = ?5 WHERE id = ?1 AND rewarded_at IS NULL",
        params![id, now, credits, reward_key, reward_for],
    )?;
    Ok(n == 1)
}

/// Sets how much of a binding's reward has been reversed so far.
pub fn set_reward_reversed(conn: &Connection, id: &str, reversed: i64) -> DbResult<()> {
    conn.execute(
        "UPDATE referral_bindings SET reward_reversed = ?2 WHERE id = ?1",
        params![id, reversed],
    )?;
    Ok(())
}

/// A redeem code.
#[derive(Debug, Clone, PartialEq)]
pub struct RedeemCode {
    pub id: String,
    pub code: String,
    pub credit_amount: i64,
    pub max_uses: i64,
    pub used_count: i64,
    pub expires_at: Option<i64>,
    pub active: bool,
    pub note: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const CODE_COLUMNS: &str = "id, code, credit_amount, max_uses, used_count, expires_at, active,
    note, created_at, updated_at";

fn code_from_row(row: &Row<'_>) -> rusqlite::Result<RedeemCode> {
    Ok(RedeemCode {
        id: row.get(0)?,
        code: row.get(1)?,
        credit_amount: row.get(2)?,
        max_uses: row.get(3)?,
        used_count: row.get(4)?,
        expires_at: row.get(5)?,
        active: row.get(6)?,
        note: row.get(7)?,
        created_at: row.get(8)?,
        updated_at: row.get(9)?,
    })
}

/// Stores a new code; `Constraint` when the code exists.
pub fn insert_redeem_code(conn: &Connection, c: &RedeemCode) -> DbResult<()> {
    conn.execute(
        &format!("INSERT INTO redeem_codes ({CODE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
        params![
            c.id,
            c.code,
            c.credit_amount,
            c.max_uses,
            c.used_count,
            c.expires_at,
            c.active,
            c.note,
            c.created_at,
            c.updated_at
        ],
    )?;
    Ok(())
}

/// A code by its text (upper case) or id.
pub fn find_redeem_code(conn: &Connection, code_or_id: &str) -> DbResult<Option<RedeemCode>> {
    Ok(conn
        .query_row(
            &format!("SELECT {CODE_COLUMNS} FROM redeem_codes WHERE code = ?1 OR id = ?1"),
            [code_or_id],
            code_from_row,
        )
        .optional()?)
}

/// The newest codes first.
pub fn list_redeem_codes(conn: &Connection, limit: u32) -> DbResult<Vec<RedeemCode>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {CODE_COLUMNS} FROM redeem_codes ORDER BY created_at DESC, id DESC LIMIT ?1"
    ))?;
    let rows = stmt.query_map([limit], code_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Turns a code on or off; false when there is no such code.
pub fn set_redeem_active(conn: &Connection, id: &str, active: bool, now: i64) -> DbResult<bool> {
    let n = conn.execute(
        "UPDATE redeem_codes SET active = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, active, now],
    )?;
    Ok(n == 1)
}

/// Whether `user_id` has claimed the code.
pub fn has_claimed(conn: &Connection, code_id: &str, user_id: &str) -> DbResult<bool> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM redeem_code_claims WHERE redeem_code_id = ?1 AND user_id = ?2)",
        params![code_id, user_id],
        |r| r.get(0),
    )?)
}

/// Takes one use of a code; false when none is left.
pub fn take_use(conn: &Connection, id: &str, now: i64) -> DbResult<bool> {
    let n = conn.execute(
        "UPDATE redeem_codes SET used_count = used_count + 1, updated_at = ?2
         WHERE id = ?1 AND used_count < max_uses",
        params![id, now],
    )?;
    Ok(n == 1)
}

/// One user's claim of a code.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub id: String,
    pub redeem_code_id: String,
    pub user_id: String,
    pub code: String,
    pub credited_amount: i64,
    pub ledger_key: String,
    pub created_at: i64,
}

/// Records a claim; `Constraint` if the user claimed the code before.
pub fn insert_claim(conn: &Connection, c: &Claim) -> DbResult<()> {
    conn.execute(
        "INSERT INTO redeem_code_claims (id, redeem_code_id, user_id, code, credited_amount,
             ledger_key, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            c.id,
            c.redeem_code_id,
            c.user_id,
            c.code,
            c.credited_amount,
            c.ledger_key,
            c.created_at
        ],
    )?;
    Ok(())
}

/// A user's claims, newest first.
pub fn claims_of(conn: &Connection, user_id: &str) -> DbResult<Vec<Claim>> {
    let mut stmt = conn.prepare(
        "SELECT id, redeem_code_id, user_id, code, credited_amount, ledger_key, created_at
         FROM redeem_code_claims WHERE user_id = ?1 ORDER BY created_at DESC, id DESC",
    )?;
    let rows = stmt.query_map([user_id], |row| {
        Ok(Claim {
            id: row.get(0)?,
            redeem_code_id: row.get(1)?,
            user_id: row.get(2)?,
            code: row.get(3)?,
            credited_amount: row.get(4)?,
            ledger_key: row.get(5)?,
            created_at: row.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
