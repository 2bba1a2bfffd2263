//! `[storage] backend = "postgres"` through the real binary: phones register
//! and are called with their bindings in PostgreSQL, the bindings and CDRs
//! survive a restart, and a database outage gives 503 to what needs storage
//! while calls that are up carry on, until the database returns by itself.
//! PostgreSQL is started by the test (testkit::Postgres: initdb/pg_ctl in a
//! temporary directory); where it is not installed the tests say so and skip.

mod binary;

use std::time::{Duration, Instant};

use binary::{Workdir, free_ports_config};
use sip_proto::HeaderName;
use testkit::{Phone, Postgres, Server};

const DOMAIN: &str = "test.invalid";
const WAIT: Duration = Duration::from_secs(5);

/// Dials the number and passes a failed dial's code to the caller, so the
/// test sees what the location lookup answered. `*N` reads `kv` first (as
/// the shipped call forwarding does), then dials N.
const DIAL_LUA: &str = r#"
function route(call)
  local dest = call.request_uri.user
  if dest:sub(1, 1) == "*" then
    kv.get("forward", dest)
    dest = dest:sub(2)
  end
  local r = call:dial(dest, { timeout = 10 })
  if r.status ~= "answered" and r.status ~= "cancelled" then
    call:reject(r.code >= 400 and r.code or 500)
  end
end
"#;

struct Office {
    server: Server,
    pg: Postgres,
    _dir: tempfile::TempDir,
}

/// One switchboard node on the database at `url`.
struct Node {
    server: Server,
    _dir: tempfile::TempDir,
}

fn postgres() -> Option<Postgres> {
    let pg = Postgres::start().expect("PostgreSQL starts");
    if pg.is_none() {
        eprintln!("{}", testkit::POSTGRES_MISSING);
    }
    pg
}

/// A switchboard on `pg`; the URL is read from `url_file`, as a deployment
/// keeps the password out of the config.
fn office(pg: Postgres, db: &str) -> Office {
    let url = pg.create_database(db).expect("createdb");
    let Node { server, _dir } = node(&url);
    Office { server, pg, _dir }
}

/// A switchboard on the database at `url`, on a fixed UDP port (so that
/// the phones still reach it after a restart).
fn node(url: &str) -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    let url_file = dir.path().join("pg.url");
    std::fs::write(&url_file, format!("{url}\n")).expect("write url_file");
    let dialplans = dir.path().join("dialplans");
    std::fs::create_dir_all(&dialplans).expect("dialplans");
    std::fs::write(dialplans.join("default.lua"), DIAL_LUA).expect("dialplan");
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free UDP port")
        .port();
    let config = format!(
        r#"
[sip]
listen = ["udp:127.0.0.1:{port}"]
domain = "{DOMAIN}"

[admin]
listen = "127.0.0.1:0"

[storage]
backend = "postgres"
url_file = "{}"
pool_size = 4
connect_timeout = "2s"
query_timeout = "2s"

[registrar]
qualify_interval = "0s"

[dialplan]
dir = "{}"

[[extension]]
id = "1001"
password = "pw-1001-secret"

[[extension]]
id = "1002"
password = "pw-1002-secret"

[[extension]]
id = "1003"
password = "pw-1003-secret"
"#,
        url_file.display(),
        dialplans.display()
    );
    let server = Server::start_with(env!("CARGO_BIN_EXE_switchboard").as_ref(), &config)
        .expect("switchboard starts on PostgreSQL");
    Node { server, _dir: dir }
}

fn phone(s: &Server, user: &str) -> Phone {
    Phone::udp(
        s.udp.expect("udp"),
        user,
        &format!("pw-{user}-secret"),
        DOMAIN,
    )
}

fn json(s: &Server, path: &str) -> serde_json::Value {
    let (status, body) = s.http_get(path).expect("admin API");
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("JSON")
}

fn aors(s: &Server) -> Vec<String> {
    let regs = json(s, "/api/v1/registrations");
    let mut aors: Vec<String> = regs
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|r| r["aor"].as_str().map(str::to_owned))
        .collect();
    aors.sort();
    aors
}

/// `a` calls `dest` and `b` answers; both ACKed.
fn establish(a: &mut Phone, b: &mut Phone, dest: &str) -> (testkit::Dialog, testkit::InCall) {
    let call = a.call(dest).expect("INVITE sent");
    let incoming = b.incoming(WAIT).expect("callee gets the INVITE");
    b.reply(&incoming.invite, &incoming.tag, 200).expect("200");
    let (ok, _) = a.final_response(WAIT).expect("200 relayed");
    assert_eq!(ok.status, 200);
    let dialog = a.ack(&call, &ok).expect("ACK");
    b.request("ACK", WAIT).expect("the B2BUA ACKs the callee");
    (dialog, incoming)
}

fn hang_up(a: &mut Phone, dialog: &mut testkit::Dialog, b: &mut Phone, incoming: &testkit::InCall) {
    let bye = a.request_in(dialog, "BYE", None).expect("BYE answered");
    assert_eq!(bye.status, 200);
    let bye_b = b.request("BYE", WAIT).expect("callee gets BYE");
    b.reply(&bye_b, &incoming.tag, 200).expect("200 to BYE");
}

#[test]
fn bindings_and_cdrs_live_in_postgres_and_survive_a_restart() {
    let Some(pg) = postgres() else { return };
    let o = office(pg, "restart");
    let s = &o.server;
    assert!(
        s.log().contains("storage: PostgreSQL"),
        "the server says where its storage is: {}",
        s.log()
    );
    let mut a = phone(s, "1001");
    let mut b = phone(s, "1002");
    assert_eq!(a.register(), 200);
    assert_eq!(b.register(), 200);
    let (mut dialog, incoming) = establish(&mut a, &mut b, "1002");
    hang_up(&mut a, &mut dialog, &mut b, &incoming);
    let deadline = Instant::now() + WAIT;
    while json(s, "/api/v1/cdrs").as_array().map_or(0, Vec::len) == 0 {
        assert!(Instant::now() < deadline, "no CDR");
        std::thread::sleep(Duration::from_millis(50));
    }

    let Office {
        server, pg: _pg, ..
    } = o;
    let s = server.restart().expect("restarts");
    // The bindings are read back from PostgreSQL: 1002 is called without
    // registering again.
    assert_eq!(
        aors(&s),
        [format!("sip:1001@{DOMAIN}"), format!("sip:1002@{DOMAIN}")]
    );
    let (mut dialog, incoming) = establish(&mut a, &mut b, "1002");
    hang_up(&mut a, &mut dialog, &mut b, &incoming);
    let cdrs = json(&s, "/api/v1/cdrs");
    assert!(
        !cdrs.as_array().expect("array").is_empty(),
        "the first run's CDR is still there: {cdrs}"
    );
}

#[test]
fn a_database_outage_gives_503_keeps_calls_up_and_recovers_by_itself() {
    let Some(pg) = postgres() else { return };
    let o = office(pg, "outage");
    let s = &o.server;
    let mut a = phone(s, "1001");
    let mut b = phone(s, "1002");
    let mut c = phone(s, "1003");
    assert_eq!(a.register(), 200);
    assert_eq!(b.register(), 200);
    let (mut dialog, incoming) = establish(&mut a, &mut b, "1002");

    o.pg.stop().expect("pg_ctl stop");
    // A REGISTER cannot be stored: 503 with Retry-After.
    let req = c.ua.register_request("1003", DOMAIN, 3600);
    let resp =
        c.ua.transact_authenticated(&req, "1003", "pw-1003-secret")
            .expect("REGISTER answered");
    assert_eq!(resp.status, 503, "REGISTER during the outage");
    assert!(
        resp.headers.get(&HeaderName::RetryAfter).is_some(),
        "503 says when to retry"
    );
    // A call that needs a location lookup: 503.
    let _call = b.call("1001").expect("INVITE sent");
    let (answer, _) = b.final_response(WAIT).expect("final answer");
    assert_eq!(answer.status, 503, "INVITE during the outage");
    // A route whose kv read fails (and does not catch it): 503 too, not
    // the 500 of a script error.
    let _call = b.call("*1001").expect("INVITE sent");
    let (answer, _) = b.final_response(WAIT).expect("final answer");
    assert_eq!(answer.status, 503, "INVITE whose route reads kv");
    // The call that was up is untouched: it is still listed and hangs up
    // normally on both sides.
    let calls = json(s, "/api/v1/calls");
    assert!(
        calls
            .as_array()
            .expect("array")
            .iter()
            .any(|c| c["caller"] == "1001" && c["callee"] == "1002" && c["state"] == "bridged"),
        "{calls}"
    );
    hang_up(&mut a, &mut dialog, &mut b, &incoming);

    o.pg.resume().expect("pg_ctl start");
    // No restart of switchboard: the next requests find the database again.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = c.register();
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "while recovering");
        assert!(Instant::now() < deadline, "REGISTER did not recover");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (mut dialog, incoming) = establish(&mut a, &mut c, "*1003");
    hang_up(&mut a, &mut dialog, &mut c, &incoming);
    assert!(
        s.log().contains("is unavailable"),
        "the outage is logged as such: {}",
        s.log()
    );
}

#[test]
fn check_validates_the_postgres_keys_at_their_line_without_showing_the_password() {
    let w = Workdir::empty();
    w.write(
        "pg.url",
        "postgres://sb:s3cret-pw@db.example.com:5433/pbx\n",
    );
    let ok = format!(
        "{}\n[storage]\nbackend = \"postgres\"\nurl_file = \"pg.url\"\npool_size = 8\n",
        free_ports_config()
    );
    let path = w.write("ok.toml", &ok);
    let out = w.run(&["check", "--config", path.to_str().expect("UTF-8")]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout
            .contains("storage postgres sb@db.example.com:5433/pbx"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("s3cret"), "{}", out.stdout);

    let bad = format!(
        "{}\n[storage]\nbackend = \"postgres\"\nurl = \"postgres://a@b/c\"\nquery_timeout = \"soon\"\n",
        free_ports_config()
    );
    let at = bad
        .lines()
        .position(|l| l.starts_with("query_timeout"))
        .expect("line")
        + 1;
    let w = Workdir::with_file("switchboard.toml", &bad);
    let line = w.run(&["check"]).one_error_line().to_owned();
    assert!(
        line.starts_with(&format!("switchboard: config switchboard.toml:{at}:")),
        "{line}"
    );
    assert!(line.contains("storage.query_timeout"), "{line}");
}

#[test]
fn run_without_a_reachable_database_exits_1_saying_so() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let config = format!(
        "{}\n[storage]\nbackend = \"postgres\"\nurl = \"postgres://sb:s3cret-pw@127.0.0.1:{port}/pbx\"\nconnect_timeout = \"1s\"\n",
        free_ports_config()
    );
    let w = Workdir::with_file("switchboard.toml", &config);
    let out = w.run(&["run"]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    let line = out.one_error_line();
    assert!(line.contains("is unavailable"), "{line}");
    assert!(line.contains(&format!("sb@127.0.0.1:{port}/pbx")), "{line}");
    assert!(
        line.contains("start the database or fix storage.url"),
        "{line}"
    );
    assert!(!line.contains("s3cret"), "{line}");
}

#[test]
fn two_nodes_on_one_database_share_registrations_and_route_to_each_others_phones() {
    let Some(pg) = postgres() else { return };
    let url = pg.create_database("cluster").expect("createdb");
    let first = node(&url);
    let second = node(&url);
    let (a, b) = (&first.server, &second.server);

    // 1002 registers through the first node, 1001 through the second.
    let mut callee = phone(a, "1002");
    assert_eq!(callee.register(), 200);
    let mut caller = phone(b, "1001");
    assert_eq!(caller.register(), 200);
    let both = [format!("sip:1001@{DOMAIN}"), format!("sip:1002@{DOMAIN}")];
    // Either node lists every node's bindings.
    assert_eq!(aors(a), both);
    assert_eq!(aors(b), both);

    // The second node finds 1002 in the shared location table and calls
    // it at its registered source; the phone answers the node that called.
    callee.ua.set_server(b.udp.expect("udp"));
    let (mut dialog, incoming) = establish(&mut caller, &mut callee, "1002");
    let calls = json(b, "/api/v1/calls");
    assert_eq!(calls.as_array().map(Vec::len), Some(1), "{calls}");
    assert_eq!(
        json(a, "/api/v1/calls").as_array().map(Vec::len),
        Some(0),
        "live calls stay on the node that has them"
    );
    hang_up(&mut caller, &mut dialog, &mut callee, &incoming);
}

#[test]
fn a_phone_registered_with_path_is_called_through_that_path_from_either_node() {
    let Some(pg) = postgres() else { return };
    let url = pg.create_database("paths").expect("createdb");
    let first = node(&url);
    let second = node(&url);
    let (a, b) = (&first.server, &second.server);

    // A socket standing in for the proxy (Kamailio) in front of the nodes.
    let mut proxy = phone(b, "1003");
    let hop = format!("<sip:{};lr>", proxy.ua.local_addr());
    // 1002 registers through the first node with a Path naming the proxy
    // (RFC 3327): the node keeps it and echoes it in the 200 OK.
    let mut callee = phone(a, "1002");
    let req = callee
        .ua
        .register_request("1002", DOMAIN, 3600)
        .header("Path", &hop)
        .header("Supported", "path");
    let ok = callee
        .ua
        .transact_authenticated(&req, "1002", "pw-1002-secret")
        .expect("REGISTER answered");
    assert_eq!(ok.status, 200);
    assert_eq!(ok.headers.get(&HeaderName::Path), Some(hop.as_str()));
    let regs = json(b, "/api/v1/registrations");
    assert!(
        regs.as_array()
            .expect("array")
            .iter()
            .any(|r| r["aor"] == format!("sip:1002@{DOMAIN}")),
        "{regs}"
    );

    // The second node calls 1002 through the Path: the INVITE goes to the
    // proxy with the Path as its Route and the phone's Contact as its
    // Request-URI, not to the address the REGISTER came from.
    let mut caller = phone(b, "1001");
    assert_eq!(caller.register(), 200);
    let _call = caller.call("1002").expect("INVITE sent");
    let incoming = proxy.incoming(WAIT).expect("the proxy gets the INVITE");
    let invite = &incoming.invite;
    assert_eq!(
        invite.headers.get(&HeaderName::Route),
        Some(hop.as_str()),
        "the Path is the pre-loaded Route set"
    );
    assert_eq!(
        invite.uri.to_string(),
        format!("sip:1002@{};transport=udp", callee.ua.local_addr())
    );
    assert!(
        callee.silence(Duration::from_millis(300)).is_none(),
        "nothing is sent to the phone around the proxy"
    );
    proxy.reply(invite, &incoming.tag, 486).expect("486");
    let (answer, _) = caller.final_response(WAIT).expect("final answer");
    assert_eq!(answer.status, 486);
}
