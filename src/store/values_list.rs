//! Rows of the multi-row `VALUES` lists that roster writes by hand (the change feed's INSERT, the
//! partial update's UPDATE), the same way on both databases.
use std::fmt::Write;

use sea_orm::Value;

/// Appends one row, `(p1, p2, ...)`, and its values. PostgreSQL gets numbered placeholders, each
/// followed by its cast (`""` for none): a VALUES list is typed by its parameters there. SQLite
/// gets plain `?`, which sqlx binds by position (numbered ones it looks up by name, one search per
/// parameter).
pub(crate) fn push_row(
    sql: &mut String,
    values: &mut Vec<Value>,
    postgres: bool,
    row: impl IntoIterator<Item = (Value, &'static str)>,
) {
    sql.push('(');
    for (i, (value, cast)) in row.into_iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        if postgres {
            let _ = write!(sql, "${}{cast}", values.len() + 1);
        } else {
            sql.push('?');
        }
        values.push(value);
    }
    sql.push(')');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_number_their_placeholders_on_from_the_values_before_them() {
        let mut sql = String::new();
        let mut values = Vec::new();
        push_row(
            &mut sql,
            &mut values,
            true,
            [(1i64.into(), ""), ("{}".into(), "::jsonb")],
        );
        sql.push_str(", ");
        push_row(
            &mut sql,
            &mut values,
            true,
            [(2i64.into(), ""), ("[]".into(), "::jsonb")],
        );
        assert_eq!(sql, "($1, $2::jsonb), ($3, $4::jsonb)");
        assert_eq!(values.len(), 4);
        let mut sql = String::new();
        push_row(
            &mut sql,
            &mut Vec::new(),
            false,
            [(1i64.into(), "::int8"), (2i64.into(), "")],
        );
        assert_eq!(sql, "(?, ?)");
    }
}
