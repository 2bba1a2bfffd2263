//! RTP data packets (RFC 3550 §5.1): a checked, zero-copy view of a datagram
//! and a builder, both over `rtp-rs`'s `RtpReader` / `RtpPacketBuilder`.

use rtp_rs::{Pad, RtpPacketBuilder, RtpReader, RtpReaderError, Seq};

use crate::error::{BuildError, RtpError};

/// Length of the fixed RTP header (RFC 3550 §5.1).
pub const FIXED_HEADER_LEN: usize = 12;

/// The fixed-header fields a media engine reads and rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct RtpHeader {
    /// The marker bit (for audio, the first packet of a talkspurt; RFC 3551 §4.1).
    pub marker: bool,
    /// The payload type, 0–127.
    pub payload_type: u8,
    /// The 16-bit sequence number.
    pub sequence: u16,
    /// The media timestamp, in the payload format's clock.
    pub timestamp: u32,
    /// The synchronization source.
    pub ssrc: u32,
}

/// A parsed RTP packet borrowing its datagram.
///
/// [`RtpPacket::parse`] checks everything the accessors rely on, so none of
/// them can fail or panic afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    header: RtpHeader,
    csrc: &'a [u8],
    extension: Option<(u16, &'a [u8])>,
    payload: &'a [u8],
    padding: u8,
}

impl<'a> RtpPacket<'a> {
    /// Parses a datagram as RTP version 2.
    ///
    /// # Errors
    /// [`RtpError`] for a datagram shorter than the fixed header, a version
    /// other than 2, a CSRC list or header extension that runs past the end,
    /// or a padding count of zero or longer than the payload.
    pub fn parse(data: &'a [u8]) -> Result<Self, RtpError> {
        let reader = RtpReader::new(data).map_err(|e| match e {
            RtpReaderError::BufferTooShort(len) => RtpError::TooShort { len },
            RtpReaderError::UnsupportedVersion(v) => RtpError::BadVersion(v),
            // rtp-rs reports "padding flag set but no byte after the header"
            // as a truncated header one byte short of the datagram.
            RtpReaderError::HeadersTruncated { header_len, .. } if header_len <= data.len() => {
                RtpError::BadPadding(0)
            }
            RtpReaderError::HeadersTruncated { header_len, .. } => RtpError::HeaderTruncated {
                needed: header_len,
                len: data.len(),
            },
            RtpReaderError::PaddingLengthInvalid(p) => RtpError::BadPadding(p),
        })?;
        let csrc_end = FIXED_HEADER_LEN + 4 * usize::from(reader.csrc_count());
        let payload = reader.payload();
        Ok(RtpPacket {
            header: RtpHeader {
                marker: reader.mark(),
                payload_type: reader.payload_type(),
                sequence: reader.sequence_number().into(),
                timestamp: reader.timestamp(),
                ssrc: reader.ssrc(),
            },
            // RtpReader::new checked that the CSRC list fits.
            csrc: data.get(FIXED_HEADER_LEN..csrc_end).unwrap_or_default(),
            extension: reader.extension(),
            payload,
            padding: reader.padding().unwrap_or(0),
        })
    }

    /// The fixed-header fields.
    pub fn header(&self) -> RtpHeader {
        self.header
    }

    /// The contributing sources, in header order.
    pub fn csrcs(&self) -> impl Iterator<Item = u32> + 'a {
        self.csrc
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }

    /// The header extension's profile-defined id and data (RFC 3550 §5.3.1).
    pub fn extension(&self) -> Option<(u16, &'a [u8])> {
        self.extension
    }

    /// The payload, without header, extension or padding.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// Padding bytes at the end of the datagram (0 when the P bit is clear).
    pub fn padding(&self) -> u8 {
        self.padding
    }
}

/// True when a datagram on a muxed port is RTCP rather than RTP: its second
/// byte (RTCP's packet type) is 192–223 (RFC 5761 §4).
pub fn looks_like_rtcp(data: &[u8]) -> bool {
    matches!(data.get(1), Some(192..=223))
}

/// Builds RTP packets; the checks turn every field limit into a
/// [`BuildError`] before `rtp-rs` writes anything.
#[derive(Debug, Clone, Copy)]
pub struct PacketBuilder<'a> {
    header: RtpHeader,
    csrcs: &'a [u32],
    extension: Option<(u16, &'a [u8])>,
    pad_to: Option<u8>,
    payload: &'a [u8],
}

impl<'a> PacketBuilder<'a> {
    /// A packet with `header` and, until set, no CSRCs, extension, padding or payload.
    pub fn new(header: RtpHeader) -> Self {
        PacketBuilder {
            header,
            csrcs: &[],
            extension: None,
            pad_to: None,
            payload: &[],
        }
    }

    /// Sets the contributing sources (at most 15).
    pub fn csrcs(mut self, csrcs: &'a [u32]) -> Self {
        self.csrcs = csrcs;
        self
    }

    /// Sets a header extension (RFC 3550 §5.3.1): `data` must be whole 32-bit words.
    pub fn extension(mut self, id: u16, data: &'a [u8]) -> Self {
        self.extension = Some((id, data));
        self
    }

    /// Pads the packet to a multiple of `multiple` bytes (2–255), setting P when padding is added.
    pub fn pad_to(mut self, multiple: u8) -> Self {
        self.pad_to = Some(multiple);
        self
    }

    /// Sets the payload.
    pub fn payload(mut self, payload: &'a [u8]) -> Self {
        self.payload = payload;
        self
    }

    fn checked(&self) -> Result<RtpPacketBuilder<'a>, BuildError> {
        let h = self.header;
        if h.payload_type > 127 {
            return Err(BuildError::PayloadType(h.payload_type));
        }
        // rtp-rs's set_csrc would panic on more than 15.
        if self.csrcs.len() > 15 {
            return Err(BuildError::TooManyCsrcs(self.csrcs.len()));
        }
        let mut b = RtpPacketBuilder::new()
            .payload_type(h.payload_type)
            .marked(h.marker)
            .sequence(Seq::from(h.sequence))
            .timestamp(h.timestamp)
            .ssrc(h.ssrc)
            .set_csrc(self.csrcs)
            .payload(self.payload);
        if let Some((id, data)) = self.extension {
            if !data.len().is_multiple_of(4) {
                return Err(BuildError::ExtensionNotAligned(data.len()));
            }
            if data.len() > 0xFFFF {
                return Err(BuildError::ExtensionTooLong(data.len()));
            }
            b = b.extension(id, data);
        }
        if let Some(multiple) = self.pad_to {
            // Pad::round_to panics below 2.
            if multiple < 2 {
                return Err(BuildError::PaddingMultiple(multiple));
            }
            b = b.padded(Pad::round_to(multiple));
        }
        Ok(b)
    }

    /// The packet's length in bytes.
    ///
    /// # Errors
    /// A [`BuildError`] for a field out of range.
    pub fn packet_len(&self) -> Result<usize, BuildError> {
        Ok(self.checked()?.target_length())
    }

    /// Writes the packet into `out` and returns its length.
    ///
    /// # Errors
    /// A [`BuildError`] for a field out of range or an `out` too short.
    pub fn build_into(&self, out: &mut [u8]) -> Result<usize, BuildError> {
        let b = self.checked()?;
        let needed = b.target_length();
        if out.len() < needed {
            return Err(BuildError::BufferTooSmall {
                needed,
                len: out.len(),
            });
        }
        // Every field was checked above and `out` is long enough, which are
        // exactly the conditions of rtp-rs's build_into.
        b.build_into(out).map_err(|_| BuildError::BufferTooSmall {
            needed,
            len: out.len(),
        })
    }

    /// Builds the packet into a new buffer.
    ///
    /// # Errors
    /// A [`BuildError`] for a field out of range.
    pub fn build(&self) -> Result<Vec<u8>, BuildError> {
        let mut out = vec![0; self.packet_len()?];
        let n = self.build_into(&mut out)?;
        out.truncate(n);
        Ok(out)
    }
}

/// Overwrites the marker, sequence number, timestamp and SSRC of an RTP
/// datagram in place, leaving everything else untouched (the relay's fast
/// path).
///
/// # Errors
/// [`RtpError::TooShort`] or [`RtpError::BadVersion`] when `data` is not an
/// RTP header.
pub fn write_header_fields(data: &mut [u8], header: &RtpHeader) -> Result<(), RtpError> {
    let len = data.len();
    let Some(fixed) = data.get_mut(..FIXED_HEADER_LEN) else {
        return Err(RtpError::TooShort { len });
    };
    if fixed[0] >> 6 != 2 {
        return Err(RtpError::BadVersion(fixed[0] >> 6));
    }
    fixed[1] = (fixed[1] & 0x7F) | if header.marker { 0x80 } else { 0 };
    fixed[2..4].copy_from_slice(&header.sequence.to_be_bytes());
    fixed[4..8].copy_from_slice(&header.timestamp.to_be_bytes());
    fixed[8..12].copy_from_slice(&header.ssrc.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> RtpHeader {
        RtpHeader {
            marker: true,
            payload_type: 0,
            sequence: 0xBEEF,
            timestamp: 0x0102_0304,
            ssrc: 0xCAFE_BABE,
        }
    }

    #[test]
    fn parses_a_pcmu_packet_byte_by_byte() {
        let mut data = vec![0x80, 0x80, 0xBE, 0xEF, 1, 2, 3, 4, 0xCA, 0xFE, 0xBA, 0xBE];
        data.extend_from_slice(&[0xFF; 160]);
        let p = RtpPacket::parse(&data).unwrap();
        assert_eq!(p.header(), header());
        assert_eq!(p.payload().len(), 160);
        assert_eq!(p.padding(), 0);
        assert_eq!(p.csrcs().count(), 0);
        assert_eq!(p.extension(), None);
    }

    #[test]
    fn build_then_parse_gives_every_field_back() {
        let payload = [1u8, 2, 3, 4, 5];
        let csrcs = [7u32, 0xFFFF_FFFF];
        let ext = [9u8, 9, 9, 9, 8, 8, 8, 8];
        let bytes = PacketBuilder::new(header())
            .csrcs(&csrcs)
            .extension(0xBEDE, &ext)
            .pad_to(4)
            .payload(&payload)
            .build()
            .unwrap();
        assert_eq!(bytes.len() % 4, 0);
        let p = RtpPacket::parse(&bytes).unwrap();
        assert_eq!(p.header(), header());
        assert_eq!(p.csrcs().collect::<Vec<_>>(), csrcs);
        assert_eq!(p.extension(), Some((0xBEDE, &ext[..])));
        assert_eq!(p.payload(), payload);
        assert_eq!(p.padding(), 3);
    }

    #[test]
    fn build_into_a_short_buffer_is_an_error() {
        let b = PacketBuilder::new(header()).payload(&[0; 20]);
        assert_eq!(b.packet_len(), Ok(32));
        let mut out = [0u8; 31];
        assert_eq!(
            b.build_into(&mut out),
            Err(BuildError::BufferTooSmall {
                needed: 32,
                len: 31
            })
        );
        let mut out = [0u8; 40];
        assert_eq!(b.build_into(&mut out), Ok(32));
    }

    #[test]
    fn builder_rejects_fields_out_of_range() {
        let bad_pt = RtpHeader {
            payload_type: 128,
            ..header()
        };
        assert_eq!(
            PacketBuilder::new(bad_pt).build(),
            Err(BuildError::PayloadType(128))
        );
        let many = [0u32; 16];
        assert_eq!(
            PacketBuilder::new(header()).csrcs(&many).build(),
            Err(BuildError::TooManyCsrcs(16))
        );
        assert!(
            PacketBuilder::new(header())
                .csrcs(&many[..15])
                .build()
                .is_ok()
        );
        assert_eq!(
            PacketBuilder::new(header()).extension(1, &[0; 3]).build(),
            Err(BuildError::ExtensionNotAligned(3))
        );
        let long = vec![0u8; 0x1_0000];
        assert_eq!(
            PacketBuilder::new(header()).extension(1, &long).build(),
            Err(BuildError::ExtensionTooLong(0x1_0000))
        );
        for m in [0, 1] {
            assert_eq!(
                PacketBuilder::new(header()).pad_to(m).build(),
                Err(BuildError::PaddingMultiple(m))
            );
        }
    }

    #[test]
    fn garbage_is_a_typed_error() {
        assert_eq!(RtpPacket::parse(&[]), Err(RtpError::TooShort { len: 0 }));
        assert_eq!(
            RtpPacket::parse(&[0x80; 11]),
            Err(RtpError::TooShort { len: 11 })
        );
        let mut v1 = [0u8; 12];
        v1[0] = 0x40;
        assert_eq!(RtpPacket::parse(&v1), Err(RtpError::BadVersion(1)));
        // CC = 15 but no CSRCs follow.
        let mut cc = [0u8; 20];
        cc[0] = 0x8F;
        assert_eq!(
            RtpPacket::parse(&cc),
            Err(RtpError::HeaderTruncated {
                needed: 72,
                len: 20
            })
        );
        // X set, extension header missing.
        let mut x = [0u8; 14];
        x[0] = 0x90;
        assert_eq!(
            RtpPacket::parse(&x),
            Err(RtpError::HeaderTruncated {
                needed: 16,
                len: 14
            })
        );
        // X set, extension claims 0xFFFF words.
        let mut x = [0u8; 20];
        x[0] = 0x90;
        x[14] = 0xFF;
        x[15] = 0xFF;
        assert!(matches!(
            RtpPacket::parse(&x),
            Err(RtpError::HeaderTruncated { len: 20, .. })
        ));
    }

    #[test]
    fn bad_padding_is_an_error() {
        // P set, nothing after the header.
        let mut p = [0u8; 12];
        p[0] = 0xA0;
        assert_eq!(RtpPacket::parse(&p), Err(RtpError::BadPadding(0)));
        // P set, count zero.
        let mut p = [0u8; 16];
        p[0] = 0xA0;
        assert_eq!(RtpPacket::parse(&p), Err(RtpError::BadPadding(0)));
        // P set, count longer than what follows the header.
        p[15] = 5;
        assert_eq!(RtpPacket::parse(&p), Err(RtpError::BadPadding(5)));
        // P set, count exactly what follows: empty payload.
        p[15] = 4;
        let ok = RtpPacket::parse(&p).unwrap();
        assert_eq!(ok.payload(), &[] as &[u8]);
        assert_eq!(ok.padding(), 4);
    }

    #[test]
    fn header_fields_are_rewritten_in_place() {
        let payload = [5u8; 10];
        let mut bytes = PacketBuilder::new(header())
            .payload(&payload)
            .build()
            .unwrap();
        let new = RtpHeader {
            marker: false,
            payload_type: 0,
            sequence: 1,
            timestamp: 2,
            ssrc: 3,
        };
        write_header_fields(&mut bytes, &new).unwrap();
        let p = RtpPacket::parse(&bytes).unwrap();
        assert_eq!(p.header(), new);
        assert_eq!(p.payload(), payload);
        assert_eq!(
            write_header_fields(&mut [0x80; 5], &new),
            Err(RtpError::TooShort { len: 5 })
        );
        assert_eq!(
            write_header_fields(&mut [0u8; 12], &new),
            Err(RtpError::BadVersion(0))
        );
    }

    #[test]
    fn rtcp_is_told_from_rtp_by_its_packet_type() {
        assert!(looks_like_rtcp(&[0x80, 200, 0, 6]));
        assert!(looks_like_rtcp(&[0x81, 201, 0, 7]));
        assert!(!looks_like_rtcp(&[0x80, 0x00]));
        assert!(!looks_like_rtcp(&[0x80, 0x80 | 101]));
        assert!(!looks_like_rtcp(&[0x80]));
    }
}
