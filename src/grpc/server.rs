//! The gRPC ports: the main port (every roster service, health and reflection, behind the gate)
//! and the plaintext health-only port, with the health status both report.
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use super::gate::GateLayer;
use super::{DeviceApi, EventApi, ModerationApi, RoleApi, TaskApi, TokenApi, UserApi};
use crate::app::App;
use crate::config::Config;
use crate::grpc::pb;

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

type HealthService =
    tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>;

/// What every port reports to `grpc.health.v1.Health`; NOT_SERVING until told otherwise.
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
    service: HealthService,
    /// Set once shutdown begins: from then on nothing turns health back to SERVING (such as the
    /// database probe seeing the database answer again).
    closing: Arc<AtomicBool>,
}

impl Health {
    pub async fn new() -> Self {
        let reporter = HealthReporter::new();
        let service = tonic_health::pb::health_server::HealthServer::new(
            tonic_health::server::HealthService::from_health_reporter(reporter.clone()),
        );
        let health = Health {
            reporter,
            service,
            closing: Arc::default(),
        };
        health.set_serving(false).await;
        health
    }

    /// SERVING or NOT_SERVING, overall and for every roster service. Once `close` was called,
    /// NOT_SERVING whatever is asked.
    pub async fn set_serving(&self, serving: bool) {
        let status = if serving && !self.closing.load(Ordering::SeqCst) {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.reporter.set_service_status("", status).await;
        for name in SERVICE_NAMES {
            self.reporter.set_service_status(name, status).await;
        }
    }

    /// NOT_SERVING for good: shutdown has begun.
    pub async fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.set_serving(false).await;
    }

    /// Serves health alone, in plaintext, on `listener` (for kubelet probes when the main port
    /// speaks mTLS) until `stop`.
    pub async fn serve_only(self, listener: TcpListener, stop: CancellationToken) {
        let served = Server::builder()
            .add_service(self.service)
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop.cancelled_owned())
            .await;
        if let Err(err) = served {
            tracing::error!(error = %crate::error::Chain(&err), "the health-only port failed");
        }
    }
}

/// The main port, set up from the configuration alone: everything that can fail on it fails
/// here, before anything starts.
pub struct MainPort {
    tls: Option<tonic::transport::ServerTlsConfig>,
    gate: GateLayer,
    request_timeout: Duration,
    max_connection_age: Duration,
    grace: Duration,
    max_message_bytes: usize,
}

impl MainPort {
    /// `permits`: calls served at once, a budget shared by every door.
    pub fn prepare(config: &Config, permits: Arc<Semaphore>) -> anyhow::Result<Self> {
        // Built once here so that a descriptor set that does not parse fails at start.
        reflection().build_v1()?;
        reflection().build_v1alpha()?;
        Ok(MainPort {
            tls: tls_config(config)?,
            gate: GateLayer::new(
                &config.api_secrets,
                permits,
                config.clock.clone(),
                config.token_leeway(),
            )?,
            request_timeout: Duration::from_secs(config.request_timeout_seconds),
            max_connection_age: Duration::from_secs(config.max_connection_age_seconds),
            grace: Duration::from_secs(config.shutdown_grace_seconds),
            max_message_bytes: config.max_message_bytes,
        })
    }

    /// Every roster service over `app`, plus `health` and reflection, on `listener` until
    /// `stop`; then the open calls drain. Fails before serving if TLS cannot be set up.
    pub fn serve(
        self,
        app: App,
        health: &Health,
        listener: TcpListener,
        stop: CancellationToken,
    ) -> anyhow::Result<impl Future<Output = anyhow::Result<()>> + Send + 'static> {
        let mut builder = Server::builder()
            .timeout(self.request_timeout)
            .max_connection_age(self.max_connection_age)
            .max_connection_age_grace(self.grace)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)));
        if let Some(tls) = self.tls {
            builder = builder.tls_config(tls)?;
        }
        let max = self.max_message_bytes;
        let router = builder
            .layer(self.gate)
            .add_service(health.service.clone())
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?)
            .add_service(
                pb::user_service_server::UserServiceServer::new(UserApi::new(app.clone()))
                    .max_decoding_message_size(max),
            )
            .add_service(
                pb::role_service_server::RoleServiceServer::new(RoleApi::new(app.clone()))
                    .max_decoding_message_size(max),
            )
            .add_service(
                pb::event_service_server::EventServiceServer::new(EventApi::new(app.clone()))
                    .max_decoding_message_size(max),
            )
            .add_service(
                pb::task_service_server::TaskServiceServer::new(TaskApi::new(app.clone()))
                    .max_decoding_message_size(max),
            )
            .add_service(
                pb::moderation_service_server::ModerationServiceServer::new(ModerationApi::new(
                    app.clone(),
                ))
                .max_decoding_message_size(max),
            )
            .add_service(
                pb::device_service_server::DeviceServiceServer::new(DeviceApi::new(app.clone()))
                    .max_decoding_message_size(max),
            )
            .add_service(
                pb::token_service_server::TokenServiceServer::new(TokenApi::new(app))
                    .max_decoding_message_size(max),
            );
        // TCP_NODELAY: a response is several small writes (headers, data, trailers); without it
        // the kernel holds the later ones until the client's delayed ACK, some 40 ms per call.
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        Ok(async move {
            router
                .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
                .await?;
            Ok(())
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_server::Health as _;

    async fn overall(health: &Health) -> i32 {
        let service =
            tonic_health::server::HealthService::from_health_reporter(health.reporter.clone());
        service
            .check(tonic::Request::new(HealthCheckRequest {
                service: String::new(),
            }))
            .await
            .expect("the overall status is known")
            .into_inner()
            .status
    }

    #[tokio::test]
    async fn once_closed_nothing_turns_health_back_to_serving() {
        let health = Health::new().await;
        assert_eq!(overall(&health).await, ServingStatus::NotServing as i32);
        health.set_serving(true).await;
        assert_eq!(overall(&health).await, ServingStatus::Serving as i32);
        health.close().await;
        // The database probe sees the database answer again while shutdown drains.
        health.set_serving(true).await;
        assert_eq!(overall(&health).await, ServingStatus::NotServing as i32);
    }
}
