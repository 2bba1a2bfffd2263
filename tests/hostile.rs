//! Issue 11's attacks together, against the real binary, for a bounded time
//! (about ten seconds), while two phones keep a call with audio both ways:
//!
//! - spoofed and guessing REGISTERs from the phones' own IP (garbage nonces,
//!   wrong passwords for another extension): the office must not be banned;
//! - RTP sprayed at every port of the range from another host: no audio
//!   reaches it and the call's audio is not disturbed;
//! - slow TCP connections (one byte at a time, never a whole message) and
//!   a pipelining one (thousands of OPTIONS on one connection, read all the
//!   while): the slow ones are closed, every pipelined request answered;
//! - an OPTIONS flood over UDP from many source ports of one host.
//!
//! Afterwards: both phones heard each other all along, the sprayer heard
//! nothing, the phones re-register, a new call goes through (no call lost),
//! and the server's resident memory grew by a bounded amount.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use testkit::{Phone, RemoteMedia, RtpPeer, Server, decode_run, dominant_frequency};

const DOMAIN: &str = "test.invalid";
const WAIT: Duration = Duration::from_secs(5);
/// How long the attacks and the call's audio run.
const ATTACK: Duration = Duration::from_secs(6);
const RTP_FIRST: u16 = 29700;
const RTP_LAST: u16 = 29759;
/// OPTIONS sent back to back on one TCP connection.
const PIPELINED: usize = 3000;
/// Memory the server may gain under the attacks (KiB).
const RSS_GROWTH_KIB: u64 = 96 * 1024;

const OFFER: &[&str] = &["PCMU", "telephone-event"];

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

fn office() -> Server {
    let config = format!(
        r#"
[sip]
listen = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]
domain = "{DOMAIN}"

[admin]
listen = "127.0.0.1:0"

[storage]
backend = "memory"

[security]
# Slow connections are cut within the test's time.
tcp_message_timeout = "2s"

[registrar]
qualify_interval = "0s"

[media]
rtp_ports = "{RTP_FIRST}-{RTP_LAST}"

[[extension]]
id = "1001"
password = "pw-1001"

[[extension]]
id = "1002"
password = "pw-1002"

[[extension]]
id = "1003"
password = "pw-1003"
"#
    );
    Server::start_with(env!("CARGO_BIN_EXE_switchboard").as_ref(), &config)
        .expect("switchboard starts")
}

fn phone(server: &Server, user: &str) -> Phone {
    let mut p = Phone::udp(
        server.udp.expect("udp"),
        user,
        &format!("pw-{user}"),
        DOMAIN,
    );
    assert_eq!(p.register(), 200, "{user} registers");
    p
}

fn media_of(body: &[u8]) -> RemoteMedia {
    RemoteMedia::parse(body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

/// A REGISTER for `user` with an Authorization that answers no nonce we
/// issued (what a spoofer who never sees our challenges sends).
fn forged_register(to: SocketAddr, from: SocketAddr, user: &str, n: usize) -> String {
    format!(
        "REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKforged{n}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@{DOMAIN}>;tag=f{n}\r\nTo: <sip:{user}@{DOMAIN}>\r\n\
         Call-ID: forged-{n}@{to}\r\nCSeq: {n} REGISTER\r\nContact: <sip:{user}@{from}>\r\n\
         Authorization: Digest username=\"{user}\", realm=\"{DOMAIN}\", nonce=\"bogus{n}\", \
         uri=\"sip:{DOMAIN}\", response=\"00000000000000000000000000000000\"\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn options(to: SocketAddr, from: SocketAddr, transport: &str, n: usize) -> String {
    format!(
        "OPTIONS sip:ping@{to} SIP/2.0\r\nVia: SIP/2.0/{transport} {from};branch=z9hG4bKopt{n}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:flood@{DOMAIN}>;tag=o{n}\r\nTo: <sip:ping@{DOMAIN}>\r\n\
         Call-ID: opt-{n}@{from}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Ban poisoning: garbage nonces for the phones' own extension, and wrong
/// passwords (answering real nonces) for another one, from the phones' IP.
fn spoof_and_guess(server: SocketAddr, stop: &AtomicBool) {
    let socket = UdpSocket::bind((ip(1), 0)).expect("socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let from = socket.local_addr().unwrap();
    let mut guesser = Phone::udp(server, "1003", "wrong-password", DOMAIN);
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        for user in ["1001", "1002"] {
            n += 1;
            let _ = socket.send_to(forged_register(server, from, user, n).as_bytes(), server);
        }
        let _ = guesser.register();
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Slow connections from 127.0.0.4: a header that never ends, a byte every
/// 100 ms. Returns how many the server closed before the attack ended.
fn slowloris(server: SocketAddr, stop: &AtomicBool) -> usize {
    let mut conns: Vec<TcpStream> = (0..16)
        .filter_map(|_| {
            let socket =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
            socket.bind(&SocketAddr::new(ip(4), 0).into()).ok()?;
            socket.connect(&server.into()).ok()?;
            let mut stream: TcpStream = socket.into();
            stream
                .write_all(b"OPTIONS sip:x SIP/2.0\r\nX-Slow: ")
                .ok()?;
            Some(stream)
        })
        .collect();
    let mut closed = 0;
    while !stop.load(Ordering::Relaxed) && !conns.is_empty() {
        conns.retain_mut(|c| {
            let alive = c.write_all(b"a").is_ok();
            if !alive {
                closed += 1;
            }
            alive
        });
        std::thread::sleep(Duration::from_millis(100));
    }
    closed
}

/// Pipelined OPTIONS on one TCP connection from 127.0.0.5, read all the
/// while; how many were answered.
fn pipeline(server: SocketAddr) -> usize {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.bind(&SocketAddr::new(ip(5), 0).into()).unwrap();
    socket.connect(&server.into()).expect("connect");
    let stream: TcpStream = socket.into();
    let from = stream.local_addr().unwrap();
    let mut reader = stream.try_clone().unwrap();
    reader
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    std::thread::scope(|s| {
        let read = s.spawn(move || {
            let mut text = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut answers = 0;
            while answers < PIPELINED && Instant::now() < deadline {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        text.extend_from_slice(&buf[..n]);
                        answers = memchr_count(&text, b"SIP/2.0 200");
                    }
                    Err(_) => {}
                }
            }
            answers
        });
        let mut writer = &stream;
        for n in 0..PIPELINED {
            if writer
                .write_all(options(server, from, "TCP", n).as_bytes())
                .is_err()
            {
                break;
            }
        }
        read.join().expect("reader")
    })
}

fn memchr_count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

/// OPTIONS from 64 source ports of 127.0.0.3, as fast as they go.
fn options_flood(server: SocketAddr, stop: &AtomicBool, sent: &AtomicUsize) {
    let sockets: Vec<UdpSocket> = (0..64)
        .filter_map(|_| UdpSocket::bind((ip(3), 0)).ok())
        .collect();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        for s in &sockets {
            n += 1;
            let from = s.local_addr().unwrap();
            let _ = s.send_to(options(server, from, "UDP", n).as_bytes(), server);
        }
        sent.fetch_add(sockets.len(), Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn heard(peer: &RtpPeer, from: SocketAddr) -> (usize, Option<f64>) {
    let got: Vec<_> = peer
        .received()
        .into_iter()
        .filter(|p| p.header.is_some() && p.from == from)
        .collect();
    (got.len(), dominant_frequency(&decode_run(&got), 8000))
}

#[test]
fn a_call_survives_every_attack_at_once() {
    let server = office();
    let udp = server.udp.expect("udp");
    let tcp = server.tcp.expect("tcp");
    let mut a = phone(&server, "1001");
    let mut b = phone(&server, "1002");
    let (ra, rb) = (RtpPeer::localhost(), RtpPeer::localhost());
    let call = a
        .call_sdp("1002", &[], &ra.sdp_offer(OFFER))
        .expect("INVITE sent");
    let incoming = b.incoming(WAIT).expect("callee gets the INVITE");
    let b_media = media_of(&incoming.invite.body);
    b.reply_sdp(&incoming.invite, &incoming.tag, 200, &rb.sdp_answer(OFFER))
        .unwrap();
    let (ok, _) = a.final_response(WAIT).expect("200 relayed");
    assert_eq!(ok.status, 200);
    let a_media = media_of(&ok.body);
    let mut dialog = a.ack(&call, &ok).expect("ACK");
    b.request("ACK", WAIT).expect("ACK relayed");
    let rss_before = server.rss_kib();

    let sprayer = RtpPeer::bind(ip(2)).expect("socket on 127.0.0.2");
    let stop = AtomicBool::new(false);
    let flooded = AtomicUsize::new(0);
    let (closed, answered) = std::thread::scope(|s| {
        s.spawn(|| spoof_and_guess(udp, &stop));
        s.spawn(|| testkit::spray_rtp(&sprayer, ip(1), RTP_FIRST..=RTP_LAST, &stop));
        s.spawn(|| options_flood(udp, &stop, &flooded));
        let slow = s.spawn(|| slowloris(tcp, &stop));
        let piped = s.spawn(|| pipeline(tcp));
        // The call talks both ways all through the attack.
        let talk = s.spawn(|| ra.send_tone(a_media.addr, 0, 1000.0, ATTACK));
        rb.send_tone(b_media.addr, 0, 2000.0, ATTACK)
            .expect("callee sends");
        talk.join().expect("caller thread").expect("caller sends");
        let answered = piped.join().expect("pipeline thread");
        // Slow connections get the rest of a message deadline to be closed.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !slow.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        stop.store(true, Ordering::Relaxed);
        (slow.join().expect("slowloris thread"), answered)
    });
    for p in [&ra, &rb, &sprayer] {
        p.settle(Duration::from_millis(300), WAIT);
    }

    // Audio both ways, from the PBX's ports, all through.
    let sent = (ATTACK.as_millis() / 20) as usize;
    let (to_b, f_b) = heard(&rb, b_media.addr);
    let (to_a, f_a) = heard(&ra, a_media.addr);
    assert!(to_b >= sent * 9 / 10, "callee got {to_b} of {sent} packets");
    assert!(to_a >= sent * 9 / 10, "caller got {to_a} of {sent} packets");
    assert!(f_b.is_some_and(|f| (f - 1000.0).abs() < 15.0), "{f_b:?}");
    assert!(f_a.is_some_and(|f| (f - 2000.0).abs() < 15.0), "{f_a:?}");
    assert_eq!(sprayer.count(), 0, "no audio to the sprayer");

    assert_eq!(answered, PIPELINED, "every pipelined OPTIONS answered");
    assert!(closed > 0, "slow TCP connections are closed");
    assert!(flooded.load(Ordering::Relaxed) > 1000);

    // The office is not banned: the phones re-register, end the call and
    // place a new one.
    assert_eq!(a.register(), 200, "1001 re-registers after the attack");
    assert_eq!(b.register(), 200, "1002 re-registers after the attack");
    assert_eq!(a.request_in(&mut dialog, "BYE", None).unwrap().status, 200);
    let bye = b.request("BYE", WAIT).expect("callee gets the BYE");
    b.reply(&bye, &incoming.tag, 200).unwrap();
    a.call("1002").expect("a new call");
    let again = b.incoming(WAIT).expect("the new call rings");
    b.reply(&again.invite, &again.tag, 486).unwrap();
    // The shipped dialplan sends a busy callee's caller to voicemail.
    assert_eq!(a.final_response(WAIT).unwrap().0.status, 200);

    if let (Some(before), Some(after)) = (rss_before, server.rss_kib()) {
        assert!(
            after < before + RSS_GROWTH_KIB,
            "RSS grew from {before} KiB to {after} KiB"
        );
    }
}
