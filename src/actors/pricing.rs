//! Editing the package list (admin API and `atelier packages …`): changes are checked
//! here and written at once; the next checkout and `/v1/packages` see them, no restart.

use rusqlite::Connection;

use crate::db::new_id;
use crate::db::packages::{self, Package};
use crate::domain::time::now_ms;
use crate::domain::{ApiError, ErrorCode};

/// A change to a package: every field that is `Some` is set.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageChange {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub price_usd_cents: Option<i64>,
    pub credits: Option<i64>,
    pub first_sub_bonus: Option<i64>,
    pub is_popular: Option<bool>,
    pub sort_order: Option<i64>,
    pub active: Option<bool>,
    /// An empty string clears a price id.
    pub stripe_price_id: Option<String>,
    pub stripe_price_id_cny: Option<String>,
    pub stripe_price_id_hkd: Option<String>,
}

fn price_id(value: Option<String>, old: Option<String>) -> Option<String> {
    match value {
        Some(v) if v.trim().is_empty() => None,
        Some(v) => Some(v.trim().to_string()),
        None => old,
    }
}

impl PackageChange {
    /// `base` with this change applied, checked.
    fn apply(self, mut p: Package) -> Result<Package, ApiError> {
        if let Some(name) = self.name {
            p.name = name.trim().to_string();
        }
        if let Some(kind) = self.kind {
            p.kind = kind;
        }
        p.price_usd_cents = self.price_usd_cents.unwrap_or(p.price_usd_cents);
        p.credits = self.credits.unwrap_or(p.credits);
        p.first_sub_bonus = self.first_sub_bonus.unwrap_or(p.first_sub_bonus);
        p.is_popular = self.is_popular.unwrap_or(p.is_popular);
        p.sort_order = self.sort_order.unwrap_or(p.sort_order);
        p.active = self.active.unwrap_or(p.active);
        p.stripe_price_id = price_id(self.stripe_price_id, p.stripe_price_id);
        p.stripe_price_id_cny = price_id(self.stripe_price_id_cny, p.stripe_price_id_cny);
        p.stripe_price_id_hkd = price_id(self.stripe_price_id_hkd, p.stripe_price_id_hkd);
        if p.name.is_empty() || p.name.len() > 100 {
            return Err(ApiError::bad_field(
                "name",
                "name must be 1 to 100 characters",
            ));
        }
        if !matches!(p.kind.as_str(), "subscription" | "one_time") {
            return Err(ApiError::bad_field(
                "type",
                "type must be subscription or one_time",
            ));
        }
        if p.price_usd_cents < 0 {
            return Err(ApiError::bad_field(
                "price_usd_cents",
                "price_usd_cents must not be negative",
            ));
        }
        if p.credits < 1 {
            return Err(ApiError::bad_field("credits", "credits must be at least 1"));
        }
        if p.first_sub_bonus < 0 {
            return Err(ApiError::bad_field(
                "first_sub_bonus",
                "first_sub_bonus must not be negative",
            ));
        }
        Ok(p)
    }
}

/// Changes the package `key` (id or name); `NOT_FOUND` when there is none.
pub fn update_package(
    conn: &Connection,
    key: &str,
    change: PackageChange,
) -> Result<Package, ApiError> {
    let old = packages::find_by_id_or_name(conn, key)?
        .ok_or_else(|| ApiError::with_message(ErrorCode::NOT_FOUND, "no such package"))?;
    let new = change.apply(old)?;
    packages::upsert(conn, &new, now_ms())?;
    Ok(new)
}

/// Adds a package (active unless the change says otherwise); name, type, price and
/// credits are required.
pub fn create_package(conn: &Connection, change: PackageChange) -> Result<Package, ApiError> {
    for (field, present) in [
        ("name", change.name.is_some()),
        ("type", change.kind.is_some()),
        ("price_usd_cents", change.price_usd_cents.is_some()),
        ("credits", change.credits.is_some()),
    ] {
        if !present {
            return Err(ApiError::bad_field(field, format!("{field} is required")));
        }
    }
    let base = Package {
        id: new_id(),
        active: true,
        ..Package::default()
    };
    let new = change.apply(base)?;
    packages::upsert(conn, &new, now_ms())?;
    Ok(new)
}

/// Puts the default set on sale and deactivates every other package (kept for the
/// payments that name them); Stripe price ids already set on default packages stay.
pub fn reset_to_defaults(conn: &Connection) -> Result<Vec<Package>, ApiError> {
    packages::install_defaults(conn, now_ms())?;
    Ok(packages::list_active(conn)?)
}

/// A package as the admin API and the CLI show it.
pub fn package_json(p: &Package) -> serde_json::Value {
    serde_json::json!({
        "id": p.id, "name": p.name, "type": p.kind, "price_usd_cents": p.price_usd_cents,
        "price_usd": p.price_usd_cents as f64 / 100.0, "credits": p.credits,
        "first_sub_bonus": p.first_sub_bonus, "is_popular": p.is_popular,
        "sort_order": p.sort_order, "active": p.active,
        "stripe_price_id": p.stripe_price_id, "stripe_price_id_cny": p.stripe_price_id_cny,
        "stripe_price_id_hkd": p.stripe_price_id_hkd,
    })
}
