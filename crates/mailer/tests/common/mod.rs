//! What the mailer's tests share: a WAV as voicemail stores it, a
//! message, the relay settings, a closed port.

#![allow(dead_code)] // each test file uses only some of these

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use mailer::{Mailer, Options, Recipients, Relay, Retry, Stats, TimeZone, Tls};
use pbx::NewMessage;

/// Most time any wait in these tests may take.
pub const WAIT: Duration = Duration::from_secs(20);

/// One second of a 16-bit PCM, 8 kHz mono WAV, as voicemail stores it.
pub fn write_wav(dir: &Path) -> (PathBuf, Vec<u8>) {
    let samples: Vec<i16> = (0..8000)
        .map(|i| if (i / 10) % 2 == 0 { 8000 } else { -8000 })
        .collect();
    let data_len = u32::try_from(samples.len() * 2).unwrap();
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"RIFF");
    bytes.extend_from_slice(&(36 + data_len).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    bytes.extend_from_slice(&16u32.to_le_bytes());
    bytes.extend_from_slice(&1u16.to_le_bytes()); // PCM
    bytes.extend_from_slice(&1u16.to_le_bytes()); // mono
    bytes.extend_from_slice(&8000u32.to_le_bytes());
    bytes.extend_from_slice(&16000u32.to_le_bytes());
    bytes.extend_from_slice(&2u16.to_le_bytes());
    bytes.extend_from_slice(&16u16.to_le_bytes());
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&data_len.to_le_bytes());
    for s in &samples {
        bytes.extend_from_slice(&s.to_le_bytes());
    }
    let path = dir.join("msg-7.wav");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&bytes).unwrap();
    (path, bytes)
}

pub fn message(wav: PathBuf) -> NewMessage {
    NewMessage {
        ext: "1001".into(),
        id: "7".into(),
        caller: "\"Bob\" <sip:1002@pbx.test>".into(),
        // 2026-12-06T22:00:05Z
        received_ms: 1_796_594_405_123,
        duration_s: 42.4,
        wav,
    }
}

pub fn recipients() -> Recipients {
    let mut map = HashMap::new();
    map.insert("1001".to_owned(), "alice@example.com".parse().unwrap());
    Arc::new(ArcSwap::from_pointee(map))
}

pub fn relay(addr: SocketAddr, credentials: Option<(&str, &str)>) -> Relay {
    Relay {
        host: addr.ip().to_string(),
        port: addr.port(),
        tls: Tls::None,
        credentials: credentials.map(|(u, p)| (u.to_owned(), p.to_owned())),
        from: "Switchboard <pbx@example.com>".parse().unwrap(),
    }
}

pub fn options(retry: Retry) -> Options {
    Options {
        retry,
        timeout: Duration::from_secs(10),
        zone: TimeZone::UTC,
        ..Options::default()
    }
}

/// A port on 127.0.0.1 nothing listens on (bound, then closed).
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Waits until `done(stats)` holds, up to [`WAIT`]; returns the stats.
pub async fn stats_until(mailer: &Mailer, done: impl Fn(&Stats) -> bool) -> Stats {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stats = mailer.stats();
        if done(&stats) || tokio::time::Instant::now() > deadline {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
