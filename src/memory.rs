//! Giving back the heap a burst of deliveries freed.
//!
//! Each of the sender's threads allocates from a malloc arena of its own (glibc), and an arena
//! keeps the memory its thread freed: after a burst the delivery threads' buffers, the sender's
//! statements and results stay resident although nothing uses them. Once the sender is idle
//! after enough work, `malloc_trim(0)` returns the free pages of every arena to the system (it
//! frees nothing in use; the next burst faults the pages in again).

use std::time::{Duration, Instant};

/// Attempts finished since the last trim before another is worth its cost.
const AFTER_ATTEMPTS: usize = 256;
/// At most one trim per this interval, however bursty the traffic.
const EVERY: Duration = Duration::from_secs(5);

/// Decides when an idle sender trims the heap.
#[derive(Debug, Default)]
pub struct Trim {
    since: usize,
    last: Option<Instant>,
}

impl Trim {
    /// `n` more attempts finished.
    pub fn note(&mut self, n: usize) {
        self.since = self.since.saturating_add(n);
    }

    /// Whether an idle sender should trim now.
    pub fn due(&self, now: Instant) -> bool {
        self.since >= AFTER_ATTEMPTS && self.last.is_none_or(|t| now.duration_since(t) >= EVERY)
    }

    /// Trims (if due) and starts counting again.
    pub fn run_if_due(&mut self, now: Instant) -> bool {
        if !self.due(now) {
            return false;
        }
        release_free_heap();
        self.since = 0;
        self.last = Some(now);
        true
    }
}

/// Returns the free memory of every malloc arena to the system.
pub fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only takes each arena's lock and releases free pages.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_after_enough_attempts_at_most_once_per_interval() {
        let t0 = Instant::now();
        let mut t = Trim::default();
        assert!(!t.run_if_due(t0), "nothing done yet");
        t.note(AFTER_ATTEMPTS - 1);
        assert!(!t.due(t0));
        t.note(1);
        assert!(t.run_if_due(t0));
        assert!(!t.due(t0), "the count starts again");
        t.note(AFTER_ATTEMPTS);
        assert!(!t.due(t0 + EVERY / 2), "too soon after the last trim");
        assert!(t.run_if_due(t0 + EVERY));
    }

    fn resident_kb() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        let pages: usize = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        // SAFETY: sysconf only reads a system constant.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        pages * page / 1024
    }

    // malloc_trim is glibc's; elsewhere `release_free_heap` does nothing.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn releasing_returns_freed_memory_and_keeps_what_is_in_use() {
        // A thread of its own has an arena of its own, as a delivery thread does. It frees 15 of
        // every 16 chunks it touched: free memory between chunks in use, which glibc does not
        // return by itself.
        std::thread::spawn(|| {
            let chunks: Vec<Vec<u8>> = (0..256).map(|i| vec![i as u8; 32 * 1024]).collect();
            let kept: Vec<(usize, Vec<u8>)> = chunks
                .into_iter()
                .enumerate()
                .filter(|(i, _)| i % 16 == 0)
                .collect();
            let before = resident_kb();
            release_free_heap();
            let after = resident_kb();
            // 7.5 MB were freed; other tests of the process allocate meanwhile.
            assert!(
                before.saturating_sub(after) >= 3072,
                "{before} KB resident before, {after} KB after"
            );
            assert!(kept.iter().all(|(i, v)| v.iter().all(|b| *b == *i as u8)));
        })
        .join()
        .unwrap();
    }
}
