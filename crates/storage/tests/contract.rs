//! The storage contract: every backend runs every case below.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use storage::{
    Binding, Error, MemoryStorage, PostgresOptions, PostgresStorage, RedbStorage, Storage,
};

/// A backend under test, with whatever must live as long as it.
struct Fixture {
    store: Arc<dyn Storage>,
    _dir: Option<tempfile::TempDir>,
}

fn memory() -> Fixture {
    Fixture {
        store: Arc::new(MemoryStorage::new()),
        _dir: None,
    }
}

fn redb() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbStorage::open(dir.path().join("var/switchboard.redb")).expect("open");
    Fixture {
        store: Arc::new(store),
        _dir: Some(dir),
    }
}

/// Opens a fresh database `name` on `pg`.
fn postgres_in(pg: &testkit::Postgres, name: &str) -> PostgresStorage {
    let url = pg.create_database(name).expect("createdb");
    PostgresStorage::open(&PostgresOptions {
        url,
        pool_size: 4,
        connect_timeout: Duration::from_secs(10),
        query_timeout: Duration::from_secs(10),
    })
    .expect("open PostgreSQL storage")
}

/// Runs `case` against a fresh database of `pg`, naming it first so that
/// a failure says which case it was.
fn postgres_case(pg: &testkit::Postgres, name: &str, case: fn(&dyn Storage)) {
    eprintln!("postgres: {name}");
    let store = postgres_in(pg, name);
    case(&store);
}

/// Generates one `#[test]` per case for a backend.
macro_rules! contract {
    ($backend:ident: $($case:ident),* $(,)?) => {
        mod $backend {
            $(
                #[test]
                fn $case() {
                    let fixture = super::$backend();
                    super::$case(&*fixture.store);
                }
            )*
        }
    };
}

macro_rules! contract_all {
    ($($case:ident),* $(,)?) => {
        contract!(memory: $($case),*);
        contract!(redb: $($case),*);

        /// Every case against PostgreSQL: one server (initdb/pg_ctl in a
        /// temporary directory) for the lot, a fresh database per case.
        #[test]
        fn postgres() {
            let pg = match testkit::Postgres::start().expect("PostgreSQL starts") {
                Some(pg) => pg,
                None => {
                    eprintln!("{}", testkit::POSTGRES_MISSING);
                    return;
                }
            };
            $( postgres_case(&pg, stringify!($case), $case); )*
        }
    };
}

contract_all!(
    put_list_remove,
    several_contacts_per_aor,
    put_same_contact_replaces,
    sweep_removes_exactly_the_expired,
    replace_aor_is_all_or_nothing,
    replace_aors_applies_a_batch_all_or_nothing,
    binding_round_trips_every_field,
    concurrent_puts_all_land,
    kv_get_set_delete,
    kv_namespaces_are_isolated,
    kv_list_by_prefix,
    kv_ttl_hides_and_sweep_removes,
    kv_reset_ttl,
    cdr_append_and_recent,
);

fn binding(aor: &str, contact: &str, expires_at_ms: u64) -> Binding {
    Binding {
        aor: aor.to_owned(),
        contact: contact.to_owned(),
        expires_at_ms,
        q: None,
        call_id: "a84b4c76e66710@pc33".to_owned(),
        cseq: 1,
        path: Vec::new(),
        source: "192.0.2.10:5060".parse().expect("addr"),
        transport: "udp".to_owned(),
        user_agent: None,
        instance: None,
        reg_id: None,
        registered_at_ms: 1_000,
    }
}

const A1001: &str = "sip:1001@pbx.example.com";
const A1002: &str = "sip:1002@pbx.example.com";
const A100: &str = "sip:100@pbx.example.com";

fn contacts(bindings: &[Binding]) -> Vec<(&str, &str)> {
    bindings
        .iter()
        .map(|b| (b.aor.as_str(), b.contact.as_str()))
        .collect()
}

fn put_list_remove(s: &dyn Storage) {
    assert!(s.list(A1001).expect("list").is_empty());
    let b = binding(A1001, "sip:1001@10.0.0.5:5060", 61_000);
    s.put(&b).expect("put");
    assert_eq!(s.list(A1001).expect("list"), vec![b.clone()]);
    assert_eq!(s.list_all().expect("list_all"), vec![b.clone()]);
    assert!(s.list(A1002).expect("list").is_empty());

    assert_eq!(s.remove(A1001, "sip:1001@10.0.0.5:5061").expect("rm"), None);
    assert_eq!(s.remove(A1001, &b.contact).expect("rm"), Some(b.clone()));
    assert!(s.list(A1001).expect("list").is_empty());
    assert_eq!(s.remove(A1001, &b.contact).expect("rm"), None);
    // Nothing left for the sweep either.
    assert!(s.sweep_expired(u64::MAX).expect("sweep").is_empty());
}

fn several_contacts_per_aor(s: &dyn Storage) {
    // Put out of order; lists come back ordered by contact.
    for contact in [
        "sip:1001@10.0.0.7:5060",
        "sip:1001@10.0.0.5:5060",
        "sip:1001@10.0.0.6:5060;transport=tcp",
    ] {
        s.put(&binding(A1001, contact, 61_000)).expect("put");
    }
    s.put(&binding(A1002, "sip:1002@10.0.0.9:5060", 61_000))
        .expect("put");
    // An AOR that is a string prefix of another must not see its bindings.
    s.put(&binding(A100, "sip:100@10.0.0.1:5060", 61_000))
        .expect("put");

    let got = s.list(A1001).expect("list");
    assert_eq!(
        contacts(&got),
        vec![
            (A1001, "sip:1001@10.0.0.5:5060"),
            (A1001, "sip:1001@10.0.0.6:5060;transport=tcp"),
            (A1001, "sip:1001@10.0.0.7:5060"),
        ]
    );
    assert_eq!(
        contacts(&s.list(A100).expect("list")),
        vec![(A100, "sip:100@10.0.0.1:5060")]
    );
    let all = s.list_all().expect("list_all");
    assert_eq!(all.len(), 5);
    // Byte order of the AOR: '1' sorts before '@'.
    assert_eq!(all[0].aor, A1001);
    assert_eq!(all[3].aor, A1002);
    assert_eq!(all[4].aor, A100);

    let removed = s.remove_all(A1001).expect("remove_all");
    assert_eq!(contacts(&removed), contacts(&got));
    assert!(s.list(A1001).expect("list").is_empty());
    assert_eq!(s.list(A1002).expect("list").len(), 1);
    assert_eq!(s.list(A100).expect("list").len(), 1);
    assert!(s.remove_all(A1001).expect("remove_all").is_empty());
    // The removed bindings' expiry is gone with them.
    let swept = s.sweep_expired(61_000).expect("sweep");
    assert_eq!(
        contacts(&swept),
        vec![
            (A1002, "sip:1002@10.0.0.9:5060"),
            (A100, "sip:100@10.0.0.1:5060")
        ]
    );
}

fn put_same_contact_replaces(s: &dyn Storage) {
    let contact = "sip:1001@10.0.0.5:5060";
    s.put(&binding(A1001, contact, 61_000)).expect("put");
    let mut refreshed = binding(A1001, contact, 121_000);
    refreshed.cseq = 2;
    refreshed.q = Some(500);
    refreshed.source = "198.51.100.7:40000".parse().expect("addr");
    s.put(&refreshed).expect("put");

    assert_eq!(s.list(A1001).expect("list"), vec![refreshed.clone()]);
    // The old expiry no longer applies.
    assert!(s.sweep_expired(61_000).expect("sweep").is_empty());
    assert_eq!(s.list(A1001).expect("list").len(), 1);
    // Shortening works as well as lengthening.
    let mut shortened = refreshed.clone();
    shortened.expires_at_ms = 90_000;
    s.put(&shortened).expect("put");
    assert!(s.sweep_expired(89_999).expect("sweep").is_empty());
    assert_eq!(s.sweep_expired(120_000).expect("sweep"), vec![shortened]);
    assert!(s.list(A1001).expect("list").is_empty());
    assert!(s.sweep_expired(u64::MAX).expect("sweep").is_empty());
}

fn sweep_removes_exactly_the_expired(s: &dyn Storage) {
    s.put(&binding(A1001, "sip:c@h", 3_000)).expect("put");
    s.put(&binding(A1001, "sip:a@h", 2_000)).expect("put");
    s.put(&binding(A1002, "sip:b@h", 1_000)).expect("put");
    s.put(&binding(A1002, "sip:d@h", 2_000)).expect("put");

    assert!(s.sweep_expired(999).expect("sweep").is_empty());
    assert_eq!(s.list_all().expect("list").len(), 4);

    // Expired at the instant of expiry; returned in expiry order.
    let swept = s.sweep_expired(2_000).expect("sweep");
    assert_eq!(
        contacts(&swept),
        vec![(A1002, "sip:b@h"), (A1001, "sip:a@h"), (A1002, "sip:d@h")]
    );
    assert!(swept.iter().all(|b| b.is_expired(2_000)));
    assert_eq!(
        contacts(&s.list_all().expect("list")),
        vec![(A1001, "sip:c@h")]
    );
    assert!(s.list(A1002).expect("list").is_empty());
    assert!(s.sweep_expired(2_000).expect("sweep").is_empty());
    assert_eq!(
        contacts(&s.sweep_expired(3_000).expect("sweep")),
        vec![(A1001, "sip:c@h")]
    );
    assert!(s.list_all().expect("list").is_empty());
}

fn replace_aor_is_all_or_nothing(s: &dyn Storage) {
    s.put(&binding(A1001, "sip:old@h", 5_000)).expect("put");
    s.put(&binding(A1001, "sip:kept@h", 5_000)).expect("put");
    s.put(&binding(A1002, "sip:other@h", 5_000)).expect("put");

    let new = vec![
        binding(A1001, "sip:kept@h", 9_000),
        binding(A1001, "sip:new@h", 9_000),
    ];
    let old = s.replace_aor(A1001, &new).expect("replace");
    assert_eq!(
        contacts(&old),
        vec![(A1001, "sip:kept@h"), (A1001, "sip:old@h")]
    );
    assert_eq!(
        contacts(&s.list(A1001).expect("list")),
        vec![(A1001, "sip:kept@h"), (A1001, "sip:new@h")]
    );
    // The replaced bindings' expiries went with them.
    let swept = s.sweep_expired(5_000).expect("sweep");
    assert_eq!(contacts(&swept), vec![(A1002, "sip:other@h")]);

    // A binding of another AOR is refused and nothing changes.
    let wrong = vec![
        binding(A1001, "sip:x@h", 9_000),
        binding(A1002, "sip:y@h", 9_000),
    ];
    let err = s.replace_aor(A1001, &wrong).expect_err("mixed AORs");
    assert!(matches!(err, Error::InvalidBinding { .. }), "{err}");
    assert!(err.to_string().contains(A1002), "{err}");
    assert_eq!(s.list(A1001).expect("list"), new);

    // An empty set clears the AOR.
    assert_eq!(s.replace_aor(A1001, &[]).expect("replace"), new);
    assert!(s.list_all().expect("list").is_empty());
    assert!(s.sweep_expired(u64::MAX).expect("sweep").is_empty());
}

fn replace_aors_applies_a_batch_all_or_nothing(s: &dyn Storage) {
    s.put(&binding(A1001, "sip:old@h", 5_000)).expect("put");
    s.put(&binding(A1002, "sip:gone@h", 5_000)).expect("put");
    let batch = vec![
        (A1001.to_owned(), vec![binding(A1001, "sip:new@h", 9_000)]),
        (A1002.to_owned(), Vec::new()),
        (A100.to_owned(), vec![binding(A100, "sip:first@h", 7_000)]),
    ];
    s.replace_aors(&batch).expect("batch");
    // list_all orders by AOR text: "sip:1001@…" sorts before "sip:100@…".
    assert_eq!(
        contacts(&s.list_all().expect("list")),
        vec![(A1001, "sip:new@h"), (A100, "sip:first@h")]
    );
    // Replaced bindings' expiries went with them.
    assert_eq!(
        contacts(&s.sweep_expired(7_000).expect("sweep")),
        vec![(A100, "sip:first@h")]
    );
    // A batch with a binding under the wrong AOR changes nothing.
    let bad = vec![
        (A1001.to_owned(), vec![binding(A1001, "sip:x@h", 9_000)]),
        (A1002.to_owned(), vec![binding(A1001, "sip:y@h", 9_000)]),
    ];
    let err = s.replace_aors(&bad).expect_err("mixed AORs");
    assert!(matches!(err, Error::InvalidBinding { .. }), "{err}");
    assert_eq!(
        contacts(&s.list_all().expect("list")),
        vec![(A1001, "sip:new@h")]
    );
    // One AOR twice in a batch: as if applied one after the other (the
    // second entry brings back the contact the first one dropped).
    let twice = vec![
        (A1001.to_owned(), vec![binding(A1001, "sip:other@h", 9_000)]),
        (A1001.to_owned(), vec![binding(A1001, "sip:new@h", 9_500)]),
    ];
    s.replace_aors(&twice).expect("batch");
    assert_eq!(
        s.list(A1001).expect("list"),
        vec![binding(A1001, "sip:new@h", 9_500)]
    );
}

fn binding_round_trips_every_field(s: &dyn Storage) {
    let b = Binding {
        aor: "sip:1003@pbx.example.com".to_owned(),
        contact: "<sip:1003@[2001:db8::5]:5062;transport=tcp;ob>".to_owned(),
        expires_at_ms: 1_700_000_360_000,
        q: Some(700),
        call_id: "843817637684230@998sdasdh09".to_owned(),
        cseq: 4_000_000_000,
        path: vec![
            "<sip:edge1.example.com;lr>".to_owned(),
            "<sip:edge2.example.com;lr>".to_owned(),
        ],
        source: SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, 5], 5062)),
        transport: "tcp".to_owned(),
        user_agent: Some("Yealink SIP-T46U 108.86.0.45 — ünïcode".to_owned()),
        instance: Some("<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>".to_owned()),
        reg_id: Some(1),
        registered_at_ms: 1_700_000_000_000,
    };
    s.put(&b).expect("put");
    assert_eq!(s.list(&b.aor).expect("list"), vec![b.clone()]);
    assert_eq!(b.remaining_ms(1_700_000_000_000), 360_000);
    assert_eq!(b.remaining_ms(1_800_000_000_000), 0);
}

fn concurrent_puts_all_land(s: &dyn Storage) {
    std::thread::scope(|scope| {
        for t in 0..4 {
            scope.spawn(move || {
                for i in 0..25 {
                    let aor = format!("sip:{}@pbx.example.com", 2000 + t);
                    s.put(&binding(&aor, &format!("sip:{i}@h"), 1_000 + i))
                        .expect("put");
                }
            });
        }
    });
    assert_eq!(s.list_all().expect("list").len(), 100);
    assert_eq!(s.list("sip:2003@pbx.example.com").expect("list").len(), 25);
    assert_eq!(s.sweep_expired(1_009).expect("sweep").len(), 40);
}

fn kv_get_set_delete(s: &dyn Storage) {
    assert_eq!(s.kv_get("voicemail", "1001", 0).expect("get"), None);
    s.kv_set("voicemail", "1001", b"3 new", None, 0)
        .expect("set");
    assert_eq!(
        s.kv_get("voicemail", "1001", 0).expect("get"),
        Some(b"3 new".to_vec())
    );
    s.kv_set("voicemail", "1001", b"", None, 0).expect("set");
    assert_eq!(
        s.kv_get("voicemail", "1001", 0).expect("get"),
        Some(Vec::new())
    );
    // Values are bytes, not text.
    let binary = [0u8, 159, 146, 150, 255];
    s.kv_set("voicemail", "greeting", &binary, None, 0)
        .expect("set");
    assert_eq!(
        s.kv_get("voicemail", "greeting", 0).expect("get"),
        Some(binary.to_vec())
    );

    assert!(s.kv_delete("voicemail", "1001").expect("delete"));
    assert!(!s.kv_delete("voicemail", "1001").expect("delete"));
    assert_eq!(s.kv_get("voicemail", "1001", 0).expect("get"), None);
    assert!(s.kv_get("voicemail", "greeting", 0).expect("get").is_some());
}

fn kv_namespaces_are_isolated(s: &dyn Storage) {
    s.kv_set("a", "k", b"in a", None, 0).expect("set");
    s.kv_set("ab", "k", b"in ab", None, 0).expect("set");
    s.kv_set("b", "k", b"in b", None, 0).expect("set");
    assert_eq!(s.kv_get("a", "k", 0).expect("get"), Some(b"in a".to_vec()));
    assert_eq!(
        s.kv_get("ab", "k", 0).expect("get"),
        Some(b"in ab".to_vec())
    );
    assert_eq!(s.kv_get("c", "k", 0).expect("get"), None);
    assert_eq!(
        s.kv_list("a", "", 0).expect("list"),
        vec![("k".to_owned(), b"in a".to_vec())]
    );
    assert!(s.kv_delete("a", "k").expect("delete"));
    assert_eq!(
        s.kv_get("ab", "k", 0).expect("get"),
        Some(b"in ab".to_vec())
    );
    assert_eq!(s.kv_get("b", "k", 0).expect("get"), Some(b"in b".to_vec()));
    assert!(s.kv_list("a", "", 0).expect("list").is_empty());
}

fn kv_list_by_prefix(s: &dyn Storage) {
    for key in ["user:2", "user:1", "users", "v", "user", "ünï:1"] {
        s.kv_set("p", key, key.as_bytes(), None, 0).expect("set");
    }
    s.kv_set("q", "user:3", b"other namespace", None, 0)
        .expect("set");
    let keys = |prefix: &str| -> Vec<String> {
        s.kv_list("p", prefix, 0)
            .expect("list")
            .into_iter()
            .map(|(k, v)| {
                assert_eq!(k.as_bytes(), v.as_slice());
                k
            })
            .collect()
    };
    assert_eq!(keys("user:"), ["user:1", "user:2"]);
    assert_eq!(keys("user"), ["user", "user:1", "user:2", "users"]);
    assert_eq!(
        keys(""),
        ["user", "user:1", "user:2", "users", "v", "ünï:1"]
    );
    assert_eq!(keys("ünï"), ["ünï:1"]);
    assert!(keys("w").is_empty());
    assert!(keys("user:10").is_empty());
}

fn kv_ttl_hides_and_sweep_removes(s: &dyn Storage) {
    let now = 1_000_000;
    s.kv_set("ns", "short", b"s", Some(Duration::from_secs(10)), now)
        .expect("set");
    s.kv_set("ns", "long", b"l", Some(Duration::from_secs(60)), now)
        .expect("set");
    s.kv_set("ns", "forever", b"f", None, now).expect("set");
    s.kv_set("other", "short", b"o", Some(Duration::from_millis(1)), now)
        .expect("set");

    assert_eq!(
        s.kv_get("ns", "short", now + 9_999).expect("get"),
        Some(b"s".to_vec())
    );
    // Expired at the instant its TTL runs out, for get and list alike.
    assert_eq!(s.kv_get("ns", "short", now + 10_000).expect("get"), None);
    let live: Vec<String> = s
        .kv_list("ns", "", now + 10_000)
        .expect("list")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(live, ["forever", "long"]);
    // Invisible is not deleted: an earlier clock still sees it until a sweep.
    assert!(s.kv_get("ns", "short", now).expect("get").is_some());

    assert_eq!(s.kv_sweep_expired(now).expect("sweep"), 0);
    assert_eq!(s.kv_sweep_expired(now + 10_000).expect("sweep"), 2);
    assert_eq!(s.kv_get("ns", "short", now).expect("get"), None);
    assert_eq!(s.kv_get("other", "short", now).expect("get"), None);
    assert_eq!(s.kv_sweep_expired(now + 10_000).expect("sweep"), 0);
    assert_eq!(s.kv_sweep_expired(u64::MAX).expect("sweep"), 1);
    assert_eq!(
        s.kv_get("ns", "forever", u64::MAX).expect("get"),
        Some(b"f".to_vec())
    );
    // A deleted TTL entry leaves nothing for the sweep.
    s.kv_set("ns", "gone", b"g", Some(Duration::from_secs(1)), now)
        .expect("set");
    assert!(s.kv_delete("ns", "gone").expect("delete"));
    assert_eq!(s.kv_sweep_expired(u64::MAX).expect("sweep"), 0);
}

fn kv_reset_ttl(s: &dyn Storage) {
    let now = 5_000;
    s.kv_set("ns", "k", b"1", Some(Duration::from_secs(1)), now)
        .expect("set");
    // Set again without TTL: the old expiry no longer applies.
    s.kv_set("ns", "k", b"2", None, now).expect("set");
    assert_eq!(s.kv_sweep_expired(now + 1_000).expect("sweep"), 0);
    assert_eq!(
        s.kv_get("ns", "k", u64::MAX).expect("get"),
        Some(b"2".to_vec())
    );
    // And with a new TTL, only the new one counts.
    s.kv_set("ns", "k", b"3", Some(Duration::from_secs(5)), now)
        .expect("set");
    s.kv_set("ns", "k", b"4", Some(Duration::from_secs(2)), now)
        .expect("set");
    assert_eq!(
        s.kv_get("ns", "k", now + 1_999).expect("get"),
        Some(b"4".to_vec())
    );
    assert_eq!(s.kv_get("ns", "k", now + 2_000).expect("get"), None);
    assert_eq!(s.kv_sweep_expired(now + 2_000).expect("sweep"), 1);
    assert_eq!(s.kv_sweep_expired(u64::MAX).expect("sweep"), 0);
    // A TTL too long to represent never expires early.
    s.kv_set("ns", "huge", b"h", Some(Duration::MAX), now)
        .expect("set");
    assert!(s.kv_get("ns", "huge", u64::MAX - 1).expect("get").is_some());
}

fn cdr_append_and_recent(s: &dyn Storage) {
    assert!(s.recent_cdrs(10).expect("recent").is_empty());
    for (i, to) in ["1001", "1002", "600"].iter().enumerate() {
        let id = s
            .append_cdr(&json!({"from": "1000", "to": to, "duration_s": i}))
            .expect("append");
        assert_eq!(id, i as u64 + 1);
    }
    let recent = s.recent_cdrs(2).expect("recent");
    assert_eq!(recent.iter().map(|e| e.id).collect::<Vec<_>>(), [3, 2]);
    assert_eq!(
        recent[0].record,
        json!({"from": "1000", "to": "600", "duration_s": 2})
    );
    assert_eq!(recent[1].record["to"], "1002");
    assert_eq!(s.recent_cdrs(100).expect("recent").len(), 3);
    assert!(s.recent_cdrs(0).expect("recent").is_empty());
    // A batch continues the numbering, in order.
    let ids = s
        .append_cdrs(&[json!({"to": "a"}), json!({"to": "b"})])
        .expect("batch");
    assert_eq!(ids, [4, 5]);
    let recent = s.recent_cdrs(2).expect("recent");
    assert_eq!((recent[0].id, &recent[0].record["to"]), (5, &json!("b")));
    assert!(s.append_cdrs(&[]).expect("empty batch").is_empty());
}
