//! Files: signed upload URLs, uploads sniffed and capped, objects served with ETag,
//! ranges and HEAD, keys that cannot escape the storage root.

mod common;

use std::io::{Read, Write};

use common::{json_with_status, png_bytes, spawn_app_with, TestApp};
use serde_json::{json, Value};

async fn sts(app: &TestApp, token: &str, body: Value) -> Value {
    json_with_status(app.call("get-oss-sts", token, &body).await, 200).await
}

async fn put(app: &TestApp, url: &str, bytes: Vec<u8>) -> reqwest::Response {
    app.client.put(url).body(bytes).send().await.unwrap()
}

/// Upload → read back byte-identical (GET, HEAD, range, conditional GET).
#[tokio::test]
async fn uploads_come_back_byte_identical() {
    let app = spawn_app_with(|_| {}).await;
    let user = app.new_user().await;
    let grant = sts(
        &app,
        &user.access_token,
        json!({"prefix": "products", "bucket": "uploads"}),
    )
    .await;
    assert_eq!(grant["provider"], "local");
    assert_eq!(grant["uploadMethod"], "PUT");
    assert_eq!(grant["bucket"], "uploads");
    assert_eq!(grant["pathPrefix"], "products");
    for empty in [
        "region",
        "accessKeyId",
        "policy",
        "signature",
        "securityToken",
    ] {
        assert_eq!(grant[empty], "", "{empty}");
    }
    let key = grant["objectKey"].as_str().unwrap();
    assert!(key.starts_with(&format!("{}/products/", user.id)), "{key}");

    let png = png_bytes(64, 48, true);
    let stored = json_with_status(
        put(&app, grant["uploadUrl"].as_str().unwrap(), png.clone()).await,
        200,
    )
    .await;
    assert_eq!(stored["key"], key);
    let url = stored["url"].as_str().unwrap();
    assert!(url.ends_with(&format!("/storage/v1/object/public/uploads/{key}")));

    let got = app.client.get(url).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-type"], "image/png");
    let etag = got.headers()["etag"].to_str().unwrap().to_string();
    assert!(got.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age"));
    assert_eq!(got.bytes().await.unwrap().to_vec(), png);

    let head = app.client.head(url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        png.len().to_string().as_str()
    );

    let part = app
        .client
        .get(url)
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 10-19/{}", png.len()).as_str()
    );
    assert_eq!(part.bytes().await.unwrap().to_vec(), png[10..20].to_vec());
    let bad = app
        .client
        .get(url)
        .header("range", "bytes=999999-")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 416);

    let same = app
        .client
        .get(url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), 304);

    // The uploaded photo is a valid product image for a job.
    let body = json!({"model": "local", "prompt": "a box", "productImage": url});
    json_with_status(
        app.call("generate-image", &user.access_token, &body).await,
        200,
    )
    .await;
    app.stop().await;
}

/// Not an image → 415; over the limit → 413; the object is not written.
#[tokio::test]
async fn uploads_are_sniffed_and_capped() {
    let app = spawn_app_with(|c| c.storage.upload_max_bytes = 4096).await;
    let user = app.new_user().await;
    let grant = sts(&app, &user.access_token, json!({"prefix": "p"})).await;
    let upload_url = grant["uploadUrl"].as_str().unwrap();
    let res = put(&app, upload_url, b"GIF89a not allowed".to_vec()).await;
    common::assert_envelope(res, 415, "BAD_REQUEST").await;
    let res = put(&app, upload_url, png_bytes(200, 200, true)).await;
    common::assert_envelope(res, 413, "BAD_REQUEST").await;
    let object = format!(
        "{}/storage/v1/object/public/temp/{}",
        app.base,
        grant["objectKey"].as_str().unwrap()
    );
    let res = app.client.get(object).send().await.unwrap();
    common::assert_envelope(res, 404, "NOT_FOUND").await;
    app.stop().await;
}

/// A forged, altered or expired upload URL is 403; bad get-oss-sts bodies are 400.
#[tokio::test]
async fn upload_urls_are_signed_and_expire() {
    let app = spawn_app_with(|_| {}).await;
    let user = app.new_user().await;
    let grant = sts(
        &app,
        &user.access_token,
        json!({"prefix": "p", "expiresIn": 60}),
    )
    .await;
    let upload_url = grant["uploadUrl"].as_str().unwrap().to_string();
    let png = png_bytes(8, 8, false);
    let expires = grant["expire"].as_i64().unwrap();
    for forged in [
        upload_url.replace("/temp/", "/uploads/"),
        upload_url.replace(
            &format!("expires={expires}"),
            &format!("expires={}", expires + 3600),
        ),
        upload_url.replace("&sig=", "&sig=AAAA"),
        upload_url.split('?').next().unwrap().to_string(),
    ] {
        let res = put(&app, &forged, png.clone()).await;
        common::assert_envelope(res, 403, "FORBIDDEN").await;
    }
    // An expired URL: sign one that ended a second ago with the server's own signer.
    let signer = &app.running.as_ref().unwrap().state.upload_signer;
    let key = format!("{}/p/late.png", user.id);
    let past = expires - 3600;
    let sig = signer.sign("temp", &key, past, 10_485_760);
    let late = format!(
        "{}/storage/v1/object/upload/temp/{key}?expires={past}&max=10485760&sig={sig}",
        app.base
    );
    let res = put(&app, &late, png.clone()).await;
    common::assert_envelope(res, 403, "FORBIDDEN").await;

    // Forgiving as the reference (get-oss-sts/index.ts L45–49): expiresIn is clamped,
    // prefix defaults to temp/uploads, unknown fields are ignored.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for (body, lifetime, prefix) in [
        (json!({"prefix": "p", "expiresIn": 59}), 60, "p"),
        (json!({"prefix": "p", "expiresIn": 7200}), 3600, "p"),
        (json!({"prefix": "", "surprise": true}), 900, "temp/uploads"),
        (json!({}), 900, "temp/uploads"),
    ] {
        let grant = sts(&app, &user.access_token, body.clone()).await;
        let expire = grant["expire"].as_i64().unwrap();
        assert!((expire - now - lifetime).abs() <= 5, "{body}: {grant}");
        assert_eq!(grant["pathPrefix"], prefix, "{body}");
    }
    // Strict where safety is at stake: the bucket and the key.
    for bad in [
        json!({"prefix": "p", "bucket": "generated"}),
        json!({"prefix": "p", "key": "../../etc/passwd"}),
    ] {
        let res = app.call("get-oss-sts", &user.access_token, &bad).await;
        common::assert_envelope(res, 400, "BAD_REQUEST").await;
    }
    let res = app
        .post_json("/functions/v1/get-oss-sts", None, &json!({"prefix": "p"}))
        .await;
    common::assert_envelope(res, 401, "UNAUTHORIZED").await;
    app.stop().await;
}

/// A key with spaces and non-ASCII letters is percent-encoded in the URLs Atelier hands
/// out, and the same object comes back.
#[tokio::test]
async fn keys_with_spaces_and_unicode_round_trip() {
    let app = spawn_app_with(|c| c.providers.local.tiny_output = true).await;
    let user = app.new_user().await;
    let grant = sts(
        &app,
        &user.access_token,
        json!({"prefix": "my products", "bucket": "uploads", "key": "été photo #1.png"}),
    )
    .await;
    let key = grant["objectKey"].as_str().unwrap().to_string();
    assert_eq!(key, format!("{}/été photo #1.png", user.id));
    let upload_url = grant["uploadUrl"].as_str().unwrap();
    assert!(
        upload_url.contains("/%C3%A9t%C3%A9%20photo%20%231.png?"),
        "{upload_url}"
    );
    let png = png_bytes(16, 16, true);
    let stored = json_with_status(put(&app, upload_url, png.clone()).await, 200).await;
    assert_eq!(stored["key"], key.as_str());
    let url = stored["url"].as_str().unwrap();
    let got = app.client.get(url).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().to_vec(), png);
    let body = json!({"model": "local", "prompt": "a box", "productImage": url});
    let job = app
        .run_job(&user.access_token, "generate-image", &body)
        .await;
    assert_eq!(job["status"], "success", "{job}");
    app.stop().await;
}

/// Keys with `..`, NUL or backslashes never reach the file system: 400.
/// (Multi-threaded: the raw socket below blocks its thread while the server answers.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_keys_cannot_escape_the_storage_root() {
    let app = spawn_app_with(|_| {}).await;
    std::fs::write(app.data_dir.join("secret.txt"), b"do not serve").unwrap();
    for path in [
        "/storage/v1/object/public/uploads/../../secret.txt",
        "/storage/v1/object/public/uploads/a/../../../secret.txt",
        "/storage/v1/object/public/uploads/a%00b",
        "/storage/v1/object/public/uploads/a\\b",
        "/storage/v1/object/public/uploads/%2e%2e/%2e%2e/secret.txt",
        "/storage/v1/object/public/uploads/a%5cb",
        "/storage/v1/object/public/uploads/%2Fetc%2Fpasswd",
    ] {
        // A raw request line, so that no client normalises the path first.
        let mut stream = std::net::TcpStream::connect(app.addr).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let status = answer.split_whitespace().nth(1).unwrap_or("");
        assert!(status == "400", "{path}: {answer}");
        assert!(!answer.contains("do not serve"), "{path}");
    }
    let res = app
        .get(
            "/storage/v1/object/public/uploads/..%2F..%2Fsecret.txt",
            None,
        )
        .await;
    assert_eq!(res.status().as_u16(), 400);
    app.stop().await;
}

/// Serves `body` as image/png to every request on a loopback port, on a thread.
fn serve_png(body: Vec<u8>) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = [0u8; 2048];
            let _ = stream.read(&mut request);
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    addr
}

async fn run_remote_image_job(app: &TestApp, url: &str) -> Value {
    let user = app.new_user().await;
    let body = json!({"model": "local", "prompt": "a box", "productImage": url});
    let ack = json_with_status(
        app.call("generate-image", &user.access_token, &body).await,
        200,
    )
    .await;
    app.wait_job(&user.access_token, ack["job_id"].as_str().unwrap())
        .await
}

/// Remote product photos go through the SSRF guard: a loopback URL is refused (the
/// unit says why) unless `allow_private_fetch` is set for local development.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_images_are_fetched_through_the_ssrf_guard() {
    let addr = serve_png(png_bytes(32, 32, true));
    let url = format!("http://{addr}/product.png");

    let guarded = spawn_app_with(|c| c.providers.local.tiny_output = true).await;
    let job = run_remote_image_job(&guarded, &url).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error_code"], "IMAGE_INPUT_SOURCE_MISSING");
    let error = &job["result_data"]["units"][0]["error"];
    assert_eq!(error["details"]["reason"], "address_blocked", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("127.0.0.1"),
        "{error}"
    );
    guarded.stop().await;

    let open = spawn_app_with(|c| {
        c.providers.local.tiny_output = true;
        c.storage.allow_private_fetch = true;
    })
    .await;
    let job = run_remote_image_job(&open, &url).await;
    assert_eq!(job["status"], "success", "{job}");
    open.stop().await;
}

/// Sends `head` (and `body`) on a raw socket and reads one answer: status and body. The
/// read times out after 10 s, so a server that waits for a body it was never sent fails.
fn raw_exchange(addr: std::net::SocketAddr, head: String, body: Vec<u8>) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some((head, rest)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse::<usize>().ok());
            if length.is_some_and(|n| rest.len() >= n) {
                let status = head
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse()
                    .unwrap_or(0);
                return (status, rest.to_string());
            }
        }
        match stream.read(&mut buf) {
            Ok(0) => panic!("connection closed before a whole answer: {text}"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("no answer ({e}); the server waited for the body: {text}"),
        }
    }
}

/// Over the limit → 413 without the server waiting for, or keeping, the whole body: a
/// declared 1 GB body is refused before any of it is sent, and a chunked body as soon
/// as it passes the limit (its end is never sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_uploads_are_refused_while_streaming() {
    let app = spawn_app_with(|c| c.storage.upload_max_bytes = 4096).await;
    let user = app.new_user().await;
    let grant = sts(&app, &user.access_token, json!({"prefix": "p"})).await;
    let upload_url = grant["uploadUrl"].as_str().unwrap();
    let target = upload_url.strip_prefix(&app.base).unwrap().to_string();
    let addr = app.addr;

    let head = format!(
        "PUT {target} HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1000000000\r\n\r\n"
    );
    let (status, body) = tokio::task::spawn_blocking(move || raw_exchange(addr, head, Vec::new()))
        .await
        .unwrap();
    assert_eq!(status, 413, "{body}");
    let envelope: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(envelope["error"]["code"], "BAD_REQUEST", "{body}");

    let mut chunk = png_bytes(8, 8, false);
    chunk.resize(4097, 0);
    let mut bytes = format!("{:x}\r\n", chunk.len()).into_bytes();
    bytes.extend_from_slice(&chunk);
    let head = format!(
        "PUT {target} HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let (status, body) = tokio::task::spawn_blocking(move || raw_exchange(addr, head, bytes))
        .await
        .unwrap();
    assert_eq!(status, 413, "{body}");

    let object = format!(
        "{}/storage/v1/object/public/temp/{}",
        app.base,
        grant["objectKey"].as_str().unwrap()
    );
    let res = app.client.get(object).send().await.unwrap();
    common::assert_envelope(res, 404, "NOT_FOUND").await;
    app.stop().await;
}

/// CRC-32 (ISO-HDLC), as PNG chunks use.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A valid, tiny PNG whose header declares `width`×`height` 8-bit grey pixels: a
/// decompression bomb in shape (50000×50000 would be 2.5 GB once decoded).
fn png_declaring(width: u32, height: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    // A zlib stream of the first rows' filter bytes and zero pixels, stored.
    chunk(
        &mut png,
        b"IDAT",
        &[
            0x78, 0x01, 0x01, 0x04, 0x00, 0xFB, 0xFF, 0, 0, 0, 0, 0x00, 0x04, 0x00, 0x01,
        ],
    );
    chunk(&mut png, b"IEND", &[]);
    png
}

/// A decompression bomb as product photo — a data URI, an uploaded object, a remote
/// URL — fails the unit with IMAGE_INPUT_TOO_LARGE (never decoded), and the credits
/// held for it are released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decompression_bombs_fail_with_image_input_too_large() {
    let bomb = png_declaring(50_000, 50_000);
    assert!(bomb.len() < 100, "{} bytes", bomb.len());
    let remote = serve_png(bomb.clone());
    let app = spawn_app_with(|c| {
        c.providers.local.tiny_output = true;
        c.storage.allow_private_fetch = true;
    })
    .await;
    let user = app.new_user().await;
    let grant = sts(&app, &user.access_token, json!({"prefix": "bombs"})).await;
    let uploaded = json_with_status(
        put(&app, grant["uploadUrl"].as_str().unwrap(), bomb.clone()).await,
        200,
    )
    .await;
    let before = app.credits(&user.access_token).await;

    let too_many_pixels = common::png_data_uri(&png_declaring(8000, 6000));
    for reference in [
        common::png_data_uri(&bomb),
        uploaded["url"].as_str().unwrap().to_string(),
        format!("http://{remote}/bomb.png"),
        too_many_pixels,
    ] {
        let body = json!({"model": "local", "prompt": "a box", "productImage": reference});
        let job = app
            .run_job(&user.access_token, "generate-image", &body)
            .await;
        let shown: String = reference.chars().take(60).collect();
        assert_eq!(job["status"], "failed", "{shown}: {job}");
        assert_eq!(job["error_code"], "IMAGE_INPUT_TOO_LARGE", "{shown}: {job}");
        let error = &job["result_data"]["units"][0]["error"];
        assert_eq!(error["code"], "IMAGE_INPUT_TOO_LARGE", "{error}");
        assert_eq!(error["details"]["reason"], "too_many_pixels", "{error}");
        let kinds = app
            .ledger_kinds(&user.access_token, job["id"].as_str().unwrap())
            .await;
        assert_eq!(kinds, ["hold", "release"], "{shown}: {job}");
    }
    let after = app.credits(&user.access_token).await;
    assert_eq!(after["available"], before["available"], "{after}");
    assert_eq!(after["held"], 0, "{after}");
    app.stop().await;
}
