//! CPU time from `/proc/PID/stat` (user + system, every thread of the
//! process), as clock ticks turned into seconds.

use std::fs;

/// Clock ticks per second for `/proc` times. Linux has reported 100 on
/// every architecture for decades (`USER_HZ`); `getconf CLK_TCK` says so.
const TICKS_PER_SECOND: f64 = 100.0;

/// User + system CPU seconds used so far by process `pid` ("self" for this
/// one), or `None` if it cannot be read (the process is gone).
pub(crate) fn seconds(pid: &str) -> Option<f64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// utime + stime from a `/proc/PID/stat` line: fields 14 and 15, counted
/// after the `)` that closes the command name (which may hold spaces).
fn parse_stat(text: &str) -> Option<f64> {
    let rest = text.get(text.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_utime_and_stime() {
        let line =
            "1234 (rtp engine) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 99 0 0";
        assert_eq!(parse_stat(line), Some(3.0));
        assert!(seconds("self").is_some());
    }
}
