//! The Lua dialplan as an admin meets it in the real binary: `check`
//! compiling every file, start-up errors, reload over HTTP and SIGHUP, the
//! demo office's embedded copies, and the dialplan metrics.

mod binary;

use std::time::{Duration, Instant};

use binary::{DEADLINE, Workdir, free_ports_config, http};

const GOOD: &str = "function route(call)\n  call:reject(404)\nend\n";
const GOOD_TOO: &str = "-- v2\nfunction route(call)\n  call:reject(486)\nend\n";
/// A syntax error on line 3.
const BROKEN: &str = "function route(call)\n  call:reject(404)\n  if then\nend\n";

fn workdir() -> Workdir {
    let w = Workdir::empty();
    w.write("switchboard.toml", &free_ports_config());
    w
}

/// Waits until the log contains `needle` after byte `from`; returns the log.
fn wait_for_log(sb: &binary::Running, from: usize, needle: &str) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let log = sb.log();
        if log.get(from..).is_some_and(|l| l.contains(needle)) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the log within {DEADLINE:?}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn check_compiles_the_dialplan_and_reports_it() {
    let w = workdir();
    let out = w.run(&["check"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    assert!(
        out.stdout.contains("dialplan ") && out.stdout.contains("1 context(s), 9 plugin(s)"),
        "{}",
        out.stdout
    );
}

#[test]
fn check_reports_a_lua_syntax_error_with_file_and_line() {
    let w = workdir();
    w.write("dialplans/default.lua", BROKEN);
    let line = w.run(&["check"]).one_error_line().to_owned();
    assert!(
        line.starts_with("switchboard: dialplans/default.lua:3: "),
        "{line}"
    );

    // Every bad file gets its own line.
    w.write("plugins/broken.lua", "return {\n");
    let out = w.run(&["check"]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stderr);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("switchboard: dialplans/default.lua:3: ")),
        "{}",
        out.stderr
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("switchboard: plugins/broken.lua:")),
        "{}",
        out.stderr
    );
}

#[test]
fn check_on_the_embedded_default_uses_the_embedded_copies_and_writes_nothing() {
    let w = Workdir::bare();
    let out = w.run(&["check"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.contains("embedded copies"), "{}", out.stdout);
    assert!(!w.path().join("dialplans").exists());
}

#[test]
fn run_with_bad_lua_or_no_dialplans_is_one_line() {
    let w = workdir();
    w.write("dialplans/default.lua", BROKEN);
    let line = w.run(&["run"]).one_error_line().to_owned();
    assert!(
        line.contains("dialplan: dialplans/default.lua:3: "),
        "{line}"
    );

    let w = Workdir::bare();
    w.write("switchboard.toml", &free_ports_config());
    let line = w.run(&["run"]).one_error_line().to_owned();
    assert!(line.contains("dialplans does not exist"), "{line}");
}

#[test]
fn reload_over_http_swaps_or_keeps_the_generation() {
    let w = workdir();
    w.write("dialplans/default.lua", GOOD);
    let sb = w.start(&["run"]);
    let admin = sb.admin_addr();
    assert!(
        sb.log()
            .contains("dialplan generation 1: 1 context(s), 9 plugin(s)"),
        "{}",
        sb.log()
    );

    // Nothing changed: still a new generation (the files are read again).
    let r = http(admin, "POST", "/api/v1/reload");
    assert_eq!(r.status, 200, "{}", r.body);
    let first = json(&r.body)["generation"].as_u64().expect("generation");
    assert!(first >= 2, "{}", r.body);

    // A broken file: 422 with file and line, the generation in force kept.
    w.write("dialplans/default.lua", BROKEN);
    let r = http(admin, "POST", "/api/v1/reload");
    assert_eq!(r.status, 422, "{}", r.body);
    let body = json(&r.body);
    let kept = body["kept"].as_u64().expect("kept");
    assert!(kept >= first, "{}", r.body);
    assert_eq!(
        body["errors"][0]["file"], "dialplans/default.lua",
        "{}",
        r.body
    );
    assert_eq!(body["errors"][0]["line"], 3, "{}", r.body);
    assert!(body["errors"][0]["message"].is_string(), "{}", r.body);

    // Fixed: a later reload works.
    w.write("dialplans/default.lua", GOOD_TOO);
    let r = http(admin, "POST", "/api/v1/reload");
    assert_eq!(r.status, 200, "{}", r.body);
    let now = json(&r.body)["generation"].as_u64().expect("generation");
    assert!(now > kept, "{}", r.body);

    // GET is not the way to reload.
    assert_eq!(http(admin, "GET", "/api/v1/reload").status, 405);

    let metrics = http(admin, "GET", "/metrics").body;
    let gauge: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("dialplan_generation "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no dialplan_generation in:\n{metrics}"));
    assert!(gauge >= now, "{metrics}");
    assert!(
        metrics.contains("dialplan_reloads_total{result=\"ok\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("dialplan_reloads_total{result=\"error\"}"),
        "{metrics}"
    );
}

#[test]
fn sighup_reloads_and_logs_the_generation() {
    let w = workdir();
    let sb = w.start(&["run"]);
    let from = sb.log().len();
    sb.signal("HUP");
    wait_for_log(&sb, from, "SIGHUP received, reloading the dialplan");
    let log = wait_for_log(&sb, from, " loaded");
    let tail = &log[from..];
    assert!(
        tail.lines()
            .any(|l| l.contains("dialplan generation 2 loaded")),
        "{tail}"
    );

    // A broken file on SIGHUP: the error with file:line, and it keeps running.
    w.write("dialplans/default.lua", BROKEN);
    let from = sb.log().len();
    sb.signal("HUP");
    let log = wait_for_log(&sb, from, "dialplans/default.lua:3:");
    assert!(log[from..].contains("kept"), "{}", &log[from..]);
    assert_eq!(http(sb.admin_addr(), "GET", "/health").status, 200);
}

#[test]
fn a_file_change_is_picked_up_by_the_watcher() {
    let w = workdir();
    let sb = w.start(&["run"]);
    let from = sb.log().len();
    w.write("dialplans/default.lua", GOOD_TOO);
    let log = wait_for_log(&sb, from, "dialplan generation 2 loaded");
    assert!(!log.contains("panicked"), "{log}");
}
