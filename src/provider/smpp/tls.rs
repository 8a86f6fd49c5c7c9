//! The byte stream under a bind: plain TCP, or TLS over it when the provider says `tls = true`
//! (built with the cargo feature `tls`: rustls on ring, Mozilla's roots or `tls_ca_file`).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::config::SmppConfig;

pub(super) enum Io {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// Puts TLS over `tcp` when the provider asks for it.
pub(super) async fn wrap(cfg: &SmppConfig, tcp: TcpStream) -> Result<Io, String> {
    if !cfg.tls {
        return Ok(Io::Plain(tcp));
    }
    #[cfg(feature = "tls")]
    {
        handshake(cfg, tcp).await.map(|s| Io::Tls(Box::new(s)))
    }
    #[cfg(not(feature = "tls"))]
    {
        // Config validation refuses this already; kept so a hand-built config fails loudly.
        Err("tls = true, but this build has no TLS support (cargo feature `tls`)".into())
    }
}

#[cfg(feature = "tls")]
async fn handshake(cfg: &SmppConfig, tcp: TcpStream) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    use std::sync::Arc;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};

    let mut roots = rustls::RootCertStore::empty();
    match &cfg.tls_ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| format!("tls_ca_file {}: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("tls_ca_file {}: {e}", path.display()))?;
                roots.add(cert).map_err(|e| format!("tls_ca_file {}: {e}", path.display()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = server_name(cfg);
    let name = ServerName::try_from(name.clone()).map_err(|e| format!("tls server name {name:?}: {e}"))?;
    tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.map_err(|e| format!("TLS handshake: {e}"))
}

/// `tls_server_name`, else the host part of `address`.
#[cfg(feature = "tls")]
fn server_name(cfg: &SmppConfig) -> String {
    cfg.tls_server_name.clone().unwrap_or_else(|| {
        let host = cfg.address.rsplit_once(':').map_or(cfg.address.as_str(), |(host, _)| host);
        host.trim_start_matches('[').trim_end_matches(']').to_owned()
    })
}

impl AsyncRead for Io {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(feature = "tls")]
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(feature = "tls")]
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            #[cfg(feature = "tls")]
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(feature = "tls")]
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(all(test, feature = "tls"))]
mod tests {
    //! `testdata/`: a test CA (`ca.pem`) and a server certificate for `localhost` and
    //! `127.0.0.1` it signed (`server.pem`, key `server.key`), made once with openssl, valid
    //! until 2126. Test-only: nothing else trusts that CA.

    use std::sync::Arc;
    use std::time::Duration;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::net::TcpListener;

    use super::super::link_tests::{send_all, sim};
    use super::super::SmppProvider;
    use crate::clock::SystemClock;
    use crate::provider::Provider;
    use crate::receipt::ProviderEvent;

    const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/provider/smpp/testdata");

    /// A TLS terminator in front of `backend`: what an SMSC's TLS port looks like.
    async fn tls_front(backend: std::net::SocketAddr) -> std::net::SocketAddr {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(format!("{TESTDATA}/server.pem")).unwrap().map(Result::unwrap).collect();
        let key = PrivateKeyDer::from_pem_file(format!("{TESTDATA}/server.key")).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        addr
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn binds_submits_and_receipts_go_over_tls() {
        let sim = sim(|_| {}).await;
        let front = tls_front(sim.local_addr()).await.to_string();
        let extra = format!("tls = true\ntls_ca_file = \"{TESTDATA}/ca.pem\"");
        let (tx, mut rx) = tokio::sync::mpsc::channel(100);
        let cfg = super::super::link_tests::smpp_config(&front, &extra);
        let p = SmppProvider::start("p", cfg, front.clone(), tx, Arc::new(SystemClock));
        super::super::link_tests::wait_for("a TLS bind", || p.is_ready()).await;
        let results = send_all(&p, 5).await;
        assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
        for _ in 0..5 {
            let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap();
            assert!(matches!(got, Some(ProviderEvent::Receipt(_))), "{got:?}");
        }
        assert_eq!(sim.stats().messages, 5);
        p.shutdown().await;
        sim.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_untrusted_certificate_never_binds() {
        let sim = sim(|_| {}).await;
        let front = tls_front(sim.local_addr()).await.to_string();
        // Mozilla's roots do not include the test CA.
        let (tx, _rx) = tokio::sync::mpsc::channel(100);
        let p = SmppProvider::start("p", super::super::link_tests::smpp_config(&front, "tls = true"), front.clone(), tx, Arc::new(SystemClock));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!p.is_ready());
        assert_eq!(sim.stats().binds, 0);
        p.shutdown().await;
        sim.shutdown().await;
    }
}
