//! `presence`: subscriptions to what happens at an extension (RFC 6665
//! SUBSCRIBE/NOTIFY) and the event packages desk phones and softphones ask
//! for: `dialog` for busy lamps (RFC 4235), `message-summary` for the
//! message-waiting light (RFC 3842) and `presence` (RFC 3856, PIDF).
//! Besides the extensions, a script may light lamps of its own under a
//! name that is no extension ([`Presence::set_lamp`]: the night mode on
//! `*28`), watched like an extension's.
//!
//! It is a [`sip_net::Service`] for SUBSCRIBE beside the registrar and the
//! call channel. It authenticates subscribers as the registrar does for
//! INVITE, follows calls through [`pbx::Registry::watch`], mailboxes through
//! [`pbx::MailboxListener`], and sends every NOTIFY as a non-INVITE client
//! transaction through the endpoint. It knows nothing of Lua: who may watch
//! whom is an [`Authorizer`] the binary supplies.
//!
//! Read `service.rs` (a SUBSCRIBE, start to end, and how NOTIFYs go out),
//! then `calls.rs` (call snapshots to lamp states) and `body.rs` (the XML
//! and text bodies).

mod body;
mod calls;
mod service;

pub use body::{DialogState, DialogView, Direction, dialog_info, message_summary, pidf};
pub use calls::{Directory, LampChange, Tracker, user_of};
pub use service::{
    AllowAll, Authorizer, LampError, Package, Presence, PresenceConfig, SubscriptionInfo,
};
