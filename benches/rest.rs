//! `/rest/v1` and `/realtime/v1` benchmark (`harness = false`): drives the real release
//! `atelier` binary over HTTP and WebSockets.
//!
//! Run it with `scripts/bench-rest.sh`, or `cargo bench --bench rest -- [--bin PATH]
//! [--clients N] [--secs S] [--sockets N] [--jobs N] [--baseline PATH] [--keep]`.
//!
//! 1. A server on a fresh data dir; `--clients` users (default 64) sign up and each runs
//!    one job (local provider, tiny output) to its end.
//! 2. Reads: `--clients` concurrent clients, each reading its own job in a loop for
//!    `--secs` seconds (default 8) per round, alternating `GET /v1/jobs/{id}` and the
//!    reference client's poll `GET /rest/v1/generation_jobs?select=*&id=eq.{id}` with
//!    `Accept: application/vnd.pgrst.object+json` (`useWaitForJob.ts` L32), two rounds
//!    each. Reported: reads/s, p50/p99 latency, and the ratio of the two.
//! 3. Realtime, on a fresh server process over the same data: VmRSS idle, then
//!    `--sockets` sockets (default 1,000) each join one channel on user 0's
//!    `generation_jobs` (`user_id=eq.…`); VmRSS with them open. User 0 then runs `--jobs`
//!    jobs (default 20) one after another; every `postgres_changes` frame's delay is its
//!    arrival time minus the row's `updated_at` (set in the transaction that committed the
//!    change): p50/p99/max, and whether every socket heard every change.
//! 4. With `--baseline PATH` (the built `sqlite-baseline`), its point SELECT of a job by id
//!    (`read-1`) runs briefly and the HTTP read rates are set against it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

/// An 8×8 red PNG: the seller's product photo.
const PRODUCT_PNG: &str = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAEUlEQVR4nGM4ISeHFTEMLQkAkL9BAbKfPiIAAAAASUVORK5CYII=";
const PASSWORD: &str = "bench-password-123";
const OBJECT: &str = "application/vnd.pgrst.object+json";

mod support;

use support::{load_average, proc_kib, run_baseline, Result};

/// Command-line settings.
struct Settings {
    bin: PathBuf,
    clients: usize,
    secs: f64,
    sockets: usize,
    jobs: usize,
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
            clients: 64,
            secs: 8.0,
            sockets: 1000,
            jobs: 20,
            baseline: std::env::var_os("BENCH_SQLITE_BASELINE").map(PathBuf::from),
            keep: false,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or(format!("{arg} needs a value"));
            match arg.as_str() {
                "--bin" => s.bin = PathBuf::from(value()?),
                "--clients" => s.clients = value()?.parse()?,
                "--secs" => s.secs = value()?.parse()?,
                "--sockets" => s.sockets = value()?.parse()?,
                "--jobs" => s.jobs = value()?.parse()?,
                "--baseline" => s.baseline = Some(PathBuf::from(value()?)),
                "--keep" => s.keep = true,
                "--bench" => {} // added by `cargo bench`
                other => return Err(format!("unknown argument {other}").into()),
            }
        }
        if s.clients == 0 || s.sockets == 0 || s.jobs == 0 || s.secs <= 0.0 {
            return Err("--clients, --secs, --sockets and --jobs must be positive".into());
        }
        Ok(s)
    }
}

/// A running `atelier serve` on `data`.
struct Server {
    child: Child,
    pid: u32,
    base: String,
    http: reqwest::Client,
}

impl Server {
    async fn start(bin: &Path, data: &Path) -> Result<Server> {
        std::fs::create_dir_all(data)?;
        let config = data.join("config.toml");
        std::fs::write(&config, "")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut cmd = Command::new(bin);
        for (key, _) in std::env::vars() {
            if key.starts_with("ATELIER_") {
                cmd.env_remove(key);
            }
        }
        let log = std::fs::File::create(data.join("server.log"))?;
        let child = cmd
            .arg("serve")
            .env("ATELIER_CONFIG", &config)
            .env("ATELIER_DATA_DIR", data)
            .env("ATELIER_SERVER_BIND", format!("127.0.0.1:{port}"))
            .env("ATELIER_LOG", "warn")
            .env("ATELIER_AUTH_RATE_LIMIT_PER_MINUTE", "1000000")
            .env("ATELIER_LIMITS_JOB_CREATIONS_PER_MINUTE", "1000000")
            .env("ATELIER_PROVIDERS_LOCAL_TINY_OUTPUT", "true")
            .env("ATELIER_PROVIDERS_LOCAL_DELAY_MS", "20")
            // The sockets send no heartbeats while they are measured.
            .env("ATELIER_SERVER_REALTIME_HEARTBEAT_TIMEOUT_SECS", "3600")
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
            http,
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

    /// The server's resident memory in KiB.
    fn rss_kib(&self) -> Option<u64> {
        proc_kib(self.pid, "VmRSS")
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    /// Signs up user `n`: (access token, user id).
    async fn signup(&self, n: usize) -> Result<(String, String)> {
        let body: Value = self
            .http
            .post(self.url("/auth/v1/signup"))
            .json(&json!({"email": format!("bench-rest-{n:04}@example.com"), "password": PASSWORD}))
            .send()
            .await?
            .json()
            .await?;
        match (body["access_token"].as_str(), body["user"]["id"].as_str()) {
            (Some(token), Some(id)) => Ok((token.to_string(), id.to_string())),
            _ => Err(format!("signup {n}: {body}").into()),
        }
    }

    /// Runs one 1-image job to its end; its id.
    async fn finished_job(&self, token: &str) -> Result<String> {
        let body: Value = self
            .http
            .post(self.url("/functions/v1/generate-image"))
            .bearer_auth(token)
            .json(
                &json!({"model": "local", "prompt": "a red box", "imageCount": 1,
                          "productImage": PRODUCT_PNG}),
            )
            .send()
            .await?
            .json()
            .await?;
        let id = body["job_id"]
            .as_str()
            .ok_or(format!("generate-image: {body}"))?
            .to_string();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let job: Value = self
                .http
                .get(self.url(&format!("/v1/jobs/{id}")))
                .bearer_auth(token)
                .send()
                .await?
                .json()
                .await?;
            if job["status"] != "processing" && job["status"] != "queued" {
                if job["status"] != "success" {
                    return Err(format!("job {id} ended {}", job["status"]).into());
                }
                return Ok(id);
            }
            if Instant::now() > deadline {
                return Err(format!("job {id} did not end within 60 s").into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One read endpoint under load.
#[derive(Clone, Copy, PartialEq)]
enum Endpoint {
    Jobs,
    Rest,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::Jobs => "GET /v1/jobs/{id}",
            Endpoint::Rest => "GET /rest/v1/generation_jobs?select=*&id=eq.{id} (object)",
        }
    }
}

/// Reads done in a round.
#[derive(Default)]
struct Load {
    ok: u64,
    errors: u64,
    secs: f64,
    micros: Vec<u32>,
}

impl Load {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.secs.max(1e-9)
    }

    fn add(&mut self, other: Load) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.secs += other.secs;
        self.micros.extend(other.micros);
    }

    fn summary(&mut self) -> String {
        self.micros.sort_unstable();
        format!(
            "{:.0} reads/s ({} in {:.1} s, {} errors), p50 {:.2} ms, p99 {:.2} ms",
            self.rate(),
            self.ok,
            self.secs,
            self.errors,
            percentile(&self.micros, 0.50) / 1000.0,
            percentile(&self.micros, 0.99) / 1000.0
        )
    }
}

fn percentile<T: Copy + Into<f64>>(sorted: &[T], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].into()
}

/// Every client reads its own job for `secs` seconds.
async fn read_round(
    server: &Server,
    users: &Arc<Vec<(String, String)>>,
    endpoint: Endpoint,
    secs: f64,
) -> Load {
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    let runs: Vec<_> = (0..users.len())
        .map(|i| {
            let (http, base, users) = (server.http.clone(), server.base.clone(), users.clone());
            tokio::spawn(async move {
                let (token, job) = &users[i];
                let (url, accept) = match endpoint {
                    Endpoint::Jobs => (format!("{base}/v1/jobs/{job}"), "application/json"),
                    Endpoint::Rest => (
                        format!("{base}/rest/v1/generation_jobs?select=*&id=eq.{job}"),
                        OBJECT,
                    ),
                };
                let mut load = Load::default();
                while Instant::now() < until {
                    let t = Instant::now();
                    let res = http
                        .get(&url)
                        .bearer_auth(token)
                        .header("accept", accept)
                        .send()
                        .await;
                    let good = match res {
                        Ok(res) if res.status().is_success() => res.bytes().await.is_ok(),
                        _ => false,
                    };
                    if good {
                        load.ok += 1;
                        load.micros
                            .push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    } else {
                        load.errors += 1;
                    }
                }
                load
            })
        })
        .collect();
    let mut total = Load::default();
    for run in runs {
        if let Ok(load) = run.await {
            total.ok += load.ok;
            total.errors += load.errors;
            total.micros.extend(load.micros);
        }
    }
    total.secs = start.elapsed().as_secs_f64();
    total
}

/// A client WebSocket.
type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What one socket heard: the delay of every change (ms) and how many there were.
type Heard = Vec<f64>;

/// Opens a socket and joins one channel on `user`'s jobs; answers once the join is ok.
async fn joined_socket(base: &str, token: &str, user: &str, n: usize) -> Result<Ws> {
    let url = format!(
        "{}/realtime/v1/websocket?apikey=bench&vsn=1.0.0",
        base.replacen("http://", "ws://", 1)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    let join = json!({"topic": format!("realtime:bench:{n}"), "event": "phx_join", "ref": "1",
        "join_ref": "1", "payload": {"config": {"postgres_changes": [{"event": "*",
        "schema": "public", "table": "generation_jobs", "filter": format!("user_id=eq.{user}")}]},
        "access_token": token}});
    ws.send(Message::text(join.to_string())).await?;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .map_err(|_| "no join reply within 30 s")?
            .ok_or("the socket closed before the join reply")??;
        if let Message::Text(text) = frame {
            let frame: Value = serde_json::from_str(&text)?;
            if frame["event"] == "phx_reply" {
                if frame["payload"]["status"] != "ok" {
                    return Err(format!("join refused: {frame}").into());
                }
                return Ok(ws);
            }
        }
    }
}

fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

fn parse_ms(text: &str) -> Option<f64> {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp_nanos() as f64 / 1e6)
}

/// Realtime figures.
struct Fanout {
    rss_idle_kib: Option<u64>,
    rss_open_kib: Option<u64>,
    open_secs: f64,
    delays: Vec<f64>,
    per_socket: (usize, usize),
    sockets: usize,
}

async fn realtime_phase(s: &Settings, data: &Path, user: &(String, String)) -> Result<Fanout> {
    let server = Server::start(&s.bin, data).await?;
    let (token, user_id) = user;
    // Warm: one of each read, then let it settle.
    let _ = server
        .http
        .get(server.url("/rest/v1/packages"))
        .send()
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle_kib = server.rss_kib();
    let t = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut listeners = Vec::with_capacity(s.sockets);
    for n in 0..s.sockets {
        let mut ws = joined_socket(&server.base, token, user_id, n).await?;
        let mut stop = stop_rx.clone();
        listeners.push(tokio::spawn(async move {
            let mut heard: Heard = Vec::new();
            loop {
                tokio::select! {
                    frame = ws.next() => match frame {
                        Some(Ok(Message::Text(text))) => {
                            let arrived = now_ms();
                            let Ok(frame) = serde_json::from_str::<Value>(&text) else { continue };
                            if frame["event"] != "postgres_changes" {
                                continue;
                            }
                            let committed = frame["payload"]["data"]["record"]["updated_at"]
                                .as_str()
                                .and_then(parse_ms);
                            if let Some(at) = committed {
                                heard.push(arrived - at);
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => break,
                    },
                    _ = stop.changed() => break,
                }
            }
            heard
        }));
    }
    let open_secs = t.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_open_kib = server.rss_kib();
    for _ in 0..s.jobs {
        server.finished_job(token).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = stop_tx.send(true);
    let mut delays = Vec::new();
    let (mut fewest, mut most) = (usize::MAX, 0);
    for listener in listeners {
        let heard = listener.await?;
        fewest = fewest.min(heard.len());
        most = most.max(heard.len());
        delays.extend(heard);
    }
    server.stop().await;
    delays.sort_by(f64::total_cmp);
    Ok(Fanout {
        rss_idle_kib,
        rss_open_kib,
        open_secs,
        delays,
        per_socket: (fewest, most),
        sockets: s.sockets,
    })
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

async fn run() -> Result<()> {
    let s = Settings::parse()?;
    if !s.bin.exists() {
        return Err(format!(
            "{} is missing: cargo build --release --bin atelier",
            s.bin.display()
        )
        .into());
    }
    let started = Instant::now();
    let load_before = load_average();
    let scratch = tempfile::Builder::new()
        .prefix("atelier-bench-rest.")
        .tempdir()?;
    let data = scratch.path().join("data");
    println!("rest/realtime benchmark: {}", s.bin.display());

    let server = Server::start(&s.bin, &data).await?;
    let t = Instant::now();
    let mut users = Vec::new();
    for n in 0..s.clients {
        let (token, id) = server.signup(n).await?;
        let job = server.finished_job(&token).await?;
        users.push(((token, job), id));
    }
    println!(
        "  {} users signed up, one finished job each, in {:.1} s",
        s.clients,
        t.elapsed().as_secs_f64()
    );
    let readers = Arc::new(users.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>());
    // Warm both paths, then alternate rounds.
    read_round(&server, &readers, Endpoint::Jobs, 1.0).await;
    read_round(&server, &readers, Endpoint::Rest, 1.0).await;
    let (mut jobs, mut rest) = (Load::default(), Load::default());
    for round in 0..2 {
        for endpoint in [Endpoint::Jobs, Endpoint::Rest] {
            let load = read_round(&server, &readers, endpoint, s.secs).await;
            println!(
                "  round {}: {}: {:.0} reads/s",
                round + 1,
                endpoint.name(),
                load.rate()
            );
            match endpoint {
                Endpoint::Jobs => jobs.add(load),
                Endpoint::Rest => rest.add(load),
            }
        }
    }
    let rss_after_reads = server.rss_kib();
    server.stop().await;

    let first = (users[0].0 .0.clone(), users[0].1.clone());
    let fanout = realtime_phase(&s, &data, &first).await?;
    let baseline = match &s.baseline {
        Some(bin) => Some(run_baseline(bin, scratch.path(), "read-1,read-2").await?),
        None => None,
    };

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    println!("================ rest/realtime benchmark results ================");
    println!(
        "machine: {cores} cores, shared by the clients and the server; load average {} at the \
         start, {} at the end",
        load_before,
        load_average()
    );
    println!(
        "(a) single-row reads, {} clients, each its own job, 2 rounds of {} s each, alternating:",
        s.clients, s.secs
    );
    println!("    {}: {}", Endpoint::Jobs.name(), jobs.summary());
    println!("    {}: {}", Endpoint::Rest.name(), rest.summary());
    let ratio = rest.rate() / jobs.rate().max(1e-9);
    println!(
        "    /rest/v1 ÷ /v1/jobs = {:.1} % (target ≥ 90 %: {}); server VmRSS after the reads {}",
        ratio * 100.0,
        if ratio >= 0.9 { "met" } else { "MISSED" },
        mib(rss_after_reads)
    );
    let f = &fanout;
    let delta = match (f.rss_idle_kib, f.rss_open_kib) {
        (Some(idle), Some(open)) => Some(open.saturating_sub(idle)),
        _ => None,
    };
    println!(
        "(b) realtime: {} sockets, one channel each on one user's generation_jobs, opened and \
         joined in {:.1} s",
        f.sockets, f.open_secs
    );
    println!(
        "    server VmRSS idle {}, with the sockets open {}: +{} (target < 60 MiB: {})",
        mib(f.rss_idle_kib),
        mib(f.rss_open_kib),
        mib(delta),
        match delta {
            Some(d) if d < 60 * 1024 => "met",
            Some(_) => "MISSED",
            None => "n/a",
        }
    );
    let p99 = percentile(&f.delays, 0.99);
    println!(
        "    {} jobs → {} deliveries ({} to {} per socket): commit → delivery p50 {:.1} ms, \
         p99 {:.1} ms, max {:.1} ms (target p99 < 50 ms: {})",
        s.jobs,
        f.delays.len(),
        f.per_socket.0,
        f.per_socket.1,
        percentile(&f.delays, 0.50),
        p99,
        f.delays.last().copied().unwrap_or(f64::NAN),
        if p99 < 50.0 { "met" } else { "MISSED" }
    );
    println!(
        "    (delay = arrival at the client − the row's updated_at, written in the committing \
         transaction; the 1,000 clients run on the same cores)"
    );
    match &baseline {
        Some(rows) => {
            println!("(c) HTTP reads / direct SQLite point SELECT (sqlite-baseline --ids v7 --secs 2 --rounds 1):");
            for (case, rate) in rows {
                println!(
                    "    vs {case}: {rate:.0}/s: /v1/jobs {:.3}, /rest/v1 {:.3}",
                    jobs.rate() / rate,
                    rest.rate() / rate
                );
            }
        }
        None => println!("(c) no sqlite-baseline given (--baseline PATH): no ratio"),
    }
    println!("whole benchmark: {:.0} s", started.elapsed().as_secs_f64());
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
        eprintln!("rest benchmark failed: {err}");
        std::process::exit(1);
    }
}
