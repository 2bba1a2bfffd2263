//! `switchboard run`: binds the SIP endpoint and the admin API, serves until a signal, then drains.

use std::time::Instant;

use sip_net::Endpoint;
use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::admin;
use crate::config::Config;
use crate::error::Error;
use crate::shutdown::Signals;

/// Runs Switchboard with `config` until SIGTERM / Ctrl-C, then shuts down within `shutdown_grace`.
///
/// Start-up failures (port in use, ...) return an error before anything is
/// served. Must run inside a tokio runtime with IO and time enabled.
pub async fn serve(config: Config, started: Instant) -> Result<(), Error> {
    let mut signals = Signals::install().map_err(Error::Signals)?;
    let metrics = admin::install_metrics(started)?;

    let endpoint = Endpoint::bind(config.sip.endpoint_config())
        .await
        .map_err(|source| Error::SipStart { source })?;
    let admin_listener = match config.admin.listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| Error::AdminBind { addr, source })?,
        ),
        None => None,
    };
    let admin_addr = match &admin_listener {
        Some(l) => Some(l.local_addr().map_err(|source| Error::AdminBind {
            addr: config.admin.listen.unwrap_or(([0, 0, 0, 0], 0).into()),
            source,
        })?),
        None => None,
    };

    let shutdown = CancellationToken::new();
    let local = endpoint.local_addrs();
    let mut sip_task: JoinHandle<Result<(), Error>> = tokio::spawn({
        let stop = shutdown.clone().cancelled_owned();
        async move { endpoint.run(stop).await.map_err(Error::SipRun) }
    });
    let mut admin_task: JoinHandle<Result<(), Error>> = match admin_listener {
        Some(listener) => {
            let app = admin::router(metrics);
            let stop = shutdown.clone().cancelled_owned();
            tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .await
                    .map_err(Error::AdminRun)
            })
        }
        None => tokio::spawn({
            let stop = shutdown.clone();
            async move {
                stop.cancelled().await;
                Ok(())
            }
        }),
    };

    // These lines are a contract: tests and scripts read the ports from them.
    info!(
        "switchboard {} running with config {}",
        env!("CARGO_PKG_VERSION"),
        config.source
    );
    for (transport, addr) in &local {
        info!("SIP listening on {transport}:{addr}");
    }
    match admin_addr {
        Some(addr) => info!("admin listening on http://{addr}"),
        None => info!("admin HTTP disabled (admin.enabled = false)"),
    }

    // Serve until a signal, or until a task ends on its own (an error).
    let mut sip_done = None;
    let mut admin_done = None;
    tokio::select! {
        signal = signals.recv() => info!("{signal} received, shutting down"),
        r = &mut sip_task => {
            error!("SIP endpoint stopped, shutting down");
            sip_done = Some(flatten(r, "SIP endpoint"));
        }
        r = &mut admin_task => {
            error!("admin HTTP server stopped, shutting down");
            admin_done = Some(flatten(r, "admin HTTP server"));
        }
    }
    let early = sip_done.is_some() || admin_done.is_some();
    shutdown.cancel();

    let grace = config.shutdown_grace;
    let drain = async {
        let sip = match sip_done.take() {
            Some(r) => r,
            None => flatten(sip_task.await, "SIP endpoint"),
        };
        let admin = match admin_done.take() {
            Some(r) => r,
            None => flatten(admin_task.await, "admin HTTP server"),
        };
        (sip, admin)
    };
    let (sip, admin) = tokio::select! {
        r = tokio::time::timeout(grace, drain) => match r {
            Ok(results) => results,
            Err(_) => {
                warn!(
                    "shutdown_grace ({}) elapsed with work still in progress; exiting anyway",
                    humantime::format_duration(grace)
                );
                return Ok(());
            }
        },
        signal = signals.recv() => {
            warn!("{signal} received again; exiting without waiting");
            return Ok(());
        }
    };
    let result = sip.and(admin);
    match (&result, early) {
        (Ok(()), false) => info!("shutdown complete"),
        // A task that ends by itself without an error is still not normal.
        (Ok(()), true) => return Err(Error::Stopped("a server task")),
        (Err(_), _) => {}
    }
    result
}

/// A task's result, with a panic turned into an error (the panic message was already printed).
fn flatten(r: Result<Result<(), Error>, JoinError>, what: &'static str) -> Result<(), Error> {
    match r {
        Ok(result) => result,
        Err(_) => Err(Error::Stopped(what)),
    }
}
