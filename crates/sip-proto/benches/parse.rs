//! Parser throughput: `sip_proto::Message::parse` against rsip 0.4 on three
//! typical messages (an INVITE with SDP, a REGISTER with Authorization, a
//! 200 OK).
//!
//! `cargo bench -p sip-proto --bench parse` runs one criterion group per
//! message (ids `sip-proto` and `rsip`, throughput in messages), then prints a
//! summary measured by a plain timed loop in the same run:
//!
//! ```text
//! INVITE+SDP: sip-proto 512345 msg/s, rsip 256789 msg/s, ratio 2.00
//! ```
//!
//! The summary takes the best of several interleaved rounds per parser, so a
//! busy neighbour on a shared machine hurts both sides alike. Under
//! `cargo test --benches` (criterion's test mode) every benchmark runs once
//! and the summary is skipped.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use sip_proto::{Limits, Message};

/// A first INVITE from a phone: SDP offer with four codecs.
const INVITE: &[u8] = b"INVITE sip:1002@pbx.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:1001@pbx.example.com>;tag=9fxced76sl\r\n\
To: <sip:1002@pbx.example.com>\r\n\
Call-ID: 3848276298220188511@192.0.2.10\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:1001@192.0.2.10:5060;transport=udp>\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY\r\n\
Supported: replaces, timer\r\n\
User-Agent: Test Phone 1.0\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 226\r\n\
\r\n\
v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\n\
s=-\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 0 8 9 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=sendrecv\r\n";

/// A REGISTER answering a digest challenge.
const REGISTER: &[u8] = b"REGISTER sip:pbx.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: \"Alice\" <sip:1001@pbx.example.com>\r\n\
From: \"Alice\" <sip:1001@pbx.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@192.0.2.10\r\n\
CSeq: 2 REGISTER\r\n\
Contact: <sip:1001@192.0.2.10:5060;transport=udp>;expires=3600\r\n\
Authorization: Digest username=\"1001\", realm=\"pbx.example.com\", \
nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"sip:pbx.example.com\", \
response=\"6629fae49393a05397450978507c4ef1\", algorithm=MD5, qop=auth, \
nc=00000001, cnonce=\"0a4f113b\"\r\n\
Expires: 3600\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n\
User-Agent: Test/1.0\r\n\
Content-Length: 0\r\n\
\r\n";

/// The 200 OK answering the INVITE.
const OK: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9;rport=5060;received=192.0.2.10\r\n\
From: \"Alice\" <sip:1001@pbx.example.com>;tag=9fxced76sl\r\n\
To: <sip:1002@pbx.example.com>;tag=8321234356\r\n\
Call-ID: 3848276298220188511@192.0.2.10\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:1002@192.0.2.20:5060>\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n\
Supported: replaces\r\n\
Server: Switchboard\r\n\
Content-Length: 0\r\n\
\r\n";

/// The messages, with the label used in group names and the summary.
const MESSAGES: [(&str, &[u8]); 3] = [
    ("INVITE+SDP", INVITE),
    ("REGISTER+Auth", REGISTER),
    ("200 OK", OK),
];

/// One parse with our parser; true if it was accepted.
fn ours(msg: &[u8], limits: &Limits) -> bool {
    Message::parse(black_box(msg), limits).is_ok()
}

/// One parse with rsip 0.4; true if it was accepted.
fn theirs(msg: &[u8]) -> bool {
    rsip::SipMessage::try_from(black_box(msg)).is_ok()
}

/// Registers one criterion group per message.
fn groups(c: &mut Criterion) {
    let limits = Limits::default();
    for (label, msg) in MESSAGES {
        let mut g = c.benchmark_group(label);
        g.throughput(Throughput::Elements(1));
        g.bench_function("sip-proto", |b| b.iter(|| ours(msg, &limits)));
        g.bench_function("rsip", |b| b.iter(|| theirs(msg)));
        g.finish();
    }
}

/// Messages per second of `f` over one round of about `budget`.
fn rate(budget: Duration, f: &mut dyn FnMut() -> bool) -> f64 {
    // Size the round from a short calibration so the clock is read rarely.
    let mut n = 1_000u64;
    loop {
        let t = Instant::now();
        for _ in 0..n {
            black_box(f());
        }
        let took = t.elapsed();
        if took >= budget / 10 || n >= 1 << 30 {
            let per_budget = budget.as_secs_f64() / took.as_secs_f64().max(1e-9);
            n = ((n as f64) * per_budget).max(1.0) as u64;
            break;
        }
        n *= 4;
    }
    let t = Instant::now();
    for _ in 0..n {
        black_box(f());
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// Prints "label: sip-proto X msg/s, rsip Y msg/s, ratio Z" per message.
fn summary() {
    const ROUNDS: usize = 5;
    let budget = Duration::from_millis(300);
    let limits = Limits::default();
    println!();
    println!("Summary (best of {ROUNDS} interleaved rounds of ~{budget:?} each):");
    for (label, msg) in MESSAGES {
        // A message either parser rejects would measure the error path.
        assert!(ours(msg, &limits), "{label}: sip-proto rejects it");
        assert!(theirs(msg), "{label}: rsip rejects it");
        let (mut a, mut b) = (0.0f64, 0.0f64);
        for _ in 0..ROUNDS {
            a = a.max(rate(budget, &mut || ours(msg, &limits)));
            b = b.max(rate(budget, &mut || theirs(msg)));
        }
        println!(
            "{label}: sip-proto {a:.0} msg/s, rsip {b:.0} msg/s, ratio {:.2}",
            a / b
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not.
    let args: Vec<String> = std::env::args().collect();
    let benching = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--list");
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    groups(&mut c);
    c.final_summary();
    if benching {
        summary();
    }
}
