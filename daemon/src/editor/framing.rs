//! LSP base-protocol framing: `Content-Length: N\r\n\r\n` then N bytes of JSON.
//!
//! Both sides of the daemon socket use it: the daemon reads with [`FrameReader`] (async, with
//! limits, so no peer can make it buffer without bound) and the CLI with [`read_blocking`].
//! Framing is done here rather than by `tower-lsp-server`'s codec because that codec has no size
//! limit and cannot tell "too large" from "malformed".

use std::io::{BufRead, Read};

use tokio::io::{AsyncRead, AsyncReadExt};

/// The largest message body the daemon accepts (16 MiB). A larger one is answered with an
/// error and the connection is closed: the rest of the stream cannot be trusted.
pub const MAX_MESSAGE: usize = 16 << 20;
/// The largest header block (all header lines together).
pub const MAX_HEADER: usize = 8 << 10;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("message of {0} bytes exceeds the limit of {MAX_MESSAGE} bytes (16 MiB)")]
    TooLarge(usize),
    #[error("malformed message header: {0}")]
    Header(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// One framed message: header and body.
pub fn encode(body: &[u8]) -> Vec<u8> {
    let mut out = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

/// The body length a header block (without its blank line) announces.
fn content_length(header: &[u8]) -> Result<usize, FrameError> {
    let text = std::str::from_utf8(header).map_err(|_| FrameError::Header("not UTF-8".into()))?;
    let mut length = None;
    for line in text.split("\r\n") {
        let Some((name, value)) = line.split_once(':') else {
            return Err(FrameError::Header(format!("line {line:?} is not `Name: value`")));
        };
        if name.trim().eq_ignore_ascii_case("content-length") {
            let n: usize = value
                .trim()
                .parse()
                .map_err(|_| FrameError::Header(format!("Content-Length {:?} is not a number", value.trim())))?;
            length = Some(n);
        }
    }
    let n = length.ok_or_else(|| FrameError::Header("no Content-Length header".into()))?;
    if n > MAX_MESSAGE {
        return Err(FrameError::TooLarge(n));
    }
    Ok(n)
}

/// Reads framed messages from an async stream.
pub struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// `prefix`: bytes already read from the stream (the daemon peeks to tell clients apart).
    pub fn new(inner: R, prefix: Vec<u8>) -> Self {
        FrameReader { inner, buf: prefix }
    }

    async fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 16 << 10];
        let n = self.inner.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// The next message body; `None` at a clean end of stream (between messages).
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let header_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            if self.buf.len() > MAX_HEADER {
                return Err(FrameError::Header(format!("no end of header within {MAX_HEADER} bytes")));
            }
            if self.fill().await? == 0 {
                if self.buf.iter().all(u8::is_ascii_whitespace) {
                    return Ok(None);
                }
                return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        };
        let length = content_length(&self.buf[..header_end])?;
        let start = header_end + 4;
        while self.buf.len() < start + length {
            if self.fill().await? == 0 {
                return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
        let body = self.buf[start..start + length].to_vec();
        self.buf.drain(..start + length);
        Ok(Some(body))
    }
}

/// Reads one framed message, blocking (the CLI's side).
pub fn read_blocking(r: &mut impl BufRead) -> Result<Vec<u8>, FrameError> {
    let mut header = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = r.by_ref().take(MAX_HEADER as u64).read_until(b'\n', &mut line)?;
        if n == 0 {
            return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        if line == b"\r\n" {
            break;
        }
        if !header.is_empty() {
            header.extend_from_slice(b"\r\n");
        }
        header.extend_from_slice(line.strip_suffix(b"\r\n").unwrap_or(&line));
        if header.len() > MAX_HEADER {
            return Err(FrameError::Header("header too long".into()));
        }
    }
    let mut body = vec![0u8; content_length(&header)?];
    r.read_exact(&mut body)?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_across_chunks() {
        let mut wire = encode(br#"{"a":1}"#);
        wire.extend(encode(b"{}"));
        let (split_at, rest) = wire.split_at(5);
        let mut r = FrameReader::new(rest, split_at.to_vec());
        assert_eq!(r.next().await.unwrap().unwrap(), br#"{"a":1}"#);
        assert_eq!(r.next().await.unwrap().unwrap(), b"{}");
        assert!(r.next().await.unwrap().is_none());
        let mut blocking = std::io::BufReader::new(&wire[..]);
        assert_eq!(read_blocking(&mut blocking).unwrap(), br#"{"a":1}"#);
    }

    #[tokio::test]
    async fn limits_and_malformed_headers_are_errors() {
        let big = format!("Content-Length: {}\r\n\r\n", MAX_MESSAGE + 1);
        let mut r = FrameReader::new(big.as_bytes(), Vec::new());
        assert!(matches!(r.next().await, Err(FrameError::TooLarge(_))));
        let mut r = FrameReader::new(&b"Content-Type: x\r\n\r\n{}"[..], Vec::new());
        assert!(matches!(r.next().await, Err(FrameError::Header(_))));
        let mut r = FrameReader::new(&b"Content-Length: ten\r\n\r\n"[..], Vec::new());
        assert!(matches!(r.next().await, Err(FrameError::Header(_))));
        let endless = vec![b'x'; MAX_HEADER + 10];
        let mut r = FrameReader::new(&endless[..], Vec::new());
        assert!(matches!(r.next().await, Err(FrameError::Header(_))));
        let mut r = FrameReader::new(&b"Content-Length: 10\r\n\r\n{}"[..], Vec::new());
        assert!(matches!(r.next().await, Err(FrameError::Io(_))));
    }
}
