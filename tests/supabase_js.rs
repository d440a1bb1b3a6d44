//! The official `@supabase/supabase-js` client (tests/js) against a running Atelier.
//! Needs node and `npm ci` in tests/js (`.ci/run` does both); elsewhere it is skipped
//! with a printed reason, but never when `CI=true`.

#[path = "common/billing.rs"]
mod billing_support;
mod common;
#[path = "common/fake_smtp.rs"]
mod fake_smtp;
#[path = "common/fake_stripe.rs"]
mod fake_stripe;

use std::path::Path;
use std::process::Command;

use common::spawn_app_with;

const ANON_KEY: &str = "atelier-anon-key-for-the-js-test";

/// Whether node and tests/js/node_modules are there (never skipped under `CI=true`).
fn node_ready(js: &Path) -> bool {
    let ready = js.join("node_modules/@supabase/supabase-js").exists()
        && Command::new("node").arg("--version").output().is_ok();
    if !ready {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI must run the supabase-js test: install node and run `npm ci` in tests/js"
        );
        eprintln!("skipped: node or tests/js/node_modules missing (run `npm ci` in tests/js)");
    }
    ready
}

/// Runs one node test file against `base`; returns node's report after asserting success.
async fn run_node(js: &Path, file: &'static str, base: String) -> String {
    run_node_with(js, file, base, Vec::new()).await
}

/// As [`run_node`], with more environment variables for the node test.
async fn run_node_with(
    js: &Path,
    file: &'static str,
    base: String,
    env: Vec<(&'static str, String)>,
) -> String {
    let js = js.to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            // Undici keeps an idle keep-alive socket open for a while after the last
            // fetch; the test is over when its tests are.
            .args(["--test", "--test-force-exit", file])
            .current_dir(&js)
            .env("ATELIER_URL", base)
            .env("ATELIER_ANON_KEY", ANON_KEY)
            .envs(env)
            .output()
            .expect("node runs")
    })
    .await
    .expect("join");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "supabase-js test failed:\n{report}");
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supabase_js_signs_up_refreshes_and_runs_a_job() {
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    if !node_ready(&js) {
        return;
    }
    let app = spawn_app_with(|c| {
        c.auth.anon_key = Some(ANON_KEY.into());
        c.providers.local.tiny_output = true;
    })
    .await;
    let report = run_node(&js, "client.test.mjs", app.base.clone()).await;
    assert!(report.contains("# pass 1"), "{report}");
    app.stop().await;
}

/// The reference front end's own `supabase.from(…)` and `supabase.channel(…)` calls
/// (tests/js/reference.test.mjs, each citing its file and line in oscar-47/Oscar2):
/// job polling and the `wait:` channel in both serializers, the credit widget's read
/// and channel, the profile page's transactions after a purchase, the pricing page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_clients_reads_and_channels_work() {
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    if !node_ready(&js) {
        return;
    }
    let app = spawn_app_with(|c| {
        c.auth.anon_key = Some(ANON_KEY.into());
        c.providers.local.tiny_output = true;
        c.providers.local.delay_ms = 700;
    })
    .await;
    // The package set these reads were written against (the old defaults).
    billing_support::fixture_packages(&app);
    let report = run_node(&js, "reference.test.mjs", app.base.clone()).await;
    assert!(report.contains("# pass 4"), "{report}");
    assert!(report.contains("# fail 0"), "{report}");
    app.stop().await;
}

/// The reference's sign-up with e-mail confirmation (`AuthForm.tsx`: `signUp`, then
/// `verifyOtp({type: 'signup'})`), password recovery and `updateUser`, through
/// supabase-js (tests/js/confirm.test.mjs), every code read from a mail the fake SMTP
/// server received.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supabase_js_confirms_recovers_and_updates_the_user_with_mailed_codes() {
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    if !node_ready(&js) {
        return;
    }
    let smtp = fake_smtp::start().await;
    let mailbox = smtp.serve_http().await;
    let app = spawn_app_with(|c| {
        c.auth.anon_key = Some(ANON_KEY.into());
        c.auth.confirm_email = true;
        c.auth.email_interval_secs = 0;
        c.auth.signup_bonus_credits = 30;
        smtp.configure(c);
    })
    .await;
    let env = vec![("MAILBOX_URL", mailbox)];
    let report = run_node_with(&js, "confirm.test.mjs", app.base.clone(), env).await;
    assert!(report.contains("# pass 2"), "{report}");
    assert!(report.contains("# fail 0"), "{report}");
    app.stop().await;
}

/// `supabase.rpc('bind_invite_code' | 'claim_redeem_code', {p_code})` (tests/js/rpc.test.mjs,
/// citing the reference's migration): the reference's answers, and the claim's credits
/// are one ledger grant (the audit is clean, the code used once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supabase_js_calls_the_reference_rpcs() {
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    if !node_ready(&js) {
        return;
    }
    let app = spawn_app_with(|c| c.auth.anon_key = Some(ANON_KEY.into())).await;
    let admin = app.new_admin().await;
    let created = app
        .post_json(
            "/v1/admin/redeem-codes",
            Some(&admin.access_token),
            &serde_json::json!({"code": "JS-RPC-75", "credit_amount": 75, "max_uses": 3}),
        )
        .await;
    assert_eq!(created.status(), 200);
    let env = vec![
        ("ATELIER_REDEEM_CODE", "JS-RPC-75".to_string()),
        ("ATELIER_REDEEM_CREDITS", "75".to_string()),
    ];
    let report = run_node_with(&js, "rpc.test.mjs", app.base.clone(), env).await;
    assert!(report.contains("# pass 1"), "{report}");
    let list = common::json_with_status(
        app.get("/v1/admin/redeem-codes", Some(&admin.access_token))
            .await,
        200,
    )
    .await;
    assert_eq!(list["codes"][0]["used_count"], 1, "{list}");
    billing_support::assert_audit_clean(&app);
    app.stop().await;
}
