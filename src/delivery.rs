//! One HTTP delivery attempt and the classification of its outcome.
//!
//! HTTP is configured explicitly (see `make_agent`): redirects are not followed (a 3xx is a failed
//! attempt, logged with its Location), status codes are read rather than turned into errors, TLS is
//! always verified, and no proxy is taken from the environment (php-fpm clears it, the CLI does not,
//! so the two would differ).

use crate::config::{Format, HashAlgorithm, SignatureMode, SuccessCodes};
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

/// How a status is treated by an endpoint with these success codes: a listed status is success
/// (WooCommerce counts 200-302), a 2xx that is not listed is retried, the rest as
/// [`classify_status`].
pub fn classify_for(code: u16, success: &SuccessCodes) -> StatusClass {
    if success.contains(code) {
        StatusClass::Success
    } else if (200..=299).contains(&code) {
        StatusClass::Retry
    } else {
        classify_status(code)
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
    pub signature: SignatureMode,
    pub hash_algorithm: HashAlgorithm,
    pub success_codes: SuccessCodes,
    /// User-Agent of every request (empty: the agent's `woosync/<version>`).
    pub user_agent: String,
    /// Headers of every request to this endpoint.
    pub headers: Vec<(String, String)>,
    /// X-WC-Webhook-ID (a mirrored WooCommerce webhook's id; else the endpoint id).
    pub wc_webhook_id: Option<i64>,
}

impl Target {
    /// A target with woosync's defaults for everything but the essentials (tests, simple uses).
    pub fn simple(
        endpoint_id: i64,
        url: &str,
        secrets: Vec<Secret>,
        retry: RetrySchedule,
        agent: ureq::Agent,
    ) -> Target {
        Target {
            endpoint_id,
            name: "default".into(),
            url: url.into(),
            secrets,
            format: Format::Standard,
            source: String::new(),
            retry,
            timeout: 15.0,
            agent,
            signature: SignatureMode::Standard,
            hash_algorithm: HashAlgorithm::Sha256,
            success_codes: SuccessCodes::default(),
            user_agent: String::new(),
            headers: Vec::new(),
            wc_webhook_id: None,
        }
    }
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

/// How long an endpoint whose address the destination policy refuses waits before the next try
/// (the policy or DNS may change meanwhile).
pub const REFUSED_PAUSE: f64 = 60.0;

/// Builds an agent for one endpoint configuration. Every address it connects to (the endpoint's,
/// or its proxy's) is checked against `policy` after DNS.
pub fn make_agent(
    timeout: f64,
    concurrency: usize,
    proxy: &str,
    policy: crate::destination::Policy,
) -> Result<ureq::Agent, String> {
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
    let resolver = crate::destination::PolicyResolver::new(policy);
    use ureq::unversioned::transport::{Connector, DefaultConnector};
    Ok(ureq::Agent::with_parts(
        config,
        DefaultConnector::new().chain(crate::one_write::OneWrite),
        resolver,
    ))
}

fn random_hex(bytes: usize) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut b = [0u8; 32];
    let b = &mut b[..bytes.min(32)];
    let _ = getrandom::fill(b);
    let mut s = String::with_capacity(b.len() * 2);
    for x in b.iter() {
        s.push(HEX[(x >> 4) as usize] as char);
        s.push(HEX[(x & 15) as usize] as char);
    }
    s
}

/// Sets `name: value`, replacing a header of the same name (case-insensitive).
fn set_header(h: &mut Vec<(String, String)>, name: &str, value: String) {
    h.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    h.push((name.to_string(), value));
}

/// Every header of one attempt, in the order of precedence: the defaults (Content-Type,
/// User-Agent), the endpoint's headers, the event's own headers, then woosync's headers (ids,
/// topic, source, signatures), which nothing else can replace.
pub fn headers(
    target: &Target,
    event_id: &str,
    topic: &str,
    body: &[u8],
    timestamp: i64,
    delivery_uuid: &str,
    event_headers: &[(String, String)],
) -> Vec<(String, String)> {
    let (resource, ev) = event::resource_and_event(topic);
    let mut h: Vec<(String, String)> = vec![("Content-Type".into(), "application/json".into())];
    if !target.user_agent.is_empty() {
        h.push(("User-Agent".into(), target.user_agent.clone()));
    }
    for (k, v) in target.headers.iter().chain(event_headers) {
        set_header(&mut h, k, v.clone());
    }
    set_header(&mut h, signer::HEADER_ID, event_id.into());
    set_header(&mut h, signer::HEADER_TIMESTAMP, timestamp.to_string());
    set_header(&mut h, signer::WC_TOPIC, topic.into());
    set_header(&mut h, signer::WC_RESOURCE, resource.into());
    set_header(&mut h, signer::WC_EVENT, ev.into());
    set_header(&mut h, signer::WC_DELIVERY_ID, delivery_uuid.into());
    let wc_id = target.wc_webhook_id.unwrap_or(target.endpoint_id);
    set_header(&mut h, signer::WC_WEBHOOK_ID, wc_id.to_string());
    if !target.source.is_empty() {
        set_header(&mut h, signer::WC_SOURCE, target.source.clone());
    }
    if let Some(first) = target.secrets.first() {
        match target.signature {
            SignatureMode::Standard => {
                let all: Vec<&Secret> = target.secrets.iter().collect();
                set_header(
                    &mut h,
                    signer::HEADER_SIGNATURE,
                    signer::signature_header(&all, event_id, timestamp, body),
                );
                set_header(
                    &mut h,
                    signer::WC_SIGNATURE,
                    signer::wc_signature_with(target.hash_algorithm, first.text.as_bytes(), body),
                );
            }
            SignatureMode::WooCommerce => {
                set_header(
                    &mut h,
                    signer::WC_SIGNATURE,
                    signer::wc_signature_with(target.hash_algorithm, first.text.as_bytes(), body),
                );
            }
        }
    }
    h
}

/// The class (`timeout`, `dns`, `connect`, `tls`, `proxy`, `io`, `http`) and the text of a failed
/// attempt. The text never repeats the class (the log shows "class: text") and never shows a
/// password from a URL.
fn describe_error(e: &ureq::Error, timeout: f64) -> (&'static str, String) {
    let (class, text) = match e {
        ureq::Error::Timeout(t) => (
            "timeout",
            format!("no complete response within {timeout} s ({t})"),
        ),
        ureq::Error::HostNotFound => ("dns", "host not found".to_string()),
        ureq::Error::ConnectionFailed => ("connect", "connection failed".to_string()),
        ureq::Error::Io(io) => {
            if let Some(r) = io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<crate::destination::Refused>())
            {
                return ("refused", r.to_string());
            }
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
    raw: bool,
    event_headers: &[(String, String)],
) -> AttemptOutcome {
    let body: &[u8] = match (raw, target.format) {
        (true, _) | (false, Format::Standard) => stored_body,
        (false, Format::WooCommerce) => event::data_of(stored_body, data_offset),
    };
    let started_at = event::now();
    let clock = Instant::now();
    let delivery_uuid = random_hex(16);
    let mut out = AttemptOutcome {
        started_at,
        delivery_uuid: delivery_uuid.clone(),
        ..Default::default()
    };
    let mut req = target.agent.post(&target.url);
    for (k, v) in headers(
        target,
        event_id,
        topic,
        body,
        started_at as i64,
        &delivery_uuid,
        event_headers,
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

/// Decides what happens to a delivery after attempt number `attempts_made` (1-based). `jitter`
/// (a number in [0, 1)) is drawn only for a retry.
pub fn decide(
    o: &AttemptOutcome,
    schedule: &RetrySchedule,
    attempts_made: u32,
    jitter: impl FnOnce() -> f64,
    url: &str,
    success: &SuccessCodes,
) -> Decision {
    if o.error_class.as_deref() == Some("refused") {
        // Not the event's fault, nor the CRM's: the endpoint waits until its address is allowed.
        return Decision::Refused(o.error.clone().unwrap_or_default());
    }
    let class = match o.http_status {
        Some(code) => classify_for(code, success),
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
            match (o.retry_after, schedule.next_delay(attempts_made, jitter())) {
                (Some(ra), Some(_)) => Decision::RetryIn(ra),
                (None, Some(d)) => Decision::RetryIn(d),
                (_, None) => Decision::Dead,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_ids_are_random_lowercase_hex() {
        let a = random_hex(16);
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
            "{a}"
        );
        assert_ne!(a, random_hex(16));
    }

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
            decide(
                &outcome(Some(200), None),
                &s,
                1,
                || 0.5,
                "u",
                &SuccessCodes::default()
            ),
            Decision::Delivered
        );
        assert_eq!(
            decide(
                &outcome(Some(400), None),
                &s,
                1,
                || 0.5,
                "u",
                &SuccessCodes::default()
            ),
            Decision::Dead
        );
        assert!(matches!(
            decide(
                &outcome(Some(410), None),
                &s,
                1,
                || 0.5,
                "u",
                &SuccessCodes::default()
            ),
            Decision::DeadAndDisable(_)
        ));
        assert_eq!(
            decide(
                &outcome(Some(500), None),
                &s,
                1,
                || 0.5,
                "u",
                &SuccessCodes::default()
            ),
            Decision::RetryIn(10.0)
        );
        assert_eq!(
            decide(
                &outcome(None, None),
                &s,
                2,
                || 0.5,
                "u",
                &SuccessCodes::default()
            ),
            Decision::RetryIn(20.0)
        );
        assert_eq!(
            decide(
                &outcome(Some(500), None),
                &s,
                3,
                || 0.5,
                "u",
                &SuccessCodes::default()
            ),
            Decision::Dead
        );
        assert_eq!(
            decide(
                &outcome(Some(429), Some(7.0)),
                &s,
                1,
                || 0.9,
                "u",
                &SuccessCodes::default()
            ),
            Decision::RetryIn(7.0)
        );
        assert_eq!(
            decide(
                &outcome(Some(429), Some(7.0)),
                &s,
                3,
                || 0.9,
                "u",
                &SuccessCodes::default()
            ),
            Decision::Dead
        );
    }

    #[test]
    fn success_codes_and_header_precedence() {
        let wc = SuccessCodes::parse("200-302").unwrap();
        assert_eq!(classify_for(302, &wc), StatusClass::Success);
        assert_eq!(classify_for(303, &wc), StatusClass::Retry);
        let narrow = SuccessCodes::parse("200").unwrap();
        assert_eq!(classify_for(204, &narrow), StatusClass::Retry);
        assert_eq!(classify_for(410, &narrow), StatusClass::Gone);
        let s = RetrySchedule::parse("10").unwrap();
        assert_eq!(
            decide(&outcome(Some(301), None), &s, 1, || 0.5, "u", &wc),
            Decision::Delivered
        );
        let t = Target {
            user_agent: "WooCommerce/11.0.1 Hookshot (WordPress/7.0.4)".into(),
            headers: vec![
                ("X-Api-Key".into(), "k".into()),
                ("X-WC-Webhook-Topic".into(), "forged".into()),
            ],
            signature: SignatureMode::WooCommerce,
            hash_algorithm: HashAlgorithm::Sha1,
            wc_webhook_id: Some(12),
            ..Target::simple(
                3,
                "http://x",
                vec![Secret {
                    text: "s3cr&t".into(),
                    key: vec![],
                }],
                RetrySchedule::parse("1").unwrap(),
                make_agent(1.0, 4, "", Default::default()).unwrap(),
            )
        };
        let ev = vec![
            (
                "Content-Type".into(),
                "application/json; charset=utf-8".into(),
            ),
            ("X-Api-Key".into(), "per-event".into()),
        ];
        let h = headers(&t, "evt_1", "order.updated", b"{}", 5, "u", &ev);
        let get = |n: &str| {
            h.iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            get("User-Agent"),
            vec!["WooCommerce/11.0.1 Hookshot (WordPress/7.0.4)"]
        );
        assert_eq!(get("Content-Type"), vec!["application/json; charset=utf-8"]);
        assert_eq!(
            get("X-Api-Key"),
            vec!["per-event"],
            "the event's header wins over the endpoint's"
        );
        assert_eq!(
            get("X-WC-Webhook-Topic"),
            vec!["order.updated"],
            "woosync's own headers win"
        );
        assert_eq!(get("X-WC-Webhook-ID"), vec!["12"]);
        assert_eq!(get("webhook-signature"), Vec::<String>::new());
        assert_eq!(
            get("X-WC-Webhook-Signature"),
            vec![signer::wc_signature_with(
                HashAlgorithm::Sha1,
                b"s3cr&t",
                b"{}"
            )]
        );
    }

    #[test]
    fn header_set() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let t = Target {
            endpoint_id: 3,
            source: "https://shop.example".into(),
            timeout: 1.0,
            ..Target::simple(
                3,
                "http://x",
                vec![secret.clone()],
                RetrySchedule::parse("1").unwrap(),
                make_agent(1.0, 4, "", Default::default()).unwrap(),
            )
        };
        let h = headers(
            &t,
            "evt_1",
            "order.status_changed",
            b"{}",
            1000,
            "uuid",
            &[],
        );
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
        assert!(!headers(&unsigned, "evt_1", "a.b", b"{}", 1, "u", &[])
            .iter()
            .any(|(k, _)| k.contains("ignature")));
    }

    #[test]
    fn refused_connection_is_a_retryable_outcome() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let policy = crate::destination::Policy::new(
            &crate::destination::parse_list("127.0.0.1/32").unwrap(),
            &[],
        );
        let t = Target {
            timeout: 2.0,
            ..Target::simple(
                1,
                &format!("http://127.0.0.1:{port}/"),
                vec![],
                RetrySchedule::parse("1").unwrap(),
                make_agent(2.0, 4, "", policy).unwrap(),
            )
        };
        let o = attempt(&t, "evt_1", "a.b", b"{}", 0, false, &[]);
        assert_eq!(o.http_status, None);
        assert_eq!(o.error_class.as_deref(), Some("connect"), "{:?}", o.error);
    }
}
