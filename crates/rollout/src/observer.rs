//! What a rollout tells whoever watches it (the CLI's progress bar and lines). The rollout
//! decides what happened; the observer only renders it.

use std::time::Duration;

use virtfleet_engine::{Event, HostReport};

/// A step of a rollout worth showing.
#[derive(Debug)]
pub enum Note<'a> {
    /// A fleet-wide phase starts (a CA rollover has three).
    Phase {
        title: &'a str,
    },
    /// A batch starts: its number, the number of batches in this phase, its hosts.
    Batch {
        number: usize,
        of: usize,
        hosts: &'a [String],
    },
    /// The batch has finished, `failed` of its `hosts` failed.
    BatchDone {
        number: usize,
        of: usize,
        failed: usize,
        hosts: usize,
    },
    Pausing(Duration),
    /// The failure budget is spent: later hosts are skipped, untouched.
    Stopping {
        failed: usize,
        attempted: usize,
        percent: u8,
    },
    /// A host's final result in its batch. `gate` holds the health gate's observations
    /// when the rollout gates hosts (rotation), None otherwise.
    Host {
        host: &'a str,
        report: &'a HostReport,
        gate: Option<&'a [String]>,
    },
    /// Something that did not stop the rollout but the operator should know.
    Warning(String),
}

pub trait Observer: Sync {
    fn note(&self, note: Note<'_>);
    /// The engine's per-host events (phases, details, hosts done), as they happen.
    fn event(&self, event: &Event);
}
