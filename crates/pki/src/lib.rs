//! X.509 material for libvirt TLS on Kolla compute hosts.
//!
//! * [`validate_host`] checks one host's mutual-TLS set (CA bundle, server pair, client pair,
//!   each a [`Role`]) the way libvirt/gnutls will judge them,
//!   and reports every problem as a [`Finding`].
//! * [`parse_certs`] / [`fingerprint_sha256`] describe certificates for inspection commands.
//! * [`init_ca`] / [`issue_pair`] are a small built-in CA (ECDSA P-256), and [`write_atomic`]
//!   writes the results with the right file modes.
//!
//! Everything except [`write_atomic`] is pure: no I/O, no clock, no shell-outs.

mod ca;
mod der;
mod dn;
mod error;
mod finding;
mod hostname;
mod inspect;
mod key;
mod pemfile;
mod validate;
mod write;

#[cfg(test)]
mod testutil;

pub use ca::{dated_name, init_ca, issue_leaf, issue_pair, CertKind, LeafRequest};
pub use dn::{dn_matches, libvirt_dn};
pub use error::PkiError;
pub use finding::{display_safe, Finding, Severity};
pub use inspect::{
    fingerprint_sha256, key_matches_certificate, parse_certs, signed_by_any, CertInfo,
};
pub use key::KeyAlgorithm;
pub use validate::{validate_host, CertFile, HostCerts, Role};
pub use write::{write_atomic, CERT_MODE, KEY_MODE};
