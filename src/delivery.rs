//! One HTTP delivery attempt and the classification of its outcome.
//!
//! HTTP is configured explicitly (see `make_agent`): redirects are not followed (a 3xx is a failed
//! attempt, logged with its Location), status codes are read rather than turned into errors, TLS is
//! always verified, and no proxy is taken from the environment (php-fpm clears it, the CLI does not,
//! so the two would differ).

use crate::config::Format;
use crate::event;
use crate::outbox::{Decision, RESPONSE_SNIPPET};
use crate::retry::{self, RetrySchedule};
use crate::signer::{self, Secret};
use std::io::Read;
use std::time::{Duration, Instant};

/// Bytes of a response body read to keep the connection reusable; more closes it.
const DRAIN_LIMIT: usize = 64 * 1024;

/// How an HTTP status is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    Success,
    Retry,
    Permanent,
    Gone,
}

/// 2xx success; 408, 425, 429, 5xx and 3xx retried; 410 gone; other 4xx (and 1xx) permanent.
pub fn classify_status(code: u16) -> StatusClass {
    match code {
        200..=299 => StatusClass::Success,
        410 => StatusClass::Gone,
        408 | 425 | 429 | 300..=399 | 500..=599 => StatusClass::Retry,
        _ => StatusClass::Permanent,
    }
}

/// Where and how to send (copied from the outbox by the sender; no PHP state).
#[derive(Clone)]
pub struct Target {
    pub endpoint_id: i64,
    pub name: String,
    pub url: String,
    /// Current secret first, then a previous one still valid during rotation.
    pub secrets: Vec<Secret>,
    pub format: Format,
    pub source: String,
    pub retry: RetrySchedule,
    pub timeout: f64,
    pub agent: ureq::Agent,
}

/// What one attempt produced.
#[derive(Debug, Clone, Default)]
pub struct AttemptOutcome {
    pub started_at: f64,
    pub duration_ms: f64,
    pub http_status: Option<u16>,
    pub error_class: Option<String>,
    pub error: Option<String>,
    pub response: Vec<u8>,
    pub retry_after: Option<f64>,
    pub delivery_uuid: String,
}

/// Builds an agent for one endpoint configuration.
pub fn make_agent(timeout: f64, concurrency: usize, proxy: &str) -> Result<ureq::Agent, String> {
    let proxy = if proxy.trim().is_empty() {
        None
    } else {
        Some(ureq::Proxy::new(proxy.trim()).map_err(|e| format!("invalid proxy {proxy:?}: {e}"))?)
    };
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs_f64(timeout.max(0.1))))
        .max_redirects(0)
        .http_status_as_error(false)
        .max_idle_connections_per_host(concurrency.max(4))
        .max_idle_connections(concurrency.max(4) * 4)
        // ureq's defaults are 128 KB in and out per connection; responses are read for 1 KB and
        // bodies are streamed from memory, so smaller buffers keep the sender's memory small.
        .input_buffer_size(64 * 1024)
        .output_buffer_size(16 * 1024)
        .proxy(proxy)
        .user_agent(format!("woosync/{}", env!("CARGO_PKG_VERSION")))
        .accept("*/*")
        .accept_encoding("identity")
        .build();
    Ok(config.into())
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    let _ = getrandom::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Every header of one attempt (besides Content-Type and User-Agent, set by the agent call).
pub fn headers(
    target: &Target,
    event_id: &str,
    topic: &str,
    body: &[u8],
    timestamp: i64,
    delivery_uuid: &str,
) -> Vec<(String, String)> {
    let (resource, ev) = event::resource_and_event(topic);
    let mut h: Vec<(String, String)> = vec![
        (signer::HEADER_ID.into(), event_id.into()),
        (signer::HEADER_TIMESTAMP.into(), timestamp.to_string()),
        (signer::WC_TOPIC.into(), topic.into()),
        (signer::WC_RESOURCE.into(), resource.into()),
        (signer::WC_EVENT.into(), ev.into()),
        (signer::WC_DELIVERY_ID.into(), delivery_uuid.into()),
        (signer::WC_WEBHOOK_ID.into(), target.endpoint_id.to_string()),
    ];
    if !target.source.is_empty() {
        h.push((signer::WC_SOURCE.into(), target.source.clone()));
    }
    if let Some(first) = target.secrets.first() {
        let all: Vec<&Secret> = target.secrets.iter().collect();
        h.push((
            signer::HEADER_SIGNATURE.into(),
            signer::signature_header(&all, event_id, timestamp, body),
        ));
        h.push((
            signer::WC_SIGNATURE.into(),
            signer::wc_signature(first, body),
        ));
    }
    h
}

/// The class (`timeout`, `dns`, `connect`, `tls`, `proxy`, `io`, `http`) and the text of a failed
/// attempt. The text never repeats the class (the log shows "class: text") and never shows a
/// password from a URL.
fn describe_error(e: &ureq::Error, timeout: f64) -> (&'static str, String) {
    let (class, text) = match e {
        ureq::Error::Timeout(t) => ("timeout", format!("no complete response within {timeout} s ({t})")),
        ureq::Error::HostNotFound => ("dns", "host not found".to_string()),
        ureq::Error::ConnectionFailed => ("connect", "connection failed".to_string()),
        ureq::Error::Io(io) => {
            let tls = io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>());
            match (tls, io.kind()) {
                (Some(t), _) => ("tls", t.to_string()),
                (None, std::io::ErrorKind::ConnectionRefused) => ("connect", io.to_string()),
                (None, std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock) => {
                    ("timeout", io.to_string())
                }
                (None, _) => ("io", io.to_string()),
            }
        }
        ureq::Error::Tls(m) => ("tls", m.to_string()),
        ureq::Error::Rustls(r) => ("tls", r.to_string()),
        ureq::Error::TlsRequired => ("tls", "TLS is required".to_string()),
        ureq::Error::ConnectProxyFailed(m) => ("proxy", format!("the proxy refused: {m}")),
        ureq::Error::InvalidProxyUrl => ("proxy", "invalid proxy URL".to_string()),
        other => ("http", other.to_string()),
    };
    (class, crate::redact::text(&text))
}

/// Sends one attempt. Never panics on network trouble: every failure is an outcome.
pub fn attempt(
    target: &Target,
    event_id: &str,
    topic: &str,
    stored_body: &[u8],
    data_offset: usize,
) -> AttemptOutcome {
    let body: &[u8] = match target.format {
        Format::Standard => stored_body,
        Format::WooCommerce => event::data_of(stored_body, data_offset),
    };
    let started_at = event::now();
    let clock = Instant::now();
    let delivery_uuid = random_hex(16);
    let mut out = AttemptOutcome {
        started_at,
        delivery_uuid: delivery_uuid.clone(),
        ..Default::default()
    };
    let mut req = target
        .agent
        .post(&target.url)
        .header("Content-Type", "application/json");
    for (k, v) in headers(
        target,
        event_id,
        topic,
        body,
        started_at as i64,
        &delivery_uuid,
    ) {
        req = req.header(k, v);
    }
    match req.send(body) {
        Ok(mut resp) => {
            let code = resp.status().as_u16();
            out.http_status = Some(code);
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(|s| s.to_string())
            };
            out.retry_after =
                header("retry-after").and_then(|v| retry::parse_retry_after(&v, event::now()));
            if (300..400).contains(&code) {
                out.error = Some(format!(
                    "redirect not followed; Location: {}",
                    crate::redact::text(&header("location").unwrap_or_default())
                ));
            }
            let mut snippet = Vec::with_capacity(256);
            let mut reader = resp.body_mut().as_reader();
            let mut buf = [0u8; 4096];
            let mut total = 0usize;
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if snippet.len() < RESPONSE_SNIPPET {
                            let take = n.min(RESPONSE_SNIPPET - snippet.len());
                            snippet.extend_from_slice(&buf[..take]);
                        }
                        total += n;
                        if total > DRAIN_LIMIT {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
            out.response = snippet;
        }
        Err(e) => {
            let (class, text) = describe_error(&e, target.timeout);
            out.error_class = Some(class.to_string());
            out.error = Some(text);
        }
    }
    out.duration_ms = clock.elapsed().as_secs_f64() * 1000.0;
    out
}

/// Decides what happens to a delivery after attempt number `attempts_made` (1-based).
pub fn decide(
    o: &AttemptOutcome,
    schedule: &RetrySchedule,
    attempts_made: u32,
    now: f64,
    jitter: f64,
    url: &str,
) -> Decision {
    let class = match o.http_status {
        Some(code) => classify_status(code),
        None => StatusClass::Retry,
    };
    match class {
        StatusClass::Success => Decision::Delivered,
        StatusClass::Permanent => Decision::Dead,
        StatusClass::Gone => Decision::DeadAndDisable(format!(
            "{} answered 410 Gone; save the endpoint (or change its URL) to re-enable it",
            crate::redact::url(url)
        )),
        StatusClass::Retry => {
            if attempts_made >= schedule.max_attempts() {
                return Decision::Dead;
            }
            match (o.retry_after, schedule.next_delay(attempts_made, jitter)) {
                (Some(ra), Some(_)) => Decision::RetryAt(now + ra),
                (None, Some(d)) => Decision::RetryAt(now + d),
                (_, None) => Decision::Dead,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert_eq!(classify_status(200), StatusClass::Success);
        assert_eq!(classify_status(204), StatusClass::Success);
        for c in [408, 425, 429, 500, 503, 599, 301, 302] {
            assert_eq!(classify_status(c), StatusClass::Retry, "{c}");
        }
        assert_eq!(classify_status(410), StatusClass::Gone);
        for c in [400, 401, 403, 404, 422, 100] {
            assert_eq!(classify_status(c), StatusClass::Permanent, "{c}");
        }
    }

    fn outcome(status: Option<u16>, ra: Option<f64>) -> AttemptOutcome {
        AttemptOutcome {
            http_status: status,
            retry_after: ra,
            ..Default::default()
        }
    }

    #[test]
    fn decisions() {
        let s = RetrySchedule::parse("10,20").unwrap();
        assert_eq!(
            decide(&outcome(Some(200), None), &s, 1, 0.0, 0.5, "u"),
            Decision::Delivered
        );
        assert_eq!(
            decide(&outcome(Some(400), None), &s, 1, 0.0, 0.5, "u"),
            Decision::Dead
        );
        assert!(matches!(
            decide(&outcome(Some(410), None), &s, 1, 0.0, 0.5, "u"),
            Decision::DeadAndDisable(_)
        ));
        assert_eq!(
            decide(&outcome(Some(500), None), &s, 1, 100.0, 0.5, "u"),
            Decision::RetryAt(110.0)
        );
        assert_eq!(
            decide(&outcome(None, None), &s, 2, 100.0, 0.5, "u"),
            Decision::RetryAt(120.0)
        );
        assert_eq!(
            decide(&outcome(Some(500), None), &s, 3, 100.0, 0.5, "u"),
            Decision::Dead
        );
        assert_eq!(
            decide(&outcome(Some(429), Some(7.0)), &s, 1, 100.0, 0.9, "u"),
            Decision::RetryAt(107.0)
        );
        assert_eq!(
            decide(&outcome(Some(429), Some(7.0)), &s, 3, 100.0, 0.9, "u"),
            Decision::Dead
        );
    }

    #[test]
    fn header_set() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let t = Target {
            endpoint_id: 3,
            name: "default".into(),
            url: "http://x".into(),
            secrets: vec![secret.clone()],
            format: Format::Standard,
            source: "https://shop.example".into(),
            retry: RetrySchedule::parse("1").unwrap(),
            timeout: 1.0,
            agent: make_agent(1.0, 4, "").unwrap(),
        };
        let h = headers(&t, "evt_1", "order.status_changed", b"{}", 1000, "uuid");
        let get = |n: &str| {
            h.iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(get("X-WC-Webhook-Resource"), "order");
        assert_eq!(get("X-WC-Webhook-Event"), "status_changed");
        assert_eq!(get("X-WC-Webhook-Source"), "https://shop.example");
        assert_eq!(get("X-WC-Webhook-ID"), "3");
        assert_eq!(
            get("webhook-signature"),
            signer::sign(&secret, "evt_1", 1000, b"{}")
        );
        let hv: Vec<(String, String)> = h.clone();
        assert!(signer::verify(b"{}", &hv, &secret.text, 10, 1000).unwrap());
        let unsigned = Target {
            secrets: vec![],
            ..t
        };
        assert!(!headers(&unsigned, "evt_1", "a.b", b"{}", 1, "u")
            .iter()
            .any(|(k, _)| k.contains("ignature")));
    }

    #[test]
    fn refused_connection_is_a_retryable_outcome() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let t = Target {
            endpoint_id: 1,
            name: "d".into(),
            url: format!("http://127.0.0.1:{port}/"),
            secrets: vec![],
            format: Format::Standard,
            source: String::new(),
            retry: RetrySchedule::parse("1").unwrap(),
            timeout: 2.0,
            agent: make_agent(2.0, 4, "").unwrap(),
        };
        let o = attempt(&t, "evt_1", "a.b", b"{}", 0);
        assert_eq!(o.http_status, None);
        assert_eq!(o.error_class.as_deref(), Some("connect"), "{:?}", o.error);
    }
}
