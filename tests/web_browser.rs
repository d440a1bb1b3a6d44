//! The studio (`/`) and the admin console (`/admin`) in a real browser: Debian's
//! chromium driven by chromedriver over WebDriver. Without chromium or chromedriver the
//! browser tests skip with the reason, except in CI (`CI=true`), where they must run.
//! Screenshots go to `target/screenshots/`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{png_bytes, spawn_app, spawn_app_with, TestApp};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

const CHROMIUM: &str = "/usr/bin/chromium";
const PASSWORD: &str = "correct-horse-battery";

/// Billing (checkout, the simulated Pay page) lands from its own branch: until then the
/// purchase step skips while the checkout route is missing. Set to `false` once billing
/// is merged, so that a missing checkout fails the journey instead.
const CHECKOUT_MAY_BE_MISSING: bool = true;

/// Inputs without a label (none allowed).
const UNLABELLED: &str = "return Array.from(document.querySelectorAll('input, select, textarea'))
  .filter(n => n.getClientRects().length && !n.labels.length && !n.getAttribute('aria-label'))
  .map(n => n.id || n.outerHTML.slice(0, 80));";

/// One browser at a time: the machine is small and chromium is heavy.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// chromedriver's path, or why the browser tests cannot run here.
fn chromedriver() -> Result<PathBuf, String> {
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
struct Browser {
    client: Client,
    _driver: Child,
}

impl Browser {
    /// Starts chromedriver on a free port and a session; `None` (with the reason
    /// printed) when the tools are absent outside CI.
    async fn start(test: &str) -> Option<Browser> {
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

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigates");
    }

    /// Runs `script` (a function body with `return`) in the page.
    async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Waits until `expr` is truthy in the page (15 s), naming `what` on timeout.
    async fn until(&self, what: &str, expr: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
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
    async fn text(&self, css: &str) -> String {
        self.js(&format!(
            "const n = document.querySelector({}); return n ? n.textContent : null;",
            json!(css)
        ))
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    async fn fill(&self, css: &str, text: &str) {
        let field = self.client.find(Locator::Css(css)).await.expect(css);
        field.clear().await.expect("clears");
        field.send_keys(text).await.expect("types");
    }

    async fn click(&self, css: &str) {
        let node = self.client.find(Locator::Css(css)).await.expect(css);
        node.click().await.expect("clicks");
    }

    async fn select(&self, css: &str, value: &str) {
        let node = self.client.find(Locator::Css(css)).await.expect(css);
        node.select_by_value(value).await.expect("selects");
    }

    /// Chooses files in the photo picker.
    async fn upload(&self, paths: &[&Path]) {
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
    async fn sign_in(&self, email: &str, signup: bool) {
        if signup {
            self.click("#auth-switch").await;
        }
        self.fill("#auth-email", email).await;
        self.fill("#auth-password", PASSWORD).await;
        self.click("#auth-submit").await;
    }

    /// Screenshots at desktop and phone size into `target/screenshots/`, each checked to
    /// have more than one colour; answers the desktop file.
    async fn screenshots(&self, name: &str) -> PathBuf {
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

    async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// The elements that stick out of the viewport on the right (none when usable); wide
/// tables scroll inside their own box.
const WIDER_THAN_VIEWPORT: &str = "const w = document.documentElement.clientWidth;
  return Array.from(document.querySelectorAll('body *'))
    .filter(n => !n.closest('.table-wrap') && n.getClientRects().length && n.getBoundingClientRect().right > w + 1)
    .slice(0, 5)
    .map(n => `${n.tagName}#${n.id}.${n.className} right=${Math.round(n.getBoundingClientRect().right)} of ${w}`);";

/// A real PNG of `w`×`h` written to `dir/name`.
fn png_file(dir: &Path, name: &str, w: u32, h: u32) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, png_bytes(w, h, false)).expect("png written");
    path
}

fn email(who: &str) -> String {
    format!("{who}-{}@example.com", uuid::Uuid::now_v7().simple())
}

/// The live job card of the newest job has `status` (success | partial | failed).
fn newest_job_is(status: &str) -> String {
    format!("document.querySelector('#jobs li.job')?.dataset.status === '{status}'")
}

/// Whether the billing branch's checkout has landed on this server.
async fn checkout_available(app: &TestApp) -> Result<(), String> {
    let user = app.new_user().await;
    let res = app
        .post_json(
            "/functions/v1/create-onetime-checkout",
            Some(&user.access_token),
            &json!({}),
        )
        .await;
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    if status == 404 && text.contains("no such route") {
        return Err(
            "POST /functions/v1/create-onetime-checkout is not built yet (404 no such route)"
                .into(),
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_seller_generates_buys_and_an_admin_grants_credits() {
    let _one = ONE_BROWSER.lock().await;
    let Some(browser) = Browser::start("the studio journey").await else {
        return;
    };
    let app = spawn_app().await;
    let files = tempfile::tempdir().expect("temp dir");
    let seller = email("seller");

    browser.goto(&app.url("/")).await;
    browser.sign_in(&seller, true).await;
    browser
        .until(
            "30 signup credits",
            "document.querySelector('#credits-available').textContent === '30'",
        )
        .await;

    browser
        .upload(&[&png_file(files.path(), "product.png", 64, 48)])
        .await;
    browser
        .until(
            "the uploaded photo",
            "document.querySelectorAll('#photos li[data-photo]').length === 1",
        )
        .await;
    browser.fill("#prompt", "a red box on a marble table").await;
    browser.select("#model", "local").await;
    browser.select("#ratio", "16:9").await;
    browser.fill("#count", "2").await;
    let cost = browser.text("#cost").await;
    assert!(
        cost.contains("2 images × 1 credit = 2 credits · 30 available"),
        "{cost}"
    );
    browser
        .js("window.__sameDocument = true; return null;")
        .await;
    browser.click("#job-submit").await;

    browser
        .until("the job to finish live", &newest_job_is("success"))
        .await;
    assert_eq!(
        browser.js("return window.__sameDocument === true;").await,
        true,
        "the page reloaded"
    );
    browser
        .until(
            "two loaded images in the gallery",
            "Array.from(document.querySelectorAll('#gallery img')).filter(i => i.complete && i.naturalWidth > 0).length === 2",
        )
        .await;
    let sizes = browser
        .js("return Array.from(document.querySelectorAll('#gallery img')).map(i => [i.naturalWidth, i.naturalHeight]);")
        .await;
    for size in sizes.as_array().expect("sizes") {
        let (w, h) = (size[0].as_f64().expect("w"), size[1].as_f64().expect("h"));
        assert!(
            ((w / h) / (16.0 / 9.0) - 1.0).abs() < 0.03,
            "not 16:9: {w}×{h}"
        );
    }
    browser
        .until(
            "credits down by 2",
            "document.querySelector('#credits-available').textContent === '28'",
        )
        .await;
    browser
        .until(
            "the ledger rows",
            "document.querySelectorAll('#ledger tr').length >= 3",
        )
        .await;
    assert_eq!(
        browser.js(UNLABELLED).await,
        json!([]),
        "studio inputs without labels"
    );
    browser.screenshots("studio").await;
    if std::env::var("ATELIER_UPDATE_README_SHOT").is_ok() {
        browser
            .client
            .set_window_size(1280, 1180)
            .await
            .expect("resizes");
        browser.js("window.scrollTo(0, 0); return null;").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let png = browser.client.screenshot().await.expect("screenshot");
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/studio.png");
        std::fs::write(docs, png).expect("docs/studio.png written");
        browser
            .client
            .set_window_size(1280, 800)
            .await
            .expect("resizes");
    }

    let mut expected = 28;
    match checkout_available(&app).await {
        Err(why) => {
            if !CHECKOUT_MAY_BE_MISSING {
                panic!("the studio's Buy needs the checkout: {why}");
            }
            eprintln!("skipping the credit-pack purchase: {why}");
        }
        Ok(()) => {
            let credits = browser
                .js("return Number(document.querySelector('#packages li[data-type=\"one_time\"] button').closest('li').children[1].textContent.split(' ')[0]);")
                .await
                .as_i64()
                .expect("pack credits");
            browser
                .click("#packages li[data-type=\"one_time\"] button")
                .await;
            browser
                .until(
                    "the checkout page",
                    "location.pathname.startsWith('/dev/checkout/')",
                )
                .await;
            let pay = browser
                .client
                .find(Locator::XPath("//button[contains(., 'Pay')] | //input[@type='submit' and contains(@value, 'Pay')]"))
                .await
                .expect("a Pay button");
            pay.click().await.expect("pays");
            expected += credits;
            browser
                .until(
                    "back on the studio",
                    "location.pathname === '/' && !!document.querySelector('#credits-available')",
                )
                .await;
            browser
                .until(
                    "the pack's credits",
                    &format!(
                        "document.querySelector('#credits-available').textContent === '{expected}'"
                    ),
                )
                .await;
        }
    }

    browser.click("#sign-out").await;
    browser
        .until(
            "the sign-in form",
            "!document.querySelector('#signed-out').hidden",
        )
        .await;
    let admin = app.new_admin().await;
    browser.goto(&app.url("/admin")).await;
    browser.fill("#auth-email", &admin.email).await;
    browser.fill("#auth-password", &admin.password).await;
    browser.click("#auth-submit").await;
    browser
        .until(
            "the queue view",
            "document.querySelector('#queue-depth').textContent !== '–'",
        )
        .await;
    browser
        .until(
            "the seller's job in the jobs table",
            "document.querySelectorAll('#admin-jobs tr[data-job-id]').length >= 1",
        )
        .await;
    browser.fill("#user-query", &seller).await;
    browser.click("#user-search-submit").await;
    let grant = format!("form.grant[data-user=\"{seller}\"]");
    browser
        .until(
            "the seller in the user list",
            &format!("document.querySelectorAll('{grant}').length === 1"),
        )
        .await;
    browser
        .fill(&format!("{grant} input[type=number]"), "50")
        .await;
    browser
        .fill(
            &format!("{grant} input:not([type])"),
            "goodwill for the launch",
        )
        .await;
    browser.click(&format!("{grant} button[type=submit]")).await;
    expected += 50;
    browser
        .until(
            "the granted credits",
            &format!(
                "document.querySelector('#users li').textContent.includes('{expected} available')"
            ),
        )
        .await;
    assert_eq!(
        browser.js(UNLABELLED).await,
        json!([]),
        "admin inputs without labels"
    );
    browser.screenshots("admin").await;
    browser.click("#sign-out").await;

    browser.goto(&app.url("/")).await;
    browser.sign_in(&seller, false).await;
    browser
        .until(
            "the seller's panel with the grant",
            &format!("document.querySelector('#credits-available').textContent === '{expected}'"),
        )
        .await;
    browser
        .until(
            "the grant in the history",
            "document.querySelector('#ledger').textContent.includes('goodwill for the launch')",
        )
        .await;
    browser.close().await;
    app.stop().await;
}

#[tokio::test]
async fn a_refinement_with_a_failing_unit_shows_the_partial_result() {
    let _one = ONE_BROWSER.lock().await;
    let Some(browser) = Browser::start("the refinement journey").await else {
        return;
    };
    let app = spawn_app_with(|c| {
        c.providers.local.fail_units = vec![1];
        c.providers.local.fail_kind = "permanent".into();
    })
    .await;
    let files = tempfile::tempdir().expect("temp dir");
    browser.goto(&app.url("/")).await;
    browser.sign_in(&email("refiner"), true).await;
    browser
        .until(
            "the credits",
            "document.querySelector('#credits-available').textContent === '30'",
        )
        .await;
    browser
        .upload(&[
            &png_file(files.path(), "front.png", 40, 40),
            &png_file(files.path(), "back.png", 40, 40),
        ])
        .await;
    browser
        .until(
            "two photos",
            "document.querySelectorAll('#photos li[data-photo]').length === 2",
        )
        .await;
    browser.select("#job-kind", "refinement").await;
    browser.select("#model", "local").await;
    let cost = browser.text("#cost").await;
    assert!(cost.contains("2 images × 1 credit = 2 credits"), "{cost}");
    browser.click("#job-submit").await;

    browser
        .until("a partly done job", &newest_job_is("partial"))
        .await;
    let card = browser.text("#jobs li.job").await;
    assert!(card.contains("1 of 2 done"), "{card}");
    assert!(card.contains("1 failed"), "{card}");
    assert!(
        card.contains("Image 2:"),
        "the failed unit's message: {card}"
    );
    browser
        .until(
            "one image in the gallery",
            "document.querySelectorAll('#gallery img').length === 1",
        )
        .await;
    browser
        .until(
            "one credit charged",
            "document.querySelector('#credits-available').textContent === '29'",
        )
        .await;
    browser.screenshots("studio-partial").await;

    // Style replicate: one reference × two products (the second unit fails), then one
    // reference × one group.
    browser
        .click("#photos li[data-photo] input[id$='-reference']")
        .await;
    browser.select("#job-kind", "single").await;
    browser.fill("#count", "1").await;
    assert!(browser.text("#cost").await.contains("2 images × 1 credit"));
    browser.click("#job-submit").await;
    browser
        .until("the style replicate job", "document.querySelectorAll('#jobs li.job').length === 2 && document.querySelector('#jobs li.job').dataset.status === 'partial'")
        .await;
    assert!(browser
        .text("#jobs li.job strong")
        .await
        .starts_with("Style replicate"));
    browser.select("#job-kind", "batch").await;
    assert!(browser.text("#cost").await.contains("1 image × 1 credit"));
    browser.click("#job-submit").await;
    browser
        .until("the batch job", "document.querySelectorAll('#jobs li.job').length === 3 && document.querySelector('#jobs li.job').dataset.status === 'success'")
        .await;
    browser
        .until(
            "credits after both",
            "document.querySelector('#credits-available').textContent === '27'",
        )
        .await;

    browser.select("#job-kind", "analysis").await;
    browser.fill("#count", "2").await;
    assert!(browser.text("#cost").await.starts_with("Free"));
    browser.click("#job-submit").await;
    browser
        .until(
            "the analysis",
            "document.querySelector('#analysis-fields').textContent.includes('Product')",
        )
        .await;
    browser
        .until(
            "the streamed prompts",
            "!document.querySelector('#use-prompt').hidden",
        )
        .await;
    let prompts = browser.text("#prompt-stream").await;
    assert!(
        prompts.len() > 20 && prompts != "Writing prompts…",
        "{prompts}"
    );
    browser.click("#use-prompt").await;
    assert_eq!(
        browser
            .js("return document.querySelector('#prompt').value;")
            .await,
        json!(prompts)
    );
    browser.close().await;
    app.stop().await;
}

#[tokio::test]
async fn a_live_job_survives_a_server_restart() {
    let _one = ONE_BROWSER.lock().await;
    let Some(browser) = Browser::start("the restart test").await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let config = |bind: String| {
        let mut config = common::test_config(dir.path());
        config.server.bind = bind;
        config.providers.local.delay_ms = 2_000;
        config
    };
    let first = Process::start(config("127.0.0.1:0".into()));
    let addr = first.addr;
    let files = tempfile::tempdir().expect("temp dir");
    browser.goto(&format!("http://{addr}/")).await;
    browser.sign_in(&email("restart"), true).await;
    browser
        .until(
            "the credits",
            "document.querySelector('#credits-available').textContent === '30'",
        )
        .await;
    browser
        .upload(&[&png_file(files.path(), "p.png", 20, 20)])
        .await;
    browser
        .until(
            "the photo",
            "document.querySelectorAll('#photos li[data-photo]').length === 1",
        )
        .await;
    browser.fill("#prompt", "survives a restart").await;
    browser.select("#model", "local").await;
    browser.click("#job-submit").await;
    browser
        .until("a running job", &newest_job_is("processing"))
        .await;

    first.kill();
    browser
        .until(
            "the reconnecting note",
            "!document.querySelector('#jobs li.job .reconnect').hidden",
        )
        .await;
    let second = Process::start(config(addr.to_string()));
    browser
        .until(
            "the job to finish after the restart",
            &newest_job_is("success"),
        )
        .await;
    browser
        .until(
            "its image",
            "document.querySelectorAll('#gallery img').length === 1",
        )
        .await;
    browser
        .until(
            "one credit charged",
            "document.querySelector('#credits-available').textContent === '29'",
        )
        .await;
    browser.close().await;
    second.kill();
}

/// A server in a runtime of its own, so that ending it ends every connection and task
/// at once, as a killed process would (a graceful stop in the test's runtime would leave
/// open event streams behind).
struct Process {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Process {
    fn start(config: atelier::config::Config) -> Process {
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
    fn kill(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().expect("server thread");
        }
    }
}

#[tokio::test]
async fn user_text_is_shown_as_text_and_sessions_end_with_a_message() {
    let _one = ONE_BROWSER.lock().await;
    let Some(browser) = Browser::start("the XSS and session test").await else {
        return;
    };
    let app = spawn_app().await;
    let files = tempfile::tempdir().expect("temp dir");
    browser.goto(&app.url("/")).await;
    browser.sign_in(&email("mallory"), true).await;
    browser
        .until(
            "the credits",
            "document.querySelector('#credits-available').textContent === '30'",
        )
        .await;
    browser.js("window.__xss = 0; return null;").await;

    let photo_name = "<img src=x onerror=window.__xss=1>.png";
    let text_name = "<img src=x onerror=window.__xss=2>.txt";
    let text_file = files.path().join(text_name);
    std::fs::write(&text_file, b"not an image").expect("text file");
    browser
        .upload(&[&png_file(files.path(), photo_name, 32, 32), &text_file])
        .await;
    browser
        .until(
            "the photo",
            "document.querySelectorAll('#photos li[data-photo]').length === 1",
        )
        .await;
    browser
        .until(
            "the refused file's message",
            "!document.querySelector('#upload-error').hidden",
        )
        .await;
    let refused = browser.text("#upload-error").await;
    assert!(refused.contains(text_name), "{refused}");
    assert!(
        refused.contains("only png, jpeg and webp"),
        "the server's message: {refused}"
    );
    assert_eq!(
        browser.text("#photos li[data-photo] .name").await,
        photo_name
    );

    let prompt = "<img src=x onerror=\"window.__xss=3\"> on a shelf";
    browser.fill("#prompt", prompt).await;
    browser.select("#model", "local").await;
    browser.click("#job-submit").await;
    browser.until("the job", &newest_job_is("success")).await;
    browser
        .until(
            "the gallery",
            "document.querySelectorAll('#gallery li').length === 1",
        )
        .await;
    assert_eq!(browser.text("#jobs li.job .prompt").await, prompt);
    assert_eq!(browser.text("#gallery li .prompt").await, prompt);
    assert_eq!(
        browser
            .js("return document.querySelectorAll('img[src=\"x\"]').length;")
            .await,
        0
    );
    assert_eq!(
        browser.js("return window.__xss;").await,
        0,
        "injected script ran"
    );

    // A token about to expire is renewed before it does (after a reload, too).
    let before = browser
        .js("const s = JSON.parse(sessionStorage.getItem('atelier.session')); s.expires_at = Math.floor(Date.now() / 1000) + 5; sessionStorage.setItem('atelier.session', JSON.stringify(s)); return s.access_token;")
        .await;
    browser.goto(&app.url("/")).await;
    browser
        .until("a renewed session", &format!("(() => {{ const s = JSON.parse(sessionStorage.getItem('atelier.session')); return s && s.access_token !== {before} && s.expires_at > Date.now() / 1000 + 3000; }})()"))
        .await;
    browser
        .until(
            "the studio",
            "document.querySelector('#credits-available').textContent === '29'",
        )
        .await;

    // A session whose access token and refresh token are both dead: back to sign-in
    // with a message, never a blank page.
    browser
        .js("sessionStorage.setItem('atelier.session', JSON.stringify({access_token: 'a.b.c', refresh_token: 'spent', expires_at: 1})); return null;")
        .await;
    browser.goto(&app.url("/")).await;
    browser
        .until(
            "the sign-in form",
            "!document.querySelector('#signed-out').hidden",
        )
        .await;
    browser
        .until(
            "the expiry message",
            "document.querySelector('#auth-error').textContent.includes('expired')",
        )
        .await;
    browser.close().await;
    app.stop().await;
}

/// An admin page for a seller shows the server's 403 message.
#[tokio::test]
async fn the_admin_console_refuses_sellers_with_the_servers_message() {
    let _one = ONE_BROWSER.lock().await;
    let Some(browser) = Browser::start("the admin refusal test").await else {
        return;
    };
    let app = spawn_app().await;
    let seller = app.new_user().await;
    browser.goto(&app.url("/admin")).await;
    browser.fill("#auth-email", &seller.email).await;
    browser.fill("#auth-password", PASSWORD).await;
    browser.click("#auth-submit").await;
    browser
        .until(
            "the refusal",
            "!document.querySelector('#forbidden').hidden",
        )
        .await;
    assert_eq!(
        browser.text("#forbidden-message").await,
        "this needs an admin account"
    );
    browser.close().await;
    app.stop().await;
}

/// Every page has the strict CSP; pages and assets have types, ETags and caching; the
/// sources keep to the rules (no inline script or style, no HTML parsing, no CDN).
#[tokio::test]
async fn pages_carry_a_strict_csp_and_assets_are_cached() {
    let app = spawn_app().await;
    for page in ["/", "/admin"] {
        let res = app.get(page, None).await;
        assert_eq!(res.status(), 200, "{page}");
        let headers = res.headers().clone();
        let csp = headers["content-security-policy"].to_str().expect("ascii");
        for part in [
            "default-src 'self'",
            "script-src 'self'",
            "img-src 'self' data: blob:",
            "object-src 'none'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(part), "{page}: {csp}");
        }
        assert!(!csp.contains("unsafe"), "{page}: {csp}");
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
        assert_eq!(headers["cache-control"], "no-cache");
        let etag = headers["etag"].to_str().expect("etag").to_string();
        let html = res.text().await.expect("html");
        assert!(!html.contains("__V__"), "{page} has an unfilled version");
        let again = app
            .client
            .get(app.url(page))
            .header("if-none-match", &etag)
            .send()
            .await
            .expect("request");
        assert_eq!(again.status(), 304, "{page}");
        let head = app
            .client
            .head(app.url(page))
            .send()
            .await
            .expect("request");
        assert_eq!(head.status(), 200);
        assert!(head.headers().contains_key("content-security-policy"));

        let version = html
            .split("/assets/app.css?v=")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a versioned stylesheet")
            .to_string();
        let css = app.get(&format!("/assets/app.css?v={version}"), None).await;
        assert_eq!(css.status(), 200);
        assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
        assert_eq!(
            css.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
        assert!(css.headers().contains_key("etag"));
    }
    let module = app.get("/assets/js/studio.js", None).await;
    assert_eq!(
        module.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(module.headers()["cache-control"], "no-cache");
    common::assert_envelope(app.get("/assets/nope.js", None).await, 404, "NOT_FOUND").await;
    common::assert_envelope(
        app.get("/assets/../Cargo.toml", None).await,
        404,
        "NOT_FOUND",
    )
    .await;

    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/web");
    let mut sources = vec![];
    for dir in [web.clone(), web.join("js")] {
        for entry in std::fs::read_dir(dir).expect("src/web") {
            let path = entry.expect("entry").path();
            if path.is_file() {
                sources.push(path);
            }
        }
    }
    for path in sources {
        let text = std::fs::read_to_string(&path).expect("source");
        let name = path.display();
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "localStorage",
            "http://",
            "https://",
            "style=\"",
        ] {
            assert!(!text.contains(banned), "{name} uses {banned}");
        }
        if name.to_string().ends_with(".html") {
            for script in text.split("<script").skip(1) {
                assert!(
                    script
                        .trim_start()
                        .starts_with("type=\"module\" src=\"/assets/"),
                    "{name}: inline script"
                );
            }
        }
    }
    app.stop().await;
}
