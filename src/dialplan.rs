//! The Lua dialplan in the binary (DESIGN.md "Dialplan (Lua)"): the
//! `[dialplan]` directories (seeded from embedded copies for the demo), the
//! runtime and its host (storage's kv, the registrar's bindings, the
//! configured extensions), hot reload (file watcher, SIGHUP, `POST
//! /api/v1/reload`), and what `check` compiles.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dialplan::{
    Contact, ExtensionInfo, FileError, Host, HostError, PhoneState, ReloadError, ReloadWatcher,
    Runtime,
};
use serde_json::json;
use storage::Storage;
use tracing::{error, info};

use crate::config::{Config, ConfigSource, DialplanConfig};
use crate::error::Error;
use crate::extensions::Extensions;

/// The repository's `dialplans/`, compiled in: what a first run of the demo
/// office writes when `./dialplans` does not exist.
pub const EMBEDDED_DIALPLANS: &[(&str, &str)] = &[
    ("default.lua", include_str!("../dialplans/default.lua")),
    ("README.md", include_str!("../dialplans/README.md")),
];

/// The repository's `plugins/`, compiled in.
pub const EMBEDDED_PLUGINS: &[(&str, &str)] = &[
    (
        "callforward.lua",
        include_str!("../plugins/callforward.lua"),
    ),
    ("dnd.lua", include_str!("../plugins/dnd.lua")),
    ("followme.lua", include_str!("../plugins/followme.lua")),
    ("ivr.lua", include_str!("../plugins/ivr.lua")),
    ("ringgroup.lua", include_str!("../plugins/ringgroup.lua")),
    ("speeddial.lua", include_str!("../plugins/speeddial.lua")),
    (
        "timeconditions.lua",
        include_str!("../plugins/timeconditions.lua"),
    ),
    ("voicemail.lua", include_str!("../plugins/voicemail.lua")),
    ("queue.lua", include_str!("../plugins/queue.lua")),
    ("README.md", include_str!("../plugins/README.md")),
];

/// The repository's `sounds/` (the prompts `default.lua` plays), compiled
/// in for the demo office's first run.
pub const EMBEDDED_SOUNDS: &[(&str, &[u8])] = &[
    ("hello.wav", include_bytes!("../sounds/hello.wav")),
    (
        "you-entered.wav",
        include_bytes!("../sounds/you-entered.wav"),
    ),
    ("no-input.wav", include_bytes!("../sounds/no-input.wav")),
    ("goodbye.wav", include_bytes!("../sounds/goodbye.wav")),
    ("echo.wav", include_bytes!("../sounds/echo.wav")),
    ("digit-0.wav", include_bytes!("../sounds/digit-0.wav")),
    ("digit-1.wav", include_bytes!("../sounds/digit-1.wav")),
    ("digit-2.wav", include_bytes!("../sounds/digit-2.wav")),
    ("digit-3.wav", include_bytes!("../sounds/digit-3.wav")),
    ("digit-4.wav", include_bytes!("../sounds/digit-4.wav")),
    ("digit-5.wav", include_bytes!("../sounds/digit-5.wav")),
    ("digit-6.wav", include_bytes!("../sounds/digit-6.wav")),
    ("digit-7.wav", include_bytes!("../sounds/digit-7.wav")),
    ("digit-8.wav", include_bytes!("../sounds/digit-8.wav")),
    ("digit-9.wav", include_bytes!("../sounds/digit-9.wav")),
    ("digit-star.wav", include_bytes!("../sounds/digit-star.wav")),
    (
        "digit-pound.wav",
        include_bytes!("../sounds/digit-pound.wav"),
    ),
    (
        "moh/default.wav",
        include_bytes!("../sounds/moh/default.wav"),
    ),
    (
        "reception-menu.wav",
        include_bytes!("../sounds/reception-menu.wav"),
    ),
    (
        "reception-closed.wav",
        include_bytes!("../sounds/reception-closed.wav"),
    ),
    (
        "ivr-invalid.wav",
        include_bytes!("../sounds/ivr-invalid.wav"),
    ),
    ("dnd-on.wav", include_bytes!("../sounds/dnd-on.wav")),
    ("dnd-off.wav", include_bytes!("../sounds/dnd-off.wav")),
    ("night-on.wav", include_bytes!("../sounds/night-on.wav")),
    ("night-off.wav", include_bytes!("../sounds/night-off.wav")),
    (
        "followme-accept.wav",
        include_bytes!("../sounds/followme-accept.wav"),
    ),
    ("vm-beep.wav", include_bytes!("../sounds/vm-beep.wav")),
    ("vm-busy.wav", include_bytes!("../sounds/vm-busy.wav")),
    ("vm-deleted.wav", include_bytes!("../sounds/vm-deleted.wav")),
    (
        "vm-incorrect.wav",
        include_bytes!("../sounds/vm-incorrect.wav"),
    ),
    ("vm-invalid.wav", include_bytes!("../sounds/vm-invalid.wav")),
    ("vm-mailbox.wav", include_bytes!("../sounds/vm-mailbox.wav")),
    (
        "vm-main-menu.wav",
        include_bytes!("../sounds/vm-main-menu.wav"),
    ),
    (
        "vm-message-menu.wav",
        include_bytes!("../sounds/vm-message-menu.wav"),
    ),
    ("vm-message.wav", include_bytes!("../sounds/vm-message.wav")),
    (
        "vm-messages.wav",
        include_bytes!("../sounds/vm-messages.wav"),
    ),
    ("vm-new.wav", include_bytes!("../sounds/vm-new.wav")),
    ("vm-no-more.wav", include_bytes!("../sounds/vm-no-more.wav")),
    ("vm-old.wav", include_bytes!("../sounds/vm-old.wav")),
    ("vm-options.wav", include_bytes!("../sounds/vm-options.wav")),
    (
        "vm-password.wav",
        include_bytes!("../sounds/vm-password.wav"),
    ),
    (
        "vm-person-at.wav",
        include_bytes!("../sounds/vm-person-at.wav"),
    ),
    (
        "vm-record-after.wav",
        include_bytes!("../sounds/vm-record-after.wav"),
    ),
    (
        "vm-recorded.wav",
        include_bytes!("../sounds/vm-recorded.wav"),
    ),
    ("vm-saved.wav", include_bytes!("../sounds/vm-saved.wav")),
    (
        "vm-too-short.wav",
        include_bytes!("../sounds/vm-too-short.wav"),
    ),
    (
        "vm-unavailable.wav",
        include_bytes!("../sounds/vm-unavailable.wav"),
    ),
    (
        "vm-you-have.wav",
        include_bytes!("../sounds/vm-you-have.wav"),
    ),
    // The support queue (401, *45).
    (
        "queue-position.wav",
        include_bytes!("../sounds/queue-position.wav"),
    ),
    ("queue-wait.wav", include_bytes!("../sounds/queue-wait.wav")),
    (
        "queue-minutes.wav",
        include_bytes!("../sounds/queue-minutes.wav"),
    ),
    (
        "queue-agent-login.wav",
        include_bytes!("../sounds/queue-agent-login.wav"),
    ),
    (
        "queue-agent-logout.wav",
        include_bytes!("../sounds/queue-agent-logout.wav"),
    ),
    (
        "queue-not-agent.wav",
        include_bytes!("../sounds/queue-not-agent.wav"),
    ),
];

/// How long the file watcher waits for a burst of changes to settle.
const WATCH_DEBOUNCE: Duration = Duration::from_millis(200);

/// Scripts' kv namespaces live under this prefix in storage, away from the
/// binary's own (the demo passwords are in `demo`).
const KV_PREFIX: &str = "lua.";

/// Why the dialplan could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DialplanError {
    /// Files that do not compile or check, each `file:line: message`.
    #[error("{}; fix and start again (switchboard check shows every error)", file_errors(.0))]
    Files(Vec<FileError>),
    /// The configured dialplans directory is missing.
    #[error(
        "dialplan directory {} does not exist; create it with at least one context (e.g. default.lua), or set dir in [dialplan]",
        .0.display()
    )]
    MissingDir(PathBuf),
    /// The demo dialplan could not be written.
    #[error("cannot create {} with the demo dialplan: {source}", dir.display())]
    Seed {
        /// The directory.
        dir: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The runtime failed otherwise (the file watcher, a Lua state).
    #[error(transparent)]
    Runtime(#[from] dialplan::Error),
}

/// The running dialplan: the runtime, and the watcher that reloads it.
/// Dropping it stops the watcher.
pub struct Dialplan {
    runtime: Arc<Runtime>,
    /// The live calls `pbx.state` reads, once the call service exists.
    calls: Arc<OnceLock<Arc<pbx::Registry>>>,
    /// The busy lamps `pbx.set_lamp` sets, once the subscription service exists.
    lamps: Arc<OnceLock<presence::Presence>>,
    _watcher: ReloadWatcher,
    /// The directories were created from the embedded copies at this start.
    seeded: Option<String>,
    dirs: String,
}

impl Dialplan {
    /// The runtime: `runtime.call_state()?.run_route(api, info)` for each call.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Gives `pbx.state` the live calls (the call service is built after
    /// the dialplan); until then it knows registrations only.
    pub fn set_calls(&self, calls: Arc<pbx::Registry>) {
        let _ = self.calls.set(calls);
    }

    /// Gives `pbx.set_lamp` the subscription service's lamps, then runs
    /// the plugins' `on_start` hooks (which set lamps from kv) and waits
    /// for them: each is bounded by a route's limits, and a failing one is
    /// logged by the runtime. Until then `pbx.set_lamp` is an error.
    pub async fn start_lamps(&self, lamps: presence::Presence) {
        let _ = self.lamps.set(lamps);
        if let Ok(state) = self.runtime.call_state() {
            state.run_plugin_hooks("on_start", Vec::new()).await;
        }
    }

    /// Logs what was loaded; called with the other start-up lines once
    /// everything is bound (a start-up error stays the only line).
    pub fn log_started(&self) {
        if let Some(seeded) = &self.seeded {
            info!("{seeded}");
        }
        let generation = self.runtime.generation();
        info!(
            "dialplan generation {}: {} context(s), {} plugin(s) from {}",
            generation.number,
            generation.contexts.len(),
            generation.plugins.len(),
            self.dirs
        );
    }
}

/// Starts the dialplan for `config`: seeds the directories from the
/// embedded copies if this is the embedded default config and they are
/// missing, loads generation 1 (a bad file is a start-up error naming
/// `file:line`), starts the file watcher and the SIGHUP reload. Must run
/// inside the tokio runtime.
pub async fn start(
    config: &Config,
    storage: Arc<dyn Storage>,
    extensions: Arc<Extensions>,
    voicemail: Arc<crate::voicemail::Voicemail>,
) -> Result<Dialplan, Error> {
    describe_metrics();
    if let Some(zone) = config
        .dialplan
        .timezone
        .as_deref()
        .and_then(dialplan::timezone)
    {
        dialplan::set_timezone(zone);
    }
    let host = PbxHost::new(storage, &extensions).with_voicemail(voicemail);
    let calls = Arc::clone(&host.calls);
    let lamps = Arc::clone(&host.lamps);
    let host = Arc::new(host);
    let settings = config.dialplan.clone();
    let source = config.source.clone();
    let (runtime, seeded) = tokio::task::spawn_blocking(move || -> Result<_, Error> {
        let seeded = prepare_dirs(&source, &settings)?;
        Ok((load(&settings)?, seeded))
    })
    .await
    .map_err(|_| Error::Stopped("loading the dialplan"))??;
    let runtime = Arc::new(runtime.with_host(host));
    let watcher = runtime
        .watch(WATCH_DEBOUNCE, |_| {})
        .map_err(|e| Error::Dialplan(e.into()))?;
    spawn_sighup(Arc::clone(&runtime), extensions)?;
    Ok(Dialplan {
        runtime,
        calls,
        lamps,
        _watcher: watcher,
        seeded,
        dirs: format!(
            "{} and {}",
            config.dialplan.dir.display(),
            config.dialplan.plugins.display()
        ),
    })
}

fn describe_metrics() {
    metrics::describe_gauge!(
        "dialplan_generation",
        "Number of the dialplan generation in force (1 at start, +1 per successful reload)."
    );
    metrics::describe_counter!(
        "dialplan_reloads_total",
        "Dialplan reloads (file change, SIGHUP, POST /api/v1/reload), by result."
    );
    metrics::describe_counter!(
        "dialplan_lua_errors_total",
        "Lua failures in routes and on_hangup handlers, by kind (error, memory, budget)."
    );
    metrics::counter!("dialplan_reloads_total", "result" => "ok").absolute(0);
    metrics::counter!("dialplan_reloads_total", "result" => "error").absolute(0);
}

/// Loads generation 1 from the configured directories.
fn load(settings: &DialplanConfig) -> Result<Runtime, Error> {
    Runtime::new(&settings.dir, &settings.plugins, settings.limits()).map_err(|e| match e {
        dialplan::Error::Reload(r) => Error::Dialplan(DialplanError::Files(r.errors)),
        other => Error::Dialplan(other.into()),
    })
}

/// `file:line: message; ...` on one line.
fn file_errors(errors: &[FileError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A missing dialplans directory: created from the embedded copies for the
/// embedded default config (the line to log is returned), an error for a
/// config file.
fn prepare_dirs(source: &ConfigSource, settings: &DialplanConfig) -> Result<Option<String>, Error> {
    if matches!(source, ConfigSource::Embedded) && !settings.sounds.exists() {
        write_embedded(&settings.sounds, EMBEDDED_SOUNDS)?;
        info!(
            "{} did not exist: created it with the demo office's prompts",
            settings.sounds.display()
        );
    }
    if settings.dir.is_dir() {
        return Ok(None);
    }
    match source {
        ConfigSource::Embedded => {
            write_embedded(&settings.dir, EMBEDDED_DIALPLANS)?;
            let plugins = !settings.plugins.exists();
            if plugins {
                write_embedded(&settings.plugins, EMBEDDED_PLUGINS)?;
            }
            Ok(Some(format!(
                "{} did not exist: created it{} from the embedded copies of the demo office",
                settings.dir.display(),
                if plugins {
                    format!(" and {}", settings.plugins.display())
                } else {
                    String::new()
                }
            )))
        }
        ConfigSource::File(_) => Err(Error::Dialplan(DialplanError::MissingDir(
            settings.dir.clone(),
        ))),
    }
}

fn write_embedded<T: AsRef<[u8]>>(dir: &Path, files: &[(&str, T)]) -> Result<(), Error> {
    let fail = |source: std::io::Error| {
        Error::Dialplan(DialplanError::Seed {
            dir: dir.to_owned(),
            source,
        })
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    for (name, text) in files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(fail)?;
        }
        std::fs::write(path, text.as_ref()).map_err(fail)?;
    }
    Ok(())
}

/// For `switchboard check`: compiles every context and plugin. Returns a
/// summary for the OK line, or every error as `file:line: message`.
/// Opens nothing and writes nothing in the configured places: with the
/// embedded default config and no `./dialplans`, the embedded copies are
/// checked in a scratch directory.
pub fn check(config: &Config) -> Result<String, Vec<String>> {
    let settings = &config.dialplan;
    if !settings.dir.is_dir() {
        if config.source != ConfigSource::Embedded {
            return Err(vec![
                DialplanError::MissingDir(settings.dir.clone()).to_string(),
            ]);
        }
        let scratch =
            std::env::temp_dir().join(format!("switchboard-check-{}", std::process::id()));
        let scratch_settings = DialplanConfig {
            dir: scratch.join("dialplans"),
            plugins: scratch.join("plugins"),
            ..settings.clone()
        };
        let result = write_embedded(&scratch_settings.dir, EMBEDDED_DIALPLANS)
            .and_then(|()| write_embedded(&scratch_settings.plugins, EMBEDDED_PLUGINS))
            .map_err(|e| vec![e.to_string()])
            .and_then(|()| compile(&scratch_settings));
        // Best effort: a leftover scratch directory in /tmp harms nothing.
        let _ = std::fs::remove_dir_all(&scratch);
        return result.map(|summary| {
            format!(
                "{summary} (the embedded copies; {} is created at the first run)",
                settings.dir.display()
            )
        });
    }
    compile(settings)
}

fn compile(settings: &DialplanConfig) -> Result<String, Vec<String>> {
    match Runtime::new(&settings.dir, &settings.plugins, settings.limits()) {
        Ok(runtime) => {
            let generation = runtime.generation();
            Ok(format!(
                "dialplan {} ({} context(s), {} plugin(s))",
                settings.dir.display(),
                generation.contexts.len(),
                generation.plugins.len()
            ))
        }
        Err(dialplan::Error::Reload(r)) => Err(r.errors.iter().map(ToString::to_string).collect()),
        Err(other) => Err(vec![other.to_string()]),
    }
}

/// Reloads on every SIGHUP: the extensions from the config file, then
/// the dialplan (each logs its result; a bad config file keeps both as
/// they are, as `POST /api/v1/reload` does).
fn spawn_sighup(runtime: Arc<Runtime>, extensions: Arc<Extensions>) -> Result<(), Error> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangup = signal(SignalKind::hangup()).map_err(Error::Signals)?;
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                info!("SIGHUP received, reloading the dialplan and the extensions");
                let runtime = Arc::clone(&runtime);
                let extensions = Arc::clone(&extensions);
                let done = tokio::task::spawn_blocking(move || match extensions.reload() {
                    Ok(_) => drop(runtime.reload()),
                    Err(e) => error!(
                        "reload refused, extensions and dialplan kept: config {}{}: {}",
                        e.file,
                        e.line.map(|l| format!(":{l}")).unwrap_or_default(),
                        e.message
                    ),
                })
                .await;
                if done.is_err() {
                    error!("dialplan reload task failed");
                }
            }
        });
    }
    #[cfg(not(unix))]
    drop((runtime, extensions));
    Ok(())
}

/// `POST /api/v1/reload`: the extensions from the config file, then the
/// dialplan. 200 `{"generation": N, "extensions": M}`, or 422 `{"kept": N,
/// "errors": [{"file", "line", "message"}]}` with the old generation (and,
/// for a config error, the old extensions and dialplan) kept.
pub async fn reload_endpoint(runtime: Arc<Runtime>, extensions: Arc<Extensions>) -> Response {
    let task = tokio::task::spawn_blocking(move || {
        extensions
            .reload()
            .map_err(|e| (runtime.generation().number, e))
            .map(|count| (count, runtime.reload()))
    });
    match task.await {
        Ok(Err((kept, e))) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "kept": kept, "errors": [e] })),
        )
            .into_response(),
        Ok(Ok((count, Ok(generation)))) => {
            Json(json!({ "generation": generation, "extensions": count })).into_response()
        }
        Ok(Ok((_, Err(ReloadError { kept, errors })))) => {
            let errors: Vec<_> = errors
                .iter()
                .map(|e| json!({ "file": e.file, "line": e.line, "message": e.message }))
                .collect();
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({ "kept": kept, "errors": errors })),
            )
                .into_response()
        }
        Err(e) => {
            error!(error = %e, "POST /api/v1/reload: task failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({ "error": "reload failed" })),
            )
                .into_response()
        }
    }
}

/// The dialplan's view of the PBX: storage's kv (namespaces prefixed with
/// `lua.`), the registrar's bindings, the configured extensions.
struct PbxHost {
    storage: Arc<dyn Storage>,
    /// The location lookup (`pbx.contacts`).
    registrar: registrar::Registrar,
    /// Swapped by a config reload ([`Extensions`]).
    extensions: Arc<ArcSwap<HashMap<String, ExtensionInfo>>>,
    /// The mailboxes behind the `mailbox` module.
    voicemail: Option<Arc<crate::voicemail::Voicemail>>,
    /// The call queues behind the `queues` module: here, not in a
    /// generation, so they outlive reloads.
    queues: dialplan::Queues,
    /// The live calls, for `pbx.state` (set once the call service exists).
    calls: Arc<OnceLock<Arc<pbx::Registry>>>,
    /// The busy lamps (set once the subscription service exists).
    lamps: Arc<OnceLock<presence::Presence>>,
}

impl PbxHost {
    fn new(storage: Arc<dyn Storage>, extensions: &Extensions) -> Self {
        Self {
            storage,
            registrar: extensions.registrar().clone(),
            extensions: extensions.dialplan_map(),
            voicemail: None,
            queues: dialplan::Queues::new(),
            calls: Arc::default(),
            lamps: Arc::default(),
        }
    }

    fn with_voicemail(mut self, voicemail: Arc<crate::voicemail::Voicemail>) -> Self {
        self.voicemail = Some(voicemail);
        self
    }
}

/// A storage failure as the dialplan sees it: temporary (503 for a route
/// that does not catch it) while the database is out of reach.
fn storage_error(e: storage::Error) -> HostError {
    if e.is_unavailable() {
        HostError::retry_later(e)
    } else {
        HostError::new(e)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Host for PbxHost {
    fn kv_get(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>, HostError> {
        self.storage
            .kv_get(&format!("{KV_PREFIX}{ns}"), key, now_ms())
            .map_err(storage_error)
    }

    fn kv_set(
        &self,
        ns: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), HostError> {
        self.storage
            .kv_set(&format!("{KV_PREFIX}{ns}"), key, value, ttl, now_ms())
            .map_err(storage_error)
    }

    fn kv_delete(&self, ns: &str, key: &str) -> Result<bool, HostError> {
        self.storage
            .kv_delete(&format!("{KV_PREFIX}{ns}"), key)
            .map_err(storage_error)
    }

    fn contacts(&self, ext: &str) -> Result<Vec<Contact>, HostError> {
        let now = now_ms();
        let bindings = self
            .registrar
            .contacts_blocking(ext, now)
            .map_err(storage_error)?;
        Ok(bindings
            .into_iter()
            .map(|b| Contact {
                expires: b.remaining_ms(now).div_ceil(1000),
                uri: b.contact,
                source: b.source.to_string(),
                transport: b.transport,
            })
            .collect())
    }

    fn extension(&self, id: &str) -> Result<Option<ExtensionInfo>, HostError> {
        Ok(self.extensions.load().get(id).cloned())
    }

    fn phone_state(&self, ext: &str) -> Result<PhoneState, HostError> {
        // On a call: it placed it or answered it; ringing: a dial rings it.
        if let Some(calls) = self.calls.get() {
            let mut ringing = false;
            for call in calls.list() {
                if call.caller.as_deref() == Some(ext) || call.callee.as_deref() == Some(ext) {
                    return Ok(PhoneState::Busy);
                }
                ringing |= call.ringing.iter().any(|r| r.target == ext);
            }
            if ringing {
                return Ok(PhoneState::Ringing);
            }
        }
        Ok(if self.contacts(ext)?.is_empty() {
            PhoneState::Unregistered
        } else {
            PhoneState::Idle
        })
    }

    fn set_lamp(&self, name: &str, busy: bool) -> Result<(), HostError> {
        let Some(lamps) = self.lamps.get() else {
            return Err(HostError::retry_later(
                "the subscription service is not started yet: set lamps from an on_start hook",
            ));
        };
        lamps.set_lamp(name, busy).map_err(HostError::new)
    }

    fn extension_by_did(&self, number: &str) -> Result<Option<ExtensionInfo>, HostError> {
        Ok(self
            .extensions
            .load()
            .values()
            .find(|e| e.did.as_deref() == Some(number))
            .cloned())
    }

    fn blocks(&self) -> bool {
        self.storage.blocks()
    }

    fn voicemail_blocks(&self) -> bool {
        // The mailboxes touch files even over memory storage; kv and the
        // rest stay on the Lua thread (no hop) when storage is in memory.
        true
    }

    fn voicemail(&self) -> Option<&dyn dialplan::Voicemail> {
        self.voicemail
            .as_deref()
            .map(|v| v as &dyn dialplan::Voicemail)
    }

    fn queues(&self) -> Option<dialplan::Queues> {
        Some(self.queues.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storage::{Binding, KvStore, LocationStore, MemoryStorage};

    fn host(storage: Arc<MemoryStorage>) -> PbxHost {
        let config = Config::parse(
            ConfigSource::Embedded,
            "[sip]\ndomain = \"pbx.test\"\n[[extension]]\nid = \"1001\"\npassword = \"x\"\nname = \"Alice\"\n[[extension]]\nid = \"1002\"\npassword = \"y\"\ncontext = \"sales\"\n",
        )
        .expect("config");
        let storage: Arc<dyn Storage> = storage;
        let registrar =
            registrar::Registrar::new(config.registrar_config(), &[], storage.clone(), [0; 32])
                .expect("registrar");
        let extensions = Extensions::new(&config, storage.clone(), registrar);
        PbxHost::new(storage, &extensions)
    }

    #[test]
    fn kv_is_kept_under_the_lua_prefix() {
        let storage = Arc::new(MemoryStorage::new());
        let h = host(storage.clone());
        h.kv_set("demo", "1001", b"1002", None).unwrap();
        assert_eq!(h.kv_get("demo", "1001").unwrap(), Some(b"1002".to_vec()));
        // The binary's own "demo" namespace (the demo passwords) is untouched.
        assert_eq!(storage.kv_get("demo", "1001", now_ms()).unwrap(), None);
        assert_eq!(
            storage.kv_get("lua.demo", "1001", now_ms()).unwrap(),
            Some(b"1002".to_vec())
        );
        assert!(h.kv_delete("demo", "1001").unwrap());
        assert!(!h.kv_delete("demo", "1001").unwrap());
        assert!(!h.blocks(), "memory storage does not block");
    }

    #[test]
    fn contacts_are_the_live_bindings_of_the_extension() {
        let storage = Arc::new(MemoryStorage::new());
        let now = now_ms();
        let binding = |contact: &str, expires_at_ms: u64| Binding {
            aor: "sip:1001@pbx.test".into(),
            contact: contact.into(),
            expires_at_ms,
            q: None,
            call_id: "c".into(),
            cseq: 1,
            path: Vec::new(),
            source: "203.0.113.5:5062".parse().unwrap(),
            transport: "udp".into(),
            user_agent: None,
            instance: None,
            reg_id: None,
            registered_at_ms: now,
        };
        storage
            .put(&binding("sip:1001@10.0.0.5", now + 300_000))
            .unwrap();
        storage.put(&binding("sip:1001@10.0.0.6", now - 1)).unwrap();
        let h = host(storage);
        let contacts = h.contacts("1001").unwrap();
        assert_eq!(contacts.len(), 1, "{contacts:?}");
        assert_eq!(contacts[0].uri, "sip:1001@10.0.0.5");
        assert_eq!(contacts[0].source, "203.0.113.5:5062");
        assert_eq!(contacts[0].transport, "udp");
        assert!((299..=300).contains(&contacts[0].expires), "{contacts:?}");
        assert!(h.contacts("1002").unwrap().is_empty());
    }

    #[test]
    fn missing_dialplans_are_seeded_only_for_the_embedded_config() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let settings = DialplanConfig {
            dir: tmp.path().join("dialplans"),
            plugins: tmp.path().join("plugins"),
            sounds: tmp.path().join("sounds"),
            recordings: tmp.path().join("recordings"),
            voicemail: tmp.path().join("voicemail"),
            memory_limit: 16 << 20,
            instruction_budget: 10_000_000,
            route_time_limit: std::time::Duration::from_secs(5),
            pattern_step_limit: 1_000_000,
            timezone: None,
        };
        let file = ConfigSource::File(tmp.path().join("switchboard.toml"));
        let e = prepare_dirs(&file, &settings).unwrap_err().to_string();
        assert!(e.contains("dialplans does not exist"), "{e}");
        assert!(!settings.dir.exists());

        let line = prepare_dirs(&ConfigSource::Embedded, &settings)
            .unwrap()
            .expect("seeded");
        assert!(line.contains("embedded copies"), "{line}");
        for (name, text) in EMBEDDED_DIALPLANS {
            assert_eq!(
                std::fs::read_to_string(settings.dir.join(name)).unwrap(),
                *text
            );
        }
        for (name, _) in EMBEDDED_PLUGINS {
            assert!(settings.plugins.join(name).is_file(), "{name}");
        }
        // Every prompt default.lua plays is there, and loads.
        for (name, _) in EMBEDDED_SOUNDS {
            media::Prompt::load(&settings.sounds.join(name)).expect(name);
        }
        for sound in ["hello", "you-entered", "no-input", "goodbye", "digit-pound"] {
            let text = EMBEDDED_DIALPLANS[0].1;
            assert!(
                text.contains(&format!("\"{sound}\"")) || sound.starts_with("digit-"),
                "{sound} is played by default.lua"
            );
        }
        // The seeded office loads.
        load(&settings).expect("the embedded copies compile");
        // Present now: nothing more is written.
        assert_eq!(
            prepare_dirs(&ConfigSource::Embedded, &settings).unwrap(),
            None
        );
    }

    #[test]
    fn extensions_come_from_the_config() {
        let h = host(Arc::new(MemoryStorage::new()));
        let alice = h.extension("1001").unwrap().expect("1001");
        assert_eq!(alice.name.as_deref(), Some("Alice"));
        assert_eq!(alice.context, "default");
        assert_eq!(h.extension("1002").unwrap().expect("1002").context, "sales");
        assert_eq!(h.extension("1003").unwrap(), None);
    }
}
