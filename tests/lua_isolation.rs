//! A careless dialplan against the real binary over real sockets (issue 11,
//! item 4): a catastrophic pattern on the dialled number gives the caller
//! 500 instead of pinning a core, and routes stuck in a loop are stopped
//! by `dialplan.route_time_limit` while other calls are routed meanwhile.

use std::path::PathBuf;
use std::time::Duration;

use testkit::{Phone, Server};

const DOMAIN: &str = "test.invalid";
/// Generous: a debug build on a loaded machine runs 10^6 pattern steps slowly;
/// the tests check outcomes, not timing.
const WAIT: Duration = Duration::from_secs(30);

const DIALPLAN: &str = r#"
function route(call)
  local dest = call.to.user
  if dest == "2001" then
    call:reject(486)
  elseif dest == "spin" then
    while true do end
  elseif dest:find("^a*a*a*a*b") then
    call:reject(480)
  else
    call:reject(404)
  end
end
"#;

fn office() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let dialplans = dir.path().join("dialplans");
    std::fs::create_dir_all(&dialplans).expect("mkdir");
    std::fs::write(dialplans.join("default.lua"), DIALPLAN).expect("write dialplan");
    let plugins = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("plugins");
    // The instruction budget is as high as it goes, so only the time
    // limit stops a spinning route.
    let config = format!(
        r#"
[sip]
listen = ["udp:127.0.0.1:0"]
domain = "{DOMAIN}"

[admin]
listen = "127.0.0.1:0"

[storage]
backend = "memory"

[registrar]
qualify_interval = "0s"

[dialplan]
dir = "{}"
plugins = "{}"
instruction_budget = 10000000000
route_time_limit = "2s"

[[extension]]
id = "1001"
password = "pw-1001"

[[extension]]
id = "1002"
password = "pw-1002"
"#,
        dialplans.display(),
        plugins.display()
    );
    let server = Server::start_with(env!("CARGO_BIN_EXE_switchboard").as_ref(), &config)
        .expect("switchboard starts");
    (server, dir)
}

fn phone(server: &Server, user: &str) -> Phone {
    let mut p = Phone::udp(
        server.udp.expect("udp"),
        user,
        &format!("pw-{user}"),
        DOMAIN,
    );
    assert_eq!(p.register(), 200, "{user} registers");
    p
}

/// Waits (up to [`WAIT`]) for a log line containing `needle`: the log is
/// read from the server's stderr as it comes, after the SIP answer.
fn wait_for_log(server: &Server, needle: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    while !server.log().contains(needle) {
        assert!(
            std::time::Instant::now() < deadline,
            "no log line with {needle:?} in {}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn careless_lua_fails_its_own_call_and_leaves_the_others_alone() {
    let (server, _dir) = office();

    // A caller-controlled Request-URI fed to a backtracking pattern: the
    // pattern function stops, the caller gets 500.
    let mut a = phone(&server, "1001");
    a.call(&"a".repeat(300)).expect("INVITE");
    let (r, _) = a
        .final_response(WAIT)
        .expect("an answer to the pattern call");
    assert_eq!(r.status, 500, "{r:?}\n{}", server.log());
    wait_for_log(&server, "pattern too expensive");

    // Three routes spinning in Lua (more than a context has states on a
    // small machine, so a state is shared); meanwhile a normal call is
    // routed, before the spinning routes are stopped.
    let mut spinners: Vec<Phone> = (0..3).map(|_| phone(&server, "1001")).collect();
    for s in &mut spinners {
        s.call("spin").expect("INVITE");
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut b = phone(&server, "1002");
    b.call("2001").expect("INVITE");
    let (r, _) = b
        .final_response(WAIT)
        .expect("an answer to the normal call");
    assert_eq!(r.status, 486, "{}", server.log());
    for s in &mut spinners {
        assert!(
            matches!(
                s.final_response(Duration::from_millis(50)),
                Err(testkit::UaError::Timeout)
            ),
            "a spinning route ended before the normal call was routed"
        );
    }
    for s in &mut spinners {
        let (r, _) = s
            .final_response(WAIT)
            .expect("an answer to the spinning call");
        assert_eq!(r.status, 500, "{}", server.log());
    }
    wait_for_log(&server, "route time limit exceeded");
}
