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
//!
//! A digit that came in signalling (SIP INFO) can be sent into a leg's
//! stream as RFC 4733 events (§2.5.1, [`Bridge::send_digit`]): the leg's
//! audio from the other side pauses for the event, which goes out in the
//! same stream (its SSRC, the next sequence numbers), and the audio
//! resumes after it with the timestamps moved on by the event's length.

use std::collections::VecDeque;
use std::future::Future as _;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use rtp::{Digit, DtmfSender, EventPacket, PacketBuilder, RtpHeader};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Sleep;

use crate::error::Error;
use crate::leg::{Buffer, Leg, MAX_DATAGRAM};
use crate::path::{Outcome, Path};

/// One of a bridge's two legs, in the order given to [`Bridge::start`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The first leg.
    A,
    /// The second leg.
    B,
}

/// A digit to send into one leg's stream (small: the queue's first block
/// is allocated with every bridge).
#[derive(Debug, Clone, Copy)]
struct Injection {
    to: End,
    digit: Digit,
    /// Milliseconds.
    ms: u16,
}

/// Digits waiting to be sent, per bridge: a phone pressing keys faster
/// than they can be played loses the excess rather than growing a queue.
const DIGIT_QUEUE: usize = 16;
/// The shortest and longest digit sent (RFC 4733 §2.5.1.2 leaves the
/// length to the sender; INFO's `Duration` is trusted within these).
const DIGIT_MIN: Duration = Duration::from_millis(40);
const DIGIT_MAX: Duration = Duration::from_secs(2);
/// The pause between two queued digits on one leg (its audio flows
/// again meanwhile), so a receiver hears two presses, not one long one.
const DIGIT_GAP: Duration = Duration::from_millis(50);

/// A running bridge between two legs. Dropping it ends the bridge and
/// drops the legs (their ports go back to the pool); [`Bridge::stop`]
/// ends it and gives the legs back (for a prompt, or a new bridge after a
/// codec change).
#[derive(Debug)]
pub struct Bridge {
    /// Digits to send; dropping it ends the task.
    control: mpsc::Sender<Injection>,
    task: JoinHandle<Box<Sides>>,
    transcoding: bool,
    /// Whether each leg negotiated telephone-event, A then B.
    events: [bool; 2],
}

impl Bridge {
    /// Starts a task relaying `a`'s media to `b` and `b`'s to `a`.
    /// Must be called inside a tokio runtime.
    pub fn start(a: Leg, b: Leg) -> Bridge {
        let ab = Path::new(a.params(), b.params());
        let ba = Path::new(b.params(), a.params());
        let transcoding = ab.is_transcoding() || ba.is_transcoding();
        let events = [a.params(), b.params()].map(|p| p.send_event_payload_type.is_some());
        let (control, digits) = mpsc::channel(DIGIT_QUEUE);
        let sides = Sides {
            a,
            b,
            ab,
            ba,
            queue: VecDeque::new(),
            sending: None,
        };
        // Boxed: a task's future that took them by value would keep room
        // for the legs twice (arguments and locals).
        let task = tokio::spawn(run(Box::new(sides), digits));
        Bridge {
            control,
            task,
            transcoding,
            events,
        }
    }

    /// Whether leg `end` negotiated RFC 4733 telephone-events, so that
    /// [`send_digit`](Self::send_digit) can reach it; a party without them
    /// gets its digits in signalling (SIP INFO) instead.
    pub fn takes_events(&self, end: End) -> bool {
        self.events[end as usize]
    }

    /// Sends `digit` to leg `to` as RFC 4733 events lasting `duration`
    /// (kept within 40 ms and 2 s), after any digits still being sent
    /// there. Returns whether it was queued: not when `to` did not
    /// negotiate telephone-events, when the bridge's task has not taken
    /// the 16 before it yet, or when the bridge has ended.
    pub fn send_digit(&self, to: End, digit: Digit, duration: Duration) -> bool {
        let ms = duration.clamp(DIGIT_MIN, DIGIT_MAX).as_millis();
        self.takes_events(to)
            && self
                .control
                .try_send(Injection {
                    to,
                    digit,
                    ms: u16::try_from(ms).unwrap_or(u16::MAX),
                })
                .is_ok()
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
        let Bridge { control, task, .. } = self;
        drop(control);
        let sides = task.await.map_err(|_| Error::TaskFailed)?;
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
    /// Digits waiting for the one being sent.
    queue: VecDeque<Injection>,
    /// The digit being sent, boxed: most bridges never send one.
    sending: Option<Box<Sending>>,
}

/// A digit going out as RFC 4733 events into one leg's stream.
#[derive(Debug)]
struct Sending {
    to: End,
    packets: Vec<EventPacket>,
    next: usize,
    started: Instant,
    clock_rate: u32,
    payload_type: u8,
    /// The stream's SSRC, the next sequence number, the event's timestamp.
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    /// When the next packet (or, all sent, the next digit) is due.
    due: Pin<Box<Sleep>>,
    /// When the silence after the last packet ends.
    gap_end: Option<Instant>,
}

impl Sending {
    /// Starts `injection` on `leg` now, continuing the stream it sends.
    fn start(injection: Injection, leg: &Leg, now: Instant) -> Option<Box<Sending>> {
        let params = leg.params();
        let payload_type = params.send_event_payload_type?;
        let clock_rate = params.codec.clock_rate();
        let (ssrc, sequence, timestamp) = leg
            .continuation(clock_rate, now)
            .unwrap_or_else(|| (rand::random(), rand::random(), rand::random()));
        let length = Duration::from_millis(u64::from(injection.ms));
        let samples = samples(length, clock_rate);
        let packets = DtmfSender::new(clock_rate)
            .packets(injection.digit, timestamp, samples)
            .ok()?;
        Some(Box::new(Sending {
            to: injection.to,
            packets,
            next: 0,
            started: now,
            clock_rate,
            payload_type,
            ssrc,
            sequence,
            timestamp,
            due: Box::pin(tokio::time::sleep_until(now.into())),
            gap_end: None,
        }))
    }

    /// Sends the packets due by `now` to `leg`, then sets `path` (the
    /// leg's audio) to continue the stream after them. True once the gap
    /// after the digit has passed too, so the next one may start.
    fn send_due(&mut self, leg: &mut Leg, path: &mut Path, now: Instant) -> bool {
        if self.playing() {
            let elapsed = samples(now.saturating_duration_since(self.started), self.clock_rate);
            while let Some(packet) = self.packets.get(self.next) {
                if packet.send_at > elapsed {
                    let at = self.started + duration(packet.send_at, self.clock_rate);
                    self.due.as_mut().reset(at.into());
                    return false;
                }
                let header = RtpHeader {
                    marker: packet.marker,
                    payload_type: self.payload_type,
                    sequence: self.sequence,
                    timestamp: self.timestamp,
                    ssrc: self.ssrc,
                };
                if let Ok(bytes) = PacketBuilder::new(header)
                    .payload(&packet.payload())
                    .build()
                {
                    leg.send_rtp(&bytes);
                }
                self.sequence = self.sequence.wrapping_add(1);
                self.next += 1;
            }
            // The same SSRC and numbering, the timestamp moved on by the
            // time the digit took.
            let elapsed = samples(now.saturating_duration_since(self.started), self.clock_rate);
            let resume = (
                self.ssrc,
                self.sequence,
                self.timestamp.wrapping_add(elapsed),
            );
            path.continue_at(resume, self.clock_rate);
        }
        let end = now.max(self.started) + DIGIT_GAP;
        let end = self.gap_end.get_or_insert(end);
        if now < *end {
            self.due.as_mut().reset((*end).into());
            return false;
        }
        true
    }

    /// Whether packets of the digit are still to go (the leg's audio
    /// waits meanwhile).
    fn playing(&self) -> bool {
        self.next < self.packets.len()
    }
}

/// `d` in samples at `clock_rate` Hz.
fn samples(d: Duration, clock_rate: u32) -> u32 {
    u32::try_from(d.as_micros() * u128::from(clock_rate) / 1_000_000).unwrap_or(u32::MAX)
}

/// `n` samples at `clock_rate` Hz as a duration.
fn duration(n: u32, clock_rate: u32) -> Duration {
    Duration::from_micros(u64::from(n) * 1_000_000 / u64::from(clock_rate.max(1)))
}

/// Returns the sides boxed: a task keeps room for its output from the
/// start, and two legs are over a kilobyte.
async fn run(mut sides: Box<Sides>, mut control: mpsc::Receiver<Injection>) -> Box<Sides> {
    enum From {
        A,
        B,
        Digit(Injection),
        Due,
        Stop,
    }
    // Which leg is looked at first, alternating, so a busy one cannot
    // starve the other.
    let mut a_first = true;
    loop {
        let Sides {
            a,
            b,
            ab,
            ba,
            queue,
            sending,
        } = &mut *sides;
        // A dropped `Bridge` (or `stop`) ends the loop. The legs are
        // polled in place: their wakers live in their sockets, so a quiet
        // bridge's task holds no buffer and no per-leg future.
        let from = std::future::poll_fn(|cx| {
            match control.poll_recv(cx) {
                Poll::Ready(Some(injection)) => return Poll::Ready(From::Digit(injection)),
                Poll::Ready(None) => return Poll::Ready(From::Stop),
                Poll::Pending => {}
            }
            if let Some(s) = sending
                && s.due.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(From::Due);
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
        // While a digit goes to a leg, the audio towards it pauses.
        let quiet = sending.as_ref().filter(|s| s.playing()).map(|s| s.to);
        match from {
            From::Stop => break,
            From::A => relay(a, b, ab, &mut buf, now, quiet == Some(End::B)),
            From::B => relay(b, a, ba, &mut buf, now, quiet == Some(End::A)),
            From::Digit(injection) => {
                if queue.len() < DIGIT_QUEUE {
                    queue.push_back(injection);
                }
            }
            From::Due => {}
        }
        // The digit being sent, then the next one waiting.
        loop {
            if let Some(s) = sending {
                let (leg, path) = match s.to {
                    End::A => (&mut *a, &mut *ba),
                    End::B => (&mut *b, &mut *ab),
                };
                if !s.send_due(leg, path, now) {
                    break;
                }
                *sending = None;
            }
            let Some(next) = queue.pop_front() else {
                break;
            };
            let leg = match next.to {
                End::A => &*a,
                End::B => &*b,
            };
            *sending = Sending::start(next, leg, now);
        }
    }
    sides
}

/// Forwards what `from` has waiting to `to`, a burst at most (then the
/// other direction gets its turn); read and dropped while `quiet` (a
/// digit is being sent to `to`).
fn relay(
    from: &mut Leg,
    to: &mut Leg,
    path: &mut Path,
    buf: &mut Buffer,
    now: Instant,
    quiet: bool,
) {
    for _ in 0..RELAY_BURST {
        let Some(rx) = from.try_recv(buf) else {
            return;
        };
        if !quiet && path.forward(&rx, &mut buf[..], to, now) == Outcome::Unwanted {
            from.count_dropped_payload_type();
        }
    }
}

/// Packets relayed in one direction before the other is looked at.
const RELAY_BURST: usize = 16;
