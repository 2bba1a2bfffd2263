//! Issue 15's papercuts that a new office admin meets, against the real
//! binary over real sockets: why a phone does not register (the log says),
//! extension changes on reload, `GET /api/v1/extensions`.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use testkit::{Server, Ua};

const DOMAIN: &str = "test.invalid";

fn start(extra: &str) -> Server {
    let config = format!(
        r#"
[sip]
listen = ["udp:127.0.0.1:0"]
domain = "{DOMAIN}"

[admin]
listen = "127.0.0.1:0"

[storage]
backend = "memory"

[security]
ban_after_failures = 4
trusted_networks = ["127.0.0.0/8"]
{extra}

[[extension]]
id = "1001"
password = "Vq7-zK2p-Lm9w"
name = "Alice"

[[extension]]
id = "1002"
password = "Rt4-hX8n-Pc3y"
"#
    );
    Server::start_with(env!("CARGO_BIN_EXE_switchboard").as_ref(), &config)
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
