//! The runtime: the current generation behind an atomic swap, reload, and a
//! fresh sandboxed Lua state per call (DESIGN.md "Dialplan (Lua)").

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use mlua::{Function, Lua, Value};

use crate::error::{Error, FileError, ReloadError};
use crate::generation::{self, Generation};
use crate::host::{Host, MemoryHost, SharedHost};
use crate::sandbox::{self, Budget};

/// The limits of one call's Lua state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most memory the state may hold, in bytes.
    pub memory_bytes: usize,
    /// Most VM instructions between two yields to Rust (call actions); a
    /// script over it is stopped. Counted in steps of 1,000.
    pub instructions: u64,
}

impl Default for Limits {
    /// 16 MiB and 10 million instructions (tens of milliseconds of CPU).
    fn default() -> Self {
        Self {
            memory_bytes: 16 * 1024 * 1024,
            instructions: 10_000_000,
        }
    }
}

/// The Lua dialplan runtime: contexts from a dialplans directory, plugins
/// from a plugins directory, compiled into generations that reload swaps in
/// atomically. Cheap to share (`Arc<Runtime>`); no lock on the call path.
#[derive(Debug)]
pub struct Runtime {
    dialplans: PathBuf,
    plugins: PathBuf,
    limits: Limits,
    current: ArcSwap<Generation>,
    host: SharedHost,
    /// Serializes reloads (watcher, SIGHUP, HTTP) so generation numbers are
    /// not handed out twice. Never taken by calls.
    reloading: Mutex<()>,
}

impl Runtime {
    /// Loads generation 1 from `dialplans` (every `NAME.lua` a context) and
    /// `plugins` (`NAME.lua` or `NAME/init.lua`; may be missing). The `kv`,
    /// `registrar` and `pbx` modules use a fresh [`MemoryHost`] until
    /// [`Runtime::with_host`] gives the real one.
    pub fn new(
        dialplans: impl Into<PathBuf>,
        plugins: impl Into<PathBuf>,
        limits: Limits,
    ) -> Result<Self, Error> {
        let dialplans = dialplans.into();
        let plugins = plugins.into();
        let host = SharedHost(Arc::new(MemoryHost::new()));
        let first = build(1, &dialplans, &plugins, &limits, &host)
            .map_err(|errors| ReloadError { kept: 0, errors })?;
        metrics::gauge!("dialplan_generation").set(1.0);
        Ok(Self {
            dialplans,
            plugins,
            limits,
            current: ArcSwap::from_pointee(first),
            host,
            reloading: Mutex::new(()),
        })
    }

    /// The runtime with `host` behind `kv`, `registrar.contacts` and
    /// `pbx.extension` for every call state built from now on.
    pub fn with_host(mut self, host: Arc<dyn Host>) -> Self {
        self.host = SharedHost(host);
        self
    }

    /// The generation now in force.
    pub fn generation(&self) -> Arc<Generation> {
        self.current.load_full()
    }

    /// The directory of the contexts.
    pub fn dialplans_dir(&self) -> &Path {
        &self.dialplans
    }

    /// The directory of the plugins.
    pub fn plugins_dir(&self) -> &Path {
        &self.plugins
    }

    /// Compiles and checks every file again. All good: the new generation is
    /// swapped in and its number returned. Any file bad: every error, each
    /// with `file:line: message`, and the old generation stays. Calls in
    /// progress keep the generation they started with either way.
    pub fn reload(&self) -> Result<u64, ReloadError> {
        // A poisoned lock only means another reload panicked; the swap below
        // is atomic, so there is nothing half-done to protect.
        let _guard = self
            .reloading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let old = self.current.load();
        let number = old.number + 1;
        match build(
            number,
            &self.dialplans,
            &self.plugins,
            &self.limits,
            &self.host,
        ) {
            Ok(generation) => {
                self.current.store(Arc::new(generation));
                metrics::gauge!("dialplan_generation").set(number as f64);
                metrics::counter!("dialplan_reloads_total", "result" => "ok").increment(1);
                tracing::info!(generation = number, "dialplan generation {number} loaded");
                Ok(number)
            }
            Err(errors) => {
                let error = ReloadError {
                    kept: old.number,
                    errors,
                };
                metrics::counter!("dialplan_reloads_total", "result" => "error").increment(1);
                tracing::error!("{error}");
                Err(error)
            }
        }
    }

    /// A fresh sandboxed Lua state for one call, on the current generation:
    /// the call keeps that generation to its end, whatever reloads happen.
    pub fn call_state(&self) -> Result<CallState, Error> {
        CallState::new(self.generation(), &self.limits, &self.host).map_err(Error::State)
    }
}

/// Compiles the files, then runs every context's top level in a scratch
/// sandbox to check it defines `route` (and that its `require`s resolve).
fn build(
    number: u64,
    dialplans: &Path,
    plugins: &Path,
    limits: &Limits,
    host: &SharedHost,
) -> Result<Generation, Vec<FileError>> {
    let generation = Arc::new(generation::compile(number, dialplans, plugins)?);
    let mut errors = Vec::new();
    for (name, chunk) in &generation.contexts {
        let checked = CallState::new(Arc::clone(&generation), limits, host).and_then(|state| {
            crate::route::install_log(&state.lua, "", name)?;
            state.load_context(name)
        });
        match checked {
            Ok(Some(_)) => {}
            Ok(None) => errors.push(FileError {
                file: chunk.name.clone(),
                line: None,
                message: "no global function route(call): every context must define one".into(),
            }),
            Err(e) => errors.push(generation::file_error(&chunk.name, &e)),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // Nothing else holds the Arc: the checks' states are dropped.
    Ok(Arc::try_unwrap(generation).unwrap_or_else(|shared| (*shared).clone()))
}

/// One call's Lua state, built from one generation. Run it with
/// [`CallState::run_route`].
#[derive(Debug)]
pub struct CallState {
    pub(crate) lua: Lua,
    pub(crate) generation: Arc<Generation>,
    pub(crate) budget: Arc<Budget>,
}

impl CallState {
    fn new(generation: Arc<Generation>, limits: &Limits, host: &SharedHost) -> mlua::Result<Self> {
        let (lua, budget) = sandbox::new_state(&generation, limits)?;
        crate::modules::install(&lua, host)?;
        Ok(Self {
            lua,
            generation,
            budget,
        })
    }

    /// The number of the generation this call runs on.
    pub fn generation(&self) -> u64 {
        self.generation.number
    }

    /// Bytes the call's Lua state holds now (for metrics and the memory
    /// limit's tuning).
    pub fn used_memory(&self) -> usize {
        self.lua.used_memory()
    }

    /// Runs context `name`'s top level and returns its global `route`, or
    /// `None` if the context has no such context or function.
    pub(crate) fn load_context(&self, name: &str) -> mlua::Result<Option<Function>> {
        let Some(chunk) = self.generation.contexts.get(name) else {
            return Ok(None);
        };
        self.lua
            .load(&chunk.bytecode[..])
            .set_name(format!("@{}", chunk.name))
            .set_mode(mlua::chunk::ChunkMode::Binary)
            .exec()?;
        match self.lua.globals().get::<Value>("route")? {
            Value::Function(route) => Ok(Some(route)),
            _ => Ok(None),
        }
    }
}
