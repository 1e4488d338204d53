//! The daemon's handle on a running agent: the authenticated gRPC client and, when the agent
//! runs on this host, a small pool of connections to its fd socket. The pool grows with
//! concurrent requests and shrinks again: at most [`POOL_MAX`] connections wait in it, and one
//! unused for [`POOL_IDLE`] is closed (by [`Agent::trim_pool`], which the daemon's sweep calls).
//!
//! How the agent was started and where it runs is the business of [`crate::target`]; from here
//! on every agent looks the same.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tether_protocol::agent::{self as proto, agent_client::AgentClient};
use tether_protocol::fdpass::{self, FdReply, FdRequest};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

mod relayed_incoming;

/// Adds the session token to every call.
#[derive(Clone)]
pub struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert(proto::AUTH_HEADER, self.0.clone());
        Ok(req)
    }
}

pub type Client = AgentClient<InterceptedService<Channel, Bearer>>;

/// Idle fd-socket connections kept at most; more are closed when they come back.
pub const POOL_MAX: usize = 8;
/// An idle fd-socket connection is closed after this long unused.
pub const POOL_IDLE: Duration = Duration::from_secs(5);

/// A file fetched from the target in one round trip.
pub struct RemoteFile {
    pub data: Vec<u8>,
}

pub struct Agent {
    client: Client,
    token: String,
    pub hello: proto::HelloReply,
    /// Idle connections to the fd socket, authenticated already, with when each was last used
    /// (the most recently used last).
    fd_pool: Mutex<Vec<(UnixStream, Instant)>>,
}

impl Agent {
    /// Connects to the agent at `addr` ("host:port"), proves `token` and checks the versions.
    pub async fn connect(addr: &str, token: &str, timeout: Duration) -> anyhow::Result<Agent> {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_while_idle(true);
        let channel = tokio::time::timeout(timeout, endpoint.connect())
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {timeout:?}"))?
            .with_context(|| format!("connecting to the agent at {addr}"))?;
        let bearer = Bearer(format!("Bearer {token}").parse().context("the token is not valid ASCII")?);
        let mut client = AgentClient::with_interceptor(channel, bearer).max_decoding_message_size(64 * 1024 * 1024);
        let hello = client
            .hello(proto::HelloRequest {
                protocol_major: proto::PROTOCOL_MAJOR,
                protocol_minor: proto::PROTOCOL_MINOR,
                client_version: env!("CARGO_PKG_VERSION").into(),
                capabilities: vec![proto::CAP_FD_PASSING.into(), proto::CAP_CONNECT_RELAY.into()],
            })
            .await
            .map_err(|s| anyhow::anyhow!("the agent at {addr} refused the handshake: {}", s.message()))?
            .into_inner();
        if hello.protocol_major != proto::PROTOCOL_MAJOR {
            bail!(
                "the agent speaks protocol {}.{} and this daemon {}.{}: use an agent of version {}",
                hello.protocol_major,
                hello.protocol_minor,
                proto::PROTOCOL_MAJOR,
                proto::PROTOCOL_MINOR,
                env!("CARGO_PKG_VERSION")
            );
        }
        Ok(Agent { client, token: token.to_string(), hello, fd_pool: Mutex::new(Vec::new()) })
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Closes the pooled fd-socket connections unused for [`POOL_IDLE`].
    pub fn trim_pool(&self) {
        let mut pool = self.fd_pool.lock().unwrap();
        let before = pool.len();
        pool.retain(|(_, used)| used.elapsed() < POOL_IDLE);
        if pool.len() < before {
            tracing::debug!(closed = before - pool.len(), kept = pool.len(), "idle fd-socket connections closed");
        }
    }

    pub fn can_pass_fds(&self) -> bool {
        !self.hello.fd_socket.is_empty()
    }

    pub async fn env(&self) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
        let reply = self.client().get_env(proto::GetEnvRequest {}).await.map_err(status)?;
        Ok(reply.into_inner().vars.into_iter().collect())
    }

    /// Reads a whole remote file; `Err(errno)` for a failure the program should see.
    pub async fn read_file(&self, path: &str) -> Result<RemoteFile, i32> {
        let mut stream = self
            .client()
            .read_file(proto::ReadFileRequest { path: path.into(), chunk_size: 0 })
            .await
            .map_err(|_| libc::EIO)?
            .into_inner();
        let first = stream.message().await.map_err(|_| libc::EIO)?.ok_or(libc::EIO)?;
        if first.errno != 0 {
            return Err(first.errno);
        }
        let mut data = first.data;
        while let Some(chunk) = stream.message().await.map_err(|_| libc::EIO)? {
            data.extend_from_slice(&chunk.data);
        }
        Ok(RemoteFile { data })
    }

    pub async fn stat(&self, path: &str, follow: bool) -> Result<proto::FileStat, i32> {
        let reply = self
            .client()
            .stat(proto::PathRequest { path: path.into(), follow })
            .await
            .map_err(|_| libc::EIO)?
            .into_inner();
        if reply.errno != 0 {
            return Err(reply.errno);
        }
        reply.stat.ok_or(libc::EIO)
    }

    pub async fn read_dir(&self, path: &str) -> Result<Vec<proto::DirEntry>, i32> {
        let reply = self
            .client()
            .read_dir(proto::PathRequest { path: path.into(), follow: true })
            .await
            .map_err(|_| libc::EIO)?
            .into_inner();
        if reply.errno != 0 { Err(reply.errno) } else { Ok(reply.entries) }
    }

    pub async fn read_link(&self, path: &str) -> Result<String, i32> {
        let reply = self
            .client()
            .read_link(proto::PathRequest { path: path.into(), follow: false })
            .await
            .map_err(|_| libc::EIO)?
            .into_inner();
        if reply.errno != 0 { Err(reply.errno) } else { Ok(reply.target) }
    }

    /// Writes `data` at `offset` of a remote file; the answer comes once the target has it.
    pub async fn write_file(
        &self,
        path: &str,
        offset: u64,
        data: Vec<u8>,
        truncate: bool,
        create: bool,
        mode: u32,
    ) -> Result<u64, i32> {
        let reply = self
            .client()
            .write_file(proto::WriteFileRequest { path: path.into(), offset, data, truncate, create, mode })
            .await
            .map_err(|_| libc::EIO)?
            .into_inner();
        if reply.errno != 0 { Err(reply.errno) } else { Ok(reply.written) }
    }

    pub async fn resolve(&self, name: &str) -> anyhow::Result<Vec<std::net::IpAddr>> {
        let reply = self.client().resolve(proto::ResolveRequest { name: name.into() }).await.map_err(status)?;
        let reply = reply.into_inner();
        if reply.errno != 0 {
            bail!("{name} does not resolve in the target ({})", io::Error::from_raw_os_error(reply.errno));
        }
        Ok(reply.addresses.iter().filter_map(|a| a.parse().ok()).collect())
    }

    /// The TCP ports the target listens on; `None` from an agent older than protocol 1.1.
    pub async fn listening_ports(&self) -> anyhow::Result<Option<Vec<u16>>> {
        let reply = match self.client().listening_ports(proto::ListeningPortsRequest {}).await {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == tonic::Code::Unimplemented => return Ok(None),
            Err(s) => return Err(status(s)),
        };
        if reply.errno != 0 {
            bail!("the agent cannot read the target's ports ({})", io::Error::from_raw_os_error(reply.errno));
        }
        Ok(Some(reply.ports.into_iter().filter_map(|p| u16::try_from(p).ok()).collect()))
    }

    /// A new, unconnected socket that lives in the target's network namespace (blocking: call it
    /// from a blocking context).
    pub fn socket(&self, udp: bool, v6: bool) -> io::Result<OwnedFd> {
        let pooled = self.fd_pool.lock().unwrap().pop();
        let conn = match pooled {
            Some((conn, _)) => conn,
            None => self.fd_connection()?,
        };
        let req = serde_json::to_string(&FdRequest::Socket { udp, v6 }).expect("serializable");
        fdpass::send_line(&conn, &req, None)?;
        let (line, fd) = fdpass::recv_line(&conn)?;
        let reply: FdReply = serde_json::from_str(&line)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("agent fd socket: {e}")))?;
        let mut pool = self.fd_pool.lock().unwrap();
        if pool.len() < POOL_MAX {
            pool.push((conn, Instant::now()));
        }
        drop(pool);
        match (reply.errno, fd) {
            (0, Some(fd)) => Ok(fd),
            (0, None) => Err(io::Error::new(io::ErrorKind::InvalidData, "agent sent no socket")),
            (errno, _) => Err(io::Error::from_raw_os_error(errno)),
        }
    }

    /// Subscribes to the incoming traffic of the target's TCP `port` (blocking). The returned
    /// connection carries the subscription's `IncomingEvent` lines, descriptors attached;
    /// dropping it unsubscribes. An agent elsewhere is subscribed over gRPC and looks the same
    /// ([`relayed_incoming`]).
    pub fn subscribe(
        &self,
        port: u16,
        mode: fdpass::IncomingMode,
        http_filter: Option<fdpass::HttpFilter>,
    ) -> io::Result<UnixStream> {
        if !self.can_pass_fds() {
            if !self.hello.capabilities.iter().any(|c| c == proto::CAP_INCOMING) {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!(
                        "the agent (version {}) cannot relay incoming traffic: use an agent of version {}",
                        self.hello.agent_version,
                        env!("CARGO_PKG_VERSION")
                    ),
                ));
            }
            return relayed_incoming::subscribe(&self.client, port, mode, http_filter);
        }
        let conn = self.fd_connection()?;
        let req = serde_json::to_string(&FdRequest::Subscribe { port, mode, http_filter }).expect("serializable");
        fdpass::send_line(&conn, &req, None)?;
        let (line, _) = fdpass::recv_line(&conn)?;
        let reply: FdReply = serde_json::from_str(&line)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("agent fd socket: {e}")))?;
        if reply.errno != 0 {
            let e = io::Error::from_raw_os_error(reply.errno);
            return Err(io::Error::new(e.kind(), if reply.message.is_empty() { e.to_string() } else { reply.message }));
        }
        conn.set_read_timeout(None)?;
        Ok(conn)
    }

    fn fd_connection(&self) -> io::Result<UnixStream> {
        let conn = UnixStream::connect(&self.hello.fd_socket)?;
        conn.set_read_timeout(Some(Duration::from_secs(10)))?;
        let auth = serde_json::to_string(&FdRequest::Auth { token: self.token.clone() }).expect("serializable");
        fdpass::send_line(&conn, &auth, None)?;
        let (line, _) = fdpass::recv_line(&conn)?;
        let reply: FdReply = serde_json::from_str(&line)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("agent fd socket: {e}")))?;
        if reply.errno != 0 {
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, "the agent refused the session token"));
        }
        Ok(conn)
    }
}

fn status(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("agent: {} ({:?})", s.message(), s.code())
}
