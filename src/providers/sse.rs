//! Reading an upstream's `text/event-stream` answer incrementally and relaying it.
//!
//! The HTTP exchange runs on a reader thread that hands raw chunks over a small channel;
//! the caller parses events as they come and checks every 100 ms whether its listener
//! has gone. When it has, the caller returns and drops the channel; the reader thread
//! notices at its next chunk and drops the connection, which ends the upstream request.

use std::io::Read;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::upstream::{transport_error, CallKind, Upstream, MAX_JSON_BYTES};
use super::{ProviderError, TextSink};
use crate::domain::ErrorCode;

/// How often the relay looks at whether the listener is still there.
const CANCEL_POLL: Duration = Duration::from_millis(100);

/// Splits a byte stream into server-sent events. Accepts `\n`, `\r\n` and `\r` line
/// ends, lines cut between reads, and comment lines (`:` …), which only count as
/// liveness.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    data: Vec<String>,
    after_cr: bool,
    /// Comment lines seen so far (keep-alives such as `: OPENROUTER PROCESSING`).
    pub comments: u64,
}

impl SseParser {
    /// Feeds the next bytes; returns the `data` of every event they completed.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut events = Vec::new();
        for &b in bytes {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(event) = self.end_line(&line) {
                        events.push(event);
                    }
                }
                _ => self.line.push(b),
            }
        }
        events
    }

    fn end_line(&mut self, line: &[u8]) -> Option<String> {
        if line.is_empty() {
            if self.data.is_empty() {
                return None;
            }
            return Some(std::mem::take(&mut self.data).join("\n"));
        }
        if line[0] == b':' {
            self.comments += 1;
            return None;
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        if field == "data" {
            self.data.push(value.to_string());
        }
        None
    }
}

/// What one event meant to the provider reading it.
#[derive(Debug, Default, PartialEq)]
pub struct EventStep {
    /// Text to hand on.
    pub text: Option<String>,
    /// The upstream said why it stopped (`finish_reason`, `finishReason`).
    pub finished: bool,
    /// The end marker (`[DONE]`): stop reading.
    pub done: bool,
}

/// A provider's reading of a stream: one step per event, and its error-body rule.
pub struct StreamSpec {
    pub path: String,
    pub model: String,
    pub body: Value,
    pub parse_event: fn(&str) -> Result<EventStep, ProviderError>,
    pub classify_error: fn(u16, Option<u64>, &[u8]) -> ProviderError,
}

enum Piece {
    Bytes(Vec<u8>),
    End,
    Failed(ProviderError),
}

/// Posts `spec.body`, reads the event stream as it arrives and hands text to `sink`.
/// Returns when the stream ends, the listener goes away, or the upstream fails.
pub fn relay(
    upstream: &Arc<Upstream>,
    spec: StreamSpec,
    sink: &mut dyn TextSink,
) -> Result<(), ProviderError> {
    let (tx, rx) = mpsc::sync_channel::<Piece>(16);
    let reader_upstream = upstream.clone();
    let (path, model, body, classify) = (
        spec.path,
        spec.model.clone(),
        spec.body,
        spec.classify_error,
    );
    let spawned = std::thread::Builder::new()
        .name(format!("{}-stream", upstream.name()))
        .spawn(move || read_stream(&reader_upstream, &path, &model, &body, classify, &tx));
    if let Err(e) = spawned {
        return Err(ProviderError::retryable(
            ErrorCode::UPSTREAM_ERROR,
            format!("cannot start the stream reader: {e}"),
        ));
    }
    let mut parser = SseParser::default();
    let mut finished = false;
    loop {
        if sink.cancelled() {
            return Ok(());
        }
        match rx.recv_timeout(CANCEL_POLL) {
            Ok(Piece::Bytes(bytes)) => {
                for data in parser.feed(&bytes) {
                    let step = (spec.parse_event)(&data)?;
                    finished |= step.finished;
                    if let Some(text) = step.text.filter(|t| !t.is_empty()) {
                        if !sink.delta(&text) {
                            return Ok(());
                        }
                    }
                    if step.done {
                        return Ok(());
                    }
                }
            }
            Ok(Piece::End) if finished => return Ok(()),
            Ok(Piece::End) => {
                return Err(ProviderError::retryable(
                    ErrorCode::UPSTREAM_ERROR,
                    format!(
                        "the {} stream ended before the model finished",
                        upstream.name()
                    ),
                ))
            }
            Ok(Piece::Failed(e)) => return Err(e),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                return Err(ProviderError::retryable(
                    ErrorCode::UPSTREAM_ERROR,
                    "the stream reader stopped unexpectedly",
                ))
            }
        }
    }
}

/// The reader thread: the HTTP exchange, then raw chunks until the end or until
/// nobody takes them any more.
fn read_stream(
    upstream: &Upstream,
    path: &str,
    model: &str,
    body: &Value,
    classify: fn(u16, Option<u64>, &[u8]) -> ProviderError,
    tx: &mpsc::SyncSender<Piece>,
) {
    let reply = match upstream.post_json(path, model, body, CallKind::Text) {
        Ok(reply) => reply,
        Err(e) => {
            let _ = tx.send(Piece::Failed(e));
            return;
        }
    };
    if reply.status != 200 {
        let _ = tx.send(Piece::Failed(upstream.read_error(reply, model, classify)));
        return;
    }
    let started = Upstream::started(&reply);
    let status = Some(reply.status);
    let mut reader = reply.body.into_with_config().limit(MAX_JSON_BYTES).reader();
    let mut buf = vec![0u8; 16 * 1024];
    let mut total = 0;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => {
                upstream.finish(model, status, total, started, None);
                let _ = tx.send(Piece::End);
                return;
            }
            Ok(n) => {
                total += n;
                if tx.send(Piece::Bytes(buf[..n].to_vec())).is_err() {
                    tracing::info!(
                        provider = upstream.name(),
                        model,
                        bytes = total,
                        "stream listener gone; upstream request dropped"
                    );
                    return;
                }
            }
            Err(e) => {
                let error = transport_error(upstream.name(), &ureq::Error::from(e));
                upstream.finish(model, status, total, started, Some(&error));
                let _ = tx.send(Piece::Failed(error));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_survive_any_split_and_line_ending() {
        let stream = b": OPENROUTER PROCESSING\n\ndata: {\"a\":1}\n\ndata: x\r\ndata: y\r\n\r\ndata: z\r\rdata: [DONE]\n\n";
        let whole = SseParser::default().feed(stream);
        assert_eq!(whole, vec!["{\"a\":1}", "x\ny", "z", "[DONE]"]);
        for cut in 1..stream.len() {
            let mut parser = SseParser::default();
            let mut events = parser.feed(&stream[..cut]);
            events.extend(parser.feed(&stream[cut..]));
            assert_eq!(events, whole, "cut at {cut}");
            assert_eq!(parser.comments, 1);
        }
    }

    #[test]
    fn an_unfinished_event_is_not_dispatched() {
        let mut parser = SseParser::default();
        assert!(parser.feed(b"data: {\"half\":").is_empty());
        assert_eq!(parser.feed(b" 1}\n\n"), vec!["{\"half\": 1}"]);
    }
}
