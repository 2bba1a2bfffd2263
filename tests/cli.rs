//! The `switchboard` command line as a user meets it: help, version, `check`, start-up errors, signals.

mod binary;

use std::net::{TcpListener, UdpSocket};
use std::time::Duration;

use binary::{Workdir, free_ports_config, loopback_config};

#[test]
fn version_prints_name_and_version() {
    let out = Workdir::empty().run(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        out.stdout.trim(),
        format!("switchboard {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn help_lists_commands_and_config_option() {
    let out = Workdir::empty().run(&["--help"]);
    assert!(out.status.success());
    for word in ["run", "check", "--config", "--version", "Exit codes"] {
        assert!(
            out.stdout.contains(word),
            "{word} missing from:\n{}",
            out.stdout
        );
    }
}

#[test]
fn bad_command_line_exits_2() {
    let out = Workdir::empty().run(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("frobnicate"), "{}", out.stderr);
}

#[test]
fn check_without_config_uses_the_embedded_default() {
    let w = Workdir::empty();
    let out = w.run(&["check"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout.starts_with("config OK: (embedded default): "),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("udp:0.0.0.0:5060"), "{}", out.stdout);
    assert!(out.stdout.contains("tcp:0.0.0.0:5060"), "{}", out.stdout);
    assert!(
        out.stdout.contains("admin http://127.0.0.1:8088"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("4 demo extensions"), "{}", out.stdout);
    assert!(
        out.stdout.contains("storage var/switchboard.redb"),
        "{}",
        out.stdout
    );
    // `check` opens nothing: no storage file appears.
    assert!(!w_path_exists(&w, "var"));
}

fn w_path_exists(w: &Workdir, name: &str) -> bool {
    w.path().join(name).exists()
}

#[test]
fn check_without_config_prefers_local_switchboard_toml() {
    let w = Workdir::with_file(
        "switchboard.toml",
        "[sip]\nlisten = [\"udp:127.0.0.1:5999\"]\n",
    );
    let out = w.run(&["check"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout.starts_with("config OK: switchboard.toml: "),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("udp:127.0.0.1:5999"), "{}", out.stdout);
}

#[test]
fn check_ok_with_a_file() {
    let w = Workdir::empty();
    let path = w.write("pbx.toml", &free_ports_config());
    let path = path.to_str().expect("UTF-8 temp path");
    let out = w.run(&["check", "--config", path]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    assert!(
        out.stdout.starts_with(&format!("config OK: {path}: ")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("udp:127.0.0.1:0, tcp:127.0.0.1:0"),
        "{}",
        out.stdout
    );
    // The global option also works before the command.
    let out = w.run(&["--config", path, "check"]);
    assert!(out.status.success(), "{}", out.stderr);
}

#[test]
fn check_unknown_key_names_the_key_and_line() {
    let w = Workdir::with_file(
        "switchboard.toml",
        "[sip]\ndomain = \"pbx.example.com\"\n\nlisen = [\"udp:127.0.0.1:0\"]\n",
    );
    let out = w.run(&["check"]);
    let line = out.one_error_line();
    assert!(
        line.starts_with("switchboard: config switchboard.toml:4:1: "),
        "{line}"
    );
    assert!(line.contains("unknown field `lisen`"), "{line}");
    assert!(line.contains("`listen`"), "{line}");
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}

#[test]
fn check_unknown_section_is_an_error() {
    let w = Workdir::with_file("switchboard.toml", "[sip]\n\n[voicemail]\nbox = \"x\"\n");
    let line = w.run(&["check"]).one_error_line().to_owned();
    assert!(line.contains("switchboard.toml:3:"), "{line}");
    assert!(line.contains("unknown field `voicemail`"), "{line}");
}

#[test]
fn bad_toml_syntax_names_the_line() {
    let w = Workdir::with_file(
        "switchboard.toml",
        "[sip]\ndomain = \"a\"\nlisten = [\"udp:127.0.0.1:0\"\n",
    );
    for command in ["check", "run"] {
        let out = w.run(&[command]);
        let line = out.one_error_line();
        assert!(
            line.starts_with("switchboard: config switchboard.toml:3:"),
            "{command}: {line}"
        );
    }
}

#[test]
fn bad_listen_string_is_quoted() {
    let w = Workdir::with_file("switchboard.toml", "[sip]\nlisten = [\"udp:127.0.0.1\"]\n");
    let line = w.run(&["run"]).one_error_line().to_owned();
    assert!(line.contains("switchboard.toml:2:"), "{line}");
    assert!(line.contains("sip.listen"), "{line}");
    assert!(line.contains("udp:127.0.0.1"), "{line}");
}

#[test]
fn semantic_errors_are_one_line() {
    for (text, needle) in [
        (
            "[sip]\nlisten = [\"udp:127.0.0.1:5060\", \"udp:127.0.0.1:5060\"]\n",
            "listed twice",
        ),
        (
            "[sip]\nt1 = \"5s\"\nt2 = \"4s\"\n",
            "sip.t1 (5s) is greater than sip.t2 (4s)",
        ),
        (
            "[sip]\nmax_body_size = 0\n",
            "sip.max_body_size: must be greater than zero",
        ),
        (
            "shutdown_grace = \"a while\"\n",
            "shutdown_grace: \"a while\" is not a duration",
        ),
        (
            "[admin]\ntoken = \"short\"\n",
            "admin.token: must be at least 16 characters",
        ),
        (
            "[admin]\nhosts = [\"pbx example\"]\n",
            "admin.hosts: \"pbx example\" is not a host name",
        ),
        (
            "[security]\ntrusted_networks = [\"10.0.0.0/33\"]\n",
            "security.trusted_networks: \"10.0.0.0/33\" is not a network",
        ),
    ] {
        let w = Workdir::with_file("switchboard.toml", text);
        let line = w.run(&["check"]).one_error_line().to_owned();
        assert!(line.contains(needle), "{text:?}: {line}");
        assert!(line.contains("switchboard.toml:"), "{text:?}: {line}");
    }
}

#[test]
fn missing_config_file_is_one_line() {
    let w = Workdir::empty();
    for command in ["check", "run"] {
        let out = w.run(&[command, "--config", "no-such.toml"]);
        let line = out.one_error_line();
        assert!(line.contains("cannot read config no-such.toml"), "{line}");
    }
}

#[test]
fn sip_udp_port_in_use_is_one_line() {
    let taken = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let port = taken.local_addr().expect("addr").port();
    let listen = format!("udp:127.0.0.1:{port}");
    let w = Workdir::with_file(
        "switchboard.toml",
        &loopback_config(&[&listen], "127.0.0.1:0"),
    );
    let line = w.run(&["run"]).one_error_line().to_owned();
    assert!(line.contains(&listen), "{line}");
    assert!(line.contains("sip.listen"), "{line}");
}

#[test]
fn sip_tcp_port_in_use_is_one_line() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
    let port = taken.local_addr().expect("addr").port();
    let listen = format!("tcp:127.0.0.1:{port}");
    let w = Workdir::with_file(
        "switchboard.toml",
        &loopback_config(&["udp:127.0.0.1:0", &listen], "127.0.0.1:0"),
    );
    let line = w.run(&["run"]).one_error_line().to_owned();
    assert!(line.contains(&listen), "{line}");
}

#[test]
fn admin_port_in_use_is_one_line() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
    let admin = taken.local_addr().expect("addr").to_string();
    let w = Workdir::with_file(
        "switchboard.toml",
        &loopback_config(&["udp:127.0.0.1:0"], &admin),
    );
    let line = w.run(&["run"]).one_error_line().to_owned();
    assert!(line.contains(&format!("admin HTTP on {admin}")), "{line}");
    assert!(line.contains("admin.listen"), "{line}");
}

#[test]
fn run_logs_real_ports_and_exits_0_on_sigterm() {
    let w = Workdir::with_file("switchboard.toml", &free_ports_config());
    let mut sb = w.start(&["run"]);
    let udp = sb.sip_addr("udp");
    let tcp = sb.sip_addr("tcp");
    assert_eq!(udp.ip().to_string(), "127.0.0.1");
    assert_ne!(udp.port(), 0, "the log must show the port actually bound");
    assert_ne!(tcp.port(), 0, "the log must show the port actually bound");
    assert_ne!(sb.admin_addr().port(), 0);
    // The logged TCP port really accepts connections.
    std::net::TcpStream::connect_timeout(&tcp, Duration::from_secs(5)).expect("connect SIP TCP");

    sb.signal("TERM");
    let status = sb
        .wait(Duration::from_secs(10))
        .expect("exit within 10 s of SIGTERM");
    assert_eq!(status.code(), Some(0), "stderr:\n{}", sb.log());
    let log = sb.log();
    assert!(log.contains("shutting down"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn run_exits_0_on_ctrl_c() {
    let w = Workdir::with_file("switchboard.toml", &free_ports_config());
    let mut sb = w.start(&[]);
    sb.signal("INT");
    let status = sb
        .wait(Duration::from_secs(10))
        .expect("exit within 10 s of SIGINT");
    assert_eq!(status.code(), Some(0), "stderr:\n{}", sb.log());
}

#[test]
fn rust_log_overrides_the_configured_level() {
    let w = Workdir::with_file(
        "switchboard.toml",
        &format!("{}\n[log]\nlevel = \"info\"\n", free_ports_config()),
    );
    let mut command = w.command(&["run"]);
    command.env("RUST_LOG", "sip_net=loud");
    let out = binary::finish(command);
    let line = out.one_error_line();
    assert!(
        line.starts_with("switchboard: RUST_LOG=\"sip_net=loud\""),
        "{line}"
    );
}

#[test]
fn check_summarises_extensions_and_storage() {
    let w = Workdir::with_file(
        "switchboard.toml",
        "[storage]\nbackend = \"memory\"\n\n[[extension]]\nid = \"1001\"\npassword = \"Vq7-zK2p-Lm9w\"\n\n[[extension]]\nid = \"1002\"\npassword = \"Rt4-hX8n-Pc3y\"\n",
    );
    let out = w.run(&["check"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    assert!(out.stdout.contains("2 extensions"), "{}", out.stdout);
    assert!(out.stdout.contains("digest MD5"), "{}", out.stdout);
    assert!(out.stdout.contains("storage memory"), "{}", out.stdout);
    assert!(!w_path_exists(&w, "var"), "check must not create storage");
}

#[test]
fn check_reports_bad_extensions_in_one_line() {
    for (text, needle, at) in [
        (
            "[[extension]]\nid = \"1001\"\npassword = \"a\"\n\n[[extension]]\nid = \"1001\"\npassword = \"b\"\n",
            "extension \"1001\" is defined twice (first at line 2)",
            "switchboard.toml:6:",
        ),
        (
            "[[extension]]\nid = \"10/01\"\npassword = \"a\"\n",
            "extension id \"10/01\" is not valid",
            "switchboard.toml:2:",
        ),
        (
            "[[extension]]\nid = \"1001\"\nname = \"Alice\"\n",
            "extension 1001 has no secret",
            "switchboard.toml:2:",
        ),
        (
            "[[extension]]\nid = \"1001\"\nha1_md5 = \"not-hex\"\n",
            "ha1_md5 must be 32 hex digits",
            "switchboard.toml:3:",
        ),
        (
            "[security]\ndigest_algorithms = [\"SHA-1\"]\n",
            "unknown digest algorithm",
            "switchboard.toml:2:",
        ),
        (
            "[registrar]\nmin_expires = 7200\n",
            "registrar.min_expires (7200) is greater than registrar.default_expires (3600)",
            "switchboard.toml:2:",
        ),
    ] {
        let w = Workdir::with_file("switchboard.toml", text);
        for command in ["check", "run"] {
            let out = w.run(&[command]);
            let line = out.one_error_line();
            assert!(line.contains(needle), "{command} {text:?}: {line}");
            assert!(line.contains(at), "{command} {text:?}: {line}");
        }
    }
}

#[test]
fn check_warns_about_an_extension_that_cannot_answer_every_algorithm() {
    let w = Workdir::with_file(
        "switchboard.toml",
        "[security]\ndigest_algorithms = [\"SHA-256\", \"MD5\"]\n\n[[extension]]\nid = \"1001\"\nha1_md5 = \"0123456789abcdef0123456789abcdef\"\n",
    );
    let out = w.run(&["check"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.starts_with("config OK: "), "{}", out.stdout);
    let warning = out.stderr.trim();
    assert_eq!(warning.lines().count(), 1, "{warning}");
    assert!(
        warning.starts_with("switchboard: warning: config switchboard.toml:6:"),
        "{warning}"
    );
    assert!(
        warning.contains("extension 1001 can authenticate only with MD5"),
        "{warning}"
    );
}

#[test]
fn check_warns_when_the_admin_api_is_not_on_loopback() {
    let w = Workdir::with_file(
        "switchboard.toml",
        "[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\n\n[admin]\nlisten = \"0.0.0.0:8088\"\n",
    );
    let out = w.run(&["check"]);
    assert!(out.status.success(), "{}", out.stderr);
    let warning = out.stderr.trim();
    assert_eq!(warning.lines().count(), 1, "{warning}");
    assert!(
        warning.starts_with("switchboard: warning: config switchboard.toml:5:"),
        "{warning}"
    );
    assert!(
        warning.contains("admin.listen: 0.0.0.0:8088 is not a loopback address"),
        "{warning}"
    );
    // On loopback: no warning.
    let w = Workdir::with_file("switchboard.toml", "[admin]\nlisten = \"[::1]:8088\"\n");
    let out = w.run(&["check"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stderr.trim(), "", "{}", out.stderr);
}

/// A config on free loopback ports with its storage at `path`.
fn config_with_storage(path: &std::path::Path) -> String {
    format!(
        "{}\n[storage]\npath = {:?}\n",
        free_ports_config(),
        path.to_str().expect("UTF-8 temp path")
    )
}

#[test]
fn storage_in_use_by_another_switchboard_is_one_line() {
    let shared = Workdir::empty();
    let db = shared.path().join("data").join("pbx.redb");
    let first = Workdir::with_file("switchboard.toml", &config_with_storage(&db));
    let mut running = first.start(&["run"]);
    assert!(db.is_file(), "storage file created with its directory");
    assert!(
        running.log().contains(&format!(
            "registrar: 0 extensions, storage {}",
            db.display()
        )),
        "{}",
        running.log()
    );

    let second = Workdir::with_file("switchboard.toml", &config_with_storage(&db));
    let line = second.run(&["run"]).one_error_line().to_owned();
    assert!(line.contains("is in use by another process"), "{line}");
    assert!(line.contains(&db.display().to_string()), "{line}");
    assert!(line.contains("storage.path"), "{line}");

    // After a clean shutdown the file is released: the second one now starts.
    running.signal("TERM");
    let status = running.wait(Duration::from_secs(10)).expect("exit");
    assert_eq!(status.code(), Some(0), "{}", running.log());
    let mut again = second.start(&["run"]);
    again.signal("TERM");
    let status = again.wait(Duration::from_secs(10)).expect("exit");
    assert_eq!(status.code(), Some(0), "{}", again.log());
    assert!(!again.log().contains("repaired"), "{}", again.log());
}

#[test]
fn corrupt_storage_file_is_one_line() {
    let w = Workdir::with_file("switchboard.toml", &free_ports_config());
    // Deterministic noise (xorshift), 64 KiB, where the default storage file goes.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..65_536)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect();
    std::fs::create_dir_all(w.path().join("var")).expect("mkdir var");
    std::fs::write(w.path().join("var/switchboard.redb"), &noise).expect("write noise");
    let line = w.run(&["run"]).one_error_line().to_owned();
    assert!(
        line.contains("storage file var/switchboard.redb is not a valid Switchboard database"),
        "{line}"
    );
    assert!(line.contains("move it aside"), "{line}");

    // A text file in its place is refused the same way.
    std::fs::write(w.path().join("var/switchboard.redb"), "hello\n").expect("write text");
    let line = w.run(&["run"]).one_error_line().to_owned();
    assert!(
        line.contains("is not a valid Switchboard database"),
        "{line}"
    );
}

// ---------------------------------------------------------------------------
// Issue 15 papercuts: what `check` catches before calls break.

#[test]
fn log_level_typos_are_errors_in_check_and_run() {
    for (level, needle) in [
        (
            "warning",
            "\"warning\" is not a log level (did you mean \"warn\"?)",
        ),
        ("loud", "\"loud\" is not a log level"),
        (
            "info,sip_net=chatty",
            "\"chatty\" in \"sip_net=chatty\" is not a log level",
        ),
    ] {
        let w = Workdir::with_file(
            "switchboard.toml",
            &format!("{}\n[log]\nlevel = {level:?}\n", free_ports_config()),
        );
        for command in ["check", "run"] {
            let out = w.run(&[command]);
            let line = out.one_error_line();
            assert!(line.contains(needle), "{command} {level}: {line}");
            assert!(
                line.contains("switchboard.toml:12:9: log.level"),
                "{command} {level}: {line}"
            );
        }
    }
    // Each valid level, and a filter, passes.
    for level in [
        "error",
        "warn",
        "info",
        "debug",
        "trace",
        "info,sip_net=debug",
    ] {
        let w = Workdir::with_file(
            "switchboard.toml",
            &format!("{}\n[log]\nlevel = {level:?}\n", free_ports_config()),
        );
        let out = w.run(&["check"]);
        assert!(out.status.success(), "{level}: {}", out.stderr);
    }
}

#[test]
fn check_refuses_an_extension_whose_context_has_no_dialplan() {
    let w = Workdir::with_file(
        "switchboard.toml",
        "[[extension]]\nid = \"1001\"\npassword = \"Vq7-zK2p-Lm9w\"\ncontext = \"sales\"\n\n[[extension]]\nid = \"1002\"\npassword = \"Rt4-hX8n-Pc3y\"\n",
    );
    let line = w.run(&["check"]).one_error_line().to_owned();
    assert!(line.starts_with("switchboard: config switchboard.toml:4:11: extension 1001: context \"sales\" has no dialplan"), "{line}");
    assert!(line.contains("sales.lua"), "{line}");
    // With the file, it passes.
    w.write(
        "dialplans/sales.lua",
        "function route(call)\n  call:hangup()\nend\n",
    );
    let out = w.run(&["check"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stderr, "", "{}", out.stderr);
}

#[test]
fn check_warns_about_missing_sounds_and_prompts_play_cannot_use() {
    let w = Workdir::with_file("switchboard.toml", "");
    std::fs::remove_dir(w.path().join("sounds")).expect("rmdir sounds");
    let out = w.run(&["check"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stderr.starts_with(
            "switchboard: warning: config switchboard.toml: dialplan.sounds: sounds does not exist"
        ),
        "{}",
        out.stderr
    );

    std::fs::create_dir(w.path().join("sounds")).expect("mkdir sounds");
    let wav = |channels: u16, rate: u32| -> Vec<u8> {
        let data = vec![0u8; 400];
        let mut v = Vec::new();
        v.extend_from_slice(b"RIFF");
        v.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        v.extend_from_slice(b"WAVEfmt ");
        v.extend_from_slice(&16u32.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&channels.to_le_bytes());
        v.extend_from_slice(&rate.to_le_bytes());
        v.extend_from_slice(&(rate * 2 * u32::from(channels)).to_le_bytes());
        v.extend_from_slice(&(2 * channels).to_le_bytes());
        v.extend_from_slice(&16u16.to_le_bytes());
        v.extend_from_slice(b"data");
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(&data);
        v
    };
    let sounds = w.path().join("sounds");
    std::fs::write(sounds.join("good.wav"), wav(1, 8000)).expect("write");
    std::fs::write(sounds.join("stereo.wav"), wav(2, 8000)).expect("write");
    std::fs::write(sounds.join("cd.wav"), wav(1, 44_100)).expect("write");
    let out = w.run(&["check"]);
    assert!(out.status.success(), "{}", out.stderr);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stderr);
    assert!(lines[0].contains("cd.wav"), "{}", out.stderr);
    assert!(lines[0].contains("44100 Hz"), "{}", out.stderr);
    assert!(lines[1].contains("stereo.wav"), "{}", out.stderr);
    assert!(
        lines[1].contains("2 channels; prompts must be mono"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("good.wav"), "{}", out.stderr);
}

#[test]
fn check_refuses_a_media_bind_that_is_not_ours() {
    let w = Workdir::with_file("switchboard.toml", "[media]\n\nbind = \"203.0.113.77\"\n");
    let line = w.run(&["check"]).one_error_line().to_owned();
    assert!(
        line.starts_with("switchboard: config switchboard.toml:3:8: media.bind: 203.0.113.77 is not an address of this machine"),
        "{line}"
    );
    let w = Workdir::with_file("switchboard.toml", "[media]\nbind = \"127.0.0.1\"\n");
    let out = w.run(&["check"]);
    assert!(out.status.success(), "{}", out.stderr);
}

#[test]
fn check_warns_about_weak_extension_passwords() {
    let w = Workdir::with_file(
        "switchboard.toml",
        "[[extension]]\nid = \"1001\"\npassword = \"1001\"\n\n[[extension]]\nid = \"1002\"\npassword = \"98765432101\"\n\n[[extension]]\nid = \"1003\"\npassword = \"x7-Q\"\n\n[[extension]]\nid = \"1004\"\npassword = \"Vq7-zK2p-Lm9w\"\n",
    );
    let out = w.run(&["check"]);
    assert!(out.status.success(), "{}", out.stderr);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{}", out.stderr);
    for (line, at, why) in [
        (
            lines[0],
            "switchboard.toml:3:12",
            "extension 1001: weak password (it is the extension id)",
        ),
        (
            lines[1],
            "switchboard.toml:7:12",
            "extension 1002: weak password (digits only)",
        ),
        (
            lines[2],
            "switchboard.toml:11:12",
            "extension 1003: weak password (shorter than 10 characters)",
        ),
    ] {
        assert!(
            line.starts_with(&format!("switchboard: warning: config {at}: {why}")),
            "{line}"
        );
    }
}

/// The value of the first `key = "..."` line after `after` in `text`.
fn toml_value<'a>(text: &'a str, after: &str, key: &str) -> &'a str {
    let start = text.find(after).map_or(0, |i| i + after.len());
    text[start..]
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or_else(|| panic!("no {key} after {after:?} in:\n{text}"))
}

#[test]
fn init_writes_an_office_that_checks_and_runs() {
    let w = Workdir::bare();
    let out = w.run(&["init", "office"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout
            .starts_with("wrote a new office in office: switchboard.toml"),
        "{}",
        out.stdout
    );
    for file in [
        "office/switchboard.toml",
        "office/dialplans/default.lua",
        "office/plugins/callforward.lua",
        "office/sounds/hello.wav",
    ] {
        assert!(w.path().join(file).is_file(), "{file} missing");
    }
    let text = std::fs::read_to_string(w.path().join("office/switchboard.toml")).expect("config");
    let password = toml_value(&text, "id = \"1001\"", "password");
    assert!(password.len() >= 12, "{password}");
    assert!(
        out.stdout.contains(&format!(
            "extension 1001 (Office 1001): password {password}"
        )),
        "{}",
        out.stdout
    );

    // It passes check without a warning.
    let out = w.run(&["check", "--config", "office/switchboard.toml"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stderr, "", "{}", out.stderr);
    assert!(out.stdout.contains("4 extensions"), "{}", out.stdout);

    // A second init overwrites nothing: one line, exit 1, the file as it was.
    let line = w.run(&["init", "office"]).one_error_line().to_owned();
    assert!(
        line.starts_with("switchboard: init: office/switchboard.toml already exists"),
        "{line}"
    );
    assert_eq!(
        std::fs::read_to_string(w.path().join("office/switchboard.toml")).expect("config"),
        text
    );
    // One file in the way is enough to write nothing at all.
    let other = Workdir::bare();
    other.write("office/sounds/hello.wav", "mine");
    let line = other.run(&["init", "office"]).one_error_line().to_owned();
    assert!(
        line.contains("office/sounds/hello.wav already exists"),
        "{line}"
    );
    assert!(!other.path().join("office/switchboard.toml").exists());

    // It runs (on free ports here), and a phone registers with a written password.
    let domain = toml_value(&text, "[sip]", "domain").to_owned();
    let free = text
        .replace(
            "\"udp:0.0.0.0:5060\", \"tcp:0.0.0.0:5060\"",
            "\"udp:127.0.0.1:0\"",
        )
        .replace("listen = \"127.0.0.1:8088\"", "listen = \"127.0.0.1:0\"")
        .replace("rtp_ports = \"10000-20000\"", "rtp_ports = \"30000-30999\"");
    std::fs::write(w.path().join("office/switchboard.toml"), free).expect("write");
    let mut sb = w.start(&["run", "--config", "office/switchboard.toml"]);
    let log = sb.log();
    assert!(
        log.contains("dialplan generation 1: 1 context(s), 9 plugin(s)"),
        "{log}"
    );
    assert!(!log.contains("WARN"), "{log}");
    let mut phone = testkit::Phone::udp(sb.sip_addr("udp"), "1001", password, &domain);
    assert_eq!(phone.register(), 200, "{}", sb.log());
    sb.signal("TERM");
    let status = sb.wait(Duration::from_secs(10)).expect("exit");
    assert_eq!(status.code(), Some(0), "{}", sb.log());
}

#[test]
fn check_validates_the_dialplan_timezone() {
    let w = Workdir::with_file(
        "switchboard.toml",
        "[dialplan]\ntimezone = \"Europe/Pariss\"\n",
    );
    let line = w.run(&["check"]).one_error_line().to_owned();
    assert!(
        line.starts_with("switchboard: config switchboard.toml:2:12: dialplan.timezone: \"Europe/Pariss\" is not an IANA time zone"),
        "{line}"
    );
    let w = Workdir::with_file(
        "switchboard.toml",
        "[dialplan]\ntimezone = \"Europe/Paris\"\n",
    );
    let out = w.run(&["check"]);
    assert!(out.status.success(), "{}", out.stderr);
}
