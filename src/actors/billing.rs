//! `BillingActor`: owns every payment side effect — Stripe checkout and portal sessions,
//! the simulated checkout, and applying webhook events exactly once.
//!
//! Webhook deliveries are verified here, then applied by the ledger actor in one
//! durable transaction with the credit rows they cause. The actor remembers which
//! event ids are being applied right now: a concurrent duplicate is answered
//! `CONFLICT` (Stripe retries it), a later one finds the event recorded.

use std::collections::HashSet;

use bytes::Bytes;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde_json::{json, Value};

mod simulate;

use super::billing_apply::{apply_event, Applied};
use super::ledger::LedgerHandle;
use crate::config::BillingConfig;
use crate::db::accounts::User;
use crate::db::billing::{self as bdb, CheckoutSession, ProfileKey};
use crate::db::packages;
use crate::db::Db;
use crate::domain::billing::{redirect_urls, CheckoutRequest, PurchaseType};
use crate::domain::time::now_ms;
use crate::domain::{ApiError, ErrorCode};
use crate::stripe::client::StripeClient;
use crate::stripe::event::Event;
use crate::stripe::{forms, signature, simulated};

/// Messages of the billing actor.
pub enum BillingMsg {
    /// Open a checkout session.
    Checkout {
        user: User,
        purchase: PurchaseType,
        request: CheckoutRequest,
        base_url: String,
        reply: RpcReplyPort<Result<Value, ApiError>>,
    },
    /// Open a customer portal session.
    Portal {
        user: User,
        /// The app path the portal returns to (already checked).
        return_to: String,
        base_url: String,
        reply: RpcReplyPort<Result<Value, ApiError>>,
    },
    /// A webhook delivery: the raw body and its `Stripe-Signature`.
    Webhook {
        payload: Bytes,
        signature: Option<String>,
        reply: RpcReplyPort<Result<Applied, ApiError>>,
    },
    /// An event's application ended (internal).
    Finished(String),
}

/// The actor (its state is [`BillingState`]).
pub struct BillingActor;

/// The service and the event ids being applied now.
pub struct BillingState {
    billing: Billing,
    in_flight: HashSet<String>,
}

impl Actor for BillingActor {
    type Msg = BillingMsg;
    type State = BillingState;
    type Arguments = Billing;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        billing: Billing,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(BillingState {
            billing,
            in_flight: HashSet::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Slow work runs in its own task so the mailbox keeps moving.
        let billing = state.billing.clone();
        match message {
            BillingMsg::Checkout {
                user,
                purchase,
                request,
                base_url,
                reply,
            } => {
                tokio::spawn(async move {
                    let _ = reply.send(billing.checkout(user, purchase, request, base_url).await);
                });
            }
            BillingMsg::Portal {
                user,
                return_to,
                base_url,
                reply,
            } => {
                tokio::spawn(async move {
                    let _ = reply.send(billing.portal(user, &return_to, base_url).await);
                });
            }
            BillingMsg::Webhook {
                payload,
                signature,
                reply,
            } => {
                let event = match billing.verify(&payload, signature.as_deref()) {
                    Ok(event) => event,
                    Err(err) => {
                        let _ = reply.send(Err(err));
                        return Ok(());
                    }
                };
                if !state.in_flight.insert(event.id.clone()) {
                    let _ = reply.send(Err(ApiError::with_message(
                        ErrorCode::CONFLICT,
                        "this event is being applied right now; retry later",
                    )));
                    return Ok(());
                }
                tokio::spawn(async move {
                    let id = event.id.clone();
                    let result = billing.apply(event).await;
                    let _ = myself.send_message(BillingMsg::Finished(id));
                    let _ = reply.send(result);
                });
            }
            BillingMsg::Finished(id) => {
                state.in_flight.remove(&id);
            }
        }
        Ok(())
    }
}

/// The billing service the actor runs.
#[derive(Clone)]
pub struct Billing {
    db: Db,
    ledger: LedgerHandle,
    config: BillingConfig,
    webhook_secret: Option<String>,
    client: StripeClient,
}

impl Billing {
    /// The service for `config`; `webhook_secret` is the configured one or, in simulated
    /// mode, the derived one.
    pub fn new(
        db: Db,
        ledger: LedgerHandle,
        config: BillingConfig,
        webhook_secret: Option<String>,
    ) -> Billing {
        let client = StripeClient::new(&config);
        Billing {
            db,
            ledger,
            config,
            webhook_secret,
            client,
        }
    }

    /// Checks the signature and reads the event envelope.
    fn verify(&self, payload: &[u8], header: Option<&str>) -> Result<Event, ApiError> {
        let secret = self
            .webhook_secret
            .as_deref()
            .ok_or_else(|| ApiError::internal().cause("stripe webhook secret is not configured"))?;
        let now = now_ms() / 1000;
        let tolerance = self.config.webhook_tolerance_secs as i64;
        signature::verify(payload, header, secret, now, tolerance).map_err(|why| {
            ApiError::new(ErrorCode::STRIPE_SIGNATURE_INVALID).cause(why.to_string())
        })?;
        serde_json::from_slice::<Value>(payload)
            .ok()
            .and_then(Event::parse)
            .ok_or_else(|| ApiError::with_message(ErrorCode::BAD_REQUEST, "not a Stripe event"))
    }

    /// Applies an event exactly once, durably, with the credit rows it causes.
    async fn apply(&self, event: Event) -> Result<Applied, ApiError> {
        let id = event.id.clone();
        let kind = event.kind.clone();
        let result = self
            .ledger
            .run_with(true, move |conn| apply_event(conn, &event, now_ms()))
            .await
            // Whatever stopped it, the event was rolled back and Stripe must try again.
            .map_err(|err| match err.code {
                ErrorCode::INTERNAL_ERROR => err,
                _ => ApiError::internal().cause(err.to_string()),
            });
        match &result {
            Ok(applied) => tracing::info!(event_id = %id, %kind, result = applied.label(),
                detail = ?applied, "stripe event"),
            Err(err) => tracing::error!(event_id = %id, %kind, error = %err,
                cause = err.cause.as_deref().unwrap_or(""), "stripe event failed; rolled back"),
        }
        result
    }

    async fn checkout(
        &self,
        user: User,
        purchase: PurchaseType,
        request: CheckoutRequest,
        base_url: String,
    ) -> Result<Value, ApiError> {
        let package_id = request.package_id.clone();
        let package = self
            .db
            .read(move |conn| packages::find(conn, &package_id))
            .await?
            .filter(|p| p.active && p.kind == purchase.as_str())
            .ok_or_else(|| ApiError::with_message(ErrorCode::NOT_FOUND, "package not found"))?;
        let (mut success_url, cancel_url) = redirect_urls(&self.config.app_url, &request.return_to);
        if purchase == PurchaseType::OneTime {
            // The reference's pricing page tells a pack from a plan by this.
            success_url.push_str("&type=onetime");
        }
        let mut session = CheckoutSession {
            id: String::new(),
            user_id: user.id.clone(),
            package_id: package.id.clone(),
            purchase_type: purchase.as_str().into(),
            currency: "usd".into(),
            amount: package.price_usd_cents,
            success_url,
            cancel_url,
            status: "open".into(),
            created_at: now_ms(),
        };
        if !self.config.is_stripe() {
            session.id = simulated::new_id("cs");
            let url = format!(
                "{}/dev/checkout/{}",
                base_url.trim_end_matches('/'),
                session.id
            );
            let id = session.id.clone();
            self.store_session(session).await?;
            return Ok(json!({"url": url, "id": id}));
        }
        let price = package.price_for(&request.currency).ok_or_else(|| {
            ApiError::new(ErrorCode::STRIPE_PACKAGE_MISSING_PRICE)
                .details(json!({"currency": request.currency}))
        })?;
        let customer = self.customer_of(&user.id).await?;
        let form = forms::checkout(&forms::CheckoutParams {
            purchase,
            price_id: price,
            success_url: &session.success_url,
            cancel_url: &session.cancel_url,
            user_id: &user.id,
            email: &user.email,
            package_id: &package.id,
            currency: &request.currency,
            customer_id: customer.as_deref(),
        });
        let answer = self
            .post("/v1/checkout/sessions", form)
            .await
            .map_err(|why| ApiError::new(ErrorCode::STRIPE_CHECKOUT_CREATE_FAILED).cause(why))?;
        let (Some(id), Some(url)) = (answer["id"].as_str(), answer["url"].as_str()) else {
            return Err(ApiError::new(ErrorCode::STRIPE_CHECKOUT_CREATE_FAILED)
                .cause("stripe answered without id or url"));
        };
        session.id = id.to_string();
        session.currency = answer["currency"]
            .as_str()
            .unwrap_or(&request.currency)
            .to_string();
        session.amount = answer["amount_total"].as_i64().unwrap_or(session.amount);
        let reply = json!({"url": url, "id": id});
        self.store_session(session).await?;
        Ok(reply)
    }

    async fn portal(
        &self,
        user: User,
        return_to: &str,
        base_url: String,
    ) -> Result<Value, ApiError> {
        let customer = self
            .customer_of(&user.id)
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::NO_SUBSCRIPTION))?;
        if !self.config.is_stripe() {
            let base = base_url.trim_end_matches('/');
            return Ok(json!({"url": format!("{base}/dev/portal/{customer}")}));
        }
        let return_url = format!("{}{return_to}", self.config.app_url.trim_end_matches('/'));
        let answer = self
            .post(
                "/v1/billing_portal/sessions",
                forms::portal(&customer, &return_url),
            )
            .await
            .map_err(|why| ApiError::new(ErrorCode::PORTAL_CREATE_FAILED).cause(why))?;
        let url = answer["url"].as_str().ok_or_else(|| {
            ApiError::new(ErrorCode::PORTAL_CREATE_FAILED).cause("stripe answered without url")
        })?;
        Ok(json!({"url": url}))
    }

    /// One Stripe POST on a blocking thread, with a new idempotency key for this
    /// logical operation (kept across its retries).
    async fn post(&self, path: &'static str, form: Vec<(String, String)>) -> Result<Value, String> {
        let client = self.client.clone();
        let key = format!("atelier-{}", uuid::Uuid::now_v7());
        tokio::task::spawn_blocking(move || client.post_form(path, &form, &key))
            .await
            .map_err(|e| format!("stripe call panicked: {e}"))?
            .map_err(|e| e.to_string())
    }

    async fn customer_of(&self, user_id: &str) -> Result<Option<String>, ApiError> {
        let user_id = user_id.to_string();
        Ok(self
            .db
            .read(move |conn| bdb::profile_by(conn, ProfileKey::User, &user_id))
            .await?
            .and_then(|p| p.customer_id))
    }

    async fn store_session(&self, session: CheckoutSession) -> Result<(), ApiError> {
        self.db
            .write(move |conn| bdb::insert_session(conn, &session))
            .await
            .map_err(ApiError::from)
    }
}

/// A cheap, clonable way to talk to the billing actor.
#[derive(Clone)]
pub struct BillingHandle {
    actor: ActorRef<BillingMsg>,
    billing: Billing,
}

fn actor_gone<T>(_: T) -> ApiError {
    ApiError::internal().cause("the billing actor is not running")
}

impl BillingHandle {
    /// Spawns the actor.
    pub async fn spawn(billing: Billing) -> Result<BillingHandle, ApiError> {
        let (actor, _) = Actor::spawn(None, BillingActor, billing.clone())
            .await
            .map_err(actor_gone)?;
        Ok(BillingHandle { actor, billing })
    }

    /// Stops the actor.
    pub fn stop(&self) {
        self.actor.stop(None);
    }

    /// Whether billing is simulated.
    pub fn simulated(&self) -> bool {
        !self.billing.config.is_stripe()
    }

    async fn call<T: Send + 'static>(
        &self,
        message: impl FnOnce(RpcReplyPort<Result<T, ApiError>>) -> BillingMsg,
    ) -> Result<T, ApiError> {
        match self.actor.call(message, None).await {
            Ok(ractor::rpc::CallResult::Success(result)) => result,
            Ok(_) => Err(ApiError::internal().cause("billing call got no answer")),
            Err(e) => Err(actor_gone(e)),
        }
    }

    /// `create-credit-checkout` / `create-onetime-checkout`: `{url, id}`.
    pub async fn checkout(
        &self,
        user: User,
        purchase: PurchaseType,
        request: CheckoutRequest,
        base_url: String,
    ) -> Result<Value, ApiError> {
        self.call(|reply| BillingMsg::Checkout {
            user,
            purchase,
            request,
            base_url,
            reply,
        })
        .await
    }

    /// `create-portal-session`: `{url}`, returning to `return_to` (an app path).
    pub async fn portal(
        &self,
        user: User,
        return_to: String,
        base_url: String,
    ) -> Result<Value, ApiError> {
        self.call(|reply| BillingMsg::Portal {
            user,
            return_to,
            base_url,
            reply,
        })
        .await
    }

    /// A webhook delivery, verified and applied exactly once.
    pub async fn webhook(
        &self,
        payload: Bytes,
        signature: Option<String>,
    ) -> Result<Applied, ApiError> {
        self.call(|reply| BillingMsg::Webhook {
            payload,
            signature,
            reply,
        })
        .await
    }

    /// Signs `event` with the webhook secret, as Stripe would, and delivers it through
    /// [`BillingHandle::webhook`].
    pub async fn deliver(&self, event: &Value) -> Result<Applied, ApiError> {
        let secret =
            self.billing.webhook_secret.as_deref().ok_or_else(|| {
                ApiError::internal().cause("stripe webhook secret is not configured")
            })?;
        let payload =
            serde_json::to_vec(event).map_err(|e| ApiError::internal().cause(e.to_string()))?;
        let header = signature::header(&payload, secret, now_ms() / 1000);
        self.webhook(Bytes::from(payload), Some(header)).await
    }
}
