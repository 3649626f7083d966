//! Moving an outbox to another (`woosync_migrate`): SQLite file ↔ MariaDB/MySQL tables, or file
//! to file. Every step can be interrupted and run again; each call moves one batch.
//!
//! 1. The target is marked `importing_from`: its sender routes but claims nothing until the move
//!    is done, so an event dispatched meanwhile never overtakes an older one of its key.
//! 2. Endpoints the target lacks are copied (sealed secrets as they are: the same `woosync.key`
//!    opens them).
//! 3. The source is frozen in one write transaction: first marked `moved_to` (dispatches in
//!    progress finish first, later ones wait), then every key counter is carried to the target
//!    (raised to at least the source's). From the commit on, a dispatch into the source is stored
//!    in the target instead, with the next sequence number of its key, and the source's sender
//!    claims nothing new.
//! 4. Events move in batches, oldest first: into the target (with a route that sends them to the
//!    same endpoints as before, dead ones dead, or unrouted as they were), then out of the source.
//!    An event found in the target already (an interrupted batch) is only deleted from the source.
//!    Delivered history stays in the source.
//! 5. When nothing is left in the source (attempts in flight there are waited for), the target's
//!    mark is cleared and its sender delivers.

use super::engine::{MovingEvent, IMPORTING_FROM, MOVED_TO};
use super::{delete_events, in_tx, state, Outbox};
use crate::error::{Error, Result};

/// Route entries of a moved event: deliver to this endpoint / record it dead there.
pub const OPEN: &str = "=";
pub const DEAD: &str = "dead:";

/// Whether a stored route is a moved event's (exact endpoints) rather than a dispatch's.
pub fn is_exact_route(route: &str) -> bool {
    route
        .split('\n')
        .any(|e| e.starts_with(OPEN) || e.starts_with(DEAD))
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Endpoints copied to the target by this call.
    pub endpoints: usize,
    /// Key counters carried (when the source was frozen by this call).
    pub keys: usize,
    /// Events moved by this call.
    pub moved: usize,
    /// Events left in the source (attempts in flight there included).
    pub remaining: i64,
    pub done: bool,
}

/// One step of moving `src` (named `from`) to `dst` (named `to`, as it is stored in the source's
/// `moved_to`): at most `limit` events.
pub fn step(
    src: &mut Outbox,
    dst: &mut Outbox,
    from: &str,
    to: &str,
    limit: usize,
) -> Result<Report> {
    let mut report = Report::default();
    let moved_to = in_tx(&mut *src.eng, false, |tx| tx.eng.meta(MOVED_TO))?;
    if !moved_to.is_empty() && moved_to != to {
        return Err(Error::input(format!(
            "this outbox was moved to {} already; move from there",
            super::MysqlUrl::mask_text(&moved_to)
        )));
    }
    // 1. Mark the target; a target that was itself moved to this source (moving back) is
    // opened again.
    in_tx(&mut *dst.eng, true, |tx| {
        if tx.eng.meta(MOVED_TO)? == from {
            tx.eng.set_meta(MOVED_TO, "")?;
        }
        if tx.eng.meta(IMPORTING_FROM)?.is_empty() {
            tx.eng.set_meta(IMPORTING_FROM, from)?;
            tx.eng.bump_endpoints_version()?;
        }
        Ok(())
    })?;
    // 2. Endpoints.
    let theirs: Vec<String> = dst.endpoints()?.into_iter().map(|e| e.name).collect();
    for e in src.endpoints()? {
        if e.name.contains("#deleted-") || theirs.contains(&e.name) {
            continue;
        }
        in_tx(&mut *dst.eng, true, |tx| {
            let now = tx.eng.now()?;
            tx.eng
                .save_endpoint(&e.name, &super::endpoint_write(&e), now)?;
            tx.eng.bump_endpoints_version()
        })?;
        report.endpoints += 1;
    }
    // 3. Freeze the source and carry the counters.
    if moved_to.is_empty() {
        let Outbox { eng, .. } = src;
        report.keys = in_tx(&mut **eng, true, |tx| {
            tx.eng.set_meta(MOVED_TO, to)?;
            tx.eng.bump_endpoints_version()?;
            let mut after = String::new();
            let mut n = 0;
            loop {
                let page = tx.eng.key_counters(&after, 1000)?;
                let Some(last) = page.last() else { break };
                after = last.0.clone();
                n += page.len();
                in_tx(&mut *dst.eng, true, |t2| t2.eng.raise_counters(&page))?;
            }
            Ok(n)
        })?;
    }
    // 4. Events.
    let batch: Vec<MovingEvent> = in_tx(&mut *src.eng, false, |tx| tx.eng.events_to_move(limit))?;
    if !batch.is_empty() {
        in_tx(&mut *dst.eng, true, |tx| {
            for ev in &batch {
                if tx.eng.event_exists(&ev.event_id)? {
                    continue;
                }
                let mut e = ev.clone();
                if e.routed {
                    let entries: Vec<String> = e
                        .deliveries
                        .iter()
                        .map(|(name, st)| {
                            if *st == state::DEAD {
                                format!("{DEAD}{name}")
                            } else {
                                format!("{OPEN}{name}")
                            }
                        })
                        .collect();
                    e.route = Some(entries.join("\n"));
                }
                tx.eng.import_event(&e)?;
            }
            Ok(())
        })?;
        let rowids: Vec<i64> = batch.iter().map(|e| e.rowid).collect();
        let Outbox { eng, .. } = src;
        in_tx(&mut **eng, true, |tx| delete_events(tx, &rowids))?;
        report.moved = batch.len();
    }
    // 5. Done?
    report.remaining = in_tx(&mut *src.eng, false, |tx| tx.eng.events_left_to_move())?;
    if report.remaining == 0 {
        in_tx(&mut *dst.eng, true, |tx| {
            if !tx.eng.meta(IMPORTING_FROM)?.is_empty() {
                tx.eng.set_meta(IMPORTING_FROM, "")?;
                tx.eng.bump_endpoints_version()?;
            }
            Ok(())
        })?;
        report.done = true;
    }
    Ok(report)
}
