//! The SDP the load generator offers and answers (one PCMU audio stream,
//! RFC 4566 / RFC 3551 payload type 0), and the one thing it reads back
//! from the other side's SDP: where to send RTP (`c=` address and
//! `m=audio` port).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// A PCMU-only SDP body naming `port` on 127.0.0.1.
pub(crate) fn pcmu(session: u64, port: u16) -> String {
    format!(
        "v=0\r\no=bench {session} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

/// The RTP destination an SDP names: the first `m=audio` port with the
/// media-level `c=` if there is one, else the session-level one. An
/// unspecified address (0.0.0.0) is taken as `fallback`.
pub(crate) fn media_addr(sdp: &str, fallback: IpAddr) -> Option<SocketAddr> {
    let mut session_ip = None;
    let mut media_ip = None;
    let mut port = None;
    for line in sdp.lines().map(str::trim_end) {
        if let Some(rest) = line.strip_prefix("m=") {
            if port.is_some() {
                break; // only the first audio stream
            }
            let mut parts = rest.split_whitespace();
            if parts.next() == Some("audio") {
                port = parts.next().and_then(|p| p.parse::<u16>().ok());
            }
        } else if let Some(rest) = line.strip_prefix("c=IN IP4 ") {
            let ip = rest.split('/').next()?.trim().parse::<Ipv4Addr>().ok()?;
            if port.is_some() {
                media_ip = Some(ip);
            } else {
                session_ip = Some(ip);
            }
        }
    }
    let ip = media_ip.or(session_ip)?;
    let ip = if ip.is_unspecified() {
        fallback
    } else {
        IpAddr::V4(ip)
    };
    Some(SocketAddr::new(ip, port.filter(|&p| p != 0)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_its_own_sdp() {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(
            media_addr(&pcmu(7, 40_002), lo),
            Some(SocketAddr::new(lo, 40_002))
        );
    }

    #[test]
    fn media_level_connection_wins() {
        let sdp = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 3000 RTP/AVP 0\r\nc=IN IP4 0.0.0.0\r\n";
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(media_addr(sdp, lo), Some(SocketAddr::new(lo, 3000)));
        assert_eq!(media_addr("v=0\r\nm=audio 3000 RTP/AVP 0\r\n", lo), None);
        assert_eq!(
            media_addr("c=IN IP4 127.0.0.1\r\nm=audio 0 RTP/AVP 0\r\n", lo),
            None
        );
    }
}
