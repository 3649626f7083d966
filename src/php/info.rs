//! `php --ri woosync` / phpinfo(): version, effective settings (secret masked; the stock INI
//! table is not used because it would print the secret in clear) and counters.

use super::ini;
use crate::signer;
use ext_php_rs::ffi::{
    php_info_print_table_end, php_info_print_table_header, php_info_print_table_row,
    php_info_print_table_start,
};
use ext_php_rs::zend::ModuleEntry;
use std::ffi::{CStr, CString};

fn row(k: &str, v: &str) {
    let (Ok(k), Ok(v)) = (CString::new(k), CString::new(v.replace('\0', ""))) else {
        return;
    };
    // SAFETY: two NUL-terminated strings for a 2-column row, during the info callback.
    unsafe { php_info_print_table_row(2, k.as_ptr(), v.as_ptr()) };
}

fn setting(name: &CStr, masked: bool) {
    let v = ini::get(name);
    let shown = if masked {
        signer::mask(&v)
    } else if name == ini::DATABASE {
        // A database URL's password, however it is written.
        crate::outbox::MysqlUrl::mask_text(&v)
    } else {
        crate::redact::url(&v)
    };
    row(
        &name.to_string_lossy(),
        if shown.is_empty() { "(empty)" } else { &shown },
    );
}

pub extern "C" fn info(_module: *mut ModuleEntry) {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: called by the engine while printing module info.
        unsafe {
            php_info_print_table_start();
            php_info_print_table_header(2, c"woosync support".as_ptr(), c"enabled".as_ptr());
        }
        row("Version", env!("CARGO_PKG_VERSION"));
        for name in [
            ini::DATABASE,
            ini::ENDPOINT,
            ini::RETRY_DELAYS,
            ini::TIMEOUT,
            ini::CONCURRENCY,
            ini::MAX_PAYLOAD_BYTES,
            ini::SOURCE,
            ini::SHUTDOWN_GRACE,
            ini::ALLOW_NETWORKS,
        ] {
            setting(name, false);
        }
        setting(ini::SECRET, true);
        let values = ini::values();
        let path = match crate::config::database(&values) {
            Ok(p) => p,
            Err(e) => {
                row("Outbox", &format!("unusable: {e}"));
                // SAFETY: closes the table opened above.
                unsafe { php_info_print_table_end() };
                return;
            }
        };
        match &path {
            crate::outbox::Location::Sqlite(p) => row("Outbox file", &p.to_string_lossy()),
            crate::outbox::Location::Mysql(u) => row("Outbox database", &u.masked()),
        }
        if !path.may_exist() {
            row("Outbox", "not created yet (created by the first dispatch)");
            if path.sqlite_path() == Some(crate::files::default_path().as_path()) {
                if let Some(n) = crate::files::legacy_notice() {
                    row("Notice", &n);
                }
            }
        } else {
            match crate::client::status(&values) {
                Ok(r) => {
                    let s = &r.status;
                    row("Pending", &s.pending().to_string());
                    row("In flight", &s.in_flight.to_string());
                    row("Delivered", &s.delivered.to_string());
                    row("Dead", &s.dead.to_string());
                    row("Superseded", &s.superseded.to_string());
                    row("Unrouted", &s.unrouted.to_string());
                    row("Worker", r.worker.as_str());
                    row(
                        "Sender PID",
                        &r.sender_pid
                            .map(|p| p.to_string())
                            .unwrap_or_else(|| "none".into()),
                    );
                    row("Sender host", r.sender_host.as_deref().unwrap_or("none"));
                    row("Last error", s.last_error.as_deref().unwrap_or("none"));
                    for n in &r.notices {
                        row("Notice", n);
                    }
                    for e in &s.endpoints {
                        let health = match (&e.row.disabled_reason, e.row.enabled) {
                            (Some(why), _) => format!(
                                "DISABLED since {}: {why}",
                                crate::event::rfc3339(e.row.disabled_at.unwrap_or(0.0))
                            ),
                            (None, true) if e.row.refused_reason.is_some() => format!(
                                "REFUSED: {}",
                                e.row.refused_reason.as_deref().unwrap_or_default()
                            ),
                            (None, false) => "switched off".into(),
                            (None, true) if e.row.url.is_empty() => "not configured".into(),
                            (None, true) => "enabled".into(),
                        };
                        row(
                            &format!("Endpoint {}", e.row.name),
                            &format!(
                                "{} ({health})",
                                if e.row.url.is_empty() {
                                    "-".to_string()
                                } else {
                                    crate::redact::url(&e.row.url)
                                }
                            ),
                        );
                    }
                }
                Err(e) => row("Outbox", &format!("unavailable: {e}")),
            }
        }
        // SAFETY: closes the table opened above.
        unsafe { php_info_print_table_end() };
    });
}
