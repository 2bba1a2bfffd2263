//! Fuzz target for the SDP parser and offer/answer (RFC 8866 §5, RFC 3264
//! §6): parse arbitrary bytes, serialize and re-parse, answer as an offer.
//!
//! Properties: nothing panics; every description `parse` accepts
//! serializes to bytes that parse to an equal model and re-serialize to
//! the same bytes; the answer to it has the same number of `m=` sections,
//! parses back, and `negotiate` reads the exchange.
//!
//! Run (stable toolchain, seeded with the RFC 4317 examples):
//! `fuzz/run.sh sdp`; with nightly, from `fuzz/`:
//! `cargo +nightly fuzz run sdp corpus/sdp ../tests/corpora/rfc4317`

#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use sdp::{Codec, Local, LocalSession, Role, answer, negotiate, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(offer) = parse(data) else {
        return;
    };
    let bytes = offer.to_bytes();
    let again = parse(&bytes).expect("serialized description re-parses");
    assert_eq!(again, offer, "round trip changed the description");
    assert_eq!(again.to_bytes(), bytes, "serializing is not stable");
    for (i, m) in offer.media.iter().enumerate() {
        let _ = (m.rtpmaps(), m.telephone_event(), m.ptime(), m.maxptime());
        let _ = (offer.direction(i), offer.rtp_address(i));
    }
    let ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10));
    let local = Local::new(
        ip,
        vec![
            Codec::PCMU,
            Codec::PCMA,
            Codec::G722,
            Codec::TELEPHONE_EVENT,
        ],
        vec![30000, 30002],
    );
    let ours = answer(&offer, &local, &mut LocalSession::with_id(1, ip));
    assert_eq!(ours.media.len(), offer.media.len());
    assert_eq!(parse(&ours.to_bytes()).expect("answer parses"), ours);
    negotiate(&offer, &ours, Role::Answerer).expect("same section count");
});
