//! The subscription service with the registrar on a real endpoint on
//! 127.0.0.1 (port 0), phones from testkit: message-waiting (RFC 3842),
//! with voicemail's side played by the test calling
//! [`MailboxListener::counts_changed`] (the seam voicemail reports
//! through), and the subscription caps (503 with Retry-After).

use std::sync::Arc;
use std::time::{Duration, Instant};

use pbx::{MailboxCounts, MailboxListener, Mailboxes};
use presence::{AllowAll, Directory, Presence, PresenceConfig};
use registrar::{BanPolicy, Extension, Policy, Registrar, RegistrarConfig};
use sip_net::{Endpoint, EndpointConfig, ServiceMux};
use sip_proto::digest::{Algorithm, Secret};
use sip_proto::{HeaderName, Message, Request, Response};
use testkit::{Phone, Ua, challenges};

const DOMAIN: &str = "test.invalid";
const WAIT: Duration = Duration::from_secs(5);

struct Office;

impl Directory for Office {
    fn contains(&self, ext: &str) -> bool {
        ext == "1001" || ext == "1002"
    }
    fn name(&self, _ext: &str) -> Option<String> {
        None
    }
}

/// Voicemail's counts before anything changed: 1001 has two new, one old.
struct Stored;

impl Mailboxes for Stored {
    fn counts(&self, ext: &str) -> MailboxCounts {
        if ext == "1001" {
            MailboxCounts { new: 2, old: 1 }
        } else {
            MailboxCounts::default()
        }
    }
}

struct Pbx {
    rt: tokio::runtime::Runtime,
    presence: Presence,
    addr: std::net::SocketAddr,
}

fn pbx() -> Pbx {
    pbx_with(PresenceConfig::new(DOMAIN))
}

fn pbx_with(config: PresenceConfig) -> Pbx {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let store = Arc::new(storage::MemoryStorage::new());
    let extensions: Vec<Extension> = ["1001", "1002"]
        .iter()
        .map(|id| Extension {
            id: (*id).to_owned(),
            name: None,
            context: "default".to_owned(),
            secret: Secret::password(format!("pw-{id}")),
        })
        .collect();
    let registrar = Registrar::new(
        RegistrarConfig {
            domain: DOMAIN.to_owned(),
            algorithms: vec![Algorithm::Md5],
            nonce_max_age: Duration::from_secs(300),
            policy: Policy::default(),
            bans: BanPolicy::default(),
        },
        &extensions,
        store.clone(),
        [7; 32],
    )
    .expect("registrar");
    let (presence, addr) = rt.block_on(async {
        let mut endpoint = Endpoint::bind(EndpointConfig {
            listen: vec!["udp:127.0.0.1:0".parse().expect("listen address")],
            domain: DOMAIN.to_owned(),
            ..EndpointConfig::default()
        })
        .await
        .expect("endpoint binds");
        let presence = Presence::new(
            config,
            endpoint.handle(),
            registrar.clone(),
            Arc::new(Office),
            Arc::new(AllowAll),
            Arc::new(Stored),
        );
        endpoint.set_service(Arc::new(
            ServiceMux::new()
                .with(Arc::new(registrar.clone()))
                .with(Arc::new(presence.clone())),
        ));
        let addr = endpoint.local_addrs()[0].1;
        tokio::spawn(endpoint.run(std::future::pending()));
        (presence, addr)
    });
    Pbx { rt, presence, addr }
}

/// The next NOTIFY `ua` receives, answered 200 (other messages skipped).
fn notify(ua: &mut Ua) -> Request {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if let Message::Request(n) = ua.recv(left).expect("a NOTIFY")
            && n.method.as_str() == "NOTIFY"
        {
            ua.respond(&n, 200).expect("send");
            return n;
        }
    }
}

fn body(r: &Request) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

#[test]
fn a_phone_that_does_not_subscribe_gets_unsolicited_mwi() {
    let p = pbx();
    let mut phone = Phone::udp(p.addr, "1002", "pw-1002", DOMAIN);
    assert_eq!(phone.register(), 200);
    p.presence
        .counts_changed("1002", MailboxCounts { new: 1, old: 0 });
    let n = notify(&mut phone.ua);
    assert_eq!(n.headers.get(&HeaderName::Event), Some("message-summary"));
    assert_eq!(
        n.headers.get(&HeaderName::ContentType),
        Some("application/simple-message-summary")
    );
    assert_eq!(
        body(&n),
        "Messages-Waiting: yes\r\nMessage-Account: sip:1002@test.invalid\r\nVoice-Message: 1/0 (0/0)\r\n"
    );
    // Heard: the lamp goes off.
    p.presence
        .counts_changed("1002", MailboxCounts { new: 0, old: 1 });
    let n = notify(&mut phone.ua);
    assert!(
        body(&n).starts_with("Messages-Waiting: no\r\n"),
        "{}",
        body(&n)
    );
    drop(p.rt);
}

#[test]
fn a_subscriber_gets_the_stored_counts_then_every_change() {
    let p = pbx();
    let mut ua = Ua::udp(p.addr).expect("socket");
    let (ok, notifies) = subscribe(&mut ua, "1001", "1001", "message-summary");
    assert_eq!(ok.status, 200);
    let first = match notifies.into_iter().next() {
        Some(n) => Some(n),
        None => Some(notify(&mut ua)),
    };
    let first = first.expect("first NOTIFY");
    assert!(
        body(&first).contains("Voice-Message: 2/1 (0/0)"),
        "{}",
        body(&first)
    );
    assert!(
        first
            .headers
            .get(&HeaderName::SubscriptionState)
            .is_some_and(|s| s.starts_with("active"))
    );
    p.presence
        .counts_changed("1001", MailboxCounts { new: 3, old: 1 });
    let n = notify(&mut ua);
    assert!(
        body(&n).contains("Voice-Message: 3/1 (0/0)"),
        "{}",
        body(&n)
    );
    assert_eq!(
        n.call_id(),
        first.call_id(),
        "inside the subscription's dialog"
    );
    drop(p.rt);
}

/// SUBSCRIBE as `user` (password `pw-USER`) to `event` of `target`,
/// answering the 407; the final response and any NOTIFYs that came first
/// (answered 200).
fn subscribe(ua: &mut Ua, user: &str, target: &str, event: &str) -> (Response, Vec<Request>) {
    let uri = format!("sip:{target}@{DOMAIN}");
    let req = ua
        .request("SUBSCRIBE", &uri)
        .header(
            "From",
            &format!("<sip:{user}@{DOMAIN}>;tag={}", ua.local_addr().port()),
        )
        .header("Event", event)
        .header("Expires", "600");
    let challenge = ua.transact(&req).expect("an answer");
    assert_eq!(challenge.status, 407, "a subscriber must authenticate");
    let c = challenges(&challenge)
        .into_iter()
        .next()
        .expect("challenge");
    let retry = ua.authorized(&req, &c, user, &format!("pw-{user}"), 1);
    let auth = retry.get("Authorization").unwrap_or_default().to_owned();
    let retry = retry
        .without("Authorization")
        .header("Proxy-Authorization", &auth);
    ua.send(retry.build().as_bytes()).expect("send");
    let mut early = Vec::new();
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match ua.recv(left).expect("an answer to SUBSCRIBE") {
            Message::Response(r) if r.status >= 200 => return (r, early),
            Message::Request(n) if n.method.as_str() == "NOTIFY" => {
                ua.respond(&n, 200).expect("send");
                early.push(n);
            }
            _ => {}
        }
    }
}

#[test]
fn past_the_caps_subscribe_gets_503_with_retry_after() {
    let p = pbx_with(PresenceConfig {
        max_per_subscriber: 2,
        max_total: 3,
        ..PresenceConfig::new(DOMAIN)
    });
    let mut ua = Ua::udp(p.addr).expect("socket");
    // Each SUBSCRIBE is a new dialog (a new Call-ID from Ua::request).
    assert_eq!(subscribe(&mut ua, "1001", "1002", "dialog").0.status, 200);
    assert_eq!(subscribe(&mut ua, "1001", "1002", "presence").0.status, 200);
    let (full, _) = subscribe(&mut ua, "1001", "1001", "message-summary");
    assert_eq!(full.status, 503, "a third for one subscriber");
    assert_eq!(full.headers.get(&HeaderName::RetryAfter), Some("60"));
    assert_eq!(subscribe(&mut ua, "1002", "1001", "dialog").0.status, 200);
    let (full, _) = subscribe(&mut ua, "1002", "1001", "presence");
    assert_eq!(full.status, 503, "a fourth in all");
    assert_eq!(p.presence.len(), 3);
    drop(p.rt);
}

/// The first NOTIFY of a subscription: one that came before its 200, or
/// the next.
fn first_notify(ua: &mut Ua, early: Vec<Request>) -> Request {
    match early.into_iter().next() {
        Some(n) => n,
        None => notify(ua),
    }
}

#[test]
fn a_lamp_a_script_sets_is_watched_by_dialog_and_presence() {
    let p = pbx();
    // No lamp yet: 404; an extension cannot be made one.
    let mut ua = Ua::udp(p.addr).expect("socket");
    assert_eq!(subscribe(&mut ua, "1001", "*28", "dialog").0.status, 404);
    assert!(matches!(
        p.presence.set_lamp("1002", true),
        Err(presence::LampError::Extension(ext)) if ext == "1002"
    ));
    assert_eq!(p.presence.lamp("1002"), None);
    p.presence.set_lamp("*28", false).expect("a lamp");
    assert_eq!(p.presence.lamp("*28"), Some(false));

    let mut blf = Ua::udp(p.addr).expect("socket");
    let (ok, early) = subscribe(&mut blf, "1001", "*28", "dialog");
    assert_eq!(ok.status, 200);
    let first = first_notify(&mut blf, early);
    assert!(
        body(&first).contains("entity=\"sip:*28@test.invalid\"")
            && body(&first).contains("<state>terminated</state>"),
        "{}",
        body(&first)
    );
    let mut pres = Ua::udp(p.addr).expect("socket");
    let (ok, early) = subscribe(&mut pres, "1002", "*28", "presence");
    assert_eq!(ok.status, 200);
    let first = first_notify(&mut pres, early);
    assert!(!body(&first).contains("on-the-phone"), "{}", body(&first));

    p.presence.set_lamp("*28", true).expect("a lamp");
    let on = notify(&mut blf);
    assert!(
        body(&on).contains("<state>confirmed</state>"),
        "{}",
        body(&on)
    );
    let busy = notify(&mut pres);
    assert!(body(&busy).contains("on-the-phone"), "{}", body(&busy));
    drop(p.rt);
}
