//! `CreditLedgerActor`: the single writer of every credit movement.
//!
//! Callers send work through [`LedgerHandle`]. The actor collects what is waiting in its
//! mailbox, commits it as one `BEGIN IMMEDIATE` transaction with one SAVEPOINT per
//! request (a failing request rolls back alone), and answers each caller only after the
//! commit that holds its change. While a commit is in flight new requests queue up and
//! form the next batch, so the batch size follows the load.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use rusqlite::Connection;
use serde_json::json;
use tokio::sync::watch;

use super::ledger_jobs::{self, JobAck, NewJob, Settled};
use super::ledger_retry;
use crate::db::accounts::{self, User};
use crate::db::ledger::{self, LedgerEntry, NewEntry};
use crate::db::{Db, DbError};
use crate::domain::credits::{self, Balances, Bucket, Deltas};
use crate::domain::jobs::{RetryPolicy, UnitOutcome};
use crate::domain::time::now_ms;
use crate::domain::{ApiError, ErrorCode};

/// Most requests committed in one transaction.
const MAX_BATCH: usize = 256;

/// Called with the commit's outcome once the batch is committed (or not).
type Responder = Box<dyn FnOnce(Result<(), String>) + Send>;
/// One request: runs inside its savepoint and returns how to answer its caller.
type Work = Box<dyn FnOnce(&Connection) -> Responder + Send>;

/// Messages of the ledger actor.
pub enum LedgerMsg {
    /// A request to run in the next batch.
    Run(Work),
    /// A request whose batch must be committed with `synchronous=FULL`.
    RunDurable(Work),
    /// Commit what is pending.
    Flush,
}

/// The actor itself (stateless; its state is [`LedgerState`]).
pub struct CreditLedgerActor;

/// Pending requests and the database.
pub struct LedgerState {
    db: Db,
    pending: Vec<(Work, bool)>,
    flush_scheduled: bool,
    /// Bumped after every committed batch (the change feed's signal for credits).
    commits: Arc<watch::Sender<u64>>,
}

impl Actor for CreditLedgerActor {
    type Msg = LedgerMsg;
    type State = LedgerState;
    type Arguments = (Db, watch::Sender<u64>);

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        (db, commits): (Db, watch::Sender<u64>),
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(LedgerState {
            db,
            pending: Vec::new(),
            flush_scheduled: false,
            commits: Arc::new(commits),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            LedgerMsg::Run(work) => state.enqueue(&myself, work, false)?,
            LedgerMsg::RunDurable(work) => state.enqueue(&myself, work, true)?,
            LedgerMsg::Flush => {
                let take = state.pending.len().min(MAX_BATCH);
                let (batch, durable): (Vec<Work>, Vec<bool>) = state.pending.drain(..take).unzip();
                let durable = durable.contains(&true);
                if state.pending.is_empty() {
                    state.flush_scheduled = false;
                } else {
                    myself.send_message(LedgerMsg::Flush)?;
                }
                let db = state.db.clone();
                let commits = state.commits.clone();
                tokio::task::spawn_blocking(move || commit_batch(&db, batch, durable, &commits))
                    .await?;
            }
        }
        Ok(())
    }
}

impl LedgerState {
    fn enqueue(
        &mut self,
        myself: &ActorRef<LedgerMsg>,
        work: Work,
        durable: bool,
    ) -> Result<(), ActorProcessingErr> {
        self.pending.push((work, durable));
        if !self.flush_scheduled {
            // Queued behind everything already waiting, so they join this batch.
            myself.send_message(LedgerMsg::Flush)?;
            self.flush_scheduled = true;
        }
        Ok(())
    }
}

/// Runs a batch in one transaction, a savepoint per request, then answers everyone.
fn commit_batch(db: &Db, batch: Vec<Work>, durable: bool, commits: &watch::Sender<u64>) {
    let outcome = db.transaction_with(durable, |conn| {
        let responders: Vec<Responder> = batch.into_iter().map(|work| work(conn)).collect();
        Ok::<_, DbError>(responders)
    });
    match outcome {
        Ok(responders) => {
            commits.send_modify(|n| *n += 1);
            responders.into_iter().for_each(|answer| answer(Ok(())));
        }
        Err(err) => {
            // The batch's requests were consumed by the failed transaction; their callers
            // see their reply ports dropped and answer INTERNAL_ERROR.
            tracing::error!(error = %err, "ledger batch failed to commit");
        }
    }
}

/// Wraps a typed operation into batch work: savepoint, panic guard, deferred reply.
fn work<T, E, F>(op: F, reply: RpcReplyPort<Result<T, E>>) -> Work
where
    T: Send + 'static,
    E: From<ApiError> + Send + 'static,
    F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
{
    Box::new(move |conn: &Connection| {
        let result = in_savepoint(conn, op);
        Box::new(move |commit: Result<(), String>| {
            let answer = match commit {
                Ok(()) => result,
                Err(why) => {
                    tracing::error!(error = %why, "ledger commit failed");
                    Err(E::from(ApiError::internal()))
                }
            };
            // A caller that gave up (timeout, disconnect) is not an error here.
            let _ = reply.send(answer);
        })
    })
}

fn in_savepoint<T, E>(
    conn: &Connection,
    op: impl FnOnce(&Connection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<ApiError>,
{
    if let Err(err) = conn.execute_batch("SAVEPOINT ledger_op") {
        return Err(E::from(ApiError::from(DbError::from(err))));
    }
    let result = catch_unwind(AssertUnwindSafe(|| op(conn))).unwrap_or_else(|_| {
        tracing::error!("ledger operation panicked; rolled back alone");
        Err(E::from(ApiError::internal()))
    });
    let end = if result.is_ok() {
        "RELEASE ledger_op"
    } else {
        "ROLLBACK TO ledger_op; RELEASE ledger_op"
    };
    if let Err(err) = conn.execute_batch(end) {
        return Err(E::from(ApiError::from(DbError::from(err))));
    }
    result
}

/// Why an account could not be opened.
#[derive(Debug, Clone, PartialEq)]
pub enum OpenAccountError {
    EmailTaken,
    Failed(ApiError),
}

impl From<ApiError> for OpenAccountError {
    fn from(err: ApiError) -> Self {
        OpenAccountError::Failed(err)
    }
}

/// A cheap, clonable way to talk to the ledger actor.
#[derive(Clone)]
pub struct LedgerHandle {
    actor: ActorRef<LedgerMsg>,
    commits: watch::Receiver<u64>,
}

impl LedgerHandle {
    /// Spawns the actor.
    pub async fn spawn(db: Db) -> Result<(LedgerHandle, tokio::task::JoinHandle<()>), ApiError> {
        let (commits_tx, commits) = watch::channel(0);
        let (actor, join) = Actor::spawn(None, CreditLedgerActor, (db, commits_tx))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "cannot start the ledger actor");
                ApiError::internal()
            })?;
        Ok((LedgerHandle { actor, commits }, join))
    }

    /// Changes after every committed batch (ends when the actor stops): the signal the
    /// change feed re-reads changed accounts on.
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.commits.clone()
    }

    /// Stops the actor after what it is doing.
    pub fn stop(&self) {
        self.actor.stop(None);
    }

    async fn run<T, E, F>(&self, op: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<ApiError> + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        self.run_with(false, op).await
    }

    /// Runs `op` in the next batch, in its own savepoint; a `durable` request makes its
    /// batch commit with `synchronous=FULL` before anyone is answered.
    pub async fn run_with<T, E, F>(&self, durable: bool, op: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<ApiError> + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        let message = move |port| {
            let work = work(op, port);
            if durable {
                LedgerMsg::RunDurable(work)
            } else {
                LedgerMsg::Run(work)
            }
        };
        match self.actor.call(message, None).await {
            Ok(ractor::rpc::CallResult::Success(result)) => result,
            Ok(_) | Err(_) => Err(E::from(ApiError::internal())),
        }
    }

    /// Creates a user with an empty account and, when the address counts as confirmed,
    /// grants the signup bonus (once per address), atomically.
    pub async fn open_account(
        &self,
        user: User,
        password_hash: String,
        signup_bonus: i64,
    ) -> Result<User, OpenAccountError> {
        self.run(move |conn| open_account(conn, &user, &password_hash, signup_bonus).map(|_| user))
            .await
    }

    /// Grants credits to a bucket (debt is paid first). Idempotent by `key`.
    pub async fn grant(
        &self,
        user_id: String,
        bucket: Bucket,
        amount: i64,
        key: String,
        reason: String,
    ) -> Result<LedgerEntry, ApiError> {
        self.run(move |conn| {
            grant(
                conn,
                &user_id,
                bucket,
                amount,
                &key,
                Some(&reason),
                None,
                "grant",
            )
        })
        .await
    }

    /// Accepts a job: job, units and hold in one transaction (or nothing).
    pub async fn create_job(&self, job: NewJob) -> Result<JobAck, ApiError> {
        self.run(move |conn| ledger_jobs::create_job(conn, &job))
            .await
    }

    /// Records how an attempt ended: capture, requeue with backoff, or release.
    pub async fn settle_attempt(
        &self,
        task_id: String,
        attempt: i64,
        outcome: UnitOutcome,
        policy: RetryPolicy,
    ) -> Result<Settled, ApiError> {
        let jitter: f64 = rand::random();
        self.run(move |conn| {
            ledger_jobs::settle_attempt(conn, &task_id, attempt, &outcome, &policy, jitter)
        })
        .await
    }

    /// Runs a finished job's failed units again as a new job (see
    /// [`ledger_retry::retry_failed_units`]).
    pub async fn retry_failed_units(&self, job_id: String) -> Result<JobAck, ApiError> {
        self.run(move |conn| ledger_retry::retry_failed_units(conn, &job_id))
            .await
    }

    /// Fails the queued units of providers not in `known`, releasing their holds (see
    /// [`ledger_jobs::fail_unroutable`]); returns the jobs changed by this batch.
    pub async fn fail_unroutable(&self, known: Vec<String>) -> Result<Vec<String>, ApiError> {
        self.run(move |conn| ledger_jobs::fail_unroutable(conn, &known))
            .await
    }

    /// Cancels a job: its queued units now, its running ones when they report.
    pub async fn cancel_job(&self, user_id: String, job_id: String) -> Result<bool, ApiError> {
        self.run(move |conn| ledger_jobs::cancel_job(conn, &user_id, &job_id))
            .await
    }

    /// Reverses (part of) an earlier grant, e.g. a refunded payment: `amount` (the whole
    /// grant when `None`, never more) leaves the grant's bucket first, never taking
    /// available credits below zero; a shortfall becomes debt. Idempotent by `key`.
    pub async fn reverse(
        &self,
        grant_key: String,
        amount: Option<i64>,
        key: String,
        reason: String,
    ) -> Result<LedgerEntry, ApiError> {
        self.run(move |conn| reverse(conn, &grant_key, amount, &key, &reason, None))
            .await
    }

    /// An operator's correction: positive adds purchased credits, negative deducts
    /// (purchased first) but never below zero available. Idempotent by the operator's
    /// `key` (a new one when `None`), kept in the operators' own namespace (`admin:`)
    /// whichever door it came through, the admin API or the CLI.
    pub async fn adjust(
        &self,
        user_id: String,
        amount: i64,
        operator_key: Option<String>,
        reason: String,
    ) -> Result<LedgerEntry, ApiError> {
        let key = format!(
            "admin:{}",
            operator_key.unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
        );
        self.run(move |conn| adjust(conn, &user_id, amount, &key, &reason))
            .await
    }
}

fn open_account(
    conn: &Connection,
    user: &User,
    password_hash: &str,
    signup_bonus: i64,
) -> Result<(), OpenAccountError> {
    match accounts::insert_user(conn, user, password_hash) {
        Ok(()) => {}
        Err(DbError::Constraint(_)) => return Err(OpenAccountError::EmailTaken),
        Err(err) => return Err(OpenAccountError::Failed(err.into())),
    }
    if user.email_confirmed_at.is_some() {
        super::accounts::grant_signup_bonus(conn, &user.id, &user.email, signup_bonus)?;
    }
    Ok(())
}

/// What a request under an idempotency key asks for, to compare with what the key
/// recorded: the same key with a different body is a `CONFLICT`, never a silent replay.
pub(super) struct Expected<'a> {
    pub user_id: &'a str,
    pub kind: &'a str,
    pub amount: i64,
    /// The signed change to the buckets, where the kind has one direction per request
    /// (a correction adds or deducts): `None` where the kind fixes the sign.
    pub net: Option<i64>,
    pub reason: Option<&'a str>,
}

/// The row already recorded under `key`, if it is the same movement; a conflict if the
/// key was used for another (another user, kind, amount, direction or reason).
pub(super) fn replay(
    conn: &Connection,
    key: &str,
    expected: &Expected<'_>,
) -> Result<Option<LedgerEntry>, ApiError> {
    match ledger::find_by_key(conn, key)? {
        None => Ok(None),
        Some(entry)
            if entry.user_id == expected.user_id
                && entry.kind == expected.kind
                && entry.amount == expected.amount
                && expected.net.is_none_or(|net| {
                    entry.deltas.subscription + entry.deltas.purchased == net
                })
                && entry.reason.as_deref() == expected.reason =>
        {
            Ok(Some(entry))
        }
        Some(_) => Err(ApiError::with_message(
            ErrorCode::CONFLICT,
            "idempotency key already used for another credit movement",
        )),
    }
}

/// Records a movement and then, if the seller is in debt and the movement left credits
/// available (a grant, a release, a correction), the repayment of that debt as its own
/// row. Every ledger write of the actors goes through here, so no path can make
/// credits spendable while debt is owed.
pub(super) fn record(
    conn: &Connection,
    entry: &NewEntry<'_>,
    now: i64,
) -> Result<LedgerEntry, ApiError> {
    let (stored, after) = ledger::record(conn, entry, now)?;
    if let Some(deltas) = credits::repay_debt(&after) {
        ledger::record(
            conn,
            &NewEntry {
                user_id: entry.user_id,
                kind: "debt",
                amount: -deltas.debt,
                bucket: Some("mixed"),
                deltas,
                job_id: entry.job_id,
                task_id: entry.task_id,
                stripe_event_id: entry.stripe_event_id,
                reason: Some("debt repaid"),
                idempotency_key: &format!("debt-repay:{}", entry.idempotency_key),
            },
            now,
        )?;
    }
    Ok(stored)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn grant(
    conn: &Connection,
    user_id: &str,
    bucket: Bucket,
    amount: i64,
    key: &str,
    reason: Option<&str>,
    stripe_event_id: Option<&str>,
    kind: &str,
) -> Result<LedgerEntry, ApiError> {
    credits::check_amount("amount", amount, false)?;
    let expected = Expected {
        user_id,
        kind,
        amount,
        net: Some(amount),
        reason,
    };
    if let Some(done) = replay(conn, key, &expected)? {
        return Ok(done);
    }
    balances_of(conn, user_id)?;
    let entry = record(
        conn,
        &NewEntry {
            user_id,
            kind,
            amount,
            bucket: Some(bucket.as_str()),
            deltas: credits::grant(bucket, amount),
            stripe_event_id,
            reason,
            idempotency_key: key,
            ..NewEntry::default()
        },
        now_ms(),
    )?;
    Ok(entry)
}

pub(super) fn reverse(
    conn: &Connection,
    grant_key: &str,
    amount: Option<i64>,
    key: &str,
    reason: &str,
    stripe_event_id: Option<&str>,
) -> Result<LedgerEntry, ApiError> {
    let original = ledger::find_by_key(conn, grant_key)?
        .filter(|e| e.kind == "grant")
        .ok_or_else(|| ApiError::with_message(ErrorCode::NOT_FOUND, "no grant with that key"))?;
    let amount = amount.unwrap_or(original.amount);
    if amount <= 0 || amount > original.amount {
        return Err(ApiError::bad_field(
            "amount",
            "a reversal takes between 1 and the granted amount",
        ));
    }
    let expected = Expected {
        user_id: &original.user_id,
        kind: "reverse",
        amount,
        net: None,
        reason: Some(reason),
    };
    if let Some(done) = replay(conn, key, &expected)? {
        return Ok(done);
    }
    let bucket = match original.bucket.as_deref() {
        Some("subscription") => Bucket::Subscription,
        _ => Bucket::Purchased,
    };
    let balances = balances_of(conn, &original.user_id)?;
    let reversal = credits::reverse(&balances, bucket, amount);
    let now = now_ms();
    let entry = record(
        conn,
        &NewEntry {
            user_id: &original.user_id,
            kind: "reverse",
            amount,
            bucket: Some(bucket.as_str()),
            deltas: reversal.taken,
            stripe_event_id,
            reason: Some(reason),
            idempotency_key: key,
            ..NewEntry::default()
        },
        now,
    )?;
    if reversal.shortfall > 0 {
        // What could not be taken is owed: its own movement, so the ledger explains
        // the debt as it explains every balance.
        record(
            conn,
            &NewEntry {
                user_id: &original.user_id,
                kind: "debt",
                amount: reversal.shortfall,
                deltas: Deltas {
                    debt: reversal.shortfall,
                    ..Deltas::default()
                },
                stripe_event_id,
                reason: Some("refund exceeded the available credits"),
                idempotency_key: &format!("debt:{key}"),
                ..NewEntry::default()
            },
            now,
        )?;
    }
    Ok(entry)
}

/// A user's balances, or `NOT_FOUND` when there is no such account.
pub(super) fn balances_of(conn: &Connection, user_id: &str) -> Result<Balances, ApiError> {
    accounts::credits(conn, user_id)?
        .ok_or_else(|| ApiError::with_message(ErrorCode::NOT_FOUND, "no such user"))
}

fn adjust(
    conn: &Connection,
    user_id: &str,
    amount: i64,
    key: &str,
    reason: &str,
) -> Result<LedgerEntry, ApiError> {
    credits::check_amount("amount", amount, true)?;
    if amount > 0 {
        return grant(
            conn,
            user_id,
            Bucket::Purchased,
            amount,
            key,
            Some(reason),
            None,
            "adjust",
        );
    }
    let amount = -amount;
    let expected = Expected {
        user_id,
        kind: "adjust",
        amount,
        net: Some(-amount),
        reason: Some(reason),
    };
    if let Some(done) = replay(conn, key, &expected)? {
        return Ok(done);
    }
    let balances = balances_of(conn, user_id)?;
    let deltas = credits::deduct(&balances, amount).ok_or_else(|| {
        ApiError::new(ErrorCode::INSUFFICIENT_CREDITS)
            .details(json!({"required": amount, "available": balances.available()}))
    })?;
    record(
        conn,
        &NewEntry {
            user_id,
            kind: "adjust",
            amount,
            bucket: Some("mixed"),
            deltas,
            reason: Some(reason),
            idempotency_key: key,
            ..NewEntry::default()
        },
        now_ms(),
    )
}
