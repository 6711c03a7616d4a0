//! Splitting PEM files into typed blocks.

use crate::error::PkiError;
use crate::finding::display_safe;

pub(crate) const CERTIFICATE: &str = "CERTIFICATE";

/// All PEM blocks in `bytes`, in order. Text around blocks (e.g. `openssl x509 -text`
/// output) is ignored, as gnutls does; a BEGIN line without its END is an error.
pub(crate) fn blocks(bytes: &[u8]) -> Result<Vec<pem::Pem>, PkiError> {
    // pem's errors quote the file (block names, headers): escaped like certificate text.
    let parsed = pem::parse_many(bytes)
        .map_err(|e| PkiError::Pem(display_safe(&e.to_string()).into_owned()))?;
    // `parse_many` silently stops at an unterminated block; a truncated copy must not pass.
    let begins = count(bytes, b"-----BEGIN ");
    if begins > parsed.len() {
        return Err(PkiError::Pem(format!(
            "{} BEGIN line(s) but only {} complete block(s): file truncated?",
            begins,
            parsed.len()
        )));
    }
    Ok(parsed)
}

/// DER of every certificate in `bytes`; any other block type is an error.
pub(crate) fn certificate_ders(bytes: &[u8]) -> Result<Vec<Vec<u8>>, PkiError> {
    let blocks = blocks(bytes)?;
    if blocks.is_empty() {
        return Err(PkiError::NoCertificate);
    }
    blocks
        .into_iter()
        .map(|block| {
            if block.tag() == CERTIFICATE {
                Ok(block.into_contents())
            } else {
                Err(PkiError::UnexpectedBlock {
                    found: display_safe(block.tag()).into_owned(),
                    expected: CERTIFICATE,
                })
            }
        })
        .collect()
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|window| *window == needle)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: &str = "-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n";

    #[test]
    fn reads_several_blocks_and_ignores_surrounding_text() {
        let text = format!("subject=CN=x\n{BLOCK}\nnoise\n{BLOCK}");
        assert_eq!(
            certificate_ders(text.as_bytes()).unwrap(),
            vec![vec![1, 2, 3]; 2]
        );
    }

    #[test]
    fn empty_input_has_no_certificate() {
        assert!(matches!(
            certificate_ders(b"\n"),
            Err(PkiError::NoCertificate)
        ));
    }

    #[test]
    fn truncated_block_is_an_error() {
        let text = format!("{BLOCK}-----BEGIN CERTIFICATE-----\nAQID\n");
        let err = certificate_ders(text.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
    }

    #[test]
    fn key_block_in_certificate_file_is_an_error() {
        let text = "-----BEGIN PRIVATE KEY-----\nAQID\n-----END PRIVATE KEY-----\n";
        let err = certificate_ders(text.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("'PRIVATE KEY'"), "{err}");
    }

    #[test]
    fn block_names_are_escaped_in_errors() {
        let text = "-----BEGIN \x1b[2J\u{202e}X-----\nAQID\n-----END \x1b[2J\u{202e}X-----\n";
        let err = certificate_ders(text.as_bytes()).unwrap_err().to_string();
        assert!(err.contains(r"'\x1b[2J\u{202e}X'"), "{err:?}");
        let mismatched = "-----BEGIN \x1b[2JA-----\nAQID\n-----END \u{202e}B-----\n";
        let err = certificate_ders(mismatched.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains('\x1b') && !err.contains('\u{202e}'),
            "{err:?}"
        );
    }

    #[test]
    fn bad_base64_is_an_error() {
        let text = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            certificate_ders(text.as_bytes()),
            Err(PkiError::Pem(_))
        ));
    }
}
