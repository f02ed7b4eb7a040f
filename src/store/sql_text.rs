//! The one writer of SQL text with parameters that roster builds by hand (QueryUsers' SELECT, the
//! replace's INSERT, the partial update's UPDATE, the change feed's INSERT, ...): placeholders
//! are written here only, the same way for every statement.
use std::fmt::Write;

use sea_orm::{DatabaseBackend, Statement, Value};

/// SQL text and its parameters, written strictly left to right so that each placeholder lines up
/// with its value. PostgreSQL gets numbered placeholders (`$1`, `$2`, ...), each followed by its
/// cast when one is asked for: a VALUES list is typed by its parameters there. SQLite gets plain
/// `?`, which sqlx binds by position (numbered ones it looks up by name, one search per
/// parameter), and never a cast.
pub(crate) struct SqlText {
    backend: DatabaseBackend,
    text: String,
    values: Vec<Value>,
}

impl SqlText {
    pub fn new(backend: DatabaseBackend) -> Self {
        SqlText::with_capacity(backend, 256, 0)
    }

    pub fn with_capacity(backend: DatabaseBackend, text: usize, values: usize) -> Self {
        SqlText {
            backend,
            text: String::with_capacity(text),
            values: Vec::with_capacity(values),
        }
    }

    pub fn postgres(&self) -> bool {
        self.backend == DatabaseBackend::Postgres
    }

    /// Appends SQL text (never a value).
    pub fn push(&mut self, sql: &str) {
        self.text.push_str(sql);
    }

    /// Appends a placeholder for `value`.
    pub fn bind(&mut self, value: impl Into<Value>) {
        self.bind_cast(value, "");
    }

    /// Appends a placeholder for `value`, cast with `cast` (`"::jsonb"`, ...) on PostgreSQL.
    pub fn bind_cast(&mut self, value: impl Into<Value>, cast: &str) {
        self.values.push(value.into());
        if self.postgres() {
            let _ = write!(self.text, "${}{cast}", self.values.len());
        } else {
            self.text.push('?');
        }
    }

    /// Appends one row of a VALUES list, `(p1, p2, ...)`: each value with its cast (`""` for
    /// none).
    pub fn row(&mut self, row: impl IntoIterator<Item = (Value, &'static str)>) {
        self.push("(");
        for (i, (value, cast)) in row.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind_cast(value, cast);
        }
        self.push(")");
    }

    pub fn into_statement(self) -> Statement {
        Statement::from_sql_and_values(self.backend, self.text, self.values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_number_their_placeholders_on_from_the_values_before_them() {
        let mut sql = SqlText::new(DatabaseBackend::Postgres);
        sql.push("WHERE a = ");
        sql.bind(0i64);
        sql.push(" VALUES ");
        sql.row([(1i64.into(), ""), ("{}".into(), "::jsonb")]);
        sql.push(", ");
        sql.row([(2i64.into(), ""), ("[]".into(), "::jsonb")]);
        let statement = sql.into_statement();
        assert_eq!(
            statement.sql,
            "WHERE a = $1 VALUES ($2, $3::jsonb), ($4, $5::jsonb)"
        );
        assert_eq!(statement.values.map(|v| v.0.len()), Some(5));
    }

    #[test]
    fn sqlite_gets_plain_placeholders_without_casts() {
        let mut sql = SqlText::new(DatabaseBackend::Sqlite);
        sql.push("WHERE a = ");
        sql.bind_cast(0i64, "::int8");
        sql.push(" VALUES ");
        sql.row([(1i64.into(), "::int8"), (2i64.into(), "")]);
        assert_eq!(sql.into_statement().sql, "WHERE a = ? VALUES (?, ?)");
    }
}
