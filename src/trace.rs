//! Per-call traces for `GET /api/v1/calls/{id}/trace` and `switchboard
//! trace`: how the JSON answer reads as a ladder, oldest first.

use serde_json::Value;

/// `HH:MM:SS.mmm` (UTC) of Unix milliseconds.
fn clock(ms: u64) -> String {
    let day = ms / 1000 % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day / 3600,
        day / 60 % 60,
        day % 60,
        ms % 1000
    )
}

/// The trace `v` as text: one line per SIP message (time, direction,
/// peer, first line) with its key headers below (or its whole text with
/// `full`), and one per dialplan step (time, `file:line`, what it did).
pub fn render(v: &Value, full: bool) -> String {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let state = if v.get("admitted").and_then(Value::as_bool) == Some(false) {
        "refused before routing"
    } else if v.get("live").and_then(Value::as_bool) == Some(true) {
        "in progress"
    } else {
        "ended"
    };
    let mut out = format!("call {} ({state})\n", s(v, "call_id"));
    let legs: Vec<String> = v
        .get("legs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    if legs.len() > 1 {
        out.push_str(&format!("legs: {}\n", legs.join(", ")));
    }
    let pad = " ".repeat(14);
    for e in v
        .get("events")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let at = clock(e.get("at_ms").and_then(Value::as_u64).unwrap_or(0));
        match e.get("kind").and_then(Value::as_str) {
            Some("sip") => {
                let arrow = if s(e, "direction") == "in" {
                    "<-"
                } else {
                    "->"
                };
                out.push_str(&format!(
                    "{at}  {arrow} {}  {}\n",
                    s(e, "peer"),
                    s(e, "first_line")
                ));
                if full {
                    for line in s(e, "text").lines().skip(1) {
                        out.push_str(&format!("{pad}{line}\n"));
                    }
                } else {
                    for h in e
                        .get("headers")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                    {
                        out.push_str(&format!("{pad}{h}\n"));
                    }
                }
            }
            _ => {
                let location = s(e, "location");
                if location.is_empty() {
                    out.push_str(&format!("{at}  == {}\n", s(e, "step")));
                } else {
                    out.push_str(&format!("{at}  == {location} {}\n", s(e, "step")));
                }
            }
        }
    }
    out
}
