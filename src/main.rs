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
            roster::store::Store::migrate_with(
                args.database_url.expose(),
                args.database_statement_cache,
            )
            .await?;
            tracing::info!("database migrated");
            Ok(())
        }
        Some(Command::Healthcheck(args)) => roster::grpc::healthcheck::check(&args).await,
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
