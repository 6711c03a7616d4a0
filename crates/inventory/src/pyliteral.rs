//! INI inventory values: Ansible runs each one through Python's `ast.literal_eval` and keeps the
//! raw text when that fails. This is the subset that matters for inventories: numbers,
//! `True`/`False`/`None`, quoted strings, lists, tuples and dicts.

use serde_json::{Map, Number, Value};

use crate::limits::MAX_NESTING;

/// The typed value of an INI `key=value` right-hand side, or the text itself if it is not a
/// Python literal (so `yes` stays the string `"yes"`, `22` becomes a number). Lists, tuples
/// and dicts nested deeper than [`MAX_NESTING`] are an error (Python itself gives up on deep
/// nesting; here it would overflow the stack).
pub(crate) fn ini_value(raw: &str) -> Result<Value, String> {
    let mut parser = Parser {
        s: raw.as_bytes(),
        text: raw,
        pos: 0,
        depth: 0,
        too_deep: false,
    };
    match parser.whole() {
        Some(value) => Ok(value),
        None if parser.too_deep => Err(format!(
            "the value is nested deeper than {MAX_NESTING} levels"
        )),
        None => Ok(Value::String(raw.to_string())),
    }
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    pos: usize,
    /// Containers open around `pos`.
    depth: usize,
    too_deep: bool,
}

impl Parser<'_> {
    /// One expression, then nothing but blanks and an optional Python comment.
    fn whole(&mut self) -> Option<Value> {
        let value = self.expr()?;
        self.skip_blanks();
        match self.peek() {
            None | Some(b'#') => Some(value),
            _ => None,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        self.skip_blanks();
        if self.peek() == Some(byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expr(&mut self) -> Option<Value> {
        self.skip_blanks();
        match self.peek()? {
            open @ (b'[' | b'(' | b'{') => {
                if self.depth == MAX_NESTING {
                    self.too_deep = true;
                    return None;
                }
                self.pos += 1;
                self.depth += 1;
                let value = match open {
                    b'[' => self.sequence(b']'),
                    b'(' => self.tuple(),
                    _ => self.dict(),
                };
                self.depth -= 1;
                value
            }
            b'-' | b'+' => {
                let negative = self.peek() == Some(b'-');
                self.pos += 1;
                self.skip_blanks();
                let value = self.number()?;
                if negative {
                    negate(value)
                } else {
                    Some(value)
                }
            }
            b'0'..=b'9' | b'.' => self.number(),
            b'\'' | b'"' => self.strings(),
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => self.word(),
            _ => None,
        }
    }

    /// Comma-separated expressions up to `close`; a trailing comma is allowed.
    fn items(&mut self, close: u8) -> Option<Vec<Value>> {
        let mut items = Vec::new();
        loop {
            if self.eat(close) {
                return Some(items);
            }
            items.push(self.expr()?);
            if !self.eat(b',') {
                return self.eat(close).then_some(items);
            }
        }
    }

    fn sequence(&mut self, close: u8) -> Option<Value> {
        self.items(close).map(Value::Array)
    }

    /// `(x)` is just `x`; `()` and `(x,)` are tuples, which Ansible turns into lists.
    fn tuple(&mut self) -> Option<Value> {
        let start = self.pos;
        if self.eat(b')') {
            return Some(Value::Array(Vec::new()));
        }
        let first = self.expr()?;
        if self.eat(b')') {
            return Some(first);
        }
        self.pos = start;
        self.sequence(b')')
    }

    fn dict(&mut self) -> Option<Value> {
        let mut map = Map::new();
        loop {
            if self.eat(b'}') {
                return Some(Value::Object(map));
            }
            let key = key_text(self.expr()?)?;
            if !self.eat(b':') {
                return None; // a set, or garbage: not something Ansible keeps typed
            }
            let value = self.expr()?;
            map.insert(key, value);
            if !self.eat(b',') {
                return self.eat(b'}').then_some(Value::Object(map));
            }
        }
    }

    fn word(&mut self) -> Option<Value> {
        let start = self.pos;
        while matches!(
            self.peek(),
            Some(b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_')
        ) {
            self.pos += 1;
        }
        let word = &self.text[start..self.pos];
        match word {
            "True" => Some(Value::Bool(true)),
            "False" => Some(Value::Bool(false)),
            "None" => Some(Value::Null),
            // String prefixes: u'' and b'' read like plain strings here, r'' keeps backslashes.
            "u" | "U" | "b" | "B" if matches!(self.peek(), Some(b'\'' | b'"')) => self.strings(),
            "r" | "R" | "rb" | "br" if matches!(self.peek(), Some(b'\'' | b'"')) => {
                self.string_body(true).map(Value::String)
            }
            _ => None,
        }
    }

    /// Adjacent string literals concatenate, as in Python.
    fn strings(&mut self) -> Option<Value> {
        let mut out = self.string_body(false)?;
        loop {
            let save = self.pos;
            self.skip_blanks();
            if matches!(self.peek(), Some(b'\'' | b'"')) {
                out.push_str(&self.string_body(false)?);
            } else {
                self.pos = save;
                return Some(Value::String(out));
            }
        }
    }

    fn string_body(&mut self, raw: bool) -> Option<String> {
        let quote = self.peek()?;
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.text[self.pos..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                c if c as u32 == quote as u32 => {
                    self.pos += i + 1;
                    return Some(out);
                }
                '\\' => {
                    let (_, next) = chars.next()?;
                    if raw {
                        out.push('\\');
                        out.push(next);
                        continue;
                    }
                    match next {
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        '0' => out.push('\0'),
                        '\\' | '\'' | '"' => out.push(next),
                        'x' | 'u' | 'U' => {
                            let len = match next {
                                'x' => 2,
                                'u' => 4,
                                _ => 8,
                            };
                            let hex: String = (0..len)
                                .map_while(|_| chars.next().map(|(_, h)| h))
                                .collect();
                            let code = u32::from_str_radix(&hex, 16)
                                .ok()
                                .filter(|_| hex.len() == len)?;
                            out.push(char::from_u32(code)?);
                        }
                        // Python keeps unknown escapes verbatim.
                        other => {
                            out.push('\\');
                            out.push(other);
                        }
                    }
                }
                c => out.push(c),
            }
        }
        None // unterminated
    }

    fn number(&mut self) -> Option<Value> {
        let start = self.pos;
        while matches!(
            self.peek(),
            Some(b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | b'_' | b'.')
        ) || (matches!(self.peek(), Some(b'+' | b'-'))
            && matches!(self.s.get(self.pos.wrapping_sub(1)), Some(b'e' | b'E'))
            && !self.text[start..self.pos].starts_with("0x"))
        {
            self.pos += 1;
        }
        number_value(&self.text[start..self.pos])
    }
}

fn negate(value: Value) -> Option<Value> {
    let n = value.as_number()?;
    if let Some(i) = n.as_i64() {
        return Some(Value::Number(i.checked_neg()?.into()));
    }
    if let Some(u) = n.as_u64() {
        // -(2^63) is the only u64 that still fits once negated.
        return (u == 1u64 << 63).then(|| Value::Number(i64::MIN.into()));
    }
    Number::from_f64(-n.as_f64()?).map(Value::Number)
}

/// Python 3 integer and float literal syntax (no complex numbers).
fn number_value(token: &str) -> Option<Value> {
    if token.is_empty() || token.starts_with('_') || token.ends_with('_') || token.contains("__") {
        return None;
    }
    let plain = token.replace('_', "");
    let lower = plain.to_ascii_lowercase();
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(digits) = lower.strip_prefix(prefix) {
            return u64::from_str_radix(digits, radix)
                .ok()
                .map(|v| Value::Number(v.into()));
        }
    }
    if plain.bytes().all(|b| b.is_ascii_digit()) {
        // Python 3 rejects leading zeros ("007") except for zero itself.
        if plain.len() > 1 && plain.starts_with('0') && plain.bytes().any(|b| b != b'0') {
            return None;
        }
        return plain.parse::<u64>().ok().map(|v| Value::Number(v.into()));
    }
    let float_chars = plain
        .bytes()
        .all(|b| b.is_ascii_digit() || b".eE+-".contains(&b));
    if !float_chars || !plain.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    plain
        .parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map(Value::Number)
}

/// JSON object keys are strings; Python dict keys in inventories nearly always are too.
fn key_text(key: Value) -> Option<String> {
    match key {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(true) => Some("True".into()),
        Value::Bool(false) => Some("False".into()),
        Value::Null => Some("None".into()),
        Value::Array(_) | Value::Object(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    fn ini_value(raw: &str) -> Value {
        super::ini_value(raw).unwrap()
    }

    #[test]
    fn numbers() {
        assert_eq!(ini_value("22"), json!(22));
        assert_eq!(ini_value("-5"), json!(-5));
        assert_eq!(ini_value("1_000"), json!(1000));
        assert_eq!(ini_value("0x1F"), json!(31));
        assert_eq!(ini_value("1.5"), json!(1.5));
        assert_eq!(ini_value("1e3"), json!(1000.0));
        assert_eq!(ini_value("0"), json!(0));
    }

    #[test]
    fn python_rejects_these_so_they_stay_text() {
        for raw in [
            "007",
            "yes",
            "no",
            "true",
            "1.2.3.4",
            "compute01",
            "a b",
            "nan",
            "inf",
            "1j",
            "{1, 2}",
        ] {
            assert_eq!(ini_value(raw), json!(raw), "{raw:?}");
        }
    }

    #[test]
    fn keywords_strings_and_containers() {
        assert_eq!(ini_value("True"), json!(true));
        assert_eq!(ini_value("False"), json!(false));
        assert_eq!(ini_value("None"), json!(null));
        assert_eq!(ini_value("'quoted value'"), json!("quoted value"));
        assert_eq!(ini_value(r#""a\tb""#), json!("a\tb"));
        assert_eq!(ini_value("'a' 'b'"), json!("ab"));
        assert_eq!(ini_value("[1, 'x', True]"), json!([1, "x", true]));
        assert_eq!(ini_value("(1,)"), json!([1]));
        assert_eq!(ini_value("(7)"), json!(7));
        assert_eq!(ini_value("{'a': 1, 'b': [2]}"), json!({"a": 1, "b": [2]}));
    }

    #[test]
    fn trailing_python_comment_is_ignored_only_after_a_literal() {
        assert_eq!(ini_value("23 # a comment"), json!(23));
        assert_eq!(ini_value("yes # a comment"), json!("yes # a comment"));
    }

    #[test]
    fn nesting_is_limited() {
        let ok = format!("{}1{}", "[(".repeat(32), ")]".repeat(32));
        assert!(super::ini_value(&ok).is_ok());
        let deep = format!("{}1{}", "[".repeat(65), "]".repeat(65));
        let err = super::ini_value(&deep).unwrap_err();
        assert!(err.contains("deeper than 64"), "{err}");
        // Unbalanced deep nesting is no Python literal either way, but still refused.
        assert!(super::ini_value(&"{".repeat(100_000)).is_err());
    }
}
