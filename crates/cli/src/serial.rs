//! `--serial`: how many hosts a rollout touches at once.

/// Batched rollout for deploy, reconfigure and genconfig (kolla-ansible's `kolla_serial`).
#[derive(clap::Args, Debug, Clone, Copy, Default)]
pub struct RolloutArgs {
    /// Hosts per batch, a number or a percentage of the targeted hosts; each batch finishes
    /// before the next starts. Default: every host at once (bounded by --forks).
    #[arg(long, value_parser = Serial::parse)]
    pub serial: Option<Serial>,
    /// With --serial: stop once more than this percentage of the hosts attempted so far
    /// failed; the hosts of later batches are skipped, untouched.
    #[arg(long, default_value_t = 0, requires = "serial",
          value_parser = clap::value_parser!(u8).range(0..=100))]
    pub max_fail_percentage: u8,
}

impl RolloutArgs {
    /// True once `failed` of `attempted` hosts is more than the failure budget allows.
    pub fn over_budget(&self, failed: usize, attempted: usize) -> bool {
        over_budget(failed, attempted, self.max_fail_percentage)
    }
}

/// Ansible's `max_fail_percentage`: more than `percent` of the hosts attempted have failed.
pub fn over_budget(failed: usize, attempted: usize, percent: u8) -> bool {
    failed * 100 > usize::from(percent) * attempted
}

#[derive(Debug, Clone, Copy)]
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
        let rollout = |pct| RolloutArgs {
            serial: Some(Serial::Hosts(1)),
            max_fail_percentage: pct,
        };
        assert!(!rollout(0).over_budget(0, 3));
        assert!(rollout(0).over_budget(1, 3));
        assert!(!rollout(50).over_budget(1, 2), "exactly 50% is within 50%");
        assert!(rollout(50).over_budget(2, 3));
        assert!(!rollout(100).over_budget(3, 3));
    }
}
