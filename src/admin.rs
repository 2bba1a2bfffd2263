//! Admin HTTP API (axum): `GET /health`, `GET /metrics` (Prometheus text),
//! `GET /api/v1/status`, `GET /api/v1/registrations` (JSON),
//! `DELETE /api/v1/registrations/{aor}`, `GET /api/v1/extensions`,
//! `GET /api/v1/calls`, `DELETE /api/v1/calls/{id}`,
//! `GET /api/v1/calls/{id}/trace`, `GET /api/v1/cdrs?limit=N&since=TIME`,
//! `POST /api/v1/reload` (extensions and dialplan),
//! `GET /api/v1/subscriptions`, `GET /api/v1/bans`, `DELETE /api/v1/bans/{ip}` and
//! `DELETE /api/v1/bans/user/{user}`, JSON 400 / 404 / 405 for the rest; every
//! request passes [`crate::admin_guard`] first (Host check, bearer token).

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use metrics_exporter_prometheus::{BuildError, PrometheusBuilder, PrometheusHandle};
use registrar::Registrar;
use serde_json::json;

/// Content type of the Prometheus text exposition format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the handlers share.
#[derive(Clone)]
pub struct AdminState {
    metrics: PrometheusHandle,
    started: Instant,
    registrar: Registrar,
    /// Serves `GET /api/v1/voicemail/...`.
    voicemail: Option<Arc<crate::voicemail::Voicemail>>,
}

impl AdminState {
    /// The state with the mailboxes the voicemail endpoints read.
    pub fn with_voicemail(mut self, voicemail: Arc<crate::voicemail::Voicemail>) -> AdminState {
        self.voicemail = Some(voicemail);
        self
    }
}

/// Installs the process-wide Prometheus recorder and registers Switchboard's own metrics.
///
/// Call once, before the SIP endpoint starts, so its first counters are recorded.
/// `registrar` serves `GET /api/v1/registrations`.
pub fn install_metrics(started: Instant, registrar: Registrar) -> Result<AdminState, BuildError> {
    let metrics = PrometheusBuilder::new().install_recorder()?;
    metrics::describe_gauge!(
        "switchboard_build_info",
        "Always 1; the label `version` is the running Switchboard version."
    );
    metrics::describe_gauge!(
        "switchboard_uptime_seconds",
        "Seconds since this Switchboard process started."
    );
    metrics::describe_counter!(
        "sip_messages_in_total",
        "SIP messages received, by kind and method or status."
    );
    metrics::describe_counter!(
        "sip_messages_out_total",
        "SIP messages sent, by kind and method or status."
    );
    metrics::describe_counter!(
        "sip_parse_errors_total",
        "Received SIP messages that did not parse, by transport."
    );
    metrics::describe_counter!(
        "sip_dropped_total",
        "Received SIP data dropped without an answer, by reason."
    );
    metrics::describe_gauge!(
        "sip_transactions_active",
        "SIP transactions currently in progress."
    );
    metrics::describe_gauge!(
        "sip_server_transactions",
        "SIP server transactions in progress (capped by security.max_transactions)."
    );
    metrics::describe_counter!(
        "sip_transaction_table_full_total",
        "New SIP requests answered 503 because the transaction table was full."
    );
    metrics::describe_counter!(
        "sip_rate_limited_total",
        "UDP datagrams dropped by the per-source token bucket (security.udp_rate), by transport."
    );
    metrics::describe_gauge!(
        "registrar_bindings",
        "Registered contacts (bindings) currently stored, all AORs together."
    );
    metrics::describe_counter!(
        "registrar_auth_failures_total",
        "Digest authentications (REGISTER and INVITE) that failed (wrong password, unknown user, bad nonce)."
    );
    metrics::describe_gauge!("calls_active", "Calls in progress.");
    metrics::describe_counter!(
        "calls_total",
        "Calls that ended, by disposition (answered, busy, noanswer, cancelled, rejected, failed)."
    );
    metrics::describe_gauge!(
        "registrar_bans_active",
        "Sources (IPv4 addresses, IPv6 /64s) currently banned for failing authentication."
    );
    metrics::describe_gauge!(
        "registrar_user_locks_active",
        "Users currently locked for failing authentication (even the right password gets 403)."
    );
    metrics::describe_counter!(
        "registrar_auth_failures_ignored_total",
        "Failed authentications that did not count towards bans: no nonce issued to that source \
         (forged, foreign or spoofed), malformed, replayed, digest uri not the Request-URI."
    );
    metrics::describe_gauge!(
        "rtp_port_pairs_in_use",
        "RTP/RTCP port pairs leased from media.rtp_ports (two per bridged call)."
    );
    metrics::describe_counter!(
        "rtp_timeouts_total",
        "Calls hung up because a phone sent no RTP for media.rtp_timeout."
    );
    metrics::describe_counter!(
        "rtp_foreign_dropped_total",
        "RTP packets dropped because they came from a source the call leg does not take (media.strict_source)."
    );
    metrics::gauge!("switchboard_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    metrics::gauge!("switchboard_uptime_seconds").set(0.0);
    // Present from the start, so dashboards and alerts see 0 rather than nothing.
    metrics::gauge!("registrar_bindings").set(0.0);
    metrics::counter!("registrar_auth_failures_total").absolute(0);
    metrics::gauge!("registrar_bans_active").set(0.0);
    metrics::gauge!("registrar_user_locks_active").set(0.0);
    metrics::counter!("registrar_auth_failures_ignored_total").absolute(0);
    metrics::gauge!("calls_active").set(0.0);
    metrics::gauge!("rtp_port_pairs_in_use").set(0.0);
    metrics::counter!("rtp_timeouts_total").absolute(0);
    metrics::counter!("rtp_foreign_dropped_total").absolute(0);
    Ok(AdminState {
        metrics,
        started,
        registrar,
        voicemail: None,
    })
}

/// What `GET /api/v1/status` reports besides the counts: the listeners.
#[derive(Debug, Clone, Default)]
pub struct Listeners {
    /// `udp:ADDR`, `tcp:ADDR` of the SIP endpoint.
    pub sip: Vec<String>,
    /// `http://ADDR` of this API.
    pub admin: String,
}

/// The admin API's routes, behind `guard`; `dialplan` serves
/// `POST /api/v1/reload`, `calls` `GET /api/v1/calls` (and
/// `GET /api/v1/parked`, its parking lot), `cdrs`
/// `GET /api/v1/cdrs`, `subscriptions` `GET /api/v1/subscriptions`,
/// `listeners` part of `GET /api/v1/status`.
// One argument per service the API reads, as the server wires them.
#[allow(clippy::too_many_arguments)]
pub fn router(
    state: AdminState,
    guard: crate::admin_guard::Guard,
    dialplan: Arc<dialplan::Runtime>,
    extensions: Arc<crate::extensions::Extensions>,
    calls: chan_sip::ChanSip,
    cdrs: Arc<dyn storage::Storage>,
    subscriptions: presence::Presence,
    listeners: Listeners,
) -> Router {
    let registry = calls.registry();
    let parking = calls.parking();
    let status_calls = calls.clone();
    let status_dialplan = Arc::clone(&dialplan);
    let queue_dialplan = Arc::clone(&dialplan);
    let metrics_dialplan = Arc::clone(&dialplan);
    let hangup_calls = calls.clone();
    let trace_calls = calls.clone();
    let listeners = Arc::new(listeners);
    Router::new()
        .route("/health", get(health))
        .route("/metrics", {
            let calls = calls.clone();
            get(move |state: State<AdminState>| {
                metrics::gauge!("rtp_port_pairs_in_use").set(calls.rtp_pairs_in_use() as f64);
                crate::queues::record_metrics(&metrics_dialplan);
                metrics_text(state)
            })
        })
        .route(
            "/api/v1/status",
            get(move |state: State<AdminState>| {
                status(
                    state.0,
                    status_calls.clone(),
                    Arc::clone(&status_dialplan),
                    Arc::clone(&listeners),
                )
            }),
        )
        .route("/api/v1/registrations", get(registrations))
        .route("/api/v1/registrations/{aor}", delete(unregister))
        .route(
            "/api/v1/calls/{id}",
            delete(move |id: Path<String>| hangup(hangup_calls.clone(), id.0)),
        )
        .route(
            "/api/v1/calls/{id}/trace",
            get(
                move |id: Path<String>, query: axum::extract::Query<TraceQuery>| {
                    trace(trace_calls.clone(), id.0, query.0)
                },
            ),
        )
        .route(
            "/api/v1/subscriptions",
            get(move || {
                let subscriptions = subscriptions.clone();
                async move { Json(subscriptions.list()) }
            }),
        )
        .route("/api/v1/bans", get(bans))
        .route("/api/v1/bans/{ip}", delete(unban))
        .route("/api/v1/bans/user/{user}", delete(unlock))
        .route(
            "/api/v1/calls",
            get(move || {
                let registry = registry.clone();
                async move { Json(registry.list()) }
            }),
        )
        .route(
            "/api/v1/parked",
            get(move || {
                let parking = parking.clone();
                async move { Json(parking.list()) }
            }),
        )
        .route(
            "/api/v1/cdrs",
            get(
                move |query: Result<axum::extract::Query<CdrQuery>, QueryRejection>| {
                    let cdrs = cdrs.clone();
                    async move {
                        match query {
                            Ok(query) => recent_cdrs(cdrs, query.0).await,
                            Err(e) => bad_query(&e),
                        }
                    }
                },
            ),
        )
        .route(
            "/api/v1/queues",
            get(move || {
                let dialplan = Arc::clone(&queue_dialplan);
                async move { crate::queues::list(&dialplan) }
            }),
        )
        .route("/api/v1/voicemail/{ext}", get(voicemail_list))
        .route("/api/v1/voicemail/{ext}/{file}", get(voicemail_download))
        .route("/api/v1/extensions", {
            let extensions = Arc::clone(&extensions);
            get(move || extensions.list_endpoint())
        })
        .route("/api/v1/trunks", {
            let trunks = extensions.trunks().clone();
            get(move || crate::trunks::list(trunks.clone()))
        })
        .route(
            "/api/v1/reload",
            post(move || crate::dialplan::reload_endpoint(dialplan, extensions)),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            guard,
            crate::admin_guard::check,
        ))
        .with_state(state)
}

/// Version, uptime, listeners, the dialplan generation and counts.
async fn status(
    state: AdminState,
    calls: chan_sip::ChanSip,
    dialplan: Arc<dialplan::Runtime>,
    listeners: Arc<Listeners>,
) -> Response {
    let registrar = state.registrar.clone();
    let registrations = match tokio::task::spawn_blocking(move || registrar.registrations()).await {
        Ok(Ok(list)) => list.len(),
        Ok(Err(e)) => return server_error(e.to_string()),
        Err(_) => return server_error("reading registrations failed".to_owned()),
    };
    let bans = state.registrar.bans();
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": state.started.elapsed().as_secs(),
        "listeners": { "sip": listeners.sip, "admin": listeners.admin },
        "generation": dialplan.generation().number,
        "counts": {
            "registrations": registrations,
            "calls": calls.active_calls(),
            "banned_sources": bans.sources.len(),
            "locked_users": bans.users.len(),
            "rtp_port_pairs": calls.rtp_pairs_in_use(),
        },
    }))
    .into_response()
}

/// `GET /api/v1/voicemail/{ext}`.
async fn voicemail_list(state: State<AdminState>, ext: Path<String>) -> Response {
    match state.0.voicemail {
        Some(v) => v.list_endpoint(ext.0).await,
        None => error(StatusCode::NOT_FOUND, "voicemail is not running".into()),
    }
}

/// `GET /api/v1/voicemail/{ext}/{ID.wav}`.
async fn voicemail_download(state: State<AdminState>, path: Path<(String, String)>) -> Response {
    let (ext, file) = path.0;
    match state.0.voicemail {
        Some(v) => v.download_endpoint(ext, file).await,
        None => error(StatusCode::NOT_FOUND, "voicemail is not running".into()),
    }
}

/// Hangs up a live call, named by the Call-ID of any of its legs.
async fn hangup(calls: chan_sip::ChanSip, id: String) -> Response {
    if calls.hang_up(&id).await {
        Json(json!({ "hung_up": id })).into_response()
    } else {
        error(
            StatusCode::NOT_FOUND,
            format!("no call in progress with Call-ID {id:?}"),
        )
    }
}

/// `GET /api/v1/calls/{id}/trace?full=true`.
#[derive(Debug, serde::Deserialize)]
pub struct TraceQuery {
    /// `true`: each message's whole text too.
    full: Option<String>,
}

/// The trace of a live or recent call, named by any leg's Call-ID.
async fn trace(calls: chan_sip::ChanSip, id: String, query: TraceQuery) -> Response {
    let full = match query.full.as_deref() {
        None | Some("false" | "0") => false,
        Some("true" | "1" | "") => true,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("full={other:?}: expected true or false"),
            );
        }
    };
    match calls.traces().get(&id) {
        Some(t) => {
            let live = calls.registry().contains(t.id());
            Json(chan_sip::trace_json(&t, live, full)).into_response()
        }
        None => error(
            StatusCode::NOT_FOUND,
            format!(
                "no trace of a call with Call-ID {id:?} (only the last admin.trace_calls calls, and as many refused INVITEs, are kept)"
            ),
        ),
    }
}

/// Removes every binding of an extension or AOR.
async fn unregister(State(state): State<AdminState>, Path(aor): Path<String>) -> Response {
    match state.registrar.unregister(&aor).await {
        Ok(0) => error(
            StatusCode::NOT_FOUND,
            format!("{} has no registrations", state.registrar.aor_of(&aor)),
        ),
        Ok(n) => Json(json!({ "aor": state.registrar.aor_of(&aor), "removed": n })).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "DELETE /api/v1/registrations: storage failed");
            server_error(e)
        }
    }
}

pub(crate) fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// Every banned source and locked user.
async fn bans(State(state): State<AdminState>) -> Response {
    Json(state.registrar.bans()).into_response()
}

/// Lifts the ban of one source (an IPv6 address lifts its /64).
async fn unban(State(state): State<AdminState>, Path(ip): Path<String>) -> Response {
    let Ok(addr) = ip.parse::<std::net::IpAddr>() else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": format!("{ip:?} is not an IP address") })),
        )
            .into_response();
    };
    if state.registrar.unban(addr) {
        Json(json!({ "lifted": ip })).into_response()
    } else {
        (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("{ip} is not banned") })),
        )
            .into_response()
    }
}

/// Lifts the lock of one user.
async fn unlock(State(state): State<AdminState>, Path(user): Path<String>) -> Response {
    if state.registrar.unlock(&user) {
        Json(json!({ "lifted": user })).into_response()
    } else {
        (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("user {user:?} is not locked") })),
        )
            .into_response()
    }
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn metrics_text(State(state): State<AdminState>) -> Response {
    metrics::gauge!("switchboard_uptime_seconds").set(state.started.elapsed().as_secs_f64());
    state.metrics.run_upkeep();
    (
        [(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}

/// Every live registration, sorted by AOR then contact; a storage failure is 500.
async fn registrations(State(state): State<AdminState>) -> Response {
    let registrar = state.registrar.clone();
    match tokio::task::spawn_blocking(move || registrar.registrations()).await {
        Ok(Ok(mut list)) => {
            list.sort_by(|a, b| (&a.aor, &a.contact).cmp(&(&b.aor, &b.contact)));
            Json(list).into_response()
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "GET /api/v1/registrations: storage failed");
            server_error(e.to_string())
        }
        Err(e) => {
            tracing::error!(error = %e, "GET /api/v1/registrations: task failed");
            server_error("reading registrations failed".to_owned())
        }
    }
}

/// `GET /api/v1/cdrs?limit=N&since=TIME`, checked by hand so that a bad
/// value gets a JSON 400 like every other error.
#[derive(Debug, serde::Deserialize)]
pub struct CdrQuery {
    /// How many records, newest first (default 100, at most 10,000).
    limit: Option<String>,
    /// Only calls started at or after this: RFC 3339, Unix ms, or a
    /// duration ago (`10m`).
    since: Option<String>,
}

/// Most CDRs one request returns.
const MAX_CDRS: usize = 10_000;

/// `since`: Unix milliseconds, an RFC 3339 time, or a duration before `now_ms`.
pub fn parse_since(text: &str, now_ms: u64) -> Result<u64, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|_| format!("since={text}: too large"));
    }
    if let Ok(at) = humantime::parse_rfc3339_weak(text) {
        return at
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .map_err(|_| format!("since={text}: before 1970"));
    }
    if let Ok(ago) = humantime::parse_duration(text) {
        let ago = u64::try_from(ago.as_millis()).unwrap_or(u64::MAX);
        return Ok(now_ms.saturating_sub(ago));
    }
    Err(format!(
        "since={text:?}: expected an RFC 3339 time (2026-12-24T18:30:00Z), Unix milliseconds, or a duration ago (10m, 2h)"
    ))
}

/// A query string that does not parse (`?limit=abc`): a JSON 400 like
/// every other error, not axum's plain-text one.
fn bad_query(e: &QueryRejection) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": e.body_text() })),
    )
        .into_response()
}

/// The most recent CDRs, newest first.
async fn recent_cdrs(store: Arc<dyn storage::Storage>, query: CdrQuery) -> Response {
    let limit = match query.limit.as_deref() {
        None => 100,
        Some(text) => match text.trim().parse::<usize>() {
            Ok(n) => n.min(MAX_CDRS),
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("limit={text:?}: expected a whole number of records (0 to {MAX_CDRS})"),
                );
            }
        },
    };
    let since = match query.since.as_deref() {
        None => None,
        Some(text) => match parse_since(text, pbx::unix_ms()) {
            Ok(ms) => Some(ms),
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        },
    };
    // With `since`, the newest MAX_CDRS are filtered (records are kept
    // newest first, so those since a time are a prefix of them).
    let fetch = if since.is_some() { MAX_CDRS } else { limit };
    match tokio::task::spawn_blocking(move || store.recent_cdrs(fetch)).await {
        Ok(Ok(list)) => {
            let records: Vec<serde_json::Value> = list
                .into_iter()
                .map(|e| {
                    let mut record = e.record;
                    if let Some(obj) = record.as_object_mut() {
                        obj.insert("id".into(), e.id.into());
                    }
                    record
                })
                .filter(|r| {
                    since.is_none_or(|since| {
                        r.get("start_ms")
                            .and_then(serde_json::Value::as_u64)
                            .is_some_and(|start| start >= since)
                    })
                })
                .take(limit)
                .collect();
            Json(records).into_response()
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "GET /api/v1/cdrs: storage failed");
            server_error(e.to_string())
        }
        Err(_) => server_error("reading CDRs failed".to_owned()),
    }
}

pub(crate) fn server_error(message: String) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({ "error": message })),
    )
        .into_response()
}

async fn not_found(uri: Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": "not found", "path": uri.path() })),
    )
        .into_response()
}

async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(json!({ "error": "method not allowed" })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_ms_rfc3339_and_durations() {
        assert_eq!(parse_since("1234", 0), Ok(1234));
        assert_eq!(parse_since("1970-01-01T00:00:02Z", 0), Ok(2000));
        assert_eq!(parse_since("10s", 60_000), Ok(50_000));
        assert!(parse_since("yesterday-ish", 0).is_err());
    }
}
