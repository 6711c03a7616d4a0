#!/usr/bin/env bash
# The virtfleet demo on a local 3-host lab: start from Kolla's insecure day-0 libvirt (TCP, no
# authentication), deploy mutual TLS + SASL, show what a peer host can and cannot do, then
# rotate every host's certificates in rolling batches.
#
#   ./scripts/demo.sh                    podman hosts
#   ./scripts/demo.sh --engine docker    docker hosts (a Docker Engine per host)
set -euo pipefail
cd "$(dirname "$0")/.."
engine=podman
while (($#)); do
  case $1 in
    --engine) engine=${2:-}; shift 2 || { echo "--engine needs a value" >&2; exit 2; } ;;
    --engine=*) engine=${1#--engine=}; shift ;;
    *) echo "usage: $0 [--engine podman|docker]" >&2; exit 2 ;;
  esac
done
case $engine in
  podman | docker) ;;
  *) echo "--engine: podman or docker, not '$engine'" >&2; exit 2 ;;
esac
./scripts/setup.sh
cargo build --quiet --workspace --bins
bin=$PWD/target/debug
work=$(mktemp -d)
lab=
cleanup() { [ -z "$lab" ] || "$bin/virtfleet-lab" down "$lab" >/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Bring up a 3-host lab (namespaces + sshd + $engine: nova_libvirt, nova_compute)"
"$bin/virtfleet-lab" up -n 3 --engine "$engine" | tee "$work/lab.txt"
lab=$(sed -n 's/^\(lab[0-9]*\) is up.*/\1/p' "$work/lab.txt")
inventory=$(sed -n 's/^inventory: *//p' "$work/lab.txt")
known_hosts=$(sed -n 's/^known_hosts: *//p' "$work/lab.txt")
key=$(sed -n 's/^ssh key: *//p' "$work/lab.txt")
addr() { sed -n "s/^ *$1 *//p" "$work/lab.txt"; }
on() { # on HOST COMMAND: run a command on a lab host over ssh
  local host=$1; shift
  ssh -F /dev/null -o BatchMode=yes -o UserKnownHostsFile="$known_hosts" -i "$key" "root@$(addr "$host")" "$@"
}
peer_virsh() { # peer_virsh FROM URI [noauth]: virsh inside FROM's nova_libvirt container
  local env=""; [ "${3:-}" = noauth ] && env="LIBVIRT_AUTH_FILE=/nonexistent "
  on "$1" "$engine exec nova_libvirt sh -c '${env}timeout 20 virsh -c $2 uri </dev/null'"
}

step "Day 0: libvirt listens on TCP without authentication (OSSN-0007)"
on compute01 "grep -E '^(listen_tcp|auth_tcp)' /etc/kolla/nova-libvirt/libvirtd.conf"
echo "compute02 -> qemu+tcp://compute01 without any credentials:"
peer_virsh compute02 qemu+tcp://compute01/system && echo "  => anyone on the network is root on compute01"

step "A Kolla config dir: TLS on, SASL password in passwords.yml, a CA and per-host certificates"
configdir=$work/kolla
mkdir -p "$configdir"
printf 'libvirt_tls: "yes"\nkolla_container_engine: %s\n' "$engine" > "$configdir/globals.yml"
printf 'libvirt_sasl_password: %s\n' "$(head -c 18 /dev/urandom | base64 | tr -d '/+=')" > "$configdir/passwords.yml"
vf() { "$bin/virtfleet" -i "$inventory" --configdir "$configdir" --known-hosts "$known_hosts" "$@"; }
vf certs init-ca
vf certs issue
vf certs check

step "What would change (secrets redacted)"
vf check --diff --limit compute01 | head -40

step "Deploy TLS + SASL to all hosts in parallel"
time vf deploy

step "A peer with the client certificate and SASL credentials gets in over TLS"
peer_virsh compute02 qemu+tls://compute01/system
step "Without SASL credentials: refused"
peer_virsh compute02 qemu+tls://compute01/system noauth && exit 1 || echo "  => refused, as it should be"
step "Plain TCP: closed"
peer_virsh compute03 qemu+tcp://compute01/system && exit 1 || echo "  => refused, as it should be"

step "Kolla's own settings are still there: virtfleet merged its keys into nova.conf"
on compute01 "grep -E '^\[|^(transport_url|connection_uri|live_migration_scheme) ' /etc/kolla/nova-compute/nova.conf" |
  sed -E 's#(://[^:/]*:)[^@]*@#\1<redacted>@#'

step "Run it again: nothing to change, nothing restarted"
vf deploy

step "Rolling rotation: new leaf certificates for every host, one host per batch"
for host in compute01 compute02 compute03; do
  rm "$configdir/config/nova/nova-libvirt/$host/"{server,client}{cert,key}.pem
done
vf certs issue
vf rotate --serial 1 --yes
echo "libvirtd was reloaded, not restarted; peers still connect:"
peer_virsh compute03 qemu+tls://compute02/system

step "Done; tearing the lab down"
