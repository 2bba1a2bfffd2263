//! Running `route(call)`: the call object's actions and fields, Lua errors,
//! the limits and the sandbox.

mod common;

use std::sync::Arc;

use common::{Dir, FakeCall, call_to};
use dialplan::{FailureKind, Limits, LuaFailure, RouteOutcome, Runtime};
use pbx::{DialOutcome, DialStatus};

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

const OFFICE: &str = r#"
function route(call)
  local dest = call.to.user
  if dest:match("^1%d%d%d$") then
    call:ring()
    local r = call:dial({dest, "sip:" .. dest .. "@backup.test"},
                        {timeout = 20, caller_id = "Front desk", headers = {["X-Team"] = "ops"}})
    if r.status ~= "answered" then
      call:reject(480, "Temporarily Unavailable " .. r.status .. " " .. r.code)
    end
  elseif dest == "600" then
    call:answer()
    call:sleep(0.01)
  elseif dest == "601" then
    call:answer()
    call:hangup()
  else
    call:reject(404)
  end
end
"#;

#[tokio::test]
async fn unknown_number_is_rejected_404() {
    let dir = Dir::new();
    dir.write("dialplans/default.lua", OFFICE);
    let runtime = dir.runtime();
    let api = Arc::new(FakeCall::default());
    let outcome = route(&runtime, &api, "999").await;
    assert_eq!(outcome, RouteOutcome::Rejected { code: 404 });
    assert_eq!(api.actions(), ["reject 404"]);
}

#[tokio::test]
async fn answer_then_return_leaves_an_answered_call() {
    let dir = Dir::new();
    dir.write("dialplans/default.lua", OFFICE);
    let runtime = dir.runtime();
    let api = Arc::new(FakeCall::default());
    assert_eq!(route(&runtime, &api, "600").await, RouteOutcome::Answered);
    assert_eq!(api.actions(), ["answer", "sleep 10ms"]);

    let api = Arc::new(FakeCall::default());
    assert_eq!(route(&runtime, &api, "601").await, RouteOutcome::HungUp);
    assert_eq!(api.actions(), ["answer", "hangup"]);
}

#[tokio::test]
async fn dial_passes_targets_and_options_and_returns_status() {
    let dir = Dir::new();
    dir.write("dialplans/default.lua", OFFICE);
    let runtime = dir.runtime();

    let api = Arc::new(FakeCall::default());
    assert_eq!(route(&runtime, &api, "1002").await, RouteOutcome::Bridged);
    let actions = api.actions();
    assert_eq!(actions.len(), 2, "{actions:?}");
    assert_eq!(actions[0], "ring");
    assert!(
        actions[1].starts_with(r#"dial DialRequest { targets: ["1002", "sip:1002@backup.test"]"#),
        "{actions:?}"
    );
    assert!(actions[1].contains("timeout: Some(20s)"), "{actions:?}");
    assert!(
        actions[1].contains(r#"caller_id: Some("Front desk")"#),
        "{actions:?}"
    );
    assert!(actions[1].contains(r#"("X-Team", "ops")"#), "{actions:?}");

    let api = Arc::new(FakeCall {
        dial_result: DialOutcome {
            status: DialStatus::Busy,
            code: 486,
            answered_by: None,
        },
        ..FakeCall::default()
    });
    assert_eq!(
        route(&runtime, &api, "1002").await,
        RouteOutcome::Rejected { code: 480 }
    );
    assert_eq!(
        api.actions().last().map(String::as_str),
        Some("reject 480 Temporarily Unavailable busy 486")
    );
}

#[tokio::test]
async fn call_fields_are_visible_to_lua() {
    let dir = Dir::new();
    dir.write(
        "dialplans/default.lua",
        r#"
function route(call)
  local got = table.concat({
    call.id, call.from.user, call.from.host, call.from.display, call.from.uri,
    call.to.user, tostring(call.to.display), call.request_uri.uri,
    call.source.ip, call.source.port, call.source.transport,
    call.caller, call.context, SWITCHBOARD_API,
  }, "|")
  call:reject(404, got)
end
"#,
    );
    let runtime = dir.runtime();
    let api = Arc::new(FakeCall::default());
    route(&runtime, &api, "1234").await;
    assert_eq!(
        api.actions(),
        [
            "reject 404 call-to-1234|1001|pbx.test|Alice|sip:1001@pbx.test|1234|nil|sip:1234@pbx.test|127.0.0.10|5062|udp|1001|default|1"
        ]
    );
}

#[tokio::test]
async fn actions_after_the_call_ended_raise_call_has_ended() {
    let dir = Dir::new();
    dir.write(
        "dialplans/default.lua",
        "function route(call)\n  call:reject(403)\n  call:answer()\nend\n",
    );
    let runtime = dir.runtime();
    let api = Arc::new(FakeCall::default());
    let f = failure(route(&runtime, &api, "1").await);
    assert_eq!(f.kind, FailureKind::Error);
    assert_eq!(f.message, "call has ended");
    assert_eq!(
        (f.file.as_str(), f.line),
        ("dialplans/default.lua", Some(3))
    );
    assert_eq!(
        api.actions(),
        ["reject 403"],
        "answer never reached the call"
    );
}

#[tokio::test]
async fn caller_gone_ends_the_route_without_a_failure() {
    let dir = Dir::new();
    dir.write(
        "dialplans/default.lua",
        "function route(call)\n  call:ring()\n  call:answer()\n  call:hangup()\nend\n",
    );
    let runtime = dir.runtime();
    let api = Arc::new(FakeCall {
        gone_on: Some("ring"),
        ..FakeCall::default()
    });
    assert_eq!(route(&runtime, &api, "1").await, RouteOutcome::CallerGone);
    assert_eq!(api.actions(), ["ring"]);
}

#[tokio::test]
async fn bad_arguments_are_lua_errors_naming_the_function() {
    let dir = Dir::new();
    dir.write(
        "dialplans/default.lua",
        "function route(call)\n  call:reject(\"busy\")\nend\n",
    );
    let runtime = dir.runtime();
    let api = Arc::new(FakeCall::default());
    let f = failure(route(&runtime, &api, "1").await);
    assert_eq!(
        f.message,
        "reject: expected a status code 400-699, got string"
    );
    assert_eq!(f.line, Some(2));
    assert!(api.actions().is_empty());
}

#[tokio::test]
async fn runtime_error_is_a_failure_with_file_and_line() {
    let dir = Dir::new();
    dir.write(
        "dialplans/default.lua",
        "local cfg = {}\nfunction route(call)\n  call:answer()\n  return cfg.trunk.name\nend\n",
    );
    let runtime = dir.runtime();
    let api = Arc::new(FakeCall::default());
    let outcome = route(&runtime, &api, "1").await;
    let RouteOutcome::Failed { failure, answered } = outcome else {
        panic!("expected a failure, got {outcome:?}");
    };
    assert!(answered, "the call was answered before the error");
    assert_eq!(failure.kind, FailureKind::Error);
    assert_eq!(failure.file, "dialplans/default.lua");
    assert_eq!(failure.line, Some(4));
    assert!(
        failure.message.contains("attempt to index a nil value"),
        "{failure}"
    );
    assert!(
        failure
            .traceback
            .as_deref()
            .is_some_and(|t| t.contains("route")),
        "{failure:?}"
    );

    // The next call on the same runtime works.
    let api = Arc::new(FakeCall::default());
    assert!(matches!(
        route(&runtime, &api, "1").await,
        RouteOutcome::Failed { .. }
    ));
}

#[tokio::test]
async fn a_refused_action_is_a_lua_error_naming_the_action() {
    let dir = Dir::new();
    dir.write(
        "dialplans/default.lua",
        r#"
function route(call)
  call:answer()
  local ok, err = pcall(call.play, call, "hello")
  call:reject(488, tostring(ok) .. " " .. tostring(err))
end
"#,
    );
    let runtime = dir.runtime();
    let api = Arc::new(FakeCall {
        fails_on: Some("play"),
        ..FakeCall::default()
    });
    assert_eq!(
        route(&runtime, &api, "1").await,
        RouteOutcome::Rejected { code: 488 }
    );
    // pbx's reason, with the action that failed in front of it.
    let last = api.actions().last().cloned().unwrap_or_default();
    assert!(
        last.starts_with("reject 488 false ")
            && last.contains("play failed: the caller has no media"),
        "{last}"
    );

    // Uncaught, it fails the route with the same message.
    dir.write(
        "dialplans/default.lua",
        "function route(call)\n  call:answer()\n  call:play(\"hello\")\nend\n",
    );
    let runtime = dir.runtime();
    let outcome = route(&runtime, &api, "1").await;
    let failure = failure(outcome);
    assert_eq!(failure.line, Some(3), "{failure}");
    assert!(
        failure
            .message
            .contains("play failed: the caller has no media"),
        "{failure}"
    );
}

#[tokio::test]
async fn error_in_a_plugin_points_at_the_plugin() {
    let dir = Dir::new();
    dir.write(
        "plugins/speed.lua",
        "local M = {}\nfunction M.lookup(n)\n  error(\"no speed dial \" .. n)\nend\nreturn M\n",
    );
    dir.write(
        "dialplans/default.lua",
        "local speed = require(\"speed\")\nfunction route(call)\n  speed.lookup(call.to.user)\nend\n",
    );
    let runtime = dir.runtime();
    let api = Arc::new(FakeCall::default());
    let f = failure(route(&runtime, &api, "7").await);
    assert_eq!((f.file.as_str(), f.line), ("plugins/speed.lua", Some(3)));
    assert_eq!(f.message, "no speed dial 7");
}

const LIMITS: &str = r#"
function route(call)
  local dest = call.to.user
  call:ring()
  if dest == "loop" then
    while true do end
  elseif dest == "pcall-loop" then
    while true do pcall(function() while true do end end) end
  elseif dest == "coroutine-loop" then
    local co = coroutine.wrap(function() while true do end end)
    co()
  elseif dest == "bomb" then
    local t = {}
    local i = 0
    while true do
      i = i + 1
      t[i] = string.rep("x", 100000) .. i
    end
  elseif dest == "slow" then
    -- Work below the budget, with yields in between: never stopped.
    for _ = 1, 20 do
      local n = 0
      for j = 1, 100000 do n = n + j end
      call:sleep(0.001)
    end
    call:answer()
  else
    call:answer()
  end
end
"#;

fn small_limits() -> Limits {
    Limits {
        memory_bytes: 4 * 1024 * 1024,
        instructions: 1_000_000,
        ..dialplan::Limits::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_loop_is_stopped_while_another_call_completes() {
    let dir = Dir::new();
    dir.write("dialplans/default.lua", LIMITS);
    let runtime = Arc::new(dir.runtime_with(small_limits()));

    for dest in ["loop", "pcall-loop", "coroutine-loop"] {
        let looping = {
            let runtime = Arc::clone(&runtime);
            tokio::spawn(async move {
                let api = Arc::new(FakeCall::default());
                route(&runtime, &api, dest).await
            })
        };
        let normal = {
            let runtime = Arc::clone(&runtime);
            tokio::spawn(async move {
                let api = Arc::new(FakeCall::default());
                route(&runtime, &api, "slow").await
            })
        };
        let f = failure(looping.await.expect("task"));
        assert_eq!(f.kind, FailureKind::InstructionBudget, "{dest}: {f:?}");
        assert_eq!(f.file, "dialplans/default.lua", "{dest}: {f:?}");
        assert_eq!(
            normal.await.expect("task"),
            RouteOutcome::Answered,
            "{dest}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bomb_is_stopped_by_the_memory_limit() {
    let dir = Dir::new();
    dir.write("dialplans/default.lua", LIMITS);
    let runtime = Arc::new(dir.runtime_with(Limits {
        instructions: 1_000_000_000,
        ..small_limits()
    }));
    let bomb = {
        let runtime = Arc::clone(&runtime);
        tokio::spawn(async move {
            let api = Arc::new(FakeCall::default());
            route(&runtime, &api, "bomb").await
        })
    };
    let api = Arc::new(FakeCall::default());
    assert_eq!(route(&runtime, &api, "600").await, RouteOutcome::Answered);
    let f = failure(bomb.await.expect("task"));
    assert_eq!(f.kind, FailureKind::MemoryLimit, "{f:?}");
    assert!(f.message.contains("memory"), "{f:?}");
}

#[tokio::test]
async fn sandbox_hides_dangerous_functions() {
    let dir = Dir::new();
    dir.write("plugins/ok.lua", "return {}\n");
    dir.write(
        "dialplans/default.lua",
        r#"
function route(call)
  local bad = {}
  local function check(name, cond) if not cond then bad[#bad + 1] = name end end
  check("os.execute", os.execute == nil)
  check("os.exit", os.exit == nil)
  check("os.getenv", os.getenv == nil)
  check("os.remove", os.remove == nil)
  check("os.time", type(os.time) == "function")
  check("io", io == nil)
  check("debug", debug == nil)
  check("package", package == nil)
  check("dofile", dofile == nil)
  check("loadfile", loadfile == nil)
  check("string.dump", string.dump == nil)
  local f, err = load("\27Lua\84\0")
  check("bytecode load", f == nil and tostring(err):find("binary") ~= nil)
  local g = load("return 1 + 1")
  check("text load", g ~= nil and g() == 2)
  local ok, msg = pcall(require, "os")
  check("require os", not ok and tostring(msg):find("not found") ~= nil)
  ok = pcall(require, "../dialplans/default")
  check("require path", not ok)
  check("require plugin", type(require("ok")) == "table")
  check("collectgarbage stop", not pcall(collectgarbage, "stop"))
  if #bad > 0 then error("sandbox leaks: " .. table.concat(bad, ", ")) end
  call:answer()
end
"#,
    );
    let runtime = dir.runtime();
    let api = Arc::new(FakeCall::default());
    assert_eq!(route(&runtime, &api, "1").await, RouteOutcome::Answered);
}

#[tokio::test]
async fn plugins_are_required_from_contexts() {
    let dir = Dir::new();
    dir.write(
        "plugins/speed.lua",
        "local M = {}\nfunction M.lookup(n) return ({[\"7\"] = \"1002\"})[n] end\nreturn M\n",
    );
    dir.write(
        "plugins/forward/init.lua",
        "local speed = require(\"speed\")\nreturn { target = function(n) return speed.lookup(n) or n end }\n",
    );
    dir.write(
        "dialplans/default.lua",
        "local forward = require(\"forward\")\nassert(require(\"forward\") == forward)\nfunction route(call)\n  call:dial(forward.target(call.to.user))\nend\n",
    );
    let runtime = dir.runtime();
    let generation = runtime.generation();
    assert_eq!(
        generation.plugins.keys().collect::<Vec<_>>(),
        ["forward", "speed"]
    );
    assert_eq!(
        generation.plugins["forward"].name,
        "plugins/forward/init.lua"
    );
    let api = Arc::new(FakeCall::default());
    assert_eq!(route(&runtime, &api, "7").await, RouteOutcome::Bridged);
    assert!(
        api.actions()[0].starts_with(r#"dial DialRequest { targets: ["1002"]"#),
        "{:?}",
        api.actions()
    );
}

#[tokio::test]
async fn unknown_context_is_a_failure_not_a_panic() {
    let dir = Dir::new();
    dir.write("dialplans/default.lua", OFFICE);
    let runtime = dir.runtime();
    let api = Arc::new(FakeCall::default());
    let mut info = call_to("1");
    info.context = "nope".into();
    let state = runtime.call_state().expect("call state");
    let f = failure(state.run_route(Arc::clone(&api), info).await);
    assert_eq!(f.file, "dialplans/nope.lua");
    assert!(f.message.contains("no such context"), "{f:?}");
}

#[tokio::test]
async fn odd_error_values_are_failures_not_panics() {
    let dir = Dir::new();
    dir.write(
        "dialplans/default.lua",
        r#"
function route(call)
  local kind = call.to.user
  if kind == "table" then error({code = 1})
  elseif kind == "nil" then error()
  elseif kind == "level0" then error("no place", 0)
  elseif kind == "tostring" then error(setmetatable({}, {__tostring = function() return "custom" end}))
  end
end
"#,
    );
    let runtime = dir.runtime();
    for kind in ["table", "nil", "level0", "tostring"] {
        let api = Arc::new(FakeCall::default());
        let f = failure(route(&runtime, &api, kind).await);
        assert_eq!(f.kind, FailureKind::Error, "{kind}: {f:?}");
        assert_eq!(f.file, "dialplans/default.lua", "{kind}: {f:?}");
    }
    let api = Arc::new(FakeCall::default());
    let f = failure(route(&runtime, &api, "level0").await);
    assert_eq!(f.message, "no place");
    assert_eq!(f.line, Some(6), "the line comes from the traceback: {f:?}");
}

#[tokio::test]
async fn globals_are_frozen_once_the_context_is_loaded() {
    let dir = Dir::new();
    dir.write(
        "dialplans/default.lua",
        "counter = 0\nfunction route(call)\n  counter = counter + 1\nend\n",
    );
    let runtime = dir.runtime();
    let api = Arc::new(FakeCall::default());
    let outcome = route(&runtime, &api, "1002").await;
    let RouteOutcome::Failed { failure, .. } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(failure.line, Some(3), "{failure}");
    assert!(
        failure.message.contains("assignment to global 'counter'"),
        "{failure}"
    );
}

const TRANSFERS: &str = r#"
function route(call)
  call:reject(404, "route " .. call.transfer.by .. " " .. call.transfer.target
    .. " " .. tostring(call.transfer.status))
end
function on_transfer_failed(call)
  local t = call.transfer
  call:reject(486, "hook " .. t.by .. " " .. t.target .. " " .. t.status)
end
"#;

/// A blind transfer's call runs `route` with `call.transfer = {by,
/// target}`; one whose target failed after the transferor hung up runs the
/// context's `on_transfer_failed` instead, with the dial's `status`.
#[tokio::test]
async fn a_failed_transfer_runs_on_transfer_failed_and_a_transfer_runs_route() {
    let dir = Dir::new();
    dir.write("dialplans/default.lua", TRANSFERS);
    let runtime = dir.runtime();
    assert!(runtime.handles_failed_transfer("default"));
    assert!(!runtime.handles_failed_transfer("nosuch"));
    let mut info = call_to("1003");
    info.transferred_by = Some("1002".into());
    let api = Arc::new(FakeCall::default());
    let state = runtime.call_state().expect("call state");
    state.run_route(Arc::clone(&api), info.clone()).await;
    assert_eq!(api.actions(), ["reject 404 route 1002 1003 nil"]);
    info.transfer_failed = Some(DialStatus::Busy);
    let api = Arc::new(FakeCall::default());
    let state = runtime.call_state().expect("call state");
    let outcome = state.run_route(Arc::clone(&api), info).await;
    assert_eq!(outcome, RouteOutcome::Rejected { code: 486 });
    assert_eq!(api.actions(), ["reject 486 hook 1002 1003 busy"]);
    // A context without the hook does not take failed transfers.
    dir.write("dialplans/default.lua", OFFICE);
    runtime.reload().expect("reload");
    assert!(!runtime.handles_failed_transfer("default"));
}
