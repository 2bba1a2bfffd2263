//! What a dial target resolves to: an extension id becomes one destination
//! per registered contact, as the registrar's location lookup lists them
//! (reached through its Path when it has one, RFC 3327: sent to the first
//! Path URI with the Path as Route set; else at the address its REGISTER
//! came from), a `sip:` URI one destination at its host,
//! `trunk:NAME/NUMBER` one destination at the trunk's host (RFC 3263 §4.2: SRV, then A/AAAA for a name; `trunk/dns.rs`).

use std::net::{IpAddr, SocketAddr};

use sip_net::Transport;
use sip_proto::{Host, Uri};

use crate::Inner;
use crate::trunk::Trunk;

/// What a destination through a trunk carries besides the address.
#[derive(Debug, Clone)]
pub(crate) struct TrunkTarget {
    pub trunk: std::sync::Arc<Trunk>,
}

/// One place to send an outbound INVITE.
#[derive(Debug, Clone)]
pub(crate) struct Destination {
    /// The Request-URI.
    pub uri: Uri,
    /// The To header value.
    pub to: String,
    pub transport: Transport,
    pub addr: SocketAddr,
    /// Route headers (a registration's Path).
    pub route: Vec<String>,
    /// The target as the route named it (for the CDR).
    pub label: String,
    /// Set for `trunk:NAME/NUMBER`.
    pub trunk: Option<TrunkTarget>,
}

/// Why a target gave no destination: the status a dial reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unreachable {
    pub code: u16,
    pub why: String,
}

/// Resolves a target: an extension id or a `sip:` URI.
pub(crate) async fn resolve(inner: &Inner, target: &str) -> Result<Vec<Destination>, Unreachable> {
    let target = target.trim();
    if let Some(rest) = target.strip_prefix("trunk:") {
        return trunk_destination(inner, target, rest)
            .await
            .map(|d| vec![d]);
    }
    if target.starts_with("sip:") || target.starts_with("sips:") {
        return uri_destination(target).await.map(|d| vec![d]);
    }
    if target.is_empty()
        || target.len() > 64
        || !target
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.+*#".contains(&b))
    {
        return Err(Unreachable {
            code: 404,
            why: format!("{target:?} is neither an extension id nor a sip: URI"),
        });
    }
    let aor = inner.registrar.aor_of(target);
    let live = inner
        .registrar
        .contacts(target)
        .await
        // Storage out of reach (the database is down): 503, the caller may
        // try again; calls already up do not need it.
        .map_err(|e| Unreachable {
            code: 503,
            why: e.to_string(),
        })?;
    if live.is_empty() {
        let code = if inner.extensions.load().contains_key(target) {
            480
        } else {
            404
        };
        return Err(Unreachable {
            code,
            why: format!("{target} has no registered contact"),
        });
    }
    let mut out = Vec::with_capacity(live.len());
    for b in live {
        let Ok(uri) = Uri::parse(&b.contact) else {
            continue;
        };
        let registered = if b.transport.eq_ignore_ascii_case("tcp") {
            Transport::Tcp
        } else {
            Transport::Udp
        };
        // RFC 3327 §5.3: a binding with a Path is reached through it (a
        // pre-loaded Route set), whichever node sends: the next hop is the
        // first Path URI (the proxy nearest to us, Kamailio in front of
        // the nodes), not the node-local source of the REGISTER. Without
        // Path the phone is called at its registered source, directly.
        let (transport, addr) = match b.path.first().and_then(|p| path_hop(p)) {
            Some(hop) => next_hop(hop, b.source, registered).await,
            None => (registered, b.source),
        };
        out.push(Destination {
            uri,
            to: format!("<{aor}>"),
            transport,
            addr,
            route: b.path,
            label: target.to_owned(),
            trunk: None,
        });
    }
    if out.is_empty() {
        return Err(Unreachable {
            code: 480,
            why: format!("{target}'s contacts are not usable URIs"),
        });
    }
    Ok(out)
}

/// Where the first Path value (`<sip:proxy:5060;lr>`) says to send: its
/// host, port and transport. `None` for a value that is no `sip:` URI.
fn path_hop(value: &str) -> Option<(Host, Option<u16>, Option<Transport>)> {
    let inner = value.trim();
    let inner = match inner.find('<') {
        Some(start) => inner.get(start + 1..)?.split('>').next()?,
        None => inner.split(';').next()?,
    };
    let uri = Uri::parse(inner).ok()?;
    let sip = uri.as_sip()?;
    let transport = match sip.transport() {
        Some(t) if t.eq_ignore_ascii_case("tcp") => Some(Transport::Tcp),
        Some(t) if t.eq_ignore_ascii_case("udp") => Some(Transport::Udp),
        _ => None,
    };
    Some((sip.host.clone(), sip.port, transport))
}

/// The address and transport of a Path hop: the port defaults to 5060, the
/// transport to the REGISTER's when the hop is where the REGISTER came
/// from, else UDP (RFC 3263 for a `sip:` URI without `transport`). A host
/// name that does not resolve falls back to the REGISTER's source, the
/// proxy that forwarded it.
async fn next_hop(
    (host, port, transport): (Host, Option<u16>, Option<Transport>),
    source: SocketAddr,
    registered: Transport,
) -> (Transport, SocketAddr) {
    let port = port.unwrap_or(5060);
    let addr = match &host {
        Host::Ipv4(ip) => Some(SocketAddr::new(IpAddr::V4(*ip), port)),
        Host::Ipv6(ip) => Some(SocketAddr::new(IpAddr::V6(*ip), port)),
        Host::Domain(name) => tokio::net::lookup_host((name.as_str(), port))
            .await
            .ok()
            .and_then(|mut addrs| addrs.next()),
    };
    let Some(addr) = addr else {
        return (transport.unwrap_or(registered), source);
    };
    let transport = transport.unwrap_or(if addr == source {
        registered
    } else {
        Transport::Udp
    });
    (transport, addr)
}

async fn uri_destination(target: &str) -> Result<Destination, Unreachable> {
    let bad = |why: String| Unreachable { code: 416, why };
    let uri = Uri::parse(target).map_err(|e| bad(format!("{target}: {e}")))?;
    let Some(sip) = uri.as_sip() else {
        return Err(bad(format!("{target}: not a sip: URI")));
    };
    let transport = match sip.transport() {
        Some(t) if t.eq_ignore_ascii_case("tcp") => Transport::Tcp,
        Some(t) if !t.eq_ignore_ascii_case("udp") => {
            return Err(bad(format!("{target}: transport {t} is not supported")));
        }
        _ => Transport::Udp,
    };
    let port = sip.port.unwrap_or(5060);
    let addr = match &sip.host {
        Host::Ipv4(ip) => SocketAddr::new(IpAddr::V4(*ip), port),
        Host::Ipv6(ip) => SocketAddr::new(IpAddr::V6(*ip), port),
        Host::Domain(name) => tokio::net::lookup_host((name.as_str(), port))
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| Unreachable {
                code: 404,
                why: format!("{target}: cannot resolve {name}"),
            })?,
    };
    Ok(Destination {
        to: format!("<{uri}>"),
        uri,
        transport,
        addr,
        route: Vec::new(),
        label: target.to_owned(),
        trunk: None,
    })
}

/// `trunk:NAME/NUMBER`: the number at the trunk's host, written as the
/// trunk's `caller_id_format` writes dialled numbers.
async fn trunk_destination(
    inner: &Inner,
    target: &str,
    rest: &str,
) -> Result<Destination, Unreachable> {
    let Some((name, number)) = rest.split_once('/') else {
        return Err(Unreachable {
            code: 404,
            why: format!("{target}: write trunk:NAME/NUMBER"),
        });
    };
    let Some(trunk) = inner.trunks.get(name) else {
        return Err(Unreachable {
            code: 404,
            why: format!("{target}: no [[trunk]] named {name:?}"),
        });
    };
    let number = number.trim();
    let digits = number.strip_prefix('+').unwrap_or(number);
    if digits.is_empty()
        || digits.len() > 32
        || !digits
            .bytes()
            .all(|b| b.is_ascii_digit() || b"*#".contains(&b))
    {
        return Err(Unreachable {
            code: 484,
            why: format!(
                "{target}: {number:?} is not a number (digits, * and # after an optional +)"
            ),
        });
    }
    let addr = inner
        .trunks
        .locate(&trunk)
        .await
        .map_err(|why| Unreachable {
            code: 503,
            why: format!("{target}: {why}"),
        })?;
    let user = trunk.caller_id_format.write_dialled(number);
    let host = match trunk.port {
        Some(p) => format!("{}:{p}", trunk.host),
        None => trunk.host.clone(),
    };
    let transport_param = match trunk.transport {
        Transport::Tcp => ";transport=tcp",
        Transport::Udp => "",
    };
    let uri_text = format!("sip:{user}@{host}{transport_param}");
    let uri = Uri::parse(&uri_text).map_err(|e| Unreachable {
        code: 484,
        why: format!("{target}: {uri_text}: {e}"),
    })?;
    Ok(Destination {
        to: format!("<sip:{user}@{}>", trunk.domain()),
        uri,
        transport: trunk.transport,
        addr,
        route: Vec::new(),
        label: target.to_owned(),
        trunk: Some(TrunkTarget { trunk }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_hop_reads_the_first_uri_of_a_path_value() {
        let (host, port, transport) =
            path_hop("<sip:127.0.0.5:5070;lr;received=sip:127.0.0.7:40000>").expect("hop");
        assert_eq!(host, Host::Ipv4("127.0.0.5".parse().expect("ip")));
        assert_eq!(port, Some(5070));
        assert_eq!(transport, None);
        let (host, port, transport) = path_hop("<sip:edge.test;transport=tcp;lr>;ob").expect("hop");
        assert_eq!(host, Host::Domain("edge.test".to_owned()));
        assert_eq!(port, None);
        assert_eq!(transport, Some(Transport::Tcp));
        assert!(path_hop("<tel:+15550100>").is_none());
        assert!(path_hop("<not a uri>").is_none());
    }

    #[tokio::test]
    async fn a_binding_with_path_is_reached_at_its_first_hop_not_its_source() {
        let source: SocketAddr = "127.0.0.9:5060".parse().expect("addr");
        let hop = path_hop("<sip:127.0.0.7:5080;lr>").expect("hop");
        assert_eq!(
            next_hop(hop, source, Transport::Tcp).await,
            (Transport::Udp, "127.0.0.7:5080".parse().expect("addr"))
        );
        // The hop that forwarded the REGISTER keeps its transport.
        let hop = path_hop("<sip:127.0.0.9;lr>").expect("hop");
        assert_eq!(
            next_hop(hop, source, Transport::Tcp).await,
            (Transport::Tcp, source)
        );
        let hop = path_hop("<sip:127.0.0.7:5080;transport=tcp;lr>").expect("hop");
        assert_eq!(
            next_hop(hop, source, Transport::Udp).await,
            (Transport::Tcp, "127.0.0.7:5080".parse().expect("addr"))
        );
    }
}
