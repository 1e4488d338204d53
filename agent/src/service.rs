//! The gRPC service: maps each call of `schemas/agent.proto` onto the target.
//!
//! Kept apart from the modules that do the work (files, relay, dns) so that each call's protocol
//! rules are visible in one place: version check in `Hello`, errnos in replies for file errors,
//! gRPC errors only for protocol problems, and blocking file I/O moved off the async workers.

use crate::files::{Opened, Root};
use crate::netns::NetnsThread;
use crate::{dns, incoming_grpc, relay};
use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;
use tether_protocol::agent::{
    CAP_CONNECT_RELAY, CAP_FD_PASSING, CAP_INCOMING, CAP_WRITE, ConnectClient, ConnectServer, FileChunk, GetEnvReply,
    GetEnvRequest, HelloReply, HelloRequest, ListeningPortsReply, ListeningPortsRequest, PROTOCOL_MAJOR,
    PROTOCOL_MINOR, PathRequest, ReadDirReply, ReadFileRequest, ReadLinkReply, ResolveReply, ResolveRequest, StatReply,
    WriteFileReply, WriteFileRequest, agent_server::Agent,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Default and maximum `ReadFile` chunk sizes. The maximum stays well below tonic's default
/// 4 MiB limit for a decoded message.
pub const DEFAULT_CHUNK: usize = 1 << 20;
pub const MAX_CHUNK: usize = 2 << 20;

/// What the agent serves.
pub struct Target {
    pub pid: i32,
    pub root: Arc<Root>,
    pub netns: NetnsThread,
    pub netns_inode: u64,
    /// Path of the fd socket, empty without one.
    pub fd_socket: String,
    /// Incoming traffic, and the connections announced over gRPC but not opened yet.
    pub incoming: Arc<crate::incoming::Incoming>,
    pub parked: incoming_grpc::Parked,
}

#[derive(Clone)]
pub struct AgentService {
    target: Arc<Target>,
}

impl AgentService {
    pub fn new(target: Target) -> Self {
        AgentService { target: Arc::new(target) }
    }

    /// Runs blocking file work on tokio's blocking pool.
    async fn blocking<R: Send + 'static>(&self, f: impl FnOnce(&Root) -> R + Send + 'static) -> Result<R, Status> {
        let root = self.target.root.clone();
        tokio::task::spawn_blocking(move || f(&root))
            .await
            .map_err(|e| Status::internal(format!("file worker failed: {e}")))
    }
}

/// Parses `/proc/PID/environ`: NUL-separated `NAME=value` entries.
pub fn parse_environ(raw: &[u8]) -> HashMap<String, String> {
    raw.split(|&b| b == 0)
        .filter_map(|entry| {
            let eq = entry.iter().position(|&b| b == b'=')?;
            (eq > 0).then(|| {
                (
                    String::from_utf8_lossy(&entry[..eq]).into_owned(),
                    String::from_utf8_lossy(&entry[eq + 1..]).into_owned(),
                )
            })
        })
        .collect()
}

/// Fills `buf` as far as the file allows; fewer bytes only at the end of the file.
fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[tonic::async_trait]
impl Agent for AgentService {
    async fn hello(&self, request: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        let req = request.into_inner();
        if req.protocol_major != PROTOCOL_MAJOR {
            return Err(Status::failed_precondition(format!(
                "protocol version mismatch: the client (tether {}) speaks agent protocol {}.{}, \
                 this agent (tether-agent {}) speaks {}.{}; use a matching tether-agent",
                if req.client_version.is_empty() { "?" } else { &req.client_version },
                req.protocol_major,
                req.protocol_minor,
                env!("CARGO_PKG_VERSION"),
                PROTOCOL_MAJOR,
                PROTOCOL_MINOR,
            )));
        }
        let t = &self.target;
        let mut capabilities = Vec::new();
        if !t.fd_socket.is_empty() {
            capabilities.push(CAP_FD_PASSING.to_string());
        }
        capabilities.push(CAP_CONNECT_RELAY.to_string());
        capabilities.push(CAP_WRITE.to_string());
        capabilities.push(CAP_INCOMING.to_string());
        tracing::info!(client = req.client_version, "hello");
        Ok(Response::new(HelloReply {
            protocol_major: PROTOCOL_MAJOR,
            protocol_minor: PROTOCOL_MINOR,
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            capabilities,
            target_pid: t.pid,
            fd_socket: t.fd_socket.clone(),
            netns_inode: t.netns_inode,
        }))
    }

    async fn get_env(&self, _: Request<GetEnvRequest>) -> Result<Response<GetEnvReply>, Status> {
        let path = format!("/proc/{}/environ", self.target.pid);
        let raw = tokio::fs::read(&path)
            .await
            .map_err(|e| Status::unavailable(format!("cannot read {path}: {e} (has the target exited?)")))?;
        Ok(Response::new(GetEnvReply { vars: parse_environ(&raw) }))
    }

    async fn stat(&self, request: Request<PathRequest>) -> Result<Response<StatReply>, Status> {
        let PathRequest { path, follow } = request.into_inner();
        Ok(Response::new(self.blocking(move |root| root.stat(&path, follow)).await?))
    }

    type ReadFileStream = ReceiverStream<Result<FileChunk, Status>>;

    async fn read_file(&self, request: Request<ReadFileRequest>) -> Result<Response<Self::ReadFileStream>, Status> {
        let ReadFileRequest { path, chunk_size } = request.into_inner();
        let chunk = match chunk_size as usize {
            0 => DEFAULT_CHUNK,
            n => n.min(MAX_CHUNK),
        };
        // Two chunks in flight at most: HTTP/2 flow control then paces the reader.
        let (tx, rx) = mpsc::channel(2);
        let root = self.target.root.clone();
        tokio::task::spawn_blocking(move || {
            let (mut file, stat) = match root.open_read(&path) {
                Opened::File(file, stat) => (file, stat),
                Opened::NotRegular(stat) => {
                    let _ = tx.blocking_send(Ok(FileChunk { errno: 0, stat: Some(stat), data: vec![] }));
                    return;
                }
                Opened::Failed(errno, stat) => {
                    let _ = tx.blocking_send(Ok(FileChunk { errno, stat, data: vec![] }));
                    return;
                }
            };
            // Read the next chunk before sending the current one, so a file that fits in one
            // chunk is exactly one message.
            let mut first = Some(stat);
            let mut buf = vec![0u8; chunk];
            let mut len = match read_full(&mut file, &mut buf) {
                Ok(n) => n,
                Err(e) => {
                    let errno = e.raw_os_error().unwrap_or(libc::EIO);
                    let _ = tx.blocking_send(Ok(FileChunk { errno, stat: first, data: vec![] }));
                    return;
                }
            };
            loop {
                let mut next = vec![0u8; if len == chunk { chunk } else { 0 }];
                let next_len = if len == chunk { read_full(&mut file, &mut next) } else { Ok(0) };
                buf.truncate(len);
                let msg = FileChunk { errno: 0, stat: first.take(), data: std::mem::take(&mut buf) };
                if tx.blocking_send(Ok(msg)).is_err() {
                    return; // the client went away
                }
                match next_len {
                    Ok(0) => return,
                    Ok(n) => {
                        buf = next;
                        len = n;
                    }
                    Err(e) => {
                        // Mid-stream failure: errno belongs to the first message, so end the
                        // stream with an error status instead of a silently short file.
                        let _ = tx.blocking_send(Err(Status::data_loss(format!("reading {path}: {e}"))));
                        return;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn read_dir(&self, request: Request<PathRequest>) -> Result<Response<ReadDirReply>, Status> {
        let path = request.into_inner().path;
        Ok(Response::new(self.blocking(move |root| root.read_dir(&path)).await?))
    }

    async fn read_link(&self, request: Request<PathRequest>) -> Result<Response<ReadLinkReply>, Status> {
        let path = request.into_inner().path;
        Ok(Response::new(self.blocking(move |root| root.read_link(&path)).await?))
    }

    async fn write_file(&self, request: Request<WriteFileRequest>) -> Result<Response<WriteFileReply>, Status> {
        let req = request.into_inner();
        Ok(Response::new(self.blocking(move |root| root.write_file(&req)).await?))
    }

    type OpenConnectionStream = ReceiverStream<Result<ConnectServer, Status>>;

    async fn open_connection(
        &self,
        request: Request<Streaming<ConnectClient>>,
    ) -> Result<Response<Self::OpenConnectionStream>, Status> {
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(relay::run(self.target.netns.clone(), request.into_inner(), tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn resolve(&self, request: Request<ResolveRequest>) -> Result<Response<ResolveReply>, Status> {
        let name = request.into_inner().name;
        Ok(Response::new(dns::resolve(self.target.root.clone(), &self.target.netns, &name).await))
    }

    type SubscribeStream = incoming_grpc::Events;

    async fn subscribe(
        &self,
        request: Request<tether_protocol::agent::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let t = &self.target;
        Ok(Response::new(incoming_grpc::subscribe(t.incoming.clone(), t.parked.clone(), request.into_inner())?))
    }

    type AcceptIncomingStream = incoming_grpc::Bytes;

    async fn accept_incoming(
        &self,
        request: Request<Streaming<tether_protocol::agent::IncomingClient>>,
    ) -> Result<Response<Self::AcceptIncomingStream>, Status> {
        Ok(Response::new(incoming_grpc::accept(self.target.parked.clone(), request.into_inner()).await?))
    }

    async fn listening_ports(
        &self,
        _: Request<ListeningPortsRequest>,
    ) -> Result<Response<ListeningPortsReply>, Status> {
        let reply = match crate::ports::listening(self.target.pid) {
            Ok(ports) => ListeningPortsReply { ports: ports.into_iter().map(u32::from).collect(), errno: 0 },
            Err(e) => ListeningPortsReply { ports: Vec::new(), errno: e.raw_os_error().unwrap_or(libc::EIO) },
        };
        Ok(Response::new(reply))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environ_entries() {
        let env = parse_environ(b"A=1\0POD_ONLY=yes\0EMPTY=\0EQ=a=b\0noequals\0=bad\0");
        assert_eq!(env.get("A").map(String::as_str), Some("1"));
        assert_eq!(env.get("POD_ONLY").map(String::as_str), Some("yes"));
        assert_eq!(env.get("EMPTY").map(String::as_str), Some(""));
        assert_eq!(env.get("EQ").map(String::as_str), Some("a=b"));
        assert_eq!(env.len(), 4);
    }
}
