//! `/realtime/v1/websocket`: Supabase Realtime's Phoenix channel protocol, as
//! supabase-js's RealtimeClient speaks it, over warp's WebSocket (tungstenite). A
//! channel joins with `config.postgres_changes`; each binding gets an id in the
//! `phx_reply`; changes of `generation_jobs` and `profiles` (from the change feed, which
//! follows the same job feed as the SSE endpoint) reach a channel only when its token's
//! user owns the row (the service role hears everything) and its filter matches.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Map, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use warp::reply::Response;
use warp::ws::{Message, WebSocket, Ws};
use warp::{Filter, Reply};

use super::rest::{absolutize_row, reader_of, Reader};
use super::{reply, with_state, State};
use crate::actors::changes::Change;
use crate::db::rest::{self, Relation};
use crate::domain::phoenix::{parse_row_filter, Frame, RowFilter, Vsn};
use crate::domain::time::now_ms;

/// Largest message a client may send.
const MAX_MESSAGE: usize = 256 * 1024;

pub fn routes(state: State) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path!("realtime" / "v1" / "websocket")
        .and(warp::ws())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::optional::<String>("host"))
        .and(with_state(state))
        .map(|ws: Ws, raw: String, host: Option<String>, state: State| {
            let params: HashMap<String, String> = url::form_urlencoded::parse(raw.as_bytes())
                .into_owned()
                .collect();
            let Some(vsn) = Vsn::parse(params.get("vsn").map(String::as_str)) else {
                return reply::json(400, &json!({"message": "unsupported vsn (1.0.0, 2.0.0)"}));
            };
            let base = match &state.config.server.public_url {
                Some(url) => url.trim_end_matches('/').to_string(),
                None => format!(
                    "http://{}",
                    host.as_deref().unwrap_or(&state.config.server.bind)
                ),
            };
            let socket = Socket {
                state,
                vsn,
                apikey: params.get("apikey").cloned(),
                base,
                channels: HashMap::new(),
            };
            ws.max_message_size(MAX_MESSAGE)
                .on_upgrade(move |ws| socket.run(ws))
                .into_response()
        })
}

/// One binding of a joined channel.
struct Binding {
    id: u32,
    /// `None`: a table Atelier has no changes for (never delivered).
    relation: Option<&'static Relation>,
    /// `INSERT`, `UPDATE`, `DELETE` or `*`.
    event: String,
    filter: Option<RowFilter>,
}

/// A joined channel.
struct Channel {
    join_ref: Option<String>,
    reader: Reader,
    /// When the channel's token expires (unix seconds).
    expires_at: Option<i64>,
    bindings: Vec<Binding>,
}

struct Socket {
    state: State,
    vsn: Vsn,
    apikey: Option<String>,
    base: String,
    channels: HashMap<String, Channel>,
}

impl Socket {
    async fn run(mut self, ws: WebSocket) {
        let (mut sink, mut stream) = ws.split();
        let mut feed = self.state.changes.subscribe();
        let timeout = Duration::from_secs(self.state.config.server.realtime_heartbeat_timeout_secs);
        let mut deadline = Instant::now() + timeout;
        loop {
            let expiry = self.next_expiry();
            let out: Vec<Frame> = tokio::select! {
                message = stream.next() => match message {
                    Some(Ok(message)) => {
                        deadline = Instant::now() + timeout;
                        if message.is_close() {
                            break;
                        }
                        match message.to_str() {
                            Ok(text) => self.handle(text).await,
                            Err(()) => Vec::new(),
                        }
                    }
                    _ => break,
                },
                change = feed.recv() => match change {
                    Ok(change) => self.deliver(&change),
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(skipped = n, "a realtime socket fell behind");
                        self.system_to_all("error", "changes were dropped: read the rows again")
                    }
                    Err(RecvError::Closed) => break,
                },
                _ = tokio::time::sleep_until(deadline) => {
                    let _ = sink.send(Message::close_with(1000u16, "heartbeat timeout")).await;
                    break;
                }
                _ = tokio::time::sleep_until(expiry) => self.expire(),
            };
            for frame in out {
                if sink
                    .send(Message::text(frame.encode(self.vsn)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
        let _ = sink.close().await;
    }

    /// When the first channel token runs out (far away when none does).
    fn next_expiry(&self) -> Instant {
        let now = now_ms() / 1000;
        self.channels
            .values()
            .filter_map(|c| c.expires_at)
            .min()
            .map(|exp| Instant::now() + Duration::from_secs((exp - now).max(0) as u64))
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400))
    }

    /// Closes the channels whose token has expired, as Realtime does.
    fn expire(&mut self) -> Vec<Frame> {
        let now = now_ms() / 1000;
        let expired: Vec<String> = self
            .channels
            .iter()
            .filter(|(_, c)| c.expires_at.is_some_and(|exp| exp <= now))
            .map(|(topic, _)| topic.clone())
            .collect();
        let mut out = Vec::new();
        for topic in expired {
            if let Some(channel) = self.channels.remove(&topic) {
                out.push(system(&topic, "error", "system", "Token has expired"));
                let mut close = Frame::push(&topic, "phx_close", json!({}));
                close.join_ref = channel.join_ref;
                out.push(close);
            }
        }
        out
    }

    async fn handle(&mut self, text: &str) -> Vec<Frame> {
        let Some(frame) = Frame::decode(text) else {
            return Vec::new();
        };
        match (frame.topic.as_str(), frame.event.as_str()) {
            ("phoenix", "heartbeat") => vec![frame.reply("ok", json!({}))],
            (_, "phx_join") => self.join(frame).await,
            (topic, "phx_leave") => {
                let topic = topic.to_string();
                let joined = self.channels.remove(&topic);
                let mut close = Frame::push(&topic, "phx_close", json!({}));
                close.join_ref = joined.and_then(|c| c.join_ref);
                vec![frame.reply("ok", json!({})), close]
            }
            (topic, "access_token") if self.channels.contains_key(topic) => {
                self.refresh_token(frame).await
            }
            (topic, _) if self.channels.contains_key(topic) => {
                // broadcast / presence: accepted, not relayed (Atelier has no use for them).
                vec![frame.reply("ok", json!({}))]
            }
            _ => vec![frame.reply("error", json!({"reason": "unmatched topic"}))],
        }
    }

    /// The reader and expiry of a token (the join's `access_token`, else `apikey`).
    async fn identify(&self, token: Option<&str>) -> Result<(Reader, Option<i64>), String> {
        let token = token.or(self.apikey.as_deref());
        let reader = reader_of(&self.state, token)
            .await
            .map_err(|_| "Invalid token".to_string())?;
        let expires_at = token
            .and_then(|t| self.state.auth.keys().verify(t).ok())
            .map(|claims| claims.exp);
        Ok((reader, expires_at))
    }

    async fn join(&mut self, frame: Frame) -> Vec<Frame> {
        let token = frame.payload["access_token"].as_str();
        let (reader, expires_at) = match self.identify(token).await {
            Ok(found) => found,
            Err(reason) => return vec![frame.reply("error", json!({"reason": reason}))],
        };
        let specs = frame.payload["config"]["postgres_changes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut bindings = Vec::new();
        let mut answered = Vec::new();
        let mut notes = Vec::new();
        for spec in &specs {
            let event = spec["event"].as_str().unwrap_or("*").to_uppercase();
            let table = spec["table"].as_str();
            let relation = table.and_then(source);
            let filter = match spec["filter"].as_str() {
                None | Some("") => None,
                Some(text) => match parse_row_filter(text) {
                    Ok(filter) if relation.is_none_or(|r| r.column(&filter.column).is_some()) => {
                        Some(filter)
                    }
                    Ok(filter) => {
                        let reason = format!("unknown column {} in filter", filter.column);
                        return vec![frame.reply("error", json!({"reason": reason}))];
                    }
                    Err(why) => {
                        let reason = format!("Error parsing `filter` params: {why}");
                        return vec![frame.reply("error", json!({"reason": reason}))];
                    }
                },
            };
            match (relation, table) {
                (None, Some(table)) => notes.push(format!(
                    "Atelier publishes no changes of {table}: nothing will be delivered"
                )),
                (None, None) => notes.push(
                    "subscribe to a table (generation_jobs or profiles) to hear changes".into(),
                ),
                (Some(relation), _) => {
                    if let Some(note) = self.foreign(&reader, relation, filter.as_ref()).await {
                        notes.push(note);
                    }
                }
            }
            let id = rand::random::<u32>() & 0x7fff_ffff;
            let mut entry = json!({"id": id, "event": spec["event"].as_str().unwrap_or("*"),
                                   "schema": spec["schema"].as_str().unwrap_or("public")});
            if let Some(table) = table {
                entry["table"] = json!(table);
            }
            if let Some(text) = spec["filter"].as_str() {
                entry["filter"] = json!(text);
            }
            answered.push(entry);
            bindings.push(Binding {
                id,
                relation,
                event,
                filter,
            });
        }
        if matches!(reader, Reader::Anonymous) && !specs.is_empty() {
            notes.push(
                "anonymous: no private changes are delivered; join with an access_token".into(),
            );
        }
        if matches!(reader, Reader::Service) {
            tracing::info!(topic = %frame.topic, "service-role realtime join");
        }
        self.channels.insert(
            frame.topic.clone(),
            Channel {
                join_ref: frame.join_ref.clone(),
                reader,
                expires_at,
                bindings,
            },
        );
        let mut out = vec![frame.reply("ok", json!({"postgres_changes": answered}))];
        if !specs.is_empty() {
            out.push(system(
                &frame.topic,
                "ok",
                "postgres_changes",
                "Subscribed to PostgreSQL",
            ));
        }
        for note in notes {
            out.push(system(&frame.topic, "error", "postgres_changes", &note));
        }
        out
    }

    /// Why a filter can never match for this reader (it names someone else's rows).
    async fn foreign(
        &self,
        reader: &Reader,
        relation: &'static Relation,
        filter: Option<&RowFilter>,
    ) -> Option<String> {
        let (Reader::User(user), Some(filter)) = (reader, filter) else {
            return None;
        };
        let owner = relation.owner?;
        let foreign = if filter.column == owner {
            filter.values.iter().any(|v| *v != user.id)
        } else if filter.column == "id" {
            let ids = filter.values.clone();
            let owners = self
                .state
                .db
                .read(move |conn| {
                    let mut owners = Vec::new();
                    for id in &ids {
                        owners.extend(rest::row_by_id(conn, relation, id)?.map(|(o, _)| o));
                    }
                    Ok(owners)
                })
                .await
                .unwrap_or_default();
            owners.iter().any(|o| *o != user.id)
        } else {
            false
        };
        foreign.then(|| {
            format!(
                "filter {}={} names rows of another user: they are never delivered",
                filter.column,
                filter.values.join(",")
            )
        })
    }

    async fn refresh_token(&mut self, frame: Frame) -> Vec<Frame> {
        let token = frame.payload["access_token"].as_str();
        match self.identify(token).await {
            Ok((reader, expires_at)) => {
                if let Some(channel) = self.channels.get_mut(&frame.topic) {
                    channel.reader = reader;
                    channel.expires_at = expires_at;
                }
                vec![frame.reply("ok", json!({}))]
            }
            Err(reason) => {
                let joined = self.channels.remove(&frame.topic);
                let mut close = Frame::push(&frame.topic, "phx_close", json!({}));
                close.join_ref = joined.and_then(|c| c.join_ref);
                vec![system(&frame.topic, "error", "system", &reason), close]
            }
        }
    }

    /// The `postgres_changes` messages a change makes on this socket.
    fn deliver(&self, change: &Arc<Change>) -> Vec<Frame> {
        let mut out = Vec::new();
        let mut record: Option<Map<String, Value>> = None;
        for (topic, channel) in &self.channels {
            let allowed = match &channel.reader {
                Reader::Service => true,
                Reader::User(user) => user.id == change.owner,
                Reader::Anonymous => false,
            };
            if !allowed {
                continue;
            }
            let ids: Vec<u32> = channel
                .bindings
                .iter()
                .filter(|b| matches(b, change))
                .map(|b| b.id)
                .collect();
            if ids.is_empty() {
                continue;
            }
            let record = record.get_or_insert_with(|| {
                let mut row = change.record.clone();
                if change.relation.name == rest::GENERATION_JOBS.name {
                    absolutize_row(&mut row, &self.base);
                }
                row
            });
            let columns: Vec<Value> = change
                .relation
                .columns
                .iter()
                .map(|c| json!({"name": c.name, "type": c.kind.pg_type()}))
                .collect();
            let old = match change.kind {
                "INSERT" => json!({}),
                _ => json!({"id": record.get("id")}),
            };
            let mut frame = Frame::push(
                topic,
                "postgres_changes",
                json!({"ids": ids, "data": {
                    "type": change.kind, "schema": "public", "table": change.relation.name,
                    "commit_timestamp": change.commit_timestamp, "record": record,
                    "old_record": old, "columns": columns, "errors": null,
                }}),
            );
            frame.join_ref = channel.join_ref.clone();
            out.push(frame);
        }
        out
    }

    fn system_to_all(&self, status: &str, message: &str) -> Vec<Frame> {
        self.channels
            .keys()
            .map(|topic| system(topic, status, "system", message))
            .collect()
    }
}

/// The relations changes are published for.
fn source(table: &str) -> Option<&'static Relation> {
    [&rest::GENERATION_JOBS, &rest::PROFILES]
        .into_iter()
        .find(|r| r.name == table)
}

fn matches(binding: &Binding, change: &Change) -> bool {
    let Some(relation) = binding.relation else {
        return false;
    };
    if relation.name != change.relation.name {
        return false;
    }
    if binding.event != "*" && binding.event != change.kind {
        return false;
    }
    match &binding.filter {
        None => true,
        Some(filter) => {
            let value = match change.record.get(&filter.column) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => return false,
                Some(other) => other.to_string(),
            };
            filter.values.contains(&value)
        }
    }
}

/// A `system` message on a channel.
fn system(topic: &str, status: &str, extension: &str, message: &str) -> Frame {
    let channel = topic.strip_prefix("realtime:").unwrap_or(topic);
    Frame::push(
        topic,
        "system",
        json!({"channel": channel, "extension": extension, "message": message, "status": status}),
    )
}
