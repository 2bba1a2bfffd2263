//! RTCP packets (RFC 3550 §6.4–§6.6, validity checks of A.2): sender and
//! receiver reports with report blocks, SDES (CNAME), BYE, and compound
//! packets; other types (APP, RFC 4585 feedback) are kept as opaque bodies.
//!
//! Parsing does not insist that a compound starts with SR/RR (RFC 5506
//! reduced-size RTCP does not), but it does check every length, count and
//! padding field, so a datagram either parses completely or gives an error.

mod stats;

pub use stats::{ReceiverStats, SenderStats, ntp_middle32, ntp_timestamp, round_trip_time};

use crate::error::RtcpError;

/// Sender report (§6.4.1).
pub const PT_SR: u8 = 200;
/// Receiver report (§6.4.2).
pub const PT_RR: u8 = 201;
/// Source description (§6.5).
pub const PT_SDES: u8 = 202;
/// Goodbye (§6.6).
pub const PT_BYE: u8 = 203;
/// Application-defined (§6.7).
pub const PT_APP: u8 = 204;

/// SDES item type of CNAME (§6.5.1).
pub const SDES_CNAME: u8 = 1;

const REPORT_BLOCK_LEN: usize = 24;
const SENDER_INFO_LEN: usize = 20;
/// Largest value of a 5-bit count field.
const MAX_COUNT: usize = 31;

/// One reception report block (§6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// The source this block reports on.
    pub ssrc: u32,
    /// Fraction of packets lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Packets lost since reception began (24-bit signed; duplicates can make it negative).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received (cycles << 16 | max seq).
    pub highest_seq: u32,
    /// Interarrival jitter in timestamp units (A.8).
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR from this source (0 if none).
    pub last_sr: u32,
    /// Delay since that SR, in 1/65536 s (0 if none).
    pub delay_since_last_sr: u32,
}

/// A sender report (§6.4.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SenderReport {
    /// The sender's SSRC.
    pub ssrc: u32,
    /// Wall-clock time of this report, 64-bit NTP format.
    pub ntp_timestamp: u64,
    /// The same instant in the RTP timestamp clock.
    pub rtp_timestamp: u32,
    /// Packets sent since the start.
    pub packet_count: u32,
    /// Payload octets sent since the start.
    pub octet_count: u32,
    /// Reception reports (at most 31).
    pub reports: Vec<ReportBlock>,
}

/// A receiver report (§6.4.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReceiverReport {
    /// The reporter's SSRC.
    pub ssrc: u32,
    /// Reception reports (at most 31).
    pub reports: Vec<ReportBlock>,
}

/// One SDES item (§6.5): a type and up to 255 bytes of (UTF-8) text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesItem {
    /// Item type (1 CNAME, 2 NAME, ... 8 PRIV).
    pub kind: u8,
    /// The item's text, as sent.
    pub value: Vec<u8>,
}

/// The items of one source in an SDES packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesChunk {
    /// The source described.
    pub ssrc: u32,
    /// Its items, in order.
    pub items: Vec<SdesItem>,
}

impl SdesChunk {
    /// A chunk holding only a CNAME.
    pub fn cname(ssrc: u32, cname: &str) -> Self {
        SdesChunk {
            ssrc,
            items: vec![SdesItem {
                kind: SDES_CNAME,
                value: cname.as_bytes().to_vec(),
            }],
        }
    }

    /// The chunk's CNAME, when it has one that is UTF-8.
    pub fn cname_str(&self) -> Option<&str> {
        self.items
            .iter()
            .find(|i| i.kind == SDES_CNAME)
            .and_then(|i| std::str::from_utf8(&i.value).ok())
    }
}

/// A goodbye (§6.6).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bye {
    /// The sources leaving (at most 31).
    pub sources: Vec<u32>,
    /// Why, if said (at most 255 bytes).
    pub reason: Option<Vec<u8>>,
}

/// One packet of a compound RTCP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RtcpPacket {
    /// SR.
    SenderReport(SenderReport),
    /// RR.
    ReceiverReport(ReceiverReport),
    /// SDES (at most 31 chunks).
    SourceDescription(Vec<SdesChunk>),
    /// BYE.
    Bye(Bye),
    /// Any other type, kept as its header's count and its body (without padding).
    Other {
        /// The packet type.
        packet_type: u8,
        /// The 5-bit count / subtype field.
        count: u8,
        /// The body after the 4-byte header, whole 32-bit words.
        body: Vec<u8>,
    },
}

/// Parses a compound RTCP datagram into its packets.
///
/// # Errors
/// [`RtcpError`] when the datagram is empty or any packet in it has a bad
/// version, length, count, padding or SDES chunk.
pub fn parse_compound(data: &[u8]) -> Result<Vec<RtcpPacket>, RtcpError> {
    if data.is_empty() {
        return Err(RtcpError::TooShort { offset: 0, len: 0 });
    }
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < data.len() {
        let rest = &data[offset..];
        let [b0, pt, l0, l1, ..] = *rest else {
            return Err(RtcpError::TooShort {
                offset,
                len: rest.len(),
            });
        };
        let version = b0 >> 6;
        if version != 2 {
            return Err(RtcpError::BadVersion { offset, version });
        }
        let claimed = (usize::from(u16::from_be_bytes([l0, l1])) + 1) * 4;
        if claimed > rest.len() {
            return Err(RtcpError::LengthOverrun {
                offset,
                claimed,
                available: rest.len(),
            });
        }
        let mut body = &rest[4..claimed];
        if b0 & 0x20 != 0 {
            // Padding only on the last packet of a compound (A.2).
            let pad = body.last().copied().map_or(0, usize::from);
            if claimed != rest.len() || pad == 0 || pad > body.len() {
                return Err(RtcpError::BadPadding { offset });
            }
            body = &body[..body.len() - pad];
        }
        let count = usize::from(b0 & 0x1F);
        out.push(parse_one(pt, count, body, offset)?);
        offset += claimed;
    }
    Ok(out)
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn parse_one(pt: u8, count: usize, body: &[u8], offset: usize) -> Result<RtcpPacket, RtcpError> {
    let too_short = |kind| RtcpError::BodyTooShort {
        kind,
        offset,
        len: body.len(),
    };
    match pt {
        PT_SR => {
            if body.len() < 4 + SENDER_INFO_LEN + count * REPORT_BLOCK_LEN {
                return Err(too_short("SR"));
            }
            Ok(RtcpPacket::SenderReport(SenderReport {
                ssrc: be32(body, 0),
                ntp_timestamp: u64::from(be32(body, 4)) << 32 | u64::from(be32(body, 8)),
                rtp_timestamp: be32(body, 12),
                packet_count: be32(body, 16),
                octet_count: be32(body, 20),
                reports: report_blocks(&body[4 + SENDER_INFO_LEN..], count),
            }))
        }
        PT_RR => {
            if body.len() < 4 + count * REPORT_BLOCK_LEN {
                return Err(too_short("RR"));
            }
            Ok(RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc: be32(body, 0),
                reports: report_blocks(&body[4..], count),
            }))
        }
        PT_SDES => parse_sdes(count, body, offset).map(RtcpPacket::SourceDescription),
        PT_BYE => {
            if body.len() < 4 * count {
                return Err(too_short("BYE"));
            }
            let sources = (0..count).map(|i| be32(body, 4 * i)).collect();
            let rest = &body[4 * count..];
            let reason = match rest.split_first() {
                None => None,
                Some((&len, text)) => {
                    let len = usize::from(len);
                    if len > text.len() {
                        return Err(too_short("BYE"));
                    }
                    Some(text[..len].to_vec())
                }
            };
            Ok(RtcpPacket::Bye(Bye { sources, reason }))
        }
        _ => Ok(RtcpPacket::Other {
            packet_type: pt,
            // A 5-bit field: the cast cannot truncate.
            count: count as u8,
            body: body.to_vec(),
        }),
    }
}

fn report_blocks(b: &[u8], count: usize) -> Vec<ReportBlock> {
    b.chunks_exact(REPORT_BLOCK_LEN)
        .take(count)
        .map(|r| {
            let lost = be32(r, 4);
            ReportBlock {
                ssrc: be32(r, 0),
                fraction_lost: r[4],
                // Sign-extend the low 24 bits.
                cumulative_lost: ((lost << 8) as i32) >> 8,
                highest_seq: be32(r, 8),
                jitter: be32(r, 12),
                last_sr: be32(r, 16),
                delay_since_last_sr: be32(r, 20),
            }
        })
        .collect()
}

fn parse_sdes(count: usize, body: &[u8], offset: usize) -> Result<Vec<SdesChunk>, RtcpError> {
    let unterminated = RtcpError::SdesUnterminated { offset };
    let mut chunks = Vec::with_capacity(count);
    let mut at = 0;
    for _ in 0..count {
        if at + 4 > body.len() {
            return Err(RtcpError::BodyTooShort {
                kind: "SDES",
                offset,
                len: body.len(),
            });
        }
        let ssrc = be32(body, at);
        at += 4;
        let mut items = Vec::new();
        loop {
            let Some(&kind) = body.get(at) else {
                return Err(unterminated);
            };
            if kind == 0 {
                // The null item, then zeros up to the next 32-bit boundary.
                at = (at + 4) & !3;
                break;
            }
            let Some(&len) = body.get(at + 1) else {
                return Err(unterminated);
            };
            let start = at + 2;
            let end = start + usize::from(len);
            let Some(value) = body.get(start..end) else {
                return Err(unterminated);
            };
            items.push(SdesItem {
                kind,
                value: value.to_vec(),
            });
            at = end;
        }
        chunks.push(SdesChunk { ssrc, items });
    }
    Ok(chunks)
}

/// Builds a compound RTCP datagram from `packets`, in order.
///
/// # Errors
/// [`RtcpError`] when a packet has more than 31 blocks, sources or chunks,
/// text longer than 255 bytes, a cumulative-lost count beyond 24 bits, an
/// opaque body that is not whole words, or is longer than RTCP's 16-bit
/// length field allows.
pub fn build_compound(packets: &[RtcpPacket]) -> Result<Vec<u8>, RtcpError> {
    let mut out = Vec::new();
    for p in packets {
        p.write(&mut out)?;
    }
    Ok(out)
}

impl RtcpPacket {
    /// Appends this packet (header, body, zero padding to a 32-bit boundary) to `out`.
    ///
    /// # Errors
    /// As [`build_compound`]; `out` is left as it was on error.
    pub fn write(&self, out: &mut Vec<u8>) -> Result<(), RtcpError> {
        let start = out.len();
        let result = self.write_unchecked(out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn write_unchecked(&self, out: &mut Vec<u8>) -> Result<(), RtcpError> {
        let start = out.len();
        let (pt, count) = match self {
            RtcpPacket::SenderReport(sr) => {
                out.extend_from_slice(&[0; 4]);
                out.extend_from_slice(&sr.ssrc.to_be_bytes());
                out.extend_from_slice(&sr.ntp_timestamp.to_be_bytes());
                out.extend_from_slice(&sr.rtp_timestamp.to_be_bytes());
                out.extend_from_slice(&sr.packet_count.to_be_bytes());
                out.extend_from_slice(&sr.octet_count.to_be_bytes());
                write_blocks(&sr.reports, out)?;
                (PT_SR, sr.reports.len())
            }
            RtcpPacket::ReceiverReport(rr) => {
                out.extend_from_slice(&[0; 4]);
                out.extend_from_slice(&rr.ssrc.to_be_bytes());
                write_blocks(&rr.reports, out)?;
                (PT_RR, rr.reports.len())
            }
            RtcpPacket::SourceDescription(chunks) => {
                out.extend_from_slice(&[0; 4]);
                for c in chunks {
                    out.extend_from_slice(&c.ssrc.to_be_bytes());
                    for item in &c.items {
                        let len = u8::try_from(item.value.len())
                            .map_err(|_| RtcpError::TextTooLong(item.value.len()))?;
                        out.extend_from_slice(&[item.kind, len]);
                        out.extend_from_slice(&item.value);
                    }
                    // The null item, then zeros to the boundary: always 1–4 bytes.
                    out.push(0);
                    pad_to_word(out, start);
                }
                (PT_SDES, chunks.len())
            }
            RtcpPacket::Bye(bye) => {
                out.extend_from_slice(&[0; 4]);
                for s in &bye.sources {
                    out.extend_from_slice(&s.to_be_bytes());
                }
                if let Some(reason) = &bye.reason {
                    let len = u8::try_from(reason.len())
                        .map_err(|_| RtcpError::TextTooLong(reason.len()))?;
                    out.push(len);
                    out.extend_from_slice(reason);
                    pad_to_word(out, start);
                }
                (PT_BYE, bye.sources.len())
            }
            RtcpPacket::Other {
                packet_type,
                count,
                body,
            } => {
                if !body.len().is_multiple_of(4) {
                    return Err(RtcpError::NotAligned(body.len()));
                }
                out.extend_from_slice(&[0; 4]);
                out.extend_from_slice(body);
                (*packet_type, usize::from(*count))
            }
        };
        if count > MAX_COUNT {
            return Err(RtcpError::TooManyItems(count));
        }
        let len = out.len() - start;
        let words = u16::try_from(len / 4 - 1).map_err(|_| RtcpError::PacketTooLong(len))?;
        // count <= 31 was checked above.
        out[start] = 0x80 | count as u8;
        out[start + 1] = pt;
        out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
        Ok(())
    }
}

fn pad_to_word(out: &mut Vec<u8>, start: usize) {
    while !(out.len() - start).is_multiple_of(4) {
        out.push(0);
    }
}

fn write_blocks(blocks: &[ReportBlock], out: &mut Vec<u8>) -> Result<(), RtcpError> {
    for b in blocks {
        if !(-0x80_0000..=0x7F_FFFF).contains(&b.cumulative_lost) {
            return Err(RtcpError::LostOutOfRange(b.cumulative_lost));
        }
        out.extend_from_slice(&b.ssrc.to_be_bytes());
        let lost = (b.cumulative_lost as u32) & 0x00FF_FFFF;
        out.extend_from_slice(&(u32::from(b.fraction_lost) << 24 | lost).to_be_bytes());
        out.extend_from_slice(&b.highest_seq.to_be_bytes());
        out.extend_from_slice(&b.jitter.to_be_bytes());
        out.extend_from_slice(&b.last_sr.to_be_bytes());
        out.extend_from_slice(&b.delay_since_last_sr.to_be_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
