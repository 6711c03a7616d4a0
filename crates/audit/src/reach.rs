//! What a peer reaches of a host's ports: libvirt's TCP port should not answer once TLS is
//! on, its TLS port and QEMU's migration ports must (a firewall between compute hosts that
//! drops them breaks live migration). Pure: the caller asks the peer and hands the answers in.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use crate::{settings, truthy, Finding, Observed, Repeated, Severity};

/// How the peer reached a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Something accepted the connection.
    Open,
    /// Refused: nothing listens, the path is open.
    Closed,
    /// No answer in time: dropped on the way.
    Filtered,
}

/// The ports a peer is asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports {
    pub tcp: u16,
    pub tls: u16,
    /// QEMU's live migration ports (libvirt's `migration_port_min`..`max`).
    pub migration: RangeInclusive<u16>,
}

impl Ports {
    pub fn all(&self) -> Vec<u16> {
        let mut ports = vec![self.tcp, self.tls];
        ports.extend(self.migration.clone());
        ports.sort_unstable();
        ports.dedup();
        ports
    }
}

/// Findings from `from`'s view of the host's ports, against what the host's libvirtd.conf
/// says it listens on.
pub fn findings(
    seen: &Observed,
    ports: &Ports,
    from: &str,
    reach: &BTreeMap<u16, Reach>,
) -> Vec<Finding> {
    let Some((_, text)) = seen.files.get("libvirtd") else {
        return Vec::new();
    };
    let conf = settings(text, None, Repeated::FirstWins);
    let on = |key: &str, default: &str| truthy(conf.get(key).map_or(default, |s| &s.value));
    let (tls, tcp) = (on("listen_tls", "1"), on("listen_tcp", "0"));
    let mut out = Vec::new();
    let state = |port: u16| reach.get(&port).copied();
    if tls && !tcp && state(ports.tcp) == Some(Reach::Open) {
        out.push(Finding {
            id: "PORT-TCP-REACHABLE",
            severity: Severity::High,
            evidence: format!(
                "{from} connects to port {} although libvirtd.conf turns TCP off (another \
                 listener: socket activation, a second daemon?)",
                ports.tcp
            ),
        });
    }
    if tls && matches!(state(ports.tls), Some(Reach::Closed | Reach::Filtered)) {
        let how = match state(ports.tls) {
            Some(Reach::Filtered) => "gets no answer from (a firewall drops it)",
            _ => "is refused on (nothing listens)",
        };
        out.push(Finding {
            id: "PORT-TLS-UNREACHABLE",
            severity: Severity::High,
            evidence: format!("{from} {how} libvirt's TLS port {}", ports.tls),
        });
    }
    let blocked: Vec<u16> = ports
        .migration
        .clone()
        .filter(|p| state(*p) == Some(Reach::Filtered))
        .collect();
    if !blocked.is_empty() {
        out.push(Finding {
            id: "PORT-MIGRATION-BLOCKED",
            severity: Severity::Medium,
            evidence: format!(
                "{from} gets no answer on {} of QEMU's migration ports {}-{} ({}): live \
                 migrations to this host fail when QEMU listens there",
                blocked.len(),
                ports.migration.start(),
                ports.migration.end(),
                ranges(&blocked)
            ),
        });
    }
    out
}

/// `49152-49160, 49170` for sorted ports.
fn ranges(ports: &[u16]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ports.len() {
        let mut j = i;
        while j + 1 < ports.len() && ports[j + 1] == ports[j] + 1 {
            j += 1;
        }
        parts.push(match i == j {
            true => ports[i].to_string(),
            false => format!("{}-{}", ports[i], ports[j]),
        });
        i = j + 1;
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(libvirtd: &str) -> BTreeMap<String, (String, String)> {
        [(
            "libvirtd".to_string(),
            ("/l.conf".to_string(), libvirtd.to_string()),
        )]
        .into()
    }

    #[test]
    fn a_peer_sees_what_the_host_should_and_should_not_answer() {
        let ports = Ports {
            tcp: 16509,
            tls: 16514,
            migration: 49152..=49215,
        };
        assert_eq!(ports.all().len(), 66);
        let tls_only = seen("listen_tls = 1\nlisten_tcp = 0\n");
        let observed = Observed {
            files: &tls_only,
            certs: None,
            cert_sets: &[],
            tcp_probe: None,
        };
        let mut reach: BTreeMap<u16, Reach> = ports
            .all()
            .into_iter()
            .map(|p| (p, Reach::Closed))
            .collect();
        reach.insert(16514, Reach::Open);
        assert!(findings(&observed, &ports, "peer", &reach).is_empty());

        reach.insert(16509, Reach::Open);
        reach.insert(16514, Reach::Filtered);
        for p in [49152, 49153, 49154, 49200] {
            reach.insert(p, Reach::Filtered);
        }
        let ids: Vec<(&str, String)> = findings(&observed, &ports, "peer", &reach)
            .into_iter()
            .map(|f| (f.id, f.evidence))
            .collect();
        assert_eq!(ids[0].0, "PORT-TCP-REACHABLE");
        assert_eq!(ids[1].0, "PORT-TLS-UNREACHABLE");
        assert!(ids[1].1.contains("firewall"), "{}", ids[1].1);
        assert_eq!(ids[2].0, "PORT-MIGRATION-BLOCKED");
        assert!(ids[2].1.contains("4 of") && ids[2].1.contains("(49152-49154, 49200)"));

        // A host on TCP: its TCP port answering is the config findings' business.
        let tcp = seen("listen_tls = 0\nlisten_tcp = 1\n");
        let observed = Observed {
            files: &tcp,
            certs: None,
            cert_sets: &[],
            tcp_probe: None,
        };
        let ids: Vec<&str> = findings(&observed, &ports, "peer", &reach)
            .iter()
            .map(|f| f.id)
            .collect();
        assert_eq!(ids, ["PORT-MIGRATION-BLOCKED"]);
    }
}
