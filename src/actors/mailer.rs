//! `MailerActor`: drains the mail outbox. Every half second (or when woken) it takes the
//! messages that are due, sends each off the async runtime, and records the outcome: sent,
//! queued again after a doubling delay, or failed after the last attempt.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::db::mail as mdb;
use crate::db::Db;
use crate::domain::time::now_ms;
use crate::mail::{MailConfig, Mailer};

/// Messages of the mailer actor.
pub enum MailMsg {
    /// Look for due messages now.
    Wake,
}

/// The actor (its state is [`MailerState`]).
pub struct MailerActor;

/// What the actor works with.
pub struct MailerState {
    db: Db,
    mailer: Arc<Mailer>,
    max_attempts: i64,
    retry_base_ms: i64,
    busy: bool,
}

/// Most messages taken per round.
const BATCH: u32 = 20;
/// Longest delay between two attempts.
const MAX_DELAY_MS: i64 = 6 * 3600 * 1000;

impl Actor for MailerActor {
    type Msg = MailMsg;
    type State = MailerState;
    type Arguments = (Db, Arc<Mailer>, MailConfig);

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        (db, mailer, config): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(Duration::from_millis(500), || MailMsg::Wake);
        Ok(MailerState {
            db,
            mailer,
            max_attempts: i64::from(config.max_attempts),
            retry_base_ms: (config.retry_base_secs as i64).saturating_mul(1000),
            busy: false,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        MailMsg::Wake: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if state.busy {
            return Ok(());
        }
        state.busy = true;
        let result = drain(state).await;
        state.busy = false;
        if let Err(err) = result {
            tracing::error!(error = %err, "mail outbox could not be drained");
        }
        Ok(())
    }
}

async fn drain(state: &MailerState) -> Result<(), String> {
    let due = state
        .db
        .read(|conn| mdb::due(conn, now_ms(), BATCH))
        .await
        .map_err(|e| e.to_string())?;
    for mail in due {
        let mailer = state.mailer.clone();
        let sending = mail.clone();
        let sent = tokio::task::spawn_blocking(move || mailer.send(&sending))
            .await
            .unwrap_or_else(|e| Err(format!("mail task failed: {e}")));
        let (id, attempts) = (mail.id.clone(), mail.attempts + 1);
        let retry_at = match &sent {
            Ok(()) => None,
            Err(_) if attempts >= state.max_attempts => None,
            Err(_) => {
                let delay = state
                    .retry_base_ms
                    .saturating_mul(1 << (attempts - 1).clamp(0, 20))
                    .min(MAX_DELAY_MS);
                Some(now_ms() + delay)
            }
        };
        match &sent {
            Ok(()) => tracing::info!(to = %mail.to_addr, kind = %mail.kind, "mail sent"),
            Err(why) => tracing::warn!(to = %mail.to_addr, kind = %mail.kind, attempts,
                error = %why, retry = retry_at.is_some(), "mail not sent"),
        }
        state
            .db
            .write(move |conn| match sent {
                Ok(()) => mdb::mark_sent(conn, &id, now_ms()),
                Err(why) => mdb::mark_attempt_failed(conn, &id, &why, retry_at),
            })
            .await
            .map_err(|e: crate::db::DbError| e.to_string())?;
    }
    Ok(())
}

/// Starts the mailer actor.
pub async fn spawn(
    db: Db,
    mailer: Arc<Mailer>,
    config: MailConfig,
) -> Result<ActorRef<MailMsg>, String> {
    Actor::spawn(None, MailerActor, (db, mailer, config))
        .await
        .map(|(actor, _)| actor)
        .map_err(|e| e.to_string())
}
