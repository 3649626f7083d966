//! WAL checkpoints of a SQLite outbox, on a thread of their own. A checkpoint copies the log into
//! the database and syncs both: 10-15 ms every 100 ms while events flow (measured), and while the
//! coordinator ran it no finished attempt was recorded and no delivery thread got its next job.
//! Here the coordinator only asks; this thread checkpoints on its own connection (a PASSIVE
//! checkpoint never blocks writers, so the coordinator's cycles go on meanwhile).

use super::{db, Shared};
use crate::outbox::{Outbox, Role};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub struct Checkpointer {
    ask: Sender<()>,
    /// Closed (disconnected) when the thread has finished.
    done: Receiver<()>,
}

impl Checkpointer {
    /// Starts the thread; None when it cannot (the coordinator then checkpoints itself).
    pub fn start(path: &Path, shared: Arc<Shared>) -> Option<Checkpointer> {
        let (ask, asked) = bounded::<()>(1);
        let (done_tx, done) = bounded::<()>(0);
        let path = path.to_path_buf();
        let mine = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("woosync-checkpoint".into())
            .spawn(move || {
                let _done = done_tx;
                let shared = mine;
                let mut outbox = match db(|| Outbox::open(&path, Role::Sender)) {
                    Ok(o) => o,
                    Err(e) => {
                        shared.note_error(e);
                        return;
                    }
                };
                for () in asked.iter() {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        db(|| outbox.checkpoint())
                    }));
                    match r {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => shared.note_error(e),
                        Err(_) => {
                            shared.note_error("checkpoint thread panicked");
                            return;
                        }
                    }
                }
                db(move || drop(outbox));
            });
        match spawned {
            Ok(_) => Some(Checkpointer { ask, done }),
            Err(e) => {
                shared.note_error(format!("cannot start the checkpoint thread: {e}"));
                None
            }
        }
    }

    /// Asks for a checkpoint; one already asked for and not started yet covers this one. False
    /// when the thread is gone (the caller then checkpoints itself).
    pub fn ask(&self) -> bool {
        !matches!(
            self.ask.try_send(()),
            Err(crossbeam_channel::TrySendError::Disconnected(_))
        )
    }

    /// Lets the thread finish what it is doing and waits for that at most `wait` (it is not
    /// joined: a checkpoint waiting for a busy database gives up by itself later).
    pub fn stop(self, wait: Duration) {
        let Checkpointer { ask, done } = self;
        drop(ask);
        // Finished (disconnected) or timed out: either way the caller goes on.
        let _ = done.recv_timeout(wait);
    }
}
