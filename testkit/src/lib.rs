//! Test harness for Tether (DESIGN.md section 9).
//!
//! * [`PodSpec`] / [`Pod`]: a "local pod" on this machine — a network namespace with addresses
//!   from 198.18.0.0/15, a chroot root file system, a target process with its own environment,
//!   and services (HTTP, DNS, echo, sink) reachable only inside that namespace. Everything is
//!   torn down when the [`Pod`] drops, also when the test panics.
//! * [`programs`]: fixture programs (busybox, the Go probe built both ways, the C probe), built
//!   once and cached under `<target dir>/testkit-fixtures/`.
//! * [`elf`]: a tiny ELF64 reader that tells static from dynamic executables.
//! * [`dns`]: the pod's hand-written DNS responder (exposed for unit tests and reuse).
//! * [`cluster`]: a real single-node Kubernetes cluster (`cluster/up`), shared per test process.
//!
//! Everything here needs root (network namespaces, chroot, ports below 1024).
//!
//! ```no_run
//! use std::process::Command;
//! use tether_testkit::{PodSpec, programs};
//!
//! let pod = PodSpec::new("web")
//!     .env("DB_URL", "postgres://db:5432")
//!     .file("/app/config.json", r#"{"debug":true}"#)
//!     .copy_file(programs::go_probe_static()?, "/bin/goprobe")
//!     .start()?;
//! // The target: pid `pod.pid`, root `/proc/<pid>/root` == `pod.root`.
//! // Host programs inside the pod's network namespace:
//! let out = pod.exec_in_netns(Command::new("curl").args(["-s", "http://198.18.0.10/"])).output()?;
//! // Programs inside the pod (namespace + chroot: the pod's resolv.conf and hosts):
//! let out = pod.exec_in_pod(Command::new("/bin/goprobe").args(["resolve", "web"])).output()?;
//! assert!(pod.dns_queries() > 0);
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! Never connect to 198.18.0.0/15 from the host namespace: the host may route it elsewhere.
//! Use [`Pod::exec_in_netns`], [`Pod::exec_in_pod`] or [`Pod::run_in_netns`].

pub mod client;
pub mod cluster;
pub mod dns;
pub mod elf;
#[cfg(feature = "kube")]
pub mod kube;
mod netns;
mod pod;
pub mod programs;
mod services;

pub use client::{CLIENT_IP, ClientNetns, POD_LINK_IP};
pub use netns::{cleanup_stale_pods, command_in_netns, netns_exists, run_in_netns_path};
pub use pod::{DNS_ADDR, DNS_IP, ECHO_ADDR, ECHO_IP, HTTP_ADDR, HTTP_IP, POD_IP, Pod, PodSpec, SINK_ADDR, SINK_IP};
