//! `/rest/v1`: the read-only PostgREST subset the reference client uses, over the views
//! of `db::rest`, and `/rest/v1/rpc/<name>`. Errors are PostgREST's
//! `{code, message, details, hint}`, not Atelier's envelope, because postgrest-js reads
//! that shape.

use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde_json::{json, Map, Value};
use warp::http::{HeaderValue, Method};
use warp::reply::Response;
use warp::Filter;

use super::{growth, guard, reply, request, storage::base_url, with_state, Request, State};
use crate::actors::growth::rpc_answer;
use crate::auth::jwt::{ANON_ROLE, SERVICE_ROLE};
use crate::db::accounts::User;
use crate::db::rest::{self, QueryError, Relation, Scope};
use crate::domain::postgrest::{self, ParseError, ReadQuery};

pub fn routes(state: State) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let rpc = warp::path!("rest" / "v1" / "rpc" / String)
        .and(warp::method())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|name, method, state, req| guard(call_rpc(state, name, method, req)));
    let relation = warp::path!("rest" / "v1" / String)
        .and(warp::method())
        .and(raw_query())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|name, method, query, state, req| {
            guard(relation_request(state, name, method, query, req))
        });
    rpc.or(relation).unify()
}

/// The raw query string ("" when there is none).
fn raw_query() -> impl Filter<Extract = (String,), Error = std::convert::Infallible> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify()
}

/// Who is reading.
pub enum Reader {
    /// A signed-in user (an admin user too: `/rest/v1` never widens for them).
    User(User),
    /// The service-role key: every row.
    Service,
    /// The anon key, or no credential at all.
    Anonymous,
}

impl Reader {
    /// The rows this reader may see.
    pub fn scope(&self) -> Scope {
        match self {
            Reader::User(user) => Scope::Owner(user.id.clone()),
            Reader::Service => Scope::All,
            Reader::Anonymous => Scope::Anonymous,
        }
    }
}

/// A PostgREST error answer.
pub struct PgError {
    status: u16,
    code: &'static str,
    message: String,
    details: Option<String>,
    hint: Option<String>,
}

impl PgError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> PgError {
        PgError {
            status,
            code,
            message: message.into(),
            details: None,
            hint: None,
        }
    }

    fn details(mut self, details: impl Into<String>) -> PgError {
        self.details = Some(details.into());
        self
    }

    fn hint(mut self, hint: impl Into<String>) -> PgError {
        self.hint = Some(hint.into());
        self
    }

    fn internal(cause: impl std::fmt::Display) -> PgError {
        tracing::error!(cause = %cause, "rest read failed");
        PgError::new(500, "XX000", "internal error")
    }

    /// The answer.
    pub fn response(&self) -> Response {
        reply::json(
            self.status,
            &json!({"code": self.code, "message": self.message,
                    "details": self.details, "hint": self.hint}),
        )
    }
}

impl From<ParseError> for PgError {
    fn from(err: ParseError) -> PgError {
        let status = if err.code == "PGRST103" { 416 } else { 400 };
        PgError::new(status, err.code, err.message).details(err.details)
    }
}

/// The reader of a request: the bearer token (supabase-js always sends one: the session's
/// access token, else the anon key), else the `apikey` header.
pub async fn reader(state: &State, req: &Request) -> Result<Reader, PgError> {
    let token = req.bearer().or_else(|| req.header("apikey"));
    reader_of(state, token).await
}

/// The reader a token stands for (`None`: anonymous).
pub async fn reader_of(state: &State, token: Option<&str>) -> Result<Reader, PgError> {
    let Some(token) = token else {
        return Ok(Reader::Anonymous);
    };
    if state.config.auth.anon_key.as_deref() == Some(token) {
        return Ok(Reader::Anonymous);
    }
    match state.auth.keys().verify_key(token).as_deref() {
        Ok(SERVICE_ROLE) => return Ok(Reader::Service),
        Ok(ANON_ROLE) => return Ok(Reader::Anonymous),
        _ => {}
    }
    match state.auth.authenticate(token).await {
        Ok((user, _)) => Ok(Reader::User(user)),
        Err(why) => {
            let message = if why.contains("ExpiredSignature") {
                "JWT expired"
            } else {
                "JWT could not be verified"
            };
            Err(PgError::new(401, "PGRST301", message).details(why))
        }
    }
}

async fn relation_request(
    state: State,
    name: String,
    method: Method,
    raw: String,
    req: Request,
) -> Response {
    match read_relation(&state, &name, &method, &raw, &req).await {
        Ok(response) => response,
        Err(err) => err.response(),
    }
}

async fn read_relation(
    state: &State,
    name: &str,
    method: &Method,
    raw: &str,
    req: &Request,
) -> Result<Response, PgError> {
    let relation = rest::relation(name).ok_or_else(|| unknown_relation(name))?;
    let who = reader(state, req).await?;
    if *method != Method::GET && *method != Method::HEAD {
        // Read-only by construction: nothing under /rest/v1 writes.
        return Err(PgError::new(
            403,
            "42501",
            format!("permission denied for table {}", relation.name),
        )
        .hint("Atelier's /rest/v1 is read-only; use the /functions/v1 and /v1 APIs"));
    }
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(raw.as_bytes())
        .into_owned()
        .collect();
    let mut query = postgrest::parse(&pairs)?;
    if query.limit.is_none() && query.offset.is_none() {
        if let Some(range) = req.header("range") {
            let (offset, limit) = postgrest::parse_range(range)?;
            query.offset = Some(offset);
            query.limit = limit;
        }
    }
    let count = req.header("prefer").is_some_and(|p| {
        p.contains("count=exact") || p.contains("count=planned") || p.contains("count=estimated")
    });
    if matches!(who, Reader::Service) {
        tracing::info!(relation = relation.name, query = raw, "service-role read");
    }
    let scope = who.scope();
    let run = query.clone();
    let rows = state
        .db
        .read(move |conn| rest::read(conn, relation, &scope, &run, count))
        .await
        .map_err(PgError::internal)?
        .map_err(|err| query_error(relation, err))?;
    let base = base_url(state, req);
    let mut items = rows.rows;
    if relation.name == rest::GENERATION_JOBS.name {
        for row in &mut items {
            absolutize_row(row, &base);
        }
    }
    answer(method, req, &query, items, rows.total)
}

/// The body, `Content-Range` and status of a read.
fn answer(
    method: &Method,
    req: &Request,
    query: &ReadQuery,
    rows: Vec<Map<String, Value>>,
    total: Option<u64>,
) -> Result<Response, PgError> {
    let single = req
        .header("accept")
        .is_some_and(|a| a.contains("application/vnd.pgrst.object+json"));
    let offset = query.offset.unwrap_or(0);
    let n = rows.len() as u64;
    let range = if n == 0 {
        "*".to_string()
    } else {
        format!("{}-{}", offset, offset + n - 1)
    };
    let content_range = format!(
        "{range}/{}",
        total.map(|t| t.to_string()).unwrap_or_else(|| "*".into())
    );
    let (body, content_type) = if single {
        if rows.len() != 1 {
            return Err(PgError::new(
                406,
                "PGRST116",
                "Cannot coerce the result to a single JSON object",
            )
            .details(format!("The result contains {} rows", rows.len())));
        }
        let row = rows
            .into_iter()
            .next()
            .map(Value::Object)
            .unwrap_or(Value::Null);
        (row, "application/vnd.pgrst.object+json; charset=utf-8")
    } else {
        (
            Value::Array(rows.into_iter().map(Value::Object).collect()),
            "application/json; charset=utf-8",
        )
    };
    let partial = total.is_some_and(|t| t > n && (query.limit.is_some() || offset > 0));
    let status = if partial { 206 } else { 200 };
    let bytes = if *method == Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from(serde_json::to_vec(&body).map_err(PgError::internal)?)
    };
    let mut response = reply::with_body(status, "application/json", bytes);
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(&content_range) {
        headers.insert("content-range", value);
    }
    Ok(response)
}

fn unknown_relation(name: &str) -> PgError {
    let names: Vec<String> = rest::RELATIONS
        .iter()
        .map(|r| format!("public.{}", r.name))
        .collect();
    PgError::new(
        404,
        "PGRST205",
        format!("Could not find the table 'public.{name}' in the schema cache"),
    )
    .hint(format!("Atelier serves {}", names.join(", ")))
}

fn query_error(relation: &Relation, err: QueryError) -> PgError {
    match err {
        QueryError::UnknownColumn(column) => PgError::new(
            400,
            "42703",
            format!("column {}.{column} does not exist", relation.name),
        ),
        QueryError::BadValue { column, value } => PgError::new(
            400,
            "22P02",
            format!(
                "invalid input syntax for {}.{column}: \"{value}\"",
                relation.name
            ),
        ),
        QueryError::BadOperator { column, op } => PgError::new(
            400,
            "42883",
            format!(
                "operator {op} does not exist for {}.{column}",
                relation.name
            ),
        ),
    }
}

/// Makes the storage URLs of a job row absolute (`result_url`, and every string in
/// `result_data` and `payload` that is a path under `/storage/v1/`): the reference
/// client runs on another origin.
pub fn absolutize_row(row: &mut Map<String, Value>, base: &str) {
    for key in ["result_url", "result_data", "payload"] {
        if let Some(value) = row.get_mut(key) {
            absolutize(value, base);
        }
    }
}

fn absolutize(value: &mut Value, base: &str) {
    match value {
        Value::String(text) if text.starts_with("/storage/v1/") => {
            *text = format!("{base}{text}");
        }
        Value::Array(items) => items.iter_mut().for_each(|v| absolutize(v, base)),
        Value::Object(map) => map.values_mut().for_each(|v| absolutize(v, base)),
        _ => {}
    }
}

/// A remote procedure: called with the reader and the JSON arguments; answers the
/// function's JSON value (sent with 200) or a PostgREST error.
type Rpc = fn(State, Reader, Value) -> BoxFuture<'static, Result<Value, PgError>>;

/// The procedures `/rest/v1/rpc/<name>` dispatches to, each mapped onto Atelier's own
/// ledger operation, with the reference's signatures (`p_code text`) and answers
/// (`{success, …}` or `{success: false, code, message}`, always 200).
const RPCS: &[(&str, Rpc)] = &[
    ("bind_invite_code", |state, who, args| {
        Box::pin(bind_invite_code(state, who, args))
    }),
    ("claim_redeem_code", |state, who, args| {
        Box::pin(claim_redeem_code(state, who, args))
    }),
];

/// `bind_invite_code(p_code)` → `{success: true, inviter_user_id}`.
async fn bind_invite_code(state: State, who: Reader, args: Value) -> Result<Value, PgError> {
    let code = code_argument("bind_invite_code", &args)?;
    let Some(user) = signed_in(who) else {
        return Ok(unauthorized());
    };
    let bound = growth::bind_code(&state, &user, code).await;
    Ok(rpc_answer(
        bound.map(|b| json!({"inviter_user_id": b.inviter_id})),
    ))
}

/// `claim_redeem_code(p_code)` → `{success: true, claim_id, credits}`.
async fn claim_redeem_code(state: State, who: Reader, args: Value) -> Result<Value, PgError> {
    let code = code_argument("claim_redeem_code", &args)?;
    let Some(user) = signed_in(who) else {
        return Ok(unauthorized());
    };
    let claimed = growth::redeem_code(&state, &user, code).await;
    Ok(rpc_answer(claimed.map(
        |c| json!({"claim_id": c.claim_id, "credits": c.credits}),
    )))
}

/// The user behind an RPC call: the functions act for `auth.uid()`, which neither the
/// anon key nor the service role has.
fn signed_in(who: Reader) -> Option<User> {
    match who {
        Reader::User(user) => Some(user),
        Reader::Service | Reader::Anonymous => None,
    }
}

/// The reference's answer when `auth.uid()` is null.
fn unauthorized() -> Value {
    json!({"success": false, "code": "UNAUTHORIZED", "message": "Unauthorized"})
}

/// The one argument `p_code text` (null: empty). Other argument names find no function,
/// as PostgREST matches a function by its argument names.
fn code_argument(function: &str, args: &Value) -> Result<String, PgError> {
    let Some(fields) = args.as_object() else {
        return Err(PgError::new(400, "PGRST102", "Empty or invalid json")
            .details("the arguments must be a JSON object"));
    };
    if fields.len() != 1 || !fields.contains_key("p_code") {
        let names: Vec<&str> = fields.keys().map(String::as_str).collect();
        let signature = if names.is_empty() {
            format!("public.{function} without parameters")
        } else {
            format!("public.{function}({})", names.join(", "))
        };
        return Err(no_function(&signature).hint(format!(
            "Perhaps you meant to call the function public.{function}(p_code)"
        )));
    }
    Ok(match &fields["p_code"] {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    })
}

/// PostgREST's 404 for a function it does not know (`signature`: `public.name(args)`).
fn no_function(signature: &str) -> PgError {
    PgError::new(
        404,
        "PGRST202",
        format!("Could not find the function {signature} in the schema cache"),
    )
    .details(format!(
        "Searched for the function {signature}, but no matches were found in the schema cache."
    ))
}

async fn call_rpc(state: State, name: String, method: Method, req: Request) -> Response {
    let result = async {
        let Some((_, rpc)) = RPCS.iter().find(|(n, _)| *n == name) else {
            return Err(no_function(&format!("public.{name}")));
        };
        if method != Method::POST {
            return Err(PgError::new(
                405,
                "PGRST101",
                "Only POST is allowed for this function",
            ));
        }
        let who = reader(&state, &req).await?;
        let args: Value = if req.body.is_empty() {
            json!({})
        } else {
            serde_json::from_slice(&req.body).map_err(|e| {
                PgError::new(400, "PGRST102", "Empty or invalid json").details(e.to_string())
            })?
        };
        rpc(state.clone(), who, args).await
    };
    match result.await {
        Ok(value) => reply::json(200, &value),
        Err(err) => err.response(),
    }
}
