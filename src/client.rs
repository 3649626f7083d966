//! The request side of one PHP process: dispatch, flush, status and the log queries, over a
//! per-process registry of open outboxes and their senders. No PHP types: the PHP layer copies
//! INI values into [`IniValues`] and converts the results.
//!
//! The registry is keyed by PID. After a fork the child finds a foreign PID and forgets (never
//! closes, never reuses) the parent's SQLite connections and thread handles, then starts fresh.
//! Only the PHP thread touches the registry, so its mutex is never held by another thread at fork.

use crate::config::EndpointConfig;
use crate::config::{self, DefaultEndpoint, IniValues};
use crate::error::{quote, Error, Result};
use crate::outbox::{
    EventDetail, EventFilter, EventSummary, Location, NewEvent, Outbox, Role, Status,
};
use crate::secrets::StoreKey;
use crate::worker::{Sender, SenderOptions, Waker, WorkerState};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

struct Entry {
    outbox: Option<Outbox>,
    sender: Option<Sender>,
    sender_started: Option<Instant>,
    waker: Option<Waker>,
    recorded: Option<DefaultEndpoint>,
    /// `woosync.key` as last seen, and parsed.
    key_text: Option<String>,
    key: Option<StoreKey>,
}

struct ProcessState {
    pid: u32,
    entries: HashMap<Location, Entry>,
    /// The INI values last validated for dispatch, with what they gave.
    validated: Option<(IniValues, DefaultEndpoint, usize)>,
}

static STATE: Mutex<Option<ProcessState>> = Mutex::new(None);

fn with_state<T>(f: impl FnOnce(&mut ProcessState) -> T) -> T {
    let mut guard = STATE.lock().unwrap_or_else(|p| p.into_inner());
    let pid = std::process::id();
    if guard.as_ref().is_some_and(|s| s.pid != pid) {
        // Forked child: the parent's connections and threads are not ours. Never drop them.
        if let Some(old) = guard.take() {
            std::mem::forget(old);
        }
    }
    let state = guard.get_or_insert_with(|| ProcessState {
        pid,
        entries: HashMap::new(),
        validated: None,
    });
    f(state)
}

fn entry<'a>(state: &'a mut ProcessState, path: &Location) -> &'a mut Entry {
    state.entries.entry(path.clone()).or_insert_with(|| Entry {
        outbox: None,
        sender: None,
        sender_started: None,
        waker: None,
        recorded: None,
        key_text: None,
        key: None,
    })
}

impl Entry {
    fn outbox(&mut self, path: &Location) -> Result<&mut Outbox> {
        if self.outbox.is_none() {
            self.outbox = Some(Outbox::open_at(path, Role::Request)?);
        }
        self.outbox
            .as_mut()
            .ok_or_else(|| Error::storage("outbox not open"))
    }

    /// Parses `woosync.key` when it changed and hands it to this process's sender.
    fn set_key(&mut self, ini: &IniValues) -> Result<()> {
        if self.key_text.as_deref() != Some(ini.key.as_str()) {
            self.key = StoreKey::parse(&ini.key)?;
            self.key_text = Some(ini.key.clone());
        }
        if let Some(s) = &self.sender {
            s.set_key(self.key.clone());
        }
        Ok(())
    }

    /// Starts (or restarts after a failure, at most once a second) this process's sender thread.
    fn ensure_sender(&mut self, path: &Location, ini: &IniValues) {
        // Every path that may start the sender hands it the storage key (a malformed key is
        // reported by dispatch; here it simply is not handed over).
        let _ = self.set_key(ini);
        let concurrency = config::concurrency(&ini.concurrency).unwrap_or(4);
        let retention_days = config::retention_days(&ini.retention_days).unwrap_or(7.0);
        // A malformed list is reported by dispatch; the sender then allows nothing extra.
        let allow_networks =
            crate::destination::parse_list(&ini.allow_networks).unwrap_or_default();
        let stopped = self
            .sender
            .as_ref()
            .is_none_or(|s| s.state() == WorkerState::Stopped);
        let recently = self
            .sender_started
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1));
        if stopped && !recently {
            self.sender_started = Some(Instant::now());
            if let Ok(s) = Sender::start(SenderOptions {
                database: path.clone(),
                concurrency,
                retention_days,
                allow_networks,
            }) {
                s.set_key(self.key.clone());
                self.sender = Some(s);
            }
        }
    }

    fn wake(&mut self, path: &Location) {
        if self.sender.as_ref().is_some_and(|s| s.wake_local()) {
            return;
        }
        // A database shared by hosts is polled by its sender; a file's sender is on this host.
        if let Some(p) = path.sqlite_path() {
            self.waker.get_or_insert_with(|| Waker::new(p)).wake();
        }
    }

    fn record_default(&mut self, path: &Location, d: &DefaultEndpoint) -> Result<()> {
        if self.recorded.as_ref() != Some(d) {
            let key = self.key.clone();
            self.outbox(path)?
                .record_default_endpoint(d, key.as_ref())?;
            self.recorded = Some(d.clone());
        }
        Ok(())
    }
}

/// A `woosync.key` set while PHP runs (`ini_set`): every sender of this process gets it at once.
pub fn offer_key(key: &StoreKey) {
    with_state(|st| {
        for e in st.entries.values() {
            if let Some(s) = &e.sender {
                s.set_key(Some(key.clone()));
            }
        }
    });
}

/// Dispatch options already converted from PHP.
#[derive(Debug, Clone, Default)]
pub struct DispatchOptions {
    pub key: Option<String>,
    pub coalesce: bool,
    pub endpoints: Option<Vec<String>>,
    /// Sent exactly as given instead of the woosync envelope (e.g. WooCommerce's own payload).
    pub raw_body: Option<Vec<u8>>,
    /// Headers sent with every attempt of this event.
    pub headers: Vec<(String, String)>,
}

/// Validates, stores durably, wakes the sender; returns the event id.
pub fn dispatch(
    ini: &IniValues,
    topic: &str,
    data_json: &str,
    opts: &DispatchOptions,
) -> Result<String> {
    crate::event::validate_topic(topic)?;
    if let Some(k) = &opts.key {
        crate::event::validate_key(k)?;
    }
    config::validate_headers("option \"headers\"", &opts.headers)?;
    if opts.coalesce && opts.key.is_none() {
        return Err(Error::input(
            "option \"coalesce\" needs a \"key\": events are coalesced per key, topic and endpoint",
        ));
    }
    let path = config::database(ini)?;
    with_state(|st| {
        // Settings are validated once per distinct set of INI values, not on every dispatch.
        let (default, max) = match &st.validated {
            Some((seen, d, m)) if seen == ini => (d.clone(), *m),
            _ => {
                let d = DefaultEndpoint::from_ini(ini)?;
                let m = config::max_payload_bytes(&ini.max_payload_bytes)?;
                config::concurrency(&ini.concurrency)?;
                config::retention_days(&ini.retention_days)?;
                config::shutdown_grace(&ini.shutdown_grace)?;
                crate::destination::parse_list(&ini.allow_networks)
                    .map_err(|e| Error::config(format!("woosync.allow_networks: {e}")))?;
                StoreKey::parse(&ini.key)?;
                st.validated = Some((ini.clone(), d.clone(), m));
                (d, m)
            }
        };
        let ev = NewEvent {
            topic,
            key: opts.key.as_deref(),
            coalesce: opts.coalesce,
            endpoints: opts.endpoints.clone(),
            data: data_json,
            max_body_bytes: max,
            raw_body: opts.raw_body.as_deref(),
            headers: (!opts.headers.is_empty()).then(|| config::headers_to_json(&opts.headers)),
        };
        let e = entry(st, &path);
        e.set_key(ini)?;
        e.record_default(&path, &default)?;
        let (at, id) = match e.outbox(&path)?.enqueue(&ev) {
            Ok(id) => (path.clone(), id),
            // The outbox was moved (woosync_migrate) and woosync.database not switched yet: the
            // event goes where the outbox went, with its key's next sequence number there.
            Err(Error::Moved(to)) => {
                let target = config::database_location(&to)?;
                let t = entry(st, &target);
                t.set_key(ini)?;
                t.record_default(&target, &default)?;
                let id = t.outbox(&target)?.enqueue(&ev)?;
                (target, id)
            }
            Err(err) => return Err(err),
        };
        let e = entry(st, &at);
        e.ensure_sender(&at, ini);
        e.wake(&at);
        Ok(id)
    })
}

/// Waits until nothing is pending in the outbox (any process's events) or the timeout passes.
pub fn flush(ini: &IniValues, timeout: f64) -> Result<bool> {
    let default = DefaultEndpoint::from_ini(ini)?;
    let path = config::database(ini)?;
    if !timeout.is_finite() {
        return Err(Error::input(
            "woosync_flush: the timeout must be a finite number of seconds",
        ));
    }
    let deadline = Instant::now() + Duration::from_secs_f64(timeout.clamp(0.0, 86_400.0));
    let mut pause = Duration::from_micros(200);
    let mut first = true;
    loop {
        let pending = with_state(|st| {
            let e = entry(st, &path);
            e.set_key(ini)?;
            e.record_default(&path, &default)?;
            e.ensure_sender(&path, ini);
            // The first look reads what status reads (one snapshot, O(1)), so a damaged outbox
            // raises here as it does in every other function; later looks only count.
            let n = if first {
                e.outbox(&path)?.status()?.pending()
            } else {
                e.outbox(&path)?.pending()?
            };
            if n > 0 {
                // A damaged outbox that this process's sender cannot read raises, as every other
                // function does, instead of waiting out the timeout.
                if let Some(fatal) = e.sender.as_ref().and_then(|s| s.fatal()) {
                    return Err(Error::Corrupt(fatal));
                }
                e.wake(&path);
            }
            Ok::<i64, Error>(n)
        })?;
        first = false;
        if pending == 0 {
            return Ok(true);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// Status of the outbox plus this process's worker state.
#[derive(Debug, Clone)]
pub struct Report {
    pub database: Location,
    /// A storage key is configured in this process (`woosync.key`).
    pub key_configured: bool,
    pub status: Status,
    pub worker: WorkerState,
    pub worker_error: Option<String>,
    /// Pid and host of the process currently delivering for this outbox (None: none is known alive).
    pub sender_pid: Option<u32>,
    pub sender_host: Option<String>,
    /// Things the owner should know about the outbox (e.g. an outbox left at the old default
    /// location that is not used).
    pub notices: Vec<String>,
}

pub fn status(ini: &IniValues) -> Result<Report> {
    let path = config::database(ini)?;
    with_state(|st| {
        let e = entry(st, &path);
        // The php.ini endpoint shows from the first call, not only after the first dispatch (a
        // malformed setting is reported by dispatch; status still shows what is stored).
        if let Ok(default) = DefaultEndpoint::from_ini(ini) {
            if e.set_key(ini).is_ok() {
                e.record_default(&path, &default)?;
            }
        }
        let status = e.outbox(&path)?.status()?;
        e.ensure_sender(&path, ini);
        // A sender thread just started decides within moments whether it leads or stands by.
        let settle = Instant::now() + Duration::from_millis(100);
        while e
            .sender
            .as_ref()
            .is_some_and(|s| s.state() == WorkerState::Starting)
            && Instant::now() < settle
        {
            std::thread::sleep(Duration::from_micros(200));
        }
        let worker = e
            .sender
            .as_ref()
            .map_or(WorkerState::Stopped, |s| s.state());
        let worker_error = e.sender.as_ref().and_then(|s| s.error());
        let key_configured = StoreKey::parse(&ini.key).ok().flatten().is_some();
        // This process's own role is authoritative; another process's is read from the outbox:
        // on one host believed while that process runs; across hosts (MySQL) while its lease
        // has not expired (no pid on another host is checked).
        let (sender_pid, sender_host) = if worker == WorkerState::Sender {
            (Some(std::process::id()), Some(crate::fork::host_name()))
        } else {
            let boot = crate::fork::boot_id();
            match &status.sender {
                Some(id) if path.is_shared() || crate::fork::identity_alive(id, &boot) => {
                    (crate::fork::identity_pid(id), status.sender_host.clone())
                }
                _ => (None, None),
            }
        };
        let mut notices = Vec::new();
        if let Some(to) = &status.moved_to {
            notices.push(format!(
                "this outbox was moved to {} (woosync_migrate): dispatches are stored there; set woosync.database to it",
                crate::outbox::MysqlUrl::mask_text(to)
            ));
        }
        if status.importing_from.is_some() {
            notices.push(
                "a move into this outbox is not finished (run woosync_migrate again until it says done): nothing is sent until then"
                    .to_string(),
            );
        }
        if path.sqlite_path() == Some(crate::files::default_path().as_path()) {
            notices.extend(crate::files::legacy_notice());
        }
        Ok(Report {
            database: path.clone(),
            key_configured,
            status,
            worker,
            worker_error,
            sender_pid,
            sender_host,
            notices,
        })
    })
}

/// Runs this outbox's sender in the calling process (the CLI's `woosync_serve`) until `seconds`
/// pass or SIGTERM/SIGINT arrive, and returns the attempts it finished (delivered or dead).
///
/// It joins the election like any process: standby while a php-fpm worker sends, sender when that
/// worker goes. When the time is up the sender keeps running in this process (so calling it in a
/// loop loses nothing between calls) until the next call or the process's exit; on a signal it
/// winds down within `woosync.shutdown_grace` before returning, and later calls return 0 at once.
pub fn serve(ini: &IniValues, seconds: f64) -> Result<u64> {
    if seconds.is_nan() || seconds < 0.0 {
        return Err(Error::input(
            "woosync_serve: seconds must be zero or more (INF: until SIGTERM or SIGINT)",
        ));
    }
    let path = config::database(ini)?;
    let default = DefaultEndpoint::from_ini(ini)?;
    let grace = config::shutdown_grace(&ini.shutdown_grace)?;
    if crate::signals::stop_requested() {
        return Ok(0);
    }
    let before = with_state(|st| {
        let e = entry(st, &path);
        e.set_key(ini)?;
        e.record_default(&path, &default)?;
        e.ensure_sender(&path, ini);
        Ok::<u64, Error>(e.sender.as_ref().map_or(0, |s| s.finished()))
    })?;
    let _signals = crate::signals::install();
    let deadline = if seconds.is_finite() {
        Some(Instant::now() + Duration::from_secs_f64(seconds.min(1e9)))
    } else {
        None
    };
    loop {
        if crate::signals::stop_requested() || deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let fatal = with_state(|st| {
            let e = entry(st, &path);
            // A sender that stopped (e.g. the outbox became unusable) is restarted, as any
            // woosync call of this process would.
            e.ensure_sender(&path, ini);
            e.sender.as_ref().and_then(|s| s.fatal())
        });
        if let Some(f) = fatal {
            return Err(Error::Corrupt(f));
        }
        let nap = deadline.map_or(Duration::from_millis(100), |d| {
            d.saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100))
        });
        std::thread::sleep(nap);
    }
    let signaled = crate::signals::stop_requested();
    let done = with_state(|st| {
        let e = entry(st, &path);
        let s = e.sender.as_ref()?;
        if signaled {
            s.shutdown(grace);
        }
        Some(s.finished())
    });
    Ok(done.unwrap_or(before).saturating_sub(before))
}

/// The Prometheus text exposition of this outbox (`woosync_metrics()`).
pub fn metrics(ini: &IniValues) -> Result<String> {
    let report = status(ini)?;
    let path = &report.database;
    let counters = with_state(|st| entry(st, path).outbox(path)?.counters())?;
    let now = crate::event::now();
    let mut names = std::collections::HashMap::new();
    let mut endpoints = Vec::new();
    for e in &report.status.endpoints {
        let r = &e.row;
        names.insert(r.id, r.name.clone());
        if r.name.contains("#deleted-") {
            continue;
        }
        endpoints.push(crate::metrics::EndpointGauges {
            name: r.name.clone(),
            pending: e.counts[0] + e.counts[1] + e.counts[2],
            in_flight: e.counts[2],
            breaker_open: r.consecutive_failures >= crate::outbox::BREAKER_THRESHOLD
                && r.breaker_until > now,
            refused: r.refused_reason.is_some(),
            disabled: r.disabled_at.is_some(),
        });
    }
    let snapshot = crate::metrics::Snapshot {
        counters: counters
            .into_iter()
            .filter_map(|(id, n, l, v)| {
                let name = names.get(&id)?;
                (!name.contains("#deleted-")).then(|| (name.clone(), n, l, v))
            })
            .collect(),
        endpoints,
        oldest_pending_age: report.status.oldest_pending_at.map(|t| (now - t).max(0.0)),
        unrouted: report.status.unrouted,
        sender_up: report.sender_pid.is_some(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    Ok(crate::metrics::render(&snapshot))
}

/// Requeues a dead or delivered event (replay) or routes an unrouted one.
pub fn retry(ini: &IniValues, event_id: &str) -> Result<bool> {
    if !crate::event::is_event_id(event_id) {
        return Err(Error::input(format!(
            "{} is not an event id (expected evt_ followed by 26 ULID characters)",
            quote(event_id)
        )));
    }
    let default = DefaultEndpoint::from_ini(ini)?;
    let path = config::database(ini)?;
    with_state(|st| {
        let e = entry(st, &path);
        e.set_key(ini)?;
        e.record_default(&path, &default)?;
        let r = e.outbox(&path)?.retry_event(event_id)?;
        e.ensure_sender(&path, ini);
        e.wake(&path);
        Ok(r == Some(true))
    })
}

/// Requeues every dead delivery (optionally of one endpoint).
pub fn retry_dead(ini: &IniValues, endpoint: Option<&str>) -> Result<usize> {
    let path = config::database(ini)?;
    with_state(|st| {
        let e = entry(st, &path);
        let n = e.outbox(&path)?.retry_dead(endpoint)?;
        e.ensure_sender(&path, ini);
        e.wake(&path);
        Ok(n)
    })
}

pub fn event(ini: &IniValues, event_id: &str) -> Result<Option<EventDetail>> {
    let path = config::database(ini)?;
    with_state(|st| entry(st, &path).outbox(&path)?.event(event_id))
}

pub fn events(ini: &IniValues, filter: &EventFilter) -> Result<Vec<EventSummary>> {
    let path = config::database(ini)?;
    with_state(|st| entry(st, &path).outbox(&path)?.events(filter))
}

/// At a request's start: the first request of a process starts the sender thread when the outbox
/// exists, so retries and other processes' abandoned events are delivered by any live process.
/// Opens nothing on the PHP thread.
pub fn request_started(ini: &IniValues) {
    let Ok(path) = config::database(ini) else {
        return;
    };
    if !path.may_exist() {
        return;
    }
    with_state(|st| {
        let e = entry(st, &path);
        if e.sender.is_none() {
            e.ensure_sender(&path, ini);
        }
    });
}

/// Module shutdown: each sender finishes due work within the grace, then its threads are abandoned.
pub fn shutdown(grace: f64) {
    let deadline = Instant::now() + Duration::from_secs_f64(grace.max(0.0));
    with_state(|st| {
        for e in st.entries.values() {
            if let Some(s) = &e.sender {
                let left = deadline
                    .saturating_duration_since(Instant::now())
                    .as_secs_f64();
                s.shutdown(left);
            }
        }
        // Thread handles and connections of this process stay as they are until exit: joining or
        // closing them here could wait on the network.
        for (_, e) in st.entries.drain() {
            std::mem::forget(e);
        }
    });
}

/// Creates or updates a named endpoint in the outbox (`woosync_endpoint_save`).
pub fn endpoint_save(ini: &IniValues, name: &str, cfg: &EndpointConfig) -> Result<()> {
    let path = config::database(ini)?;
    with_state(|st| {
        let e = entry(st, &path);
        e.set_key(ini)?;
        let key = e.key.clone();
        e.outbox(&path)?.save_endpoint(name, cfg, key.as_ref())?;
        e.ensure_sender(&path, ini);
        e.wake(&path);
        Ok(())
    })
}

/// Deletes a named endpoint; false when there was none.
pub fn endpoint_delete(ini: &IniValues, name: &str) -> Result<bool> {
    let path = config::database(ini)?;
    with_state(|st| entry(st, &path).outbox(&path)?.delete_endpoint(name))
}

/// Deletes finished events older than `days`; returns how many.
pub fn purge(ini: &IniValues, days: f64) -> Result<usize> {
    if !(days.is_finite() && days >= 0.0) {
        return Err(Error::input("older_than_days must be zero or more"));
    }
    let path = config::database(ini)?;
    with_state(|st| entry(st, &path).outbox(&path)?.purge(days, 500))
}

/// Privacy erasure of one ordering key; returns (deleted, still pending).
pub fn erase(ini: &IniValues, key: &str) -> Result<(usize, usize)> {
    crate::event::validate_key(key)?;
    let path = config::database(ini)?;
    with_state(|st| entry(st, &path).outbox(&path)?.erase_key(key))
}

/// What one call of `woosync_migrate` did.
#[derive(Debug, Clone)]
pub struct MigrateReport {
    pub from: Location,
    pub to: Location,
    pub step: crate::outbox::migrate::Report,
}

/// Moves this outbox (woosync.database) to `to` — a path or a mysql:// URL — one batch of at most
/// `limit` events per call (see outbox/migrate.rs). Call again until `done`.
pub fn migrate(ini: &IniValues, to: &str, limit: usize) -> Result<MigrateReport> {
    let from = config::database(ini)?;
    let target = config::database_location(to)?;
    if target == from {
        return Err(Error::input(
            "woosync_migrate: the target is the outbox itself",
        ));
    }
    let default = DefaultEndpoint::from_ini(ini)?;
    let from_text = match &from {
        Location::Sqlite(p) => p.to_string_lossy().into_owned(),
        Location::Mysql(_) => ini.database.trim().to_string(),
    };
    with_state(|st| {
        let e = entry(st, &from);
        e.set_key(ini)?;
        e.record_default(&from, &default)?;
        let mut src = e.outbox.take();
        if src.is_none() {
            src = Some(Outbox::open_at(&from, Role::Request)?);
        }
        let t = entry(st, &target);
        t.set_key(ini)?;
        let mut dst = t.outbox.take();
        if dst.is_none() {
            dst = Some(Outbox::open_at(&target, Role::Request)?);
        }
        let (Some(mut src), Some(mut dst)) = (src, dst) else {
            return Err(Error::storage("outbox not open"));
        };
        let r =
            crate::outbox::migrate::step(&mut src, &mut dst, &from_text, to.trim(), limit.max(1));
        entry(st, &from).outbox = Some(src);
        let t = entry(st, &target);
        t.outbox = Some(dst);
        t.ensure_sender(&target, ini);
        t.wake(&target);
        Ok(MigrateReport {
            from: from.clone(),
            to: target.clone(),
            step: r?,
        })
    })
}
