"""The lab's hosts for pyinfra, read from the Ansible INI inventory the lab writes
(VF_INVENTORY): each host's address and variables, and the groups' [*:vars]."""

import os


def _read(path):
    hosts, group_vars, section = [], {}, None
    with open(path) as f:
        for line in f:
            words = line.split()
            if not words or words[0].startswith("#"):
                continue
            if words[0].startswith("["):
                section = words[0].strip("[]")
            elif section == "compute":
                hosts.append((words[0], dict(w.split("=", 1) for w in words[1:])))
            elif section and section.endswith(":vars"):
                group_vars.update(dict([line.strip().split("=", 1)]))
    return hosts, group_vars


_hosts, _vars = _read(os.environ["VF_INVENTORY"])
_lab = os.path.dirname(os.environ["VF_INVENTORY"])

compute = [
    (name, {
        **_vars,
        **hostvars,
        "ssh_hostname": hostvars["ansible_host"],
        "ssh_user": _vars["ansible_user"],
        "ssh_key": _vars["ansible_ssh_private_key_file"],
        "ssh_known_hosts_file": os.path.join(_lab, "known_hosts"),
        "ssh_strict_host_key_checking": "yes",
        "ssh_allow_agent": False,
        "ssh_look_for_keys": False,
    })
    for name, hostvars in _hosts
]
