//! Assembles Atelier: opens the database, spawns the actors, serves the routes, and
//! shuts everything down in order.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rand::RngCore;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use std::collections::HashMap;

use ractor::{Actor, ActorRef};
use tokio::sync::broadcast;

use crate::actors::alipay::Alipay;
use crate::actors::billing::{Billing, BillingHandle};
use crate::actors::generator::{GeneratorActor, GeneratorArgs};
use crate::actors::ledger::LedgerHandle;
use crate::actors::supervisor::{JobSupervisor, ProviderSlot, SupervisorArgs, SupervisorMsg};
use crate::auth::AuthService;
use crate::config::Config;
use crate::db::Db;
use crate::domain::jobs::RetryPolicy;
use crate::fetch::{FetchPolicy, Fetcher};
use crate::generation::pipeline::PipelineSettings;
use crate::generation::prompts::PromptTexts;
use crate::ops::alarm::QueueHealth;
use crate::ops::metrics::Metrics;
use crate::providers::ark::Ark;
use crate::providers::gemini::Gemini;
use crate::providers::images::ImageSource;
use crate::providers::local::LocalProvider;
use crate::providers::openrouter::OpenRouter;
use crate::providers::Provider;
use crate::storage::{Storage, UploadSigner};
use std::sync::atomic::AtomicUsize;

/// Everything a request handler may use.
pub struct AppState {
    pub config: Config,
    pub db: Db,
    pub ledger: LedgerHandle,
    pub auth: AuthService,
    /// Checkout, portal and webhooks (Stripe or simulated).
    pub billing: BillingHandle,
    /// Alipay direct: orders, notifies, reconcile, refunds (real or simulated).
    pub alipay: Alipay,
    /// Where objects live (`[storage] backend`).
    pub storage: Arc<dyn Storage>,
    pub supervisor: ActorRef<SupervisorMsg>,
    /// A job id is sent here after every change of that job.
    pub job_events: broadcast::Sender<String>,
    /// Row changes of the `/rest/v1` views, for `/realtime/v1` sockets.
    pub changes: broadcast::Sender<Arc<crate::actors::changes::Change>>,
    /// Every provider by name, for synchronous text work (prompts, style dimensions).
    pub providers: HashMap<String, Arc<dyn Provider>>,
    /// Prompt streams running now.
    pub prompt_streams: Arc<AtomicUsize>,
    /// The prompt texts (built-ins with `generation.prompts_dir` over them).
    pub prompts: Arc<PromptTexts>,
    /// Signs and checks upload URLs.
    pub upload_signer: UploadSigner,
    /// Everything `/metrics` exports.
    pub metrics: Arc<Metrics>,
    /// The queue's signs of life, for the stall and acceptance alarms.
    pub health: Arc<QueueHealth>,
    /// Drains the mail outbox; wake it after queueing a message.
    pub mailer: ActorRef<crate::actors::mailer::MailMsg>,
    /// `smtp` or `file`.
    pub mail_transport: &'static str,
    /// The maintenance switch, cached.
    pub maintenance: crate::ops::maintenance::Maintenance,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

/// Opens the database (migrating it) off the async runtime.
pub async fn open_db(config: &Config) -> Result<Db, StartError> {
    let path = config.database_path();
    let (size, busy) = (
        config.database.pool_size,
        Duration::from_millis(config.database.busy_timeout_ms),
    );
    tokio::task::spawn_blocking(move || Db::open(&path, size, busy))
        .await
        .map_err(|e| StartError(e.to_string()))?
        .map_err(|e| StartError(e.to_string()))
}

/// What the command line needs to change accounts and credits: the database, the
/// ledger actor and auth, without the job queue (which belongs to `serve` alone).
pub struct Core {
    pub db: Db,
    pub ledger: LedgerHandle,
    pub auth: AuthService,
    secret: Vec<u8>,
}

/// Opens the data dir and database and starts the ledger actor.
pub async fn build_core(config: &Config) -> Result<Core, StartError> {
    std::fs::create_dir_all(&config.data.dir).map_err(|e| {
        StartError(format!(
            "cannot create data dir {}: {e}",
            config.data.dir.display()
        ))
    })?;
    let db = open_db(config).await?;
    let secret = jwt_secret(config)?;
    let (ledger, _) = LedgerHandle::spawn(db.clone())
        .await
        .map_err(|e| StartError(e.to_string()))?;
    let auth = AuthService::new(db.clone(), ledger.clone(), &secret, config.auth.clone());
    Ok(Core {
        db,
        ledger,
        auth,
        secret,
    })
}

/// Builds the whole state: the core, storage, providers, the job queue.
pub async fn build_state(config: Config) -> Result<Arc<AppState>, StartError> {
    let Core {
        db,
        ledger,
        auth,
        secret,
    } = build_core(&config).await?;
    let billing = spawn_billing(&config, &db, &ledger, &secret).await?;
    let alipay = Alipay::new(db.clone(), ledger.clone(), &config.billing).map_err(StartError)?;
    let storage =
        crate::storage::from_config(&config).map_err(|e| StartError(format!("storage: {e}")))?;
    let probe = storage.clone();
    tokio::task::spawn_blocking(move || probe.check())
        .await
        .map_err(|e| StartError(e.to_string()))?
        .map_err(|e| StartError(format!("storage ({}): {e}", storage.backend())))?;
    tracing::info!(backend = storage.backend(), "storage ready");
    let (job_events, _) = broadcast::channel(1024);
    let changes =
        crate::actors::changes::spawn(db.clone(), job_events.subscribe(), ledger.commits());
    let metrics = Arc::new(Metrics::new(db.pool_wait()));
    let health = Arc::new(QueueHealth::new());
    let providers = build_providers(&config, &storage, &metrics);
    let prompts =
        Arc::new(PromptTexts::load(config.generation.prompts_dir.as_deref()).map_err(StartError)?);
    let queue = Queue {
        prompts: &prompts,
        db: &db,
        ledger: &ledger,
        providers: &providers,
        events: &job_events,
        metrics: &metrics,
        health: &health,
    };
    let supervisor = spawn_queue(&config, queue).await?;
    let mail = crate::mail::Mailer::from_config(&config.mail, &config.data.dir)
        .map_err(|e| StartError(format!("mail: {e}")))?;
    let mail_transport = mail.transport();
    let mailer = crate::actors::mailer::spawn(db.clone(), Arc::new(mail), config.mail.clone())
        .await
        .map_err(|e| StartError(format!("mail: {e}")))?;
    Ok(Arc::new(AppState {
        config,
        db,
        ledger,
        auth,
        billing,
        alipay,
        storage,
        supervisor,
        job_events,
        changes,
        providers,
        prompt_streams: Arc::new(AtomicUsize::new(0)),
        prompts,
        upload_signer: UploadSigner::new(&secret),
        metrics,
        health,
        mailer,
        mail_transport,
        maintenance: crate::ops::maintenance::Maintenance::new(),
    }))
}

/// Every configured provider: `local` always, each upstream once it has an API key.
fn build_providers(
    config: &Config,
    storage: &Arc<dyn Storage>,
    metrics: &Metrics,
) -> HashMap<String, Arc<dyn Provider>> {
    let images = ImageSource::new(
        storage.clone(),
        Fetcher::new(FetchPolicy {
            allow_private: config.storage.allow_private_fetch,
            max_bytes: config.limits.image_max_bytes,
            timeout: Duration::from_secs(config.storage.fetch_timeout_secs.max(1)),
            ..FetchPolicy::default()
        }),
    );
    let upstreams = &config.providers;
    let mut providers: HashMap<String, Arc<dyn Provider>> = HashMap::new();
    let mut add = |provider: Arc<dyn Provider>| {
        providers.insert(provider.name().to_string(), provider);
    };
    add(Arc::new(LocalProvider::new(
        upstreams.local.clone(),
        images.clone(),
    )));
    if upstreams.openrouter.configured() {
        add(Arc::new(OpenRouter::new(
            upstreams.openrouter.clone(),
            images.clone(),
            metrics.provider("openrouter"),
        )));
    }
    if upstreams.gemini.configured() {
        add(Arc::new(Gemini::new(
            upstreams.gemini.clone(),
            images.clone(),
            metrics.provider("gemini"),
        )));
    }
    if upstreams.ark.configured() {
        add(Arc::new(Ark::new(
            upstreams.ark.clone(),
            images,
            metrics.provider("ark"),
        )));
    }
    providers
}

/// What the job queue is built from.
struct Queue<'a> {
    db: &'a Db,
    ledger: &'a LedgerHandle,
    providers: &'a HashMap<String, Arc<dyn Provider>>,
    events: &'a broadcast::Sender<String>,
    metrics: &'a Arc<Metrics>,
    health: &'a Arc<QueueHealth>,
    prompts: &'a Arc<PromptTexts>,
}

/// Spawns one generator per provider and the job supervisor in front of them.
async fn spawn_queue(
    config: &Config,
    queue: Queue<'_>,
) -> Result<ActorRef<SupervisorMsg>, StartError> {
    let mut slots = HashMap::new();
    for (name, provider) in queue.providers {
        let (concurrency, timeout) = config.providers.unit_limits(name);
        let (generator, _) = Actor::spawn(
            None,
            GeneratorActor,
            GeneratorArgs {
                provider: provider.clone(),
                concurrency,
                timeout,
                settings: PipelineSettings {
                    ratio_tolerance: config.generation.ratio_tolerance,
                    prompts: queue.prompts.clone(),
                },
            },
        )
        .await
        .map_err(|e| StartError(format!("cannot start the {name} generator: {e}")))?;
        slots.insert(
            name.clone(),
            ProviderSlot {
                generator,
                concurrency,
                timeout,
            },
        );
    }
    let (supervisor, _) = Actor::spawn(
        None,
        JobSupervisor,
        SupervisorArgs {
            db: queue.db.clone(),
            ledger: queue.ledger.clone(),
            providers: slots,
            policy: RetryPolicy {
                max_attempts: config.queue.max_attempts,
                base_ms: config.queue.backoff_base_ms,
            },
            events: queue.events.clone(),
            metrics: queue.metrics.clone(),
            health: queue.health.clone(),
        },
    )
    .await
    .map_err(|e| StartError(format!("cannot start the job supervisor: {e}")))?;
    Ok(supervisor)
}

/// A server running in the background.
pub struct RunningApp {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    shutdown: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
}

impl RunningApp {
    /// Stops accepting, lets in-flight requests finish, lets running units finish (up
    /// to `queue.shutdown_grace_secs`; the rest is recovered at the next start), stops
    /// the actors.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.server).await;
        drain_queue(&self.state).await;
        self.state.supervisor.stop(None);
        self.state.mailer.stop(None);
        self.state.billing.stop();
        self.state.ledger.stop();
    }
}

/// Stops dispatching and waits for the running units, at most the grace period.
async fn drain_queue(state: &AppState) {
    let _ = state.supervisor.send_message(SupervisorMsg::Drain);
    let grace = Duration::from_secs(state.config.queue.shutdown_grace_secs);
    let deadline = tokio::time::Instant::now() + grace;
    let mut told = false;
    loop {
        let running = state
            .db
            .read(|conn| crate::db::jobs::queue_stats(conn).map(|s| s.running))
            .await
            .unwrap_or(0);
        if running == 0 {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                running,
                "shutdown grace period over; running units will be retried at the next start"
            );
            return;
        }
        if !told {
            told = true;
            tracing::info!(running, "waiting for running units to finish");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Binds `config.server.bind` and serves until [`RunningApp::stop`] (or `shutdown`
/// resolves, for the CLI's signal handling).
pub async fn start(config: Config) -> Result<RunningApp, StartError> {
    let addr = config.bind_addr();
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| StartError(format!("cannot listen on {addr}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| StartError(e.to_string()))?;
    let state = build_state(config).await?;
    spawn_temp_sweep(&state);
    spawn_alipay_reconcile(&state);
    crate::ops::alarm::spawn_watchdog(&state);
    let (tx, rx) = oneshot::channel::<()>();
    let routes = crate::http::routes(state.clone());
    let server = tokio::spawn(
        warp::serve(routes)
            .incoming(listener)
            .graceful(async move {
                let _ = rx.await;
            })
            .run(),
    );
    Ok(RunningApp {
        addr,
        state,
        shutdown: Some(tx),
        server,
    })
}

/// Asks Alipay every `billing.alipay.reconcile_interval_secs` about pending orders whose
/// notify did not come (configured Alipay only).
fn spawn_alipay_reconcile(state: &Arc<AppState>) {
    if !state.alipay.configured() {
        return;
    }
    let alipay = state.alipay.clone();
    let weak = Arc::downgrade(state);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(alipay.reconcile_interval());
        every.tick().await;
        loop {
            every.tick().await;
            if weak.strong_count() == 0 {
                return;
            }
            match alipay.reconcile(Duration::from_secs(60)).await {
                Ok((0, 0)) => {}
                Ok((paid, expired)) => {
                    tracing::info!(paid, expired, "alipay reconcile")
                }
                Err(err) => tracing::warn!(error = %err, "alipay reconcile failed"),
            }
        }
    });
}

/// Deletes old `temp` objects no job references, now and every
/// `storage.sweep_interval_secs`.
fn spawn_temp_sweep(state: &Arc<AppState>) {
    let storage = state.storage.clone();
    let db = state.db.clone();
    let settings = state.config.storage.clone();
    let weak = Arc::downgrade(state);
    tokio::spawn(async move {
        let mut every =
            tokio::time::interval(Duration::from_secs(settings.sweep_interval_secs.max(1)));
        loop {
            every.tick().await;
            if weak.strong_count() == 0 {
                return;
            }
            // Inputs a job references stay as long as the job (the reference client
            // uploads every input to temp; a job re-run from history needs them).
            let payloads = match db
                .read(|conn| crate::db::jobs::payloads_mentioning(conn, "temp/"))
                .await
            {
                Ok(payloads) => payloads,
                Err(err) => {
                    tracing::warn!(error = %err, "temp sweep skipped: job inputs unreadable");
                    continue;
                }
            };
            let keep = crate::storage::referenced_keys(&payloads, "temp");
            let storage = storage.clone();
            let max_age = Duration::from_secs(settings.temp_max_age_secs);
            match tokio::task::spawn_blocking(move || storage.sweep("temp", max_age, &keep)).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::info!(removed = n, "swept old temp objects"),
                Ok(Err(err)) => tracing::warn!(error = %err, "temp sweep failed"),
                Err(err) => tracing::warn!(error = %err, "temp sweep panicked"),
            }
        }
    });
}

/// The HS256 secret: configured, or generated once into `<data dir>/jwt_secret` (0600).
pub fn jwt_secret(config: &Config) -> Result<Vec<u8>, StartError> {
    if let Some(secret) = &config.auth.jwt_secret {
        return Ok(secret.as_bytes().to_vec());
    }
    let path = config.data.dir.join("jwt_secret");
    match std::fs::read_to_string(&path) {
        Ok(text) if text.trim().len() >= 32 => return Ok(text.trim().as_bytes().to_vec()),
        Ok(_) => {
            return Err(StartError(format!(
                "{} is shorter than 32 bytes; delete it to generate a new one",
                path.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StartError(format!("cannot read {}: {e}", path.display()))),
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    // Written whole to a private temp file, then linked into place: a process starting
    // at the same moment either wins the link or reads the winner's complete file.
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    let cannot = |e: std::io::Error| StartError(format!("cannot write {}: {e}", path.display()));
    write_private(&tmp, secret.as_bytes()).map_err(cannot)?;
    let linked = std::fs::hard_link(&tmp, &path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), "generated a new JWT secret");
            Ok(secret.into_bytes())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => jwt_secret(config),
        Err(e) => Err(cannot(e)),
    }
}

/// Creates a file readable by its owner only; refuses to overwrite one.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Starts the billing actor. Simulated mode without a configured webhook secret signs
/// with one derived from the JWT secret.
pub async fn spawn_billing(
    config: &Config,
    db: &Db,
    ledger: &LedgerHandle,
    jwt_secret: &[u8],
) -> Result<BillingHandle, StartError> {
    let billing = &config.billing;
    let webhook_secret = billing
        .webhook_secret
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            (!billing.is_stripe())
                .then(|| crate::stripe::simulated::derived_webhook_secret(jwt_secret))
        });
    if billing.is_stripe() && (webhook_secret.is_none() || billing.secret_key.is_none()) {
        tracing::warn!("billing.mode is stripe but secret_key or webhook_secret is not set");
    }
    if !billing.is_stripe() {
        tracing::debug!("billing is simulated: /dev/checkout pages grant credits without payment");
    }
    BillingHandle::spawn(Billing::new(
        db.clone(),
        ledger.clone(),
        billing.clone(),
        webhook_secret,
    ))
    .await
    .map_err(|e| StartError(format!("cannot start the billing actor: {e}")))
}
