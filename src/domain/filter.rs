//! The filter language of `QueryUsers`: a Mongo-style JSON object parsed into a typed tree.
//!
//! Pure on purpose: no SQL here. Every rule about what a filter may say (operators, value types,
//! limits) is enforced while parsing, so the SQL layer (`store::query_sql`) only translates a tree
//! that is already known to be well formed, and field names stay data from end to end.
//!
//! The input comes from a protobuf `Struct`, so every number is an `f64`; integers from other
//! sources (tests, JSON text) are accepted as well.
use std::fmt;

use serde_json::{Map, Number, Value};

use super::time::Micros;
use super::time::parse_rfc3339;
use crate::error::Error;

/// Deepest nesting of filter objects (`$and`/`$or`/`$nor` each add a level; the top is level 1).
pub const MAX_DEPTH: usize = 10;
/// Most values in one filter: every scalar counts one (each `$in` element included), and so does
/// an empty filter object or list. With the depth limit this bounds the whole tree: every object
/// leads to at least one value within `MAX_DEPTH` levels.
pub const MAX_VALUES: usize = 1000;
/// Most segments in a custom key path. PostgreSQL binds one parameter per segment and allows
/// 65535 parameters a statement; 16 keeps the largest filter (1000 comparisons, each naming its
/// path twice) near half of that.
pub const MAX_PATH_SEGMENTS: usize = 16;
/// Longest field name, in bytes.
pub const MAX_FIELD_BYTES: usize = 1024;

/// A parsed filter. Every node is total: it holds or it does not (no "unknown").
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// No condition: every (non-deleted) user.
    All,
    And(Vec<Filter>),
    Or(Vec<Filter>),
    /// None of the children holds.
    Nor(Vec<Filter>),
    Leaf {
        field: Field,
        op: Op,
    },
    /// The user is (`is: true`) or is not in `state` at the instant the query runs.
    State {
        state: State,
        is: bool,
    },
}

/// What a read of a user shows as judged at that instant (`banned`, `shadow_banned`, `online`),
/// never stored as such. A filter sees them as the read does: the ban in force at query time
/// (a ban past its expiry does not count), presence within the window. They change with time
/// alone, so they filter but do not sort (a page token could not stay valid).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::Display,
    strum::AsRefStr,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::EnumIter,
)]
#[strum(serialize_all = "snake_case")]
pub enum State {
    /// A ban that is not a shadow ban is in force.
    Banned,
    /// A shadow ban is in force.
    ShadowBanned,
    /// Active within the presence window, and not invisible.
    Online,
}

impl State {
    /// The name a filter gives the state.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// What a filter or sort key talks about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Field {
    Builtin(Builtin),
    /// The user's team list (a JSON array of strings).
    Teams,
    /// A key of `custom`, nested keys as separate segments (`address.city` = `["address", "city"]`).
    Custom(Vec<String>),
}

/// The built-in scalar columns a query may filter and sort on.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::Display,
    strum::AsRefStr,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::EnumIter,
)]
#[strum(serialize_all = "snake_case")]
pub enum Builtin {
    Id,
    Name,
    Image,
    Role,
    Language,
    Invisible,
    CreatedAt,
    UpdatedAt,
    DeactivatedAt,
    LastActive,
}

/// The type a built-in column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Bool,
    /// Microseconds since the Unix epoch; written as RFC 3339 strings in filters.
    Instant,
}

/// A comparison value, already checked against its field.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Null,
    Bool(bool),
    Number(Number),
    Text(String),
    Instant(Micros),
}

/// Ordering comparisons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Gt,
    Gte,
    Lt,
    Lte,
}

/// One condition on one field. `$contains` (teams only) is parsed into `Eq` on `Teams`, which
/// already means "is in the team".
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Eq(Scalar),
    Ne(Scalar),
    Cmp(Cmp, Scalar),
    In(Vec<Scalar>),
    Nin(Vec<Scalar>),
    Exists(bool),
    /// Case-insensitive prefix (id and name only).
    Autocomplete(String),
}

impl Builtin {
    /// The field name, which is also the column name.
    pub fn name(self) -> &'static str {
        self.into()
    }

    pub fn kind(self) -> Kind {
        match self {
            Builtin::Invisible => Kind::Bool,
            Builtin::CreatedAt
            | Builtin::UpdatedAt
            | Builtin::DeactivatedAt
            | Builtin::LastActive => Kind::Instant,
            _ => Kind::Text,
        }
    }

    /// Whether the column may be NULL (an unset name, a never-active user, ...).
    pub fn nullable(self) -> bool {
        matches!(
            self,
            Builtin::Name | Builtin::Image | Builtin::DeactivatedAt | Builtin::LastActive
        )
    }
}

/// User fields that exist but are neither filterable nor sortable. A bare name is normally a
/// custom key; for these that reading would silently match nothing, so they are refused and
/// `custom.<name>` is required.
const NOT_QUERYABLE: [&str; 11] = [
    "custom",
    "teams_role",
    "privacy_settings",
    "push_notifications",
    "deleted_at",
    "revoke_tokens_issued_before",
    "avg_response_time",
    "deleted",
    "ban_expires",
    "blocked_user_ids",
    "devices",
];

impl Field {
    /// Parses a field name: a built-in, `teams`, `custom.a.b`, or a bare custom path `a.b`.
    /// The error is a description for the caller's field path.
    pub fn parse(name: &str) -> Result<Field, String> {
        if name.len() > MAX_FIELD_BYTES {
            return Err(format!("field names are at most {MAX_FIELD_BYTES} bytes"));
        }
        if let Ok(builtin) = name.parse::<Builtin>() {
            return Ok(Field::Builtin(builtin));
        }
        if name == "teams" {
            return Ok(Field::Teams);
        }
        if let Some(path) = name.strip_prefix("custom.") {
            return custom_path(path).map(Field::Custom);
        }
        if NOT_QUERYABLE.contains(&name) {
            return Err(format!(
                "`{name}` cannot be queried; write `custom.{name}` for a custom key of that name"
            ));
        }
        if name.parse::<State>().is_ok() {
            return Err(format!(
                "`{name}` is judged when the query runs: it can be filtered on but not sorted \
                 by; write `custom.{name}` for a custom key of that name"
            ));
        }
        if name.starts_with('$') {
            return Err(format!("unknown operator `{name}`"));
        }
        let path = custom_path(name)?;
        let first = path[0].as_str();
        if path.len() > 1 && is_user_field(first) {
            return Err(format!(
                "`{first}` is a user field, not a custom key; write `custom.{name}` for a custom \
                 key path"
            ));
        }
        Ok(Field::Custom(path))
    }

    /// Whether the field can be NULL / missing (which sorts as the lowest value).
    pub fn nullable(&self) -> bool {
        match self {
            Field::Builtin(b) => b.nullable(),
            Field::Teams => false,
            Field::Custom(_) => true,
        }
    }
}

/// Whether `name` is a field of the user itself (queryable or not), which a bare name never reads
/// as a custom key.
fn is_user_field(name: &str) -> bool {
    name.parse::<Builtin>().is_ok()
        || name.parse::<State>().is_ok()
        || name == "teams"
        || NOT_QUERYABLE.contains(&name)
}

/// The canonical name (`custom.a.b` for custom keys): stable, so it can be fingerprinted.
impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Builtin(b) => f.write_str(b.name()),
            Field::Teams => f.write_str("teams"),
            Field::Custom(path) => write!(f, "custom.{}", path.join(".")),
        }
    }
}

/// Splits a custom key path. Segments may not be empty, hold `"` (the SQLite JSON path quotes
/// segments with it) or control characters (PostgreSQL text cannot hold NUL).
fn custom_path(path: &str) -> Result<Vec<String>, String> {
    let segments: Vec<&str> = path.split('.').collect();
    if segments.len() > MAX_PATH_SEGMENTS {
        return Err(format!(
            "custom key paths have at most {MAX_PATH_SEGMENTS} segments"
        ));
    }
    for segment in &segments {
        if segment.is_empty() {
            return Err("custom key path has an empty segment".into());
        }
        if segment.contains('"') {
            return Err("custom key segments may not contain `\"`".into());
        }
        if segment.chars().any(char::is_control) {
            return Err("custom key segments may not contain control characters".into());
        }
    }
    Ok(segments.into_iter().map(str::to_owned).collect())
}

/// Parses a filter object. An empty object is `Filter::All`.
pub fn parse_filter(filter: &Map<String, Value>) -> Result<Filter, Error> {
    Parser { budget: MAX_VALUES }.object(filter, "filter", 1)
}

/// Walks the JSON, spending one unit of `budget` per value so the work is bounded by the limit
/// rather than by the input's size.
struct Parser {
    budget: usize,
}

impl Parser {
    fn spend(&mut self, at: &str) -> Result<(), Error> {
        match self.budget.checked_sub(1) {
            Some(left) => {
                self.budget = left;
                Ok(())
            }
            None => Err(Error::invalid(
                at,
                format!("a filter has at most {MAX_VALUES} values"),
            )),
        }
    }

    /// A filter object: every key must hold.
    fn object(
        &mut self,
        obj: &Map<String, Value>,
        at: &str,
        depth: usize,
    ) -> Result<Filter, Error> {
        if depth > MAX_DEPTH {
            return Err(Error::invalid(
                at,
                format!("at most {MAX_DEPTH} levels of nesting"),
            ));
        }
        if obj.is_empty() {
            self.spend(at)?;
        }
        let mut all = Vec::with_capacity(obj.len());
        for (key, value) in obj {
            let here = format!("{at}.{key}");
            let condition = match key.as_str() {
                "$and" | "$or" | "$nor" => self.logical(key, value, &here, depth)?,
                _ => self.field(key, value, &here)?,
            };
            all.push(condition);
        }
        Ok(conjunction(all))
    }

    /// `$and` / `$or` / `$nor`: a non-empty array of filter objects.
    fn logical(
        &mut self,
        key: &str,
        value: &Value,
        at: &str,
        depth: usize,
    ) -> Result<Filter, Error> {
        let Value::Array(items) = value else {
            return Err(Error::invalid(
                at,
                "expected a non-empty array of filter objects",
            ));
        };
        if items.is_empty() {
            return Err(Error::invalid(
                at,
                "expected a non-empty array of filter objects",
            ));
        }
        let mut children = Vec::with_capacity(items.len().min(MAX_VALUES));
        for (i, item) in items.iter().enumerate() {
            let here = format!("{at}[{i}]");
            let Value::Object(obj) = item else {
                return Err(Error::invalid(here, "expected a filter object"));
            };
            children.push(self.object(obj, &here, depth + 1)?);
        }
        Ok(match key {
            "$and" => Filter::And(children),
            "$or" => Filter::Or(children),
            _ => Filter::Nor(children),
        })
    }

    /// `field: scalar` (equality) or `field: {operators}` (all must hold).
    fn field(&mut self, key: &str, value: &Value, at: &str) -> Result<Filter, Error> {
        if let Ok(state) = key.parse::<State>() {
            return self.state(state, value, at);
        }
        let field = Field::parse(key).map_err(|why| Error::invalid(at, why))?;
        match value {
            Value::Object(ops) => {
                if ops.is_empty() {
                    return Err(Error::invalid(
                        at,
                        "expected a value or an object of operators",
                    ));
                }
                let mut all = Vec::with_capacity(ops.len());
                for (op, arg) in ops {
                    let here = format!("{at}.{op}");
                    all.push(self.operator(&field, op, arg, &here)?);
                }
                Ok(conjunction(all))
            }
            Value::Array(_) => Err(Error::invalid(
                at,
                "expected a scalar; use $in or $nin for a list of values",
            )),
            scalar => {
                self.spend(at)?;
                let value = field_value(&field, scalar).map_err(|why| Error::invalid(at, why))?;
                Ok(leaf(field, Op::Eq(value)))
            }
        }
    }

    /// `banned: true`, `online: {"$ne": true}`, ...: equality, `$in`, `$nin` and `$exists` on a
    /// boolean that is never null.
    fn state(&mut self, state: State, value: &Value, at: &str) -> Result<Filter, Error> {
        let name = state.name();
        let boolean = |value: &Value, at: &str| {
            value
                .as_bool()
                .ok_or_else(|| Error::invalid(at, format!("{name} is compared with booleans")))
        };
        let Value::Object(ops) = value else {
            self.spend(at)?;
            return Ok(Filter::State {
                state,
                is: boolean(value, at)?,
            });
        };
        if ops.is_empty() {
            return Err(Error::invalid(
                at,
                "expected a value or an object of operators",
            ));
        }
        let mut all = Vec::with_capacity(ops.len());
        for (op, arg) in ops {
            let here = format!("{at}.{op}");
            let condition = match op.as_str() {
                "$eq" | "$ne" => {
                    self.spend(&here)?;
                    Filter::State {
                        state,
                        is: boolean(arg, &here)? == (op == "$eq"),
                    }
                }
                "$in" | "$nin" => {
                    let Value::Array(items) = arg else {
                        return Err(Error::invalid(here, "expected an array of booleans"));
                    };
                    if items.is_empty() {
                        self.spend(&here)?;
                    }
                    let mut seen = [false, false];
                    for (i, item) in items.iter().enumerate() {
                        let item_at = format!("{here}[{i}]");
                        self.spend(&item_at)?;
                        seen[usize::from(boolean(item, &item_at)?)] = true;
                    }
                    let listed = match seen {
                        [true, true] => Filter::All,
                        [false, true] => Filter::State { state, is: true },
                        [true, false] => Filter::State { state, is: false },
                        [false, false] => Filter::Or(Vec::new()),
                    };
                    if op == "$in" {
                        listed
                    } else {
                        Filter::Nor(vec![listed])
                    }
                }
                "$exists" => {
                    self.spend(&here)?;
                    let exists = arg
                        .as_bool()
                        .ok_or_else(|| Error::invalid(&here, "expected a boolean"))?;
                    // Always present: every user is either in the state or not.
                    if exists {
                        Filter::All
                    } else {
                        Filter::Or(Vec::new())
                    }
                }
                other if other.starts_with('$') => {
                    return Err(Error::invalid(
                        here,
                        format!(
                            "{other} does not apply to {name}; use $eq, $ne, $in, $nin or $exists"
                        ),
                    ));
                }
                _ => {
                    return Err(Error::invalid(
                        here,
                        "an operator object may only hold operators ($eq, $gt, ...)",
                    ));
                }
            };
            all.push(condition);
        }
        Ok(conjunction(all))
    }

    /// One `$op: argument` of a field.
    fn operator(
        &mut self,
        field: &Field,
        op: &str,
        arg: &Value,
        at: &str,
    ) -> Result<Filter, Error> {
        let invalid = |why: String| Error::invalid(at, why);
        let op = match op {
            "$eq" | "$ne" | "$gt" | "$gte" | "$lt" | "$lte" => {
                self.spend(at)?;
                comparison(field, op, arg).map_err(invalid)?
            }
            "$in" | "$nin" => {
                let values = self.list(field, arg, at)?;
                if op == "$in" {
                    Op::In(values)
                } else {
                    Op::Nin(values)
                }
            }
            "$exists" => {
                self.spend(at)?;
                Op::Exists(
                    arg.as_bool()
                        .ok_or_else(|| invalid("expected a boolean".into()))?,
                )
            }
            "$autocomplete" => {
                self.spend(at)?;
                autocomplete(field, arg).map_err(invalid)?
            }
            "$contains" => {
                self.spend(at)?;
                contains(field, arg).map_err(invalid)?
            }
            other if other.starts_with('$') => {
                return Err(invalid(format!("unknown operator `{other}`")));
            }
            _ => {
                return Err(invalid(
                    "an operator object may only hold operators ($eq, $gt, ...)".into(),
                ));
            }
        };
        Ok(leaf(field.clone(), op))
    }

    /// The argument of `$in` / `$nin`: an array of values fit for the field.
    fn list(&mut self, field: &Field, arg: &Value, at: &str) -> Result<Vec<Scalar>, Error> {
        let Value::Array(items) = arg else {
            return Err(Error::invalid(at, "expected an array of values"));
        };
        if items.is_empty() {
            self.spend(at)?;
        }
        let mut values = Vec::with_capacity(items.len().min(MAX_VALUES));
        for (i, item) in items.iter().enumerate() {
            let here = format!("{at}[{i}]");
            self.spend(&here)?;
            values.push(field_value(field, item).map_err(|why| Error::invalid(here, why))?);
        }
        Ok(values)
    }
}

fn leaf(field: Field, op: Op) -> Filter {
    Filter::Leaf { field, op }
}

/// Several conditions that must all hold; one stays itself, none is `All`.
fn conjunction(mut all: Vec<Filter>) -> Filter {
    all.retain(|f| *f != Filter::All);
    match all.len() {
        0 => Filter::All,
        1 => all.pop().unwrap_or(Filter::All),
        _ => Filter::And(all),
    }
}

fn comparison(field: &Field, op: &str, arg: &Value) -> Result<Op, String> {
    let value = field_value(field, arg)?;
    let cmp = match op {
        "$eq" => return Ok(Op::Eq(value)),
        "$ne" => return Ok(Op::Ne(value)),
        "$gt" => Cmp::Gt,
        "$gte" => Cmp::Gte,
        "$lt" => Cmp::Lt,
        _ => Cmp::Lte,
    };
    if *field == Field::Teams {
        return Err(format!(
            "{op} is not supported on teams; use $contains, $in or $nin"
        ));
    }
    if value == Scalar::Null {
        return Err(format!("{op} needs a non-null value"));
    }
    Ok(Op::Cmp(cmp, value))
}

fn autocomplete(field: &Field, arg: &Value) -> Result<Op, String> {
    if !matches!(field, Field::Builtin(Builtin::Id | Builtin::Name)) {
        return Err("$autocomplete is only supported on id and name".into());
    }
    Ok(Op::Autocomplete(text(arg)?))
}

fn contains(field: &Field, arg: &Value) -> Result<Op, String> {
    if *field != Field::Teams {
        return Err("$contains is only supported on teams".into());
    }
    // `$eq` on teams already means "is in the team".
    Ok(Op::Eq(Scalar::Text(text(arg)?)))
}

/// A string argument. NUL is refused: PostgreSQL text cannot hold it, so no stored value can.
fn text(arg: &Value) -> Result<String, String> {
    match arg {
        Value::String(s) if s.contains('\0') => Err("strings may not contain NUL".into()),
        Value::String(s) => Ok(s.clone()),
        _ => Err("expected a string".into()),
    }
}

/// Checks a comparison value against the field's type.
fn field_value(field: &Field, value: &Value) -> Result<Scalar, String> {
    match field {
        Field::Builtin(b) => builtin_value(*b, value),
        Field::Teams => match value {
            Value::String(_) => Ok(Scalar::Text(text(value)?)),
            _ => Err("expected a team name (a string)".into()),
        },
        Field::Custom(_) => custom_value(value),
    }
}

fn builtin_value(b: Builtin, value: &Value) -> Result<Scalar, String> {
    let name = b.name();
    match (b.kind(), value) {
        (_, Value::Null) if b.nullable() => Ok(Scalar::Null),
        (_, Value::Null) => Err(format!("{name} is never null")),
        (Kind::Text, Value::String(_)) => Ok(Scalar::Text(text(value)?)),
        (Kind::Text, _) => Err(format!("{name} is compared with strings")),
        (Kind::Bool, Value::Bool(v)) => Ok(Scalar::Bool(*v)),
        (Kind::Bool, _) => Err(format!("{name} is compared with booleans")),
        (Kind::Instant, Value::String(s)) => parse_rfc3339(s)
            .map(Scalar::Instant)
            .ok_or_else(|| format!("{name} is compared with RFC 3339 timestamps")),
        (Kind::Instant, _) => Err(format!(
            "{name} is compared with RFC 3339 timestamps (strings)"
        )),
    }
}

/// Custom values: any JSON scalar; objects and arrays are not comparison values.
fn custom_value(value: &Value) -> Result<Scalar, String> {
    match value {
        Value::Null => Ok(Scalar::Null),
        Value::Bool(v) => Ok(Scalar::Bool(*v)),
        Value::Number(n) => Ok(Scalar::Number(n.clone())),
        Value::String(_) => Ok(Scalar::Text(text(value)?)),
        Value::Array(_) | Value::Object(_) => {
            Err("expected a scalar (string, number, boolean or null)".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::error::FieldViolation;

    fn parse(v: Value) -> Result<Filter, Error> {
        parse_ref(&v)
    }

    fn parse_ref(v: &Value) -> Result<Filter, Error> {
        match v {
            Value::Object(map) => parse_filter(map),
            _ => panic!("test filters are objects"),
        }
    }

    /// The single violation of a rejected filter.
    fn violation(v: Value) -> FieldViolation {
        match parse(v) {
            Err(Error::InvalidArgument(mut all)) if all.len() == 1 => all.remove(0),
            other => panic!("expected one violation, got {other:?}"),
        }
    }

    fn custom(path: &[&str]) -> Field {
        Field::Custom(path.iter().map(|s| s.to_string()).collect())
    }

    /// The leaves of nested `And`s.
    fn flatten(f: Filter) -> Vec<Filter> {
        match f {
            Filter::And(all) => all.into_iter().flat_map(flatten).collect(),
            other => vec![other],
        }
    }

    fn num(n: f64) -> Scalar {
        Scalar::Number(Number::from_f64(n).expect("finite"))
    }

    /// Field and state names are what callers write in filters and sorts (and built-ins are
    /// column names): these strings never change.
    #[test]
    fn field_and_state_names_are_pinned() {
        use strum::IntoEnumIterator;
        let builtins: Vec<&str> = Builtin::iter().map(Builtin::name).collect();
        assert_eq!(
            builtins,
            [
                "id",
                "name",
                "image",
                "role",
                "language",
                "invisible",
                "created_at",
                "updated_at",
                "deactivated_at",
                "last_active"
            ]
        );
        for b in Builtin::iter() {
            assert_eq!(b.name().parse(), Ok(b));
            assert_eq!(Field::parse(b.name()), Ok(Field::Builtin(b)));
        }
        let states: Vec<&str> = State::iter().map(State::name).collect();
        assert_eq!(states, ["banned", "shadow_banned", "online"]);
        for state in State::iter() {
            assert_eq!(state.name().parse(), Ok(state));
        }
    }

    #[test]
    fn empty_filter_is_all() {
        assert_eq!(parse(json!({})).expect("valid"), Filter::All);
    }

    #[test]
    fn scalar_means_eq_and_keys_combine_with_and() {
        let f = parse(json!({"id": "u1", "score": 3.0})).expect("valid");
        assert_eq!(
            f,
            Filter::And(vec![
                leaf(
                    Field::Builtin(Builtin::Id),
                    Op::Eq(Scalar::Text("u1".into()))
                ),
                leaf(custom(&["score"]), Op::Eq(num(3.0))),
            ])
        );
    }

    #[test]
    fn field_names() {
        assert_eq!(Field::parse("name"), Ok(Field::Builtin(Builtin::Name)));
        assert_eq!(Field::parse("teams"), Ok(Field::Teams));
        assert_eq!(Field::parse("custom.name"), Ok(custom(&["name"])));
        assert_eq!(Field::parse("a.b"), Ok(custom(&["a", "b"])));
        assert_eq!(Field::parse("custom.a.b"), Ok(custom(&["a", "b"])));
        assert_eq!(Field::parse("custom.$gt"), Ok(custom(&["$gt"])));
        assert_eq!(Field::parse("a;--"), Ok(custom(&["a;--"])));
        assert_eq!(Field::parse("' OR 1=1 --"), Ok(custom(&["' OR 1=1 --"])));
        assert_eq!(Field::parse("a'b\\c"), Ok(custom(&["a'b\\c"])));
        assert_eq!(Field::parse("ünï🦀"), Ok(custom(&["ünï🦀"])));
        assert_eq!(
            Field::parse("custom.deleted_at"),
            Ok(custom(&["deleted_at"]))
        );
        for bad in [
            "",
            "a..b",
            ".a",
            "a.",
            "custom",
            "custom.",
            "a\"b",
            "custom.x\"y",
            "a\0b",
            "a\nb",
            "$where",
            "deleted_at",
            "teams_role",
            "privacy_settings",
            "ban_expires",
            "blocked_user_ids",
            "devices",
            "devices.0",
            "banned",
            "shadow_banned",
            "online",
            "online.x",
            "name.first",
        ] {
            assert!(Field::parse(bad).is_err(), "{bad:?} should be refused");
        }
        for name in ["devices", "banned", "online", "ban_expires", "name.first"] {
            let custom_name = format!("custom.{name}");
            let path: Vec<&str> = name.split('.').collect();
            assert_eq!(Field::parse(&custom_name), Ok(custom(&path)));
        }
        assert!(Field::parse("a.".repeat(MAX_PATH_SEGMENTS).trim_end_matches('.')).is_ok());
        assert!(Field::parse("a.".repeat(MAX_PATH_SEGMENTS + 1).trim_end_matches('.')).is_err());
        assert!(Field::parse(&"x".repeat(MAX_FIELD_BYTES + 1)).is_err());
    }

    #[test]
    fn states_filter_as_booleans_judged_when_the_query_runs() {
        let state = |state, is| Filter::State { state, is };
        assert_eq!(
            parse(json!({"banned": true})).unwrap(),
            state(State::Banned, true)
        );
        assert_eq!(
            parse(json!({"shadow_banned": {"$ne": true}})).unwrap(),
            state(State::ShadowBanned, false)
        );
        assert_eq!(
            parse(json!({"online": {"$in": [false]}})).unwrap(),
            state(State::Online, false)
        );
        assert_eq!(
            parse(json!({"online": {"$nin": [true]}})).unwrap(),
            Filter::Nor(vec![state(State::Online, true)])
        );
        assert_eq!(
            parse(json!({"online": {"$in": [true, false]}})).unwrap(),
            Filter::All
        );
        assert_eq!(
            parse(json!({"banned": {"$in": []}})).unwrap(),
            Filter::Or(vec![])
        );
        assert_eq!(
            parse(json!({"custom.banned": true})).unwrap(),
            leaf(custom(&["banned"]), Op::Eq(Scalar::Bool(true)))
        );
        for (bad, at) in [
            (json!({"banned": 1}), "filter.banned"),
            (json!({"banned": null}), "filter.banned"),
            (json!({"online": {"$gt": false}}), "filter.online.$gt"),
            (
                json!({"online": {"$in": [true, "x"]}}),
                "filter.online.$in[1]",
            ),
            (
                json!({"shadow_banned": {"$exists": 1}}),
                "filter.shadow_banned.$exists",
            ),
            (json!({"ban_expires": null}), "filter.ban_expires"),
            (json!({"devices": {"$exists": true}}), "filter.devices"),
        ] {
            assert_eq!(violation(bad.clone()).field, at, "{bad}");
        }
    }

    #[test]
    fn canonical_names_round_trip() {
        for name in ["id", "last_active", "teams", "custom.a.b", "custom.name"] {
            assert_eq!(Field::parse(name).expect("valid").to_string(), name);
        }
        assert_eq!(
            Field::parse("a.b").expect("valid").to_string(),
            "custom.a.b"
        );
    }

    #[test]
    fn every_operator() {
        let f = parse(json!({
            "name": {"$ne": null, "$autocomplete": "Al"},
            "created_at": {"$gte": "2024-01-01T00:00:00Z", "$lt": "2024-01-02T00:00:00+01:00"},
            "teams": {"$contains": "red", "$nin": ["blue"], "$exists": true},
            "score": {"$in": [1.0, "1", true, null], "$gt": 0.5, "$lte": 10.0},
        }))
        .expect("valid");
        let parts = flatten(f);
        assert!(parts.contains(&leaf(
            Field::Builtin(Builtin::CreatedAt),
            Op::Cmp(Cmp::Gte, Scalar::Instant(1_704_067_200_000_000))
        )));
        assert!(parts.contains(&leaf(
            Field::Builtin(Builtin::CreatedAt),
            Op::Cmp(Cmp::Lt, Scalar::Instant(1_704_150_000_000_000))
        )));
        assert!(parts.contains(&leaf(Field::Teams, Op::Eq(Scalar::Text("red".into())))));
        assert!(parts.contains(&leaf(
            custom(&["score"]),
            Op::In(vec![
                num(1.0),
                Scalar::Text("1".into()),
                Scalar::Bool(true),
                Scalar::Null
            ])
        )));
        assert!(parts.contains(&leaf(
            Field::Builtin(Builtin::Name),
            Op::Autocomplete("Al".into())
        )));
        assert_eq!(parts.len(), 10);
    }

    #[test]
    fn logical_operators() {
        let f = parse(json!({"$or": [{"id": "a"}, {"$nor": [{"id": "b"}]}], "$and": [{}]}))
            .expect("valid");
        assert_eq!(
            f,
            Filter::And(vec![
                Filter::And(vec![Filter::All]),
                Filter::Or(vec![
                    leaf(
                        Field::Builtin(Builtin::Id),
                        Op::Eq(Scalar::Text("a".into()))
                    ),
                    Filter::Nor(vec![leaf(
                        Field::Builtin(Builtin::Id),
                        Op::Eq(Scalar::Text("b".into()))
                    )]),
                ]),
            ])
        );
    }

    #[test]
    fn precise_error_paths() {
        let cases = [
            (
                json!({"$and": [{}, {"score": {"$gt": {}}}]}),
                "filter.$and[1].score.$gt",
            ),
            (json!({"score": {"$gt": []}}), "filter.score.$gt"),
            (json!({"score": {"$gt": null}}), "filter.score.$gt"),
            (json!({"score": {"$in": 3}}), "filter.score.$in"),
            (json!({"score": {"$in": [1, {}]}}), "filter.score.$in[1]"),
            (json!({"score": {"$exists": "yes"}}), "filter.score.$exists"),
            (json!({"invisible": "yes"}), "filter.invisible"),
            (json!({"created_at": 5}), "filter.created_at"),
            (json!({"created_at": "yesterday"}), "filter.created_at"),
            (json!({"created_at": null}), "filter.created_at"),
            (json!({"id": null}), "filter.id"),
            (json!({"role": 3}), "filter.role"),
            (
                json!({"role": {"$autocomplete": "a"}}),
                "filter.role.$autocomplete",
            ),
            (
                json!({"name": {"$autocomplete": 1}}),
                "filter.name.$autocomplete",
            ),
            (json!({"name": {"$contains": "a"}}), "filter.name.$contains"),
            (json!({"teams": {"$contains": 1}}), "filter.teams.$contains"),
            (json!({"teams": {"$gt": "a"}}), "filter.teams.$gt"),
            (json!({"teams": null}), "filter.teams"),
            (json!({"teams": ["a"]}), "filter.teams"),
            (json!({"score": {"$regex": "a"}}), "filter.score.$regex"),
            (json!({"score": {"$gt": 1, "x": 2}}), "filter.score.x"),
            (json!({"score": {}}), "filter.score"),
            (json!({"$where": "1"}), "filter.$where"),
            (json!({"$and": []}), "filter.$and"),
            (json!({"$or": {}}), "filter.$or"),
            (json!({"$nor": [1]}), "filter.$nor[0]"),
            (json!({"a\"b": 1}), "filter.a\"b"),
            (json!({"": 1}), "filter."),
            (json!({"$or": [{"custom": 1}]}), "filter.$or[0].custom"),
            (json!({"name": "a\u{0}b"}), "filter.name"),
        ];
        for (filter, path) in cases {
            let v = violation(filter.clone());
            assert_eq!(v.field, path, "{filter}: {}", v.description);
        }
    }

    #[test]
    fn nullable_builtins_accept_null() {
        let f =
            parse(json!({"deactivated_at": null, "name": {"$in": [null, "x"]}})).expect("valid");
        assert_eq!(
            f,
            Filter::And(vec![
                leaf(Field::Builtin(Builtin::DeactivatedAt), Op::Eq(Scalar::Null)),
                leaf(
                    Field::Builtin(Builtin::Name),
                    Op::In(vec![Scalar::Null, Scalar::Text("x".into())])
                ),
            ])
        );
    }

    #[test]
    fn huge_and_odd_numbers_are_fine() {
        let f =
            parse(json!({"score": {"$gt": 1e308, "$lt": -1e308}, "n": u64::MAX, "m": i64::MIN}));
        assert!(f.is_ok());
    }

    #[test]
    fn depth_limit() {
        let mut f = json!({"id": "x"});
        for _ in 1..MAX_DEPTH {
            f = json!({"$and": [f]});
        }
        assert!(parse(f.clone()).is_ok(), "{MAX_DEPTH} levels are allowed");
        let v = violation(json!({"$or": [f]}));
        assert!(v.description.contains("nesting"), "{}", v.description);
    }

    #[test]
    fn very_deep_input_does_not_overflow_the_stack() {
        // Built by hand: far deeper than any recursive walk could survive.
        let mut f = Value::Object(Map::new());
        for _ in 0..100_000 {
            let mut and = Map::new();
            and.insert("$and".into(), Value::Array(vec![f]));
            f = Value::Object(and);
        }
        assert!(parse_ref(&f).is_err());
        // Dropping a 100k-deep Value recursively would overflow; unwind it iteratively.
        let mut current = f;
        while let Value::Object(mut map) = current {
            current = match map.remove("$and") {
                Some(Value::Array(mut items)) => items.pop().unwrap_or(Value::Null),
                _ => Value::Null,
            };
        }
    }

    #[test]
    fn value_limit() {
        let list: Vec<Value> = (0..MAX_VALUES).map(|i| json!(i)).collect();
        assert!(parse(json!({"score": {"$in": list.clone()}})).is_ok());
        let mut over = list.clone();
        over.push(json!(1));
        assert_eq!(
            violation(json!({"score": {"$in": over}})).field,
            "filter.score.$in[1000]"
        );
        let v = violation(json!({"score": {"$in": list}, "x": {"$exists": true}}));
        assert!(v.description.contains("1000 values"), "{}", v.description);
        let ors: Vec<Value> = (0..MAX_VALUES)
            .map(|i| json!({ "id": format!("u{i}") }))
            .collect();
        assert!(parse(json!({"$or": ors.clone()})).is_ok());
        let v = violation(json!({"$or": ors, "$and": [{"id": "x"}]}));
        assert_eq!(v.field, "filter.$or[999].id");
        // Empty objects and lists count too, so they cannot pile up for free.
        let empties: Vec<Value> = (0..=MAX_VALUES).map(|_| json!({})).collect();
        assert_eq!(violation(json!({"$or": empties})).field, "filter.$or[1000]");
        let lists: Vec<Value> = (0..=MAX_VALUES)
            .map(|_| json!({"a": {"$in": []}}))
            .collect();
        assert_eq!(
            violation(json!({"$or": lists})).field,
            "filter.$or[1000].a.$in"
        );
    }

    #[test]
    fn hostile_keys_are_data() {
        let f = parse(json!({
            "'; DROP TABLE users; --": 1.0,
            "custom.$ne": {"$ne": "x"},
            "a.b;--": {"$exists": false},
            "\\": "\\%_",
        }))
        .expect("valid");
        let parts = flatten(f);
        assert!(parts.contains(&leaf(
            custom(&["'; DROP TABLE users; --"]),
            Op::Eq(num(1.0))
        )));
        assert!(parts.contains(&leaf(custom(&["$ne"]), Op::Ne(Scalar::Text("x".into())))));
        assert!(parts.contains(&leaf(custom(&["a", "b;--"]), Op::Exists(false))));
    }
}
