//! The Lua shipped in the repository (`dialplans/default.lua` and
//! `plugins/`), run against the fake call: what the demo office does.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::{FakeCall, call_to};
use dialplan::{ExtensionInfo, Limits, MemoryHost, RouteOutcome, Runtime};
use pbx::{CallDetails, DialOutcome, DialStatus};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The shipped runtime, with extensions 1000-1003 configured.
fn office() -> (Runtime, Arc<MemoryHost>) {
    let host = Arc::new(MemoryHost::new());
    for id in ["1000", "1001", "1002", "1003"] {
        host.add_extension(ExtensionInfo {
            id: id.into(),
            name: None,
            context: "default".into(),
            ..Default::default()
        });
    }
    let runtime = Runtime::new(
        repo().join("dialplans"),
        repo().join("plugins"),
        Limits::default(),
    )
    .expect("the shipped Lua loads")
    .with_host(host.clone());
    (runtime, host)
}

fn dialing(status: DialStatus, code: u16) -> Arc<FakeCall> {
    Arc::new(FakeCall {
        dial_result: DialOutcome {
            status,
            code,
            answered_by: None,
        },
        ..FakeCall::default()
    })
}

async fn place(runtime: &Runtime, api: &Arc<FakeCall>, info: CallDetails) -> RouteOutcome {
    let state = runtime.call_state().expect("call state");
    state.run_route(Arc::clone(api), info).await
}

const DIAL_1002: &str = "dial DialRequest { targets: [\"1002\"], timeout: Some(20s), caller_id: None, headers: [], moh: None, attest: None, confirm: None }";

#[tokio::test]
async fn extension_dials_extension_for_20_seconds() {
    let (runtime, _) = office();
    let api = Arc::new(FakeCall::default());
    let outcome = place(&runtime, &api, call_to("1002")).await;
    assert_eq!(outcome, RouteOutcome::Bridged);
    assert_eq!(api.actions(), [DIAL_1002]);
}

#[tokio::test]
async fn dial_results_map_to_status_codes() {
    let (runtime, _) = office();
    // Busy, unanswered and unregistered extensions: voicemail answers (the
    // memory host has no mailboxes, so it stops there with an error).
    for (status, code) in [
        (DialStatus::Busy, 486),
        (DialStatus::NoAnswer, 408),
        (DialStatus::Unavailable, 480),
    ] {
        let api = dialing(status, code);
        let outcome = place(&runtime, &api, call_to("1002")).await;
        assert_eq!(api.actions(), [DIAL_1002, "answer"], "{status:?}");
        let RouteOutcome::Failed { failure, .. } = outcome else {
            panic!("{status:?}: {outcome:?}");
        };
        assert!(
            failure.to_string().contains("voicemail is not available"),
            "{failure}"
        );
    }
    for (status, code, want) in [
        (
            DialStatus::Failed,
            500,
            Some("reject 503 Service Unavailable"),
        ),
        (DialStatus::Cancelled, 487, None),
    ] {
        let api = dialing(status, code);
        let outcome = place(&runtime, &api, call_to("1002")).await;
        let mut expected = vec![DIAL_1002.to_owned()];
        expected.extend(want.map(str::to_owned));
        assert_eq!(api.actions(), expected, "{status:?}");
        match want {
            Some(text) => {
                let code: u16 = text[7..10].parse().expect("code");
                assert_eq!(outcome, RouteOutcome::Rejected { code }, "{status:?}");
            }
            None => assert_eq!(outcome, RouteOutcome::NotAnswered),
        }
    }
}

#[tokio::test]
async fn unknown_numbers_get_404() {
    let (runtime, _) = office();
    for dest in ["555", "1999", "12345", "*99", ""] {
        let api = Arc::new(FakeCall::default());
        let outcome = place(&runtime, &api, call_to(dest)).await;
        assert_eq!(outcome, RouteOutcome::Rejected { code: 404 }, "{dest:?}");
        assert_eq!(api.actions(), ["reject 404 Not Found"], "{dest:?}");
    }
}

#[tokio::test]
async fn star_72_forwards_and_star_73_clears() {
    let (runtime, host) = office();

    // 1002 sets its forward to 1003.
    let mut set = call_to("*721003");
    set.caller = Some("1002".into());
    let api = Arc::new(FakeCall::default());
    assert_eq!(place(&runtime, &api, set).await, RouteOutcome::HungUp);
    assert_eq!(api.actions(), ["answer", "hangup"]);
    assert_eq!(host.get("callforward", "1002"), Some(b"1003".to_vec()));

    // A call to 1002 now rings 1003.
    let api = Arc::new(FakeCall::default());
    assert_eq!(
        place(&runtime, &api, call_to("1002")).await,
        RouteOutcome::Bridged
    );
    assert_eq!(
        api.actions(),
        [
            "dial DialRequest { targets: [\"1003\"], timeout: Some(20s), caller_id: None, headers: [], moh: None, attest: None, confirm: None }"
        ]
    );

    // A forward to an extension that does not exist is refused.
    let mut bad = call_to("*721999");
    bad.caller = Some("1002".into());
    let api = Arc::new(FakeCall::default());
    place(&runtime, &api, bad).await;
    assert_eq!(api.actions(), ["reject 404 Not Found"]);

    // *73 clears it; 1002 rings again.
    let mut clear = call_to("*73");
    clear.caller = Some("1002".into());
    let api = Arc::new(FakeCall::default());
    assert_eq!(place(&runtime, &api, clear).await, RouteOutcome::HungUp);
    assert_eq!(host.get("callforward", "1002"), None);
    let api = Arc::new(FakeCall::default());
    place(&runtime, &api, call_to("1002")).await;
    assert_eq!(api.actions(), [DIAL_1002]);

    // Without an authenticated caller there is nobody to forward.
    let mut anonymous = call_to("*721003");
    anonymous.caller = None;
    let api = Arc::new(FakeCall::default());
    place(&runtime, &api, anonymous).await;
    assert_eq!(api.actions(), ["reject 403 Forbidden"]);
}

#[tokio::test]
async fn speed_dials_are_set_and_used() {
    let (runtime, host) = office();
    let api = Arc::new(FakeCall::default());
    assert_eq!(
        place(&runtime, &api, call_to("*74071002")).await,
        RouteOutcome::HungUp
    );
    assert_eq!(host.get("speeddial", "07"), Some(b"1002".to_vec()));
    let api = Arc::new(FakeCall::default());
    place(&runtime, &api, call_to("**07")).await;
    assert_eq!(api.actions(), [DIAL_1002]);
    let api = Arc::new(FakeCall::default());
    place(&runtime, &api, call_to("**08")).await;
    assert_eq!(api.actions(), ["reject 404 Not Found"]);
}
