//! G.711 µ-law and A-law (ITU-T G.711; RTP payload types 0 PCMU and 8 PCMA,
//! RFC 3551 §4.5.14): sample-by-sample companding of 16-bit linear PCM.
//!
//! Encoding follows the segment/mantissa form of G.711 on 16-bit input (the
//! same convention as spandsp and Asterisk: negative values are
//! one's-complemented before quantizing, so the codes are symmetric);
//! decoding gives each code's interval midpoint. Decoding and µ-law ↔ A-law
//! transcoding are 256-entry tables computed at compile time.

/// Added to the magnitude before µ-law quantizing (G.711 §3, 33 in 14-bit units).
const ULAW_BIAS: i32 = 0x84;
/// Flips A-law's even bits (G.711 §3: "alternate digit inversion").
const ALAW_AMI_MASK: u8 = 0x55;

/// Encodes one 16-bit sample as µ-law.
#[inline]
pub const fn ulaw_encode(sample: i16) -> u8 {
    let (mask, magnitude) = if sample < 0 {
        (0x7F, !(sample as i32))
    } else {
        (0xFF, sample as i32)
    };
    let biased = magnitude + ULAW_BIAS;
    // Segment = position of the highest set bit above bit 7 (0..=7).
    let segment = top_bit((biased | 0xFF) as u32) as i32 - 7;
    let code = if segment >= 8 {
        0x7F
    } else {
        (segment << 4) | ((biased >> (segment + 3)) & 0x0F)
    };
    (code as u8) ^ mask
}

/// Decodes one µ-law code to a 16-bit sample.
#[inline]
pub const fn ulaw_decode(code: u8) -> i16 {
    ULAW_TO_LINEAR[code as usize]
}

/// Encodes one 16-bit sample as A-law.
#[inline]
pub const fn alaw_encode(sample: i16) -> u8 {
    let (mask, magnitude) = if sample >= 0 {
        (ALAW_AMI_MASK | 0x80, sample as i32)
    } else {
        (ALAW_AMI_MASK, !(sample as i32))
    };
    let segment = top_bit((magnitude | 0xFF) as u32) as i32 - 7;
    let code = if segment >= 8 {
        0x7F
    } else {
        let shift = if segment == 0 { 4 } else { segment + 3 };
        (segment << 4) | ((magnitude >> shift) & 0x0F)
    };
    (code as u8) ^ mask
}

/// Decodes one A-law code to a 16-bit sample.
#[inline]
pub const fn alaw_decode(code: u8) -> i16 {
    ALAW_TO_LINEAR[code as usize]
}

/// Transcodes a µ-law code to the A-law code of the same sample.
#[inline]
pub const fn ulaw_to_alaw(code: u8) -> u8 {
    ULAW_TO_ALAW[code as usize]
}

/// Transcodes an A-law code to the µ-law code of the same sample.
#[inline]
pub const fn alaw_to_ulaw(code: u8) -> u8 {
    ALAW_TO_ULAW[code as usize]
}

/// Appends the µ-law encoding of `samples` to `out`.
pub fn encode_ulaw(samples: &[i16], out: &mut Vec<u8>) {
    out.extend(samples.iter().map(|&s| ulaw_encode(s)));
}

/// Appends the decoded samples of µ-law `codes` to `out`.
pub fn decode_ulaw(codes: &[u8], out: &mut Vec<i16>) {
    out.extend(codes.iter().map(|&c| ulaw_decode(c)));
}

/// Appends the A-law encoding of `samples` to `out`.
pub fn encode_alaw(samples: &[i16], out: &mut Vec<u8>) {
    out.extend(samples.iter().map(|&s| alaw_encode(s)));
}

/// Appends the decoded samples of A-law `codes` to `out`.
pub fn decode_alaw(codes: &[u8], out: &mut Vec<i16>) {
    out.extend(codes.iter().map(|&c| alaw_decode(c)));
}

/// Index of the highest set bit of a non-zero value.
const fn top_bit(v: u32) -> u32 {
    31 - v.leading_zeros()
}

const fn ulaw_decode_math(code: u8) -> i16 {
    let u = !code;
    let t = ((((u & 0x0F) as i32) << 3) + ULAW_BIAS) << ((u & 0x70) >> 4);
    (if u & 0x80 != 0 {
        ULAW_BIAS - t
    } else {
        t - ULAW_BIAS
    }) as i16
}

const fn alaw_decode_math(code: u8) -> i16 {
    let a = code ^ ALAW_AMI_MASK;
    let mut i = ((a & 0x0F) as i32) << 4;
    let segment = ((a & 0x70) >> 4) as i32;
    if segment == 0 {
        i += 8;
    } else {
        i = (i + 0x108) << (segment - 1);
    }
    (if a & 0x80 != 0 { i } else { -i }) as i16
}

const ULAW_TO_LINEAR: [i16; 256] = {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = ulaw_decode_math(i as u8);
        i += 1;
    }
    t
};

const ALAW_TO_LINEAR: [i16; 256] = {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = alaw_decode_math(i as u8);
        i += 1;
    }
    t
};

const ULAW_TO_ALAW: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = alaw_encode(ULAW_TO_LINEAR[i]);
        i += 1;
    }
    t
};

const ALAW_TO_ULAW: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = ulaw_encode(ALAW_TO_LINEAR[i]);
        i += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_matches_g711_anchor_values() {
        // G.711 Table 2a: code 0xFF (and 0x7F, "negative zero") is 0; the
        // outermost codes are ±8031 in 14-bit units, ±32124 in 16-bit.
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x7F), 0);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_encode(-32124), 0x00);
        assert_eq!(ulaw_encode(32124), 0x80);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        // First step of segment 0 is 8 (2 in 14-bit units), segment 1 starts at 132.
        assert_eq!(ulaw_decode(0xFE), 8);
        assert_eq!(ulaw_decode(0xEF), 132);
        assert_eq!(ulaw_decode(0x6F), -132);
    }

    #[test]
    fn alaw_matches_g711_anchor_values() {
        // G.711 Table 1a: the smallest magnitudes are ±1 in 13-bit units (±8),
        // the largest ±4032 (±32256); even bits are inverted (0x55).
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_encode(-1), 0x55);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
        // Segment 1 starts at 256 (32 in 13-bit units): output 264.
        assert_eq!(alaw_decode(0x10 ^ 0xD5), 264);
    }

    #[test]
    fn every_code_round_trips_through_its_sample() {
        for code in 0..=255u8 {
            let u = ulaw_decode(code);
            // 0x7F is µ-law's negative zero, which encodes as positive zero.
            let expect = if code == 0x7F { 0xFF } else { code };
            assert_eq!(ulaw_encode(u), expect, "µ-law {code:#04x} -> {u}");
            let a = alaw_decode(code);
            assert_eq!(alaw_encode(a), code, "A-law {code:#04x} -> {a}");
        }
    }

    #[test]
    fn decoding_is_odd_symmetric() {
        for code in 0..=127u8 {
            assert_eq!(ulaw_decode(code), -ulaw_decode(code | 0x80));
            assert_eq!(alaw_decode(code), -alaw_decode(code | 0x80));
        }
    }

    #[test]
    fn quantization_error_is_within_half_a_step() {
        for x in i16::MIN..=i16::MAX {
            let m = i32::from(x).abs();
            let ue = (i32::from(ulaw_decode(ulaw_encode(x))) - i32::from(x)).abs();
            let ae = (i32::from(alaw_decode(alaw_encode(x))) - i32::from(x)).abs();
            if m <= 32124 {
                // Step in segment s is 2^(s+3) and |x| + 132 >= 2^(s+7).
                assert!(ue <= (m + 132) / 32 + 1, "µ-law {x}: error {ue}");
            } else {
                assert!(ue <= m - 32124 + 1, "µ-law {x}: error {ue}");
            }
            if m <= 32256 {
                assert!(ae <= (m / 32).max(8) + 1, "A-law {x}: error {ae}");
            } else {
                assert!(ae <= m - 32256 + 1, "A-law {x}: error {ae}");
            }
        }
    }

    #[test]
    fn encoding_is_monotonic() {
        let mut prev_u = ulaw_decode(ulaw_encode(i16::MIN));
        let mut prev_a = alaw_decode(alaw_encode(i16::MIN));
        for x in i16::MIN..=i16::MAX {
            let u = ulaw_decode(ulaw_encode(x));
            let a = alaw_decode(alaw_encode(x));
            assert!(u >= prev_u && a >= prev_a, "not monotonic at {x}");
            prev_u = u;
            prev_a = a;
        }
    }

    #[test]
    fn transcoding_keeps_the_sample_close() {
        for code in 0..=255u8 {
            let u = i32::from(ulaw_decode(code));
            let a = i32::from(alaw_decode(ulaw_to_alaw(code)));
            assert!((u - a).abs() <= (u.abs() / 32).max(8) + 1, "{code:#04x}");
            let a = i32::from(alaw_decode(code));
            let u = i32::from(ulaw_decode(alaw_to_ulaw(code)));
            assert!((u - a).abs() <= (a.abs() + 132) / 32 + 1, "{code:#04x}");
        }
        assert_eq!(ulaw_to_alaw(0xFF), 0xD5);
        assert_eq!(alaw_to_ulaw(0xD5), 0xFE);
    }

    #[test]
    fn slices_append() {
        let mut codes = vec![0x42];
        encode_ulaw(&[0, 32124], &mut codes);
        assert_eq!(codes, [0x42, 0xFF, 0x80]);
        let mut pcm = Vec::new();
        decode_ulaw(&codes[1..], &mut pcm);
        assert_eq!(pcm, [0, 32124]);
        let mut codes = Vec::new();
        encode_alaw(&[0, i16::MAX], &mut codes);
        assert_eq!(codes, [0xD5, 0xAA]);
        pcm.clear();
        decode_alaw(&codes, &mut pcm);
        assert_eq!(pcm, [8, 32256]);
    }
}
