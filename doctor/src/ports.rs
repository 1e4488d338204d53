//! Incoming traffic on a port the target does not serve.
//!
//! Incoming traffic is mirrored or stolen per port: the program listening on port P gets the
//! traffic of the target's port P, or of the port `feature.network.incoming.port_mapping`
//! maps P to. A program that listens on 3000 while the target serves 8080 gets nothing, and
//! nothing says so. The daemon calls [`port_diagnostic`] when an intercepted program starts
//! listening, and pushes the result to the editors.

use serde_json::json;
use tether_config::{Config, IncomingMode};

use crate::{Diagnostic, Fix, Severity};

/// Ports the debuggers' own servers listen on inside the program (Node's inspector, debugpy):
/// never the service's port, so never worth a diagnostic.
pub const DEBUGGER_PORTS: [u16; 2] = [9229, 5678];

/// The `port-not-served` diagnostic for a program that listens on `listen_port`, when the
/// target (serving `target_ports`) sends it nothing; `None` when traffic will arrive (or the
/// user asked for none).
pub fn port_diagnostic(listen_port: u16, target_ports: &[u16], config: &Config) -> Option<Diagnostic> {
    let incoming = &config.feature.network.incoming;
    if incoming.mode == IncomingMode::Off
        || listen_port == 0
        || DEBUGGER_PORTS.contains(&listen_port)
        || incoming.port_mapping.iter().any(|m| m.local == listen_port)
        || target_ports.contains(&listen_port)
        || incoming.ignore_ports.contains(&listen_port)
    {
        return None;
    }
    let mut ports: Vec<u16> = target_ports.to_vec();
    ports.sort_unstable();
    ports.dedup();
    if ports.is_empty() {
        return Some(Diagnostic::new(
            "port-not-served",
            Severity::Warning,
            format!(
                "the program listens on port {listen_port}, but the target serves no ports: no incoming traffic will reach it"
            ),
        ));
    }
    let listed = ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
    // The target's ports no mapping takes yet (and that are not ignored) are the candidates.
    let free: Vec<u16> = ports
        .iter()
        .copied()
        .filter(|p| !incoming.port_mapping.iter().any(|m| m.remote == *p))
        .filter(|p| !incoming.ignore_ports.contains(p))
        .collect();
    let message = format!(
        "the program listens on port {listen_port}, which the target does not serve (it serves {listed}): no incoming traffic will reach it"
    );
    let fix = match free.first() {
        Some(&remote) => {
            let others = if free.len() > 1 { format!(" (or another of {listed})") } else { String::new() };
            Fix::manual(
                format!(
                    "add [{listen_port}, {remote}] to `feature.network.incoming.port_mapping`{others}, or make the program listen on {remote}"
                ),
                Some(json!({"feature.network.incoming.port_mapping": [[listen_port, remote]]})),
            )
        }
        None => Fix::manual(
            format!(
                "every port of the target is already mapped; change a `feature.network.incoming.port_mapping` entry to [{listen_port}, PORT], or make the program listen on one of {listed}"
            ),
            None,
        ),
    };
    Some(Diagnostic::new("port-not-served", Severity::Warning, message).with_fix(fix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_config::PortMapping;

    fn cfg(mappings: &[(u16, u16)], mode: IncomingMode) -> Config {
        let mut c = Config::default();
        c.feature.network.incoming.mode = mode;
        c.feature.network.incoming.port_mapping =
            mappings.iter().map(|&(local, remote)| PortMapping { local, remote }).collect();
        c
    }

    #[test]
    fn served_or_mapped_ports_are_fine() {
        let c = cfg(&[(3000, 8080)], IncomingMode::Mirror);
        assert_eq!(port_diagnostic(8080, &[8080, 9090], &c), None);
        assert_eq!(port_diagnostic(3000, &[8080], &c), None);
        assert_eq!(port_diagnostic(9229, &[8080], &c), None, "node inspector");
        assert_eq!(port_diagnostic(4000, &[8080], &cfg(&[], IncomingMode::Off)), None);
    }

    #[test]
    fn unserved_port_names_the_targets_ports_and_the_mapping() {
        let d = port_diagnostic(3000, &[8080], &cfg(&[], IncomingMode::Steal)).unwrap();
        assert_eq!(d.id, "port-not-served");
        assert_eq!(d.severity, Severity::Warning);
        assert!(d.message.contains("3000") && d.message.contains("serves 8080"), "{}", d.message);
        let fix = d.fix.unwrap();
        assert!(!fix.applied);
        assert_eq!(fix.edit, Some(json!({"feature.network.incoming.port_mapping": [[3000, 8080]]})));
    }

    #[test]
    fn suggests_a_port_no_mapping_takes_yet() {
        let c = cfg(&[(3000, 8080)], IncomingMode::Mirror);
        let d = port_diagnostic(4000, &[9090, 8080, 8080], &c).unwrap();
        assert!(d.message.contains("serves 8080, 9090"), "{}", d.message);
        assert_eq!(d.fix.unwrap().edit, Some(json!({"feature.network.incoming.port_mapping": [[4000, 9090]]})));
        let all_mapped = port_diagnostic(4000, &[8080], &c).unwrap();
        assert_eq!(all_mapped.fix.as_ref().unwrap().edit, None);
        assert!(all_mapped.fix.unwrap().description.contains("already mapped"));
    }

    #[test]
    fn target_without_ports() {
        let d = port_diagnostic(3000, &[], &Config::default()).unwrap();
        assert!(d.message.contains("serves no ports"));
    }
}
