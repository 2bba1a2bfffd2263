//! The endpoint (in progress).

use std::future::Future;
use std::net::SocketAddr;

use crate::{EndpointConfig, Error, Transport};

/// A bound set of SIP listeners and the tasks that serve them.
pub struct Endpoint {
    config: EndpointConfig,
    local: Vec<(Transport, SocketAddr)>,
}

impl Endpoint {
    /// Binds every listener in `config`. Fails with [`Error::Bind`] naming the listener.
    pub async fn bind(config: EndpointConfig) -> Result<Endpoint, Error> {
        if config.listen.is_empty() {
            return Err(Error::NoListeners);
        }
        let local = config.listen.iter().map(|l| (l.transport, l.addr)).collect();
        Ok(Endpoint { config, local })
    }

    /// The addresses actually bound (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<(Transport, SocketAddr)> {
        self.local.clone()
    }

    /// Serves until `shutdown` completes, then closes every listener.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let _ = &self.config;
        shutdown.await;
        Ok(())
    }
}
