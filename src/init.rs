//! `switchboard init [DIR]`: writes an editable office — `switchboard.toml`
//! with a generated password per extension, `dialplans/`, `plugins/` and
//! `sounds/` from the embedded copies — that passes `check` and runs.
//! It never overwrites a file: if any it would write exists, it writes
//! nothing.

use std::net::{IpAddr, UdpSocket};
use std::path::{Path, PathBuf};

use crate::config::LOCAL_CONFIG;
use crate::dialplan::{EMBEDDED_DIALPLANS, EMBEDDED_PLUGINS, EMBEDDED_SOUNDS};

/// Why `init` wrote nothing (or stopped part-way on a disk error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// A file `init` would write is already there.
    #[error(
        "init: {} already exists; init writes a new office only where there is none — choose another directory (switchboard init DIR) or move it aside",
        .0.display()
    )]
    Exists(PathBuf),
    /// The disk said no.
    #[error("init: cannot write {}: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The office's extensions: id and display name.
const EXTENSIONS: [(&str, &str); 4] = [
    ("1000", "Reception"),
    ("1001", "Office 1001"),
    ("1002", "Office 1002"),
    ("1003", "Office 1003"),
];

/// Length of the generated passwords.
const PASSWORD_LEN: usize = 16;

/// Writes the office into `dir` (created if missing) and returns what to
/// tell the user.
pub fn init(dir: &Path) -> Result<String, InitError> {
    let config_path = dir.join(LOCAL_CONFIG);
    let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    for (name, text) in EMBEDDED_DIALPLANS {
        files.push((dir.join("dialplans").join(name), text.as_bytes().to_vec()));
    }
    for (name, text) in EMBEDDED_PLUGINS {
        files.push((dir.join("plugins").join(name), text.as_bytes().to_vec()));
    }
    for (name, bytes) in EMBEDDED_SOUNDS {
        files.push((dir.join("sounds").join(name), bytes.to_vec()));
    }
    let domain = primary_address().map_or_else(|| "localhost".to_owned(), |ip| ip.to_string());
    let passwords: Vec<String> = EXTENSIONS.iter().map(|(id, _)| password(id)).collect();
    files.insert(
        0,
        (
            config_path.clone(),
            config_text(&domain, &passwords).into_bytes(),
        ),
    );
    if let Some((path, _)) = files.iter().find(|(path, _)| path.exists()) {
        return Err(InitError::Exists(path.clone()));
    }
    for (path, bytes) in &files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| InitError::Write {
                path: parent.to_owned(),
                source,
            })?;
        }
        write_new(path, bytes)?;
    }
    let mut out = format!(
        "wrote a new office in {}: {LOCAL_CONFIG} (domain {domain}), dialplans/, plugins/, sounds/\n",
        dir.display()
    );
    for ((id, name), password) in EXTENSIONS.iter().zip(&passwords) {
        out.push_str(&format!("  extension {id} ({name}): password {password}\n"));
    }
    out.push_str(&format!(
        "(the passwords are in {}; change them there at will)\nnext: cd {} && switchboard check && switchboard run",
        config_path.display(),
        shell_word(dir)
    ));
    Ok(out)
}

/// Creates `path`, failing if it exists (no overwrite even in a race).
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), InitError> {
    use std::io::Write;
    let fail = |source| InitError::Write {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                InitError::Exists(path.to_owned())
            } else {
                fail(e)
            }
        })?;
    file.write_all(bytes).map_err(fail)
}

/// A random password `check` does not call weak.
fn password(id: &str) -> String {
    loop {
        let candidate = crate::store::random_password(PASSWORD_LEN);
        if crate::config::weak_password(id, &candidate).is_none() {
            return candidate;
        }
    }
}

/// The address this machine reaches the rest of the network from (the
/// source address of a route to a documentation address; no packet is
/// sent), for `sip.domain`: phones on other machines can use it. `None`
/// without a route.
fn primary_address() -> Option<IpAddr> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:5060").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
}

fn shell_word(dir: &Path) -> String {
    let text = dir.display().to_string();
    if text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b))
    {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

fn config_text(domain: &str, passwords: &[String]) -> String {
    let mut extensions = String::new();
    for ((id, name), password) in EXTENSIONS.iter().zip(passwords) {
        extensions.push_str(&format!(
            "[[extension]]\nid = \"{id}\"\nname = \"{name}\"\npassword = \"{password}\"\n# context = \"default\"   # dialplans/default.lua\n\n"
        ));
    }
    format!(
        r#"# Your Switchboard office, written by `switchboard init`. Edit at will:
# `switchboard check` checks it (file:line for every mistake), and
# `switchboard run` in this directory runs it. Every key is described in
# README.md, "Configuration reference". Unknown keys are errors.
#
# Paths (dialplans, plugins, sounds) are relative to this file's
# directory; storage.path is relative to the directory you run in.

shutdown_grace = "10s"

[sip]
listen = ["udp:0.0.0.0:5060", "tcp:0.0.0.0:5060"]
# Phones use it as their SIP domain / server; it was set to this machine's
# address when the office was written. A DNS name that points here works too.
domain = "{domain}"

[admin]
# The admin API; its bearer token is generated into var/admin.token at the
# first start. Keep it on loopback.
listen = "127.0.0.1:8088"

[log]
# error, warn, info, debug, trace, or a filter such as "info,sip_net=debug".
level = "info"

[storage]
path = "var/switchboard.redb"

[dialplan]
dir = "dialplans"
plugins = "plugins"
sounds = "sounds"
# Voicemail audio, one directory per extension (owner-only files).
voicemail = "var/voicemail"

[media]
bind = "0.0.0.0"
rtp_ports = "10000-20000"
codecs = ["PCMU", "PCMA", "G722", "telephone-event"]

[security]
digest_algorithms = ["MD5"]
ban_after_failures = 10
ban_window = "60s"
ban_time = "10m"

# One table per phone. After a change, `kill -HUP` the server or
# POST /api/v1/reload: calls in progress stay up.
{extensions}"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_office_parses_with_strong_passwords() {
        let passwords: Vec<String> = EXTENSIONS.iter().map(|(id, _)| password(id)).collect();
        let text = config_text("192.0.2.10", &passwords);
        let config = crate::config::Config::parse(
            crate::config::ConfigSource::File("office/switchboard.toml".into()),
            &text,
        )
        .expect("the written config parses");
        assert_eq!(config.extensions.len(), 4);
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        assert_eq!(config.sip.domain, "192.0.2.10");
        assert_eq!(passwords[0].len(), PASSWORD_LEN);
        assert_ne!(passwords[0], passwords[1]);
    }

    #[test]
    fn shell_words_are_quoted_when_needed() {
        assert_eq!(shell_word(Path::new("office")), "office");
        assert_eq!(shell_word(Path::new("my office")), "'my office'");
    }
}
