//! Where a trunk's requests go (RFC 3263 §4.2 without NAPTR): an address
//! as given; a host name with a port, its A/AAAA records; a host name
//! without one, its SRV records for the trunk's transport (`_sip._udp`,
//! `_sip._tcp`, RFC 2782: lowest priority first, within one priority a
//! random draw weighted by `weight`),
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
        let records: Vec<Srv> = match self.resolver.srv_lookup(format!("{service}.{fqdn}")).await {
            Ok(lookup) => lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::SRV(srv) => Some(Srv {
                        priority: srv.priority,
                        weight: srv.weight,
                        target: srv.target.to_ascii(),
                        port: srv.port,
                    }),
                    _ => None,
                })
                .collect(),
            Err(e) => {
                tracing::debug!(host, error = %e, "no SRV records; A/AAAA next");
                Vec::new()
            }
        };
        // RFC 2782: a lone target of "." says the service is not offered.
        if records.len() == 1 && records[0].target == "." {
            return Err(format!(
                "{service}.{host} says SIP is not offered there (SRV target \".\")"
            ));
        }
        let targets = srv_order(records, rand::random);
        let mut why = Vec::new();
        for Srv { target, port, .. } in &targets {
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

/// One SRV record.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Srv {
    priority: u16,
    weight: u16,
    target: String,
    port: u16,
}

/// The order RFC 2782 ("Usage rules") tries SRV targets in: lowest
/// priority first; within one priority, repeatedly a record drawn at
/// random with odds proportional to its weight (those of weight 0 first in
/// the running sum, so they are picked only rarely when others weigh
/// more). `draw` gives the random numbers. "." targets are dropped.
fn srv_order(mut records: Vec<Srv>, mut draw: impl FnMut() -> u32) -> Vec<Srv> {
    records.retain(|r| r.target != "." && !r.target.is_empty());
    records.sort_by_key(|r| (r.priority, r.weight));
    let mut out = Vec::with_capacity(records.len());
    while !records.is_empty() {
        let priority = records[0].priority;
        let end = records
            .iter()
            .take_while(|r| r.priority == priority)
            .count();
        let mut group: Vec<Srv> = records.drain(..end).collect();
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
            let chosen = draw() % (total + 1);
            let mut sum = 0;
            let pick = group
                .iter()
                .position(|r| {
                    sum += u32::from(r.weight);
                    sum >= chosen
                })
                .unwrap_or(group.len() - 1);
            out.push(group.remove(pick));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(priority: u16, weight: u16, target: &str) -> Srv {
        Srv {
            priority,
            weight,
            target: target.to_owned(),
            port: 5060,
        }
    }

    fn targets(list: &[Srv]) -> Vec<&str> {
        list.iter().map(|r| r.target.as_str()).collect()
    }

    #[test]
    fn lower_priority_first_then_drawn_by_weight() {
        let records = vec![srv(20, 0, "c"), srv(10, 90, "a"), srv(10, 10, "b")];
        // The running sum is b 10, a 100: a draw of 5 picks b, 50 picks a.
        assert_eq!(targets(&srv_order(records.clone(), || 5)), ["b", "a", "c"]);
        assert_eq!(targets(&srv_order(records.clone(), || 50)), ["a", "b", "c"]);
        let mut a_first = 0;
        let mut n = 1u32;
        for _ in 0..1000 {
            n = n.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            if srv_order(records.clone(), || n >> 8)[0].target == "a" {
                a_first += 1;
            }
        }
        assert!((820..=960).contains(&a_first), "{a_first}");
    }

    #[test]
    fn dot_targets_are_dropped_and_weight_zero_still_comes() {
        assert!(srv_order(vec![srv(0, 0, ".")], || 0).is_empty());
        assert_eq!(
            targets(&srv_order(vec![srv(0, 0, "x"), srv(0, 0, "y")], || 7)),
            ["x", "y"]
        );
    }
}
