//! `packages`: what can be bought, and the default set a new database starts with.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::DbResult;

/// A credit package (subscription or one-time pack).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Package {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub price_usd_cents: i64,
    pub credits: i64,
    /// Granted once with a user's first subscription (subscription packages) or first
    /// one-time purchase (packs), as the reference does.
    pub first_sub_bonus: i64,
    pub is_popular: bool,
    pub sort_order: i64,
    pub active: bool,
    /// Stripe price ids per currency.
    pub stripe_price_id: Option<String>,
    pub stripe_price_id_cny: Option<String>,
    pub stripe_price_id_hkd: Option<String>,
    /// The Alipay (CNY) price in fen, when the package is sold through Alipay.
    pub price_cny_fen: Option<i64>,
}

/// The reference's current package set (`20260307233500_refresh_pricing_packages.sql`):
/// `(id, name, type, price in US cents, credits, popular, sort order)`, no bonuses.
pub const DEFAULTS: &[(&str, &str, &str, i64, i64, bool, i64)] = &[
    (
        "0190a000-0000-7000-8000-000000000101",
        "topup_5",
        "one_time",
        500,
        1250,
        false,
        1,
    ),
    (
        "0190a000-0000-7000-8000-000000000102",
        "topup_15",
        "one_time",
        1500,
        3750,
        false,
        2,
    ),
    (
        "0190a000-0000-7000-8000-000000000103",
        "topup_30",
        "one_time",
        3000,
        7500,
        false,
        3,
    ),
    (
        "0190a000-0000-7000-8000-000000000104",
        "monthly",
        "subscription",
        990,
        2600,
        false,
        4,
    ),
    (
        "0190a000-0000-7000-8000-000000000105",
        "quarterly",
        "subscription",
        2790,
        7700,
        false,
        5,
    ),
    (
        "0190a000-0000-7000-8000-000000000106",
        "yearly",
        "subscription",
        9900,
        29100,
        true,
        6,
    ),
];

/// [`DEFAULTS`] as packages.
pub fn default_set() -> Vec<Package> {
    DEFAULTS
        .iter()
        .map(|&(id, name, kind, price, credits, popular, sort)| Package {
            id: id.into(),
            name: name.into(),
            kind: kind.into(),
            price_usd_cents: price,
            credits,
            is_popular: popular,
            sort_order: sort,
            active: true,
            ..Package::default()
        })
        .collect()
}

const COLUMNS: &str = "id, name, type, price_usd_cents, credits, first_sub_bonus, is_popular,
    sort_order, active, stripe_price_id, stripe_price_id_cny, stripe_price_id_hkd, price_cny_fen";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Package> {
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
        stripe_price_id: row.get(9)?,
        stripe_price_id_cny: row.get(10)?,
        stripe_price_id_hkd: row.get(11)?,
        price_cny_fen: row.get(12)?,
    })
}

/// Active packages in display order.
pub fn list_active(conn: &Connection) -> DbResult<Vec<Package>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM packages WHERE active = 1 ORDER BY sort_order, id"
    ))?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every package, active or not, in display order.
pub fn list_all(conn: &Connection) -> DbResult<Vec<Package>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM packages ORDER BY active DESC, sort_order, id"
    ))?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A package by id, active or not.
pub fn find(conn: &Connection, id: &str) -> DbResult<Option<Package>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM packages WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()?)
}

/// A package by id, or else the active (then any) package of that name.
pub fn find_by_id_or_name(conn: &Connection, key: &str) -> DbResult<Option<Package>> {
    if let Some(found) = find(conn, key)? {
        return Ok(Some(found));
    }
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM packages WHERE name = ?1 ORDER BY active DESC, sort_order LIMIT 1"
        ))?
        .query_row([key], from_row)
        .optional()?)
}

/// The package one of whose Stripe price ids is `price_id`.
pub fn find_by_price(conn: &Connection, price_id: &str) -> DbResult<Option<Package>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM packages
             WHERE ?1 IN (stripe_price_id, stripe_price_id_cny, stripe_price_id_hkd)
             ORDER BY active DESC, sort_order LIMIT 1"
        ))?
        .query_row([price_id], from_row)
        .optional()?)
}

/// The price id column of a currency, if it is one of Atelier's.
fn price_column(currency: &str) -> Option<&'static str> {
    match currency {
        "usd" => Some("stripe_price_id"),
        "cny" => Some("stripe_price_id_cny"),
        "hkd" => Some("stripe_price_id_hkd"),
        _ => None,
    }
}

/// Sets the Stripe price id of a package for one currency (`usd`, `cny`, `hkd`; an
/// empty id clears it); false if no such package or currency.
pub fn set_stripe_price(
    conn: &Connection,
    id: &str,
    currency: &str,
    price_id: &str,
) -> DbResult<bool> {
    let Some(column) = price_column(currency) else {
        return Ok(false);
    };
    let n = conn.execute(
        &format!("UPDATE packages SET {column} = NULLIF(?2, ''), updated_at = ?3 WHERE id = ?1"),
        params![id, price_id, crate::domain::time::now_ms()],
    )?;
    Ok(n > 0)
}

/// Inserts a package, or replaces every field of the one with its id (a CNY price
/// left unset keeps the one it has; `alipay::set_package_terms` changes it).
pub fn upsert(conn: &Connection, p: &Package, now: i64) -> DbResult<()> {
    conn.execute(
        &format!(
            "INSERT INTO packages ({COLUMNS}, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, type = excluded.type,
                 price_usd_cents = excluded.price_usd_cents, credits = excluded.credits,
                 first_sub_bonus = excluded.first_sub_bonus, is_popular = excluded.is_popular,
                 sort_order = excluded.sort_order, active = excluded.active,
                 stripe_price_id = excluded.stripe_price_id,
                 stripe_price_id_cny = excluded.stripe_price_id_cny,
                 stripe_price_id_hkd = excluded.stripe_price_id_hkd,
                 price_cny_fen = COALESCE(excluded.price_cny_fen, packages.price_cny_fen),
                 updated_at = excluded.updated_at"
        ),
        params![
            p.id,
            p.name,
            p.kind,
            p.price_usd_cents,
            p.credits,
            p.first_sub_bonus,
            p.is_popular,
            p.sort_order,
            p.active,
            p.stripe_price_id,
            p.stripe_price_id_cny,
            p.stripe_price_id_hkd,
            p.price_cny_fen,
            now
        ],
    )?;
    Ok(())
}

/// Makes `set` the packages on sale: every other package is deactivated (kept, since
/// payments and subscriptions name them); a package of `set` that exists keeps its
/// Stripe price ids unless `set` names new ones.
pub fn replace_active_set(conn: &Connection, set: &[Package], now: i64) -> DbResult<()> {
    conn.execute(
        "UPDATE packages SET active = 0, is_popular = 0, updated_at = ?1 WHERE active = 1",
        [now],
    )?;
    for p in set {
        let mut p = p.clone();
        if let Some(old) = find(conn, &p.id)? {
            p.stripe_price_id = p.stripe_price_id.or(old.stripe_price_id);
            p.stripe_price_id_cny = p.stripe_price_id_cny.or(old.stripe_price_id_cny);
            p.stripe_price_id_hkd = p.stripe_price_id_hkd.or(old.stripe_price_id_hkd);
        }
        upsert(conn, &p, now)?;
    }
    Ok(())
}

/// The reference's Alipay prices of [`DEFAULTS`] (fen; its `create-alipay-checkout`) and
/// the period each plan buys (days; its `alipay-notify`).
const DEFAULT_ALIPAY: &[(&str, i64, i64)] = &[
    ("0190a000-0000-7000-8000-000000000101", 3600, 30),
    ("0190a000-0000-7000-8000-000000000102", 10800, 30),
    ("0190a000-0000-7000-8000-000000000103", 21800, 30),
    ("0190a000-0000-7000-8000-000000000104", 7200, 30),
    ("0190a000-0000-7000-8000-000000000105", 20200, 90),
    ("0190a000-0000-7000-8000-000000000106", 71800, 365),
];

/// Makes [`DEFAULTS`] the active set (other packages kept, inactive), with their Alipay
/// prices and periods; an operator's own CNY price is kept.
pub fn install_defaults(conn: &Connection, now: i64) -> DbResult<()> {
    replace_active_set(conn, &default_set(), now)?;
    for (id, fen, days) in DEFAULT_ALIPAY {
        conn.execute(
            "UPDATE packages SET price_cny_fen = COALESCE(price_cny_fen, ?2), period_days = ?3
             WHERE id = ?1",
            params![id, fen, days],
        )?;
    }
    Ok(())
}

/// A brand-new database sells the reference's current set: the rows migration 1 seeded
/// are removed (nothing can refer to them yet) and [`DEFAULTS`] are installed.
pub fn seed_defaults(conn: &Connection, now: i64) -> DbResult<()> {
    conn.execute(
        "DELETE FROM packages WHERE id LIKE '0190a000-0000-7000-8000-00000000000_'",
        [],
    )?;
    install_defaults(conn, now)
}

impl Package {
    /// The Stripe price id for `currency` (`usd`, `cny`, `hkd`), if set.
    pub fn price_for(&self, currency: &str) -> Option<&str> {
        match currency {
            "usd" => self.stripe_price_id.as_deref(),
            "cny" => self.stripe_price_id_cny.as_deref(),
            "hkd" => self.stripe_price_id_hkd.as_deref(),
            _ => None,
        }
        .filter(|s| !s.is_empty())
    }
}
