//! Filtered steal of HTTP/2 with prior knowledge (h2c, as gRPC speaks it inside clusters).
//!
//! HTTP/2 interleaves many requests (streams) on one connection, so the byte relay of
//! [`crate::incoming_http`] cannot split it between two sides. Here the agent ends the client's
//! connection instead: it serves HTTP/2 to the client and is an HTTP/2 client of both sides, the
//! target's real port (the bypass connection made for every filtered connection) and the
//! subscriber (one Unix stream pair, opened at the first matching request and handed over as kind
//! `stream`, so the program accepts an h2c prior-knowledge connection). Each request is matched
//! against the filter and sent on to one side as it came: pseudo-headers, headers, the body as it
//! streams in, trailers. The response (trailers included: gRPC puts its status there) comes back
//! on the client's stream. Streams run concurrently, so a slow one holds up no other.
//!
//! The filter sees each header line `name: value` (names are lower case in HTTP/2) plus
//! `host: <:authority>` when the request has no `host` header, so that a filter written for
//! HTTP/1.1's `Host` takes the same requests; `path` is matched against `:path` (with the query).
//!
//! A side that cannot be reached or gives no response answers that one stream with `502 Bad
//! Gateway`; a response that breaks off resets that stream. The client's connection and its
//! other streams go on, and a side whose connection has ended is connected again at its next
//! request. When the subscriber cannot take a new connection (gone, or too far behind), the
//! request goes to the target, as in the HTTP/1.x relay. `CONNECT` (tunnels, WebSockets over
//! HTTP/2) is answered `501`: relaying it would mean joining two upgraded streams.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body_util::{Either, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http2::SendRequest;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::incoming::{Incoming as IncomingState, Sub, SubStats, connect_bypass};
use crate::incoming_http::{Filter, program_stream};

/// What an HTTP/2 client sends first when it knows the server speaks HTTP/2 (RFC 9113, 3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether what `target` sent first (still unread) is an HTTP/2 server's SETTINGS frame: HTTP/2
/// servers send it as soon as a connection opens, without waiting for the client's preface.
pub async fn greets(target: &TcpStream) -> bool {
    let mut head = [0u8; 9];
    match target.peek(&mut head).await {
        Ok(9) => is_settings(&head),
        _ => false,
    }
}

/// A frame header (RFC 9113, 4.1) of a SETTINGS frame on the connection, not an acknowledgement.
fn is_settings(head: &[u8; 9]) -> bool {
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]);
    let (kind, flags) = (head[3], head[4]);
    kind == 0x4 && flags == 0 && head[5..] == [0, 0, 0, 0] && len.is_multiple_of(6)
}

/// A response to the client: a side's own, or one made here.
type Body = Either<Incoming, Empty<Bytes>>;

type Sender = SendRequest<Incoming>;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Dest {
    Target,
    Program,
}

/// One client connection: the filter and the two sides' HTTP/2 connections (made as needed).
struct Conn {
    inc: Arc<IncomingState>,
    sub: Arc<Sub>,
    filter: Arc<Filter>,
    peer: SocketAddr,
    orig: SocketAddr,
    /// The bypass connection made before the protocol was known; used by the first request.
    first_target: std::sync::Mutex<Option<TcpStream>>,
    target: Mutex<Option<Sender>>,
    program: Mutex<Option<Sender>>,
}

/// Serves one redirected connection that began with [`PREFACE`] (`seen`: the bytes already read
/// from `client`); `target` is a bypass connection to the target's real port.
pub async fn serve(
    inc: Arc<IncomingState>,
    sub: Arc<Sub>,
    client: TcpStream,
    seen: Vec<u8>,
    target: TcpStream,
    peer: SocketAddr,
    orig: SocketAddr,
) {
    let filter = sub.filter.clone().expect("a filtered subscription");
    let conn = Arc::new(Conn {
        inc,
        sub,
        filter,
        peer,
        orig,
        first_target: std::sync::Mutex::new(Some(target)),
        target: Mutex::new(None),
        program: Mutex::new(None),
    });
    let service = hyper::service::service_fn(move |req| {
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(conn.forward(req).await) }
    });
    let io = TokioIo::new(Prefixed { seen, inner: client });
    let served = hyper::server::conn::http2::Builder::new(TokioExecutor::new()).serve_connection(io, service).await;
    if let Err(e) = served {
        tracing::debug!(%peer, err = %e, "a filtered HTTP/2 connection ended with an error");
    }
}

impl Conn {
    /// Sends one request to the side the filter chooses and gives back that side's response.
    async fn forward(&self, req: Request<Incoming>) -> Response<Body> {
        if req.method() == hyper::Method::CONNECT {
            // A tunnel would need both sides' upgrades joined: refused rather than half done.
            return answer(StatusCode::NOT_IMPLEMENTED, "CONNECT is not relayed by tether");
        }
        let to_program = self.sub.active() && matches(&self.filter, &req);
        let (dest, sender) = self.choose(to_program).await;
        let counter = match dest {
            Dest::Program => &self.sub.stats.requests_matched,
            Dest::Target => &self.sub.stats.requests_passed,
        };
        SubStats::add(counter, 1);
        let answer = match sender {
            Ok(mut s) => match s.ready().await {
                Ok(()) => s.send_request(req).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(e),
        };
        match answer {
            Ok(resp) => resp.map(Either::Left),
            Err(e) => {
                tracing::debug!(?dest, peer = %self.peer, err = %e, "no HTTP/2 response");
                bad_gateway(dest)
            }
        }
    }

    /// Where a request goes and the connection to that side. As in the HTTP/1.x relay, a matching
    /// request goes to the target when the subscriber takes no connection now.
    async fn choose(&self, to_program: bool) -> (Dest, Result<Sender, String>) {
        if to_program {
            match self.sender(Dest::Program).await {
                Ok(Some(s)) => return (Dest::Program, Ok(s)),
                Err(e) => return (Dest::Program, Err(e)),
                Ok(None) => tracing::debug!("the subscriber takes no connection; to the target"),
            }
        }
        let target = self.sender(Dest::Target).await;
        (Dest::Target, target.map(|s| s.expect("the target always has one")))
    }

    /// The side's HTTP/2 connection: the open one, or a new one when there is none (or it
    /// ended); `None` when the subscriber takes no connection now.
    async fn sender(&self, dest: Dest) -> Result<Option<Sender>, String> {
        let slot = match dest {
            Dest::Target => &self.target,
            Dest::Program => &self.program,
        };
        // Held while connecting, so that concurrent first requests share one connection.
        let mut slot = slot.lock().await;
        if let Some(s) = slot.as_ref()
            && !s.is_closed()
        {
            return Ok(Some(s.clone()));
        }
        let s = match dest {
            Dest::Target => Some(self.connect_target().await?),
            Dest::Program => self.connect_program().await?,
        };
        slot.clone_from(&s);
        Ok(s)
    }

    async fn connect_target(&self) -> Result<Sender, String> {
        let first = self.first_target.lock().unwrap().take();
        let stream = match first {
            Some(s) => s,
            None => connect_bypass(&self.inc.netns, self.orig)
                .await
                .map_err(|e| format!("cannot reach the target at {}: {e}", self.orig))?,
        };
        handshake(stream, "target").await
    }

    /// A new stream pair handed to the subscriber, with an HTTP/2 connection on our end.
    async fn connect_program(&self) -> Result<Option<Sender>, String> {
        let Some(stream) = program_stream(&self.sub, self.peer, self.orig) else {
            return Ok(None);
        };
        let stream = Counted { sub: self.sub.clone(), inner: stream };
        handshake(stream, "program").await.map(Some)
    }
}

/// Starts an HTTP/2 client connection on `io` (this only writes the preface and settings) and
/// drives it on its own task until every sender is gone.
async fn handshake<T>(io: T, side: &'static str) -> Result<Sender, String>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP/2 handshake with the {side}: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(side, err = %e, "an HTTP/2 connection of the relay ended");
        }
    });
    Ok(sender)
}

/// Whether the filter takes this request (see the module doc for what it sees).
fn matches<B>(filter: &Filter, req: &Request<B>) -> bool {
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut headers: Vec<httparse::Header> = req
        .headers()
        .iter()
        .map(|(name, value)| httparse::Header { name: name.as_str(), value: value.as_bytes() })
        .collect();
    if let Some(authority) = req.uri().authority()
        && !req.headers().contains_key(hyper::header::HOST)
    {
        headers.push(httparse::Header { name: "host", value: authority.as_str().as_bytes() });
    }
    filter.matches(path, &headers)
}

fn bad_gateway(dest: Dest) -> Response<Body> {
    let why = match dest {
        Dest::Program => "the local program did not answer",
        Dest::Target => "the target did not answer",
    };
    answer(StatusCode::BAD_GATEWAY, why)
}

/// A response of our own, saying why in `x-tether`.
fn answer(status: StatusCode, why: &'static str) -> Response<Body> {
    let mut resp = Response::new(Either::Right(Empty::new()));
    *resp.status_mut() = status;
    resp.headers_mut().insert("x-tether", hyper::header::HeaderValue::from_static(why));
    resp
}

/// The client's connection, with the bytes already read from it put back in front.
struct Prefixed {
    seen: Vec<u8>,
    inner: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.seen.is_empty() {
            let n = self.seen.len().min(buf.remaining());
            buf.put_slice(&self.seen[..n]);
            self.seen.drain(..n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The program's side of the pair, counting the bytes each way into the subscription's stats.
struct Counted {
    sub: Arc<Sub>,
    inner: tokio::net::UnixStream,
}

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        SubStats::add(&self.sub.stats.bytes_out, (buf.filled().len() - before) as u64);
        r
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            SubStats::add(&self.sub.stats.bytes_in, *n as u64);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_protocol::fdpass::HttpFilter;

    fn filter(header: Option<&str>, path: Option<&str>) -> Filter {
        Filter::new(&HttpFilter { header: header.map(Into::into), path: path.map(Into::into) }).unwrap()
    }

    fn req(uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().uri(uri);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn an_http2_servers_settings_are_recognised() {
        assert!(is_settings(&[0, 0, 12, 4, 0, 0, 0, 0, 0]));
        assert!(is_settings(&[0, 0, 0, 4, 0, 0, 0, 0, 0]));
        assert!(!is_settings(&[0, 0, 0, 4, 1, 0, 0, 0, 0]), "an acknowledgement");
        assert!(!is_settings(&[0, 0, 7, 4, 0, 0, 0, 0, 0]), "not whole settings");
        assert!(!is_settings(b"SSH-2.0-x"));
        assert!(!is_settings(b"220 smtp "));
    }

    #[test]
    fn the_filter_sees_header_lines_the_authority_as_host_and_the_path() {
        let user = filter(Some("^x-user: me$"), None);
        assert!(matches(&user, &req("http://a/", &[("X-User", "me")])));
        assert!(!matches(&user, &req("http://a/", &[("x-user", "you")])));
        let host = filter(Some("^host: api:8080$"), None);
        assert!(matches(&host, &req("http://api:8080/", &[])), ":authority is seen as host");
        assert!(!matches(&host, &req("http://api:8080/", &[("host", "other")])), "a host header of its own wins");
        let path = filter(None, Some("^/pkg.Svc/Call[?]x=1$"));
        assert!(matches(&path, &req("http://a/pkg.Svc/Call?x=1", &[])));
        assert!(!matches(&path, &req("http://a/pkg.Svc/Other", &[])));
    }
}
