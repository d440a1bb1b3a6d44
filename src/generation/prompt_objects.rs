//! Image prompts as the reference's prompt objects
//! `[{prompt, title, negative_prompt, marketing_hook, priority}]`
//! (`supabase/functions/generate-prompts-v2/index.ts` L143–150, L1245): assembled from a
//! model's streamed text object by object, so that every `fullText` sent is a whole JSON
//! array, and written without a model from a genesis blueprint (L703–905).

use serde_json::{json, Map, Value};

use super::prompts::{text_language, PromptTexts};

/// One prompt object with the five fields the reference client reads, whatever the model
/// wrote: `prompt` and `title` strings (title `Image N` when missing), `negative_prompt`
/// and `marketing_hook` strings (empty when missing), `priority` an integer (0).
pub fn normalize(object: &Map<String, Value>, index: usize) -> Option<Value> {
    let text = |key: &str| {
        object
            .get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .unwrap_or_default()
            .to_string()
    };
    let prompt = text("prompt");
    if prompt.is_empty() {
        return None;
    }
    let title = Some(text("title"))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| format!("Image {}", index + 1));
    let priority = object
        .get("priority")
        .and_then(|p| p.as_i64().or_else(|| p.as_str()?.trim().parse().ok()))
        .unwrap_or(0);
    Some(json!({
        "prompt": prompt,
        "title": title,
        "negative_prompt": text("negative_prompt"),
        "marketing_hook": text("marketing_hook"),
        "priority": priority,
    }))
}

/// Collects prompt objects from streamed model text as each `{…}` closes.
#[derive(Debug, Default)]
pub struct PromptAssembler {
    raw: String,
    scanned: usize,
    depth: u32,
    in_string: bool,
    escaped: bool,
    start: Option<usize>,
    objects: Vec<Value>,
}

impl PromptAssembler {
    /// An empty assembler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next piece of model text; true when it completed a new prompt object.
    pub fn push(&mut self, text: &str) -> bool {
        self.raw.push_str(text);
        let before = self.objects.len();
        let bytes = self.raw.as_bytes();
        let mut i = self.scanned;
        while i < bytes.len() {
            let b = bytes[i];
            if self.in_string {
                match (self.escaped, b) {
                    (true, _) => self.escaped = false,
                    (false, b'\\') => self.escaped = true,
                    (false, b'"') => self.in_string = false,
                    _ => {}
                }
            } else {
                match b {
                    b'"' if self.depth > 0 => self.in_string = true,
                    b'{' => {
                        if self.depth == 0 {
                            self.start = Some(i);
                        }
                        self.depth += 1;
                    }
                    b'}' if self.depth > 0 => {
                        self.depth -= 1;
                        if let (0, Some(start)) = (self.depth, self.start.take()) {
                            let piece = &self.raw[start..=i];
                            if let Ok(Value::Object(object)) = serde_json::from_str(piece) {
                                if let Some(p) = normalize(&object, self.objects.len()) {
                                    self.objects.push(p);
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            i += 1;
        }
        self.scanned = i;
        self.objects.len() > before
    }

    /// The prompt objects so far.
    pub fn objects(&self) -> &[Value] {
        &self.objects
    }

    /// The final objects: those found, or — for a model that ignored the format and wrote
    /// one prompt per line — one object per non-empty line. True when that changed them.
    pub fn finish(&mut self) -> bool {
        if !self.objects.is_empty() {
            return false;
        }
        let lines: Vec<Value> = self
            .raw
            .lines()
            .map(|l| l.trim().trim_start_matches(['-', '*', ' ']).trim())
            .filter(|l| !l.is_empty() && !matches!(*l, "[" | "]" | "```" | "```json"))
            .enumerate()
            .filter_map(|(i, line)| {
                let mut object = Map::new();
                object.insert("prompt".into(), json!(line));
                normalize(&object, i)
            })
            .collect();
        self.objects = lines;
        !self.objects.is_empty()
    }
}

/// The `fullText` of a frame: the objects as one JSON array.
pub fn full_text(objects: &[Value]) -> String {
    Value::Array(objects.to_vec()).to_string()
}

/// What a prompt-writing call asks for.
#[derive(Debug, Clone, Copy)]
pub struct PromptAsk<'a> {
    pub count: u32,
    pub module: &'a str,
    /// The language of titles and hooks (`none` = English, no visible text).
    pub language: &'a str,
    pub clothing_mode: Option<&'a str>,
    pub profile: &'a str,
}

/// The instructions for a model writing prompt objects (`prompts/prompts*.txt`), in zh
/// when the target language is Chinese.
pub fn system_prompt(ask: PromptAsk<'_>, prompts: &PromptTexts) -> String {
    let language = match ask.language {
        "zh" => "简体中文",
        "none" => "English, with no visible text in the images",
        other => other,
    };
    let mode = ask
        .clothing_mode
        .map(|m| prompts.render("prompts_mode", ask.language, ask.profile, &[("mode", m)]))
        .unwrap_or_default();
    prompts.render(
        "prompts",
        ask.language,
        ask.profile,
        &[
            ("count", &ask.count.to_string()),
            ("module", ask.module),
            ("mode", &mode),
            ("language", language),
        ],
    )
}

/// Whether an analysis is a blueprint the genesis module can write prompts from.
pub fn is_blueprint(analysis: &Value) -> bool {
    analysis["images"]
        .as_array()
        .is_some_and(|images| images.iter().any(Value::is_object))
}

/// The genesis module's prompts, one per blueprint image, built from the blueprint with no
/// model call: the image plan, its scene recipe, the product's identity lock, the style
/// constraint and the design specs.
pub fn genesis_prompts(
    analysis: &Value,
    language: &str,
    style: Option<&str>,
    prompts: &PromptTexts,
) -> Vec<Value> {
    let identity = &analysis["product_visual_identity"];
    let color = identity["primary_color"].as_str().unwrap_or_default();
    let material = identity["material"].as_str().unwrap_or_default();
    let features: Vec<&str> = identity["key_features"]
        .as_array()
        .map(|f| f.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let specs = analysis["design_specs"].as_str().unwrap_or_default().trim();
    let summary = analysis["product_summary"].as_str().unwrap_or_default();
    let images = analysis["images"].as_array().cloned().unwrap_or_default();
    images
        .iter()
        .filter(|i| i.is_object())
        .enumerate()
        .filter_map(|(index, image)| {
            let field = |k: &str| image[k].as_str().unwrap_or_default().trim().to_string();
            let recipe: Vec<String> = image["scene_recipe"]
                .as_object()
                .map(|r| {
                    r.iter()
                        .filter_map(|(k, v)| {
                            v.as_str().map(|v| format!("{}: {v}", k.replace('_', " ")))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let separator = if text_language(language) == "zh" {
                "、"
            } else {
                ", "
            };
            let lock = prompts.render(
                "genesis_lock",
                language,
                "default",
                &[
                    ("color", color),
                    ("material", material),
                    ("features", &features.join(separator)),
                ],
            );
            let paragraphs = [
                format!("{}. {}", field("title"), field("description")),
                field("design_content"),
                recipe.join("; "),
                lock,
                style.map(str::to_string).unwrap_or_default(),
                specs.to_string(),
            ];
            let prompt = paragraphs
                .iter()
                .map(|p| p.trim())
                .filter(|p| !p.is_empty() && *p != ".")
                .collect::<Vec<_>>()
                .join("\n\n");
            let negative =
                prompts.render("genesis_negative", language, "default", &[("color", color)]);
            let description = field("description");
            let mut object = Map::new();
            object.insert("prompt".into(), json!(prompt));
            object.insert("title".into(), json!(field("title")));
            object.insert("negative_prompt".into(), json!(negative));
            object.insert(
                "marketing_hook".into(),
                json!(if description.is_empty() {
                    summary
                } else {
                    &description
                }),
            );
            object.insert("priority".into(), json!(0));
            normalize(&object, index)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_complete_across_chunks_and_strings_hide_braces() {
        let text = r#"[{"prompt": "a {red} mug \"x\"", "title": "Hero", "priority": "2"}, {"prompt": "b"}]"#;
        let mut a = PromptAssembler::new();
        let mut seen = Vec::new();
        for chunk in text.as_bytes().chunks(7) {
            a.push(std::str::from_utf8(chunk).unwrap());
            seen.push(a.objects().len());
            let parsed: Value = serde_json::from_str(&full_text(a.objects())).unwrap();
            assert!(parsed.is_array());
        }
        assert_eq!(a.objects().len(), 2);
        assert_eq!(a.objects()[0]["prompt"], "a {red} mug \"x\"");
        assert_eq!(a.objects()[0]["priority"], 2);
        assert_eq!(a.objects()[1]["title"], "Image 2");
        assert_eq!(a.objects()[1]["negative_prompt"], "");
        assert!(!a.finish());
    }

    #[test]
    fn plain_lines_become_objects_at_the_end() {
        let mut a = PromptAssembler::new();
        a.push("first prompt\n- second prompt\n");
        assert!(a.objects().is_empty());
        assert!(a.finish());
        assert_eq!(a.objects().len(), 2);
        assert_eq!(a.objects()[1]["prompt"], "second prompt");
    }

    #[test]
    fn genesis_prompts_follow_the_blueprint() {
        let blueprint = json!({"images": [{"title": "Hero", "description": "on oak",
            "design_content": "centred", "scene_recipe": {"lighting": "soft"}}, {"title": "Detail"}],
            "product_visual_identity": {"primary_color": "sage #9CAF88", "material": "ceramic",
            "key_features": ["handle"]}, "product_summary": "a mug"});
        let prompts = genesis_prompts(&blueprint, "en", Some("minimal"), &PromptTexts::default());
        assert_eq!(prompts.len(), 2);
        assert_eq!(prompts[0]["title"], "Hero");
        assert!(prompts[0]["prompt"]
            .as_str()
            .unwrap()
            .contains("sage #9CAF88"));
        assert!(prompts[0]["prompt"]
            .as_str()
            .unwrap()
            .contains("lighting: soft"));
        assert_eq!(prompts[1]["marketing_hook"], "a mug");
        assert_eq!(
            prompts,
            genesis_prompts(&blueprint, "en", Some("minimal"), &PromptTexts::default())
        );
    }
}
