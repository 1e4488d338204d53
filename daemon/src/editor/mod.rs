//! The editor protocol: JSON-RPC 2.0 with LSP framing on the daemon socket, the one protocol
//! every client speaks (editors through `tether lsp`, the CLI directly).
//!
//! Method routing, `initialize`/`shutdown`/`exit` semantics and `$/cancelRequest` come from
//! `tower-lsp-server`'s `LspService`. The connection loop is ours, because the daemon must stay
//! up whatever a client does: messages have a size limit ([`framing`]), each client has a
//! bounded outgoing queue and is dropped when it stops reading ([`hub`]), notifications are
//! handled in order (so `didChange`s never reorder) while requests run concurrently, and a
//! client that leaves mid-request only loses its answer.
//!
//! - [`protocol`]: the types and the method table (`schemas/editor-protocol.json`).
//! - [`backend`]: the handlers.
//! - [`launch`]: the doctor's seam and the environment patch for `tether/prepareLaunch`.
//! - [`config_docs`]: config files: diagnostics, completion, hover, the disk watcher.

mod backend;
pub mod bench;
pub mod config_docs;
pub mod framing;
pub mod hub;
pub mod launch;
pub mod protocol;
mod targets;

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::task::JoinSet;
use tower::Service;
use tower_lsp_server::jsonrpc::{Id, Request, Response};

use crate::server::Daemon;
use framing::{FrameError, FrameReader};
use hub::{Conn, Out};

/// Requests of one client that may run at once; more wait (and the client's reading pauses).
const MAX_IN_FLIGHT: usize = 64;

#[derive(Deserialize)]
#[serde(untagged)]
enum Incoming {
    Response(Response),
    Request(Request),
}

fn frame<T: Serialize>(msg: &T) -> Arc<[u8]> {
    framing::encode(&serde_json::to_vec(msg).expect("a message serializes")).into()
}

fn error_frame(id: Id, code: i64, message: String) -> Arc<[u8]> {
    frame(&serde_json::json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}))
}

/// Serves one editor-protocol connection until it ends. `prefix`: bytes the daemon already read.
pub async fn serve(daemon: Arc<Daemon>, stream: tokio::net::UnixStream, prefix: Vec<u8>) {
    let (read, write) = stream.into_split();
    let (conn, rx) = daemon.hub.connect();
    let writer = tokio::spawn(write_loop(write, rx, conn.clone()));
    let (service, socket) = backend::service(daemon.clone(), conn.clone());
    let (mut to_client, responses) = socket.split();
    let forward = {
        let conn = conn.clone();
        tokio::spawn(async move {
            while let Some(req) = to_client.next().await {
                if !conn.send(frame(&req)).await {
                    break;
                }
            }
        })
    };
    let mut tasks = JoinSet::new();
    let why = tokio::select! {
        why = read_loop(FrameReader::new(read, prefix), service, responses, &conn, &mut tasks) => why,
        _ = conn.killed() => "dropped",
    };
    tracing::debug!(client = conn.id, "connection ends: {why}");
    conn.hang_up();
    daemon.hub.disconnect(conn.id);
    if why == "dropped" {
        conn.mark_closed();
        tasks.detach_all();
        writer.abort();
    } else {
        // The client stopped sending: answer what it asked, then close.
        let _ =
            tokio::time::timeout(Duration::from_secs(120), async { while tasks.join_next().await.is_some() {} }).await;
        tasks.detach_all();
        conn.close().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
        conn.mark_closed();
    }
    forward.abort();
}

async fn write_loop(
    mut w: tokio::net::unix::OwnedWriteHalf,
    mut rx: tokio::sync::mpsc::Receiver<Out>,
    conn: Arc<Conn>,
) {
    while let Some(out) = rx.recv().await {
        match out {
            Out::Frame(f) => {
                if let Err(e) = w.write_all(&f).await {
                    conn.kill(&format!("writing to it failed: {e}"));
                    break;
                }
            }
            Out::Close => break,
        }
    }
    let _ = w.shutdown().await;
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: FrameReader<R>,
    mut service: tower_lsp_server::LspService<backend::Editor>,
    mut responses: impl futures::Sink<Response> + Unpin,
    conn: &Arc<Conn>,
    tasks: &mut JoinSet<()>,
) -> &'static str {
    loop {
        let body = match reader.next().await {
            Ok(Some(body)) => body,
            Ok(None) => return "end of stream",
            Err(FrameError::Io(_)) => return "connection lost",
            Err(e) => {
                // The stream cannot be trusted past a bad frame: say why, then close.
                conn.send(error_frame(Id::Null, -32600, format!("{e}; the daemon closes this connection"))).await;
                return "protocol error";
            }
        };
        let value: serde_json::Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                conn.send(error_frame(Id::Null, -32700, format!("parse error: {e}"))).await;
                continue;
            }
        };
        let msg = match serde_json::from_value::<Incoming>(value.clone()) {
            Ok(m) => m,
            Err(_) => {
                let id = value.get("id").and_then(|i| serde_json::from_value(i.clone()).ok()).unwrap_or(Id::Null);
                let message = "invalid request: not a JSON-RPC 2.0 request, notification or response \
                               (`jsonrpc` must be \"2.0\"; batches are not supported)";
                conn.send(error_frame(id, -32600, message.into())).await;
                continue;
            }
        };
        let req = match msg {
            Incoming::Response(r) => {
                let _ = responses.send(r).await;
                continue;
            }
            // `method` defaults to "" when parsing: a message without one is no request at all.
            Incoming::Request(req) if value.get("method").is_none() => {
                let id = req.id().cloned().unwrap_or(Id::Null);
                let message = "invalid request: no `method` (a response needs `result` or `error`)";
                conn.send(error_frame(id, -32600, message.into())).await;
                continue;
            }
            Incoming::Request(req) => req,
        };
        if futures::future::poll_fn(|cx| service.poll_ready(cx)).await.is_err() {
            return "exit";
        }
        // Notifications run in order, and `initialize` before anything else; requests run
        // concurrently.
        let in_order = req.id().is_none() || req.method() == "initialize";
        let exit = req.method() == "exit";
        // A request the service leaves unanswered (it drops unknown `$/` methods, which LSP
        // allows for notifications only) is answered here, so no client waits forever.
        let unanswered = req.id().map(|id| (id.clone(), req.method().to_string()));
        let call = service.call(req);
        let fut = async move {
            match (call.await, unanswered) {
                (Ok(Some(resp)), _) => Some(frame(&resp)),
                (Ok(None), Some((id, method))) => Some(error_frame(id, -32601, format!("method not found: {method}"))),
                _ => None,
            }
        };
        if in_order {
            if let Some(f) = fut.await {
                conn.send(f).await;
            }
            if exit {
                return "exit";
            }
            continue;
        }
        while tasks.try_join_next().is_some() {}
        if tasks.len() >= MAX_IN_FLIGHT {
            tasks.join_next().await;
        }
        let conn = conn.clone();
        tasks.spawn(async move {
            if let Some(f) = fut.await {
                conn.send(f).await;
            }
        });
    }
}
