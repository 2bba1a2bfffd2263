//! Metric names and labels the endpoint reports (Prometheus via `metrics`).
//! Label values are bounded: unknown methods count as `other`.

use sip_proto::Method;

use crate::Transport;

/// A bounded label for a method: extension methods collapse to `other` so a
/// scanner sending random methods cannot grow the metric set.
fn method_label(method: &Method) -> &'static str {
    method.known_name().unwrap_or("other")
}

fn status_label(status: u16) -> String {
    if (100..700).contains(&status) {
        status.to_string()
    } else {
        "other".to_owned()
    }
}

/// A request arrived and parsed.
pub(crate) fn request_in(method: &Method) {
    metrics::counter!("sip_messages_in_total", "kind" => "request", "method" => method_label(method))
        .increment(1);
}

/// A response arrived and parsed.
pub(crate) fn response_in(status: u16) {
    metrics::counter!("sip_messages_in_total", "kind" => "response", "status" => status_label(status))
        .increment(1);
}

/// A response was sent (retransmissions are not counted again).
pub(crate) fn response_out(status: u16) {
    metrics::counter!("sip_messages_out_total", "kind" => "response", "status" => status_label(status))
        .increment(1);
}

/// A message failed to parse or frame.
pub(crate) fn parse_error(transport: Transport) {
    metrics::counter!("sip_parse_errors_total", "transport" => transport.as_str()).increment(1);
}

/// A message was dropped without an answer; `reason` is a fixed string.
pub(crate) fn dropped(reason: &'static str) {
    metrics::counter!("sip_dropped_total", "reason" => reason).increment(1);
}

/// A retransmitted request was answered from (or absorbed by) its transaction.
pub(crate) fn retransmission_absorbed() {
    metrics::counter!("sip_retransmissions_absorbed_total").increment(1);
}

/// A new request found the transaction table full and got 503.
pub(crate) fn transaction_table_full() {
    metrics::counter!("sip_transaction_table_full_total").increment(1);
}
