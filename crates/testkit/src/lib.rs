//! `testkit`: what Switchboard's integration tests use to talk to the real
//! thing — the `switchboard` binary started on port 0 ([`Server`]) and a
//! small SIP user agent over real UDP and TCP sockets ([`Ua`]), and real
//! RTP for media tests ([`RtpPeer`], [`Wav`]), a subscriber ([`Watcher`]),
//! an SMTP server that keeps the mails it gets ([`SmtpSink`]), and a
//! throwaway PostgreSQL server ([`Postgres`]).
//!
//! Nothing here is a mock: the server is the release or test build of the
//! binary, the sockets are real, and every wait is bounded by a timeout.

mod phone;
mod postgres;
pub mod rtp;
mod server;
mod smtp;
mod ua;
mod watcher;
mod wav;

pub use self::rtp::{
    Received, RemoteMedia, RtpPeer, block_power, decode_payload, decode_run, dominant_frequency,
    is_tone, sdp_for, spray_rtp, tone_payload, tone_power,
};
pub use phone::{Dialog, InCall, OutCall, Phone, sdp};
pub use postgres::{POSTGRES_MISSING, Postgres, postgres_bindir};
pub use server::{Server, ServerError, TEST_ADMIN_TOKEN};
pub use smtp::{SmtpMail, SmtpSink};
pub use ua::{DigestChallenge, RawResponse, RequestBuilder, Ua, UaError, challenges};
pub use watcher::Watcher;
pub use wav::Wav;
