//! A leg: one side of a call as the switch sees it, whatever the channel
//! (SIP today; WebRTC or a trunk protocol later) — DESIGN.md "Calls".

use std::future::Future;

use crate::registry::LegSnapshot;

/// Where a leg stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LegState {
    /// Inbound: received, not answered yet. Outbound: sent, no answer yet.
    Calling,
    /// The far end is ringing (180/183).
    Ringing,
    /// Answered and up.
    Up,
    /// Over.
    Ended,
}

/// One side of a call. A channel implements it; the call task uses it to
/// describe and end its legs without knowing the channel's protocol.
pub trait Leg: Send {
    /// What the admin API shows of the leg.
    fn snapshot(&self) -> LegSnapshot;

    /// Ends the leg whatever its state (a BYE once up, a CANCEL or a
    /// final response before); returns when the far end was told.
    fn hangup(&mut self) -> impl Future<Output = ()> + Send;
}
