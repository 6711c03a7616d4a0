//! Host and group names as Ansible accepts them. A name also names files
//! (`host_vars/<name>`, a host's certificate directory), so a name that could leave such a
//! directory or fool a terminal is refused when the inventory is loaded.

/// Why `name` cannot be a host or group name, if it cannot: empty, `/` anywhere, a leading
/// `.` (`.`, `..`, hidden files), or a control character (NUL, newline, ESC, ...) including
/// Unicode's bidirectional overrides, which make a name print as another.
pub(crate) fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("it is empty")
    } else if name.contains('/') {
        Some("it contains '/'")
    } else if name.starts_with('.') {
        Some("it starts with '.'")
    } else if name.chars().any(is_control) {
        Some("it contains a control character")
    } else {
        None
    }
}

/// `invalid host name "x": why`, with the name escaped, or `Ok`.
pub(crate) fn check_name(kind: &str, name: &str) -> Result<(), String> {
    match name_problem(name) {
        Some(why) => Err(format!("invalid {kind} name {}: {why}", quoted(name))),
        None => Ok(()),
    }
}

/// `name` in double quotes, escaped as Rust's `{:?}` does except that NUL is `\u{0}`
/// (`{:?}` writes `\0`, which reads as octal before a digit: "c\001").
pub(crate) fn quoted(name: &str) -> String {
    let mut out = String::from('"');
    for c in name.chars() {
        match c {
            '\0' => out.push_str("\\u{0}"),
            '\'' => out.push(c),
            c => out.extend(c.escape_debug()),
        }
    }
    out.push('"');
    out
}

/// C0, DEL, C1, and the Unicode format characters that reorder or hide text.
fn is_control(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::name_problem;

    #[test]
    fn ordinary_names_pass() {
        for name in [
            "compute01",
            "fd00::1",
            "10.0.0.1",
            "db-a.example.com",
            "r1_x",
        ] {
            assert_eq!(name_problem(name), None, "{name}");
        }
    }

    #[test]
    fn names_are_quoted_unambiguously() {
        use super::quoted;
        assert_eq!(quoted("c\u{0}01"), r#""c\u{0}01""#);
        assert_eq!(quoted("a\tb\u{202e}\"'"), r#""a\tb\u{202e}\"'""#);
    }

    #[test]
    fn names_that_are_paths_or_hide_text_fail() {
        for name in [
            "",
            "/etc/passwd",
            "a/b",
            ".",
            "..",
            ".x",
            "a\0b",
            "a\nb",
            "a\u{202e}b",
        ] {
            assert!(name_problem(name).is_some(), "{name:?}");
        }
    }
}
