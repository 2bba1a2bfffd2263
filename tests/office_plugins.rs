//! The office plugins through the real binary and the shipped
//! `default.lua` (issue 16): the sales hunt group on 400 passes over a busy
//! member and the next one rings and answers (audio both ways); reception
//! on 0 after hours (by the config's time zone) answers with the closed
//! prompt; `*28` toggles night mode and it persists; `*76` puts an
//! extension in do-not-disturb and its callers get voicemail without it
//! ringing; and the plugin hooks `on_register` and `on_call_end` run, a
//! failing one logged with its `file:line`. The plugins' other behaviour
//! is in their specs (`dialplans/tests/*_spec.lua`); what the shipped
//! office does not use (the other ring group strategies, nested menus,
//! hours past midnight) is specced here through `switchboard test` on
//! contexts of the test's own, and a bad hours table fails `check` with
//! the dialplan's line.

mod binary;
mod office;

use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use office::{DOMAIN, OFFER, WAIT, answered, assert_heard, exchange, media_of, repo};
use testkit::{Phone, RtpPeer, Server};

const EXT_1003: &str = "\n[[extension]]\nid = \"1003\"\npassword = \"pw-1003\"\n";

/// How long a log line or a trace may take to appear.
const LOG_WAIT: Duration = Duration::from_secs(10);

fn phone(server: &Server, user: &str) -> Phone {
    let mut p = Phone::udp(
        server.udp.expect("udp"),
        user,
        &format!("pw-{user}"),
        DOMAIN,
    );
    assert_eq!(p.register(), 200, "{user} registers");
    p
}

/// The first log line containing `needle`, waiting for it.
fn wait_for_log(server: &Server, needle: &str) -> String {
    let deadline = Instant::now() + LOG_WAIT;
    loop {
        if let Some(line) = server.log().lines().find(|l| l.contains(needle)) {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {needle:?}:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The dialplan steps of call `call_id`'s trace (`location step` lines).
fn steps(server: &Server, call_id: &str) -> Vec<String> {
    let (status, body) = server
        .http_get(&format!("/api/v1/calls/{call_id}/trace"))
        .expect("GET trace");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("trace JSON");
    v["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"].as_str() != Some("sip"))
        .map(|e| {
            format!(
                "{} {}",
                e["location"].as_str().unwrap_or("-"),
                e["step"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// Waits until call `call_id`'s trace has a step containing `needle`.
fn wait_for_step(server: &Server, call_id: &str, needle: &str) {
    let deadline = Instant::now() + LOG_WAIT;
    loop {
        let steps = steps(server, call_id);
        if steps.iter().any(|s| s.contains(needle)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no step with {needle:?} in the trace of {call_id}:\n{}",
            steps.join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_hunt_group_passes_over_a_busy_member_and_the_next_answers_with_audio_both_ways() {
    let o = office::office_with(None, EXT_1003);
    // 1001, the group's first member, is on a call (the echo test).
    let mut a = phone(&o.server, "1001");
    let echo_peer = RtpPeer::localhost();
    let (mut echo, _) = answered(&mut a, "600", &echo_peer.sdp_offer(OFFER));
    let mut b = phone(&o.server, "1002");
    let mut c = phone(&o.server, "1003");
    // 1003 calls sales: 1002 rings at once (were 1001 rung first, 1002
    // would ring only 15 s later).
    let rc = RtpPeer::localhost();
    let out = c
        .call_sdp("400", &[], &rc.sdp_offer(OFFER))
        .expect("INVITE");
    let b_in = b.incoming(WAIT).expect("1002 rings");
    let rb = RtpPeer::localhost();
    b.reply_sdp(&b_in.invite, &b_in.tag, 200, &rb.sdp_answer(&["PCMU"]))
        .unwrap();
    let b_media = media_of(&b_in.invite.body);
    let (ok, _) = c.final_response(WAIT).expect("the caller is answered");
    assert_eq!(ok.status, 200, "{ok:?}");
    let c_media = media_of(&ok.body);
    let mut c_dialog = c.ack(&out, &ok).expect("ACK");
    b.request("ACK", WAIT).expect("1002 gets the ACK");
    exchange(
        &rc,
        (c_media.addr, 0, 1000.0),
        &rb,
        (b_media.addr, 0, 2000.0),
    );
    assert_heard("1002", &rb, b_media.addr, 40, 1000.0);
    assert_heard("1003", &rc, c_media.addr, 40, 2000.0);
    let bye = c.request_in(&mut c_dialog, "BYE", None).expect("BYE");
    assert_eq!(bye.status, 200);
    let bye = b.request("BYE", WAIT).expect("1002 gets BYE");
    b.reply(&bye, &b_in.tag, 200).unwrap();
    let dials: Vec<String> = steps(&o.server, &out.call_id)
        .into_iter()
        .filter(|s| s.contains("call:dial("))
        .collect();
    assert!(
        dials.iter().any(|s| s.contains("\"1002\""))
            && dials.iter().all(|s| !s.contains("\"1001\"")),
        "1002 dialled, the busy 1001 not: {dials:?}"
    );
    let bye = a.request_in(&mut echo, "BYE", None).expect("BYE");
    assert_eq!(bye.status, 200);
}

/// The `Etc/GMT±N` zone (POSIX signs: `Etc/GMT+5` is UTC-5) whose local
/// time is now about 03:00, when the demo office is closed whatever the
/// day.
fn zone_at_3am() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let hour = i64::try_from((secs / 3600) % 24).expect("hour");
    // An offset in -12..=14 with (hour + offset) mod 24 == 3.
    let offset = [3 - hour, 27 - hour, -21 - hour]
        .into_iter()
        .find(|o| (-12..=14).contains(o))
        .expect("an offset");
    match offset {
        0 => "Etc/GMT".to_owned(),
        o if o > 0 => format!("Etc/GMT-{o}"),
        o => format!("Etc/GMT+{}", -o),
    }
}

/// The demo office with `[dialplan] timezone = zone` (its own RTP ports).
fn office_in(zone: &str) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let dialplans = dir.path().join("dialplans");
    std::fs::create_dir_all(&dialplans).unwrap();
    std::fs::copy(
        repo().join("dialplans/default.lua"),
        dialplans.join("default.lua"),
    )
    .expect("copy default.lua");
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

[media]
rtp_ports = "29100-29199"

[dialplan]
dir = "{}"
plugins = "{}"
sounds = "{}"
timezone = "{zone}"

[[extension]]
id = "1001"
password = "pw-1001"

[[extension]]
id = "1002"
password = "pw-1002"
"#,
        dialplans.display(),
        repo().join("plugins").display(),
        repo().join("sounds").display()
    );
    let server = Server::start_with(env!("CARGO_BIN_EXE_switchboard").as_ref(), &config)
        .expect("switchboard starts");
    (server, dir)
}

#[test]
fn after_hours_reception_answers_with_the_closed_prompt_and_night_mode_persists() {
    let zone = zone_at_3am();
    let (server, _dir) = office_in(&zone);
    let mut a = phone(&server, "1001");
    // 0 at 03:00 local time: answered, with the closed prompt, heard.
    let ra = RtpPeer::localhost();
    let out = a.call_sdp("0", &[], &ra.sdp_offer(OFFER)).expect("INVITE");
    let (ok, _) = a.final_response(WAIT).expect("reception answers");
    assert_eq!(ok.status, 200, "{ok:?} ({zone})");
    let mut dialog = a.ack(&out, &ok).expect("ACK");
    wait_for_step(&server, &out.call_id, "call:play(\"reception-closed\"");
    assert!(
        steps(&server, &out.call_id)
            .iter()
            .all(|s| !s.contains("\"reception-menu\"")),
        "the open-hours menu was not played ({zone})"
    );
    let pbx_media = media_of(&ok.body);
    ra.settle(Duration::from_millis(500), WAIT);
    let heard = ra
        .received()
        .iter()
        .filter(|p| p.from == pbx_media.addr)
        .count();
    assert!(
        heard >= 10,
        "the caller heard {heard} packets of the prompt"
    );
    let bye = a.request_in(&mut dialog, "BYE", None).expect("BYE");
    assert_eq!(bye.status, 200);

    // *28 turns night mode on, and the next *28 finds it on (kv) and
    // turns it off.
    let mut b = phone(&server, "1002");
    for (n, said) in [(1, "night-on"), (2, "night-off")] {
        let rb = RtpPeer::localhost();
        let out = b
            .call_sdp("*28", &[], &rb.sdp_offer(OFFER))
            .expect("INVITE");
        let (ok, _) = b.final_response(WAIT).expect("*28 answers");
        assert_eq!(ok.status, 200, "*28 number {n}: {ok:?}");
        b.ack(&out, &ok).expect("ACK");
        wait_for_step(&server, &out.call_id, &format!("call:play(\"{said}\")"));
        let bye = b
            .request("BYE", LOG_WAIT)
            .expect("hung up after the prompt");
        b.reply(&bye, "", 200).unwrap();
    }
}

#[test]
fn star_76_puts_an_extension_in_do_not_disturb_and_its_callers_get_voicemail() {
    let o = office::office_with(None, "");
    let mut b = phone(&o.server, "1002");
    let rb = RtpPeer::localhost();
    let out = b
        .call_sdp("*76", &[], &rb.sdp_offer(OFFER))
        .expect("INVITE");
    let (ok, _) = b.final_response(WAIT).expect("*76 answers");
    assert_eq!(ok.status, 200, "{ok:?}");
    b.ack(&out, &ok).expect("ACK");
    wait_for_step(&o.server, &out.call_id, "call:play(\"dnd-on\")");
    let bye = b
        .request("BYE", LOG_WAIT)
        .expect("hung up after the prompt");
    b.reply(&bye, "", 200).unwrap();

    // 1001 calls 1002: voicemail answers at once (1002 never rings: had
    // it rung, nothing would answer within 20 s).
    let mut a = phone(&o.server, "1001");
    let ra = RtpPeer::localhost();
    let call = a
        .call_sdp("1002", &[], &ra.sdp_offer(OFFER))
        .expect("INVITE");
    let (ok, _) = a.final_response(WAIT).expect("voicemail answers");
    assert_eq!(ok.status, 200, "{ok:?}");
    let mut dialog = a.ack(&call, &ok).expect("ACK");
    wait_for_step(&o.server, &call.call_id, "call:play(\"vm-busy\"");
    assert!(
        steps(&o.server, &call.call_id)
            .iter()
            .all(|s| !s.contains("call:dial(")),
        "1002 was not dialled"
    );
    let bye = a.request_in(&mut dialog, "BYE", None).expect("BYE");
    assert_eq!(bye.status, 200);
}

/// A plugin with both hooks, and one whose hook fails.
const PROBE: &str = r#"local M = {}
function M.on_register(ext, contact)
  log.info("probe on_register " .. ext .. " " .. contact.transport .. " " .. contact.uri .. " " .. contact.source)
end
function M.on_call_end(cdr)
  log.info("probe on_call_end " .. cdr.call_id .. " " .. cdr.disposition .. " " .. cdr.code .. " " .. tostring(cdr.caller))
end
return M
"#;

const BROKEN: &str = r#"local M = {}
function M.on_call_end(cdr)
  error("broken hook for " .. cdr.call_id)
end
return M
"#;

const HOOKED: &str = r#"local probe = require("probe")
local broken = require("broken")
function route(call)
  call:reject(486, "Busy Here")
end
"#;

#[test]
fn plugins_on_register_and_on_call_end_hooks_run_and_a_failing_one_is_logged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::write(plugins.join("probe.lua"), PROBE).unwrap();
    std::fs::write(plugins.join("broken.lua"), BROKEN).unwrap();
    let dialplans = dir.path().join("dialplans");
    std::fs::create_dir_all(&dialplans).unwrap();
    std::fs::write(dialplans.join("default.lua"), HOOKED).unwrap();
    let config = format!(
        "[sip]\nlisten = [\"udp:127.0.0.1:0\"]\ndomain = \"{DOMAIN}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[storage]\nbackend = \"memory\"\n\n[registrar]\nqualify_interval = \"0s\"\n\n[dialplan]\ndir = \"{}\"\nplugins = \"{}\"\n\n[[extension]]\nid = \"1001\"\npassword = \"pw-1001\"\n",
        dialplans.display(),
        plugins.display()
    );
    let server = Server::start_with(env!("CARGO_BIN_EXE_switchboard").as_ref(), &config)
        .expect("switchboard starts");
    let mut a = phone(&server, "1001");
    let line = wait_for_log(&server, "probe on_register 1001 udp sip:1001@");
    assert!(line.contains("plugins/probe.lua:3"), "{line}");
    let call = a.call("5555").expect("INVITE");
    let (r, _) = a.final_response(WAIT).expect("an answer");
    assert_eq!(r.status, 486);
    let line = wait_for_log(&server, &format!("probe on_call_end {}", call.call_id));
    assert!(line.contains("busy 486 1001"), "{line}");
    let line = wait_for_log(&server, &format!("broken hook for {}", call.call_id));
    assert!(line.contains("plugins/broken.lua:3"), "{line}");
    // A refresh of the same contact is no new registration: after it, a
    // call's end is reported, and still one on_register.
    assert_eq!(a.register(), 200);
    let call = a.call("5556").expect("INVITE");
    assert_eq!(a.final_response(WAIT).expect("an answer").0.status, 486);
    wait_for_log(&server, &format!("probe on_call_end {}", call.call_id));
    let registered = server
        .log()
        .lines()
        .filter(|l| l.contains("probe on_register"))
        .count();
    assert_eq!(registered, 1, "{}", server.log());
}

/// A context of the test's own with a group per strategy, and its spec.
const GROUPS: &str = r#"local ringgroup = require("ringgroup")
ringgroup.define("all", { members = { "1001", "1002", "1003" }, strategy = "ringall", ring = 10 })
ringgroup.define("memory", { members = { "1001", "1002", "1003" }, strategy = "memoryhunt", ring = 5 })
ringgroup.define("random", { members = { "1001", "1002", "1003" }, strategy = "random", ring = 5 })
ringgroup.define("first", { members = { "1001" }, ring = 5, final = "group:then" })
ringgroup.define("then", { members = { "1002" }, ring = 5, final = "1003" })
function route(call)
  ringgroup.ring(call, call.request_uri.user)
end
"#;

const GROUPS_SPEC: &str = r#"before_each(function()
  for _, id in ipairs({ "1001", "1002", "1003", "1004" }) do
    sim.extension(id)
  end
end)

local function dials(call)
  local out = {}
  for _, a in ipairs(call:actions()) do
    if a.action == "dial" then
      out[#out + 1] = table.concat(a.targets, "+")
    end
  end
  return table.concat(out, " ")
end

it("ringall rings every member at once", function()
  local call = sim.call({ from = "1004", to = "all" })
  expect(dials(call)):equals("1001+1002+1003")
end)

it("ringall leaves out a busy member", function()
  sim.phone("1002"):is_busy()
  local call = sim.call({ from = "1004", to = "all" })
  expect(dials(call)):equals("1001+1003")
end)

it("memoryhunt rings a growing set", function()
  for _, id in ipairs({ "1001", "1002", "1003" }) do
    sim.phone(id):never_answers()
  end
  local call = sim.call({ from = "1004", to = "memory" })
  expect(dials(call)):equals("1001 1001+1002 1001+1002+1003")
end)

it("random rings each member once, one at a time", function()
  for _, id in ipairs({ "1001", "1002", "1003" }) do
    sim.phone(id):never_answers()
  end
  local call = sim.call({ from = "1004", to = "random" })
  local seen = {}
  for d in dials(call):gmatch("%S+") do
    seen[#seen + 1] = d
  end
  table.sort(seen)
  expect(table.concat(seen, " ")):equals("1001 1002 1003")
end)

it("a final destination can be another group, and then an extension", function()
  sim.phone("1001"):never_answers()
  sim.phone("1002"):is_busy()
  local call = sim.call({ from = "1004", to = "first" })
  expect(dials(call)):equals("1001 1003")
end)
"#;

/// Nested menus, "back" and a fail function (ivr); hours past midnight,
/// day lists and holidays (timeconditions).
const MENUS: &str = r#"local ivr = require("ivr")
local tc = require("timeconditions")
local LATE = tc.hours("late", { "mon-fri 22:00-06:00", "sat,sun 10:00-12:00", except = { "2026-12-09" } })
function route(call)
  if call.request_uri.user == "hours" then
    call:reject(tc.is_open(LATE) and 486 or 480)
    return
  end
  ivr.menu(call, {
    prompt = "hello",
    options = {
      ["1"] = function(c) c:dial("1001") end,
      ["2"] = { prompt = "echo", options = { ["1"] = "1002", ["*"] = "back" } },
    },
    go = function(c, number) c:dial(number) end,
    retries = 2,
    fail = function(c) c:dial("1003") end,
  })
end
"#;

const MENUS_SPEC: &str = r#"before_each(function()
  for _, id in ipairs({ "1001", "1002", "1003", "1004" }) do
    sim.extension(id)
  end
end)

local function menu(keys)
  local call = sim.call({ from = "1004", to = "menu", context = "menus" })
  call:sends_digits(keys)
  return call
end

it("a nested menu's choice", function()
  local call = menu("21")
  expect(call):played("echo")
  expect(call):dialled("1002")
  expect(call):not_dialled("1001")
end)

it("back from a nested menu to the one above", function()
  local call = menu("2*1")
  expect(call):played("echo")
  expect(call):dialled("1001")
end)

it("no choice within the retries runs the fail function", function()
  local call = menu("")
  expect(call):played("no-input")
  expect(call):dialled("1003")
end)

local function hours(at)
  sim.clock:set(at)
  return sim.call({ from = "1004", to = "hours", context = "menus" })
end

it("a range past midnight counts for the evening and the early hours after", function()
  expect(hours("2026-12-08 23:00")):rejected(486) -- Tuesday night
  expect(hours("2026-12-12 05:00")):rejected(486) -- Saturday, early: Friday's night
  expect(hours("2026-12-07 05:00")):rejected(480) -- Monday, early: Sunday had no night
  expect(hours("2026-12-08 12:00")):rejected(480) -- Tuesday noon
end)

it("a day list and a holiday", function()
  expect(hours("2026-12-13 11:00")):rejected(486) -- Sunday
  expect(hours("2026-12-09 23:00")):rejected(480) -- Wednesday, a holiday
end)
"#;

#[test]
fn every_ring_group_strategy_ivr_nesting_and_time_ranges_pass_their_specs() {
    let w = binary::Workdir::empty();
    w.write("dialplans/default.lua", GROUPS);
    w.write("dialplans/menus.lua", MENUS);
    w.write("dialplans/tests/groups_spec.lua", GROUPS_SPEC);
    w.write("dialplans/tests/menus_spec.lua", MENUS_SPEC);
    let plugins = repo().join("plugins");
    let config = w.write(
        "switchboard.toml",
        &format!(
            "[dialplan]\ndir = {:?}\nplugins = {:?}\nsounds = {:?}\n",
            w.path().join("dialplans"),
            plugins,
            repo().join("sounds")
        ),
    );
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command
        .arg("test")
        .arg("--config")
        .arg(&config)
        .current_dir(w.path())
        .env_remove("RUST_LOG");
    let out = binary::finish(command);
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.lines().last() == Some("10 passed, 0 failed"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_bad_office_hours_table_is_an_error_with_the_dialplans_line() {
    let w = binary::Workdir::empty();
    w.write(
        "dialplans/default.lua",
        "local tc = require(\"timeconditions\")\nlocal H = tc.hours(\"office\", { \"mon-fri 9-17\" })\nfunction route(call) end\n",
    );
    let config = w.write(
        "switchboard.toml",
        &format!(
            "[dialplan]\ndir = {:?}\nplugins = {:?}\n",
            w.path().join("dialplans"),
            repo().join("plugins")
        ),
    );
    let out = w.run(&["check", "--config", config.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("dialplans/default.lua:2: timeconditions.hours: entry 1"),
        "{}",
        out.stderr
    );
}

/// Follow-me from 1001 (not registered: its desk phone is passed at once)
/// to 1002, which must press 1 (`confirm = "all"`: an extension stands in
/// for an outside number here).
const FOLLOW: &str = r#"{ numbers = { "1002" }, ring = 10, confirm = "all", confirm_timeout = 2 }"#;

/// A dialplan whose route is 1001's follow-me, defined by `spec` (a Lua
/// table), rejecting with 480 when nobody takes the call.
fn follow(spec: &str) -> String {
    format!(
        r#"local followme = require("followme")
followme.define("1001", {spec})
function route(call)
  local r = followme.dial(call, call.request_uri.user)
  if r.status ~= "answered" and r.status ~= "cancelled" and call.state ~= "ended" then
    call:reject(480)
  end
end
"#
    )
}

/// 1003 calls 1001; 1002 answers the follow-me and hears the prompt.
fn follow_me_answered(
    o: &office::Office,
) -> (
    Phone,
    RtpPeer,
    testkit::OutCall,
    Phone,
    testkit::InCall,
    RtpPeer,
    testkit::RemoteMedia,
) {
    let mut b = phone(&o.server, "1002");
    let mut c = phone(&o.server, "1003");
    let rc = RtpPeer::localhost();
    let out = c
        .call_sdp("1001", &[], &rc.sdp_offer(OFFER))
        .expect("INVITE");
    let b_in = b.incoming(WAIT).expect("1002 rings");
    let b_media = media_of(&b_in.invite.body);
    let rb = RtpPeer::localhost();
    b.reply_sdp(
        &b_in.invite,
        &b_in.tag,
        200,
        &rb.sdp_answer(&["PCMU", "telephone-event"]),
    )
    .unwrap();
    b.request("ACK", WAIT).expect("1002 gets the ACK");
    // The prompt, from the PBX, before anyone is put through.
    assert!(rb.wait_for(25, WAIT), "1002 hears the prompt");
    assert!(rb.received().iter().all(|p| p.from == b_media.addr));
    (c, rc, out, b, b_in, rb, b_media)
}

#[test]
fn follow_me_puts_the_caller_through_once_the_answering_party_presses_1() {
    let o = office::office_with(Some(&follow(FOLLOW)), EXT_1003);
    let (mut c, rc, out, mut b, b_in, rb, b_media) = follow_me_answered(&o);
    press_1_then_talk(
        &o,
        (&mut c, &rc, &out),
        ("1002", &mut b, &b_in, &rb, &b_media),
        None,
        false,
    );
}

/// `who` (its phone, its call, its RTP peer, the PBX's media towards it),
/// asked to confirm, presses 1: the caller `c` is put through, `released`
/// (another party being asked) gets BYE, `who` and the caller hear each
/// other, and the caller hangs up.
fn press_1_then_talk(
    o: &office::Office,
    (c, rc, out): (&mut Phone, &RtpPeer, &testkit::OutCall),
    (who, p, p_in, rp, p_media): (
        &str,
        &mut Phone,
        &testkit::InCall,
        &RtpPeer,
        &testkit::RemoteMedia,
    ),
    released: Option<(&mut Phone, &testkit::InCall)>,
    in_info: bool,
) {
    if in_info {
        // The key in SIP INFO (application/dtmf-relay), as some desk
        // phones send it.
        let mut dialog = p.dialog_of(p_in);
        let info = p
            .request_in_with(
                &mut dialog,
                "INFO",
                Some(("application/dtmf-relay", "Signal=1\r\nDuration=160\r\n")),
            )
            .expect("INFO answered");
        assert_eq!(info.status, 200);
    } else {
        let pt = p_media.telephone_event.expect("telephone-event offered");
        rp.send_digits(
            p_media.addr,
            pt,
            "1",
            Duration::from_millis(100),
            Duration::from_millis(60),
        )
        .expect("send 1");
    }
    let (ok, _) = c.final_response(WAIT).expect("the caller is put through");
    assert_eq!(ok.status, 200, "{ok:?}");
    let c_media = media_of(&ok.body);
    let mut c_dialog = c.ack(out, &ok).expect("ACK");
    if let Some((other, other_in)) = released {
        let bye = other
            .request("BYE", WAIT)
            .expect("the other party asked gets BYE");
        other.reply(&bye, &other_in.tag, 200).unwrap();
    }
    rp.clear();
    exchange(rc, (c_media.addr, 0, 1000.0), rp, (p_media.addr, 0, 2000.0));
    assert_heard(who, rp, p_media.addr, 40, 1000.0);
    assert_heard("the caller", rc, c_media.addr, 40, 2000.0);
    wait_for_step(&o.server, &out.call_id, &format!("{who} confirmed"));
    let bye = c.request_in(&mut c_dialog, "BYE", None).expect("BYE");
    assert_eq!(bye.status, 200);
    let bye = p.request("BYE", WAIT).expect("the party gets BYE");
    p.reply(&bye, &p_in.tag, 200).unwrap();
}

#[test]
fn follow_me_hangs_up_on_a_party_that_does_not_press_1() {
    let o = office::office_with(Some(&follow(FOLLOW)), EXT_1003);
    let (mut c, _rc, out, mut b, b_in, _rb, _) = follow_me_answered(&o);
    // Nothing pressed: after the prompt and 2 s, 1002 gets BYE and the
    // caller, nobody else to ring, 480.
    let bye = b.request("BYE", LOG_WAIT + WAIT).expect("1002 gets BYE");
    b.reply(&bye, &b_in.tag, 200).unwrap();
    let (r, _) = c.final_response(WAIT).expect("the caller's answer");
    assert_eq!(r.status, 480, "{r:?}");
    wait_for_step(&o.server, &out.call_id, "1002 did not confirm");
}

#[test]
fn a_caller_leaving_while_the_party_confirms_hangs_up_on_it() {
    let o = office::office_with(Some(&follow(FOLLOW)), EXT_1003);
    let (mut c, _rc, out, mut b, b_in, _rb, _) = follow_me_answered(&o);
    c.cancel(&out).expect("CANCEL");
    // 200 for the CANCEL, 487 for the INVITE.
    let mut statuses = Vec::new();
    while statuses.len() < 2 {
        statuses.push(c.response(WAIT).expect("a response").status);
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 487]);
    // Before the confirmation's own 2 s could end it.
    let bye = b.request("BYE", WAIT).expect("1002 gets BYE");
    b.reply(&bye, &b_in.tag, 200).unwrap();
}

/// Follow-me from 1001 (not registered) to 1002 and 1004 ringing
/// together, each of which must press 1.
const FOLLOW_TOGETHER: &str = r#"{ numbers = { "1002", "1004" }, together = true, ring = 10, confirm = "all", confirm_timeout = 5 }"#;

#[test]
fn two_parties_answering_a_follow_me_are_both_asked_and_the_first_to_press_1_wins() {
    let extra = format!("{EXT_1003}\n[[extension]]\nid = \"1004\"\npassword = \"pw-1004\"\n");
    let o = office::office_with(Some(&follow(FOLLOW_TOGETHER)), &extra);
    let mut b = phone(&o.server, "1002");
    let mut d = phone(&o.server, "1004");
    let mut c = phone(&o.server, "1003");
    let rc = RtpPeer::localhost();
    let out = c
        .call_sdp("1001", &[], &rc.sdp_offer(OFFER))
        .expect("INVITE");
    let b_in = b.incoming(WAIT).expect("1002 rings");
    let d_in = d.incoming(WAIT).expect("1004 rings");
    let (b_media, d_media) = (media_of(&b_in.invite.body), media_of(&d_in.invite.body));
    assert_ne!(b_media.addr, d_media.addr, "each target has its own media");
    // Both answer, one after the other: each hears the prompt on its own
    // media.
    let (rb, rd) = (RtpPeer::localhost(), RtpPeer::localhost());
    for (p, inc, r) in [(&mut b, &b_in, &rb), (&mut d, &d_in, &rd)] {
        p.reply_sdp(
            &inc.invite,
            &inc.tag,
            200,
            &r.sdp_answer(&["PCMU", "telephone-event"]),
        )
        .unwrap();
        p.request("ACK", WAIT).expect("the PBX ACKs the answer");
    }
    assert!(rb.wait_for(25, WAIT), "1002 hears the prompt");
    assert!(rd.wait_for(25, WAIT), "1004 hears the prompt too");
    assert!(rb.received().iter().all(|p| p.from == b_media.addr));
    assert!(rd.received().iter().all(|p| p.from == d_media.addr));
    // 1004 presses 1 first: put through; 1002, still being asked, gets BYE.
    press_1_then_talk(
        &o,
        (&mut c, &rc, &out),
        ("1004", &mut d, &d_in, &rd, &d_media),
        Some((&mut b, &b_in)),
        false,
    );
}

/// As [`FOLLOW`], with a confirmation that waits 30 s for the key.
const FOLLOW_PATIENT: &str =
    r#"{ numbers = { "1002" }, ring = 10, confirm = "all", confirm_timeout = 30 }"#;

#[test]
fn a_party_being_asked_to_confirm_serves_its_own_dialog() {
    let o = office::office_with(Some(&follow(FOLLOW_PATIENT)), EXT_1003);
    let (mut c, _rc, _out, mut b, b_in, rb, _b_media) = follow_me_answered(&o);
    let mut b_dialog = b.dialog_of(&b_in);
    // A re-INVITE while it hears the prompt (a carrier's session refresh,
    // a codec change) is answered by its own media, not refused.
    let ok = b
        .request_in(&mut b_dialog, "INVITE", Some(&rb.sdp_offer(OFFER)))
        .expect("re-INVITE answered");
    assert_eq!(ok.status, 200, "{ok:?}");
    assert!(!ok.body.is_empty(), "an SDP answer");
    b.ack_in(&b_dialog).unwrap();
    // It hangs up instead of pressing 1: the question ends at once (not
    // after the prompt and 30 s), and the caller, nobody else to ring,
    // gets 480.
    let bye = b
        .request_in(&mut b_dialog, "BYE", None)
        .expect("BYE answered");
    assert_eq!(bye.status, 200);
    let (r, _) = c.final_response(WAIT).expect("the caller's answer");
    assert_eq!(r.status, 480, "{r:?}");
}

#[test]
fn a_party_may_confirm_with_a_key_sent_in_sip_info() {
    let o = office::office_with(Some(&follow(FOLLOW_PATIENT)), EXT_1003);
    let (mut c, rc, out, mut b, b_in, rb, b_media) = follow_me_answered(&o);
    press_1_then_talk(
        &o,
        (&mut c, &rc, &out),
        ("1002", &mut b, &b_in, &rb, &b_media),
        None,
        true,
    );
}
