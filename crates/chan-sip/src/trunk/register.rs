//! Outbound registration, RFC 3261 §10.2 as a client: one task per trunk
//! with `register = true` keeps a binding at the carrier. Same Call-ID and
//! a growing CSeq for every REGISTER of the task (§10.2.4), a 401/407
//! answered once per challenge with the trunk's credentials, 423 answered
//! with the carrier's Min-Expires (§10.2.8), the binding refreshed well
//! before the expiry the carrier granted, failures retried after
//! `Retry-After` or a doubling backoff, and 403/404 (the account is wrong
//! or gone) stopping the task until the config is reloaded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sip_net::{EndpointHandle, Transport};
use sip_proto::{HeaderName, Headers, Method, Request, Response, Uri};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{RegState, Trunk, Trunks, authorization, backoff};

/// What every registration task needs.
#[derive(Clone)]
pub(super) struct Client {
    pub endpoint: EndpointHandle,
    pub user_agent: String,
    pub shutdown: CancellationToken,
}

/// How one round (REGISTER, maybe its challenge, the final answer) ended.
enum Outcome {
    /// Bound for this many seconds.
    Bound(u32),
    /// Try again after this long (`None`: the backoff).
    Retry(String, Option<Duration>),
    /// Do not try again until reload.
    Stop(String),
}

/// Registers `trunk` until `stop` fires.
pub(super) async fn run(
    client: Client,
    trunk: Arc<Trunk>,
    trunks: Trunks,
    stop: CancellationToken,
) {
    let call_id = format!("{:032x}@switchboard", rand::random::<u128>());
    let from_tag = format!("{:016x}", rand::random::<u64>());
    let mut reg = Registration {
        client,
        trunk,
        call_id,
        from_tag,
        cseq: 0,
        expires: 0,
        contact: None,
    };
    reg.expires = reg.trunk.expires;
    let mut failures = 0u32;
    loop {
        let outcome = tokio::select! {
            () = stop.cancelled() => break,
            o = reg.round(&trunks) => o,
        };
        let wait = match outcome {
            Outcome::Bound(granted) => {
                failures = 0;
                let until = Instant::now() + Duration::from_secs(u64::from(granted));
                trunks.set_state(&reg.trunk.name, RegState::Registered { until });
                refresh_after(granted)
            }
            Outcome::Retry(reason, after) => {
                let wait = after.unwrap_or_else(|| backoff(failures));
                failures = failures.saturating_add(1);
                warn!(
                    trunk = %reg.trunk.name,
                    "registration to {} failed: {reason}; trying again in {}s",
                    reg.trunk.host,
                    wait.as_secs()
                );
                trunks.set_state(
                    &reg.trunk.name,
                    RegState::Failed {
                        reason,
                        retry: Some(Instant::now() + wait),
                    },
                );
                wait
            }
            Outcome::Stop(reason) => {
                warn!(
                    trunk = %reg.trunk.name,
                    "registration to {} refused: {reason}; not trying again until the config is reloaded — check username and password",
                    reg.trunk.host
                );
                trunks.set_state(
                    &reg.trunk.name,
                    RegState::Failed {
                        reason,
                        retry: None,
                    },
                );
                trunks.set_registrar(&reg.trunk.name, None);
                return;
            }
        };
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(wait) => {}
        }
    }
    // Stopped by a reload or shutdown: the binding is not ours to keep.
    if reg.contact.is_some()
        && matches!(
            trunks.status_of(&reg.trunk.name),
            Some(RegState::Registered { .. })
        )
    {
        reg.expires = 0;
        let unregister = reg.round(&trunks);
        let _ = tokio::time::timeout(Duration::from_secs(2), unregister).await;
    }
    trunks.set_registrar(&reg.trunk.name, None);
}

/// When to refresh a binding granted for `granted` seconds: at five sixths
/// of it (3000 s of 3600, 50 s of 60), never sooner than 1 s.
fn refresh_after(granted: u32) -> Duration {
    Duration::from_millis((u64::from(granted) * 1000 * 5 / 6).max(1000))
}

struct Registration {
    client: Client,
    trunk: Arc<Trunk>,
    call_id: String,
    from_tag: String,
    cseq: u32,
    /// Seconds to ask for (0: unregister).
    expires: u32,
    /// Our Contact URI, once the first REGISTER went out.
    contact: Option<String>,
}

impl Registration {
    async fn round(&mut self, trunks: &Trunks) -> Outcome {
        let dest = match trunks.locate(&self.trunk).await {
            Ok(d) => d,
            Err(e) => return Outcome::Retry(e, None),
        };
        let transport = self.trunk.transport;
        let Some(local) = self.client.endpoint.local_addr_for(transport, dest) else {
            return Outcome::Retry(
                format!("no {transport} listener to reach {dest} from"),
                None,
            );
        };
        let contact = match transport {
            Transport::Tcp => format!("sip:{}@{local};transport=tcp", self.trunk.own_user()),
            Transport::Udp => format!("sip:{}@{local}", self.trunk.own_user()),
        };
        self.contact = Some(contact.clone());
        let registrar = self.trunk.registrar_uri();
        let Ok(uri) = Uri::parse(&registrar) else {
            return Outcome::Stop(format!("{registrar} is not a SIP URI"));
        };
        let mut auth: Option<(HeaderName, String)> = None;
        let mut min_expires_tried = false;
        for _ in 0..4 {
            let request = self.request(&uri, &contact, auth.clone());
            let response = match self.client.endpoint.request(request, transport, dest).await {
                Ok(r) => r,
                Err(e) => return Outcome::Retry(format!("no response from {dest}: {e}"), None),
            };
            match response.status {
                200..=299 => {
                    trunks.set_registrar(&self.trunk.name, Some(dest.ip()));
                    let granted = granted_expires(&response, &contact).unwrap_or(self.expires);
                    if self.expires > 0 {
                        info!(
                            trunk = %self.trunk.name,
                            "registered to {} as {} for {granted}s",
                            self.trunk.host,
                            self.trunk.own_user()
                        );
                    }
                    return Outcome::Bound(granted);
                }
                401 | 407 => {
                    let stale = auth.is_some() && is_stale(&response);
                    if auth.is_some() && !stale {
                        return Outcome::Retry(
                            format!(
                                "{} {} (wrong credentials?)",
                                response.status, response.reason
                            ),
                            retry_after(&response),
                        );
                    }
                    let (Some(user), Some(password)) =
                        (self.trunk.auth_user(), self.trunk.password.as_deref())
                    else {
                        return Outcome::Stop(format!(
                            "{} {} and no password configured",
                            response.status, response.reason
                        ));
                    };
                    match authorization(&response, "REGISTER", &registrar, user, password) {
                        Some(a) => auth = Some(a),
                        None => {
                            return Outcome::Stop(format!(
                                "{} {} with no digest challenge we can answer (MD5, SHA-256)",
                                response.status, response.reason
                            ));
                        }
                    }
                }
                423 if !min_expires_tried => {
                    min_expires_tried = true;
                    match response.headers.min_expires().ok().flatten() {
                        Some(min) if min > self.expires => self.expires = min,
                        _ => {
                            return Outcome::Retry("423 without a usable Min-Expires".into(), None);
                        }
                    }
                }
                403 | 404 => {
                    return Outcome::Stop(format!("{} {}", response.status, response.reason));
                }
                _ => {
                    return Outcome::Retry(
                        format!("{} {}", response.status, response.reason),
                        retry_after(&response),
                    );
                }
            }
        }
        Outcome::Retry("too many challenges".into(), None)
    }

    fn request(&mut self, uri: &Uri, contact: &str, auth: Option<(HeaderName, String)>) -> Request {
        self.cseq += 1;
        let domain = self.trunk.domain();
        let aor = format!("sip:{}@{domain}", self.trunk.own_user());
        let mut headers = Headers::new();
        headers.push(HeaderName::MaxForwards, "70");
        headers.push(HeaderName::From, format!("<{aor}>;tag={}", self.from_tag));
        headers.push(HeaderName::To, format!("<{aor}>"));
        headers.push(HeaderName::CallId, self.call_id.clone());
        headers.push(HeaderName::CSeq, format!("{} REGISTER", self.cseq));
        headers.push(HeaderName::Contact, format!("<{contact}>"));
        headers.push(HeaderName::Expires, self.expires.to_string());
        headers.push(HeaderName::UserAgent, self.client.user_agent.clone());
        if let Some((name, value)) = auth {
            headers.push(name, value);
        }
        Request {
            method: Method::Register,
            uri: uri.clone(),
            headers,
            body: Bytes::new(),
        }
    }
}

/// The seconds the carrier granted our contact: its `expires` parameter in
/// the 200's Contact list, else the Expires header.
fn granted_expires(response: &Response, contact: &str) -> Option<u32> {
    if let Ok(sip_proto::header::Contact::Addrs(list)) = response.headers.contact() {
        let ours = list.iter().find(|a| {
            let uri = a.uri.to_string();
            uri == contact || uri.eq_ignore_ascii_case(contact)
        });
        if let Some(e) = ours.and_then(|a| a.expires()) {
            return Some(e);
        }
        // A registrar that rewrote our contact: the only one listed is ours.
        if list.len() == 1
            && let Some(e) = list[0].expires()
        {
            return Some(e);
        }
    }
    response.headers.expires().ok().flatten()
}

fn is_stale(response: &Response) -> bool {
    let list = match response.status {
        401 => response.headers.www_authenticate(),
        _ => response.headers.proxy_authenticate(),
    };
    list.unwrap_or_default().iter().any(|c| {
        c.params
            .unquoted("stale")
            .is_some_and(|s| s.eq_ignore_ascii_case("true"))
    })
}

fn retry_after(response: &Response) -> Option<Duration> {
    let r = response.headers.retry_after().ok().flatten()?;
    Some(Duration::from_secs(u64::from(r.delta).clamp(1, 3600)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_comes_before_expiry() {
        assert_eq!(refresh_after(3600), Duration::from_secs(3000));
        assert_eq!(refresh_after(60), Duration::from_secs(50));
        assert_eq!(refresh_after(0), Duration::from_secs(1));
        assert!(refresh_after(2) < Duration::from_secs(2));
    }

    #[test]
    fn backoff_doubles_to_ten_minutes() {
        assert_eq!(backoff(0), Duration::from_secs(10));
        assert_eq!(backoff(1), Duration::from_secs(20));
        assert_eq!(backoff(20), Duration::from_secs(600));
    }
}
