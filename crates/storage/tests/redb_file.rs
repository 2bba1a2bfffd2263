//! What only the redb backend promises: data survives a restart, and a file
//! that is in use, foreign or damaged is a clear error at open.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use storage::{Binding, CdrStore, Error, KvStore, LocationStore, RedbStorage};

fn binding(contact: &str, expires_at_ms: u64) -> Binding {
    Binding {
        aor: "sip:1001@pbx.example.com".to_owned(),
        contact: contact.to_owned(),
        expires_at_ms,
        q: Some(1000),
        call_id: "reg-1@phone".to_owned(),
        cseq: 7,
        path: vec!["<sip:edge.example.com;lr>".to_owned()],
        source: "203.0.113.9:61000".parse().expect("addr"),
        transport: "udp".to_owned(),
        user_agent: Some("baresip".to_owned()),
        instance: None,
        reg_id: None,
        registered_at_ms: 0,
    }
}

/// Deterministic bytes that are not a database.
fn garbage(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn open_err(path: &Path) -> Error {
    RedbStorage::open(path).expect_err("open must fail")
}

#[test]
fn data_survives_drop_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("var/switchboard.redb");
    {
        let s = RedbStorage::open(&path).expect("open");
        s.put(&binding("sip:1001@10.0.0.5:5060", 10_000))
            .expect("put");
        s.put(&binding("sip:1001@10.0.0.6:5060", 20_000))
            .expect("put");
        s.kv_set("plugin", "counter", b"41", None, 0).expect("set");
        s.kv_set("plugin", "session", b"x", Some(Duration::from_secs(5)), 0)
            .expect("set");
        s.append_cdr(&json!({"to": "1002"})).expect("append");
    }
    let s = RedbStorage::open(&path).expect("reopen");
    assert_eq!(s.path(), path);
    let got = s.list("sip:1001@pbx.example.com").expect("list");
    assert_eq!(
        got,
        vec![
            binding("sip:1001@10.0.0.5:5060", 10_000),
            binding("sip:1001@10.0.0.6:5060", 20_000)
        ]
    );
    assert_eq!(
        s.kv_get("plugin", "counter", 0).expect("get"),
        Some(b"41".to_vec())
    );
    // The expiry indexes survived too.
    assert_eq!(s.sweep_expired(10_000).expect("sweep").len(), 1);
    assert_eq!(s.kv_sweep_expired(5_000).expect("sweep"), 1);
    // CDR ids go on from where they were.
    assert_eq!(s.append_cdr(&json!({"to": "1003"})).expect("append"), 2);
    assert_eq!(s.recent_cdrs(5).expect("recent").len(), 2);
}

#[test]
fn second_open_is_in_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("var/switchboard.redb");
    let first = RedbStorage::open(&path).expect("open");
    let err = open_err(&path);
    assert!(matches!(err, Error::InUse { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "storage file {} is in use by another process (is another switchboard running?)",
            path.display()
        )
    );
    drop(first);
    RedbStorage::open(&path).expect("open after the first is closed");
}

#[test]
fn random_bytes_are_not_a_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    for len in [1, 100, 4096, 100_000] {
        let path = dir.path().join(format!("garbage-{len}.redb"));
        std::fs::write(&path, garbage(len)).expect("write");
        let err = open_err(&path);
        assert!(matches!(err, Error::NotADatabase { .. }), "{len}: {err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "storage file {} is not a valid Switchboard database: ",
                path.display()
            )),
            "{msg}"
        );
        assert!(msg.ends_with("; move it aside to start fresh"), "{msg}");
        assert!(!msg.contains('\n'), "one line: {msg}");
        // The file is left as it was for the user to inspect.
        assert_eq!(std::fs::read(&path).expect("read"), garbage(len));
    }
}

#[test]
fn text_file_is_not_a_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("switchboard.redb");
    std::fs::write(&path, "[sip]\nlisten = \"0.0.0.0:5060\"\n".repeat(200)).expect("write");
    assert!(matches!(open_err(&path), Error::NotADatabase { .. }));
}

#[test]
fn damaged_database_is_an_error_not_a_panic() {
    // A real database with part of it overwritten: with more of the header
    // intact, the engine gets further than with plain garbage.
    let dir = tempfile::tempdir().expect("tempdir");
    let pristine = dir.path().join("pristine.redb");
    {
        let s = RedbStorage::open(&pristine).expect("open");
        for i in 0..200 {
            s.put(&binding(&format!("sip:{i}@h"), 1_000)).expect("put");
        }
    }
    let original = std::fs::read(&pristine).expect("read");
    for keep in [16, 64, 512, 4096, original.len() / 2] {
        let path = dir.path().join(format!("damaged-{keep}.redb"));
        let mut bytes = original.clone();
        let keep = keep.min(bytes.len());
        let noise = garbage(bytes.len() - keep);
        bytes[keep..].copy_from_slice(&noise);
        std::fs::write(&path, &bytes).expect("write");
        match RedbStorage::open(&path) {
            Err(e @ (Error::NotADatabase { .. } | Error::Database { .. } | Error::Io { .. })) => {
                assert!(!e.to_string().contains('\n'), "one line: {e}");
            }
            // The engine may find nothing wrong with what it reads at open
            // (checksums cover what a transaction reads); reads must then
            // fail cleanly or return data.
            Ok(s) => {
                let _ = s.list_all();
            }
            Err(other) => panic!("keep {keep}: unexpected error: {other:?}"),
        }
    }
}

#[test]
fn another_programs_redb_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("other.redb");
    {
        let db = redb::Database::create(&path).expect("create");
        let txn = db.begin_write().expect("txn");
        {
            let table: redb::TableDefinition<u32, u32> = redb::TableDefinition::new("accounts");
            let mut t = txn.open_table(table).expect("table");
            t.insert(1, 2).expect("insert");
        }
        txn.commit().expect("commit");
    }
    let err = open_err(&path);
    assert!(matches!(err, Error::NotADatabase { .. }), "{err:?}");
    assert!(err.to_string().contains("`accounts`"), "{err}");
}

#[test]
fn table_with_another_layout_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("odd.redb");
    {
        let db = redb::Database::create(&path).expect("create");
        let txn = db.begin_write().expect("txn");
        {
            let table: redb::TableDefinition<u32, u32> = redb::TableDefinition::new("bindings");
            txn.open_table(table).expect("table");
        }
        txn.commit().expect("commit");
    }
    let err = open_err(&path);
    assert!(matches!(err, Error::NotADatabase { .. }), "{err:?}");
}

#[test]
fn newer_format_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("new.redb");
    drop(RedbStorage::open(&path).expect("create"));
    {
        let db = redb::Database::create(&path).expect("open");
        let txn = db.begin_write().expect("txn");
        {
            let meta: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
            txn.open_table(meta)
                .expect("meta")
                .insert("format", 99)
                .expect("insert");
        }
        txn.commit().expect("commit");
    }
    let err = open_err(&path);
    assert!(
        matches!(
            err,
            Error::NewerFormat {
                found: 99,
                supported: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("move the file aside"), "{err}");
}

#[test]
fn directory_in_place_of_the_file_names_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("switchboard.redb");
    std::fs::create_dir(&path).expect("mkdir");
    let err = open_err(&path);
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn file_in_place_of_the_directory_is_a_create_dir_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blocker = dir.path().join("var");
    std::fs::write(&blocker, b"not a directory").expect("write");
    let err = open_err(&blocker.join("switchboard.redb"));
    assert!(matches!(err, Error::CreateDir { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(&format!(
            "cannot create storage directory {}",
            blocker.display()
        )),
        "{err}"
    );
}

#[test]
fn usable_behind_arc_dyn_traits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Arc::new(RedbStorage::open(dir.path().join("s.redb")).expect("open"));
    let locations: Arc<dyn LocationStore> = s.clone();
    let kv: Arc<dyn KvStore> = s.clone();
    let cdrs: Arc<dyn CdrStore> = s;
    locations.put(&binding("sip:a@h", 1)).expect("put");
    kv.kv_set("n", "k", b"v", None, 0).expect("set");
    cdrs.append_cdr(&json!(null)).expect("append");
    assert_eq!(locations.list_all().expect("list").len(), 1);
}

const CHILD_MODE: &str = "STORAGE_TEST_CHILD_MODE";
const CHILD_PATH: &str = "STORAGE_TEST_CHILD_PATH";

/// Not a test by itself: the body of the child processes that the two tests
/// below start from this same test binary. Without the variables set it
/// returns at once.
#[test]
fn child_process_helper() {
    let (Ok(mode), Ok(path)) = (std::env::var(CHILD_MODE), std::env::var(CHILD_PATH)) else {
        return;
    };
    let s = RedbStorage::open(&path).expect("child open");
    match mode.as_str() {
        "put-then-exit" => {
            s.put(&binding("sip:1001@10.0.0.5:5060", 10_000))
                .expect("put");
            s.kv_set("plugin", "k", b"v", None, 0).expect("set");
            // Exit without dropping the store: no clean shutdown.
            std::process::exit(3);
        }
        "changes-then-exit" => {
            // Every kind of binding change, each replayed from the log.
            let other = |contact: &str, at| Binding {
                aor: "sip:1002@pbx.example.com".to_owned(),
                ..binding(contact, at)
            };
            s.put(&binding("sip:a@10.0.0.5", 10_000)).expect("put");
            s.put(&binding("sip:b@10.0.0.5", 20_000)).expect("put");
            s.put(&other("sip:c@10.0.0.7", 5_000)).expect("put");
            s.put(&other("sip:d@10.0.0.7", 50_000)).expect("put");
            // b refreshed, a dropped, e added.
            let refreshed = Binding {
                cseq: 8,
                ..binding("sip:b@10.0.0.5", 30_000)
            };
            s.replace_aors(&[(
                "sip:1001@pbx.example.com".to_owned(),
                vec![refreshed, binding("sip:e@10.0.0.5", 40_000)],
            )])
            .expect("replace");
            s.remove("sip:1001@pbx.example.com", "sip:e@10.0.0.5")
                .expect("remove");
            assert_eq!(s.sweep_expired(6_000).expect("sweep").len(), 1);
            s.put(&Binding {
                aor: "sip:1003@pbx.example.com".to_owned(),
                ..binding("sip:f@10.0.0.8", 60_000)
            })
            .expect("put");
            s.remove_all("sip:1003@pbx.example.com")
                .expect("remove all");
            std::process::exit(3);
        }
        "hold" => {
            println!("child-ready");
            // Keep the file open until the parent closes our stdin.
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
        }
        other => panic!("unknown child mode {other}"),
    }
}

fn child(mode: &str, path: &Path) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args([
        "--exact",
        "child_process_helper",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_MODE, mode)
    .env(CHILD_PATH, path);
    cmd
}

#[test]
fn a_returned_put_survives_a_process_exit_without_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("var/switchboard.redb");
    let status = child("put-then-exit", &path).status().expect("run child");
    assert_eq!(status.code(), Some(3), "child did not get to its exit");
    let s = RedbStorage::open(&path).expect("open after unclean exit");
    assert_eq!(
        s.list_all().expect("list"),
        vec![binding("sip:1001@10.0.0.5:5060", 10_000)]
    );
    assert_eq!(
        s.kv_get("plugin", "k", 0).expect("get"),
        Some(b"v".to_vec())
    );
}

#[test]
fn every_kind_of_binding_change_is_replayed_after_an_exit_without_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("var/switchboard.redb");
    let status = child("changes-then-exit", &path)
        .status()
        .expect("run child");
    assert_eq!(status.code(), Some(3), "child did not get to its exit");
    let expected = vec![
        Binding {
            cseq: 8,
            ..binding("sip:b@10.0.0.5", 30_000)
        },
        Binding {
            aor: "sip:1002@pbx.example.com".to_owned(),
            ..binding("sip:d@10.0.0.7", 50_000)
        },
    ];
    let s = RedbStorage::open(&path).expect("open after unclean exit");
    assert_eq!(s.list_all().expect("list"), expected);
    drop(s);
    // Replayed into the B-tree: the same after a clean close and reopen.
    let s = RedbStorage::open(&path).expect("reopen");
    assert_eq!(s.list_all().expect("list"), expected);
    assert_eq!(s.sweep_expired(30_000).expect("sweep").len(), 1);
}

#[test]
fn file_held_by_another_process_is_in_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("var/switchboard.redb");
    let mut holder = child("hold", &path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let stdout = holder.stdout.take().expect("child stdout");
    let mut lines = BufReader::new(stdout).lines();
    let ready = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|line| line.contains("child-ready"));
    assert!(ready, "child never opened the file");

    let err = open_err(&path);
    assert!(matches!(err, Error::InUse { .. }), "{err:?}");
    assert!(
        err.to_string().contains("is another switchboard running?"),
        "{err}"
    );

    drop(holder.stdin.take());
    // Drain the child's test report so it never writes to a closed pipe.
    lines.for_each(drop);
    assert!(holder.wait().expect("wait").success());
    RedbStorage::open(&path).expect("open once the other process has gone");
}
