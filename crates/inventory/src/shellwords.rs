//! Splits an INI host line the way Ansible does (Python `shlex.split(line, comments=True)`):
//! POSIX quoting, and `#` outside quotes ends the line even inside a word.

pub(crate) fn split(line: &str) -> Result<Vec<String>, String> {
    split_words(line, true)
}

/// Python's `shlex.split(line)` (no comments): how Ansible splits its ssh arguments.
pub(crate) fn split_args(line: &str) -> Result<Vec<String>, String> {
    split_words(line, false)
}

fn split_words(line: &str, comments: bool) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    // A quoted empty string ("") is still a word.
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '#' if comments => break,
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("no closing quotation".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        // Inside double quotes a backslash escapes only `"` and `\`.
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("no closing quotation".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("no closing quotation".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.push(chars.next().ok_or("no escaped character after '\\'")?);
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn quotes_escapes_and_comments() {
        assert_eq!(
            split(r#"h a="x y" b='p#q' c=1 # note"#).unwrap(),
            ["h", "a=x y", "b=p#q", "c=1"]
        );
        assert_eq!(
            split(r#"h a=x\ y b="q\"d" e="""#).unwrap(),
            ["h", "a=x y", "b=q\"d", "e="]
        );
        assert_eq!(split("h a=b#c").unwrap(), ["h", "a=b"]);
        assert_eq!(
            split("h a=\"unterminated").unwrap_err(),
            "no closing quotation"
        );
    }
}
