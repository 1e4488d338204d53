//! Filtered steal: an HTTP/1.x relay that sends the matching requests of a connection to the
//! subscriber and every other request to the target, on the same client connection.
//!
//! The agent connects to the target's real port at once (marked, so the redirect lets it
//! through). Then, request by request: the head is read and matched against the filter; the head
//! and body (by `Content-Length` or chunked framing) go to the chosen side; that side's response
//! (1xx interim responses included; body by `Content-Length`, chunked, or until close) comes back
//! to the client before the next request is read. Body and response are moved concurrently, so
//! `Expect: 100-continue` and early answers work. Keep-alive is kept; `Connection: close`,
//! HTTP/1.0 without keep-alive and close-delimited responses end the connection. A `101
//! Switching Protocols` turns the connection into a plain tunnel with the side that answered.
//!
//! The subscriber side is one Unix stream pair per client connection, opened at the first
//! matching request and handed over as kind `stream`. If it ends before answering, the client gets
//! `502 Bad Gateway`. A connection that starts with HTTP/2's prior-knowledge preface (h2c, as
//! gRPC uses it) goes to [`crate::incoming_h2`], which filters its streams. Any other traffic that
//! is not HTTP/1.x (including protocols where the server speaks first) is passed to the target
//! untouched.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use regex::{Regex, RegexBuilder};
use tether_protocol::fdpass::{ConnectionKind, HttpFilter};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::incoming::{Incoming, Sub, SubStats, connect_bypass};

const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 128;
const READ_CHUNK: usize = 16 * 1024;

/// A compiled `http_filter`: every given pattern must match.
pub struct Filter {
    header: Option<Regex>,
    path: Option<Regex>,
}

impl Filter {
    pub fn new(f: &HttpFilter) -> Result<Filter, String> {
        let compile = |what: &str, p: &Option<String>| -> Result<Option<Regex>, String> {
            p.as_deref()
                .map(|p| {
                    RegexBuilder::new(p).size_limit(1 << 20).build().map_err(|e| format!("http_filter.{what}: {e}"))
                })
                .transpose()
        };
        Ok(Filter { header: compile("header", &f.header)?, path: compile("path", &f.path)? })
    }

    /// Whether a request with this target and these headers goes to the subscriber.
    pub fn matches(&self, target: &str, headers: &[httparse::Header]) -> bool {
        if let Some(p) = &self.path
            && !p.is_match(target)
        {
            return false;
        }
        if let Some(h) = &self.header {
            // `Name: value` as sent, or with the name in lower case (names are case-insensitive).
            let hit = headers.iter().any(|hd| {
                let value = String::from_utf8_lossy(hd.value);
                let value = value.trim();
                h.is_match(&format!("{}: {value}", hd.name))
                    || h.is_match(&format!("{}: {value}", hd.name.to_ascii_lowercase()))
            });
            if !hit {
                return false;
            }
        }
        true
    }
}

type Reader = Box<dyn AsyncRead + Send + Unpin>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// One side of the relay: its halves and the bytes read but not yet used.
struct Side {
    r: Reader,
    w: Writer,
    buf: Vec<u8>,
}

impl Side {
    fn tcp(s: TcpStream) -> Side {
        let (r, w) = s.into_split();
        Side { r: Box::new(r), w: Box::new(w), buf: Vec::new() }
    }
}

/// Appends what the reader has; 0 at end of stream.
async fn fill(r: &mut Reader, buf: &mut Vec<u8>) -> io::Result<usize> {
    let start = buf.len();
    buf.resize(start + READ_CHUNK, 0);
    let n = r.read(&mut buf[start..]).await;
    buf.truncate(start + *n.as_ref().unwrap_or(&0));
    n
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

fn header<'a>(headers: &'a [httparse::Header], name: &str) -> Option<&'a str> {
    headers.iter().rev().find(|h| h.name.eq_ignore_ascii_case(name)).and_then(|h| std::str::from_utf8(h.value).ok())
}

fn has_token(headers: &[httparse::Header], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
        .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

fn chunked(headers: &[httparse::Header]) -> bool {
    header(headers, "transfer-encoding")
        .map(|v| v.rsplit(',').next().unwrap_or("").trim().eq_ignore_ascii_case("chunked"))
        .unwrap_or(false)
}

fn length(headers: &[httparse::Header]) -> Option<u64> {
    header(headers, "content-length").and_then(|v| v.trim().parse().ok())
}

pub fn request_framing(headers: &[httparse::Header]) -> Framing {
    if chunked(headers) { Framing::Chunked } else { length(headers).map_or(Framing::None, Framing::Length) }
}

pub fn response_framing(head_request: bool, status: u16, headers: &[httparse::Header]) -> Framing {
    if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::None
    } else if chunked(headers) {
        Framing::Chunked
    } else {
        length(headers).map_or(Framing::UntilClose, Framing::Length)
    }
}

/// Whether the connection ends after this message.
fn closes(version: u8, headers: &[httparse::Header]) -> bool {
    if version == 0 {
        !has_token(headers, "connection", "keep-alive")
    } else {
        has_token(headers, "connection", "close")
    }
}

/// Copies one body from `buf` + `r` to `w`; returns the bytes moved.
async fn forward_body(r: &mut Reader, buf: &mut Vec<u8>, w: &mut Writer, framing: Framing) -> io::Result<u64> {
    let mut moved = 0u64;
    match framing {
        Framing::None => {}
        Framing::Length(n) => moved += forward_exact(r, buf, w, n).await?,
        Framing::UntilClose => {
            loop {
                if !buf.is_empty() {
                    w.write_all(buf).await?;
                    moved += buf.len() as u64;
                    buf.clear();
                }
                if fill(r, buf).await? == 0 {
                    break;
                }
            }
            w.shutdown().await?;
        }
        Framing::Chunked => loop {
            let line = read_line(r, buf).await?;
            let size = match httparse::parse_chunk_size(&buf[..line]) {
                Ok(httparse::Status::Complete((_, size))) => size,
                _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "bad chunk size")),
            };
            w.write_all(&buf[..line]).await?;
            moved += line as u64;
            buf.drain(..line);
            if size == 0 {
                // Trailers, up to an empty line.
                loop {
                    let line = read_line(r, buf).await?;
                    w.write_all(&buf[..line]).await?;
                    moved += line as u64;
                    buf.drain(..line);
                    if line == 2 {
                        break;
                    }
                }
                break;
            }
            moved += forward_exact(r, buf, w, size + 2).await?; // data and its CRLF
        },
    }
    w.flush().await?;
    Ok(moved)
}

/// The length of the next line in `buf` (CRLF included), reading as needed.
async fn read_line(r: &mut Reader, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut from = 0;
    loop {
        if let Some(i) = buf[from..].windows(2).position(|w| w == b"\r\n") {
            return Ok(from + i + 2);
        }
        from = buf.len().saturating_sub(1);
        if buf.len() > MAX_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
        }
        if fill(r, buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

async fn forward_exact(r: &mut Reader, buf: &mut Vec<u8>, w: &mut Writer, mut n: u64) -> io::Result<u64> {
    let total = n;
    while n > 0 {
        if buf.is_empty() && fill(r, buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let take = (buf.len() as u64).min(n) as usize;
        w.write_all(&buf[..take]).await?;
        buf.drain(..take);
        n -= take as u64;
    }
    Ok(total)
}

/// What the response told about the connection.
struct Answered {
    close: bool,
    upgraded: bool,
    bytes: u64,
}

/// Reads one response (after any 1xx) from `r`+`buf` and writes it to `w`.
async fn forward_response(
    r: &mut Reader,
    buf: &mut Vec<u8>,
    w: &mut Writer,
    head_request: bool,
) -> io::Result<Answered> {
    let mut bytes = 0u64;
    loop {
        let (len, status, framing, close) = loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let status = resp.code.unwrap_or(0);
                    let framing = response_framing(head_request, status, resp.headers);
                    let close = closes(resp.version.unwrap_or(1), resp.headers) || framing == Framing::UntilClose;
                    break (len, status, framing, close);
                }
                Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => {
                    if fill(r, buf).await? == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
                _ => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "not an HTTP/1.x response"));
                }
            }
        };
        w.write_all(&buf[..len]).await?;
        buf.drain(..len);
        bytes += len as u64;
        if status == 101 {
            w.flush().await?;
            return Ok(Answered { close: false, upgraded: true, bytes });
        }
        if (100..200).contains(&status) {
            w.flush().await?;
            continue; // an interim response: the real one follows
        }
        bytes += forward_body(r, buf, w, framing).await?;
        return Ok(Answered { close, upgraded: false, bytes });
    }
}

/// Moves bytes both ways until both directions end (leftovers first).
async fn tunnel(a: &mut Side, b: &mut Side) {
    let ab = async {
        if !a.buf.is_empty() {
            b.w.write_all(&a.buf).await?;
        }
        tokio::io::copy(&mut a.r, &mut b.w).await?;
        b.w.shutdown().await
    };
    let ba = async {
        if !b.buf.is_empty() {
            a.w.write_all(&b.buf).await?;
        }
        tokio::io::copy(&mut b.r, &mut a.w).await?;
        a.w.shutdown().await
    };
    let _: (io::Result<()>, io::Result<()>) = tokio::join!(ab, ba);
}

const BAD_GATEWAY: &[u8] =
    b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\nX-Tether: the local program did not answer\r\n\r\n";

/// Relays one redirected client connection through the filter.
pub async fn relay(inc: Arc<Incoming>, sub: Arc<Sub>, mut client: TcpStream, peer: SocketAddr, orig: SocketAddr) {
    let filter = sub.filter.clone().expect("a filtered subscription");
    let upstream = match connect_bypass(&inc.netns, orig).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(%orig, err = %e, "cannot reach the target for a filtered connection");
            return;
        }
    };
    SubStats::add(&sub.stats.passed_through, 1);
    // Who speaks first? A server that greets means this is not HTTP: pass it through. An HTTP/2
    // server's greeting (its SETTINGS, left unread for the relay) is not such a greeting.
    let mut first = vec![0u8; READ_CHUNK];
    let mut target_h2 = false;
    let n = loop {
        tokio::select! {
            r = client.read(&mut first) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => break n,
            },
            _ = upstream.readable(), if !target_h2 => {
                target_h2 = crate::incoming_h2::greets(&upstream).await;
                if !target_h2 {
                    break 0;
                }
            }
        }
    };
    first.truncate(n);
    if starts_h2(&mut client, &mut first).await {
        crate::incoming_h2::serve(inc, sub, client, first, upstream, peer, orig).await;
        return;
    }
    let mut client = Side::tcp(client);
    client.buf = first;
    let mut target = Side::tcp(upstream);
    let mut program: Option<Side> = None;
    let mut first_request = true;
    loop {
        // One request head.
        let (len, head_request, framing, close, to_program) = loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&client.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let target_path = req.path.unwrap_or("");
                    let to_program = sub.active() && filter.matches(target_path, req.headers);
                    break (
                        len,
                        req.method == Some("HEAD"),
                        request_framing(req.headers),
                        closes(req.version.unwrap_or(1), req.headers),
                        to_program,
                    );
                }
                Ok(httparse::Status::Partial) if client.buf.len() <= MAX_HEAD && !client.buf.is_empty() => {
                    match fill(&mut client.r, &mut client.buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
                Ok(httparse::Status::Partial) if client.buf.is_empty() => {
                    if first_request {
                        // The target spoke first.
                        tunnel(&mut client, &mut target).await;
                        return;
                    }
                    match fill(&mut client.r, &mut client.buf).await {
                        Ok(0) | Err(_) => {
                            let _ = target.w.shutdown().await;
                            return;
                        }
                        Ok(_) => {}
                    }
                }
                _ => {
                    if first_request {
                        // Not HTTP/1.x: the target gets it untouched.
                        tunnel(&mut client, &mut target).await;
                    }
                    return;
                }
            }
        };
        first_request = false;
        if to_program && program.is_none() {
            program = open_program(&sub, peer, orig);
        }
        let to_program = to_program && program.is_some();
        let dest = if to_program { program.as_mut().expect("opened") } else { &mut target };
        if to_program {
            SubStats::add(&sub.stats.requests_matched, 1);
        } else {
            SubStats::add(&sub.stats.requests_passed, 1);
        }
        // Head, then body and response together.
        let head = client.buf.drain(..len).collect::<Vec<u8>>();
        if dest.w.write_all(&head).await.is_err() {
            if to_program {
                let _ = client.w.write_all(BAD_GATEWAY).await;
            }
            return;
        }
        let Side { r: cr, w: cw, buf: cbuf } = &mut client;
        let Side { r: dr, w: dw, buf: dbuf } = dest;
        let body = forward_body(cr, cbuf, dw, framing);
        let answer = forward_response(dr, dbuf, cw, head_request);
        let (body, answer) = tokio::join!(body, answer);
        let answered = match answer {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(err = %e, to_program, "no complete response");
                if to_program {
                    let _ = cw.write_all(BAD_GATEWAY).await;
                }
                let _ = cw.shutdown().await;
                return;
            }
        };
        if let Ok(n) = body
            && to_program
        {
            SubStats::add(&sub.stats.bytes_in, head.len() as u64 + n);
        }
        if to_program {
            SubStats::add(&sub.stats.bytes_out, answered.bytes);
        }
        if answered.upgraded {
            tunnel(&mut client, if to_program { program.as_mut().expect("opened") } else { &mut target }).await;
            return;
        }
        if close || answered.close || body.is_err() {
            let _ = client.w.shutdown().await;
            return;
        }
    }
}

/// Whether the client's first bytes are HTTP/2's prior-knowledge preface (reading more while they
/// could still be). No bytes (the target spoke first) is not HTTP/2.
async fn starts_h2(client: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let preface = crate::incoming_h2::PREFACE;
    if buf.is_empty() {
        return false;
    }
    loop {
        let n = buf.len().min(preface.len());
        if buf[..n] != preface[..n] {
            return false;
        }
        if n == preface.len() {
            return true;
        }
        let mut more = [0u8; 64];
        match client.read(&mut more).await {
            Ok(0) | Err(_) => return false,
            Ok(got) => buf.extend_from_slice(&more[..got]),
        }
    }
}

/// A Unix stream pair for this client connection: the other end is handed to the subscriber as
/// kind `stream`; `None` when the subscriber takes no connection now.
pub fn program_stream(sub: &Sub, peer: SocketAddr, orig: SocketAddr) -> Option<tokio::net::UnixStream> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().ok()?;
    ours.set_nonblocking(true).ok()?;
    if !sub.deliver(ConnectionKind::Stream, peer, orig, theirs.into()) {
        return None;
    }
    tokio::net::UnixStream::from_std(ours).ok()
}

/// Opens the subscriber's side for this client connection.
fn open_program(sub: &Sub, peer: SocketAddr, orig: SocketAddr) -> Option<Side> {
    let (r, w) = program_stream(sub, peer, orig)?.into_split();
    Some(Side { r: Box::new(r), w: Box::new(w), buf: Vec::new() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<'a>(name: &'a str, value: &'a str) -> httparse::Header<'a> {
        httparse::Header { name, value: value.as_bytes() }
    }

    #[test]
    fn filters_match_header_lines_and_paths() {
        let f = Filter::new(&HttpFilter { header: Some("^x-user: me$".into()), path: None }).unwrap();
        assert!(f.matches("/", &[h("Host", "a"), h("X-User", "me")]));
        assert!(!f.matches("/", &[h("X-User", "you")]));
        assert!(!f.matches("/", &[]));
        let f = Filter::new(&HttpFilter { header: None, path: Some("^/api/".into()) }).unwrap();
        assert!(f.matches("/api/v1?x=1", &[]));
        assert!(!f.matches("/web/api/", &[]));
        let q = Filter::new(&HttpFilter { header: None, path: Some("[?&]debug=1".into()) }).unwrap();
        assert!(q.matches("/x?a=2&debug=1", &[]), "the query string is part of the path");
        let exact = Filter::new(&HttpFilter { header: Some("^X-User: Me$".into()), path: None }).unwrap();
        assert!(exact.matches("/", &[h("X-User", "Me")]), "the name as sent matches too");
        let both =
            Filter::new(&HttpFilter { header: Some("^x-user: me$".into()), path: Some("^/api".into()) }).unwrap();
        assert!(both.matches("/api", &[h("x-user", "me")]));
        assert!(!both.matches("/api", &[]));
        assert!(!both.matches("/", &[h("x-user", "me")]));
        assert!(Filter::new(&HttpFilter { header: Some("[".into()), path: None }).is_err());
    }

    #[test]
    fn framing_follows_rfc_9112() {
        assert_eq!(request_framing(&[h("Content-Length", "5")]), Framing::Length(5));
        assert_eq!(request_framing(&[h("Transfer-Encoding", "gzip, chunked")]), Framing::Chunked);
        assert_eq!(request_framing(&[]), Framing::None);
        assert_eq!(response_framing(false, 200, &[]), Framing::UntilClose);
        assert_eq!(response_framing(true, 200, &[h("content-length", "9")]), Framing::None);
        assert_eq!(response_framing(false, 204, &[]), Framing::None);
        assert_eq!(response_framing(false, 304, &[h("content-length", "9")]), Framing::None);
        assert_eq!(response_framing(false, 200, &[h("content-length", "9")]), Framing::Length(9));
        assert!(closes(0, &[]));
        assert!(!closes(0, &[h("Connection", "Keep-Alive")]));
        assert!(closes(1, &[h("connection", "upgrade, close")]));
        assert!(!closes(1, &[]));
    }

    #[tokio::test]
    async fn bodies_are_forwarded_exactly() {
        let input: &[u8] = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        let mut r: Reader = Box::new(&b""[..]);
        let mut buf = input.to_vec();
        let (a, mut b) = tokio::io::duplex(1024);
        let mut w: Writer = Box::new(a);
        let n = forward_body(&mut r, &mut buf, &mut w, Framing::Chunked).await.unwrap();
        drop(w);
        let mut out = Vec::new();
        b.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, &input[..input.len() - 4]);
        assert_eq!(n as usize, out.len());
        assert_eq!(buf, b"NEXT", "the next request stays buffered");

        let mut buf = b"abc".to_vec();
        let mut r: Reader = Box::new(&b"defgh"[..]);
        let (a, mut b) = tokio::io::duplex(1024);
        let mut w: Writer = Box::new(a);
        forward_body(&mut r, &mut buf, &mut w, Framing::Length(6)).await.unwrap();
        drop(w);
        let mut out = Vec::new();
        b.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"abcdef");
    }

    #[tokio::test]
    async fn interim_responses_pass_before_the_final_one() {
        let resp: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA";
        let mut r: Reader = Box::new(resp);
        let mut buf = Vec::new();
        let (a, mut b) = tokio::io::duplex(1024);
        let mut w: Writer = Box::new(a);
        let got = forward_response(&mut r, &mut buf, &mut w, false).await.unwrap();
        drop(w);
        assert!(!got.close && !got.upgraded);
        let mut out = Vec::new();
        b.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, &resp[..resp.len() - 5]);
    }
}
