//! RFC 4733 telephone-events (§2.3 payload format, §2.5 procedures): the
//! 4-byte event payload, a receiver that turns event packets into DTMF
//! digits exactly once each, and a sender that turns a digit into its packet
//! sequence.

use std::fmt;

use crate::error::EventError;
use crate::packet::RtpHeader;

/// Largest volume (−63 dBm0) the 6-bit field holds.
const MAX_VOLUME: u8 = 63;
/// A segment of a long event ends at this duration (§2.5.1.3); an event this
/// long continues under a new timestamp.
const MAX_SEGMENT: u16 = 0xFFFF;
/// Timestamps of this many past events are remembered to drop their late
/// retransmissions.
const RECENT: usize = 8;

/// One telephone-event payload (§2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TelephoneEvent {
    /// The event code (0–15 are the DTMF digits, §3.2).
    pub event: u8,
    /// The E bit: this packet ends the event.
    pub end: bool,
    /// Power level as −dBm0, 0–63.
    pub volume: u8,
    /// Duration so far, in timestamp units.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Parses the first event of a payload (a redundant RFC 2198 payload is
    /// not expected here; trailing bytes are ignored).
    ///
    /// # Errors
    /// [`EventError::TooShort`] for fewer than 4 bytes.
    pub fn parse(payload: &[u8]) -> Result<Self, EventError> {
        let [event, flags, d0, d1, ..] = *payload else {
            return Err(EventError::TooShort(payload.len()));
        };
        Ok(TelephoneEvent {
            event,
            end: flags & 0x80 != 0,
            // The R bit (0x40) is reserved and ignored on receipt.
            volume: flags & 0x3F,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }

    /// The 4-byte payload.
    ///
    /// # Errors
    /// [`EventError::Volume`] for a volume above 63.
    pub fn to_bytes(&self) -> Result<[u8; 4], EventError> {
        if self.volume > MAX_VOLUME {
            return Err(EventError::Volume(self.volume));
        }
        let [d0, d1] = self.duration.to_be_bytes();
        Ok([
            self.event,
            self.volume | if self.end { 0x80 } else { 0 },
            d0,
            d1,
        ])
    }

    /// The DTMF digit this event is, if it is one.
    pub fn digit(&self) -> Option<Digit> {
        Digit::from_event(self.event)
    }
}

/// A DTMF digit: `0`–`9`, `*`, `#`, `A`–`D` (RFC 4733 §3.2 events 0–15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digit(u8);

const DIGITS: &[u8; 16] = b"0123456789*#ABCD";

impl Digit {
    /// The digit for event code `event`, if it is 0–15.
    pub fn from_event(event: u8) -> Option<Digit> {
        (event < 16).then_some(Digit(event))
    }

    /// The digit written as `c` (`a`–`d` are accepted as `A`–`D`).
    ///
    /// # Errors
    /// [`EventError::NotADigit`] for any other character.
    pub fn from_char(c: char) -> Result<Digit, EventError> {
        let upper = c.to_ascii_uppercase();
        DIGITS
            .iter()
            .position(|&d| char::from(d) == upper)
            // position < 16.
            .map(|i| Digit(i as u8))
            .ok_or(EventError::NotADigit(c))
    }

    /// The event code, 0–15.
    pub fn event(self) -> u8 {
        self.0
    }

    /// The digit as a character.
    pub fn as_char(self) -> char {
        char::from(DIGITS[usize::from(self.0 & 0x0F)])
    }
}

impl fmt::Display for Digit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_char())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Current {
    ssrc: u32,
    timestamp: u32,
    event: u8,
    ended: bool,
    duration: u16,
}

/// Turns a stream of telephone-event packets into digits, each once (§2.5.2).
///
/// An event is known by its SSRC and RTP timestamp: the start, the updates
/// and the (usually three) end packets share the timestamp, so only the
/// first packet seen of an event yields its digit, even when the start
/// packet was lost. A long event that continues in a new segment (§2.5.1.3)
/// is not a new digit.
#[derive(Debug, Clone, Default)]
pub struct DtmfReceiver {
    current: Option<Current>,
    recent: [Option<(u32, u32)>; RECENT],
    next_recent: usize,
}

impl DtmfReceiver {
    /// A receiver that has seen no events.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one telephone-event packet; returns the digit when this packet
    /// is the first seen of a new DTMF event.
    ///
    /// # Errors
    /// [`EventError::TooShort`] for a payload that is not a telephone-event.
    pub fn on_packet(
        &mut self,
        header: &RtpHeader,
        payload: &[u8],
    ) -> Result<Option<Digit>, EventError> {
        let ev = TelephoneEvent::parse(payload)?;
        let key = (header.ssrc, header.timestamp);
        if let Some(cur) = &mut self.current
            && (cur.ssrc, cur.timestamp) == key
        {
            cur.ended |= ev.end;
            cur.duration = cur.duration.max(ev.duration);
            return Ok(None);
        }
        if self.recent.contains(&Some(key)) {
            return Ok(None);
        }
        let continues = self.current.is_some_and(|cur| {
            let advance = header.timestamp.wrapping_sub(cur.timestamp);
            cur.ssrc == header.ssrc
                && !cur.ended
                && !header.marker
                && cur.event == ev.event
                && cur.duration >= MAX_SEGMENT - 0x1000
                && advance > 0
                && advance <= u32::from(MAX_SEGMENT) + 1
        });
        if let Some(cur) = self.current {
            self.recent[self.next_recent] = Some((cur.ssrc, cur.timestamp));
            self.next_recent = (self.next_recent + 1) % RECENT;
        }
        self.current = Some(Current {
            ssrc: header.ssrc,
            timestamp: header.timestamp,
            event: ev.event,
            ended: ev.end,
            duration: ev.duration,
        });
        Ok(if continues { None } else { ev.digit() })
    }
}

/// One packet of a digit's event sequence, for the caller to send
/// `send_at` samples after the first with its own sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPacket {
    /// When to send it, in samples after the start packet.
    pub send_at: u32,
    /// The marker bit: set on the start packet only (§2.5.1.1).
    pub marker: bool,
    /// The RTP timestamp: the event's start, the same for every packet.
    pub timestamp: u32,
    /// The payload fields.
    pub event: TelephoneEvent,
}

impl EventPacket {
    /// The 4-byte payload.
    pub fn payload(&self) -> [u8; 4] {
        // The sender checked the volume when it was configured.
        self.event.to_bytes().unwrap_or([0; 4])
    }
}

/// Produces the packets of a DTMF digit (§2.5.1): a start packet with the
/// marker bit, an update every 50 ms worth of samples, and three end
/// packets 20 ms apart, all with the event's start timestamp.
#[derive(Debug, Clone)]
pub struct DtmfSender {
    update_interval: u32,
    end_spacing: u32,
    volume: u8,
}

impl DtmfSender {
    /// A sender for a `clock_rate` Hz stream, volume −10 dBm0.
    pub fn new(clock_rate: u32) -> Self {
        DtmfSender {
            update_interval: (clock_rate / 20).max(1),
            end_spacing: (clock_rate / 50).max(1),
            volume: 10,
        }
    }

    /// Sets the volume (0–63, as −dBm0).
    ///
    /// # Errors
    /// [`EventError::Volume`] above 63.
    pub fn with_volume(mut self, volume: u8) -> Result<Self, EventError> {
        if volume > MAX_VOLUME {
            return Err(EventError::Volume(volume));
        }
        self.volume = volume;
        Ok(self)
    }

    /// Sets the interval between updates, in samples.
    ///
    /// # Errors
    /// [`EventError::ZeroDuration`] for zero.
    pub fn with_update_interval(mut self, samples: u32) -> Result<Self, EventError> {
        if samples == 0 {
            return Err(EventError::ZeroDuration);
        }
        self.update_interval = samples;
        Ok(self)
    }

    /// The packets for `digit` starting at RTP `timestamp` and lasting
    /// `duration` samples (capped at one segment, 65535 samples).
    ///
    /// Packet `k` of the event goes out at `k` update intervals and says the
    /// event lasts through the next one (capped at `duration`), so a
    /// receiver playing the tone does not gap while waiting for the update.
    ///
    /// # Errors
    /// [`EventError::ZeroDuration`] for a zero duration.
    pub fn packets(
        &self,
        digit: Digit,
        timestamp: u32,
        duration: u32,
    ) -> Result<Vec<EventPacket>, EventError> {
        if duration == 0 {
            return Err(EventError::ZeroDuration);
        }
        let total = duration.min(u32::from(MAX_SEGMENT));
        let step = self.update_interval;
        let packet = |send_at: u32, marker: bool, end: bool, d: u32| EventPacket {
            send_at,
            marker,
            timestamp,
            event: TelephoneEvent {
                event: digit.event(),
                end,
                volume: self.volume,
                // d <= total <= 0xFFFF.
                duration: d.min(total) as u16,
            },
        };
        let mut out = Vec::new();
        let mut at = 0u32;
        while at < total {
            out.push(packet(at, at == 0, false, at.saturating_add(step)));
            at = at.saturating_add(step);
        }
        for i in 0..3 {
            out.push(packet(total + i * self.end_spacing, false, true, total));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(seq: u16, ts: u32, marker: bool) -> RtpHeader {
        RtpHeader {
            marker,
            payload_type: 101,
            sequence: seq,
            timestamp: ts,
            ssrc: 42,
        }
    }

    fn ev(event: u8, end: bool, duration: u16) -> [u8; 4] {
        TelephoneEvent {
            event,
            end,
            volume: 10,
            duration,
        }
        .to_bytes()
        .unwrap()
    }

    #[test]
    fn payload_round_trips_and_has_rfc_layout() {
        let e = TelephoneEvent {
            event: 9,
            end: true,
            volume: 10,
            duration: 0x0640,
        };
        let b = e.to_bytes().unwrap();
        assert_eq!(b, [9, 0x8A, 0x06, 0x40]);
        assert_eq!(TelephoneEvent::parse(&b), Ok(e));
        // The reserved bit is ignored; trailing bytes too.
        assert_eq!(TelephoneEvent::parse(&[9, 0xCA, 0x06, 0x40, 1, 2]), Ok(e));
        assert_eq!(e.digit(), Some(Digit::from_char('9').unwrap()));
    }

    #[test]
    fn payload_errors() {
        assert_eq!(
            TelephoneEvent::parse(&[1, 2, 3]),
            Err(EventError::TooShort(3))
        );
        assert_eq!(TelephoneEvent::parse(&[]), Err(EventError::TooShort(0)));
        let loud = TelephoneEvent {
            event: 1,
            end: false,
            volume: 64,
            duration: 0,
        };
        assert_eq!(loud.to_bytes(), Err(EventError::Volume(64)));
    }

    #[test]
    fn digits_map_to_events_0_to_15() {
        let all: String = (0..16)
            .map(|e| Digit::from_event(e).unwrap().as_char())
            .collect();
        assert_eq!(all, "0123456789*#ABCD");
        for (i, c) in "0123456789*#ABCD".chars().enumerate() {
            assert_eq!(Digit::from_char(c).unwrap().event(), i as u8);
        }
        assert_eq!(Digit::from_char('d').unwrap().to_string(), "D");
        assert_eq!(Digit::from_event(16), None);
        assert_eq!(Digit::from_char('E'), Err(EventError::NotADigit('E')));
        assert_eq!(Digit::from_char('x'), Err(EventError::NotADigit('x')));
    }

    /// What a typical phone sends for one digit: start, updates, 3 ends.
    fn phone_digit(rx: &mut DtmfReceiver, seq: &mut u16, event: u8, ts: u32) -> Vec<Digit> {
        let mut got = Vec::new();
        let mut send = |marker, end, d| {
            *seq = seq.wrapping_add(1);
            if let Some(g) = rx
                .on_packet(&hdr(*seq, ts, marker), &ev(event, end, d))
                .unwrap()
            {
                got.push(g);
            }
        };
        send(true, false, 160);
        for d in [320, 480, 640, 800] {
            send(false, false, d);
        }
        for _ in 0..3 {
            send(false, true, 800);
        }
        got
    }

    #[test]
    fn each_digit_comes_out_once() {
        let mut rx = DtmfReceiver::new();
        let mut seq = 0;
        let mut digits = String::new();
        for (i, e) in [1u8, 2, 3, 3, 11, 10, 15].into_iter().enumerate() {
            for d in phone_digit(&mut rx, &mut seq, e, 8000 * i as u32) {
                digits.push(d.as_char());
            }
        }
        assert_eq!(digits, "1233#*D");
    }

    #[test]
    fn a_lost_start_still_gives_the_digit_once() {
        let mut rx = DtmfReceiver::new();
        assert_eq!(
            rx.on_packet(&hdr(2, 100, false), &ev(5, false, 320)),
            Ok(Digit::from_event(5))
        );
        assert_eq!(
            rx.on_packet(&hdr(3, 100, false), &ev(5, true, 480)),
            Ok(None)
        );
        // Only the end packets of the next digit arrive.
        assert_eq!(
            rx.on_packet(&hdr(9, 900, false), &ev(5, true, 480)),
            Ok(Digit::from_event(5))
        );
        assert_eq!(
            rx.on_packet(&hdr(10, 900, false), &ev(5, true, 480)),
            Ok(None)
        );
    }

    #[test]
    fn late_retransmissions_of_an_old_event_are_ignored() {
        let mut rx = DtmfReceiver::new();
        let mut seq = 0;
        phone_digit(&mut rx, &mut seq, 1, 1000);
        phone_digit(&mut rx, &mut seq, 2, 9000);
        // An end packet of the first digit, delayed in the network.
        assert_eq!(
            rx.on_packet(&hdr(3, 1000, false), &ev(1, true, 800)),
            Ok(None)
        );
    }

    #[test]
    fn non_dtmf_events_are_not_digits() {
        let mut rx = DtmfReceiver::new();
        // Event 32 (fax CED tone, RFC 4734).
        assert_eq!(
            rx.on_packet(&hdr(1, 0, true), &ev(32, false, 160)),
            Ok(None)
        );
        assert_eq!(
            rx.on_packet(&hdr(2, 8000, true), &ev(4, false, 160)),
            Ok(Digit::from_event(4))
        );
        assert_eq!(
            rx.on_packet(&hdr(3, 0, false), &[1, 2]),
            Err(EventError::TooShort(2))
        );
    }

    #[test]
    fn a_long_event_in_two_segments_is_one_digit() {
        let mut rx = DtmfReceiver::new();
        assert_eq!(
            rx.on_packet(&hdr(1, 0, true), &ev(0, false, 400)),
            Ok(Digit::from_event(0))
        );
        assert_eq!(
            rx.on_packet(&hdr(2, 0, false), &ev(0, false, 0xFFFF)),
            Ok(None)
        );
        // §2.5.1.3: the next segment starts at ts + 0xFFFF, no marker.
        assert_eq!(
            rx.on_packet(&hdr(3, 0xFFFF, false), &ev(0, false, 400)),
            Ok(None)
        );
        assert_eq!(
            rx.on_packet(&hdr(4, 0xFFFF, false), &ev(0, true, 800)),
            Ok(None)
        );
        // The same digit pressed again is a new digit.
        assert_eq!(
            rx.on_packet(&hdr(5, 0x2_0000, true), &ev(0, false, 400)),
            Ok(Digit::from_event(0))
        );
    }

    #[test]
    fn two_sources_do_not_share_events() {
        let mut rx = DtmfReceiver::new();
        let a = hdr(1, 500, true);
        let b = RtpHeader { ssrc: 43, ..a };
        assert_eq!(
            rx.on_packet(&a, &ev(7, false, 160)),
            Ok(Digit::from_event(7))
        );
        assert_eq!(
            rx.on_packet(&b, &ev(7, false, 160)),
            Ok(Digit::from_event(7))
        );
    }

    #[test]
    fn sender_makes_start_updates_and_three_ends() {
        let tx = DtmfSender::new(8000);
        let p = tx
            .packets(Digit::from_char('#').unwrap(), 1234, 1600)
            .unwrap();
        // 200 ms at 8 kHz: packets at 0, 50, 100, 150 ms, then 3 ends.
        let summary: Vec<_> = p
            .iter()
            .map(|p| (p.send_at, p.marker, p.event.end, p.event.duration))
            .collect();
        assert_eq!(
            summary,
            [
                (0, true, false, 400),
                (400, false, false, 800),
                (800, false, false, 1200),
                (1200, false, false, 1600),
                (1600, false, true, 1600),
                (1760, false, true, 1600),
                (1920, false, true, 1600),
            ]
        );
        assert!(p.iter().all(|p| p.timestamp == 1234 && p.event.event == 11));
        assert_eq!(p[0].payload(), [11, 10, 0x01, 0x90]);
    }

    #[test]
    fn sender_output_feeds_the_receiver_to_one_digit() {
        let tx = DtmfSender::new(8000)
            .with_volume(0)
            .unwrap()
            .with_update_interval(160)
            .unwrap();
        let mut rx = DtmfReceiver::new();
        let mut got = Vec::new();
        for (i, c) in "159*".chars().enumerate() {
            let ts = 10_000 * i as u32;
            for (n, p) in tx
                .packets(Digit::from_char(c).unwrap(), ts, 800)
                .unwrap()
                .iter()
                .enumerate()
            {
                let h = hdr(n as u16, p.timestamp, p.marker);
                got.extend(rx.on_packet(&h, &p.payload()).unwrap());
            }
        }
        let s: String = got.iter().map(|d| d.as_char()).collect();
        assert_eq!(s, "159*");
    }

    #[test]
    fn sender_limits() {
        let tx = DtmfSender::new(8000);
        let d = Digit::from_char('1').unwrap();
        assert_eq!(tx.packets(d, 0, 0), Err(EventError::ZeroDuration));
        let long = tx.packets(d, 0, 100_000).unwrap();
        assert_eq!(
            long.last().unwrap().event.duration,
            0xFFFF,
            "capped at one segment"
        );
        assert_eq!(long.len(), 164 + 3);
        assert_eq!(
            DtmfSender::new(8000).with_volume(64).err(),
            Some(EventError::Volume(64))
        );
        assert_eq!(
            DtmfSender::new(8000).with_update_interval(0).err(),
            Some(EventError::ZeroDuration)
        );
    }
}
