//! The HTTP surface: a warp route tree of thin handlers, plus the layer every response
//! passes through (request id, CORS, error envelope for rejections, panics, the log line).

mod account;
mod admin;
mod admin_ops;
mod alipay;
mod auth;
mod auth_flows;
mod billing;
mod extract;
mod generate;
mod growth;
mod jobs;
mod mail;
mod openapi;
mod ops;
mod paging;
mod pricing;
mod prompts;
mod realtime;
pub mod reply;
mod rest;
mod sse;
mod storage;
mod web;

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, Method};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::app::AppState;
use crate::db::accounts::User;
use crate::domain::{ApiError, ErrorCode};
pub use extract::Request;
use reply::ErrorInfo;

/// Shared state handed to every handler.
pub type State = Arc<AppState>;

/// The whole route tree, answering every request (never rejecting).
pub fn routes(state: State) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    // Each module's routes are boxed: one long chain of filter types overflows the
    // compiler's trait solver in release builds (E0275).
    let groups: [BoxedFilter<(Response,)>; 17] = [
        ops::routes(state.clone()).boxed(),
        auth::routes(state.clone()).boxed(),
        account::routes(state.clone()).boxed(),
        jobs::routes(state.clone()).boxed(),
        generate::routes(state.clone()).boxed(),
        prompts::routes(state.clone()).boxed(),
        admin::routes(state.clone()).boxed(),
        admin_ops::routes(state.clone()).boxed(),
        growth::routes(state.clone()).boxed(),
        pricing::routes(state.clone()).boxed(),
        mail::routes(state.clone()).boxed(),
        storage::routes(state.clone()).boxed(),
        billing::routes(state.clone()).boxed(),
        alipay::routes(state.clone()).boxed(),
        web::routes(state.clone()).boxed(),
        rest::routes(state.clone()).boxed(),
        realtime::routes(state.clone()).boxed(),
    ];
    let api = groups
        .into_iter()
        .reduce(|all, group| all.or(group).unify().boxed())
        .expect("at least one route group");
    let app = api
        .with(cors(&state.config.server.cors_origins))
        .recover(recover_rejection)
        .map(Reply::into_response);
    request_context()
        .and(app)
        .map(move |ctx, response| finish(&state, ctx, response))
}

/// Injects the shared state.
fn with_state(state: State) -> impl Filter<Extract = (State,), Error = Infallible> + Clone {
    warp::any().map(move || state.clone())
}

/// A handler's request with the configured JSON body limit.
fn request(state: &State) -> impl Filter<Extract = (Request,), Error = Rejection> + Clone {
    extract::request(state.config.server.json_body_limit_bytes)
}

/// Runs a handler, turning a panic into a 500 `INTERNAL_ERROR` (logged with the request id).
async fn guard(handler: impl Future<Output = Response>) -> Response {
    match AssertUnwindSafe(handler).catch_unwind().await {
        Ok(response) => response,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            reply::error(&ApiError::internal().cause(format!("handler panicked: {what}")))
        }
    }
}

/// The signed-in user of a request, or 401 `UNAUTHORIZED`.
pub async fn authenticate(state: &State, req: &Request) -> Result<User, ApiError> {
    let token = req
        .bearer()
        .ok_or_else(|| ApiError::with_message(ErrorCode::UNAUTHORIZED, "missing bearer token"))?;
    state
        .auth
        .authenticate(token)
        .await
        .map(|(user, _)| user)
        .map_err(|why| {
            ApiError::with_message(ErrorCode::UNAUTHORIZED, "invalid or expired access token")
                .cause(why)
        })
}

/// The signed-in user of a request that starts new work (a job, a checkout): 401
/// without a valid token, 503 `MAINTENANCE` while maintenance is on (admins excepted).
pub async fn authenticate_new_work(state: &State, req: &Request) -> Result<User, ApiError> {
    let user = authenticate(state, req).await?;
    state.maintenance.refuse(&state.db, Some(&user)).await?;
    Ok(user)
}

/// The headers browsers may send: Atelier's own plus every one supabase-js and its
/// sub-clients set (postgrest-js: `prefer`, `range`, `accept-profile`, `content-profile`,
/// `x-retry-count`; functions-js: `x-region`; auth-js: `x-supabase-api-version`).
const CORS_ALLOW_HEADERS: [&str; 20] = [
    "authorization",
    "content-type",
    "accept",
    "apikey",
    "x-client-info",
    "x-supabase-api-version",
    "x-retry-count",
    "x-region",
    "prefer",
    "range",
    "range-unit",
    "accept-profile",
    "content-profile",
    "x-upsert",
    "cache-control",
    "x-request-id",
    "idempotency-key",
    "x-worker-secret",
    "last-event-id",
    "if-none-match",
];

fn cors(origins: &[String]) -> warp::cors::Cors {
    let builder = warp::cors()
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::HEAD,
            Method::OPTIONS,
        ])
        .allow_headers(CORS_ALLOW_HEADERS)
        .expose_headers([
            "x-request-id",
            "retry-after",
            "etag",
            "content-range",
            "range-unit",
            "preference-applied",
        ])
        .max_age(600);
    if origins.iter().any(|o| o == "*") {
        builder.allow_any_origin().build()
    } else {
        builder
            .allow_origins(origins.iter().map(String::as_str))
            .build()
    }
}

/// Turns warp's rejections (no route, wrong method, CORS, bad query) into the envelope.
async fn recover_rejection(rejection: Rejection) -> Result<Response, Infallible> {
    use warp::reject;
    let err = if let Some(extract::BodyRejected(err)) = rejection.find() {
        err.clone()
    } else if rejection.is_not_found() {
        ApiError::with_message(ErrorCode::NOT_FOUND, "no such route")
    } else if rejection.find::<reject::MethodNotAllowed>().is_some() {
        ApiError::with_message(ErrorCode::BAD_REQUEST, "method not allowed on this path")
            .status(405)
    } else if rejection.find::<reject::PayloadTooLarge>().is_some() {
        ApiError::with_message(ErrorCode::BAD_REQUEST, "request body too large").status(413)
    } else if rejection.find::<reject::LengthRequired>().is_some() {
        ApiError::with_message(ErrorCode::BAD_REQUEST, "Content-Length required").status(411)
    } else if rejection.find::<reject::UnsupportedMediaType>().is_some() {
        ApiError::with_message(ErrorCode::BAD_REQUEST, "unsupported content type").status(415)
    } else if rejection.find::<reject::InvalidQuery>().is_some() {
        ApiError::with_message(ErrorCode::BAD_REQUEST, "invalid query string")
    } else if let Some(cors) = rejection.find::<warp::cors::CorsForbidden>() {
        ApiError::with_message(ErrorCode::FORBIDDEN, "CORS request forbidden")
            .cause(cors.to_string())
    } else if let Some(header) = rejection.find::<reject::InvalidHeader>() {
        ApiError::with_message(
            ErrorCode::BAD_REQUEST,
            format!("invalid header {}", header.name()),
        )
    } else if let Some(header) = rejection.find::<reject::MissingHeader>() {
        ApiError::with_message(
            ErrorCode::BAD_REQUEST,
            format!("missing header {}", header.name()),
        )
    } else {
        ApiError::internal().cause(format!("unhandled rejection: {rejection:?}"))
    };
    Ok(reply::error(&err))
}

/// What the outer layer knows about a request before routing.
struct RequestContext {
    id: String,
    method: Method,
    path: String,
    started: Instant,
    /// The bearer token, read only to name the user in the log line.
    bearer: Option<String>,
}

fn request_context() -> impl Filter<Extract = (RequestContext,), Error = Infallible> + Clone {
    warp::header::optional::<String>("x-request-id")
        .or(warp::any().map(|| None))
        .unify()
        .and(warp::method())
        .and(warp::path::full())
        .and(
            warp::header::optional::<String>("authorization")
                .or(warp::any().map(|| None))
                .unify(),
        )
        .map(
            |id: Option<String>, method, path: warp::path::FullPath, auth: Option<String>| {
                RequestContext {
                    id: id
                        .filter(|id| valid_request_id(id))
                        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
                    method,
                    path: path.as_str().to_string(),
                    started: Instant::now(),
                    bearer: auth.and_then(|h| h.strip_prefix("Bearer ").map(str::to_string)),
                }
            },
        )
}

fn valid_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// Adds `x-request-id`, answers GoTrue-shaped errors under `/auth/v1`, counts the
/// request and writes its log line (with the user, never the token).
fn finish(state: &State, ctx: RequestContext, mut response: Response) -> Response {
    if ctx.path.starts_with("/auth/v1") {
        response = auth::gotrue_shape(response);
    }
    if let Ok(value) = HeaderValue::from_str(&ctx.id) {
        response.headers_mut().insert("x-request-id", value);
    }
    let status = response.status().as_u16();
    let elapsed = ctx.started.elapsed();
    let route = crate::ops::metrics::route_label(&ctx.path);
    state
        .metrics
        .http_requests
        .with_label_values(&[route.as_str(), ctx.method.as_str(), &status.to_string()])
        .inc();
    state
        .metrics
        .http_latency
        .with_label_values(&[route.as_str()])
        .observe(elapsed.as_secs_f64());
    let latency_ms = (elapsed.as_secs_f64() * 100_000.0).round() / 100.0;
    let user_id = ctx
        .bearer
        .as_deref()
        .and_then(|token| state.auth.keys().verify(token).ok())
        .map(|claims| claims.sub)
        .unwrap_or_default();
    let info = response.extensions().get::<ErrorInfo>();
    let code = info.map(|i| i.code.as_str()).unwrap_or("");
    let cause = info.and_then(|i| i.cause.as_deref()).unwrap_or("");
    if status >= 500 {
        tracing::error!(request_id = %ctx.id, method = %ctx.method, path = %ctx.path, route,
            status, latency_ms, user_id, code, cause, "request failed");
    } else {
        tracing::info!(request_id = %ctx.id, method = %ctx.method, path = %ctx.path, route,
            status, latency_ms, user_id, code, "request");
    }
    response
}
