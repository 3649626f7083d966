//! The outbox's files on disk, as another local user would attack them.
//!
//! The outbox holds customer data (emails, addresses) and endpoint settings. Its directory is
//! created private (0700) and must stay so: owned by this user (or root) and writable by nobody
//! else, or another user could plant files in it — a symlink named `outbox.sqlite.lock` pointing
//! at `wp-config.php`, or a database of their own with an endpoint of their own. The database and
//! its `-wal`, `-shm` and `.lock` files must be regular files (never symlinks: they are opened with
//! `O_NOFOLLOW`), owned by this user, writable by nobody else, and the database and WAL (which hold
//! the payloads) readable by nobody else. Anything else is refused with an error naming the
//! problem; nothing is truncated or rewritten.
//!
//! The default location is `<temp dir>/woosync-<uid>/outbox.sqlite`, per user. An outbox left at
//! the old default (`<temp dir>/woosync/outbox.sqlite`) is moved there when it is safe to (the
//! files are ours and nobody else could have written them); otherwise it is left where it is and
//! [`legacy_notice`] says so (status, the WordPress admin notice).

use crate::error::{Error, Result};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The files SQLite keeps next to the database.
pub const COMPANIONS: [&str; 3] = ["-wal", "-shm", ".lock"];

/// This process's effective uid.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// `<temp dir>/woosync-<uid>/outbox.sqlite`.
pub fn default_path() -> PathBuf {
    std::env::temp_dir()
        .join(format!("woosync-{}", euid()))
        .join("outbox.sqlite")
}

/// Where versions before 0.2 put the outbox by default (shared by every user of the machine).
pub fn legacy_default_path() -> PathBuf {
    std::env::temp_dir().join("woosync").join("outbox.sqlite")
}

/// `path` with a suffix appended to its file name (`outbox.sqlite-wal`).
pub fn companion(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

pub fn user_name(uid: u32) -> String {
    if let Ok(passwd) = std::fs::read_to_string("/etc/passwd") {
        for line in passwd.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() > 2 && f[2] == uid.to_string() {
                return f[0].to_string();
            }
        }
    }
    format!("uid {uid}")
}

fn writable(path: &Path) -> bool {
    match std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) {
        // SAFETY: access() on a valid NUL-terminated path.
        Ok(c) => unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 },
        Err(_) => false,
    }
}

fn not_writable(path: &Path, meta: &std::fs::Metadata) -> Error {
    let me = euid();
    Error::storage(format!(
        "outbox {} is not writable by {} (uid {me}): it is owned by {} (uid {}, mode {:o}). Run PHP as {} (e.g. sudo -u {} php …) or fix the owner (chown) so web and CLI share it",
        path.display(),
        user_name(me),
        user_name(meta.uid()),
        meta.uid(),
        meta.mode() & 0o777,
        user_name(meta.uid()),
        user_name(meta.uid()),
    ))
}

fn io(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::storage(format!("outbox {}: {what}: {e}", path.display()))
}

/// The directory must not let anyone else plant or swap files: owned by us or root, writable by
/// its owner only.
fn check_dir(dir: &Path, db: &Path) -> Result<()> {
    let meta =
        std::fs::symlink_metadata(dir).map_err(|e| io(db, "cannot read its directory", e))?;
    let meta = if meta.file_type().is_symlink() {
        // An administrator's symlinked data directory is fine as long as its target is private;
        // the checks below apply to the target.
        std::fs::metadata(dir).map_err(|e| io(db, "cannot read its directory", e))?
    } else {
        meta
    };
    if !meta.is_dir() {
        return Err(Error::storage(format!(
            "outbox {}: {} is not a directory; set woosync.database to a file in a private directory",
            db.display(),
            dir.display()
        )));
    }
    let me = euid();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(Error::storage(format!(
            "outbox {}: its directory {} belongs to {} (uid {}), not to {} (uid {me}): another user could swap the outbox; use a directory of your own (the default is {})",
            db.display(),
            dir.display(),
            user_name(meta.uid()),
            meta.uid(),
            user_name(me),
            default_path().display()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(Error::storage(format!(
            "outbox {}: its directory {} is writable by other users (mode {:o}): they could plant or replace its files; make it private (chmod 700 {}) or use another directory",
            db.display(),
            dir.display(),
            meta.mode() & 0o7777,
            dir.display()
        )));
    }
    if !writable(dir) {
        return Err(not_writable(dir, &meta));
    }
    Ok(())
}

/// An existing database or companion file: a regular file of ours that nobody else can write
/// (nor read, for the database and WAL). `private` = must not be readable by others.
fn check_file(file: &Path, db: &Path, private: bool) -> Result<bool> {
    let meta = match std::fs::symlink_metadata(file) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io(db, &format!("cannot read {}", file.display()), e)),
    };
    if meta.file_type().is_symlink() {
        return Err(Error::storage(format!(
            "outbox {}: {} is a symbolic link; woosync never follows links next to its outbox (another user may have planted it): remove it if you did not create it",
            db.display(),
            file.display()
        )));
    }
    if !meta.is_file() {
        return Err(Error::storage(format!(
            "outbox {}: {} is not a regular file",
            db.display(),
            file.display()
        )));
    }
    let me = euid();
    if meta.uid() != me {
        if !writable(file) {
            return Err(not_writable(file, &meta));
        }
        return Err(Error::storage(format!(
            "outbox {}: {} belongs to {} (uid {}), not to {} (uid {me}); run PHP as its owner or move the file away",
            db.display(),
            file.display(),
            user_name(meta.uid()),
            meta.uid(),
            user_name(me)
        )));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(Error::storage(format!(
            "outbox {}: {} is writable by other users (mode {mode:o}); chmod 600 it if it is yours",
            db.display(),
            file.display()
        )));
    }
    if private && mode & 0o044 != 0 {
        return Err(Error::storage(format!(
            "outbox {}: {} is readable by other users (mode {mode:o}) and holds customer data; chmod 600 it if it is yours",
            db.display(),
            file.display()
        )));
    }
    if !writable(file) {
        return Err(not_writable(file, &meta));
    }
    Ok(true)
}

/// Opens (creating if needed, mode 0600) a file next to the outbox without following links and
/// without truncating it; refuses a file that is not ours or that others could write.
pub fn open_private(file: &Path, db: &Path) -> Result<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(file)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                Error::storage(format!(
                    "outbox {}: {} is a symbolic link; woosync never follows links next to its outbox: remove it if you did not create it",
                    db.display(),
                    file.display()
                ))
            } else {
                io(db, &format!("cannot open {}", file.display()), e)
            }
        })?;
    let meta = f
        .metadata()
        .map_err(|e| io(db, &format!("cannot read {}", file.display()), e))?;
    if !meta.is_file() || meta.uid() != euid() || meta.mode() & 0o022 != 0 {
        // Re-check what we opened with the full explanation.
        check_file(file, db, false)?;
        return Err(Error::storage(format!(
            "outbox {}: {} is not a private file of this user",
            db.display(),
            file.display()
        )));
    }
    Ok(f)
}

/// Checks everything before SQLite touches the outbox: creates the directory (0700) and the
/// database file (0600) when missing, refuses unsafe directories and files, and refuses a file
/// that is not a SQLite database.
pub fn prepare(path: &Path) -> Result<()> {
    if path.as_os_str().is_empty() {
        return Err(Error::config("woosync.database is empty"));
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .ok_or_else(|| {
            Error::config(format!(
                "woosync.database {} has no directory",
                path.display()
            ))
        })?;
    if std::fs::symlink_metadata(dir).is_err() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| {
                io(
                    path,
                    &format!("cannot create directory {}", dir.display()),
                    e,
                )
            })?;
    }
    if path == default_path() {
        move_legacy_default(path);
    }
    check_dir(dir, path)?;
    for suffix in COMPANIONS {
        check_file(&companion(path, suffix), path, suffix == "-wal")?;
    }
    if check_file(path, path, true)? {
        use std::io::Read;
        let mut head = [0u8; 16];
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| io(path, "cannot open", e))?;
        let n = f.read(&mut head).map_err(|e| io(path, "cannot read", e))?;
        if n > 0 && (n < 16 || &head != b"SQLite format 3\0") {
            return Err(Error::storage(format!(
                "{} is not a woosync outbox (not a SQLite database); it was left untouched: move it away or set woosync.database to another file",
                path.display()
            )));
        }
        return Ok(());
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(_) => Ok(()),
        // Another process created it meanwhile: check what is there now.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            check_file(path, path, true).map(|_| ())
        }
        Err(e) => Err(io(path, "cannot create", e)),
    }
}

/// Why an outbox at the old default location is not used, if one is there (None when there is
/// none, or when it was moved to the new default).
pub fn legacy_notice() -> Option<String> {
    let old = legacy_default_path();
    if std::fs::symlink_metadata(&old).is_err() {
        return None;
    }
    let why = match legacy_safe(&old) {
        Ok(()) => "it could not be moved".to_string(),
        Err(e) => e.to_string(),
    };
    Some(format!(
        "an outbox from an older woosync is at the old default location {} and is not used ({why}); events still waiting in it are not delivered: if it is yours, move it (with its -wal and -shm files) to {} while no PHP process uses it, or set woosync.database to it",
        old.display(),
        default_path().display()
    ))
}

fn legacy_safe(old: &Path) -> Result<()> {
    let dir = old.parent().unwrap_or(Path::new("/"));
    check_dir(dir, old)?;
    check_file(old, old, true)?;
    for suffix in ["-wal", "-shm"] {
        check_file(&companion(old, suffix), old, suffix == "-wal")?;
    }
    Ok(())
}

/// Moves an outbox from the old default location to the new one when the new one does not exist
/// yet and the old files are provably ours (nobody else could have written them).
fn move_legacy_default(new: &Path) {
    let old = legacy_default_path();
    if std::fs::symlink_metadata(new).is_ok() || std::fs::symlink_metadata(&old).is_err() {
        return;
    }
    if legacy_safe(&old).is_err() {
        return;
    }
    // The WAL and shared-memory files first, the database last: a process opening the new path
    // meanwhile finds either nothing (and waits for the database) or everything.
    for suffix in ["-wal", "-shm"] {
        let from = companion(&old, suffix);
        if from.exists() {
            let _ = std::fs::rename(&from, companion(new, suffix));
        }
    }
    let _ = std::fs::rename(&old, new);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("woosync-files-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::DirBuilder::new().mode(0o700).create(&d).unwrap();
        d
    }

    #[test]
    fn creates_private_and_refuses_shared_directories() {
        let d = dir("shared");
        let db = d.join("sub").join("o.sqlite");
        prepare(&db).unwrap();
        assert_eq!(
            std::fs::metadata(&db).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(db.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        std::fs::set_permissions(db.parent().unwrap(), std::fs::Permissions::from_mode(0o777))
            .unwrap();
        let e = prepare(&db).unwrap_err().to_string();
        assert!(e.contains("writable by other users"), "{e}");
        std::fs::set_permissions(db.parent().unwrap(), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = prepare(&db).unwrap_err().to_string();
        assert!(e.contains("readable by other users"), "{e}");
    }

    #[test]
    fn never_follows_a_planted_lock_symlink() {
        let d = dir("link");
        let victim = d.join("wp-config.php");
        std::fs::write(&victim, b"<?php // precious").unwrap();
        let db = d.join("o.sqlite");
        std::os::unix::fs::symlink(&victim, companion(&db, ".lock")).unwrap();
        let e = prepare(&db).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        let e = open_private(&companion(&db, ".lock"), &db)
            .unwrap_err()
            .to_string();
        assert!(e.contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"<?php // precious");
    }
}
