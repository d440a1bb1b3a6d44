//! The operator's package list: `/v1/admin/packages` (list, add, change, reset to the
//! defaults). Changes apply at once: no restart.

use serde_json::json;
use warp::reply::Response;
use warp::Filter;

use super::admin::require_admin;
use super::{guard, reply, request, with_state, Request, State};
use crate::actors::pricing::{self, package_json, PackageChange};
use crate::db::packages;

pub fn routes(state: State) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let list = warp::path!("v1" / "admin" / "packages")
        .and(warp::get())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, req| guard(list(state, req)));
    let create = warp::path!("v1" / "admin" / "packages")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, req| guard(create(state, req)));
    let update = warp::path!("v1" / "admin" / "packages" / String)
        .and(warp::put())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|id, state, req| guard(update(state, id, req)));
    let reset = warp::path!("v1" / "admin" / "packages" / "reset-to-defaults")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, req| guard(reset(state, req)));
    list.or(create).unify().or(reset).unify().or(update).unify()
}

/// `GET /v1/admin/packages`: every package, active first, with its Stripe price ids.
async fn list(state: State, req: Request) -> Response {
    let result = async {
        require_admin(&state, &req).await?;
        let all = state.db.read(packages::list_all).await?;
        Ok(json!({"packages": all.iter().map(package_json).collect::<Vec<_>>()}))
    };
    reply::result(result.await)
}

/// `POST /v1/admin/packages`: a new package.
async fn create(state: State, req: Request) -> Response {
    let result = async {
        let admin = require_admin(&state, &req).await?;
        let change: PackageChange = req.json()?;
        let created = state
            .db
            .write(move |conn| pricing::create_package(conn, change))
            .await?;
        tracing::info!(admin = %admin.email, package = %created.name, "package created");
        Ok(package_json(&created))
    };
    reply::result(result.await)
}

/// `PUT /v1/admin/packages/{id}`: changes the fields given.
async fn update(state: State, id: String, req: Request) -> Response {
    let result = async {
        let admin = require_admin(&state, &req).await?;
        let change: PackageChange = req.json()?;
        let changed = state
            .db
            .write(move |conn| pricing::update_package(conn, &id, change))
            .await?;
        tracing::info!(admin = %admin.email, package = %changed.name, "package changed");
        Ok(package_json(&changed))
    };
    reply::result(result.await)
}

/// `POST /v1/admin/packages/reset-to-defaults`: the default set on sale, others off.
async fn reset(state: State, req: Request) -> Response {
    let result = async {
        let admin = require_admin(&state, &req).await?;
        let set = state.db.write(pricing::reset_to_defaults).await?;
        tracing::info!(admin = %admin.email, "packages reset to the defaults");
        Ok(json!({"packages": set.iter().map(package_json).collect::<Vec<_>>()}))
    };
    reply::result(result.await)
}
