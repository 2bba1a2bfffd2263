//! The SIP endpoint under hostile traffic, over real sockets against the
//! real binary (issue 11, items 7, 8 and parts of 9): per-IP TCP
//! connection caps, the per-message deadline (slowloris), a long pipeline
//! on one TCP connection, the transaction table's bound, the per-source
//! UDP token bucket, no 100 Trying before authentication, and bans
//! checked before STUN and at TCP accept.
//!
//! Clients that must come from another address bind to 127.0.0.2 (Linux
//! routes all of 127/8 to loopback).

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use sip_proto::{Limits, Message};
use testkit::{Server, challenges};

const DOMAIN: &str = "test.invalid";
const WAIT: Duration = Duration::from_secs(3);
const OTHER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

fn config(security: &str) -> String {
    format!(
        r#"
[sip]
listen = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]
domain = "{DOMAIN}"

[admin]
listen = "127.0.0.1:0"

[storage]
backend = "memory"

[security]
{security}

[[extension]]
id = "1001"
password = "secret-1001"
"#
    )
}

fn start(security: &str) -> Server {
    Server::start_with(
        env!("CARGO_BIN_EXE_switchboard").as_ref(),
        &config(security),
    )
    .expect("switchboard starts")
}

/// The value of an unlabelled metric from the admin API's `/metrics` (the
/// one place these tests read the admin API, so adding its bearer token
/// later is one edit).
fn metric(s: &Server, name: &str) -> Option<f64> {
    let (status, body) = s.http_get("/metrics").expect("admin API answers");
    assert_eq!(status, 200, "{body}");
    body.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let rest = rest.strip_prefix(' ').or_else(|| {
            // `name{labels} value`
            rest.starts_with('{')
                .then(|| rest.split_once("} ").map(|(_, v)| v))
                .flatten()
        })?;
        rest.trim().parse().ok()
    })
}

/// An OPTIONS from `local` over `transport` with a branch and Call-ID made
/// unique by `n`.
fn options(local: SocketAddr, transport: &str, n: u64) -> String {
    format!(
        "OPTIONS sip:pbx@{DOMAIN} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {local};branch=z9hG4bK-hard-{n:x}-{r:x};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@{DOMAIN}>;tag={n:x}\r\n\
         To: <sip:pbx@{DOMAIN}>\r\n\
         Call-ID: hard-{n:x}-{r:x}@test\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n",
        r = rand::random::<u32>()
    )
}

/// A UDP socket on `ip`, port 0, with a read timeout.
fn udp_on(ip: IpAddr) -> UdpSocket {
    let sock = UdpSocket::bind(SocketAddr::new(ip, 0)).expect("bind udp");
    sock.set_read_timeout(Some(WAIT)).expect("timeout");
    sock
}

/// A TCP connection to `server` from `ip` (any port).
fn tcp_from(ip: IpAddr, server: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .expect("tcp socket");
    socket
        .bind(&SocketAddr::new(ip, 0).into())
        .expect("bind tcp client");
    socket
        .connect_timeout(&server.into(), WAIT)
        .expect("tcp connect");
    let stream: TcpStream = socket.into();
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Reads one framed SIP message from `stream` (buffering in `buf`):
/// `Ok(None)` when the peer closed the connection.
fn read_message(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    timeout: Duration,
) -> std::io::Result<Option<Vec<u8>>> {
    let deadline = Instant::now() + timeout;
    loop {
        while buf.starts_with(b"\r\n") {
            buf.drain(..2);
        }
        if let Ok(Some(len)) = Message::frame_len(buf, &Limits::default()) {
            return Ok(Some(buf.drain(..len).collect()));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        let mut chunk = [0u8; 16_384];
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(None),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

fn status_of(raw: &[u8]) -> u16 {
    match Message::parse(raw, &Limits::default()) {
        Ok(Message::Response(r)) => r.status,
        other => panic!("not a response: {other:?}"),
    }
}

/// Sends an OPTIONS over `stream` and returns the status of the answer, or
/// `None` if the server closed the connection instead.
fn tcp_options(stream: &mut TcpStream, n: u64) -> Option<u16> {
    let local = stream.local_addr().expect("local addr");
    if stream
        .write_all(options(local, "TCP", n).as_bytes())
        .is_err()
    {
        return None;
    }
    let mut buf = Vec::new();
    match read_message(stream, &mut buf, WAIT) {
        Ok(Some(raw)) => Some(status_of(&raw)),
        Ok(None) => None,
        Err(e) if e.kind() == ErrorKind::ConnectionReset => None,
        Err(e) => panic!("no answer and not closed either: {e}"),
    }
}

fn udp_status(sock: &UdpSocket, timeout: Duration) -> Option<u16> {
    sock.set_read_timeout(Some(timeout)).expect("timeout");
    let mut buf = [0u8; 65_535];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    Some(status_of(&buf[..n]))
}

#[test]
fn tcp_connections_are_capped_per_source_ip() {
    let s = start("tcp_max_per_ip = 3");
    let server = s.tcp.expect("tcp listener");
    let mut held = Vec::new();
    for n in 0..3 {
        let mut c = tcp_from(Ipv4Addr::LOCALHOST.into(), server);
        assert_eq!(tcp_options(&mut c, n), Some(200), "connection {n} served");
        held.push(c);
    }
    // The fourth from 127.0.0.1 is closed without an answer...
    let mut fourth = tcp_from(Ipv4Addr::LOCALHOST.into(), server);
    assert_eq!(tcp_options(&mut fourth, 3), None, "over the per-IP cap");
    // ...while another address is still served, and so are the first three.
    let mut other = tcp_from(OTHER_IP, server);
    assert_eq!(
        tcp_options(&mut other, 4),
        Some(200),
        "another IP is served"
    );
    for (n, c) in held.iter_mut().enumerate() {
        assert_eq!(tcp_options(c, 10 + n as u64), Some(200));
    }
    // Once one closes, its slot is free again.
    drop(held.pop());
    let deadline = Instant::now() + WAIT;
    loop {
        let mut again = tcp_from(Ipv4Addr::LOCALHOST.into(), server);
        if tcp_options(&mut again, 20) == Some(200) {
            break;
        }
        assert!(Instant::now() < deadline, "a freed slot is reused");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_message_trickled_byte_by_byte_is_cut_off_at_the_message_deadline() {
    // The idle timeout stays at its default (10 minutes): only the
    // per-message deadline of 2 s can close this connection.
    let s = start(r#"tcp_message_timeout = "2s""#);
    let mut c = tcp_from(Ipv4Addr::LOCALHOST.into(), s.tcp.expect("tcp"));
    c.write_all(b"OPTIONS sip:pbx@test.invalid SIP/2.0\r\nX-Slow: ")
        .expect("start of a message");
    // One byte every 250 ms of a header line that never ends, for at most
    // 15 s (7.5 times the deadline): the server must close before that.
    let started = Instant::now();
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(15) {
        if c.write_all(b"a").is_err() {
            closed = true;
            break;
        }
        c.set_read_timeout(Some(Duration::from_millis(250)))
            .expect("timeout");
        let mut b = [0u8; 1024];
        match c.read(&mut b) {
            Ok(0) => {
                closed = true;
                break;
            }
            // An error answer before closing is allowed.
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(
        closed,
        "a message still incomplete after the 2 s deadline kept its connection open for 15 s"
    );
    // The server carries on.
    let mut fresh = tcp_from(Ipv4Addr::LOCALHOST.into(), s.tcp.expect("tcp"));
    assert_eq!(tcp_options(&mut fresh, 1), Some(200));
}

#[test]
fn ten_thousand_pipelined_options_on_one_tcp_connection_are_all_answered() {
    const COUNT: u64 = 10_000;
    let s = start("");
    let mut c = tcp_from(Ipv4Addr::LOCALHOST.into(), s.tcp.expect("tcp"));
    let local = c.local_addr().expect("local addr");
    let mut writer = c.try_clone().expect("clone");
    let sender = std::thread::spawn(move || {
        let mut batch = String::new();
        for n in 0..COUNT {
            batch.push_str(&options(local, "TCP", n));
            if batch.len() > 32_768 {
                writer.write_all(batch.as_bytes()).expect("pipelined write");
                batch.clear();
            }
        }
        writer.write_all(batch.as_bytes()).expect("pipelined write");
    });
    // Read all the while. The whole exchange may take up to 120 s on a
    // loaded debug build; a gap of 10 s without any answer is the stall
    // this test is about.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut buf = Vec::new();
    let mut ok = 0u64;
    while ok < COUNT && Instant::now() < deadline {
        match read_message(&mut c, &mut buf, Duration::from_secs(10)) {
            Ok(Some(raw)) => {
                assert_eq!(status_of(&raw), 200);
                ok += 1;
            }
            Ok(None) => break,
            Err(_) => break,
        }
    }
    sender.join().expect("sender thread");
    assert_eq!(ok, COUNT, "answers to {COUNT} pipelined OPTIONS");
}

#[test]
fn options_leave_no_transactions_behind() {
    const COUNT: u64 = 3_000;
    let s = start("");
    let server = s.udp.expect("udp");
    let sock = udp_on(Ipv4Addr::LOCALHOST.into());
    let local = sock.local_addr().expect("local");
    let mut answered = 0;
    // In windows of 100 so neither side's socket buffer overflows.
    for window in 0..COUNT / 100 {
        for n in 0..100 {
            sock.send_to(options(local, "UDP", window * 100 + n).as_bytes(), server)
                .expect("send");
        }
        for _ in 0..100 {
            if udp_status(&sock, WAIT) == Some(200) {
                answered += 1;
            }
        }
    }
    assert!(answered >= COUNT * 99 / 100, "{answered} answered");
    // The gauge is refreshed once a second: read it after two.
    std::thread::sleep(Duration::from_millis(2_100));
    let active = metric(&s, "sip_transactions_active").expect("gauge");
    assert!(
        active < 50.0,
        "{active} transactions live after {COUNT} OPTIONS"
    );
}

#[test]
fn past_max_transactions_new_requests_get_503() {
    // Successful REGISTERs over UDP keep their transaction for 64*T1 to
    // absorb retransmissions; with room for two, the third gets 503.
    let s = start("max_transactions = 2");
    let server = s.udp.expect("udp");
    let mut ua = testkit::Ua::udp(server).expect("ua");
    for _ in 0..2 {
        let req = ua.register_request("1001", DOMAIN, 600);
        let r = ua
            .transact_authenticated(&req, "1001", "secret-1001")
            .expect("answer");
        assert_eq!(r.status, 200);
    }
    let req = ua.register_request("1001", DOMAIN, 600);
    let r = ua
        .transact_authenticated(&req, "1001", "secret-1001")
        .expect("answer");
    assert_eq!(r.status, 503, "the table is full");
    assert!(
        r.headers.get_raw("Retry-After").is_some(),
        "with Retry-After"
    );
}

#[test]
fn udp_flood_from_one_source_is_rate_limited_and_counted() {
    let s = start("udp_rate = 50\nudp_burst = 50");
    let server = s.udp.expect("udp");
    let flood = udp_on(Ipv4Addr::LOCALHOST.into());
    let local = flood.local_addr().expect("local");
    const FLOOD: u64 = 1_000;
    for n in 0..FLOOD {
        flood
            .send_to(options(local, "UDP", n).as_bytes(), server)
            .expect("send");
    }
    // Another source is served in the middle of it.
    let other = udp_on(OTHER_IP);
    let other_local = other.local_addr().expect("local");
    other
        .send_to(options(other_local, "UDP", 1).as_bytes(), server)
        .expect("send");
    assert_eq!(
        udp_status(&other, WAIT),
        Some(200),
        "another source is served"
    );
    let mut answered = 0u64;
    while udp_status(&flood, Duration::from_millis(500)).is_some() {
        answered += 1;
    }
    assert!(
        answered < FLOOD / 2,
        "{answered} of {FLOOD} flood datagrams answered"
    );
    let limited = metric(&s, "sip_rate_limited_total").expect("rate-limit counter");
    assert!(
        limited >= (FLOOD / 2) as f64,
        "{limited} counted as rate-limited"
    );
}

#[test]
fn invite_without_credentials_gets_the_407_alone() {
    let s = start("");
    let server = s.udp.expect("udp");
    let sock = udp_on(Ipv4Addr::LOCALHOST.into());
    let local = sock.local_addr().expect("local");
    let invite = format!(
        "INVITE sip:1001@{DOMAIN} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-noauth-{r:x};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:1001@{DOMAIN}>;tag=a{r:x}\r\n\
         To: <sip:1002@{DOMAIN}>\r\n\
         Call-ID: noauth-{r:x}@test\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:1001@{local}>\r\n\
         Content-Length: 0\r\n\r\n",
        r = rand::random::<u32>()
    );
    sock.send_to(invite.as_bytes(), server).expect("send");
    assert_eq!(
        udp_status(&sock, WAIT),
        Some(407),
        "the first answer is the challenge"
    );
    assert_eq!(
        udp_status(&sock, Duration::from_millis(1_500)),
        None,
        "and nothing else (no 100 Trying, no retransmission)"
    );
}

/// A STUN Binding request (RFC 5389) with transaction id `id`.
fn stun_request(id: u8) -> Vec<u8> {
    let mut req = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
    req.extend_from_slice(&[id; 12]);
    req
}

/// Bans 127.0.0.2 by one failed digest answer (the test config bans after
/// one failure).
fn ban_other_ip(s: &Server) {
    let server = s.udp.expect("udp");
    let sock = udp_on(OTHER_IP);
    let local = sock.local_addr().expect("local");
    let register = |cseq: u32, auth: &str| {
        format!(
            "REGISTER sip:{DOMAIN} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK-ban-{cseq}-{r:x};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:1001@{DOMAIN}>;tag=ban\r\n\
             To: <sip:1001@{DOMAIN}>\r\n\
             Call-ID: ban@test\r\n\
             CSeq: {cseq} REGISTER\r\n\
             Contact: <sip:1001@{local}>\r\n\
             {auth}Content-Length: 0\r\n\r\n",
            r = rand::random::<u32>()
        )
    };
    sock.send_to(register(1, "").as_bytes(), server)
        .expect("send");
    let mut buf = [0u8; 65_535];
    let (n, _) = sock.recv_from(&mut buf).expect("challenge");
    let Ok(Message::Response(challenge)) = Message::parse(&buf[..n], &Limits::default()) else {
        panic!("not a response");
    };
    assert_eq!(challenge.status, 401);
    let c = challenges(&challenge).into_iter().next().expect("digest");
    let auth = format!(
        "Authorization: {}\r\n",
        c.answer("1001", "wrong", "REGISTER", &format!("sip:{DOMAIN}"), 1)
    );
    sock.send_to(register(2, &auth).as_bytes(), server)
        .expect("send");
    // The failure is answered (or not); either way the source is banned
    // once the registrar has counted it.
    let deadline = Instant::now() + WAIT;
    while metric(s, "registrar_bans_active") != Some(1.0) {
        assert!(Instant::now() < deadline, "127.0.0.2 banned");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_banned_source_gets_no_stun_answer_and_no_tcp_connection() {
    let s = start("ban_after_failures = 1");
    let server = s.udp.expect("udp");
    ban_other_ip(&s);
    let banned = udp_on(OTHER_IP);
    banned.send_to(&stun_request(7), server).expect("send");
    banned
        .set_read_timeout(Some(Duration::from_millis(1_500)))
        .expect("timeout");
    let mut buf = [0u8; 128];
    assert!(
        banned.recv_from(&mut buf).is_err(),
        "a banned source's STUN binding request is not answered"
    );
    // A source that is not banned still gets its keep-alive answered.
    let fine = udp_on(Ipv4Addr::LOCALHOST.into());
    fine.send_to(&stun_request(8), server).expect("send");
    let (n, _) = fine.recv_from(&mut buf).expect("binding response");
    assert_eq!((&buf[..2], n), (&[0x01, 0x01][..], 32));
    // Over TCP the banned address is turned away at accept.
    let mut c = tcp_from(OTHER_IP, s.tcp.expect("tcp"));
    assert_eq!(tcp_options(&mut c, 1), None, "banned at accept");
    let mut ok = tcp_from(Ipv4Addr::LOCALHOST.into(), s.tcp.expect("tcp"));
    assert_eq!(tcp_options(&mut ok, 2), Some(200));
}
