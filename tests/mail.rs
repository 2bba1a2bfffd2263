//! `[smtp]` and the extensions' `email` through the real binary: `check`
//! accepts a good section and names the file and line of a bad one, and
//! `run` starts the voicemail mailer for the configured relay.

mod binary;

use binary::{Workdir, free_ports_config};

/// An extension with a strong password and an address.
const EXTENSION: &str = "\n[[extension]]\nid = \"1001\"\npassword = \"Zq8#pL2v!mR4xT\"\nemail = \"alice@example.com\"\n";

#[test]
fn check_accepts_a_good_smtp_section() {
    let config = format!(
        "{}{EXTENSION}\n[smtp]\nhost = \"mail.example.com\"\nport = 587\ntls = \"starttls\"\nusername = \"pbx\"\npassword = \"relay-secret\"\nfrom = \"Switchboard <pbx@example.com>\"\n",
        free_ports_config()
    );
    let w = Workdir::with_file("switchboard.toml", &config);
    let out = w.run(&["check"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout
            .contains("voicemail email via smtp mail.example.com:587 (starttls)"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("warning") && !out.stderr.contains("warning"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    assert!(!out.stdout.contains("relay-secret"), "{}", out.stdout);
}

#[test]
fn check_rejects_a_bad_tls_value_with_file_and_line() {
    let config = format!(
        "{}\n[smtp]\nhost = \"mail.example.com\"\ntls = \"ssl\"\nfrom = \"pbx@example.com\"\n",
        free_ports_config()
    );
    let line = config
        .lines()
        .position(|l| l.starts_with("tls ="))
        .expect("tls line")
        + 1;
    let w = Workdir::with_file("switchboard.toml", &config);
    let out = w.run(&["check"]);
    let error = out.one_error_line();
    assert!(
        error.starts_with(&format!("switchboard: config switchboard.toml:{line}:")),
        "{error}"
    );
    assert!(error.contains("smtp.tls: \"ssl\""), "{error}");
    assert!(error.contains("\"starttls\""), "{error}");
}

#[test]
fn check_rejects_unknown_smtp_keys_and_bad_addresses() {
    for (extra, needle) in [
        (
            "\n[smtp]\nhost = \"m.example.com\"\nfrom = \"pbx@example.com\"\nstarttls = true\n",
            "unknown field `starttls`",
        ),
        (
            "\n[smtp]\nhost = \"m.example.com\"\nfrom = \"pbx at example\"\n",
            "smtp.from: \"pbx at example\" is not an email address",
        ),
        (
            "\n[[extension]]\nid = \"1001\"\npassword = \"Zq8#pL2v!mR4xT\"\nemail = \"alice\"\n",
            "extension 1001: email \"alice\" is not an email address",
        ),
    ] {
        let config = format!("{}{extra}", free_ports_config());
        let w = Workdir::with_file("switchboard.toml", &config);
        let out = w.run(&["check"]);
        let error = out.one_error_line();
        assert!(
            error.starts_with("switchboard: config switchboard.toml:"),
            "{error}"
        );
        assert!(error.contains(needle), "{extra:?}: {error}");
    }
}

#[test]
fn run_starts_the_mailer_for_the_relay() {
    let config = format!(
        "{}{EXTENSION}\n[smtp]\nhost = \"127.0.0.1\"\nport = 2525\ntls = \"none\"\nfrom = \"pbx@example.com\"\n",
        free_ports_config()
    );
    let w = Workdir::with_file("switchboard.toml", &config);
    let mut server = w.start(&["run"]);
    let log = server.log();
    assert!(
        log.contains(
            "voicemail email through smtp relay 127.0.0.1:2525 (none) from pbx@example.com"
        ),
        "{log}"
    );
    server.signal("TERM");
    assert!(server.wait(binary::DEADLINE).is_some(), "{}", server.log());

    let w = Workdir::with_file("switchboard.toml", &free_ports_config());
    let server = w.start(&["run"]);
    assert!(
        server
            .log()
            .contains("voicemail email off (no [smtp] section)"),
        "{}",
        server.log()
    );
}
