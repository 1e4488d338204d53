//! Outgoing connections: `connect`, and `sendto`/`sendmsg` with a destination.
//!
//! When the rules send a destination to the target, the program's socket is swapped for a twin
//! that the agent created inside the target's network namespace (same family and type, the
//! program's file status flags and common options copied), and the kernel then runs the
//! program's own call on the twin (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`). Blocking and
//! non-blocking `connect`, `EINPROGRESS`, timeouts, signals and `getpeername` therefore behave
//! exactly as the kernel makes them, and the data path is a direct socket: no relay.
//!
//! This needs an agent on this host (the `fd-passing` capability); for remote agents
//! (Kubernetes) `relay.rs` carries the bytes over the agent's `OpenConnection` stream instead.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use tether_config::net::{NetRoute, Proto};

use super::notify::Slot;
use super::{Answer, Call, Stats, memory, proc};

const SIOCGSKNS: libc::c_ulong = 0x894C;

/// Parses a `sockaddr` of the internet families.
fn sockaddr(bytes: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes(bytes.get(0..2)?.try_into().ok()?) as i32;
    let port = u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?);
    match family {
        libc::AF_INET => {
            let ip: [u8; 4] = bytes.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
        }
        libc::AF_INET6 => {
            let ip: [u8; 16] = bytes.get(8..24)?.try_into().ok()?;
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
        }
        _ => None,
    }
}

fn getsockopt_int(fd: RawFd, level: i32, name: i32) -> Option<i32> {
    let mut v: i32 = 0;
    let mut len = size_of::<i32>() as libc::socklen_t;
    let r = unsafe { libc::getsockopt(fd, level, name, (&mut v as *mut i32).cast(), &mut len) };
    (r == 0).then_some(v)
}

fn setsockopt_int(fd: RawFd, level: i32, name: i32, v: i32) {
    unsafe { libc::setsockopt(fd, level, name, (&v as *const i32).cast(), size_of::<i32>() as libc::socklen_t) };
}

/// The inode of the network namespace a socket lives in.
fn netns_inode(sock: RawFd) -> Option<u64> {
    let ns = unsafe { libc::ioctl(sock, SIOCGSKNS) };
    if ns < 0 {
        return None;
    }
    let ns = unsafe { OwnedFd::from_raw_fd(ns) };
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    (unsafe { libc::fstat(ns.as_raw_fd(), &mut st) } == 0).then_some(st.st_ino)
}

impl Call {
    pub(super) fn connect(self) {
        let a = self.n.args;
        self.outgoing(a[0] as RawFd, a[1], a[2] as usize, false)
    }

    pub(super) fn sendto(self) {
        let a = self.n.args;
        self.outgoing(a[0] as RawFd, a[4], a[5] as usize, true)
    }

    pub(super) fn sendmsg(self) {
        let a = self.n.args;
        // struct msghdr starts with { void *msg_name; socklen_t msg_namelen; ... }
        let Ok(head) = memory::read(self.n.tid, a[1], 12) else {
            return self.answer(Answer::Continue); // let the kernel report the bad pointer
        };
        let name = u64::from_ne_bytes(head[0..8].try_into().unwrap());
        let len = u32::from_ne_bytes(head[8..12].try_into().unwrap()) as usize;
        if name == 0 {
            return self.answer(Answer::Continue);
        }
        self.outgoing(a[0] as RawFd, name, len, true)
    }

    /// Decides a destination and swaps the socket when it goes to the target.
    fn outgoing(self, fd: RawFd, addr: u64, len: usize, datagram_only: bool) {
        let Ok(raw) = memory::read(self.n.tid, addr, len.clamp(2, 128)) else {
            return self.answer(Answer::Continue);
        };
        let Some(dest) = sockaddr(&raw) else { return self.answer(Answer::Continue) };
        let rules = &self.scope.outgoing;
        let tcp = rules.decide(Proto::Tcp, dest).route == NetRoute::Remote;
        let udp = rules.decide(Proto::Udp, dest).route == NetRoute::Remote;
        if !tcp && !udp {
            return self.answer(Answer::Continue);
        }
        let scope = self.scope.clone();
        if !self.scope.agent.can_pass_fds() {
            // [kube] No agent on this host (no fd-passing): relay over OpenConnection (relay.rs).
            return self.relay_outgoing(fd, dest, tcp, udp, datagram_only);
        }
        let rt = scope.rt.clone();
        rt.spawn_blocking(move || {
            let answer = self.swap(fd, dest, tcp, udp, datagram_only).unwrap_or_else(|e| {
                self.scope.stats.error(format!("outgoing {dest}: {e}"));
                Answer::Errno(e.raw_os_error().unwrap_or(libc::EIO))
            });
            self.answer(answer);
        });
    }

    fn swap(&self, fd: RawFd, dest: SocketAddr, tcp: bool, udp: bool, datagram_only: bool) -> io::Result<Answer> {
        let tid = self.n.tid;
        let theirs = match proc::take_fd(tid, fd) {
            Ok(s) => s,
            Err(_) => return Ok(Answer::Continue), // not a descriptor: the kernel says EBADF
        };
        let s = theirs.as_raw_fd();
        let (Some(ty), Some(domain)) =
            (getsockopt_int(s, libc::SOL_SOCKET, libc::SO_TYPE), getsockopt_int(s, libc::SOL_SOCKET, libc::SO_DOMAIN))
        else {
            return Ok(Answer::Continue); // not a socket: ENOTSOCK from the kernel
        };
        let is_udp = ty == libc::SOCK_DGRAM;
        let wanted = if is_udp { udp } else { ty == libc::SOCK_STREAM && tcp && !datagram_only };
        if !wanted || (domain != libc::AF_INET && domain != libc::AF_INET6) {
            return Ok(Answer::Continue);
        }
        if netns_inode(s) == Some(self.scope.agent.hello.netns_inode) {
            return Ok(Answer::Continue); // already a socket of the target's network
        }
        let twin = self.scope.agent.socket(is_udp, domain == libc::AF_INET6)?;
        let t = twin.as_raw_fd();
        let status = unsafe { libc::fcntl(s, libc::F_GETFL) };
        if status >= 0 {
            unsafe { libc::fcntl(t, libc::F_SETFL, status) };
        }
        let mut options = vec![(libc::SOL_SOCKET, libc::SO_KEEPALIVE), (libc::SOL_SOCKET, libc::SO_BROADCAST)];
        if !is_udp {
            options.push((libc::IPPROTO_TCP, libc::TCP_NODELAY));
        }
        if domain == libc::AF_INET6 {
            options.push((libc::IPPROTO_IPV6, libc::IPV6_V6ONLY));
        }
        for (level, name) in options {
            if let Some(v) = getsockopt_int(s, level, name) {
                setsockopt_int(t, level, name, v);
            }
        }
        let cloexec = proc::is_cloexec(tid, fd);
        if !self.listener.is_valid(self.n.id) {
            return Ok(Answer::Continue);
        }
        self.listener.inject(self.n.id, t, Slot::At(fd), cloexec)?;
        Stats::count(&self.scope.stats.connections);
        if is_udp && dest.port() == 53 {
            Stats::count(&self.scope.stats.dns_lookups);
        }
        tracing::debug!(%dest, udp = is_udp, "socket moved into the target's network");
        Ok(Answer::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddrs_of_both_families_parse() {
        let mut v4 = [0u8; 16];
        v4[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        v4[2..4].copy_from_slice(&53u16.to_be_bytes());
        v4[4..8].copy_from_slice(&[198, 18, 0, 53]);
        assert_eq!(sockaddr(&v4), Some("198.18.0.53:53".parse().unwrap()));
        let mut v6 = [0u8; 28];
        v6[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        v6[2..4].copy_from_slice(&80u16.to_be_bytes());
        v6[23] = 1;
        assert_eq!(sockaddr(&v6), Some("[::1]:80".parse().unwrap()));
        let mut unix = [0u8; 16];
        unix[0..2].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
        assert_eq!(sockaddr(&unix), None);
        assert_eq!(sockaddr(&v4[..6]), None);
    }
}
