//! Every RFC 4475 and RFC 5118 torture message sent to the real binary,
//! each on its own TCP connection (so the answer comes back on it whatever
//! the message's Via says), with the answer each must get: the status the
//! manifest's `rfc_response` names for this PBX (REGISTER is challenged
//! with 401, an INVITE from nobody we know with 407 before anything else is
//! looked at, a BYE outside any dialog gets 481, MESSAGE and other methods
//! we do not serve 405), or no answer. 100 Trying is not an answer here.
//! Afterwards the server still answers OPTIONS over UDP and TCP.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sip_proto::{Limits, Message};
use testkit::{Server, Ua};

/// What the server must do with one corpus message sent over TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Answer with this status.
    Status(u16),
    /// No answer at all (responses, and messages unframeable on a stream
    /// with nothing readable to answer).
    Nothing,
    /// accept-with-care: 400 if our parser rejects it (its own test pins
    /// which), else the status for its method.
    ParserDecides(u16),
}

use Expect::*;

/// `file -> expectation`, one row per manifest row (checked below).
const EXPECTED: &[(&str, Expect)] = &[
    // RFC 4475 §3.1.1: valid messages.
    ("wsinv.dat", Status(481)), // To has a tag: a dialog we do not have,
    ("intmeth.dat", Status(501)),
    ("esc01.dat", Status(407)),
    ("escnull.dat", Status(401)),
    ("esc02.dat", Status(501)), // RE%47IST%45R is not REGISTER
    ("lwsdisp.dat", Status(200)),
    ("longreq.dat", Status(407)),
    ("dblreq.dat", Status(401)), // the REGISTER; on TCP the rest is a second message
    ("semiuri.dat", Status(200)),
    ("transports.dat", Status(200)),
    ("mpart01.dat", Status(405)),
    ("unreason.dat", Nothing),
    ("noreason.dat", Nothing),
    // §3.1.2: invalid messages.
    ("badinv01.dat", Status(400)),
    ("clerr.dat", Nothing), // stream: waits for the body, then EOF closes it
    ("ncl.dat", Status(400)),
    ("scalar02.dat", Status(400)),
    ("scalarlg.dat", Nothing),
    ("quotbal.dat", ParserDecides(405)),
    ("ltgtruri.dat", ParserDecides(405)),
    ("lwsruri.dat", ParserDecides(405)),
    ("lwsstart.dat", ParserDecides(407)),
    ("trws.dat", ParserDecides(200)),
    ("escruri.dat", ParserDecides(407)),
    ("baddate.dat", ParserDecides(407)),
    ("regbadct.dat", ParserDecides(401)),
    ("badaspec.dat", ParserDecides(200)),
    // The archive's baddn ends without the empty line closing the header
    // section: on a stream it never completes, EOF closes it unanswered.
    ("baddn.dat", Nothing),
    ("badvers.dat", Status(505)),
    ("mismatch01.dat", Status(400)),
    ("mismatch02.dat", Status(501)), // RFC: 501 preferred, 400 allowed
    ("bigcode.dat", Nothing),
    // §3.2, §3.3, §3.4: transaction and application layer.
    ("badbranch.dat", Status(200)), // RFC 2543 matching fallback
    ("insuf.dat", Status(400)),
    ("unkscm.dat", Status(416)),
    ("novelsc.dat", Status(416)),
    ("unksm2.dat", Status(400)), // the AOR must be sip:/sips:
    ("bext01.dat", Status(420)),
    ("invut.dat", Status(407)),    // authentication precedes §8.2.3's 415
    ("regaut01.dat", Status(401)), // challenged with Digest, the scheme we understand
    ("multi01.dat", Status(400)),
    ("mcl01.dat", Status(400)),
    ("bcast.dat", Nothing),
    ("zeromf.dat", Status(200)), // OPTIONS with Max-Forwards 0: we are its final recipient
    ("cparam01.dat", Status(401)),
    ("cparam02.dat", Status(401)),
    ("regescrt.dat", Status(401)),
    ("sdp01.dat", Status(407)),
    ("inv2543.dat", Status(400)), // a stream message needs Content-Length
    // RFC 5118.
    ("ipv6-good.dat", Status(401)),
    ("ipv6-bad.dat", Status(400)),
    ("port-ambiguous.dat", Status(401)),
    ("port-unambiguous.dat", Status(401)),
    ("via-received-param-with-delim.dat", Status(481)),
    ("via-received-param-no-delim.dat", Status(200)),
    ("ipv6-in-sdp.dat", Status(407)),
    ("mult-ip-in-header.dat", Status(481)),
    ("mult-ip-in-sdp.dat", Status(407)),
    ("ipv4-mapped-ipv6.dat", Status(407)),
    ("ipv6-bug-abnf-3-colons.dat", ParserDecides(200)),
    ("ipv6-correct-abnf-2-colons.dat", Status(200)),
];

fn corpus_dir(set: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpora")
        .join(set)
}

fn manifest_files(set: &str) -> Vec<String> {
    let text = std::fs::read_to_string(corpus_dir(set).join("MANIFEST.tsv")).expect("manifest");
    text.lines()
        .skip(1)
        .filter_map(|l| l.split('\t').next())
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The first Call-ID (or compact `i:`) header value in `text`, leniently.
fn call_id_of(text: &str) -> Option<String> {
    text.split("\r\n\r\n").next()?.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        let name = name.trim();
        (name.eq_ignore_ascii_case("Call-ID") || name.eq_ignore_ascii_case("i"))
            .then(|| value.trim().to_owned())
    })
}

/// Sends `bytes` on a new connection, half-closes, reads every response
/// until the server closes, and returns the status of the one answering
/// the first message (same Call-ID; a stream may carry a second message,
/// answered first), or None if nothing came back.
fn first_answer(server: std::net::SocketAddr, bytes: &[u8]) -> Option<u16> {
    let mut conn = TcpStream::connect(server).expect("connect");
    conn.write_all(bytes).expect("write");
    conn.shutdown(Shutdown::Write).expect("half-close");
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut chunk = [0u8; 4096];
    loop {
        match conn.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("read: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "connection not closed within 5 s"
        );
    }
    let wanted = call_id_of(&String::from_utf8_lossy(bytes));
    let mut answers = Vec::new();
    let mut rest = &buf[..];
    while let Ok(Some(len)) = Message::frame_len(rest, &Limits::default()) {
        // A 400 echoes the sender's headers as they came, malformed or
        // not, so read the status line and Call-ID only.
        let head = String::from_utf8_lossy(&rest[..len]).into_owned();
        let status: Option<u16> = head
            .strip_prefix("SIP/2.0 ")
            .and_then(|r| r.get(..3))
            .and_then(|code| code.parse().ok());
        assert!(status.is_some(), "not a response: {head}");
        if status.is_some_and(|s| s >= 200) {
            answers.push((status, call_id_of(&head)));
        }
        rest = &rest[len..];
    }
    assert!(rest.is_empty(), "trailing bytes from the server: {rest:?}");
    answers
        .iter()
        .find(|(_, id)| wanted.is_some() && *id == wanted)
        .or(answers.first())
        .and_then(|(status, _)| *status)
}

fn status_for(expect: Expect, bytes: &[u8]) -> Option<u16> {
    match expect {
        Status(s) => Some(s),
        Nothing => None,
        ParserDecides(s) => match Message::parse(bytes, &Limits::default()) {
            Ok(_) => Some(s),
            Err(e) => Some(e.status_code()),
        },
    }
}

#[test]
fn every_torture_message_gets_its_answer_and_the_server_survives() {
    let server =
        Server::start(env!("CARGO_BIN_EXE_switchboard").as_ref()).expect("switchboard starts");
    let tcp = server.tcp.expect("tcp");
    let mut checked = 0;
    let mut failures = Vec::new();
    for set in ["rfc4475", "rfc5118"] {
        for file in manifest_files(set) {
            let expect = EXPECTED
                .iter()
                .find(|(f, _)| *f == file)
                .map(|(_, e)| *e)
                .unwrap_or_else(|| panic!("{set}/{file} has no expectation in EXPECTED"));
            let bytes = std::fs::read(corpus_dir(set).join(&file)).expect("read corpus file");
            let want = status_for(expect, &bytes);
            let got = first_answer(tcp, &bytes);
            if got != want {
                failures.push(format!("{set}/{file}: expected {want:?}, got {got:?}"));
            }
            checked += 1;
        }
    }
    assert_eq!(
        checked,
        EXPECTED.len(),
        "every row of EXPECTED is in a manifest"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Same messages as UDP datagrams; then the server must still answer.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    for set in ["rfc4475", "rfc5118"] {
        for file in manifest_files(set) {
            let bytes = std::fs::read(corpus_dir(set).join(&file)).expect("read");
            udp.send_to(&bytes, server.udp.expect("udp")).expect("send");
        }
    }
    let mut ua = Ua::udp(server.udp.expect("udp")).expect("ua");
    let r = ua
        .transact(&ua.request("OPTIONS", "sip:pbx@test.invalid"))
        .expect("alive");
    assert_eq!(r.status, 200);
    let mut ua = Ua::tcp(tcp).expect("ua");
    let r = ua
        .transact(&ua.request("OPTIONS", "sip:pbx@test.invalid"))
        .expect("alive");
    assert_eq!(r.status, 200);
    assert!(!server.log().contains("panicked"), "{}", server.log());
}
