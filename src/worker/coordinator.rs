//! The sender's cycle: record finished attempts, route new events, claim due deliveries for the
//! idle delivery threads (one transaction), then wait for results, a wake-up, the next due retry
//! or — for a database shared by hosts, which no wake-up reaches — a cheap look for new events.

use super::checkpointer::Checkpointer;
use super::jobs::{CloseOnDrop, Jobs};
use super::{db, Shared, Stop, YIELD_EVERY};
use crate::delivery::{self, AttemptOutcome, Target};
use crate::event;
use crate::fork;
use crate::outbox::{Decision, Finished, Outbox};
use crate::retry::{self, RetrySchedule};
use crate::secrets;
use crate::signer::Secret;
use crossbeam_channel::{select, unbounded, Receiver};
use std::collections::HashMap;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the sender of a database shared by hosts looks for new events while idle.
pub const POLL_EVERY: Duration = Duration::from_millis(50);

/// Least time between two WAL checkpoints of the sender (when it wrote something since the last).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// How long the sender, when it stops, waits for a checkpoint in progress before its own last one.
const CHECKPOINT_STOP_WAIT: Duration = Duration::from_millis(200);

/// A sender with nothing in flight and nothing due for this long trims the heap (`memory::Trim`).
/// (Below the 25 ms a sender without its wake-up socket waits at most.)
const TRIM_WHEN_IDLE_FOR: Duration = Duration::from_millis(20);

/// Events routed per transaction: small enough that the sender never holds the write lock
/// for more than about a millisecond, so dispatches do not queue behind it.
const ROUTE_BATCH: usize = 128;

/// How long a finished attempt waits for the other busy threads' results before the cycle that
/// records it: with a fast CRM they finish within microseconds of each other, and one transaction
/// for all of them writes each hot page (stats, indexes) once instead of once per attempt
/// (measured: 1.6 results per cycle without it, 3.9 of 4 with it, 10-20% less CPU per event).
const COALESCE: Duration = Duration::from_micros(200);

/// Least time between two cycles started by wake-ups alone (new events, no results): a burst of
/// dispatches is routed in a few transactions instead of one per event, so the PHP thread's
/// inserts rarely wait for the sender's write lock or re-read pages it changed. An event after a
/// quiet spell is routed at once; within a burst it waits at most this long.
const WAKE_GAP: Duration = Duration::from_micros(1000);

struct Job {
    target: Arc<Target>,
    delivery_id: i64,
    endpoint_id: i64,
    key: Option<String>,
    attempt: i64,
    event_id: String,
    topic: String,
    body: Vec<u8>,
    data_offset: usize,
    raw: bool,
    /// The event's own headers.
    headers: Vec<(String, String)>,
}

struct Done {
    job: Job,
    outcome: AttemptOutcome,
    /// Not attempted: the election may have passed to another process (see election.rs).
    skipped: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Health {
    failures: i64,
    breaker_until: f64,
    /// The destination policy refused the endpoint's address: no attempt before this.
    refused_until: f64,
}

pub struct Coordinator {
    shared: Arc<Shared>,
    me: String,
    boot: String,
    concurrency: usize,
    socket_ok: bool,
    /// The outbox is shared by hosts (MySQL): no wake-ups from other processes reach this one.
    poll: bool,
    /// The outbox's file, for a SQLite outbox.
    sqlite: Option<std::path::PathBuf>,
    /// The storage clock minus this host's (leases, retries and breakers are in storage time).
    offset: f64,
    targets: HashMap<i64, Arc<Target>>,
    agents: HashMap<(u64, String, crate::destination::Policy), ureq::Agent>,
    /// `woosync.allow_networks` of this process.
    allow_networks: Vec<crate::destination::Network>,
    endpoints_version: i64,
    endpoints_checked: Instant,
    /// Per endpoint: consecutive failures, breaker open until, refused until (mirrors the outbox).
    health: HashMap<i64, Health>,
    /// Per endpoint rate limits (token buckets); one sender per outbox makes them per outbox.
    buckets: HashMap<i64, Bucket>,
    /// Deliveries in flight per endpoint.
    in_flight: HashMap<i64, usize>,
    retention_days: f64,
    /// `Shared::key_gen` when the endpoints were last read.
    key_gen: u64,
    /// Some sendable endpoint has a sealed secret none of this process's keys opens.
    needs_key: bool,
    /// The outbox was moved elsewhere, or a move into it is not finished: claim nothing.
    paused: bool,
    /// When an idle sender gives the heap a burst freed back to the system.
    trim: crate::memory::Trim,
    /// When this process became the sender.
    since: Instant,
    /// How many times this process yielded the election before.
    yielded: u32,
}

/// Token bucket for an endpoint's rate limit (burst of one second's worth).
struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: f64) -> Bucket {
        Bucket {
            rate,
            tokens: rate.max(1.0),
            at: Instant::now(),
        }
    }
    fn refill(&mut self) {
        let dt = self.at.elapsed().as_secs_f64();
        self.at = Instant::now();
        self.tokens = (self.tokens + dt * self.rate).min(self.rate.max(1.0));
    }
    fn available(&mut self) -> usize {
        self.refill();
        self.tokens.floor().max(0.0) as usize
    }
    fn take(&mut self, n: usize) {
        self.tokens -= n as f64;
    }
    /// Seconds until one token is available.
    fn wait(&self) -> f64 {
        if self.tokens >= 1.0 {
            0.0
        } else {
            (1.0 - self.tokens) / self.rate
        }
    }
}

impl Coordinator {
    pub fn new(
        shared: Arc<Shared>,
        me: String,
        socket_ok: bool,
        opts: &super::SenderOptions,
        yielded: u32,
        offset: f64,
    ) -> Coordinator {
        Coordinator {
            poll: opts.database.is_shared(),
            sqlite: opts.database.sqlite_path().map(|p| p.to_path_buf()),
            offset,
            concurrency: shared.concurrency,
            key_gen: shared.key_gen.load(SeqCst),
            shared,
            me,
            boot: fork::boot_id(),
            needs_key: false,
            paused: false,
            trim: crate::memory::Trim::default(),
            since: Instant::now(),
            yielded,
            socket_ok,
            targets: HashMap::new(),
            agents: HashMap::new(),
            endpoints_version: -1,
            endpoints_checked: Instant::now() - Duration::from_secs(60),
            health: HashMap::new(),
            buckets: HashMap::new(),
            in_flight: HashMap::new(),
            retention_days: opts.retention_days,
            allow_networks: opts.allow_networks.clone(),
        }
    }

    /// Now on the storage clock.
    fn db_now(&self) -> f64 {
        event::now() + self.offset
    }

    /// Rebuilds the delivery targets when endpoints changed (or every few seconds, for secret
    /// rotation windows and breaker timers).
    fn refresh(&mut self, outbox: &mut Outbox, force: bool) {
        let key_gen = self.shared.key_gen.load(SeqCst);
        let force = force
            || key_gen != self.key_gen
            || self.endpoints_checked.elapsed() > Duration::from_secs(5);
        let version = match db(|| outbox.endpoints_version()) {
            Ok(v) => v,
            Err(e) => {
                self.shared.note_error(e);
                return;
            }
        };
        if version == self.endpoints_version && !force {
            return;
        }
        let rows = match db(|| outbox.endpoints()) {
            Ok(r) => r,
            Err(e) => {
                self.shared.note_error(e);
                return;
            }
        };
        match db(|| outbox.paused()) {
            Ok(p) => self.paused = p,
            Err(e) => self.shared.note_error(e),
        }
        self.endpoints_version = version;
        self.endpoints_checked = Instant::now();
        self.key_gen = key_gen;
        let now = self.db_now();
        let keys = self.shared.keys();
        let mut targets = HashMap::new();
        let mut problems: Vec<String> = Vec::new();
        self.needs_key = false;
        self.health.clear();
        for row in rows.into_iter().filter(|r| r.sendable()) {
            self.health.insert(
                row.id,
                Health {
                    failures: row.consecutive_failures,
                    breaker_until: row.breaker_until,
                    refused_until: row.refused_until,
                },
            );
            let mut secrets = Vec::new();
            let mut bad = None;
            for (text, valid) in [
                (&row.secret, true),
                (&row.prev_secret, row.prev_secret_until > now),
            ] {
                if valid && !text.is_empty() {
                    let parse = |t: String| match row.signature {
                        crate::config::SignatureMode::Standard => Secret::parse(&t),
                        crate::config::SignatureMode::WooCommerce => Ok(Secret {
                            text: t,
                            key: Vec::new(),
                        }),
                    };
                    match secrets::open_any(&keys, &row.name, text).and_then(parse) {
                        Ok(s) => secrets.push(s),
                        Err(e) => {
                            // Another process may have the key it was sealed with.
                            self.needs_key |= secrets::is_sealed(text);
                            bad = Some(e.to_string())
                        }
                    }
                }
            }
            let retry = RetrySchedule::parse(&row.retry_delays);
            if let Some(e) = bad.or_else(|| retry.as_ref().err().map(|e| e.to_string())) {
                problems.push(format!("endpoint {}: {e}", row.name));
                // Visible to every process (status, php --ri, the admin notice), not only this one.
                if row.last_error.as_deref() != Some(e.as_str()) {
                    if let Err(err) = db(|| outbox.note_endpoint_error(row.id, &e)) {
                        self.shared.note_error(err);
                    }
                }
                continue;
            }
            let endpoint_allow = match crate::destination::parse_list(&row.allow_networks) {
                Ok(n) => n,
                Err(e) => {
                    problems.push(format!("endpoint {}: {e}", row.name));
                    Vec::new()
                }
            };
            let policy = crate::destination::Policy::new(&self.allow_networks, &endpoint_allow);
            let key = (row.timeout.to_bits(), row.proxy.clone(), policy.clone());
            let agent = match self.agents.get(&key) {
                Some(a) => a.clone(),
                None => {
                    match delivery::make_agent(row.timeout, self.concurrency, &row.proxy, policy) {
                        Ok(a) => {
                            self.agents.insert(key, a.clone());
                            a
                        }
                        Err(e) => {
                            problems.push(format!("endpoint {}: {e}", row.name));
                            continue;
                        }
                    }
                }
            };
            targets.insert(
                row.id,
                Arc::new(Target {
                    endpoint_id: row.id,
                    name: row.name.clone(),
                    url: row.url.clone(),
                    secrets,
                    format: row.format,
                    source: row.source.clone(),
                    retry: retry.unwrap_or(RetrySchedule { delays: vec![] }),
                    timeout: row.timeout,
                    agent,
                    signature: row.signature,
                    hash_algorithm: row.hash_algorithm,
                    success_codes: row.success_codes.clone(),
                    user_agent: row.user_agent.clone(),
                    headers: row.headers.clone(),
                    wc_webhook_id: row.wc_webhook_id,
                }),
            );
            if row.rate_limit > 0.0 {
                let b = self
                    .buckets
                    .entry(row.id)
                    .or_insert_with(|| Bucket::new(row.rate_limit));
                b.rate = row.rate_limit;
            } else {
                self.buckets.remove(&row.id);
            }
        }
        self.targets = targets;
        self.shared.set_endpoint_error(if problems.is_empty() {
            None
        } else {
            Some(problems.join("; "))
        });
    }

    /// Whether to give up the election now: an endpoint's secret cannot be opened with the keys
    /// this process has, and it has led long enough (the first time at once, later at most every
    /// [`YIELD_EVERY`], so that with no better process around its other endpoints keep flowing).
    fn should_yield(&self) -> bool {
        let held = if self.yielded == 0 {
            Duration::from_secs(1)
        } else {
            YIELD_EVERY
        };
        self.needs_key && self.since.elapsed() >= held
    }

    pub fn run(mut self, outbox: &mut Outbox, wake_rx: &Receiver<()>) -> Stop {
        let jobs: Arc<Jobs<Job>> = Arc::default();
        // However this returns, the delivery threads end once their queued jobs are done.
        let _close_jobs = CloseOnDrop(jobs.clone());
        let (res_tx, res_rx) = unbounded::<Done>();
        for i in 0..self.concurrency {
            let rx = jobs.clone();
            let tx = res_tx.clone();
            let shared = self.shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("woosync-delivery-{}", i + 1))
                .spawn(move || {
                    while let Some(job) = rx.pop() {
                        // Fencing covers the attempt: none starts once the election may have
                        // passed to another process.
                        if !shared.may_send() {
                            let outcome = AttemptOutcome {
                                started_at: event::now(),
                                ..Default::default()
                            };
                            if tx
                                .send(Done {
                                    job,
                                    outcome,
                                    skipped: true,
                                })
                                .is_err()
                            {
                                return;
                            }
                            continue;
                        }
                        let outcome =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                delivery::attempt(
                                    &job.target,
                                    &job.event_id,
                                    &job.topic,
                                    &job.body,
                                    job.data_offset,
                                    job.raw,
                                    &job.headers,
                                )
                            }))
                            .unwrap_or_else(|_| AttemptOutcome {
                                started_at: event::now(),
                                error_class: Some("internal".into()),
                                error: Some("delivery thread panicked".into()),
                                ..Default::default()
                            });
                        if tx
                            .send(Done {
                                job,
                                outcome,
                                skipped: false,
                            })
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            if let Err(e) = spawned {
                self.shared
                    .note_error(format!("cannot start delivery thread: {e}"));
            }
        }
        drop(res_tx);

        let mut busy = 0usize;
        // Finished attempts not yet recorded (kept across a failed transaction).
        let mut unrecorded: Vec<Finished> = Vec::new();
        let mut last_checkpoint = Instant::now();
        let mut dirty = false;
        let mut last_leases = Instant::now() - Duration::from_secs(60);
        // First retention pass a few seconds after start, then every minute.
        let mut last_retention = Instant::now() - Duration::from_secs(55);
        self.refresh(outbox, true);
        // SQLite: checkpoints on a thread of their own (a shared MySQL database has none).
        let checkpointer = self
            .sqlite
            .as_deref()
            .and_then(|p| Checkpointer::start(p, self.shared.clone()));
        let mut stop = Stop::Shutdown;
        let mut last_cycle: Instant;
        loop {
            last_cycle = Instant::now();
            // Results free threads and may unblock a key.
            let now = self.db_now();
            for d in res_rx.try_iter() {
                self.take_result(d, &mut busy, &mut unrecorded);
            }
            // Coalescing window: results that arrive one by one are recorded together.
            if !unrecorded.is_empty() && busy > 0 {
                let until = Instant::now() + COALESCE;
                while busy > 0 {
                    match res_rx.recv_deadline(until) {
                        Ok(d) => self.take_result(d, &mut busy, &mut unrecorded),
                        Err(_) => break,
                    }
                }
            }
            let stopping = self.shared.shutdown.load(SeqCst);
            let past = self.shared.past_deadline();
            // A yielding sender starts nothing new and leaves once its attempts are recorded.
            let yielding = !stopping && self.should_yield();
            let free = if past || yielding || self.paused {
                0
            } else {
                self.concurrency - busy.min(self.concurrency)
            };
            let mut wants = Vec::with_capacity(self.targets.len());
            if free > 0 {
                // An endpoint whose failure is not recorded yet waits one cycle: its breaker state
                // is only known once the failure is counted (otherwise a half-open breaker would
                // let a second probe out with the first one's failure).
                let just_failed: Vec<i64> = unrecorded
                    .iter()
                    .filter(|f| f.endpoint_failure || matches!(f.decision, Decision::Refused(_)))
                    .map(|f| f.endpoint_id)
                    .collect();
                let ids: Vec<i64> = self
                    .targets
                    .keys()
                    .copied()
                    .filter(|id| !just_failed.contains(id))
                    .collect();
                for id in ids {
                    let allowed = self.allowed(id, free, now);
                    let lease = self.targets.get(&id).map_or(20.0, |t| t.timeout + 5.0);
                    if allowed > 0 {
                        wants.push((id, allowed, lease));
                    }
                }
            }
            // One transaction: record, route new events, read the endpoints version, claim.
            let gone = unrecorded
                .iter()
                .any(|f| matches!(f.decision, Decision::DeadAndDisable(_)));
            let failures = unrecorded
                .iter()
                .any(|f| f.endpoint_failure || matches!(f.decision, Decision::Refused(_)))
                || self
                    .health
                    .values()
                    .any(|h| h.failures > 0 || h.refused_until > 0.0);
            let had_results = !unrecorded.is_empty();
            let (claimed, version, routed) = match db(|| {
                outbox.cycle(&unrecorded, ROUTE_BATCH, &wants, free, &self.me)
            }) {
                Ok(r) => {
                    let done = unrecorded
                        .iter()
                        .filter(|f| {
                            matches!(
                                f.decision,
                                Decision::Delivered | Decision::Dead | Decision::DeadAndDisable(_)
                            )
                        })
                        .count();
                    self.shared.finished.fetch_add(done as u64, SeqCst);
                    unrecorded.clear();
                    self.shared.clear_error();
                    super::election::allow_until(&self.shared, outbox.engine().renewed_at());
                    r
                }
                Err(e) => {
                    self.shared.note_error(e);
                    if outbox.engine().lost_lease() {
                        // Another process leads now: write nothing more (what finished
                        // meanwhile stays in flight; the new sender takes it over).
                        stop = Stop::Lost;
                        break;
                    }
                    (Vec::new(), self.endpoints_version, 0)
                }
            };
            if had_results || routed > 0 || !claimed.is_empty() {
                dirty = true;
            }
            // Endpoint changes committed before these rows were claimed apply to them; a key
            // handed over by the PHP thread applies at once.
            let key_arrived = self.shared.key_gen.load(SeqCst) != self.key_gen;
            if gone || key_arrived || version != self.endpoints_version {
                self.refresh(outbox, true);
            } else if had_results && failures {
                if let Ok(h) = db(|| outbox.endpoint_health()) {
                    for (id, failures, breaker_until, refused_until) in h {
                        if self.health.contains_key(&id) {
                            self.health.insert(
                                id,
                                Health {
                                    failures,
                                    breaker_until,
                                    refused_until,
                                },
                            );
                        }
                    }
                }
            }
            let claimed_any = !claimed.is_empty();
            for c in claimed {
                let Some(target) = self.targets.get(&c.endpoint_id).cloned() else {
                    // The endpoint went away between the claim and now: the lease expires and
                    // the row is retried with the endpoint's current state.
                    continue;
                };
                let id = c.endpoint_id;
                let job = Job {
                    target,
                    delivery_id: c.delivery_id,
                    endpoint_id: c.endpoint_id,
                    key: c.key,
                    attempt: c.attempt,
                    event_id: c.event_id,
                    topic: c.topic,
                    body: c.body,
                    data_offset: c.data_offset,
                    raw: c.raw,
                    headers: c
                        .headers
                        .as_deref()
                        .map(crate::config::headers_from_json)
                        .unwrap_or_default(),
                };
                if jobs.push(job).is_ok() {
                    *self.in_flight.entry(id).or_default() += 1;
                    if let Some(b) = self.buckets.get_mut(&id) {
                        b.take(1);
                    }
                    busy += 1;
                }
            }
            self.shared.busy.store(busy, SeqCst);

            if last_retention.elapsed() >= Duration::from_secs(60) && !stopping {
                last_retention = Instant::now();
                if let Err(e) = db(|| outbox.retain(self.retention_days, 2000)) {
                    self.shared.note_error(e);
                }
            }
            if last_leases.elapsed() >= Duration::from_secs(1) {
                last_leases = Instant::now();
                let boot = self.boot.clone();
                let poll = self.poll;
                // On one host a holder's pid tells whether it runs. Across hosts no pid is
                // checked: another holder is a former sender, fenced off, so its rows are
                // taken over at once.
                let alive = move |holder: &str| !poll && fork::identity_alive(holder, &boot);
                match db(|| outbox.take_over_leases(&self.me, None, &alive)) {
                    Ok(n) if n > 0 => dirty = true,
                    Ok(_) => {}
                    Err(e) => self.shared.note_error(e),
                }
            }
            if dirty && last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
                let asked = checkpointer.as_ref().is_some_and(|c| c.ask());
                if !asked {
                    if let Err(e) = db(|| outbox.checkpoint()) {
                        self.shared.note_error(e);
                    }
                }
                last_checkpoint = Instant::now();
                dirty = false;
            }
            // How long to sleep: until results, a wake-up or the next due retry.
            let more_to_route = routed >= ROUTE_BATCH;
            let next_due = if busy < self.concurrency && !claimed_any && !more_to_route {
                let ids: Vec<i64> = self.targets.keys().copied().collect();
                match db(|| outbox.next_due(&ids)) {
                    Ok(t) => t,
                    Err(e) => {
                        self.shared.note_error(e);
                        None
                    }
                }
            } else {
                None
            };
            if stopping {
                let due_now = more_to_route || next_due.is_some_and(|t| t <= self.db_now());
                if past || (busy == 0 && !claimed_any && !due_now) {
                    break;
                }
            }
            if yielding && busy == 0 && unrecorded.is_empty() {
                stop = Stop::Yield;
                break;
            }
            let mut wait = if self.socket_ok || self.poll {
                Duration::from_secs(1)
            } else {
                Duration::from_millis(25)
            };
            if more_to_route || (claimed_any && busy < self.concurrency) {
                wait = Duration::ZERO;
            } else if busy >= self.concurrency {
                // Every thread is busy (a slow or blackholed CRM): dispatches do not wake a sender
                // that could not start their events anyway, but what they store must still be
                // routed and, above all, checkpointed — else a sustained stream of dispatches grows
                // the WAL without bound (measured: 480 MB after 100,000 events, one cycle a second).
                wait = wait.min(CHECKPOINT_EVERY);
            } else if let Some(t) = next_due {
                let secs = (t - self.db_now()).max(0.0);
                // A due delivery held back by a breaker, a rate limit or a probe in flight: wake
                // when that opens (results and wake-ups interrupt the wait anyway).
                let secs = if secs == 0.0 {
                    self.hold_back(self.db_now()).unwrap_or(0.05)
                } else {
                    secs
                };
                wait = wait.min(Duration::from_secs_f64(secs));
            }
            if stopping {
                let left = self.shared.deadline_ms.load(SeqCst) as f64 / 1000.0 - event::now();
                wait = wait.min(Duration::from_secs_f64(left.max(0.0)));
            }
            if wait.is_zero() {
                continue;
            }
            // Idle for a while after a burst: what the burst freed goes back to the system.
            if busy == 0 && !stopping && wait >= TRIM_WHEN_IDLE_FOR {
                self.trim.run_if_due(Instant::now());
            }
            // Shared by hosts: wake-ups of other processes do not reach this one, so it looks for
            // new events every POLL_EVERY; the cycle (which renews the lease) runs at least once a
            // second.
            let until = Instant::now() + wait;
            loop {
                let left = until.saturating_duration_since(Instant::now());
                let slice = if self.poll {
                    left.min(POLL_EVERY)
                } else {
                    left
                };
                let mut woken = true;
                select! {
                    recv(res_rx) -> msg => {
                        if let Ok(d) = msg {
                            self.take_result(d, &mut busy, &mut unrecorded);
                        }
                    }
                    recv(wake_rx) -> _ => {
                        // A wake-up alone right after a cycle: let the burst gather (results
                        // still end the wait at once).
                        let gap_end = last_cycle + WAKE_GAP;
                        if Instant::now() < gap_end && gap_end < until {
                            select! {
                                recv(res_rx) -> msg => {
                                    if let Ok(d) = msg {
                                        self.take_result(d, &mut busy, &mut unrecorded);
                                    }
                                }
                                default(gap_end.saturating_duration_since(Instant::now())) => {}
                            }
                        }
                    }
                    default(slice) => woken = false,
                }
                if woken || !self.poll || Instant::now() >= until {
                    break;
                }
                // New events: cycle now. A problem is left to the next cycle to report.
                if let Ok(true) = db(|| outbox.poll_new_events()) {
                    break;
                }
            }
        }
        if stop == Stop::Lost {
            drop(_close_jobs);
            if let Some(c) = checkpointer {
                c.stop(Duration::ZERO);
            }
            return stop;
        }
        // In-flight attempts are abandoned (see module docs); record what already finished.
        for d in res_rx.try_iter() {
            unrecorded.push(self.finish(d));
        }
        if !unrecorded.is_empty() {
            if let Err(e) = db(|| outbox.record(&unrecorded, &self.me)) {
                self.shared.note_error(e);
            }
        }
        if let Some(c) = checkpointer {
            c.stop(CHECKPOINT_STOP_WAIT);
        }
        let _ = db(|| outbox.checkpoint());
        stop
    }

    /// A finished attempt: its thread is free again, its endpoint has one fewer in flight, and
    /// its outcome waits to be recorded.
    fn take_result(&mut self, d: Done, busy: &mut usize, unrecorded: &mut Vec<Finished>) {
        *busy = busy.saturating_sub(1);
        self.trim.note(1);
        if let Some(n) = self.in_flight.get_mut(&d.job.endpoint_id) {
            *n = n.saturating_sub(1);
        }
        unrecorded.push(self.finish(d));
    }

    /// How many deliveries of an endpoint may start now: destination refused (none until the
    /// pause ends, then one probe), breaker (open: none; half-open: one probe at a time) and rate
    /// limit.
    fn allowed(&mut self, id: i64, free: usize, now: f64) -> usize {
        let mut n = free;
        if let Some(&h) = self.health.get(&id) {
            let probing = self.in_flight.get(&id).copied().unwrap_or(0);
            if h.refused_until > 0.0 {
                if now < h.refused_until {
                    return 0;
                }
                n = n.min(1usize.saturating_sub(probing));
            }
            if h.failures >= crate::outbox::BREAKER_THRESHOLD {
                if now < h.breaker_until {
                    return 0;
                }
                n = n.min(1usize.saturating_sub(probing));
            }
        }
        if let Some(b) = self.buckets.get_mut(&id) {
            n = n.min(b.available());
        }
        n
    }

    /// Seconds until the earliest breaker or rate limit that holds back work opens again.
    fn hold_back(&self, now: f64) -> Option<f64> {
        let breakers = self.health.values().filter_map(|h| {
            let open = h.failures >= crate::outbox::BREAKER_THRESHOLD && h.breaker_until > now;
            let until = if open { h.breaker_until } else { 0.0 }.max(h.refused_until);
            (until > now).then_some(until - now)
        });
        let buckets = self.buckets.values().map(|b| b.wait()).filter(|w| *w > 0.0);
        breakers
            .chain(buckets)
            .reduce(f64::min)
            .map(|w| w.max(0.001))
    }

    fn finish(&self, d: Done) -> Finished {
        let Done {
            job,
            outcome,
            skipped,
        } = d;
        let decision = if skipped {
            Decision::NotAttempted
        } else {
            delivery::decide(
                &outcome,
                &job.target.retry,
                job.attempt.max(1) as u32,
                retry::jitter_unit,
                &job.target.url,
                &job.target.success_codes,
            )
        };
        Finished {
            delivery_id: job.delivery_id,
            endpoint_id: job.endpoint_id,
            key: job.key,
            started_at: outcome.started_at,
            duration_ms: outcome.duration_ms,
            http_status: outcome.http_status,
            error_class: outcome.error_class,
            error: outcome.error,
            response: outcome.response,
            delivery_uuid: outcome.delivery_uuid,
            after_outage: matches!(decision, Decision::Delivered)
                && self.health.get(&job.endpoint_id).map_or(0, |h| h.failures)
                    >= crate::outbox::BREAKER_THRESHOLD,
            breaker_pause: crate::outbox::breaker_pause(
                &job.target.retry.delays,
                self.health.get(&job.endpoint_id).map_or(0, |h| h.failures) + 1,
            ),
            endpoint_failure: match outcome.http_status {
                None => !matches!(decision, Decision::Refused(_) | Decision::NotAttempted),
                Some(code) => {
                    delivery::classify_for(code, &job.target.success_codes)
                        == delivery::StatusClass::Retry
                }
            },
            decision,
        }
    }
}
