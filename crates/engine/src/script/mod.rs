//! Every remote command virtfleet runs, built by construction. Hosts need only POSIX sh,
//! coreutils and the container CLI. Fixed shell text comes from `lib.sh` and `'static`
//! literals in this module; every runtime value (path, name, argv word, content) reaches the
//! shell as one quoted argument of a `Script`. File contents and secrets travel on stdin.

use virtfleet_plan::{DesiredFile, Step};

use crate::wire::Tag;

/// Quotes one word for POSIX sh (the same quoting the SSH layer uses for `sudo`).
pub use virtfleet_ssh::shell_quote as quote;

/// The fixed shell functions every script starts with.
const LIB: &str = include_str!("lib.sh");

/// A POSIX sh script under construction. Its only ways in are fixed text (`&'static str`)
/// and arguments, which are always quoted: no runtime value is ever spliced into shell text.
#[derive(Clone, PartialEq, Eq)]
pub struct Script {
    text: Vec<u8>,
}

impl Default for Script {
    fn default() -> Self {
        Script::new()
    }
}

impl Script {
    /// The SHA-256 of the script's text: what a probe read earlier is matched on (a probe
    /// script holds lib.sh, tens of kB, and a run keeps one per host).
    pub fn digest(&self) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(&self.text).into()
    }

    /// A script that starts with lib.sh's functions and the wire tags they print.
    pub fn new() -> Script {
        let mut script = Script {
            text: LIB.as_bytes().to_vec(),
        };
        for tag in Tag::ALL {
            script.set(tag.variable(), tag.text());
        }
        script
    }

    /// A line of fixed shell text.
    pub fn line(&mut self, fixed: &'static str) -> &mut Self {
        self.text.extend_from_slice(fixed.as_bytes());
        self.text.push(b'\n');
        self
    }

    /// `fixed` (a command and its fixed options) followed by each argument as one word.
    pub fn cmd<A: AsRef<[u8]>>(
        &mut self,
        fixed: &'static str,
        args: impl IntoIterator<Item = A>,
    ) -> &mut Self {
        self.words(fixed, args);
        self.text.push(b'\n');
        self
    }

    /// [`Script::cmd`] reading `body` as a here-document. `body`'s lines never end it early:
    /// it must not hold the line `delimiter` (checked).
    pub fn cmd_heredoc<A: AsRef<[u8]>>(
        &mut self,
        fixed: &'static str,
        args: impl IntoIterator<Item = A>,
        delimiter: &'static str,
        body: &[u8],
    ) -> &mut Self {
        assert!(
            !body
                .split(|&b| b == b'\n')
                .any(|line| line == delimiter.as_bytes()),
            "here-document body holds its delimiter"
        );
        self.words(fixed, args);
        self.text.extend_from_slice(b" <<'");
        self.text.extend_from_slice(delimiter.as_bytes());
        self.text.extend_from_slice(b"'\n");
        self.text.extend_from_slice(body);
        if !body.is_empty() && !body.ends_with(b"\n") {
            self.text.push(b'\n');
        }
        self.text.extend_from_slice(delimiter.as_bytes());
        self.text.push(b'\n');
        self
    }

    /// `name=<quoted value>`.
    pub fn set(&mut self, name: &'static str, value: impl AsRef<[u8]>) -> &mut Self {
        self.text.extend_from_slice(name.as_bytes());
        self.text.push(b'=');
        self.text.extend_from_slice(&quote_bytes(value.as_ref()));
        self.text.push(b'\n');
        self
    }

    fn words<A: AsRef<[u8]>>(&mut self, fixed: &'static str, args: impl IntoIterator<Item = A>) {
        self.text.extend_from_slice(fixed.as_bytes());
        for arg in args {
            self.text.push(b' ');
            self.text.extend_from_slice(&quote_bytes(arg.as_ref()));
        }
    }

    /// The script as one `sh -c` argument (tests, the benchmark's direct runs). virtfleet
    /// itself sends every script on stdin ([`Script::for_stdin`]).
    pub fn command(&self) -> String {
        String::from_utf8_lossy(&self.text).into_owned()
    }

    /// The script as the standard input of [`STDIN_COMMAND`]: one compound command, which sh
    /// reads whole before running any of it, so a transfer cut short runs nothing and no
    /// command in it can read the script's own rest as its input.
    pub fn for_stdin(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.text.len() + 8);
        bytes.extend_from_slice(b"{\n");
        bytes.extend_from_slice(&self.text);
        if !self.text.ends_with(b"\n") {
            bytes.push(b'\n');
        }
        bytes.extend_from_slice(b"}\n");
        bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.text
    }
}

/// No arguments, for [`Script::cmd`] calls whose words are all fixed.
const NONE: [&str; 0] = [];

/// One round trip that reports, for every path: mode, owner and sha256; the text of the files
/// merged with the host's version; the applied markers; the service directories the login
/// cannot write (without root rights every file would look changed and every container
/// missing, so the probe says so instead); and each container's ID. Two processes on the host
/// (`stat`, `sha256sum`) plus the engine's `inspect` where podman's store is not there.
///
/// With `facts`, the host's [`facts`] come first in the same round trip (a host without
/// `ip`, when interfaces are asked for, fails the whole script); each parser skips the
/// other's lines.
pub fn probe(
    paths: &[&str],
    contents: &[&str],
    markers: &[&str],
    engine: &str,
    containers: &[&str],
    facts: Facts,
) -> Script {
    let mut s = Script::new();
    match facts {
        Facts::None => {}
        Facts::Nodename => {
            s.line("vf_facts nodename || exit 1");
        }
        Facts::All => {
            s.line("vf_facts || exit 1");
        }
    }
    s.cmd("vf_stat", paths);
    s.cmd("vf_unwritable", markers.iter().map(|m| parent(m)));
    // Containers first: where podman keeps them is read with the files, by one process.
    if !containers.is_empty() {
        s.cmd("vf_containers", [engine].iter().chain(containers));
    }
    let count = contents.len().to_string();
    let read = [count.as_str()].into_iter().chain(contents.iter().copied());
    s.cmd("vf_read", read.chain(markers.iter().copied()));
    s.line("exit 0");
    s
}

/// The remote command of every script: the script itself (paths, hashes, contents, secrets)
/// arrives on stdin, so nothing of it appears on a command line, where any user of the host
/// could read it in `/proc/<pid>/cmdline` (under sudo, the command is sudo's argument).
pub const STDIN_COMMAND: &str = "sh -s";

/// The last line a complete [`push`] prints. A script cut short on its way prints nothing
/// and changes nothing, yet may exit 0, so the caller checks for this line.
pub const PUSH_DONE: &str = "virtfleet push complete";

/// Previous versions to keep during a push (see [`backup`]).
pub struct Backup<'a> {
    pub suffix: &'a str,
    pub paths: Vec<&'a str>,
}

/// A secret file whose mode lets its group read it: the group must be root.
pub fn shared_with_group(file: &DesiredFile) -> bool {
    file.secret && file.mode & 0o070 != 0
}

/// A script for `sh -s` that replaces `files` all or nothing. Every file is written under its
/// final name into a fresh 0700 stage directory beside its target (same filesystem, readable
/// by nobody else), with shell builtins: no process per file. Modes and owners are set, the
/// staged contents checked against their sha256 and synced; only then is each directory's
/// set renamed into place by one `mv`. The whole script is one shell function that runs only
/// once it has arrived in full, so a cut-off transfer writes nothing.
pub fn push(files: &[&DesiredFile], backup: Option<&Backup>) -> Vec<u8> {
    let token = stage_token();
    let mut dirs: Vec<&str> = files.iter().map(|f| parent(&f.path)).collect();
    dirs.sort_unstable();
    dirs.dedup();
    let stage = |dir: &str| format!("{}/.virtfleet-stage.{token}", dir.trim_end_matches('/'));
    let staged = |f: &DesiredFile| format!("{}/{}", stage(parent(&f.path)), base_name(&f.path));
    let stages: Vec<String> = dirs.iter().map(|d| stage(d)).collect();
    let owners: Vec<String> = stages.iter().map(|s| format!("{s}.pid")).collect();

    // Run by the EXIT trap: whatever happens, no stage is left behind.
    let mut cleanup = Script::empty();
    cleanup.cmd("rm -rf --", stages.iter().chain(&owners));

    let mut s = Script::new();
    s.line("run() {\nset -e\numask 077");
    s.cmd("trap", [cleanup.command().as_str(), "EXIT"]);
    // A dropped connection (HUP) or a kill (TERM) must remove the stage too: a shell killed
    // by a signal skips its EXIT trap unless the signal is trapped.
    s.line("trap 'exit 129' HUP INT TERM PIPE");
    // A missing directory: 0700 where it holds a secret for its owner only, else 0755 with
    // its missing parents, so public files (a CA certificate in /etc/pki/CA) and a group's
    // own (QEMU's keys in /etc/pki/qemu, 0640) stay readable to whom they are for.
    for dir in &dirs {
        let secret = files
            .iter()
            .any(|f| f.secret && !shared_with_group(f) && parent(&f.path) == *dir);
        s.cmd("vf_mkdir", [if secret { "0700" } else { "0755" }, dir]);
    }
    for dir in &dirs {
        s.cmd("vf_remove_stale_stages", [dir.trim_end_matches('/')]);
    }
    // The owner file comes first, so a stage never exists without one.
    for stage in &stages {
        s.cmd("vf_claim_stage", [stage]);
    }
    // Explicit modes, though umask 077 gives them too: a default ACL on the service directory
    // overrides the umask, and chmod is what masks its entries (stage and every file).
    s.cmd("mkdir -m 0700 --", &stages);
    for f in files {
        if f.content.contains(&0) {
            // A shell word cannot hold NUL: such a file travels as base64 (one process).
            s.cmd_heredoc(
                "base64 -d >",
                [staged(f)],
                "VIRTFLEET_B64",
                base64_lines(&f.content).as_bytes(),
            );
        } else {
            s.cmd("vf_put", [staged(f).as_bytes(), &f.content]);
        }
    }
    for (mode, group) in grouped(files, |f| Some(format!("{:o}", f.mode))) {
        s.cmd(
            "chmod --",
            [mode].into_iter().chain(group.into_iter().map(staged)),
        );
    }
    // A secret a group may read (Kolla's 0660 auth.conf) goes to group root, never to the
    // group the stage happened to get (a setgid directory, a login's shared group). A login
    // that cannot (not root) fails the push: the secret is not written at all.
    let group_read_secrets: Vec<String> = files
        .iter()
        .filter(|f| shared_with_group(f))
        .map(|f| staged(f))
        .collect();
    if !group_read_secrets.is_empty() {
        s.cmd("chgrp -- 0", &group_read_secrets);
    }
    for (owner, group) in grouped(files, |f| f.owner.clone()) {
        s.cmd(
            "chown --",
            [owner].into_iter().chain(group.into_iter().map(staged)),
        );
    }
    // End to end: what landed on the host is what was planned, byte for byte.
    let sums: String = files
        .iter()
        .map(|f| checksum_line(&f.content, &staged(f)))
        .collect();
    s.cmd_heredoc(
        "sha256sum --quiet --strict -c -",
        NONE,
        "VIRTFLEET_SUMS",
        sums.as_bytes(),
    );
    s.cmd("sync --", files.iter().map(|f| staged(f)));
    if let Some(backup) = backup {
        s.cmd("vf_backup", [backup.suffix].iter().chain(&backup.paths));
    }
    // From the first rename on, a dropped connection or a kill must not leave one directory
    // new and the next old: the renames take milliseconds, so they are finished, not cut.
    // (Ignored signals stay ignored in the `mv` processes too.)
    s.line("trap '' HUP INT TERM PIPE");
    for dir in &dirs {
        let in_dir = files.iter().filter(|f| parent(&f.path) == *dir);
        s.cmd(
            "vf_swap",
            [dir.to_string()]
                .into_iter()
                .chain(in_dir.map(|f| staged(f))),
        );
    }
    // `-d`: a stage must be empty by now, every staged file renamed into place.
    s.cmd("rm -df --", stages.iter().chain(&owners));
    s.line("trap - EXIT");
    s.cmd("echo", [PUSH_DONE]);
    s.line("}\nrun");
    s.into_bytes()
}

impl Script {
    /// A script without lib.sh, for text that runs inside another (a trap).
    fn empty() -> Script {
        Script { text: Vec::new() }
    }
}

/// Distinguishes this run's stage directories from any other's (a killed run's leftovers, a
/// concurrent run): `mkdir` without `-p` refuses an existing one.
fn stage_token() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:x}.{nanos:x}.{n:x}", std::process::id())
}

/// `bytes` as one shell word: bare when it cannot be misread, else single-quoted (bytes kept
/// as they are; NUL cannot occur in a shell word).
fn quote_bytes(bytes: &[u8]) -> Vec<u8> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        return quote(text).into_bytes();
    }
    let mut word = Vec::with_capacity(bytes.len() + 2);
    word.push(b'\'');
    for &b in bytes {
        if b == b'\'' {
            word.extend_from_slice(br"'\''");
        } else {
            word.push(b);
        }
    }
    word.push(b'\'');
    word
}

/// Base64 in 76-column lines, each ending in a newline, as `base64 -d` reads it.
fn base64_lines(bytes: &[u8]) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 76 + 1);
    for chunk in encoded.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out
}

/// One `sha256sum -c` line; names with a backslash or newline use its escaped form.
fn checksum_line(content: &[u8], path: &str) -> String {
    use sha2::Digest;
    let sum = hex::encode(sha2::Sha256::digest(content));
    if path.contains(['\\', '\n']) {
        let escaped = path.replace('\\', r"\\").replace('\n', r"\n");
        format!("\\{sum}  {escaped}\n")
    } else {
        format!("{sum}  {path}\n")
    }
}

/// Files grouped by a key (in first-seen order), skipping those without one: one command
/// per group instead of one per file.
fn grouped<'a>(
    files: &[&'a DesiredFile],
    key: impl Fn(&DesiredFile) -> Option<String>,
) -> Vec<(String, Vec<&'a DesiredFile>)> {
    let mut keys: Vec<String> = Vec::new();
    for f in files {
        if let Some(k) = key(f) {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    keys.into_iter()
        .map(|k| {
            let members = files
                .iter()
                .copied()
                .filter(|f| key(f).as_ref() == Some(&k))
                .collect();
            (k, members)
        })
        .collect()
}

/// Keeps the current version of each file beside it as `<path><suffix>` (see lib.sh's
/// `vf_backup`), so [`restore`] can put either the file or its absence back.
pub fn backup(paths: &[&str], suffix: &str) -> Script {
    let mut s = Script::new();
    s.line("umask 077");
    s.cmd("vf_backup", [suffix].iter().chain(paths));
    s
}

/// Puts back what [`backup`] kept: the previous file, or no file where there was none.
/// Paths without a backup are left as they are.
pub fn restore(paths: &[&str], suffix: &str) -> Script {
    let mut s = Script::new();
    s.line("set -e");
    s.cmd("vf_restore", [suffix].iter().chain(paths));
    s
}

/// Deletes the backups of these paths.
pub fn remove_backups(paths: &[&str], suffix: &str) -> Script {
    let mut s = Script::new();
    s.cmd("vf_remove_backups", [suffix].iter().chain(paths));
    s
}

/// Where a service's commands run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place<'a> {
    /// Inside a container, through the host's container engine, which also restarts it.
    Container { engine: &'a str, name: &'a str },
    /// On the host itself: a service of the host's own service manager, restarted by these
    /// commands (the playbook's, run in order).
    Host { restart: &'a [Step] },
}

impl<'a> Place<'a> {
    /// `vf_in`'s first two words: the engine and container, empty for the host itself.
    fn words(self) -> [&'a str; 2] {
        match self {
            Place::Container { engine, name } => [engine, name],
            Place::Host { .. } => ["", ""],
        }
    }
}

/// How to tell a restarted service is ready: argv run where it runs until it succeeds.
pub struct Readiness<'a> {
    pub argv: &'a [String],
    pub retries: u32,
    pub delay_ms: u64,
}

/// Restart a service (the engine restarts a container; a host service's own commands restart
/// it), then poll its readiness check (one round trip); with a marker, record the applied
/// state once ready.
pub fn restart(place: Place, ready: Option<Readiness>, marker: Option<&MarkerWrite>) -> Script {
    let mut s = Script::new();
    s.line("set -e");
    match place {
        Place::Container { engine, name } => {
            s.cmd("vf_restart", [engine, name]);
        }
        Place::Host { restart } => {
            for step in restart {
                add_exec(&mut s, place, &step.exec, step.stdin.as_deref());
            }
        }
    }
    if let Some(ready) = ready {
        let [engine, container] = place.words();
        let fixed = [
            engine.to_string(),
            container.to_string(),
            ready.retries.to_string(),
            delay_seconds(ready.delay_ms),
        ];
        s.cmd("vf_ready", fixed.iter().chain(ready.argv));
    }
    add_marker(&mut s, marker);
    s
}

/// One command where the service runs, fed `input` on its stdin when there is one. `input`
/// is a word of the script, printed by the shell's builtin `printf` (no process whose command
/// line holds it); the script travels on stdin like every other.
fn add_exec(s: &mut Script, place: Place, argv: &[String], input: Option<&[u8]>) {
    match input {
        None => {
            s.cmd(
                "vf_exec",
                place
                    .words()
                    .into_iter()
                    .chain(argv.iter().map(String::as_str)),
            );
        }
        Some(input) => {
            assert!(!input.contains(&0), "a shell word cannot hold NUL");
            s.words("printf '%s'", [input]);
            s.words(" | vf_exec_stdin", place.words());
            s.cmd("", argv);
        }
    }
}

/// Run commands where the service runs, in order, stopping at the first failure; with a
/// marker, record the applied state after the last.
pub fn exec_in(place: Place, commands: &[Vec<String>], marker: Option<&MarkerWrite>) -> Script {
    let mut s = Script::new();
    s.line("set -e");
    for argv in commands {
        add_exec(&mut s, place, argv, None);
    }
    add_marker(&mut s, marker);
    s
}

/// One command where the service runs, reading `input` (e.g. a password) on its stdin.
pub fn exec_with_input(
    place: Place,
    argv: &[String],
    input: &[u8],
    marker: Option<&MarkerWrite>,
) -> Script {
    let mut s = Script::new();
    s.line("set -e");
    add_exec(&mut s, place, argv, Some(input));
    add_marker(&mut s, marker);
    s
}

/// One command where the service runs, given up after `seconds`.
pub fn exec_with_timeout(place: Place, seconds: u64, argv: &[String]) -> Script {
    let mut s = Script::new();
    let seconds = seconds.to_string();
    let [engine, container] = place.words();
    s.cmd(
        "vf_exec_timeout",
        [engine, container, &seconds]
            .into_iter()
            .chain(argv.iter().map(String::as_str)),
    );
    s
}

/// An applied marker to write: where, and its text (paths, hashes, IDs: not secret).
pub struct MarkerWrite<'a> {
    pub path: &'a str,
    pub text: &'a str,
}

fn add_marker(s: &mut Script, marker: Option<&MarkerWrite>) {
    if let Some(m) = marker {
        s.line("umask 077");
        s.cmd("vf_write_marker", [m.path, m.text]);
    }
}

/// [`read_files`], then whether each of `ports` on `peer` (an address, IPv6 without
/// brackets) answers a TCP connection from this host within `seconds` (`vf_reach`), in the
/// same round trip.
pub fn read_files_and_reach(paths: &[&str], peer: &str, seconds: u64, ports: &[u16]) -> Script {
    let mut s = read_files(paths);
    let host = peer
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let seconds = seconds.to_string();
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    let args = [host.as_str(), seconds.as_str()]
        .into_iter()
        .chain(ports.iter().map(String::as_str));
    s.cmd("vf_reach", args);
    s
}

/// Each file whole, framed by [`crate::wire::parse_files`]'s tags (one round trip).
pub fn read_files(paths: &[&str]) -> Script {
    let mut s = Script::new();
    s.cmd("vf_read_files", paths);
    s
}

/// When each container last started and each file was last written (read only; asked only
/// to adopt services kolla-ansible applied, see [`crate::state::Action::Adopt`]).
pub fn start_times(engine: &str, containers: &[&str], files: &[&str]) -> Script {
    let mut s = Script::new();
    s.cmd("vf_started", [engine].iter().chain(containers));
    s.cmd("vf_mtimes", files);
    s
}

/// Which of the host's facts a script gathers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Facts {
    None,
    /// The nodename only (no process): what planning needs unless it reads an interface.
    Nodename,
    /// The nodename and every interface's addresses (`ip`).
    All,
}

/// The host's facts ([`crate::facts`]): nodename and interface addresses, read only.
pub fn facts() -> Script {
    let mut s = Script::new();
    s.cmd("vf_facts", NONE);
    s
}

/// A file's contents, or nothing when it does not exist.
pub fn cat(path: &str) -> Script {
    let mut s = Script::new();
    s.cmd("vf_cat", [path]);
    s
}

/// The sha256 of the certificate the TLS server at `address:port` presents to a client with
/// the given certificate and key files (openssl on the host), as `sha256sum` prints it.
pub fn served_certificate(
    address: &str,
    port: u16,
    server_name: &str,
    cert: &str,
    key: &str,
) -> Script {
    let host = if address.contains(':') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    };
    let mut s = Script::new();
    s.cmd("vf_served_cert", [host.as_str(), server_name, cert, key]);
    s
}

fn base_name(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, name)| name)
}

fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) => "/",
        Some(i) => &path[..i],
        None => ".",
    }
}

fn delay_seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_the_shell() {
        let words = ["plain", "two words", "it's", "$HOME", "a;b", ""];
        for w in words {
            let out = std::process::Command::new("sh")
                .args(["-c", &format!("printf '%s' {}", quote(w))])
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), w);
        }
    }

    /// Names in `dir` (recursively) other than the given targets: stage or temp leftovers.
    fn leftovers(dir: &std::path::Path) -> Vec<String> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".virtfleet") {
                found.push(name);
            } else if entry.path().is_dir() {
                found.extend(leftovers(&entry.path()));
            }
        }
        found
    }

    /// Words that break naive quoting: a quote, a command substitution, backquotes, a
    /// newline, a leading `-`, an assignment, globs; each would create `canary` if run.
    fn hostile(canary: &std::path::Path) -> Vec<String> {
        let c = canary.display();
        vec![
            format!("it's'$(touch {c})'"),
            format!("$(touch {c})"),
            format!("`touch {c}`"),
            format!("line\n$(touch {c})"),
            format!("-rf; touch {c}"),
            format!("X=1 touch {c}"),
            "*".to_string(),
            "--".to_string(),
        ]
    }

    /// A container engine that records each call's words (NUL-separated) and succeeds.
    fn recording_engine(dir: &std::path::Path) -> (String, std::path::PathBuf) {
        let log = dir.join("words");
        let engine = dir.join("engine");
        std::fs::write(
            &engine,
            // What `exec -i` (or, standing in for a host command, `start`) reads goes to
            // <log>.stdin.
            format!(
                "#!/bin/sh\nprintf '%s\\0' \"$@\" >> '{log}'\n\
                 if [ \"$2\" = -i ] || [ \"$1\" = start ]; then cat > '{log}.stdin'; fi\n",
                log = log.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&engine, std::fs::Permissions::from_mode(0o755)).unwrap();
        (engine.to_str().unwrap().to_string(), log)
    }

    fn recorded(log: &std::path::Path) -> Vec<String> {
        let words = std::fs::read(log).unwrap_or_default();
        let mut words: Vec<String> = words
            .split(|&b| b == 0)
            .map(|w| String::from_utf8(w.to_vec()).unwrap())
            .collect();
        words.pop();
        std::fs::remove_file(log).ok();
        words
    }

    #[test]
    fn every_remote_command_passes_hostile_words_through_intact() {
        let dir = tempfile::tempdir().unwrap();
        let canary = dir.path().join("canary");
        for word in hostile(&canary) {
            exercise(dir.path(), &word, format!("{word}\n").into_bytes());
        }
        assert!(!canary.exists(), "a word ran as a command");
    }

    /// Property: for random words over the characters shells care about (and random bytes,
    /// NUL and non-UTF-8 included, as file contents), every script does exactly what it
    /// should and runs nothing else.
    #[test]
    fn random_words_and_contents_do_exactly_what_they_should() {
        const POOL: &[char] = &[
            '\'', '"', '$', '(', ')', '`', '\n', '\t', ' ', '=', '-', ';', '|', '&', '*', '?',
            '\\', '{', '}', '#', '!', '~', '<', '>', 'a', 'Z', '0', '.', '\u{e9}', '\u{202e}',
        ];
        let dir = tempfile::tempdir().unwrap();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            // xorshift64*: deterministic, so a failure reproduces.
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        for _ in 0..40 {
            let len = 1 + (next() % 12) as usize;
            let word: String = (0..len)
                .map(|_| POOL[(next() % POOL.len() as u64) as usize])
                .collect();
            let content: Vec<u8> = (0..(next() % 64)).map(|_| next() as u8).collect();
            exercise(dir.path(), &word, content);
        }
        let stray: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('d') && n != "engine" && n != "words")
            .collect();
        assert!(stray.is_empty(), "files appeared: {stray:?}");
    }

    /// Runs every script constructor with `word` as a path component, container name, argv
    /// word and marker text (and `content` as a file), checking each did what it should.
    fn exercise(dir: &std::path::Path, word: &str, content: Vec<u8>) {
        let (engine, log) = recording_engine(dir);
        let word = word.to_string();
        // Files: a directory and a file named by the word (no NUL or '/' in names).
        let name = word.replace('/', "_");
        let sub = dir.join(format!("d{name}"));
        let f = file(&sub.join(&name), content, 0o640);
        let path = f.path.clone();
        let out = sh(
            STDIN_COMMAND,
            &push(
                &[&f],
                Some(&Backup {
                    suffix: ".bak",
                    paths: vec![&path],
                }),
            ),
        );
        assert!(
            out.status.success(),
            "{word:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read(&path).unwrap(), f.content, "{word:?}");
        let marker = sub.join(".virtfleet-applied");
        let marker = marker.to_str().unwrap();
        let probe_out = run(&probe(
            &[&path],
            &[&path],
            &[marker],
            &engine,
            &[&word],
            Facts::None,
        ));
        let state = crate::state::HostState::parse(&String::from_utf8_lossy(&probe_out.stdout));
        if !word.contains('\n') {
            assert_eq!(state.files[&path].mode, Some(0o640), "{word:?}");
        }
        assert_eq!(
            recorded(&log),
            ["inspect", "--format", "C {{.Name}} {{.Id}}", "--", &word]
        );
        let files = crate::wire::parse_files(&run(&read_files(&[&path])).stdout, &[&path]).unwrap();
        let read = files[&path].as_ref().unwrap();
        assert_eq!(read.content, f.content, "{word:?}");
        assert_eq!(
            (read.permissions(), &*read.owner),
            (0o640, "root"),
            "{word:?}"
        );
        assert_eq!(run(&cat(&path)).stdout, f.content);
        run_ok(&restore(&[&path], ".bak"));
        run_ok(&remove_backups(&[&path], ".bak"));

        let argv = vec![word.clone(), "-x".to_string()];
        let m = MarkerWrite {
            path: marker,
            text: &word,
        };
        let ready = Readiness {
            argv: &argv,
            retries: 1,
            delay_ms: 0,
        };
        let container = Place::Container {
            engine: &engine,
            name: &word,
        };
        run_ok(&restart(container, Some(ready), Some(&m)));
        assert_eq!(
            recorded(&log),
            ["restart", "--", &word, "exec", "--", &word, &word, "-x"]
        );
        assert_eq!(std::fs::read_to_string(marker).unwrap(), word);
        run_ok(&exec_in(container, std::slice::from_ref(&argv), None));
        assert_eq!(recorded(&log), ["exec", "--", &word, &word, "-x"]);
        // The input: the random contents (a shell word holds any byte but NUL).
        let input: Vec<u8> = f.content.iter().copied().filter(|&b| b != 0).collect();
        // A host service: its own restart commands, run on the host (here the fake engine
        // stands in for systemctl), one fed a secret on stdin, and readiness on the host.
        let steps = [
            Step {
                exec: vec![engine.clone(), "stop".into(), word.clone()],
                stdin: None,
            },
            Step {
                exec: vec![engine.clone(), "start".into(), word.clone()],
                stdin: Some(input.clone()),
            },
        ];
        let host_ready = [engine.clone(), "ready".into(), word.clone()];
        let ready = Readiness {
            argv: &host_ready,
            retries: 1,
            delay_ms: 0,
        };
        run_ok(&restart(Place::Host { restart: &steps }, Some(ready), None));
        assert_eq!(
            recorded(&log),
            ["stop", &word, "start", &word, "ready", &word]
        );
        let stdin_log = log.with_extension("stdin");
        assert_eq!(std::fs::read(&stdin_log).unwrap(), input, "{word:?}");
        std::fs::remove_file(&stdin_log).unwrap();
        run_ok(&exec_with_input(container, &argv, &input, Some(&m)));
        assert_eq!(recorded(&log), ["exec", "-i", "--", &word, &word, "-x"]);
        let stdin_log = log.with_extension("stdin");
        assert_eq!(std::fs::read(&stdin_log).unwrap(), input, "{word:?}");
        std::fs::remove_file(&stdin_log).unwrap();
        assert_eq!(std::fs::read_to_string(marker).unwrap(), word);
        run_ok(&exec_with_timeout(container, 5, &argv));
        assert_eq!(
            recorded(&log),
            ["exec", "--", &word, "timeout", "5", &word, "-x"]
        );
        let out = run(&served_certificate(&word, 1, &word, &word, &word));
        // No server there: openssl fails, sha256sum still prints the digest of nothing.
        assert!(
            String::from_utf8_lossy(&out.stdout).starts_with("e3b0c442"),
            "{word:?}"
        );
    }

    #[test]
    fn push_writes_every_file_exactly_with_its_mode_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let secret = b"password=hunter2\n".to_vec();
        let a = file(&dir.path().join("a/auth.conf"), secret.clone(), 0o600);
        let b = file(
            &dir.path().join("b.conf"),
            b"x = 'quoted' $HOME `id`".to_vec(),
            0o644,
        );
        let binary = file(
            &dir.path().join("a/keytab"),
            vec![0, 1, 0xff, b'\n', 0],
            0o640,
        );
        let latin1 = file(
            &dir.path().join("b c/l1.txt"),
            b"caf\xe9\n\n".to_vec(),
            0o600,
        );
        let empty = file(&dir.path().join("a/empty"), Vec::new(), 0o644);
        std::fs::write(&a.path, "old").ok();
        let files = [&a, &b, &binary, &latin1, &empty];
        let out = sh(STDIN_COMMAND, &push(&files, None));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains(PUSH_DONE));
        use std::os::unix::fs::PermissionsExt;
        for f in files {
            assert_eq!(std::fs::read(&f.path).unwrap(), f.content, "{}", f.path);
            let mode = std::fs::metadata(&f.path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, f.mode, "{}", f.path);
        }
        assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    }

    #[test]
    fn pushed_files_mask_acl_entries_inherited_from_the_directory() {
        // A default ACL on the service directory overrides the umask: a file created there
        // would be readable by the named user. The push's explicit modes mask that entry.
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let svc = dir.path().join("svc");
        std::fs::create_dir(&svc).unwrap();
        for args in [["-m", "u:nobody:rwx"], ["-d", "-m"]] {
            let mut cmd = std::process::Command::new("setfacl");
            cmd.args(args);
            if args[0] == "-d" {
                cmd.arg("u:nobody:rwx");
            }
            assert!(cmd.arg(&svc).status().unwrap().success(), "setfacl");
        }
        let key = file(&svc.join("serverkey.pem"), b"secret key\n".to_vec(), 0o600);
        let out = sh(STDIN_COMMAND, &push(&[&key], None));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let read = std::process::Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "cat"])
            .arg(&key.path)
            .output()
            .unwrap();
        assert!(!read.status.success(), "nobody read the pushed key");
    }

    #[test]
    fn a_push_makes_missing_directories_readable_unless_they_hold_a_secret() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("pki");
        let ca = file(&pki.join("CA/cacert.pem"), b"ca\n".to_vec(), 0o644);
        let mut key = file(&pki.join("libvirt/private/key.pem"), b"k\n".to_vec(), 0o600);
        key.secret = true;
        let out = sh(STDIN_COMMAND, &push(&[&ca, &key], None));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&pki), 0o755);
        assert_eq!(mode(&pki.join("CA")), 0o755);
        assert_eq!(mode(&pki.join("libvirt")), 0o755);
        assert_eq!(mode(&pki.join("libvirt/private")), 0o700);
        // An existing directory keeps its mode.
        std::fs::set_permissions(pki.join("CA"), std::fs::Permissions::from_mode(0o750)).unwrap();
        let ca = file(&pki.join("CA/cacert.pem"), b"ca2\n".to_vec(), 0o644);
        let out = sh(STDIN_COMMAND, &push(&[&ca], None));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(mode(&pki.join("CA")), 0o750);
    }

    #[test]
    fn push_cut_short_anywhere_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let a = file(&dir.path().join("a.conf"), b"new a\n".to_vec(), 0o600);
        let b = file(&dir.path().join("sub/b.conf"), b"new b\n".to_vec(), 0o644);
        std::fs::write(&a.path, "old a\n").unwrap();
        let script = push(&[&a, &b], None);
        // Only the final newline missing is the whole script; any shorter cut must do nothing.
        let body_end = script.len() - "run\n".len();
        let cuts = (0..script.len() - 1)
            .step_by(5)
            .chain([body_end, script.len() - 2]);
        for cut in cuts {
            let out = sh(STDIN_COMMAND, &script[..cut]);
            assert!(!String::from_utf8_lossy(&out.stdout).contains(PUSH_DONE));
            assert_eq!(
                std::fs::read_to_string(&a.path).unwrap(),
                "old a\n",
                "cut at {cut}"
            );
            assert!(!std::path::Path::new(&b.path).exists(), "cut at {cut}");
            assert_eq!(leftovers(dir.path()), Vec::<String>::new(), "cut at {cut}");
        }
    }

    #[test]
    fn push_that_fails_half_way_leaves_the_old_set() {
        let dir = tempfile::tempdir().unwrap();
        let a = file(&dir.path().join("a.conf"), b"new a\n".to_vec(), 0o600);
        let mut b = file(&dir.path().join("b.conf"), b"new b\n".to_vec(), 0o600);
        b.owner = Some("no-such-user-virtfleet".into());
        std::fs::write(&a.path, "old a\n").unwrap();
        let out = sh(STDIN_COMMAND, &push(&[&a, &b], None));
        assert!(!out.status.success());
        assert_eq!(std::fs::read_to_string(&a.path).unwrap(), "old a\n");
        assert!(!std::path::Path::new(&b.path).exists());
        assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    }

    /// Starts `sh -s` on the push script of `files`, with `tool` on the PATH replaced by a
    /// shell script of that `body` (to hold the push at a chosen step).
    fn spawn_push_with(
        dir: &std::path::Path,
        tool: &str,
        body: &str,
        files: &[&DesiredFile],
    ) -> std::process::Child {
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let fake = bin.join(tool);
        std::fs::write(&fake, format!("#!/bin/sh\n{body}")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
        let mut child = std::process::Command::new("sh")
            .arg("-s")
            .env("PATH", path)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&push(files, None)).unwrap();
        child
    }

    #[test]
    fn push_killed_while_staging_leaves_the_old_set_and_no_stage() {
        let dir = tempfile::tempdir().unwrap();
        let a = file(&dir.path().join("a.conf"), b"new a\n".to_vec(), 0o600);
        std::fs::write(&a.path, "old a\n").unwrap();
        // A slow `sync` holds the script after staging, before any rename. (A shell runs a
        // trap once its foreground command ends, so the signal takes effect after it.)
        let mut child = spawn_push_with(dir.path(), "sync", "exec sleep 1\n", &[&a]);
        let staged = || !leftovers(dir.path()).is_empty();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !staged() {
            assert!(std::time::Instant::now() < deadline, "never staged");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = child.wait().unwrap();
        assert!(!status.success());
        assert_eq!(std::fs::read_to_string(&a.path).unwrap(), "old a\n");
        assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    }

    #[test]
    fn push_removes_stages_of_dead_pushes_and_keeps_live_ones() {
        let dir = tempfile::tempdir().unwrap();
        let a = file(&dir.path().join("a.conf"), b"new a\n".to_vec(), 0o600);
        // A stage left by a push that was SIGKILLed: its shell is gone.
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = gone.id();
        gone.wait().unwrap();
        let stale = dir.path().join(".virtfleet-stage.dead");
        std::fs::create_dir(&stale).unwrap();
        std::fs::write(stale.join("serverkey.pem"), "old key").unwrap();
        std::fs::write(
            dir.path().join(".virtfleet-stage.dead.pid"),
            format!("{dead_pid}\n"),
        )
        .unwrap();
        // A concurrent push still running (this test process stands in for its shell).
        let live = dir.path().join(".virtfleet-stage.live");
        std::fs::create_dir(&live).unwrap();
        let live_owner = dir.path().join(".virtfleet-stage.live.pid");
        std::fs::write(&live_owner, format!("{}\n", std::process::id())).unwrap();

        let out = sh(STDIN_COMMAND, &push(&[&a], None));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read_to_string(&a.path).unwrap(), "new a\n");
        let mut left = leftovers(dir.path());
        left.sort();
        assert_eq!(left, [".virtfleet-stage.live", ".virtfleet-stage.live.pid"]);
    }

    #[test]
    fn a_kill_once_the_renames_began_still_swaps_every_directory() {
        let dir = tempfile::tempdir().unwrap();
        let a = file(&dir.path().join("a/a.conf"), b"new a\n".to_vec(), 0o600);
        let b = file(&dir.path().join("b/b.conf"), b"new b\n".to_vec(), 0o600);
        for f in [&a, &b] {
            std::fs::create_dir_all(std::path::Path::new(&f.path).parent().unwrap()).unwrap();
            std::fs::write(&f.path, "old\n").unwrap();
        }
        // A slow `mv` holds the script inside its renames; the signal comes during the first.
        let started = dir.path().join("mv-started");
        let body = format!(
            ": > {}\nsleep 0.5\nexec /bin/mv \"$@\"\n",
            started.display()
        );
        let mut child = spawn_push_with(dir.path(), "mv", &body, &[&a, &b]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !started.exists() {
            assert!(std::time::Instant::now() < deadline, "never renamed");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        for signal in ["-HUP", "-TERM"] {
            let sent = std::process::Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .unwrap();
            assert!(sent.success());
        }
        child.wait().unwrap();
        assert_eq!(std::fs::read_to_string(&a.path).unwrap(), "new a\n");
        assert_eq!(std::fs::read_to_string(&b.path).unwrap(), "new b\n");
        assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    }

    /// A container engine that records its calls and whose `restart` fails the way podman's
    /// does under load; `stop` fails too when `stop_fails`.
    fn fake_engine(dir: &std::path::Path, stop_fails: bool) -> (String, std::path::PathBuf) {
        let log = dir.join("calls");
        let engine = dir.join("engine");
        let script = format!(
            "#!/bin/sh\necho \"$1\" >> {log}\ncase $1 in\n  \
             restart) echo 'container state improper: stopped' >&2; exit 125 ;;\n  \
             stop) exit {stop} ;;\nesac\nexit 0\n",
            log = log.display(),
            stop = u8::from(stop_fails),
        );
        std::fs::write(&engine, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&engine, std::fs::Permissions::from_mode(0o755)).unwrap();
        (engine.to_str().unwrap().to_string(), log)
    }

    #[test]
    fn a_failed_restart_falls_back_to_stop_and_start() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, log) = fake_engine(dir.path(), false);
        let ready = ["true".to_string()];
        let out = run(&restart(
            Place::Container {
                engine: &engine,
                name: "nova_libvirt",
            },
            Some(Readiness {
                argv: &ready,
                retries: 3,
                delay_ms: 10,
            }),
            None,
        ));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let calls = std::fs::read_to_string(&log).unwrap();
        assert_eq!(calls, "restart\nstop\nstart\nexec\n");
    }

    #[test]
    fn a_restart_that_cannot_be_recovered_fails_with_its_error() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, log) = fake_engine(dir.path(), true);
        let container = Place::Container {
            engine: &engine,
            name: "nova_libvirt",
        };
        let out = run(&restart(container, None, None));
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("state improper"));
        // Never started while possibly still running the old files.
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "restart\nstop\n");
    }

    #[test]
    fn a_secret_its_group_may_read_goes_to_group_root_or_is_not_written() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        // A setgid directory of another group: new files would take that group.
        let svc = dir.path().join("svc");
        std::fs::create_dir(&svc).unwrap();
        std::os::unix::fs::chown(&svc, Some(65534), Some(65534)).unwrap();
        std::fs::set_permissions(&svc, std::fs::Permissions::from_mode(0o2770)).unwrap();
        let mut secret = file(&svc.join("auth.conf"), b"password=x\n".to_vec(), 0o660);
        secret.secret = true;
        let plain = file(&svc.join("libvirtd.conf"), b"a = 1\n".to_vec(), 0o660);
        let out = sh(STDIN_COMMAND, &push(&[&secret, &plain], None));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let gid = |name: &str| std::fs::metadata(svc.join(name)).unwrap().gid();
        assert_eq!(gid("auth.conf"), 0);
        assert_eq!(
            gid("libvirtd.conf"),
            65534,
            "only secrets are given to root"
        );
        // A login that cannot give it to root writes nothing.
        let theirs = dir.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        let mut secret = file(&theirs.join("auth.conf"), b"password=x\n".to_vec(), 0o660);
        secret.secret = true;
        let nobody = [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ];
        let out = run_stdin_as(&nobody, &push(&[&secret], None));
        assert!(!out.status.success());
        assert!(!theirs.join("auth.conf").exists());
    }

    #[test]
    fn facts_ride_along_with_the_probe_and_each_parser_reads_only_its_own_lines() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("nova.conf");
        // A merged file whose lines look like `ip` output and like facts: they are the
        // file's text, never facts.
        std::fs::write(
            &conf,
            "2: evil0    inet 203.0.113.9/24 scope global evil0\nH other\n",
        )
        .unwrap();
        let conf = conf.to_str().unwrap();
        let marker = dir.path().join("marker");
        let marker = marker.to_str().unwrap();
        let probe_with = |facts| probe(&[conf], &[conf], &[marker], "true", &["c"], facts);
        let alone = run(&probe_with(Facts::None));
        let together = run(&probe_with(Facts::All));
        let facts_alone = run(&facts());
        for out in [&alone, &together, &facts_alone] {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let text = |out: &std::process::Output| String::from_utf8(out.stdout.clone()).unwrap();
        let state = |out| format!("{:?}", crate::state::HostState::parse(&text(out)));
        assert_eq!(state(&together), state(&alone));
        let gathered = crate::facts::parse(&text(&together)).expect("facts in the output");
        assert_eq!(
            Some(gathered.clone()),
            crate::facts::parse(&text(&facts_alone))
        );
        assert!(gathered.get("evil0").is_none(), "{gathered}");
        assert_ne!(gathered["nodename"], "other");
        assert!(
            !gathered["interfaces"].as_array().unwrap().is_empty(),
            "{gathered}"
        );
        // The nodename alone: no interfaces (and no `ip`), the probe's answer the same.
        let nodename_only = run(&probe_with(Facts::Nodename));
        assert_eq!(state(&nodename_only), state(&alone));
        let named = crate::facts::parse(&text(&nodename_only)).expect("facts in the output");
        assert_eq!(named["nodename"], gathered["nodename"]);
        assert_eq!(named["interfaces"], serde_json::json!([]), "{named}");
    }

    #[test]
    fn probe_names_service_dirs_the_user_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let (locked, open) = (dir.path().join("locked"), dir.path().join("open"));
        std::fs::create_dir(&locked).unwrap();
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let marker = |d: &std::path::Path| d.join(".virtfleet-applied").display().to_string();
        let markers = [
            marker(&locked),
            marker(&open),
            marker(&dir.path().join("absent")),
        ];
        let markers: Vec<&str> = markers.iter().map(String::as_str).collect();
        let script = probe(&[], &[], &markers, "true", &["c"], Facts::None);
        // As an unprivileged user (the tests run as root, like the lab).
        let out = run_as(
            &[
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
            ],
            &script,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let state = crate::state::HostState::parse(&String::from_utf8(out.stdout).unwrap());
        assert_eq!(state.unwritable_dirs, [locked.display().to_string()]);
        // Root may write everywhere here.
        let as_root = run(&script);
        let state = crate::state::HostState::parse(&String::from_utf8(as_root.stdout).unwrap());
        assert!(state.unwritable_dirs.is_empty());
    }

    #[test]
    fn probe_reports_hashes_modes_markers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "abc").unwrap();
        let m = dir.path().join("marker");
        let marker = crate::state::Marker {
            container_id: "c1".into(),
            files: [("/x".to_string(), ("ab".repeat(32), 0o644))].into(),
        };
        // No final newline: the last line still counts.
        std::fs::write(&m, marker.render().trim_end()).unwrap();
        let ps = p.to_str().unwrap();
        let ms = m.to_str().unwrap();
        // A merged file's text comes back whole: blank lines, leading blanks, backslashes.
        let q = dir.path().join("nova.conf");
        let text = "[DEFAULT]\n\n  indented = a\\b %s\n| not a marker\nlast";
        std::fs::write(&q, text).unwrap();
        let qs = q.to_str().unwrap();
        let script = probe(
            &[ps, "/nonexistent"],
            &[qs, "/nonexistent"],
            &[ms],
            "true",
            &["c"],
            Facts::None,
        );
        let out = run(&script);
        let state = crate::state::HostState::parse(&String::from_utf8(out.stdout).unwrap());
        assert_eq!(
            state.contents.get(qs).map(String::as_str),
            Some(&*format!("{text}\n"))
        );
        assert!(!state.contents.contains_key("/nonexistent"));
        let f = &state.files[ps];
        assert_eq!(
            f.sha256.as_deref(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(f.mode, Some(0o644));
        assert!(!state.files.contains_key("/nonexistent"));
        assert_eq!(state.markers.get(ms), Some(&marker));
    }

    #[test]
    fn a_probe_that_cannot_read_the_hosts_files_fails_instead_of_reading_them_empty() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("nova.conf");
        std::fs::write(&conf, "[DEFAULT]\ntransport_url = kept\n").unwrap();
        // A host without awk: everything else the probe runs is there.
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        for tool in ["sh", "stat", "sha256sum"] {
            let found = ["/bin", "/usr/bin"]
                .iter()
                .map(|d| std::path::Path::new(d).join(tool))
                .find(|p| p.exists())
                .unwrap();
            std::os::unix::fs::symlink(found, bin.join(tool)).unwrap();
        }
        let conf = conf.to_str().unwrap();
        let script = probe(&[conf], &[conf], &[], "true", &[], Facts::None);
        let path = format!("PATH={}", bin.display());
        let out = run_as(&["env", &path], &script);
        assert!(!out.status.success(), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("could not be read"), "{stderr}");
        // With awk, the same probe reads the file.
        let out = run(&script);
        assert!(out.status.success(), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("transport_url = kept"));
    }

    #[test]
    fn reads_never_follow_a_symlink_at_a_managed_path() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("elsewhere");
        std::fs::write(&secret, "not virtfleet's\n").unwrap();
        let link = dir.path().join("nova.conf");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        let link = link.to_str().unwrap();
        let out = run(&read_files(&[link]));
        let files = crate::wire::parse_files(&out.stdout, &[link]).unwrap();
        assert_eq!(files[link], None);
        assert_eq!(run(&cat(link)).stdout, b"");
        let probe_out = run(&probe(&[link], &[link], &[], "true", &[], Facts::None));
        let text = String::from_utf8_lossy(&probe_out.stdout);
        assert!(!text.contains("not virtfleet's"), "{text}");
    }

    #[test]
    fn backup_then_restore_brings_back_old_files_and_absence() {
        let dir = tempfile::tempdir().unwrap();
        let old = file(&dir.path().join("old.pem"), b"new\n".to_vec(), 0o600);
        let added = file(&dir.path().join("added.pem"), b"added\n".to_vec(), 0o600);
        std::fs::write(&old.path, "old\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        std::fs::set_permissions(&old.path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let suffix = ".bak";
        let keep = Backup {
            suffix,
            paths: vec![old.path.as_str(), added.path.as_str()],
        };
        let out = sh(STDIN_COMMAND, &push(&[&old, &added], Some(&keep)));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read_to_string(&old.path).unwrap(), "new\n");
        assert_eq!(mode(&old.path), 0o600);
        let kept = format!("{}{suffix}", old.path);
        assert_eq!(std::fs::read_to_string(&kept).unwrap(), "old\n");

        let paths = [old.path.as_str(), added.path.as_str()];
        run_ok(&restore(&paths, suffix));
        assert_eq!(std::fs::read_to_string(&old.path).unwrap(), "old\n");
        assert_eq!(mode(&old.path), 0o644, "the old file's own mode comes back");
        assert!(!std::path::Path::new(&added.path).exists());
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["old.pem"], "backups left behind");

        // Without backups, restore changes nothing; remove_backups cleans both kinds.
        run_ok(&restore(&paths, suffix));
        assert_eq!(std::fs::read_to_string(&old.path).unwrap(), "old\n");
        run_ok(&backup(&paths, suffix));
        run_ok(&remove_backups(&paths, suffix));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    fn file(path: &std::path::Path, content: Vec<u8>, mode: u32) -> DesiredFile {
        DesiredFile {
            path: path.to_str().unwrap().to_string(),
            sha256: String::new(),
            content,
            mode,
            owner: None,
            secret: false,
            source: Default::default(),
            merge: None,
            role: None,
            cert_set: None,
        }
    }

    #[test]
    fn reach_tells_open_from_refused_after_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "P 1 open\n").unwrap();
        let path = path.to_str().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap().port();
        let refused = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let ports = [open, refused];
        let out = run(&read_files_and_reach(&[path], "127.0.0.1", 3, &ports));
        assert!(out.status.success(), "{out:?}");
        let (files, rest) = crate::wire::parse_files_then(&out.stdout, &[path]).unwrap();
        // A file's content that looks like a reach line is the file's, not a port's.
        assert_eq!(files[path].as_ref().unwrap().content, b"P 1 open\n");
        let reach = crate::wire::parse_reach(rest, &ports).unwrap().unwrap();
        assert_eq!(reach[&open], crate::wire::Reach::Open);
        assert_eq!(reach[&refused], crate::wire::Reach::Closed);
        // A port it said nothing of did not answer.
        let reach = crate::wire::parse_reach(b"P - tested\n", &[open])
            .unwrap()
            .unwrap();
        assert_eq!(reach[&open], crate::wire::Reach::Filtered);
        // No test at all (no bash there): nothing is said; anything else is garbled.
        assert_eq!(crate::wire::parse_reach(b"", &ports), Ok(None));
        assert!(crate::wire::parse_reach(b"P - tested\nP 1 open\n", &ports).is_err());
        assert!(crate::wire::parse_reach(b"P - tested\nsomething\n", &ports).is_err());
    }

    fn sh(script: &str, stdin: &[u8]) -> std::process::Output {
        use std::io::Write;
        let mut child = std::process::Command::new("sh")
            .args(["-c", script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs `script` as virtfleet does: `sh -s` reading it on stdin.
    fn run(script: &Script) -> std::process::Output {
        run_as(&[], script)
    }

    /// [`run`] under a wrapper command (`setpriv ...`).
    fn run_as(wrapper: &[&str], script: &Script) -> std::process::Output {
        run_stdin_as(wrapper, &script.for_stdin())
    }

    /// [`STDIN_COMMAND`] fed `stdin` (a whole script), under a wrapper command.
    fn run_stdin_as(wrapper: &[&str], stdin: &[u8]) -> std::process::Output {
        let argv: Vec<&str> = wrapper
            .iter()
            .copied()
            .chain(["sh", "-c", STDIN_COMMAND])
            .collect();
        let mut child = std::process::Command::new(argv[0])
            .args(&argv[1..])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    fn run_ok(script: &Script) {
        let out = run(script);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A docker host under a temporary directory: dockerd's pid file, its /proc entry, a
    /// daemon.json, a data root with one `config.v2.json` per container, and a `docker`
    /// command that answers `inspect` with "C /<name> inspected-<name>" (so a fallback shows).
    struct FakeDocker {
        dir: tempfile::TempDir,
    }

    impl FakeDocker {
        const CMDLINE: &'static str =
            "/usr/bin/dockerd\0-H\0fd://\0--containerd=/run/containerd/containerd.sock\0";

        fn new(containers: &[(&str, &str)]) -> FakeDocker {
            let fake = FakeDocker {
                dir: tempfile::tempdir().unwrap(),
            };
            let p = fake.path();
            std::fs::create_dir_all(p.join("proc/4242")).unwrap();
            std::fs::create_dir_all(p.join("bin")).unwrap();
            std::fs::create_dir_all(p.join("home")).unwrap();
            std::fs::write(p.join("docker.pid"), "4242").unwrap();
            std::fs::write(p.join("proc/4242/comm"), "dockerd\n").unwrap();
            std::fs::write(p.join("proc/4242/cmdline"), Self::CMDLINE).unwrap();
            std::fs::write(
                p.join("daemon.json"),
                "{\n  \"storage-driver\": \"overlay2\"\n}\n",
            )
            .unwrap();
            for (name, id) in containers {
                fake.add(&p.join("docker"), name, id, "");
            }
            fake.engine(
                "case $1 in inspect) shift 4; for n; do echo \"C /$n inspected-$n\"; done ;; esac",
            );
            fake
        }

        fn path(&self) -> &std::path::Path {
            self.dir.path()
        }

        /// A container `name` with `id` in the data root `root`; `labels` inside its config.
        fn add(&self, root: &std::path::Path, name: &str, id: &str, labels: &str) {
            let dir = root.join("containers").join(id);
            std::fs::create_dir_all(&dir).unwrap();
            let config = format!(
                "{{\"State\":{{\"Running\":true,\"Pid\":7}},\"ID\":\"{id}\",\"Config\":\
                 {{\"Hostname\":\"compute01\",\"Labels\":{{{labels}}}}},\"LogPath\":\"{}\",\
                 \"Name\":\"/{name}\",\"Driver\":\"overlay2\",\"MountPoints\":{{\"/usr\":\
                 {{\"Name\":\"\",\"Driver\":\"\"}}}}}}",
                dir.join(format!("{id}-json.log")).display()
            );
            std::fs::write(dir.join("config.v2.json"), config).unwrap();
        }

        /// Replaces the `docker` command with a script of `body`.
        fn engine(&self, body: &str) {
            let docker = self.path().join("bin/docker");
            std::fs::write(&docker, format!("#!/bin/sh\n{body}\n")).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&docker, std::fs::Permissions::from_mode(0o755)).unwrap();
        }

        /// The probe's container step for `engine` and `names`, pointed at this fake host,
        /// run under `sh` with `env` set; its stdout.
        fn probe(&self, engine: &str, names: &[&str], env: &[(&str, &str)]) -> String {
            self.probe_as(&[], engine, names, env)
        }

        /// [`FakeDocker::probe`] run through `wrapper` (e.g. setpriv and its options).
        fn probe_as(
            &self,
            wrapper: &[&str],
            engine: &str,
            names: &[&str],
            env: &[(&str, &str)],
        ) -> String {
            let p = self.path();
            let mut s = Script::new();
            s.set("vf_docker_pidfile", p.join("docker.pid").to_str().unwrap());
            s.set("vf_docker_conf", p.join("daemon.json").to_str().unwrap());
            s.set("vf_docker_root", p.join("docker").to_str().unwrap());
            s.set("vf_proc", p.join("proc").to_str().unwrap());
            s.cmd("vf_containers", [engine].iter().chain(names));
            let path = format!(
                "{}:{}",
                p.join("bin").display(),
                std::env::var("PATH").unwrap()
            );
            let mut cmd = match wrapper.split_first() {
                Some((program, args)) => {
                    let mut cmd = std::process::Command::new(program);
                    cmd.args(args).arg("sh");
                    cmd
                }
                None => std::process::Command::new("sh"),
            };
            cmd.args(["-c", &s.command()])
                .env("PATH", path)
                .env("HOME", p.join("home"));
            for var in ["DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG"] {
                cmd.env_remove(var);
            }
            cmd.envs(env.iter().copied());
            let out = cmd.output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        }
    }

    const ID_A: &str = "9556472cc814788a4dda38888c8f800516f416fbb72c9512357b24e7178470d1";
    const ID_B: &str = "b7ffb97c4a7efa652eb67be4b1ea279798f42f036a2c94f8d87b1216a64f7975";
    const ID_C: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn kolla_docker() -> FakeDocker {
        FakeDocker::new(&[
            ("nova_libvirt", ID_A),
            ("nova_compute", ID_B),
            ("nova_libvirt_exporter", ID_C),
        ])
    }

    const NAMES: [&str; 2] = ["nova_libvirt", "nova_compute"];

    fn inspected() -> String {
        "C /nova_libvirt inspected-nova_libvirt\nC /nova_compute inspected-nova_compute\n".into()
    }

    #[test]
    fn docker_container_ids_come_from_its_store_without_a_daemon_call() {
        let fake = kolla_docker();
        // The fake docker would answer "C ..." lines: only "D" lines means none ran.
        let out = fake.probe("docker", &NAMES, &[]);
        assert_eq!(
            out,
            format!("D nova_libvirt {ID_A}\nD nova_compute {ID_B}\n")
        );
        let state = crate::state::HostState::parse(&out);
        assert_eq!(state.containers["nova_libvirt"], ID_A);
        assert_eq!(state.containers["nova_compute"], ID_B);
        // A dockerd without arguments, and a current context named only by a login's
        // config.json that sets none.
        std::fs::write(fake.path().join("proc/4242/cmdline"), "/usr/sbin/dockerd").unwrap();
        std::fs::create_dir_all(fake.path().join("home/.docker")).unwrap();
        std::fs::write(
            fake.path().join("home/.docker/config.json"),
            "{\"auths\": {}}\n",
        )
        .unwrap();
        assert!(fake
            .probe("docker", &NAMES, &[])
            .starts_with("D nova_libvirt "));
    }

    #[test]
    fn docker_data_root_set_in_daemon_json_is_read_there() {
        let fake = FakeDocker::new(&[]);
        let root = fake.path().join("srv docker");
        fake.add(&root, "nova_libvirt", ID_A, "");
        fake.add(&root, "nova_compute", ID_B, "");
        // Old IDs under the default root must not count.
        fake.add(&fake.path().join("docker"), "nova_libvirt", ID_C, "");
        std::fs::write(
            fake.path().join("daemon.json"),
            format!(
                "{{\n  \"log-driver\": \"json-file\",\n  \"data-root\" :\t\"{}/\"\n}}\n",
                root.display()
            ),
        )
        .unwrap();
        assert_eq!(
            fake.probe("docker", &NAMES, &[]),
            format!("D nova_libvirt {ID_A}\nD nova_compute {ID_B}\n")
        );
    }

    #[test]
    fn docker_store_falls_back_to_inspect_whenever_it_may_not_be_exact() {
        let write = |fake: &FakeDocker, path: &str, text: &str| {
            let path = fake.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        type Case = (&'static str, Box<dyn Fn(&FakeDocker)>);
        let cases: Vec<Case> = vec![
            (
                "a name matched twice (a label holds it)",
                Box::new(|f: &FakeDocker| {
                    let root = f.path().join("docker");
                    f.add(
                        &root,
                        "other",
                        &"e".repeat(64),
                        "\"Name\":\"/nova_compute\"",
                    );
                }),
            ),
            (
                "a name not in the store",
                Box::new(|f: &FakeDocker| {
                    std::fs::remove_dir_all(f.path().join("docker/containers").join(ID_B)).unwrap();
                }),
            ),
            (
                "an ID that is not 64 hex digits",
                Box::new(|f: &FakeDocker| {
                    let c = f.path().join("docker/containers");
                    std::fs::rename(c.join(ID_A), c.join("not-an-id")).unwrap();
                }),
            ),
            (
                "no pid file",
                Box::new(|f: &FakeDocker| {
                    std::fs::remove_file(f.path().join("docker.pid")).unwrap()
                }),
            ),
            (
                "a pid file naming another program",
                Box::new(move |f: &FakeDocker| write(f, "proc/4242/comm", "sleep\n")),
            ),
            (
                "--data-root on dockerd's command line",
                Box::new(move |f: &FakeDocker| {
                    write(
                        f,
                        "proc/4242/cmdline",
                        "/usr/bin/dockerd\0--data-root=/srv/docker\0",
                    )
                }),
            ),
            (
                "-g in a cluster on dockerd's command line",
                Box::new(move |f: &FakeDocker| {
                    write(
                        f,
                        "proc/4242/cmdline",
                        "/usr/bin/dockerd\0-Dg\0/srv/docker\0",
                    )
                }),
            ),
            (
                "--config-file on dockerd's command line",
                Box::new(move |f: &FakeDocker| {
                    write(f, "proc/4242/cmdline", "dockerd\0--config-file\0/x.json\0")
                }),
            ),
            (
                "the old \"graph\" key in daemon.json",
                Box::new(move |f: &FakeDocker| write(f, "daemon.json", "{\"graph\": \"/srv\"}")),
            ),
            (
                "an escaped data-root",
                Box::new(move |f: &FakeDocker| {
                    write(f, "daemon.json", "{\"data-root\": \"/srv/do\\u0063ker\"}")
                }),
            ),
            (
                "a relative data-root",
                Box::new(move |f: &FakeDocker| write(f, "daemon.json", "{\"data-root\": \"srv\"}")),
            ),
            (
                "two data-roots",
                Box::new(move |f: &FakeDocker| {
                    write(
                        f,
                        "daemon.json",
                        "{\"data-root\": \"/a\", \"data-root\": \"/b\"}",
                    )
                }),
            ),
            (
                "a current context in the login's docker config",
                Box::new(move |f: &FakeDocker| {
                    write(
                        f,
                        "home/.docker/config.json",
                        "{\"currentContext\": \"remote\"}",
                    )
                }),
            ),
        ];
        for (why, change) in cases {
            let fake = kolla_docker();
            change(&fake);
            assert_eq!(fake.probe("docker", &NAMES, &[]), inspected(), "{why}");
        }
        for var in ["DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG"] {
            let fake = kolla_docker();
            assert_eq!(
                fake.probe("docker", &NAMES, &[(var, "x")]),
                inspected(),
                "{var} set"
            );
        }
        // A name outside docker's alphabet never reaches the store read.
        let fake = kolla_docker();
        assert_eq!(
            fake.probe("docker", &["nova_libvirt", "a\"b"], &[]),
            "C /nova_libvirt inspected-nova_libvirt\nC /a\"b inspected-a\"b\n"
        );
    }

    #[test]
    fn docker_store_unreadable_by_the_login_falls_back_to_inspect() {
        let fake = kolla_docker();
        use std::os::unix::fs::PermissionsExt;
        // Everything readable but the store, as /var/lib/docker (0710) is to a non-root user.
        for dir in [
            fake.path(),
            &fake.path().join("bin"),
            &fake.path().join("home"),
        ] {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let nobody = [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ];
        let store_read = format!("D nova_libvirt {ID_A}\nD nova_compute {ID_B}\n");
        assert_eq!(fake.probe_as(&nobody, "docker", &NAMES, &[]), store_read);
        let store = fake.path().join("docker/containers");
        std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o710)).unwrap();
        assert_eq!(fake.probe_as(&nobody, "docker", &NAMES, &[]), inspected());
        assert_eq!(
            fake.probe("docker", &NAMES, &[]),
            store_read,
            "root reads it"
        );
    }

    #[test]
    fn a_missing_or_unusable_engine_is_reported_as_such() {
        let fake = kolla_docker();
        let out = fake.probe("vf-no-such-engine", &NAMES, &[]);
        assert_eq!(out, "N vf-no-such-engine\n");
        assert_eq!(
            crate::state::HostState::parse(&out).engine_problem,
            Some(crate::state::EngineProblem::Missing)
        );
        // A daemon that does not answer: inspect and ps fail alike.
        fake.engine(
            "echo 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. \
             Is the docker daemon running?' >&2\nexit 1",
        );
        std::fs::remove_file(fake.path().join("docker.pid")).unwrap();
        let state = crate::state::HostState::parse(&fake.probe("docker", &NAMES, &[]));
        assert_eq!(
            state.engine_problem,
            Some(crate::state::EngineProblem::Unusable(
                "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. \
                 Is the docker daemon running?"
                    .into()
            ))
        );
        // An engine that works but lacks a container: that container is missing, no more.
        fake.engine(
            "case $1 in inspect) echo 'C /nova_libvirt x'; echo 'Error: No such object: \
             nova_compute' >&2; exit 1 ;; esac",
        );
        let state = crate::state::HostState::parse(&fake.probe("docker", &NAMES, &[]));
        assert_eq!(state.engine_problem, None);
        assert_eq!(
            state.containers.keys().collect::<Vec<_>>(),
            ["nova_libvirt"]
        );
    }
}
