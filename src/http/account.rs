//! `/v1/me` and `/v1/packages`.

use serde_json::json;
use warp::reply::Response;
use warp::Filter;

use super::{authenticate, guard, reply, request, with_state, Request, State};
use crate::db::{accounts, packages};
use crate::domain::time::rfc3339;
use crate::domain::ApiError;

pub fn routes(state: State) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let me = warp::path!("v1" / "me")
        .and(warp::get())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, req| guard(me(state, req)));
    let packages = warp::path!("v1" / "packages")
        .and(warp::get())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, _| guard(list_packages(state)));
    me.or(packages).unify()
}

/// `GET /v1/me`: who I am and what I hold.
async fn me(state: State, req: Request) -> Response {
    let result = async {
        let user = authenticate(&state, &req).await?;
        let user_id = user.id.clone();
        let credits = state
            .db
            .read(move |conn| accounts::credits(conn, &user_id))
            .await?
            .unwrap_or_default();
        Ok::<_, ApiError>(json!({
            "id": user.id,
            "email": user.email,
            "role": user.role,
            "credits": {
                "subscription": credits.subscription,
                "purchased": credits.purchased,
                "held": credits.held,
                "available": credits.available(),
            },
            "subscription": null,
            "created_at": rfc3339(user.created_at),
        }))
    };
    reply::result(result.await)
}

/// `GET /v1/packages`: active packages in display order.
async fn list_packages(state: State) -> Response {
    let result = state.db.read(packages::list_active).await.map(|list| {
        let packages: Vec<_> = list
            .into_iter()
            .map(|p| {
                json!({
                    "id": p.id,
                    "name": p.name,
                    "type": p.kind,
                    "price_usd": p.price_usd_cents as f64 / 100.0,
                    "credits": p.credits,
                    "first_sub_bonus": p.first_sub_bonus,
                    "is_popular": p.is_popular,
                    "sort_order": p.sort_order,
                })
            })
            .collect();
        json!({ "packages": packages })
    });
    reply::result(result.map_err(ApiError::from))
}
