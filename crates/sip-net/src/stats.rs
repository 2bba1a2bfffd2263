//! Metric names and labels the endpoint reports (Prometheus via `metrics`).
//! Label values are bounded: unknown methods count as `other`.

use std::sync::OnceLock;

use metrics::Counter;
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

/// Method labels [`Counters`] keeps a counter for (more than the methods
/// with a name, and `other`).
const METHOD_SLOTS: usize = 24;
/// Status labels [`Counters`] keeps a counter for: 100 to 699, and `other`.
const STATUS_SLOTS: usize = 601;

/// The counters of every message an endpoint handles, each resolved from
/// the recorder at its first use and kept: `counter!` with labels builds
/// its key (a status label is a new string), hashes it and looks the
/// recorder's registry up every time, several times per call.
pub(crate) struct Counters {
    /// By method label, in the order first seen.
    requests_in: [OnceLock<(&'static str, Counter)>; METHOD_SLOTS],
    /// By status: `status - 100`, or the last for `other`.
    responses_in: Box<[OnceLock<Counter>]>,
    responses_out: Box<[OnceLock<Counter>]>,
}

impl Counters {
    pub(crate) fn new() -> Counters {
        let statuses = || (0..STATUS_SLOTS).map(|_| OnceLock::new()).collect();
        Counters {
            requests_in: std::array::from_fn(|_| OnceLock::new()),
            responses_in: statuses(),
            responses_out: statuses(),
        }
    }

    /// A request arrived and parsed.
    pub(crate) fn request_in(&self, method: &Method) {
        let label = method_label(method);
        for slot in &self.requests_in {
            let (seen, counter) = slot.get_or_init(|| (label, request_counter(label)));
            if *seen == label {
                counter.increment(1);
                return;
            }
        }
        // Only with more method labels than slots, which there are not.
        request_counter(label).increment(1);
    }

    /// A response arrived and parsed.
    pub(crate) fn response_in(&self, status: u16) {
        self.responses_in[status_slot(status)]
            .get_or_init(|| {
                metrics::counter!("sip_messages_in_total", "kind" => "response", "status" => status_label(status))
            })
            .increment(1);
    }

    /// A response was sent (retransmissions are not counted again).
    pub(crate) fn response_out(&self, status: u16) {
        self.responses_out[status_slot(status)]
            .get_or_init(|| {
                metrics::counter!("sip_messages_out_total", "kind" => "response", "status" => status_label(status))
            })
            .increment(1);
    }
}

fn request_counter(label: &'static str) -> Counter {
    metrics::counter!("sip_messages_in_total", "kind" => "request", "method" => label)
}

/// The slot of `status`'s label in [`Counters`].
fn status_slot(status: u16) -> usize {
    if (100..700).contains(&status) {
        usize::from(status - 100)
    } else {
        STATUS_SLOTS - 1
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_counters_count_what_the_labelled_macros_counted() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let counters = Counters::new();
            for method in [Method::Invite, Method::Ack, Method::Invite] {
                counters.request_in(&method);
            }
            counters.request_in(&Method::from_token("FOO"));
            for status in [200, 407, 200, 99, 700] {
                counters.response_in(status);
            }
            counters.response_out(180);
            counters.response_out(180);
        });
        let text = handle.render();
        let mut lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("sip_messages"))
            .collect();
        lines.sort_unstable();
        assert_eq!(
            lines,
            [
                r#"sip_messages_in_total{kind="request",method="ACK"} 1"#,
                r#"sip_messages_in_total{kind="request",method="INVITE"} 2"#,
                r#"sip_messages_in_total{kind="request",method="other"} 1"#,
                r#"sip_messages_in_total{kind="response",status="200"} 2"#,
                r#"sip_messages_in_total{kind="response",status="407"} 1"#,
                r#"sip_messages_in_total{kind="response",status="other"} 2"#,
                r#"sip_messages_out_total{kind="response",status="180"} 2"#,
            ]
        );
    }
}
