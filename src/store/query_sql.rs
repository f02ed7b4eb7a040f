//! The SQL of `QueryUsers`: a checked `UserQuery` turned into one SELECT for SQLite or PostgreSQL.
//!
//! Rules every piece below follows:
//! - Every value of the request is a bound parameter, field names included: custom key paths are
//!   bound (SQLite: a JSON path `$."a"."b"`; PostgreSQL: one text parameter per `->` step). The
//!   only text spliced into the SQL is this file's own constants.
//! - Every filter leaf evaluates to TRUE or FALSE, never NULL (`x IS NOT NULL AND ...` guards on
//!   nullable columns, `COALESCE(..., FALSE)` around JSON tests), so `NOT` is exact: `$ne`, `$nin`
//!   and `$nor` are negations and match users whose key is missing or NULL.
//! - Custom values only compare within one JSON type (a number never matches a string).
//! - NULL (and a missing or JSON-null custom key) is the lowest value: `NULLS FIRST` ascending,
//!   `NULLS LAST` descending, and the keyset condition after a page token mirrors exactly that
//!   order, so a token walk returns every row once. NOT NULL columns get no NULLS clause and no
//!   IS NOT NULL guard, which keeps their indexes usable for the order and the filter.
//! - A custom sort key is four ORDER BY columns (its type's rank, then its string, number or
//!   boolean value, each NULL for other types), so that values of mixed JSON types sort alike
//!   on both databases (`domain::query::compare_custom`); the keyset condition walks them as
//!   any other columns.
//! - AND/OR chains are written as balanced trees: SQLite refuses expressions deeper than 1000,
//!   which a flat chain of 1000 filter values would be.
use sea_orm::{DatabaseBackend, Statement, Value};
use serde_json::{Number, Value as Json};

use super::sql_text::SqlText;

use crate::domain::filter::{Builtin, Cmp, Field, Filter, Kind, Op, Scalar, State};
use crate::domain::presence::AsOf;
use crate::domain::query::{SortKey, UserQuery, custom_type_rank};
use crate::error::Error;

const TRUE: &str = "(1 = 1)";
const FALSE: &str = "(1 = 0)";

/// `SELECT <the users columns>, <what each user owns> FROM users WHERE <not deleted> [AND <not deactivated>] AND <filter> [AND <after the
/// cursor>] ORDER BY <keys> LIMIT <limit + 1> OFFSET <offset>`: one row more than the page so the
/// caller knows whether a next page exists.
/// `as_of` is the instant the query runs: `banned`, `shadow_banned` and `online` are judged at it.
pub fn select_users(
    query: &UserQuery,
    backend: DatabaseBackend,
    as_of: AsOf,
) -> Result<Statement, Error> {
    let dialect = match backend {
        DatabaseBackend::Sqlite => Dialect::Sqlite,
        DatabaseBackend::Postgres => Dialect::Postgres,
        other => {
            return Err(Error::Internal(format!(
                "QueryUsers does not support {other:?}"
            )));
        }
    };
    let mut sql = Sql {
        dialect,
        out: SqlText::with_capacity(backend, 512, 0),
        as_of,
    };
    sql.push("SELECT ");
    sql.push(super::user_rows::user_columns());
    sql.push(", ");
    sql.push(super::user_rows::OWNS_COLUMNS);
    sql.push(" FROM users WHERE users.deleted_at IS NULL");
    if !query.include_deactivated {
        sql.push(" AND users.deactivated_at IS NULL");
    }
    if query.filter != Filter::All {
        sql.push(" AND ");
        sql.filter(&query.filter)?;
    }
    if let Some(cursor) = &query.cursor {
        if cursor.values.len() != query.sort.len() {
            return Err(Error::Internal(
                "page cursor does not match the sort".into(),
            ));
        }
        sql.push(" AND ");
        sql.after(
            &columns(&query.sort),
            &column_values(&query.sort, &cursor.values),
        )?;
    }
    sql.push(" ORDER BY ");
    for (i, column) in columns(&query.sort).iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.order_column(column);
    }
    sql.push(" LIMIT ");
    sql.bind(Value::BigInt(Some(to_i64(query.limit.saturating_add(1)))));
    sql.push(" OFFSET ");
    sql.bind(Value::BigInt(Some(to_i64(query.offset))));
    Ok(sql.out.into_statement())
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Postgres,
}

/// The statement being written (see `SqlText`), and how to write it.
struct Sql {
    dialect: Dialect,
    out: SqlText,
    as_of: AsOf,
}

/// Which side of a key the rows after the cursor are on.
fn beyond(descending: bool) -> &'static str {
    if descending { " < " } else { " > " }
}

fn cmp_sql(cmp: Cmp) -> &'static str {
    match cmp {
        Cmp::Gt => " > ",
        Cmp::Gte => " >= ",
        Cmp::Lt => " < ",
        Cmp::Lte => " <= ",
    }
}

fn column(b: Builtin) -> &'static str {
    match b {
        Builtin::Id => "users.id",
        Builtin::Name => "users.name",
        Builtin::Image => "users.image",
        Builtin::Role => "users.role",
        Builtin::Language => "users.language",
        Builtin::Invisible => "users.invisible",
        Builtin::CreatedAt => "users.created_at",
        Builtin::UpdatedAt => "users.updated_at",
        Builtin::DeactivatedAt => "users.deactivated_at",
        Builtin::LastActive => "users.last_active",
    }
}

/// The common direction of `keys` when none of them (nor their cursor value) can be NULL.
fn uniform_not_null(columns: &[Column<'_>], values: &[Json]) -> Option<bool> {
    let descending = columns.first()?.descending;
    let uniform = columns.len() == values.len()
        && columns
            .iter()
            .zip(values)
            .all(|(c, v)| c.descending == descending && !c.nullable && !v.is_null());
    uniform.then_some(descending)
}

/// What one ORDER BY column sorts by.
#[derive(Debug, Clone, Copy)]
enum Part<'a> {
    Builtin(Builtin),
    Teams,
    /// A custom value's `custom_type_rank` (NULL for a missing key or a JSON null).
    Rank(&'a [String]),
    /// The custom value where it is a string, else NULL; likewise for the next two.
    Text(&'a [String]),
    Number(&'a [String]),
    Bool(&'a [String]),
}

#[derive(Debug, Clone, Copy)]
struct Column<'a> {
    part: Part<'a>,
    descending: bool,
    nullable: bool,
}

/// The ORDER BY columns of the sort keys: one per key, four per custom key.
fn columns(keys: &[SortKey]) -> Vec<Column<'_>> {
    let mut columns = Vec::with_capacity(keys.len() * 4);
    for key in keys {
        let column = |part| Column {
            part,
            descending: key.descending,
            nullable: key.field.nullable(),
        };
        match &key.field {
            Field::Builtin(b) => columns.push(column(Part::Builtin(*b))),
            Field::Teams => columns.push(column(Part::Teams)),
            Field::Custom(path) => columns.extend(
                [
                    Part::Rank(path),
                    Part::Text(path),
                    Part::Number(path),
                    Part::Bool(path),
                ]
                .map(column),
            ),
        }
    }
    columns
}

/// The cursor's value for each of `columns(keys)`: a custom value is spread over its four.
fn column_values(keys: &[SortKey], values: &[Json]) -> Vec<Json> {
    let mut out = Vec::with_capacity(values.len() * 4);
    for (key, value) in keys.iter().zip(values) {
        if let Field::Custom(_) = key.field {
            let only = |keep: bool| if keep { value.clone() } else { Json::Null };
            out.push(custom_type_rank(value).map_or(Json::Null, Json::from));
            out.push(only(value.is_string()));
            out.push(only(value.is_number()));
            out.push(only(value.is_boolean()));
        } else {
            out.push(value.clone());
        }
    }
    out
}

/// `%`, `_` and `\` are literal in an autocomplete prefix.
fn like_prefix(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// The SQLite JSON path of a custom key: each segment a quoted label, escaped as a JSON string,
/// because SQLite unescapes quoted labels before comparing them with object keys (a backslash in
/// a key must be doubled). The filter parser already refuses `"` and control characters.
fn sqlite_path(path: &[String]) -> String {
    let mut p = String::from("$");
    for segment in path {
        p.push('.');
        p.push_str(&Json::String(segment.clone()).to_string());
    }
    p
}

fn internal(what: &str) -> Error {
    Error::Internal(format!("query SQL: {what}"))
}

/// A JSON number as SQLite compares it: integers stay exact, the rest are doubles.
fn sqlite_number(n: &Number) -> Result<Value, Error> {
    match n.as_i64() {
        Some(i) => Ok(Value::BigInt(Some(i))),
        None => n
            .as_f64()
            .map(|f| Value::Double(Some(f)))
            .ok_or_else(|| internal("number")),
    }
}

/// A custom comparison value as SQLite's `json_extract` yields it (booleans are 0 and 1).
fn sqlite_scalar(v: &Scalar) -> Result<Value, Error> {
    match v {
        Scalar::Bool(b) => Ok(Value::BigInt(Some(i64::from(*b)))),
        Scalar::Number(n) => sqlite_number(n),
        Scalar::Text(s) => Ok(Value::String(Some(s.clone()))),
        Scalar::Instant(i) => Ok(Value::BigInt(Some(*i))),
        Scalar::Null => Err(internal("NULL comparison value")),
    }
}

/// The JSON text of a custom comparison value, for `CAST(? AS jsonb)`.
fn json_text(v: &Scalar) -> String {
    match v {
        Scalar::Null => "null".into(),
        Scalar::Bool(b) => b.to_string(),
        Scalar::Number(n) => n.to_string(),
        Scalar::Text(s) => Json::String(s.clone()).to_string(),
        Scalar::Instant(i) => i.to_string(),
    }
}

/// What `json_type` (SQLite) reports for values of the scalar's JSON type.
fn sqlite_types(v: &Scalar) -> &'static str {
    match v {
        Scalar::Bool(_) => "('true', 'false')",
        Scalar::Text(_) => "('text')",
        _ => "('integer', 'real')",
    }
}

/// What `jsonb_typeof` (PostgreSQL) reports for values of the scalar's JSON type.
fn postgres_type(v: &Scalar) -> &'static str {
    match v {
        Scalar::Bool(_) => "'boolean'",
        Scalar::Text(_) => "'string'",
        _ => "'number'",
    }
}

/// A built-in column's comparison value.
fn builtin_value(b: Builtin, v: &Scalar) -> Result<Value, Error> {
    match (b.kind(), v) {
        (Kind::Text, Scalar::Text(s)) => Ok(Value::String(Some(s.clone()))),
        (Kind::Bool, Scalar::Bool(x)) => Ok(Value::Bool(Some(*x))),
        (Kind::Instant, Scalar::Instant(i)) => Ok(Value::BigInt(Some(*i))),
        _ => Err(internal("value type does not fit the column")),
    }
}

/// The `$in` values of a custom key as a few tests to OR: NULL (missing or JSON null), then on
/// SQLite one test per JSON type (its `json_extract` loses the type, so each list needs its own
/// type guard), on PostgreSQL one `IN` list (jsonb equality is typed already).
struct Groups<'a> {
    null: bool,
    /// SQLite only: the booleans, tested through `json_type` alone.
    bools: Vec<bool>,
    /// Non-empty lists, each of one JSON type on SQLite.
    lists: Vec<Vec<&'a Scalar>>,
}

enum Group<'a> {
    Null,
    Bools(&'a [bool]),
    List(&'a [&'a Scalar]),
}

impl<'a> Groups<'a> {
    fn of(values: &'a [Scalar], dialect: Dialect) -> Self {
        let present = values.iter().filter(|v| **v != Scalar::Null);
        let mut g = Groups {
            null: values.contains(&Scalar::Null),
            bools: vec![],
            lists: vec![],
        };
        match dialect {
            Dialect::Sqlite => {
                let (mut numbers, mut texts) = (vec![], vec![]);
                for v in present {
                    match v {
                        Scalar::Bool(b) => g.bools.push(*b),
                        Scalar::Text(_) => texts.push(v),
                        _ => numbers.push(v),
                    }
                }
                g.lists = [numbers, texts]
                    .into_iter()
                    .filter(|l| !l.is_empty())
                    .collect();
            }
            Dialect::Postgres => {
                let all: Vec<&Scalar> = present.collect();
                if !all.is_empty() {
                    g.lists.push(all);
                }
            }
        }
        g
    }

    fn list(&'a self) -> Vec<Group<'a>> {
        let mut list = Vec::with_capacity(4);
        if self.null {
            list.push(Group::Null);
        }
        if !self.bools.is_empty() {
            list.push(Group::Bools(&self.bools));
        }
        list.extend(self.lists.iter().map(|l| Group::List(l)));
        list
    }
}

impl Sql {
    fn push(&mut self, s: &str) {
        self.out.push(s);
    }

    /// Appends a placeholder for `value`.
    fn bind(&mut self, value: Value) {
        self.out.bind(value);
    }

    fn bind_text(&mut self, s: impl Into<String>) {
        self.bind(Value::String(Some(s.into())));
    }

    /// `CAST(? AS jsonb)` (PostgreSQL) of a JSON text.
    fn bind_jsonb(&mut self, json: String) {
        self.push("CAST(");
        self.bind_text(json);
        self.push(" AS jsonb)");
    }

    /// `(? , ? , ...)`
    fn bind_list<T>(
        &mut self,
        items: &[T],
        mut write: impl FnMut(&mut Self, &T) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.push("(");
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            write(self, item)?;
        }
        self.push(")");
        Ok(())
    }

    /// `items` joined by `op` as a balanced tree; `empty` when there are none.
    fn join<T>(
        &mut self,
        items: &[T],
        op: &str,
        empty: &str,
        write: &impl Fn(&mut Self, &T) -> Result<(), Error>,
    ) -> Result<(), Error> {
        match items {
            [] => self.push(empty),
            [one] => write(self, one)?,
            _ => {
                let (left, right) = items.split_at(items.len() / 2);
                self.push("(");
                self.join(left, op, empty, write)?;
                self.push(op);
                self.join(right, op, empty, write)?;
                self.push(")");
            }
        }
        Ok(())
    }

    /// `(NOT <inner>)`: exact because every inner condition is TRUE or FALSE.
    fn not(&mut self, inner: impl FnOnce(&mut Self) -> Result<(), Error>) -> Result<(), Error> {
        self.push("(NOT ");
        inner(self)?;
        self.push(")");
        Ok(())
    }

    fn filter(&mut self, filter: &Filter) -> Result<(), Error> {
        match filter {
            Filter::All => self.push(TRUE),
            Filter::And(all) => self.join(all, " AND ", TRUE, &Self::filter)?,
            Filter::Or(any) => self.join(any, " OR ", FALSE, &Self::filter)?,
            Filter::Nor(none) => self.not(|s| s.join(none, " OR ", FALSE, &Self::filter))?,
            Filter::Leaf {
                field: Field::Builtin(b),
                op,
            } => self.builtin_leaf(*b, op)?,
            Filter::Leaf {
                field: Field::Teams,
                op,
            } => self.teams_leaf(op)?,
            Filter::Leaf {
                field: Field::Custom(path),
                op,
            } => self.custom_leaf(path, op)?,
            Filter::State { state, is: true } => self.state(*state),
            Filter::State { state, is: false } => self.not(|s| {
                s.state(*state);
                Ok(())
            })?,
        }
        Ok(())
    }

    /// Whether the user is in `state` at `as_of`, as a read shows it (`Ban::in_force`,
    /// `Presence::online`); TRUE or FALSE, never NULL.
    fn state(&mut self, state: State) {
        let at = self.as_of.at;
        match state {
            State::Banned | State::ShadowBanned => {
                self.push("(users.banned_at IS NOT NULL AND ");
                self.push(if state == State::Banned {
                    "NOT users.shadow_banned"
                } else {
                    "users.shadow_banned"
                });
                self.push(" AND (users.ban_expires IS NULL OR users.ban_expires > ");
                self.bind(Value::BigInt(Some(at)));
                self.push("))");
            }
            State::Online => {
                self.push("(NOT users.invisible AND users.last_active IS NOT NULL AND ");
                self.push("users.last_active <= ");
                self.bind(Value::BigInt(Some(at)));
                self.push(" AND users.last_active >= ");
                self.bind(Value::BigInt(Some(self.as_of.presence.online_since(at))));
                self.push(")");
            }
        }
    }

    // ---- built-in columns ----

    /// `(col IS NOT NULL AND <body>)` on nullable columns, `(<body>)` otherwise.
    fn guarded(
        &mut self,
        b: Builtin,
        body: impl FnOnce(&mut Self) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.push("(");
        if b.nullable() {
            self.push(column(b));
            self.push(" IS NOT NULL AND ");
        }
        body(self)?;
        self.push(")");
        Ok(())
    }

    fn builtin_leaf(&mut self, b: Builtin, op: &Op) -> Result<(), Error> {
        let col = column(b);
        match op {
            Op::Eq(v) => self.builtin_eq(b, v),
            Op::Ne(v) => self.not(|s| s.builtin_eq(b, v)),
            Op::Cmp(cmp, v) => self.guarded(b, |s| {
                s.push(col);
                s.push(cmp_sql(*cmp));
                s.bind(builtin_value(b, v)?);
                Ok(())
            }),
            Op::In(vs) => self.builtin_in(b, vs),
            Op::Nin(vs) => self.not(|s| s.builtin_in(b, vs)),
            Op::Exists(exists) => {
                match (b.nullable(), exists) {
                    (true, true) => self.push(&format!("({col} IS NOT NULL)")),
                    (true, false) => self.push(&format!("({col} IS NULL)")),
                    (false, true) => self.push(TRUE),
                    (false, false) => self.push(FALSE),
                }
                Ok(())
            }
            Op::Autocomplete(prefix) => self.guarded(b, |s| {
                s.push(&format!("lower({col}) LIKE lower("));
                s.bind_text(like_prefix(prefix));
                s.push(") ESCAPE '\\'");
                Ok(())
            }),
        }
    }

    fn builtin_eq(&mut self, b: Builtin, v: &Scalar) -> Result<(), Error> {
        if *v == Scalar::Null {
            self.push(&format!("({} IS NULL)", column(b)));
            return Ok(());
        }
        self.guarded(b, |s| {
            s.push(column(b));
            s.push(" = ");
            s.bind(builtin_value(b, v)?);
            Ok(())
        })
    }

    /// `(col IS NULL OR (col IS NOT NULL AND col IN (...)))`, each part only when needed.
    fn builtin_in(&mut self, b: Builtin, values: &[Scalar]) -> Result<(), Error> {
        let has_null = values.contains(&Scalar::Null);
        let present: Vec<&Scalar> = values.iter().filter(|v| **v != Scalar::Null).collect();
        if present.is_empty() {
            return if has_null {
                self.builtin_eq(b, &Scalar::Null)
            } else {
                self.false_()
            };
        }
        self.push("(");
        if has_null {
            self.push(column(b));
            self.push(" IS NULL OR ");
        }
        self.guarded(b, |s| {
            s.push(column(b));
            s.push(" IN ");
            s.bind_list(&present, |s, v| {
                s.bind(builtin_value(b, v)?);
                Ok(())
            })
        })?;
        self.push(")");
        Ok(())
    }

    fn false_(&mut self) -> Result<(), Error> {
        self.push(FALSE);
        Ok(())
    }

    // ---- teams ----

    fn teams_leaf(&mut self, op: &Op) -> Result<(), Error> {
        match op {
            Op::Eq(v) => self.in_any_team(std::slice::from_ref(v)),
            Op::Ne(v) => self.not(|s| s.in_any_team(std::slice::from_ref(v))),
            Op::In(vs) => self.in_any_team(vs),
            Op::Nin(vs) => self.not(|s| s.in_any_team(vs)),
            // Every user has a (possibly empty) team list.
            Op::Exists(true) => self.push_ok(TRUE),
            Op::Exists(false) => self.push_ok(FALSE),
            Op::Cmp(..) | Op::Autocomplete(_) => Err(internal("operator not supported on teams")),
        }
    }

    fn push_ok(&mut self, s: &str) -> Result<(), Error> {
        self.push(s);
        Ok(())
    }

    /// Whether the user is in any of `teams`. SQLite scans the (short) array; PostgreSQL uses
    /// `@>`, which a GIN index on `teams` can serve (the bare `?` operator would clash with
    /// placeholders).
    fn in_any_team(&mut self, teams: &[Scalar]) -> Result<(), Error> {
        let names: Vec<&str> = teams
            .iter()
            .map(|t| match t {
                Scalar::Text(s) => Ok(s.as_str()),
                _ => Err(internal("team names are strings")),
            })
            .collect::<Result<_, _>>()?;
        if names.is_empty() {
            return self.false_();
        }
        match self.dialect {
            Dialect::Sqlite => {
                self.push("EXISTS (SELECT 1 FROM json_each(users.teams) WHERE json_each.value IN ");
                self.bind_list(&names, |s, name| {
                    s.bind_text(*name);
                    Ok(())
                })?;
                self.push(")");
                Ok(())
            }
            Dialect::Postgres => self.join(&names, " OR ", FALSE, &|s, name| {
                s.push("(users.teams @> ");
                s.bind_jsonb(Json::Array(vec![Json::String((*name).to_owned())]).to_string());
                s.push(")");
                Ok(())
            }),
        }
    }

    // ---- custom keys ----

    /// The custom value at `path`: SQLite `json_extract` (SQL NULL when missing or JSON null,
    /// booleans as 0/1), PostgreSQL a jsonb (SQL NULL only when missing).
    fn custom_value(&mut self, path: &[String]) {
        match self.dialect {
            Dialect::Sqlite => {
                self.push("json_extract(users.custom, ");
                self.bind_text(sqlite_path(path));
                self.push(")");
            }
            Dialect::Postgres => {
                self.push("(users.custom");
                for segment in path {
                    self.push(" -> ");
                    self.bind_text(segment.as_str());
                }
                self.push(")");
            }
        }
    }

    /// The JSON type name at `path`, SQL NULL when the key is missing.
    fn custom_type(&mut self, path: &[String]) {
        match self.dialect {
            Dialect::Sqlite => {
                self.push("json_type(users.custom, ");
                self.bind_text(sqlite_path(path));
                self.push(")");
            }
            Dialect::Postgres => {
                self.push("jsonb_typeof");
                self.custom_value(path);
            }
        }
    }

    /// `(COALESCE(<body>, FALSE))`: a missing key makes the body NULL, which must read FALSE.
    fn total(&mut self, body: impl FnOnce(&mut Self) -> Result<(), Error>) -> Result<(), Error> {
        self.push("(COALESCE(");
        body(self)?;
        self.push(", FALSE))");
        Ok(())
    }

    fn custom_leaf(&mut self, path: &[String], op: &Op) -> Result<(), Error> {
        match op {
            Op::Eq(v) => self.custom_eq(path, v),
            Op::Ne(v) => self.not(|s| s.custom_eq(path, v)),
            Op::Cmp(cmp, v) => self.custom_cmp(path, *cmp, v),
            Op::In(vs) => self.custom_in(path, vs),
            Op::Nin(vs) => self.not(|s| s.custom_in(path, vs)),
            Op::Exists(exists) => {
                self.push("(");
                // SQLite's json_type is 'null' for a JSON null, PostgreSQL's `->` a jsonb null:
                // both present.
                match self.dialect {
                    Dialect::Sqlite => self.custom_type(path),
                    Dialect::Postgres => self.custom_value(path),
                }
                self.push(if *exists {
                    " IS NOT NULL)"
                } else {
                    " IS NULL)"
                });
                Ok(())
            }
            Op::Autocomplete(_) => Err(internal("$autocomplete on a custom key")),
        }
    }

    /// `$eq: null` matches a missing key or a JSON null; other values their own type only.
    fn custom_eq(&mut self, path: &[String], v: &Scalar) -> Result<(), Error> {
        match (self.dialect, v) {
            (_, Scalar::Null) => {
                self.push("(COALESCE(");
                self.custom_type(path);
                self.push(", 'null') = 'null')");
                Ok(())
            }
            (Dialect::Sqlite, Scalar::Bool(b)) => self.total(|s| {
                s.custom_type(path);
                s.push(if *b { " = 'true'" } else { " = 'false'" });
                Ok(())
            }),
            (Dialect::Sqlite, _) => self.custom_cmp_body(path, " = ", v),
            (Dialect::Postgres, _) => self.total(|s| {
                s.custom_value(path);
                s.push(" = ");
                s.bind_jsonb(json_text(v));
                Ok(())
            }),
        }
    }

    fn custom_cmp(&mut self, path: &[String], cmp: Cmp, v: &Scalar) -> Result<(), Error> {
        self.custom_cmp_body(path, cmp_sql(cmp), v)
    }

    /// `COALESCE(<type is v's type> AND <value> <op> v, FALSE)`.
    fn custom_cmp_body(&mut self, path: &[String], op: &str, v: &Scalar) -> Result<(), Error> {
        self.total(|s| {
            s.custom_type(path);
            match s.dialect {
                Dialect::Sqlite => {
                    s.push(" IN ");
                    s.push(sqlite_types(v));
                    s.push(" AND ");
                    s.custom_value(path);
                    s.push(op);
                    s.bind(sqlite_scalar(v)?);
                }
                Dialect::Postgres => {
                    s.push(" = ");
                    s.push(postgres_type(v));
                    s.push(" AND ");
                    s.custom_value(path);
                    s.push(op);
                    s.bind_jsonb(json_text(v));
                }
            }
            Ok(())
        })
    }

    /// One `IN` list per JSON type (a flat OR of up to 1000 tests would be too deep for SQLite).
    fn custom_in(&mut self, path: &[String], values: &[Scalar]) -> Result<(), Error> {
        let groups = Groups::of(values, self.dialect);
        self.join(&groups.list(), " OR ", FALSE, &|s, group| match group {
            Group::Null => s.custom_eq(path, &Scalar::Null),
            Group::Bools(bools) => s.sqlite_in_bools(path, bools),
            Group::List(list) => s.custom_in_list(path, list),
        })
    }

    /// SQLite: `json_type` names the boolean, so no value comparison is needed.
    fn sqlite_in_bools(&mut self, path: &[String], bools: &[bool]) -> Result<(), Error> {
        let names = match (bools.contains(&true), bools.contains(&false)) {
            (true, true) => "('true', 'false')",
            (true, false) => "('true')",
            _ => "('false')",
        };
        self.total(|s| {
            s.custom_type(path);
            s.push(" IN ");
            s.push(names);
            Ok(())
        })
    }

    /// Non-null values, of one JSON type on SQLite.
    fn custom_in_list(&mut self, path: &[String], same: &[&Scalar]) -> Result<(), Error> {
        let Some(first) = same.first() else {
            return self.false_();
        };
        self.total(|s| {
            match s.dialect {
                Dialect::Sqlite => {
                    s.custom_type(path);
                    s.push(" IN ");
                    s.push(sqlite_types(first));
                    s.push(" AND ");
                    s.custom_value(path);
                    s.push(" IN ");
                    s.bind_list(same, |s, v| {
                        s.bind(sqlite_scalar(v)?);
                        Ok(())
                    })?;
                }
                Dialect::Postgres => {
                    s.custom_value(path);
                    s.push(" IN ");
                    s.bind_list(same, |s, v| {
                        s.bind_jsonb(json_text(v));
                        Ok(())
                    })?;
                }
            }
            Ok(())
        })
    }

    // ---- order and keyset ----

    /// The expression a column sorts by. Built-in keys sort by their column, `teams` by its JSON
    /// text (SQLite) or jsonb (PostgreSQL). A custom key sorts by four columns, each NULL unless
    /// the value has its type (and all NULL for a missing key or a JSON null), so that both
    /// databases order mixed types alike (`domain::query::compare_custom`): the type's rank,
    /// then strings by their bytes (COLLATE "C" on PostgreSQL; SQLite compares bytes), numbers by
    /// value, booleans `false` first.
    fn sort_expr(&mut self, part: Part<'_>) {
        match (part, self.dialect) {
            (Part::Builtin(b), _) => self.push(column(b)),
            (Part::Teams, Dialect::Sqlite) => self.push("json(users.teams)"),
            (Part::Teams, Dialect::Postgres) => self.push("users.teams"),
            (Part::Rank(path), Dialect::Sqlite) => {
                self.push("(CASE ");
                self.custom_type(path);
                self.push(
                    " WHEN 'text' THEN 1 WHEN 'integer' THEN 2 WHEN 'real' THEN 2 \
                     WHEN 'true' THEN 3 WHEN 'false' THEN 3 WHEN 'array' THEN 4 \
                     WHEN 'object' THEN 5 END)",
                );
            }
            (Part::Rank(path), Dialect::Postgres) => {
                self.push("(CASE ");
                self.custom_type(path);
                self.push(
                    " WHEN 'string' THEN 1 WHEN 'number' THEN 2 WHEN 'boolean' THEN 3 \
                     WHEN 'array' THEN 4 WHEN 'object' THEN 5 END)",
                );
            }
            (Part::Text(path), Dialect::Sqlite) => self.typed_value(path, "('text')", ""),
            (Part::Number(path), Dialect::Sqlite) => {
                self.typed_value(path, "('integer', 'real')", "");
            }
            (Part::Bool(path), Dialect::Sqlite) => self.typed_value(path, "('true', 'false')", ""),
            (Part::Text(path), Dialect::Postgres) => {
                self.typed_value(path, "('string')", " #>> '{}'");
                self.push(" COLLATE \"C\"");
            }
            (Part::Number(path), Dialect::Postgres) => {
                self.typed_value(path, "('number')", "::numeric");
            }
            (Part::Bool(path), Dialect::Postgres) => {
                self.typed_value(path, "('boolean')", "::boolean");
            }
        }
    }

    /// `(CASE WHEN <type at path> IN <types> THEN <value at path><cast> END)`: the value where it
    /// has one of `types`, NULL otherwise.
    fn typed_value(&mut self, path: &[String], types: &str, cast: &str) {
        self.push("(CASE WHEN ");
        self.custom_type(path);
        self.push(" IN ");
        self.push(types);
        self.push(" THEN ");
        match self.dialect {
            Dialect::Sqlite => self.custom_value(path),
            Dialect::Postgres => {
                self.push("(");
                self.custom_value(path);
                self.push(cast);
                self.push(")");
            }
        }
        self.push(" END)");
    }

    fn order_column(&mut self, column: &Column<'_>) {
        self.sort_expr(column.part);
        self.push(if column.descending { " DESC" } else { " ASC" });
        if column.nullable {
            self.push(if column.descending {
                " NULLS LAST"
            } else {
                " NULLS FIRST"
            });
        }
    }

    /// A cursor value in the form `sort_expr` compares with (never NULL: the keyset condition
    /// tests NULL with `IS NULL`).
    fn bind_cursor(&mut self, part: Part<'_>, value: &Json) -> Result<(), Error> {
        let mismatch = || internal("cursor value does not fit the sort key");
        match (part, self.dialect) {
            (Part::Builtin(b), _) => {
                let v = match (b.kind(), value) {
                    (Kind::Text, Json::String(s)) => Value::String(Some(s.clone())),
                    (Kind::Bool, Json::Bool(x)) => Value::Bool(Some(*x)),
                    (Kind::Instant, Json::Number(n)) => {
                        Value::BigInt(Some(n.as_i64().ok_or_else(|| internal("cursor instant"))?))
                    }
                    _ => return Err(internal("cursor value does not fit the column")),
                };
                self.bind(v);
            }
            (Part::Teams, Dialect::Sqlite) => {
                self.push("json(");
                self.bind_text(value.to_string());
                self.push(")");
            }
            (Part::Teams, Dialect::Postgres) => self.bind_jsonb(value.to_string()),
            (Part::Rank(_), _) => {
                self.bind(Value::BigInt(Some(value.as_i64().ok_or_else(mismatch)?)));
            }
            (Part::Text(_), _) => {
                self.bind_text(value.as_str().ok_or_else(mismatch)?);
            }
            (Part::Number(_), Dialect::Sqlite) => {
                let Json::Number(n) = value else {
                    return Err(mismatch());
                };
                self.bind(sqlite_number(n)?);
            }
            (Part::Number(_), Dialect::Postgres) => {
                let Json::Number(n) = value else {
                    return Err(mismatch());
                };
                // As text, so that integers beyond 2^53 compare exactly.
                self.push("CAST(");
                self.bind_text(n.to_string());
                self.push(" AS numeric)");
            }
            (Part::Bool(_), Dialect::Sqlite) => {
                let x = value.as_bool().ok_or_else(mismatch)?;
                self.bind(Value::BigInt(Some(i64::from(x))));
            }
            (Part::Bool(_), Dialect::Postgres) => {
                self.bind(Value::Bool(Some(value.as_bool().ok_or_else(mismatch)?)));
            }
        }
        Ok(())
    }

    /// Rows strictly after the cursor in ORDER BY order. When every column is NOT NULL and sorted
    /// the same way (the default `created_at DESC, id DESC` included) that is a row comparison,
    /// `(a, b) < (?, ?)`, which both databases evaluate lexicographically and serve from a
    /// matching index; otherwise see `after_expanded`.
    fn after(&mut self, columns: &[Column<'_>], values: &[Json]) -> Result<(), Error> {
        let Some(descending) = uniform_not_null(columns, values) else {
            return self.after_expanded(columns, values);
        };
        self.push("((");
        for (i, column) in columns.iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.sort_expr(column.part);
        }
        self.push(")");
        self.push(beyond(descending));
        self.push("(");
        for (i, (column, value)) in columns.iter().zip(values).enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind_cursor(column.part, value)?;
        }
        self.push("))");
        Ok(())
    }

    /// Rows strictly after the cursor in ORDER BY order, NULL being the lowest value:
    /// ascending after v: `x > v OR (x = v AND rest)`; after NULL: `x IS NOT NULL OR (x IS NULL
    /// AND rest)`; descending after v: `x < v OR x IS NULL OR (x = v AND rest)`; after NULL:
    /// `x IS NULL AND rest`. The last column (always `id`, unique) has no `rest`.
    /// This condition is never negated, so a NULL comparison reading as "no" is what it should.
    fn after_expanded(&mut self, columns: &[Column<'_>], values: &[Json]) -> Result<(), Error> {
        let (Some((column, rest_columns)), Some((value, rest_values))) =
            (columns.split_first(), values.split_first())
        else {
            return self.false_();
        };
        let has_rest = !rest_columns.is_empty();
        let part = column.part;
        self.push("(");
        match (value.is_null(), column.descending) {
            (true, false) => {
                self.sort_expr(part);
                self.push(" IS NOT NULL");
                if has_rest {
                    self.push(" OR (");
                    self.sort_expr(part);
                    self.push(" IS NULL AND ");
                    self.after_expanded(rest_columns, rest_values)?;
                    self.push(")");
                }
            }
            (true, true) => {
                if has_rest {
                    self.sort_expr(part);
                    self.push(" IS NULL AND ");
                    self.after_expanded(rest_columns, rest_values)?;
                } else {
                    self.push(FALSE);
                }
            }
            (false, descending) => {
                self.sort_expr(part);
                self.push(beyond(descending));
                self.bind_cursor(part, value)?;
                if descending && column.nullable {
                    self.push(" OR ");
                    self.sort_expr(part);
                    self.push(" IS NULL");
                }
                if has_rest {
                    self.push(" OR (");
                    self.sort_expr(part);
                    self.push(" = ");
                    self.bind_cursor(part, value)?;
                    self.push(" AND ");
                    self.after_expanded(rest_columns, rest_values)?;
                    self.push(")");
                }
            }
        }
        self.push(")");
        Ok(())
    }
}

/// These run the generated SQL for real: on in-memory SQLite always, and on PostgreSQL too (a
/// fresh database, created and dropped per test) when `ROSTER_TEST_DB=postgres`; the server is
/// `ROSTER_TEST_POSTGRES_URL` or `postgres://postgres@127.0.0.1:5432`.
#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::future::Future;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use migrations::{Migrator, MigratorTrait};
    use sea_orm::{ConnectionTrait, Database, DatabaseConnection, QueryResult};
    use serde_json::{Map, json};

    use super::*;
    use crate::domain::query::{next_page_token, parse_query};
    use crate::domain::user::{User, UserFields};

    /// The instant these queries run at; no row here is banned or online.
    fn as_of() -> AsOf {
        AsOf {
            at: 0,
            presence: crate::domain::presence::Presence::default(),
        }
    }

    // ---- databases ----

    async fn sqlite() -> DatabaseConnection {
        let db = Database::connect("sqlite::memory:").await.expect("sqlite");
        Migrator::up(&db, None).await.expect("migrate sqlite");
        db
    }

    /// A PostgreSQL database that lives for one test.
    struct TempPostgres {
        admin: DatabaseConnection,
        name: String,
        db: DatabaseConnection,
    }

    impl TempPostgres {
        async fn create() -> Option<TempPostgres> {
            if std::env::var("ROSTER_TEST_DB").as_deref() != Ok("postgres") {
                return None;
            }
            static COUNT: AtomicUsize = AtomicUsize::new(0);
            let server = std::env::var("ROSTER_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or_default();
            let name = format!(
                "roster_query_sql_{}_{}_{nanos}",
                std::process::id(),
                COUNT.fetch_add(1, Ordering::Relaxed)
            );
            let admin = Database::connect(format!("{server}/postgres"))
                .await
                .expect("postgres");
            admin
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create db");
            let db = Database::connect(format!("{server}/{name}"))
                .await
                .expect("connect test db");
            Migrator::up(&db, None).await.expect("migrate postgres");
            Some(TempPostgres { admin, name, db })
        }

        async fn drop(self) {
            let _ = self.db.close().await;
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
            self.admin.execute_unprepared(&sql).await.expect("drop db");
        }
    }

    /// Runs `body` on SQLite, then on PostgreSQL when enabled (dropping its database even when
    /// the body fails).
    async fn on_every_db<F, Fut>(body: F)
    where
        F: Fn(DatabaseConnection) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        body(sqlite().await).await;
        if let Some(pg) = TempPostgres::create().await {
            let result = tokio::spawn(body(pg.db.clone())).await;
            pg.drop().await;
            if let Err(e) = result {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }

    // ---- rows ----

    #[derive(Clone)]
    struct Row {
        id: String,
        name: Option<String>,
        image: Option<String>,
        role: String,
        language: String,
        invisible: bool,
        custom: Json,
        teams: Vec<String>,
        created_at: i64,
        updated_at: i64,
        deactivated_at: Option<i64>,
        deleted_at: Option<i64>,
        last_active: Option<i64>,
    }

    fn row(id: &str, created_at: i64) -> Row {
        Row {
            id: id.into(),
            name: None,
            image: None,
            role: "user".into(),
            language: "en".into(),
            invisible: false,
            custom: json!({}),
            teams: vec![],
            created_at,
            updated_at: created_at,
            deactivated_at: None,
            deleted_at: None,
            last_active: None,
        }
    }

    async fn insert(db: &DatabaseConnection, rows: &[Row]) {
        let backend = db.get_database_backend();
        for r in rows {
            let mut sql = SqlText::new(backend);
            sql.push(
                "INSERT INTO users (id, name, image, role, custom, language, invisible, teams, \
                 teams_role, created_at, updated_at, deactivated_at, deleted_at, last_active) \
                 VALUES ",
            );
            sql.row([
                (r.id.clone().into(), ""),
                (r.name.clone().into(), ""),
                (r.image.clone().into(), ""),
                (r.role.clone().into(), ""),
                (r.custom.to_string().into(), "::jsonb"),
                (r.language.clone().into(), ""),
                (r.invisible.into(), ""),
                (json!(r.teams).to_string().into(), "::jsonb"),
                ("{}".into(), "::jsonb"),
                (r.created_at.into(), ""),
                (r.updated_at.into(), ""),
                (r.deactivated_at.into(), ""),
                (r.deleted_at.into(), ""),
                (r.last_active.into(), ""),
            ]);
            db.execute_raw(sql.into_statement()).await.expect("insert");
        }
    }

    fn json_column(r: &QueryResult, col: &str) -> Json {
        r.try_get::<Json>("", col)
            .or_else(|_| {
                r.try_get::<String>("", col)
                    .map(|s| serde_json::from_str(&s).unwrap_or(Json::Null))
            })
            .expect("json column")
    }

    fn user_from(r: &QueryResult) -> User {
        let get_s = |c: &str| r.try_get::<String>("", c).expect(c);
        let get_os = |c: &str| r.try_get::<Option<String>>("", c).expect(c);
        let get_oi = |c: &str| r.try_get::<Option<i64>>("", c).expect(c);
        let mut fields = UserFields::with_id(get_s("id"));
        fields.name = get_os("name");
        fields.image = get_os("image");
        fields.role = get_s("role");
        fields.language = get_s("language");
        fields.invisible = r.try_get::<bool>("", "invisible").expect("invisible");
        fields.custom = match json_column(r, "custom") {
            Json::Object(map) => map,
            _ => Map::new(),
        };
        fields.teams = serde_json::from_value(json_column(r, "teams")).expect("teams");
        let mut user = User::new(
            fields,
            r.try_get::<i64>("", "created_at").expect("created_at"),
        );
        user.updated_at = r.try_get::<i64>("", "updated_at").expect("updated_at");
        user.deactivated_at = get_oi("deactivated_at");
        user.deleted_at = get_oi("deleted_at");
        user.last_active = get_oi("last_active");
        user
    }

    // ---- queries ----

    struct Ask<'a> {
        filter: Json,
        sort: &'a [(&'a str, i32)],
        limit: u32,
        offset: u32,
        token: String,
        include_deactivated: bool,
    }

    impl Default for Ask<'_> {
        fn default() -> Self {
            Ask {
                filter: json!({}),
                sort: &[],
                limit: 100,
                offset: 0,
                token: String::new(),
                include_deactivated: false,
            }
        }
    }

    /// One page: the users and the next page token.
    async fn page(db: &DatabaseConnection, ask: &Ask<'_>) -> (Vec<User>, Option<String>) {
        let sort: Vec<(String, i32)> = ask.sort.iter().map(|(f, d)| (f.to_string(), *d)).collect();
        let query = parse_query(
            ask.filter.as_object(),
            &sort,
            ask.limit,
            ask.offset,
            &ask.token,
            ask.include_deactivated,
        )
        .expect("valid query");
        let statement =
            select_users(&query, db.get_database_backend(), as_of()).expect("statement");
        let rows = db.query_all_raw(statement.clone()).await;
        let rows = rows.unwrap_or_else(|e| panic!("{e}\n{}", statement.sql));
        let mut users: Vec<User> = rows.iter().map(user_from).collect();
        let limit = usize::try_from(query.limit).expect("small");
        let token = (users.len() > limit).then(|| {
            users.truncate(limit);
            users
                .last()
                .map(|last| next_page_token(&query, last))
                .unwrap_or_default()
        });
        (users, token)
    }

    fn ids(users: &[User]) -> Vec<String> {
        users.iter().map(|u| u.fields.id.clone()).collect()
    }

    /// The ids a filter matches, sorted.
    async fn matching(
        db: &DatabaseConnection,
        filter: Json,
        include_deactivated: bool,
    ) -> Vec<String> {
        let ask = Ask {
            filter,
            include_deactivated,
            ..Ask::default()
        };
        let mut found = ids(&page(db, &ask).await.0);
        found.sort();
        found
    }

    // ---- filters ----

    fn filter_rows() -> Vec<Row> {
        let mut u1 = row("u1", 1000);
        u1.name = Some("Alice".into());
        u1.image = Some("img1".into());
        u1.role = "admin".into();
        u1.teams = vec!["red".into(), "blue".into()];
        u1.custom =
            json!({"score": 10, "tier": "gold", "vip": true, "nested": {"a": 1}, "tags": ["x"]});
        u1.last_active = Some(5000);
        let mut u2 = row("u2", 2000);
        u2.name = Some("bob".into());
        u2.language = "fr".into();
        u2.teams = vec!["blue".into()];
        u2.custom = json!({"score": 5.5, "tier": "silver", "vip": false});
        let mut u3 = row("u3", 3000);
        u3.invisible = true;
        u3.custom = json!({"score": "10", "tier": null});
        u3.last_active = Some(1000);
        let mut u4 = row("u4", 4000);
        u4.name = Some("Álvaro".into());
        u4.role = "guest".into();
        u4.teams = vec!["green".into()];
        let mut u5 = row("u5", 5000);
        u5.name = Some("al_ice".into());
        u5.teams = vec!["red".into()];
        u5.custom = json!({"score": null, "nested": {"a": "1"}});
        let mut u6 = row("u6", 6000);
        u6.name = Some("100%".into());
        u6.teams = vec!["red".into(), "green".into()];
        u6.custom = json!({
            "score": 20, "weird key": 1, "a;--": "x", "it's": "q'\"", "$gt": 1, "ünï": "🦀",
            "b\\s": 7, "big": 9_007_199_254_740_993_i64
        });
        let mut u7 = row("u7", 7000);
        u7.name = Some("Alice7".into());
        u7.teams = vec!["red".into()];
        u7.custom = json!({"score": 10});
        u7.deactivated_at = Some(7000);
        let mut u8 = row("u8", 8000);
        u8.name = Some("Alice8".into());
        u8.custom = json!({"score": 10});
        u8.deleted_at = Some(8000);
        vec![u1, u2, u3, u4, u5, u6, u7, u8]
    }

    /// (filter, expected ids) over `filter_rows`, deactivated users excluded.
    fn filter_cases() -> Vec<(Json, Vec<&'static str>)> {
        let all = vec!["u1", "u2", "u3", "u4", "u5", "u6"];
        vec![
            (json!({}), all.clone()),
            (json!({"id": "u1"}), vec!["u1"]),
            (
                json!({"id": {"$ne": "u1"}}),
                vec!["u2", "u3", "u4", "u5", "u6"],
            ),
            (
                json!({"id": {"$in": ["u1", "u7", "u8", "nobody"]}}),
                vec!["u1"],
            ),
            (json!({"id": {"$gt": "u4"}}), vec!["u5", "u6"]),
            (json!({"id": {"$lte": "u2", "$gte": "u2"}}), vec!["u2"]),
            // Nullable columns: NULL is "not equal" and matched by null.
            (json!({"name": null}), vec!["u3"]),
            (json!({"name": {"$eq": null}}), vec!["u3"]),
            (
                json!({"name": {"$ne": null}}),
                vec!["u1", "u2", "u4", "u5", "u6"],
            ),
            (
                json!({"name": {"$ne": "bob"}}),
                vec!["u1", "u3", "u4", "u5", "u6"],
            ),
            (json!({"name": {"$in": ["bob", null]}}), vec!["u2", "u3"]),
            (json!({"name": {"$in": [null]}}), vec!["u3"]),
            (
                json!({"name": {"$nin": ["bob", null]}}),
                vec!["u1", "u4", "u5", "u6"],
            ),
            (
                json!({"name": {"$nin": ["bob"]}}),
                vec!["u1", "u3", "u4", "u5", "u6"],
            ),
            (json!({"name": {"$in": []}}), vec![]),
            (json!({"name": {"$nin": []}}), all.clone()),
            // (Away from u4's "Álvaro", whose place depends on the collation.)
            (json!({"name": {"$gte": "b", "$lt": "c"}}), vec!["u2"]),
            (
                json!({"name": {"$lt": "b"}, "id": {"$ne": "u4"}}),
                vec!["u1", "u5", "u6"],
            ),
            (json!({"name": {"$exists": false}}), vec!["u3"]),
            (json!({"image": {"$exists": true}}), vec!["u1"]),
            (json!({"id": {"$exists": true}}), all.clone()),
            (json!({"id": {"$exists": false}}), vec![]),
            // Autocomplete: case-insensitive prefix, wildcards literal.
            (json!({"name": {"$autocomplete": "al"}}), vec!["u1", "u5"]),
            (json!({"name": {"$autocomplete": "ALI"}}), vec!["u1"]),
            (json!({"name": {"$autocomplete": "al_"}}), vec!["u5"]),
            (json!({"name": {"$autocomplete": "a_"}}), vec![]),
            (json!({"name": {"$autocomplete": "100%"}}), vec!["u6"]),
            (json!({"name": {"$autocomplete": "1%"}}), vec![]),
            (json!({"name": {"$autocomplete": "%"}}), vec![]),
            (json!({"name": {"$autocomplete": "\\"}}), vec![]),
            (
                json!({"name": {"$autocomplete": ""}}),
                vec!["u1", "u2", "u4", "u5", "u6"],
            ),
            (json!({"id": {"$autocomplete": "U"}}), all.clone()),
            (json!({"id": {"$autocomplete": "u3"}}), vec!["u3"]),
            // Other built-ins.
            (json!({"invisible": true}), vec!["u3"]),
            (
                json!({"invisible": {"$ne": true}}),
                vec!["u1", "u2", "u4", "u5", "u6"],
            ),
            (json!({"invisible": {"$gt": false}}), vec!["u3"]),
            (
                json!({"role": {"$in": ["admin", "guest"]}}),
                vec!["u1", "u4"],
            ),
            (json!({"language": {"$nin": ["en"]}}), vec!["u2"]),
            (
                json!({"created_at": {"$gte": "1970-01-01T00:00:00.003Z", "$lt": "1970-01-01T01:00:00.005+01:00"}}),
                vec!["u3", "u4"],
            ),
            (
                json!({"created_at": {"$in": ["1970-01-01T00:00:00.001Z"]}}),
                vec!["u1"],
            ),
            (
                json!({"updated_at": {"$lte": "1970-01-01T00:00:00.002Z"}}),
                vec!["u1", "u2"],
            ),
            (
                json!({"last_active": {"$exists": false}}),
                vec!["u2", "u4", "u5", "u6"],
            ),
            (
                json!({"last_active": {"$gt": "1970-01-01T00:00:00.002Z"}}),
                vec!["u1"],
            ),
            (
                json!({"last_active": {"$ne": "1970-01-01T00:00:00.001Z"}}),
                vec!["u1", "u2", "u4", "u5", "u6"],
            ),
            (json!({"last_active": null}), vec!["u2", "u4", "u5", "u6"]),
            (json!({"deactivated_at": null}), all.clone()),
            // Teams.
            (json!({"teams": "red"}), vec!["u1", "u5", "u6"]),
            (json!({"teams": {"$contains": "blue"}}), vec!["u1", "u2"]),
            (json!({"teams": {"$eq": "green"}}), vec!["u4", "u6"]),
            (
                json!({"teams": {"$in": ["green", "blue"]}}),
                vec!["u1", "u2", "u4", "u6"],
            ),
            (
                json!({"teams": {"$nin": ["red", "green"]}}),
                vec!["u2", "u3"],
            ),
            (json!({"teams": {"$ne": "red"}}), vec!["u2", "u3", "u4"]),
            (json!({"teams": {"$in": []}}), vec![]),
            (json!({"teams": {"$nin": []}}), all.clone()),
            (json!({"teams": {"$exists": true}}), all.clone()),
            (json!({"teams": {"$exists": false}}), vec![]),
            (json!({"teams": "re"}), vec![]),
            (json!({"teams": "%"}), vec![]),
            // Custom keys: one JSON type at a time, missing and null alike for $eq null.
            (json!({"score": 10.0}), vec!["u1"]),
            (json!({"score": 10}), vec!["u1"]),
            (json!({"custom.score": "10"}), vec!["u3"]),
            (json!({"score": {"$gt": 5.0}}), vec!["u1", "u2", "u6"]),
            (
                json!({"score": {"$gte": 5.5, "$lt": 20.0}}),
                vec!["u1", "u2"],
            ),
            (json!({"score": {"$lte": 5.5}}), vec!["u2"]),
            (json!({"score": {"$lt": "2"}}), vec!["u3"]),
            (json!({"score": {"$gt": ""}}), vec!["u3"]),
            (json!({"score": null}), vec!["u4", "u5"]),
            (
                json!({"score": {"$ne": null}}),
                vec!["u1", "u2", "u3", "u6"],
            ),
            (
                json!({"score": {"$exists": true}}),
                vec!["u1", "u2", "u3", "u5", "u6"],
            ),
            (json!({"score": {"$exists": false}}), vec!["u4"]),
            (
                json!({"score": {"$ne": 10.0}}),
                vec!["u2", "u3", "u4", "u5", "u6"],
            ),
            (
                json!({"score": {"$in": [10.0, "x", null]}}),
                vec!["u1", "u4", "u5"],
            ),
            (
                json!({"score": {"$in": [10.0, "10", true]}}),
                vec!["u1", "u3"],
            ),
            (
                json!({"score": {"$nin": [10.0, 20.0]}}),
                vec!["u2", "u3", "u4", "u5"],
            ),
            (
                json!({"score": {"$nin": [null]}}),
                vec!["u1", "u2", "u3", "u6"],
            ),
            (json!({"score": true}), vec![]),
            (json!({"tier": null}), vec!["u3", "u4", "u5", "u6"]),
            (json!({"tier": {"$gte": "gold"}}), vec!["u1", "u2"]),
            (json!({"vip": true}), vec!["u1"]),
            (json!({"vip": false}), vec!["u2"]),
            (json!({"vip": 1.0}), vec![]),
            (json!({"vip": 0.0}), vec![]),
            (json!({"vip": {"$gt": 0.0}}), vec![]),
            (
                json!({"vip": {"$ne": true}}),
                vec!["u2", "u3", "u4", "u5", "u6"],
            ),
            (json!({"vip": {"$gt": false}}), vec!["u1"]),
            (json!({"vip": {"$in": [true, false]}}), vec!["u1", "u2"]),
            (json!({"vip": {"$in": [false, 1.0]}}), vec!["u2"]),
            (
                json!({"vip": {"$nin": [true]}}),
                vec!["u2", "u3", "u4", "u5", "u6"],
            ),
            (json!({"nested.a": 1.0}), vec!["u1"]),
            (json!({"custom.nested.a": "1"}), vec!["u5"]),
            (json!({"nested.a": {"$gt": 0.0}}), vec!["u1"]),
            (json!({"nested.a.b": {"$exists": true}}), vec![]),
            (json!({"nested.a.b": null}), all.clone()),
            (json!({"nested": {"$exists": true}}), vec!["u1", "u5"]),
            (json!({"nested": null}), vec!["u2", "u3", "u4", "u6"]),
            (json!({"tags": {"$exists": true}}), vec!["u1"]),
            (json!({"tags.0": {"$exists": true}}), vec![]),
            (json!({"big": 9_007_199_254_740_993_i64}), vec!["u6"]),
            (
                json!({"big": {"$gt": 9_007_199_254_740_992_i64}}),
                vec!["u6"],
            ),
            // Hostile keys are just keys.
            (json!({"weird key": 1.0}), vec!["u6"]),
            (json!({"a;--": "x"}), vec!["u6"]),
            (json!({"it's": "q'\""}), vec!["u6"]),
            (json!({"custom.$gt": 1.0}), vec!["u6"]),
            (json!({"ünï": "🦀"}), vec!["u6"]),
            (json!({"b\\s": 7.0}), vec!["u6"]),
            (json!({"'; DROP TABLE users; --": 1.0}), vec![]),
            (json!({"x') OR 1=1 --": {"$ne": 1.0}}), all.clone()),
            (json!({"name": "' OR ''='"}), vec![]),
            (
                json!({"$or": [{"name": {"$autocomplete": "' OR 1=1 --"}}]}),
                vec![],
            ),
            // Logical operators.
            (
                json!({"$or": [{"score": 10.0}, {"teams": "green"}]}),
                vec!["u1", "u4", "u6"],
            ),
            (
                json!({"$and": [{"teams": "red"}, {"score": {"$gt": 15.0}}]}),
                vec!["u6"],
            ),
            (
                json!({"$nor": [{"score": {"$gt": 5.0}}, {"name": null}]}),
                vec!["u4", "u5"],
            ),
            (
                json!({"$nor": [{"$or": [{"id": "u1"}, {"id": "u2"}]}]}),
                vec!["u3", "u4", "u5", "u6"],
            ),
            (
                json!({"$nor": [{"score": {"$gt": 5.0}}], "teams": "red"}),
                vec!["u5"],
            ),
            (json!({"$and": [{}]}), all.clone()),
            (json!({"$or": [{}, {"id": "u1"}]}), all.clone()),
            (json!({"$nor": [{}]}), vec![]),
            (
                json!({"$or": [{"$and": [{"teams": "red"}, {"vip": true}]}, {"$nor": [{"name": {"$ne": null}}]}]}),
                vec!["u1", "u3"],
            ),
        ]
    }

    async fn check_filters(db: DatabaseConnection) {
        insert(&db, &filter_rows()).await;
        for (filter, expected) in filter_cases() {
            let found = matching(&db, filter.clone(), false).await;
            assert_eq!(
                found,
                expected,
                "{:?} filter {filter}",
                db.get_database_backend()
            );
        }
        let everyone = matching(&db, json!({}), true).await;
        assert_eq!(everyone, ["u1", "u2", "u3", "u4", "u5", "u6", "u7"]);
        let deactivated = matching(&db, json!({"deactivated_at": {"$exists": true}}), true).await;
        assert_eq!(deactivated, ["u7"]);
        let scored = matching(&db, json!({"score": 10.0}), true).await;
        assert_eq!(scored, ["u1", "u7"]);
        // The hostile keys above did nothing to the table.
        assert_eq!(matching(&db, json!({}), true).await.len(), 7);
    }

    #[tokio::test]
    async fn filters() {
        on_every_db(check_filters).await;
    }

    /// The largest filters the limits allow still run: 10 levels of nesting and 1000 values.
    async fn check_limits(db: DatabaseConnection) {
        insert(&db, &filter_rows()).await;
        let ids: Vec<Json> = (0..990)
            .map(|i| json!(format!("x{i}")))
            .chain([json!("u2")])
            .collect();
        let numbers: Vec<Json> = (0..990)
            .map(|i| json!(f64::from(i) + 0.25))
            .chain([json!(20.0)])
            .collect();
        let names: Vec<Json> = (0..990)
            .map(|i| json!(format!("t{i}")))
            .chain([json!("green")])
            .collect();
        for (filter, expected) in [
            (json!({"id": {"$in": ids.clone()}}), vec!["u2"]),
            (json!({"score": {"$in": numbers.clone()}}), vec!["u6"]),
            (
                json!({"score": {"$nin": numbers}}),
                vec!["u1", "u2", "u3", "u4", "u5"],
            ),
            (json!({"teams": {"$in": names}}), vec!["u4", "u6"]),
            (
                json!({"$or": ids.iter().map(|id| json!({"id": id})).collect::<Vec<_>>()}),
                vec!["u2"],
            ),
            (
                json!({"$and": ids.iter().map(|id| json!({"id": {"$ne": id}})).collect::<Vec<_>>()}),
                vec!["u1", "u3", "u4", "u5", "u6"],
            ),
        ] {
            let found = matching(&db, filter.clone(), false).await;
            assert_eq!(found, expected, "{:?}", db.get_database_backend());
        }
        // Ten levels, alternately $or and $and, each with conditions on the deepest custom path
        // (missing, so `$in [.., null]` holds everywhere): 973 values.
        let path = (0..MAX_SEGMENTS_IN_TEST)
            .map(|i| format!("k{i}"))
            .collect::<Vec<_>>()
            .join(".");
        let mut f = json!({"id": {"$ne": "u1"}});
        for level in 0..9 {
            let mut conds: Vec<Json> = (0..27)
                .map(|i| json!({ path.as_str(): {"$in": [f64::from(i), "a", true, null]} }))
                .collect();
            conds.push(f);
            f = if level % 2 == 0 {
                json!({"$or": conds})
            } else {
                json!({"$and": conds})
            };
        }
        let found = matching(&db, f, false).await;
        assert_eq!(found, ["u1", "u2", "u3", "u4", "u5", "u6"]);
    }

    /// The most parameters a request can bind: 1000 comparisons on distinct deepest paths and
    /// five deepest custom sort keys with a page token. PostgreSQL allows 65535.
    async fn check_most_parameters(db: DatabaseConnection) {
        insert(&db, &filter_rows()).await;
        let deep = |i: usize| {
            let segments: Vec<String> = (0..MAX_SEGMENTS_IN_TEST)
                .map(|s| format!("k{i}_{s}"))
                .collect();
            segments.join(".")
        };
        let none: Vec<Json> = (0..1000)
            .map(|i| json!({ deep(i): {"$gt": 1.5} }))
            .collect();
        let filter = json!({ "$nor": none });
        let names: Vec<String> = (0..5).map(|i| deep(2000 + i)).collect();
        let sort: Vec<(&str, i32)> = names.iter().map(|n| (n.as_str(), -1)).collect();
        let owned: Vec<(String, i32)> = sort.iter().map(|(f, d)| (f.to_string(), *d)).collect();
        let first = parse_query(filter.as_object(), &owned, 2, 0, "", false).expect("valid");
        let (users, token) = page(
            &db,
            &Ask {
                filter: filter.clone(),
                sort: &sort,
                limit: 2,
                ..Ask::default()
            },
        )
        .await;
        let last = users.last().expect("a first page");
        assert_eq!(
            token.as_deref(),
            Some(next_page_token(&first, last).as_str())
        );
        let token = token.unwrap_or_default();
        let next = parse_query(filter.as_object(), &owned, 2, 0, &token, false).expect("valid");
        let statement = select_users(&next, DatabaseBackend::Postgres, as_of()).expect("statement");
        let count = statement.values.as_ref().map_or(0, |v| v.0.len());
        assert!((33_000..40_000).contains(&count), "{count} parameters");
        walk(&db, &filter, &sort, 2).await;
    }

    #[tokio::test]
    async fn most_parameters_run() {
        on_every_db(check_most_parameters).await;
    }

    const MAX_SEGMENTS_IN_TEST: usize = crate::domain::filter::MAX_PATH_SEGMENTS;

    #[tokio::test]
    async fn largest_filters_run() {
        on_every_db(check_limits).await;
    }

    // ---- sorting and pages ----

    /// Sorting by a custom number: NULL (missing or JSON null) lowest, then by value, `id`
    /// descending breaking ties.
    async fn check_custom_sort(db: DatabaseConnection) {
        let scores = [
            json!(3),
            json!(null),
            json!(1.5),
            Json::Null,
            json!(3),
            json!(-2),
            json!(10),
        ];
        let rows: Vec<Row> = scores
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut r = row(&format!("s{i}"), 100);
                // Index 3 has no key at all; index 1 holds a JSON null.
                r.custom = if i == 3 {
                    json!({})
                } else {
                    json!({"n": {"score": s}})
                };
                r
            })
            .collect();
        insert(&db, &rows).await;
        let ask = Ask {
            sort: &[("n.score", 1)],
            ..Ask::default()
        };
        assert_eq!(
            ids(&page(&db, &ask).await.0),
            ["s3", "s1", "s5", "s2", "s4", "s0", "s6"]
        );
        let ask = Ask {
            sort: &[("custom.n.score", -1)],
            ..Ask::default()
        };
        assert_eq!(
            ids(&page(&db, &ask).await.0),
            ["s6", "s4", "s0", "s2", "s5", "s3", "s1"]
        );
        let ask = Ask {
            sort: &[("n.score", -1), ("id", 1)],
            ..Ask::default()
        };
        assert_eq!(
            ids(&page(&db, &ask).await.0),
            ["s6", "s0", "s4", "s2", "s5", "s1", "s3"]
        );
        let ask = Ask {
            sort: &[("name", 1), ("last_active", -1)],
            ..Ask::default()
        };
        assert_eq!(
            ids(&page(&db, &ask).await.0),
            ["s6", "s5", "s4", "s3", "s2", "s1", "s0"]
        );
    }

    #[tokio::test]
    async fn custom_sort() {
        on_every_db(check_custom_sort).await;
    }

    /// Custom values of every JSON type, with near neighbours across types (`1`, `true`, `"1"`,
    /// `[1]`), case and non-ASCII strings, and `None` for a missing key.
    fn mixed_value() -> impl proptest::strategy::Strategy<Value = Option<Json>> {
        use proptest::prelude::*;
        let scalar = prop_oneof![
            Just(json!(null)),
            any::<bool>().prop_map(Json::from),
            (-3i64..4).prop_map(Json::from),
            prop::sample::select(vec![-0.5, 0.5, 1.0, 2.5, 1e20, -1e-3]).prop_map(Json::from),
            prop::sample::select(vec!["", "1", "a", "B", "b", "Z", "é", "ab", "true", "[1]"])
                .prop_map(Json::from),
        ];
        let value = scalar.prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Json::Array),
                prop::collection::btree_map("[a-c]", inner, 0..3)
                    .prop_map(|m| Json::Object(m.into_iter().collect())),
            ]
        });
        prop::option::weighted(0.9, value)
    }

    /// Sorted by `custom.v` both ways, and walked with page tokens: every database gives the
    /// order `compare_custom` defines (ties by `id` descending), so the databases agree.
    #[test]
    fn mixed_custom_types_sort_alike_on_every_database() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestCaseError, TestRunner};

        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let (sqlite, postgres) =
            runtime.block_on(async { (sqlite().await, TempPostgres::create().await) });
        let mut dbs = vec![sqlite];
        dbs.extend(postgres.as_ref().map(|pg| pg.db.clone()));
        let mut runner = TestRunner::new(Config {
            cases: 48,
            ..Config::default()
        });
        let result = runner.run(&prop::collection::vec(mixed_value(), 1..14), |values| {
            let rows: Vec<Row> = values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let mut r = row(&format!("m{i:02}"), 1);
                    r.custom = v.as_ref().map_or(json!({}), |v| json!({ "v": v }));
                    r
                })
                .collect();
            let value_of = |r: &Row| r.custom.get("v").cloned().unwrap_or(Json::Null);
            let expected = |descending: bool| {
                let mut sorted: Vec<&Row> = rows.iter().collect();
                sorted.sort_by(|a, b| {
                    let by_value = crate::domain::query::compare_custom(&value_of(a), &value_of(b));
                    let by_value = if descending {
                        by_value.reverse()
                    } else {
                        by_value
                    };
                    by_value.then_with(|| b.id.cmp(&a.id))
                });
                sorted.iter().map(|r| r.id.clone()).collect::<Vec<_>>()
            };
            let mut orders = Vec::new();
            for db in &dbs {
                let backend = db.get_database_backend();
                let found: Result<Vec<Vec<String>>, String> = runtime.block_on(async {
                    db.execute_unprepared("DELETE FROM users")
                        .await
                        .map_err(|e| e.to_string())?;
                    insert(db, &rows).await;
                    let mut found = Vec::new();
                    for (sort, limit) in [
                        (&[("v", 1)][..], 100),
                        (&[("custom.v", -1)][..], 100),
                        (&[("v", 1)][..], 3),
                        (&[("v", -1)][..], 2),
                    ] {
                        let mut ids_seen = Vec::new();
                        let mut token = String::new();
                        loop {
                            let ask = Ask {
                                sort,
                                limit,
                                token,
                                ..Ask::default()
                            };
                            let (users, next) = page(db, &ask).await;
                            ids_seen.extend(ids(&users));
                            match next {
                                Some(next) if ids_seen.len() <= rows.len() => token = next,
                                _ => break,
                            }
                        }
                        found.push(ids_seen);
                    }
                    Ok(found)
                });
                let found = found.map_err(TestCaseError::fail)?;
                for (i, descending) in [false, true, false, true].into_iter().enumerate() {
                    prop_assert_eq!(
                        &found[i],
                        &expected(descending),
                        "{:?}, order {}, values {:?}",
                        backend,
                        i,
                        values
                    );
                }
                orders.push(found);
            }
            if let [first, rest @ ..] = orders.as_slice() {
                for other in rest {
                    prop_assert_eq!(first, other, "SQLite and PostgreSQL disagree");
                }
            }
            Ok(())
        });
        if let Some(pg) = postgres {
            runtime.block_on(pg.drop());
        }
        if let Err(e) = result {
            panic!("{e}");
        }
    }

    /// 300 rows with many duplicate and NULL sort values, of mixed JSON types.
    fn walk_rows() -> Vec<Row> {
        let scores = [
            None,
            Some(json!(null)),
            Some(json!(1)),
            Some(json!(2)),
            Some(json!(2.5)),
            Some(json!("a")),
            Some(json!("b")),
            Some(json!(true)),
            Some(json!(false)),
            Some(json!({"o": [1, "x"]})),
            Some(json!([2, 1])),
            Some(json!(2.0)),
        ];
        let teams = [vec![], vec!["a"], vec!["a", "b"], vec!["b"], vec!["b", "a"]];
        (0..300_usize)
            .map(|i| {
                let n = i64::try_from(i).expect("small");
                let mut r = row(&format!("w{:03}", (i * 7919) % 300), (n % 7) * 1000);
                r.updated_at = n;
                r.name = (i % 5 != 0).then(|| format!("n{}", i % 13));
                r.invisible = i % 2 == 0;
                r.last_active = (i % 3 != 0).then_some(n % 4);
                r.teams = teams[i % 5].iter().map(|t| t.to_string()).collect();
                let mut custom = Map::new();
                if let Some(score) = &scores[i % scores.len()] {
                    custom.insert("score".into(), score.clone());
                }
                if i % 6 != 0 {
                    custom.insert("p".into(), json!({"q": i % 4}));
                }
                r.custom = Json::Object(custom);
                r.deactivated_at = (i % 10 == 0).then_some(1);
                r.deleted_at = (i % 15 == 0).then_some(1);
                r
            })
            .collect()
    }

    /// Walks every page with page tokens and checks the walk against the OFFSET order.
    async fn walk(db: &DatabaseConnection, filter: &Json, sort: &[(&str, i32)], limit: u32) {
        let mut by_offset = Vec::new();
        loop {
            let offset = u32::try_from(by_offset.len()).expect("small");
            let ask = Ask {
                filter: filter.clone(),
                sort,
                offset,
                ..Ask::default()
            };
            let (users, _) = page(db, &ask).await;
            let done = users.len() < 100;
            by_offset.extend(ids(&users));
            if done {
                break;
            }
        }
        let mut by_token = Vec::new();
        let mut token = String::new();
        loop {
            let ask = Ask {
                filter: filter.clone(),
                sort,
                limit,
                token,
                ..Ask::default()
            };
            let (users, next) = page(db, &ask).await;
            assert!(users.len() <= usize::try_from(limit).expect("small"));
            by_token.extend(ids(&users));
            match next {
                Some(next) => token = next,
                None => break,
            }
            assert!(by_token.len() <= 1000, "runaway walk for {sort:?}");
        }
        let backend = db.get_database_backend();
        let unique: HashSet<&String> = by_token.iter().collect();
        assert_eq!(
            unique.len(),
            by_token.len(),
            "{backend:?} {sort:?}: a row came twice"
        );
        assert_eq!(
            by_token, by_offset,
            "{backend:?} {sort:?} {filter}: walk differs from order"
        );
    }

    async fn check_page_walks(db: DatabaseConnection) {
        let rows = walk_rows();
        insert(&db, &rows).await;
        let visible = rows
            .iter()
            .filter(|r| r.deleted_at.is_none() && r.deactivated_at.is_none());
        let all = json!({});
        let sorts: [&[(&str, i32)]; 17] = [
            &[],
            &[("score", 1)],
            &[("score", -1)],
            &[("score", 1), ("name", -1)],
            &[("name", 1)],
            &[("name", -1), ("last_active", 1)],
            &[("last_active", -1)],
            &[("last_active", 1), ("image", -1), ("created_at", 1)],
            &[("teams", 1)],
            &[("teams", -1), ("score", -1)],
            &[("invisible", -1), ("custom.p.q", 1), ("created_at", 1)],
            &[("p.q", -1), ("p", 1), ("updated_at", -1)],
            &[("id", 1)],
            &[("role", 1), ("language", -1), ("id", -1), ("name", 1)],
            &[("invisible", -1), ("teams", -1), ("updated_at", -1)],
            &[("invisible", 1), ("language", 1), ("id", 1)],
            &[("invisible", 1), ("created_at", 1)],
        ];
        for sort in sorts {
            walk(&db, &all, sort, 7).await;
        }
        walk(&db, &all, &[], 1).await;
        walk(&db, &all, &[("score", -1), ("p.q", 1)], 100).await;
        walk(
            &db,
            &json!({"score": {"$ne": "a"}, "teams": {"$nin": ["b"]}}),
            &[("score", 1)],
            3,
        )
        .await;
        // The default order is created_at descending, then id descending.
        let (users, _) = page(&db, &Ask::default()).await;
        let mut expected: Vec<&Row> = visible.collect();
        expected.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        let expected: Vec<String> = expected.iter().take(100).map(|r| r.id.clone()).collect();
        assert_eq!(ids(&users), expected);
    }

    #[tokio::test]
    async fn page_token_walks_return_every_row_once() {
        on_every_db(check_page_walks).await;
    }

    async fn check_offsets(db: DatabaseConnection) {
        let rows: Vec<Row> = (0..20).map(|i| row(&format!("o{i:02}"), i)).collect();
        insert(&db, &rows).await;
        let ask = Ask {
            sort: &[("id", 1)],
            limit: 5,
            offset: 3,
            ..Ask::default()
        };
        let (users, token) = page(&db, &ask).await;
        assert_eq!(ids(&users), ["o03", "o04", "o05", "o06", "o07"]);
        assert!(token.is_some());
        let ask = Ask {
            sort: &[("id", 1)],
            limit: 5,
            offset: 15,
            ..Ask::default()
        };
        let (users, token) = page(&db, &ask).await;
        assert_eq!(users.len(), 5);
        assert!(token.is_none(), "the last page has no token");
    }

    #[tokio::test]
    async fn offsets_and_last_page() {
        on_every_db(check_offsets).await;
    }

    // ---- SQL text ----

    fn statement(filter: Json, backend: DatabaseBackend) -> Statement {
        let query = parse_query(filter.as_object(), &[], 0, 0, "", false).expect("valid");
        select_users(&query, backend, as_of()).expect("statement")
    }

    #[test]
    fn request_values_never_reach_the_sql_text() {
        let hostile = "x'); DROP TABLE users; --";
        let filter = json!({
            hostile: {"$in": [hostile, 1.0, true, null]},
            "name": {"$autocomplete": hostile},
            "teams": hostile,
            "$or": [{"custom.a.b": hostile}, {"role": {"$gt": hostile}}],
        });
        for backend in [DatabaseBackend::Sqlite, DatabaseBackend::Postgres] {
            let s = statement(filter.clone(), backend);
            assert!(
                !s.sql.contains("DROP") && !s.sql.contains("x'"),
                "{}",
                s.sql
            );
            assert!(!s.sql.contains("\"a\""), "{}", s.sql);
        }
    }

    #[test]
    fn placeholders_match_values() {
        let filter = json!({"score": {"$in": [1.0, "a", true]}, "teams": {"$in": ["a", "b"]}});
        let s = statement(filter.clone(), DatabaseBackend::Postgres);
        let count = s.values.as_ref().map_or(0, |v| v.0.len());
        assert!(
            s.sql.contains(&format!("${count}")) && !s.sql.contains(&format!("${}", count + 1))
        );
        assert!(!s.sql.contains('?'), "{}", s.sql);
        let s = statement(filter, DatabaseBackend::Sqlite);
        let count = s.values.as_ref().map_or(0, |v| v.0.len());
        assert_eq!(s.sql.matches('?').count(), count, "{}", s.sql);
    }

    #[test]
    fn not_null_columns_keep_plain_order_and_filters() {
        let s = statement(
            json!({"created_at": {"$gt": "2024-01-01T00:00:00Z"}}),
            DatabaseBackend::Postgres,
        );
        assert!(s.sql.contains("(users.created_at > $1)"), "{}", s.sql);
        assert!(
            s.sql
                .ends_with("ORDER BY users.created_at DESC, users.id DESC LIMIT $2 OFFSET $3"),
            "{}",
            s.sql
        );
    }

    #[test]
    fn other_backends_are_refused() {
        let query = parse_query(None, &[], 0, 0, "", false).expect("valid");
        assert!(matches!(
            select_users(&query, DatabaseBackend::MySql, as_of()),
            Err(Error::Internal(_))
        ));
    }
}
