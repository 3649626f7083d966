//! `WooSyncException` (extends `Exception`), registered by hand so that it behaves like a PHP
//! exception (file, line, trace, `new` and subclassing from PHP), and the one place where core
//! errors and panics become PHP exceptions.

use crate::error::Error;
use ext_php_rs::builders::ClassBuilder;
use ext_php_rs::exception::PhpException;
use ext_php_rs::zend::{ce, ClassEntry};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicPtr, Ordering};

static CLASS: AtomicPtr<ClassEntry> = AtomicPtr::new(std::ptr::null_mut());

pub const CLASS_NAME: &str = "WooSyncException";

pub fn register() -> ext_php_rs::error::Result<()> {
    ClassBuilder::new(CLASS_NAME)
        .extends((ce::exception, "\\Exception"))
        .registration(|ce: &'static mut ClassEntry, _| {
            CLASS.store(ce, Ordering::SeqCst);
        })
        .register()
}

fn class() -> &'static ClassEntry {
    let p = CLASS.load(Ordering::SeqCst);
    // SAFETY: set once in MINIT to a class entry the engine keeps for the process lifetime.
    unsafe { p.as_ref() }.unwrap_or_else(ce::exception)
}

/// A `WooSyncException` with the error's message and code.
pub fn to_php(e: Error) -> PhpException {
    // A message with a NUL byte cannot be thrown (e.g. anonymous class names contain one).
    PhpException::new(e.to_string().replace('\0', ""), e.code(), class())
}

pub fn input(msg: impl Into<String>) -> PhpException {
    to_php(Error::input(msg))
}

/// Runs a PHP function body; a panic becomes a `WooSyncException`, never a crash.
pub fn guard<T>(f: impl FnOnce() -> Result<T, PhpException>) -> Result<T, PhpException> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".into());
            Err(PhpException::new(
                format!("woosync internal error ({msg}); nothing already stored was lost — please report this"),
                99,
                class(),
            ))
        }
    }
}
