//! Live job updates over SSE and the `process-generation-job` compatibility nudge.

mod common;

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::{json_with_status, spawn_app_with, TestApp};
use serde_json::{json, Value};

/// A tiny real PNG as a data URI.
fn product_png() -> String {
    let img = image::RgbaImage::from_pixel(8, 8, image::Rgba([200, 30, 30, 255]));
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .unwrap();
    format!("data:image/png;base64,{}", STANDARD.encode(bytes))
}

fn image_body(count: i64) -> Value {
    json!({"model": "local", "prompt": "a red box", "productImage": product_png(),
           "imageCount": count})
}

/// Units that take a while, one at a time.
fn slow(c: &mut atelier::config::Config) {
    c.providers.local.tiny_output = true;
    c.providers.local.delay_ms = 150;
    c.providers.local.concurrency = 1;
}

/// One SSE event: `(event, id, data)`.
type Event = (String, String, Value);

/// Reads an SSE response to its end (or panics after `limit`), returning its events and
/// the comment lines it saw.
async fn read_events(mut res: reqwest::Response, limit: Duration) -> (Vec<Event>, Vec<String>) {
    let mut buffer = String::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let chunk = tokio::time::timeout_at(deadline, res.chunk())
            .await
            .expect("the stream should end after the terminal state")
            .expect("stream readable");
        match chunk {
            Some(bytes) => buffer.push_str(std::str::from_utf8(&bytes).unwrap()),
            None => break,
        }
    }
    let (mut events, mut comments) = (Vec::new(), Vec::new());
    for block in buffer.split("\n\n").filter(|b| !b.is_empty()) {
        let (mut event, mut id, mut data) = (String::new(), String::new(), String::new());
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event: ") {
                event = v.into();
            } else if let Some(v) = line.strip_prefix("id: ") {
                id = v.into();
            } else if let Some(v) = line.strip_prefix("data: ") {
                data.push_str(v);
            } else if let Some(v) = line.strip_prefix(':') {
                comments.push(v.trim().to_string());
            } else {
                panic!("unexpected SSE line {line:?}");
            }
        }
        if !data.is_empty() {
            events.push((event, id, serde_json::from_str(&data).unwrap()));
        }
    }
    (events, comments)
}

async fn events_request(
    app: &TestApp,
    token: &str,
    id: &str,
    last: Option<&str>,
) -> reqwest::Response {
    let mut req = app
        .client
        .get(app.url(&format!("/v1/jobs/{id}/events")))
        .bearer_auth(token);
    if let Some(last) = last {
        req = req.header("last-event-id", last);
    }
    req.send().await.unwrap()
}

async fn submit(app: &TestApp, token: &str, body: &Value) -> String {
    let ack = json_with_status(
        app.post_json("/functions/v1/generate-image", Some(token), body)
            .await,
        200,
    )
    .await;
    ack["job_id"].as_str().unwrap().to_string()
}

/// Every change arrives as `event: job` with a growing id, the units move forward only,
/// and the stream closes after the terminal snapshot.
#[tokio::test]
async fn events_follow_a_job_to_its_end() {
    let app = spawn_app_with(slow).await;
    let user = app.new_user().await;
    let id = submit(&app, &user.access_token, &image_body(3)).await;
    let res = events_request(&app, &user.access_token, &id, None).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let (events, _) = read_events(res, Duration::from_secs(20)).await;
    assert!(
        events.len() >= 4,
        "expected several updates, got {}",
        events.len()
    );
    let mut last_id = 0;
    let mut last_done = 0;
    for (event, id_line, job) in &events {
        assert_eq!(event, "job");
        let version: i64 = id_line.parse().unwrap();
        assert!(
            version > last_id,
            "ids must grow: {version} after {last_id}"
        );
        assert_eq!(job["version"], version);
        let done = job["units"]["succeeded"].as_i64().unwrap();
        assert!(done >= last_done, "units never go backwards");
        last_id = version;
        last_done = done;
    }
    let (_, _, last) = events.last().unwrap();
    assert_eq!(last["status"], "success");
    assert_eq!(last["units"]["succeeded"], 3);
    assert_eq!(last["result_data"]["images"].as_array().unwrap().len(), 3);
    let middle: Vec<&Value> = events.iter().map(|(_, _, j)| j).collect();
    assert!(
        middle.iter().any(|j| j["units"]["running"] == 1),
        "a running unit was reported"
    );

    // Resuming with the last id of a finished job gives nothing new and ends at once;
    // an older id gives the terminal snapshot once.
    let res = events_request(&app, &user.access_token, &id, Some(&last_id.to_string())).await;
    let (again, _) = read_events(res, Duration::from_secs(5)).await;
    assert!(again.is_empty(), "{again:?}");
    let res = events_request(&app, &user.access_token, &id, Some("1")).await;
    let (again, _) = read_events(res, Duration::from_secs(5)).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].2["status"], "success");
    app.stop().await;
}

/// Another user's job, an unknown job and a missing token are refused before streaming.
#[tokio::test]
async fn events_are_private() {
    let app = spawn_app_with(slow).await;
    let (a, b) = (app.new_user().await, app.new_user().await);
    let id = submit(&app, &a.access_token, &image_body(1)).await;
    let res = events_request(&app, &b.access_token, &id, None).await;
    common::assert_envelope(res, 404, "NOT_FOUND").await;
    let res = events_request(
        &app,
        &a.access_token,
        "0190a000-0000-7000-8000-000000000000",
        None,
    )
    .await;
    common::assert_envelope(res, 404, "NOT_FOUND").await;
    let res = app.get(&format!("/v1/jobs/{id}/events"), None).await;
    common::assert_envelope(res, 401, "UNAUTHORIZED").await;
    app.stop().await;
}

/// The nudge answers at once with where the job stands; it needs the owner or the
/// worker secret.
#[tokio::test]
async fn process_generation_job_is_a_harmless_nudge() {
    let secret = "worker-secret-0123456789";
    let app = spawn_app_with(|c| {
        slow(c);
        c.providers.local.delay_ms = 600;
        c.queue.worker_secret = Some(secret.into());
    })
    .await;
    let (a, b) = (app.new_user().await, app.new_user().await);
    let id = submit(&app, &a.access_token, &image_body(3)).await;
    let nudge = |token: Option<String>, job: String| {
        let req = app
            .client
            .post(app.url("/functions/v1/process-generation-job"))
            .json(&json!({"job_id": job}));
        match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    };
    let answer = json_with_status(
        nudge(Some(a.access_token.clone()), id.clone())
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(answer["ok"], true);
    assert_eq!(answer["job_id"], id);
    assert_eq!(answer["task_type"], "IMAGE_GEN");
    assert_eq!(answer["status"], "processed", "{answer}");

    let res = nudge(Some(b.access_token.clone()), id.clone())
        .send()
        .await
        .unwrap();
    common::assert_envelope(res, 404, "NOT_FOUND").await;
    let res = nudge(None, id.clone()).send().await.unwrap();
    common::assert_envelope(res, 401, "UNAUTHORIZED").await;
    let res = nudge(None, id.clone())
        .header("x-worker-secret", "wrong-secret-000000000")
        .send()
        .await
        .unwrap();
    common::assert_envelope(res, 401, "UNAUTHORIZED").await;
    let res = nudge(None, id.clone())
        .header("x-worker-secret", secret)
        .send()
        .await
        .unwrap();
    assert_eq!(json_with_status(res, 200).await["job_id"], id);
    let res = nudge(Some(a.access_token.clone()), "no-such-job".into())
        .send()
        .await
        .unwrap();
    common::assert_envelope(res, 404, "NOT_FOUND").await;

    let res = events_request(&app, &a.access_token, &id, None).await;
    read_events(res, Duration::from_secs(20)).await;
    let answer = json_with_status(
        nudge(Some(a.access_token.clone()), id.clone())
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(answer["status"], "already_terminal");
    app.stop().await;
}
