//! The Stream-compatible HTTP door: the user-management surface of Stream's server-side API
//! (`/api/v2/...`, JSON over HTTP/1.1 and h2c), so that Stream's official server SDKs work against
//! roster with nothing changed but their base URL. Like `grpc/`, it converts wire shapes to domain
//! inputs and calls `app`; it decides no rule. Errors become HTTP answers in one place
//! (`error.rs`); every request passes the gate (`gate.rs`).
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{delete, get, post};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::config::Config;
use crate::domain::access::ServerKeys;

mod convert;
mod devices;
mod error;
mod extract;
mod gate;
mod moderation;
mod roles;
mod tasks;
mod users;

use gate::GateState;

/// The HTTP port, set up from the configuration alone: everything that can fail on it fails
/// here, before anything starts.
pub struct HttpPort {
    gate: Arc<GateState>,
}

impl HttpPort {
    /// `permits`: calls served at once, the budget the gRPC door draws on too.
    pub fn prepare(config: &Config, permits: Arc<Semaphore>) -> anyhow::Result<Self> {
        let keys = ServerKeys::new(
            config.api_secrets.iter().map(|s| s.expose()),
            config.clock.clone(),
            config.token_leeway(),
        )?;
        Ok(HttpPort {
            gate: Arc::new(GateState {
                keys,
                api_key: config.api_key.clone().filter(|k| !k.is_empty()),
                permits,
                timeout: Duration::from_secs(config.request_timeout_seconds),
                max_body_bytes: config.max_message_bytes,
            }),
        })
    }

    /// Serves the door over `app` on `listener` until `stop`; then the open requests finish.
    pub fn serve(
        self,
        app: App,
        listener: TcpListener,
        stop: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static {
        use axum::serve::ListenerExt;
        let router = router(app, self.gate);
        // TCP_NODELAY, as on the gRPC port: an answer is headers then body, two small writes.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
            if let Err(err) = served {
                tracing::error!(error = %crate::error::Chain(&err), "the HTTP door failed");
            }
        }
    }
}

/// Every route of the door (the table in the README, section "Using Stream's SDKs").
fn router(app: App, gate: Arc<GateState>) -> Router {
    Router::new()
        .route(
            "/api/v2/users",
            post(users::upsert)
                .patch(users::update_partial)
                .get(users::query),
        )
        .route(
            "/api/v2/users/{user_id}/deactivate",
            post(users::deactivate_one),
        )
        .route(
            "/api/v2/users/{user_id}/reactivate",
            post(users::reactivate_one),
        )
        .route("/api/v2/users/deactivate", post(users::deactivate_many))
        .route("/api/v2/users/reactivate", post(users::reactivate_many))
        .route("/api/v2/users/delete", post(users::delete))
        .route("/api/v2/users/restore", post(users::restore))
        .route("/api/v2/tasks/{id}", get(tasks::get))
        .route(
            "/api/v2/users/block",
            post(moderation::block).get(moderation::blocked),
        )
        .route("/api/v2/users/unblock", post(moderation::unblock))
        .route("/api/v2/moderation/ban", post(moderation::ban))
        .route("/api/v2/moderation/unban", post(moderation::unban))
        .route(
            "/api/v2/chat/query_banned_users",
            get(moderation::query_banned),
        )
        .route(
            "/api/v2/devices",
            get(devices::list)
                .post(devices::create)
                .delete(devices::delete),
        )
        .route("/api/v2/roles", get(roles::list).post(roles::create))
        .route("/api/v2/roles/{name}", delete(roles::delete))
        .route_layer(axum::middleware::from_fn_with_state(gate, gate::gate))
        .fallback(gate::unrouted)
        .with_state(app)
        .layer(axum::middleware::from_fn(gate::answer))
}
