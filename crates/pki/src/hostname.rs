//! Server identity matching as libvirt's client does it (gnutls_x509_crt_check_hostname):
//! DNS names compare case-insensitively with an optional leftmost `*` label; the subject CN
//! is consulted only when the certificate has no DNS SAN; IP addresses must equal an IP SAN
//! (a certificate without any IP SAN may carry the IP as text in a DNS SAN or the CN).

use std::net::IpAddr;

/// The names a server certificate presents.
#[derive(Debug, Default, Clone)]
pub(crate) struct Presented {
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub common_names: Vec<String>,
}

impl Presented {
    /// Names compared against a DNS host name: DNS SANs, else the CN.
    fn dns_candidates(&self) -> &[String] {
        if self.dns.is_empty() {
            &self.common_names
        } else {
            &self.dns
        }
    }

    pub(crate) fn matches_dns(&self, host: &str) -> bool {
        self.dns_candidates()
            .iter()
            .any(|pattern| dns_name_matches(pattern, host))
    }

    pub(crate) fn matches_ip(&self, ip: IpAddr) -> bool {
        if self.ips.contains(&ip) {
            return true;
        }
        self.ips.is_empty()
            && self
                .dns_candidates()
                .iter()
                .any(|name| name.parse::<IpAddr>() == Ok(ip))
    }

    /// Short description for messages, e.g. `DNS SANs [a, b], IP SANs [10.0.0.1]`.
    pub(crate) fn describe(&self) -> String {
        if self.dns.is_empty() && self.ips.is_empty() {
            return format!("no SAN, CN {:?}", self.common_names);
        }
        let ips: Vec<String> = self.ips.iter().map(IpAddr::to_string).collect();
        format!("DNS SANs {:?}, IP SANs {:?}", self.dns, ips)
    }
}

/// RFC 6125-style comparison: case-insensitive, trailing dot ignored, a `*` may stand for
/// exactly one whole leftmost label and needs at least two labels after it.
pub(crate) fn dns_name_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() {
        return false;
    }
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            suffix.contains('.')
                && host
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix)
        }
        None => pattern == host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_matching_rules() {
        assert!(dns_name_matches(
            "Compute1.Example.COM",
            "compute1.example.com"
        ));
        assert!(dns_name_matches(
            "compute1.example.com.",
            "compute1.example.com"
        ));
        assert!(dns_name_matches("*.example.com", "compute1.example.com"));
        assert!(!dns_name_matches("*.example.com", "a.b.example.com"));
        assert!(!dns_name_matches("*.example.com", "example.com"));
        assert!(!dns_name_matches("*.com", "example.com"));
        assert!(!dns_name_matches("compute1", "compute2"));
    }

    #[test]
    fn cn_is_used_only_without_dns_san() {
        let cn_only = Presented {
            common_names: vec!["compute1".into()],
            ..Default::default()
        };
        assert!(cn_only.matches_dns("compute1"));
        let with_san = Presented {
            dns: vec!["other".into()],
            common_names: vec!["compute1".into()],
            ..Default::default()
        };
        assert!(!with_san.matches_dns("compute1"));
    }

    #[test]
    fn ip_needs_exact_ip_san() {
        let ip: IpAddr = "10.0.0.5".parse().unwrap();
        let presented = Presented {
            ips: vec!["10.0.0.6".parse().unwrap()],
            dns: vec!["10.0.0.5".into()],
            ..Default::default()
        };
        assert!(!presented.matches_ip(ip));
        let textual = Presented {
            dns: vec!["10.0.0.5".into()],
            ..Default::default()
        };
        assert!(textual.matches_ip(ip));
    }
}
