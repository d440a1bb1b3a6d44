//! A small scriptable HTTP/1.1 server for fake upstreams, on raw tokio sockets so a test
//! controls the framing byte by byte.
//!
//! It binds `127.0.0.1:0`, records every request (method, target, headers, body, parsed
//! JSON) and answers each from a handler that returns a [`Reply`]: a status, headers, an
//! optional delay before the status line, and a body made of [`Part`]s — byte writes,
//! pauses, [`Gate`]s the test opens, or an abrupt close. Every answer closes the
//! connection afterwards (`Connection: close`), so one connection is one exchange.
//!
//! While answering, the server also watches the socket for the client going away and
//! records when that happened ([`ResponseLog::client_gone_at`]) — the evidence that a
//! client cancelled a stream or gave up on a slow answer.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// Largest request head or body the fake accepts (input images can be large).
const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Position in arrival order (0-based), the key of its [`ResponseLog`].
    pub index: usize,
    /// When the whole request had been read.
    pub at: Instant,
    pub method: String,
    /// Path and query, as sent (`/v1beta/models/x:streamGenerateContent?alt=sse`).
    pub target: String,
    /// Header names in lower case, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body parsed as JSON, if it is JSON.
    pub json: Option<Value>,
}

impl Recorded {
    /// The target without its query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// The query string, if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The JSON body; panics (naming the request) when the body is not JSON.
    pub fn body_json(&self) -> &Value {
        self.json.as_ref().unwrap_or_else(|| {
            panic!(
                "{} {} has no JSON body: {:?}",
                self.method,
                self.target,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// `Authorization: Bearer <token>`'s token.
    pub fn bearer(&self) -> Option<&str> {
        self.header("authorization")?.strip_prefix("Bearer ")
    }
}

/// A latch a response waits at until the test opens it.
#[derive(Clone, Default)]
pub struct Gate(Arc<GateInner>);

#[derive(Default)]
struct GateInner {
    open: AtomicBool,
    notify: Notify,
}

impl Gate {
    pub fn new() -> Gate {
        Gate::default()
    }

    /// Lets every response waiting here (and any that arrives later) go on.
    pub fn open(&self) {
        self.0.open.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    pub fn is_open(&self) -> bool {
        self.0.open.load(Ordering::SeqCst)
    }

    async fn wait(&self) {
        loop {
            let notified = self.0.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_open() {
                return;
            }
            notified.await;
        }
    }
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gate(open: {})", self.is_open())
    }
}

/// One step of a response body.
#[derive(Debug, Clone)]
pub enum Part {
    /// Write these bytes now (one chunk under chunked framing) and flush.
    Bytes(Vec<u8>),
    /// Sleep before the next step.
    Pause(Duration),
    /// Wait until the test opens the gate.
    Wait(Gate),
    /// Close the connection here, mid-body, without finishing the framing.
    Drop,
}

/// How the body's end is marked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length` = all the `Bytes` parts (also those after a `Drop`).
    Length,
    /// `Transfer-Encoding: chunked`, one chunk per `Bytes` part.
    Chunked,
    /// No length: the body ends when the server closes the connection.
    Close,
}

/// A scripted response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Silence before the status line (slow first byte).
    pub delay: Duration,
    pub parts: Vec<Part>,
    pub framing: Framing,
}

impl Reply {
    /// An empty response with `status`.
    pub fn new(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            delay: Duration::ZERO,
            parts: Vec::new(),
            framing: Framing::Length,
        }
    }

    /// A JSON body.
    pub fn json(status: u16, body: &Value) -> Reply {
        Reply::bytes(status, "application/json", body.to_string().into_bytes())
    }

    /// A body of `content_type`, written at once.
    pub fn bytes(status: u16, content_type: &str, body: Vec<u8>) -> Reply {
        Reply::new(status)
            .header("content-type", content_type)
            .write(body)
    }

    /// `text/event-stream` with chunked framing; add the events with [`Reply::write`] etc.
    pub fn event_stream() -> Reply {
        Reply::new(200)
            .header("content-type", "text/event-stream")
            .header("cache-control", "no-cache")
            .framing(Framing::Chunked)
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Waits `delay` before sending anything.
    pub fn delayed(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    pub fn framing(mut self, framing: Framing) -> Reply {
        self.framing = framing;
        self
    }

    /// Appends one write.
    pub fn write(mut self, bytes: impl Into<Vec<u8>>) -> Reply {
        self.parts.push(Part::Bytes(bytes.into()));
        self
    }

    /// Appends `bytes` as two writes, cut after `at` bytes (a line split across reads).
    pub fn write_split(self, bytes: impl Into<Vec<u8>>, at: usize) -> Reply {
        let mut bytes = bytes.into();
        let rest = bytes.split_off(at.min(bytes.len()));
        self.write(bytes).write(rest)
    }

    pub fn pause(mut self, pause: Duration) -> Reply {
        self.parts.push(Part::Pause(pause));
        self
    }

    pub fn wait(mut self, gate: &Gate) -> Reply {
        self.parts.push(Part::Wait(gate.clone()));
        self
    }

    /// Closes the connection at this point of the body.
    pub fn drop_connection(mut self) -> Reply {
        self.parts.push(Part::Drop);
        self
    }

    /// The body bytes this reply would send if nothing stopped it.
    pub fn body_bytes(&self) -> Vec<u8> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Bytes(b) => Some(b.as_slice()),
                _ => None,
            })
            .flatten()
            .copied()
            .collect()
    }
}

/// What happened to the answer of one request.
#[derive(Debug, Clone, Default)]
pub struct ResponseLog {
    /// When the status line went out.
    pub headers_sent_at: Option<Instant>,
    /// How many `Bytes` parts were written completely.
    pub parts_sent: usize,
    /// True while the response waits at a [`Gate`].
    pub waiting_at_gate: bool,
    /// When the response was written to its end (or dropped on purpose).
    pub finished_at: Option<Instant>,
    /// When the client closed the connection before the response was finished.
    pub client_gone_at: Option<Instant>,
}

/// A queue of scripted answers with a fallback, for one fake.
pub type Responder = Box<dyn FnOnce(&Recorded) -> Reply + Send>;
/// An answer computed from the request, used when the queue is empty.
pub type Fallback = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

/// Answers requests from a queue (first in, first out), then from a fallback.
pub struct Script {
    queue: Mutex<VecDeque<Responder>>,
    fallback: Mutex<Fallback>,
}

impl Script {
    pub fn new(fallback: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Script {
        Script {
            queue: Mutex::new(VecDeque::new()),
            fallback: Mutex::new(Arc::new(fallback)),
        }
    }

    /// The next request gets `reply`.
    pub fn push(&self, reply: Reply) {
        self.push_with(move |_| reply);
    }

    /// The next request gets what `f` makes of it.
    pub fn push_with(&self, f: impl FnOnce(&Recorded) -> Reply + Send + 'static) {
        self.queue.lock().unwrap().push_back(Box::new(f));
    }

    /// Requests beyond the queue get what `f` makes of them.
    pub fn set_fallback(&self, f: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) {
        *self.fallback.lock().unwrap() = Arc::new(f);
    }

    /// Every request beyond the queue gets `reply`.
    pub fn always(&self, reply: Reply) {
        self.set_fallback(move |_| reply.clone());
    }

    /// The answer for `req`.
    pub fn next(&self, req: &Recorded) -> Reply {
        let queued = self.queue.lock().unwrap().pop_front();
        match queued {
            Some(f) => f(req),
            None => {
                let fallback = self.fallback.lock().unwrap().clone();
                fallback(req)
            }
        }
    }
}

/// The handler of a [`FakeServer`].
pub type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

struct ServerState {
    handler: Handler,
    requests: Mutex<Vec<Recorded>>,
    logs: Mutex<Vec<ResponseLog>>,
    tasks: Mutex<Vec<AbortHandle>>,
}

/// A running fake; stops (accept loop and open connections) when dropped.
pub struct FakeServer {
    addr: SocketAddr,
    state: Arc<ServerState>,
}

impl FakeServer {
    /// Starts a server answering every request with `handler`.
    pub async fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("fake binds");
        let addr = listener.local_addr().expect("fake address");
        let state = Arc::new(ServerState {
            handler: Arc::new(handler),
            requests: Mutex::new(Vec::new()),
            logs: Mutex::new(Vec::new()),
            tasks: Mutex::new(Vec::new()),
        });
        let accept_state = state.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let conn = tokio::spawn(serve(accept_state.clone(), stream));
                accept_state.tasks.lock().unwrap().push(conn.abort_handle());
            }
        });
        state.tasks.lock().unwrap().push(accept.abort_handle());
        FakeServer { addr, state }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The requests whose path is `path`.
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path() == path)
            .collect()
    }

    pub fn count(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }

    /// What happened to the answer of request `index`.
    pub fn log(&self, index: usize) -> ResponseLog {
        self.state
            .logs
            .lock()
            .unwrap()
            .get(index)
            .cloned()
            .unwrap_or_default()
    }

    /// Polls (every 10 ms, at most `within`) until `check` holds; panics with `what`.
    pub async fn wait_for(
        &self,
        what: &str,
        within: Duration,
        check: impl Fn(&FakeServer) -> bool,
    ) {
        let deadline = Instant::now() + within;
        while !check(self) {
            assert!(
                Instant::now() < deadline,
                "fake upstream: {what} did not happen within {within:?} ({} requests)",
                self.count()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until at least `n` requests arrived and returns them all.
    pub async fn wait_requests(&self, n: usize, within: Duration) -> Vec<Recorded> {
        self.wait_for(&format!("{n} requests"), within, |s| s.count() >= n)
            .await;
        self.requests()
    }

    /// Waits until the client of request `index` went away; returns when it did.
    pub async fn wait_client_gone(&self, index: usize, within: Duration) -> Instant {
        self.wait_for(
            &format!("the client of request {index} disconnecting"),
            within,
            |s| s.log(index).client_gone_at.is_some(),
        )
        .await;
        self.log(index).client_gone_at.expect("gone")
    }

    /// Waits until the answer of request `index` waits at a gate.
    pub async fn wait_at_gate(&self, index: usize, within: Duration) {
        self.wait_for(&format!("request {index} reaching its gate"), within, |s| {
            s.log(index).waiting_at_gate
        })
        .await;
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        for task in self.state.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

/// One connection: read one request, record it, answer it while watching for the client
/// leaving, close.
async fn serve(state: Arc<ServerState>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let Some((method, target, headers, body)) = read_request(&mut rd).await else {
        return;
    };
    let json = serde_json::from_slice(&body).ok();
    let index = {
        let mut requests = state.requests.lock().unwrap();
        let mut logs = state.logs.lock().unwrap();
        let index = requests.len();
        requests.push(Recorded {
            index,
            at: Instant::now(),
            method,
            target,
            headers,
            body,
            json,
        });
        logs.push(ResponseLog::default());
        index
    };
    let request = state.requests.lock().unwrap()[index].clone();
    let reply = (state.handler)(&request);
    let gone = async {
        let mut scratch = [0u8; 256];
        loop {
            match rd.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    };
    let finished = tokio::select! {
        done = write_reply(&state, index, &mut wr, reply) => done,
        _ = gone => false,
    };
    {
        let mut logs = state.logs.lock().unwrap();
        let log = &mut logs[index];
        log.waiting_at_gate = false;
        if finished {
            log.finished_at = Some(Instant::now());
        } else if log.finished_at.is_none() {
            log.client_gone_at = Some(Instant::now());
        }
    }
    let _ = wr.shutdown().await;
}

/// Writes `reply`; false when the client went away before the end.
async fn write_reply(
    state: &ServerState,
    index: usize,
    wr: &mut OwnedWriteHalf,
    reply: Reply,
) -> bool {
    let update = |f: &dyn Fn(&mut ResponseLog)| f(&mut state.logs.lock().unwrap()[index]);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    match reply.framing {
        Framing::Length => {
            head.push_str(&format!("content-length: {}\r\n", reply.body_bytes().len()))
        }
        Framing::Chunked => head.push_str("transfer-encoding: chunked\r\n"),
        Framing::Close => {}
    }
    head.push_str("connection: close\r\n\r\n");
    if wr.write_all(head.as_bytes()).await.is_err() {
        return false;
    }
    update(&|log| log.headers_sent_at = Some(Instant::now()));
    for part in reply.parts {
        match part {
            Part::Bytes(bytes) => {
                let framed = if reply.framing == Framing::Chunked {
                    if bytes.is_empty() {
                        continue; // an empty chunk would end the body
                    }
                    let mut framed = format!("{:x}\r\n", bytes.len()).into_bytes();
                    framed.extend_from_slice(&bytes);
                    framed.extend_from_slice(b"\r\n");
                    framed
                } else {
                    bytes
                };
                if wr.write_all(&framed).await.is_err() || wr.flush().await.is_err() {
                    return false;
                }
                update(&|log| log.parts_sent += 1);
            }
            Part::Pause(pause) => tokio::time::sleep(pause).await,
            Part::Wait(gate) => {
                update(&|log| log.waiting_at_gate = true);
                gate.wait().await;
                update(&|log| log.waiting_at_gate = false);
            }
            Part::Drop => return true,
        }
    }
    if reply.framing == Framing::Chunked && wr.write_all(b"0\r\n\r\n").await.is_err() {
        return false;
    }
    wr.flush().await.is_ok()
}

/// Reads one request: head, then a `Content-Length` or chunked body.
async fn read_request(
    rd: &mut OwnedReadHalf,
) -> Option<(String, String, Vec<(String, String)>, Vec<u8>)> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(pos) = find(&buf, b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > MAX_REQUEST_BYTES || !read_more(rd, &mut buf).await {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut rest = buf.split_off(head_end + 4);
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_string();
    let target = request_line.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        read_chunked(rd, rest).await?
    } else {
        let length: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if length > MAX_REQUEST_BYTES {
            return None;
        }
        while rest.len() < length {
            if !read_more(rd, &mut rest).await {
                return None;
            }
        }
        rest.truncate(length);
        rest
    };
    Some((method, target, headers, body))
}

/// Decodes a chunked body that starts with `buf`.
async fn read_chunked(rd: &mut OwnedReadHalf, mut buf: Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(pos) = find(&buf, b"\r\n") {
                break pos;
            }
            if !read_more(rd, &mut buf).await {
                return None;
            }
        };
        let size_text = String::from_utf8_lossy(&buf[..line_end]).to_string();
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        buf.drain(..line_end + 2);
        if size == 0 {
            return Some(body); // trailers, if any, are ignored
        }
        while buf.len() < size + 2 {
            if body.len() + buf.len() > MAX_REQUEST_BYTES || !read_more(rd, &mut buf).await {
                return None;
            }
        }
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
    }
}

async fn read_more(rd: &mut OwnedReadHalf, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match rd.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

// ---- Image payloads shared by the fakes ----

/// A flat-colour JPEG of `width`×`height`.
pub fn jpeg_bytes(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(width, height, image::Rgb([40, 90, 160]));
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Jpeg,
        )
        .expect("jpeg encodes");
    bytes
}

/// Standard padded base64.
pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes standard base64; panics with the input's start when it is not.
pub fn unb64(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap_or_else(|e| panic!("not base64 ({e}): {}", &text[..text.len().min(40)]))
}

/// The mime type and decoded bytes of a `data:<mime>;base64,<data>` URI.
pub fn parse_data_uri(uri: &str) -> (String, Vec<u8>) {
    let rest = uri
        .strip_prefix("data:")
        .unwrap_or_else(|| panic!("not a data URI: {}", &uri[..uri.len().min(40)]));
    let (mime, data) = rest
        .split_once(";base64,")
        .unwrap_or_else(|| panic!("not a base64 data URI: {}", &uri[..uri.len().min(40)]));
    (mime.to_string(), unb64(data))
}

/// Decoded `(width, height)` of image bytes (PNG or JPEG).
pub fn dimensions(bytes: &[u8]) -> (u32, u32) {
    let img = image::load_from_memory(bytes).expect("an image");
    (img.width(), img.height())
}
