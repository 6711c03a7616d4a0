//! Inventory host patterns: `name`, `name:port`, and ranges like `compute[01:03]` or `db-[a:c]`
//! (Ansible's `begin:end[:step]`, zero padding kept when `begin` has a leading zero).

use std::net::Ipv6Addr;

use crate::limits::MAX_HOSTS;

/// Host names a pattern stands for, and the port it names, if any. A pattern standing for
/// more than [`MAX_HOSTS`] names is refused before any name is made.
pub(crate) fn expand_host_pattern(pattern: &str) -> Result<(Vec<String>, Option<u16>), String> {
    let (host, port) = split_port(pattern)?;
    let parts = parse_ranges(host)?;
    let count = parts
        .iter()
        .try_fold(1usize, |count, part| count.checked_mul(part.len()?))
        .filter(|count| *count <= MAX_HOSTS)
        .ok_or_else(|| {
            format!("host pattern {pattern:?} expands to more than {MAX_HOSTS} hosts")
        })?;
    let mut names = Vec::with_capacity(count);
    names.push(String::new());
    for part in &parts {
        names = match part {
            Part::Text(text) => names.into_iter().map(|n| n + text).collect(),
            Part::Items(items) => cross(&names, items.iter().cloned()),
            Part::Numbers(numbers) => cross(&names, numbers.iter()),
        };
    }
    Ok((names, port))
}

/// Every name followed by every item, in that order.
fn cross(names: &[String], items: impl Iterator<Item = String> + Clone) -> Vec<String> {
    let mut out = Vec::new();
    for name in names {
        out.extend(items.clone().map(|item| format!("{name}{item}")));
    }
    out
}

/// A pattern split at its ranges: `db-[a:c]x` is `db-`, the letters a to c, `x`.
enum Part<'a> {
    Text(&'a str),
    Items(Vec<String>),
    Numbers(Numbers),
}

#[derive(Clone, Copy)]
struct Numbers {
    begin: u64,
    end: u64,
    step: u64,
    /// Zero-padded to this width (0: no padding).
    width: usize,
}

impl Numbers {
    /// How many numbers, if that fits a `usize`.
    fn len(&self) -> Option<usize> {
        usize::try_from((self.end - self.begin) / self.step)
            .ok()?
            .checked_add(1)
    }

    fn iter(self) -> impl Iterator<Item = String> + Clone {
        let width = self.width;
        let step = usize::try_from(self.step).unwrap_or(usize::MAX);
        (self.begin..=self.end)
            .step_by(step)
            .map(move |n| format!("{n:0width$}"))
    }
}

impl Part<'_> {
    fn len(&self) -> Option<usize> {
        match self {
            Part::Text(_) => Some(1),
            Part::Items(items) => Some(items.len()),
            Part::Numbers(numbers) => numbers.len(),
        }
    }
}

fn split_port(pattern: &str) -> Result<(&str, Option<u16>), String> {
    if pattern.parse::<Ipv6Addr>().is_ok() {
        return Ok((pattern, None));
    }
    if let Some(rest) = pattern.strip_prefix('[') {
        if let Some((addr, port)) = rest.split_once("]:") {
            if addr.parse::<Ipv6Addr>().is_ok() {
                return Ok((addr, Some(parse_port(pattern, port)?)));
            }
        }
    }
    let colons = colons_outside_brackets(pattern);
    match colons.as_slice() {
        [] => Ok((pattern, None)),
        [at] => {
            let port = &pattern[at + 1..];
            if port.is_empty() {
                return Err(format!(
                    "host pattern {pattern:?} ends in ':', which is reserved for a port"
                ));
            }
            Ok((&pattern[..*at], Some(parse_port(pattern, port)?)))
        }
        _ => Err(format!("host pattern {pattern:?} has more than one ':'")),
    }
}

fn parse_port(pattern: &str, port: &str) -> Result<u16, String> {
    port.parse::<u16>()
        .map_err(|_| format!("host pattern {pattern:?} has an invalid port {port:?}"))
}

fn colons_outside_brackets(s: &str) -> Vec<usize> {
    let mut depth = 0usize;
    let mut found = Vec::new();
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ':' if depth == 0 => found.push(i),
            _ => {}
        }
    }
    found
}

fn parse_ranges(pattern: &str) -> Result<Vec<Part<'_>>, String> {
    let mut parts = Vec::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('[') {
        let close = rest[open..]
            .find(']')
            .map(|i| open + i)
            .ok_or_else(|| format!("host pattern {pattern:?} has '[' without ']'"))?;
        if rest[..open].contains(']') {
            return Err(format!("host pattern {pattern:?} has ']' without '['"));
        }
        parts.push(Part::Text(&rest[..open]));
        let range = range_part(&rest[open + 1..close])
            .map_err(|e| format!("host pattern {pattern:?}: {e}"))?;
        parts.push(range);
        rest = &rest[close + 1..];
    }
    if rest.contains(']') {
        return Err(format!("host pattern {pattern:?} has ']' without '['"));
    }
    parts.push(Part::Text(rest));
    Ok(parts)
}

fn range_part(range: &str) -> Result<Part<'static>, String> {
    let parts: Vec<&str> = range.split(':').collect();
    let (begin, end, step) = match parts.as_slice() {
        [b, e] => (*b, *e, 1),
        [b, e, s] => (
            *b,
            *e,
            s.parse::<u64>()
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(|| format!("range step {s:?} is not a positive number"))?,
        ),
        _ => return Err("a host range must be begin:end or begin:end:step".into()),
    };
    let begin = if begin.is_empty() { "0" } else { begin };
    if end.is_empty() {
        return Err("a host range must specify an end value".into());
    }
    if let (Ok(b), Ok(e)) = (begin.parse::<u64>(), end.parse::<u64>()) {
        if b > e {
            return Err("a host range must have begin <= end".into());
        }
        let width = if begin.len() > 1 && begin.starts_with('0') {
            if begin.len() != end.len() {
                return Err("a zero-padded host range needs begin and end of equal length".into());
            }
            begin.len()
        } else {
            0
        };
        return Ok(Part::Numbers(Numbers {
            begin: b,
            end: e,
            step,
            width,
        }));
    }
    letter_range(begin, end, step).map(Part::Items)
}

/// Ansible orders letters as `a..z` then `A..Z`.
fn letter_range(begin: &str, end: &str, step: u64) -> Result<Vec<String>, String> {
    const LETTERS: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let index = |s: &str| (s.len() == 1).then(|| LETTERS.find(s)).flatten();
    match (index(begin), index(end)) {
        (Some(b), Some(e)) if b <= e => Ok(LETTERS[b..=e]
            .chars()
            .step_by(usize::try_from(step).unwrap_or(usize::MAX))
            .map(String::from)
            .collect()),
        (Some(_), Some(_)) => Err("a host range must have begin <= end".into()),
        _ => Err(format!(
            "range [{begin}:{end}] is neither numeric nor single letters"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::expand_host_pattern;

    fn names(p: &str) -> Vec<String> {
        expand_host_pattern(p).unwrap().0
    }

    #[test]
    fn plain_names_and_ports() {
        assert_eq!(
            expand_host_pattern("compute01").unwrap(),
            (vec!["compute01".into()], None)
        );
        assert_eq!(
            expand_host_pattern("compute01:2222").unwrap(),
            (vec!["compute01".into()], Some(2222))
        );
        assert_eq!(
            expand_host_pattern("fe80::1").unwrap(),
            (vec!["fe80::1".into()], None)
        );
        assert_eq!(
            expand_host_pattern("[fe80::1]:22").unwrap(),
            (vec!["fe80::1".into()], Some(22))
        );
        assert!(expand_host_pattern("compute01:")
            .unwrap_err()
            .contains("reserved for a port"));
        assert!(expand_host_pattern("compute01:ssh")
            .unwrap_err()
            .contains("invalid port"));
    }

    #[test]
    fn numeric_ranges_keep_padding() {
        assert_eq!(
            names("compute[01:03]"),
            ["compute01", "compute02", "compute03"]
        );
        assert_eq!(names("n[8:10]"), ["n8", "n9", "n10"]);
        assert_eq!(names("n[1:7:3]"), ["n1", "n4", "n7"]);
        assert_eq!(names("r[1:2]-[a:b]"), ["r1-a", "r1-b", "r2-a", "r2-b"]);
        assert_eq!(expand_host_pattern("c[1:2]:22").unwrap().1, Some(22));
    }

    #[test]
    fn letter_ranges_and_errors() {
        assert_eq!(names("db-[a:c]"), ["db-a", "db-b", "db-c"]);
        assert!(expand_host_pattern("c[3:1]")
            .unwrap_err()
            .contains("begin <= end"));
        assert!(expand_host_pattern("c[1:]")
            .unwrap_err()
            .contains("end value"));
        assert!(expand_host_pattern("c[1]")
            .unwrap_err()
            .contains("begin:end"));
        assert!(expand_host_pattern("c[01:3]")
            .unwrap_err()
            .contains("equal length"));
        assert!(expand_host_pattern("c[1:3")
            .unwrap_err()
            .contains("without ']'"));
    }

    #[test]
    fn huge_ranges_are_refused_before_expanding() {
        for pattern in [
            "c[0:99999999999]",
            "c[0:18446744073709551615]",
            "c[0:999]-[0:999]",
            "[a:z][a:z][a:z][a:z]",
        ] {
            let err = expand_host_pattern(pattern).unwrap_err();
            assert!(err.contains("more than 100000 hosts"), "{pattern}: {err}");
        }
        assert_eq!(names("c[1:100000]").len(), 100_000);
        assert_eq!(
            names("c[0:18446744073709551615:9223372036854775807]").len(),
            3
        );
    }
}
