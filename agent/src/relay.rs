//! `OpenConnection`: an outgoing TCP or UDP connection made from the target's network namespace
//! and relayed over one gRPC stream.
//!
//! This is the path for remote agents (and local ones without fd passing): the daemon cannot get
//! the socket itself, so bytes travel over the HTTP/2 stream, whose per-stream flow control keeps
//! a bulk transfer from blocking other calls. The socket is made by the namespace thread, the
//! connect waited for here (default timeout 10 s), then two pumps run until both directions end:
//! TCP half-closes when the client's stream ends; UDP carries one datagram per data message.
//!
//! A socket error after the connect (e.g. a reset) ends the response stream with an `ABORTED`
//! status whose message names the errno and whose `tether-errno` metadata carries it.

use crate::netns::{NetnsThread, SocketSpec};
use std::net::SocketAddr;
use std::time::Duration;
use tether_protocol::agent::{
    ConnectClient, ConnectOpen, ConnectResult, ConnectServer, Transport, connect_client, connect_server,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_BUF: usize = 64 * 1024;

type Tx = mpsc::Sender<Result<ConnectServer, Status>>;

fn result_msg(errno: i32, local: Option<SocketAddr>, peer: Option<SocketAddr>) -> Result<ConnectServer, Status> {
    Ok(ConnectServer {
        msg: Some(connect_server::Msg::Result(ConnectResult {
            errno,
            local_address: local.map(|a| a.to_string()).unwrap_or_default(),
            peer_address: peer.map(|a| a.to_string()).unwrap_or_default(),
        })),
    })
}

fn data_msg(data: Vec<u8>) -> Result<ConnectServer, Status> {
    Ok(ConnectServer { msg: Some(connect_server::Msg::Data(data)) })
}

fn io_errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

fn socket_error(what: &str, e: &std::io::Error) -> Status {
    let errno = io_errno(e);
    let mut status = Status::aborted(format!("{what}: {e} (errno {errno})"));
    if let Ok(v) = errno.to_string().parse() {
        status.metadata_mut().insert("tether-errno", v);
    }
    status
}

/// Validates the first client message: the destination.
pub fn parse_open(first: Option<ConnectClient>) -> Result<(Transport, SocketAddr, Duration), Status> {
    let Some(ConnectClient { msg: Some(connect_client::Msg::Open(ConnectOpen { transport, address, timeout_ms })) }) =
        first
    else {
        return Err(Status::invalid_argument("the first OpenConnection message must be `open`"));
    };
    let transport = match Transport::try_from(transport) {
        Ok(t @ (Transport::Tcp | Transport::Udp)) => t,
        _ => return Err(Status::invalid_argument(format!("unknown transport {transport}"))),
    };
    let addr: SocketAddr = address
        .parse()
        .map_err(|_| Status::invalid_argument(format!("address {address:?} is not ip:port or [ip6]:port")))?;
    let timeout = if timeout_ms == 0 { DEFAULT_TIMEOUT } else { Duration::from_millis(timeout_ms.into()) };
    Ok((transport, addr, timeout))
}

/// Runs one relayed connection; the response stream is fed through `tx`.
pub async fn run(netns: NetnsThread, mut inbound: Streaming<ConnectClient>, tx: Tx) {
    let first = match inbound.message().await {
        Ok(m) => m,
        Err(status) => {
            tracing::debug!(%status, "OpenConnection ended before its first message");
            return;
        }
    };
    let (transport, addr, timeout) = match parse_open(first) {
        Ok(x) => x,
        Err(status) => {
            let _ = tx.send(Err(status)).await;
            return;
        }
    };
    let udp = transport == Transport::Udp;
    let made = match netns.socket(SocketSpec::connect(udp, addr)).await {
        Ok(m) => m,
        Err(e) => {
            let _ = tx.send(result_msg(io_errno(&e), None, None)).await;
            return;
        }
    };
    if udp {
        if made.connect_errno != 0 {
            let _ = tx.send(result_msg(made.connect_errno, None, None)).await;
            return;
        }
        match UdpSocket::from_std(std::net::UdpSocket::from(made.fd)) {
            Ok(sock) => relay_udp(sock, inbound, tx).await,
            Err(e) => drop(tx.send(result_msg(io_errno(&e), None, None)).await),
        }
        return;
    }
    let stream = match connect_tcp(made.fd, made.connect_errno, timeout).await {
        Ok(s) => s,
        Err(errno) => {
            tracing::debug!(%addr, errno, "relayed connect failed");
            let _ = tx.send(result_msg(errno, None, None)).await;
            return;
        }
    };
    relay_tcp(stream, inbound, tx).await;
}

/// Waits for a non-blocking connect to finish; `Err(errno)` on failure or timeout.
async fn connect_tcp(fd: std::os::fd::OwnedFd, started: i32, timeout: Duration) -> Result<TcpStream, i32> {
    if started != 0 && started != libc::EINPROGRESS {
        return Err(started);
    }
    let stream = TcpStream::from_std(std::net::TcpStream::from(fd)).map_err(|e| io_errno(&e))?;
    if started == libc::EINPROGRESS {
        match tokio::time::timeout(timeout, stream.writable()).await {
            Err(_) => return Err(libc::ETIMEDOUT),
            Ok(Err(e)) => return Err(io_errno(&e)),
            Ok(Ok(())) => {}
        }
    }
    if let Some(e) = stream.take_error().map_err(|e| io_errno(&e))? {
        return Err(io_errno(&e));
    }
    // A failed connect can also show up as "not connected" here.
    stream.peer_addr().map_err(|e| io_errno(&e))?;
    Ok(stream)
}

async fn relay_tcp(stream: TcpStream, mut inbound: Streaming<ConnectClient>, tx: Tx) {
    let _ = stream.set_nodelay(true);
    let (local, peer) = (stream.local_addr().ok(), stream.peer_addr().ok());
    if tx.send(result_msg(0, local, peer)).await.is_err() {
        return;
    }
    let (mut rd, mut wr) = stream.into_split();
    // Remote -> client, in its own task; `true` when the remote side ended cleanly (FIN).
    let down_tx = tx.clone();
    let mut down = tokio::spawn(async move {
        let mut buf = vec![0u8; READ_BUF];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) => return true,
                Ok(n) => {
                    if down_tx.send(data_msg(buf[..n].to_vec())).await.is_err() {
                        return false;
                    }
                }
                Err(e) => {
                    let _ = down_tx.send(Err(socket_error("reading from the remote socket", &e))).await;
                    return false;
                }
            }
        }
    });
    // Client -> remote here, until both directions are done or something fails.
    let (mut up_done, mut down_done) = (false, false);
    while !(up_done && down_done) {
        tokio::select! {
            r = &mut down, if !down_done => {
                down_done = true;
                if !matches!(r, Ok(true)) {
                    break;
                }
                // [kube relay] The remote side finished (FIN): end the response stream now so
                // that the client sees EOF, and copy client -> remote in the background until
                // the client's side ends too.
                if !up_done {
                    tokio::spawn(copy_up(inbound, wr));
                    return;
                }
            }
            m = inbound.message(), if !up_done => match m {
                Ok(Some(ConnectClient { msg: Some(connect_client::Msg::Data(data)) })) => {
                    let written = tokio::select! {
                        w = wr.write_all(&data) => w,
                        _ = tx.closed() => break,
                    };
                    if let Err(e) = written {
                        let _ = tx.send(Err(socket_error("writing to the remote socket", &e))).await;
                        break;
                    }
                }
                Ok(Some(_)) => {
                    let _ = tx.send(Err(Status::invalid_argument("only data may follow `open`"))).await;
                    break;
                }
                Ok(None) => {
                    let _ = wr.shutdown().await; // half-close: FIN to the remote side
                    up_done = true;
                }
                Err(_) => break, // cancelled by the client
            },
            _ = tx.closed() => break,
        }
    }
    down.abort();
}

/// Client -> remote after the remote side finished: until the client's stream ends (then FIN).
async fn copy_up(mut inbound: Streaming<ConnectClient>, mut wr: tokio::net::tcp::OwnedWriteHalf) {
    while let Ok(Some(ConnectClient { msg: Some(connect_client::Msg::Data(data)) })) = inbound.message().await {
        if wr.write_all(&data).await.is_err() {
            return;
        }
    }
    let _ = wr.shutdown().await;
}

async fn relay_udp(sock: UdpSocket, mut inbound: Streaming<ConnectClient>, tx: Tx) {
    let (local, peer) = (sock.local_addr().ok(), sock.peer_addr().ok());
    if tx.send(result_msg(0, local, peer)).await.is_err() {
        return;
    }
    let mut buf = vec![0u8; 65536];
    loop {
        tokio::select! {
            m = inbound.message() => match m {
                Ok(Some(ConnectClient { msg: Some(connect_client::Msg::Data(data)) })) => {
                    if let Err(e) = sock.send(&data).await {
                        // e.g. ECONNREFUSED from an earlier ICMP error: the datagram is lost,
                        // as it would be for the program.
                        tracing::debug!(err = %e, "relayed UDP send failed");
                    }
                }
                Ok(Some(_)) => {
                    let _ = tx.send(Err(Status::invalid_argument("only data may follow `open`"))).await;
                    return;
                }
                // UDP has no half-close: the client's end closes the relay.
                Ok(None) | Err(_) => return,
            },
            r = sock.recv(&mut buf) => match r {
                Ok(n) => {
                    if tx.send(data_msg(buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
                Err(e) => tracing::debug!(err = %e, "relayed UDP receive failed"),
            },
            _ = tx.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(transport: Transport, address: &str) -> Option<ConnectClient> {
        Some(ConnectClient {
            msg: Some(connect_client::Msg::Open(ConnectOpen {
                transport: transport as i32,
                address: address.into(),
                timeout_ms: 0,
            })),
        })
    }

    #[test]
    fn the_first_message_names_a_destination() {
        let (t, a, timeout) = parse_open(open(Transport::Tcp, "198.18.0.10:8080")).unwrap();
        assert_eq!((t, a.to_string(), timeout), (Transport::Tcp, "198.18.0.10:8080".into(), DEFAULT_TIMEOUT));
        let (_, a, _) = parse_open(open(Transport::Udp, "[2001:db8::1]:53")).unwrap();
        assert!(a.is_ipv6());
        for bad in [
            open(Transport::Unspecified, "198.18.0.10:1"),
            open(Transport::Tcp, "example:80"),
            None,
            Some(ConnectClient { msg: Some(connect_client::Msg::Data(vec![1])) }),
        ] {
            assert_eq!(parse_open(bad).unwrap_err().code(), tonic::Code::InvalidArgument);
        }
    }
}
