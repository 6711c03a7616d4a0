//! OSSN-0007 audit of one host: what its libvirtd, SASL and nova settings allow, and what an
//! unauthenticated peer actually gets from its libvirt port. Pure apart from the live probe
//! (`rpc`): the caller reads the files (one round trip) and hands them in.

mod certs;
pub mod reach;

pub mod rpc;

use std::collections::BTreeMap;

use serde::Serialize;

pub use certs::{CertsSeen, SeenFile};
pub use rpc::Answer;
pub use virtfleet_plan::conf::{settings, truthy, Repeated, Setting};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn parse(text: &str) -> Option<Severity> {
        match text {
            "low" => Some(Severity::Low),
            "medium" => Some(Severity::Medium),
            "high" => Some(Severity::High),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable identifier, e.g. `LIBVIRT-TCP-NOAUTH`.
    pub id: &'static str,
    pub severity: Severity,
    /// `file:line: setting`, or what the probe observed.
    pub evidence: String,
}

/// What was read on one host (kind → path and text; kinds: `libvirtd`, `sasl`, `nova`), its
/// TLS files, and what the live probe of its unencrypted libvirt port answered.
pub struct Observed<'a> {
    pub files: &'a BTreeMap<String, (String, String)>,
    pub certs: Option<&'a CertsSeen<'a>>,
    /// More certificate sets the host holds (QEMU's own pairs), by name.
    pub cert_sets: &'a [(&'a str, CertsSeen<'a>)],
    pub tcp_probe: Option<&'a Answer>,
}

/// Whether the host's nova asks for QEMU-native TLS (`[libvirt] live_migration_with_native_tls`,
/// off by default); None without a nova.conf.
pub fn native_tls(seen: &Observed) -> Option<bool> {
    let (_, text) = seen.files.get("nova")?;
    let nova = settings(text, Some("libvirt"), Repeated::LastWins);
    Some(
        nova.get("live_migration_with_native_tls")
            .is_some_and(|s| truthy(&s.value)),
    )
}

/// Findings only the fleet as a whole shows, per host: QEMU-native TLS on for some hosts and
/// off for others. A migration between the two kinds either fails (a destination whose QEMU
/// has no certificates) or goes unencrypted, so every host of a mixed fleet is told.
pub fn fleet_findings(native_tls: &BTreeMap<String, bool>) -> BTreeMap<String, Finding> {
    let (on, off): (Vec<&str>, Vec<&str>) = native_tls
        .keys()
        .map(String::as_str)
        .partition(|host| native_tls[*host]);
    if on.is_empty() || off.is_empty() {
        return BTreeMap::new();
    }
    let list = |hosts: &[&str]| {
        let shown: Vec<&str> = hosts.iter().take(5).copied().collect();
        match hosts.len() > shown.len() {
            true => format!(
                "{} and {} more",
                shown.join(", "),
                hosts.len() - shown.len()
            ),
            false => shown.join(", "),
        }
    };
    let finding = |here: &str, others: &[&str], there: &str| Finding {
        id: "NOVA-NATIVE-TLS-MIXED",
        severity: Severity::Medium,
        evidence: format!(
            "nova.conf: live_migration_with_native_tls {here} here, {there} on {}",
            list(others)
        ),
    };
    let mut findings = BTreeMap::new();
    for host in &on {
        findings.insert(host.to_string(), finding("on", &off, "off"));
    }
    for host in &off {
        findings.insert(host.to_string(), finding("off", &on, "on"));
    }
    findings
}

/// Every finding for one host, most severe first.
pub fn audit(seen: &Observed) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut add = |id, severity, evidence: String| {
        let finding = Finding {
            id,
            severity,
            evidence,
        };
        // The sets share their CA file with the main set: its findings once.
        if !findings.contains(&finding) {
            findings.push(finding);
        }
    };
    let get = |kind: &str, section: Option<&str>| {
        seen.files.get(kind).map(|(path, text)| {
            let repeated = match kind {
                "nova" => Repeated::LastWins,
                "sasl" => Repeated::Sasl,
                _ => Repeated::FirstWins,
            };
            (path.clone(), settings(text, section, repeated))
        })
    };

    // A file the reader below cannot read as libvirt or Cyrus SASL does (`;`, a lone carriage
    // return, `"""`): its findings could miss a setting in force.
    for kind in ["libvirtd", "sasl"] {
        if let Some((path, text)) = seen.files.get(kind) {
            if let Err(why) = virtfleet_plan::conf_readable(text) {
                add(
                    "CONF-UNREADABLE",
                    Severity::High,
                    format!("{path}: {why}: what libvirt reads from it is not known"),
                );
            }
        }
    }

    match get("libvirtd", None) {
        None => add(
            "LIBVIRT-CONF-MISSING",
            Severity::Low,
            "no libvirtd.conf found at the playbook's audit paths".into(),
        ),
        Some((path, conf)) => {
            let at = |key: &str| {
                conf.get(key)
                    .map(|s| format!("{path}:{}: {key} = \"{}\"", s.line, s.value))
            };
            let value = |key: &str, default: &str| {
                conf.get(key)
                    .map_or(default.to_string(), |s| s.value.clone())
            };
            // libvirt's defaults (with --listen): TLS on, TCP off, auth_tcp sasl, auth_tls none.
            let tcp = truthy(&value("listen_tcp", "0"));
            let tls = truthy(&value("listen_tls", "1"));
            if tcp && value("auth_tcp", "sasl") == "none" {
                add(
                    "LIBVIRT-TCP-NOAUTH",
                    Severity::Critical,
                    format!(
                        "{}; {}",
                        at("listen_tcp").unwrap_or_default(),
                        at("auth_tcp").unwrap_or_default()
                    ),
                );
            }
            if tls
                && value("auth_tls", "none") == "none"
                && !conf.contains_key("tls_allowed_dn_list")
            {
                add(
                    "LIBVIRT-TLS-NOAUTH",
                    Severity::High,
                    at("auth_tls").unwrap_or_else(|| {
                        format!("{path}: auth_tls not set (libvirt's default: none) and no tls_allowed_dn_list")
                    }),
                );
            }
            let listen = value("listen_addr", "");
            if (tcp || tls) && matches!(listen.as_str(), "" | "0.0.0.0" | "::" | "[::]") {
                add(
                    "LIBVIRT-LISTEN-ALL",
                    Severity::Medium,
                    at("listen_addr")
                        .unwrap_or_else(|| format!("{path}: listen_addr not set: every interface")),
                );
            }
            if truthy(&value("tls_no_verify_certificate", "0")) {
                add(
                    "LIBVIRT-TLS-NOVERIFY",
                    Severity::High,
                    at("tls_no_verify_certificate").unwrap_or_default(),
                );
            }
            if truthy(&value("tls_no_sanity_certificate", "0")) {
                add(
                    "LIBVIRT-TLS-NOSANITY",
                    Severity::Medium,
                    at("tls_no_sanity_certificate").unwrap_or_default(),
                );
            }
            if let Some((sasl_path, sasl)) = get("sasl", None) {
                let mechs = sasl
                    .get("mech_list")
                    .map(|s| (s.line, s.value.to_ascii_lowercase()));
                let uses_sasl = (tcp && value("auth_tcp", "sasl") == "sasl")
                    || (tls && value("auth_tls", "none") == "sasl");
                match mechs {
                    Some((line, m)) if uses_sasl && m.contains("anonymous") => add(
                        "SASL-ANONYMOUS",
                        Severity::High,
                        format!("{sasl_path}:{line}: mech_list: {m}"),
                    ),
                    // Without TLS nothing protects the channel: DIGEST-MD5 is obsolete
                    // (RFC 6331), SCRAM and PLAIN do not encrypt.
                    Some((line, m)) if tcp && value("auth_tcp", "sasl") == "sasl" => add(
                        "SASL-OVER-TCP",
                        Severity::Medium,
                        format!("{sasl_path}:{line}: mech_list: {m} over unencrypted TCP"),
                    ),
                    _ => {}
                }
            }
            if let Some((nova_path, nova)) = get("nova", Some("libvirt")) {
                let uri = nova.get("connection_uri");
                let scheme = nova.get("live_migration_scheme");
                let serves_tls_only = tls && !tcp;
                let plain = |s: &Setting| s.value.contains("tcp");
                for (key, setting) in [("connection_uri", uri), ("live_migration_scheme", scheme)] {
                    if let (Some(s), true) = (setting, serves_tls_only) {
                        if plain(s) {
                            add(
                                "NOVA-NOT-TLS",
                                Severity::Medium,
                                format!(
                                    "{nova_path}:{}: {key} = {} while libvirtd serves TLS only",
                                    s.line, s.value
                                ),
                            );
                        }
                    }
                }
                let on = |key: &str| nova.get(key).is_some_and(|s| truthy(&s.value));
                if on("live_migration_tunnelled") && on("live_migration_with_native_tls") {
                    add(
                        "NOVA-TUNNELLED-AND-NATIVE-TLS",
                        Severity::Medium,
                        format!(
                            "{nova_path}: live_migration_tunnelled and live_migration_with_native_tls are both on (mutually exclusive)"
                        ),
                    );
                }
            }
        }
    }
    if let Some(certs) = seen.certs {
        certs::findings(certs, &mut add);
    }
    for (name, set) in seen.cert_sets {
        certs::findings(set, &mut add);
        if let Some(main) = seen.certs {
            certs::shared_subject(name, main, set, &mut add);
        }
    }
    match seen.tcp_probe {
        Some(Answer::NoAuth) => add(
            "LIBVIRT-RPC-OPEN",
            Severity::Critical,
            format!("live: {}", Answer::NoAuth.describe()),
        ),
        Some(answer @ Answer::Auth(_)) => add(
            "LIBVIRT-TCP-OPEN",
            Severity::Low,
            format!("live: unencrypted libvirt port {}", answer.describe()),
        ),
        _ => {}
    }
    sort_findings(&mut findings);
    findings
}

/// Most severe first, then by id: the order every report lists a host's findings in.
pub fn sort_findings(findings: &mut [Finding]) {
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.id.cmp(b.id)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        libvirtd: &str,
        sasl: Option<&str>,
        nova: Option<&str>,
        probe: Option<Answer>,
    ) -> Vec<&'static str> {
        let mut files = BTreeMap::new();
        files.insert(
            "libvirtd".to_string(),
            ("/l.conf".to_string(), libvirtd.to_string()),
        );
        if let Some(s) = sasl {
            files.insert("sasl".to_string(), ("/s.conf".to_string(), s.to_string()));
        }
        if let Some(n) = nova {
            files.insert("nova".to_string(), ("/n.conf".to_string(), n.to_string()));
        }
        audit(&Observed {
            files: &files,
            certs: None,
            cert_sets: &[],
            tcp_probe: probe.as_ref(),
        })
        .into_iter()
        .map(|f| f.id)
        .collect()
    }

    #[test]
    fn day_zero_kolla_is_critical_with_the_live_proof() {
        let day0 =
            "listen_tcp = 1\nlisten_tls = 0\nauth_tcp = \"none\"\nlisten_addr = \"10.0.0.1\"\n";
        let ids = run(day0, None, None, Some(Answer::NoAuth));
        assert_eq!(ids, ["LIBVIRT-RPC-OPEN", "LIBVIRT-TCP-NOAUTH"]);
    }

    #[test]
    fn a_file_libvirt_reads_otherwise_than_the_audit_is_said_to_be_unknown() {
        // The first auth_tls libvirt reads is "none", after the `;`.
        let hidden = "listen_tls = 1; auth_tls = \"none\"\nauth_tls = \"sasl\"\nlisten_addr = \"10.0.0.1\"\n";
        let ids = run(hidden, Some("mech_list: scram-sha-256\n"), None, None);
        assert!(ids.contains(&"CONF-UNREADABLE"), "{ids:?}");
    }

    #[test]
    fn anonymous_sasl_is_found_as_cyrus_reads_the_file() {
        let tls =
            "listen_tls = 1\nlisten_tcp = 0\nauth_tls = \"sasl\"\nlisten_addr = \"10.0.0.1\"\n";
        // Cyrus lowercases keys (the first wins) and reads the value to the end of the line.
        for sasl in [
            "MECH_LIST: anonymous\nmech_list: scram-sha-256\n",
            "mech_list: scram-sha-256 #x anonymous\n",
        ] {
            let ids = run(tls, Some(sasl), None, None);
            assert!(ids.contains(&"SASL-ANONYMOUS"), "{sasl:?}: {ids:?}");
        }
    }

    #[test]
    fn tls_with_sasl_on_one_address_is_clean() {
        let good =
            "listen_tls = 1\nlisten_tcp = 0\nauth_tls = \"sasl\"\nlisten_addr = \"10.0.0.1\"\n";
        let nova =
            "[libvirt]\nconnection_uri = qemu+tls://c1/system\nlive_migration_scheme = tls\n";
        let closed = Answer::Closed("refused".into());
        assert!(run(
            good,
            Some("mech_list: scram-sha-256\n"),
            Some(nova),
            Some(closed)
        )
        .is_empty());
    }

    #[test]
    fn weakened_tls_and_wide_listeners_are_found() {
        let weak = "listen_tls = 1\nauth_tls = \"none\"\ntls_no_verify_certificate = 1\ntls_no_sanity_certificate = 1\n";
        let nova = "[libvirt]\nconnection_uri = qemu+tcp://c1/system\nlive_migration_tunnelled = true\nlive_migration_with_native_tls = true\n";
        let ids = run(weak, None, Some(nova), None);
        for id in [
            "LIBVIRT-TLS-NOAUTH",
            "LIBVIRT-TLS-NOVERIFY",
            "LIBVIRT-TLS-NOSANITY",
            "LIBVIRT-LISTEN-ALL",
            "NOVA-NOT-TLS",
            "NOVA-TUNNELLED-AND-NATIVE-TLS",
        ] {
            assert!(ids.contains(&id), "{id}: {ids:?}");
        }
        // An allowed DN list is authorization enough for TLS without SASL.
        let listed = "listen_tls = 1\nauth_tls = \"none\"\ntls_allowed_dn_list = [\"CN=c1\"]\nlisten_addr = \"10.0.0.1\"\n";
        assert!(run(listed, None, None, None).is_empty());
    }

    #[test]
    fn sasl_over_plain_tcp_is_weak() {
        let tcp =
            "listen_tcp = 1\nlisten_tls = 0\nauth_tcp = \"sasl\"\nlisten_addr = \"10.0.0.1\"\n";
        let ids = run(
            tcp,
            Some("mech_list: digest-md5\n"),
            None,
            Some(Answer::Auth(vec!["sasl".into()])),
        );
        assert_eq!(ids, ["SASL-OVER-TCP", "LIBVIRT-TCP-OPEN"]);
    }

    #[test]
    fn native_tls_on_some_hosts_and_off_on_others_is_told_to_every_host() {
        let nova = |on: bool| format!("[libvirt]\nlive_migration_with_native_tls = {on}\n");
        let state = |text: Option<String>| {
            let mut files = BTreeMap::new();
            if let Some(t) = text {
                files.insert("nova".to_string(), ("/n.conf".to_string(), t));
            }
            native_tls(&Observed {
                files: &files,
                certs: None,
                cert_sets: &[],
                tcp_probe: None,
            })
        };
        assert_eq!(state(Some(nova(true))), Some(true));
        assert_eq!(state(Some(nova(false))), Some(false));
        assert_eq!(
            state(Some("[DEFAULT]\n".into())),
            Some(false),
            "nova's default"
        );
        assert_eq!(state(None), None);

        let fleet = |on: &[bool]| -> BTreeMap<String, bool> {
            on.iter()
                .enumerate()
                .map(|(i, on)| (format!("c{i}"), *on))
                .collect()
        };
        assert!(fleet_findings(&fleet(&[true, true])).is_empty());
        assert!(fleet_findings(&fleet(&[false, false])).is_empty());
        let mixed = fleet_findings(&fleet(&[true, false, false]));
        assert_eq!(mixed.len(), 3);
        assert_eq!(mixed["c0"].id, "NOVA-NATIVE-TLS-MIXED");
        assert!(
            mixed["c0"].evidence.contains("on here, off on c1, c2"),
            "{:?}",
            mixed["c0"]
        );
        assert!(
            mixed["c1"].evidence.contains("off here, on on c0"),
            "{:?}",
            mixed["c1"]
        );
    }
}
