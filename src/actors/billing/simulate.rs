//! The simulated Stripe's side effects: the checkout page's Pay and Cancel, and
//! `atelier stripe trigger …`. Each builds the event Stripe would send and delivers it,
//! signed, through the same webhook path as a real one.

use super::{Applied, BillingHandle};
use crate::db::accounts;
use crate::db::billing::{self as bdb, CheckoutSession, Payment, PaymentKey, ProfileKey};
use crate::db::packages::{self, Package};
use crate::db::DbError;
use crate::domain::billing::redirect_urls;
use crate::domain::time::now_ms;
use crate::domain::{ApiError, ErrorCode};
use crate::stripe::simulated;

impl BillingHandle {
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
