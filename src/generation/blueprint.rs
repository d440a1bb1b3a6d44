//! Product analysis as the reference's blueprint (`process-generation-job/index.ts`
//! `normalizeBlueprint` L779–866, `_ai_meta` L6218–6233): `{images:[{title, description,
//! design_content, type, scene_recipe}], design_specs, copy_analysis, product_summary,
//! product_visual_identity, style_directions, commercial_intent, subject_profile |
//! garment_profile | tryon_strategy, _ai_meta}` per `studioType` and `clothingMode`, and the
//! fallback blueprint used when the model's JSON stays broken.

use serde_json::{json, Map, Value};

use super::prompts::PromptTexts;

/// The warning a fallback blueprint carries (reference L6231).
pub const PARSE_WARNING: &str = "ANALYSIS_JSON_PARSE_FAILED_FALLBACK_USED";

/// Most image plans one analysis writes (reference L836).
pub const MAX_PLANS: usize = 15;

/// What the seller asked the analysis for (read from the unit's input).
#[derive(Debug, Clone, PartialEq)]
pub struct BlueprintAsk {
    /// genesis | ecom-detail | ecommerce
    pub studio_type: String,
    /// product_analysis | refinement_analysis | model_strategy (or none)
    pub clothing_mode: Option<String>,
    pub image_count: usize,
    pub detail_closeup_count: usize,
    pub selling_point_count: usize,
    pub ecom_detail_modules: Vec<String>,
    pub white_background: bool,
    pub has_model_image: bool,
    /// zh or en: the language of the plan texts.
    pub ui_language: String,
    /// The language of visible copy (`none` = no text in the images).
    pub output_language: String,
    pub prompt_profile: String,
    pub requirements: String,
}

impl BlueprintAsk {
    /// Reads the ask from a unit's input (written by `analyze-product-v2`).
    pub fn from_input(input: &Value) -> BlueprintAsk {
        let count = |k: &str| input[k].as_u64().unwrap_or(0) as usize;
        let text = |k: &str, d: &str| input[k].as_str().unwrap_or(d).to_string();
        BlueprintAsk {
            studio_type: text("studio_type", "genesis"),
            clothing_mode: input["clothing_mode"].as_str().map(str::to_string),
            image_count: count("image_count").clamp(1, MAX_PLANS),
            detail_closeup_count: count("detail_closeup_count"),
            selling_point_count: count("selling_point_count"),
            ecom_detail_modules: input["ecom_detail_modules"]
                .as_array()
                .map(|m| {
                    m.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            white_background: input["white_background"].as_bool().unwrap_or(false),
            has_model_image: input["model_image"].as_str().is_some_and(|m| !m.is_empty()),
            ui_language: if text("ui_language", "en").starts_with("zh") {
                "zh".into()
            } else {
                "en".into()
            },
            output_language: text("output_language", "en"),
            prompt_profile: text("prompt_profile", "default"),
            requirements: text("requirements", ""),
        }
    }

    fn zh(&self) -> bool {
        self.ui_language == "zh"
    }

    /// The plan types, in order: one per ecom-detail module; otherwise the white
    /// background shot (if asked), detail close-ups, selling points, then scenes, the
    /// first non-white plan being the hero — `image_count` in all, at most 15.
    pub fn plan_types(&self) -> Vec<String> {
        if self.studio_type == "ecom-detail" && !self.ecom_detail_modules.is_empty() {
            return self
                .ecom_detail_modules
                .iter()
                .take(MAX_PLANS)
                .cloned()
                .collect();
        }
        let total = self.image_count.max(
            usize::from(self.white_background)
                + self.detail_closeup_count
                + self.selling_point_count,
        );
        let mut types = Vec::new();
        if self.white_background {
            types.push("white_background".to_string());
        }
        types.extend(std::iter::repeat_n(
            "detail".to_string(),
            self.detail_closeup_count,
        ));
        types.extend(std::iter::repeat_n(
            "selling_point".to_string(),
            self.selling_point_count,
        ));
        while types.len() < total {
            let hero = !types.iter().any(|t| t == "hero" || t == "scene");
            types.push(if hero { "hero" } else { "scene" }.to_string());
        }
        if let Some(first) = types.iter().position(|t| t != "white_background") {
            if types[first] == "scene" {
                types[first] = "hero".into();
            }
        }
        types.truncate(MAX_PLANS);
        types
    }

    /// The profile key this clothing mode writes.
    fn profile_key(&self) -> Option<&'static str> {
        match self.clothing_mode.as_deref() {
            Some("model_strategy") => Some("tryon_strategy"),
            Some("product_analysis") | Some("refinement_analysis") => Some("garment_profile"),
            _ if self.studio_type == "genesis" => Some("subject_profile"),
            _ => None,
        }
    }
}

/// The instructions for the vision model: the blueprint keys, per studio and mode, in
/// the ask's language and prompt profile (`prompts/analysis*.txt`).
pub fn instructions(ask: &BlueprintAsk, prompts: &PromptTexts) -> String {
    let types = ask.plan_types();
    let profile = ask
        .profile_key()
        .map(|k| format!(", {k} (object)"))
        .unwrap_or_default();
    prompts.render(
        "analysis",
        &ask.ui_language,
        &ask.prompt_profile,
        &[
            ("count", &types.len().to_string()),
            ("types", &types.join(", ")),
            ("profile", &profile),
            ("studio", &ask.studio_type),
            ("language", &ask.output_language),
        ],
    )
}

/// The blueprint from the model's parsed JSON (`None` when it stayed broken: the fallback
/// with `parse_warning`). Missing or wrong keys get the reference's defaults; the plan
/// count follows the ask.
pub fn normalize(parsed: Option<&Map<String, Value>>, ask: &BlueprintAsk, model: &str) -> Value {
    let empty = Map::new();
    let source = parsed.unwrap_or(&empty);
    let zh = ask.zh();
    let text = |v: Option<&Value>, d: &str| {
        v.and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or(d)
            .to_string()
    };
    let given: Vec<&Map<String, Value>> = source
        .get("images")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_object).collect())
        .unwrap_or_default();
    let images: Vec<Value> = ask
        .plan_types()
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            let item = given.get(i).or(given.last()).copied().unwrap_or(&empty);
            let title = if zh {
                format!("图片方案 {}", i + 1)
            } else {
                format!("Image Concept {}", i + 1)
            };
            let description = if zh {
                "专业电商视觉概念。"
            } else {
                "Professional e-commerce visual concept."
            };
            let title = match given.get(i) {
                Some(item) => text(item.get("title"), &title),
                None if !given.is_empty() => {
                    format!("{} {}", text(item.get("title"), &title), i + 1)
                }
                None => title,
            };
            json!({
                "title": title,
                "description": text(item.get("description"), description),
                "design_content": text(item.get("design_content"), &fallback_design(i, kind, ask)),
                "type": kind,
                "scene_recipe": item.get("scene_recipe").filter(|r| r.is_object()).cloned()
                    .unwrap_or_else(|| scene_recipe(kind, zh)),
            })
        })
        .collect();
    let object = |k: &str| source.get(k).filter(|v| v.is_object()).cloned();
    let summary = text(
        source.get("product_summary").or(source.get("product_name")),
        if zh {
            "电商产品"
        } else {
            "An e-commerce product"
        },
    );
    let mut blueprint = json!({
        "images": images,
        "design_specs": text(source.get("design_specs"), &fallback_specs(zh)),
        "copy_analysis": object("copy_analysis").unwrap_or_else(|| json!({
            "shared_copy": if ask.output_language == "none" { String::new() } else { summary.clone() },
        })),
        "product_summary": summary,
        "product_visual_identity": object("product_visual_identity").unwrap_or_else(|| json!({
            "primary_color": "", "material": "", "key_features": [],
        })),
        "style_directions": source.get("style_directions").filter(|v| v.is_array()).cloned()
            .unwrap_or_else(|| json!([])),
        "commercial_intent": object("commercial_intent").unwrap_or_else(|| json!({})),
    });
    if let Some(key) = ask.profile_key() {
        blueprint[key] = object(key).unwrap_or_else(|| json!({}));
    }
    // Atelier's own analysis keys stay beside the blueprint.
    for (key, default) in [
        ("product_name", json!("")),
        ("category", json!("")),
        ("style", json!("")),
        ("selling_points", json!([])),
        ("materials", json!([])),
        ("colors", json!([])),
        ("image_prompts_seed", json!([])),
    ] {
        blueprint[key] = source.get(key).cloned().unwrap_or(default);
    }
    let failed = parsed.is_none();
    blueprint["_ai_meta"] = json!({
        "model": model,
        "image_count": ask.plan_types().len(),
        "target_language": ask.output_language,
        "ui_language": ask.ui_language,
        "studio_type": ask.studio_type,
        "clothing_mode": ask.clothing_mode,
        "prompt_profile": ask.prompt_profile,
        "white_background": ask.white_background,
        "model_image_used": ask.has_model_image,
        "parse_failed": failed,
        "parse_warning": if failed { Value::from(PARSE_WARNING) } else { Value::Null },
    });
    blueprint
}

/// The `local` provider's analysis: a deterministic model answer in the blueprint's shape.
pub fn local_answer(ask: &BlueprintAsk) -> Value {
    let hint = if ask.requirements.is_empty() {
        "product"
    } else {
        ask.requirements.as_str()
    };
    let hint: String = hint.chars().take(80).collect();
    let images: Vec<Value> = ask
        .plan_types()
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            json!({"title": format!("{} {}", kind.replace('_', " "), i + 1),
                   "description": format!("{kind} shot of the {hint}"),
                   "design_content": format!("## Image [{}]: {kind}\n- Product centred, soft studio light", i + 1),
                   "type": kind, "scene_recipe": scene_recipe(kind, ask.zh())})
        })
        .collect();
    json!({
        "images": images,
        "design_specs": "# Design specs\n- Colors: as photographed\n- Lighting: soft box",
        "copy_analysis": {"shared_copy": format!("Studio product ({hint})")},
        "product_summary": format!("Studio product ({hint})"),
        "product_visual_identity": {"primary_color": "as photographed", "material": "unknown",
                                    "key_features": ["clean design"]},
        "style_directions": [{"name": "minimal studio"}],
        "commercial_intent": {"audience": "online shoppers"},
        "product_name": format!("Studio product ({hint})"),
        "category": "general merchandise",
        "selling_points": ["clean design", "everyday use", "gift-ready packaging"],
        "materials": ["unknown"],
        "colors": ["as photographed"],
        "style": "minimal studio",
        "image_prompts_seed": ["the product centred on a seamless white background, soft shadow"],
        "source": "local",
    })
}

fn scene_recipe(kind: &str, zh: bool) -> Value {
    let white = kind == "white_background";
    match (white, zh) {
        (true, false) => {
            json!({"background_surface": "pure white seamless", "lighting": "even soft box"})
        }
        (true, true) => json!({"background_surface": "纯白无缝背景", "lighting": "均匀柔光"}),
        (false, false) => {
            json!({"background_surface": "clean studio set", "lighting": "soft-box diffused light"})
        }
        (false, true) => {
            json!({"background_surface": "简洁影棚背景", "lighting": "柔光箱漫射照明"})
        }
    }
}

fn fallback_design(i: usize, kind: &str, ask: &BlueprintAsk) -> String {
    let text_area = if ask.output_language == "none" {
        "No-text area"
    } else {
        "Top-left area"
    };
    if ask.zh() {
        format!("## 图片 [{}]：{kind}\n\n**设计目标**：以高端商业品质呈现产品。\n\n**构图方案**：\n- 产品占比：70%\n- 布局方式：居中构图", i + 1)
    } else {
        format!(
            "## Image [{}]: {kind}\n\n**Design Goal**: Present product with premium commercial \
             quality.\n\n**Composition Plan**:\n- Product Proportion: 70%\n- Layout Method: Center \
             composition\n- Text Area: {text_area}",
            i + 1
        )
    }
}

fn fallback_specs(zh: bool) -> String {
    if zh {
        "# 整体设计规范\n\n## 色彩体系\n- 主色调：以产品为主导\n\n## 摄影风格\n- 照明：柔光箱漫射光"
            .into()
    } else {
        "# Overall Design Specifications\n\n## Color System\n- Primary color: Product-led\n\n\
         ## Photography Style\n- Lighting: Soft-box diffused light with rim highlights"
            .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(input: Value) -> BlueprintAsk {
        BlueprintAsk::from_input(&input)
    }

    #[test]
    fn plan_types_follow_counts_and_modules() {
        let a = ask(json!({"image_count": 4, "white_background": true, "detail_closeup_count": 1}));
        assert_eq!(
            a.plan_types(),
            ["white_background", "detail", "hero", "scene"]
        );
        let m = ask(
            json!({"studio_type": "ecom-detail", "ecom_detail_modules": ["hero", "size_chart"]}),
        );
        assert_eq!(m.plan_types(), ["hero", "size_chart"]);
        assert_eq!(ask(json!({"image_count": 99})).plan_types().len(), 15);
    }

    #[test]
    fn the_fallback_blueprint_has_every_key_and_the_warning() {
        let a = ask(json!({"image_count": 2, "clothing_mode": "model_strategy"}));
        let b = normalize(None, &a, "m");
        assert_eq!(b["images"].as_array().unwrap().len(), 2);
        assert!(b["tryon_strategy"].is_object());
        assert!(b["design_specs"].is_string());
        assert_eq!(b["_ai_meta"]["parse_warning"], PARSE_WARNING);
        let ok = normalize(local_answer(&a).as_object(), &a, "m");
        assert!(ok["_ai_meta"]["parse_warning"].is_null());
        assert_eq!(ok["product_visual_identity"]["material"], "unknown");
    }
}
