//! The POSIX sh scripts sent to hosts. Hosts need only sh, coreutils and the container CLI.
//! Scripts carry paths, hashes and names; file contents and secrets travel on stdin.

use virtfleet_plan::DesiredFile;

/// Quotes one word for POSIX sh.
pub fn quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-:=@%+,".contains(&b))
    {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

pub fn quote_argv(argv: &[String]) -> String {
    argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
}

/// Where podman's default (root) container store keeps its container list, per graph driver.
const PODMAN_STORES: &str = "/var/lib/containers/storage/overlay-containers/containers.json \
                             /var/lib/containers/storage/vfs-containers/containers.json";

/// One round trip that reports, for every path: mode, owner and sha256; the applied markers;
/// and each container's ID (a recreated container has a new one).
pub fn probe(paths: &[&str], markers: &[&str], engine: &str, containers: &[&str]) -> String {
    let paths = paths.iter().map(|p| quote(p)).collect::<Vec<_>>().join(" ");
    let mut s = String::new();
    s.push_str(&format!("stat -c 'S %a %U %n' {paths} 2>/dev/null\n"));
    s.push_str(&format!("sha256sum {paths} 2>/dev/null | sed 's/^/H /'\n"));
    for marker in markers {
        let m = quote(marker);
        s.push_str(&format!(
            "echo 'M {marker}'; [ -f {m} ] && sed 's/^/| /' {m}\n"
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
             if [ -n \"$store\" ]; then printf 'J '; tr -d '\\n' < \"$store\"; echo; else {inspect}; fi\n"
        ));
    } else {
        s.push_str(&inspect);
        s.push('\n');
    }
    s.push_str("exit 0\n");
    s
}

/// Stages every file as a temp file in its own directory (mode and owner set before any
/// content arrives), checks sizes, syncs, then renames them all: the host ends with the old
/// set or the new one. Contents arrive concatenated on stdin, in order.
pub fn push(files: &[&DesiredFile], backup_suffix: Option<&str>) -> (String, Vec<u8>) {
    let mut s = String::from("set -e\numask 077\nstaged=\ntrap 'rm -f $staged' EXIT\n");
    let mut stdin = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let dir = parent(&f.path);
        s.push_str(&format!("mkdir -p {}\n", quote(dir)));
        s.push_str(&format!(
            "t{i}=$(mktemp {}/.virtfleet.XXXXXX); staged=\"$staged $t{i}\"\n",
            quote(dir)
        ));
        s.push_str(&format!("chmod {:o} \"$t{i}\"\n", f.mode));
        if let Some(owner) = &f.owner {
            s.push_str(&format!("chown {} \"$t{i}\"\n", quote(owner)));
        }
        s.push_str(&format!("head -c {} > \"$t{i}\"\n", f.content.len()));
        s.push_str(&format!(
            "[ \"$(stat -c %s \"$t{i}\")\" = {} ] || {{ echo 'short input for {}' >&2; exit 1; }}\n",
            f.content.len(),
            f.path.replace('\'', "")
        ));
        stdin.extend_from_slice(&f.content);
    }
    s.push_str("sync $staged\n");
    if let Some(suffix) = backup_suffix {
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        s.push_str(&backup(&paths, suffix));
    }
    for (i, f) in files.iter().enumerate() {
        s.push_str(&format!("mv -f \"$t{i}\" {}\n", quote(&f.path)));
    }
    s.push_str("staged=\n");
    (s, stdin)
}

/// Keeps the current version of each file beside it as `<path><suffix>` (mode 0600), or an
/// empty `<path><suffix>.absent` when there is none, so [`restore`] can put it back. Older
/// backups of the same paths are replaced first.
pub fn backup(paths: &[&str], suffix: &str) -> String {
    let mut s = String::from("umask 077\n");
    for path in paths {
        let p = quote(path);
        let b = quote(&format!("{path}{suffix}"));
        let absent = quote(&format!("{path}{suffix}.absent"));
        s.push_str(&format!(
            "rm -f {b} {absent}\n\
             if [ -f {p} ]; then cp -p {p} {b} && chmod 600 {b}; else : > {absent}; fi\n"
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
    let mut s = format!("set -e\n{e} restart {c} >/dev/null\n");
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

    #[test]
    fn push_stages_then_renames_and_keeps_contents_off_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let secret = b"password=hunter2\n".to_vec();
        let a = file(&dir.path().join("a/auth.conf"), secret.clone(), 0o600);
        let b = file(&dir.path().join("b.conf"), b"x = 1\n".to_vec(), 0o644);
        let (script, stdin) = push(&[&a, &b], None);
        assert!(!script.contains("hunter2"));
        run_sh(&script, &stdin);
        let read = |p: &str| std::fs::read(p).unwrap();
        assert_eq!(read(&a.path), secret);
        assert_eq!(read(&b.path), b"x = 1\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&a.path), mode(&b.path)), (0o600, 0o644));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".virtfleet"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn push_with_short_input_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let a = file(&dir.path().join("a.conf"), b"new a\n".to_vec(), 0o600);
        let b = file(&dir.path().join("b.conf"), b"new b\n".to_vec(), 0o600);
        std::fs::write(&a.path, "old a\n").unwrap();
        let (script, mut stdin) = push(&[&a, &b], None);
        stdin.truncate(stdin.len() - 2);
        let out = sh(&script, &stdin);
        assert!(!out.status.success());
        assert_eq!(std::fs::read_to_string(&a.path).unwrap(), "old a\n");
        assert!(!std::path::Path::new(&b.path).exists());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temp files left"
        );
    }

    #[test]
    fn probe_reports_hashes_modes_markers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "abc").unwrap();
        let m = dir.path().join("marker");
        std::fs::write(&m, "line1\nline2\n").unwrap();
        let ps = p.to_str().unwrap();
        let ms = m.to_str().unwrap();
        let out = sh(&probe(&[ps, "/nonexistent"], &[ms], "true", &["c"]), b"");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(&format!(
            "H ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  {ps}"
        )));
        assert!(
            text.contains(&format!("M {ms}\n| line1\n| line2\n")),
            "{text}"
        );
    }

    #[test]
    fn backup_then_restore_brings_back_old_files_and_absence() {
        let dir = tempfile::tempdir().unwrap();
        let old = file(&dir.path().join("old.pem"), b"new\n".to_vec(), 0o600);
        let added = file(&dir.path().join("added.pem"), b"added\n".to_vec(), 0o600);
        std::fs::write(&old.path, "old\n").unwrap();
        let suffix = ".bak";
        let (script, stdin) = push(&[&old, &added], Some(suffix));
        run_sh(&script, &stdin);
        assert_eq!(std::fs::read_to_string(&old.path).unwrap(), "new\n");
        use std::os::unix::fs::PermissionsExt;
        let kept = format!("{}{suffix}", old.path);
        let mode = std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let paths = [old.path.as_str(), added.path.as_str()];
        run_sh(&restore(&paths, suffix), b"");
        assert_eq!(std::fs::read_to_string(&old.path).unwrap(), "old\n");
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
