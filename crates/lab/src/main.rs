//! `virtfleet-lab`: bring the local fleet lab up for a demo or by hand, and clean up leftovers.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use virtfleet_lab::{Containers, Engine, Kind, LabOptions};

#[derive(Parser)]
#[command(version, about = "The virtfleet local fleet lab (root only)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Bring up a lab and leave it running; prints where its inventory and keys are.
    Up {
        /// Number of hosts (compute01..).
        #[arg(short = 'n', long, default_value_t = 3)]
        hosts: usize,
        /// Containers only sleep (no libvirtd): for large benchmark labs.
        #[arg(long)]
        light: bool,
        /// No containers at all: sshd and the files only, podman a stand-in script that
        /// records its calls (in each host's storage/standin/calls) and answers for the two
        /// containers; up to 1,000 hosts and more on one machine, for benchmarks.
        #[arg(long, conflicts_with_all = ["light", "host_libvirt", "kolla_host_libvirt", "kind"])]
        no_containers: bool,
        /// Container engine of the hosts: `podman`, `docker` (a dockerd per host), or a list
        /// given host by host and repeated (`docker,podman`: odd hosts docker, even podman).
        #[arg(long, value_delimiter = ',', default_value = "podman")]
        engine: Vec<Engine>,
        /// Plain KVM hosts instead of Kolla's: each a container booting systemd, with sshd
        /// and libvirtd under systemd (socket activation, day 0 on TCP without
        /// authentication); for playbooks/libvirt-host.yml.
        #[arg(long)]
        host_libvirt: bool,
        /// Kolla hosts with libvirtd from the host OS (enable_nova_libvirt_container: false):
        /// systemd hosts as above that also run Kolla's nova_compute container.
        #[arg(long, conflicts_with = "host_libvirt")]
        kolla_host_libvirt: bool,
        /// Kinds given host by host and repeated, for a mixed lab: `kolla`, `systemd` (as
        /// --host-libvirt), `kolla-host-libvirt`; `kolla,systemd`: odd hosts Kolla, even plain.
        #[arg(long, value_delimiter = ',', conflicts_with_all = ["host_libvirt", "kolla_host_libvirt"])]
        kind: Vec<Kind>,
    },
    /// Tear down a lab (e.g. `lab12`), or every lab on this machine when none is named:
    /// containers, sshd, namespaces, mounts, files.
    Down {
        /// The lab to remove, as printed by `up` and `list`.
        lab: Option<String>,
    },
    /// List the labs present on this machine.
    List,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Cmd::Up {
            hosts,
            light,
            no_containers,
            engine,
            host_libvirt,
            kolla_host_libvirt,
            kind,
        } => {
            let containers = match (light, no_containers) {
                (_, true) => Containers::StandIn,
                (true, _) => Containers::Light,
                _ => Containers::Libvirt,
            };
            let options = LabOptions::new(hosts)
                .containers(containers)
                .engines(&engine)
                .kinds(&match (host_libvirt, kolla_host_libvirt) {
                    (true, _) => vec![Kind::Systemd],
                    (_, true) => vec![Kind::KollaHostLibvirt],
                    _ => kind,
                });
            match options.up() {
                Ok(lab) => {
                    println!("lab{} is up with {} hosts", lab.id, lab.hosts.len());
                    for host in &lab.hosts {
                        println!("  {:<10} {}", host.name, host.address);
                    }
                    let engines: Vec<&str> = engine.iter().map(|e| e.as_str()).collect();
                    match (host_libvirt, kolla_host_libvirt) {
                        (true, _) => println!("hosts:       libvirtd under systemd"),
                        (_, true) => println!("hosts:       libvirtd under systemd, nova_compute"),
                        _ => println!("engine:      {}", engines.join(",")),
                    }
                    let kolla = lab
                        .hosts
                        .iter()
                        .any(|h| h.systemd.as_ref().is_none_or(|s| s.kolla_compute));
                    let plain = lab.hosts.iter().any(|h| h.systemd.is_some());
                    let groups: Vec<&str> = [
                        (kolla, "compute (Kolla)"),
                        (plain, "libvirt_hosts (libvirtd under systemd)"),
                    ]
                    .iter()
                    .filter_map(|(present, group)| present.then_some(*group))
                    .collect();
                    println!("groups:      {}", groups.join(", "));
                    println!("inventory:   {}", lab.inventory().display());
                    println!("known_hosts: {}", lab.known_hosts().display());
                    println!("ssh key:     {}", lab.client_key().display());
                    lab.keep();
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Down { lab: Some(name) } => {
            let id = name.trim_start_matches("lab").parse::<u32>();
            match id.map(virtfleet_lab::down_one) {
                Ok(Ok(())) => {
                    println!("tore down {name}");
                    ExitCode::SUCCESS
                }
                Ok(Err(e)) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
                Err(_) => {
                    eprintln!("{name}: not a lab name (expected labN)");
                    ExitCode::from(2)
                }
            }
        }
        Cmd::Down { lab: None } => match virtfleet_lab::down_all() {
            Ok(n) => {
                println!("tore down {n} lab(s)");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Cmd::List => {
            for id in virtfleet_lab::list() {
                println!("lab{id}");
            }
            ExitCode::SUCCESS
        }
    }
}
