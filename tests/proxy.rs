//! Switchboard behind a record-routing proxy (Kamailio in front of several
//! nodes, deploy/README.md), through the real binary: the answers to an
//! INVITE carry its Record-Route (RFC 3261 §12.1.1), so the caller's ACK and
//! BYE come back through the proxy, and Switchboard's own in-dialog
//! requests to the caller follow that route set.

use std::time::Duration;

use sip_proto::HeaderName;
use testkit::{Phone, Server};

const DOMAIN: &str = "test.invalid";
const WAIT: Duration = Duration::from_secs(5);
const PROXY: &str = "<sip:127.0.0.1:9;lr;ftag=x>";

fn server() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let dialplans = dir.path().join("dialplans");
    std::fs::create_dir_all(&dialplans).expect("dialplans");
    std::fs::write(
        dialplans.join("default.lua"),
        "function route(call) call:dial(call.request_uri.user, { timeout = 10 }) end\n",
    )
    .expect("dialplan");
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

[[extension]]
id = "1001"
password = "pw-1001-secret"

[[extension]]
id = "1002"
password = "pw-1002-secret"
"#,
        dialplans.display()
    );
    let server = Server::start_with(env!("CARGO_BIN_EXE_switchboard").as_ref(), &config)
        .expect("switchboard starts");
    (server, dir)
}

#[test]
fn answers_to_an_invite_carry_its_record_route_and_the_bye_follows_it() {
    let (s, _dir) = server();
    let udp = s.udp.expect("udp");
    let mut caller = Phone::udp(udp, "1001", "pw-1001-secret", DOMAIN);
    let mut callee = Phone::udp(udp, "1002", "pw-1002-secret", DOMAIN);
    assert_eq!(caller.register(), 200);
    assert_eq!(callee.register(), 200);

    let call = caller
        .call_with("1002", &[("Record-Route", PROXY)])
        .expect("INVITE sent");
    let incoming = callee.incoming(WAIT).expect("callee gets the INVITE");
    callee
        .reply(&incoming.invite, &incoming.tag, 200)
        .expect("200");
    let (ok, _) = caller.final_response(WAIT).expect("200 relayed");
    assert_eq!(ok.status, 200);
    assert_eq!(
        ok.headers
            .get_all(&HeaderName::RecordRoute)
            .collect::<Vec<_>>(),
        [PROXY],
        "the 200 carries the INVITE's Record-Route"
    );
    caller.ack(&call, &ok).expect("ACK");
    callee
        .request("ACK", WAIT)
        .expect("the B2BUA ACKs the callee");

    // The callee hangs up: Switchboard's BYE to the caller is routed
    // through the proxy the caller's INVITE named.
    let mut callee_dialog = callee.dialog_of(&incoming);
    let bye = callee
        .request_in(&mut callee_dialog, "BYE", None)
        .expect("BYE answered");
    assert_eq!(bye.status, 200);
    let bye_a = caller.request("BYE", WAIT).expect("caller gets the BYE");
    assert_eq!(bye_a.headers.get(&HeaderName::Route), Some(PROXY));
}
