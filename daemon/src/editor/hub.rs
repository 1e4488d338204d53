//! The connected clients, and the notifications every one of them gets.
//!
//! Each connection has a bounded queue of framed messages that its writer task drains. A
//! broadcast never waits: when a client's queue is full (it stopped reading), that client is
//! dropped, so one stuck editor can neither block the daemon nor make it buffer without bound.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;

use super::protocol::SessionSnapshot;
use crate::server::Daemon;

/// Messages a client may have waiting before it is dropped (`TETHER_CLIENT_QUEUE` overrides it,
/// for tests).
fn queue() -> usize {
    static QUEUE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *QUEUE.get_or_init(|| {
        std::env::var("TETHER_CLIENT_QUEUE").ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(1024)
    })
}

/// What a connection's writer task gets.
pub enum Out {
    /// A framed message.
    Frame(Arc<[u8]>),
    /// Write what came before, then close.
    Close,
}

/// One connected client.
pub struct Conn {
    pub id: u64,
    tx: mpsc::Sender<Out>,
    killed: tokio::sync::Notify,
    closed: AtomicBool,
    /// The client sent its last byte (it may still read what is queued).
    hung_up: AtomicBool,
    /// Initialized and wants `tether/sessionChanged`.
    pub wants_sessions: AtomicBool,
}

impl Conn {
    /// Queues a framed message, waiting while the queue is full (for answers to this client's
    /// own requests). `false` when the connection is gone.
    pub async fn send(&self, frame: Arc<[u8]>) -> bool {
        !self.is_closed() && self.tx.send(Out::Frame(frame)).await.is_ok()
    }

    fn push(&self, frame: Arc<[u8]>) {
        match self.tx.try_send(Out::Frame(frame)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.kill(&format!("it left {} messages unread", queue()));
            }
            Err(mpsc::error::TrySendError::Closed(_)) => self.closed.store(true, Ordering::SeqCst),
        }
    }

    /// Ends the connection now (its task closes the socket).
    pub fn kill(&self, why: &str) {
        if !self.closed.swap(true, Ordering::SeqCst) {
            tracing::warn!(client = self.id, "dropping the client: {why}");
        }
        self.killed.notify_one();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Whether the client left (or stopped sending): what it asks for is no longer wanted, e.g.
    /// a session that `tether/prepareLaunch` was still creating.
    pub fn is_gone(&self) -> bool {
        self.is_closed() || self.hung_up.load(Ordering::SeqCst)
    }

    pub fn hang_up(&self) {
        self.hung_up.store(true, Ordering::SeqCst);
    }

    pub fn mark_closed(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Resolves once [`Conn::kill`] was called.
    pub async fn killed(&self) {
        self.killed.notified().await
    }

    /// Asks the writer to finish after what is queued.
    pub async fn close(&self) {
        let _ = self.tx.send(Out::Close).await;
    }
}

#[derive(Default)]
pub struct Hub {
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next: AtomicU64,
}

impl Hub {
    /// A new connection and the receiving end of its queue.
    pub fn connect(&self) -> (Arc<Conn>, mpsc::Receiver<Out>) {
        let (tx, rx) = mpsc::channel(queue());
        let id = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        let conn = Arc::new(Conn {
            id,
            tx,
            killed: tokio::sync::Notify::new(),
            closed: AtomicBool::new(false),
            hung_up: AtomicBool::new(false),
            wants_sessions: AtomicBool::new(false),
        });
        self.conns.lock().unwrap().insert(id, conn.clone());
        (conn, rx)
    }

    pub fn disconnect(&self, id: u64) {
        self.conns.lock().unwrap().remove(&id);
    }

    /// Sends a notification to every client that wants session changes; serialized once.
    pub fn broadcast<P: Serialize>(&self, method: &str, params: &P) {
        let body = serde_json::json!({"jsonrpc": "2.0", "method": method, "params": params});
        let frame: Arc<[u8]> = super::framing::encode(body.to_string().as_bytes()).into();
        let conns: Vec<Arc<Conn>> = self.conns.lock().unwrap().values().cloned().collect();
        for c in conns {
            if c.wants_sessions.load(Ordering::SeqCst) && !c.is_closed() {
                c.push(frame.clone());
            }
        }
    }
}

/// Turns session changes into `tether/sessionChanged` notifications, forever. Wakes when the
/// table changes, and every 250 ms while sessions are active (for processes and counters), so a
/// busy session costs at most four notifications a second.
pub async fn session_notifier(daemon: Arc<Daemon>) {
    let mut last: HashMap<String, SessionSnapshot> = HashMap::new();
    loop {
        if daemon.sessions.active() > 0 {
            tokio::select! {
                _ = daemon.sessions.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        } else {
            daemon.sessions.changed().await;
        }
        let now = daemon.sessions.snapshots();
        for s in &now {
            if last.get(&s.id) != Some(s) {
                daemon.hub.broadcast("tether/sessionChanged", s);
            }
        }
        last = now.into_iter().map(|s| (s.id.clone(), s)).collect();
    }
}
