//! The SIP endpoint of the real binary over real UDP and TCP sockets: what
//! it answers by itself (RFC 3261 §8.2, §11, §17.2.3, §18; RFC 3581; RFC
//! 5626 §3.5.1), and that malformed input gets 400 or nothing — never a
//! crash.

use std::net::UdpSocket;
use std::time::Duration;

use sip_proto::{HeaderName, Message, Response};
use testkit::{Server, Ua, UaError};

const WAIT: Duration = Duration::from_secs(3);

fn server() -> Server {
    Server::start(env!("CARGO_BIN_EXE_switchboard").as_ref()).expect("switchboard starts")
}

fn udp(s: &Server) -> Ua {
    Ua::udp(s.udp.expect("udp listener")).expect("udp ua")
}

fn tcp(s: &Server) -> Ua {
    Ua::tcp(s.tcp.expect("tcp listener")).expect("tcp ua")
}

fn options(ua: &mut Ua) -> Response {
    let req = ua.request("OPTIONS", "sip:pbx@test.invalid");
    ua.transact(&req).expect("OPTIONS answered")
}

fn header<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
    r.headers.get_raw(name)
}

#[test]
fn options_over_udp_gets_200_with_allow_accept_supported() {
    let s = server();
    let mut ua = udp(&s);
    let r = options(&mut ua);
    assert_eq!(r.status, 200);
    let allow = header(&r, "Allow").expect("Allow");
    assert!(allow.contains("OPTIONS"), "{allow}");
    assert!(header(&r, "Accept").is_some());
    assert!(header(&r, "Supported").is_some());
    let to = r.headers.to().expect("To");
    assert!(to.tag().is_some(), "a final response carries a To tag");
    assert!(header(&r, "Server").is_some_and(|v| v.contains("Switchboard")));
}

#[test]
fn options_over_tcp_gets_200() {
    let s = server();
    let mut ua = tcp(&s);
    assert_eq!(options(&mut ua).status, 200);
    // The connection is reused for the next request.
    assert_eq!(options(&mut ua).status, 200);
}

#[test]
fn options_over_ipv6_udp_and_tcp() {
    let config = r#"
[sip]
listen = ["udp:[::1]:0", "tcp:[::1]:0"]
domain = "test.invalid"
[admin]
listen = "127.0.0.1:0"
"#;
    let s = Server::start_with(env!("CARGO_BIN_EXE_switchboard").as_ref(), config)
        .expect("switchboard on ::1");
    assert!(s.udp.is_some_and(|a| a.is_ipv6()));
    assert_eq!(options(&mut udp(&s)).status, 200);
    assert_eq!(options(&mut tcp(&s)).status, 200);
}

#[test]
fn top_via_gets_received_and_rport() {
    let s = server();
    let mut ua = udp(&s);
    let port = ua.local_addr().port();
    // Claim a sent-by the server cannot see, as a phone behind NAT does.
    let req = ua
        .request("OPTIONS", "sip:pbx@test.invalid")
        .header("Via", "SIP/2.0/UDP 10.9.9.9:5070;branch=z9hG4bKnat1;rport");
    let r = ua.transact(&req).expect("answered at the source port");
    let via = r.headers.via().expect("Via");
    assert_eq!(via[0].received(), Some("127.0.0.1"));
    assert_eq!(via[0].rport(), Some(Some(port)));
}

#[test]
fn without_rport_the_response_goes_to_the_sent_by_port() {
    let s = server();
    let listener = UdpSocket::bind("127.0.0.1:0").expect("bind");
    listener.set_read_timeout(Some(WAIT)).expect("timeout");
    let sent_by = listener.local_addr().expect("addr");
    let mut ua = udp(&s);
    let via = format!("SIP/2.0/UDP {sent_by};branch=z9hG4bKnorport1");
    let req = ua
        .request("OPTIONS", "sip:pbx@test.invalid")
        .header("Via", &via);
    ua.send(req.build().as_bytes()).expect("send");
    let mut buf = [0u8; 4096];
    let (n, _) = listener
        .recv_from(&mut buf)
        .expect("response at the sent-by port");
    let Ok(Message::Response(r)) = Message::parse(&buf[..n], &Default::default()) else {
        panic!("not a response");
    };
    assert_eq!(r.status, 200);
    assert!(matches!(
        ua.recv(Duration::from_millis(300)),
        Err(UaError::Timeout)
    ));
}

#[test]
fn unauthenticated_invite_gets_one_stateless_407() {
    let s = server();
    let mut ua = udp(&s);
    let invite = ua.request("INVITE", "sip:1001@test.invalid");
    let r = ua.transact(&invite).expect("answer");
    assert_eq!(r.status, 407);
    assert!(header(&r, "Proxy-Authenticate").is_some_and(|a| a.starts_with("Digest")));
    // The challenge is sent once, never retransmitted (a spoofed source
    // must not turn one INVITE into many 407s towards a victim, RFC 3261
    // §26.3.2.4); the ACK for it gets no answer.
    let cseq = invite
        .get("CSeq")
        .unwrap_or_default()
        .replace("INVITE", "ACK");
    let ack = invite
        .clone()
        .with_method("ACK")
        .header("CSeq", &cseq)
        .header("To", header(&r, "To").expect("To"));
    ua.send(ack.build().as_bytes()).expect("send ACK");
    assert!(
        matches!(ua.recv(Duration::from_millis(1500)), Err(UaError::Timeout)),
        "nothing after the one 407"
    );
    // A retransmitted INVITE just gets a fresh challenge.
    let again = ua.transact(&invite).expect("answer");
    assert_eq!(again.status, 407);
}

#[test]
fn retransmitted_request_is_answered_from_the_transaction() {
    let s = server();
    let mut ua = udp(&s);
    let req = ua.request("OPTIONS", "sip:pbx@test.invalid");
    let first = ua.transact(&req).expect("first");
    let second = ua.transact(&req).expect("retransmission answered");
    assert_eq!(
        first.headers.to().expect("To").tag(),
        second.headers.to().expect("To").tag(),
        "the same response, not a new one"
    );
}

#[test]
fn unknown_method_gets_501_and_known_unserved_405() {
    let s = server();
    let mut ua = udp(&s);
    let r = ua
        .transact(&ua.request("FROBNICATE", "sip:pbx@test.invalid"))
        .expect("answer");
    assert_eq!(r.status, 501);
    // BYE is served, but only inside a dialog: 481 (RFC 3261 §15.1.2).
    let r = ua
        .transact(&ua.request("BYE", "sip:pbx@test.invalid"))
        .expect("answer");
    assert_eq!(r.status, 481);
    for method in ["MESSAGE", "PUBLISH"] {
        let r = ua
            .transact(&ua.request(method, "sip:pbx@test.invalid"))
            .expect("answer");
        assert_eq!(r.status, 405, "{method}");
        assert!(header(&r, "Allow").is_some(), "{method}: 405 carries Allow");
    }
}

#[test]
fn max_forwards_zero_gets_483_except_options() {
    let s = server();
    let mut ua = udp(&s);
    let invite = ua
        .request("INVITE", "sip:1001@test.invalid")
        .header("Max-Forwards", "0");
    assert_eq!(ua.transact(&invite).expect("answer").status, 483);
    let opt = ua
        .request("OPTIONS", "sip:pbx@test.invalid")
        .header("Max-Forwards", "0");
    assert_eq!(ua.transact(&opt).expect("answer").status, 200);
}

#[test]
fn unsupported_require_gets_420_with_unsupported() {
    let s = server();
    let mut ua = udp(&s);
    let req = ua
        .request("OPTIONS", "sip:pbx@test.invalid")
        .header("Require", "foo, bar");
    let r = ua.transact(&req).expect("answer");
    assert_eq!(r.status, 420);
    assert_eq!(header(&r, "Unsupported"), Some("foo, bar"));
}

#[test]
fn unknown_request_uri_scheme_gets_416() {
    let s = server();
    let mut ua = udp(&s);
    let req = ua.request("OPTIONS", "nobodyKnowsThisScheme:opaque");
    assert_eq!(ua.transact(&req).expect("answer").status, 416);
}

#[test]
fn cancel_without_invite_gets_481() {
    let s = server();
    let mut ua = udp(&s);
    let req = ua.request("CANCEL", "sip:1001@test.invalid");
    assert_eq!(ua.transact(&req).expect("answer").status, 481);
}

#[test]
fn malformed_request_with_readable_via_gets_400_with_warning() {
    let s = server();
    let mut ua = udp(&s);
    let port = ua.local_addr().port();
    let bad = format!(
        "OPTIONS sip:pbx@test.invalid SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKbad1;rport\r\n\
         From: <sip:a@test.invalid>;tag=1\r\n\
         To: <sip:pbx@test.invalid>\r\n\
         Call-ID: bad-cseq\r\n\
         CSeq: 99999999999 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    );
    ua.send(bad.as_bytes()).expect("send");
    // The 400 echoes the malformed CSeq, so read it leniently.
    let r = ua.recv_status(WAIT).expect("400");
    assert_eq!(r.status, 400, "{}", r.text);
    let warning = r.header("Warning").expect("Warning names the fault");
    assert!(warning.starts_with("399 "), "{warning}");
    assert!(warning.to_ascii_lowercase().contains("cseq"), "{warning}");
    assert_eq!(r.header("Call-ID"), Some("bad-cseq"));
    assert!(
        r.header("To").is_some_and(|t| t.contains("tag=")),
        "{}",
        r.text
    );
}

#[test]
fn unknown_sip_version_gets_505() {
    let s = server();
    let mut ua = udp(&s);
    let port = ua.local_addr().port();
    let bad = format!(
        "OPTIONS sip:pbx@test.invalid SIP/7.0\r\n\
         Via: SIP/7.0/UDP 127.0.0.1:{port};branch=z9hG4bKv7;rport\r\n\
         From: <sip:a@test.invalid>;tag=1\r\nTo: <sip:pbx@test.invalid>\r\n\
         Call-ID: v7\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    ua.send(bad.as_bytes()).expect("send");
    let r = ua.recv_status(WAIT).expect("505");
    assert_eq!(r.status, 505, "{}", r.text);
    assert!(
        r.header("Warning").is_some_and(|w| w.contains("SIP/7.0")),
        "{}",
        r.text
    );
}

#[test]
fn garbage_is_dropped_and_the_server_carries_on() {
    let s = server();
    let mut ua = udp(&s);
    for junk in [
        &b"\x00\x01\x02garbage"[..],
        b"",
        b"SIP/2.0",
        b"\r\n\r\n",
        &[0xff; 1400],
    ] {
        ua.send(junk).expect("send");
    }
    assert!(matches!(
        ua.recv(Duration::from_millis(300)),
        Err(UaError::Timeout)
    ));
    assert_eq!(options(&mut ua).status, 200);
}

#[test]
fn tcp_keepalive_ping_gets_pong() {
    let s = server();
    let mut ua = tcp(&s);
    ua.send(b"\r\n\r\n").expect("ping");
    assert_eq!(ua.recv_raw(WAIT).expect("pong"), b"\r\n");
    assert_eq!(options(&mut ua).status, 200);
}

#[test]
fn tcp_frames_split_and_pipelined_messages() {
    let s = server();
    let mut ua = tcp(&s);
    let one = ua.request("OPTIONS", "sip:pbx@test.invalid").build();
    let two = ua.request("OPTIONS", "sip:pbx@test.invalid").build();
    // Split one message over two writes.
    let (a, b) = one.as_bytes().split_at(one.len() / 2);
    ua.send(a).expect("first half");
    std::thread::sleep(Duration::from_millis(100));
    ua.send(b).expect("second half");
    assert_eq!(ua.recv_response(WAIT).expect("answer").status, 200);
    // Two messages in one write.
    let both = format!("{one}{two}");
    ua.send(both.as_bytes()).expect("pipelined");
    let r1 = ua.recv_response(WAIT).expect("first");
    let r2 = ua.recv_response(WAIT).expect("second");
    assert_eq!((r1.status, r2.status), (200, 200));
}

#[test]
fn tcp_message_over_the_size_limit_closes_the_connection() {
    let s = server();
    let mut ua = tcp(&s);
    let req = ua
        .request("OPTIONS", "sip:pbx@test.invalid")
        .header("X-Padding", &"a".repeat(100_000));
    ua.send(req.build().as_bytes()).expect("send");
    // An answer (400/413/513) may come first; then the connection closes.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match ua.recv_raw(Duration::from_millis(500)) {
            Err(UaError::Closed) | Err(UaError::Io(_)) => break,
            Ok(raw) => {
                let m = Message::parse(&raw, &Default::default()).expect("an error response");
                let Message::Response(r) = m else {
                    panic!("not a response")
                };
                assert!(r.status >= 400, "{}", r.status);
            }
            Err(e) => assert!(std::time::Instant::now() < deadline, "not closed: {e}"),
        }
    }
    assert_eq!(options(&mut tcp(&s)).status, 200, "server still serves");
}

#[test]
fn metrics_count_requests_and_responses() {
    let s = server();
    let mut ua = udp(&s);
    options(&mut ua);
    ua.transact(&ua.request("INVITE", "sip:1@test.invalid"))
        .expect("407");
    ua.send(b"garbage\r\n\r\n").expect("send");
    std::thread::sleep(Duration::from_millis(200));
    let (status, body) = s.http_get("/metrics").expect("metrics");
    assert_eq!(status, 200);
    let has = |needle: &str| body.lines().any(|l| l.starts_with(needle));
    assert!(
        has(r#"sip_messages_in_total{kind="request",method="OPTIONS"}"#),
        "{body}"
    );
    assert!(
        has(r#"sip_messages_out_total{kind="response",status="407"}"#),
        "{body}"
    );
    assert!(has(r#"sip_parse_errors_total{transport="udp"}"#), "{body}");
    assert!(has("sip_transactions_active"), "{body}");
}

#[test]
fn headers_by_compact_name_are_answered() {
    let s = server();
    let mut ua = udp(&s);
    let port = ua.local_addr().port();
    let compact = format!(
        "OPTIONS sip:pbx@test.invalid SIP/2.0\r\n\
         v: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKcompact;rport\r\n\
         f: <sip:a@test.invalid>;tag=1\r\nt: <sip:pbx@test.invalid>\r\n\
         i: compact-1\r\nCSeq: 1 OPTIONS\r\nl: 0\r\n\r\n"
    );
    ua.send(compact.as_bytes()).expect("send");
    let r = ua.recv_response(WAIT).expect("answer");
    assert_eq!(r.status, 200);
    assert_eq!(r.headers.get(&HeaderName::CallId), Some("compact-1"));
}

#[test]
fn stun_keepalive_over_udp_gets_our_mapped_address() {
    // RFC 5626 §4.4.2: outbound-capable phones send STUN Binding requests
    // to the SIP port to keep their NAT binding open.
    let s = server();
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut req = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
    req.extend_from_slice(&[9u8; 12]);
    sock.send_to(&req, s.udp.expect("udp")).expect("send");
    let mut buf = [0u8; 128];
    let (n, _) = sock.recv_from(&mut buf).expect("binding response");
    assert_eq!(&buf[..2], &[0x01, 0x01], "binding success");
    assert_eq!(&buf[8..20], &[9u8; 12], "same transaction id");
    assert_eq!(n, 32);
    let port = u16::from_be_bytes([buf[26], buf[27]]) ^ 0x2112;
    assert_eq!(port, sock.local_addr().expect("addr").port());
}
