"""Helpers the Ansible playbook (as filters) and the pyinfra deploy share: the few filters
virtfleet's templates use that Jinja2/ansible-core lack, the fleet's client subjects, and the
two merges virtfleet applies to files it shares with Kolla (nova.conf, config.json).

Written for this comparison from virtfleet's documented behaviour (crates/plan/src/merge.rs,
docs/behaviour.md); the merges cover what the lab's files hold, not every corner of
virtfleet's (multi-valued keys, CRLF files, malformed hosts' files are not handled).
"""

import functools
import json
import os
import re

from cryptography import x509
from cryptography.x509.oid import NameOID

TRUE_WORDS = {"yes", "on", "1", "true", "y", "t"}


def to_bool(value):
    """Ansible's `bool` filter (for plain Jinja2)."""
    if isinstance(value, str):
        return value.strip().lower() in TRUE_WORDS
    return bool(value)


def keyfile_escape(value):
    """Escapes a value for a GLib key file (libvirt's auth.conf)."""
    out = []
    for i, c in enumerate(str(value)):
        out.append({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(c, c))
        if c == " " and i == 0:
            out[-1] = "\\s"
    return "".join(out)


def put_address_in_context(value, context):
    """Kolla's filter: an IPv6 literal bracketed for a URL."""
    text = str(value)
    if context == "url":
        return f"[{text}]" if ":" in text and not text.startswith("[") else text
    if context == "memcache":
        return f"inet6:[{text}]" if ":" in text else text
    raise ValueError(f"put_address_in_context: unknown context {context!r}")


def cert_file(configdir, host, name):
    """virtfleet's certificate search: the host's directory, then the shared one."""
    base = os.path.join(configdir, "config", "nova", "nova-libvirt")
    for path in (os.path.join(base, host, name), os.path.join(base, name)):
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"{name} for {host}: neither in {base}/{host}/ nor in {base}/")


_NAMES = {NameOID.COUNTRY_NAME: "C", NameOID.STATE_OR_PROVINCE_NAME: "ST",
          NameOID.LOCALITY_NAME: "L", NameOID.ORGANIZATION_NAME: "O",
          NameOID.ORGANIZATIONAL_UNIT_NAME: "OU", NameOID.COMMON_NAME: "CN",
          NameOID.DOMAIN_COMPONENT: "DC"}


def libvirt_dn(pem_path):
    """A certificate's subject as libvirt (GnuTLS) writes it: RDNs in certificate order."""
    with open(pem_path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())

    def escape(v):
        v = re.sub(r'([,+"\\<>;])', r"\\\1", v)
        return re.sub(r"^([# ])", r"\\\1", re.sub(r" $", r"\\ ", v))

    return ",".join("+".join(f"{_NAMES[a.oid]}={escape(a.value)}" for a in rdn)
                    for rdn in cert.subject.rdns)


@functools.lru_cache(maxsize=None)
def _fleet_client_dns(configdir, hosts):
    return sorted({libvirt_dn(cert_file(configdir, h, "clientcert.pem")) for h in hosts})


def fleet_client_dns(hosts, configdir):
    """Every inventory host's client subject, sorted, without repeats (virtfleet's
    virtfleet_fleet_client_dns)."""
    return _fleet_client_dns(str(configdir), tuple(hosts))


def kolla_config_merge(current, rendered):
    """config.json: each rendered config_files entry replaces the host's entry with the same
    dest (or is added); the host's other keys stay; `command` only where the host has none.
    An unchanged file comes back byte for byte, a changed one as serde_json writes it (keys
    sorted, indent 4)."""
    wanted = json.loads(rendered)
    if not current or not current.strip():
        return rendered
    host = json.loads(current)
    before = json.dumps(host, sort_keys=True)
    host.setdefault("command", wanted.get("command"))
    entries = host.setdefault("config_files", [])
    for entry in wanted.get("config_files", []):
        same = [i for i, e in enumerate(entries) if e.get("dest") == entry["dest"]]
        if same:
            entries[same[0]] = entry
        else:
            entries.append(entry)
    if json.dumps(host, sort_keys=True) == before:
        return current
    return json.dumps(host, sort_keys=True, indent=4) + "\n"


def _ini_parse(lines):
    """[(section, key, start, end)] and {section: index after its last non-blank line}."""
    settings, ends, section = [], {}, "DEFAULT"
    for i, line in enumerate(lines):
        text = line.strip()
        if line[:1] in (" ", "\t"):  # a continuation line, or blank
            if text and settings and settings[-1][3] == i:
                settings[-1][3] = i + 1
        elif text.startswith("[") and text.endswith("]"):
            section = text[1:-1].strip()
        elif text and text[0] not in "#;" and re.search("[=:]", text):
            settings.append([section, re.split("[=:]", text, 1)[0].strip(), i, i + 1])
        if text:
            ends[_group(section)] = i + 1
    return settings, ends


def _group(section):
    return section if section == "DEFAULT" else section.lower()


def ini_merge(current, rendered):
    """nova.conf: each key the template renders replaces that key in its section, in place
    (later repeats dropped); a missing key goes after the section's last line, a missing
    section at the end; every other line stays. Unchanged keys leave the file as it is."""
    if not current or not current.strip():
        return rendered
    lines = current.split("\n")[:-1] if current.endswith("\n") else current.split("\n")
    settings, ends = _ini_parse(lines)
    owned = rendered.split("\n")[:-1] if rendered.endswith("\n") else rendered.split("\n")
    skip, insert, new_sections = {}, {}, {}
    for section, key, start, end in _ini_parse(owned)[0]:
        want = [owned[start].strip()] + owned[start + 1:end]
        found = [s for s in settings if _group(s[0]) == _group(section) and s[1] == key]
        have = [[ln.strip() for ln in lines[s[2]:s[3]]] for s in found]
        if have == [[ln.strip() for ln in want]]:
            continue
        if found:
            insert.setdefault(found[0][2], []).extend(want)
            skip.update({s[2]: s[3] for s in found})
        elif _group(section) in ends:
            insert.setdefault(ends[_group(section)], []).extend(want)
        elif section == "DEFAULT":
            insert.setdefault(0, []).extend(want)
        else:
            new_sections.setdefault(section, []).extend(want)
    if not insert and not new_sections:
        return current
    out, i = [], 0
    while i <= len(lines):
        out.extend(insert.get(i, []))
        if i == len(lines):
            break
        if i in skip:
            i = skip[i]
        else:
            out.append(lines[i])
            i += 1
    for section, block in new_sections.items():
        if out and out[-1].strip():
            out.append("")
        out += [f"[{section}]"] + block
    return "\n".join(out) + "\n"


def jinja_env(template_dir):
    """A Jinja2 environment that renders virtfleet's templates as Ansible does (trim_blocks,
    final newline kept, strict undefined) with the filters they use."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(template_dir), trim_blocks=True,
                             keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    env.filters.update(bool=to_bool, split=lambda v, sep=None: str(v).split(sep),
                       keyfile_escape=keyfile_escape,
                       put_address_in_context=put_address_in_context)
    return env
