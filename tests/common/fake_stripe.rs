//! A fake Stripe API on 127.0.0.1: checkout and portal sessions in Stripe's wire format
//! (form-encoded requests, bearer auth, Stripe's error body, idempotency-key replay),
//! recording every request; and a webhook signer written independently of Atelier's.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use warp::http::{HeaderMap, StatusCode};
use warp::Filter;

/// The secret key the fake accepts.
pub const SECRET_KEY: &str = "sk_test_fake_123";
/// The webhook secret the tests sign with.
pub const WEBHOOK_SECRET: &str = "whsec_fake_webhook_secret";

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub headers: HeaderMap,
    pub form: Vec<(String, String)>,
    pub body: Bytes,
}

impl Recorded {
    /// A form field's value.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A scripted answer, used before the normal one.
#[derive(Debug, Clone)]
pub struct Scripted {
    pub status: u16,
    pub body: Value,
    pub delay: Duration,
    pub headers: Vec<(&'static str, &'static str)>,
}

#[derive(Default)]
struct Inner {
    requests: Vec<Recorded>,
    script: VecDeque<Scripted>,
    /// Idempotency key → (request body, status, answer bytes).
    replays: HashMap<String, (Bytes, u16, Bytes)>,
    running: HashSet<String>,
    /// Delays before the next normal answers (slow, but executed and stored).
    delays: VecDeque<Duration>,
    counter: u64,
}

/// The running fake.
#[derive(Clone)]
pub struct FakeStripe {
    pub addr: SocketAddr,
    pub base: String,
    inner: Arc<Mutex<Inner>>,
}

impl FakeStripe {
    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// Queues answers given before the normal ones (one per request).
    pub fn script(&self, answers: Vec<Scripted>) {
        self.inner.lock().unwrap().script.extend(answers);
    }

    /// Makes the next normal answer take `delay` (it still executes and is stored).
    pub fn slow_next(&self, delay: Duration) {
        self.inner.lock().unwrap().delays.push_back(delay);
    }

    /// Stripe's error body.
    pub fn error(status: u16, kind: &str, code: &str, message: &str) -> Scripted {
        Scripted {
            status,
            body: json!({"error": {"type": kind, "code": code, "message": message,
                "doc_url": format!("https://stripe.com/docs/error-codes/{code}")}}),
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }
}

/// Starts the fake on 127.0.0.1:0.
pub async fn start() -> FakeStripe {
    let inner = Arc::new(Mutex::new(Inner::default()));
    let state = inner.clone();
    let route = warp::post()
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
        .and(warp::body::bytes())
        .then(
            move |path: warp::path::FullPath, headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move { answer(state, path.as_str().to_string(), headers, body).await }
            },
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(warp::serve(route).incoming(listener).run());
    FakeStripe {
        addr,
        base: format!("http://{addr}"),
        inner,
    }
}

fn reply(status: u16, body: Bytes) -> warp::reply::Response {
    let mut response = warp::reply::Response::new(body.into());
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    response.headers_mut().insert(
        "content-type",
        warp::http::HeaderValue::from_static("application/json"),
    );
    response.headers_mut().insert(
        "request-id",
        warp::http::HeaderValue::from_static("req_fake"),
    );
    response
}

async fn answer(
    state: Arc<Mutex<Inner>>,
    path: String,
    headers: HeaderMap,
    body: Bytes,
) -> warp::reply::Response {
    let form = decode_form(&body);
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let scripted = {
        let mut inner = state.lock().unwrap();
        inner.requests.push(Recorded {
            path: path.clone(),
            headers: headers.clone(),
            form: form.clone(),
            body: body.clone(),
        });
        if headers.get("authorization").and_then(|v| v.to_str().ok())
            != Some(&format!("Bearer {SECRET_KEY}"))
        {
            let e = FakeStripe::error(
                401,
                "invalid_request_error",
                "api_key_invalid",
                "Invalid API Key provided",
            );
            return reply(e.status, Bytes::from(e.body.to_string()));
        }
        if let Some(key) = &key {
            if let Some((sent, status, answer)) = inner.replays.get(key) {
                if sent != &body {
                    let e = FakeStripe::error(
                        400,
                        "idempotency_error",
                        "idempotency_key_in_use",
                        "Keys for idempotent requests can only be used with the same parameters",
                    );
                    return reply(e.status, Bytes::from(e.body.to_string()));
                }
                return reply(*status, answer.clone());
            }
            if !inner.running.insert(key.clone()) {
                let e = FakeStripe::error(
                    409,
                    "idempotency_error",
                    "idempotency_key_in_use",
                    "There is currently another in-progress request using this Idempotency Key",
                );
                return reply(e.status, Bytes::from(e.body.to_string()));
            }
        }
        inner.script.pop_front()
    };
    // Scripted answers stand for failures before Stripe executed the request, which
    // are not stored for replay; normal answers are. The work runs in its own task so
    // that a client giving up (timeout) does not stop it, as with the real Stripe.
    let delay = state.lock().unwrap().delays.pop_front();
    let work = tokio::spawn(async move {
        let (status, answer, store, extra) = match scripted {
            Some(s) => {
                tokio::time::sleep(s.delay).await;
                (s.status, s.body, false, s.headers)
            }
            None => {
                if let Some(delay) = delay {
                    tokio::time::sleep(delay).await;
                }
                let (status, body) = normal(&state, &path, &form);
                (status, body, status != 400, Vec::new())
            }
        };
        let answer = Bytes::from(answer.to_string());
        let mut inner = state.lock().unwrap();
        if let Some(key) = key {
            inner.running.remove(&key);
            // Stripe stores the first outcome once the request started executing (500s
            // too), but not requests that failed validation (400s).
            if store {
                inner.replays.insert(key, (body, status, answer.clone()));
            }
        }
        (status, answer, extra)
    });
    let (status, answer, extra) = work.await.unwrap();
    let mut response = reply(status, answer);
    for (name, value) in extra {
        response
            .headers_mut()
            .insert(name, warp::http::HeaderValue::from_static(value));
    }
    response
}

fn normal(state: &Arc<Mutex<Inner>>, path: &str, form: &[(String, String)]) -> (u16, Value) {
    let field = |k: &str| {
        form.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let n = {
        let mut inner = state.lock().unwrap();
        inner.counter += 1;
        inner.counter
    };
    match path {
        "/v1/checkout/sessions" => {
            let price = field("line_items[0][price]").unwrap_or_default();
            if price.starts_with("price_missing") {
                let e = FakeStripe::error(
                    400,
                    "invalid_request_error",
                    "resource_missing",
                    &format!("No such price: '{price}'"),
                );
                return (e.status, e.body);
            }
            let id = format!("cs_test_fake{n}");
            (
                200,
                json!({"id": id, "object": "checkout.session",
                "url": format!("https://checkout.stripe.test/c/pay/{id}"),
                "mode": field("mode"), "status": "open", "payment_status": "unpaid",
                "amount_total": 2000, "currency": field("metadata[currency]").unwrap_or_else(|| "usd".into()),
                "customer": field("customer"), "customer_email": field("customer_email"),
                "metadata": {"user_id": field("metadata[user_id]"),
                    "package_id": field("metadata[package_id]")}}),
            )
        }
        "/v1/billing_portal/sessions" => {
            let id = format!("bps_fake{n}");
            (
                200,
                json!({"id": id, "object": "billing_portal.session",
                "url": format!("https://billing.stripe.test/p/session/{id}"),
                "customer": field("customer"), "return_url": field("return_url")}),
            )
        }
        other => {
            let e = FakeStripe::error(
                404,
                "invalid_request_error",
                "resource_missing",
                &format!("Unrecognized request URL (POST: {other})"),
            );
            (e.status, e.body)
        }
    }
}

/// Decodes `application/x-www-form-urlencoded` into pairs, in order.
pub fn decode_form(body: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// `Stripe-Signature` for `payload` at `t`, computed here (not with Atelier's code).
pub fn sign(payload: &[u8], secret: &str, t: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(payload);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={hex}")
}

/// Now in unix seconds.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An event envelope as Stripe sends it.
pub fn event(id: &str, kind: &str, created: i64, object: Value) -> Value {
    json!({"id": id, "object": "event", "type": kind, "api_version": "2025-03-31.basil",
        "created": created, "livemode": false, "data": {"object": object},
        "request": {"id": "req_1", "idempotency_key": null}})
}
