//! One validation result line, and the escaping that keeps certificate text off terminals.

use std::borrow::Cow;
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
/// (see [`display_safe`]: a hostile CN cannot forge lines, recolour or reorder the terminal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub host: String,
    pub path: PathBuf,
    /// Already passed through [`display_safe`]: certificate text in it is escaped.
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
            display_safe(&self.host),
            display_safe(&path),
            display_safe(&self.message)
        )
    }
}

/// `text` with every character that could act on a terminal escaped, so text from a
/// certificate (or any untrusted source) prints as one inert line: NUL as `\0`, tab, newline
/// and carriage return as `\t`, `\n`, `\r`, other ASCII controls and DEL as `\x1b`, and C1
/// controls and invisible format characters (bidi overrides and isolates such as U+202E,
/// zero-width characters, line and paragraph separators, BOM, tags) as `\u{202e}`.
/// Everything else, including other non-ASCII text, is kept; unchanged text is not copied.
pub fn display_safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\0' => out.push_str("\\0"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_ascii_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c if is_unsafe(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// C0/C1 controls and DEL, and the invisible format characters that reorder, hide or break
/// text on a terminal.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00ad}'
                | '\u{061c}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
                | '\u{e0000}'..='\u{e007f}'
        )
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

    #[test]
    fn display_safe_escapes_controls_and_invisible_format_characters() {
        assert_eq!(
            display_safe("a\0b\x1b[2J\t\r\n\x7f\u{9b}\u{202e}\u{2028}\u{feff}\u{e0041}"),
            r"a\0b\x1b[2J\t\r\n\x7f\u{9b}\u{202e}\u{2028}\u{feff}\u{e0041}"
        );
        // Ordinary text, accents and other scripts stay as they are, and are not copied.
        let plain = "CN=Größe, O=Société 東京 \\backslash";
        assert!(matches!(display_safe(plain), Cow::Borrowed(t) if t == plain));
        // Escaping twice changes nothing more: the escapes are plain ASCII.
        let once = display_safe("x\u{202e}\n").into_owned();
        assert_eq!(display_safe(&once), once);
    }
}
