//! PASSporT tokens (RFC 8225 §4–§6) with the SHAKEN extension (RFC 8588 §4):
//! the JOSE header, the claims, and the compact JWS serialization (RFC 7515
//! §7.1) they are signed in.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The only signature algorithm SHAKEN allows (RFC 8588 §3, RFC 8225 §5.1.1).
pub const ALG_ES256: &str = "ES256";
/// The JOSE `typ` of every PASSporT (RFC 8225 §5.1.1).
pub const TYP_PASSPORT: &str = "passport";
/// The PASSporT extension this crate signs and verifies (RFC 8588 §3).
pub const PPT_SHAKEN: &str = "shaken";
/// Longest JWS accepted when decoding; real SHAKEN tokens are ~500 bytes.
pub const MAX_JWS_LEN: usize = 4096;

/// base64url without padding for output (RFC 7515 §2); decoding also
/// takes padded input, which some carriers send.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The SHAKEN attestation level (RFC 8588 §4, ATIS-1000074 §5.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Attestation {
    /// Full: the caller is authenticated and authorized to use the number.
    A,
    /// Partial: the caller is authenticated, but not known to own the number.
    B,
    /// Gateway: the call came from elsewhere (another network, a trunk).
    C,
}

impl Attestation {
    /// `"A"`, `"B"` or `"C"`, as written in the `attest` claim.
    pub fn as_str(self) -> &'static str {
        match self {
            Attestation::A => "A",
            Attestation::B => "B",
            Attestation::C => "C",
        }
    }
}

impl fmt::Display for Attestation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `attest` value that is not `A`, `B` or `C`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("attestation '{0}' is not one of A, B, C (RFC 8588 §4)")]
pub struct BadAttestation(pub String);

impl FromStr for Attestation {
    type Err = BadAttestation;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "A" => Ok(Attestation::A),
            "B" => Ok(Attestation::B),
            "C" => Ok(Attestation::C),
            other => Err(BadAttestation(other.to_owned())),
        }
    }
}

/// The PASSporT's JOSE header (RFC 8225 §4). Field order is lexicographic,
/// which serde keeps, so the serialization is the canonical one of RFC 8225
/// §9 (no whitespace, keys sorted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Signature algorithm; `ES256`.
    pub alg: String,
    /// PASSporT extension; `shaken` (absent in a base PASSporT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ppt: Option<String>,
    /// `passport`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
    /// Where the signer's certificate (chain) is.
    pub x5u: String,
}

/// `orig` (RFC 8225 §5.2.1): the calling party, a telephone number here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Orig {
    /// The canonical calling number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tn: Option<String>,
    /// A URI identity (not used by SHAKEN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

/// `dest` (RFC 8225 §5.2.1): the called parties.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dest {
    /// Canonical called numbers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tn: Vec<String>,
    /// URI identities (not used by SHAKEN).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uri: Vec<String>,
}

/// The PASSporT claims with the SHAKEN ones, in lexicographic order
/// (RFC 8225 §9). `attest` and `origid` are absent in a base PASSporT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// SHAKEN attestation level, `A`/`B`/`C`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attest: Option<String>,
    /// Called parties.
    pub dest: Dest,
    /// Issued-at, seconds since the Unix epoch.
    pub iat: u64,
    /// Calling party.
    pub orig: Orig,
    /// SHAKEN origination identifier, a UUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origid: Option<String>,
}

/// Why a compact JWS could not be decoded into a PASSporT.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum JwsError {
    /// Longer than [`MAX_JWS_LEN`].
    #[error("PASSporT is {0} bytes, more than the {MAX_JWS_LEN} accepted")]
    TooLong(usize),
    /// Not three dot-separated parts.
    #[error("PASSporT is not a compact JWS (header.payload.signature): it has {0} part(s)")]
    Parts(usize),
    /// The payload is empty: RFC 8224 §7's compact form, whose claims are
    /// rebuilt from the SIP request; SHAKEN sends the full form.
    #[error(
        "PASSporT has an empty payload (RFC 8224 compact form); only the full form SHAKEN uses is supported"
    )]
    CompactForm,
    /// A part is not base64url.
    #[error("PASSporT {part} is not base64url: {source}")]
    Base64 {
        /// `header`, `payload` or `signature`.
        part: &'static str,
        /// The decoder's complaint.
        source: base64::DecodeError,
    },
    /// A part is not the JSON object it must be.
    #[error("PASSporT {part} is not a valid JSON {part} object: {source}")]
    Json {
        /// `header` or `payload`.
        part: &'static str,
        /// The parser's complaint.
        source: serde_json::Error,
    },
    /// An ES256 signature is 64 bytes (R ‖ S, RFC 7518 §3.4).
    #[error("PASSporT signature is {0} bytes; an ES256 signature is 64 (R || S)")]
    SignatureLength(usize),
}

/// A decoded (not yet verified) PASSporT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passport {
    /// The JOSE header.
    pub header: Header,
    /// The claims.
    pub claims: Claims,
    /// `BASE64URL(header) "." BASE64URL(payload)`, the bytes that were signed.
    pub signing_input: String,
    /// The raw R ‖ S signature.
    pub signature: Vec<u8>,
}

impl Passport {
    /// Decodes a compact JWS (RFC 7515 §7.1) into its header, claims and
    /// signature, without checking the signature.
    pub fn decode(jws: &str) -> Result<Self, JwsError> {
        if jws.len() > MAX_JWS_LEN {
            return Err(JwsError::TooLong(jws.len()));
        }
        let parts: Vec<&str> = jws.split('.').collect();
        let [header_b64, payload_b64, signature_b64] = parts[..] else {
            return Err(JwsError::Parts(parts.len()));
        };
        if payload_b64.is_empty() {
            return Err(JwsError::CompactForm);
        }
        let decode = |part: &'static str, text: &str| {
            B64.decode(text)
                .map_err(|source| JwsError::Base64 { part, source })
        };
        let header_json = decode("header", header_b64)?;
        let payload_json = decode("payload", payload_b64)?;
        let signature = decode("signature", signature_b64)?;
        let header: Header =
            serde_json::from_slice(&header_json).map_err(|source| JwsError::Json {
                part: "header",
                source,
            })?;
        let claims: Claims =
            serde_json::from_slice(&payload_json).map_err(|source| JwsError::Json {
                part: "payload",
                source,
            })?;
        if signature.len() != 64 {
            return Err(JwsError::SignatureLength(signature.len()));
        }
        Ok(Passport {
            header,
            claims,
            signing_input: format!("{header_b64}.{payload_b64}"),
            signature,
        })
    }
}

/// `BASE64URL(json(header)) "." BASE64URL(json(claims))`, the JWS signing
/// input (RFC 7515 §5.1), with the canonical JSON of RFC 8225 §9.
pub fn signing_input(header: &Header, claims: &Claims) -> String {
    // Infallible: serde_json fails only on maps with non-string keys and on
    // failing Serialize impls, and these structs hold strings and integers.
    let header_json = serde_json::to_vec(header).unwrap_or_default();
    let claims_json = serde_json::to_vec(claims).unwrap_or_default();
    format!("{}.{}", B64.encode(header_json), B64.encode(claims_json))
}

/// base64url (no padding) of `bytes`, for the signature part.
pub(crate) fn b64url(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8225 Appendix A's header and claims, as base64url.
    const RFC8225_HEADER: &str = "eyJhbGciOiJFUzI1NiIsInR5cCI6InBhc3Nwb3J0IiwieDV1IjoiaHR0cHM6Ly9jZXJ0LmV4YW1wbGUub3JnL3Bhc3Nwb3J0LmNlciJ9";
    const RFC8225_PAYLOAD: &str = "eyJkZXN0Ijp7InVyaSI6WyJzaXA6YWxpY2VAZXhhbXBsZS5jb20iXX0sImlhdCI6MTQ3MTM3NTQxOCwib3JpZyI6eyJ0biI6IjEyMTU1NTUxMjEyIn19";

    #[test]
    fn rfc8225_appendix_a_serializes_canonically() {
        let header = Header {
            alg: ALG_ES256.into(),
            ppt: None,
            typ: Some(TYP_PASSPORT.into()),
            x5u: "https://cert.example.org/passport.cer".into(),
        };
        let claims = Claims {
            attest: None,
            dest: Dest {
                tn: vec![],
                uri: vec!["sip:alice@example.com".into()],
            },
            iat: 1471375418,
            orig: Orig {
                tn: Some("12155551212".into()),
                uri: None,
            },
            origid: None,
        };
        assert_eq!(
            signing_input(&header, &claims),
            format!("{RFC8225_HEADER}.{RFC8225_PAYLOAD}")
        );
    }

    #[test]
    fn rfc8588_example_serializes_canonically() {
        // RFC 8588 §6's example PASSporT, header then claims.
        let header = Header {
            alg: ALG_ES256.into(),
            ppt: Some(PPT_SHAKEN.into()),
            typ: Some(TYP_PASSPORT.into()),
            x5u: "https://cert.example.org/passport.pem".into(),
        };
        let claims = Claims {
            attest: Some("A".into()),
            dest: Dest {
                tn: vec!["12125551213".into()],
                uri: vec![],
            },
            iat: 1443208345,
            orig: Orig {
                tn: Some("12155551212".into()),
                uri: None,
            },
            origid: Some("123e4567-e89b-12d3-a456-426655440000".into()),
        };
        let input = signing_input(&header, &claims);
        let (h, p) = input.split_once('.').unwrap();
        assert_eq!(
            String::from_utf8(B64.decode(h).unwrap()).unwrap(),
            r#"{"alg":"ES256","ppt":"shaken","typ":"passport","x5u":"https://cert.example.org/passport.pem"}"#
        );
        assert_eq!(
            String::from_utf8(B64.decode(p).unwrap()).unwrap(),
            r#"{"attest":"A","dest":{"tn":["12125551213"]},"iat":1443208345,"orig":{"tn":"12155551212"},"origid":"123e4567-e89b-12d3-a456-426655440000"}"#
        );
    }

    #[test]
    fn decodes_rfc8225_example_with_a_dummy_signature() {
        let sig = b64url(&[7u8; 64]);
        let p = Passport::decode(&format!("{RFC8225_HEADER}.{RFC8225_PAYLOAD}.{sig}")).unwrap();
        assert_eq!(p.header.alg, "ES256");
        assert_eq!(p.header.typ.as_deref(), Some("passport"));
        assert_eq!(p.header.ppt, None);
        assert_eq!(p.header.x5u, "https://cert.example.org/passport.cer");
        assert_eq!(p.claims.orig.tn.as_deref(), Some("12155551212"));
        assert_eq!(p.claims.dest.uri, vec!["sip:alice@example.com"]);
        assert_eq!(p.claims.iat, 1471375418);
        assert_eq!(p.signature, vec![7u8; 64]);
        assert_eq!(
            p.signing_input,
            format!("{RFC8225_HEADER}.{RFC8225_PAYLOAD}")
        );
        // Padded base64url is accepted too.
        let padded = base64::engine::general_purpose::URL_SAFE.encode([7u8; 64]);
        assert!(Passport::decode(&format!("{RFC8225_HEADER}.{RFC8225_PAYLOAD}.{padded}")).is_ok());
    }

    #[test]
    fn malformed_tokens_are_typed_errors() {
        let sig = b64url(&[7u8; 64]);
        assert!(matches!(Passport::decode("a.b"), Err(JwsError::Parts(2))));
        assert!(matches!(
            Passport::decode("a.b.c.d"),
            Err(JwsError::Parts(4))
        ));
        assert!(matches!(
            Passport::decode(&format!("{RFC8225_HEADER}..{sig}")),
            Err(JwsError::CompactForm)
        ));
        assert!(matches!(
            Passport::decode(&format!("{RFC8225_HEADER}.!!.{sig}")),
            Err(JwsError::Base64 {
                part: "payload",
                ..
            })
        ));
        let not_json = b64url(b"[1,2]");
        assert!(matches!(
            Passport::decode(&format!("{not_json}.{RFC8225_PAYLOAD}.{sig}")),
            Err(JwsError::Json { part: "header", .. })
        ));
        assert!(matches!(
            Passport::decode(&format!(
                "{RFC8225_HEADER}.{RFC8225_PAYLOAD}.{}",
                b64url(&[1; 63])
            )),
            Err(JwsError::SignatureLength(63))
        ));
        assert!(matches!(
            Passport::decode(&"a".repeat(MAX_JWS_LEN + 1)),
            Err(JwsError::TooLong(_))
        ));
    }

    #[test]
    fn attestation_round_trips() {
        for a in [Attestation::A, Attestation::B, Attestation::C] {
            assert_eq!(a.as_str().parse::<Attestation>().unwrap(), a);
        }
        assert!("D".parse::<Attestation>().is_err());
        assert!("a".parse::<Attestation>().is_err());
    }
}
