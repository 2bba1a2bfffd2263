//! What a failing relay leaves in the log: one line per failed try,
//! naming the relay and the reason. Its own test binary, so that no other
//! test's threads touch the log call sites while it listens (tracing
//! caches which call sites are enabled).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{closed_port, message, options, recipients, relay, stats_until, write_wav};
use mailer::{Mailer, Retry};
use pbx::MailboxListener;

/// Log lines written while a test runs (on the test's own thread).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_relay_that_stays_dead_is_given_up_after_the_last_try_each_failure_logged() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let (wav_path, _) = write_wav(dir.path());
    let addr = closed_port();
    let mailer = Mailer::start(
        relay(addr, None),
        recipients(),
        options(Retry {
            tries: 3,
            first_delay: Duration::from_millis(50),
        }),
    )
    .unwrap();
    mailer.message_left(&message(wav_path));
    let stats = stats_until(&mailer, |s| s.given_up == 1).await;
    assert_eq!(stats.failed_tries, 3);
    assert_eq!(stats.given_up, 1);
    assert_eq!(stats.sent, 0);

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let relay_name = format!("smtp relay {}:{} (none)", addr.ip(), addr.port());
    let failures: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(&relay_name) && l.contains("failed (try "))
        .collect();
    assert_eq!(failures.len(), 3, "one line per failed try:\n{text}");
    assert!(failures[0].contains("try 1 of 3"), "{}", failures[0]);
    assert!(
        failures[0].contains("trying again in 50ms"),
        "{}",
        failures[0]
    );
    assert!(
        failures[1].contains("trying again in 100ms"),
        "{}",
        failures[1]
    );
    assert!(failures[2].contains("giving up"), "{}", failures[2]);
    // The reason is in the line (the connection was refused).
    assert!(
        failures[0].to_ascii_lowercase().contains("refused"),
        "{}",
        failures[0]
    );
}
