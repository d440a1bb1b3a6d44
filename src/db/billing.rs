//! Billing tables: `stripe_events`, `billing_profiles`, `checkout_sessions`, `payments`,
//! `refunds`. Each function runs in the caller's transaction.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{new_id, DbResult};

/// How an event was recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord<'a> {
    pub id: &'a str,
    pub kind: &'a str,
    pub created: i64,
    /// `applied`, `ignored` or `parked`.
    pub status: &'a str,
    pub user_id: Option<&'a str>,
    pub wait_for: Option<&'a str>,
    pub note: Option<&'a str>,
    pub payload: &'a str,
}

/// The recorded status of an event, if it was seen before.
pub fn event_status(conn: &Connection, id: &str) -> DbResult<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT status FROM stripe_events WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?)
}

/// Records (or, for a parked event now applied, updates) an event.
pub fn record_event(conn: &Connection, e: &EventRecord<'_>, now: i64) -> DbResult<()> {
    let applied_at = (e.status != "parked").then_some(now);
    conn.prepare_cached(
        "INSERT INTO stripe_events (id, type, created, status, user_id, wait_for, note, payload,
                                    received_at, applied_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (id) DO UPDATE SET status = excluded.status, user_id = excluded.user_id,
             wait_for = excluded.wait_for, note = excluded.note, applied_at = excluded.applied_at",
    )?
    .execute(params![
        e.id, e.kind, e.created, e.status, e.user_id, e.wait_for, e.note, e.payload, now,
        applied_at
    ])?;
    Ok(())
}

/// A recorded event as the admin console lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventSummary {
    pub id: String,
    pub kind: String,
    /// `applied`, `ignored` or `parked`.
    pub status: String,
    pub user_id: Option<String>,
    pub note: Option<String>,
    pub received_at: i64,
    pub applied_at: Option<i64>,
    /// A parked event: the Stripe object id it waits for.
    pub wait_for: Option<String>,
}

/// The most recently received events, newest first.
pub fn recent_events(conn: &Connection, limit: u32) -> DbResult<Vec<EventSummary>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SUMMARY_COLUMNS} FROM stripe_events
         ORDER BY received_at DESC, id DESC LIMIT ?1"
    ))?;
    let rows = stmt.query_map([limit], summary_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

const SUMMARY_COLUMNS: &str = "id, type, status, user_id, note, received_at, applied_at, wait_for";

fn summary_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventSummary> {
    Ok(EventSummary {
        id: r.get(0)?,
        kind: r.get(1)?,
        status: r.get(2)?,
        user_id: r.get(3)?,
        note: r.get(4)?,
        received_at: r.get(5)?,
        applied_at: r.get(6)?,
        wait_for: r.get(7)?,
    })
}

/// Events parked since before `cutoff` (unix ms) and still waiting.
pub fn count_parked_before(conn: &Connection, cutoff: i64) -> DbResult<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT COUNT(*) FROM stripe_events WHERE status = 'parked' AND received_at < ?1",
        )?
        .query_row([cutoff], |r| r.get(0))?)
}

/// Parked events, oldest first: what an operator looks at when one waits too long.
pub fn parked_events(conn: &Connection, limit: u32) -> DbResult<Vec<EventSummary>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SUMMARY_COLUMNS} FROM stripe_events WHERE status = 'parked'
         ORDER BY received_at, id LIMIT ?1"
    ))?;
    let rows = stmt.query_map([limit], summary_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Parked events waiting for any of `object_ids`, oldest first: `(id, payload)`.
pub fn parked_for(conn: &Connection, object_ids: &[&str]) -> DbResult<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut stmt = conn.prepare_cached(
        "SELECT id, payload FROM stripe_events WHERE status = 'parked' AND wait_for = ?1
         ORDER BY created, received_at",
    )?;
    for object_id in object_ids {
        let rows = stmt.query_map([object_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        for row in rows {
            out.push(row?);
        }
    }
    Ok(out)
}

/// A user's Stripe customer and subscription.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Profile {
    pub user_id: String,
    pub customer_id: Option<String>,
    pub subscription_id: Option<String>,
    pub package_id: Option<String>,
    pub status: Option<String>,
    pub current_period_end: Option<i64>,
    pub status_at: i64,
}

const PROFILE_COLUMNS: &str =
    "user_id, customer_id, subscription_id, package_id, status, current_period_end, status_at";

fn profile_from_row(r: &Row<'_>) -> rusqlite::Result<Profile> {
    Ok(Profile {
        user_id: r.get(0)?,
        customer_id: r.get(1)?,
        subscription_id: r.get(2)?,
        package_id: r.get(3)?,
        status: r.get(4)?,
        current_period_end: r.get(5)?,
        status_at: r.get(6)?,
    })
}

/// A profile found by `column` (`user_id`, `customer_id` or `subscription_id`).
pub fn profile_by(conn: &Connection, column: ProfileKey, value: &str) -> DbResult<Option<Profile>> {
    let column = match column {
        ProfileKey::User => "user_id",
        ProfileKey::Customer => "customer_id",
        ProfileKey::Subscription => "subscription_id",
    };
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {PROFILE_COLUMNS} FROM billing_profiles WHERE {column} = ?1"
        ))?
        .query_row([value], profile_from_row)
        .optional()?)
}

/// Which column finds a profile.
#[derive(Debug, Clone, Copy)]
pub enum ProfileKey {
    User,
    Customer,
    Subscription,
}

/// Saves a user's customer id (creating the profile if needed; an existing one is kept).
pub fn set_customer(conn: &Connection, user_id: &str, customer_id: &str, now: i64) -> DbResult<()> {
    conn.prepare_cached(
        "INSERT INTO billing_profiles (user_id, customer_id, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (user_id) DO UPDATE SET
             customer_id = COALESCE(billing_profiles.customer_id, excluded.customer_id),
             updated_at = excluded.updated_at",
    )?
    .execute(params![user_id, customer_id, now])?;
    Ok(())
}

/// Makes `subscription_id` the user's current subscription with its plan; its status is
/// set too unless a newer event already set one for that same subscription.
pub fn set_subscription(
    conn: &Connection,
    user_id: &str,
    subscription_id: &str,
    package_id: Option<&str>,
    status: &str,
    status_at: i64,
    now: i64,
) -> DbResult<()> {
    conn.prepare_cached(
        "INSERT INTO billing_profiles (user_id, subscription_id, package_id, status, status_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (user_id) DO UPDATE SET
             package_id = COALESCE(excluded.package_id, billing_profiles.package_id),
             status = CASE WHEN billing_profiles.subscription_id IS excluded.subscription_id
                           AND billing_profiles.status_at > excluded.status_at
                           THEN billing_profiles.status ELSE excluded.status END,
             status_at = CASE WHEN billing_profiles.subscription_id IS excluded.subscription_id
                           AND billing_profiles.status_at > excluded.status_at
                           THEN billing_profiles.status_at ELSE excluded.status_at END,
             subscription_id = excluded.subscription_id,
             updated_at = excluded.updated_at",
    )?
    .execute(params![user_id, subscription_id, package_id, status, status_at, now])?;
    Ok(())
}

/// Sets a subscription's status (and period end when known) if `status_at` is not older
/// than the status it has. Returns whether it changed anything.
pub fn set_status(
    conn: &Connection,
    subscription_id: &str,
    status: &str,
    period_end: Option<i64>,
    status_at: i64,
    now: i64,
) -> DbResult<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE billing_profiles SET status = ?2,
                 current_period_end = COALESCE(?3, current_period_end),
                 status_at = ?4, updated_at = ?5
             WHERE subscription_id = ?1 AND status_at <= ?4",
        )?
        .execute(params![subscription_id, status, period_end, status_at, now])?;
    Ok(n > 0)
}

/// Changes a subscription's plan (a change made in the portal).
pub fn set_plan(
    conn: &Connection,
    subscription_id: &str,
    package_id: &str,
    now: i64,
) -> DbResult<()> {
    conn.prepare_cached(
        "UPDATE billing_profiles SET package_id = ?2, updated_at = ?3 WHERE subscription_id = ?1",
    )?
    .execute(params![subscription_id, package_id, now])?;
    Ok(())
}

/// Moves a subscription's period end forward (never back).
pub fn extend_period(conn: &Connection, subscription_id: &str, end: i64, now: i64) -> DbResult<()> {
    conn.prepare_cached(
        "UPDATE billing_profiles SET current_period_end = ?2, updated_at = ?3
         WHERE subscription_id = ?1 AND (current_period_end IS NULL OR current_period_end < ?2)",
    )?
    .execute(params![subscription_id, end, now])?;
    Ok(())
}

/// A checkout session Atelier opened.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckoutSession {
    pub id: String,
    pub user_id: String,
    pub package_id: String,
    pub purchase_type: String,
    pub currency: String,
    pub amount: i64,
    pub success_url: String,
    pub cancel_url: String,
    pub status: String,
    pub created_at: i64,
}

/// Stores a new session.
pub fn insert_session(conn: &Connection, s: &CheckoutSession) -> DbResult<()> {
    conn.execute(
        "INSERT INTO checkout_sessions (id, user_id, package_id, purchase_type, currency, amount,
             success_url, cancel_url, status, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            s.id,
            s.user_id,
            s.package_id,
            s.purchase_type,
            s.currency,
            s.amount,
            s.success_url,
            s.cancel_url,
            s.status,
            s.created_at
        ],
    )?;
    Ok(())
}

/// A session by id.
pub fn find_session(conn: &Connection, id: &str) -> DbResult<Option<CheckoutSession>> {
    Ok(conn
        .prepare_cached(
            "SELECT id, user_id, package_id, purchase_type, currency, amount, success_url,
                    cancel_url, status, created_at FROM checkout_sessions WHERE id = ?1",
        )?
        .query_row([id], |r| {
            Ok(CheckoutSession {
                id: r.get(0)?,
                user_id: r.get(1)?,
                package_id: r.get(2)?,
                purchase_type: r.get(3)?,
                currency: r.get(4)?,
                amount: r.get(5)?,
                success_url: r.get(6)?,
                cancel_url: r.get(7)?,
                status: r.get(8)?,
                created_at: r.get(9)?,
            })
        })
        .optional()?)
}

/// Closes an open session as `complete` or `canceled`; false if it was not open.
pub fn close_session(conn: &Connection, id: &str, status: &str) -> DbResult<bool> {
    let n = conn.execute(
        "UPDATE checkout_sessions SET status = ?2 WHERE id = ?1 AND status = 'open'",
        params![id, status],
    )?;
    Ok(n > 0)
}

/// Money received and the credits it granted.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Payment {
    pub id: String,
    pub user_id: String,
    pub kind: String,
    pub package_id: Option<String>,
    pub checkout_session_id: Option<String>,
    pub invoice_id: Option<String>,
    pub payment_intent_id: Option<String>,
    pub subscription_id: Option<String>,
    pub amount: i64,
    pub currency: String,
    pub credits: i64,
    pub grant_key: String,
    pub bonus: i64,
    pub bonus_key: Option<String>,
    pub amount_refunded: i64,
    pub credits_reversed: i64,
    pub bonus_reversed: i64,
    pub stripe_event_id: String,
    pub created_at: i64,
}

const PAYMENT_COLUMNS: &str = "id, user_id, kind, package_id, checkout_session_id, invoice_id,
    payment_intent_id, subscription_id, amount, currency, credits, grant_key, bonus, bonus_key,
    amount_refunded, credits_reversed, bonus_reversed, stripe_event_id, created_at";

fn payment_from_row(r: &Row<'_>) -> rusqlite::Result<Payment> {
    Ok(Payment {
        id: r.get(0)?,
        user_id: r.get(1)?,
        kind: r.get(2)?,
        package_id: r.get(3)?,
        checkout_session_id: r.get(4)?,
        invoice_id: r.get(5)?,
        payment_intent_id: r.get(6)?,
        subscription_id: r.get(7)?,
        amount: r.get(8)?,
        currency: r.get(9)?,
        credits: r.get(10)?,
        grant_key: r.get(11)?,
        bonus: r.get(12)?,
        bonus_key: r.get(13)?,
        amount_refunded: r.get(14)?,
        credits_reversed: r.get(15)?,
        bonus_reversed: r.get(16)?,
        stripe_event_id: r.get(17)?,
        created_at: r.get(18)?,
    })
}

/// Stores a payment (its id is assigned here and returned).
pub fn insert_payment(conn: &Connection, p: &Payment) -> DbResult<String> {
    let id = new_id();
    conn.prepare_cached(&format!(
        "INSERT INTO payments ({PAYMENT_COLUMNS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, 0, 0, 0, ?15, ?16)"
    ))?
    .execute(params![
        id,
        p.user_id,
        p.kind,
        p.package_id,
        p.checkout_session_id,
        p.invoice_id,
        p.payment_intent_id,
        p.subscription_id,
        p.amount,
        p.currency,
        p.credits,
        p.grant_key,
        p.bonus,
        p.bonus_key,
        p.stripe_event_id,
        p.created_at
    ])?;
    Ok(id)
}

/// Which column finds a payment.
#[derive(Debug, Clone, Copy)]
pub enum PaymentKey {
    Id,
    Session,
    Invoice,
    PaymentIntent,
    /// The first payment of a subscription (its checkout).
    SubscriptionStart,
}

/// A payment found by one of its ids.
pub fn payment_by(conn: &Connection, key: PaymentKey, value: &str) -> DbResult<Option<Payment>> {
    let filter = match key {
        PaymentKey::Id => "id = ?1",
        PaymentKey::Session => "checkout_session_id = ?1",
        PaymentKey::Invoice => "invoice_id = ?1",
        PaymentKey::PaymentIntent => "payment_intent_id = ?1",
        PaymentKey::SubscriptionStart => "subscription_id = ?1 AND kind = 'subscription'",
    };
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE {filter} LIMIT 1"
        ))?
        .query_row([value], payment_from_row)
        .optional()?)
}

/// Attaches Stripe ids learnt later (the first invoice, its payment intent) to a payment.
pub fn attach_ids(
    conn: &Connection,
    payment_id: &str,
    invoice_id: Option<&str>,
    payment_intent_id: Option<&str>,
) -> DbResult<()> {
    conn.prepare_cached(
        "UPDATE payments SET invoice_id = COALESCE(invoice_id, ?2),
             payment_intent_id = COALESCE(payment_intent_id, ?3)
         WHERE id = ?1",
    )?
    .execute(params![payment_id, invoice_id, payment_intent_id])?;
    Ok(())
}

/// A payment's cumulative refund totals after a refund event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefundTotals {
    /// Minor units refunded so far.
    pub refunded: i64,
    /// Plan credits reversed so far.
    pub credits_reversed: i64,
    /// Bonus credits reversed so far.
    pub bonus_reversed: i64,
}

/// Records a refund against a payment and its new cumulative totals.
pub fn record_refund(
    conn: &Connection,
    payment: &Payment,
    charge_id: &str,
    totals: RefundTotals,
    event_id: &str,
    now: i64,
) -> DbResult<()> {
    let this_refund = totals.refunded - payment.amount_refunded;
    let this_credits = totals.credits_reversed - payment.credits_reversed + totals.bonus_reversed
        - payment.bonus_reversed;
    conn.prepare_cached(
        "UPDATE payments SET amount_refunded = ?2, credits_reversed = ?3, bonus_reversed = ?4
         WHERE id = ?1",
    )?
    .execute(params![
        payment.id,
        totals.refunded,
        totals.credits_reversed,
        totals.bonus_reversed
    ])?;
    conn.prepare_cached(
        "INSERT INTO refunds (id, payment_id, user_id, charge_id, amount, credits_reversed,
                              stripe_event_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        new_id(),
        payment.id,
        payment.user_id,
        charge_id,
        this_refund,
        this_credits,
        event_id,
        now
    ])?;
    Ok(())
}

/// One line of a user's billing history.
#[derive(Debug, Clone, PartialEq)]
pub struct Transaction {
    pub id: String,
    /// `one_time`, `subscription`, `renewal` or `refund`.
    pub kind: String,
    pub package_id: Option<String>,
    pub payment_id: String,
    pub amount: i64,
    pub currency: String,
    /// Credits granted (payments, bonus included) or reversed (refunds).
    pub credits: i64,
    pub amount_refunded: i64,
    pub stripe_event_id: String,
    pub created_at: i64,
}

/// A user's payments and refunds, newest first, strictly older than `before` (an id).
pub fn transactions(
    conn: &Connection,
    user_id: &str,
    limit: u32,
    before: Option<&str>,
) -> DbResult<Vec<Transaction>> {
    let mut stmt = conn.prepare_cached(
        "SELECT * FROM (
             SELECT id, kind, package_id, id AS payment_id, amount, currency, credits + bonus,
                    amount_refunded, stripe_event_id, created_at
             FROM payments WHERE user_id = ?1
             UNION ALL
             SELECT r.id, 'refund', p.package_id, r.payment_id, r.amount, p.currency,
                    r.credits_reversed, r.amount, r.stripe_event_id, r.created_at
             FROM refunds r JOIN payments p ON p.id = r.payment_id WHERE r.user_id = ?1)
         WHERE (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![user_id, before, limit], |r| {
        Ok(Transaction {
            id: r.get(0)?,
            kind: r.get(1)?,
            package_id: r.get(2)?,
            payment_id: r.get(3)?,
            amount: r.get(4)?,
            currency: r.get(5)?,
            credits: r.get(6)?,
            amount_refunded: r.get(7)?,
            stripe_event_id: r.get(8)?,
            created_at: r.get(9)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
