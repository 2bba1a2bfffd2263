//! SIP trunks through the real binary: `[[trunk]]` in `switchboard check`,
//! outbound registration to a carrier played by a test UA on 127.0.0.x,
//! inbound calls from a trunk's address, outbound calls through trunks.

mod binary;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use binary::Workdir;
use sip_proto::digest::{self, Algorithm};
use sip_proto::{HeaderName, Limits, Message, Request};
use testkit::Server;

const WAIT: Duration = Duration::from_secs(10);

/// A carrier on its own loopback address: reads what Switchboard sends it
/// and answers by hand.
struct Carrier {
    socket: UdpSocket,
}

impl Carrier {
    fn bind(ip: [u8; 4]) -> Carrier {
        let socket = UdpSocket::bind(SocketAddr::from((ip, 0))).expect("bind carrier");
        Carrier { socket }
    }

    fn addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("carrier address")
    }

    /// The next request (responses and other methods are skipped) and where it came from.
    fn request(&self, method: &str, within: Duration) -> Option<(Request, SocketAddr)> {
        let deadline = Instant::now() + within;
        let mut buf = vec![0u8; 65_535];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.socket.set_read_timeout(Some(left)).ok()?;
            let (n, from) = self.socket.recv_from(&mut buf).ok()?;
            if let Ok(Message::Request(r)) = Message::parse(&buf[..n], &Limits::default())
                && r.method.as_str() == method
            {
                return Some((r, from));
            }
        }
    }

    /// Sends raw bytes to `to`.
    fn send(&self, bytes: &[u8], to: SocketAddr) {
        self.socket.send_to(bytes, to).expect("carrier send");
    }

    /// The next response with a final status (1xx are skipped) and the 1xx seen before it.
    fn final_response(&self, within: Duration) -> Option<(sip_proto::Response, Vec<u16>)> {
        let deadline = Instant::now() + within;
        let mut buf = vec![0u8; 65_535];
        let mut provisional = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.socket.set_read_timeout(Some(left)).ok()?;
            let (n, _) = self.socket.recv_from(&mut buf).ok()?;
            if let Ok(Message::Response(r)) = Message::parse(&buf[..n], &Limits::default()) {
                if r.status >= 200 {
                    return Some((r, provisional));
                }
                provisional.push(r.status);
            }
        }
    }

    /// Answers `request` with `status` and `extra` headers, To-tagged.
    fn respond(
        &self,
        request: &Request,
        to: SocketAddr,
        status: u16,
        reason: &str,
        extra: &[(&str, &str)],
    ) {
        let text = response_text(request, status, reason, extra);
        self.socket
            .send_to(text.as_bytes(), to)
            .expect("send response");
    }

    /// Answers `request` with `status`, a Contact and an SDP body.
    fn respond_sdp(&self, request: &Request, to: SocketAddr, status: u16, reason: &str, sdp: &str) {
        let contact = format!("<sip:carrier@{}>", self.addr());
        let text = response_text(request, status, reason, &[("Contact", &contact)]).replace(
            "Content-Length: 0\r\n\r\n",
            &format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            ),
        );
        self.socket
            .send_to(text.as_bytes(), to)
            .expect("send response");
    }
}

/// A response to `request`: its Via, From, To (tagged), Call-ID and CSeq, and `extra`.
fn response_text(request: &Request, status: u16, reason: &str, extra: &[(&str, &str)]) -> String {
    let mut text = format!("SIP/2.0 {status} {reason}\r\n");
    for via in request.headers.get_all(&HeaderName::Via) {
        text.push_str(&format!("Via: {via}\r\n"));
    }
    let h = |name: HeaderName| request.headers.get(&name).unwrap_or_default().to_owned();
    text.push_str(&format!("From: {}\r\n", h(HeaderName::From)));
    text.push_str(&format!("To: {};tag=carrier1\r\n", h(HeaderName::To)));
    text.push_str(&format!("Call-ID: {}\r\n", h(HeaderName::CallId)));
    text.push_str(&format!("CSeq: {}\r\n", h(HeaderName::CSeq)));
    for (name, value) in extra {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("Content-Length: 0\r\n\r\n");
    text
}

/// Checks the Authorization of `request` against `password` the way a carrier would.
fn digest_ok(request: &Request, header: &HeaderName, password: &str) -> bool {
    let value = request.headers.get(header).unwrap_or_default();
    let creds = sip_proto::header::Credentials::parse(value).expect("credentials parse");
    let p = |n: &str| creds.params.unquoted(n).unwrap_or_default().into_owned();
    let alg: Algorithm = p("algorithm").parse().unwrap_or(Algorithm::Md5);
    let ha1 = digest::ha1(alg, &p("username"), &p("realm"), password);
    let ha2 = digest::ha2(alg, request.method.as_str(), &p("uri"));
    let want = digest::response(alg, &ha1, &p("nonce"), &p("nc"), &p("cnonce"), "auth", &ha2);
    p("response") == want
}

fn cseq(request: &Request) -> u32 {
    request.headers.cseq().expect("CSeq").seq
}

fn trunks_json(server: &Server) -> serde_json::Value {
    let (status, body) = server
        .http_get("/api/v1/trunks")
        .expect("GET /api/v1/trunks");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("JSON")
}

/// Polls `GET /api/v1/trunks` until trunk 0's state satisfies `want`.
fn wait_state(server: &Server, want: impl Fn(&str) -> bool) -> serde_json::Value {
    wait_trunk(server, |t| want(t["state"].as_str().unwrap_or_default()))
}

/// Polls `GET /api/v1/trunks` until trunk 0 satisfies `want`.
fn wait_trunk(server: &Server, want: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let json = trunks_json(server);
        if want(&json[0]) || Instant::now() > deadline {
            return json;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn office(trunk: &str) -> String {
    format!(
        "[sip]\nlisten = [\"udp:127.0.0.1:0\"]\ndomain = \"office.test\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n{EXT}\n{trunk}"
    )
}

fn binary() -> &'static std::path::Path {
    env!("CARGO_BIN_EXE_switchboard").as_ref()
}

const EXT: &str = "[storage]\nbackend = \"memory\"\n\n[[extension]]\nid = \"1001\"\npassword = \"Vq7-zK2p-Lm9w\"\ndid = \"+15550001001\"\noutbound = true\n";

#[test]
fn check_accepts_trunks_and_names_bad_keys_with_file_and_line() {
    let w = Workdir::with_file(
        "switchboard.toml",
        &format!(
            "{EXT}\n[[trunk]]\nname = \"carrier\"\nhost = \"127.0.0.1\"\nport = 5080\nusername = \"office\"\npassword = \"s3cret-pw\"\nregister = true\nmatch = [\"127.0.0.0/8\"]\n"
        ),
    );
    let out = w.run(&["check"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.contains("1 trunk"), "{}", out.stdout);

    let key_pem = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIFg1ITQrxkJfeKIYNotY7HhLxCjBAiEHYPVk/uCA+SFtoAoGCCqGSM49\nAwEHoUQDQgAEDrr9B2cDYpMzVdtmcimPlWtjYgXkF+j4//EfQknqaj+/ZYoHT2OV\n4nQkQzR/n1SFSzFMGsFIGCZ8HoBBg+fYjg==\n-----END EC PRIVATE KEY-----\n";
    for (trunk, needle, at) in [
        (
            "[[trunk]]\nname = \"carrier\"\nhost = \"127.0.0.1\"\nregistr = true\n",
            "unknown field `registr`",
            "switchboard.toml:13:",
        ),
        (
            "[[trunk]]\nname = \"carrier\"\nhost = \"127.0.0.1\"\nregister = true\n",
            "trunk carrier: register = true needs username and password",
            "switchboard.toml:13:",
        ),
        (
            "[[trunk]]\nname = \"carrier\"\nhost = \"127.0.0.1\"\nmatch = [\"10.0.0.300\"]\n",
            "trunk carrier: match: \"10.0.0.300\" is not an IP address or network",
            "switchboard.toml:13:",
        ),
        (
            "[[trunk]]\nname = \"carrier\"\nhost = \"127.0.0.1\"\nstir_shaken = { key = \"nope.pem\", x5u = \"https://c.example/c.pem\" }\n",
            "stir_shaken.key: cannot read",
            "switchboard.toml:13:",
        ),
        (
            "[[trunk]]\nname = \"carrier\"\nhost = \"127.0.0.1\"\nstir_shaken = { key = \"stir.pem\", x5u = \"ftp://c.example/c.pem\" }\n",
            "stir_shaken.x5u: \"ftp://c.example/c.pem\" is not an https URL",
            "switchboard.toml:13:",
        ),
        (
            "[[trunk]]\nname = \"carrier\"\nhost = \"127.0.0.1\"\ncontext = \"from-nowhere\"\nmatch = [\"127.0.0.2\"]\n",
            "trunk carrier: context \"from-nowhere\" has no dialplan",
            "switchboard.toml:13:",
        ),
    ] {
        let w = Workdir::with_file("switchboard.toml", &format!("{EXT}\n{trunk}"));
        w.write("stir.pem", key_pem);
        let out = w.run(&["check"]);
        assert!(!out.status.success(), "{trunk:?}: {}", out.stdout);
        let line = out.one_error_line();
        assert!(line.contains(needle), "{trunk:?}: {line}");
        assert!(line.contains(at), "{trunk:?}: {line}");
    }
}

#[test]
fn registers_with_digest_refreshes_and_shows_registered() {
    let carrier = Carrier::bind([127, 0, 0, 2]);
    let port = carrier.addr().port();
    let server = Server::start_with(
        binary(),
        &office(&format!(
            "[[trunk]]\nname = \"carrier\"\nhost = \"127.0.0.2\"\nport = {port}\nusername = \"office\"\npassword = \"pw-carrier-1\"\nregister = true\nexpires = 60\n"
        )),
    )
    .expect("server starts");

    // First REGISTER: no credentials; challenged with SHA-256.
    let (first, from) = carrier.request("REGISTER", WAIT).expect("REGISTER");
    assert_eq!(first.uri.to_string(), format!("sip:127.0.0.2:{port}"));
    assert!(
        first
            .headers
            .get(&HeaderName::From)
            .unwrap_or_default()
            .contains("sip:office@127.0.0.2")
    );
    assert_eq!(first.headers.get(&HeaderName::Expires), Some("60"));
    assert!(first.headers.get(&HeaderName::Authorization).is_none());
    carrier.respond(
        &first,
        from,
        401,
        "Unauthorized",
        &[(
            "WWW-Authenticate",
            "Digest realm=\"carrier.test\", nonce=\"n-1\", algorithm=SHA-256, qop=\"auth\"",
        )],
    );
    let (second, from) = carrier
        .request("REGISTER", WAIT)
        .expect("REGISTER with credentials");
    assert!(
        digest_ok(&second, &HeaderName::Authorization, "pw-carrier-1"),
        "{second:?}"
    );
    assert!(
        second
            .headers
            .get(&HeaderName::Authorization)
            .unwrap_or_default()
            .contains("algorithm=SHA-256")
    );
    assert_eq!(
        second.headers.call_id(),
        first.headers.call_id(),
        "same Call-ID (RFC 3261 10.2.4)"
    );
    assert!(cseq(&second) > cseq(&first));
    let contact = second
        .headers
        .get(&HeaderName::Contact)
        .unwrap_or_default()
        .to_owned();
    // The carrier grants 2 s only: the refresh comes well before they run out.
    carrier.respond(
        &second,
        from,
        200,
        "OK",
        &[("Contact", &format!("{contact};expires=2"))],
    );
    let json = wait_state(&server, |s| s == "registered");
    assert_eq!(json[0]["state"], "registered", "{json}");
    assert_eq!(json[0]["name"], "carrier");
    assert!(
        !json.to_string().contains("pw-carrier-1"),
        "the API never shows the password"
    );
    let (_, metrics) = server.http_get("/metrics").expect("metrics");
    assert!(
        metrics.contains("trunk_registered{trunk=\"carrier\"} 1"),
        "{metrics}"
    );

    let (refresh, from) = carrier.request("REGISTER", WAIT).expect("refresh");
    assert_eq!(refresh.headers.call_id(), first.headers.call_id());
    assert!(cseq(&refresh) > cseq(&second));
    // MD5 this time, answered again.
    carrier.respond(
        &refresh,
        from,
        401,
        "Unauthorized",
        &[(
            "WWW-Authenticate",
            "Digest realm=\"carrier.test\", nonce=\"n-2\", algorithm=MD5, qop=\"auth\"",
        )],
    );
    let (again, from) = carrier
        .request("REGISTER", WAIT)
        .expect("refresh with credentials");
    assert!(digest_ok(
        &again,
        &HeaderName::Authorization,
        "pw-carrier-1"
    ));
    carrier.respond(
        &again,
        from,
        200,
        "OK",
        &[("Contact", &format!("{contact};expires=60"))],
    );
    let json = wait_trunk(&server, |t| t["seconds"].as_u64().unwrap_or(0) > 2);
    assert_eq!(json[0]["state"], "registered", "{json}");
    assert!(json[0]["seconds"].as_u64().unwrap_or(0) > 2, "{json}");
}

#[test]
fn forbidden_stops_registration_until_reload() {
    let carrier = Carrier::bind([127, 0, 0, 3]);
    let port = carrier.addr().port();
    let server = Server::start_with(
        binary(),
        &office(&format!(
            "[[trunk]]\nname = \"carrier\"\nhost = \"127.0.0.3\"\nport = {port}\nusername = \"office\"\npassword = \"pw-carrier-1\"\nregister = true\n"
        )),
    )
    .expect("server starts");
    let (first, from) = carrier.request("REGISTER", WAIT).expect("REGISTER");
    carrier.respond(&first, from, 403, "Forbidden", &[]);
    let json = wait_state(&server, |s| s.starts_with("failed"));
    assert_eq!(json[0]["state"], "failed (403 Forbidden)", "{json}");
    assert!(json[0]["seconds"].is_null(), "no retry is planned: {json}");
    let (_, metrics) = server.http_get("/metrics").expect("metrics");
    assert!(
        metrics.contains("trunk_registered{trunk=\"carrier\"} 0"),
        "{metrics}"
    );
    // A reload (the admin fixed the password) tries again at once.
    let (status, body) = server.http("POST", "/api/v1/reload").expect("reload");
    assert_eq!(status, 200, "{body}");
    let (again, from) = carrier
        .request("REGISTER", WAIT)
        .expect("REGISTER after reload");
    assert_ne!(again.headers.call_id(), first.headers.call_id());
    carrier.respond(&again, from, 200, "OK", &[("Expires", "120")]);
    let json = wait_state(&server, |s| s == "registered");
    assert_eq!(json[0]["state"], "registered", "{json}");
}

/// The issue's carrier INVITE, byte for byte but for the carrier's
/// loopback address and ports (and the SDP lines as real lines).
fn didhub_invite(via: SocketAddr, rtp_port: u16, number: &str) -> String {
    let ip = via.ip();
    let sdp = format!(
        "v=0\r\no=- 12345 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {rtp_port} RTP/AVP 0 8 9 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:9 G722/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
    );
    format!(
        "INVITE sip:{number}@sip.didhub.io SIP/2.0\r\n\
         Via: SIP/2.0/UDP {via};branch=z9hG4bK-abc{number}\r\n\
         From: <sip:trunk_x@sip.didhub.io>;tag=12345\r\n\
         To: <sip:{number}@sip.didhub.io>\r\n\
         Call-ID: a1b2c3d4{number}@{ip}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:trunk_x@{via}>\r\n\
         Max-Forwards: 70\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

/// The trunk's context: logs what the call looks like, answers the
/// issue's DID with an echo (audio both ways), rings 1001 for its DID.
const FROM_CARRIER: &str = r#"
function route(call)
  log.info("from-carrier: trunk=" .. tostring(call.trunk) .. " did=" .. tostring(call.did)
    .. " to=" .. call.to.user .. " caller=" .. tostring(call.caller))
  if call.did == "+15557654321" then
    call:answer()
    call:echo()
  elseif call.did == "+15550001001" then
    call:dial("1001", { timeout = 10 })
  else
    call:reject(404)
  end
end
"#;

fn inbound_office(dir: &std::path::Path, carrier: SocketAddr, extra: &str) -> String {
    let dialplans = dir.join("dialplans");
    std::fs::create_dir_all(&dialplans).expect("mkdir");
    std::fs::write(dialplans.join("from-carrier.lua"), FROM_CARRIER).expect("write lua");
    std::fs::write(
        dialplans.join("default.lua"),
        "function route(call) log.info(\"default: reached\") call:reject(480) end\n",
    )
    .expect("write lua");
    office(&format!(
        "{extra}[dialplan]\ndir = {:?}\n\n[[trunk]]\nname = \"carrier\"\nhost = \"{}\"\nport = {}\nmatch = [\"{}\"]\ncontext = \"from-carrier\"\n",
        dialplans.display(),
        carrier.ip(),
        carrier.port(),
        carrier.ip()
    ))
}

fn ack_for(invite: &str, ok: &sip_proto::Response, via: SocketAddr) -> String {
    let to = ok.headers.get(&HeaderName::To).unwrap_or_default();
    let contact = ok
        .headers
        .contact()
        .ok()
        .and_then(|c| match c {
            sip_proto::header::Contact::Addrs(list) => list.first().map(|a| a.uri.to_string()),
            sip_proto::header::Contact::Star => None,
        })
        .expect("Contact in 200");
    let line = |name: &str| {
        invite
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .to_owned()
    };
    format!(
        "ACK {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bK-ack{}\r\n{}\r\nTo: {to}\r\n{}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        rand_u32(),
        line("From:"),
        line("Call-ID:"),
    )
}

fn rand_u32() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
}

#[test]
fn the_issues_carrier_invite_reaches_the_trunk_context_with_its_did_and_audio_flows() {
    let carrier = Carrier::bind([127, 0, 0, 4]);
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(binary(), &inbound_office(dir.path(), carrier.addr(), ""))
        .expect("server starts");
    let sip = server.udp.expect("UDP listener");
    let rtp = testkit::RtpPeer::bind(carrier.addr().ip()).expect("carrier RTP");
    let invite = didhub_invite(carrier.addr(), rtp.local_addr().port(), "+15557654321");
    carrier.send(invite.as_bytes(), sip);
    let (ok, _) = carrier.final_response(WAIT).expect("final response");
    assert_eq!(
        ok.status,
        200,
        "no extension challenge for the trunk: {ok:?}\n{}",
        server.log()
    );
    carrier.send(ack_for(&invite, &ok, carrier.addr()).as_bytes(), sip);
    assert!(
        log_has(
            &server,
            "from-carrier: trunk=carrier did=+15557654321 to=+15557654321 caller=nil"
        ),
        "{}",
        server.log()
    );
    // Audio both ways: what the carrier sends comes back from the echo.
    let answer = testkit::RemoteMedia::parse(&ok.body).expect("SDP answer");
    rtp.send_tone(answer.addr, 0, 1000.0, Duration::from_millis(600))
        .expect("send tone");
    assert!(rtp.wait_for(10, WAIT), "the echo sent nothing back");
}

#[test]
fn a_did_rings_its_extension_and_unknown_sources_are_challenged_or_refused() {
    let carrier = Carrier::bind([127, 0, 0, 5]);
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(binary(), &inbound_office(dir.path(), carrier.addr(), ""))
        .expect("server starts");
    let sip = server.udp.expect("UDP listener");
    let mut phone = testkit::Phone::udp(sip, "1001", "Vq7-zK2p-Lm9w", "office.test");
    assert_eq!(phone.register(), 200);
    let invite = didhub_invite(carrier.addr(), 40_000, "+15550001001");
    carrier.send(invite.as_bytes(), sip);
    let ringing = phone.incoming(WAIT).expect("1001 rings for its DID");
    assert!(
        ringing.invite.uri.to_string().contains("1001")
            || ringing
                .invite
                .headers
                .get(&HeaderName::To)
                .unwrap_or_default()
                .contains("1001")
    );

    // Not the trunk's address: challenged like any stranger, and Lua never sees it.
    let stranger = Carrier::bind([127, 0, 0, 6]);
    stranger.send(
        didhub_invite(stranger.addr(), 40_002, "+15557654321").as_bytes(),
        sip,
    );
    let (refused, _) = stranger
        .final_response(WAIT)
        .expect("answer to the stranger");
    assert_eq!(refused.status, 407);
    assert!(
        log_has(&server, "from-carrier: trunk=carrier did=+15550001001"),
        "{}",
        server.log()
    );
    let log = server.log();
    assert_eq!(log.matches("from-carrier:").count(), 1, "{log}");
    assert!(!log.contains("default: reached"), "{log}");
}

#[test]
fn anonymous_reject_refuses_strangers_with_403() {
    let carrier = Carrier::bind([127, 0, 0, 7]);
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(
        binary(),
        &inbound_office(
            dir.path(),
            carrier.addr(),
            "[security]\nanonymous = \"reject\"\n\n",
        ),
    )
    .expect("server starts");
    let sip = server.udp.expect("UDP listener");
    let stranger = Carrier::bind([127, 0, 0, 8]);
    stranger.send(
        didhub_invite(stranger.addr(), 40_002, "+15557654321").as_bytes(),
        sip,
    );
    let (refused, _) = stranger
        .final_response(WAIT)
        .expect("answer to the stranger");
    assert_eq!(refused.status, 403);
    // Extensions still get their challenge and can call.
    let mut phone = testkit::Phone::udp(sip, "1001", "Vq7-zK2p-Lm9w", "office.test");
    assert_eq!(phone.register(), 200);
    phone.call("600").expect("call with credentials");
    let (answer, _) = phone.final_response(WAIT).expect("final");
    assert_eq!(
        answer.status, 480,
        "the extension's call reached its context"
    );
    assert!(!server.log().contains("from-carrier:"));
}

/// The office side of outbound tests: 9 + number goes out through
/// `carrier`, 8 + number through `bad` then `carrier`; a failure is given
/// to the phone as the carrier's code.
const OUTBOUND: &str = r#"
function route(call)
  local n = call.to.user
  local r
  if n:sub(1, 1) == "9" then
    r = call:dial("trunk:carrier/+1" .. n:sub(2), { timeout = 5 })
  elseif n:sub(1, 1) == "8" then
    r = call:dial({ "trunk:bad/+1" .. n:sub(2), "trunk:carrier/+1" .. n:sub(2) }, { timeout = 5 })
  else
    call:reject(404)
    return
  end
  log.info("dial result " .. r.status .. " " .. r.code)
  if call.state ~= "ended" then
    call:reject(r.code)
  end
end
"#;

const EXT2: &str = "\n[[extension]]\nid = \"1002\"\npassword = \"Rt4-hX8n-Pc3y\"\n";

fn outbound_office(dir: &std::path::Path, trunks: &str) -> String {
    let dialplans = dir.join("dialplans");
    std::fs::create_dir_all(&dialplans).expect("mkdir");
    std::fs::write(dialplans.join("default.lua"), OUTBOUND).expect("write lua");
    office(&format!(
        "{EXT2}\n[dialplan]\ndir = {:?}\n\n{trunks}",
        dialplans.display()
    ))
}

fn trunk_at(name: &str, carrier: &Carrier, extra: &str) -> String {
    format!(
        "[[trunk]]\nname = \"{name}\"\nhost = \"{}\"\nport = {}\nusername = \"office\"\npassword = \"pw-carrier-1\"\n{extra}\n",
        carrier.addr().ip(),
        carrier.addr().port()
    )
}

#[test]
fn outbound_call_answers_the_carriers_407_and_asserts_the_callers_did() {
    let carrier = Carrier::bind([127, 0, 0, 9]);
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(
        binary(),
        &outbound_office(
            dir.path(),
            &trunk_at(
                "carrier",
                &carrier,
                "codecs = [\"PCMA\", \"telephone-event\"]",
            ),
        ),
    )
    .expect("server starts");
    let sip = server.udp.expect("UDP listener");
    let mut phone = testkit::Phone::udp(sip, "1001", "Vq7-zK2p-Lm9w", "office.test");
    assert_eq!(phone.register(), 200);
    let phone_rtp = testkit::RtpPeer::localhost();
    let carrier_rtp = testkit::RtpPeer::bind(carrier.addr().ip()).expect("carrier RTP");
    let call = phone
        .call_sdp("95557654321", &[], &phone_rtp.sdp_offer(&["PCMU"]))
        .expect("call");

    let (first, from) = carrier
        .request("INVITE", WAIT)
        .expect("INVITE at the carrier");
    assert_eq!(
        first.uri.to_string(),
        format!("sip:+15557654321@127.0.0.9:{}", carrier.addr().port())
    );
    let header = |r: &Request, name: &str| {
        r.headers
            .get(&HeaderName::parse(name))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        header(&first, "From").contains("<sip:+15550001001@127.0.0.9>"),
        "{first:?}"
    );
    assert_eq!(
        header(&first, "P-Asserted-Identity"),
        "<sip:+15550001001@127.0.0.9>"
    );
    assert!(header(&first, "Privacy").is_empty());
    carrier.respond(
        &first,
        from,
        407,
        "Proxy Authentication Required",
        &[(
            "Proxy-Authenticate",
            "Digest realm=\"carrier.test\", nonce=\"inv-1\", algorithm=MD5, qop=\"auth\"",
        )],
    );
    let (second, from) = carrier
        .request("INVITE", WAIT)
        .expect("INVITE with credentials");
    assert!(
        digest_ok(&second, &HeaderName::ProxyAuthorization, "pw-carrier-1"),
        "{second:?}"
    );
    assert_eq!(second.headers.call_id(), first.headers.call_id());
    assert_eq!(cseq(&second), cseq(&first) + 1);
    // Early media, then the answer.
    carrier.respond_sdp(
        &second,
        from,
        183,
        "Session Progress",
        &carrier_rtp.sdp_answer(&["PCMA"]),
    );
    // The trunk's codecs only: PCMA (and telephone-event), not the phone's PCMU.
    let m_line = String::from_utf8_lossy(&second.body)
        .lines()
        .find(|l| l.starts_with("m=audio"))
        .unwrap_or_default()
        .to_owned();
    let payloads: Vec<&str> = m_line.split_whitespace().skip(3).collect();
    assert_eq!(payloads.first(), Some(&"8"), "{m_line}");
    assert!(
        !payloads.contains(&"0") && !payloads.contains(&"9"),
        "{m_line}"
    );
    let offered = testkit::RemoteMedia::parse(&second.body).expect("our offer");
    // The early media reaches the phone (a 183 with our SDP) before the
    // carrier answers: the test waits for it rather than racing the two
    // responses through the PBX.
    let early = phone.response(WAIT).expect("the 183 relayed");
    assert_eq!(
        early.status, 183,
        "early media passed to the phone: {early:?}"
    );
    assert!(!early.body.is_empty(), "with our SDP: {early:?}");
    carrier.respond_sdp(&second, from, 200, "OK", &carrier_rtp.sdp_answer(&["PCMA"]));
    let (ok, _) = phone.final_response(WAIT).expect("answer");
    assert_eq!(ok.status, 200, "{}", server.log());
    let mut dialog = phone.ack(&call, &ok).expect("ACK");
    assert!(
        carrier.request("ACK", WAIT).is_some(),
        "the carrier's 200 is ACKed"
    );
    // Audio both ways, transcoded between the phone's PCMU and the trunk's PCMA.
    let answered = testkit::RemoteMedia::parse(&ok.body).expect("answer to the phone");
    std::thread::scope(|s| {
        s.spawn(|| phone_rtp.send_tone(answered.addr, 0, 1000.0, Duration::from_millis(600)));
        s.spawn(|| carrier_rtp.send_tone(offered.addr, 8, 1000.0, Duration::from_millis(600)));
    });
    assert!(carrier_rtp.wait_for(10, WAIT), "the carrier heard nothing");
    assert!(phone_rtp.wait_for(10, WAIT), "the phone heard nothing");
    assert!(
        carrier_rtp.packets_of(8).len() >= 10,
        "the carrier gets PCMA: {:?}",
        carrier_rtp
            .received()
            .iter()
            .map(|p| p.payload_type())
            .collect::<Vec<_>>()
    );

    let bye = std::thread::scope(|s| {
        let carrier_side = s.spawn(|| {
            let (bye, from) = carrier.request("BYE", WAIT).expect("BYE at the carrier");
            carrier.respond(&bye, from, 200, "OK", &[]);
        });
        let bye = phone
            .request_in(&mut dialog, "BYE", None)
            .expect("BYE answered");
        carrier_side.join().expect("carrier thread");
        bye
    });
    assert_eq!(bye.status, 200);
    // A CDR with the trunk and the number.
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, cdrs) = server.http_get("/api/v1/cdrs").expect("cdrs");
        if cdrs.contains("trunk:carrier/+15557654321") {
            break;
        }
        assert!(Instant::now() < deadline, "no CDR with the trunk: {cdrs}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_trunk_list_fails_over_on_503_and_the_carriers_busy_reaches_the_route() {
    let bad = Carrier::bind([127, 0, 0, 10]);
    let good = Carrier::bind([127, 0, 0, 11]);
    let dir = tempfile::tempdir().expect("tempdir");
    let trunks = format!(
        "{}{}",
        trunk_at("bad", &bad, ""),
        trunk_at("carrier", &good, "")
    );
    let server =
        Server::start_with(binary(), &outbound_office(dir.path(), &trunks)).expect("server starts");
    let sip = server.udp.expect("UDP listener");
    let mut phone = testkit::Phone::udp(sip, "1001", "Vq7-zK2p-Lm9w", "office.test");
    assert_eq!(phone.register(), 200);
    phone.call("85557654321").expect("call");
    let (first, from) = bad
        .request("INVITE", WAIT)
        .expect("INVITE at the first trunk");
    assert!(
        good.request("INVITE", Duration::from_millis(300)).is_none(),
        "one trunk at a time"
    );
    bad.respond(&first, from, 503, "Service Unavailable", &[]);
    let (second, from) = good
        .request("INVITE", WAIT)
        .expect("INVITE at the second trunk");
    assert!(
        second
            .uri
            .to_string()
            .starts_with("sip:+15557654321@127.0.0.11")
    );
    good.respond(&second, from, 486, "Busy Here", &[]);
    let (answer, _) = phone.final_response(WAIT).expect("final");
    assert_eq!(answer.status, 486, "{}", server.log());
    assert!(log_has(&server, "dial result busy 486"), "{}", server.log());
}

#[test]
fn national_caller_id_format_sends_the_number_without_country_code() {
    let carrier = Carrier::bind([127, 0, 0, 18]);
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(
        binary(),
        &outbound_office(
            dir.path(),
            &trunk_at("carrier", &carrier, "caller_id_format = \"national\""),
        ),
    )
    .expect("server starts");
    let sip = server.udp.expect("UDP listener");
    let mut phone = testkit::Phone::udp(sip, "1001", "Vq7-zK2p-Lm9w", "office.test");
    assert_eq!(phone.register(), 200);
    phone.call("95557654321").expect("call");
    let (invite, from) = carrier
        .request("INVITE", WAIT)
        .expect("INVITE at the carrier");
    let header = |name: &str| {
        invite
            .headers
            .get(&HeaderName::parse(name))
            .unwrap_or_default()
            .to_owned()
    };
    // 1001's did +15550001001 as the national number: no +, no country code 1.
    assert!(
        header("From").starts_with("<sip:5550001001@127.0.0.18>;tag="),
        "{invite:?}"
    );
    assert_eq!(header("P-Asserted-Identity"), "<sip:5550001001@127.0.0.18>");
    // The number dialled keeps its country code (it may be another country's).
    assert_eq!(
        invite.uri.to_string(),
        format!("sip:15557654321@127.0.0.18:{}", carrier.addr().port())
    );
    carrier.respond(&invite, from, 486, "Busy Here", &[]);
    let (answer, _) = phone.final_response(WAIT).expect("final");
    assert_eq!(answer.status, 486, "{}", server.log());
}

/// A DNS server for the RFC 3263 test, on 127.0.0.1: `records` maps a
/// lower-case name with its type (`"_sip._udp.carrier.test SRV"`) to
/// answers (`A`: an IPv4 address; `SRV`: "priority weight port target").
/// Other names get NXDOMAIN, other types of known names no answer. It
/// answers for 30 s at most, on its own thread.
fn dns_server(records: Vec<(&'static str, Vec<String>)>) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind DNS");
    let addr = socket.local_addr().expect("DNS address");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    std::thread::spawn(move || {
        let until = Instant::now() + Duration::from_secs(30);
        let mut buf = [0u8; 1500];
        while Instant::now() < until {
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                continue;
            };
            if let Some(answer) = dns_answer(&buf[..n], &records) {
                let _ = socket.send_to(&answer, from);
            }
        }
    });
    addr
}

/// The answer to one DNS query (RFC 1035 §4.1), or `None` for junk.
fn dns_answer(query: &[u8], records: &[(&'static str, Vec<String>)]) -> Option<Vec<u8>> {
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let question = query.get(12..at + 4)?;
    let name = labels.join(".");
    let kind = match qtype {
        1 => "A",
        33 => "SRV",
        _ => "other",
    };
    let known = records
        .iter()
        .any(|(k, _)| k.split(' ').next() == Some(name.as_str()));
    let answers: Vec<&String> = records
        .iter()
        .filter(|(k, _)| *k == format!("{name} {kind}"))
        .flat_map(|(_, v)| v)
        .collect();
    let rcode: u16 = if known { 0 } else { 3 };
    let flags = 0x8400 | (u16::from_be_bytes([query[2], query[3]]) & 0x0100) | 0x0080 | rcode;
    let mut out = Vec::new();
    out.extend_from_slice(&query[..2]);
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(question);
    for answer in answers {
        let rdata = match kind {
            "A" => answer
                .parse::<std::net::Ipv4Addr>()
                .expect("A record")
                .octets()
                .to_vec(),
            _ => {
                let parts: Vec<&str> = answer.split(' ').collect();
                let mut r = Vec::new();
                for n in &parts[..3] {
                    r.extend_from_slice(&n.parse::<u16>().expect("SRV number").to_be_bytes());
                }
                for label in parts[3].split('.').filter(|l| !l.is_empty()) {
                    r.push(label.len() as u8);
                    r.extend_from_slice(label.as_bytes());
                }
                r.push(0);
                r
            }
        };
        out.extend_from_slice(&[0xC0, 0x0C]);
        out.extend_from_slice(&qtype.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&60u32.to_be_bytes());
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
    }
    Some(out)
}

#[test]
fn a_trunk_host_name_without_port_is_located_by_srv_then_a() {
    let first = Carrier::bind([127, 0, 0, 19]);
    let second = Carrier::bind([127, 0, 0, 20]);
    let dns = dns_server(vec![
        (
            "_sip._udp.carrier.test SRV",
            vec![
                format!("20 0 {} pbx2.carrier.test", second.addr().port()),
                format!("10 0 {} pbx1.carrier.test", first.addr().port()),
            ],
        ),
        ("pbx1.carrier.test A", vec!["127.0.0.19".to_owned()]),
        ("pbx2.carrier.test A", vec!["127.0.0.20".to_owned()]),
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let trunks = format!(
        "[[trunk]]\nname = \"carrier\"\nhost = \"carrier.test\"\n\n\
         [[trunk]]\nname = \"bad\"\nhost = \"pbx2.carrier.test\"\nport = {}\n",
        second.addr().port()
    );
    let config = outbound_office(dir.path(), &trunks).replace(
        "domain = \"office.test\"\n",
        &format!("domain = \"office.test\"\nnameservers = [\"{dns}\"]\n"),
    );
    let server = Server::start_with(binary(), &config).expect("server starts");
    let sip = server.udp.expect("UDP listener");
    let mut phone = testkit::Phone::udp(sip, "1001", "Vq7-zK2p-Lm9w", "office.test");
    assert_eq!(phone.register(), 200);
    // No port: SRV, the lowest priority's target first.
    phone.call("95557654321").expect("call");
    let (invite, from) = first
        .request("INVITE", WAIT)
        .expect("INVITE at the SRV target of priority 10");
    assert_eq!(invite.uri.to_string(), "sip:+15557654321@carrier.test");
    first.respond(&invite, from, 486, "Busy Here", &[]);
    assert_eq!(phone.final_response(WAIT).expect("final").0.status, 486);
    // A name with a port: its A record.
    phone.call("85557654321").expect("call");
    let (invite, from) = second
        .request("INVITE", WAIT)
        .expect("INVITE at the A record's address");
    second.respond(&invite, from, 486, "Busy Here", &[]);
    assert_eq!(
        phone.final_response(WAIT).expect("final").0.status,
        486,
        "{}",
        server.log()
    );
}

#[test]
fn max_channels_refuses_the_next_call_locally_with_503() {
    let carrier = Carrier::bind([127, 0, 0, 12]);
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(
        binary(),
        &outbound_office(
            dir.path(),
            &trunk_at("carrier", &carrier, "max_channels = 1"),
        ),
    )
    .expect("server starts");
    let sip = server.udp.expect("UDP listener");
    let mut first = testkit::Phone::udp(sip, "1001", "Vq7-zK2p-Lm9w", "office.test");
    let mut second = testkit::Phone::udp(sip, "1002", "Rt4-hX8n-Pc3y", "office.test");
    assert_eq!(first.register(), 200);
    assert_eq!(second.register(), 200);
    first.call("95557654321").expect("first call");
    let (invite, from) = carrier.request("INVITE", WAIT).expect("first INVITE");
    carrier.respond(&invite, from, 180, "Ringing", &[]);
    second.call("95550000002").expect("second call");
    let (answer, _) = second.final_response(WAIT).expect("final");
    assert_eq!(answer.status, 503, "{}", server.log());
    assert!(
        log_has(&server, "dial result unavailable 503"),
        "{}",
        server.log()
    );
    assert!(
        carrier
            .request("INVITE", Duration::from_millis(300))
            .is_none(),
        "the carrier never saw the second call"
    );
    let json = trunks_json(&server);
    assert_eq!(json[0]["channels"], 1, "{json}");
}

#[test]
fn the_shipped_default_lua_routes_dids_and_denies_outbound_by_default() {
    let carrier = Carrier::bind([127, 0, 0, 13]);
    let server = Server::start_with(
        binary(),
        &office(&format!(
            "{EXT2}\n{}match = [\"127.0.0.13\"]\n",
            trunk_at("carrier", &carrier, "")
        )),
    )
    .expect("server starts");
    let sip = server.udp.expect("UDP listener");
    let mut alice = testkit::Phone::udp(sip, "1001", "Vq7-zK2p-Lm9w", "office.test");
    let mut bob = testkit::Phone::udp(sip, "1002", "Rt4-hX8n-Pc3y", "office.test");
    assert_eq!(alice.register(), 200);
    assert_eq!(bob.register(), 200);

    // Inbound: 1001's DID rings 1001.
    carrier.send(
        didhub_invite(carrier.addr(), 40_000, "+15550001001").as_bytes(),
        sip,
    );
    alice.incoming(WAIT).expect("1001 rings for its DID");

    // 1002 has no outbound = true: refused, the carrier sees nothing.
    bob.call("95557654321").expect("call");
    let (answer, _) = bob.final_response(WAIT).expect("final");
    assert_eq!(answer.status, 403, "{}", server.log());
    assert!(
        carrier
            .request("INVITE", Duration::from_millis(300))
            .is_none()
    );

    // 1001 may call national numbers: the carrier gets it with 1001's DID.
    let mut caller = testkit::Phone::udp(sip, "1001", "Vq7-zK2p-Lm9w", "office.test");
    caller.call("95557654321").expect("call");
    let (invite, _) = carrier
        .request("INVITE", WAIT)
        .expect("INVITE at the carrier");
    assert!(invite.uri.to_string().starts_with("sip:+15557654321@"));
    assert!(
        invite
            .headers
            .get(&HeaderName::From)
            .unwrap_or_default()
            .contains("+15550001001")
    );
}

#[test]
fn calls_from_the_registrar_a_trunk_registered_with_are_the_trunks() {
    let carrier = Carrier::bind([127, 0, 0, 14]);
    let dir = tempfile::tempdir().expect("tempdir");
    let dialplans = dir.path().join("dialplans");
    std::fs::create_dir_all(&dialplans).expect("mkdir");
    std::fs::write(dialplans.join("from-carrier.lua"), FROM_CARRIER).expect("write lua");
    std::fs::write(
        dialplans.join("default.lua"),
        "function route(call) call:reject(480) end\n",
    )
    .expect("write lua");
    let server = Server::start_with(
        binary(),
        &office(&format!(
            "[dialplan]\ndir = {:?}\n\n{}register = true\ncontext = \"from-carrier\"\n",
            dialplans.display(),
            trunk_at("carrier", &carrier, "")
        )),
    )
    .expect("server starts");
    let sip = server.udp.expect("UDP listener");
    // Before the registration the carrier is a stranger.
    let invite = didhub_invite(carrier.addr(), 40_000, "+15557654321");
    let (register, from) = carrier.request("REGISTER", WAIT).expect("REGISTER");
    carrier.send(invite.as_bytes(), sip);
    let (refused, _) = carrier.final_response(WAIT).expect("answer");
    assert_eq!(refused.status, 407);
    carrier.respond(&register, from, 200, "OK", &[("Expires", "600")]);
    wait_state(&server, |s| s == "registered");
    let invite = didhub_invite(carrier.addr(), 40_000, "+15557654322");
    carrier.send(invite.as_bytes(), sip);
    let (answer, _) = carrier.final_response(WAIT).expect("answer");
    assert_eq!(
        answer.status,
        404,
        "the trunk's context rejected the unknown DID: {}",
        server.log()
    );
    assert!(
        log_has(&server, "from-carrier: trunk=carrier did=+15557654322"),
        "{}",
        server.log()
    );
}

#[test]
fn qualify_pings_the_trunk_and_shows_whether_it_answers() {
    let carrier = Carrier::bind([127, 0, 0, 15]);
    let config = office(&trunk_at(
        "carrier",
        &carrier,
        "qualify = \"1s\"\nmatch = [\"127.0.0.15\"]",
    ))
    // A short transaction timeout (64 * T1) so that silence shows soon.
    .replace(
        "domain = \"office.test\"",
        "domain = \"office.test\"\nt1 = \"20ms\"\nt2 = \"80ms\"",
    );
    let server = Server::start_with(binary(), &config).expect("server starts");
    let (options, from) = carrier.request("OPTIONS", WAIT).expect("OPTIONS");
    assert_eq!(
        options.uri.to_string(),
        format!("sip:127.0.0.15:{}", carrier.addr().port())
    );
    carrier.respond(&options, from, 200, "OK", &[]);
    let json = wait_trunk(&server, |t| t["reachable"] == true);
    assert_eq!(json[0]["reachable"], true, "{json}");
    // The carrier goes silent: the next pings time out.
    let json = wait_trunk(&server, |t| t["reachable"] == false);
    assert_eq!(json[0]["reachable"], false, "{json}");
    let (_, metrics) = server.http_get("/metrics").expect("metrics");
    assert!(
        metrics.contains("trunk_reachable{trunk=\"carrier\"} 0"),
        "{metrics}"
    );
}

#[test]
fn a_shutdown_unregisters_and_a_restart_registers_again() {
    let carrier = Carrier::bind([127, 0, 0, 16]);
    let server = Server::start_with(
        binary(),
        &office(&format!(
            "{}register = true\nmatch = [\"127.0.0.16\"]\n",
            trunk_at("carrier", &carrier, "")
        )),
    )
    .expect("server starts");
    let (first, from) = carrier.request("REGISTER", WAIT).expect("REGISTER");
    carrier.respond(&first, from, 200, "OK", &[("Expires", "600")]);
    wait_state(&server, |s| s == "registered");
    let server = std::thread::scope(|s| {
        let unregister = s.spawn(|| {
            let (bye, from) = carrier
                .request("REGISTER", WAIT)
                .expect("REGISTER at shutdown");
            carrier.respond(&bye, from, 200, "OK", &[]);
            bye
        });
        let server = server.restart().expect("restarts");
        let bye = unregister.join().expect("carrier thread");
        assert_eq!(bye.headers.get(&HeaderName::Expires), Some("0"));
        assert_eq!(bye.headers.call_id(), first.headers.call_id());
        server
    });
    let (again, from) = carrier
        .request("REGISTER", WAIT)
        .expect("REGISTER after the restart");
    assert_ne!(again.headers.call_id(), first.headers.call_id());
    assert_eq!(again.headers.get(&HeaderName::Expires), Some("3600"));
    carrier.respond(&again, from, 200, "OK", &[("Expires", "600")]);
    let json = wait_state(&server, |s| s == "registered");
    assert_eq!(json[0]["state"], "registered", "{json}");
}

#[test]
fn retry_after_sets_when_a_failed_registration_is_tried_again() {
    let carrier = Carrier::bind([127, 0, 0, 17]);
    let server = Server::start_with(
        binary(),
        &office(&format!(
            "{}register = true\nmatch = [\"127.0.0.17\"]\n",
            trunk_at("carrier", &carrier, "")
        )),
    )
    .expect("server starts");
    let (first, from) = carrier.request("REGISTER", WAIT).expect("REGISTER");
    carrier.respond(
        &first,
        from,
        503,
        "Service Unavailable",
        &[("Retry-After", "1")],
    );
    let json = wait_state(&server, |s| s.starts_with("failed"));
    assert_eq!(
        json[0]["state"], "failed (503 Service Unavailable)",
        "{json}"
    );
    // The backoff alone would wait 10 s; the carrier asked for 1.
    let (again, from) = carrier
        .request("REGISTER", Duration::from_secs(5))
        .expect("REGISTER after Retry-After");
    carrier.respond(&again, from, 200, "OK", &[("Expires", "600")]);
    wait_state(&server, |s| s == "registered");
}

/// Whether the server's log says `needle` within a few seconds (the log is
/// read from its stderr by a thread, so it may trail the SIP answer).
fn log_has(server: &Server, needle: &str) -> bool {
    server.wait_log(needle, WAIT)
}
