//! The OpenSSH client configuration (`~/.ssh/config`, or the file of `ssh -F`), as far as it
//! says how to reach a host: `Host` blocks (patterns with `*`, `?` and `!`), and in them
//! `HostName`, `User`, `Port`, `IdentityFile`, `ProxyJump`, `StrictHostKeyChecking`,
//! `UserKnownHostsFile` and `ConnectTimeout`. As in `ssh`, the first value found for a
//! keyword wins, reading the file top to bottom. `Include` reads other files in place, as
//! `ssh` does (under the `Host` block it stands in, if any). Other keywords are OpenSSH's
//! business; `Match` blocks are not read, and said so (see [`SshConfig::skipped`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A parsed client configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SshConfig {
    blocks: Vec<Block>,
    /// `file:line: what` for each line not read (`Match` blocks) or file skipped (a missing
    /// `Include`), to be shown as warnings.
    pub skipped: Vec<String>,
}

/// Includes nest at most this deep, as in OpenSSH.
const MAX_INCLUDE_DEPTH: usize = 16;

/// Settings that apply to a host every one of whose `Host` lines it matches: none for the
/// lines before a file's first `Host`; two for a `Host` block of a file included from inside
/// another `Host` block.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Block {
    conditions: Vec<Vec<String>>,
    /// (keyword, value, `file:line`).
    settings: Vec<(String, String, String)>,
}

/// `StrictHostKeyChecking`: how an unknown or changed host key is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrictHostKeys {
    /// `yes` or `ask`: only keys in known_hosts.
    Yes,
    /// `accept-new`: unknown keys are recorded; changed ones still refused.
    AcceptNew,
    /// `no` or `off`: OpenSSH would accept anything. virtfleet does not.
    No,
}

/// What the configuration says for one host (`None`: nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostConfig {
    pub hostname: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_files: Vec<PathBuf>,
    pub proxy_jump: Option<String>,
    /// Read as `ssh -W %h:%p` jump only (the caller refuses any other command).
    pub proxy_command: Option<String>,
    pub strict_host_keys: Option<StrictHostKeys>,
    pub known_hosts: Option<PathBuf>,
    pub connect_timeout: Option<Duration>,
}

impl SshConfig {
    /// The text of `path`. As `ssh`, refuses a file that someone other than its owner (root
    /// or this user) may write: it says where root's connections go and which host keys they
    /// trust. Every problem names the file (and line).
    fn read_checked(path: &Path) -> Result<String, String> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        // SAFETY: geteuid(2) has no preconditions.
        let me = unsafe { libc::geteuid() };
        if (meta.uid() != 0 && meta.uid() != me) || meta.mode() & 0o022 != 0 {
            return Err(format!(
                "{}: bad owner or permissions (owned by uid {}, mode {:04o}): it must belong \
                 to root or you and be writable by no one else",
                path.display(),
                meta.uid(),
                meta.mode() & 0o7777
            ));
        }
        if meta.is_dir() {
            return Err(format!("{}: a directory, not a file", path.display()));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(text)
    }

    /// Reads `path` and the files it includes.
    pub fn load(path: &Path) -> Result<SshConfig, String> {
        let text = SshConfig::read_checked(path)?;
        SshConfig::parse(path, &text)
    }

    /// The configuration in `text`, read from `path` (for messages; its includes are read).
    pub fn parse(path: &Path, text: &str) -> Result<SshConfig, String> {
        let mut config = SshConfig::default();
        config.parse_into(path, text, &[], 0)?;
        Ok(config)
    }

    /// Appends the blocks of `text`, each under the `outer` conditions of the `Host` block
    /// that included it.
    fn parse_into(
        &mut self,
        path: &Path,
        text: &str,
        outer: &[Vec<String>],
        depth: usize,
    ) -> Result<(), String> {
        let mut conditions = outer.to_vec();
        self.blocks.push(Block {
            conditions: conditions.clone(),
            settings: Vec::new(),
        });
        let mut in_match = false;
        for (index, line) in text.lines().enumerate() {
            let at = format!("{}:{}", path.display(), index + 1);
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (keyword, value) = split_keyword(line)
                .ok_or_else(|| format!("{at}: {line:?} is not `Keyword value`"))?;
            let keyword = keyword.to_ascii_lowercase();
            match keyword.as_str() {
                "host" => {
                    in_match = false;
                    let patterns: Vec<String> = words(value).map_err(|e| format!("{at}: {e}"))?;
                    if patterns.is_empty() {
                        return Err(format!("{at}: Host without a pattern"));
                    }
                    conditions = outer.to_vec();
                    conditions.push(patterns);
                    self.blocks.push(Block {
                        conditions: conditions.clone(),
                        settings: Vec::new(),
                    });
                }
                "match" => {
                    in_match = true;
                    self.skipped.push(format!(
                        "{at}: Match blocks are not read (virtfleet reads Host blocks only)"
                    ));
                }
                _ if in_match => {}
                "include" => {
                    if depth >= MAX_INCLUDE_DEPTH {
                        return Err(format!(
                            "{at}: Include nested more than {MAX_INCLUDE_DEPTH} deep"
                        ));
                    }
                    for word in words(value).map_err(|e| format!("{at}: {e}"))? {
                        let files = included_files(&word).map_err(|e| format!("{at}: {e}"))?;
                        // ssh skips it silently; a misspelt name would show only as hosts
                        // reached the wrong way.
                        if files.is_empty() && !word.contains(['*', '?']) {
                            self.skipped.push(format!(
                                "{at}: Include {word}: no such file ({}), skipped (as ssh does)",
                                include_path(&word).display()
                            ));
                        }
                        for file in files {
                            // A file refused is named with the line that pulled it in.
                            let text = SshConfig::read_checked(&file)
                                .map_err(|e| format!("{at}: Include: {e}"))?;
                            self.parse_into(&file, &text, &conditions, depth + 1)?;
                        }
                    }
                    // The lines after it belong to the block it stands in, after its files.
                    self.blocks.push(Block {
                        conditions: conditions.clone(),
                        settings: Vec::new(),
                    });
                }
                // A command: the rest of the line, as ssh hands it to a shell.
                "proxycommand" => {
                    let block = self.blocks.last_mut().expect("one block at least");
                    block.settings.push((keyword, value.to_string(), at));
                }
                _ => {
                    // Every other keyword read takes one value (the first of a list).
                    let value = words(value)
                        .map_err(|e| format!("{at}: {e}"))?
                        .into_iter()
                        .next()
                        .unwrap_or_default();
                    let block = self.blocks.last_mut().expect("one block at least");
                    block.settings.push((keyword, value, at));
                }
            }
        }
        Ok(())
    }

    /// The settings for `host` (the name given to `ssh`: Ansible's `ansible_host`, else the
    /// inventory name), first value of each keyword wins.
    pub fn host(&self, host: &str) -> Result<HostConfig, String> {
        let mut found = HostConfig::default();
        let mut seen: Vec<&str> = Vec::new();
        for block in &self.blocks {
            if !block.conditions.iter().all(|p| matches(p, host)) {
                continue;
            }
            for (keyword, value, at) in &block.settings {
                // IdentityFile adds to a list; every other keyword's first value wins.
                if keyword != "identityfile" && seen.contains(&keyword.as_str()) {
                    continue;
                }
                seen.push(keyword);
                // A ProxyCommand's %h and %p are the connection's (`-W %h:%p`), kept as written.
                let value = match keyword.as_str() {
                    "proxycommand" => value.clone(),
                    _ => expand_tokens(value, host),
                };
                match keyword.as_str() {
                    "hostname" => found.hostname = Some(value),
                    "user" => found.user = Some(value),
                    "port" => {
                        let port = value.parse().ok().filter(|p| *p > 0);
                        found.port = Some(port.ok_or_else(|| {
                            format!("{at}: Port {value:?} is not a port number (1-65535)")
                        })?);
                    }
                    "identityfile" => found.identity_files.push(expand_home(&value)),
                    "proxyjump" => found.proxy_jump = Some(value),
                    "proxycommand" => found.proxy_command = Some(value),
                    "stricthostkeychecking" => {
                        found.strict_host_keys = Some(match value.to_ascii_lowercase().as_str() {
                            "yes" | "ask" => StrictHostKeys::Yes,
                            "accept-new" => StrictHostKeys::AcceptNew,
                            "no" | "off" => StrictHostKeys::No,
                            _ => return Err(format!("{at}: StrictHostKeyChecking {value:?}")),
                        })
                    }
                    // Of a list, the first file: the one read first and written to.
                    "userknownhostsfile" => {
                        let path = expand_home(&value);
                        if !path.is_absolute() {
                            return Err(format!(
                                "{at}: UserKnownHostsFile {value:?}: virtfleet checks every host \
                                 key against a file named by an absolute path",
                            ));
                        }
                        found.known_hosts = Some(path);
                    }
                    "connecttimeout" => {
                        let secs = value.parse::<u64>().ok().filter(|s| (1..=3600).contains(s));
                        let secs = secs.ok_or_else(|| {
                            format!("{at}: ConnectTimeout {value:?} (1 to 3600 seconds)")
                        })?;
                        found.connect_timeout = Some(Duration::from_secs(secs));
                    }
                    _ => {}
                }
            }
        }
        Ok(found)
    }
}

/// `%h` the host, `%%` a percent sign; other tokens are left as written.
fn expand_tokens(value: &str, host: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('%', Some('h')) => {
                out.push_str(host);
                chars.next();
            }
            ('%', Some('%')) => {
                out.push('%');
                chars.next();
            }
            (c, _) => out.push(c),
        }
    }
    out
}

/// `Keyword value` or `Keyword=value` (the value may be empty: checked per keyword).
fn split_keyword(line: &str) -> Option<(&str, &str)> {
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    if end == 0 {
        return None;
    }
    let (keyword, rest) = line.split_at(end);
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
    Some((keyword, rest))
}

/// Whitespace-separated words, `"..."` quoting one with spaces.
fn words(value: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = value.trim();
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('"') {
            let (word, after) = quoted
                .split_once('"')
                .ok_or_else(|| format!("{value:?}: no closing quote"))?;
            out.push(word.to_string());
            rest = after.trim_start();
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            out.push(rest[..end].to_string());
            rest = rest[end..].trim_start();
        }
    }
    Ok(out)
}

/// A `Host` line matches when one of its patterns does and none of its `!` patterns does.
fn matches(patterns: &[String], host: &str) -> bool {
    let mut any = false;
    for pattern in patterns {
        match pattern.strip_prefix('!') {
            Some(negated) if glob(negated, host) => return false,
            Some(_) => {}
            None => any |= glob(pattern, host),
        }
    }
    any
}

fn glob(pattern: &str, text: &str) -> bool {
    crate::known_hosts::glob_match(pattern.as_bytes(), text.as_bytes())
}

/// Where an `Include` word points: `~/` is the home directory, a relative path is under
/// `~/.ssh`.
fn include_path(word: &str) -> PathBuf {
    let path = expand_home(word);
    match path.is_absolute() {
        true => path,
        false => expand_home("~/.ssh").join(path),
    }
}

/// The files an `Include` word names, in lexical order: `~/` is the home directory, a
/// relative path is under `~/.ssh` (as for a user's configuration), and the file name (not
/// the directories) may hold `*` and `?`. A name that matches nothing is no error, as in `ssh`.
fn included_files(word: &str) -> Result<Vec<PathBuf>, String> {
    let path = include_path(word);
    let wild = |text: &str| text.contains(['*', '?', '[']);
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Err(format!("Include {word:?}: not a file name"));
    };
    if wild(&dir.to_string_lossy()) || name.contains('[') {
        return Err(format!(
            "Include {word:?}: only `*` and `?` in the file name are read, not in directories \
             or `[...]`"
        ));
    }
    if !wild(name) {
        return Ok(if path.exists() {
            vec![path]
        } else {
            Vec::new()
        });
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .filter(|entry| {
            let file = entry.file_name();
            let file = file.to_string_lossy();
            // As glob(3): a leading dot is matched by a dot only.
            (name.starts_with('.') || !file.starts_with('.')) && glob(name, &file)
        })
        .map(|entry| entry.path())
        .collect();
    files.sort();
    Ok(files)
}

/// `~/x` means the operator's home, as in OpenSSH and Ansible.
pub fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "\
# global
ConnectTimeout 7

Host bastion
    HostName 192.0.2.10
    User ops

Host compute* !compute9*
    ProxyJump ops@bastion:2222
    User=kolla
    Port 2200
    IdentityFile ~/.ssh/kolla
    StrictHostKeyChecking accept-new
    UserKnownHostsFile \"/etc/kolla/known hosts\" /tmp/other

Match host compute01
    User ignored

Host *
    User fallback
    IdentityFile /id_%h
    Port 22
";

    fn config() -> SshConfig {
        SshConfig::parse(Path::new("/c"), CONFIG).unwrap()
    }

    #[test]
    fn first_value_wins_over_matching_blocks_and_identity_files_add_up() {
        let c = config().host("compute01").unwrap();
        assert_eq!(c.user.as_deref(), Some("kolla"));
        assert_eq!(c.port, Some(2200));
        assert_eq!(c.proxy_jump.as_deref(), Some("ops@bastion:2222"));
        assert_eq!(c.strict_host_keys, Some(StrictHostKeys::AcceptNew));
        assert_eq!(c.known_hosts, Some(PathBuf::from("/etc/kolla/known hosts")));
        assert_eq!(c.connect_timeout, Some(Duration::from_secs(7)));
        assert_eq!(
            c.identity_files.last(),
            Some(&PathBuf::from("/id_compute01"))
        );
        assert_eq!(c.identity_files.len(), 2);
        assert_eq!(c.hostname, None);
        assert_eq!(
            config().skipped,
            ["/c:16: Match blocks are not read (virtfleet reads Host blocks only)"]
        );
    }

    #[test]
    fn patterns_glob_and_negate() {
        let c = config();
        assert_eq!(
            c.host("compute91").unwrap().user.as_deref(),
            Some("fallback")
        );
        assert_eq!(c.host("COMPUTE01").unwrap().user.as_deref(), Some("kolla"));
        let b = c.host("bastion").unwrap();
        assert_eq!(
            (b.hostname.as_deref(), b.user.as_deref()),
            (Some("192.0.2.10"), Some("ops"))
        );
        assert!(glob("c?mp*e0*", "compute01") && !glob("c?mp", "compute"));
        assert!(glob("*", "") && !glob("a*b", "ac"));
        assert!(glob("COMP*.Example", "compute01.example") && !glob("comp?", "comp"));
    }

    #[test]
    fn bad_lines_name_the_file_and_line() {
        let err = SshConfig::parse(Path::new("/c"), "Host a\n  Port nope\n")
            .unwrap()
            .host("a")
            .unwrap_err();
        assert_eq!(err, "/c:2: Port \"nope\" is not a port number (1-65535)");
        let err = SshConfig::parse(Path::new("/c"), "Host\n").unwrap_err();
        assert_eq!(err, "/c:1: Host without a pattern");
        let err = SshConfig::parse(Path::new("/c"), "Host a\nUser \"x\n").unwrap_err();
        assert!(err.starts_with("/c:2:"), "{err}");
        for bad in [
            "UserKnownHostsFile none",
            "UserKnownHostsFile kh",
            "ConnectTimeout 0",
        ] {
            let config = SshConfig::parse(Path::new("/c"), &format!("Host a\n{bad}\n")).unwrap();
            assert!(config.host("a").is_err(), "{bad}");
        }
        assert_eq!(expand_tokens("%%h-%h%", "x"), "%h-x%");
    }

    #[test]
    fn a_file_others_may_write_is_refused_as_ssh_refuses_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, "Host a\n  User b\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(SshConfig::load(&path).is_ok());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o620)).unwrap();
        let err = SshConfig::load(&path).unwrap_err();
        assert!(err.contains("bad owner or permissions"), "{err}");
    }
}

#[cfg(test)]
mod include_tests {
    use super::*;

    #[test]
    fn included_files_are_read_in_place_and_under_the_host_block_they_stand_in() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        std::fs::create_dir(dir.path().join("conf.d")).unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write("conf.d/10-a.conf", "Host bastion\n  HostName 192.0.2.1\n");
        write("conf.d/20-b.conf", "Host c*\n  ProxyJump bastion\n");
        // Hidden files and other names are not matched by `*.conf`.
        write("conf.d/.hidden.conf", "Host c1\n  HostName 203.0.113.66\n");
        write("conf.d/x.txt", "Host c1\n  HostName 203.0.113.67\n");
        // Read only for c1; its own Host c2 block then needs c1 and c2 at once: never.
        write(
            "c1.inc",
            "HostName 10.0.0.1\nHost c2\n  HostName 10.0.0.2\n",
        );
        let main = format!(
            "User top\nInclude {d}/conf.d/*.conf {d}/absent\nHost c1\n  Include {d}/c1.inc\n\
             Port 2201\nHost *\n  Port 22\n"
        );
        let config = SshConfig::parse(Path::new("/main"), &main).unwrap();
        let c1 = config.host("c1").unwrap();
        assert_eq!(c1.user.as_deref(), Some("top"));
        assert_eq!(c1.hostname.as_deref(), Some("10.0.0.1"));
        assert_eq!(c1.proxy_jump.as_deref(), Some("bastion"));
        assert_eq!(
            c1.port,
            Some(2201),
            "the line after the Include is still c1's"
        );
        let c2 = config.host("c2").unwrap();
        assert_eq!((c2.hostname, c2.port), (None, Some(22)));
        assert_eq!(c2.proxy_jump.as_deref(), Some("bastion"));
        let bastion = config.host("bastion").unwrap();
        assert_eq!(bastion.hostname.as_deref(), Some("192.0.2.1"));
        // A named file that is missing is skipped, and said so; a pattern may match nothing.
        let absent = format!(
            "/main:2: Include {d}/absent: no such file ({d}/absent), skipped (as ssh does)"
        );
        assert_eq!(config.skipped, [absent]);

        // A problem in an included file names that file and line.
        write("conf.d/30-bad.conf", "Host c3\n  Port nope\n");
        let config = SshConfig::parse(Path::new("/main"), &main).unwrap();
        let err = config.host("c3").unwrap_err();
        assert!(err.contains(&format!("{d}/conf.d/30-bad.conf:2")), "{err}");

        // A file that includes itself stops at OpenSSH's depth.
        write("loop", &format!("Include {d}/loop\n"));
        let err = SshConfig::load(&dir.path().join("loop")).unwrap_err();
        assert!(err.contains("nested more than 16 deep"), "{err}");
        // Wildcards in directories are not read.
        let err = SshConfig::parse(Path::new("/m"), &format!("Include {d}/*/x\n")).unwrap_err();
        assert!(
            err.contains("/m:1") && err.contains("not in directories"),
            "{err}"
        );
        // An included file others may write is refused, as the main one.
        use std::os::unix::fs::PermissionsExt;
        let shared = dir.path().join("conf.d/20-b.conf");
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = SshConfig::parse(Path::new("/main"), &main).unwrap_err();
        assert!(
            err.contains("/main:2: Include: ")
                && err.contains("20-b.conf: bad owner or permissions"),
            "{err}"
        );
    }
}
