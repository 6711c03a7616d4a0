"""The comparison's measuring and checking, driven by run.sh (see README.md).

  harness.py playbook SOURCE DIR   the bench playbook variant (crates/bench's
                                   write_bench_playbook): readiness `true`, no live reload
  harness.py run ...               every tool, every scenario; results.json and results.md
  harness.py report results.json   results.md again (from the runs kept in results.json)
"""

import argparse
import concurrent.futures
import ctypes
import datetime
import hashlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = ["virtfleet", "ansible", "pyinfra"]
SCENARIOS = [("deploy", "first deploy (day 0)"), ("noop", "noop"), ("ca", "CA change")]
SERVICES = {"nova-libvirt": "nova_libvirt", "nova-compute": "nova_compute"}
CERTS = {"nova-libvirt": ["cacert.pem", "servercert.pem", "serverkey.pem", "clientcert.pem",
                          "clientkey.pem"],
         "nova-compute": ["cacert.pem", "clientcert.pem", "clientkey.pem"]}


def write_playbook(source, dest):
    text = open(source).read()
    ready = "exec: [virsh, version, --daemon]"
    if ready not in text:
        sys.exit(f"{source}: readiness check `{ready}` not found")
    out, skipping = [], False
    for line in text.replace(ready, 'exec: ["true"]').splitlines():
        if line == "    reload:":  # up to the blank line that ends the block
            skipping = True
        elif skipping and not line.strip():
            skipping = False
        if not skipping:
            out.append(line)
    os.makedirs(dest, exist_ok=True)
    with open(os.path.join(dest, "kolla.yml"), "w") as f:
        f.write("\n".join(out) + "\n")
    link = os.path.join(dest, "templates")
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(os.path.join(os.path.dirname(os.path.abspath(source)), "templates"), link)


class Lab:
    """The lab's hosts: names from its inventory, files under its directory, commands in
    their namespaces (as crates/lab's LabHost::command)."""

    def __init__(self, lab_dir, work):
        self.dir, self.work = lab_dir, work
        self.name = os.path.basename(lab_dir)
        self.ns = os.path.join("/run/vflab", self.name, "ns")
        self.hosts = []
        section = None
        for line in open(os.path.join(lab_dir, "inventory")):
            if line.startswith("["):
                section = line.strip()
            elif section == "[compute]" and line.strip():
                self.hosts.append(line.split()[0])
        self.pool = concurrent.futures.ThreadPoolExecutor(8)

    def each(self, fn):
        return dict(zip(self.hosts, self.pool.map(fn, self.hosts)))

    def sh(self, host, script, check=True):
        cmd = ["nsenter", f"--mount={self.ns}/{host}.mnt", f"--uts={self.ns}/{host}.uts",
               "--", "sh", "-c", script]
        return subprocess.run(cmd, capture_output=True, check=check).stdout

    def kolla(self, host, sub=""):
        return os.path.join(self.dir, host, "kolla", sub)

    def snapshot(self):
        for host in self.hosts:
            for d in SERVICES:
                shutil.copytree(self.kolla(host, d), os.path.join(self.work, "day0", host, d))

    def reset(self):
        """Day 0 again: each host's nova-* files as right after `lab up` (the directories
        stay: the containers mount them), and no SASL database in nova_libvirt."""
        def one(host):
            for d in SERVICES:
                target = self.kolla(host, d)
                for name in os.listdir(target):
                    path = os.path.join(target, name)
                    shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
                subprocess.run(["cp", "-a", os.path.join(self.work, "day0", host, d) + "/.",
                                target], check=True)
            self.sh(host, "podman exec nova_libvirt rm -f /etc/libvirt/passwd.db")
        self.each(one)

    def files(self, host):
        """{dir/name: (sha256, mode, uid, gid)} of every file the tools manage (virtfleet's
        own markers left out)."""
        out = {}
        for d in SERVICES:
            for name in sorted(os.listdir(self.kolla(host, d))):
                path = self.kolla(host, f"{d}/{name}")
                if name.startswith(".virtfleet-"):
                    continue
                st = os.lstat(path)
                digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
                out[f"{d}/{name}"] = (digest, oct(st.st_mode & 0o7777), st.st_uid, st.st_gid)
        return out

    def started(self):
        """{host: {container: StartedAt in ns}}"""
        fmt = "{{.Name}} {{.State.StartedAt.UnixNano}}"
        return self.each(lambda h: dict(
            line.split() for line in self.sh(
                h, f"podman inspect --format '{fmt}' nova_libvirt nova_compute"
            ).decode().splitlines()))

    def sasl_problem(self, host, password):
        """What is wrong with the SASL user in nova_libvirt, or None (tried 3 times: a
        `podman exec` right after a restart can fail on a loaded machine)."""
        for _ in range(3):
            out = subprocess.run(
                ["nsenter", f"--mount={self.ns}/{host}.mnt", f"--uts={self.ns}/{host}.uts",
                 "--", "podman", "exec", "nova_libvirt", "sh", "-c",
                 "sasldblistusers2 -f /etc/libvirt/passwd.db && cat /etc/libvirt/passwd.db"],
                capture_output=True)
            db, secret = out.stdout, password.encode()
            if out.returncode == 0 and f"nova@{host}:".encode() in db and secret in db:
                return None if secret + b"\n" not in db else "password stored with a newline"
            time.sleep(1)
        return f"no user nova (exit {out.returncode}: {out.stderr.decode().strip()[:200]})"


class Sampler(threading.Thread):
    """Peak summed RSS of this process's descendants (the tool, its workers and, through
    PR_SET_CHILD_SUBREAPER, the ssh masters that leave it), every 50 ms."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.stop = 0, threading.Event()
        self.page = os.sysconf("SC_PAGE_SIZE")

    def run(self):
        while not self.stop.wait(0.05):
            total = 0
            for pid in descendants(os.getpid()):
                try:
                    total += int(open(f"/proc/{pid}/statm").read().split()[1]) * self.page
                except (OSError, IndexError):
                    pass
            self.peak = max(self.peak, total)


def children(pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def descendants(pid):
    todo, seen = children(pid), []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += children(p)
    return seen


def busy_seconds():
    """The whole machine's busy CPU seconds so far (/proc/stat: all but idle and iowait)."""
    ticks = [int(t) for t in open("/proc/stat").readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def measure(cmd, env, cwd, log):
    """Runs one tool; wall seconds, user+sys CPU of it and the children it waited for, the
    machine's busy CPU seconds meanwhile (controller, sshd, the hosts' commands, podman),
    peak summed RSS of the tree (at least its largest process's), the largest process's
    peak RSS (ru_maxrss), exit status."""
    sampler = Sampler()
    busy = busy_seconds()
    sampler.start()
    with open(log, "a") as out:
        out.write(f"\n=== {datetime.datetime.now():%H:%M:%S} {' '.join(cmd)}\n")
        out.flush()
        start = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - start
    busy = busy_seconds() - busy
    proc.returncode = os.waitstatus_to_exitcode(status)
    sampler.stop.set()
    sampler.join()
    # ssh ControlPersist masters outlive ansible-playbook: they were started by this run
    # and end with it (every run connects afresh, as virtfleet and pyinfra do).
    for pid in descendants(os.getpid()):
        try:
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    return {"seconds": round(wall, 3), "cpu": round(usage.ru_utime + usage.ru_stime, 3),
            "machine_cpu": round(busy, 2),
            "tree_rss_mib": round(max(sampler.peak / 2**20, usage.ru_maxrss / 1024), 1),
            "max_process_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "exit": proc.returncode, "load": round(os.getloadavg()[0], 1)}


class Bench:
    def __init__(self, a):
        self.a = a
        self.lab = Lab(a.lab_dir, a.work)
        self.inventory = os.path.join(a.lab_dir, "inventory")
        self.known_hosts = os.path.join(a.lab_dir, "known_hosts")
        self.password = re.search(r"libvirt_sasl_password:\s*(\S+)",
                                  open(os.path.join(a.configdir, "passwords.yml")).read())[1]
        self.certdir = os.path.join(a.configdir, "config", "nova", "nova-libvirt")
        self.log = a.log
        self.forks = str(max(50, len(self.lab.hosts)))
        self.runs, self.problems, self.reference = [], [], None

    def virtfleet(self, *args):
        return [self.a.virtfleet, *args, "-i", self.inventory, "--configdir", self.a.configdir,
                "--known-hosts", self.known_hosts, "--playbook", self.a.playbook]

    def command(self, tool):
        env = dict(os.environ)
        venv = os.path.join(self.a.venv, "bin")
        if tool == "virtfleet":
            # --one-pass: straight to the end state as the other two go (day 0 listens on
            # TCP, so virtfleet would otherwise run its TCP-to-TLS transition in phases,
            # whose peer checks need a real libvirtd).
            return self.virtfleet("deploy", "--one-pass", "--report",
                                  os.path.join(self.a.work, "report.json")), env, HERE
        if tool == "ansible":
            env.update(ANSIBLE_CONFIG=os.path.join(HERE, "ansible", "ansible.cfg"),
                       ANSIBLE_SSH_COMMON_ARGS=f"-o UserKnownHostsFile={self.known_hosts} "
                                               "-o StrictHostKeyChecking=yes",
                       ANSIBLE_SSH_CONTROL_PATH_DIR=tempfile.mkdtemp(dir=self.a.work))
            cfg = self.a.configdir
            return [f"{venv}/ansible-playbook", "-i", self.inventory, "site.yml",
                    "-f", self.forks, "-e", f"node_config={cfg}",
                    "-e", f"@{cfg}/globals.yml", "-e", f"@{cfg}/passwords.yml"], \
                env, os.path.join(HERE, "ansible")
        env.update(VF_INVENTORY=self.inventory, VF_CONFIGDIR=self.a.configdir)
        return [f"{venv}/pyinfra", "-y", "--parallel", self.forks, "--no-wait",
                "inventory.py", "deploy.py"], env, os.path.join(HERE, "pyinfra")

    def problem(self, tool, scenario, text):
        self.problems.append(f"{tool}, {scenario}: {text}")
        print(f"  PROBLEM: {text}", flush=True)

    def run(self, tool, scenario, index):
        before = self.lab.started()
        cmd, env, cwd = self.command(tool)
        result = measure(cmd, env, cwd, self.log)
        after = self.lab.started()
        result.update(tool=tool, scenario=scenario, run=index + 1)
        self.runs.append(result)
        print(f"{tool:9} {scenario:6} run {index + 1}: {result['seconds']:7.2f} s, "
              f"CPU {result['cpu']:.2f} s, machine CPU {result['machine_cpu']:.1f} s, "
              f"tree RSS {result['tree_rss_mib']:.0f} MiB, load {result['load']}", flush=True)
        problems = [] if result["exit"] == 0 else [f"exit status {result['exit']}"]
        restart = scenario != "noop"
        for host in self.lab.hosts:
            for c in SERVICES.values():
                if (before[host][c] != after[host][c]) != restart:
                    problems.append(f"{host}: {c} {'not ' if restart else ''}restarted")
            if restart and not after[host]["nova_libvirt"] < after[host]["nova_compute"]:
                problems.append(f"{host}: nova_compute restarted before nova_libvirt")
        for p in problems[:5]:
            self.problem(tool, scenario, p)
        result["valid"] = not problems
        return result

    def check_files(self, tool, scenario):
        """Every host's managed files against virtfleet's first deploy (contents, mode,
        owner), or after a CA change, the certificates against the config dir's."""
        files = self.lab.each(self.lab.files)
        if self.reference is None:  # virtfleet's first deploy
            self.reference = files
        for host, got in files.items():
            if scenario == "ca":
                for d, names in CERTS.items():
                    for n in names:
                        src = os.path.join(self.certdir, host, n)
                        src = src if os.path.exists(src) else os.path.join(self.certdir, n)
                        want = hashlib.sha256(open(src, "rb").read()).hexdigest()
                        if got.get(f"{d}/{n}", ("",))[0] != want:
                            self.problem(tool, scenario, f"{host}: {d}/{n} is not the new one")
                continue
            want = self.reference[host]
            for path in sorted(set(want) | set(got)):
                if want.get(path) != got.get(path):
                    self.problem(tool, scenario, f"{host}: {path} differs from virtfleet's: "
                                                 f"{got.get(path)} != {want.get(path)}")
        if scenario == "deploy":
            for host, text in self.lab.each(
                    lambda h: self.lab.sasl_problem(h, self.password)).items():
                if text:
                    self.problem(tool, scenario, f"{host}: SASL: {text}")
        return files

    def main(self):
        a = self.a
        self.lab.snapshot()
        shutil.copytree(self.certdir, os.path.join(a.work, "certs0"))
        counts = {"deploy": a.deploy_runs, "noop": a.noop_runs, "ca": a.ca_runs}
        for tool in TOOLS:
            # Every tool starts from the same certificates and day-0 hosts.
            shutil.rmtree(self.certdir)
            shutil.copytree(os.path.join(a.work, "certs0"), self.certdir)
            for scenario, _ in SCENARIOS:
                for i in range(counts[scenario]):
                    if scenario == "deploy":
                        self.lab.reset()
                    if scenario == "ca":
                        for args in (["certs", "init-ca", "--force"], ["certs", "issue"]):
                            subprocess.run(self.virtfleet(*args), check=True,
                                           stdout=subprocess.DEVNULL)
                    self.run(tool, scenario, i)
                    if scenario != "noop" or i == 0:
                        known = len(self.problems)
                        self.check_files(tool, scenario)
                        self.runs[-1]["valid"] &= len(self.problems) == known
        self.write()
        return 1 if self.problems else 0

    def write(self):
        a = self.a
        meta = {
            "hosts": len(self.lab.hosts), "date": f"{datetime.datetime.now():%Y-%m-%d %H:%M}",
            "commit": subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"],
                                     capture_output=True, text=True).stdout.strip(),
            "cores": os.cpu_count(), "forks": int(self.forks),
            "versions": {t: subprocess.run(c, capture_output=True, text=True).stdout.split(
                "\n")[0].strip() for t, c in [
                ("virtfleet", [a.virtfleet, "--version"]),
                ("ansible", [f"{a.venv}/bin/ansible-playbook", "--version"]),
                ("pyinfra", [f"{a.venv}/bin/pyinfra", "--version"])]},
            "other_labs": [lab for lab in subprocess.run(
                [a.virtfleet + "-lab", "list"], capture_output=True, text=True).stdout.split()
                if lab != self.lab.name],
        }
        with open(os.path.join(a.out, "results.json"), "w") as f:
            json.dump({"meta": meta, "problems": self.problems, "runs": self.runs}, f,
                      indent=2)
            f.write("\n")
        with open(os.path.join(a.out, "results.md"), "w") as f:
            f.write(table(meta, self.runs, self.problems))


def table(meta, runs, problems):
    """results.md from results.json's contents."""

    def med(rows, key):
        return statistics.median(r[key] for r in rows)

    lines = [
        f"# virtfleet vs Ansible vs pyinfra: {meta['hosts']} hosts",
        "",
        f"Generated by `run.sh {meta['hosts']}` on {meta['date']} at {meta['commit']}, "
        f"{meta['cores']} cores, forks/parallel {meta['forks']}; "
        + "; ".join(f"{v}" for v in meta["versions"].values()) + ".",
        "Medians of valid runs (min-max). CPU: user+sys of the tool and the children it "
        "waited for; machine CPU: busy CPU seconds of the whole machine during the run "
        "(the lab hosts' sshd, shells, modules and podman run on the same 2 cores); "
        "tree RSS: peak of the summed RSS of the tool's process tree (sampled every "
        "50 ms; pages shared by forked workers count once per process); largest "
        "process: its ru_maxrss; load: the machine's 1-minute load average after the runs "
        "(the tool's own processes included).",
        "",
        "| scenario | tool | runs | seconds | min-max | × virtfleet | CPU s "
        "| machine CPU s | tree RSS MiB | largest process MiB | load |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for scenario, title in SCENARIOS:
        base = None
        for tool in TOOLS:
            rows = [r for r in runs if r["tool"] == tool and r["scenario"] == scenario
                    and r["valid"]]
            if not rows:
                lines.append(f"| {title} | {tool} | 0 | | | | | | | | |")
                continue
            secs = med(rows, "seconds")
            base = secs if tool == "virtfleet" else base
            ratio = f"{secs / base:.1f}" if base else ""
            lo, hi = min(r["seconds"] for r in rows), max(r["seconds"] for r in rows)
            lines.append(
                f"| {title} | {tool} | {len(rows)} | {secs:.2f} | {lo:.2f}-{hi:.2f} "
                f"| {ratio} | {med(rows, 'cpu'):.2f} | {med(rows, 'machine_cpu'):.1f} "
                f"| {med(rows, 'tree_rss_mib'):.0f} "
                f"| {med(rows, 'max_process_rss_mib'):.0f} | {med(rows, 'load'):.0f} |")
    if meta["other_labs"]:
        lines += ["", f"Other labs were up during the runs: {', '.join(meta['other_labs'])}"
                  " (figures are noisy)."]
    lines += ["", "Checks: " + ("all passed (files identical to virtfleet's on every host, "
                                "restarts only where expected, SASL user present)."
                                if not problems else "FAILED:")]
    lines += [f"- {p}" for p in problems]
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    pb = sub.add_parser("playbook")
    pb.add_argument("source")
    pb.add_argument("dest")
    rp = sub.add_parser("report", help="rewrite results.md from results.json")
    rp.add_argument("json")
    r = sub.add_parser("run")
    for name in ["lab-dir", "work", "configdir", "playbook", "virtfleet", "venv", "out", "log"]:
        r.add_argument(f"--{name}", required=True)
    for name, default in [("deploy-runs", 3), ("noop-runs", 5), ("ca-runs", 3)]:
        r.add_argument(f"--{name}", type=int, default=default)
    a = p.parse_args()
    if a.cmd == "run" and min(a.deploy_runs, a.noop_runs, a.ca_runs) < 1:
        p.error("every scenario needs at least one run")
    if a.cmd == "playbook":
        return write_playbook(a.source, a.dest)
    if a.cmd == "report":
        data = json.load(open(a.json))
        with open(os.path.join(os.path.dirname(a.json), "results.md"), "w") as f:
            f.write(table(data["meta"], data["runs"], data["problems"]))
        return 0
    # Orphans of the measured tools (ssh ControlPersist masters) come back to this process.
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    return Bench(a).main()


if __name__ == "__main__":
    sys.exit(main())
