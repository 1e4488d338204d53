//! Kubernetes targets: `pod/NAME`, `deployment/NAME`, `statefulset/NAME` (each optionally
//! `/container/NAME`) and `targetless`, served by an agent in the cluster.
//!
//! The backend lives in [`crate::kube`]; this is its face at the seam: start an agent for a
//! target path in a namespace, and hand back something that holds it.

use tether_config::Config;
use tether_config::target::TargetPath;
use tokio::sync::mpsc::UnboundedSender;

use crate::kube::Source;
use crate::kube::start::KubeAgent;

/// Starts an agent for `path` in `namespace` (else `target.namespace`, else the kubeconfig
/// context's namespace) of the cluster `source` names: resolve, check permissions, create,
/// wait, port-forward, handshake.
pub async fn start(
    path: &TargetPath,
    namespace: Option<&str>,
    source: &Source,
    config: &Config,
    progress: Option<&UnboundedSender<String>>,
) -> anyhow::Result<KubeAgent> {
    crate::kube::start::start(path, namespace, source, config, progress).await
}
