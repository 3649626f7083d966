//! Build script: how the extension is linked.
//!
//! - `-z nodelete`: sender threads may still be running (abandoned after the shutdown grace) while
//!   PHP unloads extensions at exit; a NODELETE object is never unmapped, so such a thread can
//!   never execute unmapped code. (`fork::install` also pins the object with `RTLD_NODELETE` at
//!   run time.)
//! - `-z pack-relative-relocs` (DT_RELR), when the building system's glibc is 2.36 or later (the
//!   object then needs that glibc; the loader refuses it on an older one): a few KB of relocations
//!   instead of ~390 KB of `.rela.dyn` that every process reads, and keeps resident, when it loads
//!   the extension. `WOOSYNC_RELR=0` turns it off (to build for an older glibc).
//! - With lld (rustc's own, the default linker of `x86_64-unknown-linux-gnu` since Rust 1.90, or
//!   `ld.lld` of Debian's `lld` package), unless the build configures a linker of its own: the
//!   functions a process runs, listed in `bench/profile/link-order.txt` (`bench/profile/link_order.py`
//!   makes it from a profile, with the compiler named in `link-order.rustc`: other compilers name
//!   many functions differently), are placed together, so a process maps about 1.5 MB of the
//!   extension's code instead of nearly all of its 5.8 MB (PROFILE.md, "Resident code"). Otherwise
//!   the extension links as before and works the same, with ~2 MB more resident memory per
//!   process. `WOOSYNC_LINK_ORDER=0` turns the ordering off.
use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for var in [
        "WOOSYNC_LINK_ORDER",
        "WOOSYNC_RELR",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_LINKER",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    let target = std::env::var("TARGET").unwrap_or_default();
    let gnu = target.ends_with("-linux-gnu");
    if gnu && std::env::var("WOOSYNC_RELR").as_deref() != Ok("0") && glibc_at_least(2, 36) {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,pack-relative-relocs");
    }

    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let order = Path::new(&dir).join("bench/profile/link-order.txt");
    let made_with = Path::new(&dir).join("bench/profile/link-order.rustc");
    println!("cargo:rerun-if-changed={}", order.display());
    println!("cargo:rerun-if-changed={}", made_with.display());
    if std::env::var("WOOSYNC_LINK_ORDER").as_deref() == Ok("0") || !order.is_file() {
        return;
    }
    // A linker chosen by the build (flags, or a linker for the target) is left alone.
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let linker_var = format!(
        "CARGO_TARGET_{}_LINKER",
        target.to_uppercase().replace('-', "_")
    );
    println!("cargo:rerun-if-env-changed={linker_var}");
    let own_linker = ["linker", "link-self-contained", "fuse-ld"]
        .iter()
        .any(|f| flags.contains(f))
        || std::env::var_os(&linker_var).is_some()
        || std::env::var_os("RUSTC_LINKER").is_some();
    let version = rustc_version();
    let rust_lld = target == "x86_64-unknown-linux-gnu"
        && version.as_deref().and_then(minor).is_some_and(|m| m >= 90);
    let why_not = if own_linker {
        Some("the build sets a linker of its own")
    } else if rust_lld {
        None
    } else if Command::new("ld.lld")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        println!("cargo:rustc-cdylib-link-arg=-fuse-ld=lld");
        None
    } else {
        Some("no lld (Rust 1.90+ on x86_64, or apt install lld)")
    };
    if let Some(why) = why_not {
        println!(
            "cargo:warning={why}: linking without the function order of \
             bench/profile/link-order.txt; the extension works the same with ~2 MB more resident \
             memory per process"
        );
        return;
    }
    let listed_with = std::fs::read_to_string(&made_with).unwrap_or_default();
    if version.as_deref().map(str::trim) != Some(listed_with.trim()) {
        println!(
            "cargo:warning=bench/profile/link-order.txt was made with {}, this is {}: many names \
             differ, so less of the code a process runs is placed together; regenerate it with \
             bench/profile/link_order.py",
            listed_with.trim(),
            version.as_deref().unwrap_or("an unknown compiler").trim()
        );
    }
    println!("cargo:rustc-cdylib-link-arg=-Xlinker");
    println!(
        "cargo:rustc-cdylib-link-arg=--symbol-ordering-file={}",
        order.display()
    );
    // Names this build does not have (the list is from a profile of an earlier one).
    println!("cargo:rustc-cdylib-link-arg=-Wl,--no-warn-symbol-ordering");
}

/// `rustc --version` of the compiler building this.
fn rustc_version() -> Option<String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc).arg("--version").output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The minor version in `rustc 1.95.0 (…)` → 95.
fn minor(version: &str) -> Option<u32> {
    version
        .split_whitespace()
        .nth(1)?
        .split('.')
        .nth(1)?
        .parse()
        .ok()
}

/// The building system's glibc (`getconf GNU_LIBC_VERSION`: `glibc 2.36`).
fn glibc_at_least(major: u32, minor: u32) -> bool {
    let Ok(out) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut v = text
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (v.next().unwrap_or(0), v.next().unwrap_or(0));
    (a, b) >= (major, minor)
}
