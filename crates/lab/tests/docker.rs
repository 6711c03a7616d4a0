//! Docker lab hosts: each runs its own dockerd with Kolla-like containers, at the same day-0 state
//! as podman hosts, and leaves no daemon, mount or file behind. Needs root and the packages
//! `scripts/setup.sh` installs (docker.io).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use virtfleet_lab::{Containers, Engine, Lab, LabHost, LabOptions, RUN_ROOT};

mod common;
use common::{assert_day0_libvirtd, down_leaves_nothing, peer_virsh, stdout, wait_ready};

fn ids(lab: &Lab, host: &LabHost) -> String {
    stdout(&lab.ssh(
        host,
        "docker inspect --format '{{.Name}} {{.Id}} {{.State.Status}}' nova_libvirt nova_compute",
    ))
}

/// Every process in the host's mount namespace (sshd, dockerd, containerd, the shims) and the
/// containers' processes, by pid.
fn host_processes(lab: &Lab, host: &LabHost) -> Vec<i32> {
    let ns = Path::new(RUN_ROOT).join(format!("lab{}/ns/{}.mnt", lab.id, host.name));
    let wanted = format!("mnt:[{}]", fs::metadata(ns).unwrap().ino());
    let mut pids: Vec<i32> = fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse().ok()?;
            let link = fs::read_link(e.path().join("ns/mnt")).ok()?;
            (link.to_string_lossy() == wanted).then_some(pid)
        })
        .collect();
    let containers = stdout(&lab.ssh(
        host,
        "docker inspect --format '{{.State.Pid}}' nova_libvirt nova_compute",
    ));
    pids.extend(containers.lines().map(|l| l.parse::<i32>().unwrap()));
    pids
}

#[test]
fn docker_hosts_run_kolla_containers_and_leave_nothing_behind() {
    let lab = LabOptions::new(2)
        .engine(Engine::Docker)
        .up()
        .expect("lab up");
    assert!(fs::read_to_string(lab.inventory())
        .unwrap()
        .contains("\nkolla_container_engine=docker\n"));
    for host in &lab.hosts {
        assert_eq!(host.engine, Engine::Docker);
        let out = stdout(&lab.ssh(
            host,
            "hostname; test -S /var/run/docker.sock && echo socket; \
             docker info --format '{{.DockerRootDir}}'; \
             docker ps --format '{{.Names}}' | sort; cat /etc/kolla/nova-libvirt/libvirtd.conf",
        ));
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some(host.name.as_str()));
        assert_eq!(lines.next(), Some("socket"));
        assert_eq!(lines.next(), Some("/var/lib/docker"));
        assert_eq!(lines.next(), Some("nova_compute"));
        assert_eq!(lines.next(), Some("nova_libvirt"));
        assert_day0_libvirtd(&out, host);
        // The socket is the host's own, in its private /run.
        assert!(host.dir.join("run/docker.sock").exists());
    }
    let (a, b) = (&lab.hosts[0], &lab.hosts[1]);
    wait_ready(&lab, a);
    // A real libvirtd, listening: the peer connects over day-0 plain TCP.
    stdout(&peer_virsh(b, &format!("qemu+tcp://{}/system", a.name)));
    let config = stdout(&lab.ssh(
        a,
        "docker exec nova_libvirt cat /etc/libvirt/libvirtd.conf; \
         docker exec nova_compute sh -c 'ls -l /etc/nova/nova.conf; cat /proc/1/cmdline'",
    ));
    assert!(config.contains("listen_tcp = 1"), "{config}");
    assert!(
        config.contains(" nova "),
        "nova.conf owned by nova: {config}"
    );
    assert!(config.starts_with("listen_tcp") && config.contains("dumb-init"));

    // PID 1 stops on SIGTERM: a restart keeps the containers and takes well under the
    // 10 s a PID 1 ignoring SIGTERM would cost.
    let before = ids(&lab, a);
    let started = Instant::now();
    stdout(&lab.ssh(a, "docker restart nova_libvirt nova_compute"));
    assert!(started.elapsed() < Duration::from_secs(8), "slow restart");
    assert_eq!(ids(&lab, a), before, "restart must keep the containers");
    assert!(before.contains(" running\n"), "{before}");
    wait_ready(&lab, a);
    a.recreate_container("nova_compute").expect("recreate");
    let after = ids(&lab, a);
    assert_ne!(after, before, "a recreated container has a new id");
    assert_eq!(after.lines().next(), before.lines().next());

    let pids: Vec<i32> = lab
        .hosts
        .iter()
        .flat_map(|h| host_processes(&lab, h))
        .collect();
    assert!(
        pids.len() >= 2 * 7,
        "sshd, dockerd, containerd, 2 shims, 2 containers: {pids:?}"
    );
    down_leaves_nothing(lab, pids);
}

#[test]
fn a_mixed_lab_runs_each_host_on_its_own_engine() {
    let lab = LabOptions::new(3)
        .containers(Containers::Light)
        .engines(&[Engine::Docker, Engine::Podman])
        .up()
        .expect("lab up");
    let engines: Vec<Engine> = lab.hosts.iter().map(|h| h.engine).collect();
    assert_eq!(engines, [Engine::Docker, Engine::Podman, Engine::Docker]);
    let inventory = fs::read_to_string(lab.inventory()).unwrap();
    let b = &lab.hosts[1];
    assert!(
        inventory.contains(&format!(
            "compute02 ansible_host={0} migration_interface_address={0} \
             kolla_container_engine=podman\n",
            b.address
        )),
        "{inventory}"
    );
    assert!(inventory.contains("\nkolla_container_engine=docker\n"));
    for host in &lab.hosts {
        let names = stdout(&lab.ssh(
            host,
            &format!("{} ps --format '{{{{.Names}}}}' | sort", host.engine),
        ));
        assert_eq!(names, "nova_compute\nnova_libvirt\n", "{}", host.name);
    }
    // A podman host has no docker daemon of its neighbour's.
    assert!(!lab.ssh(b, "test -e /var/run/docker.sock").status.success());
    let dir = lab.dir().to_path_buf();
    lab.down().expect("clean tear-down");
    assert!(!dir.exists());
}
