//! Sends a request's head and body in one write. ureq hands its transport the head and then the
//! body, and the TCP (or TLS) transport writes each at once: with `TCP_NODELAY`, two packets per
//! delivery, two `sendto` calls here and two reads at the receiver. This transport, the last link
//! of the agent's connector chain, keeps what ureq transmits until ureq turns to read the response
//! (or until a buffer's worth has gathered), then writes it in one piece. Measured on loopback
//! against nginx: one `sendto` per delivery instead of two (PROFILE.md).

use ureq::unversioned::transport::{Buffers, ConnectionDetails, Connector, NextTimeout, Transport};
use ureq::Error;

/// The connector that wraps whatever the chain before it produced.
#[derive(Debug, Default)]
pub struct OneWrite;

impl Connector<Box<dyn Transport>> for OneWrite {
    type Out = OneWriteTransport;

    fn connect(
        &self,
        _details: &ConnectionDetails,
        chained: Option<Box<dyn Transport>>,
    ) -> Result<Option<Self::Out>, Error> {
        Ok(chained.map(|inner| OneWriteTransport {
            inner,
            pending: Vec::new(),
            timeout: None,
        }))
    }
}

pub struct OneWriteTransport {
    inner: Box<dyn Transport>,
    /// What ureq transmitted and this transport has not written yet (at most one output buffer).
    pending: Vec<u8>,
    /// The timeout of the latest transmit: the budget the pending bytes are written within.
    timeout: Option<NextTimeout>,
}

/// Capacity kept for the next request after a larger one was written (a pooled connection does
/// not hold on to a large body's worth of memory).
const KEEP: usize = 4096;

// By hand: the pending bytes are a request head with its signature and any credentials.
impl std::fmt::Debug for OneWriteTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneWriteTransport")
            .field("inner", &self.inner)
            .field("pending_bytes", &self.pending.len())
            .finish()
    }
}

impl OneWriteTransport {
    /// Writes what is pending through the inner transport's output buffer.
    fn flush(&mut self) -> Result<(), Error> {
        let Some(timeout) = self.timeout.take() else {
            return Ok(());
        };
        let n = self.pending.len();
        if n == 0 {
            return Ok(());
        }
        // `pending` never exceeds the output buffer (see transmit_output).
        self.inner.buffers().output()[..n].copy_from_slice(&self.pending);
        self.pending.clear();
        if self.pending.capacity() > KEEP {
            self.pending = Vec::new();
        }
        self.inner.transmit_output(n, timeout)
    }
}

impl Transport for OneWriteTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
        let output = self.inner.buffers().output();
        let amount = amount.min(output.len());
        if self.pending.len() + amount <= output.len() {
            self.pending.extend_from_slice(&output[..amount]);
        } else {
            // A large body: write what is pending, keep this chunk for the next write.
            let chunk = output[..amount].to_vec();
            self.flush()?;
            self.pending = chunk;
        }
        self.timeout = Some(timeout);
        Ok(())
    }

    // `maybe_await_input` keeps its default (ureq calls it through a `Box<dyn Transport>`, which
    // does not forward it): it reads only when no input is buffered, through `await_input`. Input
    // already buffered before the request is sent cannot happen on a pooled connection (ureq drops
    // one with unread input); with `Expect: 100-continue`, a server that answered at once has its
    // answer read and the body left unsent, and `is_open` keeps the connection out of the pool.

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        self.flush()?;
        self.inner.await_input(timeout)
    }

    fn is_open(&mut self) -> bool {
        // Bytes still pending belong to a request that failed half way: not reusable.
        self.pending.is_empty() && self.inner.is_open()
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use ureq::unversioned::transport::LazyBuffers;

    /// Records every write the wrapped transport makes.
    #[derive(Debug)]
    struct Recorder {
        buffers: LazyBuffers,
        writes: Arc<Mutex<Vec<Vec<u8>>>>,
    }

    impl Transport for Recorder {
        fn buffers(&mut self) -> &mut dyn Buffers {
            &mut self.buffers
        }
        fn transmit_output(&mut self, amount: usize, _t: NextTimeout) -> Result<(), Error> {
            let w = self.buffers.output()[..amount].to_vec();
            self.writes.lock().unwrap().push(w);
            Ok(())
        }
        fn await_input(&mut self, _t: NextTimeout) -> Result<bool, Error> {
            Ok(false)
        }
        fn is_open(&mut self) -> bool {
            true
        }
    }

    fn wrapped(output: usize) -> (Box<dyn Transport>, Arc<Mutex<Vec<Vec<u8>>>>) {
        let writes = Arc::new(Mutex::new(Vec::new()));
        let inner = Recorder {
            buffers: LazyBuffers::new(64, output),
            writes: writes.clone(),
        };
        // As `OneWrite::connect` makes it (its connection details are not read).
        let t = OneWriteTransport {
            inner: Box::new(inner),
            pending: Vec::new(),
            timeout: None,
        };
        // Boxed, as ureq holds it (so the trait's default methods are the ones it calls).
        (Box::new(t), writes)
    }

    fn timeout() -> NextTimeout {
        NextTimeout {
            after: ureq::unversioned::transport::time::Duration::Exact(Duration::from_secs(5)),
            reason: ureq::Timeout::Global,
            per_read: None,
            per_write: None,
        }
    }

    fn send(t: &mut Box<dyn Transport>, bytes: &[u8]) {
        t.buffers().output()[..bytes.len()].copy_from_slice(bytes);
        t.transmit_output(bytes.len(), timeout()).unwrap();
    }

    #[test]
    fn head_and_body_go_out_in_one_write_when_the_response_is_awaited() {
        let (mut t, writes) = wrapped(1024);
        send(&mut t, b"POST / HTTP/1.1\r\ncontent-length: 5\r\n\r\n");
        send(&mut t, b"hello");
        assert!(
            writes.lock().unwrap().is_empty(),
            "nothing written before the response is awaited"
        );
        assert!(
            !t.is_open(),
            "a connection with bytes pending is not reusable"
        );
        let shown = format!("{t:?}");
        assert!(
            shown.contains("pending_bytes: 43") && !shown.contains("POST"),
            "{shown}"
        );
        t.maybe_await_input(timeout()).unwrap();
        assert_eq!(
            *writes.lock().unwrap(),
            vec![b"POST / HTTP/1.1\r\ncontent-length: 5\r\n\r\nhello".to_vec()]
        );
        assert!(t.is_open());
    }

    #[test]
    fn a_body_larger_than_the_buffer_is_written_in_order_in_buffer_sized_pieces() {
        let (mut t, writes) = wrapped(16);
        let chunks: [&[u8]; 4] = [b"HEAD:1", b"aaaaaaaaaa", b"bbbbbbbbbbbbbbbb", b"cc"];
        for c in chunks {
            send(&mut t, c);
        }
        t.await_input(timeout()).unwrap();
        let w = writes.lock().unwrap();
        assert!(w.iter().all(|x| x.len() <= 16), "{w:?}");
        assert_eq!(w.concat(), chunks.concat());
        assert_eq!(w.len(), 3, "{w:?}");
    }
}
