//! Who is connected, and for how long nobody has been.
//!
//! The agent must not outlive its clients: it exits when no client connection (gRPC TCP
//! connection or fd-socket connection) has existed for the idle timeout, counting from start
//! when nobody ever connects. Every accepted connection holds a [`ConnGuard`]; the gRPC ones are
//! wrapped in [`Counted`] so that the guard is dropped exactly when hyper drops the connection.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;
use tonic::transport::server::{Connected, TcpConnectInfo};

struct State {
    live: usize,
    /// When `live` last dropped to zero (or the start).
    idle_since: Instant,
}

/// The live-connection counter.
#[derive(Clone)]
pub struct Activity {
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
}

impl Activity {
    pub fn new() -> Self {
        Activity {
            state: Arc::new(Mutex::new(State { live: 0, idle_since: Instant::now() })),
            changed: Arc::new(Notify::new()),
        }
    }

    /// Counts a connection until the guard is dropped.
    pub fn connect(&self) -> ConnGuard {
        self.state.lock().unwrap().live += 1;
        self.changed.notify_one();
        ConnGuard { activity: self.clone() }
    }

    pub fn live(&self) -> usize {
        self.state.lock().unwrap().live
    }

    /// Returns once nobody has been connected for `timeout` (never when `timeout` is zero).
    pub async fn wait_idle(&self, timeout: Duration) {
        if timeout.is_zero() {
            return std::future::pending().await;
        }
        loop {
            let notified = self.changed.notified();
            let deadline = {
                let s = self.state.lock().unwrap();
                (s.live == 0).then_some(s.idle_since + timeout)
            };
            match deadline {
                Some(d) if Instant::now() >= d => return,
                Some(d) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(d) => {}
                        _ = notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }
}

/// One live connection.
pub struct ConnGuard {
    activity: Activity,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut s = self.activity.state.lock().unwrap();
        s.live -= 1;
        if s.live == 0 {
            s.idle_since = Instant::now();
        }
        drop(s);
        self.activity.changed.notify_one();
    }
}

/// A gRPC connection that counts as live while hyper holds it.
pub struct Counted {
    pub inner: TcpStream,
    pub _guard: ConnGuard,
}

impl Connected for Counted {
    type ConnectInfo = TcpConnectInfo;
    fn connect_info(&self) -> TcpConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for Counted {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_the_last_disconnect() {
        let a = Activity::new();
        let g = a.connect();
        let start = Instant::now();
        let waiter = tokio::spawn({
            let a = a.clone();
            async move { a.wait_idle(Duration::from_secs(10)).await }
        });
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(!waiter.is_finished(), "idle while a client is connected");
        assert_eq!(a.live(), 1);
        drop(g);
        waiter.await.unwrap();
        assert!(start.elapsed() >= Duration::from_secs(40));
        assert_eq!(a.live(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_from_start_when_nobody_connects() {
        let a = Activity::new();
        let start = Instant::now();
        a.wait_idle(Duration::from_secs(5)).await;
        assert!(start.elapsed() >= Duration::from_secs(5) && start.elapsed() < Duration::from_secs(6));
    }
}
