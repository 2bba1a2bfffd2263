//! The seam between the dialplan and a call: [`CallApi`] is what a route's
//! actions do (implemented for a real call by [`PbxCall`](crate::PbxCall)
//! over `pbx`'s `CallHandle`, and by the spec runner's simulator), with
//! `pbx`'s own types: [`pbx::CallDetails`] is what Lua sees of the call,
//! [`pbx::DialOutcome`] what a dial did, [`pbx::ActionError`] why an
//! action failed (DESIGN.md "Dialplan (Lua)", the call object).

use std::future::Future;
use std::time::Duration;

use pbx::{ActionError, DialOutcome, DialRequest};

/// `call:dial(targets, opts)` as the script gave it (checked): `pbx`'s
/// [`DialRequest`] with the confirmation prompt
/// (`opts.confirm = {prompt = "followme-accept", key = "1", timeout = 10}`)
/// still a file name relative to the sounds dir (`.wav` added), which
/// whoever carries the dial out loads.
pub type ScriptDial = DialRequest<String>;

/// The options of `call:record(file, opts)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordOptions {
    /// The longest recording (`max`, seconds; more than 0, at most 3600).
    /// Default 60 s.
    pub max: Duration,
    /// The DTMF key that stops the recording (`terminator`), or none
    /// (`terminator = ""`). Default `#`.
    pub terminator: Option<char>,
    /// Stop after this long without voice (`silence`, seconds; 0.5 to
    /// 60), the silence cut but for 200 ms; none by default.
    pub silence: Option<Duration>,
}

impl Default for RecordOptions {
    fn default() -> Self {
        Self {
            max: Duration::from_secs(60),
            terminator: Some('#'),
            silence: None,
        }
    }
}

/// What stopped a recording (`r.reason` in Lua).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordEnd {
    /// It reached [`RecordOptions::max`].
    Max,
    /// The caller pressed the terminator key.
    Terminator,
    /// The caller said nothing for [`RecordOptions::silence`].
    Silence,
    /// The caller hung up; the call is over.
    Hangup,
}

impl RecordEnd {
    /// The reason as Lua sees it: `"max"`, `"terminator"`, `"silence"`,
    /// `"hangup"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Max => "max",
            Self::Terminator => "terminator",
            Self::Silence => "silence",
            Self::Hangup => "hangup",
        }
    }
}

/// The result of `call:record(...)`: `{duration = seconds, reason = "max" |
/// "terminator" | "hangup"}` in Lua.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordResult {
    /// How long the recording is.
    pub duration: Duration,
    /// What stopped it.
    pub reason: RecordEnd,
}

/// The options of `call:read_digits(opts)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DigitOptions {
    /// The most digits to collect (`max`, 1 to 64); collection stops when
    /// there are this many. Default 1.
    pub max: usize,
    /// How long to wait for the first digit and for each next one
    /// (`timeout`, seconds; more than 0, at most 300); when it runs out,
    /// the digits so far are the result. Default 5 s.
    pub timeout: Duration,
    /// The DTMF key that ends collection early (`terminator`), not part of
    /// the result, or none (`terminator = ""`). Default `#`.
    pub terminator: Option<char>,
}

impl Default for DigitOptions {
    fn default() -> Self {
        Self {
            max: 1,
            timeout: Duration::from_secs(5),
            terminator: Some('#'),
        }
    }
}

/// What a route's actions do to the call: [`PbxCall`](crate::PbxCall) on a
/// real call, the simulator in `switchboard test`. Each method returns when
/// the action is done (`dial` after the bridged call ends), and the Lua
/// coroutine waits, without holding a thread. Errors are `pbx`'s; the Lua
/// error says which action failed (`dial failed: ...`).
pub trait CallApi: Send + Sync + 'static {
    /// Sends 180 Ringing.
    fn ring(&self) -> impl Future<Output = Result<(), ActionError>> + Send;
    /// Answers (200 OK).
    fn answer(&self) -> impl Future<Output = Result<(), ActionError>> + Send;
    /// Rejects with a final status `code` (400–699) and an optional reason
    /// phrase; the call is over.
    fn reject(
        &self,
        code: u16,
        reason: Option<String>,
    ) -> impl Future<Output = Result<(), ActionError>> + Send;
    /// Redirects the caller: 302 Moved Temporarily with `uri` as the
    /// Contact; the call is over. The dialplan has checked that `uri` is a
    /// `sip:`, `sips:` or `tel:` URI without spaces or control characters.
    fn redirect(&self, uri: String) -> impl Future<Output = Result<(), ActionError>> + Send;
    /// Hangs up (BYE once answered); the call is over.
    fn hangup(&self) -> impl Future<Output = Result<(), ActionError>> + Send;
    /// Waits, keeping the call as it is.
    fn sleep(&self, duration: Duration) -> impl Future<Output = Result<(), ActionError>> + Send;
    /// Rings the targets (extension ids or `sip:` URIs) in parallel, bridges
    /// the first that answers, and returns after the bridged call ends.
    fn dial(
        &self,
        request: ScriptDial,
    ) -> impl Future<Output = Result<DialOutcome, ActionError>> + Send;
    /// Plays a prompt: `file` is a checked relative name under the sounds
    /// dir (see the file name rules below). Returns when it has been
    /// played.
    ///
    /// File names (`play`, `record`) as the dialplan has checked them: only
    /// `A-Z a-z 0-9 _ . - /`, relative, `/`-separated components that are
    /// neither empty nor start with `.` (so no `..`), ending in `.wav`
    /// (added when the script gave no extension), at most 200 bytes.
    fn play(&self, file: String) -> impl Future<Output = Result<(), ActionError>> + Send;
    /// Plays a prompt like [`CallApi::play`], but the first key the caller
    /// presses stops it at once (barge-in) and is returned, not left for
    /// `read_digits`; `None` when it played out. By default it plays whole.
    fn play_interruptible(
        &self,
        file: String,
    ) -> impl Future<Output = Result<Option<char>, ActionError>> + Send {
        let played = self.play(file);
        async move { played.await.map(|()| None) }
    }
    /// Records the caller into `file` (checked relative name under the
    /// recordings dir) until opts.max, the terminator digit or hangup. A
    /// [`RecordEnd::Hangup`] result ends the call for the dialplan, like
    /// [`ActionError::Ended`].
    fn record(
        &self,
        file: String,
        opts: RecordOptions,
    ) -> impl Future<Output = Result<RecordResult, ActionError>> + Send;
    /// Collects RFC 4733 digits: at most `opts.max`, waiting at most
    /// `opts.timeout` for each, until the terminator (left out of the
    /// result). Returns what was typed, empty if nothing.
    fn read_digits(
        &self,
        opts: DigitOptions,
    ) -> impl Future<Output = Result<String, ActionError>> + Send;
    /// Sends the caller's audio back to it until the call ends. However it
    /// returns, the call is over for the dialplan.
    fn echo(&self) -> impl Future<Output = Result<(), ActionError>> + Send;
    /// Answers if need be and plays music on hold (`class` from
    /// `sounds/moh/`, or the call's) to the caller, looped, until
    /// [`unhold`](Self::unhold) or another media action. Returns once the
    /// music plays.
    fn hold(&self, class: Option<String>) -> impl Future<Output = Result<(), ActionError>> + Send;
    /// Stops the music on hold.
    fn unhold(&self) -> impl Future<Output = Result<(), ActionError>> + Send;
    /// Answers if need be and parks the caller (music on hold) in `slot`
    /// or the lowest free one, for at most `timeout` before it rings back
    /// whoever parked it; with `announce` the caller first hears "parked
    /// in slot N". When the timeout passes the extension `ringback` is
    /// rung with the parked call (or, with none, the call is hung up).
    /// Returns the slot; the call is over for the route afterwards.
    fn park(
        &self,
        slot: Option<u16>,
        timeout: Duration,
        announce: bool,
        ringback: Option<String>,
    ) -> impl Future<Output = Result<u16, ActionError>> + Send;
    /// Takes the call parked in `slot` and bridges it to the caller;
    /// returns, as `dial` does, when that bridge ends (`unavailable` when
    /// nobody is parked there).
    fn unpark(&self, slot: u16) -> impl Future<Output = Result<DialOutcome, ActionError>> + Send;
    /// Takes a call that is ringing `target` (directed pickup) or, with
    /// none, a member of the caller's pickup group: answered and bridged
    /// to the caller, which is no longer the route's (`answered`), or
    /// `unavailable` when nothing rings.
    fn pickup(
        &self,
        target: Option<String>,
    ) -> impl Future<Output = Result<DialOutcome, ActionError>> + Send;
    /// A call action is about to run: `location` is the script's
    /// `file:line` (if known), `text` the action as written
    /// (`call:dial("1002")`); for the call's trace. Does nothing by default.
    fn step(&self, location: Option<String>, text: String) {
        let _ = (location, text);
    }
    /// Whether [`step`](Self::step) records anything now; when `false`
    /// the route does not work out the script's location and the step's
    /// text. `true` by default.
    fn is_traced(&self) -> bool {
        true
    }
    /// Whether the call is already over although no action has said so
    /// yet (the caller hung up while the script was computing). Backs
    /// `call.state` and `call:is_up()`; the default knows nothing.
    fn is_ended(&self) -> bool {
        false
    }
}
