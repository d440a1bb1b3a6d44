//! `/rest/v1` over HTTP against the real server: CORS for supabase-js, the PostgREST read
//! grammar on each relation, single-object answers, counts, absolute URLs, spendable
//! credits. Row security: `rest_security.rs`.

#[path = "common/billing.rs"]
mod billing_support;
mod common;
#[path = "common/fake_stripe.rs"]
mod fake_stripe;

use common::{json_with_status, small_png, spawn_app, spawn_app_with, TestApp, TestUser};
use reqwest::Method;
use serde_json::{json, Value};

const OBJECT: &str = "application/vnd.pgrst.object+json";
const STARTER_PACK: &str = "0190a000-0000-7000-8000-000000000004";
const PRO_SUB: &str = "0190a000-0000-7000-8000-000000000002";

async fn rest(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    app.client
        .get(app.url(&format!("/rest/v1/{path}")))
        .bearer_auth(token)
        .send()
        .await
        .expect("request")
}

async fn rest_single(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    app.client
        .get(app.url(&format!("/rest/v1/{path}")))
        .bearer_auth(token)
        .header("accept", OBJECT)
        .send()
        .await
        .expect("request")
}

async fn finished_job(app: &TestApp, user: &TestUser, count: u32) -> String {
    let body = json!({"model": "local", "prompt": "a red box", "imageCount": count,
                      "productImage": small_png()});
    let id = app
        .start_job("generate-image", &user.access_token, &body)
        .await;
    let job = app.wait_job(&user.access_token, &id).await;
    assert_eq!(job["status"], "success", "{job}");
    id
}

/// A purchase through a simulated checkout (`function`: `create-credit-checkout`,
/// `create-onetime-checkout` or `create-alipay-checkout`): its page's Pay.
async fn simulated_purchase(app: &TestApp, token: &str, function: &str, package: &str) {
    let session = json_with_status(
        app.call(
            function,
            token,
            &json!({"packageId": package, "returnTo": "/pricing"}),
        )
        .await,
        200,
    )
    .await;
    // The simulated page's Pay: `<page>/pay`, keeping the page's query (Alipay's
    // carries the return path).
    let page = session["url"].as_str().unwrap();
    let (path, query) = page.split_once('?').unwrap_or((page, ""));
    let paid = app
        .client
        .post(format!("{path}/pay?{query}"))
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 303, "{function}");
}

/// A preflight for every header and method supabase-js sends is allowed, and the
/// answer exposes `Content-Range` and `x-request-id` to the page.
#[tokio::test]
async fn cors_allows_what_supabase_js_sends() {
    let app =
        spawn_app_with(|c| c.server.cors_origins = vec!["http://localhost:3000".into()]).await;
    let headers = "apikey, authorization, x-client-info, x-supabase-api-version, prefer, range, \
                   accept-profile, content-profile, content-type, x-retry-count";
    for method in ["GET", "HEAD", "POST", "PATCH", "PUT", "DELETE"] {
        let res = app
            .client
            .request(Method::OPTIONS, app.url("/rest/v1/generation_jobs"))
            .header("origin", "http://localhost:3000")
            .header("access-control-request-method", method)
            .header("access-control-request-headers", headers)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{method}: {:?}", res.text().await);
        let allowed = res.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .to_uppercase();
        assert!(allowed.contains(method), "{method} not in {allowed}");
    }
    let res = app
        .client
        .request(Method::OPTIONS, app.url("/auth/v1/signup"))
        .header("origin", "http://localhost:3000")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", headers)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        200,
        "the sign-up preflight the issue saw refused"
    );
    let res = app
        .client
        .get(app.url("/rest/v1/packages"))
        .header("origin", "http://localhost:3000")
        .send()
        .await
        .unwrap();
    let exposed = res.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(
        exposed.contains("content-range") && exposed.contains("x-request-id"),
        "{exposed}"
    );
    app.stop().await;
}

/// The reference's job poll (`useWaitForJob.ts` L32: `select('*').eq('id', id).single()`)
/// answers the full row as one object, with absolute image URLs; selects, filters,
/// orders, counts and ranges follow PostgREST.
#[tokio::test]
async fn generation_jobs_read_like_postgrest() {
    let app = spawn_app_with(|c| {
        c.providers.local.tiny_output = true;
        c.server.public_url = Some("https://studio.example.com".into());
    })
    .await;
    let user = app.new_user().await;
    let token = user.access_token.as_str();
    let first = finished_job(&app, &user, 2).await;
    let second = finished_job(&app, &user, 1).await;

    let res = rest_single(
        &app,
        &format!("generation_jobs?select=*&id=eq.{first}"),
        token,
    )
    .await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with(OBJECT));
    let job: Value = res.json().await.unwrap();
    assert_eq!(job["id"], first.as_str());
    assert_eq!(job["user_id"], user.id.as_str());
    assert_eq!(job["type"], "IMAGE_GEN");
    assert_eq!(job["status"], "success");
    assert_eq!(job["cost_amount"], 2);
    assert_eq!(job["payload"]["prompt"], "a red box");
    let url = job["result_url"].as_str().unwrap();
    assert!(
        url.starts_with("https://studio.example.com/storage/v1/object/public/"),
        "{url}"
    );
    for image in job["result_data"]["images"].as_array().unwrap() {
        assert!(image["url"]
            .as_str()
            .unwrap()
            .starts_with("https://studio.example.com/"));
    }
    assert!(job["created_at"].as_str().unwrap().ends_with('Z'));

    // .single() on no row: 406 PGRST116 in PostgREST's body.
    let res = rest_single(&app, "generation_jobs?id=eq.nope", token).await;
    assert_eq!(res.status(), 406);
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["code"], "PGRST116");
    assert!(
        err["message"].is_string() && err.get("details").is_some() && err.get("hint").is_some()
    );

    // Columns, filters and order.
    let rows = json_with_status(
        rest(&app, "generation_jobs?select=id,status,cost:cost_amount&order=created_at.desc.nullslast&status=eq.success&type=in.(IMAGE_GEN,STYLE_REPLICATE)", token).await,
        200,
    )
    .await;
    assert_eq!(
        rows,
        json!([
            {"id": second, "status": "success", "cost": 1},
            {"id": first, "status": "success", "cost": 2},
        ])
    );
    let rows = json_with_status(
        rest(&app, "generation_jobs?select=id&cost_amount=gt.1", token).await,
        200,
    )
    .await;
    assert_eq!(rows, json!([{"id": first}]));
    let rows = json_with_status(
        rest(&app, &format!("generation_jobs?select=id&or=(id.eq.{second},cost_amount.gte.5)&error_code=is.null"), token).await,
        200,
    )
    .await;
    assert_eq!(rows, json!([{"id": second}]));

    // The reference history page: .order(created_at desc).range(0, 0) with a count.
    let res = app
        .client
        .get(app.url("/rest/v1/generation_jobs?select=id&order=created_at.desc&offset=0&limit=1"))
        .bearer_auth(token)
        .header("prefer", "count=exact")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(res.headers()["content-range"], "0-0/2");
    assert_eq!(res.json::<Value>().await.unwrap(), json!([{"id": second}]));
    // A Range header, and HEAD for a count only (`select('id', {count, head: true})`).
    let res = app
        .client
        .get(app.url("/rest/v1/generation_jobs?select=id&order=created_at.asc"))
        .bearer_auth(token)
        .header("range", "1-5")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-range"], "1-1/*");
    assert_eq!(res.json::<Value>().await.unwrap(), json!([{"id": second}]));
    let res = app
        .client
        .head(app.url("/rest/v1/generation_jobs?select=id&status=eq.success"))
        .bearer_auth(token)
        .header("prefer", "count=exact")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-range"], "0-1/2");

    // Unknown relation, column, operator and bad values: PostgREST's codes.
    let res = rest(&app, "model_generations", token).await;
    assert_eq!(res.status(), 404);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "PGRST205");
    for (query, status, code) in [
        ("generation_jobs?select=nope", 400, "42703"),
        ("generation_jobs?nope=eq.1", 400, "42703"),
        ("generation_jobs?order=nope.desc", 400, "42703"),
        ("generation_jobs?id=between.1", 400, "PGRST100"),
        ("generation_jobs?cost_amount=gt.lots", 400, "22P02"),
        ("generation_jobs?payload=eq.x", 400, "42883"),
        ("generation_jobs?select=id,users(*)", 400, "PGRST200"),
    ] {
        let res = rest(&app, query, token).await;
        assert_eq!(res.status(), status, "{query}");
        assert_eq!(res.json::<Value>().await.unwrap()["code"], code, "{query}");
    }
    app.stop().await;
}

/// The credit widget's read (`useCredits.ts` L97) shows what can be spent: held credits
/// are out of the bucket they were held from, and the two columns add up to
/// `/v1/me`'s `available`; the profile page's transactions read (`ProfilePage.tsx` L78)
/// sees the purchase; the pricing page's packages read (`PricingPage.tsx` L190).
#[tokio::test]
async fn profiles_transactions_and_packages() {
    let app = spawn_app_with(|c| c.providers.local.delay_ms = 1500).await;
    // The package set these reads were written against (the old defaults).
    billing_support::fixture_packages(&app);
    let user = app.new_user().await;
    let token = user.access_token.as_str();
    let profile_path = format!(
        "profiles?select=subscription_credits,purchased_credits,subscription_plan,subscription_status&id=eq.{}",
        user.id
    );
    let profile = json_with_status(rest_single(&app, &profile_path, token).await, 200).await;
    assert_eq!(
        profile,
        json!({"subscription_credits": 0, "purchased_credits": 30,
                               "subscription_plan": null, "subscription_status": null})
    );

    // A subscription (simulated checkout) adds subscription credits and the plan.
    simulated_purchase(&app, token, "create-credit-checkout", PRO_SUB).await;
    let profile = json_with_status(rest_single(&app, &profile_path, token).await, 200).await;
    assert_eq!(profile["subscription_credits"], 1320);
    assert_eq!(profile["subscription_plan"], "Professional");
    assert_eq!(profile["subscription_status"], "active");

    // A job holding 3 credits: taken out of the subscription bucket while it runs.
    let body =
        json!({"model": "local", "prompt": "p", "imageCount": 3, "productImage": small_png()});
    let job = app.start_job("generate-image", token, &body).await;
    let held = json_with_status(rest_single(&app, &profile_path, token).await, 200).await;
    let me = app.credits(token).await;
    assert_eq!(me["held"], 3, "{me}");
    assert_eq!(held["subscription_credits"], 1320 - 3);
    assert_eq!(held["purchased_credits"], 30);
    let sum = held["subscription_credits"].as_i64().unwrap()
        + held["purchased_credits"].as_i64().unwrap();
    assert_eq!(sum, me["available"].as_i64().unwrap());
    app.wait_job(token, &job).await;

    // A credit pack, then the profile page's transactions read, exactly as written.
    simulated_purchase(&app, token, "create-onetime-checkout", STARTER_PACK).await;
    let rows = json_with_status(
        rest(&app, &format!("transactions?select=plan,amount,credits,created_at&user_id=eq.{}&status=eq.completed&amount=gt.0&order=created_at.desc&limit=20", user.id), token).await,
        200,
    )
    .await;
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["plan"], "Starter Pack");
    assert_eq!(rows[0]["amount"], 5.0);
    assert_eq!(rows[0]["credits"], 250);
    assert_eq!(rows[1]["plan"], "Professional");

    // Packages, with the anon key alone as the pricing page reads them.
    let packages = json_with_status(
        app.client
            .get(app.url("/rest/v1/packages?select=id,name,type,price_usd,credits,first_sub_bonus,stripe_price_id,stripe_price_id_cny,stripe_price_id_hkd,is_popular,sort_order&active=eq.true&order=sort_order"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    let packages = packages.as_array().unwrap();
    assert_eq!(packages.len(), 6);
    assert_eq!(packages[0]["name"], "Starter");
    assert_eq!(packages[0]["price_usd"], 5.0);
    assert_eq!(packages[1]["is_popular"], true);
    app.stop().await;
}

/// `transactions.payment_method` as the reference writes it: `stripe` for a Stripe
/// checkout, `alipay` for an Alipay direct order (amount in yuan, `currency` cny, no
/// Stripe event; `alipay-notify/index.ts` L133–152), and the inviter's reward as a row
/// of its own (`payment_method` `invite`, `plan` `invite_reward`, amount 0;
/// `stripe-webhook/index.ts` L74–96), which the client's `amount=gt.0` reads leave out.
#[tokio::test]
async fn transactions_name_the_payment_method() {
    let app = spawn_app().await;
    billing_support::fixture_packages(&app);
    let (inviter, buyer) = (app.new_user().await, app.new_user().await);
    let code = json_with_status(
        rest_single(
            &app,
            &format!("profiles?select=invite_code&id=eq.{}", inviter.id),
            &inviter.access_token,
        )
        .await,
        200,
    )
    .await["invite_code"]
        .as_str()
        .expect("an invite code")
        .to_string();
    let bound = app
        .client
        .post(app.url("/rest/v1/rpc/bind_invite_code"))
        .bearer_auth(&buyer.access_token)
        .json(&json!({ "p_code": code }))
        .send()
        .await
        .unwrap();
    assert_eq!(json_with_status(bound, 200).await["success"], true);

    // A Stripe credit pack (simulated checkout), then the same pack through Alipay.
    let token = buyer.access_token.as_str();
    simulated_purchase(&app, token, "create-onetime-checkout", STARTER_PACK).await;
    simulated_purchase(&app, token, "create-alipay-checkout", STARTER_PACK).await;

    let select = "select=plan,amount,currency,payment_method,credits,status,stripe_event_id";
    let rows = json_with_status(
        rest(
            &app,
            &format!("transactions?{select}&order=created_at.asc,id.asc"),
            token,
        )
        .await,
        200,
    )
    .await;
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["payment_method"], "stripe");
    assert_eq!(rows[0]["currency"], "usd");
    assert!(rows[0]["stripe_event_id"].is_string(), "{:?}", rows[0]);
    assert_eq!(
        rows[1],
        json!({"plan": "Starter Pack", "amount": 36.0, "currency": "cny",
               "payment_method": "alipay", "credits": 250, "status": "completed",
               "stripe_event_id": null})
    );
    let alipay = json_with_status(
        rest(
            &app,
            "transactions?select=id&payment_method=eq.alipay",
            token,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(alipay.as_array().unwrap().len(), 1);

    // The inviter's reward (10 % of the pack's 250 credits, with the first checkout).
    let mine = json_with_status(
        rest(
            &app,
            &format!("transactions?{select},user_id"),
            &inviter.access_token,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        mine,
        json!([{"plan": "invite_reward", "amount": 0.0, "currency": "usd",
                "payment_method": "invite", "credits": 25, "status": "completed",
                "stripe_event_id": null, "user_id": inviter.id}])
    );
    let paid_rows = json_with_status(
        rest(
            &app,
            &format!(
                "transactions?select=id&user_id=eq.{}&status=eq.completed&amount=gt.0&limit=1",
                inviter.id
            ),
            &inviter.access_token,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(paid_rows, json!([]));
    // Neither sees the other's rows.
    let theirs = json_with_status(
        rest(
            &app,
            &format!("transactions?select=id&user_id=eq.{}", inviter.id),
            token,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(theirs, json!([]));
    billing_support::assert_audit_clean(&app);
    app.stop().await;
}
