//! STIR/SHAKEN on trunk calls (RFC 8224, RFC 8225, RFC 8588) around the
//! `identity` crate: [`StirKey`] signs the `Identity` header of INVITEs to
//! a trunk with `stir_shaken = { key, x5u }`, [`StirVerify`] checks the
//! `Identity` of INVITEs from trunks (x5u fetched over HTTPS with a cache
//! and a short timeout, the chain against `security.stir_trust_anchors`)
//! and gives the dialplan its `call.identity` and the phone its `verstat`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use identity::{
    Attestation, CertFetcher, HttpsFetcher, PassportRequest, Signer, TrustAnchors, Verifier,
};

/// A trunk's signing key and certificate URL (`stir_shaken`).
#[derive(Clone)]
pub struct StirKey {
    signer: Arc<Signer>,
    /// The key's PEM text, kept to tell a changed key on reload.
    pem: Arc<str>,
}

impl StirKey {
    /// The key in `pem` (PKCS#8 or SEC1, P-256), published at `x5u`.
    pub fn from_pem(pem: &str, x5u: &str) -> Result<StirKey, identity::SignError> {
        Ok(StirKey {
            signer: Arc::new(Signer::from_pem(pem, x5u)?),
            pem: Arc::from(pem),
        })
    }

    /// The certificate URL written into `x5u` and `info`.
    pub fn x5u(&self) -> &str {
        self.signer.x5u()
    }

    /// The `Identity` header value for a call from `orig` to `dest` with
    /// `attest`, issued now; `None` (logged) when a number is not one.
    pub(crate) fn sign(&self, orig: &str, dest: &str, attest: Attestation) -> Option<String> {
        let iat = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let request = PassportRequest {
            orig: orig.to_owned(),
            dest: vec![dest.to_owned()],
            attest,
            origid: None,
            iat,
        };
        match self.signer.sign(&request) {
            Ok(signed) => Some(signed.identity),
            Err(e) => {
                tracing::info!(orig, dest, error = %e, "STIR/SHAKEN: not signed");
                None
            }
        }
    }
}

impl PartialEq for StirKey {
    fn eq(&self, other: &Self) -> bool {
        self.pem == other.pem && self.x5u() == other.x5u()
    }
}

impl Eq for StirKey {}

impl std::fmt::Debug for StirKey {
    /// The URL, never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StirKey")
            .field("x5u", &self.x5u())
            .finish_non_exhaustive()
    }
}

/// Verifies the `Identity` of calls from trunks.
pub struct StirVerify {
    verifier: Verifier,
    fetcher: Box<dyn CertFetcher>,
}

impl std::fmt::Debug for StirVerify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StirVerify").finish_non_exhaustive()
    }
}

impl StirVerify {
    /// Trusting the CA certificates in `anchors` (PEM) for PASSporT
    /// signers, `iat` within `freshness` of now; the HTTPS fetch of `x5u`
    /// trusts `https_ca` (PEM) when given, else the public web roots.
    pub fn new(
        anchors: &[u8],
        https_ca: Option<&[u8]>,
        freshness: Duration,
    ) -> Result<StirVerify, String> {
        let anchors = TrustAnchors::from_pem(anchors).map_err(|e| e.to_string())?;
        let fetcher = match https_ca {
            Some(pem) => HttpsFetcher::with_roots_pem(pem),
            None => HttpsFetcher::new(),
        }
        .map_err(|e| e.to_string())?;
        Ok(StirVerify {
            verifier: Verifier::new(anchors).with_freshness(freshness),
            fetcher: Box::new(fetcher),
        })
    }

    /// Checks `identity` (the header value, if any) against the `from`
    /// and `to` numbers (URI user parts): the result for the dialplan and
    /// the `verstat` value for the phone (`tn-validation-passed`,
    /// `tn-validation-failed`, `no-tn-validation`).
    pub(crate) async fn check(
        &self,
        identity: Option<&str>,
        from: &str,
        to: &str,
    ) -> (pbx::CallIdentity, &'static str) {
        let v = self
            .verifier
            .verify(identity, from, to, SystemTime::now(), self.fetcher.as_ref())
            .await;
        let result = pbx::CallIdentity {
            verified: v.verified,
            attest: v.attest.map(|a| a.as_str().to_owned()),
            // "438 Invalid Identity Header: orig ... does not match ...".
            reason: v.reason.is_some().then(|| v.to_string()),
        };
        (result, v.verstat())
    }
}
