//! Night mode on a busy lamp (issue 16), through the real binary with the
//! shipped `default.lua` (`lamp = "*28"` on the office hours): a phone's
//! BLF key on `*28` (a dialog subscription to `sip:*28@domain`) shows
//! `terminated` while night mode is off; dialling `*28` lights it
//! (`confirmed`), dialling again clears it. The lamp outlives a dialplan
//! reload, and after a restart the `on_start` hook sets it from kv.

use std::path::PathBuf;
use std::time::Duration;

use sip_proto::{HeaderName, Request};
use testkit::{Phone, RtpPeer, Server, Watcher};

const DOMAIN: &str = "test.invalid";
const WAIT: Duration = Duration::from_secs(10);
const OFFER: &[&str] = &["PCMU", "PCMA", "telephone-event"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped office on stored (redb) state, so a restart keeps kv.
fn office() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let dialplans = dir.path().join("dialplans");
    std::fs::create_dir_all(&dialplans).expect("dialplans dir");
    std::fs::copy(
        repo().join("dialplans/default.lua"),
        dialplans.join("default.lua"),
    )
    .expect("default.lua");
    let config = format!(
        r#"
[sip]
listen = ["udp:127.0.0.1:0"]
domain = "{DOMAIN}"

[admin]
listen = "127.0.0.1:0"

[storage]
path = "var/switchboard.redb"

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

[[extension]]
id = "1003"
password = "pw-1003"
"#,
        dialplans.display(),
        repo().join("plugins").display(),
        repo().join("sounds").display()
    );
    let server = Server::start_with(env!("CARGO_BIN_EXE_switchboard").as_ref(), &config)
        .expect("switchboard starts");
    (server, dir)
}

fn phone(s: &Server, user: &str) -> Phone {
    let mut p = Phone::udp(s.udp.expect("udp"), user, &format!("pw-{user}"), DOMAIN);
    assert_eq!(p.register(), 200, "{user} registers");
    p
}

fn body(r: &Request) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// The states of the dialogs in a dialog-info body, in order.
fn states(r: &Request) -> Vec<String> {
    body(r)
        .split("<state>")
        .skip(1)
        .filter_map(|s| s.split('<').next())
        .map(str::to_owned)
        .collect()
}

/// `p` dials `*28`: answered, the prompt, hung up by the PBX.
fn dial_star_28(p: &mut Phone) {
    let rtp = RtpPeer::localhost();
    let out = p
        .call_sdp("*28", &[], &rtp.sdp_offer(OFFER))
        .expect("INVITE");
    let (ok, _) = p.final_response(WAIT).expect("*28 answers");
    assert_eq!(ok.status, 200, "{ok:?}");
    p.ack(&out, &ok).expect("ACK");
    let bye = p.request("BYE", WAIT).expect("hung up after the prompt");
    p.reply(&bye, "", 200).expect("200 to BYE");
}

/// The CSeq number of a request.
fn cseq(r: &Request) -> u32 {
    r.headers
        .get(&HeaderName::CSeq)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The next new NOTIFY: the watcher does not read while its phone dials,
/// so the one it has may be there again, retransmitted (UDP); those are
/// passed over by CSeq.
fn next_notify(w: &mut Watcher, last: &mut u32) -> Request {
    loop {
        let n = w.notify();
        if cseq(&n) > *last {
            *last = cseq(&n);
            return n;
        }
    }
}

/// A new BLF key of 1003 on `*28`: its first NOTIFY's dialog states.
fn watch(s: &Server) -> (Watcher, Vec<String>) {
    let mut w = Watcher::new(s.udp.expect("udp"), DOMAIN, "1003", "*28");
    let ok = w.subscribe("dialog", 600);
    assert_eq!(ok.status, 200, "{ok:?}\n{}", s.log());
    let first = w.notify();
    assert_eq!(
        first.headers.get(&HeaderName::parse("Event")),
        Some("dialog")
    );
    assert!(
        body(&first).contains("entity=\"sip:*28@test.invalid\""),
        "{}",
        body(&first)
    );
    let st = states(&first);
    (w, st)
}

#[test]
fn a_blf_key_on_star_28_shows_night_mode_across_a_reload_and_a_restart() {
    let (s, dir) = office();
    let (mut w, first) = watch(&s);
    assert_eq!(first, ["terminated"], "night mode is off at first");
    let mut last = 1;

    let mut p = phone(&s, "1002");
    dial_star_28(&mut p);
    let on = next_notify(&mut w, &mut last);
    assert_eq!(states(&on), ["confirmed"], "{}", body(&on));
    dial_star_28(&mut p);
    let off = next_notify(&mut w, &mut last);
    assert_eq!(states(&off), ["terminated"], "{}", body(&off));
    dial_star_28(&mut p);
    let on = next_notify(&mut w, &mut last);
    assert_eq!(states(&on), ["confirmed"], "{}", body(&on));

    // A reload keeps the lamp: a key subscribing now sees it lit.
    let (status, text) = s.http("POST", "/api/v1/reload").expect("admin API");
    assert_eq!(status, 200, "{text}");
    assert_eq!(watch(&s).1, ["confirmed"], "after a reload");

    // A restart: night mode is in kv, and on_start lights the lamp.
    drop((w, p));
    let s = s.restart().expect("restarts");
    assert_eq!(watch(&s).1, ["confirmed"], "after a restart");

    // A name no script lit is no lamp.
    let mut nobody = Watcher::new(s.udp.expect("udp"), DOMAIN, "1003", "*99");
    assert_eq!(nobody.subscribe("dialog", 600).status, 404);
    drop(dir);
}
