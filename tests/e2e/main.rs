//! The end-to-end suite: the `virtfleet` binary against the local lab (real sshd, podman or
//! docker, and libvirtd). One test binary: one link, one process, and its tests share the
//! cores. `VIRTFLEET_TEST_ENGINE=docker` runs it on docker hosts (default: podman);
//! `engines` (mixed fleets, a wrong engine) sets its own engines and runs in the podman pass.

mod audit;
mod authorize;
mod bad_input;
mod certs;
mod changes;
mod coexist;
mod deploy;
mod engines;
mod facts;
mod failures;
mod host_libvirt;
mod jump;
mod qemu_tls;
mod remediate;
mod rollout;
mod rotate;
mod sudo;
