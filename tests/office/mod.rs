//! A test office for media tests: the real binary with two extensions
//! (1001, 1002), a dialplan of the test's own or the shipped one, the
//! repository's plugins and sounds, and each office its own RTP ports;
//! with phones that register, and checks of what a testkit [`RtpPeer`]
//! heard (a tone by frequency, music by its changing pitch).
#![allow(dead_code)] // each test binary uses its own part

use std::path::PathBuf;
use std::time::Duration;

use testkit::{Dialog, Phone, RemoteMedia, RtpPeer, Server, decode_run, dominant_frequency};

pub const DOMAIN: &str = "test.invalid";
pub const WAIT: Duration = Duration::from_secs(5);
/// How far a decoded tone may be from the one sent.
pub const TOLERANCE_HZ: f64 = 15.0;
pub const TONE: Duration = Duration::from_secs(1);
pub const OFFER: &[&str] = &["PCMU", "PCMA", "telephone-event"];

/// A test office: its own dialplan directory and the repository's plugins.
pub struct Office {
    pub server: Server,
    /// Holds the dialplans until the office is dropped.
    _dir: tempfile::TempDir,
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn office(lua: Option<&str>) -> Office {
    office_with(lua, "")
}

/// [`office`] with `extra` appended to its config.
pub fn office_with(lua: Option<&str>, extra: &str) -> Office {
    office_on("udp:127.0.0.1:0", lua, extra)
}

/// [`office_with`], SIP on `listen`.
pub fn office_on(listen: &str, lua: Option<&str>, extra: &str) -> Office {
    // Each office its own RTP ports: offices run in parallel, and a port
    // one server frees and another leases at once would still receive the
    // first test's stream (a leg that has not heard its own phone yet
    // latches onto the first RTP that comes).
    static NEXT_RANGE: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let media = if extra.contains("rtp_ports") {
        extra.to_owned()
    } else {
        let n = NEXT_RANGE.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 90;
        let first = 20_000 + n * 100;
        let ports = format!("rtp_ports = \"{first}-{}\"\n", first + 99);
        match extra.find("[media]\n") {
            Some(i) => format!("{}[media]\n{ports}{}", &extra[..i], &extra[i + 8..]),
            None => format!("{extra}\n[media]\n{ports}"),
        }
    };
    let extra = media.as_str();
    let dir = tempfile::tempdir().expect("tempdir");
    let dialplans = dir.path().join("dialplans");
    std::fs::create_dir_all(&dialplans).unwrap();
    let text = match lua {
        Some(text) => text.to_owned(),
        None => std::fs::read_to_string(repo().join("dialplans/default.lua")).unwrap(),
    };
    std::fs::write(dialplans.join("default.lua"), text).expect("write dialplan");
    let config = format!(
        r#"
[sip]
listen = ["{listen}"]
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

[[extension]]
id = "1001"
password = "pw-1001"

[[extension]]
id = "1002"
password = "pw-1002"

{extra}
"#,
        dialplans.display(),
        repo().join("plugins").display(),
        repo().join("sounds").display()
    );
    let server = Server::start_with(env!("CARGO_BIN_EXE_switchboard").as_ref(), &config)
        .expect("switchboard starts");
    Office { server, _dir: dir }
}

pub fn phone(o: &Office, user: &str) -> Phone {
    let mut p = Phone::udp(
        o.server.udp.expect("udp"),
        user,
        &format!("pw-{user}"),
        DOMAIN,
    );
    assert_eq!(p.register(), 200, "{user} registers");
    p
}

pub fn media_of(body: &[u8]) -> RemoteMedia {
    RemoteMedia::parse(body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

/// `p` calls `dest` offering `offer`; the PBX answers (200, ACKed); the
/// dialog and the PBX's media for this leg.
pub fn answered(p: &mut Phone, dest: &str, offer: &str) -> (Dialog, RemoteMedia) {
    let call = p.call_sdp(dest, &[], offer).expect("INVITE sent");
    let (ok, _) = p.final_response(WAIT).expect("an answer");
    assert_eq!(ok.status, 200, "{ok:?}");
    let media = media_of(&ok.body);
    let dialog = p.ack(&call, &ok).expect("ACK");
    (dialog, media)
}

/// Both peers send their tone at once for [`TONE`], then wait for the
/// stragglers.
pub fn exchange(
    a: &RtpPeer,
    a_to: (std::net::SocketAddr, u8, f64),
    b: &RtpPeer,
    b_to: (std::net::SocketAddr, u8, f64),
) {
    std::thread::scope(|s| {
        let t = s.spawn(|| a.send_tone(a_to.0, a_to.1, a_to.2, TONE));
        b.send_tone(b_to.0, b_to.1, b_to.2, TONE)
            .expect("send tone");
        t.join().expect("sender thread").expect("send tone");
    });
    for p in [a, b] {
        p.settle(Duration::from_millis(200), WAIT);
    }
}

/// One side of a two-way audio check: who it is, its RTP socket, the PBX's
/// media towards it (from the SDP it got), and the tone it sends.
pub struct Talker<'a> {
    pub who: &'a str,
    pub rtp: &'a RtpPeer,
    pub pbx: &'a RemoteMedia,
    pub tone: f64,
}

/// Both sides send their tone at once, in the codec the PBX chose for
/// each; each must hear at least `min` packets of the other's tone, from
/// the PBX's address.
pub fn talk(a: Talker, b: Talker, min: usize) {
    let codec = |t: &Talker| {
        t.pbx
            .voice
            .unwrap_or_else(|| panic!("{}: no voice codec", t.who))
    };
    exchange(
        a.rtp,
        (a.pbx.addr, codec(&a), a.tone),
        b.rtp,
        (b.pbx.addr, codec(&b), b.tone),
    );
    assert_heard(a.who, a.rtp, a.pbx.addr, min, b.tone);
    assert_heard(b.who, b.rtp, b.pbx.addr, min, a.tone);
}

/// Asserts `peer` received at least `min` RTP packets, all from `from`,
/// whose audio is a `freq` Hz tone; returns the packets' payload types.
pub fn assert_heard(
    who: &str,
    peer: &RtpPeer,
    from: std::net::SocketAddr,
    min: usize,
    freq: f64,
) -> Vec<u8> {
    let got: Vec<_> = peer
        .received()
        .into_iter()
        .filter(|p| p.header.is_some())
        .collect();
    assert!(
        got.len() >= min,
        "{who} got {} RTP packets, wanted at least {min}",
        got.len()
    );
    let sources: Vec<_> = got.iter().map(|p| p.from).filter(|f| *f != from).collect();
    assert!(
        sources.is_empty(),
        "{who}: RTP must come from the PBX's advertised {from} (symmetric RTP), also came from {sources:?}"
    );
    let f = dominant_frequency(&decode_run(&got), 8000);
    assert!(
        f.is_some_and(|f| (f - freq).abs() <= TOLERANCE_HZ),
        "{who} heard {f:?} Hz, wanted {freq}"
    );
    got.iter().filter_map(|p| p.payload_type()).collect()
}

/// The dominant pitch of each quarter second of `peer`'s audio, in Hz.
pub fn pitches(peer: &RtpPeer) -> Vec<f64> {
    let got: Vec<_> = peer
        .received()
        .into_iter()
        .filter(|p| p.header.is_some())
        .collect();
    let audio = decode_run(&got);
    audio
        .chunks(2000)
        .filter(|c| c.len() == 2000)
        .filter_map(|c| dominant_frequency(c, 8000))
        .collect()
}

/// Asserts `peer` hears music: RTP from `from`, not `not_this` Hz (the other
/// phone's tone), and more than one pitch (not a steady tone).
pub fn assert_music(who: &str, peer: &RtpPeer, from: std::net::SocketAddr, not_this: f64) {
    let got: Vec<_> = peer
        .received()
        .into_iter()
        .filter(|p| p.header.is_some())
        .collect();
    assert!(
        got.len() >= 60,
        "{who} got {} RTP packets of music",
        got.len()
    );
    assert!(
        got.iter().all(|p| p.from == from),
        "{who}: music comes from the PBX's address"
    );
    let pitches = pitches(peer);
    assert!(pitches.len() >= 4, "{who}: {pitches:?}");
    assert!(
        pitches.iter().all(|f| (f - not_this).abs() > TOLERANCE_HZ),
        "{who} heard the holding phone's {not_this} Hz: {pitches:?}"
    );
    let mut distinct = pitches.clone();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup_by(|a, b| (*a - *b).abs() < 20.0);
    assert!(
        distinct.len() >= 2,
        "{who} heard one steady pitch, not music: {pitches:?}"
    );
}
