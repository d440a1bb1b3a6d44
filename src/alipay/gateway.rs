//! Signed calls to Alipay's gateway (`https://openapi.alipay.com/gateway.do`): the
//! common parameters, the page / wap pay URL the buyer is sent to, and
//! `alipay.trade.query` / `alipay.trade.refund` whose answers are verified too.

use std::time::Duration;

use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::Value;

use super::sign::{self, Purpose};

/// A configured merchant: app id, keys, gateway.
#[derive(Clone)]
pub struct Merchant {
    pub app_id: String,
    pub private_key: RsaPrivateKey,
    pub alipay_key: RsaPublicKey,
    pub gateway_url: String,
    pub timeout: Duration,
}

impl std::fmt::Debug for Merchant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Merchant")
            .field("app_id", &self.app_id)
            .field("gateway_url", &self.gateway_url)
            .finish_non_exhaustive()
    }
}

/// Fen (1/100 yuan) as Alipay's `total_amount`: `36.00`.
pub fn yuan(fen: i64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

/// Alipay's `total_amount` (`36`, `36.5`, `36.00`) in fen; `None` if malformed.
pub fn fen(amount: &str) -> Option<i64> {
    let (whole, frac) = amount.split_once('.').unwrap_or((amount, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || whole.len() > 12 {
        return None;
    }
    if frac.len() > 2 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let cents = format!("{frac:0<2}").parse::<i64>().ok()?;
    Some(whole.parse::<i64>().ok()? * 100 + cents)
}

/// `yyyy-MM-dd HH:mm:ss` in Beijing time (UTC+8), as the gateway wants `timestamp`.
pub fn beijing_time(unix_ms: i64) -> String {
    let offset = time::UtcOffset::from_hms(8, 0, 0).unwrap_or(time::UtcOffset::UTC);
    let t = time::OffsetDateTime::from_unix_timestamp(unix_ms / 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .to_offset(offset);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Which pay page: `alipay.trade.page.pay` (desktop) or `alipay.trade.wap.pay` (mobile).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    Page,
    Wap,
}

impl Surface {
    /// From the buyer's User-Agent, as the reference reads it.
    pub fn from_user_agent(ua: Option<&str>) -> Surface {
        let ua = ua.unwrap_or("").to_ascii_lowercase();
        let mobile = [
            "android",
            "iphone",
            "ipad",
            "ipod",
            "mobile",
            "blackberry",
            "iemobile",
            "opera mini",
            "webos",
        ];
        if mobile.iter().any(|m| ua.contains(m)) {
            Surface::Wap
        } else {
            Surface::Page
        }
    }

    /// `page` or `wap`.
    pub fn as_str(self) -> &'static str {
        match self {
            Surface::Page => "page",
            Surface::Wap => "wap",
        }
    }

    fn method(self) -> &'static str {
        match self {
            Surface::Page => "alipay.trade.page.pay",
            Surface::Wap => "alipay.trade.wap.pay",
        }
    }

    fn product_code(self) -> &'static str {
        match self {
            Surface::Page => "FAST_INSTANT_TRADE_PAY",
            Surface::Wap => "QUICK_WAP_WAY",
        }
    }
}

/// What a pay page is opened for.
pub struct PayOrder<'a> {
    pub out_trade_no: &'a str,
    pub amount_fen: i64,
    pub subject: &'a str,
    pub return_url: &'a str,
    pub notify_url: &'a str,
    pub surface: Surface,
}

impl Merchant {
    /// The common parameters plus `extra` and `biz_content`, signed (`sign` last).
    pub fn signed(
        &self,
        method: &str,
        biz: &Value,
        extra: &[(&str, &str)],
        now_ms: i64,
    ) -> Vec<(String, String)> {
        let mut params: Vec<(String, String)> = [
            ("app_id", self.app_id.as_str()),
            ("method", method),
            ("format", "JSON"),
            ("charset", "utf-8"),
            ("sign_type", "RSA2"),
            ("timestamp", &beijing_time(now_ms)),
            ("version", "1.0"),
        ]
        .iter()
        .chain(extra.iter())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        params.push(("biz_content".into(), biz.to_string()));
        let signature = sign::sign(
            &sign::canonical(&params, Purpose::Request),
            &self.private_key,
        );
        params.push(("sign".into(), signature));
        params
    }

    /// The gateway URL the buyer's browser opens to pay.
    pub fn pay_url(&self, order: &PayOrder<'_>, now_ms: i64) -> String {
        let mut biz = serde_json::json!({
            "out_trade_no": order.out_trade_no,
            "total_amount": yuan(order.amount_fen),
            "subject": order.subject,
            "product_code": order.surface.product_code(),
            "timeout_express": "30m",
        });
        if order.surface == Surface::Wap {
            biz["quit_url"] = Value::from(order.return_url);
        }
        let extra = [
            ("return_url", order.return_url),
            ("notify_url", order.notify_url),
        ];
        let params = self.signed(order.surface.method(), &biz, &extra, now_ms);
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish();
        let sep = if self.gateway_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!("{}{sep}{query}", self.gateway_url)
    }

    /// One signed gateway call (`alipay.trade.query`, `alipay.trade.refund`): the
    /// `<method>_response` object, its signature checked with Alipay's key.
    pub fn call(&self, method: &str, biz: &Value, now_ms: i64) -> Result<Value, String> {
        let params = self.signed(method, biz, &[], now_ms);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(self.timeout))
            .http_status_as_error(false)
            .build()
            .into();
        let pairs: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut response = agent
            .post(&self.gateway_url)
            .send_form(pairs)
            .map_err(|e| format!("alipay gateway unreachable: {e}"))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("alipay answer unreadable: {e}"))?;
        if status != 200 {
            return Err(format!("alipay gateway answered HTTP {status}"));
        }
        let key = format!("{}_response", method.replace('.', "_"));
        let parsed: Value =
            serde_json::from_str(&body).map_err(|_| "alipay answered no JSON".to_string())?;
        let raw = raw_member(&body, &key).ok_or_else(|| format!("alipay answer has no {key}"))?;
        let signature = parsed["sign"].as_str().unwrap_or("");
        let answer = &parsed[key.as_str()];
        // An error answer (e.g. a bad app id) may come unsigned; a success never does.
        if !sign::verify(raw, signature, &self.alipay_key) {
            if answer["code"].as_str() != Some("10000") {
                return Ok(answer.clone());
            }
            return Err("alipay answer signature is invalid".into());
        }
        Ok(answer.clone())
    }
}

/// The raw text of the JSON value of top-level member `key` (what Alipay signs in a
/// gateway answer: the `*_response` object exactly as sent).
pub fn raw_member<'a>(body: &'a str, key: &str) -> Option<&'a str> {
    let needle = format!("\"{key}\"");
    let at = body.find(&needle)? + needle.len();
    let rest = &body[at..];
    let colon = rest.find(':')?;
    let value = rest[colon + 1..].trim_start();
    let start = body.len() - value.len();
    let bytes = value.as_bytes();
    if bytes.first() != Some(&b'{') {
        return None;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&body[start..start + i + 1]);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_and_surfaces() {
        assert_eq!(yuan(3600), "36.00");
        assert_eq!(yuan(5), "0.05");
        assert_eq!(fen("36.00"), Some(3600));
        assert_eq!(fen("36.5"), Some(3650));
        assert_eq!(fen("36"), Some(3600));
        for bad in ["", "-1", "1.234", "1e3", "3 6", ".5"] {
            assert_eq!(fen(bad), None, "{bad}");
        }
        assert_eq!(beijing_time(0), "1970-01-01 08:00:00");
        assert_eq!(
            Surface::from_user_agent(Some("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0)")),
            Surface::Wap
        );
        assert_eq!(
            Surface::from_user_agent(Some("Mozilla/5.0 (X11; Linux x86_64)")),
            Surface::Page
        );
        assert_eq!(Surface::from_user_agent(None), Surface::Page);
        let body = r#"{"alipay_trade_query_response":{"code":"10000","msg":"a}\"b"},"sign":"x"}"#;
        assert_eq!(
            raw_member(body, "alipay_trade_query_response"),
            Some(r#"{"code":"10000","msg":"a}\"b"}"#)
        );
    }
}
