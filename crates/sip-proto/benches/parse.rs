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

#[path = "common/messages.rs"]
mod messages;
use messages::{INVITE, OK, REGISTER};

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
