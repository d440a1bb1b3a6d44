//! A fake Alipay gateway on 127.0.0.1 with its own RSA key pair (made in the test):
//! it checks the merchant's RSA2 signature on `alipay.trade.query` / `alipay.trade.refund`,
//! answers `{"<method>_response": {...}, "sign": "..."}` signed over the response
//! object's exact text, and builds notifies signed as Alipay documents them. The
//! canonical string is written here again, independently of Atelier's.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{json, Value};
use sha2::Sha256;
use warp::Filter;

/// The app id the fake knows.
pub const APP_ID: &str = "2021004100000001";

/// Key pairs made once per test binary: (Alipay's, the merchant's).
fn keys() -> &'static (RsaPrivateKey, RsaPrivateKey) {
    static KEYS: OnceLock<(RsaPrivateKey, RsaPrivateKey)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = rsa::rand_core::OsRng;
        (
            RsaPrivateKey::new(&mut rng, 2048).unwrap(),
            RsaPrivateKey::new(&mut rng, 2048).unwrap(),
        )
    })
}

/// A trade as the fake's books have it.
#[derive(Debug, Clone)]
pub struct Trade {
    pub status: String,
    pub total_amount: String,
    pub trade_no: String,
    pub refunded: Vec<(String, String)>,
}

#[derive(Default)]
struct Inner {
    trades: HashMap<String, Trade>,
    requests: Vec<Vec<(String, String)>>,
}

/// The running fake.
#[derive(Clone)]
pub struct FakeAlipay {
    pub addr: SocketAddr,
    pub gateway: String,
    inner: Arc<Mutex<Inner>>,
}

/// Alipay's documented canonical string: sorted by key, `sign` (and for notifies
/// `sign_type`) and empty values left out, `k=v` joined by `&`.
pub fn canonical(params: &[(String, String)], drop_sign_type: bool) -> String {
    let mut kept: Vec<String> = params
        .iter()
        .filter(|(k, v)| !v.is_empty() && k != "sign" && !(drop_sign_type && k == "sign_type"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    kept.sort_by(|a, b| {
        let key = |s: &String| s.split_once('=').map(|(k, _)| k.to_string()).unwrap();
        key(a).cmp(&key(b))
    });
    kept.join("&")
}

fn rsa2(key: &RsaPrivateKey, text: &str) -> String {
    STANDARD.encode(
        SigningKey::<Sha256>::new(key.clone())
            .sign(text.as_bytes())
            .to_bytes(),
    )
}

fn rsa2_ok(key: &RsaPublicKey, text: &str, sig: &str) -> bool {
    let Ok(bytes) = STANDARD.decode(sig) else {
        return false;
    };
    let Ok(sig) = Signature::try_from(bytes.as_slice()) else {
        return false;
    };
    VerifyingKey::<Sha256>::new(key.clone())
        .verify(text.as_bytes(), &sig)
        .is_ok()
}

/// Form-encodes pairs in the given order.
pub fn encode(params: &[(String, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter())
        .finish()
}

/// Decodes a form or query string.
pub fn decode(text: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(text.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A field's value.
pub fn field<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

impl FakeAlipay {
    /// Alipay's public key (PEM), for `billing.alipay.public_key`.
    pub fn alipay_public_pem(&self) -> String {
        RsaPublicKey::from(&keys().0)
            .to_public_key_pem(LineEnding::LF)
            .unwrap()
    }

    /// The merchant's private key (PKCS#8 PEM), for `billing.alipay.private_key`.
    pub fn merchant_private_pem(&self) -> String {
        keys().1.to_pkcs8_pem(LineEnding::LF).unwrap().to_string()
    }

    /// Verifies a merchant-signed parameter set (`sign_type` stays in the string).
    pub fn merchant_signed(&self, params: &[(String, String)]) -> bool {
        let sig = field(params, "sign").unwrap_or("");
        rsa2_ok(
            &RsaPublicKey::from(&keys().1),
            &canonical(params, false),
            sig,
        )
    }

    /// Records a trade as paid at Alipay (for reconcile and refunds).
    pub fn pay(&self, out_trade_no: &str, total_amount: &str) -> String {
        let trade_no = format!("2026120322001{}", &out_trade_no[out_trade_no.len() - 8..]);
        self.inner.lock().unwrap().trades.insert(
            out_trade_no.into(),
            Trade {
                status: "TRADE_SUCCESS".into(),
                total_amount: total_amount.into(),
                trade_no: trade_no.clone(),
                refunded: Vec::new(),
            },
        );
        trade_no
    }

    /// A trade Alipay closed (timeout) before it was paid.
    pub fn close(&self, out_trade_no: &str, total_amount: &str) {
        self.inner.lock().unwrap().trades.insert(
            out_trade_no.into(),
            Trade {
                status: "TRADE_CLOSED".into(),
                total_amount: total_amount.into(),
                trade_no: String::new(),
                refunded: Vec::new(),
            },
        );
    }

    /// A trade's state.
    pub fn trade(&self, out_trade_no: &str) -> Option<Trade> {
        self.inner.lock().unwrap().trades.get(out_trade_no).cloned()
    }

    /// Every gateway request's parameters.
    pub fn requests(&self) -> Vec<Vec<(String, String)>> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// The notify parameters Alipay would post for a paid trade (unsigned).
    pub fn notify_params(
        &self,
        out_trade_no: &str,
        total_amount: &str,
        status: &str,
    ) -> Vec<(String, String)> {
        [
            ("gmt_create", "2026-12-03 21:00:00"),
            ("charset", "utf-8"),
            ("seller_email", "merchant@example.com"),
            ("subject", "Starter Pack"),
            ("buyer_id", "2088102116773037"),
            ("invoice_amount", total_amount),
            ("notify_id", "2026120300222210001234567890"),
            (
                "fund_bill_list",
                "[{\"amount\":\"36.00\",\"fundChannel\":\"ALIPAYACCOUNT\"}]",
            ),
            ("notify_type", "trade_status_sync"),
            ("trade_status", status),
            ("receipt_amount", total_amount),
            ("app_id", APP_ID),
            ("buyer_pay_amount", total_amount),
            ("sign_type", "RSA2"),
            ("seller_id", "2088102119685838"),
            ("gmt_payment", "2026-12-03 21:00:05"),
            ("notify_time", "2026-12-03 21:00:06"),
            ("version", "1.0"),
            ("out_trade_no", out_trade_no),
            ("total_amount", total_amount),
            ("trade_no", "2026120322001437561000012345"),
            ("auth_app_id", APP_ID),
            ("buyer_logon_id", "159****5620"),
            ("point_amount", "0.00"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Signs notify parameters with Alipay's key (appends `sign`).
    pub fn sign_notify(&self, mut params: Vec<(String, String)>) -> Vec<(String, String)> {
        let sig = rsa2(&keys().0, &canonical(&params, true));
        params.push(("sign".into(), sig));
        params
    }

    /// Signs with a key that is not Alipay's.
    pub fn sign_notify_with_other_key(
        &self,
        mut params: Vec<(String, String)>,
    ) -> Vec<(String, String)> {
        let sig = rsa2(&keys().1, &canonical(&params, true));
        params.push(("sign".into(), sig));
        params
    }
}

/// Starts the fake on 127.0.0.1:0 (`POST /gateway.do`).
pub async fn start() -> FakeAlipay {
    keys();
    let inner = Arc::new(Mutex::new(Inner::default()));
    let state = inner.clone();
    let route = warp::post()
        .and(warp::path!("gateway.do"))
        .and(warp::body::bytes())
        .map(move |body: Bytes| {
            let params = decode(&String::from_utf8_lossy(&body));
            let text = answer(&state, params);
            warp::reply::with_header(text, "content-type", "application/json;charset=utf-8")
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(warp::serve(route).incoming(listener).run());
    FakeAlipay {
        addr,
        gateway: format!("http://{addr}/gateway.do"),
        inner,
    }
}

fn answer(state: &Arc<Mutex<Inner>>, params: Vec<(String, String)>) -> String {
    let method = field(&params, "method").unwrap_or("").to_string();
    let key = format!("{}_response", method.replace('.', "_"));
    let merchant = RsaPublicKey::from(&keys().1);
    let signed = rsa2_ok(
        &merchant,
        &canonical(&params, false),
        field(&params, "sign").unwrap_or(""),
    );
    let biz: Value = field(&params, "biz_content")
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    let mut inner = state.lock().unwrap();
    inner.requests.push(params.clone());
    let response = if field(&params, "app_id") != Some(APP_ID) {
        json!({"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-app-id"})
    } else if !signed {
        json!({"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-signature"})
    } else {
        let no = biz["out_trade_no"].as_str().unwrap_or("").to_string();
        match (method.as_str(), inner.trades.get_mut(&no)) {
            ("alipay.trade.query", Some(t)) => json!({"code": "10000", "msg": "Success",
                "trade_no": t.trade_no, "out_trade_no": no, "trade_status": t.status,
                "total_amount": t.total_amount, "buyer_logon_id": "159****5620"}),
            ("alipay.trade.refund", Some(t)) if t.status == "TRADE_SUCCESS" => {
                let request = biz["out_request_no"].as_str().unwrap_or("").to_string();
                let amount = biz["refund_amount"].as_str().unwrap_or("").to_string();
                if !t.refunded.iter().any(|(r, _)| *r == request) {
                    t.refunded.push((request, amount.clone()));
                }
                json!({"code": "10000", "msg": "Success", "trade_no": t.trade_no,
                    "out_trade_no": no, "fund_change": "Y", "refund_fee": amount})
            }
            _ => json!({"code": "40004", "msg": "Business Failed",
                "sub_code": "ACQ.TRADE_NOT_EXIST", "sub_msg": "交易不存在"}),
        }
    };
    let text = response.to_string();
    let sig = rsa2(&keys().0, &text);
    format!("{{\"{key}\":{text},\"sign\":\"{sig}\"}}")
}
