//! supabase-js in a real browser on another origin, web security on: headless chromium
//! loads a page from a small static server on its own 127.0.0.1 port, which loads the
//! real supabase-js UMD bundle (tests/js/node_modules, served by that server, nothing
//! from a CDN), signs up (`auth.signUp`) and reads `/rest/v1` (`from('packages')`,
//! `from('profiles')`, a count through the exposed `Content-Range`) from Atelier. The
//! same page from an origin outside `server.cors_origins` is refused by the preflight
//! and creates nothing. Without chromium the test skips, except under `CI=true`; without
//! tests/js/node_modules it fails under `CI=true` too.

mod browser;
mod common;

use std::net::SocketAddr;
use std::path::Path;

use browser::{Browser, ONE_BROWSER};
use common::{json_with_status, spawn_app_with, TestApp};
use serde_json::{json, Value};
use warp::Filter;

const ANON_KEY: &str = "atelier-anon-key-for-the-browser-test";
const PASSWORD: &str = "a-long-password";

/// The page: everything it learns goes to `window.__result` (and the page's text).
const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>supabase-js on another origin</title>
<script src="/supabase.js"></script></head>
<body><pre id="out">running</pre>
<script>
(async () => {
  const q = new URLSearchParams(location.search);
  const result = {};
  const message = (e) => (e ? String(e.message || e.name || e) : null);
  try {
    const client = supabase.createClient(q.get('api'), q.get('key'), {
      auth: { persistSession: false, autoRefreshToken: false },
    });
    const { data, error } = await client.auth.signUp({ email: q.get('email'), password: q.get('password') });
    result.signUp = { user: data?.user?.id ?? null, session: Boolean(data?.session), error: message(error) };
    const packages = await client.from('packages').select('id, name, price_usd').order('sort_order');
    result.packages = { rows: packages.data, error: message(packages.error) };
    const counted = await client.from('packages').select('id', { count: 'exact' }).limit(1);
    result.count = { count: counted.count, error: message(counted.error) };
    if (data?.user) {
      const profile = await client.from('profiles')
        .select('id, email, purchased_credits').eq('id', data.user.id).single();
      result.profile = { row: profile.data, error: message(profile.error) };
    }
  } catch (e) {
    result.thrown = String(e);
  }
  window.__result = result;
  document.getElementById('out').textContent = JSON.stringify(result, null, 2);
})();
</script></body></html>"#;

/// A static site on its own port (its own origin): the page and the supabase-js bundle.
async fn static_site(bundle: Vec<u8>) -> SocketAddr {
    let page = warp::path::end().map(|| warp::reply::html(PAGE));
    let script = warp::path!("supabase.js").map(move || {
        warp::http::Response::builder()
            .header("content-type", "text/javascript; charset=utf-8")
            .body(bundle.clone())
            .expect("a response")
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(warp::serve(page.or(script)).incoming(listener).run());
    addr
}

/// Opens the page of `site` and waits for what it learnt.
async fn run_page(browser: &Browser, site: SocketAddr, api: &str, email: &str) -> Value {
    let url = format!(
        "http://{site}/?api={}&key={ANON_KEY}&email={}&password={PASSWORD}",
        urlencode(api),
        urlencode(email)
    );
    browser.goto(&url).await;
    browser.until("the page's result", "window.__result").await;
    browser.js("return window.__result;").await
}

/// A password sign-in over HTTP.
async fn login(app: &TestApp, email: &str) -> reqwest::Response {
    app.client
        .post(app.url("/auth/v1/token?grant_type=password"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supabase_js_signs_up_and_reads_from_another_origin() {
    let _one = ONE_BROWSER.lock().await;
    let bundle_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/js/node_modules/@supabase/supabase-js/dist/umd/supabase.js");
    let Ok(bundle) = std::fs::read(&bundle_path) else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI must run the browser test: run `npm ci` in tests/js"
        );
        eprintln!(
            "skipped: {} is missing (run `npm ci` in tests/js)",
            bundle_path.display()
        );
        return;
    };
    let Some(browser) = Browser::start("supabase-js from another origin").await else {
        return;
    };
    let allowed = static_site(bundle.clone()).await;
    let refused = static_site(bundle).await;
    let app = spawn_app_with(|c| {
        c.auth.anon_key = Some(ANON_KEY.into());
        c.server.cors_origins = vec![format!("http://{allowed}")];
    })
    .await;
    let api = app.base.clone();
    assert_ne!(api, format!("http://{allowed}"), "another origin");

    // The allowed origin: signed up, both relations read, the count exposed.
    let email = browser::email("cross-origin");
    let result = run_page(&browser, allowed, &api, &email).await;
    assert_eq!(result.get("thrown"), None, "{result:#}");
    assert_eq!(result["signUp"]["error"], Value::Null, "{result:#}");
    assert_eq!(result["signUp"]["session"], true, "{result:#}");
    let user_id = result["signUp"]["user"].as_str().expect("a user id");
    let expected = json_with_status(
        app.client
            .get(app.url("/rest/v1/packages?select=id,name,price_usd&order=sort_order"))
            .header("apikey", ANON_KEY)
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert!(!expected.as_array().unwrap().is_empty());
    assert_eq!(result["packages"]["error"], Value::Null, "{result:#}");
    // (WebDriver answers 5.0 as 5: prices compared as numbers.)
    let rows = |v: &Value| -> Vec<(String, String, f64)> {
        v.as_array()
            .expect("rows")
            .iter()
            .map(|p| {
                let text = |k: &str| p[k].as_str().unwrap_or_default().to_string();
                (
                    text("id"),
                    text("name"),
                    p["price_usd"].as_f64().unwrap_or(-1.0),
                )
            })
            .collect()
    };
    assert_eq!(rows(&result["packages"]["rows"]), rows(&expected));
    assert_eq!(
        result["count"],
        json!({"count": expected.as_array().unwrap().len(), "error": null}),
        "Content-Range reaches the page"
    );
    assert_eq!(
        result["profile"],
        json!({"row": {"id": user_id, "email": email, "purchased_credits": 30}, "error": null})
    );
    // The account is real: it signs in over HTTP.
    let session = json_with_status(login(&app, &email).await, 200).await;
    assert_eq!(session["user"]["id"], user_id);

    // Another origin: the preflight is refused, nothing is created or read.
    let email = browser::email("refused-origin");
    let result = run_page(&browser, refused, &api, &email).await;
    assert_eq!(result.get("thrown"), None, "{result:#}");
    assert_eq!(result["signUp"]["user"], Value::Null, "{result:#}");
    assert!(result["signUp"]["error"].is_string(), "{result:#}");
    assert_eq!(result["packages"]["rows"], Value::Null, "{result:#}");
    assert!(result["packages"]["error"].is_string(), "{result:#}");
    assert_eq!(
        login(&app, &email).await.status(),
        400,
        "no account was made from the refused origin"
    );
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/auth/v1/signup"))
        .header("origin", format!("http://{refused}"))
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "apikey, content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 403);
    browser.close().await;
    app.stop().await;
}
