//! Building responses to requests: RFC 3261 §8.2.6 (copying Via, From, To,
//! Call-ID, CSeq; adding a To tag) and §18.2.1 / RFC 3581 (stamping the top
//! Via with `received` and `rport` so the answer finds a phone behind NAT).

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use sip_proto::header::{Via, split_list};
use sip_proto::{HeaderName, Headers, Host, Request, Response, Salvaged};

/// The reason phrase RFC 3261 §21 gives a status code.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => match status / 100 {
            1 => "Progress",
            2 => "OK",
            3 => "Redirect",
            4 => "Client Error",
            5 => "Server Error",
            _ => "Global Failure",
        },
    }
}

/// Stamps the top Via of a received request as RFC 3261 §18.2.1 and RFC 3581
/// §4 say: `received` when the sent-by host is not the source address (always
/// when `rport` was asked for), and the source port in a valueless `rport`.
/// Returns the stamped Via, or `None` if the request has no readable Via.
pub fn stamp_top_via(req: &mut Request, source: SocketAddr) -> Option<Via> {
    let mut via = req.top_via()?;
    let wants_rport = via.rport().is_some();
    let sent_by_is_source = match &via.host {
        Host::Ipv4(ip) => IpAddr::V4(*ip) == source.ip(),
        Host::Ipv6(ip) => IpAddr::V6(*ip) == source.ip(),
        Host::Domain(_) => false,
    };
    if !sent_by_is_source || wants_rport {
        via.params.set("received", Some(&host_param(source.ip())));
    }
    if wants_rport {
        via.params.set("rport", Some(&source.port().to_string()));
    }
    req.headers
        .replace_first_value(&HeaderName::Via, &via.to_string());
    Some(via)
}

/// `received` carries a bare IP address (no brackets, RFC 3261 §20.42 ABNF).
fn host_param(ip: IpAddr) -> String {
    ip.to_string()
}

/// Builds a response to `req` as RFC 3261 §8.2.6.2 says: Via, From, Call-ID
/// and CSeq copied; To copied with `to_tag` added if it has none (never on
/// 100); Record-Route copied into 101-299 (§12.1.1); `Server` set. The body
/// is empty.
pub fn response_to(req: &Request, status: u16, to_tag: &str, server: &str) -> Response {
    let mut headers = Headers::new();
    for via in req.headers.get_all(&HeaderName::Via) {
        headers.push(HeaderName::Via, via);
    }
    if let Some(from) = req.headers.get(&HeaderName::From) {
        headers.push(HeaderName::From, from);
    }
    if let Some(to) = req.headers.get(&HeaderName::To) {
        let has_tag = req
            .headers
            .to()
            .map(|na| na.tag().is_some())
            .unwrap_or(true);
        if status > 100 && !has_tag && !to_tag.is_empty() {
            headers.push(HeaderName::To, format!("{to};tag={to_tag}"));
        } else {
            headers.push(HeaderName::To, to);
        }
    }
    if let Some(call_id) = req.headers.get(&HeaderName::CallId) {
        headers.push(HeaderName::CallId, call_id);
    }
    if let Some(cseq) = req.headers.get(&HeaderName::CSeq) {
        headers.push(HeaderName::CSeq, cseq);
    }
    // §12.1.1: a response that may establish a dialog (1xx with a To tag,
    // 2xx) carries the request's Record-Route, so the caller's in-dialog
    // requests (ACK, BYE) go through the proxies that asked to stay in the
    // path (Kamailio in front of several nodes).
    if (101..300).contains(&status) {
        for rr in req.headers.get_all(&HeaderName::RecordRoute) {
            headers.push(HeaderName::RecordRoute, rr);
        }
    }
    if !server.is_empty() {
        headers.push(HeaderName::Server, server);
    }
    Response {
        status,
        reason: reason_phrase(status).to_owned(),
        headers,
        body: Bytes::new(),
    }
}

/// Builds the 400 (or 505) for a request that did not parse, from what
/// [`sip_proto::salvage_request`] could read. The Via values are copied as
/// they came; the top one gets `received` so the reply is traceable.
pub fn response_to_salvaged(
    salvaged: &Salvaged,
    status: u16,
    warning: &str,
    source: SocketAddr,
    to_tag: &str,
    server: &str,
    warn_agent: &str,
) -> Response {
    let mut headers = Headers::new();
    for (i, via) in salvaged.via.iter().enumerate() {
        headers.push(HeaderName::Via, via.as_str());
        if i == 0
            && let Some(top) = split_list(via).next()
        {
            let stamped = format!("{top};received={}", host_param(source.ip()));
            headers.replace_first_value(&HeaderName::Via, &stamped);
        }
    }
    if let Some(from) = &salvaged.from {
        headers.push(HeaderName::From, from.as_str());
    }
    if let Some(to) = &salvaged.to {
        if to.contains(";tag=") || to_tag.is_empty() {
            headers.push(HeaderName::To, to.as_str());
        } else {
            headers.push(HeaderName::To, format!("{to};tag={to_tag}"));
        }
    }
    if let Some(call_id) = &salvaged.call_id {
        headers.push(HeaderName::CallId, call_id.as_str());
    }
    if let Some(cseq) = &salvaged.cseq {
        headers.push(HeaderName::CSeq, cseq.as_str());
    }
    if !server.is_empty() {
        headers.push(HeaderName::Server, server);
    }
    headers.push(HeaderName::Warning, warning_value(warn_agent, warning));
    Response {
        status,
        reason: reason_phrase(status).to_owned(),
        headers,
        body: Bytes::new(),
    }
}

/// A `Warning: 399 agent "text"` value (RFC 3261 §20.43); quotes and
/// backslashes in `text` are escaped, control characters dropped.
pub fn warning_value(agent: &str, text: &str) -> String {
    let mut out = String::with_capacity(text.len() + agent.len() + 8);
    out.push_str("399 ");
    out.push_str(agent);
    out.push_str(" \"");
    for c in text.chars().take(200) {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Where a response to a request with this top Via goes over UDP
/// (RFC 3261 §18.2.2 with RFC 3581 §4): the source address, with the port
/// from `rport` if the client asked for it, else the sent-by port, else 5060.
pub fn udp_response_target(via: Option<&Via>, source: SocketAddr) -> SocketAddr {
    let Some(via) = via else {
        return source;
    };
    if via.rport().is_some() {
        return source;
    }
    let port = via.port.unwrap_or(5060);
    SocketAddr::new(source.ip(), port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite() -> Request {
        let text = "INVITE sip:1002@pbx.test SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKedge\r\n\
Record-Route: <sip:192.0.2.1;lr;ftag=a>\r\n\
Record-Route: <sip:198.51.100.1;lr>\r\n\
From: <sip:1001@pbx.test>;tag=a\r\n\
To: <sip:1002@pbx.test>\r\n\
Call-ID: rr-1\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\r\n";
        match sip_proto::Message::parse(text.as_bytes(), &sip_proto::Limits::default()) {
            Ok(sip_proto::Message::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn dialog_establishing_responses_carry_the_record_route_in_order() {
        let req = invite();
        for status in [180, 200] {
            let resp = response_to(&req, status, "b", "");
            let rr: Vec<&str> = resp.headers.get_all(&HeaderName::RecordRoute).collect();
            assert_eq!(
                rr,
                ["<sip:192.0.2.1;lr;ftag=a>", "<sip:198.51.100.1;lr>"],
                "{status}"
            );
        }
        for status in [100, 486] {
            let resp = response_to(&req, status, "b", "");
            assert!(
                resp.headers.get(&HeaderName::RecordRoute).is_none(),
                "{status}"
            );
        }
    }
}
