//! Validation of one host's Kolla certificate set, judged as libvirt and gnutls will.
//!
//! Pure: the caller reads the files and supplies the clock. Every problem found is reported;
//! a file that cannot be parsed only suppresses the checks that need its contents.

mod bundle;
pub(crate) mod checker;
mod leaf;
mod rules;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use time::OffsetDateTime;

use crate::ca::CertKind;
use crate::finding::Finding;
use checker::Checker;
use leaf::Leaf;

/// The five parts of a mutual-TLS set: the CA bundle, the server pair and the client pair.
/// Which file plays which part is the caller's business (the playbook's `tls.files`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Ca,
    ServerCert,
    ServerKey,
    ClientCert,
    ClientKey,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Self::Ca,
        Self::ServerCert,
        Self::ServerKey,
        Self::ClientCert,
        Self::ClientKey,
    ];

    /// Whether the file holds a private key (and so must be written with mode 0600).
    pub fn is_private_key(self) -> bool {
        matches!(self, Self::ServerKey | Self::ClientKey)
    }
}

/// One file chosen for a host: where it came from (used in findings) and its contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFile {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

impl CertFile {
    pub fn new(path: impl Into<PathBuf>, bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            path: path.into(),
            bytes: bytes.into(),
        }
    }
}

/// Input of [`validate_host`]. Absent files are not checked (a nova-compute-only host gets
/// just the CA and the client pair); checks that need two files run when both are present.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostCerts {
    /// Inventory host name, used in findings.
    pub host: String,
    /// DNS name peers use in `qemu+tls://<migration_hostname>/system`.
    pub migration_hostname: Option<String>,
    /// The migration interface address (an IP literal), used for live-migration connections.
    pub migration_address: Option<String>,
    pub ca: Option<CertFile>,
    pub server_cert: Option<CertFile>,
    pub server_key: Option<CertFile>,
    pub client_cert: Option<CertFile>,
    pub client_key: Option<CertFile>,
}

impl HostCerts {
    pub fn new(host: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            ..Self::default()
        }
    }

    pub fn file(&self, kind: Role) -> Option<&CertFile> {
        match kind {
            Role::Ca => self.ca.as_ref(),
            Role::ServerCert => self.server_cert.as_ref(),
            Role::ServerKey => self.server_key.as_ref(),
            Role::ClientCert => self.client_cert.as_ref(),
            Role::ClientKey => self.client_key.as_ref(),
        }
    }

    pub fn set_file(&mut self, kind: Role, file: CertFile) {
        let slot = match kind {
            Role::Ca => &mut self.ca,
            Role::ServerCert => &mut self.server_cert,
            Role::ServerKey => &mut self.server_key,
            Role::ClientCert => &mut self.client_cert,
            Role::ClientKey => &mut self.client_key,
        };
        *slot = Some(file);
    }
}

/// Checks one host's files and returns every finding (empty when all is well).
///
/// * every file parses as PEM; keys may be RSA, ECDSA P-256/P-384 or Ed25519 in PKCS#1,
///   PKCS#8 or SEC1 form;
/// * each private key matches its certificate;
/// * server and client certificates are signed by a CA in the CA bundle;
/// * the server certificate covers `migration_hostname` and/or the migration address
///   (neither: error; only one: warning, since peers use both);
/// * extendedKeyUsage, when present, allows serverAuth / clientAuth; keyUsage and
///   basicConstraints as libvirt checks them;
/// * validity: not yet valid or expired is an error, expiring within `warn_days` a warning.
pub fn validate_host(
    input: &HostCerts,
    now: impl Into<OffsetDateTime>,
    warn_days: u32,
) -> Vec<Finding> {
    let mut checker = Checker::new(&input.host, now.into(), warn_days);
    let ca_ders = input.ca.as_ref().and_then(|file| checker.load_certs(file));
    let cas = match (&input.ca, &ca_ders) {
        (Some(file), Some(ders)) => {
            Some((file.path.as_path(), bundle::check(&mut checker, file, ders)))
        }
        _ => None,
    };
    let trust = cas.as_ref().map(|(path, certs)| leaf::Trust {
        path,
        cas: certs.as_slice(),
    });
    let identity = leaf::Identity {
        dns_name: input.migration_hostname.as_deref(),
        address: input.migration_address.as_deref(),
    };
    let roles = [
        (CertKind::Server, &input.server_cert, &input.server_key),
        (CertKind::Client, &input.client_cert, &input.client_key),
    ];
    for (kind, cert, key) in roles {
        Leaf {
            kind,
            cert: cert.as_ref(),
            key: key.as_ref(),
        }
        .check(&mut checker, trust.as_ref(), &identity);
    }
    checker.into_findings()
}
