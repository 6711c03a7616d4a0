//! The open-files limit of a run. A run holds one socket per host worked on at once
//! (`--forks`), and after gathering facts one per host until its converge (the connection is
//! kept, so a host costs one login per run): at most one per targeted host.

use std::sync::atomic::{AtomicBool, Ordering};

/// Raises the soft limit for a connection to each of `hosts` at once; warns once per
/// process when it cannot be raised far enough.
pub fn ensure_open_files(hosts: usize) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if let Err(short) = virtfleet_ssh::raise_open_files_limit(hosts) {
        if !WARNED.swap(true, Ordering::Relaxed) {
            eprintln!(
                "warning: this run may hold a connection to each of its {hosts} hosts at once: \
                 {short}; connections beyond the limit will fail: split the run with --limit, \
                 or raise the limit"
            );
        }
    }
}
