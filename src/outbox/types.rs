//! The outbox's data model: what dispatch stores, what the sender claims and records, and what
//! status and the log show. Shared by every storage engine.

use crate::config::{self, Format};

/// Current schema version (SQLite `PRAGMA user_version`, MySQL `meta.schema_version`).
pub const SCHEMA_VERSION: i32 = 2;
/// First bytes of the response kept per attempt.
pub const RESPONSE_SNIPPET: usize = 1024;
/// How long a replaced secret keeps signing too (two `v1,` signatures), so receivers can roll over.
pub const ROTATION_SECONDS: f64 = 86_400.0;
/// Consecutive retryable failures that open an endpoint's circuit breaker.
pub const BREAKER_THRESHOLD: i64 = 5;
/// Longest pause of an open breaker before it probes again.
pub const BREAKER_MAX_PAUSE: f64 = 15.0;

/// Pause of an endpoint's breaker after `failures` consecutive failures: it follows the
/// endpoint's own retry schedule from its first delay on, at least 1 s and at most
/// [`BREAKER_MAX_PAUSE`] (a CRM that is back is probed within seconds; a probe costs one request).
pub fn breaker_pause(delays: &[f64], failures: i64) -> f64 {
    let k = (failures - BREAKER_THRESHOLD).max(0) as usize;
    let d = delays.get(k).or(delays.last()).copied().unwrap_or(5.0);
    d.clamp(1.0, BREAKER_MAX_PAUSE)
}

/// Delivery states as stored.
pub mod state {
    pub const QUEUED: i64 = 0;
    pub const READY: i64 = 1;
    pub const INFLIGHT: i64 = 2;
    pub const DELIVERED: i64 = 3;
    pub const DEAD: i64 = 4;
    pub const SUPERSEDED: i64 = 5;
    /// Only in `stats`: events no endpoint matched.
    pub const UNROUTED: i64 = 6;

    pub fn name(s: i64) -> &'static str {
        match s {
            QUEUED => "queued",
            READY => "pending",
            INFLIGHT => "in_flight",
            DELIVERED => "delivered",
            DEAD => "dead",
            SUPERSEDED => "superseded",
            _ => "unrouted",
        }
    }
}

/// Who opens the outbox: the request path (PHP thread) or a sender thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Request,
    Sender,
}

/// An endpoint as stored (secrets as stored).
#[derive(Debug, Clone)]
pub struct EndpointRow {
    pub id: i64,
    pub name: String,
    pub url: String,
    pub secret: String,
    pub prev_secret: String,
    pub prev_secret_until: f64,
    pub topics: Vec<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<f64>,
    pub rate_limit: f64,
    pub timeout: f64,
    pub proxy: String,
    pub format: Format,
    pub retry_delays: String,
    pub source: String,
    pub consecutive_failures: i64,
    pub breaker_until: f64,
    pub last_success_at: Option<f64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<f64>,
    /// Networks this endpoint may reach besides the public internet (CIDR list).
    pub allow_networks: String,
    /// Why the destination policy refuses its address (cleared by a delivery or a save).
    pub refused_reason: Option<String>,
    /// No attempt before this time while refused.
    pub refused_until: f64,
    pub signature: config::SignatureMode,
    pub hash_algorithm: config::HashAlgorithm,
    pub success_codes: config::SuccessCodes,
    pub user_agent: String,
    pub headers: Vec<(String, String)>,
    pub wc_webhook_id: Option<i64>,
}

impl EndpointRow {
    /// Whether new events are routed to it (configured, switched on, topic filter matches).
    pub fn routes(&self, topic: &str) -> bool {
        self.enabled && !self.url.is_empty() && config::topic_matches(&self.topics, topic)
    }
    /// Whether the sender may attempt its deliveries now.
    pub fn sendable(&self) -> bool {
        self.enabled && !self.url.is_empty() && self.disabled_at.is_none()
    }
}

/// What dispatch stores.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub topic: &'a str,
    pub key: Option<&'a str>,
    pub coalesce: bool,
    pub endpoints: Option<Vec<String>>,
    /// The payload, already encoded as JSON.
    pub data: &'a str,
    pub max_body_bytes: usize,
    /// A body to send exactly as given instead of the envelope (`data` is then unused).
    pub raw_body: Option<&'a [u8]>,
    /// Headers sent with every attempt of this event (a JSON array of [name, value]).
    pub headers: Option<String>,
}

/// A delivery claimed by the sender, with what it needs to send it.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub delivery_id: i64,
    pub endpoint_id: i64,
    pub key: Option<String>,
    pub attempt: i64,
    pub event_id: String,
    pub topic: String,
    pub body: Vec<u8>,
    pub data_offset: usize,
    /// The body is sent as stored whatever the endpoint's format (raw dispatch).
    pub raw: bool,
    /// The event's own headers (JSON array), if any.
    pub headers: Option<String>,
}

/// What the sender decided after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Delivered,
    /// Try again after this many seconds (from the engine's clock when recorded).
    RetryIn(f64),
    Dead,
    /// Dead, and the endpoint is disabled with this reason (HTTP 410).
    DeadAndDisable(String),
    /// The destination policy refuses the endpoint's address: not the event's fault, it waits
    /// (the attempt does not count) and the endpoint pauses with this reason.
    Refused(String),
    /// Not attempted: the sender could not be sure it still held the election when the attempt
    /// was due (MySQL lease). Back to ready, nothing logged, the attempt not counted.
    NotAttempted,
}

/// One finished attempt to record.
#[derive(Debug, Clone)]
pub struct Finished {
    pub delivery_id: i64,
    pub endpoint_id: i64,
    pub key: Option<String>,
    pub started_at: f64,
    pub duration_ms: f64,
    pub http_status: Option<u16>,
    pub error_class: Option<String>,
    pub error: Option<String>,
    pub response: Vec<u8>,
    pub delivery_uuid: String,
    pub decision: Decision,
    /// The failure says the endpoint is unhealthy (feeds the circuit breaker).
    pub endpoint_failure: bool,
    /// How long the breaker pauses the endpoint if this failure opens (or keeps open) it.
    pub breaker_pause: f64,
    /// A success after an outage (the breaker was open): the endpoint's other waiting deliveries
    /// are due now instead of at their own retry times.
    pub after_outage: bool,
}

/// Counts and health for `woosync_status()`.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub queued: i64,
    pub ready: i64,
    pub in_flight: i64,
    pub delivered: i64,
    pub dead: i64,
    pub superseded: i64,
    pub unrouted: i64,
    /// Events stored but not routed to endpoints yet (the sender does that).
    pub routing: i64,
    pub oldest_pending_at: Option<f64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<f64>,
    pub last_success_at: Option<f64>,
    pub endpoints: Vec<EndpointStatus>,
    /// Identity (`<boot id>:<pid>:<start time>`) and host of the last process elected sender.
    pub sender: Option<String>,
    pub sender_host: Option<String>,
    /// Where woosync_migrate moved this outbox (a path or URL with its password; mask it).
    pub moved_to: Option<String>,
    /// A move into this outbox is not finished: its sender routes but claims nothing yet.
    pub importing_from: Option<String>,
}

impl Status {
    pub fn pending(&self) -> i64 {
        self.queued + self.ready + self.in_flight + self.routing
    }
}

#[derive(Debug, Clone)]
pub struct EndpointStatus {
    pub row: EndpointRow,
    pub counts: [i64; 6],
}

/// One attempt as recorded.
#[derive(Debug, Clone)]
pub struct AttemptRow {
    pub endpoint: String,
    pub started_at: f64,
    pub duration_ms: f64,
    pub http_status: Option<i64>,
    pub error_class: Option<String>,
    pub error: Option<String>,
    pub response: Option<Vec<u8>>,
    pub delivery_uuid: Option<String>,
}

/// One delivery of an event as shown in the log.
#[derive(Debug, Clone)]
pub struct DeliveryRow {
    pub endpoint: String,
    pub state: i64,
    /// Attempts logged for this delivery (a retry of a dead one keeps counting).
    pub attempts: i64,
    pub next_attempt_at: f64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub updated_at: f64,
}

/// An event with its deliveries and attempts.
#[derive(Debug, Clone)]
pub struct EventDetail {
    pub event_id: String,
    pub topic: String,
    pub key: Option<String>,
    pub seq: i64,
    pub created_at: f64,
    pub unrouted: bool,
    pub body: Vec<u8>,
    pub data_offset: usize,
    /// The body was given as is (raw dispatch): it is the payload.
    pub raw: bool,
    pub deliveries: Vec<DeliveryRow>,
    pub attempts: Vec<AttemptRow>,
}

/// Filter for [`Outbox::events`].
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub state: Option<i64>,
    pub topic: Option<String>,
    pub key: Option<String>,
    /// Keys starting with this (a multisite site's `site:<blog id>:`).
    pub key_prefix: Option<String>,
    /// Deliveries to any of these endpoints.
    pub endpoints: Option<Vec<String>>,
    pub since: Option<f64>,
    pub limit: i64,
    pub offset: i64,
}

/// A row of the event list.
#[derive(Debug, Clone)]
pub struct EventSummary {
    pub event_id: String,
    pub topic: String,
    pub key: Option<String>,
    pub seq: i64,
    pub created_at: f64,
    pub state: i64,
    pub endpoint: Option<String>,
    /// Attempts logged for this delivery (a retry of a dead one keeps counting).
    pub attempts: i64,
    pub next_attempt_at: Option<f64>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    /// Duration of the delivery's last attempt.
    pub last_duration_ms: Option<f64>,
}
