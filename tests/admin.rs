//! The admin HTTP API of a running `switchboard`: `/health`, `/metrics`,
//! `/api/v1/registrations`, errors, and turning it off.

mod binary;

use std::time::Duration;

use binary::{TEST_ADMIN_TOKEN, Workdir, free_ports_config, http, http_with, loopback_config};

fn start() -> (Workdir, binary::Running) {
    let w = Workdir::with_file("switchboard.toml", &free_ports_config());
    let sb = w.start(&["run"]);
    (w, sb)
}

#[test]
fn health_is_ok_json() {
    let (_w, sb) = start();
    let r = http(sb.admin_addr(), "GET", "/health");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.body, r#"{"status":"ok"}"#);
}

#[test]
fn metrics_is_prometheus_text_with_build_info_and_uptime() {
    let (_w, sb) = start();
    let r = http(sb.admin_addr(), "GET", "/metrics");
    assert_eq!(r.status, 200);
    let content_type = r.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let build_info = format!(
        "switchboard_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    assert!(r.body.contains(&build_info), "{}", r.body);
    assert!(
        r.body.contains("# TYPE switchboard_uptime_seconds gauge"),
        "{}",
        r.body
    );
    let uptime: f64 = r
        .body
        .lines()
        .find_map(|l| l.strip_prefix("switchboard_uptime_seconds "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no uptime sample in:\n{}", r.body));
    assert!(uptime > 0.0, "{uptime}");
}

#[test]
fn unknown_path_is_404_json() {
    let (_w, sb) = start();
    let r = http(sb.admin_addr(), "GET", "/api/v0/nothing");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.body.contains(r#""error":"not found""#), "{}", r.body);
    assert!(r.body.contains("/api/v0/nothing"), "{}", r.body);
}

#[test]
fn wrong_method_is_405_json() {
    let (_w, sb) = start();
    let r = http(sb.admin_addr(), "POST", "/health");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("content-type"), Some("application/json"));
}

#[test]
fn admin_stops_with_the_process_on_sigterm() {
    let (_w, mut sb) = start();
    let admin = sb.admin_addr();
    assert_eq!(http(admin, "GET", "/health").status, 200);
    sb.signal("TERM");
    let status = sb.wait(Duration::from_secs(10)).expect("exit within 10 s");
    assert_eq!(status.code(), Some(0), "{}", sb.log());
    assert!(
        std::net::TcpStream::connect_timeout(&admin, Duration::from_secs(1)).is_err(),
        "admin port still open after exit"
    );
}

#[test]
fn admin_can_be_disabled() {
    let config = format!(
        "{}enabled = false\n",
        loopback_config(&["udp:127.0.0.1:0"], "127.0.0.1:0")
    );
    let w = Workdir::with_file("switchboard.toml", &config);
    let mut sb = w.start(&["run"]);
    assert_eq!(sb.admin, None);
    assert!(sb.log().contains("admin HTTP disabled"), "{}", sb.log());
    sb.signal("TERM");
    let status = sb.wait(Duration::from_secs(10)).expect("exit within 10 s");
    assert_eq!(status.code(), Some(0), "{}", sb.log());
}

#[test]
fn metrics_count_sip_messages() {
    let (_w, sb) = start();
    let server = sb.sip_addr("udp");
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let local = socket.local_addr().expect("local addr");
    let options = format!(
        "OPTIONS sip:ping@{server} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-admin-metrics-1\r\n\
         Max-Forwards: 70\r\n\
         To: <sip:ping@{server}>\r\n\
         From: <sip:monitor@{local}>;tag=m1\r\n\
         Call-ID: admin-metrics-1@{local}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    );
    socket
        .send_to(options.as_bytes(), server)
        .expect("send OPTIONS");
    let mut buf = [0u8; 4096];
    let (n, _) = socket.recv_from(&mut buf).expect("an answer to OPTIONS");
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("SIP/2.0 200 "), "{answer}");

    let body = http(sb.admin_addr(), "GET", "/metrics").body;
    assert!(
        body.contains(r#"sip_messages_in_total{kind="request",method="OPTIONS"} 1"#),
        "{body}"
    );
    assert!(
        body.contains(r#"sip_messages_out_total{kind="response",status="200"} 1"#),
        "{body}"
    );
}

#[test]
fn registrations_start_empty_with_memory_storage() {
    let config = format!("{}\n[storage]\nbackend = \"memory\"\n", free_ports_config());
    let w = Workdir::with_file("switchboard.toml", &config);
    let sb = w.start(&["run"]);
    assert!(
        sb.log().contains("registrar: 0 extensions, storage memory"),
        "{}",
        sb.log()
    );
    let r = http(sb.admin_addr(), "GET", "/api/v1/registrations");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.body, "[]");
    assert!(
        !w.path().join("var").exists(),
        "memory storage wrote a file"
    );
    let r = http(sb.admin_addr(), "POST", "/api/v1/registrations");
    assert_eq!(r.status, 405);
}

#[test]
fn registrations_start_empty_with_a_redb_file() {
    let config = format!(
        "{}\n[storage]\npath = \"state/pbx.redb\"\n\n[[extension]]\nid = \"1001\"\npassword = \"secret\"\n",
        free_ports_config()
    );
    let w = Workdir::with_file("switchboard.toml", &config);
    let mut sb = w.start(&["run"]);
    assert!(
        sb.log()
            .contains("registrar: 1 extensions, storage state/pbx.redb"),
        "{}",
        sb.log()
    );
    assert!(w.path().join("state/pbx.redb").is_file());
    let r = http(sb.admin_addr(), "GET", "/api/v1/registrations");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "[]");
    // A config file's extensions get no generated password.
    assert!(!sb.log().contains("demo extension"), "{}", sb.log());
    sb.signal("TERM");
    let status = sb.wait(Duration::from_secs(10)).expect("exit within 10 s");
    assert_eq!(status.code(), Some(0), "{}", sb.log());
}

#[test]
fn metrics_include_the_registrar_from_the_start() {
    let (_w, sb) = start();
    let body = http(sb.admin_addr(), "GET", "/metrics").body;
    for line in [
        "# TYPE registrar_bindings gauge",
        "registrar_bindings 0",
        "# TYPE registrar_auth_failures_total counter",
        "registrar_auth_failures_total 0",
        "# TYPE registrar_bans_active gauge",
        "registrar_bans_active 0",
    ] {
        assert!(body.lines().any(|l| l == line), "{line} missing:\n{body}");
    }
}

#[test]
fn every_endpoint_but_health_needs_the_token_and_a_host_naming_the_listener() {
    let (_w, sb) = start();
    let admin = sb.admin_addr();
    let port = admin.port();
    let here = admin.to_string();
    let bearer = format!("Bearer {TEST_ADMIN_TOKEN}");
    // No token, or a wrong one: 401, for reads and for the reload a web
    // page could otherwise post (CSRF).
    for (method, path) in [
        ("GET", "/api/v1/registrations"),
        ("GET", "/api/v1/cdrs"),
        ("GET", "/api/v1/bans"),
        ("GET", "/metrics"),
        ("POST", "/api/v1/reload"),
    ] {
        let r = http_with(admin, method, path, &[("Host", &here)]);
        assert_eq!(r.status, 401, "{method} {path}: {}", r.body);
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"switchboard\"")
        );
        let r = http_with(
            admin,
            method,
            path,
            &[("Host", &here), ("Authorization", "Bearer not-the-token")],
        );
        assert_eq!(r.status, 401, "{method} {path} with a wrong token");
    }
    // A name that is not this listener (DNS rebinding): refused even with
    // the token.
    for host in [
        format!("rebind.attacker.example:{port}"),
        format!("localhost:{}", port.wrapping_add(1)),
        String::new(),
    ] {
        let r = http_with(
            admin,
            "GET",
            "/api/v1/registrations",
            &[("Host", &host), ("Authorization", &bearer)],
        );
        assert_eq!(r.status, 421, "Host {host:?}: {}", r.body);
    }
    // The listener's own names, with the token: 200.
    for host in [here.clone(), format!("localhost:{port}")] {
        let r = http_with(
            admin,
            "GET",
            "/api/v1/registrations",
            &[("Host", &host), ("Authorization", &bearer)],
        );
        assert_eq!(r.status, 200, "Host {host}: {}", r.body);
    }
    // /health needs no token.
    let r = http_with(admin, "GET", "/health", &[("Host", &here)]);
    assert_eq!(r.status, 200);
}

#[test]
fn metrics_can_be_public() {
    let config = free_ports_config() + "metrics_public = true\n";
    let w = Workdir::with_file("switchboard.toml", &config);
    let sb = w.start(&["run"]);
    let admin = sb.admin_addr();
    let here = admin.to_string();
    let r = http_with(admin, "GET", "/metrics", &[("Host", &here)]);
    assert_eq!(r.status, 200);
    assert!(r.body.contains("switchboard_build_info"), "{}", r.body);
    let r = http_with(admin, "GET", "/api/v1/calls", &[("Host", &here)]);
    assert_eq!(r.status, 401, "only /metrics is public");
}

#[test]
fn without_admin_token_one_is_generated_into_a_0600_file_beside_the_storage() {
    let config = "[sip]\nlisten = [\"udp:127.0.0.1:0\"]\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
                  [storage]\npath = \"state/pbx.redb\"\n";
    let w = Workdir::with_file("switchboard.toml", config);
    let mut sb = w.start(&["run"]);
    let file = w.path().join("state/admin.token");
    assert!(
        sb.log().contains("state/admin.token"),
        "path logged:\n{}",
        sb.log()
    );
    let token = std::fs::read_to_string(&file).expect("token file");
    let token = token.trim().to_owned();
    assert!(token.len() >= 32, "{token}");
    assert!(!sb.log().contains(&token), "the token itself is not logged");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "mode {:o}", mode & 0o777);
    }
    let admin = sb.admin_addr();
    let here = admin.to_string();
    let bearer = format!("Bearer {token}");
    let r = http_with(
        admin,
        "GET",
        "/api/v1/registrations",
        &[("Host", &here), ("Authorization", &bearer)],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // A restart reads the same token back.
    sb.signal("TERM");
    sb.wait(Duration::from_secs(10)).expect("exit");
    let sb = w.start(&["run"]);
    let again = std::fs::read_to_string(&file).expect("token file");
    assert_eq!(again.trim(), token);
    let r = http_with(
        sb.admin_addr(),
        "GET",
        "/api/v1/registrations",
        &[
            ("Host", &sb.admin_addr().to_string()),
            ("Authorization", &bearer),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
}
