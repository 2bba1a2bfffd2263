//! G.722 (ITU-T G.722 sub-band ADPCM at 64 kbit/s; RTP payload type 9,
//! RFC 3551 §4.5.2) over the `audio-codec` crate's pure-Rust codec.
//!
//! PCM is 16 kHz; every byte of payload holds two samples' worth of codes,
//! and the RTP clock runs at 8 kHz.

use audio_codec::Encoder as _;
use audio_codec::g722 as lib;

use crate::error::CodecError;

/// A G.722 encoder (adaptive: one per stream).
pub struct G722Encoder(lib::G722Encoder);

impl std::fmt::Debug for G722Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("G722Encoder")
    }
}

impl Default for G722Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl G722Encoder {
    /// A 64 kbit/s encoder with fresh state.
    pub fn new() -> Self {
        G722Encoder(lib::G722Encoder::with_options(
            lib::Bitrate::Mode1_64000,
            false,
            false,
        ))
    }

    /// Appends the encoding of `pcm` (16 kHz, an even number of samples) to `out`.
    ///
    /// # Errors
    /// [`CodecError::OddSampleCount`] for an odd number of samples.
    pub fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError> {
        if !pcm.len().is_multiple_of(2) {
            return Err(CodecError::OddSampleCount(pcm.len()));
        }
        let start = out.len();
        out.resize(start + pcm.len() / 2 + 1, 0);
        let written = self
            .0
            .encode_into(pcm, &mut out[start..])
            .map_err(|_| CodecError::G722("encoder output buffer too small"));
        out.truncate(start + *written.as_ref().unwrap_or(&0));
        written.map(|_| ())
    }
}

/// A G.722 decoder (adaptive: one per stream).
pub struct G722Decoder(lib::G722Decoder);

impl std::fmt::Debug for G722Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("G722Decoder")
    }
}

impl Default for G722Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl G722Decoder {
    /// A 64 kbit/s decoder with fresh state.
    pub fn new() -> Self {
        // Note the argument order of the library: (rate, packed, eight_k).
        G722Decoder(lib::G722Decoder::with_options(
            lib::Bitrate::Mode1_64000,
            false,
            false,
        ))
    }

    /// Appends the 16 kHz samples of `payload` (two per byte) to `out`.
    ///
    /// # Errors
    /// [`CodecError::G722`] if the library reports a failure.
    pub fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
        let start = out.len();
        out.resize(start + payload.len() * 2, 0);
        let written = self
            .0
            .decode_frame_into(payload, &mut out[start..])
            .map_err(|_| CodecError::G722("decoder output buffer too small"));
        out.truncate(start + *written.as_ref().unwrap_or(&0));
        written.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, rate: f64, n: usize, amp: f64) -> Vec<i16> {
        (0..n)
            .map(|i| (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / rate).sin()) as i16)
            .collect()
    }

    /// Best signal-to-noise ratio over small delays (the codec's QMF delays
    /// its output by a few samples).
    fn snr_db(reference: &[i16], decoded: &[i16]) -> f64 {
        (0..40)
            .map(|delay| {
                let (mut sig, mut noise) = (0.0f64, 0.0f64);
                for (i, &r) in reference.iter().enumerate().skip(400) {
                    let Some(&d) = decoded.get(i + delay) else {
                        break;
                    };
                    sig += f64::from(r).powi(2);
                    noise += (f64::from(r) - f64::from(d)).powi(2);
                }
                10.0 * (sig / noise.max(1.0)).log10()
            })
            .fold(f64::MIN, f64::max)
    }

    #[test]
    fn speech_band_tones_survive_encoding() {
        for freq in [300.0, 1000.0, 3000.0, 6000.0] {
            let pcm = sine(freq, 16_000.0, 3200, 8000.0);
            let mut enc = G722Encoder::new();
            let mut payload = Vec::new();
            // 20 ms packets, as on the wire.
            for frame in pcm.chunks(320) {
                enc.encode(frame, &mut payload).unwrap();
            }
            assert_eq!(payload.len(), 1600);
            let mut dec = G722Decoder::new();
            let mut out = Vec::new();
            for packet in payload.chunks(160) {
                dec.decode(packet, &mut out).unwrap();
            }
            assert_eq!(out.len(), 3200);
            let snr = snr_db(&pcm, &out);
            assert!(snr > 20.0, "{freq} Hz: SNR {snr:.1} dB");
        }
    }

    #[test]
    fn odd_sample_counts_are_refused() {
        let mut out = vec![7];
        assert_eq!(
            G722Encoder::new().encode(&[1, 2, 3], &mut out),
            Err(CodecError::OddSampleCount(3))
        );
        assert_eq!(out, [7]);
    }

    #[test]
    fn any_bytes_decode() {
        let mut dec = G722Decoder::default();
        let garbage: Vec<u8> = (0..=255).collect();
        let mut out = Vec::new();
        dec.decode(&garbage, &mut out).unwrap();
        assert_eq!(out.len(), 512);
        dec.decode(&[], &mut out).unwrap();
        assert_eq!(out.len(), 512);
        assert_eq!(format!("{dec:?}"), "G722Decoder");
        assert_eq!(format!("{:?}", G722Encoder::default()), "G722Encoder");
    }
}
