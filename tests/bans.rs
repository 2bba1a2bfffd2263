//! Bans and user locks against the real binary over real sockets (issue 11
//! items 2, 3 and 9): failures that answer no nonce of ours (garbage, or a
//! nonce issued to another address) never ban; a source holding live
//! registrations is not banned for another user's failures; trusted
//! networks are never banned; a user is locked after `ban_after_failures`
//! guesses from anywhere, successes in between or not, and then even the
//! right password gets 403 (REGISTER and INVITE alike); the admin API lists
//! and lifts bans and locks; a digest `uri` that is not the Request-URI is
//! a 400 that counts for nothing.
//!
//! 127.0.0.1, 127.0.0.2 and 127.0.0.3 play three hosts.

use std::net::IpAddr;
use std::time::Duration;

use testkit::{DigestChallenge, Server, Ua, challenges};

const DOMAIN: &str = "test.invalid";

fn start(security: &str) -> Server {
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
ban_after_failures = 3
ban_window = "60s"
ban_time = "10m"
{security}

[[extension]]
id = "1001"
password = "secret-1001"

[[extension]]
id = "1002"
password = "secret-1002"
"#
    );
    Server::start_with(env!("CARGO_BIN_EXE_switchboard").as_ref(), &config)
        .expect("switchboard starts")
}

fn host(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

fn ua_at(s: &Server, n: u8) -> Ua {
    Ua::udp_from(s.udp.expect("udp"), host(n)).expect("ua")
}

/// REGISTER as `user` with `password`, answering a fresh challenge.
fn register(ua: &mut Ua, user: &str, password: &str) -> u16 {
    let req = ua.register_request(user, DOMAIN, 600);
    ua.transact_authenticated(&req, user, password)
        .expect("REGISTER answered")
        .status
}

/// Whether the server answers an OPTIONS from `ua` at all (a banned source
/// gets nothing).
fn answered(ua: &mut Ua) -> bool {
    let opt = ua.request("OPTIONS", &format!("sip:{DOMAIN}"));
    ua.send(opt.build().as_bytes()).expect("send");
    ua.recv(Duration::from_millis(700)).is_ok()
}

/// A challenge whose nonce this server never issued.
fn forged_challenge() -> DigestChallenge {
    DigestChallenge {
        realm: DOMAIN.to_owned(),
        nonce: "0".repeat(72),
        algorithm: "MD5".to_owned(),
        qop: Some("auth".to_owned()),
        opaque: None,
        stale: false,
    }
}

/// Sends REGISTERs for `user` with a wrong password answering `challenge`
/// (a fresh nc each), `times` times; returns the statuses (0: no answer).
fn guess_with(ua: &mut Ua, user: &str, challenge: &DigestChallenge, times: u32) -> Vec<u16> {
    let req = ua.register_request(user, DOMAIN, 600);
    (1..=times)
        .map(|nc| {
            let r = ua.authorized(&req, challenge, user, "wrong-guess", nc);
            ua.transact(&r).map_or(0, |r| r.status)
        })
        .collect()
}

fn metric(s: &Server, name: &str) -> f64 {
    let (_, body) = s.http_get("/metrics").expect("metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{body}"))
}

#[test]
fn failures_without_a_nonce_issued_to_the_source_never_ban_it() {
    let s = start("");
    // Spoofed packets "from the office" (127.0.0.1): a made-up nonce...
    let mut spoofer = ua_at(&s, 1);
    let statuses = guess_with(&mut spoofer, "1001", &forged_challenge(), 10);
    assert!(statuses.iter().all(|&st| st == 401), "{statuses:?}");
    // ...and a real nonce, but one issued to another host (127.0.0.2).
    let mut elsewhere = ua_at(&s, 2);
    let req = elsewhere.register_request("1001", DOMAIN, 600);
    let theirs = challenges(&elsewhere.transact(&req).expect("401"))[0].clone();
    let statuses = guess_with(&mut spoofer, "1001", &theirs, 10);
    assert!(statuses.iter().all(|&st| st == 401), "{statuses:?}");
    // The office's phone still registers: neither the source nor the user
    // was punished for 20 failures that guessed nothing.
    let mut phone = ua_at(&s, 1);
    assert_eq!(
        register(&mut phone, "1001", "secret-1001"),
        200,
        "{}",
        s.log()
    );
    assert!(!s.log().contains("banned 127.0.0.1"), "{}", s.log());
    assert!(metric(&s, "registrar_auth_failures_ignored_total") >= 20.0);
    assert_eq!(metric(&s, "registrar_bans_active"), 0.0);
}

#[test]
fn a_source_holding_registrations_is_not_banned_for_another_users_failures() {
    let s = start("");
    let mut phone = ua_at(&s, 1);
    assert_eq!(register(&mut phone, "1001", "secret-1001"), 200);
    // A colleague behind the same NAT guesses 1002's password.
    let mut colleague = ua_at(&s, 1);
    for _ in 0..3 {
        assert_eq!(register(&mut colleague, "1002", "guess"), 401);
    }
    // The office stays up: 1001 refreshes, OPTIONS are answered...
    assert_eq!(
        register(&mut phone, "1001", "secret-1001"),
        200,
        "{}",
        s.log()
    );
    assert!(answered(&mut colleague));
    // ...and the guessed user is locked instead.
    assert_eq!(register(&mut colleague, "1002", "secret-1002"), 403);
    assert!(!s.log().contains("banned 127.0.0.1"), "{}", s.log());
}

#[test]
fn trusted_networks_are_never_banned_but_their_users_are_locked() {
    let s = start("trusted_networks = [\"127.0.0.0/30\"]");
    let mut ua = ua_at(&s, 2);
    for user in ["1990", "1991", "1992", "1993", "1994"] {
        assert_eq!(register(&mut ua, user, "guess"), 401);
    }
    assert!(answered(&mut ua), "a trusted source is never banned");
    for _ in 0..3 {
        assert_eq!(register(&mut ua, "1002", "guess"), 401);
    }
    assert_eq!(
        register(&mut ua, "1002", "secret-1002"),
        403,
        "trust does not exempt a user from its lock"
    );
    // 127.0.0.5 is outside 127.0.0.0/30.
    let mut outside = ua_at(&s, 5);
    for _ in 0..3 {
        assert_eq!(register(&mut outside, "1998", "guess"), 401);
    }
    assert!(!answered(&mut outside), "an untrusted source is banned");
}

#[test]
fn a_user_is_locked_after_n_guesses_even_with_successes_between() {
    let s = start("");
    // 1001's holder guesses 1002's password, re-registering itself between
    // guesses (a success used to clear the source's count).
    let mut insider = ua_at(&s, 2);
    assert_eq!(register(&mut insider, "1001", "secret-1001"), 200);
    assert_eq!(register(&mut insider, "1002", "guess-1"), 401);
    assert_eq!(register(&mut insider, "1002", "guess-2"), 401);
    assert_eq!(register(&mut insider, "1001", "secret-1001"), 200);
    assert_eq!(register(&mut insider, "1002", "guess-3"), 401);
    // 1002 is locked: even its own phone with the right password is refused,
    // for REGISTER...
    let mut owner = ua_at(&s, 3);
    assert_eq!(
        register(&mut owner, "1002", "secret-1002"),
        403,
        "{}",
        s.log()
    );
    assert_eq!(register(&mut insider, "1002", "guess-4"), 403);
    // ...and for INVITE (the same authentication, 407 and Proxy-Authorization).
    let invite = owner
        .request("INVITE", &format!("sip:600@{DOMAIN}"))
        .header("From", &format!("<sip:1002@{DOMAIN}>;tag=lock1"));
    let challenge = owner.transact(&invite).expect("407");
    assert_eq!(challenge.status, 407);
    let ch = challenges(&challenge)[0].clone();
    let auth = ch.answer(
        "1002",
        "secret-1002",
        "INVITE",
        &format!("sip:600@{DOMAIN}"),
        1,
    );
    let retry = owner
        .request("INVITE", &format!("sip:600@{DOMAIN}"))
        .header("From", &format!("<sip:1002@{DOMAIN}>;tag=lock2"))
        .header("Proxy-Authorization", &auth);
    assert_eq!(owner.transact(&retry).expect("answer").status, 403);
    // The insider's own registration is unaffected; the lock is logged once
    // (the server's stderr is read by a thread of the test's: wait for it).
    assert_eq!(register(&mut insider, "1001", "secret-1001"), 200);
    assert!(
        s.wait_log("locked user \"1002\"", Duration::from_secs(5)),
        "{}",
        s.log()
    );
    let log = s.log();
    assert_eq!(log.matches("locked user \"1002\"").count(), 1, "{log}");
    assert_eq!(metric(&s, "registrar_user_locks_active"), 1.0);
}

#[test]
fn bans_and_locks_are_listed_and_lifted_over_the_api() {
    let s = start("");
    let mut scanner = ua_at(&s, 2);
    for _ in 0..3 {
        assert_eq!(register(&mut scanner, "1001", "guess"), 401);
    }
    assert!(!answered(&mut scanner), "banned");
    let (status, body) = s.http_get("/api/v1/bans").expect("bans");
    assert_eq!(status, 200, "{body}");
    let bans: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(bans["sources"][0]["source"], "127.0.0.2", "{body}");
    assert!(bans["sources"][0]["remaining_secs"].as_u64().unwrap_or(0) > 500);
    assert_eq!(bans["users"][0]["user"], "1001", "{body}");
    assert_eq!(
        bans["users"][0]["failures_by_source"][0],
        serde_json::json!(["127.0.0.2", 3])
    );

    let (status, body) = s.http("DELETE", "/api/v1/bans/127.0.0.2").expect("unban");
    assert_eq!(status, 200, "{body}");
    assert!(
        answered(&mut scanner),
        "answered again once the ban is lifted"
    );
    assert_eq!(
        register(&mut scanner, "1001", "secret-1001"),
        403,
        "still locked"
    );
    let (status, body) = s.http("DELETE", "/api/v1/bans/user/1001").expect("unlock");
    assert_eq!(status, 200, "{body}");
    assert_eq!(register(&mut scanner, "1001", "secret-1001"), 200);

    let (status, _) = s.http("DELETE", "/api/v1/bans/127.0.0.2").expect("unban");
    assert_eq!(status, 404, "nothing left to lift");
    let (status, _) = s.http("DELETE", "/api/v1/bans/not-an-ip").expect("unban");
    assert_eq!(status, 400);
    let (_, body) = s.http_get("/api/v1/bans").expect("bans");
    assert_eq!(body, r#"{"sources":[],"users":[]}"#);
}

#[test]
fn a_digest_uri_other_than_the_request_uri_is_400_and_counts_for_nothing() {
    let s = start("");
    let mut ua = ua_at(&s, 2);
    let req = ua.register_request("1001", DOMAIN, 600);
    assert_eq!(
        req.build().lines().next(),
        Some("REGISTER sip:test.invalid SIP/2.0")
    );
    let ch = challenges(&ua.transact(&req).expect("401"))[0].clone();
    let elsewhere = "sip:elsewhere.invalid";
    // The right password, but the answer covers another URI.
    let moved = ua.authorized(&req, &ch, "1001", "secret-1001", 1).header(
        "Authorization",
        &ch.answer("1001", "secret-1001", "REGISTER", elsewhere, 1),
    );
    assert_eq!(ua.transact(&moved).expect("answer").status, 400);
    // Wrong passwords for another URI do not count towards a ban.
    for nc in 2..=6 {
        let r = ua.authorized(&req, &ch, "1001", "guess", nc).header(
            "Authorization",
            &ch.answer("1001", "guess", "REGISTER", elsewhere, nc),
        );
        assert_eq!(ua.transact(&r).expect("answer").status, 400);
    }
    assert!(answered(&mut ua));
    assert_eq!(register(&mut ua, "1001", "secret-1001"), 200);
}
