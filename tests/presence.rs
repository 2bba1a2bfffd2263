//! Subscriptions end to end against the real binary over real sockets
//! (RFC 6665): a watcher's SUBSCRIBE is challenged like an INVITE, gets its
//! state at once and on every change (busy lamps, RFC 4235), is refreshed,
//! ended, refused (489, 423, 404), and dropped when it stops answering.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sip_proto::{HeaderName, Message, Request};
use testkit::{Phone, Server, Ua, Watcher};

const DOMAIN: &str = "test.invalid";
const WAIT: Duration = Duration::from_secs(5);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn office() -> Server {
    office_with(None).0
}

/// An office whose transactions give up fast: T1 20 ms, so a NOTIFY
/// nobody answers times out (Timer F, 64·T1) in about 1.3 s.
fn impatient_office() -> Server {
    office_config(None, "t1 = \"20ms\"\n").0
}

/// An office whose `default.lua` is `lua` (the repository's without).
fn office_with(lua: Option<&str>) -> (Server, tempfile::TempDir) {
    office_config(lua, "")
}

fn office_config(lua: Option<&str>, sip: &str) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let dialplans = dir.path().join("dialplans");
    std::fs::create_dir_all(&dialplans).expect("dialplans dir");
    let text = match lua {
        Some(text) => text.to_owned(),
        None => std::fs::read_to_string(repo().join("dialplans/default.lua")).expect("default.lua"),
    };
    std::fs::write(dialplans.join("default.lua"), text).expect("write dialplan");
    let config = format!(
        r#"
[sip]
listen = ["udp:127.0.0.1:0"]
domain = "{DOMAIN}"
{sip}
[admin]
listen = "127.0.0.1:0"

[storage]
backend = "memory"

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
    (server, dir)
}

fn phone(s: &Server, user: &str) -> Phone {
    let mut p = Phone::udp(s.udp.expect("udp"), user, &format!("pw-{user}"), DOMAIN);
    assert_eq!(p.register(), 200, "{user} registers");
    p
}

fn subscriptions(s: &Server) -> serde_json::Value {
    let (status, body) = s.http_get("/api/v1/subscriptions").expect("admin API");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("JSON")
}

/// Waits until the subscription list has `n` entries.
fn wait_for_subscriptions(s: &Server, n: usize) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let list = subscriptions(s);
        if list.as_array().map(Vec::len) == Some(n) {
            return list;
        }
        assert!(Instant::now() < deadline, "not {n} subscriptions: {list}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn header<'a>(r: &'a Request, name: &str) -> &'a str {
    r.headers.get(&HeaderName::parse(name)).unwrap_or_default()
}

fn body(r: &Request) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// The `version` attribute of a dialog-info body.
fn version(r: &Request) -> u32 {
    let b = body(r);
    b.split("version=\"")
        .nth(2)
        .and_then(|v| v.split('"').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no version in {b}"))
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

#[test]
fn a_busy_lamp_follows_a_call_from_ringing_to_answered_to_over() {
    let s = office();
    let mut a = phone(&s, "1001");
    let mut b = phone(&s, "1002");
    let mut w = Watcher::new(s.udp.expect("udp"), DOMAIN, "1003", "1002");
    let ok = w.subscribe("dialog", 600);
    assert_eq!(ok.status, 200);
    assert_eq!(ok.headers.get(&HeaderName::Expires), Some("600"));
    assert!(
        ok.headers.get(&HeaderName::Contact).is_some(),
        "a 2xx to SUBSCRIBE has a Contact"
    );

    // The full state at once: idle.
    let first = w.notify();
    assert_eq!(header(&first, "Event"), "dialog");
    assert_eq!(
        header(&first, "Content-Type"),
        "application/dialog-info+xml"
    );
    assert!(header(&first, "Subscription-State").starts_with("active;expires="));
    assert!(
        body(&first).contains("entity=\"sip:1002@test.invalid\""),
        "{}",
        body(&first)
    );
    assert!(states(&first).is_empty(), "{}", body(&first));
    let mut last = version(&first);

    // 1001 calls 1002: the lamp shows it ringing, and who is calling.
    let call = a.call("1002").expect("INVITE");
    let incoming = b.incoming(WAIT).expect("1002 rings");
    b.reply(&incoming.invite, &incoming.tag, 180).unwrap();
    let ringing = w.notify();
    assert_eq!(states(&ringing), ["early"], "{}", body(&ringing));
    let text = body(&ringing);
    // The dialog named is 1002's own (the INVITE it got), with our tag.
    let invite_call_id = incoming.invite.call_id().unwrap_or_default().to_owned();
    let our_tag = incoming
        .invite
        .headers
        .from()
        .ok()
        .and_then(|f| f.tag().map(str::to_owned))
        .unwrap_or_default();
    assert!(
        text.contains(&format!(
            "call-id=\"{invite_call_id}\" remote-tag=\"{our_tag}\""
        )),
        "{text}"
    );
    assert!(text.contains("direction=\"recipient\""), "{text}");
    assert!(
        text.contains(
            "<remote><identity display=\"Alice Example\">sip:1001@test.invalid</identity>"
        ),
        "{text}"
    );
    assert!(version(&ringing) > last);
    last = version(&ringing);

    // Answered: confirmed.
    b.reply(&incoming.invite, &incoming.tag, 200).unwrap();
    let (ok, _) = a.final_response(WAIT).expect("200");
    let mut dialog = a.ack(&call, &ok).expect("ACK");
    let talking = w.notify();
    assert_eq!(states(&talking), ["confirmed"], "{}", body(&talking));
    assert!(
        body(&talking).contains(&format!(
            "call-id=\"{invite_call_id}\" local-tag=\"{}\" remote-tag=\"{our_tag}\" direction=\"recipient\"",
            incoming.tag
        )),
        "{}",
        body(&talking)
    );
    assert!(version(&talking) > last);
    last = version(&talking);

    // Hung up: terminated, then the lamp is dark.
    assert_eq!(a.request_in(&mut dialog, "BYE", None).unwrap().status, 200);
    let bye = b.request("BYE", WAIT).expect("callee gets BYE");
    b.reply(&bye, &incoming.tag, 200).unwrap();
    let over = w.notify();
    assert_eq!(states(&over), ["terminated"], "{}", body(&over));
    assert!(version(&over) > last);

    let list = subscriptions(&s);
    assert_eq!(list[0]["subscriber"], "1003", "{list}");
    assert_eq!(list[0]["event"], "dialog", "{list}");
    assert_eq!(list[0]["target"], "1002", "{list}");
    assert_eq!(list[0]["version"], version(&over), "{list}");
}

#[test]
fn refresh_and_unsubscribe() {
    let s = office();
    let mut w = Watcher::new(s.udp.expect("udp"), DOMAIN, "1003", "1002");
    assert_eq!(w.subscribe("presence", 600).status, 200);
    let first = w.notify();
    assert_eq!(header(&first, "Content-Type"), "application/pidf+xml");
    assert!(
        body(&first).contains("<basic>closed</basic>"),
        "{}",
        body(&first)
    );
    let listed = wait_for_subscriptions(&s, 1);
    assert_eq!(listed[0]["event"], "presence", "{listed}");
    let (status, metrics) = s.http_get("/metrics").expect("metrics");
    assert_eq!(status, 200);
    assert!(metrics.lines().any(|l| l == "subscriptions 1"), "{metrics}");

    // A refresh inside the dialog: the new expiry, and the state again.
    let refreshed = w.subscribe("presence", 120);
    assert_eq!(refreshed.status, 200);
    assert_eq!(refreshed.headers.get(&HeaderName::Expires), Some("120"));
    let again = w.notify();
    let state = header(&again, "Subscription-State");
    let left: u32 = state
        .strip_prefix("active;expires=")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{state}"));
    assert!((100..=120).contains(&left), "{state}");
    assert_eq!(again.cseq().map(|c| c.seq), first.cseq().map(|c| c.seq + 1));

    // More than the maximum is cut to it; less than the minimum is 423.
    assert_eq!(
        w.subscribe("presence", 999_999)
            .headers
            .get(&HeaderName::Expires),
        Some("3600")
    );
    w.notify();
    let brief = w.subscribe("presence", 5);
    assert_eq!(brief.status, 423);
    assert_eq!(brief.headers.get(&HeaderName::MinExpires), Some("60"));

    // The phone moved (new address and Contact): the refresh retargets
    // the NOTIFYs.
    w.ua = Ua::udp(s.udp.expect("udp")).expect("socket");
    assert_eq!(w.subscribe("presence", 600).status, 200);
    let moved = w.notify();
    assert!(header(&moved, "Subscription-State").starts_with("active"));

    // Expires: 0 ends it with a final NOTIFY.
    assert_eq!(w.subscribe("presence", 0).status, 200);
    let last = w.notify();
    assert!(
        header(&last, "Subscription-State").starts_with("terminated"),
        "{}",
        header(&last, "Subscription-State")
    );
    wait_for_subscriptions(&s, 0);
}

#[test]
fn unknown_packages_targets_and_credentials_are_refused() {
    let s = office();
    // No credentials: challenged like an INVITE.
    let mut w = Watcher::new(s.udp.expect("udp"), DOMAIN, "1003", "1002");
    let text = w.subscribe_request("dialog", 600);
    let r = w.send(&text);
    assert_eq!(r.status, 407);
    assert!(r.headers.get(&HeaderName::ProxyAuthenticate).is_some());
    // A wrong password gets no subscription.
    let mut wrong = Watcher::new(s.udp.expect("udp"), DOMAIN, "1003", "1002");
    assert_eq!(wrong.subscribe_as("nope", "dialog", 600).status, 407);
    // An event package we do not serve: 489 with the ones we do.
    let mut odd = Watcher::new(s.udp.expect("udp"), DOMAIN, "1003", "1002");
    let r = odd.subscribe("conference", 600);
    assert_eq!(r.status, 489);
    let allow = r
        .headers
        .get(&HeaderName::parse("Allow-Events"))
        .unwrap_or_default();
    assert!(
        allow.contains("dialog") && allow.contains("message-summary") && allow.contains("presence"),
        "{allow}"
    );
    // A target that is no extension: 404.
    let mut nobody = Watcher::new(s.udp.expect("udp"), DOMAIN, "1003", "4711");
    assert_eq!(nobody.subscribe("dialog", 600).status, 404);
    assert_eq!(subscriptions(&s).as_array().map(Vec::len), Some(0));
}

#[test]
fn a_subscriber_that_answers_481_is_dropped() {
    let s = office();
    let mut gone = Watcher::new(s.udp.expect("udp"), DOMAIN, "1003", "1002");
    assert_eq!(gone.subscribe("dialog", 600).status, 200);
    let mut stays = Watcher::new(s.udp.expect("udp"), DOMAIN, "1001", "1002");
    assert_eq!(stays.subscribe("message-summary", 600).status, 200);
    let mwi = stays.notify();
    assert_eq!(
        body(&mwi),
        "Messages-Waiting: no\r\nMessage-Account: sip:1002@test.invalid\r\nVoice-Message: 0/0 (0/0)\r\n"
    );
    // The phone forgot the subscription (it rebooted): 481.
    gone.notify_answered(481);
    let left = wait_for_subscriptions(&s, 1);
    assert_eq!(left[0]["subscriber"], "1001", "{left}");
}

#[test]
fn a_refresh_of_a_subscription_the_server_forgot_recreates_it() {
    let s = office();
    let mut w = Watcher::new(s.udp.expect("udp"), DOMAIN, "1003", "1002");
    // As after a restart: the phone refreshes a dialog we have no record of.
    w.to = format!("<sip:1002@{DOMAIN}>;tag=beforerestart");
    let r = w.subscribe("dialog", 600);
    assert_eq!(r.status, 200);
    let n = w.notify();
    assert!(
        header(&n, "From").contains("tag=beforerestart"),
        "{}",
        header(&n, "From")
    );
    wait_for_subscriptions(&s, 1);
}

#[test]
fn the_subscribers_context_decides_with_on_subscribe() {
    let (s, _dir) = office_with(Some(
        r#"
function route(call)
  call:reject(404, "Not Found")
end

-- Nobody watches 1001's line; presence only for 1003.
function on_subscribe(ext, event, target)
  log.info("on_subscribe " .. ext .. " " .. event .. " " .. target)
  if target == "1001" then
    return false
  end
  return event ~= "presence" or ext == "1003"
end
"#,
    ));
    let mut boss = Watcher::new(s.udp.expect("udp"), DOMAIN, "1002", "1001");
    assert_eq!(boss.subscribe("dialog", 600).status, 403);
    let mut lamp = Watcher::new(s.udp.expect("udp"), DOMAIN, "1002", "1003");
    assert_eq!(lamp.subscribe("dialog", 600).status, 200);
    let mut presence = Watcher::new(s.udp.expect("udp"), DOMAIN, "1002", "1003");
    assert_eq!(presence.subscribe("presence", 600).status, 403);
    let mut allowed = Watcher::new(s.udp.expect("udp"), DOMAIN, "1003", "1002");
    assert_eq!(allowed.subscribe("presence", 600).status, 200);
    assert!(
        s.log().contains("on_subscribe 1002 dialog 1001"),
        "{}",
        s.log()
    );
    wait_for_subscriptions(&s, 2);
}

#[test]
fn a_failing_on_subscribe_refuses() {
    let (s, _dir) = office_with(Some(
        r#"
function route(call)
  call:reject(404, "Not Found")
end

function on_subscribe(ext, event, target)
  while true do end
end
"#,
    ));
    let mut w = Watcher::new(s.udp.expect("udp"), DOMAIN, "1002", "1003");
    assert_eq!(w.subscribe("dialog", 600).status, 403);
}

#[test]
fn a_subscriber_that_vanished_is_dropped_when_its_notify_times_out() {
    let s = impatient_office();
    let mut a = phone(&s, "1001");
    let mut b = phone(&s, "1002");
    let mut w = Watcher::new(s.udp.expect("udp"), DOMAIN, "1003", "1002");
    assert_eq!(w.subscribe("dialog", 600).status, 200);
    w.notify();
    wait_for_subscriptions(&s, 1);
    // The phone is gone: its port is closed, nothing answers.
    drop(w);
    // A change at 1002 sends a NOTIFY that times out.
    a.call("1002").expect("INVITE");
    let incoming = b.incoming(WAIT).expect("1002 rings");
    b.reply(&incoming.invite, &incoming.tag, 180).unwrap();
    wait_for_subscriptions(&s, 0);
}

#[test]
fn a_lamp_first_watched_during_a_call_shows_the_call_at_once() {
    // Nobody watches any lamp while the call starts (the lamps are then not
    // followed at all); the first subscription must still see it.
    let s = office();
    let mut a = phone(&s, "1001");
    let mut b = phone(&s, "1002");
    let call = a.call("1002").expect("INVITE");
    let incoming = b.incoming(WAIT).expect("1002 rings");
    b.reply(&incoming.invite, &incoming.tag, 200).unwrap();
    let (ok, _) = a.final_response(WAIT).expect("200");
    let mut dialog = a.ack(&call, &ok).expect("ACK");
    b.request("ACK", WAIT).expect("callee gets ACK");

    let mut w = Watcher::new(s.udp.expect("udp"), DOMAIN, "1003", "1002");
    assert_eq!(w.subscribe("dialog", 600).status, 200);
    let first = w.notify();
    assert_eq!(states(&first), ["confirmed"], "{}", body(&first));
    let mut p = Watcher::new(s.udp.expect("udp"), DOMAIN, "1003", "1001");
    assert_eq!(p.subscribe("presence", 600).status, 200);
    let busy = p.notify();
    assert!(
        body(&busy).contains("<rpid:on-the-phone/>"),
        "{}",
        body(&busy)
    );

    // Followed from then on.
    assert_eq!(a.request_in(&mut dialog, "BYE", None).unwrap().status, 200);
    let bye = b.request("BYE", WAIT).expect("callee gets BYE");
    b.reply(&bye, &incoming.tag, 200).unwrap();
    let over = w.notify();
    assert_eq!(states(&over), ["terminated"], "{}", body(&over));
}

#[test]
fn presence_shows_registered_and_on_the_phone() {
    let s = office();
    let mut a = phone(&s, "1001");
    let mut b = phone(&s, "1002");
    let mut w = Watcher::new(s.udp.expect("udp"), DOMAIN, "1003", "1002");
    assert_eq!(w.subscribe("presence", 600).status, 200);
    let idle = w.notify();
    let text = body(&idle);
    assert!(
        text.contains("<basic>open</basic>") && !text.contains("on-the-phone"),
        "{text}"
    );
    let call = a.call("1002").expect("INVITE");
    let incoming = b.incoming(WAIT).expect("1002 rings");
    // Ringing is on the phone (read before answering: a state that lasts
    // no time may be replaced by the next before its NOTIFY goes out).
    let busy = w.notify();
    assert!(
        body(&busy).contains("<rpid:on-the-phone/>"),
        "{}",
        body(&busy)
    );
    // Busy: the shipped dialplan takes the caller to 1002's voicemail;
    // the caller leaves at once.
    b.reply(&incoming.invite, &incoming.tag, 486).unwrap();
    let (ok, _) = a.final_response(WAIT).expect("voicemail answers");
    assert_eq!(ok.status, 200);
    let mut dialog = a.ack(&call, &ok).expect("ACK");
    assert_eq!(a.request_in(&mut dialog, "BYE", None).unwrap().status, 200);
    let mut seen = Vec::new();
    loop {
        let n = w.notify();
        if !body(&n).contains("on-the-phone") {
            break;
        }
        seen.push(body(&n));
        assert!(seen.len() < 5, "1002 never went free: {seen:?}");
    }
}

#[test]
fn a_subscribe_with_expires_0_fetches_the_state_once() {
    let s = office();
    let mut w = Watcher::new(s.udp.expect("udp"), DOMAIN, "1001", "1001");
    assert_eq!(w.subscribe("message-summary", 0).status, 200);
    let n = w.notify();
    assert!(
        header(&n, "Subscription-State").starts_with("terminated"),
        "{}",
        header(&n, "Subscription-State")
    );
    assert!(
        body(&n).starts_with("Messages-Waiting: no\r\n"),
        "{}",
        body(&n)
    );
    wait_for_subscriptions(&s, 0);
}

#[test]
fn presence_opens_when_the_watched_phone_registers() {
    let s = office();
    let mut w = Watcher::new(s.udp.expect("udp"), DOMAIN, "1003", "1002");
    assert_eq!(w.subscribe("presence", 600).status, 200);
    assert!(body(&w.notify()).contains("<basic>closed</basic>"));
    let _b = phone(&s, "1002");
    // Registrations are looked at every few seconds.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no NOTIFY saying 1002 is open");
        if let Ok(Message::Request(n)) = w.ua.recv(left)
            && n.method.as_str() == "NOTIFY"
        {
            w.answer(&n, 200);
            assert!(body(&n).contains("<basic>open</basic>"), "{}", body(&n));
            break;
        }
    }
}
