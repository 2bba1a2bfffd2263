//! The mailer against a real SMTP server on 127.0.0.1 (testkit's sink):
//! the mail arrives with the recording attached and the caller, time and
//! duration in the text; AUTH is used when configured; a dead relay is
//! tried again with backoff while `message_left` returns at once, and the
//! mail arrives once the relay is back; a full queue drops mails.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{WAIT, closed_port, message, options, recipients, relay, stats_until, write_wav};
use mail_parser::{MessageParser, MimeHeaders};
use mailer::{Mailer, Options, Retry, Stats};
use pbx::{MailboxCounts, MailboxListener};
use testkit::{SmtpSink, Wav};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mail_arrives_with_the_wav_attached_and_the_details_in_the_text() {
    let dir = tempfile::tempdir().unwrap();
    let (wav_path, wav_bytes) = write_wav(dir.path());
    let sink = SmtpSink::start().await.unwrap();
    let mailer = Mailer::start(
        relay(sink.addr(), None),
        recipients(),
        options(Retry::default()),
    )
    .unwrap();
    // Counts are the subscription service's business: nothing is mailed.
    mailer.counts_changed("1001", MailboxCounts { new: 1, old: 0 });
    mailer.message_left(&message(wav_path));

    let mails = sink.wait_for(1, WAIT).await.expect("no mail arrived");
    assert_eq!(mails.len(), 1, "one message, one mail");
    let mail = &mails[0];
    assert_eq!(mail.from, "pbx@example.com");
    assert_eq!(mail.to, ["alice@example.com"]);

    let parsed = MessageParser::default()
        .parse(&mail.data)
        .expect("the mail parses");
    let subject = parsed.subject().unwrap_or_default();
    assert!(subject.contains("1001"), "{subject}");
    assert!(subject.contains("Bob"), "{subject}");
    let text = parsed.body_text(0).expect("a text part").into_owned();
    for needle in [
        "\"Bob\" <sip:1002@pbx.test>",
        "2026-12-06T22:00:05Z",
        "Sunday 6 December 2026, 22:00:05 UTC",
        "Duration: 42 s (0:42)",
        "voicemail-1001-7.wav",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }

    let attachments: Vec<_> = parsed.attachments().collect();
    assert_eq!(attachments.len(), 1, "one attachment");
    let part = attachments[0];
    let ctype = part.content_type().expect("a content type");
    assert_eq!(ctype.ctype(), "audio");
    assert_eq!(ctype.subtype(), Some("wav"));
    assert_eq!(part.attachment_name(), Some("voicemail-1001-7.wav"));
    assert_eq!(part.contents(), wav_bytes.as_slice(), "the file as stored");
    let wav = Wav::parse(part.contents()).expect("RIFF/WAVE");
    assert_eq!(wav.format, 1, "PCM");
    assert_eq!(wav.bits_per_sample, 16);
    assert_eq!(wav.sample_rate, 8000);
    assert_eq!(wav.samples.len(), 8000);

    let stats = stats_until(&mailer, |s| s.sent == 1).await;
    assert_eq!(
        stats,
        Stats {
            queued: 1,
            sent: 1,
            ..Stats::default()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extension_without_email_gets_no_mail() {
    let dir = tempfile::tempdir().unwrap();
    let (wav_path, _) = write_wav(dir.path());
    let sink = SmtpSink::start().await.unwrap();
    let recipients = recipients();
    let mailer = Mailer::start(
        relay(sink.addr(), None),
        Arc::clone(&recipients),
        options(Retry::default()),
    )
    .unwrap();
    let mut other = message(wav_path.clone());
    other.ext = "1002".into();
    mailer.message_left(&other);
    // A reload gives 1002 an address (and takes 1001's away).
    let mut map = HashMap::new();
    map.insert("1002".to_owned(), "bob@example.com".parse().unwrap());
    recipients.store(Arc::new(map));
    mailer.message_left(&message(wav_path));
    mailer.message_left(&other);
    let mails = sink.wait_for(1, WAIT).await.expect("no mail arrived");
    assert_eq!(mails[0].to, ["bob@example.com"]);
    let stats = stats_until(&mailer, |s| s.sent == 1).await;
    assert_eq!(stats.queued, 1, "only 1002's second message is mailed");
    assert_eq!(sink.mails().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_plain_is_used_when_a_username_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let (wav_path, _) = write_wav(dir.path());
    let sink = SmtpSink::start_on(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Some(("pbx", "s3cret-pass")),
    )
    .await
    .unwrap();
    let mailer = Mailer::start(
        relay(sink.addr(), Some(("pbx", "s3cret-pass"))),
        recipients(),
        options(Retry::default()),
    )
    .unwrap();
    mailer.message_left(&message(wav_path.clone()));
    let mails = sink.wait_for(1, WAIT).await.expect("no mail arrived");
    assert_eq!(mails[0].user.as_deref(), Some("pbx"));

    // A wrong password is a permanent refusal (535): logged, not retried.
    let wrong = Mailer::start(
        relay(sink.addr(), Some(("pbx", "wrong"))),
        recipients(),
        options(Retry {
            tries: 5,
            first_delay: Duration::from_millis(50),
        }),
    )
    .unwrap();
    wrong.message_left(&message(wav_path));
    let stats = stats_until(&wrong, |s| s.given_up == 1).await;
    assert_eq!(stats.given_up, 1);
    assert_eq!(stats.failed_tries, 1, "a permanent refusal is not retried");
    assert_eq!(stats.sent, 0);
    assert_eq!(sink.mails().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_relay_is_retried_and_the_mail_arrives_when_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let (wav_path, _) = write_wav(dir.path());
    let addr = closed_port();
    let mailer = Mailer::start(
        relay(addr, None),
        recipients(),
        options(Retry {
            tries: 8,
            first_delay: Duration::from_millis(100),
        }),
    )
    .unwrap();
    // Returns without waiting for the relay: if it waited for delivery,
    // this test would never start the relay below and no mail could arrive.
    mailer.message_left(&message(wav_path));
    let stats = stats_until(&mailer, |s| s.failed_tries >= 2).await;
    assert!(stats.failed_tries >= 2, "{stats:?}");
    assert_eq!(stats.sent, 0);

    let sink = SmtpSink::start_on(addr, None).await.unwrap();
    let mails = sink.wait_for(1, WAIT).await.expect("the retry never came");
    assert_eq!(mails[0].to, ["alice@example.com"]);
    let stats = stats_until(&mailer, |s| s.sent == 1).await;
    assert_eq!(stats.sent, 1);
    assert_eq!(stats.given_up, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_waits_for_the_mails_on_their_way_and_no_longer_than_told() {
    let dir = tempfile::tempdir().unwrap();
    let (wav_path, _) = write_wav(dir.path());
    let addr = closed_port();
    let mailer = Mailer::start(
        relay(addr, None),
        recipients(),
        options(Retry {
            tries: 8,
            first_delay: Duration::from_millis(300),
        }),
    )
    .unwrap();
    mailer.message_left(&message(wav_path));
    // The relay is down: a short flush gives up with the mail pending.
    let started = tokio::time::Instant::now();
    assert_eq!(mailer.flush(Duration::from_millis(200)).await, 1);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "bounded by its wait"
    );
    // The relay comes back: a flush returns once the mail is sent.
    let sink = SmtpSink::start_on(addr, None).await.unwrap();
    assert_eq!(mailer.flush(WAIT).await, 0, "the mail went out");
    assert_eq!(sink.mails().len(), 1);
    assert_eq!(mailer.stats().sent, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_queue_bound_mails_are_dropped_and_message_left_still_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (wav_path, _) = write_wav(dir.path());
    let mailer = Mailer::start(
        relay(closed_port(), None),
        recipients(),
        Options {
            queue: 2,
            ..options(Retry {
                tries: 3,
                first_delay: Duration::from_secs(3600),
            })
        },
    )
    .unwrap();
    for _ in 0..10 {
        mailer.message_left(&message(wav_path.clone()));
    }
    let stats = mailer.stats();
    assert_eq!(stats.queued + stats.dropped, 10);
    // Two may wait in the queue and two be in delivery.
    assert!(stats.queued <= 4, "{stats:?}");
    assert!(stats.dropped >= 6, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_also_takes_auth_login() {
    use lettre::transport::smtp::authentication::{Credentials, Mechanism};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let sink = SmtpSink::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), Some(("u", "p")))
        .await
        .unwrap();
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(sink.addr().port())
        .credentials(Credentials::new("u".into(), "p".into()))
        .authentication(vec![Mechanism::Login])
        .build();
    let mail = Message::builder()
        .from("a@example.com".parse().unwrap())
        .to("b@example.com".parse().unwrap())
        .subject("login")
        .body("hi\r\n.dot at line start\r\n".to_owned())
        .unwrap();
    transport.send(mail).await.unwrap();
    let mails = sink.wait_for(1, WAIT).await.unwrap();
    assert_eq!(mails[0].user.as_deref(), Some("u"));
    let text = String::from_utf8_lossy(&mails[0].data);
    assert!(text.contains("\r\n.dot at line start"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_a_relay_without_it_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (wav_path, _) = write_wav(dir.path());
    let sink = SmtpSink::start().await.unwrap();
    // The sink speaks plain SMTP and offers no STARTTLS: implicit TLS
    // fails in the handshake, STARTTLS is refused as not offered. Each is
    // a failed try (rustls is there and set up), never a plain-text mail.
    for tls in [mailer::Tls::Tls, mailer::Tls::StartTls] {
        let mut relay = relay(sink.addr(), None);
        relay.tls = tls;
        relay.host = "localhost".into();
        let mailer = Mailer::start(
            relay,
            recipients(),
            options(Retry {
                tries: 1,
                first_delay: Duration::from_millis(10),
            }),
        )
        .unwrap();
        mailer.message_left(&message(wav_path.clone()));
        let stats = stats_until(&mailer, |s| s.given_up == 1).await;
        assert_eq!((stats.failed_tries, stats.sent), (1, 0), "{tls:?}");
        assert_eq!(stats.pending(), 0);
    }
    assert!(sink.mails().is_empty());
    assert!(sink.connections() >= 2, "both modes reached the relay");
}
