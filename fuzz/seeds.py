#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into fuzz/corpus/<target>/ from the
repository's own examples and test fixtures: example inventories and configdir, PEM fixtures,
playbook templates, and the string literals of the parsers' unit tests. Seeds are named by
content hash, so running this again adds nothing twice. Usage: seeds.py [REPO_ROOT]
"""

import glob
import hashlib
import os
import re
import sys

ROOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), ".."))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def read(rel):
    with open(os.path.join(ROOT, rel), "rb") as f:
        return f.read()


def files(pattern):
    return sorted(glob.glob(os.path.join(ROOT, pattern), recursive=True))


# A Rust string literal: raw r#"..."# (any number of #) or a plain "..." with escapes.
LITERAL = re.compile(r'(?<![A-Za-z0-9_\'])(?:r(#*)"(.*?)"\1|"((?:[^"\\]|\\.)*)")', re.S)
ESCAPE = re.compile(r'\\(u\{[0-9a-fA-F]+\}|x[0-9a-fA-F]{2}|\n\s*|.)', re.S)


def unescape(body):
    def one(m):
        e = m.group(1)
        simple = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", '"': '"', "'": "'"}
        if e in simple:
            return simple[e]
        if e.startswith("u{"):
            return chr(int(e[2:-1], 16))
        if e.startswith("x"):
            return chr(int(e[1:], 16))
        if e.startswith("\n"):
            return ""  # line continuation
        return "\\" + e

    return ESCAPE.sub(one, body)


def literals(pattern, min_len=2):
    """String literals of the Rust files matching `pattern`, as bytes."""
    out = []
    for path in files(pattern):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for m in LITERAL.finditer(text):
            value = m.group(2) if m.group(2) is not None else unescape(m.group(3))
            if len(value) >= min_len:
                out.append(value.encode("utf-8"))
    return out


def write(target, seeds):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    n = 0
    for seed in seeds:
        name = "seed-" + hashlib.sha1(seed).hexdigest()[:16]
        path = os.path.join(d, name)
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(seed)
            n += 1
    print(f"{target}: {len(set(seeds))} seeds ({n} new) in {os.path.relpath(d, ROOT)}")


def inventory_seeds(main_file, limit_patterns):
    inv_tests = literals("crates/inventory/src/tests/*.rs") + literals("crates/inventory/src/*.rs")
    # Inventory-like text only (not the crates' error messages).
    inv_tests = [s for s in inv_tests if any(c in s for c in (b"\n", b"=", b":", b"["))]
    seeds = [read(main_file)] + inv_tests
    # `text NUL pattern`: a --limit pattern applied to the inventory.
    seeds += [read(main_file) + b"\0" + p for p in limit_patterns]
    return seeds


def main():
    limit_literals = literals("crates/inventory/src/tests/limit.rs")
    patterns = [p for p in limit_literals if b"\n" not in p and len(p) < 60]
    write("inventory_ini", inventory_seeds("inventory/multinode", patterns))
    write("inventory_yaml", inventory_seeds("inventory/multinode.yml", patterns))

    vars_seeds = [read(p[len(ROOT) + 1:]) for p in files("docs/examples/configdir/*.yml")]
    vars_seeds += [read(p[len(ROOT) + 1:]) for p in files("playbooks/*.yml")]
    vars_seeds += [s for s in literals("crates/plan/tests/*.rs") + literals("crates/plan/src/*.rs") if b":" in s]
    vars_seeds += [s for s in literals("crates/inventory/src/tests/*.rs") if b":" in s]
    write("vars", vars_seeds)

    # pki: CA NUL server cert NUL server key NUL client cert NUL client key NUL name NUL address
    fx = "crates/pki/tests/fixtures/"
    pems = [p[len(ROOT) + 1:] for p in files(fx + "**/*.pem")]
    pki_seeds = [read(p) for p in pems]  # each file as a CA bundle
    pki_seeds += [b"\0\0" + read(p) for p in pems if "cert" not in p and "ca" not in os.path.basename(p)]
    for bits in ("8192", "16384"):
        big = fx + "big-rsa/"
        key = "rsa%s-pkcs8.pem" % bits
        full = [read(big + "ca.pem"), read(big + "rsa%s-cert.pem" % bits), read(big + key),
                read(big + "rsa%s-cert.pem" % bits), read(big + key),
                b"compute1.example.com", b"10.0.0.11"]
        pki_seeds.append(b"\0".join(full))
        by = [read(big + "rsa%s-ca.pem" % bits), read(big + "by-rsa%s-ca-cert.pem" % bits),
              read(big + "by-rsa%s-ca-key.pem" % bits), read(big + "by-rsa%s-ca-cert.pem" % bits),
              read(big + "by-rsa%s-ca-key.pem" % bits), b"compute1", b"10.0.0.11"]
        pki_seeds.append(b"\0".join(by))
    pki_seeds.append(b"\0".join([read(fx + "big-rsa/ca.pem"), read(fx + "big-rsa/by-rsa8192-ca-cert.pem"),
                                 read(fx + "ec-p256-sec1.pem")]))
    pki_seeds += [s for s in literals("crates/pki/src/**/*.rs") if b"-----" in s]
    write("pki", pki_seeds)

    # probe: what the probe script prints (see crates/engine/src/script/lib.sh), and framed
    # file reads (wire::parse_files).
    sha = hashlib.sha256(b"x").hexdigest()
    marker = "\n".join([
        "virtfleet-applied v1", "container 4f2a",
        f"{sha} 600 /etc/kolla/nova-libvirt/libvirtd.conf",
        f"{sha} 644 /etc/kolla/nova-libvirt/a b"])
    probe = "\n".join(
        ["S 8180 root root /etc/kolla/nova-libvirt/libvirtd.conf", "S 41c0 root root /etc/kolla/nova-libvirt",
         f"{sha}  /etc/kolla/nova-libvirt/libvirtd.conf",
         "W /etc/kolla/nova-compute",
         "M /etc/kolla/nova-libvirt/.virtfleet-applied"]
        + ["| " + line for line in marker.split("\n")]
        + ["F /etc/kolla/nova-compute/nova.conf", "| [DEFAULT]", "| debug = False", "| ",
           'J [{"id":"abc","names":["nova_libvirt"]},{"id":"def","names":["nova_compute"]}]',
           "C /nova_compute def", "D nova_libvirt " + "ab" * 32, "N docker", "E Cannot connect",
           "E second line", "M /etc/kolla/nova-compute/.virtfleet-applied"]) + "\n"
    probe_seeds = [probe.encode(), marker.encode()]
    probe_seeds += [b"R 5\nx\ny\nz\nA\nR 0\n\n", b"A\n", b"R 3\nabc\n", b"R 1\n\n\nA\nA\n"]
    probe_seeds += literals("crates/engine/src/state.rs") + literals("crates/engine/src/wire.rs")
    write("probe", probe_seeds)

    # merge: `i` (INI) or `k` (config.json), the host's file, NUL, the rendered template.
    merge_literals = literals("crates/plan/src/merge.rs")
    ini = [s for s in merge_literals if b"[" in s and b"{" not in s]
    ini += [read("playbooks/templates/nova.conf.j2")]
    kolla = [s for s in merge_literals if s.lstrip().startswith(b"{")]
    kolla += [read(p[len(ROOT) + 1:]) for p in files("playbooks/templates/*.json.j2")]
    merge_seeds = []
    for kind, texts in ((b"i", ini), (b"k", kolla)):
        for current in texts:
            merge_seeds.append(kind + current)  # no host file
            for owned in texts:
                merge_seeds.append(kind + current + b"\0" + owned)
    write("merge", merge_seeds)


if __name__ == "__main__":
    main()
