//! One validation result line.

use std::fmt;
use std::path::PathBuf;

/// `Error`: libvirt will refuse the file or the TLS handshake will fail.
/// `Warning`: works today but needs attention (expiry soon, partial identity, unverifiable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Error => "error",
            Self::Warning => "warning",
        })
    }
}

/// A problem with one file of one host. Displays as `<host>: <path>: <message>` on one line
/// (control characters from certificate fields are escaped so a hostile CN cannot forge lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub host: String,
    pub path: PathBuf,
    pub message: String,
}

impl Finding {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display().to_string();
        write!(
            f,
            "{}: {}: {}",
            one_line(&self.host),
            one_line(&path),
            one_line(&self.message)
        )
    }
}

fn one_line(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_host_path_message_on_one_line() {
        let finding = Finding {
            severity: Severity::Error,
            host: "compute1".into(),
            path: PathBuf::from("/etc/kolla/config/nova/servercert.pem"),
            message: "bad\nCN=evil".into(),
        };
        assert_eq!(
            finding.to_string(),
            "compute1: /etc/kolla/config/nova/servercert.pem: bad\\nCN=evil"
        );
        assert!(finding.is_error());
    }
}
