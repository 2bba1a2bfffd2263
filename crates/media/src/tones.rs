//! Call-progress tones made here rather than shipped as files: the
//! ringback a caller hears while a dial rings after the dialplan has
//! answered, in the cadence of the caller's country ([`ToneZone`]; the
//! frequencies and cadences are those of ITU-T E.180's national table).

use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use crate::prompt::Prompt;

/// Sample rate of the tones.
const RATE: u32 = 8000;

/// The country whose call-progress tones callers hear (`media.tone_zone`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[non_exhaustive]
pub enum ToneZone {
    /// North America: 440 + 480 Hz, 2 s on, 4 s off.
    #[default]
    Us,
    /// United Kingdom: 400 + 450 Hz, 0.4 on, 0.2 off, 0.4 on, 2 off.
    Uk,
    /// Europe (CEPT, Germany): 425 Hz, 1 s on, 4 s off.
    Eu,
    /// France: 440 Hz, 1.5 s on, 3.5 s off.
    Fr,
    /// Australia: 400 + 450 Hz, 0.4 on, 0.2 off, 0.4 on, 2 off.
    Au,
}

/// The names `media.tone_zone` takes.
pub const TONE_ZONES: &[&str] = &["us", "uk", "eu", "de", "fr", "au"];

/// A `media.tone_zone` that is not one of [`TONE_ZONES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown tone zone {0:?}: use one of us, uk, eu (or de), fr, au")]
pub struct UnknownZone(pub String);

impl FromStr for ToneZone {
    type Err = UnknownZone;

    fn from_str(s: &str) -> Result<ToneZone, UnknownZone> {
        match s.to_ascii_lowercase().as_str() {
            "us" | "ca" => Ok(ToneZone::Us),
            "uk" | "gb" => Ok(ToneZone::Uk),
            "eu" | "de" => Ok(ToneZone::Eu),
            "fr" => Ok(ToneZone::Fr),
            "au" => Ok(ToneZone::Au),
            _ => Err(UnknownZone(s.to_owned())),
        }
    }
}

impl ToneZone {
    /// The ringback's frequencies in Hz (one or two summed).
    pub fn ringback_frequencies(self) -> &'static [f64] {
        match self {
            ToneZone::Us => &[440.0, 480.0],
            ToneZone::Uk | ToneZone::Au => &[400.0, 450.0],
            ToneZone::Eu => &[425.0],
            ToneZone::Fr => &[440.0],
        }
    }

    /// One ringback cycle as (milliseconds on, milliseconds off) pairs.
    pub fn ringback_cadence(self) -> &'static [(u32, u32)] {
        match self {
            ToneZone::Us => &[(2000, 4000)],
            ToneZone::Uk | ToneZone::Au => &[(400, 200), (400, 2000)],
            ToneZone::Eu => &[(1000, 4000)],
            ToneZone::Fr => &[(1500, 3500)],
        }
    }

    fn index(self) -> usize {
        match self {
            ToneZone::Us => 0,
            ToneZone::Uk => 1,
            ToneZone::Eu => 2,
            ToneZone::Fr => 3,
            ToneZone::Au => 4,
        }
    }
}

/// One ringback cycle of `zone`, made once per zone. Play it with
/// [`Player::start_looped`](crate::Player::start_looped). (`None` cannot
/// happen: every cycle is a valid prompt of a few seconds.)
pub fn ringback(zone: ToneZone) -> Option<Arc<Prompt>> {
    static RINGBACK: [OnceLock<Option<Arc<Prompt>>>; 5] = [const { OnceLock::new() }; 5];
    RINGBACK[zone.index()]
        .get_or_init(|| {
            let freqs = zone.ringback_frequencies();
            // About -16 dBm0 in all: 5,600 peak split over the tones.
            let amplitude = 5600.0 / freqs.len() as f64;
            let mut samples = Vec::new();
            for &(on_ms, off_ms) in zone.ringback_cadence() {
                let on = (RATE * on_ms / 1000) as usize;
                let off = (RATE * off_ms / 1000) as usize;
                samples.extend((0..on).map(|n| {
                    let t = n as f64 / f64::from(RATE);
                    let v: f64 = freqs
                        .iter()
                        .map(|f| (2.0 * std::f64::consts::PI * f * t).sin())
                        .sum();
                    (amplitude * v) as i16
                }));
                samples.extend(std::iter::repeat_n(0, off));
            }
            Prompt::from_samples(RATE, samples).ok().map(Arc::new)
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Energy at `freq` in `s` (Goertzel), normalised by length.
    fn power(s: &[i16], freq: f64) -> f64 {
        let k = 2.0 * (2.0 * std::f64::consts::PI * freq / f64::from(RATE)).cos();
        let (mut a, mut b) = (0.0, 0.0);
        for &x in s {
            let c = f64::from(x) + k * a - b;
            b = a;
            a = c;
        }
        (a * a + b * b - k * a * b) / (s.len() as f64).powi(2)
    }

    /// The (on, off) run lengths in ms of the signal's 10 ms blocks.
    fn cadence(s: &[i16]) -> Vec<(u32, u32)> {
        let block = (RATE / 100) as usize;
        let loud: Vec<bool> = s
            .chunks(block)
            .map(|c| c.iter().any(|v| v.unsigned_abs() > 1000))
            .collect();
        let mut runs = Vec::new();
        let mut i = 0;
        while i < loud.len() {
            let on = loud[i..].iter().take_while(|l| **l).count();
            let off = loud[i + on..].iter().take_while(|l| !**l).count();
            runs.push((on as u32 * 10, off as u32 * 10));
            i += on + off;
        }
        runs
    }

    #[test]
    fn each_zone_rings_in_its_own_cadence_and_pitch() {
        for name in TONE_ZONES {
            let zone: ToneZone = name.parse().unwrap();
            let r = ringback(zone).unwrap();
            assert_eq!(r.sample_rate(), RATE);
            assert_eq!(cadence(r.samples()), zone.ringback_cadence(), "{name}");
            let first_on = &r.samples()[..(RATE / 5) as usize];
            for f in zone.ringback_frequencies() {
                assert!(
                    power(first_on, *f) > 50.0 * power(first_on, 1000.0),
                    "{name}: {f} Hz is in the tone"
                );
            }
            // Made once per zone.
            assert!(Arc::ptr_eq(&r, &ringback(zone).unwrap()));
        }
    }

    #[test]
    fn zones_differ_and_unknown_names_are_refused() {
        let eu = ringback(ToneZone::Eu).unwrap();
        let us = ringback(ToneZone::Us).unwrap();
        let head = (RATE / 5) as usize;
        assert!(power(&eu.samples()[..head], 425.0) > 50.0 * power(&us.samples()[..head], 425.0));
        assert_eq!(us.duration(), std::time::Duration::from_secs(6));
        assert_eq!("DE".parse::<ToneZone>(), Ok(ToneZone::Eu));
        let e = "xx".parse::<ToneZone>().unwrap_err();
        assert!(e.to_string().contains("us, uk, eu (or de), fr, au"), "{e}");
    }
}
