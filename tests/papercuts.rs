//! Issue 15's papercuts that a new office admin meets, against the real
//! binary over real sockets: why a phone does not register (the log says),
//! extension changes on reload, `GET /api/v1/extensions`.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use testkit::{Phone, Server, TEST_ADMIN_TOKEN, Ua};

const DOMAIN: &str = "test.invalid";

const ALICE: &str =
    "[[extension]]\nid = \"1001\"\npassword = \"Vq7-zK2p-Lm9w\"\nname = \"Alice\"\n";
const BOB: &str = "[[extension]]\nid = \"1002\"\npassword = \"Rt4-hX8n-Pc3y\"\n";

/// The test office: `extra` keys at the end of `[security]`, then `extensions`.
fn config(extra: &str, extensions: &str) -> String {
    format!(
        r#"
[sip]
listen = ["udp:127.0.0.1:0"]
domain = "{DOMAIN}"

[admin]
listen = "127.0.0.1:0"
token = "{TEST_ADMIN_TOKEN}"

[storage]
backend = "memory"

[registrar]
qualify_interval = "0s"

[security]
ban_after_failures = 4
trusted_networks = ["127.0.0.0/8"]
{extra}

{extensions}
"#
    )
}

fn start(extra: &str) -> Server {
    Server::start_with(
        env!("CARGO_BIN_EXE_switchboard").as_ref(),
        &config(extra, &format!("{ALICE}\n{BOB}")),
    )
    .expect("switchboard starts")
}

fn ua_at(s: &Server, n: u8) -> Ua {
    Ua::udp_from(s.udp.expect("udp"), IpAddr::from([127, 0, 0, n])).expect("ua")
}

/// REGISTER as `user` with `password`, answering a fresh challenge.
fn register(ua: &mut Ua, user: &str, password: &str) -> u16 {
    let req = ua.register_request(user, DOMAIN, 600);
    ua.transact_authenticated(&req, user, password)
        .expect("REGISTER answered")
        .status
}

/// The log's lines containing `needle`, once at least `count` of them are
/// there (or after 10 s, whatever there is).
fn lines_with(s: &Server, needle: &str, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines: Vec<String> = s
            .log()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect();
        if lines.len() >= count || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn failed_registrations_are_logged_at_info_with_source_extension_and_reason() {
    let s = start("");
    let mut phone = ua_at(&s, 2);
    let source = phone.local_addr().to_string();
    // A wrong password, three times in a row: one line, the rest held back.
    for _ in 0..3 {
        assert_eq!(register(&mut phone, "1001", "wrong-password"), 401);
    }
    // An extension that does not exist.
    assert_eq!(register(&mut phone, "1009", "whatever-pass"), 401);
    let unknown = lines_with(&s, "for extension \"1009\"", 1);
    assert_eq!(unknown.len(), 1, "{}", s.log());
    assert!(unknown[0].contains(" INFO "), "{}", unknown[0]);
    assert!(
        unknown[0].contains(&format!(
            "registration failed: REGISTER from {source} for extension \"1009\": unknown extension"
        )),
        "{}",
        unknown[0]
    );
    let wrong = lines_with(&s, "for extension \"1001\"", 1);
    assert_eq!(wrong.len(), 1, "rate-limited to one line: {}", s.log());
    assert!(
        wrong[0].contains(&format!(
            "registration failed: REGISTER from {source} for extension \"1001\": wrong password"
        )),
        "{}",
        wrong[0]
    );

    // The fourth failure locks 1002; then even its right password is
    // refused, and the log says why, for a phone at another address.
    let mut guesser = ua_at(&s, 3);
    for _ in 0..4 {
        assert_eq!(register(&mut guesser, "1002", "guess-guess"), 401);
    }
    let mut owner = ua_at(&s, 4);
    assert_eq!(register(&mut owner, "1002", "Rt4-hX8n-Pc3y"), 403);
    let locked = lines_with(&s, "extension locked after too many failed", 1);
    assert_eq!(locked.len(), 1, "{}", s.log());
    assert!(
        locked[0].contains(&format!(
            "REGISTER from {} for extension \"1002\"",
            owner.local_addr()
        )),
        "{}",
        locked[0]
    );
}

fn json(s: &Server, path: &str) -> serde_json::Value {
    let (status, body) = s.http_get(path).expect("admin API");
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("JSON")
}

fn phone(s: &Server, user: &str, password: &str) -> Phone {
    Phone::udp(s.udp.expect("udp"), user, password, DOMAIN)
}

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn extension_changes_take_effect_on_reload_with_calls_kept_up() {
    let s = start("");
    let mut a = phone(&s, "1001", "Vq7-zK2p-Lm9w");
    let mut b = phone(&s, "1002", "Rt4-hX8n-Pc3y");
    assert_eq!(a.register(), 200);
    assert_eq!(b.register(), 200);

    // GET /api/v1/extensions: config order, contact counts, no passwords.
    let (status, body) = s.http_get("/api/v1/extensions").expect("admin API");
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.contains("Vq7") && !body.contains("password"),
        "{body}"
    );
    let list: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        list,
        serde_json::json!([
            {"id": "1001", "name": "Alice", "context": "default", "contacts": 1},
            {"id": "1002", "name": null, "context": "default", "contacts": 1},
        ])
    );

    // A call up between them.
    let call = a.call("1002").expect("INVITE sent");
    let incoming = b.incoming(WAIT).expect("callee gets the INVITE");
    b.reply(&incoming.invite, &incoming.tag, 200).unwrap();
    let (ok, _) = a.final_response(WAIT).expect("200 relayed");
    assert_eq!(ok.status, 200);
    let mut dialog = a.ack(&call, &ok).expect("ACK");
    b.request("ACK", WAIT).expect("the B2BUA ACKs");

    // Bob gets a new password, Carol joins; POST /api/v1/reload.
    let carol = "[[extension]]\nid = \"1003\"\npassword = \"Zx8-fJ3q-Wn6t\"\nname = \"Carol\"\ncontext = \"default\"\n";
    let bob_new = BOB.replace("Rt4-hX8n-Pc3y", "Nw5-gB7k-Qs2d");
    let file = s.dir().join("switchboard.toml");
    std::fs::write(&file, config("", &format!("{ALICE}\n{bob_new}\n{carol}"))).expect("write");
    let (status, body) = s.http("POST", "/api/v1/reload").expect("reload");
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(answer["extensions"], 3, "{body}");
    assert!(
        s.log().contains("extensions reloaded from") && s.log().contains("3 in force, added 1003"),
        "{}",
        s.log()
    );
    assert_eq!(phone(&s, "1003", "Zx8-fJ3q-Wn6t").register(), 200);
    assert_ne!(phone(&s, "1002", "Rt4-hX8n-Pc3y").register(), 200);
    assert_eq!(phone(&s, "1002", "Nw5-gB7k-Qs2d").register(), 200);
    let list = json(&s, "/api/v1/extensions");
    assert_eq!(list[2]["name"], "Carol", "{list}");
    assert_eq!(list[2]["contacts"], 1, "{list}");

    // The call that was up is still up, and ends normally.
    assert_eq!(a.request_in(&mut dialog, "BYE", None).unwrap().status, 200);
    let bye = b.request("BYE", WAIT).expect("callee gets BYE");
    b.reply(&bye, &incoming.tag, 200).unwrap();

    // A broken config file: 422 with file and line, nothing changes.
    std::fs::write(
        &file,
        format!("{}\n[log]\nlevel = \"warning\"\n", config("", ALICE)),
    )
    .expect("write");
    let (status, body) = s.http("POST", "/api/v1/reload").expect("reload");
    assert_eq!(status, 422, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let error = &answer["errors"][0];
    assert!(
        error["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("switchboard.toml")),
        "{body}"
    );
    assert!(error["line"].as_u64().is_some(), "{body}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("log.level")),
        "{body}"
    );
    assert_eq!(
        json(&s, "/api/v1/extensions").as_array().map(Vec::len),
        Some(3)
    );

    // SIGHUP: Carol leaves.
    std::fs::write(&file, config("", &format!("{ALICE}\n{bob_new}"))).expect("write");
    s.signal("HUP");
    let deadline = Instant::now() + WAIT;
    while json(&s, "/api/v1/extensions").as_array().map(Vec::len) != Some(2) {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload: {}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_ne!(phone(&s, "1003", "Zx8-fJ3q-Wn6t").register(), 200);
}

/// A server whose dialplan is `lua` (as `dialplans/default.lua`).
fn start_with_lua(lua: &str) -> (Server, tempfile::TempDir) {
    start_with_lua_and(lua, "")
}

/// [`start_with_lua`] with more `[dialplan]` keys.
fn start_with_lua_and(lua: &str, more: &str) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let dialplans = dir.path().join("dialplans");
    std::fs::create_dir_all(&dialplans).expect("mkdir");
    std::fs::write(dialplans.join("default.lua"), lua).expect("write lua");
    std::fs::create_dir_all(dir.path().join("sounds")).expect("mkdir");
    let dialplan = format!(
        "[dialplan]\ndir = {:?}\nplugins = {:?}\nsounds = {:?}\n{more}\n",
        dialplans.display().to_string(),
        dir.path().join("plugins").display().to_string(),
        dir.path().join("sounds").display().to_string(),
    );
    let s = Server::start_with(
        env!("CARGO_BIN_EXE_switchboard").as_ref(),
        &config("", &format!("{ALICE}\n{BOB}\n{dialplan}")),
    )
    .expect("switchboard starts");
    (s, dir)
}

/// Waits for the newest CDR.
fn newest_cdr(s: &Server) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let cdrs = json(s, "/api/v1/cdrs?limit=1");
        if let Some(first) = cdrs.as_array().and_then(|a| a.first()) {
            return first.clone();
        }
        assert!(Instant::now() < deadline, "no CDR: {}", s.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn is_rfc3339_utc(v: &serde_json::Value) -> bool {
    let Some(t) = v.as_str() else { return false };
    let b = t.as_bytes();
    t.len() == 24
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[19] == b'.'
        && t.ends_with('Z')
        && t.starts_with("20")
}

#[test]
fn a_call_answered_then_lost_to_an_error_says_so_in_its_cdr() {
    let (s, _dir) = start_with_lua(
        "function route(call)\n  call:answer()\n  call:play(\"no-such-prompt\")\nend\n",
    );
    let mut a = phone(&s, "1001", "Vq7-zK2p-Lm9w");
    assert_eq!(a.register(), 200);
    let call = a.call("700").expect("INVITE sent");
    let (ok, _) = a.final_response(WAIT).expect("answered");
    assert_eq!(ok.status, 200);
    a.ack(&call, &ok).expect("ACK");
    let bye = a.request("BYE", WAIT).expect("the failed route hangs up");
    a.reply(&bye, "", 200).unwrap();

    let cdr = newest_cdr(&s);
    assert_eq!(cdr["disposition"], "answered", "{cdr}");
    let cause = cdr["hangup_cause"].as_str().unwrap_or_default();
    assert!(cause.starts_with("error: "), "{cdr}");
    assert!(cause.contains("no-such-prompt"), "{cdr}");
    // RFC 3339 times beside the epoch milliseconds.
    for key in ["start", "answer", "end"] {
        assert!(is_rfc3339_utc(&cdr[key]), "{key}: {cdr}");
    }
    assert!(cdr["start_ms"].as_u64().is_some(), "{cdr}");

    // A bad query parameter is a JSON 400, like every other error.
    let (status, body) = s.http_get("/api/v1/cdrs?limit=abc").expect("admin API");
    assert_eq!(status, 400, "{body}");
    let error: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
    assert!(
        error["error"].as_str().is_some_and(|e| e.contains("limit")),
        "{body}"
    );
}

/// `GET /api/v1/calls` once `ready` holds for it (or fails after WAIT).
fn calls_when(s: &Server, ready: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let calls = json(s, "/api/v1/calls");
        if ready(&calls) {
            return calls;
        }
        assert!(Instant::now() < deadline, "calls never got there: {calls}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn live_calls_show_the_contacts_being_rung_and_hold() {
    let s = start("");
    let server = s.udp.expect("udp");
    let mut a = phone(&s, "1001", "Vq7-zK2p-Lm9w");
    let mut desk = Phone::udp_from(
        server,
        IpAddr::from([127, 0, 0, 2]),
        "1002",
        "Rt4-hX8n-Pc3y",
        DOMAIN,
    );
    let mut soft = Phone::udp_from(
        server,
        IpAddr::from([127, 0, 0, 3]),
        "1002",
        "Rt4-hX8n-Pc3y",
        DOMAIN,
    );
    for p in [&mut a, &mut desk, &mut soft] {
        assert_eq!(p.register(), 200);
    }
    let call = a.call("1002").expect("INVITE sent");
    let incoming = desk.incoming(WAIT).expect("the desk phone rings");
    let other = soft.incoming(WAIT).expect("the softphone rings");
    desk.reply(&incoming.invite, &incoming.tag, 180).unwrap();
    let calls = calls_when(&s, |c| {
        c[0]["ringing"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x["state"] == "ringing"))
    });
    let ringing = calls[0]["ringing"].as_array().expect("ringing").clone();
    assert_eq!(ringing.len(), 2, "{calls}");
    let mut addresses: Vec<&str> = ringing
        .iter()
        .map(|r| r["address"].as_str().unwrap_or_default())
        .collect();
    addresses.sort_unstable();
    assert!(
        addresses[0].starts_with("udp:127.0.0.2:") && addresses[1].starts_with("udp:127.0.0.3:"),
        "{calls}"
    );
    for r in &ringing {
        assert_eq!(r["target"], "1002", "{calls}");
        assert!(
            r["contact"].as_str().is_some_and(|c| c.starts_with("sip:")),
            "{calls}"
        );
    }
    let states: Vec<&str> = ringing.iter().filter_map(|r| r["state"].as_str()).collect();
    assert!(
        states.contains(&"ringing") && states.contains(&"calling"),
        "{calls}"
    );

    // The desk phone answers; the softphone stops ringing.
    desk.reply(&incoming.invite, &incoming.tag, 200).unwrap();
    let (ok, _) = a.final_response(WAIT).expect("200 relayed");
    assert_eq!(ok.status, 200);
    let mut dialog = a.ack(&call, &ok).expect("ACK");
    desk.request("ACK", WAIT).expect("the B2BUA ACKs");
    drop(other);
    let calls = calls_when(&s, |c| c[0]["state"] == "bridged");
    assert_eq!(calls[0]["ringing"], serde_json::json!([]), "{calls}");
    assert_eq!(calls[0]["legs"][0]["held"], false, "{calls}");

    // The caller puts the call on hold: answered by the PBX for its side.
    let hold = testkit::sdp("127.0.0.1", 40_000).replace("a=sendrecv", "a=sendonly");
    let ok = a
        .request_in(&mut dialog, "INVITE", Some(&hold))
        .expect("re-INVITE answered");
    assert_eq!(ok.status, 200);
    a.ack_in(&dialog).unwrap();
    let calls = calls_when(&s, |c| c[0]["legs"][0]["held"] == true);
    assert_eq!(calls[0]["legs"][1]["held"], false, "{calls}");
}

#[test]
fn lua_sees_the_call_state_and_the_configured_timezone() {
    let (s, _dir) = start_with_lua_and(
        "function route(call)\n  call:reject(486, os.date(\"%z\", 0) .. \" \" .. call.state .. \" \" .. tostring(call:is_up()))\nend\n",
        "timezone = \"Asia/Kolkata\"",
    );
    let mut a = phone(&s, "1001", "Vq7-zK2p-Lm9w");
    assert_eq!(a.register(), 200);
    a.call("1002").expect("INVITE sent");
    let (r, _) = a.final_response(WAIT).expect("final response");
    assert_eq!(
        (r.status, r.reason.as_str()),
        (486, "+0530 routing false"),
        "{}",
        s.log()
    );
}

#[test]
fn phones_may_name_the_server_by_its_address_instead_of_the_domain() {
    // The office's domain is test.invalid; these phones only know the
    // server's address, as a phone on another machine set up with the
    // demo office's "localhost" would need to.
    let s = start("");
    let server = s.udp.expect("udp");
    let host = server.ip().to_string();
    let mut a = Phone::udp(server, "1001", "Vq7-zK2p-Lm9w", &host);
    let mut b = Phone::udp(server, "1002", "Rt4-hX8n-Pc3y", &host);
    assert_eq!(a.register(), 200, "{}", s.log());
    assert_eq!(b.register(), 200, "{}", s.log());
    let list = json(&s, "/api/v1/extensions");
    assert_eq!(list[0]["contacts"], 1, "{list}");
    a.call("1002").expect("INVITE to sip:1002@<server address>");
    let incoming = b.incoming(WAIT).expect("1002 rings");
    b.reply(&incoming.invite, &incoming.tag, 486).unwrap();
    // The shipped dialplan: a busy callee's caller reaches its voicemail.
    let (r, _) = a.final_response(WAIT).expect("final response");
    assert_eq!(r.status, 200);
}
