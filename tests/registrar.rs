//! Registration end to end against the real binary over real sockets: RFC
//! 3261 §10.3 with digest (RFC 7616 / RFC 8760), persistence across a
//! restart, expiry, NAT, and the protections against scanners and
//! password guessers.

use std::time::Duration;

use testkit::{Server, Ua, challenges};

const DOMAIN: &str = "test.invalid";

fn config(extra: &str) -> String {
    format!(
        r#"
[sip]
listen = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]
domain = "{DOMAIN}"

[admin]
listen = "127.0.0.1:0"

[storage]
path = "var/switchboard.redb"

{extra}

[[extension]]
id = "1001"
password = "secret-1001"

[[extension]]
id = "1002"
password = "secret-1002"
"#
    )
}

fn start(extra: &str) -> Server {
    Server::start_with(env!("CARGO_BIN_EXE_switchboard").as_ref(), &config(extra))
        .expect("switchboard starts")
}

fn registrations(s: &Server) -> Vec<serde_json::Value> {
    let (status, body) = s.http_get("/api/v1/registrations").expect("admin API");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("JSON array")
}

fn register(ua: &mut Ua, user: &str, password: &str, expires: u32) -> sip_proto::Response {
    let req = ua.register_request(user, DOMAIN, expires);
    ua.transact_authenticated(&req, user, password)
        .expect("REGISTER answered")
}

#[test]
fn phone_registers_with_digest_and_shows_in_the_api() {
    let s = start("");
    let mut ua = Ua::udp(s.udp.expect("udp")).expect("ua");
    // Unauthenticated: 401 with one MD5 challenge for our realm.
    let req = ua.register_request("1001", DOMAIN, 600);
    let first = ua.transact(&req).expect("401");
    assert_eq!(first.status, 401);
    let ch = challenges(&first);
    assert_eq!(ch.len(), 1, "default digest_algorithms = [\"MD5\"]");
    assert_eq!(ch[0].realm, DOMAIN);
    assert_eq!(ch[0].algorithm, "MD5");
    assert_eq!(ch[0].qop.as_deref(), Some("auth"));
    // Authenticated: 200 listing the contact with its expiry.
    let ok = register(&mut ua, "1001", "secret-1001", 600);
    assert_eq!(ok.status, 200);
    let contacts = match ok.headers.contact().expect("Contact") {
        sip_proto::header::Contact::Addrs(a) => a,
        other => panic!("{other:?}"),
    };
    assert_eq!(contacts.len(), 1);
    let expires: u32 = contacts[0]
        .params
        .get("expires")
        .flatten()
        .and_then(|e| e.parse().ok())
        .expect("expires param");
    assert!((595..=600).contains(&expires), "{expires}");
    let regs = registrations(&s);
    assert_eq!(regs.len(), 1, "{regs:?}");
    assert_eq!(regs[0]["aor"], format!("sip:1001@{DOMAIN}"));
    assert_eq!(regs[0]["source"], ua.local_addr().to_string());
    assert_eq!(regs[0]["transport"], "udp");
}

#[test]
fn refresh_unregister_and_star() {
    let s = start("");
    let mut ua = Ua::udp(s.udp.expect("udp")).expect("ua");
    assert_eq!(register(&mut ua, "1001", "secret-1001", 600).status, 200);
    assert_eq!(register(&mut ua, "1001", "secret-1001", 900).status, 200);
    assert_eq!(
        registrations(&s).len(),
        1,
        "a refresh does not add a binding"
    );
    // Expires: 0 removes it.
    let gone = register(&mut ua, "1001", "secret-1001", 0);
    assert_eq!(gone.status, 200);
    assert!(registrations(&s).is_empty());
    // Two phones (two contacts), then Contact: * removes both.
    let mut other = Ua::udp(s.udp.expect("udp")).expect("ua");
    assert_eq!(register(&mut ua, "1001", "secret-1001", 600).status, 200);
    assert_eq!(register(&mut other, "1001", "secret-1001", 600).status, 200);
    assert_eq!(registrations(&s).len(), 2);
    let star = ua
        .register_request("1001", DOMAIN, 0)
        .header("Contact", "*");
    let r = ua
        .transact_authenticated(&star, "1001", "secret-1001")
        .expect("answer");
    assert_eq!(r.status, 200);
    assert!(registrations(&s).is_empty());
    // * with a non-zero Expires is a 400.
    let bad_star = ua
        .register_request("1001", DOMAIN, 60)
        .header("Contact", "*");
    let r = ua
        .transact_authenticated(&bad_star, "1001", "secret-1001")
        .expect("answer");
    assert_eq!(r.status, 400);
}

#[test]
fn too_brief_expiry_gets_423_with_min_expires() {
    let s = start("");
    let mut ua = Ua::udp(s.udp.expect("udp")).expect("ua");
    let r = register(&mut ua, "1001", "secret-1001", 10);
    assert_eq!(r.status, 423);
    assert_eq!(r.headers.get_raw("Min-Expires"), Some("60"));
}

#[test]
fn wrong_password_and_unknown_user_look_the_same() {
    let s = start("");
    let mut ua = Ua::udp(s.udp.expect("udp")).expect("ua");
    let wrong = register(&mut ua, "1001", "not-the-password", 600);
    let unknown = register(&mut ua, "1999", "whatever", 600);
    assert_eq!(wrong.status, 401);
    assert_eq!(unknown.status, 401);
    let names = |r: &sip_proto::Response| {
        r.headers
            .iter()
            .map(|h| h.name.as_str().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&wrong),
        names(&unknown),
        "same headers in the same order"
    );
    let (w, u) = (&challenges(&wrong)[0], &challenges(&unknown)[0]);
    assert_eq!(
        (&w.realm, &w.algorithm, &w.qop, w.stale),
        (&u.realm, &u.algorithm, &u.qop, u.stale)
    );
    assert!(registrations(&s).is_empty());
}

#[test]
fn replayed_nonce_count_is_refused() {
    let s = start("");
    let mut ua = Ua::udp(s.udp.expect("udp")).expect("ua");
    let req = ua.register_request("1001", DOMAIN, 600);
    let ch = challenges(&ua.transact(&req).expect("401"))[0].clone();
    let first = ua.authorized(&req, &ch, "1001", "secret-1001", 1);
    assert_eq!(ua.transact(&first).expect("200").status, 200);
    // The same nonce with the same nc again (fresh branch and CSeq): replay.
    let replay = ua.authorized(&req, &ch, "1001", "secret-1001", 1);
    assert_eq!(ua.transact(&replay).expect("answer").status, 401);
    // The next nc is fine.
    let next = ua.authorized(&req, &ch, "1001", "secret-1001", 2);
    assert_eq!(ua.transact(&next).expect("answer").status, 200);
}

#[test]
fn expired_nonce_with_right_password_gets_stale_true() {
    let s = start("[security]\nnonce_max_age = \"1s\"");
    let mut ua = Ua::udp(s.udp.expect("udp")).expect("ua");
    let req = ua.register_request("1001", DOMAIN, 600);
    let ch = challenges(&ua.transact(&req).expect("401"))[0].clone();
    std::thread::sleep(Duration::from_millis(2500));
    let late = ua.authorized(&req, &ch, "1001", "secret-1001", 1);
    let r = ua.transact(&late).expect("answer");
    assert_eq!(r.status, 401);
    assert!(
        challenges(&r)[0].stale,
        "stale=true for a valid response to an old nonce"
    );
    // With a wrong password the old nonce is not stale, just wrong.
    let wrong = ua.authorized(&req, &ch, "1001", "bad", 1);
    let r = ua.transact(&wrong).expect("answer");
    assert!(!challenges(&r)[0].stale);
}

#[test]
fn out_of_order_cseq_is_refused() {
    let s = start("");
    let mut ua = Ua::udp(s.udp.expect("udp")).expect("ua");
    let req = ua.register_request("1001", DOMAIN, 600);
    let ch = challenges(&ua.transact(&req).expect("401"))[0].clone();
    let ok = ua.authorized(&req, &ch, "1001", "secret-1001", 1);
    assert_eq!(ua.transact(&ok).expect("200").status, 200);
    // Same Call-ID, lower CSeq, new branch.
    let stale_cseq = ua
        .authorized(&req, &ch, "1001", "secret-1001", 2)
        .header("CSeq", "1 REGISTER");
    assert_eq!(ua.transact(&stale_cseq).expect("answer").status, 400);
}

#[test]
fn sha256_first_and_md5_phones_both_register() {
    let s = start("[security]\ndigest_algorithms = [\"SHA-256\", \"MD5\"]");
    let mut ua = Ua::udp(s.udp.expect("udp")).expect("ua");
    let req = ua.register_request("1001", DOMAIN, 600);
    let r = ua.transact(&req).expect("401");
    let ch = challenges(&r);
    let algs: Vec<&str> = ch.iter().map(|c| c.algorithm.as_str()).collect();
    assert_eq!(
        algs,
        ["SHA-256", "MD5"],
        "one challenge per algorithm, in config order"
    );
    // An RFC 8760 phone answers the first; an MD5-only phone the MD5 one.
    let sha = ua.authorized(&req, &ch[0], "1001", "secret-1001", 1);
    assert_eq!(ua.transact(&sha).expect("200").status, 200);
    let md5 = ua.authorized(&req, &ch[1], "1001", "secret-1001", 1);
    assert_eq!(ua.transact(&md5).expect("200").status, 200);
}

#[test]
fn phone_behind_nat_is_stored_with_its_real_source() {
    let s = start("");
    let mut ua = Ua::tcp(s.tcp.expect("tcp")).expect("ua");
    let req = ua
        .register_request("1002", DOMAIN, 600)
        .header("Contact", "<sip:1002@10.1.2.3:5060>");
    let r = ua
        .transact_authenticated(&req, "1002", "secret-1002")
        .expect("answer");
    assert_eq!(r.status, 200);
    let regs = registrations(&s);
    assert_eq!(regs[0]["contact"], "sip:1002@10.1.2.3:5060");
    assert_eq!(regs[0]["source"], ua.local_addr().to_string());
    assert_eq!(regs[0]["transport"], "tcp");
}

#[test]
fn bindings_expire_on_time() {
    let s = start("[registrar]\nmin_expires = 1\ndefault_expires = 60");
    let mut ua = Ua::udp(s.udp.expect("udp")).expect("ua");
    assert_eq!(register(&mut ua, "1001", "secret-1001", 2).status, 200);
    assert_eq!(registrations(&s).len(), 1);
    std::thread::sleep(Duration::from_millis(3500));
    assert!(registrations(&s).is_empty(), "gone after its expiry");
}

#[test]
fn registrations_survive_a_restart() {
    let s = start("");
    let mut ua = Ua::udp(s.udp.expect("udp")).expect("ua");
    assert_eq!(register(&mut ua, "1001", "secret-1001", 600).status, 200);
    let s = s.restart().expect("restarts");
    let regs = registrations(&s);
    assert_eq!(regs.len(), 1, "{regs:?}");
    assert_eq!(regs[0]["aor"], format!("sip:1001@{DOMAIN}"));
}

/// "A 200 OK means the binding survives kill -9", under load: phones on
/// several sockets register 200 extensions at once (so their commits are
/// grouped), the server is killed with SIGKILL while they are still
/// registering, and after the restart every binding that got its 200 is
/// there, as that REGISTER or a later one left it (round `r` asks for
/// 1,000 + 100·`r` seconds, so a lost refresh shows as a shorter expiry).
#[test]
fn acknowledged_registrations_survive_sigkill_under_load() {
    const PHONES: usize = 8;
    const EXTENSIONS: usize = 200;
    let mut extensions = String::new();
    for n in 0..EXTENSIONS {
        extensions.push_str(&format!(
            "\n[[extension]]\nid = \"{}\"\npassword = \"pw-{}\"\n",
            3000 + n,
            3000 + n
        ));
    }
    let s = start(&extensions);
    let udp = s.udp.expect("udp");
    // Each phone registers its share of the extensions over and over
    // until the server stops answering; it records every 200 it got.
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, u32)>::new()));
    let total = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let phones: Vec<_> = (0..PHONES)
        .map(|p| {
            let (acked, total) = (acked.clone(), total.clone());
            std::thread::spawn(move || {
                let mut ua = Ua::udp(udp).expect("ua");
                let mine: Vec<usize> = (p..EXTENSIONS).step_by(PHONES).collect();
                for round in 0..20u32 {
                    for &n in &mine {
                        let user = (3000 + n).to_string();
                        let req = ua.register_request(&user, DOMAIN, 1000 + 100 * round);
                        let Ok(resp) =
                            ua.transact_authenticated(&req, &user, &format!("pw-{user}"))
                        else {
                            return;
                        };
                        if resp.status != 200 {
                            return;
                        }
                        acked.lock().expect("acked").push((user, round));
                        total.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    // Kill once every extension has been acknowledged at least once and
    // more registrations are in flight.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while total.load(std::sync::atomic::Ordering::SeqCst) < EXTENSIONS + EXTENSIONS / 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} registrations in 60 s",
            total.load(std::sync::atomic::Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let s = s.kill_and_restart().expect("restarts after SIGKILL");
    for phone in phones {
        phone.join().expect("phone thread");
    }
    let acked = acked.lock().expect("acked").clone();
    let regs = registrations(&s);
    let stored: std::collections::HashMap<String, &serde_json::Value> = regs
        .iter()
        .map(|r| (r["aor"].as_str().unwrap_or_default().to_owned(), r))
        .collect();
    let mut last_round = std::collections::HashMap::new();
    for (user, round) in &acked {
        let last = last_round.entry(user.clone()).or_insert(*round);
        *last = (*last).max(*round);
    }
    assert_eq!(
        last_round.len(),
        EXTENSIONS,
        "every extension was acknowledged"
    );
    for (user, round) in last_round {
        let aor = format!("sip:{user}@{DOMAIN}");
        let Some(stored) = stored.get(&aor) else {
            panic!(
                "{aor} got a 200 but was lost by the SIGKILL ({} of {EXTENSIONS} bindings survived)",
                regs.len()
            );
        };
        // A minute of slack for the test's own run time.
        let at_least = u64::from(1000 + 100 * round) - 60;
        let expires_in = stored["expires_in"].as_u64().unwrap_or_default();
        assert!(
            expires_in >= at_least,
            "{aor}: its round-{round} refresh got a 200 but the binding left by an earlier one survived \
             (expires in {expires_in} s)"
        );
    }
    assert_eq!(regs.len(), EXTENSIONS, "{regs:?}");
}

#[test]
fn repeated_failures_ban_the_source_silently() {
    let s = start("[security]\nban_after_failures = 3\nban_window = \"60s\"\nban_time = \"10m\"");
    let mut ua = Ua::udp(s.udp.expect("udp")).expect("ua");
    for _ in 0..3 {
        assert_eq!(register(&mut ua, "1001", "guess", 600).status, 401);
    }
    // Banned: nothing is answered, not even OPTIONS or the right password.
    let opt = ua.request("OPTIONS", &format!("sip:{DOMAIN}"));
    ua.send(opt.build().as_bytes()).expect("send");
    assert!(
        ua.recv(Duration::from_millis(700)).is_err(),
        "banned source gets no answer"
    );
    let log = s.log();
    assert_eq!(
        log.matches("banned 127.0.0.1").count(),
        1,
        "logged once:\n{log}"
    );
    let (_, metrics) = s.http_get("/metrics").expect("metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("registrar_bans_active 1")),
        "{metrics}"
    );
}

#[test]
fn qualify_marks_contacts_reachable_or_not() {
    // Short timers so an unanswered ping times out (64*T1) within the test.
    let extra = "[registrar]\nqualify_interval = \"1s\"";
    let cfg = config(extra).replace(
        "domain = \"test.invalid\"",
        "domain = \"test.invalid\"\nt1 = \"50ms\"\nt2 = \"400ms\"",
    );
    let s = Server::start_with(env!("CARGO_BIN_EXE_switchboard").as_ref(), &cfg)
        .expect("switchboard starts");
    let mut answering = Ua::udp(s.udp.expect("udp")).expect("ua");
    let mut silent = Ua::tcp(s.tcp.expect("tcp")).expect("ua");
    assert_eq!(
        register(&mut answering, "1001", "secret-1001", 600).status,
        200
    );
    assert_eq!(
        register(&mut silent, "1002", "secret-1002", 600).status,
        200
    );
    // The server pings the phone where its REGISTER came from; this one
    // answers every ping (for 12 s), checking each is addressed to it.
    let responder = std::thread::spawn(move || {
        let until = std::time::Instant::now() + Duration::from_secs(12);
        let mut pings = 0;
        while std::time::Instant::now() < until {
            let Ok(sip_proto::Message::Request(ping)) = answering.recv(Duration::from_millis(200))
            else {
                continue;
            };
            assert_eq!(ping.method, sip_proto::Method::Options);
            assert!(
                ping.to_bytes().starts_with(b"OPTIONS sip:1001@"),
                "to the registered contact"
            );
            let mut ok = String::from("SIP/2.0 200 OK\r\n");
            for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
                for h in ping
                    .headers
                    .iter()
                    .filter(|h| h.name.as_str().eq_ignore_ascii_case(name))
                {
                    ok.push_str(&format!("{name}: {}\r\n", h.value));
                }
            }
            ok.push_str("Content-Length: 0\r\n\r\n");
            answering.send(ok.as_bytes()).expect("answer the ping");
            pings += 1;
        }
        pings
    });
    // The silent phone never answers: after 64*T1 = 3.2 s it is unreachable.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let regs = registrations(&s);
        let by = |user: &str| {
            regs.iter()
                .find(|r| r["aor"] == format!("sip:{user}@{DOMAIN}"))
                .map(|r| r["reachable"].clone())
        };
        if by("1001") == Some(serde_json::json!(true))
            && by("1002") == Some(serde_json::json!(false))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "reachability not reported: {regs:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        responder.join().expect("responder") >= 2,
        "pinged every interval"
    );
}
