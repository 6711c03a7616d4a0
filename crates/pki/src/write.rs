//! Crash-safe file replacement for keys and certificates.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Mode for private keys.
pub const KEY_MODE: u32 = 0o600;
/// Mode for certificates.
pub const CERT_MODE: u32 = 0o644;

/// Replaces `path` with `bytes` so readers see the old or the new file, never a mix.
///
/// The temporary file is created in the same directory already restricted to `mode` (a key
/// is never world-readable, not even briefly), fsynced, renamed over `path`, and the
/// directory is fsynced so the rename survives a crash.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no file name", path.display()),
        )
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        next_sequence()
    ));
    let result = write_then_rename(&tmp, path, bytes, mode);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    File::open(dir)?.sync_all()
}

fn write_then_rename(tmp: &Path, path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)?;
    // The umask may have narrowed `mode`; set it exactly.
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(tmp, path)
}

/// Distinguishes concurrent writes from one process (threads writing to the same dir).
fn next_sequence() -> u64 {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    SEQUENCE.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn writes_with_exact_mode_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("serverkey.pem");
        write_atomic(&key, b"old", KEY_MODE).unwrap();
        write_atomic(&key, b"new", KEY_MODE).unwrap();
        assert_eq!(fs::read(&key).unwrap(), b"new");
        assert_eq!(mode_of(&key), 0o600);

        let cert = dir.path().join("servercert.pem");
        write_atomic(&cert, b"cert", CERT_MODE).unwrap();
        assert_eq!(mode_of(&cert), 0o644);
        // Only the two target files remain: no temporary litter.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn tightens_mode_of_an_existing_world_readable_file() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("clientkey.pem");
        fs::write(&key, b"old").unwrap();
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic(&key, b"new", KEY_MODE).unwrap();
        assert_eq!(mode_of(&key), 0o600);
    }

    #[test]
    fn missing_directory_is_an_error_without_litter() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("cacert.pem");
        assert!(write_atomic(&path, b"x", CERT_MODE).is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
