//! Helpers shared by the integration tests: run the real `switchboard` binary with a temporary config.
//!
//! Every spawned process is owned by a [`Running`] guard that kills it when
//! dropped, so a failing assertion never leaves a server behind, and every
//! wait has a deadline.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long any single wait in these tests may take.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A temporary directory holding `switchboard.toml`; the binary runs inside it.
pub struct Workdir {
    dir: tempfile::TempDir,
}

impl Workdir {
    /// A directory with copies of the repository's `dialplans/` and
    /// `plugins/` (which a config file's default `[dialplan]` needs), an
    /// empty `sounds/` (so `check` has no missing-prompts warning), and
    /// nothing else (no `switchboard.toml`).
    pub fn empty() -> Workdir {
        let w = Workdir::bare();
        std::fs::create_dir(w.path().join("sounds")).expect("mkdir sounds");
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        for dir in ["dialplans", "plugins"] {
            std::fs::create_dir(w.path().join(dir)).expect("mkdir");
            for entry in std::fs::read_dir(repo.join(dir)).expect("read repo dir") {
                let path = entry.expect("dir entry").path();
                if path.extension().is_some_and(|e| e == "lua") {
                    let name = path.file_name().expect("file name");
                    std::fs::copy(&path, w.path().join(dir).join(name)).expect("copy lua");
                }
            }
        }
        w
    }

    /// A really empty directory.
    pub fn bare() -> Workdir {
        Workdir {
            dir: tempfile::tempdir().expect("create temp dir"),
        }
    }

    /// A directory with `name` containing `text`.
    pub fn with_file(name: &str, text: &str) -> Workdir {
        let w = Workdir::empty();
        w.write(name, text);
        w
    }

    /// Writes `name` in the directory (creating its parent) and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent dir");
        }
        std::fs::write(&path, text).expect("write config");
        path
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `switchboard ARGS` in this directory, with `RUST_LOG` cleared.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        c.args(args)
            .current_dir(self.dir.path())
            .env_remove("RUST_LOG")
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null());
        c
    }

    /// Runs `switchboard ARGS` to completion (killed after [`DEADLINE`]).
    pub fn run(&self, args: &[&str]) -> Finished {
        finish(self.command(args))
    }

    /// Starts `switchboard ARGS` in the background and waits for its listening lines.
    pub fn start(&self, args: &[&str]) -> Running {
        let mut child = self
            .command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn switchboard");
        let stderr = child.stderr.take().expect("piped stderr");
        let mut running = Running::adopt(child);
        let (tx, rx) = channel();
        let log = Arc::clone(&running.log);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut log) = log.lock() {
                    log.push_str(&line);
                    log.push('\n');
                }
                // Once nobody listens any more, keep draining so the child never blocks.
                let _ = tx.send(line);
            }
        });
        running.lines = Some(rx);
        running.wait_for_listeners();
        running
    }
}

/// Runs `command` to completion, capturing its output; killed after [`DEADLINE`].
pub fn finish(mut command: Command) -> Finished {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn switchboard");
    let stdout = reader(child.stdout.take());
    let stderr = reader(child.stderr.take());
    let mut guard = Running::adopt(child);
    let status = guard
        .wait(DEADLINE)
        .unwrap_or_else(|| panic!("{command:?} did not exit within {DEADLINE:?}"));
    Finished {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

fn reader(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_string(&mut s);
        }
        s
    })
}

/// A process that ran to the end.
pub struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
}

impl Finished {
    /// Asserts exit code 1 and exactly one non-empty stderr line starting `switchboard: `; returns it.
    pub fn one_error_line(&self) -> &str {
        assert_eq!(
            self.status.code(),
            Some(1),
            "exit code; stderr:\n{}",
            self.stderr
        );
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "want one stderr line, got:\n{}",
            self.stderr
        );
        assert!(lines[0].starts_with("switchboard: "), "{}", lines[0]);
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        assert!(!self.stderr.contains("RUST_BACKTRACE"), "{}", self.stderr);
        lines[0]
    }
}

/// A running switchboard, killed when dropped.
pub struct Running {
    child: Child,
    lines: Option<Receiver<String>>,
    log: Arc<Mutex<String>>,
    /// `(transport, address)` of every `SIP listening on` line.
    pub sip: Vec<(String, SocketAddr)>,
    /// The address of the `admin listening on http://` line, if any.
    pub admin: Option<SocketAddr>,
}

impl Running {
    fn adopt(child: Child) -> Running {
        Running {
            child,
            lines: None,
            log: Arc::default(),
            sip: Vec::new(),
            admin: None,
        }
    }

    /// The process id, for `kill`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything read from stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Reads stderr until the admin line (logged last) or the "admin HTTP disabled" line.
    fn wait_for_listeners(&mut self) {
        let deadline = Instant::now() + DEADLINE;
        let Some(lines) = self.lines.take() else {
            return;
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match lines.recv_timeout(left) {
                Ok(line) => line,
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no listening lines within {DEADLINE:?}; stderr:\n{}",
                        self.log()
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.wait(Duration::from_secs(5));
                    panic!(
                        "switchboard exited ({status:?}) before listening; stderr:\n{}",
                        self.log()
                    )
                }
            };
            if let Some(rest) = after(&line, "SIP listening on ") {
                let (transport, addr) = rest.split_once(':').expect("transport:addr");
                let addr = addr.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
                self.sip.push((transport.to_owned(), addr));
            } else if let Some(rest) = after(&line, "admin listening on http://") {
                self.admin = Some(rest.parse().unwrap_or_else(|e| panic!("{line}: {e}")));
                break;
            } else if line.contains("admin HTTP disabled") {
                break;
            }
        }
        self.lines = Some(lines);
    }

    /// The first SIP listener of `transport` (`udp`, `tcp`).
    pub fn sip_addr(&self, transport: &str) -> SocketAddr {
        self.sip
            .iter()
            .find(|(t, _)| t == transport)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no {transport} listener in:\n{}", self.log()))
    }

    /// The admin address; panics if the admin server is disabled.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.expect("admin server is enabled")
    }

    /// Sends `signal` (`TERM`, `INT`) with the `kill` command.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() >= deadline => return None,
                Ok(None) => thread::sleep(Duration::from_millis(20)),
                Err(e) => panic!("wait for switchboard: {e}"),
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The text after `marker` in `line`, up to the next whitespace.
fn after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let start = line.find(marker)? + marker.len();
    line[start..].split_whitespace().next()
}

/// The `admin.token` of [`loopback_config`]; [`http`] sends it.
pub const TEST_ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A config with these SIP listeners and admin address (its token
/// [`TEST_ADMIN_TOKEN`]), and a 3 s shutdown grace.
pub fn loopback_config(sip_listen: &[&str], admin_listen: &str) -> String {
    let listen: Vec<String> = sip_listen.iter().map(|l| format!("{l:?}")).collect();
    format!(
        "shutdown_grace = \"3s\"\n\n[sip]\nlisten = [{}]\ndomain = \"test.invalid\"\n\n[admin]\nlisten = {admin_listen:?}\ntoken = {TEST_ADMIN_TOKEN:?}\n",
        listen.join(", ")
    )
}

/// The default test config: UDP and TCP on 127.0.0.1 port 0, admin on 127.0.0.1 port 0.
pub fn free_ports_config() -> String {
    loopback_config(&["udp:127.0.0.1:0", "tcp:127.0.0.1:0"], "127.0.0.1:0")
}

/// An HTTP response read over a raw socket.
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header lines, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
}

impl HttpResponse {
    /// The first header called `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `METHOD path` over HTTP/1.1 with `Connection: close`, `Host` the
/// address and the bearer token [`TEST_ADMIN_TOKEN`]; no client library needed.
pub fn http(addr: SocketAddr, method: &str, path: &str) -> HttpResponse {
    let host = addr.to_string();
    let auth = format!("Bearer {TEST_ADMIN_TOKEN}");
    http_with(
        addr,
        method,
        path,
        &[("Host", &host), ("Authorization", &auth)],
    )
}

/// `METHOD path` with exactly these headers (and `Connection: close`,
/// `Content-Length: 0`).
pub fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> HttpResponse {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect admin");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("Connection: close\r\nContent-Length: 0\r\n\r\n");
    s.write_all(head.as_bytes()).expect("send request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("header/body separator");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    HttpResponse {
        status,
        headers,
        body: body.to_owned(),
    }
}
