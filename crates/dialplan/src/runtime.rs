//! The runtime: the current generation behind an atomic swap, reload, and
//! the Lua states calls run in (DESIGN.md "Dialplan (Lua)").
//!
//! Each generation has, per context, a few sandboxed Lua states (one per
//! CPU) with the context and its plugins loaded once; a call runs
//! `route(call)` as its own coroutine in one of them. A state per call
//! would cost ~75 KB and ~150 µs of CPU per call (a bare Lua state alone is
//! 23 KB); a coroutine costs a few KB and nothing to set up. What a state
//! per call gave is kept: globals are frozen once the context is loaded
//! (a call cannot leave state for another; `kv` is for that), each call has
//! its own instruction budget, and a call keeps the generation it started
//! on. The memory limit is per state, shared by the calls in it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use mlua::thread::ThreadStatus;
use mlua::{Function, Lua, Thread, Value};

use crate::error::{Error, FileError, ReloadError};
use crate::generation::{self, Generation};
use crate::host::{Host, MemoryHost, SharedHost};
use crate::sandbox::{self, Slot};

/// The limits of the runtime's Lua states and of each call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most memory one Lua state may hold, in bytes (shared by the calls
    /// running in it).
    pub memory_bytes: usize,
    /// Most VM instructions between two yields to Rust (call actions); a
    /// script over it is stopped. Counted in steps of 1,000; the work of
    /// the bounded library functions (patterns, `string.rep`,
    /// `table.concat`, `table.sort`) counts too.
    pub instructions: u64,
    /// Most wall clock a route may run between two call actions (checked
    /// every 1,000 instructions and by the bounded library functions); a
    /// script over it is stopped.
    pub route_time: Duration,
    /// Most steps of one call of `string.find`, `match`, `gmatch` (each
    /// iteration) or `gsub` (the whole substitution); over it the function
    /// raises an error.
    pub pattern_steps: u64,
}

impl Default for Limits {
    /// 64 MiB per state, 10 million instructions (tens of milliseconds of
    /// CPU) and 5 s of wall clock between actions, 10^6 steps per pattern
    /// function call.
    fn default() -> Self {
        Self {
            memory_bytes: 64 * 1024 * 1024,
            instructions: 10_000_000,
            route_time: Duration::from_secs(5),
            pattern_steps: 1_000_000,
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
    current: ArcSwap<Live>,
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
        // The states are built with their host: build this generation's
        // again (it loaded once already, so it loads again).
        let number = self.current.load().generation.number;
        match build(
            number,
            &self.dialplans,
            &self.plugins,
            &self.limits,
            &self.host,
        ) {
            Ok(live) => self.current.store(Arc::new(live)),
            Err(errors) => tracing::error!(
                "{}",
                ReloadError {
                    kept: number,
                    errors
                }
            ),
        }
        self
    }

    /// The generation now in force.
    pub fn generation(&self) -> Arc<Generation> {
        Arc::clone(&self.current.load().generation)
    }

    /// The call queues its host keeps (`queues` module), for the admin
    /// API; the same before and after a reload.
    pub fn queues(&self) -> Option<crate::Queues> {
        self.host.0.queues()
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
        let number = old.generation.number + 1;
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
                    kept: old.generation.number,
                    errors,
                };
                metrics::counter!("dialplan_reloads_total", "result" => "error").increment(1);
                tracing::error!("{error}");
                Err(error)
            }
        }
    }

    /// Whether `context` (in the current generation) defines
    /// `on_transfer_failed(call)`, which routes a blind transfer's call
    /// whose target failed after the transferor hung up.
    pub fn handles_failed_transfer(&self, context: &str) -> bool {
        self.current
            .load()
            .contexts
            .get(context)
            .and_then(|states| states.first())
            .is_some_and(|state| state.on_transfer_failed.is_some())
    }

    /// A new call's hold on the current generation: the call keeps that
    /// generation to its end, whatever reloads happen.
    pub fn call_state(&self) -> Result<CallState, Error> {
        Ok(CallState {
            live: self.current.load_full(),
            limits: self.limits,
        })
    }
}

/// How many Lua states each context gets: one per thread of the Lua pool
/// (see `pool.rs`), at least two so that a new call finds a state no other
/// call is running in even on one CPU.
fn states_per_context() -> usize {
    crate::pool::threads().max(2)
}

/// A generation ready to run calls: its chunks, and per context the loaded
/// Lua states.
#[derive(Debug)]
pub(crate) struct Live {
    pub(crate) generation: Arc<Generation>,
    pub(crate) contexts: HashMap<String, Vec<SharedState>>,
    next: AtomicUsize,
    /// The plugin hooks some plugin's source names (the others are not
    /// looked for: a call's end then costs nothing).
    pub(crate) plugin_hooks: Vec<&'static str>,
}

impl Live {
    /// A state of `context` for a new call: taking turns, but passing over
    /// states where another call's Lua runs right now (a busy, perhaps
    /// stuck, state) while a free one exists. A call keeps its state to
    /// the end (its coroutine lives there).
    pub(crate) fn state(&self, context: &str) -> Option<&SharedState> {
        let states = self.contexts.get(context)?;
        let n = states.len().max(1);
        let first = self.next.fetch_add(1, Ordering::Relaxed) % n;
        (0..n)
            .map(|k| &states[(first + k) % n])
            .find(|s| s.slot.lock.try_lock().is_ok())
            .or_else(|| states.get(first))
    }
}

/// One Lua state with a context loaded, which calls share.
#[derive(Debug)]
pub(crate) struct SharedState {
    pub(crate) lua: Lua,
    pub(crate) slot: Arc<Slot>,
    pub(crate) route: Function,
    /// `on_transfer_failed(call)`, if the context defines it (the globals
    /// are frozen after loading, so it is looked up once).
    pub(crate) on_transfer_failed: Option<Function>,
    /// Coroutines whose route finished, kept for the next calls (at most
    /// [`IDLE_COROUTINES`]): a new one costs an allocation and the growth
    /// of its stack, which a finished one already has.
    pub(crate) coroutines: Mutex<Vec<Thread>>,
}

/// Finished route coroutines a state keeps for reuse.
const IDLE_COROUTINES: usize = 32;

impl SharedState {
    /// A coroutine to run `entry`: a finished one reset, else a new one.
    pub(crate) fn coroutine(&self, entry: Function) -> mlua::Result<Thread> {
        let idle = self
            .coroutines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match idle {
            Some(thread) => {
                thread.reset(entry)?;
                Ok(thread)
            }
            None => self.lua.create_thread(entry),
        }
    }

    /// Keeps `thread` for a later route if it finished (a coroutine that
    /// failed or was stopped half-way is left to the collector).
    pub(crate) fn finished(&self, thread: Thread) {
        if thread.status() != ThreadStatus::Finished {
            return;
        }
        let mut idle = self
            .coroutines
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE_COROUTINES {
            idle.push(thread);
        }
    }
}

/// Compiles the files, then loads every context (and the plugins it
/// requires) into its states, checking it defines `route`.
fn build(
    number: u64,
    dialplans: &Path,
    plugins: &Path,
    limits: &Limits,
    host: &SharedHost,
) -> Result<Live, Vec<FileError>> {
    let generation = Arc::new(generation::compile(number, dialplans, plugins)?);
    let mut errors = Vec::new();
    let mut contexts = HashMap::new();
    for (name, chunk) in &generation.contexts {
        let mut states = Vec::new();
        for _ in 0..states_per_context() {
            match load_state(&generation, name, limits, host) {
                Ok(Some(state)) => states.push(state),
                Ok(None) => {
                    errors.push(FileError {
                        file: chunk.name.clone(),
                        line: None,
                        message: "no global function route(call): every context must define one"
                            .into(),
                    });
                    break;
                }
                Err(e) => {
                    errors.push(generation::file_error(&chunk.name, &e));
                    break;
                }
            }
        }
        contexts.insert(name.clone(), states);
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Live {
        plugin_hooks: crate::hooks::mentioned(&generation),
        generation,
        contexts,
        next: AtomicUsize::new(0),
    })
}

/// A sandboxed state with context `name` loaded and its globals frozen;
/// `None` if the context defines no `route`.
pub(crate) fn load_state(
    generation: &Arc<Generation>,
    name: &str,
    limits: &Limits,
    host: &SharedHost,
) -> mlua::Result<Option<SharedState>> {
    let Some(chunk) = generation.contexts.get(name) else {
        return Ok(None);
    };
    let (lua, slot) = sandbox::new_state(generation, limits)?;
    crate::modules::install(&lua, host)?;
    crate::route::install_log(&lua, &slot)?;
    sandbox::freeze_libraries(&lua)?;
    lua.load(&chunk.bytecode[..])
        .set_name(format!("@{}", chunk.name))
        .set_mode(mlua::chunk::ChunkMode::Binary)
        .exec()?;
    let route = match lua.globals().get::<Value>("route")? {
        Value::Function(route) => route,
        _ => return Ok(None),
    };
    let on_transfer_failed = match lua.globals().get::<Value>("on_transfer_failed")? {
        Value::Function(f) => Some(f),
        _ => None,
    };
    sandbox::freeze_globals(&lua)?;
    Ok(Some(SharedState {
        lua,
        slot,
        route,
        on_transfer_failed,
        coroutines: Mutex::new(Vec::new()),
    }))
}

/// A call's hold on a generation: where its `route` runs. Run it with
/// [`CallState::run_route`].
#[derive(Debug)]
pub struct CallState {
    pub(crate) live: Arc<Live>,
    pub(crate) limits: Limits,
}

impl CallState {
    /// The number of the generation this call runs on.
    pub fn generation(&self) -> u64 {
        self.live.generation.number
    }

    /// Bytes held by the Lua states of this call's generation, all
    /// contexts together (for metrics and tuning the memory limit).
    pub fn used_memory(&self) -> usize {
        self.live
            .contexts
            .values()
            .flatten()
            .map(|s| s.lua.used_memory())
            .sum()
    }
}
