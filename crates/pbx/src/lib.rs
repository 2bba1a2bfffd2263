//! `pbx`: the call model (DESIGN.md "Calls"). A call is one task that owns
//! its state; the dialplan drives it through a [`CallHandle`] (a channel),
//! the admin API reads it from the [`Registry`], and it leaves a [`Cdr`] when
//! it ends, which the [`CdrWriter`] stores. This crate knows neither SIP text nor Lua: `chan-sip` turns SIP
//! dialogs into calls and [`Leg`]s, and the binary plugs the Lua dialplan in
//! as a [`Router`].
//!
//! Read `handle.rs` (what a route can ask of a call), then `registry.rs`
//! (live calls), `cdr.rs` (what is kept when a call ends) and
//! `cdr_writer.rs` (how it is stored), `leg.rs`, and `mailbox.rs` (what
//! voicemail reports to message-waiting and email).

mod cdr;
mod cdr_writer;
mod handle;
mod leg;
mod mailbox;
mod registry;
mod trace;

pub use cdr::{Cdr, Disposition, rfc3339, unix_ms};
pub use cdr_writer::CdrWriter;
pub use handle::{
    ActionError, CallDetails, CallHandle, Command, DialOutcome, DialRequest, DialStatus, Party,
    RouteEnd, Router,
};
pub use leg::{Leg, LegState};
pub use mailbox::{
    Listeners as MailboxListeners, MailboxCounts, MailboxListener, Mailboxes, NewMessage,
};
pub use registry::{
    CallChange, CallSnapshot, CallState, DialogIds, LegSnapshot, Registry, RingingSnapshot,
};
pub use trace::{CallTrace, MAX_EVENTS, TraceEvent, TraceWhat, Traces};
