//! Prometheus metrics (`woosync_metrics()`, text exposition format 0.0.4).
//!
//! Counters are kept in the outbox (table `counters`), added to by the sender in the same
//! transaction that records attempts, so they are monotonic: purges, retries and erasure, which
//! remove rows, never lower them. Gauges are read from the maintained state counts. The attempt
//! duration histogram stores one count per bucket (not cumulative); the exposition makes the
//! buckets cumulative, with `+Inf` equal to `_count`.

use crate::outbox::{Decision, Finished};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Upper bounds (seconds) of the attempt duration histogram.
pub const BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// One stored counter: (endpoint id, name, label) → value.
pub type Key = (i64, &'static str, String);

pub const ATTEMPTS: &str = "attempts";
pub const DELIVERED: &str = "delivered";
pub const DEAD: &str = "dead";
pub const DURATION_BUCKET: &str = "duration_bucket";
pub const DURATION_SUM: &str = "duration_sum";
pub const DURATION_COUNT: &str = "duration_count";

/// What a finished attempt was: delivered, retried, dead or refused.
pub fn outcome(d: &Decision) -> &'static str {
    match d {
        Decision::Delivered => "delivered",
        Decision::RetryIn(_) => "retried",
        Decision::Dead | Decision::DeadAndDisable(_) => "dead",
        Decision::Refused(_) => "refused",
        Decision::NotAttempted => "not_attempted",
    }
}

/// The class of an attempt's result: `2xx`…`5xx`, or the error class (timeout, connect, tls, …).
pub fn class(f: &Finished) -> String {
    match (f.http_status, &f.error_class) {
        (Some(code), _) => format!("{}xx", code / 100),
        (None, Some(c)) => c.clone(),
        (None, None) => "error".into(),
    }
}

/// The counter increments of a batch of finished attempts, summed per key.
pub fn deltas(done: &[Finished]) -> BTreeMap<Key, f64> {
    let mut out: BTreeMap<Key, f64> = BTreeMap::new();
    for f in done {
        let e = f.endpoint_id;
        *out.entry((
            e,
            ATTEMPTS,
            format!("{}|{}", outcome(&f.decision), class(f)),
        ))
        .or_default() += 1.0;
        match f.decision {
            Decision::Delivered => *out.entry((e, DELIVERED, String::new())).or_default() += 1.0,
            Decision::Dead | Decision::DeadAndDisable(_) => {
                *out.entry((e, DEAD, String::new())).or_default() += 1.0
            }
            _ => {}
        }
        let secs = f.duration_ms / 1000.0;
        let bucket = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .map_or("+Inf".to_string(), |i| BUCKETS[i].to_string());
        *out.entry((e, DURATION_BUCKET, bucket)).or_default() += 1.0;
        *out.entry((e, DURATION_SUM, String::new())).or_default() += secs;
        *out.entry((e, DURATION_COUNT, String::new())).or_default() += 1.0;
    }
    out
}

/// Per-endpoint state for the gauges.
#[derive(Debug, Clone, Default)]
pub struct EndpointGauges {
    pub name: String,
    pub pending: i64,
    pub in_flight: i64,
    pub breaker_open: bool,
    pub refused: bool,
    pub disabled: bool,
}

/// Everything one scrape shows.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// (endpoint name, counter name, label, value).
    pub counters: Vec<(String, String, String, f64)>,
    pub endpoints: Vec<EndpointGauges>,
    pub oldest_pending_age: Option<f64>,
    pub unrouted: i64,
    pub sender_up: bool,
    pub version: String,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// The text exposition format (version 0.0.4).
pub fn render(s: &Snapshot) -> String {
    let mut out = String::with_capacity(4096);
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
    };
    let counter = |name: &str| {
        s.counters
            .iter()
            .filter(move |c| c.1 == name)
            .collect::<Vec<_>>()
    };
    // One endpoint's value of a counter without labels (0 when it has none yet).
    let value = |name: &str, endpoint: &str| {
        s.counters
            .iter()
            .find(|c| c.1 == name && c.0 == endpoint)
            .map_or(0.0, |c| c.3)
    };

    family(&mut out, "woosync_attempts_total", "counter", "Delivery attempts by endpoint, outcome (delivered, retried, dead, refused) and class (2xx..5xx or the error class).");
    for (ep, _, label, v) in counter(ATTEMPTS) {
        let (outcome, class) = label.split_once('|').unwrap_or((label.as_str(), ""));
        let _ = writeln!(
            out,
            "woosync_attempts_total{{endpoint=\"{}\",outcome=\"{}\",class=\"{}\"}} {}",
            escape(ep),
            escape(outcome),
            escape(class),
            num(*v)
        );
    }
    for (metric, key, help) in [
        (
            "woosync_delivered_total",
            DELIVERED,
            "Deliveries that reached the endpoint.",
        ),
        (
            "woosync_dead_total",
            DEAD,
            "Deliveries that gave up (dead letters).",
        ),
    ] {
        family(&mut out, metric, "counter", help);
        for e in &s.endpoints {
            let v = value(key, &e.name);
            let _ = writeln!(
                out,
                "{metric}{{endpoint=\"{}\"}} {}",
                escape(&e.name),
                num(v)
            );
        }
    }

    family(
        &mut out,
        "woosync_attempt_duration_seconds",
        "histogram",
        "Duration of delivery attempts.",
    );
    for e in &s.endpoints {
        let per: Vec<&(String, String, String, f64)> = counter(DURATION_BUCKET)
            .into_iter()
            .filter(|c| c.0 == e.name)
            .collect();
        let mut cumulative = 0.0;
        for b in BUCKETS {
            cumulative += per
                .iter()
                .filter(|c| c.2 == b.to_string())
                .map(|c| c.3)
                .sum::<f64>();
            let _ = writeln!(
                out,
                "woosync_attempt_duration_seconds_bucket{{endpoint=\"{}\",le=\"{}\"}} {}",
                escape(&e.name),
                b,
                num(cumulative)
            );
        }
        let count = value(DURATION_COUNT, &e.name);
        let sum = value(DURATION_SUM, &e.name);
        let _ = writeln!(
            out,
            "woosync_attempt_duration_seconds_bucket{{endpoint=\"{}\",le=\"+Inf\"}} {}",
            escape(&e.name),
            num(count)
        );
        let _ = writeln!(
            out,
            "woosync_attempt_duration_seconds_sum{{endpoint=\"{}\"}} {}",
            escape(&e.name),
            num(sum)
        );
        let _ = writeln!(
            out,
            "woosync_attempt_duration_seconds_count{{endpoint=\"{}\"}} {}",
            escape(&e.name),
            num(count)
        );
    }

    for (metric, help, get) in [
        (
            "woosync_pending",
            "Deliveries waiting (queued, ready or in flight).",
            (|e: &EndpointGauges| e.pending as f64) as fn(&EndpointGauges) -> f64,
        ),
        (
            "woosync_in_flight",
            "Deliveries being attempted now.",
            |e: &EndpointGauges| e.in_flight as f64,
        ),
        (
            "woosync_breaker_open",
            "1 while the endpoint's circuit breaker pauses it.",
            |e: &EndpointGauges| e.breaker_open as i64 as f64,
        ),
        (
            "woosync_destination_refused",
            "1 while the destination policy refuses the endpoint's address.",
            |e: &EndpointGauges| e.refused as i64 as f64,
        ),
        (
            "woosync_endpoint_disabled",
            "1 while the endpoint is disabled (HTTP 410).",
            |e: &EndpointGauges| e.disabled as i64 as f64,
        ),
    ] {
        family(&mut out, metric, "gauge", help);
        for e in &s.endpoints {
            let _ = writeln!(
                out,
                "{metric}{{endpoint=\"{}\"}} {}",
                escape(&e.name),
                num(get(e))
            );
        }
    }
    family(
        &mut out,
        "woosync_unrouted",
        "gauge",
        "Events no endpoint took.",
    );
    let _ = writeln!(out, "woosync_unrouted {}", s.unrouted);
    family(
        &mut out,
        "woosync_oldest_pending_age_seconds",
        "gauge",
        "Age of the oldest event still waiting (0 when none).",
    );
    let _ = writeln!(
        out,
        "woosync_oldest_pending_age_seconds {}",
        num(s.oldest_pending_age.unwrap_or(0.0))
    );
    family(
        &mut out,
        "woosync_sender_up",
        "gauge",
        "1 when a live sender holds this outbox.",
    );
    let _ = writeln!(out, "woosync_sender_up {}", s.sender_up as i64);
    family(
        &mut out,
        "woosync_info",
        "gauge",
        "The extension's version.",
    );
    let _ = writeln!(out, "woosync_info{{version=\"{}\"}} 1", escape(&s.version));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fin(endpoint_id: i64, ms: f64, status: Option<u16>, d: Decision) -> Finished {
        Finished {
            delivery_id: 1,
            endpoint_id,
            key: None,
            started_at: 0.0,
            duration_ms: ms,
            http_status: status,
            error_class: if status.is_none() {
                Some("timeout".into())
            } else {
                None
            },
            error: None,
            response: vec![],
            delivery_uuid: String::new(),
            decision: d,
            endpoint_failure: false,
            breaker_pause: 1.0,
            after_outage: false,
        }
    }

    #[test]
    fn deltas_and_cumulative_histogram() {
        let d = deltas(&[
            fin(1, 3.0, Some(200), Decision::Delivered),
            fin(1, 70_000.0, None, Decision::RetryIn(1.0)),
            fin(1, 40.0, Some(500), Decision::Dead),
        ]);
        assert_eq!(d[&(1, ATTEMPTS, "delivered|2xx".to_string())], 1.0);
        assert_eq!(d[&(1, ATTEMPTS, "retried|timeout".to_string())], 1.0);
        assert_eq!(d[&(1, DEAD, String::new())], 1.0);
        assert_eq!(d[&(1, DURATION_BUCKET, "+Inf".to_string())], 1.0);
        let snap = Snapshot {
            counters: d
                .iter()
                .map(|((_, n, l), v)| ("crm".to_string(), n.to_string(), l.clone(), *v))
                .collect(),
            endpoints: vec![EndpointGauges {
                name: "crm".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = render(&snap);
        assert!(
            text.contains(
                "woosync_attempt_duration_seconds_bucket{endpoint=\"crm\",le=\"0.005\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "woosync_attempt_duration_seconds_bucket{endpoint=\"crm\",le=\"0.05\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "woosync_attempt_duration_seconds_bucket{endpoint=\"crm\",le=\"60\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "woosync_attempt_duration_seconds_bucket{endpoint=\"crm\",le=\"+Inf\"} 3\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("woosync_attempt_duration_seconds_count{endpoint=\"crm\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("woosync_dead_total{endpoint=\"crm\"} 1\n"));
    }
}
