//! Collects findings for one host.

use std::path::Path;

use time::OffsetDateTime;

use crate::error::PkiError;
use crate::finding::{display_safe, Finding, Severity};
use crate::pemfile;

use super::CertFile;

pub(super) struct Checker<'a> {
    host: &'a str,
    pub now: OffsetDateTime,
    pub warn_days: u32,
    findings: Vec<Finding>,
}

impl<'a> Checker<'a> {
    pub fn new(host: &'a str, now: OffsetDateTime, warn_days: u32) -> Self {
        Self {
            host,
            now,
            warn_days,
            findings: Vec::new(),
        }
    }

    /// Records a finding. Messages quote certificate fields (subjects, SANs) verbatim, so
    /// they are escaped here, once for every consumer: terminal, log and JSON report.
    pub fn report(&mut self, severity: Severity, path: &Path, message: impl Into<String>) {
        let message = message.into();
        self.findings.push(Finding {
            severity,
            host: self.host.to_string(),
            path: path.to_path_buf(),
            message: display_safe(&message).into_owned(),
        });
    }

    pub fn error(&mut self, path: &Path, message: impl Into<String>) {
        self.report(Severity::Error, path, message);
    }

    pub fn warning(&mut self, path: &Path, message: impl Into<String>) {
        self.report(Severity::Warning, path, message);
    }

    /// DER of every certificate in `file`, or `None` after reporting why it is unusable.
    pub fn load_certs(&mut self, file: &CertFile) -> Option<Vec<Vec<u8>>> {
        match pemfile::certificate_ders(&file.bytes) {
            Ok(ders) => Some(ders),
            Err(PkiError::NoCertificate) if file.bytes.iter().all(u8::is_ascii_whitespace) => {
                self.error(&file.path, "file is empty");
                None
            }
            Err(e) => {
                self.error(&file.path, e.to_string());
                None
            }
        }
    }

    pub fn into_findings(self) -> Vec<Finding> {
        self.findings
    }
}

/// `2031-05-04 12:00:00 UTC`: unambiguous and independent of locale.
pub(crate) fn format_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}
