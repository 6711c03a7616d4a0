//! The open-files limit of a run. A run holds one socket per host worked on at once
//! (`--forks`), and after gathering facts one per host until its converge (the connection is
//! kept, so a host costs one login per run): at most one per targeted host. Under a limit too
//! low for that, fewer connections are kept and the other hosts log in again to converge.

use std::sync::atomic::{AtomicBool, Ordering};

use virtfleet_ssh::{SessionPool, FDS_BESIDE_CONNECTIONS};

/// Raises the soft limit for a connection to each of `hosts` at once. When the hard limit
/// is lower, `pool` keeps only as many connections as fit beside `forks` working ones (and
/// says so once per process); Err when not even `forks` connections fit.
pub fn ensure_open_files(hosts: usize, forks: usize, pool: &SessionPool) -> Result<(), String> {
    static WARNED: AtomicBool = AtomicBool::new(false);
    let Err(short) = virtfleet_ssh::raise_open_files_limit(hosts) else {
        return Ok(());
    };
    let working = (forks as u64).saturating_add(FDS_BESIDE_CONNECTIONS);
    let Some(kept) = short.limit.checked_sub(working) else {
        return Err(format!(
            "--forks {forks} needs about {working} open files, but {}: lower --forks, or \
             raise the limit",
            short.why
        ));
    };
    pool.limit_parked(usize::try_from(kept).unwrap_or(usize::MAX));
    if !WARNED.swap(true, Ordering::Relaxed) {
        eprintln!(
            "warning: keeping the connection to each of {hosts} hosts from facts to converge \
             needs about {} open files, but {}: connections kept: {kept}; the other hosts \
             log in a second time",
            short.need, short.why
        );
    }
    Ok(())
}
