//! The PostgreSQL backend beyond the contract: its schema survives reopening,
//! an outage is a temporary error it recovers from by itself, and what it
//! refuses (a newer schema, a URL that is not PostgreSQL's) it says clearly.
//! Runs against a PostgreSQL started in a temporary directory (testkit).

use std::time::{Duration, Instant};

use serde_json::json;
use storage::{
    Binding, CdrStore, Error, KvStore, LocationStore, PostgresOptions, PostgresStorage,
    describe_url,
};

fn options(url: String) -> PostgresOptions {
    PostgresOptions {
        url,
        pool_size: 4,
        connect_timeout: Duration::from_secs(2),
        query_timeout: Duration::from_secs(2),
    }
}

fn binding(aor: &str, contact: &str) -> Binding {
    Binding {
        aor: aor.to_owned(),
        contact: contact.to_owned(),
        expires_at_ms: u64::MAX,
        q: Some(500),
        call_id: "c1@h".to_owned(),
        cseq: 7,
        path: vec!["<sip:edge.example.com;lr>".to_owned()],
        source: "192.0.2.10:5060".parse().expect("addr"),
        transport: "udp".to_owned(),
        user_agent: Some("Phone/1.0".to_owned()),
        instance: None,
        reg_id: None,
        registered_at_ms: 1,
    }
}

fn postgres() -> Option<testkit::Postgres> {
    let pg = testkit::Postgres::start().expect("PostgreSQL starts");
    if pg.is_none() {
        eprintln!("{}", testkit::POSTGRES_MISSING);
    }
    pg
}

#[test]
fn data_survives_reopening_and_migrations_run_once() {
    let Some(pg) = postgres() else { return };
    let url = pg.create_database("reopen").expect("createdb");
    let b = binding("sip:1001@pbx.test", "sip:1001@192.0.2.10");
    {
        let s = PostgresStorage::open(&options(url.clone())).expect("open");
        s.put(&b).expect("put");
        s.kv_set("ns", "k", b"v", None, 0).expect("kv");
        assert_eq!(s.append_cdr(&json!({"to": "1002"})).expect("cdr"), 1);
    }
    let s = PostgresStorage::open(&options(url)).expect("reopen");
    assert_eq!(s.list("sip:1001@pbx.test").expect("list"), vec![b]);
    assert_eq!(s.kv_get("ns", "k", 0).expect("kv"), Some(b"v".to_vec()));
    assert_eq!(s.append_cdr(&json!({"to": "1003"})).expect("cdr"), 2);
    assert_eq!(
        pg.psql(
            "reopen",
            "SELECT string_agg(version::text, ',') FROM switchboard_schema"
        )
        .expect("psql"),
        "1",
        "each migration is recorded once"
    );
    // Operators can read the tables: times are plain unix milliseconds.
    assert_eq!(
        pg.psql("reopen", "SELECT expires_at_ms FROM bindings")
            .expect("psql"),
        u64::MAX.to_string()
    );
}

#[test]
fn an_outage_is_unavailable_and_the_store_recovers_when_the_database_returns() {
    let Some(pg) = postgres() else { return };
    let url = pg.create_database("outage").expect("createdb");
    let s = PostgresStorage::open(&options(url)).expect("open");
    let b = binding("sip:1001@pbx.test", "sip:1001@192.0.2.10");
    s.put(&b).expect("put");

    pg.stop().expect("pg_ctl stop");
    let err = s.list("sip:1001@pbx.test").expect_err("no database");
    assert!(err.is_unavailable(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("is unavailable") && text.contains("127.0.0.1"),
        "{text}"
    );
    let err = s
        .replace_aor("sip:1001@pbx.test", &[])
        .expect_err("no database");
    assert!(err.is_unavailable(), "{err}");

    pg.resume().expect("pg_ctl start");
    // The pool drops the connections the stop closed and opens new ones.
    let deadline = Instant::now() + Duration::from_secs(20);
    let listed = loop {
        match s.list("sip:1001@pbx.test") {
            Ok(listed) => break listed,
            Err(e) => {
                assert!(Instant::now() < deadline, "did not recover: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    assert_eq!(listed, vec![b], "the refused replace changed nothing");
    s.replace_aor("sip:1001@pbx.test", &[])
        .expect("writes again");
    assert!(s.list_all().expect("list").is_empty());
}

#[test]
fn a_newer_schema_and_a_foreign_url_are_refused_with_what_to_do() {
    let Some(pg) = postgres() else { return };
    let url = pg.create_database("newer").expect("createdb");
    drop(PostgresStorage::open(&options(url.clone())).expect("open"));
    pg.psql(
        "newer",
        "INSERT INTO switchboard_schema (version) VALUES (99)",
    )
    .expect("psql");
    let err = PostgresStorage::open(&options(url)).expect_err("newer schema");
    assert!(matches!(err, Error::NewerSchema { found: 99, .. }), "{err}");
    assert!(
        err.to_string().contains("run the newer switchboard"),
        "{err}"
    );

    // The database being down at start is a clear error, not a hang.
    let port = pg.port();
    drop(pg);
    let err = PostgresStorage::open(&options(format!(
        "postgres://switchboard:s3cret@127.0.0.1:{port}/newer"
    )))
    .expect_err("nothing listens");
    assert!(err.is_unavailable(), "{err}");
    assert!(!err.to_string().contains("s3cret"), "password shown: {err}");
}

#[test]
fn urls_are_described_without_their_password() {
    assert_eq!(
        describe_url("postgres://sb:s3cret@db.example.com:5433/pbx").expect("url"),
        "sb@db.example.com:5433/pbx"
    );
    assert_eq!(
        describe_url("postgresql://sb@10.0.0.5/pbx").expect("url"),
        "sb@10.0.0.5:5432/pbx"
    );
    let err = describe_url("mysql://sb@db/pbx").expect_err("not postgres");
    assert!(err.to_string().starts_with("storage.url: "), "{err}");
    assert!(describe_url("").is_err());
}
