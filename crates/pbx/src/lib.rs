//! `pbx`: the call model (DESIGN.md "Calls"). A call is one task that owns
//! its state; the dialplan drives it through a [`CallHandle`] (a channel),
//! the admin API reads it from the [`Registry`], and it leaves a [`Cdr`] when
//! it ends, which the [`CdrWriter`] stores. This crate knows neither SIP text nor Lua: `chan-sip` turns SIP
//! dialogs into calls and [`Leg`]s, and `dialplan` drives calls through
//! [`CallHandle`] as the [`Router`] of every new call (the binary only wires
//! the two together).
//!
//! The call core being built (docs/call-core.md): [`Channel`] (one party,
//! `channel.rs`), [`Bridge`] (two parties' media joined, `bridge.rs`) and
//! the [`ParkingLot`] (`parking.rs`).
//!
//! Read `handle.rs` (what a route can ask of a call), `phase.rs` (a
//! call's state, one enum, and a dial's fork), `route.rs` (the
//! route's task, taken over by a transfer's), `record.rs` (what is kept
//! of every call: its CDR, its registry entry, its end), then `registry.rs`
//! (live calls), `cdr.rs` (what is kept when a call ends) and
//! `cdr_writer.rs` (how it is stored), `leg.rs`, and `mailbox.rs` (what
//! voicemail reports to message-waiting and email).

mod bridge;
mod cdr;
mod cdr_writer;
mod channel;
mod handle;
mod leg;
mod mailbox;
mod parking;
mod phase;
mod record;
mod registry;
mod route;
mod stage;
mod trace;

pub use bridge::{Bridge, BridgeEvent, Side};
pub use cdr::{Cdr, Disposition, rfc3339, unix_ms};
pub use cdr_writer::{CdrObserver, CdrWriter};
pub use channel::{
    BoxFuture, Channel, ChannelError, ChannelEvent, ChannelId, Hangup, Transfer, TransferReport,
};
pub use handle::{
    ActionError, CallDetails, CallHandle, CallIdentity, Command, Commands, DialConfirm,
    DialOutcome, DialRequest, DialStatus, HeaderList, Party, RouteEnd, Router,
};
pub use leg::{Leg, LegState};
pub use mailbox::{
    Listeners as MailboxListeners, MailboxCounts, MailboxListener, Mailboxes, NewMessage,
};
pub use parking::{ParkError, ParkRequest, ParkedSnapshot, ParkingLot, Reservation, TimedOut};
pub use phase::{Bridged, DialDone, Fork, Phase};
pub use record::CallRecord;
pub use registry::{
    CallChange, CallSnapshot, CallState, DialogIds, LegSnapshot, Registry, RingingSnapshot,
};
pub use route::{ROUTE_LINGER, RouteEvent, RouteTask, Verdict};
pub use stage::{DigitTo, Stage, Suspended};
pub use trace::{CallTrace, MAX_EVENTS, TraceEvent, TracePeer, TraceWhat, Traces};
