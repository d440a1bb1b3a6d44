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
use crate::generation::pipeline::{style_dimensions, DimensionsAsk};
use crate::generation::prompt_objects::{
    full_text, genesis_prompts, is_blueprint, system_prompt, PromptAsk, PromptAssembler,
};
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

/// `generate-prompts-v2`: image prompts as the reference's prompt objects, streamed as
/// `data: {"fullText": "<JSON array so far>"}` events (the first, empty, at once) and
/// `data: [DONE]`, or one JSON with `stream:false`. The genesis module with a blueprint
/// writes its prompts without a model. A failure after the stream began is
/// `{"fullText", "error": "<message>", "code": "PROMPT_STREAM_FAILED"}` then `[DONE]`.
async fn generate_prompts(state: State, req: Request) -> Response {
    let user = match authenticate(&state, &req).await {
        Ok(user) => user,
        Err(err) => return reply::error(&err),
    };
    let prepared = async {
        let raw: Value = req.json()?;
        let body = WritePrompts::parse(&raw)?;
        let genesis = body.module == "genesis" && is_blueprint(&body.analysis);
        let found = text_provider(&state, state.config.generation.prompt_model.as_deref());
        if found.is_none() && !genesis {
            return Err(ApiError::with_message(
                ErrorCode::MODEL_UNAVAILABLE,
                "no prompt model is available",
            ));
        }
        let per_minute = state.config.limits.prompt_streams_per_minute;
        let user_id = user.id.clone();
        state
            .db
            .write(move |conn| start_prompt_stream(conn, &user_id, per_minute))
            .await?;
        Ok::<_, ApiError>((body, found.filter(|_| !genesis)))
    };
    let (body, found) = match prepared.await {
        Ok(ready) => ready,
        Err(err) => return reply::error(&err),
    };
    let (tx, mut rx) = mpsc::channel::<StreamItem>(64);
    match found {
        Some((entry, provider)) => {
            let mut user_text = body.analysis.to_string();
            if let Some(specs) = &body.design_specs {
                user_text.push_str(&format!("\n\nDesign specs override: {specs}"));
            }
            if let Some(style) = body
                .style_constraint
                .as_ref()
                .and_then(|s| s["prompt"].as_str())
            {
                user_text.push_str(&format!(
                    "\n\nStyle constraints (highest priority): {style}"
                ));
            }
            let request = TextRequest {
                purpose: TextPurpose::Prompts,
                model: entry.upstream_model.clone(),
                system: system_prompt(
                    PromptAsk {
                        count: body.image_count,
                        module: &body.module,
                        language: &body.output_language,
                        clothing_mode: body.clothing_mode.as_deref(),
                        profile: state.config.public.prompt_profile(&body.prompt_profile),
                    },
                    &state.prompts,
                ),
                user: user_text,
                images: Vec::new(),
                input: json!({"analysis": body.analysis, "image_count": body.image_count,
                              "style_constraint": body.style_constraint,
                              "design_specs": body.design_specs}),
            };
            let gauge = StreamGauge::start(&state.prompt_streams);
            tokio::task::spawn_blocking(move || {
                let _gauge = gauge;
                let mut sink = ChannelSink(tx);
                if let Err(err) = provider.stream_text(&request, &mut sink) {
                    tracing::warn!(error = %err.message, "prompt stream failed");
                    let _ = sink.0.blocking_send(StreamItem::Failed(err));
                }
            });
        }
        None => {
            let style = body
                .style_constraint
                .as_ref()
                .and_then(|s| s["prompt"].as_str());
            let prompts =
                genesis_prompts(&body.analysis, &body.output_language, style, &state.prompts);
            for prompt in prompts {
                // Each object on its own: the stream grows one prompt at a time.
                let _ = tx.try_send(StreamItem::Delta(prompt.to_string()));
            }
            // No upstream: the stream ends once these are read.
            drop(tx);
        }
    }
    if !body.stream {
        let mut prompts = PromptAssembler::new();
        while let Some(item) = rx.recv().await {
            match item {
                StreamItem::Delta(text) => {
                    prompts.push(&text);
                }
                StreamItem::Failed(err) => {
                    return reply::error(&ApiError::with_message(
                        ErrorCode::PROMPT_STREAM_FAILED,
                        err.message,
                    ))
                }
            }
        }
        prompts.finish();
        return reply::ok(&json!({"fullText": full_text(prompts.objects())}));
    }
    let (mut out, response) = sse::channel();
    tokio::spawn(async move {
        let mut prompts = PromptAssembler::new();
        // The reference flushes an empty fullText at once (generate-prompts-v2 L1425).
        if !out
            .send(sse::frame(None, None, &json!({"fullText": ""}).to_string()))
            .await
        {
            return;
        }
        loop {
            let next = loop {
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
            let frame = match next {
                Some(StreamItem::Delta(text)) => {
                    if !prompts.push(&text) {
                        continue;
                    }
                    json!({"fullText": full_text(prompts.objects())})
                }
                Some(StreamItem::Failed(err)) => {
                    // The reference client reads `error` as a string (EcomStudioForm.tsx L665).
                    let frame = json!({"fullText": full_text(prompts.objects()),
                                       "error": err.message, "code": "PROMPT_STREAM_FAILED"});
                    out.send(sse::frame(None, None, &frame.to_string())).await;
                    break;
                }
                None => {
                    if prompts.finish() {
                        let frame = json!({"fullText": full_text(prompts.objects())});
                        if !out.send(sse::frame(None, None, &frame.to_string())).await {
                            return;
                        }
                    }
                    break;
                }
            };
            if !out.send(sse::frame(None, None, &frame.to_string())).await {
                return;
            }
        }
        out.send(sse::frame(None, None, "[DONE]")).await;
    });
    response
}

/// `analyze-style-dimensions`: synchronous and free. With no context, and whenever the
/// model fails, 200 with empty selections (analyze-style-dimensions/index.ts L80–82).
async fn analyze_style_dimensions(state: State, req: Request) -> Response {
    let result = async {
        authenticate(&state, &req).await?;
        let raw: Value = req.json()?;
        let body = StyleDimensions::parse(&raw)?;
        if !body.has_context() {
            return Ok(json!({"selections": {}, "confidence": 0, "source": "ai"}));
        }
        let ask = DimensionsAsk {
            module: body.module,
            context: body.context_text.unwrap_or_default(),
            analysis: body.analysis.unwrap_or_default(),
            ui_language: body.ui_language,
        };
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
        let prompts = state.prompts.clone();
        let answer = tokio::task::spawn_blocking(move || {
            let mut answer = style_dimensions(provider.as_deref(), &upstream, &ask, &prompts);
            if answer.get("model").is_some() {
                answer["model"] = json!(model);
            }
            answer
        })
        .await
        .map_err(|e| ApiError::internal().cause(e.to_string()))?;
        Ok::<_, ApiError>(answer)
    };
    reply::result(result.await)
}
