//! Wiring of the subscription service (`presence` crate) into the binary:
//! the office's extensions as its [`presence::Directory`], and the mailbox
//! counts it starts from. Behaviour lives in the crate.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use pbx::{MailboxCounts, Mailboxes};

/// The configured extensions (swapped on reload) as the subscription
/// service sees them.
pub struct Office(pub Arc<ArcSwap<HashMap<String, chan_sip::Extension>>>);

impl presence::Directory for Office {
    fn contains(&self, ext: &str) -> bool {
        self.0.load().contains_key(ext)
    }

    fn name(&self, ext: &str) -> Option<String> {
        self.0.load().get(ext).and_then(|e| e.name.clone())
    }
}

/// Mailboxes until voicemail is wired in: every mailbox is empty. The
/// subscription service still lights lamps on
/// [`pbx::MailboxListener::counts_changed`].
pub struct NoMailboxes;

impl Mailboxes for NoMailboxes {
    fn counts(&self, _ext: &str) -> MailboxCounts {
        MailboxCounts::default()
    }
}
