//! The bridge: one task joining two legs' media (DESIGN.md "Media"),
//! relaying packets as they are when both legs use the same codec and
//! transcoding (RFC 3551 §4.5 codecs) when they do not.
//!
//! Either way each direction keeps one continuous stream for the far end
//! (RFC 3550 §5.1 via [`rtp::Rewriter`]): while a leg's source stays the
//! same its packets go out with their own SSRC, sequence numbers and
//! timestamps (only the payload type is renumbered where the legs' numbers
//! differ); when the source changes (a new SSRC, a jump, a re-latch), the
//! next packets continue the old numbering with the marker bit set. RFC
//! 4733 telephone-events pass through with their payload type mapped, or
//! are dropped towards a leg that did not negotiate them. RTCP is
//! terminated by each leg, not relayed.

use std::future::Future as _;
use std::pin::Pin;
use std::task::Poll;
use std::time::Instant;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::leg::{Buffer, Leg, MAX_DATAGRAM};
use crate::path::{Outcome, Path};

/// A running bridge between two legs. Dropping it ends the bridge and
/// drops the legs (their ports go back to the pool); [`Bridge::stop`]
/// ends it and gives the legs back (for a prompt, or a new bridge after a
/// codec change).
#[derive(Debug)]
pub struct Bridge {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Box<Sides>>,
    transcoding: bool,
}

impl Bridge {
    /// Starts a task relaying `a`'s media to `b` and `b`'s to `a`.
    /// Must be called inside a tokio runtime.
    pub fn start(a: Leg, b: Leg) -> Bridge {
        let ab = Path::new(a.params(), b.params());
        let ba = Path::new(b.params(), a.params());
        let transcoding = ab.is_transcoding() || ba.is_transcoding();
        let (stop, stopped) = oneshot::channel();
        // Boxed: a task's future that took them by value would keep room
        // for the legs twice (arguments and locals).
        let task = tokio::spawn(run(Box::new(Sides { a, b, ab, ba }), stopped));
        Bridge {
            stop,
            task,
            transcoding,
        }
    }

    /// Whether the legs' codecs differ and media is transcoded.
    pub fn is_transcoding(&self) -> bool {
        self.transcoding
    }

    /// Ends the bridge and returns its legs, in the order given to
    /// [`Bridge::start`].
    ///
    /// # Errors
    /// [`Error::TaskFailed`] when the bridge's task did not end normally.
    pub async fn stop(self) -> Result<(Leg, Leg), Error> {
        // The task may have ended already; then there is no one to tell.
        let _ = self.stop.send(());
        let sides = self.task.await.map_err(|_| Error::TaskFailed)?;
        let Sides { a, b, .. } = *sides;
        Ok((a, b))
    }
}

/// What a bridge's task owns.
#[derive(Debug)]
struct Sides {
    a: Leg,
    b: Leg,
    ab: Path,
    ba: Path,
}

/// Returns the sides boxed: a task keeps room for its output from the
/// start, and two legs are over a kilobyte.
async fn run(mut sides: Box<Sides>, mut stopped: oneshot::Receiver<()>) -> Box<Sides> {
    enum From {
        A,
        B,
        Stop,
    }
    // Which leg is looked at first, alternating, so a busy one cannot
    // starve the other.
    let mut a_first = true;
    loop {
        let Sides { a, b, ab, ba } = &mut *sides;
        // A stop message or a dropped `Bridge` both end the loop. The legs
        // are polled in place: their wakers live in their sockets, so a
        // quiet bridge's task holds no buffer and no per-leg future.
        let from = std::future::poll_fn(|cx| {
            if Pin::new(&mut stopped).poll(cx).is_ready() {
                return Poll::Ready(From::Stop);
            }
            let (first, second) = if a_first {
                (From::A, From::B)
            } else {
                (From::B, From::A)
            };
            for which in [first, second] {
                let leg = match which {
                    From::A => &mut *a,
                    _ => &mut *b,
                };
                if leg.poll_rtp_ready(cx).is_ready() {
                    return Poll::Ready(which);
                }
            }
            Poll::Pending
        })
        .await;
        a_first = !a_first;
        // Lives only until the next await: no part of the task's state.
        let mut buf: Buffer = [0; MAX_DATAGRAM + 1];
        let now = Instant::now();
        match from {
            From::Stop => break,
            From::A => relay(a, b, ab, &mut buf, now),
            From::B => relay(b, a, ba, &mut buf, now),
        }
    }
    sides
}

/// Forwards what `from` has waiting to `to`, a burst at most (then the
/// other direction gets its turn).
fn relay(from: &mut Leg, to: &mut Leg, path: &mut Path, buf: &mut Buffer, now: Instant) {
    for _ in 0..RELAY_BURST {
        let Some(rx) = from.try_recv(buf) else {
            return;
        };
        if path.forward(&rx, &mut buf[..], to, now) == Outcome::Unwanted {
            from.count_dropped_payload_type();
        }
    }
}

/// Packets relayed in one direction before the other is looked at.
const RELAY_BURST: usize = 16;
