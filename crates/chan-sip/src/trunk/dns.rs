//! Where a trunk's requests go (RFC 3263 §4.2 without NAPTR): an address
//! as given; a host name with a port, its A/AAAA records; a host name
//! without one, its SRV records for the trunk's transport (`_sip._udp`,
//! `_sip._tcp`, RFC 2782: lowest priority first, then highest weight),
//! each target's A/AAAA records in turn, and when it has none, the name's
//! A/AAAA records at port 5060. Lookups go through hickory-resolver, with
//! `/etc/resolv.conf` or the name servers `sip.nameservers` gives.

use std::net::{IpAddr, SocketAddr};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use sip_net::Transport;

/// The default SIP port (RFC 3261 §19.1.2).
const SIP_PORT: u16 = 5060;

/// A DNS resolver for trunk hosts.
#[derive(Clone)]
pub struct Dns {
    resolver: TokioResolver,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dns").finish_non_exhaustive()
    }
}

impl Dns {
    /// The system's resolver configuration (`/etc/resolv.conf`).
    pub fn system() -> Result<Dns, String> {
        let builder = TokioResolver::builder_tokio()
            .map_err(|e| format!("cannot read the system's DNS configuration: {e}"))?;
        let resolver = builder
            .build()
            .map_err(|e| format!("cannot start the DNS resolver: {e}"))?;
        Ok(Dns { resolver })
    }

    /// Asking only `servers` (UDP, then TCP for truncated answers).
    pub fn with_servers(servers: &[SocketAddr]) -> Result<Dns, String> {
        let name_servers = servers
            .iter()
            .map(|s| {
                let mut udp = ConnectionConfig::udp();
                udp.port = s.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = s.port();
                NameServerConfig::new(s.ip(), true, vec![udp, tcp])
            })
            .collect();
        let config = ResolverConfig::from_name_servers(name_servers);
        let resolver = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .build()
            .map_err(|e| format!("cannot start the DNS resolver: {e}"))?;
        Ok(Dns { resolver })
    }

    /// Where to send to `host` (`port` when the config gives one) over
    /// `transport`.
    pub async fn locate(
        &self,
        host: &str,
        port: Option<u16>,
        transport: Transport,
    ) -> Result<SocketAddr, String> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port.unwrap_or(SIP_PORT)));
        }
        let fqdn = format!("{}.", host.trim_end_matches('.'));
        if let Some(port) = port {
            return self.address(&fqdn, port).await;
        }
        let service = match transport {
            Transport::Tcp => "_sip._tcp",
            _ => "_sip._udp",
        };
        let mut targets: Vec<(u16, u16, String, u16)> =
            match self.resolver.srv_lookup(format!("{service}.{fqdn}")).await {
                Ok(lookup) => lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::SRV(srv) => {
                            Some((srv.priority, srv.weight, srv.target.to_ascii(), srv.port))
                        }
                        _ => None,
                    })
                    .collect(),
                Err(e) => {
                    tracing::debug!(host, error = %e, "no SRV records; A/AAAA next");
                    Vec::new()
                }
            };
        // RFC 2782: a target of "." says the service is not offered there.
        targets.retain(|(_, _, target, _)| target != ".");
        targets.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let mut why = Vec::new();
        for (_, _, target, port) in &targets {
            match self.address(target, *port).await {
                Ok(addr) => return Ok(addr),
                Err(e) => why.push(e),
            }
        }
        if !targets.is_empty() {
            return Err(format!(
                "no SRV target of {service}.{host} has an address ({})",
                why.join("; ")
            ));
        }
        self.address(&fqdn, SIP_PORT).await
    }

    /// The first A/AAAA address of `name`, at `port`.
    async fn address(&self, name: &str, port: u16) -> Result<SocketAddr, String> {
        let shown = name.trim_end_matches('.');
        let ips = self
            .resolver
            .lookup_ip(name)
            .await
            .map_err(|e| format!("cannot resolve {shown}: {e}"))?;
        ips.iter()
            .next()
            .map(|ip| SocketAddr::new(ip, port))
            .ok_or_else(|| format!("{shown} has no address"))
    }
}
