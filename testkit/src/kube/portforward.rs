//! Port-forward over WebSocket, as the API server and kubelet do it for kube's `ws` feature.
//!
//! Subprotocol `v4.channel.k8s.io` (or the older `portforward.k8s.io`): each requested port has
//! a data channel (`2*i`) and an error channel (`2*i+1`); every binary message starts with its
//! channel byte, and the first message of each channel carries the port (little-endian u16).
//! One WebSocket forwards one connection per port: it connects to `127.0.0.1:PORT` inside the
//! pod's network namespace, and a failure is reported on the error channel. SPDY (what
//! `kubectl port-forward` speaks, directly or tunnelled in a WebSocket) is refused.

use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::Shared;
use super::server::{Body, full, status};

const PROTOCOLS: [&str; 2] = ["v4.channel.k8s.io", "portforward.k8s.io"];

pub(crate) async fn upgrade(shared: Arc<Shared>, req: Request<Incoming>, ns: &str, pod: &str) -> Response<Body> {
    let header = |k: &str| req.headers().get(k).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    if !header("upgrade").eq_ignore_ascii_case("websocket") {
        return status(
            400,
            "BadRequest",
            "the fake API server forwards ports over WebSocket (v4.channel.k8s.io) only; SPDY (kubectl port-forward) is not supported".into(),
        );
    }
    let offered = header("sec-websocket-protocol");
    let Some(protocol) = offered.split(',').map(str::trim).find(|p| PROTOCOLS.contains(p)) else {
        return status(
            400,
            "BadRequest",
            format!(
                "the fake API server does not speak {offered:?} for port-forward (only v4.channel.k8s.io; SPDY tunnelling is not supported)"
            ),
        );
    };
    let protocol = protocol.to_string();
    let ports: Vec<u16> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|p| p.strip_prefix("ports="))
        .flat_map(|v| v.split("%2C").flat_map(|x| x.split(',')).map(String::from).collect::<Vec<_>>())
        .filter_map(|p| p.parse().ok())
        .collect();
    if ports.is_empty() {
        return status(400, "BadRequest", "portforward needs ?ports=".into());
    }
    let netns = shared.lock().backings.get(&(ns.to_string(), pod.to_string())).map(|b| b.netns());
    let Some(netns) = netns else {
        return status(404, "NotFound", format!("pods \"{pod}\" not found (or not backed by a local pod)"));
    };
    let key = header("sec-websocket-key");
    let accept = derive_accept_key(key.as_bytes());
    tokio::spawn(async move {
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(u) => u,
            Err(_) => return,
        };
        let io = hyper_util::rt::TokioIo::new(upgraded);
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(io, Role::Server, None).await;
        forward(ws, ports, netns).await;
    });
    let mut resp = full(StatusCode::SWITCHING_PROTOCOLS, "application/octet-stream", Vec::new());
    let h = resp.headers_mut();
    h.remove("content-type");
    h.insert("upgrade", "websocket".parse().unwrap());
    h.insert("connection", "Upgrade".parse().unwrap());
    h.insert("sec-websocket-accept", accept.parse().unwrap());
    h.insert("sec-websocket-protocol", protocol.parse().unwrap());
    resp
}

async fn forward<S>(ws: tokio_tungstenite::WebSocketStream<S>, ports: Vec<u16>, netns: std::path::PathBuf)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut source) = ws.split();
    // Channel headers: data then error, for every port.
    for (i, p) in ports.iter().enumerate() {
        let [lo, hi] = p.to_le_bytes();
        for ch in [2 * i as u8, 2 * i as u8 + 1] {
            if sink.send(Message::binary(vec![ch, lo, hi])).await.is_err() {
                return;
            }
        }
    }
    // One connection, for the first port (what the daemon and kube's forwarder use).
    let port = ports[0];
    let connected = tokio::task::spawn_blocking(move || {
        crate::run_in_netns_path(&netns, || std::net::TcpStream::connect(("127.0.0.1", port)))
    })
    .await;
    let tcp = match connected {
        Ok(Ok(Ok(s))) => s,
        other => {
            let why = match other {
                Ok(Ok(Err(e))) => e.to_string(),
                Ok(Err(e)) => format!("{e:#}"),
                Err(e) => e.to_string(),
                Ok(Ok(Ok(_))) => unreachable!(),
            };
            let mut msg = vec![1u8];
            msg.extend(format!("error forwarding port {port} to pod: dial tcp4 127.0.0.1:{port}: {why}").into_bytes());
            let _ = sink.send(Message::binary(msg)).await;
            let _ = sink.send(Message::Close(None)).await;
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_nonblocking(true);
    let Ok(tcp) = tokio::net::TcpStream::from_std(tcp) else { return };
    let (mut rd, mut wr) = tcp.into_split();
    let down = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024 + 1];
        loop {
            match rd.read(&mut buf[1..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf[0] = 0;
                    if sink.send(Message::binary(buf[..n + 1].to_vec())).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = sink.send(Message::Close(None)).await;
    });
    while let Some(Ok(msg)) = source.next().await {
        match msg {
            Message::Binary(b) if b.len() > 1 && b[0] == 0 => {
                if wr.write_all(&b[1..]).await.is_err() {
                    break;
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    let _ = wr.shutdown().await;
    drop(wr);
    let _ = down.await;
}
