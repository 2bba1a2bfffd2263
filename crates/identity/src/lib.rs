//! `identity`: STIR/SHAKEN for Switchboard's trunks. It signs outbound calls
//! with a PASSporT (RFC 8225) carrying the SHAKEN extension (RFC 8588) and
//! writes it as the value of a SIP `Identity` header (RFC 8224 §4.1); it
//! verifies inbound `Identity` headers against the From/To numbers, the
//! signer's certificate chain and the configured trust anchors, and maps
//! each failure to the RFC 8224 §6.2.2 response code (428, 436, 437, 438).
//!
//! It is not a SIP stack: it takes and returns strings and bytes, and the
//! caller (chan-sip's trunks) reads and writes the headers. It reads no
//! clock and no file: `iat` and `now` are the caller's, keys and trust
//! anchors arrive as PEM text. The one piece of IO, fetching the
//! certificate at `x5u`, sits behind the [`CertFetcher`] trait; the real
//! [`HttpsFetcher`] (HTTPS with a short timeout and a cache honouring a max
//! age) is the default `https` feature, and tests serve their own.
//!
//! Read in this order:
//! - [`Signer`] (`sign.rs`): load a PKCS#8 or SEC1 P-256 key, sign a
//!   [`PassportRequest`] (orig, dest, [`Attestation`], origid, iat) into
//!   `PASSporT;info=<x5u>;alg=ES256;ppt=shaken`.
//! - [`Verifier`] (`verify.rs`): [`Verifier::prepare`] checks the header
//!   and the claims (alg, ppt, info = x5u, iat freshness, orig = From,
//!   To ∈ dest); [`Verifier::finish`] checks the chain against
//!   [`TrustAnchors`] and the ES256 signature; [`Verifier::verify`] does
//!   both around a [`CertFetcher`]. The result is a [`Verification`]:
//!   `verified`, `attest`, `origid`, and a [`Reason`] with its status code
//!   and the `verstat` value for the phone.
//! - `passport.rs` (the JOSE header, the claims, the compact JWS),
//!   `identity.rs` (the header value), `tn.rs` (RFC 8224 §8.3 numbers).
//!
//! ```
//! # use identity::{Attestation, PassportRequest, Signer};
//! # let pem = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIFg1ITQrxkJfeKIYNotY7HhLxCjBAiEHYPVk/uCA+SFtoAoGCCqGSM49\nAwEHoUQDQgAEDrr9B2cDYpMzVdtmcimPlWtjYgXkF+j4//EfQknqaj+/ZYoHT2OV\n4nQkQzR/n1SFSzFMGsFIGCZ8HoBBg+fYjg==\n-----END EC PRIVATE KEY-----\n";
//! let signer = Signer::from_pem(pem, "https://cert.example.org/passport.pem")?;
//! let signed = signer.sign(&PassportRequest {
//!     orig: "+1 555 123 4567".into(),
//!     dest: vec!["+15557654321".into()],
//!     attest: Attestation::A,
//!     origid: None,
//!     iat: 1_700_000_000,
//! })?;
//! assert!(signed.identity.ends_with(";info=<https://cert.example.org/passport.pem>;alg=ES256;ppt=shaken"));
//! # Ok::<(), identity::SignError>(())
//! ```

#[cfg(feature = "https")]
mod fetch;
mod identity;
mod passport;
mod sign;
mod tn;
mod verify;

#[cfg(feature = "https")]
pub use fetch::{DEFAULT_MAX_AGE, DEFAULT_TIMEOUT, HttpsFetcher, MAX_BODY, MAX_ENTRIES};
pub use identity::{HeaderError, IdentityHeader, MAX_HEADER_LEN};
pub use passport::{
    ALG_ES256, Attestation, BadAttestation, Claims, Dest, Header, JwsError, MAX_JWS_LEN, Orig,
    PPT_SHAKEN, Passport, TYP_PASSPORT, signing_input,
};
pub use sign::{PassportRequest, SignError, Signed, Signer};
pub use tn::{MAX_DIGITS, TnError, canonical_tn};
pub use verify::{
    AnchorError, CertFetcher, DEFAULT_FRESHNESS, FetchError, FetchFuture, MAX_CHAIN_CERTS, Pending,
    Reason, TrustAnchors, Verification, Verifier,
};
