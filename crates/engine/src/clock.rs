//! The container start times the engines print, as seconds since the epoch.

/// `State.StartedAt` as `docker inspect` (RFC 3339: `2026-12-02T01:23:45.123456789Z`,
/// or `+01:00`) or `podman inspect` (Go's time format: `2026-12-02 01:23:45.123 +0000 UTC`)
/// prints it; fractions of a second dropped. None for anything else.
pub fn parse_engine_time(text: &str) -> Option<i64> {
    let text = text.trim();
    let (date, rest) = (text.get(..10)?, text.get(10..)?);
    let rest = rest.strip_prefix(['T', ' '])?;
    let (time, rest) = (rest.get(..8)?, rest.get(8..)?);
    let number = |s: &str| -> Option<i64> {
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let [year, month, day] = fields(date, '-').map(|f| f.and_then(number));
    let [hour, minute, second] = fields(time, ':').map(|f| f.and_then(number));
    // Fractions, then the zone: `Z`, `±HH:MM`, or ` ±HHMM NAME`.
    let rest = rest.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    let zone = rest.trim_start();
    let offset = if zone.starts_with('Z') {
        0
    } else {
        let sign = match zone.as_bytes().first()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let digits: String = zone[1..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == ':')
            .filter(char::is_ascii_digit)
            .collect();
        if digits.len() != 4 {
            return None;
        }
        sign * (number(&digits[..2])? * 3600 + number(&digits[2..])? * 60)
    };
    let (month, day) = (month?, day?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let days = days_from_civil(year?, month, day);
    Some(days * 86_400 + hour? * 3600 + minute? * 60 + second? - offset)
}

fn fields(text: &str, separator: char) -> [Option<&str>; 3] {
    let mut parts = text.split(separator);
    let three = [parts.next(), parts.next(), parts.next()];
    match parts.next() {
        Some(_) => [None; 3],
        None => three,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::parse_engine_time as parse;

    #[test]
    fn both_engines_formats_and_their_zones() {
        // date -d 2026-12-02T01:23:45Z +%s
        let at = 1_796_174_625;
        assert_eq!(parse("2026-12-02T01:23:45.123456789Z"), Some(at));
        assert_eq!(parse("2026-12-02T01:23:45Z"), Some(at));
        assert_eq!(parse("2026-12-02T02:23:45.5+01:00"), Some(at));
        assert_eq!(parse("2026-12-02 01:23:45.123456789 +0000 UTC"), Some(at));
        assert_eq!(parse("2026-12-01 20:23:45.1 -0500 EST"), Some(at));
        assert_eq!(parse("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse("2000-03-01T00:00:00Z"), Some(951_868_800));
        // A container never started: long ago, so never "after its files".
        assert!(parse("0001-01-01T00:00:00Z").unwrap() < 0);
        assert!(parse("0001-01-01 00:00:00 +0000 UTC").unwrap() < 0);
    }

    #[test]
    fn anything_else_is_none() {
        for bad in [
            "",
            "yesterday",
            "2026-12-02",
            "2026-13-02T01:23:45Z",
            "2026-12-02T01:23:45",
            "2026-12-02X01:23:45Z",
            "2026-1a-02T01:23:45Z",
            "2026-12-02T01:23:45 +01",
            "<no value>",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
