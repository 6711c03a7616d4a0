#!/usr/bin/env bash
# Test-time reference: renders kolla-ansible's own nova-cell templates with Ansible.
#
#   scripts/kolla-reference.sh setup                   build (or reuse) the virtualenv
#   scripts/kolla-reference.sh render CASES.json OUT   render every case into OUT/<case>/
#
# CASES.json maps a case name to its variables, e.g. {"tls": {"libvirt_tls": true, ...}}; each
# case becomes one host of a local inventory (its variables are host variables, so they beat
# Kolla's group_vars and role defaults, as an operator's would). Kolla's group_vars/all/*.yml
# and roles/nova-cell/defaults/main.yml come from the pinned kolla-ansible package in the
# virtualenv; nothing of Kolla's is stored in this repository.
#
# Writes OUT/<case>/nova-libvirt/{libvirtd.conf,qemu.conf,sasl.conf,auth.conf,config.json}
# and OUT/<case>/nova-compute/{auth.conf,config.json,nova-libvirt.conf}, the last being the
# [libvirt] section kolla's nova.conf.j2 includes (nova.conf.d/libvirt.conf.j2).
#
# Python >= 3.12 is required (kolla-ansible 23.0.0 needs it): $KOLLA_REF_PYTHON, else
# python3.12 / python3.13 on PATH, else pyenv's under ~/.pyenv/versions. Without one the
# script exits 3 ("SKIP: ...") so a caller can skip, not fail.
set -euo pipefail

KOLLA_ANSIBLE_VERSION=23.0.0
ANSIBLE_VERSION=14.5.0
ANSIBLE_CORE_VERSION=2.21.5

root=$(cd "$(dirname "$0")/.." && pwd)
ref=${KOLLA_REF_DIR:-$root/target/kolla-ref}
venv=$ref/venv
stamp="kolla-ansible==$KOLLA_ANSIBLE_VERSION ansible==$ANSIBLE_VERSION ansible-core==$ANSIBLE_CORE_VERSION"

find_python() {
  local c
  for c in "${KOLLA_REF_PYTHON:-}" python3.12 python3.13; do
    [ -n "$c" ] || continue
    if command -v "$c" >/dev/null 2>&1 &&
      "$c" -c 'import sys, venv; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      command -v "$c"
      return
    fi
  done
  for c in "$HOME"/.pyenv/versions/3.1[2-9]*/bin/python3; do
    if [ -x "$c" ]; then
      echo "$c"
      return
    fi
  done
  return 1
}

setup() {
  if [ -x "$venv/bin/ansible-playbook" ] && [ "$(cat "$venv/.virtfleet-stamp" 2>/dev/null)" = "$stamp" ]; then
    return
  fi
  local python
  if ! python=$(find_python); then
    echo "SKIP: no Python >= 3.12 (kolla-ansible $KOLLA_ANSIBLE_VERSION needs it); set KOLLA_REF_PYTHON" >&2
    exit 3
  fi
  echo "kolla-reference: building $venv with $python ($stamp)" >&2
  rm -rf "$venv"
  mkdir -p "$ref"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet "kolla-ansible==$KOLLA_ANSIBLE_VERSION" \
    "ansible==$ANSIBLE_VERSION" "ansible-core==$ANSIBLE_CORE_VERSION"
  echo "$stamp" >"$venv/.virtfleet-stamp"
}

render() {
  local cases=$1 out=$2
  setup
  local kolla=$venv/share/kolla-ansible/ansible
  work=""
  work=$(mktemp -d "$ref/render.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$out" "$work/group_vars" "$work/roles/kolla_ref/defaults" "$work/roles/kolla_ref/tasks"
  out=$(cd "$out" && pwd)
  # Kolla's own variables: group_vars/all beside the inventory, the role's defaults as the
  # defaults of a role (the lowest precedence, as in kolla-ansible).
  ln -s "$kolla/group_vars/all" "$work/group_vars/all"
  ln -s "$kolla/roles/nova-cell/defaults/main.yml" "$work/roles/kolla_ref/defaults/main.yml"
  # One host per case, run locally, with fake facts.
  "$venv/bin/python" - "$cases" "$work/inventory.yml" <<'EOF'
import json, sys
cases = json.load(open(sys.argv[1]))
hosts = {}
for name, case in cases.items():
    facts = {"nodename": name, "hostname": name, "architecture": "x86_64"}
    facts.update(case.pop("ansible_facts", {}))
    hosts[name] = dict(case, ansible_connection="local", kolla_ref_facts=facts,
                       ansible_python_interpreter=sys.executable)
json.dump({"all": {"children": {"compute": {"hosts": hosts}}}}, open(sys.argv[2], "w"))
EOF
  local t=$kolla/roles/nova-cell/templates
  cat >"$work/roles/kolla_ref/tasks/main.yml" <<EOF
- name: Fake facts
  ansible.builtin.set_fact:
    ansible_facts: "{{ kolla_ref_facts }}"
- name: Service directories
  ansible.builtin.file:
    path: "$out/{{ inventory_hostname }}/{{ item }}"
    state: directory
  loop: [nova-libvirt, nova-compute, masakari-instancemonitor]
- name: Kolla's nova-cell templates
  ansible.builtin.template:
    src: "$t/{{ item.src }}"
    dest: "$out/{{ inventory_hostname }}/{{ item.service }}/{{ item.dest }}"
    mode: "0660"
  vars:
    service_name: "{{ item.service }}"
  # As Kolla's service_enabled_and_mapped_to_host: nova-libvirt is enabled by
  # enable_nova_libvirt_container (libvirtd from the host OS when false).
  when: (item.when | default(true) | bool) and
        (item.service != 'nova-libvirt' or enable_nova_libvirt_container | default(true) | bool)
  loop:
    - {src: libvirtd.conf.j2, service: nova-libvirt, dest: libvirtd.conf}
    - {src: qemu.conf.j2, service: nova-libvirt, dest: qemu.conf}
    - {src: sasl.conf.j2, service: nova-libvirt, dest: sasl.conf, when: "{{ libvirt_enable_sasl }}"}
    - {src: auth.conf.j2, service: nova-libvirt, dest: auth.conf, when: "{{ libvirt_enable_sasl }}"}
    - {src: auth.conf.j2, service: nova-compute, dest: auth.conf, when: "{{ libvirt_enable_sasl }}"}
    - {src: nova-libvirt.json.j2, service: nova-libvirt, dest: config.json}
    - {src: nova-compute.json.j2, service: nova-compute, dest: config.json}
    - {src: nova.conf.d/libvirt.conf.j2, service: nova-compute, dest: nova-libvirt.conf}
- name: Kolla's masakari instance monitor credentials
  ansible.builtin.template:
    src: "$kolla/roles/masakari/templates/auth.conf.j2"
    dest: "$out/{{ inventory_hostname }}/masakari-instancemonitor/auth.conf"
    mode: "0660"
  when: enable_masakari | bool and libvirt_enable_sasl | bool
EOF
  cat >"$work/site.yml" <<'EOF'
- hosts: compute
  gather_facts: false
  roles: [kolla_ref]
EOF
  (cd "$work" && ANSIBLE_NOCOLOR=1 ANSIBLE_RETRY_FILES_ENABLED=0 ANSIBLE_LOCALHOST_WARNING=0 \
    ANSIBLE_INVENTORY_UNPARSED_WARNING=0 ANSIBLE_FORKS=4 ANSIBLE_STDOUT_CALLBACK=default \
    ANSIBLE_DISPLAY_OK_HOSTS=0 ANSIBLE_DISPLAY_SKIPPED_HOSTS=0 \
    ANSIBLE_FILTER_PLUGINS="$kolla/filter_plugins" ANSIBLE_LOCAL_TEMP="$work/tmp" ANSIBLE_HOME="$work/home" \
    "$venv/bin/ansible-playbook" -i inventory.yml site.yml >"$work/log" 2>&1) || {
    cat "$work/log" >&2
    exit 1
  }
}

case "${1:-}" in
  setup) setup ;;
  render)
    [ $# -eq 3 ] || { echo "usage: $0 render CASES.json OUT" >&2; exit 2; }
    render "$2" "$3"
    ;;
  *)
    echo "usage: $0 setup | render CASES.json OUT" >&2
    exit 2
    ;;
esac
