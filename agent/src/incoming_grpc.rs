//! Incoming traffic over gRPC (`Subscribe`, `AcceptIncoming`): the relayed form of the fd-socket
//! subscription, for a daemon that cannot take descriptors (an agent in a Kubernetes pod).
//!
//! The subscription is the same as on the fd socket ([`crate::incoming`]); only the delivery
//! differs: each connection's descriptor is parked here under its id and announced on the
//! `Subscribe` stream, and the daemon opens it with `AcceptIncoming`, over which its bytes are
//! relayed both ways. Parked connections that nobody opens within [`PARK_TIMEOUT`] are closed.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use tether_protocol::agent::{
    self as proto, IncomingClient, IncomingServer, SubscribeRequest, incoming_client, incoming_event, incoming_server,
};
use tether_protocol::fdpass::{self, ConnectionKind, IncomingStats};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use crate::incoming::{Event, Incoming};

pub const PARK_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections announced and not yet opened.
#[derive(Clone, Default)]
pub struct Parked(Arc<Mutex<HashMap<u64, (ConnectionKind, OwnedFd, Instant)>>>);

impl Parked {
    fn park(&self, id: u64, kind: ConnectionKind, fd: OwnedFd) {
        let mut m = self.0.lock().unwrap();
        m.retain(|_, (_, _, at)| at.elapsed() < PARK_TIMEOUT);
        m.insert(id, (kind, fd, Instant::now()));
    }

    fn take(&self, id: u64) -> Option<(ConnectionKind, OwnedFd)> {
        self.0.lock().unwrap().remove(&id).map(|(k, fd, _)| (k, fd))
    }
}

fn event(e: incoming_event::Event) -> Result<proto::IncomingEvent, Status> {
    Ok(proto::IncomingEvent { event: Some(e) })
}

fn kind(k: ConnectionKind) -> proto::ConnectionKind {
    match k {
        ConnectionKind::Socket => proto::ConnectionKind::Socket,
        ConnectionKind::Stream => proto::ConnectionKind::Stream,
        ConnectionKind::Mirror => proto::ConnectionKind::Mirror,
    }
}

pub type Events = ReceiverStream<Result<proto::IncomingEvent, Status>>;

/// `Subscribe`: the first message answers; events follow until the client cancels.
pub fn subscribe(incoming: Arc<Incoming>, parked: Parked, req: SubscribeRequest) -> Result<Events, Status> {
    let port = u16::try_from(req.port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| Status::invalid_argument("port must be 1-65535"))?;
    let mode = match proto::IncomingMode::try_from(req.mode) {
        Ok(proto::IncomingMode::Mirror) => fdpass::IncomingMode::Mirror,
        Ok(proto::IncomingMode::Steal) => fdpass::IncomingMode::Steal,
        _ => return Err(Status::invalid_argument("mode must be mirror or steal")),
    };
    let filter = req.http_filter.map(|f| fdpass::HttpFilter {
        header: (!f.header.is_empty()).then_some(f.header),
        path: (!f.path.is_empty()).then_some(f.path),
    });
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::task::spawn_blocking(move || {
        let (sub, events) = match incoming.subscribe_channel(port, mode, filter) {
            Ok(x) => x,
            Err(e) => {
                let errno = match (e.raw_os_error(), e.kind()) {
                    (Some(n), _) => n,
                    (None, std::io::ErrorKind::AddrInUse) => libc::EADDRINUSE,
                    (None, std::io::ErrorKind::InvalidInput) => libc::EINVAL,
                    _ => libc::EIO,
                };
                let result = proto::SubscribeResult { errno, message: e.to_string() };
                let _ = tx.blocking_send(event(incoming_event::Event::Result(result)));
                return;
            }
        };
        let ok = proto::SubscribeResult { errno: 0, message: String::new() };
        if tx.blocking_send(event(incoming_event::Event::Result(ok))).is_ok() {
            forward(&incoming, &parked, &sub, events, &tx);
        }
        incoming.end(&sub);
    });
    Ok(ReceiverStream::new(rx))
}

fn forward(
    incoming: &Incoming,
    parked: &Parked,
    sub: &crate::incoming::Sub,
    events: mpsc::Receiver<Event>,
    tx: &tokio::sync::mpsc::Sender<Result<proto::IncomingEvent, Status>>,
) {
    let mut sent = IncomingStats::default();
    let mut last = Instant::now();
    while !tx.is_closed() {
        match events.recv_timeout(Duration::from_millis(500)) {
            Ok(Event::Conn { kind: k, peer, local, fd }) => {
                let id = incoming.next_id();
                parked.park(id, k, fd);
                let c = proto::IncomingConnection {
                    id,
                    kind: kind(k) as i32,
                    peer: peer.to_string(),
                    local: local.to_string(),
                };
                if tx.blocking_send(event(incoming_event::Event::Connection(c))).is_err() {
                    return;
                }
            }
            Ok(Event::Closed) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if last.elapsed() >= Duration::from_secs(1) {
            last = Instant::now();
            let now = sub.stats.snapshot();
            if now != sent {
                if tx.blocking_send(event(incoming_event::Event::Stats(now.clone().into()))).is_err() {
                    return;
                }
                sent = now;
            }
        }
    }
}

pub type Bytes = ReceiverStream<Result<IncomingServer, Status>>;

/// `AcceptIncoming`: relays one parked connection.
pub async fn accept(parked: Parked, mut inbound: Streaming<IncomingClient>) -> Result<Bytes, Status> {
    let id = match inbound.message().await? {
        Some(IncomingClient { msg: Some(incoming_client::Msg::Open(id)) }) => id,
        _ => {
            return Err(Status::invalid_argument("the first AcceptIncoming message must be `open`"));
        }
    };
    let (k, fd) = parked.take(id).ok_or_else(|| Status::not_found(format!("no connection {id} is waiting")))?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let io: (Box<dyn AsyncRead + Send + Unpin>, Box<dyn AsyncWrite + Send + Unpin>) = if k == ConnectionKind::Socket {
        let s = std::net::TcpStream::from(fd);
        s.set_nonblocking(true).map_err(|e| Status::internal(e.to_string()))?;
        let (r, w) = tokio::net::TcpStream::from_std(s).map_err(|e| Status::internal(e.to_string()))?.into_split();
        (Box::new(r), Box::new(w))
    } else {
        let s = std::os::unix::net::UnixStream::from(fd);
        s.set_nonblocking(true).map_err(|e| Status::internal(e.to_string()))?;
        let (r, w) = tokio::net::UnixStream::from_std(s).map_err(|e| Status::internal(e.to_string()))?.into_split();
        (Box::new(r), Box::new(w))
    };
    tokio::spawn(relay(io, inbound, tx));
    Ok(ReceiverStream::new(rx))
}

async fn relay(
    (mut r, mut w): (Box<dyn AsyncRead + Send + Unpin>, Box<dyn AsyncWrite + Send + Unpin>),
    mut inbound: Streaming<IncomingClient>,
    tx: tokio::sync::mpsc::Sender<Result<IncomingServer, Status>>,
) {
    let down = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let m = IncomingServer { msg: Some(incoming_server::Msg::Data(buf[..n].to_vec())) };
                    if tx.send(Ok(m)).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let up = async {
        while let Ok(Some(IncomingClient { msg: Some(incoming_client::Msg::Data(d)) })) = inbound.message().await {
            if w.write_all(&d).await.is_err() {
                return;
            }
        }
        let _ = w.shutdown().await;
    };
    tokio::join!(down, up);
}
