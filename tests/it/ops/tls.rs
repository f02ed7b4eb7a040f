//! TLS and mutual TLS with certificates made in the test (rcgen), and the plaintext health-only
//! port for probes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use roster::pb::GetUserRequest;
use tokio::net::TcpListener;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::health_check_response::ServingStatus;

use crate::support::*;

/// A certificate (PEM) and its key (PEM).
struct Pem {
    cert: String,
    key: String,
}

/// A CA, a server certificate for `localhost`/127.0.0.1 and a client certificate from it, and a
/// client certificate from an unrelated CA; the server's files written to a tempdir.
struct Pki {
    ca: String,
    client: Pem,
    stranger: Pem,
    server_cert: PathBuf,
    server_key: PathBuf,
    ca_path: PathBuf,
    _dir: tempfile::TempDir,
}

fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA cert")
}

fn leaf(
    ca: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> Pem {
    let key = KeyPair::generate().expect("leaf key");
    let mut params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .expect("leaf params");
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, &**ca).expect("sign leaf");
    Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

fn pki() -> Pki {
    let ca = new_ca("roster test CA");
    let server = leaf(
        &ca,
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let client = leaf(&ca, &["billing"], ExtendedKeyUsagePurpose::ClientAuth);
    let other_ca = new_ca("someone else's CA");
    let stranger = leaf(&other_ca, &["mallory"], ExtendedKeyUsagePurpose::ClientAuth);
    let dir = tempfile::tempdir().expect("tempdir for PEM files");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write a PEM file");
        path
    };
    Pki {
        server_cert: write("server.pem", &server.cert),
        server_key: write("server.key", &server.key),
        ca_path: write("ca.pem", &ca.pem()),
        ca: ca.pem(),
        client,
        stranger,
        _dir: dir,
    }
}

/// A TLS channel to `addr` trusting `ca`, presenting `identity` if given.
fn tls_channel(addr: std::net::SocketAddr, ca: &str, identity: Option<&Pem>) -> Channel {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some(pem) = identity {
        tls = tls.identity(Identity::from_pem(&pem.cert, &pem.key));
    }
    Endpoint::from_shared(format!("https://{addr}"))
        .expect("endpoint URL")
        .tls_config(tls)
        .expect("client TLS config")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect_lazy()
}

/// A GetUser of a missing user: NOT_FOUND means the call got through.
async fn reaches_the_service(channel: &Channel) -> Result<(), tonic::Status> {
    let mut client = users_client(channel);
    let call = client.get_user(GetUserRequest {
        id: "nobody".to_owned(),
        include_deleted: false,
    });
    match tokio::time::timeout(Duration::from_secs(10), call).await {
        Err(_) => Err(tonic::Status::deadline_exceeded("no answer within 10 s")),
        Ok(Ok(response)) => panic!("GetUser of a missing user answered {response:?}"),
        Ok(Err(status)) if status.code() == Code::NotFound => Ok(()),
        Ok(Err(status)) => Err(status),
    }
}

#[tokio::test]
async fn tls_refuses_plaintext_and_serves_tls_clients() {
    let pki = pki();
    let db = Arc::new(TestDb::create().await);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (cert, key) = (pki.server_cert.clone(), pki.server_key.clone());
    let mut server = Launch::new()
        .on(db)
        .listener(listener)
        .config(move |config| {
            config.tls_cert = Some(cert);
            config.tls_key = Some(key);
        })
        .spawn()
        .await;
    let tls = tls_channel(addr, &pki.ca, None);
    server.wait_serving(&tls).await;
    reaches_the_service(&tls)
        .await
        .expect("a TLS client gets through");

    // Plaintext is refused, on health and on the services.
    let plain = plain_channel(addr);
    let health = health_status(&plain).await;
    assert!(
        health.is_err(),
        "plaintext health over the TLS port: {health:?}"
    );
    let status = reaches_the_service(&plain)
        .await
        .expect_err("a plaintext client is refused");
    assert_ne!(
        status.code(),
        Code::DeadlineExceeded,
        "refused, not hung: {status:?}"
    );

    // A client that does not trust the server's CA refuses it.
    let other_ca = new_ca("not roster's CA").pem();
    let distrusting = tls_channel(addr, &other_ca, None);
    reaches_the_service(&distrusting)
        .await
        .expect_err("the server certificate is not trusted by this client");

    // The TLS client still works after all that.
    reaches_the_service(&tls)
        .await
        .expect("a TLS client gets through");
    server.stop().await.expect("run returns Ok");
}

#[tokio::test]
async fn mutual_tls_requires_a_ca_signed_client_certificate_and_health_port_stays_plaintext() {
    let pki = pki();
    let db = Arc::new(TestDb::create().await);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let health_addr = free_loopback_addr();
    let (cert, key, ca) = (
        pki.server_cert.clone(),
        pki.server_key.clone(),
        pki.ca_path.clone(),
    );
    let mut server = Launch::new()
        .on(db)
        .listener(listener)
        .config(move |config| {
            config.tls_cert = Some(cert);
            config.tls_key = Some(key);
            config.tls_client_ca = Some(ca);
            config.health_listen = Some(health_addr);
        })
        .spawn()
        .await;
    let trusted = tls_channel(addr, &pki.ca, Some(&pki.client));
    server.wait_serving(&trusted).await;
    reaches_the_service(&trusted)
        .await
        .expect("a client with a CA-signed certificate gets through");

    // No client certificate: refused (health too, on the main port).
    let anonymous = tls_channel(addr, &pki.ca, None);
    let status = reaches_the_service(&anonymous)
        .await
        .expect_err("a client without a certificate is refused");
    assert_ne!(
        status.code(),
        Code::DeadlineExceeded,
        "refused, not hung: {status:?}"
    );
    let health = health_status(&anonymous).await;
    assert!(
        health.is_err(),
        "health without a client certificate: {health:?}"
    );
    // A certificate from another CA: refused.
    let stranger = tls_channel(addr, &pki.ca, Some(&pki.stranger));
    let status = reaches_the_service(&stranger)
        .await
        .expect_err("a client certificate from another CA is refused");
    assert_ne!(
        status.code(),
        Code::DeadlineExceeded,
        "refused, not hung: {status:?}"
    );
    // Plaintext on the main port: refused.
    let plain = plain_channel(addr);
    assert!(
        health_status(&plain).await.is_err(),
        "plaintext health on the mTLS port"
    );

    // The health-only port answers plaintext, and serves nothing but health.
    let probe = plain_channel(health_addr);
    assert_eq!(health_status(&probe).await, Ok(ServingStatus::Serving));
    let status = users_client(&probe)
        .get_user(GetUserRequest {
            id: "nobody".to_owned(),
            include_deleted: false,
        })
        .await
        .expect_err("UserService is not on the health port");
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");

    reaches_the_service(&trusted)
        .await
        .expect("the trusted client still gets through");
    server.stop().await.expect("run returns Ok");
}
