//! Maintenance mode: while it is on, new jobs, checkouts and signups are refused with
//! 503 `MAINTENANCE` (queued and running work goes on; admins are not refused). The
//! switch lives in `system_settings`, so the CLI can flip it while the server runs; the
//! server reads it through a cache of [`CACHE_TTL`], dropped at once when the admin API
//! changes it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde_json::{json, Value};

use crate::db::accounts::User;
use crate::db::{settings, Db, DbResult};
use crate::domain::time::rfc3339;
use crate::domain::{ApiError, ErrorCode};

/// The `system_settings` key.
pub const SETTING_KEY: &str = "maintenance";
/// How long the server trusts its cached copy (the CLI's change shows within this).
pub const CACHE_TTL: Duration = Duration::from_secs(2);
/// The message shown when the operator gives none.
pub const DEFAULT_MESSAGE: &str =
    "The studio is under maintenance. Your queued work goes on; please come back soon.";
/// The longest message accepted.
pub const MESSAGE_MAX_CHARS: usize = 500;

/// Whether maintenance is on, and what sellers are told.
#[derive(Debug, Clone, PartialEq)]
pub struct MaintenanceState {
    pub enabled: bool,
    pub message: String,
    pub updated_at: Option<i64>,
    pub updated_by: Option<String>,
}

impl MaintenanceState {
    /// Off, never changed.
    pub fn off() -> Self {
        MaintenanceState {
            enabled: false,
            message: DEFAULT_MESSAGE.into(),
            updated_at: None,
            updated_by: None,
        }
    }

    /// The state as the admin API and `get-public-config` show it.
    pub fn to_json(&self) -> Value {
        json!({"enabled": self.enabled, "message": self.message,
               "updated_at": self.updated_at.map(rfc3339), "updated_by": self.updated_by})
    }

    /// 503 `MAINTENANCE` with the message when on and `user` is not an admin.
    pub fn refuse(&self, user: Option<&User>) -> Result<(), ApiError> {
        if !self.enabled || user.is_some_and(User::is_admin) {
            return Ok(());
        }
        Err(
            ApiError::with_message(ErrorCode::MAINTENANCE, self.message.clone())
                .details(json!({"maintenance": true})),
        )
    }
}

/// The operator's message, trimmed; empty means the default. Too long is refused.
pub fn check_message(message: Option<&str>) -> Result<String, String> {
    let text = message.map(str::trim).unwrap_or_default();
    if text.chars().count() > MESSAGE_MAX_CHARS {
        return Err(format!(
            "message must be at most {MESSAGE_MAX_CHARS} characters"
        ));
    }
    Ok(if text.is_empty() {
        DEFAULT_MESSAGE.to_string()
    } else {
        text.to_string()
    })
}

/// Reads the stored state (off when never set).
pub fn load(conn: &Connection) -> DbResult<MaintenanceState> {
    let Some(stored) = settings::get(conn, SETTING_KEY)? else {
        return Ok(MaintenanceState::off());
    };
    Ok(MaintenanceState {
        enabled: stored.value["enabled"].as_bool().unwrap_or(false),
        message: stored.value["message"]
            .as_str()
            .filter(|m| !m.trim().is_empty())
            .unwrap_or(DEFAULT_MESSAGE)
            .to_string(),
        updated_at: Some(stored.updated_at),
        updated_by: stored.updated_by,
    })
}

/// Stores a new state (`message` already checked) and returns it.
pub fn store(
    conn: &Connection,
    enabled: bool,
    message: &str,
    by: &str,
    now: i64,
) -> DbResult<MaintenanceState> {
    let value = json!({"enabled": enabled, "message": message});
    settings::put(conn, SETTING_KEY, &value, Some(by), now)?;
    load(conn)
}

/// The server's cached view of the switch.
#[derive(Debug, Default)]
pub struct Maintenance {
    cached: Mutex<Option<(Instant, MaintenanceState)>>,
}

impl Maintenance {
    /// An empty cache (the first read goes to the database).
    pub fn new() -> Self {
        Maintenance::default()
    }

    /// The current state: cached if fresh, else read from the database.
    pub async fn current(&self, db: &Db) -> DbResult<MaintenanceState> {
        if let Some(state) = self.fresh() {
            return Ok(state);
        }
        let state = db.read(load).await?;
        self.remember(state.clone());
        Ok(state)
    }

    /// Stores a new state and replaces the cached one.
    pub async fn set(
        &self,
        db: &Db,
        enabled: bool,
        message: String,
        by: String,
    ) -> DbResult<MaintenanceState> {
        let now = crate::domain::time::now_ms();
        let state = db
            .write(move |conn| store(conn, enabled, &message, &by, now))
            .await?;
        self.remember(state.clone());
        Ok(state)
    }

    /// Refuses new work with 503 `MAINTENANCE` while on (admins excepted).
    pub async fn refuse(&self, db: &Db, user: Option<&User>) -> Result<(), ApiError> {
        self.current(db).await?.refuse(user)
    }

    fn fresh(&self) -> Option<MaintenanceState> {
        let cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        cached
            .as_ref()
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, state)| state.clone())
    }

    fn remember(&self, state: MaintenanceState) {
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        *cached = Some((Instant::now(), state));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_default_and_are_capped() {
        assert_eq!(check_message(None).unwrap(), DEFAULT_MESSAGE);
        assert_eq!(check_message(Some("  ")).unwrap(), DEFAULT_MESSAGE);
        assert_eq!(check_message(Some(" back at 6 ")).unwrap(), "back at 6");
        assert!(check_message(Some(&"é".repeat(500))).is_ok());
        assert!(check_message(Some(&"é".repeat(501))).is_err());
    }
}
