//! The sandbox of the runtime's Lua states (DESIGN.md "Dialplan (Lua)",
//! rules): which standard functions exist, `require` limited to the
//! generation's plugins, globals frozen once a context is loaded, the
//! memory limit of a state, and each call's instruction budget (the hook
//! charges whichever call is running, see [`Slot`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::ArcSwapOption;
use mlua::chunk::ChunkMode;
use mlua::debug::HookTriggers;
use mlua::{Lua, LuaOptions, MultiValue, StdLib, Table, Value, VmState};

use crate::generation::Generation;
use crate::runtime::Limits;

/// The dialplan API version, `SWITCHBOARD_API` in Lua. Raised when a
/// released API changes incompatibly.
pub const SWITCHBOARD_API: u32 = 1;

/// How often (in VM instructions) the budget hook runs.
const HOOK_EVERY: u32 = 1_000;

/// Instructions over budget during which the hook asks to yield before it
/// raises an error instead (code that cannot yield).
const YIELD_GRACE: u64 = 20 * HOOK_EVERY as u64;

/// Registry key of the table of plugins loaded by `require` in this state.
const LOADED_KEY: &str = "switchboard.loaded";

/// The message of the error that stops a script over its budget.
pub(crate) const BUDGET_MESSAGE: &str = "instruction budget exceeded (endless loop?)";

/// Instructions run since the last yield to Rust, shared by the hook and the
/// call actions (which reset it).
#[derive(Debug)]
pub(crate) struct Budget {
    used: AtomicU64,
    limit: u64,
    exceeded: AtomicBool,
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
    /// A call's scope with a fresh budget of `limit` instructions.
    pub(crate) fn new(limit: u64, call_id: &str, context: &str) -> Self {
        Self {
            budget: Budget::new(limit),
            call_id: call_id.to_owned(),
            context: context.to_owned(),
            main: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

/// What one Lua state shares with the calls that run in it: a lock held
/// while a call's Lua runs (Lua runs one coroutine at a time; this makes
/// "which call is running" exact for the hook), and that call's scope.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) lock: std::sync::Mutex<()>,
    pub(crate) current: ArcSwapOption<Scope>,
    /// The budget of code that runs outside any call (a context's top
    /// level while a generation is built).
    pub(crate) loading: Arc<Scope>,
}

impl Budget {
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            used: AtomicU64::new(0),
            limit,
            exceeded: AtomicBool::new(false),
        }
    }

    /// A call action came back: the script waited, so its count restarts.
    pub(crate) fn reset(&self) {
        self.used.store(0, Ordering::Relaxed);
    }

    /// A fresh budget for a new piece of script (an `on_hangup` handler):
    /// the count and the over-budget mark both start again.
    pub(crate) fn restart(&self) {
        self.used.store(0, Ordering::Relaxed);
        self.exceeded.store(false, Ordering::Relaxed);
    }

    /// Whether the script ran over its budget (even if it caught the error).
    pub(crate) fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Relaxed)
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
        lock: std::sync::Mutex::new(()),
        current: ArcSwapOption::empty(),
        loading: Arc::new(Scope::new(limits.instructions, "", "")),
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
        if check_slot.running().budget.exceeded() {
            Err(mlua::Error::runtime(BUDGET_MESSAGE))
        } else {
            Ok(args)
        }
    })?;
    lua.load(SANDBOX_LUA)
        .set_name("=sandbox")
        .set_mode(ChunkMode::Text)
        .call::<()>(check)?;

    lua.set_named_registry_value(LOADED_KEY, lua.create_table()?)?;

    let hook_slot = Arc::clone(&slot);
    lua.set_global_hook(
        HookTriggers::new().every_nth_instruction(HOOK_EVERY),
        move |lua, _| {
            let scope = hook_slot.running();
            let budget = &scope.budget;
            let used = budget
                .used
                .fetch_add(u64::from(HOOK_EVERY), Ordering::Relaxed)
                + u64::from(HOOK_EVERY);
            if used <= budget.limit {
                Ok(VmState::Continue)
            } else if used <= budget.limit.saturating_add(YIELD_GRACE)
                && scope.main.load(Ordering::Relaxed) == lua.current_thread().to_pointer() as usize
            {
                // Over budget: suspend the coroutine where it is; the call's
                // driver sees the mark and stops it. (An error raised from a
                // hook would be written over the running function's stack
                // slots, corrupting the locals `on_hangup` handlers closed
                // over.) Only the call's own coroutine is suspended: a
                // coroutine the script made would just yield to the script.
                // Where Lua cannot yield (inside a C function) the hook
                // comes back, and after YIELD_GRACE raises the error.
                budget.exceeded.store(true, Ordering::Relaxed);
                Ok(VmState::Yield)
            } else {
                budget.exceeded.store(true, Ordering::Relaxed);
                Err(mlua::Error::runtime(BUDGET_MESSAGE))
            }
        },
    )?;
    lua.set_memory_limit(limits.memory_bytes)?;
    Ok((lua, slot))
}

impl Slot {
    /// The scope of the Lua running now: the current call's, or the
    /// loading scope outside calls.
    pub(crate) fn running(&self) -> Arc<Scope> {
        self.current
            .load_full()
            .unwrap_or_else(|| Arc::clone(&self.loading))
    }
}

/// Makes every later assignment to a global an error: the state is shared
/// by every call of its context, so a global set by one call would be seen
/// by the others. Runs once the context's top level has defined `route`.
pub(crate) fn freeze_globals(lua: &Lua) -> mlua::Result<()> {
    let frozen: Table = lua
        .load(FREEZE_LUA)
        .set_name("=sandbox")
        .set_mode(ChunkMode::Text)
        .eval()?;
    // Tracebacks name functions by finding them in the loaded `_G`: point
    // that at the frozen globals so `route` is still named.
    if let Ok(loaded) = lua.named_registry_value::<Table>("_LOADED") {
        loaded.raw_set("_G", frozen)?;
    }
    Ok(())
}

const FREEZE_LUA: &str = r##"
local G, next, rawset, setmetatable, error, tostring = _G, next, rawset, setmetatable, error, tostring
local frozen = {}
for name, value in next, G do frozen[name] = value end
for name in next, frozen do rawset(G, name, nil) end
setmetatable(G, {
  __index = frozen,
  __newindex = function(_, name)
    error("assignment to global '" .. tostring(name) .. "': globals are shared by every call of this context; use a local, or kv to keep state", 2)
  end,
  __metatable = false,
})
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
