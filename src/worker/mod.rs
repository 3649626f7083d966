//! The sender: one process per outbox delivers, with a pool of HTTP threads.
//!
//! ```text
//!  any PHP process                         the elected process (see election.rs)
//!  ───────────────                         ─────────────────────────────────────
//!  dispatch: INSERT (commit) ──────┐       woosync-sender (coordinator)
//!  wake: channel try_send (same    │         loop: record results ─┐ one short
//!        process) or datagram ─────┼──────▶        claim due rows ─┘ txn each
//!        to \0woosync-<hash>       │               send jobs ──▶ woosync-delivery-1..N (ureq)
//!        (SQLite only)             │               wait: results | wake | next due | poll (MySQL)
//!  woosync-sender in standby:      │       woosync-wake: datagram socket ─▶ wake channel
//!  waits for the election ◀────────┘
//! ```
//!
//! Files: `mod.rs` (the handle the PHP thread keeps, the election loop), `election.rs` (lock
//! file for SQLite, fenced lease for MySQL), `coordinator.rs` (the cycle), `wake.rs` (wake-ups
//! between processes of one host).
//!
//! Threads start lazily (first dispatch, flush or request of a process), never in MINIT: php-fpm
//! forks its workers after MINIT and threads do not survive a fork. They never touch PHP state:
//! everything they need is in the outbox or in plain values copied on the PHP thread.
//! Every storage call they make passes the fork gate (see `fork.rs`).
//!
//! Shutdown: `Sender::shutdown(grace)` asks the coordinator to stop claiming once nothing is due or
//! the grace has passed; in-flight attempts still running then are abandoned. SQLite: their rows
//! stay leased by this process and the lock is held until the process exits, so the next sender
//! sees the holder dead and takes the rows over at once. MySQL: the lease is let go at once and
//! the next sender takes the rows of a fenced holder over at once.

mod checkpointer;
mod coordinator;
mod election;
mod jobs;
mod wake;

pub use wake::Waker;

use crate::error::Error;
use crate::event;
use crate::fork;
use crate::outbox::{Location, Outbox, Role};
use crate::secrets::StoreKey;
use coordinator::Coordinator;
use crossbeam_channel::{bounded, Receiver, Sender as ChanSender};
use election::{Election, Turn};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock};
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
    pub database: Location,
    pub concurrency: usize,
    pub retention_days: f64,
    /// `woosync.allow_networks` of this process: networks every endpoint may reach.
    pub allow_networks: Vec<crate::destination::Network>,
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
    /// Attempts this process's sender finished for good (delivered or dead), for woosync_serve().
    finished: AtomicU64,
    /// Until when (milliseconds on [`clock`]) this process may start attempts: the election may
    /// have passed to another process after it (MySQL lease); `u64::MAX` without a lease.
    may_send_until: AtomicU64,
}

/// Milliseconds on this process's monotonic clock.
fn clock(at: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    at.saturating_duration_since(epoch).as_millis() as u64
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
    /// Whether an attempt may start now (the election is surely still this process's).
    fn may_send(&self) -> bool {
        clock(Instant::now()) < self.may_send_until.load(SeqCst)
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
            finished: AtomicU64::new(0),
            may_send_until: AtomicU64::new(0),
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
        match WorkerState::from_u8(self.shared.state.load(SeqCst)) {
            // A sender that may have lost the election (a lease not renewed in time) does not
            // claim to be the sender: at most one process reports it.
            WorkerState::Sender if !self.shared.may_send() => WorkerState::Standby,
            s => s,
        }
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

    /// Attempts this sender finished for good (delivered or dead) since it started.
    pub fn finished(&self) -> u64 {
        self.shared.finished.load(SeqCst)
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
    /// Another process took the election over (MySQL lease not renewed in time), or the database
    /// could not be reached to lead: back to standing by.
    Lost,
}

/// How long a sender that yielded stays out of the election (a standby blocked on the lock gets it
/// at once), unless a key arrives or the process shuts down meanwhile.
const YIELD_PAUSE: Duration = Duration::from_secs(3);
/// A sender that got the election back without a better process around yields again after this.
const YIELD_EVERY: Duration = Duration::from_secs(30);

fn run(shared: &Arc<Shared>, opts: &SenderOptions, wake_tx: ChanSender<()>, wake_rx: Receiver<()>) {
    let me = fork::process_identity();
    let mut election = match Election::new(&opts.database, &me) {
        Ok(e) => e,
        Err(e) => {
            shared.note_error(e);
            return;
        }
    };
    let mut yielded = 0u32;
    loop {
        let Some(turn) = election.wait(shared, &wake_rx) else {
            return;
        };
        match lead(shared, opts, &wake_tx, &wake_rx, yielded, &me, turn) {
            Stop::Shutdown => return,
            Stop::Lost => shared.set_state(WorkerState::Standby),
            Stop::Yield => {
                yielded += 1;
                shared.set_state(WorkerState::Standby);
                election.step_down();
                let gen = shared.key_gen.load(SeqCst);
                let until = Instant::now() + election.yield_pause();
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

/// Runs this process as the outbox's sender until shutdown, until it yields the election or
/// until it finds the election lost.
fn lead(
    shared: &Arc<Shared>,
    opts: &SenderOptions,
    wake_tx: &ChanSender<()>,
    wake_rx: &Receiver<()>,
    yielded: u32,
    me: &str,
    turn: Turn,
) -> Stop {
    // The outbox connection of this thread.
    let mut outbox = match db(|| Outbox::open_at(&opts.database, Role::Sender)) {
        Ok(o) => o,
        Err(e) => {
            shared.note_error(e);
            return match turn {
                Turn::Lock => Stop::Shutdown,
                // The lease expires by itself; stand by and try again.
                Turn::Lease(_) => Stop::Lost,
            };
        }
    };
    // Deliveries are claimed under a name of this term, so a later term of the same process
    // takes over what an earlier one left in flight.
    let claimer = match turn {
        Turn::Lock => {
            shared.may_send_until.store(u64::MAX, SeqCst);
            me.to_string()
        }
        Turn::Lease(token) => {
            outbox.engine().set_fence(token, me);
            election::allow_until(shared, outbox.engine().renewed_at());
            format!("{me}#{token}")
        }
    };
    let offset = match db(|| outbox.engine().clock_offset()) {
        Ok(o) => o,
        Err(e) => {
            shared.note_error(e);
            0.0
        }
    };
    if let Err(e) = db(|| outbox.set_sender(me)) {
        shared.note_error(e);
    }
    shared.set_state(WorkerState::Sender);
    // Wake-ups from other processes of this host (a database shared by hosts is polled instead).
    let wake = opts
        .database
        .sqlite_path()
        .and_then(|p| wake::WakeListener::bind(p, wake_tx));
    let stop = Coordinator::new(
        shared.clone(),
        claimer,
        wake.is_some(),
        opts,
        yielded,
        offset,
    )
    .run(&mut outbox, wake_rx);
    drop(wake);
    // No new attempt from here on; a lease still held is let go at once (a standby takes over
    // within its next look instead of waiting for the lease to expire).
    if matches!(turn, Turn::Lease(_)) {
        shared.may_send_until.store(0, SeqCst);
        if stop != Stop::Lost {
            db(|| outbox.engine().release_lease());
        }
    }
    db(move || drop(outbox));
    stop
}
