//! Trunks through the real binary with a second Switchboard acting as the
//! carrier (issue 13): the carrier has the office's trunk as its extension
//! "office" (with a password, so it challenges as any Switchboard does:
//! 401 on REGISTER, 407 on INVITE) and its own extensions as "the outside"
//! (+1555765xxxx rings its extension xxxx; the office's numbers go to
//! "office"'s registered contact). The office is on 127.0.0.1, the carrier
//! on 127.0.0.2, a trunk that refuses everything on 127.0.0.3 and a
//! stranger on 127.0.0.4; every port is 0.

mod office;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use office::{OFFER, Talker};
use sip_proto::{Limits, Message};
use testkit::{Phone, RtpPeer, Server};

const WAIT: Duration = Duration::from_secs(10);
const OFFICE_TRUNK_PASSWORD: &str = "Tk9-office-Wq4z";
const P1001: &str = "Vq7-zK2p-Lm9w";
const P1002: &str = "Rt4-hX8n-Pc3y";
const P4321: &str = "Kp2-wQ7z-Hs4m";
const P4322: &str = "Jm5-vB8c-Xe2r";

fn binary() -> &'static Path {
    env!("CARGO_BIN_EXE_switchboard").as_ref()
}

/// `[media]` for one server: RTP bound to its own address, on a port
/// range of its own (servers of parallel tests never share a port).
fn media(ip: &str) -> String {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let first = 32_000 + (NEXT.fetch_add(1, Ordering::Relaxed) % 50) * 40;
    format!(
        "[media]\nbind = \"{ip}\"\nrtp_ports = \"{first}-{}\"\n",
        first + 39
    )
}

/// The carrier's dialplan: +1555765xxxx rings its extension xxxx, the
/// office's numbers (+1555000xxxx) go to the Request-URI of that number at
/// where "office" registered from (how a registration-based DID carrier
/// delivers a call); the dial result is logged and given to the caller.
const CARRIER: &str = r#"
function route(call)
  local n = call.to.user
  log.info("carrier route: caller=" .. tostring(call.caller) .. " to=" .. n)
  local r
  local ext = n:match("^%+1555765(%d%d%d%d)$")
  if ext then
    r = call:dial(ext, { caller_id = call.from.user, timeout = 8 })
  elseif n:match("^%+1555000%d%d%d%d$") then
    local office = registrar.contacts("office")[1]
    if office == nil then
      call:reject(480)
      return
    end
    r = call:dial("sip:" .. n .. "@" .. office.source, { caller_id = call.from.user, timeout = 8 })
  else
    call:reject(404)
    return
  end
  log.info("carrier dial result " .. r.status .. " " .. r.code)
  if call.state ~= "ended" then
    call:reject(r.code)
  end
end
"#;

/// Writes `lua` as the `default.lua` of a new dialplan directory under `dir`.
fn dialplans(dir: &Path, name: &str, lua: &str) -> String {
    let path = dir.join(name);
    std::fs::create_dir_all(&path).expect("mkdir dialplans");
    std::fs::write(path.join("default.lua"), lua).expect("write lua");
    format!("[dialplan]\ndir = {:?}\n", path.display())
}

/// The carrier Switchboard on 127.0.0.2: extension "office" (the office's
/// trunk), phones 4321 and 4322; `registrar` is its `[registrar]` table.
fn carrier(dir: &Path, registrar: &str) -> Server {
    let config = format!(
        "[sip]\nlisten = [\"udp:127.0.0.2:0\"]\ndomain = \"carrier.test\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [storage]\nbackend = \"memory\"\n\n[registrar]\nqualify_interval = \"0s\"\n{registrar}\n\n{}\n{}\n\
         [[extension]]\nid = \"office\"\npassword = \"{OFFICE_TRUNK_PASSWORD}\"\n\n\
         [[extension]]\nid = \"4321\"\npassword = \"{P4321}\"\n\n\
         [[extension]]\nid = \"4322\"\npassword = \"{P4322}\"\n",
        media("127.0.0.2"),
        dialplans(dir, "carrier-dialplans", CARRIER),
    );
    Server::start_with(binary(), &config).expect("the carrier starts")
}

/// The office's `[[trunk]]` "carrier" towards `carrier`, with `extra` keys.
fn trunk_to(carrier: &Server, extra: &str) -> String {
    let sip = carrier.udp.expect("carrier UDP");
    format!(
        "[[trunk]]\nname = \"carrier\"\nhost = \"{}\"\nport = {}\nusername = \"office\"\npassword = \"{OFFICE_TRUNK_PASSWORD}\"\n{extra}\n",
        sip.ip(),
        sip.port()
    )
}

/// The office Switchboard on 127.0.0.1: 1001 (did +15550001001, may call
/// out) and 1002; its dialplan is `lua`, or the shipped `default.lua` when
/// `None`; `extra` adds tables (trunks, `[security]`).
fn office(dir: &Path, lua: Option<&str>, extra: &str) -> Server {
    let plan = lua.map_or_else(String::new, |l| dialplans(dir, "office-dialplans", l));
    let config = format!(
        "[sip]\nlisten = [\"udp:127.0.0.1:0\"]\ndomain = \"office.test\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [storage]\nbackend = \"memory\"\n\n[registrar]\nqualify_interval = \"0s\"\n\n{}\n{plan}\n\
         [[extension]]\nid = \"1001\"\npassword = \"{P1001}\"\ndid = \"+15550001001\"\noutbound = true\n\n\
         [[extension]]\nid = \"1002\"\npassword = \"{P1002}\"\noutbound = true\n\n{extra}",
        media("127.0.0.1"),
    );
    Server::start_with(binary(), &config).expect("the office starts")
}

/// The office's test dialplan: a trunk's call rings the extension owning
/// its DID; 9 + ten digits goes out through "carrier", 8 + ten digits
/// through "dead" then "carrier"; every call logs that the route ran, and
/// a dial's result.
const OFFICE: &str = r#"
function route(call)
  log.info("office route: trunk=" .. tostring(call.trunk) .. " did=" .. tostring(call.did)
    .. " to=" .. call.to.user)
  local n = call.to.user
  local r
  if call.trunk then
    local ext = call.did and pbx.extension(call.did)
    if ext == nil then
      call:reject(404)
      return
    end
    r = call:dial(ext.id, { timeout = 8 })
  elseif n:match("^9%d%d%d%d%d%d%d%d%d%d$") then
    r = call:dial("trunk:carrier/+1" .. n:sub(2), { timeout = 8 })
  elseif n:match("^8%d%d%d%d%d%d%d%d%d%d$") then
    r = call:dial({ "trunk:dead/+1" .. n:sub(2), "trunk:carrier/+1" .. n:sub(2) }, { timeout = 8 })
  else
    call:reject(404)
    return
  end
  log.info("office dial result " .. r.status .. " " .. r.code)
  if call.state ~= "ended" then
    call:reject(r.code)
  end
end
"#;

/// `GET path` on `server`'s admin API, as JSON.
fn get_json(server: &Server, path: &str) -> serde_json::Value {
    let (status, body) = server.http_get(path).expect("admin API");
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).expect("JSON")
}

/// Polls `GET path` until `want` holds (up to [`WAIT`]); the last answer.
fn wait_json(
    server: &Server,
    path: &str,
    want: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let json = get_json(server, path);
        if want(&json) || Instant::now() >= deadline {
            return json;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The carrier's bindings of extension "office".
fn office_bindings(registrations: &serde_json::Value) -> Vec<serde_json::Value> {
    registrations
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["aor"] == "sip:office@carrier.test")
        .cloned()
        .collect()
}

/// Waits until the office's trunk "carrier" is registered at the carrier
/// (both sides agree); the carrier's binding of "office".
fn registered(office: &Server, carrier: &Server) -> serde_json::Value {
    let trunks = wait_json(office, "/api/v1/trunks", |j| j[0]["state"] == "registered");
    assert_eq!(trunks[0]["name"], "carrier", "{trunks}");
    assert_eq!(
        trunks[0]["state"],
        "registered",
        "{trunks}\n{}\ncarrier:\n{}",
        office.log(),
        carrier.log()
    );
    let regs = wait_json(carrier, "/api/v1/registrations", |j| {
        !office_bindings(j).is_empty()
    });
    let bindings = office_bindings(&regs);
    assert_eq!(bindings.len(), 1, "{regs}");
    bindings[0].clone()
}

#[test]
fn the_trunk_registers_to_the_carrier_with_digest_and_refreshes_before_expiry() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The carrier grants 3 s whatever is asked: the office's 60 s
    // registration must be refreshed for the binding to live on.
    let carrier = carrier(
        dir.path(),
        "min_expires = 1\ndefault_expires = 3\nmax_expires = 3",
    );
    let office = office(
        dir.path(),
        Some(OFFICE),
        &trunk_to(&carrier, "register = true\nexpires = 60"),
    );
    let binding = registered(&office, &carrier);
    let office_sip = office.udp.expect("office UDP");
    assert_eq!(
        binding["source"],
        office_sip.to_string(),
        "the office's SIP socket registered: {binding}"
    );
    assert!(
        binding["expires_in"].as_u64().is_some_and(|s| s <= 3),
        "{binding}"
    );
    // The carrier challenged (401) and the office answered with the
    // trunk's credentials, then it refreshed before the 3 s ran out.
    let granted = "registered to 127.0.0.2 as office for 3s";
    let deadline = Instant::now() + WAIT;
    while office.log().matches(granted).count() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        office.log().matches(granted).count() >= 3,
        "{}",
        office.log()
    );
    // Well past the first grant, the carrier still has the binding.
    let regs = get_json(&carrier, "/api/v1/registrations");
    assert_eq!(office_bindings(&regs).len(), 1, "{regs}");
    assert!(
        !carrier.log().contains("registration expired"),
        "{}",
        carrier.log()
    );
    let trunks = get_json(&office, "/api/v1/trunks");
    assert_eq!(trunks[0]["state"], "registered", "{trunks}");
}

#[test]
fn an_outbound_call_answers_the_carriers_407_and_carries_audio_both_ways() {
    let dir = tempfile::tempdir().expect("tempdir");
    let carrier = carrier(dir.path(), "");
    // The shipped default.lua: 9 + a national number goes out through
    // the trunk "carrier" for an extension with outbound = true.
    let office = office(dir.path(), None, &trunk_to(&carrier, ""));
    let mut far = phone_on(
        carrier.udp.expect("carrier UDP"),
        "4321",
        P4321,
        "carrier.test",
    );
    let mut p1001 = phone_on(
        office.udp.expect("office UDP"),
        "1001",
        P1001,
        "office.test",
    );

    let near_rtp = RtpPeer::localhost();
    let far_rtp = RtpPeer::localhost();
    let call = p1001
        .call_sdp("95557654321", &[], &near_rtp.sdp_offer(OFFER))
        .expect("call");
    let ringing = far.incoming(WAIT).expect("the carrier's phone rings");
    let from = ringing
        .invite
        .headers
        .get(&sip_proto::HeaderName::From)
        .unwrap_or_default()
        .to_owned();
    assert!(from.contains("+15550001001"), "1001's did: {from}");
    far.reply_sdp(
        &ringing.invite,
        &ringing.tag,
        200,
        &far_rtp.sdp_answer(OFFER),
    )
    .expect("answer");
    let (ok, _) = p1001.final_response(WAIT).expect("final answer");
    assert_eq!(
        ok.status,
        200,
        "{}\ncarrier:\n{}",
        office.log(),
        carrier.log()
    );
    let mut dialog = p1001.ack(&call, &ok).expect("ACK");
    // The carrier challenged the office's INVITE with 407 (the office's
    // trace of the call has it, and the INVITE sent again) and took its
    // answer as extension "office".
    let trace = get_json(&office, &format!("/api/v1/calls/{}/trace", call.call_id));
    let events = trace["events"].as_array().cloned().unwrap_or_default();
    let line = |e: &serde_json::Value| e["first_line"].as_str().unwrap_or_default().to_owned();
    assert!(
        events
            .iter()
            .any(|e| e["direction"] == "in" && line(e).starts_with("SIP/2.0 407")),
        "{trace}"
    );
    let invites_out = events
        .iter()
        .filter(|e| {
            e["direction"] == "out" && line(e).starts_with("INVITE sip:+15557654321@127.0.0.2:")
        })
        .count();
    assert_eq!(invites_out, 2, "{trace}");
    assert!(
        carrier.wait_log("carrier route: caller=office to=+15557654321", WAIT),
        "{}",
        carrier.log()
    );

    let near_media = office::media_of(&ok.body);
    let far_media = office::media_of(&ringing.invite.body);
    office::talk(
        Talker {
            who: "1001",
            rtp: &near_rtp,
            pbx: &near_media,
            tone: 1000.0,
        },
        Talker {
            who: "the carrier's phone",
            rtp: &far_rtp,
            pbx: &far_media,
            tone: 440.0,
        },
        20,
    );

    let bye = p1001
        .request_in(&mut dialog, "BYE", None)
        .expect("BYE answered");
    assert_eq!(bye.status, 200);
}

#[test]
fn an_inbound_did_rings_its_extension_with_audio_both_ways() {
    let dir = tempfile::tempdir().expect("tempdir");
    let carrier = carrier(dir.path(), "");
    // No `match`: the carrier's calls are the trunk's because they come
    // from the registrar it registered with. The shipped default.lua rings
    // the extension whose did was dialled.
    let office = office(dir.path(), None, &trunk_to(&carrier, "register = true"));
    registered(&office, &carrier);
    let mut far = phone_on(
        carrier.udp.expect("carrier UDP"),
        "4321",
        P4321,
        "carrier.test",
    );
    let mut p1001 = phone_on(
        office.udp.expect("office UDP"),
        "1001",
        P1001,
        "office.test",
    );
    let mut p1002 = phone_on(
        office.udp.expect("office UDP"),
        "1002",
        P1002,
        "office.test",
    );

    let far_rtp = RtpPeer::localhost();
    let near_rtp = RtpPeer::localhost();
    let call = far
        .call_sdp("+15550001001", &[], &far_rtp.sdp_offer(OFFER))
        .expect("call");
    let ringing = p1001.incoming(WAIT).unwrap_or_else(|e| {
        panic!(
            "1001 rings for its DID: {e:?}\n{}\ncarrier:\n{}",
            office.log(),
            carrier.log()
        )
    });
    p1001
        .reply_sdp(
            &ringing.invite,
            &ringing.tag,
            200,
            &near_rtp.sdp_answer(OFFER),
        )
        .expect("answer");
    let (ok, _) = far.final_response(WAIT).expect("final answer");
    assert_eq!(
        ok.status,
        200,
        "{}\ncarrier:\n{}",
        office.log(),
        carrier.log()
    );
    let mut dialog = far.ack(&call, &ok).expect("ACK");
    assert!(
        p1002.request("INVITE", Duration::from_millis(300)).is_err(),
        "only the DID's extension rings"
    );

    let far_media = office::media_of(&ok.body);
    let near_media = office::media_of(&ringing.invite.body);
    office::talk(
        Talker {
            who: "the carrier's phone",
            rtp: &far_rtp,
            pbx: &far_media,
            tone: 440.0,
        },
        Talker {
            who: "1001",
            rtp: &near_rtp,
            pbx: &near_media,
            tone: 1000.0,
        },
        20,
    );

    let bye = far
        .request_in(&mut dialog, "BYE", None)
        .expect("BYE answered");
    assert_eq!(bye.status, 200);
}

/// A phone of `user` at `sip`, registered (200) with `password`.
fn phone_on(sip: SocketAddr, user: &str, password: &str, domain: &str) -> Phone {
    let mut phone = Phone::udp(sip, user, password, domain);
    assert_eq!(phone.register(), 200, "{user}@{domain} registers");
    phone
}

/// An INVITE for `number` as a carrier would send it, from `via`.
fn invite_from(via: SocketAddr, number: &str) -> String {
    let ip = via.ip();
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    );
    format!(
        "INVITE sip:{number}@office.test SIP/2.0\r\n\
         Via: SIP/2.0/UDP {via};branch=z9hG4bK-stranger{}\r\n\
         From: <sip:trunk_x@{ip}>;tag=s1\r\n\
         To: <sip:{number}@office.test>\r\n\
         Call-ID: stranger-{}@{ip}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:trunk_x@{via}>\r\n\
         Max-Forwards: 70\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        via.port(),
        via.port(),
        sdp.len()
    )
}

/// The status of the next final response `socket` reads.
fn final_status(socket: &UdpSocket) -> Option<u16> {
    let deadline = Instant::now() + WAIT;
    let mut buf = vec![0u8; 65_535];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        socket.set_read_timeout(Some(left)).ok()?;
        let (n, _) = socket.recv_from(&mut buf).ok()?;
        if let Ok(Message::Response(r)) = Message::parse(&buf[..n], &Limits::default())
            && r.status >= 200
        {
            return Some(r.status);
        }
    }
}

#[test]
fn an_unknown_source_is_refused_without_reaching_the_dialplan() {
    let dir = tempfile::tempdir().expect("tempdir");
    let carrier = carrier(dir.path(), "");
    let office = office(
        dir.path(),
        Some(OFFICE),
        &trunk_to(&carrier, "register = true"),
    );
    registered(&office, &carrier);
    let office_sip = office.udp.expect("office UDP");
    let mut p1001 = phone_on(office_sip, "1001", P1001, "office.test");

    // The carrier's INVITE for 1001's DID reaches the route.
    let mut far = phone_on(
        carrier.udp.expect("carrier UDP"),
        "4321",
        P4321,
        "carrier.test",
    );
    far.call("+15550001001").expect("call");
    let ringing = p1001.incoming(WAIT).expect("1001 rings");
    p1001
        .reply(&ringing.invite, &ringing.tag, 486)
        .expect("busy");
    assert_eq!(far.final_response(WAIT).expect("final").0.status, 486);
    assert!(
        office.wait_log(
            "office route: trunk=carrier did=+15550001001 to=+15550001001",
            WAIT
        ),
        "{}",
        office.log()
    );

    // The same INVITE from a stranger on 127.0.0.4: challenged as if it
    // were an extension, and the route never runs.
    let stranger = UdpSocket::bind("127.0.0.4:0").expect("bind stranger");
    let invite = invite_from(stranger.local_addr().expect("addr"), "+15550001001");
    stranger
        .send_to(invite.as_bytes(), office_sip)
        .expect("send");
    assert_eq!(final_status(&stranger), Some(407), "{}", office.log());
    assert!(
        p1001.request("INVITE", Duration::from_millis(300)).is_err(),
        "1001 does not ring for the stranger"
    );
    assert_eq!(
        office.log().matches("office route:").count(),
        1,
        "{}",
        office.log()
    );
}

#[test]
fn with_anonymous_reject_a_stranger_gets_403_and_never_the_dialplan() {
    let dir = tempfile::tempdir().expect("tempdir");
    let carrier = carrier(dir.path(), "");
    let office = office(
        dir.path(),
        Some(OFFICE),
        &format!(
            "[security]\nanonymous = \"reject\"\n\n{}",
            trunk_to(&carrier, "register = true")
        ),
    );
    registered(&office, &carrier);
    let office_sip = office.udp.expect("office UDP");
    let stranger = UdpSocket::bind("127.0.0.4:0").expect("bind stranger");
    let invite = invite_from(stranger.local_addr().expect("addr"), "+15550001001");
    stranger
        .send_to(invite.as_bytes(), office_sip)
        .expect("send");
    assert_eq!(final_status(&stranger), Some(403), "{}", office.log());
    // The carrier, registered with, still gets through to the route.
    let mut far = phone_on(
        carrier.udp.expect("carrier UDP"),
        "4321",
        P4321,
        "carrier.test",
    );
    far.call("+15550009999").expect("call");
    assert_eq!(far.final_response(WAIT).expect("final").0.status, 404);
    assert!(
        office.wait_log("office route: trunk=carrier did=+15550009999", WAIT),
        "{}",
        office.log()
    );
    let log = office.log();
    assert_eq!(log.matches("office route:").count(), 1, "{log}");
}

/// A Switchboard on 127.0.0.3 that takes the office's calls as a trunk
/// (no challenge) and refuses each with 503.
fn dead(dir: &Path) -> Server {
    let config = format!(
        "[sip]\nlisten = [\"udp:127.0.0.3:0\"]\ndomain = \"dead.test\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [storage]\nbackend = \"memory\"\n\n{}\n{}\n\
         [[trunk]]\nname = \"office\"\nhost = \"127.0.0.1\"\nport = 9\nmatch = [\"127.0.0.1\"]\ncontext = \"default\"\n",
        media("127.0.0.3"),
        dialplans(
            dir,
            "dead-dialplans",
            "function route(call) log.info(\"dead: refusing \" .. call.to.user) call:reject(503) end\n"
        ),
    );
    Server::start_with(binary(), &config).expect("the dead trunk starts")
}

#[test]
fn a_trunk_answering_503_fails_over_to_the_carrier() {
    let dir = tempfile::tempdir().expect("tempdir");
    let carrier = carrier(dir.path(), "");
    let dead = dead(dir.path());
    let dead_sip = dead.udp.expect("dead UDP");
    let office = office(
        dir.path(),
        Some(OFFICE),
        &format!(
            "[[trunk]]\nname = \"dead\"\nhost = \"{}\"\nport = {}\n\n{}",
            dead_sip.ip(),
            dead_sip.port(),
            trunk_to(&carrier, "")
        ),
    );
    let mut far = phone_on(
        carrier.udp.expect("carrier UDP"),
        "4321",
        P4321,
        "carrier.test",
    );
    let mut p1001 = phone_on(
        office.udp.expect("office UDP"),
        "1001",
        P1001,
        "office.test",
    );

    let call = p1001.call("85557654321").expect("call");
    let ringing = far.incoming(WAIT).unwrap_or_else(|e| {
        panic!(
            "the carrier's phone rings: {e:?}\n{}\ndead:\n{}",
            office.log(),
            dead.log()
        )
    });
    far.reply(&ringing.invite, &ringing.tag, 200)
        .expect("answer");
    let (ok, _) = p1001.final_response(WAIT).expect("final");
    assert_eq!(ok.status, 200, "{}", office.log());
    let mut dialog = p1001.ack(&call, &ok).expect("ACK");
    // The first trunk was tried, and refused.
    assert!(
        dead.wait_log("dead: refusing +15557654321", WAIT),
        "{}",
        dead.log()
    );
    assert!(
        carrier.wait_log("carrier route: caller=office to=+15557654321", WAIT),
        "{}",
        carrier.log()
    );
    let bye = p1001
        .request_in(&mut dialog, "BYE", None)
        .expect("BYE answered");
    assert_eq!(bye.status, 200);
    assert!(
        office.wait_log("office dial result answered 200", WAIT),
        "{}",
        office.log()
    );
}

#[test]
fn max_channels_gives_the_second_outbound_call_503_locally() {
    let dir = tempfile::tempdir().expect("tempdir");
    let carrier = carrier(dir.path(), "");
    let office = office(
        dir.path(),
        Some(OFFICE),
        &trunk_to(&carrier, "max_channels = 1"),
    );
    let carrier_sip = carrier.udp.expect("carrier UDP");
    let office_sip = office.udp.expect("office UDP");
    let mut p4321 = phone_on(carrier_sip, "4321", P4321, "carrier.test");
    let mut p4322 = phone_on(carrier_sip, "4322", P4322, "carrier.test");
    let mut p1001 = phone_on(office_sip, "1001", P1001, "office.test");
    let mut p1002 = phone_on(office_sip, "1002", P1002, "office.test");

    // The first call holds the trunk's one channel while 4321 rings.
    p1001.call("95557654321").expect("first call");
    let ringing = p4321.incoming(WAIT).expect("4321 rings");
    p4321
        .reply(&ringing.invite, &ringing.tag, 180)
        .expect("ringing");
    let trunks = wait_json(&office, "/api/v1/trunks", |j| j[0]["channels"] == 1);
    assert_eq!(trunks[0]["channels"], 1, "{trunks}");

    // The second is refused by the office itself: the carrier never sees it.
    p1002.call("95557654322").expect("second call");
    let (refused, _) = p1002.final_response(WAIT).expect("final");
    assert_eq!(refused.status, 503, "{}", office.log());
    assert!(
        office.wait_log("office dial result unavailable 503", WAIT),
        "{}",
        office.log()
    );
    assert!(
        p4322.request("INVITE", Duration::from_millis(300)).is_err(),
        "4322 does not ring"
    );
    assert!(
        !carrier.log().contains("to=+15557654322"),
        "{}",
        carrier.log()
    );
}
