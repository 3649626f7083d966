//! The SQLite engine: one file per site, WAL mode with `synchronous=NORMAL` (a commit survives
//! the death of the process, not a power cut, without an fsync per dispatch). All writes are short
//! `BEGIN IMMEDIATE` transactions; a busy handler that sleeps in steps of tens of microseconds
//! waits for other writers, so `SQLITE_BUSY` never reaches PHP within [`BUSY_WAIT`].
//!
//! Routing follows a high-water mark (`meta.routed_upto`): SQLite serialises writers, so rowids
//! grow in commit order. The newest event is never deleted (a reused rowid would fall below the
//! mark). Statements are prepared once and cached; connections use QPSG so a cached statement is
//! never re-prepared (rusqlite clears bindings when it caches a statement).

use super::engine::{
    CounterDeltas, DefaultWrite, EndpointUpdate, EndpointWrite, Engine, FinishRow, KeyEvent,
    OpenDelivery, Requeue, RouteRow, StatDeltas, StoredEndpoint,
};
use super::types::*;
use crate::config::{self, Format};
use crate::error::{Error, Result};
use crate::event;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `PRAGMA application_id` of a woosync outbox ("woos").
pub const APPLICATION_ID: i32 = 0x776f_6f73;
/// Longest time a statement waits for another process's write lock before failing.
pub const BUSY_WAIT: Duration = Duration::from_secs(10);
/// How long one connection tries to set itself up before `Sqlite::open` starts over with another.
const OPEN_ATTEMPT: Duration = Duration::from_millis(500);
/// WAL size (in frames, ~4 KB each) past which the sender rewinds the log: 8192 frames ≈ 32 MB.
pub const WAL_RESTART_FRAMES: i64 = 8192;

pub(super) const SCHEMA: &str = "
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
  event_id TEXT NOT NULL,
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
pub(super) const OLDEST_OPEN_SQL: &str =
    "SELECT e.created_at FROM deliveries d INDEXED BY deliveries_open
     JOIN events e ON e.id = d.event_rowid WHERE d.state < 3 ORDER BY d.id LIMIT 1";

/// Version 2: the destination policy, WooCommerce-mirrored endpoints, raw bodies and event
/// headers, metrics counters; the state counts move from triggers to the code (one write per
/// changed count and transaction instead of two per delivery change).
pub(super) const SCHEMA_V2: &str = "
ALTER TABLE endpoints ADD COLUMN allow_networks TEXT NOT NULL DEFAULT '';
ALTER TABLE endpoints ADD COLUMN refused_reason TEXT;
ALTER TABLE endpoints ADD COLUMN refused_until REAL NOT NULL DEFAULT 0;
ALTER TABLE endpoints ADD COLUMN signature TEXT NOT NULL DEFAULT 'standard';
ALTER TABLE endpoints ADD COLUMN hash_algorithm TEXT NOT NULL DEFAULT 'sha256';
ALTER TABLE endpoints ADD COLUMN success_codes TEXT NOT NULL DEFAULT '';
ALTER TABLE endpoints ADD COLUMN user_agent TEXT NOT NULL DEFAULT '';
ALTER TABLE endpoints ADD COLUMN headers TEXT NOT NULL DEFAULT '';
ALTER TABLE endpoints ADD COLUMN wc_webhook_id INTEGER;
ALTER TABLE events ADD COLUMN raw INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN headers TEXT;
CREATE TABLE counters(endpoint_id INTEGER NOT NULL, name TEXT NOT NULL, label TEXT NOT NULL,
  value REAL NOT NULL, PRIMARY KEY(endpoint_id, name, label)) WITHOUT ROWID;
DROP TRIGGER deliveries_stats_insert;
DROP TRIGGER deliveries_stats_update;
DROP TRIGGER deliveries_stats_delete;
DROP TRIGGER endpoints_stats;
DROP TRIGGER events_unrouted_insert;
DROP TRIGGER events_unrouted_update;
DROP TRIGGER events_unrouted_delete;
";

/// Version 3: event ids carry their rowid (`event::with_rowid`), so a new outbox has no index on
/// them (a dispatch writes one page less); ids that do not (moved from another outbox, or a
/// rowid past 40 bits) are marked `foreign_id` and indexed on their own. An outbox created before
/// keeps its unique index on every id and finds events through it.
pub(super) const SCHEMA_V3: &str = "
ALTER TABLE events ADD COLUMN foreign_id INTEGER NOT NULL DEFAULT 0;
";
/// Version 4: the open deliveries of a key indexed by state too, so a promotion (is anything of
/// the key ready or in flight? which queued one is first?) and the routing of a new event read a
/// few index entries instead of every open delivery of the key and its event.
pub(super) const SCHEMA_V4: &str = "
CREATE INDEX deliveries_key_state ON deliveries(endpoint_id, key, state, seq) WHERE state < 3;
DROP INDEX deliveries_key;
";
/// Whether anything of (endpoint, key) is ready or in flight: index entries only.
pub(super) const KEY_BUSY_SQL: &str = "SELECT 1 FROM deliveries INDEXED BY deliveries_key_state
     WHERE endpoint_id = ?1 AND key = ?2 AND state < 3 AND state IN (1, 2) LIMIT 1";
/// The lowest (seq, id) queued delivery of (endpoint, key): the first entry of its range.
pub(super) const KEY_HEAD_SQL: &str = "SELECT id FROM deliveries INDEXED BY deliveries_key_state
     WHERE endpoint_id = ?1 AND key = ?2 AND state < 3 AND state = 0 ORDER BY seq, id LIMIT 1";
/// The newest open sequence number of (endpoint, key): the last index entry of each open state
/// (one `max(seq)` over all three would read every entry of the key).
pub(super) const KEY_NEWEST_SQL: &str = "SELECT nullif(max(
       coalesce((SELECT max(seq) FROM deliveries INDEXED BY deliveries_key_state
                 WHERE endpoint_id = ?1 AND key = ?2 AND state < 3 AND state = 0), -1),
       coalesce((SELECT max(seq) FROM deliveries INDEXED BY deliveries_key_state
                 WHERE endpoint_id = ?1 AND key = ?2 AND state < 3 AND state = 1), -1),
       coalesce((SELECT max(seq) FROM deliveries INDEXED BY deliveries_key_state
                 WHERE endpoint_id = ?1 AND key = ?2 AND state < 3 AND state = 2), -1)), -1)";
/// The index of the ids that carry no rowid, in outboxes created with schema 3 or later.
const FOREIGN_ID_INDEX: &str =
    "CREATE INDEX events_foreign_id ON events(event_id) WHERE foreign_id = 1;";

/// The schema version of SQLite outboxes (`PRAGMA user_version`).
const SQLITE_SCHEMA_VERSION: i32 = 4;

const ENDPOINT_COLUMNS: &str = "id, name, url, secret, prev_secret, prev_secret_until, topics, enabled, disabled_reason, disabled_at,
    rate_limit, timeout, proxy, format, retry_delays, source, consecutive_failures, breaker_until,
    last_success_at, last_error, last_error_at, allow_networks, refused_reason, refused_until,
    signature, hash_algorithm, success_codes, user_agent, headers, wc_webhook_id";

/// An endpoint row read with [`ENDPOINT_COLUMNS`].
fn endpoint_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EndpointRow> {
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
        allow_networks: r.get(21)?,
        refused_reason: r.get(22)?,
        refused_until: r.get(23)?,
        signature: config::SignatureMode::parse(&r.get::<_, String>(24)?)
            .unwrap_or(config::SignatureMode::Standard),
        hash_algorithm: config::HashAlgorithm::parse(&r.get::<_, String>(25)?)
            .unwrap_or(config::HashAlgorithm::Sha256),
        success_codes: config::SuccessCodes::parse(&r.get::<_, String>(26)?).unwrap_or_default(),
        user_agent: r.get(27)?,
        headers: config::headers_from_json(&r.get::<_, String>(28)?),
        wc_webhook_id: r.get(29)?,
    })
}

/// What can make a storage operation fail; a damaged file is told apart.
trait StorageCause: std::fmt::Display {
    fn corrupt(&self) -> bool {
        false
    }
    /// SQLite's extended result code, for the errors whose message alone does not tell.
    fn detail(&self) -> String {
        String::new()
    }
}
impl StorageCause for rusqlite::Error {
    fn detail(&self) -> String {
        match self {
            rusqlite::Error::SqliteFailure(f, _)
                if f.code == rusqlite::ErrorCode::SystemIoFailure =>
            {
                format!(" (SQLite extended code {})", f.extended_code)
            }
            _ => String::new(),
        }
    }
    fn corrupt(&self) -> bool {
        matches!(
            self.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
        )
    }
}

fn storage(path: &Path, what: &str, e: impl StorageCause) -> Error {
    let msg = format!("outbox {}: {what}: {e}{}", path.display(), e.detail());
    if e.corrupt() {
        Error::Corrupt(format!("{msg}; the file is damaged: move it away (keep it to inspect) so a new outbox is created, or restore a backup"))
    } else {
        Error::storage(msg)
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy) | Some(rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Races between processes opening a brand-new file while it is switched from a rollback journal
/// to WAL: one deletes the journal another is about to delete (SQLITE_IOERR_DELETE_NOENT), or a
/// read lock meets another process's lock with EAGAIN (SQLITE_IOERR_RDLOCK). Both pass.
fn is_open_race(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_IOERR_DELETE_NOENT
            || f.extended_code == rusqlite::ffi::SQLITE_IOERR_RDLOCK)
}

/// Retries `f` while SQLite reports busy/locked (schema creation and WAL switch races).
fn retry_busy_until<T>(
    deadline: Instant,
    mut f: impl FnMut() -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    let mut pause = Duration::from_micros(50);
    loop {
        match f() {
            Err(e) if (is_busy(&e) || is_open_race(&e)) && Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// Waits for a lock up to `limit` per statement, and never past `until` when given.
fn install_busy_handler(
    conn: &mut Connection,
    limit: Duration,
    until: Option<Instant>,
) -> rusqlite::Result<()> {
    let mut started = Instant::now();
    conn.busy_handler(Some(move |count: i32| -> bool {
        if count == 0 {
            started = Instant::now();
        }
        if started.elapsed() >= limit || until.is_some_and(|u| Instant::now() >= u) {
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
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let app: i32 = tx.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let version: i32 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if app == APPLICATION_ID && version >= SQLITE_SCHEMA_VERSION {
        return tx.commit(); // another process did it meanwhile
    }
    if version == 0 {
        tx.execute_batch(SCHEMA)?;
    }
    if version < 2 {
        tx.execute_batch(SCHEMA_V2)?;
    }
    if version < 3 {
        tx.execute_batch(SCHEMA_V3)?;
    }
    if version == 0 {
        tx.execute_batch(FOREIGN_ID_INDEX)?;
    }
    if version < 4 {
        tx.execute_batch(SCHEMA_V4)?;
    }
    // Later versions: `if version < N { ... }`, each step within this transaction.
    tx.execute_batch(&format!(
        "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SQLITE_SCHEMA_VERSION};"
    ))?;
    tx.commit()
}

/// A SQLite outbox connection.
pub struct Sqlite {
    conn: Connection,
    path: PathBuf,
    /// A transaction is open (begin was called and neither commit nor rollback yet).
    open: bool,
    /// The time read once per transaction.
    now: Option<f64>,
    /// Event ids carry their rowid (schema 3 from the start): no index on ids but the foreign ones.
    rowid_ids: bool,
}

impl Sqlite {
    /// Opens (creating or migrating if needed) the outbox at `path`.
    ///
    /// A connection that keeps meeting a lock while it sets itself up is dropped and a new one
    /// opened (every `OPEN_ATTEMPT`, within `BUSY_WAIT` in all; every setup step can be repeated:
    /// the WAL switch and the schema step check what is already there), because a connection that
    /// first saw a brand-new file while another process was turning it into an outbox was seen to
    /// stay locked out for the whole wait while the other processes carried on (a php-fpm pool's
    /// first requests). After the wait the error says how many connections tried.
    pub fn open(path: &Path, role: Role) -> Result<Sqlite> {
        let deadline = Instant::now() + BUSY_WAIT;
        let mut tries = 0u32;
        loop {
            tries += 1;
            let busy = std::cell::Cell::new(false);
            let until = (Instant::now() + OPEN_ATTEMPT).min(deadline);
            match Self::open_once(path, role, until, &busy) {
                Err(_) if busy.get() && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(Error::Storage(msg)) if busy.get() => {
                    return Err(Error::storage(format!(
                        "{msg} (locked out for {} s, {tries} connections tried)",
                        BUSY_WAIT.as_secs()
                    )))
                }
                other => return other,
            }
        }
    }

    /// One connection's attempt; `busy` says whether it failed on a lock.
    fn open_once(
        path: &Path,
        role: Role,
        until: Instant,
        busy: &std::cell::Cell<bool>,
    ) -> Result<Sqlite> {
        let fail = |what: &str, e: rusqlite::Error| {
            if is_busy(&e) || is_open_race(&e) {
                busy.set(true);
            }
            storage(path, what, e)
        };
        crate::files::prepare(path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW;
        // Each commit's WAL frames in one write (`wal_writes`), else the default VFS.
        let opened = match super::wal_writes::vfs_name() {
            Some(vfs) => Connection::open_with_flags_and_vfs(path, flags, vfs),
            None => Connection::open_with_flags(path, flags),
        };
        let mut conn = opened.map_err(|e| storage(path, "cannot open", e))?;
        install_busy_handler(&mut conn, BUSY_WAIT, Some(until))
            .map_err(|e| fail("cannot configure", e))?;
        // Every statement of the hot paths stays prepared, and query plans never depend on bound
        // values: otherwise SQLite re-prepares a statement each time rusqlite returns it to its
        // cache (clearing bindings expires such statements).
        conn.set_prepared_statement_cache_capacity(96);
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )
        .map_err(|e| storage(path, "cannot configure", e))?;
        let not_outbox = |e: rusqlite::Error| {
            if is_busy(&e) || is_open_race(&e) {
                busy.set(true);
                return Error::storage(format!(
                    "outbox {} is busy: another process held its lock for more than {} s ({e}); try again",
                    path.display(),
                    BUSY_WAIT.as_secs()
                ));
            }
            if e.corrupt() {
                return storage(path, "cannot read", e);
            }
            Error::storage(format!(
                "{} is not a valid woosync outbox ({e}); it was left untouched: move it away or set woosync.database to another file",
                path.display()
            ))
        };
        // One read transaction: the three values come from one snapshot, even while another
        // process is creating the schema of a brand-new file.
        let (app_id, version, tables) = retry_busy_until(until, || {
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
        if app_id == APPLICATION_ID && version > SQLITE_SCHEMA_VERSION {
            return Err(Error::storage(format!(
                "outbox {} has schema version {version}, newer than this woosync ({SQLITE_SCHEMA_VERSION}, {}): upgrade the extension or use another file",
                path.display(),
                env!("CARGO_PKG_VERSION")
            )));
        }
        if fresh {
            // Must precede the first table; lets the retention pass return pages to the OS.
            retry_busy_until(until, || {
                conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL")
            })
            .map_err(|e| fail("cannot configure", e))?;
        }
        retry_busy_until(until, || {
            conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0))
        })
        .map_err(|e| fail("cannot switch to WAL mode", e))?;
        let pragmas = match role {
            // The request path never checkpoints; the sender does, often. Both truncate the log
            // to 64 MB when they rewind it (the next writer after a RESTART checkpoint does that,
            // usually a dispatch).
            Role::Request => "PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0; PRAGMA cache_size=-512; PRAGMA journal_size_limit=67108864; PRAGMA temp_store=MEMORY;",
            Role::Sender => "PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0; PRAGMA cache_size=-512; PRAGMA journal_size_limit=67108864; PRAGMA temp_store=MEMORY;",
        };
        retry_busy_until(until, || conn.execute_batch(pragmas))
            .map_err(|e| fail("cannot configure", e))?;
        if fresh || version < SQLITE_SCHEMA_VERSION {
            retry_busy_until(until, || migrate(&mut conn))
                .map_err(|e| fail("cannot create the schema", e))?;
        }
        let rowid_ids = retry_busy_until(until, || {
            conn.query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'events_foreign_id'",
                [],
                |r| r.get::<_, i64>(0),
            )
        })
        .map_err(not_outbox)?
            > 0;
        // Set up: from now on a statement waits for a lock up to the full BUSY_WAIT.
        install_busy_handler(&mut conn, BUSY_WAIT, None)
            .map_err(|e| fail("cannot configure", e))?;
        Ok(Sqlite {
            conn,
            path: path.to_path_buf(),
            open: false,
            now: None,
            rowid_ids,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The rowid of the event with this id: by the rowid the id carries (checked against the
    /// row's own id), else through the index of ids that carry none — or, in an outbox created
    /// before schema 3, the unique index of all ids.
    fn event_rowid(&mut self, event_id: &str) -> Result<Option<i64>> {
        if !self.rowid_ids {
            return self.row(
                "find event",
                "SELECT id FROM events WHERE event_id = ?1",
                [event_id],
                |r| r.get(0),
            );
        }
        let carried = crate::event::rowid_in(event_id).unwrap_or(0);
        self.row(
            "find event",
            "SELECT id FROM events WHERE id = ?1 AND event_id = ?2
             UNION ALL SELECT id FROM events WHERE event_id = ?2 AND foreign_id = 1 LIMIT 1",
            params![carried, event_id],
            |r| r.get(0),
        )
    }

    fn err(&self, what: &str, e: rusqlite::Error) -> Error {
        if is_busy(&e) {
            return Error::storage(format!(
                "outbox {}: {what}: still locked by another process after {} s; is a process stuck holding it?",
                self.path.display(),
                BUSY_WAIT.as_secs()
            ));
        }
        storage(&self.path, what, e)
    }

    /// Runs a cached statement.
    fn exec(&self, what: &str, sql: &str, p: impl rusqlite::Params) -> Result<usize> {
        self.conn
            .prepare_cached(sql)
            .and_then(|mut s| s.execute(p))
            .map_err(|e| self.err(what, e))
    }

    /// Reads rows of a cached statement.
    fn rows<T>(
        &self,
        what: &str,
        sql: &str,
        p: impl rusqlite::Params,
        f: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        self.conn
            .prepare_cached(sql)
            .and_then(|mut s| s.query_map(p, f)?.collect())
            .map_err(|e| self.err(what, e))
    }

    /// Reads one optional row of a cached statement.
    fn row<T>(
        &self,
        what: &str,
        sql: &str,
        p: impl rusqlite::Params,
        f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>> {
        self.conn
            .prepare_cached(sql)
            .and_then(|mut s| s.query_row(p, f).optional())
            .map_err(|e| self.err(what, e))
    }

    /// `PRAGMA data_version`: changes when another connection commits.
    pub fn data_version(&self) -> Result<i64> {
        self.conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(|e| self.err("data version", e))
    }
}

impl Engine for Sqlite {
    #[cfg(test)]
    fn sqlite_conn(&self) -> Option<&rusqlite::Connection> {
        Some(&self.conn)
    }

    fn label(&self) -> String {
        format!("outbox {}", self.path.display())
    }

    fn keeps_newest_event(&self) -> bool {
        true
    }

    fn begin(&mut self, write: bool) -> Result<()> {
        self.now = None;
        let sql = if write { "BEGIN IMMEDIATE" } else { "BEGIN" };
        self.conn
            .execute_batch(sql)
            .map_err(|e| self.err("begin", e))?;
        self.open = true;
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        self.open = false;
        self.conn
            .execute_batch("COMMIT")
            .map_err(|e| self.err("commit", e))
    }

    fn rollback(&mut self) {
        if self.open || !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        self.open = false;
    }

    fn now(&mut self) -> Result<f64> {
        Ok(*self.now.get_or_insert_with(event::now))
    }

    // ---- meta ----

    fn endpoints_version(&mut self) -> Result<i64> {
        Ok(self
            .row(
                "read endpoints version",
                "SELECT v FROM meta WHERE k = 'endpoints_version'",
                [],
                |r| r.get(0),
            )?
            .unwrap_or(0))
    }

    fn bump_endpoints_version(&mut self) -> Result<()> {
        self.exec(
            "change endpoints",
            "UPDATE meta SET v = v + 1 WHERE k = 'endpoints_version'",
            [],
        )
        .map(|_| ())
    }

    fn set_sender(&mut self, identity: &str, host: &str, now: f64) -> Result<()> {
        self.exec(
            "record the sender",
            "INSERT INTO meta(k, v) VALUES ('sender', ?1), ('sender_host', ?2), ('sender_since', ?3)
             ON CONFLICT(k) DO UPDATE SET v = excluded.v",
            params![identity, host, now],
        )
        .map(|_| ())
    }

    fn sender(&mut self) -> Result<(Option<String>, Option<String>)> {
        Ok(self
            .row(
                "read the sender",
                "SELECT (SELECT v FROM meta WHERE k = 'sender'), (SELECT v FROM meta WHERE k = 'sender_host')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?
            .unwrap_or((None, None)))
    }

    // ---- endpoints ----

    fn load_endpoints(&mut self) -> Result<Vec<EndpointRow>> {
        self.rows(
            "read endpoints",
            &format!("SELECT {ENDPOINT_COLUMNS} FROM endpoints ORDER BY id"),
            [],
            endpoint_row,
        )
    }

    fn stored_endpoint(&mut self, name: &str) -> Result<Option<StoredEndpoint>> {
        self.row(
            "read endpoint",
            "SELECT id, url, secret, prev_secret, prev_secret_until, proxy, headers, retry_delays, timeout, source
             FROM endpoints WHERE name = ?1",
            [name],
            |r| {
                Ok(StoredEndpoint {
                    id: r.get(0)?,
                    url: r.get(1)?,
                    secret: r.get(2)?,
                    prev_secret: r.get(3)?,
                    prev_secret_until: r.get(4)?,
                    proxy: r.get(5)?,
                    headers: r.get(6)?,
                    retry_delays: r.get(7)?,
                    timeout: r.get(8)?,
                    source: r.get(9)?,
                })
            },
        )
    }

    fn save_endpoint(&mut self, name: &str, w: &EndpointWrite, now: f64) -> Result<()> {
        self.exec(
            "save endpoint",
            "INSERT INTO endpoints(name, url, secret, prev_secret, prev_secret_until, topics, enabled, rate_limit, timeout, proxy,
                                   format, retry_delays, source, created_at, updated_at, allow_networks,
                                   signature, hash_algorithm, success_codes, user_agent, headers, wc_webhook_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)
             ON CONFLICT(name) DO UPDATE SET url = excluded.url, secret = excluded.secret, prev_secret = excluded.prev_secret,
               prev_secret_until = excluded.prev_secret_until, topics = excluded.topics, enabled = excluded.enabled,
               rate_limit = excluded.rate_limit, timeout = excluded.timeout, proxy = excluded.proxy, format = excluded.format,
               retry_delays = excluded.retry_delays, source = excluded.source, updated_at = excluded.updated_at,
               allow_networks = excluded.allow_networks, signature = excluded.signature,
               hash_algorithm = excluded.hash_algorithm, success_codes = excluded.success_codes,
               user_agent = excluded.user_agent, headers = excluded.headers, wc_webhook_id = excluded.wc_webhook_id,
               disabled_at = NULL, disabled_reason = NULL, consecutive_failures = 0, breaker_until = 0,
               refused_reason = NULL, refused_until = 0",
            params![
                name,
                w.url,
                w.secret,
                w.prev_secret,
                w.prev_secret_until,
                w.topics,
                w.enabled as i64,
                w.rate_limit,
                w.timeout,
                w.proxy,
                w.format,
                w.retry_delays,
                w.source,
                now,
                w.allow_networks,
                w.signature,
                w.hash_algorithm,
                w.success_codes,
                w.user_agent,
                w.headers,
                w.wc_webhook_id
            ],
        )
        .map(|_| ())
    }

    fn save_default_endpoint(&mut self, name: &str, d: &DefaultWrite, now: f64) -> Result<()> {
        self.exec(
            "record the default endpoint",
            "INSERT INTO endpoints(name, url, secret, retry_delays, timeout, source, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
             ON CONFLICT(name) DO UPDATE SET
               disabled_at = CASE WHEN url IS NOT excluded.url THEN NULL ELSE disabled_at END,
               disabled_reason = CASE WHEN url IS NOT excluded.url THEN NULL ELSE disabled_reason END,
               consecutive_failures = CASE WHEN url IS NOT excluded.url THEN 0 ELSE consecutive_failures END,
               breaker_until = CASE WHEN url IS NOT excluded.url THEN 0 ELSE breaker_until END,
               refused_reason = CASE WHEN url IS NOT excluded.url THEN NULL ELSE refused_reason END,
               refused_until = CASE WHEN url IS NOT excluded.url THEN 0 ELSE refused_until END,
               url = excluded.url, secret = excluded.secret, retry_delays = excluded.retry_delays,
               timeout = excluded.timeout, source = excluded.source, updated_at = excluded.updated_at",
            params![name, d.url, d.secret, d.retry_delays, d.timeout, d.source, now],
        )
        .map(|_| ())
    }

    fn retire_endpoint(&mut self, id: i64) -> Result<()> {
        self.exec(
            "delete endpoint",
            "UPDATE endpoints SET enabled = 0, url = '', secret = '', prev_secret = '', headers = '',
               name = name || '#deleted-' || id WHERE id = ?1",
            [id],
        )
        .map(|_| ())
    }

    fn note_endpoint_error(&mut self, id: i64, error: &str, now: f64) -> Result<()> {
        self.exec(
            "record endpoint error",
            "UPDATE endpoints SET last_error = ?2, last_error_at = ?3 WHERE id = ?1",
            params![id, error, now],
        )
        .map(|_| ())
    }

    fn endpoint_health(&mut self) -> Result<Vec<(i64, i64, f64, f64)>> {
        self.rows(
            "read endpoint health",
            "SELECT id, consecutive_failures, breaker_until, refused_until FROM endpoints",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
    }

    fn update_endpoints(&mut self, updates: &[EndpointUpdate]) -> Result<()> {
        for u in updates {
            match u {
                EndpointUpdate::Success { id, now } => self.exec(
                    "record attempt",
                    "UPDATE endpoints SET last_success_at = ?2, consecutive_failures = 0, breaker_until = 0,
                       refused_reason = NULL, refused_until = 0 WHERE id = ?1",
                    params![id, now],
                )?,
                EndpointUpdate::Failure { id, error, now } => self.exec(
                    "record attempt",
                    "UPDATE endpoints SET last_error = ?2, last_error_at = ?3 WHERE id = ?1",
                    params![id, error, now],
                )?,
                EndpointUpdate::Unhealthy { id, now, pause } => self.exec(
                    "record attempt",
                    "UPDATE endpoints SET consecutive_failures = consecutive_failures + 1,
                       breaker_until = CASE WHEN consecutive_failures + 1 >= ?3 THEN ?2 + ?4 ELSE breaker_until END
                     WHERE id = ?1",
                    params![id, now, BREAKER_THRESHOLD, pause],
                )?,
                EndpointUpdate::Disable { id, reason, now } => self.exec(
                    "record attempt",
                    "UPDATE endpoints SET disabled_at = ?2, disabled_reason = ?3 WHERE id = ?1",
                    params![id, now, reason],
                )?,
                EndpointUpdate::Refused {
                    id,
                    reason,
                    until,
                    error,
                    now,
                } => self.exec(
                    "record attempt",
                    "UPDATE endpoints SET refused_reason = ?2, refused_until = ?3, last_error = ?4, last_error_at = ?5 WHERE id = ?1",
                    params![id, reason, until, error, now],
                )?,
            };
        }
        Ok(())
    }

    // ---- events ----

    fn next_seq(&mut self, key: &str) -> Result<i64> {
        Ok(self
            .row(
                "next sequence",
                "INSERT INTO key_seq(key, seq) VALUES (?1, 1) ON CONFLICT(key) DO UPDATE SET seq = seq + 1 RETURNING seq",
                [key],
                |r| r.get(0),
            )?
            .unwrap_or(1))
    }

    fn store_event(
        &mut self,
        e: &super::engine::EventInsert<'_>,
        max_body: usize,
    ) -> Result<super::engine::Stored> {
        super::engine::store_in_steps(self, e, max_body)
    }

    fn next_event_rowid(&mut self) -> Result<Option<i64>> {
        if !self.rowid_ids {
            return Ok(None);
        }
        // The newest event is never deleted, so this is the rowid SQLite would choose.
        self.row(
            "next event rowid",
            "SELECT coalesce(max(id), 0) + 1 FROM events",
            [],
            |r| r.get(0),
        )
    }

    fn insert_event(
        &mut self,
        e: &super::engine::EventInsert<'_>,
        event_id: &str,
        rowid: Option<i64>,
        seq: i64,
        body: &[u8],
        data_offset: usize,
    ) -> Result<i64> {
        let foreign = self.rowid_ids && rowid.is_none();
        self.exec(
            "insert event",
            "INSERT INTO events(id, event_id, topic, key, seq, created_at, coalesce, route, data_offset, body, raw, headers, foreign_id)
             VALUES (?12, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?13)",
            params![
                event_id,
                e.topic,
                e.key,
                seq,
                e.created_at,
                e.coalesce as i64,
                e.route,
                data_offset as i64,
                body,
                e.raw as i64,
                e.headers,
                rowid,
                foreign as i64
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    fn event_exists(&mut self, event_id: &str) -> Result<bool> {
        Ok(self.event_rowid(event_id)?.is_some())
    }

    fn meta(&mut self, k: &str) -> Result<String> {
        Ok(self
            .row(
                "read meta",
                "SELECT CAST(v AS TEXT) FROM meta WHERE k = ?1",
                [k],
                |r| r.get::<_, Option<String>>(0),
            )?
            .flatten()
            .unwrap_or_default())
    }

    fn set_meta(&mut self, k: &str, v: &str) -> Result<()> {
        self.exec(
            "write meta",
            "INSERT INTO meta(k, v) VALUES (?1, ?2) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
            params![k, v],
        )
        .map(|_| ())
    }

    fn key_counters(&mut self, after: &str, limit: usize) -> Result<Vec<(String, i64)>> {
        self.rows(
            "read counters",
            "SELECT key, seq FROM key_seq WHERE key > ?1 ORDER BY key LIMIT ?2",
            params![after, limit as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    fn raise_counters(&mut self, rows: &[(String, i64)]) -> Result<()> {
        for (k, seq) in rows {
            self.exec(
                "raise counters",
                "INSERT INTO key_seq(key, seq) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET seq = max(seq, excluded.seq)",
                params![k, seq],
            )?;
        }
        Ok(())
    }

    fn events_to_move(&mut self, limit: usize) -> Result<Vec<super::engine::MovingEvent>> {
        let sql = "SELECT e.id, e.event_id, e.topic, e.key, e.seq, e.created_at, e.coalesce, e.route, e.data_offset,
                e.body, e.raw, e.headers, e.id <= (SELECT v FROM meta WHERE k = 'routed_upto')
           FROM events e
          WHERE (e.id > (SELECT v FROM meta WHERE k = 'routed_upto')
                 OR EXISTS (SELECT 1 FROM deliveries d WHERE d.event_rowid = e.id AND d.state IN (0, 1, 4)))
            AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_rowid = e.id AND d.state = 2)
          ORDER BY e.id LIMIT ?1";
        let mut events = self.rows("read events to move", sql, [limit as i64], |r| {
            Ok(super::engine::MovingEvent {
                rowid: r.get(0)?,
                event_id: r.get(1)?,
                topic: r.get(2)?,
                key: r.get(3)?,
                seq: r.get(4)?,
                created_at: r.get(5)?,
                coalesce: r.get::<_, i64>(6)? != 0,
                route: r.get(7)?,
                data_offset: r.get::<_, i64>(8)? as usize,
                body: r.get(9)?,
                raw: r.get::<_, i64>(10)? != 0,
                headers: r.get(11)?,
                routed: r.get::<_, i64>(12)? != 0,
                deliveries: Vec::new(),
            })
        })?;
        for ev in events.iter_mut() {
            ev.deliveries = self.rows(
                "read deliveries to move",
                "SELECT p.name, d.state FROM deliveries d JOIN endpoints p ON p.id = d.endpoint_id
                  WHERE d.event_rowid = ?1 AND d.state IN (0, 1, 4) ORDER BY d.id",
                [ev.rowid],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
        }
        Ok(events)
    }

    fn events_left_to_move(&mut self) -> Result<i64> {
        Ok(self
            .row(
                "count events to move",
                "SELECT (SELECT count(*) FROM events WHERE id > (SELECT v FROM meta WHERE k = 'routed_upto'))
                      + (SELECT count(DISTINCT event_rowid) FROM deliveries WHERE state IN (0, 1, 2, 4))",
                [],
                |r| r.get(0),
            )?
            .unwrap_or(0))
    }

    fn import_event(&mut self, e: &super::engine::MovingEvent) -> Result<i64> {
        self.exec(
            "import event",
            // A moved event keeps its id, which does not carry its rowid here.
            "INSERT INTO events(event_id, topic, key, seq, created_at, coalesce, route, data_offset, body, raw, headers, foreign_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 1)",
            params![
                e.event_id,
                e.topic,
                e.key,
                e.seq,
                e.created_at,
                e.coalesce as i64,
                e.route,
                e.data_offset as i64,
                e.body,
                e.raw as i64,
                e.headers
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    fn has_new_events(&mut self) -> Result<bool> {
        Ok(self
            .row(
                "check new events",
                "SELECT coalesce((SELECT max(id) FROM events), 0) > (SELECT v FROM meta WHERE k = 'routed_upto')",
                [],
                |r| r.get(0),
            )?
            .unwrap_or(false))
    }

    fn events_to_route(&mut self, limit: usize) -> Result<Vec<RouteRow>> {
        let upto: i64 = self
            .row(
                "read routing mark",
                "SELECT v FROM meta WHERE k = 'routed_upto'",
                [],
                |r| r.get(0),
            )?
            .unwrap_or(0);
        // No `LIMIT ?`: a bound LIMIT makes SQLite re-prepare the statement on every use; the rows
        // stream, so take() is as cheap.
        self.conn
            .prepare_cached(
                "SELECT id, topic, key, seq, coalesce, route FROM events WHERE id > ?1 ORDER BY id",
            )
            .and_then(|mut s| {
                s.query_map(params![upto], |r| {
                    Ok(RouteRow {
                        rowid: r.get(0)?,
                        topic: r.get(1)?,
                        key: r.get(2)?,
                        seq: r.get(3)?,
                        coalesce: r.get::<_, i64>(4)? != 0,
                        route: r.get(5)?,
                    })
                })?
                .take(limit)
                .collect()
            })
            .map_err(|e| self.err("read new events", e))
    }

    fn mark_routed(&mut self, rows: &[i64], unrouted: &[i64]) -> Result<()> {
        for id in unrouted {
            self.exec(
                "mark unrouted",
                "UPDATE events SET unrouted = 1 WHERE id = ?1",
                [id],
            )?;
        }
        if let Some(last) = rows.iter().max() {
            self.exec(
                "move routing mark",
                "UPDATE meta SET v = ?1 WHERE k = 'routed_upto'",
                [last],
            )?;
        }
        Ok(())
    }

    fn find_event(
        &mut self,
        event_id: &str,
    ) -> Result<Option<(i64, String, Option<String>, i64, bool)>> {
        let Some(rowid) = self.event_rowid(event_id)? else {
            return Ok(None);
        };
        self.row(
            "find event",
            "SELECT id, topic, key, seq, unrouted FROM events WHERE id = ?1",
            [rowid],
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
    }

    fn set_routed_again(&mut self, rowid: i64) -> Result<()> {
        self.exec(
            "route event",
            "UPDATE events SET unrouted = 0 WHERE id = ?1",
            [rowid],
        )
        .map(|_| ())
    }

    fn event_detail(&mut self, event_id: &str) -> Result<Option<EventDetail>> {
        let Some(rowid) = self.event_rowid(event_id)? else {
            return Ok(None);
        };
        let head = self.row(
            "read event",
            "SELECT id, event_id, topic, key, seq, created_at, unrouted, body, data_offset, raw FROM events WHERE id = ?1",
            [rowid],
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
                        raw: r.get::<_, i64>(9)? != 0,
                        deliveries: vec![],
                        attempts: vec![],
                    },
                ))
            },
        )?;
        let Some((rowid, mut detail)) = head else {
            return Ok(None);
        };
        detail.deliveries = self.rows(
            "read event",
            "SELECT p.name, d.state, (SELECT count(*) FROM attempts a WHERE a.delivery_id = d.id), d.next_attempt_at,
                    d.last_status, d.last_error, d.updated_at
             FROM deliveries d JOIN endpoints p ON p.id = d.endpoint_id WHERE d.event_rowid = ?1 ORDER BY d.id",
            [rowid],
            |r| {
                Ok(DeliveryRow {
                    endpoint: r.get(0)?,
                    state: r.get(1)?,
                    attempts: r.get(2)?,
                    next_attempt_at: r.get(3)?,
                    last_status: r.get(4)?,
                    last_error: r.get(5)?,
                    updated_at: r.get(6)?,
                })
            },
        )?;
        detail.attempts = self.rows(
            "read event",
            "SELECT p.name, a.started_at, a.duration_ms, a.http_status, a.error_class, a.error, a.response, a.delivery_uuid
             FROM attempts a JOIN deliveries d ON d.id = a.delivery_id JOIN endpoints p ON p.id = d.endpoint_id
             WHERE d.event_rowid = ?1 ORDER BY a.id",
            [rowid],
            |r| {
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
            },
        )?;
        Ok(Some(detail))
    }

    fn list_events(&mut self, f: &EventFilter) -> Result<Vec<EventSummary>> {
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
        push_filter(&mut sql, &mut args, f, "e.key", |n| format!("?{n}"));
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

    // ---- deliveries ----

    fn open_deliveries_of_key(&mut self, endpoint_id: i64, key: &str) -> Result<Vec<OpenDelivery>> {
        self.rows(
            "read open deliveries",
            "SELECT d.id, d.state, d.seq, e.topic FROM deliveries d JOIN events e ON e.id = d.event_rowid
             WHERE d.endpoint_id = ?1 AND d.key = ?2 AND d.state < 3 ORDER BY d.seq, d.id",
            params![endpoint_id, key],
            |r| {
                Ok(OpenDelivery {
                    id: r.get(0)?,
                    state: r.get(1)?,
                    seq: r.get(2)?,
                    topic: r.get(3)?,
                })
            },
        )
    }

    fn key_busy(&mut self, endpoint_id: i64, key: &str) -> Result<bool> {
        Ok(self
            .row(
                "read open deliveries",
                KEY_BUSY_SQL,
                params![endpoint_id, key],
                |r| r.get::<_, i64>(0),
            )?
            .is_some())
    }

    fn first_queued(&mut self, endpoint_id: i64, key: &str) -> Result<Option<i64>> {
        self.row(
            "read open deliveries",
            KEY_HEAD_SQL,
            params![endpoint_id, key],
            |r| r.get(0),
        )
    }

    fn newest_open_seq(&mut self, endpoint_id: i64, key: &str) -> Result<Option<i64>> {
        Ok(self
            .row(
                "read open deliveries",
                KEY_NEWEST_SQL,
                params![endpoint_id, key],
                |r| r.get::<_, Option<i64>>(0),
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
            "INSERT INTO deliveries(event_rowid, endpoint_id, key, seq, state, next_attempt_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
            params![event_rowid, endpoint_id, key, seq, st, now],
        )
        .map(|_| ())
    }

    fn hasten_endpoint(&mut self, endpoint_id: i64, now: f64) -> Result<usize> {
        self.exec(
            "hasten deliveries",
            "UPDATE deliveries SET next_attempt_at = ?2 WHERE state = 1 AND endpoint_id = ?1 AND next_attempt_at > ?2",
            params![endpoint_id, now],
        )
    }

    fn set_delivery_state(&mut self, ids: &[i64], from: i64, to: i64, now: f64) -> Result<usize> {
        let mut n = 0;
        for id in ids {
            n += self.exec(
                "change delivery",
                "UPDATE deliveries SET state = ?3, updated_at = ?4 WHERE id = ?1 AND state = ?2",
                params![id, from, to, now],
            )?;
        }
        Ok(n)
    }

    fn claim(
        &mut self,
        endpoint_id: i64,
        limit: usize,
        now: f64,
        me: &str,
        lease_until: f64,
    ) -> Result<Vec<Claimed>> {
        let rows: Vec<Claimed> = self
            .conn
            .prepare_cached(
                "SELECT d.id, d.key, d.attempts, e.event_id, e.topic, e.body, e.data_offset, e.raw, e.headers
                 FROM deliveries d JOIN events e ON e.id = d.event_rowid
                 WHERE d.state < 3 AND d.state = 1 AND d.endpoint_id = ?1 AND d.next_attempt_at <= ?2
                 ORDER BY d.next_attempt_at",
            )
            .and_then(|mut s| {
                s.query_map(params![endpoint_id, now], |r| {
                    Ok(Claimed {
                        delivery_id: r.get(0)?,
                        endpoint_id,
                        key: r.get(1)?,
                        attempt: r.get::<_, i64>(2)? + 1,
                        event_id: r.get(3)?,
                        topic: r.get(4)?,
                        body: r.get(5)?,
                        data_offset: r.get::<_, i64>(6)? as usize,
                        raw: r.get::<_, i64>(7)? != 0,
                        headers: r.get(8)?,
                    })
                })?
                .take(limit)
                .collect()
            })
            .map_err(|e| self.err("claim", e))?;
        for c in &rows {
            self.exec(
                "claim",
                "UPDATE deliveries SET state = 2, attempts = attempts + 1, claimed_by = ?2, lease_until = ?3, updated_at = ?4 WHERE id = ?1",
                params![c.delivery_id, me, lease_until, now],
            )?;
        }
        Ok(rows)
    }

    fn insert_attempts(&mut self, done: &[Finished]) -> Result<()> {
        for f in done {
            let response = &f.response[..f.response.len().min(RESPONSE_SNIPPET)];
            self.exec(
                "record attempt",
                "INSERT INTO attempts(delivery_id, started_at, duration_ms, http_status, error_class, error, response, delivery_uuid)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    f.delivery_id,
                    f.started_at,
                    f.duration_ms,
                    f.http_status,
                    f.error_class,
                    f.error,
                    response,
                    f.delivery_uuid
                ],
            )?;
        }
        Ok(())
    }

    fn finish_deliveries(&mut self, rows: &[FinishRow], _me: &str, now: f64) -> Result<Vec<bool>> {
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let n = self.exec(
                "record attempt",
                "UPDATE deliveries SET state = ?2, claimed_by = NULL, lease_until = NULL, last_status = ?3, last_error = ?4,
                   next_attempt_at = ?5, updated_at = ?6 WHERE id = ?1 AND state = 2",
                params![r.id, r.state, r.last_status, r.last_error, r.next_attempt_at, now],
            )?;
            out.push(n > 0);
        }
        Ok(out)
    }

    fn refuse_delivery(&mut self, id: i64, error: &str, _me: &str, now: f64) -> Result<bool> {
        Ok(self.exec(
            "record attempt",
            "UPDATE deliveries SET state = 1, attempts = max(attempts - 1, 0), claimed_by = NULL, lease_until = NULL,
               last_status = NULL, last_error = ?2, next_attempt_at = ?3, updated_at = ?3 WHERE id = ?1 AND state = 2",
            params![id, error, now],
        )? > 0)
    }

    fn requeue(&mut self, what: Requeue<'_>, now: f64) -> Result<Vec<(i64, Option<String>, i64)>> {
        let (cond, arg): (&str, rusqlite::types::Value) = match what {
            Requeue::Event(rowid) => ("event_rowid = ?1 AND state IN (3, 4)", rowid.into()),
            Requeue::Dead(Some(name)) => (
                "state = 4 AND endpoint_id = (SELECT id FROM endpoints WHERE name = ?1)",
                name.to_string().into(),
            ),
            Requeue::Dead(None) => ("state = 4 AND ?1 IS NOT NULL", 1i64.into()),
        };
        // Read the affected rows first (their previous state), then change them.
        let affected: Vec<(i64, i64, Option<String>, i64)> = self.rows(
            "requeue",
            &format!("SELECT id, endpoint_id, key, state FROM deliveries WHERE {cond}"),
            [&arg],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        for (id, ..) in &affected {
            self.exec(
                "requeue",
                "UPDATE deliveries SET state = CASE WHEN key IS NULL THEN 1 ELSE 0 END, attempts = 0, next_attempt_at = ?2,
                   claimed_by = NULL, lease_until = NULL, updated_at = ?2 WHERE id = ?1",
                params![id, now],
            )?;
        }
        Ok(affected.into_iter().map(|(_, e, k, s)| (e, k, s)).collect())
    }

    fn kill_open_deliveries(&mut self, endpoint_id: i64, now: f64) -> Result<Vec<(i64, i64)>> {
        let counts = self.rows(
            "close deliveries",
            "SELECT state, count(*) FROM deliveries WHERE endpoint_id = ?1 AND state < 3 GROUP BY state",
            [endpoint_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        self.exec(
            "close deliveries",
            "UPDATE deliveries SET state = 4, last_error = 'endpoint deleted', claimed_by = NULL, lease_until = NULL, updated_at = ?2
             WHERE endpoint_id = ?1 AND state < 3",
            params![endpoint_id, now],
        )?;
        Ok(counts)
    }

    fn lease_holders(&mut self) -> Result<Vec<(String, f64)>> {
        self.rows(
            "read leases",
            "SELECT claimed_by, min(lease_until) FROM deliveries WHERE state < 3 AND state = 2 GROUP BY claimed_by",
            [],
            |r| {
                Ok((
                    r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                    r.get::<_, Option<f64>>(1)?.unwrap_or(0.0),
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
        let until = expired_at.unwrap_or(f64::INFINITY);
        let counts = self.rows(
            "take over leases",
            "SELECT endpoint_id, count(*) FROM deliveries WHERE state < 3 AND state = 2 AND claimed_by = ?1 AND lease_until <= ?2
             GROUP BY endpoint_id",
            params![holder, until],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        self.exec(
            "take over leases",
            "INSERT INTO attempts(delivery_id, started_at, duration_ms, error_class, error)
             SELECT id, coalesce(lease_until, ?3), 0, 'abandoned', ?4 FROM deliveries
             WHERE state < 3 AND state = 2 AND claimed_by = ?1 AND lease_until <= ?2",
            params![
                holder,
                until,
                now,
                format!("{why} ({holder}); outcome unknown, attempting again")
            ],
        )?;
        self.exec(
            "take over leases",
            "UPDATE deliveries SET state = 1, claimed_by = NULL, lease_until = NULL, next_attempt_at = ?3, updated_at = ?3
             WHERE state < 3 AND state = 2 AND claimed_by = ?1 AND lease_until <= ?2",
            params![holder, until, now],
        )?;
        Ok(counts)
    }

    fn next_due(&mut self, endpoint_ids: &[i64]) -> Result<Option<f64>> {
        let mut best: Option<f64> = None;
        for id in endpoint_ids {
            let t: Option<f64> = self.row(
                "next due",
                "SELECT next_attempt_at FROM deliveries WHERE state < 3 AND state = 1 AND endpoint_id = ?1 ORDER BY next_attempt_at",
                [id],
                |r| r.get(0),
            )?;
            if let Some(t) = t {
                best = Some(best.map_or(t, |b: f64| b.min(t)));
            }
        }
        Ok(best)
    }

    // ---- counts ----

    fn add_stats(&mut self, deltas: &StatDeltas) -> Result<()> {
        for ((endpoint_id, st), n) in deltas {
            if *n != 0 {
                self.exec(
                    "count states",
                    "INSERT INTO stats(endpoint_id, state, n) VALUES (?1, ?2, ?3)
                     ON CONFLICT(endpoint_id, state) DO UPDATE SET n = n + excluded.n",
                    params![endpoint_id, st, n],
                )?;
            }
        }
        Ok(())
    }

    fn stats(&mut self) -> Result<Vec<(i64, i64, i64)>> {
        self.rows(
            "read stats",
            "SELECT endpoint_id, state, n FROM stats",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
    }

    fn routing_backlog(&mut self) -> Result<(i64, Option<f64>)> {
        Ok(self
            .row(
                "count new events",
                "SELECT coalesce((SELECT max(id) FROM events), 0) - coalesce((SELECT v FROM meta WHERE k = 'routed_upto'), 0),
                        (SELECT created_at FROM events WHERE id > coalesce((SELECT v FROM meta WHERE k = 'routed_upto'), 0) ORDER BY id LIMIT 1)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?
            .unwrap_or((0, None)))
    }

    fn oldest_open(&mut self) -> Result<Option<f64>> {
        Ok(self
            .row("oldest pending", OLDEST_OPEN_SQL, [], |r| r.get(0))?
            .flatten())
    }

    fn add_counters(&mut self, deltas: &CounterDeltas) -> Result<()> {
        for ((endpoint, name, label), v) in deltas {
            self.exec(
                "record attempt",
                "INSERT INTO counters(endpoint_id, name, label, value) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(endpoint_id, name, label) DO UPDATE SET value = value + excluded.value",
                params![endpoint, name, label, v],
            )?;
        }
        Ok(())
    }

    fn counters(&mut self) -> Result<Vec<(i64, String, String, f64)>> {
        self.rows(
            "read counters",
            "SELECT endpoint_id, name, label, value FROM counters ORDER BY endpoint_id, name, label",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
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
        let states = states
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(",");
        // An event goes when none of its deliveries is open or outside `states`, and its last
        // change is older than `before`. The newest event always stays (it anchors rowids, which
        // the routing mark relies on).
        let sql = format!(
            "SELECT e.id FROM events e
             WHERE e.created_at < ?1 AND e.id < (SELECT max(id) FROM events) AND e.id <= (SELECT v FROM meta WHERE k = 'routed_upto')
               AND (({unrouted} AND e.unrouted = 1) OR EXISTS (SELECT 1 FROM deliveries d WHERE d.event_rowid = e.id))
               AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_rowid = e.id AND (d.state NOT IN ({states}) OR d.updated_at >= ?1))
             ORDER BY e.id LIMIT ?2",
            unrouted = if unrouted_too { 1 } else { 0 }
        );
        self.conn
            .prepare(&sql)
            .and_then(|mut s| {
                s.query_map(params![before, limit as i64], |r| r.get(0))?
                    .collect()
            })
            .map_err(|e| self.err("select old events", e))
    }

    fn delete_events(&mut self, rowids: &[i64]) -> Result<(Vec<(i64, i64, i64)>, i64)> {
        let mut counts: std::collections::BTreeMap<(i64, i64), i64> = Default::default();
        let mut unrouted = 0;
        for id in rowids {
            for (ep, st, n) in self.rows(
                "purge deliveries",
                "SELECT endpoint_id, state, count(*) FROM deliveries WHERE event_rowid = ?1 GROUP BY endpoint_id, state",
                [id],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)),
            )? {
                *counts.entry((ep, st)).or_default() += n;
            }
            unrouted += self
                .row(
                    "purge events",
                    "SELECT unrouted FROM events WHERE id = ?1",
                    [id],
                    |r| r.get::<_, i64>(0),
                )?
                .unwrap_or(0);
            self.exec(
                "purge attempts",
                "DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE event_rowid = ?1)",
                [id],
            )?;
            self.exec(
                "purge deliveries",
                "DELETE FROM deliveries WHERE event_rowid = ?1",
                [id],
            )?;
            self.exec("purge events", "DELETE FROM events WHERE id = ?1", [id])?;
        }
        Ok((
            counts.into_iter().map(|((e, s), n)| (e, s, n)).collect(),
            unrouted,
        ))
    }

    fn events_of_key(&mut self, key: &str) -> Result<Vec<KeyEvent>> {
        self.rows(
            "find events of key",
            "SELECT e.id, e.event_id, e.topic, e.created_at,
                    e.id > (SELECT v FROM meta WHERE k = 'routed_upto')
                    OR EXISTS (SELECT 1 FROM deliveries d WHERE d.event_rowid = e.id AND d.state < 3)
             FROM events e WHERE e.key = ?1",
            [key],
            |r| {
                Ok(KeyEvent {
                    rowid: r.get(0)?,
                    event_id: r.get(1)?,
                    topic: r.get(2)?,
                    created_at: r.get(3)?,
                    open: r.get::<_, bool>(4)?,
                })
            },
        )
    }

    fn newest_event(&mut self) -> Result<i64> {
        Ok(self
            .row(
                "find newest event",
                "SELECT coalesce(max(id), 0) FROM events",
                [],
                |r| r.get(0),
            )?
            .unwrap_or(0))
    }

    fn blank_event(&mut self, rowid: i64, body: &[u8], data_offset: usize) -> Result<()> {
        self.exec(
            "erase attempts",
            "DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE event_rowid = ?1)",
            [rowid],
        )?;
        self.exec(
            "erase newest event",
            "UPDATE events SET key = NULL, seq = 0, body = ?2, data_offset = ?3 WHERE id = ?1",
            params![rowid, body, data_offset as i64],
        )?;
        self.exec(
            "erase newest event",
            "UPDATE deliveries SET key = NULL, last_error = NULL WHERE event_rowid = ?1",
            [rowid],
        )
        .map(|_| ())
    }

    fn maintenance(&mut self, after_purge: bool) -> Result<()> {
        if after_purge {
            let _ = self.conn.execute_batch("PRAGMA incremental_vacuum(2000)");
            return Ok(());
        }
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
}

/// Appends the filter's conditions to a listing query; `mark(n)` writes placeholder n, `key`
/// is how the engine names the events' key column.
pub(super) fn push_filter<V: From<i64> + From<String> + From<f64>>(
    sql: &mut String,
    args: &mut Vec<V>,
    f: &EventFilter,
    key: &str,
    mark: impl Fn(usize) -> String,
) {
    if let Some(s) = f.state {
        if s == state::UNROUTED {
            sql.push_str(" AND d.id IS NULL AND e.unrouted = 1");
        } else if s == state::READY {
            // "pending" in the API covers queued, ready, in flight and not yet routed.
            sql.push_str(" AND (d.state < 3 OR (d.id IS NULL AND e.unrouted = 0))");
        } else {
            args.push(s.into());
            sql.push_str(&format!(" AND d.state = {}", mark(args.len())));
        }
    }
    if let Some(t) = &f.topic {
        args.push(t.clone().into());
        sql.push_str(&format!(" AND e.topic = {}", mark(args.len())));
    }
    if let Some(k) = &f.key {
        args.push(k.clone().into());
        sql.push_str(&format!(" AND {key} = {}", mark(args.len())));
    }
    if let Some(p) = &f.key_prefix {
        args.push(p.clone().into());
        let n = mark(args.len());
        args.push(p.clone().into());
        let m = mark(args.len());
        sql.push_str(&format!(" AND substr({key}, 1, length({n})) = {m}"));
    }
    if let Some(names) = &f.endpoints {
        let mut marks = Vec::new();
        for n in names {
            args.push(n.clone().into());
            marks.push(mark(args.len()));
        }
        if marks.is_empty() {
            sql.push_str(" AND 0");
        } else {
            sql.push_str(&format!(" AND p.name IN ({})", marks.join(",")));
        }
    }
    if let Some(s) = f.since {
        args.push(s.into());
        sql.push_str(&format!(" AND e.created_at >= {}", mark(args.len())));
    }
}
