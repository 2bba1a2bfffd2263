//! Fuzz target for the STIR `Identity` header parser and the PASSporT
//! (compact JWS) decoder (RFC 8224 §4.1, RFC 8225, RFC 7515 §7.1), and the
//! verifier's checks that run before any certificate is fetched.
//!
//! Properties: nothing panics; a header value `IdentityHeader::parse`
//! accepts writes (`to_value`) to a value that parses to the same parts;
//! a PASSporT `Passport::decode` accepts has a 64-byte signature and a
//! signing input that is its first two parts.
//!
//! Run (stable toolchain): `fuzz/run.sh stir_identity`; with nightly,
//! from `fuzz/`: `cargo +nightly fuzz run stir_identity corpus/stir_identity`

#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use identity::{IdentityHeader, MAX_HEADER_LEN, Passport, TrustAnchors, Verifier, canonical_tn};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(header) = IdentityHeader::parse(text) {
        let value = header.to_value();
        if value.len() <= MAX_HEADER_LEN {
            let again = IdentityHeader::parse(&value).expect("written Identity value re-parses");
            assert_eq!(again, header, "Identity round trip changed the parts");
        }
        check_passport(&header.passport);
    }
    check_passport(text);
    let verifier = Verifier::new(TrustAnchors::new());
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    if let Err(v) = verifier.prepare(text, "15551234567", "15557654321", now) {
        assert!(!v.verified);
        let code = v.status_code().expect("a failure has a status code");
        assert!(matches!(code, 436 | 437 | 438), "prepare gave {code}");
    }
    if let Ok(tn) = canonical_tn(text) {
        assert!(!tn.is_empty() && tn.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(canonical_tn(&tn).as_deref(), Ok(tn.as_str()));
    }
});

fn check_passport(jws: &str) {
    if let Ok(p) = Passport::decode(jws) {
        assert_eq!(p.signature.len(), 64);
        assert!(jws.starts_with(&p.signing_input));
        assert_eq!(jws.as_bytes().get(p.signing_input.len()), Some(&b'.'));
    }
}
