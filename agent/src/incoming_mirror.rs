//! Mirror mode: copies of the client bytes of a port's new connections, taken off the wire.
//!
//! A packet socket (`AF_PACKET`, made on the namespace thread so it sees that namespace's
//! interfaces) with a classic BPF filter receives the IPv4/IPv6 TCP segments whose destination is
//! the port, except those the namespace sends out itself (so loopback traffic counts once). The
//! kernel copies packets to the socket beside delivering them; the target's traffic never waits
//! for us, and when we fall behind the kernel drops packets from *our* queue only.
//!
//! Each connection seen from its SYN on is rebuilt in sequence order (retransmissions trimmed,
//! out-of-order segments held up to a bound) and its bytes are written to a Unix stream pair whose
//! other end goes to the subscriber (kind `mirror`). Connections that were open before the
//! subscription are not mirrored. A subscriber that cannot keep up (more than [`MAX_PENDING`]
//! bytes waiting) or a hole that never fills (a missed packet) gives up that one connection
//! (counted as `dropped`): a mirror never corrupts a stream silently, it ends it.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tether_protocol::fdpass::ConnectionKind;

use crate::incoming::{Sub, SubStats};
use crate::netns::NetnsThread;

/// Bytes that may wait for a slow subscriber, per connection.
pub const MAX_PENDING: usize = 4 << 20;
/// Out-of-order bytes held per connection while waiting for a missing segment.
const MAX_OUT_OF_ORDER: usize = 1 << 20;
const MAX_FLOWS: usize = 4096;
const IDLE: Duration = Duration::from_secs(600);
/// How often the sniffer takes what queued up. It never waits on the socket itself: a waiting
/// reader is woken by the kernel in the target's receive path, once per burst of packets, and
/// that wake-up is what the target would pay for the copy (measured: a third of the mirror's
/// cost to a new connection's latency). A copy is worth this delay; 8 MiB of queue covers it.
const BATCH: Duration = Duration::from_millis(10);

/// Puts the calling thread in `SCHED_IDLE` (else at nice 19): a copy is best effort, so on a busy
/// node the target (and everything else) runs first; if the copy falls too far behind, the
/// kernel drops packets from our queue and that one mirrored connection ends, the target never
/// waits.
fn yield_to_the_target() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain syscalls on the calling thread with valid parameters.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0 {
        unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 19) };
    }
}

/// Starts mirroring `sub.port` on a thread of its own; it ends when the subscription does.
pub fn start(netns: &NetnsThread, sub: Arc<Sub>) -> io::Result<()> {
    let port = sub.port;
    let sock = netns.run_blocking(move || packet_socket(port))??;
    std::thread::Builder::new().name(format!("mirror-{port}")).spawn(move || {
        yield_to_the_target();
        Sniffer::new(sock, sub).run()
    })?;
    Ok(())
}

/// One instruction of [`filter`]; jumps name labels instead of counting instructions.
enum Ins {
    Op(u16, u32),
    Jump(u16, u32, &'static str, &'static str),
    Label(&'static str),
}

/// Resolves the labels of `prog` into classic BPF jump offsets.
fn assemble(prog: &[Ins]) -> Vec<libc::sock_filter> {
    let mut at = HashMap::new();
    let mut n = 0usize;
    for ins in prog {
        match ins {
            Ins::Label(l) => {
                at.insert(*l, n);
            }
            _ => n += 1,
        }
    }
    let mut out = Vec::with_capacity(n);
    for ins in prog {
        let here = out.len();
        let off = |l: &str| u8::try_from(at[l] - here - 1).expect("a forward jump of at most 255");
        match ins {
            Ins::Op(code, k) => out.push(libc::sock_filter { code: *code, jt: 0, jf: 0, k: *k }),
            Ins::Jump(code, k, t, f) => out.push(libc::sock_filter { code: *code, jt: off(t), jf: off(f), k: *k }),
            Ins::Label(_) => {}
        }
    }
    out
}

/// The classic BPF program: TCP over IPv4 (not a later fragment) or IPv6 (no extension header)
/// with destination port `port`, not sent by this namespace, and carrying something the copy
/// needs: data, or SYN, FIN or RST. Pure acknowledgements (about half of a short connection's
/// packets) are never copied, which keeps the tap's cost on the target's path small. Accepted
/// packets are kept whole.
pub fn filter(port: u16) -> Vec<libc::sock_filter> {
    use Ins::*;
    const LD_W_ABS: u16 = 0x20;
    const LD_H_ABS: u16 = 0x28;
    const LD_B_ABS: u16 = 0x30;
    const LD_H_IND: u16 = 0x48;
    const LD_B_IND: u16 = 0x50;
    const LDX_B_MSH: u16 = 0xb1;
    const LDX_MEM: u16 = 0x61;
    const ST: u16 = 0x02;
    const TAX: u16 = 0x07;
    const AND_K: u16 = 0x54;
    const RSH_K: u16 = 0x74;
    const SUB_X: u16 = 0x1c;
    const JEQ_K: u16 = 0x15;
    const JSET_K: u16 = 0x45;
    const RET_K: u16 = 0x06;
    const SKF_AD_PKTTYPE: u32 = 0xffff_f000 + 4;
    const PACKET_OUTGOING: u32 = 4;
    const FIN_SYN_RST: u32 = 0x07;
    let p = u32::from(port);
    assemble(&[
        Op(LD_W_ABS, SKF_AD_PKTTYPE),
        Jump(JEQ_K, PACKET_OUTGOING, "reject", "ours"),
        Label("ours"),
        Op(LD_B_ABS, 0),
        Op(AND_K, 0xf0),
        Jump(JEQ_K, 0x40, "v4", "not_v4"),
        // IPv4: X = header length; the TCP header follows.
        Label("v4"),
        Op(LD_B_ABS, 9),
        Jump(JEQ_K, libc::IPPROTO_TCP as u32, "v4_tcp", "reject"),
        Label("v4_tcp"),
        Op(LD_H_ABS, 6),
        Jump(JSET_K, 0x1fff, "reject", "v4_first"), // a later fragment
        Label("v4_first"),
        Op(LDX_B_MSH, 0),
        Op(LD_H_IND, 2),
        Jump(JEQ_K, p, "v4_port", "reject"),
        Label("v4_port"),
        Op(LD_B_IND, 13),
        Jump(JSET_K, FIN_SYN_RST, "accept", "v4_len"),
        Label("v4_len"),
        // Payload = total length - IP header - TCP header.
        Op(LD_B_IND, 12),
        Op(AND_K, 0xf0),
        Op(RSH_K, 2),
        Op(ST, 0),
        Op(LD_H_ABS, 2),
        Op(SUB_X, 0),
        Op(LDX_MEM, 0),
        Op(SUB_X, 0),
        Jump(JEQ_K, 0, "reject", "accept"),
        Label("not_v4"),
        Jump(JEQ_K, 0x60, "v6", "reject"),
        // IPv6 with TCP right after the fixed header (40 bytes).
        Label("v6"),
        Op(LD_B_ABS, 6),
        Jump(JEQ_K, libc::IPPROTO_TCP as u32, "v6_tcp", "reject"),
        Label("v6_tcp"),
        Op(LD_H_ABS, 42),
        Jump(JEQ_K, p, "v6_port", "reject"),
        Label("v6_port"),
        Op(LD_B_ABS, 53),
        Jump(JSET_K, FIN_SYN_RST, "accept", "v6_len"),
        Label("v6_len"),
        // Payload = payload length - TCP header.
        Op(LD_B_ABS, 52),
        Op(AND_K, 0xf0),
        Op(RSH_K, 2),
        Op(TAX, 0),
        Op(LD_H_ABS, 4),
        Op(SUB_X, 0),
        Jump(JEQ_K, 0, "reject", "accept"),
        Label("accept"),
        Op(RET_K, 0x40000),
        Label("reject"),
        Op(RET_K, 0),
    ])
}

/// The packet socket (runs on the namespace thread).
fn packet_socket(port: u16) -> io::Result<OwnedFd> {
    let proto = (libc::ETH_P_ALL as u16).to_be() as i32;
    // SAFETY: plain syscalls; the descriptor is owned right away.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let prog = filter(port);
    let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_ptr() as *mut _ };
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&fprog as *const libc::sock_fprog).cast(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    let size: i32 = 8 << 20;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        let r = unsafe { libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, opt, (&size as *const i32).cast(), 4) };
        if r == 0 {
            break;
        }
    }
    Ok(fd)
}

/// A TCP segment of interest.
#[derive(Debug, PartialEq)]
pub struct Segment<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
    pub payload: &'a [u8],
}

/// Parses an IP packet (no link header) carrying TCP.
pub fn parse(pkt: &[u8]) -> Option<Segment<'_>> {
    let (src_ip, dst_ip, tcp): (IpAddr, IpAddr, &[u8]) = match pkt.first()? >> 4 {
        4 => {
            let ihl = usize::from(pkt[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes(pkt.get(2..4)?.try_into().ok()?));
            let end = if total == 0 { pkt.len() } else { total.min(pkt.len()) };
            if *pkt.get(9)? != libc::IPPROTO_TCP as u8 || ihl < 20 || end < ihl {
                return None;
            }
            let src: [u8; 4] = pkt.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = pkt.get(16..20)?.try_into().ok()?;
            (Ipv4Addr::from(src).into(), Ipv4Addr::from(dst).into(), &pkt[ihl..end])
        }
        6 => {
            let len = usize::from(u16::from_be_bytes(pkt.get(4..6)?.try_into().ok()?));
            if *pkt.get(6)? != libc::IPPROTO_TCP as u8 || pkt.len() < 40 {
                return None;
            }
            let end = if len == 0 { pkt.len() } else { (40 + len).min(pkt.len()) };
            let src: [u8; 16] = pkt.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = pkt.get(24..40)?.try_into().ok()?;
            (Ipv6Addr::from(src).into(), Ipv6Addr::from(dst).into(), &pkt[40..end])
        }
        _ => return None,
    };
    let sport = u16::from_be_bytes(tcp.get(0..2)?.try_into().ok()?);
    let dport = u16::from_be_bytes(tcp.get(2..4)?.try_into().ok()?);
    let seq = u32::from_be_bytes(tcp.get(4..8)?.try_into().ok()?);
    let doff = usize::from(tcp.get(12)? >> 4) * 4;
    let flags = *tcp.get(13)?;
    if doff < 20 || doff > tcp.len() {
        return None;
    }
    Some(Segment {
        src: SocketAddr::new(src_ip, sport),
        dst: SocketAddr::new(dst_ip, dport),
        seq,
        fin: flags & 0x01 != 0,
        syn: flags & 0x02 != 0,
        rst: flags & 0x04 != 0,
        ack: flags & 0x10 != 0,
        payload: &tcp[doff..],
    })
}

/// Where a connection's bytes go.
pub trait Sink {
    /// Opens the subscriber's side of a new connection; `None` when it does not take it.
    fn open(&mut self, peer: SocketAddr, local: SocketAddr) -> Option<UnixStream>;
    fn stats(&self) -> &SubStats;
}

struct SubSink(Arc<Sub>);

impl Sink for SubSink {
    fn open(&mut self, peer: SocketAddr, local: SocketAddr) -> Option<UnixStream> {
        let (ours, theirs) = UnixStream::pair().ok()?;
        ours.set_nonblocking(true).ok()?;
        let size: i32 = 1 << 20;
        unsafe {
            libc::setsockopt(ours.as_raw_fd(), libc::SOL_SOCKET, libc::SO_SNDBUF, (&size as *const i32).cast(), 4)
        };
        self.0.deliver(ConnectionKind::Mirror, peer, local, theirs.into()).then_some(ours)
    }
    fn stats(&self) -> &SubStats {
        &self.0.stats
    }
}

struct Flow {
    next: u32,
    fin_at: Option<u32>,
    out: Option<UnixStream>,
    pending: Vec<u8>,
    held: Vec<(u32, Vec<u8>)>,
    held_bytes: usize,
    last: Instant,
    dead: bool,
}

/// Rebuilds client byte streams from segments.
pub struct Reassembler<S: Sink> {
    port: u16,
    flows: HashMap<(SocketAddr, SocketAddr), Flow>,
    sink: S,
}

impl<S: Sink> Reassembler<S> {
    pub fn new(port: u16, sink: S) -> Self {
        Reassembler { port, flows: HashMap::new(), sink }
    }

    #[cfg(test)]
    pub fn flows(&self) -> usize {
        self.flows.len()
    }

    pub fn segment(&mut self, seg: &Segment) {
        if seg.dst.port() != self.port {
            return;
        }
        let key = (seg.src, seg.dst);
        if seg.syn && !seg.ack {
            if self.flows.get(&key).is_some_and(|f| f.next == seg.seq.wrapping_add(1)) {
                return; // a retransmitted SYN
            }
            if self.flows.len() >= MAX_FLOWS {
                self.evict_oldest();
            }
            let flow = Flow {
                next: seg.seq.wrapping_add(1),
                fin_at: None,
                out: None,
                pending: Vec::new(),
                held: Vec::new(),
                held_bytes: 0,
                last: Instant::now(),
                dead: false,
            };
            self.flows.insert(key, flow);
            return;
        }
        let Some(flow) = self.flows.get_mut(&key) else {
            return;
        };
        flow.last = Instant::now();
        if seg.rst {
            self.flows.remove(&key);
            return;
        }
        if !seg.payload.is_empty() {
            Self::data(&mut self.sink, flow, seg.src, seg.dst, seg.seq, seg.payload);
        }
        if seg.fin {
            flow.fin_at = Some(seg.seq.wrapping_add(seg.payload.len() as u32));
        }
        self.settle(key);
    }

    fn data(sink: &mut S, flow: &mut Flow, peer: SocketAddr, local: SocketAddr, seq: u32, payload: &[u8]) {
        if flow.dead {
            return;
        }
        let off = seq.wrapping_sub(flow.next) as i32;
        if off > 0 {
            // A hole before this segment: hold it.
            flow.held_bytes += payload.len();
            if flow.held_bytes > MAX_OUT_OF_ORDER {
                Self::give_up(sink, flow);
                return;
            }
            flow.held.push((seq, payload.to_vec()));
            return;
        }
        let skip = (-off) as usize;
        if skip >= payload.len() {
            return; // all seen already
        }
        Self::emit(sink, flow, peer, local, &payload[skip..]);
        // Held segments that now fit.
        loop {
            let Some(i) = flow.held.iter().position(|(s, _)| (s.wrapping_sub(flow.next) as i32) <= 0) else {
                break;
            };
            let (s, data) = flow.held.swap_remove(i);
            flow.held_bytes -= data.len();
            let skip = flow.next.wrapping_sub(s) as usize;
            if skip < data.len() {
                Self::emit(sink, flow, peer, local, &data[skip..]);
            }
        }
    }

    fn emit(sink: &mut S, flow: &mut Flow, peer: SocketAddr, local: SocketAddr, bytes: &[u8]) {
        flow.next = flow.next.wrapping_add(bytes.len() as u32);
        if flow.dead {
            return;
        }
        if flow.out.is_none() {
            match sink.open(peer, local) {
                Some(s) => flow.out = Some(s),
                None => {
                    flow.dead = true;
                    return;
                }
            }
        }
        SubStats::add(&sink.stats().bytes_in, bytes.len() as u64);
        flow.pending.extend_from_slice(bytes);
        Self::flush(sink, flow);
    }

    fn flush(sink: &mut S, flow: &mut Flow) {
        let Some(out) = flow.out.as_mut() else { return };
        while !flow.pending.is_empty() {
            match out.write(&flow.pending) {
                Ok(0) => break,
                Ok(n) => {
                    flow.pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    // The subscriber closed its side: nothing more to copy.
                    flow.out = None;
                    flow.pending.clear();
                    flow.dead = true;
                    return;
                }
            }
        }
        if flow.pending.len() > MAX_PENDING {
            Self::give_up(sink, flow);
        }
    }

    fn give_up(sink: &mut S, flow: &mut Flow) {
        if !flow.dead {
            SubStats::add(&sink.stats().dropped, 1);
        }
        flow.dead = true;
        flow.out = None; // the subscriber sees the stream end
        flow.pending = Vec::new();
        flow.held = Vec::new();
        flow.held_bytes = 0;
    }

    /// Finishes a flow whose bytes up to its FIN are all out; drops dead ones.
    fn settle(&mut self, key: (SocketAddr, SocketAddr)) {
        let Some(flow) = self.flows.get_mut(&key) else {
            return;
        };
        let done = flow.fin_at == Some(flow.next) && flow.pending.is_empty();
        if done {
            if let Some(out) = &flow.out {
                let _ = out.shutdown(std::net::Shutdown::Write);
            }
            self.flows.remove(&key);
        } else if flow.dead && flow.fin_at.is_some() {
            self.flows.remove(&key);
        }
    }

    /// Retries pending writes and forgets idle flows.
    pub fn tick(&mut self) {
        let keys: Vec<_> = self.flows.iter().filter(|(_, f)| !f.pending.is_empty()).map(|(k, _)| *k).collect();
        for key in keys {
            if let Some(flow) = self.flows.get_mut(&key) {
                Self::flush(&mut self.sink, flow);
            }
            self.settle(key);
        }
        self.flows.retain(|_, f| f.last.elapsed() < IDLE);
    }

    fn evict_oldest(&mut self) {
        if let Some(key) = self.flows.iter().min_by_key(|(_, f)| f.last).map(|(k, _)| *k) {
            self.flows.remove(&key);
        }
    }
}

struct Sniffer {
    sock: OwnedFd,
    sub: Arc<Sub>,
    flows: Reassembler<SubSink>,
}

impl Sniffer {
    fn new(sock: OwnedFd, sub: Arc<Sub>) -> Sniffer {
        let flows = Reassembler::new(sub.port, SubSink(sub.clone()));
        Sniffer { sock, sub, flows }
    }

    fn run(mut self) {
        // The copy must never compete with the target for the CPU (`yield_to_the_target`), and
        // never costs the target a wake-up: it drains the socket every BATCH.
        let mut buf = vec![0u8; 0x40000];
        let mut last_tick = Instant::now();
        while self.sub.active() {
            std::thread::sleep(BATCH);
            loop {
                let n = unsafe {
                    libc::recv(self.sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT)
                };
                if n <= 0 {
                    break;
                }
                if let Some(seg) = parse(&buf[..n as usize]) {
                    self.flows.segment(&seg);
                }
            }
            if last_tick.elapsed() >= Duration::from_millis(100) {
                last_tick = Instant::now();
                self.flows.tick();
            }
        }
        tracing::debug!(port = self.sub.port, "mirror stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// An IPv4 TCP packet from 198.19.0.1:40000 to 198.18.0.10:80.
    fn packet(seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let total = 20 + 20 + payload.len();
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[9] = 6;
        p[12..16].copy_from_slice(&[198, 19, 0, 1]);
        p[16..20].copy_from_slice(&[198, 18, 0, 10]);
        let t = &mut p[20..];
        t[0..2].copy_from_slice(&40000u16.to_be_bytes());
        t[2..4].copy_from_slice(&80u16.to_be_bytes());
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = flags;
        t[20..].copy_from_slice(payload);
        p
    }

    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;
    const FIN: u8 = 0x01;

    struct TestSink {
        stats: SubStats,
        opened: Vec<(SocketAddr, SocketAddr, UnixStream)>,
    }

    impl Sink for TestSink {
        fn open(&mut self, peer: SocketAddr, local: SocketAddr) -> Option<UnixStream> {
            let (a, b) = UnixStream::pair().unwrap();
            a.set_nonblocking(true).unwrap();
            self.opened.push((peer, local, b));
            Some(a)
        }
        fn stats(&self) -> &SubStats {
            &self.stats
        }
    }

    #[test]
    fn segments_parse() {
        let p = packet(7, ACK | FIN, b"hi");
        let s = parse(&p).unwrap();
        assert_eq!(s.src, "198.19.0.1:40000".parse().unwrap());
        assert_eq!(s.dst, "198.18.0.10:80".parse().unwrap());
        assert_eq!((s.seq, s.fin, s.syn, s.ack, s.payload), (7, true, false, true, &b"hi"[..]));
        assert!(parse(&p[..30]).is_none());
        let mut udp = p.clone();
        udp[9] = 17;
        assert!(parse(&udp).is_none());
    }

    #[test]
    fn streams_are_rebuilt_in_order_without_duplicates() {
        let sink = TestSink { stats: SubStats::default(), opened: Vec::new() };
        let mut r = Reassembler::new(80, sink);
        // Data of a connection whose SYN we never saw is ignored.
        r.segment(&parse(&packet(500, ACK, b"old")).unwrap());
        assert_eq!(r.flows(), 0);
        let isn = u32::MAX - 2; // sequence numbers wrap during the test
        r.segment(&parse(&packet(isn, SYN, b"")).unwrap());
        let base = isn.wrapping_add(1);
        r.segment(&parse(&packet(base, ACK, b"GET / HT")).unwrap());
        // Out of order, then a retransmission overlapping both.
        r.segment(&parse(&packet(base.wrapping_add(12), ACK, b"\r\n\r\n")).unwrap());
        r.segment(&parse(&packet(base.wrapping_add(4), ACK, b"/ HTTP/1")).unwrap());
        r.segment(&parse(&packet(base.wrapping_add(16), ACK | FIN, b"")).unwrap());
        assert_eq!(r.flows(), 0, "finished at the FIN");
        let (peer, local, mut s) = r.sink.opened.pop().unwrap();
        assert_eq!((peer.to_string(), local.to_string()), ("198.19.0.1:40000".into(), "198.18.0.10:80".into()));
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"GET / HTTP/1\r\n\r\n");
        assert_eq!(r.sink.stats.bytes_in.load(std::sync::atomic::Ordering::Relaxed), 16);
    }

    #[test]
    fn a_hole_that_never_fills_ends_the_copy() {
        let sink = TestSink { stats: SubStats::default(), opened: Vec::new() };
        let mut r = Reassembler::new(80, sink);
        r.segment(&parse(&packet(0, SYN, b"")).unwrap());
        r.segment(&parse(&packet(1, ACK, b"a")).unwrap());
        let chunk = vec![b'x'; 1400];
        let mut seq = 10u32;
        while seq < (MAX_OUT_OF_ORDER as u32) + 4000 {
            r.segment(&parse(&packet(seq, ACK, &chunk)).unwrap());
            seq += 1400;
        }
        assert_eq!(r.sink.stats.dropped.load(std::sync::atomic::Ordering::Relaxed), 1);
        let (_, _, mut s) = r.sink.opened.pop().unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"a", "the copy ends instead of skipping bytes");
    }

    #[test]
    fn the_filter_is_well_formed() {
        let f = filter(80);
        for (i, ins) in f.iter().enumerate() {
            if ins.code & 0x07 == 0x05 {
                assert!(i + 1 + (ins.jt as usize) < f.len() && i + 1 + (ins.jf as usize) < f.len(), "jump at {i}");
            }
        }
        // The port is compared in both families, and the program ends in accept / reject.
        assert_eq!(f.iter().filter(|i| i.code == 0x15 && i.k == 80).count(), 2);
        assert_eq!((f[f.len() - 2].k, f[f.len() - 1].k), (0x40000, 0));
    }

    /// Runs the filter in the kernel: a packet socket on loopback of a fresh network namespace
    /// sees a connection's data, SYN and FIN, and none of its pure acknowledgements, over IPv4
    /// and IPv6.
    #[test]
    fn the_kernel_runs_the_filter_and_drops_pure_acks() {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root (a network namespace)");
            return;
        }
        for ip in ["127.0.0.1", "::1"] {
            let seen = copied_segments(ip.parse().unwrap());
            assert!(seen.contains(&(true, false, 0)), "{ip}: the SYN: {seen:?}");
            assert!(seen.contains(&(false, false, 5)), "{ip}: the data: {seen:?}");
            assert!(seen.iter().any(|k| k.1), "{ip}: the FIN: {seen:?}");
            assert!(seen.iter().all(|k| k.0 || k.1 || k.2 > 0), "{ip}: no pure ACK: {seen:?}");
        }
    }

    /// (SYN, FIN, payload length) of what the filter let through for one short connection.
    fn copied_segments(ip: IpAddr) -> Vec<(bool, bool, usize)> {
        std::thread::spawn(move || {
            unsafe { assert_eq!(libc::unshare(libc::CLONE_NEWNET), 0) };
            std::process::Command::new("ip").args(["link", "set", "lo", "up"]).status().unwrap();
            let l = std::net::TcpListener::bind((ip, 0)).unwrap();
            let port = l.local_addr().unwrap().port();
            let sock = packet_socket(port).unwrap();
            let mut c = std::net::TcpStream::connect((ip, port)).unwrap();
            let (mut s, _) = l.accept().unwrap();
            c.write_all(b"hello").unwrap();
            let mut buf = [0u8; 5];
            std::io::Read::read_exact(&mut s, &mut buf).unwrap();
            s.write_all(b"answer").unwrap(); // acknowledged by a pure ACK to `port`
            std::io::Read::read_exact(&mut c, &mut [0u8; 6]).unwrap();
            drop(c);
            drop(s);
            std::thread::sleep(Duration::from_millis(50));
            let mut kinds = Vec::new();
            let mut pkt = [0u8; 2048];
            loop {
                let n = unsafe { libc::recv(sock.as_raw_fd(), pkt.as_mut_ptr().cast(), pkt.len(), libc::MSG_DONTWAIT) };
                if n <= 0 {
                    break;
                }
                let seg = parse(&pkt[..n as usize]).expect("a TCP segment");
                kinds.push((seg.syn, seg.fin, seg.payload.len()));
            }
            kinds
        })
        .join()
        .unwrap()
    }
}
