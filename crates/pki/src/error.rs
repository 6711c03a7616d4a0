//! Errors of the non-validation API (inspection, built-in CA).

/// Why a PEM input could not be used, or a certificate could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("invalid PEM: {0}")]
    Pem(String),
    #[error("no certificate found in PEM input")]
    NoCertificate,
    #[error("unexpected PEM block '{found}' (expected {expected})")]
    UnexpectedBlock {
        found: String,
        expected: &'static str,
    },
    #[error("certificate #{index}: {reason}")]
    Certificate { index: usize, reason: String },
    #[error("private key: {0}")]
    Key(String),
    #[error("the CA key matches none of the certificates in the CA PEM")]
    CaKeyMismatch,
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
}
