//! The media actions (`call:play`, `call:record`, `call:read_digits`,
//! `call:echo`): what reaches the call, what Lua gets back, and the file
//! names and options that are refused before anything is sent.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Dir, FakeCall, call_to};
use dialplan::{LuaFailure, RecordEnd, RecordResult, RouteOutcome, Runtime};

/// A runtime whose `dialplans/default.lua` is `lua`.
fn context(lua: &str) -> (Dir, Runtime) {
    let dir = Dir::new();
    dir.write("dialplans/default.lua", lua);
    let runtime = dir.runtime();
    (dir, runtime)
}

async fn route(runtime: &Runtime, api: &Arc<FakeCall>) -> RouteOutcome {
    let state = runtime.call_state().expect("call state");
    state.run_route(Arc::clone(api), call_to("700")).await
}

fn failure(outcome: RouteOutcome) -> LuaFailure {
    match outcome {
        RouteOutcome::Failed { failure, .. } => failure,
        other => panic!("expected a Lua failure, got {other:?}"),
    }
}

/// Runs `route(call)` whose line 2 is `line`: it must fail there with
/// `want`, and nothing may reach the call.
async fn refused(line: &str, want: &str) {
    let (_dir, runtime) = context(&format!("function route(call)\n  {line}\nend\n"));
    let api = Arc::new(FakeCall::default());
    let f = failure(route(&runtime, &api).await);
    assert_eq!(f.message, want, "{line}");
    assert_eq!(
        (f.file.as_str(), f.line),
        ("dialplans/default.lua", Some(2)),
        "{line}"
    );
    assert!(api.actions().is_empty(), "{line}: {:?}", api.actions());
}

const RECORD_DEFAULTS: &str = "RecordOptions { max: 60s, terminator: Some('#'), silence: None }";
const DIGIT_DEFAULTS: &str = "DigitOptions { max: 1, timeout: 5s, terminator: Some('#') }";

#[tokio::test]
async fn play_reaches_the_call_with_wav_added_when_there_is_no_extension() {
    let long = "a".repeat(196);
    let (_dir, runtime) = context(&format!(
        r#"
function route(call)
  call:answer()
  call:play("hello")
  call:play("prompts/en-GB/welcome_2.wav")
  call:play("v1.2/beep")
  call:play("{long}")
end
"#
    ));
    let api = Arc::new(FakeCall::default());
    assert_eq!(route(&runtime, &api).await, RouteOutcome::Answered);
    assert_eq!(
        api.actions(),
        [
            "answer".to_owned(),
            "play hello.wav".into(),
            "play prompts/en-GB/welcome_2.wav".into(),
            "play v1.2/beep.wav".into(),
            format!("play {long}.wav"),
        ]
    );
}

#[tokio::test]
async fn record_passes_defaults_and_options_and_returns_a_table() {
    let (_dir, runtime) = context(
        r#"
function route(call)
  call:answer()
  local r = call:record("vm/1002/msg1")
  call:record("vm/1002/msg2.wav", {max = 1.5, terminator = ""})
  call:record("vm/1002/msg3", {terminator = "*"})
  call:reject(486, string.format("%.1f %s %s", r.duration, r.reason, math.type(r.duration)))
end
"#,
    );
    let api = Arc::new(FakeCall::default());
    assert_eq!(
        route(&runtime, &api).await,
        RouteOutcome::Rejected { code: 486 }
    );
    assert_eq!(
        api.actions(),
        [
            "answer".to_owned(),
            format!("record vm/1002/msg1.wav {RECORD_DEFAULTS}"),
            "record vm/1002/msg2.wav RecordOptions { max: 1.5s, terminator: None, silence: None }".into(),
            "record vm/1002/msg3.wav RecordOptions { max: 60s, terminator: Some('*'), silence: None }".into(),
            "reject 486 2.5 terminator float".into(),
        ]
    );
}

#[tokio::test]
async fn record_ended_by_hangup_ends_the_call() {
    let (_dir, runtime) = context(
        r#"
function route(call)
  call:answer()
  local r = call:record("vm/msg", {max = 120})
  if r.reason ~= "hangup" then error("reason " .. r.reason) end
  call:play("goodbye")
end
"#,
    );
    let api = Arc::new(FakeCall {
        record_result: RecordResult {
            duration: Duration::from_secs(7),
            reason: RecordEnd::Hangup,
        },
        ..FakeCall::default()
    });
    assert_eq!(route(&runtime, &api).await, RouteOutcome::CallerGone);
    assert_eq!(
        api.actions(),
        [
            "answer",
            "record vm/msg.wav RecordOptions { max: 120s, terminator: Some('#'), silence: None }"
        ],
        "play never reached the call"
    );
}

#[tokio::test]
async fn read_digits_passes_defaults_and_options_and_returns_the_string() {
    let (_dir, runtime) = context(
        r#"
function route(call)
  call:answer()
  local a = call:read_digits()
  local b = call:read_digits({max = 4, timeout = 2.5, terminator = "*"})
  local c = call:read_digits({terminator = "", max = 64.0})
  call:read_digits({terminator = "d", timeout = 300})
  call:reject(404, type(a) .. " " .. a .. "|" .. b .. "|" .. c)
end
"#,
    );
    let api = Arc::new(FakeCall {
        digits: "1234".into(),
        ..FakeCall::default()
    });
    route(&runtime, &api).await;
    assert_eq!(
        api.actions(),
        [
            "answer".to_owned(),
            format!("read_digits {DIGIT_DEFAULTS}"),
            "read_digits DigitOptions { max: 4, timeout: 2.5s, terminator: Some('*') }".into(),
            "read_digits DigitOptions { max: 64, timeout: 5s, terminator: None }".into(),
            "read_digits DigitOptions { max: 1, timeout: 300s, terminator: Some('D') }".into(),
            "reject 404 string 1234|1234|1234".into(),
        ]
    );

    // Nothing typed: an empty string.
    let (_dir, runtime) = context(
        "function route(call)\n  local d = call:read_digits()\n  call:reject(404, \"[\" .. d .. \"]\")\nend\n",
    );
    let api = Arc::new(FakeCall::default());
    route(&runtime, &api).await;
    assert_eq!(
        api.actions(),
        [
            format!("read_digits {DIGIT_DEFAULTS}"),
            "reject 404 []".into()
        ]
    );
}

#[tokio::test]
async fn echo_reaches_the_call_and_the_call_is_over_after_it() {
    let (_dir, runtime) =
        context("function route(call)\n  call:answer()\n  call:echo()\n  call:play(\"x\")\nend\n");
    let api = Arc::new(FakeCall::default());
    assert_eq!(route(&runtime, &api).await, RouteOutcome::CallerGone);
    assert_eq!(api.actions(), ["answer", "echo"]);

    let (_dir, runtime) = context("function route(call)\n  call:answer()\n  call:echo()\nend\n");
    let api = Arc::new(FakeCall {
        gone_on: Some("echo"),
        ..FakeCall::default()
    });
    assert_eq!(route(&runtime, &api).await, RouteOutcome::CallerGone);
    assert_eq!(api.actions(), ["answer", "echo"]);
}

#[tokio::test]
async fn bad_file_names_are_lua_errors_that_never_reach_the_call() {
    let long = "a".repeat(197);
    let cases = [
        (
            r#"call:play("/etc/passwd")"#.to_owned(),
            r#"play: file name "/etc/passwd" must be relative to sounds/"#.to_owned(),
        ),
        (
            r#"call:play("../x")"#.into(),
            r#"play: file name "../x" must stay inside sounds/ (no '..')"#.into(),
        ),
        (
            r#"call:play("en/../../secret.wav")"#.into(),
            r#"play: file name "en/../../secret.wav" must stay inside sounds/ (no '..')"#.into(),
        ),
        (
            r#"call:play("a b")"#.into(),
            r#"play: file name "a b" may only contain letters, digits, '_', '.', '-' and '/'"#
                .into(),
        ),
        (
            r#"call:play("x;rm -rf")"#.into(),
            r#"play: file name "x;rm -rf" may only contain letters, digits, '_', '.', '-' and '/'"#
                .into(),
        ),
        (
            r#"call:play("C:\\x")"#.into(),
            r#"play: file name "C:\\x" may only contain letters, digits, '_', '.', '-' and '/'"#
                .into(),
        ),
        (
            r#"call:play("hello.mp3")"#.into(),
            r#"play: file name "hello.mp3" must be a .wav file"#.into(),
        ),
        (
            r#"call:play("hello.")"#.into(),
            r#"play: file name "hello." must be a .wav file"#.into(),
        ),
        (
            r#"call:play("a//b")"#.into(),
            r#"play: file name "a//b" has an empty path component"#.into(),
        ),
        (
            r#"call:play("en/")"#.into(),
            r#"play: file name "en/" has an empty path component"#.into(),
        ),
        (
            r#"call:play("./x")"#.into(),
            r#"play: file name "./x" has a path component starting with '.'"#.into(),
        ),
        (r#"call:play("")"#.into(), "play: file name is empty".into()),
        (
            format!(r#"call:play("{long}")"#),
            format!(r#"play: file name "{long}" is too long (at most 200 bytes with .wav)"#),
        ),
        (
            "call:play(42)".into(),
            "play: expected a file name string, got number".into(),
        ),
        (
            "call:play()".into(),
            "play: expected a file name string, got nil".into(),
        ),
        (
            r#"call:record("../../etc/cron.d/x")"#.into(),
            r#"record: file name "../../etc/cron.d/x" must stay inside recordings/ (no '..')"#
                .into(),
        ),
        (
            r#"call:record("/tmp/x.wav")"#.into(),
            r#"record: file name "/tmp/x.wav" must be relative to recordings/"#.into(),
        ),
        (
            r#"call:record("msg.ogg", {max = 5})"#.into(),
            r#"record: file name "msg.ogg" must be a .wav file"#.into(),
        ),
        (
            "call:record({max = 5})".into(),
            "record: expected a file name string, got table".into(),
        ),
    ];
    for (line, want) in cases {
        refused(&line, &want).await;
    }
}

#[tokio::test]
async fn bad_options_are_lua_errors_that_never_reach_the_call() {
    for (line, want) in [
        (
            r#"call:record("m", {maxx = 5})"#,
            r#"record: unknown option "maxx" (expected max, terminator, silence)"#,
        ),
        (
            r#"call:record("m", {max = 0})"#,
            "record: opts.max must be more than 0 and at most 3600 seconds, got 0",
        ),
        (
            r#"call:record("m", {max = 3601})"#,
            "record: opts.max must be more than 0 and at most 3600 seconds, got 3601",
        ),
        (
            r#"call:record("m", {max = 0/0})"#,
            "record: opts.max must be more than 0 and at most 3600 seconds, got NaN",
        ),
        (
            r#"call:record("m", {max = "10"})"#,
            "record: expected opts.max in seconds, got string",
        ),
        (
            r#"call:record("m", 5)"#,
            "record: expected an options table or nil, got number",
        ),
        (
            r#"call:record("m", {terminator = "*1"})"#,
            r#"record: opts.terminator must be one DTMF key (0-9, *, #, A-D) or "", got "*1""#,
        ),
        (
            r#"call:record("m", {terminator = "x"})"#,
            r#"record: opts.terminator must be one DTMF key (0-9, *, #, A-D) or "", got "x""#,
        ),
        (
            r#"call:record("m", {terminator = 5})"#,
            "record: expected opts.terminator as a string, got number",
        ),
        (
            "call:read_digits({max = 0})",
            "read_digits: opts.max must be a whole number from 1 to 64, got 0",
        ),
        (
            "call:read_digits({max = 65})",
            "read_digits: opts.max must be a whole number from 1 to 64, got 65",
        ),
        (
            "call:read_digits({max = 2.5})",
            "read_digits: opts.max must be a whole number from 1 to 64, got 2.5",
        ),
        (
            r#"call:read_digits({max = "4"})"#,
            "read_digits: expected opts.max as a number, got string",
        ),
        (
            "call:read_digits({timeout = 1e9})",
            "read_digits: opts.timeout must be more than 0 and at most 300 seconds, got 1000000000",
        ),
        (
            "call:read_digits({timeout = 0})",
            "read_digits: opts.timeout must be more than 0 and at most 300 seconds, got 0",
        ),
        (
            "call:read_digits({timeout = -1})",
            "read_digits: opts.timeout must be more than 0 and at most 300 seconds, got -1",
        ),
        (
            "call:read_digits({timeout = true})",
            "read_digits: expected opts.timeout in seconds, got boolean",
        ),
        (
            "call:read_digits({digits = 4})",
            r#"read_digits: unknown option "digits" (expected max, timeout, terminator)"#,
        ),
        (
            "call:read_digits({4})",
            "read_digits: options are named (max, timeout, terminator), got a number key",
        ),
        (
            r#"call:read_digits("4")"#,
            "read_digits: expected an options table or nil, got string",
        ),
    ] {
        refused(line, want).await;
    }
}

#[tokio::test]
async fn media_actions_after_the_call_ended_raise_call_has_ended() {
    for action in [
        r#"call:play("hello")"#,
        r#"call:record("msg")"#,
        "call:read_digits()",
        "call:echo()",
    ] {
        let (_dir, runtime) = context(&format!(
            "function route(call)\n  call:reject(403)\n  {action}\nend\n"
        ));
        let api = Arc::new(FakeCall::default());
        let f = failure(route(&runtime, &api).await);
        assert_eq!((f.message.as_str(), f.line), ("call has ended", Some(3)));
        assert_eq!(
            api.actions(),
            ["reject 403"],
            "{action} never reached the call"
        );
    }

    // The caller hangs up during a prompt: the route ends quietly.
    let (_dir, runtime) = context(
        "function route(call)\n  call:answer()\n  call:play(\"menu\")\n  call:read_digits()\nend\n",
    );
    let api = Arc::new(FakeCall {
        gone_on: Some("play"),
        ..FakeCall::default()
    });
    assert_eq!(route(&runtime, &api).await, RouteOutcome::CallerGone);
    assert_eq!(api.actions(), ["answer", "play menu.wav"]);
}

#[tokio::test]
async fn each_media_action_restarts_the_instruction_budget() {
    // About 400,000 instructions per `burn()`: five in a row are over a
    // 1,000,000 budget, but not with a media action between each two.
    let lua = |between: &str| {
        format!(
            r#"
local function burn()
  local x = 0
  for i = 1, 200000 do x = x + i end
  return x
end
function route(call)
  burn() {between} burn() {between} burn() {between} burn() {between} burn()
  call:hangup()
end
"#
        )
    };
    let limits = dialplan::Limits {
        instructions: 1_000_000,
        ..dialplan::Limits::default()
    };
    let run = |script: String| async move {
        let dir = Dir::new();
        dir.write("dialplans/default.lua", &script);
        let runtime = dir.runtime_with(limits);
        let api = Arc::new(FakeCall::default());
        (route(&runtime, &api).await, api.actions())
    };

    let (outcome, actions) = run(lua("")).await;
    assert_eq!(
        failure(outcome).kind,
        dialplan::FailureKind::InstructionBudget
    );
    assert!(actions.is_empty());

    for action in [
        r#"call:play("x")"#,
        r#"call:record("x")"#,
        "call:read_digits()",
    ] {
        let (outcome, actions) = run(lua(action)).await;
        assert_eq!(outcome, RouteOutcome::HungUp, "{action}");
        assert_eq!(actions.len(), 5, "{action}: {actions:?}");
    }
}
