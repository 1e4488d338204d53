//! Outgoing traffic rules: whether a connection (TCP) or datagram (UDP) a program sends leaves
//! from this machine or from the target's network.
//!
//! # Rules
//!
//! 1. A protocol switched off (`tcp: false` / `udp: false`) stays local.
//! 2. With a `remote` filter, only destinations matching an entry go through the target; with a
//!    `local` filter, matching destinations stay local and the rest go through the target;
//!    without a filter, everything goes through the target.
//! 3. Loopback (`127.0.0.0/8`, `::1`) and unspecified (`0.0.0.0`, `::`) destinations stay local
//!    whatever the filter, unless a `remote` entry names them explicitly (an address or a CIDR
//!    inside the loopback range, or a host name that resolves to them; `0.0.0.0/0` or `:8080`
//!    alone do not count). A debug adapter, a language runtime's inspector and local
//!    side-services all talk to the program over localhost; sending that to the target breaks
//!    the debug session.
//!
//! # Filter entries: `[proto://][host|ip|cidr][:port]`
//!
//! `tcp://10.0.0.0/8:443`, `udp://:53` (any address, port 53), `db.svc.cluster.local:5432`,
//! `[::1]:80`, `fd00::/8`, `:8080`, `10.1.2.3`. A missing part matches anything. IPv6 with a
//! port needs brackets. Host names are resolved by the daemon through the target
//! ([`OutgoingRules::host_names`], [`OutgoingRules::set_resolved`]); until then a name entry
//! matches nothing. IPv4-mapped IPv6 destinations (`::ffff:10.0.0.1`) match IPv4 entries.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use crate::error::ConfigError;
use crate::model::{OutgoingConfig, OutgoingFilter};

/// Transport protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// The host part of a filter entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    /// No host: any address.
    Any,
    /// An address (prefix = full length) or a CIDR block; `net` has its host bits cleared.
    Cidr { net: IpAddr, prefix: u8 },
    /// A host name (lowercase, without a trailing dot), resolved through the target.
    Name(String),
}

/// One parsed `[proto://][host|ip|cidr][:port]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterEntry {
    pub proto: Option<Proto>,
    pub host: Host,
    pub port: Option<u16>,
}

impl FilterEntry {
    /// Parses an entry; the error says what is wrong with it.
    pub fn parse(s: &str) -> Result<FilterEntry, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty entry".into());
        }
        let (proto, rest) = match s.split_once("://") {
            Some((p, rest)) => {
                let proto = match p.to_ascii_lowercase().as_str() {
                    "tcp" => Proto::Tcp,
                    "udp" => Proto::Udp,
                    _ => return Err(format!("unknown protocol `{p}`; use `tcp://` or `udp://`")),
                };
                (Some(proto), rest)
            }
            None => (None, s),
        };
        let (host, port, bracketed) = if let Some(inner) = rest.strip_prefix('[') {
            let (host, after) = inner.split_once(']').ok_or("missing `]` after an IPv6 address")?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or_else(|| format!("expected `:PORT` after `]`, got `{after}`"))?),
            };
            (host, port, true)
        } else if rest.matches(':').count() > 1 {
            (rest, None, false) // a bare IPv6 address or block: no port
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h, Some(p), false),
                None => (rest, None, false),
            }
        };
        if bracketed && !host.contains(':') {
            return Err("brackets are only for IPv6 addresses".into());
        }
        let port = port.map(parse_port).transpose()?;
        let host = parse_host(host)?;
        Ok(FilterEntry { proto, host, port })
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(format!("`{p}` is not a port (1-65535)")),
    }
}

fn parse_host(h: &str) -> Result<Host, String> {
    if h.is_empty() {
        return Ok(Host::Any);
    }
    if let Some((addr, prefix)) = h.split_once('/') {
        let ip: IpAddr = addr.parse().map_err(|_| format!("`{addr}` is not an IP address"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = prefix
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("`/{prefix}` is not a prefix length (0-{max})"))?;
        return Ok(Host::Cidr { net: mask(ip, prefix), prefix });
    }
    if let Ok(ip) = h.parse::<IpAddr>() {
        let ip = ip.to_canonical();
        return Ok(Host::Cidr { net: ip, prefix: if ip.is_ipv4() { 32 } else { 128 } });
    }
    let name = h.strip_suffix('.').unwrap_or(h);
    let valid = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !valid {
        return Err(format!("`{h}` is not a host name, an IP address or a CIDR block"));
    }
    if name.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!("`{h}` is not a valid IPv4 address"));
    }
    Ok(Host::Name(name.to_ascii_lowercase()))
}

/// `ip` with the bits after `prefix` cleared (a prefix longer than the address keeps it whole).
fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    let prefix = prefix.min(if ip.is_ipv4() { 32 } else { 128 });
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = if prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix)) };
            IpAddr::V6((bits & m).into())
        }
    }
}

/// Where outgoing traffic goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetRoute {
    /// From this machine.
    Local,
    /// From the target's network.
    Remote,
}

/// A decision and the rule that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetDecision {
    pub route: NetRoute,
    /// A short phrase naming the rule, e.g. `feature.network.outgoing.filter.remote[0] ":53"`.
    pub rule: Arc<str>,
}

#[derive(Debug)]
struct Entry {
    entry: FilterEntry,
    rule: Arc<str>,
    /// The addresses of a name entry, once resolved.
    addrs: Vec<IpAddr>,
}

impl Entry {
    fn matches(&self, proto: Proto, ip: IpAddr, port: u16) -> bool {
        self.entry.proto.is_none_or(|p| p == proto)
            && self.entry.port.is_none_or(|p| p == port)
            && match &self.entry.host {
                Host::Any => true,
                Host::Cidr { net, prefix } => net.is_ipv4() == ip.is_ipv4() && mask(ip, *prefix) == *net,
                Host::Name(_) => self.addrs.contains(&ip),
            }
    }

    /// Whether the entry names the loopback or unspecified address `ip` on purpose.
    fn names_explicitly(&self, ip: IpAddr) -> bool {
        match &self.entry.host {
            Host::Any => false,
            Host::Cidr { net, prefix } => net.is_loopback() || *prefix == if ip.is_ipv4() { 32 } else { 128 },
            Host::Name(_) => true,
        }
    }
}

/// The compiled outgoing rules of one config.
#[derive(Debug)]
pub struct OutgoingRules {
    tcp: bool,
    udp: bool,
    /// `true` for a `remote` filter, `false` for a `local` one; entries empty without filter.
    remote_filter: Option<bool>,
    entries: Vec<Entry>,
    tcp_off: Arc<str>,
    udp_off: Arc<str>,
    loopback: Arc<str>,
    unmatched: Arc<str>,
}

impl OutgoingRules {
    /// Compiles `cfg`. Fails on a bad filter entry (which a loaded config cannot have).
    pub fn new(cfg: &OutgoingConfig) -> Result<OutgoingRules, ConfigError> {
        let (remote_filter, list, name): (Option<bool>, &[String], &str) = match &cfg.filter {
            None => (None, &[], ""),
            Some(OutgoingFilter::Remote(l)) => (Some(true), l, "remote"),
            Some(OutgoingFilter::Local(l)) => (Some(false), l, "local"),
        };
        let mut entries = Vec::new();
        for (i, text) in list.iter().enumerate() {
            let key = format!("feature.network.outgoing.filter.{name}[{i}]");
            let entry = FilterEntry::parse(text)
                .map_err(|m| ConfigError::new(Path::new(""), &key, format!("`{text}`: {m}")))?;
            entries.push(Entry { entry, rule: format!("{key} {text:?}").into(), addrs: Vec::new() });
        }
        let unmatched = match remote_filter {
            None => "default: outgoing traffic goes through the target",
            Some(true) => "feature.network.outgoing.filter.remote names no entry for it, so local",
            Some(false) => "feature.network.outgoing.filter.local names no entry for it, so through the target",
        };
        Ok(OutgoingRules {
            tcp: cfg.tcp,
            udp: cfg.udp,
            remote_filter,
            entries,
            tcp_off: "feature.network.outgoing.tcp is false".into(),
            udp_off: "feature.network.outgoing.udp is false".into(),
            loopback: "built-in: loopback and unspecified addresses stay local (debuggers talk to the program there)"
                .into(),
            unmatched: unmatched.into(),
        })
    }

    /// The host names in the filter, each once, in order: the daemon resolves them through the
    /// target and hands the addresses to [`OutgoingRules::set_resolved`].
    pub fn host_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for e in &self.entries {
            if let Host::Name(n) = &e.entry.host
                && !names.contains(n)
            {
                names.push(n.clone());
            }
        }
        names
    }

    /// Sets the addresses of the host name `name` (replacing earlier ones).
    pub fn set_resolved(&mut self, name: &str, addrs: Vec<IpAddr>) {
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        let addrs: Vec<IpAddr> = addrs.into_iter().map(|a| a.to_canonical()).collect();
        for e in &mut self.entries {
            if matches!(&e.entry.host, Host::Name(n) if *n == name) {
                e.addrs = addrs.clone();
            }
        }
    }

    /// Where traffic of `proto` to `dest` goes, and why.
    pub fn decide(&self, proto: Proto, dest: SocketAddr) -> NetDecision {
        let d = |route, rule: &Arc<str>| NetDecision { route, rule: Arc::clone(rule) };
        match proto {
            Proto::Tcp if !self.tcp => return d(NetRoute::Local, &self.tcp_off),
            Proto::Udp if !self.udp => return d(NetRoute::Local, &self.udp_off),
            _ => {}
        }
        let ip = dest.ip().to_canonical();
        let port = dest.port();
        let stays_local = ip.is_loopback() || ip.is_unspecified();
        match self.remote_filter {
            Some(true) => {
                let hit = self
                    .entries
                    .iter()
                    .find(|e| e.matches(proto, ip, port) && (!stays_local || e.names_explicitly(ip)));
                if let Some(e) = hit {
                    return d(NetRoute::Remote, &e.rule);
                }
            }
            Some(false) => {
                if let Some(e) = self.entries.iter().find(|e| e.matches(proto, ip, port)) {
                    return d(NetRoute::Local, &e.rule);
                }
            }
            None => {}
        }
        if stays_local {
            return d(NetRoute::Local, &self.loopback);
        }
        match self.remote_filter {
            Some(true) => d(NetRoute::Local, &self.unmatched),
            _ => d(NetRoute::Remote, &self.unmatched),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(net: &str, prefix: u8) -> Host {
        Host::Cidr { net: net.parse().unwrap(), prefix }
    }

    fn entry(proto: Option<Proto>, host: Host, port: Option<u16>) -> FilterEntry {
        FilterEntry { proto, host, port }
    }

    #[test]
    fn parses_every_entry_form() {
        use Proto::*;
        let cases = [
            ("tcp://10.0.0.0/8:443", entry(Some(Tcp), cidr("10.0.0.0", 8), Some(443))),
            ("udp://:53", entry(Some(Udp), Host::Any, Some(53))),
            ("db.svc.cluster.local:5432", entry(None, Host::Name("db.svc.cluster.local".into()), Some(5432))),
            ("[::1]:80", entry(None, cidr("::1", 128), Some(80))),
            (":8080", entry(None, Host::Any, Some(8080))),
            ("10.1.2.3", entry(None, cidr("10.1.2.3", 32), None)),
            ("10.1.2.3:9", entry(None, cidr("10.1.2.3", 32), Some(9))),
            ("fd00::/8", entry(None, cidr("fd00::", 8), None)),
            ("tcp://[fd00:1::/32]:443", entry(Some(Tcp), cidr("fd00:1::", 32), Some(443))),
            ("2001:db8::5", entry(None, cidr("2001:db8::5", 128), None)),
            ("TCP://Example.COM.", entry(Some(Tcp), Host::Name("example.com".into()), None)),
            ("tcp://", entry(Some(Tcp), Host::Any, None)),
            ("10.1.2.3/16", entry(None, cidr("10.1.0.0", 16), None)),
            ("0.0.0.0/0", entry(None, cidr("0.0.0.0", 0), None)),
            ("[::ffff:10.0.0.1]:1", entry(None, cidr("10.0.0.1", 32), Some(1))),
            ("localhost", entry(None, Host::Name("localhost".into()), None)),
        ];
        for (text, want) in cases {
            assert_eq!(FilterEntry::parse(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn rejects_bad_entries_with_reasons() {
        let cases = [
            ("", "empty entry"),
            ("http://x", "unknown protocol `http`; use `tcp://` or `udp://`"),
            (":0", "`0` is not a port (1-65535)"),
            ("x:70000", "`70000` is not a port (1-65535)"),
            ("x:http", "`http` is not a port (1-65535)"),
            ("10.0.0.0/33", "`/33` is not a prefix length (0-32)"),
            ("fd00::/129", "`/129` is not a prefix length (0-128)"),
            ("10.0.0.256/8", "`10.0.0.256` is not an IP address"),
            ("[::1", "missing `]` after an IPv6 address"),
            ("[::1]80", "expected `:PORT` after `]`, got `80`"),
            ("[10.0.0.1]:80", "brackets are only for IPv6 addresses"),
            ("300.1.1.1", "`300.1.1.1` is not a valid IPv4 address"),
            ("bad host!", "`bad host!` is not a host name, an IP address or a CIDR block"),
            ("a..b", "`a..b` is not a host name, an IP address or a CIDR block"),
        ];
        for (text, want) in cases {
            assert_eq!(FilterEntry::parse(text).unwrap_err(), want, "{text}");
        }
    }

    fn rules(cfg: OutgoingConfig) -> OutgoingRules {
        OutgoingRules::new(&cfg).unwrap()
    }

    fn filter(remote: bool, entries: &[&str]) -> OutgoingRules {
        let list = entries.iter().map(|s| s.to_string()).collect();
        rules(OutgoingConfig {
            filter: Some(if remote { OutgoingFilter::Remote(list) } else { OutgoingFilter::Local(list) }),
            ..Default::default()
        })
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn route(r: &OutgoingRules, proto: Proto, dest: &str) -> NetRoute {
        r.decide(proto, sa(dest)).route
    }

    #[test]
    fn default_is_remote_but_loopback_and_unspecified_stay_local() {
        let r = rules(OutgoingConfig::default());
        let d = r.decide(Proto::Tcp, sa("10.0.0.1:80"));
        assert_eq!(d.route, NetRoute::Remote);
        assert_eq!(&*d.rule, "default: outgoing traffic goes through the target");
        assert_eq!(route(&r, Proto::Udp, "8.8.8.8:53"), NetRoute::Remote);
        for local in ["127.0.0.1:4000", "127.9.9.9:1", "[::1]:4000", "0.0.0.0:80", "[::]:80", "[::ffff:127.0.0.1]:5"] {
            let d = r.decide(Proto::Tcp, sa(local));
            assert_eq!(d.route, NetRoute::Local, "{local}");
            assert!(d.rule.starts_with("built-in: loopback"), "{}", d.rule);
        }
    }

    #[test]
    fn switched_off_protocols_stay_local() {
        let r = rules(OutgoingConfig { tcp: false, ..Default::default() });
        let d = r.decide(Proto::Tcp, sa("10.0.0.1:80"));
        assert_eq!(d.route, NetRoute::Local);
        assert_eq!(&*d.rule, "feature.network.outgoing.tcp is false");
        assert_eq!(route(&r, Proto::Udp, "10.0.0.1:53"), NetRoute::Remote);
        let r = rules(OutgoingConfig { udp: false, ..Default::default() });
        assert_eq!(&*r.decide(Proto::Udp, sa("10.0.0.1:53")).rule, "feature.network.outgoing.udp is false");
        assert_eq!(route(&r, Proto::Tcp, "10.0.0.1:53"), NetRoute::Remote);
    }

    #[test]
    fn remote_filter_sends_only_matches() {
        let r = filter(true, &["tcp://10.0.0.0/8:443", "udp://:53", "[fd00::1]:80"]);
        let d = r.decide(Proto::Tcp, sa("10.2.3.4:443"));
        assert_eq!(d.route, NetRoute::Remote);
        assert_eq!(&*d.rule, "feature.network.outgoing.filter.remote[0] \"tcp://10.0.0.0/8:443\"");
        assert_eq!(route(&r, Proto::Tcp, "10.2.3.4:80"), NetRoute::Local);
        assert_eq!(route(&r, Proto::Udp, "10.2.3.4:443"), NetRoute::Local);
        assert_eq!(route(&r, Proto::Tcp, "11.0.0.1:443"), NetRoute::Local);
        assert_eq!(route(&r, Proto::Udp, "1.1.1.1:53"), NetRoute::Remote);
        assert_eq!(route(&r, Proto::Udp, "[2001:db8::1]:53"), NetRoute::Remote);
        assert_eq!(route(&r, Proto::Tcp, "[fd00::1]:80"), NetRoute::Remote);
        assert_eq!(route(&r, Proto::Tcp, "[fd00::2]:80"), NetRoute::Local);
        assert_eq!(route(&r, Proto::Tcp, "[::ffff:10.0.0.1]:443"), NetRoute::Remote);
        let d = r.decide(Proto::Tcp, sa("11.0.0.1:443"));
        assert_eq!(&*d.rule, "feature.network.outgoing.filter.remote names no entry for it, so local");
        // `udp://:53` does not name loopback explicitly.
        assert_eq!(route(&r, Proto::Udp, "127.0.0.53:53"), NetRoute::Local);
    }

    #[test]
    fn remote_filter_may_name_loopback_explicitly() {
        let r = filter(true, &["127.0.0.1:5432", "[::1]:6379", "0.0.0.0/0:80", "127.0.0.0/8:9000"]);
        assert_eq!(route(&r, Proto::Tcp, "127.0.0.1:5432"), NetRoute::Remote);
        assert_eq!(route(&r, Proto::Tcp, "[::1]:6379"), NetRoute::Remote);
        assert_eq!(route(&r, Proto::Tcp, "127.0.0.5:9000"), NetRoute::Remote);
        assert_eq!(route(&r, Proto::Tcp, "127.0.0.1:80"), NetRoute::Local);
        assert_eq!(route(&r, Proto::Tcp, "10.0.0.1:80"), NetRoute::Remote);
        assert_eq!(route(&r, Proto::Tcp, "127.0.0.1:4711"), NetRoute::Local);
    }

    #[test]
    fn local_filter_keeps_matches_local() {
        let r = filter(false, &["10.0.0.0/8", "tcp://:22", "fd00::/8"]);
        let d = r.decide(Proto::Tcp, sa("10.9.9.9:80"));
        assert_eq!(d.route, NetRoute::Local);
        assert_eq!(&*d.rule, "feature.network.outgoing.filter.local[0] \"10.0.0.0/8\"");
        assert_eq!(route(&r, Proto::Tcp, "1.2.3.4:22"), NetRoute::Local);
        assert_eq!(route(&r, Proto::Udp, "1.2.3.4:22"), NetRoute::Remote);
        assert_eq!(route(&r, Proto::Tcp, "[fd12::1]:80"), NetRoute::Local);
        assert_eq!(route(&r, Proto::Tcp, "[fe80::1]:80"), NetRoute::Remote);
        let d = r.decide(Proto::Tcp, sa("1.2.3.4:80"));
        assert_eq!(d.route, NetRoute::Remote);
        assert!(d.rule.contains("filter.local names no entry"));
        assert_eq!(route(&r, Proto::Tcp, "127.0.0.1:80"), NetRoute::Local);
    }

    #[test]
    fn v4_blocks_do_not_match_v6_and_back() {
        let r = filter(true, &["0.0.0.0/0", "[::/0]:443"]);
        assert_eq!(route(&r, Proto::Tcp, "1.2.3.4:80"), NetRoute::Remote);
        assert_eq!(route(&r, Proto::Tcp, "[2001:db8::1]:80"), NetRoute::Local);
        assert_eq!(route(&r, Proto::Tcp, "[2001:db8::1]:443"), NetRoute::Remote);
    }

    #[test]
    fn host_names_match_once_resolved() {
        let mut r = filter(
            true,
            &["db.svc.cluster.local:5432", "tcp://cache:6379", "DB.svc.cluster.local:1", "localhost:8080"],
        );
        assert_eq!(r.host_names(), ["db.svc.cluster.local", "cache", "localhost"]);
        assert_eq!(route(&r, Proto::Tcp, "10.96.0.10:5432"), NetRoute::Local);
        r.set_resolved("db.svc.cluster.local.", vec!["10.96.0.10".parse().unwrap()]);
        let d = r.decide(Proto::Tcp, sa("10.96.0.10:5432"));
        assert_eq!(d.route, NetRoute::Remote);
        assert_eq!(&*d.rule, "feature.network.outgoing.filter.remote[0] \"db.svc.cluster.local:5432\"");
        assert_eq!(route(&r, Proto::Tcp, "10.96.0.10:1"), NetRoute::Remote);
        assert_eq!(route(&r, Proto::Tcp, "10.96.0.11:5432"), NetRoute::Local);
        assert_eq!(route(&r, Proto::Tcp, "10.96.0.12:6379"), NetRoute::Local);
        // A name that resolves to loopback names it explicitly.
        r.set_resolved("localhost", vec!["127.0.0.1".parse().unwrap()]);
        assert_eq!(route(&r, Proto::Tcp, "127.0.0.1:8080"), NetRoute::Remote);
        // Resolving again replaces the addresses.
        r.set_resolved("db.svc.cluster.local", vec!["10.96.0.99".parse().unwrap()]);
        assert_eq!(route(&r, Proto::Tcp, "10.96.0.10:5432"), NetRoute::Local);
    }

    #[test]
    fn bad_entry_in_code_built_config_names_key() {
        let e = OutgoingRules::new(&OutgoingConfig {
            filter: Some(OutgoingFilter::Local(vec!["ok:1".into(), "udp://:x".into()])),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.key, "feature.network.outgoing.filter.local[1]");
        assert_eq!(e.to_string(), "feature.network.outgoing.filter.local[1]: `udp://:x`: `x` is not a port (1-65535)");
    }
}
