//! A bridge: two channels whose media is joined (DESIGN.md "Calls",
//! docs/call-core.md). It relays (or transcodes) their RTP on a [`Stage`]
//! (a [`media::Bridge`]); when one party holds, the other hears music on hold
//! until the resume joins them again; a codec change restarts the relay.
//! Everything else a party does (hanging up, transferring, a keypress) is
//! handed to the bridge's owner, which may [`split`](Bridge::split) it and
//! move either channel elsewhere while both stay up.

use std::sync::Arc;

use media::Prompt;

use crate::channel::{Channel, ChannelEvent, Hangup, Transfer};
use crate::stage::Stage;

/// One of a bridge's two places.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The first channel given to [`Bridge::join`].
    A,
    /// The second.
    B,
}

impl Side {
    /// The other place.
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// What a bridge's owner must decide.
#[derive(Debug)]
#[non_exhaustive]
pub enum BridgeEvent {
    /// A party hung up; its channel is over, the other is still up.
    HungUp {
        /// Whose.
        side: Side,
        /// Why.
        why: Hangup,
    },
    /// A party asked to transfer the call.
    Transfer {
        /// Who asked.
        side: Side,
        /// What.
        transfer: Transfer,
    },
    /// A keypress signalled out of the media stream.
    Digit {
        /// Whose.
        side: Side,
        /// The key.
        digit: char,
    },
}

/// Two channels joined (see the module docs).
pub struct Bridge {
    a: Box<dyn Channel>,
    b: Box<dyn Channel>,
    /// What plays on their legs: joined, or music to one while the other
    /// holds (the holder's leg back in its channel, which answers its own
    /// re-INVITEs).
    stage: Stage,
    /// What a party hears while the other holds (`None`: silence).
    music: Option<Arc<Prompt>>,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("a", &self.a.id())
            .field("b", &self.b.id())
            .finish_non_exhaustive()
    }
}

impl Bridge {
    /// Joins `a` and `b`, both answered, with `music` for either party
    /// while the other holds. A party already holding starts the music at
    /// once (an attended transfer's first call is usually on hold).
    pub async fn join(
        a: Box<dyn Channel>,
        b: Box<dyn Channel>,
        music: Option<Arc<Prompt>>,
    ) -> Bridge {
        let mut bridge = Bridge {
            a,
            b,
            stage: Stage::new(),
            music,
        };
        bridge.restart().await;
        bridge
    }

    /// One of the channels.
    pub fn channel(&self, side: Side) -> &dyn Channel {
        match side {
            Side::A => self.a.as_ref(),
            Side::B => self.b.as_ref(),
        }
    }

    fn channel_mut(&mut self, side: Side) -> &mut dyn Channel {
        match side {
            Side::A => self.a.as_mut(),
            Side::B => self.b.as_mut(),
        }
    }

    /// Who holds, if anyone (the relay is off meanwhile).
    pub fn held_by(&self) -> Option<Side> {
        self.stage.held_by()
    }

    /// Whether the two parties' media is being relayed.
    pub fn is_relaying(&self) -> bool {
        self.stage.is_bridged()
    }

    /// The next event for the owner; holds, resumes and codec changes are
    /// handled here. Cancel-safe (each channel's `next_event` is).
    pub async fn next_event(&mut self) -> BridgeEvent {
        loop {
            let (side, event) = tokio::select! {
                e = self.a.next_event() => (Side::A, e),
                e = self.b.next_event() => (Side::B, e),
            };
            match event {
                ChannelEvent::HungUp(why) => {
                    self.stop_media().await;
                    return BridgeEvent::HungUp { side, why };
                }
                ChannelEvent::Transfer(transfer) => {
                    return BridgeEvent::Transfer { side, transfer };
                }
                ChannelEvent::Digit(digit) => return BridgeEvent::Digit { side, digit },
                ChannelEvent::Hold(_) | ChannelEvent::MediaChanged => self.restart().await,
                // Progress of an outbound channel is its dialler's concern;
                // a bridged channel has answered already.
                ChannelEvent::Ringing { .. }
                | ChannelEvent::Answered
                | ChannelEvent::Failed { .. } => {}
            }
        }
    }

    /// Ends what runs on the legs and gives each back to its channel.
    async fn stop_media(&mut self) {
        self.stage.stop_all().await;
        self.give_back();
    }

    /// The legs nothing runs on go back to their channels.
    fn give_back(&mut self) {
        for side in [Side::A, Side::B] {
            if let Some(leg) = self.stage.take_idle(side) {
                self.channel_mut(side).give_media(leg);
            }
        }
    }

    /// Starts what the parties' states call for: the relay, or music to
    /// one while the other holds.
    async fn restart(&mut self) {
        self.stop_media().await;
        let holder = if self.a.held() {
            Some(Side::A)
        } else if self.b.held() {
            Some(Side::B)
        } else {
            None
        };
        let legs = (self.a.take_media(), self.b.take_media());
        let both = legs.0.is_some() && legs.1.is_some();
        if let Some(a) = legs.0 {
            self.stage.give(Side::A, a);
        }
        if let Some(b) = legs.1 {
            self.stage.give(Side::B, b);
        }
        match (holder, self.music.clone()) {
            (Some(holder), Some(music)) => self.stage.hold(holder, music).await,
            // No hold (or no music: the holder sends nothing and the other
            // party hears silence through the relay).
            _ if both => self.stage.bridge().await,
            _ => {}
        }
        self.give_back();
    }

    /// Ends the bridge and gives both channels back, still up, in the
    /// order they were joined.
    pub async fn split(mut self) -> (Box<dyn Channel>, Box<dyn Channel>) {
        self.stop_media().await;
        (self.a, self.b)
    }
}
