//! Audio codecs of the RTP/AVP profile (RFC 3551 §4.5): G.711 µ-law
//! (PCMU, §4.5.14) and A-law (PCMA), G.722 (§4.5.2), and the 8 ↔ 16 kHz
//! resampling the transcoding paths need.
//!
//! [`Encoder`] and [`Decoder`] hold per-stream state (G.722 is adaptive) and
//! work on 16-bit PCM at the codec's [`Codec::sample_rate`]; G.711 is also
//! available sample by sample in [`g711`].

pub mod g711;
pub mod g722;
pub mod resample;

use crate::error::CodecError;

/// The codecs Switchboard encodes and decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// G.711 µ-law, static payload type 0.
    Pcmu,
    /// G.711 A-law, static payload type 8.
    Pcma,
    /// G.722 at 64 kbit/s, static payload type 9.
    G722,
}

impl Codec {
    /// The codec with static payload type `pt` (RFC 3551 Table 4).
    pub fn from_payload_type(pt: u8) -> Option<Codec> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            9 => Some(Codec::G722),
            _ => None,
        }
    }

    /// The codec with SDP encoding name `name` (case-insensitive).
    pub fn from_name(name: &str) -> Option<Codec> {
        [Codec::Pcmu, Codec::Pcma, Codec::G722]
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name))
    }

    /// The static payload type.
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
            Codec::G722 => 9,
        }
    }

    /// The encoding name in `a=rtpmap`.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::G722 => "G722",
        }
    }

    /// The RTP timestamp clock rate: 8000 for all three (G.722's is 8000
    /// although it samples at 16 kHz, RFC 3551 §4.5.2).
    pub fn clock_rate(self) -> u32 {
        8000
    }

    /// The PCM sample rate the encoder takes and the decoder gives.
    pub fn sample_rate(self) -> u32 {
        match self {
            Codec::Pcmu | Codec::Pcma => 8000,
            Codec::G722 => 16_000,
        }
    }

    /// PCM samples in `ptime_ms` of audio.
    pub fn samples_per_packet(self, ptime_ms: u32) -> usize {
        (self.sample_rate() * ptime_ms / 1000) as usize
    }

    /// RTP timestamp advance for `ptime_ms` of audio.
    pub fn timestamp_step(self, ptime_ms: u32) -> u32 {
        self.clock_rate() * ptime_ms / 1000
    }
}

/// Encodes PCM at the codec's sample rate into RTP payloads.
#[derive(Debug)]
pub struct Encoder {
    codec: Codec,
    g722: Option<g722::G722Encoder>,
}

impl Encoder {
    /// An encoder with fresh state.
    pub fn new(codec: Codec) -> Self {
        Encoder {
            codec,
            g722: (codec == Codec::G722).then(g722::G722Encoder::new),
        }
    }

    /// The codec.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Appends the encoding of `pcm` to `out`.
    ///
    /// # Errors
    /// [`CodecError::OddSampleCount`] for G.722 with an odd number of samples.
    pub fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError> {
        match (self.codec, &mut self.g722) {
            (Codec::Pcmu, _) => g711::encode_ulaw(pcm, out),
            (Codec::Pcma, _) => g711::encode_alaw(pcm, out),
            (Codec::G722, Some(enc)) => enc.encode(pcm, out)?,
            (Codec::G722, None) => return Err(CodecError::Unsupported(9)),
        }
        Ok(())
    }
}

/// Decodes RTP payloads into PCM at the codec's sample rate.
#[derive(Debug)]
pub struct Decoder {
    codec: Codec,
    g722: Option<g722::G722Decoder>,
}

impl Decoder {
    /// A decoder with fresh state.
    pub fn new(codec: Codec) -> Self {
        Decoder {
            codec,
            g722: (codec == Codec::G722).then(g722::G722Decoder::new),
        }
    }

    /// The codec.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Appends the samples of `payload` to `out`.
    ///
    /// # Errors
    /// [`CodecError`] if the G.722 decoder fails (it does not on any input
    /// the tests have found).
    pub fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
        match (self.codec, &mut self.g722) {
            (Codec::Pcmu, _) => g711::decode_ulaw(payload, out),
            (Codec::Pcma, _) => g711::decode_alaw(payload, out),
            (Codec::G722, Some(dec)) => dec.decode(payload, out)?,
            (Codec::G722, None) => return Err(CodecError::Unsupported(9)),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_payload_types_and_names() {
        for c in [Codec::Pcmu, Codec::Pcma, Codec::G722] {
            assert_eq!(Codec::from_payload_type(c.payload_type()), Some(c));
            assert_eq!(Codec::from_name(&c.name().to_lowercase()), Some(c));
            assert_eq!(c.clock_rate(), 8000);
        }
        assert_eq!(Codec::from_payload_type(18), None);
        assert_eq!(Codec::from_name("opus"), None);
        assert_eq!(Codec::G722.samples_per_packet(20), 320);
        assert_eq!(Codec::G722.timestamp_step(20), 160);
        assert_eq!(Codec::Pcma.samples_per_packet(20), 160);
    }

    #[test]
    fn g711_encoders_and_decoders_round_trip_a_packet() {
        let pcm: Vec<i16> = (0..160).map(|i| (i * 200 - 16_000) as i16).collect();
        for c in [Codec::Pcmu, Codec::Pcma] {
            let mut payload = Vec::new();
            Encoder::new(c).encode(&pcm, &mut payload).unwrap();
            assert_eq!(payload.len(), 160);
            let mut back = Vec::new();
            Decoder::new(c).decode(&payload, &mut back).unwrap();
            for (a, b) in pcm.iter().zip(&back) {
                assert!(
                    (i32::from(*a) - i32::from(*b)).abs() <= 520,
                    "{c:?} {a} {b}"
                );
            }
        }
    }

    #[test]
    fn g722_through_the_codec_api() {
        let mut enc = Encoder::new(Codec::G722);
        assert_eq!(enc.codec(), Codec::G722);
        let mut payload = Vec::new();
        enc.encode(&[0; 320], &mut payload).unwrap();
        assert_eq!(payload.len(), 160);
        assert_eq!(
            enc.encode(&[0; 3], &mut payload),
            Err(CodecError::OddSampleCount(3))
        );
        let mut dec = Decoder::new(Codec::G722);
        let mut pcm = Vec::new();
        dec.decode(&payload, &mut pcm).unwrap();
        assert_eq!(pcm.len(), 320);
        assert_eq!(dec.codec(), Codec::G722);
    }
}
