//! SIGTERM and SIGINT while `woosync_serve()` runs.
//!
//! The PHP CLI leaves both at their default action, which kills the process at once (in-flight
//! attempts abandoned mid-request). For the duration of a serve call we install a handler that
//! only raises a flag the serve loop polls, and that passes the signal on to the handler that was
//! installed before (pcntl_signal()'s, for instance), so a script's own handlers still run. The
//! previous handlers are restored when the call returns.
//!
//! PHP's own signal layer (zend_signal) keeps the kernel-level handler for itself and dispatches
//! to the handler a script registered (or to the default action: it re-raises the signal, which
//! would kill the process). So the signal is passed on only when PHP has a handler of its own for
//! it, asked through `zend_sigaction` when the binary has it.

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

static STOP: AtomicBool = AtomicBool::new(false);
const SIGNALS: [libc::c_int; 2] = [libc::SIGTERM, libc::SIGINT];
/// The handlers that were installed before ours, when the signal must be passed on to them (read
/// by the handler, so kept in a static that is written only while ours is not installed).
static mut PREVIOUS: [Option<libc::sigaction>; 2] = [None, None];

/// Whether the handler before ours must get the signal too (a script's own handler).
static CHAIN: [AtomicBool; 2] = [AtomicBool::new(false), AtomicBool::new(false)];
/// Whether PREVIOUS holds a handler to restore.
static SAVED: [AtomicBool; 2] = [AtomicBool::new(false), AtomicBool::new(false)];

type ZendSigaction =
    unsafe extern "C" fn(libc::c_int, *const libc::sigaction, *mut libc::sigaction);

/// Whether the script has a handler of its own for `sig`: through PHP's signal layer when the
/// binary has one (zend_sigaction), else the kernel-level handler is the script's.
fn php_has_handler(sig: libc::c_int) -> bool {
    // SAFETY: looking up a symbol of the running binary; called with a NULL new action it only
    // reports the registered handler.
    unsafe {
        let sym = libc::dlsym(libc::RTLD_DEFAULT, c"zend_sigaction".as_ptr());
        let mut registered: libc::sigaction = std::mem::zeroed();
        if !sym.is_null() {
            let f: ZendSigaction = std::mem::transmute(sym);
            f(sig, std::ptr::null(), &mut registered);
        } else if libc::sigaction(sig, std::ptr::null(), &mut registered) != 0 {
            return false;
        }
        registered.sa_sigaction != libc::SIG_DFL && registered.sa_sigaction != libc::SIG_IGN
    }
}

/// Whether SIGTERM or SIGINT arrived while serving (stays set: the process is stopping).
pub fn stop_requested() -> bool {
    STOP.load(SeqCst)
}

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    STOP.store(true, SeqCst);
    let Some(i) = SIGNALS.iter().position(|s| *s == sig) else {
        return;
    };
    if !CHAIN[i].load(SeqCst) {
        return;
    }
    // SAFETY: PREVIOUS is only written while our handler is not installed (see Installed).
    let prev = unsafe { (*std::ptr::addr_of!(PREVIOUS))[i] };
    let Some(prev) = prev else { return };
    let h = prev.sa_sigaction;
    if h == libc::SIG_DFL || h == libc::SIG_IGN {
        return;
    }
    // SAFETY: calling the previously installed handler the way the kernel would have.
    unsafe {
        if prev.sa_flags & libc::SA_SIGINFO != 0 {
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                std::mem::transmute(h);
            f(sig, info, ctx);
        } else {
            let f: extern "C" fn(libc::c_int) = std::mem::transmute(h);
            f(sig);
        }
    }
}

/// Our handlers, installed until dropped.
pub struct Installed(());

/// Installs the handlers (the previous ones are restored on drop).
pub fn install() -> Installed {
    for (i, sig) in SIGNALS.iter().enumerate() {
        // SAFETY: plain sigaction calls with zeroed, then filled, structures.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            let mut new: libc::sigaction = std::mem::zeroed();
            new.sa_sigaction = on_signal as *const () as usize;
            new.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut new.sa_mask);
            // Read the current handler first, store it, then install ours.
            if libc::sigaction(*sig, std::ptr::null(), &mut old) == 0 {
                (*std::ptr::addr_of_mut!(PREVIOUS))[i] = Some(old);
                SAVED[i].store(true, SeqCst);
                CHAIN[i].store(php_has_handler(*sig), SeqCst);
                libc::sigaction(*sig, &new, std::ptr::null_mut());
            }
        }
    }
    Installed(())
}

impl Drop for Installed {
    fn drop(&mut self) {
        for (i, sig) in SIGNALS.iter().enumerate() {
            // SAFETY: restores what install() saved.
            unsafe {
                if SAVED[i].swap(false, SeqCst) {
                    if let Some(old) = (*std::ptr::addr_of!(PREVIOUS))[i] {
                        libc::sigaction(*sig, &old, std::ptr::null_mut());
                    }
                }
            }
        }
    }
}
