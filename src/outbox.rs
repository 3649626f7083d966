//! The SQLite outbox: schema, migrations, the durable INSERT of dispatch, claims with leases,
//! recording attempts, per-key order, and the queries behind status and the log.
//!
//! One file is shared by every PHP process of a site. WAL mode with `synchronous=NORMAL`: a commit
//! survives the death of the process (not a power cut) without an fsync per dispatch. All writes are
//! short `BEGIN IMMEDIATE` transactions; a busy handler that sleeps in steps of tens of microseconds
//! waits for other writers, so `SQLITE_BUSY` never reaches PHP within [`BUSY_WAIT`].
//!
//! Per-key order: every delivery row carries its event's `key` and `seq`. Of the open rows of one
//! (endpoint, key) only the head is `ready` or `inflight`; the others are `queued` until the head
//! finishes (delivered, dead or superseded), when the next one is promoted in the same transaction.
//! Claims therefore only look at `ready` rows and never scan blocked ones.

use crate::config::{self, DefaultEndpoint, EndpointConfig, Format};
use crate::error::{quote, Error, Result};
use crate::event::{self, Envelope};
use crate::secrets::{self, StoreKey};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `PRAGMA application_id` of a woosync outbox ("woos").
pub const APPLICATION_ID: i32 = 0x776f_6f73;
/// Current schema version (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i32 = 1;
/// Longest time a statement waits for another process's write lock before failing.
pub const BUSY_WAIT: Duration = Duration::from_secs(10);
/// First bytes of the response kept per attempt.
pub const RESPONSE_SNIPPET: usize = 1024;
/// How long a replaced secret keeps signing too (two `v1,` signatures), so receivers can roll over.
pub const ROTATION_SECONDS: f64 = 86_400.0;
/// WAL size (in frames, ~4 KB each) past which the sender rewinds the log: 8192 frames ≈ 32 MB.
pub const WAL_RESTART_FRAMES: i64 = 8192;
/// Consecutive retryable failures that open an endpoint's circuit breaker.
pub const BREAKER_THRESHOLD: i64 = 5;
/// Longest pause of an open breaker before it probes again.
pub const BREAKER_MAX_PAUSE: f64 = 600.0;

/// Pause of an endpoint's breaker after `failures` consecutive failures: it follows the
/// endpoint's own retry schedule (so a CRM that is back is probed no later than a single event
/// would have been retried), from its first delay on, at least 1 s and at most 10 minutes.
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

const SCHEMA: &str = "
CREATE TABLE meta(k TEXT PRIMARY KEY, v) WITHOUT ROWID;
CREATE TABLE endpoints(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  url TEXT NOT NULL DEFAULT '',
  secret TEXT NOT NULL DEFAULT '',
  prev_secret TEXT NOT NULL DEFAULT '',
  prev_secret_until REAL NOT NULL DEFAULT 0,
  topics TEXT NOT NULL DEFAULT '',
  enabled INTEGER NOT NULL DEFAULT 1,
  disabled_reason TEXT,
  disabled_at REAL,
  rate_limit REAL NOT NULL DEFAULT 0,
  timeout REAL NOT NULL DEFAULT 15,
  proxy TEXT NOT NULL DEFAULT '',
  format TEXT NOT NULL DEFAULT 'standard',
  retry_delays TEXT NOT NULL DEFAULT '',
  source TEXT NOT NULL DEFAULT '',
  consecutive_failures INTEGER NOT NULL DEFAULT 0,
  breaker_until REAL NOT NULL DEFAULT 0,
  last_success_at REAL,
  last_error TEXT,
  last_error_at REAL,
  created_at REAL NOT NULL,
  updated_at REAL NOT NULL
);
CREATE TABLE events(
  id INTEGER PRIMARY KEY,
  event_id TEXT NOT NULL UNIQUE,
  topic TEXT NOT NULL,
  key TEXT,
  seq INTEGER NOT NULL,
  created_at REAL NOT NULL,
  unrouted INTEGER NOT NULL DEFAULT 0,
  coalesce INTEGER NOT NULL DEFAULT 0,
  route TEXT,
  data_offset INTEGER NOT NULL,
  body BLOB NOT NULL
);
CREATE TABLE deliveries(
  id INTEGER PRIMARY KEY,
  event_rowid INTEGER NOT NULL,
  endpoint_id INTEGER NOT NULL,
  key TEXT,
  seq INTEGER NOT NULL,
  state INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at REAL NOT NULL,
  claimed_by TEXT,
  lease_until REAL,
  last_status INTEGER,
  last_error TEXT,
  updated_at REAL NOT NULL
);
CREATE INDEX deliveries_due ON deliveries(state, endpoint_id, next_attempt_at) WHERE state < 3;
CREATE INDEX deliveries_key ON deliveries(endpoint_id, key, seq) WHERE state < 3;
CREATE INDEX deliveries_open ON deliveries(id, event_rowid) WHERE state < 3;
CREATE INDEX deliveries_event ON deliveries(event_rowid);
CREATE TABLE attempts(
  id INTEGER PRIMARY KEY,
  delivery_id INTEGER NOT NULL,
  started_at REAL NOT NULL,
  duration_ms REAL NOT NULL,
  http_status INTEGER,
  error_class TEXT,
  error TEXT,
  response BLOB,
  delivery_uuid TEXT
);
CREATE INDEX attempts_delivery ON attempts(delivery_id);
CREATE TABLE key_seq(key TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE stats(endpoint_id INTEGER NOT NULL, state INTEGER NOT NULL, n INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY(endpoint_id, state)) WITHOUT ROWID;
CREATE TRIGGER deliveries_stats_insert AFTER INSERT ON deliveries BEGIN
  UPDATE stats SET n = n + 1 WHERE endpoint_id = NEW.endpoint_id AND state = NEW.state;
END;
CREATE TRIGGER deliveries_stats_update AFTER UPDATE OF state ON deliveries WHEN OLD.state <> NEW.state BEGIN
  UPDATE stats SET n = n - 1 WHERE endpoint_id = OLD.endpoint_id AND state = OLD.state;
  UPDATE stats SET n = n + 1 WHERE endpoint_id = NEW.endpoint_id AND state = NEW.state;
END;
CREATE TRIGGER deliveries_stats_delete AFTER DELETE ON deliveries BEGIN
  UPDATE stats SET n = n - 1 WHERE endpoint_id = OLD.endpoint_id AND state = OLD.state;
END;
CREATE TRIGGER endpoints_stats AFTER INSERT ON endpoints BEGIN
  INSERT OR IGNORE INTO stats(endpoint_id, state, n) VALUES
    (NEW.id, 0, 0), (NEW.id, 1, 0), (NEW.id, 2, 0), (NEW.id, 3, 0), (NEW.id, 4, 0), (NEW.id, 5, 0);
END;
CREATE TRIGGER events_unrouted_insert AFTER INSERT ON events WHEN NEW.unrouted = 1 BEGIN
  UPDATE stats SET n = n + 1 WHERE endpoint_id = 0 AND state = 6;
END;
CREATE TRIGGER events_unrouted_update AFTER UPDATE OF unrouted ON events WHEN OLD.unrouted <> NEW.unrouted BEGIN
  UPDATE stats SET n = n + (NEW.unrouted - OLD.unrouted) WHERE endpoint_id = 0 AND state = 6;
END;
CREATE TRIGGER events_unrouted_delete AFTER DELETE ON events WHEN OLD.unrouted = 1 BEGIN
  UPDATE stats SET n = n - 1 WHERE endpoint_id = 0 AND state = 6;
END;
INSERT INTO stats(endpoint_id, state, n) VALUES (0, 6, 0);
INSERT INTO meta(k, v) VALUES ('endpoints_version', 0), ('routed_upto', 0);
";

/// Creation time of the oldest open delivery: one index step, never a sort over open rows.
const OLDEST_OPEN_SQL: &str = "SELECT e.created_at FROM deliveries d INDEXED BY deliveries_open
     JOIN events e ON e.id = d.event_rowid WHERE d.state < 3 ORDER BY d.id LIMIT 1";

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
}

/// What the sender decided after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Delivered,
    RetryAt(f64),
    Dead,
    /// Dead, and the endpoint is disabled with this reason (HTTP 410).
    DeadAndDisable(String),
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

/// What can make a storage operation fail; a damaged file is told apart.
trait StorageCause: std::fmt::Display {
    fn corrupt(&self) -> bool {
        false
    }
}
impl StorageCause for rusqlite::Error {
    fn corrupt(&self) -> bool {
        matches!(
            self.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
        )
    }
}
impl StorageCause for std::io::Error {}

fn storage(path: &Path, what: &str, e: impl StorageCause) -> Error {
    let msg = format!("outbox {}: {what}: {e}", path.display());
    if e.corrupt() {
        Error::Corrupt(format!("{msg}; the file is damaged: move it away (keep it to inspect) so a new outbox is created, or restore a backup"))
    } else {
        Error::storage(msg)
    }
}

/// Marks a change of any endpoint, so that every process re-reads the endpoints.
fn bump_endpoints_version(conn: &Connection) -> rusqlite::Result<usize> {
    conn.prepare_cached("UPDATE meta SET v = v + 1 WHERE k = 'endpoints_version'")?
        .execute([])
}

/// The endpoints version counter.
fn read_endpoints_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT v FROM meta WHERE k = 'endpoints_version'")?
        .query_row([], |r| r.get(0))
}

/// Whether events were stored after the last one the sender routed.
fn new_events_waiting(conn: &Connection) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT coalesce((SELECT max(id) FROM events), 0) > (SELECT v FROM meta WHERE k = 'routed_upto')")?
        .query_row([], |r| r.get(0))
}

/// Starts a short write transaction (`BEGIN IMMEDIATE`; the busy handler waits for other writers).
fn begin<'a>(
    conn: &'a mut Connection,
    path: &'a Path,
) -> Result<(rusqlite::Transaction<'a>, &'a Path)> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| storage(path, "begin", e))?;
    Ok((tx, path))
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy) | Some(rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Retries `f` while SQLite reports busy/locked (schema creation and WAL switch races).
fn retry_busy<T>(mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let deadline = Instant::now() + BUSY_WAIT;
    let mut pause = Duration::from_micros(50);
    loop {
        match f() {
            Err(e) if is_busy(&e) && Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// An open outbox connection. Never shared across fork: the PHP layer keys it by PID.
pub struct Outbox {
    conn: Connection,
    path: PathBuf,
    endpoints_version: i64,
    endpoints: Vec<EndpointRow>,
}

impl Outbox {
    /// Opens (creating or migrating if needed) the outbox at `path`.
    pub fn open(path: &Path, role: Role) -> Result<Outbox> {
        crate::files::prepare(path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW;
        let mut conn = Connection::open_with_flags(path, flags)
            .map_err(|e| storage(path, "cannot open", e))?;
        install_busy_handler(&mut conn).map_err(|e| storage(path, "cannot configure", e))?;
        // Every statement of the hot paths stays prepared (the default cache holds 16), and query
        // plans never depend on bound values: otherwise SQLite re-prepares a statement each time
        // rusqlite returns it to its cache (clearing bindings expires such statements).
        conn.set_prepared_statement_cache_capacity(64);
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )
        .map_err(|e| storage(path, "cannot configure", e))?;
        let not_outbox = |e: rusqlite::Error| {
            if is_busy(&e) {
                return Error::storage(format!(
                    "outbox {} is busy: another process held its lock for more than {} s ({e}); try again",
                    path.display(),
                    BUSY_WAIT.as_secs()
                ));
            }
            Error::storage(format!(
                "{} is not a valid woosync outbox ({e}); it was left untouched: move it away or set woosync.database to another file",
                path.display()
            ))
        };
        // One read transaction: the three values come from one snapshot, even while another
        // process is creating the schema of a brand-new file.
        let (app_id, version, tables) = retry_busy(|| {
            let tx = conn.unchecked_transaction()?;
            let app: i32 = tx.query_row("PRAGMA application_id", [], |r| r.get(0))?;
            let ver: i32 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            let n: i64 = tx.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
            tx.commit()?;
            Ok((app, ver, n))
        })
        .map_err(not_outbox)?;
        let fresh = app_id == 0 && tables == 0;
        if !fresh && app_id != APPLICATION_ID {
            return Err(Error::storage(format!(
                "{} is a SQLite database of another application (application_id {app_id:#x}, {tables} schema objects), not a woosync outbox; it was left untouched: set woosync.database to another file",
                path.display()
            )));
        }
        if app_id == APPLICATION_ID && version > SCHEMA_VERSION {
            return Err(Error::storage(format!(
                "outbox {} has schema version {version}, newer than this woosync ({SCHEMA_VERSION}, {}): upgrade the extension or use another file",
                path.display(),
                env!("CARGO_PKG_VERSION")
            )));
        }
        if fresh {
            // Must precede the first table; lets the retention pass return pages to the OS.
            retry_busy(|| conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL"))
                .map_err(|e| storage(path, "cannot configure", e))?;
        }
        retry_busy(|| conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0)))
            .map_err(|e| storage(path, "cannot switch to WAL mode", e))?;
        let pragmas = match role {
            // The request path never checkpoints; the sender does, often.
            Role::Request => "PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0; PRAGMA cache_size=-512; PRAGMA temp_store=MEMORY;",
            Role::Sender => "PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0; PRAGMA cache_size=-2048; PRAGMA journal_size_limit=67108864; PRAGMA temp_store=MEMORY;",
        };
        conn.execute_batch(pragmas)
            .map_err(|e| storage(path, "cannot configure", e))?;
        if fresh || version < SCHEMA_VERSION {
            retry_busy(|| migrate(&mut conn))
                .map_err(|e| storage(path, "cannot create the schema", e))?;
        }
        Ok(Outbox {
            conn,
            path: path.to_path_buf(),
            endpoints_version: -1,
            endpoints: Vec::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, what: &str, e: rusqlite::Error) -> Error {
        if e.corrupt() {
            return storage(&self.path, what, e);
        }
        if is_busy(&e) {
            return Error::storage(format!(
                "outbox {}: {what}: still locked by another process after {} s; is a process stuck holding it?",
                self.path.display(),
                BUSY_WAIT.as_secs()
            ));
        }
        storage(&self.path, what, e)
    }

    /// Records the `default` endpoint as this process's INI describes it, when it differs from
    /// what is stored. A changed URL re-enables an endpoint disabled by a 410.
    pub fn record_default_endpoint(
        &mut self,
        d: &DefaultEndpoint,
        key: Option<&StoreKey>,
    ) -> Result<()> {
        let now = event::now();
        let name = config::DEFAULT_ENDPOINT;
        let (tx, path) = begin(&mut self.conn, &self.path)?;
        let map = |what: &'static str| move |e: rusqlite::Error| storage(path, what, e);
        let current: Option<(String, String, String, f64, String)> = tx
            .query_row(
                "SELECT url, secret, retry_delays, timeout, source FROM endpoints WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()
            .map_err(map("read the default endpoint"))?;
        if let Some((url, secret, delays, timeout, source)) = &current {
            let same_secret = secrets::open(key, name, secret)
                .map(|s| s == d.secret)
                .unwrap_or(false);
            if url == &d.url
                && same_secret
                && delays == &d.retry_delays
                && *timeout == d.timeout
                && source == &d.source
            {
                return Ok(());
            }
        }
        let sealed = secrets::seal(key, name, &d.secret)?;
        tx.execute(
            "INSERT INTO endpoints(name, url, secret, retry_delays, timeout, source, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
             ON CONFLICT(name) DO UPDATE SET
               disabled_at = CASE WHEN url IS NOT excluded.url THEN NULL ELSE disabled_at END,
               disabled_reason = CASE WHEN url IS NOT excluded.url THEN NULL ELSE disabled_reason END,
               consecutive_failures = CASE WHEN url IS NOT excluded.url THEN 0 ELSE consecutive_failures END,
               breaker_until = CASE WHEN url IS NOT excluded.url THEN 0 ELSE breaker_until END,
               url = excluded.url, secret = excluded.secret, retry_delays = excluded.retry_delays,
               timeout = excluded.timeout, source = excluded.source, updated_at = excluded.updated_at",
            params![name, d.url, sealed, d.retry_delays, d.timeout, d.source, now],
        )
        .map_err(map("record the default endpoint"))?;
        bump_endpoints_version(&tx).map_err(map("record the default endpoint"))?;
        tx.commit().map_err(map("commit"))?;
        Ok(())
    }

    /// Creates or updates a named endpoint (`woosync_endpoint_save`). Saving re-enables an endpoint
    /// disabled by a 410 and closes its breaker. A new secret keeps the previous one signing too for
    /// [`ROTATION_SECONDS`].
    pub fn save_endpoint(
        &mut self,
        name: &str,
        c: &EndpointConfig,
        key: Option<&StoreKey>,
    ) -> Result<()> {
        config::validate_endpoint_name(name)?;
        if name == config::DEFAULT_ENDPOINT {
            return Err(Error::input("the endpoint \"default\" is configured through php.ini (woosync.endpoint, woosync.secret); save yours under another name"));
        }
        c.validate()?;
        let now = event::now();
        let (tx, path) = begin(&mut self.conn, &self.path)?;
        let map = |what: &'static str| move |e: rusqlite::Error| storage(path, what, e);
        let old: Option<(String, String, f64, String, String)> = tx
            .query_row(
                "SELECT secret, prev_secret, prev_secret_until, url, proxy FROM endpoints WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()
            .map_err(map("read endpoint"))?;
        // A form that showed the URLs masked saves them back masked: keep the stored passwords.
        let (url, proxy) = match &old {
            Some((_, _, _, u, p)) => (crate::redact::restore(&c.url, u), crate::redact::restore(&c.proxy, p)),
            None => (c.url.clone(), c.proxy.clone()),
        };
        let old_plain = match &old {
            Some((s, ..)) => secrets::open(key, name, s).ok(),
            None => None,
        };
        let (secret, prev, prev_until) = match (&c.secret, &old) {
            (None, Some((s, p, u, ..))) => (s.clone(), p.clone(), *u),
            (None, None) => (String::new(), String::new(), 0.0),
            (Some(new), old) => {
                let sealed = secrets::seal(key, name, new)?;
                match (old, old_plain.as_deref()) {
                    (Some((s, p, u, ..)), Some(o)) if o == new.as_str() => (s.clone(), p.clone(), *u),
                    (Some((s, ..)), Some(o)) if !o.is_empty() && !new.is_empty() => {
                        (sealed, s.clone(), now + ROTATION_SECONDS)
                    }
                    _ => (sealed, String::new(), 0.0),
                }
            }
        };
        tx.execute(
            "INSERT INTO endpoints(name, url, secret, prev_secret, prev_secret_until, topics, enabled, rate_limit, timeout, proxy,
                                   format, retry_delays, source, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14)
             ON CONFLICT(name) DO UPDATE SET url = excluded.url, secret = excluded.secret, prev_secret = excluded.prev_secret,
               prev_secret_until = excluded.prev_secret_until, topics = excluded.topics, enabled = excluded.enabled,
               rate_limit = excluded.rate_limit, timeout = excluded.timeout, proxy = excluded.proxy, format = excluded.format,
               retry_delays = excluded.retry_delays, source = excluded.source, updated_at = excluded.updated_at,
               disabled_at = NULL, disabled_reason = NULL, consecutive_failures = 0, breaker_until = 0",
            params![
                name,
                url,
                secret,
                prev,
                prev_until,
                c.topics.join(","),
                c.enabled as i64,
                c.rate_limit,
                c.timeout,
                proxy,
                c.format.as_str(),
                c.retry_delays,
                c.source,
                now
            ],
        )
        .map_err(map("save endpoint"))?;
        bump_endpoints_version(&tx).map_err(map("save endpoint"))?;
        tx.commit().map_err(map("commit"))?;
        Ok(())
    }

    /// Deletes a named endpoint. Its open deliveries become dead ("endpoint deleted"); finished
    /// ones stay in the log. Returns false when there was no such endpoint.
    pub fn delete_endpoint(&mut self, name: &str) -> Result<bool> {
        if name == config::DEFAULT_ENDPOINT {
            return Err(Error::input("the endpoint \"default\" is configured through php.ini; clear woosync.endpoint instead"));
        }
        let now = event::now();
        let (tx, path) = begin(&mut self.conn, &self.path)?;
        let map = |what: &'static str| move |e: rusqlite::Error| storage(path, what, e);
        let id: Option<i64> = tx
            .query_row("SELECT id FROM endpoints WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(map("find endpoint"))?;
        let Some(id) = id else { return Ok(false) };
        tx.execute(
            "UPDATE deliveries SET state = 4, last_error = 'endpoint deleted', claimed_by = NULL, lease_until = NULL, updated_at = ?2
             WHERE endpoint_id = ?1 AND state < 3",
            params![id, now],
        )
        .map_err(map("close deliveries"))?;
        tx.execute("UPDATE endpoints SET enabled = 0, url = '', secret = '', prev_secret = '', name = name || '#deleted-' || id WHERE id = ?1", [id])
            .map_err(map("delete endpoint"))?;
        bump_endpoints_version(&tx).map_err(map("delete endpoint"))?;
        tx.commit().map_err(map("commit"))?;
        Ok(true)
    }

    /// Deletes finished events (delivered, dead, superseded, unrouted) older than `older_than_days`,
    /// with their deliveries and attempts, in short transactions of `batch` events. Returns how many.
    pub fn purge(&mut self, older_than_days: f64, batch: usize) -> Result<usize> {
        self.purge_where(
            event::now() - older_than_days * 86_400.0,
            &[state::DELIVERED, state::DEAD, state::SUPERSEDED],
            true,
            batch,
            usize::MAX,
        )
    }

    /// Retention pass (sender): delivered and superseded events after `retention_days`, dead and
    /// unrouted ones after 30 days; at most `max` events per call, then an incremental vacuum.
    pub fn retain(&mut self, retention_days: f64, max: usize) -> Result<usize> {
        let now = event::now();
        let mut n = self.purge_where(
            now - retention_days * 86_400.0,
            &[state::DELIVERED, state::SUPERSEDED],
            false,
            200,
            max,
        )?;
        if n < max {
            n += self.purge_where(
                now - config::DEAD_RETENTION_DAYS * 86_400.0,
                &[state::DELIVERED, state::DEAD, state::SUPERSEDED],
                true,
                200,
                max - n,
            )?;
        }
        if n > 0 {
            let _ = self.conn.execute_batch("PRAGMA incremental_vacuum(2000)");
        }
        Ok(n)
    }

    /// Privacy erasure of one ordering key (`customer:42`): deletes its finished events (with
    /// their deliveries and attempts) and returns (deleted, still pending). Pending events are kept
    /// until delivered. The newest event of the outbox cannot be deleted (it anchors row ids): if it
    /// belongs to the key and is finished, its body is replaced by an empty one and its key cleared.
    pub fn erase_key(&mut self, key: &str) -> Result<(usize, usize)> {
        let (tx, path) = begin(&mut self.conn, &self.path)?;
        let map = |what: &'static str| move |e: rusqlite::Error| storage(path, what, e);
        let rows: Vec<(i64, String, String, f64, bool)> = tx
            .prepare(
                "SELECT e.id, e.event_id, e.topic, e.created_at,
                        e.id > (SELECT v FROM meta WHERE k = 'routed_upto')
                        OR EXISTS (SELECT 1 FROM deliveries d WHERE d.event_rowid = e.id AND d.state < 3)
                 FROM events e WHERE e.key = ?1",
            )
            .and_then(|mut st| {
                st.query_map([key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get::<_, bool>(4)?)))?
                    .collect()
            })
            .map_err(map("find events of key"))?;
        let newest: i64 = tx
            .query_row("SELECT coalesce(max(id), 0) FROM events", [], |r| r.get(0))
            .map_err(map("find newest event"))?;
        let (mut deleted, mut pending) = (0, 0);
        for (id, event_id, topic, created_at, open) in rows {
            if open {
                pending += 1;
                continue;
            }
            tx.execute("DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE event_rowid = ?1)", [id])
                .map_err(map("erase attempts"))?;
            if id == newest {
                let env = event::build_envelope(&event_id, &topic, created_at, None, 0, "null");
                tx.execute(
                    "UPDATE events SET key = NULL, seq = 0, body = ?2, data_offset = ?3 WHERE id = ?1",
                    params![id, env.body.as_bytes(), env.data_offset as i64],
                )
                .map_err(map("erase newest event"))?;
                tx.execute(
                    "UPDATE deliveries SET key = NULL, last_error = NULL WHERE event_rowid = ?1",
                    [id],
                )
                .map_err(map("erase newest event"))?;
            } else {
                tx.execute("DELETE FROM deliveries WHERE event_rowid = ?1", [id])
                    .map_err(map("erase deliveries"))?;
                tx.execute("DELETE FROM events WHERE id = ?1", [id])
                    .map_err(map("erase events"))?;
            }
            deleted += 1;
        }
        tx.commit().map_err(map("commit"))?;
        Ok((deleted, pending))
    }

    fn purge_where(
        &mut self,
        before: f64,
        finished: &[i64],
        unrouted_too: bool,
        batch: usize,
        max: usize,
    ) -> Result<usize> {
        let states = finished
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(",");
        // An event goes when none of its deliveries is open or outside `finished`, and its last
        // change is older than `before`. The newest event always stays (it anchors rowids, which
        // the routing mark relies on).
        let select = format!(
            "SELECT e.id FROM events e
             WHERE e.created_at < ?1 AND e.id < (SELECT max(id) FROM events) AND e.id <= (SELECT v FROM meta WHERE k = 'routed_upto')
               AND (({unrouted} AND e.unrouted = 1) OR EXISTS (SELECT 1 FROM deliveries d WHERE d.event_rowid = e.id))
               AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_rowid = e.id AND (d.state NOT IN ({states}) OR d.updated_at >= ?1))
             ORDER BY e.id LIMIT ?2",
            unrouted = if unrouted_too { 1 } else { 0 }
        );
        let mut total = 0;
        while total < max {
            let (tx, path) = begin(&mut self.conn, &self.path)?;
            let map = |what: &'static str| move |e: rusqlite::Error| storage(path, what, e);
            let ids: Vec<i64> = tx
                .prepare(&select)
                .and_then(|mut s| {
                    s.query_map(params![before, batch.min(max - total) as i64], |r| r.get(0))?
                        .collect()
                })
                .map_err(map("select old events"))?;
            if ids.is_empty() {
                break;
            }
            for id in &ids {
                tx.execute("DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE event_rowid = ?1)", [id])
                    .map_err(map("purge attempts"))?;
                tx.execute("DELETE FROM deliveries WHERE event_rowid = ?1", [id])
                    .map_err(map("purge deliveries"))?;
                tx.execute("DELETE FROM events WHERE id = ?1", [id])
                    .map_err(map("purge events"))?;
            }
            tx.commit().map_err(map("commit"))?;
            total += ids.len();
            if ids.len() < batch {
                break;
            }
        }
        Ok(total)
    }

    /// Stores one event durably (committed before return) and routes it to matching endpoints.
    /// Returns the event id.
    pub fn enqueue(&mut self, ev: &NewEvent<'_>) -> Result<String> {
        let event_id = event::new_event_id();
        let created_at = event::now();
        let (tx, path) = begin(&mut self.conn, &self.path)?;
        let map = |what: &'static str| move |e: rusqlite::Error| storage(path, what, e);
        if let Some(names) = &ev.endpoints {
            let version: i64 = read_endpoints_version(&tx).map_err(map("read endpoints"))?;
            if version != self.endpoints_version {
                self.endpoints = load_endpoints(&tx).map_err(map("read endpoints"))?;
                self.endpoints_version = version;
            }
            for n in names {
                if !self.endpoints.iter().any(|e| &e.name == n) {
                    let known: Vec<&str> = self.endpoints.iter().map(|e| e.name.as_str()).collect();
                    return Err(Error::input(format!("unknown endpoint {} in option \"endpoints\"; known endpoints: {}", quote(n), known.join(", "))));
                }
            }
        }
        let seq: i64 = match ev.key {
            Some(k) => tx
                .prepare_cached(
                    "INSERT INTO key_seq(key, seq) VALUES (?1, 1) ON CONFLICT(key) DO UPDATE SET seq = seq + 1 RETURNING seq",
                )
                .and_then(|mut s| s.query_row([k], |r| r.get(0)))
                .map_err(map("next sequence"))?,
            None => 0,
        };
        let Envelope { body, data_offset } =
            event::build_envelope(&event_id, ev.topic, created_at, ev.key, seq, ev.data);
        if body.len() > ev.max_body_bytes {
            return Err(Error::input(format!(
                "payload too large: the encoded body is {} bytes, woosync.max_payload_bytes is {}; send less data (e.g. ids instead of whole objects)",
                body.len(),
                ev.max_body_bytes
            )));
        }
        let route: Option<String> = ev.endpoints.as_ref().map(|n| n.join("\n"));
        // Only the event row (and the key's counter) is written here; the sender routes it to
        // endpoints (deliveries) in its own transaction, off the request path.
        tx.prepare_cached(
            "INSERT INTO events(event_id, topic, key, seq, created_at, coalesce, route, data_offset, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .and_then(|mut s| {
            s.execute(params![event_id, ev.topic, ev.key, seq, created_at, ev.coalesce as i64, route, data_offset as i64, body.as_bytes()])
        })
        .map_err(map("insert event"))?;
        tx.commit().map_err(map("commit"))?;
        Ok(event_id)
    }

    /// Whether events were stored that the sender has not routed yet.
    pub fn has_new_events(&self) -> Result<bool> {
        new_events_waiting(&self.conn).map_err(|e| self.err("check new events", e))
    }

    /// Routes events stored since the last call (in commit order) to the endpoints that match
    /// them: one delivery each, coalescing where asked; events nothing matches become unrouted.
    /// Returns how many events were routed.
    pub fn route_new(&mut self, limit: usize) -> Result<usize> {
        let (tx, path) = begin(&mut self.conn, &self.path)?;
        let n = route_tx(&tx, &path, limit)?;
        tx.commit().map_err(|e| storage(path, "commit", e))?;
        Ok(n)
    }

    /// Puts a dead or delivered event back to pending (same id); routes an unrouted one.
    /// Returns false when there was nothing to requeue.
    pub fn retry_event(&mut self, event_id: &str) -> Result<Option<bool>> {
        let now = event::now();
        let (tx, path) = begin(&mut self.conn, &self.path)?;
        let map = |what: &'static str| move |e: rusqlite::Error| storage(path, what, e);
        let row: Option<(i64, String, Option<String>, i64, bool)> = tx
            .query_row(
                "SELECT id, topic, key, seq, unrouted FROM events WHERE event_id = ?1",
                [event_id],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get::<_, i64>(4)? != 0,
                    ))
                },
            )
            .optional()
            .map_err(map("find event"))?;
        let Some((rowid, topic, key, seq, unrouted)) = row else {
            return Ok(None);
        };
        let mut changed = 0;
        if unrouted {
            let eps = load_endpoints(&tx).map_err(map("read endpoints"))?;
            for e in eps.iter().filter(|e| e.routes(&topic)) {
                insert_delivery(&tx, rowid, e.id, key.as_deref(), seq, None, now)
                    .map_err(map("insert delivery"))?;
                changed += 1;
            }
            if changed > 0 {
                tx.execute("UPDATE events SET unrouted = 0 WHERE id = ?1", [rowid])
                    .map_err(map("route event"))?;
            }
        } else {
            changed = requeue(
                &tx,
                "event_rowid = ?1 AND state IN (3, 4)",
                params![rowid],
                now,
            )
            .map_err(map("requeue"))?;
        }
        tx.commit().map_err(map("commit"))?;
        Ok(Some(changed > 0))
    }

    /// Requeues every dead delivery (of one endpoint, or all). Returns how many.
    pub fn retry_dead(&mut self, endpoint: Option<&str>) -> Result<usize> {
        let now = event::now();
        let (tx, path) = begin(&mut self.conn, &self.path)?;
        let map = |what: &'static str| move |e: rusqlite::Error| storage(path, what, e);
        let n = match endpoint {
            Some(name) => requeue(
                &tx,
                "state = 4 AND endpoint_id = (SELECT id FROM endpoints WHERE name = ?1)",
                params![name],
                now,
            ),
            None => requeue(&tx, "state = 4", params![], now),
        }
        .map_err(map("requeue"))?;
        tx.commit().map_err(map("commit"))?;
        Ok(n)
    }

    /// Number of deliveries not yet delivered, dead or superseded.
    pub fn pending(&self) -> Result<i64> {
        self.conn
            .prepare_cached(
                "SELECT (SELECT coalesce(sum(n), 0) FROM stats WHERE state < 3)
                      + coalesce((SELECT max(id) FROM events), 0) - (SELECT v FROM meta WHERE k = 'routed_upto')",
            )
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(|e| self.err("count pending", e))
    }

    /// Counts (maintained by triggers, O(1)), oldest pending age and endpoint health.
    pub fn status(&self) -> Result<Status> {
        // One read transaction: counts from one snapshot, even while the sender commits.
        let snapshot = self
            .conn
            .unchecked_transaction()
            .map_err(|e| self.err("begin", e))?;
        let mut st = Status::default();
        let eps = load_endpoints(&self.conn).map_err(|e| self.err("read endpoints", e))?;
        let mut per: std::collections::HashMap<i64, [i64; 6]> = Default::default();
        {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT endpoint_id, state, n FROM stats")
                .map_err(|e| self.err("read stats", e))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .map_err(|e| self.err("read stats", e))?;
            for row in rows {
                let (ep, s, n) = row.map_err(|e| self.err("read stats", e))?;
                match s {
                    state::QUEUED => st.queued += n,
                    state::READY => st.ready += n,
                    state::INFLIGHT => st.in_flight += n,
                    state::DELIVERED => st.delivered += n,
                    state::DEAD => st.dead += n,
                    state::SUPERSEDED => st.superseded += n,
                    _ => st.unrouted += n,
                }
                if (0..6).contains(&s) {
                    per.entry(ep).or_default()[s as usize] += n;
                }
            }
        }
        let (routing, oldest_new): (i64, Option<f64>) = self
            .conn
            .prepare_cached(
                "SELECT coalesce((SELECT max(id) FROM events), 0) - coalesce((SELECT v FROM meta WHERE k = 'routed_upto'), 0),
                        (SELECT created_at FROM events WHERE id > coalesce((SELECT v FROM meta WHERE k = 'routed_upto'), 0) ORDER BY id LIMIT 1)",
            )
            .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))))
            .map_err(|e| self.err("count new events", e))?;
        st.routing = routing.max(0);
        let (sender, sender_host): (Option<String>, Option<String>) = self
            .conn
            .prepare_cached(
                "SELECT (SELECT v FROM meta WHERE k = 'sender'), (SELECT v FROM meta WHERE k = 'sender_host')",
            )
            .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))))
            .map_err(|e| self.err("read the sender", e))?;
        st.sender = sender;
        st.sender_host = sender_host;
        let oldest_open: Option<f64> = self
            .conn
            .prepare_cached(OLDEST_OPEN_SQL)
            .and_then(|mut s| s.query_row([], |r| r.get(0)).optional())
            .map_err(|e| self.err("oldest pending", e))?;
        st.oldest_pending_at = match (oldest_open, oldest_new) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        for row in eps {
            if let (Some(err), Some(at)) = (&row.last_error, row.last_error_at) {
                if st.last_error_at.is_none_or(|t| at > t) {
                    st.last_error = Some(format!("{}: {err}", row.name));
                    st.last_error_at = Some(at);
                }
            }
            if let Some(at) = row.last_success_at {
                if st.last_success_at.is_none_or(|t| at > t) {
                    st.last_success_at = Some(at);
                }
            }
            let counts = per.get(&row.id).copied().unwrap_or_default();
            st.endpoints.push(EndpointStatus { row, counts });
        }
        snapshot.commit().map_err(|e| self.err("end read", e))?;
        Ok(st)
    }

    /// One event with its deliveries and attempts, or None.
    pub fn event(&self, event_id: &str) -> Result<Option<EventDetail>> {
        let map = |e| self.err("read event", e);
        let head = self
            .conn
            .query_row(
                "SELECT id, event_id, topic, key, seq, created_at, unrouted, body, data_offset FROM events WHERE event_id = ?1",
                [event_id],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        EventDetail {
                            event_id: r.get(1)?,
                            topic: r.get(2)?,
                            key: r.get(3)?,
                            seq: r.get(4)?,
                            created_at: r.get(5)?,
                            unrouted: r.get::<_, i64>(6)? != 0,
                            body: r.get(7)?,
                            data_offset: r.get::<_, i64>(8)? as usize,
                            deliveries: vec![],
                            attempts: vec![],
                        },
                    ))
                },
            )
            .optional()
            .map_err(map)?;
        let Some((rowid, mut detail)) = head else {
            return Ok(None);
        };
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT p.name, d.state, (SELECT count(*) FROM attempts a WHERE a.delivery_id = d.id), d.next_attempt_at,
                        d.last_status, d.last_error, d.updated_at
                 FROM deliveries d JOIN endpoints p ON p.id = d.endpoint_id WHERE d.event_rowid = ?1 ORDER BY d.id",
            )
            .map_err(map)?;
        detail.deliveries = stmt
            .query_map([rowid], |r| {
                Ok(DeliveryRow {
                    endpoint: r.get(0)?,
                    state: r.get(1)?,
                    attempts: r.get(2)?,
                    next_attempt_at: r.get(3)?,
                    last_status: r.get(4)?,
                    last_error: r.get(5)?,
                    updated_at: r.get(6)?,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(map)?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT p.name, a.started_at, a.duration_ms, a.http_status, a.error_class, a.error, a.response, a.delivery_uuid
                 FROM attempts a JOIN deliveries d ON d.id = a.delivery_id JOIN endpoints p ON p.id = d.endpoint_id
                 WHERE d.event_rowid = ?1 ORDER BY a.id",
            )
            .map_err(map)?;
        detail.attempts = stmt
            .query_map([rowid], |r| {
                Ok(AttemptRow {
                    endpoint: r.get(0)?,
                    started_at: r.get(1)?,
                    duration_ms: r.get(2)?,
                    http_status: r.get(3)?,
                    error_class: r.get(4)?,
                    error: r.get(5)?,
                    response: r.get(6)?,
                    delivery_uuid: r.get(7)?,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(map)?;
        Ok(Some(detail))
    }

    /// Deliveries (one row per event and endpoint; unrouted events once), newest first.
    pub fn events(&self, f: &EventFilter) -> Result<Vec<EventSummary>> {
        let mut sql = String::from(
            "SELECT e.event_id, e.topic, e.key, e.seq, e.created_at,
                    CASE WHEN d.id IS NOT NULL THEN d.state WHEN e.unrouted = 1 THEN 6 ELSE 1 END, p.name,
                    (SELECT count(*) FROM attempts a WHERE a.delivery_id = d.id),
                    d.next_attempt_at, d.last_status, d.last_error,
                    (SELECT a.duration_ms FROM attempts a WHERE a.delivery_id = d.id ORDER BY a.id DESC LIMIT 1)
             FROM events e LEFT JOIN deliveries d ON d.event_rowid = e.id LEFT JOIN endpoints p ON p.id = d.endpoint_id
             WHERE 1",
        );
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(s) = f.state {
            if s == state::UNROUTED {
                sql.push_str(" AND d.id IS NULL AND e.unrouted = 1");
            } else if s == state::READY {
                // "pending" in the API covers queued, ready, in flight and not yet routed.
                sql.push_str(" AND (d.state < 3 OR (d.id IS NULL AND e.unrouted = 0))");
            } else {
                args.push(s.into());
                sql.push_str(&format!(" AND d.state = ?{}", args.len()));
            }
        }
        if let Some(t) = &f.topic {
            args.push(t.clone().into());
            sql.push_str(&format!(" AND e.topic = ?{}", args.len()));
        }
        if let Some(k) = &f.key {
            args.push(k.clone().into());
            sql.push_str(&format!(" AND e.key = ?{}", args.len()));
        }
        if let Some(p) = &f.key_prefix {
            args.push(p.clone().into());
            sql.push_str(&format!(
                " AND substr(e.key, 1, length(?{n})) = ?{n}",
                n = args.len()
            ));
        }
        if let Some(names) = &f.endpoints {
            let mut marks = Vec::new();
            for n in names {
                args.push(n.clone().into());
                marks.push(format!("?{}", args.len()));
            }
            if marks.is_empty() {
                sql.push_str(" AND 0");
            } else {
                sql.push_str(&format!(" AND p.name IN ({})", marks.join(",")));
            }
        }
        if let Some(s) = f.since {
            args.push(s.into());
            sql.push_str(&format!(" AND e.created_at >= ?{}", args.len()));
        }
        args.push(f.limit.clamp(1, 10_000).into());
        args.push(f.offset.max(0).into());
        sql.push_str(&format!(
            " ORDER BY e.id DESC, d.id LIMIT ?{} OFFSET ?{}",
            args.len() - 1,
            args.len()
        ));
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(|e| self.err("list events", e))?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), |r| {
                Ok(EventSummary {
                    event_id: r.get(0)?,
                    topic: r.get(1)?,
                    key: r.get(2)?,
                    seq: r.get(3)?,
                    created_at: r.get(4)?,
                    state: r.get(5)?,
                    endpoint: r.get(6)?,
                    attempts: r.get(7)?,
                    next_attempt_at: r.get(8)?,
                    last_status: r.get(9)?,
                    last_error: r.get(10)?,
                    last_duration_ms: r.get(11)?,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err("list events", e))?;
        Ok(rows)
    }

    // ---- sender side -------------------------------------------------------------------

    /// All endpoints as stored.
    pub fn endpoints(&self) -> Result<Vec<EndpointRow>> {
        load_endpoints(&self.conn).map_err(|e| self.err("read endpoints", e))
    }

    /// The endpoints version counter (bumped on every endpoint change).
    pub fn endpoints_version(&self) -> Result<i64> {
        read_endpoints_version(&self.conn).map_err(|e| self.err("read endpoints version", e))
    }

    /// Claims up to `limit` due deliveries per endpoint: ready → inflight with a lease.
    pub fn claim(
        &mut self,
        wants: &[(i64, usize, f64)],
        me: &str,
        now: f64,
    ) -> Result<Vec<Claimed>> {
        let (tx, path) = begin(&mut self.conn, &self.path)?;
        let out = claim_tx(&tx, &path, wants, usize::MAX, me, now)?;
        tx.commit().map_err(|e| storage(path, "commit", e))?;
        Ok(out)
    }

    /// Records finished attempts and their consequences in one transaction.
    pub fn record(&mut self, done: &[Finished]) -> Result<()> {
        if done.is_empty() {
            return Ok(());
        }
        let (tx, path) = begin(&mut self.conn, &self.path)?;
        record_tx(&tx, &path, done)?;
        tx.commit().map_err(|e| storage(path, "commit", e))
    }

    /// One sender cycle in one transaction: record finished attempts, route new events, read the
    /// endpoints version and claim due deliveries (at most `total`). Returns the claimed rows,
    /// the endpoints version and how many events were routed.
    pub fn cycle(
        &mut self,
        done: &[Finished],
        route_limit: usize,
        wants: &[(i64, usize, f64)],
        total: usize,
        me: &str,
    ) -> Result<(Vec<Claimed>, i64, usize)> {
        let (tx, path) = begin(&mut self.conn, &self.path)?;
        record_tx(&tx, &path, done)?;
        let new: bool =
            new_events_waiting(&tx).map_err(|e| storage(path, "check new events", e))?;
        let routed = if new {
            route_tx(&tx, &path, route_limit)?
        } else {
            0
        };
        let version: i64 =
            read_endpoints_version(&tx).map_err(|e| storage(path, "read endpoints version", e))?;
        let claimed = if total > 0 {
            claim_tx(&tx, &path, wants, total, me, event::now())?
        } else {
            Vec::new()
        };
        tx.commit().map_err(|e| storage(path, "commit", e))?;
        Ok((claimed, version, routed))
    }

    /// Returns leased deliveries to `ready` when their holder is dead or their lease expired.
    /// `alive` tells whether a holder identity still runs. Returns how many were taken over.
    pub fn take_over_leases(
        &mut self,
        me: &str,
        now: f64,
        alive: &dyn Fn(&str) -> bool,
    ) -> Result<usize> {
        let holders: Vec<(String, f64)> = {
            let mut stmt = self
                .conn
                .prepare_cached(
                    "SELECT claimed_by, min(lease_until) FROM deliveries WHERE state < 3 AND state = 2 GROUP BY claimed_by",
                )
                .map_err(|e| self.err("read leases", e))?;
            stmt.query_map([], |r| {
                Ok((
                    r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                    r.get::<_, Option<f64>>(1)?.unwrap_or(0.0),
                ))
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err("read leases", e))?
        };
        let mut taken = 0;
        for (holder, min_lease) in holders {
            if holder == me {
                continue;
            }
            let dead = !alive(&holder);
            if !dead && min_lease > now {
                continue;
            }
            let (tx, path) = begin(&mut self.conn, &self.path)?;
            let map = |e: rusqlite::Error| storage(path, "take over leases", e);
            let cond = if dead {
                "claimed_by = ?1"
            } else {
                "claimed_by = ?1 AND lease_until <= ?2"
            };
            let why = if dead {
                "holder process died during the attempt"
            } else {
                "lease expired"
            };
            tx.execute(
                &format!(
                    "INSERT INTO attempts(delivery_id, started_at, duration_ms, error_class, error)
                     SELECT id, coalesce(lease_until, ?2), 0, 'abandoned', ?3 FROM deliveries WHERE state < 3 AND state = 2 AND {cond}"
                ),
                params![holder, now, format!("{why} ({holder}); outcome unknown, attempting again")],
            )
            .map_err(map)?;
            taken += tx
                .execute(
                    &format!(
                        "UPDATE deliveries SET state = 1, claimed_by = NULL, lease_until = NULL, next_attempt_at = ?2, updated_at = ?2
                         WHERE state < 3 AND state = 2 AND {cond}"
                    ),
                    params![holder, now],
                )
                .map_err(map)?;
            tx.commit().map_err(map)?;
        }
        Ok(taken)
    }

    /// Records a problem that keeps the sender from using an endpoint (e.g. a sealed secret it
    /// cannot open) as the endpoint's last error.
    pub fn note_endpoint_error(&mut self, endpoint_id: i64, error: &str) -> Result<()> {
        let (tx, path) = begin(&mut self.conn, &self.path)?;
        tx.execute(
            "UPDATE endpoints SET last_error = ?2, last_error_at = ?3 WHERE id = ?1",
            params![endpoint_id, error, event::now()],
        )
        .map_err(|e| storage(path, "record endpoint error", e))?;
        tx.commit().map_err(|e| storage(path, "commit", e))
    }

    /// (endpoint id, consecutive failures, breaker open until) of every endpoint.
    pub fn endpoint_health(&self) -> Result<Vec<(i64, i64, f64)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, consecutive_failures, breaker_until FROM endpoints")
            .map_err(|e| self.err("read endpoint health", e))?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err("read endpoint health", e))
    }

    /// Earliest `next_attempt_at` of a ready delivery of the given endpoints.
    pub fn next_due(&self, endpoint_ids: &[i64]) -> Result<Option<f64>> {
        let mut best: Option<f64> = None;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT next_attempt_at FROM deliveries WHERE state < 3 AND state = 1 AND endpoint_id = ?1 ORDER BY next_attempt_at")
            .map_err(|e| self.err("next due", e))?;
        for id in endpoint_ids {
            let t: Option<f64> = stmt
                .query_row([id], |r| r.get(0))
                .optional()
                .map_err(|e| self.err("next due", e))?;
            if let Some(t) = t {
                best = Some(best.map_or(t, |b: f64| b.min(t)));
            }
        }
        Ok(best)
    }

    /// Copies the WAL into the database without waiting for readers (sender only).
    pub fn checkpoint(&self) -> Result<()> {
        let (_busy, log, done): (i64, i64, i64) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(|e| self.err("checkpoint", e))?;
        // Under a sustained stream of dispatches a passive checkpoint never finds the log fully
        // copied when the next writer starts, so the WAL never rewinds and grows without bound
        // (and every reader slows down on it). Past WAL_RESTART_FRAMES, and once nearly everything
        // is copied, a RESTART checkpoint makes the next writer start the log from the beginning;
        // it holds writers back only while it copies the last few frames.
        if log > WAL_RESTART_FRAMES && log - done < WAL_RESTART_FRAMES / 8 {
            self.conn
                .query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))
                .map_err(|e| self.err("checkpoint", e))?;
        }
        Ok(())
    }

    /// Records which process is the sender now (`<boot id>:<pid>:<start time>` and the host name).
    pub fn set_sender(&mut self, identity: &str) -> Result<()> {
        let (tx, path) = begin(&mut self.conn, &self.path)?;
        tx.execute(
            "INSERT INTO meta(k, v) VALUES ('sender', ?1), ('sender_host', ?2), ('sender_since', ?3)
             ON CONFLICT(k) DO UPDATE SET v = excluded.v",
            params![identity, crate::fork::host_name(), event::now()],
        )
        .map_err(|e| storage(path, "record the sender", e))?;
        tx.commit().map_err(|e| storage(path, "commit", e))
    }

    /// `PRAGMA data_version`: changes when another connection commits.
    pub fn data_version(&self) -> Result<i64> {
        self.conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(|e| self.err("data version", e))
    }
}

/// Routes events stored since the last routing pass (see [`Outbox::route_new`]).
fn route_tx(tx: &rusqlite::Transaction<'_>, path: &Path, limit: usize) -> Result<usize> {
    let now = event::now();
    let map = |what: &'static str| move |e: rusqlite::Error| storage(path, what, e);
    let upto: i64 = tx
        .prepare_cached("SELECT v FROM meta WHERE k = 'routed_upto'")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(map("read routing mark"))?;
    type Row = (i64, String, Option<String>, i64, bool, Option<String>);
    let rows: Vec<Row> = tx
        .prepare_cached(
            "SELECT id, topic, key, seq, coalesce, route FROM events WHERE id > ?1 ORDER BY id",
        )
        .and_then(|mut s| {
            s.query_map(params![upto], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get::<_, i64>(4)? != 0,
                    r.get(5)?,
                ))
            })?
            .take(limit)
            .collect()
        })
        .map_err(map("read new events"))?;
    let Some(last) = rows.last().map(|r| r.0) else {
        return Ok(0);
    };
    let eps = load_endpoints(tx).map_err(map("read endpoints"))?;
    for (rowid, topic, key, seq, coalesce, route) in &rows {
        let names: Option<Vec<&str>> = route.as_deref().map(|r| r.split('\n').collect());
        let mut routed = 0;
        for e in eps.iter().filter(|e| e.routes(topic)) {
            if names
                .as_ref()
                .is_some_and(|n| !n.contains(&e.name.as_str()))
            {
                continue;
            }
            insert_delivery(
                tx,
                *rowid,
                e.id,
                key.as_deref(),
                *seq,
                coalesce.then_some(topic.as_str()),
                now,
            )
            .map_err(map("insert delivery"))?;
            routed += 1;
        }
        if routed == 0 {
            tx.prepare_cached("UPDATE events SET unrouted = 1 WHERE id = ?1")
                .and_then(|mut s| s.execute([rowid]))
                .map_err(map("mark unrouted"))?;
        }
    }
    tx.prepare_cached("UPDATE meta SET v = ?1 WHERE k = 'routed_upto'")
        .and_then(|mut s| s.execute([last]))
        .map_err(map("move routing mark"))?;
    Ok(rows.len())
}

/// Claims due deliveries: per endpoint at most its limit, at most `total` in all.
fn claim_tx(
    tx: &rusqlite::Transaction<'_>,
    path: &Path,
    wants: &[(i64, usize, f64)],
    total: usize,
    me: &str,
    now: f64,
) -> Result<Vec<Claimed>> {
    let map = |e: rusqlite::Error| storage(path, "claim", e);
    let mut out = Vec::new();
    {
        let mut select = tx
                .prepare_cached(
                    "SELECT d.id, d.key, d.attempts, e.event_id, e.topic, e.body, e.data_offset
                     FROM deliveries d JOIN events e ON e.id = d.event_rowid
                     WHERE d.state < 3 AND d.state = 1 AND d.endpoint_id = ?1 AND d.next_attempt_at <= ?2
                     ORDER BY d.next_attempt_at",
                )
                .map_err(map)?;
        let mut lease = tx
                .prepare_cached(
                    "UPDATE deliveries SET state = 2, attempts = attempts + 1, claimed_by = ?2, lease_until = ?3, updated_at = ?4 WHERE id = ?1",
                )
                .map_err(map)?;
        for &(endpoint_id, limit, lease_secs) in wants {
            let limit = limit.min(total.saturating_sub(out.len()));
            if limit == 0 {
                continue;
            }
            // No `LIMIT ?`: a bound LIMIT makes SQLite re-prepare the statement on every use
            // (rusqlite clears bindings when caching it); the rows stream, so take() is as cheap.
            let rows: Vec<Claimed> = select
                .query_map(params![endpoint_id, now], |r| {
                    Ok(Claimed {
                        delivery_id: r.get(0)?,
                        endpoint_id,
                        key: r.get(1)?,
                        attempt: r.get::<_, i64>(2)? + 1,
                        event_id: r.get(3)?,
                        topic: r.get(4)?,
                        body: r.get(5)?,
                        data_offset: r.get::<_, i64>(6)? as usize,
                    })
                })
                .and_then(|rows| rows.take(limit).collect())
                .map_err(map)?;
            for c in &rows {
                lease
                    .execute(params![c.delivery_id, me, now + lease_secs, now])
                    .map_err(map)?;
            }
            out.extend(rows);
        }
    }
    Ok(out)
}

/// Records finished attempts (see [`Outbox::record`]).
fn record_tx(tx: &rusqlite::Transaction<'_>, path: &Path, done: &[Finished]) -> Result<()> {
    let now = event::now();
    let map = |e: rusqlite::Error| storage(path, "record attempt", e);
    // Endpoints whose success is already written in this batch with no failure since.
    let mut healthy: Vec<i64> = Vec::new();
    {
        let mut attempt = tx
                .prepare_cached(
                    "INSERT INTO attempts(delivery_id, started_at, duration_ms, http_status, error_class, error, response, delivery_uuid)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(map)?;
        let mut finish = tx
                .prepare_cached(
                    "UPDATE deliveries SET state = ?2, claimed_by = NULL, lease_until = NULL, last_status = ?3, last_error = ?4,
                       next_attempt_at = ?5, updated_at = ?6 WHERE id = ?1 AND state = 2",
                )
                .map_err(map)?;
        let mut ok = tx
                .prepare_cached(
                    "UPDATE endpoints SET last_success_at = ?2, consecutive_failures = 0, breaker_until = 0 WHERE id = ?1",
                )
                .map_err(map)?;
        let mut failed = tx
            .prepare_cached(
                "UPDATE endpoints SET last_error = ?2, last_error_at = ?3 WHERE id = ?1",
            )
            .map_err(map)?;
        // Only failures that say something about the endpoint (timeouts, connection errors,
        // 408/425/429/5xx) feed its breaker; a 4xx for one event does not.
        let mut unhealthy = tx
                .prepare_cached(
                    "UPDATE endpoints SET consecutive_failures = consecutive_failures + 1,
                       breaker_until = CASE WHEN consecutive_failures + 1 >= ?3 THEN ?2 + ?4 ELSE breaker_until END
                     WHERE id = ?1",
                )
                .map_err(map)?;
        for f in done {
            let response = &f.response[..f.response.len().min(RESPONSE_SNIPPET)];
            attempt
                .execute(params![
                    f.delivery_id,
                    f.started_at,
                    f.duration_ms,
                    f.http_status,
                    f.error_class,
                    f.error,
                    response,
                    f.delivery_uuid
                ])
                .map_err(map)?;
            let summary = describe(f);
            let (new_state, next_at) = match &f.decision {
                Decision::Delivered => (state::DELIVERED, now),
                Decision::RetryAt(t) => (state::READY, *t),
                Decision::Dead | Decision::DeadAndDisable(_) => (state::DEAD, now),
            };
            let err_text = if matches!(f.decision, Decision::Delivered) {
                None
            } else {
                Some(summary.clone())
            };
            let n = finish
                .execute(params![
                    f.delivery_id,
                    new_state,
                    f.http_status,
                    err_text,
                    next_at,
                    now
                ])
                .map_err(map)?;
            if n == 0 {
                // The lease was taken over meanwhile; the attempt stays in the log only.
                continue;
            }
            if matches!(f.decision, Decision::Delivered) {
                // Consecutive successes of one endpoint in a batch write the same values: once.
                if !healthy.contains(&f.endpoint_id) {
                    ok.execute(params![f.endpoint_id, now]).map_err(map)?;
                    healthy.push(f.endpoint_id);
                }
            } else {
                healthy.retain(|id| *id != f.endpoint_id);
                failed
                    .execute(params![f.endpoint_id, summary, now])
                    .map_err(map)?;
                if f.endpoint_failure {
                    unhealthy
                        .execute(params![
                            f.endpoint_id,
                            now,
                            BREAKER_THRESHOLD,
                            f.breaker_pause
                        ])
                        .map_err(map)?;
                }
            }
            if let Decision::DeadAndDisable(reason) = &f.decision {
                tx.execute(
                    "UPDATE endpoints SET disabled_at = ?2, disabled_reason = ?3 WHERE id = ?1",
                    params![f.endpoint_id, now, reason],
                )
                .map_err(map)?;
                bump_endpoints_version(&tx).map_err(map)?;
            }
            if new_state != state::READY {
                if let Some(k) = &f.key {
                    promote(tx, f.endpoint_id, k).map_err(map)?;
                }
            }
        }
    }
    Ok(())
}

fn describe(f: &Finished) -> String {
    match (&f.http_status, &f.error_class, &f.error) {
        (Some(s), _, Some(e)) => format!("HTTP {s}: {e}"),
        (Some(s), _, None) => format!("HTTP {s}"),
        (None, Some(c), Some(e)) => format!("{c}: {e}"),
        (None, Some(c), None) => c.clone(),
        (None, None, Some(e)) => e.clone(),
        (None, None, None) => "failed".into(),
    }
}

fn install_busy_handler(conn: &mut Connection) -> rusqlite::Result<()> {
    let mut started = Instant::now();
    conn.busy_handler(Some(move |count: i32| -> bool {
        if count == 0 {
            started = Instant::now();
        }
        if started.elapsed() >= BUSY_WAIT {
            return false;
        }
        // Sub-millisecond naps: the request path never sleeps whole milliseconds here.
        let micros = match count {
            0..=9 => 20,
            10..=99 => 100,
            _ => 500,
        };
        std::thread::sleep(Duration::from_micros(micros));
        true
    }))
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let app: i32 = tx.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let version: i32 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if app == APPLICATION_ID && version >= SCHEMA_VERSION {
        return tx.commit(); // another process did it meanwhile
    }
    if version == 0 {
        tx.execute_batch(SCHEMA)?;
    }
    // Future: `if version < 2 { ... }` steps go here, each idempotent within this transaction.
    tx.execute_batch(&format!(
        "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION};"
    ))?;
    tx.commit()
}

fn load_endpoints(conn: &Connection) -> rusqlite::Result<Vec<EndpointRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, name, url, secret, prev_secret, prev_secret_until, topics, enabled, disabled_reason, disabled_at,
                rate_limit, timeout, proxy, format, retry_delays, source, consecutive_failures, breaker_until,
                last_success_at, last_error, last_error_at
         FROM endpoints ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        let topics: String = r.get(6)?;
        let format: String = r.get(13)?;
        Ok(EndpointRow {
            id: r.get(0)?,
            name: r.get(1)?,
            url: r.get(2)?,
            secret: r.get(3)?,
            prev_secret: r.get(4)?,
            prev_secret_until: r.get(5)?,
            topics: topics
                .split(',')
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect(),
            enabled: r.get::<_, i64>(7)? != 0,
            disabled_reason: r.get(8)?,
            disabled_at: r.get(9)?,
            rate_limit: r.get(10)?,
            timeout: r.get(11)?,
            proxy: r.get(12)?,
            format: Format::parse(&format).unwrap_or(Format::Standard),
            retry_delays: r.get(14)?,
            source: r.get(15)?,
            consecutive_failures: r.get(16)?,
            breaker_until: r.get(17)?,
            last_success_at: r.get(18)?,
            last_error: r.get(19)?,
            last_error_at: r.get(20)?,
        })
    })?;
    rows.collect()
}

/// Inserts one delivery: `ready` when it heads its key's queue, else `queued`. With `coalesce_topic`,
/// older not-in-flight open deliveries of the same key, topic and endpoint are superseded first.
fn insert_delivery(
    tx: &rusqlite::Transaction<'_>,
    event_rowid: i64,
    endpoint_id: i64,
    key: Option<&str>,
    seq: i64,
    coalesce_topic: Option<&str>,
    now: f64,
) -> rusqlite::Result<()> {
    let mut superseded = 0;
    let mut blocked = false;
    if let Some(k) = key {
        if let Some(topic) = coalesce_topic {
            let ids: Vec<i64> = tx
                .prepare_cached(
                    "SELECT d.id, e.topic FROM deliveries d JOIN events e ON e.id = d.event_rowid
                     WHERE d.endpoint_id = ?1 AND d.key = ?2 AND d.state < 3 AND d.state IN (0, 1)",
                )?
                .query_map(params![endpoint_id, k], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })?
                .filter_map(|r| match r {
                    Ok((id, t)) if t == topic => Some(Ok(id)),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect::<rusqlite::Result<_>>()?;
            let mut upd = tx
                .prepare_cached("UPDATE deliveries SET state = 5, updated_at = ?2 WHERE id = ?1")?;
            for id in &ids {
                superseded += upd.execute(params![id, now])?;
            }
        }
        blocked = tx
            .prepare_cached("SELECT 1 FROM deliveries WHERE endpoint_id = ?1 AND key = ?2 AND state < 3 LIMIT 1")?
            .exists(params![endpoint_id, k])?;
    }
    let st = if blocked { state::QUEUED } else { state::READY };
    tx.prepare_cached(
        "INSERT INTO deliveries(event_rowid, endpoint_id, key, seq, state, next_attempt_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
    )?
    .execute(params![event_rowid, endpoint_id, key, seq, st, now])?;
    if superseded > 0 {
        if let Some(k) = key {
            promote(tx, endpoint_id, k)?;
        }
    }
    Ok(())
}

/// Makes the lowest-sequence queued delivery of (endpoint, key) ready when nothing of that key
/// is ready or in flight.
fn promote(tx: &rusqlite::Transaction<'_>, endpoint_id: i64, key: &str) -> rusqlite::Result<()> {
    // Plain statements without LIMIT or subqueries: their plans do not depend on bound values, so
    // the cached statements are never re-prepared.
    let busy = tx
        .prepare_cached("SELECT 1 FROM deliveries WHERE endpoint_id = ?1 AND key = ?2 AND state < 3 AND state IN (1, 2)")?
        .exists(params![endpoint_id, key])?;
    if busy {
        return Ok(());
    }
    let head: Option<(i64, i64)> = tx
        .prepare_cached("SELECT id, state FROM deliveries WHERE endpoint_id = ?1 AND key = ?2 AND state < 3 ORDER BY seq, id")?
        .query_row(params![endpoint_id, key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if let Some((id, state::QUEUED)) = head {
        tx.prepare_cached("UPDATE deliveries SET state = 1 WHERE id = ?1 AND state = 0")?
            .execute([id])?;
    }
    Ok(())
}

/// Sets finished deliveries matching `cond` back to queued (attempt counter reset) and promotes
/// each affected key's head. Returns how many were requeued.
fn requeue(
    tx: &rusqlite::Transaction<'_>,
    cond: &str,
    args: &[&dyn rusqlite::ToSql],
    now: f64,
) -> rusqlite::Result<usize> {
    let n_args = args.len();
    let now_idx = n_args + 1;
    let affected: Vec<(i64, Option<String>)> = {
        let mut stmt = tx.prepare(&format!(
            "UPDATE deliveries SET state = CASE WHEN key IS NULL THEN 1 ELSE 0 END, attempts = 0, next_attempt_at = ?{now_idx},
               claimed_by = NULL, lease_until = NULL, updated_at = ?{now_idx}
             WHERE {cond} RETURNING endpoint_id, key"
        ))?;
        let mut all: Vec<&dyn rusqlite::ToSql> = args.to_vec();
        all.push(&now);
        let rows = stmt
            .query_map(all.as_slice(), |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        rows
    };
    let mut keys: Vec<(i64, String)> = affected
        .iter()
        .filter_map(|(e, k)| k.clone().map(|k| (*e, k)))
        .collect();
    keys.sort();
    keys.dedup();
    for (e, k) in keys {
        promote(tx, e, &k)?;
    }
    Ok(affected.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("woosync-test-{}-{}", std::process::id(), name));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("sub").join("outbox.sqlite")
    }

    fn default_ep(url: &str) -> DefaultEndpoint {
        DefaultEndpoint {
            url: url.into(),
            secret: String::new(),
            retry_delays: "1,2".into(),
            timeout: 5.0,
            source: String::new(),
        }
    }

    fn ev<'a>(topic: &'a str, key: Option<&'a str>, coalesce: bool) -> NewEvent<'a> {
        NewEvent {
            topic,
            key,
            coalesce,
            endpoints: None,
            data: "{\"a\":1}",
            max_body_bytes: 1 << 20,
        }
    }

    impl Outbox {
        pub(super) fn record_default_endpoint_plain(&mut self, d: &DefaultEndpoint) -> Result<()> {
            self.record_default_endpoint(d, None)
        }
    }

    fn put(ob: &mut Outbox, e: &NewEvent<'_>) -> String {
        let id = ob.enqueue(e).unwrap();
        ob.route_new(1000).unwrap();
        id
    }

    fn finish(ob: &mut Outbox, c: &Claimed, d: Decision) {
        ob.record(&[Finished {
            delivery_id: c.delivery_id,
            endpoint_id: c.endpoint_id,
            key: c.key.clone(),
            started_at: event::now(),
            duration_ms: 1.0,
            http_status: Some(200),
            error_class: None,
            error: None,
            response: b"ok".to_vec(),
            delivery_uuid: "u".into(),
            endpoint_failure: !matches!(d, Decision::Delivered),
            breaker_pause: 5.0,
            decision: d,
        }])
        .unwrap();
    }

    #[test]
    fn creates_schema_and_marks_file() {
        let p = tmp("schema");
        let ob = Outbox::open(&p, Role::Request).unwrap();
        let app: i32 = ob
            .conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .unwrap();
        assert_eq!(app, APPLICATION_ID);
        let mode: String = ob
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        drop(ob);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(p.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        Outbox::open(&p, Role::Sender).unwrap(); // reopen
    }

    #[test]
    fn refuses_foreign_and_garbage_files_untouched() {
        let p = tmp("foreign");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"hello, not a database at all").unwrap();
        let private = |f: &Path| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)).unwrap();
        };
        private(&p);
        let e = Outbox::open(&p, Role::Request).err().unwrap();
        assert!(e.to_string().contains("not a woosync outbox"), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), b"hello, not a database at all");

        let q = p.with_file_name("other.sqlite");
        {
            let c = Connection::open(&q).unwrap();
            c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
                .unwrap();
        }
        private(&q);
        let before = std::fs::read(&q).unwrap();
        let e = Outbox::open(&q, Role::Request).err().unwrap();
        assert!(e.to_string().contains("another application"), "{e}");
        assert_eq!(std::fs::read(&q).unwrap(), before);
    }

    #[test]
    fn refuses_newer_schema() {
        let p = tmp("newer");
        drop(Outbox::open(&p, Role::Request).unwrap());
        Connection::open(&p)
            .unwrap()
            .execute_batch("PRAGMA user_version = 99")
            .unwrap();
        let e = Outbox::open(&p, Role::Request).err().unwrap();
        assert!(e.to_string().contains("newer"), "{e}");
    }

    #[test]
    fn unrouted_without_endpoint_then_routed_by_retry() {
        let p = tmp("unrouted");
        let mut ob = Outbox::open(&p, Role::Request).unwrap();
        ob.record_default_endpoint_plain(&default_ep("")).unwrap();
        let id = put(&mut ob, &ev("a.b", None, false));
        let st = ob.status().unwrap();
        assert_eq!((st.unrouted, st.pending()), (1, 0));
        ob.record_default_endpoint_plain(&default_ep("http://127.0.0.1:9/x"))
            .unwrap();
        assert_eq!(ob.retry_event(&id).unwrap(), Some(true));
        let st = ob.status().unwrap();
        assert_eq!((st.unrouted, st.pending()), (0, 1));
        assert_eq!(
            ob.retry_event("evt_01ARZ3NDEKTSV4RRFFQ69G5FAV").unwrap(),
            None
        );
    }

    #[test]
    fn per_key_order_and_promotion() {
        let p = tmp("order");
        let mut ob = Outbox::open(&p, Role::Request).unwrap();
        ob.record_default_endpoint_plain(&default_ep("http://127.0.0.1:9/x"))
            .unwrap();
        let ep = ob.endpoints().unwrap()[0].id;
        for _ in 0..3 {
            put(
                &mut ob,
                &ev("product.stock_updated", Some("product:1"), false),
            );
        }
        put(
            &mut ob,
            &ev("product.stock_updated", Some("product:2"), false),
        );
        put(&mut ob, &ev("a.b", None, false));
        let now = event::now() + 1.0;
        let c = ob.claim(&[(ep, 10, 20.0)], "me", now).unwrap();
        assert_eq!(
            c.len(),
            3,
            "heads of product:1, product:2 and the keyless event"
        );
        let head1 = c
            .iter()
            .find(|x| x.key.as_deref() == Some("product:1"))
            .unwrap()
            .clone();
        assert!(String::from_utf8_lossy(&head1.body).contains("\"sequence\":1"));
        assert!(ob.claim(&[(ep, 10, 20.0)], "me", now).unwrap().is_empty());
        // A retry keeps the head: nothing else of product:1 becomes due.
        finish(&mut ob, &head1, Decision::RetryAt(now));
        let again = ob.claim(&[(ep, 10, 20.0)], "me", now).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].delivery_id, head1.delivery_id);
        assert_eq!(again[0].attempt, 2);
        finish(&mut ob, &again[0], Decision::Dead);
        let next = ob.claim(&[(ep, 10, 20.0)], "me", now).unwrap();
        assert_eq!(next.len(), 1);
        assert!(String::from_utf8_lossy(&next[0].body).contains("\"sequence\":2"));
        let st = ob.status().unwrap();
        assert_eq!((st.dead, st.in_flight, st.queued), (1, 3, 1));
    }

    #[test]
    fn coalescing_supersedes_waiting_not_in_flight() {
        let p = tmp("coalesce");
        let mut ob = Outbox::open(&p, Role::Request).unwrap();
        ob.record_default_endpoint_plain(&default_ep("http://127.0.0.1:9/x"))
            .unwrap();
        let ep = ob.endpoints().unwrap()[0].id;
        put(&mut ob, &ev("product.stock_updated", Some("p:1"), true));
        let now = event::now() + 1.0;
        let inflight = ob.claim(&[(ep, 10, 20.0)], "me", now).unwrap();
        assert_eq!(inflight.len(), 1);
        for _ in 0..5 {
            put(&mut ob, &ev("product.stock_updated", Some("p:1"), true));
        }
        put(&mut ob, &ev("product.deleted", Some("p:1"), true));
        let st = ob.status().unwrap();
        assert_eq!(st.superseded, 4);
        assert_eq!(st.pending(), 3); // in flight + newest stock + deleted
        finish(&mut ob, &inflight[0], Decision::Delivered);
        let next = ob.claim(&[(ep, 10, 20.0)], "me", now).unwrap();
        assert_eq!(next.len(), 1);
        assert!(String::from_utf8_lossy(&next[0].body).contains("\"sequence\":6"));
    }

    #[test]
    fn dead_holder_leases_are_taken_over() {
        let p = tmp("lease");
        let mut ob = Outbox::open(&p, Role::Sender).unwrap();
        ob.record_default_endpoint_plain(&default_ep("http://127.0.0.1:9/x"))
            .unwrap();
        let ep = ob.endpoints().unwrap()[0].id;
        put(&mut ob, &ev("a.b", Some("k"), false));
        put(&mut ob, &ev("a.b", None, false));
        let now = event::now() + 1.0;
        assert_eq!(ob.claim(&[(ep, 10, 100.0)], "ghost", now).unwrap().len(), 2);
        assert_eq!(
            ob.take_over_leases("me", now, &|_| true).unwrap(),
            0,
            "alive and leased"
        );
        assert_eq!(
            ob.take_over_leases("me", now + 101.0, &|_| true).unwrap(),
            2,
            "expired"
        );
        let c = ob.claim(&[(ep, 10, 100.0)], "ghost", now + 101.0).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(
            ob.take_over_leases("me", now, &|_| false).unwrap(),
            2,
            "dead holder"
        );
        let st = ob.status().unwrap();
        assert_eq!((st.ready, st.in_flight), (2, 0));
        let d = ob.event(&c[0].event_id).unwrap().unwrap();
        assert!(d
            .attempts
            .iter()
            .any(|a| a.error_class.as_deref() == Some("abandoned")));
    }

    #[test]
    fn gone_disables_endpoint_and_url_change_reenables() {
        let p = tmp("gone");
        let mut ob = Outbox::open(&p, Role::Sender).unwrap();
        ob.record_default_endpoint_plain(&default_ep("http://127.0.0.1:9/x"))
            .unwrap();
        let ep = ob.endpoints().unwrap()[0].id;
        put(&mut ob, &ev("a.b", None, false));
        let c = ob
            .claim(&[(ep, 10, 100.0)], "me", event::now() + 1.0)
            .unwrap();
        finish(
            &mut ob,
            &c[0],
            Decision::DeadAndDisable("HTTP 410 Gone".into()),
        );
        put(&mut ob, &ev("a.b", None, false));
        let e = &ob.endpoints().unwrap()[0];
        assert!(!e.sendable() && e.disabled_reason.is_some());
        assert_eq!(ob.status().unwrap().pending(), 1);
        ob.record_default_endpoint_plain(&default_ep("http://127.0.0.1:9/x"))
            .unwrap(); // same url: stays disabled
        assert!(!ob.endpoints().unwrap()[0].sendable());
        ob.record_default_endpoint_plain(&default_ep("http://127.0.0.1:9/y"))
            .unwrap();
        assert!(ob.endpoints().unwrap()[0].sendable());
    }

    #[test]
    fn replay_and_retry_dead() {
        let p = tmp("replay");
        let mut ob = Outbox::open(&p, Role::Sender).unwrap();
        ob.record_default_endpoint_plain(&default_ep("http://127.0.0.1:9/x"))
            .unwrap();
        let ep = ob.endpoints().unwrap()[0].id;
        let id = put(&mut ob, &ev("a.b", Some("k"), false));
        let now = event::now() + 1.0;
        let c = ob.claim(&[(ep, 10, 100.0)], "me", now).unwrap();
        finish(&mut ob, &c[0], Decision::Delivered);
        assert_eq!(ob.retry_event(&id).unwrap(), Some(true));
        let c = ob.claim(&[(ep, 10, 100.0)], "me", now).unwrap();
        assert_eq!(c[0].event_id, id);
        assert_eq!(c[0].attempt, 1);
        finish(&mut ob, &c[0], Decision::Dead);
        assert_eq!(ob.retry_dead(None).unwrap(), 1);
        assert_eq!(ob.retry_dead(Some("default")).unwrap(), 0);
        let d = ob.event(&id).unwrap().unwrap();
        assert_eq!(d.attempts.len(), 2);
        assert_eq!(d.deliveries[0].state, state::READY);
    }

    #[test]
    fn erase_key_deletes_finished_events_and_keeps_pending() {
        let p = tmp("erase");
        let mut ob = Outbox::open(&p, Role::Sender).unwrap();
        ob.record_default_endpoint_plain(&default_ep("http://127.0.0.1:9/x"))
            .unwrap();
        let ep = ob.endpoints().unwrap()[0].id;
        let data = "{\"email\":\"a@example.test\"}";
        let ev = |k| NewEvent {
            topic: "customer.updated",
            key: Some(k),
            coalesce: false,
            endpoints: None,
            data,
            max_body_bytes: 1 << 20,
        };
        let first = put(&mut ob, &ev("customer:1"));
        let other = put(&mut ob, &ev("customer:2"));
        let now = event::now() + 1.0;
        for c in ob.claim(&[(ep, 10, 100.0)], "me", now).unwrap() {
            finish(&mut ob, &c, Decision::Delivered);
        }
        let waiting = put(&mut ob, &ev("customer:1"));
        assert_eq!(ob.erase_key("customer:1").unwrap(), (1, 1));
        assert!(ob.event(&first).unwrap().is_none());
        assert!(
            ob.event(&waiting).unwrap().is_some(),
            "pending events stay until delivered"
        );
        assert!(ob.event(&other).unwrap().is_some(), "other keys untouched");
        // Deliver the waiting one; it is now the newest event: erased in place.
        for c in ob.claim(&[(ep, 10, 100.0)], "me", now).unwrap() {
            finish(&mut ob, &c, Decision::Delivered);
        }
        assert_eq!(ob.erase_key("customer:1").unwrap(), (1, 0));
        let kept = ob.event(&waiting).unwrap().unwrap();
        assert!(!String::from_utf8_lossy(&kept.body).contains("a@example.test"));
        assert!(kept.key.is_none() && kept.attempts.is_empty());
        // New events still get routed after the erasure.
        put(&mut ob, &ev("customer:3"));
        assert_eq!(ob.status().unwrap().pending(), 1);
        assert_eq!(ob.claim(&[(ep, 10, 100.0)], "me", now).unwrap().len(), 1);
    }

    #[test]
    fn payload_limit_keeps_earlier_events() {
        let p = tmp("limit");
        let mut ob = Outbox::open(&p, Role::Request).unwrap();
        ob.record_default_endpoint_plain(&default_ep("http://127.0.0.1:9/x"))
            .unwrap();
        put(&mut ob, &ev("a.b", Some("k"), false));
        let big = "x".repeat(2000);
        let e = ob
            .enqueue(&NewEvent {
                data: &big,
                max_body_bytes: 1000,
                ..ev("a.b", Some("k"), false)
            })
            .unwrap_err();
        assert!(e.to_string().contains("too large"));
        assert_eq!(ob.status().unwrap().pending(), 1);
        let id = put(&mut ob, &ev("a.b", Some("k"), false));
        let d = ob.event(&id).unwrap().unwrap();
        assert_eq!(
            d.seq, 2,
            "a rejected dispatch does not consume a sequence number"
        );
    }

    #[test]
    fn events_listing_filters() {
        let p = tmp("list");
        let mut ob = Outbox::open(&p, Role::Request).unwrap();
        ob.record_default_endpoint_plain(&default_ep("http://127.0.0.1:9/x"))
            .unwrap();
        for i in 0..5 {
            let k = format!("k{}", i % 2);
            put(&mut ob, &ev("order.created", Some(&k), false));
        }
        let all = ob
            .events(&EventFilter {
                limit: 100,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(all.len(), 5);
        assert!(all[0].created_at >= all[4].created_at);
        let k1 = ob
            .events(&EventFilter {
                key: Some("k1".into()),
                limit: 100,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(k1.len(), 2);
        let pending = ob
            .events(&EventFilter {
                state: Some(state::READY),
                limit: 2,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(pending.len(), 2);
    }
}

#[cfg(test)]
mod perf {
    use super::*;
    /// `cargo test --release --lib perf -- --ignored --nocapture`: rough enqueue cost.
    #[test]
    #[ignore]
    fn enqueue_cost() {
        let p = std::env::temp_dir()
            .join(format!("woosync-perf-{}", std::process::id()))
            .join("o.sqlite");
        let mut ob = Outbox::open(&p, Role::Request).unwrap();
        ob.record_default_endpoint_plain(&DefaultEndpoint {
            url: "http://127.0.0.1:9/".into(),
            secret: String::new(),
            retry_delays: "1".into(),
            timeout: 5.0,
            source: String::new(),
        })
        .unwrap();
        let data = r#"{"id":1,"total":"10.00","items":[{"sku":"A","q":1}]}"#;
        for (label, key) in [
            ("keyed", Some("order:1")),
            ("keyless", None),
            ("keyed-again", Some("order:1")),
        ] {
            let mut t = Vec::new();
            for i in 0..5000 {
                let k = key.map(|k: &str| format!("{k}{}", i % 50));
                let s = Instant::now();
                ob.enqueue(&NewEvent {
                    topic: "order.created",
                    key: k.as_deref(),
                    coalesce: false,
                    endpoints: None,
                    data,
                    max_body_bytes: 1 << 20,
                })
                .unwrap();
                t.push(s.elapsed().as_secs_f64() * 1e6);
                if i % 100 == 99 {
                    ob.checkpoint().unwrap();
                }
            }
            t.sort_by(|a, b| a.partial_cmp(b).unwrap());
            println!("{label}: p50 {:.1}us p99 {:.1}us", t[2500], t[4950]);
        }
        let c = Connection::open(&p).unwrap();
        c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; CREATE TABLE IF NOT EXISTS bare(id INTEGER PRIMARY KEY, topic TEXT, k TEXT, body BLOB, created REAL)").unwrap();
        let mut st = c
            .prepare("INSERT INTO bare(topic,k,body,created) VALUES (?1,?2,?3,?4)")
            .unwrap();
        let mut t = Vec::new();
        for _ in 0..5000 {
            let s = Instant::now();
            st.execute(params!["order.created", "order:1", data.as_bytes(), 1.0])
                .unwrap();
            t.push(s.elapsed().as_secs_f64() * 1e6);
        }
        t.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!("bare: p50 {:.1}us p99 {:.1}us", t[2500], t[4950]);
    }
}

#[cfg(test)]
mod reprepare {
    use super::*;

    /// Hot statements must not be re-prepared on every execution (it happens when the planner
    /// makes a plan depend on a bound value).
    #[test]
    fn hot_statements_are_not_reprepared() {
        let p = std::env::temp_dir()
            .join(format!("woosync-reprep-{}", std::process::id()))
            .join("o.sqlite");
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
        let mut ob = Outbox::open(&p, Role::Sender).unwrap();
        ob.record_default_endpoint(
            &DefaultEndpoint {
                url: "http://127.0.0.1:9/".into(),
                secret: String::new(),
                retry_delays: "1".into(),
                timeout: 5.0,
                source: String::new(),
            },
            None,
        )
        .unwrap();
        let ep = ob.endpoints().unwrap()[0].id;
        for round in 0..20 {
            for i in 0..10 {
                let k = format!("k{}", (round * 10 + i) % 7);
                ob.enqueue(&NewEvent {
                    topic: "a.b",
                    key: Some(&k),
                    coalesce: i % 2 == 0,
                    endpoints: None,
                    data: "{}",
                    max_body_bytes: 1 << 20,
                })
                .unwrap();
            }
            let (claimed, _, _) = ob.cycle(&[], 100, &[(ep, 4, 20.0)], 4, "me").unwrap();
            let done: Vec<Finished> = claimed
                .iter()
                .map(|c| Finished {
                    delivery_id: c.delivery_id,
                    endpoint_id: c.endpoint_id,
                    key: c.key.clone(),
                    started_at: event::now(),
                    duration_ms: 1.0,
                    http_status: Some(if round % 3 == 0 { 500 } else { 200 }),
                    error_class: None,
                    error: None,
                    response: vec![],
                    delivery_uuid: "u".into(),
                    decision: if round % 3 == 0 {
                        Decision::RetryAt(event::now())
                    } else {
                        Decision::Delivered
                    },
                    endpoint_failure: round % 3 == 0,
                    breaker_pause: 1.0,
                })
                .collect();
            ob.cycle(&done, 100, &[(ep, 4, 20.0)], 0, "me").unwrap();
            ob.next_due(&[ep]).unwrap();
        }
        let db = unsafe { ob.conn.handle() };
        let mut bad = Vec::new();
        let mut stmt = unsafe { rusqlite::ffi::sqlite3_next_stmt(db, std::ptr::null_mut()) };
        while !stmt.is_null() {
            let n = unsafe {
                rusqlite::ffi::sqlite3_stmt_status(
                    stmt,
                    rusqlite::ffi::SQLITE_STMTSTATUS_REPREPARE,
                    0,
                )
            };
            let runs = unsafe {
                rusqlite::ffi::sqlite3_stmt_status(stmt, rusqlite::ffi::SQLITE_STMTSTATUS_RUN, 0)
            };
            let sql = unsafe { std::ffi::CStr::from_ptr(rusqlite::ffi::sqlite3_sql(stmt)) }
                .to_string_lossy()
                .into_owned();
            if n > 2 {
                bad.push(format!(
                    "{n} reprepares / {runs} runs: {}",
                    sql.split_whitespace().collect::<Vec<_>>().join(" ")
                ));
            }
            stmt = unsafe { rusqlite::ffi::sqlite3_next_stmt(db, stmt) };
        }
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }
}

#[cfg(test)]
mod plans {
    use super::*;

    /// Status must stay cheap with millions of rows: no query of it may sort or scan open rows.
    #[test]
    fn oldest_pending_uses_the_open_index_without_sorting() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(SCHEMA).unwrap();
        let plan: Vec<String> = c
            .prepare(&format!("EXPLAIN QUERY PLAN {OLDEST_OPEN_SQL}"))
            .unwrap()
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let text = plan.join(" | ");
        assert!(text.contains("deliveries_open"), "{text}");
        assert!(!text.contains("TEMP B-TREE"), "{text}");
    }
}

#[cfg(test)]
mod breaker {
    use super::*;

    #[test]
    fn pause_follows_the_retry_schedule() {
        let d = [5.0, 300.0, 1800.0, 7200.0];
        assert_eq!(breaker_pause(&d, BREAKER_THRESHOLD), 5.0);
        assert_eq!(breaker_pause(&d, BREAKER_THRESHOLD + 1), 300.0);
        assert_eq!(breaker_pause(&d, BREAKER_THRESHOLD + 2), BREAKER_MAX_PAUSE);
        assert_eq!(breaker_pause(&d, BREAKER_THRESHOLD + 50), BREAKER_MAX_PAUSE);
        assert_eq!(breaker_pause(&[0.05, 0.1], BREAKER_THRESHOLD + 3), 1.0);
        assert_eq!(breaker_pause(&[], BREAKER_THRESHOLD), 5.0);
    }
}
