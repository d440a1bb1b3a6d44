//! The official `@supabase/supabase-js` client (tests/js) against a running Atelier.
//! Needs node and `npm ci` in tests/js (`.ci/run` does both); elsewhere it is skipped
//! with a printed reason, but never when `CI=true`.

mod common;

use std::path::Path;
use std::process::Command;

use common::spawn_app_with;

const ANON_KEY: &str = "atelier-anon-key-for-the-js-test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supabase_js_signs_up_refreshes_and_runs_a_job() {
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    let ready = js.join("node_modules/@supabase/supabase-js").exists()
        && Command::new("node").arg("--version").output().is_ok();
    if !ready {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI must run the supabase-js test: install node and run `npm ci` in tests/js"
        );
        eprintln!("skipped: node or tests/js/node_modules missing (run `npm ci` in tests/js)");
        return;
    }
    let app = spawn_app_with(|c| {
        c.auth.anon_key = Some(ANON_KEY.into());
        c.providers.local.tiny_output = true;
    })
    .await;
    let base = app.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .args(["--test", "client.test.mjs"])
            .current_dir(&js)
            .env("ATELIER_URL", base)
            .env("ATELIER_ANON_KEY", ANON_KEY)
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
    assert!(report.contains("# pass 1"), "{report}");
    app.stop().await;
}
