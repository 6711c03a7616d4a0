//! The open-files limit of a run. A run holds one socket per host worked on at once
//! (`--forks`), and after gathering facts one per host until its converge (the connection is
//! kept, so a host costs one login per run): at most one per targeted host, across all the
//! plays of a run (they share one pool of kept connections). Under a limit too low for that,
//! fewer connections are kept and the other hosts log in again to converge, if they have
//! anything to change (a host whose probe, read with its facts, shows nothing to do is not
//! reached again while that probe is fresh).

use std::sync::atomic::{AtomicBool, Ordering};

use virtfleet_ssh::{SessionPool, FDS_BESIDE_CONNECTIONS};

/// Raises the soft limit for a connection to each of `hosts` at once (`sockets` of them: a
/// host behind a jump host is a channel of the jump host's connection) beside those `pool`
/// keeps already; at least `forks` (each host worked on may hold a descriptor of its own
/// for a while: the agent's socket while it logs in, a rotation gate's TLS connection).
/// When the hard limit is lower, caps `pool` to what fits beside `forks` working
/// connections (saying so once per process); Err when not even `forks` fit.
pub fn ensure_open_files(
    hosts: usize,
    sockets: usize,
    forks: usize,
    forks_given: bool,
    pool: &SessionPool,
) -> Result<(), String> {
    static WARNED: AtomicBool = AtomicBool::new(false);
    let forks = forks.min(hosts);
    let wanted = sockets.max(forks).saturating_add(pool.parked());
    let short = match virtfleet_ssh::raise_open_files_limit(wanted) {
        // Each host holds one connection at most, working or kept: all fit.
        Ok(_) => {
            pool.limit_parked(usize::MAX);
            return Ok(());
        }
        Err(short) => short,
    };
    let working = (forks as u64).saturating_add(FDS_BESIDE_CONNECTIONS);
    let Some(kept) = short.limit.checked_sub(working) else {
        let remedy = match forks {
            1 => "raise the limit",
            _ => "lower --forks, or raise the limit",
        };
        let forks = match forks_given {
            true => format!("--forks {forks}"),
            false => format!("{forks} hosts at once (--forks, default: the hosts, at most 100)"),
        };
        return Err(format!(
            "{forks} needs about {working} open files, but {}: {remedy}",
            short.why
        ));
    };
    pool.limit_parked(usize::try_from(kept).unwrap_or(usize::MAX));
    if !WARNED.swap(true, Ordering::Relaxed) {
        eprintln!(
            "warning: keeping each host's connection from facts to converge would need \
             about {} open files, but {}: at most {kept} kept; a host whose connection was \
             not kept logs in a second time if it is reached again (to change it, or in a \
             later batch or play)",
            short.need, short.why
        );
    }
    Ok(())
}
