//! Incoming traffic from an agent that cannot hand over descriptors (one in a Kubernetes pod).
//!
//! The supervisor ([`crate::intercept::incoming`]) reads a subscription the way the agent's fd
//! socket delivers it: event lines on a Unix stream, each connection's descriptor riding with
//! its line. This module makes the same thing out of the gRPC form, so the supervisor cannot
//! tell the two apart: `Subscribe`'s events become lines on a socket pair, and each announced
//! connection becomes a Unix stream pair whose far end travels with its line while the near end
//! is relayed over `AcceptIncoming`. A stolen connection therefore arrives as kind `stream` (its
//! bytes relayed; the supervisor shows the real client in `accept` and `getpeername`), never as
//! the client's own socket. When the supervisor closes the subscription, `Subscribe` is
//! cancelled and the agent drops its redirect; when the agent ends it, the pair closes.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use tether_protocol::agent::{self as proto, incoming_client, incoming_event, incoming_server};
use tether_protocol::fdpass::{self, ConnectionKind, IncomingEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use super::Client;

/// How long the agent may take to confirm a subscription.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
const CHUNK: usize = 64 * 1024;

/// Subscribes to the target's TCP `port` over gRPC (blocking: call it from a blocking thread of
/// the runtime). Returns the supervisor's end of the event pair.
pub fn subscribe(
    client: &Client,
    port: u16,
    mode: fdpass::IncomingMode,
    filter: Option<fdpass::HttpFilter>,
) -> io::Result<UnixStream> {
    let rt = tokio::runtime::Handle::try_current()
        .map_err(|_| io::Error::other("incoming traffic from a remote agent needs the daemon's runtime"))?;
    let request = proto::SubscribeRequest {
        port: port.into(),
        mode: match mode {
            fdpass::IncomingMode::Mirror => proto::IncomingMode::Mirror,
            fdpass::IncomingMode::Steal => proto::IncomingMode::Steal,
        } as i32,
        http_filter: filter
            .map(|f| proto::HttpFilter { header: f.header.unwrap_or_default(), path: f.path.unwrap_or_default() }),
    };
    let mut events_client = client.clone();
    let events = rt.block_on(async move {
        let confirmed = async {
            let mut events = events_client.subscribe(request).await.map_err(status)?.into_inner();
            match events.message().await.map_err(status)? {
                Some(proto::IncomingEvent { event: Some(incoming_event::Event::Result(r)) }) if r.errno == 0 => {
                    Ok(events)
                }
                Some(proto::IncomingEvent { event: Some(incoming_event::Event::Result(r)) }) => {
                    let kind = io::Error::from_raw_os_error(r.errno).kind();
                    Err(io::Error::new(kind, format!("the agent refused port {port}: {}", r.message)))
                }
                _ => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the agent's Subscribe stream did not start with its result: is the agent of this version?",
                )),
            }
        };
        tokio::time::timeout(CONFIRM_TIMEOUT, confirmed).await.unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the agent did not confirm the subscription to port {port} within {CONFIRM_TIMEOUT:?}"),
            ))
        })
    })?;
    let (ours, theirs) = UnixStream::pair()?;
    ours.set_nonblocking(true)?;
    let client = client.clone();
    rt.spawn(async move {
        match tokio::net::UnixStream::from_std(ours) {
            Ok(ours) => forward(client, events, ours, port).await,
            Err(e) => tracing::warn!(err = %e, port, "cannot relay incoming traffic"),
        }
    });
    Ok(theirs)
}

/// Turns the agent's events into lines until either side ends the subscription.
async fn forward(client: Client, mut events: Streaming<proto::IncomingEvent>, ours: tokio::net::UnixStream, port: u16) {
    loop {
        let event = tokio::select! {
            e = events.message() => e,
            () = closed(&ours) => return,
        };
        let event = match event {
            Ok(Some(proto::IncomingEvent { event: Some(e) })) => e,
            Ok(Some(_)) => continue,
            Ok(None) => return tracing::info!(port, "the agent ended the subscription"),
            Err(s) => return tracing::warn!(port, err = s.message(), "the agent's subscription stream broke"),
        };
        let sent = match event {
            incoming_event::Event::Connection(c) => announce(&client, &ours, c).await,
            incoming_event::Event::Stats(s) => send(&ours, &IncomingEvent::Stats(s.into()), None).await,
            incoming_event::Event::Result(_) => Ok(()),
        };
        if let Err(e) = sent {
            return tracing::info!(port, err = %e, "the subscription's reader is gone");
        }
    }
}

/// Resolves when the supervisor closed its end (it never writes to it).
async fn closed(ours: &tokio::net::UnixStream) {
    let mut buf = [0u8; 64];
    loop {
        if ours.readable().await.is_err() {
            return;
        }
        match ours.try_read(&mut buf) {
            Ok(0) => return,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// Gives the supervisor one connection: a stream pair, its far end with the line, the near end
/// relayed over `AcceptIncoming`.
async fn announce(client: &Client, ours: &tokio::net::UnixStream, c: proto::IncomingConnection) -> io::Result<()> {
    let kind = match proto::ConnectionKind::try_from(c.kind) {
        Ok(proto::ConnectionKind::Mirror) => ConnectionKind::Mirror,
        _ => ConnectionKind::Stream,
    };
    let (near, far) = UnixStream::pair()?;
    let line = IncomingEvent::Connection { id: c.id, kind, peer: c.peer, local: c.local };
    send(ours, &line, Some(&far)).await?;
    drop(far);
    tokio::spawn(relay(client.clone(), c.id, near));
    Ok(())
}

async fn send(ours: &tokio::net::UnixStream, event: &IncomingEvent, fd: Option<&UnixStream>) -> io::Result<()> {
    let line = serde_json::to_string(event).expect("serializable");
    loop {
        ours.writable().await?;
        match ours.try_io(Interest::WRITABLE, || fdpass::try_send_line(ours, &line, fd.map(|f| f.as_raw_fd()))) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

/// Moves one connection's bytes between the supervisor's stream and `AcceptIncoming`; either
/// side's end of data half-closes the other.
async fn relay(mut client: Client, id: u64, near: UnixStream) {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let open = proto::IncomingClient { msg: Some(incoming_client::Msg::Open(id)) };
    if tx.send(open).await.is_err() {
        return;
    }
    let mut from_agent = match client.accept_incoming(ReceiverStream::new(rx)).await {
        Ok(r) => r.into_inner(),
        Err(s) => return tracing::warn!(id, err = s.message(), "the agent would not give an incoming connection"),
    };
    let near = match near.set_nonblocking(true).and_then(|()| tokio::net::UnixStream::from_std(near)) {
        Ok(s) => s,
        Err(e) => return tracing::warn!(id, err = %e, "cannot relay an incoming connection"),
    };
    let (mut r, mut w) = near.into_split();
    let to_agent = async move {
        let mut buf = vec![0u8; CHUNK];
        while let Ok(n @ 1..) = r.read(&mut buf).await {
            let data = proto::IncomingClient { msg: Some(incoming_client::Msg::Data(buf[..n].to_vec())) };
            if tx.send(data).await.is_err() {
                break;
            }
        }
        // Dropping `tx` ends the request stream: the agent half-closes the client's connection.
    };
    let to_program = async move {
        while let Ok(Some(m)) = from_agent.message().await {
            if let Some(incoming_server::Msg::Data(d)) = m.msg
                && w.write_all(&d).await.is_err()
            {
                break;
            }
        }
        let _ = w.shutdown().await;
    };
    tokio::join!(to_agent, to_program);
}

fn status(s: tonic::Status) -> io::Error {
    io::Error::other(format!("agent: {} ({:?})", s.message(), s.code()))
}
