//! Text work answered directly: `generate-prompts-v2` (streamed over SSE) and
//! `analyze-style-dimensions`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::mpsc;
use warp::reply::Response;
use warp::Filter;

use super::{authenticate, guard, reply, request, sse, with_state, Request, State};
use crate::actors::ledger_jobs::start_prompt_stream;
use crate::catalog::{self, ModelEntry};
use crate::domain::{ApiError, ErrorCode};
use crate::generation::pipeline::style_dimensions;
use crate::generation::requests::{StyleDimensions, WritePrompts};
use crate::providers::{Provider, ProviderError, TextPurpose, TextRequest, TextSink};

pub fn routes(state: State) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let prompts = warp::path!("functions" / "v1" / "generate-prompts-v2")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, req| guard(generate_prompts(state, req)));
    let dimensions = warp::path!("functions" / "v1" / "analyze-style-dimensions")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, req| guard(analyze_style_dimensions(state, req)));
    prompts.or(dimensions).unify()
}

/// What the blocking upstream call reports to the async side.
enum StreamItem {
    Delta(String),
    Failed(ProviderError),
}

/// Forwards deltas into a channel; the listener is gone once the channel is closed.
struct ChannelSink(mpsc::Sender<StreamItem>);

impl TextSink for ChannelSink {
    fn delta(&mut self, text: &str) -> bool {
        self.0
            .blocking_send(StreamItem::Delta(text.to_string()))
            .is_ok()
    }

    fn cancelled(&self) -> bool {
        self.0.is_closed()
    }
}

/// Counts a running prompt stream for as long as it lives.
struct StreamGauge(Arc<AtomicUsize>);

impl StreamGauge {
    fn start(gauge: &Arc<AtomicUsize>) -> StreamGauge {
        gauge.fetch_add(1, Ordering::SeqCst);
        StreamGauge(gauge.clone())
    }
}

impl Drop for StreamGauge {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The catalog entry and provider for text work of one kind.
fn text_provider(
    state: &State,
    configured: Option<&str>,
) -> Option<(ModelEntry, Arc<dyn Provider>)> {
    let entry = catalog::text_model(&state.config, configured)?;
    let provider = state.providers.get(&entry.provider)?.clone();
    Some((entry, provider))
}

/// `generate-prompts-v2`: image prompts written from an analysis, streamed as
/// `data: {"fullText": …}` events and `data: [DONE]`, or one JSON with `stream:false`.
async fn generate_prompts(state: State, req: Request) -> Response {
    let user = match authenticate(&state, &req).await {
        Ok(user) => user,
        Err(err) => return reply::error(&err),
    };
    let prepared = async {
        let raw: Value = req.json()?;
        let body = WritePrompts::parse(&raw)?;
        let (entry, provider) = text_provider(
            &state,
            state.config.generation.prompt_model.as_deref(),
        )
        .ok_or_else(|| {
            ApiError::with_message(ErrorCode::MODEL_UNAVAILABLE, "no prompt model is available")
        })?;
        let per_minute = state.config.limits.job_creations_per_minute;
        let user_id = user.id.clone();
        state
            .db
            .write(move |conn| start_prompt_stream(conn, &user_id, per_minute))
            .await?;
        Ok::<_, ApiError>((body, entry, provider))
    };
    let (body, entry, provider) = match prepared.await {
        Ok(ready) => ready,
        Err(err) => return reply::error(&err),
    };
    let request = TextRequest {
        purpose: TextPurpose::Prompts,
        model: entry.upstream_model.clone(),
        system: format!(
            "You write {} image prompts for e-commerce product photos ({} module), one per \
             line, in language {}.",
            body.image_count, body.module, body.output_language
        ),
        user: body.analysis.to_string(),
        images: Vec::new(),
        input: json!({"analysis": body.analysis, "image_count": body.image_count,
                      "style_constraint": body.style_constraint}),
    };
    let (tx, mut rx) = mpsc::channel::<StreamItem>(32);
    let gauge = StreamGauge::start(&state.prompt_streams);
    tokio::task::spawn_blocking(move || {
        let _gauge = gauge;
        let mut sink = ChannelSink(tx);
        if let Err(err) = provider.stream_text(&request, &mut sink) {
            tracing::warn!(error = %err.message, "prompt stream failed");
            let _ = sink.0.blocking_send(StreamItem::Failed(err));
        }
    });
    let failed =
        |err: ProviderError| ApiError::with_message(ErrorCode::PROMPT_STREAM_FAILED, err.message);
    if !body.stream {
        let mut full_text = String::new();
        while let Some(item) = rx.recv().await {
            match item {
                StreamItem::Delta(text) => full_text.push_str(&text),
                StreamItem::Failed(err) => return reply::error(&failed(err)),
            }
        }
        return reply::ok(&json!({"fullText": full_text}));
    }
    // An upstream that fails before its first byte is a plain JSON error.
    let first = match rx.recv().await {
        Some(StreamItem::Failed(err)) => return reply::error(&failed(err)),
        other => other,
    };
    let (mut out, response) = sse::channel();
    tokio::spawn(async move {
        let mut full_text = String::new();
        let mut next = first;
        loop {
            let frame = match next {
                Some(StreamItem::Delta(text)) => {
                    full_text.push_str(&text);
                    json!({"fullText": full_text}).to_string()
                }
                Some(StreamItem::Failed(err)) => {
                    json!({"error": {"code": "PROMPT_STREAM_FAILED", "message": err.message}})
                        .to_string()
                }
                None => break,
            };
            if !out.send(sse::frame(None, None, &frame)).await {
                return;
            }
            next = loop {
                tokio::select! {
                    item = rx.recv() => break item,
                    _ = out.closed() => return,
                    _ = tokio::time::sleep_until(out.keep_alive_at()) => {
                        if !out.keep_alive().await {
                            return;
                        }
                    }
                }
            };
        }
        out.send(sse::frame(None, None, "[DONE]")).await;
    });
    response
}

/// `analyze-style-dimensions`: synchronous and free.
async fn analyze_style_dimensions(state: State, req: Request) -> Response {
    let result = async {
        authenticate(&state, &req).await?;
        let raw: Value = req.json()?;
        let body = StyleDimensions::parse(&raw)?;
        let context = format!(
            "Module: {}. Context: {}. Analysis: {}",
            body.module,
            body.context_text.as_deref().unwrap_or("none"),
            body.analysis
                .as_ref()
                .map(Value::to_string)
                .unwrap_or_default()
        );
        let found = text_provider(&state, state.config.generation.analysis_model.as_deref());
        let model = found
            .as_ref()
            .map(|(entry, _)| entry.id.clone())
            .unwrap_or_default();
        let upstream = found
            .as_ref()
            .map(|(entry, _)| entry.upstream_model.clone())
            .unwrap_or_default();
        let provider = found.map(|(_, provider)| provider);
        let answer = tokio::task::spawn_blocking(move || {
            let mut answer = style_dimensions(provider.as_deref(), &upstream, &context);
            answer["model"] = json!(model);
            answer
        })
        .await
        .map_err(|e| ApiError::internal().cause(e.to_string()))?;
        Ok(answer)
    };
    reply::result(result.await)
}
