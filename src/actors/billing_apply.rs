//! Applying a verified Stripe event inside one ledger transaction: the event is claimed
//! (recorded in `stripe_events`) together with every credit row and billing change it
//! causes, or nothing happens. Events that refer to something not seen yet are parked
//! and applied when it arrives, so out-of-order delivery loses nothing.

use rusqlite::Connection;
use serde_json::Value;

use super::ledger::{grant, reverse};
use crate::db::billing::{self as bdb, EventRecord, Payment, PaymentKey, ProfileKey, RefundTotals};
use crate::db::ledger as ldb;
use crate::db::{accounts, packages};
use crate::domain::credits::Bucket;
use crate::domain::ApiError;
use crate::stripe::event::{self as ev, Event};

/// What happened to an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Applied now (credits or billing state changed).
    Applied,
    /// Recorded, nothing to do (unknown type, unpaid session, unknown user …).
    Ignored(String),
    /// Recorded; applied once the object it waits for arrives.
    Parked(String),
    /// Seen before: nothing changed.
    AlreadyDone,
}

impl Applied {
    /// A short label for logs and metrics: `applied`, `ignored`, `parked`, `duplicate`.
    pub fn label(&self) -> &'static str {
        match self {
            Applied::Applied => "applied",
            Applied::Ignored(_) => "ignored",
            Applied::Parked(_) => "parked",
            Applied::AlreadyDone => "duplicate",
        }
    }
}

/// How one handler ended.
struct Outcome {
    status: &'static str,
    user_id: Option<String>,
    wait_for: Option<String>,
    note: Option<String>,
    /// Stripe ids that parked events may be waiting for.
    unlocks: Vec<String>,
}

impl Outcome {
    fn applied(user_id: &str, unlocks: Vec<Option<&str>>) -> Outcome {
        Outcome {
            status: "applied",
            user_id: Some(user_id.to_string()),
            wait_for: None,
            note: None,
            unlocks: unlocks.into_iter().flatten().map(str::to_string).collect(),
        }
    }

    fn ignored(note: impl Into<String>) -> Outcome {
        Outcome {
            status: "ignored",
            user_id: None,
            wait_for: None,
            note: Some(note.into()),
            unlocks: Vec::new(),
        }
    }

    fn parked(wait_for: &str) -> Outcome {
        Outcome {
            status: "parked",
            user_id: None,
            wait_for: Some(wait_for.to_string()),
            note: Some(format!("waiting for {wait_for}")),
            unlocks: Vec::new(),
        }
    }

    fn note(mut self, note: impl Into<String>) -> Outcome {
        self.note = Some(note.into());
        self
    }
}

/// How deep parked events may unlock further parked events.
const MAX_UNLOCK_DEPTH: u32 = 4;

/// Claims and applies `event` in the caller's transaction (exactly once per event id).
pub fn apply_event(conn: &Connection, event: &Event, now: i64) -> Result<Applied, ApiError> {
    if bdb::event_status(conn, &event.id)?.is_some() {
        return Ok(Applied::AlreadyDone);
    }
    let outcome = dispatch(conn, event, now)?;
    let answer = match outcome.status {
        "applied" => Applied::Applied,
        "parked" => Applied::Parked(outcome.note.clone().unwrap_or_default()),
        _ => Applied::Ignored(outcome.note.clone().unwrap_or_default()),
    };
    finish(conn, event, outcome, now, 0)?;
    Ok(answer)
}

/// Records the outcome and applies the parked events it unlocks.
fn finish(
    conn: &Connection,
    event: &Event,
    outcome: Outcome,
    now: i64,
    depth: u32,
) -> Result<(), ApiError> {
    let payload = event.raw.to_string();
    bdb::record_event(
        conn,
        &EventRecord {
            id: &event.id,
            kind: &event.kind,
            created: event.created,
            status: outcome.status,
            user_id: outcome.user_id.as_deref(),
            wait_for: outcome.wait_for.as_deref(),
            note: outcome.note.as_deref(),
            payload: &payload,
        },
        now,
    )?;
    if depth >= MAX_UNLOCK_DEPTH || outcome.unlocks.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = outcome.unlocks.iter().map(String::as_str).collect();
    for (id, payload) in bdb::parked_for(conn, &ids)? {
        let parked = serde_json::from_str::<Value>(&payload)
            .ok()
            .and_then(Event::parse);
        let Some(parked) = parked else {
            tracing::warn!(event_id = %id, "a parked event no longer parses; left parked");
            continue;
        };
        let outcome = dispatch(conn, &parked, now)?;
        if outcome.status == "parked"
            && outcome
                .wait_for
                .as_deref()
                .is_some_and(|w| ids.contains(&w))
        {
            // Still waiting for the same thing: leave it as it was.
            continue;
        }
        tracing::info!(event_id = %id, kind = %parked.kind, status = outcome.status,
            "applied a parked stripe event");
        finish(conn, &parked, outcome, now, depth + 1)?;
    }
    Ok(())
}

fn dispatch(conn: &Connection, event: &Event, now: i64) -> Result<Outcome, ApiError> {
    match event.kind.as_str() {
        "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {
            checkout_completed(conn, event, now)
        }
        "checkout.session.async_payment_failed" => async_payment_failed(conn, event),
        "invoice.paid" => invoice_paid(conn, event, now),
        "invoice.payment_failed" => invoice_failed(conn, event, now),
        "customer.subscription.updated" => subscription_changed(conn, event, false, now),
        "customer.subscription.deleted" => subscription_changed(conn, event, true, now),
        "charge.refunded" => charge_refunded(conn, event, now),
        "invoice_payment.paid" => invoice_payment_paid(conn, event),
        other => Ok(Outcome::ignored(format!("{other} is not handled"))),
    }
}

/// The user named by `user_id`, if that account exists.
fn known_user(conn: &Connection, user_id: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(user_id) = user_id else {
        return Ok(None);
    };
    Ok(accounts::find_by_id(conn, user_id)?.map(|u| u.id))
}

fn checkout_completed(conn: &Connection, event: &Event, now: i64) -> Result<Outcome, ApiError> {
    let s = &event.object;
    let Some(session_id) = ev::text(s, "id") else {
        return Ok(Outcome::ignored("session without id"));
    };
    if !ev::session_paid(s) {
        return Ok(Outcome::ignored("session not paid (yet)"));
    }
    let metadata = &s["metadata"];
    let user_hint = ev::text(metadata, "user_id").or_else(|| ev::text(s, "client_reference_id"));
    let Some(user_id) = known_user(conn, user_hint)? else {
        return Ok(Outcome::ignored("no known user in the session"));
    };
    let package = match ev::text(metadata, "package_id") {
        Some(id) => packages::find(conn, id)?,
        None => None,
    };
    let Some(package) = package else {
        return Ok(Outcome::ignored("no known package in the session"));
    };
    if bdb::payment_by(conn, PaymentKey::Session, session_id)?.is_some() {
        return Ok(Outcome::applied(&user_id, vec![]).note("session already granted"));
    }
    let subscription = match ev::text(s, "mode") {
        Some("subscription") => true,
        Some("payment") => false,
        _ => return Ok(Outcome::ignored("not a payment or subscription session")),
    };
    let customer = ev::id_of(s, "customer");
    if let Some(customer) = customer {
        bdb::set_customer(conn, &user_id, customer, now)?;
    }
    let grant_key = format!("stripe:checkout:{session_id}");
    let (bucket, kind) = if subscription {
        (Bucket::Subscription, "subscription")
    } else {
        (Bucket::Purchased, "one_time")
    };
    let reason = format!("{} ({})", package.name, kind.replace('_', "-"));
    grant(
        conn,
        &user_id,
        bucket,
        package.credits,
        &grant_key,
        Some(&reason),
        Some(&event.id),
        "grant",
    )?;
    super::growth::reward_inviter(conn, &user_id, package.credits, &grant_key, &event.id, now)?;
    let subscription_id = ev::id_of(s, "subscription");
    let invoice_id = ev::id_of(s, "invoice");
    let payment_intent = ev::id_of(s, "payment_intent");
    let (mut bonus, mut bonus_key) = (0, None);
    if subscription {
        if let Some(sub) = subscription_id {
            bdb::set_subscription(
                conn,
                &user_id,
                sub,
                Some(&package.id),
                "active",
                event.created,
                now,
            )?;
        }
        let key = format!("stripe:first-sub-bonus:{user_id}");
        if package.first_sub_bonus > 0 && ldb::find_by_key(conn, &key)?.is_none() {
            grant(
                conn,
                &user_id,
                Bucket::Subscription,
                package.first_sub_bonus,
                &key,
                Some("first subscription bonus"),
                Some(&event.id),
                "grant",
            )?;
            bonus = package.first_sub_bonus;
            bonus_key = Some(key);
        }
    } else {
        // The reference's first one-time purchase bonus: a pack's bonus, once per user.
        let key = format!("stripe:first-purchase-bonus:{user_id}");
        if package.first_sub_bonus > 0 && ldb::find_by_key(conn, &key)?.is_none() {
            grant(
                conn,
                &user_id,
                Bucket::Purchased,
                package.first_sub_bonus,
                &key,
                Some("first purchase bonus"),
                Some(&event.id),
                "grant",
            )?;
            bonus = package.first_sub_bonus;
            bonus_key = Some(key);
        }
    }
    bdb::insert_payment(
        conn,
        &Payment {
            user_id: user_id.clone(),
            kind: kind.to_string(),
            package_id: Some(package.id.clone()),
            checkout_session_id: Some(session_id.to_string()),
            invoice_id: invoice_id.map(str::to_string),
            payment_intent_id: payment_intent.map(str::to_string),
            subscription_id: subscription_id.map(str::to_string),
            amount: s["amount_total"]
                .as_i64()
                .unwrap_or(package.price_usd_cents),
            currency: ev::text(s, "currency").unwrap_or("usd").to_string(),
            credits: package.credits,
            grant_key: grant_key.clone(),
            bonus,
            bonus_key,
            stripe_event_id: event.id.clone(),
            created_at: now,
            ..Payment::default()
        },
    )?;
    receipt(
        conn,
        &user_id,
        &package,
        s["amount_total"].as_i64(),
        s,
        &grant_key,
    )?;
    bdb::close_session(conn, session_id, "complete")?;
    Ok(Outcome::applied(
        &user_id,
        vec![
            subscription_id,
            invoice_id,
            payment_intent,
            Some(session_id),
        ],
    ))
}

/// Queues the payer's receipt for a payment of `package` (once per grant key).
fn receipt(
    conn: &Connection,
    user_id: &str,
    package: &crate::db::packages::Package,
    amount: Option<i64>,
    object: &serde_json::Value,
    grant_key: &str,
) -> Result<(), ApiError> {
    crate::mail::receipt::queue_receipt(
        conn,
        &crate::mail::receipt::Paid {
            user_id,
            package: &package.name,
            credits: package.credits,
            amount: amount.unwrap_or(package.price_usd_cents),
            currency: ev::text(object, "currency").unwrap_or("usd"),
            grant_key,
        },
    )?;
    Ok(())
}

/// A delayed payment method (Alipay, WeChat Pay …) failed: the session is over and
/// grants nothing.
fn async_payment_failed(conn: &Connection, event: &Event) -> Result<Outcome, ApiError> {
    let s = &event.object;
    let Some(session_id) = ev::text(s, "id") else {
        return Ok(Outcome::ignored("session without id"));
    };
    if bdb::payment_by(conn, PaymentKey::Session, session_id)?.is_some() {
        return Ok(Outcome::ignored("session already paid"));
    }
    bdb::close_session(conn, session_id, "canceled")?;
    Ok(Outcome::ignored(
        "asynchronous payment failed; nothing granted",
    ))
}

fn invoice_paid(conn: &Connection, event: &Event, now: i64) -> Result<Outcome, ApiError> {
    let inv = &event.object;
    let Some(invoice_id) = ev::text(inv, "id") else {
        return Ok(Outcome::ignored("invoice without id"));
    };
    let subscription = ev::invoice_subscription(inv);
    let payment_intent = ev::invoice_payment_intent(inv);
    if ev::text(inv, "billing_reason") == Some("subscription_create") {
        // The checkout grants the first period; remember the ids refunds will name.
        let first = match bdb::payment_by(conn, PaymentKey::Invoice, invoice_id)? {
            Some(p) => Some(p),
            None => match subscription {
                Some(sub) => bdb::payment_by(conn, PaymentKey::SubscriptionStart, sub)?,
                None => None,
            },
        };
        return Ok(match (first, subscription) {
            (Some(p), _) => {
                bdb::attach_ids(conn, &p.id, Some(invoice_id), payment_intent)?;
                Outcome::applied(&p.user_id, vec![Some(invoice_id), payment_intent])
                    .note("first invoice: credits came with the checkout")
            }
            (None, Some(sub)) => Outcome::parked(sub),
            (None, None) => Outcome::ignored("first invoice without a subscription"),
        });
    }
    if let Some(p) = bdb::payment_by(conn, PaymentKey::Invoice, invoice_id)? {
        return Ok(Outcome::applied(&p.user_id, vec![]).note("invoice already granted"));
    }
    let metadata = ev::invoice_metadata(inv);
    let profile = match subscription {
        Some(sub) => bdb::profile_by(conn, ProfileKey::Subscription, sub)?,
        None => None,
    };
    let user_id = match known_user(conn, ev::text(metadata, "user_id"))? {
        Some(id) => Some(id),
        None => profile.as_ref().map(|p| p.user_id.clone()),
    };
    // The plan paid for: the invoice's price (a plan changed in the portal), else the
    // subscription's metadata, else the plan on record.
    let mut package = match ev::invoice_price(inv) {
        Some(price) => packages::find_by_price(conn, price)?,
        None => None,
    };
    let fallback = ev::text(metadata, "package_id")
        .map(str::to_string)
        .or_else(|| profile.as_ref().and_then(|p| p.package_id.clone()));
    if package.is_none() {
        if let Some(id) = &fallback {
            package = packages::find(conn, id)?;
        }
    }
    let (Some(user_id), Some(package)) = (user_id, package) else {
        return Ok(match subscription {
            Some(sub) => Outcome::parked(sub),
            None => Outcome::ignored("invoice for no known subscription"),
        });
    };
    let grant_key = format!("stripe:invoice:{invoice_id}");
    grant(
        conn,
        &user_id,
        Bucket::Subscription,
        package.credits,
        &grant_key,
        Some(&format!("{} (renewal)", package.name)),
        Some(&event.id),
        "grant",
    )?;
    bdb::insert_payment(
        conn,
        &Payment {
            user_id: user_id.clone(),
            kind: "renewal".into(),
            package_id: Some(package.id.clone()),
            invoice_id: Some(invoice_id.to_string()),
            payment_intent_id: payment_intent.map(str::to_string),
            subscription_id: subscription.map(str::to_string),
            amount: inv["amount_paid"].as_i64().unwrap_or(0),
            currency: ev::text(inv, "currency").unwrap_or("usd").to_string(),
            credits: package.credits,
            grant_key: grant_key.clone(),
            stripe_event_id: event.id.clone(),
            created_at: now,
            ..Payment::default()
        },
    )?;
    receipt(
        conn,
        &user_id,
        &package,
        inv["amount_paid"].as_i64(),
        inv,
        &grant_key,
    )?;
    if let Some(sub) = subscription {
        bdb::set_status(conn, sub, "active", None, event.created, now)?;
        if let Some(end) = ev::invoice_period_end(inv) {
            bdb::extend_period(conn, sub, end, now)?;
        }
    }
    Ok(Outcome::applied(
        &user_id,
        vec![Some(invoice_id), payment_intent],
    ))
}

fn invoice_failed(conn: &Connection, event: &Event, now: i64) -> Result<Outcome, ApiError> {
    let Some(sub) = ev::invoice_subscription(&event.object) else {
        return Ok(Outcome::ignored("invoice without a subscription"));
    };
    let Some(profile) = bdb::profile_by(conn, ProfileKey::Subscription, sub)? else {
        return Ok(Outcome::parked(sub));
    };
    let changed = bdb::set_status(conn, sub, "past_due", None, event.created, now)?;
    let outcome = Outcome::applied(&profile.user_id, vec![]);
    Ok(if changed {
        outcome
    } else {
        outcome.note("a newer status is kept")
    })
}

fn subscription_changed(
    conn: &Connection,
    event: &Event,
    deleted: bool,
    now: i64,
) -> Result<Outcome, ApiError> {
    let s = &event.object;
    let Some(sub) = ev::text(s, "id") else {
        return Ok(Outcome::ignored("subscription without id"));
    };
    let status = if deleted {
        "canceled"
    } else {
        ev::map_status(ev::text(s, "status").unwrap_or(""))
    };
    let period_end = ev::subscription_period_end(s);
    let user_id = match bdb::profile_by(conn, ProfileKey::Subscription, sub)? {
        Some(profile) => profile.user_id,
        None => {
            // Not seen through a checkout yet: its metadata names the user.
            let Some(user_id) = known_user(conn, ev::text(&s["metadata"], "user_id"))? else {
                return Ok(Outcome::parked(sub));
            };
            let current = bdb::profile_by(conn, ProfileKey::User, &user_id)?;
            let replaces = current.as_ref().is_none_or(|p| {
                p.subscription_id.is_none() || p.status.as_deref() == Some("canceled")
            });
            if !replaces {
                return Ok(Outcome::ignored("not the user's current subscription"));
            }
            bdb::set_subscription(
                conn,
                &user_id,
                sub,
                ev::text(&s["metadata"], "package_id"),
                status,
                event.created,
                now,
            )?;
            user_id
        }
    };
    let changed = bdb::set_status(conn, sub, status, period_end, event.created, now)?;
    if changed {
        if let Some(plan) = ev::subscription_price(s) {
            if let Some(package) = packages::find_by_price(conn, plan)? {
                bdb::set_plan(conn, sub, &package.id, now)?;
            }
        }
    }
    let outcome = Outcome::applied(&user_id, vec![]);
    Ok(if changed {
        outcome
    } else {
        outcome.note("a newer status is kept")
    })
}

/// `invoice_payment.paid` (API 2025-03-31 and later): the only place that links an
/// invoice to its payment intent, since invoices no longer carry `payment_intent` and
/// charges no longer carry `invoice`. Without it a renewal's refund, which names only
/// the payment intent, could not find its payment.
fn invoice_payment_paid(conn: &Connection, event: &Event) -> Result<Outcome, ApiError> {
    let object = &event.object;
    let Some(invoice_id) = ev::id_of(object, "invoice") else {
        return Ok(Outcome::ignored("invoice payment without an invoice"));
    };
    let Some(payment_intent) = ev::id_of(&object["payment"], "payment_intent") else {
        return Ok(Outcome::ignored("invoice payment without a payment intent"));
    };
    Ok(
        match bdb::payment_by(conn, PaymentKey::Invoice, invoice_id)? {
            Some(p) => {
                bdb::attach_ids(conn, &p.id, None, Some(payment_intent))?;
                Outcome::applied(&p.user_id, vec![Some(payment_intent)])
                    .note("linked the invoice to its payment intent")
            }
            None => Outcome::parked(invoice_id),
        },
    )
}

fn charge_refunded(conn: &Connection, event: &Event, now: i64) -> Result<Outcome, ApiError> {
    let ch = &event.object;
    let Some(charge_id) = ev::text(ch, "id") else {
        return Ok(Outcome::ignored("charge without id"));
    };
    let payment_intent = ev::id_of(ch, "payment_intent");
    let invoice = ev::id_of(ch, "invoice");
    let mut payment = None;
    if let Some(pi) = payment_intent {
        payment = bdb::payment_by(conn, PaymentKey::PaymentIntent, pi)?;
    }
    if payment.is_none() {
        if let Some(inv) = invoice {
            payment = bdb::payment_by(conn, PaymentKey::Invoice, inv)?;
        }
    }
    let Some(payment) = payment else {
        return Ok(match payment_intent.or(invoice) {
            Some(wait) => Outcome::parked(wait),
            None => Outcome::ignored("refund of no known payment"),
        });
    };
    let amount = ch["amount"]
        .as_i64()
        .filter(|a| *a > 0)
        .unwrap_or(payment.amount);
    let refunded = ch["amount_refunded"]
        .as_i64()
        .unwrap_or(0)
        .max(payment.amount_refunded);
    let full = ch["refunded"].as_bool().unwrap_or(false);
    let credits_target =
        ev::refund_share(payment.credits, amount, refunded, full).max(payment.credits_reversed);
    let bonus_target =
        ev::refund_share(payment.bonus, amount, refunded, full).max(payment.bonus_reversed);
    if refunded == payment.amount_refunded
        && credits_target == payment.credits_reversed
        && bonus_target == payment.bonus_reversed
    {
        return Ok(Outcome::applied(&payment.user_id, vec![]).note("nothing new refunded"));
    }
    let reason = format!("refund of payment {}", payment.id);
    let take = |grant_key: &str, delta: i64, part: &str| -> Result<(), ApiError> {
        if delta > 0 {
            let key = format!("stripe:refund:{charge_id}:{refunded}:{part}");
            reverse(conn, grant_key, Some(delta), &key, &reason, Some(&event.id))?;
        }
        Ok(())
    };
    take(
        &payment.grant_key,
        credits_target - payment.credits_reversed,
        "credits",
    )?;
    if let Some(bonus_key) = &payment.bonus_key {
        take(bonus_key, bonus_target - payment.bonus_reversed, "bonus")?;
    }
    let share = (amount, refunded, full);
    super::growth::reverse_invite_reward(conn, &payment.grant_key, share, charge_id, &event.id)?;
    bdb::record_refund(
        conn,
        &payment,
        charge_id,
        RefundTotals {
            refunded,
            credits_reversed: credits_target,
            bonus_reversed: bonus_target,
        },
        &event.id,
        now,
    )?;
    Ok(Outcome::applied(&payment.user_id, vec![]))
}
