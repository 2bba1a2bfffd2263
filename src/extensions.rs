//! The `[[extension]]` accounts while the server runs: read again from the
//! config file on reload (SIGHUP, `POST /api/v1/reload`) and swapped whole
//! into the registrar, the SIP channel, the dialplan and the voicemail
//! mailer, with calls kept up (and the `[[trunk]]`s, whose registrations
//! restart where they changed or had stopped); `GET /api/v1/extensions` lists them (never
//! their passwords).

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Json;
use axum::response::{IntoResponse, Response};
use dialplan::ExtensionInfo;
use registrar::Registrar;
use serde::Serialize;
use storage::Storage;
use tracing::info;

use crate::config::{Config, ConfigError, ConfigSource, ExtensionConfig};

/// Why a reload of the extensions failed (the old ones are kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReloadFailure {
    /// The config file.
    pub file: String,
    /// The line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// The extensions in force and everything that must see a change.
pub struct Extensions {
    source: ConfigSource,
    domain: String,
    storage: Arc<dyn Storage>,
    registrar: Registrar,
    channel: Arc<ArcSwap<HashMap<String, chan_sip::Extension>>>,
    dialplan: Arc<ArcSwap<HashMap<String, ExtensionInfo>>>,
    emails: mailer::Recipients,
    current: ArcSwap<Vec<ExtensionConfig>>,
    trunks: chan_sip::Trunks,
}

/// One extension as `GET /api/v1/extensions` shows it.
#[derive(Debug, Serialize)]
struct Listed<'a> {
    id: &'a str,
    name: Option<&'a str>,
    context: &'a str,
    /// Live registered contacts (phones) of the extension.
    contacts: usize,
}

impl Extensions {
    /// The extensions of `config` (whose secrets the registrar already has).
    pub fn new(config: &Config, storage: Arc<dyn Storage>, registrar: Registrar) -> Extensions {
        Extensions {
            trunks: {
                let trunks = chan_sip::Trunks::new(trunk_list(config));
                trunks.set_verify(stir_verify(config));
                trunks.set_dns(trunk_dns(config));
                trunks
            },
            source: config.source.clone(),
            domain: config.sip.domain.clone(),
            storage,
            registrar,
            channel: Arc::new(ArcSwap::from_pointee(channel_map(&config.extensions))),
            dialplan: Arc::new(ArcSwap::from_pointee(dialplan_map(&config.extensions))),
            emails: Arc::new(ArcSwap::from_pointee(email_map(&config.extensions))),
            current: ArcSwap::from_pointee(config.extensions.clone()),
        }
    }

    /// The `[[trunk]]`s in force, swapped on reload.
    pub fn trunks(&self) -> &chan_sip::Trunks {
        &self.trunks
    }

    /// The SIP channel's view (context and name by id), swapped on reload.
    pub fn channel_map(&self) -> Arc<ArcSwap<HashMap<String, chan_sip::Extension>>> {
        Arc::clone(&self.channel)
    }

    /// The dialplan's view (`pbx.extension(id)`), swapped on reload.
    pub fn registrar(&self) -> &Registrar {
        &self.registrar
    }

    /// The extensions as the dialplan reads them (`pbx.extension(id)`).
    pub fn dialplan_map(&self) -> Arc<ArcSwap<HashMap<String, ExtensionInfo>>> {
        Arc::clone(&self.dialplan)
    }

    /// The mailer's view (each extension's `email`), swapped on reload.
    pub fn email_map(&self) -> mailer::Recipients {
        Arc::clone(&self.emails)
    }

    /// Whether `id` is a configured extension.
    pub fn exists(&self, id: &str) -> bool {
        self.current.load().iter().any(|e| e.id == id)
    }

    /// The `voicemail_pin` of extension `id`, if it has one.
    pub fn voicemail_pin(&self, id: &str) -> Option<String> {
        self.current
            .load()
            .iter()
            .find(|e| e.id == id)
            .and_then(|e| e.voicemail_pin.clone())
    }

    /// Reads the config file again and puts its `[[extension]]`s in force
    /// (blocking: it reads the file and, for the demo office, storage).
    /// Only the extensions change; other keys need a restart. On an
    /// error nothing changes. Returns how many extensions are in force.
    pub fn reload(&self) -> Result<usize, ReloadFailure> {
        let config = Config::load(&self.source).map_err(|e| failure(&self.source, &e))?;
        let (secrets, _demo) =
            crate::store::extensions(&config, self.storage.as_ref()).map_err(|e| {
                ReloadFailure {
                    file: self.source.to_string(),
                    line: None,
                    message: e.to_string(),
                }
            })?;
        let old = self.current.load();
        let ids = |list: &[ExtensionConfig]| -> Vec<String> {
            list.iter().map(|e| e.id.clone()).collect()
        };
        let (before, after) = (ids(&old), ids(&config.extensions));
        let added: Vec<&String> = after.iter().filter(|id| !before.contains(id)).collect();
        let removed: Vec<&String> = before.iter().filter(|id| !after.contains(id)).collect();
        self.registrar.set_extensions(&secrets);
        self.channel
            .store(Arc::new(channel_map(&config.extensions)));
        self.dialplan
            .store(Arc::new(dialplan_map(&config.extensions)));
        self.emails.store(Arc::new(email_map(&config.extensions)));
        self.trunks.set(trunk_list(&config));
        self.trunks.set_verify(stir_verify(&config));
        self.trunks.set_dns(trunk_dns(&config));
        let count = config.extensions.len();
        self.current.store(Arc::new(config.extensions));
        info!(
            "extensions reloaded from {}: {count} in force{}{}",
            self.source,
            if added.is_empty() {
                String::new()
            } else {
                format!(", added {}", join(&added))
            },
            if removed.is_empty() {
                String::new()
            } else {
                format!(", removed {}", join(&removed))
            },
        );
        Ok(count)
    }

    /// `GET /api/v1/extensions`: id, name, context and live contact count
    /// of each, in config order; never a password.
    pub async fn list_endpoint(self: Arc<Self>) -> Response {
        let registrar = self.registrar.clone();
        let registrations =
            match tokio::task::spawn_blocking(move || registrar.registrations()).await {
                Ok(Ok(list)) => list,
                Ok(Err(e)) => return crate::admin::server_error(e.to_string()),
                Err(_) => {
                    return crate::admin::server_error("reading registrations failed".into());
                }
            };
        let mut contacts: HashMap<&str, usize> = HashMap::new();
        for r in &registrations {
            *contacts.entry(r.aor.as_str()).or_default() += 1;
        }
        let current = self.current.load();
        let list: Vec<Listed<'_>> = current
            .iter()
            .map(|e| Listed {
                id: &e.id,
                name: e.name.as_deref(),
                context: &e.context,
                contacts: contacts
                    .get(format!("sip:{}@{}", e.id, self.domain).as_str())
                    .copied()
                    .unwrap_or(0),
            })
            .collect();
        Json(list).into_response()
    }
}

fn join(ids: &[&String]) -> String {
    ids.iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn failure(source: &ConfigSource, e: &ConfigError) -> ReloadFailure {
    match e {
        ConfigError::Invalid { at, message } => ReloadFailure {
            file: at.file.clone(),
            line: at.position.map(|(line, _)| line),
            message: message.clone(),
        },
        other => ReloadFailure {
            file: source.to_string(),
            line: None,
            message: other.to_string(),
        },
    }
}

/// The STIR/SHAKEN verifier of `[security] stir_trust_anchors`, if set.
fn stir_verify(config: &Config) -> Option<chan_sip::StirVerify> {
    let stir = config.stir.as_ref()?;
    match stir.verifier() {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!("STIR/SHAKEN verification is off: {e}");
            None
        }
    }
}

/// The resolver of `sip.nameservers`, if set (else the system's, made by
/// the trunks at their first lookup).
fn trunk_dns(config: &Config) -> Option<chan_sip::Dns> {
    if config.sip.nameservers.is_empty() {
        return None;
    }
    match chan_sip::Dns::with_servers(&config.sip.nameservers) {
        Ok(dns) => Some(dns),
        Err(e) => {
            tracing::warn!("sip.nameservers: {e}; using the system's DNS configuration");
            None
        }
    }
}

fn trunk_list(config: &Config) -> Vec<chan_sip::Trunk> {
    config.trunks.iter().map(|t| t.to_trunk()).collect()
}

fn channel_map(list: &[ExtensionConfig]) -> HashMap<String, chan_sip::Extension> {
    list.iter()
        .map(|e| {
            let ext = chan_sip::Extension {
                context: e.context.clone(),
                name: e.name.clone(),
                pickup_group: e.pickup_group.clone(),
                did: e.did.clone(),
            };
            (e.id.clone(), ext)
        })
        .collect()
}

fn dialplan_map(list: &[ExtensionConfig]) -> HashMap<String, ExtensionInfo> {
    list.iter()
        .map(|e| {
            let info = ExtensionInfo {
                id: e.id.clone(),
                name: e.name.clone(),
                context: e.context.clone(),
                did: e.did.clone(),
                outbound: e.outbound,
                international: e.international,
            };
            (e.id.clone(), info)
        })
        .collect()
}

/// Each extension's `email` (checked by the config; one that does not parse is left out).
fn email_map(list: &[ExtensionConfig]) -> HashMap<String, mailer::Address> {
    list.iter()
        .filter_map(|e| {
            let address = e.email.as_deref()?.parse().ok()?;
            Some((e.id.clone(), address))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXT: &str = "[[extension]]\nid = \"1001\"\npassword = \"Zq8#pL2v!mR4xT\"\n";

    #[test]
    fn emails_change_on_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switchboard.toml");
        let write = |text: &str| std::fs::write(&path, text).unwrap();
        write(&format!("{EXT}email = \"alice@example.com\"\n"));
        let source = ConfigSource::File(path.clone());
        let config = Config::load(&source).unwrap();
        let storage: Arc<dyn Storage> = Arc::new(storage::MemoryStorage::new());
        let (secrets, _) = crate::store::extensions(&config, storage.as_ref()).unwrap();
        let registrar = Registrar::new(
            config.registrar_config(),
            &secrets,
            storage.clone(),
            rand::random(),
        )
        .unwrap();
        let office = Extensions::new(&config, storage, registrar);
        let emails = office.email_map();
        let address = |id: &str| emails.load().get(id).map(ToString::to_string);
        assert_eq!(address("1001").as_deref(), Some("alice@example.com"));

        write(&format!(
            "{EXT}email = \"a.smith@example.com\"\n[[extension]]\nid = \"1002\"\npassword = \"Zq8#pL2v!mR4xU\"\n"
        ));
        assert_eq!(office.reload(), Ok(2));
        assert_eq!(address("1001").as_deref(), Some("a.smith@example.com"));
        assert_eq!(address("1002"), None);

        write(EXT);
        assert_eq!(office.reload(), Ok(1));
        assert_eq!(address("1001"), None);
    }
}
