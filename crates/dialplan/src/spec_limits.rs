//! The limits of a spec file's own Lua (`switchboard test`): the live
//! dialplan's instruction budget, wall-clock limit (`route_time_limit`),
//! pattern step limit and memory limit, so an endless loop in a spec fails
//! its case with the spec's `file:line` instead of hanging the runner. The
//! routes a spec drives run in the runtime's own states, under its limits.

use std::sync::Arc;

use mlua::debug::{Debug, HookTriggers};
use mlua::{Lua, MultiValue, VmState};

use crate::runtime::Limits;
use crate::sandbox::{self, Budget, HOOK_EVERY, Slot, Stop};

/// `pcall`, `xpcall` and `coroutine.resume` rethrow a stop after they
/// catch it, so a spec cannot swallow the error and loop on.
const CHECKED_LUA: &str = r#"
local check = ...
local raw_pcall, raw_xpcall, raw_resume = pcall, xpcall, coroutine.resume
pcall = function(...) return check(raw_pcall(...)) end
xpcall = function(...) return check(raw_xpcall(...)) end
coroutine.resume = function(...) return check(raw_resume(...)) end
"#;

/// The budget of one spec file's Lua state: instructions counted per case
/// (and for the file's top level), the wall clock from the case's start or
/// the last simulated call's route run, whichever is later.
#[derive(Debug, Clone)]
pub(crate) struct SpecLimits {
    slot: Arc<Slot>,
    limits: Limits,
}

impl SpecLimits {
    /// Bounds `lua`: the bounded string and table functions of the live
    /// runtime, checked `pcall`s, the instruction hook and the memory
    /// limit.
    pub(crate) fn install(lua: &Lua, limits: &Limits) -> mlua::Result<SpecLimits> {
        let me = SpecLimits {
            slot: sandbox::detached_slot(limits),
            limits: *limits,
        };
        crate::strlib::install(lua, &me.slot)?;
        let checker = me.clone();
        let check = lua.create_function(move |_, args: MultiValue| match checker.stopped() {
            Some(why) => Err(mlua::Error::runtime(why)),
            None => Ok(args),
        })?;
        lua.load(CHECKED_LUA)
            .set_name("=spec limits")
            .call::<()>(check)?;
        let hooked = me.clone();
        lua.set_global_hook(
            HookTriggers::new().every_nth_instruction(HOOK_EVERY),
            move |_, debug| hooked.hook(debug),
        )?;
        lua.set_memory_limit(limits.memory_bytes)?;
        Ok(me)
    }

    fn budget(&self) -> &Budget {
        &self.slot.loading.budget
    }

    /// A case (or the file's top level) starts: a full budget, the clock
    /// from now.
    pub(crate) fn restart(&self) {
        self.budget().restart();
    }

    /// A simulated call's route has run (its own limits bound it): the
    /// spec's wall clock restarts, its instruction count goes on.
    pub(crate) fn route_ran(&self) {
        self.budget().reset_clock();
    }

    /// What a spec over a limit fails with.
    fn message(&self, why: Stop) -> String {
        match why {
            Stop::Time => format!(
                "spec exceeded the time limit: ran {} of wall clock (dialplan.route_time_limit; an endless loop?)",
                sandbox::humanize(self.limits.route_time)
            ),
            Stop::Budget | Stop::Held => format!(
                "spec exceeded the instruction limit: more than {} Lua instructions in one case (dialplan.instruction_budget; an endless loop?)",
                self.limits.instructions
            ),
        }
    }

    fn stopped(&self) -> Option<String> {
        self.budget().stopped().map(|why| self.message(why))
    }

    /// Every [`HOOK_EVERY`] instructions: charges them, and over a limit
    /// stops the spec where it is, naming that `file:line`.
    fn hook(&self, debug: &Debug) -> mlua::Result<VmState> {
        if self.budget().charge(u64::from(HOOK_EVERY)).is_ok() {
            return Ok(VmState::Continue);
        }
        let why = self.stopped().unwrap_or_default();
        Err(mlua::Error::runtime(match sandbox::place(debug) {
            Some(place) => format!("{place}: {why}"),
            None => why,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limited() -> (Lua, SpecLimits) {
        let lua = Lua::new();
        let limits = Limits {
            instructions: 100_000,
            ..Limits::default()
        };
        let spec = SpecLimits::install(&lua, &limits).expect("install");
        spec.restart();
        (lua, spec)
    }

    #[test]
    fn an_endless_loop_stops_at_its_line_even_under_pcall() {
        let (lua, spec) = limited();
        let e = lua
            .load("local n = 0\nwhile true do n = n + 1 end\n")
            .set_name("@x_spec.lua")
            .exec()
            .expect_err("stopped");
        let text = e.to_string();
        assert!(
            text.contains("x_spec.lua:2: spec exceeded the instruction limit"),
            "{text}"
        );
        spec.restart();
        let e = lua
            .load("while true do pcall(function() while true do end end) end")
            .set_name("@y_spec.lua")
            .exec()
            .expect_err("stopped");
        assert!(
            e.to_string().contains("exceeded the instruction limit"),
            "{e}"
        );
        // A fresh case runs again.
        spec.restart();
        lua.load("local n = 0 for i = 1, 10 do n = n + i end")
            .exec()
            .expect("runs");
    }

    #[test]
    fn patterns_have_the_step_limit() {
        let lua = Lua::new();
        let spec = SpecLimits::install(&lua, &Limits::default()).expect("install");
        spec.restart();
        let e = lua
            .load(r#"return ("a"):rep(5000):match("(.-)*b")"#)
            .exec()
            .expect_err("too expensive");
        assert!(e.to_string().contains("pattern too expensive"), "{e}");
    }
}
