//! The pod's DNS responder: a tiny, hand-written RFC 1035 server core.
//!
//! Names (case-insensitive, trailing dot ignored), shaped like Kubernetes service names:
//! * `<service>.svc.cluster.local` and `<service>.<namespace>.svc.cluster.local` → A
//!   [`HTTP_IP`] (198.18.0.10), except that the service `echo` → [`ECHO_IP`] (198.18.0.11) and
//!   `sink` → [`SINK_IP`] (198.18.0.12);
//! * more labels before `.svc.cluster.local` → NXDOMAIN, so the `search` + `ndots:5` expansions
//!   of an already-qualified name fail as they do in a cluster (and a name of three or more
//!   labels such as `nosuch.example.com` is NXDOMAIN however it is expanded);
//! * AAAA (or any other type) for a known name → NOERROR with no answers;
//! * anything else → NXDOMAIN.
//!
//! Note that with the pod's search list a one- or two-label name (`web`, `web.prod`) resolves.

use std::net::Ipv4Addr;

use crate::pod::{ECHO_IP, HTTP_IP, SINK_IP};

pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_ANY: u16 = 255;
pub const CLASS_IN: u16 = 1;
pub const RCODE_NOERROR: u8 = 0;
pub const RCODE_FORMERR: u8 = 1;
pub const RCODE_NXDOMAIN: u8 = 3;
pub const RCODE_NOTIMP: u8 = 4;

const SUFFIX: &str = ".svc.cluster.local";
const TTL: u32 = 5;

/// The address a name resolves to in a pod, or `None` for NXDOMAIN.
pub fn lookup(name: &str) -> Option<Ipv4Addr> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let prefix = name.strip_suffix(SUFFIX)?;
    let labels: Vec<&str> = prefix.split('.').collect();
    if labels.len() > 2 || labels.iter().any(|l| l.is_empty()) {
        return None;
    }
    match labels[0] {
        "echo" => Some(ECHO_IP),
        "sink" => Some(SINK_IP),
        _ => Some(HTTP_IP),
    }
}

/// Reads a (non-compressed) name starting at `pos`; returns it and the position after it.
fn read_name(msg: &[u8], mut pos: usize) -> Option<(String, usize)> {
    let mut name = String::new();
    loop {
        let len = *msg.get(pos)? as usize;
        pos += 1;
        if len == 0 {
            break;
        }
        if len & 0xC0 != 0 {
            return None; // compression pointers do not occur in questions we accept
        }
        let label = msg.get(pos..pos + len)?;
        if !name.is_empty() {
            name.push('.');
        }
        for &b in label {
            name.push(b as char);
        }
        pos += len;
        if name.len() > 255 {
            return None;
        }
    }
    Some((name, pos))
}

fn header(id: u16, query_flags: u16, rcode: u8, qd: u16, an: u16) -> Vec<u8> {
    let opcode = query_flags & 0x7800;
    let rd = query_flags & 0x0100;
    // QR | opcode | AA | RD (copied) | RA | rcode
    let flags = 0x8000 | opcode | 0x0400 | rd | 0x0080 | rcode as u16;
    let mut h = Vec::with_capacity(512);
    for v in [id, flags, qd, an, 0, 0] {
        h.extend_from_slice(&v.to_be_bytes());
    }
    h
}

/// Builds the response to one query message, or `None` when the message should be ignored
/// (too short, or itself a response).
pub fn respond(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let id = u16::from_be_bytes([query[0], query[1]]);
    let flags = u16::from_be_bytes([query[2], query[3]]);
    if flags & 0x8000 != 0 {
        return None;
    }
    let qdcount = u16::from_be_bytes([query[4], query[5]]);
    if (flags >> 11) & 0xF != 0 {
        return Some(header(id, flags, RCODE_NOTIMP, 0, 0));
    }
    if qdcount != 1 {
        return Some(header(id, flags, RCODE_FORMERR, 0, 0));
    }
    let Some((name, pos)) = read_name(query, 12) else {
        return Some(header(id, flags, RCODE_FORMERR, 0, 0));
    };
    let Some(q) = query.get(pos..pos + 4) else {
        return Some(header(id, flags, RCODE_FORMERR, 0, 0));
    };
    let qtype = u16::from_be_bytes([q[0], q[1]]);
    let qclass = u16::from_be_bytes([q[2], q[3]]);
    let question = &query[12..pos + 4];
    let (rcode, answer) = match lookup(&name) {
        None => (RCODE_NXDOMAIN, None),
        Some(ip) if (qtype == TYPE_A || qtype == TYPE_ANY) && qclass == CLASS_IN => (RCODE_NOERROR, Some(ip)),
        Some(_) => (RCODE_NOERROR, None),
    };
    let mut resp = header(id, flags, rcode, 1, answer.is_some() as u16);
    resp.extend_from_slice(question);
    if let Some(ip) = answer {
        resp.extend_from_slice(&[0xC0, 0x0C]); // pointer to the question's name
        resp.extend_from_slice(&TYPE_A.to_be_bytes());
        resp.extend_from_slice(&CLASS_IN.to_be_bytes());
        resp.extend_from_slice(&TTL.to_be_bytes());
        resp.extend_from_slice(&4u16.to_be_bytes());
        resp.extend_from_slice(&ip.octets());
    }
    Some(resp)
}

/// Builds a standard query (RD set) — for tests.
pub fn build_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::new();
    for v in [id, 0x0100, 1, 0, 0, 0] {
        q.extend_from_slice(&v.to_be_bytes());
    }
    for label in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    q
}

/// A parsed response — for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub id: u16,
    pub flags: u16,
    pub rcode: u8,
    pub question: String,
    pub a: Vec<Ipv4Addr>,
}

/// Parses a response produced by [`respond`] (A records only) — for tests.
pub fn parse_response(msg: &[u8]) -> Option<Response> {
    if msg.len() < 12 {
        return None;
    }
    let id = u16::from_be_bytes([msg[0], msg[1]]);
    let flags = u16::from_be_bytes([msg[2], msg[3]]);
    let qd = u16::from_be_bytes([msg[4], msg[5]]);
    let an = u16::from_be_bytes([msg[6], msg[7]]);
    let mut pos = 12;
    let mut question = String::new();
    for _ in 0..qd {
        let (n, p) = read_name(msg, pos)?;
        question = n;
        pos = p + 4;
    }
    let mut a = Vec::new();
    for _ in 0..an {
        // name: pointer or labels
        if *msg.get(pos)? & 0xC0 == 0xC0 {
            pos += 2;
        } else {
            pos = read_name(msg, pos)?.1;
        }
        let rr = msg.get(pos..pos + 10)?;
        let rtype = u16::from_be_bytes([rr[0], rr[1]]);
        let rdlen = u16::from_be_bytes([rr[8], rr[9]]) as usize;
        let data = msg.get(pos + 10..pos + 10 + rdlen)?;
        if rtype == TYPE_A && rdlen == 4 {
            a.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        pos += 10 + rdlen;
    }
    Some(Response { id, flags, rcode: (flags & 0xF) as u8, question, a })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_rules() {
        assert_eq!(lookup("web.default.svc.cluster.local"), Some(HTTP_IP));
        assert_eq!(lookup("WEB.Default.SVC.cluster.LOCAL."), Some(HTTP_IP));
        assert_eq!(lookup("echo.svc.cluster.local"), Some(ECHO_IP));
        assert_eq!(lookup("echo.default.svc.cluster.local"), Some(ECHO_IP));
        assert_eq!(lookup("sink.svc.cluster.local"), Some(SINK_IP));
        assert_eq!(lookup("svc.cluster.local"), None);
        assert_eq!(lookup("example.com"), None);
        assert_eq!(lookup("xsvc.cluster.local"), None);
        assert_eq!(lookup("a.b.c.svc.cluster.local"), None);
        assert_eq!(lookup(".svc.cluster.local"), None);
        assert_eq!(lookup("nosuch.example.com.default.svc.cluster.local"), None);
        // search-list expansion of an already qualified name
        assert_eq!(lookup("echo.svc.cluster.local.default.svc.cluster.local"), None);
    }

    #[test]
    fn a_query_gets_an_answer_with_id_question_and_flags() {
        let q = build_query(0xBEEF, "web.default.svc.cluster.local", TYPE_A);
        let r = respond(&q).unwrap();
        let p = parse_response(&r).unwrap();
        assert_eq!(p.id, 0xBEEF);
        assert_eq!(p.rcode, RCODE_NOERROR);
        assert_eq!(p.question, "web.default.svc.cluster.local");
        assert_eq!(p.a, vec![HTTP_IP]);
        assert_ne!(p.flags & 0x8000, 0, "QR");
        assert_ne!(p.flags & 0x0100, 0, "RD copied");
        assert_ne!(p.flags & 0x0080, 0, "RA");
        // question section echoed byte for byte
        assert_eq!(&r[12..q.len()], &q[12..]);
    }

    #[test]
    fn rd_is_copied_not_forced() {
        let mut q = build_query(1, "web.svc.cluster.local", TYPE_A);
        q[2] &= !0x01; // clear RD
        let p = parse_response(&respond(&q).unwrap()).unwrap();
        assert_eq!(p.flags & 0x0100, 0);
    }

    #[test]
    fn aaaa_is_empty_noerror_and_unknown_is_nxdomain() {
        let p = parse_response(&respond(&build_query(2, "web.svc.cluster.local", TYPE_AAAA)).unwrap()).unwrap();
        assert_eq!((p.rcode, p.a.len()), (RCODE_NOERROR, 0));
        let p = parse_response(&respond(&build_query(3, "example.com", TYPE_A)).unwrap()).unwrap();
        assert_eq!((p.rcode, p.a.len()), (RCODE_NXDOMAIN, 0));
        assert_eq!(p.question, "example.com");
    }

    #[test]
    fn garbage_is_ignored_or_formerr() {
        assert!(respond(&[1, 2, 3]).is_none());
        let mut q = build_query(4, "a.b", TYPE_A);
        q.truncate(14);
        let p = parse_response(&respond(&q).unwrap()).unwrap();
        assert_eq!(p.rcode, RCODE_FORMERR);
        // a response is not answered
        let mut q = build_query(5, "a.b", TYPE_A);
        q[2] |= 0x80;
        assert!(respond(&q).is_none());
    }
}
