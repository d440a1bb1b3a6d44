//! One type per generation endpoint body, built by `parse` (parse, don't validate):
//! the checks run in the documented order and the first failure answers. Checks that
//! need the catalog or the account (model, limits, credits) come after, in the handler.

use serde_json::Value;

use super::fields::{object, Body, JobMeta};
use super::rules::{
    clamp_count, group_count, has_refinement_format, MAX_BATCH_REFERENCES, MAX_IMAGE_COUNT,
    MAX_PROMPT_COUNT, MAX_REFINEMENT_IMAGES, MAX_SINGLE_PRODUCTS,
};
use crate::domain::{ApiError, ErrorCode};

/// The default image model of the reference product.
pub const DEFAULT_MODEL: &str = "or-gemini-3.1-flash";

const LANGUAGES: &[&str] = &[
    "none", "en", "zh", "ja", "ko", "es", "fr", "de", "pt", "ar", "ru",
];

/// The first of `fields` naming a known language; an unknown one falls back (to `en` in
/// the end) as the reference does, logged at debug.
fn language(body: &Body<'_>, fields: &[&str]) -> String {
    for field in fields {
        match body.get(field) {
            Some(Value::String(s)) if LANGUAGES.contains(&s.trim()) => return s.trim().to_string(),
            Some(Value::Null) | None => {}
            Some(other) => tracing::debug!(field, value = %other, "unknown language; falling back"),
        }
    }
    "en".into()
}

/// `promptProfile`: `ta-pro` selects its prompt variants; anything else is the default
/// profile (the reference normalises the same way, `_shared/prompt-profile.ts`).
fn prompt_profile(body: &Body<'_>) -> String {
    match body.get("promptProfile") {
        Some(Value::String(p)) if p.trim() == "ta-pro" => "ta-pro".into(),
        _ => "default".into(),
    }
}

/// `analyze-product-v2`.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyzeProduct {
    pub product_images: Vec<String>,
    pub requirements: Option<String>,
    pub image_count: u32,
    pub output_language: String,
    pub prompt_profile: String,
    pub white_background: bool,
    pub style_constraint: Option<Value>,
    /// genesis | ecom-detail | ecommerce (default genesis).
    pub studio_type: String,
    /// product_analysis | refinement_analysis | model_strategy.
    pub clothing_mode: Option<String>,
    pub model_image: Option<String>,
    pub ui_language: String,
    pub detail_closeup_count: u32,
    pub selling_point_count: u32,
    pub ecom_detail_modules: Vec<String>,
    pub meta: JobMeta,
}

/// The longest `requirements` (and `userPrompt`) accepted: the reference client's
/// ecom-detail and try-on studios build 565–687 characters (EcomStudioForm.tsx,
/// ClothingStudioForm.tsx) and its Aesthetic Mirror sends its prompt box uncapped
/// (AestheticMirrorForm.tsx L603–609, no maxLength), so the cap leaves room well above.
pub const MAX_REQUIREMENTS: usize = 2000;

impl AnalyzeProduct {
    pub fn parse(raw: &Value) -> Result<Self, ApiError> {
        let body = object(raw)?;
        let first = body
            .string("productImage")?
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| ApiError::bad_field("productImage", "productImage is required"))?;
        let mut product_images = vec![first];
        for extra in body
            .strings_or("productImages", ErrorCode::BAD_REQUEST)?
            .unwrap_or_default()
        {
            if !extra.trim().is_empty() && !product_images.contains(&extra) {
                product_images.push(extra);
            }
        }
        let image_count = body.int("imageCount")?.unwrap_or(1);
        if image_count < 1 {
            return Err(ApiError::bad_field(
                "imageCount",
                "imageCount must be at least 1",
            ));
        }
        let parsed = AnalyzeProduct {
            product_images,
            requirements: body.short_string("requirements", MAX_REQUIREMENTS)?,
            image_count: image_count.min(MAX_PROMPT_COUNT) as u32,
            output_language: language(&body, &["outputLanguage", "targetLanguage", "uiLanguage"]),
            prompt_profile: prompt_profile(&body),
            white_background: body.bool("whiteBackground")?.unwrap_or(false),
            style_constraint: style_constraint(&body)?,
            studio_type: body
                .short_string("studioType", 64)?
                .filter(|s| ["genesis", "ecom-detail", "ecommerce"].contains(&s.as_str()))
                .unwrap_or_else(|| "genesis".into()),
            clothing_mode: body.short_string("clothingMode", 64)?.filter(|m| {
                ["product_analysis", "refinement_analysis", "model_strategy"].contains(&m.as_str())
            }),
            model_image: body.string("modelImage")?.filter(|s| !s.trim().is_empty()),
            ui_language: language(&body, &["uiLanguage", "targetLanguage", "outputLanguage"]),
            detail_closeup_count: body.int("detailCloseupCount")?.unwrap_or(0).clamp(0, 15) as u32,
            selling_point_count: body.int("sellingPointCount")?.unwrap_or(0).clamp(0, 15) as u32,
            ecom_detail_modules: match body.get("ecomDetailModules") {
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(|m| m.as_str().or_else(|| m["id"].as_str()))
                    .map(str::to_string)
                    .take(15)
                    .collect(),
                _ => Vec::new(),
            },
            meta: JobMeta::parse(&body)?,
        };
        body.finish("analyze-product-v2");
        Ok(parsed)
    }
}

/// `styleConstraint`: `{selections: {k: string}, prompt ≤ 600, source}`.
fn style_constraint(body: &Body<'_>) -> Result<Option<Value>, ApiError> {
    let Some(value) = body.small_object("styleConstraint", 16 * 1024)? else {
        return Ok(None);
    };
    let bad = |why: &str| ApiError::bad_field("styleConstraint", why.to_string());
    if let Some(selections) = value.get("selections").filter(|v| !v.is_null()) {
        let ok = selections
            .as_object()
            .is_some_and(|m| m.values().all(Value::is_string));
        if !ok {
            return Err(bad("styleConstraint.selections must map names to strings"));
        }
    }
    if let Some(prompt) = value.get("prompt").filter(|v| !v.is_null()) {
        if prompt.as_str().is_none_or(|p| p.chars().count() > 600) {
            return Err(bad(
                "styleConstraint.prompt must be a string of at most 600 characters",
            ));
        }
    }
    Ok(Some(value))
}

/// `generate-prompts-v2`.
#[derive(Debug, Clone, PartialEq)]
pub struct WritePrompts {
    /// The analysis as an object (a JSON string is parsed; other text is kept as text).
    pub analysis: Value,
    pub image_count: u32,
    pub module: String,
    pub output_language: String,
    pub style_constraint: Option<Value>,
    /// `design_specs` (a string, or an object written as JSON).
    pub design_specs: Option<String>,
    /// `clothingMode` (prompt_generation | model_prompt_generation, kept as sent).
    pub clothing_mode: Option<String>,
    /// `promptProfile`: default | ta-pro (another value falls back to default).
    pub prompt_profile: String,
    pub stream: bool,
}

impl WritePrompts {
    pub fn parse(raw: &Value) -> Result<Self, ApiError> {
        let body = object(raw)?;
        let analysis = match body.get("analysisJson") {
            Some(Value::Object(_)) => body.0["analysisJson"].clone(),
            Some(Value::String(s)) if !s.trim().is_empty() => {
                serde_json::from_str::<Value>(s).unwrap_or_else(|_| Value::String(s.clone()))
            }
            Some(Value::String(_)) | None => {
                return Err(ApiError::bad_field(
                    "analysisJson",
                    "analysisJson is required",
                ))
            }
            Some(_) => {
                return Err(ApiError::bad_field(
                    "analysisJson",
                    "analysisJson must be an object or a string",
                ))
            }
        };
        let parsed = WritePrompts {
            analysis,
            image_count: clamp_count(body.int("imageCount")?, MAX_PROMPT_COUNT),
            module: body
                .choice("module", &["genesis", "default", "clothing", "ecom-detail"])?
                .unwrap_or_else(|| "default".into()),
            output_language: language(&body, &["outputLanguage", "targetLanguage"]),
            style_constraint: style_constraint(&body)?,
            design_specs: match body.get("design_specs") {
                Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
                Some(v @ Value::Object(_)) => Some(v.to_string()),
                _ => None,
            },
            clothing_mode: body.short_string("clothingMode", 64)?,
            prompt_profile: prompt_profile(&body),
            stream: body.bool("stream")?.unwrap_or(true),
        };
        body.finish("generate-prompts-v2");
        Ok(parsed)
    }
}

/// `generate-image`.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateImage {
    pub model: String,
    pub prompt: String,
    /// May be empty here: whether a source is required depends on the model.
    pub product_images: Vec<String>,
    pub image_count: u32,
    pub aspect_ratio: String,
    pub image_size: Option<String>,
    pub turbo: bool,
    pub workflow_mode: String,
    pub text_edits: Option<Value>,
    pub style_constraint: Option<Value>,
    pub meta: JobMeta,
}

impl GenerateImage {
    pub fn parse(raw: &Value) -> Result<Self, ApiError> {
        let body = object(raw)?;
        let model = body
            .string("model")?
            .filter(|m| !m.trim().is_empty())
            .ok_or_else(|| ApiError::bad_field("model", "model is required"))?;
        let prompt = match body.get("prompt") {
            None | Some(Value::String(_)) => body.string("prompt")?.unwrap_or_default(),
            Some(_) => return Err(ApiError::new(ErrorCode::IMAGE_INPUT_PROMPT_MISSING)),
        };
        if prompt.trim().is_empty() {
            return Err(ApiError::new(ErrorCode::IMAGE_INPUT_PROMPT_MISSING));
        }
        let mut product_images: Vec<String> = body.string("productImage")?.into_iter().collect();
        for p in body
            .strings_or("productImages", ErrorCode::IMAGE_INPUT_SOURCE_MISSING)?
            .unwrap_or_default()
        {
            if !product_images.contains(&p) {
                product_images.push(p);
            }
        }
        product_images.retain(|p| !p.trim().is_empty());
        let text_edits = body.small_object("textEdits", 16 * 1024)?;
        if let Some(edits) = text_edits.as_ref().and_then(Value::as_object) {
            if !edits
                .values()
                .all(|v| v.as_str().is_some_and(|s| s.chars().count() <= 80))
            {
                return Err(ApiError::bad_field(
                    "textEdits",
                    "textEdits values must be strings of at most 80 characters",
                ));
            }
        }
        let parsed = GenerateImage {
            model,
            prompt,
            product_images,
            image_count: clamp_count(body.int("imageCount")?, MAX_IMAGE_COUNT),
            aspect_ratio: body.string("aspectRatio")?.unwrap_or_else(|| "1:1".into()),
            image_size: body.string("imageSize")?,
            turbo: body.bool("turboEnabled")?.unwrap_or(false),
            workflow_mode: body
                .string("workflowMode")?
                .unwrap_or_else(|| "product".into()),
            text_edits,
            style_constraint: style_constraint(&body)?,
            meta: JobMeta::parse(&body)?,
        };
        body.finish("generate-image");
        Ok(parsed)
    }
}

/// Background of a refined image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Background {
    White,
    Original,
}

impl Background {
    pub fn as_str(self) -> &'static str {
        match self {
            Background::White => "white",
            Background::Original => "original",
        }
    }
}

/// What a style-replicate call does.
#[derive(Debug, Clone, PartialEq)]
pub enum StyleMode {
    /// One reference, several products: products × imageCount units.
    Single {
        reference: String,
        products: Vec<String>,
    },
    /// Several references, one product: references × groupCount units.
    Batch {
        references: Vec<String>,
        product: String,
        groups: u32,
    },
    /// Clean up each product photo: one unit each.
    Refinement {
        products: Vec<String>,
        background: Background,
    },
}

/// `analyze-single`.
#[derive(Debug, Clone, PartialEq)]
pub struct StyleReplicate {
    pub model: String,
    pub aspect_ratio: String,
    pub image_size: String,
    pub image_count: u32,
    pub user_prompt: Option<String>,
    pub turbo: bool,
    pub style_constraint: Option<Value>,
    pub mode: StyleMode,
    pub meta: JobMeta,
}

impl StyleReplicate {
    pub fn parse(raw: &Value) -> Result<Self, ApiError> {
        let body = object(raw)?;
        let mode = match body.string("mode")?.as_deref() {
            None | Some("single") => single_mode(&body)?,
            Some("batch") => batch_mode(&body)?,
            Some("refinement") => refinement_mode(&body)?,
            Some(other) => {
                return Err(ApiError::bad_field(
                    "mode",
                    format!("unknown mode {other:?}; use single, batch or refinement"),
                ))
            }
        };
        let parsed = StyleReplicate {
            model: body
                .string("model")?
                .filter(|m| !m.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_MODEL.into()),
            aspect_ratio: body.string("aspectRatio")?.unwrap_or_else(|| "1:1".into()),
            image_size: body.string("imageSize")?.unwrap_or_else(|| "2K".into()),
            image_count: clamp_count(body.int("imageCount")?, MAX_IMAGE_COUNT),
            user_prompt: body.short_string("userPrompt", MAX_REQUIREMENTS)?,
            turbo: body.bool("turboEnabled")?.unwrap_or(false),
            style_constraint: style_constraint(&body)?,
            mode,
            meta: JobMeta::parse(&body)?,
        };
        body.finish("analyze-single");
        Ok(parsed)
    }

    /// Units of the job.
    pub fn unit_count(&self) -> usize {
        match &self.mode {
            StyleMode::Single { products, .. } => products.len() * self.image_count as usize,
            StyleMode::Batch {
                references, groups, ..
            } => references.len() * *groups as usize,
            StyleMode::Refinement { products, .. } => products.len(),
        }
    }
}

/// A non-empty string field, else `code`.
fn required_string(body: &Body<'_>, field: &str, code: ErrorCode) -> Result<String, ApiError> {
    body.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
        .ok_or_else(|| ApiError::new(code))
}

fn single_mode(body: &Body<'_>) -> Result<StyleMode, ApiError> {
    let reference = required_string(
        body,
        "referenceImage",
        ErrorCode::STYLE_REFERENCE_IMAGE_MISSING,
    )?;
    let list = body
        .get("productImages")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| ApiError::new(ErrorCode::STYLE_PRODUCT_IMAGE_MISSING))?;
    // Counted before anything is copied out of the list.
    if list.len() > MAX_SINGLE_PRODUCTS {
        return Err(ApiError::bad_field(
            "productImages",
            format!("productImages holds at most {MAX_SINGLE_PRODUCTS} images"),
        ));
    }
    let products = non_empty_strings(list)
        .ok_or_else(|| ApiError::new(ErrorCode::STYLE_PRODUCT_IMAGE_MISSING))?;
    Ok(StyleMode::Single {
        reference,
        products,
    })
}

fn batch_mode(body: &Body<'_>) -> Result<StyleMode, ApiError> {
    let references = match body.get("referenceImages").and_then(Value::as_array) {
        Some(list) if !list.is_empty() && list.len() <= MAX_BATCH_REFERENCES => list,
        _ => return Err(ApiError::new(ErrorCode::BATCH_REFERENCE_IMAGES_REQUIRED)),
    };
    let references = non_empty_strings(references).ok_or_else(|| {
        ApiError::with_message(
            ErrorCode::BATCH_INPUT_INVALID,
            "referenceImages must hold non-empty strings",
        )
    })?;
    let product = required_string(
        body,
        "productImage",
        ErrorCode::BATCH_PRODUCT_IMAGE_REQUIRED,
    )?;
    let groups = group_count(body.get("groupCount"))?;
    Ok(StyleMode::Batch {
        references,
        product,
        groups,
    })
}

fn refinement_mode(body: &Body<'_>) -> Result<StyleMode, ApiError> {
    let products = body
        .get("productImages")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty() && a.len() <= MAX_REFINEMENT_IMAGES)
        .and_then(|a| non_empty_strings(a))
        .ok_or_else(|| ApiError::new(ErrorCode::REFINEMENT_PRODUCT_IMAGES_REQUIRED))?;
    if let Some(index) = products.iter().position(|p| !has_refinement_format(p)) {
        return Err(
            ApiError::new(ErrorCode::REFINEMENT_IMAGE_FORMAT_UNSUPPORTED)
                .details(serde_json::json!({"index": index, "url": products[index]})),
        );
    }
    let background = match body.get("backgroundMode") {
        None => Background::White,
        Some(v) => match v.as_str() {
            Some("white") => Background::White,
            Some("original") => Background::Original,
            _ => return Err(ApiError::new(ErrorCode::REFINEMENT_BACKGROUND_MODE_INVALID)),
        },
    };
    Ok(StyleMode::Refinement {
        products,
        background,
    })
}

/// The strings of `items` if every one is a non-empty string.
fn non_empty_strings(items: &[Value]) -> Option<Vec<String>> {
    items
        .iter()
        .map(|v| {
            v.as_str()
                .filter(|s| !s.trim().is_empty())
                .map(str::to_string)
        })
        .collect()
}

/// `analyze-style-dimensions`.
#[derive(Debug, Clone, PartialEq)]
pub struct StyleDimensions {
    pub context_text: Option<String>,
    /// The analysis as text (an object is written as JSON).
    pub analysis: Option<String>,
    pub module: String,
    /// zh or en.
    pub ui_language: String,
}

impl StyleDimensions {
    /// Reads the body as the reference does (analyze-style-dimensions/index.ts L74–78):
    /// wrong types count as absent; with neither context nor analysis the handler
    /// answers empty selections.
    pub fn parse(raw: &Value) -> Result<Self, ApiError> {
        let body = object(raw)?;
        let context_text = match body.get("contextText") {
            Some(Value::String(s)) => Some(s.trim().chars().take(MAX_CONTEXT).collect::<String>()),
            _ => None,
        }
        .filter(|s| !s.is_empty());
        let analysis = match body.get("analysisJson") {
            Some(Value::String(s)) => Some(s.trim().to_string()),
            Some(v @ (Value::Object(_) | Value::Array(_))) => serde_json::to_string_pretty(v).ok(),
            _ => None,
        }
        .filter(|s| !s.is_empty())
        .map(|s| s.chars().take(MAX_CONTEXT).collect());
        let parsed = StyleDimensions {
            context_text,
            analysis,
            module: match body.get("module") {
                Some(Value::String(m)) => m.trim().chars().take(64).collect(),
                _ => "unknown".into(),
            },
            ui_language: match body.get("uiLanguage") {
                Some(Value::String(l)) if l.to_ascii_lowercase().starts_with("zh") => "zh".into(),
                _ => "en".into(),
            },
        };
        body.finish("analyze-style-dimensions");
        Ok(parsed)
    }

    /// Whether there is anything to choose a style from.
    pub fn has_context(&self) -> bool {
        self.context_text.is_some() || self.analysis.is_some()
    }
}

/// The most characters of `contextText` or `analysisJson` sent to the model (longer
/// text is cut, not refused: the reference sends it whole).
pub const MAX_CONTEXT: usize = 16_000;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn code(result: Result<StyleReplicate, ApiError>) -> ErrorCode {
        result.unwrap_err().code
    }

    #[test]
    fn style_modes_count_their_units() {
        let single = StyleReplicate::parse(&json!({"referenceImage": "r",
            "productImages": ["a", "b"], "imageCount": 2}))
        .unwrap();
        assert_eq!(single.unit_count(), 4);
        let batch = StyleReplicate::parse(&json!({"mode": "batch", "productImage": "p",
            "referenceImages": ["a", "b", "c"], "groupCount": 2}))
        .unwrap();
        assert_eq!(batch.unit_count(), 6);
        let refine = StyleReplicate::parse(&json!({"mode": "refinement",
            "productImages": ["a.png", "b.jpg?x=1", "c.JPEG#f"]}))
        .unwrap();
        assert_eq!(refine.unit_count(), 3);
        assert_eq!(single.image_size, "2K");
    }

    #[test]
    fn style_mode_errors_have_their_own_codes() {
        let parse = |v: Value| StyleReplicate::parse(&v);
        assert_eq!(
            code(parse(json!({"productImages": ["a"]}))),
            ErrorCode::STYLE_REFERENCE_IMAGE_MISSING
        );
        assert_eq!(
            code(parse(json!({"referenceImage": "r", "productImages": [""]}))),
            ErrorCode::STYLE_PRODUCT_IMAGE_MISSING
        );
        let refs: Vec<String> = (0..13).map(|i| format!("r{i}")).collect();
        assert_eq!(
            code(parse(
                json!({"mode": "batch", "productImage": "p", "referenceImages": refs})
            )),
            ErrorCode::BATCH_REFERENCE_IMAGES_REQUIRED
        );
        assert_eq!(
            code(parse(
                json!({"mode": "batch", "productImage": "p", "referenceImages": ["a", 3]})
            )),
            ErrorCode::BATCH_INPUT_INVALID
        );
        assert_eq!(
            code(parse(json!({"mode": "batch", "referenceImages": ["a"]}))),
            ErrorCode::BATCH_PRODUCT_IMAGE_REQUIRED
        );
        let many: Vec<String> = (0..51).map(|i| format!("p{i}.png")).collect();
        assert_eq!(
            code(parse(json!({"mode": "refinement", "productImages": many}))),
            ErrorCode::REFINEMENT_PRODUCT_IMAGES_REQUIRED
        );
        let err =
            parse(json!({"mode": "refinement", "productImages": ["a.png", "b.webp"]})).unwrap_err();
        assert_eq!(
            (err.code, err.details.clone()),
            (
                ErrorCode::REFINEMENT_IMAGE_FORMAT_UNSUPPORTED,
                Some(json!({"index": 1, "url": "b.webp"}))
            )
        );
        assert_eq!(
            code(parse(
                json!({"mode": "refinement", "productImages": ["a.png"], "backgroundMode": "blue"})
            )),
            ErrorCode::REFINEMENT_BACKGROUND_MODE_INVALID
        );
        assert_eq!(
            code(parse(json!({"mode": "poster"}))),
            ErrorCode::BAD_REQUEST
        );
    }

    #[test]
    fn generate_image_checks_model_then_prompt() {
        let err = GenerateImage::parse(&json!({"prompt": "x"})).unwrap_err();
        assert_eq!(err.code, ErrorCode::BAD_REQUEST);
        let err = GenerateImage::parse(&json!({"model": "local", "prompt": "   "})).unwrap_err();
        assert_eq!(err.code, ErrorCode::IMAGE_INPUT_PROMPT_MISSING);
        let ok = GenerateImage::parse(&json!({"model": "local", "prompt": "p", "imageCount": 12,
            "productImages": ["a", "a", ""]}))
        .unwrap();
        assert_eq!((ok.image_count, ok.product_images.len()), (9, 1));
    }
}
