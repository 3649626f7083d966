//! Wake-ups between the processes of one host (SQLite outboxes): a dispatch in another process
//! sends a datagram to the sender's abstract unix socket, named after the outbox path. A database
//! shared by several hosts is polled by its sender instead (see coordinator.rs).

use crate::fork;
use crossbeam_channel::Sender as ChanSender;
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

/// Abstract unix socket address on which the sender of `db` listens for wake-ups.
pub fn wake_address(db: &Path) -> std::io::Result<SocketAddr> {
    let canonical = std::fs::canonicalize(db).unwrap_or_else(|_| db.to_path_buf());
    // FNV-1a over the path bytes: stable, dependency free.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in canonical.as_os_str().as_encoded_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    SocketAddr::from_abstract_name(format!("woosync-{h:016x}").as_bytes())
}

/// Sends a wake-up datagram to the sender of `db` in another process (non-blocking, best effort).
pub struct Waker {
    socket: Option<UnixDatagram>,
    addr: Option<SocketAddr>,
}

impl Waker {
    pub fn new(db: &Path) -> Waker {
        let socket = UnixDatagram::unbound()
            .ok()
            .filter(|s| s.set_nonblocking(true).is_ok());
        if let Some(s) = &socket {
            fork::close_in_child(s.as_raw_fd());
        }
        Waker {
            socket,
            addr: wake_address(db).ok(),
        }
    }
    pub fn wake(&self) {
        if let (Some(s), Some(a)) = (&self.socket, &self.addr) {
            let _ = s.send_to_addr(b"w", a);
        }
    }
}

/// The thread that turns wake-up datagrams from other processes into wake-ups of the coordinator.
pub struct WakeListener {
    socket: UnixDatagram,
    stop: Arc<AtomicBool>,
}

impl WakeListener {
    pub fn bind(database: &Path, wake_tx: &ChanSender<()>) -> Option<WakeListener> {
        let addr = wake_address(database).ok()?;
        // A sender that just yielded may still be closing the address: try for a moment.
        let mut sock = None;
        for _ in 0..20 {
            match UnixDatagram::bind_addr(&addr) {
                Ok(s) => {
                    sock = Some(s);
                    break;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(25)),
            }
        }
        let sock = sock?;
        let reader = sock.try_clone().ok()?;
        // A forked child must not keep the address bound (no process could take it over).
        fork::close_in_child(sock.as_raw_fd());
        let reader_fd = reader.as_raw_fd();
        fork::close_in_child(reader_fd);
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, stop2) = (wake_tx.clone(), stop.clone());
        let spawned = std::thread::Builder::new()
            .name("woosync-wake".into())
            .spawn(move || {
                let mut buf = [0u8; 16];
                while reader.recv(&mut buf).is_ok() && !stop2.load(SeqCst) {
                    let _ = tx.try_send(());
                }
                fork::keep_in_child(reader.as_raw_fd());
            });
        let listener = WakeListener { socket: sock, stop };
        if spawned.is_err() {
            fork::keep_in_child(reader_fd); // the closure, and with it the reader, is gone
            return None;
        }
        Some(listener)
    }
}

impl Drop for WakeListener {
    fn drop(&mut self) {
        // Unblocks the listening thread, which then drops its descriptor and frees the address.
        self.stop.store(true, SeqCst);
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
        fork::keep_in_child(self.socket.as_raw_fd());
    }
}
