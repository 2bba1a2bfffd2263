//! NAT keep-alives that arrive on the SIP port and are not SIP: RFC 5626
//! §4.4.2 STUN Binding requests over UDP (answered per RFC 5389 §7.3 with
//! the XOR-MAPPED-ADDRESS the phone's NAT shows us), and bare CRLF
//! datagrams that many phones send instead (ignored, not counted as errors).

use std::net::{IpAddr, SocketAddr};

/// RFC 5389 §6: the magic cookie in every STUN message.
const MAGIC_COOKIE: u32 = 0x2112_A442;
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const XOR_MAPPED_ADDRESS: u16 = 0x0020;
const HEADER_LEN: usize = 20;

/// What a non-SIP datagram is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeepAlive {
    /// A STUN Binding request: send back this success response.
    Stun(Vec<u8>),
    /// Only CR and LF bytes: a keep-alive that needs no answer.
    Crlf,
}

/// Recognises a keep-alive datagram from `source`; `None` means "treat it
/// as SIP".
pub(crate) fn classify(data: &[u8], source: SocketAddr) -> Option<KeepAlive> {
    if !data.is_empty() && data.iter().all(|b| *b == b'\r' || *b == b'\n') {
        return Some(KeepAlive::Crlf);
    }
    stun_binding_response(data, source).map(KeepAlive::Stun)
}

/// The Binding success response to a Binding request, or `None` if `data`
/// is not a well-formed Binding request (RFC 5389 §6: first two bits zero,
/// the magic cookie, a length that matches and is a multiple of 4).
fn stun_binding_response(data: &[u8], source: SocketAddr) -> Option<Vec<u8>> {
    let header = data.get(..HEADER_LEN)?;
    let msg_type = u16::from_be_bytes([header[0], header[1]]);
    let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let cookie = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    if msg_type != BINDING_REQUEST
        || cookie != MAGIC_COOKIE
        || length % 4 != 0
        || data.len() != HEADER_LEN + length
    {
        return None;
    }
    let transaction_id = &header[8..20];
    let port = source.port() ^ (MAGIC_COOKIE >> 16) as u16;
    let mut value = Vec::with_capacity(20);
    value.push(0);
    match source.ip() {
        IpAddr::V4(ip) => {
            value.push(0x01);
            value.extend_from_slice(&port.to_be_bytes());
            let x = u32::from(ip) ^ MAGIC_COOKIE;
            value.extend_from_slice(&x.to_be_bytes());
        }
        IpAddr::V6(ip) => {
            value.push(0x02);
            value.extend_from_slice(&port.to_be_bytes());
            let mut key = [0u8; 16];
            key[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
            key[4..].copy_from_slice(transaction_id);
            value.extend(ip.octets().iter().zip(key).map(|(a, k)| a ^ k));
        }
    }
    let attr_len = value.len();
    let mut out = Vec::with_capacity(HEADER_LEN + 4 + attr_len);
    out.extend_from_slice(&BINDING_SUCCESS.to_be_bytes());
    out.extend_from_slice(&((4 + attr_len) as u16).to_be_bytes());
    out.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    out.extend_from_slice(transaction_id);
    out.extend_from_slice(&XOR_MAPPED_ADDRESS.to_be_bytes());
    out.extend_from_slice(&(attr_len as u16).to_be_bytes());
    out.extend_from_slice(&value);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(tid: [u8; 12]) -> Vec<u8> {
        let mut m = vec![0x00, 0x01, 0x00, 0x00];
        m.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        m.extend_from_slice(&tid);
        m
    }

    #[test]
    fn stun_binding_request_gets_xor_mapped_address_v4() {
        let tid = [7u8; 12];
        let src: SocketAddr = "192.0.2.33:40000".parse().expect("addr");
        let Some(KeepAlive::Stun(resp)) = classify(&binding_request(tid), src) else {
            panic!("not recognised");
        };
        assert_eq!(&resp[0..2], &[0x01, 0x01]);
        assert_eq!(&resp[8..20], &tid);
        // XOR-MAPPED-ADDRESS: type, length 8, family 1, port ^ 0x2112.
        assert_eq!(&resp[20..22], &[0x00, 0x20]);
        assert_eq!(&resp[22..24], &[0x00, 0x08]);
        let port = u16::from_be_bytes([resp[26], resp[27]]) ^ 0x2112;
        assert_eq!(port, 40000);
        let ip = u32::from_be_bytes([resp[28], resp[29], resp[30], resp[31]]) ^ MAGIC_COOKIE;
        assert_eq!(std::net::Ipv4Addr::from(ip).to_string(), "192.0.2.33");
        assert_eq!(resp.len(), 32);
    }

    #[test]
    fn stun_v6_address_is_xored_with_cookie_and_transaction_id() {
        let tid = [0xAB; 12];
        let src: SocketAddr = "[2001:db8::5]:5060".parse().expect("addr");
        let Some(KeepAlive::Stun(resp)) = classify(&binding_request(tid), src) else {
            panic!("not recognised");
        };
        let mut key = MAGIC_COOKIE.to_be_bytes().to_vec();
        key.extend_from_slice(&tid);
        let ip: Vec<u8> = resp[28..44].iter().zip(&key).map(|(a, k)| a ^ k).collect();
        let octets: [u8; 16] = ip.try_into().expect("16 bytes");
        assert_eq!(std::net::Ipv6Addr::from(octets).to_string(), "2001:db8::5");
    }

    #[test]
    fn crlf_is_a_keepalive_and_sip_or_junk_is_not() {
        let src: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        assert_eq!(classify(b"\r\n\r\n", src), Some(KeepAlive::Crlf));
        assert_eq!(classify(b"\r\n", src), Some(KeepAlive::Crlf));
        assert_eq!(classify(b"OPTIONS sip:x SIP/2.0\r\n", src), None);
        assert_eq!(classify(b"", src), None);
        let mut bad = binding_request([1; 12]);
        bad[4] ^= 1; // wrong cookie
        assert_eq!(classify(&bad, src), None);
        let mut short = binding_request([1; 12]);
        short[3] = 4; // says 4 bytes of attributes that are not there
        assert_eq!(classify(&short, src), None);
    }
}
