//! Every built-in prompt text, in one place: the files of `prompts/` (compiled in with
//! `include_str!`), each `<name>[.<profile>].<lang>.txt` with `lang` zh or en and the
//! `ta-pro` profile's variants. A directory named by `generation.prompts_dir` replaces any
//! of them at start, without a rebuild. Texts are templates: `{key}` is replaced by
//! [`PromptTexts::render`].

use std::collections::BTreeMap;
use std::path::Path;

macro_rules! builtin {
    ($($name:literal),+ $(,)?) => {
        &[$(($name, include_str!(concat!("../../prompts/", $name, ".txt")))),+]
    };
}

/// The built-in texts by file stem.
const BUILTIN: &[(&str, &str)] = builtin![
    "analysis.en",
    "analysis.zh",
    "analysis.ta-pro.en",
    "analysis.ta-pro.zh",
    "analysis_user.en",
    "analysis_user.zh",
    "repair_json.en",
    "repair_json.zh",
    "prompts.en",
    "prompts.zh",
    "prompts.ta-pro.en",
    "prompts.ta-pro.zh",
    "prompts_mode.en",
    "prompts_mode.zh",
    "genesis_lock.en",
    "genesis_lock.zh",
    "genesis_negative.en",
    "genesis_negative.zh",
    "dimensions_system.en",
    "dimensions_system.zh",
    "dimensions_user.en",
    "dimensions_user.zh",
    "refinement.en",
    "refinement.zh",
    "refinement_user.en",
    "refinement_user.zh",
];

/// Prompt profiles that may have their own variants.
pub const PROFILES: &[&str] = &["default", "ta-pro"];

/// The prompt texts in use: the built-ins, with the configured directory's files over them.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptTexts {
    texts: BTreeMap<String, String>,
}

impl Default for PromptTexts {
    fn default() -> Self {
        PromptTexts {
            texts: BUILTIN
                .iter()
                .map(|(name, text)| (name.to_string(), text.trim_end_matches('\n').to_string()))
                .collect(),
        }
    }
}

/// The file language of a request language: zh for any Chinese, else en.
pub fn text_language(language: &str) -> &'static str {
    if language.trim().to_ascii_lowercase().starts_with("zh") {
        "zh"
    } else {
        "en"
    }
}

impl PromptTexts {
    /// The built-ins, then every `*.txt` of `dir` whose stem names a built-in text or a
    /// profile variant of one (`<name>.<profile>.<lang>`). Another file is an error, so a
    /// misspelt override does not silently do nothing.
    pub fn load(dir: Option<&Path>) -> Result<PromptTexts, String> {
        let mut prompts = PromptTexts::default();
        let Some(dir) = dir else {
            return Ok(prompts);
        };
        let entries = std::fs::read_dir(dir)
            .map_err(|e| format!("generation.prompts_dir {}: {e}", dir.display()))?;
        for entry in entries {
            let path = entry
                .map_err(|e| format!("generation.prompts_dir {}: {e}", dir.display()))?
                .path();
            let Some(stem) = path
                .extension()
                .filter(|ext| *ext == "txt")
                .and(path.file_stem())
                .and_then(|s| s.to_str())
            else {
                continue;
            };
            if !prompts.is_known(stem) {
                return Err(format!(
                    "generation.prompts_dir: {} names no prompt text (known: {})",
                    path.display(),
                    BUILTIN
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("generation.prompts_dir {}: {e}", path.display()))?;
            tracing::info!(
                prompt = stem,
                "prompt text replaced from the prompts directory"
            );
            prompts
                .texts
                .insert(stem.to_string(), text.trim_end_matches('\n').to_string());
        }
        Ok(prompts)
    }

    /// A built-in stem, or `<name>.<profile>.<lang>` of a built-in `<name>.<lang>`.
    fn is_known(&self, stem: &str) -> bool {
        if BUILTIN.iter().any(|(name, _)| *name == stem) {
            return true;
        }
        let parts: Vec<&str> = stem.split('.').collect();
        matches!(parts.as_slice(), [name, profile, lang]
            if PROFILES.contains(profile)
                && BUILTIN.iter().any(|(n, _)| *n == format!("{name}.{lang}")))
    }

    /// The text `name` for `language` (zh or en) and `profile`: the profile's variant
    /// when there is one, else the plain text, else the English one.
    pub fn text(&self, name: &str, language: &str, profile: &str) -> &str {
        let lang = text_language(language);
        [
            format!("{name}.{profile}.{lang}"),
            format!("{name}.{lang}"),
            format!("{name}.en"),
        ]
        .iter()
        .find_map(|key| self.texts.get(key))
        .map(String::as_str)
        .unwrap_or_default()
    }

    /// [`text`](Self::text) with each `{key}` replaced by its value.
    pub fn render(
        &self,
        name: &str,
        language: &str,
        profile: &str,
        vars: &[(&str, &str)],
    ) -> String {
        vars.iter().fold(
            self.text(name, language, profile).to_string(),
            |text, (key, value)| text.replace(&format!("{{{key}}}"), value),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_text_has_both_languages() {
        let prompts = PromptTexts::default();
        for (name, text) in BUILTIN {
            assert!(!text.trim().is_empty(), "{name}");
            let (base, _) = name.rsplit_once('.').unwrap();
            for lang in ["en", "zh"] {
                assert!(
                    prompts.texts.contains_key(&format!("{base}.{lang}")),
                    "{base}.{lang}"
                );
            }
        }
        assert!(prompts
            .text("analysis", "zh-CN", "default")
            .starts_with("你是"));
        assert!(prompts.text("analysis", "fr", "ta-pro").contains("TA Pro"));
        assert_eq!(
            prompts.text("repair_json", "en", "ta-pro"),
            prompts.text("repair_json", "en", "default")
        );
    }

    #[test]
    fn a_directory_replaces_texts_and_refuses_unknown_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("prompts.zh.txt"), "写 {count} 条\n").unwrap();
        std::fs::write(dir.path().join("refinement.ta-pro.en.txt"), "pro refine").unwrap();
        std::fs::write(dir.path().join("notes.md"), "ignored").unwrap();
        let prompts = PromptTexts::load(Some(dir.path())).unwrap();
        assert_eq!(
            prompts.render("prompts", "zh", "default", &[("count", "3")]),
            "写 3 条"
        );
        assert_eq!(prompts.text("refinement", "en", "ta-pro"), "pro refine");
        assert_eq!(
            prompts.text("refinement", "en", "default"),
            PromptTexts::default().text("refinement", "en", "default")
        );
        std::fs::write(dir.path().join("analysis.typo.txt"), "x").unwrap();
        assert!(PromptTexts::load(Some(dir.path())).is_err());
    }
}
