//! The delivery threads' job queue. A thread without work sleeps on a condition variable at
//! once: a channel's receiver first spins and yields the CPU a few times (crossbeam's back-off),
//! which suits a message that arrives within microseconds, but a delivery thread's next job comes
//! with the sender's next cycle, hundreds of microseconds later. Measured with a fast CRM at
//! concurrency 4: `sched_yield` was 21 % of the delivery threads' CPU (PROFILE.md).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

pub struct Jobs<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

struct State<T> {
    queue: VecDeque<T>,
    closed: bool,
}

impl<T> Default for Jobs<T> {
    fn default() -> Self {
        Jobs {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
        }
    }
}

impl<T> Jobs<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A thread that panicked holding the lock left the queue consistent (push/pop only).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a job for the next idle thread. Returns it back when the queue is closed.
    pub fn push(&self, job: T) -> Result<(), T> {
        let mut s = self.lock();
        if s.closed {
            return Err(job);
        }
        s.queue.push_back(job);
        drop(s);
        self.ready.notify_one();
        Ok(())
    }

    /// The next job, waiting for one; `None` once the queue is closed and empty.
    pub fn pop(&self) -> Option<T> {
        let mut s = self.lock();
        loop {
            if let Some(job) = s.queue.pop_front() {
                return Some(job);
            }
            if s.closed {
                return None;
            }
            s = self.ready.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// No more jobs: threads finish what is queued, then `pop` returns `None`.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

/// Closes the queue when dropped: the coordinator holds one, so its threads end however it
/// leaves (as a channel's receivers end when its sender is dropped).
pub struct CloseOnDrop<T>(pub Arc<Jobs<T>>);

impl<T> Drop for CloseOnDrop<T> {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_reach_waiting_threads_and_close_ends_them_after_the_queue_is_drained() {
        let jobs: Arc<Jobs<u32>> = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let (jobs, tx) = (jobs.clone(), tx.clone());
                std::thread::spawn(move || {
                    while let Some(j) = jobs.pop() {
                        tx.send(j).unwrap();
                    }
                })
            })
            .collect();
        let closer = CloseOnDrop(jobs.clone());
        for j in 0..100 {
            jobs.push(j).unwrap();
        }
        drop(closer);
        assert_eq!(jobs.push(7), Err(7), "a closed queue takes no job");
        for t in threads {
            t.join().unwrap();
        }
        drop(tx);
        let mut got: Vec<u32> = rx.iter().collect();
        got.sort();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    }
}
