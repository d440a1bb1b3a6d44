//! Applying a verified Alipay trade inside one durable ledger transaction: the order
//! completes together with its credit grant, payment row and (for a plan) the period
//! it pays for — or nothing happens. Refunds reverse their share the same way (debt if
//! the credits were spent).

use rusqlite::Connection;

use super::ledger::{grant, reverse};
use crate::alipay::gateway::fen;
use crate::db::alipay::{self as adb, AlipayOrder};
use crate::db::billing::{self as bdb, Payment, PaymentKey, RefundTotals};
use crate::db::{ledger as ldb, packages};
use crate::domain::credits::Bucket;
use crate::domain::{ApiError, ErrorCode};
use crate::stripe::event::refund_share;

/// What a paid trade did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TradeApplied {
    /// Credits granted now.
    Granted,
    /// The order was already completed: nothing changed.
    AlreadyDone,
}

/// A trade Alipay reports paid (notify or `alipay.trade.query`), already verified.
#[derive(Debug, Clone)]
pub struct PaidTrade {
    pub out_trade_no: String,
    pub trade_no: String,
    pub total_amount: String,
}

fn refused(why: impl Into<String>) -> ApiError {
    ApiError::with_message(ErrorCode::BAD_REQUEST, why.into())
}

/// The subscription id an Alipay plan is recorded under (Alipay has no subscription).
pub fn subscription_id(out_trade_no: &str) -> String {
    format!("alipay:{out_trade_no}")
}

/// Completes the order of `trade` once: grant, payment, period. The amount must be the
/// order's to the fen. An expired order paid late still completes (Alipay took the money).
pub fn apply_paid(
    conn: &Connection,
    trade: &PaidTrade,
    now: i64,
) -> Result<TradeApplied, ApiError> {
    let order = adb::find_order(conn, &trade.out_trade_no)?
        .ok_or_else(|| refused("no such Alipay order"))?;
    if fen(&trade.total_amount) != Some(order.amount_fen) {
        return Err(refused("total_amount does not match the order"));
    }
    if order.status == "completed" {
        return Ok(TradeApplied::AlreadyDone);
    }
    let package = packages::find(conn, &order.package_id)?
        .ok_or_else(|| ApiError::internal().cause("the order's package is gone"))?;
    let subscription = order.purchase_type == "subscription";
    let bucket = if subscription {
        Bucket::Subscription
    } else {
        Bucket::Purchased
    };
    let grant_key = format!("alipay:order:{}", order.out_trade_no);
    let reason = format!("{} (alipay)", package.name);
    grant(
        conn,
        &order.user_id,
        bucket,
        order.credits,
        &grant_key,
        Some(&reason),
        None,
        "grant",
    )?;
    let (mut bonus, mut bonus_key) = (0, None);
    if subscription {
        // One first-subscription bonus per user, whichever way they paid.
        let key = format!("stripe:first-sub-bonus:{}", order.user_id);
        if package.first_sub_bonus > 0 && ldb::find_by_key(conn, &key)?.is_none() {
            grant(
                conn,
                &order.user_id,
                Bucket::Subscription,
                package.first_sub_bonus,
                &key,
                Some("first subscription bonus"),
                None,
                "grant",
            )?;
            bonus = package.first_sub_bonus;
            bonus_key = Some(key);
        }
        let days = adb::package_terms(conn, &package.id)?
            .map(|(_, days)| days)
            .unwrap_or(30);
        let sub = subscription_id(&order.out_trade_no);
        let secs = now / 1000;
        bdb::set_subscription(
            conn,
            &order.user_id,
            &sub,
            Some(&package.id),
            "active",
            secs,
            now,
        )?;
        bdb::extend_period(conn, &sub, secs + days * 86_400, now)?;
    }
    let payment_id = bdb::insert_payment(
        conn,
        &Payment {
            user_id: order.user_id.clone(),
            kind: order.purchase_type.clone(),
            package_id: Some(package.id.clone()),
            checkout_session_id: Some(order.out_trade_no.clone()),
            amount: order.amount_fen,
            currency: "cny".into(),
            credits: order.credits,
            grant_key: grant_key.clone(),
            bonus,
            bonus_key,
            stripe_event_id: format!("alipay:{}", trade.trade_no),
            created_at: now,
            ..Payment::default()
        },
    )?;
    crate::mail::receipt::queue_receipt(
        conn,
        &crate::mail::receipt::Paid {
            user_id: &order.user_id,
            package: &package.name,
            credits: order.credits,
            amount: order.amount_fen,
            currency: "cny",
            grant_key: &grant_key,
        },
    )?;
    adb::complete_order(conn, &order.out_trade_no, &trade.trade_no, &payment_id, now)?;
    Ok(TradeApplied::Granted)
}

/// The payment of a completed order.
pub fn payment_of(conn: &Connection, order: &AlipayOrder) -> Result<Payment, ApiError> {
    bdb::payment_by(conn, PaymentKey::Session, &order.out_trade_no)?
        .ok_or_else(|| ApiError::with_message(ErrorCode::NOT_FOUND, "the order was not paid"))
}

/// Records a refund Alipay accepted: `refunded_total` fen refunded so far; reverses
/// that share of the credits (bonus included), the shortfall becoming debt. A plan
/// refunded in full is cancelled with its period ending now.
pub fn apply_refund(
    conn: &Connection,
    out_trade_no: &str,
    out_request_no: &str,
    refunded_total: i64,
    now: i64,
) -> Result<(), ApiError> {
    let order = adb::find_order(conn, out_trade_no)?
        .ok_or_else(|| ApiError::with_message(ErrorCode::NOT_FOUND, "no such Alipay order"))?;
    let payment = payment_of(conn, &order)?;
    if refunded_total <= payment.amount_refunded {
        return Ok(());
    }
    let full = refunded_total >= payment.amount;
    let credits = refund_share(payment.credits, payment.amount, refunded_total, full)
        .max(payment.credits_reversed);
    let bonus = refund_share(payment.bonus, payment.amount, refunded_total, full)
        .max(payment.bonus_reversed);
    let reason = format!("alipay refund of payment {}", payment.id);
    let key = format!("alipay:refund:{out_request_no}");
    if credits > payment.credits_reversed {
        let delta = credits - payment.credits_reversed;
        reverse(
            conn,
            &payment.grant_key,
            Some(delta),
            &format!("{key}:credits"),
            &reason,
            None,
        )?;
    }
    if let Some(bonus_key) = &payment.bonus_key {
        if bonus > payment.bonus_reversed {
            let delta = bonus - payment.bonus_reversed;
            reverse(
                conn,
                bonus_key,
                Some(delta),
                &format!("{key}:bonus"),
                &reason,
                None,
            )?;
        }
    }
    if full && order.purchase_type == "subscription" {
        // A plan refunded in full ends now: Alipay has no subscription to cancel.
        let secs = now / 1000;
        bdb::set_status(
            conn,
            &subscription_id(out_trade_no),
            "canceled",
            Some(secs),
            secs,
            now,
        )?;
    }
    bdb::record_refund(
        conn,
        &payment,
        out_request_no,
        RefundTotals {
            refunded: refunded_total,
            credits_reversed: credits,
            bonus_reversed: bonus,
        },
        &format!("alipay:{out_request_no}"),
        now,
    )?;
    Ok(())
}
