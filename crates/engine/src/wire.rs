//! The tags that start the lines remote scripts print, defined once: `script` hands them to
//! the shell functions as variables, `state` and `read_files` parse by them.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// `<tag> <st_mode hex> <owner> <group> <path>`: a path's type, mode, owner and group.
    Stat,
    /// `<tag> <dir>`: a service directory the login cannot write.
    Unwritable,
    /// `<tag> <path>`, then its lines: a file merged with the host's version.
    Content,
    /// `<tag> <path>`, then its lines if it exists: an applied marker.
    Marker,
    /// `<tag> <text>`: one line of the file announced last.
    Line,
    /// `<tag> <json>`: podman's container store.
    Store,
    /// `<tag> <name> <id>`: a container, from `inspect`.
    Container,
    /// `<tag> <name> <id>`: a container, from docker's on-disk store.
    DockerStore,
    /// `<tag> <engine>`: the engine's command does not exist on the host.
    NoEngine,
    /// `<tag> <text>`: one line of the engine's error when it cannot list containers.
    EngineError,
    /// `<tag> <size>`, then exactly size bytes and a newline: a file read whole.
    File,
    /// `<tag>` alone: a file that does not exist.
    Absent,
    /// `<tag> <nodename>`: the host's `uname -n`.
    Nodename,
    /// `<tag> <name> <id> <running> s=<once|> <StartedAt>`: a container's last start.
    Started,
    /// `<tag> <mtime> <ctime> <path>`: when a file was last written or changed (seconds).
    Mtime,
    /// `<tag> <seconds since the epoch>`: the host's clock.
    Now,
    /// `<tag> <port> <open|closed|filtered>`: a peer's port as this host reaches it.
    Reach,
}

impl Tag {
    pub const ALL: [Tag; 17] = [
        Tag::Stat,
        Tag::Unwritable,
        Tag::Content,
        Tag::Marker,
        Tag::Line,
        Tag::Store,
        Tag::Container,
        Tag::DockerStore,
        Tag::NoEngine,
        Tag::EngineError,
        Tag::File,
        Tag::Absent,
        Tag::Nodename,
        Tag::Started,
        Tag::Mtime,
        Tag::Now,
        Tag::Reach,
    ];

    /// What the line starts with (followed by one space).
    pub const fn text(self) -> &'static str {
        match self {
            Tag::Stat => "S",
            Tag::Unwritable => "W",
            Tag::Content => "F",
            Tag::Marker => "M",
            Tag::Line => "|",
            Tag::Store => "J",
            Tag::Container => "C",
            Tag::DockerStore => "D",
            Tag::NoEngine => "N",
            Tag::EngineError => "E",
            Tag::File => "R",
            Tag::Absent => "A",
            Tag::Nodename => "H",
            Tag::Started => "T",
            Tag::Mtime => "Y",
            Tag::Now => "Z",
            Tag::Reach => "P",
        }
    }

    /// The shell variable lib.sh reads the tag from.
    pub const fn variable(self) -> &'static str {
        match self {
            Tag::Stat => "VF_T_STAT",
            Tag::Unwritable => "VF_T_UNWRITABLE",
            Tag::Content => "VF_T_CONTENT",
            Tag::Marker => "VF_T_MARKER",
            Tag::Line => "VF_T_LINE",
            Tag::Store => "VF_T_STORE",
            Tag::Container => "VF_T_CONTAINER",
            Tag::DockerStore => "VF_T_DOCKER_STORE",
            Tag::NoEngine => "VF_T_NO_ENGINE",
            Tag::EngineError => "VF_T_ENGINE_ERROR",
            Tag::File => "VF_T_FILE",
            Tag::Absent => "VF_T_ABSENT",
            Tag::Nodename => "VF_T_NODENAME",
            Tag::Started => "VF_T_STARTED",
            Tag::Mtime => "VF_T_MTIME",
            Tag::Now => "VF_T_NOW",
            Tag::Reach => "VF_T_REACH",
        }
    }

    /// The rest of `line` when it carries this tag.
    pub fn strip(self, line: &str) -> Option<&str> {
        line.strip_prefix(self.text())?.strip_prefix(' ')
    }
}

/// How a host reached a peer's TCP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reach {
    /// Something accepted the connection.
    Open,
    /// Refused: nothing listens, but the path is open.
    Closed,
    /// No answer in time, or refused otherwise than by the port (no route, a firewall
    /// rejecting): blocked on the way.
    Filtered,
}

/// Each of `ports`' [`Reach`] from `vf_reach`'s output, which must be all of `out`: a port it
/// did not answer for is filtered. Ok(None) when the test did not run (no bash or timeout on
/// the host); Err with the first line that is not `vf_reach`'s.
pub fn parse_reach(
    out: &[u8],
    ports: &[u16],
) -> Result<Option<std::collections::BTreeMap<u16, Reach>>, String> {
    let text = String::from_utf8_lossy(out);
    let mut tested = false;
    let mut reach: std::collections::BTreeMap<u16, Reach> =
        ports.iter().map(|p| (*p, Reach::Filtered)).collect();
    for line in text.lines() {
        let bad = || {
            format!(
                "unexpected line {:?}",
                line.chars().take(80).collect::<String>()
            )
        };
        let (port, state) = Tag::Reach
            .strip(line)
            .and_then(|r| r.split_once(' '))
            .ok_or_else(bad)?;
        if (port, state) == ("-", "tested") {
            tested = true;
            continue;
        }
        let state = match state {
            "open" => Reach::Open,
            "closed" => Reach::Closed,
            "blocked" => Reach::Filtered,
            _ => return Err(bad()),
        };
        let slot = port.parse().ok().and_then(|p: u16| reach.get_mut(&p));
        *slot.ok_or_else(bad)? = state;
    }
    Ok(tested.then_some(reach))
}

/// A file read from a host: its bytes, permission bits, owner and group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFile {
    pub content: Vec<u8>,
    /// `st_mode`, file type included (see [`HostFile::permissions`]).
    pub st_mode: u32,
    pub owner: String,
    pub group: String,
}

impl HostFile {
    /// The permission bits: `st_mode & 0o7777`.
    pub fn permissions(&self) -> u32 {
        self.st_mode & 0o7777
    }
}

/// Parses the [`Tag::File`] / [`Tag::Absent`] frames of `paths`, in order: path → file, None
/// when absent. A frame is `R <size> <st_mode hex> <owner> <group>`, the bytes and a newline.
/// None for output that is not exactly such frames (cut short, garbled): the size is plain
/// decimal digits, as `stat -c %s` prints it, and the newline after the contents must be
/// there, so a file that changed size between `stat` and `cat` is not misread.
pub fn parse_files(
    out: &[u8],
    paths: &[&str],
) -> Option<std::collections::BTreeMap<String, Option<HostFile>>> {
    let (files, rest) = parse_files_then(out, paths)?;
    rest.is_empty().then_some(files)
}

/// Files read whole, by path (None: absent).
pub type Files = std::collections::BTreeMap<String, Option<HostFile>>;

/// [`parse_files`] of the start of `out`, and what follows the last file.
pub fn parse_files_then<'a>(mut out: &'a [u8], paths: &[&str]) -> Option<(Files, &'a [u8])> {
    let mut files = std::collections::BTreeMap::new();
    for path in paths {
        let eol = out.iter().position(|&b| b == b'\n')?;
        let header = std::str::from_utf8(&out[..eol]).ok()?;
        out = &out[eol + 1..];
        if header == Tag::Absent.text() {
            files.insert(path.to_string(), None);
            continue;
        }
        let fields: Vec<&str> = Tag::File.strip(header)?.split(' ').collect();
        let [size, mode, owner, group] = fields[..] else {
            return None;
        };
        // Numbers exactly as stat prints them: no sign, no padding, lowercase hex.
        let plain = |s: &str, digit: fn(&u8) -> bool| {
            !s.is_empty() && s.bytes().all(|b| digit(&b)) && (s == "0" || !s.starts_with('0'))
        };
        let lower_hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
        if !plain(size, u8::is_ascii_digit) || !plain(mode, lower_hex) {
            return None;
        }
        if owner.is_empty() || group.is_empty() {
            return None;
        }
        let size: usize = size.parse().ok()?;
        let st_mode = u32::from_str_radix(mode, 16).ok()?;
        let (content, rest) = (out.get(..size)?, out.get(size..)?);
        out = rest.strip_prefix(b"\n")?;
        let file = HostFile {
            content: content.to_vec(),
            st_mode,
            owner: owner.to_string(),
            group: group.to_string(),
        };
        files.insert(path.to_string(), Some(file));
    }
    Some((files, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_distinct_single_words() {
        for (i, a) in Tag::ALL.iter().enumerate() {
            assert!(!a.text().contains(char::is_whitespace));
            for b in &Tag::ALL[i + 1..] {
                assert_ne!(a.text(), b.text());
                assert_ne!(a.variable(), b.variable());
            }
        }
    }

    fn content(
        files: &std::collections::BTreeMap<String, Option<HostFile>>,
        path: &str,
    ) -> Option<Vec<u8>> {
        files[path].as_ref().map(|f| f.content.clone())
    }

    #[test]
    fn framed_files_parse_byte_exact() {
        let out = b"R 5 81a4 root root\nx\ny\nz\nA\nR 0 8180 nova qemu\n\n";
        let files = parse_files(out, &["/a b", "/missing", "/empty"]).unwrap();
        assert_eq!(content(&files, "/a b").as_deref(), Some(&b"x\ny\nz"[..]));
        assert_eq!(files["/missing"], None);
        let empty = files["/empty"].as_ref().unwrap();
        assert_eq!(empty.content, b"");
        let owners = (&*empty.owner, &*empty.group);
        assert_eq!((empty.permissions(), owners), (0o600, ("nova", "qemu")));
        assert_eq!(files["/a b"].as_ref().unwrap().permissions(), 0o644);
        assert!(parse_files(b"R 99 81a4 root root\nabc\n", &["/short"]).is_none());
        assert!(
            parse_files(b"A\nA\n", &["/one"]).is_none(),
            "more frames than paths"
        );
    }

    #[test]
    fn framed_files_are_refused_unless_exact() {
        // Found by fuzz/fuzz_targets/probe.rs: a padded size and a missing newline after the
        // contents were accepted (the byte after the contents was skipped unread).
        assert!(parse_files(b"R   5 81a4 root root\n\n\0L\0\0\0", &["/a"]).is_none());
        for garbled in [
            &b"R 3 81a4 root root\nabcX"[..],
            b"R +3 81a4 root root\nabc\n",
            b"R 3 81a4 root root \nabc\n",
            b"R 3 81a4 root\nabc\n",
            b"R 3 xyz root root\nabc\n",
            b"R 03 81a4 root root\nabc\n",
            b"R 3 81A4 root root\nabc\n",
            b"R 3 081a4 root root\nabc\n",
            b"R 3\nabc\n",
            b"R \n\n",
            b"R 3 81a4 root root\nabc",
        ] {
            assert!(parse_files(garbled, &["/a"]).is_none(), "{garbled:?}");
        }
        // A file that grew between stat and cat: its first bytes are not taken for it.
        assert!(parse_files(b"R 3 81a4 root root\nabcd\nA\n", &["/a", "/b"]).is_none());
        let files = parse_files(b"R 3 81a4 root root\nabc\n", &["/a"]).unwrap();
        assert_eq!(content(&files, "/a").as_deref(), Some(&b"abc"[..]));
    }
}
