//! How deep YAML flow collections (`[...]`, `{...}`) nest, checked before the text reaches
//! the YAML parser: libyaml's scanner does work proportional to the flow depth for every
//! token, so 100 000 nested `[` took half a minute to parse before serde_yaml_ng's own
//! recursion limit (128) could refuse them. Block nesting is linear to parse and left to
//! that limit.
//!
//! The check is an upper bound, never less than the depth libyaml reaches. It follows
//! libyaml's scanner inside flow collections (quoted scalars, plain scalars, comments, tags,
//! anchors); outside them it does not tell scalars and comments from structure, so it
//! assumes that every `[` or `{` there may open a collection. It runs every possibility at
//! once: one state per scanner mode, each with the deepest depth that mode can have (a state
//! at a lower depth in the same mode only ever does what the deeper one does, or falls back
//! to block context, which is always assumed). The price of the bound is that text with
//! more than [`MAX_NESTING`] unbalanced `[` in one string is refused too.

use crate::limits::MAX_NESTING;

/// Scanner modes inside a flow collection.
#[derive(Clone, Copy)]
enum Mode {
    /// Between tokens.
    Token,
    Plain,
    /// Blanks or line breaks inside a plain scalar: a `#` now starts a comment.
    PlainBlank,
    Single,
    /// A `'` inside a single-quoted scalar: `''` is an escaped quote, anything else ends it.
    SingleQuote,
    Double,
    DoubleEscape,
    Comment,
    /// An anchor, alias or tag, up to a blank or a flow indicator.
    Word,
    /// A verbatim tag `!<...>`: `,`, `[` and `]` are part of it.
    Verbatim,
}

const MODES: usize = 10;

/// Deepest depth per mode; 0 when no run is in that mode.
type States = [usize; MODES];

/// The 1-based line where flow collections may nest deeper than [`MAX_NESTING`], if any.
pub(crate) fn too_deep_at(text: &str) -> Option<usize> {
    scan(text, MAX_NESTING).err()
}

/// The deepest flow nesting `text` may reach, or the line where it first passes `limit`.
fn scan(text: &str, limit: usize) -> Result<usize, usize> {
    let bytes = text.as_bytes();
    let mut deepest = 0;
    let mut states: States = [0; MODES];
    let mut line = 1;
    let mut at = 0;
    while at < bytes.len() {
        if states.iter().all(|d| *d == 0) {
            // Block context only: nothing to do until the next `[` or `{`.
            let Some(skip) = bytes[at..].iter().position(|b| matches!(b, b'[' | b'{')) else {
                break;
            };
            line += bytes[at..at + skip].iter().filter(|b| **b == b'\n').count();
            at += skip;
        }
        // Skip what changes no state (most of a long scalar or comment).
        let active = states
            .iter()
            .enumerate()
            .filter(|(_, d)| **d > 0)
            .fold(0u16, |bits, (mode, _)| bits | 1 << mode);
        let start = at;
        while active != 0 && at < bytes.len() && STAYS[bytes[at] as usize] & active == active {
            at += 1;
        }
        line += bytes[start..at].iter().filter(|b| **b == b'\n').count();
        if at == bytes.len() {
            break;
        }
        let unit = Unit::at(bytes, at);
        let mut next: States = [0; MODES];
        if matches!(unit.byte, b'[' | b'{') {
            // In block context any of these may open a collection.
            enter(&mut next, Mode::Token, 1);
        }
        for (mode, depth) in MODES_IN_ORDER.iter().zip(states) {
            if depth > 0 {
                step(*mode, depth, &unit, &mut next);
            }
        }
        deepest = deepest.max(next.iter().copied().max().unwrap_or(0));
        if deepest > limit {
            return Err(line);
        }
        states = next;
        if unit.byte == b'\n' {
            line += 1;
        }
        at += unit.len;
    }
    Ok(deepest)
}

const MODES_IN_ORDER: [Mode; MODES] = [
    Mode::Token,
    Mode::Plain,
    Mode::PlainBlank,
    Mode::Single,
    Mode::SingleQuote,
    Mode::Double,
    Mode::DoubleEscape,
    Mode::Comment,
    Mode::Word,
    Mode::Verbatim,
];

/// Per byte, the modes (as bits) in which it changes nothing: neither the mode nor the
/// depth, whatever follows. `[` and `{` are in none (in block context they may open a
/// collection), nor are the first bytes of multi-byte line breaks.
static STAYS: [u16; 256] = stays();

const fn stays() -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        let blank = matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0xC2 | 0xE2);
        let flow = matches!(b, b',' | b'[' | b']' | b'{' | b'}');
        let mut bits = 0u16;
        if matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
            bits |= 1 << Mode::Token as u16 | 1 << Mode::PlainBlank as u16;
        }
        if !blank && !flow && b != b':' {
            bits |= 1 << Mode::Plain as u16;
        }
        if b != b'\'' {
            bits |= 1 << Mode::Single as u16;
        }
        if b != b'\\' && b != b'"' {
            bits |= 1 << Mode::Double as u16;
        }
        if !matches!(b, b'\r' | b'\n' | 0xC2 | 0xE2) {
            bits |= 1 << Mode::Comment as u16;
        }
        if !blank && !flow {
            bits |= 1 << Mode::Word as u16;
        }
        if !blank && b != b'>' {
            bits |= 1 << Mode::Verbatim as u16;
        }
        if matches!(b, b'[' | b'{') {
            bits = 0;
        }
        table[byte] = bits;
        byte += 1;
    }
    table
}

/// One character as libyaml's scanner sees it: a byte, or a whole multi-byte line break.
struct Unit {
    byte: u8,
    len: usize,
    is_break: bool,
    /// The next character is a blank, a line break or the end of the text.
    blank_after: bool,
    /// The byte after this character, if any.
    after: Option<u8>,
}

impl Unit {
    fn at(bytes: &[u8], at: usize) -> Unit {
        let own_break = break_len(&bytes[at..]);
        let len = own_break.max(1);
        let rest = &bytes[at + len..];
        Unit {
            byte: bytes[at],
            len,
            is_break: own_break > 0,
            blank_after: rest.first().is_none_or(|b| matches!(b, b' ' | b'\t'))
                || break_len(rest) > 0,
            after: rest.first().copied(),
        }
    }

    fn is_blank(&self) -> bool {
        matches!(self.byte, b' ' | b'\t') || self.is_break
    }
}

/// libyaml's line breaks: CR, LF, NEL (U+0085), LS (U+2028), PS (U+2029).
fn break_len(bytes: &[u8]) -> usize {
    match bytes {
        [b'\r' | b'\n', ..] => 1,
        [0xC2, 0x85, ..] => 2,
        [0xE2, 0x80, 0xA8 | 0xA9, ..] => 3,
        _ => 0,
    }
}

fn enter(next: &mut States, mode: Mode, depth: usize) {
    let slot = &mut next[mode as usize];
    *slot = (*slot).max(depth);
}

/// Where a run in `mode` at `depth` goes on `unit`.
fn step(mode: Mode, depth: usize, unit: &Unit, next: &mut States) {
    match mode {
        Mode::Token => token(depth, unit, next),
        Mode::Plain | Mode::PlainBlank => {
            if unit.is_blank() {
                enter(next, Mode::PlainBlank, depth);
            } else if matches!(mode, Mode::PlainBlank) && unit.byte == b'#' {
                enter(next, Mode::Comment, depth);
            } else if matches!(unit.byte, b',' | b'[' | b']' | b'{' | b'}')
                || (unit.byte == b':' && unit.blank_after)
            {
                // The scalar ends here; the indicator is the next token.
                token(depth, unit, next);
            } else {
                enter(next, Mode::Plain, depth);
            }
        }
        Mode::Single => match unit.byte {
            b'\'' => enter(next, Mode::SingleQuote, depth),
            _ => enter(next, Mode::Single, depth),
        },
        Mode::SingleQuote => match unit.byte {
            b'\'' => enter(next, Mode::Single, depth),
            _ => token(depth, unit, next),
        },
        Mode::Double => match unit.byte {
            b'\\' => enter(next, Mode::DoubleEscape, depth),
            b'"' => enter(next, Mode::Token, depth),
            _ => enter(next, Mode::Double, depth),
        },
        Mode::DoubleEscape => enter(next, Mode::Double, depth),
        Mode::Comment => match unit.is_break {
            true => enter(next, Mode::Token, depth),
            false => enter(next, Mode::Comment, depth),
        },
        Mode::Word => {
            if unit.is_blank() || matches!(unit.byte, b',' | b'[' | b']' | b'{' | b'}') {
                token(depth, unit, next);
            } else {
                enter(next, Mode::Word, depth);
            }
        }
        Mode::Verbatim => {
            if unit.is_blank() {
                enter(next, Mode::Token, depth);
            } else if unit.byte == b'>' {
                enter(next, Mode::Word, depth);
            } else {
                enter(next, Mode::Verbatim, depth);
            }
        }
    }
}

/// libyaml's `fetch_next_token` inside a flow collection.
fn token(depth: usize, unit: &Unit, next: &mut States) {
    if unit.is_blank() {
        return enter(next, Mode::Token, depth);
    }
    match unit.byte {
        b'#' => enter(next, Mode::Comment, depth),
        b'[' | b'{' => enter(next, Mode::Token, depth + 1),
        // Back at depth 0 is block context, which is always assumed.
        b']' | b'}' if depth == 1 => {}
        b']' | b'}' => enter(next, Mode::Token, depth - 1),
        // `,`, and `?` and `:` are always indicators in flow context; the rest are errors.
        b',' | b'?' | b':' | b'|' | b'>' | b'%' | b'@' | b'`' => enter(next, Mode::Token, depth),
        b'-' if unit.blank_after => enter(next, Mode::Token, depth),
        b'*' | b'&' => enter(next, Mode::Word, depth),
        b'!' if unit.after == Some(b'<') => enter(next, Mode::Verbatim, depth),
        b'!' => enter(next, Mode::Word, depth),
        b'\'' => enter(next, Mode::Single, depth),
        b'"' => enter(next, Mode::Double, depth),
        _ => enter(next, Mode::Plain, depth),
    }
}

#[cfg(test)]
mod tests {
    use super::{scan, too_deep_at};
    use serde_yaml_ng::Value;

    fn depth_ok(text: &str) -> bool {
        too_deep_at(text).is_none()
    }

    #[test]
    fn counts_flow_nesting() {
        let nested = |n: usize| format!("a: {}1{}\n", "[".repeat(n), "]".repeat(n));
        assert!(depth_ok(&nested(64)));
        assert!(!depth_ok(&nested(65)));
        assert_eq!(too_deep_at(&format!("x: 1\n\n{}", nested(100))), Some(3));
        let maps = format!("a: {}1{}\n", "{a: ".repeat(65), "}".repeat(65));
        assert!(!depth_ok(&maps));
        // Balanced collections one after the other never add up.
        assert!(depth_ok(&"a: [[[1]], {b: [2]}]\n".repeat(10_000)));
    }

    #[test]
    fn brackets_in_scalars_and_comments_do_not_close_collections() {
        // Each would let a real `[` pass uncounted if its `]` were taken for a closer.
        for inner in ["\"]\"", "']'", "'it''s ]'", "\"\\\"]\"", "# ]\n", "!<a]>"] {
            let text = format!("a: {}", format!("[{inner}, ").repeat(65));
            assert!(!depth_ok(&text), "{inner:?} closed a collection");
        }
        // A quote inside a plain scalar is text, so what follows still counts.
        let text = format!("a: {}", "[it's ".repeat(65));
        assert!(!depth_ok(&text));
        // A comment ends at any of libyaml's line breaks.
        let text = format!("a: [ #c\u{85}{}", "[".repeat(65));
        assert!(!depth_ok(&text));
    }

    #[test]
    fn ordinary_files_pass() {
        let text = "# Valid options are [ True, False ]\n\
                    nova_ceph: \"{{ ['a', 'b'] | join(',') }}\"\n\
                    script: |\n  if [ -f x ]; then echo '['; fi\n\
                    pw: \"[[[[[[[[\"\n\
                    list: [1, 'two', {three: [3]}]\n";
        assert!(depth_ok(text));
    }

    fn value_depth(value: &Value) -> usize {
        match value {
            Value::Sequence(items) => 1 + items.iter().map(value_depth).max().unwrap_or(0),
            Value::Mapping(map) => {
                let keys = map.keys().map(value_depth).max().unwrap_or(0);
                1 + map.values().map(value_depth).max().unwrap_or(0).max(keys)
            }
            Value::Tagged(tagged) => value_depth(&tagged.value),
            _ => 0,
        }
    }

    /// xorshift64: random test input without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 as usize
        }
    }

    /// Random snippets of flow-ish YAML.
    fn snippets(seed: u64, count: usize, pieces: usize) -> impl Iterator<Item = String> {
        const PIECES: &[&str] = &[
            "[", "[", "{", "]", "}", ", ", ",", " ", "\n", "\n  ", "'", "''", "\"", "\\", "#", "a",
            "b c", "-", "- ", "!t ", "!<x]> ", "&x ", "\u{85}", "\u{2028}", "|", ">", "%", "{a: ",
            "[it's", "'[", "\"]", "# ]\n", "a:b", "a#b",
        ];
        // No `x: y` (inside `[...]` it is a mapping that opens no collection) and no aliases
        // (they nest without brackets): the nesting libyaml reports is all brackets.
        let mut rng = Rng(seed);
        (0..count).map(move |_| {
            let mut text = String::from("a: ");
            for _ in 0..(rng.next() % pieces) {
                text.push_str(PIECES[rng.next() % PIECES.len()]);
            }
            text
        })
    }

    /// On one line nothing but flow collections can nest, so whenever libyaml parses a
    /// snippet, the bound is at least the nesting it produced (the `a:` mapping aside).
    #[test]
    fn the_bound_is_never_below_what_libyaml_parses() {
        let mut parsed = 0;
        for text in snippets(0x9e37_79b9_7f4a_7c15, 60_000, 24) {
            if text.contains(['\n', '\u{85}', '\u{2028}']) {
                continue;
            }
            let Ok(value) = serde_yaml_ng::from_str::<Value>(&text) else {
                continue;
            };
            parsed += 1;
            let bound = scan(&text, usize::MAX).unwrap();
            let depth = value_depth(&value).saturating_sub(1);
            assert!(bound >= depth, "{text:?}: bound {bound} < depth {depth}");
        }
        assert!(parsed > 1000, "only {parsed} snippets parsed");
    }

    /// Valid deep nesting with tricky items between the levels (brackets in quoted scalars,
    /// comments, tags and plain scalars, line breaks of every kind): the bound sees every
    /// level that libyaml does.
    #[test]
    fn deep_nesting_between_tricky_items_is_always_seen() {
        const ITEMS: &[&str] = &[
            "'a]', ",
            "'it''s ]', ",
            "\"]\\\"]\", ",
            "# ] }\n",
            "it's, ",
            "a:b, ",
            "a#b, ",
            "!<x]> v, ",
            "&x v, ",
            "!t v, ",
            "k: v, ",
            "? k : v, ",
            "\u{85}",
            "\u{2028}",
            "\n  ",
            "b c, ",
            "\"a\\\n]\", ",
            "'\n]', ",
        ];
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for _ in 0..300 {
            let mut text = String::from("a: ");
            let mut closers = Vec::new();
            for level in 0..130 {
                if level % 2 == 0 {
                    text.push('[');
                    closers.push(']');
                    // Items go into sequences; in `{k: ...}` the next level is the value.
                    for _ in 0..2 {
                        let n = rng.next();
                        if !n.is_multiple_of(3) {
                            text.push_str(ITEMS[n / 3 % ITEMS.len()]);
                        }
                    }
                } else {
                    text.push_str("{k: ");
                    closers.push('}');
                }
            }
            text.push('x');
            text.extend(closers.iter().rev());
            let err = serde_yaml_ng::from_str::<Value>(&text)
                .unwrap_err()
                .to_string();
            assert!(err.contains("recursion limit exceeded"), "{text:?}: {err}");
            let bound = scan(&text, usize::MAX).unwrap();
            assert!(bound >= 130, "{text:?}: bound {bound}");
        }
    }
}
