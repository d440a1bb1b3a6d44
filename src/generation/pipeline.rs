//! What running one queued unit means, whatever the provider: product analysis as text
//! with one JSON repair; refinement's analysis step with a generic fallback; every
//! image output checked against the requested ratio.

use serde_json::{json, Map, Value};

use std::sync::Arc;

use super::blueprint::{self, BlueprintAsk};
use super::prompts::PromptTexts;
use crate::domain::jobs::{ratio_error, JobType, UnitOutcome};
use crate::domain::ErrorCode;
use crate::providers::{complete_text, Provider, TextPurpose, TextRequest, UnitRequest};

/// The prompt a refinement unit falls back to when its analysis step fails.
pub const GENERIC_REFINEMENT_PROMPT: &str = "Professional e-commerce product photo: keep the \
product exactly as it is, clean the background, even soft studio light, crisp edges.";

/// Settings of the pipeline from the configuration.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// Allowed relative difference between an output's ratio and the requested one.
    pub ratio_tolerance: f64,
    /// The prompt texts.
    pub prompts: Arc<PromptTexts>,
}

/// Runs one unit on `provider`.
pub fn run_unit(
    provider: &dyn Provider,
    unit: &UnitRequest,
    settings: PipelineSettings,
) -> UnitOutcome {
    match unit.job_type {
        JobType::Analysis => analyze_product(provider, unit, &settings.prompts),
        JobType::ImageGen | JobType::StyleReplicate => {
            let mut unit = unit.clone();
            let prompt_source = if unit.input["mode"] == "refinement" {
                Some(write_refinement_prompt(
                    provider,
                    &mut unit,
                    &settings.prompts,
                ))
            } else {
                None
            };
            let outcome = check_ratio(provider.run_unit(&unit), &unit.input, &settings);
            match (outcome, prompt_source) {
                (UnitOutcome::Success { mut result }, Some(source)) => {
                    result["prompt_source"] = json!(source);
                    UnitOutcome::Success { result }
                }
                (outcome, _) => outcome,
            }
        }
    }
}

/// Asks the model for a product-specific prompt; on failure keeps the generic one.
/// Returns where the prompt came from: `analysis` or `fallback`.
fn write_refinement_prompt(
    provider: &dyn Provider,
    unit: &mut UnitRequest,
    prompts: &PromptTexts,
) -> &'static str {
    let product = unit.input["product_image"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (lang, profile) = language_and_profile(&unit.input);
    let background = unit.input["background"].as_str().unwrap_or("white");
    let request = TextRequest {
        purpose: TextPurpose::RefinementPrompt,
        model: unit.model.clone(),
        system: prompts.text("refinement", lang, profile).to_string(),
        user: prompts.render(
            "refinement_user",
            lang,
            profile,
            &[("background", background)],
        ),
        images: vec![product],
        input: unit.input.clone(),
    };
    match complete_text(provider, &request) {
        Ok(text) if !text.trim().is_empty() => {
            unit.input["prompt"] = json!(text.trim());
            "analysis"
        }
        Ok(_) => "fallback",
        Err(err) => {
            tracing::warn!(task_id = %unit.task_id, error = %err.message,
                "refinement analysis failed; using the generic prompt");
            "fallback"
        }
    }
}

/// Fails a successful image unit whose output ratio is off by more than the tolerance.
fn check_ratio(outcome: UnitOutcome, input: &Value, settings: &PipelineSettings) -> UnitOutcome {
    let UnitOutcome::Success { result } = &outcome else {
        return outcome;
    };
    let (Some(w), Some(h), Some(ratio)) = (
        result["width"].as_u64(),
        result["height"].as_u64(),
        input["aspect_ratio"].as_str(),
    ) else {
        return outcome;
    };
    match ratio_error(w as u32, h as u32, ratio) {
        Some(off) if off > settings.ratio_tolerance => UnitOutcome::Permanent {
            code: ErrorCode::MODEL_RATIO_UNSUPPORTED,
            message: format!(
                "the model returned {w}×{h}, {:.1} % off the requested {ratio}",
                off * 100.0
            ),
            details: None,
        },
        _ => outcome,
    }
}

/// Product analysis: one JSON object from the vision model, repaired once if needed,
/// written as the reference's blueprint; when it stays broken, the fallback blueprint
/// with `_ai_meta.parse_warning` (the job succeeds, as in the reference). Only an
/// upstream failure fails the unit.
fn analyze_product(
    provider: &dyn Provider,
    unit: &UnitRequest,
    prompts: &PromptTexts,
) -> UnitOutcome {
    let mut images: Vec<String> = unit.input["product_images"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if let Some(model_image) = unit.input["model_image"].as_str().filter(|m| !m.is_empty()) {
        images.push(model_image.to_string());
    }
    let ask = BlueprintAsk::from_input(&unit.input);
    let request = TextRequest {
        purpose: TextPurpose::ProductAnalysis,
        model: unit.model.clone(),
        system: blueprint::instructions(&ask, prompts),
        user: prompts.render(
            "analysis_user",
            &ask.ui_language,
            &ask.prompt_profile,
            &[
                (
                    "requirements",
                    unit.input["requirements"].as_str().unwrap_or("none"),
                ),
                ("language", &ask.output_language),
            ],
        ),
        images,
        input: unit.input.clone(),
    };
    let first = match complete_text(provider, &request) {
        Ok(text) => text,
        Err(err) => return err.into_outcome(),
    };
    let done = |parsed: Option<Map<String, Value>>| UnitOutcome::Success {
        result: blueprint::normalize(parsed.as_ref(), &ask, &unit.model),
    };
    if let Some(analysis) = parse_json_object(&first) {
        return done(Some(analysis));
    }
    let repair = TextRequest {
        purpose: TextPurpose::RepairJson,
        system: prompts
            .text("repair_json", &ask.ui_language, &ask.prompt_profile)
            .to_string(),
        user: first,
        images: Vec::new(),
        ..request
    };
    match complete_text(provider, &repair).map(|text| parse_json_object(&text)) {
        Ok(Some(analysis)) => done(Some(analysis)),
        Ok(None) => {
            tracing::warn!(task_id = %unit.task_id,
                "analysis JSON stayed broken after a repair; using the fallback blueprint");
            done(None)
        }
        Err(err) => err.into_outcome(),
    }
}

/// The JSON object in a model's answer: the whole text, or inside a ``` fence, or
/// from the first `{` to the last `}`.
pub fn parse_json_object(text: &str) -> Option<Map<String, Value>> {
    let trimmed = text.trim();
    let unfenced = trimmed
        .strip_prefix("```json")
        .or_else(|| trimmed.strip_prefix("```"))
        .and_then(|t| t.trim_end().strip_suffix("```"))
        .unwrap_or(trimmed);
    let candidates = [
        Some(unfenced),
        unfenced
            .find('{')
            .zip(unfenced.rfind('}'))
            .filter(|(a, b)| a < b)
            .map(|(a, b)| &unfenced[a..=b]),
    ];
    candidates
        .into_iter()
        .flatten()
        .find_map(|c| serde_json::from_str::<Value>(c).ok()?.as_object().cloned())
}

/// The reference's five style dimensions and their fixed values
/// (analyze-style-dimensions/index.ts L8–14).
pub const STYLE_DIMENSIONS: &[(&str, &[&str])] = &[
    (
        "sceneStyle",
        &["minimal", "natural", "urban", "luxury", "industrial"],
    ),
    ("lighting", &["natural", "warm", "cool", "dramatic", "soft"]),
    (
        "composition",
        &["front", "overhead45", "topDown", "closeUp", "wide"],
    ),
    (
        "colorTone",
        &["original", "warmTone", "coolTone", "monochrome", "vibrant"],
    ),
    (
        "material",
        &["default", "matte", "glossy", "wood", "marble"],
    ),
];

/// What `analyze-style-dimensions` asks about.
#[derive(Debug, Clone)]
pub struct DimensionsAsk {
    pub module: String,
    pub context: String,
    pub analysis: String,
    pub ui_language: String,
}

/// Keeps only the five dimensions, each with one of its fixed values (reference
/// `sanitizeSelections` L37–50).
pub fn sanitize_selections(raw: Option<&Value>) -> Map<String, Value> {
    let Some(raw) = raw.and_then(Value::as_object) else {
        return Map::new();
    };
    STYLE_DIMENSIONS
        .iter()
        .filter_map(|(key, allowed)| {
            let value = raw.get(*key)?.as_str()?;
            allowed
                .contains(&value)
                .then(|| (key.to_string(), json!(value)))
        })
        .collect()
}

/// `analyze-style-dimensions`: the model's selections from the fixed value lists,
/// sanitised, `source: "ai"`; when the model fails, empty selections with confidence 0
/// (as the reference's catch, L132–138).
pub fn style_dimensions(
    provider: Option<&dyn Provider>,
    model: &str,
    ask: &DimensionsAsk,
    prompts: &PromptTexts,
) -> Value {
    let enums: Vec<String> = STYLE_DIMENSIONS
        .iter()
        .map(|(key, values)| format!("{key}: {}", values.join("|")))
        .collect();
    let none = if ask.ui_language == "zh" {
        "(无)"
    } else {
        "(none)"
    };
    let or_none = |s: &str| {
        if s.is_empty() {
            none.to_string()
        } else {
            s.to_string()
        }
    };
    let answer = provider.and_then(|provider| {
        let lang = ask.ui_language.as_str();
        let request = TextRequest {
            purpose: TextPurpose::StyleDimensions,
            model: model.to_string(),
            system: prompts
                .text("dimensions_system", lang, "default")
                .to_string(),
            user: prompts.render(
                "dimensions_user",
                lang,
                "default",
                &[
                    ("enums", &enums.join("\n")),
                    ("module", &ask.module),
                    ("context", &or_none(&ask.context)),
                    ("analysis", &or_none(&ask.analysis)),
                ],
            ),
            images: Vec::new(),
            input: json!({"context": ask.context, "analysis": ask.analysis, "module": ask.module}),
        };
        let text = complete_text(provider, &request)
            .map_err(|e| tracing::warn!(error = %e.message, "style dimensions failed"))
            .ok()?;
        let object = parse_json_object(&text).unwrap_or_default();
        let confidence = object
            .get("confidence")
            .and_then(Value::as_f64)
            .map_or(0.6, |c| c.clamp(0.0, 1.0));
        Some((sanitize_selections(object.get("selections")), confidence))
    });
    match answer {
        Some((selections, confidence)) => json!({
            "selections": selections, "confidence": confidence, "source": "ai", "model": model,
        }),
        None => json!({"selections": {}, "confidence": 0, "source": "ai"}),
    }
}

/// The unit's prompt language (zh or en) and profile.
fn language_and_profile(input: &Value) -> (&str, &str) {
    let lang = input["ui_language"]
        .as_str()
        .or_else(|| input["output_language"].as_str())
        .unwrap_or("en");
    (lang, input["prompt_profile"].as_str().unwrap_or("default"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{ProviderError, TextSink};
    use std::sync::Mutex;

    /// An upstream that answers text calls from a script, in order, and draws a
    /// 100×100 image for image calls.
    struct Scripted(Mutex<Vec<Result<&'static str, ProviderError>>>);

    impl Provider for Scripted {
        fn name(&self) -> &str {
            "scripted"
        }
        fn run_unit(&self, unit: &UnitRequest) -> UnitOutcome {
            UnitOutcome::Success {
                result: json!({"width": 100, "height": 100, "prompt": unit.input["prompt"]}),
            }
        }
        fn stream_text(
            &self,
            _request: &TextRequest,
            sink: &mut dyn TextSink,
        ) -> Result<(), ProviderError> {
            let next = self.0.lock().unwrap().remove(0)?;
            sink.delta(next);
            Ok(())
        }
    }

    fn unit(job_type: JobType, input: Value) -> UnitRequest {
        UnitRequest {
            task_id: "t".into(),
            job_id: "j".into(),
            unit_index: 0,
            attempt: 1,
            job_type,
            provider: "scripted".into(),
            model: "m".into(),
            input,
        }
    }

    fn settings() -> PipelineSettings {
        PipelineSettings {
            ratio_tolerance: 0.03,
            prompts: Arc::default(),
        }
    }

    #[test]
    fn broken_analysis_json_is_repaired_once_then_falls_back() {
        let repaired = Scripted(Mutex::new(vec![
            Ok("sure! {\"product_name\": "),
            Ok("{\"product_name\": \"mug\"}"),
        ]));
        match run_unit(&repaired, &unit(JobType::Analysis, json!({})), settings()) {
            UnitOutcome::Success { result } => {
                assert_eq!(result["product_name"], "mug");
                assert!(result["_ai_meta"]["parse_warning"].is_null());
            }
            other => panic!("{other:?}"),
        }
        let hopeless = Scripted(Mutex::new(vec![Ok("no json"), Ok("still none")]));
        match run_unit(&hopeless, &unit(JobType::Analysis, json!({})), settings()) {
            UnitOutcome::Success { result } => {
                assert_eq!(
                    result["_ai_meta"]["parse_warning"],
                    blueprint::PARSE_WARNING
                );
                assert!(result["images"].is_array());
            }
            other => panic!("{other:?}"),
        }
        let overloaded = Scripted(Mutex::new(vec![Err(ProviderError {
            code: ErrorCode::UPSTREAM_ERROR,
            message: "429".into(),
            retryable: true,
            retry_after_ms: Some(2000),
            details: None,
        })]));
        assert!(matches!(
            run_unit(&overloaded, &unit(JobType::Analysis, json!({})), settings()),
            UnitOutcome::Retryable {
                retry_after_ms: Some(2000),
                ..
            }
        ));
    }

    #[test]
    fn refinement_uses_the_analysis_prompt_or_falls_back() {
        let input = json!({"mode": "refinement", "aspect_ratio": "1:1",
                           "prompt": GENERIC_REFINEMENT_PROMPT, "product_image": "a.png"});
        let good = Scripted(Mutex::new(vec![Ok("a blue mug, studio light")]));
        match run_unit(
            &good,
            &unit(JobType::StyleReplicate, input.clone()),
            settings(),
        ) {
            UnitOutcome::Success { result } => {
                assert_eq!(result["prompt_source"], "analysis");
                assert_eq!(result["prompt"], "a blue mug, studio light");
            }
            other => panic!("{other:?}"),
        }
        let failing = Scripted(Mutex::new(vec![Err(ProviderError::permanent(
            ErrorCode::UPSTREAM_ERROR,
            "blocked",
        ))]));
        match run_unit(&failing, &unit(JobType::StyleReplicate, input), settings()) {
            UnitOutcome::Success { result } => {
                assert_eq!(result["prompt_source"], "fallback");
                assert_eq!(result["prompt"], GENERIC_REFINEMENT_PROMPT);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn json_is_found_in_fences_and_prose() {
        assert!(parse_json_object("{\"a\":1}").is_some());
        assert!(parse_json_object("```json\n{\"a\":1}\n```").is_some());
        assert!(parse_json_object("Here it is: {\"a\": {\"b\": 2}} hope it helps").is_some());
        assert!(parse_json_object("[1,2]").is_none());
        assert!(parse_json_object("{\"a\":").is_none());
    }

    #[test]
    fn a_wrong_output_ratio_fails_the_unit() {
        let settings = settings();
        let input = json!({"aspect_ratio": "21:9"});
        let gemini = UnitOutcome::Success {
            result: json!({"width": 1536, "height": 672}),
        };
        assert!(matches!(
            check_ratio(gemini, &input, &settings),
            UnitOutcome::Success { .. }
        ));
        let square = UnitOutcome::Success {
            result: json!({"width": 1024, "height": 1024}),
        };
        assert!(matches!(
            check_ratio(square, &input, &settings),
            UnitOutcome::Permanent {
                code: ErrorCode::MODEL_RATIO_UNSUPPORTED,
                ..
            }
        ));
    }
}
