//! The authentication service (RFC 8224 §5, RFC 8588): signs a SHAKEN
//! PASSporT with a P-256 key and returns the `Identity` header value.

use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey as _;
use thiserror::Error;

use crate::identity::IdentityHeader;
use crate::passport::{
    ALG_ES256, Attestation, Claims, Dest, Header, Orig, PPT_SHAKEN, TYP_PASSPORT, b64url,
    signing_input,
};
use crate::tn::{TnError, canonical_tn};

/// Why a signer could not be built or a PASSporT not signed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SignError {
    /// The key text holds no PEM block.
    #[error(
        "the STIR/SHAKEN key is not PEM: expected '-----BEGIN PRIVATE KEY-----' (PKCS#8) or '-----BEGIN EC PRIVATE KEY-----' (SEC1)"
    )]
    NotPem,
    /// A PEM block of another kind (a certificate, an RSA key, ...).
    #[error(
        "the STIR/SHAKEN key file holds a '{0}' PEM block; it needs a P-256 private key, PKCS#8 ('PRIVATE KEY') or SEC1 ('EC PRIVATE KEY')"
    )]
    WrongPemLabel(String),
    /// Encrypted PKCS#8 is not supported.
    #[error(
        "the STIR/SHAKEN key is encrypted; decrypt it first (openssl pkcs8 -in key.pem -out plain.pem)"
    )]
    Encrypted,
    /// A PKCS#8 block that is not a P-256 EC key.
    #[error(
        "the PKCS#8 key is not a valid P-256 (prime256v1) EC key, which ES256 needs ({0}); make one with: openssl ecparam -name prime256v1 -genkey -noout"
    )]
    Pkcs8(p256::pkcs8::Error),
    /// A SEC1 block that is not a P-256 EC key.
    #[error(
        "the SEC1 'EC PRIVATE KEY' is not a valid P-256 (prime256v1) key, which ES256 needs ({0}); make one with: openssl ecparam -name prime256v1 -genkey -noout"
    )]
    Sec1(p256::elliptic_curve::Error),
    /// The certificate URL must be HTTPS (RFC 8588 §3, ATIS-1000074 §5.3.1).
    #[error("the STIR/SHAKEN x5u '{0}' is not an https:// URL")]
    X5u(String),
    /// `orig` is not a telephone number.
    #[error("calling number: {0}")]
    Orig(TnError),
    /// A `dest` is not a telephone number.
    #[error("called number: {0}")]
    Dest(TnError),
    /// No called number.
    #[error("a PASSporT needs at least one called number (dest)")]
    NoDest,
}

/// What to sign for one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassportRequest {
    /// The calling number, in any form [`canonical_tn`] accepts.
    pub orig: String,
    /// The called numbers (usually one).
    pub dest: Vec<String>,
    /// The attestation level.
    pub attest: Attestation,
    /// The origination identifier; a random UUID when `None`.
    pub origid: Option<String>,
    /// Issued-at, seconds since the Unix epoch (the caller's clock: this
    /// crate reads none).
    pub iat: u64,
}

/// A signed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The `Identity` header value (RFC 8224 §4.1):
    /// `PASSporT;info=<x5u>;alg=ES256;ppt=shaken`.
    pub identity: String,
    /// The `origid` that was signed (for logs and CDRs).
    pub origid: String,
}

/// Signs SHAKEN PASSporTs with one key, for one certificate URL.
#[derive(Clone)]
pub struct Signer {
    key: SigningKey,
    x5u: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Signer")
            .field("x5u", &self.x5u)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer from a P-256 private key in PEM, PKCS#8 (`BEGIN PRIVATE
    /// KEY`) or SEC1 (`BEGIN EC PRIVATE KEY`), and the HTTPS URL where its
    /// certificate chain is published.
    pub fn from_pem(pem: &str, x5u: &str) -> Result<Self, SignError> {
        if !x5u.starts_with("https://") || x5u.len() <= "https://".len() {
            return Err(SignError::X5u(x5u.to_owned()));
        }
        let key = load_key(pem)?;
        Ok(Signer {
            key,
            x5u: x5u.to_owned(),
        })
    }

    /// The certificate URL this signer writes into `x5u` and `info`.
    pub fn x5u(&self) -> &str {
        &self.x5u
    }

    /// Signs `req` (ES256 over the compact JWS, RFC 7515 §5.1) and returns
    /// the `Identity` header value. Numbers are canonicalized per RFC 8224
    /// §8.3 first.
    pub fn sign(&self, req: &PassportRequest) -> Result<Signed, SignError> {
        let orig = canonical_tn(&req.orig).map_err(SignError::Orig)?;
        if req.dest.is_empty() {
            return Err(SignError::NoDest);
        }
        let dest = req
            .dest
            .iter()
            .map(|d| canonical_tn(d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(SignError::Dest)?;
        let origid = req
            .origid
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let header = Header {
            alg: ALG_ES256.into(),
            ppt: Some(PPT_SHAKEN.into()),
            typ: Some(TYP_PASSPORT.into()),
            x5u: self.x5u.clone(),
        };
        let claims = Claims {
            attest: Some(req.attest.as_str().into()),
            dest: Dest {
                tn: dest,
                uri: Vec::new(),
            },
            iat: req.iat,
            orig: Orig {
                tn: Some(orig),
                uri: None,
            },
            origid: Some(origid.clone()),
        };
        let input = signing_input(&header, &claims);
        let signature: Signature = self.key.sign(input.as_bytes());
        let passport = format!("{input}.{}", b64url(&signature.to_bytes()));
        let identity = IdentityHeader {
            passport,
            info: self.x5u.clone(),
            alg: Some(ALG_ES256.into()),
            ppt: Some(PPT_SHAKEN.into()),
        }
        .to_value();
        Ok(Signed { identity, origid })
    }
}

/// Loads a P-256 key from the first PEM block of `pem`, by its label.
fn load_key(pem: &str) -> Result<SigningKey, SignError> {
    let label = pem
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("-----BEGIN ")
                .and_then(|r| r.strip_suffix("-----"))
        })
        .ok_or(SignError::NotPem)?;
    match label {
        "PRIVATE KEY" => SigningKey::from_pkcs8_pem(pem).map_err(SignError::Pkcs8),
        "EC PRIVATE KEY" => p256::SecretKey::from_sec1_pem(pem)
            .map(SigningKey::from)
            .map_err(SignError::Sec1),
        "ENCRYPTED PRIVATE KEY" => Err(SignError::Encrypted),
        other => Err(SignError::WrongPemLabel(other.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_errors_are_typed() {
        let x5u = "https://cert.example.org/c.pem";
        assert!(matches!(
            Signer::from_pem("not a key", x5u),
            Err(SignError::NotPem)
        ));
        assert!(matches!(
            Signer::from_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", x5u),
            Err(SignError::WrongPemLabel(l)) if l == "CERTIFICATE"
        ));
        assert!(matches!(
            Signer::from_pem(
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
                x5u
            ),
            Err(SignError::Encrypted)
        ));
        assert!(matches!(
            Signer::from_pem(
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                x5u
            ),
            Err(SignError::Pkcs8(_))
        ));
        assert!(matches!(
            Signer::from_pem(
                "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
                x5u
            ),
            Err(SignError::Sec1(_))
        ));
    }
}
