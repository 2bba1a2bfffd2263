//! `registrar`: where desk phones register (RFC 3261 §10.3).
//!
//! It serves REGISTER for the SIP endpoint (`sip_net::Service`): digest
//! authentication against the configured extensions (RFC 7616 / RFC 8760,
//! the math in `sip_proto::digest`), the §10.3 binding rules
//! ([`bindings::apply`], pure and unit-tested), persistence through
//! `storage::LocationStore` (a binding is committed before its 200 OK
//! leaves), expiry sweeps, and the brute-force ban list ([`bans`]) that
//! silences sources which keep failing authentication and locks users
//! whose passwords are being guessed. Nonces are bound to the source they
//! were sent to, so only real guesses count.
//!
//! Read [`service`] for the flow of one REGISTER, then [`bindings`] for the
//! rules and [`bans`] for the protection.

pub mod bans;
pub mod bindings;
mod commit;
pub mod faillog;
pub mod service;

pub use bans::{BanList, BanPolicy, Bans};
pub use bindings::{Policy, Refusal};
pub use service::{
    Denied, Extension, LookupError, RegisterObserver, Registrar, RegistrarConfig, Registration,
};
