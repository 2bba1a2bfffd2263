//! Voicemail end to end against the real binary with the shipped
//! `default.lua` and `plugins/voicemail.lua`: a caller whose callee is not
//! registered (or busy) leaves a message (a tone, found again in the WAV
//! by frequency); the owner opens the mailbox with `*97` and the PIN,
//! hears the message, deletes it, records a greeting by DTMF that the next
//! caller hears; short messages are discarded, three wrong PINs hang up,
//! `GET /api/v1/voicemail/EXT(/ID.wav)` lists and downloads, and the
//! mailbox listener (its log lines) sees the counts change.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use testkit::{
    Dialog, Phone, RemoteMedia, RtpPeer, Server, TEST_ADMIN_TOKEN, Wav, decode_run,
    dominant_frequency,
};

const DOMAIN: &str = "test.invalid";
const WAIT: Duration = Duration::from_secs(10);
const TOLERANCE_HZ: f64 = 15.0;
const OFFER: &[&str] = &["PCMU", "PCMA", "telephone-event"];
/// The tone a caller "says" as its message.
const MESSAGE_HZ: f64 = 700.0;
/// The tone 1002 records as its busy greeting.
const GREETING_HZ: f64 = 500.0;
const PIN: &str = "4711";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped office: default.lua, the repository's plugins and sounds,
/// 1002 with a voicemail PIN, mailboxes in `var/voicemail` (the default).
fn office() -> Server {
    office_with(&repo().join("dialplans"))
}

/// [`office`] with the contexts in `dialplans`.
fn office_with(dialplans: &Path) -> Server {
    office_full(dialplans, "", "")
}

/// [`office_with`], `ext_1002` added to extension 1002's table and `tail`
/// (more tables) at the end.
fn office_full(dialplans: &Path, ext_1002: &str, tail: &str) -> Server {
    static NEXT_RANGE: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let n = NEXT_RANGE.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 50;
    // Apart from tests/media.rs's ranges (20000-28999).
    let first = 30_000 + n * 100;
    let config = format!(
        r#"
[sip]
listen = ["udp:127.0.0.1:0"]
domain = "{DOMAIN}"

[admin]
listen = "127.0.0.1:0"

[storage]
backend = "memory"

[registrar]
qualify_interval = "0s"

[dialplan]
dir = "{}"
plugins = "{}"
sounds = "{}"

[media]
rtp_ports = "{first}-{}"

[[extension]]
id = "1001"
password = "pw-1001"

[[extension]]
id = "1002"
password = "pw-1002"
voicemail_pin = "{PIN}"
{ext_1002}

[[extension]]
id = "1003"
password = "pw-1003"

{tail}
"#,
        dialplans.display(),
        repo().join("plugins").display(),
        repo().join("sounds").display(),
        first + 99,
    );
    Server::start_with(env!("CARGO_BIN_EXE_switchboard").as_ref(), &config)
        .expect("switchboard starts")
}

fn phone(o: &Server, user: &str) -> Phone {
    let mut p = Phone::udp(o.udp.expect("udp"), user, &format!("pw-{user}"), DOMAIN);
    assert_eq!(p.register(), 200, "{user} registers");
    p
}

/// `p` calls `dest`; the PBX answers; the dialog and its media.
fn answered(p: &mut Phone, dest: &str, rtp: &RtpPeer) -> (Dialog, RemoteMedia) {
    let call = p
        .call_sdp(dest, &[], &rtp.sdp_offer(OFFER))
        .expect("INVITE sent");
    let (ok, _) = p.final_response(WAIT).expect("an answer");
    assert_eq!(ok.status, 200, "{ok:?}");
    let media = RemoteMedia::parse(&ok.body).expect("SDP");
    let dialog = p.ack(&call, &ok).expect("ACK");
    (dialog, media)
}

fn keys(rtp: &RtpPeer, media: &RemoteMedia, k: &str) {
    let pt = media.telephone_event.expect("telephone-event");
    rtp.send_digits(
        media.addr,
        pt,
        k,
        Duration::from_millis(100),
        Duration::from_millis(60),
    )
    .expect("send digits");
}

/// The first log line containing `needle` after the first `skip` such
/// lines, waiting for it.
fn wait_for_nth_log(o: &Server, needle: &str, skip: usize) -> String {
    let deadline = Instant::now() + WAIT * 2;
    loop {
        let log = o.log();
        if let Some(line) = log.lines().filter(|l| l.contains(needle)).nth(skip) {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {needle:?} in {log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_for_log(o: &Server, needle: &str) -> String {
    wait_for_nth_log(o, needle, 0)
}

fn mailbox_dir(o: &Server, ext: &str) -> PathBuf {
    o.dir().join("var/voicemail").join(ext)
}

/// The messages' WAV files in `ext`'s mailbox (not greetings or scratch).
fn messages(o: &Server, ext: &str) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(mailbox_dir(o, ext)) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = dir
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with(".wav") && !name.starts_with("tmp-") && !name.starts_with("greeting-")
        })
        .collect();
    out.sort();
    out
}

/// 1001 calls 1002 (not registered: straight to voicemail), skips the
/// greeting with `#`, "says" a `MESSAGE_HZ` tone for `talk`, ends with `#`.
/// Returns when the PBX has hung up.
fn leave_message(o: &Server, talk: Duration) {
    let mut a = phone(o, "1001");
    let rtp = RtpPeer::localhost();
    let (_dialog, media) = answered(&mut a, "1002", &rtp);
    assert!(rtp.wait_for(10, WAIT), "the greeting plays");
    keys(&rtp, &media, "#");
    // The beep (0.4 s), then the recording.
    std::thread::sleep(Duration::from_millis(900));
    if !talk.is_zero() {
        rtp.send_tone(media.addr, media.voice.unwrap_or(0), MESSAGE_HZ, talk)
            .expect("send tone");
    }
    keys(&rtp, &media, "#");
    let bye = a
        .request("BYE", WAIT)
        .expect("the PBX says goodbye and hangs up");
    a.reply(&bye, "", 200).unwrap();
}

/// `GET path` on the admin API, the raw body (the testkit's helper reads text).
fn http_bytes(o: &Server, path: &str) -> (u16, Vec<u8>) {
    let addr = o.admin.expect("admin listener");
    let mut stream = TcpStream::connect_timeout(&addr, WAIT).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TEST_ADMIN_TOKEN}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("response");
    let at = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("headers end");
    let head = String::from_utf8_lossy(&raw[..at]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, raw[at + 4..].to_vec())
}

fn listed(o: &Server, ext: &str) -> Vec<serde_json::Value> {
    let (status, body) = o
        .http_get(&format!("/api/v1/voicemail/{ext}"))
        .expect("GET");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    v["messages"].as_array().expect("messages").clone()
}

fn tone_of(samples: &[i16]) -> Option<f64> {
    dominant_frequency(samples, 8000)
}

fn near(f: Option<f64>, want: f64) -> bool {
    f.is_some_and(|f| (f - want).abs() <= TOLERANCE_HZ)
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_message_left_holds_the_callers_tone_and_the_api_lists_and_downloads_it() {
    let o = office();
    leave_message(&o, Duration::from_secs(2));
    let line = wait_for_log(&o, "voicemail: message ");
    assert!(line.contains("left for 1002"), "{line}");
    wait_for_log(&o, "mailbox 1002: 1 new, 0 old");

    let files = messages(&o, "1002");
    assert_eq!(files.len(), 1, "{files:?}");
    let wav = Wav::read(&files[0]).expect("a WAV");
    assert_eq!((wav.format, wav.channels, wav.sample_rate), (1, 1, 8000));
    assert!(
        (Duration::from_millis(1000)..Duration::from_millis(3500)).contains(&wav.duration()),
        "{:?}",
        wav.duration()
    );
    let f = tone_of(&wav.samples);
    assert!(near(f, MESSAGE_HZ), "the message holds {f:?} Hz");
    assert_eq!(mode(&files[0]), 0o600);
    assert_eq!(mode(&mailbox_dir(&o, "1002")), 0o700);

    let list = listed(&o, "1002");
    assert_eq!(list.len(), 1, "{list:?}");
    let m = &list[0];
    let id = m["id"].as_str().expect("id");
    assert!(m["caller"].as_str().unwrap().contains("1001"), "{m}");
    assert!(m["received"].as_str().unwrap().ends_with('Z'), "{m}");
    assert!(m["duration_s"].as_f64().unwrap() >= 1.0, "{m}");
    assert_eq!(m["new"], true);

    let (status, body) = http_bytes(&o, &format!("/api/v1/voicemail/1002/{id}.wav"));
    assert_eq!(status, 200);
    assert_eq!(body, std::fs::read(&files[0]).unwrap());
    let parsed = Wav::parse(&body).expect("the download parses as WAV");
    assert!(near(tone_of(&parsed.samples), MESSAGE_HZ));

    assert_eq!(http_bytes(&o, "/api/v1/voicemail/1002/nope.wav").0, 404);
    assert_eq!(http_bytes(&o, "/api/v1/voicemail/9999").0, 404);
    assert!(listed(&o, "1001").is_empty());
    // Behind the admin token like the rest.
    let addr = o.admin.expect("admin");
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /api/v1/voicemail/1002 HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 401"), "{raw}");
}

#[test]
fn a_message_ends_after_seconds_of_silence_which_are_cut() {
    let o = office();
    let mut a = phone(&o, "1001");
    let rtp = RtpPeer::localhost();
    let (_dialog, media) = answered(&mut a, "1002", &rtp);
    assert!(rtp.wait_for(10, WAIT), "the greeting plays");
    keys(&rtp, &media, "#");
    std::thread::sleep(Duration::from_millis(900));
    let pt = media.voice.unwrap_or(0);
    rtp.send_tone(media.addr, pt, MESSAGE_HZ, Duration::from_millis(1500))
        .expect("send tone");
    // Then silence (a 0 Hz "tone": zero samples), and no '#': the
    // recording ends by itself after 4 s of it, and the PBX says goodbye.
    std::thread::scope(|s| {
        s.spawn(|| rtp.send_tone(media.addr, pt, 0.0, Duration::from_secs(7)));
        let bye = a
            .request("BYE", Duration::from_secs(15))
            .expect("the PBX hangs up after the silence");
        a.reply(&bye, "", 200).unwrap();
    });
    wait_for_log(&o, "mailbox 1002: 1 new, 0 old");
    let files = messages(&o, "1002");
    assert_eq!(files.len(), 1, "{files:?}");
    let wav = Wav::read(&files[0]).expect("a WAV");
    assert!(
        (Duration::from_millis(1200)..Duration::from_millis(2500)).contains(&wav.duration()),
        "the trailing silence is cut: {:?}",
        wav.duration()
    );
    assert!(near(tone_of(&wav.samples), MESSAGE_HZ));
}

#[test]
fn a_message_shorter_than_a_second_is_discarded() {
    let o = office();
    leave_message(&o, Duration::ZERO);
    wait_for_log(&o, "shorter than 1 s was discarded");
    assert!(messages(&o, "1002").is_empty());
    assert!(listed(&o, "1002").is_empty());
    assert!(!o.log().contains("mailbox 1002: 1 new"), "{}", o.log());
}

#[test]
fn the_owner_hears_the_message_with_the_pin_then_deletes_it() {
    let o = office();
    leave_message(&o, Duration::from_secs(2));
    wait_for_log(&o, "mailbox 1002: 1 new, 0 old");

    let mut b = phone(&o, "1002");
    let rtp = RtpPeer::localhost();
    let (mut dialog, media) = answered(&mut b, "*97", &rtp);
    assert!(rtp.wait_for(10, WAIT), "the password prompt plays");
    keys(&rtp, &media, &format!("{PIN}#"));
    wait_for_log(&o, "voicemail: mailbox 1002 opened");
    // "You have 1 new ..." is cut short by 1: listen.
    std::thread::sleep(Duration::from_millis(500));
    keys(&rtp, &media, "1");
    std::thread::sleep(Duration::from_millis(300));
    rtp.clear();
    // Heard once played: the listener's counts go new -> old.
    wait_for_log(&o, "mailbox 1002: 0 new, 1 old");
    let heard = decode_run(&rtp.received());
    // The end of what was played is the message (the menu comes after).
    let tail = &heard[heard.len().saturating_sub(12_000)..heard.len().saturating_sub(2_000)];
    let f = tone_of(tail);
    assert!(near(f, MESSAGE_HZ), "the owner heard {f:?} Hz");
    assert_eq!(listed(&o, "1002")[0]["new"], false);

    // 7 deletes it (barging into the menu).
    keys(&rtp, &media, "7");
    wait_for_log(&o, "mailbox 1002: 0 new, 0 old");
    wait_for_log(&o, "deleted message");
    assert!(messages(&o, "1002").is_empty());
    assert!(listed(&o, "1002").is_empty());
    let bye = b
        .request_in(&mut dialog, "BYE", None)
        .expect("BYE answered");
    assert_eq!(bye.status, 200);
}

#[test]
fn next_previous_save_and_call_back_walk_the_messages() {
    let o = office();
    leave_message(&o, Duration::from_secs(2));
    wait_for_log(&o, "mailbox 1002: 1 new, 0 old");
    leave_message(&o, Duration::from_secs(2));
    wait_for_log(&o, "mailbox 1002: 2 new, 0 old");
    let ids: Vec<String> = listed(&o, "1002")
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids.len(), 2);
    let plays = |id: &str| format!("mailbox 1002 plays message {id}");
    // 1001 is there to be called back.
    let mut caller = phone(&o, "1001");

    let mut b = phone(&o, "1002");
    let rtp = RtpPeer::localhost();
    let (_dialog, media) = answered(&mut b, "*97", &rtp);
    assert!(rtp.wait_for(10, WAIT), "the password prompt plays");
    keys(&rtp, &media, &format!("{PIN}#"));
    wait_for_log(&o, "voicemail: mailbox 1002 opened");
    std::thread::sleep(Duration::from_millis(500));
    keys(&rtp, &media, "1");
    wait_for_log(&o, &plays(&ids[0]));
    wait_for_log(&o, "mailbox 1002: 1 new, 1 old");
    // 6: next (cutting the first message short).
    keys(&rtp, &media, "6");
    wait_for_log(&o, &plays(&ids[1]));
    wait_for_log(&o, "mailbox 1002: 0 new, 2 old");
    // 4: previous.
    keys(&rtp, &media, "4");
    wait_for_nth_log(&o, &plays(&ids[0]), 1);
    // 9: save, and on to the next.
    keys(&rtp, &media, "9");
    wait_for_nth_log(&o, &plays(&ids[1]), 1);
    // 3: call back the message's caller.
    keys(&rtp, &media, "3");
    wait_for_log(&o, "mailbox 1002 calls back 1001");
    let incoming = caller.incoming(WAIT).expect("1001 is called back");
    let from = incoming
        .invite
        .headers
        .get(&sip_proto::HeaderName::From)
        .map(ToOwned::to_owned)
        .unwrap_or_default();
    assert!(from.contains("1002"), "{from}");
    caller.reply(&incoming.invite, &incoming.tag, 486).unwrap();
    // Saved and listened to: both kept, as old.
    let list = listed(&o, "1002");
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|m| m["new"] == false), "{list:?}");
}

#[test]
fn zero_during_the_greeting_goes_to_the_operator() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("default.lua"),
        r#"local vm = require("voicemail")
function route(call)
  vm.leave(call, call.request_uri.user, { operator = "1003" })
end
"#,
    )
    .unwrap();
    let o = office_with(dir.path());
    let mut operator = phone(&o, "1003");
    let mut a = phone(&o, "1001");
    let rtp = RtpPeer::localhost();
    let (_dialog, media) = answered(&mut a, "1002", &rtp);
    assert!(rtp.wait_for(10, WAIT), "the greeting plays");
    keys(&rtp, &media, "0");
    let incoming = operator.incoming(WAIT).expect("the operator rings");
    operator
        .reply(&incoming.invite, &incoming.tag, 486)
        .unwrap();
    wait_for_log(&o, "caller pressed 0 at 1002's greeting, dialling 1003");
    assert!(listed(&o, "1002").is_empty());
}

#[test]
fn a_key_stops_the_prompt_at_once() {
    let o = office();
    let mut b = phone(&o, "1002");
    let rtp = RtpPeer::localhost();
    let (mut dialog, media) = answered(&mut b, "*97", &rtp);
    // "Please enter your password, then press pound." lasts about 3 s.
    assert!(rtp.wait_for(10, WAIT), "the password prompt plays");
    keys(&rtp, &media, "4");
    std::thread::sleep(Duration::from_millis(400));
    rtp.clear();
    // The rest of the PIN is awaited in silence: nothing more is sent.
    std::thread::sleep(Duration::from_millis(1000));
    let after = rtp
        .received()
        .iter()
        .filter(|p| p.header.is_some_and(|h| h.payload_type == 0))
        .count();
    assert!(after <= 5, "{after} prompt packets after the key");
    keys(&rtp, &media, &format!("{}#", &PIN[1..]));
    wait_for_log(&o, "voicemail: mailbox 1002 opened");
    let bye = b
        .request_in(&mut dialog, "BYE", None)
        .expect("BYE answered");
    assert_eq!(bye.status, 200);
}

#[test]
fn three_wrong_pins_hang_up_and_are_logged() {
    let o = office();
    let mut b = phone(&o, "1002");
    let rtp = RtpPeer::localhost();
    let (_dialog, media) = answered(&mut b, "*97", &rtp);
    assert!(rtp.wait_for(10, WAIT), "the password prompt plays");
    keys(&rtp, &media, "0000#0000#0000#");
    let bye = b
        .request("BYE", WAIT * 3)
        .expect("the PBX hangs up after three wrong PINs");
    b.reply(&bye, "", 200).unwrap();
    wait_for_log(&o, "wrong PIN for mailbox 1002 (try 3 of 3)");
    wait_for_log(&o, "3 wrong PINs, hanging up");
    assert!(!o.log().contains("mailbox 1002 opened"), "{}", o.log());
}

#[test]
fn a_busy_greeting_recorded_by_dtmf_is_what_the_next_caller_hears() {
    let o = office();
    let mut b = phone(&o, "1002");
    let rtp = RtpPeer::localhost();
    let (mut dialog, media) = answered(&mut b, "*97", &rtp);
    assert!(rtp.wait_for(10, WAIT), "the password prompt plays");
    keys(&rtp, &media, &format!("{PIN}#"));
    wait_for_log(&o, "voicemail: mailbox 1002 opened");
    // 0: options; 2: the busy greeting; # skips "record after the tone".
    std::thread::sleep(Duration::from_millis(500));
    keys(&rtp, &media, "0");
    std::thread::sleep(Duration::from_millis(800));
    keys(&rtp, &media, "2");
    std::thread::sleep(Duration::from_millis(800));
    keys(&rtp, &media, "#");
    std::thread::sleep(Duration::from_millis(900));
    rtp.send_tone(
        media.addr,
        media.voice.unwrap_or(0),
        GREETING_HZ,
        Duration::from_secs(2),
    )
    .expect("send tone");
    keys(&rtp, &media, "#");
    wait_for_log(&o, "mailbox 1002 has a new busy greeting");
    let greeting = mailbox_dir(&o, "1002").join("greeting-busy.wav");
    let wav = Wav::read(&greeting).expect("the greeting");
    assert!(near(tone_of(&wav.samples), GREETING_HZ));
    // It is played back ("Recorded. Here is what you recorded.", then it).
    std::thread::sleep(Duration::from_millis(500));
    let bye = b
        .request_in(&mut dialog, "BYE", None)
        .expect("BYE answered");
    assert_eq!(bye.status, 200);

    // 1001 calls 1002, whose phone is busy: the greeting plays at once.
    let mut a = phone(&o, "1001");
    let caller = RtpPeer::localhost();
    let call = a
        .call_sdp("1002", &[], &caller.sdp_offer(OFFER))
        .expect("INVITE sent");
    let incoming = b.incoming(WAIT).expect("1002's phone rings");
    b.reply(&incoming.invite, &incoming.tag, 486).unwrap();
    let (ok, _) = a.final_response(WAIT).expect("voicemail answers");
    assert_eq!(ok.status, 200, "{ok:?}");
    let _dialog = a.ack(&call, &ok).expect("ACK");
    // 1.5 s of what the caller hears is the recorded greeting.
    assert!(caller.wait_for(75, WAIT), "the greeting plays");
    let heard = decode_run(&caller.received());
    let f = tone_of(&heard[..heard.len().min(12_000)]);
    assert!(near(f, GREETING_HZ), "the caller heard {f:?} Hz");
}

#[test]
fn check_refuses_a_voicemail_pin_that_is_not_digits_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchboard.toml");
    std::fs::write(
        &config,
        "[storage]\nbackend = \"memory\"\n\n[[extension]]\nid = \"1001\"\npassword = \"Xk9#mQ2!vL7p\"\nvoicemail_pin = \"12ab\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["check", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("switchboard.toml:7") && err.contains("voicemail_pin must be 4 to 16 digits"),
        "{err}"
    );
}

/// The office of [`office`] mailing 1002's messages to bob@test.invalid
/// through an SMTP relay on `smtp_port` (no TLS: a loopback test relay).
fn mailing_office(smtp_port: u16) -> Server {
    office_full(
        &repo().join("dialplans"),
        "email = \"bob@test.invalid\"",
        &format!(
            "[smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"none\"\nfrom = \"pbx@test.invalid\"\n"
        ),
    )
}

fn header_value<'a>(r: &'a sip_proto::Request, name: &str) -> &'a str {
    r.headers
        .get(&sip_proto::HeaderName::parse(name))
        .unwrap_or_default()
}

/// Issue 14 end to end: a message left for 1002 lights its
/// message-waiting lamp (RFC 3842 NOTIFY to its subscription) and is mailed
/// with the recording attached; once the owner has heard it, the lamp goes
/// out (0 new, 1 old).
#[test]
fn a_new_message_lights_mwi_and_is_mailed_and_hearing_it_turns_mwi_off() {
    let sink = testkit::SmtpSink::spawn(None).expect("SMTP sink");
    let o = mailing_office(sink.addr().port());
    let mut lamp = testkit::Watcher::new(o.udp.expect("udp"), DOMAIN, "1002", "1002");
    assert_eq!(lamp.subscribe("message-summary", 600).status, 200);
    let first = lamp.notify();
    assert_eq!(header_value(&first, "Event"), "message-summary");
    let text = String::from_utf8_lossy(&first.body).into_owned();
    assert!(text.contains("Messages-Waiting: no"), "{text}");

    leave_message(&o, Duration::from_secs(2));
    let lit = lamp.notify();
    let text = String::from_utf8_lossy(&lit.body).into_owned();
    assert!(
        text.contains("Messages-Waiting: yes") && text.contains("Voice-Message: 1/0"),
        "{text}"
    );

    let mails = sink
        .wait_for_blocking(1, Duration::from_secs(30))
        .expect("the message is mailed");
    assert_eq!(mails[0].to, ["bob@test.invalid"]);
    assert_eq!(mails[0].from, "pbx@test.invalid");
    let data = String::from_utf8_lossy(&mails[0].data).into_owned();
    assert!(data.contains("audio/wav"), "a WAV attachment: {data:.400}");
    // base64 of "RIFF": the attachment is the stored WAV.
    assert!(data.contains("UklGR"), "the WAV's RIFF header: {data:.400}");

    // The owner listens: the lamp goes out.
    let mut b = phone(&o, "1002");
    let rtp = RtpPeer::localhost();
    let (mut dialog, media) = answered(&mut b, "*97", &rtp);
    assert!(rtp.wait_for(10, WAIT), "the password prompt plays");
    keys(&rtp, &media, &format!("{PIN}#"));
    wait_for_log(&o, "voicemail: mailbox 1002 opened");
    std::thread::sleep(Duration::from_millis(500));
    keys(&rtp, &media, "1");
    wait_for_log(&o, "mailbox 1002: 0 new, 1 old");
    // The latest state the lamp was told (an unchanged state may be sent
    // again on the way, as RFC 6665 allows).
    let mut seen = Vec::new();
    loop {
        let n = lamp.notify();
        let text = String::from_utf8_lossy(&n.body).into_owned();
        if text.contains("Messages-Waiting: no") {
            assert!(text.contains("Voice-Message: 0/1"), "{text}");
            break;
        }
        seen.push(text);
        assert!(seen.len() < 5, "the lamp never went out: {seen:?}");
    }
    assert_eq!(
        b.request_in(&mut dialog, "BYE", None).expect("BYE").status,
        200
    );
}

/// A relay that is down changes nothing for the caller: the message is
/// left and the PBX hangs up as usual, the failed try is logged, and the
/// mailbox keeps the message.
#[test]
fn a_dead_smtp_relay_does_not_affect_the_call() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let o = mailing_office(port);
    leave_message(&o, Duration::from_secs(2));
    wait_for_log(&o, "mailbox 1002: 1 new, 0 old");
    let line = wait_for_log(&o, "voicemail email for 1002");
    assert!(line.contains("failed (try 1 of"), "{line}");
    assert_eq!(listed(&o, "1002").len(), 1);
}
