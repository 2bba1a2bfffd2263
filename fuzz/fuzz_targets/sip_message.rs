//! Fuzz target for the SIP message layer (RFC 3261 §7, §18.3): parse,
//! serialize and re-parse, frame as a stream, and salvage, on arbitrary bytes.
//!
//! Properties: nothing panics; `frame_len` never claims more bytes than it
//! was given; every message `parse` accepts serializes to bytes that parse
//! to an equal message and frame to exactly their own length.
//!
//! Run (stable toolchain, seeded with the torture corpora):
//! `fuzz/run.sh sip_message`; with nightly, from `fuzz/`: `cargo +nightly
//! fuzz run sip_message corpus/sip_message ../tests/corpora/rfc4475
//! ../tests/corpora/rfc5118`

#![no_main]

use libfuzzer_sys::fuzz_target;
use sip_proto::{Limits, Message, salvage_request};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(Some(n)) = Message::frame_len(data, &limits) {
        assert!(n <= data.len());
    }
    let _ = salvage_request(data);
    if let Ok(m) = Message::parse(data, &limits) {
        let bytes = m.to_bytes();
        let again = Message::parse(&bytes, &limits).expect("serialized message re-parses");
        assert_eq!(again, m, "round trip changed the message");
        assert_eq!(
            Message::frame_len(&bytes, &limits).ok(),
            Some(Some(bytes.len()))
        );
        // Typed accessors must work on every accepted message.
        let h = m.headers();
        h.via().expect("Via");
        h.from().expect("From");
        h.to().expect("To");
        h.cseq().expect("CSeq");
        h.contact().expect("Contact");
        h.route().expect("Route");
        h.record_route().expect("Record-Route");
        h.authorization().expect("Authorization");
        h.www_authenticate().expect("WWW-Authenticate");
        h.warning().expect("Warning");
    }
});
