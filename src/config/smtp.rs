//! `[smtp]`: the relay voicemail emails go through (RFC 5321 submission,
//! with STARTTLS per RFC 3207 or implicit TLS per RFC 8314), and the
//! `[[extension]]` key `email` that says where an extension's go.

use serde::Deserialize;
use toml::Spanned;

use super::{Checker, ConfigError, Location};

/// `[smtp]`, checked: the relay exactly as the mailer takes it (its
/// `Debug` leaves the password out).
pub type SmtpConfig = mailer::Relay;

/// Default of `smtp.tls`.
pub const DEFAULT_SMTP_TLS: mailer::Tls = mailer::Tls::StartTls;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSmtp {
    host: Option<Spanned<String>>,
    port: Option<Spanned<i64>>,
    tls: Option<Spanned<String>>,
    username: Option<Spanned<String>>,
    password: Option<Spanned<String>>,
    from: Option<Spanned<String>>,
}

impl Checker<'_> {
    /// Checks `[smtp]` (`None` when the section is absent); a password sent
    /// in the clear to another host adds a line to `warnings`.
    pub(super) fn smtp(
        &self,
        raw: Option<&Spanned<RawSmtp>>,
        warnings: &mut Vec<String>,
    ) -> Result<Option<SmtpConfig>, ConfigError> {
        let Some(section) = raw else {
            return Ok(None);
        };
        let raw = section.get_ref();
        let host = match &raw.host {
            Some(v) => {
                let host = self.text_value("smtp.host", v)?;
                if host.contains(char::is_whitespace) {
                    return Err(self.error(
                        v.span(),
                        format!(
                            "smtp.host: {host:?} must be a host name or IP address, without spaces"
                        ),
                    ));
                }
                host
            }
            None => {
                return Err(self.error(
                    section.span(),
                    "smtp.host: missing; name the relay voicemail emails go through, e.g. host = \"mail.example.com\" (or remove [smtp])".to_owned(),
                ));
            }
        };
        let tls = match &raw.tls {
            Some(v) => mailer::Tls::from_name(v.get_ref().trim()).ok_or_else(|| {
                self.error(
                    v.span(),
                    format!(
                        "smtp.tls: {:?} is not one of \"none\", \"starttls\" (STARTTLS, usually port 587) or \"tls\" (TLS from the start, usually port 465)",
                        v.get_ref()
                    ),
                )
            })?,
            None => DEFAULT_SMTP_TLS,
        };
        let port = match &raw.port {
            Some(v) => u16::try_from(*v.get_ref())
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| {
                    self.error(
                        v.span(),
                        format!(
                            "smtp.port: {} is not a TCP port (1-65535); leave it out for {} with tls = {:?}",
                            v.get_ref(),
                            tls.default_port(),
                            tls.name()
                        ),
                    )
                })?,
            None => tls.default_port(),
        };
        let credentials = match (&raw.username, &raw.password) {
            (Some(user), Some(password)) => {
                let user = self.text_value("smtp.username", user)?;
                let secret = password.get_ref();
                if secret.is_empty() || secret.chars().any(char::is_control) {
                    return Err(self.error(
                        password.span(),
                        "smtp.password: must not be empty or contain control characters (tabs, line breaks)".to_owned(),
                    ));
                }
                Some((user, secret.clone()))
            }
            (Some(user), None) => {
                return Err(self.error(
                    user.span(),
                    "smtp.username: set without smtp.password; give both, or neither for a relay that takes mail without AUTH".to_owned(),
                ));
            }
            (None, Some(password)) => {
                return Err(self.error(
                    password.span(),
                    "smtp.password: set without smtp.username; give both, or neither for a relay that takes mail without AUTH".to_owned(),
                ));
            }
            (None, None) => None,
        };
        let from = match &raw.from {
            Some(v) => v.get_ref().trim().parse::<mailer::Mailbox>().map_err(|_| {
                self.error(
                    v.span(),
                    format!(
                        "smtp.from: {:?} is not an email address; write e.g. \"pbx@example.com\" or \"PBX <pbx@example.com>\"",
                        v.get_ref()
                    ),
                )
            })?,
            None => {
                return Err(self.error(
                    section.span(),
                    "smtp.from: missing; give the sender of voicemail emails, e.g. from = \"pbx@example.com\"".to_owned(),
                ));
            }
        };
        if let (Some(password), mailer::Tls::None) = (&raw.password, tls)
            && !is_loopback(&host)
        {
            warnings.push(format!(
                "config {}: smtp.password is sent in the clear to {host} (tls = \"none\"); use tls = \"starttls\" or \"tls\" unless the relay is on a trusted network",
                Location::at(self.source, self.text, Some(password.span()))
            ));
        }
        Ok(Some(SmtpConfig {
            host,
            port,
            tls,
            credentials,
            from,
        }))
    }

    /// An `[[extension]]`'s `email`: one address (`alice@example.com`).
    pub(super) fn email(&self, id: &str, v: &Spanned<String>) -> Result<String, ConfigError> {
        let text = v.get_ref().trim();
        text.parse::<mailer::Address>().map_err(|_| {
            self.error(
                v.span(),
                format!(
                    "extension {id}: email {:?} is not an email address; write one address such as \"alice@example.com\"",
                    v.get_ref()
                ),
            )
        })?;
        Ok(text.to_owned())
    }

    /// A warning for each extension `email` when there is no `[smtp]` to send through.
    pub(super) fn emails_without_smtp(
        &self,
        emails: impl Iterator<Item = (String, std::ops::Range<usize>)>,
        warnings: &mut Vec<String>,
    ) {
        for (id, span) in emails {
            warnings.push(format!(
                "config {}: extension {id}: email is set but there is no [smtp] section, so no voicemail email is sent; add [smtp] with host and from",
                Location::at(self.source, self.text, Some(span))
            ));
        }
    }
}

/// Whether `host` names this machine (`localhost`, 127.0.0.0/8, ::1).
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::super::{Config, ConfigSource};

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(ConfigSource::File("t.toml".into()), text).map_err(|e| e.to_string())
    }

    const EXT: &str = "[[extension]]\nid = \"1001\"\npassword = \"Zq8#pL2v!mR4\"\n";

    #[test]
    fn every_smtp_key_is_read() {
        let c = parse(
            "[smtp]\nhost = \"mail.example.com\"\nport = 2525\ntls = \"tls\"\nusername = \"pbx\"\npassword = \"pw\"\nfrom = \"PBX <pbx@example.com>\"\n",
        )
        .unwrap();
        let s = c.smtp.unwrap();
        assert_eq!(s.host, "mail.example.com");
        assert_eq!(s.port, 2525);
        assert_eq!(s.tls, mailer::Tls::Tls);
        assert_eq!(s.credentials, Some(("pbx".into(), "pw".into())));
        assert_eq!(s.from.email.to_string(), "pbx@example.com");
        assert!(!format!("{s:?}").contains("pw\""), "no password in Debug");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn defaults_follow_tls() {
        let c = parse("[smtp]\nhost = \"mail.example.com\"\nfrom = \"pbx@example.com\"\n").unwrap();
        let s = c.smtp.unwrap();
        assert_eq!((s.tls, s.port), (mailer::Tls::StartTls, 587));
        assert_eq!(s.credentials, None);
        let c = parse("[smtp]\nhost = \"127.0.0.1\"\ntls = \"none\"\nfrom = \"pbx@example.com\"\n")
            .unwrap();
        assert_eq!(c.smtp.unwrap().port, 25);
        assert!(parse("").unwrap().smtp.is_none());
    }

    #[test]
    fn bad_values_name_the_line() {
        for (text, line, needle) in [
            (
                "[smtp]\nhost = \"m\"\nfrom = \"p@x.example\"\ntls = \"ssl\"\n",
                4,
                "smtp.tls: \"ssl\" is not one of \"none\", \"starttls\"",
            ),
            (
                "[smtp]\nhost = \"m\"\nfrom = \"p@x.example\"\nport = 70000\n",
                4,
                "smtp.port: 70000 is not a TCP port",
            ),
            (
                "[smtp]\nhost = \"m\"\nfrom = \"not an address\"\n",
                3,
                "smtp.from: \"not an address\" is not an email address",
            ),
            (
                "[smtp]\nhost = \"m\"\nfrom = \"p@x.example\"\nusername = \"u\"\n",
                4,
                "smtp.username: set without smtp.password",
            ),
            (
                "[smtp]\nhost = \"m\"\nfrom = \"p@x.example\"\nrelay = \"x\"\n",
                4,
                "unknown field `relay`",
            ),
            // A missing key is named at its section.
            (
                "shutdown_grace = \"1s\"\n[smtp]\nfrom = \"p@x.example\"\n",
                2,
                "smtp.host: missing",
            ),
            ("[smtp]\nhost = \"m\"\n", 1, "smtp.from: missing"),
            (
                &format!("{EXT}email = \"alice at example\"\n"),
                4,
                "extension 1001: email \"alice at example\" is not an email address",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(needle), "{text:?}: {e}");
            assert!(
                e.starts_with(&format!("config t.toml:{line}:")),
                "{text:?}: {e}"
            );
        }
    }

    #[test]
    fn extension_email_is_read_and_wants_smtp() {
        let c = parse(&format!("{EXT}email = \"alice@example.com\"\n")).unwrap();
        assert_eq!(c.extensions[0].email.as_deref(), Some("alice@example.com"));
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(
            c.warnings[0].starts_with("config t.toml:4:"),
            "{}",
            c.warnings[0]
        );
        assert!(
            c.warnings[0].contains("no [smtp] section"),
            "{}",
            c.warnings[0]
        );
        let c = parse(&format!(
            "{EXT}email = \"alice@example.com\"\n[smtp]\nhost = \"m\"\nfrom = \"p@x.example\"\n"
        ))
        .unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn a_clear_text_password_to_another_host_is_a_warning() {
        let c = parse(
            "[smtp]\nhost = \"mail.example.com\"\ntls = \"none\"\nusername = \"u\"\npassword = \"p\"\nfrom = \"p@x.example\"\n",
        )
        .unwrap();
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("in the clear"), "{}", c.warnings[0]);
        let c = parse(
            "[smtp]\nhost = \"localhost\"\ntls = \"none\"\nusername = \"u\"\npassword = \"p\"\nfrom = \"p@x.example\"\n",
        )
        .unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }
}
