//! The `[security]` keys the SIP endpoint enforces before any request
//! reaches the registrar or a call: TCP connection limits and the message
//! deadline, the transaction table's cap and the per-source UDP token
//! bucket (issue 11, items 7 and 8); and the active calls' cap, which the
//! SIP channel enforces on each new INVITE.
//!
//! Their raw values sit in `[security]` with the registrar's keys (one
//! `RawSecurity`, unknown keys are errors); they are checked here.

use std::time::Duration;

use sip_net::EndpointConfig;
use toml::Spanned;

use super::registrar::RawSecurity;
use super::{Checker, ConfigError, SipConfig};

/// Most of `sip.max_tcp_connections` that `tcp_outbound_reserved` takes
/// by default: a quarter, and at most this many.
const DEFAULT_OUTBOUND_RESERVED: usize = 128;

/// The endpoint's defences, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetSecurityConfig {
    /// `tcp_max_per_ip`: TCP connections accepted from one IP address.
    pub tcp_max_per_ip: usize,
    /// `tcp_message_timeout`: a message begun on TCP must be complete within this.
    pub tcp_message_timeout: Duration,
    /// `tcp_outbound_reserved`: connection slots only our own connections to phones may use.
    pub tcp_outbound_reserved: usize,
    /// `max_transactions`: live server transactions, past which new requests get 503.
    pub max_transactions: usize,
    /// `max_calls`: calls at once, past which new INVITEs get 503 (the SIP
    /// channel's cap, not the endpoint's: see `crate::server`).
    pub max_calls: usize,
    /// `udp_rate`: datagrams a second per source (0: no limit).
    pub udp_rate: u32,
    /// `udp_burst`: datagrams a source may send at once.
    pub udp_burst: u32,
}

impl NetSecurityConfig {
    /// Applies these limits to the endpoint's configuration.
    pub fn apply(&self, config: &mut EndpointConfig) {
        config.tcp_max_per_ip = self.tcp_max_per_ip;
        config.tcp_message_timeout = self.tcp_message_timeout;
        config.tcp_outbound_reserved = self.tcp_outbound_reserved;
        config.max_transactions = self.max_transactions;
        config.udp_rate = self.udp_rate;
        config.udp_burst = self.udp_burst;
    }
}

impl Checker<'_> {
    /// Checks the endpoint's `[security]` keys; `sip` is the checked
    /// `[sip]` (the reserved slots must leave some for peers).
    pub(super) fn net_security(
        &self,
        raw: &RawSecurity,
        sip: &SipConfig,
    ) -> Result<NetSecurityConfig, ConfigError> {
        let defaults = EndpointConfig::default();
        let positive = |key: &str, v: &Option<Spanned<usize>>, default: usize| match v {
            Some(v) if *v.get_ref() == 0 => Err(self.error(
                v.span(),
                format!("security.{key}: must be at least 1 (leave the key out for the default)"),
            )),
            Some(v) => Ok(*v.get_ref()),
            None => Ok(default),
        };
        let tcp_max_per_ip = positive(
            "tcp_max_per_ip",
            &raw.tcp_max_per_ip,
            defaults.tcp_max_per_ip,
        )?;
        let tcp_message_timeout = match &raw.tcp_message_timeout {
            Some(v) => self.duration("security.tcp_message_timeout", v, false)?,
            None => defaults.tcp_message_timeout,
        };
        let max = sip.max_tcp_connections;
        let tcp_outbound_reserved = match &raw.tcp_outbound_reserved {
            Some(v) if *v.get_ref() >= max => {
                return Err(self.error(
                    v.span(),
                    format!(
                        "security.tcp_outbound_reserved ({}) must be less than sip.max_tcp_connections ({max}), or no peer could connect to us",
                        v.get_ref()
                    ),
                ));
            }
            Some(v) => *v.get_ref(),
            None => (max / 4).min(DEFAULT_OUTBOUND_RESERVED),
        };
        let max_transactions = positive(
            "max_transactions",
            &raw.max_transactions,
            defaults.max_transactions,
        )?;
        let max_calls = positive(
            "max_calls",
            &raw.max_calls,
            chan_sip::ChanSipConfig::default().max_calls,
        )?;
        let udp_rate = raw
            .udp_rate
            .as_ref()
            .map_or(defaults.udp_rate, |v| *v.get_ref());
        let udp_burst = match &raw.udp_burst {
            Some(v) if *v.get_ref() == 0 => {
                return Err(self.error(
                    v.span(),
                    "security.udp_burst: must be at least 1 (to turn the limit off, set udp_rate = 0)"
                        .to_owned(),
                ));
            }
            Some(v) => *v.get_ref(),
            None => defaults.udp_burst,
        };
        Ok(NetSecurityConfig {
            tcp_max_per_ip,
            tcp_message_timeout,
            tcp_outbound_reserved,
            max_transactions,
            max_calls,
            udp_rate,
            udp_burst,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigSource};

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(ConfigSource::File("t.toml".into()), text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_leave_the_bench_unthrottled() {
        let c = parse("").unwrap();
        let e = c.endpoint_config();
        assert_eq!(e.tcp_max_per_ip, 128);
        assert_eq!(e.tcp_message_timeout, std::time::Duration::from_secs(20));
        assert_eq!(e.tcp_outbound_reserved, 128);
        assert_eq!(e.max_transactions, 1_000_000);
        assert_eq!(c.net_security.max_calls, 10_000);
        // bench/register.sh peaks at 40,000 messages/s from 127.0.0.1.
        assert!(e.udp_rate >= 100_000 && e.udp_burst >= 100_000);
    }

    #[test]
    fn every_key_is_read() {
        let c = parse(
            "[security]\ntcp_max_per_ip = 3\ntcp_message_timeout = \"2s\"\n\
             tcp_outbound_reserved = 10\nmax_transactions = 50\nmax_calls = 7\n\
             udp_rate = 20\nudp_burst = 40\n",
        )
        .unwrap();
        let e = c.endpoint_config();
        assert_eq!(e.tcp_max_per_ip, 3);
        assert_eq!(e.tcp_message_timeout, std::time::Duration::from_secs(2));
        assert_eq!(e.tcp_outbound_reserved, 10);
        assert_eq!(e.max_transactions, 50);
        assert_eq!(c.net_security.max_calls, 7);
        assert_eq!((e.udp_rate, e.udp_burst), (20, 40));
    }

    #[test]
    fn a_small_connection_cap_reserves_a_quarter() {
        let c = parse("[sip]\nmax_tcp_connections = 8\n").unwrap();
        assert_eq!(c.endpoint_config().tcp_outbound_reserved, 2);
    }

    #[test]
    fn bad_values_name_key_and_line() {
        for (text, needle) in [
            (
                "[security]\ntcp_max_per_ip = 0\n",
                "t.toml:2:18: security.tcp_max_per_ip: must be at least 1",
            ),
            (
                "[security]\ntcp_message_timeout = \"0s\"\n",
                "security.tcp_message_timeout: must be greater than zero",
            ),
            (
                "[sip]\nmax_tcp_connections = 10\n[security]\ntcp_outbound_reserved = 10\n",
                "t.toml:4:25: security.tcp_outbound_reserved (10) must be less than sip.max_tcp_connections (10)",
            ),
            (
                "[security]\nmax_transactions = 0\n",
                "security.max_transactions: must be at least 1",
            ),
            (
                "[security]\nmax_calls = 0\n",
                "t.toml:2:13: security.max_calls: must be at least 1",
            ),
            ("[security]\nmax_calls = -5\n", "max_calls"),
            ("[security]\nmax_calls = \"lots\"\n", "max_calls"),
            (
                "[security]\nudp_burst = 0\n",
                "security.udp_burst: must be at least 1",
            ),
            ("[security]\nudp_rate = -1\n", "udp_rate"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
