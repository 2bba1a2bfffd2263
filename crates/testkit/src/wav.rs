//! Reading the WAV files a recording test finds on disk (RIFF/WAVE with a
//! `fmt ` and a `data` chunk): 16-bit linear PCM, or 8-bit G.711 µ-law /
//! A-law (format tags 7 and 6), decoded to 16-bit samples.

use std::path::Path;

/// A decoded WAV file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wav {
    /// The `fmt ` format tag: 1 PCM, 6 A-law, 7 µ-law.
    pub format: u16,
    /// Channels.
    pub channels: u16,
    /// Samples per second (per channel).
    pub sample_rate: u32,
    /// Bits per sample as stored.
    pub bits_per_sample: u16,
    /// Every sample, interleaved when there are several channels.
    pub samples: Vec<i16>,
}

impl Wav {
    /// How long the audio lasts.
    pub fn duration(&self) -> std::time::Duration {
        let frames = self.samples.len() / usize::from(self.channels.max(1));
        std::time::Duration::from_secs_f64(frames as f64 / f64::from(self.sample_rate.max(1)))
    }

    /// Reads and decodes `path`.
    ///
    /// # Errors
    /// The file's IO error, or `InvalidData` naming what is wrong with it.
    pub fn read(path: &Path) -> std::io::Result<Wav> {
        let bytes = std::fs::read(path)?;
        Wav::parse(&bytes).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })
    }

    /// Decodes a WAV file's bytes.
    ///
    /// # Errors
    /// What is wrong with them.
    pub fn parse(bytes: &[u8]) -> Result<Wav, String> {
        if bytes.get(..4) != Some(b"RIFF") || bytes.get(8..12) != Some(b"WAVE") {
            return Err("not a RIFF/WAVE file".into());
        }
        let u16_at = |b: &[u8], i: usize| b.get(i..i + 2).map(|s| u16::from_le_bytes([s[0], s[1]]));
        let u32_at = |b: &[u8], i: usize| {
            b.get(i..i + 4)
                .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        };
        let mut fmt: Option<&[u8]> = None;
        let mut data: Option<&[u8]> = None;
        let mut at = 12;
        while let (Some(id), Some(len)) = (bytes.get(at..at + 4), u32_at(bytes, at + 4)) {
            let start = at + 8;
            let end = start.saturating_add(len as usize).min(bytes.len());
            let body = bytes.get(start..end).unwrap_or_default();
            match id {
                b"fmt " => fmt = Some(body),
                b"data" => data = Some(body),
                _ => {}
            }
            // Chunks are padded to an even length.
            at = end + (len as usize & 1);
        }
        let fmt = fmt.ok_or("no fmt chunk")?;
        let data = data.ok_or("no data chunk")?;
        let format = u16_at(fmt, 0).ok_or("short fmt chunk")?;
        let channels = u16_at(fmt, 2).ok_or("short fmt chunk")?;
        let sample_rate = u32_at(fmt, 4).ok_or("short fmt chunk")?;
        let bits_per_sample = u16_at(fmt, 14).ok_or("short fmt chunk")?;
        let mut samples = Vec::new();
        match (format, bits_per_sample) {
            (1, 16) => samples.extend(
                data.chunks_exact(2)
                    .map(|s| i16::from_le_bytes([s[0], s[1]])),
            ),
            (6, 8) => rtp::codec::g711::decode_alaw(data, &mut samples),
            (7, 8) => rtp::codec::g711::decode_ulaw(data, &mut samples),
            other => return Err(format!("unsupported format/bits {other:?}")),
        }
        Ok(Wav {
            format,
            channels,
            sample_rate,
            bits_per_sample,
            samples,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(format: u16, bits: u16, data: &[u8]) -> Vec<u8> {
        let mut out = b"RIFF".to_vec();
        out.extend(((36 + data.len()) as u32).to_le_bytes());
        out.extend(b"WAVEfmt ");
        out.extend(16u32.to_le_bytes());
        out.extend(format.to_le_bytes());
        out.extend(1u16.to_le_bytes());
        out.extend(8000u32.to_le_bytes());
        out.extend((8000 * u32::from(bits) / 8).to_le_bytes());
        out.extend((bits / 8).to_le_bytes());
        out.extend(bits.to_le_bytes());
        // An odd-length chunk the reader skips, padding included.
        out.extend(b"LIST");
        out.extend(3u32.to_le_bytes());
        out.extend(b"abc\0");
        out.extend(b"data");
        out.extend((data.len() as u32).to_le_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn pcm16_and_g711_files_decode() {
        let pcm: Vec<u8> = [1000i16, -1000, 0, 32767]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        let w = Wav::parse(&wav(1, 16, &pcm)).unwrap();
        assert_eq!(
            (w.channels, w.sample_rate, w.bits_per_sample),
            (1, 8000, 16)
        );
        assert_eq!(w.samples, vec![1000, -1000, 0, 32767]);
        let w = Wav::parse(&wav(7, 8, &[0xFF; 8000])).unwrap();
        assert_eq!(w.samples.len(), 8000);
        assert_eq!(w.duration(), std::time::Duration::from_secs(1));
        assert!(Wav::parse(&wav(6, 8, &[0xD5; 4])).is_ok());
        assert!(Wav::parse(&wav(3, 32, &[0; 4])).is_err());
        assert!(Wav::parse(b"RIFF....WAVE").is_err());
        assert!(Wav::parse(b"nonsense").is_err());
    }
}
