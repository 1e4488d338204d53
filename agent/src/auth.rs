//! The session token check.
//!
//! The agent listens on a TCP port (often reached through a Kubernetes port-forward) and acts with
//! the privileges needed to enter a target's namespaces, so nothing may be served to a peer that
//! cannot prove the session token. Every gRPC call goes through [`AuthInterceptor`]; the fd socket
//! uses [`Token::matches`] on its first line. Comparisons take the same time wherever the first
//! differing byte is.

use std::sync::Arc;
use tether_protocol::agent::AUTH_HEADER;
use tonic::{Request, Status, service::Interceptor};

/// The session token, shared by every place that checks it.
#[derive(Clone)]
pub struct Token(Arc<[u8]>);

impl Token {
    pub fn new(token: &str) -> Self {
        Token(Arc::from(token.as_bytes()))
    }

    /// Whether `candidate` is the token, compared in constant time for a given length.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        ct_eq(&self.0, candidate)
    }
}

/// Constant-time equality: every byte of the longer input is looked at whatever the contents.
/// Only the lengths (not secret in practice: tokens have a fixed format) influence the time.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

/// Rejects every call whose `authorization` metadata is not `Bearer <token>`.
#[derive(Clone)]
pub struct AuthInterceptor {
    pub token: Token,
}

impl Interceptor for AuthInterceptor {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let peer = request.remote_addr();
        let Some(value) = request.metadata().get(AUTH_HEADER) else {
            tracing::warn!(?peer, "call without {AUTH_HEADER} metadata refused");
            return Err(Status::unauthenticated(format!("missing `{AUTH_HEADER}: Bearer <token>` metadata")));
        };
        let presented = value.as_bytes().strip_prefix(b"Bearer ").unwrap_or(b"");
        if !self.token.matches(presented) {
            tracing::warn!(?peer, "call with a wrong token refused");
            return Err(Status::unauthenticated("invalid session token"));
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_only_when_identical() {
        assert!(ct_eq(b"secret", b"secret"));
        assert!(!ct_eq(b"secret", b"secreT"));
        assert!(!ct_eq(b"secret", b"secret2"));
        assert!(!ct_eq(b"secret", b""));
        assert!(ct_eq(b"", b""));
    }

    fn call(header: Option<&str>) -> Result<Request<()>, Status> {
        let mut i = AuthInterceptor { token: Token::new("s3cret") };
        let mut req = Request::new(());
        if let Some(h) = header {
            req.metadata_mut().insert(AUTH_HEADER, h.parse().unwrap());
        }
        i.call(req)
    }

    #[test]
    fn interceptor_wants_the_bearer_token() {
        assert!(call(Some("Bearer s3cret")).is_ok());
        assert_eq!(call(None).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert_eq!(call(Some("Bearer nope")).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert_eq!(call(Some("s3cret")).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert_eq!(call(Some("Basic s3cret")).unwrap_err().code(), tonic::Code::Unauthenticated);
    }
}
