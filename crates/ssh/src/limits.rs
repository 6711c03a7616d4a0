//! The open-files limit. Each connection is one socket; a process holding one per host of
//! a large fleet passes the usual soft limit of 1,024, while the hard limit allows far more:
//! the soft limit is raised to what the connections need, as far as the hard limit allows.

/// Open descriptors a process holds besides one per connection (each session is one
/// socket): stdio, the runtime's epoll and wakers, files read and written on the
/// workstation, jump hosts. A run over N hosts, each connection kept, needs about N + this.
pub const FDS_BESIDE_CONNECTIONS: u64 = 64;

/// What to do with the soft limit `soft` (hard limit `hard`) for a run that needs `need`
/// descriptors.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Enough,
    /// Raise the soft limit to this (the need, or the hard limit when that is lower).
    Raise(u64),
    /// The soft limit already is the hard limit, and that is short.
    Short,
}

fn decide(soft: u64, hard: u64, need: u64) -> Decision {
    if soft >= need {
        Decision::Enough
    } else if soft < hard {
        Decision::Raise(need.min(hard))
    } else {
        Decision::Short
    }
}

/// Raises the soft RLIMIT_NOFILE to `connections` + [`FDS_BESIDE_CONNECTIONS`] when it is
/// lower, up to the hard limit; never lowers it. Ok: the soft limit now in effect (at least
/// the need). Err says why the process may still run out of descriptors (the hard limit is
/// short, or raising failed), what it needs and what it has.
pub fn raise_open_files_limit(connections: usize) -> Result<u64, OpenFilesShort> {
    let need = (connections as u64).saturating_add(FDS_BESIDE_CONNECTIONS);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit with a valid pointer to a plain struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        // Unknown: as if unlimited (the kernel still has the last word).
        return Ok(u64::MAX);
    }
    let (why, have) = match decide(limit.rlim_cur, limit.rlim_max, need) {
        Decision::Enough => return Ok(limit.rlim_cur),
        Decision::Raise(to) => {
            let wanted = libc::rlimit {
                rlim_cur: to,
                rlim_max: limit.rlim_max,
            };
            // SAFETY: as above; the soft limit only goes up, within the hard one.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } != 0 {
                let why = format!(
                    "the soft limit (`ulimit -n`, {}) could not be raised: {}",
                    limit.rlim_cur,
                    std::io::Error::last_os_error()
                );
                (why, limit.rlim_cur)
            } else if to == need {
                return Ok(to);
            } else {
                let why = format!("the hard limit (`ulimit -Hn`) is {}", limit.rlim_max);
                (why, to)
            }
        }
        Decision::Short => {
            let why = format!("the hard limit (`ulimit -Hn`) is {}", limit.rlim_max);
            (why, limit.rlim_cur)
        }
    };
    Err(OpenFilesShort {
        need,
        limit: have,
        why,
    })
}

/// The open-files limit a process could not raise far enough.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenFilesShort {
    /// Descriptors needed: the connections plus [`FDS_BESIDE_CONNECTIONS`].
    pub need: u64,
    /// The soft limit in effect now: what the process has.
    pub limit: u64,
    /// What stands in the way, e.g. "the hard limit (`ulimit -Hn`) is 1024".
    pub why: String,
}

impl std::fmt::Display for OpenFilesShort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "about {} open files are needed, but {}",
            self.need, self.why
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_rises_to_the_need_within_the_hard_one_and_never_falls() {
        assert_eq!(decide(1024, 4096, 1000), Decision::Enough);
        assert_eq!(decide(1024, 4096, 1064), Decision::Raise(1064));
        assert_eq!(decide(1024, 2048, 5000), Decision::Raise(2048));
        assert_eq!(decide(2048, 2048, 5000), Decision::Short);
        assert_eq!(decide(u64::MAX, u64::MAX, u64::MAX), Decision::Enough);
    }

    fn limits() -> libc::rlimit {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit with a valid pointer.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        limit
    }

    /// Other tests run beside this one: the limit goes down by one descriptor only, and
    /// comes back through the code under test.
    #[test]
    fn a_run_needing_more_descriptors_raises_the_soft_limit() {
        let before = limits();
        let lowered = libc::rlimit {
            rlim_cur: before.rlim_cur - 1,
            rlim_max: before.rlim_max,
        };
        // SAFETY: setrlimit with a valid pointer; lowering the soft limit is always allowed.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0);
        raise_open_files_limit(0).unwrap();
        assert_eq!(limits().rlim_cur, lowered.rlim_cur, "never lowered");
        raise_open_files_limit((before.rlim_cur - FDS_BESIDE_CONNECTIONS) as usize).unwrap();
        assert_eq!(limits().rlim_cur, before.rlim_cur);
    }
}
