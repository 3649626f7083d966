//! The sender: one per outbox file, elected by a lock, delivering with a pool of HTTP threads.
//!
//! ```text
//!  any PHP process                         the process holding <db>.lock
//!  ───────────────                         ─────────────────────────────
//!  dispatch: INSERT (WAL commit) ──┐       woosync-sender (coordinator)
//!  wake: channel try_send (same    │         loop: record results ─┐ one short
//!        process) or datagram ─────┼──────▶        claim due rows ─┘ txn each
//!        to \0woosync-<hash>       │               send jobs ──▶ woosync-delivery-1..N (ureq)
//!                                  │               wait: results | wake | next due time
//!  woosync-sender in standby:      │       woosync-wake: datagram socket ─▶ wake channel
//!  blocked in flock(<db>.lock) ◀───┘ kernel hands the lock over when the holder dies (even kill -9)
//! ```
//!
//! Threads start lazily (first dispatch, flush or request of a process), never in MINIT: php-fpm
//! forks its workers after MINIT and threads do not survive a fork. They never touch PHP state:
//! everything they need is in the outbox or in plain values copied on the PHP thread.
//! Every SQLite call they make passes the fork gate (see `fork.rs`).
//!
//! Shutdown: `Sender::shutdown(grace)` asks the coordinator to stop claiming once nothing is due or
//! the grace has passed; in-flight attempts still running then are abandoned. Their rows stay leased
//! by this process; the lock is held until the process exits, so the next sender sees the holder
//! dead and takes the rows over at once.

use crate::delivery::{self, AttemptOutcome, Target};
use crate::error::Error;
use crate::event;
use crate::fork;
use crate::outbox::{Decision, Finished, Outbox, Role};
use crate::retry::{self, RetrySchedule};
use crate::secrets::{self, StoreKey};
use crate::signer::Secret;
use crossbeam_channel::{bounded, select, unbounded, Receiver, Sender as ChanSender};
use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What this process's sender thread is doing for one outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    Starting = 0,
    Standby = 1,
    Sender = 2,
    Stopped = 3,
}

impl WorkerState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Starting => "starting",
            WorkerState::Standby => "standby",
            WorkerState::Sender => "sender",
            WorkerState::Stopped => "stopped",
        }
    }
    fn from_u8(v: u8) -> WorkerState {
        match v {
            0 => WorkerState::Starting,
            1 => WorkerState::Standby,
            2 => WorkerState::Sender,
            _ => WorkerState::Stopped,
        }
    }
}

/// Options copied from the PHP thread when the sender starts.
#[derive(Debug, Clone)]
pub struct SenderOptions {
    pub database: PathBuf,
    pub concurrency: usize,
    pub retention_days: f64,
}

/// State shared between the PHP thread and this outbox's threads (atomics, plus short mutexes that
/// the PHP thread only takes through `try_lock` or for a moment to hand over a key).
struct Shared {
    state: AtomicU8,
    busy: AtomicUsize,
    concurrency: usize,
    shutdown: AtomicBool,
    /// Unix milliseconds after which a shutting-down coordinator abandons work.
    deadline_ms: AtomicU64,
    done: AtomicBool,
    /// Problems of the sender itself (lock file, storage), cleared when a cycle succeeds again.
    error: Mutex<Option<String>>,
    /// Problems with endpoint settings (e.g. a sealed secret it cannot open), cleared when the
    /// endpoints are usable again.
    endpoint_error: Mutex<Option<String>>,
    /// The outbox file is damaged: the sender cannot work (raised by flush in this process).
    fatal: Mutex<Option<String>>,
    /// Storage keys for sealed endpoint secrets, newest first (at most [`KEYS_KEPT`]), handed over by
    /// the PHP thread (never read from INI here). A key is only ever added: an empty `woosync.key`
    /// (e.g. the INI value restored at the end of a request) does not take it away.
    keys: Mutex<Vec<StoreKey>>,
    /// Bumped whenever `keys` changes, so the coordinator re-reads the endpoints at once.
    key_gen: AtomicU64,
}

/// Storage keys a sender keeps: the newest and the one before (secrets sealed before a key change).
const KEYS_KEPT: usize = 2;

impl Shared {
    fn set_state(&self, s: WorkerState) {
        self.state.store(s as u8, SeqCst);
    }
    fn note_error<E: std::fmt::Display + 'static>(&self, e: E) {
        let corrupt = (&e as &dyn std::any::Any)
            .downcast_ref::<Error>()
            .is_some_and(|e| matches!(e, Error::Corrupt(_)));
        if corrupt {
            if let Ok(mut g) = self.fatal.lock() {
                *g = Some(e.to_string());
            }
        }
        if let Ok(mut g) = self.error.lock() {
            *g = Some(e.to_string());
        }
    }
    fn clear_error(&self) {
        if let Ok(mut g) = self.error.lock() {
            *g = None;
        }
    }
    fn set_endpoint_error(&self, e: Option<String>) {
        if let Ok(mut g) = self.endpoint_error.lock() {
            *g = e;
        }
    }
    fn keys(&self) -> Vec<StoreKey> {
        self.keys.lock().map(|g| g.clone()).unwrap_or_default()
    }
    fn past_deadline(&self) -> bool {
        self.shutdown.load(SeqCst)
            && (event::now() * 1000.0) as u64 >= self.deadline_ms.load(SeqCst)
    }
}

/// Handle kept by the PHP thread for one outbox.
pub struct Sender {
    shared: Arc<Shared>,
    wake_tx: ChanSender<()>,
}

/// Path of the lock file that elects the sender.
pub fn lock_path(db: &Path) -> PathBuf {
    crate::files::companion(db, ".lock")
}

/// Abstract unix socket address on which the sender of `db` listens for wake-ups.
pub fn wake_address(db: &Path) -> std::io::Result<SocketAddr> {
    let canonical = std::fs::canonicalize(db).unwrap_or_else(|_| db.to_path_buf());
    // FNV-1a over the path bytes: stable, dependency free.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in canonical.as_os_str().as_encoded_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    SocketAddr::from_abstract_name(format!("woosync-{h:016x}").as_bytes())
}

impl Sender {
    /// Starts the sender thread for an outbox (it becomes the sender or waits as standby).
    pub fn start(opts: SenderOptions) -> std::io::Result<Sender> {
        fork::install();
        let shared = Arc::new(Shared {
            state: AtomicU8::new(WorkerState::Starting as u8),
            busy: AtomicUsize::new(0),
            concurrency: opts.concurrency.max(1),
            shutdown: AtomicBool::new(false),
            deadline_ms: AtomicU64::new(u64::MAX),
            done: AtomicBool::new(false),
            error: Mutex::new(None),
            endpoint_error: Mutex::new(None),
            fatal: Mutex::new(None),
            keys: Mutex::new(Vec::new()),
            key_gen: AtomicU64::new(0),
        });
        let (wake_tx, wake_rx) = bounded::<()>(1);
        let s2 = shared.clone();
        let w2 = wake_tx.clone();
        std::thread::Builder::new()
            .name("woosync-sender".into())
            .spawn(move || {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run(&s2, &opts, w2, wake_rx)
                }));
                if let Err(p) = result {
                    let msg = p
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned());
                    s2.note_error(format!(
                        "sender thread panicked: {}",
                        msg.unwrap_or_default()
                    ));
                }
                s2.done.store(true, SeqCst);
                s2.set_state(WorkerState::Stopped);
            })?;
        Ok(Sender { shared, wake_tx })
    }

    pub fn state(&self) -> WorkerState {
        WorkerState::from_u8(self.shared.state.load(SeqCst))
    }

    /// Last problem of the sender thread (e.g. cannot open the lock file, an endpoint secret it
    /// cannot decrypt), or None while it works.
    pub fn error(&self) -> Option<String> {
        let own = self.shared.error.try_lock().ok().and_then(|g| g.clone());
        own.or_else(|| {
            self.shared
                .endpoint_error
                .try_lock()
                .ok()
                .and_then(|g| g.clone())
        })
    }

    /// Set when the sender found the outbox damaged (it cannot deliver from it).
    pub fn fatal(&self) -> Option<String> {
        self.shared.fatal.try_lock().ok().and_then(|g| g.clone())
    }

    /// Hands a storage key (from `woosync.key`) to the sender threads; it takes effect at once.
    /// None (no key configured in this request) keeps the keys already handed over.
    pub fn set_key(&self, key: Option<StoreKey>) {
        let Some(key) = key else { return };
        if let Ok(mut g) = self.shared.keys.lock() {
            if g.first() != Some(&key) {
                g.retain(|k| k != &key);
                g.insert(0, key);
                g.truncate(KEYS_KEPT);
                self.shared.key_gen.fetch_add(1, SeqCst);
                let _ = self.wake_tx.try_send(());
            }
        }
    }

    /// Wakes the coordinator when it runs in this process and has an idle delivery thread.
    /// Returns false when the wake-up must go to another process.
    pub fn wake_local(&self) -> bool {
        match self.state() {
            WorkerState::Sender | WorkerState::Starting => {
                if self.shared.busy.load(SeqCst) < self.shared.concurrency {
                    let _ = self.wake_tx.try_send(());
                }
                true
            }
            _ => false,
        }
    }

    /// Asks the coordinator to finish due work within `grace` seconds and waits at most that long.
    /// Never waits when this process is only standing by.
    pub fn shutdown(&self, grace: f64) {
        let deadline = event::now() + grace.max(0.0);
        self.shared
            .deadline_ms
            .store((deadline * 1000.0) as u64, SeqCst);
        self.shared.shutdown.store(true, SeqCst);
        let _ = self.wake_tx.try_send(());
        if grace <= 0.0 {
            return;
        }
        let until = Instant::now() + Duration::from_secs_f64(grace);
        loop {
            let st = self.state();
            if self.shared.done.load(SeqCst)
                || st == WorkerState::Standby
                || st == WorkerState::Stopped
            {
                return;
            }
            if Instant::now() >= until {
                return;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }
}

/// Sends a wake-up datagram to the sender of `db` in another process (non-blocking, best effort).
pub struct Waker {
    socket: Option<UnixDatagram>,
    addr: Option<SocketAddr>,
}

impl Waker {
    pub fn new(db: &Path) -> Waker {
        let socket = UnixDatagram::unbound()
            .ok()
            .filter(|s| s.set_nonblocking(true).is_ok());
        if let Some(s) = &socket {
            fork::close_in_child(s.as_raw_fd());
        }
        Waker {
            socket,
            addr: wake_address(db).ok(),
        }
    }
    pub fn wake(&self) {
        if let (Some(s), Some(a)) = (&self.socket, &self.addr) {
            let _ = s.send_to_addr(b"w", a);
        }
    }
}

/// Events routed per transaction: small enough that the sender never holds the write lock
/// for more than about a millisecond, so dispatches do not queue behind it.
const ROUTE_BATCH: usize = 128;

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
}

struct Done {
    job: Job,
    outcome: AttemptOutcome,
}

fn db<T>(f: impl FnOnce() -> T) -> T {
    let _g = fork::gate();
    f()
}

/// Why the coordinator returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The process is shutting down (or the outbox cannot be used).
    Shutdown,
    /// It cannot decrypt an endpoint's secret (no or another `woosync.key`): another process may
    /// have the key, so it gives up the election for a while.
    Yield,
}

/// How long a sender that yielded stays out of the election (a standby blocked on the lock gets it
/// at once), unless a key arrives or the process shuts down meanwhile.
const YIELD_PAUSE: Duration = Duration::from_secs(3);
/// A sender that got the election back without a better process around yields again after this.
const YIELD_EVERY: Duration = Duration::from_secs(30);

fn run(shared: &Arc<Shared>, opts: &SenderOptions, wake_tx: ChanSender<()>, wake_rx: Receiver<()>) {
    // Election: whoever holds <db>.lock is the sender of this outbox. Opened without following
    // links and never truncated (see files.rs).
    let lock_file = match crate::files::open_private(&lock_path(&opts.database), &opts.database) {
        Ok(f) => f,
        Err(e) => {
            shared.note_error(e);
            return;
        }
    };
    let fd = lock_file.as_raw_fd();
    fork::close_in_child(fd);
    // Held until the process exits (see module docs), even after the coordinator returns.
    std::mem::forget(lock_file);
    let mut yielded = 0u32;
    loop {
        // SAFETY: flock on a descriptor we own (and never close).
        if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            shared.set_state(WorkerState::Standby);
            loop {
                // SAFETY: as above; blocks until the holder releases or dies.
                let r = unsafe { libc::flock(fd, libc::LOCK_EX) };
                if r == 0 {
                    break;
                }
                if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                    shared.note_error(format!("flock failed: {}", std::io::Error::last_os_error()));
                    return;
                }
            }
            if shared.past_deadline() {
                // The process is exiting: leave the outbox to a live process.
                return;
            }
        }
        match lead(shared, opts, &wake_tx, &wake_rx, yielded) {
            Stop::Shutdown => return,
            Stop::Yield => {
                yielded += 1;
                shared.set_state(WorkerState::Standby);
                // SAFETY: releases our lock; a blocked standby (if any) takes it now.
                unsafe { libc::flock(fd, libc::LOCK_UN) };
                let gen = shared.key_gen.load(SeqCst);
                let until = Instant::now() + YIELD_PAUSE;
                while Instant::now() < until
                    && shared.key_gen.load(SeqCst) == gen
                    && !shared.shutdown.load(SeqCst)
                {
                    let _ = wake_rx.recv_timeout(Duration::from_millis(100));
                }
                if shared.shutdown.load(SeqCst) {
                    return;
                }
            }
        }
    }
}

/// Runs this process as the outbox's sender until shutdown or until it yields the election.
fn lead(
    shared: &Arc<Shared>,
    opts: &SenderOptions,
    wake_tx: &ChanSender<()>,
    wake_rx: &Receiver<()>,
    yielded: u32,
) -> Stop {
    // The outbox connection of this thread.
    let mut outbox = match db(|| Outbox::open(&opts.database, Role::Sender)) {
        Ok(o) => o,
        Err(e) => {
            shared.note_error(e);
            return Stop::Shutdown;
        }
    };
    let me = fork::process_identity();
    if let Err(e) = db(|| outbox.set_sender(&me)) {
        shared.note_error(e);
    }
    shared.set_state(WorkerState::Sender);
    // Wake-ups from other processes.
    let wake = WakeListener::bind(&opts.database, wake_tx);
    let stop = Coordinator::new(shared.clone(), me, wake.is_some(), opts.retention_days, yielded)
        .run(&mut outbox, wake_rx);
    drop(wake);
    db(move || drop(outbox));
    stop
}

/// The thread that turns wake-up datagrams from other processes into wake-ups of the coordinator.
struct WakeListener {
    socket: UnixDatagram,
    stop: Arc<AtomicBool>,
}

impl WakeListener {
    fn bind(database: &Path, wake_tx: &ChanSender<()>) -> Option<WakeListener> {
        let addr = wake_address(database).ok()?;
        // A sender that just yielded may still be closing the address: try for a moment.
        let mut sock = None;
        for _ in 0..20 {
            match UnixDatagram::bind_addr(&addr) {
                Ok(s) => {
                    sock = Some(s);
                    break;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(25)),
            }
        }
        let sock = sock?;
        let reader = sock.try_clone().ok()?;
        // A forked child must not keep the address bound (no process could take it over).
        fork::close_in_child(sock.as_raw_fd());
        let reader_fd = reader.as_raw_fd();
        fork::close_in_child(reader_fd);
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, stop2) = (wake_tx.clone(), stop.clone());
        let spawned = std::thread::Builder::new()
            .name("woosync-wake".into())
            .spawn(move || {
                let mut buf = [0u8; 16];
                while reader.recv(&mut buf).is_ok() && !stop2.load(SeqCst) {
                    let _ = tx.try_send(());
                }
                fork::keep_in_child(reader.as_raw_fd());
            });
        let listener = WakeListener { socket: sock, stop };
        if spawned.is_err() {
            fork::keep_in_child(reader_fd); // the closure, and with it the reader, is gone
            return None;
        }
        Some(listener)
    }
}

impl Drop for WakeListener {
    fn drop(&mut self) {
        // Unblocks the listening thread, which then drops its descriptor and frees the address.
        self.stop.store(true, SeqCst);
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
        fork::keep_in_child(self.socket.as_raw_fd());
    }
}

struct Coordinator {
    shared: Arc<Shared>,
    me: String,
    boot: String,
    concurrency: usize,
    socket_ok: bool,
    targets: HashMap<i64, Arc<Target>>,
    agents: HashMap<(u64, String), ureq::Agent>,
    endpoints_version: i64,
    endpoints_checked: Instant,
    /// Per endpoint: consecutive failures and breaker-open-until (mirrors the outbox).
    health: HashMap<i64, (i64, f64)>,
    /// Per endpoint rate limits (token buckets); one sender per outbox makes them per outbox.
    buckets: HashMap<i64, Bucket>,
    /// Deliveries in flight per endpoint.
    in_flight: HashMap<i64, usize>,
    retention_days: f64,
    /// `Shared::key_gen` when the endpoints were last read.
    key_gen: u64,
    /// Some sendable endpoint has a sealed secret none of this process's keys opens.
    needs_key: bool,
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
    fn new(
        shared: Arc<Shared>,
        me: String,
        socket_ok: bool,
        retention_days: f64,
        yielded: u32,
    ) -> Coordinator {
        Coordinator {
            concurrency: shared.concurrency,
            key_gen: shared.key_gen.load(SeqCst),
            shared,
            me,
            boot: fork::boot_id(),
            needs_key: false,
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
            retention_days,
        }
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
        self.endpoints_version = version;
        self.endpoints_checked = Instant::now();
        self.key_gen = key_gen;
        let now = event::now();
        let keys = self.shared.keys();
        let mut targets = HashMap::new();
        let mut problems: Vec<String> = Vec::new();
        self.needs_key = false;
        self.health.clear();
        for row in rows.into_iter().filter(|r| r.sendable()) {
            self.health
                .insert(row.id, (row.consecutive_failures, row.breaker_until));
            let mut secrets = Vec::new();
            let mut bad = None;
            for (text, valid) in [
                (&row.secret, true),
                (&row.prev_secret, row.prev_secret_until > now),
            ] {
                if valid && !text.is_empty() {
                    match secrets::open_any(&keys, &row.name, text).and_then(|t| Secret::parse(&t))
                    {
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
            let key = (row.timeout.to_bits(), row.proxy.clone());
            let agent = match self.agents.get(&key) {
                Some(a) => a.clone(),
                None => match delivery::make_agent(row.timeout, self.concurrency, &row.proxy) {
                    Ok(a) => {
                        self.agents.insert(key, a.clone());
                        a
                    }
                    Err(e) => {
                        problems.push(format!("endpoint {}: {e}", row.name));
                        continue;
                    }
                },
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

    fn run(mut self, outbox: &mut Outbox, wake_rx: &Receiver<()>) -> Stop {
        let (job_tx, job_rx) = bounded::<Job>(self.concurrency);
        let (res_tx, res_rx) = unbounded::<Done>();
        for i in 0..self.concurrency {
            let rx = job_rx.clone();
            let tx = res_tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("woosync-delivery-{}", i + 1))
                .spawn(move || {
                    for job in rx.iter() {
                        let outcome =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                delivery::attempt(
                                    &job.target,
                                    &job.event_id,
                                    &job.topic,
                                    &job.body,
                                    job.data_offset,
                                )
                            }))
                            .unwrap_or_else(|_| AttemptOutcome {
                                started_at: event::now(),
                                error_class: Some("internal".into()),
                                error: Some("delivery thread panicked".into()),
                                ..Default::default()
                            });
                        if tx.send(Done { job, outcome }).is_err() {
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
        let mut stop = Stop::Shutdown;
        loop {
            // Results free threads and may unblock a key.
            let now = event::now();
            for d in res_rx.try_iter() {
                busy = busy.saturating_sub(1);
                if let Some(n) = self.in_flight.get_mut(&d.job.endpoint_id) {
                    *n = n.saturating_sub(1);
                }
                unrecorded.push(self.finish(d, now));
            }
            let stopping = self.shared.shutdown.load(SeqCst);
            let past = self.shared.past_deadline();
            // A yielding sender starts nothing new and leaves once its attempts are recorded.
            let yielding = !stopping && self.should_yield();
            let free = if past || yielding {
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
                    .filter(|f| f.endpoint_failure)
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
            let failures = unrecorded.iter().any(|f| f.endpoint_failure)
                || self.health.values().any(|h| h.0 > 0);
            let had_results = !unrecorded.is_empty();
            let (claimed, version, routed) =
                match db(|| outbox.cycle(&unrecorded, ROUTE_BATCH, &wants, free, &self.me)) {
                    Ok(r) => {
                        unrecorded.clear();
                        self.shared.clear_error();
                        r
                    }
                    Err(e) => {
                        self.shared.note_error(e);
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
                    for (id, fails, until) in h {
                        if self.health.contains_key(&id) {
                            self.health.insert(id, (fails, until));
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
                };
                if job_tx.send(job).is_ok() {
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
                let alive = move |holder: &str| fork::identity_alive(holder, &boot);
                match db(|| outbox.take_over_leases(&self.me, event::now(), &alive)) {
                    Ok(n) if n > 0 => dirty = true,
                    Ok(_) => {}
                    Err(e) => self.shared.note_error(e),
                }
            }
            if dirty && last_checkpoint.elapsed() >= Duration::from_millis(100) {
                if let Err(e) = db(|| outbox.checkpoint()) {
                    self.shared.note_error(e);
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
                let due_now = more_to_route || next_due.is_some_and(|t| t <= event::now());
                if past || (busy == 0 && !claimed_any && !due_now) {
                    break;
                }
            }
            if yielding && busy == 0 && unrecorded.is_empty() {
                stop = Stop::Yield;
                break;
            }
            let mut wait = if self.socket_ok {
                Duration::from_secs(1)
            } else {
                Duration::from_millis(25)
            };
            if more_to_route || (claimed_any && busy < self.concurrency) {
                wait = Duration::ZERO;
            } else if let Some(t) = next_due {
                let secs = (t - event::now()).max(0.0);
                // A due delivery held back by a breaker, a rate limit or a probe in flight: wake
                // when that opens (results and wake-ups interrupt the wait anyway).
                let secs = if secs == 0.0 {
                    self.hold_back(event::now()).unwrap_or(0.05)
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
            select! {
                recv(res_rx) -> msg => {
                    if let Ok(d) = msg {
                        busy = busy.saturating_sub(1);
                        if let Some(n) = self.in_flight.get_mut(&d.job.endpoint_id) {
                            *n = n.saturating_sub(1);
                        }
                        let f = self.finish(d, event::now());
                        unrecorded.push(f);
                    }
                }
                recv(wake_rx) -> _ => {}
                default(wait) => {}
            }
        }
        // In-flight attempts are abandoned (see module docs); record what already finished.
        for d in res_rx.try_iter() {
            unrecorded.push(self.finish(d, event::now()));
        }
        if !unrecorded.is_empty() {
            if let Err(e) = db(|| outbox.record(&unrecorded)) {
                self.shared.note_error(e);
            }
        }
        let _ = db(|| outbox.checkpoint());
        drop(job_tx);
        stop
    }

    /// How many deliveries of an endpoint may start now: breaker (open: none; half-open: one
    /// probe at a time) and rate limit.
    fn allowed(&mut self, id: i64, free: usize, now: f64) -> usize {
        let mut n = free;
        if let Some(&(fails, until)) = self.health.get(&id) {
            if fails >= crate::outbox::BREAKER_THRESHOLD {
                if now < until {
                    return 0;
                }
                let probing = self.in_flight.get(&id).copied().unwrap_or(0);
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
        let breakers = self
            .health
            .values()
            .filter(|(f, u)| *f >= crate::outbox::BREAKER_THRESHOLD && *u > now)
            .map(|(_, u)| u - now);
        let buckets = self.buckets.values().map(|b| b.wait()).filter(|w| *w > 0.0);
        breakers
            .chain(buckets)
            .reduce(f64::min)
            .map(|w| w.max(0.001))
    }

    fn finish(&self, d: Done, now: f64) -> Finished {
        let Done { job, outcome } = d;
        let decision = delivery::decide(
            &outcome,
            &job.target.retry,
            job.attempt.max(1) as u32,
            now,
            retry::jitter_unit(),
            &job.target.url,
        );
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
            breaker_pause: crate::outbox::breaker_pause(
                &job.target.retry.delays,
                self.health.get(&job.endpoint_id).map_or(0, |h| h.0) + 1,
            ),
            endpoint_failure: match outcome.http_status {
                None => true,
                Some(code) => delivery::classify_status(code) == delivery::StatusClass::Retry,
            },
            decision,
        }
    }
}
