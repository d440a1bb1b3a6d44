//! The command line: `serve` and the operator's tools. Each command is a thin call
//! into the same code the server uses.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::app::{self, StartError};
use crate::config::Config;
use crate::db::{accounts, migrate};
use crate::domain::credits;
use crate::domain::time::rfc3339;
use crate::ops::{audit, backup};

/// Atelier — the backend of an AI product-photo studio in one binary.
#[derive(Debug, Parser)]
#[command(name = "atelier", version, about)]
pub struct Cli {
    /// Configuration file (default: ./config.toml when present).
    #[arg(long, global = true, env = "ATELIER_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (and the job queue) until SIGINT/SIGTERM.
    Serve,
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Manage user accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage credits.
    #[command(subcommand)]
    Credits(CreditsCommand),
    /// Billing tools: simulated Stripe events, package prices.
    #[command(subcommand)]
    Stripe(StripeCommand),
    /// Alipay tools: reconcile pending orders with `alipay.trade.query`.
    #[command(subcommand)]
    Alipay(AlipayCommand),
    /// Redeem codes: create, list, deactivate.
    #[command(subcommand)]
    Codes(crate::cli_growth::CodesCommand),
    /// The package list: list, set, add, reset-to-defaults.
    #[command(subcommand)]
    Packages(crate::cli_growth::PackagesCommand),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Recompute every account from its ledger; exit non-zero on any mismatch.
    Audit,
    /// Write a consistent snapshot of the database while the server keeps running.
    Backup(BackupArgs),
    /// Replace the database with a backup (stop the server first).
    Restore(RestoreArgs),
    /// Maintenance mode: refuse new jobs, checkouts and signups (works while the server
    /// runs; it notices within seconds).
    #[command(subcommand)]
    Maintenance(MaintenanceCommand),
    /// Print the project keys for a Supabase client: the anon key (public) and the
    /// service-role key (a server secret that reads every row of `/rest/v1`).
    Keys(KeysArgs),
}

/// `atelier maintenance …`
#[derive(Debug, Subcommand)]
pub enum MaintenanceCommand {
    /// Switch maintenance on.
    On {
        /// What sellers are told (default: a generic maintenance notice).
        #[arg(long)]
        message: Option<String>,
    },
    /// Switch maintenance off.
    Off,
    /// Show whether maintenance is on.
    Status,
}

/// `atelier keys`
#[derive(Debug, Args)]
pub struct KeysArgs {
    /// Days the service-role key stays valid.
    #[arg(long, default_value_t = 3650)]
    pub days: i64,
}

/// `atelier backup`
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The file to write (must not exist yet).
    #[arg(long)]
    pub out: PathBuf,
}

/// `atelier restore`
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup file to restore from.
    #[arg(long)]
    pub from: PathBuf,
}

/// `atelier user …`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user (the signup bonus is granted as for a web signup).
    Create(UserCreate),
    /// List users with their credits.
    List,
}

/// `atelier user create`
#[derive(Debug, Args)]
pub struct UserCreate {
    /// Email address (the login).
    #[arg(long)]
    pub email: String,
    /// Password, at least 8 characters.
    #[arg(long)]
    pub password: String,
    /// Make the user an administrator.
    #[arg(long)]
    pub admin: bool,
}

/// `atelier credits …`
#[derive(Debug, Subcommand)]
pub enum CreditsCommand {
    /// Grant (or, with a negative amount, deduct) credits, recorded in the ledger.
    Grant(CreditsGrant),
}

/// `atelier credits grant`
#[derive(Debug, Args)]
pub struct CreditsGrant {
    /// The user's email.
    #[arg(long)]
    pub email: String,
    /// Credits to add (negative to deduct; never below zero available).
    #[arg(long, allow_negative_numbers = true)]
    pub amount: i64,
    /// Why, kept in the ledger row.
    #[arg(long)]
    pub reason: String,
    /// Idempotency key, the same as `idempotency_key` of `POST /v1/admin/credits` (a
    /// correction made through both with one key applies once). Default: a new one, so
    /// every call grants.
    #[arg(long)]
    pub key: Option<String>,
}

/// `atelier stripe …`
#[derive(Debug, Subcommand)]
pub enum StripeCommand {
    /// Build the event Stripe would send, sign it with the webhook secret and apply it
    /// through the webhook code: `checkout.session.completed --email E --package P`,
    /// `charge.refunded --payment ID [--amount CENTS]`, or for the user's subscription
    /// `invoice.paid`, `invoice.payment_failed`, `customer.subscription.updated
    /// [--status S]`, `customer.subscription.deleted` with `--email E`.
    Trigger(StripeTrigger),
    /// Set a package's Stripe price id for a currency.
    SetPrice(StripeSetPrice),
}

/// `atelier stripe trigger`
#[derive(Debug, Args)]
pub struct StripeTrigger {
    /// The event type (see `atelier stripe trigger --help`).
    pub event: String,
    /// The buyer's email (checkout.session.completed).
    #[arg(long)]
    pub email: Option<String>,
    /// The package id or name (checkout.session.completed).
    #[arg(long)]
    pub package: Option<String>,
    /// The payment: its id (see /v1/billing/transactions), payment intent, invoice or
    /// checkout session (charge.refunded).
    #[arg(long)]
    pub payment: Option<String>,
    /// Minor units to refund (default: what is left).
    #[arg(long)]
    pub amount: Option<i64>,
    /// Stripe's subscription status (customer.subscription.updated; default active).
    #[arg(long)]
    pub status: Option<String>,
}

/// `atelier stripe set-price`
#[derive(Debug, Args)]
pub struct StripeSetPrice {
    /// The package id.
    #[arg(long)]
    pub package: String,
    /// usd, cny or hkd.
    #[arg(long, default_value = "usd")]
    pub currency: String,
    /// The Stripe price id (price_…).
    #[arg(long)]
    pub price: String,
}

/// `atelier config …`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load and validate the configuration; print the effective values (secrets hidden).
    Check,
}

/// A command's failure: the message and the process exit code.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub exit_code: i32,
}

impl From<StartError> for CliError {
    fn from(err: StartError) -> Self {
        CliError {
            message: err.0,
            exit_code: 1,
        }
    }
}

fn fail(message: impl Into<String>) -> CliError {
    CliError {
        message: message.into(),
        exit_code: 1,
    }
}

/// Runs a command other than `serve` and `config check` against a loaded config.
pub async fn run(command: Command, config: Config) -> Result<(), CliError> {
    match command {
        Command::Serve => serve(config).await,
        Command::Migrate => {
            let db = app::open_db(&config).await?;
            let version = db
                .with_conn(migrate::current_version)
                .map_err(|e| fail(e.to_string()))?;
            println!(
                "database {} is at schema version {version}",
                db.path().display()
            );
            Ok(())
        }
        Command::Keys(args) => keys(&config, args.days),
        Command::Maintenance(command) => maintenance(&config, command).await,
        Command::Config(ConfigCommand::Check) => {
            let shown = config.with_secrets_hidden();
            let text = toml::to_string_pretty(&shown).map_err(|e| fail(e.to_string()))?;
            println!("# configuration is valid\n{text}");
            Ok(())
        }
        Command::User(UserCommand::Create(args)) => {
            let state = app::build_core(&config).await?;
            let role = if args.admin { "admin" } else { "authenticated" };
            let user = state
                .auth
                .create_account(&args.email, &args.password, serde_json::Value::Null, role)
                .await
                .map_err(|e| fail(e.msg))?;
            println!("created {} {} ({})", user.id, user.email, user.role);
            Ok(())
        }
        Command::User(UserCommand::List) => {
            let db = app::open_db(&config).await?;
            let users = db
                .with_conn(accounts::list)
                .map_err(|e| fail(e.to_string()))?;
            println!(
                "{:<36}  {:<32}  {:<13}  {:>9}  {:>9}  {:>6}  created",
                "id", "email", "role", "available", "held", "debt"
            );
            for (user, credits) in users {
                println!(
                    "{:<36}  {:<32}  {:<13}  {:>9}  {:>9}  {:>6}  {}",
                    user.id,
                    user.email,
                    user.role,
                    credits.available(),
                    credits.held,
                    credits.debt,
                    rfc3339(user.created_at)
                );
            }
            Ok(())
        }
        Command::Credits(CreditsCommand::Grant(args)) => {
            credits::check_amount("--amount", args.amount, true).map_err(|e| fail(e.message))?;
            let state = app::build_core(&config).await?;
            let email = args.email.trim().to_ascii_lowercase();
            let user = state
                .db
                .with_conn(|conn| accounts::find_by_email(conn, &email))
                .map_err(|e| fail(e.to_string()))?
                .ok_or_else(|| fail(format!("no user with email {email}")))?;
            // The same namespace as `POST /v1/admin/credits`: one correction made through
            // both (same key) applies once.
            let entry = state
                .ledger
                .adjust(user.id.clone(), args.amount, args.key, args.reason)
                .await
                .map_err(|e| fail(e.message))?;
            let available = state
                .db
                .with_conn(|conn| accounts::credits(conn, &user.id))
                .map_err(|e| fail(e.to_string()))?
                .unwrap_or_default()
                .available();
            println!(
                "{} {} credits for {}; available now {}",
                if args.amount > 0 {
                    "granted"
                } else {
                    "deducted"
                },
                entry.amount,
                user.email,
                available
            );
            Ok(())
        }
        Command::Stripe(command) => stripe(command, config).await,
        Command::Alipay(AlipayCommand::Reconcile(args)) => {
            let core = app::build_core(&config).await?;
            let alipay = crate::actors::alipay::Alipay::new(core.db, core.ledger, &config.billing)
                .map_err(fail)?;
            let min_age = std::time::Duration::from_secs(args.min_age_secs);
            let (paid, expired) = alipay
                .reconcile(min_age)
                .await
                .map_err(|e| fail(e.to_string()))?;
            println!("alipay reconcile: {paid} paid, {expired} expired");
            Ok(())
        }
        Command::Codes(command) => crate::cli_growth::codes(command, config).await,
        Command::Packages(command) => crate::cli_growth::packages(command, config).await,
        Command::Audit => audit(config).await,
        Command::Backup(args) => {
            let db_path = config.database_path();
            let taken = tokio::task::spawn_blocking(move || backup::backup(&db_path, &args.out))
                .await
                .map_err(|e| fail(e.to_string()))?
                .map_err(|e| fail(e.0))?;
            println!(
                "backup written to {} ({} bytes, schema version {})",
                taken.path.display(),
                taken.bytes,
                taken.schema_version
            );
            Ok(())
        }
        Command::Restore(args) => {
            let db_path = config.database_path();
            let restored =
                tokio::task::spawn_blocking(move || backup::restore(&args.from, &db_path))
                    .await
                    .map_err(|e| fail(e.to_string()))?
                    .map_err(|e| fail(e.0))?;
            println!(
                "restored {} (schema version {}); run `atelier audit` to check it",
                restored.path.display(),
                restored.schema_version
            );
            Ok(())
        }
    }
}

/// `atelier maintenance on|off|status`: the same switch as `POST /v1/admin/maintenance`,
/// written to the database the server reads.
async fn maintenance(config: &Config, command: MaintenanceCommand) -> Result<(), CliError> {
    use crate::ops::maintenance as m;
    let db = app::open_db(config).await?;
    let now = crate::domain::time::now_ms();
    let state = match command {
        MaintenanceCommand::On { message } => {
            let message = m::check_message(message.as_deref()).map_err(fail)?;
            db.transaction(|conn| m::store(conn, true, &message, "cli", now))
        }
        MaintenanceCommand::Off => db.transaction(|conn| {
            let message = m::load(conn)?.message;
            m::store(conn, false, &message, "cli", now)
        }),
        MaintenanceCommand::Status => db.with_conn(m::load),
    }
    .map_err(|e| fail(e.to_string()))?;
    if state.enabled {
        println!("maintenance is on: {}", state.message);
    } else {
        println!("maintenance is off");
    }
    Ok(())
}

/// `atelier keys`: the configured anon key (or a signed `anon` key when none is set)
/// and a service-role key signed with the server's JWT secret.
fn keys(config: &Config, days: i64) -> Result<(), CliError> {
    use crate::auth::jwt::{JwtKeys, ANON_ROLE, SERVICE_ROLE};
    if days < 1 {
        return Err(fail("--days must be at least 1"));
    }
    std::fs::create_dir_all(&config.data.dir).map_err(|e| fail(e.to_string()))?;
    let keys = JwtKeys::new(&app::jwt_secret(config)?);
    let anon = match &config.auth.anon_key {
        Some(key) => key.clone(),
        None => keys.sign_key(ANON_ROLE, days).map_err(fail)?,
    };
    let service = keys.sign_key(SERVICE_ROLE, days).map_err(fail)?;
    tracing::warn!(days, "a service-role key was issued");
    println!("anon key (NEXT_PUBLIC_SUPABASE_ANON_KEY, public):\n{anon}\n");
    println!(
        "service_role key (SUPABASE_SERVICE_ROLE_KEY, a server secret: reads every row; \
         valid {days} days, revoked only by changing auth.jwt_secret):\n{service}"
    );
    Ok(())
}

async fn serve(config: Config) -> Result<(), CliError> {
    let running = app::start(config).await?;
    tracing::info!(addr = %running.addr, "atelier is listening on http://{}", running.addr);
    shutdown_signal().await;
    tracing::info!("shutting down");
    running.stop().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

async fn audit(config: Config) -> Result<(), CliError> {
    let db = app::open_db(&config).await?;
    let report = db
        .with_conn(audit::audit)
        .map_err(|e| fail(e.to_string()))?;
    for problem in &report.problems {
        println!("{problem}");
    }
    let problems = report.problems.len();
    println!(
        "audited {} accounts and their jobs: {problems} problem(s)",
        report.accounts
    );
    if problems > 0 {
        return Err(CliError {
            message: format!("audit found {problems} problem(s)"),
            exit_code: 1,
        });
    }
    Ok(())
}

/// Sets up logging to stderr as configured (`ATELIER_LOG` overrides the level).
pub fn init_logging(config: &Config) {
    let level = std::env::var("ATELIER_LOG").unwrap_or_else(|_| config.log.level.clone());
    let filter = tracing_subscriber::EnvFilter::try_new(&level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if config.log.format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// `atelier alipay …`.
#[derive(Debug, clap::Subcommand)]
pub enum AlipayCommand {
    /// Ask Alipay (`alipay.trade.query`) about pending orders: paid ones are granted,
    /// closed or unknown ones past their expiry are expired.
    Reconcile(AlipayReconcile),
}

/// `atelier alipay reconcile`.
#[derive(Debug, clap::Args)]
pub struct AlipayReconcile {
    /// Only orders at least this old (seconds).
    #[arg(long, default_value_t = 0)]
    pub min_age_secs: u64,
}

async fn stripe(command: StripeCommand, config: Config) -> Result<(), CliError> {
    match command {
        StripeCommand::SetPrice(args) => {
            let currency = args.currency.to_ascii_lowercase();
            if !crate::domain::billing::CURRENCIES.contains(&currency.as_str()) {
                return Err(fail("--currency must be usd, cny or hkd"));
            }
            let db = app::open_db(&config).await?;
            let found = db
                .transaction(|conn| {
                    crate::db::packages::set_stripe_price(
                        conn,
                        &args.package,
                        &currency,
                        &args.price,
                    )
                })
                .map_err(|e| fail(e.to_string()))?;
            if !found {
                return Err(fail(format!("no package {}", args.package)));
            }
            println!(
                "package {} costs {} in {currency}",
                args.package, args.price
            );
            Ok(())
        }
        StripeCommand::Trigger(args) => {
            let core = app::build_core(&config).await?;
            let secret = app::jwt_secret(&config)?;
            let billing = app::spawn_billing(&config, &core.db, &core.ledger, &secret).await?;
            let result = trigger(&billing, args).await;
            billing.stop();
            result
        }
    }
}

async fn trigger(
    billing: &crate::actors::billing::BillingHandle,
    args: StripeTrigger,
) -> Result<(), CliError> {
    let need = |value: Option<String>, flag: &str| {
        value.ok_or_else(|| fail(format!("{} needs --{flag}", args.event)))
    };
    match args.event.as_str() {
        "checkout.session.completed" => {
            let email = need(args.email.clone(), "email")?;
            let package = need(args.package.clone(), "package")?;
            let session = billing
                .trigger_checkout(&email, &package)
                .await
                .map_err(|e| fail(e.message))?;
            println!("checkout.session.completed for {email} ({package}): session {session}");
        }
        "charge.refunded" => {
            let payment = need(args.payment.clone(), "payment")?;
            let (payment, applied) = billing
                .trigger_refund(&payment, args.amount)
                .await
                .map_err(|e| fail(e.message))?;
            println!("charge.refunded for payment {}: {applied:?}", payment.id);
        }
        "invoice.paid"
        | "invoice.payment_failed"
        | "customer.subscription.updated"
        | "customer.subscription.deleted" => {
            let email = need(args.email.clone(), "email")?;
            let object = billing
                .trigger_subscription(&args.event, &email, args.status.as_deref())
                .await
                .map_err(|e| fail(e.message))?;
            println!("{} for {email}: {object}", args.event);
        }
        other => return Err(fail(format!("cannot trigger {other}; see --help"))),
    }
    Ok(())
}
