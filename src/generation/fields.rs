//! Typed reads of JSON body fields: a wrong type names the field (400 `BAD_REQUEST`
//! with `details.field`), or answers the field's own error code where it has one.

use std::cell::RefCell;
use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::domain::{ApiError, ErrorCode};

/// A JSON object body, remembering which fields were read so that the rest can be
/// reported as unknown (ignored, as the reference ignores them).
pub struct Body<'a>(pub &'a Map<String, Value>, RefCell<BTreeSet<String>>);

/// The body as an object, or `BAD_REQUEST`.
pub fn object(body: &Value) -> Result<Body<'_>, ApiError> {
    body.as_object()
        .map(|map| Body(map, RefCell::default()))
        .ok_or_else(|| {
            ApiError::with_message(ErrorCode::BAD_REQUEST, "the body must be a JSON object")
        })
}

/// Logs at debug the fields of `body` not in `known`: the reference ignores unknown
/// fields, so Atelier does too (never a 400), but says so for whoever debugs a client.
pub fn ignore_unknown(endpoint: &str, body: &Value, known: &[&str]) {
    if let Some(map) = body.as_object() {
        log_unknown(endpoint, map, |k| known.contains(&k));
    }
}

fn log_unknown(endpoint: &str, map: &Map<String, Value>, known: impl Fn(&str) -> bool) {
    let unknown: Vec<&str> = map
        .keys()
        .map(String::as_str)
        .filter(|k| !known(k))
        .collect();
    if !unknown.is_empty() {
        tracing::debug!(endpoint, fields = ?unknown, "unknown body fields ignored");
    }
}

fn wrong(field: &str, what: &str) -> ApiError {
    ApiError::bad_field(field, format!("{field} must be {what}"))
}

impl Body<'_> {
    /// The field, treating `null` as absent.
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.1.borrow_mut().insert(field.to_string());
        self.0.get(field).filter(|v| !v.is_null())
    }

    /// Logs the fields no parse step read (see [`ignore_unknown`]); call once parsed.
    pub fn finish(&self, endpoint: &str) {
        let seen = self.1.borrow();
        log_unknown(endpoint, self.0, |k| seen.contains(k));
    }

    pub fn string(&self, field: &str) -> Result<Option<String>, ApiError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(wrong(field, "a string")),
        }
    }

    /// A string of at most `max` characters.
    pub fn short_string(&self, field: &str, max: usize) -> Result<Option<String>, ApiError> {
        let value = self.string(field)?;
        if value.as_ref().is_some_and(|s| s.chars().count() > max) {
            return Err(wrong(field, &format!("at most {max} characters")));
        }
        Ok(value)
    }

    /// One of `allowed`, or absent.
    pub fn choice(&self, field: &str, allowed: &[&str]) -> Result<Option<String>, ApiError> {
        match self.string(field)? {
            Some(v) if !allowed.contains(&v.as_str()) => {
                Err(wrong(field, &format!("one of {}", allowed.join(", "))))
            }
            other => Ok(other),
        }
    }

    pub fn bool(&self, field: &str) -> Result<Option<bool>, ApiError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(wrong(field, "true or false")),
        }
    }

    /// An integer (a JSON number without a fraction).
    pub fn int(&self, field: &str) -> Result<Option<i64>, ApiError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| wrong(field, "an integer")),
        }
    }

    /// An object of at most `max_bytes` serialized.
    pub fn small_object(&self, field: &str, max_bytes: usize) -> Result<Option<Value>, ApiError> {
        match self.get(field) {
            None => Ok(None),
            Some(v @ Value::Object(_)) if v.to_string().len() <= max_bytes => Ok(Some(v.clone())),
            Some(Value::Object(_)) => Err(wrong(field, &format!("at most {max_bytes} bytes"))),
            Some(_) => Err(wrong(field, "an object")),
        }
    }

    /// An array of strings, or absent; a wrong type answers `code`.
    pub fn strings_or(
        &self,
        field: &str,
        code: ErrorCode,
    ) -> Result<Option<Vec<String>>, ApiError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| {
                    ApiError::with_message(code, format!("{field} must hold only strings"))
                        .details(serde_json::json!({"field": field}))
                }),
            Some(_) => Err(
                ApiError::with_message(code, format!("{field} must be an array"))
                    .details(serde_json::json!({"field": field})),
            ),
        }
    }
}

/// The fields every job-creating call may carry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobMeta {
    pub trace_id: Option<String>,
    pub client_job_id: Option<String>,
    pub fe_attempt: Option<i64>,
    pub metadata: Option<Value>,
}

impl JobMeta {
    pub fn parse(body: &Body<'_>) -> Result<JobMeta, ApiError> {
        Ok(JobMeta {
            trace_id: body.short_string("trace_id", 128)?,
            client_job_id: body.short_string("client_job_id", 128)?,
            fe_attempt: body.int("fe_attempt")?,
            metadata: body.small_object("metadata", 16 * 1024)?,
        })
    }
}
