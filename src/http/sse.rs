//! Server-Sent Events: a response whose body is fed frame by frame by a producer task,
//! with a keep-alive comment while the producer is silent. When the client goes away the
//! receiving side is dropped and the producer's next send (or [`SseSender::closed`])
//! tells it to stop.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use warp::http::HeaderValue;
use warp::reply::Response;
use warp::Reply;

/// Silence after which a keep-alive comment is sent.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The producer's end of an event stream.
pub struct SseSender {
    tx: mpsc::Sender<Bytes>,
    last_write: Instant,
}

/// A new stream: the sender for the producer and the response to return.
pub fn channel() -> (SseSender, Response) {
    let (tx, rx) = mpsc::channel(16);
    let mut response = warp::reply::stream(Frames(rx)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert("cache-control", HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    (
        SseSender {
            tx,
            last_write: Instant::now(),
        },
        response,
    )
}

/// One event frame: optional `event:` and `id:` lines, then `data:`.
pub fn frame(event: Option<&str>, id: Option<&str>, data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + 32);
    if let Some(event) = event {
        out.push_str("event: ");
        out.push_str(event);
        out.push('\n');
    }
    if let Some(id) = id {
        out.push_str("id: ");
        out.push_str(id);
        out.push('\n');
    }
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

impl SseSender {
    /// Sends a frame; false once the client has gone.
    pub async fn send(&mut self, frame: Bytes) -> bool {
        self.last_write = Instant::now();
        self.tx.send(frame).await.is_ok()
    }

    /// When the next keep-alive comment is due.
    pub fn keep_alive_at(&self) -> Instant {
        self.last_write + KEEP_ALIVE
    }

    /// Sends `: keep-alive`; false once the client has gone.
    pub async fn keep_alive(&mut self) -> bool {
        self.send(Bytes::from_static(b": keep-alive\n\n")).await
    }

    /// Resolves when the client has gone.
    pub async fn closed(&self) {
        self.tx.closed().await
    }
}

/// The response body: frames as the producer sends them; ends when it drops its sender.
struct Frames(mpsc::Receiver<Bytes>);

impl Stream for Frames {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|frame| frame.map(Ok))
    }
}

#[cfg(test)]
mod tests {
    use super::frame;

    #[test]
    fn frames_have_a_space_after_each_field_name() {
        assert_eq!(
            frame(Some("job"), Some("3"), "{\"a\":1}"),
            "event: job\nid: 3\ndata: {\"a\":1}\n\n"
        );
        assert_eq!(frame(None, None, "a\nb"), "data: a\ndata: b\n\n");
    }
}
