//! INI entries. Every value is accepted at start-up (a bad value must not break PHP) and validated
//! when used. Values are read on the PHP thread with `zend_ini_string_ex` and copied into plain
//! Rust strings ([`IniValues`]) before anything else sees them.

use crate::config::IniValues;
use crate::secrets::StoreKey;
use ext_php_rs::ffi::zend_hash_str_find;
use ext_php_rs::ffi::{zend_ini_entry, zend_string};
use ext_php_rs::flags::IniEntryPermission;
use ext_php_rs::types::ZendStr;
use ext_php_rs::zend::ExecutorGlobals;
use ext_php_rs::zend::{IniEntryDef, IniEntryDefs};
use std::ffi::{c_char, c_int, c_void, CStr};

pub const DATABASE: &CStr = c"woosync.database";
pub const ENDPOINT: &CStr = c"woosync.endpoint";
pub const SECRET: &CStr = c"woosync.secret";
pub const RETRY_DELAYS: &CStr = c"woosync.retry_delays";
pub const TIMEOUT: &CStr = c"woosync.timeout";
pub const CONCURRENCY: &CStr = c"woosync.concurrency";
pub const MAX_PAYLOAD_BYTES: &CStr = c"woosync.max_payload_bytes";
pub const SOURCE: &CStr = c"woosync.source";
pub const SHUTDOWN_GRACE: &CStr = c"woosync.shutdown_grace";
pub const KEY: &CStr = c"woosync.key";
pub const RETENTION_DAYS: &CStr = c"woosync.retention_days";
pub const ALLOW_NETWORKS: &CStr = c"woosync.allow_networks";

/// Accepts every value, so that `ini_set` and `ini_restore` work (without a handler
/// `ini_restore` silently does nothing).
unsafe extern "C" fn accept_any(
    _entry: *mut zend_ini_entry,
    _new_value: *mut zend_string,
    _a1: *mut c_void,
    _a2: *mut c_void,
    _a3: *mut c_void,
    _stage: c_int,
) -> c_int {
    0
}

/// `ZEND_INI_STAGE_*` values (Zend/zend_ini.h) of the changes that a running sender must see.
const STAGE_ACTIVATE: c_int = 1 << 2;
const STAGE_RUNTIME: c_int = 1 << 4;
const STAGE_HTACCESS: c_int = 1 << 5;

/// `woosync.key`: accepts every value, and hands a key set while PHP runs (`ini_set` by the
/// WordPress plugin, a per-directory value) to this process's running senders at once. The INI
/// value restored at the end of a request (stage DEACTIVATE) is not handed over: a sender keeps
/// the keys it was given.
unsafe extern "C" fn key_changed(
    _entry: *mut zend_ini_entry,
    new_value: *mut zend_string,
    _a1: *mut c_void,
    _a2: *mut c_void,
    _a3: *mut c_void,
    stage: c_int,
) -> c_int {
    if new_value.is_null() || stage & (STAGE_ACTIVATE | STAGE_RUNTIME | STAGE_HTACCESS) == 0 {
        return 0;
    }
    // SAFETY: the engine passes a valid zend_string for the duration of the call.
    let bytes = unsafe { &*(new_value as *const ZendStr) }.as_bytes();
    let _ = std::panic::catch_unwind(|| {
        if let Ok(text) = std::str::from_utf8(bytes) {
            if let Ok(Some(key)) = StoreKey::parse(text) {
                crate::client::offer_key(&key);
            }
        }
    });
    0
}

const fn entry(
    name: &'static CStr,
    default: &'static CStr,
    perm: IniEntryPermission,
) -> IniEntryDef {
    let mut e = IniEntryDef::new(name, default, perm);
    e.on_modify = Some(accept_any);
    e
}

const fn entry_with(
    name: &'static CStr,
    default: &'static CStr,
    perm: IniEntryPermission,
    on_modify: OnModify,
) -> IniEntryDef {
    let mut e = IniEntryDef::new(name, default, perm);
    e.on_modify = Some(on_modify);
    e
}

type OnModify = unsafe extern "C" fn(
    *mut zend_ini_entry,
    *mut zend_string,
    *mut c_void,
    *mut c_void,
    *mut c_void,
    c_int,
) -> c_int;

static ENTRIES: IniEntryDefs<13> = IniEntryDefs::new([
    entry(DATABASE, c"", IniEntryPermission::All),
    entry(ENDPOINT, c"", IniEntryPermission::All),
    entry(SECRET, c"", IniEntryPermission::All),
    entry(
        RETRY_DELAYS,
        c"5,300,1800,7200,18000,36000,36000",
        IniEntryPermission::All,
    ),
    entry(TIMEOUT, c"15", IniEntryPermission::All),
    entry(CONCURRENCY, c"4", IniEntryPermission::System),
    entry(MAX_PAYLOAD_BYTES, c"1048576", IniEntryPermission::System),
    entry(SOURCE, c"", IniEntryPermission::All),
    entry(SHUTDOWN_GRACE, c"1", IniEntryPermission::System),
    entry_with(KEY, c"", IniEntryPermission::All, key_changed),
    entry(RETENTION_DAYS, c"7", IniEntryPermission::System),
    entry(ALLOW_NETWORKS, c"", IniEntryPermission::System),
    IniEntryDef::end(),
]);

pub fn register(module_number: i32) {
    IniEntryDef::register(ENTRIES.as_slice(), module_number);
}

extern "C" {
    fn php_check_open_basedir_ex(path: *const c_char, warn: c_int) -> c_int;
    fn zend_ini_string_ex(
        name: *const c_char,
        name_length: usize,
        orig: c_int,
        exists: *mut bool,
    ) -> *mut c_char;
    fn zend_unregister_ini_entries(module_number: c_int);
}

pub fn unregister(module_number: i32) {
    // SAFETY: MSHUTDOWN of the module that registered the entries.
    unsafe { zend_unregister_ini_entries(module_number) };
}

/// Current value of one of our INI entries ("" when unset).
pub fn get(name: &CStr) -> String {
    let mut exists = false;
    // SAFETY: name is NUL-terminated; the returned pointer is owned by the engine and copied at once.
    let p = unsafe { zend_ini_string_ex(name.as_ptr(), name.count_bytes(), 0, &mut exists) };
    if p.is_null() || !exists {
        return String::new();
    }
    // SAFETY: INI values are NUL-terminated strings.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// The raw bytes of one of our INI entries (a value set with ini_set may hold NUL or non-UTF-8
/// bytes, which the C-string read of [`get`] would cut or replace).
fn get_raw(name: &CStr) -> Option<Vec<u8>> {
    let eg = ExecutorGlobals::get();
    let ht = eg.ini_directives;
    if ht.is_null() {
        return None;
    }
    // SAFETY: a lookup in the engine's INI table on the PHP thread; the entry and its value are
    // owned by the engine and copied at once.
    unsafe {
        let zv = zend_hash_str_find(ht, name.as_ptr(), name.count_bytes());
        if zv.is_null() {
            return None;
        }
        let entry = (*zv).value.ptr as *const zend_ini_entry;
        if entry.is_null() {
            return None;
        }
        let value = (*entry).value;
        if value.is_null() {
            return Some(Vec::new());
        }
        Some((*(value as *const ZendStr)).as_bytes().to_vec())
    }
}

/// `woosync.database`, checked for what a C string hides (NUL, non-UTF-8) and against
/// `open_basedir`.
fn database() -> (String, Option<String>) {
    let raw = get_raw(DATABASE).unwrap_or_default();
    if raw.contains(&0) {
        return (
            String::new(),
            Some("woosync.database contains a NUL byte; give a plain absolute path".into()),
        );
    }
    let Ok(text) = String::from_utf8(raw) else {
        return (
            String::new(),
            Some("woosync.database is not valid UTF-8; give a plain absolute path".into()),
        );
    };
    let error = match crate::config::database_location(&text) {
        Ok(crate::outbox::Location::Sqlite(path)) => open_basedir_refuses(&path),
        Ok(crate::outbox::Location::Mysql(_)) => None,
        Err(_) => None, // reported with its own message when used
    };
    (text, error)
}

/// Why `open_basedir` refuses the outbox path, if it does.
fn open_basedir_refuses(path: &std::path::Path) -> Option<String> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: a NUL-terminated path; with warn = 0 PHP only answers.
    if unsafe { php_check_open_basedir_ex(c.as_ptr(), 0) } == 0 {
        return None;
    }
    Some(format!(
        "the outbox {} is outside open_basedir ({}); set woosync.database to a file inside it",
        path.display(),
        get(c"open_basedir")
    ))
}

/// Copies every setting into plain Rust values.
pub fn values() -> IniValues {
    let (database, database_error) = database();
    IniValues {
        database,
        database_error,
        endpoint: get(ENDPOINT),
        secret: get(SECRET),
        retry_delays: get(RETRY_DELAYS),
        timeout: get(TIMEOUT),
        concurrency: get(CONCURRENCY),
        max_payload_bytes: get(MAX_PAYLOAD_BYTES),
        source: get(SOURCE),
        shutdown_grace: get(SHUTDOWN_GRACE),
        key: get(KEY),
        retention_days: get(RETENTION_DAYS),
        allow_networks: get(ALLOW_NETWORKS),
    }
}
