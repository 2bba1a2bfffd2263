//! A phone's RTP for pbx's media tests: a UDP socket on 127.0.0.1,
//! connected to the leg it talks to, that sends packets tagged by their
//! payload (a stage or bridge may renumber SSRCs for stream continuity,
//! so the payload tells who sent) and reads what comes.

use std::time::Duration;

use rtp::{PacketBuilder, RtpHeader, RtpPacket};
use tokio::net::UdpSocket;
use tokio::time::timeout;

/// How long a test waits for a packet.
pub const WAIT: Duration = Duration::from_secs(3);

/// See the module docs.
pub struct RtpPhone {
    pub socket: UdpSocket,
    seq: u16,
}

impl RtpPhone {
    pub fn new(socket: UdpSocket) -> RtpPhone {
        RtpPhone { socket, seq: 0 }
    }

    /// Sends one PCMU packet whose payload is `tag` repeated.
    pub async fn send(&mut self, tag: u8) {
        self.seq += 1;
        let header = RtpHeader {
            marker: false,
            payload_type: 0,
            sequence: self.seq,
            timestamp: u32::from(self.seq) * 160,
            ssrc: 0x5eed,
        };
        let packet = PacketBuilder::new(header)
            .payload(&[tag; 160])
            .build()
            .unwrap();
        self.socket.send(&packet).await.unwrap();
    }

    /// The payload of the next packet that arrives (within WAIT).
    pub async fn receive(&self) -> Option<Vec<u8>> {
        let mut buf = [0u8; 1500];
        let n = timeout(WAIT, self.socket.recv(&mut buf)).await.ok()?.ok()?;
        RtpPacket::parse(&buf[..n])
            .ok()
            .map(|p| p.payload().to_vec())
    }

    /// Whether something other than a phone's tagged payload (one byte
    /// repeated) arrives within 50 packets: music, a prompt.
    pub async fn hears_music(&self) -> bool {
        for _ in 0..50 {
            match self.receive().await {
                Some(payload) if payload.iter().any(|b| Some(b) != payload.first()) => {
                    return true;
                }
                Some(_) => {}
                None => return false,
            }
        }
        false
    }

    /// Sends packets tagged `tag` until `other` hears one (the first may
    /// be needed to latch; older packets queued at `other` are read past).
    pub async fn reaches(&mut self, other: &RtpPhone, tag: u8) -> bool {
        for _ in 0..100 {
            self.send(tag).await;
            let mut buf = [0u8; 1500];
            while let Ok(Ok(n)) =
                timeout(Duration::from_millis(20), other.socket.recv(&mut buf)).await
            {
                if RtpPacket::parse(&buf[..n]).is_ok_and(|p| p.payload().first() == Some(&tag)) {
                    return true;
                }
            }
        }
        false
    }
}
