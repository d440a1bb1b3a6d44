//! Typed configuration: built-in defaults → `config.toml` → `ATELIER_<SECTION>_<KEY>`.
//!
//! Unknown keys and bad values are errors that name the key, so the binary can exit at
//! start with one clear line instead of running with a setting it ignored.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::catalog::ModelEntry;
use toml::Value;

/// Environment variables read by the CLI itself, not config keys.
const ENV_NOT_CONFIG: &[&str] = &["ATELIER_CONFIG", "ATELIER_LOG"];

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub data: DataConfig,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub billing: BillingConfig,
    pub queue: QueueConfig,
    pub limits: LimitsConfig,
    pub generation: GenerationConfig,
    pub storage: StorageConfig,
    pub providers: ProvidersConfig,
    pub mail: crate::mail::MailConfig,
    pub alerts: crate::ops::alerts_config::AlertsConfig,
    pub log: LogConfig,
    pub public: PublicConfig,
    /// The model catalog; a `[[models]]` list in the file replaces the defaults whole.
    pub models: Vec<ModelEntry>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig::default(),
            data: DataConfig::default(),
            database: DatabaseConfig::default(),
            auth: AuthConfig::default(),
            billing: BillingConfig::default(),
            queue: QueueConfig::default(),
            limits: LimitsConfig::default(),
            generation: GenerationConfig::default(),
            storage: StorageConfig::default(),
            providers: ProvidersConfig::default(),
            mail: crate::mail::MailConfig::default(),
            alerts: crate::ops::alerts_config::AlertsConfig::default(),
            log: LogConfig::default(),
            public: PublicConfig::default(),
            models: crate::catalog::default_models(),
        }
    }
}

/// `[storage]`: where objects live, uploads and housekeeping.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `local` (a directory under the data dir) or `s3` (settings in `[storage.s3]`).
    pub backend: String,
    /// Largest upload in bytes.
    pub upload_max_bytes: u64,
    /// Objects in the `temp` bucket older than this are deleted (seconds).
    pub temp_max_age_secs: u64,
    /// How often the `temp` bucket is swept (seconds).
    pub sweep_interval_secs: u64,
    /// Let remote image fetches reach loopback and private addresses (local development
    /// only: this turns the SSRF guard's address rule off).
    pub allow_private_fetch: bool,
    /// Longest fetch of a remote input image, in seconds (then the unit fails with
    /// IMAGE_INPUT_SOURCE_TIMEOUT).
    pub fetch_timeout_secs: u64,
    /// The S3-compatible bucket used when `backend = "s3"`.
    pub s3: S3Config,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: "local".into(),
            upload_max_bytes: 10 * 1024 * 1024,
            temp_max_age_secs: 24 * 3600,
            sweep_interval_secs: 3600,
            allow_private_fetch: false,
            fetch_timeout_secs: 10,
            s3: S3Config::default(),
        }
    }
}

/// `[storage.s3]`: an S3-compatible bucket (AWS S3, MinIO, R2, …). Atelier's buckets
/// (`temp`, `uploads`, `generated`) become key prefixes inside it.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// The service URL, e.g. `https://s3.eu-west-1.amazonaws.com` or `http://127.0.0.1:9000`.
    pub endpoint: String,
    /// The bucket (created beforehand; Atelier never creates it).
    pub bucket: String,
    /// The signing region (`us-east-1` for most S3-compatible servers).
    pub region: String,
    /// The access key id.
    pub access_key: String,
    /// The secret access key (hidden in logs and `atelier config check`).
    pub secret_key: String,
    /// Path-style URLs (`endpoint/bucket/key`, needed by MinIO) instead of virtual hosts.
    pub path_style: bool,
    /// Longest S3 request, in seconds.
    pub timeout_secs: u64,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: String::new(),
            bucket: String::new(),
            region: "us-east-1".into(),
            access_key: String::new(),
            secret_key: String::new(),
            path_style: false,
            timeout_secs: 30,
        }
    }
}

/// Shows everything but the secret key.
impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field("secret_key", &secret_shown(&self.secret_key))
            .field("path_style", &self.path_style)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

/// How a secret appears in `Debug` output and `config check`.
pub fn secret_shown(secret: &str) -> &'static str {
    if secret.trim().is_empty() {
        "<empty>"
    } else {
        "<hidden>"
    }
}

/// `[generation]`: text models and output checks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerationConfig {
    /// Catalog id used for product analysis (unset: or-gemini-3.1-flash if available, else local).
    pub analysis_model: Option<String>,
    /// Catalog id used for prompt writing (same default).
    pub prompt_model: Option<String>,
    /// How far an output image's ratio may be from the requested one (0.03 = 3 %).
    pub ratio_tolerance: f64,
    /// A directory whose `<name>[.<profile>].<lang>.txt` files replace the built-in
    /// prompt texts of `prompts/` (read at start; unset: the built-ins only).
    pub prompts_dir: Option<PathBuf>,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        GenerationConfig {
            analysis_model: None,
            prompt_model: None,
            ratio_tolerance: 0.03,
            prompts_dir: None,
        }
    }
}

/// `[queue]`: how units are retried.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// Attempts per unit before it fails.
    pub max_attempts: u32,
    /// First retry delay in milliseconds; doubles each attempt (plus jitter).
    pub backoff_base_ms: u64,
    /// Shared secret an external worker sends as `x-worker-secret` to nudge any job.
    pub worker_secret: Option<String>,
    /// Raise the stall alarm when units wait but none started or finished this long.
    pub stall_after_secs: u64,
    /// Raise the acceptance alarm after this many job creations failed in a row.
    pub acceptance_failure_alarm: u32,
    /// On shutdown, how long running units may take to finish before the rest is left
    /// for the next start.
    pub shutdown_grace_secs: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_attempts: 3,
            backoff_base_ms: 2000,
            worker_secret: None,
            stall_after_secs: 120,
            acceptance_failure_alarm: 5,
            shutdown_grace_secs: 30,
        }
    }
}

/// `[limits]`: per-user limits on job creation and input sizes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Jobs a user may have processing at once, per type.
    pub active_jobs_analysis: u32,
    pub active_jobs_image_gen: u32,
    pub active_jobs_style_replicate: u32,
    /// Job creations per user per minute (prompt streams are not jobs: see below).
    pub job_creations_per_minute: u32,
    /// Prompt streams (`generate-prompts-v2`) per user per minute, counted apart from jobs.
    pub prompt_streams_per_minute: u32,
    /// Analysis jobs per user per UTC day.
    pub daily_analysis: u32,
    /// Largest decoded input image in bytes.
    pub image_max_bytes: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            active_jobs_analysis: 10,
            active_jobs_image_gen: 8,
            active_jobs_style_replicate: 4,
            job_creations_per_minute: 10,
            prompt_streams_per_minute: 30,
            daily_analysis: 50,
            image_max_bytes: 10 * 1024 * 1024,
        }
    }
}

impl LimitsConfig {
    /// The limits that apply when a job of `job_type` is created.
    pub fn for_job(&self, job_type: crate::domain::jobs::JobType) -> JobLimits {
        use crate::domain::jobs::JobType;
        JobLimits {
            active: match job_type {
                JobType::Analysis => self.active_jobs_analysis,
                JobType::ImageGen => self.active_jobs_image_gen,
                JobType::StyleReplicate => self.active_jobs_style_replicate,
            },
            per_minute: self.job_creations_per_minute,
            per_day: (job_type == JobType::Analysis).then_some(self.daily_analysis),
        }
    }
}

/// The limits checked, atomically with the hold, when one job is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobLimits {
    /// Processing jobs of this type the user may have.
    pub active: u32,
    /// Jobs of any type the user may create per minute.
    pub per_minute: u32,
    /// Jobs of this type per UTC day, if limited.
    pub per_day: Option<u32>,
}

impl JobLimits {
    /// No limits (operator tools, tests of other rules).
    pub const NONE: JobLimits = JobLimits {
        active: u32::MAX,
        per_minute: u32::MAX,
        per_day: None,
    };
}

/// `[providers.*]`: the upstreams.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvidersConfig {
    pub local: crate::providers::local::LocalConfig,
    pub openrouter: UpstreamConfig,
    pub gemini: UpstreamConfig,
    pub ark: UpstreamConfig,
}

impl Default for ProvidersConfig {
    fn default() -> Self {
        ProvidersConfig {
            local: Default::default(),
            openrouter: UpstreamConfig::with_base("https://openrouter.ai/api/v1"),
            gemini: UpstreamConfig::with_base("https://generativelanguage.googleapis.com/v1beta"),
            ark: UpstreamConfig::with_base("https://ark.cn-beijing.volces.com/api/v3"),
        }
    }
}

impl ProvidersConfig {
    /// Whether a provider can run: `local` always, the upstreams once they have an API key.
    pub fn has_key(&self, provider: &str) -> bool {
        match provider {
            "local" => true,
            other => self.upstream(other).is_some_and(UpstreamConfig::configured),
        }
    }

    /// How many units a provider runs at once, and the outer timeout of one unit (an
    /// upstream unit may make a text call and an image call).
    pub fn unit_limits(&self, provider: &str) -> (usize, Duration) {
        match self.upstream(provider) {
            Some(upstream) => (
                upstream.concurrency,
                Duration::from_secs(upstream.image_timeout_secs + upstream.text_timeout_secs + 10),
            ),
            None => (
                self.local.concurrency as usize,
                Duration::from_secs(self.local.timeout_secs),
            ),
        }
    }

    /// The settings of an upstream provider by name.
    pub fn upstream(&self, provider: &str) -> Option<&UpstreamConfig> {
        match provider {
            "openrouter" => Some(&self.openrouter),
            "gemini" => Some(&self.gemini),
            "ark" => Some(&self.ark),
            _ => None,
        }
    }
}

/// `[providers.openrouter]`, `[providers.gemini]`, `[providers.ark]`: one upstream.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The API key; empty leaves the provider (and its models) off.
    pub api_key: String,
    /// Where the API lives (a proxy or a test server may stand in).
    pub base_url: String,
    /// Units (and streams) sent to this upstream at once.
    pub concurrency: usize,
    /// Longest wait for a TCP/TLS connection, in seconds.
    pub connect_timeout_secs: u64,
    /// Longest text call (analysis, prompt writing), in seconds.
    pub text_timeout_secs: u64,
    /// Longest image call, in seconds.
    pub image_timeout_secs: u64,
}

impl UpstreamConfig {
    fn with_base(base_url: &str) -> Self {
        UpstreamConfig {
            api_key: String::new(),
            base_url: base_url.into(),
            concurrency: 4,
            connect_timeout_secs: 10,
            text_timeout_secs: 60,
            image_timeout_secs: 120,
        }
    }

    /// Whether the provider has a key and can be used.
    pub fn configured(&self) -> bool {
        !self.api_key.trim().is_empty()
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig::with_base("")
    }
}

/// Shows everything but the key.
impl std::fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field(
                "api_key",
                &if self.configured() {
                    "<set>"
                } else {
                    "<empty>"
                },
            )
            .field("base_url", &self.base_url)
            .field("concurrency", &self.concurrency)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .field("text_timeout_secs", &self.text_timeout_secs)
            .field("image_timeout_secs", &self.image_timeout_secs)
            .finish()
    }
}

/// `[server]`: where and how the HTTP server listens.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address and port to listen on.
    pub bind: String,
    /// Origins allowed by CORS; `["*"]` allows any.
    pub cors_origins: Vec<String>,
    /// Largest JSON request body in bytes.
    pub json_body_limit_bytes: u64,
    /// Take the client address from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// The public base URL (`https://studio.example.com`) used in absolute links such as
    /// upload URLs. Unset: taken from the request's `Host` header.
    pub public_url: Option<String>,
    /// When set, `GET /metrics` wants `Authorization: Bearer <this>`.
    pub metrics_token: Option<String>,
    /// A `/realtime/v1` socket that sends nothing (not even a heartbeat, which
    /// supabase-js sends every 25 s) for this long is closed.
    pub realtime_heartbeat_timeout_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: "127.0.0.1:8787".into(),
            cors_origins: vec!["*".into()],
            json_body_limit_bytes: 1024 * 1024,
            trust_forwarded_for: false,
            public_url: None,
            metrics_token: None,
            realtime_heartbeat_timeout_secs: 60,
        }
    }
}

/// `[data]`: the one directory holding the database and stored files.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    pub dir: PathBuf,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            dir: PathBuf::from("./data"),
        }
    }
}

/// `[database]`: the SQLite pool.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Connections in the read/write pool.
    pub pool_size: u32,
    /// How long a connection waits for SQLite's write lock, in milliseconds.
    pub busy_timeout_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            pool_size: 8,
            busy_timeout_ms: 5000,
        }
    }
}

/// `[auth]`: accounts, sessions and tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 secret (at least 32 bytes). Unset: generated once and kept in the data dir.
    pub jwt_secret: Option<String>,
    /// Lifetime of an access token in seconds.
    pub access_token_ttl_secs: u64,
    /// Lifetime of an unused refresh token in seconds.
    pub refresh_token_ttl_secs: u64,
    /// Credits granted once at signup (to the purchased bucket).
    pub signup_bonus_credits: i64,
    /// The public anon key clients send; a request carrying only it is anonymous.
    pub anon_key: Option<String>,
    /// Signup and token requests allowed per client IP per minute.
    pub rate_limit_per_minute: u32,
    /// Whether `POST /auth/v1/signup` is open.
    pub allow_signup: bool,
    /// Whether a new account must confirm its address with a mailed 6-digit code before
    /// it can sign in (and receives its signup bonus only then).
    pub confirm_email: bool,
    /// How long a mailed code (confirmation, recovery, address change) stays valid.
    pub code_ttl_secs: u64,
    /// Shortest time between two code mails to one address (0: no limit).
    pub email_interval_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            jwt_secret: None,
            access_token_ttl_secs: 3600,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            signup_bonus_credits: 30,
            anon_key: None,
            rate_limit_per_minute: 30,
            allow_signup: true,
            confirm_email: false,
            code_ttl_secs: 600,
            email_interval_secs: 60,
        }
    }
}

/// `[billing]`: payments.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BillingConfig {
    /// `simulated` (no keys, no network) or `stripe`.
    pub mode: String,
    /// Stripe secret key (`sk_test_…` / `sk_live_…`); needed in `stripe` mode.
    pub secret_key: Option<String>,
    /// Webhook endpoint secret (`whsec_…`). In `simulated` mode, unset means one derived
    /// from the JWT secret.
    pub webhook_secret: Option<String>,
    /// Stripe API base URL (a proxy or a test server may stand in).
    pub api_base: String,
    /// Pinned `Stripe-Version` sent with every API call.
    pub api_version: String,
    /// The web client's base URL: checkout success/cancel and portal return URLs start here.
    pub app_url: String,
    /// Seconds a webhook signature stays valid.
    pub webhook_tolerance_secs: u64,
    /// Longest Stripe API call, in seconds.
    pub timeout_secs: u64,
    /// Attempts per Stripe API call (connection errors, 409, 429, 5xx are retried).
    pub max_attempts: u32,
    /// Share (0..1) of an invitee's first paid package credits granted to the inviter.
    pub invite_reward_rate: f64,
    /// `[billing.alipay]`: Alipay direct (simulated while unset and billing simulated).
    pub alipay: AlipayConfig,
}

/// `[billing.alipay]`: Alipay Open Platform. Without app id and both keys, Alipay is
/// simulated while billing is (a local pay page posts a correctly signed notify), and
/// off on a server that takes real money.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlipayConfig {
    /// The app's `app_id` (e.g. `2021000000000000`).
    pub app_id: Option<String>,
    /// The merchant's RSA private key (PKCS#8 or PKCS#1, PEM or bare base64).
    pub private_key: Option<String>,
    /// Alipay's RSA public key (SPKI, PEM or bare base64): verifies notifies and answers.
    pub public_key: Option<String>,
    /// The gateway (`https://openapi.alipay.com/gateway.do`; sandbox or a fake may stand in).
    pub gateway_url: String,
    /// Where Alipay posts notifies; unset = `<this server>/functions/v1/alipay-notify`.
    pub notify_url: Option<String>,
    /// Longest gateway call, in seconds.
    pub timeout_secs: u64,
    /// Minutes an order stays payable (`timeout_express`) before it expires.
    pub order_ttl_minutes: u64,
    /// Seconds between sweeps that query pending orders whose notify did not come.
    pub reconcile_interval_secs: u64,
}

impl Default for AlipayConfig {
    fn default() -> Self {
        AlipayConfig {
            app_id: None,
            private_key: None,
            public_key: None,
            gateway_url: "https://openapi.alipay.com/gateway.do".into(),
            notify_url: None,
            timeout_secs: 15,
            order_ttl_minutes: 30,
            reconcile_interval_secs: 300,
        }
    }
}

impl AlipayConfig {
    /// Whether a real (or fake) Alipay is configured.
    pub fn is_configured(&self) -> bool {
        [&self.app_id, &self.private_key, &self.public_key]
            .iter()
            .all(|v| v.as_deref().is_some_and(|s| !s.trim().is_empty()))
    }
}

impl std::fmt::Debug for AlipayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlipayConfig")
            .field("app_id", &self.app_id)
            .field(
                "private_key",
                &self.private_key.as_ref().map(|_| "<hidden>"),
            )
            .field("public_key", &self.public_key.as_ref().map(|_| "<hidden>"))
            .field("gateway_url", &self.gateway_url)
            .field("notify_url", &self.notify_url)
            .finish_non_exhaustive()
    }
}

impl Default for BillingConfig {
    fn default() -> Self {
        BillingConfig {
            mode: "simulated".into(),
            secret_key: None,
            webhook_secret: None,
            api_base: "https://api.stripe.com".into(),
            api_version: "2025-03-31.basil".into(),
            app_url: "http://127.0.0.1:8787".into(),
            webhook_tolerance_secs: 300,
            timeout_secs: 20,
            max_attempts: 3,
            alipay: AlipayConfig::default(),
            invite_reward_rate: 0.1,
        }
    }
}

impl BillingConfig {
    /// Whether payments go to the real (or a fake) Stripe.
    pub fn is_stripe(&self) -> bool {
        self.mode == "stripe"
    }
}

/// `[public]`: what `get-public-config` serves beside the catalog (the reference's
/// public `system_config` keys).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublicConfig {
    /// `batch_concurrency`: how many images the reference client generates at once.
    pub batch_concurrency: u32,
    /// `ta_pro_prompt_profile_enabled`: whether the client may ask for `promptProfile: ta-pro`.
    pub ta_pro_prompt_profile_enabled: bool,
    /// `release_notes.en` / `.zh`: text shown by the client.
    pub release_notes: ReleaseNotes,
    /// `platform_rules.version`.
    pub platform_rules_version: String,
    /// `platform_rules.rules`: the fewest images per e-commerce platform (`taobao = 5`).
    pub platform_min_images: BTreeMap<String, u32>,
}

impl Default for PublicConfig {
    fn default() -> Self {
        PublicConfig {
            batch_concurrency: 8,
            ta_pro_prompt_profile_enabled: false,
            release_notes: ReleaseNotes::default(),
            platform_rules_version: String::new(),
            platform_min_images: BTreeMap::new(),
        }
    }
}

impl PublicConfig {
    /// The prompt profile in use for a requested one: `ta-pro` only while it is enabled
    /// (the reference's `resolvePromptProfile`, `_shared/prompt-profile.ts` L17–31).
    pub fn prompt_profile(&self, requested: &str) -> &'static str {
        if requested == "ta-pro" && self.ta_pro_prompt_profile_enabled {
            "ta-pro"
        } else {
            "default"
        }
    }
}

/// `[public.release_notes]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReleaseNotes {
    pub en: String,
    pub zh: String,
}

/// `[log]`: what the process writes to stderr.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter such as `info` or `atelier=debug,warn`.
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

/// A configuration problem, always naming the key (or the file) at fault.
#[derive(Debug, thiserror::Error)]
#[error("config: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Loads defaults, then `path` (or `./config.toml` when present), then the environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(path, &env)
    }

    /// [`Config::load`] with an explicit environment (for tests).
    pub fn load_from(path: Option<&Path>, env: &[(String, String)]) -> Result<Config, ConfigError> {
        let mut merged =
            Value::try_from(Config::default()).map_err(|e| ConfigError(e.to_string()))?;
        let file = match path {
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from("config.toml")).filter(|p| p.exists()),
        };
        if let Some(file) = file {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| ConfigError(format!("cannot read {}: {e}", file.display())))?;
            let from_file: Value = toml::from_str(&text).map_err(|e| {
                ConfigError(format!("{}: {}", file.display(), one_line(&e.to_string())))
            })?;
            merge(&mut merged, from_file);
            Self::from_value(merged.clone(), &BTreeMap::new())
                .map_err(|e| ConfigError(format!("{} ({})", e.0, file.display())))?;
        }
        let origins = apply_env(&mut merged, env)?;
        let config = Self::from_value(merged, &origins)?;
        config.validate()?;
        Ok(config)
    }

    fn from_value(value: Value, origins: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
        serde_path_to_error::deserialize::<_, Config>(value).map_err(|err| {
            let path = err.path().to_string();
            let inner = one_line(&err.inner().to_string());
            let key = match inner.strip_prefix("unknown field `") {
                Some(rest) => {
                    let field = rest.split('`').next().unwrap_or_default();
                    let key = join_key(&path, field);
                    return ConfigError(format!(
                        "unknown key `{key}`{}",
                        origin_suffix(origins, &key)
                    ));
                }
                None => path,
            };
            ConfigError(format!(
                "bad value for `{key}`: {inner}{}",
                origin_suffix(origins, &key)
            ))
        })
    }

    /// Checks the rules serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError(format!("bad value for `{key}`: {why}")));
        if self.server.bind.parse::<SocketAddr>().is_err() {
            return bad("server.bind", "expected an address such as 127.0.0.1:8787");
        }
        if self.server.json_body_limit_bytes < 1024 {
            return bad("server.json_body_limit_bytes", "must be at least 1024");
        }
        if self.database.pool_size < 2 {
            return bad("database.pool_size", "must be at least 2");
        }
        if let Some(secret) = &self.auth.jwt_secret {
            if secret.len() < 32 {
                return bad("auth.jwt_secret", "must be at least 32 bytes long");
            }
        }
        if self.auth.access_token_ttl_secs < 60 {
            return bad("auth.access_token_ttl_secs", "must be at least 60");
        }
        if self.auth.code_ttl_secs < 1 || self.auth.code_ttl_secs > 86_400 {
            return bad("auth.code_ttl_secs", "must be between 1 and 86400");
        }
        if self.auth.signup_bonus_credits < 0 {
            return bad("auth.signup_bonus_credits", "must not be negative");
        }
        if self.auth.rate_limit_per_minute == 0 {
            return bad("auth.rate_limit_per_minute", "must be at least 1");
        }
        if self.queue.stall_after_secs == 0 {
            return bad("queue.stall_after_secs", "must be at least 1");
        }
        if self.queue.acceptance_failure_alarm == 0 {
            return bad("queue.acceptance_failure_alarm", "must be at least 1");
        }
        if self.queue.max_attempts == 0 {
            return bad("queue.max_attempts", "must be at least 1");
        }
        if self
            .queue
            .worker_secret
            .as_ref()
            .is_some_and(|s| s.len() < 16)
        {
            return bad("queue.worker_secret", "must be at least 16 bytes long");
        }
        if let Err((key, why)) = crate::catalog::validate(&self.models) {
            return bad(&key, &why);
        }
        if !(0.0..=0.5).contains(&self.generation.ratio_tolerance) {
            return bad("generation.ratio_tolerance", "must be between 0.0 and 0.5");
        }
        for (key, id) in [
            ("generation.analysis_model", &self.generation.analysis_model),
            ("generation.prompt_model", &self.generation.prompt_model),
        ] {
            if let Some(id) = id {
                if !self.models.iter().any(|m| &m.id == id) {
                    return bad(key, "not a model of the catalog");
                }
            }
        }
        let limits = &self.limits;
        if [
            limits.active_jobs_analysis,
            limits.active_jobs_image_gen,
            limits.active_jobs_style_replicate,
            limits.job_creations_per_minute,
            limits.prompt_streams_per_minute,
        ]
        .contains(&0)
        {
            return bad("limits", "job limits must be at least 1");
        }
        let local = &self.providers.local;
        if !(0.0..=1.0).contains(&local.fail_rate) {
            return bad("providers.local.fail_rate", "must be between 0.0 and 1.0");
        }
        if !matches!(local.fail_kind.as_str(), "retryable" | "permanent") {
            return bad(
                "providers.local.fail_kind",
                "expected \"retryable\" or \"permanent\"",
            );
        }
        if local.concurrency == 0 || local.timeout_secs == 0 {
            return bad(
                "providers.local.concurrency",
                "concurrency and timeout_secs must be at least 1",
            );
        }
        for name in ["openrouter", "gemini", "ark"] {
            let Some(upstream) = self.providers.upstream(name) else {
                continue;
            };
            if !(upstream.base_url.starts_with("http://")
                || upstream.base_url.starts_with("https://"))
            {
                return bad(
                    &format!("providers.{name}.base_url"),
                    "must start with http:// or https://",
                );
            }
            if upstream.concurrency == 0
                || upstream.connect_timeout_secs == 0
                || upstream.text_timeout_secs == 0
                || upstream.image_timeout_secs == 0
            {
                return bad(
                    &format!("providers.{name}.concurrency"),
                    "concurrency and every timeout must be at least 1",
                );
            }
        }
        self.validate_storage()?;
        if !matches!(self.billing.mode.as_str(), "simulated" | "stripe") {
            return bad("billing.mode", "expected \"simulated\" or \"stripe\"");
        }
        if let Err((key, why)) = self.mail.validate() {
            return bad(key, why);
        }
        if let Err((key, why)) = self.alerts.validate() {
            return bad(key, why);
        }
        if !(0.0..=1.0).contains(&self.billing.invite_reward_rate) {
            return bad("billing.invite_reward_rate", "must be between 0.0 and 1.0");
        }
        if self.billing.max_attempts == 0 || self.billing.timeout_secs == 0 {
            return bad(
                "billing.max_attempts",
                "max_attempts and timeout_secs must be at least 1",
            );
        }
        if !self.billing.app_url.starts_with("http") {
            return bad("billing.app_url", "expected an http(s) URL");
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return bad("log.format", "expected \"text\" or \"json\"");
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return bad("log.level", "not a valid filter (e.g. info, atelier=debug)");
        }
        Ok(())
    }

    fn validate_storage(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError(format!("bad value for `{key}`: {why}")));
        let storage = &self.storage;
        match storage.backend.as_str() {
            "local" => return Ok(()),
            "s3" => {}
            _ => return bad("storage.backend", "expected \"local\" or \"s3\""),
        }
        let s3 = &storage.s3;
        if !(s3.endpoint.starts_with("http://") || s3.endpoint.starts_with("https://")) {
            return bad(
                "storage.s3.endpoint",
                "must start with http:// or https:// when storage.backend = \"s3\"",
            );
        }
        for (key, value) in [
            ("storage.s3.bucket", &s3.bucket),
            ("storage.s3.region", &s3.region),
            ("storage.s3.access_key", &s3.access_key),
            ("storage.s3.secret_key", &s3.secret_key),
        ] {
            if value.trim().is_empty() {
                return bad(key, "must be set when storage.backend = \"s3\"");
            }
        }
        if s3.timeout_secs == 0 {
            return bad("storage.s3.timeout_secs", "must be at least 1");
        }
        Ok(())
    }

    /// A copy to show to people (`atelier config check`): every secret that is set is
    /// replaced by `<hidden>`.
    pub fn with_secrets_hidden(&self) -> Config {
        let mut shown = self.clone();
        let hidden = || Some("<hidden>".to_string());
        for secret in [
            &mut shown.auth.jwt_secret,
            &mut shown.auth.anon_key,
            &mut shown.queue.worker_secret,
            &mut shown.server.metrics_token,
            &mut shown.billing.secret_key,
            &mut shown.billing.webhook_secret,
            &mut shown.billing.alipay.private_key,
            &mut shown.billing.alipay.public_key,
        ] {
            if secret.is_some() {
                *secret = hidden();
            }
        }
        for secret in [
            &mut shown.storage.s3.secret_key,
            &mut shown.providers.openrouter.api_key,
            &mut shown.providers.gemini.api_key,
            &mut shown.providers.ark.api_key,
            &mut shown.mail.smtp_password,
            &mut shown.alerts.webhook_secret,
        ] {
            if !secret.trim().is_empty() {
                *secret = "<hidden>".into();
            }
        }
        shown
    }

    /// The listen address (validated at load).
    pub fn bind_addr(&self) -> SocketAddr {
        self.server
            .bind
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8787)))
    }

    /// Path of the SQLite database file.
    pub fn database_path(&self) -> PathBuf {
        self.data.dir.join("atelier.db")
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn join_key(path: &str, field: &str) -> String {
    if path.rsplit('.').next() == Some(field) {
        path.to_string()
    } else if path.is_empty() || path == "." {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

fn origin_suffix(origins: &BTreeMap<String, String>, key: &str) -> String {
    origins
        .get(key)
        .map(|var| format!(" (set by {var})"))
        .unwrap_or_default()
}

/// Deep-merges `over` into `base`: tables merge key by key, everything else replaces.
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Table(base), Value::Table(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(slot) => merge(slot, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (slot, value) => *slot = value,
    }
}

/// Applies `ATELIER_<SECTION>_<KEY>` variables; returns which variable set which key.
fn apply_env(
    merged: &mut Value,
    env: &[(String, String)],
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut origins = BTreeMap::new();
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix("ATELIER_") else {
            continue;
        };
        if ENV_NOT_CONFIG.contains(&name.as_str()) {
            continue;
        }
        let segments: Vec<String> = rest.split('_').map(str::to_ascii_lowercase).collect();
        if segments.len() < 2 || segments.iter().any(String::is_empty) {
            return Err(ConfigError(format!(
                "{name} is not of the form ATELIER_<SECTION>_<KEY>"
            )));
        }
        // Find the sections and nested tables (e.g. providers.openrouter) that prefixes
        // of the remaining segments name; what is left is the key.
        let mut path: Vec<String> = Vec::new();
        let mut i = 0;
        let mut probe = &*merged;
        while let Some(j) = (i + 1..segments.len()).rev().find(|&j| {
            probe
                .get(segments[i..j].join("_"))
                .is_some_and(Value::is_table)
        }) {
            let section = segments[i..j].join("_");
            probe = &probe[section.as_str()];
            path.push(section);
            i = j;
        }
        if path.is_empty() {
            return Err(ConfigError(format!(
                "unknown key `{}` (set by {name})",
                segments.join(".")
            )));
        }
        let mut t = merged
            .as_table_mut()
            .ok_or_else(|| ConfigError("defaults are not a table".into()))?;
        for section in &path {
            t = t
                .get_mut(section)
                .and_then(Value::as_table_mut)
                .ok_or_else(|| ConfigError(format!("{name} does not name a config key")))?;
        }
        let leaf = segments[i..].join("_");
        path.push(leaf.clone());
        let key = path.join(".");
        let value = env_value(t.get(&leaf), raw)
            .map_err(|why| ConfigError(format!("bad value for `{key}` (set by {name}): {why}")))?;
        t.insert(leaf, value);
        origins.insert(key, name.clone());
    }
    Ok(origins)
}

/// Reads an environment value with the type of the value it replaces.
fn env_value(current: Option<&Value>, raw: &str) -> Result<Value, String> {
    match current {
        Some(Value::Integer(_)) => raw
            .trim()
            .parse::<i64>()
            .map(Value::Integer)
            .map_err(|_| format!("expected an integer, got {raw:?}")),
        Some(Value::Float(_)) => raw
            .trim()
            .parse::<f64>()
            .map(Value::Float)
            .map_err(|_| format!("expected a number, got {raw:?}")),
        Some(Value::Boolean(_)) => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Ok(Value::Boolean(false)),
            _ => Err(format!("expected true or false, got {raw:?}")),
        },
        Some(Value::Array(_)) => {
            let trimmed = raw.trim();
            if trimmed.starts_with('[') {
                toml::from_str::<toml::Table>(&format!("v = {trimmed}"))
                    .ok()
                    .and_then(|mut t| t.remove("v"))
                    .ok_or_else(|| format!("expected a TOML array, got {raw:?}"))
            } else {
                Ok(Value::Array(
                    trimmed
                        .split(',')
                        .map(|s| s.trim())
                        .filter(|s| !s.is_empty())
                        .map(|s| Value::String(s.to_string()))
                        .collect(),
                ))
            }
        }
        _ => Ok(Value::String(raw.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load_text(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        Config::load_from(Some(&path), &env(vars))
    }

    #[test]
    fn defaults_are_valid() {
        let config = load_text("", &[]).unwrap();
        assert_eq!(config.server.bind, "127.0.0.1:8787");
        assert_eq!(config.auth.signup_bonus_credits, 30);
    }

    #[test]
    fn file_then_env_override_in_order() {
        let config = load_text(
            "[server]\nbind = \"0.0.0.0:9000\"\n[auth]\nsignup_bonus_credits = 5\n",
            &[("ATELIER_AUTH_SIGNUP_BONUS_CREDITS", "7"), ("PATH", "/bin")],
        )
        .unwrap();
        assert_eq!(config.server.bind, "0.0.0.0:9000");
        assert_eq!(config.auth.signup_bonus_credits, 7);
    }

    #[test]
    fn env_keys_with_underscores_and_lists() {
        let config = load_text(
            "",
            &[
                (
                    "ATELIER_AUTH_JWT_SECRET",
                    "0123456789abcdef0123456789abcdef",
                ),
                (
                    "ATELIER_SERVER_CORS_ORIGINS",
                    "https://a.example, https://b.example",
                ),
                ("ATELIER_SERVER_TRUST_FORWARDED_FOR", "true"),
            ],
        )
        .unwrap();
        assert_eq!(config.auth.jwt_secret.as_deref().map(str::len), Some(32));
        assert_eq!(config.server.cors_origins.len(), 2);
        assert!(config.server.trust_forwarded_for);
    }

    #[test]
    fn unknown_file_key_is_named() {
        let err = load_text("[server]\nbindx = \"x\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`server.bindx`"), "{err}");
        let err = load_text("[nope]\na = 1\n", &[]).unwrap_err().to_string();
        assert!(err.contains("`nope`"), "{err}");
    }

    #[test]
    fn unknown_env_key_is_named_with_its_variable() {
        let err = load_text("", &[("ATELIER_SERVER_PORTX", "1")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("server.portx") && err.contains("ATELIER_SERVER_PORTX"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_are_named() {
        let err = load_text("[auth]\naccess_token_ttl_secs = \"soon\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("auth.access_token_ttl_secs"), "{err}");
        let err = load_text("", &[("ATELIER_DATABASE_POOL_SIZE", "many")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("database.pool_size"), "{err}");
        let err = load_text("[server]\nbind = \"nowhere\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.bind"), "{err}");
        let err = load_text("[auth]\njwt_secret = \"short\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("auth.jwt_secret"), "{err}");
        let err = load_text("[log]\nformat = \"xml\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("log.format"), "{err}");
    }

    #[test]
    fn s3_storage_needs_its_settings_and_hides_its_secret() {
        let err = load_text("[storage]\nbackend = \"ftp\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("storage.backend"), "{err}");
        let err = load_text("[storage]\nbackend = \"s3\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("storage.s3.endpoint"), "{err}");
        let err = load_text(
            "[storage]\nbackend = \"s3\"\n[storage.s3]\nendpoint = \"http://127.0.0.1:9000\"\n\
             bucket = \"b\"\naccess_key = \"AK\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("storage.s3.secret_key"), "{err}");
        let config = load_text(
            "[storage]\nbackend = \"s3\"\n[storage.s3]\nendpoint = \"http://127.0.0.1:9000\"\n\
             bucket = \"b\"\naccess_key = \"AK\"\npath_style = true\n",
            &[("ATELIER_STORAGE_S3_SECRET_KEY", "very-secret-key")],
        )
        .unwrap();
        assert_eq!(config.storage.s3.secret_key, "very-secret-key");
        assert!(config.storage.s3.path_style);
        assert_eq!(config.storage.s3.region, "us-east-1");
        assert!(!format!("{config:?}").contains("very-secret-key"));
        let shown = toml::to_string(&config.with_secrets_hidden()).unwrap();
        assert!(!shown.contains("very-secret-key"), "{shown}");
        assert!(shown.contains("access_key = \"AK\""), "{shown}");
    }

    #[test]
    fn alipay_keys_come_from_the_environment_and_stay_hidden() {
        let config = load_text(
            "[billing.alipay]\napp_id = \"2021000000000001\"\n",
            &[
                ("ATELIER_BILLING_ALIPAY_PRIVATE_KEY", "private-key-text"),
                ("ATELIER_BILLING_ALIPAY_PUBLIC_KEY", "public-key-text"),
            ],
        )
        .unwrap();
        assert!(config.billing.alipay.is_configured());
        assert_eq!(config.billing.alipay.order_ttl_minutes, 30);
        assert!(!format!("{config:?}").contains("private-key-text"));
        let shown = toml::to_string(&config.with_secrets_hidden()).unwrap();
        assert!(!shown.contains("private-key-text"), "{shown}");
        assert!(!shown.contains("public-key-text"), "{shown}");
        assert!(shown.contains("2021000000000001"), "{shown}");
    }

    /// config.toml documents every `[storage]` and `[storage.s3]` key with its default:
    /// uncommenting those lines changes nothing.
    #[test]
    fn config_toml_documents_the_storage_defaults() {
        let shipped = include_str!("../config.toml");
        let mut section = "";
        let mut text = String::new();
        let mut documented = Vec::new();
        for line in shipped.lines() {
            if line.starts_with('[') {
                section = line.trim();
                text.push_str(line);
                text.push('\n');
            } else if let Some(setting) = line.strip_prefix("# ").filter(|l| {
                matches!(section, "[storage]" | "[storage.s3]")
                    && l.split_once(" = ")
                        .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            }) {
                documented.push(format!(
                    "{section}{}",
                    setting.split(" = ").next().unwrap_or("")
                ));
                text.push_str(setting);
                text.push('\n');
            }
        }
        let config = load_text(&text, &[]).unwrap();
        let shown = |c: &Config| toml::to_string(&c.storage).unwrap();
        assert_eq!(shown(&config), shown(&Config::default()));
        let keys = toml::Value::try_from(StorageConfig::default()).unwrap();
        for (key, value) in keys.as_table().unwrap() {
            let expected: Vec<String> = match value.as_table() {
                Some(table) => table
                    .keys()
                    .map(|k| format!("[storage.{key}]{k}"))
                    .collect(),
                None => vec![format!("[storage]{key}")],
            };
            for name in expected {
                assert!(
                    documented.contains(&name),
                    "{name} is not documented in config.toml"
                );
            }
        }
    }

    #[test]
    fn broken_toml_is_one_line() {
        let err = load_text("[server\nbind=", &[]).unwrap_err().to_string();
        assert!(!err.contains('\n'), "{err}");
    }
}
