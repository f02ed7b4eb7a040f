//! A `QueryUsers` request, checked and parsed: filter, sort, page size and page position.
//!
//! Pure: the SQL lives in `store::query_sql`. Page tokens are keyset cursors: the sort-key values
//! of the last row of a page plus a fingerprint of the sort they were made for. They are not
//! secret and need not be: every value in them is bound as a SQL parameter and type-checked on the
//! way in, so a forged token can only move the page start.
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::filter::{Builtin, Field, Filter, Kind, Op, Scalar, parse_filter};
use super::paging;
use super::user::User;
use crate::error::{Error, FieldViolation};

pub const MAX_SORT_KEYS: usize = 5;
pub const DEFAULT_LIMIT: u64 = 30;
pub const MAX_LIMIT: u64 = 100;
pub const MAX_OFFSET: u64 = 1000;

/// One ORDER BY key.
#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    pub field: Field,
    pub descending: bool,
}

/// Where the previous page ended: one value per sort key (in `UserQuery::sort` order), as JSON.
/// Built-in instants are integers (micros), `invisible` a boolean, text a string, `teams` an
/// array of strings, custom keys any JSON (`null` for a missing key). Values were type-checked
/// against their keys when the token was decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    pub values: Vec<Value>,
}

/// A checked query. `sort` always ends with a key on `id`, so the order is total.
#[derive(Debug, Clone, PartialEq)]
pub struct UserQuery {
    pub filter: Filter,
    pub sort: Vec<SortKey>,
    /// Page size, 1..=100. The SQL asks for one more row to learn whether a next page exists.
    pub limit: u64,
    /// 0..=1000; always 0 when `cursor` is set.
    pub offset: u64,
    pub cursor: Option<Cursor>,
    pub include_deactivated: bool,
}

impl UserQuery {
    /// The one id this query asks for, when it asks for nothing else (`{"id": x}`,
    /// `{"id": {"$eq": x}}` or `{"id": {"$in": [x]}}`) and wants the first page: then at most one
    /// user answers, whatever the sort, and the query is a point read.
    pub fn single_id(&self) -> Option<&str> {
        if self.offset != 0 || self.cursor.is_some() {
            return None;
        }
        let Filter::Leaf {
            field: Field::Builtin(Builtin::Id),
            op,
        } = &self.filter
        else {
            return None;
        };
        match op {
            Op::Eq(Scalar::Text(id)) => Some(id),
            Op::In(ids) => match ids.as_slice() {
                [Scalar::Text(id)] => Some(id),
                _ => None,
            },
            _ => None,
        }
    }

    /// Whether `user` is one a query may show: never a deleted user, a deactivated one only when
    /// asked for. (The filter decides the rest.)
    pub fn may_show(&self, user: &User) -> bool {
        user.deleted_at.is_none() && (self.include_deactivated || user.deactivated_at.is_none())
    }
}

/// What a page token holds.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Token {
    /// Fingerprint of the sort the token was made for.
    s: String,
    /// The last row's sort-key values.
    k: Vec<Value>,
}

/// Checks and parses a request. Every invalid part is reported, not only the first.
/// `sort` holds `(field, direction)` pairs as the proto sends them.
pub fn parse_query(
    filter: Option<&Map<String, Value>>,
    sort: &[(String, i32)],
    limit: u32,
    offset: u32,
    page_token: &str,
    include_deactivated: bool,
) -> Result<UserQuery, Error> {
    let mut violations = Vec::new();
    let filter = keep(
        filter.map_or(Ok(Filter::All), parse_filter),
        &mut violations,
    )?;
    let sort = keep(parse_sort(sort), &mut violations)?;
    let limit = keep(parse_limit(limit), &mut violations)?;
    let offset = keep(parse_offset(offset, page_token), &mut violations)?;
    let cursor = match &sort {
        Some(keys) if !page_token.is_empty() => {
            keep(decode_page_token(page_token, keys), &mut violations)?
        }
        _ => None,
    };
    match (filter, sort, limit, offset) {
        (Some(filter), Some(sort), Some(limit), Some(offset)) if violations.is_empty() => {
            Ok(UserQuery {
                filter,
                sort,
                limit,
                offset,
                cursor,
                include_deactivated,
            })
        }
        _ => Err(Error::InvalidArgument(violations)),
    }
}

/// Moves the violations of an invalid part into `violations`; other errors pass through.
fn keep<T>(
    result: Result<T, Error>,
    violations: &mut Vec<FieldViolation>,
) -> Result<Option<T>, Error> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(Error::InvalidArgument(mut found)) => {
            violations.append(&mut found);
            Ok(None)
        }
        Err(other) => Err(other),
    }
}

/// Sort keys, defaulting to `created_at` descending, with `id` descending appended as the final
/// tie-break unless `id` is already a key.
pub fn parse_sort(sort: &[(String, i32)]) -> Result<Vec<SortKey>, Error> {
    if sort.len() > MAX_SORT_KEYS {
        return Err(Error::invalid(
            "sort",
            format!("at most {MAX_SORT_KEYS} sort keys"),
        ));
    }
    let mut keys: Vec<SortKey> = Vec::with_capacity(sort.len() + 1);
    let mut violations = Vec::new();
    for (i, (name, direction)) in sort.iter().enumerate() {
        match sort_key(name, *direction, &keys) {
            Ok(key) => keys.push(key),
            Err((part, why)) => {
                violations.push(FieldViolation::new(format!("sort[{i}].{part}"), why))
            }
        }
    }
    if !violations.is_empty() {
        return Err(Error::InvalidArgument(violations));
    }
    if keys.is_empty() {
        keys.push(SortKey {
            field: Field::Builtin(Builtin::CreatedAt),
            descending: true,
        });
    }
    if !keys.iter().any(|k| k.field == Field::Builtin(Builtin::Id)) {
        keys.push(SortKey {
            field: Field::Builtin(Builtin::Id),
            descending: true,
        });
    }
    Ok(keys)
}

/// One sort key; the error names the part (`field` / `direction`) and why.
fn sort_key(
    name: &str,
    direction: i32,
    earlier: &[SortKey],
) -> Result<SortKey, (&'static str, String)> {
    let field = Field::parse(name).map_err(|why| ("field", why))?;
    if earlier.iter().any(|k| k.field == field) {
        return Err(("field", format!("`{field}` is already a sort key")));
    }
    let descending = match direction {
        0 | 1 => false,
        -1 => true,
        _ => {
            return Err((
                "direction",
                "expected 1 (ascending) or -1 (descending)".into(),
            ));
        }
    };
    Ok(SortKey { field, descending })
}

fn parse_limit(limit: u32) -> Result<u64, Error> {
    paging::page_size(limit, DEFAULT_LIMIT, MAX_LIMIT)
}

fn parse_offset(offset: u32, page_token: &str) -> Result<u64, Error> {
    let offset = u64::from(offset);
    if offset > MAX_OFFSET {
        return Err(Error::invalid(
            "offset",
            format!("expected 0 to {MAX_OFFSET}"),
        ));
    }
    if offset > 0 && !page_token.is_empty() {
        return Err(Error::invalid(
            "offset",
            "not allowed together with page_token",
        ));
    }
    Ok(offset)
}

/// Where a custom value sorts among the JSON types: strings, then numbers, then booleans, then
/// arrays, then objects (PostgreSQL's jsonb order between types). `None` for null, which sorts
/// lowest with a missing key. `store::query_sql` writes this as SQL for both databases.
pub fn custom_type_rank(value: &Value) -> Option<i64> {
    match value {
        Value::Null => None,
        Value::String(_) => Some(1),
        Value::Number(_) => Some(2),
        Value::Bool(_) => Some(3),
        Value::Array(_) => Some(4),
        Value::Object(_) => Some(5),
    }
}

/// roster's one order of custom values, on every database: a missing key and null first, then
/// by `custom_type_rank`; strings by their UTF-8 bytes (not a database collation), numbers by
/// value, `false` before `true`. Arrays are equal to each other, and so are objects: the two
/// databases store them differently, so their content does not order them; the next sort key
/// (at last `id`) does. The reference the SQL is tested against.
pub fn compare_custom(a: &Value, b: &Value) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let by_rank = custom_type_rank(a).cmp(&custom_type_rank(b));
    if by_rank != Ordering::Equal {
        return by_rank;
    }
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => {
                let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                x.partial_cmp(&y).unwrap_or(Ordering::Equal)
            }
        },
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => Ordering::Equal,
    }
}

/// The token for the page after `last`, the last user of a page of `query`.
pub fn next_page_token(query: &UserQuery, last: &User) -> String {
    let values: Vec<Value> = query
        .sort
        .iter()
        .map(|k| sort_value(&k.field, last))
        .collect();
    paging::encode(&Token {
        s: fingerprint(&query.sort),
        k: values,
    })
}

/// The value a sort key sees on a user, as the SQL orders it: a missing custom key and a JSON
/// null are both NULL, and a path through a non-object is missing.
fn sort_value(field: &Field, user: &User) -> Value {
    let f = &user.fields;
    match field {
        Field::Builtin(b) => match b {
            Builtin::Id => json!(f.id),
            Builtin::Name => json!(f.name),
            Builtin::Image => json!(f.image),
            Builtin::Role => json!(f.role),
            Builtin::Language => json!(f.language),
            Builtin::Invisible => json!(f.invisible),
            Builtin::CreatedAt => json!(user.created_at),
            Builtin::UpdatedAt => json!(user.updated_at),
            Builtin::DeactivatedAt => json!(user.deactivated_at),
            Builtin::LastActive => json!(user.last_active),
        },
        Field::Teams => json!(f.teams),
        Field::Custom(path) => custom_at(&f.custom, path).cloned().unwrap_or(Value::Null),
    }
}

fn custom_at<'a>(custom: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut value = custom.get(first)?;
    for segment in rest {
        value = value.as_object()?.get(segment)?;
    }
    Some(value)
}

/// Identifies a sort spec (canonical field names and directions), so a token made for one sort
/// is refused for another instead of silently skipping or repeating rows.
fn fingerprint(sort: &[SortKey]) -> String {
    let spec: Vec<Value> = sort
        .iter()
        .map(|k| json!([k.field.to_string(), if k.descending { -1 } else { 1 }]))
        .collect();
    let digest = Sha256::digest(Value::Array(spec).to_string().as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Decodes and checks a page token against the sort of the request.
fn decode_page_token(token: &str, sort: &[SortKey]) -> Result<Cursor, Error> {
    let Some(token) = paging::decode::<Token>(token)? else {
        return Err(paging::not_a_token());
    };
    if token.s != fingerprint(sort) || token.k.len() != sort.len() {
        return Err(Error::invalid(
            "page_token",
            "made for another sort; send the sort of the first page",
        ));
    }
    if !sort
        .iter()
        .zip(&token.k)
        .all(|(key, value)| fits(&key.field, value))
    {
        return Err(paging::not_a_token());
    }
    Ok(Cursor { values: token.k })
}

/// Whether a cursor value has the type its sort key's SQL expects.
fn fits(field: &Field, value: &Value) -> bool {
    match field {
        Field::Builtin(b) => match (b.kind(), value) {
            (_, Value::Null) => b.nullable(),
            (Kind::Text, Value::String(s)) => !s.contains('\0'),
            (Kind::Bool, Value::Bool(_)) => true,
            (Kind::Instant, Value::Number(n)) => n.is_i64(),
            _ => false,
        },
        Field::Teams => value.as_array().is_some_and(|teams| {
            teams
                .iter()
                .all(|t| t.as_str().is_some_and(|s| !s.contains('\0')))
        }),
        Field::Custom(_) => !has_nul(value),
    }
}

/// NUL anywhere in a JSON document (PostgreSQL cannot hold it, so no stored value has it).
/// serde_json refuses documents nested over 128 levels, which bounds the recursion.
fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::user::UserFields;
    use base64::Engine;

    /// Raw bytes as a token, the way a forger would make one.
    fn test_encode(bytes: impl AsRef<[u8]>) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn sort(keys: &[(&str, i32)]) -> Vec<(String, i32)> {
        keys.iter().map(|(f, d)| (f.to_string(), *d)).collect()
    }

    fn query(keys: &[(&str, i32)], token: &str) -> Result<UserQuery, Error> {
        parse_query(None, &sort(keys), 0, 0, token, false)
    }

    fn violations(result: Result<UserQuery, Error>) -> Vec<FieldViolation> {
        match result {
            Err(Error::InvalidArgument(v)) => v,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    fn fields_of(result: Result<UserQuery, Error>) -> Vec<String> {
        violations(result).into_iter().map(|v| v.field).collect()
    }

    fn key(name: &str, descending: bool) -> SortKey {
        SortKey {
            field: Field::parse(name).expect("valid field"),
            descending,
        }
    }

    #[test]
    fn a_query_for_one_id_and_nothing_else_is_a_point_read() {
        let single = |filter: Value, offset: u32| {
            let query = parse_query(filter.as_object(), &[], 10, offset, "", false).unwrap();
            query.single_id().map(str::to_owned)
        };
        assert_eq!(single(json!({"id": "a"}), 0).as_deref(), Some("a"));
        assert_eq!(single(json!({"id": {"$eq": "a"}}), 0).as_deref(), Some("a"));
        assert_eq!(
            single(json!({"id": {"$in": ["a"]}}), 0).as_deref(),
            Some("a")
        );
        assert_eq!(single(json!({"id": {"$in": ["a", "b"]}}), 0), None);
        assert_eq!(single(json!({"id": "a", "role": "admin"}), 0), None);
        assert_eq!(single(json!({"id": {"$gt": "a"}}), 0), None);
        assert_eq!(single(json!({"id": {"$ne": "a"}}), 0), None);
        assert_eq!(single(json!({"name": "a"}), 0), None);
        assert_eq!(
            single(json!({"id": "a"}), 1),
            None,
            "an offset past the one user"
        );
        assert_eq!(single(json!({}), 0), None);
    }

    #[test]
    fn queries_never_show_deleted_users_and_deactivated_ones_only_when_asked() {
        let plain = parse_query(None, &[], 10, 0, "", false).unwrap();
        let with_deactivated = parse_query(None, &[], 10, 0, "", true).unwrap();
        let mut u = user();
        assert!(plain.may_show(&u) && with_deactivated.may_show(&u));
        u.deactivated_at = Some(5);
        assert!(!plain.may_show(&u) && with_deactivated.may_show(&u));
        u.deleted_at = Some(6);
        assert!(!plain.may_show(&u) && !with_deactivated.may_show(&u));
    }

    fn user() -> User {
        let mut fields = UserFields::with_id("u-1");
        fields.name = Some("Ann".into());
        fields.teams = vec!["red".into(), "blue".into()];
        fields.custom = match json!({"score": 2.5, "gone": null, "a": {"b": "x"}, "s": "str"}) {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        let mut user = User::new(fields, 1_700_000_000_000_000);
        user.last_active = None;
        user
    }

    #[test]
    fn defaults() {
        let q = query(&[], "").expect("valid");
        assert_eq!(q.sort, vec![key("created_at", true), key("id", true)]);
        assert_eq!(
            (q.limit, q.offset, q.cursor, q.filter),
            (30, 0, None, Filter::All)
        );
    }

    #[test]
    fn id_is_the_final_tie_break_unless_present() {
        let q = query(&[("name", 1), ("score", -1)], "").expect("valid");
        assert_eq!(
            q.sort,
            vec![
                key("name", false),
                key("custom.score", true),
                key("id", true)
            ]
        );
        let q = query(&[("id", 0)], "").expect("valid");
        assert_eq!(q.sort, vec![key("id", false)]);
        let q = query(&[("id", 1), ("name", -1)], "").expect("valid");
        assert_eq!(q.sort, vec![key("id", false), key("name", true)]);
    }

    #[test]
    fn sort_rules() {
        let six = [("a", 1), ("b", 1), ("c", 1), ("d", 1), ("e", 1), ("f", 1)];
        assert_eq!(fields_of(query(&six, "")), ["sort"]);
        assert!(query(&six[..5], "").is_ok());
        assert_eq!(fields_of(query(&[("name", 2)], "")), ["sort[0].direction"]);
        assert_eq!(
            fields_of(query(&[("name", i32::MIN)], "")),
            ["sort[0].direction"]
        );
        assert_eq!(
            fields_of(query(
                &[
                    ("id", 1),
                    ("a\"b", 1),
                    ("$gt", 1),
                    ("score", 1),
                    ("custom.score", 1)
                ],
                ""
            )),
            ["sort[1].field", "sort[2].field", "sort[4].field"]
        );
        assert_eq!(fields_of(query(&[("", 1)], "")), ["sort[0].field"]);
        // Hostile names are custom keys, i.e. data.
        let q = query(&[("'; DROP TABLE users; --", 1), ("x) --", -1)], "").expect("valid");
        assert_eq!(
            q.sort[0].field,
            Field::Custom(vec!["'; DROP TABLE users; --".into()])
        );
    }

    #[test]
    fn limit_and_offset() {
        let run = |limit, offset, token: &str| parse_query(None, &[], limit, offset, token, true);
        assert_eq!(run(1, 0, "").expect("valid").limit, 1);
        assert_eq!(run(100, 1000, "").expect("valid").offset, 1000);
        assert_eq!(fields_of(run(101, 0, "")), ["limit"]);
        assert_eq!(fields_of(run(u32::MAX, 1001, "")), ["limit", "offset"]);
        let token = next_page_token(&query(&[], "").expect("valid"), &user());
        assert_eq!(fields_of(run(0, 1, &token)), ["offset"]);
        assert!(run(0, 0, &token).expect("valid").include_deactivated);
    }

    #[test]
    fn all_violations_are_reported() {
        let filter = json!({"invisible": "yes"});
        let result = parse_query(filter.as_object(), &sort(&[("x", 5)]), 500, 5000, "", false);
        assert_eq!(
            fields_of(result),
            ["filter.invisible", "sort[0].direction", "limit", "offset"]
        );
    }

    #[test]
    fn page_token_round_trip() {
        let keys = [
            ("score", 1),
            ("a.b", -1),
            ("gone", 1),
            ("a.b.c", 1),
            ("teams", 1),
        ];
        let first = query(&keys, "").expect("valid");
        let token = next_page_token(&first, &user());
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        let next = query(&keys, &token).expect("valid token");
        let values = next.cursor.expect("cursor").values;
        assert_eq!(
            values,
            vec![
                json!(2.5),
                json!("x"),
                Value::Null,
                Value::Null,
                json!(["red", "blue"]),
                json!("u-1")
            ]
        );
        // `score` and `custom.score` are the same key; padding is tolerated.
        let same = [
            ("custom.score", 1),
            ("custom.a.b", -1),
            ("gone", 0),
            ("a.b.c", 1),
            ("teams", 1),
        ];
        assert!(query(&same, &format!("{token}==")).is_ok());
    }

    #[test]
    fn builtin_token_values() {
        let keys = [
            ("created_at", -1),
            ("last_active", 1),
            ("invisible", 1),
            ("name", 1),
            ("image", 1),
        ];
        let first = query(&keys, "").expect("valid");
        let token = next_page_token(&first, &user());
        let values = query(&keys, &token)
            .expect("valid")
            .cursor
            .expect("cursor")
            .values;
        assert_eq!(
            values,
            vec![
                json!(1_700_000_000_000_000_i64),
                Value::Null,
                json!(false),
                json!("Ann"),
                Value::Null,
                json!("u-1")
            ]
        );
    }

    #[test]
    fn token_for_another_sort_is_refused() {
        let token = next_page_token(&query(&[("name", 1)], "").expect("valid"), &user());
        for other in [
            vec![("name", -1)],
            vec![],
            vec![("name", 1), ("role", 1)],
            vec![("image", 1)],
        ] {
            let v = violations(query(&other, &token));
            assert_eq!(v[0].field, "page_token");
            assert!(
                v[0].description.contains("another sort"),
                "{}",
                v[0].description
            );
        }
    }

    #[test]
    fn bad_tokens_are_invalid_argument() {
        let q = query(&[], "").expect("valid");
        let good_s = fingerprint(&q.sort);
        let encode = |v: Value| test_encode(v.to_string());
        let bad = [
            "!!!".to_string(),
            "a".to_string(),
            test_encode("not json"),
            test_encode([0xff, 0xfe]),
            encode(json!([])),
            encode(json!({"s": good_s, "k": [1]})),
            encode(json!({"s": good_s, "k": ["2024", "u1"]})),
            encode(json!({"s": good_s, "k": [1.5, "u1"]})),
            encode(json!({"s": good_s, "k": [null, "u1"]})),
            encode(json!({"s": good_s, "k": [1, 2]})),
            encode(json!({"s": good_s, "k": [1, "u\u{0}"]})),
            encode(json!({"s": good_s, "k": [1, "u1"], "x": 1})),
            "A".repeat(crate::domain::paging::MAX_PAGE_TOKEN_BYTES + 4),
        ];
        for token in bad {
            assert_eq!(fields_of(query(&[], &token)), ["page_token"], "{token:.60}");
        }
        let ok = encode(json!({"s": good_s, "k": [1, "u1"]}));
        assert_eq!(
            query(&[], &ok).expect("valid").cursor,
            Some(Cursor {
                values: vec![json!(1), json!("u1")]
            })
        );
    }

    #[test]
    fn custom_token_values_are_any_json_without_nul() {
        let q = query(&[("score", 1)], "").expect("valid");
        let s = fingerprint(&q.sort);
        let encode = |v: Value| test_encode(v.to_string());
        for value in [
            json!({"a": [1, true]}),
            json!(null),
            json!(1e300),
            json!("'; --"),
        ] {
            let token = encode(json!({"s": s, "k": [value, "u1"]}));
            assert!(query(&[("score", 1)], &token).is_ok(), "{value}");
        }
        for value in [json!({"a\u{0}": 1}), json!(["\u{0}"])] {
            let token = encode(json!({"s": s, "k": [value, "u1"]}));
            assert_eq!(fields_of(query(&[("score", 1)], &token)), ["page_token"]);
        }
    }
}
