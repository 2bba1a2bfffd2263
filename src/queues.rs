//! The call queues in the admin API (`GET /api/v1/queues`) and the metrics
//! (`queue_callers_waiting`, `queue_longest_wait_seconds`,
//! `queue_answered_total`, `queue_abandoned_total`, by `queue`), read from
//! the dialplan host's [`dialplan::Queues`].

use std::sync::Arc;

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

fn now_ms() -> u64 {
    pbx::unix_ms()
}

/// `GET /api/v1/queues`: every queue with its callers in order, agents,
/// longest wait and counts.
pub fn list(dialplan: &Arc<dialplan::Runtime>) -> Response {
    let queues = dialplan
        .queues()
        .map(|q| q.snapshot(now_ms()))
        .unwrap_or_default();
    let list: Vec<Value> = queues
        .into_iter()
        .map(|q| {
            json!({
                "name": q.name,
                "strategy": q.strategy,
                "waiting": q.callers.len(),
                "callers": q.callers.iter().map(|c| json!({
                    "position": c.position,
                    "call_id": c.call_id,
                    "from": c.from,
                    "entered_ms": c.entered_ms,
                    "wait_seconds": c.wait_seconds,
                })).collect::<Vec<_>>(),
                "connecting": q.connecting.iter().map(|c| json!({
                    "call_id": c.call_id,
                    "from": c.from,
                    "entered_ms": c.entered_ms,
                    "agents": c.agents,
                })).collect::<Vec<_>>(),
                "agents": q.agents.iter().map(|a| json!({
                    "ext": a.ext,
                    "static": a.is_static,
                    "state": a.state,
                    "in_call": a.state == "in_call",
                    "last_call_ms": a.last_call_ms,
                    "calls_taken": a.calls_taken,
                    "wrapup_until_ms": a.wrapup_until_ms,
                })).collect::<Vec<_>>(),
                "longest_wait_seconds": q.longest_wait_seconds,
                "answered": q.answered,
                "abandoned": q.abandoned,
            })
        })
        .collect();
    Json(json!({ "queues": list })).into_response()
}

fn describe_metrics() {
    metrics::describe_gauge!(
        "queue_callers_waiting",
        "Callers waiting in the queue (not those whose agents are being rung)."
    );
    metrics::describe_gauge!(
        "queue_longest_wait_seconds",
        "The longest wait of a caller now waiting in the queue, in seconds."
    );
    metrics::describe_counter!(
        "queue_answered_total",
        "Queue callers an agent answered (counted when that call ends)."
    );
    metrics::describe_counter!(
        "queue_abandoned_total",
        "Queue callers who hung up while waiting."
    );
}

/// Sets the queue metrics from the queues' state (at each scrape).
pub fn record_metrics(dialplan: &Arc<dialplan::Runtime>) {
    static DESCRIBED: std::sync::Once = std::sync::Once::new();
    DESCRIBED.call_once(describe_metrics);
    let Some(queues) = dialplan.queues() else {
        return;
    };
    for q in queues.snapshot(now_ms()) {
        let name = q.name.clone();
        metrics::gauge!("queue_callers_waiting", "queue" => name.clone())
            .set(q.callers.len() as f64);
        metrics::gauge!("queue_longest_wait_seconds", "queue" => name.clone())
            .set(q.longest_wait_seconds as f64);
        metrics::counter!("queue_answered_total", "queue" => name.clone()).absolute(q.answered);
        metrics::counter!("queue_abandoned_total", "queue" => name).absolute(q.abandoned);
    }
}
