//! Fuzz target for digest credentials (RFC 7616 §3.4, RFC 3261 §22.4): an
//! arbitrary Authorization header value is parsed and verified against a
//! fixed user, key and nonce-count tracker.
//!
//! Properties: nothing panics, and nothing the fuzzer writes authenticates
//! (it cannot know the password's digest for a nonce our key issued).
//!
//! Run (stable toolchain): `fuzz/run.sh digest`; with nightly, from `fuzz/`:
//! `cargo +nightly fuzz run digest corpus/digest`

#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use sip_proto::digest::{self, NonceCounts, NonceKey, Secret, Verdict, VerifyContext};
use sip_proto::{HeaderName, Headers};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    let mut headers = Headers::new();
    headers.push(HeaderName::Authorization, value);
    let Ok(credentials) = headers.authorization() else {
        return;
    };
    let key = NonceKey::new([7; 32]);
    let mut users = HashMap::new();
    users.insert(
        "1001".to_owned(),
        Secret::password("a password the fuzzer cannot guess"),
    );
    let ctx = VerifyContext::new("pbx.example.com", &key, 300);
    let mut counts = NonceCounts::new(64, 300);
    for c in &credentials {
        let verdict = digest::verify(c, "REGISTER", &ctx, &users, &mut counts, 1_000_000);
        assert!(
            !matches!(verdict, Verdict::Ok { .. }),
            "authenticated: {value:?}"
        );
    }
});
