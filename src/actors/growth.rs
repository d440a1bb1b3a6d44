//! Invite codes and redeem codes. Every operation runs in the [`LedgerHandle`]'s actor,
//! so a binding, a claim and the credits they move are one transaction, serialised
//! with every other credit movement (a 5-use code grants exactly 5 times, however many
//! claim at once).
//!
//! Entry points for other front ends (`/rest/v1/rpc/bind_invite_code`,
//! `/rest/v1/rpc/claim_redeem_code`): [`LedgerHandle::bind_invite_code`],
//! [`LedgerHandle::claim_redeem_code`], and [`rpc_answer`] for the reference's
//! `{success, code, message}` answer shape.

use rusqlite::Connection;
use serde_json::{json, Value};

use super::ledger::{grant, reverse, LedgerHandle};
use crate::db::growth::{self as gdb, Binding, Claim, RedeemCode};
use crate::db::{new_id, DbError};
use crate::domain::credits::Bucket;
use crate::domain::time::now_ms;
use crate::domain::{ApiError, ErrorCode};
use crate::stripe::event::refund_share;

/// Longest code accepted from a person.
const MAX_CODE_LEN: usize = 64;

/// A successful binding.
#[derive(Debug, Clone, PartialEq)]
pub struct Bound {
    /// The inviter the caller is now bound to.
    pub inviter_id: String,
}

/// A successful claim of a redeem code.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    /// The claim's id.
    pub claim_id: String,
    /// Purchased credits granted.
    pub credits: i64,
    /// The caller's available credits after the grant.
    pub available_after: i64,
}

/// A code as typed by a person: trimmed and upper-cased; `INVALID_CODE` when empty or
/// longer than 64 characters.
pub fn normalize_code(raw: &str) -> Result<String, ApiError> {
    let code = raw.trim().to_ascii_uppercase();
    if code.is_empty() || code.len() > MAX_CODE_LEN || !code.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ApiError::new(ErrorCode::INVALID_CODE));
    }
    Ok(code)
}

impl LedgerHandle {
    /// `bind_invite_code(code)`: binds `user_id` to the owner of the invite code. The
    /// inviter will receive `rate` × the credits of the caller's first paid checkout.
    /// Errors: `INVALID_CODE`, `ALREADY_BOUND`, `PAID_USER_NOT_ALLOWED`,
    /// `CODE_NOT_FOUND`, `SELF_BIND_NOT_ALLOWED`.
    pub async fn bind_invite_code(
        &self,
        user_id: String,
        code: String,
        rate: f64,
    ) -> Result<Bound, ApiError> {
        self.run_with(false, move |conn| {
            bind_invite_code(conn, &user_id, &code, rate, now_ms())
        })
        .await
    }

    /// `claim_redeem_code(code)`: grants the code's credits (purchased bucket) once per
    /// user, at most `max_uses` times in all. Errors: `INVALID_CODE`, `CODE_NOT_FOUND`,
    /// `CODE_INACTIVE`, `CODE_EXPIRED`, `CODE_EXHAUSTED`, `ALREADY_CLAIMED`.
    pub async fn claim_redeem_code(
        &self,
        user_id: String,
        code: String,
    ) -> Result<Claimed, ApiError> {
        self.run_with(false, move |conn| {
            claim_redeem_code(conn, &user_id, &code, now_ms())
        })
        .await
    }
}

/// The reference's RPC answer: `{success: true, …value}` or
/// `{success: false, code, message}`.
pub fn rpc_answer(result: Result<Value, ApiError>) -> Value {
    match result {
        Ok(Value::Object(mut fields)) => {
            fields.insert("success".into(), Value::Bool(true));
            Value::Object(fields)
        }
        Ok(_) => json!({"success": true}),
        Err(err) => json!({"success": false, "code": err.code.as_str(), "message": err.message}),
    }
}

fn bind_invite_code(
    conn: &Connection,
    user_id: &str,
    raw_code: &str,
    rate: f64,
    now: i64,
) -> Result<Bound, ApiError> {
    let code = normalize_code(raw_code)?;
    if gdb::binding_of_invitee(conn, user_id)?.is_some() {
        return Err(ApiError::new(ErrorCode::ALREADY_BOUND));
    }
    if gdb::has_paid(conn, user_id)? {
        return Err(ApiError::new(ErrorCode::PAID_USER_NOT_ALLOWED));
    }
    let inviter_id = gdb::user_by_invite_code(conn, &code)?
        .ok_or_else(|| ApiError::new(ErrorCode::CODE_NOT_FOUND))?;
    if inviter_id == user_id {
        return Err(ApiError::new(ErrorCode::SELF_BIND_NOT_ALLOWED));
    }
    let binding = Binding {
        id: new_id(),
        inviter_id: inviter_id.clone(),
        invitee_id: user_id.to_string(),
        code,
        reward_rate: rate.clamp(0.0, 1.0),
        created_at: now,
        rewarded_at: None,
        reward_credits: 0,
        reward_key: None,
        reward_for: None,
        reward_reversed: 0,
        email: None,
    };
    match gdb::insert_binding(conn, &binding) {
        Ok(()) => Ok(Bound { inviter_id }),
        Err(DbError::Constraint(_)) => Err(ApiError::new(ErrorCode::ALREADY_BOUND)),
        Err(err) => Err(err.into()),
    }
}

fn claim_redeem_code(
    conn: &Connection,
    user_id: &str,
    raw_code: &str,
    now: i64,
) -> Result<Claimed, ApiError> {
    let text = normalize_code(raw_code)?;
    let code = gdb::find_redeem_code(conn, &text)?
        .filter(|c| c.code == text)
        .ok_or_else(|| ApiError::new(ErrorCode::CODE_NOT_FOUND))?;
    if !code.active {
        return Err(ApiError::new(ErrorCode::CODE_INACTIVE));
    }
    if code.expires_at.is_some_and(|at| at <= now) {
        return Err(ApiError::new(ErrorCode::CODE_EXPIRED));
    }
    if gdb::has_claimed(conn, &code.id, user_id)? {
        return Err(ApiError::new(ErrorCode::ALREADY_CLAIMED));
    }
    if !gdb::take_use(conn, &code.id, now)? {
        return Err(ApiError::new(ErrorCode::CODE_EXHAUSTED));
    }
    let key = format!("redeem:{}:{user_id}", code.id);
    let entry = grant(
        conn,
        user_id,
        Bucket::Purchased,
        code.credit_amount,
        &key,
        Some(&format!("redeem code {}", code.code)),
        None,
        "grant",
    )?;
    let claim = Claim {
        id: new_id(),
        redeem_code_id: code.id.clone(),
        user_id: user_id.to_string(),
        code: code.code.clone(),
        credited_amount: code.credit_amount,
        ledger_key: key,
        created_at: now,
    };
    match gdb::insert_claim(conn, &claim) {
        Ok(()) => {}
        Err(DbError::Constraint(_)) => return Err(ApiError::new(ErrorCode::ALREADY_CLAIMED)),
        Err(err) => return Err(err.into()),
    }
    Ok(Claimed {
        claim_id: claim.id,
        credits: code.credit_amount,
        available_after: entry.available_after,
    })
}

/// With the invitee's paid checkout (`grant_key` is its grant): the inviter's reward,
/// once per binding, in the caller's (the webhook's) transaction.
pub(super) fn reward_inviter(
    conn: &Connection,
    invitee_id: &str,
    package_credits: i64,
    grant_key: &str,
    stripe_event_id: &str,
    now: i64,
) -> Result<(), ApiError> {
    let Some(binding) = gdb::binding_of_invitee(conn, invitee_id)? else {
        return Ok(());
    };
    if binding.rewarded_at.is_some() {
        return Ok(());
    }
    let credits = (package_credits as f64 * binding.reward_rate).floor() as i64;
    let key = format!("invite:reward:{}", binding.id);
    if credits > 0 {
        grant(
            conn,
            &binding.inviter_id,
            Bucket::Purchased,
            credits,
            &key,
            Some("invite reward"),
            Some(stripe_event_id),
            "grant",
        )?;
    }
    gdb::mark_rewarded(conn, &binding.id, credits.max(0), &key, grant_key, now)?;
    Ok(())
}

/// With a refund of the invitee's payment whose grant is `grant_key`: reverses the same
/// share of the inviter's reward (never below zero available; a shortfall is debt).
pub(super) fn reverse_invite_reward(
    conn: &Connection,
    grant_key: &str,
    (amount, refunded, full): (i64, i64, bool),
    charge_id: &str,
    stripe_event_id: &str,
) -> Result<(), ApiError> {
    let Some(binding) = gdb::binding_rewarded_for(conn, grant_key)? else {
        return Ok(());
    };
    let (Some(reward_key), true) = (binding.reward_key.as_deref(), binding.reward_credits > 0)
    else {
        return Ok(());
    };
    let target = refund_share(binding.reward_credits, amount, refunded, full)
        .max(binding.reward_reversed)
        .min(binding.reward_credits);
    let delta = target - binding.reward_reversed;
    if delta <= 0 {
        return Ok(());
    }
    let key = format!("invite:refund:{charge_id}:{refunded}");
    reverse(
        conn,
        reward_key,
        Some(delta),
        &key,
        "refund of the invitee's payment",
        Some(stripe_event_id),
    )?;
    gdb::set_reward_reversed(conn, &binding.id, target)?;
    Ok(())
}

/// What an operator asks for when creating a redeem code.
#[derive(Debug, Clone, Default)]
pub struct NewRedeemCode {
    /// The code; `None` generates one (12 unambiguous characters).
    pub code: Option<String>,
    /// Purchased credits each claim grants (≥ 1).
    pub credit_amount: i64,
    /// How many users may claim it (≥ 1).
    pub max_uses: i64,
    /// Unix ms after which claims are refused.
    pub expires_at: Option<i64>,
    /// Whether it can be claimed now.
    pub active: bool,
    /// A note for operators.
    pub note: Option<String>,
}

/// Validates and stores a redeem code (for the admin API and `atelier codes create`);
/// `CONFLICT` when the code exists.
pub fn create_redeem_code(conn: &Connection, new: &NewRedeemCode) -> Result<RedeemCode, ApiError> {
    let code = match &new.code {
        Some(raw) => normalize_code(raw).map_err(|_| {
            ApiError::bad_field("code", "code must be 1 to 64 printable characters")
        })?,
        None => gdb::generate_redeem_code(),
    };
    if new.credit_amount < 1 || new.credit_amount > 1_000_000_000 {
        return Err(ApiError::bad_field(
            "credit_amount",
            "credit_amount must be a positive integer",
        ));
    }
    if new.max_uses < 1 {
        return Err(ApiError::bad_field(
            "max_uses",
            "max_uses must be at least 1",
        ));
    }
    if new.note.as_ref().is_some_and(|n| n.len() > 500) {
        return Err(ApiError::bad_field("note", "at most 500 characters"));
    }
    let now = now_ms();
    let stored = RedeemCode {
        id: new_id(),
        code,
        credit_amount: new.credit_amount,
        max_uses: new.max_uses,
        used_count: 0,
        expires_at: new.expires_at,
        active: new.active,
        note: new.note.clone(),
        created_at: now,
        updated_at: now,
    };
    match gdb::insert_redeem_code(conn, &stored) {
        Ok(()) => Ok(stored),
        Err(DbError::Constraint(_)) => Err(ApiError::with_message(
            ErrorCode::CONFLICT,
            "a redeem code with this text exists",
        )),
        Err(err) => Err(err.into()),
    }
}
