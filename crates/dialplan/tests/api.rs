//! The rest of the Lua API: `call:redirect`, `call:header`, `call:on_hangup`
//! and the `kv`, `registrar` and `pbx` modules over a host, error paths
//! included.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Dir, FakeCall, call_to};
use dialplan::{
    Contact, ExtensionInfo, FailureKind, Host, HostError, LuaFailure, MemoryHost, RouteOutcome,
    Runtime,
};

/// A runtime over `dialplans/default.lua` = `lua`, with a memory host the
/// test can look into.
fn office(lua: &str) -> (Dir, Runtime, Arc<MemoryHost>) {
    let dir = Dir::new();
    dir.write("dialplans/default.lua", lua);
    let host = Arc::new(MemoryHost::new());
    let runtime = dir.runtime().with_host(host.clone());
    (dir, runtime, host)
}

async fn route(runtime: &Runtime, api: &Arc<FakeCall>, to: &str) -> RouteOutcome {
    let state = runtime.call_state().expect("call state");
    state.run_route(Arc::clone(api), call_to(to)).await
}

fn failure(outcome: RouteOutcome) -> LuaFailure {
    match outcome {
        RouteOutcome::Failed { failure, .. } => failure,
        other => panic!("expected a Lua failure, got {other:?}"),
    }
}

fn text(host: &MemoryHost, ns: &str, key: &str) -> Option<String> {
    host.get(ns, key)
        .map(|v| String::from_utf8(v).expect("UTF-8 value"))
}

#[tokio::test]
async fn redirect_sends_the_uri_and_ends_the_call() {
    let (_dir, runtime, _) = office(
        "function route(call)\n  call:redirect(\"sip:1002@elsewhere.test;transport=tcp\")\nend\n",
    );
    let api = Arc::new(FakeCall::default());
    assert_eq!(
        route(&runtime, &api, "1002").await,
        RouteOutcome::Redirected {
            uri: "sip:1002@elsewhere.test;transport=tcp".into()
        }
    );
    assert_eq!(
        api.actions(),
        ["redirect sip:1002@elsewhere.test;transport=tcp"]
    );

    let (_dir, runtime, _) =
        office("function route(call)\n  call:redirect(\"tel:+15551234\")\n  call:ring()\nend\n");
    let api = Arc::new(FakeCall::default());
    let f = failure(route(&runtime, &api, "1002").await);
    assert_eq!((f.message.as_str(), f.line), ("call has ended", Some(3)));
    assert_eq!(api.actions(), ["redirect tel:+15551234"]);
}

#[tokio::test]
async fn redirect_refuses_what_is_not_a_uri() {
    for (arg, want) in [
        (
            "42",
            "redirect: expected a sip:, sips: or tel: URI string, got number",
        ),
        (
            "\"http://example.com\"",
            "redirect: expected a sip:, sips: or tel: URI string, got \"http://example.com\"",
        ),
        (
            "\"sip:a@b\\r\\nX-Evil: 1\"",
            "redirect: the URI must be at most 2048 bytes, without spaces, control characters, quotes or angle brackets",
        ),
    ] {
        let (_dir, runtime, _) = office(&format!(
            "function route(call)\n  call:redirect({arg})\nend\n"
        ));
        let api = Arc::new(FakeCall::default());
        let f = failure(route(&runtime, &api, "1").await);
        assert_eq!(f.message, want, "{arg}");
        assert_eq!(f.line, Some(2));
        assert!(api.actions().is_empty(), "{arg}");
    }
}

#[tokio::test]
async fn header_finds_the_first_value_case_insensitively() {
    let (_dir, runtime, _) = office(
        r#"
function route(call)
  call:reject(404, table.concat({
    call:header("x-ACCOUNT"), call:header("user-agent"), tostring(call:header("X-None")),
  }, "|"))
end
"#,
    );
    let api = Arc::new(FakeCall::default());
    route(&runtime, &api, "1").await;
    assert_eq!(api.actions(), ["reject 404 first|Test Phone 1.0|nil"]);

    let (_dir, runtime, _) = office("function route(call)\n  call:header(5)\nend\n");
    let f = failure(route(&runtime, &api, "1").await);
    assert_eq!(
        f.message,
        "header: expected a header name string, got number"
    );
}

#[tokio::test]
async fn on_hangup_handlers_run_after_route_in_order_and_survive_errors() {
    let (_dir, runtime, host) = office(
        r#"
function route(call)
  call:on_hangup(function(c, outcome)
    kv.set("t", "first", c.id .. " " .. outcome)
  end)
  call:on_hangup(function(c)
    local cfg = nil
    return cfg.missing
  end)
  call:on_hangup(function(c)
    local ok, err = pcall(c.answer, c)
    kv.set("t", "third", tostring(ok) .. " " .. tostring(err))
  end)
  call:reject(486)
end
"#,
    );
    let api = Arc::new(FakeCall::default());
    assert_eq!(
        route(&runtime, &api, "1002").await,
        RouteOutcome::Rejected { code: 486 }
    );
    assert_eq!(
        text(&host, "t", "first").as_deref(),
        Some("call-to-1002 rejected")
    );
    let third = text(&host, "t", "third").expect("third handler ran");
    assert!(
        third.starts_with("false ") && third.contains("call has ended"),
        "{third}"
    );
    assert_eq!(api.actions(), ["reject 486"], "no action from a handler");
}

#[tokio::test]
async fn on_hangup_runs_after_a_failed_route_and_when_the_caller_left() {
    let (_dir, runtime, host) = office(
        r#"
function route(call)
  local user = call.to.user
  call:on_hangup(function(c, outcome) kv.set("t", user, outcome) end)
  if call.to.user == "1" then
    error("boom")
  elseif call.to.user == "2" then
    call:ring()
  else
    while true do end
  end
end
"#,
    );
    let api = Arc::new(FakeCall::default());
    assert!(matches!(
        route(&runtime, &api, "1").await,
        RouteOutcome::Failed { .. }
    ));
    assert_eq!(text(&host, "t", "1").as_deref(), Some("failed"));

    let api = Arc::new(FakeCall {
        gone_on: Some("ring"),
        ..FakeCall::default()
    });
    assert_eq!(route(&runtime, &api, "2").await, RouteOutcome::CallerGone);
    assert_eq!(text(&host, "t", "2").as_deref(), Some("caller_gone"));

    // The route blew its budget; the handler gets a fresh one.
    let api = Arc::new(FakeCall::default());
    let f = failure(route(&runtime, &api, "3").await);
    assert_eq!(f.kind, FailureKind::InstructionBudget);
    assert_eq!(text(&host, "t", "3").as_deref(), Some("failed"));
}

#[tokio::test]
async fn endless_on_hangup_handler_is_stopped_and_the_next_runs() {
    let dir = Dir::new();
    dir.write(
        "dialplans/default.lua",
        r#"
function route(call)
  call:on_hangup(function() while true do end end)
  call:on_hangup(function() kv.set("t", "after", "yes") end)
  call:answer()
end
"#,
    );
    let host = Arc::new(MemoryHost::new());
    let runtime = dir
        .runtime_with(dialplan::Limits {
            memory_bytes: 8 * 1024 * 1024,
            instructions: 100_000,
            ..dialplan::Limits::default()
        })
        .with_host(host.clone());
    let api = Arc::new(FakeCall::default());
    assert_eq!(route(&runtime, &api, "1").await, RouteOutcome::Answered);
    assert_eq!(text(&host, "t", "after").as_deref(), Some("yes"));
}

#[tokio::test]
async fn on_hangup_wants_a_function() {
    let (_dir, runtime, _) = office("function route(call)\n  call:on_hangup(\"later\")\nend\n");
    let api = Arc::new(FakeCall::default());
    let f = failure(route(&runtime, &api, "1").await);
    assert_eq!(f.message, "on_hangup: expected a function, got string");
    assert_eq!(f.line, Some(2));
}

#[tokio::test]
async fn kv_sets_gets_and_deletes_across_calls() {
    let (_dir, runtime, host) = office(
        r#"
function route(call)
  local dest = call.to.user
  if dest == "set" then
    kv.set("fwd", "1001", "1002")
    kv.set("other", "1001", "x")
    call:reject(404, tostring(kv.get("fwd", "1001")))
  elseif dest == "get" then
    call:reject(404, tostring(kv.get("fwd", "1001")) .. " " .. tostring(kv.get("fwd", "nope")))
  elseif dest == "delete" then
    call:reject(404, tostring(kv.delete("fwd", "1001")) .. " " .. tostring(kv.delete("fwd", "1001"))
      .. " " .. tostring(kv.get("fwd", "1001")) .. " " .. kv.get("other", "1001"))
  elseif dest == "ttl" then
    kv.set("tmp", "k", "v", 0.05)
    local before = kv.get("tmp", "k")
    call:sleep(0.1)
    call:reject(404, tostring(before) .. " " .. tostring(kv.get("tmp", "k")))
  end
end
"#,
    );
    let api = Arc::new(FakeCall::default());
    route(&runtime, &api, "set").await;
    route(&runtime, &api, "get").await;
    route(&runtime, &api, "delete").await;
    route(&runtime, &api, "ttl").await;
    assert_eq!(
        api.actions(),
        [
            "reject 404 1002",
            "reject 404 1002 nil",
            "reject 404 true false nil x",
            "sleep 100ms",
            "reject 404 v nil",
        ]
    );
    assert_eq!(text(&host, "other", "1001").as_deref(), Some("x"));
}

#[tokio::test]
async fn kv_arguments_are_checked() {
    let big = "x".repeat(dialplan::MAX_KV_VALUE + 1);
    for (call, want) in [
        (
            "kv.get(1, \"k\")".to_owned(),
            "kv.get: expected namespace as a string, got number".to_owned(),
        ),
        (
            "kv.get(\"ns\")".to_owned(),
            "kv.get: expected key as a string, got nil".to_owned(),
        ),
        (
            "kv.set(\"ns\", \"k\", {})".to_owned(),
            "kv.set: expected value as a string, got table".to_owned(),
        ),
        (
            "kv.set(\"ns\", \"k\", \"v\", -1)".to_owned(),
            "kv.set: ttl must be more than 0 and at most 315360000 seconds, got -1".to_owned(),
        ),
        (
            "kv.set(\"ns\", \"k\", \"v\", \"soon\")".to_owned(),
            "kv.set: expected ttl in seconds or nil, got string".to_owned(),
        ),
        (
            "kv.delete(\"\", \"k\")".to_owned(),
            "kv.delete: namespace must be 1 to 128 bytes long, got 0".to_owned(),
        ),
        (
            format!("kv.set(\"ns\", \"k\", \"{big}\")"),
            format!(
                "kv.set: value must be at most 65536 bytes, got {}",
                big.len()
            ),
        ),
        (
            format!(
                "kv.get(\"ns\", string.rep(\"k\", {}))",
                dialplan::MAX_KV_KEY + 1
            ),
            "kv.get: key must be 1 to 1024 bytes long, got 1025".to_owned(),
        ),
    ] {
        let (_dir, runtime, _) = office(&format!("function route(call)\n  {call}\nend\n"));
        let api = Arc::new(FakeCall::default());
        let f = failure(route(&runtime, &api, "1").await);
        assert_eq!(f.message, want);
        assert_eq!(f.line, Some(2), "{want}");
    }
}

#[tokio::test]
async fn registrar_contacts_and_pbx_extension_read_the_host() {
    let (_dir, runtime, host) = office(
        r#"
function route(call)
  local out = {}
  for _, c in ipairs(registrar.contacts("1002")) do
    out[#out + 1] = c.uri .. "," .. c.source .. "," .. c.transport .. "," .. c.expires
  end
  out[#out + 1] = tostring(#registrar.contacts("1999"))
  local e = pbx.extension("1002")
  out[#out + 1] = e.id .. "," .. e.name .. "," .. e.context
  out[#out + 1] = tostring(pbx.extension("1999"))
  call:reject(404, table.concat(out, "|"))
end
"#,
    );
    host.set_contacts(
        "1002",
        vec![
            Contact {
                uri: "sip:1002@10.0.0.5:5060".into(),
                source: "203.0.113.7:40000".into(),
                transport: "udp".into(),
                expires: 300,
            },
            Contact {
                uri: "sip:1002@10.0.0.6:5060;transport=tcp".into(),
                source: "203.0.113.8:40001".into(),
                transport: "tcp".into(),
                expires: 60,
            },
        ],
    );
    host.add_extension(ExtensionInfo {
        id: "1002".into(),
        name: Some("Bob".into()),
        context: "default".into(),
        ..Default::default()
    });
    let api = Arc::new(FakeCall::default());
    route(&runtime, &api, "1").await;
    assert_eq!(
        api.actions(),
        [
            "reject 404 sip:1002@10.0.0.5:5060,203.0.113.7:40000,udp,300|\
          sip:1002@10.0.0.6:5060;transport=tcp,203.0.113.8:40001,tcp,60|0|1002,Bob,default|nil"
        ]
    );

    for (call, want) in [
        (
            "registrar.contacts(1002)",
            "registrar.contacts: expected ext as a string, got number",
        ),
        (
            "pbx.extension()",
            "pbx.extension: expected id as a string, got nil",
        ),
    ] {
        let (_dir, runtime, _) = office(&format!("function route(call)\n  {call}\nend\n"));
        let f = failure(route(&runtime, &api, "1").await);
        assert_eq!(f.message, want);
    }
}

/// A host that says it blocks (as redb does), and fails on one key.
struct BlockingHost(MemoryHost);

impl Host for BlockingHost {
    fn kv_get(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>, HostError> {
        if key == "broken" {
            return Err(HostError::new("disk on fire"));
        }
        std::thread::sleep(Duration::from_millis(5));
        self.0.kv_get(ns, key)
    }
    fn kv_set(
        &self,
        ns: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), HostError> {
        self.0.kv_set(ns, key, value, ttl)
    }
    fn kv_delete(&self, ns: &str, key: &str) -> Result<bool, HostError> {
        self.0.kv_delete(ns, key)
    }
    fn contacts(&self, ext: &str) -> Result<Vec<Contact>, HostError> {
        self.0.contacts(ext)
    }
    fn extension(&self, id: &str) -> Result<Option<ExtensionInfo>, HostError> {
        self.0.extension(id)
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_blocking_host_runs_off_the_runtime_and_its_errors_are_lua_errors() {
    let dir = Dir::new();
    dir.write(
        "dialplans/default.lua",
        r#"
function route(call)
  kv.set("ns", "k", "stored")
  local v = kv.get("ns", "k")
  if call.to.user == "broken" then kv.get("ns", "broken") end
  call:reject(404, v)
end
"#,
    );
    let runtime = dir
        .runtime()
        .with_host(Arc::new(BlockingHost(MemoryHost::new())));
    let api = Arc::new(FakeCall::default());
    assert_eq!(
        route(&runtime, &api, "1").await,
        RouteOutcome::Rejected { code: 404 }
    );
    assert_eq!(api.actions(), ["reject 404 stored"]);
    let f = failure(route(&runtime, &api, "broken").await);
    assert_eq!(f.message, "kv.get: disk on fire");
    assert_eq!(f.line, Some(5));
}

#[tokio::test]
async fn dial_headers_cannot_smuggle_header_lines() {
    for (headers, want) in [
        (
            r#"{["X-A\r\nVia"] = "x"}"#,
            "dial: opts.headers: \"X-A\\r\\nVia\" is not a header name (letters, digits, -.!%*_+`'~)",
        ),
        (
            r#"{["X-A"] = "ok\r\nVia: evil"}"#,
            "dial: opts.headers: the value of X-A must not contain line breaks or control characters",
        ),
    ] {
        let (_dir, runtime, _) = office(&format!(
            "function route(call)\n  call:dial(\"1002\", {{headers = {headers}}})\nend\n"
        ));
        let api = Arc::new(FakeCall::default());
        let f = failure(route(&runtime, &api, "1").await);
        assert_eq!(f.message, want);
        assert!(api.actions().is_empty());
    }
}

#[tokio::test]
async fn on_hangup_runs_after_a_memory_bomb() {
    let dir = Dir::new();
    dir.write(
        "dialplans/default.lua",
        r#"
function route(call)
  call:on_hangup(function(c, outcome) kv.set("t", "after", outcome) end)
  local hoard = {}
  while true do hoard[#hoard + 1] = string.rep("x", 1000) .. #hoard end
end
"#,
    );
    let host = Arc::new(MemoryHost::new());
    let runtime = dir
        .runtime_with(dialplan::Limits {
            memory_bytes: 2 * 1024 * 1024,
            instructions: 1_000_000_000,
            ..dialplan::Limits::default()
        })
        .with_host(host.clone());
    let api = Arc::new(FakeCall::default());
    let f = failure(route(&runtime, &api, "1").await);
    assert_eq!(f.kind, FailureKind::MemoryLimit, "{f:?}");
    // The route's hoard is garbage once it failed (Lua collects it when an
    // allocation fails): the handler has room.
    assert_eq!(text(&host, "t", "after").as_deref(), Some("failed"));
}

#[tokio::test]
async fn call_state_and_is_up_say_whether_the_call_can_still_act() {
    let (_dir, runtime, host) = office(
        r#"
function route(call)
  local seen = {call.state, tostring(call:is_up())}
  call:answer()
  seen[#seen + 1] = call.state
  seen[#seen + 1] = tostring(call:is_up())
  call:dial("1002")
  seen[#seen + 1] = call.state
  seen[#seen + 1] = tostring(call:is_up())
  if call:is_up() then call:hangup() end
  kv.set("t", "seen", table.concat(seen, " "))
end
"#,
    );
    let api = Arc::new(FakeCall::default());
    assert_eq!(route(&runtime, &api, "1002").await, RouteOutcome::Bridged);
    assert_eq!(
        text(&host, "t", "seen").as_deref(),
        Some("routing false answered true ended false")
    );
    // No hangup after the answered dial: it would have raised "call has ended".
    assert!(
        !api.actions().iter().any(|a| a == "hangup"),
        "{:?}",
        api.actions()
    );
}

/// Issue 12, item 3: `call:hold([class])`, `call:unhold()` and the dial
/// option `moh` reach the call with the class; a class that could name a
/// path, or is not a string, is refused before anything runs.
#[tokio::test]
async fn hold_unhold_and_the_moh_option_reach_the_call() {
    let (_dir, runtime, _) = office(
        "function route(call)\n  call:hold()\n  call:hold(\"jazz\")\n  call:unhold()\n  call:dial(\"1002\", {moh = \"jazz-2\"})\nend\n",
    );
    let api = Arc::new(FakeCall::default());
    route(&runtime, &api, "1").await;
    assert_eq!(
        api.actions(),
        [
            "hold -".to_owned(),
            "hold jazz".to_owned(),
            "unhold".to_owned(),
            "dial DialRequest { targets: [\"1002\"], timeout: None, caller_id: None, headers: [], moh: Some(\"jazz-2\"), attest: None, confirm: None }".to_owned(),
        ]
    );
    for (lua, want) in [
        (
            "call:hold(\"../etc/passwd\")",
            "hold: music-on-hold class \"../etc/passwd\" must be 1-64 letters, digits, _ or - (a file sounds/moh/NAME.wav)",
        ),
        (
            "call:dial(\"1002\", {moh = \"a b\"})",
            "dial: music-on-hold class \"a b\" must be 1-64 letters, digits, _ or - (a file sounds/moh/NAME.wav)",
        ),
        (
            "call:hold(5)",
            "hold: expected a music-on-hold class name or nil, got number",
        ),
    ] {
        let (_dir, runtime, _) = office(&format!("function route(call)\n  {lua}\nend\n"));
        let api = Arc::new(FakeCall::default());
        let f = failure(route(&runtime, &api, "1").await);
        assert_eq!(f.message, want, "{lua}");
        assert!(api.actions().is_empty(), "{lua}");
    }
}

/// Issue 16: the dial option `confirm` (follow-me's "press 1 to accept")
/// reaches the call checked, with its defaults; a bad one is refused
/// before anything runs.
#[tokio::test]
async fn the_confirm_option_reaches_the_call_checked() {
    let (_dir, runtime, _) = office(
        "function route(call)\n  if call.request_uri.user == \"1\" then\n    call:dial(\"1002\", {confirm = {prompt = \"followme-accept\"}})\n  else\n    call:dial(\"1003\", {confirm = {prompt = \"a/b.wav\", key = \"#\", timeout = 30}})\n  end\nend\n",
    );
    let api = Arc::new(FakeCall::default());
    route(&runtime, &api, "1").await;
    assert_eq!(
        api.actions(),
        [
            "dial DialRequest { targets: [\"1002\"], timeout: None, caller_id: None, headers: [], moh: None, attest: None, confirm: Some(DialConfirm { prompt: \"followme-accept.wav\", key: '1', timeout: 10s }) }"
        ]
    );
    let api = Arc::new(FakeCall::default());
    route(&runtime, &api, "2").await;
    assert_eq!(
        api.actions(),
        [
            "dial DialRequest { targets: [\"1003\"], timeout: None, caller_id: None, headers: [], moh: None, attest: None, confirm: Some(DialConfirm { prompt: \"a/b.wav\", key: '#', timeout: 30s }) }"
        ]
    );
    for (opts, want) in [
        (
            "{confirm = {}}",
            "dial: opts.confirm needs a prompt (a file under sounds/)",
        ),
        (
            "{confirm = {prompt = \"../x\"}}",
            "dial: file name \"../x\"",
        ),
        (
            "{confirm = {prompt = \"p\", key = \"12\"}}",
            "dial: opts.terminator",
        ),
        (
            "{confirm = {prompt = \"p\", timeout = 0.5}}",
            "dial: opts.confirm.timeout must be 1 to 60 seconds",
        ),
        (
            "{confirm = {prompt = \"p\", timeout = 61}}",
            "dial: opts.confirm.timeout",
        ),
        (
            "{confirm = {prompt = \"p\", tries = 2}}",
            "dial: unknown option \"tries\"",
        ),
        ("{confirm = true}", "dial: expected opts.confirm as"),
    ] {
        let (_dir, runtime, _) = office(&format!(
            "function route(call)\n  call:dial(\"1002\", {opts})\nend\n"
        ));
        let api = Arc::new(FakeCall::default());
        let f = failure(route(&runtime, &api, "1").await);
        assert!(f.message.starts_with(want), "{opts}: {}", f.message);
        assert!(api.actions().is_empty(), "{opts}");
    }
}

#[tokio::test]
async fn set_lamp_lights_and_clears_a_named_lamp_and_checks_its_arguments() {
    let (_dir, runtime, host) = office(
        "function route(call)\n  pbx.set_lamp(\"*28\", call.to.user == \"on\" and \"busy\" or \"idle\")\n  call:reject(404)\nend\n",
    );
    assert_eq!(host.lamp("*28"), None);
    let api = Arc::new(FakeCall::default());
    route(&runtime, &api, "on").await;
    assert_eq!(host.lamp("*28"), Some(true));
    route(&runtime, &api, "off").await;
    assert_eq!(host.lamp("*28"), Some(false));

    for (args, want) in [
        (
            "\"*28\", \"on\"",
            "pbx.set_lamp: expected state \"busy\" or \"idle\", got string",
        ),
        (
            "\"*28\", nil",
            "pbx.set_lamp: expected state \"busy\" or \"idle\", got nil",
        ),
        (
            "\"night mode\", \"busy\"",
            "pbx.set_lamp: name may hold letters, digits and * + . _ - only, got ' ' in \"night mode\"",
        ),
        (
            "28, \"busy\"",
            "pbx.set_lamp: expected name as a string, got number",
        ),
    ] {
        let (_dir, runtime, host) = office(&format!(
            "function route(call)\n  pbx.set_lamp({args})\nend\n"
        ));
        let f = failure(route(&runtime, &api, "1").await);
        assert_eq!(f.message, want, "{args}");
        assert_eq!(host.lamp("*28"), None, "{args}");
    }
}
