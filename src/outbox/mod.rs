//! The outbox: the durable INSERT of dispatch, routing and fan-out, coalescing, per-key order,
//! claims with leases, recording attempts, retention, and the queries behind status and the log.
//!
//! Everything here is the same for every storage engine and is written once against the
//! [`Engine`] interface (engine.rs); [`sqlite`] and [`mysql`] hold only SQL and connections.
//!
//! Per-key order: every delivery row carries its event's `key` and `seq`. Of the open rows of one
//! (endpoint, key) only the head is `ready` or `inflight`; the others are `queued` until the head
//! finishes (delivered, dead or superseded), when the next one is promoted in the same transaction.
//! Claims therefore only look at `ready` rows and never scan blocked ones.
//!
//! The state counts behind `woosync_status()` (table `stats`) are kept by this code: every state
//! change below adds to a per-transaction delta that is written just before commit.

pub mod engine;
mod location;
pub mod migrate;
pub mod mysql;
mod mysql_url;
pub mod sqlite;
mod types;
mod wal_writes;

pub use location::Location;
pub use mysql_url::{MysqlUrl, SslMode};
pub use types::*;

use crate::config::{self, DefaultEndpoint, EndpointConfig};
use crate::error::{quote, Error, Result};
use crate::event;
use crate::secrets::{self, StoreKey};
use engine::{
    DefaultWrite, EndpointUpdate, EndpointWrite, Engine, FinishRow, Requeue, RouteRow, StatDeltas,
};
use std::path::Path;

/// How many times a transaction that hit a transient conflict (deadlock) is run again.
const CONFLICT_RETRIES: usize = 3;

/// One transaction: the engine plus the state-count changes made in it.
struct Tx<'a> {
    eng: &'a mut dyn Engine,
    stats: StatDeltas,
}

impl Tx<'_> {
    fn moved(&mut self, endpoint: i64, from: i64, to: i64, n: i64) {
        if from != to && n != 0 {
            *self.stats.entry((endpoint, from)).or_default() -= n;
            *self.stats.entry((endpoint, to)).or_default() += n;
        }
    }
    fn added(&mut self, endpoint: i64, state: i64, n: i64) {
        if n != 0 {
            *self.stats.entry((endpoint, state)).or_default() += n;
        }
    }
}

/// Runs `f` in a transaction (a write transaction when `write`), commits with the state counts
/// it changed, and runs it again on a transient conflict.
fn in_tx<T>(
    eng: &mut dyn Engine,
    write: bool,
    mut f: impl FnMut(&mut Tx<'_>) -> Result<T>,
) -> Result<T> {
    let mut tries = 0;
    loop {
        tries += 1;
        eng.begin(write)?;
        let mut tx = Tx {
            eng: &mut *eng,
            stats: StatDeltas::new(),
        };
        let result = f(&mut tx).and_then(|v| {
            let stats = std::mem::take(&mut tx.stats);
            if !stats.is_empty() {
                tx.eng.add_stats(&stats)?;
            }
            Ok(v)
        });
        match result.and_then(|v| eng.commit().map(|_| v)) {
            Ok(v) => return Ok(v),
            Err(e) => {
                eng.rollback();
                if matches!(e, Error::Retry(_)) && tries < CONFLICT_RETRIES {
                    continue;
                }
                return Err(e);
            }
        }
    }
}

/// An open outbox connection. Never shared across fork: the PHP layer keys it by PID.
pub struct Outbox {
    eng: Box<dyn Engine>,
    /// Endpoints as last read, and the version they were read at (dispatch validates the
    /// `endpoints` option and routing matches against them).
    endpoints_version: i64,
    endpoints: Vec<EndpointRow>,
}

impl Outbox {
    /// Opens (creating or migrating if needed) the SQLite outbox at `path`.
    pub fn open(path: &Path, role: Role) -> Result<Outbox> {
        Ok(Outbox::with_engine(Box::new(sqlite::Sqlite::open(
            path, role,
        )?)))
    }

    /// Opens the outbox at a location (a SQLite file or a MariaDB/MySQL database).
    pub fn open_at(at: &Location, role: Role) -> Result<Outbox> {
        match at {
            Location::Sqlite(p) => Outbox::open(p, role),
            Location::Mysql(u) => Ok(Outbox::with_engine(Box::new(mysql::Mysql::open(u, role)?))),
        }
    }

    fn with_engine(eng: Box<dyn Engine>) -> Outbox {
        Outbox {
            eng,
            endpoints_version: -1,
            endpoints: Vec::new(),
        }
    }

    /// The engine (the MySQL election and fencing live there).
    pub fn engine(&mut self) -> &mut dyn Engine {
        &mut *self.eng
    }

    pub fn label(&self) -> String {
        self.eng.label()
    }

    #[cfg(test)]
    pub(crate) fn conn(&self) -> &rusqlite::Connection {
        self.eng.sqlite_conn().expect("a SQLite outbox")
    }

    // ---- endpoints ----------------------------------------------------------------------

    /// Records the `default` endpoint as this process's INI describes it, when it differs from
    /// what is stored. A changed URL re-enables an endpoint disabled by a 410.
    pub fn record_default_endpoint(
        &mut self,
        d: &DefaultEndpoint,
        key: Option<&StoreKey>,
    ) -> Result<()> {
        let name = config::DEFAULT_ENDPOINT;
        in_tx(&mut *self.eng, true, |tx| {
            if let Some(cur) = tx.eng.stored_endpoint(name)? {
                let same_secret = secrets::open(key, name, &cur.secret)
                    .map(|s| s == d.secret)
                    .unwrap_or(false);
                if cur.url == d.url
                    && same_secret
                    && cur.retry_delays == d.retry_delays
                    && cur.timeout == d.timeout
                    && cur.source == d.source
                {
                    return Ok(());
                }
            }
            let now = tx.eng.now()?;
            let w = DefaultWrite {
                url: d.url.clone(),
                secret: secrets::seal(key, name, &d.secret)?,
                retry_delays: d.retry_delays.clone(),
                timeout: d.timeout,
                source: d.source.clone(),
            };
            tx.eng.save_default_endpoint(name, &w, now)?;
            tx.eng.bump_endpoints_version()
        })
    }

    /// Creates or updates a named endpoint (`woosync_endpoint_save`). Saving re-enables an endpoint
    /// disabled by a 410 and closes its breaker. A new secret keeps the previous one signing too for
    /// [`ROTATION_SECONDS`]. URLs and credential headers saved back masked keep the stored values.
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
        in_tx(&mut *self.eng, true, |tx| {
            let now = tx.eng.now()?;
            let old = tx.eng.stored_endpoint(name)?;
            let (url, proxy, headers) = match &old {
                Some(o) => {
                    let stored = config::headers_from_json(&o.headers);
                    let headers: Vec<(String, String)> = c
                        .headers
                        .iter()
                        .map(|(n, v)| {
                            let kept = stored.iter().find(|(sn, sv)| {
                                sn.eq_ignore_ascii_case(n)
                                    && &crate::redact::header(sn, sv) == v
                                    && sv != v
                            });
                            (
                                n.clone(),
                                kept.map_or_else(|| v.clone(), |(_, sv)| sv.clone()),
                            )
                        })
                        .collect();
                    (
                        crate::redact::restore(&c.url, &o.url),
                        crate::redact::restore(&c.proxy, &o.proxy),
                        headers,
                    )
                }
                None => (c.url.clone(), c.proxy.clone(), c.headers.clone()),
            };
            let old_plain = old
                .as_ref()
                .and_then(|o| secrets::open(key, name, &o.secret).ok());
            let (secret, prev, prev_until) = match (&c.secret, &old) {
                (None, Some(o)) => (o.secret.clone(), o.prev_secret.clone(), o.prev_secret_until),
                (None, None) => (String::new(), String::new(), 0.0),
                (Some(new), old) => {
                    let sealed = secrets::seal(key, name, new)?;
                    match (old, old_plain.as_deref()) {
                        (Some(o), Some(p)) if p == new.as_str() => {
                            (o.secret.clone(), o.prev_secret.clone(), o.prev_secret_until)
                        }
                        (Some(o), Some(p)) if !p.is_empty() && !new.is_empty() => {
                            (sealed, o.secret.clone(), now + ROTATION_SECONDS)
                        }
                        _ => (sealed, String::new(), 0.0),
                    }
                }
            };
            let w = EndpointWrite {
                url,
                secret,
                prev_secret: prev,
                prev_secret_until: prev_until,
                topics: c.topics.join(","),
                enabled: c.enabled,
                rate_limit: c.rate_limit,
                timeout: c.timeout,
                proxy,
                format: c.format.as_str().to_string(),
                retry_delays: c.retry_delays.clone(),
                source: c.source.clone(),
                allow_networks: c.allow_networks_text(),
                signature: c.signature.as_str().to_string(),
                hash_algorithm: c.hash_algorithm.as_str().to_string(),
                success_codes: c.success_codes.to_text(),
                user_agent: c.user_agent.clone(),
                headers: if headers.is_empty() {
                    String::new()
                } else {
                    config::headers_to_json(&headers)
                },
                wc_webhook_id: c.wc_webhook_id,
            };
            tx.eng.save_endpoint(name, &w, now)?;
            tx.eng.bump_endpoints_version()
        })
    }

    /// Deletes a named endpoint. Its open deliveries become dead ("endpoint deleted"); finished
    /// ones stay in the log. Returns false when there was no such endpoint.
    pub fn delete_endpoint(&mut self, name: &str) -> Result<bool> {
        if name == config::DEFAULT_ENDPOINT {
            return Err(Error::input("the endpoint \"default\" is configured through php.ini; clear woosync.endpoint instead"));
        }
        in_tx(&mut *self.eng, true, |tx| {
            let Some(ep) = tx.eng.stored_endpoint(name)? else {
                return Ok(false);
            };
            let now = tx.eng.now()?;
            for (state, n) in tx.eng.kill_open_deliveries(ep.id, now)? {
                tx.moved(ep.id, state, state::DEAD, n);
            }
            tx.eng.retire_endpoint(ep.id)?;
            tx.eng.bump_endpoints_version()?;
            Ok(true)
        })
    }

    /// All endpoints as stored.
    pub fn endpoints(&mut self) -> Result<Vec<EndpointRow>> {
        in_tx(&mut *self.eng, false, |tx| tx.eng.load_endpoints())
    }

    /// The endpoints version counter (bumped on every endpoint change).
    pub fn endpoints_version(&mut self) -> Result<i64> {
        in_tx(&mut *self.eng, false, |tx| tx.eng.endpoints_version())
    }

    /// Records a problem that keeps the sender from using an endpoint (e.g. a sealed secret it
    /// cannot open) as the endpoint's last error.
    pub fn note_endpoint_error(&mut self, endpoint_id: i64, error: &str) -> Result<()> {
        in_tx(&mut *self.eng, true, |tx| {
            let now = tx.eng.now()?;
            tx.eng.note_endpoint_error(endpoint_id, error, now)
        })
    }

    /// (endpoint id, consecutive failures, breaker open until, refused until) of every endpoint.
    pub fn endpoint_health(&mut self) -> Result<Vec<(i64, i64, f64, f64)>> {
        in_tx(&mut *self.eng, false, |tx| tx.eng.endpoint_health())
    }

    // ---- dispatch -----------------------------------------------------------------------

    /// Stores one event durably (committed before return). Returns the event id.
    pub fn enqueue(&mut self, ev: &NewEvent<'_>) -> Result<String> {
        let event_id = event::new_event_id();
        if let Some(names) = &ev.endpoints {
            let Outbox {
                eng,
                endpoints_version,
                endpoints,
            } = self;
            in_tx(&mut **eng, false, |tx| {
                let version = tx.eng.endpoints_version()?;
                if version != *endpoints_version {
                    *endpoints = tx.eng.load_endpoints()?;
                    *endpoints_version = version;
                }
                Ok(())
            })?;
            for n in names {
                if !self.endpoints.iter().any(|e| &e.name == n) {
                    let known: Vec<&str> = self.endpoints.iter().map(|e| e.name.as_str()).collect();
                    return Err(Error::input(format!(
                        "unknown endpoint {} in option \"endpoints\"; known endpoints: {}",
                        quote(n),
                        known.join(", ")
                    )));
                }
            }
        }
        // The dispatching host's clock: the event's own timestamp (leases and retries use the
        // engine's clock).
        let created_at = event::now();
        let template = match ev.raw_body {
            Some(_) => None,
            None => Some(event::envelope_template(
                &event_id, ev.topic, created_at, ev.key, ev.data,
            )),
        };
        let insert = engine::EventInsert {
            event_id: &event_id,
            topic: ev.topic,
            key: ev.key,
            created_at,
            coalesce: ev.coalesce,
            route: ev.endpoints.as_ref().map(|n| n.join("\n")),
            head: match (&template, ev.raw_body) {
                (Some(t), _) => t.head.as_bytes(),
                (None, Some(raw)) => raw,
                (None, None) => b"",
            },
            tail: template.as_ref().map(|t| t.tail.as_bytes()),
            tail_data_offset: template.as_ref().map_or(0, |t| t.tail_data_offset),
            raw: ev.raw_body.is_some(),
            headers: ev.headers.as_deref(),
        };
        // Only the event row (and the key's counter) is written here; the sender routes it to
        // endpoints (deliveries) in its own transaction, off the request path.
        let mut tries = 0;
        loop {
            tries += 1;
            match self.eng.store_event(&insert, ev.max_body_bytes) {
                Ok(engine::Stored::Yes(stored_as)) => return Ok(stored_as),
                Ok(engine::Stored::TooLarge(len)) => {
                    return Err(Error::input(format!(
                        "payload too large: the encoded body is {len} bytes, woosync.max_payload_bytes is {}; send less data (e.g. ids instead of whole objects)",
                        ev.max_body_bytes
                    )))
                }
                Ok(engine::Stored::Moved(to)) => return Err(Error::Moved(to)),
                Err(Error::Retry(why)) => {
                    // The connection was lost or the transaction chosen as a deadlock victim. A
                    // commit whose acknowledgement was lost is not stored twice: look it up
                    // (MySQL only, which stores the id made here; SQLite never asks to retry).
                    match self.eng.event_exists(&event_id) {
                        Ok(true) => return Ok(event_id),
                        Ok(false) if tries < CONFLICT_RETRIES => {}
                        Ok(false) => return Err(Error::storage(why)),
                        // Cannot even look (the server is gone): say so.
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether this outbox's sender must claim nothing: it was moved elsewhere, or a move into
    /// it is not finished.
    pub fn paused(&mut self) -> Result<bool> {
        in_tx(&mut *self.eng, false, |tx| {
            Ok(!tx.eng.meta(engine::MOVED_TO)?.is_empty()
                || !tx.eng.meta(engine::IMPORTING_FROM)?.is_empty())
        })
    }

    /// The idle sender's look for new events (one indexed read, no transaction around it).
    pub fn poll_new_events(&mut self) -> Result<bool> {
        self.eng.has_new_events()
    }

    /// Whether events were stored that the sender has not routed yet.
    pub fn has_new_events(&mut self) -> Result<bool> {
        in_tx(&mut *self.eng, false, |tx| tx.eng.has_new_events())
    }

    /// Routes events stored since the last call (in commit order) to the endpoints that match
    /// them: one delivery each, coalescing where asked; events nothing matches become unrouted.
    /// Returns how many events were routed.
    pub fn route_new(&mut self, limit: usize) -> Result<usize> {
        let Outbox {
            eng,
            endpoints_version,
            endpoints,
        } = self;
        in_tx(&mut **eng, true, |tx| {
            route(tx, limit, endpoints_version, endpoints)
        })
    }

    /// Claims up to `limit` due deliveries per endpoint: ready → inflight with a lease.
    pub fn claim(
        &mut self,
        wants: &[(i64, usize, f64)],
        me: &str,
        now: f64,
    ) -> Result<Vec<Claimed>> {
        in_tx(&mut *self.eng, true, |tx| {
            claim(tx, wants, usize::MAX, me, Some(now))
        })
    }

    /// Records finished attempts and their consequences in one transaction.
    pub fn record(&mut self, done: &[Finished], me: &str) -> Result<()> {
        if done.is_empty() {
            return Ok(());
        }
        in_tx(&mut *self.eng, true, |tx| record(tx, done, me))
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
        let Outbox {
            eng,
            endpoints_version,
            endpoints,
        } = self;
        in_tx(&mut **eng, true, |tx| {
            tx.eng.check_fence()?;
            record(tx, done, me)?;
            let routed = if tx.eng.has_new_events()? {
                route(tx, route_limit, endpoints_version, endpoints)?
            } else {
                0
            };
            let version = tx.eng.endpoints_version()?;
            let claimed = if total > 0 {
                claim(tx, wants, total, me, None)?
            } else {
                Vec::new()
            };
            Ok((claimed, version, routed))
        })
    }

    /// Returns leased deliveries to `ready` when their holder is dead or their lease expired.
    /// `alive` tells whether a holder identity still runs (engines that cannot tell answer true,
    /// so only expired leases are taken). Returns how many were taken over.
    pub fn take_over_leases(
        &mut self,
        me: &str,
        at: Option<f64>,
        alive: &dyn Fn(&str) -> bool,
    ) -> Result<usize> {
        let holders = in_tx(&mut *self.eng, false, |tx| tx.eng.lease_holders())?;
        let mut taken = 0;
        for (holder, min_lease) in holders {
            if holder == me {
                continue;
            }
            let dead = !alive(&holder);
            taken += in_tx(&mut *self.eng, true, |tx| {
                let now = match at {
                    Some(t) => t,
                    None => tx.eng.now()?,
                };
                if !dead && min_lease > now {
                    return Ok(0);
                }
                let why = if dead {
                    "holder process died during the attempt"
                } else {
                    "lease expired"
                };
                let expired = if dead { None } else { Some(now) };
                let mut n = 0;
                for (ep, count) in tx.eng.release_leases(&holder, expired, now, why)? {
                    tx.moved(ep, state::INFLIGHT, state::READY, count);
                    n += count as usize;
                }
                Ok(n)
            })?;
        }
        Ok(taken)
    }

    /// Earliest `next_attempt_at` of a ready delivery of the given endpoints.
    pub fn next_due(&mut self, endpoint_ids: &[i64]) -> Result<Option<f64>> {
        in_tx(&mut *self.eng, false, |tx| tx.eng.next_due(endpoint_ids))
    }

    /// Housekeeping between cycles (SQLite: WAL checkpoint).
    pub fn checkpoint(&mut self) -> Result<()> {
        self.eng.maintenance(false)
    }

    /// Records which process is the sender now (`<boot id>:<pid>:<start time>` and the host name).
    pub fn set_sender(&mut self, identity: &str) -> Result<()> {
        let host = crate::fork::host_name();
        in_tx(&mut *self.eng, true, |tx| {
            let now = tx.eng.now()?;
            tx.eng.set_sender(identity, &host, now)
        })
    }

    // ---- requeue, retention, erasure ----------------------------------------------------

    /// Puts a dead or delivered event back to pending (same id); routes an unrouted one.
    /// Returns None when the id is unknown, else whether anything was requeued.
    pub fn retry_event(&mut self, event_id: &str) -> Result<Option<bool>> {
        in_tx(&mut *self.eng, true, |tx| {
            let Some((rowid, topic, key, seq, unrouted)) = tx.eng.find_event(event_id)? else {
                return Ok(None);
            };
            let now = tx.eng.now()?;
            let mut changed = 0;
            if unrouted {
                let eps = tx.eng.load_endpoints()?;
                for e in eps
                    .iter()
                    .filter(|e| e.routes(&topic) && e.wc_webhook_id.is_none())
                {
                    insert_delivery(tx, rowid, e.id, key.as_deref(), seq, None, now)?;
                    changed += 1;
                }
                if changed > 0 {
                    tx.eng.set_routed_again(rowid)?;
                    tx.added(0, state::UNROUTED, -1);
                }
            } else {
                changed = requeue(tx, Requeue::Event(rowid), now)?;
            }
            Ok(Some(changed > 0))
        })
    }

    /// Requeues every dead delivery (of one endpoint, or all). Returns how many.
    pub fn retry_dead(&mut self, endpoint: Option<&str>) -> Result<usize> {
        in_tx(&mut *self.eng, true, |tx| {
            let now = tx.eng.now()?;
            requeue(tx, Requeue::Dead(endpoint), now)
        })
    }

    /// Deletes finished events (delivered, dead, superseded, unrouted) older than `older_than_days`,
    /// with their deliveries and attempts, in short transactions of `batch` events. Returns how many.
    pub fn purge(&mut self, older_than_days: f64, batch: usize) -> Result<usize> {
        self.purge_where(
            older_than_days,
            &[state::DELIVERED, state::DEAD, state::SUPERSEDED],
            true,
            batch,
            usize::MAX,
        )
    }

    /// Retention pass (sender): delivered and superseded events after `retention_days`, dead and
    /// unrouted ones after 30 days; at most `max` events per call, then the engine's housekeeping.
    pub fn retain(&mut self, retention_days: f64, max: usize) -> Result<usize> {
        let mut n = self.purge_where(
            retention_days,
            &[state::DELIVERED, state::SUPERSEDED],
            false,
            200,
            max,
        )?;
        if n < max {
            n += self.purge_where(
                config::DEAD_RETENTION_DAYS,
                &[state::DELIVERED, state::DEAD, state::SUPERSEDED],
                true,
                200,
                max - n,
            )?;
        }
        if n > 0 {
            let _ = self.eng.maintenance(true);
        }
        Ok(n)
    }

    fn purge_where(
        &mut self,
        older_than_days: f64,
        finished: &[i64],
        unrouted_too: bool,
        batch: usize,
        max: usize,
    ) -> Result<usize> {
        let mut total = 0;
        while total < max {
            let n = in_tx(&mut *self.eng, true, |tx| {
                let before = tx.eng.now()? - older_than_days * 86_400.0;
                let ids = tx.eng.finished_events(
                    before,
                    finished,
                    unrouted_too,
                    batch.min(max - total),
                )?;
                delete_events(tx, &ids)?;
                Ok(ids.len())
            })?;
            total += n;
            if n < batch {
                break;
            }
        }
        Ok(total)
    }

    /// Privacy erasure of one ordering key (`customer:42`): deletes its finished events (with
    /// their deliveries and attempts) and returns (deleted, still pending). Pending events are kept
    /// until delivered. Where the engine anchors routing on the newest event (SQLite), that event,
    /// if it is one of them and finished, has its body replaced by an empty one and its key cleared.
    pub fn erase_key(&mut self, key: &str) -> Result<(usize, usize)> {
        in_tx(&mut *self.eng, true, |tx| {
            let rows = tx.eng.events_of_key(key)?;
            let newest = if tx.eng.keeps_newest_event() {
                tx.eng.newest_event()?
            } else {
                -1
            };
            let (mut deleted, mut pending) = (0, 0);
            for ev in rows {
                if ev.open {
                    pending += 1;
                    continue;
                }
                if ev.rowid == newest {
                    let env = event::build_envelope(
                        &ev.event_id,
                        &ev.topic,
                        ev.created_at,
                        None,
                        0,
                        "null",
                    );
                    tx.eng
                        .blank_event(ev.rowid, env.body.as_bytes(), env.data_offset)?;
                } else {
                    delete_events(tx, &[ev.rowid])?;
                }
                deleted += 1;
            }
            Ok((deleted, pending))
        })
    }

    // ---- status and the log -------------------------------------------------------------

    /// Number of deliveries not yet delivered, dead or superseded (plus events not routed yet).
    pub fn pending(&mut self) -> Result<i64> {
        in_tx(&mut *self.eng, false, |tx| {
            let open: i64 = tx
                .eng
                .stats()?
                .iter()
                .filter(|(_, s, _)| *s < state::DELIVERED)
                .map(|(_, _, n)| n)
                .sum();
            Ok(open + tx.eng.routing_backlog()?.0)
        })
    }

    /// Counts (maintained, O(1)), oldest pending age and endpoint health, from one snapshot.
    pub fn status(&mut self) -> Result<Status> {
        in_tx(&mut *self.eng, false, |tx| {
            let mut st = Status::default();
            let eps = tx.eng.load_endpoints()?;
            let mut per: std::collections::HashMap<i64, [i64; 6]> = Default::default();
            for (ep, s, n) in tx.eng.stats()? {
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
            let (routing, oldest_new) = tx.eng.routing_backlog()?;
            st.routing = routing.max(0);
            let oldest_open = tx.eng.oldest_open()?;
            st.oldest_pending_at = match (oldest_open, oldest_new) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let (sender, sender_host) = tx.eng.sender()?;
            st.sender = sender;
            st.sender_host = sender_host;
            let some = |v: String| (!v.is_empty()).then_some(v);
            st.moved_to = some(tx.eng.meta(engine::MOVED_TO)?);
            st.importing_from = some(tx.eng.meta(engine::IMPORTING_FROM)?);
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
            Ok(st)
        })
    }

    /// One event with its deliveries and attempts, or None.
    pub fn event(&mut self, event_id: &str) -> Result<Option<EventDetail>> {
        in_tx(&mut *self.eng, false, |tx| tx.eng.event_detail(event_id))
    }

    /// Deliveries (one row per event and endpoint; unrouted events once), newest first.
    pub fn events(&mut self, f: &EventFilter) -> Result<Vec<EventSummary>> {
        in_tx(&mut *self.eng, false, |tx| tx.eng.list_events(f))
    }

    /// Every metrics counter: (endpoint id, name, label, value).
    pub fn counters(&mut self) -> Result<Vec<(i64, String, String, f64)>> {
        in_tx(&mut *self.eng, false, |tx| tx.eng.counters())
    }
}

// ---- the shared logic ---------------------------------------------------------------------

/// Routes events stored since the last routing pass (see [`Outbox::route_new`]).
fn route(
    tx: &mut Tx<'_>,
    limit: usize,
    endpoints_version: &mut i64,
    endpoints: &mut Vec<EndpointRow>,
) -> Result<usize> {
    let rows: Vec<RouteRow> = tx.eng.events_to_route(limit)?;
    if rows.is_empty() {
        return Ok(0);
    }
    let version = tx.eng.endpoints_version()?;
    if version != *endpoints_version {
        *endpoints = tx.eng.load_endpoints()?;
        *endpoints_version = version;
    }
    let now = tx.eng.now()?;
    let mut unrouted = Vec::new();
    for r in &rows {
        if let Some(entries) = r.route.as_deref().filter(|x| migrate::is_exact_route(x)) {
            // An event moved from another outbox: to the same endpoints as there, dead ones dead.
            let mut routed = 0;
            for entry in entries.split('\n') {
                let (dead, name) = match entry.strip_prefix(migrate::DEAD) {
                    Some(n) => (true, n),
                    None => (false, entry.strip_prefix(migrate::OPEN).unwrap_or(entry)),
                };
                let Some(e) = endpoints.iter().find(|e| e.name == name) else {
                    continue;
                };
                if dead {
                    tx.eng.insert_delivery(
                        r.rowid,
                        e.id,
                        r.key.as_deref(),
                        r.seq,
                        state::DEAD,
                        now,
                    )?;
                    tx.added(e.id, state::DEAD, 1);
                } else {
                    insert_delivery(tx, r.rowid, e.id, r.key.as_deref(), r.seq, None, now)?;
                }
                routed += 1;
            }
            if routed == 0 {
                unrouted.push(r.rowid);
            }
            continue;
        }
        let names: Option<Vec<&str>> = r.route.as_deref().map(|x| x.split('\n').collect());
        let mut routed = 0;
        for e in endpoints.iter().filter(|e| e.routes(&r.topic)) {
            match names.as_ref() {
                Some(n) if !n.contains(&e.name.as_str()) => continue,
                // An endpoint mirroring a WooCommerce webhook gets only the events dispatched to
                // it by name (its webhook's own deliveries), never the general fan-out.
                None if e.wc_webhook_id.is_some() => continue,
                _ => {}
            }
            insert_delivery(
                tx,
                r.rowid,
                e.id,
                r.key.as_deref(),
                r.seq,
                r.coalesce.then_some(r.topic.as_str()),
                now,
            )?;
            routed += 1;
        }
        if routed == 0 {
            unrouted.push(r.rowid);
        }
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.rowid).collect();
    tx.eng.mark_routed(&ids, &unrouted)?;
    tx.added(0, state::UNROUTED, unrouted.len() as i64);
    Ok(rows.len())
}

/// Inserts one delivery: `ready` when it heads its key's queue, else `queued`. With
/// `coalesce_topic`, older not-in-flight open deliveries of the same key, topic and endpoint are
/// superseded first.
fn insert_delivery(
    tx: &mut Tx<'_>,
    event_rowid: i64,
    endpoint_id: i64,
    key: Option<&str>,
    seq: i64,
    coalesce_topic: Option<&str>,
    now: f64,
) -> Result<()> {
    let mut blocked = false;
    let mut superseded = 0;
    if let (Some(k), None) = (key, coalesce_topic) {
        // Without coalescing only the newest open sequence matters (not every open delivery).
        let newest = tx.eng.newest_open_seq(endpoint_id, k)?;
        blocked = newest.is_some();
        if newest.is_some_and(|n| n > seq) {
            blocked = take_head_from_newer(tx, endpoint_id, k, seq, now)?;
        }
    } else if let Some(k) = key {
        let open = tx.eng.open_deliveries_of_key(endpoint_id, k)?;
        let mut remaining = open.len();
        if let Some(topic) = coalesce_topic {
            for from in [state::QUEUED, state::READY] {
                let ids: Vec<i64> = open
                    .iter()
                    .filter(|d| d.state == from && d.topic == topic)
                    .map(|d| d.id)
                    .collect();
                if !ids.is_empty() {
                    let n = tx
                        .eng
                        .set_delivery_state(&ids, from, state::SUPERSEDED, now)?;
                    tx.moved(endpoint_id, from, state::SUPERSEDED, n as i64);
                    superseded += n;
                    remaining -= n;
                }
            }
        }
        blocked = remaining > 0;
        if blocked && open.iter().any(|d| d.seq > seq) {
            blocked = take_head_from_newer(tx, endpoint_id, k, seq, now)?;
        }
    }
    let st = if blocked { state::QUEUED } else { state::READY };
    tx.eng
        .insert_delivery(event_rowid, endpoint_id, key, seq, st, now)?;
    tx.added(endpoint_id, st, 1);
    if superseded > 0 {
        if let Some(k) = key {
            promote(tx, endpoint_id, k, now)?;
        }
    }
    Ok(())
}

/// Normally a new event is its key's newest. An older one arriving after newer ones (moved from
/// another outbox) takes the head from a newer one that has not started. Returns whether the new
/// delivery must wait (`queued`).
fn take_head_from_newer(
    tx: &mut Tx<'_>,
    endpoint_id: i64,
    key: &str,
    seq: i64,
    now: f64,
) -> Result<bool> {
    let live: Vec<_> = tx.eng.open_deliveries_of_key(endpoint_id, key)?;
    if !live.iter().any(|d| d.state == state::INFLIGHT) {
        if let Some(head) = live.iter().find(|d| d.state == state::READY && d.seq > seq) {
            let n = tx
                .eng
                .set_delivery_state(&[head.id], state::READY, state::QUEUED, now)?;
            tx.moved(endpoint_id, state::READY, state::QUEUED, n as i64);
            return Ok(live.iter().any(|d| d.seq < seq));
        }
    }
    Ok(true)
}

/// Makes the lowest-sequence queued delivery of (endpoint, key) ready when nothing of that key
/// is ready or in flight.
fn promote(tx: &mut Tx<'_>, endpoint_id: i64, key: &str, now: f64) -> Result<()> {
    if tx.eng.key_busy(endpoint_id, key)? {
        return Ok(());
    }
    if let Some(head) = tx.eng.first_queued(endpoint_id, key)? {
        let n = tx
            .eng
            .set_delivery_state(&[head], state::QUEUED, state::READY, now)?;
        tx.moved(endpoint_id, state::QUEUED, state::READY, n as i64);
    }
    Ok(())
}

/// Claims due deliveries: per endpoint at most its limit, at most `total` in all. `now` defaults
/// to the engine's clock.
fn claim(
    tx: &mut Tx<'_>,
    wants: &[(i64, usize, f64)],
    total: usize,
    me: &str,
    now: Option<f64>,
) -> Result<Vec<Claimed>> {
    let now = match now {
        Some(n) => n,
        None => tx.eng.now()?,
    };
    let mut out: Vec<Claimed> = Vec::new();
    for &(endpoint_id, limit, lease_secs) in wants {
        let limit = limit.min(total.saturating_sub(out.len()));
        if limit == 0 {
            continue;
        }
        let rows = tx
            .eng
            .claim(endpoint_id, limit, now, me, now + lease_secs)?;
        tx.moved(
            endpoint_id,
            state::READY,
            state::INFLIGHT,
            rows.len() as i64,
        );
        out.extend(rows);
    }
    Ok(out)
}

/// "HTTP 503: text", "timeout: text", ...: how a failed attempt is summed up.
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

/// Records finished attempts: the attempt rows, the metrics counters, each delivery's new
/// state, the endpoints' health (success, failure, breaker, 410, refused) and the promotion of
/// the next event of each key whose head finished.
fn record(tx: &mut Tx<'_>, done: &[Finished], me: &str) -> Result<()> {
    if done.is_empty() {
        return Ok(());
    }
    let now = tx.eng.now()?;
    let (skipped, done): (Vec<Finished>, Vec<Finished>) = done
        .iter()
        .cloned()
        .partition(|f| matches!(f.decision, Decision::NotAttempted));
    for f in &skipped {
        let why = "not attempted: the sender was not sure it still held the election";
        if tx.eng.refuse_delivery(f.delivery_id, why, me, now)? {
            tx.moved(f.endpoint_id, state::INFLIGHT, state::READY, 1);
        }
    }
    if done.is_empty() {
        return Ok(());
    }
    let done = &done[..];
    tx.eng.insert_attempts(done)?;
    tx.eng.add_counters(&crate::metrics::deltas(done))?;
    let mut rows: Vec<FinishRow> = Vec::with_capacity(done.len());
    let mut finished: Vec<&Finished> = Vec::with_capacity(done.len());
    let mut updates: Vec<EndpointUpdate> = Vec::new();
    for f in done {
        let summary = describe(f);
        if let Decision::Refused(reason) = &f.decision {
            // Back to ready (the endpoint's pause holds it, so allowing the address lets it go at
            // once) without counting the attempt.
            if tx.eng.refuse_delivery(f.delivery_id, &summary, me, now)? {
                tx.moved(f.endpoint_id, state::INFLIGHT, state::READY, 1);
                updates.push(EndpointUpdate::Refused {
                    id: f.endpoint_id,
                    reason: reason.clone(),
                    until: now + crate::delivery::REFUSED_PAUSE,
                    error: summary,
                    now,
                });
            }
            continue;
        }
        let (new_state, next_at) = match &f.decision {
            Decision::Delivered => (state::DELIVERED, now),
            Decision::RetryIn(d) => (state::READY, now + d),
            Decision::Dead
            | Decision::DeadAndDisable(_)
            | Decision::Refused(_)
            | Decision::NotAttempted => (state::DEAD, now),
        };
        rows.push(FinishRow {
            id: f.delivery_id,
            state: new_state,
            last_status: f.http_status,
            last_error: (!matches!(f.decision, Decision::Delivered)).then_some(summary),
            next_attempt_at: next_at,
        });
        finished.push(f);
    }
    let changed = tx.eng.finish_deliveries(&rows, me, now)?;
    // Endpoints whose success is already written in this batch with no failure since.
    let mut healthy: Vec<i64> = Vec::new();
    let mut heads: Vec<(i64, String)> = Vec::new();
    let mut disabled = false;
    // Endpoints back after an outage: their waiting deliveries are due now.
    let mut recovered: Vec<i64> = Vec::new();
    for ((f, row), ok) in finished.iter().zip(&rows).zip(changed) {
        if !ok {
            // The lease was taken over meanwhile; the attempt stays in the log only.
            continue;
        }
        tx.moved(f.endpoint_id, state::INFLIGHT, row.state, 1);
        if matches!(f.decision, Decision::Delivered) {
            if f.after_outage && !recovered.contains(&f.endpoint_id) {
                recovered.push(f.endpoint_id);
            }
            if !healthy.contains(&f.endpoint_id) {
                updates.push(EndpointUpdate::Success {
                    id: f.endpoint_id,
                    now,
                });
                healthy.push(f.endpoint_id);
            }
        } else {
            healthy.retain(|id| *id != f.endpoint_id);
            updates.push(EndpointUpdate::Failure {
                id: f.endpoint_id,
                error: row.last_error.clone().unwrap_or_default(),
                now,
            });
            if f.endpoint_failure {
                updates.push(EndpointUpdate::Unhealthy {
                    id: f.endpoint_id,
                    now,
                    pause: f.breaker_pause,
                });
            }
        }
        if let Decision::DeadAndDisable(reason) = &f.decision {
            updates.push(EndpointUpdate::Disable {
                id: f.endpoint_id,
                reason: reason.clone(),
                now,
            });
            disabled = true;
        }
        if row.state != state::READY {
            if let Some(k) = &f.key {
                let head = (f.endpoint_id, k.clone());
                if !heads.contains(&head) {
                    heads.push(head);
                }
            }
        }
    }
    if !updates.is_empty() {
        tx.eng.update_endpoints(&updates)?;
    }
    if disabled {
        tx.eng.bump_endpoints_version()?;
    }
    for id in recovered {
        tx.eng.hasten_endpoint(id, now)?;
    }
    for (endpoint_id, key) in heads {
        promote(tx, endpoint_id, &key, now)?;
    }
    Ok(())
}

/// Puts finished deliveries back and promotes each affected key's head. Returns how many.
fn requeue(tx: &mut Tx<'_>, what: Requeue<'_>, now: f64) -> Result<usize> {
    let affected = tx.eng.requeue(what, now)?;
    let mut keys: Vec<(i64, String)> = Vec::new();
    for (endpoint_id, key, old) in &affected {
        let to = if key.is_some() {
            state::QUEUED
        } else {
            state::READY
        };
        tx.moved(*endpoint_id, *old, to, 1);
        if let Some(k) = key {
            keys.push((*endpoint_id, k.clone()));
        }
    }
    keys.sort();
    keys.dedup();
    for (e, k) in keys {
        promote(tx, e, &k, now)?;
    }
    Ok(affected.len())
}

/// Deletes events with their deliveries and attempts, and takes them out of the counts.
fn delete_events(tx: &mut Tx<'_>, rowids: &[i64]) -> Result<()> {
    if rowids.is_empty() {
        return Ok(());
    }
    let (deliveries, unrouted) = tx.eng.delete_events(rowids)?;
    for (endpoint_id, st, n) in deliveries {
        tx.added(endpoint_id, st, -n);
    }
    tx.added(0, state::UNROUTED, -unrouted);
    Ok(())
}

#[cfg(test)]
mod tests;

/// Every stored setting of an endpoint as it would be saved again (secrets stay sealed).
pub(crate) fn endpoint_write(e: &EndpointRow) -> EndpointWrite {
    EndpointWrite {
        url: e.url.clone(),
        secret: e.secret.clone(),
        prev_secret: e.prev_secret.clone(),
        prev_secret_until: e.prev_secret_until,
        topics: e.topics.join(","),
        enabled: e.enabled,
        rate_limit: e.rate_limit,
        timeout: e.timeout,
        proxy: e.proxy.clone(),
        format: e.format.as_str().to_string(),
        retry_delays: e.retry_delays.clone(),
        source: e.source.clone(),
        allow_networks: e.allow_networks.clone(),
        signature: e.signature.as_str().to_string(),
        hash_algorithm: e.hash_algorithm.as_str().to_string(),
        success_codes: e.success_codes.to_text(),
        user_agent: e.user_agent.clone(),
        headers: if e.headers.is_empty() {
            String::new()
        } else {
            config::headers_to_json(&e.headers)
        },
        wc_webhook_id: e.wc_webhook_id,
    }
}
