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

use super::billing_apply::{apply_event, Applied};
use super::ledger::LedgerHandle;
use crate::config::BillingConfig;
use crate::db::accounts::{self, User};
use crate::db::billing::{self as bdb, CheckoutSession, Payment, PaymentKey, ProfileKey};
use crate::db::packages::{self, Package};
use crate::db::{Db, DbError};
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
                base_url,
                reply,
            } => {
                tokio::spawn(async move {
                    let _ = reply.send(billing.portal(user, base_url).await);
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
            Ok(applied) => tracing::info!(event_id = %id, %kind, ?applied, "stripe event"),
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
        let (success_url, cancel_url) = redirect_urls(&self.config.app_url, &request.return_to);
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
        session.currency = request.currency.clone();
        session.amount = answer["amount_total"].as_i64().unwrap_or(session.amount);
        let reply = json!({"url": url, "id": id});
        self.store_session(session).await?;
        Ok(reply)
    }

    async fn portal(&self, user: User, base_url: String) -> Result<Value, ApiError> {
        let customer = self
            .customer_of(&user.id)
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::NO_SUBSCRIPTION))?;
        if !self.config.is_stripe() {
            let base = base_url.trim_end_matches('/');
            return Ok(json!({"url": format!("{base}/dev/portal/{customer}")}));
        }
        let return_url = format!("{}/pricing", self.config.app_url.trim_end_matches('/'));
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

    /// `create-portal-session`: `{url}`.
    pub async fn portal(&self, user: User, base_url: String) -> Result<Value, ApiError> {
        self.call(|reply| BillingMsg::Portal {
            user,
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

    /// A checkout session (for the simulated page).
    pub async fn session(&self, id: &str) -> Result<(CheckoutSession, Package), ApiError> {
        let id = id.to_string();
        self.billing
            .db
            .read(move |conn| {
                let Some(session) = bdb::find_session(conn, &id)? else {
                    return Ok(None);
                };
                Ok(packages::find(conn, &session.package_id)?.map(|p| (session, p)))
            })
            .await?
            .ok_or_else(|| ApiError::with_message(ErrorCode::NOT_FOUND, "no such checkout"))
    }

    /// The simulated Pay button: Stripe's `checkout.session.completed` for the session,
    /// signed and delivered through the webhook path. Returns the success URL.
    pub async fn simulate_pay(&self, session_id: &str) -> Result<String, ApiError> {
        let (session, _) = self.session(session_id).await?;
        match session.status.as_str() {
            "complete" => return Ok(session.success_url),
            "canceled" => {
                return Err(ApiError::with_message(
                    ErrorCode::CONFLICT,
                    "checkout was canceled",
                ))
            }
            _ => {}
        }
        let user_id = session.user_id.clone();
        let (user, customer) = self
            .billing
            .db
            .read(move |conn| {
                let user = accounts::find_by_id(conn, &user_id)?;
                let profile = bdb::profile_by(conn, ProfileKey::User, &user_id)?;
                Ok::<_, DbError>((user, profile.and_then(|p| p.customer_id)))
            })
            .await?;
        let user =
            user.ok_or_else(|| ApiError::with_message(ErrorCode::NOT_FOUND, "no such user"))?;
        let customer = customer.unwrap_or_else(|| simulated::new_id("cus"));
        let event =
            simulated::checkout_completed(&session, &user.email, &customer, now_ms() / 1000);
        self.deliver(&event).await?;
        Ok(session.success_url)
    }

    /// The simulated Cancel button. Returns the cancel URL.
    pub async fn simulate_cancel(&self, session_id: &str) -> Result<String, ApiError> {
        let (session, _) = self.session(session_id).await?;
        let id = session.id.clone();
        self.billing
            .db
            .write(move |conn| bdb::close_session(conn, &id, "canceled"))
            .await?;
        Ok(session.cancel_url)
    }

    /// `atelier stripe trigger checkout.session.completed`: a paid simulated checkout of
    /// `package` (id or name) for the user with `email`. Returns the session id.
    pub async fn trigger_checkout(&self, email: &str, package: &str) -> Result<String, ApiError> {
        let (email, package) = (email.trim().to_ascii_lowercase(), package.to_string());
        let (user, package) = self
            .billing
            .db
            .read(move |conn| {
                let user = accounts::find_by_email(conn, &email)?;
                let found = packages::find(conn, &package)?.or(packages::list_active(conn)?
                    .into_iter()
                    .find(|p| p.name.eq_ignore_ascii_case(&package)));
                Ok::<_, DbError>((user, found))
            })
            .await?;
        let user =
            user.ok_or_else(|| ApiError::with_message(ErrorCode::NOT_FOUND, "no such user"))?;
        let package = package
            .ok_or_else(|| ApiError::with_message(ErrorCode::NOT_FOUND, "no such package"))?;
        let (success_url, cancel_url) = redirect_urls(&self.billing.config.app_url, "/pricing");
        let session = CheckoutSession {
            id: simulated::new_id("cs"),
            user_id: user.id.clone(),
            package_id: package.id.clone(),
            purchase_type: package.kind.clone(),
            currency: "usd".into(),
            amount: package.price_usd_cents,
            success_url,
            cancel_url,
            status: "open".into(),
            created_at: now_ms(),
        };
        let id = session.id.clone();
        self.billing.store_session(session).await?;
        self.simulate_pay(&id).await?;
        Ok(id)
    }

    /// `atelier stripe trigger invoice.paid | invoice.payment_failed |
    /// customer.subscription.updated | customer.subscription.deleted` for the current
    /// subscription of the user with `email`. Returns the Stripe object id.
    pub async fn trigger_subscription(
        &self,
        kind: &str,
        email: &str,
        status: Option<&str>,
    ) -> Result<String, ApiError> {
        let email = email.trim().to_ascii_lowercase();
        let found = self
            .billing
            .db
            .read(move |conn| {
                let Some(user) = accounts::find_by_email(conn, &email)? else {
                    return Ok(None);
                };
                let profile = bdb::profile_by(conn, ProfileKey::User, &user.id)?;
                let package = match profile.as_ref().and_then(|p| p.package_id.clone()) {
                    Some(id) => packages::find(conn, &id)?,
                    None => None,
                };
                Ok::<_, DbError>(Some((user, profile, package)))
            })
            .await?
            .ok_or_else(|| ApiError::with_message(ErrorCode::NOT_FOUND, "no such user"))?;
        let (user, profile, package) = found;
        let (Some(profile), Some(package)) = (profile, package) else {
            return Err(ApiError::new(ErrorCode::NO_SUBSCRIPTION));
        };
        let Some(sub) = profile.subscription_id.as_deref() else {
            return Err(ApiError::new(ErrorCode::NO_SUBSCRIPTION));
        };
        let customer = profile.customer_id.as_deref();
        let now = now_ms() / 1000;
        let event = match kind {
            "invoice.paid" | "invoice.payment_failed" => simulated::renewal_invoice(
                kind,
                sub,
                customer,
                &user.id,
                &package.id,
                package.price_usd_cents,
                now,
            ),
            "customer.subscription.updated" | "customer.subscription.deleted" => {
                let status = match (kind, status) {
                    ("customer.subscription.deleted", _) => "canceled",
                    (_, Some(status)) => status,
                    (_, None) => "active",
                };
                simulated::subscription_event(kind, sub, customer, &user.id, status, now)
            }
            other => {
                return Err(ApiError::with_message(
                    ErrorCode::BAD_REQUEST,
                    format!("cannot trigger {other}"),
                ))
            }
        };
        let object_id = event["data"]["object"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.deliver(&event).await?;
        Ok(object_id)
    }

    /// `atelier stripe trigger charge.refunded`: refunds `amount` minor units (the rest
    /// when `None`) of a payment named by its id, payment intent, invoice or session.
    pub async fn trigger_refund(
        &self,
        payment: &str,
        amount: Option<i64>,
    ) -> Result<(Payment, Applied), ApiError> {
        let reference = payment.to_string();
        let payment = self
            .billing
            .db
            .read(move |conn| {
                for key in [
                    PaymentKey::Id,
                    PaymentKey::PaymentIntent,
                    PaymentKey::Invoice,
                    PaymentKey::Session,
                ] {
                    if let Some(p) = bdb::payment_by(conn, key, &reference)? {
                        return Ok(Some(p));
                    }
                }
                Ok::<_, DbError>(None)
            })
            .await?
            .ok_or_else(|| ApiError::with_message(ErrorCode::NOT_FOUND, "no such payment"))?;
        let left = payment.amount - payment.amount_refunded;
        let amount = amount.unwrap_or(left);
        if amount <= 0 || amount > left {
            return Err(ApiError::bad_field(
                "amount",
                format!("a refund takes between 1 and {left} (minor units)"),
            ));
        }
        let event =
            simulated::charge_refunded(&payment, payment.amount_refunded + amount, now_ms() / 1000);
        let applied = self.deliver(&event).await?;
        Ok((payment, applied))
    }
}
