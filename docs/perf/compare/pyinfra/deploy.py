"""virtfleet's bench playbook (playbooks/kolla.yml with readiness `true` and no live reload)
as a pyinfra deploy: the same files, the same SASL step, the same restarts.

The Kolla config directory is VF_CONFIGDIR (globals.yml, passwords.yml, certificates);
templates are the project's playbooks/templates, rendered with Jinja2 on the controller."""

import io
import os
import sys

import yaml
from pyinfra import host, inventory
from pyinfra.facts.files import FileContents
from pyinfra.facts.server import Hostname
from pyinfra.operations import files, server
from pyinfra.operations.util import any_changed

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import vfcompare  # noqa: E402

CONFIGDIR = os.environ["VF_CONFIGDIR"]
TEMPLATES = os.path.join(HERE, "..", "..", "..", "..", "playbooks", "templates")
env = vfcompare.jinja_env(TEMPLATES)


def load(name):
    with open(os.path.join(CONFIGDIR, name)) as f:
        return yaml.safe_load(f) or {}


# playbooks/kolla.yml's defaults its templates read, then the inventory's variables, then
# globals.yml and passwords.yml (Kolla's extra vars: highest precedence).
v = {
    "node_config_directory": "/etc/kolla",
    "container_config_directory": "/var/lib/kolla/config_files",
    "kolla_container_engine": "docker",
    "libvirt_tls": False,
    "libvirt_tls_manage_certs": True,
    "libvirt_enable_sasl": True,
    "libvirt_sasl_authname": "nova",
    "nova_compute_virt_type": "kvm",
    "nova_libvirt_logging_debug": False,
    "libvirt_max_workers": 50,
    "libvirt_max_client_requests": 20,
    "enable_neutron_mlnx": False,
    "qemu_group": "nova",
    "qemu_max_files": 32768,
    "qemu_max_processes": 131072,
    "nova_spice_require_secure": False,
    "enable_nova_swtpm": False,
    "swtpm_user": "tss",
    "swtpm_group": "tss",
    "libvirt_qemu_native_tls": False,
    "nova_libvirt_command": "/usr/local/bin/kolla_nova_libvirt_start",
    "nova_compute_command": "nova-compute",
    "virtfleet_libvirt_tcp_kept": False,
    "virtfleet_libvirt_sasl_mechs_kept": [],
    "virtfleet_nova_tcp_kept": False,
}
v.update(host.data.dict())
v.update(load("globals.yml"))
v.update(load("passwords.yml"))
tls, sasl = vfcompare.to_bool(v["libvirt_tls"]), vfcompare.to_bool(v["libvirt_enable_sasl"])
certs = tls and vfcompare.to_bool(v["libvirt_tls_manage_certs"])
v.setdefault("libvirt_sasl_mech_list", ["SCRAM-SHA-256"] if tls else ["DIGEST-MD5"])
v.setdefault("nova_libvirt_port", 16514 if tls else 16509)
v.setdefault("migration_hostname", host.get_fact(Hostname))
v.setdefault("nova_libvirt_log_outputs", "%s:file:/var/log/kolla/libvirt/libvirtd.log"
             % ("1" if vfcompare.to_bool(v["nova_libvirt_logging_debug"]) else "3"))
v.setdefault("libvirt_tls_allowed_dn_list", vfcompare.fleet_client_dns(
    [h.name for h in inventory.get_group("compute")], CONFIGDIR))
v.setdefault("libvirt_sasl_allowed_usernames", [v["libvirt_sasl_authname"]])


def render(template):
    return env.get_template(template).render(v)


def current(path):
    """The host's file (FileContents gives its lines; Kolla's files end with a newline)."""
    lines = host.get_fact(FileContents, path=path)
    return "".join(line + "\n" for line in lines) if lines else None


def put(service, name, content, mode):
    return files.put(name=f"{service}/{name}", src=io.StringIO(content),
                     dest=f"{v['node_config_directory']}/{service}/{name}", mode=mode)


def put_cert(service, name):
    with open(vfcompare.cert_file(CONFIGDIR, host.name, name)) as f:
        return put(service, name, f.read(), "600")


cert_names = ["cacert.pem", "servercert.pem", "serverkey.pem", "clientcert.pem", "clientkey.pem"]
libvirt_dir = f"{v['node_config_directory']}/nova-libvirt"
compute_dir = f"{v['node_config_directory']}/nova-compute"

libvirt = [put("nova-libvirt", n, render(n + ".j2"), "660") for n in
           ["libvirtd.conf", "qemu.conf"] + (["sasl.conf", "auth.conf"] if sasl else [])]
libvirt += [put_cert("nova-libvirt", n) for n in (cert_names if certs else [])]
libvirt.append(put("nova-libvirt", "config.json", vfcompare.kolla_config_merge(
    current(f"{libvirt_dir}/config.json"), render("nova-libvirt.json.j2")), "660"))

compute = [put("nova-compute", "nova.conf", vfcompare.ini_merge(
    current(f"{compute_dir}/nova.conf"), render("nova.conf.j2")), "660")]
if sasl:
    compute.append(put("nova-compute", "auth.conf", render("auth.conf.j2"), "660"))
compute += [put_cert("nova-compute", n) for n in
            (["cacert.pem", "clientcert.pem", "clientkey.pem"] if certs else [])]
compute.append(put("nova-compute", "config.json", vfcompare.kolla_config_merge(
    current(f"{compute_dir}/config.json"), render("nova-compute.json.j2")), "660"))

# Restarts only where files changed: nova_libvirt, its readiness (the bench playbook's
# `true`, 200 tries 0.25 s apart), the SASL user (password on stdin), then nova_compute.
engine = v["kolla_container_engine"]
server.shell(
    name="Restart nova_libvirt, wait for it",
    commands=[f"{engine} restart nova_libvirt",
              f"i=0; until {engine} exec nova_libvirt true; do i=$((i+1)); "
              f"[ $i -lt 200 ] || exit 1; sleep 0.25; done"],
    _if=any_changed(*libvirt),
)
if sasl:
    server.shell(
        name="SASL user in nova_libvirt",
        commands=[f"{engine} exec -i nova_libvirt saslpasswd2 -c -p -a libvirt "
                  f"{v['libvirt_sasl_authname']}"],
        _stdin=v["libvirt_sasl_password"],
        _if=any_changed(*libvirt),
    )
server.shell(name="Restart nova_compute", commands=[f"{engine} restart nova_compute"],
             _if=any_changed(*compute))
