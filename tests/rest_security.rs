//! Row security of `/rest/v1` over HTTP: owners only, the anon key sees public relations
//! only, an admin user is not widened, the service-role key (from `atelier keys`) reads
//! everything, writes are refused with nothing changed, hostile input is bound or
//! refused and never answers 5xx.

mod common;

use std::process::Command;

use atelier::auth::jwt::{JwtKeys, SERVICE_ROLE};
use common::{small_png, spawn_app_with, TestApp};
use serde_json::{json, Value};

const ANON: &str = "anon-key-for-the-rest-tests";

async fn get(app: &TestApp, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = app.client.get(app.url(&format!("/rest/v1/{path}")));
    if let Some(token) = token {
        req = req.bearer_auth(token).header("apikey", ANON);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn ids(app: &TestApp, path: &str, token: Option<&str>) -> Vec<String> {
    let (status, body) = get(app, path, token).await;
    assert_eq!(status, 200, "{path}: {body}");
    body.as_array()
        .expect("rows")
        .iter()
        .map(|r| r["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn service_key(app: &TestApp) -> String {
    let secret = std::fs::read_to_string(app.data_dir.join("jwt_secret")).expect("jwt secret");
    JwtKeys::new(secret.trim().as_bytes())
        .sign_key(SERVICE_ROLE, 1)
        .expect("signed")
}

async fn job(app: &TestApp, token: &str) -> String {
    let body = json!({"model": "local", "prompt": "p", "productImage": small_png()});
    let id = app.start_job("generate-image", token, &body).await;
    app.wait_job(token, &id).await;
    id
}

#[tokio::test]
async fn users_see_only_their_own_rows() {
    let app = spawn_app_with(|c| {
        c.auth.anon_key = Some(ANON.into());
        c.providers.local.tiny_output = true;
    })
    .await;
    let a = app.new_user().await;
    let b = app.new_user().await;
    let admin = app.new_admin().await;
    let (ta, tb) = (a.access_token.as_str(), b.access_token.as_str());
    let job_a = job(&app, ta).await;
    let job_b = job(&app, tb).await;

    // Jobs: no filter, by id, by in.(), by or=, by user_id.
    assert_eq!(
        ids(&app, "generation_jobs", Some(ta)).await,
        [job_a.as_str()]
    );
    assert!(
        ids(&app, &format!("generation_jobs?id=eq.{job_b}"), Some(ta))
            .await
            .is_empty()
    );
    assert_eq!(
        ids(
            &app,
            &format!("generation_jobs?id=in.({job_a},{job_b})"),
            Some(ta)
        )
        .await,
        [job_a.as_str()]
    );
    assert_eq!(
        ids(
            &app,
            &format!("generation_jobs?or=(id.eq.{job_b},id.eq.{job_a})"),
            Some(ta)
        )
        .await,
        [job_a.as_str()]
    );
    assert!(ids(
        &app,
        &format!("generation_jobs?user_id=eq.{}", b.id),
        Some(ta)
    )
    .await
    .is_empty());
    assert!(ids(
        &app,
        &format!("generation_jobs?or=(user_id.eq.{},id.neq.x)", b.id),
        Some(ta)
    )
    .await
    .iter()
    .all(|id| *id == job_a));
    // Profiles and transactions.
    assert_eq!(ids(&app, "profiles", Some(ta)).await, [a.id.as_str()]);
    assert!(ids(&app, &format!("profiles?id=eq.{}", b.id), Some(ta))
        .await
        .is_empty());
    assert!(
        ids(&app, &format!("transactions?user_id=eq.{}", b.id), Some(ta))
            .await
            .is_empty()
    );
    // An admin user's token is not widened.
    assert_eq!(
        ids(&app, "profiles", Some(&admin.access_token)).await,
        [admin.id.as_str()]
    );
    assert!(ids(&app, "generation_jobs", Some(&admin.access_token))
        .await
        .is_empty());

    // The anon key (and no credential at all): public relations only.
    for token in [Some(ANON), None] {
        assert!(ids(&app, "generation_jobs", token).await.is_empty());
        assert!(ids(&app, "profiles", token).await.is_empty());
        assert!(ids(&app, "transactions", token).await.is_empty());
        assert_eq!(ids(&app, "packages", token).await.len(), 6);
    }
    // A forged or expired token is 401 in PostgREST's shape, not anonymous.
    let forged = JwtKeys::new(b"not-the-server-secret-not-the-server-secret")
        .sign_key(SERVICE_ROLE, 1)
        .unwrap();
    let (status, body) = get(&app, "generation_jobs", Some(&forged)).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("PGRST301")));

    // The service-role key reads everyone's rows.
    let service = service_key(&app);
    let all = ids(&app, "generation_jobs?order=created_at.asc", Some(&service)).await;
    assert_eq!(all, [job_a.clone(), job_b.clone()]);
    assert_eq!(ids(&app, "profiles", Some(&service)).await.len(), 3);
    // ... but is not a user on Atelier's own API.
    assert_eq!(app.get("/v1/me", Some(&service)).await.status(), 401);
    app.stop().await;
}

/// POST, PATCH, PUT and DELETE are refused in PostgREST's shape and change nothing,
/// whoever sends them (the reference's own policy let a user PATCH its credits).
#[tokio::test]
async fn writes_are_refused_and_change_nothing() {
    let app = spawn_app_with(|c| c.providers.local.tiny_output = true).await;
    let user = app.new_user().await;
    let token = user.access_token.as_str();
    let job_id = job(&app, token).await;
    let service = service_key(&app);
    let before_profile = get(&app, &format!("profiles?id=eq.{}", user.id), Some(token)).await;
    let before_job = get(
        &app,
        &format!("generation_jobs?id=eq.{job_id}"),
        Some(token),
    )
    .await;
    for who in [token, service.as_str()] {
        for method in ["POST", "PATCH", "PUT", "DELETE"] {
            for path in [
                format!("profiles?id=eq.{}", user.id),
                format!("generation_jobs?id=eq.{job_id}"),
                "packages".to_string(),
                "transactions".to_string(),
            ] {
                let res = app
                    .client
                    .request(
                        method.parse().unwrap(),
                        app.url(&format!("/rest/v1/{path}")),
                    )
                    .bearer_auth(who)
                    .header("content-type", "application/json")
                    .header("prefer", "return=representation")
                    .body(r#"{"purchased_credits": 100000, "status": "success", "price_usd": 0}"#)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 403, "{method} {path}");
                let body: Value = res.json().await.unwrap();
                assert_eq!(body["code"], "42501", "{method} {path}: {body}");
            }
        }
    }
    assert_eq!(
        get(&app, &format!("profiles?id=eq.{}", user.id), Some(token)).await,
        before_profile
    );
    assert_eq!(
        get(
            &app,
            &format!("generation_jobs?id=eq.{job_id}"),
            Some(token)
        )
        .await,
        before_job
    );
    assert_eq!(app.credits(token).await["purchased"], 30 - 1);
    app.stop().await;
}

/// SQL-looking values are bound (they match nothing); SQL-looking names are refused;
/// 300 generated query strings never answer 5xx and never leak another user's row.
#[tokio::test]
async fn hostile_queries_are_bound_or_refused_never_5xx() {
    let app = spawn_app_with(|c| c.providers.local.tiny_output = true).await;
    let a = app.new_user().await;
    let b = app.new_user().await;
    let job_b = job(&app, &b.access_token).await;
    let token = a.access_token.as_str();
    for value in [
        "1' OR '1'='1",
        "1;DROP TABLE users;--",
        "x\") OR 1=1 --",
        "%27%20OR%201%3D1",
        "ünïcødé’",
        "\u{0}",
    ] {
        let path = format!(
            "generation_jobs?id=eq.{}",
            url::form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>()
        );
        assert!(ids(&app, &path, Some(token)).await.is_empty(), "{value}");
    }
    for path in [
        "generation_jobs?select=id;drop%20table%20users",
        "generation_jobs?select=id--",
        "generation_jobs?order=id;delete",
        "generation_jobs?id%3B--=eq.1",
        "generation_jobs?%22id%22=eq.1",
        "generation_jobs?select=(select%20email%20from%20users)",
    ] {
        let (status, body) = get(&app, path, Some(token)).await;
        assert!(status == 400, "{path}: {status} {body}");
        assert!(body["code"].is_string(), "{path}: {body}");
    }
    // Still there: nothing was executed.
    assert_eq!(
        ids(&app, "generation_jobs", Some(&b.access_token)).await,
        [job_b.as_str()]
    );

    let pieces = [
        "select=*",
        "select=id,status",
        "select=",
        "select=a:b",
        "select=*,id",
        "id=eq.",
        "id=eq.x",
        "id=in.(",
        "id=in.()",
        "id=in.(a,\"b\")",
        "id=is.null",
        "id=is.maybe",
        "cost_amount=gt.1e999",
        "cost_amount=lt.-1",
        "created_at=gte.2020-01-01",
        "created_at=lt.not-a-date",
        "order=id.desc",
        "order=.asc",
        "order=id.asc.nullsfirst",
        "limit=0",
        "limit=99999999999999999999",
        "offset=-3",
        "or=(id.eq.1,and(status.eq.x))",
        "or=(",
        "or=()",
        "and=(id.neq.1)",
        "not.or=(id.eq.1)",
        "status=like.*succ*",
        "status=ilike.SUCC*",
        "payload=is.null",
        "result_data=eq.{}",
        "user_id=eq.",
        "%00=eq.1",
        "select=id&select=status",
        "version=not.in.(1,2)",
        "=",
        "&&&",
        "type=eq.%25",
    ];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..300 {
        let n = 1 + (next() % 4) as usize;
        let query: Vec<&str> = (0..n)
            .map(|_| pieces[(next() % pieces.len() as u64) as usize])
            .collect();
        let relation = ["generation_jobs", "profiles", "transactions", "packages"][i % 4];
        let path = format!("{relation}?{}", query.join("&"));
        let (status, body) = get(&app, &path, Some(token)).await;
        assert!(status < 500, "{path}: {status} {body}");
        if status == 200 {
            for row in body.as_array().into_iter().flatten() {
                assert_ne!(row.get("id"), Some(&json!(job_b)), "{path}");
                assert_ne!(row.get("user_id"), Some(&json!(b.id)), "{path}");
            }
        }
    }
    app.stop().await;
}

/// `atelier keys` prints the anon key and a service-role key the server accepts.
#[tokio::test]
async fn atelier_keys_prints_a_working_service_role_key() {
    let app = spawn_app_with(|c| c.auth.anon_key = Some(ANON.into())).await;
    let out = Command::new(env!("CARGO_BIN_EXE_atelier"))
        .arg("keys")
        .env("ATELIER_DATA_DIR", &app.data_dir)
        .env("ATELIER_AUTH_ANON_KEY", ANON)
        .output()
        .expect("atelier keys runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    let anon_at = lines
        .iter()
        .position(|l| l.starts_with("anon key"))
        .unwrap();
    assert_eq!(lines[anon_at + 1], ANON);
    let service_at = lines
        .iter()
        .position(|l| l.starts_with("service_role key"))
        .unwrap();
    let service = lines[service_at + 1];
    let (status, body) = get(&app, "profiles", Some(service)).await;
    assert_eq!(status, 200, "{body}");
    let user = app.new_user().await;
    let (_, body) = get(&app, "profiles", Some(service)).await;
    assert!(body
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["id"] == user.id.as_str()));
    let (status, _) = unknown_rpc(&app, service).await;
    assert_eq!(status, 404);
    app.stop().await;
}

/// An unknown procedure is PostgREST's 404.
async fn unknown_rpc(app: &TestApp, token: &str) -> (u16, Value) {
    let res = app
        .client
        .post(app.url("/rest/v1/rpc/no_such_function"))
        .bearer_auth(token)
        .json(&json!({"code": "X"}))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "PGRST202");
    (status, body)
}
