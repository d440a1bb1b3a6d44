//! The studio (`/`) and the admin console (`/admin`) in a real browser: the seller's
//! journey, partial failures, every job kind, a server restart under a live job, user
//! text as text, sessions, and the admin's refusal for sellers. Screenshots go to
//! `target/screenshots/`. The harness (and the skip without chromium) is in `browser/`.

mod browser;
mod common;

use std::path::Path;
use std::time::Duration;

use browser::*;
use common::{spawn_app, spawn_app_with, TestApp};
use fantoccini::Locator;
use serde_json::json;

/// Whether the purchase step may skip when the checkout route is missing (it was built
/// on its own branch); billing is merged, so a missing checkout fails the journey.
const CHECKOUT_MAY_BE_MISSING: bool = false;

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
    // The checkout returns to `billing.app_url`: the server's own address here.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let app = spawn_app_with(|c| {
        c.server.bind = format!("127.0.0.1:{port}");
        c.billing.app_url = format!("http://127.0.0.1:{port}");
    })
    .await;
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
    browser.click("#gallery .thumb").await;
    browser
        .until(
            "the full-size view",
            "document.querySelector('#viewer').open && document.querySelector('#viewer-image').naturalWidth === 1024",
        )
        .await;
    assert!(browser
        .text("#viewer-caption")
        .await
        .contains("a red box on a marble table"));
    let download = browser
        .js("return document.querySelector('#viewer-download').getAttribute('download');")
        .await;
    assert!(
        download.as_str().is_some_and(|name| name.ends_with(".png")),
        "{download}"
    );
    browser.click("#viewer-close").await;
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
            browser
                .until(
                    "the payment in the list",
                    "document.querySelectorAll('#payments li').length === 1",
                )
                .await;
            alipay_purchase(&browser, credits, &mut expected).await;
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
    browser
        .until(
            "the pack's payment in the webhook events",
            "document.querySelector('#webhook-events').textContent.includes('checkout.session.completed')",
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

/// The same pack bought with the simulated Alipay: its yuan price on the card, the
/// Alipay page, back with the credits and a CNY payment in the list.
async fn alipay_purchase(browser: &Browser, credits: i64, expected: &mut i64) {
    browser
        .until(
            "the Pay with Alipay button",
            "!!document.querySelector('#packages li[data-type=\"one_time\"] button[data-alipay]')",
        )
        .await;
    let label = browser
        .js("return document.querySelector('#packages li[data-type=\"one_time\"]').children[2].textContent;")
        .await;
    assert!(label.as_str().unwrap_or("").contains('¥'), "{label}");
    browser
        .click("#packages li[data-type=\"one_time\"] button[data-alipay]")
        .await;
    browser
        .until(
            "the simulated Alipay page",
            "location.pathname.startsWith('/dev/alipay/')",
        )
        .await;
    let pay = browser
        .client
        .find(Locator::XPath(
            "//button[contains(., 'Pay')] | //input[@type='submit' and contains(@value, 'Pay')]",
        ))
        .await
        .expect("a Pay button on the Alipay page");
    pay.click().await.expect("pays");
    *expected += credits;
    browser
        .until(
            "back on the studio after Alipay",
            "location.pathname === '/' && !!document.querySelector('#credits-available')",
        )
        .await;
    browser
        .until(
            "the Alipay pack's credits",
            &format!("document.querySelector('#credits-available').textContent === '{expected}'"),
        )
        .await;
    browser
        .until(
            "the CNY payment in the list",
            "document.querySelectorAll('#payments li').length === 2 && document.querySelector('#payments').textContent.includes('CNY')",
        )
        .await;
}

// ---- Accounts and growth: confirmation code, invite, redeem, the console's pages ----

/// The code of the newest confirmation mail to `to`, from the outbox as queued.
fn mailed_code(app: &TestApp, to: &str) -> String {
    let to = to.to_string();
    let text = app
        .running
        .as_ref()
        .expect("running")
        .state
        .db
        .with_conn(move |conn| {
            Ok(conn.query_row(
                "SELECT text_body FROM mail_outbox WHERE to_addr = ?1 AND kind = 'confirmation'
                 ORDER BY created_at DESC LIMIT 1",
                [to],
                |r| r.get::<_, String>(0),
            )?)
        })
        .expect("a confirmation mail");
    let at = text.find("code is ").expect("a code") + "code is ".len();
    text[at..at + 6].to_string()
}

#[tokio::test]
async fn a_seller_confirms_binds_an_invite_redeems_and_the_admin_manages_codes_and_mail() {
    let _one = ONE_BROWSER.lock().await;
    let Some(browser) = Browser::start("the growth journey").await else {
        return;
    };
    let app = spawn_app_with(|c| {
        c.auth.confirm_email = true;
        c.auth.signup_bonus_credits = 30;
    })
    .await;
    let state = &app.running.as_ref().expect("running").state;
    let inviter = email("inviter");
    state
        .auth
        .create_account(&inviter, PASSWORD, json!(null), "authenticated")
        .await
        .expect("inviter");
    let admin = app.new_admin().await;
    let created = app
        .post_json(
            "/v1/admin/redeem-codes",
            Some(&admin.access_token),
            &json!({"code": "SPRING-25", "credit_amount": 25, "max_uses": 3}),
        )
        .await;
    assert_eq!(created.status(), 200);
    let inviter_code = {
        let res = app
            .post_json(
                "/auth/v1/token?grant_type=password",
                None,
                &json!({"email": inviter, "password": PASSWORD}),
            )
            .await;
        let token = res.json::<serde_json::Value>().await.expect("json")["access_token"]
            .as_str()
            .expect("token")
            .to_string();
        let mine = app.get("/v1/invite", Some(&token)).await;
        mine.json::<serde_json::Value>().await.expect("json")["invite_code"]
            .as_str()
            .expect("code")
            .to_string()
    };

    // Sign up, confirm with the mailed code: the bonus comes with the confirmation.
    let seller = email("confirmed");
    browser.goto(&app.url("/")).await;
    browser.sign_in(&seller, true).await;
    browser
        .until(
            "the code form",
            "!document.querySelector('#confirm-form').hidden",
        )
        .await;
    assert!(browser.text("#confirm-sent").await.contains(&seller));
    assert_eq!(browser.js(UNLABELLED).await, json!([]), "code form labels");
    let code = mailed_code(&app, &seller);
    let last = (code.as_bytes()[5] - b'0' + 1) % 10;
    browser
        .fill("#confirm-code", &format!("{}{last}", &code[..5]))
        .await;
    browser.click("#confirm-submit").await;
    browser
        .until(
            "the refusal of a wrong code",
            "!document.querySelector('#confirm-error').hidden",
        )
        .await;
    browser.fill("#confirm-code", &code).await;
    browser.click("#confirm-submit").await;
    browser
        .until(
            "30 credits on confirmation",
            "document.querySelector('#credits-available').textContent === '30'",
        )
        .await;
    browser
        .until(
            "the seller's invite code",
            "/^[A-Z0-9]{8}$/.test(document.querySelector('#invite-code').textContent)",
        )
        .await;

    browser
        .fill("#bind-code", &inviter_code.to_lowercase())
        .await;
    browser.click("#bind-submit").await;
    browser
        .until(
            "the binding",
            "document.querySelector('#bind-result').textContent.includes('Invited with code')",
        )
        .await;
    browser.fill("#redeem-code", "spring-25").await;
    browser.click("#redeem-submit").await;
    browser
        .until(
            "25 redeemed credits",
            "document.querySelector('#credits-available').textContent === '55'",
        )
        .await;
    assert_eq!(browser.text("#redeem-result").await, "25 credits added.");
    browser.fill("#redeem-code", "SPRING-25").await;
    browser.click("#redeem-submit").await;
    browser
        .until(
            "the second claim refused",
            "!document.querySelector('#redeem-error').hidden",
        )
        .await;
    assert_eq!(browser.js(UNLABELLED).await, json!([]), "studio labels");
    browser.screenshots("studio-growth").await;
    browser.click("#sign-out").await;

    // The inviter sees the invitee.
    browser
        .until(
            "the sign-in form",
            "!document.querySelector('#signed-out').hidden",
        )
        .await;
    browser.sign_in(&inviter, false).await;
    browser
        .until(
            "one invitee",
            "document.querySelectorAll('#invitees li').length === 1",
        )
        .await;
    assert!(browser.text("#invitees").await.contains("no purchase yet"));
    browser.click("#sign-out").await;

    // The console: codes (create, deactivate), bindings, the outbox.
    browser.goto(&app.url("/admin")).await;
    browser.fill("#auth-email", &admin.email).await;
    browser.fill("#auth-password", &admin.password).await;
    browser.click("#auth-submit").await;
    browser
        .until(
            "the code with one use",
            "document.querySelector('#redeem-codes tr[data-code=\"SPRING-25\"]')?.textContent.includes('1 / 3')",
        )
        .await;
    browser.fill("#code-text", "AUTUMN").await;
    browser.fill("#code-credits", "10").await;
    browser.fill("#code-uses", "2").await;
    browser.click("#code-submit").await;
    browser
        .until(
            "the new code",
            "document.querySelector('#redeem-codes tr[data-code=\"AUTUMN\"] [data-state]')?.textContent === 'active'",
        )
        .await;
    browser
        .click("#redeem-codes tr[data-code=\"AUTUMN\"] button")
        .await;
    browser
        .until(
            "the code deactivated",
            "document.querySelector('#redeem-codes tr[data-code=\"AUTUMN\"] [data-state]')?.textContent === 'inactive'",
        )
        .await;
    let bindings = browser.text("#invite-bindings").await;
    assert!(
        bindings.contains(&inviter) && bindings.contains(&seller),
        "{bindings}"
    );
    browser
        .until(
            "the confirmation mails in the outbox",
            "document.querySelectorAll('#mail-outbox tr[data-kind=\"confirmation\"]').length === 1",
        )
        .await;
    assert_eq!(browser.js(UNLABELLED).await, json!([]), "console labels");
    browser.screenshots("admin-growth").await;
    browser.close().await;
    app.stop().await;
}
