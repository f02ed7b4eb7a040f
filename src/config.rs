//! Configuration: flags, each with a `ROSTER_*` environment variable (clap's `env`), flags first.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgAction, Args, CommandFactory, Parser, Subcommand};
use serde::Serialize;

use crate::domain::presence::{DEFAULT_PRESENCE_WINDOW, Presence};
use crate::domain::time::Clock;
use crate::domain::token::{DEFAULT_LEEWAY, MAX_LEEWAY, UserTokens};
use crate::telemetry::LogFormat;

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
    Serve(Box<Config>),
    /// Apply pending database migrations and exit.
    Migrate(DatabaseArgs),
    /// Ask a running roster for its health; exit 0 when SERVING.
    Healthcheck(HealthcheckArgs),
    /// Show how roster is configured: `--defaults` prints every flag with its environment
    /// variable and default, as JSON.
    Config(ConfigArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// Print the flags of `serve`, `migrate` and `healthcheck` with their environment variables
    /// and defaults, as JSON.
    #[arg(long, required = true)]
    pub defaults: bool,
}

/// One flag of a subcommand as clap parses it: what `roster config --defaults` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlagDefault {
    /// `--listen`.
    pub flag: String,
    /// `ROSTER_LISTEN`, if the flag can be set from the environment.
    pub env: Option<String>,
    /// The value used when neither the flag nor the variable is given (list values joined by
    /// their delimiter); `None` when there is none.
    pub default: Option<String>,
    /// Left out of `--help` (test hooks and aliases).
    pub hidden: bool,
}

/// The flags of every subcommand that takes any (`serve`, `migrate`, `healthcheck`), read from
/// clap's own description of the command line, so they are the defaults the binary applies.
/// `roster` without a subcommand takes the flags of `serve`.
pub fn flag_defaults() -> std::collections::BTreeMap<String, Vec<FlagDefault>> {
    Cli::command()
        .get_subcommands()
        .map(|sub| (sub.get_name().to_owned(), command_flags(sub)))
        .filter(|(_, flags)| !flags.is_empty())
        .filter(|(name, _)| name != "config")
        .collect()
}

fn command_flags(command: &clap::Command) -> Vec<FlagDefault> {
    command
        .get_arguments()
        .filter(|arg| {
            !matches!(
                arg.get_action(),
                ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
            )
        })
        .map(|arg| {
            let defaults: Vec<_> = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            let delimiter = arg.get_value_delimiter().unwrap_or(',').to_string();
            FlagDefault {
                flag: match arg.get_long() {
                    Some(long) => format!("--{long}"),
                    None => arg.get_id().to_string(),
                },
                env: arg.get_env().map(|e| e.to_string_lossy().into_owned()),
                default: (!defaults.is_empty()).then(|| defaults.join(&delimiter)),
                hidden: arg.is_hide_set(),
            }
        })
        .collect()
}

/// [`flag_defaults`] as pretty-printed JSON: `{"serve": [{"flag", "env", "default", "hidden"}]}`.
pub fn flag_defaults_json() -> String {
    serde_json::to_string_pretty(&flag_defaults()).expect("plain strings serialize")
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Database URL: `sqlite://FILE?mode=rwc` or `postgres://USER@HOST/DB`.
    #[arg(long, env = "ROSTER_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: DatabaseUrl,
    /// A file holding the database URL (instead of `--database-url`).
    #[arg(long, env = "ROSTER_DATABASE_URL_FILE")]
    pub database_url_file: Option<PathBuf>,
    /// Named prepared statements kept per PostgreSQL connection. 0 keeps none: needed behind a
    /// pooler in transaction mode such as PgBouncer before 1.21, where the next transaction may
    /// run on another server connection. Ignored on SQLite.
    #[arg(long, env = "ROSTER_DATABASE_STATEMENT_CACHE", default_value_t = DEFAULT_STATEMENT_CACHE)]
    pub database_statement_cache: usize,
    /// Log format.
    #[arg(long, env = "ROSTER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
}

impl DatabaseArgs {
    pub fn resolve_files(&mut self) -> anyhow::Result<()> {
        if let Some(path) = &self.database_url_file {
            self.database_url = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?
                .trim()
                .into();
        }
        Ok(())
    }
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
    /// CA (PEM) to trust for an `https://` address (defaults to the server's own client CA,
    /// `ROSTER_TLS_CLIENT_CA`, as deployments usually sign both with one CA).
    #[arg(long, env = "ROSTER_HEALTHCHECK_CA")]
    pub ca: Option<PathBuf>,
    /// Server name to expect in the server's certificate (default: the address's host).
    #[arg(long, env = "ROSTER_HEALTHCHECK_TLS_DOMAIN")]
    pub tls_domain: Option<String>,
    /// Client certificate and key (PEM) to present under mutual TLS (default: the server's own,
    /// `ROSTER_TLS_CERT` / `ROSTER_TLS_KEY`).
    #[arg(long, env = "ROSTER_TLS_CERT")]
    pub client_cert: Option<PathBuf>,
    #[arg(long, env = "ROSTER_TLS_KEY")]
    pub client_key: Option<PathBuf>,
    #[arg(long, env = "ROSTER_TLS_CLIENT_CA", hide = true)]
    pub server_client_ca: Option<PathBuf>,
}

pub const DEFAULT_DATABASE_URL: &str = "sqlite://roster.db?mode=rwc";

/// Named prepared statements per PostgreSQL connection unless `--database-statement-cache` says
/// otherwise: the database driver's own default, as the store's `DEFAULT_STATEMENT_CACHE`.
pub const DEFAULT_STATEMENT_CACHE: usize = 100;

/// Everything `roster serve` needs.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Database URL: `sqlite://FILE?mode=rwc` (default, created on first start) or
    /// `postgres://USER@HOST/DB`.
    #[arg(long, env = "ROSTER_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: DatabaseUrl,
    /// gRPC listen address.
    #[arg(long, env = "ROSTER_LISTEN", default_value = "0.0.0.0:50051")]
    pub listen: SocketAddr,
    /// Log format.
    #[arg(long, env = "ROSTER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
    /// Largest database connection pool.
    #[arg(long, env = "ROSTER_DATABASE_MAX_CONNECTIONS", default_value_t = 16)]
    pub database_max_connections: u32,
    /// Milliseconds a call waits for a pooled database connection before it answers UNAVAILABLE.
    #[arg(
        long,
        env = "ROSTER_DATABASE_ACQUIRE_TIMEOUT_MS",
        default_value_t = crate::store::DEFAULT_ACQUIRE_TIMEOUT_MS
    )]
    pub database_acquire_timeout_ms: u64,
    /// Named prepared statements kept per PostgreSQL connection. 0 keeps none: needed behind a
    /// pooler in transaction mode such as PgBouncer before 1.21, where the next transaction may
    /// run on another server connection. Ignored on SQLite.
    #[arg(long, env = "ROSTER_DATABASE_STATEMENT_CACHE", default_value_t = DEFAULT_STATEMENT_CACHE)]
    pub database_statement_cache: usize,
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
    /// Run the task worker (and the purge of old tasks and events) in this process. Turn off for
    /// a replica that only serves calls; then another replica must run the worker, or tasks stay
    /// pending.
    #[arg(long, env = "ROSTER_WORKER", default_value_t = true, action = clap::ArgAction::Set)]
    pub worker: bool,
    /// Migrate the database on start. Turn off when migrations run separately (the Helm chart's
    /// migration Job); `serve` then waits until the schema is current.
    #[arg(long, env = "ROSTER_MIGRATE_ON_START", default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate_on_start: bool,
    /// API secrets callers sign their HS256 bearer tokens with, comma-separated (several, for
    /// rotation). Without any, roster serves on loopback only.
    #[arg(
        long,
        env = "ROSTER_API_SECRETS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_secrets: Vec<Secret>,
    /// A file holding the API secrets (comma- or newline-separated), e.g. a mounted Secret.
    #[arg(long, env = "ROSTER_API_SECRETS_FILE")]
    pub api_secrets_file: Option<PathBuf>,
    /// A file holding the database URL (instead of `--database-url`).
    #[arg(long, env = "ROSTER_DATABASE_URL_FILE")]
    pub database_url_file: Option<PathBuf>,
    /// Serve without API secrets on a non-loopback address. Only for networks you trust.
    #[arg(long, env = "ROSTER_INSECURE", default_value_t = false)]
    pub insecure: bool,
    /// TLS certificate chain (PEM); with `--tls-key`, gRPC is served over TLS.
    #[arg(long, env = "ROSTER_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "ROSTER_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) that client certificates must chain to: mutual TLS, every caller presents one.
    #[arg(long, env = "ROSTER_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// A plaintext port serving only gRPC health (for kubelet probes when TLS is on).
    #[arg(long, env = "ROSTER_HEALTH_LISTEN")]
    pub health_listen: Option<SocketAddr>,
    /// Address of the Stream-compatible HTTP door (JSON over HTTP/1.1 and h2c; the official
    /// Stream server SDKs call it as their base URL). Same exposure rule as `--listen`.
    #[arg(long, env = "ROSTER_HTTP_LISTEN", default_value = "0.0.0.0:3030")]
    pub http_listen: Option<SocketAddr>,
    /// The app key HTTP callers name in `?api_key=` (the SDKs' "API key"); a request naming
    /// another is refused. Without one, any key is accepted.
    #[arg(long, env = "ROSTER_API_KEY")]
    pub api_key: Option<String>,
    /// Prometheus metrics address (`GET /metrics`).
    #[arg(long, env = "ROSTER_METRICS_LISTEN", default_value = "0.0.0.0:9090")]
    pub metrics_listen: Option<SocketAddr>,
    /// Calls served at once; more are refused with RESOURCE_EXHAUSTED instead of queueing.
    #[arg(long, env = "ROSTER_MAX_CONCURRENT_REQUESTS", default_value_t = 512)]
    pub max_concurrent_requests: usize,
    /// Largest request message, in bytes.
    #[arg(long, env = "ROSTER_MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// Deadline of a call that sets none (a `grpc-timeout` from the caller is honoured too).
    #[arg(long, env = "ROSTER_REQUEST_TIMEOUT_SECONDS", default_value_t = 30)]
    pub request_timeout_seconds: u64,
    /// Connections are closed (gracefully) after this long, so clients rebalance across
    /// replicas.
    #[arg(long, env = "ROSTER_MAX_CONNECTION_AGE_SECONDS", default_value_t = 300)]
    pub max_connection_age_seconds: u64,
    /// Secret that signs and verifies user tokens (HS256; at least 32 bytes). Without one,
    /// CreateUserToken and VerifyUserToken answer FAILED_PRECONDITION.
    #[arg(long, env = "ROSTER_USER_TOKEN_SECRET", hide_env_values = true)]
    pub user_token_secret: Option<Secret>,
    /// File holding the user-token secret (one trailing newline is ignored); instead of
    /// `--user-token-secret`.
    #[arg(long, env = "ROSTER_USER_TOKEN_SECRET_FILE")]
    pub user_token_secret_file: Option<PathBuf>,
    /// Seconds by which caller tokens and user tokens may disagree with roster's clock: a token is
    /// refused once `exp` plus this has passed, while `nbf` is more than this ahead, and when
    /// `iat` is more than this ahead.
    #[arg(long, env = "ROSTER_TOKEN_LEEWAY_SECONDS", default_value_t = DEFAULT_LEEWAY.as_secs(), value_parser = clap::value_parser!(u64).range(0..=MAX_LEEWAY.as_secs()))]
    pub token_leeway_seconds: u64,
    /// Seconds a user counts as online after its last successful token verification.
    #[arg(long, env = "ROSTER_PRESENCE_WINDOW_SECONDS", default_value_t = DEFAULT_PRESENCE_WINDOW.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    pub presence_window_seconds: u64,
    /// Where every instant comes from. Not a flag: tests start a server with a clock they
    /// advance (bans expire, tokens expire, presence fades) instead of sleeping.
    #[arg(skip)]
    pub clock: Clock,
    /// Test hook: milliseconds to pause before each task item.
    #[arg(
        long,
        env = "ROSTER_TASK_ITEM_DELAY_MS",
        default_value_t = 0,
        hide = true
    )]
    pub task_item_delay_ms: u64,
}

/// A secret from the command line or the environment; `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_owned())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

/// A database URL; `Debug` and `Display` show its password as `***`, so a configuration that is
/// logged or printed never reveals it. `expose` gives the URL to connect with.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with the password of its user part, if any, replaced by `***`.
    pub fn redacted(&self) -> String {
        let url = &self.0;
        let Some((scheme, rest)) = url.split_once("://") else {
            return url.clone();
        };
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        match authority.rsplit_once('@') {
            Some((user_info, host)) => match user_info.split_once(':') {
                Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
                None => url.clone(),
            },
            None => url.clone(),
        }
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl std::str::FromStr for DatabaseUrl {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(DatabaseUrl(s.to_owned()))
    }
}

impl From<&str> for DatabaseUrl {
    fn from(s: &str) -> Self {
        DatabaseUrl(s.to_owned())
    }
}

impl From<String> for DatabaseUrl {
    fn from(s: String) -> Self {
        DatabaseUrl(s)
    }
}

impl Config {
    /// Reads the `*_FILE` settings (mounted secrets) into their values.
    pub fn resolve_files(&mut self) -> anyhow::Result<()> {
        if let Some(path) = &self.api_secrets_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
            self.api_secrets.extend(
                text.split([',', '\n'])
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(Secret::from),
            );
        }
        if let Some(path) = &self.database_url_file {
            self.database_url = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?
                .trim()
                .into();
        }
        self.api_secrets.retain(|s| !s.expose().is_empty());
        Ok(())
    }

    /// Where to listen: without API secrets (and without `--insecure`), "every interface" is
    /// narrowed to loopback, so an unauthenticated roster is never reachable from the network.
    pub fn effective_listen(&self) -> SocketAddr {
        self.narrowed(self.listen)
    }

    /// `--http-listen`, narrowed to loopback by the rule of [`Config::effective_listen`].
    pub fn effective_http_listen(&self) -> Option<SocketAddr> {
        self.http_listen.map(|addr| self.narrowed(addr))
    }

    fn narrowed(&self, addr: SocketAddr) -> SocketAddr {
        if self.api_secrets.is_empty() && !self.insecure && addr.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], addr.port()))
        } else {
            addr
        }
    }

    /// The user-token signer, from `--user-token-secret` or the file it names; `None` when
    /// neither is given. Fails on both at once, an unreadable file or a secret under 32 bytes,
    /// so that a misconfigured server does not start.
    pub fn user_tokens(&self) -> anyhow::Result<Option<UserTokens>> {
        let secret = match (&self.user_token_secret, &self.user_token_secret_file) {
            (Some(_), Some(_)) => anyhow::bail!(
                "give the user-token secret once: --user-token-secret (ROSTER_USER_TOKEN_SECRET) \
                 or --user-token-secret-file (ROSTER_USER_TOKEN_SECRET_FILE), not both"
            ),
            (Some(secret), None) => secret.expose().as_bytes().to_vec(),
            (None, Some(path)) => {
                let mut bytes = std::fs::read(path).with_context(|| {
                    format!("reading the user-token secret from {}", path.display())
                })?;
                if bytes.ends_with(b"\n") {
                    bytes.pop();
                    if bytes.ends_with(b"\r") {
                        bytes.pop();
                    }
                }
                bytes
            }
            (None, None) => return Ok(None),
        };
        UserTokens::new(&secret)
            .map(|tokens| Some(tokens.with_leeway(self.token_leeway())))
            .map_err(|why| anyhow::anyhow!(why))
    }

    pub fn token_leeway(&self) -> Duration {
        Duration::from_secs(self.token_leeway_seconds)
    }

    pub fn presence(&self) -> Presence {
        Presence::new(Duration::from_secs(self.presence_window_seconds))
    }

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
            database_url: DEFAULT_DATABASE_URL.into(),
            listen: SocketAddr::from(([0, 0, 0, 0], 50051)),
            log_format: LogFormat::Pretty,
            database_max_connections: 16,
            database_acquire_timeout_ms: crate::store::DEFAULT_ACQUIRE_TIMEOUT_MS,
            database_statement_cache: DEFAULT_STATEMENT_CACHE,
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
            worker: true,
            api_secrets: Vec::new(),
            api_secrets_file: None,
            database_url_file: None,
            insecure: false,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            health_listen: None,
            metrics_listen: None,
            http_listen: None,
            api_key: None,
            max_concurrent_requests: 512,
            max_message_bytes: 4 * 1024 * 1024,
            request_timeout_seconds: 30,
            max_connection_age_seconds: 300,
            user_token_secret: None,
            user_token_secret_file: None,
            presence_window_seconds: DEFAULT_PRESENCE_WINDOW.as_secs(),
            token_leeway_seconds: DEFAULT_LEEWAY.as_secs(),
            clock: Clock::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_secret(secret: Option<&str>, file: Option<PathBuf>) -> Config {
        Config {
            user_token_secret: secret.map(|s| Secret(s.to_owned())),
            user_token_secret_file: file,
            ..Config::default()
        }
    }

    /// A configuration printed with `{:?}` (a log line, a panic message) shows no secret and no
    /// database password, from flags, environment variables or files alike.
    #[test]
    fn debug_output_shows_secrets_and_url_passwords_as_stars() {
        let config = Config {
            api_secrets: vec!["api-secret-one".into(), "api-secret-two".into()],
            user_token_secret: Some("user-token-secret-0123456789abcdef".into()),
            database_url: "postgres://roster:hunter2@db.internal:5432/roster?sslmode=require"
                .into(),
            ..Config::default()
        };
        let shown = format!("{config:?}");
        for secret in [
            "api-secret-one",
            "api-secret-two",
            "user-token-secret",
            "hunter2",
        ] {
            assert!(!shown.contains(secret), "{secret} shown in {shown}");
        }
        assert!(
            shown.contains("\"postgres://roster:***@db.internal:5432/roster?sslmode=require\""),
            "{shown}"
        );
        assert!(shown.contains("api_secrets: [***, ***]"), "{shown}");
        // As the command line parses it, for `serve` and for `migrate`.
        for command in ["serve", "migrate"] {
            let cli = Cli::try_parse_from([
                "roster",
                command,
                "--database-url",
                "postgres://u:p%40ss@h/d",
            ]);
            let shown = format!("{cli:?}");
            assert!(cli.is_ok() && !shown.contains("p%40ss"), "{shown}");
            assert!(shown.contains("postgres://u:***@h/d"), "{shown}");
        }
    }

    #[test]
    fn database_urls_keep_everything_but_the_password() {
        let redacted = |url: &str| DatabaseUrl::from(url).redacted();
        assert_eq!(
            redacted("postgres://u:pw@h:5432/d"),
            "postgres://u:***@h:5432/d"
        );
        assert_eq!(redacted("postgres://u@h/d"), "postgres://u@h/d");
        assert_eq!(redacted("postgres://h/d?user=u"), "postgres://h/d?user=u");
        assert_eq!(
            redacted("sqlite://roster.db?mode=rwc"),
            "sqlite://roster.db?mode=rwc"
        );
        assert_eq!(redacted("postgres://u:p@ss@h/d"), "postgres://u:***@h/d");
        // The URL to connect with is unchanged.
        assert_eq!(
            DatabaseUrl::from("postgres://u:pw@h/d").expose(),
            "postgres://u:pw@h/d"
        );
    }

    #[test]
    fn the_user_token_secret_comes_from_a_flag_or_a_file_never_both() {
        let long = "0123456789abcdef0123456789abcdef";
        assert!(with_secret(None, None).user_tokens().unwrap().is_none());
        assert!(
            with_secret(Some(long), None)
                .user_tokens()
                .unwrap()
                .is_some()
        );
        assert!(with_secret(Some("short"), None).user_tokens().is_err());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, format!("{long}\n")).unwrap();
        let from_file = with_secret(None, Some(path.clone())).user_tokens().unwrap();
        let from_flag = with_secret(Some(long), None).user_tokens().unwrap();
        let (Some(from_file), Some(from_flag)) = (from_file, from_flag) else {
            panic!("both configured");
        };
        // The trailing newline is not part of the secret: both sign alike.
        let token = from_file.issue("u1", 0, None, None).unwrap().token;
        assert!(from_flag.verify(&token, 0).is_ok());
        assert!(with_secret(Some(long), Some(path)).user_tokens().is_err());
        let missing = dir.path().join("missing");
        assert!(with_secret(None, Some(missing)).user_tokens().is_err());
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let config = with_secret(Some("0123456789abcdef0123456789abcdef"), None);
        assert!(!format!("{config:?}").contains("0123456789abcdef"));
    }

    fn serve_flag(flags: &[FlagDefault], flag: &str) -> FlagDefault {
        flags
            .iter()
            .find(|f| f.flag == flag)
            .unwrap_or_else(|| panic!("no {flag} among {flags:?}"))
            .clone()
    }

    #[test]
    fn config_defaults_lists_every_flag_with_its_variable_and_default() {
        let all = flag_defaults();
        assert_eq!(
            all.keys().collect::<Vec<_>>(),
            ["healthcheck", "migrate", "serve"]
        );
        let serve = &all["serve"];
        let listen = serve_flag(serve, "--listen");
        assert_eq!(listen.env.as_deref(), Some("ROSTER_LISTEN"));
        assert_eq!(listen.default.as_deref(), Some("0.0.0.0:50051"));
        let metrics = serve_flag(serve, "--metrics-listen");
        assert_eq!(metrics.env.as_deref(), Some("ROSTER_METRICS_LISTEN"));
        assert_eq!(metrics.default.as_deref(), Some("0.0.0.0:9090"));
        let http = serve_flag(serve, "--http-listen");
        assert_eq!(http.env.as_deref(), Some("ROSTER_HTTP_LISTEN"));
        assert_eq!(http.default.as_deref(), Some("0.0.0.0:3030"));
        let database = serve_flag(serve, "--database-url");
        assert_eq!(database.default.as_deref(), Some(DEFAULT_DATABASE_URL));
        let presence = serve_flag(serve, "--presence-window-seconds");
        assert_eq!(presence.default.as_deref(), Some("60"));
        assert_eq!(serve_flag(serve, "--products").default, None);
        assert!(serve_flag(serve, "--task-item-delay-ms").hidden);
        let health = serve_flag(&all["healthcheck"], "--addr");
        assert_eq!(health.default.as_deref(), Some("http://127.0.0.1:50051"));
        // Every flag can come from a ROSTER_* variable (the chart sets them that way).
        for (command, flags) in &all {
            for f in flags {
                assert!(
                    f.env.as_deref().is_some_and(|e| e.starts_with("ROSTER_")),
                    "{command} {} has no ROSTER_* variable",
                    f.flag
                );
            }
        }
        // `roster` alone is `roster serve`: the same flags.
        assert_eq!(command_flags(&Cli::command()), *serve);
        let json: serde_json::Value = serde_json::from_str(&flag_defaults_json()).unwrap();
        assert_eq!(json["serve"][0]["flag"], "--database-url");
    }

    #[test]
    fn every_printed_default_is_a_value_the_flag_accepts() {
        for (command, flags) in flag_defaults() {
            for f in flags {
                let Some(default) = f.default else { continue };
                let arg = Cli::command()
                    .find_subcommand(&command)
                    .and_then(|c| {
                        c.get_arguments()
                            .find(|a| a.get_long() == f.flag.strip_prefix("--"))
                            .cloned()
                    })
                    .unwrap();
                if !arg.get_action().takes_values() {
                    continue;
                }
                let given = format!("{}={default}", f.flag);
                assert!(
                    Cli::try_parse_from(["roster", command.as_str(), given.as_str()]).is_ok(),
                    "roster {command} {given} is refused"
                );
            }
        }
        assert!(Cli::try_parse_from(["roster", "config"]).is_err());
        assert!(Cli::try_parse_from(["roster", "config", "--defaults"]).is_ok());
    }

    #[test]
    fn the_presence_window_flag_defaults_to_60_seconds_and_refuses_0() {
        let cli = Cli::try_parse_from(["roster"]).unwrap();
        assert_eq!(cli.serve.presence_window_seconds, 60);
        assert!(Cli::try_parse_from(["roster", "--presence-window-seconds", "0"]).is_err());
    }

    #[test]
    fn the_token_leeway_defaults_to_5_seconds_and_is_at_most_300() {
        let cli = Cli::try_parse_from(["roster"]).unwrap();
        assert_eq!(cli.serve.token_leeway_seconds, 5);
        assert_eq!(Config::default().token_leeway_seconds, 5);
        let zero = Cli::try_parse_from(["roster", "--token-leeway-seconds", "0"]).unwrap();
        assert_eq!(zero.serve.token_leeway(), Duration::ZERO);
        assert!(Cli::try_parse_from(["roster", "--token-leeway-seconds", "301"]).is_err());
    }
}
