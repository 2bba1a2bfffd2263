//! The real `switchboard` binary on 127.0.0.1 port 0, with a temporary
//! config, killed when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why a server could not be started or queried.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServerError {
    /// The binary could not be spawned.
    Spawn(std::io::Error),
    /// The binary exited or went silent before logging its listeners.
    NotReady(String),
    /// An admin HTTP request failed.
    Http(String),
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerError::Spawn(e) => write!(f, "cannot start switchboard: {e}"),
            ServerError::NotReady(log) => {
                write!(f, "switchboard did not become ready; log:\n{log}")
            }
            ServerError::Http(e) => write!(f, "admin HTTP: {e}"),
        }
    }
}

impl std::error::Error for ServerError {}

/// A running `switchboard run` process.
pub struct Server {
    child: Child,
    binary: PathBuf,
    config: String,
    dir: tempfile::TempDir,
    log: Arc<Mutex<String>>,
    /// The UDP SIP address, if a UDP listener was configured.
    pub udp: Option<SocketAddr>,
    /// The TCP SIP address, if a TCP listener was configured.
    pub tcp: Option<SocketAddr>,
    /// The admin HTTP address.
    pub admin: Option<SocketAddr>,
}

/// The repository's shipped Lua, which a config's default `[dialplan]`
/// (`dialplans/` and `plugins/` next to the config) needs.
const SHIPPED_LUA: &[(&str, &str)] = &[
    (
        "dialplans/default.lua",
        include_str!("../../../dialplans/default.lua"),
    ),
    (
        "plugins/callforward.lua",
        include_str!("../../../plugins/callforward.lua"),
    ),
    ("plugins/dnd.lua", include_str!("../../../plugins/dnd.lua")),
    (
        "plugins/followme.lua",
        include_str!("../../../plugins/followme.lua"),
    ),
    ("plugins/ivr.lua", include_str!("../../../plugins/ivr.lua")),
    (
        "plugins/ringgroup.lua",
        include_str!("../../../plugins/ringgroup.lua"),
    ),
    (
        "plugins/speeddial.lua",
        include_str!("../../../plugins/speeddial.lua"),
    ),
    (
        "plugins/timeconditions.lua",
        include_str!("../../../plugins/timeconditions.lua"),
    ),
    (
        "plugins/voicemail.lua",
        include_str!("../../../plugins/voicemail.lua"),
    ),
    (
        "plugins/queue.lua",
        include_str!("../../../plugins/queue.lua"),
    ),
];

/// Writes the shipped Lua into `dir` unless a test already put a
/// `dialplans/` there.
fn seed_dialplans(dir: &Path) -> std::io::Result<()> {
    if dir.join("dialplans").exists() {
        return Ok(());
    }
    for (name, text) in SHIPPED_LUA {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, text)?;
    }
    Ok(())
}

/// The admin bearer token every test server gets (see
/// [`Server::start_with`]) and [`Server::http_get`] sends.
pub const TEST_ADMIN_TOKEN: &str = "testkit-admin-token-0123456789";

/// The config used when a test gives none: UDP and TCP on 127.0.0.1 port 0.
pub const DEFAULT_TEST_CONFIG: &str = r#"
[sip]
listen = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]
domain = "test.invalid"

[admin]
listen = "127.0.0.1:0"
"#;

/// `config` with `token = TEST_ADMIN_TOKEN` added to its `[admin]` table,
/// unless it sets a token itself or has no `[admin]` table.
fn with_admin_token(config: &str) -> String {
    if config.lines().any(|l| l.trim_start().starts_with("token")) {
        return config.to_owned();
    }
    let mut out = String::with_capacity(config.len() + 64);
    for line in config.lines() {
        out.push_str(line);
        out.push('\n');
        if line.trim() == "[admin]" {
            out.push_str(&format!("token = {TEST_ADMIN_TOKEN:?}\n"));
        }
    }
    out
}

impl Server {
    /// Starts `binary` with [`DEFAULT_TEST_CONFIG`].
    pub fn start(binary: &Path) -> Result<Server, ServerError> {
        Server::start_with(binary, DEFAULT_TEST_CONFIG)
    }

    /// Starts `binary run --config <tmp>/switchboard.toml` with `config` and
    /// waits (up to 20 s) until it has logged every listener. An `[admin]`
    /// table without a `token` gets `token = TEST_ADMIN_TOKEN`.
    pub fn start_with(binary: &Path, config: &str) -> Result<Server, ServerError> {
        let dir = tempfile::tempdir().map_err(ServerError::Spawn)?;
        Server::start_in(binary, dir, config)
    }

    /// Stops the server (SIGTERM, as an admin would) and starts the same
    /// binary again in the same directory with the same config, so
    /// whatever it stored there is what the new process finds.
    pub fn restart(self) -> Result<Server, ServerError> {
        let mut old = self;
        if old.terminate(Duration::from_secs(10)).is_none() {
            return Err(ServerError::NotReady(format!(
                "did not stop on SIGTERM; log:\n{}",
                old.log()
            )));
        }
        old.start_again()
    }

    /// Kills the server with SIGKILL (no shutdown, nothing flushed by the
    /// process: a crash as far as it can tell) and starts it again like
    /// [`restart`](Self::restart).
    pub fn kill_and_restart(self) -> Result<Server, ServerError> {
        let mut old = self;
        old.child.kill().map_err(ServerError::Spawn)?;
        old.child.wait().map_err(ServerError::Spawn)?;
        old.start_again()
    }

    /// Starts the binary again in this server's directory with its config;
    /// this one must have exited.
    fn start_again(self) -> Result<Server, ServerError> {
        let mut old = self;
        let binary = old.binary.clone();
        let config = old.config.clone();
        let placeholder = tempfile::tempdir().map_err(ServerError::Spawn)?;
        let dir = std::mem::replace(&mut old.dir, placeholder);
        drop(old);
        Server::start_in(&binary, dir, &config)
    }

    fn start_in(
        binary: &Path,
        dir: tempfile::TempDir,
        config: &str,
    ) -> Result<Server, ServerError> {
        let path = dir.path().join("switchboard.toml");
        let config = &with_admin_token(config);
        std::fs::write(&path, config).map_err(ServerError::Spawn)?;
        seed_dialplans(dir.path()).map_err(ServerError::Spawn)?;
        let mut child = Command::new(binary)
            .arg("run")
            .arg("--config")
            .arg(&path)
            .current_dir(dir.path())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(ServerError::Spawn)?;
        let Some(stderr) = child.stderr.take() else {
            let _ = child.kill();
            return Err(ServerError::NotReady("no stderr".into()));
        };
        let log = Arc::new(Mutex::new(String::new()));
        let (lines_tx, lines_rx) = mpsc::channel::<String>();
        let log_writer = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut l) = log_writer.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
                let _ = lines_tx.send(line);
            }
        });
        let wants_udp = config.contains("\"udp:");
        let wants_tcp = config.contains("\"tcp:");
        let mut server = Server {
            child,
            binary: binary.to_path_buf(),
            config: config.to_owned(),
            dir,
            log,
            udp: None,
            tcp: None,
            admin: None,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while (wants_udp && server.udp.is_none())
            || (wants_tcp && server.tcp.is_none())
            || server.admin.is_none()
        {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = lines_rx.recv_timeout(left) else {
                return Err(ServerError::NotReady(server.log()));
            };
            if let Some(addr) = after(&line, "SIP listening on udp:") {
                server.udp = Some(addr);
            } else if let Some(addr) = after(&line, "SIP listening on tcp:") {
                server.tcp = Some(addr);
            } else if let Some(addr) = after(&line, "admin listening on http://") {
                server.admin = Some(addr);
            }
        }
        Ok(server)
    }

    /// Everything the server has written to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits up to `within` for `needle` to appear in the server's log;
    /// whether it did.
    pub fn wait_log(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server process's id (to read its memory use from `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's resident memory in KiB (`VmRSS` in `/proc/PID/status`),
    /// where `/proc` exists.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// The server's working directory (holds the config).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends a signal (`"TERM"`, `"HUP"`, …) and returns at once.
    pub fn signal(&self, name: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status();
    }

    /// Waits up to `within` for the process to exit by itself.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Sends SIGTERM and waits up to `within` for the exit status.
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// `GET path` on the admin listener; returns (status, body).
    pub fn http_get(&self, path: &str) -> Result<(u16, String), ServerError> {
        self.http("GET", path)
    }

    /// `METHOD path` (no body) on the admin listener; returns (status, body).
    pub fn http(&self, method: &str, path: &str) -> Result<(u16, String), ServerError> {
        let addr = self
            .admin
            .ok_or_else(|| ServerError::Http("no admin listener".into()))?;
        http_request(addr, method, path).map_err(|e| ServerError::Http(e.to_string()))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn after(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let addr = rest.split_whitespace().next()?;
    addr.trim_end_matches([',', '"']).parse().ok()
}

/// A minimal HTTP/1.1 request without a body (Connection: close) with the
/// bearer token [`TEST_ADMIN_TOKEN`], returning (status, body).
pub fn http_request(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TEST_ADMIN_TOKEN}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}
