//! A client outside a pod: a second network namespace joined to the pod's by a veth pair, so
//! traffic to the pod's addresses arrives on an interface of the pod the way cluster traffic
//! would (through `prerouting`, not the pod's loopback).
//!
//! ```text
//!  client netns                           pod netns
//!  eth0 198.19.0.1/24  <── veth ──>  tcliN 198.19.0.2/24
//!  route 198.18.0.0/24 via 198.19.0.2      (198.18.0.x: the pod's own addresses)
//! ```

use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};

use crate::Pod;
use crate::netns::{self, POD_PREFIX};

/// The client's address.
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
/// The pod's address on the client's link.
pub const POD_LINK_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The client namespace; deleted (with the veth pair and any process inside) on drop.
pub struct ClientNetns {
    /// Its `ip netns` name (`tether-pod-<pod>-client-<pid>-<n>`, so stale ones are swept
    /// like pods).
    pub name: String,
    pub ip: Ipv4Addr,
}

impl Pod {
    /// A client namespace linked to this pod (one per pod: the link addresses are fixed).
    pub fn client_netns(&self) -> Result<ClientNetns> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{POD_PREFIX}{}-client-{}-{n}", self.name, std::process::id());
        netns::ip(&["netns", "add", &name])?;
        let client = ClientNetns { name: name.clone(), ip: CLIENT_IP };
        let pod_if = format!("tcli{n}");
        netns::ip(&["-n", &name, "link", "add", "eth0", "type", "veth", "peer", "name", &pod_if, "netns", &self.netns])
            .context("creating the veth pair between the client and the pod")?;
        netns::ip_batch(
            &name,
            &[
                "link set lo up".into(),
                "link set eth0 up".into(),
                format!("addr add {CLIENT_IP}/24 dev eth0"),
                format!("route add 198.18.0.0/24 via {POD_LINK_IP}"),
            ],
        )?;
        netns::ip_batch(
            &self.netns,
            &[format!("addr add {POD_LINK_IP}/24 dev {pod_if}"), format!("link set {pod_if} up")],
        )?;
        Ok(client)
    }
}

impl ClientNetns {
    pub fn path(&self) -> PathBuf {
        netns::netns_path(&self.name)
    }

    /// Runs `f` on a thread inside the client namespace (sockets it makes stay there).
    pub fn run<T: Send, F: FnOnce() -> T + Send>(&self, f: F) -> Result<T> {
        netns::run_in_netns_path(&self.path(), f)
    }

    /// Makes `cmd` run inside the client namespace.
    pub fn exec<'c>(&self, cmd: &'c mut Command) -> Result<&'c mut Command> {
        let fd = std::sync::Arc::new(netns::open_ns(&self.path())?);
        // SAFETY: setns is async-signal-safe; the Arc keeps the descriptor open.
        Ok(unsafe { cmd.pre_exec(move || netns::setns_net(std::os::fd::AsRawFd::as_raw_fd(&*fd))) })
    }
}

impl Drop for ClientNetns {
    fn drop(&mut self) {
        if let Err(e) = netns::delete_netns(&self.name) {
            eprintln!("tether-testkit: {e:#}");
        }
    }
}
