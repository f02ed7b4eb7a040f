//! The `roster` binary: parse the command line, set up logging, hand over to the library.
use clap::Parser;
use roster::config::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        None => serve(cli.serve).await,
        Some(Command::Serve(config)) => serve(*config).await,
        Some(Command::Migrate(mut args)) => {
            let _telemetry = roster::telemetry::init(args.log_format)?;
            args.resolve_files()?;
            roster::store::Store::migrate(args.database_url.expose()).await?;
            tracing::info!("database migrated");
            Ok(())
        }
        Some(Command::Healthcheck(args)) => healthcheck(&args).await,
        Some(Command::Config(_)) => {
            use std::io::Write;
            writeln!(
                std::io::stdout(),
                "{}",
                roster::config::flag_defaults_json()
            )?;
            Ok(())
        }
    }
}

async fn serve(mut config: roster::Config) -> anyhow::Result<()> {
    let _telemetry = roster::telemetry::init(config.log_format)?;
    config.resolve_files()?;
    let listen = config.effective_listen();
    if listen != config.listen {
        tracing::warn!(
            %listen,
            "no API secrets configured: serving on loopback only (set ROSTER_API_SECRETS, or \
             --insecure to serve unauthenticated on every interface)"
        );
    }
    let listener = tokio::net::TcpListener::bind(listen).await?;
    roster::run(config, listener, shutdown_signal()).await
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Exits 0 when the roster at `addr` reports SERVING (for container health checks).
async fn healthcheck(args: &roster::config::HealthcheckArgs) -> anyhow::Result<()> {
    use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let addr = args.addr.as_str();
    let mut endpoint = Channel::from_shared(addr.to_owned())?;
    if addr.starts_with("https://") {
        let read = |path: &std::path::PathBuf| {
            std::fs::read(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))
        };
        let mut tls = ClientTlsConfig::new();
        if let Some(ca) = args.ca.as_ref().or(args.server_client_ca.as_ref()) {
            tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        if let Some(domain) = &args.tls_domain {
            tls = tls.domain_name(domain.clone());
        }
        if let (Some(cert), Some(key)) = (&args.client_cert, &args.client_key) {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        endpoint = endpoint.tls_config(tls)?;
    }
    let channel = endpoint.connect().await?;
    let mut client = HealthClient::new(channel);
    let status = client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?
        .into_inner()
        .status;
    if status == ServingStatus::Serving as i32 {
        println!("SERVING");
        Ok(())
    } else {
        anyhow::bail!("roster at {addr} is not serving (status {status})")
    }
}
