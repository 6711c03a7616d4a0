//! What the operator sees: a live progress bar, one line per changed or failed host, a
//! summary, and the JSON report.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio::sync::mpsc::UnboundedReceiver;
use virtfleet_engine::{Event, HostReport, Status};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

/// Drains engine events into a progress bar until the run ends.
pub async fn show_progress(
    mut events: UnboundedReceiver<Event>,
    total: usize,
    verbosity: Verbosity,
) {
    let bar = if verbosity == Verbosity::Quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} hosts  {elapsed}  {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut phases: BTreeMap<String, &'static str> = BTreeMap::new();
    while let Some(event) = events.recv().await {
        match event {
            Event::Phase { host, phase } => {
                phases.insert(host, phase.name());
            }
            // `suspend`, not `println`: a hidden bar (output not a terminal: cron, CI, a log
            // file) drops what `println` gives it, and these lines are the run's record.
            Event::Detail { host, detail } => {
                if verbosity == Verbosity::Verbose {
                    bar.suspend(|| println!("{host}: {detail}"));
                }
            }
            Event::Done { host, report } => {
                phases.remove(&host);
                bar.inc(1);
                if let Some(line) = host_line(&host, &report, verbosity) {
                    bar.suspend(|| println!("{line}"));
                }
            }
        }
        bar.set_message(phase_summary(&phases));
    }
    bar.finish_and_clear();
}

/// e.g. "push 3, restart 12": where the hosts still running are.
fn phase_summary(phases: &BTreeMap<String, &'static str>) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for phase in phases.values() {
        *counts.entry(phase).or_default() += 1;
    }
    counts
        .iter()
        .map(|(p, n)| format!("{p} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn host_line(host: &str, report: &HostReport, verbosity: Verbosity) -> Option<String> {
    match report.status {
        Status::Failed | Status::Unreachable => Some(format!(
            "{host}: {} {}",
            status_name(report.status),
            report.error.as_deref().unwrap_or("")
        )),
        Status::Changed if verbosity > Verbosity::Quiet => {
            let mut parts = vec![format!("{} files", report.changed_files.len())];
            if !report.restarted.is_empty() {
                parts.push(format!("restarted {}", report.restarted.join(", ")));
            }
            if !report.reloaded.is_empty() {
                parts.push(format!("reloaded {}", report.reloaded.join(", ")));
            }
            Some(format!("{host}: changed ({})", parts.join("; ")))
        }
        Status::Ok if verbosity == Verbosity::Verbose => Some(format!("{host}: ok")),
        _ => None,
    }
}

pub fn status_name(status: Status) -> &'static str {
    match status {
        Status::Ok => "ok",
        Status::Changed => "changed",
        Status::Failed => "failed",
        Status::Unreachable => "unreachable",
        Status::Skipped => "skipped",
    }
}

#[derive(Serialize, Default)]
pub struct Summary {
    pub ok: usize,
    pub changed: usize,
    pub failed: usize,
    pub unreachable: usize,
    #[serde(skip_serializing_if = "is_zero")]
    pub skipped: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Summary {
    pub fn of(reports: &BTreeMap<String, HostReport>) -> Summary {
        let mut s = Summary::default();
        for r in reports.values() {
            match r.status {
                Status::Ok => s.ok += 1,
                Status::Changed => s.changed += 1,
                Status::Failed => s.failed += 1,
                Status::Unreachable => s.unreachable += 1,
                Status::Skipped => s.skipped += 1,
            }
        }
        s
    }

    pub fn line(&self) -> String {
        let mut line = format!(
            "ok={} changed={} failed={} unreachable={}",
            self.ok, self.changed, self.failed, self.unreachable
        );
        if self.skipped > 0 {
            line.push_str(&format!(" skipped={}", self.skipped));
        }
        line
    }

    pub fn all_good(&self) -> bool {
        self.failed == 0 && self.unreachable == 0 && self.skipped == 0
    }
}

#[derive(Serialize)]
struct Report<'a> {
    command: &'a str,
    hosts: &'a BTreeMap<String, HostReport>,
    summary: Summary,
}

pub fn write_report(
    path: &Path,
    command: &str,
    reports: &BTreeMap<String, HostReport>,
) -> std::io::Result<()> {
    let report = Report {
        command,
        hosts: reports,
        summary: Summary::of(reports),
    };
    let mut text = serde_json::to_string_pretty(&report).expect("report serialises");
    text.push('\n');
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let mut tmp = tempfile::NamedTempFile::new_in(dir.unwrap_or(Path::new(".")))?;
    tmp.write_all(text.as_bytes())?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
