//! Connections that shutdown can cut.
//!
//! Graceful shutdown waits for every open stream to finish. A client that
//! stops reading a stream never lets it finish: its HTTP/2 window stays full,
//! so even the final status cannot be sent. After the grace period the node
//! severs every connection: each socket's reads and writes fail, the
//! connection task ends, and shutdown completes. Until then, sockets behave
//! exactly like the TCP streams they wrap.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tonic::transport::server::{Connected, TcpConnectInfo};

type Signal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A TCP stream that fails once `severed` turns true.
pub struct Severable {
    stream: TcpStream,
    /// Resolves when the node severs connections; polled with every I/O so
    /// that a task idle on this socket wakes up for it.
    severed: Signal,
    is_severed: bool,
}

impl Severable {
    pub fn new(stream: TcpStream, mut severed: watch::Receiver<bool>) -> Severable {
        Severable {
            stream,
            severed: Box::pin(async move {
                let _ = severed.wait_for(|severed| *severed).await;
            }),
            is_severed: false,
        }
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
        Pin::new(&mut self.stream).poll_read(cx, buf)
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
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}
