//! Wire contracts shared by the daemon, the agent and the layer.
//!
//! - [`agent`]: the daemon <-> agent gRPC protocol, generated from `schemas/agent.proto`.
//! - [`fdpass`]: the local fast path on which an agent that runs on the daemon's host hands over
//!   sockets it connected inside the target's network namespace.
//! - [`env`](mod@env): the names of the environment variables tether sets in launched processes.
//!
//! Nothing here does I/O beyond the small, blocking helpers of `fdpass`.

pub mod fdpass;

/// The daemon <-> agent protocol (see `schemas/agent.proto`).
pub mod agent {
    tonic::include_proto!("tether.agent.v1");

    /// Bumped on incompatible changes; a peer with another major version is refused.
    pub const PROTOCOL_MAJOR: u32 = 1;
    /// Bumped on compatible additions.
    pub const PROTOCOL_MINOR: u32 = 1;
    /// Capability: the agent hands over sockets on a local Unix socket (`HelloReply.fd_socket`).
    pub const CAP_FD_PASSING: &str = "fd-passing";
    /// Capability: relayed outgoing connections (`OpenConnection`).
    pub const CAP_CONNECT_RELAY: &str = "connect-relay";
    /// Capability: write-through for `feature.fs.mode: write`.
    pub const CAP_WRITE: &str = "write";
    /// Capability: incoming traffic (`Subscribe`, `AcceptIncoming`; on the fd socket too).
    pub const CAP_INCOMING: &str = "incoming";
    /// The metadata key that carries `Bearer <token>`.
    pub const AUTH_HEADER: &str = "authorization";
}

/// Environment variables that tether sets or reads.
pub mod env {
    /// The agent's token (read by `tether-agent`, never passed in argv).
    pub const AGENT_TOKEN: &str = "TETHER_AGENT_TOKEN";
    /// The daemon socket a bootstrapping process connects to.
    pub const SOCKET: &str = "TETHER_SOCKET";
    /// The session a launched process belongs to.
    pub const SESSION: &str = "TETHER_SESSION";
    /// The secret that proves the process was launched for that session.
    pub const SESSION_TOKEN: &str = "TETHER_SESSION_TOKEN";
    /// When set to `0`, a failed bootstrap lets the process run un-intercepted (with a warning)
    /// instead of stopping it.
    pub const REQUIRE: &str = "TETHER_REQUIRE";
}
