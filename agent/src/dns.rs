//! Name resolution as the target does it.
//!
//! The daemon needs to turn host names of the outgoing filter into addresses the way the target
//! would, so the answer must come from the target's `/etc/hosts` and its nameservers (read from
//! its `/etc/resolv.conf`, both through the root descriptor) and the queries must leave from its
//! network namespace (the nameserver is often reachable only there, e.g. a cluster DNS).
//!
//! This is a deliberately small stub resolver (hand-written: a query is 30 lines, and parsing
//! answers only needs A/AAAA records and name skipping, so no DNS crate is worth its weight):
//! hosts file first, then the search list with `ndots` like glibc, A and AAAA queries sent
//! together over UDP, nameservers tried in order on timeout or failure. Truncated answers are
//! used as they are (no TCP retry). Not-found is reported as `ENOENT`, no answer as `ETIMEDOUT`,
//! nameservers that only fail as `EAGAIN`.

use crate::files::Root;
use crate::netns::{NetnsThread, SocketSpec};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tether_protocol::agent::ResolveReply;
use tokio::net::UdpSocket;
use tokio::time::Instant;

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

/// The parts of `resolv.conf` that matter here.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvConf {
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub ndots: usize,
    pub timeout: Duration,
    pub attempts: u32,
}

impl Default for ResolvConf {
    fn default() -> Self {
        ResolvConf { nameservers: vec![], search: vec![], ndots: 1, timeout: Duration::from_secs(5), attempts: 2 }
    }
}

/// Parses `resolv.conf`; without any nameserver, `127.0.0.1` is used (as glibc does).
pub fn parse_resolv_conf(text: &str) -> ResolvConf {
    let mut conf = ResolvConf::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                // An IPv6 link-local server may carry a zone ("fe80::1%eth0"): drop it.
                if let Some(ip) = words.next().and_then(|w| w.split('%').next()?.parse().ok())
                    && conf.nameservers.len() < 3
                {
                    conf.nameservers.push(ip);
                }
            }
            // The last `search` or `domain` line wins.
            Some("search") => conf.search = words.map(|w| w.trim_end_matches('.').to_string()).collect(),
            Some("domain") => conf.search = words.take(1).map(|w| w.trim_end_matches('.').to_string()).collect(),
            Some("options") => {
                for opt in words {
                    let (k, v) = opt.split_once(':').unwrap_or((opt, ""));
                    match (k, v.parse::<u64>()) {
                        ("ndots", Ok(n)) => conf.ndots = n.min(15) as usize,
                        ("timeout", Ok(n)) => conf.timeout = Duration::from_secs(n.clamp(1, 5)),
                        ("attempts", Ok(n)) => conf.attempts = n.clamp(1, 5) as u32,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    conf.search.retain(|s| !s.is_empty());
    if conf.nameservers.is_empty() {
        conf.nameservers.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    conf
}

/// Addresses that the hosts file gives `name` (case-insensitive), in file order.
pub fn lookup_hosts(text: &str, name: &str) -> Vec<IpAddr> {
    let name = name.trim_end_matches('.');
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        let Some(ip) = words.next().and_then(|w| w.split('%').next()?.parse::<IpAddr>().ok()) else { continue };
        if words.any(|w| w.trim_end_matches('.').eq_ignore_ascii_case(name)) && !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

/// The fully qualified names to try, in order (glibc's search-list rule).
pub fn candidates(name: &str, conf: &ResolvConf) -> Vec<String> {
    if let Some(abs) = name.strip_suffix('.') {
        return vec![abs.to_string()];
    }
    let as_is_first = name.matches('.').count() >= conf.ndots;
    let mut out = Vec::new();
    if as_is_first {
        out.push(name.to_string());
    }
    out.extend(conf.search.iter().map(|s| format!("{name}.{s}")));
    if !as_is_first {
        out.push(name.to_string());
    }
    out
}

/// A standard recursive query for `name` (no trailing dot), or `None` for an invalid name.
pub fn build_query(id: u16, name: &str, qtype: u16) -> Option<Vec<u8>> {
    if name.is_empty() || name.len() > 253 {
        return None;
    }
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // QD=1, AN=NS=AR=0
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    Some(q)
}

/// What an answer said.
#[derive(Debug, PartialEq)]
pub struct Answer {
    pub id: u16,
    pub rcode: u8,
    pub truncated: bool,
    /// A and AAAA records of the answer section (CNAME chains are flattened by the server).
    pub addrs: Vec<IpAddr>,
}

fn skip_name(buf: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *buf.get(pos)?;
        match len & 0xC0 {
            0x00 if len == 0 => return Some(pos + 1),
            0x00 => pos += 1 + len as usize,
            0xC0 => return (pos + 2 <= buf.len()).then_some(pos + 2),
            _ => return None,
        }
    }
}

fn be16(buf: &[u8], pos: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*buf.get(pos)?, *buf.get(pos + 1)?]))
}

/// Parses a response; `None` when it is not a well-formed DNS response.
pub fn parse_response(buf: &[u8]) -> Option<Answer> {
    let id = be16(buf, 0)?;
    let flags = be16(buf, 2)?;
    if flags & 0x8000 == 0 {
        return None; // not a response
    }
    let qd = be16(buf, 4)?;
    let an = be16(buf, 6)?;
    let mut pos = 12;
    for _ in 0..qd {
        pos = skip_name(buf, pos)? + 4;
    }
    let mut addrs = Vec::new();
    for _ in 0..an {
        pos = skip_name(buf, pos)?;
        let rtype = be16(buf, pos)?;
        let class = be16(buf, pos + 2)?;
        let rdlen = be16(buf, pos + 8)? as usize;
        let rdata = buf.get(pos + 10..pos + 10 + rdlen)?;
        pos += 10 + rdlen;
        if class != CLASS_IN {
            continue;
        }
        match (rtype, rdata.len()) {
            (TYPE_A, 4) => addrs.push(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(rdata).ok()?))),
            (TYPE_AAAA, 16) => addrs.push(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(rdata).ok()?))),
            _ => {}
        }
    }
    Some(Answer { id, rcode: (flags & 0x000F) as u8, truncated: flags & 0x0200 != 0, addrs })
}

fn random_u16() -> u16 {
    let mut b = [0u8; 2];
    // SAFETY: writes two bytes into our buffer. On failure, fall back to the clock.
    if unsafe { libc::getrandom(b.as_mut_ptr().cast(), 2, 0) } != 2 {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        return (t.subsec_nanos() ^ std::process::id()) as u16;
    }
    u16::from_ne_bytes(b)
}

enum Outcome {
    Found(Vec<IpAddr>),
    /// NXDOMAIN, or no A/AAAA record: try the next candidate.
    NotFound,
    /// Nothing usable from this server (errno).
    Failed(i32),
}

/// Asks one server for A and AAAA of `fqdn` at once over UDP from the target's namespace.
async fn exchange(netns: &NetnsThread, server: IpAddr, fqdn: &str, timeout: Duration) -> Outcome {
    let (id_a, id_aaaa) = {
        let a = random_u16();
        (a, a.wrapping_add(1))
    };
    let (Some(qa), Some(qaaaa)) = (build_query(id_a, fqdn, TYPE_A), build_query(id_aaaa, fqdn, TYPE_AAAA)) else {
        return Outcome::NotFound; // not a valid DNS name: nothing can exist under it
    };
    let made = match netns.socket(SocketSpec::connect(true, SocketAddr::new(server, 53))).await {
        Ok(s) => s,
        Err(e) => return Outcome::Failed(e.raw_os_error().unwrap_or(libc::EIO)),
    };
    if made.connect_errno != 0 {
        return Outcome::Failed(made.connect_errno);
    }
    let sock = match UdpSocket::from_std(std::net::UdpSocket::from(made.fd)) {
        Ok(s) => s,
        Err(e) => return Outcome::Failed(e.raw_os_error().unwrap_or(libc::EIO)),
    };
    for q in [&qa, &qaaaa] {
        if let Err(e) = sock.send(q).await {
            return Outcome::Failed(e.raw_os_error().unwrap_or(libc::EIO));
        }
    }
    let deadline = Instant::now() + timeout;
    let (mut a, mut aaaa): (Option<Answer>, Option<Answer>) = (None, None);
    let mut buf = vec![0u8; 4096];
    while a.is_none() || aaaa.is_none() {
        let n = match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
            Err(_) => break,
            Ok(Err(e)) => {
                if a.is_none() && aaaa.is_none() {
                    return Outcome::Failed(e.raw_os_error().unwrap_or(libc::EIO));
                }
                break;
            }
            Ok(Ok(n)) => n,
        };
        match parse_response(&buf[..n]) {
            Some(ans) if ans.id == id_a && a.is_none() => a = Some(ans),
            Some(ans) if ans.id == id_aaaa && aaaa.is_none() => aaaa = Some(ans),
            _ => {} // stray or malformed datagram
        }
    }
    if a.is_none() && aaaa.is_none() {
        return Outcome::Failed(libc::ETIMEDOUT);
    }
    let answers: Vec<Answer> = a.into_iter().chain(aaaa).collect();
    let addrs: Vec<IpAddr> = answers.iter().flat_map(|x| x.addrs.iter().copied()).collect();
    if !addrs.is_empty() {
        return Outcome::Found(addrs);
    }
    // rcode 0 (no data) or 3 (NXDOMAIN) is an answer; SERVFAIL/REFUSED/... ask another server.
    if answers.iter().any(|x| x.rcode == 0 || x.rcode == 3) { Outcome::NotFound } else { Outcome::Failed(libc::EAGAIN) }
}

/// Resolves `name` for the target: hosts file, then DNS.
pub async fn resolve(root: Arc<Root>, netns: &NetnsThread, name: &str) -> ResolveReply {
    let name = name.trim();
    let reply =
        |errno, addrs: Vec<IpAddr>| ResolveReply { errno, addresses: addrs.iter().map(|a| a.to_string()).collect() };
    if name.is_empty() || name == "." {
        return reply(libc::EINVAL, vec![]);
    }
    if let Ok(ip) = name.parse::<IpAddr>() {
        return reply(0, vec![ip]);
    }
    let files = tokio::task::spawn_blocking(move || {
        let hosts = root.read_small("/etc/hosts", 1 << 20).unwrap_or_default();
        let resolv = root.read_small("/etc/resolv.conf", 1 << 20).unwrap_or_default();
        (hosts, resolv)
    })
    .await;
    let Ok((hosts, resolv)) = files else { return reply(libc::EIO, vec![]) };
    let from_hosts = lookup_hosts(&String::from_utf8_lossy(&hosts), name);
    if !from_hosts.is_empty() {
        return reply(0, from_hosts);
    }
    let conf = parse_resolv_conf(&String::from_utf8_lossy(&resolv));
    for fqdn in candidates(name, &conf) {
        let mut last_err = None;
        'servers: for _ in 0..conf.attempts {
            for &server in &conf.nameservers {
                match exchange(netns, server, &fqdn, conf.timeout).await {
                    Outcome::Found(mut addrs) => {
                        // IPv4 first, as most clients prefer when both exist.
                        addrs.sort_by_key(|a| a.is_ipv6());
                        addrs.dedup();
                        return reply(0, addrs);
                    }
                    Outcome::NotFound => {
                        last_err = None;
                        break 'servers;
                    }
                    Outcome::Failed(e) => {
                        tracing::debug!(%server, fqdn, errno = e, "DNS query failed");
                        last_err = Some(e);
                    }
                }
            }
        }
        if let Some(e) = last_err {
            return reply(e, vec![]);
        }
    }
    reply(libc::ENOENT, vec![])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_of_a_pod() {
        let conf = parse_resolv_conf(
            "# generated\nsearch default.svc.cluster.local svc.cluster.local cluster.local\n\
             nameserver 10.96.0.10\nnameserver fe80::1%eth0\noptions ndots:5 timeout:2 edns0\n",
        );
        assert_eq!(conf.nameservers, vec!["10.96.0.10".parse::<IpAddr>().unwrap(), "fe80::1".parse().unwrap()]);
        assert_eq!(conf.search, vec!["default.svc.cluster.local", "svc.cluster.local", "cluster.local"]);
        assert_eq!(conf.ndots, 5);
        assert_eq!(conf.timeout, Duration::from_secs(2));
        assert_eq!(parse_resolv_conf("").nameservers, vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    }

    #[test]
    fn search_list_order_follows_ndots() {
        let conf = ResolvConf { search: vec!["ns.svc".into(), "svc".into()], ndots: 2, ..Default::default() };
        assert_eq!(candidates("db", &conf), vec!["db.ns.svc", "db.svc", "db"]);
        assert_eq!(candidates("a.b.c", &conf), vec!["a.b.c", "a.b.c.ns.svc", "a.b.c.svc"]);
        assert_eq!(candidates("abs.", &conf), vec!["abs"]);
    }

    #[test]
    fn hosts_file_lookup() {
        let hosts =
            "127.0.0.1 localhost\n# 1.2.3.4 commented\n198.18.0.7 Web web.local # x\n::1 localhost ip6-localhost\n";
        assert_eq!(lookup_hosts(hosts, "web"), vec!["198.18.0.7".parse::<IpAddr>().unwrap()]);
        assert_eq!(lookup_hosts(hosts, "WEB.local."), vec!["198.18.0.7".parse::<IpAddr>().unwrap()]);
        assert_eq!(lookup_hosts(hosts, "localhost").len(), 2);
        assert!(lookup_hosts(hosts, "commented").is_empty());
    }

    #[test]
    fn queries_are_well_formed() {
        let q = build_query(0x1234, "a.bc", TYPE_AAAA).unwrap();
        assert_eq!(q, [0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 2, b'b', b'c', 0, 0, 28, 0, 1]);
        assert!(build_query(1, "a..b", TYPE_A).is_none());
        assert!(build_query(1, &"x".repeat(64), TYPE_A).is_none());
    }

    #[test]
    fn answers_with_cname_and_compression() {
        // Question www.x (A); answers: www.x CNAME web.x (ptr), web.x A 198.18.0.9.
        let mut r = vec![0xab, 0xcd, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0];
        r.extend_from_slice(&[3, b'w', b'w', b'w', 1, b'x', 0, 0, 1, 0, 1]);
        r.extend_from_slice(&[0xC0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 6, 3, b'w', b'e', b'b', 0xC0, 16]);
        r.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 18, 0, 9]);
        let a = parse_response(&r).unwrap();
        assert_eq!(a.id, 0xabcd);
        assert_eq!(a.rcode, 0);
        assert_eq!(a.addrs, vec!["198.18.0.9".parse::<IpAddr>().unwrap()]);
        // Truncated input is rejected, not a panic.
        for n in 0..r.len() {
            let _ = parse_response(&r[..n]);
        }
        assert!(parse_response(&r[..r.len() - 2]).is_none());
        // A query is not a response.
        assert!(parse_response(&build_query(1, "x", TYPE_A).unwrap()).is_none());
    }
}
