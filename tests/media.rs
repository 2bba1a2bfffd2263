//! Media end to end against the real binary: phones place and answer calls
//! with a testkit [`RtpPeer`]'s SDP and send real RTP, and the tests check
//! what comes back. The PBX anchors media (every SDP it sends names its own
//! address and ports), relays RTP between legs with symmetric-RTP latching
//! (RFC 4961), transcodes PCMU <-> PCMA, passes RFC 4733 digits, and Lua
//! can answer and echo, record and read digits.
//!
//! `600` is the shipped `default.lua`'s echo; the other numbers come from
//! [`MEDIA_LUA`]. Recordings land in `dialplan.recordings` (default
//! `recordings/` next to the config file).

mod office;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use office::{
    DOMAIN, OFFER, Office, TOLERANCE_HZ, TONE, WAIT, answered, assert_heard, assert_music,
    exchange, media_of, office, office_on, office_with, phone,
};

use testkit::{
    Dialog, Phone, RemoteMedia, RtpPeer, Wav, block_power, decode_run, dominant_frequency,
    tone_payload,
};

/// The echo number of the shipped dialplan.
const ECHO: &str = "600";
/// What `record` is asked to write, as the Lua sees it.
const RECORDING: &str = "rec.wav";

/// A dialplan for the Lua media actions: 700 reads three digits, 701
/// records.
const MEDIA_LUA: &str = r##"
function route(call)
  local dest = call.request_uri.user
  if dest == "700" then
    call:answer()
    local digits = call:read_digits({ max = 3, timeout = 5, terminator = "#" })
    log.info("read_digits returned [" .. tostring(digits) .. "]")
    call:hangup()
  elseif dest == "703" then
    call:answer()
    call:sleep(0.5)
    local r = call:record("rec.wav", { max = 5 })
    log.info(string.format("record ended by %s after %.1f s", r.reason, r.duration))
    call:hangup()
  elseif dest == "702" then
    call:answer()
    call:dial("1002", { timeout = 10 })
    call:hangup()
  elseif dest == "704" then
    call:hold()
    call:sleep(1.6)
    call:unhold()
    call:echo()
  elseif dest == "701" then
    call:answer()
    call:record("rec.wav", { max = 2 })
    log.info("record finished")
    call:hangup()
  else
    call:reject(404, "Not Found")
  end
end
"##;

/// A bridged call 1001 -> 1002: each side's phone, RTP peer, and the media
/// the PBX told it about.
struct Bridged {
    a: Phone,
    b: Phone,
    dialog: Dialog,
    b_tag: String,
    /// The callee's side of its dialog with the PBX (for its re-INVITEs).
    b_dialog: Dialog,
    /// Where the caller sends: the PBX's address in the 200.
    a_media: RemoteMedia,
    /// Where the callee sends: the PBX's address in the INVITE.
    b_media: RemoteMedia,
}

fn bridge(o: &Office, a_offer: &str, b_answer: &str) -> Bridged {
    let mut a = phone(o, "1001");
    let mut b = phone(o, "1002");
    let call = a.call_sdp("1002", &[], a_offer).expect("INVITE sent");
    let incoming = b.incoming(WAIT).expect("callee gets the INVITE");
    let b_media = media_of(&incoming.invite.body);
    b.reply_sdp(&incoming.invite, &incoming.tag, 200, b_answer)
        .unwrap();
    let (ok, _) = a.final_response(WAIT).expect("200 relayed");
    assert_eq!(ok.status, 200);
    let a_media = media_of(&ok.body);
    let dialog = a.ack(&call, &ok).expect("ACK");
    b.request("ACK", WAIT)
        .expect("the B2BUA ACKs the callee's 200");
    let b_dialog = b.dialog_of(&incoming);
    Bridged {
        a,
        b,
        dialog,
        b_dialog,
        b_tag: incoming.tag,
        a_media,
        b_media,
    }
}

impl Bridged {
    fn hang_up(mut self) {
        let bye = self.a.request_in(&mut self.dialog, "BYE", None);
        assert_eq!(bye.expect("BYE answered").status, 200);
        let bye_b = self.b.request("BYE", WAIT).expect("callee gets BYE");
        self.b.reply(&bye_b, &self.b_tag, 200).unwrap();
    }
}

/// The first server log line containing `needle`, waiting for it a while.
fn wait_for_log(o: &Office, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let log = o.server.log();
        if let Some(line) = log.lines().find(|l| l.contains(needle)) {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {needle:?} in {log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Where `record("rec.wav")` writes: `recordings/` next to the config.
fn recording_candidates(o: &Office) -> Vec<PathBuf> {
    // dialplan.recordings defaults to `recordings`, next to the config file.
    vec![o.server.dir().join("recordings").join(RECORDING)]
}

/// Waits for the recording to exist and stop growing, and reads it.
fn finished_recording(o: &Office) -> (PathBuf, Wav) {
    let deadline = Instant::now() + WAIT;
    let mut last: Option<(PathBuf, u64)> = None;
    loop {
        let found = recording_candidates(o)
            .into_iter()
            .find_map(|p| std::fs::metadata(&p).ok().map(|m| (p, m.len())));
        if let (Some(now), Some(before)) = (&found, &last)
            && now == before
            && let Ok(wav) = Wav::read(&now.0)
        {
            return (now.0.clone(), wav);
        }
        assert!(
            Instant::now() < deadline,
            "no finished recording in any of {:?}; log:\n{}",
            recording_candidates(o),
            o.server.log()
        );
        last = found;
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn options_answered(o: &Office) -> u16 {
    let mut p = Phone::udp(o.server.udp.expect("udp"), "monitor", "", DOMAIN);
    let uri = format!("sip:ping@{}", o.server.udp.expect("udp"));
    let req = p.ua.request("OPTIONS", &uri);
    p.ua.transact(&req).map_or(0, |r| r.status)
}

#[test]
fn echo_returns_the_callers_tone() {
    let o = office(None);
    let mut a = phone(&o, "1001");
    let rtp = RtpPeer::localhost();
    let (mut dialog, media) = answered(&mut a, ECHO, &rtp.sdp_offer(OFFER));
    assert_ne!(
        media.addr,
        rtp.local_addr(),
        "the PBX answers with its own port"
    );
    assert_eq!(media.voice, Some(0), "PCMU, the offer's first codec");
    rtp.send_tone(media.addr, 0, 1000.0, TONE)
        .expect("send tone");
    rtp.settle(Duration::from_millis(200), WAIT);
    let pts = assert_heard("the caller", &rtp, media.addr, 40, 1000.0);
    assert!(pts.iter().all(|pt| *pt == 0), "{pts:?}");
    assert_eq!(a.request_in(&mut dialog, "BYE", None).unwrap().status, 200);
}

#[test]
fn bridged_call_carries_audio_both_ways_through_the_pbx() {
    let o = office(None);
    let (ra, rb) = (RtpPeer::localhost(), RtpPeer::localhost());
    let call = bridge(
        &o,
        &ra.sdp_offer(OFFER),
        &rb.sdp_answer(&["PCMU", "telephone-event"]),
    );
    // Anchored: each side sees the PBX, not the other phone.
    assert_ne!(
        call.a_media.addr,
        rb.local_addr(),
        "the caller is told the PBX's port"
    );
    assert_ne!(
        call.b_media.addr,
        ra.local_addr(),
        "the callee is told the PBX's port"
    );
    // The PBX listens on 127.0.0.1 only, so that is the address it can give.
    let pbx_ip = o.server.udp.unwrap().ip();
    assert_eq!(call.a_media.addr.ip(), pbx_ip, "{:?}", call.a_media);
    assert_eq!(call.b_media.addr.ip(), pbx_ip, "{:?}", call.b_media);
    assert_ne!(
        call.a_media.addr, call.b_media.addr,
        "one port pair per leg"
    );
    exchange(
        &ra,
        (call.a_media.addr, 0, 1000.0),
        &rb,
        (call.b_media.addr, 0, 2000.0),
    );
    assert_heard("the callee", &rb, call.b_media.addr, 40, 1000.0);
    assert_heard("the caller", &ra, call.a_media.addr, 40, 2000.0);
    call.hang_up();
}

#[test]
fn phones_behind_nat_are_latched_onto_where_their_rtp_comes_from() {
    let o = office(None);
    let (ra, rb) = (RtpPeer::localhost(), RtpPeer::localhost());
    // Both phones write their private LAN address in SDP, as a phone
    // behind a NAT router does; their RTP arrives from elsewhere.
    let (private_a, private_b) = (
        "192.168.1.20:4000".parse().unwrap(),
        "10.99.99.99:4000".parse().unwrap(),
    );
    let call = bridge(
        &o,
        &ra.sdp_advertising(private_a, OFFER),
        &rb.sdp_advertising(private_b, &["PCMU", "telephone-event"]),
    );
    exchange(
        &ra,
        (call.a_media.addr, 0, 1000.0),
        &rb,
        (call.b_media.addr, 0, 2000.0),
    );
    // The first packets may go to the SDP's address before the latch.
    assert_heard("the callee", &rb, call.b_media.addr, 35, 1000.0);
    assert_heard("the caller", &ra, call.a_media.addr, 35, 2000.0);
    call.hang_up();
}

#[test]
fn pcmu_caller_and_pcma_callee_hear_each_other_transcoded() {
    let o = office(None);
    let (ra, rb) = (RtpPeer::localhost(), RtpPeer::localhost());
    let call = bridge(
        &o,
        &ra.sdp_offer(&["PCMU", "telephone-event"]),
        &rb.sdp_answer(&["PCMA", "telephone-event"]),
    );
    assert_eq!(call.a_media.voice, Some(0), "the caller's leg is PCMU");
    assert!(
        call.b_media.payload_types.contains(&8),
        "the PBX offers the callee PCMA: {:?}",
        call.b_media.payload_types
    );
    exchange(
        &ra,
        (call.a_media.addr, 0, 1000.0),
        &rb,
        (call.b_media.addr, 8, 2000.0),
    );
    heard_in("the callee", &rb, call.b_media.addr, 1000.0, 8);
    heard_in("the caller", &ra, call.a_media.addr, 2000.0, 0);
    call.hang_up();
}

/// `peer` heard `freq` from `from`, every packet in payload type `pt`.
fn heard_in(who: &str, peer: &RtpPeer, from: std::net::SocketAddr, freq: f64, pt: u8) {
    let types = assert_heard(who, peer, from, 40, freq);
    assert!(
        types.iter().all(|t| *t == pt),
        "{who} gets payload type {pt}: {types:?}"
    );
}

#[test]
fn rfc4733_digits_reach_read_digits() {
    let o = office(Some(MEDIA_LUA));
    let mut a = phone(&o, "1001");
    let rtp = RtpPeer::localhost();
    let (_dialog, media) = answered(&mut a, "700", &rtp.sdp_offer(OFFER));
    let pt = media
        .telephone_event
        .expect("the PBX's answer keeps telephone-event");
    rtp.send_digits(
        media.addr,
        pt,
        "123",
        Duration::from_millis(100),
        Duration::from_millis(60),
    )
    .expect("send digits");
    let line = wait_for_log(&o, "read_digits returned");
    assert!(line.contains("read_digits returned [123]"), "{line}");
    // The dialplan hangs up after reading.
    let bye = a.request("BYE", WAIT).expect("the PBX hangs up");
    a.reply(&bye, "", 200).unwrap();
}

#[test]
fn the_shipped_700_plays_a_prompt_and_reads_the_digits_back() {
    let o = office(None);
    let mut a = phone(&o, "1001");
    let rtp = RtpPeer::localhost();
    let (_dialog, media) = answered(&mut a, "700", &rtp.sdp_offer(OFFER));
    let pt = media.telephone_event.expect("telephone-event");
    // hello.wav is about 4.8 s: its first second arrives paced.
    let started = Instant::now();
    assert!(
        rtp.wait_for(50, WAIT),
        "the prompt plays: {} packets in {:?}; server log: {}",
        rtp.count(),
        started.elapsed(),
        o.server.log()
    );
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "20 ms packets are paced, not sent in a burst"
    );
    let prompt = rtp.received();
    assert!(
        prompt.iter().all(|p| p.from == media.addr),
        "the prompt comes from the PBX's advertised port"
    );
    // Typed during the prompt: kept for read_digits (type-ahead).
    rtp.send_digits(
        media.addr,
        pt,
        "42#",
        Duration::from_millis(100),
        Duration::from_millis(60),
    )
    .expect("send digits");
    let line = wait_for_log(&o, "caller typed");
    assert!(line.contains("caller typed 42"), "{line}");
    // you-entered, four, two, goodbye, then the PBX hangs up.
    let before = rtp.count();
    let bye = a
        .request("BYE", Duration::from_secs(20))
        .expect("the PBX hangs up after reading back");
    a.reply(&bye, "", 200).unwrap();
    let read_back = rtp.count() - before;
    assert!(
        read_back > 100,
        "about 3 s of read-back and goodbye, got {read_back} packets"
    );
    // Seven prompts, one stream: the phone sees one SSRC whose sequence
    // numbers go up by one and whose timestamps never go back (RFC 3550
    // §5.1), as if one source had spoken.
    let headers: Vec<_> = rtp.received().iter().filter_map(|p| p.header).collect();
    assert!(
        headers.iter().all(|h| h.ssrc == headers[0].ssrc),
        "one SSRC across prompts"
    );
    for pair in headers.windows(2) {
        assert_eq!(
            pair[1].sequence,
            pair[0].sequence.wrapping_add(1),
            "sequence continues across prompts"
        );
        let step = pair[1].timestamp.wrapping_sub(pair[0].timestamp);
        assert!(
            (1..8000 * 5).contains(&step),
            "timestamp moves on across prompts: {step}"
        );
    }
}

#[test]
fn sip_info_digits_reach_read_digits_too() {
    let o = office(Some(MEDIA_LUA));
    let mut a = phone(&o, "1001");
    let rtp = RtpPeer::localhost();
    let (mut dialog, _) = answered(&mut a, "700", &rtp.sdp_offer(OFFER));
    // Cisco's dtmf-relay (what most desk phones send), the plain
    // application/dtmf, and 11 for '#'.
    for (content_type, body) in [
        ("application/dtmf-relay", "Signal=4\r\nDuration=160\r\n"),
        ("application/dtmf", "5"),
        ("application/dtmf-relay", "Signal=11\r\nDuration=160\r\n"),
    ] {
        let r = a
            .request_in_with(&mut dialog, "INFO", Some((content_type, body)))
            .expect("INFO answered");
        assert_eq!(r.status, 200);
    }
    let line = wait_for_log(&o, "read_digits returned");
    assert!(line.contains("read_digits returned [45]"), "{line}");
    let bye = a.request("BYE", WAIT).expect("the PBX hangs up");
    a.reply(&bye, "", 200).unwrap();
}

/// A bridged phone's keypresses reach the other phone the way that phone
/// negotiated them (Asterisk's `dtmf_mode` interworking): the caller's
/// RFC 4733 events as INFO to a callee that answered without
/// telephone-event, the callee's INFO as RFC 4733 events in the caller's
/// stream.
#[test]
fn digits_cross_the_bridge_as_each_phone_negotiated() {
    let o = office(None);
    let (ra, rb) = (RtpPeer::localhost(), RtpPeer::localhost());
    let mut call = bridge(&o, &ra.sdp_offer(OFFER), &rb.sdp_answer(&["PCMU"]));
    let a_events = call
        .a_media
        .telephone_event
        .expect("the caller keeps telephone-event");

    // RFC 4733 from the caller: INFO to the callee, one per digit.
    ra.send_digits(
        call.a_media.addr,
        a_events,
        "19",
        Duration::from_millis(100),
        Duration::from_millis(60),
    )
    .expect("send digits");
    for want in ["Signal=1", "Signal=9"] {
        let info = call.b.request("INFO", WAIT).expect("the callee gets INFO");
        let body = String::from_utf8_lossy(&info.body).into_owned();
        assert_eq!(
            info.headers.get_raw("Content-Type"),
            Some("application/dtmf-relay")
        );
        assert!(body.contains(want), "{body}");
        call.b.reply(&info, &call.b_tag, 200).unwrap();
    }
    assert!(
        rb.packets_of(a_events).is_empty(),
        "no events towards a callee that did not negotiate them"
    );

    // INFO from the callee: RFC 4733 events in the caller's stream.
    press_in_info(
        &mut call.b,
        &mut call.b_dialog,
        "Signal=#\r\nDuration=120\r\n",
    );
    let deadline = Instant::now() + WAIT;
    let is_end = |p: &testkit::Received| p.payload.get(1).is_some_and(|b| b & 0x80 != 0);
    let events = loop {
        let events = ra.packets_of(a_events);
        if events.iter().filter(|p| is_end(p)).count() >= 3 {
            break events;
        }
        assert!(Instant::now() < deadline, "the caller got {events:?}");
        std::thread::sleep(Duration::from_millis(10));
    };
    // One event (RFC 4733 §2.5.1): '#' (11) in every packet, one
    // timestamp, the marker bit on the first.
    let headers: Vec<_> = events.iter().map(|p| p.header.unwrap()).collect();
    assert!(
        events.iter().all(|p| p.payload.first() == Some(&11)),
        "{events:?}"
    );
    assert!(headers.iter().all(|h| h.timestamp == headers[0].timestamp));
    assert!(headers[0].marker, "{headers:?}");
    call.hang_up();
}

/// `phone` presses a key in an INFO (`application/dtmf-relay` `body`),
/// which the PBX answers 200.
fn press_in_info(phone: &mut Phone, dialog: &mut Dialog, body: &str) {
    let r = phone
        .request_in_with(dialog, "INFO", Some(("application/dtmf-relay", body)))
        .expect("INFO answered");
    assert_eq!(r.status, 200);
}

/// A phone pressing keys at a phone that does not answer INFO: a few
/// keypresses wait for their answers, the rest are dropped (nothing grows
/// without bound), and once answered, keys go through again.
#[test]
fn unanswered_info_keypresses_are_bounded() {
    let o = office(None);
    let (ra, rb) = (RtpPeer::localhost(), RtpPeer::localhost());
    let mut call = bridge(&o, &ra.sdp_offer(OFFER), &rb.sdp_answer(&["PCMU"]));
    let press = |call: &mut Bridged| {
        press_in_info(
            &mut call.a,
            &mut call.dialog,
            "Signal=1\r\nDuration=100\r\n",
        );
    };
    for _ in 0..20 {
        press(&mut call);
    }
    // The callee answers none: 8 different INFOs reach it (and their
    // retransmissions), no more.
    let mut pending = std::collections::BTreeMap::new();
    let until = Instant::now() + Duration::from_millis(1500);
    while let Ok(info) = call
        .b
        .request("INFO", until.saturating_duration_since(Instant::now()))
    {
        pending.insert(info.cseq().unwrap().seq, info);
    }
    assert_eq!(pending.len(), 8, "{:?}", pending.keys());
    for info in pending.values() {
        call.b.reply(info, &call.b_tag, 200).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    press(&mut call);
    // (A late retransmission of an answered one is answered again.)
    let info = loop {
        let info = call
            .b
            .request("INFO", WAIT)
            .expect("a key goes through again");
        call.b.reply(&info, &call.b_tag, 200).unwrap();
        if !pending.contains_key(&info.cseq().unwrap().seq) {
            break info;
        }
    };
    assert!(String::from_utf8_lossy(&info.body).contains("Signal=1"));
    call.hang_up();
}

#[test]
fn record_writes_what_the_caller_said() {
    let o = office(Some(MEDIA_LUA));
    let mut a = phone(&o, "1001");
    let rtp = RtpPeer::localhost();
    let (mut dialog, media) = answered(&mut a, "701", &rtp.sdp_offer(OFFER));
    rtp.send_tone(media.addr, media.voice.unwrap_or(0), 1000.0, TONE)
        .expect("send tone");
    // Hang up before `max = 2` ends the recording.
    let bye = a
        .request_in(&mut dialog, "BYE", None)
        .expect("BYE answered");
    assert_eq!(bye.status, 200);
    let (path, wav) = finished_recording(&o);
    assert_eq!(
        (wav.sample_rate, wav.channels),
        (8000, 1),
        "{}",
        path.display()
    );
    let length = wav.duration();
    assert!(
        (Duration::from_millis(800)..=Duration::from_millis(1500)).contains(&length),
        "{} lasts {length:?}",
        path.display()
    );
    let f = dominant_frequency(&wav.samples, wav.sample_rate);
    assert!(
        f.is_some_and(|f| (f - 1000.0).abs() <= TOLERANCE_HZ),
        "{} holds {f:?} Hz",
        path.display()
    );
    // Owner only (issue 11): recordings are people's voices.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600, "{}", path.display());
    assert_eq!(mode(path.parent().unwrap()), 0o700);
}

/// Issue 11: a symlink where a recording goes is refused, not followed (a
/// link planted in the recordings directory must not let a call overwrite
/// another file).
#[test]
fn a_recording_never_follows_a_symlink() {
    let o = office(Some(MEDIA_LUA));
    let dir = o.server.dir().join("recordings");
    std::fs::create_dir_all(&dir).unwrap();
    let victim = o.server.dir().join("victim.txt");
    std::fs::write(&victim, "precious").unwrap();
    std::os::unix::fs::symlink(&victim, dir.join(RECORDING)).unwrap();
    let mut a = phone(&o, "1001");
    let rtp = RtpPeer::localhost();
    let (mut dialog, media) = answered(&mut a, "701", &rtp.sdp_offer(OFFER));
    rtp.send_tone(media.addr, media.voice.unwrap_or(0), 1000.0, TONE)
        .expect("send tone");
    assert_eq!(a.request_in(&mut dialog, "BYE", None).unwrap().status, 200);
    let line = wait_for_log(&o, "symbolic link");
    assert!(line.contains(RECORDING), "{line}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(
        std::fs::symlink_metadata(dir.join(RECORDING))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn hostile_rtp_does_not_reach_or_hijack_an_echo_call() {
    let o = office(None);
    let mut a = phone(&o, "1001");
    let rtp = RtpPeer::localhost();
    let intruder = RtpPeer::localhost();
    let (mut dialog, media) = answered(&mut a, ECHO, &rtp.sdp_offer(OFFER));
    std::thread::scope(|s| {
        let talk = s.spawn(|| rtp.send_tone(media.addr, 0, 1000.0, Duration::from_millis(1500)));
        // Let the caller's stream latch first.
        std::thread::sleep(Duration::from_millis(200));
        // From the caller's own socket: garbage, and a datagram larger
        // than any RTP the PBX expects, shaped like RTP.
        rtp.send_raw(media.addr, b"\xff\xfe not RTP at all")
            .unwrap();
        rtp.send_raw(media.addr, &[]).unwrap();
        let mut oversize = vec![0x80, 0x00, 0x12, 0x34, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef];
        oversize.resize(2000, 0xFF);
        rtp.send_raw(media.addr, &oversize).unwrap();
        // From a third socket, another SSRC: 200 packets of a 3 kHz tone.
        for k in 0..200 {
            let payload = tone_payload(0, 3000.0, k * 160, 160).expect("PCMU");
            intruder.send_packet(media.addr, 0, &payload, 160).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        talk.join().expect("sender thread").expect("send tone");
    });
    rtp.settle(Duration::from_millis(200), WAIT);
    intruder.settle(Duration::from_millis(200), WAIT);
    assert_eq!(
        intruder.count(),
        0,
        "nothing goes to a source that is not the phone"
    );
    assert_heard("the caller", &rtp, media.addr, 60, 1000.0);
    let audio = decode_run(&rtp.received());
    let ours = block_power(&audio, 8000, 1000.0, 320);
    let theirs = block_power(&audio, 8000, 3000.0, 320);
    assert!(
        theirs < ours / 20.0,
        "the intruder's tone was echoed: 3 kHz {theirs} vs 1 kHz {ours}"
    );
    assert_eq!(options_answered(&o), 200, "the server is alive");
    assert_eq!(a.request_in(&mut dialog, "BYE", None).unwrap().status, 200);
}

/// `who` (the caller when true) re-INVITEs with `direction`; the PBX answers
/// it itself (music on hold keeps the hold local): the answer has
/// `answer_dir` and the other phone gets no re-INVITE.
fn reinvite_here(
    call: &mut Bridged,
    caller: bool,
    rtp: &RtpPeer,
    direction: &str,
    answer_dir: &str,
) {
    let offer = rtp.sdp_offer(OFFER).replace("a=sendrecv", direction);
    let ok = if caller {
        call.a.request_in(&mut call.dialog, "INVITE", Some(&offer))
    } else {
        call.b
            .request_in(&mut call.b_dialog, "INVITE", Some(&offer))
    }
    .expect("re-INVITE answered");
    assert_eq!(ok.status, 200);
    let answer = std::str::from_utf8(&ok.body).unwrap();
    assert!(
        answer.contains(answer_dir),
        "answered {answer_dir}: {answer}"
    );
    if caller {
        call.a.ack_in(&call.dialog).unwrap();
    } else {
        call.b.ack_in(&call.b_dialog).unwrap();
    }
    let other = if caller { &mut call.b } else { &mut call.a };
    if let Some(sip_proto::Message::Request(r)) = other.silence(Duration::from_millis(300)) {
        panic!(
            "the hold stays local, but the other phone got {}",
            r.method.as_str()
        );
    }
}

/// A bridged call; the caller (`caller_holds`) or the callee holds with
/// `hold_dir` and keeps sending its tone, as does the other phone; the
/// other side hears music on hold (`sounds/moh/default.wav`), not silence,
/// and nothing of the holder; the admin API shows the hold; the hold and
/// the resume are answered by the PBX (no re-INVITE reaches the other
/// phone, see [`reinvite_here`]), and the resume brings audio back both
/// ways.
fn held_party_hears_music_then_resume(caller_holds: bool, hold_dir: &str, answer_dir: &str) {
    let o = office(None);
    let (ra, rb) = (RtpPeer::localhost(), RtpPeer::localhost());
    let mut call = bridge(
        &o,
        &ra.sdp_offer(OFFER),
        &rb.sdp_answer(&["PCMU", "telephone-event"]),
    );
    exchange(
        &ra,
        (call.a_media.addr, 0, 1000.0),
        &rb,
        (call.b_media.addr, 0, 2000.0),
    );
    let holder = if caller_holds { &ra } else { &rb };
    reinvite_here(&mut call, caller_holds, holder, hold_dir, answer_dir);
    ra.clear();
    rb.clear();
    let long = Duration::from_millis(1600);
    std::thread::scope(|s| {
        let t = s.spawn(|| ra.send_tone(call.a_media.addr, 0, 1000.0, long));
        rb.send_tone(call.b_media.addr, 0, 2000.0, long)
            .expect("send tone");
        t.join().expect("sender").expect("send tone");
    });
    ra.settle(Duration::from_millis(200), WAIT);
    rb.settle(Duration::from_millis(200), WAIT);
    let (listener, listener_addr, holder_hz) = if caller_holds {
        (&rb, call.b_media.addr, 1000.0)
    } else {
        (&ra, call.a_media.addr, 2000.0)
    };
    assert_music("the held party", listener, listener_addr, holder_hz);
    let leaked = holder
        .received()
        .iter()
        .filter(|p| p.header.is_some())
        .count();
    assert_eq!(leaked, 0, "a phone that put the call on hold gets no audio");
    // The admin API shows who holds.
    let (_, calls) = o.server.http_get("/api/v1/calls").expect("admin API");
    assert!(calls.contains("\"held\":true"), "{calls}");
    // Resumed: audio both ways again, through the same ports.
    reinvite_here(&mut call, caller_holds, holder, "a=sendrecv", "a=sendrecv");
    resumed_both_ways(call, &ra, &rb);
}

/// After a resume: a tone each way is heard on the other side, through the
/// same ports; then the caller hangs up.
fn resumed_both_ways(call: Bridged, ra: &RtpPeer, rb: &RtpPeer) {
    ra.clear();
    rb.clear();
    exchange(
        ra,
        (call.a_media.addr, 0, 1000.0),
        rb,
        (call.b_media.addr, 0, 2000.0),
    );
    assert_heard("the caller, resumed", ra, call.a_media.addr, 40, 2000.0);
    assert_heard("the callee, resumed", rb, call.b_media.addr, 40, 1000.0);
    call.hang_up();
}

/// A hold offered in an UPDATE (RFC 3311) is a hold like a re-INVITE's:
/// answered for the holder's side, music to the other phone, and the
/// resume in another UPDATE joins them again.
#[test]
fn a_hold_in_an_update_plays_music_too() {
    let o = office(None);
    let (ra, rb) = (RtpPeer::localhost(), RtpPeer::localhost());
    let mut call = bridge(
        &o,
        &ra.sdp_offer(OFFER),
        &rb.sdp_answer(&["PCMU", "telephone-event"]),
    );
    let mut update = |direction: &str, answered: &str| {
        let offer = ra.sdp_offer(OFFER).replace("a=sendrecv", direction);
        let ok = call
            .a
            .request_in(&mut call.dialog, "UPDATE", Some(&offer))
            .expect("UPDATE answered");
        assert_eq!(ok.status, 200);
        let answer = String::from_utf8_lossy(&ok.body).into_owned();
        assert!(answer.contains(answered), "{answer}");
    };
    update("a=sendonly", "a=recvonly");
    rb.clear();
    let long = Duration::from_millis(1600);
    ra.send_tone(call.a_media.addr, 0, 1000.0, long)
        .expect("send tone");
    rb.settle(Duration::from_millis(200), WAIT);
    assert_music("the held callee", &rb, call.b_media.addr, 1000.0);
    update("a=sendrecv", "a=sendrecv");
    resumed_both_ways(call, &ra, &rb);
}

/// Issue 12, item 3: the caller holds (`sendonly`), the callee hears music.
#[test]
fn the_held_party_hears_music_and_resume_restores_the_bridge() {
    held_party_hears_music_then_resume(true, "a=sendonly", "a=recvonly");
}

/// The same from the other end: the callee holds with `inactive`, the
/// caller hears music, and the callee's resume joins them again.
#[test]
fn the_caller_hears_music_when_the_callee_holds() {
    held_party_hears_music_then_resume(false, "a=inactive", "a=inactive");
}

/// `call:hold()` in an IVR: the caller hears music (answered by the hold
/// itself), and after `call:unhold()` the route goes on (here an echo).
#[test]
fn a_route_holds_the_caller_with_music_then_goes_on() {
    let o = office(Some(MEDIA_LUA));
    let mut a = phone(&o, "1001");
    let ra = RtpPeer::localhost();
    let (mut dialog, media) = answered(&mut a, "704", &ra.sdp_offer(OFFER));
    ra.send_tone(media.addr, 0, 1000.0, Duration::from_millis(1400))
        .expect("send tone");
    assert_music("the caller on hold", &ra, media.addr, 1000.0);
    // After unhold (1.6 s after the answer; 1.4 s have passed), the echo:
    // the caller hears its own tone.
    std::thread::sleep(Duration::from_millis(1000));
    ra.clear();
    ra.send_tone(media.addr, 0, 1000.0, TONE)
        .expect("send tone");
    ra.settle(Duration::from_millis(200), WAIT);
    assert_heard(
        "the caller, echoed after unhold",
        &ra,
        media.addr,
        40,
        1000.0,
    );
    assert_eq!(a.request_in(&mut dialog, "BYE", None).unwrap().status, 200);
}

#[test]
fn sdp_the_pbx_cannot_use_is_refused_with_a_warning() {
    let o = office(None);
    let mut a = phone(&o, "1001");
    for (body, status, needle) in [
        ("this is not SDP", 400, "SDP"),
        (
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n",
            488,
            "codec",
        ),
        (
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 4000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n",
            488,
            "audio",
        ),
    ] {
        a.call_sdp(ECHO, &[], body).expect("INVITE sent");
        let (r, _) = a.final_response(WAIT).expect("answered");
        assert_eq!(r.status, status, "{body:?}");
        let warning = r
            .headers
            .get(&sip_proto::HeaderName::Warning)
            .unwrap_or_default()
            .to_owned();
        assert!(warning.contains(needle), "{body:?}: Warning {warning:?}");
    }
    // Still serving: a good call to the echo is answered.
    let rtp = RtpPeer::localhost();
    let (mut dialog, _) = answered(&mut a, ECHO, &rtp.sdp_offer(OFFER));
    assert_eq!(a.request_in(&mut dialog, "BYE", None).unwrap().status, 200);
}

#[test]
fn a_phone_that_sends_no_rtp_is_hung_up_after_rtp_timeout() {
    let o = office_with(None, "[media]\nrtp_timeout = \"1s\"\n");
    let mut a = phone(&o, "1001");
    let rtp = RtpPeer::localhost();
    let started = Instant::now();
    let (_dialog, _) = answered(&mut a, ECHO, &rtp.sdp_offer(OFFER));
    let bye = a
        .request("BYE", WAIT)
        .expect("the PBX hangs up a silent call");
    a.reply(&bye, "", 200).unwrap();
    let after = started.elapsed();
    assert!(
        after >= Duration::from_millis(900),
        "not before rtp_timeout: {after:?}"
    );
    wait_for_log(&o, "no RTP; hanging up");
    // The ports go back once the echo's task has let go of the leg.
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, metrics) = o.server.http_get("/metrics").expect("metrics");
        assert_eq!(status, 200);
        assert!(
            metrics.contains("rtp_timeouts_total 1"),
            "counted: {metrics}"
        );
        if metrics.contains("rtp_port_pairs_in_use 0") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the call's ports went back: {metrics}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_caller_silent_while_it_hears_early_media_is_not_hung_up() {
    // rtp_timeout is for answered calls: a caller that has sent no RTP
    // while the callee's early media played to it, for longer than the
    // timeout, is put through when the callee answers (its silence
    // counts from the answer, not from its leg made at the 183).
    ringing_longer_than_the_rtp_timeout(true);
}

#[test]
fn a_callee_whose_183_brought_no_rtp_is_not_hung_up_at_its_answer() {
    ringing_longer_than_the_rtp_timeout(false);
}

/// 1002 rings with a 183 and SDP for twice `rtp_timeout` (playing an
/// announcement when `announces`, silent otherwise), the caller silent,
/// then answers: both are heard both ways, neither is hung up.
fn ringing_longer_than_the_rtp_timeout(announces: bool) {
    let o = office_with(None, "[media]\nrtp_timeout = \"1s\"\n");
    let mut r = Ringing::new(&o, OFFER);
    let a_media = r.early(&["PCMU"]);
    let ringing = Duration::from_millis(2200);
    if announces {
        r.rb.send_tone(r.b_media.addr, 0, 2500.0, ringing)
            .expect("send tone");
        assert_heard("the ringing caller", &r.ra, a_media.addr, 40, 2500.0);
    } else {
        std::thread::sleep(ringing);
    }
    let (dialog, _) = r.answer(&["PCMU"]);
    r.talk_and_hang_up(&a_media, (0, 0), dialog);
}

#[test]
fn when_the_rtp_ports_run_out_a_new_call_gets_503_and_they_come_back() {
    // Two pairs: two echo calls fit, a third does not.
    let o = office_with(None, "[media]\nrtp_ports = \"29990-29993\"\n");
    let mut a = phone(&o, "1001");
    let mut b = phone(&o, "1002");
    let (ra, rb, rc) = (
        RtpPeer::localhost(),
        RtpPeer::localhost(),
        RtpPeer::localhost(),
    );
    let (mut first, _) = answered(&mut a, ECHO, &ra.sdp_offer(OFFER));
    let (_second, _) = answered(&mut b, ECHO, &rb.sdp_offer(OFFER));
    a.call_sdp(ECHO, &[], &rc.sdp_offer(OFFER))
        .expect("INVITE sent");
    let (r, _) = a.final_response(WAIT).expect("answered");
    assert_eq!(r.status, 503);
    let warning = r
        .headers
        .get(&sip_proto::HeaderName::Warning)
        .unwrap_or_default()
        .to_owned();
    assert!(warning.contains("rtp_ports"), "{warning}");
    // The operator is told too, with what to do.
    wait_for_log(&o, "widen [media] rtp_ports");
    // One call ends: its pair is free for the next.
    assert_eq!(a.request_in(&mut first, "BYE", None).unwrap().status, 200);
    let deadline = Instant::now() + WAIT;
    loop {
        a.call_sdp(ECHO, &[], &rc.sdp_offer(OFFER))
            .expect("INVITE sent");
        let (r, _) = a.final_response(WAIT).expect("answered");
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 503);
        assert!(Instant::now() < deadline, "the pair never came back");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_invite_without_sdp_gets_our_offer_and_its_ack_carries_the_answer() {
    let o = office(None);
    let mut a = phone(&o, "1001");
    let rtp = RtpPeer::localhost();
    let call = a.call_sdp(ECHO, &[], "").expect("INVITE sent");
    let (ok, _) = a.final_response(WAIT).expect("answered");
    assert_eq!(ok.status, 200);
    // The 200 is our offer: every codec we have, on our port.
    let offer = media_of(&ok.body);
    assert!(offer.payload_types.contains(&0) && offer.payload_types.contains(&8));
    // The phone answers PCMA only, in its ACK.
    let mut dialog = a
        .ack_sdp(&call, &ok, &rtp.sdp_answer(&["PCMA", "telephone-event"]))
        .expect("ACK");
    rtp.send_tone(offer.addr, 8, 1000.0, TONE)
        .expect("send tone");
    rtp.settle(Duration::from_millis(200), WAIT);
    let pts = assert_heard("the caller", &rtp, offer.addr, 40, 1000.0);
    assert!(pts.iter().all(|pt| *pt == 8), "PCMA as answered: {pts:?}");
    assert_eq!(a.request_in(&mut dialog, "BYE", None).unwrap().status, 200);
}

#[test]
fn a_phone_on_ipv6_gets_ipv6_media() {
    let o = office_on("udp:[::1]:0", None, "");
    let mut a = phone(&o, "1001");
    let rtp = RtpPeer::bind("::1".parse().unwrap()).expect("RTP on ::1");
    let (mut dialog, media) = answered(&mut a, ECHO, &rtp.sdp_offer(OFFER));
    assert_eq!(media.addr.ip().to_string(), "::1", "c=IN IP6 ::1");
    rtp.send_tone(media.addr, 0, 1000.0, TONE)
        .expect("send tone");
    rtp.settle(Duration::from_millis(200), WAIT);
    assert_heard("the caller", &rtp, media.addr, 40, 1000.0);
    assert_eq!(a.request_in(&mut dialog, "BYE", None).unwrap().status, 200);
}

#[test]
fn our_200_to_a_reinvite_is_sent_again_until_the_ack() {
    let o = office(None);
    let mut a = phone(&o, "1001");
    let rtp = RtpPeer::localhost();
    let (mut dialog, _) = answered(&mut a, ECHO, &rtp.sdp_offer(OFFER));
    // A hold re-INVITE whose 200 the phone "loses" (no ACK).
    let hold = rtp.sdp_offer(OFFER).replace("a=sendrecv", "a=sendonly");
    let ok = a
        .request_in(&mut dialog, "INVITE", Some(&hold))
        .expect("re-INVITE answered");
    assert_eq!(ok.status, 200);
    let again = a
        .response(WAIT)
        .expect("the 200 comes again without an ACK");
    assert_eq!(again.status, 200);
    assert_eq!(
        again.cseq().map(|c| c.seq),
        ok.cseq().map(|c| c.seq),
        "the same 200"
    );
    a.ack_in(&dialog).unwrap();
    // Acknowledged: no more copies (the next would come after 1 s).
    if let Some(m) = a.silence(Duration::from_millis(2500)) {
        panic!("after the ACK: {m:?}");
    }
    assert_eq!(a.request_in(&mut dialog, "BYE", None).unwrap().status, 200);
}

#[test]
fn a_caller_the_dialplan_answered_hears_ringback_then_the_callee() {
    let o = office(Some(MEDIA_LUA));
    let mut b = phone(&o, "1002");
    let mut a = phone(&o, "1001");
    let (ra, rb) = (RtpPeer::localhost(), RtpPeer::localhost());
    let (mut dialog, a_media) = answered(&mut a, "702", &ra.sdp_offer(OFFER));
    let incoming = b.incoming(WAIT).expect("the dial rings 1002");
    b.reply(&incoming.invite, &incoming.tag, 180).unwrap();
    // While 1002 rings: 440 + 480 Hz from the PBX, not silence.
    assert!(ra.wait_for(50, WAIT), "ringback packets");
    let ring = ra.audio();
    let f = dominant_frequency(&ring, 8000).unwrap_or_default();
    assert!(
        (f - 440.0).abs() <= TOLERANCE_HZ || (f - 480.0).abs() <= TOLERANCE_HZ,
        "ringback is 440 + 480 Hz, heard {f} Hz"
    );
    // 1002 answers: the caller now hears it.
    let b_media = media_of(&incoming.invite.body);
    b.reply_sdp(
        &incoming.invite,
        &incoming.tag,
        200,
        &rb.sdp_answer(&["PCMU", "telephone-event"]),
    )
    .unwrap();
    b.request("ACK", WAIT).expect("ACK for the callee");
    std::thread::sleep(Duration::from_millis(100));
    ra.clear();
    rb.send_tone(b_media.addr, 0, 2000.0, TONE)
        .expect("send tone");
    ra.settle(Duration::from_millis(200), WAIT);
    assert_heard("the caller, bridged", &ra, a_media.addr, 40, 2000.0);
    assert_eq!(a.request_in(&mut dialog, "BYE", None).unwrap().status, 200);
}

/// Issue 12, item 5: `media.tone_zone` picks the country's ringback. With
/// "de" the caller hears the European 425 Hz, not North America's 440 + 480.
#[test]
fn the_ringback_follows_the_tone_zone() {
    let o = office_with(Some(MEDIA_LUA), "[media]\ntone_zone = \"de\"\n");
    let mut b = phone(&o, "1002");
    let mut a = phone(&o, "1001");
    let ra = RtpPeer::localhost();
    let (_dialog, _a_media) = answered(&mut a, "702", &ra.sdp_offer(OFFER));
    let incoming = b.incoming(WAIT).expect("the dial rings 1002");
    b.reply(&incoming.invite, &incoming.tag, 180).unwrap();
    assert!(ra.wait_for(40, WAIT), "ringback packets");
    let f = dominant_frequency(&ra.audio(), 8000).unwrap_or_default();
    assert!(
        (f - 425.0).abs() <= TOLERANCE_HZ,
        "the European ringback is 425 Hz, heard {f} Hz"
    );
    // Busy: the route goes on to call:hangup(), which ends the call.
    b.reply(&incoming.invite, &incoming.tag, 486).unwrap();
    let bye = a.request("BYE", WAIT).expect("the route hangs up");
    a.reply(&bye, "", 200).unwrap();
}

/// Issue 12, item 5: when the dialplan answered and then dials, the
/// callee's 183 early media reaches the caller instead of our ringback; if
/// that callee then fails while the dial goes on, ringback comes back.
#[test]
fn early_media_after_answer_replaces_the_ringback() {
    let o = office(Some(MEDIA_LUA));
    let mut b = phone(&o, "1002");
    let mut a = phone(&o, "1001");
    let (ra, rb) = (RtpPeer::localhost(), RtpPeer::localhost());
    let (mut dialog, _a_media) = answered(&mut a, "702", &ra.sdp_offer(OFFER));
    let incoming = b.incoming(WAIT).expect("the dial rings 1002");
    b.reply(&incoming.invite, &incoming.tag, 180).unwrap();
    assert!(ra.wait_for(30, WAIT), "ringback packets");
    let f = dominant_frequency(&ra.audio(), 8000).unwrap_or_default();
    assert!(
        (f - 440.0).abs() <= TOLERANCE_HZ || (f - 480.0).abs() <= TOLERANCE_HZ,
        "our ringback first, heard {f} Hz"
    );
    // 183 with SDP: the callee's announcement, a 2.5 kHz tone.
    let b_media = media_of(&incoming.invite.body);
    b.reply_sdp(
        &incoming.invite,
        &incoming.tag,
        183,
        &rb.sdp_answer(&["PCMU", "telephone-event"]),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    ra.clear();
    rb.send_tone(b_media.addr, 0, 2500.0, TONE)
        .expect("send tone");
    ra.settle(Duration::from_millis(200), WAIT);
    let f = dominant_frequency(&ra.audio(), 8000).unwrap_or_default();
    assert!(
        (f - 2500.0).abs() <= TOLERANCE_HZ,
        "the caller hears the callee's early media, not ringback: {f} Hz"
    );
    // The callee answers: bridged as usual.
    b.reply_sdp(
        &incoming.invite,
        &incoming.tag,
        200,
        &rb.sdp_answer(&["PCMU", "telephone-event"]),
    )
    .unwrap();
    b.request("ACK", WAIT).expect("ACK for the callee");
    std::thread::sleep(Duration::from_millis(100));
    ra.clear();
    rb.send_tone(b_media.addr, 0, 2000.0, TONE)
        .expect("send tone");
    ra.settle(Duration::from_millis(200), WAIT);
    let f = dominant_frequency(&ra.audio(), 8000).unwrap_or_default();
    assert!((f - 2000.0).abs() <= TOLERANCE_HZ, "bridged: {f} Hz");
    assert_eq!(a.request_in(&mut dialog, "BYE", None).unwrap().status, 200);
}

/// Early media before anyone answered: the callee's 183 with SDP reaches
/// the caller as a 183 with the PBX's SDP (anchored), and the caller hears
/// the callee's audio before the 200.
/// A call from 1001 to 1002 that 1002's phone rings for: both phones,
/// their RTP sockets, the caller's INVITE and the one 1002 got.
struct Ringing {
    a: Phone,
    b: Phone,
    ra: RtpPeer,
    rb: RtpPeer,
    call: testkit::OutCall,
    incoming: testkit::InCall,
    /// The PBX's media towards 1002, from its INVITE.
    b_media: RemoteMedia,
}

impl Ringing {
    /// 1001 calls 1002 offering `codecs`; 1002's phone gets the INVITE.
    fn new(o: &Office, codecs: &[&str]) -> Ringing {
        let mut a = phone(o, "1001");
        let mut b = phone(o, "1002");
        let (ra, rb) = (RtpPeer::localhost(), RtpPeer::localhost());
        let call = a
            .call_sdp("1002", &[], &ra.sdp_offer(codecs))
            .expect("INVITE sent");
        let incoming = b.incoming(WAIT).expect("callee gets the INVITE");
        let b_media = media_of(&incoming.invite.body);
        Ringing {
            a,
            b,
            ra,
            rb,
            call,
            incoming,
            b_media,
        }
    }

    /// 1002 sends 183 with SDP in `codecs`, which the caller gets: the
    /// PBX's media towards the caller, from that 183.
    fn early(&mut self, codecs: &[&str]) -> RemoteMedia {
        let (invite, tag) = (&self.incoming.invite, &self.incoming.tag);
        self.b
            .reply_sdp(invite, tag, 183, &self.rb.sdp_answer(codecs))
            .unwrap();
        let early = self.a.response(WAIT).expect("183 relayed");
        assert_eq!(early.status, 183);
        media_of(&early.body)
    }

    /// 1002 answers in `codecs`; the caller gets 200 and both ACK: the
    /// caller's dialog, and the PBX's SDP in that 200.
    fn answer(&mut self, codecs: &[&str]) -> (Dialog, RemoteMedia) {
        let (invite, tag) = (&self.incoming.invite, &self.incoming.tag);
        self.b
            .reply_sdp(invite, tag, 200, &self.rb.sdp_answer(codecs))
            .unwrap();
        let (ok, _) = self.a.final_response(WAIT).expect("a final response");
        assert_eq!(ok.status, 200, "{ok:?}");
        let dialog = self.a.ack(&self.call, &ok).expect("ACK");
        self.b.request("ACK", WAIT).expect("ACK for the callee");
        (dialog, media_of(&ok.body))
    }

    /// Both talk at once, each in payload type `pt` (caller, callee), and
    /// each hears the other, every packet in that type; then the caller
    /// hangs up.
    fn talk_and_hang_up(mut self, a_media: &RemoteMedia, pt: (u8, u8), mut dialog: Dialog) {
        let (ra, rb) = (&self.ra, &self.rb);
        ra.clear();
        rb.clear();
        exchange(
            ra,
            (a_media.addr, pt.0, 1000.0),
            rb,
            (self.b_media.addr, pt.1, 2000.0),
        );
        heard_in("the callee", rb, self.b_media.addr, 1000.0, pt.1);
        heard_in("the caller", ra, a_media.addr, 2000.0, pt.0);
        let bye = self.a.request_in(&mut dialog, "BYE", None).unwrap();
        assert_eq!(bye.status, 200);
    }
}

#[test]
fn early_media_reaches_a_caller_that_is_still_ringing() {
    let o = office(None);
    let mut r = Ringing::new(&o, OFFER);
    let a_media = r.early(&["PCMU", "telephone-event"]);
    assert_ne!(
        a_media.addr,
        r.rb.local_addr(),
        "anchored, not the callee's own address"
    );
    r.rb.send_tone(r.b_media.addr, 0, 2500.0, TONE)
        .expect("send tone");
    r.ra.settle(Duration::from_millis(200), WAIT);
    assert_heard("the ringing caller", &r.ra, a_media.addr, 40, 2500.0);
    let (dialog, _) = r.answer(&["PCMU", "telephone-event"]);
    r.talk_and_hang_up(&a_media, (0, 0), dialog);
}

#[test]
fn a_callee_that_answers_in_another_codec_than_its_early_media_is_heard_in_it() {
    // A gateway's 183 previews PCMU, its 200 settles on PCMA (RFC 6337
    // §3.1.1: an unreliable 18x's SDP is not the final answer). The bridge
    // that carried the early media restarts in the answer's codec and
    // transcodes; the caller keeps the codec its 183 gave it.
    let o = office(None);
    let mut r = Ringing::new(&o, &["PCMU"]);
    assert!(
        r.b_media.payload_types.contains(&8),
        "the callee is offered PCMA too: {:?}",
        r.b_media.payload_types
    );
    let a_media = r.early(&["PCMU"]);
    r.rb.send_tone(r.b_media.addr, 0, 2500.0, TONE)
        .expect("send tone");
    r.ra.settle(Duration::from_millis(200), WAIT);
    assert_heard("the ringing caller", &r.ra, a_media.addr, 40, 2500.0);
    let (dialog, ours) = r.answer(&["PCMA"]);
    assert_eq!(ours.voice, Some(0), "the caller stays on PCMU");
    r.talk_and_hang_up(&a_media, (0, 8), dialog);
}

#[test]
fn the_caller_hears_the_latest_forks_early_media_and_then_the_one_that_answers() {
    // Two phones of 1002 ring with early media of their own: the caller
    // hears the desk's, then the mobile's (the latest 183 wins), and the
    // desk, answering, is heard again and hears the caller.
    let o = office(None);
    let mut a = phone(&o, "1001");
    let mut desk = phone(&o, "1002");
    let mut mobile = phone(&o, "1002");
    let (ra, rd, rm) = (
        RtpPeer::localhost(),
        RtpPeer::localhost(),
        RtpPeer::localhost(),
    );
    let call = a
        .call_sdp("1002", &[], &ra.sdp_offer(OFFER))
        .expect("INVITE sent");
    let at_desk = desk.incoming(WAIT).expect("desk rings");
    let at_mobile = mobile.incoming(WAIT).expect("mobile rings");
    let (d_media, m_media) = (
        media_of(&at_desk.invite.body),
        media_of(&at_mobile.invite.body),
    );
    assert_ne!(d_media.addr, m_media.addr, "each fork has its own ports");
    desk.reply_sdp(
        &at_desk.invite,
        &at_desk.tag,
        183,
        &rd.sdp_answer(&["PCMU"]),
    )
    .unwrap();
    let early = a.response(WAIT).expect("the desk's 183");
    assert_eq!(early.status, 183);
    let a_media = media_of(&early.body);
    rd.send_tone(d_media.addr, 0, 2500.0, TONE)
        .expect("send tone");
    ra.settle(Duration::from_millis(200), WAIT);
    assert_heard(
        "the caller, the desk ringing",
        &ra,
        a_media.addr,
        40,
        2500.0,
    );
    mobile
        .reply_sdp(
            &at_mobile.invite,
            &at_mobile.tag,
            183,
            &rm.sdp_answer(&["PCMU"]),
        )
        .unwrap();
    assert_eq!(a.response(WAIT).expect("the mobile's 183").status, 183);
    ra.clear();
    rm.send_tone(m_media.addr, 0, 3000.0, TONE)
        .expect("send tone");
    ra.settle(Duration::from_millis(200), WAIT);
    assert_heard(
        "the caller, the mobile ringing",
        &ra,
        a_media.addr,
        40,
        3000.0,
    );
    desk.reply_sdp(
        &at_desk.invite,
        &at_desk.tag,
        200,
        &rd.sdp_answer(&["PCMU"]),
    )
    .unwrap();
    let (ok, _) = a.final_response(WAIT).expect("the desk's 200");
    assert_eq!(ok.status, 200);
    let mut dialog = a.ack(&call, &ok).expect("ACK");
    desk.request("ACK", WAIT).expect("ACK for the desk");
    let cancel = mobile
        .request("CANCEL", WAIT)
        .expect("the mobile is cancelled");
    mobile.reply(&cancel, &at_mobile.tag, 200).unwrap();
    mobile
        .reply(&at_mobile.invite, &at_mobile.tag, 487)
        .unwrap();
    ra.clear();
    rd.clear();
    exchange(
        &ra,
        (a_media.addr, 0, 1000.0),
        &rd,
        (d_media.addr, 0, 2000.0),
    );
    assert_heard("the desk", &rd, d_media.addr, 40, 1000.0);
    assert_heard("the caller", &ra, a_media.addr, 40, 2000.0);
    assert_eq!(a.request_in(&mut dialog, "BYE", None).unwrap().status, 200);
}

#[test]
fn a_key_pressed_before_the_recording_does_not_end_it() {
    let o = office(Some(MEDIA_LUA));
    let mut a = phone(&o, "1001");
    let rtp = RtpPeer::localhost();
    let (_dialog, media) = answered(&mut a, "703", &rtp.sdp_offer(OFFER));
    let pt = media.telephone_event.expect("telephone-event");
    let keys = |k: &str| {
        rtp.send_digits(
            media.addr,
            pt,
            k,
            Duration::from_millis(100),
            Duration::from_millis(60),
        )
        .expect("send digits")
    };
    // '#' while the route still sleeps: before the recording.
    keys("#");
    std::thread::sleep(Duration::from_millis(600));
    rtp.send_tone(media.addr, 0, 1000.0, TONE)
        .expect("send tone");
    // '#' now ends it.
    keys("#");
    let line = wait_for_log(&o, "record ended by");
    let seconds: f64 = line
        .split("after ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(line.contains("record ended by terminator"), "{line}");
    assert!(
        (0.8..3.0).contains(&seconds),
        "the early '#' was not taken as the end: {line}"
    );
}

/// Issue 11, RTP bleed: a host that sprays well-formed, in-sequence RTP at
/// every port of the range while a phone that sends nothing listens to a
/// prompt must neither take the phone's audio nor be heard. Before
/// `media.strict_source`, the sprayer's first packet latched the leg: it
/// got every prompt packet and the phone none.
#[test]
fn a_sprayer_on_every_rtp_port_gets_nothing_and_the_phone_hears_everything() {
    const FIRST: u16 = 29800;
    const LAST: u16 = 29859;
    let o = office_with(None, &format!("[media]\nrtp_ports = \"{FIRST}-{LAST}\"\n"));
    let mut a = phone(&o, "1001");
    let rtp = RtpPeer::localhost();
    // Another host: neither the phone's SIP address nor its SDP's.
    let sprayer = RtpPeer::bind([127, 0, 0, 2].into()).expect("socket on 127.0.0.2");
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| testkit::spray_rtp(&sprayer, [127, 0, 0, 1].into(), FIRST..=LAST, &stop));
        // The spraying runs before the call and all through the prompt.
        std::thread::sleep(Duration::from_millis(200));
        let (_dialog, media) = answered(&mut a, "700", &rtp.sdp_offer(OFFER));
        let got = rtp.wait_for(150, Duration::from_secs(10));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(
            got,
            "the phone hears the prompt: {} packets; server log: {}",
            rtp.count(),
            o.server.log()
        );
        assert!(rtp.received().iter().all(|p| p.from == media.addr));
    });
    sprayer.settle(Duration::from_millis(200), WAIT);
    assert_eq!(sprayer.count(), 0, "nothing goes to the sprayer");
    // All of it: one stream, no sequence number missing.
    let headers: Vec<_> = rtp.received().iter().filter_map(|p| p.header).collect();
    for pair in headers.windows(2) {
        assert_eq!(
            pair[1].sequence,
            pair[0].sequence.wrapping_add(1),
            "no prompt packet went elsewhere"
        );
    }
    let (status, metrics) = o.server.http_get("/metrics").expect("metrics");
    assert_eq!(status, 200);
    let dropped = metrics
        .lines()
        .find_map(|l| l.strip_prefix("rtp_foreign_dropped_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(
        dropped > 0.0,
        "the sprayer's packets are counted: {metrics}"
    );
}

#[test]
fn a_callee_that_moves_to_another_codec_mid_call_is_heard_both_ways_in_it() {
    // The callee's re-INVITE is answered by its own media (the bridged
    // party's channel): the bridge starts again on its new codec, and
    // transcodes, the caller staying on PCMU.
    let o = office(None);
    let (ra, rb) = (RtpPeer::localhost(), RtpPeer::localhost());
    let mut call = bridge(&o, &ra.sdp_offer(&["PCMU"]), &rb.sdp_answer(&["PCMU"]));
    exchange(
        &ra,
        (call.a_media.addr, 0, 1000.0),
        &rb,
        (call.b_media.addr, 0, 2000.0),
    );
    assert_heard("the callee, before", &rb, call.b_media.addr, 40, 1000.0);
    let ok = call
        .b
        .request_in(&mut call.b_dialog, "INVITE", Some(&rb.sdp_offer(&["PCMA"])))
        .expect("re-INVITE answered");
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(media_of(&ok.body).voice, Some(8), "PCMA answered");
    call.b.ack_in(&call.b_dialog).unwrap();
    ra.clear();
    rb.clear();
    exchange(
        &ra,
        (call.a_media.addr, 0, 1000.0),
        &rb,
        (call.b_media.addr, 8, 2000.0),
    );
    heard_in("the callee, after", &rb, call.b_media.addr, 1000.0, 8);
    heard_in("the caller", &ra, call.a_media.addr, 2000.0, 0);
    call.hang_up();
}

#[test]
fn a_bridged_callee_that_goes_silent_is_hung_up_and_so_is_the_caller() {
    let o = office_with(None, "[media]\nrtp_timeout = \"1s\"\n");
    let (ra, rb) = (RtpPeer::localhost(), RtpPeer::localhost());
    let mut call = bridge(&o, &ra.sdp_offer(OFFER), &rb.sdp_answer(&["PCMU"]));
    let started = Instant::now();
    // The caller talks on; the callee's phone has lost its network.
    std::thread::scope(|s| {
        s.spawn(|| ra.send_tone(call.a_media.addr, 0, 1000.0, Duration::from_millis(2500)));
        let bye = call
            .b
            .request("BYE", WAIT)
            .expect("the silent callee gets BYE");
        call.b.reply(&bye, &call.b_tag, 200).unwrap();
        let bye = call.a.request("BYE", WAIT).expect("the caller gets BYE");
        call.a.reply(&bye, "", 200).unwrap();
    });
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "not before rtp_timeout: {:?}",
        started.elapsed()
    );
    wait_for_log(&o, "no RTP; hanging up");
    let (_, metrics) = o.server.http_get("/metrics").expect("metrics");
    assert!(metrics.contains("rtp_timeouts_total 1"), "{metrics}");
}
