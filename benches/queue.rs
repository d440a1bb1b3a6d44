//! Queue benchmark (`harness = false`): drives the real release `atelier` binary over HTTP.
//!
//! Run it with `scripts/bench-queue.sh`, or
//! `cargo bench --bench queue -- [--bin PATH] [--users N] [--units N] [--concurrency N]
//! [--baseline PATH] [--keep]` (`--keep` leaves the temp dir with every phase's data).
//!
//! 1. A template data dir gets an admin and `--users` accounts (default 64) through the CLI,
//!    each user granted plenty of credits; a first server signs them all in (sessions live
//!    in the database, so the tokens stay valid) and stops. Every phase then starts a
//!    fresh `atelier serve` on a copy of the template, so no phase's memory figures carry
//!    the logins' argon2 buffers.
//! 2. Phase A (`delay_ms = 0`): one client per user, all at once, submit 1-unit jobs until
//!    `--units` (default 10,000) are accepted; then the same with `imageCount: 9`. Reported:
//!    HTTP acceptance rate, and tasks drained per second from the first submission until
//!    no unit is queued or running.
//! 3. Phase B (`delay_ms = 2000`): the same number of units is accepted and left queued;
//!    the server's peak RSS (`VmHWM`) is read after acceptance and while they wait.
//! 4. With `--baseline PATH` (the built `sqlite-baseline` binary), its job-acceptance cases
//!    run briefly and the HTTP acceptance rate is set against them.
//!
//! Queue progress comes from `GET /v1/admin/queue`; a server without that endpoint is
//! watched through a read-only SQLite connection to its database file instead. The end
//! state is confirmed over HTTP for every user.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

/// An 8×8 red PNG: the seller's product photo.
const PRODUCT_PNG: &str = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAEUlEQVR4nGM4ISeHFTEMLQkAkL9BAbKfPiIAAAAASUVORK5CYII=";
const PASSWORD: &str = "bench-password-123";
const ADMIN_EMAIL: &str = "bench-admin@example.com";
const CREDITS_PER_USER: i64 = 1_000_000;
/// A phase stops waiting for its queue when no unit ended for this long.
const STALL: Duration = Duration::from_secs(20);
/// Refused submissions (all clients together) after which a phase gives up.
const MAX_REFUSALS: i64 = 2_000;

mod support;

use support::{load_average, proc_kib, run_baseline, Error, Result};

/// Command-line settings.
struct Settings {
    bin: PathBuf,
    users: usize,
    units: i64,
    concurrency: u32,
    baseline: Option<PathBuf>,
    keep: bool,
}

impl Settings {
    fn parse() -> Result<Settings> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut s = Settings {
            bin: std::env::var_os("BENCH_ATELIER_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("target/release/atelier")),
            users: 64,
            units: 10_000,
            concurrency: 16,
            baseline: std::env::var_os("BENCH_SQLITE_BASELINE").map(PathBuf::from),
            keep: false,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or(format!("{arg} needs a value"));
            match arg.as_str() {
                "--bin" => s.bin = PathBuf::from(value()?),
                "--users" => s.users = value()?.parse()?,
                "--units" => s.units = value()?.parse()?,
                "--concurrency" => s.concurrency = value()?.parse()?,
                "--baseline" => s.baseline = Some(PathBuf::from(value()?)),
                "--keep" => s.keep = true,
                "--bench" => {} // added by `cargo bench`
                other => return Err(format!("unknown argument {other}").into()),
            }
        }
        if s.users == 0 || s.units < 9 || s.concurrency == 0 {
            return Err("--users, --units (at least 9) and --concurrency must be positive".into());
        }
        Ok(s)
    }
}

/// The environment every `atelier` process of the run gets (nothing else `ATELIER_*`).
struct Env {
    vars: Vec<(String, String)>,
    optional: Vec<String>,
}

impl Env {
    fn apply(&self, cmd: &mut Command, data: &Path) {
        for (key, _) in std::env::vars() {
            if key.starts_with("ATELIER_") {
                cmd.env_remove(key);
            }
        }
        cmd.envs(self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd.env("ATELIER_DATA_DIR", data);
    }

    fn has(&self, key: &str) -> bool {
        self.optional.iter().any(|kv| kv.starts_with(key))
    }
}

/// The base environment, plus the keys this binary may not know yet, kept only when
/// `atelier config check` accepts them (an unknown key stops the binary with exit code 2).
async fn probe_env(bin: &Path, scratch: &Path) -> Result<Env> {
    let config = scratch.join("config.toml");
    std::fs::write(&config, "")?;
    let mut env = Env {
        vars: vec![
            ("ATELIER_CONFIG".into(), config.display().to_string()),
            ("ATELIER_AUTH_SIGNUP_BONUS_CREDITS".into(), "0".into()),
            (
                "ATELIER_AUTH_RATE_LIMIT_PER_MINUTE".into(),
                "1000000".into(),
            ),
            ("ATELIER_LOG".into(), "warn".into()),
            ("ATELIER_LOG_FORMAT".into(), "json".into()),
        ],
        optional: Vec::new(),
    };
    for (key, value) in [
        ("ATELIER_PROVIDERS_LOCAL_TINY_OUTPUT", "true"),
        ("ATELIER_LIMITS_ACTIVE_JOBS_IMAGE_GEN", "100000"),
        ("ATELIER_LIMITS_JOB_CREATIONS_PER_MINUTE", "100000"),
    ] {
        let mut cmd = Command::new(bin);
        env.apply(&mut cmd, scratch);
        let ok = cmd
            .env(key, value)
            .args(["config", "check"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await?
            .success();
        if ok {
            env.vars.push((key.into(), value.into()));
            env.optional.push(format!("{key}={value}"));
        }
    }
    Ok(env)
}

/// Runs one CLI command against `data`; fails with its output.
async fn cli(bin: &Path, env: &Env, data: &Path, args: &[&str]) -> Result<()> {
    let mut cmd = Command::new(bin);
    env.apply(&mut cmd, data);
    let out = cmd.args(args).output().await?;
    if !out.status.success() {
        return Err(format!(
            "atelier {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(())
}

fn email(user: usize) -> String {
    format!("bench-{user:03}@example.com")
}

/// A data dir with an admin (to read the queue) and `users` funded accounts, made through
/// the CLI: the admin alone first (concurrent first starts race to create the JWT
/// secret), then the users two at a time.
async fn make_template(s: &Settings, env: &Env, data: &Path) -> Result<()> {
    cli(&s.bin, env, data, &["migrate"]).await?;
    cli(
        &s.bin,
        env,
        data,
        &[
            "user",
            "create",
            "--email",
            ADMIN_EMAIL,
            "--password",
            PASSWORD,
            "--admin",
        ],
    )
    .await?;
    let amount = CREDITS_PER_USER.to_string();
    let users: Vec<usize> = (0..s.users).collect();
    for pair in users.chunks(2) {
        let mut running = Vec::new();
        for &user in pair {
            let (email, amount) = (email(user), amount.clone());
            let mut create = Command::new(&s.bin);
            env.apply(&mut create, data);
            let mut grant = Command::new(&s.bin);
            env.apply(&mut grant, data);
            running.push(tokio::spawn(async move {
                let created = create
                    .args(["user", "create", "--email", &email, "--password", PASSWORD])
                    .output()
                    .await?;
                let granted = grant
                    .args(["credits", "grant", "--email", &email, "--amount", &amount])
                    .args(["--reason", "queue benchmark"])
                    .output()
                    .await?;
                for out in [created, granted] {
                    if !out.status.success() {
                        return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
                    }
                }
                Ok::<_, Error>(())
            }));
        }
        for job in running {
            job.await??;
        }
    }
    Ok(())
}

/// Access tokens, valid in every copy of the template.
struct Tokens {
    admin: String,
    users: Vec<String>,
}

/// Signs everyone in on a server over the template, then stops it. Returns the tokens and
/// that server's VmRSS before and after the logins.
async fn sign_in(
    s: &Settings,
    env: &Env,
    template: &Path,
) -> Result<(Tokens, Option<u64>, Option<u64>)> {
    let server = Server::start(s, env, template, 0).await?;
    let before = server.proc_kib("VmRSS");
    let (admin, users) = server.login_all(s.users).await?;
    let after = server.proc_kib("VmRSS");
    server.stop().await;
    Ok((Tokens { admin, users }, before, after))
}

/// Copies the template's database (and WAL, if any) and JWT secret into a fresh dir.
fn copy_template(template: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for name in ["atelier.db", "atelier.db-wal", "jwt_secret"] {
        let from = template.join(name);
        if from.exists() {
            std::fs::copy(&from, to.join(name))?;
        }
    }
    Ok(())
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A password login; the access token.
async fn login(http: reqwest::Client, base: String, email: String) -> Result<String> {
    let body: Value = http
        .post(format!("{base}/auth/v1/token?grant_type=password"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await?
        .json()
        .await?;
    body["access_token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("login of {email}: {body}").into())
}

/// A running `atelier serve`.
struct Server {
    child: Child,
    pid: u32,
    base: String,
    data: PathBuf,
    http: reqwest::Client,
    /// Reads `/v1/admin/queue`.
    admin_token: Option<String>,
}

impl Server {
    async fn start(s: &Settings, env: &Env, data: &Path, delay_ms: u64) -> Result<Server> {
        let port = free_port()?;
        let mut cmd = Command::new(&s.bin);
        env.apply(&mut cmd, data);
        let log = std::fs::File::create(data.join("server.log"))?;
        let child = cmd
            .arg("serve")
            .env("ATELIER_SERVER_BIND", format!("127.0.0.1:{port}"))
            .env("ATELIER_PROVIDERS_LOCAL_DELAY_MS", delay_ms.to_string())
            .env(
                "ATELIER_PROVIDERS_LOCAL_CONCURRENCY",
                s.concurrency.to_string(),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().ok_or("the server exited at once")?;
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .timeout(Duration::from_secs(60))
            .build()?;
        let mut server = Server {
            child,
            pid,
            base: format!("http://127.0.0.1:{port}"),
            data: data.to_path_buf(),
            http,
            admin_token: None,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(res) = server.http.get(server.url("/healthz")).send().await {
                if res.status().is_success() {
                    return Ok(server);
                }
            }
            if let Some(status) = server.child.try_wait()? {
                let log = std::fs::read_to_string(data.join("server.log")).unwrap_or_default();
                return Err(format!("the server exited ({status}): {log}").into());
            }
            if Instant::now() > deadline {
                return Err("the server was not healthy within 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str, token: &str) -> Result<(u16, Value)> {
        let res = self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await?;
        Ok((res.status().as_u16(), res.json().await?))
    }

    /// Signs the admin and every user in, two at a time: (admin token, user tokens).
    async fn login_all(&self, users: usize) -> Result<(String, Vec<String>)> {
        let admin = login(self.http.clone(), self.base.clone(), ADMIN_EMAIL.into()).await?;
        let mut tokens = Vec::new();
        for pair in (0..users).collect::<Vec<_>>().chunks(2) {
            let logins: Vec<_> = pair
                .iter()
                .map(|&user| tokio::spawn(login(self.http.clone(), self.base.clone(), email(user))))
                .collect();
            for token in logins {
                tokens.push(token.await??);
            }
        }
        Ok((admin, tokens))
    }

    /// A `/proc/<pid>/status` figure in KiB (`VmHWM`, `VmRSS`).
    fn proc_kib(&self, key: &str) -> Option<u64> {
        proc_kib(self.pid, key)
    }

    /// Reads the database file through its own read-only connection.
    async fn query<T: Send + 'static>(
        &self,
        sql: &'static str,
        row: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let path = self.data.join("atelier.db");
        tokio::task::spawn_blocking(move || {
            let conn = Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            conn.busy_timeout(Duration::from_secs(5))?;
            Ok(conn.query_row(sql, [], row)?)
        })
        .await?
    }

    /// Units queued or running: from `GET /v1/admin/queue`, or from the database file when
    /// the server has no such endpoint (the flag says whether HTTP answered).
    async fn open_units(&self) -> Result<(i64, bool)> {
        if let Some(token) = &self.admin_token {
            let (status, body) = self.get("/v1/admin/queue", token).await?;
            if status == 200 {
                let n = |k: &str| body[k].as_i64().ok_or(format!("/v1/admin/queue: {body}"));
                return Ok((n("depth")? + n("running")?, true));
            }
            if status != 404 {
                return Err(format!("/v1/admin/queue: HTTP {status} {body}").into());
            }
        }
        let n = self
            .query(
                "SELECT count(*) FROM generation_tasks WHERE status IN ('queued', 'running')",
                |r| r.get(0),
            )
            .await?;
        Ok((n, false))
    }

    /// (succeeded, failed or cancelled) units.
    async fn unit_outcomes(&self) -> Result<(i64, i64)> {
        self.query(
            "SELECT COALESCE(SUM(status = 'success'), 0),
                    COALESCE(SUM(status IN ('failed', 'cancelled')), 0)
             FROM generation_tasks",
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .await
    }

    /// ERROR and WARN lines of the server log (JSON format), counted by message.
    fn log_problems(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.data.join("server.log")).unwrap_or_default();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for line in text.lines() {
            let Ok(entry) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let level = entry["level"].as_str().unwrap_or_default();
            if level != "ERROR" && level != "WARN" {
                continue;
            }
            let fields = &entry["fields"];
            let mut what = format!("{level} {}", fields["message"].as_str().unwrap_or("?"));
            if let Some(err) = fields["error"].as_str() {
                what.push_str(&format!(" [error: {err}]"));
            }
            *seen.entry(what).or_default() += 1;
        }
        seen.into_iter()
            .map(|(what, n)| format!("{n} x {what}"))
            .collect()
    }

    /// SIGTERM, then SIGKILL after 5 s.
    async fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// What one round of submissions achieved.
#[derive(Default)]
struct Acceptance {
    jobs: u64,
    units: u64,
    secs: f64,
    latencies_us: Vec<u64>,
    /// Non-200 answers by status, transport errors as status 0.
    refusals: BTreeMap<u16, u64>,
    /// The first answer of each refusal status, to show what the server said.
    examples: BTreeMap<u16, String>,
}

impl Acceptance {
    fn jobs_per_sec(&self) -> f64 {
        self.jobs as f64 / self.secs
    }

    fn units_per_sec(&self) -> f64 {
        self.units as f64 / self.secs
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        let mut v = self.latencies_us.clone();
        v.sort_unstable();
        if v.is_empty() {
            return 0.0;
        }
        let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1] as f64 / 1000.0
    }

    fn summary(&self) -> String {
        format!(
            "{} jobs / {} units in {:.2} s = {:.0} jobs/s, {:.0} units/s (latency p50 {:.1} ms, \
             p99 {:.1} ms); refused or failed submissions: {}",
            self.jobs,
            self.units,
            self.secs,
            self.jobs_per_sec(),
            self.units_per_sec(),
            self.percentile_ms(0.50),
            self.percentile_ms(0.99),
            self.refusals_text()
        )
    }

    fn refusals_text(&self) -> String {
        if self.refusals.is_empty() {
            return "none".into();
        }
        self.refusals
            .iter()
            .map(|(status, n)| {
                let what = match status {
                    0 => "transport error".to_string(),
                    s => format!("HTTP {s}"),
                };
                let example = self.examples.get(status).cloned().unwrap_or_default();
                format!("{n} x {what} {example}")
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn absorb(&mut self, other: Acceptance) {
        self.jobs += other.jobs;
        self.units += other.units;
        self.latencies_us.extend(other.latencies_us);
        for (status, n) in other.refusals {
            *self.refusals.entry(status).or_default() += n;
        }
        for (status, text) in other.examples {
            self.examples.entry(status).or_insert(text);
        }
    }
}

/// One client per token submits jobs of `image_count` units until `target_units` are
/// accepted. A refused submission is sent again with the same body (after 200 ms on a
/// 429, 20 ms otherwise); more than [`MAX_REFUSALS`] in all abort the phase.
async fn submit_all(
    server: &Server,
    tokens: &[String],
    image_count: i64,
    target_units: i64,
    tag: &str,
) -> Result<(Acceptance, Instant)> {
    let remaining = Arc::new(AtomicI64::new(target_units));
    let refused = Arc::new(AtomicI64::new(0));
    let started = Instant::now();
    let mut clients = Vec::new();
    for (user, token) in tokens.iter().enumerate() {
        let (http, url, token, tag) = (
            server.http.clone(),
            server.url("/functions/v1/generate-image"),
            token.clone(),
            tag.to_string(),
        );
        let (remaining, refused) = (remaining.clone(), refused.clone());
        clients.push(tokio::spawn(async move {
            let mut acc = Acceptance::default();
            let mut n = 0u64;
            while remaining.fetch_sub(image_count, Ordering::SeqCst) >= image_count {
                n += 1;
                let body = json!({
                    "model": "local", "prompt": "a red box on white", "productImage": PRODUCT_PNG,
                    "imageCount": image_count, "aspectRatio": "1:1",
                    "client_job_id": format!("{tag}-{user}-{n}"),
                });
                loop {
                    let t0 = Instant::now();
                    let sent = http.post(&url).bearer_auth(&token).json(&body).send().await;
                    let status = match sent {
                        Ok(res) if res.status().as_u16() == 200 => {
                            let _ = res.bytes().await;
                            acc.latencies_us.push(t0.elapsed().as_micros() as u64);
                            acc.jobs += 1;
                            acc.units += image_count as u64;
                            break;
                        }
                        Ok(res) => {
                            let status = res.status().as_u16();
                            let text = res.text().await.unwrap_or_default();
                            acc.examples
                                .entry(status)
                                .or_insert_with(|| text.chars().take(160).collect());
                            status
                        }
                        Err(err) => {
                            acc.examples
                                .entry(0)
                                .or_insert_with(|| err.to_string().chars().take(160).collect());
                            0
                        }
                    };
                    *acc.refusals.entry(status).or_default() += 1;
                    if refused.fetch_add(1, Ordering::SeqCst) >= MAX_REFUSALS {
                        remaining.store(i64::MIN / 2, Ordering::SeqCst);
                        return acc;
                    }
                    let pause = if status == 429 { 200 } else { 20 };
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            }
            acc
        }));
    }
    let mut total = Acceptance::default();
    for client in clients {
        total.absorb(client.await?);
    }
    total.secs = started.elapsed().as_secs_f64();
    if refused.load(Ordering::SeqCst) >= MAX_REFUSALS {
        return Err(format!(
            "{MAX_REFUSALS} submissions refused: {}",
            total.refusals_text()
        )
        .into());
    }
    Ok((total, started))
}

/// How the queue drained.
struct Drain {
    /// From the first submission until no unit was queued or running (or the stall).
    total_secs: f64,
    /// From the end of acceptance until then.
    after_accept_secs: f64,
    /// Units still open when acceptance finished.
    open_at_accept: i64,
    /// Units still open when the wait ended (0 unless it stalled).
    stuck: i64,
    succeeded: i64,
    failed: i64,
    /// Whether progress came from `/v1/admin/queue` (else from the database file).
    over_http: bool,
}

/// Waits (polling every 100 ms) until no unit is queued or running, or until none ended
/// for [`STALL`].
async fn wait_drained(server: &Server, started: Instant) -> Result<Drain> {
    let accepted_at = Instant::now();
    let (open_at_accept, over_http) = server.open_units().await?;
    let (mut last_open, mut last_change) = (open_at_accept, Instant::now());
    let mut ended_at = Instant::now();
    while last_open > 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (open, _) = server.open_units().await?;
        ended_at = Instant::now();
        if open != last_open {
            (last_open, last_change) = (open, ended_at);
        } else if last_change.elapsed() > STALL {
            ended_at = last_change;
            break;
        }
    }
    let (succeeded, failed) = server.unit_outcomes().await?;
    Ok(Drain {
        total_secs: (ended_at - started).as_secs_f64(),
        after_accept_secs: (ended_at - accepted_at).as_secs_f64(),
        open_at_accept,
        stuck: last_open,
        succeeded,
        failed,
        over_http,
    })
}

/// Confirms over HTTP that no user has a processing job or held credits left.
async fn confirm_idle(server: &Server, tokens: &[String]) -> Result<()> {
    for (user, token) in tokens.iter().enumerate() {
        let (status, list) = server
            .get("/v1/jobs?status=processing&limit=1", token)
            .await?;
        let (_, me) = server.get("/v1/me", token).await?;
        let open = list["jobs"].as_array().map_or(usize::MAX, Vec::len);
        if status != 200 || open != 0 || me["credits"]["held"] != 0 {
            return Err(format!("user {user} is not idle: {list} {me}").into());
        }
    }
    Ok(())
}

/// Phase A for one job size: acceptance and drain at `delay_ms = 0`.
struct DrainRun {
    image_count: i64,
    acceptance: Acceptance,
    drain: Drain,
    /// Set when the end state over HTTP was not idle (only checked after a full drain).
    not_idle: Option<String>,
    peak_rss_kib: Option<u64>,
    above_max: Option<String>,
    log: Vec<String>,
}

async fn phase_drain(
    s: &Settings,
    env: &Env,
    template: &Path,
    scratch: &Path,
    image_count: i64,
    all: &Tokens,
) -> Result<DrainRun> {
    let data = scratch.join(format!("drain-{image_count}"));
    copy_template(template, &data)?;
    let mut server = Server::start(s, env, &data, 0).await?;
    server.admin_token = Some(all.admin.clone());
    let tokens = &all.users;
    let tag = format!("a{image_count}");
    let (acceptance, started) = submit_all(&server, tokens, image_count, s.units, &tag).await?;
    println!(
        "  imageCount {image_count}: {} jobs ({} units) accepted in {:.2} s; draining …",
        acceptance.jobs, acceptance.units, acceptance.secs
    );
    let drain = wait_drained(&server, started).await?;
    let mut not_idle = None;
    let mut above_max = None;
    if drain.stuck == 0 {
        not_idle = confirm_idle(&server, tokens)
            .await
            .err()
            .map(|e| e.to_string());
        if image_count == 9 {
            above_max = Some(submit_above_max(&server, &tokens[0]).await?);
        }
    }
    let peak_rss_kib = server.proc_kib("VmHWM");
    let log = server.log_problems();
    server.stop().await;
    Ok(DrainRun {
        image_count,
        acceptance,
        drain,
        not_idle,
        peak_rss_kib,
        above_max,
        log,
    })
}

/// What an `imageCount` above the maximum (10) gets: refused, or clamped.
async fn submit_above_max(server: &Server, token: &str) -> Result<String> {
    let res = server
        .http
        .post(server.url("/functions/v1/generate-image"))
        .bearer_auth(token)
        .json(
            &json!({"model": "local", "prompt": "a red box", "productImage": PRODUCT_PNG,
                      "imageCount": 10}),
        )
        .send()
        .await?;
    let status = res.status().as_u16();
    let body: Value = res.json().await?;
    Ok(match body["job_id"].as_str() {
        Some(id) if status == 200 => {
            let (_, job) = server.get(&format!("/v1/jobs/{id}"), token).await?;
            format!(
                "imageCount 10 -> HTTP 200, a job of {} units (clamped to 9, no error)",
                job["units"]["total"]
            )
        }
        _ => format!("imageCount 10 -> HTTP {status} {body}"),
    })
}

/// Phase B: `units` queued at `delay_ms = 2000`; memory while they wait.
struct Backlog {
    acceptance: Acceptance,
    rss_started_kib: Option<u64>,
    hwm_after_accept_kib: Option<u64>,
    rss_after_accept_kib: Option<u64>,
    hwm_waiting_kib: Option<u64>,
    rss_waiting_kib: Option<u64>,
    waited_secs: u64,
    open_while_waiting: i64,
    db_mib: f64,
    log: Vec<String>,
}

async fn phase_backlog(
    s: &Settings,
    env: &Env,
    template: &Path,
    scratch: &Path,
    all: &Tokens,
) -> Result<Backlog> {
    let data = scratch.join("backlog");
    copy_template(template, &data)?;
    let mut server = Server::start(s, env, &data, 2000).await?;
    server.admin_token = Some(all.admin.clone());
    let rss_started_kib = server.proc_kib("VmRSS");
    let (acceptance, _) = submit_all(&server, &all.users, 1, s.units, "b").await?;
    let (hwm_after_accept_kib, rss_after_accept_kib) =
        (server.proc_kib("VmHWM"), server.proc_kib("VmRSS"));
    let waited_secs = 5;
    tokio::time::sleep(Duration::from_secs(waited_secs)).await;
    let (open_while_waiting, _) = server.open_units().await?;
    let (hwm_waiting_kib, rss_waiting_kib) = (server.proc_kib("VmHWM"), server.proc_kib("VmRSS"));
    let db_mib = ["atelier.db", "atelier.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(data.join(f)).ok())
        .map(|m| m.len() as f64 / (1024.0 * 1024.0))
        .sum();
    let log = server.log_problems();
    server.stop().await;
    Ok(Backlog {
        acceptance,
        rss_started_kib,
        hwm_after_accept_kib,
        rss_after_accept_kib,
        hwm_waiting_kib,
        rss_waiting_kib,
        waited_secs,
        open_while_waiting,
        db_mib,
        log,
    })
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("n/a".into(), |k| format!("{:.0} MiB", k as f64 / 1024.0))
}

async fn ensure_binary(s: &Settings) -> Result<()> {
    if s.bin.exists() {
        return Ok(());
    }
    println!("{} is missing: cargo build --release", s.bin.display());
    let ok = Command::new("cargo")
        .args(["build", "--release", "--bin", "atelier"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .await?
        .success();
    if !ok || !s.bin.exists() {
        return Err(format!("could not build {}", s.bin.display()).into());
    }
    Ok(())
}

fn print_log(log: &[String]) {
    for line in log.iter().take(5) {
        println!("    server log: {line}");
    }
}

fn print_drain(run: &DrainRun, users: usize) {
    let (a, d) = (&run.acceptance, &run.drain);
    println!(
        "(a) delay_ms 0, imageCount {}, {users} clients",
        run.image_count
    );
    println!("    HTTP acceptance: {}", a.summary());
    let ended = d.succeeded + d.failed;
    let source = if d.over_http {
        "GET /v1/admin/queue"
    } else {
        "the database file"
    };
    if d.stuck > 0 {
        println!(
            "    end to end: DID NOT DRAIN: {} units still queued or running, none ended for {} s \
             ({ended} ended {:.2} s after the first submission = {:.0} units/s until then; \
             progress from {source})",
            d.stuck,
            STALL.as_secs(),
            d.total_secs,
            ended as f64 / d.total_secs
        );
    } else {
        println!(
            "    end to end: all {ended} units ended {:.2} s after the first submission = {:.0} \
             units/s ({} succeeded, {} failed); {} were still open when acceptance finished and \
             took {:.2} s more = {:.0} units/s (progress from {source})",
            d.total_secs,
            ended as f64 / d.total_secs,
            d.succeeded,
            d.failed,
            d.open_at_accept,
            d.after_accept_secs,
            d.open_at_accept as f64 / d.after_accept_secs.max(0.001)
        );
    }
    if let Some(why) = &run.not_idle {
        println!("    NOT IDLE over HTTP afterwards: {why}");
    }
    println!("    server peak RSS (VmHWM): {}", mib(run.peak_rss_kib));
    if let Some(note) = &run.above_max {
        println!("    {note}");
    }
    print_log(&run.log);
}

async fn run() -> Result<()> {
    let s = Settings::parse()?;
    ensure_binary(&s).await?;
    let run_started = Instant::now();
    let load_before = load_average();
    let scratch = tempfile::Builder::new()
        .prefix("atelier-bench-queue.")
        .tempdir()?;
    let env = probe_env(&s.bin, scratch.path()).await?;
    println!("queue benchmark: {}", s.bin.display());
    let optional = if env.optional.is_empty() {
        "none".to_string()
    } else {
        env.optional.join(", ")
    };
    println!("  optional keys in force: {optional}");

    let template = scratch.path().join("template");
    let t = Instant::now();
    make_template(&s, &env, &template).await?;
    println!(
        "  {} users created and funded through the CLI in {:.1} s",
        s.users,
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let (tokens, rss_before_logins, rss_after_logins) = sign_in(&s, &env, &template).await?;
    println!(
        "  {} logins in {:.1} s (server VmRSS {} before, {} after)",
        s.users + 1,
        t.elapsed().as_secs_f64(),
        mib(rss_before_logins),
        mib(rss_after_logins)
    );

    println!(
        "phase A: delay_ms 0, local concurrency {}, {} clients",
        s.concurrency, s.users
    );
    let single = phase_drain(&s, &env, &template, scratch.path(), 1, &tokens).await?;
    let nine = phase_drain(&s, &env, &template, scratch.path(), 9, &tokens).await?;
    println!("phase B: delay_ms 2000, {} units queued", s.units);
    let backlog = phase_backlog(&s, &env, &template, scratch.path(), &tokens).await?;
    let baseline = match &s.baseline {
        Some(bin) => {
            println!("baseline: {}", bin.display());
            Some(run_baseline(bin, scratch.path(), "accept-1,accept-16,accept-batch-100").await?)
        }
        None => None,
    };

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    println!("================ queue benchmark results ================");
    println!(
        "machine: {cores} cores, shared by the clients and the server; load average {} at the \
         start, {} at the end",
        load_before,
        load_average()
    );
    println!(
        "server: release binary, log level warn, local provider concurrency {} (each phase), \
         tiny_output {}",
        s.concurrency,
        if env.has("ATELIER_PROVIDERS_LOCAL_TINY_OUTPUT") {
            "true"
        } else {
            "unavailable (full-size images)"
        }
    );
    println!("optional keys in force: {optional}");
    print_drain(&single, s.users);
    print_drain(&nine, s.users);
    let b = &backlog;
    println!(
        "(b) delay_ms 2000, {} clients: HTTP acceptance: {}",
        s.users,
        b.acceptance.summary()
    );
    println!(
        "    server memory: VmRSS {} after start, {} after acceptance (VmHWM {}); {} s later, \
         with {} units queued or running: VmRSS {}, VmHWM {}; database + WAL {:.1} MiB",
        mib(b.rss_started_kib),
        mib(b.rss_after_accept_kib),
        mib(b.hwm_after_accept_kib),
        b.waited_secs,
        b.open_while_waiting,
        mib(b.rss_waiting_kib),
        mib(b.hwm_waiting_kib),
        b.db_mib
    );
    print_log(&b.log);
    println!(
        "    (the logins, on a separate server process: VmRSS {} before, {} after {} password \
         logins two at a time)",
        mib(rss_before_logins),
        mib(rss_after_logins),
        s.users + 1
    );
    let http_rate = single.acceptance.jobs_per_sec();
    match &baseline {
        Some(rows) => {
            println!(
                "(c) HTTP acceptance / direct SQLite acceptance: {http_rate:.0} jobs/s (1-unit \
                 jobs, above) against sqlite-baseline --ids v7 --secs 2 --rounds 1 (its \
                 transaction: 1 job + 3 tasks + 1 ledger row, no HTTP, no auth):"
            );
            for (case, rate) in rows {
                println!("    {:.3}  vs {case}: {rate:.0}/s", http_rate / rate);
            }
        }
        None => println!("(c) no sqlite-baseline given (--baseline PATH): no ratio"),
    }
    println!(
        "whole benchmark: {:.0} s",
        run_started.elapsed().as_secs_f64()
    );
    if s.keep {
        println!("kept {}", scratch.keep().display());
    }
    Ok(())
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if let Err(err) = runtime.block_on(run()) {
        eprintln!("queue benchmark failed: {err}");
        std::process::exit(1);
    }
}
