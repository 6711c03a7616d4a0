//! Files every connection of a run reads (known_hosts, private keys), parsed once per process
//! instead of once per host. An entry is used only while the file is unchanged (same inode,
//! size and modification time), so an edit between two connections is always seen.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What identifies one version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        let m = std::fs::metadata(path).ok()?;
        Some(Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        })
    }
}

pub(crate) struct FileCache<T> {
    entries: Mutex<HashMap<PathBuf, (Stamp, Arc<T>)>>,
}

impl<T> FileCache<T> {
    pub(crate) fn new() -> Self {
        FileCache {
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The parsed file, from the cache while the file is unchanged, else from `load`. Blocks
    /// (file I/O, and other callers loading meanwhile): call it from a blocking task. Errors
    /// are not cached; a file that cannot be stat'ed is always loaded afresh.
    pub(crate) fn get<E>(
        &self,
        path: &Path,
        load: impl FnOnce(&Path) -> Result<T, E>,
    ) -> Result<Arc<T>, E> {
        // Held while loading: a hundred connections starting together parse the file once.
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let Some(stamp) = Stamp::of(path) else {
            return load(path).map(Arc::new);
        };
        if let Some((cached, value)) = entries.get(path) {
            if *cached == stamp {
                return Ok(value.clone());
            }
        }
        let value = Arc::new(load(path)?);
        // Stat again: a file replaced while it was read is not cached under the old stamp.
        if Stamp::of(path) == Some(stamp) {
            entries.insert(path.to_path_buf(), (stamp, value.clone()));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn loads_once_while_unchanged_and_again_after_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, "one").unwrap();
        let cache = FileCache::new();
        let loads = Cell::new(0);
        let read = |p: &Path| {
            loads.set(loads.get() + 1);
            std::fs::read_to_string(p)
        };
        assert_eq!(*cache.get(&path, read).unwrap(), "one");
        assert_eq!(*cache.get(&path, read).unwrap(), "one");
        assert_eq!(loads.get(), 1);
        // Same size, new content: the modification time or inode tells.
        let replacement = dir.path().join("new");
        std::fs::write(&replacement, "two").unwrap();
        std::fs::rename(&replacement, &path).unwrap();
        assert_eq!(*cache.get(&path, read).unwrap(), "two");
        assert_eq!(loads.get(), 2);
        // A missing file is never cached: its error comes back every time.
        std::fs::remove_file(&path).unwrap();
        assert!(cache.get(&path, read).is_err());
        assert!(cache.get(&path, read).is_err());
        assert_eq!(loads.get(), 4);
    }
}
