//! The PHP surface: registration, INI, conversions and exception mapping. The only place that
//! uses ext-php-rs; everything it calls lives in the PHP-free core (`client`, `outbox`, …).
//!
//! Lifecycle (see `worker.rs` for the threads):
//! - MINIT (`startup`): registers INI entries and `WooSyncException`. Starts no thread.
//! - RINIT (`request_startup`): the first request of a process (or of a forked child) starts the
//!   sender thread when the outbox file exists.
//! - RSHUTDOWN: nothing; a request never waits.
//! - MSHUTDOWN (`module_shutdown`): senders finish due work within `woosync.shutdown_grace`.

pub mod convert;
pub mod exception;
pub mod functions;
pub mod info;
pub mod ini;

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Whether this PHP is the command-line SAPI.
pub fn is_cli() -> bool {
    extern "C" {
        static sapi_module: ext_php_rs::ffi::sapi_module_struct;
    }
    // SAFETY: the SAPI's name is a static NUL-terminated string set before any module starts.
    let name = unsafe { sapi_module.name };
    if name.is_null() {
        return false;
    }
    // SAFETY: as above.
    let name = unsafe { std::ffi::CStr::from_ptr(name) };
    name.to_bytes() == b"cli"
}

/// Registers INI entries and the exception class (MINIT).
pub fn startup(_ty: i32, module_number: i32) -> i32 {
    match catch_unwind(AssertUnwindSafe(|| {
        ini::register(module_number);
        exception::register()
    })) {
        Ok(Ok(())) => 0,
        _ => -1,
    }
}

/// RINIT: start the sender of a process lazily, at its first request.
pub extern "C" fn request_startup(_ty: i32, _module_number: i32) -> i32 {
    // Only the first request of a process (or of a forked child) does anything.
    static STARTED_PID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let pid = std::process::id();
    if STARTED_PID.swap(pid, std::sync::atomic::Ordering::SeqCst) == pid {
        return 0;
    }
    let _ = catch_unwind(|| {
        let ini = ini::values();
        crate::client::request_started(&ini);
    });
    0
}

/// MSHUTDOWN: bounded wait for in-flight work, then unregister INI entries.
pub extern "C" fn module_shutdown(_ty: i32, module_number: i32) -> i32 {
    let _ = catch_unwind(|| {
        let grace = crate::config::shutdown_grace(&ini::get(ini::SHUTDOWN_GRACE)).unwrap_or(1.0);
        crate::client::shutdown(grace);
        ini::unregister(module_number);
    });
    0
}
