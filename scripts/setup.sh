#!/usr/bin/env bash
# Installs the Debian 12 packages virtfleet's lab needs (run as root). Idempotent.
set -euo pipefail
packages=(
  openssh-server openssh-client        # the lab hosts' sshd, and ssh for the OpenSSH floor
  podman runc conmon                   # the hosts' containers (runc: crun fails on this kernel)
  docker.io                            # docker lab hosts: a dockerd (+ containerd) per host
  dumb-init jq                         # PID 1 and config copying inside the lab containers
  libvirt-daemon-system libvirt-clients qemu-system-x86   # libvirtd, virsh, virt-admin
  systemd                              # PID 1 of the plain KVM lab hosts (--host-libvirt)
  sasl2-bin libsasl2-modules  # saslpasswd2, SCRAM/DIGEST-MD5
  gnutls-bin                           # certtool, for test fixtures
  iproute2 util-linux procps time      # ss, unshare/nsenter, ps, /usr/bin/time
  acl                                  # setfacl: the push test against inherited ACLs
  sudo                                 # become: commands run as root through sudo -n
  shellcheck                           # lints the engine's shell functions (script/lib.sh)
  tcpdump openssl                      # the QEMU-TLS migration test's capture and foreign CA
  iptables                             # the audit test drops a peer's ports
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The host's own libvirtd and dockerd are not used (each lab host runs its own; without systemd
# as PID 1 the packages start no daemon).
mkdir -p /run/sshd
