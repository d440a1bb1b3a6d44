//! The real `atelier` binary, run as an operator would: in a fresh directory, with no
//! `ATELIER_*` variables inherited, optionally with `--config <file>`.

mod common;

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A temp working directory to run the binary in.
struct Workdir {
    dir: tempfile::TempDir,
}

impl Workdir {
    fn new() -> Self {
        Workdir {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `atelier <args>` in this directory, with a clean `ATELIER_*` environment.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_atelier"));
        cmd.current_dir(self.path()).args(args);
        for (name, _) in std::env::vars() {
            if name.starts_with("ATELIER_") {
                cmd.env_remove(name);
            }
        }
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.command(args);
        cmd.envs(env.iter().copied());
        cmd.output().expect("run atelier")
    }

    /// Writes a file in the directory and returns its path as text.
    fn write(&self, name: &str, text: &str) -> String {
        let path = self.path().join(name);
        std::fs::write(&path, text).expect("write");
        path.to_str().unwrap().to_string()
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Asserts the command succeeded, showing its output if not.
fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

/// Asserts a configuration error: exit code 2 and exactly one stderr line naming `key`.
fn assert_config_error(out: &Output, key: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {err:?}");
    assert!(
        err.ends_with('\n') && err.matches('\n').count() == 1,
        "{err:?}"
    );
    assert!(lines[0].contains(key), "{:?} does not name {key}", lines[0]);
    assert!(stdout(out).is_empty(), "stdout: {}", stdout(out));
}

/// The `user list` row of `email`, split into columns
/// (id, email, role, available, held, debt, created).
fn user_row(list: &str, email: &str) -> Vec<String> {
    list.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(email))
        .unwrap_or_else(|| panic!("{email} not listed in:\n{list}"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn schema_version(out: &str) -> i64 {
    out.split("schema version")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no schema version in {out:?}"))
}

// ---------------------------------------------------------------- migrate

/// `migrate` twice: both succeed at the same schema version; the database is
/// `data/atelier.db` under the working directory.
#[test]
fn migrate_is_idempotent() {
    let wd = Workdir::new();
    let first = ok(&wd.run(&["migrate"]));
    let second = ok(&wd.run(&["migrate"]));
    let version = schema_version(&first);
    assert!(version >= 1, "{first}");
    assert_eq!(schema_version(&second), version, "{second}");
    let db = wd.path().join("data").join("atelier.db");
    assert!(db.is_file(), "{} missing", db.display());
    assert!(std::fs::metadata(&db).unwrap().len() > 0);
}

/// With `--config`, `data.dir` from the file decides where the database goes.
#[test]
fn migrate_honours_the_config_file() {
    let wd = Workdir::new();
    let config = wd.write("custom.toml", "[data]\ndir = \"store\"\n");
    let out = ok(&wd.run(&["migrate", "--config", &config]));
    assert!(out.contains("schema version"), "{out}");
    assert!(wd.path().join("store").join("atelier.db").is_file());
    assert!(
        !wd.path().join("data").exists(),
        "default data dir used despite the config"
    );
}

// ---------------------------------------------------------------- config errors

/// An unknown key in the file: exit 2, one line naming `server.bindx`, nothing run.
#[test]
fn unknown_config_key_is_one_line_naming_it() {
    let wd = Workdir::new();
    let config = wd.write("bad.toml", "[server]\nbindx = \"x\"\n");
    let out = wd.run(&["--config", &config, "migrate"]);
    assert_config_error(&out, "server.bindx");
    assert!(!wd.path().join("data").exists(), "the command ran anyway");
}

/// A bad value from the environment names the key it sets.
#[test]
fn bad_env_values_name_their_key() {
    let wd = Workdir::new();
    let out = wd.run_env(&["migrate"], &[("ATELIER_SERVER_BIND", "nowhere")]);
    assert_config_error(&out, "server.bind");
    let out = wd.run_env(&["migrate"], &[("ATELIER_DATABASE_POOL_SIZE", "many")]);
    assert_config_error(&out, "database.pool_size");
    assert!(!wd.path().join("data").exists(), "a command ran anyway");
    // A good value is taken (proves the variables are read at all).
    let out = wd.run_env(&["config", "check"], &[("ATELIER_DATABASE_POOL_SIZE", "5")]);
    assert!(ok(&out).contains("pool_size = 5"), "{}", stdout(&out));
}

/// `config check` on a good file exits 0, shows the file's values and hides the secret.
#[test]
fn config_check_shows_values_and_hides_the_secret() {
    let wd = Workdir::new();
    let secret = "s3cr3t-do-not-print-0123456789abcdef";
    let config = wd.write(
        "good.toml",
        &format!(
            "[server]\nbind = \"127.0.0.1:9911\"\n[auth]\njwt_secret = \"{secret}\"\n\
             signup_bonus_credits = 12\n"
        ),
    );
    let out = wd.run(&["config", "check", "--config", &config]);
    let text = ok(&out);
    assert!(!text.contains(secret), "secret printed:\n{text}");
    assert!(!stderr(&out).contains(secret), "secret in stderr");
    assert!(text.contains("<hidden>"), "{text}");
    assert!(text.contains("127.0.0.1:9911"), "{text}");
    assert!(text.contains("signup_bonus_credits = 12"), "{text}");
    // Without a secret configured, nothing is shown as hidden.
    let plain = wd.write("plain.toml", "[server]\nbind = \"127.0.0.1:9912\"\n");
    let text = ok(&wd.run(&["config", "check", "--config", &plain]));
    assert!(!text.contains("<hidden>"), "{text}");
}

// ---------------------------------------------------------------- users and credits

/// Create an admin, list it (admin, 30 available), refuse a duplicate, grant 70 (100),
/// refuse a deduction past zero (still 100), and audit clean.
#[test]
fn user_and_credit_commands() {
    let wd = Workdir::new();
    let created = ok(&wd.run(&[
        "user",
        "create",
        "--email",
        "a@x.io",
        "--password",
        "longpassword",
        "--admin",
    ]));
    assert!(
        created.contains("a@x.io") && created.contains("admin"),
        "{created}"
    );

    let row = user_row(&ok(&wd.run(&["user", "list"])), "a@x.io");
    assert_eq!(row[2], "admin", "{row:?}");
    assert_eq!(row[3], "30", "available: {row:?}");
    assert!(uuid::Uuid::parse_str(&row[0]).is_ok(), "{row:?}");

    let dup = wd.run(&[
        "user",
        "create",
        "--email",
        "A@X.io",
        "--password",
        "longpassword",
    ]);
    assert!(!dup.status.success(), "duplicate created: {}", stdout(&dup));
    assert!(!stderr(&dup).is_empty());
    let weak = wd.run(&["user", "create", "--email", "b@x.io", "--password", "short"]);
    assert!(!weak.status.success(), "weak password accepted");

    ok(&wd.run(&[
        "credits", "grant", "--email", "a@x.io", "--amount", "70", "--reason", "test",
    ]));
    let list = ok(&wd.run(&["user", "list"]));
    assert_eq!(user_row(&list, "a@x.io")[3], "100", "{list}");
    assert_eq!(list.lines().count(), 2, "one header and one user:\n{list}");

    let over = wd.run(&[
        "credits", "grant", "--email", "a@x.io", "--amount", "-500", "--reason", "test",
    ]);
    assert!(
        !over.status.success(),
        "deducted past zero: {}",
        stdout(&over)
    );
    assert_eq!(
        user_row(&ok(&wd.run(&["user", "list"])), "a@x.io")[3],
        "100"
    );

    let nobody = wd.run(&[
        "credits",
        "grant",
        "--email",
        "nobody@x.io",
        "--amount",
        "5",
        "--reason",
        "test",
    ]);
    assert!(!nobody.status.success(), "granted to an unknown user");

    let audit = ok(&wd.run(&["audit"]));
    assert!(audit.contains("0 problem"), "{audit}");
}

/// The generated JWT secret is `data/jwt_secret`, mode 0600, and is reused.
#[test]
fn jwt_secret_file_is_private_and_reused() {
    let wd = Workdir::new();
    ok(&wd.run(&[
        "user",
        "create",
        "--email",
        "s@x.io",
        "--password",
        "longpassword",
    ]));
    let path = wd.path().join("data").join("jwt_secret");
    let first = std::fs::read_to_string(&path).expect("jwt_secret written");
    assert!(first.trim().len() >= 32, "secret too short");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "mode {mode:o}");
    }
    ok(&wd.run(&[
        "credits", "grant", "--email", "s@x.io", "--amount", "1", "--reason", "again",
    ]));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        first,
        "secret regenerated"
    );
}

// ---------------------------------------------------------------- serve

/// A running `atelier serve`, killed when dropped.
struct Server {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Server {
    fn start(wd: &Workdir, name: &str) -> Server {
        Server::start_with(wd, name, &[])
    }

    /// `serve` with extra environment variables.
    fn start_with(wd: &Workdir, name: &str, env: &[(&str, &str)]) -> Server {
        let port = {
            let probe = TcpListener::bind("127.0.0.1:0").expect("free port");
            probe.local_addr().unwrap().port()
        };
        let log = wd.path().join(format!("{name}.log"));
        let bind = format!("127.0.0.1:{port}");
        let child = wd
            .command(&["serve"])
            .env("ATELIER_SERVER_BIND", &bind)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn serve");
        Server {
            child,
            base: format!("http://{bind}"),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `/healthz` until it answers 200.
    async fn wait_healthy(&mut self, client: &reqwest::Client) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("serve exited early ({status}); log:\n{}", self.log());
            }
            if let Ok(res) = client.get(format!("{}/healthz", self.base)).send().await {
                assert_eq!(res.status(), 200);
                return res.json().await.expect("json");
            }
            assert!(
                Instant::now() < deadline,
                "not healthy in time; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM and expects a clean exit.
    async fn terminate(mut self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "serve exit {status}; log:\n{}",
                    self.log()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "serve ignored SIGTERM; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `serve` answers `/healthz` on the configured port, stops on SIGTERM, and a token from
/// the first run still works after a restart (the generated secret was reused).
#[tokio::test]
async fn serve_answers_and_reuses_its_secret_across_restarts() {
    let wd = Workdir::new();
    let client = reqwest::Client::new();

    let mut server = Server::start(&wd, "first");
    assert_eq!(server.wait_healthy(&client).await, json!({"status": "ok"}));
    let res = client
        .post(format!("{}/auth/v1/signup", server.base))
        .json(&json!({"email": "serve@x.io", "password": "longpassword"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let token = res.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let secret = std::fs::read_to_string(wd.path().join("data").join("jwt_secret")).unwrap();
    server.terminate().await;

    let mut server = Server::start(&wd, "second");
    server.wait_healthy(&client).await;
    let res = client
        .get(format!("{}/v1/me", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        200,
        "token from the first run refused after restart"
    );
    assert_eq!(res.json::<Value>().await.unwrap()["email"], "serve@x.io");
    assert_eq!(
        std::fs::read_to_string(wd.path().join("data").join("jwt_secret")).unwrap(),
        secret
    );
    server.terminate().await;
}

/// With JSON logs, every request is one line naming its route, status and user; an
/// upstream failure is logged with its provider; no password, token or API key ever
/// reaches the log.
#[tokio::test]
async fn json_logs_name_the_user_and_never_a_secret() {
    let wd = Workdir::new();
    let client = reqwest::Client::new();
    let api_key = "sk-or-v1-never-log-me-7f3a9c";
    let mut server = Server::start_with(
        &wd,
        "json",
        &[
            ("ATELIER_LOG_FORMAT", "json"),
            ("ATELIER_LOG_LEVEL", "info"),
            ("ATELIER_PROVIDERS_OPENROUTER_API_KEY", api_key),
            (
                "ATELIER_PROVIDERS_OPENROUTER_BASE_URL",
                "http://127.0.0.1:9/api/v1",
            ),
            ("ATELIER_QUEUE_MAX_ATTEMPTS", "1"),
        ],
    );
    server.wait_healthy(&client).await;
    let password = "a-secret-password";
    let session: Value = client
        .post(format!("{}/auth/v1/signup", server.base))
        .json(&json!({"email": "logs@x.io", "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = session["access_token"].as_str().unwrap();
    let user_id = session["user"]["id"].as_str().unwrap();
    let ack: Value = client
        .post(format!("{}/functions/v1/analyze-product-v2", server.base))
        .bearer_auth(token)
        .json(&json!({"productImage": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAEUlEQVR4nGM4ISeHFTEMLQkAkL9BAbKfPiIAAAAASUVORK5CYII="}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job_id = ack["job_id"].as_str().expect("an analysis job");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let job: Value = client
            .get(format!("{}/v1/jobs/{job_id}", server.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if job["status"] != "processing" {
            assert_eq!(job["status"], "failed", "{job}");
            break;
        }
        assert!(Instant::now() < deadline, "{job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.terminate().await;

    let log = std::fs::read_to_string(wd.path().join("json.log")).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let me_line = lines
        .iter()
        .find(|l| l["fields"]["route"] == "/v1/jobs/{id}")
        .unwrap_or_else(|| panic!("no request line for /v1/jobs/{{id}}:\n{log}"));
    assert_eq!(me_line["fields"]["user_id"], user_id, "{me_line}");
    assert_eq!(me_line["fields"]["status"], 200, "{me_line}");
    assert!(
        lines.iter().any(|l| l["fields"]["provider"] == "openrouter"
            && l["fields"]["message"] == "upstream request failed"),
        "no upstream failure line:\n{log}"
    );
    for secret in [
        password,
        token,
        session["refresh_token"].as_str().unwrap(),
        api_key,
    ] {
        assert!(!log.contains(secret), "the log contains a secret:\n{log}");
    }
}

// ---------------------------------------------------------------- help

/// Every subcommand's `--help` exits 0 and says what it does.
#[test]
fn every_subcommand_has_help() {
    let wd = Workdir::new();
    let cases: &[(&[&str], &[&str])] = &[
        (
            &[],
            &[
                "serve", "migrate", "user", "credits", "config", "audit", "backup", "restore",
            ],
        ),
        (&["serve"], &["Run the HTTP server"]),
        (&["migrate"], &["database schema"]),
        (&["user"], &["Manage user accounts", "create", "list"]),
        (
            &["user", "create"],
            &["Create a user", "--email", "--password", "--admin"],
        ),
        (&["user", "list"], &["List users"]),
        (&["credits"], &["Manage credits", "grant"]),
        (
            &["credits", "grant"],
            &["Grant", "--email", "--amount", "--reason"],
        ),
        (&["config"], &["Inspect the configuration", "check"]),
        (&["config", "check"], &["validate the configuration"]),
        (&["audit"], &["Recompute every account from its ledger"]),
        (&["backup"], &["consistent snapshot", "--out"]),
        (&["restore"], &["Replace the database", "--from"]),
    ];
    for (command, phrases) in cases {
        let mut args = command.to_vec();
        args.push("--help");
        let text = ok(&wd.run(&args));
        for phrase in *phrases {
            assert!(
                text.contains(phrase),
                "`{}` help lacks {phrase:?}:\n{text}",
                args.join(" ")
            );
        }
    }
    // Help touches nothing.
    assert!(!wd.path().join("data").exists());
}

/// The README's configuration reference names every key `config check` prints.
#[test]
fn the_readme_documents_every_config_key() {
    fn keys(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
        for (key, value) in table {
            match value {
                toml::Value::Table(inner) => keys(inner, &format!("{prefix}{key}."), out),
                _ if prefix.is_empty() && key == "models" => {}
                _ => out.push(format!("{prefix}{key}")),
            }
        }
    }
    let wd = Workdir::new();
    let printed = ok(&wd.run(&["config", "check"]));
    let body = printed.split_once('\n').map_or("", |(_, rest)| rest);
    let table: toml::Table = toml::from_str(body).expect("config check prints TOML");
    let mut all = Vec::new();
    keys(&table, "", &mut all);
    assert!(all.len() > 40, "{all:?}");
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let missing: Vec<&String> = all
        .iter()
        .filter(|k| !readme.contains(&format!("| `{k}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "README's configuration reference lacks {missing:?}; run scripts/config-reference.py"
    );
}
