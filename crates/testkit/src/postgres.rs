//! A throwaway PostgreSQL server for tests: `initdb` and `pg_ctl` in a temporary directory.
//!
//! [`Postgres::start`] finds the server programs (`pg_config --bindir`,
//! else the newest `/usr/lib/postgresql/*/bin`), creates a cluster in a
//! temporary directory with trust authentication for user `switchboard`,
//! and starts it on 127.0.0.1 on a free port, its unix socket in the same
//! directory. `initdb` refuses to run as root, so when the tests run as root
//! (CI containers do) the cluster belongs to the `postgres` user (or
//! `nobody`) and every program runs through `runuser -u`. The server is
//! stopped (immediate mode) and its directory removed on drop.

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A PostgreSQL server of the test's own.
pub struct Postgres {
    dir: tempfile::TempDir,
    bindir: PathBuf,
    /// The unprivileged user the cluster runs as when the tests are root.
    run_as: Option<String>,
    port: u16,
}

/// Where the PostgreSQL server programs are, if installed: `$PG_BINDIR`,
/// `pg_config --bindir`, or the newest `/usr/lib/postgresql/*/bin`.
pub fn postgres_bindir() -> Option<PathBuf> {
    let has_initdb = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("PG_BINDIR").map(PathBuf::from)
        && has_initdb(&dir)
    {
        return Some(dir);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_initdb(&dir) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_initdb(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// The message a test prints when it skips for want of PostgreSQL.
pub const POSTGRES_MISSING: &str = "PostgreSQL is not installed (no initdb/pg_ctl found through \
     $PG_BINDIR, pg_config --bindir or /usr/lib/postgresql/*/bin): skipping the PostgreSQL \
     tests; install Debian's `postgresql` package to run them";

fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("free port: {e}"))
}

/// `id -u USER` / `id -g USER`.
fn id_of(user: &str, flag: &str) -> Option<u32> {
    let out = Command::new("id").args([flag, user]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

impl Postgres {
    /// Creates and starts a cluster. `Ok(None)` when PostgreSQL is not
    /// installed (the caller prints [`POSTGRES_MISSING`] and skips); an
    /// error when it is installed but does not start.
    pub fn start() -> Result<Option<Postgres>, String> {
        let Some(bindir) = postgres_bindir() else {
            return Ok(None);
        };
        let dir = tempfile::Builder::new()
            .prefix("sb-pg")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        let root = std::fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false);
        let run_as = if root {
            let user = ["postgres", "nobody"]
                .into_iter()
                .find(|u| id_of(u, "-u").is_some())
                .ok_or("running as root and neither user postgres nor nobody exists")?;
            let (uid, gid) = (id_of(user, "-u"), id_of(user, "-g"));
            std::os::unix::fs::chown(dir.path(), uid, gid)
                .map_err(|e| format!("chown {} to {user}: {e}", dir.path().display()))?;
            Some(user.to_owned())
        } else {
            None
        };
        let mut pg = Postgres {
            dir,
            bindir,
            run_as,
            port: 0,
        };
        let data = pg.data();
        let out = pg.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "switchboard",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )?;
        if !out.status.success() {
            return Err(format!("initdb failed: {}", output_text(&out)));
        }
        let mut last = String::new();
        for _ in 0..3 {
            pg.port = free_port()?;
            match pg.start_server() {
                Ok(()) => return Ok(Some(pg)),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// Runs one of the server programs, as the cluster's owner.
    fn run(&self, program: &str, args: &[&str]) -> Result<Output, String> {
        let path = self.bindir.join(program);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&path);
                c
            }
            None => Command::new(&path),
        };
        cmd.args(args)
            .stdin(Stdio::null())
            .current_dir(self.dir.path())
            .output()
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    fn start_server(&self) -> Result<(), String> {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={} \
             -c fsync=off -c max_connections=40",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log").display().to_string();
        let out = self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-w",
                "-t",
                "60",
                "-o",
                &options,
                "start",
            ],
        )?;
        if out.status.success() {
            Ok(())
        } else {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            Err(format!(
                "pg_ctl start failed: {}\nserver log:\n{log}",
                output_text(&out)
            ))
        }
    }

    /// The connection URL (user `switchboard`, database `postgres`).
    pub fn url(&self) -> String {
        format!("postgres://switchboard@127.0.0.1:{}/postgres", self.port)
    }

    /// Creates database `name` (owned by `switchboard`) and returns its URL:
    /// a fresh database per test on one server.
    pub fn create_database(&self, name: &str) -> Result<String, String> {
        let port = self.port.to_string();
        let out = Command::new(self.bindir.join("createdb"))
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "switchboard", name])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("createdb: {e}"))?;
        if !out.status.success() {
            return Err(format!("createdb {name} failed: {}", output_text(&out)));
        }
        Ok(format!(
            "postgres://switchboard@127.0.0.1:{}/{name}",
            self.port
        ))
    }

    /// Runs `sql` with `psql` in database `db`; its output (unaligned,
    /// tuples only).
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let port = self.port.to_string();
        let out = Command::new(self.bindir.join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "switchboard",
                "-d",
                db,
                "-c",
                sql,
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("psql: {e}"))?;
        if !out.status.success() {
            return Err(format!("psql {sql:?} failed: {}", output_text(&out)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (fast shutdown: sessions are disconnected), as an
    /// outage would; [`resume`](Self::resume) starts it again.
    pub fn stop(&self) -> Result<(), String> {
        let out = self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"])?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("pg_ctl stop failed: {}", output_text(&out)))
        }
    }

    /// Starts the stopped server again on the same port.
    pub fn resume(&self) -> Result<(), String> {
        self.start_server()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }
}
