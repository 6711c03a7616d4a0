//! What the operator sees: a live progress bar per batch, one line per changed or failed
//! host, batch and phase lines, a summary, and the JSON report. One renderer for every
//! command that rolls out over hosts.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use virtfleet_engine::{Event, HostReport, Status};
use virtfleet_rollout::{Note, Observer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

/// Renders a rollout's notes and engine events.
pub struct Progress {
    command: &'static str,
    verbosity: Verbosity,
    /// Rotation names every batch (its plan is shown batch by batch); others only when
    /// there is more than one.
    number_every_batch: bool,
    state: Mutex<BarState>,
}

#[derive(Default)]
struct BarState {
    bar: Option<ProgressBar>,
    /// Where each running host is, for the bar's message.
    phases: BTreeMap<String, &'static str>,
}

impl Progress {
    pub fn new(command: &'static str, verbosity: Verbosity, number_every_batch: bool) -> Self {
        Progress {
            command,
            verbosity,
            number_every_batch,
            state: Mutex::new(BarState::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, BarState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Prints a line above the bar. `suspend`, not the bar's `println`: a hidden bar
    /// (output not a terminal: cron, CI, a log file) drops what `println` gives it.
    fn line(&self, line: &str) {
        let line = terminal_safe(line);
        match &self.state().bar {
            Some(bar) => bar.suspend(|| println!("{line}")),
            None => println!("{line}"),
        }
    }

    fn say(&self, line: &str) {
        if self.verbosity > Verbosity::Quiet {
            self.line(line);
        }
    }

    fn start_bar(&self, hosts: usize) {
        let bar = if self.verbosity == Verbosity::Quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(hosts as u64)
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{bar:30}] {pos}/{len} hosts  {elapsed}  {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        let mut state = self.state();
        if let Some(old) = state.bar.replace(bar) {
            old.finish_and_clear();
        }
        state.phases.clear();
    }

    fn host(&self, host: &str, report: &HostReport, gate: Option<&[String]>) {
        let line = match (report.status, gate) {
            (Status::Failed | Status::Unreachable, _) => Some(format!(
                "{host}: {} {}",
                status_name(report.status),
                report.error.as_deref().unwrap_or("")
            )),
            (Status::Changed, Some(_)) if self.verbosity > Verbosity::Quiet => Some(format!(
                "{host}: rotated ({}); gate passed",
                what_changed(report)
            )),
            // `check` changes nothing: it says what a deploy would do.
            (Status::Changed, None)
                if self.verbosity > Verbosity::Quiet && self.command == "check" =>
            {
                Some(format!(
                    "{host}: would change ({})",
                    what_would_change(report)
                ))
            }
            (Status::Changed, None) if self.verbosity > Verbosity::Quiet => {
                Some(format!("{host}: changed ({})", what_changed(report)))
            }
            // Taken over from kolla-ansible: worth saying even when nothing changed.
            (Status::Ok, None)
                if self.verbosity > Verbosity::Quiet && !report.adopted.is_empty() =>
            {
                let verb = match self.command == "check" {
                    true => "would adopt",
                    false => "adopted",
                };
                Some(format!(
                    "{host}: ok ({verb} {} without a restart)",
                    report.adopted.join(", ")
                ))
            }
            (Status::Ok, Some(_)) if self.verbosity == Verbosity::Verbose => {
                Some(format!("{host}: already current"))
            }
            (Status::Ok, None) if self.verbosity == Verbosity::Verbose => {
                Some(format!("{host}: ok"))
            }
            _ => None,
        };
        if let Some(line) = line {
            self.line(&line);
        }
        if self.verbosity == Verbosity::Verbose {
            for note in gate.unwrap_or_default() {
                self.line(&format!("{host}: gate: {note}"));
            }
        }
    }
}

impl Observer for Progress {
    fn note(&self, note: Note<'_>) {
        match note {
            Note::Phase { title } => self.say(title),
            Note::Batch { number, of, hosts } => {
                if of > 1 || self.number_every_batch {
                    self.say(&format!("batch {number}/{of}: {}", hosts.join(", ")));
                }
                self.start_bar(hosts.len());
            }
            Note::BatchDone {
                number,
                of,
                failed,
                hosts,
            } => {
                if let Some(bar) = self.state().bar.take() {
                    bar.finish_and_clear();
                }
                if of > 1 || self.number_every_batch {
                    self.say(&format!(
                        "batch {number}/{of} done: {failed} of {hosts} hosts failed"
                    ));
                }
            }
            Note::Pausing(pause) => self.say(&format!("pausing {} s", pause.as_secs())),
            Note::Stopping {
                failed,
                attempted,
                percent,
            } => self.line(&format!(
                "{}: stopping: {failed} of {attempted} hosts attempted failed (more than \
                 {percent}%); the remaining hosts are skipped, untouched",
                self.command
            )),
            Note::Host { host, report, gate } => self.host(host, report, gate),
            Note::Warning(warning) => {
                let warning = terminal_safe(&warning);
                let state = self.state();
                match &state.bar {
                    Some(bar) => bar.suspend(|| eprintln!("warning: {warning}")),
                    None => eprintln!("warning: {warning}"),
                }
            }
        }
    }

    fn event(&self, event: &Event) {
        let mut state = self.state();
        match event {
            Event::Phase { host, phase } => {
                state.phases.insert(host.clone(), phase.name());
            }
            Event::Detail { host, detail } => {
                if self.verbosity == Verbosity::Verbose {
                    let detail = terminal_safe(detail);
                    match &state.bar {
                        Some(bar) => bar.suspend(|| println!("{host}: {detail}")),
                        None => println!("{host}: {detail}"),
                    }
                }
            }
            Event::Done { host, .. } => {
                state.phases.remove(host);
                if let Some(bar) = &state.bar {
                    bar.inc(1);
                }
            }
        }
        let message = phase_summary(&state.phases);
        if let Some(bar) = &state.bar {
            bar.set_message(message);
        }
    }
}

/// `text` with every control or invisible formatting character escaped but newlines and tabs:
/// lines of it come from hosts (stderr, files in `--diff`) and must not drive the terminal.
pub fn terminal_safe(text: &str) -> String {
    text.split('\n')
        .map(|line| {
            line.split('\t')
                .map(virtfleet_pki::display_safe)
                .collect::<Vec<_>>()
                .join("\t")
        })
        .collect::<Vec<_>>()
        .join("\n")
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

/// e.g. "3 files; reloaded <service>".
fn what_changed(report: &HostReport) -> String {
    what_happened(report, false)
}

/// e.g. "3 files; would reload <service>": what a `check` found a deploy would do.
fn what_would_change(report: &HostReport) -> String {
    what_happened(report, true)
}

fn what_happened(report: &HostReport, would: bool) -> String {
    let mut parts = vec![match report.changed_files.len() {
        1 => "1 file".to_string(),
        n => format!("{n} files"),
    }];
    for (services, done) in [
        (&report.restarted, "restarted"),
        (&report.reloaded, "reloaded"),
        (&report.adopted, "adopted"),
    ] {
        if !services.is_empty() {
            let verb = match would {
                true => format!("would {}", done.trim_end_matches("ed")),
                false => done.to_string(),
            };
            parts.push(format!("{verb} {}", services.join(", ")));
        }
    }
    parts.join("; ")
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

/// Prints the summary, writes the report; the exit status: 0 when every host is ok or
/// changed, 1 otherwise (or when the report cannot be written).
/// The line that starts one play of a run with several playbooks.
pub fn play_header(command: &str, play: &crate::args::GlobalArgs) {
    let path = play.playbook.first().map(|p| p.display().to_string());
    println!("{command}: playbook {}", path.unwrap_or_default());
}

/// Adds a play's results to the run's: a host in several plays gets one entry (see
/// `HostReport::combine`).
pub fn combine(reports: &mut BTreeMap<String, HostReport>, more: BTreeMap<String, HostReport>) {
    for (host, report) in more {
        let merged = match reports.remove(&host) {
            Some(earlier) => earlier.combine(report),
            None => report,
        };
        reports.insert(host, merged);
    }
}

pub fn finish(
    global: &crate::args::GlobalArgs,
    command: &str,
    reports: &BTreeMap<String, HostReport>,
) -> std::process::ExitCode {
    let summary = Summary::of(reports);
    println!("{command}: {}", summary.line());
    if let Some(path) = &global.report {
        if let Err(e) = write_report(path, command, reports) {
            eprintln!("error: cannot write report {}: {e}", path.display());
            return std::process::ExitCode::FAILURE;
        }
    }
    if summary.all_good() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::terminal_safe;

    #[test]
    fn host_text_reaches_the_terminal_escaped_but_lines_and_tabs_stay() {
        let host_stderr = "line one\n\x1b]0;owned\x07\tkey = v\u{202e}lave\r\nend";
        assert_eq!(
            terminal_safe(host_stderr),
            "line one\n\\x1b]0;owned\\x07\tkey = v\\u{202e}lave\\r\nend"
        );
        assert_eq!(terminal_safe("plain\ttext\n"), "plain\ttext\n");
    }
}
