//! `packages`: what can be bought.

use rusqlite::{Connection, Row};
use serde_json::Value;

use super::DbResult;

/// A credit package (subscription or one-time pack).
#[derive(Debug, Clone, PartialEq)]
pub struct Package {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub price_usd_cents: i64,
    pub credits: i64,
    pub first_sub_bonus: i64,
    pub is_popular: bool,
    pub sort_order: i64,
    pub active: bool,
    pub stripe_price_ids: Value,
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<Package> {
    let prices: String = row.get(9)?;
    Ok(Package {
        id: row.get(0)?,
        name: row.get(1)?,
        kind: row.get(2)?,
        price_usd_cents: row.get(3)?,
        credits: row.get(4)?,
        first_sub_bonus: row.get(5)?,
        is_popular: row.get(6)?,
        sort_order: row.get(7)?,
        active: row.get(8)?,
        stripe_price_ids: serde_json::from_str(&prices).unwrap_or(Value::Null),
    })
}

/// Active packages in display order.
pub fn list_active(conn: &Connection) -> DbResult<Vec<Package>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, name, type, price_usd_cents, credits, first_sub_bonus, is_popular,
                sort_order, active, stripe_price_ids
         FROM packages WHERE active = 1 ORDER BY sort_order, id",
    )?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A package by id, active or not.
pub fn find(conn: &Connection, id: &str) -> DbResult<Option<Package>> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .prepare_cached(
            "SELECT id, name, type, price_usd_cents, credits, first_sub_bonus, is_popular,
                    sort_order, active, stripe_price_ids
             FROM packages WHERE id = ?1",
        )?
        .query_row([id], from_row)
        .optional()?)
}

/// The package one of whose Stripe price ids is `price_id`.
pub fn find_by_price(conn: &Connection, price_id: &str) -> DbResult<Option<Package>> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .prepare_cached(
            "SELECT id, name, type, price_usd_cents, credits, first_sub_bonus, is_popular,
                    sort_order, active, stripe_price_ids
             FROM packages p
             WHERE json_valid(p.stripe_price_ids)
               AND EXISTS (SELECT 1 FROM json_each(p.stripe_price_ids) WHERE value = ?1)
             ORDER BY sort_order LIMIT 1",
        )?
        .query_row([price_id], from_row)
        .optional()?)
}

/// Sets the Stripe price id of a package for one currency; false if no such package.
pub fn set_stripe_price(
    conn: &Connection,
    id: &str,
    currency: &str,
    price_id: &str,
) -> DbResult<bool> {
    let n = conn.execute(
        "UPDATE packages SET stripe_price_ids = json_set(
             CASE WHEN json_valid(stripe_price_ids) THEN stripe_price_ids ELSE '{}' END,
             '$.' || ?2, ?3)
         WHERE id = ?1",
        rusqlite::params![id, currency, price_id],
    )?;
    Ok(n > 0)
}

impl Package {
    /// The Stripe price id for `currency` (`usd`, `cny`, `hkd`), if set.
    pub fn price_for(&self, currency: &str) -> Option<&str> {
        self.stripe_price_ids
            .get(currency)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
    }
}
