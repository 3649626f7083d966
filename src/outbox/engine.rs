//! The storage seam: what a storage engine (SQLite, MySQL/MariaDB) provides. Engines hold only
//! SQL and connection handling; everything else — routing, fan-out, coalescing, per-key
//! promotion, the state counts, breaker and retry consequences, the record/claim cycle — is
//! written once, in the outbox module, against this interface.
//!
//! Contract:
//! - One engine value owns one connection and is used by one thread at a time.
//! - Every method except `begin`/`commit`/`rollback` runs inside the transaction opened by
//!   `begin`; `begin(true)` is a write transaction that other writers wait for (SQLite
//!   `BEGIN IMMEDIATE`; MySQL row locks, READ COMMITTED).
//! - Methods work in batches where the caller has many rows, so a network round trip (MySQL)
//!   serves many rows.
//! - Times that decide leases and retries come from `now()`: the engine's clock (the database
//!   server's for MySQL), read once per transaction.
//! - Errors are `crate::Error`; a transient conflict (deadlock) is `Error::Conflict` and the whole
//!   transaction may be run again.

use super::types::{Claimed, EndpointRow, EventDetail, EventFilter, EventSummary, Finished};
use crate::error::Result;
use crate::event::ENVELOPE_ID_AT;
use std::collections::BTreeMap;
use std::time::Instant;

/// An event as stored by dispatch. Its body is `head` + the key's sequence number in decimal +
/// `tail` (the woosync envelope), or `head` alone (a raw body: `tail` is None). The sequence number
/// is only known inside the storing transaction.
pub struct EventInsert<'a> {
    pub event_id: &'a str,
    pub topic: &'a str,
    pub key: Option<&'a str>,
    pub created_at: f64,
    pub coalesce: bool,
    /// Endpoint names the dispatch was narrowed to, newline separated.
    pub route: Option<String>,
    pub head: &'a [u8],
    pub tail: Option<&'a [u8]>,
    /// Where the `data` value starts within `tail`.
    pub tail_data_offset: usize,
    pub raw: bool,
    pub headers: Option<&'a str>,
}

impl EventInsert<'_> {
    /// The body with its sequence number, and where `data` starts in it.
    pub fn body(&self, seq: i64) -> (Vec<u8>, usize) {
        match self.tail {
            None => (self.head.to_vec(), 0),
            Some(tail) => {
                let n = seq.to_string();
                let mut b = Vec::with_capacity(self.head.len() + n.len() + tail.len());
                b.extend_from_slice(self.head);
                b.extend_from_slice(n.as_bytes());
                let offset = b.len() + self.tail_data_offset;
                b.extend_from_slice(tail);
                (b, offset)
            }
        }
    }

    /// The body's length with a sequence number of `digits` digits.
    pub fn len_with(&self, digits: usize) -> usize {
        match self.tail {
            None => self.head.len(),
            Some(tail) => self.head.len() + digits + tail.len(),
        }
    }
}

/// What storing an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Stored, with this event id (a SQLite outbox's ids carry the event's rowid).
    Yes(String),
    /// Nothing stored: the body with its sequence number would be this many bytes, over the limit.
    TooLarge(usize),
    /// Nothing stored: the outbox was moved (`woosync_migrate`) to this one.
    Moved(String),
}

/// Meta keys of a move between outboxes (`woosync_migrate`).
pub const MOVED_TO: &str = "moved_to";
pub const IMPORTING_FROM: &str = "importing_from";

/// An event being moved to another outbox, with what is left to do of it.
#[derive(Debug, Clone)]
pub struct MovingEvent {
    pub rowid: i64,
    pub event_id: String,
    pub topic: String,
    pub key: Option<String>,
    pub seq: i64,
    pub created_at: f64,
    pub coalesce: bool,
    pub route: Option<String>,
    pub data_offset: usize,
    pub body: Vec<u8>,
    pub raw: bool,
    pub headers: Option<String>,
    /// Routed to endpoints already (else the target routes it).
    pub routed: bool,
    /// (endpoint name, state) of its deliveries still to do (queued, ready) or dead.
    pub deliveries: Vec<(String, i64)>,
}

/// Stores an event in a transaction of its own, statement by statement: the key's next sequence
/// number (its counter row stays locked until commit), then the event row — under an id that
/// carries its rowid where the engine finds events that way (SQLite).
pub fn store_in_steps(
    eng: &mut dyn Engine,
    e: &EventInsert<'_>,
    max_body: usize,
) -> Result<Stored> {
    eng.begin(true)?;
    let r = (|| {
        let moved = eng.meta(MOVED_TO)?;
        if !moved.is_empty() {
            return Ok(Stored::Moved(moved));
        }
        let seq = match e.key {
            Some(k) => eng.next_seq(k)?,
            None => 0,
        };
        let (mut body, offset) = e.body(seq);
        if body.len() > max_body {
            return Ok(Stored::TooLarge(body.len()));
        }
        let carried = eng
            .next_event_rowid()?
            .and_then(|r| Some((r, crate::event::with_rowid(e.event_id, r)?)))
            .filter(|_| {
                e.tail.is_none() || body.get(ENVELOPE_ID_AT) == Some(e.event_id.as_bytes())
            });
        let (event_id, rowid) = match carried {
            Some((rowid, id)) => {
                if e.tail.is_some() {
                    // The envelope names the event (`event::envelope_template`).
                    body[ENVELOPE_ID_AT].copy_from_slice(id.as_bytes());
                }
                (id, Some(rowid))
            }
            None => (e.event_id.to_string(), None),
        };
        eng.insert_event(e, &event_id, rowid, seq, &body, offset)?;
        Ok(Stored::Yes(event_id))
    })();
    match r {
        Ok(Stored::Yes(id)) => match eng.commit() {
            Ok(()) => Ok(Stored::Yes(id)),
            Err(err) => {
                eng.rollback();
                Err(err)
            }
        },
        other => {
            eng.rollback();
            other
        }
    }
}

/// An event not routed to endpoints yet.
#[derive(Debug, Clone)]
pub struct RouteRow {
    pub rowid: i64,
    pub topic: String,
    pub key: Option<String>,
    pub seq: i64,
    pub coalesce: bool,
    pub route: Option<String>,
}

/// An open (queued, ready or in flight) delivery of one endpoint and key.
#[derive(Debug, Clone)]
pub struct OpenDelivery {
    pub id: i64,
    pub state: i64,
    pub seq: i64,
    pub topic: String,
}

/// A finished attempt's consequence for its delivery.
#[derive(Debug, Clone)]
pub struct FinishRow {
    pub id: i64,
    pub state: i64,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub next_attempt_at: f64,
}

/// What a batch of finished attempts does to an endpoint (applied in order).
#[derive(Debug, Clone)]
pub enum EndpointUpdate {
    Success {
        id: i64,
        now: f64,
    },
    Failure {
        id: i64,
        error: String,
        now: f64,
    },
    /// Feeds the breaker: failures + 1, open until `now + pause` once past the threshold.
    Unhealthy {
        id: i64,
        now: f64,
        pause: f64,
    },
    Disable {
        id: i64,
        reason: String,
        now: f64,
    },
    Refused {
        id: i64,
        reason: String,
        until: f64,
        error: String,
        now: f64,
    },
}

/// An endpoint's stored secrets and settings that saving compares with.
#[derive(Debug, Clone)]
pub struct StoredEndpoint {
    pub id: i64,
    pub url: String,
    pub secret: String,
    pub prev_secret: String,
    pub prev_secret_until: f64,
    pub proxy: String,
    pub headers: String,
    pub retry_delays: String,
    pub timeout: f64,
    pub source: String,
}

/// Every setting of an endpoint as saved (secrets already sealed).
#[derive(Debug, Clone)]
pub struct EndpointWrite {
    pub url: String,
    pub secret: String,
    pub prev_secret: String,
    pub prev_secret_until: f64,
    pub topics: String,
    pub enabled: bool,
    pub rate_limit: f64,
    pub timeout: f64,
    pub proxy: String,
    pub format: String,
    pub retry_delays: String,
    pub source: String,
    pub allow_networks: String,
    pub signature: String,
    pub hash_algorithm: String,
    pub success_codes: String,
    pub user_agent: String,
    pub headers: String,
    pub wc_webhook_id: Option<i64>,
}

/// The php.ini endpoint as recorded (a changed URL re-enables it and closes its breaker).
#[derive(Debug, Clone)]
pub struct DefaultWrite {
    pub url: String,
    pub secret: String,
    pub retry_delays: String,
    pub timeout: f64,
    pub source: String,
}

/// Which finished deliveries to put back to pending.
pub enum Requeue<'a> {
    /// Delivered or dead deliveries of one event (replay / retry).
    Event(i64),
    /// Dead deliveries, of one endpoint or of all.
    Dead(Option<&'a str>),
}

/// An event of one key (privacy erasure).
#[derive(Debug, Clone)]
pub struct KeyEvent {
    pub rowid: i64,
    pub event_id: String,
    pub topic: String,
    pub created_at: f64,
    /// Not finished yet (not routed, or a delivery still open).
    pub open: bool,
}

/// Counter increments, keyed by (endpoint id, name, label).
pub type CounterDeltas = BTreeMap<crate::metrics::Key, f64>;

/// State count increments, keyed by (endpoint id, state).
pub type StatDeltas = BTreeMap<(i64, i64), i64>;

pub trait Engine: Send {
    /// How the outbox is named in messages ("outbox /path", "outbox mysql://user@host/db").
    fn label(&self) -> String;
    /// Whether deleting the newest event is forbidden (SQLite: it anchors the routing mark).
    fn keeps_newest_event(&self) -> bool;

    fn begin(&mut self, write: bool) -> Result<()>;
    fn commit(&mut self) -> Result<()>;
    fn rollback(&mut self);
    /// Unix seconds on the engine's clock.
    fn now(&mut self) -> Result<f64>;
    /// Checks, inside the sender's cycle transaction, that this process still holds the election
    /// (MySQL: the lease's fencing token); a sender that lost it must write nothing.
    fn check_fence(&mut self) -> Result<()> {
        Ok(())
    }
    /// Engines that elect the sender in the database (MySQL; SQLite elects with a lock file):
    /// this connection fences every cycle with the lease's `token`.
    fn set_fence(&mut self, _token: i64, _holder: &str) {}
    /// When the lease was last confirmed (before the confirming statement), on this host's
    /// monotonic clock; None where there is no lease.
    fn renewed_at(&self) -> Option<Instant> {
        None
    }
    /// A fence check found another process holding the lease.
    fn lost_lease(&self) -> bool {
        false
    }
    /// Lets the lease go at once (shutdown, yielding), if this connection still holds it.
    fn release_lease(&mut self) {}
    /// The engine's clock minus this host's, in seconds (0 where they are the same clock).
    fn clock_offset(&mut self) -> Result<f64> {
        Ok(0.0)
    }

    // ---- meta ----
    fn endpoints_version(&mut self) -> Result<i64>;
    fn bump_endpoints_version(&mut self) -> Result<()>;
    fn set_sender(&mut self, identity: &str, host: &str, now: f64) -> Result<()>;
    fn sender(&mut self) -> Result<(Option<String>, Option<String>)>;

    // ---- endpoints ----
    fn load_endpoints(&mut self) -> Result<Vec<EndpointRow>>;
    fn stored_endpoint(&mut self, name: &str) -> Result<Option<StoredEndpoint>>;
    /// Creates or updates every setting; re-enables it (410), closes its breaker, clears a refusal.
    fn save_endpoint(&mut self, name: &str, w: &EndpointWrite, now: f64) -> Result<()>;
    fn save_default_endpoint(&mut self, name: &str, d: &DefaultWrite, now: f64) -> Result<()>;
    /// Switches a deleted endpoint off for good (renamed `<name>#deleted-<id>`, secrets cleared).
    fn retire_endpoint(&mut self, id: i64) -> Result<()>;
    fn note_endpoint_error(&mut self, id: i64, error: &str, now: f64) -> Result<()>;
    /// (id, consecutive failures, breaker open until, refused until) of every endpoint.
    fn endpoint_health(&mut self) -> Result<Vec<(i64, i64, f64, f64)>>;
    fn update_endpoints(&mut self, updates: &[EndpointUpdate]) -> Result<()>;

    // ---- events ----
    /// Stores a dispatched event in a transaction of its own (not inside `begin`/`commit`): the
    /// key's next sequence number and the event row, or nothing when the body would exceed
    /// `max_body`. Engines may do it in fewer round trips than [`store_in_steps`].
    fn store_event(&mut self, e: &EventInsert<'_>, max_body: usize) -> Result<Stored>;
    /// The next sequence number of a key (a counter row updated in this transaction).
    fn next_seq(&mut self, key: &str) -> Result<i64>;
    /// The rowid the next event will get, where the engine finds events by the rowid their id
    /// carries (SQLite outboxes created since schema 3); None where ids are indexed instead.
    fn next_event_rowid(&mut self) -> Result<Option<i64>> {
        Ok(None)
    }
    /// Inserts the event row under `event_id` (with `rowid`: the rowid that id carries).
    fn insert_event(
        &mut self,
        e: &EventInsert<'_>,
        event_id: &str,
        rowid: Option<i64>,
        seq: i64,
        body: &[u8],
        data_offset: usize,
    ) -> Result<i64>;
    fn event_exists(&mut self, event_id: &str) -> Result<bool>;
    fn has_new_events(&mut self) -> Result<bool>;
    /// Events not routed yet, oldest first.
    fn events_to_route(&mut self, limit: usize) -> Result<Vec<RouteRow>>;
    /// Marks events routed (`unrouted`: those no endpoint took).
    fn mark_routed(&mut self, rows: &[i64], unrouted: &[i64]) -> Result<()>;
    /// (rowid, topic, key, seq, unrouted) of an event.
    fn find_event(
        &mut self,
        event_id: &str,
    ) -> Result<Option<(i64, String, Option<String>, i64, bool)>>;
    fn set_routed_again(&mut self, rowid: i64) -> Result<()>;
    fn event_detail(&mut self, event_id: &str) -> Result<Option<EventDetail>>;
    fn list_events(&mut self, f: &EventFilter) -> Result<Vec<EventSummary>>;

    // ---- deliveries ----
    fn open_deliveries_of_key(&mut self, endpoint_id: i64, key: &str) -> Result<Vec<OpenDelivery>>;
    /// Whether a delivery of (endpoint, key) is ready or in flight. This and the two below are
    /// index lookups: reading every open delivery of the key made a deep backlog on one key cost
    /// each promotion and each routed event all of it.
    fn key_busy(&mut self, endpoint_id: i64, key: &str) -> Result<bool>;
    /// The key's lowest (seq, id) queued delivery.
    fn first_queued(&mut self, endpoint_id: i64, key: &str) -> Result<Option<i64>>;
    /// The highest sequence number among the key's open deliveries, `None` when it has none.
    fn newest_open_seq(&mut self, endpoint_id: i64, key: &str) -> Result<Option<i64>>;
    fn insert_delivery(
        &mut self,
        event_rowid: i64,
        endpoint_id: i64,
        key: Option<&str>,
        seq: i64,
        state: i64,
        now: f64,
    ) -> Result<()>;
    /// Sets the state of deliveries that are in `from` (returns how many changed).
    fn set_delivery_state(&mut self, ids: &[i64], from: i64, to: i64, now: f64) -> Result<usize>;
    /// Due `ready` deliveries of an endpoint (at most `limit`), leased to `me` until `lease_until`.
    fn claim(
        &mut self,
        endpoint_id: i64,
        limit: usize,
        now: f64,
        me: &str,
        lease_until: f64,
    ) -> Result<Vec<Claimed>>;
    fn insert_attempts(&mut self, done: &[Finished]) -> Result<()>;
    /// Finishes in-flight deliveries (held by `me` where the engine fences); returns which rows
    /// changed (a row taken over meanwhile does not).
    fn finish_deliveries(&mut self, rows: &[FinishRow], me: &str, now: f64) -> Result<Vec<bool>>;
    /// A refused attempt: back to ready, not counted. Returns whether the row changed.
    fn refuse_delivery(&mut self, id: i64, error: &str, me: &str, now: f64) -> Result<bool>;
    /// Puts finished deliveries back (queued when they have a key, else ready), attempts reset;
    /// returns (endpoint, key, previous state) of each.
    fn requeue(&mut self, what: Requeue<'_>, now: f64) -> Result<Vec<(i64, Option<String>, i64)>>;
    /// Open deliveries of an endpoint become dead (it was deleted); returns (state, count).
    fn kill_open_deliveries(&mut self, endpoint_id: i64, now: f64) -> Result<Vec<(i64, i64)>>;
    /// (holder, earliest lease end) of every holder of in-flight deliveries.
    fn lease_holders(&mut self) -> Result<Vec<(String, f64)>>;
    /// In-flight deliveries of `holder` (whose lease ended before `expired_at`, if given) go back
    /// to ready with an `abandoned` attempt; returns (endpoint, count).
    fn release_leases(
        &mut self,
        holder: &str,
        expired_at: Option<f64>,
        now: f64,
        why: &str,
    ) -> Result<Vec<(i64, i64)>>;
    /// Ready deliveries of an endpoint waiting for a later retry become due now (the endpoint
    /// is back after an outage).
    fn hasten_endpoint(&mut self, endpoint_id: i64, now: f64) -> Result<usize>;
    /// Earliest `next_attempt_at` of a ready delivery of these endpoints.
    fn next_due(&mut self, endpoint_ids: &[i64]) -> Result<Option<f64>>;

    // ---- counts ----
    fn add_stats(&mut self, deltas: &StatDeltas) -> Result<()>;
    /// (endpoint id, state, n); endpoint 0 / state 6 counts unrouted events.
    fn stats(&mut self) -> Result<Vec<(i64, i64, i64)>>;
    /// Events not routed yet: how many, and the creation time of the oldest.
    fn routing_backlog(&mut self) -> Result<(i64, Option<f64>)>;
    /// Creation time of the event of the oldest open delivery.
    fn oldest_open(&mut self) -> Result<Option<f64>>;
    fn add_counters(&mut self, deltas: &CounterDeltas) -> Result<()>;
    fn counters(&mut self) -> Result<Vec<(i64, String, String, f64)>>;

    // ---- retention and erasure ----
    /// Finished events older than `before` whose deliveries are all in `states` (or unrouted
    /// ones, with `unrouted_too`), oldest first.
    fn finished_events(
        &mut self,
        before: f64,
        states: &[i64],
        unrouted_too: bool,
        limit: usize,
    ) -> Result<Vec<i64>>;
    /// Deletes events with their deliveries and attempts; returns the deleted deliveries'
    /// (endpoint, state, count) and how many of the events were unrouted.
    fn delete_events(&mut self, rowids: &[i64]) -> Result<(Vec<(i64, i64, i64)>, i64)>;
    fn events_of_key(&mut self, key: &str) -> Result<Vec<KeyEvent>>;
    fn newest_event(&mut self) -> Result<i64>;
    /// Empties an event kept in place (its body replaced, key cleared, attempts deleted).
    fn blank_event(&mut self, rowid: i64, body: &[u8], data_offset: usize) -> Result<()>;
    // ---- moving to another outbox (woosync_migrate) ----
    /// A meta value ("" when unset).
    fn meta(&mut self, k: &str) -> Result<String>;
    fn set_meta(&mut self, k: &str, v: &str) -> Result<()>;
    /// Key counters after `after` in key order, at most `limit`.
    fn key_counters(&mut self, after: &str, limit: usize) -> Result<Vec<(String, i64)>>;
    /// Raises key counters to at least these values.
    fn raise_counters(&mut self, rows: &[(String, i64)]) -> Result<()>;
    /// Events to move, oldest first: not routed yet, or with deliveries queued, ready or dead and
    /// none in flight.
    fn events_to_move(&mut self, limit: usize) -> Result<Vec<MovingEvent>>;
    /// Events still to move, those with attempts in flight included.
    fn events_left_to_move(&mut self) -> Result<i64>;
    /// Stores a moved event as it was (id, sequence, time, body, headers), not routed: its
    /// `route` says where it goes (see `outbox::route`). Returns its row id.
    fn import_event(&mut self, e: &MovingEvent) -> Result<i64>;

    /// Housekeeping outside transactions (SQLite: WAL checkpoint, incremental vacuum).
    fn maintenance(&mut self, after_purge: bool) -> Result<()>;

    /// The SQLite connection, for tests that inspect it.
    #[cfg(test)]
    fn sqlite_conn(&self) -> Option<&rusqlite::Connection> {
        None
    }
}
