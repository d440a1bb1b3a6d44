-- Atelier's whole SQLite schema.
--
-- The file is split into numbered migrations. At start the binary applies every
-- `-- migration: N` section whose N is above `PRAGMA user_version`, each in its own
-- transaction that also sets user_version = N, so running it twice changes nothing.
-- Append new sections; never edit one that has shipped.
--
-- Times are unix milliseconds (INTEGER); ids are UUID strings (v7, time-ordered)
-- unless a column says otherwise; credits are integers.

-- migration: 1
CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    email           TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash   TEXT NOT NULL,
    role            TEXT NOT NULL DEFAULT 'authenticated'
                    CHECK (role IN ('authenticated', 'admin')),
    user_metadata   TEXT NOT NULL DEFAULT '{}',
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

-- One login: a family of refresh tokens, revoked together.
CREATE TABLE auth_sessions (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER,
    revoke_reason TEXT
);
CREATE INDEX auth_sessions_user ON auth_sessions(user_id);

-- Refresh tokens are stored as SHA-256 hashes; the token itself is only ever sent to the client.
CREATE TABLE refresh_tokens (
    token_hash  TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL REFERENCES auth_sessions(id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    used_at     INTEGER
);
CREATE INDEX refresh_tokens_session ON refresh_tokens(session_id);

-- Balances per user. `held` is reserved for accepted jobs; debt is owed from refunds
-- and is paid first out of the next grant.
CREATE TABLE credit_accounts (
    user_id       TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    subscription  INTEGER NOT NULL DEFAULT 0 CHECK (subscription >= 0),
    purchased     INTEGER NOT NULL DEFAULT 0 CHECK (purchased >= 0),
    held          INTEGER NOT NULL DEFAULT 0 CHECK (held >= 0),
    debt          INTEGER NOT NULL DEFAULT 0 CHECK (debt >= 0),
    updated_at    INTEGER NOT NULL,
    CHECK (subscription + purchased - held >= 0)
);

-- Every credit movement, one row each. The delta columns are what the row did to each
-- balance, so an account always equals the sum of its rows (see `atelier audit`).
CREATE TABLE credit_ledger (
    id                 TEXT PRIMARY KEY,
    user_id            TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind               TEXT NOT NULL
                       CHECK (kind IN ('grant', 'hold', 'capture', 'release', 'reverse', 'adjust', 'debt')),
    amount             INTEGER NOT NULL CHECK (amount > 0),
    bucket             TEXT CHECK (bucket IN ('subscription', 'purchased', 'mixed')),
    subscription_delta INTEGER NOT NULL DEFAULT 0,
    purchased_delta    INTEGER NOT NULL DEFAULT 0,
    held_delta         INTEGER NOT NULL DEFAULT 0,
    debt_delta         INTEGER NOT NULL DEFAULT 0,
    job_id             TEXT,
    task_id            TEXT,
    stripe_event_id    TEXT,
    reason             TEXT,
    idempotency_key    TEXT NOT NULL UNIQUE,
    available_after    INTEGER NOT NULL,
    created_at         INTEGER NOT NULL
);
CREATE INDEX credit_ledger_user ON credit_ledger(user_id, id);

-- Credit packages sold through Stripe (or the simulated checkout).
CREATE TABLE packages (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    type             TEXT NOT NULL CHECK (type IN ('subscription', 'one_time')),
    price_usd_cents  INTEGER NOT NULL CHECK (price_usd_cents >= 0),
    credits          INTEGER NOT NULL CHECK (credits > 0),
    first_sub_bonus  INTEGER NOT NULL DEFAULT 0,
    is_popular       INTEGER NOT NULL DEFAULT 0,
    sort_order       INTEGER NOT NULL DEFAULT 0,
    active           INTEGER NOT NULL DEFAULT 1,
    stripe_price_ids TEXT NOT NULL DEFAULT '{}',
    created_at       INTEGER NOT NULL
);

INSERT INTO packages (id, name, type, price_usd_cents, credits, first_sub_bonus, is_popular, sort_order, created_at) VALUES
    ('0190a000-0000-7000-8000-000000000001', 'Starter',      'subscription',   500,  250,  25, 0, 1, 0),
    ('0190a000-0000-7000-8000-000000000002', 'Professional', 'subscription',  2000, 1200, 120, 1, 2, 0),
    ('0190a000-0000-7000-8000-000000000003', 'Enterprise',   'subscription', 10000, 7000, 700, 0, 3, 0),
    ('0190a000-0000-7000-8000-000000000004', 'Starter Pack',      'one_time',   500,  250, 0, 0, 4, 0),
    ('0190a000-0000-7000-8000-000000000005', 'Professional Pack', 'one_time',  2000, 1200, 0, 1, 5, 0),
    ('0190a000-0000-7000-8000-000000000006', 'Enterprise Pack',   'one_time', 10000, 7000, 0, 0, 6, 0);

-- A small table /readyz writes to, proving the database is writable.
CREATE TABLE heartbeat (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    beat_at    INTEGER NOT NULL
);

-- migration: 2
-- A job is what a seller asked for; its tasks are the units of work (one image each).
CREATE TABLE generation_jobs (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    type           TEXT NOT NULL CHECK (type IN ('ANALYSIS', 'IMAGE_GEN', 'STYLE_REPLICATE')),
    status         TEXT NOT NULL DEFAULT 'processing'
                   CHECK (status IN ('processing', 'success', 'failed')),
    provider       TEXT NOT NULL,
    model          TEXT NOT NULL,
    payload        TEXT NOT NULL,
    result_data    TEXT,
    result_url     TEXT,
    error_code     TEXT,
    error_message  TEXT,
    unit_cost      INTEGER NOT NULL CHECK (unit_cost >= 0),
    units_total    INTEGER NOT NULL CHECK (units_total > 0),
    cost_amount    INTEGER NOT NULL DEFAULT 0,   -- captured credits
    held_amount    INTEGER NOT NULL DEFAULT 0,   -- credits still held for unfinished units
    trace_id       TEXT,
    client_job_id  TEXT,
    request_hash   TEXT,
    fe_attempt     INTEGER,
    duration_ms    INTEGER,
    version        INTEGER NOT NULL DEFAULT 1,   -- bumped on every change (SSE event id)
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    finished_at    INTEGER
);
CREATE UNIQUE INDEX generation_jobs_client_key ON generation_jobs(user_id, client_job_id)
    WHERE client_job_id IS NOT NULL;
CREATE INDEX generation_jobs_user ON generation_jobs(user_id, id);
CREATE INDEX generation_jobs_status ON generation_jobs(status, type);

CREATE TABLE generation_tasks (
    id           TEXT PRIMARY KEY,
    job_id       TEXT NOT NULL REFERENCES generation_jobs(id) ON DELETE CASCADE,
    user_id      TEXT NOT NULL,
    unit_index   INTEGER NOT NULL,
    provider     TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'queued'
                 CHECK (status IN ('queued', 'running', 'success', 'failed', 'cancelled')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    run_after    INTEGER NOT NULL,
    lease_until  INTEGER,
    input        TEXT NOT NULL,
    result       TEXT,
    error_code   TEXT,
    last_error   TEXT,
    cost         INTEGER NOT NULL CHECK (cost >= 0),
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    UNIQUE (job_id, unit_index)
);
CREATE INDEX generation_tasks_queue ON generation_tasks(provider, run_after) WHERE status = 'queued';
CREATE INDEX generation_tasks_running ON generation_tasks(lease_until) WHERE status = 'running';

-- migration: 3
-- Per-user limits are counted at job creation; the snapshot of a processing job is
-- written at most once a second.
CREATE INDEX generation_jobs_user_created ON generation_jobs(user_id, created_at);
CREATE INDEX generation_jobs_user_active ON generation_jobs(user_id, type)
    WHERE status = 'processing';
ALTER TABLE generation_jobs ADD COLUMN snapshot_at INTEGER;

-- migration: 4
-- Prompt streams create no job but count against the per-minute creation limit.
CREATE TABLE prompt_streams (
    id          INTEGER PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL
);
CREATE INDEX prompt_streams_user ON prompt_streams(user_id, created_at);

-- migration: 5
-- Fair scheduling walks the users with queued work (a skip-scan over this index) and
-- takes each one's oldest due units, instead of ranking the whole queue.
CREATE INDEX generation_tasks_user_queue ON generation_tasks(provider, user_id, run_after)
    WHERE status = 'queued';

-- migration: 6
-- Billing. Every Stripe event is recorded once, keyed by its id, in the same transaction
-- as the credit rows it caused; an event that arrives before what it refers to is
-- parked and applied when that object shows up.
CREATE TABLE stripe_events (
    id          TEXT PRIMARY KEY,            -- evt_…
    type        TEXT NOT NULL,
    created     INTEGER NOT NULL,            -- the event's own time, unix seconds
    status      TEXT NOT NULL CHECK (status IN ('applied', 'ignored', 'parked')),
    user_id     TEXT,
    wait_for    TEXT,                        -- parked: the Stripe object id it waits for
    note        TEXT,
    payload     TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    applied_at  INTEGER
);
CREATE INDEX stripe_events_parked ON stripe_events(wait_for) WHERE status = 'parked';

-- A user's Stripe customer and current subscription.
CREATE TABLE billing_profiles (
    user_id             TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    customer_id         TEXT UNIQUE,
    subscription_id     TEXT UNIQUE,
    package_id          TEXT,
    status              TEXT CHECK (status IN ('active', 'past_due', 'canceled')),
    current_period_end  INTEGER,             -- unix seconds
    status_at           INTEGER NOT NULL DEFAULT 0,  -- `created` of the event that set status
    updated_at          INTEGER NOT NULL
);

-- Checkout sessions Atelier opened (Stripe's or the simulated ones).
CREATE TABLE checkout_sessions (
    id            TEXT PRIMARY KEY,          -- cs_…
    user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    package_id    TEXT NOT NULL,
    purchase_type TEXT NOT NULL CHECK (purchase_type IN ('subscription', 'one_time')),
    currency      TEXT NOT NULL,
    amount        INTEGER NOT NULL,          -- minor units
    success_url   TEXT NOT NULL,
    cancel_url    TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'complete', 'canceled')),
    created_at    INTEGER NOT NULL
);
CREATE INDEX checkout_sessions_user ON checkout_sessions(user_id, created_at);

-- Money received: a credit pack, a first subscription payment or a renewal, with the
-- ledger grants it caused and how much of it was refunded.
CREATE TABLE payments (
    id                 TEXT PRIMARY KEY,
    user_id            TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind               TEXT NOT NULL CHECK (kind IN ('one_time', 'subscription', 'renewal')),
    package_id         TEXT,
    checkout_session_id TEXT UNIQUE,
    invoice_id         TEXT UNIQUE,
    payment_intent_id  TEXT UNIQUE,
    subscription_id    TEXT,
    amount             INTEGER NOT NULL,     -- minor units
    currency           TEXT NOT NULL,
    credits            INTEGER NOT NULL,
    grant_key          TEXT NOT NULL,
    bonus              INTEGER NOT NULL DEFAULT 0,
    bonus_key          TEXT,
    amount_refunded    INTEGER NOT NULL DEFAULT 0,
    credits_reversed   INTEGER NOT NULL DEFAULT 0,
    bonus_reversed     INTEGER NOT NULL DEFAULT 0,
    stripe_event_id    TEXT NOT NULL,
    created_at         INTEGER NOT NULL
);
CREATE INDEX payments_user ON payments(user_id, id);

-- One row per refund event applied to a payment.
CREATE TABLE refunds (
    id               TEXT PRIMARY KEY,
    payment_id       TEXT NOT NULL REFERENCES payments(id) ON DELETE CASCADE,
    user_id          TEXT NOT NULL,
    charge_id        TEXT NOT NULL,
    amount           INTEGER NOT NULL,       -- this refund, minor units
    credits_reversed INTEGER NOT NULL,
    stripe_event_id  TEXT NOT NULL,
    created_at       INTEGER NOT NULL
);
CREATE INDEX refunds_user ON refunds(user_id, id);

-- migration: 7
-- A cancel is a state of the job: a unit that ends after it is released, never
-- requeued or charged. Atelier's own idempotency keys (an operator's retry) live apart
-- from the sellers' client_job_id, so a seller can never take one, and are never
-- forgotten; the retries recorded so far move over.
ALTER TABLE generation_jobs ADD COLUMN cancelled_at INTEGER;
ALTER TABLE generation_jobs ADD COLUMN internal_key TEXT;
UPDATE generation_jobs SET internal_key = client_job_id, client_job_id = NULL
    WHERE client_job_id IS NOT NULL
      AND client_job_id = 'retry:' ||
          CASE WHEN json_valid(payload) THEN json_extract(payload, '$.retry_of') END;
CREATE UNIQUE INDEX generation_jobs_internal_key ON generation_jobs(internal_key)
    WHERE internal_key IS NOT NULL;

-- migration: 8
-- Alipay direct: a package's price in fen (CNY) and its subscription period, and one
-- row per Alipay order (pending → completed | expired; a late payment of an expired
-- order still completes it, since Alipay took the money).
ALTER TABLE packages ADD COLUMN price_cny_fen INTEGER CHECK (price_cny_fen IS NULL OR price_cny_fen > 0);
ALTER TABLE packages ADD COLUMN period_days INTEGER NOT NULL DEFAULT 30 CHECK (period_days > 0);
UPDATE packages SET price_cny_fen = price_usd_cents * 72 / 10
    WHERE id LIKE '0190a000-0000-7000-8000-00000000000_' AND price_usd_cents > 0;
CREATE TABLE alipay_orders (
    out_trade_no     TEXT PRIMARY KEY,
    user_id          TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    package_id       TEXT NOT NULL,
    purchase_type    TEXT NOT NULL CHECK (purchase_type IN ('subscription', 'one_time')),
    amount_fen       INTEGER NOT NULL CHECK (amount_fen > 0),
    credits          INTEGER NOT NULL,
    surface          TEXT NOT NULL CHECK (surface IN ('page', 'wap')),
    status           TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'completed', 'expired')),
    trade_no         TEXT,
    payment_id       TEXT,
    expires_at       INTEGER NOT NULL,
    paid_at          INTEGER,
    created_at       INTEGER NOT NULL
);
CREATE INDEX alipay_orders_user ON alipay_orders(user_id, created_at);
CREATE INDEX alipay_orders_pending ON alipay_orders(status, expires_at);

-- migration: 9
-- Growth: invite codes and their bindings, redeem codes and their claims. Every profile
-- gets an 8-character invite code (new ones at creation; existing ones are backfilled
-- at start, see db::growth::backfill_invite_codes). An invitee is bound at most once;
-- the inviter's reward (the binding's rate × the package's credits) is granted with the
-- invitee's first paid checkout, in the same transaction, and reversed with its refund.
ALTER TABLE users ADD COLUMN invite_code TEXT;
CREATE UNIQUE INDEX users_invite_code ON users(invite_code) WHERE invite_code IS NOT NULL;

CREATE TABLE referral_bindings (
    id               TEXT PRIMARY KEY,
    inviter_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    invitee_id       TEXT NOT NULL UNIQUE REFERENCES users(id) ON DELETE CASCADE,
    code             TEXT NOT NULL,               -- the code as bound
    reward_rate      REAL NOT NULL,               -- share of the package's credits
    created_at       INTEGER NOT NULL,
    rewarded_at      INTEGER,
    reward_credits   INTEGER NOT NULL DEFAULT 0,
    reward_key       TEXT,                        -- ledger key of the inviter's grant
    reward_for       TEXT,                        -- ledger key of the invitee's grant it came with
    reward_reversed  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX referral_bindings_inviter ON referral_bindings(inviter_id, created_at);
CREATE INDEX referral_bindings_reward_for ON referral_bindings(reward_for)
    WHERE reward_for IS NOT NULL;

CREATE TABLE redeem_codes (
    id             TEXT PRIMARY KEY,
    code           TEXT NOT NULL UNIQUE,          -- upper case
    credit_amount  INTEGER NOT NULL CHECK (credit_amount > 0),
    max_uses       INTEGER NOT NULL DEFAULT 1 CHECK (max_uses > 0),
    used_count     INTEGER NOT NULL DEFAULT 0 CHECK (used_count >= 0 AND used_count <= max_uses),
    expires_at     INTEGER,
    active         INTEGER NOT NULL DEFAULT 1,
    note           TEXT,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

CREATE TABLE redeem_code_claims (
    id               TEXT PRIMARY KEY,
    redeem_code_id   TEXT NOT NULL REFERENCES redeem_codes(id) ON DELETE CASCADE,
    user_id          TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code             TEXT NOT NULL,
    credited_amount  INTEGER NOT NULL CHECK (credited_amount > 0),
    ledger_key       TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    UNIQUE (redeem_code_id, user_id)
);
CREATE INDEX redeem_code_claims_user ON redeem_code_claims(user_id, created_at);

-- migration: 10
-- Packages: one Stripe price id column per currency (copied from the old JSON map),
-- and when a package was last edited. The rows themselves are kept: a migration never
-- rewrites an operator's prices. A new database gets the reference's current set
-- instead of the rows of migration 1 (db::packages::seed_defaults);
-- `atelier packages reset-to-defaults` installs that set in an existing one.
ALTER TABLE packages ADD COLUMN stripe_price_id TEXT;
ALTER TABLE packages ADD COLUMN stripe_price_id_cny TEXT;
ALTER TABLE packages ADD COLUMN stripe_price_id_hkd TEXT;
ALTER TABLE packages ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0;
UPDATE packages SET
    stripe_price_id     = NULLIF(json_extract(stripe_price_ids, '$.usd'), ''),
    stripe_price_id_cny = NULLIF(json_extract(stripe_price_ids, '$.cny'), ''),
    stripe_price_id_hkd = NULLIF(json_extract(stripe_price_ids, '$.hkd'), '')
WHERE json_valid(stripe_price_ids);
ALTER TABLE packages DROP COLUMN stripe_price_ids;

-- migration: 11
-- E-mail waits here until the mailer actor has sent it: a request that causes a message
-- only writes this row, so a slow or absent mail server never delays it. Failed sends are
-- retried with a growing delay; after the last attempt the row stays `failed`.
CREATE TABLE mail_outbox (
    id               TEXT PRIMARY KEY,
    to_addr          TEXT NOT NULL,
    kind             TEXT NOT NULL,
    locale           TEXT NOT NULL,
    subject          TEXT NOT NULL,
    text_body        TEXT NOT NULL,
    html_body        TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sent', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    sent_at          INTEGER
);
CREATE INDEX mail_outbox_due ON mail_outbox(next_attempt_at) WHERE status = 'queued';

-- migration: 12
-- E-mail confirmation and recovery. `email_confirmed_at` is NULL until the address is
-- confirmed (accounts that existed before count as confirmed); `deleted_at` marks an
-- account deleted through the GoTrue admin API (its address is released, its ledger kept).
-- `auth_codes` holds one live 6-digit code per user and purpose, as an HMAC, never the
-- code itself. `signup_bonus_claims` remembers, by a hash of the normalised address,
-- that an address has had its signup bonus: it outlives the account, so deleting an
-- account and signing up again never pays the bonus twice. `mail_outbox.dedup_key`
-- makes a message (a receipt) queued at most once per payment.
ALTER TABLE users ADD COLUMN email_confirmed_at INTEGER;
ALTER TABLE users ADD COLUMN deleted_at INTEGER;
UPDATE users SET email_confirmed_at = created_at;

CREATE TABLE auth_codes (
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    purpose      TEXT NOT NULL CHECK (purpose IN ('signup', 'recovery', 'email_change')),
    code_hash    TEXT NOT NULL,
    new_email    TEXT,                          -- the address an email_change confirms
    attempts     INTEGER NOT NULL DEFAULT 0,
    expires_at   INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (user_id, purpose)
);
CREATE INDEX auth_codes_new_email ON auth_codes(new_email COLLATE NOCASE)
    WHERE new_email IS NOT NULL;

CREATE TABLE signup_bonus_claims (
    email_hash   TEXT PRIMARY KEY,              -- hex SHA-256 of the normalised address
    user_id      TEXT NOT NULL,                 -- no foreign key: outlives the account
    ledger_key   TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);

ALTER TABLE mail_outbox ADD COLUMN dedup_key TEXT;
CREATE UNIQUE INDEX mail_outbox_dedup ON mail_outbox(dedup_key) WHERE dedup_key IS NOT NULL;

-- migration: 13
-- Operating a studio. `system_settings` holds switches an operator flips while the
-- server runs (maintenance mode), written by the admin API or the CLI and read by the
-- server through a short cache.
CREATE TABLE system_settings (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL CHECK (json_valid(value)),
    updated_at  INTEGER NOT NULL,
    updated_by  TEXT
);
-- Job health reads the jobs of a time window and each provider's last success.
CREATE INDEX generation_jobs_created ON generation_jobs(created_at);
CREATE INDEX generation_tasks_success ON generation_tasks(provider, updated_at)
    WHERE status = 'success';
