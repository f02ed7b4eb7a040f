//! Wiring: migrate, then serve every roster service plus health and reflection on one listener,
//! until the shutdown signal; then drain within the grace period. Everything started here for the
//! process's lifetime runs on one `TaskTracker` and stops on one `CancellationToken` (the bus's),
//! so `run` returns only once all of it has stopped and the pool is closed.
use std::{future::Future, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::App;
use crate::bus::Bus;
use crate::config::Config;
use crate::grpc::product_client::ProductClients;
use crate::grpc::server::{Health, MainPort};
use crate::http::HttpPort;
use crate::store::Store;
use crate::store::health::Probe;
use crate::tasks::{NoProducts, Products, spawn_workers};

/// The ports `serve` answers on, bound by the caller: the binary binds the configured
/// addresses (see `run`); tests bind `127.0.0.1:0` and learn the ports before the server starts.
pub struct Listeners {
    /// Every roster service, health and reflection.
    pub main: TcpListener,
    /// Plaintext gRPC health only (for kubelet probes when the main port speaks mTLS).
    pub health: Option<TcpListener>,
    /// Prometheus `GET /metrics`.
    pub metrics: Option<TcpListener>,
    /// The Stream-compatible HTTP door.
    pub http: Option<TcpListener>,
}

impl Listeners {
    /// `main`, plus the health-only, metrics and HTTP ports bound at the configured addresses
    /// (the HTTP one narrowed to loopback like `main`, see `Config::effective_http_listen`). A health
    /// port that cannot be bound is fatal (probes would fail anyway); metrics are for operators,
    /// not callers, so a metrics port already taken is reported and served without.
    pub async fn bind(main: TcpListener, config: &Config) -> anyhow::Result<Self> {
        let health = match config.health_listen {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        let metrics = match config.metrics_listen {
            Some(addr) => match TcpListener::bind(addr).await {
                Ok(listener) => Some(listener),
                Err(err) => {
                    tracing::error!(%addr, error = %crate::error::Chain(&err), "cannot serve metrics; continuing without /metrics");
                    None
                }
            },
            None => None,
        };
        // Callers of the HTTP door need it as much as gRPC callers need the main port.
        let http = match config.effective_http_listen() {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        Ok(Listeners {
            main,
            health,
            metrics,
            http,
        })
    }
}

/// Runs roster on `listener` (and the configured health-only and metrics addresses) until
/// `shutdown` resolves. See `serve`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    check_exposure(&config, &listener)?;
    let listeners = Listeners::bind(listener, &config).await?;
    serve(config, listeners, TaskTracker::new(), shutdown).await
}

/// Runs roster on `listeners` until `shutdown` resolves, starting its background work on `tasks`.
///
/// Health is NOT_SERVING until the database is reachable and migrated (a database that is down
/// at start is retried, so the process does not crash-loop), SERVING after, and NOT_SERVING again
/// (on every port) from the moment shutdown begins. Then everything on `tasks` is told to stop
/// and awaited for up to the grace period, the pool is closed, and only then does `serve` return:
/// a caller that passed its own tracker finds it closed and, unless the grace ran out, empty.
pub async fn serve(
    config: Config,
    listeners: Listeners,
    tasks: TaskTracker,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let Listeners {
        main: listener,
        health: health_listener,
        metrics: metrics_listener,
        http: http_listener,
    } = listeners;
    let addr = check_exposure(&config, &listener)?;
    if let Some(http_listener) = &http_listener {
        check_exposure(&config, http_listener)?;
    }
    if config.api_secrets.is_empty() {
        tracing::warn!(%addr, "no API secrets configured: callers are not authenticated");
    }
    // Everything that can fail on the configuration alone fails here, before anything starts.
    let user_tokens = config.user_tokens()?;
    if user_tokens.is_none() {
        tracing::info!(
            "no user-token secret configured: CreateUserToken and VerifyUserToken are off"
        );
    }
    let products: Arc<dyn Products> = if config.products.is_empty() {
        Arc::new(NoProducts)
    } else {
        Arc::new(ProductClients::new(
            &config.products,
            Duration::from_millis(config.product_timeout_ms),
        )?)
    };
    // One budget of calls served at once, whichever door they come through.
    let permits = Arc::new(Semaphore::new(config.max_concurrent_requests.max(1)));
    let main_port = MainPort::prepare(&config, permits.clone())?;
    let http_port = HttpPort::prepare(&config, permits)?;

    let health = Health::new().await;
    let bus = Bus::default();
    let stop = bus.shutdown_token();
    let grace = Duration::from_secs(config.shutdown_grace_seconds);
    if let Some(health_listener) = health_listener {
        tasks.spawn(health.clone().serve_only(health_listener, stop.clone()));
    }
    crate::telemetry::metrics::handle();
    if let Some(metrics_listener) = metrics_listener {
        tracing::info!(addr = %metrics_listener.local_addr()?, "metrics at /metrics");
        tasks.spawn(crate::telemetry::metrics::serve(
            metrics_listener,
            stop.clone(),
        ));
    }

    let migrated = prepare_schema(
        config.database_url.expose(),
        config.migrate_on_start,
        config.database_statement_cache,
    );
    tokio::pin!(shutdown);
    let ready = tokio::select! {
        result = migrated => result,
        () = &mut shutdown => {
            wind_down(&bus, &tasks, grace, None).await;
            return Ok(());
        }
    };
    let connected = match ready {
        Ok(()) => {
            Store::connect_with(
                config.database_url.expose(),
                config.database_max_connections,
                Duration::from_millis(config.database_acquire_timeout_ms),
                config.database_statement_cache,
            )
            .await
        }
        Err(err) => {
            wind_down(&bus, &tasks, grace, None).await;
            return Err(err);
        }
    };
    let store = match connected {
        Ok(store) => store
            .with_clock(config.clock.clone())
            .with_presence(config.presence()),
        Err(err) => {
            wind_down(&bus, &tasks, grace, None).await;
            return Err(err.into());
        }
    };
    if config.database_url.expose().starts_with("postgres") {
        tasks.spawn(watch_database(
            Probe::new(
                config.database_url.expose(),
                config.database_statement_cache,
                PROBE_TIMEOUT,
                store.db_status(),
            ),
            health.clone(),
            stop.clone(),
        ));
    }
    tasks.spawn(crate::telemetry::metrics::sample(
        store.clone(),
        stop.clone(),
    ));
    if config.worker {
        spawn_workers(
            store.clone(),
            config.worker(),
            bus.clone(),
            products,
            &tasks,
        );
    } else {
        tracing::info!("task worker off: this replica serves calls; another one runs tasks");
    }

    let app = App::new(store.clone(), bus.clone(), user_tokens, &tasks);
    let serving = match main_port.serve(app.clone(), &health, listener, stop.clone()) {
        Ok(serving) => serving,
        Err(err) => {
            wind_down(&bus, &tasks, grace, Some(store)).await;
            return Err(err);
        }
    };
    let server = tasks.spawn(serving);
    if let Some(http_listener) = http_listener {
        tracing::info!(addr = %http_listener.local_addr()?, "Stream-compatible HTTP door");
        tasks.spawn(http_port.serve(app, http_listener, stop.clone()));
    }
    health.set_serving(true).await;
    tracing::info!(%addr, "roster is serving");

    shutdown.await;
    tracing::info!("shutting down");
    health.close().await;
    let drained = wind_down(&bus, &tasks, grace, Some(store)).await;
    if drained && server.is_finished() {
        server.await??;
    }
    Ok(())
}

/// How often the database is asked whether it answers, and how long an answer may take.
const PROBE_EVERY: Duration = Duration::from_millis(500);
const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);

/// Follows whether the database answers (see `store::health`): while it does not, calls are
/// refused at once and every port reports NOT_SERVING, so that load balancers and callers stop
/// sending work here; once it answers again, SERVING.
async fn watch_database(mut probe: Probe, health: Health, stop: CancellationToken) {
    let mut up = true;
    loop {
        tokio::select! {
            () = tokio::time::sleep(PROBE_EVERY) => {}
            () = stop.cancelled() => break,
        }
        let answered = probe.check().await;
        if answered != up {
            up = answered;
            if up {
                tracing::info!("the database answers again: serving");
            } else {
                tracing::warn!("the database does not answer: refusing calls until it does");
            }
            health.set_serving(up).await;
        }
    }
    probe.close().await;
}

/// Refuses to serve unauthenticated beyond loopback unless told to; the listener's address.
fn check_exposure(config: &Config, listener: &TcpListener) -> anyhow::Result<std::net::SocketAddr> {
    let addr = listener.local_addr()?;
    if config.api_secrets.is_empty() && !config.insecure && !addr.ip().is_loopback() {
        anyhow::bail!(
            "refusing to serve on {addr} without API secrets: set ROSTER_API_SECRETS, listen on \
             loopback, or pass --insecure"
        );
    }
    Ok(addr)
}

/// Tells everything on `tasks` to stop (streams end with UNAVAILABLE, workers stop after their
/// current item and release their leases, the ports stop accepting and drain), waits for it
/// within `grace`, then closes the pool, so that nothing started by `serve` outlives it. Past the
/// grace period it gives up waiting (the process is about to exit anyway) and says so; false then.
async fn wind_down(bus: &Bus, tasks: &TaskTracker, grace: Duration, store: Option<Store>) -> bool {
    bus.shut_down();
    tasks.close();
    let drained = tokio::time::timeout(grace, tasks.wait()).await.is_ok();
    if !drained {
        tracing::warn!(
            ?grace,
            still_running = tasks.len(),
            "work still open after the grace period; exiting anyway"
        );
    }
    if let Some(store) = store {
        store.close().await;
    }
    drained
}

/// Migrates (or, when migrations run elsewhere, waits until the schema is current), retrying
/// while the database cannot be reached. Any other failure (such as a schema newer than this
/// binary) is final.
async fn prepare_schema(url: &str, migrate: bool, statement_cache: usize) -> anyhow::Result<()> {
    let mut delay = Duration::from_millis(200);
    loop {
        let attempt = if migrate {
            Store::migrate_with(url, statement_cache).await
        } else {
            Store::check_schema_with(url, statement_cache).await
        };
        match attempt {
            Ok(()) => return Ok(()),
            Err(err) if Store::is_unreachable(&err) => {
                tracing::warn!(error = %crate::error::Chain(&err), retry_in = ?delay, "database not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(err) => return Err(anyhow::anyhow!("migrating the database failed: {err}")),
        }
    }
}
