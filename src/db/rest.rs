//! The relations `/rest/v1` serves, as read-only views onto Atelier's own tables, and
//! the one function that reads them. This file is the only place that defines them.
//!
//! Each relation is a `SELECT` whose columns are listed in [`Relation::columns`]; a read
//! is `SELECT <listed columns> FROM (<view>) WHERE <owner> = ? AND <filters> ORDER BY …
//! LIMIT ? OFFSET ?`. Every identifier in that text comes from the lists below (never
//! from the request) and every value is a bound parameter.

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::Connection;
use serde_json::{Map, Value};

use super::DbResult;
use crate::domain::postgrest::{Condition, Filter, IsValue, Op, ReadQuery, Value as Operand};
use crate::domain::time::rfc3339;

/// How a column is stored and answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Int,
    /// A decimal amount (`numeric` in PostgreSQL), answered as a JSON number.
    Numeric,
    Bool,
    /// JSON text, answered as JSON.
    Json,
    /// Unix milliseconds, answered as RFC 3339.
    Timestamp,
}

impl Kind {
    /// The PostgreSQL type name Realtime reports in `columns`.
    pub fn pg_type(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Int => "int4",
            Kind::Numeric => "numeric",
            Kind::Bool => "bool",
            Kind::Json => "jsonb",
            Kind::Timestamp => "timestamptz",
        }
    }
}

/// A column of a relation.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
}

const fn col(name: &'static str, kind: Kind) -> Column {
    Column { name, kind }
}

/// A relation `/rest/v1/<name>` serves.
#[derive(Debug)]
pub struct Relation {
    pub name: &'static str,
    /// The view, a `SELECT` whose result columns are exactly [`Relation::columns`].
    sql: &'static str,
    pub columns: &'static [Column],
    /// The column holding the owning user's id; `None` for a public relation.
    pub owner: Option<&'static str>,
    /// The order of rows when the request gives none (a unique key).
    default_order: &'static str,
}

impl Relation {
    /// A column by name.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

use Kind::*;

/// `generation_jobs`: the reference's columns, plus Atelier's `model`, `provider` and
/// `held_amount`.
pub const GENERATION_JOBS: Relation = Relation {
    name: "generation_jobs",
    sql: "SELECT id, user_id, type, status, payload, result_data, result_url, error_code,
                 error_message, cost_amount, held_amount, model, provider, trace_id,
                 client_job_id, fe_attempt, duration_ms, version, created_at, updated_at
          FROM generation_jobs",
    columns: &[
        col("id", Text),
        col("user_id", Text),
        col("type", Text),
        col("status", Text),
        col("payload", Json),
        col("result_data", Json),
        col("result_url", Text),
        col("error_code", Text),
        col("error_message", Text),
        col("cost_amount", Int),
        col("held_amount", Int),
        col("model", Text),
        col("provider", Text),
        col("trace_id", Text),
        col("client_job_id", Text),
        col("fe_attempt", Int),
        col("duration_ms", Int),
        col("version", Int),
        col("created_at", Timestamp),
        col("updated_at", Timestamp),
    ],
    owner: Some("user_id"),
    default_order: "id",
};

/// `profiles`: one row per user. The two credit columns are what can be *spent*: held
/// credits are taken out of the bucket they were held from (subscription first, as the
/// ledger holds), so `subscription_credits + purchased_credits` = available credits.
/// `invite_code` is the user's own code, `invited_by_user_id` / `invite_bound_at` the
/// binding made with someone else's; `phone` is null (Atelier has no phone numbers).
pub const PROFILES: Relation = Relation {
    name: "profiles",
    sql: "SELECT u.id AS id, u.email AS email,
                 json_extract(u.user_metadata, '$.full_name') AS full_name,
                 json_extract(u.user_metadata, '$.avatar_url') AS avatar_url,
                 NULL AS phone, 'en' AS locale,
                 MAX(COALESCE(a.subscription, 0) - COALESCE(a.held, 0), 0) AS subscription_credits,
                 COALESCE(a.purchased, 0)
                   - MAX(COALESCE(a.held, 0) - COALESCE(a.subscription, 0), 0) AS purchased_credits,
                 p.name AS subscription_plan, b.status AS subscription_status,
                 b.current_period_end * 1000 AS current_period_end,
                 b.customer_id AS stripe_customer_id, b.subscription_id AS stripe_subscription_id,
                 u.invite_code AS invite_code, rb.inviter_id AS invited_by_user_id,
                 rb.created_at AS invite_bound_at,
                 u.created_at AS created_at,
                 MAX(u.updated_at, COALESCE(a.updated_at, 0), COALESCE(b.updated_at, 0)) AS updated_at
          FROM users u
          LEFT JOIN credit_accounts a ON a.user_id = u.id
          LEFT JOIN billing_profiles b ON b.user_id = u.id
          LEFT JOIN packages p ON p.id = b.package_id
          LEFT JOIN referral_bindings rb ON rb.invitee_id = u.id",
    columns: &[
        col("id", Text),
        col("email", Text),
        col("full_name", Text),
        col("avatar_url", Text),
        col("phone", Text),
        col("locale", Text),
        col("subscription_credits", Int),
        col("purchased_credits", Int),
        col("subscription_plan", Text),
        col("subscription_status", Text),
        col("current_period_end", Timestamp),
        col("stripe_customer_id", Text),
        col("stripe_subscription_id", Text),
        col("invite_code", Text),
        col("invited_by_user_id", Text),
        col("invite_bound_at", Timestamp),
        col("created_at", Timestamp),
        col("updated_at", Timestamp),
    ],
    owner: Some("id"),
    default_order: "id",
};

/// `transactions`: money received (`payments`), amounts in major units as the reference
/// stores them; `plan` is the package name; a fully refunded payment is `refunded`.
/// `payment_method` is `stripe`, or `alipay` for an Alipay direct order (whose
/// `stripe_event_id` is null, as in the reference). An inviter's reward is a row of its
/// own, as the reference's webhook writes it: `payment_method` `invite`, `plan`
/// `invite_reward`, amount 0, the reward's credits.
pub const TRANSACTIONS: Relation = Relation {
    name: "transactions",
    sql: "SELECT pay.id AS id, pay.user_id AS user_id, pay.package_id AS package_id,
                 pk.name AS plan, pay.amount / 100.0 AS amount, pay.currency AS currency,
                 CASE WHEN ao.out_trade_no IS NULL THEN 'stripe' ELSE 'alipay' END
                   AS payment_method,
                 pay.credits + pay.bonus AS credits,
                 CASE WHEN pay.amount > 0 AND pay.amount_refunded >= pay.amount
                      THEN 'refunded' ELSE 'completed' END AS status,
                 CASE WHEN ao.out_trade_no IS NULL THEN pay.stripe_event_id END
                   AS stripe_event_id,
                 pay.created_at AS created_at, pay.created_at AS updated_at
          FROM payments pay
          LEFT JOIN packages pk ON pk.id = pay.package_id
          LEFT JOIN alipay_orders ao
                 ON ao.out_trade_no = pay.checkout_session_id AND ao.payment_id = pay.id
          UNION ALL
          SELECT rb.id, rb.inviter_id, NULL, 'invite_reward', 0.0, 'usd', 'invite',
                 rb.reward_credits,
                 CASE WHEN rb.reward_reversed >= rb.reward_credits
                      THEN 'refunded' ELSE 'completed' END,
                 NULL, rb.rewarded_at, rb.rewarded_at
          FROM referral_bindings rb
          WHERE rb.rewarded_at IS NOT NULL AND rb.reward_credits > 0",
    columns: &[
        col("id", Text),
        col("user_id", Text),
        col("package_id", Text),
        col("plan", Text),
        col("amount", Numeric),
        col("currency", Text),
        col("payment_method", Text),
        col("credits", Int),
        col("status", Text),
        col("stripe_event_id", Text),
        col("created_at", Timestamp),
        col("updated_at", Timestamp),
    ],
    owner: Some("user_id"),
    default_order: "id",
};

/// `packages`: public, read by anyone holding the anon key.
pub const PACKAGES: Relation = Relation {
    name: "packages",
    sql: "SELECT id, name, type, price_usd_cents / 100.0 AS price_usd, credits,
                 first_sub_bonus, stripe_price_id, stripe_price_id_cny, stripe_price_id_hkd,
                 is_popular, sort_order, active, created_at,
                 MAX(updated_at, created_at) AS updated_at
          FROM packages",
    columns: &[
        col("id", Text),
        col("name", Text),
        col("type", Text),
        col("price_usd", Numeric),
        col("credits", Int),
        col("first_sub_bonus", Int),
        col("stripe_price_id", Text),
        col("stripe_price_id_cny", Text),
        col("stripe_price_id_hkd", Text),
        col("is_popular", Bool),
        col("sort_order", Int),
        col("active", Bool),
        col("created_at", Timestamp),
        col("updated_at", Timestamp),
    ],
    owner: None,
    default_order: "sort_order, id",
};

/// Every relation served.
pub const RELATIONS: [&Relation; 4] = [&GENERATION_JOBS, &PROFILES, &TRANSACTIONS, &PACKAGES];

/// A relation by name.
pub fn relation(name: &str) -> Option<&'static Relation> {
    RELATIONS.into_iter().find(|r| r.name == name)
}

/// Which rows a reader may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every row (the service role).
    All,
    /// Rows owned by this user; public relations whole.
    Owner(String),
    /// Public relations only (the anon key): owned relations read as empty.
    Anonymous,
}

/// Why a query cannot run, in PostgREST's terms (the caller maps these to its codes).
#[derive(Debug, Clone, PartialEq)]
pub enum QueryError {
    /// A column the relation does not have (PostgreSQL `42703`).
    UnknownColumn(String),
    /// A value that is not of the column's type (`22P02`).
    BadValue { column: String, value: String },
    /// An operator the column's type does not have (`42883`).
    BadOperator { column: String, op: &'static str },
}

/// Rows read, in order, and the total matching count when asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    pub rows: Vec<Map<String, Value>>,
    pub total: Option<u64>,
}

/// Reads `query` from `relation` within `scope`. `count` asks for the total number of
/// matching rows (ignoring limit and offset).
pub fn read(
    conn: &Connection,
    relation: &Relation,
    scope: &Scope,
    query: &ReadQuery,
    count: bool,
) -> DbResult<Result<Rows, QueryError>> {
    let plan = match Plan::build(relation, scope, query) {
        Ok(plan) => plan,
        Err(err) => return Ok(Err(err)),
    };
    let total = if count {
        let sql = format!(
            "SELECT count(*) FROM ({}) AS v{}",
            relation.sql, plan.where_sql
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let n: i64 = stmt.query_row(rusqlite::params_from_iter(&plan.params), |r| r.get(0))?;
        Some(n.max(0) as u64)
    } else {
        None
    };
    let select_list: Vec<&str> = plan.columns.iter().map(|(c, _)| c.name).collect();
    let sql = format!(
        "SELECT {} FROM ({}) AS v{} ORDER BY {} LIMIT ? OFFSET ?",
        select_list.join(", "),
        relation.sql,
        plan.where_sql,
        plan.order_sql,
    );
    let mut params = plan.params.clone();
    let limit = query
        .limit
        .map(|n| n.min(i64::MAX as u64) as i64)
        .unwrap_or(-1);
    params.push(SqlValue::Integer(limit));
    params.push(SqlValue::Integer(
        query.offset.unwrap_or(0).min(i64::MAX as u64) as i64,
    ));
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut cursor = stmt.query(rusqlite::params_from_iter(&params))?;
    let mut rows = Vec::new();
    while let Some(row) = cursor.next()? {
        let mut out = Map::new();
        for (i, (column, key)) in plan.columns.iter().enumerate() {
            out.insert(key.clone(), to_json(column.kind, row.get_ref(i)?));
        }
        rows.push(out);
    }
    Ok(Ok(Rows { rows, total }))
}

/// One row of `relation` by its `id`, whoever owns it, with its owner (the change
/// feed's read; callers decide who may see it).
pub fn row_by_id(
    conn: &Connection,
    relation: &Relation,
    id: &str,
) -> DbResult<Option<(String, Map<String, Value>)>> {
    let query = ReadQuery {
        filters: vec![Condition::Leaf(Filter {
            column: "id".into(),
            negated: false,
            op: Op::Eq,
            value: Operand::One(id.into()),
        })],
        ..ReadQuery::default()
    };
    let Ok(rows) = read(conn, relation, &Scope::All, &query, false)? else {
        return Ok(None);
    };
    let owner = relation.owner.unwrap_or("id");
    Ok(rows.rows.into_iter().next().map(|row| {
        let user = row
            .get(owner)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        (user, row)
    }))
}

/// The users whose credits or subscription changed after the given marks, and the new
/// marks: `(ledger rowid, billing updated_at)`.
pub fn changed_accounts(
    conn: &Connection,
    after: (i64, i64),
) -> DbResult<(Vec<String>, (i64, i64))> {
    let (ledger_mark, billing_mark) = after;
    let mut users: Vec<String> = Vec::new();
    let mut new_ledger = ledger_mark;
    {
        let mut stmt = conn.prepare_cached(
            "SELECT rowid, user_id FROM credit_ledger WHERE rowid > ?1 ORDER BY rowid",
        )?;
        let mut rows = stmt.query([ledger_mark])?;
        while let Some(row) = rows.next()? {
            new_ledger = new_ledger.max(row.get::<_, i64>(0)?);
            let user: String = row.get(1)?;
            if !users.contains(&user) {
                users.push(user);
            }
        }
    }
    let mut new_billing = billing_mark;
    {
        let mut stmt = conn.prepare_cached(
            "SELECT updated_at, user_id FROM billing_profiles WHERE updated_at > ?1",
        )?;
        let mut rows = stmt.query([billing_mark])?;
        while let Some(row) = rows.next()? {
            new_billing = new_billing.max(row.get::<_, i64>(0)?);
            let user: String = row.get(1)?;
            if !users.contains(&user) {
                users.push(user);
            }
        }
    }
    Ok((users, (new_ledger, new_billing)))
}

/// The current marks of [`changed_accounts`] (so a feed starts with what is new).
pub fn account_marks(conn: &Connection) -> DbResult<(i64, i64)> {
    let ledger: i64 = conn.query_row(
        "SELECT COALESCE(MAX(rowid), 0) FROM credit_ledger",
        [],
        |r| r.get(0),
    )?;
    let billing: i64 = conn.query_row(
        "SELECT COALESCE(MAX(updated_at), 0) FROM billing_profiles",
        [],
        |r| r.get(0),
    )?;
    Ok((ledger, billing))
}

/// A checked query: the columns to answer, the WHERE text and its parameters.
struct Plan {
    columns: Vec<(&'static Column, String)>,
    where_sql: String,
    order_sql: String,
    params: Vec<SqlValue>,
}

impl Plan {
    fn build(relation: &Relation, scope: &Scope, query: &ReadQuery) -> Result<Plan, QueryError> {
        let find = |name: &str| {
            relation
                .columns
                .iter()
                .find(|c| c.name == name)
                .ok_or_else(|| QueryError::UnknownColumn(name.to_string()))
        };
        let columns = match &query.select {
            None => relation
                .columns
                .iter()
                .map(|c| (c, c.name.to_string()))
                .collect(),
            Some(items) => items
                .iter()
                .map(|item| Ok((find(&item.column)?, item.key().to_string())))
                .collect::<Result<Vec<_>, QueryError>>()?,
        };
        let mut clauses = Vec::new();
        let mut params = Vec::new();
        match (scope, relation.owner) {
            (_, None) | (Scope::All, _) => {}
            (Scope::Owner(user), Some(owner)) => {
                clauses.push(format!("{owner} = ?"));
                params.push(SqlValue::Text(user.clone()));
            }
            (Scope::Anonymous, Some(_)) => clauses.push("0".to_string()),
        }
        for condition in &query.filters {
            clauses.push(condition_sql(relation, condition, &mut params)?);
        }
        let where_sql = if clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", clauses.join(" AND "))
        };
        let mut order = Vec::new();
        for term in &query.order {
            let column = find(&term.column)?;
            let direction = if term.descending { "DESC" } else { "ASC" };
            // PostgreSQL's defaults: nulls sort as larger than every value.
            let nulls_first = term.nulls_first.unwrap_or(term.descending);
            let nulls = if nulls_first {
                "NULLS FIRST"
            } else {
                "NULLS LAST"
            };
            order.push(format!("{} {direction} {nulls}", column.name));
        }
        order.push(relation.default_order.to_string());
        Ok(Plan {
            columns,
            where_sql,
            order_sql: order.join(", "),
            params,
        })
    }
}

fn condition_sql(
    relation: &Relation,
    condition: &Condition,
    params: &mut Vec<SqlValue>,
) -> Result<String, QueryError> {
    match condition {
        Condition::Leaf(filter) => filter_sql(relation, filter, params),
        Condition::And(negated, items) | Condition::Or(negated, items) => {
            let joiner = if matches!(condition, Condition::And(..)) {
                " AND "
            } else {
                " OR "
            };
            let parts = items
                .iter()
                .map(|item| condition_sql(relation, item, params))
                .collect::<Result<Vec<_>, _>>()?;
            let body = if parts.is_empty() {
                if joiner == " AND " { "1" } else { "0" }.to_string()
            } else {
                parts.join(joiner)
            };
            Ok(if *negated {
                format!("NOT ({body})")
            } else {
                format!("({body})")
            })
        }
    }
}

fn filter_sql(
    relation: &Relation,
    filter: &Filter,
    params: &mut Vec<SqlValue>,
) -> Result<String, QueryError> {
    let column = relation
        .column(&filter.column)
        .ok_or_else(|| QueryError::UnknownColumn(filter.column.clone()))?;
    let name = column.name;
    let bad_op = |op: &'static str| QueryError::BadOperator {
        column: name.to_string(),
        op,
    };
    let sql = match (&filter.op, &filter.value) {
        (Op::Is, Operand::Is(is)) => match is {
            IsValue::Null => format!("{name} IS NULL"),
            IsValue::NotNull => format!("{name} IS NOT NULL"),
            IsValue::True | IsValue::False if column.kind == Bool => {
                let truth = i64::from(*is == IsValue::True);
                format!("{name} IS {truth}")
            }
            _ => return Err(bad_op("is")),
        },
        (Op::In, Operand::List(items)) => {
            if column.kind == Json {
                return Err(bad_op("in"));
            }
            if items.is_empty() {
                "0".to_string()
            } else {
                for item in items {
                    params.push(bind(column, item)?);
                }
                format!("{name} IN ({})", vec!["?"; items.len()].join(", "))
            }
        }
        (op, Operand::One(text)) => {
            let sql_op = match op {
                Op::Eq => "=",
                Op::Neq => "<>",
                Op::Gt => ">",
                Op::Gte => ">=",
                Op::Lt => "<",
                Op::Lte => "<=",
                Op::Like | Op::Ilike => {
                    if column.kind != Text {
                        return Err(bad_op("like"));
                    }
                    // PostgREST's `*` is `%`. `like` is case-sensitive: GLOB, with the
                    // pattern translated; `ilike`: SQLite's LIKE (ASCII case folding).
                    let sql = if *op == Op::Like {
                        params.push(SqlValue::Text(like_to_glob(text)));
                        format!("{name} GLOB ?")
                    } else {
                        params.push(SqlValue::Text(text.replace('*', "%")));
                        format!("{name} LIKE ?")
                    };
                    return Ok(negate(filter.negated, sql));
                }
                _ => return Err(bad_op("?")),
            };
            if column.kind == Json {
                return Err(bad_op(sql_op_name(*op)));
            }
            params.push(bind(column, text)?);
            format!("{name} {sql_op} ?")
        }
        _ => return Err(bad_op("?")),
    };
    Ok(negate(filter.negated, sql))
}

/// A LIKE pattern (`%`/`*` any text, `_` one character) as a GLOB pattern.
fn like_to_glob(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    for c in pattern.chars() {
        match c {
            '%' | '*' => out.push('*'),
            '_' => out.push('?'),
            '?' => out.push_str("[?]"),
            '[' => out.push_str("[[]"),
            other => out.push(other),
        }
    }
    out
}

fn sql_op_name(op: Op) -> &'static str {
    match op {
        Op::Eq => "=",
        Op::Neq => "<>",
        Op::Gt => ">",
        Op::Gte => ">=",
        Op::Lt => "<",
        Op::Lte => "<=",
        _ => "?",
    }
}

fn negate(negated: bool, sql: String) -> String {
    if negated {
        // `NOT (x = ?)` leaves NULL rows out, as PostgreSQL does.
        format!("NOT ({sql})")
    } else {
        sql
    }
}

/// A filter value as the column's type, or `BadValue`.
fn bind(column: &Column, text: &str) -> Result<SqlValue, QueryError> {
    let bad = || QueryError::BadValue {
        column: column.name.to_string(),
        value: text.to_string(),
    };
    Ok(match column.kind {
        Text | Json => SqlValue::Text(text.to_string()),
        Int => SqlValue::Integer(text.trim().parse().map_err(|_| bad())?),
        Numeric => SqlValue::Real(
            text.trim()
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .ok_or_else(bad)?,
        ),
        Bool => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "t" | "1" | "yes" | "on" => SqlValue::Integer(1),
            "false" | "f" | "0" | "no" | "off" => SqlValue::Integer(0),
            _ => return Err(bad()),
        },
        Timestamp => SqlValue::Integer(parse_timestamp(text).ok_or_else(bad)?),
    })
}

/// RFC 3339 (`2026-12-03T10:00:00Z`, `…+01:00`, fractional seconds) or a plain date,
/// as unix milliseconds.
fn parse_timestamp(text: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    use time::{Date, OffsetDateTime, PrimitiveDateTime, Time};
    let text = text.trim();
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    // PostgreSQL also reads a space for the `T` and a bare `+00` offset.
    let normalized = text.replacen(' ', "T", 1);
    if let Ok(t) = OffsetDateTime::parse(&normalized, &Rfc3339) {
        return Some((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let mut parts = text.splitn(3, '-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u8 = parts.next()?.parse().ok()?;
    let day: u8 = parts.next()?.parse().ok()?;
    let date = Date::from_calendar_date(year, time::Month::try_from(month).ok()?, day).ok()?;
    let t = PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_utc();
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

fn to_json(kind: Kind, value: ValueRef<'_>) -> Value {
    match (kind, value) {
        (_, ValueRef::Null) => Value::Null,
        (Json, ValueRef::Text(bytes)) => serde_json::from_slice(bytes).unwrap_or(Value::Null),
        (Bool, ValueRef::Integer(n)) => Value::Bool(n != 0),
        (Timestamp, ValueRef::Integer(ms)) => Value::String(rfc3339(ms)),
        (Timestamp, ValueRef::Real(ms)) => Value::String(rfc3339(ms as i64)),
        (_, ValueRef::Integer(n)) => Value::from(n),
        (_, ValueRef::Real(f)) => serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        (_, ValueRef::Text(bytes)) => Value::String(String::from_utf8_lossy(bytes).into_owned()),
        (_, ValueRef::Blob(_)) => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every view's result columns are exactly its declared list, in order.
    #[test]
    fn views_match_their_column_lists() {
        let dir = tempfile::tempdir().unwrap();
        let db = super::super::Db::open(
            &dir.path().join("t.db"),
            1,
            std::time::Duration::from_millis(500),
        )
        .unwrap();
        db.with_conn(|conn| {
            for relation in RELATIONS {
                let stmt = conn.prepare(relation.sql)?;
                let names: Vec<&str> = stmt.column_names();
                let declared: Vec<&str> = relation.columns.iter().map(|c| c.name).collect();
                assert_eq!(names, declared, "{}", relation.name);
            }
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn timestamps_parse_like_postgres() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(parse_timestamp("1970-01-01 00:00:01.5+00:00"), Some(1500));
        assert_eq!(parse_timestamp("1970-01-02"), Some(86_400_000));
        assert_eq!(parse_timestamp("yesterday"), None);
    }
}
