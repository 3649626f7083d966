//! Build script: link the extension with `-z nodelete`.
//!
//! Sender threads may still be running (abandoned after the shutdown grace) while PHP unloads
//! extensions at exit; a NODELETE object is never unmapped, so such a thread can never execute
//! unmapped code. (`fork::install` also pins the object with `RTLD_NODELETE` at run time.)
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
}
