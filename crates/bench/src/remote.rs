//! The bench's own SSH programs, run as child processes of the bench so that their wall time,
//! CPU and RSS are measured exactly like virtfleet's: the protocol floor, the direct container
//! operations (rotate-all's baseline) and the per-phase cost breakdown.
//!
//! All use `virtfleet_ssh::Session` with the options virtfleet's CLI uses
//! (`ClientOptions::default()` plus the lab's known_hosts), one connection per host, all hosts
//! at once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use virtfleet_lab::Engine;
use virtfleet_ssh::{ClientOptions, Session, Target};

/// The SASL password of the bench's config dir (a throwaway lab secret).
pub const SASL_PASSWORD: &str = "Bench-Sasl-Secret-42";

/// Hosts of a lab, read from the inventory the lab wrote (`name ansible_host=ADDR` lines).
pub fn lab_targets(lab_dir: &Path) -> Result<Vec<Target>, String> {
    let inventory = lab_dir.join("inventory");
    let text =
        std::fs::read_to_string(&inventory).map_err(|e| format!("{}: {e}", inventory.display()))?;
    let key = lab_dir.join("id_ed25519");
    let mut targets = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some(name), Some(addr)) = (words.next(), words.next()) else {
            continue;
        };
        if let Some(address) = addr.strip_prefix("ansible_host=") {
            let mut target = Target::new(name, address, "root");
            target.key_file = Some(key.clone());
            targets.push(target);
        }
    }
    if targets.is_empty() {
        return Err(format!("no hosts in {}", inventory.display()));
    }
    Ok(targets)
}

/// What virtfleet's CLI uses, with the lab's known_hosts.
pub fn client_options(lab_dir: &Path) -> ClientOptions {
    ClientOptions {
        known_hosts: lab_dir.join("known_hosts"),
        ..ClientOptions::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    // The same runtime flavour as virtfleet's CLI.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Hosts worked on at once: virtfleet's default `--forks` (every host, at most 100), so the
/// floors and the baseline keep the concurrency virtfleet keeps.
pub fn default_forks(hosts: usize) -> usize {
    hosts.clamp(1, 100)
}

/// Runs `per_host` for every target, [`default_forks`] at a time; returns the failures as
/// `host: error` lines.
fn for_all_hosts<F, Fut>(lab_dir: &Path, per_host: F) -> Vec<String>
where
    F: Fn(Target, Arc<ClientOptions>) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let targets = match lab_targets(lab_dir) {
        Ok(t) => t,
        Err(e) => return vec![e],
    };
    let opts = Arc::new(client_options(lab_dir));
    let permits = Arc::new(tokio::sync::Semaphore::new(default_forks(targets.len())));
    runtime().block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for target in targets {
            let label = target.label.clone();
            let fut = per_host(target, opts.clone());
            let permits = permits.clone();
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await.map_err(|e| e.to_string())?;
                fut.await.map_err(|e| format!("{label}: {e}"))
            });
        }
        let mut failures = Vec::new();
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(e),
                Err(e) => failures.push(format!("task: {e}")),
            }
        }
        failures
    })
}

fn finish(what: &str, failures: Vec<String>) -> std::process::ExitCode {
    if failures.is_empty() {
        return std::process::ExitCode::SUCCESS;
    }
    eprintln!("{what}: {} hosts failed", failures.len());
    for f in failures {
        eprintln!("  {f}");
    }
    std::process::ExitCode::FAILURE
}

/// The protocol floor: connect, check the host key, authenticate, run `true`, close.
pub fn protocol_floor(lab_dir: &Path) -> std::process::ExitCode {
    let failures = for_all_hosts(lab_dir, |target, opts| async move {
        let session = Session::connect(&target, &opts)
            .await
            .map_err(|e| e.to_string())?;
        let out = session.exec("true", b"").await.map_err(|e| e.to_string())?;
        session.close().await;
        if out.success() {
            Ok(())
        } else {
            Err(format!("`true` exited {}", out.status))
        }
    });
    finish("protocol floor", failures)
}

/// The container operations of a rotation, written by hand in one round trip per host:
/// restart nova_libvirt, poll the readiness check (the bench playbook's: `true` in the
/// container, 40 × 250 ms), (re)create the SASL user with the password on stdin, restart
/// nova_compute.
pub fn direct_ops_script(engine: &str, ready: &str) -> String {
    format!(
        "set -e\n\
         {engine} restart nova_libvirt >/dev/null\n\
         i=0\n\
         until {engine} exec nova_libvirt {ready} >/dev/null 2>&1; do\n  \
           i=$((i+1)); [ $i -lt 40 ] || {{ echo 'nova_libvirt not ready' >&2; exit 3; }}\n  \
           sleep 0.25\n\
         done\n\
         {engine} exec -i nova_libvirt saslpasswd2 -c -p -a libvirt nova\n\
         {engine} restart nova_compute >/dev/null\n"
    )
}

pub fn direct_ops(lab_dir: &Path, engine: Engine) -> std::process::ExitCode {
    let script: Arc<str> = direct_ops_script(engine.as_str(), "true").into();
    let failures = for_all_hosts(lab_dir, move |target, opts| {
        let script = script.clone();
        async move {
            let session = Session::connect(&target, &opts)
                .await
                .map_err(|e| e.to_string())?;
            let out = session
                .exec(&script, SASL_PASSWORD.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            session.close().await;
            if out.success() {
                Ok(())
            } else {
                Err(format!(
                    "exit {}: {}",
                    out.status,
                    out.stderr_lossy().trim()
                ))
            }
        }
    });
    finish("direct ops", failures)
}

/// Every file and marker the nova-libvirt playbook manages with TLS + SASL on.
pub const MANAGED: [(&str, &[&str]); 2] = [
    (
        "nova-libvirt",
        &[
            "libvirtd.conf",
            "qemu.conf",
            "sasl.conf",
            "auth.conf",
            "cacert.pem",
            "servercert.pem",
            "serverkey.pem",
            "clientcert.pem",
            "clientkey.pem",
            "config.json",
        ],
    ),
    (
        "nova-compute",
        &[
            "nova.conf",
            "auth.conf",
            "cacert.pem",
            "clientcert.pem",
            "clientkey.pem",
            "config.json",
        ],
    ),
];

/// Where the push phases write (a scratch tree, never the managed files).
const SCRATCH: &str = "/etc/kolla/virtfleet-bench-scratch";

/// The 16 files of a TLS + SASL host with realistic sizes, under [`SCRATCH`].
fn scratch_files() -> Vec<virtfleet_plan::DesiredFile> {
    MANAGED
        .iter()
        .flat_map(|(dir, files)| {
            files.iter().map(move |f| virtfleet_plan::DesiredFile {
                path: format!("{SCRATCH}/{dir}/{f}"),
                content: vec![b'x'; if f.ends_with(".pem") { 1800 } else { 600 }],
                mode: 0o600,
                owner: None,
                secret: false,
                sha256: String::new(),
                source: Default::default(),
                merge: None,
                role: None,
                cert_set: None,
            })
        })
        .collect()
}

const CONTAINERS: [&str; 2] = ["nova_libvirt", "nova_compute"];

/// The container IDs as the probe reads them (the engine's store where exact, else
/// `inspect`): the probe's script with no files and no markers.
pub fn store_ids_script(engine: Engine) -> String {
    virtfleet_engine::script::probe(
        &[],
        &[],
        &[],
        engine.as_str(),
        &CONTAINERS,
        virtfleet_engine::script::Facts::None,
    )
    .command()
}

/// `<engine> inspect` of both containers, in the probe's own output format.
fn inspect_ids(engine: Engine) -> String {
    format!(
        "{engine} inspect --format 'C {{{{.Name}}}} {{{{.Id}}}}' {}",
        CONTAINERS.join(" ")
    )
}

/// The commands whose cost the phase breakdown measures, in the order run.
pub fn phase_commands(engine: Engine) -> Vec<(String, String, Vec<u8>)> {
    let paths: Vec<String> = MANAGED
        .iter()
        .flat_map(|(dir, files)| files.iter().map(move |f| format!("/etc/kolla/{dir}/{f}")))
        .collect();
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    let markers = [
        "/etc/kolla/nova-libvirt/.virtfleet-applied",
        "/etc/kolla/nova-compute/.virtfleet-applied",
    ];
    // The files the playbook merges with the host's version (read whole by the probe).
    let merged = [
        "/etc/kolla/nova-libvirt/config.json",
        "/etc/kolla/nova-compute/nova.conf",
        "/etc/kolla/nova-compute/config.json",
    ];
    let probe_with = |engine| {
        virtfleet_engine::script::probe(
            &paths,
            &merged,
            &markers,
            engine,
            &CONTAINERS,
            virtfleet_engine::script::Facts::None,
        )
    };
    // As the engine sends them: on stdin of `sh -s`.
    let stdin_script = |script: virtfleet_engine::script::Script| script.for_stdin();
    let probe = stdin_script(probe_with(engine.as_str()));
    // The same script with the container engine replaced by `true`: no engine process.
    let probe_files_only = stdin_script(probe_with("true"));
    // ... and with `inspect` for the container IDs (the probe before the store read).
    let probe_inspect = String::from_utf8(probe_files_only.clone())
        .expect("the probe is text")
        .replace(
            "\nexit 0\n",
            &format!("\n{}\nexit 0\n", inspect_ids(engine)),
        )
        .into_bytes();
    let store = match engine {
        Engine::Podman => "podman's containers.json",
        Engine::Docker => "docker's config.v2.json files",
    };
    let files = scratch_files();
    let refs: Vec<&virtfleet_plan::DesiredFile> = files.iter().collect();
    let push_stdin = virtfleet_engine::script::push(&refs, None);
    let plain = |name: String, command: String| (name, command, Vec::new());
    let on_stdin = |name: &str, script: Vec<u8>| {
        let command = virtfleet_engine::script::STDIN_COMMAND.to_string();
        (name.to_string(), command, script)
    };
    let mut out: Vec<(String, String, Vec<u8>)> = vec![
        plain("exec `true` (bare round trip)".into(), "true".into()),
        on_stdin(
            "probe, engine's current script (files, markers, container IDs)",
            probe,
        ),
        on_stdin("probe, files and markers only", probe_files_only),
        on_stdin(
            &format!("probe with `{engine} inspect` for the container IDs"),
            probe_inspect,
        ),
        plain(
            format!("`{engine} inspect` of both containers alone"),
            inspect_ids(engine),
        ),
        plain(
            format!("container IDs from {store} alone (the probe's store read)"),
            store_ids_script(engine),
        ),
        plain(
            format!("`{engine} exec nova_libvirt true` (one readiness check)"),
            format!("{engine} exec nova_libvirt true"),
        ),
        plain(
            format!("`{engine} restart nova_compute`"),
            format!("{engine} restart nova_compute >/dev/null"),
        ),
    ];
    out.push((
        "push of 16 files, engine's script (scratch dir)".into(),
        virtfleet_engine::script::STDIN_COMMAND.to_string(),
        push_stdin,
    ));
    out.push((
        "(cleanup of the scratch dir)".into(),
        format!("rm -rf {SCRATCH}"),
        Vec::new(),
    ));
    out
}

/// Whether the probe's store read found every container, from the store itself (not
/// through `inspect`), with the IDs `inspect` gives; an explanation when not.
fn store_matches_inspect(store: &str, inspect: &str) -> Result<(), String> {
    use virtfleet_engine::state::HostState;
    use virtfleet_engine::wire::Tag;
    if store.lines().any(|l| Tag::Container.strip(l).is_some()) {
        return Err(format!("the store read fell back to inspect: {store}"));
    }
    let (a, b) = (HostState::parse(store), HostState::parse(inspect));
    if a.containers.len() == CONTAINERS.len() && a.containers == b.containers {
        Ok(())
    } else {
        Err(format!(
            "store {:?} / inspect {:?}",
            a.containers, b.containers
        ))
    }
}

#[derive(Debug, Serialize)]
pub struct PhaseTiming {
    pub phase: String,
    /// Wall seconds for all hosts at once (fleet-wide), median of the rounds.
    pub all_hosts_wall: f64,
    /// Busy CPU seconds of the whole machine per host while all hosts ran it (controller,
    /// sshd, shells, the engine and its daemons), median of the rounds.
    pub cpu_per_host: Option<f64>,
    /// Wall seconds on one host alone, median of the rounds.
    pub one_host_wall: f64,
}

/// Times each phase on all hosts at once and on one host alone; prints JSON to `out`.
pub fn phases(
    lab_dir: &Path,
    rounds: usize,
    out: &PathBuf,
    engine: Engine,
) -> std::process::ExitCode {
    let targets = match lab_targets(lab_dir) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let opts = client_options(lab_dir);
    let commands = phase_commands(engine);
    let hosts = targets.len() as f64;
    let result = runtime().block_on(async {
        let mut timings = Vec::new();
        let mut all_connect = Vec::new();
        let mut one_connect = Vec::new();
        let mut all_cmd = vec![Vec::new(); commands.len()];
        let mut all_cpu = vec![Vec::new(); commands.len()];
        let mut one_cmd = vec![Vec::new(); commands.len()];
        for _ in 0..rounds.max(1) {
            // All hosts at once.
            let started = Instant::now();
            let sessions = connect_all(&targets, &opts).await?;
            all_connect.push(started.elapsed().as_secs_f64());
            // The first channel of a connection costs more (untimed warm-up).
            exec_all(&sessions, "true", b"").await?;
            for (i, (_, command, stdin)) in commands.iter().enumerate() {
                let cpu = crate::measure::machine_busy_seconds();
                all_cmd[i].push(exec_all(&sessions, command, stdin).await?);
                all_cpu[i].push((crate::measure::machine_busy_seconds() - cpu) / hosts);
            }
            close_all(sessions).await;
            // One host alone.
            let started = Instant::now();
            let session = Session::connect(&targets[0], &opts)
                .await
                .map_err(|e| e.to_string())?;
            one_connect.push(started.elapsed().as_secs_f64());
            let sessions = vec![Arc::new(session)];
            exec_all(&sessions, "true", b"").await?;
            for (i, (_, command, stdin)) in commands.iter().enumerate() {
                one_cmd[i].push(exec_all(&sessions, command, stdin).await?);
            }
            close_all(sessions).await;
        }
        let median = |v: &[f64]| crate::measure::stats(v).0;
        timings.push(PhaseTiming {
            phase: "connect + host key + auth".into(),
            all_hosts_wall: median(&all_connect),
            cpu_per_host: None,
            one_host_wall: median(&one_connect),
        });
        for (i, (name, _, _)) in commands.iter().enumerate() {
            timings.push(PhaseTiming {
                phase: name.to_string(),
                all_hosts_wall: median(&all_cmd[i]),
                cpu_per_host: Some(median(&all_cpu[i])),
                one_host_wall: median(&one_cmd[i]),
            });
        }
        // Does the store read agree with inspect on every host? (Else the cheap way is no way.)
        let sessions = connect_all(&targets, &opts).await?;
        let mut disagree = Vec::new();
        for s in &sessions {
            let run = |command: String| async move {
                s.exec(&command, b"")
                    .await
                    .map(|o| o.stdout_lossy().into_owned())
                    .map_err(|e| e.to_string())
            };
            let store = run(store_ids_script(engine)).await?;
            let inspect = run(inspect_ids(engine)).await?;
            if let Err(e) = store_matches_inspect(&store, &inspect) {
                disagree.push(format!("{}: {e}", s.host()));
            }
        }
        close_all(sessions).await;
        for d in &disagree {
            eprintln!("phases: {d}");
        }
        Ok::<_, String>(serde_json::json!({
            "hosts": targets.len(),
            "rounds": rounds,
            "engine": engine.as_str(),
            "phases": timings,
            "store_ids_match_inspect": disagree.is_empty(),
        }))
    });
    match result {
        Ok(json) => {
            if let Err(e) = std::fs::write(out, format!("{json:#}\n")) {
                eprintln!("{}: {e}", out.display());
                return std::process::ExitCode::FAILURE;
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("phases: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// One session per target, all open at once.
async fn connect_all(
    targets: &[Target],
    opts: &ClientOptions,
) -> Result<Vec<Arc<Session>>, String> {
    virtfleet_ssh::raise_open_files_limit(targets.len())
        .map_err(|short| format!("{} sessions at once: {short}", targets.len()))?;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, t) in targets.iter().enumerate() {
        let (t, o) = (t.clone(), opts.clone());
        tasks.spawn(async move { (i, Session::connect(&t, &o).await) });
    }
    let mut sessions: Vec<Option<Arc<Session>>> = (0..targets.len()).map(|_| None).collect();
    while let Some(done) = tasks.join_next().await {
        let (i, s) = done.map_err(|e| e.to_string())?;
        sessions[i] = Some(Arc::new(s.map_err(|e| e.to_string())?));
    }
    Ok(sessions.into_iter().flatten().collect())
}

async fn close_all(sessions: Vec<Arc<Session>>) {
    for s in sessions {
        if let Ok(s) = Arc::try_unwrap(s) {
            s.close().await;
        }
    }
}

/// Runs `command` on every session at once; wall seconds until the last finished.
async fn exec_all(sessions: &[Arc<Session>], command: &str, stdin: &[u8]) -> Result<f64, String> {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for s in sessions {
        let (s, c, i) = (s.clone(), command.to_string(), stdin.to_vec());
        tasks.spawn(async move {
            let out = s
                .exec_with_timeout(&c, &i, Duration::from_secs(120))
                .await
                .map_err(|e| e.to_string())?;
            if out.success() {
                Ok(())
            } else {
                Err(format!(
                    "{}: `{}` exited {}: {}",
                    s.host(),
                    c.lines().next().unwrap_or(""),
                    out.status,
                    out.stderr_lossy().trim()
                ))
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| e.to_string())??;
    }
    Ok(started.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inspect_variant_of_the_probe_runs_the_engines_inspect() {
        for engine in [Engine::Podman, Engine::Docker] {
            let commands = phase_commands(engine);
            // The probes go as the engine sends them: `sh -s`, the script on stdin.
            let script = |i: usize| {
                assert_eq!(commands[i].1, virtfleet_engine::script::STDIN_COMMAND);
                String::from_utf8(commands[i].2.clone()).unwrap()
            };
            let inspect = script(3);
            assert!(
                inspect.contains(&format!("\n{engine} inspect ")),
                "{inspect}"
            );
            assert!(!script(2).contains("vf_containers podman"));
            assert!(!script(2).contains("vf_containers docker"));
            assert!(script(1).contains(&format!("vf_containers {engine} ")));
            assert!(commands[5].1.contains(&format!("vf_containers {engine} ")));
            assert!(commands[7].1.starts_with(&format!("{engine} restart ")));
        }
    }

    #[test]
    fn store_ids_count_only_when_read_from_the_store_and_equal_to_inspect() {
        let inspect = "C /nova_libvirt a1\nC /nova_compute b2\n";
        assert!(store_matches_inspect("D nova_libvirt a1\nD nova_compute b2\n", inspect).is_ok());
        let json = "J [{\"id\":\"a1\",\"names\":[\"nova_libvirt\"]},{\"id\":\"b2\",\"names\":[\"nova_compute\"]}]\n";
        assert!(store_matches_inspect(json, inspect).is_ok());
        assert!(
            store_matches_inspect(inspect, inspect).is_err(),
            "a fallback"
        );
        assert!(store_matches_inspect("D nova_libvirt a1\nD nova_compute b3\n", inspect).is_err());
        assert!(store_matches_inspect("D nova_libvirt a1\n", inspect).is_err());
    }

    #[test]
    fn direct_ops_keep_the_password_off_the_command_line() {
        let script = direct_ops_script("podman", "true");
        assert!(!script.contains(SASL_PASSWORD));
        assert!(script.contains("podman exec -i nova_libvirt saslpasswd2 -c -p -a libvirt nova"));
    }
}
