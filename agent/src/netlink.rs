//! The few netlink pieces nftables needs: messages with nested attributes, and a socket that
//! sends a batch and waits for the kernel's answer to each of its messages.
//!
//! Netlink messages are a header (`nlmsghdr`: length, type, flags, sequence, port), a family
//! header (`nfgenmsg` for nfnetlink) and attributes (`nlattr`: length, type, value), each padded
//! to 4 bytes; an attribute may hold attributes (nested). Integers in nftables attributes are big
//! endian; the values rules compare with (a mark, an address type) are in the host's order, as
//! the kernel's registers hold them. [`Msg`] encodes; [`Socket`] talks to the kernel.
//!
//! Invariant: every request carries `NLM_F_ACK` and a sequence number of its own, so the
//! kernel answers each one (success or errno) and [`Socket::transact`] knows when it is done;
//! a read timeout bounds every wait.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket as RawSocket, Type};

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLA_F_NESTED: u16 = 0x8000;
const NETLINK_NETFILTER: i32 = 12;
const HEADER: usize = 16;

fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// One netlink message being built: header, nfnetlink family header, attributes.
#[derive(Clone, Debug)]
pub struct Msg {
    buf: Vec<u8>,
    /// Offsets of the nested attributes still open.
    open: Vec<usize>,
}

impl Msg {
    /// A message of `kind` with `flags` (`NLM_F_REQUEST` is added) for nfnetlink `family`,
    /// `res_id` in the family header (the subsystem, for batch messages).
    pub fn new(kind: u16, flags: u16, family: u8, res_id: u16) -> Msg {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by `finish`
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // sequence, set by `finish`
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel fills it in
        buf.extend_from_slice(&[family, 0]); // nfgen_family, version NFNETLINK_V0
        buf.extend_from_slice(&res_id.to_be_bytes());
        Msg { buf, open: Vec::new() }
    }

    fn attr_header(&mut self, kind: u16, len: usize) {
        self.buf.extend_from_slice(&((4 + len) as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
    }

    fn pad(&mut self) {
        self.buf.resize(align(self.buf.len()), 0);
    }

    /// An attribute holding `value` as it is.
    pub fn bytes(&mut self, kind: u16, value: &[u8]) -> &mut Msg {
        self.attr_header(kind, value.len());
        self.buf.extend_from_slice(value);
        self.pad();
        self
    }

    /// A NUL-terminated string.
    pub fn str(&mut self, kind: u16, value: &str) -> &mut Msg {
        let mut v = value.as_bytes().to_vec();
        v.push(0);
        self.bytes(kind, &v)
    }

    /// A big-endian `u32` (nftables' integers).
    pub fn u32(&mut self, kind: u16, value: u32) -> &mut Msg {
        self.bytes(kind, &value.to_be_bytes())
    }

    /// Opens a nested attribute; [`Msg::end`] closes it.
    pub fn nest(&mut self, kind: u16) -> &mut Msg {
        self.open.push(self.buf.len());
        self.attr_header(kind | NLA_F_NESTED, 0);
        self
    }

    /// Closes the innermost nested attribute.
    pub fn end(&mut self) -> &mut Msg {
        let start = self.open.pop().expect("end() matches a nest()");
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    /// The encoded message with its length and sequence number.
    pub fn finish(&self, seq: u32) -> Vec<u8> {
        assert!(self.open.is_empty(), "a nested attribute was left open");
        let mut out = self.buf.clone();
        let len = out.len() as u32;
        out[0..4].copy_from_slice(&len.to_ne_bytes());
        out[8..12].copy_from_slice(&seq.to_ne_bytes());
        out
    }
}

/// A message the kernel sent: its type and its payload after the family header.
#[derive(Debug, Clone)]
pub struct Reply {
    pub kind: u16,
    /// `nfgen_family` of the family header.
    pub family: u8,
    pub attrs: Vec<u8>,
}

/// The attributes of a payload, as `(type without flags, value)`.
pub fn attrs(mut payload: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while payload.len() >= 4 {
        let len = u16::from_ne_bytes([payload[0], payload[1]]) as usize;
        let kind = u16::from_ne_bytes([payload[2], payload[3]]) & 0x3fff;
        if len < 4 || len > payload.len() {
            break;
        }
        out.push((kind, &payload[4..len]));
        payload = &payload[align(len).min(payload.len())..];
    }
    out
}

/// A string attribute's value without its NUL.
pub fn attr_str(value: &[u8]) -> String {
    String::from_utf8_lossy(value.split(|b| *b == 0).next().unwrap_or(&[])).into_owned()
}

/// A netfilter netlink socket, made in the network namespace of the thread that creates it and
/// bound to that namespace for its life.
pub struct Socket {
    sock: RawSocket,
    seq: u32,
}

impl Socket {
    /// A socket in the calling thread's network namespace.
    pub fn new() -> io::Result<Socket> {
        let sock = RawSocket::new(
            Domain::from(libc::AF_NETLINK),
            Type::RAW.cloexec(),
            Some(Protocol::from(NETLINK_NETFILTER)),
        )
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open a netfilter netlink socket: {e}")))?;
        sock.set_read_timeout(Some(Duration::from_secs(5)))?;
        sock.set_recv_buffer_size(1 << 20)?;
        Ok(Socket { sock, seq: 0 })
    }

    /// A socket in the network namespace `netns` (an open `/proc/PID/ns/net`), made on a
    /// short-lived thread that enters it, so no other thread changes namespace.
    pub fn in_netns(netns: &OwnedFd) -> io::Result<Socket> {
        let raw = netns.as_raw_fd();
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: `raw` is an open namespace descriptor borrowed for the scope; setns only
                // changes this short-lived thread.
                if unsafe { libc::setns(raw, libc::CLONE_NEWNET) } != 0 {
                    let e = io::Error::last_os_error();
                    return Err(io::Error::new(e.kind(), format!("setns into the target's network namespace: {e}")));
                }
                Socket::new()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the netlink thread panicked")))
        })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Sends `msgs` in one datagram and waits for the kernel's answer to each (they must carry
    /// `NLM_F_ACK`; `batch_ends` is how many leading and trailing messages are batch markers,
    /// which the kernel does not acknowledge). The first errno the kernel reports is the error.
    pub fn transact(&mut self, msgs: &[Msg], batch_ends: bool) -> io::Result<()> {
        let mut out = Vec::new();
        let mut pending = Vec::new();
        let first = self.seq.wrapping_add(1);
        for (i, m) in msgs.iter().enumerate() {
            let seq = self.next_seq();
            let marker = batch_ends && (i == 0 || i == msgs.len() - 1);
            if !marker {
                pending.push(seq);
            }
            out.extend_from_slice(&m.finish(seq));
        }
        self.sock.send(&out)?;
        let mut failure: Option<io::Error> = None;
        while !pending.is_empty() {
            for msg in self.recv()? {
                if msg.kind != NLMSG_ERROR {
                    continue;
                }
                let (errno, seq) = msg.error;
                if !pending.contains(&seq) && seq != first {
                    continue; // an answer to an earlier request
                }
                pending.retain(|s| *s != seq);
                if errno != 0 && failure.is_none() {
                    failure = Some(io::Error::from_raw_os_error(-errno));
                }
                if seq == first && batch_ends {
                    // The batch itself was refused: nothing else will come.
                    pending.clear();
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// Sends a dump request and collects the kernel's messages up to `NLMSG_DONE`.
    pub fn dump(&mut self, msg: &Msg) -> io::Result<Vec<Reply>> {
        let seq = self.next_seq();
        self.sock.send(&msg.finish(seq))?;
        let mut replies = Vec::new();
        loop {
            for m in self.recv()? {
                if m.seq != seq {
                    continue;
                }
                match m.kind {
                    NLMSG_DONE => return Ok(replies),
                    NLMSG_ERROR if m.error.0 != 0 => return Err(io::Error::from_raw_os_error(-m.error.0)),
                    NLMSG_ERROR => return Ok(replies),
                    kind => replies.push(Reply {
                        kind,
                        family: m.payload.first().copied().unwrap_or(0),
                        attrs: m.payload.get(4..).unwrap_or(&[]).to_vec(),
                    }),
                }
            }
        }
    }

    /// One datagram from the kernel, split into messages.
    fn recv(&self) -> io::Result<Vec<Raw>> {
        let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); 1 << 16];
        let n = self.sock.recv(&mut buf).map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                io::Error::new(io::ErrorKind::TimedOut, "the kernel did not answer the netlink request within 5 s")
            }
            _ => e,
        })?;
        // SAFETY: `recv` initialised the first `n` bytes.
        let data: Vec<u8> = buf[..n].iter().map(|b| unsafe { b.assume_init() }).collect();
        Ok(split(&data))
    }
}

/// A received message: type, sequence, payload, and for `NLMSG_ERROR` (errno, the sequence
/// of the request it answers).
struct Raw {
    kind: u16,
    seq: u32,
    payload: Vec<u8>,
    error: (i32, u32),
}

fn split(mut data: &[u8]) -> Vec<Raw> {
    let mut out = Vec::new();
    while data.len() >= HEADER {
        let len = u32::from_ne_bytes(data[0..4].try_into().expect("4 bytes")) as usize;
        if len < HEADER || len > data.len() {
            break;
        }
        let kind = u16::from_ne_bytes([data[4], data[5]]);
        let seq = u32::from_ne_bytes(data[8..12].try_into().expect("4 bytes"));
        let payload = data[HEADER..len].to_vec();
        let mut error = (0, seq);
        if kind == NLMSG_ERROR && payload.len() >= 4 + HEADER {
            let errno = i32::from_ne_bytes(payload[0..4].try_into().expect("4 bytes"));
            let orig = u32::from_ne_bytes(payload[12..16].try_into().expect("4 bytes"));
            error = (errno, orig);
        }
        out.push(Raw { kind, seq, payload, error });
        data = &data[align(len).min(data.len())..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_their_length_sequence_and_padded_attributes() {
        let mut m = Msg::new(0x0a00, NLM_F_ACK, 1, 0);
        m.str(1, "t").u32(2, 0x0102_0304);
        let b = m.finish(7);
        let mut want = Vec::new();
        want.extend_from_slice(&36u32.to_ne_bytes());
        want.extend_from_slice(&0x0a00u16.to_ne_bytes());
        want.extend_from_slice(&5u16.to_ne_bytes()); // REQUEST | ACK
        want.extend_from_slice(&7u32.to_ne_bytes());
        want.extend_from_slice(&0u32.to_ne_bytes());
        want.extend_from_slice(&[1, 0, 0, 0]);
        want.extend_from_slice(&6u16.to_ne_bytes());
        want.extend_from_slice(&1u16.to_ne_bytes());
        want.extend_from_slice(b"t\0\0\0");
        want.extend_from_slice(&8u16.to_ne_bytes());
        want.extend_from_slice(&2u16.to_ne_bytes());
        want.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(b, want);
    }

    #[test]
    fn nested_attributes_carry_their_whole_length_and_the_nested_flag() {
        let mut m = Msg::new(1, 0, 0, 10);
        m.nest(4).nest(1).bytes(1, &[9, 9]).end().end();
        let b = m.finish(1);
        assert_eq!(&b[18..20], &10u16.to_be_bytes(), "res_id is big endian");
        let outer = &b[20..];
        assert_eq!(u16::from_ne_bytes([outer[0], outer[1]]), 4 + 4 + 8);
        assert_eq!(u16::from_ne_bytes([outer[2], outer[3]]), 4 | 0x8000);
        assert_eq!(u16::from_ne_bytes([outer[4], outer[5]]), 4 + 8);
        assert_eq!(&outer[8..16], &[6, 0, 1, 0, 9, 9, 0, 0]);
        let parsed = attrs(outer);
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].0, 4, "flags are masked off");
        assert_eq!(attrs(parsed[0].1)[0].0, 1);
    }

    #[test]
    fn replies_split_into_messages_and_errors_name_their_request() {
        let mut data = Vec::new();
        // NLMSG_ERROR answering seq 42 with -EPERM.
        data.extend_from_slice(&36u32.to_ne_bytes());
        data.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        data.extend_from_slice(&0u16.to_ne_bytes());
        data.extend_from_slice(&42u32.to_ne_bytes());
        data.extend_from_slice(&0u32.to_ne_bytes());
        data.extend_from_slice(&(-1i32).to_ne_bytes());
        data.extend_from_slice(&Msg::new(0x0a00, 0, 1, 0).finish(42)[..16]);
        data.extend_from_slice(&16u32.to_ne_bytes());
        data.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        data.extend_from_slice(&[0; 10]);
        let msgs = split(&data);
        assert_eq!(msgs.len(), 2);
        assert_eq!((msgs[0].kind, msgs[0].error), (NLMSG_ERROR, (-1, 42)));
        assert_eq!(msgs[1].kind, NLMSG_DONE);
        assert_eq!(attr_str(b"tether_1_2\0"), "tether_1_2");
    }
}
