//! `dialplan`: Switchboard's Lua runtime. It asks Lua how to route a call and
//! carries out the answer through a [`CallApi`], the seam to the call model
//! (`pbx`/`chan-sip`), which it never names: this crate knows neither SIP text
//! nor sockets.
//!
//! Read in this order:
//!
//! - [`Runtime`] (`runtime.rs`): the dialplans and plugins directories, the
//!   current [`Generation`] behind an atomic swap, [`Runtime::reload`], and
//!   [`Runtime::call_state`], which builds one fresh Lua state per call.
//! - [`Generation`] (`generation.rs`): every context (`dialplans/NAME.lua`)
//!   and plugin (`plugins/NAME.lua`, `plugins/NAME/init.lua`) read, compiled
//!   and checked; a bad file is a [`FileError`] with `file:line: message`.
//! - `sandbox.rs`: what a call's Lua state may touch (no `os.execute`, `io`,
//!   `debug`, bytecode, `require` outside the generation's plugins) and its
//!   limits (memory, instructions between yields).
//! - [`CallApi`], [`CallInfo`] (`call.rs`): what the runtime needs from a
//!   call, and what it tells Lua about it.
//! - `route.rs`: the Lua `call` object and `log` module, and
//!   [`CallState::run_route`], which runs `route(call)` as an async coroutine
//!   and turns whatever happens into a [`RouteOutcome`] — never a panic.
//!
//! - [`Runtime::watch`] (`watcher.rs`): hot reload when a file changes.
//!
//! Not here yet: SIGHUP and `POST /api/v1/reload` (the binary calls
//! [`Runtime::reload`]), `kv`,
//! `registrar.contacts`, `pbx.extension`, `redirect`, `header`, `on_hangup`
//! and the media actions.

mod call;
mod error;
mod generation;
mod route;
mod runtime;
mod sandbox;
mod watcher;

pub use call::{
    ActionError, CallApi, CallInfo, DialOptions, DialResult, DialStatus, Source, UriParts,
};
pub use error::{Error, FileError, ReloadError};
pub use generation::{Chunk, Generation};
pub use route::{FailureKind, LuaFailure, RouteOutcome};
pub use runtime::{CallState, Limits, Runtime};
pub use sandbox::SWITCHBOARD_API;
pub use watcher::ReloadWatcher;
