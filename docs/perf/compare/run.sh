#!/usr/bin/env bash
# virtfleet against an equivalent Ansible playbook and pyinfra deploy, on one light lab.
#
#   sudo docs/perf/compare/run.sh [HOSTS]        (default 50)
#
# Runs per tool (environment): DEPLOY_RUNS (3), NOOP_RUNS (5), CA_RUNS (3).
# The Python venv (ansible-core, pyinfra: requirements.txt) is made or reused at
# VENV (/var/tmp/virtfleet-compare-venv). Writes results.md and results.json into OUT
# (default: next to this script, the published record; set OUT=/tmp/mine for a run of your
# own); the tools' output goes to /tmp/virtfleet-compare-<HOSTS>.log. The lab is torn down
# on exit, whatever happens.
set -euo pipefail

hosts=${1:-50}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
bin=$repo/target/release
venv=${VENV:-/var/tmp/virtfleet-compare-venv}
log=/tmp/virtfleet-compare-$hosts.log
out=${OUT:-$here}

[[ $hosts =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [HOSTS]" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "$0: run as root (the lab needs it)" >&2; exit 2; }
# Root writes the results: into a directory of root's only, never through another user's.
mkdir -p "$out"
if [ -L "$out" ] || [ "$(stat -c %u "$out")" -ne 0 ]; then
  echo "$0: OUT=$out is not a directory of root's" >&2
  exit 2
fi

if [ ! -x "$bin/virtfleet" ] || [ ! -x "$bin/virtfleet-lab" ]; then
  (cd "$repo" && cargo build --release -p virtfleet -p virtfleet-lab)
fi
[ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv "$venv"
"$venv/bin/pip" install -q -r "$here/requirements.txt"
export PYTHONDONTWRITEBYTECODE=1  # no __pycache__ in the repository

work=$(mktemp -d /tmp/virtfleet-compare.XXXXXX)
lab=
cleanup() {
  if [ -n "$lab" ] && ! "$bin/virtfleet-lab" down "$lab" >/dev/null; then
    echo "$0: could not tear down $lab: run virtfleet-lab down $lab" >&2
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

lab=$("$bin/virtfleet-lab" up -n "$hosts" --light | awk '/ is up with /{print $1}')
[ -n "$lab" ] || { echo "$0: virtfleet-lab up printed no lab name" >&2; exit 1; }
labdir=/var/lib/vflab/$lab
: >"$log"
echo "$lab is up with $hosts hosts; output of the tools in $log"

# The inputs all three tools use: a Kolla config dir with TLS + SASL (the project bench's
# globals), the bench playbook variant, and a CA with per-host pairs from virtfleet.
cfg=$work/configdir
mkdir -p "$cfg"
printf 'libvirt_tls: "yes"\n' >"$cfg/globals.yml"
password=$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')
printf 'libvirt_sasl_password: %s\n' "$password" >"$cfg/passwords.yml"
"$venv/bin/python" "$here/harness.py" playbook "$repo/playbooks/kolla.yml" "$work/playbooks"
for step in init-ca issue; do
  "$bin/virtfleet" certs "$step" -i "$labdir/inventory" --configdir "$cfg" \
    --known-hosts "$labdir/known_hosts" --playbook "$work/playbooks/kolla.yml" >/dev/null
done

"$venv/bin/python" "$here/harness.py" run --lab-dir "$labdir" --work "$work" \
  --configdir "$cfg" --playbook "$work/playbooks/kolla.yml" --virtfleet "$bin/virtfleet" \
  --venv "$venv" --out "$out" --deploy-runs "${DEPLOY_RUNS:-3}" \
  --noop-runs "${NOOP_RUNS:-5}" --ca-runs "${CA_RUNS:-3}" --log "$log"
