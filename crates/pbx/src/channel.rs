//! A channel: one party of a call, whatever carries it (a SIP dialog
//! today; a trunk, a WebRTC peer or a local media endpoint later) —
//! DESIGN.md "Calls", docs/call-core.md.
//!
//! A channel is a value with exactly one owner at a time (a call's task, a
//! [`Bridge`](crate::Bridge), the parking lot). The owner drives it with
//! the methods below and polls [`Channel::next_event`] for what its party
//! does; moving a channel between calls or bridges is moving the value.
//! Its media is one anchored RTP leg ([`media::Leg`]) that the owner can
//! take for a bridge, a prompt or music on hold and give back.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::leg::LegState;
use crate::registry::{DialogIds, LegSnapshot};

/// A boxed future, so that `Box<dyn Channel>` stays dyn-compatible.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A channel's id, unique in the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId(u64);

impl ChannelId {
    /// The next id.
    pub fn next() -> ChannelId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        ChannelId(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// The number, for logs.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for ChannelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ch{}", self.0)
    }
}

/// What a channel cannot do right now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The party has hung up (or was hung up).
    #[error("the channel has ended")]
    Ended,
    /// The operation does not fit the channel's state (answering an
    /// outbound channel, rejecting an answered one).
    #[error("{0}")]
    State(String),
    /// The party's media cannot be used (no codec in common, bad SDP): the
    /// status a protocol would answer with, and why.
    #[error("media: {1} ({0})")]
    Media(u16, String),
}

/// Why a channel ended, for CDRs and for the other party's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hangup {
    /// The protocol status that best says it (200 for a normal end, 487
    /// for a caller who gave up, 408 for no ACK).
    pub code: u16,
    /// In words (`caller`, `callee`, `rtp timeout`, `no ACK`).
    pub cause: &'static str,
}

/// A request to transfer the call this channel is in (SIP REFER, RFC 3515,
/// or an INVITE with Replaces, RFC 3891), made by this channel's party.
pub struct Transfer {
    /// Where to: a URI, or the user part a dialplan routes.
    pub target: String,
    /// Attended transfer: the dialog (of another channel) whose other
    /// party should take this channel's peer's place.
    pub replaces: Option<DialogIds>,
    /// Who asked (Referred-By), for the new party's display.
    pub referred_by: Option<String>,
    /// Where the outcome goes (RFC 3515's NOTIFYs with `message/sipfrag`).
    pub report: Box<dyn TransferReport>,
}

impl std::fmt::Debug for Transfer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transfer")
            .field("target", &self.target)
            .field("replaces", &self.replaces)
            .field("referred_by", &self.referred_by)
            .finish_non_exhaustive()
    }
}

/// Tells the transferring party how its transfer goes.
pub trait TransferReport: Send {
    /// A provisional outcome (100 Trying, 180 Ringing).
    fn progress(&mut self, code: u16);
    /// The final outcome (200 when the target answered; the target's
    /// failure status otherwise).
    fn done(self: Box<Self>, code: u16);
}

/// Something a channel's party did.
#[derive(Debug)]
#[non_exhaustive]
pub enum ChannelEvent {
    /// An outbound channel's party is ringing (SIP 180/183); with early
    /// media its media leg carries it from now on.
    Ringing {
        /// Whether media flows before the answer.
        early_media: bool,
    },
    /// An outbound channel's party answered; its media is ready.
    Answered,
    /// An outbound channel did not reach its party (busy, declined, no
    /// such user, unreachable): the final status.
    Failed {
        /// The status (486, 603, 404, 408, 503, ...).
        code: u16,
    },
    /// The party hung up, gave up while ringing, or stopped answering
    /// (no ACK, no RTP). The channel is over.
    HungUp(Hangup),
    /// The party put the call on hold (`true`) or took it off (`false`).
    Hold(bool),
    /// Its media changed in a way a bridge must restart for (a new codec
    /// after a re-INVITE).
    MediaChanged,
    /// A keypress signalled out of the media stream (SIP INFO).
    Digit(char),
    /// The party asked to transfer the call.
    Transfer(Transfer),
}

/// One party of a call (see the module docs).
pub trait Channel: Send {
    /// Its id.
    fn id(&self) -> ChannelId;

    /// Where it stands.
    fn state(&self) -> LegState;

    /// Whether its party has put the call on hold.
    fn held(&self) -> bool;

    /// What the admin API and busy lamps show of it.
    fn snapshot(&self) -> LegSnapshot;

    /// Inbound: tells the party it rings (SIP 180).
    fn ring(&mut self) -> Result<(), ChannelError>;

    /// Inbound: answers (SIP 200 with our SDP); its media leg is ready
    /// when this returns.
    fn answer(&mut self) -> BoxFuture<'_, Result<(), ChannelError>>;

    /// Inbound, before the answer: refuses with a final status (300-699),
    /// with a reason phrase and, for a redirect, a Contact.
    fn reject(&mut self, code: u16, reason: Option<&str>, contact: Option<&str>);

    /// Ends the channel whatever its state: BYE once up, CANCEL while an
    /// outbound channel rings, a final response to an inbound one.
    fn hangup(&mut self, why: &Hangup);

    /// Tells the party who it talks to now (after a transfer or a pickup:
    /// SIP re-INVITE or UPDATE with P-Asserted-Identity).
    fn tell_identity(&mut self, display: Option<&str>, user: &str);

    /// Takes its media leg (for a bridge, a prompt, music on hold).
    /// `None` while taken, or before the answer for an inbound channel.
    fn take_media(&mut self) -> Option<media::Leg>;

    /// Gives the media leg back.
    fn give_media(&mut self, leg: media::Leg);

    /// The channel as `Any`, so the driver that made it can take its own
    /// type back (a SIP call taking in a parked SIP channel).
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send>;

    /// The next thing its party does. Cancel-safe: dropping the future
    /// loses nothing. Also drives the channel's own timers (the SIP 2xx
    /// retransmissions), so an owner must keep polling it.
    fn next_event(&mut self) -> BoxFuture<'_, ChannelEvent>;
}

impl std::fmt::Debug for dyn Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("id", &self.id())
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}
