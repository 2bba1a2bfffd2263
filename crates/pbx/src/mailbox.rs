//! Mailboxes as the rest of the PBX sees them: the message counts that
//! message-waiting indication (RFC 3842) shows, and the notice of a new
//! message that email delivery acts on. Voicemail owns the mailboxes and
//! reports through a [`MailboxListener`]; the subscription service asks a
//! [`Mailboxes`] for the counts when a phone subscribes. The binary wires
//! one to the other, so voicemail knows neither SIP nor SMTP.

use std::path::PathBuf;
use std::sync::Arc;

/// How many messages an extension's mailbox holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailboxCounts {
    /// Messages not yet heard.
    pub new: u32,
    /// Messages heard and kept.
    pub old: u32,
}

impl MailboxCounts {
    /// Whether the message-waiting lamp is lit (RFC 3842 `Messages-Waiting: yes`).
    pub fn waiting(&self) -> bool {
        self.new > 0
    }
}

/// A message just left in a mailbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    /// The mailbox's extension (`1001`).
    pub ext: String,
    /// The message's id within the mailbox.
    pub id: String,
    /// Who called, as the caller presented it (`"Alice" <sip:1002@pbx>` or a number).
    pub caller: String,
    /// When it was received, Unix milliseconds.
    pub received_ms: u64,
    /// Its length in seconds.
    pub duration_s: f64,
    /// The audio (16-bit PCM WAV).
    pub wav: PathBuf,
}

/// Where voicemail reports changes. Calls must not block: implementations
/// queue the work (a NOTIFY, an email) and return.
pub trait MailboxListener: Send + Sync + 'static {
    /// `ext`'s counts changed (a message was left, heard, saved or deleted).
    fn counts_changed(&self, ext: &str, counts: MailboxCounts);
    /// A message was left in `message.ext`'s mailbox.
    fn message_left(&self, message: &NewMessage);
}

/// The current counts of any mailbox.
pub trait Mailboxes: Send + Sync + 'static {
    /// `ext`'s counts (zero for an extension without messages).
    fn counts(&self, ext: &str) -> MailboxCounts;
}

/// Several listeners as one: the binary hands voicemail one of these with
/// the subscription service (MWI) and the mailer (email) in it.
#[derive(Default, Clone)]
pub struct Listeners(Vec<Arc<dyn MailboxListener>>);

impl Listeners {
    /// No listeners.
    pub fn new() -> Listeners {
        Listeners::default()
    }

    /// Adds `listener`.
    pub fn with(mut self, listener: Arc<dyn MailboxListener>) -> Listeners {
        self.0.push(listener);
        self
    }
}

impl std::fmt::Debug for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listeners")
            .field("len", &self.0.len())
            .finish()
    }
}

impl MailboxListener for Listeners {
    fn counts_changed(&self, ext: &str, counts: MailboxCounts) {
        for l in &self.0 {
            l.counts_changed(ext, counts);
        }
    }

    fn message_left(&self, message: &NewMessage) {
        for l in &self.0 {
            l.message_left(message);
        }
    }
}
