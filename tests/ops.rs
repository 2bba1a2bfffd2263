//! The operator subcommands against the real binary: a server runs from a
//! config, `switchboard --config THAT COMMAND` (another process) finds it
//! through the same config and asks its admin API; without a server each
//! command says so in one line and exits 1. Also `completions` and
//! `manpage`.

mod binary;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use testkit::{Phone, Server, Ua};

const DOMAIN: &str = "test.invalid";
const WAIT: Duration = Duration::from_secs(5);

/// A port nothing listens on now (the admin port must be known before
/// the server starts: the commands read it from the config).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn config(admin_port: u16, top: &str) -> String {
    format!(
        r#"
{top}
[sip]
listen = ["udp:127.0.0.1:0"]
domain = "{DOMAIN}"

[admin]
listen = "127.0.0.1:{admin_port}"

[storage]
backend = "memory"

[registrar]
qualify_interval = "0s"

[security]
ban_after_failures = 3
ban_window = "60s"
ban_time = "10m"

[[extension]]
id = "1001"
password = "pw-1001-secret"

[[extension]]
id = "1002"
password = "pw-1002-secret"
"#
    )
}

fn start() -> Server {
    Server::start_with(
        env!("CARGO_BIN_EXE_switchboard").as_ref(),
        &config(free_port(), ""),
    )
    .expect("switchboard starts")
}

fn config_path(s: &Server) -> PathBuf {
    s.dir().join("switchboard.toml")
}

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// `switchboard --config CONFIG ARGS`, in another directory.
fn sb(config: &std::path::Path, args: &[&str]) -> Out {
    let dir = tempfile::tempdir().expect("tempdir");
    let out: Output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("--config")
        .arg(config)
        .args(args)
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .output()
        .expect("switchboard runs");
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ok(s: &Server, args: &[&str]) -> String {
    let out = sb(&config_path(s), args);
    assert_eq!(out.code, Some(0), "{args:?}: {}{}", out.stdout, out.stderr);
    assert!(out.stderr.is_empty(), "{args:?}: {}", out.stderr);
    out.stdout
}

fn json(s: &Server, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let text = ok(s, &all);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?} --json: {e}: {text}"))
}

fn fits_80(text: &str) {
    for line in text.lines() {
        assert!(line.chars().count() <= 80, "wider than 80: {line:?}");
    }
}

fn phone(s: &Server, user: &str) -> Phone {
    let mut p = Phone::udp(
        s.udp.expect("udp"),
        user,
        &format!("pw-{user}-secret"),
        DOMAIN,
    );
    assert_eq!(p.register(), 200, "{user} registers");
    p
}

#[test]
fn every_command_says_so_in_one_line_when_no_server_runs() {
    let port = free_port();
    let w = binary::Workdir::with_file(
        "switchboard.toml",
        // An admin listener off loopback makes `run` and `check` warn;
        // operator commands print only their answer or their error, and
        // reach a listener on every address through loopback.
        &config(port, "").replace(
            &format!("listen = \"127.0.0.1:{port}\""),
            &format!("listen = \"0.0.0.0:{port}\""),
        ),
    );
    let check = w.run(&["check"]);
    assert!(check.stderr.contains("warning"), "{}", check.stderr);
    let expected = format!(
        "switchboard: no switchboard answering on http://127.0.0.1:{port} — is it running?"
    );
    for args in [
        &["status"][..],
        &["registrations"],
        &["calls"],
        &["cdrs", "--csv"],
        &["reload"],
        &["hangup", "x@y"],
        &["unregister", "1001"],
        &["bans"],
        &["unban", "127.0.0.2"],
        &["trace", "x@y"],
        &["status", "--json"],
    ] {
        let out = w.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", out.stderr);
        assert_eq!(out.stderr.trim_end(), expected, "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
    }
}

#[test]
fn status_registrations_and_unregister() {
    let s = start();
    let _a = phone(&s, "1001");
    let status = ok(&s, &["status"]);
    fits_80(&status);
    assert!(status.starts_with("switchboard "), "{status}");
    assert!(status.contains("generation 1"), "{status}");
    assert!(status.contains("1 registration, 0 calls"), "{status}");
    let udp = format!("udp:{}", s.udp.expect("udp"));
    assert!(status.contains(&udp), "{status}");
    let v = json(&s, &["status"]);
    assert_eq!(v["generation"], 1, "{v}");
    assert_eq!(v["counts"]["registrations"], 1, "{v}");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));

    let table = ok(&s, &["registrations"]);
    fits_80(&table);
    assert!(table.starts_with("EXT"), "{table}");
    assert!(
        table.lines().nth(1).is_some_and(|l| l.starts_with("1001 ")),
        "{table}"
    );
    let v = json(&s, &["registrations", "1001"]);
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v[0]["aor"], format!("sip:1001@{DOMAIN}"));
    let v = json(&s, &["registrations", "1002"]);
    assert_eq!(v.as_array().map(Vec::len), Some(0), "{v}");

    let out = ok(&s, &["unregister", "1001"]);
    assert_eq!(
        out.trim(),
        format!("removed 1 registration of sip:1001@{DOMAIN}")
    );
    assert_eq!(ok(&s, &["registrations"]).trim(), "no registrations");
    let (status, body) = s.http_get("/api/v1/registrations").expect("admin");
    assert_eq!((status, body.trim()), (200, "[]"));
    let out = sb(&config_path(&s), &["unregister", "1001"]);
    assert_eq!(out.code, Some(1));
    assert_eq!(
        out.stderr.trim_end(),
        format!("switchboard: sip:1001@{DOMAIN} has no registrations")
    );
}

#[test]
fn hangup_ends_a_live_call_by_any_legs_call_id() {
    let s = start();
    let mut a = phone(&s, "1001");
    let mut b = phone(&s, "1002");
    let call = a.call("1002").expect("INVITE");
    let incoming = b.incoming(WAIT).expect("callee rings");
    b.reply(&incoming.invite, &incoming.tag, 200).unwrap();
    let (answer, _) = a.final_response(WAIT).expect("200");
    assert_eq!(answer.status, 200);
    a.ack(&call, &answer).unwrap();
    b.request("ACK", WAIT).expect("ACK");

    let calls = json(&s, &["calls"]);
    let id = calls[0]["id"].as_str().expect("call id").to_owned();
    let table = ok(&s, &["calls"]);
    fits_80(&table);
    assert!(
        table.contains("1001") && table.contains("bridged"),
        "{table}"
    );
    // The callee's leg has its own Call-ID; hanging that up ends the call.
    let branch = incoming.invite.call_id().expect("Call-ID").to_owned();
    assert_ne!(branch, id);
    let out = ok(&s, &["hangup", &branch]);
    assert_eq!(out.trim(), format!("hung up {branch}"));
    let bye = a.request("BYE", WAIT).expect("the caller gets BYE");
    a.reply(&bye, "", 200).unwrap();
    let bye = b.request("BYE", WAIT).expect("the callee gets BYE");
    b.reply(&bye, &incoming.tag, 200).unwrap();

    let out = sb(&config_path(&s), &["hangup", &id]);
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    assert!(out.stderr.contains("no call in progress"), "{}", out.stderr);
    // Its CDR says who ended it.
    let mut cdrs = serde_json::Value::Null;
    for _ in 0..100 {
        cdrs = json(&s, &["cdrs"]);
        if cdrs.as_array().is_some_and(|c| !c.is_empty()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(cdrs[0]["hangup_cause"], "admin hangup", "{cdrs}");
}

#[test]
fn hangup_of_a_ringing_call_refuses_the_caller_and_cancels_the_callee() {
    let s = start();
    let mut a = phone(&s, "1001");
    let mut b = phone(&s, "1002");
    let call = a.call("1002").expect("INVITE");
    let incoming = b.incoming(WAIT).expect("callee rings");
    b.reply(&incoming.invite, &incoming.tag, 180).unwrap();
    assert_eq!(a.response(WAIT).expect("180").status, 180);
    let id = call.call_id.clone();
    assert_eq!(ok(&s, &["hangup", &id]).trim(), format!("hung up {id}"));
    let (refusal, _) = a.final_response(WAIT).expect("a final answer");
    assert_eq!(refusal.status, 480);
    let cancel = b.request("CANCEL", WAIT).expect("the callee stops ringing");
    b.reply(&cancel, &incoming.tag, 200).unwrap();
    b.reply(&incoming.invite, &incoming.tag, 487).unwrap();
}

#[test]
fn cdrs_limit_since_csv_and_bad_queries() {
    let s = start();
    let mut a = phone(&s, "1001");
    for dest in ["1002", "9999"] {
        // 1002 is not registered (its voicemail answers; hung up at
        // once), 9999 is no one (404).
        let call = a.call(dest).expect("INVITE");
        let (r, _) = a.final_response(WAIT).expect("final");
        if dest == "1002" {
            assert_eq!(r.status, 200, "voicemail answers");
            let mut dialog = a.ack(&call, &r).expect("ACK");
            a.request_in(&mut dialog, "BYE", None)
                .expect("BYE answered");
        } else {
            assert_eq!(r.status, 404);
        }
        // One CDR after the other, so that their order is known.
        let want = if dest == "1002" { 1 } else { 2 };
        for _ in 0..100 {
            if json(&s, &["cdrs"]).as_array().map(Vec::len) == Some(want) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let mut all = serde_json::Value::Null;
    for _ in 0..100 {
        all = json(&s, &["cdrs"]);
        if all.as_array().map(Vec::len) == Some(2) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(all.as_array().map(Vec::len), Some(2), "{all}");
    let one = json(&s, &["cdrs", "--limit", "1"]);
    assert_eq!(one.as_array().map(Vec::len), Some(1), "{one}");
    assert_eq!(one[0]["to"], all[0]["to"], "newest first");
    let since = json(&s, &["cdrs", "--since", "1h"]);
    assert_eq!(since.as_array().map(Vec::len), Some(2), "{since}");
    let future = json(&s, &["cdrs", "--since", "2999-01-01T00:00:00Z"]);
    assert_eq!(future.as_array().map(Vec::len), Some(0), "{future}");

    let csv = ok(&s, &["cdrs", "--csv"]);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("id,call_id,start,"), "{csv}");
    let header: Vec<&str> = lines[0].split(',').collect();
    let to = header.iter().position(|h| *h == "to").expect("to column");
    assert!(
        lines[2]
            .split(',')
            .nth(to)
            .is_some_and(|t| t.contains("1002")),
        "{csv}"
    );
    let table = ok(&s, &["cdrs"]);
    fits_80(&table);
    assert!(table.starts_with("START"), "{table}");

    for bad in ["/api/v1/cdrs?limit=abc", "/api/v1/cdrs?since=whenever"] {
        let (status, body) = s.http_get(bad).expect("admin");
        assert_eq!(status, 400, "{bad}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
        assert!(v["error"].as_str().is_some(), "{body}");
    }
    let out = sb(&config_path(&s), &["cdrs", "--since", "whenever"]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.starts_with("switchboard: since="),
        "{}",
        out.stderr
    );
}

#[test]
fn reload_prints_the_generation_or_the_errors_and_exits_1() {
    let s = start();
    assert_eq!(
        ok(&s, &["reload"]).trim(),
        "dialplan reloaded: generation 2"
    );
    assert_eq!(json(&s, &["reload"])["generation"], 3);
    std::fs::write(
        s.dir().join("dialplans/default.lua"),
        "function route(call)\n  call:answer(\nend\n",
    )
    .expect("write broken Lua");
    let out = sb(&config_path(&s), &["reload"]);
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    let last = out.stderr.lines().last().unwrap_or("");
    assert!(
        last.starts_with("switchboard: ") && last.contains("default.lua:3: "),
        "{}",
        out.stderr
    );
}

#[test]
fn bans_and_unban() {
    let s = start();
    assert_eq!(ok(&s, &["bans"]).trim(), "no bans");
    let mut scanner =
        Ua::udp_from(s.udp.expect("udp"), [127, 0, 0, 2].into()).expect("ua at 127.0.0.2");
    let req = scanner.register_request("1001", DOMAIN, 600);
    for _ in 0..3 {
        let r = scanner
            .transact_authenticated(&req, "1001", "guess")
            .expect("answered");
        assert_eq!(r.status, 401);
    }
    let table = ok(&s, &["bans"]);
    fits_80(&table);
    assert!(table.contains("127.0.0.2"), "{table}");
    assert!(table.contains("1001"), "{table}");
    let v = json(&s, &["bans"]);
    assert_eq!(v["sources"][0]["source"], "127.0.0.2", "{v}");
    assert_eq!(ok(&s, &["unban", "127.0.0.2"]).trim(), "lifted 127.0.0.2");
    assert_eq!(ok(&s, &["unban", "1001"]).trim(), "lifted 1001");
    assert_eq!(ok(&s, &["bans"]).trim(), "no bans");
    let out = sb(&config_path(&s), &["unban", "127.0.0.2"]);
    assert_eq!(out.code, Some(1));
    assert_eq!(
        out.stderr.trim_end(),
        "switchboard: 127.0.0.2 is not banned"
    );
}

#[test]
fn the_token_file_beside_the_storage_is_found() {
    // No admin.token: the server generates one beside its storage, and the
    // commands read it from there.
    let port = free_port();
    let w = binary::Workdir::with_file(
        "switchboard.toml",
        &format!(
            "[sip]\nlisten = [\"udp:127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:{port}\"\n[storage]\npath = \"var/sb.redb\"\n"
        ),
    );
    let _server = w.start(&["run"]);
    let out = w.run(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(v["generation"], 1);
}

#[test]
fn completions_and_man_page() {
    let w = binary::Workdir::bare();
    let out = w.run(&["completions", "bash"]);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    for word in [
        "switchboard",
        "status",
        "registrations",
        "hangup",
        "trace",
        "--json",
    ] {
        assert!(out.stdout.contains(word), "{word} not in the bash script");
    }
    for shell in ["zsh", "fish"] {
        let out = w.run(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
        assert!(out.stdout.contains("unregister"), "{shell}");
    }
    let out = w.run(&["manpage"]);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert!(
        out.stdout.starts_with(".ie") || out.stdout.contains(".TH switchboard"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains(".SH"), "{}", out.stdout);
    assert!(out.stdout.contains("unregister"), "{}", out.stdout);
}

#[test]
fn trace_shows_the_ladder_of_a_forked_answered_and_ended_call() {
    let s = start();
    let mut a = phone(&s, "1001");
    let mut desk = phone(&s, "1002");
    let mut mobile = phone(&s, "1002");
    let call = a.call("1002").expect("INVITE");
    let at_desk = desk.incoming(WAIT).expect("desk rings");
    let at_mobile = mobile.incoming(WAIT).expect("mobile rings");
    // Nobody answers within 200 ms, so the caller gets a 100 Trying then
    // (RFC 3261 §17.2.1; a call that rings or answers sooner gets none).
    std::thread::sleep(Duration::from_millis(300));
    desk.reply(&at_desk.invite, &at_desk.tag, 180).unwrap();
    mobile
        .reply(&at_mobile.invite, &at_mobile.tag, 200)
        .unwrap();
    let (ok_, _) = a.final_response(WAIT).expect("200");
    assert_eq!(ok_.status, 200);
    let mut dialog = a.ack(&call, &ok_).unwrap();
    mobile.request("ACK", WAIT).expect("ACK");
    let cancel = desk.request("CANCEL", WAIT).expect("CANCEL");
    desk.reply(&cancel, &at_desk.tag, 200).unwrap();
    desk.reply(&at_desk.invite, &at_desk.tag, 487).unwrap();

    // Live: found by the caller's Call-ID.
    let id = ok_.call_id().expect("Call-ID").to_owned();
    let live = json(&s, &["trace", &id]);
    assert_eq!(live["live"], true, "{live}");

    let bye = a
        .request_in(&mut dialog, "BYE", None)
        .expect("BYE answered");
    assert_eq!(bye.status, 200);
    let bye = mobile.request("BYE", WAIT).expect("the callee gets BYE");
    mobile.reply(&bye, &at_mobile.tag, 200).unwrap();

    // Ended: found by the answering branch's Call-ID as well.
    let branch = at_mobile.invite.call_id().expect("Call-ID").to_owned();
    let mut v = serde_json::Value::Null;
    for _ in 0..100 {
        v = json(&s, &["trace", &branch]);
        if v["live"] == false {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(v["call_id"], id.as_str(), "{v}");
    assert_eq!(v["live"], false, "{v}");
    let events = v["events"].as_array().expect("events").clone();
    // Each line of the ladder as "in/out first-line" or "step".
    let ladder: Vec<String> = events
        .iter()
        .map(|e| match e["kind"].as_str() {
            Some("sip") => format!(
                "{} {}",
                e["direction"].as_str().unwrap_or(""),
                e["first_line"].as_str().unwrap_or("")
            ),
            _ => format!(
                "{} {}",
                e["location"].as_str().unwrap_or("-"),
                e["step"].as_str().unwrap_or("")
            ),
        })
        .collect();
    let text = ladder.join("\n");
    let at = |needle: &str| {
        ladder
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} not in the ladder:\n{text}"))
    };
    let invite_in = at("in INVITE sip:1002@");
    let trying = at("out SIP/2.0 100 Trying");
    let dial = at(&format!(
        "default.lua:{} call:dial(\"1002\", {{timeout = ",
        default_dial_line()
    ));
    let dialled = at("- dialled 2 contacts");
    let invite_out = at("out INVITE sip:1002@");
    let answered = at("- answered by 1002 at udp:127.0.0.1:");
    let ok_out = answered
        + ladder[answered..]
            .iter()
            .position(|l| l.starts_with("out SIP/2.0 200"))
            .expect("200 to the caller");
    let cancel_out = at("out CANCEL ");
    let bye_in = at("in BYE ");
    let bye_out = at("out BYE ");
    let ended = at("- call ended: answered");
    assert!(
        invite_in < trying
            && trying < answered
            && invite_in < dial
            && dial < dialled
            && dialled < answered
            && invite_out < answered
            && answered < cancel_out
            && answered < ok_out
            && ok_out < bye_in
            && bye_in < bye_out
            && bye_in < ended,
        "out of order:\n{text}"
    );
    // Two INVITEs went out (the fork), both answered or cancelled.
    assert_eq!(
        ladder
            .iter()
            .filter(|l| l.starts_with("out INVITE "))
            .count(),
        2,
        "{text}"
    );
    // Key headers, and never credentials (the caller's INVITE carried them).
    let first = &events[invite_in];
    let headers: Vec<&str> = first["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter_map(|h| h.as_str())
        .collect();
    assert!(
        headers.iter().any(|h| h.starts_with("From:")),
        "{headers:?}"
    );
    assert!(
        headers.iter().any(|h| h.starts_with("CSeq:")),
        "{headers:?}"
    );
    let full = json(&s, &["trace", &branch, "--full"]);
    let all = full.to_string();
    assert!(all.contains("Proxy-Authorization: [removed]"), "{all}");
    assert!(
        !all.contains("response=") && !all.contains("Digest username"),
        "{all}"
    );
    assert!(!live.to_string().contains("Digest username"));

    // The human ladder: times, arrows, the Lua line; fits no table, but
    // says what happened in order.
    let human = ok(&s, &["trace", &id]);
    assert!(human.starts_with(&format!("call {id} (ended)")), "{human}");
    assert!(human.contains("<- udp:127.0.0.1:"), "{human}");
    assert!(
        human.contains(&format!(
            "default.lua:{} call:dial(\"1002\"",
            default_dial_line()
        )),
        "{human}"
    );
    assert!(human.contains("From: "), "{human}");
    let full_text = ok(&s, &["trace", &id, "--full"]);
    assert!(full_text.contains("m=audio"), "{full_text}");
    assert!(!full_text.contains("Digest username"), "{full_text}");

    let out = sb(&config_path(&s), &["trace", "no-such-call"]);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("no trace of a call"), "{}", out.stderr);
}

#[test]
fn admin_trace_calls_is_checked_with_its_line() {
    let w = binary::Workdir::with_file(
        "switchboard.toml",
        "[sip]\nlisten = [\"udp:127.0.0.1:0\"]\n\n[admin]\ntrace_calls = -1\n",
    );
    let out = w.run(&["check"]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stdout);
    assert!(
        out.stderr.contains("switchboard.toml:5") && out.stderr.contains("admin.trace_calls"),
        "{}",
        out.stderr
    );
    w.write(
        "switchboard.toml",
        "[sip]\nlisten = [\"udp:127.0.0.1:0\"]\n\n[admin]\ntrace_calls = 0\n",
    );
    let out = w.run(&["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
}

/// A trace's events as "in/out first-line" and "location step" lines.
fn ladder_of(v: &serde_json::Value) -> Vec<String> {
    v["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| match e["kind"].as_str() {
            Some("sip") => format!(
                "{} {}",
                e["direction"].as_str().unwrap_or(""),
                e["first_line"].as_str().unwrap_or("")
            ),
            _ => format!(
                "{} {}",
                e["location"].as_str().unwrap_or("-"),
                e["step"].as_str().unwrap_or("")
            ),
        })
        .collect()
}

/// Where each of `needles` is in `ladder`, in order: each found after the
/// one before it (panics with the ladder otherwise).
fn in_order(ladder: &[String], needles: &[&str]) -> Vec<usize> {
    let text = ladder.join("\n");
    let mut from = 0;
    let mut at = Vec::new();
    for needle in needles {
        let i = ladder[from..]
            .iter()
            .position(|l| l.contains(needle))
            .map(|i| i + from)
            .unwrap_or_else(|| panic!("{needle:?} not in order in the ladder:\n{text}"));
        at.push(i);
        from = i + 1;
    }
    at
}

#[test]
fn trace_shows_the_refused_first_round_and_calls_only_ever_refused() {
    let s = start();
    // 1002 registered from this address: the wrong passwords below lock
    // 1001 but do not ban the address (it holds another extension).
    let mut callee = phone(&s, "1002");

    // A phone that authenticates: its challenged first round, then the call.
    let mut good = phone(&s, "1001");
    let call = good.call("1002").expect("INVITE");
    let rings = callee.incoming(WAIT).expect("1002 rings");
    // A failing callee (busy would go to voicemail): the shipped
    // dialplan answers 503.
    callee.reply(&rings.invite, &rings.tag, 500).unwrap();
    assert_eq!(good.final_response(WAIT).unwrap().0.status, 503);
    let v = json(&s, &["trace", &call.call_id, "--full"]);
    assert_eq!(v["admitted"], true, "{v}");
    let ladder = ladder_of(&v);
    let at = in_order(
        &ladder,
        &[
            "in INVITE sip:1002@",
            "- not admitted (407): no credentials for realm",
            "out SIP/2.0 407 Proxy Authentication Required",
            "in INVITE sip:1002@",
            // No "100 Trying" expected: the callee's 500, hence our 503,
            // comes within 200 ms (RFC 3261 §17.2.1), unless the machine
            // is slow; the forked call's ladder above shows the 100.
            "default.lua:",
            "out SIP/2.0 503",
        ],
    );
    let events = v["events"].as_array().expect("events");
    let text = |i: usize| events[i]["text"].as_str().unwrap_or("").to_owned();
    // The first INVITE has no credentials; the second carries them,
    // removed, with the next CSeq of the same Call-ID.
    assert!(
        !text(at[0]).contains("Proxy-Authorization"),
        "{}",
        text(at[0])
    );
    assert!(
        text(at[3]).contains("Proxy-Authorization: [removed]"),
        "{}",
        text(at[3])
    );
    let cseq = |i: usize| {
        text(i)
            .lines()
            .find(|l| l.starts_with("CSeq:"))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        cseq(at[0]).ends_with(" INVITE") && cseq(at[3]).ends_with(" INVITE"),
        "{} / {}",
        cseq(at[0]),
        cseq(at[3])
    );
    assert_ne!(cseq(at[0]), cseq(at[3]));
    assert!(!v.to_string().contains("Digest username"), "{v}");

    // A wrong password: INVITE, 407, INVITE with credentials, 407 again
    // (unknown users and wrong passwords are challenged again, alike on
    // the wire), the reason in the trace. Never routed.
    let mut wrong = Phone::udp(s.udp.expect("udp"), "1001", "not-the-password", DOMAIN);
    let refused = wrong.call("1002").expect("INVITE");
    assert_eq!(wrong.final_response(WAIT).unwrap().0.status, 407);
    let v = json(&s, &["trace", &refused.call_id]);
    assert_eq!(
        (&v["admitted"], &v["live"]),
        (&false.into(), &false.into()),
        "{v}"
    );
    let ladder = ladder_of(&v);
    in_order(
        &ladder,
        &[
            "in INVITE sip:1002@",
            "- not admitted (407): no credentials for realm",
            "out SIP/2.0 407",
            "in INVITE sip:1002@",
            "- not admitted (407): wrong password for extension \"1001\"",
            "out SIP/2.0 407",
        ],
    );
    assert!(
        !ladder
            .iter()
            .any(|l| l.contains("100 Trying") || l.contains(".lua:")),
        "{}",
        ladder.join("\n")
    );
    let human = ok(&s, &["trace", &refused.call_id]);
    assert!(
        human.starts_with(&format!(
            "call {} (refused before routing)",
            refused.call_id
        )),
        "{human}"
    );
    assert!(human.contains("wrong password for extension"), "{human}");

    // Two more wrong passwords lock 1001 (ban_after_failures = 3): the
    // next call's second round gets 403 with the reason.
    for _ in 0..2 {
        wrong.call("1002").expect("INVITE");
        assert_eq!(wrong.final_response(WAIT).unwrap().0.status, 407);
    }
    let locked = wrong.call("1002").expect("INVITE");
    let (r, _) = wrong.final_response(WAIT).unwrap();
    assert_eq!(r.status, 403);
    let v = json(&s, &["trace", &locked.call_id]);
    let ladder = ladder_of(&v);
    let at = in_order(
        &ladder,
        &[
            "in INVITE sip:1002@",
            "out SIP/2.0 407",
            "in INVITE sip:1002@",
            "- not admitted (403): extension \"1001\" is locked after too many failed authentications",
            "out SIP/2.0 403",
        ],
    );
    let warning = v["events"][at[4]]["headers"].to_string();
    assert!(
        warning.contains("too many failed authentications"),
        "{warning}"
    );

    // A 407 never answered is traceable by its Call-ID too.
    let req = good
        .ua
        .request("INVITE", &format!("sip:1002@{DOMAIN}"))
        .body(
            "application/sdp",
            testkit::sdp("127.0.0.1", 4000).as_bytes(),
        );
    let challenge = good.ua.transact(&req).unwrap();
    assert_eq!(challenge.status, 407);
    let id = challenge.call_id().expect("Call-ID").to_owned();
    let v = json(&s, &["trace", &id]);
    assert_eq!(v["admitted"], false, "{v}");
    in_order(
        &ladder_of(&v),
        &[
            "in INVITE sip:1002@",
            "- not admitted (407)",
            "out SIP/2.0 407",
        ],
    );
}

/// The line of the shipped default.lua's `call:dial` of an extension.
fn default_dial_line() -> usize {
    let lua = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dialplans/default.lua"),
    )
    .expect("default.lua");
    lua.lines()
        .position(|l| l.contains("call:dial(target"))
        .expect("default.lua dials its target")
        + 1
}
