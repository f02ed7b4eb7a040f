//! Configuration: flags, each with a `ROSTER_*` environment variable (clap's `env`), flags first.
use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "roster",
    version,
    about = "Self-hosted user-management service"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options for `serve`, also accepted without the subcommand (`roster` = `roster serve`).
    #[command(flatten)]
    pub serve: Config,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC service (the default).
    Serve(Config),
    /// Apply pending database migrations and exit.
    Migrate(DatabaseArgs),
    /// Ask a running roster for its health; exit 0 when SERVING.
    Healthcheck(HealthcheckArgs),
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Database URL: `sqlite://FILE?mode=rwc` or `postgres://USER@HOST/DB`.
    #[arg(long, env = "ROSTER_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// Log format.
    #[arg(long, env = "ROSTER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// Address of the roster to ask.
    #[arg(
        long,
        env = "ROSTER_HEALTHCHECK_ADDR",
        default_value = "http://127.0.0.1:50051"
    )]
    pub addr: String,
}

pub const DEFAULT_DATABASE_URL: &str = "sqlite://roster.db?mode=rwc";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Everything `roster serve` needs.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Database URL: `sqlite://FILE?mode=rwc` (default, created on first start) or
    /// `postgres://USER@HOST/DB`.
    #[arg(long, env = "ROSTER_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// gRPC listen address.
    #[arg(long, env = "ROSTER_LISTEN", default_value = "0.0.0.0:50051")]
    pub listen: SocketAddr,
    /// Log format.
    #[arg(long, env = "ROSTER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
    /// Largest database connection pool.
    #[arg(long, env = "ROSTER_DATABASE_MAX_CONNECTIONS", default_value_t = 16)]
    pub database_max_connections: u32,
    /// Seconds to wait for in-flight calls after SIGTERM before exiting.
    #[arg(long, env = "ROSTER_SHUTDOWN_GRACE_SECONDS", default_value_t = 20)]
    pub shutdown_grace_seconds: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: DEFAULT_DATABASE_URL.to_string(),
            listen: SocketAddr::from(([0, 0, 0, 0], 50051)),
            log_format: LogFormat::Pretty,
            database_max_connections: 16,
            shutdown_grace_seconds: 20,
        }
    }
}
