//! Who sends for an outbox: exactly one process at a time.
//!
//! SQLite: whoever holds an exclusive `flock` on `<db>.lock` (opened without following links,
//! never truncated, see files.rs). Standbys block in `flock`; the kernel hands the lock over the
//! moment the holder dies, even by `kill -9`.
//!
//! MySQL/MariaDB (several hosts): whoever holds the row `<prefix>woosync_lease('sender')`, with an
//! expiry on the server's clock and a fencing token that every taking over increments. The
//! sender's cycle transactions renew it and check the token first (`Engine::check_fence`), so a
//! sender that was frozen or cut off and comes back after losing it writes nothing. Standbys look
//! at the lease over a short-lived connection when it is due to expire (at most every
//! [`LOOK_EVERY`], with jitter), so they hold no connection while waiting. No host-local file,
//! socket or pid check is involved.
//!
//! Fencing also covers the HTTP attempt: the lease counts from before the statement that renewed
//! it; the delivery threads start an attempt only within [`SEND_MARGIN`] of the lease's end on this
//! host's monotonic clock (`Shared::may_send_until`).

use super::{clock, db, Shared, WorkerState};
use crate::fork;
use crate::outbox::mysql::{LeaseCheck, Mysql, LEASE_SECONDS};
use crate::outbox::{Location, MysqlUrl};
use crossbeam_channel::Receiver;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

/// Longest a standby waits between two looks at the lease.
pub const LOOK_EVERY: Duration = Duration::from_secs(5);
/// Attempts start no later than this before the lease would expire unrenewed.
pub const SEND_MARGIN: Duration = Duration::from_secs(1);

/// Path of the lock file that elects the sender of a SQLite outbox.
pub fn lock_path(db: &Path) -> PathBuf {
    crate::files::companion(db, ".lock")
}

/// This process's turn as the sender.
#[derive(Debug, Clone, Copy)]
pub enum Turn {
    /// It holds the lock file.
    Lock,
    /// It holds the lease with this fencing token.
    Lease(i64),
}

pub enum Election {
    Lock {
        fd: i32,
    },
    Lease {
        url: MysqlUrl,
        me: String,
        host: String,
    },
}

impl Election {
    pub fn new(at: &Location, me: &str) -> Result<Election, crate::error::Error> {
        match at {
            Location::Sqlite(path) => {
                let file = crate::files::open_private(&lock_path(path), path)?;
                let fd = file.as_raw_fd();
                fork::close_in_child(fd);
                // Held until the process exits (see the module docs of worker), even after the
                // coordinator returns.
                std::mem::forget(file);
                Ok(Election::Lock { fd })
            }
            Location::Mysql(url) => Ok(Election::Lease {
                url: url.clone(),
                me: me.to_string(),
                host: fork::host_name(),
            }),
        }
    }

    /// Waits until this process is the sender. None: the process is shutting down (or the
    /// election cannot work at all, noted in `shared`).
    pub fn wait(&mut self, shared: &Shared, wake_rx: &Receiver<()>) -> Option<Turn> {
        match self {
            Election::Lock { fd } => {
                let fd = *fd;
                // SAFETY: flock on a descriptor we own (and never close).
                if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                    return Some(Turn::Lock);
                }
                shared.set_state(WorkerState::Standby);
                loop {
                    // SAFETY: as above; blocks until the holder releases or dies.
                    if unsafe { libc::flock(fd, libc::LOCK_EX) } == 0 {
                        break;
                    }
                    let e = std::io::Error::last_os_error();
                    if e.kind() != std::io::ErrorKind::Interrupted {
                        shared.note_error(format!("flock failed: {e}"));
                        return None;
                    }
                }
                if shared.past_deadline() {
                    // The process is exiting: leave the outbox to a live process.
                    return None;
                }
                Some(Turn::Lock)
            }
            Election::Lease { url, me, host } => loop {
                if shared.shutdown.load(SeqCst) {
                    return None;
                }
                let pause = match db(|| Mysql::acquire_lease(url, me, host)) {
                    Ok(LeaseCheck::Won(token)) => {
                        // Not "standby" while it starts to lead: shutdown waits for it to let
                        // the lease go again.
                        shared.set_state(WorkerState::Starting);
                        return Some(Turn::Lease(token));
                    }
                    Ok(LeaseCheck::Held { remaining, .. }) => {
                        shared.set_state(WorkerState::Standby);
                        shared.clear_error();
                        // Look again just after it would expire unrenewed.
                        Duration::from_secs_f64(remaining.clamp(0.05, LEASE_SECONDS))
                            .min(LOOK_EVERY)
                    }
                    Err(e) => {
                        shared.set_state(WorkerState::Standby);
                        shared.note_error(e);
                        Duration::from_secs(2)
                    }
                };
                // Jitter spreads the standbys of many processes and hosts.
                let jitter = Duration::from_millis((crate::retry::jitter_unit() * 500.0) as u64);
                let until = Instant::now() + pause + jitter;
                while Instant::now() < until && !shared.shutdown.load(SeqCst) {
                    let left = until.saturating_duration_since(Instant::now());
                    let _ = wake_rx.recv_timeout(left.min(Duration::from_millis(200)));
                }
            },
        }
    }

    /// How long a process that yielded stays out: long enough for every standby to look at the
    /// lease once (a standby in `flock` gets the lock at once).
    pub fn yield_pause(&self) -> Duration {
        match self {
            Election::Lock { .. } => super::YIELD_PAUSE,
            Election::Lease { .. } => LOOK_EVERY + Duration::from_secs(2),
        }
    }

    /// Gives the election up (yielding): a standby takes it.
    pub fn step_down(&mut self) {
        match self {
            // SAFETY: releases our lock; a blocked standby (if any) takes it now.
            Election::Lock { fd } => unsafe {
                libc::flock(*fd, libc::LOCK_UN);
            },
            // The coordinator's connection let the lease go already (see `lead`).
            Election::Lease { .. } => {}
        }
    }
}

/// Attempts may start until [`SEND_MARGIN`] before the lease confirmed at `renewed` would expire.
pub fn allow_until(shared: &Shared, renewed: Option<Instant>) {
    if let Some(at) = renewed {
        let until = at + Duration::from_secs_f64(LEASE_SECONDS) - SEND_MARGIN;
        shared.may_send_until.fetch_max(clock(until), SeqCst);
    }
}
