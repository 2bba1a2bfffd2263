//! Who may use the admin API: a bearer token (RFC 6750 §2.1) on every
//! request but `/health` (and `/metrics` with `admin.metrics_public`), and a
//! `Host` header naming this listener, so that a web page open on the same
//! machine can neither post to it (CSRF: a browser cannot add the
//! `Authorization` header cross-origin) nor read it by DNS rebinding (its
//! requests carry the attacker's host name).
//!
//! The token is `admin.token`, or else generated at first start into
//! `admin.token` beside the storage file (mode 0600, read back at every
//! later start), or, with in-memory storage, generated for this run only
//! and printed in the log.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::config::{AdminConfig, StorageConfig};
use crate::error::Error;

/// The file name of a generated token, beside the storage file.
pub const TOKEN_FILE: &str = "admin.token";

/// Where the admin token came from, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenOrigin {
    /// `admin.token` in the config.
    Config,
    /// Read from the file generated at an earlier start.
    File(PathBuf),
    /// Generated now into this file.
    Generated(PathBuf),
    /// Generated now, in memory only (in-memory storage).
    Memory,
}

/// The admin token and where it came from.
#[derive(Debug, Clone)]
pub struct AdminToken {
    /// The token.
    pub token: String,
    /// Where it came from.
    pub origin: TokenOrigin,
}

impl AdminToken {
    /// The configured token, or the one in (or newly generated into) the
    /// file beside the storage. Blocks on the disk.
    pub fn load(admin: &AdminConfig, storage: &StorageConfig) -> Result<AdminToken, Error> {
        if let Some(token) = &admin.token {
            return Ok(AdminToken {
                token: token.clone(),
                origin: TokenOrigin::Config,
            });
        }
        let path = match token_file(storage) {
            Some(path) => path,
            None => {
                return Ok(AdminToken {
                    token: generate(),
                    origin: TokenOrigin::Memory,
                });
            }
        };
        let fail = |source: io::Error| Error::AdminToken {
            path: path.clone(),
            source,
        };
        match read_token(&path) {
            Ok(token) => Ok(AdminToken {
                token,
                origin: TokenOrigin::File(path),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let token = generate();
                write_new(&path, &token).map_err(fail)?;
                Ok(AdminToken {
                    token,
                    origin: TokenOrigin::Generated(path),
                })
            }
            Err(e) => Err(fail(e)),
        }
    }

    /// Logs where the token is (never the token, unless it lives only in memory).
    pub fn log(&self) {
        match &self.origin {
            TokenOrigin::Config => {
                tracing::info!("admin API: bearer token from admin.token in the config")
            }
            TokenOrigin::File(path) => tracing::info!(
                "admin API: bearer token in {} (send it as \"Authorization: Bearer TOKEN\")",
                path.display()
            ),
            TokenOrigin::Generated(path) => tracing::info!(
                "admin API: bearer token generated into {} (mode 0600; send it as \"Authorization: Bearer TOKEN\")",
                path.display()
            ),
            TokenOrigin::Memory => tracing::info!(
                "admin API: bearer token for this run (storage is in memory; set admin.token to keep one): {}",
                self.token
            ),
        }
    }
}

/// Where a generated token is kept: beside the storage file, in the
/// default storage directory (`var/`) with PostgreSQL storage (a token is
/// per node), `None` for in-memory storage, whose token is only in the log.
pub fn token_file(storage: &StorageConfig) -> Option<PathBuf> {
    let beside = |path: &Path| {
        path.parent()
            .unwrap_or_else(|| Path::new(""))
            .join(TOKEN_FILE)
    };
    match storage {
        StorageConfig::Redb { path } => Some(beside(path)),
        StorageConfig::Postgres(_) => Some(beside(Path::new(crate::config::DEFAULT_STORAGE_PATH))),
        StorageConfig::Memory => None,
    }
}

/// 32 random bytes in hex.
fn generate() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The token in `path` (trimmed; an empty file is an error).
pub fn read_token(path: &Path) -> io::Result<String> {
    let mut text = String::new();
    std::fs::File::open(path)?.read_to_string(&mut text)?;
    let token = text.trim();
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "holds no token (delete it to have a new one generated)",
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                "admin token file {} is readable by other users (mode {:o}); run chmod 600 on it",
                path.display(),
                mode & 0o777
            );
        }
    }
    Ok(token.to_owned())
}

/// Creates `path` (never overwriting, never following a symlink there) with
/// mode 0600 and writes `token` into it.
fn write_new(path: &Path, token: &str) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(token.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

/// What the guard checks requests against.
#[derive(Debug, Clone)]
pub struct Guard {
    inner: Arc<GuardInner>,
}

#[derive(Debug)]
struct GuardInner {
    token: String,
    metrics_public: bool,
    listen: SocketAddr,
    hosts: Vec<String>,
}

impl Guard {
    /// A guard for the listener bound at `listen` (the real port, not 0).
    pub fn new(token: String, admin: &AdminConfig, listen: SocketAddr) -> Guard {
        Guard {
            inner: Arc::new(GuardInner {
                token,
                metrics_public: admin.metrics_public,
                listen,
                hosts: admin.hosts.clone(),
            }),
        }
    }

    /// Whether `host` (a `Host` header value) names this listener: the
    /// listen address; any IP address when listening on all addresses;
    /// `localhost` and loopback addresses when listening on loopback; or
    /// an `admin.hosts` entry (`name` for any port, `name:port` exactly).
    /// An IP address cannot be rebound by DNS, a name can: names are only
    /// what the config allows.
    pub fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        let (name, port) = split_host_port(&host);
        if self
            .inner
            .hosts
            .iter()
            .any(|h| *h == host || (*h == name && !h.contains(':')))
        {
            return true;
        }
        let listen = self.inner.listen;
        if port.unwrap_or(80) != listen.port() {
            return false;
        }
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        let local = listen.ip().is_loopback() || listen.ip().is_unspecified();
        match bare.parse::<IpAddr>() {
            Ok(ip) => {
                listen.ip().is_unspecified()
                    || ip == listen.ip()
                    || (listen.ip().is_loopback() && ip.is_loopback())
            }
            Err(_) => local && name == "localhost",
        }
    }

    fn token_ok(&self, value: Option<&HeaderValue>) -> bool {
        let Some(value) = value.and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let Some((scheme, token)) = value.trim().split_once(' ') else {
            return false;
        };
        scheme.eq_ignore_ascii_case("Bearer")
            && bool::from(token.trim().as_bytes().ct_eq(self.inner.token.as_bytes()))
    }
}

/// `host` split into name and port (`[v6]:port`, `name:port`, `name`).
fn split_host_port(host: &str) -> (&str, Option<u16>) {
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((_, tail)) => {
                let name = &host[..host.len() - tail.len()];
                (name, tail.strip_prefix(':').and_then(|p| p.parse().ok()))
            }
            None => (host, None),
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => match port.parse() {
            Ok(port) => (name, Some(port)),
            Err(_) => (host, None),
        },
        _ => (host, None),
    }
}

/// The middleware: 421 for a foreign `Host`, 401 without the token.
pub async fn check(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !guard.host_allowed(host) {
        return (
            StatusCode::MISDIRECTED_REQUEST,
            Json(json!({
                "error": format!(
                    "Host {host:?} does not name this admin listener ({}); add the name to admin.hosts",
                    guard.inner.listen
                )
            })),
        )
            .into_response();
    }
    let path = request.uri().path();
    let open = path == "/health" || (path == "/metrics" && guard.inner.metrics_public);
    if !open && !guard.token_ok(request.headers().get(header::AUTHORIZATION)) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer realm=\"switchboard\"")],
            Json(json!({
                "error": "missing or wrong token: send \"Authorization: Bearer TOKEN\" with admin.token (or the generated admin.token file beside the storage)"
            })),
        )
            .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(listen: &str, hosts: &[&str]) -> Guard {
        let admin = AdminConfig {
            listen: None,
            token: None,
            metrics_public: false,
            trace_calls: 0,
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        };
        Guard::new("t0ken-t0ken-t0ken".into(), &admin, listen.parse().unwrap())
    }

    #[test]
    fn hosts_on_loopback() {
        let g = guard("127.0.0.1:8088", &[]);
        for ok in [
            "127.0.0.1:8088",
            "localhost:8088",
            "LOCALHOST:8088",
            "[::1]:8088",
        ] {
            assert!(g.host_allowed(ok), "{ok}");
        }
        for bad in [
            "",
            "evil.example:8088",
            "localhost:8089",
            "127.0.0.1",
            "10.0.0.1:8088",
            "localhost.evil.example:8088",
        ] {
            assert!(!g.host_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn hosts_on_all_addresses_and_configured_names() {
        let g = guard(
            "0.0.0.0:8088",
            &["pbx.example.com", "proxy.example.com:443"],
        );
        assert!(g.host_allowed("10.1.2.3:8088"));
        assert!(g.host_allowed("[2001:db8::1]:8088"));
        assert!(g.host_allowed("pbx.example.com:8088"));
        assert!(g.host_allowed("pbx.example.com"));
        assert!(g.host_allowed("proxy.example.com:443"));
        assert!(!g.host_allowed("proxy.example.com:8088"));
        assert!(!g.host_allowed("rebind.evil.example:8088"));
        let g = guard("192.0.2.5:8088", &[]);
        assert!(g.host_allowed("192.0.2.5:8088"));
        assert!(!g.host_allowed("192.0.2.6:8088"));
        assert!(!g.host_allowed("localhost:8088"));
    }

    #[test]
    fn bearer_token() {
        let g = guard("127.0.0.1:8088", &[]);
        let ok = |v: &str| g.token_ok(Some(&HeaderValue::from_str(v).unwrap()));
        assert!(ok("Bearer t0ken-t0ken-t0ken"));
        assert!(ok("bearer  t0ken-t0ken-t0ken"));
        assert!(!ok("Bearer t0ken-t0ken-t0kem"));
        assert!(!ok("Basic t0ken-t0ken-t0ken"));
        assert!(!ok("t0ken-t0ken-t0ken"));
        assert!(!g.token_ok(None));
    }

    #[test]
    fn split() {
        assert_eq!(split_host_port("a:1"), ("a", Some(1)));
        assert_eq!(split_host_port("a"), ("a", None));
        assert_eq!(split_host_port("[::1]:80"), ("[::1]", Some(80)));
        assert_eq!(split_host_port("[::1]"), ("[::1]", None));
        assert_eq!(split_host_port("a:x"), ("a:x", None));
    }
}
