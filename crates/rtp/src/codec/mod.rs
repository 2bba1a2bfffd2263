//! Codecs of the RTP/AVP profile (RFC 3551 §4.5): G.711 µ-law and A-law, G.722.
pub mod g711;
