//! Build script: how the extension is linked.
//!
//! - `-z nodelete`: sender threads may still be running (abandoned after the shutdown grace) while
//!   PHP unloads extensions at exit; a NODELETE object is never unmapped, so such a thread can
//!   never execute unmapped code. (`fork::install` also pins the object with `RTLD_NODELETE` at
//!   run time.)
//! - `-z pack-relative-relocs` (DT_RELR, glibc 2.36+; the loader refuses the object on an older
//!   glibc instead of misloading it): a few KB of relocations instead of ~390 KB of `.rela.dyn`
//!   that every process reads, and keeps resident, when it loads the extension.
//! - With lld (rustc's own, the default linker of `x86_64-unknown-linux-gnu` since Rust 1.90, or
//!   `ld.lld` of Debian's `lld` package): the functions a process runs, listed in
//!   `bench/profile/link-order.txt` (`bench/profile/link_order.py` makes it from a profile), are
//!   placed together, so a process maps about 1.5 MB of the extension's code instead of nearly
//!   all of its 5.8 MB (PROFILE.md, "Resident code"). Without lld the extension links as before
//!   and works the same, with ~2 MB more resident memory per process. `WOOSYNC_LINK_ORDER=0`
//!   turns the ordering off.
use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=WOOSYNC_LINK_ORDER");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,pack-relative-relocs");

    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let order = Path::new(&dir).join("bench/profile/link-order.txt");
    println!("cargo:rerun-if-changed={}", order.display());
    if std::env::var("WOOSYNC_LINK_ORDER").as_deref() == Ok("0") || !order.is_file() {
        return;
    }
    let rust_lld = std::env::var("TARGET").as_deref() == Ok("x86_64-unknown-linux-gnu")
        && rustc_minor().is_some_and(|m| m >= 90);
    if !rust_lld {
        let system_lld = Command::new("ld.lld")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !system_lld {
            println!(
                "cargo:warning=no lld (Rust 1.90+ on x86_64, or apt install lld): linking without \
                 the function order of bench/profile/link-order.txt; the extension works the \
                 same with ~2 MB more resident memory per process"
            );
            return;
        }
    }
    println!("cargo:rustc-cdylib-link-arg=-fuse-ld=lld");
    println!(
        "cargo:rustc-cdylib-link-arg=-Wl,--symbol-ordering-file={}",
        order.display()
    );
    // Names the current build does not have (the list is from a profile of an earlier one).
    println!("cargo:rustc-cdylib-link-arg=-Wl,--no-warn-symbol-ordering");
}

/// The minor version of the compiler building this (`rustc 1.95.0 (…)` → 95).
fn rustc_minor() -> Option<u32> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .nth(1)?
        .split('.')
        .nth(1)?
        .parse()
        .ok()
}
