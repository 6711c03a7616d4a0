//! What a host holds now (parsed from the probe) and what to do about it (pure).

use std::collections::{BTreeMap, BTreeSet};

use virtfleet_plan::{DesiredFile, Runs, ServicePlan};

use crate::wire::Tag;

/// A file as the host has it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileState {
    /// Permission bits (07777).
    pub mode: Option<u32>,
    pub owner: Option<String>,
    pub group: Option<String>,
    /// What the path is (a symlink is reported as such, never followed).
    pub kind: Option<FileKind>,
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Directory,
    Symlink,
    Other,
}

impl FileKind {
    /// From the file type bits of `st_mode`.
    fn of_mode(raw: u32) -> FileKind {
        match raw & 0o170000 {
            0o100000 => FileKind::File,
            0o040000 => FileKind::Directory,
            0o120000 => FileKind::Symlink,
            _ => FileKind::Other,
        }
    }
}

/// The applied marker: the file set a service was last (re)started or reloaded with, and the
/// container it was applied to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marker {
    pub container_id: String,
    /// path -> (sha256, mode)
    pub files: BTreeMap<String, (String, u32)>,
}

const MARKER_HEADER: &str = "virtfleet-applied v1";

impl Marker {
    pub fn for_service(service: &ServicePlan, container_id: &str) -> Marker {
        Marker {
            container_id: container_id.to_string(),
            files: service
                .files
                .iter()
                .map(|f| (f.path.clone(), (f.sha256.clone(), f.mode)))
                .collect(),
        }
    }

    pub fn render(&self) -> String {
        let mut s = format!("{MARKER_HEADER}\ncontainer {}\n", self.container_id);
        for (path, (sha, mode)) in &self.files {
            s.push_str(&format!("{sha} {mode:o} {path}\n"));
        }
        s
    }

    /// None when the text is not a marker of this format (treated as "never applied").
    pub fn parse(text: &str) -> Option<Marker> {
        let mut lines = text.lines();
        if lines.next()? != MARKER_HEADER {
            return None;
        }
        let container_id = lines.next()?.strip_prefix("container ")?.to_string();
        let mut files = BTreeMap::new();
        for line in lines {
            let mut parts = line.splitn(3, ' ');
            let sha = parts.next()?;
            let mode = u32::from_str_radix(parts.next()?, 8).ok()?;
            let path = parts.next()?;
            files.insert(path.to_string(), (sha.to_string(), mode));
        }
        Some(Marker {
            container_id,
            files,
        })
    }
}

/// A `sha256sum` output line: `<64 hex digits>  <path>`.
fn sha256sum_line(line: &str) -> Option<(&str, &str)> {
    let (sha, path) = line.split_once("  ")?;
    (sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit())).then_some((sha, path))
}

/// Everything one probe round trip learned about a host.
#[derive(Debug, Default)]
pub struct HostState {
    pub files: BTreeMap<String, FileState>,
    pub markers: BTreeMap<String, Marker>,
    /// container name -> ID
    pub containers: BTreeMap<String, String>,
    /// Service directories that exist but the remote user cannot write.
    pub unwritable_dirs: Vec<String>,
    /// Current text of the files merged with the host's version (absent files missing).
    pub contents: BTreeMap<String, String>,
    /// Set when the container engine could not tell which containers exist.
    pub engine_problem: Option<EngineProblem>,
    /// Each container's last start and each file's last change, by the host's clock: read
    /// only for services never applied by virtfleet ([`needs_start_times`]).
    pub started: BTreeMap<String, Started>,
    /// path -> the later of mtime and ctime (seconds since the epoch).
    pub changed_at: BTreeMap<String, i64>,
    /// The host's clock when those were read.
    pub now: Option<i64>,
}

/// What a host service's applied marker records where a container's ID goes: a host service
/// cannot be recreated, only restarted.
pub const HOST_SERVICE_ID: &str = "host";

impl HostState {
    /// The container ID the service runs in ([`HOST_SERVICE_ID`] for a host service); None:
    /// its container does not exist.
    pub fn identity(&self, service: &ServicePlan) -> Option<&str> {
        match service.runs {
            Runs::Container => self.containers.get(&service.name).map(String::as_str),
            Runs::Host { .. } => Some(HOST_SERVICE_ID),
        }
    }
}

/// A container's last start, from its engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub id: String,
    pub running: bool,
    /// Kolla copies the files into the container at creation only (`COPY_ONCE`): a start
    /// after the files were written proves nothing.
    pub copy_once: bool,
    /// Seconds since the epoch.
    pub at: i64,
}

/// Why the container engine could not say which containers exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineProblem {
    /// Its command is not installed on the host.
    Missing,
    /// It cannot list containers (daemon down, socket not reachable): its own words.
    Unusable(String),
}

enum Block {
    Marker,
    Content,
}

impl HostState {
    pub fn parse(probe_output: &str) -> HostState {
        let mut state = HostState::default();
        // The file a run of `| ` lines belongs to: a marker (`M`) or a merged file (`F`).
        let mut block: Option<(Block, String, String)> = None;
        let finish = |state: &mut HostState, block: Option<(Block, String, String)>| match block {
            Some((Block::Marker, path, text)) => {
                if let Some(m) = Marker::parse(&text) {
                    state.markers.insert(path, m);
                }
            }
            Some((Block::Content, path, text)) => {
                state.contents.insert(path, text);
            }
            None => {}
        };
        for line in probe_output.lines() {
            if let Some(rest) = Tag::Line.strip(line) {
                if let Some((_, _, text)) = block.as_mut() {
                    text.push_str(rest);
                    text.push('\n');
                }
                continue;
            }
            if let Some(path) = Tag::Marker.strip(line) {
                finish(&mut state, block.take());
                block = Some((Block::Marker, path.to_string(), String::new()));
            } else if let Some(path) = Tag::Content.strip(line) {
                finish(&mut state, block.take());
                block = Some((Block::Content, path.to_string(), String::new()));
            } else if let Some(rest) = Tag::Stat.strip(line) {
                // `<raw st_mode in hex> <owner> <group> <path>`
                let mut parts = rest.splitn(4, ' ');
                if let (Some(raw), Some(owner), Some(group), Some(path)) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                {
                    let raw = u32::from_str_radix(raw, 16).ok();
                    let entry = state.files.entry(path.to_string()).or_default();
                    entry.mode = raw.map(|r| r & 0o7777);
                    entry.kind = raw.map(FileKind::of_mode);
                    entry.owner = Some(owner.to_string());
                    entry.group = Some(group.to_string());
                }
            } else if let Some((sha, path)) = sha256sum_line(line) {
                state.files.entry(path.to_string()).or_default().sha256 = Some(sha.to_string());
            } else if let Some(dir) = Tag::Unwritable.strip(line) {
                state.unwritable_dirs.push(dir.to_string());
            } else if let Some(json) = Tag::Store.strip(line) {
                state.containers.extend(containers_from_store(json));
            } else if let Some(rest) = Tag::Container
                .strip(line)
                .or_else(|| Tag::DockerStore.strip(line))
            {
                if let Some((name, id)) = rest.split_once(' ') {
                    state
                        .containers
                        .insert(name.trim_start_matches('/').to_string(), id.to_string());
                }
            } else if Tag::NoEngine.strip(line).is_some() {
                state.engine_problem = Some(EngineProblem::Missing);
            } else if let Some(text) = Tag::EngineError.strip(line) {
                match &mut state.engine_problem {
                    Some(EngineProblem::Unusable(words)) => {
                        words.push('\n');
                        words.push_str(text);
                    }
                    _ => state.engine_problem = Some(EngineProblem::Unusable(text.into())),
                }
            }
        }
        finish(&mut state, block);
        state
    }

    /// Adds what [`crate::script::start_times`] printed.
    pub fn add_start_times(&mut self, output: &str) {
        for line in output.lines() {
            if let Some(rest) = Tag::Started.strip(line) {
                // `<name> <id> <running> s=<once|> <StartedAt ...>`; docker names start with `/`.
                let mut fields = rest.splitn(5, ' ');
                let (Some(name), Some(id), Some(running), Some(strategy), Some(at)) = (
                    fields.next(),
                    fields.next(),
                    fields.next(),
                    fields.next(),
                    fields.next(),
                ) else {
                    continue;
                };
                let Some(at) = crate::clock::parse_engine_time(at) else {
                    continue;
                };
                let started = Started {
                    id: id.to_string(),
                    running: running == "true",
                    copy_once: strategy != "s=",
                    at,
                };
                self.started
                    .insert(name.trim_start_matches('/').to_string(), started);
            } else if let Some(rest) = Tag::Mtime.strip(line) {
                let mut fields = rest.splitn(3, ' ');
                let (Some(mtime), Some(ctime), Some(path)) =
                    (fields.next(), fields.next(), fields.next())
                else {
                    continue;
                };
                if let (Ok(mtime), Ok(ctime)) = (mtime.parse::<i64>(), ctime.parse::<i64>()) {
                    self.changed_at.insert(path.to_string(), mtime.max(ctime));
                }
            } else if let Some(now) = Tag::Now.strip(line) {
                self.now = now.trim().parse().ok();
            }
        }
    }

    /// True when the host holds `file`'s content (mode and owner aside).
    fn holds_content(&self, file: &DesiredFile) -> bool {
        self.files.get(&file.path).is_some_and(|have| {
            have.kind == Some(FileKind::File) && have.sha256.as_deref() == Some(&file.sha256)
        })
    }

    /// True when the host already holds `file` exactly as desired.
    pub fn matches(&self, file: &DesiredFile) -> bool {
        let Some(have) = self.files.get(&file.path) else {
            return false;
        };
        // `user` or `user:group`, as chown takes it.
        let (user, group) = match file.owner.as_deref() {
            Some(owner) => match owner.split_once(':') {
                Some((user, group)) => (Some(user), Some(group)),
                None => (Some(owner), None),
            },
            None => (None, None),
        };
        let group_ok = match group {
            Some(group) => have.group.as_deref() == Some(group),
            // A secret its group may read belongs to group root unless the playbook names one.
            None => {
                !crate::script::shared_with_group(file) || have.group.as_deref() == Some("root")
            }
        };
        // A symlink is never "the file", whatever it points to: the push replaces it.
        have.kind == Some(FileKind::File)
            && have.sha256.as_deref() == Some(file.sha256.as_str())
            && have.mode == Some(file.mode)
            && group_ok
            && user.is_none_or(|u| have.owner.as_deref() == Some(u))
    }
}

/// name -> ID from podman's container store (`containers.json`: [{"id", "names": [..]}, ..]).
fn containers_from_store(json: &str) -> Vec<(String, String)> {
    #[derive(serde::Deserialize)]
    struct Entry {
        id: String,
        #[serde(default)]
        names: Vec<String>,
    }
    let entries: Vec<Entry> = serde_json::from_str(json).unwrap_or_default();
    entries
        .into_iter()
        .flat_map(|e| e.names.into_iter().map(move |n| (n, e.id.clone())))
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// Never applied by virtfleet, yet the host holds the desired content and the container
    /// started after those files were written (kolla-ansible applied them): record them and
    /// run the post-restart steps, restart nothing.
    Adopt,
    /// Apply the changed files live (the playbook's reload commands); restart if that fails.
    Reload,
    Restart,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub service: String,
    /// Files to push (they differ on the host).
    pub push: Vec<String>,
    pub action: Action,
    /// Why the action is needed, for -v output.
    pub reason: String,
}

/// Compares a service's desired files with the host and its applied marker.
pub fn decide(service: &ServicePlan, state: &HostState) -> Result<Decision, String> {
    let push: Vec<String> = service
        .files
        .iter()
        .filter(|f| !state.matches(f))
        .map(|f| f.path.clone())
        .collect();
    let Some(container_id) = state.identity(service) else {
        return Err(format!("container {} does not exist", service.name));
    };
    let decision = |action, reason: String| Decision {
        service: service.name.clone(),
        push: push.clone(),
        action,
        reason,
    };
    let Some(marker) = state.markers.get(&service.marker_path) else {
        return Ok(match started_after_its_files(service, state) {
            Some(true) => decision(
                Action::Adopt,
                "never applied by virtfleet; the container started after its files, which \
                 hold the desired content: adopted without a restart"
                    .into(),
            ),
            _ => decision(Action::Restart, "never applied by virtfleet".into()),
        });
    };
    if marker.container_id != container_id {
        return Ok(decision(
            Action::Restart,
            "container recreated since the last apply".into(),
        ));
    }
    let applied = &Marker::for_service(service, container_id).files;
    // Someone else (kolla-ansible, a hand edit) rewrote a file since the apply: the container
    // may have been restarted on it, so it is not known to run what the marker says.
    let rewritten: BTreeSet<&String> = marker
        .files
        .iter()
        .filter(|(path, (sha, _))| {
            state.files.get(*path).and_then(|f| f.sha256.as_ref()) != Some(sha)
        })
        .map(|(path, _)| path)
        .collect();
    // Content only: a container takes its files' bytes (a mode change is pushed, not
    // restarted for).
    let pending: BTreeSet<&String> = applied
        .iter()
        .filter(|(path, (sha, _))| marker.files.get(*path).map(|(have, _)| have) != Some(sha))
        .map(|(path, _)| path)
        .chain(marker.files.keys().filter(|p| !applied.contains_key(*p)))
        .chain(rewritten.iter().copied())
        .collect();
    if pending.is_empty() {
        return Ok(decision(Action::Nothing, String::new()));
    }
    let reloadable = service
        .reload
        .as_ref()
        .is_some_and(|r| pending.iter().all(|p| r.files.contains(p)));
    let names = |paths: &BTreeSet<&String>| {
        paths
            .iter()
            .map(|p| p.rsplit('/').next().unwrap_or(p))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut reason = names(&pending);
    if !rewritten.is_empty() {
        reason.push_str(&format!(
            " (rewritten on the host since the last apply: {})",
            names(&rewritten)
        ));
    }
    if reloadable {
        Ok(decision(Action::Reload, format!("reload for {reason}")))
    } else {
        Ok(decision(Action::Restart, format!("changed: {reason}")))
    }
}

/// For a service never applied by virtfleet whose files all hold the desired content: did
/// its container start after the newest of them was written? None when that is not the case
/// to ask, or the start times were not read.
fn started_after_its_files(service: &ServicePlan, state: &HostState) -> Option<bool> {
    if !service.files.iter().all(|f| state.holds_content(f)) {
        return None;
    }
    let started = state.started.get(&service.name)?;
    let newest = service
        .files
        .iter()
        .map(|f| state.changed_at.get(&f.path).copied())
        .collect::<Option<Vec<i64>>>()?
        .into_iter()
        .max()?;
    // The container the probe saw, running, taking its files at every start; a start time
    // from the future means the host's clock was stepped back since: not comparable.
    let same = state.containers.get(&service.name) == Some(&started.id);
    let comparable = same && started.running && !started.copy_once && started.at <= state.now?;
    // Whole seconds on the file side: a start in the same second is not known to be later.
    Some(comparable && started.at > newest)
}

/// True when [`decide`] could adopt `service` if it knew when its container started and its
/// files were written ([`crate::script::start_times`], one more round trip).
pub fn needs_start_times(service: &ServicePlan, state: &HostState) -> bool {
    // A host service's start is not read: never applied by virtfleet, it restarts.
    service.runs == Runs::Container
        && !state.markers.contains_key(&service.marker_path)
        && !state.started.contains_key(&service.name)
        && !service.files.is_empty()
        && service.files.iter().all(|f| state.holds_content(f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{file, service};

    fn host_with(service: &ServicePlan, applied: Option<&ServicePlan>, id: &str) -> HostState {
        let mut state = HostState::default();
        for f in &service.files {
            state.files.insert(
                f.path.clone(),
                FileState {
                    mode: Some(f.mode),
                    kind: Some(FileKind::File),
                    group: Some("root".into()),
                    owner: Some("root".into()),
                    sha256: Some(f.sha256.clone()),
                },
            );
        }
        if let Some(applied) = applied {
            state.markers.insert(
                service.marker_path.clone(),
                Marker::for_service(applied, "c1"),
            );
        }
        state.containers.insert("svc".into(), id.into());
        state
    }

    #[test]
    fn an_owner_with_a_group_matches_both_and_lets_a_secret_be_that_groups() {
        let mut key = file("/etc/pki/qemu/server-key.pem", "k");
        key.secret = true;
        key.mode = 0o640;
        let svc = service(vec![key.clone()], &[]);
        let mut state = host_with(&svc, None, "1");
        // A secret its group reads: group root unless the playbook names the group.
        assert!(state.matches(&key));
        state.files.get_mut(&key.path).unwrap().group = Some("kvm".into());
        assert!(!state.matches(&key));
        key.owner = Some("root:kvm".into());
        assert!(state.matches(&key));
        key.owner = Some("root:libvirt-qemu".into());
        assert!(!state.matches(&key));
        key.owner = Some("nova:kvm".into());
        assert!(!state.matches(&key));
        key.owner = Some("root".into());
        assert!(
            !state.matches(&key),
            "still a group-readable secret of group kvm"
        );
    }

    #[test]
    fn container_ids_come_from_podmans_store_or_inspect() {
        let probe = "J [{\"id\":\"abc\",\"names\":[\"nova_libvirt\"],\"layer\":\"x\"},{\"id\":\"def\",\"names\":[\"nova_compute\"]}]\nC /other 123\n";
        let state = HostState::parse(probe);
        assert_eq!(state.containers["nova_libvirt"], "abc");
        assert_eq!(state.containers["nova_compute"], "def");
        assert_eq!(state.containers["other"], "123");
    }

    #[test]
    fn container_ids_come_from_dockers_store() {
        let id = "ab".repeat(32);
        let state = HostState::parse(&format!("D nova_libvirt {id}\nD nova_compute 12\n"));
        assert_eq!(state.containers["nova_libvirt"], id);
        assert_eq!(state.containers["nova_compute"], "12");
        assert_eq!(state.engine_problem, None);
    }

    #[test]
    fn an_engine_that_is_missing_or_cannot_list_containers_says_so() {
        assert_eq!(
            HostState::parse("N docker\n").engine_problem,
            Some(EngineProblem::Missing)
        );
        let state = HostState::parse("E Cannot connect to the Docker daemon\nE second line\n");
        assert_eq!(
            state.engine_problem,
            Some(EngineProblem::Unusable(
                "Cannot connect to the Docker daemon\nsecond line".into()
            ))
        );
        assert!(state.containers.is_empty());
    }

    #[test]
    fn marker_round_trips() {
        let svc = service(vec![file("/k/svc/a", "aa"), file("/k/svc/b c", "bb")], &[]);
        let marker = Marker::for_service(&svc, "c1");
        assert_eq!(Marker::parse(&marker.render()), Some(marker));
        assert_eq!(Marker::parse("garbage"), None);
    }

    #[test]
    fn up_to_date_and_applied_means_nothing() {
        let svc = service(vec![file("/k/svc/a", "aa")], &[]);
        let d = decide(&svc, &host_with(&svc, Some(&svc), "c1")).unwrap();
        assert_eq!((d.push.len(), d.action), (0, Action::Nothing));
    }

    #[test]
    fn files_pushed_but_never_applied_restart() {
        // A killed run or genconfig: files are current, the marker is old.
        let old = service(vec![file("/k/svc/a", "old")], &[]);
        let new = service(vec![file("/k/svc/a", "new")], &[]);
        let d = decide(&new, &host_with(&new, Some(&old), "c1")).unwrap();
        assert_eq!((d.push.len(), d.action), (0, Action::Restart));
    }

    #[test]
    fn files_kolla_applied_are_adopted_only_when_the_container_started_after_them() {
        let svc = service(vec![file("/k/svc/a", "aa"), file("/k/svc/b", "bb")], &[]);
        // 2026-12-02T01:23:45Z is 1796174625.
        let files = "Y 1796174625 1796174620 /k/svc/a\nY 1796174600 1796174600 /k/svc/b\n";
        let action = |start: &str, files: &str| {
            let mut host = host_with(&svc, None, "c1");
            host.add_start_times(&format!("Z 1796174700\n{start}\n{files}"));
            assert!(!needs_start_times(&svc, &host));
            decide(&svc, &host).unwrap().action
        };
        let host = host_with(&svc, None, "c1");
        // Not known yet: ask, and restart until told otherwise.
        assert!(needs_start_times(&svc, &host));
        assert_eq!(decide(&svc, &host).unwrap().action, Action::Restart);
        // Started after both files (docker's and podman's formats and names).
        assert_eq!(
            action("T /svc c1 true s= 2026-12-02T01:23:46.5Z", files),
            Action::Adopt
        );
        let podman = "T svc c1 true s= 2026-12-02 01:23:46.1 +0000 UTC";
        assert_eq!(action(podman, files), Action::Adopt);
        // Restart: the same second; a ctime later than the start (a restore that set the
        // mtime back); stopped; another container than the probe saw; Kolla's COPY_ONCE; a
        // start in the host's future; never started; a file's time unknown.
        for (start, files) in [
            ("T svc c1 true s= 2026-12-02T01:23:45.9Z", files),
            (
                "T svc c1 true s= 2026-12-02T01:23:46Z",
                "Y 1796174600 1796174650 /k/svc/a\nY 1 1 /k/svc/b\n",
            ),
            ("T svc c1 false s= 2026-12-02T01:23:46Z", files),
            ("T svc c2 true s= 2026-12-02T01:23:46Z", files),
            ("T svc c1 true s=once 2026-12-02T01:23:46Z", files),
            ("T svc c1 true s= 2026-12-02T02:00:00Z", files),
            ("T svc c1 true s= 0001-01-01T00:00:00Z", files),
            ("T svc c1 true s= 2026-12-02T01:23:46Z", "Y 1 1 /k/svc/a\n"),
        ] {
            assert_eq!(action(start, files), Action::Restart, "{start} {files}");
        }
        // Other content on the host: pushed and restarted, nothing to ask.
        let mut differs = host_with(&svc, None, "c1");
        differs.files.get_mut("/k/svc/b").unwrap().sha256 = Some("other".into());
        assert!(!needs_start_times(&svc, &differs));
        differs.add_start_times(&format!(
            "Z 1796174700\nT svc c1 true s= 2026-12-02T01:23:46Z\n{files}"
        ));
        let d = decide(&svc, &differs).unwrap();
        assert_eq!(
            (d.push, d.action),
            (vec!["/k/svc/b".to_string()], Action::Restart)
        );
    }

    #[test]
    fn a_mode_change_alone_is_pushed_without_a_restart() {
        // Kolla's modes (0660) where the last apply wrote 0600: the bytes are the same.
        let old = service(vec![file("/k/svc/a", "aa")], &[]);
        let mut new = old.clone();
        new.files[0].mode = 0o660;
        let host = host_with(&old, Some(&old), "c1");
        let d = decide(&new, &host).unwrap();
        assert_eq!(
            (d.push, d.action),
            (vec!["/k/svc/a".to_string()], Action::Nothing)
        );
    }

    #[test]
    fn recreated_container_restarts() {
        let svc = service(vec![file("/k/svc/a", "aa")], &[]);
        let d = decide(&svc, &host_with(&svc, Some(&svc), "c2")).unwrap();
        assert_eq!(d.action, Action::Restart);
        assert!(d.reason.contains("recreated"));
    }

    #[test]
    fn only_reloadable_files_changed_reloads() {
        let old = service(
            vec![file("/k/svc/cert", "1"), file("/k/svc/conf", "1")],
            &["/k/svc/cert"],
        );
        let new = service(
            vec![file("/k/svc/cert", "2"), file("/k/svc/conf", "1")],
            &["/k/svc/cert"],
        );
        let mut state = host_with(&old, Some(&old), "c1");
        let d = decide(&new, &state).unwrap();
        assert_eq!(
            (d.push.clone(), d.action),
            (vec!["/k/svc/cert".to_string()], Action::Reload)
        );
        // Once the config changes too, only a restart applies it.
        let newer = service(
            vec![file("/k/svc/cert", "2"), file("/k/svc/conf", "2")],
            &["/k/svc/cert"],
        );
        state.files.get_mut("/k/svc/conf").unwrap().sha256 = Some("9".into());
        assert_eq!(decide(&newer, &state).unwrap().action, Action::Restart);
    }

    #[test]
    fn mode_drift_is_pushed_without_restart_when_content_was_applied() {
        let svc = service(vec![file("/k/svc/a", "aa")], &[]);
        let mut state = host_with(&svc, Some(&svc), "c1");
        state.files.get_mut("/k/svc/a").unwrap().mode = Some(0o644);
        let d = decide(&svc, &state).unwrap();
        assert_eq!((d.push.len(), d.action), (1, Action::Nothing));
    }

    #[test]
    fn a_file_rewritten_on_the_host_since_the_apply_is_pushed_and_applied_again() {
        let svc = service(
            vec![file("/k/svc/a", "aa"), file("/k/svc/key", "kk")],
            &["key"],
        );
        // kolla-ansible wrote its own version of `a` (and may have restarted the container).
        let mut state = host_with(&svc, Some(&svc), "c1");
        state.files.get_mut("/k/svc/a").unwrap().sha256 = Some("kolla".into());
        let d = decide(&svc, &state).unwrap();
        assert_eq!(
            (d.push, d.action),
            (vec!["/k/svc/a".to_string()], Action::Restart)
        );
        assert!(d.reason.contains("rewritten on the host"), "{}", d.reason);
        // Deleted counts too; a reloadable file is reloaded.
        let mut state = host_with(&svc, Some(&svc), "c1");
        state.files.remove("/k/svc/key");
        let reload = service(
            vec![file("/k/svc/a", "aa"), file("/k/svc/key", "kk")],
            &["/k/svc/key"],
        );
        let d = decide(&reload, &state).unwrap();
        assert_eq!(d.action, Action::Reload, "{}", d.reason);
    }

    #[test]
    fn missing_container_is_an_error() {
        let svc = service(vec![file("/k/svc/a", "aa")], &[]);
        let mut state = host_with(&svc, None, "c1");
        state.containers.clear();
        assert!(decide(&svc, &state).unwrap_err().contains("svc"));
    }
}
