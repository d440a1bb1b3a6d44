//! Phoenix channel messages as Supabase Realtime exchanges them over a WebSocket (text
//! frames only): serializer `1.0.0` is a JSON object `{join_ref, ref, topic, event,
//! payload}`, `2.0.0` the array `[join_ref, ref, topic, event, payload]`. Also the
//! `postgres_changes` filter grammar (`column=eq.value`, `column=in.(a,b)`).

use serde_json::{json, Value};

/// One message either way.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub join_ref: Option<String>,
    pub reference: Option<String>,
    pub topic: String,
    pub event: String,
    pub payload: Value,
}

/// The serializer a socket speaks (the `vsn` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vsn {
    V1,
    V2,
}

impl Vsn {
    /// From the `vsn` parameter; Realtime's default is `1.0.0`.
    pub fn parse(vsn: Option<&str>) -> Option<Vsn> {
        match vsn {
            None | Some("1.0.0") => Some(Vsn::V1),
            Some("2.0.0") => Some(Vsn::V2),
            Some(_) => None,
        }
    }
}

fn text_of(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Frame {
    /// A message from the server (no `join_ref`/`ref` unless it answers one).
    pub fn push(topic: &str, event: &str, payload: Value) -> Frame {
        Frame {
            join_ref: None,
            reference: None,
            topic: topic.to_string(),
            event: event.to_string(),
            payload,
        }
    }

    /// The `phx_reply` to this message.
    pub fn reply(&self, status: &str, response: Value) -> Frame {
        Frame {
            join_ref: self.join_ref.clone(),
            reference: self.reference.clone(),
            topic: self.topic.clone(),
            event: "phx_reply".into(),
            payload: json!({"status": status, "response": response}),
        }
    }

    /// Reads a text frame in either serializer; `None` if it is neither.
    pub fn decode(text: &str) -> Option<Frame> {
        match serde_json::from_str::<Value>(text).ok()? {
            Value::Array(items) if items.len() == 5 => Some(Frame {
                join_ref: text_of(items.first()),
                reference: text_of(items.get(1)),
                topic: items.get(2)?.as_str()?.to_string(),
                event: items.get(3)?.as_str()?.to_string(),
                payload: items.get(4).cloned().unwrap_or(Value::Null),
            }),
            Value::Object(map) => Some(Frame {
                join_ref: text_of(map.get("join_ref")),
                reference: text_of(map.get("ref")),
                topic: map.get("topic")?.as_str()?.to_string(),
                event: map.get("event")?.as_str()?.to_string(),
                payload: map.get("payload").cloned().unwrap_or(Value::Null),
            }),
            _ => None,
        }
    }

    /// The frame's text in `vsn`.
    pub fn encode(&self, vsn: Vsn) -> String {
        match vsn {
            Vsn::V1 => json!({
                "join_ref": self.join_ref, "ref": self.reference, "topic": self.topic,
                "event": self.event, "payload": self.payload,
            })
            .to_string(),
            Vsn::V2 => json!([
                self.join_ref,
                self.reference,
                self.topic,
                self.event,
                self.payload
            ])
            .to_string(),
        }
    }
}

/// A `postgres_changes` row filter: the column equals one of the values.
#[derive(Debug, Clone, PartialEq)]
pub struct RowFilter {
    pub column: String,
    pub values: Vec<String>,
}

/// `column=eq.value` or `column=in.(a,b)`; other operators are refused (`Err` says why).
pub fn parse_row_filter(text: &str) -> Result<RowFilter, String> {
    let (column, rest) = text.split_once('=').ok_or("expected column=op.value")?;
    let valid = !column.is_empty()
        && column
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!("bad column {column:?}"));
    }
    let (op, value) = rest.split_once('.').ok_or("expected op.value")?;
    let values = match op {
        "eq" => vec![value.to_string()],
        "in" => value
            .strip_prefix('(')
            .and_then(|v| v.strip_suffix(')'))
            .ok_or("in. takes (a,b)")?
            .split(',')
            .map(|v| v.trim().trim_matches('"').to_string())
            .collect(),
        other => return Err(format!("operator {other:?} is not supported (eq, in)")),
    };
    Ok(RowFilter {
        column: column.to_string(),
        values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_serializers_round_trip() {
        let v1 = r#"{"topic":"realtime:wait:1","event":"phx_join","payload":{"config":{}},"ref":"1","join_ref":"1"}"#;
        let frame = Frame::decode(v1).unwrap();
        assert_eq!(frame.topic, "realtime:wait:1");
        assert_eq!(frame.reference.as_deref(), Some("1"));
        assert_eq!(Frame::decode(&frame.encode(Vsn::V1)).unwrap(), frame);
        let v2 = r#"["3","4","phoenix","heartbeat",{}]"#;
        let frame = Frame::decode(v2).unwrap();
        assert_eq!(
            (frame.event.as_str(), frame.join_ref.as_deref()),
            ("heartbeat", Some("3"))
        );
        assert_eq!(
            frame.encode(Vsn::V2),
            r#"["3","4","phoenix","heartbeat",{}]"#
        );
        let reply = frame.reply("ok", json!({}));
        assert_eq!(
            reply.encode(Vsn::V2),
            r#"["3","4","phoenix","phx_reply",{"response":{},"status":"ok"}]"#
        );
        assert!(Frame::decode("[1,2]").is_none());
        assert!(Frame::decode("not json").is_none());
        assert_eq!(Vsn::parse(Some("3.0.0")), None);
    }

    #[test]
    fn row_filters() {
        assert_eq!(
            parse_row_filter("id=eq.0190-ab").unwrap(),
            RowFilter {
                column: "id".into(),
                values: vec!["0190-ab".into()]
            }
        );
        assert_eq!(
            parse_row_filter("status=in.(success,failed)")
                .unwrap()
                .values,
            ["success", "failed"]
        );
        assert!(parse_row_filter("id=gt.3").is_err());
        assert!(parse_row_filter("i;d=eq.3").is_err());
        assert!(parse_row_filter("id").is_err());
    }
}
