//! `switchboard test`: the dialplan spec runner through the real binary —
//! the shipped specs pass, a failing spec exits 1 naming its `file:line`,
//! the summary line, `--filter`, and route errors that `check` cannot see.

mod binary;

use std::path::Path;
use std::process::Command;

use binary::{Finished, Workdir, finish};

/// The last line of the report.
fn summary(out: &Finished) -> &str {
    out.stdout.lines().last().unwrap_or_default()
}

#[test]
fn the_shipped_dialplan_specs_pass() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let w = Workdir::bare();
    let config = w.write(
        "switchboard.toml",
        &format!(
            "[dialplan]\ndir = {:?}\nplugins = {:?}\nsounds = {:?}\n",
            repo.join("dialplans"),
            repo.join("plugins"),
            repo.join("sounds"),
        ),
    );
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command
        .arg("test")
        .arg("--config")
        .arg(&config)
        .current_dir(w.path())
        .env_remove("RUST_LOG");
    let out = finish(command);
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    for spec in [
        "default_spec.lua",
        "callforward_spec.lua",
        "speeddial_spec.lua",
        "dnd_spec.lua",
        "followme_spec.lua",
        "ivr_spec.lua",
        "ringgroup_spec.lua",
        "timeconditions_spec.lua",
    ] {
        assert!(out.stdout.contains(spec), "{spec} not run:\n{}", out.stdout);
    }
    assert!(!out.stdout.contains("FAIL"), "{}", out.stdout);
    let passed: usize = summary(&out)
        .strip_suffix(" passed, 0 failed")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("summary line: {}", summary(&out)));
    assert!(passed >= 45, "{}", out.stdout);
}

const SPEC: &str = r#"it("1001 reaches 1002", function()
  local call = sim.call{from = "1001", to = "1002"}
  sim.phone("1002"):answers_after(3)
  expect(call):dialled("1002", {timeout = 20})
end)

it("busy 1002 gives 486", function()
  local call = sim.call{from = "1001", to = "5555"}
  sim.phone("1002"):is_busy()
  expect(call):rejected(486)
end)
"#;

#[test]
fn a_failing_case_exits_1_with_its_file_line_and_the_summary() {
    let w = Workdir::empty();
    w.write("dialplans/tests/calls_spec.lua", SPEC);
    let out = w.run(&["test"]);
    assert_eq!(out.status.code(), Some(1), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("ok    1001 reaches 1002"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("FAIL  busy 1002 gives 486"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "dialplans/tests/calls_spec.lua:10: expected a rejection with 486, the caller got 404"
        ),
        "{}",
        out.stdout
    );
    assert_eq!(summary(&out), "1 passed, 1 failed");
}

#[test]
fn passing_specs_exit_0_and_filter_picks_cases() {
    let w = Workdir::empty();
    w.write("dialplans/tests/calls_spec.lua", SPEC);
    w.write(
        "dialplans/tests/echo_spec.lua",
        "local call = sim.call{from = \"1001\", to = \"600\"}\nexpect(call):answered()\n",
    );
    let out = w.run(&["test", "--filter", "reaches"]);
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    assert!(!out.stdout.contains("busy 1002"), "{}", out.stdout);
    assert!(!out.stdout.contains("echo_spec"), "{}", out.stdout);
    assert_eq!(summary(&out), "1 passed, 0 failed");

    // A file without `it` is one case, named after the file.
    let out = w.run(&["test", "--filter", "echo"]);
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("ok    echo_spec.lua"), "{}", out.stdout);
    assert_eq!(summary(&out), "1 passed, 0 failed");

    let out = w.run(&["test", "--filter", "nothing like it"]);
    assert!(
        out.one_error_line()
            .contains("matches --filter \"nothing like it\""),
        "{}",
        out.stderr
    );
}

#[test]
fn a_spec_directory_can_be_given() {
    let w = Workdir::empty();
    w.write("elsewhere/one_spec.lua", SPEC);
    w.write("elsewhere/helper.lua", "error('not run')\n");
    let out = w.run(&["test", "elsewhere"]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stdout);
    assert!(
        out.stdout.contains("elsewhere/one_spec.lua:10:"),
        "{}",
        out.stdout
    );
    assert_eq!(summary(&out), "1 passed, 1 failed");
}

#[test]
fn route_errors_that_check_misses_fail_the_case_with_the_dialplan_line() {
    let w = Workdir::empty();
    w.write(
        "dialplans/typo.lua",
        "function route(call)\n  if call.request_uri.user == \"1\" then\n    call:anwser()\n  end\n  call:dial(\"1002\", {timeout = \"soon\"})\nend\n",
    );
    // `check` compiles it: both mistakes only show when a call reaches them.
    let out = w.run(&["check"]);
    assert!(out.status.success(), "{}", out.stderr);
    w.write(
        "dialplans/tests/typo_spec.lua",
        r#"it("unknown method", function()
  sim.call{from = "1001", to = "1", context = "typo"}
end)
it("wrong argument type", function()
  local call = sim.call{from = "1001", to = "2", context = "typo"}
  expect(call):dialled("1002")
end)
it("an expected failure passes", function()
  expect(sim.call{from = "1001", to = "1", context = "typo"}):failed("anwser")
end)
"#,
    );
    let out = w.run(&["test"]);
    assert_eq!(out.status.code(), Some(1), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(
            "dialplans/tests/typo_spec.lua:2: the route of this call failed: dialplans/typo.lua:3: attempt to call a nil value (method 'anwser') — the call object has no method 'anwser'; did you mean 'answer'?"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("dialplans/tests/typo_spec.lua:6: the route failed: dialplans/typo.lua:5: dial: expected opts.timeout in seconds, got string"),
        "{}",
        out.stdout
    );
    assert_eq!(summary(&out), "1 passed, 2 failed");
}

#[test]
fn the_virtual_clock_drives_os_date_in_the_dialplan() {
    let w = Workdir::empty();
    w.write(
        "dialplans/hours.lua",
        r#"function route(call)
  local hour = tonumber(os.date("%H"))
  if hour < 9 or hour >= 18 then
    call:reject(480, "Closed")
    return
  end
  call:sleep(7200)
  call:dial(os.date("%H:%M") == "18:30" and "1002" or "1003")
end
"#,
    );
    w.write(
        "dialplans/tests/hours_spec.lua",
        r#"it("closed in the evening", function()
  sim.clock:set("2026-12-24 18:30")
  expect(sim.call{from = "1001", to = "1", context = "hours"}):rejected(480)
end)
it("open in the afternoon; sleeps pass at once", function()
  sim.clock:set("2026-12-24 16:30")
  expect(sim.call{from = "1001", to = "1", context = "hours"}):dialled("1002")
  expect(os.date("%H:%M")):equals("18:30")
end)
"#,
    );
    let out = w.run(&["test"]);
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    assert_eq!(summary(&out), "2 passed, 0 failed");
}

#[test]
fn no_spec_files_is_one_error_line() {
    let w = Workdir::empty();
    let out = w.run(&["test", "nowhere"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.one_error_line()
            .contains("cannot read the spec directory nowhere"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_editor_config_points_at_the_annotations() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text =
        std::fs::read_to_string(repo.join("dialplans/.luarc.json")).expect("read .luarc.json");
    let luarc: serde_json::Value = serde_json::from_str(&text).expect(".luarc.json is JSON");
    assert_eq!(luarc["runtime.version"], "Lua 5.4");
    let library = luarc["workspace.library"]
        .as_array()
        .expect("workspace.library");
    for dir in library {
        let dir = dir.as_str().expect("a path");
        assert!(
            repo.join("dialplans").join(dir).is_dir(),
            "{dir} in .luarc.json"
        );
    }
    assert!(library.iter().any(|d| d == "types"), "{text}");
    assert!(repo.join("dialplans/types/switchboard.lua").is_file());
}

#[test]
fn broken_files_are_reported_with_their_line() {
    let w = Workdir::empty();
    w.write(
        "dialplans/tests/bad_spec.lua",
        "it(\"x\", function()\n  local = 1\nend)\n",
    );
    let out = w.run(&["test"]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stdout);
    assert!(out.stdout.contains("FAIL  bad_spec.lua"), "{}", out.stdout);
    assert!(
        out.stdout.contains("dialplans/tests/bad_spec.lua:2:"),
        "{}",
        out.stdout
    );
    assert_eq!(summary(&out), "0 passed, 1 failed");

    // A dialplan that does not compile: the specs cannot run at all.
    w.write(
        "dialplans/broken.lua",
        "function route(call)\n  if then\nend\n",
    );
    let out = w.run(&["test"]);
    assert!(
        out.one_error_line().contains("dialplans/broken.lua:2:"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}

#[test]
fn endless_loops_in_a_spec_or_its_route_fail_the_case_and_the_run_goes_on() {
    let w = Workdir::empty();
    w.write(
        "dialplans/spin.lua",
        "function route(call)\n  local n = 0\n  while true do n = n + 1 end\nend\n",
    );
    w.write(
        "dialplans/tests/loops_spec.lua",
        r#"it("before the loops", function()
  expect(sim.call{from = "1001", to = "1002"}):dialled("1002")
end)
it("spins in the spec", function()
  while true do end
end)
it("spins in the route", function()
  expect(sim.call{from = "1001", to = "1", context = "spin"}):answered()
end)
it("swallows the stop with pcall", function()
  while true do pcall(function() while true do end end) end
end)
it("after the loops", function()
  expect(sim.call{from = "1001", to = "1002"}):dialled("1002")
end)
"#,
    );
    w.write(
        "dialplans/tests/zz_spec.lua",
        "expect(sim.call{from = \"1001\", to = \"1002\"}):dialled(\"1002\")\n",
    );
    let out = w.run(&["test"]);
    assert_eq!(out.status.code(), Some(1), "{}\n{}", out.stdout, out.stderr);
    for line in [
        "ok    before the loops",
        "FAIL  spins in the spec",
        "dialplans/tests/loops_spec.lua:5: spec exceeded the instruction limit",
        "FAIL  spins in the route",
        "FAIL  swallows the stop with pcall",
        "ok    after the loops",
        "ok    zz_spec.lua",
    ] {
        assert!(
            out.stdout.contains(line),
            "{line:?} not in:\n{}",
            out.stdout
        );
    }
    // The route's loop: the spec line of the call, the route's line, the limit.
    let route = out
        .stdout
        .lines()
        .skip_while(|l| !l.contains("FAIL  spins in the route"))
        .nth(1)
        .unwrap_or_default();
    assert!(
        route.contains("dialplans/tests/loops_spec.lua:8:")
            && route.contains("dialplans/spin.lua:3:")
            && route.contains("exceeded")
            && route.contains("limit"),
        "{}",
        out.stdout
    );
    let pcall = out
        .stdout
        .lines()
        .skip_while(|l| !l.contains("FAIL  swallows the stop"))
        .nth(1)
        .unwrap_or_default();
    assert!(
        pcall.contains("loops_spec.lua:11:") && pcall.contains("exceeded the instruction limit"),
        "{}",
        out.stdout
    );
    assert_eq!(summary(&out), "3 passed, 3 failed");
}

#[test]
fn the_spec_runner_keeps_the_configured_route_time_limit() {
    let w = Workdir::empty();
    // An instruction budget no loop reaches first: the clock stops it.
    w.write(
        "switchboard.toml",
        "[dialplan]\ninstruction_budget = 10000000000\nroute_time_limit = \"200ms\"\n",
    );
    w.write(
        "dialplans/spin.lua",
        "function route(call)\n  while true do end\nend\n",
    );
    w.write(
        "dialplans/tests/slow_spec.lua",
        r#"it("spins in the spec", function()
  while true do end
end)
it("spins in the route", function()
  expect(sim.call{from = "5555", to = "1", context = "spin"}):answered()
end)
it("passes", function()
  expect(1 + 1):equals(2)
end)
"#,
    );
    let out = w.run(&["test"]);
    assert_eq!(out.status.code(), Some(1), "{}\n{}", out.stdout, out.stderr);
    for line in [
        "dialplans/tests/slow_spec.lua:2: spec exceeded the time limit: ran 200 ms of wall clock (dialplan.route_time_limit",
        "dialplans/tests/slow_spec.lua:5: the route failed: dialplans/spin.lua:2: route time limit exceeded: ran 200 ms",
        "ok    passes",
    ] {
        assert!(
            out.stdout.contains(line),
            "{line:?} not in:\n{}",
            out.stdout
        );
    }
    assert_eq!(summary(&out), "1 passed, 2 failed");
}
