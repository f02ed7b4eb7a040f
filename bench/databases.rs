//! Fresh databases for one run: a temporary SQLite file, or a PostgreSQL database created on the
//! given server and dropped afterwards.
use std::path::PathBuf;

use anyhow::Context;
use sea_orm::sqlx::{self, Connection};

use crate::cli::DbKind;

/// A database made for this run; `drop_it` removes it.
pub struct FreshDb {
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(PathBuf),
    Postgres { admin_url: String, name: String },
}

impl FreshDb {
    /// Creates an empty database named after `label` (no schema: roster's migrations make it).
    pub async fn create(kind: DbKind, pg_url: &str, label: &str) -> anyhow::Result<FreshDb> {
        let tag = format!("roster_bench_{}_{label}", std::process::id());
        match kind {
            DbKind::Sqlite => {
                let dir = std::env::temp_dir().join(&tag);
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                let url = format!("sqlite://{}?mode=rwc", dir.join("roster.db").display());
                Ok(FreshDb {
                    url,
                    cleanup: Cleanup::Sqlite(dir),
                })
            }
            DbKind::Postgres => {
                let mut admin = sqlx::PgConnection::connect(pg_url)
                    .await
                    .with_context(|| format!("connecting to PostgreSQL at {pg_url}"))?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {tag} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {tag}")))
                    .execute(&mut admin)
                    .await
                    .with_context(|| format!("creating database {tag}"))?;
                admin.close().await?;
                Ok(FreshDb {
                    url: database_url(pg_url, &tag)?,
                    cleanup: Cleanup::Postgres {
                        admin_url: pg_url.to_owned(),
                        name: tag,
                    },
                })
            }
        }
    }

    pub async fn drop_it(self) -> anyhow::Result<()> {
        match self.cleanup {
            Cleanup::Sqlite(dir) => {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("removing {}", dir.display()))?;
            }
            Cleanup::Postgres { admin_url, name } => {
                let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await?;
                admin.close().await?;
            }
        }
        Ok(())
    }
}

/// `pg_url` with its database name replaced by `name`.
fn database_url(pg_url: &str, name: &str) -> anyhow::Result<String> {
    let (base, query) = match pg_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (pg_url, None),
    };
    let scheme_end = base
        .find("://")
        .context("--pg-url must be a postgres:// URL")?
        + 3;
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut url = format!("{}/{name}", &base[..host_end]);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::database_url;

    #[test]
    fn database_url_replaces_only_the_database_name() {
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5432/postgres", "b1").ok(),
            Some("postgres://postgres@127.0.0.1:5432/b1".to_owned())
        );
        assert_eq!(
            database_url("postgres://u:p@h/admin?sslmode=disable", "b2").ok(),
            Some("postgres://u:p@h/b2?sslmode=disable".to_owned())
        );
        assert_eq!(
            database_url("postgresql://h:5433", "b3").ok(),
            Some("postgresql://h:5433/b3".to_owned())
        );
    }
}
