//! Job results in the reference product's shapes, beside Atelier's own `units`/`images`:
//! the size an output is delivered at (`size_status`), IMAGE_GEN's top-level result fields
//! and STYLE_REPLICATE's `outputs[]` + `summary` (reference
//! `supabase/functions/process-generation-job/index.ts` L4519–4646, L6612–6634, L6898–6965).

use serde_json::{json, Map, Value};

/// How an output's size compares with the requested edge (reference L4519).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeStatus {
    /// The longest edge is the requested one.
    Exact,
    /// Larger than requested: the server scaled it down.
    NormalizedDown,
    /// Smaller than requested: delivered as is.
    TooSmall,
}

impl SizeStatus {
    /// The reference's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SizeStatus::Exact => "exact",
            SizeStatus::NormalizedDown => "normalized_down",
            SizeStatus::TooSmall => "too_small",
        }
    }
}

/// The longest edge a size label asks for: 1K 1024, 4K 4096, anything else 2048 (L4454).
pub fn longest_edge(image_size: &str) -> u32 {
    match image_size {
        "1K" => 1024,
        "4K" => 4096,
        _ => 2048,
    }
}

/// What to deliver for an output of `actual` pixels asked at `image_size`: its status and
/// the delivered size (the same ratio, longest edge = the requested one when too large).
pub fn delivery(actual: (u32, u32), image_size: &str) -> (SizeStatus, (u32, u32)) {
    let target = longest_edge(image_size);
    let (w, h) = actual;
    let longest = w.max(h);
    if longest > target {
        let scale = |v: u32| {
            ((f64::from(v) * f64::from(target) / f64::from(longest)).round() as u32).max(1)
        };
        let delivered = if w >= h {
            (target, scale(h))
        } else {
            (scale(w), target)
        };
        (SizeStatus::NormalizedDown, delivered)
    } else if longest < target {
        (SizeStatus::TooSmall, actual)
    } else {
        (SizeStatus::Exact, actual)
    }
}

/// The reference's `requested_size` "WxH": its Seedream base size for the ratio, scaled
/// to the requested edge in steps of 64, at least 512 (`_shared/qn-image.ts` L344,
/// worker L4460).
pub fn requested_size(aspect_ratio: &str, image_size: &str) -> String {
    let (w, h): (u32, u32) = match aspect_ratio {
        "2:3" => (2048, 3072),
        "3:2" => (3072, 2048),
        "3:4" => (1920, 2560),
        "4:3" => (2560, 1920),
        "9:16" => (1440, 2560),
        "16:9" => (2560, 1440),
        "4:5" => (2048, 2560),
        "5:4" => (2560, 2048),
        "1:2" => (1440, 2880),
        "2:1" => (2880, 1440),
        "21:9" => (3360, 1440),
        _ => (2048, 2048),
    };
    let longest = w.max(h);
    let target = longest_edge(image_size);
    if longest == target {
        return format!("{w}x{h}");
    }
    let scale = f64::from(target) / f64::from(longest);
    let round64 = |v: u32| ((f64::from(v) * scale / 64.0).round() as u32 * 64).max(512);
    format!("{}x{}", round64(w), round64(h))
}

/// `{w, h}` as the reference writes sizes.
pub fn size_json((w, h): (u32, u32)) -> Value {
    json!({"w": w, "h": h})
}

/// One unit of a job as the result shapes need it.
#[derive(Debug, Clone, Copy)]
pub struct UnitView<'a> {
    pub index: i64,
    /// queued | running | success | failed | cancelled
    pub status: &'a str,
    pub input: &'a Value,
    pub result: Option<&'a Value>,
    pub error_message: Option<&'a str>,
}

/// The job a result belongs to.
#[derive(Debug, Clone, Copy)]
pub struct JobView<'a> {
    /// IMAGE_GEN or STYLE_REPLICATE (others get no reference fields).
    pub job_type: &'a str,
    pub provider: &'a str,
    pub model: &'a str,
    /// The request body as the client sent it.
    pub payload: &'a Value,
}

/// The size fields every image result carries, read from a unit's stored result.
const SIZE_FIELDS: [&str; 7] = [
    "object_path",
    "mime_type",
    "provider_size",
    "actual_size",
    "delivered_size",
    "size_status",
    "normalized_by_server",
];

/// The reference's fields for an image job's `result_data`: the first successful unit's
/// `provider, model, image_size, requested_size, provider_size, actual_size,
/// delivered_size, size_status, normalized_by_server, mime_type, object_path, metadata`;
/// STYLE_REPLICATE adds `outputs[]` and `summary`.
pub fn reference_fields(job: JobView<'_>, units: &[UnitView<'_>]) -> Map<String, Value> {
    let mut out = Map::new();
    if job.job_type != "IMAGE_GEN" && job.job_type != "STYLE_REPLICATE" {
        return out;
    }
    let first_input = units.first().map(|u| u.input).unwrap_or(&Value::Null);
    let image_size = first_input["image_size"].as_str().unwrap_or("1K");
    let ratio = first_input["aspect_ratio"].as_str().unwrap_or("1:1");
    let first = units
        .iter()
        .filter(|u| u.status == "success")
        .find_map(|u| u.result.filter(|r| r.get("url").is_some()));
    out.insert("provider".into(), json!(job.provider));
    out.insert("model".into(), json!(job.model));
    out.insert("image_size".into(), json!(image_size));
    out.insert(
        "requested_size".into(),
        json!(requested_size(ratio, image_size)),
    );
    for key in SIZE_FIELDS {
        let value = first.and_then(|r| r.get(key)).cloned();
        let value = match (key, value) {
            ("size_status", None) => json!("unknown"),
            ("normalized_by_server", None) => json!(false),
            (_, v) => v.unwrap_or(Value::Null),
        };
        out.insert(key.into(), value);
    }
    let mut metadata = json!({
        "prompt_profile": job.payload["promptProfile"].as_str().unwrap_or("default"),
        "style_constraint_applied": first_input["style_constraint"]["prompt"].is_string(),
        "style_constraint_source": job.payload["styleConstraint"]["source"].clone(),
        "input_transport": input_transport(first_input),
    });
    if job.job_type == "IMAGE_GEN" {
        let count = first_input["product_images"].as_array().map_or(0, Vec::len);
        metadata["input_image_count"] = json!(count);
        metadata["used_input_image_count"] = json!(count);
    } else {
        let mode = first_input["mode"].as_str().unwrap_or("single");
        metadata["requested_aspect_ratio"] = json!(ratio);
        metadata["background_mode"] = match mode {
            "refinement" => first_input["background"].clone(),
            _ => Value::Null,
        };
        out.insert(
            "outputs".into(),
            Value::Array(units.iter().map(output).collect()),
        );
        out.insert("summary".into(), summary(units, mode));
    }
    out.insert("metadata".into(), metadata);
    out
}

/// `url` when every image reference of a unit is a URL or stored object, else `data_url`.
fn input_transport(input: &Value) -> &'static str {
    let refs = input["product_images"]
        .as_array()
        .into_iter()
        .flatten()
        .chain([&input["product_image"], &input["reference_image"]]);
    let inline = refs
        .filter_map(Value::as_str)
        .any(|r| r.starts_with("data:"));
    if inline {
        "data_url"
    } else {
        "url"
    }
}

/// The reference's `unit_status`: pending until the unit ends, cancelled counts as failed.
fn unit_status(status: &str) -> &'static str {
    match status {
        "success" => "success",
        "failed" | "cancelled" => "failed",
        _ => "pending",
    }
}

/// One STYLE_REPLICATE output item (reference L4648–4663, L7117–7140).
fn output(unit: &UnitView<'_>) -> Value {
    let result = unit.result.filter(|_| unit.status == "success");
    let field = |key: &str| {
        result
            .and_then(|r| r.get(key))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let index = |key: &str, default: i64| unit.input[key].as_i64().unwrap_or(default);
    let mode = unit.input["mode"].as_str().unwrap_or("single");
    let mut item = json!({
        "url": field("url"),
        "object_path": field("object_path"),
        "mime_type": field("mime_type"),
        "provider_size": field("provider_size"),
        "actual_size": field("actual_size"),
        "delivered_size": field("delivered_size"),
        "size_status": result.and_then(|r| r.get("size_status")).cloned().unwrap_or(json!("unknown")),
        "normalized_by_server": result.and_then(|r| r.get("normalized_by_server")).cloned().unwrap_or(json!(false)),
        "prompt_source": unit.result.and_then(|r| r.get("prompt_source")).cloned()
            .unwrap_or(if mode == "refinement" && unit.status == "success" { json!("fallback") } else { Value::Null }),
        "reference_index": index("reference_index", 0),
        "group_index": index("group_index", 0),
        "product_index": index("product_index", 0),
        "unit_status": unit_status(unit.status),
    });
    if unit_status(unit.status) == "failed" {
        item["error_message"] = json!(unit.error_message.unwrap_or("the unit failed"));
    }
    item
}

/// `summary {requested_count, completed_count, success_count, failed_count, mode}`.
fn summary(units: &[UnitView<'_>], mode: &str) -> Value {
    let count = |s: &str| units.iter().filter(|u| unit_status(u.status) == s).count();
    let (success, failed) = (count("success"), count("failed"));
    json!({
        "requested_count": units.len(),
        "completed_count": success + failed,
        "success_count": success,
        "failed_count": failed,
        "mode": mode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_delivered_at_the_requested_edge_or_smaller() {
        assert_eq!(
            delivery((1024, 1024), "1K"),
            (SizeStatus::Exact, (1024, 1024))
        );
        assert_eq!(
            delivery((2048, 1152), "1K"),
            (SizeStatus::NormalizedDown, (1024, 576))
        );
        assert_eq!(
            delivery((1152, 2048), "1K"),
            (SizeStatus::NormalizedDown, (576, 1024))
        );
        assert_eq!(
            delivery((512, 512), "2K"),
            (SizeStatus::TooSmall, (512, 512))
        );
    }

    #[test]
    fn requested_sizes_follow_the_reference_table() {
        assert_eq!(requested_size("1:1", "2K"), "2048x2048");
        assert_eq!(requested_size("1:1", "1K"), "1024x1024");
        assert_eq!(requested_size("16:9", "1K"), "1024x576");
        assert_eq!(requested_size("3:4", "4K"), "3072x4096");
        assert_eq!(requested_size("weird", "1K"), "1024x1024");
    }
}
