//! `GET /api/v1/trunks`: each `[[trunk]]` with its registration state
//! (`registered`, `failed (REASON)`, `registering`, `off`) and the calls it
//! carries; never its password.

use std::time::Instant;

use axum::Json;
use chan_sip::{RegState, Trunks};
use serde::Serialize;

/// One trunk as the API shows it.
#[derive(Debug, Serialize)]
pub struct Listed {
    name: String,
    host: String,
    port: Option<u16>,
    transport: String,
    context: String,
    register: bool,
    /// `registered`, `failed (403 Forbidden)`, `registering`, `off`.
    state: String,
    /// Seconds until the binding runs out (registered), or until the next
    /// try (failed; absent when stopped until reload).
    seconds: Option<u64>,
    channels: u32,
    max_channels: Option<u32>,
    /// Answered its last OPTIONS (`qualify`); `null` when not pinged.
    reachable: Option<bool>,
}

/// The handler.
pub async fn list(trunks: Trunks) -> Json<Vec<Listed>> {
    let now = Instant::now();
    let left = |t: Instant| t.saturating_duration_since(now).as_secs();
    Json(
        trunks
            .status()
            .into_iter()
            .map(|s| Listed {
                name: s.trunk.name.clone(),
                host: s.trunk.host.clone(),
                port: s.trunk.port,
                transport: s.trunk.transport.to_string(),
                context: s.trunk.context.clone(),
                register: s.trunk.register,
                state: s.registration.label(),
                seconds: match &s.registration {
                    RegState::Registered { until } => Some(left(*until)),
                    RegState::Failed { retry, .. } => retry.map(left),
                    _ => None,
                },
                channels: s.channels,
                max_channels: s.trunk.max_channels,
                reachable: s.reachable,
            })
            .collect(),
    )
}
