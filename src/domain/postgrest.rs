//! The PostgREST read grammar Atelier's `/rest/v1` answers: `select=`, column filters
//! (`col=[not.]op.value`), `or=(…)` / `and=(…)`, `order=`, `limit`, `offset` and the
//! `Range` header. Pure parsing into [`ReadQuery`]; names are only syntax-checked here
//! (the relation's column list decides whether they exist) and values stay text until
//! the database binds them.

/// A parsed read request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReadQuery {
    /// `None` = `*` (every column).
    pub select: Option<Vec<SelectItem>>,
    /// Every condition must hold (the top level is an implicit `and`).
    pub filters: Vec<Condition>,
    pub order: Vec<OrderTerm>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
}

/// One selected column, optionally renamed (`alias:column`).
#[derive(Debug, Clone, PartialEq)]
pub struct SelectItem {
    pub column: String,
    pub alias: Option<String>,
}

impl SelectItem {
    /// The key of this column in an answered row.
    pub fn key(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.column)
    }
}

/// A filter tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Leaf(Filter),
    /// `[not.]and(…)`
    And(bool, Vec<Condition>),
    /// `[not.]or(…)`
    Or(bool, Vec<Condition>),
}

/// `column [not.] op . value`
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub column: String,
    pub negated: bool,
    pub op: Op,
    pub value: Value,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
    Like,
    Ilike,
    In,
    Is,
}

impl Op {
    fn parse(text: &str) -> Option<Op> {
        Some(match text {
            "eq" => Op::Eq,
            "neq" => Op::Neq,
            "gt" => Op::Gt,
            "gte" => Op::Gte,
            "lt" => Op::Lt,
            "lte" => Op::Lte,
            "like" => Op::Like,
            "ilike" => Op::Ilike,
            "in" => Op::In,
            "is" => Op::Is,
            _ => return None,
        })
    }
}

/// A filter's operand.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    One(String),
    List(Vec<String>),
    Is(IsValue),
}

/// The operands of `is.`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsValue {
    Null,
    NotNull,
    True,
    False,
}

/// `column[.asc|.desc][.nullsfirst|.nullslast]`
#[derive(Debug, Clone, PartialEq)]
pub struct OrderTerm {
    pub column: String,
    pub descending: bool,
    /// `Some(true)` = nulls first, `Some(false)` = nulls last, `None` = PostgreSQL's
    /// default (nulls last ascending, first descending).
    pub nulls_first: Option<bool>,
}

/// A request PostgREST would refuse with `PGRST100` (or `PGRST103` for a range).
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub code: &'static str,
    pub message: String,
    pub details: String,
}

fn failed(what: &str, input: &str, details: impl Into<String>) -> ParseError {
    ParseError {
        code: "PGRST100",
        message: format!("\"failed to parse {what} ({input})\""),
        details: details.into(),
    }
}

/// Query keys that are not column filters.
const RESERVED: &[&str] = &["select", "order", "limit", "offset", "or", "and", "columns"];

/// Parses decoded query pairs (repeated keys allowed, in order).
pub fn parse(pairs: &[(String, String)]) -> Result<ReadQuery, ParseError> {
    let mut query = ReadQuery::default();
    for (key, value) in pairs {
        match key.as_str() {
            "select" => query.select = parse_select(value)?,
            "order" => query.order = parse_order(value)?,
            "limit" => query.limit = Some(parse_count("limit", value)?),
            "offset" => query.offset = Some(parse_count("offset", value)?),
            "or" | "and" => {
                let items = parse_logic_body(value)?;
                query.filters.push(if key == "or" {
                    Condition::Or(false, items)
                } else {
                    Condition::And(false, items)
                });
            }
            "not.or" | "not.and" => {
                let items = parse_logic_body(value)?;
                query.filters.push(if key == "not.or" {
                    Condition::Or(true, items)
                } else {
                    Condition::And(true, items)
                });
            }
            "columns" => {}
            column => {
                if RESERVED.contains(&column) {
                    continue;
                }
                check_name(column).map_err(|_| failed("filter", column, "bad column name"))?;
                let (negated, op, value) = parse_operation(value)?;
                query.filters.push(Condition::Leaf(Filter {
                    column: column.to_string(),
                    negated,
                    op,
                    value,
                }));
            }
        }
    }
    Ok(query)
}

/// A `Range: from-[to]` header (`Range-Unit: items`) as `(offset, limit)`.
pub fn parse_range(header: &str) -> Result<(u64, Option<u64>), ParseError> {
    let bad = || ParseError {
        code: "PGRST103",
        message: "Requested range not satisfiable".into(),
        details: format!("invalid Range header {header:?}"),
    };
    let text = header.trim();
    let text = text.strip_prefix("items=").unwrap_or(text);
    let (from, to) = text.split_once('-').ok_or_else(bad)?;
    let from: u64 = from.trim().parse().map_err(|_| bad())?;
    let to = to.trim();
    if to.is_empty() {
        return Ok((from, None));
    }
    let to: u64 = to.parse().map_err(|_| bad())?;
    if to < from {
        return Err(bad());
    }
    Ok((from, Some(to - from + 1)))
}

/// Names: letters, digits and `_`, not starting with a digit (what PostgREST accepts
/// unquoted; quoted names are not needed by any relation Atelier serves).
fn check_name(name: &str) -> Result<(), ()> {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return Err(()),
    }
    if name.len() <= 63 && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(())
    }
}

fn parse_count(what: &str, value: &str) -> Result<u64, ParseError> {
    value
        .trim()
        .parse::<u64>()
        .map_err(|_| failed(what, value, "expected a non-negative integer"))
}

fn parse_select(value: &str) -> Result<Option<Vec<SelectItem>>, ParseError> {
    let text = value.trim();
    if text.is_empty() || text == "*" {
        return Ok(None);
    }
    let mut items = Vec::new();
    for part in split_top_level(text, ',').map_err(|e| failed("select", value, e))? {
        let part = part.trim();
        if part == "*" {
            return Ok(None);
        }
        if part.contains('(') {
            return Err(ParseError {
                code: "PGRST200",
                message: "Could not find a relationship in the schema cache".into(),
                details: format!("embedded resources are not supported ({part})"),
            });
        }
        let (alias, column) = match part.split_once(':') {
            Some((alias, column)) if !column.starts_with(':') => {
                (Some(alias.trim().to_string()), column.trim())
            }
            _ => (None, part),
        };
        // A cast (`col::text`) is accepted and ignored: values keep their JSON type.
        let column = column.split("::").next().unwrap_or(column).trim();
        check_name(column).map_err(|_| failed("select", value, "bad column name"))?;
        if let Some(alias) = &alias {
            check_name(alias).map_err(|_| failed("select", value, "bad alias"))?;
        }
        items.push(SelectItem {
            column: column.to_string(),
            alias,
        });
    }
    Ok(Some(items))
}

fn parse_order(value: &str) -> Result<Vec<OrderTerm>, ParseError> {
    let mut terms = Vec::new();
    for part in value.split(',') {
        let mut pieces = part.trim().split('.');
        let column = pieces.next().unwrap_or("");
        check_name(column).map_err(|_| failed("order", value, "bad column name"))?;
        let mut term = OrderTerm {
            column: column.to_string(),
            descending: false,
            nulls_first: None,
        };
        for modifier in pieces {
            match modifier {
                "asc" => term.descending = false,
                "desc" => term.descending = true,
                "nullsfirst" => term.nulls_first = Some(true),
                "nullslast" => term.nulls_first = Some(false),
                other => {
                    return Err(failed(
                        "order",
                        value,
                        format!("unknown modifier {other:?}"),
                    ))
                }
            }
        }
        terms.push(term);
    }
    Ok(terms)
}

/// `[not.]op.value` of a column filter.
fn parse_operation(text: &str) -> Result<(bool, Op, Value), ParseError> {
    let (negated, rest) = match text.strip_prefix("not.") {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (op, operand) = rest
        .split_once('.')
        .ok_or_else(|| failed("filter", text, "expected operator.value"))?;
    let op =
        Op::parse(op).ok_or_else(|| failed("filter", text, format!("unknown operator {op:?}")))?;
    let value = match op {
        Op::In => Value::List(parse_list(operand).map_err(|e| failed("filter", text, e))?),
        Op::Is => Value::Is(match operand.to_ascii_lowercase().as_str() {
            "null" => IsValue::Null,
            "not_null" => IsValue::NotNull,
            "true" => IsValue::True,
            "false" => IsValue::False,
            _ => {
                return Err(failed(
                    "filter",
                    text,
                    "is. takes null, not_null, true or false",
                ))
            }
        }),
        _ => Value::One(operand.to_string()),
    };
    Ok((negated, op, value))
}

/// `(a,b,"c,d")` → `["a", "b", "c,d"]`.
fn parse_list(operand: &str) -> Result<Vec<String>, String> {
    let inner = operand
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or("in. takes a parenthesised list")?;
    if inner.trim().is_empty() {
        return Ok(Vec::new());
    }
    split_top_level(inner, ',')?
        .into_iter()
        .map(|item| Ok(unquote(item.trim())))
        .collect()
}

/// `"text"` → `text` (with `\"` and `\\` unescaped); anything else as it is.
fn unquote(item: &str) -> String {
    match item.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    if let Some(next) = chars.next() {
                        out.push(next);
                    }
                } else {
                    out.push(c);
                }
            }
            out
        }
        None => item.to_string(),
    }
}

/// Splits on `sep` outside double quotes and parentheses.
fn split_top_level(text: &str, sep: char) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut quoted, mut escaped, mut start) = (0usize, false, false, 0usize);
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth = depth.checked_sub(1).ok_or("unbalanced parentheses")?,
            c if c == sep && !quoted && depth == 0 => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    if quoted || depth != 0 {
        return Err("unbalanced quotes or parentheses".into());
    }
    parts.push(&text[start..]);
    Ok(parts)
}

/// Deepest nesting of `and(…)`/`or(…)` accepted.
const MAX_DEPTH: usize = 8;

/// The body of `or=(…)`: its parenthesised, comma-separated conditions.
fn parse_logic_body(value: &str) -> Result<Vec<Condition>, ParseError> {
    parse_logic_items(value, value, 0)
}

fn parse_logic_items(body: &str, whole: &str, depth: usize) -> Result<Vec<Condition>, ParseError> {
    if depth > MAX_DEPTH {
        return Err(failed("logic tree", whole, "nested too deeply"));
    }
    let inner = body
        .trim()
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| failed("logic tree", whole, "expected (…)"))?;
    let mut items = Vec::new();
    for item in split_top_level(inner, ',').map_err(|e| failed("logic tree", whole, e))? {
        items.push(parse_logic_item(item.trim(), whole, depth)?);
    }
    Ok(items)
}

fn parse_logic_item(item: &str, whole: &str, depth: usize) -> Result<Condition, ParseError> {
    let (negated, rest) = match item.strip_prefix("not.") {
        Some(rest) if rest.starts_with("and(") || rest.starts_with("or(") => (true, rest),
        _ => (false, item),
    };
    if let Some(body) = rest.strip_prefix("and") {
        if body.starts_with('(') {
            return Ok(Condition::And(
                negated,
                parse_logic_items(body, whole, depth + 1)?,
            ));
        }
    }
    if let Some(body) = rest.strip_prefix("or") {
        if body.starts_with('(') {
            return Ok(Condition::Or(
                negated,
                parse_logic_items(body, whole, depth + 1)?,
            ));
        }
    }
    let (column, operation) = item.split_once('.').ok_or_else(|| {
        failed(
            "logic tree",
            whole,
            format!("expected column.op.value in {item:?}"),
        )
    })?;
    check_name(column).map_err(|_| failed("logic tree", whole, "bad column name"))?;
    let (negated, op, value) = parse_operation(operation)?;
    let value = match value {
        Value::One(text) => Value::One(unquote(&text)),
        other => other,
    };
    Ok(Condition::Leaf(Filter {
        column: column.to_string(),
        negated,
        op,
        value,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str) -> Result<ReadQuery, ParseError> {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(text.as_bytes())
            .into_owned()
            .collect();
        parse(&pairs)
    }

    fn leaf(column: &str, negated: bool, op: Op, value: Value) -> Condition {
        Condition::Leaf(Filter {
            column: column.into(),
            negated,
            op,
            value,
        })
    }

    fn one(s: &str) -> Value {
        Value::One(s.into())
    }

    // Examples from PostgREST's "Tables and Views" documentation (horizontal filtering,
    // logical operators, ordering, limits and pagination, vertical filtering).

    #[test]
    fn horizontal_filtering_examples() {
        // GET /people?age=lt.13
        assert_eq!(
            q("age=lt.13").unwrap().filters,
            vec![leaf("age", false, Op::Lt, one("13"))]
        );
        // GET /people?age=gte.18&student=is.true
        assert_eq!(
            q("age=gte.18&student=is.true").unwrap().filters,
            vec![
                leaf("age", false, Op::Gte, one("18")),
                leaf("student", false, Op::Is, Value::Is(IsValue::True)),
            ]
        );
        // GET /people?age=not.eq.16 … and not.is.null
        assert_eq!(
            q("age=not.eq.16&name=not.is.null").unwrap().filters,
            vec![
                leaf("age", true, Op::Eq, one("16")),
                leaf("name", true, Op::Is, Value::Is(IsValue::Null)),
            ]
        );
        // GET /people?last_name=like.O*
        assert_eq!(
            q("last_name=like.O*").unwrap().filters,
            vec![leaf("last_name", false, Op::Like, one("O*"))]
        );
        // a value may itself contain dots: only the first dot ends the operator
        assert_eq!(
            q("created_at=gt.2017-01-01T00:00:00.000Z").unwrap().filters,
            vec![leaf(
                "created_at",
                false,
                Op::Gt,
                one("2017-01-01T00:00:00.000Z")
            )]
        );
    }

    #[test]
    fn in_lists_with_quotes() {
        // GET /people?age=in.(10,15)  /  ?name=in.("Hi,there","Yes")
        assert_eq!(
            q("age=in.(10,15)").unwrap().filters,
            vec![leaf(
                "age",
                false,
                Op::In,
                Value::List(vec!["10".into(), "15".into()])
            )]
        );
        assert_eq!(
            q("name=in.(%22Hi,there%22,%22Yes%22)").unwrap().filters,
            vec![leaf(
                "name",
                false,
                Op::In,
                Value::List(vec!["Hi,there".into(), "Yes".into()])
            )]
        );
        assert_eq!(
            q("a=in.()").unwrap().filters,
            vec![leaf("a", false, Op::In, Value::List(vec![]))]
        );
        assert!(q("a=in.10,15").is_err());
        assert!(q("a=in.(%22open").is_err());
    }

    #[test]
    fn logical_operators() {
        // GET /people?grade=gte.90&student=is.true&or=(age.eq.14,not.and(age.gte.11,age.lte.17))
        let parsed =
            q("grade=gte.90&student=is.true&or=(age.eq.14,not.and(age.gte.11,age.lte.17))")
                .unwrap();
        assert_eq!(parsed.filters.len(), 3);
        assert_eq!(
            parsed.filters[2],
            Condition::Or(
                false,
                vec![
                    leaf("age", false, Op::Eq, one("14")),
                    Condition::And(
                        true,
                        vec![
                            leaf("age", false, Op::Gte, one("11")),
                            leaf("age", false, Op::Lte, one("17")),
                        ]
                    ),
                ]
            )
        );
        // or=(id.eq.1,id.eq.2) with a quoted value holding a comma
        assert_eq!(
            q("or=(name.eq.%22a,b%22,id.in.(1,2))").unwrap().filters,
            vec![Condition::Or(
                false,
                vec![
                    leaf("name", false, Op::Eq, one("a,b")),
                    leaf(
                        "id",
                        false,
                        Op::In,
                        Value::List(vec!["1".into(), "2".into()])
                    ),
                ]
            )]
        );
        assert!(q("or=age.eq.14").is_err());
        assert!(q("or=(age.eq.14").is_err());
        let deep = format!("or=({}a.eq.1{})", "and(".repeat(20), ")".repeat(20));
        assert!(q(&deep).is_err());
    }

    #[test]
    fn ordering_limits_and_pagination() {
        // GET /people?order=age.desc,height.asc  /  ?order=age.nullsfirst  /  limit & offset
        let parsed = q("order=age.desc,height.asc&limit=15&offset=30").unwrap();
        assert_eq!(
            parsed.order,
            vec![
                OrderTerm {
                    column: "age".into(),
                    descending: true,
                    nulls_first: None
                },
                OrderTerm {
                    column: "height".into(),
                    descending: false,
                    nulls_first: None
                },
            ]
        );
        assert_eq!((parsed.limit, parsed.offset), (Some(15), Some(30)));
        assert_eq!(
            q("order=age.desc.nullslast").unwrap().order[0].nulls_first,
            Some(false)
        );
        assert_eq!(q("order=sort_order").unwrap().order[0].column, "sort_order");
        assert!(q("order=age.sideways").is_err());
        assert!(q("limit=-1").is_err());
        assert!(q("offset=ten").is_err());
    }

    #[test]
    fn vertical_filtering() {
        // GET /people?select=first_name,age  /  ?select=fullName:full_name,birthDate:birth_date
        let parsed = q("select=first_name,age").unwrap();
        let names: Vec<_> = parsed
            .select
            .unwrap()
            .iter()
            .map(|s| s.column.clone())
            .collect();
        assert_eq!(names, ["first_name", "age"]);
        let aliased = q("select=fullName:full_name,birthDate:birth_date").unwrap();
        let select = aliased.select.unwrap();
        assert_eq!(select[0].key(), "fullName");
        assert_eq!(select[0].column, "full_name");
        // ?select=full_name,salary::text (casts accepted, ignored)
        assert_eq!(
            q("select=full_name,salary::text").unwrap().select.unwrap()[1].column,
            "salary"
        );
        // supabase-js strips whitespace; the parser tolerates it too
        assert_eq!(q("select=a,%20b").unwrap().select.unwrap()[1].column, "b");
        assert_eq!(q("select=*").unwrap().select, None);
        assert_eq!(q("select=actors(*)").unwrap_err().code, "PGRST200");
    }

    #[test]
    fn hostile_names_are_refused() {
        for bad in [
            "select=id;drop table users",
            "select=id--",
            "select=\"id\"",
            "order=id;delete",
            "id%3B=eq.1",
            "1abc=eq.1",
            "na%C3%AFve=eq.1",
            "x=eq",
            "x=between.1.2",
        ] {
            assert!(q(bad).is_err(), "{bad} should be refused");
        }
        // values are opaque text, to be bound
        assert_eq!(
            q("id=eq.1';drop%20table%20users;--").unwrap().filters,
            vec![leaf("id", false, Op::Eq, one("1';drop table users;--"))]
        );
    }

    #[test]
    fn range_headers() {
        assert_eq!(parse_range("0-9").unwrap(), (0, Some(10)));
        assert_eq!(parse_range("items=5-").unwrap(), (5, None));
        assert_eq!(parse_range("3-3").unwrap(), (3, Some(1)));
        assert_eq!(parse_range("9-1").unwrap_err().code, "PGRST103");
        assert!(parse_range("abc").is_err());
    }
}
