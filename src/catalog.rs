//! The model catalog (`[[models]]` in config.toml): which image models exist, what
//! they can do, what a unit costs, and whether their provider is configured.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::Config;
use crate::domain::{ApiError, ErrorCode};

/// One `[[models]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// The id clients send (`model`).
    pub id: String,
    pub label: String,
    /// `openrouter`, `gemini`, `ark` or `local`.
    pub provider: String,
    /// The model's name at the provider.
    pub upstream_model: String,
    /// Offered sizes (`1K`, `2K`, `4K`).
    pub sizes: Vec<String>,
    pub default_size: String,
    /// Offered `W:H` ratios.
    pub aspect_ratios: Vec<String>,
    /// Credits per unit, per size.
    pub costs: BTreeMap<String, i64>,
    /// Extra credits per unit with `turboEnabled`, per size.
    #[serde(default)]
    pub turbo_surcharge: BTreeMap<String, i64>,
    #[serde(default)]
    pub admin_only: bool,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// A product studio edits the seller's photo: a source image is required.
    #[serde(default = "yes")]
    pub requires_input_image: bool,
}

fn yes() -> bool {
    true
}

/// The ratios Gemini documents for image output (and `local` draws).
const GEMINI_RATIOS: &[&str] = &[
    "1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9",
];
const SEEDREAM_RATIOS: &[&str] = &["1:1", "2:3", "3:2", "3:4", "4:3", "9:16", "16:9", "21:9"];

fn entry(
    id: &str,
    label: &str,
    provider: &str,
    upstream: &str,
    costs: &[(&str, i64)],
    ratios: &[&str],
) -> ModelEntry {
    ModelEntry {
        id: id.into(),
        label: label.into(),
        provider: provider.into(),
        upstream_model: upstream.into(),
        sizes: costs.iter().map(|(s, _)| s.to_string()).collect(),
        default_size: costs
            .first()
            .map(|(s, _)| s.to_string())
            .unwrap_or_default(),
        aspect_ratios: ratios.iter().map(|r| r.to_string()).collect(),
        costs: costs.iter().map(|(s, c)| (s.to_string(), *c)).collect(),
        turbo_surcharge: BTreeMap::new(),
        admin_only: false,
        enabled: true,
        requires_input_image: true,
    }
}

/// The reference product's catalog, plus the offline `local` model.
pub fn default_models() -> Vec<ModelEntry> {
    let gemini = [
        (
            "gemini-2.5-flash",
            "Gemini 2.5 Flash Image",
            "gemini-2.5-flash-image",
            15,
        ),
        (
            "gemini-3.1-flash",
            "Gemini 3.1 Flash Image",
            "gemini-3.1-flash-image-preview",
            30,
        ),
        (
            "gemini-3-pro",
            "Gemini 3 Pro Image",
            "gemini-3-pro-image-preview",
            50,
        ),
    ];
    let mut models: Vec<ModelEntry> = gemini
        .iter()
        .map(|(id, label, upstream, cost)| {
            entry(
                &format!("or-{id}"),
                label,
                "openrouter",
                &format!("google/{upstream}"),
                &[("1K", *cost)],
                GEMINI_RATIOS,
            )
        })
        .collect();
    models.extend(gemini.iter().map(|(id, label, upstream, cost)| ModelEntry {
        admin_only: true,
        ..entry(
            &format!("ta-{id}"),
            &format!("{label} (direct)"),
            "gemini",
            upstream,
            &[("1K", *cost)],
            GEMINI_RATIOS,
        )
    }));
    models.push(entry(
        "volc-seedream-4.5",
        "Seedream 4.5",
        "ark",
        "doubao-seedream-4-5-251128",
        &[("1K", 30), ("2K", 40), ("4K", 60)],
        SEEDREAM_RATIOS,
    ));
    models.push(entry(
        "volc-seedream-5.0-lite",
        "Seedream 5.0 Lite",
        "ark",
        "doubao-seedream-5-0-lite",
        &[("1K", 20), ("2K", 30), ("4K", 45)],
        SEEDREAM_RATIOS,
    ));
    let mut local = entry(
        "local",
        "Local (offline)",
        "local",
        "local",
        &[("1K", 1), ("2K", 1), ("4K", 1)],
        GEMINI_RATIOS,
    );
    local.turbo_surcharge = local.costs.clone();
    models.push(local);
    models
}

/// Whether a provider can be called: `local` always; the others once they have a key.
pub fn provider_configured(config: &Config, provider: &str) -> bool {
    match provider {
        "local" => true,
        other => config.providers.has_key(other),
    }
}

/// A model request that passed the catalog checks.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedModel {
    pub entry: ModelEntry,
    pub size: String,
    pub unit_cost: i64,
}

/// How a requested size that the model lacks is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeRule {
    /// `IMAGE_SIZE_UNSATISFIED` (generate-image).
    Strict,
    /// Fall back to the model's largest size (analyze-single).
    FallBackToLargest,
}

/// Runs the model checks in the documented order: known → admin-only → enabled and
/// configured → size → ratio; then prices one unit.
pub fn resolve(
    config: &Config,
    model_id: &str,
    is_admin: bool,
    size: Option<&str>,
    size_rule: SizeRule,
    ratio: &str,
    turbo: bool,
) -> Result<ResolvedModel, ApiError> {
    let entry = config
        .models
        .iter()
        .find(|m| m.id == model_id)
        .ok_or_else(|| {
            ApiError::with_message(
                ErrorCode::MODEL_UNAVAILABLE,
                format!("unknown model {model_id:?}"),
            )
        })?;
    if entry.admin_only && !is_admin {
        return Err(ApiError::new(ErrorCode::MODEL_RESTRICTED));
    }
    if !entry.enabled {
        return Err(ApiError::with_message(
            ErrorCode::MODEL_UNAVAILABLE,
            format!("model {model_id:?} is disabled"),
        ));
    }
    if !provider_configured(config, &entry.provider) {
        if entry.provider == "ark" {
            return Err(ApiError::new(ErrorCode::MISSING_DOUBAO_IMAGE_API_KEY));
        }
        return Err(ApiError::with_message(
            ErrorCode::MODEL_UNAVAILABLE,
            format!(
                "model {model_id:?} needs the {} provider, which has no API key",
                entry.provider
            ),
        ));
    }
    let size = match size {
        None => entry.default_size.clone(),
        Some(s) if entry.sizes.iter().any(|x| x == s) => s.to_string(),
        Some(s) => match size_rule {
            SizeRule::FallBackToLargest => largest_size(&entry.sizes),
            SizeRule::Strict => {
                return Err(ApiError::with_message(
                    ErrorCode::IMAGE_SIZE_UNSATISFIED,
                    format!("model {model_id:?} offers {:?}, not {s:?}", entry.sizes),
                )
                .details(json!({"supported": entry.sizes})))
            }
        },
    };
    if !entry.aspect_ratios.iter().any(|r| r == ratio) {
        return Err(ApiError::with_message(
            ErrorCode::MODEL_RATIO_UNSUPPORTED,
            format!("model {model_id:?} does not offer the ratio {ratio:?}"),
        )
        .details(json!({"supported": entry.aspect_ratios})));
    }
    let unit_cost = unit_cost(entry, &size, turbo);
    Ok(ResolvedModel {
        entry: entry.clone(),
        size,
        unit_cost,
    })
}

/// `costs[size]` plus `turbo_surcharge[size]` with turbo.
pub fn unit_cost(entry: &ModelEntry, size: &str, turbo: bool) -> i64 {
    let base = entry.costs.get(size).copied().unwrap_or(0);
    let extra = if turbo {
        entry.turbo_surcharge.get(size).copied().unwrap_or(0)
    } else {
        0
    };
    base + extra
}

/// The largest of `1K`/`2K`/`4K` in `sizes`.
fn largest_size(sizes: &[String]) -> String {
    sizes
        .iter()
        .max_by_key(|s| s.trim_end_matches('K').parse::<u32>().unwrap_or(0))
        .cloned()
        .unwrap_or_else(|| "1K".into())
}

/// The catalog as get-public-config shows it.
pub fn public_models(config: &Config) -> Vec<Value> {
    config
        .models
        .iter()
        .filter(|m| m.enabled)
        .map(|m| {
            json!({
                "id": m.id, "label": m.label, "provider": m.provider, "sizes": m.sizes,
                "default_size": m.default_size, "aspect_ratios": m.aspect_ratios,
                "costs": m.costs, "turbo_surcharge": m.turbo_surcharge,
                "admin_only": m.admin_only,
                "requires_input_image": m.requires_input_image,
                "available": provider_configured(config, &m.provider),
            })
        })
        .collect()
}

/// The reference's `credit_costs`: per enabled model, its one cost, or `{size: cost}`
/// when it has several sizes.
pub fn credit_costs(config: &Config) -> Value {
    let costs: serde_json::Map<String, Value> = config
        .models
        .iter()
        .filter(|m| m.enabled)
        .map(|m| {
            let cost = match m.costs.values().collect::<Vec<_>>().as_slice() {
                [one] => json!(one),
                _ => json!(m.costs),
            };
            (m.id.clone(), cost)
        })
        .collect();
    Value::Object(costs)
}

/// The catalog entry used for text work (analysis, prompts): the configured one, else
/// the first of `or-gemini-3.1-flash` and `local`; only an enabled model whose provider
/// is configured.
pub fn text_model(config: &Config, configured: Option<&str>) -> Option<ModelEntry> {
    let candidates = match configured {
        Some(id) => vec![id],
        None => vec!["or-gemini-3.1-flash", "local"],
    };
    candidates
        .into_iter()
        .filter_map(|id| config.models.iter().find(|m| m.id == id && m.enabled))
        .find(|m| provider_configured(config, &m.provider))
        .cloned()
}

/// Checks a catalog for mistakes an operator could make: `(key, why)`.
pub fn validate(models: &[ModelEntry]) -> Result<(), (String, String)> {
    let mut seen = std::collections::HashSet::new();
    for m in models {
        let key = format!("models.{}", m.id);
        if !seen.insert(m.id.as_str()) {
            return Err((key, "duplicate model id".into()));
        }
        if !["openrouter", "gemini", "ark", "local"].contains(&m.provider.as_str()) {
            return Err((key, format!("unknown provider {:?}", m.provider)));
        }
        if m.sizes.is_empty() || !m.sizes.contains(&m.default_size) {
            return Err((key, "default_size must be one of sizes".into()));
        }
        if let Some(s) = m
            .sizes
            .iter()
            .find(|s| !["1K", "2K", "4K"].contains(&s.as_str()))
        {
            return Err((key, format!("size {s:?} is not 1K, 2K or 4K")));
        }
        if let Some(s) = m.sizes.iter().find(|s| !m.costs.contains_key(*s)) {
            return Err((key, format!("no cost for size {s}")));
        }
        if m.costs
            .values()
            .chain(m.turbo_surcharge.values())
            .any(|c| *c < 0)
        {
            return Err((key, "costs must not be negative".into()));
        }
        if let Some(r) = m
            .aspect_ratios
            .iter()
            .find(|r| crate::domain::jobs::parse_ratio(r).is_none())
        {
            return Err((key, format!("aspect ratio {r:?} is not W:H")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::default()
    }

    #[test]
    fn the_default_catalog_is_valid_and_prices_turbo() {
        let c = config();
        assert_eq!(validate(&c.models), Ok(()));
        let local = resolve(
            &c,
            "local",
            false,
            Some("2K"),
            SizeRule::Strict,
            "16:9",
            true,
        )
        .unwrap();
        assert_eq!((local.size.as_str(), local.unit_cost), ("2K", 2));
    }

    #[test]
    fn checks_run_in_the_documented_order() {
        let c = config();
        let code = |model: &str, admin: bool, size: Option<&str>, ratio: &str| {
            resolve(&c, model, admin, size, SizeRule::Strict, ratio, false)
                .unwrap_err()
                .code
        };
        assert_eq!(
            code("nope", false, None, "1:1"),
            ErrorCode::MODEL_UNAVAILABLE
        );
        assert_eq!(
            code("ta-gemini-3-pro", false, Some("9K"), "7:1"),
            ErrorCode::MODEL_RESTRICTED
        );
        assert_eq!(
            code("ta-gemini-3-pro", true, None, "1:1"),
            ErrorCode::MODEL_UNAVAILABLE
        );
        assert_eq!(
            code("volc-seedream-4.5", false, Some("9K"), "1:1"),
            ErrorCode::MISSING_DOUBAO_IMAGE_API_KEY
        );
        assert_eq!(
            code("local", false, Some("8K"), "7:1"),
            ErrorCode::IMAGE_SIZE_UNSATISFIED
        );
        assert_eq!(
            code("local", false, None, "7:1"),
            ErrorCode::MODEL_RATIO_UNSUPPORTED
        );
    }

    #[test]
    fn a_missing_size_falls_back_to_the_largest_when_asked() {
        let mut c = config();
        c.models.retain(|m| m.id == "local");
        c.models[0].sizes = vec!["1K".into(), "2K".into()];
        let r = resolve(
            &c,
            "local",
            false,
            Some("4K"),
            SizeRule::FallBackToLargest,
            "1:1",
            false,
        )
        .unwrap();
        assert_eq!(r.size, "2K");
    }

    #[test]
    fn text_work_uses_the_first_available_model() {
        assert_eq!(text_model(&config(), None).unwrap().id, "local");
    }
}
