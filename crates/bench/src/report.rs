//! Results: raw samples (results.json, merged across invocations so a sweep can be built up
//! size by size), the markdown table (results.md) and the plot (time-vs-hosts.png).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::measure::{stats, Sample};

/// Scenario keys in table order, with their display names.
pub const SCENARIOS: [(&str, &str); 8] = [
    (
        "openssh_floor",
        "OpenSSH floor (`ssh host true`, forks at a time)",
    ),
    (
        "protocol_floor",
        "protocol floor (russh: connect+auth+`true`)",
    ),
    ("noop", "noop (`virtfleet deploy`, nothing changed)"),
    (
        "noop_bastion",
        "noop through one bastion (ProxyJump in the inventory)",
    ),
    ("push", "push (`virtfleet genconfig`, all 16 files new)"),
    (
        "rotate_all",
        "rotate-all (`virtfleet deploy` after a CA change)",
    ),
    (
        "direct_ops",
        "direct ops (rotate-all's container ops by hand, russh)",
    ),
    (
        "setup_deploy",
        "(setup) first `virtfleet deploy` after push",
    ),
];

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SizeResult {
    pub hosts: usize,
    /// The lab hosts' container engine (results from before engines were recorded: podman).
    #[serde(default = "podman")]
    pub engine: String,
    /// What runs in the lab's containers: `light` (they sleep) or `none` (a stand-in engine:
    /// no restart is measured).
    #[serde(default = "light")]
    pub containers: String,
    /// Hosts worked on at once by virtfleet, the floors and the baseline.
    #[serde(default)]
    pub forks: usize,
    /// When measured (seconds since the epoch).
    pub measured_at: u64,
    /// Other labs present right before the measurement (a non-empty list means shared CPU).
    pub other_labs: Vec<u32>,
    pub scenarios: BTreeMap<String, Vec<Sample>>,
    /// Mean per-host seconds from virtfleet's report, per scenario (median over runs).
    pub per_host_seconds: BTreeMap<String, f64>,
    /// Invalid runs (a failed host or a failed command): never counted as fast.
    pub invalid: Vec<String>,
    /// Phase breakdown (from the `phases` child), if measured.
    pub phases: Option<serde_json::Value>,
}

fn podman() -> String {
    "podman".into()
}

fn light() -> String {
    "light".into()
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Results {
    pub sizes: BTreeMap<usize, SizeResult>,
}

impl Results {
    pub fn load(path: &Path) -> Results {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    pub fn save(&self, path: &Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))
    }
}

fn median_of(samples: &[Sample], f: impl Fn(&Sample) -> f64) -> f64 {
    stats(&samples.iter().map(f).collect::<Vec<_>>()).0
}

fn wall_median(size: &SizeResult, key: &str) -> Option<f64> {
    size.scenarios
        .get(key)
        .filter(|s| !s.is_empty())
        .map(|s| median_of(s, |x| x.wall))
}

/// (name, value, target, met) for one size.
pub fn ratios(size: &SizeResult) -> Vec<(String, f64, String, bool)> {
    let m = |k| wall_median(size, k);
    let mut out = Vec::new();
    let mut add = |name: &str, a: Option<f64>, b: Option<f64>, target: f64| {
        if let (Some(a), Some(b)) = (a, b) {
            let r = a / b;
            out.push((name.to_string(), r, format!("≤ {target}"), r <= target));
        }
    };
    add("noop / protocol floor", m("noop"), m("protocol_floor"), 1.5);
    add("noop / OpenSSH floor", m("noop"), m("openssh_floor"), 0.3);
    add(
        "noop through a bastion / noop",
        m("noop_bastion"),
        m("noop"),
        1.2,
    );
    add("push / OpenSSH floor", m("push"), m("openssh_floor"), 0.5);
    add(
        "rotate-all / direct ops",
        m("rotate_all"),
        m("direct_ops"),
        1.2,
    );
    // Controller limits: peak RSS, and descriptors bounded by the hosts worked on at once.
    let most = |f: &dyn Fn(&Sample) -> Option<f64>| {
        ["noop", "push"]
            .iter()
            .filter_map(|k| size.scenarios.get(*k))
            .flatten()
            .filter_map(f)
            .reduce(f64::max)
    };
    if let Some(rss) = most(&|x| Some(x.max_rss_kib as f64 / 1024.0)) {
        out.push((
            "peak RSS MiB, noop and push".into(),
            rss,
            "≤ 256".into(),
            rss <= 256.0,
        ));
    }
    // The target: bounded by the hosts worked on at once, whatever the fleet.
    if let Some(fds) = most(&|x| x.max_fds.map(|n| n as f64)) {
        let beside = virtfleet_ssh::FDS_BESIDE_CONNECTIONS;
        let bound = (size.forks as u64 + beside) as f64;
        out.push((
            "peak open fds, noop and push".into(),
            fds,
            format!("≤ forks + {beside} = {bound}"),
            size.forks > 0 && fds <= bound,
        ));
    }
    out
}

pub fn markdown(results: &Results) -> String {
    let mut s = format!(
        "# virtfleet benchmark results\n\n\
         Written by `virtfleet-bench` (see [README.md](README.md) for what each scenario is and \
         how to reproduce). Wall seconds; median, min and max over the runs. *CPU* is the \
         controller process's user+system CPU seconds (median), *RSS* its peak resident set \
         (largest over the runs; for the OpenSSH floor the largest single `ssh` process), \
         *machine CPU* the busy CPU seconds of the whole 2-core machine during the run \
         (controller + sshd + the container engine + containers), *peak fds* the most \
         descriptors the controller held (sampled every {} ms), *per host* virtfleet's own mean \
         per-host seconds from its report.\n\n",
        crate::measure::FD_SAMPLE_EVERY.as_millis()
    );
    for (hosts, size) in &results.sizes {
        let kind = match size.containers.as_str() {
            "none" => ", no containers (a stand-in engine that records its calls)",
            _ => "",
        };
        s.push_str(&format!("## {hosts} hosts, {}{kind}\n\n", size.engine));
        if size.forks > 0 {
            s.push_str(&format!(
                "{} hosts at a time: virtfleet's default `--forks`, and the same bound for \
                 the protocol floor and direct ops.\n\n",
                size.forks
            ));
        }
        if !size.other_labs.is_empty() {
            s.push_str(&format!(
                "Note: other labs were present during this measurement ({:?}); the machine \
                 was shared.\n\n",
                size.other_labs
            ));
        }
        s.push_str(
            "| scenario | runs | median s | min s | max s | CPU s | peak RSS MiB | peak fds | machine CPU s | per host s |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for (key, name) in SCENARIOS {
            let Some(samples) = size.scenarios.get(key).filter(|v| !v.is_empty()) else {
                continue;
            };
            let (med, min, max) = stats(&samples.iter().map(|x| x.wall).collect::<Vec<_>>());
            let rss = samples.iter().map(|x| x.max_rss_kib).max().unwrap_or(0) as f64 / 1024.0;
            let per_host = size
                .per_host_seconds
                .get(key)
                .map_or("".to_string(), |v| format!("{v:.2}"));
            let fds = samples
                .iter()
                .filter_map(|x| x.max_fds)
                .max()
                .map_or(String::new(), |n| n.to_string());
            s.push_str(&format!(
                "| {name} | {} | {med:.2} | {min:.2} | {max:.2} | {:.2} | {rss:.1} | {fds} | {:.1} | {per_host} |\n",
                samples.len(),
                median_of(samples, |x| x.cpu),
                median_of(samples, |x| x.machine_cpu),
            ));
        }
        s.push_str("\n| target (medians; peaks) | value | target | met |\n|---|---:|---|---|\n");
        for (name, value, target, met) in ratios(size) {
            s.push_str(&format!(
                "| {name} | {value:.2} | {target} | {} |\n",
                if met { "yes" } else { "**no**" }
            ));
        }
        if size.invalid.is_empty() {
            s.push_str("\nAll runs valid: zero failed hosts.\n\n");
        } else {
            s.push_str("\n**Invalid runs (not counted):**\n\n");
            for i in &size.invalid {
                s.push_str(&format!("- {i}\n"));
            }
            s.push('\n');
        }
        if let Some(phases) = &size.phases {
            s.push_str(
                "Per-phase cost (the `phases` probe: each command on all hosts at once, \
                 then on one host alone; medians; *machine CPU per host*: the whole machine's \
                 busy CPU while all hosts ran it, divided by the hosts):\n\n\
                 | phase | all hosts, wall s | machine CPU per host, ms | one host, wall s |\n\
                 |---|---:|---:|---:|\n",
            );
            for p in phases["phases"].as_array().into_iter().flatten() {
                let cpu = p["cpu_per_host"]
                    .as_f64()
                    .map_or(String::new(), |c| format!("{:.1}", c * 1000.0));
                s.push_str(&format!(
                    "| {} | {:.3} | {cpu} | {:.3} |\n",
                    p["phase"].as_str().unwrap_or("?"),
                    p["all_hosts_wall"].as_f64().unwrap_or(f64::NAN),
                    p["one_host_wall"].as_f64().unwrap_or(f64::NAN)
                ));
            }
            if size.containers == "none" {
                s.push_str(
                    "\nWithout containers, the rows that run the engine (`inspect`, `exec`, \
                     `restart`) time the lab's stand-in script, not podman.\n",
                );
            }
            // Older results checked podman's containers.json only.
            let agrees = match &phases["store_ids_match_inspect"] {
                serde_json::Value::Null => &phases["containers_json_matches_podman_inspect"],
                v => v,
            };
            s.push_str(&format!(
                "\nContainer IDs read from the engine's store (on every host, never through \
                 `inspect`) equal `{} inspect`'s: {agrees}\n\n",
                size.engine
            ));
        }
    }
    // Cost per host across sizes: flat or falling is the target.
    let per_host: Vec<String> = results
        .sizes
        .iter()
        .filter_map(|(h, size)| {
            let ms = |k| wall_median(size, k).map(|t| format!("{:.1}", t * 1000.0 / *h as f64));
            let (noop, push, floor) = (ms("noop")?, ms("push")?, ms("protocol_floor")?);
            Some(format!("| {h} | {noop} | {push} | {floor} |\n"))
        })
        .collect();
    if !per_host.is_empty() {
        s.push_str(
            "## Wall time per host by size (median run's wall time / hosts)\n\n\
             | hosts | noop ms/host | push ms/host | protocol floor ms/host |\n\
             |---:|---:|---:|---:|\n",
        );
        s.push_str(&per_host.concat());
        s.push('\n');
    }
    // RSS growth across sizes.
    let rss: Vec<(usize, f64)> = results
        .sizes
        .iter()
        .filter_map(|(h, size)| {
            let max = ["noop", "push", "rotate_all"]
                .iter()
                .filter_map(|k| size.scenarios.get(*k))
                .flatten()
                .map(|x| x.max_rss_kib)
                .max()?;
            Some((*h, max as f64 / 1024.0))
        })
        .collect();
    if !rss.is_empty() {
        s.push_str("## Controller peak RSS by size (any virtfleet scenario)\n\n| hosts | peak RSS MiB | MiB per host |\n|---:|---:|---:|\n");
        for (h, mib) in rss {
            s.push_str(&format!("| {h} | {mib:.1} | {:.3} |\n", mib / h as f64));
        }
        s.push('\n');
    }
    s
}

/// Time vs hosts, one line per scenario; floors included. Needs a TrueType font for labels.
pub fn plot(results: &Results, path: &Path) -> Result<(), String> {
    use plotters::prelude::*;

    let font = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
    ]
    .iter()
    .find_map(|p| std::fs::read(p).ok())
    .ok_or("no DejaVuSans.ttf found (Debian package fonts-dejavu-core); plot skipped")?;
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| "DejaVuSans.ttf is not a usable font; plot skipped")?;

    let hosts: Vec<usize> = results.sizes.keys().copied().collect();
    let max_hosts = *hosts.iter().max().ok_or("no results to plot")? as f64;
    let mut max_time: f64 = 0.0;
    let mut min_time = f64::INFINITY;
    let mut series = Vec::new();
    for (i, (key, name)) in SCENARIOS.iter().enumerate() {
        if *key == "setup_deploy" {
            continue;
        }
        let points: Vec<(f64, f64)> = results
            .sizes
            .iter()
            .filter_map(|(h, size)| wall_median(size, key).map(|t| (*h as f64, t)))
            .collect();
        if points.is_empty() {
            continue;
        }
        max_time = points.iter().map(|p| p.1).fold(max_time, f64::max);
        min_time = points.iter().map(|p| p.1).fold(min_time, f64::min);
        series.push((i, *name, points));
    }
    let root = BitMapBackend::new(path, (1100, 700)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| format!("plot: {e}");
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "virtfleet: wall time vs fleet size (median of runs, log scale)",
            ("sans-serif", 24),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(
            0f64..max_hosts * 1.05,
            (min_time * 0.7..max_time * 8.0).log_scale(),
        )
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("hosts")
        .y_desc("seconds (log)")
        .label_style(("sans-serif", 16))
        .draw()
        .map_err(|e| err(&e))?;
    let palette = [
        RGBColor(120, 120, 120),
        RGBColor(0, 0, 0),
        RGBColor(31, 119, 180),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(255, 127, 14),
    ];
    for (i, name, points) in series {
        let color = palette[i % palette.len()];
        let style = ShapeStyle::from(&color).stroke_width(3);
        chart
            .draw_series(LineSeries::new(points.clone(), style))
            .map_err(|e| err(&e))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        chart
            .draw_series(
                points
                    .iter()
                    .map(|p| Circle::new(*p, 5, ShapeStyle::from(&color).filled())),
            )
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
