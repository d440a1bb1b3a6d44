//! The operator's view of e-mail: `GET /v1/admin/mail-outbox` and
//! `POST /v1/admin/mail/test` (queues an alert-style test message).

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{json, Value};
use warp::reply::Response;
use warp::Filter;

use super::admin::require_admin;
use super::paging::page_limit;
use super::{guard, reply, request, with_state, Request, State};
use crate::actors::mailer::MailMsg;
use crate::db::mail as mdb;
use crate::domain::time::rfc3339;
use crate::domain::ApiError;
use crate::mail::Message;

pub fn routes(state: State) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let outbox = warp::path!("v1" / "admin" / "mail-outbox")
        .and(warp::get())
        .and(warp::query::<HashMap<String, String>>())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|query, state, req| guard(outbox(state, query, req)));
    let test = warp::path!("v1" / "admin" / "mail" / "test")
        .and(warp::post())
        .and(with_state(state.clone()))
        .and(request(&state))
        .then(|state, req| guard(send_test(state, req)));
    outbox.or(test).unify()
}

/// `GET /v1/admin/mail-outbox?limit=`: the latest messages and what became of them.
async fn outbox(state: State, query: HashMap<String, String>, req: Request) -> Response {
    let result = async {
        require_admin(&state, &req).await?;
        let limit = page_limit(&query)?;
        let mails = state.db.read(move |conn| mdb::recent(conn, limit)).await?;
        let mails: Vec<Value> = mails
            .iter()
            .map(|m| {
                json!({"id": m.id, "to": m.to_addr, "kind": m.kind, "locale": m.locale,
                       "subject": m.subject, "status": m.status, "attempts": m.attempts,
                       "last_error": m.last_error, "created_at": rfc3339(m.created_at),
                       "next_attempt_at": rfc3339(m.next_attempt_at),
                       "sent_at": m.sent_at.map(rfc3339)})
            })
            .collect();
        Ok(json!({"transport": state.mail_transport, "mails": mails}))
    };
    reply::result(result.await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestBody {
    to: String,
    #[serde(default)]
    locale: Option<String>,
}

/// `POST /v1/admin/mail/test {to, locale?}`: queues a test message; answers at once.
async fn send_test(state: State, req: Request) -> Response {
    let result = async {
        let admin = require_admin(&state, &req).await?;
        let body: TestBody = req.json()?;
        if body.to.parse::<lettre::message::Mailbox>().is_err() {
            return Err(ApiError::bad_field("to", "not an e-mail address"));
        }
        let locale = body.locale.unwrap_or_else(|| "en".into());
        let message = Message::Alert {
            title: "Test message".into(),
            detail: format!("Sent by {} to check the mail settings.", admin.email),
        };
        let to = body.to.clone();
        let id = state
            .db
            .write(move |conn| crate::mail::enqueue(conn, &to, &locale, &message))
            .await?;
        let _ = state.mailer.send_message(MailMsg::Wake);
        Ok(json!({"id": id, "status": "queued"}))
    };
    reply::result(result.await)
}
