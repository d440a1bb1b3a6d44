//! Reading Stripe events: the envelope, and the fields Atelier needs from each object in
//! both payload shapes (before and from API version `2025-03-31.basil`). Pure functions.

use serde_json::Value;

/// A verified event's envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    pub kind: String,
    /// Unix seconds.
    pub created: i64,
    /// `data.object`.
    pub object: Value,
    /// The whole event as received.
    pub raw: Value,
}

impl Event {
    /// Reads the envelope; `None` when `id`, `type` or `data.object` is missing.
    pub fn parse(raw: Value) -> Option<Event> {
        let id = raw["id"].as_str().filter(|s| !s.is_empty())?.to_string();
        let kind = raw["type"].as_str().filter(|s| !s.is_empty())?.to_string();
        let object = raw["data"]["object"].clone();
        if !object.is_object() {
            return None;
        }
        Some(Event {
            id,
            kind,
            created: raw["created"].as_i64().unwrap_or(0),
            object,
            raw,
        })
    }
}

/// A string field, `None` when absent, null or empty.
pub fn text<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object.get(key)?.as_str().filter(|s| !s.is_empty())
}

/// An id field that may be a string or an expanded object with an `id`.
pub fn id_of<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    match object.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s),
        Value::Object(o) => o.get("id")?.as_str().filter(|s| !s.is_empty()),
        _ => None,
    }
}

/// An invoice's subscription id: top level before basil,
/// `parent.subscription_details.subscription` from basil.
pub fn invoice_subscription(invoice: &Value) -> Option<&str> {
    id_of(invoice, "subscription")
        .or_else(|| id_of(&invoice["parent"]["subscription_details"], "subscription"))
}

/// An invoice's subscription metadata (either shape).
pub fn invoice_metadata(invoice: &Value) -> &Value {
    let basil = &invoice["parent"]["subscription_details"]["metadata"];
    if basil.is_object() {
        return basil;
    }
    let old = &invoice["subscription_details"]["metadata"];
    if old.is_object() {
        return old;
    }
    &invoice["metadata"]
}

/// An invoice's payment intent: top level before basil, `payments.data[].payment` from basil.
pub fn invoice_payment_intent(invoice: &Value) -> Option<&str> {
    id_of(invoice, "payment_intent").or_else(|| {
        invoice["payments"]["data"]
            .as_array()?
            .iter()
            .find_map(|p| id_of(&p["payment"], "payment_intent"))
    })
}

/// The price of an invoice's first line: `price.id` before basil,
/// `pricing.price_details.price` from basil.
pub fn invoice_price(invoice: &Value) -> Option<&str> {
    let line = &invoice["lines"]["data"][0];
    id_of(line, "price").or_else(|| id_of(&line["pricing"]["price_details"], "price"))
}

/// The price of a subscription's first item.
pub fn subscription_price(subscription: &Value) -> Option<&str> {
    id_of(&subscription["items"]["data"][0], "price")
}

/// The period end of an invoice's first line (unix seconds).
pub fn invoice_period_end(invoice: &Value) -> Option<i64> {
    invoice["lines"]["data"][0]["period"]["end"].as_i64()
}

/// A subscription's period end: top level before basil, on its items from basil.
pub fn subscription_period_end(subscription: &Value) -> Option<i64> {
    subscription["current_period_end"]
        .as_i64()
        .or_else(|| subscription["items"]["data"][0]["current_period_end"].as_i64())
}

/// Atelier's subscription status for Stripe's.
pub fn map_status(stripe_status: &str) -> &'static str {
    match stripe_status {
        "active" | "trialing" => "active",
        "past_due" | "unpaid" | "incomplete" => "past_due",
        _ => "canceled",
    }
}

/// How many of `granted` credits should be reversed in total once `refunded` of
/// `amount` minor units are refunded (cumulative). A full refund reverses all.
pub fn refund_share(granted: i64, amount: i64, refunded: i64, full: bool) -> i64 {
    if full || (amount > 0 && refunded >= amount) {
        return granted;
    }
    if amount <= 0 || refunded <= 0 {
        return 0;
    }
    // Rounded down: a partial refund never takes more than its share.
    ((granted as i128 * refunded as i128) / amount as i128) as i64
}

/// Whether a checkout session's payment has arrived.
pub fn session_paid(session: &Value) -> bool {
    matches!(
        text(session, "payment_status"),
        Some("paid") | Some("no_payment_required")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn envelope_needs_id_type_and_object() {
        let ev = Event::parse(json!({"id": "evt_1", "type": "x", "created": 5,
            "data": {"object": {"id": "o"}}}))
        .unwrap();
        assert_eq!(
            (ev.id.as_str(), ev.kind.as_str(), ev.created),
            ("evt_1", "x", 5)
        );
        assert!(Event::parse(json!({"id": "evt_1", "type": "x"})).is_none());
        assert!(Event::parse(json!({"type": "x", "data": {"object": {}}})).is_none());
    }

    #[test]
    fn both_invoice_shapes_are_read() {
        let old = json!({"subscription": "sub_1", "payment_intent": "pi_1",
            "subscription_details": {"metadata": {"user_id": "u"}}});
        let basil = json!({"parent": {"subscription_details": {"subscription": "sub_1",
            "metadata": {"user_id": "u"}}},
            "payments": {"data": [{"payment": {"type": "payment_intent", "payment_intent": "pi_1"}}]}});
        for invoice in [old, basil] {
            assert_eq!(invoice_subscription(&invoice), Some("sub_1"));
            assert_eq!(invoice_payment_intent(&invoice), Some("pi_1"));
            assert_eq!(invoice_metadata(&invoice)["user_id"], "u");
        }
    }

    #[test]
    fn prices_are_read_in_both_shapes() {
        let old = json!({"lines": {"data": [{"price": {"id": "price_1"}}]}});
        let basil =
            json!({"lines": {"data": [{"pricing": {"price_details": {"price": "price_1"}}}]}});
        assert_eq!(invoice_price(&old), Some("price_1"));
        assert_eq!(invoice_price(&basil), Some("price_1"));
        let sub = json!({"items": {"data": [{"price": {"id": "price_2"}}]}});
        assert_eq!(subscription_price(&sub), Some("price_2"));
    }

    #[test]
    fn both_subscription_shapes_give_the_period_end() {
        assert_eq!(
            subscription_period_end(&json!({"current_period_end": 9})),
            Some(9)
        );
        assert_eq!(
            subscription_period_end(&json!({"items": {"data": [{"current_period_end": 7}]}})),
            Some(7)
        );
    }

    #[test]
    fn statuses_map_to_three() {
        for (s, want) in [
            ("active", "active"),
            ("trialing", "active"),
            ("past_due", "past_due"),
            ("unpaid", "past_due"),
            ("incomplete", "past_due"),
            ("canceled", "canceled"),
            ("incomplete_expired", "canceled"),
            ("paused", "canceled"),
        ] {
            assert_eq!(map_status(s), want, "{s}");
        }
    }

    #[test]
    fn refund_share_is_proportional_and_rounded_down() {
        assert_eq!(refund_share(250, 500, 100, false), 50);
        assert_eq!(refund_share(250, 500, 101, false), 50);
        assert_eq!(refund_share(250, 500, 500, false), 250);
        assert_eq!(refund_share(250, 500, 10, true), 250);
        assert_eq!(refund_share(250, 0, 0, false), 0);
        assert_eq!(refund_share(7000, 10000, 9999, false), 6999);
    }

    #[test]
    fn ids_may_be_expanded() {
        let o = json!({"customer": {"id": "cus_1"}, "x": "", "y": null});
        assert_eq!(id_of(&o, "customer"), Some("cus_1"));
        assert_eq!(id_of(&o, "x"), None);
        assert_eq!(id_of(&o, "y"), None);
    }
}
