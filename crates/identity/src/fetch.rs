//! The real [`CertFetcher`]: `x5u` over HTTPS (RFC 8224 §7.3, RFC 8588 §3)
//! with a timeout, a body limit, and an in-memory cache honouring a max age.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::Request;
use hyper::header::{ACCEPT, CACHE_CONTROL, CONNECTION, HOST, USER_AGENT};
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::verify::{CertFetcher, FetchError, FetchFuture};

/// Default limit for one fetch, connect to last byte.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default (and longest) time a fetched chain is reused.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(3600);
/// Largest certificate body accepted.
pub const MAX_BODY: usize = 64 * 1024;
/// Most URLs kept in the cache.
pub const MAX_ENTRIES: usize = 1024;

struct Entry {
    body: Arc<[u8]>,
    expires: Instant,
}

/// Fetches `x5u` certificate chains over HTTPS and caches them.
///
/// The cache keeps a chain for the server's `Cache-Control: max-age`,
/// capped by [`max_age`](Self::max_age) (`no-store`/`no-cache` are not
/// kept). It is a plain map behind a mutex held only to look up or insert,
/// never across the fetch.
pub struct HttpsFetcher {
    tls: TlsConnector,
    timeout: Duration,
    max_age: Duration,
    cache: Mutex<HashMap<String, Entry>>,
}

impl std::fmt::Debug for HttpsFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsFetcher")
            .field("timeout", &self.timeout)
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

impl HttpsFetcher {
    /// A fetcher trusting the Mozilla web roots for the HTTPS connection
    /// (certificate repositories are public web servers).
    pub fn new() -> Result<Self, FetchError> {
        let roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        Self::with_roots(roots)
    }

    /// A fetcher trusting only the CA certificates in `pem` for the HTTPS
    /// connection (a private repository, or tests).
    pub fn with_roots_pem(pem: &[u8]) -> Result<Self, FetchError> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| FetchError::Setup(Box::new(e)))?;
            roots
                .add(cert)
                .map_err(|e| FetchError::Setup(Box::new(e)))?;
        }
        if roots.is_empty() {
            return Err(FetchError::Setup(
                "no '-----BEGIN CERTIFICATE-----' in the HTTPS roots PEM".into(),
            ));
        }
        Self::with_roots(roots)
    }

    fn with_roots(roots: RootCertStore) -> Result<Self, FetchError> {
        // rustls 0.23.48 deprecates ring's provider for lacking post-quantum
        // key exchange; the alternative, aws-lc-rs, is a C/CMake build the
        // workspace does not have, and certificates published for anyone
        // to fetch need no long-term confidentiality.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| FetchError::Setup(Box::new(e)))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(HttpsFetcher {
            tls: TlsConnector::from(Arc::new(config)),
            timeout: DEFAULT_TIMEOUT,
            max_age: DEFAULT_MAX_AGE,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Sets the limit for one fetch (connect, TLS, request, body).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the longest time a chain is reused; zero disables the cache.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// How many chains are cached now (expired ones included until evicted).
    pub fn cached(&self) -> usize {
        self.cache.lock().map_or(0, |c| c.len())
    }

    fn lookup(&self, url: &str) -> Option<Arc<[u8]>> {
        let cache = self.cache.lock().ok()?;
        let entry = cache.get(url)?;
        (entry.expires > Instant::now()).then(|| entry.body.clone())
    }

    fn store(&self, url: &str, body: Arc<[u8]>, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        let now = Instant::now();
        if cache.len() >= MAX_ENTRIES {
            cache.retain(|_, e| e.expires > now);
            if cache.len() >= MAX_ENTRIES
                && let Some(oldest) = cache
                    .iter()
                    .min_by_key(|(_, e)| e.expires)
                    .map(|(k, _)| k.clone())
            {
                cache.remove(&oldest);
            }
        }
        cache.insert(
            url.to_owned(),
            Entry {
                body,
                expires: now + ttl,
            },
        );
    }

    async fn get(&self, url: &str) -> Result<(Arc<[u8]>, Option<Duration>), FetchError> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|_| FetchError::BadUrl(url.to_owned()))?;
        if uri.scheme_str() != Some("https") {
            return Err(FetchError::NotHttps(url.to_owned()));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| FetchError::BadUrl(url.to_owned()))?
            .clone();
        let host = authority.host();
        let bare_host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = authority.port_u16().unwrap_or(443);
        let name = ServerName::try_from(bare_host.clone())
            .map_err(|_| FetchError::BadUrl(url.to_owned()))?;
        let tcp = TcpStream::connect((bare_host.as_str(), port)).await?;
        let tls = self.tls.connect(name, tcp).await.map_err(FetchError::Tls)?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| FetchError::Http(Box::new(e)))?;
        // The connection is driven until the response is read, then
        // dropped with the task (the request asks for Connection: close).
        let driver = tokio::spawn(conn);
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let request = Request::get(path)
            .header(HOST, authority.as_str())
            .header(
                ACCEPT,
                "application/pem-certificate-chain, application/x-pem-file, application/pkix-cert",
            )
            .header(USER_AGENT, "Switchboard-STIR")
            .header(CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|e| FetchError::Http(Box::new(e)))?;
        let result = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| FetchError::Http(Box::new(e)))?;
            if response.status() != hyper::StatusCode::OK {
                return Err(FetchError::Status(response.status().as_u16()));
            }
            let ttl = cache_ttl(
                response
                    .headers()
                    .get_all(CACHE_CONTROL)
                    .iter()
                    .filter_map(|v| v.to_str().ok()),
            );
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        FetchError::TooLarge(MAX_BODY)
                    } else {
                        FetchError::Http(e)
                    }
                })?
                .to_bytes();
            Ok((Arc::from(&body[..]), ttl))
        }
        .await;
        driver.abort();
        result
    }
}

impl CertFetcher for HttpsFetcher {
    fn fetch<'a>(&'a self, url: &'a str) -> FetchFuture<'a> {
        Box::pin(async move {
            if let Some(body) = self.lookup(url) {
                return Ok(body);
            }
            let (body, server_ttl) = tokio::time::timeout(self.timeout, self.get(url))
                .await
                .map_err(|_| FetchError::Timeout(self.timeout))??;
            let ttl = server_ttl.map_or(self.max_age, |t| t.min(self.max_age));
            self.store(url, body.clone(), ttl);
            Ok(body)
        })
    }
}

/// The lifetime `Cache-Control` gives a response: `Some(0)` for
/// `no-store`/`no-cache`, `Some(max-age)`, or `None` when it says neither.
fn cache_ttl<'a>(values: impl Iterator<Item = &'a str>) -> Option<Duration> {
    let mut ttl = None;
    for directive in values.flat_map(|v| v.split(',')) {
        let directive = directive.trim();
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(secs) = lower.strip_prefix("max-age=") {
            let secs = secs.trim_matches('"').parse::<u64>().unwrap_or(0);
            ttl = Some(Duration::from_secs(secs));
        }
    }
    ttl
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_is_read() {
        assert_eq!(
            cache_ttl(["max-age=300"].into_iter()),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            cache_ttl(["public, Max-Age=60"].into_iter()),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            cache_ttl(["max-age=60, no-store"].into_iter()),
            Some(Duration::ZERO)
        );
        assert_eq!(cache_ttl(["no-cache"].into_iter()), Some(Duration::ZERO));
        assert_eq!(cache_ttl(["private"].into_iter()), None);
        assert_eq!(cache_ttl(std::iter::empty()), None);
        assert_eq!(
            cache_ttl(["max-age=junk"].into_iter()),
            Some(Duration::ZERO)
        );
    }
}
