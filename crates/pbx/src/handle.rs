//! What a route can ask of a call: [`CallHandle`] sends [`Command`]s to the
//! call's task and waits for their outcome, so the call's state stays owned
//! by that one task (DESIGN.md "Calls": no global lock on the call path).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// Why an action on a call could not be carried out.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ActionError {
    /// The call is over (the caller hung up, or the route ended it).
    #[error("call has ended")]
    Ended,
    /// The action is not possible in the call's state, or failed.
    #[error("{0}")]
    Failed(String),
    /// A file the action needed could not be used: a prompt to play that
    /// is missing or not a usable WAV, a recording that could not be
    /// written (the error names the file and what to fix).
    #[error(transparent)]
    Media(Arc<media::Error>),
}

impl From<media::Error> for ActionError {
    fn from(e: media::Error) -> Self {
        Self::Media(Arc::new(e))
    }
}

impl PartialEq for ActionError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Ended, Self::Ended) => true,
            (Self::Failed(a), Self::Failed(b)) => a == b,
            // The same failure, handed on (media errors are not comparable).
            (Self::Media(a), Self::Media(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for ActionError {}

/// How a dial ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DialStatus {
    /// A target answered; the bridged call has ended since.
    Answered,
    /// Every target that answered was busy (486/600).
    Busy,
    /// Nobody answered in time (or a target said 408/480 after ringing).
    NoAnswer,
    /// No target could be reached (not registered, unknown, unreachable).
    Unavailable,
    /// The caller gave up while the targets rang.
    Cancelled,
    /// Anything else (a target refused with another status, an error).
    Failed,
}

impl DialStatus {
    /// The status as the dialplan shows it (`r.status` in Lua):
    /// `"answered"`, `"busy"`, `"noanswer"`, `"unavailable"`,
    /// `"cancelled"`, `"failed"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::Busy => "busy",
            Self::NoAnswer => "noanswer",
            Self::Unavailable => "unavailable",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }
}

/// The outcome of a dial: how it ended, the status that decided it and,
/// answered, which target answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialOutcome {
    /// How it ended.
    pub status: DialStatus,
    /// The SIP status that decided it (200, 486, 408, 480 …).
    pub code: u16,
    /// The target that answered, as the dial request named it (one of
    /// [`DialRequest::targets`]); `None` unless a target answered (a
    /// pickup's or an unpark's party is no target).
    pub answered_by: Option<String>,
}

impl DialOutcome {
    /// How a dial ended whose every target failed, from their final
    /// statuses (in the order they came) and whether any rang: busy (486,
    /// 600, 603) over no answer (408, 480 after ringing; unavailable
    /// before), over unavailable (404, 410, 503, 604), over cancelled
    /// (487); anything else is a failure with the lowest status.
    pub fn unanswered(codes: &[u16], rang: bool) -> DialOutcome {
        let pick = |set: &[u16]| codes.iter().copied().find(|c| set.contains(c));
        let (status, code) = if let Some(code) = pick(&[486, 600, 603]) {
            (DialStatus::Busy, code)
        } else if let Some(code) = pick(&[408, 480]) {
            let status = if rang {
                DialStatus::NoAnswer
            } else {
                DialStatus::Unavailable
            };
            (status, code)
        } else if let Some(code) = pick(&[404, 410, 503, 604]) {
            (DialStatus::Unavailable, code)
        } else if let Some(code) = pick(&[487]) {
            (DialStatus::Cancelled, code)
        } else {
            (
                DialStatus::Failed,
                codes.iter().copied().min().unwrap_or(500),
            )
        };
        DialOutcome {
            status,
            code,
            answered_by: None,
        }
    }
}

/// What to dial and how. `P` is the confirmation prompt: loaded (the
/// default, what the call task plays), or as the route named it before it
/// is loaded (`DialRequest<String>`, a file name under the sounds dir, as
/// the dialplan checks it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialRequest<P = Arc<media::Prompt>> {
    /// Extension ids or `sip:` URIs, rung in parallel.
    pub targets: Vec<String>,
    /// How long to ring before giving up (default: the channel's).
    pub timeout: Option<Duration>,
    /// The caller id the targets see (the From user), if not the caller's.
    pub caller_id: Option<String>,
    /// Extra headers for the outbound requests.
    pub headers: Vec<(String, String)>,
    /// The music-on-hold class either side hears when the other holds
    /// (default: the channel's).
    pub moh: Option<String>,
    /// The STIR/SHAKEN attestation (`"A"`, `"B"`, `"C"`) of the Identity
    /// signed on trunk INVITEs, instead of the one the call earns.
    pub attest: Option<String>,
    /// Whoever answers must confirm before the caller is put through.
    pub confirm: Option<DialConfirm<P>>,
}

impl<P> Default for DialRequest<P> {
    fn default() -> Self {
        Self {
            targets: Vec::new(),
            timeout: None,
            caller_id: None,
            headers: Vec::new(),
            moh: None,
            attest: None,
            confirm: None,
        }
    }
}

/// A dial's confirmation (follow-me's "press 1 to accept"): the party that
/// answers hears `prompt` and is put through only after pressing `key`
/// (during the prompt or within `timeout` after it); otherwise it gets
/// BYE and counts as not answering (408). The caller hears ringback
/// meanwhile. `P` as in [`DialRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialConfirm<P = Arc<media::Prompt>> {
    /// What the answering party hears.
    pub prompt: P,
    /// The key that accepts the call.
    pub key: char,
    /// How long after the prompt to wait for the key.
    pub timeout: Duration,
}

/// A request from the route to the call's task.
#[derive(Debug)]
#[non_exhaustive]
pub enum Command {
    /// Tell the caller it is ringing (180).
    Ring(oneshot::Sender<Result<(), ActionError>>),
    /// Answer (200).
    Answer(oneshot::Sender<Result<(), ActionError>>),
    /// Refuse with a final status and optional reason phrase.
    Reject {
        /// 400–699.
        code: u16,
        /// The reason phrase, if not the standard one.
        reason: Option<Box<str>>,
        /// Done.
        done: oneshot::Sender<Result<(), ActionError>>,
    },
    /// Send the caller elsewhere (302 with this Contact).
    Redirect {
        /// Where to.
        uri: Box<str>,
        /// Done.
        done: oneshot::Sender<Result<(), ActionError>>,
    },
    /// End the call (BYE once answered, a final response before).
    Hangup(oneshot::Sender<Result<(), ActionError>>),
    /// Ring targets; bridge the first that answers; report when the
    /// bridged call has ended (or why no one answered).
    Dial {
        /// What to dial (boxed: commands queue per call, and a small
        /// command keeps the queue small).
        request: Box<DialRequest>,
        /// The outcome.
        done: oneshot::Sender<Result<DialOutcome, ActionError>>,
    },
    /// Answer if need be, then send the caller's audio back to it until
    /// something else runs on the call (done when it has started).
    Echo(oneshot::Sender<Result<(), ActionError>>),
    /// Answer if need be, and subscribe to the caller's RFC 4733 digits.
    Digits(oneshot::Sender<Result<media::Digits, ActionError>>),
    /// Answer if need be and play a prompt to the caller (done when it
    /// has been played).
    Play {
        /// The prompt, loaded.
        prompt: Arc<media::Prompt>,
        /// Done.
        done: oneshot::Sender<Result<(), ActionError>>,
    },
    /// Answer if need be and record the caller, for at most `max` (done
    /// when it has started).
    Record {
        /// The longest recording, and after how long without voice to
        /// tell the route, if at all (boxed: a small command keeps the
        /// queue small).
        limits: Box<(Duration, Option<Duration>)>,
        /// Started: notified once the silence is reached.
        done: oneshot::Sender<Result<Arc<tokio::sync::Notify>, ActionError>>,
    },
    /// Stop the recording and hand it over; also after the call ended.
    StopRecording(oneshot::Sender<Result<media::Recording, ActionError>>),
    /// Answer if need be and play music on hold to the caller, looped,
    /// until [`Command::Unhold`] or another media action (done when it
    /// has started).
    Hold {
        /// The music class (default: the call's).
        class: Option<Box<str>>,
        /// Started.
        done: oneshot::Sender<Result<(), ActionError>>,
    },
    /// Stop the music on hold.
    Unhold(oneshot::Sender<Result<(), ActionError>>),
    /// Stop the prompt playing, if one is, at once (barge-in); the caller
    /// is listened to again.
    StopPlaying(oneshot::Sender<Result<(), ActionError>>),
    /// Take a call that is ringing `target` (directed pickup) or, with no
    /// target, a member of the caller's pickup group: it is answered here
    /// and bridged to the caller, and this call is over for its route
    /// (done at once: `Answered`, or `Unavailable` when nothing rings).
    Pickup {
        /// The extension whose ringing call to take.
        target: Option<Box<str>>,
        /// The outcome.
        done: oneshot::Sender<Result<DialOutcome, ActionError>>,
    },
    /// Replace one party of another call (an INVITE with Replaces, RFC
    /// 3891): the caller takes the place of the party in `dialog` (a
    /// ringing one: a pickup; an answered one: it is released), bridged
    /// to that call's other party. Done at once: `Answered`, or
    /// `Unavailable` when there is no such dialog to replace.
    Replace {
        /// The dialog to replace (boxed: commands queue per call, and a
        /// small command keeps the queue small).
        dialog: Box<crate::DialogIds>,
        /// Only while it is ringing (`early-only`).
        early_only: bool,
        /// The outcome.
        done: oneshot::Sender<Result<DialOutcome, ActionError>>,
    },
    /// Hold a parking slot (`slot`, or the lowest free one) for this call,
    /// to announce it before [`Command::Park`]; released when the call
    /// ends unparked.
    ReservePark {
        /// A slot, or the lowest free one.
        slot: Option<u16>,
        /// The slot held.
        done: oneshot::Sender<Result<u16, ActionError>>,
    },
    /// Answer if need be and park the caller in the parking lot (music on
    /// hold) until someone retrieves it or `timeout` rings the parker
    /// back; the call itself ends here (done with the slot).
    Park {
        /// Where, for how long, whom to ring back (boxed: a small command
        /// keeps the queue small); the music is the call's.
        request: Box<crate::ParkRequest>,
        /// The slot.
        done: oneshot::Sender<Result<u16, ActionError>>,
    },
    /// Answer if need be and take the call parked in `slot` (bridged to
    /// the caller; done when that bridge ends, as a dial is, or with
    /// `Unavailable` when nobody is parked there).
    Unpark {
        /// The slot.
        slot: u16,
        /// The outcome.
        done: oneshot::Sender<Result<DialOutcome, ActionError>>,
    },
}

/// The receiving end of a call's commands, which its task reads.
#[derive(Debug)]
pub struct Commands(flume::Receiver<Command>);

impl Commands {
    /// The next command; `None` once every [`CallHandle`] is gone.
    /// Cancel-safe: a command is never lost when the future is dropped.
    pub async fn recv(&mut self) -> Option<Command> {
        self.0.recv_async().await.ok()
    }
}

/// The route's handle on one call. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CallHandle {
    commands: flume::Sender<Command>,
    ended: CancellationToken,
    trace: Option<Arc<crate::CallTrace>>,
}

impl CallHandle {
    /// A handle and the receiving end the call's task reads commands from.
    /// The task cancels `ended` (see [`ended_token`](Self::ended_token))
    /// when the call is over.
    pub fn new() -> (CallHandle, Commands) {
        // A route waits for each action, so a few slots are plenty.
        let (commands, rx) = flume::bounded(4);
        (
            CallHandle {
                commands,
                ended: CancellationToken::new(),
                trace: None,
            },
            Commands(rx),
        )
    }

    /// The handle, recording the route's steps into `trace`.
    pub fn with_trace(mut self, trace: Option<Arc<crate::CallTrace>>) -> CallHandle {
        self.trace = trace;
        self
    }

    /// Whether the call's steps are recorded now (it is traced, and its
    /// trace is still kept): a caller may skip preparing a step otherwise.
    pub fn is_traced(&self) -> bool {
        self.trace.as_ref().is_some_and(|t| t.is_recording())
    }

    /// Records a dialplan step in the call's trace (if it is traced).
    pub fn step(&self, location: Option<String>, text: String) {
        if let Some(trace) = &self.trace {
            trace.step(location, text);
        }
    }

    /// The token the call's task cancels when the call is over.
    pub fn ended_token(&self) -> CancellationToken {
        self.ended.clone()
    }

    /// Whether the call is over.
    pub fn is_ended(&self) -> bool {
        self.ended.is_cancelled()
    }

    /// Sends the command `make` builds now, and returns a future for its
    /// outcome. The future keeps only the outcome's receiver (and, in the
    /// rare case the queue is full, the boxed wait for room): a `dial`'s
    /// future lives as long as the call, so what it keeps is per call.
    fn ask<T: Send + 'static>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, ActionError>>) -> Command,
    ) -> impl Future<Output = Result<T, ActionError>> + Send + 'static {
        type Room = Pin<Box<dyn Future<Output = Result<(), ActionError>> + Send>>;
        let (done, outcome) = oneshot::channel();
        let sent: Result<Option<Room>, ActionError> = if self.is_ended() {
            Err(ActionError::Ended)
        } else {
            match self.commands.try_send(make(done)) {
                Ok(()) => Ok(None),
                Err(flume::TrySendError::Disconnected(_)) => Err(ActionError::Ended),
                Err(flume::TrySendError::Full(command)) => {
                    let commands = self.commands.clone();
                    Ok(Some(Box::pin(async move {
                        commands
                            .send_async(command)
                            .await
                            .map_err(|_| ActionError::Ended)
                    })))
                }
            }
        };
        async move {
            if let Some(room) = sent? {
                room.await?;
            }
            outcome.await.unwrap_or(Err(ActionError::Ended))
        }
    }

    /// Sends 180 Ringing to the caller.
    pub async fn ring(&self) -> Result<(), ActionError> {
        self.ask(Command::Ring).await
    }

    /// Answers the call.
    pub async fn answer(&self) -> Result<(), ActionError> {
        self.ask(Command::Answer).await
    }

    /// Refuses the call with `code`; the call is over.
    pub async fn reject(&self, code: u16, reason: Option<String>) -> Result<(), ActionError> {
        let reason = reason.map(String::into_boxed_str);
        self.ask(|done| Command::Reject { code, reason, done })
            .await
    }

    /// Redirects the caller to `uri` (302); the call is over.
    pub async fn redirect(&self, uri: String) -> Result<(), ActionError> {
        let uri = uri.into_boxed_str();
        self.ask(|done| Command::Redirect { uri, done }).await
    }

    /// Ends the call.
    pub async fn hangup(&self) -> Result<(), ActionError> {
        self.ask(Command::Hangup).await
    }

    /// Dials; the future returns after the bridged call ends, or when no
    /// one answered. The dial is sent to the call at once, not when the
    /// future is first polled (so that the future, which lives as long as
    /// the call, keeps nothing of the request).
    pub fn dial(
        &self,
        request: DialRequest,
    ) -> impl Future<Output = Result<DialOutcome, ActionError>> + Send + 'static {
        self.ask(|done| Command::Dial {
            request: Box::new(request),
            done,
        })
    }

    /// Answers if need be and echoes the caller's audio; returns once the
    /// echo runs.
    pub async fn echo(&self) -> Result<(), ActionError> {
        self.ask(Command::Echo).await
    }

    /// Answers if need be and plays `prompt`; returns when it has been
    /// played.
    pub async fn play(&self, prompt: Arc<media::Prompt>) -> Result<(), ActionError> {
        self.ask(|done| Command::Play { prompt, done }).await
    }

    /// Stops the prompt playing, if any, at once (a key pressed during it).
    pub async fn stop_playing(&self) -> Result<(), ActionError> {
        self.ask(Command::StopPlaying).await
    }

    /// Answers if need be and starts recording the caller; with
    /// `silence`, the returned [`tokio::sync::Notify`] is notified once the
    /// caller has said nothing for that long (the recording goes on until
    /// stopped).
    pub async fn record(
        &self,
        max: Duration,
        silence: Option<Duration>,
    ) -> Result<Arc<tokio::sync::Notify>, ActionError> {
        let limits = Box::new((max, silence));
        self.ask(|done| Command::Record { limits, done }).await
    }

    /// Stops the recording and returns it. Works after the call has ended
    /// (the caller hanging up ends a voicemail), while the call's task
    /// waits for the route.
    pub async fn stop_recording(&self) -> Result<media::Recording, ActionError> {
        let (done, rx) = oneshot::channel();
        self.commands
            .send_async(Command::StopRecording(done))
            .await
            .map_err(|_| ActionError::Ended)?;
        rx.await.map_err(|_| ActionError::Ended)?
    }

    /// Answers if need be and plays music on hold (`class`, or the call's)
    /// to the caller until [`unhold`](Self::unhold); returns once it plays.
    pub async fn hold(&self, class: Option<String>) -> Result<(), ActionError> {
        let class = class.map(String::into_boxed_str);
        self.ask(|done| Command::Hold { class, done }).await
    }

    /// Parks the caller (answering first if need be) and returns its
    /// slot; the call is over for this route afterwards.
    pub async fn park(
        &self,
        slot: Option<u16>,
        timeout: Duration,
        ringback: Option<String>,
    ) -> Result<u16, ActionError> {
        let request = Box::new(crate::ParkRequest {
            slot,
            timeout,
            parker: ringback,
            music: None,
        });
        self.ask(|done| Command::Park { request, done }).await
    }

    /// Holds a parking slot for this call (to announce it before
    /// [`park`](Self::park)).
    pub async fn reserve_park(&self, slot: Option<u16>) -> Result<u16, ActionError> {
        self.ask(|done| Command::ReservePark { slot, done }).await
    }

    /// Picks up a call ringing `target`, or a member of the caller's
    /// pickup group (see [`Command::Pickup`]).
    pub async fn pickup(&self, target: Option<String>) -> Result<DialOutcome, ActionError> {
        let target = target.map(String::into_boxed_str);
        self.ask(|done| Command::Pickup { target, done }).await
    }

    /// Replaces the party of another call in `dialog` (see
    /// [`Command::Replace`]).
    pub async fn replace(
        &self,
        dialog: crate::DialogIds,
        early_only: bool,
    ) -> Result<DialOutcome, ActionError> {
        let dialog = Box::new(dialog);
        self.ask(|done| Command::Replace {
            dialog,
            early_only,
            done,
        })
        .await
    }

    /// Takes the call parked in `slot`; returns when that bridge ends.
    pub async fn unpark(&self, slot: u16) -> Result<DialOutcome, ActionError> {
        self.ask(|done| Command::Unpark { slot, done }).await
    }

    /// Stops the music on hold; the caller is listened to again.
    pub async fn unhold(&self) -> Result<(), ActionError> {
        self.ask(Command::Unhold).await
    }

    /// Answers if need be; the caller's RFC 4733 digits from now on.
    pub async fn digits(&self) -> Result<media::Digits, ActionError> {
        self.ask(Command::Digits).await
    }

    /// Waits `duration`, or until the call ends ([`ActionError::Ended`]).
    pub async fn sleep(&self, duration: Duration) -> Result<(), ActionError> {
        if self.is_ended() {
            return Err(ActionError::Ended);
        }
        tokio::select! {
            () = tokio::time::sleep(duration) => Ok(()),
            () = self.ended.cancelled() => Err(ActionError::Ended),
        }
    }
}

/// A URI of the call as a route sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Party {
    /// The user part, empty if none.
    pub user: String,
    /// The host part.
    pub host: String,
    /// The display name, if any.
    pub display: Option<String>,
    /// The whole URI.
    pub uri: String,
}

/// A request's headers as a route reads them (`call:header`), kept as one
/// string: a call keeps them as long as it lasts, and two strings per
/// header were a kilobyte per call.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HeaderList {
    /// `name:value` lines, each ended by `\n`. A name has no `:` (SIP
    /// names are tokens); line breaks in a value became spaces.
    text: Box<str>,
}

impl HeaderList {
    /// The first value of header `name` (compared without case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The headers in order, as (name, value).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.text
            .split_terminator('\n')
            .map(|line| line.split_once(':').unwrap_or((line, "")))
    }

    /// How many headers there are.
    pub fn len(&self) -> usize {
        self.text.bytes().filter(|&b| b == b'\n').count()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }
}

impl<N: AsRef<str>, V: AsRef<str>> FromIterator<(N, V)> for HeaderList {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(headers: I) -> HeaderList {
        let mut text = String::new();
        for (name, value) in headers {
            let clean = |c: char| if matches!(c, '\n' | '\r') { ' ' } else { c };
            text.extend(
                name.as_ref()
                    .chars()
                    .map(|c| if c == ':' { '_' } else { clean(c) }),
            );
            text.push(':');
            text.extend(value.as_ref().chars().map(clean));
            text.push('\n');
        }
        HeaderList {
            text: text.into_boxed_str(),
        }
    }
}

impl std::fmt::Debug for HeaderList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// What a route is told about a new call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallDetails {
    /// The call's id.
    pub id: String,
    /// From.
    pub from: Party,
    /// To.
    pub to: Party,
    /// The Request-URI.
    pub request_uri: Party,
    /// The caller's address.
    pub source_ip: String,
    /// The caller's port.
    pub source_port: u16,
    /// `udp`, `tcp`, …
    pub transport: String,
    /// The authenticated extension, if any.
    pub caller: Option<String>,
    /// The context that routes the call.
    pub context: String,
    /// The trunk the call came in on, if it came from a carrier.
    pub trunk: Option<String>,
    /// The dialled number in E.164, when it reads as one (trunk calls).
    pub did: Option<String>,
    /// The request's headers, in order.
    pub headers: HeaderList,
    /// A blind transfer's route: the extension that transferred the call
    /// (its context routes it; the caller is the party transferred).
    pub transferred_by: Option<String>,
    /// A blind transfer whose target failed after the transferor hung up:
    /// how the target's dial ended. The context routes the transferred
    /// party with its failed-transfer hook instead of its usual route (see
    /// [`Router::handles_failed_transfer`]); `to` is the failed target.
    pub transfer_failed: Option<DialStatus>,
    /// The STIR/SHAKEN verification of a trunk call (`None`: not a trunk
    /// call, or no trust anchors are configured).
    pub identity: Option<CallIdentity>,
}

/// What verifying a trunk call's `Identity` header (RFC 8224) found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallIdentity {
    /// Whether the PASSporT verified.
    pub verified: bool,
    /// The attestation it claims (`"A"`, `"B"`, `"C"`), when readable.
    pub attest: Option<String>,
    /// Why it did not verify (`None` when verified).
    pub reason: Option<String>,
}

/// How a route ended, beyond what the call's state already says.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RouteEnd {
    /// The route returned. An unanswered call still up gets 404, an
    /// answered one is hung up.
    Done,
    /// The route failed (already logged): an unanswered call gets 500, an
    /// answered one is hung up.
    Failed(String),
    /// The route failed on something out of reach for now (the storage,
    /// while its database is down; already logged): an unanswered call
    /// gets 503, an answered one is hung up.
    Unavailable(String),
}

/// Decides what happens to each new call (the Lua dialplan: `dialplan`'s
/// `LuaRouter`).
pub trait Router: Send + Sync + 'static {
    /// Routes one call through `call`; the future ends when the route does.
    fn route(
        &self,
        call: CallHandle,
        details: CallDetails,
    ) -> Pin<Box<dyn Future<Output = RouteEnd> + Send + 'static>>;

    /// Whether `context` routes a blind transfer whose target failed after
    /// the transferor hung up (the Lua dialplan: when the context defines
    /// `on_transfer_failed`). Then the call is routed again with
    /// [`CallDetails::transfer_failed`] set; otherwise (the default) the
    /// transfer's route goes on with the failed dial's result.
    fn handles_failed_transfer(&self, context: &str) -> bool {
        let _ = context;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_dial_is_told_by_its_targets_statuses() {
        let outcome = |codes: &[u16], rang| {
            let o = DialOutcome::unanswered(codes, rang);
            assert_eq!(o.answered_by, None);
            (o.status, o.code)
        };
        assert_eq!(outcome(&[486], true), (DialStatus::Busy, 486));
        assert_eq!(outcome(&[480, 486], true), (DialStatus::Busy, 486));
        assert_eq!(outcome(&[408], true), (DialStatus::NoAnswer, 408));
        assert_eq!(outcome(&[480], false), (DialStatus::Unavailable, 480));
        assert_eq!(outcome(&[404], false), (DialStatus::Unavailable, 404));
        assert_eq!(outcome(&[487], true), (DialStatus::Cancelled, 487));
        assert_eq!(outcome(&[500, 501], false), (DialStatus::Failed, 500));
        assert_eq!(outcome(&[], false), (DialStatus::Failed, 500));
    }

    #[test]
    fn steps_are_traced_while_the_trace_is_kept() {
        let (handle, _commands) = CallHandle::new();
        assert!(!handle.is_traced());
        let traces = crate::Traces::new(1);
        let handle = handle.with_trace(traces.start("a"));
        assert!(handle.is_traced());
        handle.step(None, "call:answer()".into());
        // The next call pushes this one's trace out.
        traces.start("b");
        assert!(!handle.is_traced());
    }

    #[tokio::test]
    async fn actions_go_to_the_call_task_and_fail_once_it_ended() {
        let (handle, mut rx) = CallHandle::new();
        let task = tokio::spawn(async move {
            while let Some(cmd) = rx.recv().await {
                match cmd {
                    Command::Ring(done) => {
                        let _ = done.send(Ok(()));
                    }
                    Command::Reject { code, done, .. } => {
                        assert_eq!(code, 486);
                        let _ = done.send(Ok(()));
                        return;
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        });
        handle.ring().await.unwrap();
        handle.reject(486, None).await.unwrap();
        task.await.unwrap();
        // The task is gone: every action now says the call ended.
        assert_eq!(handle.answer().await, Err(ActionError::Ended));
    }

    #[test]
    fn a_header_list_keeps_order_and_finds_names_without_case() {
        let list: HeaderList = [
            ("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1"),
            ("X-Tenant", "north"),
            ("x-tenant", "second"),
            ("Subject", "two\r\nlines"),
            ("Empty", ""),
        ]
        .into_iter()
        .collect();
        assert_eq!(list.len(), 5);
        assert_eq!(list.get("x-TENANT"), Some("north"));
        assert_eq!(
            list.get("via"),
            Some("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1")
        );
        assert_eq!(list.get("subject"), Some("two  lines"));
        assert_eq!(list.get("empty"), Some(""));
        assert_eq!(list.get("Missing"), None);
        let names: Vec<&str> = list.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["Via", "X-Tenant", "x-tenant", "Subject", "Empty"]);
        assert!(HeaderList::default().is_empty());
    }

    #[tokio::test]
    async fn sleep_ends_early_when_the_call_ends() {
        let (handle, _rx) = CallHandle::new();
        let ended = handle.ended_token();
        let sleeper = handle.clone();
        let t = tokio::spawn(async move { sleeper.sleep(Duration::from_secs(60)).await });
        ended.cancel();
        assert_eq!(t.await.unwrap(), Err(ActionError::Ended));
        assert!(handle.is_ended());
    }
}
