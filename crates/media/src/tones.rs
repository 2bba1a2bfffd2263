//! Call-progress tones made here rather than shipped as files: the
//! ringback a caller hears while a dial rings after the dialplan has
//! answered (ITU-T E.180 describes national variants; this is the North
//! American one, 440 + 480 Hz, 2 s on, 4 s off).

use std::sync::{Arc, OnceLock};

use crate::prompt::Prompt;

/// Sample rate of the tones.
const RATE: u32 = 8000;

/// One ringback cycle (2 s of 440 + 480 Hz, 4 s of silence), made once.
/// Play it with [`Player::start_looped`](crate::Player::start_looped).
/// (`None` cannot happen: 6 s at 8 kHz is a valid prompt.)
pub fn ringback() -> Option<Arc<Prompt>> {
    static RINGBACK: OnceLock<Option<Arc<Prompt>>> = OnceLock::new();
    RINGBACK
        .get_or_init(|| {
            let on = 2 * RATE as usize;
            let cycle = 6 * RATE as usize;
            let samples = (0..cycle)
                .map(|n| {
                    if n >= on {
                        return 0;
                    }
                    let t = n as f64 / f64::from(RATE);
                    let two_pi = 2.0 * std::f64::consts::PI;
                    // About -16 dBm0 for each of the two tones.
                    let v = 2800.0 * ((two_pi * 440.0 * t).sin() + (two_pi * 480.0 * t).sin());
                    v as i16
                })
                .collect();
            Prompt::from_samples(RATE, samples).ok().map(Arc::new)
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ringback_is_two_seconds_on_four_off() {
        let r = ringback().unwrap();
        assert_eq!(r.sample_rate(), RATE);
        assert_eq!(r.duration(), std::time::Duration::from_secs(6));
        let s = r.samples();
        assert!(s[..16000].iter().any(|v| v.unsigned_abs() > 4000));
        assert!(s[16000..].iter().all(|v| *v == 0));
        // Made once.
        assert!(Arc::ptr_eq(&r, &ringback().unwrap()));
    }
}
