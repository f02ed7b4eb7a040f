//! Wiring: migrate, then serve every roster service plus health and reflection on one listener,
//! until the shutdown signal; then drain within the grace period. Everything started here for the
//! process's lifetime runs on one `TaskTracker` and stops on one `CancellationToken` (the hub's),
//! so `run` returns only once all of it has stopped and the pool is closed.
use std::{future::Future, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::task::TaskTracker;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use crate::config::Config;
use crate::grpc::gate::GateLayer;
use crate::grpc::product_client::ProductClients;
use crate::grpc::{DeviceApi, EventApi, ModerationApi, RoleApi, TaskApi, TokenApi, UserApi};
use crate::pb;
use crate::store::Store;
use crate::tasks::{Hub, NoProducts, Products, spawn_workers};

/// Services whose health is reported by name, besides the overall "" entry.
const SERVICE_NAMES: [&str; 7] = [
    "roster.v1.EventService",
    "roster.v1.UserService",
    "roster.v1.RoleService",
    "roster.v1.TaskService",
    "roster.v1.ModerationService",
    "roster.v1.DeviceService",
    "roster.v1.TokenService",
];

/// The ports `serve` answers on, bound by the caller: the binary binds the configured
/// addresses (see `run`); tests bind `127.0.0.1:0` and learn the ports before the server starts.
pub struct Listeners {
    /// Every roster service, health and reflection.
    pub main: TcpListener,
    /// Plaintext gRPC health only (for kubelet probes when the main port speaks mTLS).
    pub health: Option<TcpListener>,
    /// Prometheus `GET /metrics`.
    pub metrics: Option<TcpListener>,
}

impl Listeners {
    /// `main`, plus the health-only and metrics ports bound at the configured addresses. A health
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
        Ok(Listeners {
            main,
            health,
            metrics,
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
    } = listeners;
    let addr = check_exposure(&config, &listener)?;
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
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let tls = tls_config(&config)?;
    let gate = GateLayer::new(
        &config.api_secrets,
        config.max_concurrent_requests,
        config.clock.clone(),
        config.token_leeway(),
    )?;

    let (health, health_service) = tonic_health::server::health_reporter();
    set_health(&health, ServingStatus::NotServing).await;
    let hub = Hub::default();
    let stop = hub.shutdown_token();
    let grace = Duration::from_secs(config.shutdown_grace_seconds);
    if let Some(health_listener) = health_listener {
        let service = health_service.clone();
        let stop = stop.clone();
        tasks.spawn(async move {
            let served = Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    TcpListenerStream::new(health_listener),
                    stop.cancelled_owned(),
                )
                .await;
            if let Err(err) = served {
                tracing::error!(error = %crate::error::Chain(&err), "the health-only port failed");
            }
        });
    }
    crate::telemetry::metrics::handle();
    if let Some(metrics_listener) = metrics_listener {
        tracing::info!(addr = %metrics_listener.local_addr()?, "metrics at /metrics");
        tasks.spawn(crate::telemetry::metrics::serve(
            metrics_listener,
            stop.clone(),
            tasks.clone(),
        ));
    }

    let migrated = prepare_schema(config.database_url.expose(), config.migrate_on_start);
    tokio::pin!(shutdown);
    let ready = tokio::select! {
        result = migrated => result,
        () = &mut shutdown => {
            wind_down(&hub, &tasks, grace, None).await;
            return Ok(());
        }
    };
    let connected = match ready {
        Ok(()) => {
            Store::connect(
                config.database_url.expose(),
                config.database_max_connections,
            )
            .await
        }
        Err(err) => {
            wind_down(&hub, &tasks, grace, None).await;
            return Err(err);
        }
    };
    let store = match connected {
        Ok(store) => store
            .with_clock(config.clock.clone())
            .with_presence(config.presence()),
        Err(err) => {
            wind_down(&hub, &tasks, grace, None).await;
            return Err(err.into());
        }
    };
    tasks.spawn(crate::telemetry::metrics::sample(
        store.clone(),
        stop.clone(),
    ));
    if config.worker {
        spawn_workers(
            store.clone(),
            config.worker(),
            hub.clone(),
            products,
            &tasks,
        );
    } else {
        tracing::info!("task worker off: this replica serves calls; another one runs tasks");
    }

    let mut builder = Server::builder()
        .timeout(Duration::from_secs(config.request_timeout_seconds))
        .max_connection_age(Duration::from_secs(config.max_connection_age_seconds))
        .max_connection_age_grace(grace)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)));
    if let Some(tls) = tls {
        builder = match builder.tls_config(tls) {
            Ok(builder) => builder,
            Err(err) => {
                wind_down(&hub, &tasks, grace, Some(store)).await;
                return Err(err.into());
            }
        };
    }
    let max = config.max_message_bytes;
    let router = builder
        .layer(gate)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            pb::user_service_server::UserServiceServer::new(UserApi::new(
                store.clone(),
                hub.clone(),
            ))
            .max_decoding_message_size(max),
        )
        .add_service(
            pb::role_service_server::RoleServiceServer::new(RoleApi::new(
                store.clone(),
                hub.clone(),
            ))
            .max_decoding_message_size(max),
        )
        .add_service(
            pb::event_service_server::EventServiceServer::new(EventApi::new(
                store.clone(),
                hub.clone(),
                &tasks,
            ))
            .max_decoding_message_size(max),
        )
        .add_service(
            pb::task_service_server::TaskServiceServer::new(TaskApi::new(
                store.clone(),
                hub.clone(),
                &tasks,
            ))
            .max_decoding_message_size(max),
        )
        .add_service(
            pb::moderation_service_server::ModerationServiceServer::new(ModerationApi::new(
                store.clone(),
                hub.clone(),
            ))
            .max_decoding_message_size(max),
        )
        .add_service(
            pb::device_service_server::DeviceServiceServer::new(DeviceApi::new(
                store.clone(),
                hub.clone(),
            ))
            .max_decoding_message_size(max),
        )
        .add_service(
            pb::token_service_server::TokenServiceServer::new(TokenApi::new(
                store.clone(),
                hub.clone(),
                user_tokens,
            ))
            .max_decoding_message_size(max),
        );

    // TCP_NODELAY: a response is several small writes (headers, data, trailers); without it the
    // kernel holds the later ones until the client's delayed ACK, some 40 ms per call.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let server =
        tasks.spawn(router.serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned()));
    set_health(&health, ServingStatus::Serving).await;
    tracing::info!(%addr, "roster is serving");

    shutdown.await;
    tracing::info!("shutting down");
    set_health(&health, ServingStatus::NotServing).await;
    let drained = wind_down(&hub, &tasks, grace, Some(store)).await;
    if drained && server.is_finished() {
        server.await??;
    }
    Ok(())
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
async fn wind_down(hub: &Hub, tasks: &TaskTracker, grace: Duration, store: Option<Store>) -> bool {
    hub.shut_down();
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

/// Everything `grpcurl list` / `describe` should see, including the google.rpc error details so
/// that error payloads decode.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
}

/// TLS from the configured PEM files; mutual TLS when a client CA is given.
fn tls_config(config: &Config) -> anyhow::Result<Option<tonic::transport::ServerTlsConfig>> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let (cert, key) = match (&config.tls_cert, &config.tls_key, &config.tls_client_ca) {
        (Some(cert), Some(key), _) => (cert, key),
        (None, None, None) => return Ok(None),
        _ => anyhow::bail!(
            "TLS needs both --tls-cert and --tls-key (and --tls-client-ca only together with them)"
        ),
    };
    let read = |path: &std::path::PathBuf| {
        std::fs::read(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))
    };
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?));
    if let Some(ca) = &config.tls_client_ca {
        tls = tls
            .client_ca_root(Certificate::from_pem(read(ca)?))
            .client_auth_optional(false);
    }
    Ok(Some(tls))
}

async fn set_health(health: &tonic_health::server::HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    for name in SERVICE_NAMES {
        health.set_service_status(name, status).await;
    }
}

/// Migrates (or, when migrations run elsewhere, waits until the schema is current), retrying
/// while the database cannot be reached. Any other failure (such as a schema newer than this
/// binary) is final.
async fn prepare_schema(url: &str, migrate: bool) -> anyhow::Result<()> {
    let mut delay = Duration::from_millis(200);
    loop {
        let attempt = if migrate {
            Store::migrate(url).await
        } else {
            Store::check_schema(url).await
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
