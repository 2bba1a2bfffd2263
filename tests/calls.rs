//! Calls end to end against the real binary over real sockets: phones
//! registered as extensions call each other through the Lua dialplan
//! (RFC 3261 §13–§15 and §9 through the B2BUA), every Lua action, Lua
//! failures, and hot reload while calls are placed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sip_proto::HeaderName;
use testkit::{Phone, Server};

const DOMAIN: &str = "test.invalid";
const WAIT: Duration = Duration::from_secs(5);

/// A test office: its own dialplan directory (so tests can rewrite it) and
/// the repository's plugins.
struct Office {
    server: Server,
    dialplans: PathBuf,
    _dir: tempfile::TempDir,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn write_lua(dir: &Path, text: &str) {
    // Write then rename, as an editor does, so the watcher never reads half a file.
    let tmp = dir.join(".default.lua.tmp");
    std::fs::write(&tmp, text).expect("write dialplan");
    std::fs::rename(&tmp, dir.join("default.lua")).expect("rename dialplan");
}

fn office(lua: Option<&str>) -> Office {
    office_with(lua, "")
}

fn office_with(lua: Option<&str>, top: &str) -> Office {
    office_stored(lua, top, "[storage]\nbackend = \"memory\"")
}

fn office_stored(lua: Option<&str>, top: &str, storage: &str) -> Office {
    office_full(lua, top, "", storage)
}

/// `sip` goes into the `[sip]` table (timers, for instance).
fn office_full(lua: Option<&str>, top: &str, sip: &str, storage: &str) -> Office {
    let dir = tempfile::tempdir().expect("tempdir");
    let dialplans = dir.path().join("dialplans");
    std::fs::create_dir_all(&dialplans).unwrap();
    let text = match lua {
        Some(text) => text.to_owned(),
        None => std::fs::read_to_string(repo().join("dialplans/default.lua")).unwrap(),
    };
    write_lua(&dialplans, &text);
    let config = format!(
        r#"
{top}
[sip]
listen = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]
domain = "{DOMAIN}"
{sip}

[admin]
listen = "127.0.0.1:0"

{storage}

[registrar]
qualify_interval = "0s"

[dialplan]
dir = "{}"
plugins = "{}"

[[extension]]
id = "1001"
password = "pw-1001"
name = "Alice Example"

[[extension]]
id = "1002"
password = "pw-1002"

[[extension]]
id = "1003"
password = "pw-1003"
"#,
        dialplans.display(),
        repo().join("plugins").display()
    );
    let server = Server::start_with(env!("CARGO_BIN_EXE_switchboard").as_ref(), &config)
        .expect("switchboard starts");
    Office {
        server,
        dialplans,
        _dir: dir,
    }
}

fn phone(o: &Office, user: &str) -> Phone {
    let mut p = Phone::udp(
        o.server.udp.expect("udp"),
        user,
        &format!("pw-{user}"),
        DOMAIN,
    );
    assert_eq!(p.register(), 200, "{user} registers");
    p
}

fn json(o: &Office, path: &str) -> serde_json::Value {
    let (status, body) = o.server.http_get(path).expect("admin API");
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("JSON")
}

/// The first server log line containing `needle`, waiting for it a while
/// (the log is read from the server's stderr as it comes).
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

/// Caller dials `dest`, callee rings then answers; both sides ACKed.
fn establish(a: &mut Phone, b: &mut Phone, dest: &str) -> (testkit::Dialog, testkit::InCall) {
    let call = a.call(dest).expect("INVITE sent");
    let incoming = b.incoming(WAIT).expect("callee gets the INVITE");
    let offer = std::str::from_utf8(&incoming.invite.body).unwrap();
    assert!(
        offer.contains("m=audio ") && !offer.contains("m=audio 40000"),
        "the callee gets the PBX's offer, not the caller's: {offer}"
    );
    b.reply(&incoming.invite, &incoming.tag, 180).unwrap();
    assert_eq!(a.response(WAIT).expect("180 relayed").status, 180);
    b.reply(&incoming.invite, &incoming.tag, 200).unwrap();
    let (ok, _) = a.final_response(WAIT).expect("200 relayed");
    assert_eq!(ok.status, 200);
    let answer = std::str::from_utf8(&ok.body).unwrap();
    assert!(
        answer.contains("m=audio ")
            && !answer.contains("m=audio 41000")
            && answer.contains("c=IN IP4 127.0.0.1"),
        "the caller gets the PBX's answer (media anchored), not the callee's: {answer}"
    );
    let dialog = a.ack(&call, &ok).expect("ACK");
    b.request("ACK", WAIT)
        .expect("the B2BUA ACKs the callee's 200");
    (dialog, incoming)
}

#[test]
fn extensions_call_each_other_and_the_caller_hangs_up() {
    let o = office(None);
    let mut a = phone(&o, "1001");
    let mut b = phone(&o, "1002");
    let (mut dialog, incoming) = establish(&mut a, &mut b, "1002");
    // The callee saw the caller, and a fresh dialog of the B2BUA's.
    let from = incoming.invite.headers.get(&HeaderName::From).unwrap();
    assert!(from.contains("sip:1001@"), "{from}");
    let calls = json(&o, "/api/v1/calls");
    assert_eq!(calls.as_array().map(Vec::len), Some(1), "{calls}");
    assert_eq!(calls[0]["state"], "bridged", "{calls}");
    assert_eq!(
        calls[0]["legs"].as_array().map(Vec::len),
        Some(2),
        "{calls}"
    );

    let bye = a
        .request_in(&mut dialog, "BYE", None)
        .expect("BYE answered");
    assert_eq!(bye.status, 200);
    let bye_b = b.request("BYE", WAIT).expect("callee gets BYE");
    b.reply(&bye_b, &incoming.tag, 200).unwrap();

    // The CDR says who, how, and that it was answered.
    let deadline = Instant::now() + WAIT;
    let cdr = loop {
        let cdrs = json(&o, "/api/v1/cdrs");
        if let Some(first) = cdrs.as_array().and_then(|a| a.first()) {
            break first.clone();
        }
        assert!(Instant::now() < deadline, "no CDR");
        std::thread::sleep(Duration::from_millis(50));
    };
    let record = if cdr.get("record").is_some() {
        &cdr["record"]
    } else {
        &cdr
    };
    assert_eq!(record["disposition"], "answered", "{cdr}");
    assert_eq!(record["caller"], "1001", "{cdr}");
    assert_eq!(record["callee"], "1002", "{cdr}");
    assert_eq!(record["hangup_cause"], "caller", "{cdr}");
    assert_eq!(json(&o, "/api/v1/calls").as_array().map(Vec::len), Some(0));
}

/// RFC 3261 §13.2.2.4: a 2xx that comes again (the callee did not get
/// our ACK) is acknowledged again, with the INVITE's CSeq number and in
/// the callee's dialog, also once the callee is the bridged party (whose
/// leg the ACK is then built from).
#[test]
fn the_callees_200_sent_again_is_acknowledged_again() {
    let o = office(None);
    let mut a = phone(&o, "1001");
    let mut b = phone(&o, "1002");
    let (mut dialog, incoming) = establish(&mut a, &mut b, "1002");
    let invite_seq = incoming.invite.cseq().expect("CSeq").seq;
    for _ in 0..2 {
        b.reply(&incoming.invite, &incoming.tag, 200).unwrap();
        let ack = b
            .request("ACK", WAIT)
            .expect("the 200 again is ACKed again");
        let cseq = ack.cseq().expect("CSeq");
        assert_eq!((cseq.seq, cseq.method.as_str()), (invite_seq, "ACK"));
        assert_eq!(ack.call_id(), incoming.invite.call_id());
        let to = ack.headers.get(&HeaderName::To).unwrap_or_default();
        assert!(to.contains(&incoming.tag), "the callee's tag: {to}");
    }
    // Still one call, bridged, that ends normally.
    assert_eq!(json(&o, "/api/v1/calls")[0]["state"], "bridged");
    assert_eq!(a.request_in(&mut dialog, "BYE", None).unwrap().status, 200);
    let bye = b.request("BYE", WAIT).expect("callee gets BYE");
    b.reply(&bye, &incoming.tag, 200).unwrap();
}

#[test]
fn callee_hangs_up() {
    let o = office(None);
    let mut a = phone(&o, "1001");
    let mut b = phone(&o, "1002");
    let (_dialog, incoming) = establish(&mut a, &mut b, "1002");
    let mut back = b.dialog_of(&incoming);
    assert_eq!(b.request_in(&mut back, "BYE", None).unwrap().status, 200);
    let bye = a.request("BYE", WAIT).expect("caller gets BYE");
    a.reply(&bye, "", 200).unwrap();
}

#[test]
fn busy_or_unregistered_callees_go_to_voicemail_and_unknown_numbers_404() {
    let o = office(None);
    let mut a = phone(&o, "1001");
    let mut b = phone(&o, "1002");
    let call = a.call("1002").unwrap();
    let incoming = b.incoming(WAIT).unwrap();
    b.reply(&incoming.invite, &incoming.tag, 486).unwrap();
    b.request("ACK", WAIT)
        .expect("our 486 is ACKed by the B2BUA");
    // The shipped dialplan answers with 1002's voicemail (busy greeting).
    let (r, _) = a.final_response(WAIT).unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let mut dialog = a.ack(&call, &r).unwrap();
    assert_eq!(a.request_in(&mut dialog, "BYE", None).unwrap().status, 200);

    a.call("5555").unwrap();
    assert_eq!(a.final_response(WAIT).unwrap().0.status, 404);
    // 1003 exists but has no phone registered: its voicemail answers.
    let call = a.call("1003").unwrap();
    let (r, _) = a.final_response(WAIT).unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let mut dialog = a.ack(&call, &r).unwrap();
    assert_eq!(a.request_in(&mut dialog, "BYE", None).unwrap().status, 200);
}

#[test]
fn unauthenticated_calls_are_challenged_and_wrong_passwords_refused() {
    let o = office(None);
    let mut a = phone(&o, "1001");
    // No credentials: 407 with a Proxy-Authenticate challenge.
    let req = a.ua.request("INVITE", &format!("sip:1002@{DOMAIN}")).body(
        "application/sdp",
        testkit::sdp("127.0.0.1", 4000).as_bytes(),
    );
    let r = a.ua.transact(&req).unwrap();
    assert_eq!(r.status, 407);
    assert!(r.headers.get(&HeaderName::ProxyAuthenticate).is_some());
    // The wrong password is challenged again, never routed.
    let mut wrong = Phone::udp(o.server.udp.unwrap(), "1001", "nope", DOMAIN);
    wrong.call("1002").unwrap();
    assert_eq!(wrong.final_response(WAIT).unwrap().0.status, 407);
}

#[test]
fn caller_cancels_while_it_rings() {
    let o = office(None);
    let mut a = phone(&o, "1001");
    let mut b = phone(&o, "1002");
    let call = a.call("1002").unwrap();
    let incoming = b.incoming(WAIT).unwrap();
    b.reply(&incoming.invite, &incoming.tag, 180).unwrap();
    assert_eq!(a.response(WAIT).unwrap().status, 180);
    a.cancel(&call).unwrap();
    // The callee's branch is cancelled…
    let cancel = b
        .request("CANCEL", WAIT)
        .expect("CANCEL reaches the callee");
    b.reply(&cancel, &incoming.tag, 200).unwrap();
    b.reply(&incoming.invite, &incoming.tag, 487).unwrap();
    // …and the caller gets 200 for its CANCEL and 487 for its INVITE.
    let mut statuses = Vec::new();
    while statuses.len() < 2 {
        statuses.push(a.response(WAIT).unwrap().status);
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 487]);
}

/// RFC 3261 §9.2: a CANCEL that crosses our 200 (the call was answered
/// while it was on its way) has no effect: no 487, no BYE, the call stays
/// up until a phone hangs up. (The caller's channel watches for its
/// CANCEL only until it answers.)
#[test]
fn a_cancel_that_crosses_our_200_leaves_the_call_up() {
    let o = office(None);
    let mut a = phone(&o, "1001");
    let mut b = phone(&o, "1002");
    let call = a.call("1002").unwrap();
    let incoming = b.incoming(WAIT).expect("callee gets the INVITE");
    b.reply(&incoming.invite, &incoming.tag, 200).unwrap();
    let (ok, _) = a.final_response(WAIT).expect("200 relayed");
    assert_eq!(ok.status, 200);
    b.request("ACK", WAIT)
        .expect("the B2BUA ACKs the callee's 200");
    a.cancel(&call).unwrap();
    // 200 (the transaction still known) or 481 (already gone): either
    // way the INVITE stays answered.
    // (Skipping our 200 again, should it be resent before the ACK.)
    let r = loop {
        let r = a.response(WAIT).expect("an answer to the CANCEL");
        if r.cseq()
            .is_some_and(|c| c.method == sip_proto::Method::Cancel)
        {
            break r;
        }
        assert_eq!(r.status, 200, "only our 200 may come again: {r:?}");
    };
    assert!(
        r.status == 200 || r.status == 481,
        "CANCEL after the answer: {} {}",
        r.status,
        r.reason
    );
    let mut dialog = a.ack(&call, &ok).expect("ACK");
    // Nothing ends the call: no 487 and no BYE to the caller, no BYE to
    // the callee.
    let quiet_until = Instant::now() + Duration::from_millis(600);
    while let Some(m) = a.silence(quiet_until.saturating_duration_since(Instant::now())) {
        match m {
            // Our 200 again, had it gone out before the ACK landed.
            sip_proto::Message::Response(r)
                if r.status == 200
                    && r.cseq()
                        .is_some_and(|c| c.method == sip_proto::Method::Invite) => {}
            m => panic!("the caller got {m:?} after a CANCEL that crossed the 200"),
        }
    }
    if let Some(m) = b.silence(Duration::from_millis(100)) {
        panic!("the callee got {m:?} after the caller's late CANCEL");
    }
    let calls = json(&o, "/api/v1/calls");
    assert_eq!(calls[0]["state"], "bridged", "{calls}");
    let bye = a
        .request_in(&mut dialog, "BYE", None)
        .expect("BYE answered");
    assert_eq!(bye.status, 200);
    let bye_b = b.request("BYE", WAIT).expect("callee gets BYE");
    b.reply(&bye_b, &incoming.tag, 200).unwrap();
}

#[test]
fn a_call_forks_to_every_contact_and_the_first_answer_wins() {
    let o = office(None);
    let mut a = phone(&o, "1001");
    let mut desk = phone(&o, "1002");
    let mut mobile = phone(&o, "1002");
    let call = a.call("1002").unwrap();
    let at_desk = desk.incoming(WAIT).expect("desk rings");
    let at_mobile = mobile.incoming(WAIT).expect("mobile rings");
    desk.reply(&at_desk.invite, &at_desk.tag, 180).unwrap();
    mobile
        .reply(&at_mobile.invite, &at_mobile.tag, 200)
        .unwrap();
    let (ok, _) = a.final_response(WAIT).unwrap();
    assert_eq!(ok.status, 200);
    a.ack(&call, &ok).unwrap();
    mobile.request("ACK", WAIT).unwrap();
    // The desk phone stops ringing.
    let cancel = desk
        .request("CANCEL", WAIT)
        .expect("the other fork is cancelled");
    desk.reply(&cancel, &at_desk.tag, 200).unwrap();
    desk.reply(&at_desk.invite, &at_desk.tag, 487).unwrap();
}

#[test]
fn nobody_answers_within_the_dial_timeout() {
    let o = office(Some(
        r#"
function route(call)
  local r = call:dial(call.request_uri.user, { timeout = 1 })
  call:reject(480, r.status .. " " .. r.code)
end
"#,
    ));
    let mut a = phone(&o, "1001");
    let mut b = phone(&o, "1002");
    a.call("1002").unwrap();
    let incoming = b.incoming(WAIT).unwrap();
    b.reply(&incoming.invite, &incoming.tag, 180).unwrap();
    let cancel = b
        .request("CANCEL", WAIT)
        .expect("cancelled after the timeout");
    b.reply(&cancel, &incoming.tag, 200).unwrap();
    b.reply(&incoming.invite, &incoming.tag, 487).unwrap();
    let (r, provisional) = a.final_response(WAIT).unwrap();
    assert!(provisional.contains(&180));
    assert_eq!((r.status, r.reason.as_str()), (480, "noanswer 408"));
}

const ACTIONS: &str = r#"
function route(call)
  local d = call.request_uri.user
  call:on_hangup(function() log.info("on_hangup ran for " .. d) end)
  if d == "2000" then
    call:ring()
    call:answer()
    call:sleep(0.2)
    call:hangup()
  elseif d == "2001" then
    local secret = call:header("Proxy-Authorization") and "leaked" or "hidden"
    call:reject(486, "Busy " .. (call:header("X-Test") or "none") .. " " .. call.caller .. " " .. call.context .. " " .. secret)
  elseif d == "2002" then
    call:redirect("sip:1002@elsewhere.example")
  elseif d == "2003" then
    local x = nil
    return x.field
  elseif d == "2004" then
    while true do end
  elseif d == "2005" then
    local t = {}
    while true do t[#t + 1] = string.rep("x", 4096) .. #t end
  elseif d == "2006" then
    kv.set("test", "seen", "yes")
    call:reject(480, "kv " .. kv.get("test", "seen") .. " " .. #registrar.contacts("1002") .. " " .. pbx.extension("1002").id)
  elseif d == "2007" then
    call:answer()
  else
    call:dial(d, { timeout = 5, headers = { ["X-From-Lua"] = "yes" } })
  end
end
"#;

#[test]
fn every_lua_action_reaches_the_phone() {
    let o = office(Some(ACTIONS));
    let mut a = phone(&o, "1001");
    let _b = phone(&o, "1002");

    // ring, answer, sleep, hangup.
    let call = a.call("2000").unwrap();
    let (ok, provisional) = a.final_response(WAIT).unwrap();
    assert_eq!(ok.status, 200);
    assert!(provisional.contains(&180), "{provisional:?}");
    let answer = std::str::from_utf8(&ok.body).unwrap();
    assert!(
        answer.contains("m=audio ") && answer.contains("a=sendrecv"),
        "answered with media of its own: {answer}"
    );
    a.ack(&call, &ok).unwrap();
    let bye = a.request("BYE", WAIT).expect("the route hangs up");
    a.reply(&bye, "", 200).unwrap();

    // reject with a reason built from header(), caller and context.
    a.call_with("2001", &[("X-Test", "hello")]).unwrap();
    let (r, _) = a.final_response(WAIT).unwrap();
    // Credentials are not shown to scripts.
    assert_eq!(
        (r.status, r.reason.as_str()),
        (486, "Busy hello 1001 default hidden")
    );

    // redirect.
    a.call("2002").unwrap();
    let (r, _) = a.final_response(WAIT).unwrap();
    assert_eq!(r.status, 302);
    assert_eq!(
        r.headers.get(&HeaderName::Contact),
        Some("<sip:1002@elsewhere.example>")
    );

    // kv, registrar.contacts, pbx.extension.
    a.call("2006").unwrap();
    let (r, _) = a.final_response(WAIT).unwrap();
    assert_eq!((r.status, r.reason.as_str()), (480, "kv yes 1 1002"));

    // A route that answers and returns: the call is hung up.
    let call = a.call("2007").unwrap();
    let (ok, _) = a.final_response(WAIT).unwrap();
    assert_eq!(ok.status, 200);
    a.ack(&call, &ok).unwrap();
    let bye = a.request("BYE", WAIT).expect("hung up after route returns");
    a.reply(&bye, "", 200).unwrap();

    // dial's headers reach the callee.
    let mut b = phone(&o, "1003");
    a.call("1003").unwrap();
    let incoming = b.incoming(WAIT).unwrap();
    assert_eq!(incoming.invite.headers.get_raw("X-From-Lua"), Some("yes"));
    b.reply(&incoming.invite, &incoming.tag, 603).unwrap();
    // The route returns after a failed dial without answering: 404.
    assert_eq!(a.final_response(WAIT).unwrap().0.status, 404);

    wait_for_log(&o, "on_hangup ran for 2000");
}

#[test]
fn lua_failures_give_500_and_the_server_carries_on() {
    let o = office(Some(ACTIONS));
    let mut a = phone(&o, "1001");
    let mut other = phone(&o, "1003");
    // A runtime error: 500, logged with file:line and the Call-ID.
    let call = a.call("2003").unwrap();
    let (r, _) = a.final_response(WAIT).unwrap();
    assert_eq!(r.status, 500);
    let line = wait_for_log(&o, "attempt to index");
    assert!(line.contains("default.lua:"), "{line}");
    assert!(line.contains(&call.call_id), "{line}");

    // An endless loop and a memory bomb are stopped while another call completes.
    a.call("2004").unwrap();
    other.call("2001").unwrap();
    assert_eq!(other.final_response(WAIT).unwrap().0.status, 486);
    assert_eq!(a.final_response(WAIT).unwrap().0.status, 500);
    a.call("2005").unwrap();
    other.call("2001").unwrap();
    assert_eq!(other.final_response(WAIT).unwrap().0.status, 486);
    assert_eq!(a.final_response(WAIT).unwrap().0.status, 500);
    // on_hangup handlers of the stopped routes still ran, with the
    // route's locals intact.
    wait_for_log(&o, "on_hangup ran for 2004");
    wait_for_log(&o, "on_hangup ran for 2005");
    // And the next call works.
    a.call("2001").unwrap();
    assert_eq!(
        a.final_response(WAIT).unwrap().0.status,
        486,
        "{}",
        o.server.log()
    );
}

/// A route that logs from Lua, then dials the callee, then refuses.
const LOGS: &str = r#"
function route(call)
  log.info("routing to " .. call.to.user)
  call:dial(call.to.user, { timeout = 5 })
  call:reject(480)
end
"#;

/// Issue 12: one tracing span per call carries its Call-ID, so that the
/// route's own lines (Lua's `log.info`, run on the Lua thread pool) and
/// the call task's (a dial to a phone that is not registered) both show
/// it, as the span's `call{call_id=...}` prefix, with no field of their own.
#[test]
fn a_calls_log_lines_carry_its_call_id_in_its_span() {
    let o = office(Some(LOGS));
    let mut a = phone(&o, "1001");
    let call = a.call("1002").unwrap();
    let (r, _) = a.final_response(WAIT).unwrap();
    assert_eq!(r.status, 480);
    let span = format!("call{{call_id={} from=1001 to=1002}}", call.call_id);
    let lua = wait_for_log(&o, "routing to 1002");
    assert!(lua.contains(&span), "the Lua line has no call span: {lua}");
    assert_eq!(lua.matches("call_id=").count(), 1, "{lua}");
    let dial = wait_for_log(&o, "dial: ");
    assert!(
        dial.contains(&span),
        "the dial line has no call span: {dial}"
    );
    let ended = wait_for_log(&o, "call ended");
    assert!(
        ended.contains(&span),
        "the CDR line has no call span: {ended}"
    );
    // Another call's lines carry the other call's Call-ID.
    let second = a.call("1003").unwrap();
    assert_eq!(a.final_response(WAIT).unwrap().0.status, 480);
    let lua = wait_for_log(&o, "routing to 1003");
    assert!(lua.contains(&second.call_id), "{lua}");
    assert!(!lua.contains(&call.call_id), "{lua}");
}

#[test]
fn a_broken_edit_keeps_the_old_dialplan() {
    let o = office(Some("function route(call) call:reject(486, 'old') end\n"));
    let mut a = phone(&o, "1001");
    write_lua(
        &o.dialplans,
        "function route(call)\n  call:reject(486, 'new'\nend\n",
    );
    let deadline = Instant::now() + WAIT;
    while !o.server.log().contains("default.lua:3") {
        assert!(
            Instant::now() < deadline,
            "no file:line error logged: {}",
            o.server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    a.call("1").unwrap();
    let (r, _) = a.final_response(WAIT).unwrap();
    assert_eq!((r.status, r.reason.as_str()), (486, "old"));
}

/// Places bridged calls back to back while the dialplan is rewritten 20
/// times; every call must complete, and each new generation must route
/// calls within 1 s of the file being written.
#[test]
fn calls_keep_working_while_the_dialplan_is_rewritten() {
    let lua = |generation: u32| {
        format!(
            "function route(call)\n  call:dial(call.request_uri.user, {{ timeout = 5, headers = {{ ['X-Gen'] = '{generation}' }} }})\nend\n"
        )
    };
    let o = office(Some(&lua(0)));
    let mut a = phone(&o, "1001");
    let mut b = phone(&o, "1002");
    let seen = Arc::new(AtomicU32::new(0));
    // The caller stops first; the callee answers until the caller's last
    // call is done (else that call rings out unanswered).
    let stop = Arc::new(AtomicBool::new(false));
    let callee_stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let calls = Arc::new(AtomicU32::new(0));

    // The callee answers every call and reports the generation it saw. It
    // takes messages in whatever order they come (the B2BUA's ACK and BYE
    // to it are independent sends).
    let callee = {
        let (seen, stop) = (seen.clone(), callee_stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Some(sip_proto::Message::Request(req)) = b.silence(Duration::from_millis(200))
                else {
                    continue;
                };
                match req.method.as_str() {
                    "INVITE" => {
                        let g = req
                            .headers
                            .get_raw("X-Gen")
                            .and_then(|g| g.parse().ok())
                            .unwrap_or(u32::MAX);
                        seen.store(g, Ordering::Relaxed);
                        b.reply(&req, "callee", 200).unwrap();
                    }
                    "BYE" | "CANCEL" => b.reply(&req, "callee", 200).unwrap(),
                    _ => {}
                }
            }
        })
    };
    let caller = {
        let (stop, failures, calls) = (stop.clone(), failures.clone(), calls.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let result = (|| {
                    let call = a.call("1002").map_err(|e| format!("INVITE: {e}"))?;
                    let (ok, _) = a
                        .final_response(WAIT)
                        .map_err(|e| format!("no final: {e}"))?;
                    if ok.status != 200 {
                        return Err(format!("got {} {}", ok.status, ok.reason));
                    }
                    let mut d = a.ack(&call, &ok).map_err(|e| format!("ACK: {e}"))?;
                    let bye = a
                        .request_in(&mut d, "BYE", None)
                        .map_err(|e| format!("BYE: {e}"))?;
                    if bye.status != 200 {
                        return Err(format!("BYE got {}", bye.status));
                    }
                    Ok(())
                })();
                calls.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = result {
                    failures.lock().unwrap().push(e);
                }
            }
        })
    };
    for generation in 1..=20 {
        std::thread::sleep(Duration::from_millis(150));
        write_lua(&o.dialplans, &lua(generation));
        let written = Instant::now();
        while seen.load(Ordering::Relaxed) != generation {
            assert!(
                written.elapsed() < Duration::from_secs(1),
                "generation {generation} not in force 1 s after the edit (calls still see {}); failures so far: {:?}; log: {:?}",
                seen.load(Ordering::Relaxed),
                failures.lock().unwrap(),
                o.server
                    .log()
                    .lines()
                    .filter(|l| l.contains("generation") || l.contains("dialplan"))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    stop.store(true, Ordering::Relaxed);
    caller.join().unwrap();
    callee_stop.store(true, Ordering::Relaxed);
    callee.join().unwrap();
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} calls failed: {failures:?}; the server said: {:#?}",
        failures.len(),
        calls.load(Ordering::Relaxed),
        o.server
            .log()
            .lines()
            .filter(|l| l.contains("dial")
                || l.contains("WARN")
                || l.contains("ERROR")
                || (l.contains("call ended") && !l.contains("code=200")))
            .collect::<Vec<_>>()
    );
    assert!(
        calls.load(Ordering::Relaxed) >= 20,
        "only {} calls placed",
        calls.load(Ordering::Relaxed)
    );
}

/// Media is anchored, so each phone's in-dialog requests are answered for
/// its own side (as Asterisk and FreeSWITCH do): a hold, a new address or
/// codec, a session refresh and INFO never become a request to the other
/// phone. (Keypresses in INFO do reach it, as it negotiated them:
/// tests/media.rs `digits_cross_the_bridge_as_each_phone_negotiated`.)
#[test]
fn reinvites_updates_and_info_are_answered_for_each_side_alone() {
    let o = office(None);
    let mut a = phone(&o, "1001");
    let mut b = phone(&o, "1002");
    let (mut dialog, incoming) = establish(&mut a, &mut b, "1002");
    let mut back = b.dialog_of(&incoming);

    // Hold: the caller's re-INVITE with a=sendonly gets the PBX's answer
    // on the PBX's own port.
    let hold = testkit::sdp("127.0.0.1", 40_000).replace("a=sendrecv", "a=sendonly");
    let ok = a
        .request_in(&mut dialog, "INVITE", Some(&hold))
        .expect("re-INVITE answered");
    assert_eq!(ok.status, 200);
    let answer = std::str::from_utf8(&ok.body).unwrap();
    assert!(
        answer.contains("a=recvonly") && !answer.contains("m=audio 40000"),
        "the holder gets the PBX's answer to its hold: {answer}"
    );
    a.ack_in(&dialog).unwrap();
    // The callee's own re-INVITE meanwhile (a new address) is answered
    // the same way: nothing crossed, so there is no glare.
    let ok = b
        .request_in(
            &mut back,
            "INVITE",
            Some(&testkit::sdp("127.0.0.1", 41_000)),
        )
        .expect("the callee's re-INVITE answered");
    assert_eq!(ok.status, 200);
    assert!(
        !std::str::from_utf8(&ok.body)
            .unwrap()
            .contains("m=audio 41000")
    );
    b.ack_in(&back).unwrap();

    // A bare UPDATE (a session refresh) and a body-less INFO (a
    // keep-alive) are accepted; an INFO body that is no keypress is
    // refused with what we take (RFC 3261 §21.4.13).
    assert_eq!(
        a.request_in(&mut dialog, "UPDATE", None).unwrap().status,
        200
    );
    assert_eq!(a.request_in(&mut dialog, "INFO", None).unwrap().status, 200);
    let r = a
        .request_in_with(&mut dialog, "INFO", Some(("text/plain", "hello")))
        .expect("INFO answered");
    assert_eq!(r.status, 415);
    assert_eq!(
        r.headers.get_raw("Accept"),
        Some("application/dtmf-relay, application/dtmf")
    );

    // None of it reached the other phone: the next thing each gets is
    // the hang-up.
    assert_eq!(a.request_in(&mut dialog, "BYE", None).unwrap().status, 200);
    let next = b.request_any(WAIT).expect("callee gets BYE");
    assert_eq!(next.method.as_str(), "BYE", "{next:?}");
    b.reply(&next, &incoming.tag, 200).unwrap();
}

#[test]
fn reload_changes_the_next_call_and_leaves_the_current_one_alone() {
    let o = office(None);
    let mut a = phone(&o, "1001");
    let mut b = phone(&o, "1002");
    let mut c = phone(&o, "1003");
    let (mut dialog, incoming) = establish(&mut a, &mut b, "1002");
    write_lua(
        &o.dialplans,
        "function route(call) call:reject(486, 'new plan') end\n",
    );
    let deadline = Instant::now() + WAIT;
    while !o.server.log().contains("generation 2") {
        assert!(Instant::now() < deadline, "no reload: {}", o.server.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    c.call("1002").unwrap();
    let (r, _) = c.final_response(WAIT).unwrap();
    assert_eq!((r.status, r.reason.as_str()), (486, "new plan"));
    // The call that was up is still up and ends normally.
    assert_eq!(a.request_in(&mut dialog, "BYE", None).unwrap().status, 200);
    let bye = b.request("BYE", WAIT).expect("callee gets BYE");
    b.reply(&bye, &incoming.tag, 200).unwrap();
}

#[test]
fn reliable_provisionals_are_refused_and_loops_are_detected() {
    let o = office(Some(
        r#"
function route(call)
  local r = call:dial("sip:loop@" .. call:header("X-Loop"), { timeout = 5 })
  call:reject(480, "loop " .. r.status .. " " .. r.code)
end
"#,
    ));
    let mut a = phone(&o, "1001");
    // RFC 3262 is not supported: Require: 100rel gets 420 + Unsupported.
    a.call_with("1002", &[("Require", "100rel")]).unwrap();
    let (r, _) = a.final_response(WAIT).unwrap();
    assert_eq!(r.status, 420);
    assert_eq!(r.headers.get_raw("Unsupported"), Some("100rel"));
    // A dial that reaches this PBX itself comes back as a loop.
    let me = o.server.udp.unwrap().to_string();
    a.call_with("1002", &[("X-Loop", me.as_str())]).unwrap();
    let (r, _) = a.final_response(WAIT).unwrap();
    assert_eq!((r.status, r.reason.as_str()), (480, "loop failed 482"));
}

#[test]
fn calls_work_over_tcp() {
    let o = office(None);
    let mut a = Phone::tcp(o.server.tcp.expect("tcp"), "1001", "pw-1001", DOMAIN);
    assert_eq!(a.register(), 200);
    let mut b = Phone::tcp(o.server.tcp.expect("tcp"), "1002", "pw-1002", DOMAIN);
    assert_eq!(b.register(), 200);
    let (mut dialog, incoming) = establish(&mut a, &mut b, "1002");
    assert_eq!(a.request_in(&mut dialog, "BYE", None).unwrap().status, 200);
    let bye = b
        .request("BYE", WAIT)
        .expect("callee gets BYE over its connection");
    b.reply(&bye, &incoming.tag, 200).unwrap();
}

#[test]
fn shutdown_waits_for_calls_and_refuses_new_ones() {
    let mut o = office_with(None, r#"shutdown_grace = "10s""#);
    let mut a = phone(&o, "1001");
    let mut b = phone(&o, "1002");
    let mut c = phone(&o, "1003");
    let (mut dialog, incoming) = establish(&mut a, &mut b, "1002");
    o.server.signal("TERM");
    let deadline = Instant::now() + WAIT;
    while !o.server.log().contains("call(s) in progress to end") {
        assert!(Instant::now() < deadline, "{}", o.server.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    c.call("1002").unwrap();
    assert_eq!(c.final_response(WAIT).unwrap().0.status, 503);
    assert!(
        o.server.is_running(),
        "the call in progress holds the shutdown"
    );
    assert_eq!(a.request_in(&mut dialog, "BYE", None).unwrap().status, 200);
    let bye = b.request("BYE", WAIT).unwrap();
    b.reply(&bye, &incoming.tag, 200).unwrap();
    let status = o.server.wait_exit(WAIT).expect("exits once the call ended");
    assert!(status.success(), "{}", o.server.log());
    assert!(o.server.log().contains("shutdown complete"));
}

#[test]
fn shutdown_hangs_up_calls_left_after_the_grace_period() {
    let mut o = office_with(None, r#"shutdown_grace = "1s""#);
    let mut a = phone(&o, "1001");
    let mut b = phone(&o, "1002");
    let (_dialog, incoming) = establish(&mut a, &mut b, "1002");
    o.server.signal("TERM");
    let bye = a.request("BYE", WAIT).expect("the caller is hung up");
    a.reply(&bye, "", 200).unwrap();
    let bye = b.request("BYE", WAIT).expect("the callee is hung up");
    b.reply(&bye, &incoming.tag, 200).unwrap();
    let status = o.server.wait_exit(WAIT).expect("exits");
    assert!(status.success(), "{}", o.server.log());
}

#[test]
fn cdrs_are_kept_across_a_restart() {
    let o = office_stored(None, "", "[storage]\npath = \"var/switchboard.redb\"");
    let mut a = phone(&o, "1001");
    a.call("5555").unwrap();
    assert_eq!(a.final_response(WAIT).unwrap().0.status, 404);
    // Owner only (issue 11): registrations, CDRs and kv are private.
    {
        use std::os::unix::fs::PermissionsExt;
        let var = o.server.dir().join("var");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&var.join("switchboard.redb")), 0o600);
        assert_eq!(mode(&var), 0o700);
    }
    let Office {
        server,
        dialplans,
        _dir,
    } = o;
    let server = server.restart().expect("restarts");
    let o = Office {
        server,
        dialplans,
        _dir,
    };
    let cdrs = json(&o, "/api/v1/cdrs");
    let list = cdrs.as_array().expect("array");
    assert_eq!(list.len(), 1, "{cdrs}");
    assert_eq!(list[0]["disposition"], "rejected");
    assert_eq!(list[0]["code"], 404);
    assert_eq!(list[0]["to"], format!("sip:5555@{DOMAIN}"));
    assert!(list[0]["end_ms"].as_u64() >= list[0]["start_ms"].as_u64());
}

#[test]
fn a_bye_with_the_wrong_tags_cannot_end_someone_elses_call() {
    let o = office(None);
    let mut a = phone(&o, "1001");
    let mut b = phone(&o, "1002");
    let (mut dialog, incoming) = establish(&mut a, &mut b, "1002");
    // An attacker who learned the Call-ID, but not the tags.
    let mut forged = dialog.clone();
    forged.remote = forged.remote.replace(";tag=", ";tag=x");
    let mut attacker = Phone::udp(o.server.udp.unwrap(), "1003", "pw-1003", DOMAIN);
    assert_eq!(
        attacker
            .request_in(&mut forged, "BYE", None)
            .unwrap()
            .status,
        481
    );
    assert!(
        b.silence(Duration::from_millis(300)).is_none(),
        "the callee got nothing"
    );
    assert_eq!(a.request_in(&mut dialog, "BYE", None).unwrap().status, 200);
    let bye = b.request("BYE", WAIT).unwrap();
    b.reply(&bye, &incoming.tag, 200).unwrap();
}

#[test]
fn an_unacknowledged_refusal_is_retransmitted_until_the_ack() {
    let o = office(None);
    let mut a = phone(&o, "1001");
    a.call("5555").unwrap();
    // Read without ACKing (final_response would ACK): Timer G resends the
    // 404 with the same To tag (RFC 3261 §17.2.1).
    let first = a.response(WAIT).unwrap();
    assert_eq!(first.status, 404);
    let again = a.response(Duration::from_secs(2)).expect("retransmission");
    assert_eq!(again.status, 404);
    assert_eq!(
        again.headers.to().unwrap().tag(),
        first.headers.to().unwrap().tag()
    );
}

/// RFC 3261 §13.3.1.4 through `sip_proto::dialog::OkRetransmit`: our 200 to
/// a caller that never ACKs is sent again (same To tag) at T1, 3·T1, ...,
/// and after 64·T1 the call is over: both phones get BYE. T1 is 50 ms here,
/// so 64·T1 is 3.2 s.
#[test]
fn an_unacknowledged_answer_is_resent_then_the_call_ends() {
    let o = office_full(
        None,
        "",
        "t1 = \"50ms\"\nt2 = \"400ms\"",
        "[storage]\nbackend = \"memory\"",
    );
    let mut a = phone(&o, "1001");
    let mut b = phone(&o, "1002");
    a.call("1002").unwrap();
    let incoming = b.incoming(WAIT).expect("callee gets the INVITE");
    b.reply(&incoming.invite, &incoming.tag, 200).unwrap();
    b.request("ACK", WAIT).expect("the B2BUA ACKs the callee");
    let first = loop {
        let r = a.response(WAIT).expect("the answer reaches the caller");
        if r.status == 200 {
            break r;
        }
    };
    let tag = first.headers.to().unwrap().tag().map(str::to_owned);
    let mut resent = 0;
    let bye = loop {
        match a.silence(Duration::from_secs(6)) {
            Some(sip_proto::Message::Response(r)) => {
                assert_eq!(r.status, 200, "only the 200 is resent");
                assert_eq!(r.headers.to().unwrap().tag().map(str::to_owned), tag);
                resent += 1;
            }
            Some(sip_proto::Message::Request(req)) => break req,
            None => panic!("no BYE after 64·T1 without ACK ({resent} resends)"),
        }
    };
    assert_eq!(bye.method.as_str(), "BYE");
    assert!(
        resent >= 5,
        "50 ms doubling to 400 ms over 3.2 s resends ~10 times, got {resent}"
    );
    let callee_bye = b.request("BYE", WAIT).expect("the callee gets BYE too");
    b.reply(&callee_bye, &incoming.tag, 200).unwrap();
}

/// Issue 11, caller-ID spoofing: the callee sees the authenticated
/// extension (its id and configured name), whatever the caller wrote in
/// its From, with a P-Asserted-Identity (RFC 3325); only the dialplan's
/// `caller_id` changes it. Before, 1001 rang 1002 as "The CEO" <1000>.
#[test]
fn the_callee_sees_the_authenticated_caller_not_its_from() {
    let lua = r#"
function route(call)
  local d = call.request_uri.user
  if d == "3002" then
    call:dial("1002", { timeout = 5, caller_id = "Reception <5000>" })
  else
    call:dial(d, { timeout = 5 })
  end
end
"#;
    let o = office(Some(lua));
    let mut a = phone(&o, "1001");
    let mut b = phone(&o, "1002");
    let spoofed = format!("\"The CEO\" <sip:1000@{DOMAIN}>;tag=spoof1");
    a.call_with("1002", &[("From", &spoofed)]).unwrap();
    let incoming = b.incoming(WAIT).expect("callee gets the INVITE");
    let from = incoming.invite.headers.get(&HeaderName::From).unwrap();
    assert!(
        from.starts_with(&format!("\"Alice Example\" <sip:1001@{DOMAIN}>")),
        "{from}"
    );
    assert!(!from.contains("CEO") && !from.contains("1000@"), "{from}");
    assert_eq!(
        incoming.invite.headers.get_raw("P-Asserted-Identity"),
        Some(format!("\"Alice Example\" <sip:1001@{DOMAIN}>").as_str())
    );
    b.reply(&incoming.invite, &incoming.tag, 486).unwrap();
    a.final_response(WAIT).unwrap();

    // The dialplan's caller_id is what the callee sees.
    a.call("3002").unwrap();
    let incoming = b.incoming(WAIT).expect("callee gets the INVITE");
    let from = incoming.invite.headers.get(&HeaderName::From).unwrap();
    assert!(
        from.starts_with(&format!("\"Reception\" <sip:5000@{DOMAIN}>")),
        "{from}"
    );
    assert_eq!(
        incoming.invite.headers.get_raw("P-Asserted-Identity"),
        Some(format!("\"Reception\" <sip:5000@{DOMAIN}>").as_str())
    );
    b.reply(&incoming.invite, &incoming.tag, 486).unwrap();
    a.final_response(WAIT).unwrap();
}

/// Issue 11: a request inside a call's dialog must come from the dialog's
/// peer, or be re-authenticated as its extension. Before, anyone who knew
/// the Call-ID and tags (one sniffed message) could hang up the call from
/// anywhere.
#[test]
fn in_dialog_requests_from_elsewhere_need_the_dialogs_credentials() {
    let o = office(None);
    let mut a = phone(&o, "1001");
    let mut b = phone(&o, "1002");
    let (mut dialog, incoming) = establish(&mut a, &mut b, "1002");
    let elsewhere = std::net::IpAddr::from([127, 0, 0, 2]);
    let server = o.server.udp.unwrap();
    // Right Call-ID and tags, from another host, no credentials: challenged.
    let mut stranger = Phone::udp_from(server, elsewhere, "1003", "pw-1003", DOMAIN);
    let mut forged = dialog.clone();
    for method in ["BYE", "INFO"] {
        let r = stranger.request_in(&mut forged, method, None).unwrap();
        assert_eq!(r.status, 407, "{method} from elsewhere");
    }
    // Another extension's credentials are not the dialog's.
    let r = stranger
        .request_in_authenticated(&mut forged, "BYE")
        .unwrap();
    assert_eq!(r.status, 403);
    assert!(
        r.headers
            .get_raw("Warning")
            .is_some_and(|w| w.contains("dialog's extension")),
        "{:?}",
        r.headers.get_raw("Warning")
    );
    assert!(
        b.silence(Duration::from_millis(300)).is_none(),
        "the callee got nothing"
    );
    // The caller itself, moved to another address, re-authenticates.
    let mut moved = Phone::udp_from(server, elsewhere, "1001", "pw-1001", DOMAIN);
    dialog.cseq = forged.cseq;
    assert_eq!(
        moved
            .request_in_authenticated(&mut dialog, "BYE")
            .unwrap()
            .status,
        200
    );
    let bye = b.request("BYE", WAIT).unwrap();
    b.reply(&bye, &incoming.tag, 200).unwrap();
}

/// RFC 3261 §16.6 step 3, as a B2BUA passes it on: the callee's INVITE
/// carries the caller's Max-Forwards less one, so a loop through other
/// servers still runs out.
#[test]
fn the_callees_invite_carries_the_callers_max_forwards_less_one() {
    let lua = r#"function route(call)
  call:dial(call.request_uri.user, { timeout = 5 })
  call:reject(480)
end
"#;
    let o = office(Some(lua));
    let mut a = phone(&o, "1001");
    let mut b = phone(&o, "1002");
    a.call_with("1002", &[("Max-Forwards", "5")])
        .expect("INVITE");
    let incoming = b.incoming(WAIT).expect("1002 rings");
    let got = incoming
        .invite
        .headers
        .get(&HeaderName::MaxForwards)
        .unwrap_or_default()
        .to_owned();
    assert_eq!(got, "4");
    b.reply(&incoming.invite, &incoming.tag, 486).unwrap();
    let (r, _) = a.final_response(WAIT).expect("the caller's answer");
    assert_eq!(r.status, 480);
}
