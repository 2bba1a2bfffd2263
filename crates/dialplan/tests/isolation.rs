//! What one call's Lua can do to the others (issue 11, item 4): work in C
//! library functions is bounded, a route has a wall-clock limit between
//! actions, a stuck route does not hold up other calls of its state, and
//! the shared library tables are read-only.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Dir, FakeCall, call_to};
use dialplan::{FailureKind, Limits, LuaFailure, RouteOutcome, Runtime};

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

const SCRIPT: &str = r#"
function route(call)
  local dest = call.to.user
  if dest:find("^a*a*a*a*b") then
    call:reject(486)
  elseif dest == "spin" then
    while true do end
  elseif dest == "spin-in-coroutine" then
    coroutine.wrap(function() while true do end end)()
  elseif dest == "spin-in-pcall" then
    while true do pcall(string.rep, "x", 10) end
  elseif dest == "600" then
    call:answer()
    call:sleep(0.01)
  elseif dest == "upper" then
    string.upper = function() return "pwned" end
  elseif dest == "rawset-global" then
    rawset(_G, "leak", "from another call")
  elseif dest == "rawset-string" then
    rawset(string, "upper", function() return "pwned" end)
  elseif dest == "string-meta" then
    getmetatable("").__index = {upper = function() return "pwned" end}
  elseif dest == "kv" then
    kv.get = nil
  elseif dest == "check" then
    local n = 0
    for _ in pairs(string) do n = n + 1 end
    if ("x"):upper() == "X" and string.upper("y") == "Y" and leak == nil and n > 10 then
      call:reject(486)
    else
      call:reject(500)
    end
  else
    call:reject(404)
  end
end
"#;

/// No instruction budget to speak of: only the time limits stop a spin.
fn timed(route_time: Duration) -> Limits {
    Limits {
        instructions: 1_000_000_000_000,
        route_time,
        ..Limits::default()
    }
}

#[tokio::test]
async fn a_catastrophic_pattern_on_the_dialled_number_fails_the_call() {
    let dir = Dir::new();
    dir.write("dialplans/default.lua", SCRIPT);
    let runtime = dir.runtime();
    let api = Arc::new(FakeCall::default());
    let f = failure(route(&runtime, &api, &"a".repeat(220)).await);
    assert_eq!(f.kind, FailureKind::Error, "{f:?}");
    assert!(f.message.contains("pattern too expensive"), "{f:?}");
    assert_eq!(f.line, Some(4), "{f:?}");
    // The same pattern on an ordinary number still works.
    assert_eq!(
        route(&runtime, &api, "aab").await,
        RouteOutcome::Rejected { code: 486 }
    );
}

#[tokio::test]
async fn a_route_over_its_time_limit_is_stopped() {
    let dir = Dir::new();
    dir.write("dialplans/default.lua", SCRIPT);
    let runtime = dir.runtime_with(timed(Duration::from_millis(300)));
    let api = Arc::new(FakeCall::default());
    for dest in ["spin", "spin-in-pcall"] {
        let f = failure(route(&runtime, &api, dest).await);
        assert_eq!(f.kind, FailureKind::TimeLimit, "{dest}: {f:?}");
        assert!(f.message.contains("route time limit"), "{dest}: {f:?}");
    }
    // The clock restarts at every action: a route that sleeps longer than
    // the limit in total is not stopped.
    dir.write(
        "dialplans/default.lua",
        "function route(call)\n  for i = 1, 4 do call:sleep(0.1) end\n  call:answer()\nend\n",
    );
    runtime.reload().expect("reload");
    assert_eq!(route(&runtime, &api, "x").await, RouteOutcome::Answered);
}

#[tokio::test]
async fn a_route_that_cannot_be_paused_is_stopped_after_the_hold_limit() {
    let dir = Dir::new();
    dir.write("dialplans/default.lua", SCRIPT);
    let runtime = dir.runtime_with(timed(Duration::from_secs(30)));
    let api = Arc::new(FakeCall::default());
    let f = failure(route(&runtime, &api, "spin-in-coroutine").await);
    assert_eq!(f.kind, FailureKind::TimeLimit, "{f:?}");
    assert!(f.message.contains("could not be paused"), "{f:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_routes_do_not_hold_up_other_calls() {
    let dir = Dir::new();
    dir.write("dialplans/default.lua", SCRIPT);
    let runtime = Arc::new(dir.runtime_with(timed(Duration::from_secs(3))));
    // More spinning routes than a context has states (at most 8), so every
    // state runs one and the next call shares its state with a spinner.
    let spinners: Vec<_> = (0..9)
        .map(|_| {
            let runtime = Arc::clone(&runtime);
            tokio::spawn(async move {
                let api = Arc::new(FakeCall::default());
                route(&runtime, &api, "spin").await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let api = Arc::new(FakeCall::default());
    assert_eq!(route(&runtime, &api, "600").await, RouteOutcome::Answered);
    assert!(
        spinners.iter().all(|s| !s.is_finished()),
        "the call was routed only after a spinning route had ended"
    );
    for spinner in spinners {
        let f = failure(spinner.await.expect("task"));
        assert_eq!(f.kind, FailureKind::TimeLimit, "{f:?}");
    }
}

#[tokio::test]
async fn shared_libraries_and_globals_are_read_only() {
    let dir = Dir::new();
    dir.write("dialplans/default.lua", SCRIPT);
    let runtime = dir.runtime();
    let api = Arc::new(FakeCall::default());
    for (dest, needle) in [
        ("upper", "cannot set string.upper"),
        ("rawset-global", "read-only"),
        ("rawset-string", "read-only"),
        ("string-meta", "attempt to index"),
        ("kv", "cannot set kv.get"),
    ] {
        let f = failure(route(&runtime, &api, dest).await);
        assert!(f.message.contains(needle), "{dest}: {f:?}");
    }
    // Nothing leaked into the next calls, in any state; methods on strings
    // and `pairs(string)` still work.
    for _ in 0..16 {
        assert_eq!(
            route(&runtime, &api, "check").await,
            RouteOutcome::Rejected { code: 486 }
        );
    }
}

/// A route's coroutine, once finished, runs a later call's route from the
/// start (it is reused, not made anew); one that failed is not reused.
#[tokio::test]
async fn a_finished_route_coroutine_is_reused_from_a_clean_start() {
    let dir = Dir::new();
    dir.write(
        "dialplans/default.lua",
        r#"
-- Kept by key, so a coroutine's address is never another's.
local seen = {}
function route(call)
  local co = coroutine.running()
  if call.to.user == "fail" then
    error("failed on purpose")
  elseif seen[co] then
    call:reject(486)
  else
    seen[co] = true
    call:reject(404)
  end
end
"#,
    );
    let runtime = dir.runtime();
    let api = Arc::new(FakeCall::default());
    let mut codes = Vec::new();
    // The calls go round the context's states in turn: within a few, one
    // state runs a second route.
    for _ in 0..16 {
        match route(&runtime, &api, "1002").await {
            RouteOutcome::Rejected { code } => codes.push(code),
            other => panic!("expected a rejection, got {other:?}"),
        }
        if codes.contains(&486) {
            break;
        }
    }
    assert_eq!(codes.first(), Some(&404), "{codes:?}");
    assert!(codes.contains(&486), "no coroutine was reused: {codes:?}");
    // Failures in between leave the next routes working.
    for _ in 0..4 {
        assert!(matches!(
            route(&runtime, &api, "fail").await,
            RouteOutcome::Failed { .. }
        ));
        assert!(matches!(
            route(&runtime, &api, "1002").await,
            RouteOutcome::Rejected { .. }
        ));
    }
}
