//! The spec runner's simulator through `SpecRunner`: how simulated phones,
//! the caller, the virtual clock and `kv` behave, as specs see them.

use std::path::PathBuf;

use dialplan::{ExtensionInfo, Limits, Report, SpecRunner, SpecSettings};

const CONTEXT: &str = r##"
function route(call)
  local dest = call.request_uri.user
  if dest == "fork" then
    local r = call:dial({"1001", "1002", "1003"}, {timeout = 30, caller_id = "Front desk"})
    kv.set("t", "status", r.status .. " " .. r.code)
    kv.set("t", "by", tostring(r.answered_by))
  elseif dest == "ttl" then
    kv.set("t", "k", "v", 60)
  elseif dest == "vm" then
    call:answer()
    local r = call:record("vm/msg", {max = 30})
    kv.set("t", "record", r.reason .. " " .. math.floor(r.duration))
  elseif dest == "digits" then
    call:answer()
    kv.set("t", "a", call:read_digits({max = 2, timeout = 3}))
    kv.set("t", "b", call:read_digits({max = 5, timeout = 3}))
    kv.set("t", "time", tostring(os.time()))
  elseif dest == "header" then
    call:reject(400 + #(call:header("X-Test") or ""), call.caller or "anonymous")
  elseif dest == "contacts" then
    call:reject(#registrar.contacts("1001") == 1 and #registrar.contacts("1002") == 0 and 410 or 500)
  elseif dest == "redirect" then
    call:redirect("sip:somewhere@example.com")
  elseif call.trunk then
    local id = call.identity
    if id and id.verified then
      call:dial("1001", {attest = id.attest})
    else
      call:reject(id and 438 or 428, id and id.reason or "no check")
    end
  else
    call:sleep(5)
    call:dial(dest)
  end
end
"##;

async fn run(spec: &str) -> (Report, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("dialplans")).expect("mkdir");
    std::fs::write(dir.path().join("dialplans/default.lua"), CONTEXT).expect("write");
    let file: PathBuf = dir.path().join("x_spec.lua");
    std::fs::write(&file, spec).expect("write spec");
    let runner = SpecRunner::new(SpecSettings {
        dialplans: dir.path().join("dialplans"),
        plugins: dir.path().join("plugins"),
        sounds: None,
        limits: Limits::default(),
        extensions: ["1001", "1002", "1003"]
            .iter()
            .map(|id| ExtensionInfo {
                id: (*id).to_owned(),
                name: None,
                context: "default".into(),
                ..Default::default()
            })
            .collect(),
    })
    .expect("runner");
    let mut out = Vec::new();
    let report = runner.run(&[file], None, &mut out).await.expect("run");
    (report, String::from_utf8_lossy(&out).into_owned())
}

async fn all_pass(spec: &str) {
    let (report, out) = run(spec).await;
    assert!(report.failed() == 0 && report.passed() > 0, "{out}");
}

#[tokio::test]
async fn a_fork_goes_to_the_first_phone_to_answer() {
    all_pass(
        r##"
it("earliest answer wins", function()
  sim.phone("1001"):is_busy()
  sim.phone("1002"):answers_after(10)
  sim.phone("1003"):answers_after(4)
  local call = sim.call{from = "1001", to = "fork"}
  expect(call):dialled("1002", {timeout = 30, caller_id = "Front desk"})
  expect(call):ended_with("answered")
  expect(sim.kv.get("t", "status")):equals("answered 200")
  expect(sim.kv.get("t", "by")):equals("1003")
end)
it("busy only when no phone rings", function()
  sim.phone("1001"):is_busy()
  sim.phone("1002"):is_unregistered()
  sim.phone("1003"):is_unregistered()
  sim.call{from = "1001", to = "fork"}:run()
  expect(sim.kv.get("t", "status")):equals("busy 486")
  expect(sim.kv.get("t", "by")):equals("nil")
end)
it("no answer after the timeout when one rings", function()
  sim.phone("1001"):is_busy()
  sim.phone("1002"):never_answers()
  sim.phone("1003"):answers_after(31)
  local before = sim.clock:now()
  sim.call{from = "1001", to = "fork"}:run()
  expect(sim.kv.get("t", "status")):equals("noanswer 408")
  expect(sim.clock:now() - before):equals(30)
end)
it("the caller hanging up while it rings cancels", function()
  sim.phone("1002"):never_answers()
  local call = sim.call{from = "1001", to = "1002"}:hangs_up_after(8)
  expect(call):ended_with("cancelled")
end)
"##,
    )
    .await;
}

#[tokio::test]
async fn digits_recording_clock_and_kv_expiry() {
    all_pass(
        r##"
it("digits are read as typed, timeouts advance the clock", function()
  sim.clock:set("2026-01-01 12:00")
  local start = sim.clock:now()
  local call = sim.call{from = "1001", to = "digits"}:sends_digits("123#")
  call:run()
  expect(sim.kv.get("t", "a")):equals("12")
  expect(sim.kv.get("t", "b")):equals("3")
  expect(sim.kv.get("t", "time")):equals(tostring(start))
end)
it("a read that gets nothing waits its timeout", function()
  local start = sim.clock:now()
  sim.call{from = "1001", to = "digits"}:run()
  expect(sim.kv.get("t", "a")):equals("")
  expect(sim.clock:now() - start):equals(6)
end)
it("recordings stop at max, the terminator or the caller's hangup", function()
  sim.call{from = "1001", to = "vm"}:run()
  expect(sim.kv.get("t", "record")):equals("max 30")
  sim.call{from = "1001", to = "vm"}:sends_digits("#"):run()
  expect(sim.kv.get("t", "record")):equals("terminator 0")
  local call = sim.call{from = "1001", to = "vm"}:hangs_up_after(12)
  expect(call):ended_with("caller_gone")
end)
it("kv entries expire on the virtual clock", function()
  sim.call{from = "1001", to = "ttl"}:run()
  expect(sim.kv.get("t", "k")):equals("v")
  sim.clock:advance(61)
  expect(sim.kv.get("t", "k")):is_nil()
end)
it("each case starts with an empty kv", function()
  expect(sim.kv.get("t", "k")):is_nil()
end)
"##,
    )
    .await;
}

#[tokio::test]
async fn caller_headers_registrations_and_redirects() {
    all_pass(
        r##"
it("headers and the caller reach the route", function()
  local call = sim.call{from = "1001", to = "header", headers = {["X-Test"] = "abc"}}
  expect(call):rejected(403)
  local r = call:result()
  expect(r.actions[1].reason):equals("1001")
  local anonymous = sim.call{from = "1001", to = "header", caller = false}
  expect(anonymous:actions()[1].reason):equals("anonymous")
end)
it("registrar.contacts follows the scripted phones", function()
  sim.phone("1002"):is_unregistered()
  expect(sim.call{from = "1001", to = "contacts"}):rejected(410)
end)
it("redirects", function()
  expect(sim.call{from = "1001", to = "redirect"}):redirected("sip:somewhere@example.com")
end)
it("a route that returns without answering gives 404", function()
  sim.phone("1002"):is_unregistered()
  local call = sim.call{from = "1001", to = "1002"}
  expect(call):rejected(404)
  expect(call):ended_with("unavailable")
  expect(call):ended_with("not_answered")
end)
"##,
    )
    .await;
}

#[tokio::test]
async fn failing_expectations_are_reported_with_the_spec_line() {
    let (report, out) = run(r##"it("wrong", function()
  local call = sim.call{from = "1001", to = "1002"}
  expect(call):played("hello")
end)
it("spec error", function()
  sim.call{from = "1001"}
end)
"##)
    .await;
    assert_eq!(report.failed(), 2, "{out}");
    assert!(out.contains("x_spec.lua:3: expected hello.wav to be played; the route did: sleep, dial 1002 -> answered 200"), "{out}");
    assert!(
        out.contains("x_spec.lua:6: sim.call: `to` (the number dialled) is required"),
        "{out}"
    );
    assert!(out.ends_with("0 passed, 2 failed\n"), "{out}");
}

#[tokio::test]
async fn a_trunk_calls_identity_is_what_the_spec_gives_and_dial_takes_attest() {
    all_pass(
        r##"
it("a verified call rings 1001 with its attestation", function()
  local call = sim.call{to = "+15557654321", trunk = "carrier", identity = {verified = true, attest = "B"}}
  expect(call):dialled("1001", {attest = "B"})
end)
it("an unverified one is refused with the reason", function()
  local call = sim.call{to = "+15557654321", trunk = "carrier",
    identity = {verified = false, attest = "A", reason = "438 Invalid Identity Header: orig"}}
  expect(call):rejected(438)
  expect(call:result().actions[1].reason):equals("438 Invalid Identity Header: orig")
end)
it("without identity there is no call.identity", function()
  expect(sim.call{to = "+15557654321", trunk = "carrier"}):rejected(428)
end)
"##,
    )
    .await;
}

#[tokio::test]
async fn a_bad_identity_or_attest_is_named() {
    let (report, out) = run(r##"
it("bad attest", function()
  sim.call{to = "+15557654321", trunk = "carrier", identity = {verified = true, attest = "D"}}:run()
end)
"##)
    .await;
    assert_eq!(report.failed(), 1, "{out}");
    assert!(
        out.contains(r#"sim.call: identity.attest must be "A", "B" or "C", got string"#),
        "{out}"
    );
}
