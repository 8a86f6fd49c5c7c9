//! The HTTPS client every HTTP provider kind shares: one pooled hyper client per provider, TLS
//! through rustls (ring, Mozilla's roots plus an optional extra CA file), and one request with
//! its whole answer read under a timeout. What an answer *means* is each kind's business
//! (`provider/<kind>/`); this file only says whether one came back.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A pooled client that speaks HTTP/1.1 over TLS or in clear (tests, internal gateways).
pub type Https = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The client: connections are kept and reused (`max_idle` per host, for a provider whose
/// requests go to one host: its concurrency), connecting is bounded by `connect_timeout`.
/// `extra_ca`: a PEM file of CAs trusted besides Mozilla's (a BSP's private CA, a test CA).
pub fn build(extra_ca: Option<&Path>, connect_timeout: Duration, max_idle: usize) -> Result<Https, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca {
        let certs = CertificateDer::pem_file_iter(path).map_err(|e| format!("{}: {e}", path.display()))?;
        for cert in certs {
            roots.add(cert.map_err(|e| format!("{}: {e}", path.display()))?).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(90)).pool_max_idle_per_host(max_idle).build(https))
}

/// Whether an answer came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exchange {
    /// A whole answer (any status): the kind reads it. `retry_after`: the answer's
    /// `Retry-After` header in seconds, when it had one (an HTTP date is not read).
    Answered { status: u16, body: Bytes, retry_after: Option<Duration> },
    /// Never reached the provider (connecting or TLS failed): nothing was sent.
    NotSent(String),
    /// Written, and no (whole) answer within the timeout: the provider may have taken it.
    Silent { cause: &'static str },
}

/// Sends `req` and reads the answer's body up to `max_body` bytes, the whole exchange bounded by
/// `timeout`. A body over `max_body` counts as no answer (`connection_closed`): it is not one of
/// the provider's, and nothing in it can be trusted to say the message was not taken.
pub async fn exchange(client: &Https, req: Request<Full<Bytes>>, timeout: Duration, max_body: usize) -> Exchange {
    let exchange = async {
        let resp = client.request(req).await?;
        let status = resp.status().as_u16();
        let retry_after = resp.headers().get(hyper::header::RETRY_AFTER).and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok()).map(Duration::from_secs);
        let body = Limited::new(resp.into_body(), max_body).collect().await.map(|b| b.to_bytes());
        Ok::<_, hyper_util::client::legacy::Error>((status, retry_after, body))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Err(_) => Exchange::Silent { cause: "response_timeout" },
        Ok(Err(e)) if e.is_connect() => Exchange::NotSent(e.to_string()),
        Ok(Err(_)) => Exchange::Silent { cause: "connection_closed" },
        Ok(Ok((_, _, Err(_)))) => Exchange::Silent { cause: "connection_closed" },
        Ok(Ok((status, retry_after, Ok(body)))) => Exchange::Answered { status, body, retry_after },
    }
}
