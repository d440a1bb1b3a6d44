//! Alipay orders (`alipay_orders`) and the packages' CNY prices and periods.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::DbResult;

/// One Alipay order, from the checkout to its completion or expiry.
#[derive(Debug, Clone, PartialEq)]
pub struct AlipayOrder {
    pub out_trade_no: String,
    pub user_id: String,
    pub package_id: String,
    pub purchase_type: String,
    pub amount_fen: i64,
    pub credits: i64,
    pub surface: String,
    pub status: String,
    pub trade_no: Option<String>,
    pub payment_id: Option<String>,
    pub expires_at: i64,
    pub paid_at: Option<i64>,
    pub created_at: i64,
}

const COLUMNS: &str = "out_trade_no, user_id, package_id, purchase_type, amount_fen, credits,
    surface, status, trade_no, payment_id, expires_at, paid_at, created_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<AlipayOrder> {
    Ok(AlipayOrder {
        out_trade_no: r.get(0)?,
        user_id: r.get(1)?,
        package_id: r.get(2)?,
        purchase_type: r.get(3)?,
        amount_fen: r.get(4)?,
        credits: r.get(5)?,
        surface: r.get(6)?,
        status: r.get(7)?,
        trade_no: r.get(8)?,
        payment_id: r.get(9)?,
        expires_at: r.get(10)?,
        paid_at: r.get(11)?,
        created_at: r.get(12)?,
    })
}

/// A package's Alipay terms: price in fen (None: not sold through Alipay) and the
/// days a subscription period lasts.
pub fn package_terms(conn: &Connection, package_id: &str) -> DbResult<Option<(Option<i64>, i64)>> {
    Ok(conn
        .prepare_cached("SELECT price_cny_fen, period_days FROM packages WHERE id = ?1")?
        .query_row([package_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// Sets a package's CNY price (fen) and period; false if no such package.
pub fn set_package_terms(
    conn: &Connection,
    package_id: &str,
    price_cny_fen: Option<i64>,
    period_days: i64,
) -> DbResult<bool> {
    let n = conn.execute(
        "UPDATE packages SET price_cny_fen = ?2, period_days = ?3 WHERE id = ?1",
        params![package_id, price_cny_fen, period_days],
    )?;
    Ok(n > 0)
}

/// Stores a new pending order.
pub fn insert_order(conn: &Connection, o: &AlipayOrder) -> DbResult<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO alipay_orders ({COLUMNS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', NULL, NULL, ?8, NULL, ?9)"
    ))?
    .execute(params![
        o.out_trade_no,
        o.user_id,
        o.package_id,
        o.purchase_type,
        o.amount_fen,
        o.credits,
        o.surface,
        o.expires_at,
        o.created_at
    ])?;
    Ok(())
}

/// An order by its `out_trade_no`.
pub fn find_order(conn: &Connection, out_trade_no: &str) -> DbResult<Option<AlipayOrder>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM alipay_orders WHERE out_trade_no = ?1"
        ))?
        .query_row([out_trade_no], from_row)
        .optional()?)
}

/// Marks an order paid (from pending or expired); false if it already was.
pub fn complete_order(
    conn: &Connection,
    out_trade_no: &str,
    trade_no: &str,
    payment_id: &str,
    now: i64,
) -> DbResult<bool> {
    let n = conn.execute(
        "UPDATE alipay_orders SET status = 'completed', trade_no = ?2, payment_id = ?3,
             paid_at = ?4
         WHERE out_trade_no = ?1 AND status IN ('pending', 'expired')",
        params![out_trade_no, trade_no, payment_id, now],
    )?;
    Ok(n > 0)
}

/// Expires one pending order (Alipay closed the trade); false if not pending.
pub fn expire_order(conn: &Connection, out_trade_no: &str) -> DbResult<bool> {
    let n = conn.execute(
        "UPDATE alipay_orders SET status = 'expired' WHERE out_trade_no = ?1 AND status = 'pending'",
        [out_trade_no],
    )?;
    Ok(n > 0)
}

/// Pending orders created before `before` (ms): what a reconcile asks Alipay about.
pub fn pending_orders(conn: &Connection, before: i64, limit: u32) -> DbResult<Vec<AlipayOrder>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM alipay_orders WHERE status = 'pending' AND created_at <= ?1
         ORDER BY created_at LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![before, limit], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Moves an order's expiry (an operator extending a payable order, or a test).
pub fn set_order_expiry(conn: &Connection, out_trade_no: &str, expires_at: i64) -> DbResult<bool> {
    let n = conn.execute(
        "UPDATE alipay_orders SET expires_at = ?2 WHERE out_trade_no = ?1",
        params![out_trade_no, expires_at],
    )?;
    Ok(n > 0)
}
