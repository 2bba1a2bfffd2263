//! The sandbox of the runtime's Lua states (DESIGN.md "Dialplan (Lua)",
//! rules): which standard functions exist, `require` limited to the
//! generation's plugins, globals frozen once a context is loaded, the
//! memory limit of a state, and each call's instruction budget (the hook
//! charges whichever call is running, see [`Slot`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use mlua::chunk::ChunkMode;
use mlua::debug::{Debug, HookTriggers};
use mlua::{Lua, LuaOptions, MultiValue, StdLib, Table, Value, VmState};

use crate::generation::Generation;
use crate::runtime::Limits;

/// The dialplan API version, `SWITCHBOARD_API` in Lua. Raised when a
/// released API changes incompatibly.
pub const SWITCHBOARD_API: u32 = 1;

/// How often (in VM instructions) the budget hook runs.
pub(crate) const HOOK_EVERY: u32 = 1_000;

/// Hook calls after a stop during which the hook asks to yield before it
/// raises an error instead (code that cannot yield).
const YIELD_GRACE: u64 = 20;

/// Registry key of the table of plugins loaded by `require` in this state.
pub(crate) const LOADED_KEY: &str = "switchboard.loaded";

/// The message of the error that stops a script over its budget.
pub(crate) const BUDGET_MESSAGE: &str = "instruction budget exceeded: more Lua instructions than the dialplan.instruction_budget limit without a call action (endless loop?)";

/// Why a call's Lua was stopped by the runtime (not by its own error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// More instructions than the budget between two call actions.
    Budget = 1,
    /// More wall clock than `route_time` between two call actions.
    Time = 2,
    /// Held its state longer than [`HOLD_LIMIT`] where it could not be
    /// paused.
    Held = 3,
}

impl Stop {
    fn from_u8(n: u8) -> Option<Self> {
        match n {
            1 => Some(Self::Budget),
            2 => Some(Self::Time),
            3 => Some(Self::Held),
            _ => None,
        }
    }

    /// The message of the error that stops the script.
    pub(crate) fn message(self, budget: &Budget) -> String {
        match self {
            Self::Budget => BUDGET_MESSAGE.to_owned(),
            Self::Time => format!(
                "route time limit exceeded: ran {} of wall clock without a call action (dialplan.route_time_limit; a slow loop or pattern?)",
                humanize(budget.time_limit)
            ),
            Self::Held => format!(
                "route held its Lua state for {} where it could not be paused (inside a coroutine, a gsub callback or a sort comparator); other calls of the state wait meanwhile",
                humanize(HOLD_LIMIT)
            ),
        }
    }
}

/// `5 s`, `250 ms`.
pub(crate) fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// How long a call's Lua runs on its state before the hook pauses it (at the
/// next yieldable point of its own coroutine) so the calls waiting for the
/// state get their turn.
const SLICE: Duration = Duration::from_millis(10);

/// How long a call's Lua may hold its state without a point where it can be
/// paused: it is stopped there (with an error), so one stuck route never
/// keeps another call of its state waiting longer than this.
pub(crate) const HOLD_LIMIT: Duration = Duration::from_secs(1);

/// What a call's Lua has used since its last call action: instructions
/// (counted by the hook, plus the C-side work of the bounded library
/// functions) and wall clock; and whether the runtime stopped it.
#[derive(Debug)]
pub(crate) struct Budget {
    used: AtomicU64,
    limit: u64,
    stopped: AtomicU8,
    /// Hook calls since the stop, for the yield grace.
    grace: AtomicU64,
    epoch: Instant,
    /// When the count last restarted, in nanoseconds after `epoch`.
    since: AtomicU64,
    time_limit: Duration,
    /// The script's `file:line` where the hook stopped it (written once
    /// per stop, read when the failure is reported).
    stopped_at: std::sync::Mutex<Option<String>>,
}

/// The call whose Lua is running in a state right now: its budget, and what
/// `log` lines name.
#[derive(Debug)]
pub(crate) struct Scope {
    pub(crate) budget: Budget,
    pub(crate) call_id: String,
    pub(crate) context: String,
    /// The coroutine the call's code runs in (its address, 0 while none):
    /// only there may the budget hook suspend it.
    pub(crate) main: std::sync::atomic::AtomicUsize,
}

impl Scope {
    /// A call's scope with a fresh budget of the limits.
    pub(crate) fn new(limits: &Limits, call_id: &str, context: &str) -> Self {
        Self {
            budget: Budget::new(limits.instructions, limits.route_time),
            call_id: call_id.to_owned(),
            context: context.to_owned(),
            main: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

/// What one Lua state shares with the calls that run in it: a fair lock
/// held while a call's Lua runs (Lua runs one coroutine at a time; this
/// makes "which call is running" exact for the hook), and that call's
/// scope.
#[derive(Debug)]
pub(crate) struct Slot {
    /// Taken in arrival order (tokio's mutex is a FIFO semaphore), once per
    /// poll of a call's Lua, never across a wait.
    pub(crate) lock: Arc<tokio::sync::Mutex<()>>,
    /// When the holder of `lock` took it, in nanoseconds after `epoch`.
    held_since: AtomicU64,
    epoch: Instant,
    pub(crate) current: ArcSwapOption<Scope>,
    /// The budget of code that runs outside any call (a context's top
    /// level while a generation is built).
    pub(crate) loading: Arc<Scope>,
    /// Most steps of one pattern function call.
    pub(crate) pattern_steps: u64,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Budget {
    pub(crate) fn new(limit: u64, time_limit: Duration) -> Self {
        Self {
            used: AtomicU64::new(0),
            limit,
            stopped: AtomicU8::new(0),
            grace: AtomicU64::new(0),
            epoch: Instant::now(),
            since: AtomicU64::new(0),
            time_limit,
            stopped_at: std::sync::Mutex::new(None),
        }
    }

    /// A call action came back: the script waited, so its count and its
    /// clock restart.
    pub(crate) fn reset(&self) {
        self.used.store(0, Ordering::Relaxed);
        self.since
            .store(nanos(self.epoch.elapsed()), Ordering::Relaxed);
    }

    /// The wall clock restarts (the instruction count does not): the
    /// spec runner's own Lua after a simulated call's route ran.
    pub(crate) fn reset_clock(&self) {
        self.since
            .store(nanos(self.epoch.elapsed()), Ordering::Relaxed);
    }

    /// A fresh budget for a new piece of script (an `on_hangup` handler):
    /// the count, the clock and the stop mark all start again.
    pub(crate) fn restart(&self) {
        self.reset();
        self.stopped.store(0, Ordering::Relaxed);
        self.grace.store(0, Ordering::Relaxed);
        *self.place_lock() = None;
    }

    fn place_lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        // Nothing panics while holding it; a poisoned one is intact.
        self.stopped_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Where the script was when the hook stopped it (`file:line`), if the
    /// hook did.
    pub(crate) fn stopped_at(&self) -> Option<String> {
        self.place_lock().clone()
    }

    /// The error a stopped script ends with: `file:line: message` where the
    /// hook knew the place.
    pub(crate) fn stop_error(&self, why: Stop) -> mlua::Error {
        let message = why.message(self);
        mlua::Error::runtime(match self.stopped_at() {
            Some(place) => format!("{place}: {message}"),
            None => message,
        })
    }

    /// Why the runtime stopped the script, if it did (even if the script
    /// caught the error).
    pub(crate) fn stopped(&self) -> Option<Stop> {
        Stop::from_u8(self.stopped.load(Ordering::Relaxed))
    }

    fn stop(&self, why: Stop) {
        let _ = self
            .stopped
            .compare_exchange(0, why as u8, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Whether the wall clock since the last action is over the limit.
    fn over_time(&self) -> bool {
        let since = Duration::from_nanos(self.since.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(since) > self.time_limit
    }

    /// Adds `cost` instructions' worth of work done outside the VM (a
    /// pattern's steps, a `string.rep`'s bytes, a sort) and checks the
    /// budget and the clock: over either, the script is stopped with the
    /// error (raised by the Rust function, where an error is safe).
    pub(crate) fn charge(&self, cost: u64) -> mlua::Result<()> {
        let used = self
            .used
            .fetch_add(cost, Ordering::Relaxed)
            .saturating_add(cost);
        if self.stopped().is_none() {
            if used > self.limit {
                self.stop(Stop::Budget);
            } else if self.over_time() {
                self.stop(Stop::Time);
            }
        }
        match self.stopped() {
            Some(why) => Err(mlua::Error::runtime(why.message(self))),
            None => Ok(()),
        }
    }
}

/// Builds a sandboxed Lua state for `generation`: safe standard libraries
/// only, `require` of the generation's plugins, `SWITCHBOARD_API`, and the
/// limits. The `call` object and `log` are added by the caller.
pub(crate) fn new_state(
    generation: &Arc<Generation>,
    limits: &Limits,
) -> mlua::Result<(Lua, Arc<Slot>)> {
    // No `io`, `debug` or `package` at all; `os` is cut down below.
    let libs = StdLib::COROUTINE | StdLib::TABLE | StdLib::STRING | StdLib::UTF8 | StdLib::MATH;
    let libs = libs | StdLib::OS;
    let lua = Lua::new_with(libs, LuaOptions::default())?;
    let slot = Arc::new(Slot {
        lock: Arc::new(tokio::sync::Mutex::new(())),
        held_since: AtomicU64::new(0),
        epoch: Instant::now(),
        current: ArcSwapOption::empty(),
        loading: Arc::new(Scope::new(limits, "", "")),
        pattern_steps: limits.pattern_steps,
    });

    let globals = lua.globals();
    for name in ["dofile", "loadfile", "require", "package", "io", "debug"] {
        globals.raw_set(name, Value::Nil)?;
    }

    // os: only the clock and calendar functions.
    let os: Table = globals.get("os")?;
    let safe_os = lua.create_table()?;
    for name in ["time", "clock", "date", "difftime"] {
        safe_os.raw_set(name, os.get::<Value>(name)?)?;
    }
    // os.date in dialplan.timezone, when set.
    crate::clock::install(&lua, &safe_os)?;
    globals.raw_set("os", safe_os)?;

    // string.dump would only help to smuggle bytecode, which `load` refuses.
    let string: Table = globals.get("string")?;
    string.raw_set("dump", Value::Nil)?;

    globals.raw_set("SWITCHBOARD_API", SWITCHBOARD_API)?;
    globals.raw_set("require", require_function(&lua, generation)?)?;

    // A Rust check that rethrows the budget error after anything that
    // catches errors, so `pcall` cannot swallow it and loop on.
    let check_slot = Arc::clone(&slot);
    let check = lua.create_function(move |_, args: MultiValue| {
        let scope = check_slot.running();
        match scope.budget.stopped() {
            Some(why) => Err(scope.budget.stop_error(why)),
            None => Ok(args),
        }
    })?;
    lua.load(SANDBOX_LUA)
        .set_name("=sandbox")
        .set_mode(ChunkMode::Text)
        .call::<()>(check)?;

    lua.set_named_registry_value(LOADED_KEY, lua.create_table()?)?;

    crate::strlib::install(&lua, &slot)?;
    crate::tables::install(&lua)?;

    let hook_slot = Arc::clone(&slot);
    lua.set_global_hook(
        HookTriggers::new().every_nth_instruction(HOOK_EVERY),
        move |lua, debug| hook(&hook_slot, lua, debug),
    )?;
    lua.set_memory_limit(limits.memory_bytes)?;
    Ok((lua, slot))
}

/// A slot outside the runtime's states, whose `loading` scope is the only
/// budget: the spec runner's own Lua, the library functions' tests.
pub(crate) fn detached_slot(limits: &Limits) -> Arc<Slot> {
    Arc::new(Slot {
        lock: Arc::new(tokio::sync::Mutex::new(())),
        held_since: AtomicU64::new(0),
        epoch: Instant::now(),
        current: ArcSwapOption::empty(),
        loading: Arc::new(Scope::new(limits, "", "")),
        pattern_steps: limits.pattern_steps,
    })
}

/// The instruction hook, every [`HOOK_EVERY`] VM instructions of any
/// coroutine of the state: charges the running call's budget, stops a
/// script over its budget or its wall-clock limit, and pauses one that has
/// run [`SLICE`] while other calls wait for the state.
fn hook(slot: &Slot, lua: &Lua, debug: &Debug) -> mlua::Result<VmState> {
    let current = slot.current.load_full();
    let in_call = current.is_some();
    let scope = current.unwrap_or_else(|| Arc::clone(&slot.loading));
    let budget = &scope.budget;
    let used = budget
        .used
        .fetch_add(u64::from(HOOK_EVERY), Ordering::Relaxed)
        .saturating_add(u64::from(HOOK_EVERY));
    if budget.stopped().is_none() {
        if used > budget.limit {
            budget.stop(Stop::Budget);
        } else if budget.over_time() {
            budget.stop(Stop::Time);
        }
        if budget.stopped().is_some() {
            *budget.place_lock() = place(debug);
        }
    }
    let in_main =
        || scope.main.load(Ordering::Relaxed) == lua.current_thread().to_pointer() as usize;
    if let Some(why) = budget.stopped() {
        // Suspend the coroutine where it is; the call's driver sees the
        // mark and stops it. (An error raised from a hook would be written
        // over the running function's stack slots, corrupting the locals
        // `on_hangup` handlers closed over.) Only the call's own coroutine
        // is suspended: a coroutine the script made would just yield to
        // the script. Where Lua cannot yield (inside a C function) the hook
        // comes back, and after YIELD_GRACE raises the error.
        if budget.grace.fetch_add(1, Ordering::Relaxed) < YIELD_GRACE && in_main() {
            return Ok(VmState::Yield);
        }
        return Err(budget.stop_error(why));
    }
    if in_call {
        let held = slot.held_for();
        if held > SLICE && in_main() {
            // Pause here: the driver lets go of the state and queues for it
            // again, behind the calls waiting for it, then resumes the
            // coroutine. Where it cannot yield, Lua ignores this and the
            // hook comes back.
            return Ok(VmState::Yield);
        }
        if held > HOLD_LIMIT {
            budget.stop(Stop::Held);
            return Err(mlua::Error::runtime(Stop::Held.message(budget)));
        }
    }
    Ok(VmState::Continue)
}

/// `file:line` of the script function running at a hook, for a chunk
/// loaded from a file (named `@file`).
pub(crate) fn place(debug: &Debug) -> Option<String> {
    let file = debug.source().source?.strip_prefix('@')?.to_owned();
    let line = debug.current_line()?;
    Some(format!("{file}:{line}"))
}

impl Slot {
    /// The scope of the Lua running now: the current call's, or the
    /// loading scope outside calls.
    pub(crate) fn running(&self) -> Arc<Scope> {
        self.current
            .load_full()
            .unwrap_or_else(|| Arc::clone(&self.loading))
    }

    /// The lock was just taken: the holder's slice starts now.
    pub(crate) fn mark_held(&self) {
        self.held_since
            .store(nanos(self.epoch.elapsed()), Ordering::Relaxed);
    }

    fn held_for(&self) -> Duration {
        let since = Duration::from_nanos(self.held_since.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(since)
    }
}

/// Registry key of the set of read-only tables (weak keys), which the
/// sandbox's `rawset` refuses.
const FROZEN_KEY: &str = "switchboard.frozen";

/// The library tables every call of a state shares, made read-only before
/// the context is loaded.
const SHARED_LIBRARIES: [&str; 11] = [
    "string",
    "table",
    "math",
    "utf8",
    "os",
    "coroutine",
    "log",
    "kv",
    "registrar",
    "pbx",
    "mailbox",
];

/// Makes the shared library tables read-only: each global library becomes
/// an empty proxy that reads through to the real table and refuses writes
/// (`string.upper = f` is an error, `pairs(string)` still lists it), the
/// strings' metatable is protected (its `__index` stays the real `string`
/// table, which nothing else reaches, so `("x"):upper()` works), and
/// `rawset` refuses every read-only table. Runs before the context is
/// loaded, so not even its top level can keep a writable library table.
pub(crate) fn freeze_libraries(lua: &Lua) -> mlua::Result<()> {
    let names = lua.create_sequence_from(SHARED_LIBRARIES)?;
    let frozen: Table = lua
        .load(FREEZE_LIBRARIES_LUA)
        .set_name("=sandbox")
        .set_mode(ChunkMode::Text)
        .call(names)?;
    lua.set_named_registry_value(FROZEN_KEY, frozen)
}

const FREEZE_LIBRARIES_LUA: &str = r##"
local names = ...
local G, next, type, error, tostring = _G, next, type, error, tostring
local raw_rawset, setmetatable, getmetatable = rawset, setmetatable, getmetatable
local frozen = setmetatable({}, {__mode = "k"})
for _, name in next, names do
  local real = G[name]
  if type(real) == "table" then
    local proxy = setmetatable({}, {
      __index = real,
      __newindex = function(_, key)
        error("cannot set " .. name .. "." .. tostring(key) .. ": the " .. name .. " library is shared by every call of this context and is read-only", 2)
      end,
      __pairs = function() return next, real, nil end,
      __len = function() return #real end,
      __metatable = false,
    })
    frozen[proxy] = true
    raw_rawset(G, name, proxy)
  end
end
getmetatable("").__metatable = false
rawset = function(t, key, value)
  if frozen[t] then
    error("rawset: this table is read-only (shared by every call of this context)", 2)
  end
  return raw_rawset(t, key, value)
end
return frozen
"##;

/// Makes every later assignment to a global an error: the state is shared
/// by every call of its context, so a global set by one call would be seen
/// by the others (`rawset(_G, ...)` too). Runs once the context's top level
/// has defined `route`.
pub(crate) fn freeze_globals(lua: &Lua) -> mlua::Result<()> {
    let frozen_set: Table = lua.named_registry_value(FROZEN_KEY)?;
    let frozen: Table = lua
        .load(FREEZE_LUA)
        .set_name("=sandbox")
        .set_mode(ChunkMode::Text)
        .call(frozen_set)?;
    // Tracebacks name functions by finding them in the loaded `_G`: point
    // that at the frozen globals so `route` is still named.
    if let Ok(loaded) = lua.named_registry_value::<Table>("_LOADED") {
        loaded.raw_set("_G", frozen)?;
    }
    Ok(())
}

const FREEZE_LUA: &str = r##"
local frozen_set = ...
local G, next, rawset, setmetatable, error, tostring = _G, next, rawset, setmetatable, error, tostring
local frozen = {}
for name, value in next, G do frozen[name] = value end
for name in next, frozen do rawset(G, name, nil) end
setmetatable(G, {
  __index = frozen,
  __newindex = function(_, name)
    error("assignment to global '" .. tostring(name) .. "': globals are shared by every call of this context; use a local, or kv to keep state", 2)
  end,
  __pairs = function() return next, frozen, nil end,
  __metatable = false,
})
frozen_set[G] = true
return frozen
"##;

/// Wraps `load` (text chunks only), `collectgarbage` (no stopping the GC),
/// and everything that catches errors (budget errors pass through).
const SANDBOX_LUA: &str = r##"
local check = ...
local raw_load, raw_pcall, raw_xpcall = load, pcall, xpcall
local raw_resume, raw_close = coroutine.resume, coroutine.close
local raw_collect, select = collectgarbage, select

load = function(chunk, name, mode, ...)
  if select("#", ...) > 0 then
    return raw_load(chunk, name, "t", (...))
  end
  return raw_load(chunk, name, "t")
end
pcall = function(...) return check(raw_pcall(...)) end
xpcall = function(...) return check(raw_xpcall(...)) end
coroutine.resume = function(...) return check(raw_resume(...)) end
coroutine.close = function(...) return check(raw_close(...)) end
collectgarbage = function(opt, ...)
  if opt == nil or opt == "collect" or opt == "count" or opt == "step" then
    return raw_collect(opt, ...)
  end
  error("collectgarbage: only 'collect', 'count' and 'step' are allowed", 2)
end
"##;

/// `require(name)`: the generation's `plugins/NAME.lua` or
/// `plugins/NAME/init.lua`, run once per state; nothing else.
fn require_function(lua: &Lua, generation: &Arc<Generation>) -> mlua::Result<mlua::Function> {
    let generation = Arc::clone(generation);
    lua.create_function(move |lua, name: String| {
        let loaded: Table = lua.named_registry_value(LOADED_KEY)?;
        match loaded.raw_get::<Value>(name.as_str())? {
            Value::Nil => {}
            Value::Boolean(false) => {
                return Err(mlua::Error::runtime(format!(
                    "require: module '{name}' requires itself (circular require)"
                )));
            }
            value => return Ok(value),
        }
        let Some(chunk) = generation.plugins.get(&name) else {
            return Err(mlua::Error::runtime(format!(
                "module '{name}' not found: no plugins/{name}.lua or plugins/{name}/init.lua"
            )));
        };
        loaded.raw_set(name.as_str(), false)?;
        let result = lua
            .load(&chunk.bytecode[..])
            .set_name(format!("@{}", chunk.name))
            .set_mode(ChunkMode::Binary)
            .call::<Value>(name.as_str());
        let value = match result {
            Ok(Value::Nil) | Ok(Value::Boolean(false)) => Value::Boolean(true),
            Ok(value) => value,
            Err(e) => {
                loaded.raw_set(name.as_str(), Value::Nil)?;
                return Err(e);
            }
        };
        loaded.raw_set(name.as_str(), &value)?;
        Ok(value)
    })
}
