//! `dialplan`: Switchboard's Lua runtime. It asks Lua how to route a call and
//! carries out the answer on `pbx`'s call model: [`LuaRouter`] is the
//! [`pbx::Router`] of every new call, and [`PbxCall`] does the Lua `call`
//! object's actions through the call's [`pbx::CallHandle`]. This crate
//! knows neither SIP text nor sockets (it never depends on `sip-*`).
//!
//! Read in this order:
//!
//! - [`Runtime`] (`runtime.rs`): the dialplans and plugins directories, the
//!   current [`Generation`] behind an atomic swap, [`Runtime::reload`], and
//!   [`Runtime::call_state`], a call's hold on the generation it runs on
//!   (its `route` runs as a coroutine in one of the generation's shared,
//!   sandboxed Lua states).
//! - [`Generation`] (`generation.rs`): every context (`dialplans/NAME.lua`)
//!   and plugin (`plugins/NAME.lua`, `plugins/NAME/init.lua`) read, compiled
//!   and checked; a bad file is a [`FileError`] with `file:line: message`.
//! - `sandbox.rs`: what the Lua states may touch (no `os.execute`, `io`,
//!   `debug`, bytecode, `require` outside the generation's plugins; shared
//!   library tables and globals read-only, `rawset` included) and its
//!   limits (memory, instructions and wall clock between actions, the time
//!   slice after which a route yields its state to waiting calls).
//! - `pool.rs`: the Lua thread pool every route runs on, apart from the
//!   threads of SIP and media.
//! - `pattern.rs` and `strlib.rs`: Lua 5.4 patterns with a step count
//!   behind `string.find/match/gmatch/gsub`, and the bounded `string.rep`,
//!   `table.concat`, `table.sort` (C work charged to the call's budget).
//! - [`CallApi`] (`call.rs`): what the runtime needs from a call, in
//!   `pbx`'s types ([`pbx::CallDetails`] is what Lua is told about it,
//!   [`pbx::DialOutcome`] and [`pbx::ActionError`] what actions return);
//!   the seam the spec runner's simulator plugs into.
//! - [`LuaRouter`] (`router.rs`) and [`PbxCall`] (`pbx_call.rs`): the
//!   runtime on real calls: prompts loaded from [`MediaFiles`], digit
//!   reading with type-ahead and terminators, recording to WAV until a
//!   key, silence or hangup, prompts the caller can interrupt.
//! - `tables.rs`: the small tables scripts get on every call (`call.from`,
//!   a `dial` result, `pbx.extension`), made by Lua constructors compiled
//!   once per state.
//! - `route.rs`: the Lua `call` object and `log` module, and
//!   [`CallState::run_route`], which runs `route(call)` as an async coroutine
//!   and turns whatever happens into a [`RouteOutcome`] — never a panic.
//! - `media.rs`: the arguments of the media actions, checked before
//!   anything reaches the [`CallApi`]: `call:play(file)` and
//!   `call:record(file [, {max = 60, terminator = "#"}])` →
//!   `{duration = seconds, reason = "max" | "terminator" | "hangup"}` take a
//!   file name of `A-Z a-z 0-9 _ . - /` under the sounds or recordings
//!   directory (relative, no `..`, ending in `.wav`, added if missing, at
//!   most 200 bytes); `call:read_digits([{max = 1, timeout = 5,
//!   terminator = "#"}])` returns the digits typed as a string (`""` for
//!   none); `call:echo()` returns when the call has ended. Unknown option
//!   keys and out-of-range values are Lua errors; see [`RecordOptions`] and
//!   [`DigitOptions`] for the ranges.
//!
//! - [`SpecRunner`] (`spec.rs`, `spec.lua`) and `sim.rs`: the spec runner
//!   of `switchboard test`. Spec files run against a real [`Runtime`]
//!   whose host and calls are simulated: a [`CallApi`] that records the
//!   route's actions, scripted phones and `kv`, a virtual clock that
//!   `os.time`/`os.date` read ([`Host::now`]).
//!
//! - `hooks.rs`: [`CallState::run_plugin_hooks`], the hooks plugins
//!   export (`on_register`, `on_call_end`, `on_start`), called by the binary.
//!
//! - [`Runtime::watch`] (`watcher.rs`): hot reload when a file changes.
//!
//! - [`Host`] (`host.rs`) and `modules.rs`: `kv`, `registrar.contacts`,
//!   `pbx.extension` and `pbx.state`; `mailbox.rs`: the `mailbox` module over the host's
//!   [`Voicemail`] boxes; all over whatever the binary gives
//!   [`Runtime::with_host`] ([`MemoryHost`] in tests).
//!
//! Metrics (through the `metrics` facade; nothing is recorded unless the
//! binary installs a recorder): `dialplan_generation`,
//! `dialplan_reloads_total{result}`, `dialplan_lua_errors_total{kind}`
//! (`error`, `memory`, `budget`, `time`).
//!
//! SIGHUP and `POST /api/v1/reload` are the binary's: it calls
//! [`Runtime::reload`].

#[cfg(test)]
mod api_check;
mod call;
mod clock;
mod error;
mod generation;
mod hooks;
mod host;
mod mailbox;
mod media;
mod modules;
mod pattern;
mod pbx_call;
mod pool;
mod queues;
mod route;
mod router;
mod runtime;
mod sandbox;
mod sim;
mod spec;
mod spec_limits;
mod strlib;
mod tables;
mod watcher;

pub use call::{CallApi, DigitOptions, RecordEnd, RecordOptions, RecordResult, ScriptDial};
pub use clock::{set_timezone, timezone};
pub use error::{Error, FileError, ReloadError};
pub use generation::{Chunk, Generation};
pub use hooks::{HookValue, PLUGIN_HOOKS};
pub use host::{Contact, ExtensionInfo, Host, HostError, MemoryHost, PhoneState};
pub use mailbox::{Greeting, VOICEMAIL_PREFIX, Voicemail, VoicemailMessage};
pub use modules::{MAX_KV_KEY, MAX_KV_NAMESPACE, MAX_KV_VALUE};
pub use pbx_call::PbxCall;
pub use queues::{
    AgentSnapshot, CallerSnapshot, CallerStatus, JoinError, QueueConfig, QueueSnapshot, Queues,
    Strategy,
};
pub use route::{FailureKind, LuaFailure, RouteOutcome};
pub use router::{LuaRouter, MediaFiles};
pub use runtime::{CallState, Limits, Runtime};
pub use sandbox::SWITCHBOARD_API;
pub use spec::{CaseReport, Report, SpecRunner, SpecSettings, spec_files};
pub use strlib::MAX_REP_BYTES;
pub use watcher::ReloadWatcher;
