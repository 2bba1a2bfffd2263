//! One direction of media between legs: payload type mapping, SSRC /
//! sequence / timestamp continuity (RFC 3550 §5.1, A.1, via
//! [`rtp::Rewriter`]), and transcoding between the codecs of RFC 3551
//! §4.5 when the two legs' codecs differ.

use std::time::Instant;

use rtp::codec::g711;
use rtp::codec::resample::{Downsampler, Upsampler};
use rtp::packet::write_header_fields;
use rtp::{Codec, CodecError, Decoder, Encoder, PacketBuilder, Rewriter, RtpPacket};

use crate::leg::{Leg, PT_COMFORT_NOISE, PayloadKind, Received, StreamParams};

/// What happened to a packet offered to a [`Path`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Handed to the destination leg (which counts whether it went out).
    Sent,
    /// The destination did not negotiate the payload (for example
    /// telephone-event), or it could not be transcoded.
    Unwanted,
    /// Older than the start of its source: it would repeat a sequence
    /// number already sent.
    Late,
}

/// Packets from one leg to another (or back to the same leg).
#[derive(Debug)]
pub(crate) struct Path {
    /// Made on the first packet: with `own` when set, else continuing the
    /// first source's own numbers, so its packets go out as they came.
    rewriter: Option<Rewriter>,
    own: Option<(u32, u16, u32)>,
    /// Boxed: most paths relay, and a codec's state is large.
    transcoder: Option<Box<Transcoder>>,
    out: Vec<u8>,
}

impl Path {
    /// A path from a leg with `from` to one with `to`: relays when the
    /// codecs agree, transcodes when they do not.
    pub(crate) fn new(from: StreamParams, to: StreamParams) -> Path {
        Path {
            rewriter: None,
            own: None,
            transcoder: (from.codec != to.codec)
                .then(|| Box::new(Transcoder::new(from.codec, to.codec))),
            out: Vec::new(),
        }
    }

    /// Sends as a new stream of our own (random SSRC, sequence number and
    /// timestamp, RFC 3550 §5.1) rather than continuing the first source.
    pub(crate) fn with_own_ssrc(mut self) -> Path {
        self.own = Some((rand::random(), rand::random(), rand::random()));
        self
    }

    /// The next packets continue the stream `(ssrc, sequence, timestamp)`
    /// at `clock_rate` (after packets sent into it from elsewhere: a
    /// digit's events), starting a new source there.
    pub(crate) fn continue_at(&mut self, (ssrc, seq, ts): (u32, u16, u32), clock_rate: u32) {
        self.rewriter = Some(Rewriter::new(ssrc, clock_rate, seq, ts));
    }

    /// Whether the path transcodes.
    pub(crate) fn is_transcoding(&self) -> bool {
        self.transcoder.is_some()
    }

    /// Forwards the packet `rx` (in `buf`, which may be overwritten) to `to`.
    pub(crate) fn forward(
        &mut self,
        rx: &Received,
        buf: &mut [u8],
        to: &mut Leg,
        now: Instant,
    ) -> Outcome {
        let params = to.params();
        let payload_type = match rx.kind {
            PayloadKind::Audio => params.send_payload_type,
            PayloadKind::Event => match params.send_event_payload_type {
                Some(pt) => pt,
                None => return Outcome::Unwanted,
            },
            _ => PT_COMFORT_NOISE,
        };
        let clock_rate = params.codec.clock_rate();
        let header = &rx.header;
        // The leg's stream goes on where its last sender left it (after a
        // prompt, an echo, an earlier bridge); a fresh leg gets our own
        // stream, or the first source's numbers for an untouched relay.
        let own = self.own;
        let rewriter =
            self.rewriter
                .get_or_insert_with(|| match to.continuation(clock_rate, now).or(own) {
                    Some((ssrc, seq, ts)) => Rewriter::new(ssrc, clock_rate, seq, ts),
                    None => {
                        Rewriter::new(header.ssrc, clock_rate, header.sequence, header.timestamp)
                    }
                });
        let Some(mut out) = rewriter.rewrite(header, now) else {
            return Outcome::Late;
        };
        out.payload_type = payload_type;
        let Some(data) = buf.get_mut(..rx.len) else {
            return Outcome::Unwanted;
        };
        match (&mut self.transcoder, rx.kind) {
            (Some(transcoder), PayloadKind::Audio) => {
                let Ok(packet) = RtpPacket::parse(data) else {
                    return Outcome::Unwanted;
                };
                let Ok(payload) = transcoder.convert(packet.payload()) else {
                    return Outcome::Unwanted;
                };
                let builder = PacketBuilder::new(out).payload(payload);
                let Ok(len) = builder.packet_len() else {
                    return Outcome::Unwanted;
                };
                self.out.resize(len, 0);
                if builder.build_into(&mut self.out).is_err() {
                    return Outcome::Unwanted;
                }
                to.send_rtp(&self.out);
            }
            _ => {
                // The leg parsed it as RTP version 2, so the header is there.
                if write_header_fields(data, &out).is_err() {
                    return Outcome::Unwanted;
                }
                data[1] = (data[1] & 0x80) | (payload_type & 0x7F);
                to.send_rtp(data);
            }
        }
        Outcome::Sent
    }
}

/// Decode, resample, encode; G.711 µ-law ↔ A-law by table, sample by
/// sample.
#[derive(Debug)]
struct Transcoder {
    from: Codec,
    to: Codec,
    decoder: Decoder,
    encoder: Encoder,
    up: Upsampler,
    down: Downsampler,
    pcm: Vec<i16>,
    resampled: Vec<i16>,
    payload: Vec<u8>,
}

impl Transcoder {
    fn new(from: Codec, to: Codec) -> Transcoder {
        Transcoder {
            from,
            to,
            decoder: Decoder::new(from),
            encoder: Encoder::new(to),
            up: Upsampler::new(),
            down: Downsampler::new(),
            pcm: Vec::new(),
            resampled: Vec::new(),
            payload: Vec::new(),
        }
    }

    fn convert(&mut self, input: &[u8]) -> Result<&[u8], CodecError> {
        self.payload.clear();
        match (self.from, self.to) {
            (Codec::Pcmu, Codec::Pcma) => {
                self.payload
                    .extend(input.iter().map(|&c| g711::ulaw_to_alaw(c)));
                return Ok(&self.payload);
            }
            (Codec::Pcma, Codec::Pcmu) => {
                self.payload
                    .extend(input.iter().map(|&c| g711::alaw_to_ulaw(c)));
                return Ok(&self.payload);
            }
            _ => {}
        }
        self.pcm.clear();
        self.decoder.decode(input, &mut self.pcm)?;
        let samples = match (self.from.sample_rate(), self.to.sample_rate()) {
            (8000, 16_000) => {
                self.resampled.clear();
                self.up.process(&self.pcm, &mut self.resampled);
                &self.resampled
            }
            (16_000, 8000) => {
                self.resampled.clear();
                self.down.process(&self.pcm, &mut self.resampled);
                &self.resampled
            }
            _ => &self.pcm,
        };
        self.encoder.encode(samples, &mut self.payload)?;
        Ok(&self.payload)
    }
}
