//! Alipay routes: `create-alipay-checkout`, `alipay-notify` (answers the literal
//! `success` / `fail` Alipay reads), the admin refund, and the simulated pay page.

use std::collections::HashMap;

use serde_json::{json, Value};
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::storage::base_url;
use super::{
    authenticate, authenticate_new_work, guard, reply, request, with_state, Request, State,
};
use crate::actors::alipay::NotifyOutcome;
use crate::domain::billing::{is_local_path, CheckoutRequest, CHECKOUT_FIELDS};
use crate::domain::{ApiError, ErrorCode};
use crate::generation::fields::ignore_unknown;

/// The Alipay routes.
pub fn routes(state: State) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let checkout = warp::path!("functions" / "v1" / "create-alipay-checkout")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, req| guard(checkout(state, req)));
    let notify = warp::path!("functions" / "v1" / "alipay-notify")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, req| guard(notify(state, req)));
    let refund = warp::path!("v1" / "admin" / "alipay" / "orders" / String / "refund")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|no, state, req| guard(refund(state, no, req)));
    let page = warp::path!("dev" / "alipay" / String)
        .and(warp::get())
        .and(with_state(state.clone()))
        .and(warp::query::<HashMap<String, String>>())
        .then(|no, state, query| guard(pay_page(state, no, return_to(&query))));
    let pay = warp::path!("dev" / "alipay" / String / "pay")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(warp::query::<HashMap<String, String>>())
        .then(|no, state, query| guard(simulate_pay(state, no, return_to(&query))));
    let all: [BoxedFilter<(Response,)>; 5] = [
        checkout.boxed(),
        notify.boxed(),
        refund.boxed(),
        page.boxed(),
        pay.boxed(),
    ];
    all.into_iter()
        .reduce(|routes, route| routes.or(route).unify().boxed())
        .expect("alipay has routes")
}

/// `create-alipay-checkout {packageId, returnTo}` → `{url, surface, out_trade_no}`.
async fn checkout(state: State, req: Request) -> Response {
    let result = async {
        let user = authenticate_new_work(&state, &req).await?;
        let body: Value = req.json()?;
        ignore_unknown("create-alipay-checkout", &body, CHECKOUT_FIELDS);
        let request = CheckoutRequest::parse(&body)?;
        let agent = req.header("user-agent").map(str::to_string);
        let base = base_url(&state, &req);
        state.alipay.checkout(user, request, agent, base).await
    };
    reply::result(result.await)
}

/// `alipay-notify`: `success` once durably applied, else `fail` (Alipay retries).
async fn notify(state: State, req: Request) -> Response {
    match state.alipay.notify(&req.body).await {
        NotifyOutcome::Done(what) => {
            tracing::info!(result = what, "alipay notify");
            reply::with_body(200, "text/plain; charset=utf-8", "success")
        }
        NotifyOutcome::Fail(why) => {
            tracing::warn!(reason = %why, "alipay notify answered fail");
            reply::with_body(400, "text/plain; charset=utf-8", "fail")
        }
    }
}

/// `POST /v1/admin/alipay/orders/{out_trade_no}/refund {amount?}` (fen; default all).
async fn refund(state: State, out_trade_no: String, req: Request) -> Response {
    let result = async {
        let user = authenticate(&state, &req).await?;
        if !user.is_admin() {
            return Err(ApiError::with_message(
                ErrorCode::FORBIDDEN,
                "this needs an admin account",
            ));
        }
        let body: Value = if req.body.is_empty() {
            json!({})
        } else {
            req.json()?
        };
        let amount = match &body["amount"] {
            Value::Null => None,
            v => Some(
                v.as_i64()
                    .ok_or_else(|| ApiError::bad_field("amount", "amount must be an integer"))?,
            ),
        };
        state.alipay.refund(&out_trade_no, amount).await
    };
    reply::result(result.await)
}

fn simulated_only(state: &State) -> Result<(), ApiError> {
    if state.alipay.simulated() {
        Ok(())
    } else {
        Err(ApiError::with_message(
            ErrorCode::NOT_FOUND,
            "no such route",
        ))
    }
}

fn encode_query(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Where the simulated Alipay sends the buyer back: the checkout's `returnTo`, carried
/// in the page's query (a path on the app only, else `/pricing`).
fn return_to(query: &HashMap<String, String>) -> String {
    query
        .get("return_to")
        .filter(|path| is_local_path(path))
        .cloned()
        .unwrap_or_else(|| "/pricing".into())
}

/// `GET /dev/alipay/<out_trade_no>?return_to=<path>`: the simulated Alipay page.
async fn pay_page(state: State, out_trade_no: String, return_to: String) -> Response {
    let result = async {
        simulated_only(&state)?;
        state.alipay.order(&out_trade_no).await
    };
    match result.await {
        Ok(order) => {
            let no = escape(&order.out_trade_no);
            let back = escape(&encode_query(&return_to));
            let page = format!(
                "<!doctype html><html lang=en><meta charset=utf-8>\
                 <meta name=viewport content=\"width=device-width, initial-scale=1\">\
                 <title>Simulated Alipay</title>\
                 <h1>Simulated Alipay (支付宝)</h1><p>Order {no}: {}.{:02} CNY, {} credits \
                 ({})</p><form method=post action=\"/dev/alipay/{no}/pay?return_to={back}\">\
                 <button>Pay</button></form></html>",
                order.amount_fen / 100,
                order.amount_fen % 100,
                order.credits,
                escape(&order.status),
            );
            reply::with_body(200, "text/html; charset=utf-8", page)
        }
        Err(err) => reply::error(&err),
    }
}

/// `POST /dev/alipay/<out_trade_no>/pay`: a signed notify through the real handler,
/// then 303 to the app.
async fn simulate_pay(state: State, out_trade_no: String, return_to: String) -> Response {
    let result = async {
        simulated_only(&state)?;
        state.alipay.simulate_pay(&out_trade_no, &return_to).await
    };
    match result.await {
        Ok(location) => {
            let mut response = reply::empty(303);
            *response.status_mut() = StatusCode::SEE_OTHER;
            match HeaderValue::from_str(&location) {
                Ok(value) => {
                    response.headers_mut().insert(header::LOCATION, value);
                    response
                }
                Err(_) => reply::error(&ApiError::internal().cause("bad redirect URL")),
            }
        }
        Err(err) => reply::error(&err),
    }
}
