//! Fuzz target for RTCP compound packets (RFC 3550 §6.4–§6.6, A.2):
//! arbitrary bytes are parsed; an accepted compound is rebuilt and
//! re-parsed.
//!
//! Properties: nothing panics; an accepted compound rebuilds to bytes that
//! parse to the same packets (or is refused with `NotAligned`, for an
//! opaque body that its padding left short of whole words).
//!
//! Run (stable toolchain): `fuzz/run.sh rtcp`; with nightly, from `fuzz/`:
//! `cargo +nightly fuzz run rtcp corpus/rtcp`

#![no_main]

use libfuzzer_sys::fuzz_target;
use rtp::RtcpError;
use rtp::rtcp::{build_compound, parse_compound};

fuzz_target!(|data: &[u8]| {
    let Ok(packets) = parse_compound(data) else {
        return;
    };
    match build_compound(&packets) {
        Ok(bytes) => {
            let again = parse_compound(&bytes).expect("a rebuilt compound parses");
            assert_eq!(again, packets, "round trip changed the packets");
        }
        Err(RtcpError::NotAligned(_)) => {}
        Err(e) => panic!("an accepted compound does not rebuild: {e}"),
    }
});
