//! Process-level hazards: fork safety, process identity and keeping the `.so` mapped.
//!
//! PHP forks (php-fpm starts workers after MINIT; scripts call `pcntl_fork`). A child inherits
//! every lock held by the parent's threads at the instant of `fork()`, but not the threads. If a
//! sender thread was inside SQLite (whose allocator and mutexes are process-global), the child can
//! hang forever on its first SQLite call. So every SQLite call made by a background thread passes a
//! small [`gate`]; a `pthread_atfork` prepare handler closes the gate and waits until no thread is
//! inside before the fork proceeds.
//!
//! ```text
//!  sender thread          PHP thread (pcntl_fork)
//!  gate::enter() ──┐      prepare(): FORKING=1, wait ACTIVE==0
//!   sqlite call    │      fork()
//!  drop guard ─────┘      parent(): FORKING=0     child(): FORKING=0, ACTIVE=0, close lock fds
//! ```
//!
//! The child also closes the descriptors of the sender lock and wake socket it inherited: flock
//! locks belong to the open file description, so an inherited descriptor would keep the parent's
//! sender lock alive after the parent dies and no process could take over.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering::SeqCst};
use std::sync::Once;
use std::time::{Duration, Instant};

static ACTIVE: AtomicUsize = AtomicUsize::new(0);
static FORKING: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

const NO_FD: i32 = -1;
static CHILD_CLOSE_FDS: [AtomicI32; 64] = [const { AtomicI32::new(NO_FD) }; 64];

/// Held while a background thread is inside SQLite.
pub struct GateGuard(());

impl Drop for GateGuard {
    fn drop(&mut self) {
        ACTIVE.fetch_sub(1, SeqCst);
    }
}

/// Enters the gate (waits while a fork is being prepared).
pub fn gate() -> GateGuard {
    loop {
        ACTIVE.fetch_add(1, SeqCst);
        if !FORKING.load(SeqCst) {
            return GateGuard(());
        }
        ACTIVE.fetch_sub(1, SeqCst);
        std::thread::sleep(Duration::from_micros(200));
    }
}

extern "C" fn prepare() {
    FORKING.store(true, SeqCst);
    // SQLite calls are bounded by the busy timeout; never hang the forking thread for ever.
    let deadline = Instant::now() + Duration::from_secs(30);
    while ACTIVE.load(SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(50));
    }
}

extern "C" fn parent() {
    FORKING.store(false, SeqCst);
}

extern "C" fn child() {
    FORKING.store(false, SeqCst);
    ACTIVE.store(0, SeqCst);
    for slot in CHILD_CLOSE_FDS.iter() {
        let fd = slot.swap(NO_FD, SeqCst);
        if fd >= 0 {
            // SAFETY: closing a descriptor number we registered; async-signal-safe.
            unsafe { libc::close(fd) };
        }
    }
}

/// Installs the fork handlers and pins the extension in memory (once per process image).
pub fn install() {
    INSTALL.call_once(|| {
        // SAFETY: plain C callbacks with no captured state.
        unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
        pin_library();
    });
}

/// Registers a descriptor that a forked child must close at once.
pub fn close_in_child(fd: i32) {
    for slot in CHILD_CLOSE_FDS.iter() {
        if slot.compare_exchange(NO_FD, fd, SeqCst, SeqCst).is_ok() {
            return;
        }
    }
}

/// Unregisters a descriptor registered with [`close_in_child`], before it is closed (its number may
/// be reused by PHP afterwards).
pub fn keep_in_child(fd: i32) {
    for slot in CHILD_CLOSE_FDS.iter() {
        let _ = slot.compare_exchange(fd, NO_FD, SeqCst, SeqCst);
    }
}

/// Threads abandoned at shutdown must never run unmapped code: mark our own `.so` NODELETE.
fn pin_library() {
    // SAFETY: dladdr on the address of one of our functions; dlopen with RTLD_NOLOAD only bumps
    // the reference count of the already loaded object and sets NODELETE.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        let addr = pin_library as *const () as *const libc::c_void;
        if libc::dladdr(addr, &mut info) != 0 && !info.dli_fname.is_null() {
            libc::dlopen(
                info.dli_fname,
                libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_NODELETE,
            );
        }
    }
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`).
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Start time of a process in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// This machine's host name (empty when unknown).
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into our buffer.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if r != 0 {
        return String::new();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The pid in a lease identity `<boot id>:<pid>:<start time>`.
pub fn identity_pid(identity: &str) -> Option<u32> {
    identity.rsplit(':').nth(1)?.parse().ok()
}

/// Identity of this process for leases: `<boot id>:<pid>:<start time>`.
pub fn process_identity() -> String {
    let pid = std::process::id();
    format!("{}:{}:{}", boot_id(), pid, start_time(pid).unwrap_or(0))
}

/// Whether the process named by a lease identity is still running (same boot, pid and start time).
pub fn identity_alive(identity: &str, my_boot: &str) -> bool {
    let mut parts = identity.rsplitn(3, ':');
    let (Some(start), Some(pid), Some(boot)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    if boot != my_boot {
        return false;
    }
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
        return false;
    };
    start_time(pid) == Some(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_of_self_is_alive_and_bogus_ones_are_not() {
        let me = process_identity();
        let boot = boot_id();
        assert!(identity_alive(&me, &boot));
        let pid = std::process::id();
        assert!(!identity_alive(&format!("{boot}:{pid}:1"), &boot));
        assert!(!identity_alive(
            &format!("other-boot:{pid}:{}", start_time(pid).unwrap()),
            &boot
        ));
        assert!(!identity_alive("garbage", &boot));
        assert!(!identity_alive(&format!("{boot}:999999999:5"), &boot));
    }

    #[test]
    fn gate_counts() {
        {
            let _g = gate();
            assert!(ACTIVE.load(SeqCst) >= 1);
        }
    }
}
