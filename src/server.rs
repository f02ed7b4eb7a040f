//! Wiring: migrate, then serve every roster service plus health and reflection on one listener,
//! until the shutdown signal; then drain within the grace period.
use std::{future::Future, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
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

/// Runs roster on `listener` until `shutdown` resolves.
///
/// Health is NOT_SERVING until the database is reachable and migrated (a database that is down
/// at start is retried, so the process does not crash-loop), SERVING after, and NOT_SERVING again
/// from the moment shutdown begins.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    if config.api_secrets.is_empty() && !config.insecure && !addr.ip().is_loopback() {
        anyhow::bail!(
            "refusing to serve on {addr} without API secrets: set ROSTER_API_SECRETS, listen on \
             loopback, or pass --insecure"
        );
    }
    if config.api_secrets.is_empty() {
        tracing::warn!(%addr, "no API secrets configured: callers are not authenticated");
    }
    let user_tokens = config.user_tokens()?;
    if user_tokens.is_none() {
        tracing::info!(
            "no user-token secret configured: CreateUserToken and VerifyUserToken are off"
        );
    }
    let (health, health_service) = tonic_health::server::health_reporter();
    set_health(&health, ServingStatus::NotServing).await;
    let hub = Hub::default();
    // A plaintext health-only port (for kubelet probes when the main port speaks mTLS).
    if let Some(health_addr) = config.health_listen {
        let health_listener = TcpListener::bind(health_addr).await?;
        let service = health_service.clone();
        let hub = hub.clone();
        tokio::spawn(async move {
            let _ = Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    TcpListenerStream::new(health_listener),
                    hub.shutting_down(),
                )
                .await;
        });
    }
    crate::telemetry::metrics::handle();
    if let Some(metrics_addr) = config.metrics_listen {
        // Metrics are for operators, not callers: a port already taken is reported, not fatal.
        match TcpListener::bind(metrics_addr).await {
            Ok(metrics_listener) => {
                tracing::info!(addr = %metrics_listener.local_addr()?, "metrics at /metrics");
                tokio::spawn(crate::telemetry::metrics::serve(
                    metrics_listener,
                    hub.clone(),
                ));
            }
            Err(err) => {
                tracing::error!(addr = %metrics_addr, error = %err, "cannot serve metrics; continuing without /metrics");
            }
        }
    }

    let migrated = prepare_schema(&config.database_url, config.migrate_on_start);
    tokio::pin!(shutdown);
    tokio::select! {
        result = migrated => result?,
        () = &mut shutdown => return Ok(()),
    }
    let store = Store::connect(&config.database_url, config.database_max_connections).await?;
    tokio::spawn(crate::telemetry::metrics::sample(
        store.clone(),
        hub.clone(),
    ));
    let store = Store::connect(&config.database_url, config.database_max_connections)
        .await?
        .with_clock(config.clock.clone())
        .with_presence(config.presence());
    let hub = Hub::default();
    let products: Arc<dyn Products> = if config.products.is_empty() {
        Arc::new(NoProducts)
    } else {
        Arc::new(ProductClients::new(
            &config.products,
            Duration::from_millis(config.product_timeout_ms),
        )?)
    };
    let mut workers = spawn_workers(store.clone(), config.worker(), hub.clone(), products);

    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let mut builder = Server::builder()
        .timeout(Duration::from_secs(config.request_timeout_seconds))
        .max_connection_age(Duration::from_secs(config.max_connection_age_seconds))
        .max_connection_age_grace(Duration::from_secs(config.shutdown_grace_seconds))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)));
    if let Some(tls) = tls_config(&config)? {
        builder = builder.tls_config(tls)?;
    }
    let max = config.max_message_bytes;
    let router = builder
        .layer(GateLayer::new(
            &config.api_secrets,
            config.max_concurrent_requests,
            config.clock.clone(),
            config.token_leeway(),
        )?)
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
            ))
            .max_decoding_message_size(max),
        )
        .add_service(
            pb::task_service_server::TaskServiceServer::new(TaskApi::new(
                store.clone(),
                hub.clone(),
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

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // TCP_NODELAY: a response is several small writes (headers, data, trailers); without it the
    // kernel holds the later ones until the client's delayed ACK, some 40 ms per call.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async move {
        let _ = stop_rx.await;
    }));
    set_health(&health, ServingStatus::Serving).await;
    tracing::info!(%addr, "roster is serving");

    shutdown.await;
    tracing::info!("shutting down");
    set_health(&health, ServingStatus::NotServing).await;
    // Streams end with UNAVAILABLE and workers stop after their current item, releasing leases.
    hub.shut_down();
    let _ = stop_tx.send(());
    let grace = Duration::from_secs(config.shutdown_grace_seconds);
    let drained = tokio::time::timeout(grace, async {
        while workers.join_next().await.is_some() {}
        server.await
    })
    .await;
    match drained {
        Ok(joined) => joined??,
        Err(_) => tracing::warn!(
            ?grace,
            "work still open after the grace period; exiting anyway"
        ),
    }
    store.close().await;
    Ok(())
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
                tracing::warn!(error = %err, retry_in = ?delay, "database not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(err) => return Err(anyhow::anyhow!("migrating the database failed: {err}")),
        }
    }
}
