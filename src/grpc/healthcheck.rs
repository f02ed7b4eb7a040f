//! `roster healthcheck`: one gRPC health check against a running roster, for container probes.

/// Exits 0 when the roster at `addr` reports SERVING (for container health checks).
pub async fn check(args: &crate::config::HealthcheckArgs) -> anyhow::Result<()> {
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
