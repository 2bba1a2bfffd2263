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
