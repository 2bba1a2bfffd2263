//! Prompts: recorded announcements held in memory for the [`Player`],
//! loaded from WAV files (RIFF `WAVE`, linear PCM `fmt ` and `data`
//! chunks) of 16-bit mono samples at 8 kHz (the rate of G.711, RFC 3551
//! §4.5.14) or 16 kHz (G.722's sampling rate, RFC 3551 §4.5.2).
//!
//! Anything else is refused with a [`WavError`] saying what is wrong and
//! how to convert it, rather than played as noise: stereo, 8-bit or float
//! samples, other rates, a file cut short, and prompts longer than
//! [`MAX_PROMPT`] (a prompt is held in memory whole).
//!
//! [`Player`]: crate::Player

use std::io::{Cursor, Read};
use std::path::Path;
use std::time::Duration;

use crate::error::Error;

/// The longest prompt [`Prompt::load`] accepts.
pub const MAX_PROMPT: Duration = Duration::from_secs(10 * 60);

/// The largest WAV file [`Prompt::load`] reads: [`MAX_PROMPT`] at 16 kHz
/// plus room for other chunks (metadata).
const MAX_FILE_BYTES: u64 = 16_000 * 2 * 600 + 1024 * 1024;

/// The sample rates a prompt may have: the PCM rates of the codecs.
pub const PROMPT_RATES: [u32; 2] = [8000, 16_000];

/// What is wrong with a WAV file (or with samples given as a prompt).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WavError {
    /// There is no file at the path.
    #[error("no such file")]
    NotFound,
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Io(#[source] std::io::Error),
    /// The file does not start with a RIFF `WAVE` header.
    #[error("not a WAV file (no RIFF/WAVE header)")]
    NotWav,
    /// The header or chunks are ill-formed.
    #[error("malformed WAV file: {0}")]
    Malformed(&'static str),
    /// The samples are compressed or in a format other than PCM.
    #[error("not linear PCM (compressed WAV); convert with `sox in.wav -e signed -b 16 out.wav`")]
    NotPcm,
    /// More than one channel.
    #[error("{0} channels; prompts must be mono (sox in.wav -c 1 out.wav)")]
    Channels(u16),
    /// Integer samples of another width than 16 bits.
    #[error("{0}-bit samples; prompts must be 16-bit (sox in.wav -b 16 out.wav)")]
    Bits(u16),
    /// Floating-point samples.
    #[error(
        "floating-point samples; prompts must be 16-bit integers (sox in.wav -e signed -b 16 out.wav)"
    )]
    Float,
    /// A sample rate other than 8 or 16 kHz.
    #[error("sample rate {0} Hz; prompts must be 8000 or 16000 Hz (sox in.wav -r 8000 out.wav)")]
    Rate(u32),
    /// The data chunk announces more samples than the file holds.
    #[error("truncated: the data chunk announces {expected} samples, the file holds {found}")]
    Truncated {
        /// Samples the header announces.
        expected: u64,
        /// Samples actually there.
        found: u64,
    },
    /// A file larger than any acceptable prompt (not read).
    #[error(
        "{0} bytes; a prompt's WAV file holds at most {MAX_PROMPT:?} at 16 kHz ({MAX_FILE_BYTES} bytes)"
    )]
    TooLarge(u64),
    /// Longer than [`MAX_PROMPT`].
    #[error("{}s long; prompts may be at most {}s", .0.as_secs(), MAX_PROMPT.as_secs())]
    TooLong(Duration),
}

/// An announcement in memory: 16-bit mono PCM at 8 or 16 kHz. Shared
/// between calls as an `Arc<Prompt>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    sample_rate: u32,
    samples: Vec<i16>,
}

impl Prompt {
    /// Reads a WAV file: RIFF `WAVE`, 16-bit linear PCM, mono, 8000 or
    /// 16000 Hz, at most [`MAX_PROMPT`] long. Blocking IO: from async
    /// code, call it in `tokio::task::spawn_blocking`.
    ///
    /// # Errors
    /// [`Error::Wav`] naming `path` and saying what is wrong
    /// ([`WavError`]).
    pub fn load(path: &Path) -> Result<Prompt, Error> {
        let bad = |problem| Error::Wav {
            path: path.to_path_buf(),
            problem,
        };
        let bytes = read_file(path).map_err(bad)?;
        parse(&bytes).map_err(bad)
    }

    /// A prompt of `samples` at `sample_rate` Hz (made in code, or a
    /// [`Recording`](crate::Recording) played back).
    ///
    /// # Errors
    /// [`Error::Prompt`] with [`WavError::Rate`] for a rate other than
    /// 8000 or 16000 Hz, [`WavError::TooLong`] beyond [`MAX_PROMPT`].
    pub fn from_samples(sample_rate: u32, samples: Vec<i16>) -> Result<Prompt, Error> {
        check_rate_and_length(sample_rate, samples.len() as u64)?;
        Ok(Prompt {
            sample_rate,
            samples,
        })
    }

    /// The sample rate, 8000 or 16000 Hz.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// The samples.
    pub fn samples(&self) -> &[i16] {
        &self.samples
    }

    /// How long the prompt plays.
    pub fn duration(&self) -> Duration {
        samples_duration(self.samples.len(), self.sample_rate)
    }
}

/// The duration of `count` samples at `rate` Hz.
pub(crate) fn samples_duration(count: usize, rate: u32) -> Duration {
    let nanos = count as u128 * 1_000_000_000 / u128::from(rate.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

fn check_rate_and_length(rate: u32, samples: u64) -> Result<(), WavError> {
    if !PROMPT_RATES.contains(&rate) {
        return Err(WavError::Rate(rate));
    }
    let duration = samples_duration(usize::try_from(samples).unwrap_or(usize::MAX), rate);
    if duration > MAX_PROMPT {
        return Err(WavError::TooLong(duration));
    }
    Ok(())
}

impl From<WavError> for Error {
    fn from(problem: WavError) -> Self {
        Error::Prompt(problem)
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, WavError> {
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => WavError::NotFound,
        _ => WavError::Io(e),
    })?;
    if let Ok(meta) = file.metadata()
        && meta.len() > MAX_FILE_BYTES
    {
        return Err(WavError::TooLarge(meta.len()));
    }
    let mut bytes = Vec::new();
    // At most one byte more than the cap, should the file grow meanwhile.
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(WavError::Io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(WavError::TooLarge(bytes.len() as u64));
    }
    Ok(bytes)
}

/// A WAV file's contents as a prompt.
fn parse(bytes: &[u8]) -> Result<Prompt, WavError> {
    if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(WavError::NotWav);
    }
    // The bytes are in memory: a read error can only be their end.
    let reader = hound::WavReader::new(Cursor::new(bytes)).map_err(|e| match e {
        hound::Error::IoError(_) => WavError::Malformed("the file ends before its data chunk"),
        other => wav_error(other),
    })?;
    let spec = reader.spec();
    if spec.channels != 1 {
        return Err(WavError::Channels(spec.channels));
    }
    match spec.sample_format {
        hound::SampleFormat::Float => return Err(WavError::Float),
        hound::SampleFormat::Int if spec.bits_per_sample != 16 => {
            return Err(WavError::Bits(spec.bits_per_sample));
        }
        hound::SampleFormat::Int => {}
    }
    let expected = u64::from(reader.len());
    check_rate_and_length(spec.sample_rate, expected)?;
    let mut samples = Vec::with_capacity(reader.len() as usize);
    for sample in reader.into_samples::<i16>() {
        match sample {
            Ok(s) => samples.push(s),
            Err(hound::Error::IoError(_)) => {
                return Err(WavError::Truncated {
                    expected,
                    found: samples.len() as u64,
                });
            }
            Err(e) => return Err(wav_error(e)),
        }
    }
    Ok(Prompt {
        sample_rate: spec.sample_rate,
        samples,
    })
}

fn wav_error(e: hound::Error) -> WavError {
    match e {
        hound::Error::IoError(e) => WavError::Io(e),
        hound::Error::FormatError(what) => WavError::Malformed(what),
        hound::Error::Unsupported => WavError::NotPcm,
        hound::Error::InvalidSampleFormat => WavError::Float,
        hound::Error::TooWide | hound::Error::UnfinishedSample => {
            WavError::Malformed("sample width does not match the header")
        }
    }
}

/// Writes 16-bit mono PCM at `sample_rate` Hz as a WAV file, readable by
/// its owner only (0600: recordings are people's voices). A symlink at
/// `path` is refused, not followed: the file is written under a fresh name
/// beside it (created exclusively, so no link is followed there either) and
/// renamed over `path`.
pub(crate) fn write_wav(path: &Path, sample_rate: u32, samples: &[i16]) -> Result<(), Error> {
    let fail = |source: std::io::Error| Error::WriteWav {
        path: path.to_path_buf(),
        source,
    };
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(fail(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "is a symbolic link; not following it",
        )));
    }
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temp = path.with_file_name(format!(".{name}.{:08x}.tmp", rand::random::<u32>()));
    let write = || -> Result<(), hound::Error> {
        let file = private_file(&temp)?;
        let mut writer = hound::WavWriter::new(std::io::BufWriter::new(file), spec)?;
        let mut pcm = writer.get_i16_writer(u32::try_from(samples.len()).unwrap_or(u32::MAX));
        for &s in samples {
            pcm.write_sample(s);
        }
        pcm.flush()?;
        writer.finalize()
    };
    let written = write()
        .map_err(|e| match e {
            hound::Error::IoError(e) => e,
            other => std::io::Error::other(other.to_string()),
        })
        .and_then(|()| std::fs::rename(&temp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written.map_err(fail)
}

/// Creates `path` new (never an existing file or a link), mode 0600 on Unix.
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(spec: hound::WavSpec, n: usize) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
        for i in 0..n * usize::from(spec.channels) {
            match (spec.sample_format, spec.bits_per_sample) {
                (hound::SampleFormat::Float, _) => w.write_sample(i as f32 / 1000.0).unwrap(),
                (_, 8) => w.write_sample((i % 100) as i8).unwrap(),
                _ => w.write_sample(i as i16).unwrap(),
            }
        }
        w.finalize().unwrap();
        out.into_inner()
    }

    fn spec(channels: u16, rate: u32, bits: u16, float: bool) -> hound::WavSpec {
        hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: if float {
                hound::SampleFormat::Float
            } else {
                hound::SampleFormat::Int
            },
        }
    }

    #[test]
    fn a_good_file_parses() {
        let p = parse(&wav(spec(1, 8000, 16, false), 800)).unwrap();
        assert_eq!(p.sample_rate(), 8000);
        assert_eq!(p.samples().len(), 800);
        assert_eq!(p.samples()[5], 5);
        assert_eq!(p.duration(), Duration::from_millis(100));
        let p = parse(&wav(spec(1, 16_000, 16, false), 1600)).unwrap();
        assert_eq!(p.duration(), Duration::from_millis(100));
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        assert!(matches!(
            parse(b"hello world, not a wav"),
            Err(WavError::NotWav)
        ));
        assert!(matches!(parse(b"RIF"), Err(WavError::NotWav)));
        assert!(matches!(
            parse(&wav(spec(2, 8000, 16, false), 10)),
            Err(WavError::Channels(2))
        ));
        assert!(matches!(
            parse(&wav(spec(1, 8000, 8, false), 10)),
            Err(WavError::Bits(8))
        ));
        assert!(matches!(
            parse(&wav(spec(1, 8000, 32, true), 10)),
            Err(WavError::Float)
        ));
        assert!(matches!(
            parse(&wav(spec(1, 44_100, 16, false), 10)),
            Err(WavError::Rate(44_100))
        ));
        let good = wav(spec(1, 8000, 16, false), 100);
        assert!(matches!(
            parse(&good[..good.len() - 20]),
            Err(WavError::Truncated {
                expected: 100,
                found: 90
            })
        ));
        assert!(matches!(parse(&good[..30]), Err(WavError::Malformed(_))));
    }

    #[test]
    fn from_samples_checks_rate_and_length() {
        assert!(Prompt::from_samples(16_000, vec![0; 320]).is_ok());
        assert!(matches!(
            Prompt::from_samples(11_025, vec![]),
            Err(Error::Prompt(WavError::Rate(11_025)))
        ));
        assert!(matches!(
            Prompt::from_samples(8000, vec![0; 8000 * 601]),
            Err(Error::Prompt(WavError::TooLong(_)))
        ));
    }
}
