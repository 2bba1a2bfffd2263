//! Parses one of the benchmark messages N times, for instruction counts
//! under callgrind: `parse_n <invite|register|ok> <n>`.

use std::hint::black_box;

use sip_proto::{Limits, Message};

#[path = "../benches/common/messages.rs"]
mod messages;
use messages::{INVITE, OK, REGISTER};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let msg = match args.get(1).map(String::as_str) {
        Some("invite") => INVITE,
        Some("register") => REGISTER,
        _ => OK,
    };
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let limits = Limits::default();
    let mut ok = 0;
    for _ in 0..n {
        ok += usize::from(Message::parse(black_box(msg), &limits).is_ok());
    }
    println!("{ok}");
}
