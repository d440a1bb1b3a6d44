//! Alipay direct: checkout orders, the notify, reconcile by `alipay.trade.query`, and
//! refunds by `alipay.trade.refund`. Every change of money goes through the ledger
//! actor in one durable transaction (`alipay_apply`); the ledger's serial writer is
//! what makes 50 concurrent copies of one notify grant once.
//!
//! Without `[billing.alipay]` keys Alipay is simulated on a server whose billing is
//! simulated: a key pair made at first use stands in for both the merchant's and
//! Alipay's, and the `/dev/alipay/<order>` page posts a notify signed with it through
//! [`Alipay::notify`]. A server that takes real money (`billing.mode = "stripe"`) and has
//! no Alipay keys has no Alipay at all: a simulated one there would hand out credits.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{json, Value};

use super::alipay_apply::{apply_paid, apply_refund, PaidTrade, TradeApplied};
use super::ledger::LedgerHandle;
use crate::alipay::gateway::{beijing_time, yuan, Merchant, PayOrder, Surface};
use crate::alipay::sign::{self, Purpose};
use crate::config::{AlipayConfig, BillingConfig};
use crate::db::accounts::User;
use crate::db::alipay::{self as adb, AlipayOrder};
use crate::db::billing::{self as bdb, PaymentKey};
use crate::db::{packages, Db};
use crate::domain::billing::{redirect_urls, CheckoutRequest};
use crate::domain::time::now_ms;
use crate::domain::{ApiError, ErrorCode};

/// The simulated Alipay's key pair (made once per process, on first use).
static SIMULATED_KEY: OnceLock<RsaPrivateKey> = OnceLock::new();

/// The app id the simulated Alipay uses.
pub const SIMULATED_APP_ID: &str = "2021000000000000";

/// The Alipay service (cheap to clone).
#[derive(Clone)]
pub struct Alipay {
    db: Db,
    ledger: LedgerHandle,
    config: AlipayConfig,
    app_url: String,
    merchant: Option<Arc<Merchant>>,
    /// Whether the simulated Alipay may stand in when no merchant is configured.
    simulation_allowed: bool,
}

/// How a notify ended: `success` is answered only for [`NotifyOutcome::Done`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyOutcome {
    /// Durably applied (or already applied, or nothing to do).
    Done(&'static str),
    /// Refused or failed: answer `fail` so Alipay retries (or gives up on a forgery).
    Fail(String),
}

impl Alipay {
    /// The service; a configured merchant whose keys do not parse is an error.
    pub fn new(db: Db, ledger: LedgerHandle, billing: &BillingConfig) -> Result<Alipay, String> {
        let config = billing.alipay.clone();
        let merchant = if config.is_configured() {
            let key = |v: &Option<String>| v.as_deref().unwrap_or("").to_string();
            Some(Arc::new(Merchant {
                app_id: key(&config.app_id),
                private_key: sign::private_key(&key(&config.private_key))
                    .map_err(|e| format!("billing.alipay.private_key: {e}"))?,
                alipay_key: sign::public_key(&key(&config.public_key))
                    .map_err(|e| format!("billing.alipay.public_key: {e}"))?,
                gateway_url: config.gateway_url.clone(),
                timeout: Duration::from_secs(config.timeout_secs.max(1)),
            }))
        } else {
            None
        };
        Ok(Alipay {
            db,
            ledger,
            config,
            app_url: billing.app_url.clone(),
            merchant,
            simulation_allowed: billing.mode == "simulated",
        })
    }

    /// Whether Alipay is simulated (no keys, and billing simulated).
    pub fn simulated(&self) -> bool {
        self.merchant.is_none() && self.simulation_allowed
    }

    /// Whether a real Alipay merchant is configured.
    pub fn configured(&self) -> bool {
        self.merchant.is_some()
    }

    /// Refuses when this server has no Alipay (real money, no keys).
    fn ensure_available(&self) -> Result<(), ApiError> {
        if self.configured() || self.simulated() {
            Ok(())
        } else {
            Err(ApiError::with_message(
                ErrorCode::ALIPAY_CHECKOUT_FAILED,
                "Alipay is not set up on this server",
            ))
        }
    }

    /// The interval of the reconcile sweep.
    pub fn reconcile_interval(&self) -> Duration {
        Duration::from_secs(self.config.reconcile_interval_secs.max(1))
    }

    /// The configured merchant, or the simulated one.
    fn merchant(&self) -> Result<Arc<Merchant>, ApiError> {
        if let Some(m) = &self.merchant {
            return Ok(m.clone());
        }
        self.ensure_available()?;
        let key = simulated_key()?;
        Ok(Arc::new(Merchant {
            app_id: SIMULATED_APP_ID.into(),
            alipay_key: RsaPublicKey::from(&key),
            private_key: key,
            gateway_url: String::new(),
            timeout: Duration::from_secs(1),
        }))
    }

    /// `create-alipay-checkout`: a pending order and the URL that pays it.
    pub async fn checkout(
        &self,
        user: User,
        request: CheckoutRequest,
        user_agent: Option<String>,
        base_url: String,
    ) -> Result<Value, ApiError> {
        self.ensure_available()?;
        let package_id = request.package_id.clone();
        let (package, terms) = self
            .db
            .read(move |conn| {
                Ok((
                    packages::find(conn, &package_id)?,
                    adb::package_terms(conn, &package_id)?,
                ))
            })
            .await?;
        let package = package
            .filter(|p| p.active)
            .ok_or_else(|| ApiError::with_message(ErrorCode::NOT_FOUND, "package not found"))?;
        let amount_fen = terms
            .and_then(|(price, _)| price)
            .ok_or_else(|| ApiError::new(ErrorCode::ALIPAY_PACKAGE_MISSING_PRICE))?;
        let surface = Surface::from_user_agent(user_agent.as_deref());
        let now = now_ms();
        let out_trade_no = format!("AT{}", uuid::Uuid::now_v7().simple());
        let order = AlipayOrder {
            out_trade_no: out_trade_no.clone(),
            user_id: user.id.clone(),
            package_id: package.id.clone(),
            purchase_type: package.kind.clone(),
            amount_fen,
            credits: package.credits,
            surface: surface.as_str().into(),
            status: "pending".into(),
            trade_no: None,
            payment_id: None,
            expires_at: now + self.config.order_ttl_minutes.max(1) as i64 * 60_000,
            paid_at: None,
            created_at: now,
        };
        let (return_url, _) = redirect_urls(&self.app_url, &request.return_to);
        let base = base_url.trim_end_matches('/').to_string();
        let url = match &self.merchant {
            Some(merchant) => {
                let notify_url = self
                    .config
                    .notify_url
                    .clone()
                    .unwrap_or_else(|| format!("{base}/functions/v1/alipay-notify"));
                merchant.pay_url(
                    &PayOrder {
                        out_trade_no: &out_trade_no,
                        amount_fen,
                        subject: &package.name,
                        return_url: &format!("{return_url}&method=alipay"),
                        notify_url: &notify_url,
                        surface,
                    },
                    now,
                )
            }
            None => format!(
                "{base}/dev/alipay/{out_trade_no}?return_to={}",
                url::form_urlencoded::byte_serialize(request.return_to.as_bytes())
                    .collect::<String>()
            ),
        };
        self.db
            .write(move |conn| adb::insert_order(conn, &order))
            .await?;
        Ok(json!({"url": url, "surface": surface.as_str(), "out_trade_no": out_trade_no}))
    }

    /// `alipay-notify`: verifies the form (RSA2 with Alipay's key, our app id, the
    /// order's amount) and applies it once, durably, before `success` is answered.
    pub async fn notify(&self, body: &[u8]) -> NotifyOutcome {
        let params: Vec<(String, String)> = url::form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let mut keys: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        if keys.windows(2).any(|w| w[0] == w[1]) {
            return NotifyOutcome::Fail("a parameter appears twice".into());
        }
        let merchant = match self.merchant() {
            Ok(m) => m,
            Err(e) => return NotifyOutcome::Fail(e.to_string()),
        };
        if let Err(why) = sign::verify_notify(&params, &merchant.alipay_key) {
            return NotifyOutcome::Fail(format!("notify refused: {why}"));
        }
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        if get("app_id") != merchant.app_id {
            return NotifyOutcome::Fail("notify for another app_id".into());
        }
        let out_trade_no = get("out_trade_no");
        match get("trade_status").as_str() {
            "TRADE_SUCCESS" | "TRADE_FINISHED" => {
                let trade = PaidTrade {
                    out_trade_no,
                    trade_no: get("trade_no"),
                    total_amount: get("total_amount"),
                };
                self.apply(trade).await
            }
            "TRADE_CLOSED" => {
                let result = self
                    .db
                    .write(move |conn| adb::expire_order(conn, &out_trade_no))
                    .await;
                match result {
                    Ok(_) => NotifyOutcome::Done("closed"),
                    Err(e) => NotifyOutcome::Fail(e.to_string()),
                }
            }
            _ => NotifyOutcome::Done("nothing to do"),
        }
    }

    async fn apply(&self, trade: PaidTrade) -> NotifyOutcome {
        let no = trade.out_trade_no.clone();
        let result = self
            .ledger
            .run_with(true, move |conn| apply_paid(conn, &trade, now_ms()))
            .await;
        match result {
            Ok(TradeApplied::Granted) => {
                tracing::info!(out_trade_no = %no, "alipay order paid: credits granted");
                NotifyOutcome::Done("granted")
            }
            Ok(TradeApplied::AlreadyDone) => NotifyOutcome::Done("already applied"),
            Err(err) => {
                tracing::warn!(out_trade_no = %no, error = %err, "alipay trade not applied");
                NotifyOutcome::Fail(err.to_string())
            }
        }
    }

    /// Asks Alipay about pending orders older than `min_age`: paid ones are applied,
    /// closed or unknown ones past their expiry are expired. Returns (paid, expired).
    pub async fn reconcile(&self, min_age: Duration) -> Result<(usize, usize), ApiError> {
        let before = now_ms() - min_age.as_millis() as i64;
        let orders = self
            .db
            .read(move |conn| adb::pending_orders(conn, before, 200))
            .await?;
        let (mut paid, mut expired) = (0, 0);
        for order in orders {
            let answer = match &self.merchant {
                Some(merchant) => {
                    let merchant = merchant.clone();
                    let biz = json!({"out_trade_no": order.out_trade_no});
                    tokio::task::spawn_blocking(move || {
                        merchant.call("alipay.trade.query", &biz, now_ms())
                    })
                    .await
                    .map_err(|e| ApiError::internal().cause(e.to_string()))?
                }
                None => Ok(json!({"code": "40004", "sub_code": "ACQ.TRADE_NOT_EXIST"})),
            };
            let answer = match answer {
                Ok(a) => a,
                Err(why) => {
                    tracing::warn!(out_trade_no = %order.out_trade_no, error = %why,
                        "alipay.trade.query failed");
                    continue;
                }
            };
            let status = answer["trade_status"].as_str().unwrap_or("");
            if answer["code"] == "10000" && matches!(status, "TRADE_SUCCESS" | "TRADE_FINISHED") {
                let trade = PaidTrade {
                    out_trade_no: order.out_trade_no.clone(),
                    trade_no: answer["trade_no"].as_str().unwrap_or("").to_string(),
                    total_amount: answer["total_amount"].as_str().unwrap_or("").to_string(),
                };
                if let NotifyOutcome::Done("granted") = self.apply(trade).await {
                    paid += 1;
                }
            } else if now_ms() > order.expires_at
                && (status == "TRADE_CLOSED" || answer["sub_code"] == "ACQ.TRADE_NOT_EXIST")
            {
                let no = order.out_trade_no.clone();
                if self
                    .db
                    .write(move |conn| adb::expire_order(conn, &no))
                    .await?
                {
                    expired += 1;
                }
            }
        }
        Ok((paid, expired))
    }

    /// The admin refund: `alipay.trade.refund` for `amount_fen` (default: what is
    /// left), then the credits' share reversed (debt if spent).
    pub async fn refund(
        &self,
        out_trade_no: &str,
        amount_fen: Option<i64>,
    ) -> Result<Value, ApiError> {
        let no = out_trade_no.to_string();
        let (order, payment) = self
            .db
            .read(move |conn| {
                let payment = bdb::payment_by(conn, PaymentKey::Session, &no)?;
                Ok((adb::find_order(conn, &no)?, payment))
            })
            .await?;
        let order = order
            .ok_or_else(|| ApiError::with_message(ErrorCode::NOT_FOUND, "no such Alipay order"))?;
        let payment = payment
            .ok_or_else(|| ApiError::with_message(ErrorCode::CONFLICT, "the order was not paid"))?;
        let left = payment.amount - payment.amount_refunded;
        let amount = amount_fen.unwrap_or(left);
        if amount < 1 || amount > left {
            return Err(ApiError::bad_field(
                "amount",
                format!("a refund takes between 1 and {left} fen"),
            ));
        }
        let total = payment.amount_refunded + amount;
        let out_request_no = format!("{}-R{total}", order.out_trade_no);
        if let Some(merchant) = &self.merchant {
            let merchant = merchant.clone();
            let biz = json!({"out_trade_no": order.out_trade_no, "refund_amount": yuan(amount),
                "out_request_no": out_request_no});
            let answer = tokio::task::spawn_blocking(move || {
                merchant.call("alipay.trade.refund", &biz, now_ms())
            })
            .await
            .map_err(|e| ApiError::internal().cause(e.to_string()))?
            .map_err(|why| ApiError::new(ErrorCode::ALIPAY_REFUND_FAILED).cause(why))?;
            if answer["code"] != "10000" {
                return Err(ApiError::new(ErrorCode::ALIPAY_REFUND_FAILED)
                    .details(json!({"code": answer["code"], "sub_code": answer["sub_code"]})));
            }
        }
        let no = order.out_trade_no.clone();
        let request = out_request_no.clone();
        self.ledger
            .run_with(true, move |conn| {
                apply_refund(conn, &no, &request, total, now_ms())
            })
            .await?;
        Ok(
            json!({"out_trade_no": order.out_trade_no, "out_request_no": out_request_no,
            "refunded": total, "currency": "cny"}),
        )
    }

    /// An order (for the simulated page).
    pub async fn order(&self, out_trade_no: &str) -> Result<AlipayOrder, ApiError> {
        let no = out_trade_no.to_string();
        self.db
            .read(move |conn| adb::find_order(conn, &no))
            .await?
            .ok_or_else(|| ApiError::with_message(ErrorCode::NOT_FOUND, "no such Alipay order"))
    }

    /// The simulated Alipay's Pay button: builds the notify Alipay would send, signs it
    /// with the simulated key and runs it through [`Alipay::notify`]; answers where the
    /// buyer is sent next.
    pub async fn simulate_pay(
        &self,
        out_trade_no: &str,
        return_to: &str,
    ) -> Result<String, ApiError> {
        let order = self.order(out_trade_no).await?;
        let merchant = self.merchant()?;
        let now = now_ms();
        let trade_no = format!("2026{}", uuid::Uuid::now_v7().simple());
        let mut params: Vec<(String, String)> = [
            ("notify_time", beijing_time(now)),
            ("notify_type", "trade_status_sync".into()),
            ("notify_id", uuid::Uuid::now_v7().simple().to_string()),
            ("app_id", merchant.app_id.clone()),
            ("charset", "utf-8".into()),
            ("version", "1.0".into()),
            ("sign_type", "RSA2".into()),
            ("trade_no", trade_no),
            ("out_trade_no", order.out_trade_no.clone()),
            ("trade_status", "TRADE_SUCCESS".into()),
            ("total_amount", yuan(order.amount_fen)),
            ("gmt_payment", beijing_time(now)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let signature = sign::sign(
            &sign::canonical(&params, Purpose::Notify),
            &merchant.private_key,
        );
        params.push(("sign".into(), signature));
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish();
        match self.notify(body.as_bytes()).await {
            NotifyOutcome::Done(_) => {
                let (success, _) = redirect_urls(&self.app_url, return_to);
                Ok(format!("{success}&method=alipay"))
            }
            NotifyOutcome::Fail(why) => Err(ApiError::internal().cause(why)),
        }
    }
}

fn simulated_key() -> Result<RsaPrivateKey, ApiError> {
    if let Some(key) = SIMULATED_KEY.get() {
        return Ok(key.clone());
    }
    let key = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
        .map_err(|e| ApiError::internal().cause(format!("simulated alipay key: {e}")))?;
    Ok(SIMULATED_KEY.get_or_init(|| key).clone())
}
