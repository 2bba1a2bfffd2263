//! `mailer`: voicemail to email. A [`Mailer`] is a [`pbx::MailboxListener`]:
//! when voicemail reports a message left for an extension that has an
//! `email`, it queues a mail (the caller, the time and the duration in the
//! text, the recording attached as `audio/wav`) and returns at once; a task
//! sends it through the configured SMTP relay with `lettre`, and a relay
//! that fails is tried again with exponential backoff a bounded number of
//! times. Nothing here can block or fail a call: a full queue drops the mail
//! and logs it, a relay that never answers is logged and given up on.
//!
//! Read in this order: [`Relay`] (the `[smtp]` settings), [`Mailer`] (the
//! queue, the retries), then `message.rs` (what the mail says).
//!
//! It knows nothing of SIP, Lua or the config file: the binary builds the
//! [`Relay`] from `[smtp]`, keeps the extensions' addresses in a
//! [`Recipients`] it swaps on reload, and hands the mailer to voicemail
//! through `pbx::MailboxListeners`.

mod message;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use pbx::{MailboxCounts, MailboxListener, NewMessage};
use tokio::sync::{Semaphore, mpsc};
use tracing::{error, info, warn};

pub use jiff::tz::TimeZone;
pub use lettre::Address;
pub use lettre::message::Mailbox;

/// How the connection to the relay is secured (`smtp.tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// `"none"`: plain SMTP (a relay on the same host or network).
    None,
    /// `"starttls"`: plain connection upgraded with STARTTLS, which the
    /// relay must offer (RFC 3207; usually port 587).
    StartTls,
    /// `"tls"`: TLS from the first byte (RFC 8314 implicit TLS; usually port 465).
    Tls,
}

impl Tls {
    /// The word the config uses.
    pub fn name(self) -> &'static str {
        match self {
            Tls::None => "none",
            Tls::StartTls => "starttls",
            Tls::Tls => "tls",
        }
    }

    /// The config's word for it, if it is one.
    pub fn from_name(name: &str) -> Option<Tls> {
        match name {
            "none" => Some(Tls::None),
            "starttls" => Some(Tls::StartTls),
            "tls" => Some(Tls::Tls),
            _ => None,
        }
    }

    /// The usual port: 25, 587 (submission) or 465 (submissions).
    pub fn default_port(self) -> u16 {
        match self {
            Tls::None => 25,
            Tls::StartTls => 587,
            Tls::Tls => 465,
        }
    }
}

/// The SMTP relay mails go through (`[smtp]`).
#[derive(Clone)]
pub struct Relay {
    /// `host`: name or address of the relay.
    pub host: String,
    /// `port`.
    pub port: u16,
    /// `tls`.
    pub tls: Tls,
    /// `username` and `password`, for AUTH PLAIN/LOGIN.
    pub credentials: Option<(String, String)>,
    /// `from`: the sender (`"PBX <pbx@example.com>"` or an address).
    pub from: Mailbox,
}

impl fmt::Debug for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.credentials.as_ref().map(|(u, _)| u))
            .field("from", &self.from.to_string())
            .finish()
    }
}

impl fmt::Display for Relay {
    /// `mail.example.com:587 (starttls)`, as logs name the relay.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{} ({})", self.host, self.port, self.tls.name())
    }
}

/// How often and how patiently a failing relay is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Tries in all, the first one included.
    pub tries: u32,
    /// The wait after the first failure; each later wait is twice the one before.
    pub first_delay: Duration,
}

impl Default for Retry {
    /// 5 tries, waiting 40 s, 80 s, 160 s and 320 s between them: the last
    /// one about 10 minutes after the first.
    fn default() -> Retry {
        Retry {
            tries: 5,
            first_delay: Duration::from_secs(40),
        }
    }
}

impl Retry {
    /// The wait after failed try number `failed` (1-based).
    fn delay(&self, failed: u32) -> Duration {
        self.first_delay
            .saturating_mul(2u32.saturating_pow(failed.saturating_sub(1)))
    }
}

/// The mailer's settings besides the relay; [`Options::default`] is what the server uses.
#[derive(Debug, Clone)]
pub struct Options {
    /// Retries of a failing relay.
    pub retry: Retry,
    /// Most mails waiting to be sent; past it a new one is dropped and logged.
    /// As many again may be in delivery (or waiting for a retry) at once.
    pub queue: usize,
    /// Most time one try may take (connect, TLS, every SMTP reply).
    pub timeout: Duration,
    /// The time zone the mail's human-readable time is written in.
    pub zone: TimeZone,
}

/// Default of [`Options::queue`].
pub const DEFAULT_QUEUE: usize = 32;
/// Default of [`Options::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

impl Default for Options {
    fn default() -> Options {
        Options {
            retry: Retry::default(),
            queue: DEFAULT_QUEUE,
            timeout: DEFAULT_TIMEOUT,
            zone: TimeZone::system(),
        }
    }
}

/// Each extension's `email`, by extension id; the binary swaps the map
/// when the extensions are reloaded.
pub type Recipients = Arc<ArcSwap<HashMap<String, Address>>>;

/// Why a mailer could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The relay's settings cannot make a transport (a host name TLS
    /// cannot verify against, for instance).
    #[error("smtp relay {relay}: {source}; check smtp.host and smtp.tls")]
    Relay {
        /// The relay, as logs name it.
        relay: String,
        /// What lettre said.
        source: lettre::transport::smtp::Error,
    },
    /// [`Mailer::start`] was called outside a tokio runtime.
    #[error("the mailer must be started inside a tokio runtime")]
    NoRuntime,
}

/// What the mailer has done since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Mails accepted into the queue.
    pub queued: u64,
    /// Mails the relay accepted.
    pub sent: u64,
    /// Tries that failed (each logged with the relay and the reason).
    pub failed_tries: u64,
    /// Mails given up on after the last try or a permanent refusal.
    pub given_up: u64,
    /// Mails dropped because the queue was full.
    pub dropped: u64,
}

impl Stats {
    /// Mails queued and not yet sent or given up on (waiting, in delivery,
    /// or waiting for a retry).
    pub fn pending(&self) -> u64 {
        self.queued.saturating_sub(self.sent + self.given_up)
    }
}

#[derive(Debug, Default)]
struct Counters {
    queued: AtomicU64,
    sent: AtomicU64,
    failed_tries: AtomicU64,
    given_up: AtomicU64,
    dropped: AtomicU64,
}

/// A mail waiting to be sent.
#[derive(Debug)]
struct Job {
    to: Address,
    message: NewMessage,
}

/// What every delivery task shares.
struct Shared {
    relay: Relay,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    options: Options,
    counters: Counters,
}

/// Sends an email for each voicemail message left for an extension with
/// an address; see the crate documentation.
pub struct Mailer {
    queue: mpsc::Sender<Job>,
    recipients: Recipients,
    shared: Arc<Shared>,
}

impl fmt::Debug for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailer")
            .field("relay", &self.shared.relay)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Mailer {
    /// Builds the transport for `relay` and starts the task that sends the
    /// queue. Must be called inside a tokio runtime; the task ends when the
    /// mailer is dropped (deliveries in progress go on to their end).
    ///
    /// # Errors
    /// [`Error::Relay`] when the settings cannot make a transport,
    /// [`Error::NoRuntime`] outside a runtime.
    pub fn start(relay: Relay, recipients: Recipients, options: Options) -> Result<Mailer, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let transport = transport(&relay, options.timeout).map_err(|source| Error::Relay {
            relay: relay.to_string(),
            source,
        })?;
        let queue_len = options.queue.max(1);
        let (queue, rx) = mpsc::channel(queue_len);
        let shared = Arc::new(Shared {
            relay,
            transport,
            options,
            counters: Counters::default(),
        });
        runtime.spawn(dispatch(rx, Arc::clone(&shared), queue_len));
        Ok(Mailer {
            queue,
            recipients,
            shared,
        })
    }

    /// Waits, at most `within`, until no mail is queued or being
    /// delivered (each sent, or given up), for a shutdown that would
    /// otherwise drop them: how many are still pending then. A mail
    /// waiting between tries for a dead relay waits out `within`.
    pub async fn flush(&self, within: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let pending = self.stats().pending();
            if pending == 0 || tokio::time::Instant::now() >= deadline {
                return pending;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The relay mails go through.
    pub fn relay(&self) -> &Relay {
        &self.shared.relay
    }

    /// What the mailer has done so far.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        Stats {
            queued: c.queued.load(Ordering::Relaxed),
            sent: c.sent.load(Ordering::Relaxed),
            failed_tries: c.failed_tries.load(Ordering::Relaxed),
            given_up: c.given_up.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
        }
    }
}

impl MailboxListener for Mailer {
    /// Nothing to mail: lamps are the subscription service's.
    fn counts_changed(&self, _ext: &str, _counts: MailboxCounts) {}

    /// Queues the mail if the extension has an address; never waits.
    fn message_left(&self, message: &NewMessage) {
        let Some(to) = self.recipients.load().get(&message.ext).cloned() else {
            return;
        };
        let job = Job {
            to,
            message: message.clone(),
        };
        let counters = &self.shared.counters;
        match self.queue.try_send(job) {
            Ok(()) => {
                counters.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Full(job)) => {
                counters.dropped.fetch_add(1, Ordering::Relaxed);
                error!(
                    "voicemail email for {} (message {}) to {} dropped: {} mails already wait for smtp relay {}; the message stays in the mailbox",
                    job.message.ext,
                    job.message.id,
                    job.to,
                    self.shared.options.queue,
                    self.shared.relay
                );
            }
            Err(mpsc::error::TrySendError::Closed(job)) => {
                counters.dropped.fetch_add(1, Ordering::Relaxed);
                warn!(
                    "voicemail email for {} (message {}) not sent: the mailer has stopped",
                    job.message.ext, job.message.id
                );
            }
        }
    }
}

/// The lettre transport for `relay`: TLS per `relay.tls`, AUTH when
/// credentials are set (PLAIN, else LOGIN), one connection per mail.
fn transport(
    relay: &Relay,
    timeout: Duration,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, lettre::transport::smtp::Error> {
    let builder = match relay.tls {
        Tls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&relay.host),
        Tls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&relay.host)?,
        Tls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&relay.host)?,
    };
    let mut builder = builder.port(relay.port).timeout(Some(timeout));
    if let Some((user, password)) = &relay.credentials {
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    Ok(builder.build())
}

/// Takes mails off the queue and starts a delivery for each, at most
/// `in_flight` at once (a dead relay keeps them all waiting for retries;
/// then the queue fills and new mails are dropped, so memory stays bounded).
async fn dispatch(mut rx: mpsc::Receiver<Job>, shared: Arc<Shared>, in_flight: usize) {
    let slots = Arc::new(Semaphore::new(in_flight));
    loop {
        // A slot first, so that a mail is either in the queue or in delivery.
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let Some(job) = rx.recv().await else {
            return;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            deliver(&shared, job).await;
            drop(slot);
        });
    }
}

/// Builds the mail and sends it, trying again with backoff on failure.
async fn deliver(shared: &Shared, job: Job) {
    let wav_path = job.message.wav.clone();
    let wav = tokio::task::spawn_blocking(move || std::fs::read(&wav_path))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
    let wav = match wav {
        Ok(bytes) => Ok(bytes),
        Err(e) => {
            warn!(
                "voicemail email for {} (message {}): cannot read the recording {}: {e}; mailing without it",
                job.message.ext,
                job.message.id,
                job.message.wav.display()
            );
            Err(e.to_string())
        }
    };
    let email = match message::build(
        &shared.relay.from,
        &job.to,
        &job.message,
        wav,
        &shared.options.zone,
    ) {
        Ok(email) => email,
        Err(e) => {
            shared.counters.given_up.fetch_add(1, Ordering::Relaxed);
            error!(
                "voicemail email for {} (message {}) to {}: cannot build the mail: {e}",
                job.message.ext, job.message.id, job.to
            );
            return;
        }
    };
    let retry = shared.options.retry;
    let tries = retry.tries.max(1);
    let (ext, id, to, relay) = (&job.message.ext, &job.message.id, &job.to, &shared.relay);
    for attempt in 1..=tries {
        match shared.transport.send(email.clone()).await {
            Ok(_) => {
                shared.counters.sent.fetch_add(1, Ordering::Relaxed);
                info!(
                    "voicemail email for {ext} (message {id}) sent to {to} through smtp relay {relay}"
                );
                return;
            }
            Err(e) => {
                shared.counters.failed_tries.fetch_add(1, Ordering::Relaxed);
                let reason = one_line(&e);
                if e.is_permanent() {
                    shared.counters.given_up.fetch_add(1, Ordering::Relaxed);
                    error!(
                        "voicemail email for {ext} (message {id}) to {to}: smtp relay {relay} refused it: {reason}; not retried (check smtp.from, the address and the relay's limits)"
                    );
                    return;
                }
                if attempt == tries {
                    shared.counters.given_up.fetch_add(1, Ordering::Relaxed);
                    error!(
                        "voicemail email for {ext} (message {id}) to {to}: smtp relay {relay} failed (try {attempt} of {tries}): {reason}; giving up, the message stays in the mailbox"
                    );
                    return;
                }
                let delay = retry.delay(attempt);
                warn!(
                    "voicemail email for {ext} (message {id}) to {to}: smtp relay {relay} failed (try {attempt} of {tries}): {reason}; trying again in {}",
                    fmt_delay(delay)
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// An error and its causes on one line (`Connection error: Connection refused (os error 111)`).
fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text.replace(['\r', '\n'], " ")
}

/// `40s`, `2m 40s`, `250ms`.
fn fmt_delay(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    let s = d.as_secs();
    match (s / 60, s % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m {s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_retry_is_five_tries_over_about_ten_minutes() {
        let r = Retry::default();
        assert_eq!(r.tries, 5);
        let total: Duration = (1..r.tries).map(|n| r.delay(n)).sum();
        assert_eq!(total, Duration::from_secs(600));
        assert_eq!(r.delay(1), Duration::from_secs(40));
        assert_eq!(r.delay(4), Duration::from_secs(320));
    }

    #[test]
    fn tls_names_round_trip() {
        for tls in [Tls::None, Tls::StartTls, Tls::Tls] {
            assert_eq!(Tls::from_name(tls.name()), Some(tls));
        }
        assert_eq!(Tls::from_name("ssl"), None);
        assert_eq!(Tls::StartTls.default_port(), 587);
    }

    #[test]
    fn delays_read_well() {
        assert_eq!(fmt_delay(Duration::from_millis(250)), "250ms");
        assert_eq!(fmt_delay(Duration::from_secs(40)), "40s");
        assert_eq!(fmt_delay(Duration::from_secs(160)), "2m 40s");
        assert_eq!(fmt_delay(Duration::from_secs(120)), "2m");
    }
}
