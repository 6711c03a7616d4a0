//! Text of a desired file that is safe to print (`--diff`, logs).

use crate::plan::{sha256_hex, DesiredFile};

const REDACTED: &str = "<redacted>";

/// Words that mark a configuration key as holding a secret, in files not marked secret
/// (a password an operator put into an ordinary template must not leak either).
const SECRET_KEY_WORDS: &[&str] = &["password", "passwd", "secret", "token", "credential"];

/// Last words of a key that hold a secret on their own (`[key_manager] fixed_key`,
/// `api_key`, `rabbit_pass`), where the word alone would match too much (`key_file`).
const SECRET_KEY_ENDINGS: &[&str] = &["key", "pass", "psk"];

pub(crate) fn has_private_key(content: &[u8]) -> bool {
    String::from_utf8_lossy(content).contains("PRIVATE KEY-----")
}

/// The file's content for display, with secrets removed:
/// PEM private keys become a one-line placeholder; in files marked secret every value of a
/// `key = value` / `key: value` line is replaced (keys, sections and comments stay, so a diff
/// still shows the shape), and any other non-blank line is replaced whole; in other files
/// values of password-like keys are replaced.
pub fn redact(file: &DesiredFile) -> String {
    let Ok(text) = std::str::from_utf8(&file.content) else {
        return format!(
            "<{} bytes of binary data, sha256 {}>\n",
            file.content.len(),
            file.sha256
        );
    };
    let text = replace_private_keys(text);
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, newline) = match line.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (line, ""),
        };
        out.push_str(&redact_line(body, file.secret));
        out.push_str(newline);
    }
    out
}

fn redact_line(line: &str, secret_file: bool) -> String {
    let trimmed = line.trim_start();
    let structural = trimmed.is_empty()
        || trimmed.starts_with('#')
        || trimmed.starts_with(';')
        || (trimmed.starts_with('[') && trimmed.trim_end().ends_with(']'))
        || trimmed.starts_with("-----")
        || trimmed.starts_with("<private key");
    if structural {
        return line.to_string();
    }
    match split_key_value(line) {
        Some((key, _)) if secret_file || is_secret_key(key) => {
            format!("{}{REDACTED}", &line[..key_end(line, key)])
        }
        Some(_) => redact_url_passwords(line),
        None if secret_file => REDACTED.to_string(),
        None => redact_url_passwords(line),
    }
}

/// Hides the password of every `scheme://user:password@host` in the line (Kolla's
/// `transport_url` and database `connection` carry them), however many hosts a URL lists and
/// whatever the password holds: `/`, `,`, blanks, quotes, `://`, or an unencoded `@` (only an
/// `@` followed by a `,` in one password is ambiguous: RFC 3986 wants that `@` as `%40`).
/// Linear in the line's length, whatever it holds.
fn redact_url_passwords(line: &str) -> String {
    const HOST_ENDS: [char; 5] = ['/', ' ', '\t', '"', '\''];
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find("://") {
        let authority_start = at + 3;
        out.push_str(&rest[..authority_start]);
        let tail = &rest[authority_start..];
        // A host never holds '@', a password may hold anything: the user parts run to the
        // last '@' before the next URL, the host list from there to a '/', blank or quote.
        let scope = next_url(tail);
        let hosts_from = tail[..scope].rfind('@').map_or(0, |last| last + 1);
        let authority_len = tail[hosts_from..]
            .find(HOST_ENDS)
            .map_or(tail.len(), |end| hosts_from + end);
        out.push_str(&redact_authority(&tail[..authority_len]));
        rest = &tail[authority_len..];
    }
    out.push_str(rest);
    out
}

/// Where the next URL of `text` starts: a `scheme://` whose scheme (`[A-Za-z][A-Za-z0-9+.-]*`)
/// follows a blank, a quote, `=` or `,`. A `://` inside a password follows other text.
fn next_url(text: &str) -> usize {
    for (at, _) in text.match_indices("://") {
        let before = &text[..at];
        let scheme_len = before
            .bytes()
            .rev()
            .take_while(|b| b.is_ascii_alphanumeric() || b"+.-".contains(b))
            .count();
        let scheme_start = at - scheme_len;
        let starts_alpha = before[scheme_start..]
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic());
        let delimited = before[..scheme_start]
            .bytes()
            .next_back()
            .is_some_and(|b| b" \t\"'=,".contains(&b));
        if starts_alpha && delimited {
            return scheme_start;
        }
    }
    text.len()
}

/// `user:password@host,user:password@host...` with each password replaced. Read from the
/// right: a host holds neither ',' nor '@', so each entry's user part starts after the first
/// ',' that follows the previous entry's '@'; an '@' with no ',' after it before the next is
/// inside a password. Linear: each '@' is looked at once.
fn redact_authority(authority: &str) -> String {
    let ats: Vec<usize> = authority.match_indices('@').map(|(i, _)| i).collect();
    // For each '@', the first ',' after it (authority.len() when none).
    let mut next_comma = vec![authority.len(); ats.len()];
    let mut comma = authority.len();
    let mut k = ats.len();
    for (i, b) in authority.bytes().enumerate().rev() {
        if b == b',' {
            comma = i;
        } else if b == b'@' {
            k -= 1;
            next_comma[k] = comma;
        }
    }
    // (start of the user part, its '@'), right to left.
    let mut entries: Vec<(usize, usize)> = Vec::new();
    let mut j = ats.len();
    while j > 0 {
        let at = ats[j - 1];
        // The nearest earlier '@' with a ',' between it and this one ends the previous entry.
        let mut i = j - 1;
        while i > 0 && next_comma[i - 1] > at {
            i -= 1;
        }
        let start = if i > 0 { next_comma[i - 1] + 1 } else { 0 };
        entries.push((start, at));
        j = i;
    }
    let mut out = String::with_capacity(authority.len());
    let mut copied = 0;
    for &(start, at) in entries.iter().rev() {
        out.push_str(&authority[copied..start]);
        let userinfo = &authority[start..at];
        match userinfo.split_once(':') {
            Some((user, _)) => {
                out.push_str(user);
                out.push(':');
                out.push_str(REDACTED);
            }
            None => out.push_str(userinfo),
        }
        copied = at;
    }
    out.push_str(&authority[copied..]);
    out
}

/// Key of a `key = value`, `key=value` or `key: value` line; a JSON key keeps its quotes
/// out (`"password": "x"`).
fn split_key_value(line: &str) -> Option<(&str, &str)> {
    let at = line.find(['=', ':'])?;
    let key = line[..at].trim();
    let key = key
        .strip_prefix('"')
        .and_then(|k| k.strip_suffix('"'))
        .unwrap_or(key);
    let is_key = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-. ".contains(&b));
    is_key.then(|| (key, &line[at + 1..]))
}

/// Byte offset just after the separator (and one following blank) of a key/value line.
fn key_end(line: &str, key: &str) -> usize {
    let key_at = line.find(key).unwrap_or(0) + key.len();
    let rest = &line[key_at..];
    let sep = rest.find(['=', ':']).map(|i| i + 1).unwrap_or(0);
    let mut end = key_at + sep;
    if line[end..].starts_with(' ') {
        end += 1;
    }
    end
}

fn is_secret_key(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    let last = lower.rsplit(['_', '-', '.', ' ']).next().unwrap_or("");
    SECRET_KEY_WORDS.iter().any(|w| lower.contains(w)) || SECRET_KEY_ENDINGS.contains(&last)
}

/// Replaces each PEM private key block with a placeholder naming its size and hash prefix,
/// so a key change is still visible without showing the key.
fn replace_private_keys(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(begin) = find_private_key_begin(rest) {
        out.push_str(&rest[..begin]);
        let block = &rest[begin..];
        let end = block
            .find("PRIVATE KEY-----")
            .and_then(|first| {
                let after_first = first + "PRIVATE KEY-----".len();
                block[after_first..]
                    .find("PRIVATE KEY-----")
                    .map(|second| after_first + second + "PRIVATE KEY-----".len())
            })
            .unwrap_or(block.len()); // unterminated: hide the remainder
        let key = &block[..end];
        out.push_str(&format!(
            "<private key redacted: {} bytes, sha256 {}...>",
            key.len(),
            &sha256_hex(key.as_bytes())[..12]
        ));
        rest = &block[end..];
    }
    out.push_str(rest);
    out
}

/// Where the first PEM private key begins: the first `-----BEGIN ` of a line whose rest holds
/// `PRIVATE KEY-----`. One pass over the text (a line of many BEGINs costs no more).
fn find_private_key_begin(text: &str) -> Option<usize> {
    let mut line_start = 0;
    for line in text.split_inclusive('\n') {
        if let Some(begin) = line.find("-----BEGIN ") {
            if line[begin..].contains("PRIVATE KEY-----") {
                return Some(line_start + begin);
            }
        }
        line_start += line.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn file(content: &str, secret: bool) -> DesiredFile {
        DesiredFile {
            path: "/etc/kolla/x/f".into(),
            content: content.as_bytes().to_vec(),
            mode: 0o600,
            owner: None,
            secret,
            sha256: sha256_hex(content.as_bytes()),
            source: PathBuf::from("f"),
            merge: None,
            role: None,
            cert_set: None,
        }
    }

    #[test]
    fn secret_file_keeps_keys_and_hides_values() {
        let text = "[credentials-default]\nauthname=nova\npassword=hunter2\n\n# note\n";
        let shown = redact(&file(text, true));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("[credentials-default]\n"));
        assert!(shown.contains("password=<redacted>\n"));
        assert!(shown.contains("# note\n"));
    }

    #[test]
    fn secret_file_hides_unstructured_lines() {
        let shown = redact(&file("hunter2\n", true));
        assert_eq!(shown, "<redacted>\n");
    }

    #[test]
    fn ordinary_file_hides_only_password_like_keys() {
        let text = "[x]\nuser = nova\nadmin_password = s3cret\nlisten_tls = 1\n";
        let shown = redact(&file(text, false));
        assert_eq!(
            shown,
            "[x]\nuser = nova\nadmin_password = <redacted>\nlisten_tls = 1\n"
        );
    }

    #[test]
    fn url_passwords_are_hidden_in_any_file() {
        let text =
            "transport_url = rabbit://openstack:Pw1@10.0.0.1:5672,openstack:Pw2@10.0.0.2:5672//\n\
                    connection = mysql+pymysql://nova:Pw3@db/nova\n\
                    connection_uri = qemu+tls://compute01/system\n";
        let shown = redact(&file(text, false));
        assert_eq!(
            shown,
            "transport_url = rabbit://openstack:<redacted>@10.0.0.1:5672,openstack:<redacted>@10.0.0.2:5672//\n\
             connection = mysql+pymysql://nova:<redacted>@db/nova\n\
             connection_uri = qemu+tls://compute01/system\n"
        );
    }

    #[test]
    fn key_like_settings_and_passwords_with_slashes_are_hidden() {
        let text = "[key_manager]\nfixed_key = Zm9vYmFy\nkey_file = /etc/pki/x.pem\n\
                    connection = mysql+pymysql://nova:pa/ss@word@db:3306/nova?charset=utf8\n\
                    transport_url = rabbit://u:a/b@h1:5672,u:c/d@h2:5672//\n";
        let shown = redact(&file(text, false));
        for secret in ["Zm9vYmFy", "pa/ss@word", "a/b", "c/d"] {
            assert!(!shown.contains(secret), "{secret}: {shown}");
        }
        assert!(shown.contains("key_file = /etc/pki/x.pem\n"), "{shown}");
        assert!(shown.contains("@db:3306/nova?charset=utf8\n"), "{shown}");
        assert!(shown.contains("u:<redacted>@h2:5672//\n"), "{shown}");
    }

    #[test]
    fn url_passwords_with_commas_blanks_quotes_or_at_signs_are_hidden() {
        let cases = [
            (
                "rabbit://u:pa,ss@h1:5672,u:q,r@h2:5672//",
                "pa,ss q,r",
                "rabbit://u:<redacted>@h1:5672,u:<redacted>@h2:5672//",
            ),
            (
                "mysql+pymysql://nova:Xq Yv\"Zw'@db/nova",
                "Xq Yv\"Zw'",
                "mysql+pymysql://nova:<redacted>@db/nova",
            ),
            (
                "rabbit://u:x@y@h1,u:w@h2/",
                "x@y w",
                "rabbit://u:<redacted>@h1,u:<redacted>@h2/",
            ),
            ("http://u:@h/", "", "http://u:<redacted>@h/"),
        ];
        for (url, secrets, shown_url) in cases {
            let shown = redact(&file(&format!("connection = {url}\n"), false));
            for secret in secrets.split(' ').filter(|s| !s.is_empty()) {
                assert!(!shown.contains(secret), "{secret}: {shown}");
            }
            assert_eq!(shown, format!("connection = {shown_url}\n"), "{url}");
        }
        // '://' inside a password is not the next URL.
        let shown = redact(&file(
            "transport_url = rabbit://u:ab://cd@h1,u:xy@h2//\n",
            false,
        ));
        assert_eq!(
            shown,
            "transport_url = rabbit://u:<redacted>@h1,u:<redacted>@h2//\n"
        );
        // Two URLs on one line, and text around them.
        let line = "a = \"amqp://u:p1@h1/\" b='amqp://u:p2@h2' end\n";
        assert_eq!(
            redact(&file(line, false)),
            "a = \"amqp://u:<redacted>@h1/\" b='amqp://u:<redacted>@h2' end\n"
        );
    }

    #[test]
    fn redaction_is_linear_on_hostile_lines() {
        // Found by review: 256k '@' after a scheme took seconds (quadratic), and one line of
        // BEGIN markers rescanned the rest of the line for each.
        let started = std::time::Instant::now();
        let ats = format!("x = a://{}\n", "@".repeat(1 << 20));
        redact(&file(&ats, false));
        let begins = format!("{}\n", "-----BEGIN ".repeat(1 << 17));
        redact(&file(&begins, false));
        let commas = format!("x = a://{}\n", "u:p@h,".repeat(1 << 17));
        let shown = redact(&file(&commas, false));
        assert!(!shown.contains(":p@"));
        // ~0.1 s in a debug build; quadratic was minutes.
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn json_keys_that_look_secret_are_hidden() {
        let shown = redact(&file(
            "{\n  \"password\": \"Pw9\",\n  \"user\": \"nova\"\n}\n",
            false,
        ));
        assert!(!shown.contains("Pw9"), "{shown}");
        assert!(shown.contains("\"password\": <redacted>"), "{shown}");
        assert!(shown.contains("\"user\": \"nova\""), "{shown}");
    }

    #[test]
    fn private_keys_are_replaced_in_any_file() {
        let key = "-----BEGIN PRIVATE KEY-----\nTUlJRXZRSUJBREFOQmdrcWhraUc5dzBC\n-----END PRIVATE KEY-----\n";
        let text =
            format!("-----BEGIN CERTIFICATE-----\nQ0VSVA==\n-----END CERTIFICATE-----\n{key}");
        let shown = redact(&file(&text, false));
        assert!(
            !shown.contains("TUlJRXZRSUJBREFOQmdrcWhraUc5dzBC"),
            "{shown}"
        );
        assert!(
            shown.contains("Q0VSVA=="),
            "certificates stay visible: {shown}"
        );
        assert!(shown.contains("<private key redacted: "), "{shown}");
        let ec = "-----BEGIN EC PRIVATE KEY-----\nRUNLRVk=\n-----END EC PRIVATE KEY-----\n";
        let shown = redact(&file(ec, true));
        assert!(!shown.contains("RUNLRVk="), "{shown}");
        assert!(has_private_key(ec.as_bytes()));
    }

    #[test]
    fn binary_content_is_summarised() {
        let mut f = file("", true);
        f.content = vec![0xff, 0xfe, 0x00];
        assert!(redact(&f).starts_with("<3 bytes of binary data"));
    }
}
