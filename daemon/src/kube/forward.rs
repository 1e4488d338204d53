//! Reaching the agent through the API server's port-forward (WebSocket, kube's `ws` feature).
//!
//! A loopback listener stands for the agent: every connection to it opens its own port-forward
//! to the agent's pod and port, and bytes are copied both ways. The daemon's gRPC client
//! connects to the listener as it would to a local agent, so one code path serves both kinds
//! (its HTTP/2 keep-alive pings also keep the port-forward from idling out). Only the daemon
//! connects to it, and the agent still demands the session token.
//!
//! The forward turns unhealthy once a port-forward fails after the agent was reached (the pod
//! or the agent is gone): [`Forward::healthy`] is then false and the daemon starts a new agent
//! for the next session.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct State {
    /// Set once the agent answered through the forward.
    reached: AtomicBool,
    failed: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl State {
    fn error(&self, message: String) {
        tracing::debug!("port-forward: {message}");
        if self.reached.load(Ordering::SeqCst) {
            self.failed.store(true, Ordering::SeqCst);
        }
        *self.last_error.lock().unwrap() = Some(message);
    }
}

/// A local stand-in for the agent's port.
pub struct Forward {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Forward {
    /// Listens on loopback and forwards every connection to `pod`:`port`.
    pub async fn start(pods: Api<Pod>, pod: String, port: u16) -> std::io::Result<Forward> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let task = tokio::spawn({
            let state = state.clone();
            async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else { continue };
                    tokio::spawn(bridge(pods.clone(), pod.clone(), port, tcp, state.clone()));
                }
            }
        });
        Ok(Forward { addr, state, task })
    }

    /// The agent answered through this forward: later failures mean it is gone.
    pub fn mark_reached(&self) {
        self.state.reached.store(true, Ordering::SeqCst);
    }

    pub fn healthy(&self) -> bool {
        !self.state.failed.load(Ordering::SeqCst)
    }

    /// What the last failed port-forward said (e.g. `connection refused`).
    pub fn last_error(&self) -> Option<String> {
        self.state.last_error.lock().unwrap().clone()
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn bridge(pods: Api<Pod>, pod: String, port: u16, mut tcp: TcpStream, state: Arc<State>) {
    let _ = tcp.set_nodelay(true);
    let mut pf = match pods.portforward(&pod, &[port]).await {
        Ok(pf) => pf,
        Err(e) => {
            return state.error(format!("opening a port-forward to pod {pod} port {port}: {}", super::describe(&e)));
        }
    };
    let Some(mut upstream) = pf.take_stream(port) else {
        return state.error("the port-forward has no stream".into());
    };
    if let Some(errors) = pf.take_error(port) {
        let state = state.clone();
        tokio::spawn(async move {
            if let Some(message) = errors.await {
                state.error(message);
            }
        });
    }
    let _ = tokio::io::copy_bidirectional(&mut tcp, &mut upstream).await;
    drop(upstream);
    pf.abort();
}
