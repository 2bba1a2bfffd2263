//! The operator subcommands (`status`, `registrations`, `calls`, `cdrs`,
//! `reload`, `hangup`, `unregister`, `bans`, `unban`, `trace`): each asks a
//! running server over its admin API — found from the same config as
//! `run`, never by opening the storage a running server holds — and prints
//! its answer as a table that fits 80 columns, or as JSON with `--json`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::cli::Command;
use crate::config::Config;

/// Why an operator command failed; one line each.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpsError {
    /// Nothing listens on the admin address.
    #[error("no switchboard answering on {0} — is it running?")]
    NotRunning(String),
    /// The config turns the admin API off.
    #[error(
        "the admin API is off in this config (admin.enabled = false); operator commands need it"
    )]
    AdminDisabled,
    /// No token in the config and storage in memory: it is only in the log.
    #[error(
        "admin.token is not set and storage is in memory, so the server's token is only in its log; set admin.token in the config"
    )]
    NoToken,
    /// The generated token file could not be read.
    #[error("admin token file {}: {source}; set admin.token in the config, or run this as the user the server runs as, from its working directory", path.display())]
    TokenFile {
        /// `admin.token` beside the storage.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The request failed on the way (not a refusal).
    #[error("admin API at {url}: {message}")]
    Http {
        /// The URL asked.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The server answered with an error.
    #[error("{message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The server's `error` text.
        message: String,
    },
    /// `reload` found errors (the last one; the others are printed before).
    #[error("{0}")]
    Reload(String),
}

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(15);

/// A client for the admin API of the server `config` describes.
pub struct Client {
    base: String,
    token: Result<String, OpsError>,
    agent: ureq::Agent,
}

impl Client {
    /// The admin address and token of the server `config` describes.
    pub fn new(config: &Config) -> Result<Client, OpsError> {
        let listen = config.admin.listen.ok_or(OpsError::AdminDisabled)?;
        let token = match &config.admin.token {
            Some(token) => Ok(token.clone()),
            None => match crate::admin_guard::token_file(&config.storage) {
                None => Err(OpsError::NoToken),
                Some(path) => crate::admin_guard::read_token(&path)
                    .map_err(|source| OpsError::TokenFile { path, source }),
            },
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(TIMEOUT))
            .proxy(None)
            .max_redirects(0)
            .build()
            .into();
        Ok(Client {
            base: format!("http://{}", reachable(listen)),
            token,
            agent,
        })
    }

    /// `METHOD path`; the JSON answer of a 2xx, or the server's error.
    pub fn call(&self, method: &str, path: &str) -> Result<Value, OpsError> {
        let (status, body) = self.send(method, path)?;
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            Err(refused(status, &body))
        }
    }

    /// `METHOD path`: the status and JSON body, whatever the status.
    pub fn send(&self, method: &str, path: &str) -> Result<(u16, Value), OpsError> {
        let token = match &self.token {
            Ok(token) => token.clone(),
            Err(_) => {
                // Without a token, first tell "not running" from "no token".
                self.raw("GET", "/health", None)?;
                return Err(match &self.token {
                    Err(OpsError::TokenFile { path, source }) => OpsError::TokenFile {
                        path: path.clone(),
                        source: io::Error::new(source.kind(), source.to_string()),
                    },
                    _ => OpsError::NoToken,
                });
            }
        };
        self.raw(method, path, Some(&token))
    }

    fn raw(&self, method: &str, path: &str, token: Option<&str>) -> Result<(u16, Value), OpsError> {
        let url = format!("{}{path}", self.base);
        let auth = token.map(|t| format!("Bearer {t}"));
        let result = match method {
            "POST" => {
                let mut r = self.agent.post(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.send_empty()
            }
            "DELETE" => {
                let mut r = self.agent.delete(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            _ => {
                let mut r = self.agent.get(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
        };
        let mut response = result.map_err(|e| match e {
            ureq::Error::Io(_) | ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
                OpsError::NotRunning(self.base.clone())
            }
            e => OpsError::Http {
                url: url.clone(),
                message: e.to_string(),
            },
        })?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| OpsError::Http {
                url: url.clone(),
                message: e.to_string(),
            })?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, body))
    }
}

/// Where to reach a listener bound to `listen` (the loopback address of
/// its family when it listens on every address).
fn reachable(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, listen.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, listen.port()).into(),
        _ => listen,
    }
}

fn refused(status: u16, body: &Value) -> OpsError {
    let message = body
        .get("error")
        .and_then(Value::as_str)
        .map_or_else(|| format!("the admin API answered {status}"), str::to_owned);
    OpsError::Refused { status, message }
}

/// Percent-encodes one path segment (RFC 3986 unreserved characters stay).
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Runs an operator command; `Ok(false)` if it is not one.
pub fn run(command: &Command, config: &Config, json: bool) -> Result<bool, OpsError> {
    let client = Client::new(config)?;
    let out = |v: &Value| println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    match command {
        Command::Status => {
            let v = client.call("GET", "/api/v1/status")?;
            if json {
                out(&v);
            } else {
                print!("{}", status_text(&v));
            }
        }
        Command::Registrations { ext } => {
            let v = client.call("GET", "/api/v1/registrations")?;
            let list: Vec<Value> = v
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|r| {
                    ext.as_deref()
                        .is_none_or(|e| aor_matches(str_of(r, "aor"), e))
                })
                .collect();
            if json {
                out(&Value::Array(list));
            } else if list.is_empty() {
                println!("no registrations");
            } else {
                print!("{}", registrations_table(&list));
            }
        }
        Command::Calls => {
            let v = client.call("GET", "/api/v1/calls")?;
            if json {
                out(&v);
            } else {
                print!("{}", calls_table(&v, pbx::unix_ms()));
            }
        }
        Command::Cdrs { limit, since, csv } => {
            let mut query = Vec::new();
            if let Some(n) = limit {
                query.push(format!("limit={n}"));
            }
            if let Some(s) = since {
                query.push(format!("since={}", segment(s)));
            }
            let path = if query.is_empty() {
                "/api/v1/cdrs".to_owned()
            } else {
                format!("/api/v1/cdrs?{}", query.join("&"))
            };
            let v = client.call("GET", &path)?;
            if json {
                out(&v);
            } else if *csv {
                print!("{}", cdrs_csv(&v));
            } else {
                print!("{}", cdrs_table(&v));
            }
        }
        Command::Reload => {
            let (status, v) = client.send("POST", "/api/v1/reload")?;
            if (200..300).contains(&status) {
                if json {
                    out(&v);
                } else {
                    println!(
                        "dialplan reloaded: generation {}",
                        v.get("generation").map_or(Value::Null, Clone::clone)
                    );
                }
            } else if status == 422 {
                if json {
                    out(&v);
                }
                let mut lines: Vec<String> = v
                    .get("errors")
                    .and_then(Value::as_array)
                    .map(|errors| errors.iter().map(reload_error).collect())
                    .unwrap_or_default();
                let last = lines
                    .pop()
                    .unwrap_or_else(|| "the dialplan did not reload".to_owned());
                for line in &lines {
                    eprintln!("switchboard: {line}");
                }
                return Err(OpsError::Reload(last));
            } else {
                return Err(refused(status, &v));
            }
        }
        Command::Hangup { call_id } => {
            let v = client.call("DELETE", &format!("/api/v1/calls/{}", segment(call_id)))?;
            if json {
                out(&v);
            } else {
                println!("hung up {call_id}");
            }
        }
        Command::Unregister { ext } => {
            let v = client.call("DELETE", &format!("/api/v1/registrations/{}", segment(ext)))?;
            if json {
                out(&v);
            } else {
                let n = v.get("removed").and_then(Value::as_u64).unwrap_or(0);
                println!(
                    "removed {n} registration{} of {}",
                    if n == 1 { "" } else { "s" },
                    str_of(&v, "aor")
                );
            }
        }
        Command::Bans => {
            let v = client.call("GET", "/api/v1/bans")?;
            if json {
                out(&v);
            } else {
                print!("{}", bans_text(&v));
            }
        }
        Command::Unban { ip } => {
            let path = if ip.parse::<IpAddr>().is_ok() {
                format!("/api/v1/bans/{}", segment(ip))
            } else {
                format!("/api/v1/bans/user/{}", segment(ip))
            };
            let v = client.call("DELETE", &path)?;
            if json {
                out(&v);
            } else {
                println!("lifted {ip}");
            }
        }
        Command::Trace { call_id, full } => {
            let path = format!(
                "/api/v1/calls/{}/trace{}",
                segment(call_id),
                if *full { "?full=true" } else { "" }
            );
            let v = client.call("GET", &path)?;
            if json {
                out(&v);
            } else {
                print!("{}", crate::trace::render(&v, *full));
            }
        }
        _ => return Ok(false),
    }
    Ok(true)
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn num_of(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::Null) | None => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Whether `aor` is the AOR `ext` names (an extension or a whole AOR).
fn aor_matches(aor: &str, ext: &str) -> bool {
    if ext.contains(':') {
        return aor.eq_ignore_ascii_case(ext);
    }
    aor.split_once(':')
        .and_then(|(_, rest)| rest.split_once('@'))
        .is_some_and(|(user, _)| user == ext)
}

/// The user part of a SIP URI (`sip:1001@host` → `1001`), or the URI.
fn user_of(uri: &str) -> &str {
    uri.split_once(':')
        .and_then(|(_, rest)| rest.split_once('@'))
        .map_or(uri, |(user, _)| user)
}

fn reload_error(e: &Value) -> String {
    let file = str_of(e, "file");
    let message = str_of(e, "message");
    match e.get("line").and_then(Value::as_u64) {
        Some(line) if !file.is_empty() => format!("{file}:{line}: {message}"),
        _ if !file.is_empty() => format!("{file}: {message}"),
        _ => message.to_owned(),
    }
}

fn secs(total: u64) -> String {
    let (d, h, m, s) = (
        total / 86_400,
        total / 3600 % 24,
        total / 60 % 60,
        total % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

fn status_text(v: &Value) -> String {
    let mut out = format!(
        "switchboard {}, up {}\n",
        str_of(v, "version"),
        secs(v.get("uptime_secs").and_then(Value::as_u64).unwrap_or(0))
    );
    let listeners = v.get("listeners");
    let mut first = true;
    for l in listeners
        .and_then(|l| l.get("sip"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let label = if first { "listeners:" } else { "" };
        first = false;
        out.push_str(&format!("{label:<12}sip {l}\n"));
    }
    if let Some(admin) = listeners
        .and_then(|l| l.get("admin"))
        .and_then(Value::as_str)
    {
        let label = if first { "listeners:" } else { "" };
        out.push_str(&format!("{label:<12}admin {admin}\n"));
    }
    out.push_str(&format!(
        "{:<12}generation {}\n",
        "dialplan:",
        num_of(v, "generation")
    ));
    let c = v.get("counts").cloned().unwrap_or(Value::Null);
    let counts: Vec<String> = [
        ("registrations", "registration"),
        ("calls", "call"),
        ("banned_sources", "banned source"),
        ("locked_users", "locked user"),
    ]
    .iter()
    .map(|(key, noun)| {
        let n = c.get(*key).and_then(Value::as_u64).unwrap_or(0);
        format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
    })
    .collect();
    out.push_str(&format!("{:<12}{}\n", "counts:", counts.join(", ")));
    out
}

fn registrations_table(list: &[Value]) -> String {
    let rows = list
        .iter()
        .map(|r| {
            vec![
                user_of(str_of(r, "aor")).to_owned(),
                str_of(r, "contact").to_owned(),
                format!("{}:{}", str_of(r, "transport"), str_of(r, "source")),
                num_of(r, "expires_in"),
                match r.get("reachable").and_then(Value::as_bool) {
                    Some(true) => "yes".to_owned(),
                    Some(false) => "no".to_owned(),
                    None => "-".to_owned(),
                },
            ]
        })
        .collect();
    table(&["EXT", "CONTACT", "SOURCE", "EXPIRES", "REACH"], rows)
}

fn calls_table(v: &Value, now_ms: u64) -> String {
    let list = v.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return "no calls in progress\n".to_owned();
    }
    let rows = list
        .iter()
        .map(|c| {
            let started = c
                .get("started_ms")
                .and_then(Value::as_u64)
                .unwrap_or(now_ms);
            vec![
                str_of(c, "id").to_owned(),
                user_of(str_of(c, "from")).to_owned(),
                user_of(str_of(c, "to")).to_owned(),
                str_of(c, "state").to_owned(),
                secs(now_ms.saturating_sub(started) / 1000),
            ]
        })
        .collect();
    table(&["ID", "FROM", "TO", "STATE", "AGE"], rows)
}

fn rfc3339(ms: Option<u64>) -> String {
    ms.map_or_else(String::new, |ms| {
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms))
            .to_string()
    })
}

fn cdrs_table(v: &Value) -> String {
    let list = v.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return "no call records\n".to_owned();
    }
    let rows = list
        .iter()
        .map(|c| {
            vec![
                rfc3339(c.get("start_ms").and_then(Value::as_u64)),
                user_of(str_of(c, "from")).to_owned(),
                user_of(str_of(c, "to")).to_owned(),
                str_of(c, "disposition").to_owned(),
                num_of(c, "code"),
                secs(c.get("duration_ms").and_then(Value::as_u64).unwrap_or(0) / 1000),
            ]
        })
        .collect();
    table(&["START", "FROM", "TO", "RESULT", "CODE", "LENGTH"], rows)
}

/// The CSV columns of `cdrs --csv`, in order.
const CSV_COLUMNS: &[&str] = &[
    "id",
    "call_id",
    "start",
    "start_ms",
    "answer_ms",
    "end_ms",
    "from",
    "to",
    "caller",
    "callee",
    "context",
    "disposition",
    "code",
    "duration_ms",
    "billable_ms",
    "hangup_cause",
];

fn cdrs_csv(v: &Value) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push('\n');
    for c in v.as_array().into_iter().flatten() {
        let fields: Vec<String> = CSV_COLUMNS
            .iter()
            .map(|&k| match k {
                "start" => rfc3339(c.get("start_ms").and_then(Value::as_u64)),
                k => match c.get(k) {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                },
            })
            .map(|f| csv_field(&f))
            .collect();
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

/// RFC 4180: quoted when it holds a comma, quote or line break.
fn csv_field(f: &str) -> String {
    if f.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f.to_owned()
    }
}

fn bans_text(v: &Value) -> String {
    let sources = v
        .get("sources")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let users = v
        .get("users")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if sources.is_empty() && users.is_empty() {
        return "no bans\n".to_owned();
    }
    let mut rows: Vec<Vec<String>> = sources
        .iter()
        .map(|s| {
            vec![
                "source".to_owned(),
                str_of(s, "source").to_owned(),
                secs(s.get("remaining_secs").and_then(Value::as_u64).unwrap_or(0)),
            ]
        })
        .collect();
    rows.extend(users.iter().map(|u| {
        vec![
            "user".to_owned(),
            str_of(u, "user").to_owned(),
            secs(u.get("remaining_secs").and_then(Value::as_u64).unwrap_or(0)),
        ]
    }));
    table(&["KIND", "WHO", "LEFT"], rows)
}

/// Widest a table may be.
const WIDTH: usize = 80;

/// A left-aligned table at most [`WIDTH`] columns wide: the widest
/// columns are cut (ending in `…`) until it fits.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let n = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let gaps = 2 * n.saturating_sub(1);
    while widths.iter().sum::<usize>() + gaps > WIDTH {
        let Some((i, w)) = widths.iter().enumerate().max_by_key(|(_, w)| **w) else {
            break;
        };
        if *w <= 4 {
            break;
        }
        widths[i] -= 1;
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
        let mut out = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            let cut = fit(cell, *w);
            if i + 1 == n {
                out.push_str(&cut);
            } else {
                out.push_str(&format!("{cut:<w$}  "));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(&mut headers.iter().copied());
    for row in &rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// `cell` cut to `width` characters, ending in `…` if it was longer.
fn fit(cell: &str, width: usize) -> String {
    if cell.chars().count() <= width {
        return cell.to_owned();
    }
    let mut out: String = cell.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_fit_80_columns() {
        let long =
            "sip:1001@192.0.2.10:5060;transport=udp;ob;rinstance=0123456789abcdef".to_owned();
        let t = table(
            &["EXT", "CONTACT", "SOURCE"],
            vec![vec![
                "1001".into(),
                long.clone(),
                "udp:192.0.2.10:5060".into(),
            ]],
        );
        for line in t.lines() {
            assert!(line.chars().count() <= WIDTH, "{line}");
        }
        assert!(t.contains('…'));
        assert!(t.starts_with("EXT "));
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        assert_eq!(csv_field("a"), "a");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("abc@h.x"), "abc%40h.x");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn aors_match_extensions() {
        assert!(aor_matches("sip:1001@x", "1001"));
        assert!(!aor_matches("sip:10010@x", "1001"));
        assert!(aor_matches("sip:1001@x", "sip:1001@x"));
    }
}
