//! The POSIX sh scripts sent to hosts. Hosts need only sh, coreutils and the container CLI.
//! Scripts carry paths, hashes and names; file contents and secrets travel on stdin.

use virtfleet_plan::DesiredFile;

/// Quotes one word for POSIX sh (the same quoting the SSH layer uses for `sudo`).
pub use virtfleet_ssh::shell_quote as quote;

pub fn quote_argv(argv: &[String]) -> String {
    argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
}

/// Where podman's default (root) container store keeps its container list, per graph driver.
const PODMAN_STORES: &str = "/var/lib/containers/storage/overlay-containers/containers.json \
                             /var/lib/containers/storage/vfs-containers/containers.json";

/// One round trip that reports, for every path: mode, owner and sha256; the applied markers;
/// and each container's ID (a recreated container has a new one). Two processes on the host
/// (`stat`, `sha256sum`): markers and podman's store are read with shell builtins, since each
/// process start costs about a millisecond of a host's CPU, per host, per run.
pub fn probe(
    paths: &[&str],
    contents: &[&str],
    markers: &[&str],
    engine: &str,
    containers: &[&str],
) -> String {
    let paths = paths.iter().map(|p| quote(p)).collect::<Vec<_>>().join(" ");
    let mut s = String::new();
    s.push_str(&format!("stat -c 'S %a %U %n' {paths} 2>/dev/null\n"));
    // Output lines are `<64 hex>  <path>`, told apart from the others by their shape.
    s.push_str(&format!("sha256sum {paths} 2>/dev/null\n"));
    // A service directory (where its marker lives) this login cannot write: without root
    // rights every file would look changed and every container missing, so say so instead.
    for marker in markers {
        let d = quote(parent(marker));
        s.push_str(&format!("[ -e {d} ] && [ ! -w {d} ] && echo W {d}\n"));
    }
    // Files merged with the host's version travel whole, line by line, by the shell itself.
    for path in contents {
        let f = quote(path);
        s.push_str(&format!(
            "[ -f {f} ] && {{ printf 'F %s\\n' {f}; while IFS= read -r l || [ -n \"$l\" ]; do printf '| %s\\n' \"$l\"; done < {f}; }}\n"
        ));
    }
    for marker in markers {
        let m = quote(marker);
        s.push_str(&format!(
            "echo 'M {marker}'\n[ -f {m} ] && while IFS= read -r l || [ -n \"$l\" ]; do printf '| %s\\n' \"$l\"; done < {m}\n"
        ));
    }
    let inspect = format!(
        "{} inspect --format 'C {{{{.Name}}}} {{{{.Id}}}}' {} 2>/dev/null",
        quote(engine),
        containers
            .iter()
            .map(|c| quote(c))
            .collect::<Vec<_>>()
            .join(" ")
    );
    if engine == "podman" {
        // podman's container store lists every container's ID and names: reading it costs
        // ~2 ms where starting `podman inspect` costs ~200 ms of host CPU per run.
        s.push_str(&format!(
            "store=\nfor f in {PODMAN_STORES}; do [ -f \"$f\" ] && store=$f; done\n\
             if [ -n \"$store\" ]; then printf 'J '\n  \
               while IFS= read -r l || [ -n \"$l\" ]; do printf '%s' \"$l\"; done < \"$store\"; echo\n\
             else {inspect}; fi\n"
        ));
    } else {
        s.push_str(&inspect);
        s.push('\n');
    }
    s.push_str("exit 0\n");
    s
}

/// The remote command of a [`push`]: the script itself, contents included, arrives on stdin,
/// so no secret ever appears on a command line.
pub const PUSH_COMMAND: &str = "sh -s";

/// The last line a complete [`push`] prints. A script cut short on its way prints nothing
/// and changes nothing, yet may exit 0, so the caller checks for this line.
pub const PUSH_DONE: &str = "virtfleet push complete";

/// Previous versions to keep during a push (see [`backup`]).
pub struct Backup<'a> {
    pub suffix: &'a str,
    pub paths: Vec<&'a str>,
}

/// A script for `sh -s` that replaces `files` all or nothing. Every file is written under its
/// final name into a fresh 0700 stage directory beside its target (same filesystem, readable
/// by nobody else), with shell builtins: no process per file. Modes and owners are set, the
/// staged contents checked against their sha256 and synced; only then is each directory's
/// set renamed into place by one `mv`. The whole script is one shell function that runs only
/// once it has arrived in full, so a cut-off transfer writes nothing.
pub fn push(files: &[&DesiredFile], backup: Option<&Backup>) -> Vec<u8> {
    use std::io::Write;
    let token = stage_token();
    let mut dirs: Vec<&str> = files.iter().map(|f| parent(&f.path)).collect();
    dirs.sort_unstable();
    dirs.dedup();
    let stage = |dir: &str| format!("{}/.virtfleet-stage.{token}", dir.trim_end_matches('/'));
    let staged = |f: &DesiredFile| format!("{}/{}", stage(parent(&f.path)), base_name(&f.path));
    let words = |paths: &mut dyn Iterator<Item = String>| {
        paths.map(|p| quote(&p)).collect::<Vec<_>>().join(" ")
    };
    let stages = words(&mut dirs.iter().map(|d| stage(d)));
    let owners = words(&mut dirs.iter().map(|d| format!("{}.pid", stage(d))));

    let mut s = Vec::new();
    // Writes to a Vec cannot fail.
    let _ = write!(
        s,
        // A dropped connection (HUP) or a kill (TERM) must remove the stage too: a shell
        // killed by a signal skips its EXIT trap unless the signal is trapped.
        "run() {{\nset -e\numask 077\ntrap {} EXIT\ntrap 'exit 129' HUP INT TERM PIPE\n\
         mkdir -p {}\n",
        quote(&format!("rm -rf {stages} {owners}")),
        words(&mut dirs.iter().map(|d| d.to_string()))
    );
    for dir in &dirs {
        s.extend_from_slice(remove_stale_stages(dir).as_bytes());
    }
    // The owner file comes first, so a stage never exists without one.
    for dir in &dirs {
        let _ = writeln!(s, "echo $$ > {}", quote(&format!("{}.pid", stage(dir))));
    }
    let _ = writeln!(s, "mkdir {stages}");
    for f in files {
        let target = quote(&staged(f));
        if f.content.contains(&0) {
            // A shell word cannot hold NUL: such a file travels as base64 (one process).
            let _ = write!(
                s,
                "base64 -d > {target} <<'VIRTFLEET_B64'\n{}VIRTFLEET_B64\n",
                base64_lines(&f.content)
            );
        } else {
            s.extend_from_slice(b"printf %s ");
            s.extend_from_slice(&quote_bytes(&f.content));
            let _ = writeln!(s, " > {target}");
        }
    }
    for (mode, group) in grouped(files, |f| {
        (f.mode != 0o600).then(|| format!("{:o}", f.mode))
    }) {
        let _ = writeln!(
            s,
            "chmod {mode} {}",
            words(&mut group.into_iter().map(staged))
        );
    }
    for (owner, group) in grouped(files, |f| f.owner.clone()) {
        let _ = writeln!(
            s,
            "chown {} {}",
            quote(&owner),
            words(&mut group.into_iter().map(staged))
        );
    }
    // End to end: what landed on the host is what was planned, byte for byte.
    s.extend_from_slice(b"sha256sum --quiet --strict -c - <<'VIRTFLEET_SUMS'\n");
    for f in files {
        s.extend_from_slice(checksum_line(&f.content, &staged(f)).as_bytes());
    }
    s.extend_from_slice(b"VIRTFLEET_SUMS\n");
    let _ = writeln!(s, "sync {}", words(&mut files.iter().map(|f| staged(f))));
    if let Some(backup) = backup {
        s.extend_from_slice(self::backup(&backup.paths, backup.suffix).as_bytes());
    }
    // From the first rename on, a dropped connection or a kill must not leave one directory
    // new and the next old: the renames take milliseconds, so they are finished, not cut.
    // (Ignored signals stay ignored in the `mv` processes too.)
    s.extend_from_slice(b"trap '' HUP INT TERM PIPE\n");
    for dir in &dirs {
        let in_dir = files.iter().filter(|f| parent(&f.path) == *dir);
        let _ = writeln!(
            s,
            "mv -f -t {} {}",
            quote(dir),
            words(&mut in_dir.map(|f| staged(f)))
        );
    }
    let _ = write!(
        s,
        // `-d`: a stage must be empty by now, every staged file renamed into place.
        "rm -df {stages} {owners}\ntrap - EXIT\necho '{PUSH_DONE}'\n}}\nrun\n"
    );
    s
}

/// Shell lines that remove the stage directories in `dir` whose push died without cleaning
/// up (SIGKILL, a host crash): those whose owner file names a process that no longer exists.
/// A live push's stage is left alone, and an unreadable owner counts as live. Builtins only;
/// `rm` runs only when there is something to remove.
fn remove_stale_stages(dir: &str) -> String {
    format!(
        "for owner in {}/.virtfleet-stage.*.pid; do\n\
         [ -f \"$owner\" ] || continue\n\
         pid=; read -r pid < \"$owner\" || :\n\
         case $pid in ''|*[!0-9]*) continue ;; esac\n\
         [ -d \"/proc/$pid\" ] && continue\n\
         rm -rf \"${{owner%.pid}}\" \"$owner\"\n\
         done\n",
        quote(dir.trim_end_matches('/'))
    )
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

/// `bytes` as one single-quoted shell word (bytes kept as they are; NUL cannot occur).
fn quote_bytes(bytes: &[u8]) -> Vec<u8> {
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

/// Keeps the current version of each file beside it as `<path><suffix>`, a hard link: the
/// push renames the new file over the path, so the link holds the old file exactly (content,
/// mode, owner) at the cost of one `ln`. Where there is no file, an empty
/// `<path><suffix>.absent` says so, so [`restore`] can put either back. Older backups of the
/// same paths are replaced first.
pub fn backup(paths: &[&str], suffix: &str) -> String {
    let kept = |path: &&str| {
        [
            quote(&format!("{path}{suffix}")),
            quote(&format!("{path}{suffix}.absent")),
        ]
    };
    let old: Vec<String> = paths.iter().flat_map(kept).collect();
    let mut s = format!(
        "umask 077
rm -f {}
",
        old.join(" ")
    );
    for path in paths {
        let [b, absent] = kept(path);
        let p = quote(path);
        s.push_str(&format!(
            "if [ -f {p} ]; then ln {p} {b}; else : > {absent}; fi\n"
        ));
    }
    s
}

/// Puts back what [`backup`] kept: the previous file, or no file where there was none.
/// Paths without a backup are left as they are.
pub fn restore(paths: &[&str], suffix: &str) -> String {
    let mut s = String::from("set -e\n");
    for path in paths {
        let p = quote(path);
        let b = quote(&format!("{path}{suffix}"));
        let absent = quote(&format!("{path}{suffix}.absent"));
        s.push_str(&format!(
            "if [ -f {b} ]; then mv -f {b} {p}; rm -f {absent}; \
             elif [ -f {absent} ]; then rm -f {p} {absent}; fi\n"
        ));
    }
    s
}

/// Deletes the backups of these paths.
pub fn remove_backups(paths: &[&str], suffix: &str) -> String {
    let mut s = String::new();
    for path in paths {
        s.push_str(&format!(
            "rm -f {} {}\n",
            quote(&format!("{path}{suffix}")),
            quote(&format!("{path}{suffix}.absent"))
        ));
    }
    s
}

/// Restart a container, then poll its readiness check on the host (one round trip).
pub fn restart(engine: &str, container: &str, ready: Option<(&[String], u32, u64)>) -> String {
    let e = quote(engine);
    let c = quote(container);
    // Under heavy load podman can stop the container and still fail the restart (seen at 200
    // containers restarting on 2 cores: "SIGTERM failed to stop container in 5 seconds" then
    // "container state improper: stopped"; "timed out waiting for file /run/libpod/exits"),
    // leaving the service down. Then stop (a no-op when stopped) and start it: it comes back
    // on the new files, and only if both fail is the host failed, with the restart's error.
    let mut s = format!(
        "set -e\n\
         if ! out=$({e} restart {c} 2>&1 >/dev/null); then\n  \
           {e} stop {c} >/dev/null 2>&1 && {e} start {c} >/dev/null 2>&1 || \
           {{ printf '%s\\n' \"$out\" >&2; exit 1; }}\n\
         fi\n"
    );
    if let Some((argv, retries, delay_ms)) = ready {
        s.push_str(&format!(
            "i=0\nuntil out=$({e} exec {c} {} 2>&1); do\n  i=$((i+1))\n  \
             if [ $i -ge {retries} ]; then echo \"{container} not ready after {retries} checks: $out\" >&2; exit 3; fi\n  \
             sleep {}\ndone\n",
            quote_argv(argv),
            delay_seconds(delay_ms)
        ));
    }
    s
}

/// Run commands inside the container, in order, stopping at the first failure.
pub fn exec_in(engine: &str, container: &str, commands: &[Vec<String>]) -> String {
    let mut s = String::from("set -e\n");
    for argv in commands {
        s.push_str(&format!(
            "{} exec {} {}\n",
            quote(engine),
            quote(container),
            quote_argv(argv)
        ));
    }
    s
}

/// One command inside the container that reads `stdin` (e.g. a password).
pub fn exec_with_stdin(engine: &str, container: &str, argv: &[String]) -> String {
    format!(
        "{} exec -i {} {}",
        quote(engine),
        quote(container),
        quote_argv(argv)
    )
}

/// Writes an applied marker atomically; its content (paths, hashes, IDs) is not secret.
pub fn write_marker(path: &str, content: &str) -> String {
    let p = quote(path);
    let t = quote(&format!("{path}.tmp"));
    format!(
        "umask 077\nprintf '%s' {} > {t} && mv -f {t} {p}\n",
        quote(content)
    )
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
        let out = sh(PUSH_COMMAND, &push(&files, None));
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
            let out = sh(PUSH_COMMAND, &script[..cut]);
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
        let out = sh(PUSH_COMMAND, &push(&[&a, &b], None));
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

        let out = sh(PUSH_COMMAND, &push(&[&a], None));
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
        let out = sh(
            &restart(&engine, "nova_libvirt", Some((&ready, 3, 10))),
            b"",
        );
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
        let out = sh(&restart(&engine, "nova_libvirt", None), b"");
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("state improper"));
        // Never started while possibly still running the old files.
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "restart\nstop\n");
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
        let script = probe(&[], &[], &markers, "true", &["c"]);
        // As an unprivileged user (the tests run as root, like the lab).
        let out = std::process::Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "sh",
                "-c",
                &script,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let state = crate::state::HostState::parse(&String::from_utf8(out.stdout).unwrap());
        assert_eq!(state.unwritable_dirs, [locked.display().to_string()]);
        // Root may write everywhere here.
        let as_root = sh(&script, b"");
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
        );
        let out = sh(&script, b"");
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
        let out = sh(PUSH_COMMAND, &push(&[&old, &added], Some(&keep)));
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
        run_sh(&restore(&paths, suffix), b"");
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
        run_sh(&restore(&paths, suffix), b"");
        assert_eq!(std::fs::read_to_string(&old.path).unwrap(), "old\n");
        run_sh(&backup(&paths, suffix), b"");
        run_sh(&remove_backups(&paths, suffix), b"");
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
        }
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

    fn run_sh(script: &str, stdin: &[u8]) {
        let out = sh(script, stdin);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
