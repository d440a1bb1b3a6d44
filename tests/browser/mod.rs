//! The browser harness of the web tests: Debian's chromium behind its own chromedriver
//! (WebDriver, `fantoccini`), page helpers, screenshots, and a server that can be
//! killed like a process. Without chromium or chromedriver a test skips with the reason,
//! except in CI (`CI=true`), where it must run.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

use crate::common::png_bytes;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const PASSWORD: &str = "correct-horse-battery";

/// Inputs without a label (none allowed).
pub const UNLABELLED: &str =
    "return Array.from(document.querySelectorAll('input, select, textarea'))
  .filter(n => n.getClientRects().length && !n.labels.length && !n.getAttribute('aria-label'))
  .map(n => n.id || n.outerHTML.slice(0, 80));";

/// One browser at a time: the machine is small and chromium is heavy.
pub static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// chromedriver's path, or why the browser tests cannot run here.
pub fn chromedriver() -> Result<PathBuf, String> {
    if !Path::new(CHROMIUM).exists() {
        return Err(format!("{CHROMIUM} is missing (apt-get install chromium)"));
    }
    ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| "chromedriver is missing (apt-get install chromium-driver)".into())
}

/// A headless chromium behind its own chromedriver, closed on drop of both.
pub struct Browser {
    pub client: Client,
    _driver: Child,
}

impl Browser {
    /// Starts chromedriver on a free port and a session; `None` (with the reason
    /// printed) when the tools are absent outside CI.
    pub async fn start(test: &str) -> Option<Browser> {
        let driver_path = match chromedriver() {
            Ok(path) => path,
            Err(why) => {
                assert_ne!(
                    std::env::var("CI").as_deref(),
                    Ok("true"),
                    "CI must run the browser tests: {why}"
                );
                eprintln!("skipping {test}: {why}");
                return None;
            }
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let driver = Command::new(driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while reqwest::get(format!("{url}/status")).await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver never answered");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"goog:chromeOptions": {"binary": CHROMIUM, "args": [
            "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
            "--window-size=1280,800", "--hide-scrollbars"]}});
        let mut builder =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(caps.as_object().expect("object").clone());
        let client = builder.connect(&url).await.expect("a WebDriver session");
        Some(Browser {
            client,
            _driver: driver,
        })
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigates");
    }

    /// Runs `script` (a function body with `return`) in the page.
    pub async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Waits until `expr` is truthy in the page (30 s: CI machines are busy), naming `what` on timeout.
    pub async fn until(&self, what: &str, expr: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let value = self.js(&format!("return Boolean({expr});")).await;
            if value == Value::Bool(true) {
                return;
            }
            if Instant::now() > deadline {
                let body = self.js("return document.body.innerText;").await;
                panic!("timed out waiting for {what} ({expr}); the page says:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.js(&format!(
            "const n = document.querySelector({}); return n ? n.textContent : null;",
            json!(css)
        ))
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.client.find(Locator::Css(css)).await.expect(css);
        field.clear().await.expect("clears");
        field.send_keys(text).await.expect("types");
    }

    pub async fn click(&self, css: &str) {
        let node = self.client.find(Locator::Css(css)).await.expect(css);
        node.click().await.expect("clicks");
    }

    pub async fn select(&self, css: &str, value: &str) {
        let node = self.client.find(Locator::Css(css)).await.expect(css);
        node.select_by_value(value).await.expect("selects");
    }

    /// Chooses files in the photo picker.
    pub async fn upload(&self, paths: &[&Path]) {
        let input = self
            .client
            .find(Locator::Css("#file-input"))
            .await
            .expect("picker");
        for path in paths {
            input
                .send_keys(path.to_str().expect("utf-8 path"))
                .await
                .expect("file chosen");
        }
    }

    /// Signs up (`signup`) or in through the form and waits for the credits.
    pub async fn sign_in(&self, email: &str, signup: bool) {
        if signup {
            self.click("#auth-switch").await;
        }
        self.fill("#auth-email", email).await;
        self.fill("#auth-password", PASSWORD).await;
        self.click("#auth-submit").await;
    }

    /// Screenshots at desktop and phone size into `target/screenshots/`, each checked to
    /// have more than one colour; answers the desktop file.
    pub async fn screenshots(&self, name: &str) -> PathBuf {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("target dir")
            .join("screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let mut first = None;
        for (w, h) in [(1280, 800), (390, 844)] {
            self.client.set_window_size(w, h).await.expect("resizes");
            self.js("window.scrollTo(0, 0); return null;").await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let wide = self.js(WIDER_THAN_VIEWPORT).await;
            assert_eq!(wide, json!([]), "{name} is wider than the window at {w} px");
            let png = self.client.screenshot().await.expect("screenshot");
            let img = image::load_from_memory(&png).expect("a PNG").to_rgb8();
            let first_pixel = img.get_pixel(0, 0);
            assert!(
                img.pixels().any(|p| p != first_pixel),
                "{name} at {w}×{h} is blank"
            );
            let path = dir.join(format!("{name}-{w}x{h}.png"));
            std::fs::write(&path, &png).expect("screenshot written");
            first.get_or_insert(path);
        }
        self.client
            .set_window_size(1280, 800)
            .await
            .expect("resizes");
        first.expect("a screenshot")
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// The elements that stick out of the viewport on the right (none when usable); wide
/// tables scroll inside their own box.
pub const WIDER_THAN_VIEWPORT: &str = "const w = document.documentElement.clientWidth;
  return Array.from(document.querySelectorAll('body *'))
    .filter(n => !n.closest('.table-wrap') && n.getClientRects().length && n.getBoundingClientRect().right > w + 1)
    .slice(0, 5)
    .map(n => `${n.tagName}#${n.id}.${n.className} right=${Math.round(n.getBoundingClientRect().right)} of ${w}`);";

/// A real PNG of `w`×`h` written to `dir/name`.
pub fn png_file(dir: &Path, name: &str, w: u32, h: u32) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, png_bytes(w, h, false)).expect("png written");
    path
}

pub fn email(who: &str) -> String {
    format!("{who}-{}@example.com", uuid::Uuid::now_v7().simple())
}

/// The live job card of the newest job has `status` (success | partial | failed).
pub fn newest_job_is(status: &str) -> String {
    format!("document.querySelector('#jobs li.job')?.dataset.status === '{status}'")
}

/// A server in a runtime of its own, so that ending it ends every connection and task
/// at once, as a killed process would (a graceful stop in the test's runtime would leave
/// open event streams behind).
pub struct Process {
    pub addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Process {
    pub fn start(config: atelier::config::Config) -> Process {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("runtime");
            runtime.block_on(async move {
                let running = atelier::app::start(config).await.expect("server starts");
                addr_tx.send(running.addr).expect("addr sent");
                let _ = stopped.await;
                drop(running);
            });
            runtime.shutdown_timeout(Duration::from_millis(500));
        });
        let addr = addr_rx.recv().expect("server address");
        Process {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Ends the server's runtime: every task and connection goes.
    pub fn kill(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().expect("server thread");
        }
    }
}
