//! `GET /openapi.json`: an OpenAPI 3.1 description of every route. `tests/openapi.rs`
//! checks it against the route definitions in `src/http/` (both ways) and probes every
//! documented operation on a running server.

use crate::domain::ErrorCode;
use serde_json::{json, Map, Value};

#[path = "openapi_auth.rs"]
mod auth_flows;
#[path = "openapi_growth.rs"]
mod growth;

/// How an operation authenticates.
#[derive(Clone, Copy)]
enum Auth {
    None,
    Bearer,
    Admin,
}

/// One documented operation.
struct Op {
    method: &'static str,
    path: &'static str,
    tag: &'static str,
    summary: &'static str,
    auth: Auth,
    body: Option<Value>,
    answer: Value,
    /// The answer's media type.
    media: &'static str,
}

fn op(method: &'static str, path: &'static str, tag: &'static str, summary: &'static str) -> Op {
    Op {
        method,
        path,
        tag,
        summary,
        auth: Auth::Bearer,
        body: None,
        answer: json!({"type": "object"}),
        media: "application/json",
    }
}

impl Op {
    fn public(mut self) -> Op {
        self.auth = Auth::None;
        self
    }
    fn admin(mut self) -> Op {
        self.auth = Auth::Admin;
        self
    }
    fn body(mut self, schema: Value) -> Op {
        self.body = Some(schema);
        self
    }
    fn answers(mut self, schema: Value) -> Op {
        self.answer = schema;
        self
    }
    /// A public page or file of the web studio, answered as `media`.
    fn web(mut self, media: &'static str) -> Op {
        self.auth = Auth::None;
        self.media = media;
        self.answer = string();
        self
    }
}

/// An object schema with these properties and required names.
fn object(props: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": props, "required": required})
}

fn string() -> Value {
    json!({"type": "string"})
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// The fields every job-creating call accepts.
fn job_fields(mut props: Value) -> Value {
    for (name, schema) in [
        ("client_job_id", json!({"type": "string", "maxLength": 128})),
        ("trace_id", json!({"type": "string", "format": "uuid"})),
        ("fe_attempt", json!({"type": "integer"})),
        ("metadata", json!({"type": "object"})),
        ("styleConstraint", reference("StyleConstraint")),
        ("promptProfile", json!({"enum": ["default", "ta-pro"]})),
    ] {
        props[name] = schema;
    }
    props
}

fn operations() -> Vec<Op> {
    let image = || reference("ImageReference");
    let job_ack = reference("JobAck");
    vec![
        op("get", "/healthz", "operations", "Liveness").public(),
        op(
            "get",
            "/readyz",
            "operations",
            "Readiness: database writable, no queue alarm",
        )
        .public(),
        op(
            "get",
            "/metrics",
            "operations",
            "Prometheus metrics (text format)",
        )
        .public()
        .answers(string()),
        op("get", "/openapi.json", "operations", "This document").public(),
        op(
            "get",
            "/functions/v1/get-public-config",
            "catalog",
            "Models, limits, billing mode and the reference's public keys",
        )
        .public()
        .answers(reference("PublicConfig")),
        op(
            "post",
            "/functions/v1/get-public-config",
            "catalog",
            "Same as GET",
        )
        .public(),
        op(
            "post",
            "/auth/v1/signup",
            "auth",
            "Create an account; returns a session, or with auth.confirm_email the bare unconfirmed user (a code is mailed)",
        )
        .public()
        .body(object(
            json!({"email": string(), "password": {"type": "string", "minLength": 8},
                       "data": {"type": "object"}}),
            &["email", "password"],
        ))
        .answers(reference("Session")),
        op(
            "post",
            "/auth/v1/token",
            "auth",
            "grant_type=password or refresh_token",
        )
        .public()
        .body(json!({"type": "object", "properties": {
                "email": string(), "password": string(), "refresh_token": string()}}))
        .answers(reference("Session")),
        op("get", "/auth/v1/user", "auth", "The signed-in user"),
        op(
            "post",
            "/auth/v1/logout",
            "auth",
            "End the session (scope global|local|others)",
        ),
        op(
            "get",
            "/v1/me",
            "account",
            "Profile and credits (subscription, purchased, held, debt, available)",
        ),
        op(
            "get",
            "/v1/packages",
            "account",
            "Credit packs and subscriptions on sale",
        )
        .public(),
        op(
            "get",
            "/v1/ledger",
            "account",
            "Own credit movements, newest first",
        ),
        op(
            "get",
            "/v1/jobs",
            "jobs",
            "Own jobs (type, status, limit, before)",
        ),
        op("get", "/v1/jobs/{id}", "jobs", "One job").answers(reference("Job")),
        op(
            "get",
            "/v1/jobs/{id}/events",
            "jobs",
            "Live job snapshots (Server-Sent Events)",
        )
        .answers(string()),
        op(
            "post",
            "/v1/jobs/{id}/cancel",
            "jobs",
            "Cancel queued units, release their holds",
        ),
        op(
            "post",
            "/functions/v1/generate-image",
            "generation",
            "IMAGE_GEN job",
        )
        .body(object(
            job_fields(json!({"model": string(), "prompt": string(),
                    "productImage": image(), "productImages": {"type": "array", "items": image()},
                    "imageCount": {"type": "integer", "minimum": 1, "maximum": 9},
                    "aspectRatio": string(), "imageSize": {"enum": ["1K", "2K", "4K"]},
                    "turboEnabled": {"type": "boolean"}, "workflowMode": string(),
                    "textEdits": {"type": "object"}})),
            &["model", "prompt"],
        ))
        .answers(job_ack.clone()),
        op(
            "post",
            "/functions/v1/analyze-product-v2",
            "generation",
            "ANALYSIS job (free)",
        )
        .body(object(
            job_fields(json!({"productImage": image(),
                    "productImages": {"type": "array", "items": image()},
                    "requirements": {"type": "string", "maxLength": 300},
                    "imageCount": {"type": "integer", "minimum": 1},
                    "outputLanguage": string(), "whiteBackground": {"type": "boolean"}})),
            &["productImage"],
        ))
        .answers(job_ack.clone()),
        op(
            "post",
            "/functions/v1/analyze-single",
            "generation",
            "STYLE_REPLICATE job",
        )
        .body(object(
            job_fields(json!({"mode": {"enum": ["single", "batch", "refinement"]},
                    "model": string(), "referenceImage": image(),
                    "referenceImages": {"type": "array", "items": image(), "maxItems": 12},
                    "productImage": image(),
                    "productImages": {"type": "array", "items": image(), "maxItems": 50},
                    "groupCount": {"type": "integer", "minimum": 1, "maximum": 9},
                    "imageCount": {"type": "integer"}, "aspectRatio": string(),
                    "imageSize": string(), "userPrompt": {"type": "string", "maxLength": 300},
                    "backgroundMode": {"enum": ["white", "original"]},
                    "turboEnabled": {"type": "boolean"}})),
            &[],
        ))
        .answers(job_ack),
        op(
            "post",
            "/functions/v1/generate-prompts-v2",
            "generation",
            "Image prompts, streamed (SSE)",
        )
        .body(object(
            json!({"analysisJson": {"type": ["object", "string"]},
                       "imageCount": {"type": "integer", "minimum": 1, "maximum": 15},
                       "module": {"enum": ["genesis", "default", "clothing", "ecom-detail"]},
                       "outputLanguage": string(), "stream": {"type": "boolean"}}),
            &["analysisJson"],
        ))
        .answers(string()),
        op(
            "post",
            "/functions/v1/analyze-style-dimensions",
            "generation",
            "Style selections, answered at once",
        )
        .body(json!({"type": "object", "properties": {
                "contextText": string(), "analysisJson": {"type": ["object", "string"]},
                "module": string(), "uiLanguage": string()}}))
        .answers(object(json!({
            "selections": object(json!({
                "sceneStyle": {"enum": ["minimal", "natural", "urban", "luxury", "industrial"]},
                "lighting": {"enum": ["natural", "warm", "cool", "dramatic", "soft"]},
                "composition": {"enum": ["front", "overhead45", "topDown", "closeUp", "wide"]},
                "colorTone": {"enum": ["original", "warmTone", "coolTone", "monochrome", "vibrant"]},
                "material": {"enum": ["default", "matte", "glossy", "wood", "marble"]}}), &[]),
            "confidence": {"type": "number"}, "source": {"const": "ai"}, "model": string()}),
            &["selections", "confidence", "source"])),
        op(
            "post",
            "/functions/v1/process-generation-job",
            "generation",
            "Compatibility nudge",
        )
        .body(object(json!({"job_id": string()}), &["job_id"])),
        op(
            "post",
            "/functions/v1/get-oss-sts",
            "files",
            "A signed single-object upload URL",
        )
        .body(object(
            json!({"bucket": {"enum": ["temp", "uploads"], "default": "temp"},
                       "prefix": {"type": "string", "default": "temp/uploads"},
                       "key": string(),
                       "expiresIn": {"type": "integer", "default": 900,
                                     "description": "clamped to 60..3600"}}),
            &[],
        )),
        op(
            "put",
            "/storage/v1/object/upload/{bucket}/{key}",
            "files",
            "Upload the bytes (signed URL)",
        )
        .public()
        .answers(object(
            json!({"key": string(), "url": string()}),
            &["key", "url"],
        )),
        op(
            "get",
            "/storage/v1/object/public/{bucket}/{key}",
            "files",
            "A stored image (Range, ETag)",
        )
        .public()
        .answers(json!({"type": "string", "format": "binary"})),
        op(
            "head",
            "/storage/v1/object/public/{bucket}/{key}",
            "files",
            "A stored image's headers",
        )
        .public(),
        op(
            "post",
            "/v1/admin/credits",
            "admin",
            "Grant or deduct credits (idempotent)",
        )
        .admin()
        .body(object(
            json!({"user_id": string(),
                       "amount": {"type": "integer", "minimum": -1_000_000_000i64,
                                  "maximum": 1_000_000_000i64, "not": {"const": 0}},
                       "reason": string(), "idempotency_key": string()}),
            &["user_id", "amount", "reason"],
        )),
        op(
            "get",
            "/v1/admin/queue",
            "admin",
            "Queue depth, running units, providers",
        )
        .admin(),
        op(
            "get",
            "/v1/admin/webhook-events",
            "admin",
            "The latest Stripe webhook events and their result (limit; result=parked: the waiting ones, oldest first, with wait_for and age_seconds)",
        )
        .admin(),
        op(
            "get",
            "/v1/admin/users",
            "admin",
            "Users by email (query, limit) with credits",
        )
        .admin(),
        op(
            "get",
            "/v1/admin/jobs",
            "admin",
            "Everyone's jobs (status, type, limit, before)",
        )
        .admin(),
        op(
            "post",
            "/v1/admin/jobs/{id}/retry",
            "admin",
            "Run a finished job's failed units again as a new job",
        )
        .admin()
        .answers(reference("JobAck")),
        op(
            "post",
            "/functions/v1/create-credit-checkout",
            "billing",
            "Checkout session for a subscription",
        )
        .body(object(
            json!({"packageId": {"type": "string", "format": "uuid"},
                "returnTo": {"type": "string", "default": "/pricing",
                    "description": "an app path; anything else falls back to /pricing"},
                "currency": {"type": "string", "default": "usd",
                    "description": "usd, cny or hkd; anything else falls back to usd"}}),
            &["packageId"],
        ))
        .answers(reference("CheckoutSession")),
        op(
            "post",
            "/functions/v1/create-onetime-checkout",
            "billing",
            "Checkout session for a credit pack",
        )
        .body(object(
            json!({"packageId": {"type": "string", "format": "uuid"},
                "returnTo": {"type": "string", "default": "/pricing",
                    "description": "an app path; anything else falls back to /pricing"},
                "currency": {"type": "string", "default": "usd",
                    "description": "usd, cny or hkd; anything else falls back to usd"}}),
            &["packageId"],
        ))
        .answers(reference("CheckoutSession")),
        op(
            "post",
            "/functions/v1/create-portal-session",
            "billing",
            "Stripe customer portal session",
        )
        .body(object(
            json!({"returnTo": {"type": "string", "default": "/profile",
                "description": "an app path; anything else falls back to /profile"}}),
            &[],
        ))
        .answers(object(json!({"url": string()}), &["url"])),
        op(
            "post",
            "/functions/v1/stripe-webhook",
            "billing",
            "Stripe events, verified by Stripe-Signature, applied exactly once",
        )
        .public()
        .answers(object(json!({"ok": {"const": true}}), &["ok"])),
        op(
            "get",
            "/v1/billing/transactions",
            "billing",
            "Own payments and refunds, newest first (limit, before)",
        ),
        op(
            "get",
            "/dev/checkout/{id}",
            "billing",
            "Simulated checkout page (HTML; simulated mode only)",
        )
        .public()
        .answers(string()),
        op(
            "post",
            "/dev/checkout/{id}/pay",
            "billing",
            "Simulated payment: a signed checkout.session.completed, then 303 to the success URL",
        )
        .public(),
        op(
            "post",
            "/dev/checkout/{id}/cancel",
            "billing",
            "Simulated cancel: 303 to the cancel URL",
        )
        .public(),
        op(
            "post",
            "/functions/v1/create-alipay-checkout",
            "billing",
            "Alipay order (page.pay on desktop, wap.pay on mobile, from the User-Agent)",
        )
        .body(object(
            json!({"packageId": {"type": "string", "format": "uuid"},
                "returnTo": {"type": "string", "default": "/pricing"}}),
            &["packageId"],
        ))
        .answers(object(
            json!({"url": string(), "surface": {"enum": ["page", "wap"]},
                "out_trade_no": string()}),
            &["url", "surface", "out_trade_no"],
        )),
        op(
            "post",
            "/functions/v1/alipay-notify",
            "billing",
            "Alipay notify (form-encoded, RSA2-verified); answers the text success or fail",
        )
        .public()
        .answers(string()),
        op(
            "post",
            "/v1/admin/alipay/orders/{out_trade_no}/refund",
            "admin",
            "Refund an Alipay order (alipay.trade.refund), reversing its credits",
        )
        .admin()
        .body(object(json!({"amount": {"type": "integer", "minimum": 1}}), &[])),
        op(
            "get",
            "/dev/alipay/{out_trade_no}",
            "billing",
            "Simulated Alipay page (HTML; Alipay not configured only)",
        )
        .public()
        .answers(string()),
        op(
            "post",
            "/dev/alipay/{out_trade_no}/pay",
            "billing",
            "Simulated Alipay payment: a signed notify through alipay-notify, then 303",
        )
        .public(),
        op(
            "get",
            "/dev/portal/{customer}",
            "billing",
            "Simulated customer portal (HTML; simulated mode only)",
        )
        .public()
        .answers(string()),
        op("get", "/", "web", "The studio (HTML page)").web("text/html"),
        op("get", "/admin", "web", "The admin console (HTML page)").web("text/html"),
        op(
            "get",
            "/assets/{path}",
            "web",
            "A stylesheet or ES module of the pages (?v= for long caching)",
        )
        .web("text/javascript"),
        op(
            "get",
            "/rest/v1/{relation}",
            "supabase",
            "PostgREST read of generation_jobs, profiles, transactions or packages (owner rows; select, filters, order, limit, offset, Range, Prefer count=exact, single object); PostgREST error bodies",
        )
        .public()
        .answers(json!({"type": ["array", "object"]})),
        op(
            "head",
            "/rest/v1/{relation}",
            "supabase",
            "Same as GET without a body (counts through Content-Range)",
        )
        .public(),
        op(
            "post",
            "/rest/v1/{relation}",
            "supabase",
            "Refused (403 42501): /rest/v1 is read-only; PATCH, PUT and DELETE likewise",
        )
        .public(),
        op(
            "post",
            "/rest/v1/rpc/{name}",
            "supabase",
            "A remote procedure mapped onto Atelier's ledger: bind_invite_code {p_code} → {success, inviter_user_id}, claim_redeem_code {p_code} → {success, claim_id, credits}; a refusal is 200 {success: false, code, message} (UNAUTHORIZED without a user); unknown function or arguments → 404 PGRST202",
        )
        .public(),
        op(
            "get",
            "/realtime/v1/websocket",
            "supabase",
            "WebSocket upgrade: Supabase Realtime's Phoenix protocol (vsn 1.0.0 or 2.0.0), postgres_changes of generation_jobs and profiles for the token's user",
        )
        .public(),
    ]
}

fn components() -> Value {
    json!({
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        "schemas": {
            "ErrorEnvelope": object(json!({"error": object(json!({
                "code": reference("ErrorCode"), "message": string(), "details": {}}), &["code", "message"])}),
                &["error"]),
            "ErrorCode": {"type": "string",
                "description": "Every error code (ERROR_CODES.md), also the job error codes: UPSTREAM_REJECTED (the upstream refused the request with a 4xx), PROMPT_BLOCKED_BY_PROVIDER_POLICY (a provider's safety/moderation block), IMAGE_INPUT_INVALID_CONTENT_TYPE (an input that is not a PNG, JPEG or WebP image), IMAGE_INPUT_SOURCE_TIMEOUT (fetching an input timed out), TASK_STALE_NO_HEARTBEAT (a unit's lease expired without a report, on its last attempt)",
                "enum": ErrorCode::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>()},
            "ImageReference": {"type": "string",
                "description": "An http(s) URL (fetched through the SSRF guard), a data:image/(png|jpeg|webp);base64 URI, or a stored object URL"},
            "StyleConstraint": object(json!({"selections": {"type": "object"},
                "prompt": {"type": "string", "maxLength": 600}, "source": string()}), &[]),
            "JobAck": object(json!({"job_id": string(), "status": {"const": "processing"}}),
                &["job_id", "status"]),
            "Job": object(json!({"id": string(), "type": {"enum": ["ANALYSIS", "IMAGE_GEN", "STYLE_REPLICATE"]},
                "status": {"enum": ["processing", "success", "failed"]}, "payload": {},
                "result_data": {}, "result_url": {"type": ["string", "null"]},
                "error_code": {"anyOf": [reference("ErrorCode"), {"type": "null"}]},
                "cost_amount": {"type": "integer"}}),
                &["id", "type", "status"]),
            "PublicConfig": object(json!({"models": {"type": "array"},
                "signup_bonus_credits": {"type": "integer"}, "limits": {"type": "object"},
                "billing_mode": string(),
                "credit_costs": {"type": "object", "additionalProperties":
                    {"anyOf": [{"type": "integer"}, {"type": "object"}]}},
                "batch_concurrency": {"type": "integer"},
                "ta_pro_prompt_profile_enabled": {"type": "boolean"},
                "release_notes": object(json!({"en": string(), "zh": string()}), &["en", "zh"]),
                "platform_rules": object(json!({"version": string(), "rules": {"type": "array",
                    "items": object(json!({"value": string(), "minImages": {"type": "integer"}}),
                        &["value", "minImages"])}}), &["version", "rules"])}),
                &["credit_costs", "batch_concurrency", "ta_pro_prompt_profile_enabled",
                  "release_notes", "platform_rules"]),
            "CheckoutSession": object(json!({"url": string(), "id": string()}), &["url", "id"]),
            "Session": object(json!({"access_token": string(), "token_type": string(),
                "expires_in": {"type": "integer"}, "expires_at": {"type": "integer"},
                "refresh_token": string(), "user": {"type": "object"}}),
                &["access_token", "refresh_token", "user"]),
        }
    })
}

fn operation_json(op: &Op) -> Value {
    let mut operation = json!({
        "tags": [op.tag],
        "summary": op.summary,
        "operationId": format!("{}{}", op.method, op.path.replace(['/', '{', '}', '.', '-'], "_")),
        "responses": {
            "200": {"description": "OK", "content": {op.media: {"schema": op.answer}}},
            "default": {"description": "An error", "content": {"application/json": {"schema": reference("ErrorEnvelope")}}},
        },
    });
    match op.auth {
        Auth::None => operation["security"] = json!([]),
        Auth::Bearer => {}
        Auth::Admin => {
            operation["description"] = json!("Needs the admin role (else 403 FORBIDDEN).")
        }
    }
    if let Some(schema) = &op.body {
        operation["requestBody"] =
            json!({"required": true, "content": {"application/json": {"schema": schema}}});
    }
    let params: Vec<Value> = op
        .path
        .split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": string()}))
        .collect();
    if !params.is_empty() {
        operation["parameters"] = Value::Array(params);
    }
    operation
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for op in operations()
        .into_iter()
        .chain(growth::operations())
        .chain(auth_flows::operations())
    {
        let entry = paths
            .entry(op.path.to_string())
            .or_insert_with(|| json!({}));
        entry[op.method] = operation_json(&op);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Atelier",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The backend of an AI product-photo studio. Errors are always {\"error\":{\"code\",\"message\",\"details\"}} (GoTrue's shape under /auth/v1).",
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": components(),
    })
}
