//! `atelier stripe …` run as an operator would, in a fresh directory: triggered events go
//! through the webhook code and leave a clean audit.

/// `topup_5` of the default packages (1250 credits for $5).
const STARTER_PACK: &str = "0190a000-0000-7000-8000-000000000101";

// ------------------------------------------------------------------ command line

/// Runs `atelier` in `dir` with a clean `ATELIER_*` environment: (success, stdout+stderr).
fn atelier(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_atelier"));
    cmd.current_dir(dir).args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("ATELIER_") {
            cmd.env_remove(name);
        }
    }
    let out = cmd.output().expect("run atelier");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The `available` column of `atelier user list` for `email`.
fn available(list: &str, email: &str) -> i64 {
    let row = list.lines().find(|l| l.contains(email)).unwrap();
    row.split_whitespace().nth(3).unwrap().parse().unwrap()
}

/// `atelier stripe trigger` signs the events Stripe would send and applies them through
/// the webhook code: a purchase, then its refund; `atelier audit` stays clean.
#[test]
fn cli_trigger_checkout_and_refund() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let (ok, text) = atelier(dir.path(), args);
        assert!(ok, "atelier {args:?} failed:\n{text}");
        text
    };
    let email = "buyer@example.com";
    run(&[
        "user",
        "create",
        "--email",
        email,
        "--password",
        "a-long-password",
    ]);
    let out = run(&[
        "stripe",
        "trigger",
        "checkout.session.completed",
        "--email",
        email,
        "--package",
        "topup_5",
    ]);
    let session = out
        .split("session ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_string();
    assert!(session.starts_with("cs_sim_"), "{out}");
    assert_eq!(available(&run(&["user", "list"]), email), 30 + 1250);
    run(&[
        "stripe",
        "trigger",
        "charge.refunded",
        "--payment",
        &session,
        "--amount",
        "200",
    ]);
    assert_eq!(available(&run(&["user", "list"]), email), 30 + 1250 - 500);
    run(&[
        "stripe",
        "trigger",
        "charge.refunded",
        "--payment",
        &session,
    ]);
    assert_eq!(available(&run(&["user", "list"]), email), 30);
    run(&["audit"]);
    let out = run(&[
        "stripe",
        "set-price",
        "--package",
        STARTER_PACK,
        "--currency",
        "hkd",
        "--price",
        "price_hkd_1",
    ]);
    assert!(out.contains("price_hkd_1"), "{out}");
}

/// The subscription events from the command line: a renewal grants the plan again, a
/// deletion cancels; a user without a subscription is refused.
#[test]
fn cli_trigger_subscription_events() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let (ok, text) = atelier(dir.path(), args);
        assert!(ok, "atelier {args:?} failed:\n{text}");
        text
    };
    let email = "subscriber@example.com";
    run(&[
        "user",
        "create",
        "--email",
        email,
        "--password",
        "a-long-password",
    ]);
    let (ok, text) = atelier(
        dir.path(),
        &["stripe", "trigger", "invoice.paid", "--email", email],
    );
    assert!(!ok && text.contains("subscription"), "{text}");
    run(&[
        "stripe",
        "trigger",
        "checkout.session.completed",
        "--email",
        email,
        "--package",
        "monthly",
    ]);
    assert_eq!(available(&run(&["user", "list"]), email), 30 + 2600);
    let out = run(&["stripe", "trigger", "invoice.paid", "--email", email]);
    assert!(out.contains("in_sim_"), "{out}");
    assert_eq!(available(&run(&["user", "list"]), email), 30 + 2600 + 2600);
    run(&[
        "stripe",
        "trigger",
        "customer.subscription.updated",
        "--email",
        email,
        "--status",
        "past_due",
    ]);
    run(&[
        "stripe",
        "trigger",
        "customer.subscription.deleted",
        "--email",
        email,
    ]);
    run(&["audit"]);
    let (ok, text) = atelier(
        dir.path(),
        &["stripe", "trigger", "payout.paid", "--email", email],
    );
    assert!(!ok && text.contains("cannot trigger"), "{text}");
}

/// `atelier config check` hides the Stripe keys.
#[test]
fn config_check_hides_the_stripe_keys() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        "[billing]\nmode = \"stripe\"\nsecret_key = \"sk_test_secret_1\"\nwebhook_secret = \"whsec_secret_2\"\n",
    )
    .unwrap();
    let (ok, text) = atelier(dir.path(), &["config", "check"]);
    assert!(ok, "{text}");
    assert!(text.contains("mode = \"stripe\""), "{text}");
    assert!(
        !text.contains("sk_test_secret_1") && !text.contains("whsec_secret_2"),
        "{text}"
    );
    assert!(text.contains("<hidden>"), "{text}");
}
