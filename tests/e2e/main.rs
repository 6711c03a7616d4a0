//! The end-to-end suite: the `virtfleet` binary against the local lab (real sshd, podman
//! and libvirtd). One test binary: one link, one process, and its tests share the cores.

mod audit;
mod bad_input;
mod certs;
mod changes;
mod deploy;
mod failures;
mod rollout;
mod rotate;
mod sudo;
