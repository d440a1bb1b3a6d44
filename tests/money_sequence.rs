//! A seeded random sequence of everything that moves credits — jobs (with failing and
//! retried units), cancels, operator retries, grants and deductions (replayed and
//! conflicting keys among them), purchases, duplicate webhooks, partial and full
//! refunds, subscription renewals, client retries and server restarts — against one
//! server over HTTP, checking `atelier audit`'s invariants after every step. The seed
//! is printed and named in every failure; `MONEY_SEED=<n>` replays one, and
//! `MONEY_STEPS=<n>` sets the length (2,000 by default).

#[path = "common/billing.rs"]
mod billing_support;
mod common;
#[path = "common/fake_stripe.rs"]
mod fake_stripe;

use std::time::{Duration, Instant};

use atelier::config::Config;
use billing_support::*;
use common::{TestApp, TestUser};
use fake_stripe::{event, now_secs, WEBHOOK_SECRET};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const SELLERS: usize = 4;
const RESTART_EVERY: usize = 400;

fn tweak(config: &mut Config, seed: u64) {
    config.billing.webhook_secret = Some(WEBHOOK_SECRET.into());
    common::unlimited(config);
    let local = &mut config.providers.local;
    local.tiny_output = true;
    local.delay_ms = 3;
    local.fail_rate = 0.3;
    local.fail_kind = "retryable".into();
    local.seed = seed;
    config.queue.max_attempts = 2;
    config.queue.backoff_base_ms = 5;
}

/// A payment the sequence may refund: its session (or invoice) id, its payment intent,
/// and the cumulative cents refunded so far.
struct Payment {
    intent: String,
    charge: String,
    refunded: i64,
}

struct Run {
    app: Option<TestApp>,
    seed: u64,
    step: usize,
    rng: StdRng,
    admin: TestUser,
    sellers: Vec<TestUser>,
    jobs: Vec<(usize, String)>,
    payments: Vec<Payment>,
    subscriptions: Vec<Option<String>>,
    admin_keys: Vec<Value>,
    client_keys: Vec<(usize, Value)>,
    events: Vec<Value>,
    counter: usize,
}

impl Run {
    fn app(&self) -> &TestApp {
        self.app.as_ref().expect("running")
    }

    fn id(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}_{}_{}", self.seed, self.counter)
    }

    fn context(&self) -> String {
        format!("seed {} step {}", self.seed, self.step)
    }

    /// No answer is a server error, whatever the request.
    async fn expect(&self, res: reqwest::Response, allowed: &[u16]) -> Value {
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        assert!(
            allowed.contains(&status),
            "{}: status {status}: {body}",
            self.context()
        );
        body
    }

    fn audit(&self) {
        let db = &self.app().running.as_ref().expect("running").state.db;
        let report = db.with_conn(atelier::ops::audit::audit).expect("audit");
        assert!(
            report.problems.is_empty(),
            "{}: {:#?}",
            self.context(),
            report.problems
        );
    }

    async fn deliver(&mut self, evt: Value) {
        let res = deliver(self.app(), &evt).await;
        self.expect(res, &[200]).await;
        self.events.push(evt);
    }

    async fn submit_job(&mut self) {
        let who = self.rng.random_range(0..SELLERS);
        let mut body = json!({"model": "local", "prompt": "a mug",
            "imageCount": self.rng.random_range(1..=4), "productImage": common::small_png()});
        if self.rng.random_bool(0.3) {
            body["client_job_id"] = json!(self.id("ui"));
            body["fe_attempt"] = json!(1);
        }
        let token = self.sellers[who].access_token.clone();
        let res = self.app().call("generate-image", &token, &body).await;
        let ack = self.expect(res, &[200, 402, 429]).await;
        if let Some(id) = ack["job_id"].as_str() {
            self.jobs.push((who, id.to_string()));
            if body.get("client_job_id").is_some() {
                self.client_keys.push((who, body));
            }
        }
    }

    async fn replay_client_key(&mut self) {
        if self.client_keys.is_empty() {
            return;
        }
        let (who, mut body) =
            self.client_keys[self.rng.random_range(0..self.client_keys.len())].clone();
        body["fe_attempt"] = json!(2);
        let token = self.sellers[who].access_token.clone();
        let res = self.app().call("generate-image", &token, &body).await;
        // A replay answers the same job (or a fresh one after 24 h; never here).
        self.expect(res, &[200]).await;
    }

    fn random_job(&mut self) -> Option<(usize, String)> {
        (!self.jobs.is_empty())
            .then(|| self.jobs[self.rng.random_range(0..self.jobs.len())].clone())
    }

    async fn cancel(&mut self) {
        let Some((who, job)) = self.random_job() else {
            return;
        };
        let token = self.sellers[who].access_token.clone();
        let res = self
            .app()
            .post_json(&format!("/v1/jobs/{job}/cancel"), Some(&token), &json!({}))
            .await;
        self.expect(res, &[200, 409]).await;
    }

    async fn admin_retry(&mut self) {
        let Some((who, job)) = self.random_job() else {
            return;
        };
        let token = self.admin.access_token.clone();
        let res = self
            .app()
            .post_json(
                &format!("/v1/admin/jobs/{job}/retry"),
                Some(&token),
                &json!({}),
            )
            .await;
        let body = self.expect(res, &[200, 402, 409]).await;
        if let Some(id) = body["job_id"].as_str() {
            if !self.jobs.iter().any(|(_, j)| j == id) {
                self.jobs.push((who, id.to_string()));
            }
        }
    }

    async fn adjust(&mut self) {
        let token = self.admin.access_token.clone();
        let (body, allowed): (Value, &[u16]) =
            if !self.admin_keys.is_empty() && self.rng.random_bool(0.2) {
                let old = self.admin_keys[self.rng.random_range(0..self.admin_keys.len())].clone();
                if self.rng.random_bool(0.5) {
                    (old, &[200, 402])
                } else {
                    let flipped = json!(-old["amount"].as_i64().unwrap_or(1));
                    (common::with(&old, json!({"amount": flipped})), &[409])
                }
            } else {
                let who = self.rng.random_range(0..SELLERS);
                let mut amount = self.rng.random_range(1..=60);
                if self.rng.random_bool(0.4) {
                    amount = -amount;
                }
                let key = self.id("adj");
                let body = json!({"user_id": self.sellers[who].id, "amount": amount,
                              "reason": "sequence", "idempotency_key": key});
                (body, &[200, 402])
            };
        let res = self
            .app()
            .post_json("/v1/admin/credits", Some(&token), &body)
            .await;
        let answer = self.expect(res, allowed).await;
        // Only a recorded correction owns its key (a refused one wrote nothing).
        if answer.get("entry").is_some() && !self.admin_keys.contains(&body) {
            self.admin_keys.push(body);
        }
    }

    async fn buy(&mut self) {
        if !self.events.is_empty() && self.rng.random_bool(0.25) {
            // A duplicate delivery of an earlier event: applied once.
            let old = self.events[self.rng.random_range(0..self.events.len())].clone();
            let res = deliver(self.app(), &old).await;
            self.expect(res, &[200]).await;
            return;
        }
        let who = self.rng.random_range(0..SELLERS);
        let session = self.id("cs");
        let evt = self.id("evt");
        let package = [STARTER_PACK, PRO_PACK][self.rng.random_range(0..2)];
        let checkout = checkout_session(&session, &self.sellers[who], package, "payment");
        self.deliver(completed(&evt, checkout)).await;
        self.payments.push(Payment {
            intent: format!("pi_{session}"),
            charge: format!("ch_{session}"),
            refunded: 0,
        });
    }

    async fn refund(&mut self) {
        if self.payments.is_empty() {
            return;
        }
        let index = self.rng.random_range(0..self.payments.len());
        let so_far = self.payments[index].refunded;
        if so_far >= 500 {
            return;
        }
        let refunded = if self.rng.random_bool(0.5) {
            500
        } else {
            self.rng.random_range(so_far + 1..=500)
        };
        self.payments[index].refunded = refunded;
        let (intent, charge) = (
            self.payments[index].intent.clone(),
            self.payments[index].charge.clone(),
        );
        let evt = self.id("evt_refund");
        self.deliver(event(
            &evt,
            "charge.refunded",
            now_secs(),
            json!({"id": charge, "object": "charge", "amount": 500,
                   "amount_refunded": refunded, "refunded": refunded == 500,
                   "payment_intent": intent, "currency": "usd"}),
        ))
        .await;
    }

    async fn subscribe_or_renew(&mut self) {
        let who = self.rng.random_range(0..SELLERS);
        match self.subscriptions[who].clone() {
            None => {
                let session = self.id("cs_sub");
                let evt = self.id("evt");
                let checkout =
                    checkout_session(&session, &self.sellers[who], STARTER_SUB, "subscription");
                self.deliver(completed(&evt, checkout)).await;
                self.subscriptions[who] = Some(format!("sub_{session}"));
            }
            Some(sub) => {
                let invoice = self.id("in");
                let evt = self.id("evt");
                let user = self.sellers[who].id.clone();
                self.deliver(event(
                    &evt,
                    "invoice.paid",
                    now_secs(),
                    json!({"id": invoice, "billing_reason": "subscription_cycle",
                           "amount_paid": 500, "currency": "usd",
                           "payment_intent": format!("pi_{invoice}"),
                           "parent": {"subscription_details": {"subscription": sub,
                               "metadata": {"user_id": user, "package_id": STARTER_SUB}}}}),
                ))
                .await;
                self.payments.push(Payment {
                    intent: format!("pi_{invoice}"),
                    charge: format!("ch_{invoice}"),
                    refunded: 0,
                });
            }
        }
    }

    async fn restart(&mut self) {
        let dir = self.app.take().expect("running").stop_keeping_data().await;
        let mut config = common::test_config(dir.path());
        tweak(&mut config, self.seed);
        let running = atelier::app::start(config).await.expect("restart");
        self.app = Some(TestApp::adopt(running, dir));
    }

    /// Waits until every job of the sequence has ended.
    async fn settle(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        for (who, job) in self.jobs.clone() {
            let token = self.sellers[who].access_token.clone();
            loop {
                let body = self.app().job(&token, &job).await;
                if body["status"] != "processing" {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{}: job {job} never ended",
                    self.context()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test]
async fn a_seeded_random_sequence_keeps_every_money_invariant() {
    let seed = std::env::var("MONEY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    let steps: usize = std::env::var("MONEY_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    println!("money sequence: seed {seed}, {steps} steps (MONEY_SEED={seed} replays it)");
    let app = common::spawn_app_with(|c| tweak(c, seed)).await;
    let admin = app.new_admin().await;
    let mut sellers = Vec::new();
    for _ in 0..SELLERS {
        sellers.push(app.new_user().await);
    }
    let mut run = Run {
        app: Some(app),
        seed,
        step: 0,
        rng: StdRng::seed_from_u64(seed),
        admin,
        sellers,
        jobs: Vec::new(),
        payments: Vec::new(),
        subscriptions: vec![None; SELLERS],
        admin_keys: Vec::new(),
        client_keys: Vec::new(),
        events: Vec::new(),
        counter: 0,
    };
    for step in 0..steps {
        run.step = step;
        match run.rng.random_range(0..100) {
            0..=29 => run.submit_job().await,
            30..=39 => run.cancel().await,
            40..=46 => run.admin_retry().await,
            47..=58 => run.adjust().await,
            59..=70 => run.buy().await,
            71..=80 => run.refund().await,
            81..=86 => run.subscribe_or_renew().await,
            87..=90 => run.replay_client_key().await,
            _ => tokio::time::sleep(Duration::from_millis(run.rng.random_range(1..10))).await,
        }
        if step % RESTART_EVERY == RESTART_EVERY - 1 {
            run.restart().await;
        }
        run.audit();
    }
    run.settle().await;
    run.audit();
    let db = &run.app().running.as_ref().expect("running").state.db;
    let accounts = db
        .with_conn(atelier::db::ledger::recompute_all)
        .expect("accounts");
    assert!(
        accounts.iter().all(|(_, _, b)| b.held == 0),
        "seed {seed}: credits still held after every job ended"
    );
    println!(
        "money sequence: seed {seed}: {} jobs, {} payments, audit clean",
        run.jobs.len(),
        run.payments.len()
    );
}
