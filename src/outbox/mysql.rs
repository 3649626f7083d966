//! The MySQL/MariaDB engine: the outbox in the shop's own database, shared by several web servers.
//!
//! `woosync.database = mysql://USER:PASSWORD@HOST[:PORT]/DBNAME[?prefix=P&socket=/path&ssl-mode=…&ssl-ca=…]`
//! (also `mariadb://`). Tables `<prefix>woosync_*` (default prefix `wp_`) are created and migrated
//! on first use (under a named lock), with the schema version in `<prefix>woosync_meta`. MariaDB ≥
//! 10.6 or MySQL ≥ 8.0 (both have `FOR UPDATE SKIP LOCKED`); InnoDB; no triggers, procedures or
//! events (the counts are kept by the shared code), so it works with binary logging and without
//! SUPER. Sessions run READ COMMITTED with `innodb_lock_wait_timeout = 2` (a dispatch never waits
//! longer on another host's lock) and, on MariaDB, `idle_transaction_timeout` (a host frozen inside
//! a transaction has it ended by the server within seconds).
//!
//! Routing uses a `routed` flag, not a high-water mark: with several writers, ids are not committed
//! in order. Per-key order still holds: a key's counter row is locked from the sequence number until
//! commit, so a key's events commit (and get their ids) in sequence order.
//!
//! Times that decide leases and retries are the server's (`UNIX_TIMESTAMP(NOW(6))`, read once per
//! transaction). One sender for the whole database holds the row `lease('sender')` with a fencing
//! token (see `Mysql::acquire_lease`); its cycle transactions check (and renew) the token first, so
//! a sender that lost the lease — frozen, partitioned — writes nothing.
//!
//! Connections: one per process and role, opened on first use, never in MINIT; the request side's
//! is closed after [`IDLE_CLOSE`] of idleness by a small janitor thread, so idle php-fpm workers do
//! not hold one. After a fork the child forgets the parent's connections without a word on the wire
//! (dropping one would send COM_QUIT and end the parent's session): `fork.rs` closes the child's
//! copy of the socket only.

use super::engine::{
    CounterDeltas, DefaultWrite, EndpointUpdate, EndpointWrite, Engine, EventInsert, FinishRow,
    KeyEvent, OpenDelivery, Requeue, RouteRow, StatDeltas, Stored, StoredEndpoint,
};
use super::mysql_url::MysqlUrl;
use super::types::*;
use crate::config::{self, Format};
use crate::error::{Error, Result};
use mysql::prelude::Queryable;
use mysql::{Conn, Params, Row, Value};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// Connecting gives up after this (a silent host: accepts TCP, never answers).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A statement gives up after this (a server that stopped answering).
pub const IO_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait for a row lock held by another process or host (then the call raises).
pub const LOCK_WAIT_SECONDS: u32 = 2;
/// The server ends a transaction left idle this long (MariaDB `idle_transaction_timeout`).
pub const IDLE_TRANSACTION_SECONDS: u32 = 5;
/// A request-side connection unused this long is closed.
pub const IDLE_CLOSE: Duration = Duration::from_secs(10);
/// The sender's lease: renewed at least every second, taken over when it has not been for this long.
pub const LEASE_SECONDS: f64 = 4.0;

/// The tables of one outbox, quoted.
#[derive(Debug, Clone)]
struct Tables {
    meta: String,
    endpoints: String,
    events: String,
    deliveries: String,
    attempts: String,
    key_seq: String,
    stats: String,
    counters: String,
    lease: String,
}

impl Tables {
    fn new(prefix: &str) -> Tables {
        let t = |n: &str| format!("`{prefix}woosync_{n}`");
        Tables {
            meta: t("meta"),
            endpoints: t("endpoints"),
            events: t("events"),
            deliveries: t("deliveries"),
            attempts: t("attempts"),
            key_seq: t("key_seq"),
            stats: t("stats"),
            counters: t("counters"),
            lease: t("lease"),
        }
    }

    fn schema(&self) -> Vec<String> {
        let opts = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin";
        vec![
            format!("CREATE TABLE IF NOT EXISTS {} (k VARCHAR(64) NOT NULL PRIMARY KEY, v TEXT NOT NULL) {opts}", self.meta),
            format!(
                "CREATE TABLE IF NOT EXISTS {} (
                  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, name VARCHAR(191) NOT NULL UNIQUE,
                  url TEXT NOT NULL, secret TEXT NOT NULL, prev_secret TEXT NOT NULL, prev_secret_until DOUBLE NOT NULL,
                  topics TEXT NOT NULL, enabled TINYINT NOT NULL, disabled_reason TEXT NULL, disabled_at DOUBLE NULL,
                  rate_limit DOUBLE NOT NULL, timeout DOUBLE NOT NULL, proxy TEXT NOT NULL, format VARCHAR(32) NOT NULL,
                  retry_delays TEXT NOT NULL, source TEXT NOT NULL, consecutive_failures BIGINT NOT NULL DEFAULT 0,
                  breaker_until DOUBLE NOT NULL DEFAULT 0, last_success_at DOUBLE NULL, last_error TEXT NULL,
                  last_error_at DOUBLE NULL, created_at DOUBLE NOT NULL, updated_at DOUBLE NOT NULL,
                  allow_networks TEXT NOT NULL, refused_reason TEXT NULL, refused_until DOUBLE NOT NULL DEFAULT 0,
                  signature VARCHAR(32) NOT NULL, hash_algorithm VARCHAR(16) NOT NULL, success_codes VARCHAR(255) NOT NULL,
                  user_agent TEXT NOT NULL, headers MEDIUMTEXT NOT NULL, wc_webhook_id BIGINT NULL) {opts}",
                self.endpoints
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {} (
                  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, event_id CHAR(30) NOT NULL UNIQUE,
                  topic VARCHAR(128) NOT NULL, `key` VARCHAR(255) NULL, seq BIGINT NOT NULL, created_at DOUBLE NOT NULL,
                  unrouted TINYINT NOT NULL DEFAULT 0, `coalesce` TINYINT NOT NULL DEFAULT 0, route TEXT NULL,
                  data_offset INT NOT NULL, body LONGBLOB NOT NULL, raw TINYINT NOT NULL DEFAULT 0, headers MEDIUMTEXT NULL,
                  routed TINYINT NOT NULL DEFAULT 0, KEY routing (routed, id), KEY by_key (`key`)) {opts}",
                self.events
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {} (
                  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, event_rowid BIGINT NOT NULL, endpoint_id BIGINT NOT NULL,
                  `key` VARCHAR(255) NULL, seq BIGINT NOT NULL, state TINYINT NOT NULL, attempts INT NOT NULL DEFAULT 0,
                  next_attempt_at DOUBLE NOT NULL, claimed_by VARCHAR(255) NULL, lease_until DOUBLE NULL,
                  last_status INT NULL, last_error TEXT NULL, updated_at DOUBLE NOT NULL,
                  KEY due (state, endpoint_id, next_attempt_at), KEY by_key (endpoint_id, `key`, state, seq),
                  KEY by_event (event_rowid)) {opts}",
                self.deliveries
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {} (
                  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, delivery_id BIGINT NOT NULL, started_at DOUBLE NOT NULL,
                  duration_ms DOUBLE NOT NULL, http_status INT NULL, error_class VARCHAR(32) NULL, error TEXT NULL,
                  response BLOB NULL, delivery_uuid VARCHAR(64) NULL, KEY by_delivery (delivery_id)) {opts}",
                self.attempts
            ),
            format!("CREATE TABLE IF NOT EXISTS {} (`key` VARCHAR(255) NOT NULL PRIMARY KEY, seq BIGINT NOT NULL) {opts}", self.key_seq),
            format!(
                "CREATE TABLE IF NOT EXISTS {} (endpoint_id BIGINT NOT NULL, state TINYINT NOT NULL, n BIGINT NOT NULL,
                  PRIMARY KEY (endpoint_id, state)) {opts}",
                self.stats
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {} (endpoint_id BIGINT NOT NULL, name VARCHAR(32) NOT NULL, label VARCHAR(191) NOT NULL,
                  value DOUBLE NOT NULL, PRIMARY KEY (endpoint_id, name, label)) {opts}",
                self.counters
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {} (name VARCHAR(32) NOT NULL PRIMARY KEY, holder VARCHAR(255) NOT NULL,
                  host VARCHAR(255) NOT NULL, token BIGINT NOT NULL, expires_at DOUBLE NOT NULL, since DOUBLE NOT NULL) {opts}",
                self.lease
            ),
            format!("INSERT IGNORE INTO {} (k, v) VALUES ('endpoints_version', '0'), ('moved_to', '')", self.meta),
            format!("INSERT IGNORE INTO {} (endpoint_id, state, n) VALUES (0, 6, 0)", self.stats),
            format!(
                "INSERT IGNORE INTO {} (name, holder, host, token, expires_at, since) VALUES ('sender', '', '', 0, 0, 0)",
                self.lease
            ),
        ]
    }
}

/// One connection, shared with the janitor that closes it when idle (request side).
struct Slot {
    conn: Option<Conn>,
    last_used: Instant,
    /// A transaction is open: the janitor leaves it alone.
    busy: bool,
}

/// Closes a connection without a word on the wire when it is broken (dropping it would first try
/// to send COM_QUIT, which can wait on a dead peer).
fn discard(conn: Conn, broken: bool) {
    let fd = conn.as_raw_fd();
    crate::fork::keep_in_child(fd);
    if broken {
        std::mem::forget(conn);
        // SAFETY: the descriptor of the connection we just forgot.
        unsafe { libc::close(fd) };
    } else {
        drop(conn);
    }
}

/// Request-side connections the janitor watches, and the process it runs in.
static JANITOR_PID: AtomicU32 = AtomicU32::new(0);
static WATCHED: Mutex<Vec<Weak<Mutex<Slot>>>> = Mutex::new(Vec::new());

/// Starts (once per process) the thread that closes request-side connections idle for
/// [`IDLE_CLOSE`], and registers `slot` with it.
fn watch(slot: &Arc<Mutex<Slot>>) {
    let pid = std::process::id();
    if let Ok(mut w) = WATCHED.lock() {
        if JANITOR_PID.load(SeqCst) != pid {
            // A forked child: the parent's list is not ours (its slots are never used here).
            std::mem::forget(std::mem::take(&mut *w));
        }
        w.push(Arc::downgrade(slot));
    }
    if JANITOR_PID.swap(pid, SeqCst) == pid {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("woosync-mysql-idle".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_secs(2));
            if std::process::id() != pid {
                return;
            }
            let slots: Vec<Arc<Mutex<Slot>>> = match WATCHED.lock() {
                Ok(mut w) => {
                    w.retain(|s| s.strong_count() > 0);
                    w.iter().filter_map(|s| s.upgrade()).collect()
                }
                Err(_) => continue,
            };
            for s in slots {
                if let Ok(mut g) = s.try_lock() {
                    if !g.busy && g.last_used.elapsed() >= IDLE_CLOSE {
                        if let Some(c) = g.conn.take() {
                            discard(c, false);
                        }
                    }
                }
            }
        });
}

fn col<T: mysql::prelude::FromValue>(r: &Row, i: usize) -> mysql::Result<T> {
    match r.get_opt::<T, usize>(i) {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(mysql::Error::FromValueError(e.0)),
        None => Err(mysql::Error::FromValueError(Value::NULL)),
    }
}

/// What a standby found when it looked at the sender's lease.
#[derive(Debug, Clone, PartialEq)]
pub enum LeaseCheck {
    /// This process is the sender now, with this fencing token.
    Won(i64),
    /// Another process holds it for `remaining` more seconds (server clock; ≤ 0: it just expired).
    Held { holder: String, remaining: f64 },
}

/// MySQL/MariaDB outbox connection.
pub struct Mysql {
    url: MysqlUrl,
    t: Tables,
    slot: Arc<Mutex<Slot>>,
    now: Option<f64>,
    in_tx: bool,
    /// The lease this process holds as the sender (token, holder identity), checked by
    /// `check_fence` in every cycle; None for other connections.
    fence: Option<(i64, String)>,
    last_renew: Option<Instant>,
    /// The fence failed: another process holds the lease now.
    lost: bool,
}

/// MySQL error codes that matter here.
const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;
const ER_LOCK_DEADLOCK: u16 = 1213;
const ER_NO_SUCH_TABLE: u16 = 1146;
const ER_CON_COUNT_ERROR: u16 = 1040;

impl Mysql {
    /// Connects (creating or migrating the tables if needed).
    pub fn open(url: &MysqlUrl, role: Role) -> Result<Mysql> {
        crate::fork::install();
        let slot = Arc::new(Mutex::new(Slot {
            conn: None,
            last_used: Instant::now(),
            busy: false,
        }));
        let mut m = Mysql {
            url: url.clone(),
            t: Tables::new(&url.prefix),
            slot,
            now: None,
            in_tx: false,
            fence: None,
            last_renew: None,
            lost: false,
        };
        m.connect()?;
        m.migrate()?;
        if role == Role::Request {
            watch(&m.slot);
        }
        Ok(m)
    }

    /// One row into the events table (a dispatch stored in steps, or an event moved in by
    /// `woosync_migrate`): the 11 columns in table order; its rowid.
    fn insert_event_row(&self, what: &str, p: Vec<Value>) -> Result<i64> {
        let t = &self.t.events;
        self.raw(|c| {
            c.exec_drop(
                format!(
                    "INSERT INTO {t} (event_id, topic, `key`, seq, created_at, `coalesce`, route, data_offset, body, raw, headers)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                p,
            )?;
            Ok(c.last_insert_id() as i64)
        })
        .map_err(|er| self.map(what, er))
    }

    fn fail(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::storage(format!("{}: {what}: {e}", self.url.masked()))
    }

    /// Opens a new connection (and checks the server).
    fn connect(&mut self) -> Result<()> {
        let conn = new_conn(&self.url)?;
        if let Ok(mut g) = self.slot.lock() {
            if let Some(old) = g.conn.take() {
                discard(old, true);
            }
            g.conn = Some(conn);
            g.last_used = Instant::now();
        }
        Ok(())
    }

    fn migrate(&mut self) -> Result<()> {
        let t = self.t.clone();
        let lock = format!("{}.{}woosync_schema", self.url.database, self.url.prefix);
        let current: std::result::Result<Option<String>, mysql::Error> = self.raw(|c| {
            c.exec_first(
                format!("SELECT v FROM {} WHERE k = 'schema_version'", t.meta),
                (),
            )
        });
        let version = match current {
            Ok(v) => v.and_then(|v| v.parse::<i32>().ok()).unwrap_or(0),
            Err(mysql::Error::MySqlError(e)) if e.code == ER_NO_SUCH_TABLE => 0,
            Err(e) => return Err(self.fail("read the schema version", clean(&e))),
        };
        if version > SCHEMA_VERSION {
            return Err(self.fail(
                "check the schema",
                format!("schema version {version} is newer than this woosync ({SCHEMA_VERSION}, {}): upgrade the extension", env!("CARGO_PKG_VERSION")),
            ));
        }
        if version == SCHEMA_VERSION {
            return Ok(());
        }
        let result = self.raw(|c| {
            let got: Option<i64> = c.exec_first("SELECT GET_LOCK(?, 10)", (lock.clone(),))?;
            if got != Some(1) {
                return Err(mysql::Error::MySqlError(mysql::MySqlError {
                    state: "HY000".into(),
                    code: 0,
                    message: "another process is creating the tables (GET_LOCK timed out)".into(),
                }));
            }
            let mut r = Ok(());
            for stmt in t.schema() {
                if let Err(e) = c.query_drop(stmt) {
                    r = Err(e);
                    break;
                }
            }
            if r.is_ok() {
                r = c.exec_drop(
                    format!("INSERT INTO {} (k, v) VALUES ('schema_version', ?) ON DUPLICATE KEY UPDATE v = VALUES(v)", t.meta),
                    (SCHEMA_VERSION.to_string(),),
                );
            }
            let _ = c.exec_drop("SELECT RELEASE_LOCK(?)", (lock.clone(),));
            r
        });
        result.map_err(|e| self.fail("create the tables", clean(&e)))
    }

    /// Opens a connection if there is none (reporting why it cannot).
    fn ensure_connected(&mut self) -> Result<()> {
        let missing = self.slot.lock().map(|g| g.conn.is_none()).unwrap_or(true);
        if missing {
            self.connect()?;
        }
        Ok(())
    }

    /// Runs `f` on the connection (connecting if there is none and no transaction is open).
    fn raw<T>(&self, f: impl FnOnce(&mut Conn) -> mysql::Result<T>) -> mysql::Result<T> {
        let mut g = self
            .slot
            .lock()
            .map_err(|_| mysql::Error::server_disconnected())?;
        if g.conn.is_none() {
            if self.in_tx {
                return Err(mysql::Error::server_disconnected());
            }
            match new_conn(&self.url) {
                Ok(c) => g.conn = Some(c),
                // The reason, without the URL (the caller's message names the outbox).
                Err(e) => {
                    let text = e.to_string();
                    let why = text
                        .split_once(": cannot connect: ")
                        .map_or(text.as_str(), |(_, w)| w);
                    return Err(mysql::Error::IoError(std::io::Error::other(format!(
                        "cannot connect: {why}"
                    ))));
                }
            }
        }
        g.last_used = Instant::now();
        let conn = g
            .conn
            .as_mut()
            .ok_or_else(mysql::Error::server_disconnected)?;
        let r = f(conn);
        if let Err(e) = &r {
            if e.is_connectivity_error()
                || matches!(e, mysql::Error::MySqlError(me) if me.code == 1927 || me.code == 4031 || me.code == 1053)
            {
                if let Some(c) = g.conn.take() {
                    discard(c, true);
                }
            }
        }
        r
    }

    /// Maps a driver error: deadlocks and lost connections may be run again (the transaction did
    /// not happen), a lock held too long by another host is said so.
    fn map(&self, what: &str, e: mysql::Error) -> Error {
        match &e {
            mysql::Error::MySqlError(me) if me.code == ER_LOCK_DEADLOCK => {
                Error::Retry(format!("{}: {what}: deadlock, run again", self.url.masked()))
            }
            mysql::Error::MySqlError(me) if me.code == ER_LOCK_WAIT_TIMEOUT => Error::storage(format!(
                "{}: {what}: waited {LOCK_WAIT_SECONDS} s for a row another process (maybe on another host) holds locked; try again (if it persists, look for a stuck process in SHOW PROCESSLIST)",
                self.url.masked()
            )),
            mysql::Error::MySqlError(me) if me.code == ER_CON_COUNT_ERROR => Error::storage(format!(
                "{}: {what}: the server has too many connections (max_connections); woosync holds one per sending process and one per recently dispatching worker",
                self.url.masked()
            )),
            e if e.is_connectivity_error() => {
                Error::Retry(format!("{}: {what}: the connection was lost ({}); run again", self.url.masked(), clean(e)))
            }
            mysql::Error::MySqlError(me) if me.code == 1927 || me.code == 4031 || me.code == 1053 => {
                Error::Retry(format!("{}: {what}: the server ended the session ({}); run again", self.url.masked(), clean(&e)))
            }
            _ => self.fail(what, clean(&e)),
        }
    }

    fn exec(&self, what: &str, sql: &str, p: impl Into<Params>) -> Result<u64> {
        self.raw(|c| {
            c.exec_drop(sql, p)?;
            Ok(c.affected_rows())
        })
        .map_err(|e| self.map(what, e))
    }

    fn rows<T>(
        &self,
        what: &str,
        sql: &str,
        p: impl Into<Params>,
        f: impl FnMut(Row) -> mysql::Result<T>,
    ) -> Result<Vec<T>> {
        self.raw(|c| {
            let rows: Vec<Row> = c.exec(sql, p)?;
            rows.into_iter().map(f).collect()
        })
        .map_err(|e| self.map(what, e))
    }

    fn row<T>(
        &self,
        what: &str,
        sql: &str,
        p: impl Into<Params>,
        f: impl FnOnce(Row) -> mysql::Result<T>,
    ) -> Result<Option<T>> {
        self.raw(|c| {
            let r: Option<Row> = c.exec_first(sql, p)?;
            r.map(f).transpose()
        })
        .map_err(|e| self.map(what, e))
    }

    /// Several statements in one round trip (text protocol); returns each one's affected rows.
    fn batch(&self, what: &str, statements: &[String]) -> Result<Vec<u64>> {
        if statements.is_empty() {
            return Ok(Vec::new());
        }
        let text = statements.join(";\n");
        self.raw(|c| {
            let mut out = Vec::with_capacity(statements.len());
            let mut result = c.query_iter(text)?;
            while let Some(set) = result.iter() {
                out.push(set.affected_rows());
                for row in set {
                    row?;
                }
            }
            Ok(out)
        })
        .map_err(|e| self.map(what, e))
    }

    /// A value as an SQL literal for the text protocol.
    fn lit(&self, v: impl Into<Value>) -> String {
        let v: Value = v.into();
        v.as_sql(false)
    }

    // ---- the election (the sender's lease) ----------------------------------------------

    /// Takes the sender's lease when it is free or expired (server clock), creating the tables
    /// first if there are none. Runs on its own short-lived connection (standbys hold none
    /// between checks).
    pub fn acquire_lease(url: &MysqlUrl, identity: &str, host: &str) -> Result<LeaseCheck> {
        match Mysql::try_lease(url, identity, host) {
            Err(mysql::Error::MySqlError(e)) if e.code == ER_NO_SUCH_TABLE => {
                drop(Mysql::open(url, Role::Sender)?);
                Mysql::try_lease(url, identity, host)
            }
            r => r,
        }
        .map_err(|e| Error::storage(format!("{}: election: {e}", url.masked())))
    }

    fn try_lease(url: &MysqlUrl, identity: &str, host: &str) -> mysql::Result<LeaseCheck> {
        let t = Tables::new(&url.prefix);
        let mut conn = new_conn(url)
            .map_err(|e| mysql::Error::IoError(std::io::Error::other(e.to_string())))?;
        let r = (|| -> mysql::Result<LeaseCheck> {
            conn.exec_drop(
                format!(
                    "UPDATE {} SET holder = ?, host = ?, token = token + 1,
                       expires_at = UNIX_TIMESTAMP(NOW(6)) + ?, since = UNIX_TIMESTAMP(NOW(6))
                     WHERE name = 'sender' AND expires_at < UNIX_TIMESTAMP(NOW(6))",
                    t.lease
                ),
                (identity, host, LEASE_SECONDS),
            )?;
            let won = conn.affected_rows() > 0;
            let row: Option<(i64, String, f64)> = conn.exec_first(
                format!(
                    "SELECT token, holder, expires_at - UNIX_TIMESTAMP(NOW(6)) FROM {} WHERE name = 'sender'",
                    t.lease
                ),
                (),
            )?;
            Ok(match row {
                Some((token, holder, _)) if won && holder == identity => LeaseCheck::Won(token),
                Some((_, holder, remaining)) => LeaseCheck::Held { holder, remaining },
                None => LeaseCheck::Held {
                    holder: String::new(),
                    remaining: 0.0,
                },
            })
        })();
        discard(conn, r.is_err());
        r
    }

    fn endpoint_row(r: Row) -> mysql::Result<EndpointRow> {
        let topics: String = col(&r, 6)?;
        let format: String = col(&r, 13)?;
        Ok(EndpointRow {
            id: col(&r, 0)?,
            name: col(&r, 1)?,
            url: col(&r, 2)?,
            secret: col(&r, 3)?,
            prev_secret: col(&r, 4)?,
            prev_secret_until: col(&r, 5)?,
            topics: topics
                .split(',')
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect(),
            enabled: col::<i64>(&r, 7)? != 0,
            disabled_reason: col(&r, 8)?,
            disabled_at: col(&r, 9)?,
            rate_limit: col(&r, 10)?,
            timeout: col(&r, 11)?,
            proxy: col(&r, 12)?,
            format: Format::parse(&format).unwrap_or(Format::Standard),
            retry_delays: col(&r, 14)?,
            source: col(&r, 15)?,
            consecutive_failures: col(&r, 16)?,
            breaker_until: col(&r, 17)?,
            last_success_at: col(&r, 18)?,
            last_error: col(&r, 19)?,
            last_error_at: col(&r, 20)?,
            allow_networks: col(&r, 21)?,
            refused_reason: col(&r, 22)?,
            refused_until: col(&r, 23)?,
            signature: config::SignatureMode::parse(&col::<String>(&r, 24)?)
                .unwrap_or(config::SignatureMode::Standard),
            hash_algorithm: config::HashAlgorithm::parse(&col::<String>(&r, 25)?)
                .unwrap_or(config::HashAlgorithm::Sha256),
            success_codes: config::SuccessCodes::parse(&col::<String>(&r, 26)?).unwrap_or_default(),
            user_agent: col(&r, 27)?,
            headers: config::headers_from_json(&col::<String>(&r, 28)?),
            wc_webhook_id: col(&r, 29)?,
        })
    }
}

/// A driver error as a person reads it: the server's message and code, or the I/O or TLS failure,
/// without the driver's type names (`MySqlError { … }`).
pub(super) fn clean(e: &mysql::Error) -> String {
    let text = match e {
        mysql::Error::MySqlError(me) => {
            return format!("{} (server error {})", me.message, me.code)
        }
        mysql::Error::IoError(io) => io.to_string(),
        mysql::Error::DriverError(d) => d.to_string(),
        mysql::Error::UrlError(u) => u.to_string(),
        other => {
            // `CodecError { IO error: `…' }`, `TlsError { … }`: the part inside.
            let s = other.to_string();
            let inner = s.split_once(" { ").map_or(s.as_str(), |(_, rest)| {
                rest.strip_suffix(" }").unwrap_or(rest)
            });
            let inner = inner
                .strip_prefix("IO error: `")
                .map_or(inner, |x| x.strip_suffix('\'').unwrap_or(x));
            inner.to_string()
        }
    };
    let lower = text.to_ascii_lowercase();
    if lower.contains("certificate") || lower.contains("handshake") || lower.contains("tls") {
        format!("TLS: {text} (check ssl-mode and ssl-ca)")
    } else {
        text
    }
}

/// A new connection with the session settings woosync relies on; the server checked.
fn new_conn(url: &MysqlUrl) -> Result<Conn> {
    let fail = |e: &dyn std::fmt::Display| {
        Error::storage(format!("{}: cannot connect: {e}", url.masked()))
    };
    let conn = Conn::new(url.opts()).map_err(|e| fail(&clean(&e)))?;
    match setup(conn) {
        Ok(conn) => {
            // A forked child closes its copy of the socket without a word on the wire.
            crate::fork::close_in_child(conn.as_raw_fd());
            Ok(conn)
        }
        Err((conn, why)) => {
            let fd = conn.as_raw_fd();
            std::mem::forget(conn);
            // SAFETY: the descriptor of the connection just forgotten (never registered).
            unsafe { libc::close(fd) };
            Err(fail(&why))
        }
    }
}

/// Checks the server's version and sets the session up.
fn setup(mut conn: Conn) -> std::result::Result<Conn, (Conn, String)> {
    let version: String = match conn.query_first::<String, _>("SELECT VERSION()") {
        Ok(v) => v.unwrap_or_default(),
        Err(e) => return Err((conn, clean(&e))),
    };
    let mariadb = version.to_ascii_lowercase().contains("mariadb");
    // From VERSION() ("10.11.19-MariaDB-…"): the handshake's version of MariaDB starts "5.5.5-".
    let mut nums = version
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
    let ok = if mariadb {
        (major, minor) >= (10, 6)
    } else {
        major >= 8
    };
    if !ok {
        return Err((
            conn,
            format!("the server is {version}; woosync needs MariaDB 10.6 or later, or MySQL 8.0 or later (FOR UPDATE SKIP LOCKED)"),
        ));
    }
    let mut setup = format!(
        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED; SET SESSION innodb_lock_wait_timeout = {LOCK_WAIT_SECONDS}; SET NAMES utf8mb4; SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'"
    );
    if mariadb {
        setup.push_str(&format!(
            "; SET SESSION idle_transaction_timeout = {IDLE_TRANSACTION_SECONDS}"
        ));
    } else {
        // MySQL has no idle_transaction_timeout: a session idle this long is closed (and its
        // transaction rolled back); woosync reconnects on the next call.
        setup.push_str(&format!(
            "; SET SESSION wait_timeout = {}",
            IDLE_TRANSACTION_SECONDS * 2
        ));
    }
    match conn.query_drop(setup) {
        Ok(()) => Ok(conn),
        Err(e) => Err((conn, e.to_string())),
    }
}

/// Bytes as an SQL literal that survives any connection character set: X'…'.
fn bytes_lit(b: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2 + 3);
    s.push_str("X'");
    for &c in b {
        s.push(HEX[(c >> 4) as usize] as char);
        s.push(HEX[(c & 15) as usize] as char);
    }
    s.push('\'');
    s
}

fn ids_list(ids: &[i64]) -> String {
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

const ENDPOINT_COLUMNS: &str = "id, name, url, secret, prev_secret, prev_secret_until, topics, enabled, disabled_reason, disabled_at,
    rate_limit, timeout, proxy, format, retry_delays, source, consecutive_failures, breaker_until,
    last_success_at, last_error, last_error_at, allow_networks, refused_reason, refused_until,
    signature, hash_algorithm, success_codes, user_agent, headers, wc_webhook_id";

impl Engine for Mysql {
    fn label(&self) -> String {
        format!("outbox {}", self.url.masked())
    }

    fn keeps_newest_event(&self) -> bool {
        false
    }

    fn begin(&mut self, write: bool) -> Result<()> {
        self.now = None;
        // A connection the server dropped (idle timeout, restart) is replaced here, before the
        // transaction, transparently.
        // Reads see one snapshot (status, pending counts, the log), as SQLite's do; writes run
        // READ COMMITTED (the session's level) and lock what they change.
        let sql = if write {
            "START TRANSACTION"
        } else {
            "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"
        };
        self.ensure_connected()?;
        let started = Instant::now();
        let r = self.raw(|c| c.query_drop(sql));
        if let Err(e) = r {
            // A connection the server closed fails at once: one fresh connection. One that timed
            // out is not tried again (the caller hears within the timeout, not twice it).
            if e.is_connectivity_error() && started.elapsed() < Duration::from_secs(1) {
                self.connect()?;
                self.raw(|c| c.query_drop(sql))
                    .map_err(|e| self.fail("begin", clean(&e)))?;
            } else {
                return Err(self.map("begin", e));
            }
        }
        self.in_tx = true;
        if let Ok(mut g) = self.slot.lock() {
            g.busy = true;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        let r = self.raw(|c| c.query_drop("COMMIT"));
        self.in_tx = false;
        if let Ok(mut g) = self.slot.lock() {
            g.busy = false;
        }
        r.map_err(|e| self.map("commit", e))
    }

    fn rollback(&mut self) {
        if self.in_tx {
            let _ = self.raw(|c| c.query_drop("ROLLBACK"));
        }
        self.in_tx = false;
        if let Ok(mut g) = self.slot.lock() {
            g.busy = false;
        }
    }

    fn now(&mut self) -> Result<f64> {
        if let Some(n) = self.now {
            return Ok(n);
        }
        let n: f64 = self
            .row("read the clock", "SELECT UNIX_TIMESTAMP(NOW(6))", (), |r| {
                col(&r, 0)
            })?
            .unwrap_or_else(crate::event::now);
        self.now = Some(n);
        Ok(n)
    }

    fn check_fence(&mut self) -> Result<()> {
        let Some((token, holder)) = self.fence.clone() else {
            return Ok(());
        };
        // Renewing takes the lease row's lock until this transaction ends: no takeover can slip
        // in between the check and what this cycle writes. The local deadline counts from before
        // the statement (the server's expiry is later than that).
        let started = Instant::now();
        let renewed = self.exec(
            "check the lease",
            &format!(
                "UPDATE {} SET expires_at = UNIX_TIMESTAMP(NOW(6)) + ? WHERE name = 'sender' AND token = ? AND holder = ?",
                self.t.lease
            ),
            (LEASE_SECONDS, token, holder),
        )?;
        if renewed == 0 {
            self.fence = None;
            self.lost = true;
            return Err(Error::storage(format!(
                "{}: this process lost the sender's lease (another process took over after it expired); standing by",
                self.url.masked()
            )));
        }
        self.last_renew = Some(started);
        Ok(())
    }

    fn set_fence(&mut self, token: i64, holder: &str) {
        self.fence = Some((token, holder.to_string()));
        self.last_renew = Some(Instant::now());
        self.lost = false;
    }

    fn renewed_at(&self) -> Option<Instant> {
        self.last_renew
    }

    fn lost_lease(&self) -> bool {
        self.lost
    }

    fn release_lease(&mut self) {
        if let Some((token, holder)) = self.fence.take() {
            let sql = format!(
                "UPDATE {} SET expires_at = 0 WHERE name = 'sender' AND token = ? AND holder = ?",
                self.t.lease
            );
            let _ = self.exec("release the lease", &sql, (token, holder));
        }
    }

    fn clock_offset(&mut self) -> Result<f64> {
        let before = crate::event::now();
        let server: Option<f64> = self
            .raw(|c| c.query_first("SELECT UNIX_TIMESTAMP(NOW(6))"))
            .map_err(|e| self.map("read the clock", e))?;
        let after = crate::event::now();
        Ok(server.map_or(0.0, |s| s - (before + after) / 2.0))
    }

    // ---- meta ----

    fn endpoints_version(&mut self) -> Result<i64> {
        Ok(self
            .row(
                "read endpoints version",
                &format!(
                    "SELECT CAST(v AS SIGNED) FROM {} WHERE k = 'endpoints_version'",
                    self.t.meta
                ),
                (),
                |r| col(&r, 0),
            )?
            .unwrap_or(0))
    }

    fn bump_endpoints_version(&mut self) -> Result<()> {
        self.exec(
            "change endpoints",
            &format!(
                "UPDATE {} SET v = CAST(v AS SIGNED) + 1 WHERE k = 'endpoints_version'",
                self.t.meta
            ),
            (),
        )
        .map(|_| ())
    }

    fn set_sender(&mut self, _identity: &str, _host: &str, _now: f64) -> Result<()> {
        // The lease row names the sender.
        Ok(())
    }

    fn sender(&mut self) -> Result<(Option<String>, Option<String>)> {
        Ok(self
            .row(
                "read the sender",
                &format!(
                    "SELECT holder, host FROM {} WHERE name = 'sender' AND expires_at > UNIX_TIMESTAMP(NOW(6))",
                    self.t.lease
                ),
                (),
                |r| Ok((Some(col::<String>(&r, 0)?), Some(col::<String>(&r, 1)?))),
            )?
            .unwrap_or((None, None)))
    }

    // ---- endpoints ----

    fn load_endpoints(&mut self) -> Result<Vec<EndpointRow>> {
        self.rows(
            "read endpoints",
            &format!(
                "SELECT {ENDPOINT_COLUMNS} FROM {} ORDER BY id",
                self.t.endpoints
            ),
            (),
            Mysql::endpoint_row,
        )
    }

    fn stored_endpoint(&mut self, name: &str) -> Result<Option<StoredEndpoint>> {
        self.row(
            "read endpoint",
            &format!(
                "SELECT id, url, secret, prev_secret, prev_secret_until, proxy, headers, retry_delays, timeout, source
                 FROM {} WHERE name = ? FOR UPDATE",
                self.t.endpoints
            ),
            (name,),
            |r| {
                Ok(StoredEndpoint {
                    id: col(&r, 0)?,
                    url: col(&r, 1)?,
                    secret: col(&r, 2)?,
                    prev_secret: col(&r, 3)?,
                    prev_secret_until: col(&r, 4)?,
                    proxy: col(&r, 5)?,
                    headers: col(&r, 6)?,
                    retry_delays: col(&r, 7)?,
                    timeout: col(&r, 8)?,
                    source: col(&r, 9)?,
                })
            },
        )
    }

    fn save_endpoint(&mut self, name: &str, w: &EndpointWrite, now: f64) -> Result<()> {
        let p: Vec<Value> = vec![
            name.into(),
            w.url.clone().into(),
            w.secret.clone().into(),
            w.prev_secret.clone().into(),
            w.prev_secret_until.into(),
            w.topics.clone().into(),
            (w.enabled as i64).into(),
            w.rate_limit.into(),
            w.timeout.into(),
            w.proxy.clone().into(),
            w.format.clone().into(),
            w.retry_delays.clone().into(),
            w.source.clone().into(),
            now.into(),
            now.into(),
            w.allow_networks.clone().into(),
            w.signature.clone().into(),
            w.hash_algorithm.clone().into(),
            w.success_codes.clone().into(),
            w.user_agent.clone().into(),
            w.headers.clone().into(),
            w.wc_webhook_id.into(),
        ];
        self.exec(
            "save endpoint",
            &format!(
                "INSERT INTO {} (name, url, secret, prev_secret, prev_secret_until, topics, enabled, rate_limit, timeout, proxy,
                                 format, retry_delays, source, created_at, updated_at, allow_networks,
                                 signature, hash_algorithm, success_codes, user_agent, headers, wc_webhook_id)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                 ON DUPLICATE KEY UPDATE url = VALUES(url), secret = VALUES(secret), prev_secret = VALUES(prev_secret),
                   prev_secret_until = VALUES(prev_secret_until), topics = VALUES(topics), enabled = VALUES(enabled),
                   rate_limit = VALUES(rate_limit), timeout = VALUES(timeout), proxy = VALUES(proxy), format = VALUES(format),
                   retry_delays = VALUES(retry_delays), source = VALUES(source), updated_at = VALUES(updated_at),
                   allow_networks = VALUES(allow_networks), signature = VALUES(signature),
                   hash_algorithm = VALUES(hash_algorithm), success_codes = VALUES(success_codes),
                   user_agent = VALUES(user_agent), headers = VALUES(headers), wc_webhook_id = VALUES(wc_webhook_id),
                   disabled_at = NULL, disabled_reason = NULL, consecutive_failures = 0, breaker_until = 0,
                   refused_reason = NULL, refused_until = 0",
                self.t.endpoints
            ),
            p,
        )
        .map(|_| ())
    }

    fn save_default_endpoint(&mut self, name: &str, d: &DefaultWrite, now: f64) -> Result<()> {
        let changed = "NOT (url <=> VALUES(url))";
        self.exec(
            "record the default endpoint",
            &format!(
                "INSERT INTO {} (name, url, secret, prev_secret, prev_secret_until, topics, enabled, rate_limit, timeout, proxy,
                                 format, retry_delays, source, created_at, updated_at, allow_networks, signature,
                                 hash_algorithm, success_codes, user_agent, headers)
                 VALUES (?, ?, ?, '', 0, '', 1, 0, ?, '', 'standard', ?, ?, ?, ?, '', 'standard', 'sha256', '', '', '')
                 ON DUPLICATE KEY UPDATE
                   disabled_at = IF({changed}, NULL, disabled_at),
                   disabled_reason = IF({changed}, NULL, disabled_reason),
                   consecutive_failures = IF({changed}, 0, consecutive_failures),
                   breaker_until = IF({changed}, 0, breaker_until),
                   refused_reason = IF({changed}, NULL, refused_reason),
                   refused_until = IF({changed}, 0, refused_until),
                   url = VALUES(url), secret = VALUES(secret), retry_delays = VALUES(retry_delays),
                   timeout = VALUES(timeout), source = VALUES(source), updated_at = VALUES(updated_at)",
                self.t.endpoints
            ),
            (
                name,
                d.url.clone(),
                d.secret.clone(),
                d.timeout,
                d.retry_delays.clone(),
                d.source.clone(),
                now,
                now,
            ),
        )
        .map(|_| ())
    }

    fn retire_endpoint(&mut self, id: i64) -> Result<()> {
        self.exec(
            "delete endpoint",
            &format!(
                "UPDATE {} SET enabled = 0, url = '', secret = '', prev_secret = '', headers = '',
                   name = CONCAT(name, '#deleted-', id) WHERE id = ?",
                self.t.endpoints
            ),
            (id,),
        )
        .map(|_| ())
    }

    fn note_endpoint_error(&mut self, id: i64, error: &str, now: f64) -> Result<()> {
        self.exec(
            "record endpoint error",
            &format!(
                "UPDATE {} SET last_error = ?, last_error_at = ? WHERE id = ?",
                self.t.endpoints
            ),
            (error, now, id),
        )
        .map(|_| ())
    }

    fn endpoint_health(&mut self) -> Result<Vec<(i64, i64, f64, f64)>> {
        self.rows(
            "read endpoint health",
            &format!(
                "SELECT id, consecutive_failures, breaker_until, refused_until FROM {}",
                self.t.endpoints
            ),
            (),
            |r| Ok((col(&r, 0)?, col(&r, 1)?, col(&r, 2)?, col(&r, 3)?)),
        )
    }

    fn update_endpoints(&mut self, updates: &[EndpointUpdate]) -> Result<()> {
        let e = &self.t.endpoints;
        let stmts: Vec<String> = updates
            .iter()
            .map(|u| match u {
                EndpointUpdate::Success { id, now } => format!(
                    "UPDATE {e} SET last_success_at = {}, consecutive_failures = 0, breaker_until = 0,
                       refused_reason = NULL, refused_until = 0 WHERE id = {id}",
                    self.lit(*now)
                ),
                EndpointUpdate::Failure { id, error, now } => format!(
                    "UPDATE {e} SET last_error = {}, last_error_at = {} WHERE id = {id}",
                    self.lit(error.as_str()),
                    self.lit(*now)
                ),
                EndpointUpdate::Unhealthy { id, now, pause } => format!(
                    "UPDATE {e} SET breaker_until = IF(consecutive_failures + 1 >= {BREAKER_THRESHOLD}, {} + {}, breaker_until),
                       consecutive_failures = consecutive_failures + 1 WHERE id = {id}",
                    self.lit(*now),
                    self.lit(*pause)
                ),
                EndpointUpdate::Disable { id, reason, now } => format!(
                    "UPDATE {e} SET disabled_at = {}, disabled_reason = {} WHERE id = {id}",
                    self.lit(*now),
                    self.lit(reason.as_str())
                ),
                EndpointUpdate::Refused {
                    id,
                    reason,
                    until,
                    error,
                    now,
                } => format!(
                    "UPDATE {e} SET refused_reason = {}, refused_until = {}, last_error = {}, last_error_at = {} WHERE id = {id}",
                    self.lit(reason.as_str()),
                    self.lit(*until),
                    self.lit(error.as_str()),
                    self.lit(*now)
                ),
            })
            .collect();
        self.batch("record attempt", &stmts).map(|_| ())
    }

    // ---- events ----

    fn next_seq(&mut self, key: &str) -> Result<i64> {
        // The row stays locked until commit: dispatches of one key, on any host, take turns.
        let t = self.t.key_seq.clone();
        self.raw(|c| {
            c.exec_drop(
                format!(
                    "INSERT INTO {t} (`key`, seq) VALUES (?, LAST_INSERT_ID(1)) ON DUPLICATE KEY UPDATE seq = LAST_INSERT_ID(seq + 1)"
                ),
                (key,),
            )?;
            Ok(c.last_insert_id() as i64)
        })
        .map_err(|e| self.map("next sequence", e))
    }

    fn store_event(&mut self, e: &EventInsert<'_>, max_body: usize) -> Result<Stored> {
        // The body fits whatever the sequence number (at most 19 digits): one round trip for the
        // whole transaction. Near the limit, statement by statement (the length is exact then).
        if e.len_with(19) > max_body {
            if e.len_with(1) > max_body {
                return Ok(Stored::TooLarge(e.len_with(1)));
            }
            return super::engine::store_in_steps(self, e, max_body);
        }
        let (t, k) = (&self.t.events, &self.t.key_seq);
        let mut sql = String::with_capacity(e.len_with(19) * 2 + 1024);
        // The `moved_to` row is read with a shared lock: woosync_migrate's freeze (an update of it)
        // waits for dispatches in progress, and later ones see where the outbox went.
        sql.push_str(&format!(
            "START TRANSACTION;\nSET @woosync_moved = '';\nSELECT v INTO @woosync_moved FROM {} WHERE k = 'moved_to' LOCK IN SHARE MODE;\n",
            self.t.meta
        ));
        let (seq, body, offset) = match (e.key, e.tail) {
            (Some(key), _) => {
                sql.push_str(&format!(
                    "INSERT INTO {k} (`key`, seq) SELECT {}, LAST_INSERT_ID(1) FROM DUAL WHERE @woosync_moved = '' ON DUPLICATE KEY UPDATE seq = LAST_INSERT_ID(seq + 1);\nSET @woosync_seq = LAST_INSERT_ID();\n",
                    self.lit(key)
                ));
                match e.tail {
                    Some(tail) => (
                        "@woosync_seq".to_string(),
                        format!(
                            "CONCAT({}, @woosync_seq, {})",
                            bytes_lit(e.head),
                            bytes_lit(tail)
                        ),
                        format!(
                            "{} + LENGTH(@woosync_seq)",
                            e.head.len() + e.tail_data_offset
                        ),
                    ),
                    None => (
                        "@woosync_seq".to_string(),
                        bytes_lit(e.head),
                        "0".to_string(),
                    ),
                }
            }
            (None, _) => {
                let (body, offset) = e.body(0);
                ("0".to_string(), bytes_lit(&body), offset.to_string())
            }
        };
        sql.push_str(&format!(
            "INSERT INTO {t} (event_id, topic, `key`, seq, created_at, `coalesce`, route, data_offset, body, raw, headers)
             SELECT {}, {}, {}, {seq}, {}, {}, {}, {offset}, {body}, {}, {} FROM DUAL WHERE @woosync_moved = '';\nCOMMIT;\nSELECT @woosync_moved",
            self.lit(e.event_id),
            self.lit(e.topic),
            self.lit(e.key),
            self.lit(e.created_at),
            e.coalesce as i64,
            self.lit(e.route.clone()),
            e.raw as i64,
            self.lit(e.headers),
        ));
        // A connection the janitor or the server closed is opened again here, before the
        // transaction (inside it, a lost connection is an error).
        self.ensure_connected()?;
        self.in_tx = true;
        if let Ok(mut g) = self.slot.lock() {
            g.busy = true;
        }
        let r = self
            .raw(|c| {
                let mut moved: Option<String> = None;
                let mut result = c.query_iter(sql)?;
                while let Some(set) = result.iter() {
                    for row in set {
                        let row = row?;
                        moved = row
                            .get_opt::<Option<String>, usize>(0)
                            .and_then(|v| v.ok())
                            .flatten();
                    }
                }
                Ok(moved)
            })
            .map_err(|e| self.map("store the event", e));
        if r.is_err() {
            // Whatever ran of it (a lock wait timeout leaves the transaction open).
            self.rollback();
        }
        self.in_tx = false;
        if let Ok(mut g) = self.slot.lock() {
            g.busy = false;
        }
        match r? {
            Some(to) if !to.is_empty() => Ok(Stored::Moved(to)),
            _ => Ok(Stored::Yes(e.event_id.to_string())),
        }
    }

    fn insert_event(
        &mut self,
        e: &EventInsert<'_>,
        event_id: &str,
        _rowid: Option<i64>,
        seq: i64,
        body: &[u8],
        data_offset: usize,
    ) -> Result<i64> {
        let p: Vec<Value> = vec![
            event_id.into(),
            e.topic.into(),
            e.key.into(),
            seq.into(),
            e.created_at.into(),
            (e.coalesce as i64).into(),
            e.route.clone().into(),
            (data_offset as i64).into(),
            body.into(),
            (e.raw as i64).into(),
            e.headers.into(),
        ];
        self.insert_event_row("insert event", p)
    }

    fn meta(&mut self, k: &str) -> Result<String> {
        Ok(self
            .row(
                "read meta",
                &format!("SELECT v FROM {} WHERE k = ?", self.t.meta),
                (k,),
                |r| col::<Option<String>>(&r, 0),
            )?
            .flatten()
            .unwrap_or_default())
    }

    fn set_meta(&mut self, k: &str, v: &str) -> Result<()> {
        self.exec(
            "write meta",
            &format!(
                "INSERT INTO {} (k, v) VALUES (?, ?) ON DUPLICATE KEY UPDATE v = VALUES(v)",
                self.t.meta
            ),
            (k, v),
        )
        .map(|_| ())
    }

    fn key_counters(&mut self, after: &str, limit: usize) -> Result<Vec<(String, i64)>> {
        self.rows(
            "read counters",
            &format!(
                "SELECT `key`, seq FROM {} WHERE `key` > ? ORDER BY `key` LIMIT {}",
                self.t.key_seq,
                limit.max(1)
            ),
            (after,),
            |r| Ok((col(&r, 0)?, col(&r, 1)?)),
        )
    }

    fn raise_counters(&mut self, rows: &[(String, i64)]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let values: Vec<String> = rows
            .iter()
            .map(|(k, s)| format!("({}, {s})", self.lit(k.as_str())))
            .collect();
        self.batch(
            "raise counters",
            &[format!(
                "INSERT INTO {} (`key`, seq) VALUES {} ON DUPLICATE KEY UPDATE seq = GREATEST(seq, VALUES(seq))",
                self.t.key_seq,
                values.join(",")
            )],
        )
        .map(|_| ())
    }

    fn events_to_move(&mut self, limit: usize) -> Result<Vec<super::engine::MovingEvent>> {
        let (ev, d, p) = (&self.t.events, &self.t.deliveries, &self.t.endpoints);
        let mut events = self.rows(
            "read events to move",
            &format!(
                "SELECT e.id, e.event_id, e.topic, e.`key`, e.seq, e.created_at, e.`coalesce`, e.route, e.data_offset,
                        e.body, e.raw, e.headers, e.routed
                   FROM {ev} e
                  WHERE (e.routed = 0 OR EXISTS (SELECT 1 FROM {d} x WHERE x.event_rowid = e.id AND x.state IN (0, 1, 4)))
                    AND NOT EXISTS (SELECT 1 FROM {d} y WHERE y.event_rowid = e.id AND y.state = 2)
                  ORDER BY e.id LIMIT {}",
                limit.max(1)
            ),
            (),
            |r| {
                Ok(super::engine::MovingEvent {
                    rowid: col(&r, 0)?,
                    event_id: col(&r, 1)?,
                    topic: col(&r, 2)?,
                    key: col(&r, 3)?,
                    seq: col(&r, 4)?,
                    created_at: col(&r, 5)?,
                    coalesce: col::<i64>(&r, 6)? != 0,
                    route: col(&r, 7)?,
                    data_offset: col::<i64>(&r, 8)? as usize,
                    body: col(&r, 9)?,
                    raw: col::<i64>(&r, 10)? != 0,
                    headers: col(&r, 11)?,
                    routed: col::<i64>(&r, 12)? != 0,
                    deliveries: Vec::new(),
                })
            },
        )?;
        if events.is_empty() {
            return Ok(events);
        }
        let ids = ids_list(&events.iter().map(|e| e.rowid).collect::<Vec<_>>());
        let ds: Vec<(i64, String, i64)> = self.rows(
            "read deliveries to move",
            &format!(
                "SELECT d.event_rowid, p.name, d.state FROM {d} d JOIN {p} p ON p.id = d.endpoint_id
                  WHERE d.event_rowid IN ({ids}) AND d.state IN (0, 1, 4) ORDER BY d.id"
            ),
            (),
            |r| Ok((col(&r, 0)?, col(&r, 1)?, col(&r, 2)?)),
        )?;
        for (rowid, name, st) in ds {
            if let Some(e) = events.iter_mut().find(|e| e.rowid == rowid) {
                e.deliveries.push((name, st));
            }
        }
        Ok(events)
    }

    fn events_left_to_move(&mut self) -> Result<i64> {
        Ok(self
            .row(
                "count events to move",
                &format!(
                    "SELECT (SELECT count(*) FROM {} WHERE routed = 0) + (SELECT count(DISTINCT event_rowid) FROM {} WHERE state IN (0, 1, 2, 4))",
                    self.t.events, self.t.deliveries
                ),
                (),
                |r| col(&r, 0),
            )?
            .unwrap_or(0))
    }

    fn import_event(&mut self, e: &super::engine::MovingEvent) -> Result<i64> {
        let p: Vec<Value> = vec![
            e.event_id.as_str().into(),
            e.topic.as_str().into(),
            e.key.clone().into(),
            e.seq.into(),
            e.created_at.into(),
            (e.coalesce as i64).into(),
            e.route.clone().into(),
            (e.data_offset as i64).into(),
            e.body.clone().into(),
            (e.raw as i64).into(),
            e.headers.clone().into(),
        ];
        self.insert_event_row("import event", p)
    }

    fn event_exists(&mut self, event_id: &str) -> Result<bool> {
        Ok(self
            .row(
                "find event",
                &format!("SELECT 1 FROM {} WHERE event_id = ?", self.t.events),
                (event_id,),
                |_| Ok(()),
            )?
            .is_some())
    }

    fn has_new_events(&mut self) -> Result<bool> {
        Ok(self
            .row(
                "check new events",
                &format!("SELECT 1 FROM {} WHERE routed = 0 LIMIT 1", self.t.events),
                (),
                |_| Ok(()),
            )?
            .is_some())
    }

    fn events_to_route(&mut self, limit: usize) -> Result<Vec<RouteRow>> {
        self.rows(
            "read new events",
            &format!(
                "SELECT id, topic, `key`, seq, `coalesce`, route FROM {} WHERE routed = 0 ORDER BY id LIMIT {}",
                self.t.events,
                limit.max(1)
            ),
            (),
            |r| {
                Ok(RouteRow {
                    rowid: col(&r, 0)?,
                    topic: col(&r, 1)?,
                    key: col(&r, 2)?,
                    seq: col(&r, 3)?,
                    coalesce: col::<i64>(&r, 4)? != 0,
                    route: col(&r, 5)?,
                })
            },
        )
    }

    fn mark_routed(&mut self, rows: &[i64], unrouted: &[i64]) -> Result<()> {
        let mut stmts = Vec::new();
        if !rows.is_empty() {
            stmts.push(format!(
                "UPDATE {} SET routed = 1 WHERE id IN ({})",
                self.t.events,
                ids_list(rows)
            ));
        }
        if !unrouted.is_empty() {
            stmts.push(format!(
                "UPDATE {} SET unrouted = 1 WHERE id IN ({})",
                self.t.events,
                ids_list(unrouted)
            ));
        }
        self.batch("mark routed", &stmts).map(|_| ())
    }

    fn find_event(
        &mut self,
        event_id: &str,
    ) -> Result<Option<(i64, String, Option<String>, i64, bool)>> {
        self.row(
            "find event",
            &format!(
                "SELECT id, topic, `key`, seq, unrouted FROM {} WHERE event_id = ?",
                self.t.events
            ),
            (event_id,),
            |r| {
                Ok((
                    col(&r, 0)?,
                    col(&r, 1)?,
                    col(&r, 2)?,
                    col(&r, 3)?,
                    col::<i64>(&r, 4)? != 0,
                ))
            },
        )
    }

    fn set_routed_again(&mut self, rowid: i64) -> Result<()> {
        self.exec(
            "route event",
            &format!("UPDATE {} SET unrouted = 0 WHERE id = ?", self.t.events),
            (rowid,),
        )
        .map(|_| ())
    }

    fn event_detail(&mut self, event_id: &str) -> Result<Option<EventDetail>> {
        let head = self.row(
            "read event",
            &format!(
                "SELECT id, event_id, topic, `key`, seq, created_at, unrouted, body, data_offset, raw FROM {} WHERE event_id = ?",
                self.t.events
            ),
            (event_id,),
            |r| {
                Ok((
                    col::<i64>(&r, 0)?,
                    EventDetail {
                        event_id: col(&r, 1)?,
                        topic: col(&r, 2)?,
                        key: col(&r, 3)?,
                        seq: col(&r, 4)?,
                        created_at: col(&r, 5)?,
                        unrouted: col::<i64>(&r, 6)? != 0,
                        body: col(&r, 7)?,
                        data_offset: col::<i64>(&r, 8)? as usize,
                        raw: col::<i64>(&r, 9)? != 0,
                        deliveries: vec![],
                        attempts: vec![],
                    },
                ))
            },
        )?;
        let Some((rowid, mut detail)) = head else {
            return Ok(None);
        };
        let (d, p, a) = (&self.t.deliveries, &self.t.endpoints, &self.t.attempts);
        detail.deliveries = self.rows(
            "read event",
            &format!(
                "SELECT p.name, d.state, (SELECT count(*) FROM {a} a WHERE a.delivery_id = d.id), d.next_attempt_at,
                        d.last_status, d.last_error, d.updated_at
                 FROM {d} d JOIN {p} p ON p.id = d.endpoint_id WHERE d.event_rowid = ? ORDER BY d.id"
            ),
            (rowid,),
            |r| {
                Ok(DeliveryRow {
                    endpoint: col(&r, 0)?,
                    state: col(&r, 1)?,
                    attempts: col(&r, 2)?,
                    next_attempt_at: col(&r, 3)?,
                    last_status: col(&r, 4)?,
                    last_error: col(&r, 5)?,
                    updated_at: col(&r, 6)?,
                })
            },
        )?;
        detail.attempts = self.rows(
            "read event",
            &format!(
                "SELECT p.name, a.started_at, a.duration_ms, a.http_status, a.error_class, a.error, a.response, a.delivery_uuid
                 FROM {a} a JOIN {d} d ON d.id = a.delivery_id JOIN {p} p ON p.id = d.endpoint_id
                 WHERE d.event_rowid = ? ORDER BY a.id"
            ),
            (rowid,),
            |r| {
                Ok(AttemptRow {
                    endpoint: col(&r, 0)?,
                    started_at: col(&r, 1)?,
                    duration_ms: col(&r, 2)?,
                    http_status: col(&r, 3)?,
                    error_class: col(&r, 4)?,
                    error: col(&r, 5)?,
                    response: col(&r, 6)?,
                    delivery_uuid: col(&r, 7)?,
                })
            },
        )?;
        Ok(Some(detail))
    }

    fn list_events(&mut self, f: &EventFilter) -> Result<Vec<EventSummary>> {
        let (e, d, p, a) = (
            &self.t.events,
            &self.t.deliveries,
            &self.t.endpoints,
            &self.t.attempts,
        );
        let mut sql = format!(
            "SELECT e.event_id, e.topic, e.`key`, e.seq, e.created_at,
                    CASE WHEN d.id IS NOT NULL THEN d.state WHEN e.unrouted = 1 THEN 6 ELSE 1 END, p.name,
                    (SELECT count(*) FROM {a} a WHERE a.delivery_id = d.id),
                    d.next_attempt_at, d.last_status, d.last_error,
                    (SELECT a.duration_ms FROM {a} a WHERE a.delivery_id = d.id ORDER BY a.id DESC LIMIT 1)
             FROM {e} e LEFT JOIN {d} d ON d.event_rowid = e.id LEFT JOIN {p} p ON p.id = d.endpoint_id
             WHERE 1"
        );
        let mut args: Vec<Value> = Vec::new();
        super::sqlite::push_filter(&mut sql, &mut args, f, "e.`key`", |_| "?".to_string());
        sql.push_str(&format!(
            " ORDER BY e.id DESC, d.id LIMIT {} OFFSET {}",
            f.limit.clamp(1, 10_000),
            f.offset.max(0)
        ));
        self.rows("list events", &sql, Params::Positional(args), |r| {
            Ok(EventSummary {
                event_id: col(&r, 0)?,
                topic: col(&r, 1)?,
                key: col(&r, 2)?,
                seq: col(&r, 3)?,
                created_at: col(&r, 4)?,
                state: col(&r, 5)?,
                endpoint: col(&r, 6)?,
                attempts: col(&r, 7)?,
                next_attempt_at: col(&r, 8)?,
                last_status: col(&r, 9)?,
                last_error: col(&r, 10)?,
                last_duration_ms: col(&r, 11)?,
            })
        })
    }

    // ---- deliveries ----

    fn open_deliveries_of_key(&mut self, endpoint_id: i64, key: &str) -> Result<Vec<OpenDelivery>> {
        self.rows(
            "read open deliveries",
            &format!(
                "SELECT d.id, d.state, d.seq, e.topic FROM {} d JOIN {} e ON e.id = d.event_rowid
                 WHERE d.endpoint_id = ? AND d.`key` = ? AND d.state < 3 ORDER BY d.seq, d.id",
                self.t.deliveries, self.t.events
            ),
            (endpoint_id, key),
            |r| {
                Ok(OpenDelivery {
                    id: col(&r, 0)?,
                    state: col(&r, 1)?,
                    seq: col(&r, 2)?,
                    topic: col(&r, 3)?,
                })
            },
        )
    }

    // `by_key (endpoint_id, key, state, seq)`: index lookups, not every open delivery of the key.
    fn key_busy(&mut self, endpoint_id: i64, key: &str) -> Result<bool> {
        Ok(self
            .row(
                "read open deliveries",
                &format!(
                    "SELECT 1 FROM {} WHERE endpoint_id = ? AND `key` = ? AND state IN (1, 2) LIMIT 1",
                    self.t.deliveries
                ),
                (endpoint_id, key),
                |r| col::<i64>(&r, 0),
            )?
            .is_some())
    }

    fn first_queued(&mut self, endpoint_id: i64, key: &str) -> Result<Option<i64>> {
        self.row(
            "read open deliveries",
            &format!(
                "SELECT id FROM {} WHERE endpoint_id = ? AND `key` = ? AND state = 0 ORDER BY seq, id LIMIT 1",
                self.t.deliveries
            ),
            (endpoint_id, key),
            |r| col(&r, 0),
        )
    }

    fn newest_open_seq(&mut self, endpoint_id: i64, key: &str) -> Result<Option<i64>> {
        let one = |state: i64| {
            format!(
                "COALESCE((SELECT MAX(seq) FROM {} WHERE endpoint_id = ? AND `key` = ? AND state = {state}), -1)",
                self.t.deliveries
            )
        };
        Ok(self
            .row(
                "read open deliveries",
                &format!(
                    "SELECT NULLIF(GREATEST({}, {}, {}), -1)",
                    one(0),
                    one(1),
                    one(2)
                ),
                (endpoint_id, key, endpoint_id, key, endpoint_id, key),
                |r| col::<Option<i64>>(&r, 0),
            )?
            .flatten())
    }

    fn insert_delivery(
        &mut self,
        event_rowid: i64,
        endpoint_id: i64,
        key: Option<&str>,
        seq: i64,
        st: i64,
        now: f64,
    ) -> Result<()> {
        self.exec(
            "insert delivery",
            &format!(
                "INSERT INTO {} (event_rowid, endpoint_id, `key`, seq, state, next_attempt_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                self.t.deliveries
            ),
            (event_rowid, endpoint_id, key, seq, st, now, now),
        )
        .map(|_| ())
    }

    fn hasten_endpoint(&mut self, endpoint_id: i64, now: f64) -> Result<usize> {
        Ok(self.exec(
            "hasten deliveries",
            &format!(
                "UPDATE {} SET next_attempt_at = ? WHERE state = 1 AND endpoint_id = ? AND next_attempt_at > ?",
                self.t.deliveries
            ),
            (now, endpoint_id, now),
        )? as usize)
    }

    fn set_delivery_state(&mut self, ids: &[i64], from: i64, to: i64, now: f64) -> Result<usize> {
        if ids.is_empty() {
            return Ok(0);
        }
        Ok(self.exec(
            "change delivery",
            &format!(
                "UPDATE {} SET state = ?, updated_at = ? WHERE state = ? AND id IN ({})",
                self.t.deliveries,
                ids_list(ids)
            ),
            (to, now, from),
        )? as usize)
    }

    fn claim(
        &mut self,
        endpoint_id: i64,
        limit: usize,
        now: f64,
        me: &str,
        lease_until: f64,
    ) -> Result<Vec<Claimed>> {
        let rows = self.rows(
            "claim",
            &format!(
                "SELECT d.id, d.`key`, d.attempts, e.event_id, e.topic, e.body, e.data_offset, e.raw, e.headers
                 FROM {} d JOIN {} e ON e.id = d.event_rowid
                 WHERE d.state = 1 AND d.endpoint_id = ? AND d.next_attempt_at <= ?
                 ORDER BY d.next_attempt_at LIMIT {} FOR UPDATE SKIP LOCKED",
                self.t.deliveries,
                self.t.events,
                limit.max(1)
            ),
            (endpoint_id, now),
            |r| {
                Ok(Claimed {
                    delivery_id: col(&r, 0)?,
                    endpoint_id,
                    key: col(&r, 1)?,
                    attempt: col::<i64>(&r, 2)? + 1,
                    event_id: col(&r, 3)?,
                    topic: col(&r, 4)?,
                    body: col(&r, 5)?,
                    data_offset: col::<i64>(&r, 6)? as usize,
                    raw: col::<i64>(&r, 7)? != 0,
                    headers: col(&r, 8)?,
                })
            },
        )?;
        if !rows.is_empty() {
            let ids: Vec<i64> = rows.iter().map(|c| c.delivery_id).collect();
            self.exec(
                "claim",
                &format!(
                    "UPDATE {} SET state = 2, attempts = attempts + 1, claimed_by = ?, lease_until = ?, updated_at = ? WHERE id IN ({})",
                    self.t.deliveries,
                    ids_list(&ids)
                ),
                (me, lease_until, now),
            )?;
        }
        Ok(rows)
    }

    fn insert_attempts(&mut self, done: &[Finished]) -> Result<()> {
        if done.is_empty() {
            return Ok(());
        }
        let values: Vec<String> = done
            .iter()
            .map(|f| {
                let response = &f.response[..f.response.len().min(RESPONSE_SNIPPET)];
                format!(
                    "({}, {}, {}, {}, {}, {}, {}, {})",
                    f.delivery_id,
                    self.lit(f.started_at),
                    self.lit(f.duration_ms),
                    self.lit(f.http_status.map(|s| s as i64)),
                    self.lit(f.error_class.clone()),
                    self.lit(f.error.clone()),
                    self.lit(response.to_vec()),
                    self.lit(f.delivery_uuid.as_str())
                )
            })
            .collect();
        self.batch(
            "record attempt",
            &[format!(
                "INSERT INTO {} (delivery_id, started_at, duration_ms, http_status, error_class, error, response, delivery_uuid) VALUES {}",
                self.t.attempts,
                values.join(",")
            )],
        )
        .map(|_| ())
    }

    fn finish_deliveries(&mut self, rows: &[FinishRow], me: &str, now: f64) -> Result<Vec<bool>> {
        let stmts: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "UPDATE {} SET state = {}, claimed_by = NULL, lease_until = NULL, last_status = {}, last_error = {},
                       next_attempt_at = {}, updated_at = {} WHERE id = {} AND state = 2 AND claimed_by = {}",
                    self.t.deliveries,
                    r.state,
                    self.lit(r.last_status.map(|s| s as i64)),
                    self.lit(r.last_error.clone()),
                    self.lit(r.next_attempt_at),
                    self.lit(now),
                    r.id,
                    self.lit(me)
                )
            })
            .collect();
        Ok(self
            .batch("record attempt", &stmts)?
            .into_iter()
            .map(|n| n > 0)
            .collect())
    }

    fn refuse_delivery(&mut self, id: i64, error: &str, me: &str, now: f64) -> Result<bool> {
        Ok(self.exec(
            "record attempt",
            &format!(
                "UPDATE {} SET state = 1, attempts = GREATEST(attempts - 1, 0), claimed_by = NULL, lease_until = NULL,
                   last_status = NULL, last_error = ?, next_attempt_at = ?, updated_at = ? WHERE id = ? AND state = 2 AND claimed_by = ?",
                self.t.deliveries
            ),
            (error, now, now, id, me),
        )? > 0)
    }

    fn requeue(&mut self, what: Requeue<'_>, now: f64) -> Result<Vec<(i64, Option<String>, i64)>> {
        let (d, p) = (&self.t.deliveries, &self.t.endpoints);
        let (cond, args): (String, Vec<Value>) = match what {
            Requeue::Event(rowid) => (
                "event_rowid = ? AND state IN (3, 4)".into(),
                vec![rowid.into()],
            ),
            Requeue::Dead(Some(name)) => (
                format!("state = 4 AND endpoint_id = (SELECT id FROM {p} WHERE name = ?)"),
                vec![name.into()],
            ),
            Requeue::Dead(None) => ("state = 4".into(), vec![]),
        };
        let affected: Vec<(i64, i64, Option<String>, i64)> = self.rows(
            "requeue",
            &format!("SELECT id, endpoint_id, `key`, state FROM {d} WHERE {cond} FOR UPDATE"),
            Params::Positional(args),
            |r| Ok((col(&r, 0)?, col(&r, 1)?, col(&r, 2)?, col(&r, 3)?)),
        )?;
        for chunk in affected.chunks(500) {
            let ids: Vec<i64> = chunk.iter().map(|a| a.0).collect();
            self.exec(
                "requeue",
                &format!(
                    "UPDATE {d} SET state = IF(`key` IS NULL, 1, 0), attempts = 0, next_attempt_at = ?,
                       claimed_by = NULL, lease_until = NULL, updated_at = ? WHERE id IN ({})",
                    ids_list(&ids)
                ),
                (now, now),
            )?;
        }
        Ok(affected.into_iter().map(|(_, e, k, s)| (e, k, s)).collect())
    }

    fn kill_open_deliveries(&mut self, endpoint_id: i64, now: f64) -> Result<Vec<(i64, i64)>> {
        let d = self.t.deliveries.clone();
        let counts = self.rows(
            "close deliveries",
            &format!("SELECT state, count(*) FROM {d} WHERE endpoint_id = ? AND state < 3 GROUP BY state FOR UPDATE"),
            (endpoint_id,),
            |r| Ok((col(&r, 0)?, col(&r, 1)?)),
        )?;
        self.exec(
            "close deliveries",
            &format!(
                "UPDATE {d} SET state = 4, last_error = 'endpoint deleted', claimed_by = NULL, lease_until = NULL, updated_at = ?
                 WHERE endpoint_id = ? AND state < 3"
            ),
            (now, endpoint_id),
        )?;
        Ok(counts)
    }

    fn lease_holders(&mut self) -> Result<Vec<(String, f64)>> {
        self.rows(
            "read leases",
            &format!(
                "SELECT claimed_by, min(lease_until) FROM {} WHERE state = 2 GROUP BY claimed_by",
                self.t.deliveries
            ),
            (),
            |r| {
                Ok((
                    col::<Option<String>>(&r, 0)?.unwrap_or_default(),
                    col::<Option<f64>>(&r, 1)?.unwrap_or(0.0),
                ))
            },
        )
    }

    fn release_leases(
        &mut self,
        holder: &str,
        expired_at: Option<f64>,
        now: f64,
        why: &str,
    ) -> Result<Vec<(i64, i64)>> {
        let d = self.t.deliveries.clone();
        let until = expired_at.unwrap_or(f64::MAX);
        let rows: Vec<(i64, i64, f64)> = self.rows(
            "take over leases",
            &format!("SELECT id, endpoint_id, COALESCE(lease_until, ?) FROM {d} WHERE state = 2 AND claimed_by = ? AND lease_until <= ? FOR UPDATE SKIP LOCKED"),
            (now, holder, until),
            |r| Ok((col(&r, 0)?, col(&r, 1)?, col(&r, 2)?)),
        )?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
        let text = format!("{why} ({holder}); outcome unknown, attempting again");
        let values: Vec<String> = rows
            .iter()
            .map(|(id, _, at)| {
                format!(
                    "({id}, {}, 0, 'abandoned', {})",
                    self.lit(*at),
                    self.lit(text.as_str())
                )
            })
            .collect();
        self.batch(
            "take over leases",
            &[
                format!(
                    "INSERT INTO {} (delivery_id, started_at, duration_ms, error_class, error) VALUES {}",
                    self.t.attempts,
                    values.join(",")
                ),
                format!(
                    "UPDATE {d} SET state = 1, claimed_by = NULL, lease_until = NULL, next_attempt_at = {}, updated_at = {}
                     WHERE state = 2 AND id IN ({})",
                    self.lit(now),
                    self.lit(now),
                    ids_list(&ids)
                ),
            ],
        )?;
        let mut per: std::collections::BTreeMap<i64, i64> = Default::default();
        for (_, ep, _) in rows {
            *per.entry(ep).or_default() += 1;
        }
        Ok(per.into_iter().collect())
    }

    fn next_due(&mut self, endpoint_ids: &[i64]) -> Result<Option<f64>> {
        if endpoint_ids.is_empty() {
            return Ok(None);
        }
        Ok(self
            .row(
                "next due",
                &format!(
                    "SELECT MIN(next_attempt_at) FROM {} WHERE state = 1 AND endpoint_id IN ({})",
                    self.t.deliveries,
                    ids_list(endpoint_ids)
                ),
                (),
                |r| col::<Option<f64>>(&r, 0),
            )?
            .flatten())
    }

    // ---- counts ----

    fn add_stats(&mut self, deltas: &StatDeltas) -> Result<()> {
        let values: Vec<String> = deltas
            .iter()
            .filter(|(_, n)| **n != 0)
            .map(|((e, s), n)| format!("({e}, {s}, {n})"))
            .collect();
        if values.is_empty() {
            return Ok(());
        }
        self.batch(
            "count states",
            &[format!(
                "INSERT INTO {} (endpoint_id, state, n) VALUES {} ON DUPLICATE KEY UPDATE n = n + VALUES(n)",
                self.t.stats,
                values.join(",")
            )],
        )
        .map(|_| ())
    }

    fn stats(&mut self) -> Result<Vec<(i64, i64, i64)>> {
        self.rows(
            "read stats",
            &format!("SELECT endpoint_id, state, n FROM {}", self.t.stats),
            (),
            |r| Ok((col(&r, 0)?, col(&r, 1)?, col(&r, 2)?)),
        )
    }

    fn routing_backlog(&mut self) -> Result<(i64, Option<f64>)> {
        Ok(self
            .row(
                "count new events",
                &format!(
                    "SELECT count(*), MIN(created_at) FROM {} WHERE routed = 0",
                    self.t.events
                ),
                (),
                |r| Ok((col(&r, 0)?, col(&r, 1)?)),
            )?
            .unwrap_or((0, None)))
    }

    fn oldest_open(&mut self) -> Result<Option<f64>> {
        Ok(self
            .row(
                "oldest pending",
                &format!(
                    "SELECT e.created_at FROM {} d JOIN {} e ON e.id = d.event_rowid WHERE d.state < 3 ORDER BY d.event_rowid LIMIT 1",
                    self.t.deliveries, self.t.events
                ),
                (),
                |r| col::<Option<f64>>(&r, 0),
            )?
            .flatten())
    }

    fn add_counters(&mut self, deltas: &CounterDeltas) -> Result<()> {
        if deltas.is_empty() {
            return Ok(());
        }
        let values: Vec<String> = deltas
            .iter()
            .map(|((e, name, label), v)| {
                format!(
                    "({e}, {}, {}, {})",
                    self.lit(*name),
                    self.lit(label.as_str()),
                    self.lit(*v)
                )
            })
            .collect();
        self.batch(
            "record attempt",
            &[format!(
                "INSERT INTO {} (endpoint_id, name, label, value) VALUES {} ON DUPLICATE KEY UPDATE value = value + VALUES(value)",
                self.t.counters,
                values.join(",")
            )],
        )
        .map(|_| ())
    }

    fn counters(&mut self) -> Result<Vec<(i64, String, String, f64)>> {
        self.rows(
            "read counters",
            &format!(
                "SELECT endpoint_id, name, label, value FROM {} ORDER BY endpoint_id, name, label",
                self.t.counters
            ),
            (),
            |r| Ok((col(&r, 0)?, col(&r, 1)?, col(&r, 2)?, col(&r, 3)?)),
        )
    }

    // ---- retention and erasure ----

    fn finished_events(
        &mut self,
        before: f64,
        states: &[i64],
        unrouted_too: bool,
        limit: usize,
    ) -> Result<Vec<i64>> {
        let (e, d) = (&self.t.events, &self.t.deliveries);
        let states = ids_list(states);
        let unrouted = if unrouted_too { 1 } else { 0 };
        self.rows(
            "select old events",
            &format!(
                "SELECT e.id FROM {e} e
                 WHERE e.created_at < ? AND e.routed = 1
                   AND (({unrouted} AND e.unrouted = 1) OR EXISTS (SELECT 1 FROM {d} d WHERE d.event_rowid = e.id))
                   AND NOT EXISTS (SELECT 1 FROM {d} d WHERE d.event_rowid = e.id AND (d.state NOT IN ({states}) OR d.updated_at >= ?))
                 ORDER BY e.id LIMIT {}",
                limit.max(1)
            ),
            (before, before),
            |r| col(&r, 0),
        )
    }

    fn delete_events(&mut self, rowids: &[i64]) -> Result<(Vec<(i64, i64, i64)>, i64)> {
        if rowids.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let (e, d, a) = (&self.t.events, &self.t.deliveries, &self.t.attempts);
        let list = ids_list(rowids);
        let counts = self.rows(
            "purge deliveries",
            &format!("SELECT endpoint_id, state, count(*) FROM {d} WHERE event_rowid IN ({list}) GROUP BY endpoint_id, state"),
            (),
            |r| Ok((col(&r, 0)?, col(&r, 1)?, col(&r, 2)?)),
        )?;
        let unrouted: i64 = self
            .row(
                "purge events",
                &format!("SELECT count(*) FROM {e} WHERE unrouted = 1 AND id IN ({list})"),
                (),
                |r| col(&r, 0),
            )?
            .unwrap_or(0);
        self.batch(
            "purge events",
            &[
                format!("DELETE FROM {a} WHERE delivery_id IN (SELECT id FROM {d} WHERE event_rowid IN ({list}))"),
                format!("DELETE FROM {d} WHERE event_rowid IN ({list})"),
                format!("DELETE FROM {e} WHERE id IN ({list})"),
            ],
        )?;
        Ok((counts, unrouted))
    }

    fn events_of_key(&mut self, key: &str) -> Result<Vec<KeyEvent>> {
        let (e, d) = (&self.t.events, &self.t.deliveries);
        self.rows(
            "find events of key",
            &format!(
                "SELECT e.id, e.event_id, e.topic, e.created_at,
                        e.routed = 0 OR EXISTS (SELECT 1 FROM {d} d WHERE d.event_rowid = e.id AND d.state < 3)
                 FROM {e} e WHERE e.`key` = ?"
            ),
            (key,),
            |r| {
                Ok(KeyEvent {
                    rowid: col(&r, 0)?,
                    event_id: col(&r, 1)?,
                    topic: col(&r, 2)?,
                    created_at: col(&r, 3)?,
                    open: col::<i64>(&r, 4)? != 0,
                })
            },
        )
    }

    fn newest_event(&mut self) -> Result<i64> {
        Ok(self
            .row(
                "find newest event",
                &format!("SELECT COALESCE(MAX(id), 0) FROM {}", self.t.events),
                (),
                |r| col(&r, 0),
            )?
            .unwrap_or(0))
    }

    fn blank_event(&mut self, rowid: i64, body: &[u8], data_offset: usize) -> Result<()> {
        let (e, d, a) = (
            self.t.events.clone(),
            self.t.deliveries.clone(),
            self.t.attempts.clone(),
        );
        self.batch(
            "erase event",
            &[
                format!("DELETE FROM {a} WHERE delivery_id IN (SELECT id FROM {d} WHERE event_rowid = {rowid})"),
                format!(
                    "UPDATE {e} SET `key` = NULL, seq = 0, body = {}, data_offset = {} WHERE id = {rowid}",
                    self.lit(body.to_vec()),
                    data_offset
                ),
                format!("UPDATE {d} SET `key` = NULL, last_error = NULL WHERE event_rowid = {rowid}"),
            ],
        )
        .map(|_| ())
    }

    fn maintenance(&mut self, _after_purge: bool) -> Result<()> {
        Ok(())
    }
}

impl Drop for Mysql {
    fn drop(&mut self) {
        if let Ok(mut g) = self.slot.lock() {
            if let Some(c) = g.conn.take() {
                discard(c, false);
            }
        }
    }
}
