//! Plugin hooks: functions a plugin's module table exports, such as
//! `on_register(ext, contact)`, `on_call_end(cdr)` and `on_start()`, that the runtime
//! calls on events outside any call (DESIGN.md "Dialplan (Lua)"), each
//! under a route's instruction budget and time limit.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use mlua::{Function, Lua, Table, Value};
use tracing::Instrument;

use crate::generation::Generation;
use crate::route::{Budgeted, FailureKind, LuaFailure, Scoped, failure};
use crate::runtime::CallState;
use crate::sandbox::{LOADED_KEY, Scope};

/// A value handed to a plugin hook, made a Lua value when the hook runs.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum HookValue {
    /// `nil`.
    Nil,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A string.
    Text(String),
    /// A table with these string keys.
    Table(Vec<(String, HookValue)>),
}

impl HookValue {
    fn to_lua(&self, lua: &Lua) -> mlua::Result<Value> {
        Ok(match self {
            Self::Nil => Value::Nil,
            Self::Bool(b) => Value::Boolean(*b),
            Self::Int(i) => Value::Integer(*i),
            Self::Text(s) => Value::String(lua.create_string(s)?),
            Self::Table(fields) => {
                let t = lua.create_table_with_capacity(0, fields.len())?;
                for (k, v) in fields {
                    t.raw_set(k.as_str(), v.to_lua(lua)?)?;
                }
                Value::Table(t)
            }
        })
    }
}

/// The hooks plugins may export that the binary calls.
pub const PLUGIN_HOOKS: [&str; 3] = ["on_register", "on_call_end", "on_start"];

/// The hooks of [`PLUGIN_HOOKS`] whose name appears in some plugin's
/// source: only those can be exported.
pub(crate) fn mentioned(generation: &Generation) -> Vec<&'static str> {
    PLUGIN_HOOKS
        .into_iter()
        .filter(|hook| {
            generation.plugins.values().any(|chunk| {
                chunk
                    .source
                    .windows(hook.len())
                    .any(|w| w == hook.as_bytes())
            })
        })
        .collect()
}

impl CallState {
    /// Whether some plugin may export hook `name` (its source names it):
    /// when not, [`run_plugin_hooks`](Self::run_plugin_hooks) does nothing
    /// and the caller need not build its arguments.
    pub fn has_plugin_hook(&self, name: &str) -> bool {
        self.live.plugin_hooks.contains(&name)
    }

    /// Calls `name(args...)` of every plugin whose module table exports a
    /// function of that name, once per plugin: in a state of the first
    /// context (by name) that `require`s it, each with a fresh instruction
    /// budget and time limit. A plugin no context requires is not loaded
    /// and so not called. A failing hook is logged with `file:line` and
    /// returned; the others still run. Runs on the Lua threads; the caller
    /// (a REGISTER, a call's end) should spawn it rather than wait.
    pub async fn run_plugin_hooks(
        self,
        name: &'static str,
        args: Vec<HookValue>,
    ) -> Vec<LuaFailure> {
        if !self.has_plugin_hook(name) {
            return Vec::new();
        }
        let main = tokio::runtime::Handle::try_current().ok();
        match crate::pool::handle().filter(|_| main.is_some()) {
            Some(pool) => {
                let task = pool.spawn(self.run_plugin_hooks_here(name, args).in_current_span());
                match crate::pool::AbortOnDrop(task).await {
                    Ok(failures) => failures,
                    Err(e) => vec![LuaFailure {
                        kind: FailureKind::Error,
                        file: String::new(),
                        line: None,
                        message: format!("the {name} hooks' Lua task failed: {e}"),
                        traceback: None,
                    }],
                }
            }
            None => self.run_plugin_hooks_here(name, args).await,
        }
    }

    async fn run_plugin_hooks_here(
        self,
        name: &'static str,
        args: Vec<HookValue>,
    ) -> Vec<LuaFailure> {
        let mut contexts: Vec<&String> = self.live.contexts.keys().collect();
        contexts.sort();
        let mut done: HashSet<String> = HashSet::new();
        let mut failures = Vec::new();
        for context in contexts {
            let Some(state) = self.live.state(context) else {
                continue;
            };
            // The plugins this state loaded that export the hook.
            let scope = Arc::new(Scope::new(&self.limits, name, context));
            let find = async {
                let loaded: Table = state.lua.named_registry_value(LOADED_KEY)?;
                let mut found: Vec<(String, Function)> = Vec::new();
                for pair in loaded.pairs::<String, Value>() {
                    let (plugin, module) = pair?;
                    if let Value::Table(module) = module
                        && let Value::Function(f) = module.raw_get::<Value>(name)?
                    {
                        found.push((plugin, f));
                    }
                }
                found.sort_by(|a, b| a.0.cmp(&b.0));
                Ok(found)
            };
            let found: Vec<(String, Function)> = match Scoped::new(
                state,
                &scope,
                Budgeted::new(&scope, find),
            )
            .await
            {
                Ok(found) => found,
                Err(e) => {
                    tracing::error!(target: "dialplan", context = %context, error = %e, "cannot list the plugins' {name} hooks");
                    continue;
                }
            };
            for (plugin, hook) in found {
                if !done.insert(plugin.clone()) {
                    continue;
                }
                let file = self
                    .live
                    .generation
                    .plugins
                    .get(&plugin)
                    .map_or_else(|| format!("plugins/{plugin}.lua"), |c| c.name.clone());
                let scope = Arc::new(Scope::new(&self.limits, name, context));
                let run = async {
                    let thread = state.lua.create_thread(hook)?;
                    scope
                        .main
                        .store(thread.to_pointer() as usize, Ordering::Relaxed);
                    let args = mlua::MultiValue::from_iter(
                        args.iter()
                            .map(|a| a.to_lua(&state.lua))
                            .collect::<mlua::Result<Vec<_>>>()?,
                    );
                    thread.into_async::<Value>(args)?.await.map(drop)
                };
                if let Err(e) = Scoped::new(state, &scope, Budgeted::new(&scope, run)).await {
                    let f = failure(&e, &scope, &file);
                    metrics::counter!("dialplan_lua_errors_total", "kind" => f.kind.as_str())
                        .increment(1);
                    tracing::error!(target: "dialplan", plugin = %plugin, "dialplan {f} — in {plugin}.{name}");
                    failures.push(f);
                }
            }
        }
        failures
    }
}
