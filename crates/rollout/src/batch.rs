//! Batches (`--serial`) and the failure budget (`--max-fail-percentage`), for every command
//! that rolls out over hosts.

/// Hosts per batch: a number, or a percentage of the targeted hosts (kolla_serial).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serial {
    Hosts(usize),
    Percent(u32),
}

impl Serial {
    pub fn parse(text: &str) -> Result<Serial, String> {
        let bad =
            || format!("{text:?}: expected a number of hosts (e.g. 2) or a percentage (e.g. 10%)");
        match text.strip_suffix('%') {
            Some(p) => match p.trim().parse::<u32>() {
                Ok(p) if (1..=100).contains(&p) => Ok(Serial::Percent(p)),
                _ => Err(bad()),
            },
            None => match text.trim().parse::<usize>() {
                Ok(n) if n > 0 => Ok(Serial::Hosts(n)),
                _ => Err(bad()),
            },
        }
    }

    /// Hosts per batch out of `hosts` targeted; a percentage rounds down, but never to 0.
    pub fn batch_size(self, hosts: usize) -> usize {
        match self {
            Serial::Hosts(n) => n,
            Serial::Percent(p) => hosts * p as usize / 100,
        }
        .max(1)
    }
}

/// Ansible's `max_fail_percentage`: more than `percent` of the hosts attempted have failed.
pub fn over_budget(failed: usize, attempted: usize, percent: u8) -> bool {
    failed * 100 > usize::from(percent) * attempted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_counts_hosts_or_a_percentage_of_them() {
        let size = |text: &str, hosts| Serial::parse(text).unwrap().batch_size(hosts);
        assert_eq!(size("2", 6), 2);
        assert_eq!(size("50%", 6), 3);
        assert_eq!(size("10%", 6), 1, "rounds down but never to 0");
        assert_eq!(size("100%", 6), 6);
        for bad in ["0", "0%", "101%", "x", "-1", "%"] {
            assert!(Serial::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_failure_budget_is_a_share_of_the_hosts_attempted() {
        assert!(!over_budget(0, 3, 0));
        assert!(over_budget(1, 3, 0));
        assert!(!over_budget(1, 2, 50), "exactly 50% is within 50%");
        assert!(over_budget(2, 3, 50));
        assert!(!over_budget(3, 3, 100));
    }
}
