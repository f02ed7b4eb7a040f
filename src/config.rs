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
    /// Tasks this process runs at once.
    #[arg(long, env = "ROSTER_TASK_CONCURRENCY", default_value_t = 2)]
    pub task_concurrency: usize,
    /// Seconds a task lease lasts without renewal (renewed every third of it); after that another
    /// replica takes the task over.
    #[arg(long, env = "ROSTER_TASK_LEASE_SECONDS", default_value_t = 30)]
    pub task_lease_seconds: u64,
    /// Hours finished tasks are kept before they are purged.
    #[arg(long, env = "ROSTER_TASK_RETENTION_HOURS", default_value_t = 168)]
    pub task_retention_hours: u64,
    /// Products to tell about lifecycle changes, as `name=endpoint` pairs, comma-separated
    /// (`chat=http://chat:50051,video=http://video:50051`).
    #[arg(long, env = "ROSTER_PRODUCTS", value_delimiter = ',')]
    pub products: Vec<String>,
    /// Deadline of one ProductHook call, in milliseconds.
    #[arg(long, env = "ROSTER_PRODUCT_TIMEOUT_MS", default_value_t = 5000)]
    pub product_timeout_ms: u64,
    /// Retries of a failing product call before the user's item is recorded as an error.
    #[arg(long, env = "ROSTER_PRODUCT_RETRIES", default_value_t = 5)]
    pub product_retries: u32,
    /// Wait before the first retry of a product, in milliseconds; doubled each retry (30 s cap).
    #[arg(long, env = "ROSTER_PRODUCT_BACKOFF_MS", default_value_t = 200)]
    pub product_backoff_ms: u64,
    /// Hours change-feed events are kept.
    #[arg(long, env = "ROSTER_EVENT_RETENTION_HOURS", default_value_t = 168)]
    pub event_retention_hours: u64,
    /// Migrate the database on start. Turn off when migrations run separately (the Helm chart's
    /// migration Job); `serve` then waits until the schema is current.
    #[arg(long, env = "ROSTER_MIGRATE_ON_START", default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate_on_start: bool,
    /// Test hook: milliseconds to pause before each task item.
    #[arg(
        long,
        env = "ROSTER_TASK_ITEM_DELAY_MS",
        default_value_t = 0,
        hide = true
    )]
    pub task_item_delay_ms: u64,
}

impl Config {
    pub fn worker(&self) -> crate::tasks::WorkerConfig {
        let lease = std::time::Duration::from_secs(self.task_lease_seconds.max(1));
        crate::tasks::WorkerConfig {
            concurrency: self.task_concurrency.max(1),
            lease,
            heartbeat: lease / 3,
            retention: std::time::Duration::from_secs(self.task_retention_hours * 3600),
            item_delay: std::time::Duration::from_millis(self.task_item_delay_ms),
            retry: crate::tasks::RetryPolicy {
                retries: self.product_retries,
                backoff: std::time::Duration::from_millis(self.product_backoff_ms),
                max_backoff: std::time::Duration::from_secs(30),
            },
            event_retention: std::time::Duration::from_secs(self.event_retention_hours * 3600),
            ..Default::default()
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: DEFAULT_DATABASE_URL.to_string(),
            listen: SocketAddr::from(([0, 0, 0, 0], 50051)),
            log_format: LogFormat::Pretty,
            database_max_connections: 16,
            shutdown_grace_seconds: 20,
            task_concurrency: 2,
            task_lease_seconds: 30,
            task_retention_hours: 168,
            task_item_delay_ms: 0,
            products: Vec::new(),
            product_timeout_ms: 5000,
            product_retries: 5,
            product_backoff_ms: 200,
            event_retention_hours: 168,
            migrate_on_start: true,
        }
    }
}
