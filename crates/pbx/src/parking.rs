//! The parking lot: channels waiting in numbered slots with music on hold
//! until someone picks them up by slot, their party hangs up, or the
//! timeout hands them back to be rung back to whoever parked them
//! (docs/call-core.md "Park"). A slot is taken and freed only when a call
//! parks or retrieves, never per packet; each parked channel is owned by
//! its own small task, which keeps its SIP dialog served.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use media::{Player, Prompt};
use tokio::sync::oneshot;

use crate::channel::{Channel, ChannelEvent, Hangup};

/// Why a channel could not be parked (it is handed back with the error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParkError {
    /// The slot asked for holds another call.
    #[error("parking slot {0} is taken")]
    Taken(u16),
    /// The slot asked for is not one of the lot's.
    #[error("parking slot {0} does not exist (slots are {1}-{2})")]
    NoSuchSlot(u16, u16, u16),
    /// Every slot holds a call.
    #[error("every parking slot is taken")]
    Full,
}

/// How to park.
#[derive(Debug, Clone)]
pub struct ParkRequest {
    /// A slot, or the lowest free one.
    pub slot: Option<u16>,
    /// How long before the call rings back the parker.
    pub timeout: Duration,
    /// The extension to ring back on timeout (`None`: the parked party
    /// is hung up then).
    pub parker: Option<String>,
    /// What the parked party hears.
    pub music: Option<Arc<Prompt>>,
}

/// A channel whose parking timed out, for the lot's owner to ring back.
pub struct TimedOut {
    /// The parked channel, still up.
    pub channel: Box<dyn Channel>,
    /// The slot it was in.
    pub slot: u16,
    /// The extension to ring.
    pub parker: String,
}

/// What the admin API shows of a parked call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ParkedSnapshot {
    /// The slot.
    pub slot: u16,
    /// The extension rung back on timeout, if any.
    pub parker: Option<String>,
    /// The parked party (its URI).
    pub party: String,
    /// When it was parked (unix ms).
    pub since_ms: u64,
}

type Handover = oneshot::Sender<Box<dyn Channel>>;

struct Slot {
    snapshot: ParkedSnapshot,
    /// Asks the slot's task for its channel (`None`: reserved, nobody
    /// parked yet).
    retrieve: Option<oneshot::Sender<Handover>>,
}

/// A slot held for a call about to be parked (its number announced
/// first); dropped unused, the slot is free again.
#[derive(Debug)]
pub struct Reservation {
    lot: ParkingLot,
    slot: u16,
    used: bool,
}

impl Reservation {
    /// The slot.
    pub fn slot(&self) -> u16 {
        self.slot
    }

    /// Parks `channel` (answered) in the reserved slot. Must be called
    /// inside a tokio runtime.
    pub fn park(mut self, channel: Box<dyn Channel>, request: ParkRequest) -> u16 {
        self.used = true;
        let (retrieve, asked) = oneshot::channel();
        let snapshot = ParkedSnapshot {
            slot: self.slot,
            parker: request.parker.clone(),
            party: channel.snapshot().peer,
            since_ms: crate::unix_ms(),
        };
        self.lot.lock().insert(
            self.slot,
            Slot {
                snapshot,
                retrieve: Some(retrieve),
            },
        );
        tokio::spawn(wait_in_slot(
            self.lot.clone(),
            self.slot,
            channel,
            request,
            asked,
        ));
        self.slot
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.used {
            let mut slots = self.lot.lock();
            if slots.get(&self.slot).is_some_and(|s| s.retrieve.is_none()) {
                slots.remove(&self.slot);
            }
        }
    }
}

type OnTimeout = Arc<dyn Fn(TimedOut) + Send + Sync>;

/// The lot (see the module docs). Clones share it.
#[derive(Clone)]
pub struct ParkingLot {
    slots: Arc<Mutex<BTreeMap<u16, Slot>>>,
    range: RangeInclusive<u16>,
    on_timeout: OnTimeout,
}

impl std::fmt::Debug for ParkingLot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParkingLot")
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

impl ParkingLot {
    /// A lot with the slots `range`; a parked call that times out is
    /// handed to `on_timeout` (which rings back the parker).
    pub fn new(range: RangeInclusive<u16>, on_timeout: OnTimeout) -> ParkingLot {
        ParkingLot {
            slots: Arc::new(Mutex::new(BTreeMap::new())),
            range,
            on_timeout,
        }
    }

    /// The lot's slots.
    pub fn range(&self) -> RangeInclusive<u16> {
        self.range.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u16, Slot>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Holds `slot` (or the lowest free one) for a call about to be
    /// parked.
    ///
    /// # Errors
    /// The slot is taken or out of range, or every slot is.
    pub fn reserve(&self, slot: Option<u16>) -> Result<Reservation, ParkError> {
        let mut slots = self.lock();
        let slot = match slot {
            Some(n) if !self.range.contains(&n) => {
                return Err(ParkError::NoSuchSlot(
                    n,
                    *self.range.start(),
                    *self.range.end(),
                ));
            }
            Some(n) if slots.contains_key(&n) => return Err(ParkError::Taken(n)),
            Some(n) => n,
            None => self
                .range
                .clone()
                .find(|n| !slots.contains_key(n))
                .ok_or(ParkError::Full)?,
        };
        slots.insert(
            slot,
            Slot {
                snapshot: ParkedSnapshot {
                    slot,
                    parker: None,
                    party: String::new(),
                    since_ms: crate::unix_ms(),
                },
                retrieve: None,
            },
        );
        Ok(Reservation {
            lot: self.clone(),
            slot,
            used: false,
        })
    }

    /// Parks `channel` (answered) and returns its slot. Must be called
    /// inside a tokio runtime.
    ///
    /// # Errors
    /// The slot asked for is taken or out of range, or every slot is: the
    /// channel comes back with the error.
    pub fn park(
        &self,
        channel: Box<dyn Channel>,
        request: ParkRequest,
    ) -> Result<u16, (ParkError, Box<dyn Channel>)> {
        match self.reserve(request.slot) {
            Ok(reservation) => Ok(reservation.park(channel, request)),
            Err(error) => Err((error, channel)),
        }
    }

    /// Takes the call parked in `slot` out of the lot (`None`: nobody is
    /// parked there, or its party just hung up).
    pub async fn retrieve(&self, slot: u16) -> Option<Box<dyn Channel>> {
        let retrieve = {
            let mut slots = self.lock();
            // A reserved slot has nobody in it yet: it stays reserved.
            slots.get(&slot)?.retrieve.as_ref()?;
            slots.remove(&slot)?.retrieve?
        };
        let (handover, channel) = oneshot::channel();
        retrieve.send(handover).ok()?;
        channel.await.ok()
    }

    /// The parked calls, by slot.
    pub fn list(&self) -> Vec<ParkedSnapshot> {
        self.lock()
            .values()
            .filter(|s| s.retrieve.is_some())
            .map(|s| s.snapshot.clone())
            .collect()
    }

    fn free(&self, slot: u16) {
        let mut slots = self.lock();
        // Only its own entry: the slot may be someone else's by now.
        if slots.get(&slot).is_some_and(|s| s.retrieve.is_some()) {
            slots.remove(&slot);
        }
    }
}

/// Loops `music` on the channel's media leg (taken from it), if both are
/// there.
fn play_music(channel: &mut dyn Channel, music: Option<&Arc<Prompt>>) -> Option<Player> {
    match (music, channel.take_media()) {
        (Some(music), Some(leg)) => Some(Player::start_looped(leg, music.clone())),
        (_, Some(leg)) => {
            channel.give_media(leg);
            None
        }
        _ => None,
    }
}

/// How a parked channel's wait ended.
enum Outcome {
    Gone,
    Retrieved(Handover),
    TimedOut,
}

/// A parked channel's task: music to it, its events served, until one of
/// the three ends.
async fn wait_in_slot(
    lot: ParkingLot,
    slot: u16,
    mut channel: Box<dyn Channel>,
    request: ParkRequest,
    mut asked: oneshot::Receiver<Handover>,
) {
    let mut player = play_music(channel.as_mut(), request.music.as_ref());
    let deadline = tokio::time::sleep(request.timeout);
    tokio::pin!(deadline);
    let outcome = loop {
        tokio::select! {
            event = channel.next_event() => match event {
                ChannelEvent::HungUp(_) => break Outcome::Gone,
                // A new codec (or a hold and resume, which may bring one):
                // the music starts again on the leg as it is now.
                ChannelEvent::MediaChanged | ChannelEvent::Hold(_) => {
                    if let Some(old) = player.take()
                        && let Ok(leg) = old.stop().await
                    {
                        channel.give_media(leg);
                    }
                    player = play_music(channel.as_mut(), request.music.as_ref());
                }
                _ => {}
            },
            handover = &mut asked => match handover {
                Ok(handover) => break Outcome::Retrieved(handover),
                // The lot was dropped (shutting down).
                Err(_) => break Outcome::Gone,
            },
            () = &mut deadline => break Outcome::TimedOut,
        }
    };
    if let Some(player) = player
        && let Ok(leg) = player.stop().await
    {
        channel.give_media(leg);
    }
    match outcome {
        Outcome::Gone => lot.free(slot),
        Outcome::Retrieved(handover) => {
            if let Err(mut channel) = handover.send(channel) {
                channel.hangup(&Hangup {
                    code: 200,
                    cause: "park retrieval abandoned",
                });
            }
        }
        Outcome::TimedOut => {
            lot.free(slot);
            match request.parker {
                Some(parker) => (lot.on_timeout)(TimedOut {
                    channel,
                    slot,
                    parker,
                }),
                None => channel.hangup(&Hangup {
                    code: 200,
                    cause: "park timeout",
                }),
            }
        }
    }
}
