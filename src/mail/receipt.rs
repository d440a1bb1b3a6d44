//! The receipt after a payment: queued in the payment's own transaction, at most once per
//! payment (keyed by the payment's ledger grant key), in the payer's locale.

use rusqlite::Connection;

use super::{enqueue_once, user_locale, Message};
use crate::db::accounts;
use crate::db::DbResult;

/// Currencies without minor units (Stripe's zero-decimal list, the ones Atelier may see).
const ZERO_DECIMAL: &[&str] = &["jpy", "krw", "vnd", "clp", "ugx", "xaf", "xof"];

/// `amount` in minor units as people read it: `USD 9.90`, `JPY 500`.
pub fn format_amount(amount: i64, currency: &str) -> String {
    let code = currency.to_ascii_uppercase();
    if ZERO_DECIMAL.contains(&currency.to_ascii_lowercase().as_str()) {
        return format!("{code} {amount}");
    }
    let sign = if amount < 0 { "-" } else { "" };
    let abs = amount.unsigned_abs();
    format!("{code} {sign}{}.{:02}", abs / 100, abs % 100)
}

/// What a receipt names.
pub struct Paid<'a> {
    pub user_id: &'a str,
    pub package: &'a str,
    pub credits: i64,
    pub amount: i64,
    pub currency: &'a str,
    /// The ledger key of the payment's grant: one receipt per key.
    pub grant_key: &'a str,
}

/// Queues the receipt of `paid` unless it was queued before; `true` when queued now.
pub fn queue_receipt(conn: &Connection, paid: &Paid<'_>) -> DbResult<bool> {
    let Some(user) = accounts::find_by_id(conn, paid.user_id)? else {
        return Ok(false);
    };
    let message = Message::Receipt {
        package: paid.package.to_string(),
        credits: paid.credits,
        amount: format_amount(paid.amount, paid.currency),
    };
    let key = format!("receipt:{}", paid.grant_key);
    let queued = enqueue_once(
        conn,
        &key,
        &user.email,
        user_locale(&user.user_metadata),
        &message,
    )?;
    Ok(queued.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_read_as_money() {
        assert_eq!(format_amount(990, "usd"), "USD 9.90");
        assert_eq!(format_amount(6900, "cny"), "CNY 69.00");
        assert_eq!(format_amount(500, "jpy"), "JPY 500");
        assert_eq!(format_amount(5, "usd"), "USD 0.05");
    }
}
