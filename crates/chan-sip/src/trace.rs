//! Call traces on the SIP side: [`TraceTap`] files every message the
//! endpoint sends or receives under its call's trace (found by Call-ID),
//! and [`trace_json`] reads a trace back as the admin API shows it — each
//! message's first line and key headers (or its whole text), credentials
//! removed.

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use memchr::memmem;
use pbx::{CallTrace, TracePeer, TraceWhat, Traces};
use serde_json::{Value, json};
use sip_net::Transport;

/// Files messages under the trace of their call.
pub struct TraceTap {
    traces: Arc<Traces>,
}

impl TraceTap {
    /// A tap filing into `traces`.
    pub fn new(traces: Arc<Traces>) -> TraceTap {
        TraceTap { traces }
    }
}

impl sip_net::Tap for TraceTap {
    fn message(&self, inbound: bool, transport: Transport, peer: SocketAddr, bytes: &Bytes) {
        let Some(id) = call_id(bytes) else {
            return;
        };
        let Some(trace) = self.traces.get(id) else {
            return;
        };
        trace.record(TraceWhat::Message {
            inbound,
            peer: TracePeer {
                transport: transport.as_str(),
                addr: peer,
            },
            // A received message may be a slice of a larger buffer: keep
            // only its own bytes. What we send is exactly the message.
            bytes: if inbound {
                Bytes::copy_from_slice(bytes)
            } else {
                bytes.clone()
            },
        });
    }
}

/// Records the INVITE being handled in `trace`, unless the trace held
/// events already: it existed when the INVITE arrived, so the tap filed it.
pub(crate) fn record_invite(trace: &CallTrace, incoming: &sip_net::Incoming) {
    if trace.is_empty() {
        trace.record(TraceWhat::Message {
            inbound: true,
            peer: TracePeer {
                transport: incoming.transport.as_str(),
                addr: incoming.source,
            },
            bytes: incoming.request.to_bytes(),
        });
    }
}

/// The Call-ID header as nearly every UA writes it.
static CALL_ID: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\r\nCall-ID:"));
/// The end of a message's headers.
static HEADERS_END: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\r\n\r\n"));

/// The Call-ID of a message, read from its header lines (no full parse).
/// Every message sent or received goes through here while any call is
/// traced: `Call-ID:` as written by nearly everyone is found with a SIMD
/// search, anything else (compact `i:`, other cases, bare LF) line by line.
fn call_id(message: &[u8]) -> Option<&str> {
    if let Some(at) = CALL_ID.find(message)
        && HEADERS_END.find(&message[..at + 2]).is_none()
    {
        let value = &message[at + 10..];
        let end = memchr::memchr2(b'\r', b'\n', value).unwrap_or(value.len());
        return std::str::from_utf8(value[..end].trim_ascii()).ok();
    }
    call_id_by_line(message)
}

/// [`call_id`] the slow way: each header line's name compared.
fn call_id_by_line(message: &[u8]) -> Option<&str> {
    let mut lines = message.split(|&b| b == b'\n');
    lines.next()?;
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match line.first() {
            None => return None,
            // Only `Call-ID` and `i` lines are looked into (a message is
            // read here for every trace that is kept).
            Some(b'c' | b'C' | b'i' | b'I') => {}
            Some(_) => continue,
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if name.eq_ignore_ascii_case(b"call-id") || name.eq_ignore_ascii_case(b"i") {
            return std::str::from_utf8(line[colon + 1..].trim_ascii()).ok();
        }
    }
    None
}

/// Headers shown under each message's first line (compact forms too).
const KEY_HEADERS: &[(&str, &str)] = &[
    ("from", "f"),
    ("to", "t"),
    ("call-id", "i"),
    ("cseq", ""),
    ("contact", "m"),
    ("reason", ""),
    ("warning", ""),
];

/// Headers whose values are credentials: never shown.
fn is_credential(name: &str) -> bool {
    name.eq_ignore_ascii_case("authorization") || name.eq_ignore_ascii_case("proxy-authorization")
}

/// `text` with credential header values replaced.
fn scrub(text: &str) -> (String, Vec<String>) {
    let (head, body) = match text.find("\r\n\r\n") {
        Some(at) => (&text[..at], &text[at..]),
        None => (text, ""),
    };
    let mut out = String::with_capacity(text.len());
    let mut key = Vec::new();
    for (i, line) in head.split("\r\n").enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        let name = line.split_once(':').map(|(n, _)| n.trim());
        match name {
            Some(name) if i > 0 && is_credential(name) => {
                out.push_str(name);
                out.push_str(": [removed]");
            }
            Some(name) if i > 0 => {
                out.push_str(line);
                if KEY_HEADERS.iter().any(|(long, short)| {
                    name.eq_ignore_ascii_case(long) || (!short.is_empty() && name == *short)
                }) {
                    key.push(line.to_owned());
                }
            }
            _ => out.push_str(line),
        }
    }
    out.push_str(body);
    (out, key)
}

/// The trace as `GET /api/v1/calls/{id}/trace` shows it: the call's id,
/// its legs, whether it is `live` (per `live`), whether it was `admitted`
/// (`false`: every INVITE was refused before routing), and its events in order;
/// each message with its first line and key headers, and its whole text
/// (credentials removed) with `full`.
pub fn trace_json(trace: &CallTrace, live: bool, full: bool) -> Value {
    let events: Vec<Value> = trace
        .events()
        .into_iter()
        .map(|e| match e.what {
            TraceWhat::Message {
                inbound,
                peer,
                bytes,
            } => {
                let text = String::from_utf8_lossy(&bytes);
                let (clean, headers) = scrub(&text);
                let first_line = clean.split("\r\n").next().unwrap_or("").to_owned();
                let mut v = json!({
                    "at_ms": e.at_ms,
                    "kind": "sip",
                    "direction": if inbound { "in" } else { "out" },
                    "peer": peer.to_string(),
                    "first_line": first_line,
                    "headers": headers,
                });
                if full && let Some(obj) = v.as_object_mut() {
                    obj.insert("text".into(), Value::String(clean));
                }
                v
            }
            TraceWhat::Step { location, text } => json!({
                "at_ms": e.at_ms,
                "kind": "dialplan",
                "location": location,
                "step": text,
            }),
            _ => json!({ "at_ms": e.at_ms, "kind": "other" }),
        })
        .collect();
    json!({
        "call_id": trace.id(),
        "legs": trace.legs(),
        "live": live && trace.is_live(),
        "admitted": trace.is_admitted(),
        "dropped_events": trace.dropped(),
        "events": events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_call_id_in_long_and_compact_form() {
        let m = b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\nCall-ID: abc@h\r\n\r\nbody";
        assert_eq!(call_id(m), Some("abc@h"));
        let m = b"SIP/2.0 200 OK\r\ni:  zz \r\n\r\n";
        assert_eq!(call_id(m), Some("zz"));
        assert_eq!(call_id(b"SIP/2.0 200 OK\r\n\r\ni: late"), None);
        let m = b"BYE sip:a@b SIP/2.0\r\nCSeq: 2 BYE\r\nContact: <sip:c@d>\r\nCALL-ID: x1\r\n\r\n";
        assert_eq!(call_id(m), Some("x1"));
        // Fast and slow paths agree.
        let m = b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\nCall-ID:  abc@h \r\nCSeq: 1 INVITE\r\n\r\n";
        assert_eq!(call_id(m), Some("abc@h"));
        assert_eq!(call_id_by_line(m), Some("abc@h"));
        // A Call-ID: in the body is not the message's.
        let m = b"MESSAGE sip:a@b SIP/2.0\r\ni: real\r\n\r\nx\r\nCall-ID: fake\r\n";
        assert_eq!(call_id(m), Some("real"));
        let m = b"MESSAGE sip:a@b SIP/2.0\r\nVia: x\r\n\r\nx\r\nCall-ID: fake\r\n";
        assert_eq!(call_id(m), None);
    }

    #[test]
    fn credentials_are_removed() {
        let text = "INVITE sip:a@b SIP/2.0\r\nFrom: <sip:1001@x>;tag=1\r\nProxy-Authorization: Digest username=\"1001\", response=\"abc\"\r\nauthorization: Digest x\r\n\r\nv=0";
        let (clean, key) = scrub(text);
        assert!(
            !clean.contains("response=") && !clean.contains("Digest"),
            "{clean}"
        );
        assert!(clean.contains("Proxy-Authorization: [removed]"));
        assert!(clean.ends_with("\r\n\r\nv=0"));
        assert_eq!(key, ["From: <sip:1001@x>;tag=1"]);
    }
}
