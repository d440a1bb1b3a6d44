//! Billing routes: checkout and portal sessions, the Stripe webhook, the caller's
//! transactions, and the simulated checkout pages (`/dev/…`, simulated mode only).

use std::collections::HashMap;

use serde_json::{json, Value};
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::paging::{next_cursor, page_limit};
use super::storage::base_url;
use super::{
    authenticate, authenticate_new_work, guard, reply, request, with_state, Request, State,
};
use crate::actors::billing_apply::Applied;
use crate::db::billing;
use crate::domain::billing::{return_to_or, CheckoutRequest, PurchaseType, CHECKOUT_FIELDS};
use crate::domain::time::rfc3339;
use crate::domain::{ApiError, ErrorCode};
use crate::generation::fields::ignore_unknown;
use crate::stripe::simulated;

pub fn routes(state: State) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let subscription = warp::path!("functions" / "v1" / "create-credit-checkout")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, req| guard(checkout(state, req, PurchaseType::Subscription)));
    let one_time = warp::path!("functions" / "v1" / "create-onetime-checkout")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, req| guard(checkout(state, req, PurchaseType::OneTime)));
    let portal = warp::path!("functions" / "v1" / "create-portal-session")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, req| guard(portal(state, req)));
    let webhook = warp::path!("functions" / "v1" / "stripe-webhook")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, req| guard(webhook(state, req)));
    let transactions = warp::path!("v1" / "billing" / "transactions")
        .and(warp::get())
        .and(with_state(state.clone()))
        .and(warp::query::<HashMap<String, String>>())
        .and(request(&state))
        .then(|state, query, req| guard(transactions(state, query, req)));
    let page = warp::path!("dev" / "checkout" / String)
        .and(warp::get())
        .and(with_state(state.clone()))
        .then(|id, state| guard(checkout_page(state, id)));
    let pay = warp::path!("dev" / "checkout" / String / "pay")
        .and(warp::post())
        .and(with_state(state.clone()))
        .then(|id, state| guard(checkout_action(state, id, Action::Pay)));
    let cancel = warp::path!("dev" / "checkout" / String / "cancel")
        .and(warp::post())
        .and(with_state(state.clone()))
        .then(|id, state| guard(checkout_action(state, id, Action::Cancel)));
    let dev_portal = warp::path!("dev" / "portal" / String)
        .and(warp::get())
        .and(with_state(state.clone()))
        .then(|customer, state| guard(portal_page(state, customer)));
    // Boxed one by one, like the route groups in `http::routes`: long `or` chains
    // overflow the trait solver in release builds.
    let all: [BoxedFilter<(Response,)>; 9] = [
        subscription.boxed(),
        one_time.boxed(),
        portal.boxed(),
        webhook.boxed(),
        transactions.boxed(),
        page.boxed(),
        pay.boxed(),
        cancel.boxed(),
        dev_portal.boxed(),
    ];
    all.into_iter()
        .reduce(|routes, route| routes.or(route).unify().boxed())
        .expect("billing has routes")
}

/// `create-credit-checkout` / `create-onetime-checkout` → `{url, id}`.
async fn checkout(state: State, req: Request, purchase: PurchaseType) -> Response {
    let result = async {
        let user = authenticate_new_work(&state, &req).await?;
        let body: Value = req.json()?;
        ignore_unknown(purchase.endpoint(), &body, CHECKOUT_FIELDS);
        let request = CheckoutRequest::parse(&body)?;
        let base = base_url(&state, &req);
        state.billing.checkout(user, purchase, request, base).await
    };
    reply::result(result.await)
}

/// `create-portal-session {returnTo}` → `{url}`. The body is optional; `returnTo`
/// defaults to `/profile` and an invalid one falls back to it
/// (create-portal-session/index.ts L30–34).
async fn portal(state: State, req: Request) -> Response {
    let result = async {
        let user = authenticate(&state, &req).await?;
        let body: Value = req.json().unwrap_or(Value::Null);
        ignore_unknown("create-portal-session", &body, &["returnTo"]);
        let return_to = return_to_or(body.get("returnTo"), "/profile");
        let base = base_url(&state, &req);
        state.billing.portal(user, return_to, base).await
    };
    reply::result(result.await)
}

/// `stripe-webhook`: the raw body, verified by `Stripe-Signature`, applied exactly once.
async fn webhook(state: State, req: Request) -> Response {
    let signature = req.header("stripe-signature").map(str::to_string);
    let result = state.billing.webhook(req.body.clone(), signature).await;
    count_webhook(&state, &req.body, &result);
    if let Ok(Applied::AlreadyDone) = &result {
        tracing::info!("stripe event delivered again; nothing changed");
    }
    reply::result(result.map(|_| json!({"ok": true})))
}

/// `atelier_webhook_events_total{type, result}`. The type is read only from deliveries
/// whose signature held, so nobody else can invent label values.
fn count_webhook(state: &State, body: &[u8], result: &Result<Applied, ApiError>) {
    let event_type = || {
        serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v["type"].as_str().map(str::to_string))
            .unwrap_or_else(|| "unknown".into())
    };
    let (kind, outcome) = match result {
        Ok(applied) => (event_type(), applied.label()),
        Err(err) => match err.code {
            ErrorCode::STRIPE_SIGNATURE_INVALID => ("unverified".into(), "invalid_signature"),
            ErrorCode::CONFLICT => (event_type(), "conflict"),
            ErrorCode::BAD_REQUEST => ("unknown".into(), "malformed"),
            _ => (event_type(), "failed"),
        },
    };
    state
        .metrics
        .webhook_events
        .with_label_values(&[kind.as_str(), outcome])
        .inc();
}

/// `GET /v1/billing/transactions`: the caller's payments and refunds, newest first.
async fn transactions(state: State, query: HashMap<String, String>, req: Request) -> Response {
    let result = async {
        let user = authenticate(&state, &req).await?;
        let limit = page_limit(&query)?;
        let before = query.get("before").cloned();
        let rows = state
            .db
            .read(move |conn| billing::transactions(conn, &user.id, limit, before.as_deref()))
            .await?;
        let next = next_cursor(rows.len(), limit, rows.last().map(|t| &t.id));
        let list: Vec<Value> = rows
            .iter()
            .map(|t| {
                json!({
                    "id": t.id, "type": t.kind, "payment_id": t.payment_id,
                    "package_id": t.package_id, "amount": t.amount, "currency": t.currency,
                    "credits": t.credits, "amount_refunded": t.amount_refunded,
                    "stripe_event_id": t.stripe_event_id, "created_at": rfc3339(t.created_at),
                })
            })
            .collect();
        Ok::<_, ApiError>(json!({"transactions": list, "next": next}))
    };
    reply::result(result.await)
}

fn simulated_only(state: &State) -> Result<(), ApiError> {
    if state.billing.simulated() {
        Ok(())
    } else {
        Err(ApiError::with_message(
            ErrorCode::NOT_FOUND,
            "no such route",
        ))
    }
}

fn html(body: String) -> Response {
    reply::with_body(200, "text/html; charset=utf-8", body)
}

fn see_other(location: &str) -> Response {
    let mut response = reply::empty(303);
    *response.status_mut() = StatusCode::SEE_OTHER;
    match HeaderValue::from_str(location) {
        Ok(value) => {
            response.headers_mut().insert(header::LOCATION, value);
            response
        }
        Err(_) => reply::error(&ApiError::internal().cause("bad redirect URL")),
    }
}

/// `GET /dev/checkout/<id>`: the simulated checkout page.
async fn checkout_page(state: State, id: String) -> Response {
    let result = async {
        simulated_only(&state)?;
        let (session, package) = state.billing.session(&id).await?;
        Ok::<_, ApiError>(simulated::checkout_page(
            &session,
            &package.name,
            package.credits,
        ))
    };
    match result.await {
        Ok(page) => html(page),
        Err(err) => reply::error(&err),
    }
}

/// The simulated checkout page's buttons.
enum Action {
    Pay,
    Cancel,
}

/// `POST /dev/checkout/<id>/pay` or `/cancel`: 303 to the success or cancel URL.
async fn checkout_action(state: State, id: String, action: Action) -> Response {
    let result = async {
        simulated_only(&state)?;
        match action {
            Action::Pay => state.billing.simulate_pay(&id).await,
            Action::Cancel => state.billing.simulate_cancel(&id).await,
        }
    };
    match result.await {
        Ok(location) => see_other(&location),
        Err(err) => reply::error(&err),
    }
}

/// `GET /dev/portal/<customer>`: the simulated customer portal.
async fn portal_page(state: State, customer: String) -> Response {
    let result = async {
        simulated_only(&state)?;
        let id = customer.clone();
        let profile = state
            .db
            .read(move |conn| billing::profile_by(conn, billing::ProfileKey::Customer, &id))
            .await?
            .ok_or_else(|| ApiError::with_message(ErrorCode::NOT_FOUND, "no such customer"))?;
        Ok::<_, ApiError>(simulated::portal_page(
            &customer,
            profile.package_id.as_deref().unwrap_or("none"),
            profile.status.as_deref().unwrap_or("none"),
        ))
    };
    match result.await {
        Ok(page) => html(page),
        Err(err) => reply::error(&err),
    }
}
