//! `/realtime/v1/websocket` over real WebSockets against the real server: fan-out to many
//! channels (each update once, in commit order), other users' rows never heard, the
//! heartbeat timeout and token expiry closing as Realtime does.

mod common;

use std::time::Duration;

use common::{small_png, spawn_app_with, TestApp};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn connect(app: &TestApp, vsn: &str) -> Ws {
    let url = format!(
        "ws://{}/realtime/v1/websocket?apikey=anon&vsn={vsn}",
        app.addr
    );
    let (ws, _) = connect_async(url).await.expect("websocket connects");
    ws
}

async fn send(ws: &mut Ws, frame: Value) {
    ws.send(Message::text(frame.to_string()))
        .await
        .expect("send");
}

/// The next text frame as a v1 object (within `wait`), or `None` on close/timeout.
async fn next(ws: &mut Ws, wait: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(wait, ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return serde_json::from_str(&text).ok(),
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => return None,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// Joins `topic` for every generation_jobs change with `filter`; returns the join reply and
/// the system messages that follow it.
async fn join(ws: &mut Ws, topic: &str, token: &str, filter: Option<&str>) -> (Value, Vec<Value>) {
    let mut spec = json!({"event": "*", "schema": "public", "table": "generation_jobs"});
    if let Some(filter) = filter {
        spec["filter"] = json!(filter);
    }
    send(
        ws,
        json!({"topic": topic, "event": "phx_join", "ref": "1", "join_ref": "1",
               "payload": {"config": {"postgres_changes": [spec]}, "access_token": token}}),
    )
    .await;
    let reply = next(ws, Duration::from_secs(5)).await.expect("join reply");
    let mut systems = vec![next(ws, Duration::from_secs(5))
        .await
        .expect("system message")];
    while let Some(frame) = next(ws, Duration::from_millis(30)).await {
        assert_eq!(frame["event"], "system", "{frame}");
        systems.push(frame);
    }
    (reply, systems)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_channels_hear_every_update_once_in_order() {
    let app = spawn_app_with(|c| {
        c.providers.local.tiny_output = true;
        c.providers.local.delay_ms = 250;
        c.providers.local.concurrency = 1;
    })
    .await;
    let a = app.new_user().await;
    let b = app.new_user().await;
    let filter = format!("user_id=eq.{}", a.id);

    let mut sockets = Vec::new();
    for i in 0..200 {
        let mut ws = connect(&app, "1.0.0").await;
        let (reply, systems) = join(
            &mut ws,
            &format!("realtime:wait:{i}"),
            &a.access_token,
            Some(&filter),
        )
        .await;
        assert_eq!(reply["event"], "phx_reply");
        assert_eq!(reply["payload"]["status"], "ok", "{reply}");
        let binding = &reply["payload"]["response"]["postgres_changes"][0];
        assert!(binding["id"].is_u64(), "{reply}");
        assert_eq!(binding["filter"], filter.as_str());
        assert_eq!(systems[0]["payload"]["status"], "ok");
        sockets.push(ws);
    }
    // User B: a filter on A's job is refused in a system message; no filter hears nothing.
    let mut spy = connect(&app, "2.0.0").await;
    send(&mut spy, json!(["1", "1", "realtime:spy", "phx_join",
        {"config": {"postgres_changes": [{"event": "*", "schema": "public", "table": "generation_jobs", "filter": filter}]},
         "access_token": b.access_token}])).await;
    let reply = next(&mut spy, Duration::from_secs(5)).await.expect("reply");
    assert_eq!(reply[3], "phx_reply");
    assert_eq!(reply[4]["status"], "ok");
    let mut warned = false;
    while let Some(frame) = next(&mut spy, Duration::from_millis(200)).await {
        warned |= frame[3] == "system" && frame[4]["status"] == "error";
    }
    assert!(warned, "the join says why B will hear nothing");
    send(&mut spy, json!(["2", "2", "realtime:spy-all", "phx_join",
        {"config": {"postgres_changes": [{"event": "*", "schema": "public", "table": "generation_jobs"}]},
         "access_token": b.access_token}])).await;
    let reply = next(&mut spy, Duration::from_secs(5)).await.expect("reply");
    assert_eq!(
        (reply[3].as_str(), reply[4]["status"].as_str()),
        (Some("phx_reply"), Some("ok"))
    );
    while next(&mut spy, Duration::from_millis(100)).await.is_some() {}

    // The job starts once every channel is listening: all hear its INSERT and UPDATEs.
    let body =
        json!({"model": "local", "prompt": "p", "imageCount": 4, "productImage": small_png()});
    let job = app
        .start_job("generate-image", &a.access_token, &body)
        .await;
    let collect = |mut ws: Ws, job: String| async move {
        let mut versions = Vec::new();
        loop {
            let frame = next(&mut ws, Duration::from_secs(20))
                .await
                .expect("an update");
            assert_eq!(frame["event"], "postgres_changes", "{frame}");
            let data = &frame["payload"]["data"];
            let kind = if versions.is_empty() {
                "INSERT"
            } else {
                "UPDATE"
            };
            assert_eq!(data["type"], kind, "{frame}");
            assert_eq!(data["table"], "generation_jobs");
            assert_eq!(data["record"]["id"], job.as_str());
            assert!(data["columns"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["name"] == "result_data"));
            versions.push(data["record"]["version"].as_i64().unwrap());
            if data["record"]["status"] != "processing" {
                assert_eq!(data["record"]["status"], "success");
                assert!(data["record"]["result_url"]
                    .as_str()
                    .unwrap()
                    .starts_with("http://"));
                return versions;
            }
        }
    };
    let runs: Vec<_> = sockets
        .into_iter()
        .map(|ws| tokio::spawn(collect(ws, job.clone())))
        .collect();
    let mut all = Vec::new();
    for run in runs {
        all.push(run.await.expect("socket task"));
    }
    let first = &all[0];
    assert!(
        first.windows(2).all(|w| w[0] < w[1]),
        "in commit order, once: {first:?}"
    );
    assert!(first.len() >= 2, "several updates: {first:?}");
    assert!(
        all.iter().all(|v| v == first),
        "every channel heard the same updates"
    );
    // B heard nothing at all.
    assert!(next(&mut spy, Duration::from_millis(300)).await.is_none());
    app.stop().await;
}

#[tokio::test]
async fn heartbeats_keep_a_socket_open_and_silence_closes_it() {
    let app = spawn_app_with(|c| c.server.realtime_heartbeat_timeout_secs = 1).await;
    let mut quiet = connect(&app, "1.0.0").await;
    let mut alive = connect(&app, "1.0.0").await;
    for i in 0..6 {
        send(
            &mut alive,
            json!({"topic": "phoenix", "event": "heartbeat", "payload": {}, "ref": i.to_string()}),
        )
        .await;
        let reply = next(&mut alive, Duration::from_secs(2))
            .await
            .expect("heartbeat reply");
        assert_eq!(reply["payload"]["status"], "ok");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // 1.8 s of silence: the quiet socket was closed.
    assert!(next(&mut quiet, Duration::from_millis(500)).await.is_none());
    assert!(matches!(
        quiet.next().await,
        None | Some(Err(_)) | Some(Ok(Message::Close(_)))
    ));
    app.stop().await;
}

#[tokio::test]
async fn an_expired_token_closes_the_channel() {
    let app = spawn_app_with(|c| c.auth.access_token_ttl_secs = 2).await;
    let user = app.new_user().await;
    let mut ws = connect(&app, "1.0.0").await;
    let (reply, _) = join(&mut ws, "realtime:profile", &user.access_token, None).await;
    assert_eq!(reply["payload"]["status"], "ok");
    let system = next(&mut ws, Duration::from_secs(4))
        .await
        .expect("expiry message");
    assert_eq!(system["event"], "system");
    assert_eq!(system["payload"]["message"], "Token has expired");
    let close = next(&mut ws, Duration::from_secs(1))
        .await
        .expect("phx_close");
    assert_eq!(close["event"], "phx_close");
    assert_eq!(close["topic"], "realtime:profile");
    // A bad token is refused at the join.
    send(
        &mut ws,
        json!({"topic": "realtime:x", "event": "phx_join", "ref": "2", "join_ref": "2",
        "payload": {"config": {"postgres_changes": []}, "access_token": "garbage"}}),
    )
    .await;
    let reply = next(&mut ws, Duration::from_secs(2)).await.expect("reply");
    assert_eq!(reply["payload"]["status"], "error");
    app.stop().await;
}

/// A client whose socket drops (no close frame) while its job runs, and that comes back
/// after the job ended: nothing is replayed on the new socket, its next read
/// (`useWaitForJob.ts` L32's `.single()`) has the job as it ended, and changes after the
/// rejoin reach it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_drops_and_rejoins_reads_the_current_state() {
    let app = spawn_app_with(|c| {
        c.providers.local.tiny_output = true;
        c.providers.local.delay_ms = 400;
    })
    .await;
    let user = app.new_user().await;
    let filter = format!("user_id=eq.{}", user.id);
    let mut ws = connect(&app, "1.0.0").await;
    let (reply, _) = join(&mut ws, "realtime:wait", &user.access_token, Some(&filter)).await;
    assert_eq!(reply["payload"]["status"], "ok", "{reply}");
    let body =
        json!({"model": "local", "prompt": "p", "imageCount": 2, "productImage": small_png()});
    let job = app
        .start_job("generate-image", &user.access_token, &body)
        .await;
    let first = next(&mut ws, Duration::from_secs(10))
        .await
        .expect("the job's first change");
    assert_eq!(first["payload"]["data"]["record"]["id"], job.as_str());
    assert_eq!(first["payload"]["data"]["record"]["status"], "processing");
    // The network goes: the TCP connection ends without a close frame.
    drop(ws);
    let ended = app.wait_job(&user.access_token, &job).await;
    assert_eq!(ended["status"], "success", "{ended}");

    let mut ws = connect(&app, "1.0.0").await;
    let (reply, _) = join(&mut ws, "realtime:wait", &user.access_token, Some(&filter)).await;
    assert_eq!(reply["payload"]["status"], "ok", "{reply}");
    assert!(
        next(&mut ws, Duration::from_millis(500)).await.is_none(),
        "nothing is replayed on a rejoin"
    );
    let res = app
        .client
        .get(app.url(&format!("/rest/v1/generation_jobs?select=*&id=eq.{job}")))
        .bearer_auth(&user.access_token)
        .header("accept", "application/vnd.pgrst.object+json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let row: Value = res.json().await.unwrap();
    assert_eq!(row["status"], "success", "{row}");
    assert!(row["result_url"].as_str().unwrap().starts_with("http://"));
    assert_eq!(row["version"], ended["version"]);

    // The rejoined channel hears what happens next, to the end.
    let second = app
        .start_job("generate-image", &user.access_token, &body)
        .await;
    loop {
        let frame = next(&mut ws, Duration::from_secs(10))
            .await
            .expect("the second job's changes");
        let record = &frame["payload"]["data"]["record"];
        assert_eq!(record["id"], second.as_str(), "{frame}");
        if record["status"] == "success" {
            break;
        }
    }
    app.stop().await;
}
