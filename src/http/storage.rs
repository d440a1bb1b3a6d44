//! Serving stored and generated objects: `GET /storage/v1/object/public/<bucket>/<key>`.

use warp::reply::Response;
use warp::Filter;

use super::{guard, reply, with_state, State};
use crate::domain::{ApiError, ErrorCode};
use crate::storage::StorageError;

pub fn routes(state: State) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path!("storage" / "v1" / "object" / "public" / String / ..)
        .and(warp::path::tail())
        .and(warp::get())
        .and(with_state(state))
        .then(|bucket, tail: warp::path::Tail, state| {
            guard(serve_object(state, bucket, tail.as_str().to_string()))
        })
}

async fn serve_object(state: State, bucket: String, key: String) -> Response {
    let storage = state.storage.clone();
    let read = tokio::task::spawn_blocking(move || storage.get(&bucket, &key)).await;
    match read {
        Ok(Ok(bytes)) => {
            let content_type = match bytes.get(..4) {
                Some([0x89, b'P', b'N', b'G']) => "image/png",
                Some([0xFF, 0xD8, 0xFF, _]) => "image/jpeg",
                _ => "application/octet-stream",
            };
            reply::with_body(200, content_type, bytes)
        }
        Ok(Err(StorageError::InvalidKey(why))) => reply::error(&ApiError::with_message(
            ErrorCode::BAD_REQUEST,
            format!("invalid object key: {why}"),
        )),
        _ => reply::error(&ApiError::with_message(
            ErrorCode::NOT_FOUND,
            "object not found",
        )),
    }
}
