//! A call queue through the real binary and `plugins/queue.lua` (issue
//! 16): two agents (1001 static, 1002 logging in with `*45`) and three
//! callers. Callers wait with music on hold, are served in the order they
//! came, a caller who hangs up while waiting is counted abandoned, an
//! agent who just finished a call is not offered the next one during its
//! wrap-up, and `GET /api/v1/queues` and the metrics show all of it. A
//! `ringall` queue credits only the agent who answered (the dial result's
//! `answered_by`), through the binary and in a spec.

mod office;

use std::time::{Duration, Instant};

use office::{OFFER, WAIT, answered, assert_heard, assert_music, exchange, office_with, phone};
use serde_json::Value;
use testkit::{Dialog, InCall, Phone, RtpPeer};

const QUEUE_LUA: &str = r#"
local queue = require("queue")

queue.define("support", {
  strategy = "roundrobin",
  members = { "1001" },
  agents = { "1002" },
  wrapup = 8,
  ring_timeout = 20,
  max_wait = 300,
})

function route(call)
  local dest = call.request_uri.user
  if dest == "401" then
    queue.enter(call, "support")
  elseif dest == "*45" then
    queue.toggle(call)
  else
    call:reject(404, "Not Found")
  end
end
"#;

const CALLERS: &str = r#"
[[extension]]
id = "1003"
password = "pw-1003"

[[extension]]
id = "1004"
password = "pw-1004"

[[extension]]
id = "1005"
password = "pw-1005"
"#;

/// The support queue as `GET /api/v1/queues` shows it.
fn support(o: &office::Office) -> Value {
    let (status, body) = o.server.http_get("/api/v1/queues").expect("admin API");
    assert_eq!(status, 200, "{body}");
    let all: Value = serde_json::from_str(&body).expect("JSON");
    all["queues"]
        .as_array()
        .and_then(|qs| qs.iter().find(|q| q["name"] == "support"))
        .cloned()
        .unwrap_or_else(|| panic!("no support queue in {body}"))
}

/// Polls the queue until `ok` holds (or fails after a while, showing it).
fn until(o: &office::Office, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let q = support(o);
        if ok(&q) {
            return q;
        }
        assert!(Instant::now() < deadline, "{what}: {q:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn agent_state(q: &Value, ext: &str) -> String {
    q["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["ext"] == ext))
        .map(|a| a["state"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

fn from_of(call: &InCall) -> String {
    call.invite
        .headers
        .from()
        .map(|f| f.to_string())
        .unwrap_or_default()
}

/// The agent answers the queue's INVITE with `peer`'s media; the dialog
/// and the PBX's media on the agent's leg.
fn agent_answers(
    agent: &mut Phone,
    call: &InCall,
    peer: &RtpPeer,
) -> (Dialog, testkit::RemoteMedia) {
    let media = office::media_of(&call.invite.body);
    agent
        .reply_sdp(&call.invite, &call.tag, 200, &peer.sdp_answer(&["PCMU"]))
        .expect("200 sent");
    agent.request("ACK", WAIT).expect("the PBX ACKs the agent");
    (agent.dialog_of(call), media)
}

/// The tag of a From/To value.
fn tag_of(party: &str) -> &str {
    party.split(";tag=").nth(1).unwrap_or_default()
}

#[test]
fn two_agents_three_callers_order_music_abandon_wrapup_and_the_api() {
    let o = office_with(Some(QUEUE_LUA), CALLERS);
    let mut a = phone(&o, "1001");
    let mut b = phone(&o, "1002");
    let mut c1 = phone(&o, "1003");
    let mut c2 = phone(&o, "1004");
    let mut c3 = phone(&o, "1005");

    // Caller 1: the queue answers and rings 1001 (the only agent in),
    // which answers: the two talk.
    let r1 = RtpPeer::localhost();
    let (c1_dialog, c1_media) = answered(&mut c1, "401", &r1.sdp_offer(OFFER));
    let ring = a.incoming(WAIT).expect("1001 is rung for caller 1");
    assert!(from_of(&ring).contains("sip:1003@"), "{}", from_of(&ring));
    let ra = RtpPeer::localhost();
    let (mut a_dialog, a_media) = agent_answers(&mut a, &ring, &ra);
    r1.clear();
    exchange(
        &r1,
        (c1_media.addr, 0, 1000.0),
        &ra,
        (a_media.addr, 0, 2000.0),
    );
    assert_heard("1001", &ra, a_media.addr, 40, 1000.0);
    assert_heard("caller 1", &r1, c1_media.addr, 40, 2000.0);

    // Callers 2 and 3 wait: nobody is free. Caller 2 hears music.
    let r2 = RtpPeer::localhost();
    let (_c2_dialog, c2_media) = answered(&mut c2, "401", &r2.sdp_offer(OFFER));
    let r3 = RtpPeer::localhost();
    let (mut c3_dialog, _) = answered(&mut c3, "401", &r3.sdp_offer(OFFER));
    assert!(
        r2.wait_for(150, Duration::from_secs(8)),
        "caller 2 got {} RTP packets while waiting",
        r2.count()
    );
    r2.clear();
    r2.send_tone(c2_media.addr, 0, 1000.0, Duration::from_millis(1600))
        .expect("send tone");
    r2.settle(Duration::from_millis(200), WAIT);
    assert_music("caller 2, waiting", &r2, c2_media.addr, 1000.0);
    assert!(r3.wait_for(50, WAIT), "caller 3 hears music too");

    let q = until(&o, "two callers wait, in order", |q| q["waiting"] == 2);
    assert_eq!(q["strategy"], "roundrobin");
    let callers = q["callers"].as_array().expect("callers");
    assert!(
        callers[0]["from"]
            .as_str()
            .unwrap_or_default()
            .contains("1004"),
        "{q:#}"
    );
    assert_eq!(callers[0]["position"], 1);
    assert!(
        callers[1]["from"]
            .as_str()
            .unwrap_or_default()
            .contains("1005"),
        "{q:#}"
    );
    assert_eq!(callers[1]["position"], 2);
    assert_eq!(agent_state(&q, "1001"), "in_call", "{q:#}");
    assert_eq!(q["connecting"][0]["agents"][0], "1001", "{q:#}");
    assert!(q["longest_wait_seconds"].as_u64().is_some(), "{q:#}");

    // 1002 logs in with *45 and is offered the first caller in line,
    // caller 2, not caller 3.
    let rb = RtpPeer::localhost();
    let (_, _) = answered(&mut b, "*45", &rb.sdp_offer(OFFER));
    let mut ring = None;
    let mut hung_up = false;
    let deadline = Instant::now() + Duration::from_secs(15);
    while ring.is_none() || !hung_up {
        assert!(
            Instant::now() < deadline,
            "1002: the *45 call's BYE and the queue's INVITE"
        );
        let left = deadline.saturating_duration_since(Instant::now());
        let request = b.request_any(left).expect("a request to 1002");
        match request.method.as_str() {
            "BYE" => {
                b.reply(&request, "t45", 200).expect("200 to BYE");
                hung_up = true;
            }
            "INVITE" => {
                ring = Some(InCall {
                    invite: request,
                    tag: "b0b1".into(),
                });
            }
            _ => {}
        }
    }
    let ring = ring.expect("INVITE");
    assert!(
        from_of(&ring).contains("sip:1004@"),
        "1002 must get caller 2 first: {}",
        from_of(&ring)
    );
    // While 1002 rings, caller 2 still hears the music, not ringback
    // (two tones at most): many pitches.
    r2.clear();
    assert!(
        r2.wait_for(100, Duration::from_secs(8)),
        "caller 2 got {} RTP packets while its agent rang",
        r2.count()
    );
    let mut distinct = office::pitches(&r2);
    distinct.sort_by(f64::total_cmp);
    distinct.dedup_by(|x, y| (*x - *y).abs() < 20.0);
    assert!(
        distinct.len() >= 3,
        "caller 2 hears music while 1002 rings, not ringback: {distinct:?}"
    );
    let rb = RtpPeer::localhost();
    let (_b_dialog, b_media) = agent_answers(&mut b, &ring, &rb);
    r2.clear();
    exchange(
        &r2,
        (c2_media.addr, 0, 1000.0),
        &rb,
        (b_media.addr, 0, 2000.0),
    );
    assert_heard("caller 2, bridged to 1002", &r2, c2_media.addr, 40, 2000.0);

    // Caller 3 hangs up while waiting: abandoned, out of the line.
    let bye = c3
        .request_in(&mut c3_dialog, "BYE", None)
        .expect("BYE answered");
    assert_eq!(bye.status, 200);
    let q = until(&o, "caller 3 abandoned", |q| {
        q["abandoned"] == 1 && q["waiting"] == 0
    });
    assert_eq!(q["answered"], 0, "{q:#}");

    // It calls again and waits (both agents talk).
    let r3 = RtpPeer::localhost();
    let (_c3_dialog, _) = answered(&mut c3, "401", &r3.sdp_offer(OFFER));
    until(&o, "caller 3 waits again", |q| q["waiting"] == 1);

    // 1001 hangs up on caller 1: answered, and 1001 is in wrap-up.
    let bye = a
        .request_in(&mut a_dialog, "BYE", None)
        .expect("BYE answered");
    assert_eq!(bye.status, 200);
    let bye = c1.request("BYE", WAIT).expect("caller 1 gets BYE");
    c1.reply(&bye, tag_of(&c1_dialog.local), 200).unwrap();
    let q = until(&o, "caller 1 answered, 1001 in wrap-up", |q| {
        q["answered"] == 1 && agent_state(q, "1001") == "wrapup"
    });
    assert_eq!(q["waiting"], 1, "caller 3 still waits: {q:#}");
    let agent = q["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["ext"] == "1001"))
        .cloned()
        .expect("1001");
    assert_eq!(agent["calls_taken"], 1, "{q:#}");
    assert!(agent["wrapup_until_ms"].as_u64().is_some(), "{q:#}");
    // Not offered caller 3 during its wrap-up (8 s)...
    assert!(
        a.incoming(Duration::from_secs(3)).is_err(),
        "1001 was rung during its wrap-up"
    );
    assert_eq!(support(&o)["waiting"], 1);
    // ...but once it is over.
    let ring = a
        .incoming(Duration::from_secs(15))
        .expect("1001 is rung after its wrap-up");
    assert!(from_of(&ring).contains("sip:1005@"), "{}", from_of(&ring));
    let ra = RtpPeer::localhost();
    agent_answers(&mut a, &ring, &ra);
    let q = until(&o, "nobody waits", |q| q["waiting"] == 0);
    assert_eq!(agent_state(&q, "1001"), "in_call", "{q:#}");
    assert_eq!(agent_state(&q, "1002"), "in_call", "{q:#}");

    // The metrics.
    let (_, metrics) = o.server.http_get("/metrics").expect("metrics");
    for line in [
        "queue_abandoned_total{queue=\"support\"} 1",
        "queue_answered_total{queue=\"support\"} 1",
        "queue_callers_waiting{queue=\"support\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} not in {metrics}");
    }
    assert!(
        metrics.contains("queue_longest_wait_seconds{queue=\"support\"}"),
        "{metrics}"
    );
}

#[test]
fn the_queue_and_its_waiting_callers_survive_a_dialplan_reload() {
    let o = office_with(Some(QUEUE_LUA), CALLERS);
    let mut c = phone(&o, "1003");
    let mut a = phone(&o, "1001");
    // 1001 logs out: the caller waits.
    let ra = RtpPeer::localhost();
    let (_, _) = answered(&mut a, "*45", &ra.sdp_offer(OFFER));
    let bye = a.request("BYE", WAIT).expect("*45 hangs up");
    a.reply(&bye, "t45", 200).unwrap();
    let q = until(&o, "1001 logged out", |q| {
        agent_state(q, "1001") == "logged_out"
    });
    assert_eq!(q["waiting"], 0);
    let rc = RtpPeer::localhost();
    let (_c_dialog, _) = answered(&mut c, "401", &rc.sdp_offer(OFFER));
    until(&o, "the caller waits", |q| q["waiting"] == 1);

    let (status, body) = o.server.http("POST", "/api/v1/reload").expect("reload");
    assert_eq!(status, 200, "{body}");
    // Still waiting, 1001 still logged out; logging in again (a call in
    // the new generation) brings the caller (still in the old one) its
    // agent.
    let q = support(&o);
    assert_eq!(q["waiting"], 1, "{q:#}");
    assert_eq!(agent_state(&q, "1001"), "logged_out", "{q:#}");
    let (_, _) = answered(&mut a, "*45", &ra.sdp_offer(OFFER));
    let mut rung = false;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !rung {
        assert!(
            Instant::now() < deadline,
            "1001 is rung for the waiting caller"
        );
        let left = deadline.saturating_duration_since(Instant::now());
        let request = a.request_any(left).expect("a request to 1001");
        match request.method.as_str() {
            "BYE" => a.reply(&request, "t45b", 200).expect("200 to BYE"),
            "INVITE" => {
                let from = request
                    .headers
                    .from()
                    .map(|f| f.to_string())
                    .unwrap_or_default();
                assert!(from.contains("sip:1003@"), "{from}");
                rung = true;
            }
            _ => {}
        }
    }
}

/// A ringall queue on 402 (both members rung at once, a long wrap-up).
const RINGALL_LUA: &str = r#"
local queue = require("queue")

queue.define("support", {
  strategy = "ringall",
  members = { "1001", "1002" },
  wrapup = 60,
  ring_timeout = 15,
  max_wait = 40,
})

function route(call)
  if call.request_uri.user == "402" then
    queue.enter(call, "support")
  else
    call:reject(404, "Not Found")
  end
end
"#;

/// The same in the spec runner: the agent that answers a ringall offer
/// is the only one in wrap-up, so the other takes the next caller at once
/// (crediting every agent rung left nobody free for 60 s, and the second
/// caller would have waited out `max_wait` undialled).
const RINGALL_SPEC: &str = r#"
before_each(function()
  for _, id in ipairs({ "1001", "1002", "1003" }) do
    sim.extension(id)
  end
end)

it("ringall credits only the agent who answered; the other takes the next caller", function()
  sim.phone("1001"):never_answers()
  sim.phone("1002"):answers_after(2)
  local first = sim.call({ from = "1003", to = "402" })
  expect(first):dialled("1001", { timeout = 15 })
  expect(first):dialled("1002", { timeout = 15 })
  expect(first):ended_with("answered")
  sim.phone("1001"):answers_after(1)
  local second = sim.call({ from = "1003", to = "402" })
  expect(second):dialled("1001", { timeout = 15 })
  expect(second):not_dialled("1002")
  expect(second):ended_with("answered")
end)
"#;

#[test]
fn a_ringall_queue_credits_only_the_agent_who_answered_in_its_spec() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dialplans = dir.path().join("dialplans");
    std::fs::create_dir_all(dialplans.join("tests")).expect("mkdir");
    std::fs::write(dialplans.join("default.lua"), RINGALL_LUA).expect("write");
    std::fs::write(dialplans.join("tests/ringall_spec.lua"), RINGALL_SPEC).expect("write");
    let config = dir.path().join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "[dialplan]\ndir = {:?}\nplugins = {:?}\nsounds = {:?}\n",
            dialplans,
            office::repo().join("plugins"),
            office::repo().join("sounds")
        ),
    )
    .expect("write config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("test")
        .arg("--config")
        .arg(&config)
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .output()
        .expect("switchboard test runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().last(),
        Some("1 passed, 0 failed"),
        "{stdout}"
    );
}

#[test]
fn a_ringall_queue_credits_only_the_agent_who_answered() {
    let o = office_with(Some(RINGALL_LUA), CALLERS);
    let mut a = phone(&o, "1001");
    let mut b = phone(&o, "1002");
    let mut c = phone(&o, "1003");

    // The caller is queued; both agents ring; 1002 answers and 1001 is
    // cancelled.
    let rc = RtpPeer::localhost();
    let (mut c_dialog, _) = answered(&mut c, "402", &rc.sdp_offer(OFFER));
    let ring_a = a.incoming(WAIT).expect("1001 is rung");
    a.reply(&ring_a.invite, &ring_a.tag, 180).expect("180");
    let ring_b = b.incoming(WAIT).expect("1002 is rung");
    let rb = RtpPeer::localhost();
    agent_answers(&mut b, &ring_b, &rb);
    let cancel = a.request("CANCEL", WAIT).expect("1001 stops ringing");
    a.reply(&cancel, &ring_a.tag, 200).expect("200 to CANCEL");
    a.reply(&ring_a.invite, &ring_a.tag, 487).expect("487");

    // The caller hangs up: the call was 1002's alone.
    let bye = c
        .request_in(&mut c_dialog, "BYE", None)
        .expect("BYE answered");
    assert_eq!(bye.status, 200);
    let bye = b.request("BYE", WAIT).expect("1002 gets BYE");
    b.reply(&bye, &ring_b.tag, 200).expect("200 to BYE");
    let q = until(&o, "the call answered, 1002 in wrap-up", |q| {
        q["answered"] == 1 && agent_state(q, "1002") == "wrapup"
    });
    let agent = |ext: &str| {
        q["agents"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["ext"] == ext))
            .cloned()
            .unwrap_or_else(|| panic!("no agent {ext}: {q:#}"))
    };
    assert_eq!(agent("1002")["calls_taken"], 1, "{q:#}");
    assert!(agent("1002")["last_call_ms"].as_u64().is_some(), "{q:#}");
    assert_eq!(agent_state(&q, "1001"), "available", "{q:#}");
    assert_eq!(agent("1001")["calls_taken"], 0, "{q:#}");
    assert!(agent("1001")["last_call_ms"].is_null(), "{q:#}");
}
