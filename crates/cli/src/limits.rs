//! The open-files limit. A run holds one socket per host worked on at once (`--forks`), and
//! after gathering facts one per host until its converge (the connection is kept, so a host
//! costs one login per run). Past 1,000 or so that passes the usual soft limit of 1,024,
//! while the hard limit allows far more: the soft limit is raised to what the run needs, as
//! far as the hard limit allows.

/// Descriptors a run holds besides its connections: stdio, the runtime's epoll and wakers,
/// files read and written on the workstation, jump hosts.
pub const BESIDE_CONNECTIONS: u64 = 64;

/// Raises the soft RLIMIT_NOFILE to `connections` + [`BESIDE_CONNECTIONS`] when it is lower,
/// up to the hard limit; a warning when even the hard limit is short.
pub fn ensure_open_files(connections: usize) {
    let need = connections as u64 + BESIDE_CONNECTIONS;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a plain struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 || limit.rlim_cur >= need {
        return;
    }
    let raised = need.min(limit.rlim_max);
    let wanted = libc::rlimit {
        rlim_cur: raised,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: as above; the soft limit only goes up, within the hard one.
    if raised > limit.rlim_cur && unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } != 0 {
        return;
    }
    if raised < need {
        eprintln!(
            "warning: this run may hold {connections} connections at once and needs about \
             {need} open files, but the hard limit (`ulimit -Hn`) is {}: connections beyond it \
             will fail; lower --forks, split the run with --limit, or raise the hard limit",
            limit.rlim_max
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn the_soft_limit_rises_to_what_the_connections_need_and_never_falls() {
        let before = limits();
        // A low soft limit, as on many workstations (lowering it is always allowed).
        let low = libc::rlimit {
            rlim_cur: 512.min(before.rlim_max),
            rlim_max: before.rlim_max,
        };
        // SAFETY: setrlimit with a valid pointer, the soft limit within the hard one.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) }, 0);
        ensure_open_files(0);
        assert_eq!(limits().rlim_cur, low.rlim_cur, "never lowered");
        ensure_open_files(1000);
        assert_eq!(
            limits().rlim_cur,
            (1000 + BESIDE_CONNECTIONS).min(before.rlim_max)
        );
        // SAFETY: as above, back to where it was.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &before) };
    }
}
