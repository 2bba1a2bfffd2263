//! Loading and reloading generations: errors with `file:line`, the old
//! generation kept on error, and calls keeping the generation they began on.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Dir, FakeCall, call_to};
use dialplan::{Error, FileError, Limits, RouteOutcome, Runtime};

fn rejecting(code: u16) -> String {
    format!("function route(call)\n  call:reject({code})\nend\n")
}

async fn route(runtime: &Runtime) -> RouteOutcome {
    let api = Arc::new(FakeCall::default());
    runtime
        .call_state()
        .expect("call state")
        .run_route(api, call_to("1"))
        .await
}

#[tokio::test]
async fn syntax_error_on_reload_is_reported_and_old_generation_kept() {
    let dir = Dir::new();
    dir.write("dialplans/default.lua", &rejecting(404));
    let runtime = dir.runtime();
    assert_eq!(runtime.generation().number, 1);

    dir.write(
        "dialplans/default.lua",
        "function route(call)\n  local x = = 1\n  call:reject(403)\nend\n",
    );
    dir.write(
        "dialplans/other.lua",
        "function route(call)\n  call:answer(\nend\n",
    );
    let err = runtime.reload().expect_err("bad files");
    assert_eq!(err.kept, 1);
    assert_eq!(err.errors.len(), 2, "{err}");
    let FileError {
        file,
        line,
        message,
    } = &err.errors[0];
    assert_eq!(file, "dialplans/default.lua");
    assert_eq!(*line, Some(2), "{err}");
    assert!(message.contains("unexpected symbol"), "{err}");
    assert_eq!(err.errors[1].file, "dialplans/other.lua");
    assert_eq!(err.errors[1].line, Some(3), "{err}");
    assert!(
        err.to_string().contains("dialplans/default.lua:2: "),
        "{err}"
    );

    // The old generation still routes.
    assert_eq!(runtime.generation().number, 1);
    assert_eq!(route(&runtime).await, RouteOutcome::Rejected { code: 404 });

    // Fixed: the next reload is generation 2 with the new behaviour.
    dir.write("dialplans/default.lua", &rejecting(486));
    dir.write("dialplans/other.lua", &rejecting(404));
    assert_eq!(runtime.reload(), Ok(2));
    assert_eq!(route(&runtime).await, RouteOutcome::Rejected { code: 486 });
}

#[tokio::test]
async fn context_without_route_is_an_error() {
    let dir = Dir::new();
    dir.write("dialplans/default.lua", &rejecting(404));
    let runtime = dir.runtime();
    dir.write("dialplans/default.lua", "function rout(call)\nend\n");
    let err = runtime.reload().expect_err("no route");
    assert_eq!(err.errors[0].file, "dialplans/default.lua");
    assert!(err.errors[0].message.contains("route"), "{err}");
    assert_eq!(runtime.generation().number, 1);
}

#[tokio::test]
async fn top_level_errors_and_missing_plugins_fail_the_reload() {
    let dir = Dir::new();
    dir.write("dialplans/default.lua", &rejecting(404));
    let runtime = dir.runtime();

    dir.write(
        "dialplans/default.lua",
        "local vm = require(\"voicemail\")\nfunction route(call) end\n",
    );
    let err = runtime.reload().expect_err("missing plugin");
    assert_eq!(err.errors[0].file, "dialplans/default.lua");
    assert_eq!(err.errors[0].line, Some(1), "{err}");
    assert!(err.errors[0].message.contains("voicemail"), "{err}");

    dir.write(
        "plugins/voicemail.lua",
        "return {\n  leave = function( end,\n}\n",
    );
    let err = runtime.reload().expect_err("bad plugin");
    assert_eq!(err.errors[0].file, "plugins/voicemail.lua");
    assert_eq!(err.errors[0].line, Some(2), "{err}");

    dir.write(
        "plugins/voicemail.lua",
        "return { leave = function() end }\n",
    );
    assert_eq!(runtime.reload(), Ok(2));
}

#[test]
fn first_load_with_bad_files_is_an_error() {
    let dir = Dir::new();
    dir.write("dialplans/default.lua", "function route(call\n");
    let err =
        Runtime::new(dir.dialplans(), dir.plugins(), Limits::default()).expect_err("bad file");
    let Error::Reload(err) = err else {
        panic!("expected a reload error, got {err:?}");
    };
    assert_eq!(err.errors[0].file, "dialplans/default.lua");

    let empty = Dir::new();
    assert!(Runtime::new(empty.dialplans(), empty.plugins(), Limits::default()).is_err());
    let missing = empty.path().join("nothing-here");
    assert!(Runtime::new(&missing, empty.plugins(), Limits::default()).is_err());
}

#[tokio::test]
async fn a_call_keeps_its_generation_across_a_reload() {
    let dir = Dir::new();
    dir.write(
        "dialplans/default.lua",
        "local answer = require(\"answer\")\nfunction route(call)\n  call:sleep(0.2)\n  call:reject(answer.code)\nend\n",
    );
    dir.write("plugins/answer.lua", "return { code = 401 }\n");
    let runtime = dir.runtime();

    let state = runtime.call_state().expect("call state");
    assert_eq!(state.generation(), 1);
    let api = Arc::new(FakeCall::default());
    let in_progress = tokio::spawn(state.run_route(api, call_to("1")));

    // The call is asleep in route; change both the context and the plugin.
    tokio::time::sleep(Duration::from_millis(50)).await;
    dir.write(
        "dialplans/default.lua",
        "local answer = require(\"answer\")\nfunction route(call)\n  call:reject(answer.code + 1)\nend\n",
    );
    dir.write("plugins/answer.lua", "return { code = 410 }\n");
    assert_eq!(runtime.reload(), Ok(2));

    assert_eq!(
        in_progress.await.expect("task"),
        RouteOutcome::Rejected { code: 401 },
        "the call in progress finished on generation 1"
    );
    let state = runtime.call_state().expect("call state");
    assert_eq!(state.generation(), 2);
    let api = Arc::new(FakeCall::default());
    assert_eq!(
        state.run_route(api, call_to("1")).await,
        RouteOutcome::Rejected { code: 411 }
    );
}

#[tokio::test]
async fn watcher_reloads_when_a_file_changes() {
    let dir = Dir::new();
    dir.write("dialplans/default.lua", &rejecting(404));
    let runtime = Arc::new(dir.runtime());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let _watcher = runtime
        .watch(Duration::from_millis(100), move |result| {
            let _ = tx.send(result);
        })
        .expect("watch");

    // A bad edit: reported with file:line, generation 1 stays.
    dir.write(
        "dialplans/default.lua",
        "function route(call)\n  call:reject(\nend\n",
    );
    let result = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a reload within 5 s")
        .expect("watcher alive");
    let err = result.expect_err("bad file");
    assert_eq!(err.errors[0].file, "dialplans/default.lua");
    assert_eq!(err.errors[0].line, Some(3), "{err}");
    assert_eq!(runtime.generation().number, 1);
    assert_eq!(route(&runtime).await, RouteOutcome::Rejected { code: 404 });

    // The fix, and a new plugin directory's file, take effect.
    dir.write("dialplans/default.lua", &rejecting(486));
    let result = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a reload within 5 s")
        .expect("watcher alive");
    assert_eq!(result, Ok(2));
    assert_eq!(route(&runtime).await, RouteOutcome::Rejected { code: 486 });
}
