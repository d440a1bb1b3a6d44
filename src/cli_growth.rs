//! `atelier codes …` (redeem codes) and `atelier packages …` (the price list): the same
//! checks and writes as the admin API, for operators at a shell.

use clap::{Args, Subcommand};

use crate::actors::growth::{create_redeem_code, NewRedeemCode};
use crate::actors::pricing::{self, PackageChange};
use crate::app;
use crate::cli::CliError;
use crate::config::Config;
use crate::db::growth as gdb;
use crate::db::packages::{self, Package};
use crate::domain::time::{now_ms, parse_rfc3339, rfc3339};
use crate::domain::ApiError;

/// `atelier codes …`
#[derive(Debug, Subcommand)]
pub enum CodesCommand {
    /// Create a redeem code (generated unless --code is given).
    Create(CodesCreate),
    /// List redeem codes, newest first.
    List,
    /// Deactivate a redeem code (by id or code).
    Deactivate {
        /// The code or its id.
        code: String,
    },
}

/// `atelier codes create`
#[derive(Debug, Args)]
pub struct CodesCreate {
    /// The code's text (upper-cased); default: 12 generated characters.
    #[arg(long)]
    pub code: Option<String>,
    /// Purchased credits each claim grants.
    #[arg(long)]
    pub credits: i64,
    /// How many users may claim it.
    #[arg(long, default_value_t = 1)]
    pub max_uses: i64,
    /// RFC 3339 time after which claims are refused.
    #[arg(long)]
    pub expires: Option<String>,
    /// Create it switched off.
    #[arg(long)]
    pub inactive: bool,
    /// A note for operators.
    #[arg(long)]
    pub note: Option<String>,
}

/// `atelier packages …`
#[derive(Debug, Subcommand)]
pub enum PackagesCommand {
    /// List every package (active first) with its Stripe price ids.
    List,
    /// Change a package (by id or name); only the options given change.
    Set(PackagesSet),
    /// Add a package.
    Add(PackagesSet),
    /// Put the default set on sale (the reference's current prices) and deactivate the
    /// other packages; price ids already set on default packages are kept.
    ResetToDefaults,
}

/// `atelier packages set|add`
#[derive(Debug, Args)]
pub struct PackagesSet {
    /// The package's id or name (`set`) — ignored by `add`.
    #[arg(long)]
    pub package: Option<String>,
    #[arg(long)]
    pub name: Option<String>,
    /// `subscription` or `one_time`.
    #[arg(long = "type")]
    pub kind: Option<String>,
    /// Price in US cents.
    #[arg(long)]
    pub price_cents: Option<i64>,
    #[arg(long)]
    pub credits: Option<i64>,
    /// First-subscription (or first one-time purchase) bonus credits.
    #[arg(long)]
    pub bonus: Option<i64>,
    #[arg(long)]
    pub popular: Option<bool>,
    #[arg(long)]
    pub sort: Option<i64>,
    #[arg(long)]
    pub active: Option<bool>,
    /// Stripe price id in USD ("" clears it).
    #[arg(long)]
    pub price_id: Option<String>,
    /// Stripe price id in CNY.
    #[arg(long)]
    pub price_id_cny: Option<String>,
    /// Stripe price id in HKD.
    #[arg(long)]
    pub price_id_hkd: Option<String>,
}

fn fail(message: impl Into<String>) -> CliError {
    CliError {
        message: message.into(),
        exit_code: 1,
    }
}

fn api(err: ApiError) -> CliError {
    match err.details.as_ref().and_then(|d| d.get("field")) {
        Some(field) => fail(format!("{}: {}", field, err.message)),
        None => fail(err.message),
    }
}

/// Runs `atelier codes …`.
pub async fn codes(command: CodesCommand, config: Config) -> Result<(), CliError> {
    let db = app::open_db(&config).await?;
    match command {
        CodesCommand::Create(args) => {
            let expires_at = match args.expires.as_deref() {
                Some(text) => {
                    Some(parse_rfc3339(text).ok_or_else(|| fail("--expires must be RFC 3339"))?)
                }
                None => None,
            };
            let new = NewRedeemCode {
                code: args.code,
                credit_amount: args.credits,
                max_uses: args.max_uses,
                expires_at,
                active: !args.inactive,
                note: args.note,
            };
            let code = db
                .transaction(|conn| create_redeem_code(conn, &new))
                .map_err(api)?;
            println!(
                "redeem code {} ({} credits, {} use(s){}) created",
                code.code,
                code.credit_amount,
                code.max_uses,
                code.expires_at
                    .map(|t| format!(", expires {}", rfc3339(t)))
                    .unwrap_or_default()
            );
        }
        CodesCommand::List => {
            let codes = db
                .with_conn(|conn| gdb::list_redeem_codes(conn, u32::MAX))
                .map_err(|e| fail(e.to_string()))?;
            for c in codes {
                println!(
                    "{}\t{}\t{} credits\t{}/{} used\t{}\t{}",
                    c.id,
                    c.code,
                    c.credit_amount,
                    c.used_count,
                    c.max_uses,
                    if c.active { "active" } else { "inactive" },
                    c.expires_at.map(rfc3339).unwrap_or_else(|| "-".into())
                );
            }
        }
        CodesCommand::Deactivate { code } => {
            let text = code.trim().to_ascii_uppercase();
            let found = db
                .transaction(|conn| {
                    let Some(c) = gdb::find_redeem_code(conn, &text)?
                        .or(gdb::find_redeem_code(conn, code.trim())?)
                    else {
                        return Ok(None);
                    };
                    gdb::set_redeem_active(conn, &c.id, false, now_ms())?;
                    Ok::<_, crate::db::DbError>(Some(c.code))
                })
                .map_err(|e| fail(e.to_string()))?
                .ok_or_else(|| fail(format!("no redeem code {code}")))?;
            println!("redeem code {found} deactivated");
        }
    }
    Ok(())
}

fn show(p: &Package) -> String {
    format!(
        "{}\t{}\t{}\t{:.2} USD\t{} credits\tbonus {}\t{}{}\tprices usd={} cny={} hkd={}",
        p.id,
        p.name,
        p.kind,
        p.price_usd_cents as f64 / 100.0,
        p.credits,
        p.first_sub_bonus,
        if p.active { "active" } else { "inactive" },
        if p.is_popular { ", popular" } else { "" },
        p.stripe_price_id.as_deref().unwrap_or("-"),
        p.stripe_price_id_cny.as_deref().unwrap_or("-"),
        p.stripe_price_id_hkd.as_deref().unwrap_or("-"),
    )
}

/// Runs `atelier packages …`.
pub async fn packages(command: PackagesCommand, config: Config) -> Result<(), CliError> {
    let db = app::open_db(&config).await?;
    let change = |args: PackagesSet| PackageChange {
        name: args.name,
        kind: args.kind,
        price_usd_cents: args.price_cents,
        credits: args.credits,
        first_sub_bonus: args.bonus,
        is_popular: args.popular,
        sort_order: args.sort,
        active: args.active,
        stripe_price_id: args.price_id,
        stripe_price_id_cny: args.price_id_cny,
        stripe_price_id_hkd: args.price_id_hkd,
    };
    match command {
        PackagesCommand::List => {
            let all = db
                .with_conn(packages::list_all)
                .map_err(|e| fail(e.to_string()))?;
            for p in &all {
                println!("{}", show(p));
            }
        }
        PackagesCommand::Set(args) => {
            let key = args
                .package
                .clone()
                .ok_or_else(|| fail("packages set needs --package ID|NAME"))?;
            let changed = db
                .transaction(|conn| pricing::update_package(conn, &key, change(args)))
                .map_err(api)?;
            println!("changed: {}", show(&changed));
        }
        PackagesCommand::Add(args) => {
            let added = db
                .transaction(|conn| pricing::create_package(conn, change(args)))
                .map_err(api)?;
            println!("added: {}", show(&added));
        }
        PackagesCommand::ResetToDefaults => {
            let set = db.transaction(pricing::reset_to_defaults).map_err(api)?;
            println!("the default packages are on sale; other packages are inactive:");
            for p in &set {
                println!("{}", show(p));
            }
        }
    }
    Ok(())
}
