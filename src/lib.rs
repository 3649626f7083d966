//! woosync: a durable, signed webhook outbox for WooCommerce, as a PHP extension.
//!
//! `woosync_dispatch()` validates and encodes an event, commits it to a local SQLite outbox (WAL)
//! and returns in microseconds; a background sender delivers it, signed (Standard Webhooks and
//! WooCommerce headers), with retries, per-key order and a log of every attempt.
//!
//! Core modules hold no PHP types and are unit-tested here:
//! - [`event`]: ids, topics, the JSON envelope
//! - [`outbox`]: SQLite schema, claims and leases, per-key order, queries
//! - [`signer`]: Standard Webhooks and WooCommerce signatures
//! - [`delivery`]: one HTTP attempt and its classification ([`one_write`]: a request in one write)
//! - [`retry`]: retry schedule, jitter, Retry-After
//! - [`worker`]: the sender threads (election, wake-ups, shutdown)
//! - [`client`]: the request side of one process (registry keyed by PID)
//! - [`fork`], [`config`], [`error`]
//!
//! `php/` is the only place that uses ext-php-rs: it registers and converts.

pub mod client;
pub mod config;
pub mod delivery;
pub mod destination;
pub mod error;
pub mod event;
pub mod files;
pub mod fork;
pub mod memory;
pub mod metrics;
pub mod one_write;
pub mod outbox;
pub mod php;
pub mod redact;
pub mod retry;
pub mod secrets;
pub mod signals;
pub mod signer;
pub mod worker;

use ext_php_rs::prelude::*;
use php::startup;

#[php_module]
#[php(startup = startup)]
pub fn get_module(module: ModuleBuilder) -> ModuleBuilder {
    let module = module
        .name("woosync")
        .version(env!("CARGO_PKG_VERSION"))
        .request_startup_function(php::request_startup)
        .shutdown_function(php::module_shutdown)
        .info_function(php::info::info);
    php::functions::register(module)
}
