//! The offline `local` provider: real image work with the `image` crate and a
//! deterministic caption for analysis, no network. Knobs (delay, seeded failure rate,
//! forced failures, tiny output) make it the test and benchmark stand-in for upstreams.

use std::io::Cursor;
use std::time::Duration;

use image::{imageops, DynamicImage, ImageFormat, Rgba, RgbaImage};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::images::ImageSource;
use super::{Provider, ProviderError, TextPurpose, TextRequest, TextSink, UnitRequest};
use crate::domain::jobs::{output_dimensions, JobType, UnitOutcome};
use crate::domain::ErrorCode;

/// `[providers.local]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalConfig {
    /// Units run at once.
    pub concurrency: u32,
    /// Longest a unit may take, in seconds.
    pub timeout_secs: u64,
    /// Sleep before each unit, in milliseconds (simulates upstream latency).
    pub delay_ms: u64,
    /// Share of attempts that fail, 0.0..=1.0, decided by a hash of the seed, task and attempt.
    pub fail_rate: f64,
    /// `retryable` or `permanent`: how the failures above (and forced ones) fail.
    pub fail_kind: String,
    /// Seed of the failure decision.
    pub seed: u64,
    /// A unit whose prompt or image reference contains this text fails (tests).
    pub fail_marker: Option<String>,
    /// Units (by index within their job) that always fail (tests).
    pub fail_units: Vec<i64>,
    /// Prompt streams fail after this many chunks (0: before the first byte). Tests.
    pub stream_fail_after_chunks: Option<u32>,
    /// Produce 16-px-long-side images instead of real sizes (queue benchmarks).
    pub tiny_output: bool,
}

impl Default for LocalConfig {
    fn default() -> Self {
        LocalConfig {
            concurrency: 4,
            timeout_secs: 120,
            delay_ms: 0,
            fail_rate: 0.0,
            fail_kind: "retryable".into(),
            seed: 0,
            fail_marker: None,
            fail_units: Vec::new(),
            stream_fail_after_chunks: None,
            tiny_output: false,
        }
    }
}

/// The offline provider.
pub struct LocalProvider {
    config: LocalConfig,
    images: ImageSource,
}

/// Deterministic style selections: per dimension, the first allowed value the context
/// names, else the list's first value.
fn local_dimensions(input: &Value) -> Value {
    let context = input.to_string().to_lowercase();
    let selections: serde_json::Map<String, Value> = crate::generation::pipeline::STYLE_DIMENSIONS
        .iter()
        .map(|(key, values)| {
            let pick = values
                .iter()
                .find(|v| context.contains(&v.to_lowercase()))
                .unwrap_or(&values[0]);
            (key.to_string(), json!(pick))
        })
        .collect();
    json!({"selections": selections, "confidence": 0.6})
}

impl LocalProvider {
    /// The provider; it reads inputs from and stores outputs through `images`.
    pub fn new(config: LocalConfig, images: ImageSource) -> Self {
        LocalProvider { config, images }
    }

    fn failure(&self, message: String) -> UnitOutcome {
        if self.config.fail_kind == "permanent" {
            UnitOutcome::Permanent {
                code: ErrorCode::UPSTREAM_ERROR,
                message,
                details: None,
            }
        } else {
            UnitOutcome::Retryable {
                code: ErrorCode::UPSTREAM_ERROR,
                message,
                retry_after_ms: None,
            }
        }
    }

    /// Deterministic in (seed, task, attempt): the same run fails the same way.
    fn should_fail(&self, unit: &UnitRequest) -> bool {
        if self.config.fail_rate <= 0.0 {
            return false;
        }
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.config.seed, &unit.task_id, unit.attempt).hash(&mut h);
        (h.finish() % 10_000) as f64 / 10_000.0 < self.config.fail_rate
    }

    fn forced_failure(&self, unit: &UnitRequest) -> bool {
        self.config.fail_units.contains(&unit.unit_index)
            || self
                .config
                .fail_marker
                .as_deref()
                .is_some_and(|marker| unit.input.to_string().contains(marker))
    }

    fn image(&self, unit: &UnitRequest) -> UnitOutcome {
        let ratio = unit.input["aspect_ratio"].as_str().unwrap_or("1:1");
        let size = unit.input["image_size"].as_str().unwrap_or("1K");
        let Some((mut width, mut height)) = output_dimensions(ratio, size) else {
            return UnitOutcome::Permanent {
                code: ErrorCode::MODEL_RATIO_UNSUPPORTED,
                message: format!("cannot make a {size} image at {ratio}"),
                details: None,
            };
        };
        if self.config.tiny_output {
            let scale = 16.0 / width.max(height) as f64;
            width = ((width as f64 * scale).round() as u32).max(1);
            height = ((height as f64 * scale).round() as u32).max(1);
        }
        let product = match unit.input["product_image"].as_str() {
            Some(reference) if !reference.is_empty() => match self.load_image(reference) {
                Ok(img) => Some(img),
                Err(outcome) => return *outcome,
            },
            _ => None,
        };
        let background = Background::parse(unit.input["background"].as_str());
        let canvas = compose(width, height, product.as_ref(), background);
        let mut png = Vec::new();
        if let Err(e) = canvas.write_to(&mut Cursor::new(&mut png), ImageFormat::Png) {
            return UnitOutcome::Permanent {
                code: ErrorCode::UPSTREAM_ERROR,
                message: format!("png encoding failed: {e}"),
                details: None,
            };
        }
        self.images.store_output(unit, &png)
    }

    /// Reads and decodes an input image (size-checked before decoding).
    fn load_image(&self, reference: &str) -> Result<DynamicImage, Box<UnitOutcome>> {
        let input = self
            .images
            .load(reference)
            .map_err(|e| Box::new(e.into_outcome()))?;
        image::load_from_memory(&input.bytes).map_err(|e| {
            Box::new(
                ProviderError::permanent(
                    ErrorCode::IMAGE_INPUT_SOURCE_MISSING,
                    format!("the input image could not be read: {e}"),
                )
                .with_reason("not_an_image")
                .into_outcome(),
            )
        })
    }
}

/// The backdrop of a drawn image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Background {
    White,
    Gradient,
    /// The product photo itself, scaled to fill the frame (refinement `original`).
    Original,
}

impl Background {
    fn parse(text: Option<&str>) -> Background {
        match text {
            Some("gradient") => Background::Gradient,
            Some("original") => Background::Original,
            _ => Background::White,
        }
    }
}

/// A canvas with the product fitted to 80 % of it and centred on a white or gradient
/// backdrop, or (original) the product photo filling the frame.
fn compose(
    width: u32,
    height: u32,
    product: Option<&DynamicImage>,
    background: Background,
) -> RgbaImage {
    if let (Background::Original, Some(product)) = (background, product) {
        return product
            .resize_to_fill(width, height, imageops::FilterType::Triangle)
            .to_rgba8();
    }
    let mut canvas = RgbaImage::from_fn(width, height, |_, y| {
        if background == Background::Gradient {
            let t = y as f32 / height.max(1) as f32;
            let c = (250.0 - 40.0 * t) as u8;
            Rgba([c, c, 255, 255])
        } else {
            Rgba([255, 255, 255, 255])
        }
    });
    if let Some(product) = product {
        let max_w = (width as f32 * 0.8).max(1.0) as u32;
        let max_h = (height as f32 * 0.8).max(1.0) as u32;
        let fitted = product
            .resize(max_w, max_h, imageops::FilterType::Triangle)
            .to_rgba8();
        let x = (width - fitted.width()) / 2;
        let y = (height - fitted.height()) / 2;
        imageops::overlay(&mut canvas, &fitted, i64::from(x), i64::from(y));
    }
    canvas
}

impl Provider for LocalProvider {
    fn name(&self) -> &str {
        "local"
    }

    fn run_unit(&self, unit: &UnitRequest) -> UnitOutcome {
        if self.config.delay_ms > 0 {
            std::thread::sleep(Duration::from_millis(self.config.delay_ms));
        }
        if self.forced_failure(unit) {
            return self.failure("forced failure (fail_marker)".into());
        }
        if self.should_fail(unit) {
            return self.failure(format!(
                "simulated failure (fail_rate {})",
                self.config.fail_rate
            ));
        }
        match unit.job_type {
            JobType::Analysis => UnitOutcome::Permanent {
                code: ErrorCode::ANALYSIS_FAILED,
                message: "analysis units are text work".into(),
                details: None,
            },
            JobType::ImageGen | JobType::StyleReplicate => self.image(unit),
        }
    }

    fn stream_text(
        &self,
        request: &TextRequest,
        sink: &mut dyn TextSink,
    ) -> Result<(), ProviderError> {
        let marked = self
            .config
            .fail_marker
            .as_deref()
            .is_some_and(|m| request.input.to_string().contains(m));
        if marked {
            return Err(ProviderError::permanent(
                ErrorCode::UPSTREAM_ERROR,
                "forced failure (fail_marker)",
            ));
        }
        let chunks = match request.purpose {
            TextPurpose::ProductAnalysis | TextPurpose::RepairJson => {
                let ask = crate::generation::blueprint::BlueprintAsk::from_input(&request.input);
                vec![crate::generation::blueprint::local_answer(&ask).to_string()]
            }
            TextPurpose::Prompts => prompt_chunks(
                &request.input["analysis"],
                request.input["image_count"].as_u64().unwrap_or(1) as usize,
            ),
            TextPurpose::RefinementPrompt => vec![format!(
                "Studio refinement of {}: keep the product exactly, even soft light, crisp edges.",
                request.input["product_image"]
                    .as_str()
                    .map(|p| p.rsplit('/').next().unwrap_or(p))
                    .unwrap_or("the product")
            )],
            TextPurpose::StyleDimensions => vec![local_dimensions(&request.input).to_string()],
        };
        for (i, chunk) in chunks.iter().enumerate() {
            if self.config.stream_fail_after_chunks == Some(i as u32) {
                return Err(ProviderError::retryable(
                    ErrorCode::UPSTREAM_ERROR,
                    format!("simulated stream failure after {i} chunks"),
                ));
            }
            if i > 0 && !self.wait(sink) {
                return Ok(());
            }
            if !sink.delta(chunk) {
                return Ok(());
            }
        }
        Ok(())
    }
}

impl LocalProvider {
    /// Sleeps `delay_ms` between streamed chunks, waking every 20 ms to see whether the
    /// listener has gone. False if it has.
    fn wait(&self, sink: &dyn TextSink) -> bool {
        let until = std::time::Instant::now() + Duration::from_millis(self.config.delay_ms);
        while std::time::Instant::now() < until {
            if sink.cancelled() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20).min(until - std::time::Instant::now()));
        }
        !sink.cancelled()
    }
}

/// Text the local provider "writes" for prompt streaming: a JSON array of the reference's
/// prompt objects, deterministic, each object sent in two chunks (so a stream is cut
/// mid-object at every other chunk).
fn prompt_chunks(analysis: &Value, count: usize) -> Vec<String> {
    let name = analysis["product_name"]
        .as_str()
        .or_else(|| analysis["product_summary"].as_str())
        .unwrap_or("the product");
    let count = count.max(1);
    let mut chunks = Vec::new();
    for i in 1..=count {
        let object = json!({
            "prompt": format!("Prompt {i}: {name}, centred, soft studio light, clean background."),
            "title": format!("Image {i}"),
            "negative_prompt": "blur, watermark, extra text",
            "marketing_hook": format!("{name}, ready to use"),
            "priority": 0,
        })
        .to_string();
        let piece = format!(
            "{}{object}{}",
            if i == 1 { "[" } else { ", " },
            if i == count { "]" } else { "" }
        );
        let mut mid = piece.len() / 2;
        while !piece.is_char_boundary(mid) {
            mid += 1;
        }
        chunks.push(piece[..mid].to_string());
        chunks.push(piece[mid..].to_string());
    }
    chunks
}
