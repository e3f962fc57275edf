//! TLS for both endpoints (`--tls-cert`, `--tls-key`, rustls with the ring provider): the
//! PostgreSQL endpoint upgrades a connection when the client asks (`sslmode=require`), and the
//! HTTP API and web app answer only over HTTPS. With TLS on, the web app's session cookie is
//! marked `Secure`.

use anyhow::{Context, Result};
use axum::Router;
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// The TLS acceptor for `--tls-cert` and `--tls-key` (PEM files).
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    use rustls_pemfile::{certs, private_key};
    use tokio_rustls::rustls::ServerConfig;
    let open = |p: &Path| {
        std::fs::File::open(p)
            .map(std::io::BufReader::new)
            .with_context(|| format!("{}: cannot be read", p.display()))
    };
    let chain = certs(&mut open(cert)?)
        .collect::<std::result::Result<Vec<_>, _>>()
        .with_context(|| format!("--tls-cert {}: not a PEM certificate chain", cert.display()))?;
    anyhow::ensure!(
        !chain.is_empty(),
        "--tls-cert {}: holds no certificate",
        cert.display()
    );
    let key_der = private_key(&mut open(key)?)
        .with_context(|| format!("--tls-key {}: not a PEM private key", key.display()))?
        .with_context(|| format!("--tls-key {}: holds no private key", key.display()))?;
    let config = ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS protocol versions")?
    .with_no_client_auth()
    .with_single_cert(chain, key_der)
    .context("--tls-cert / --tls-key: the key does not fit the certificate")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves the router over HTTPS (HTTP/1.1) until `shutdown` completes. A client that fails
/// the handshake is dropped; the others go on.
pub async fn serve_https(
    listener: TcpListener,
    tls: TlsAcceptor,
    router: Router,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    tokio::pin!(shutdown);
    loop {
        let (tcp, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors and the like: wait a moment rather than spin.
                    tracing::warn!("accepting an HTTPS connection: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let (tls, router) = (tls.clone(), router.clone());
        tokio::spawn(async move {
            let stream =
                match tokio::time::timeout(std::time::Duration::from_secs(10), tls.accept(tcp))
                    .await
                {
                    Ok(Ok(s)) => s,
                    _ => return,
                };
            let io = hyper_util::rt::TokioIo::new(stream);
            let service = hyper_util::service::TowerToHyperService::new(router);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .with_upgrades()
                .await
            {
                tracing::debug!("an HTTPS connection ended: {e}");
            }
        });
    }
    Ok(())
}
