//! Crash-safe file replacement: temp file, fsync, rename, fsync of the directory.
//!
//! The one implementation the workspace uses for files that must be the old or
//! the new content after a crash, never a torn mix (DESIGN invariant 4): the file
//! state and history stores here, and deploy-security's encrypted secret files.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Replaces `path` with `contents` so that a crash at any point leaves either the old
/// file or the new one, never a mix: the bytes go to a fresh temp file (mode 0600) in
/// the same directory, which is fsynced, renamed over `path`, and the directory is
/// fsynced so the rename itself survives a power loss. Missing parent directories are
/// created with mode 0700.
pub fn replace(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = path.parent().ok_or_else(|| io::Error::other("path has no parent directory"))?;
    let name = path.file_name().ok_or_else(|| io::Error::other("path has no file name"))?;
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let nonce = crate::random::u64();
    let tmp = dir.join(format!(".{}.tmp-{}-{nonce:016x}", name.to_string_lossy(), std::process::id()));
    let result = write_synced(&tmp, contents).and_then(|()| fs::rename(&tmp, path)).and_then(|()| sync_dir(dir));
    if result.is_err() {
        // Best effort: the temp file is invisible to readers either way.
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes `path` durably; a missing file is not an error. Returns whether it existed.
pub fn remove(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => {
            if let Some(dir) = path.parent() {
                sync_dir(dir)?;
            }
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether `name` is one of the temp files [`replace`] writes, so that a directory
/// listing can skip the leftovers of a write that a crash interrupted.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp-")
}

fn write_synced(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_with_mode_0600_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/secret.json");
        replace(&path, b"one").unwrap();
        replace(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        let names: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["secret.json"]);
        assert!(remove(&path).unwrap());
        assert!(!remove(&path).unwrap());
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("target");
        fs::create_dir(&path).unwrap(); // renaming a file over a directory fails
        assert!(replace(&path, b"new").is_err());
        assert!(path.is_dir());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "temp file removed");
    }
}
