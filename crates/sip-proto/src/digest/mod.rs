//! SIP digest authentication (RFC 7616, with RFC 8760 for SIP and RFC 3261
//! §22): the hash math, stateless nonces, nonce-count replay tracking,
//! challenge values and credential verification, all sans-IO.
//!
//! Nothing here reads the clock, draws randomness or does IO: the caller
//! passes time as unix seconds and random bytes in. A registrar uses it so:
//!
//! 1. A request without credentials: issue a nonce with
//!    [`NonceKey::issue`] and answer 401/407 with one [`challenge_value`]
//!    per configured [`Algorithm`], in the configured order.
//! 2. A request with credentials: [`verify`] them against a
//!    [`SecretStore`] and a shared [`NonceCounts`] (first check the digest
//!    `uri` against the Request-URI with [`uri_matches`]: a mismatch is a
//!    400). On [`Verdict::Ok`] go on; otherwise
//!    [`Verdict::challenge_stale`] says whether the fresh challenge carries
//!    `stale=true`, and [`Failure::is_guess`] whether the failure should
//!    count towards a ban.
//!
//! A registrar binds each nonce to the address it sends the challenge to
//! ([`NonceKey::issue_for`], [`VerifyContext::for_client`]), so a nonce is
//! worthless from any other source: a spoofed request cannot answer one,
//! and its failure is no guess.
//!
//! **On the wire every [`Failure`] looks the same** (the same code and
//! challenge headers, `stale` absent): the failure kinds exist for logs and
//! metrics only. An unknown user costs the same hashing as a wrong password
//! (a dummy H(A1) is computed), so neither the answer nor its timing tells
//! extensions apart.
//!
//! Read [`hash`] for the math ([`ha1`], [`ha2`], [`response`]),
//! [`nonce`] for [`NonceKey`] and [`NonceCounts`], [`server`] for
//! [`verify`], and [`wire`] for the header values both sides write.

pub mod hash;
pub mod nonce;
pub mod server;
pub mod wire;

pub use hash::{
    Algorithm, DigestAlgorithm, Secret, ha1, ha1_sess, ha2, response, response_no_qop, userhash,
};
pub use nonce::{MAX_FUTURE_SKEW_SECS, NONCE_LEN, NcCheck, NonceCheck, NonceCounts, NonceKey};
pub use server::{
    DigestResponse, Failure, HashedUser, Malformed, QopAuth, SecretFn, SecretStore, Verdict,
    VerifyContext, uri_matches, verify,
};
pub use wire::{DigestAnswer, challenge_value};

/// Errors from configuring digest authentication (algorithm names, stored
/// H(A1) values).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The name is none of `MD5`, `SHA-256`, `SHA-512-256` (with or without
    /// `-sess`).
    #[error("unknown digest algorithm '{0}' (expected MD5, SHA-256 or SHA-512-256)")]
    UnknownAlgorithm(String),
    /// A `-sess` variant where only a plain algorithm can be used (e.g. in
    /// the list of algorithms to offer).
    #[error("'{0}-sess' cannot be offered here; use '{0}'")]
    SessionVariant(Algorithm),
    /// A stored H(A1) that is not a hash of the algorithm.
    #[error("H(A1) for {algorithm} must be {expected_len} hex digits")]
    InvalidHa1 {
        /// The algorithm it was given for.
        algorithm: Algorithm,
        /// How many hex digits that algorithm's hashes have.
        expected_len: usize,
    },
}

#[cfg(test)]
mod tests;
