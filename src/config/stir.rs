//! The `[security]` keys of STIR/SHAKEN verification (RFC 8224, RFC 8588)
//! on calls from trunks: `stir_trust_anchors` (the CA certificates a
//! PASSporT's signer must chain to; without it no call is verified),
//! `stir_https_ca` (whom the HTTPS fetch of `x5u` trusts instead of the
//! public web roots) and `stir_freshness` (how old `iat` may be).

use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::registrar::RawSecurity;
use super::{Checker, ConfigError};

/// `iat` freshness when `stir_freshness` is not set (RFC 8224 §6.2.2's 60 s).
pub const DEFAULT_STIR_FRESHNESS: Duration = Duration::from_secs(60);

/// STIR/SHAKEN verification of inbound trunk calls, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StirConfig {
    /// `stir_trust_anchors`: the files, relative to the config file.
    pub trust_anchors: Vec<PathBuf>,
    /// Their certificates, PEM, one after the other.
    pub anchors_pem: Vec<u8>,
    /// `stir_https_ca`: the files (empty: the public web roots).
    pub https_ca: Vec<PathBuf>,
    /// Their certificates, PEM (`None`: the public web roots).
    pub https_ca_pem: Option<Vec<u8>>,
    /// `stir_freshness`: how far `iat` may be from now.
    pub freshness: Duration,
}

impl StirConfig {
    /// The SIP channel's verifier.
    pub fn verifier(&self) -> Result<chan_sip::StirVerify, String> {
        chan_sip::StirVerify::new(
            &self.anchors_pem,
            self.https_ca_pem.as_deref(),
            self.freshness,
        )
    }
}

impl Checker<'_> {
    /// `None` when `stir_trust_anchors` is not set (the other two keys
    /// then have nothing to do, which is an error).
    pub(super) fn stir(&self, raw: &RawSecurity) -> Result<Option<StirConfig>, ConfigError> {
        let Some(anchors) = &raw.stir_trust_anchors else {
            let lone = raw
                .stir_https_ca
                .as_ref()
                .map(|v| ("stir_https_ca", v.span()))
                .or_else(|| {
                    raw.stir_freshness
                        .as_ref()
                        .map(|v| ("stir_freshness", v.span()))
                });
            if let Some((key, span)) = lone {
                return Err(self.error(
                    span,
                    format!(
                        "security.{key}: set only with security.stir_trust_anchors, which turns STIR/SHAKEN verification on \
                         (e.g. stir_trust_anchors = [\"sti-ca.pem\"])"
                    ),
                ));
            }
            return Ok(None);
        };
        if anchors.get_ref().is_empty() {
            return Err(self.error(
                anchors.span(),
                "security.stir_trust_anchors: empty; name the STI certification authorities' certificates (PEM), \
                 e.g. [\"sti-ca.pem\"], or leave the key out to verify nothing"
                    .to_owned(),
            ));
        }
        let mut trust_anchors = Vec::new();
        let mut anchors_pem = Vec::new();
        for item in anchors.get_ref() {
            let (path, pem) = self.pem_file("security.stir_trust_anchors", item)?;
            identity::TrustAnchors::from_pem(&pem).map_err(|e| {
                self.error(
                    item.span(),
                    format!(
                        "security.stir_trust_anchors: {}: {e}; give CA certificates in PEM",
                        path.display()
                    ),
                )
            })?;
            anchors_pem.extend_from_slice(&pem);
            anchors_pem.push(b'\n');
            trust_anchors.push(path);
        }
        let mut https_ca = Vec::new();
        let mut https_ca_pem = None;
        if let Some(list) = &raw.stir_https_ca {
            let mut all = Vec::new();
            for item in list.get_ref() {
                let (path, pem) = self.pem_file("security.stir_https_ca", item)?;
                identity::HttpsFetcher::with_roots_pem(&pem).map_err(|e| {
                    self.error(
                        item.span(),
                        format!(
                            "security.stir_https_ca: {}: {e}; give the CA certificates of the certificate server's HTTPS in PEM",
                            path.display()
                        ),
                    )
                })?;
                all.extend_from_slice(&pem);
                all.push(b'\n');
                https_ca.push(path);
            }
            if https_ca.is_empty() {
                return Err(self.error(
                    list.span(),
                    "security.stir_https_ca: empty; leave the key out to trust the public web roots".to_owned(),
                ));
            }
            https_ca_pem = Some(all);
        }
        let freshness = match &raw.stir_freshness {
            Some(v) => self.duration("security.stir_freshness", v, false)?,
            None => DEFAULT_STIR_FRESHNESS,
        };
        Ok(Some(StirConfig {
            trust_anchors,
            anchors_pem,
            https_ca,
            https_ca_pem,
            freshness,
        }))
    }

    /// A PEM file named in `key`, relative to the config file.
    fn pem_file(
        &self,
        key: &str,
        item: &Spanned<String>,
    ) -> Result<(PathBuf, Vec<u8>), ConfigError> {
        let path = super::dialplan::resolve(self.source, item.get_ref());
        let pem = std::fs::read(&path).map_err(|e| {
            self.error(
                item.span(),
                format!("{key}: cannot read {}: {e}", path.display()),
            )
        })?;
        Ok((path, pem))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Config, ConfigSource};

    fn parse_in(dir: &std::path::Path, text: &str) -> Result<Config, String> {
        Config::parse(ConfigSource::File(dir.join("t.toml")), text).map_err(|e| e.to_string())
    }

    fn ca_pem() -> String {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("CA").pem()
    }

    #[test]
    fn trust_anchors_and_the_https_ca_are_read_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("sti.pem"), ca_pem()).expect("write");
        std::fs::write(dir.path().join("web.pem"), ca_pem()).expect("write");
        std::fs::write(dir.path().join("junk.pem"), "not a certificate\n").expect("write");
        let config = parse_in(dir.path(), "").expect("no keys");
        assert!(config.stir.is_none());
        let config = parse_in(
            dir.path(),
            "[security]\nstir_trust_anchors = [\"sti.pem\"]\nstir_https_ca = [\"web.pem\"]\nstir_freshness = \"90s\"\n",
        )
        .expect("parses");
        let stir = config.stir.expect("verification on");
        assert_eq!(stir.trust_anchors, vec![dir.path().join("sti.pem")]);
        assert!(stir.https_ca_pem.is_some());
        assert_eq!(stir.freshness, std::time::Duration::from_secs(90));
        assert!(stir.verifier().is_ok());
        let stir = parse_in(
            dir.path(),
            "[security]\nstir_trust_anchors = [\"sti.pem\"]\n",
        )
        .expect("parses")
        .stir
        .expect("on");
        assert_eq!(stir.freshness, super::DEFAULT_STIR_FRESHNESS);
        assert!(stir.https_ca_pem.is_none());
        for (text, want) in [
            (
                "[security]\nstir_trust_anchors = [\"missing.pem\"]\n",
                "t.toml:2:23: security.stir_trust_anchors: cannot read",
            ),
            (
                "[security]\nstir_trust_anchors = [\"junk.pem\"]\n",
                "t.toml:2:23: security.stir_trust_anchors:",
            ),
            (
                "[security]\nstir_trust_anchors = []\n",
                "t.toml:2:22: security.stir_trust_anchors: empty",
            ),
            (
                "[security]\nstir_https_ca = [\"web.pem\"]\n",
                "t.toml:2:17: security.stir_https_ca: set only with security.stir_trust_anchors",
            ),
            (
                "[security]\nstir_trust_anchors = [\"sti.pem\"]\nstir_https_ca = [\"junk.pem\"]\n",
                "t.toml:3:18: security.stir_https_ca:",
            ),
            (
                "[security]\nstir_trust_anchors = [\"sti.pem\"]\nstir_freshness = \"soon\"\n",
                "t.toml:3:18: security.stir_freshness: \"soon\" is not a duration",
            ),
            (
                "[security]\nstir_trust_anchor = [\"sti.pem\"]\n",
                "stir_trust_anchor",
            ),
        ] {
            let err = parse_in(dir.path(), text).expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
