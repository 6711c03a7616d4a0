//! `virtfleet-bench`: fleet-scale speed and memory of virtfleet, measured against the SSH
//! floors on the local lab (see docs/perf/README.md).
//!
//! For each size it brings up a lab with sleeping containers, then measures side by side: the
//! OpenSSH floor, the protocol floor, noop, push, rotate-all and rotate-all's hand-written
//! baseline, each `--runs` times, with wall time, controller CPU and peak RSS. Results go to
//! `docs/perf/` (results.json, results.md, time-vs-hosts.png).

mod fixture;
mod measure;
mod remote;
mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use clap::{Parser, Subcommand};
use virtfleet_lab::{Containers, Engine, LabOptions};

use fixture::{Expect, Fixture};
use measure::Sample;
use report::{Results, SizeResult};

#[derive(Parser)]
#[command(
    version,
    about = "Benchmark virtfleet against the SSH floors on the local lab (root)",
    after_help = "Exit status: 0 when every run was valid; 1 when a run was invalid (a host \
        failed) or the bench could not run. Targets met or missed are in results.md (its \
        `met` column), not in the exit status: the bench measures, it does not gate."
)]
struct Cli {
    /// Lab sizes to measure, comma-separated (each 1..=2032; above 254 only with
    /// --no-containers). Default: 10,50,100,200 (50 with --quick).
    #[arg(long, value_delimiter = ',')]
    hosts: Vec<usize>,
    /// Runs of the floors, push and noop (the median is reported; at least 3 for the
    /// published figures). They take seconds, so more runs cost little and steady the medians.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Runs of rotate-all and its baseline, direct ops (each takes minutes at 100+ hosts).
    #[arg(long, default_value_t = 3)]
    rotate_runs: usize,
    /// One size, 50 hosts, unless --hosts is given (finishes in under 10 minutes).
    #[arg(long)]
    quick: bool,
    /// The lab hosts' container engine: podman or docker.
    #[arg(long, default_value_t = Engine::Podman)]
    engine: Engine,
    /// Where results.json, results.md and time-vs-hosts.png go (default: docs/perf; under it
    /// docker/ for --engine docker, scale/ for --no-containers, bastion/ for --bastion: each
    /// kind of lab has its own record). Existing results of other sizes in results.json are
    /// kept, so a sweep can be built up size by size.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The virtfleet binary (default: the one next to this binary).
    #[arg(long)]
    virtfleet: Option<PathBuf>,
    /// The playbook the bench variant is made from (default: playbooks/kolla.yml of the
    /// source tree this binary was built from).
    #[arg(long)]
    playbook: Option<PathBuf>,
    /// Skip the per-phase breakdown.
    #[arg(long)]
    no_phases: bool,
    /// Skip rotate-all and direct ops (the slow pair): for quick looks at the other figures,
    /// with --out elsewhere, since the size's published record would lose them.
    #[arg(long)]
    no_rotate: bool,
    /// Hosts without containers (`virtfleet-lab up --no-containers`: sshd and files, podman
    /// a stand-in that records its calls), so 1,000 fit on this machine: push and noop only
    /// (restarts need real containers: measure them at 200 hosts and below).
    #[arg(long)]
    no_containers: bool,
    /// One more lab host as a bastion in front of the others: noop is also measured through
    /// it (ProxyJump from the inventory), alternating with the direct noop.
    #[arg(long)]
    bastion: bool,
    #[command(subcommand)]
    child: Option<Child>,
}

/// The bench's own SSH programs, run as measured child processes.
#[derive(Subcommand)]
enum Child {
    /// Protocol floor: connect + host key + auth + `true` to every lab host at once.
    #[command(hide = true)]
    ProtocolFloor {
        #[arg(long)]
        lab_dir: PathBuf,
    },
    /// rotate-all's container operations by hand, one round trip per host.
    #[command(hide = true)]
    DirectOps {
        #[arg(long)]
        lab_dir: PathBuf,
        #[arg(long)]
        engine: Engine,
    },
    /// Times each phase of a converge on all hosts at once and on one host alone.
    #[command(hide = true)]
    Phases {
        #[arg(long)]
        lab_dir: PathBuf,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        engine: Engine,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.child {
        Some(Child::ProtocolFloor { lab_dir }) => return remote::protocol_floor(lab_dir),
        Some(Child::DirectOps { lab_dir, engine }) => return remote::direct_ops(lab_dir, *engine),
        Some(Child::Phases {
            lab_dir,
            rounds,
            out,
            engine,
        }) => return remote::phases(lab_dir, *rounds, out, *engine),
        None => {}
    }
    match bench(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("some runs were invalid (a host failed): see results.md");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("virtfleet-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench(cli: &Cli) -> Result<bool, String> {
    let mut sizes = cli.hosts.clone();
    if sizes.is_empty() {
        sizes = if cli.quick {
            vec![50]
        } else {
            vec![10, 50, 100, 200]
        };
    }
    if cli.runs == 0 || cli.rotate_runs == 0 {
        return Err("--runs and --rotate-runs must be at least 1".into());
    }
    // The lab holds the bastion too (`--bastion`).
    let lab_hosts = |n: usize| n + usize::from(cli.bastion);
    if let Some(&big) = sizes
        .iter()
        .find(|&&n| lab_hosts(n) > 254 && !cli.no_containers)
    {
        return Err(format!(
            "{big} hosts{}: labs above 254 hosts have no containers (add --no-containers)",
            if cli.bastion { " and the bastion" } else { "" }
        ));
    }
    if let Some(&big) = sizes
        .iter()
        .find(|&&n| n == 0 || lab_hosts(n) > virtfleet_lab::MAX_HOSTS)
    {
        return Err(format!(
            "{big} hosts: a lab holds 1 to {} hosts{}",
            virtfleet_lab::MAX_HOSTS,
            if cli.bastion {
                ", the bastion among them"
            } else {
                ""
            }
        ));
    }
    if cli.no_containers && cli.engine != Engine::Podman {
        return Err("--no-containers stands in for podman only".into());
    }
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let virtfleet = match &cli.virtfleet {
        Some(p) => p.clone(),
        None => me.with_file_name("virtfleet"),
    };
    if !virtfleet.exists() {
        return Err(format!(
            "{} missing: build it with `cargo build --release -p virtfleet -p virtfleet-bench`",
            virtfleet.display()
        ));
    }
    let out = match &cli.out {
        Some(out) => out.clone(),
        None => default_out(cli),
    };
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let json = out.join("results.json");
    let mut results = Results::load(&json);
    let mut all_valid = true;
    for &hosts in &sizes {
        if let Some(old) = results.sizes.get(&hosts) {
            if old.containers != containers_kind(cli) {
                log(&format!(
                    "{}: the {hosts}-host record measured {} containers is replaced by one \
                     with {}",
                    json.display(),
                    old.containers,
                    containers_kind(cli)
                ));
            }
        }
        let size = measure_size(cli, hosts, &me, &virtfleet)?;
        all_valid &= size.invalid.is_empty();
        results.sizes.insert(hosts, size);
        // Save after every size, so a long sweep keeps what it measured.
        write_outputs(&results, &out)?;
    }
    let md = report::markdown(&results);
    println!("{md}");
    Ok(all_valid)
}

/// Where published results live: docs/perf.
const PERF_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/perf");

/// docs/perf, or its directory for this kind of lab: a size's record is replaced by the
/// next measurement of that size, so kinds do not share one.
fn default_out(cli: &Cli) -> PathBuf {
    let mut out = Path::new(PERF_DIR).to_path_buf();
    if cli.engine == Engine::Docker {
        out.push("docker");
    }
    if cli.no_containers {
        out.push("scale");
    }
    if cli.bastion {
        out.push("bastion");
    }
    out
}

/// What `SizeResult::containers` records for this run's lab.
fn containers_kind(cli: &Cli) -> &'static str {
    if cli.no_containers {
        "none"
    } else {
        "light"
    }
}

fn write_outputs(results: &Results, out: &Path) -> Result<(), String> {
    results.save(&out.join("results.json"))?;
    std::fs::write(out.join("results.md"), report::markdown(results))
        .map_err(|e| format!("results.md: {e}"))?;
    match report::plot(results, &out.join("time-vs-hosts.png")) {
        Ok(()) => {}
        Err(e) => eprintln!("{e}"),
    }
    Ok(())
}

fn log(msg: &str) {
    eprintln!("[bench] {msg}");
}

struct Recorder {
    size: SizeResult,
    per_host: BTreeMap<String, Vec<f64>>,
}

impl Recorder {
    fn record(&mut self, key: &str, run: usize, result: Result<(Sample, Option<f64>), String>) {
        match result {
            Ok((sample, per_host)) => {
                log(&format!(
                    "{} hosts {key} run {run}: {:.2} s wall, {:.2} s CPU, {:.1} MiB RSS",
                    self.size.hosts,
                    sample.wall,
                    sample.cpu,
                    sample.max_rss_kib as f64 / 1024.0
                ));
                self.size
                    .scenarios
                    .entry(key.to_string())
                    .or_default()
                    .push(sample);
                if let Some(s) = per_host {
                    self.per_host.entry(key.to_string()).or_default().push(s);
                }
            }
            Err(e) => {
                log(&format!(
                    "{} hosts {key} run {run}: INVALID: {e}",
                    self.size.hosts
                ));
                self.size.invalid.push(format!("{key} run {run}: {e}"));
            }
        }
    }

    fn finish(mut self) -> SizeResult {
        for (key, v) in self.per_host {
            self.size.per_host_seconds.insert(key, measure::stats(&v).0);
        }
        self.size
    }
}

fn measure_size(
    cli: &Cli,
    hosts: usize,
    me: &Path,
    virtfleet: &Path,
) -> Result<SizeResult, String> {
    let other_labs = virtfleet_lab::list();
    if !other_labs.is_empty() {
        log(&format!(
            "other labs are present ({other_labs:?}): the machine is shared, figures will be noisy"
        ));
    }
    let started = Instant::now();
    let (containers, kind) = match cli.no_containers {
        true => (Containers::StandIn, "container-less"),
        false => (Containers::Light, "light"),
    };
    let lab = LabOptions::new(hosts + usize::from(cli.bastion))
        .containers(containers)
        .engine(cli.engine)
        .up()
        .map_err(|e| e.to_string())?;
    log(&format!(
        "lab{} up with {hosts} {kind} {} hosts in {:.1} s",
        lab.id,
        cli.engine,
        started.elapsed().as_secs_f64()
    ));
    let through_bastion = match cli.bastion {
        true => Some(fixture::split_off_bastion(&lab)?),
        false => None,
    };
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../playbooks/kolla.yml");
    let fixture = Fixture::new(&lab, virtfleet, cli.playbook.as_deref().unwrap_or(&shipped))?;
    let run_log = std::env::temp_dir().join(format!("virtfleet-bench-{hosts}.log"));
    let _ = std::fs::remove_file(&run_log);
    log(&format!("child output goes to {}", run_log.display()));
    let mut rec = Recorder {
        size: SizeResult {
            hosts,
            engine: cli.engine.to_string(),
            containers: containers_kind(cli).into(),
            forks: remote::default_forks(hosts),
            measured_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            other_labs,
            ..SizeResult::default()
        },
        per_host: BTreeMap::new(),
    };
    let lab_dir = lab.dir().to_path_buf();
    let child = |name: &str| {
        let mut c = Command::new(me);
        c.arg(name).arg("--lab-dir").arg(&lab_dir);
        if name != "protocol-floor" {
            c.arg("--engine").arg(cli.engine.as_str());
        }
        c
    };
    let no_report = |r: Result<Sample, String>| r.map(|s| (s, None));

    // Warm-up (untimed): first connections after sshd start, page cache, podman state.
    let _ = measure::run_one(child("protocol-floor"), &run_log);

    // The floors are measured right before each push and each noop run, so drift in the
    // machine's load (podman's background work after restarts, page cache) hits all alike.
    let mut floor_run = 0;
    let mut measure_floors = |rec: &mut Recorder| {
        floor_run += 1;
        // A thousand `ssh` processes measure process start more than SSH: the container-less
        // sizes compare with the protocol floor only.
        if !cli.no_containers {
            // The fleet's hosts: not the bastion (`--bastion`), which is the lab's last.
            let ssh_all = lab
                .hosts
                .iter()
                .take(hosts)
                .map(|h| {
                    let mut c = lab.ssh_command(h);
                    c.arg("true");
                    c
                })
                .collect();
            rec.record(
                "openssh_floor",
                floor_run,
                no_report(measure::run_group(ssh_all, rec.size.forks, &run_log)),
            );
        }
        rec.record(
            "protocol_floor",
            floor_run,
            no_report(measure::run_one(child("protocol-floor"), &run_log)),
        );
    };

    let virtfleet_run_with =
        |inventory: &Path, args: &[&str], expect: Expect| {
            // On a non-zero exit, say which hosts failed and why (from virtfleet's report).
            let sample = measure::run_one(fixture.command_with(inventory, args), &run_log)
                .map_err(|e| match fixture.check_report(hosts, expect) {
                    Err(hosts) => format!("{hosts} ({e})"),
                    Ok(_) => e,
                })?;
            let per_host = fixture.check_report(hosts, expect)?;
            Ok((sample, Some(per_host)))
        };
    let virtfleet_run =
        |args: &[&str], expect: Expect| virtfleet_run_with(&fixture.inventory, args, expect);

    for run in 1..=cli.runs {
        fixture::reset_hosts(&lab)?;
        measure_floors(&mut rec);
        rec.record(
            "push",
            run,
            virtfleet_run(&["genconfig"], Expect::AllFilesNoRestart),
        );
    }
    // Apply what genconfig wrote (restarts everything): the converged state noop starts from.
    rec.record(
        "setup_deploy",
        1,
        virtfleet_run(&["deploy"], Expect::Converged),
    );
    for run in 1..=cli.runs {
        measure_floors(&mut rec);
        rec.record("noop", run, virtfleet_run(&["deploy"], Expect::NoChange));
        if let Some(inventory) = &through_bastion {
            let noop = virtfleet_run_with(inventory, &["deploy"], Expect::NoChange);
            rec.record("noop_bastion", run, noop);
        }
    }
    if !cli.no_phases {
        let out = std::env::temp_dir().join(format!("virtfleet-bench-phases-{hosts}.json"));
        let mut c = child("phases");
        c.arg("--out").arg(&out);
        match measure::run_one(c, &run_log) {
            Ok(_) => {
                rec.size.phases = std::fs::read_to_string(&out)
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok());
            }
            Err(e) => log(&format!("phases failed: {e}")),
        }
    }
    // Alternate rotate-all and its baseline, so drift in machine load hits both alike.
    let rotate = !cli.no_rotate && !cli.no_containers;
    for run in (1..=cli.rotate_runs).filter(|_| rotate) {
        fixture.change_ca()?;
        rec.record(
            "rotate_all",
            run,
            virtfleet_run(&["deploy"], Expect::RestartBoth),
        );
        rec.record(
            "direct_ops",
            run,
            no_report(measure::run_one(child("direct-ops"), &run_log)),
        );
    }
    // A final noop proves the fleet is converged after all that (not timed).
    if let Err(e) = virtfleet_run(&["deploy"], Expect::NoChange) {
        rec.size
            .invalid
            .push(format!("final noop after rotate-all: {e}"));
    }
    let started = Instant::now();
    let id = lab.id;
    lab.down().map_err(|e| e.to_string())?;
    log(&format!(
        "lab{id} down in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(rec.finish())
}
