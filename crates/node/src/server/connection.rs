//! Accepted connections: cut by shutdown, cut when the peer is silent too
//! long, and each with its own budget of signature verifications.
//!
//! Graceful shutdown waits for every open stream to finish. A client that
//! stops reading a stream never lets it finish: its HTTP/2 window stays full,
//! so even the final status cannot be sent. After the grace period the node
//! severs every connection: each socket's reads and writes fail, the
//! connection task ends, and shutdown completes.
//!
//! A peer that sends nothing holds a socket, a task and their buffers
//! forever (slowloris), and neither hyper nor tonic times out a connection
//! that never finishes its TLS or HTTP/2 handshake. So a socket whose peer
//! has sent nothing for [`HANDSHAKE_TIMEOUT`] since it connected, or nothing
//! for [`IDLE_TIMEOUT`] since its last bytes, fails its next read and the
//! connection ends. A live HTTP/2 peer is never silent that long: the server
//! pings it after [`super::KEEPALIVE_INTERVAL`] without frames, and its
//! answer is bytes. A peer that trickles a byte just inside each limit
//! keeps its socket (about 30 KiB of node memory each, `bench --abuse`):
//! limiting connections per address is a front proxy's job.
//!
//! Otherwise sockets behave exactly like the TCP streams they wrap.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::{Connected, TcpConnectInfo};

use super::{KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT};

/// How long a new connection may stay silent before its first bytes (a TLS
/// ClientHello or the HTTP/2 preface, which real clients send at once):
/// generous for a slow link's round trips, short enough that sockets opened
/// and left silent are released within seconds.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection may stay silent after its last bytes. Longer than
/// the keepalive ping's interval and timeout together, so that hyper ends a
/// silent HTTP/2 connection first; this catches what hyper does not ping: a
/// TLS handshake or an HTTP/2 preface left unfinished.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

const _: () =
    assert!(IDLE_TIMEOUT.as_secs() > KEEPALIVE_INTERVAL.as_secs() + KEEPALIVE_TIMEOUT.as_secs());

/// Signatures one connection may have waiting for or under verification
/// on the rayon pool at once. The pool takes jobs in arrival order, so
/// without a limit one client's flood of forged events (a thousand calls,
/// or a SubmitStream's 256-event window, with 32 signatures each) would
/// queue ahead of every honest event. With it, an honest event waits behind
/// at most this many verifications per busy connection (about a millisecond
/// on two cores), while one connection still keeps 64 cores busy. At least
/// [`ceasefire_core::signing::MAX_SIGNATURES`], so one event always fits.
pub const VERIFY_BUDGET_PER_CONNECTION: usize = 64;

const _: () = assert!(VERIFY_BUDGET_PER_CONNECTION >= ceasefire_core::signing::MAX_SIGNATURES);

/// What handlers know of the connection a call came on (in the request's
/// extensions, with TLS too).
#[derive(Clone, Debug)]
pub struct ConnectionInfo {
    pub tcp: TcpConnectInfo,
    /// Permits for signatures under verification, one per signature
    /// ([`VERIFY_BUDGET_PER_CONNECTION`] in all), shared by the
    /// connection's calls.
    pub verify_budget: Arc<Semaphore>,
}

type Signal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A TCP stream that fails once `severed` turns true, or once its peer has
/// been silent too long.
pub struct Severable {
    stream: TcpStream,
    /// Resolves when the node severs connections; polled with every I/O so
    /// that a task idle on this socket wakes up for it.
    severed: Signal,
    is_severed: bool,
    /// When the peer last sent bytes (or connected).
    last_read: Instant,
    /// Whether it has sent any bytes yet.
    has_read: bool,
    /// Fires at or before the silence limit; re-armed from `last_read` when
    /// it fires early (cheaper than re-arming on every read).
    silence: Pin<Box<Sleep>>,
    info: ConnectionInfo,
}

impl Severable {
    pub fn new(stream: TcpStream, mut severed: watch::Receiver<bool>) -> Severable {
        let tcp = stream.connect_info();
        Severable {
            stream,
            severed: Box::pin(async move {
                let _ = severed.wait_for(|severed| *severed).await;
            }),
            is_severed: false,
            last_read: Instant::now(),
            has_read: false,
            silence: Box::pin(tokio::time::sleep(HANDSHAKE_TIMEOUT)),
            info: ConnectionInfo {
                tcp,
                verify_budget: Arc::new(Semaphore::new(VERIFY_BUDGET_PER_CONNECTION)),
            },
        }
    }

    /// Fails once the peer has been silent past its limit; otherwise makes
    /// sure the task wakes up when it would be.
    fn check_silence(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        while self.silence.as_mut().poll(cx).is_ready() {
            let (limit, what) = if self.has_read {
                (IDLE_TIMEOUT, "no bytes from the client")
            } else {
                (
                    HANDSHAKE_TIMEOUT,
                    "the client sent nothing after connecting",
                )
            };
            let deadline = self.last_read + limit;
            if deadline <= Instant::now() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{what} for {limit:?}"),
                ));
            }
            self.silence.as_mut().reset(deadline);
        }
        Ok(())
    }

    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if !self.is_severed && self.severed.as_mut().poll(cx).is_ready() {
            self.is_severed = true;
        }
        if self.is_severed {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the server is shutting down",
            ));
        }
        Ok(())
    }
}

impl AsyncRead for Severable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check(cx)?;
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                self.last_read = Instant::now();
                self.has_read = true;
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                self.check_silence(cx)?;
                Poll::Pending
            }
            ready => ready,
        }
    }
}

impl AsyncWrite for Severable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl Connected for Severable {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> ConnectionInfo {
        self.info.clone()
    }
}
