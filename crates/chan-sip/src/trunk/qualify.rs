//! Trunk qualify (RFC 3261 §11): an OPTIONS to the carrier every `qualify`
//! period; any response, even an error status, shows it is there; no
//! response within the transaction timeout marks it unreachable. The state
//! is shown by `GET /api/v1/trunks` and the `trunk_reachable` gauge.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sip_proto::{HeaderName, Headers, Method, Request, Uri};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::register::Client;
use super::{Trunk, Trunks};

/// Pings `trunk` every `every` until `stop` fires.
pub(super) async fn run(
    client: Client,
    trunk: Arc<Trunk>,
    every: Duration,
    trunks: Trunks,
    stop: CancellationToken,
) {
    let mut last: Option<bool> = None;
    loop {
        let reachable = tokio::select! {
            () = stop.cancelled() => return,
            r = ping(&client, &trunk, &trunks) => r,
        };
        if last != Some(reachable) {
            if reachable {
                info!(trunk = %trunk.name, "trunk {} reachable (answers OPTIONS)", trunk.host);
            } else {
                warn!(trunk = %trunk.name, "trunk {} unreachable: no answer to OPTIONS", trunk.host);
            }
            last = Some(reachable);
        }
        trunks.set_reachable(&trunk.name, reachable);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

async fn ping(client: &Client, trunk: &Trunk, trunks: &Trunks) -> bool {
    let Ok(dest) = trunks.locate(trunk).await else {
        return false;
    };
    let Ok(uri) = Uri::parse(&trunk.registrar_uri()) else {
        return false;
    };
    let domain = trunk.domain();
    let mut headers = Headers::new();
    headers.push(HeaderName::MaxForwards, "70");
    headers.push(
        HeaderName::From,
        format!(
            "<sip:{}@{domain}>;tag={:016x}",
            trunk.own_user(),
            rand::random::<u64>()
        ),
    );
    headers.push(HeaderName::To, format!("<{}>", trunk.registrar_uri()));
    headers.push(
        HeaderName::CallId,
        format!("{:032x}@switchboard", rand::random::<u128>()),
    );
    headers.push(HeaderName::CSeq, "1 OPTIONS");
    headers.push(HeaderName::UserAgent, client.user_agent.clone());
    let request = Request {
        method: Method::Options,
        uri,
        headers,
        body: Bytes::new(),
    };
    client
        .endpoint
        .request(request, trunk.transport, dest)
        .await
        .is_ok()
}
