//! Small files that must survive a crash whole: a watch cursor, a receipt,
//! a key file. After a crash (of the process or the machine) the file holds
//! its old content or all of the new one, never a part of either.
//!
//! The one way: write a sibling temporary file, `fsync` it, move it into
//! place (`rename` to replace, `link` to create without replacing), then
//! `fsync` the directory so the move itself is durable.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::anyhow;

/// Replaces `path` with `bytes` (or creates it).
pub fn replace(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let (dir, temporary) = temporary_sibling(path)?;
    let write = || -> std::io::Result<()> {
        write_synced(&temporary, bytes, false)?;
        fs::rename(&temporary, path)?;
        File::open(&dir)?.sync_all()
    };
    write().map_err(|error| {
        let _ = fs::remove_file(&temporary);
        anyhow!("cannot write {}: {error}", path.display())
    })
}

/// Creates `path` holding `bytes`, readable by its owner only (0600 from
/// the first byte written: the temporary file is created with that mode),
/// and never replaces an existing file: the link into place fails if
/// `path` exists, and nothing is left behind. `what` names the file in
/// errors ("key file").
pub fn create_private(path: &Path, bytes: &[u8], what: &str) -> anyhow::Result<()> {
    let exists = || {
        anyhow!(
            "cannot create {what} {}: it already exists (never overwritten)",
            path.display()
        )
    };
    if path.exists() {
        return Err(exists());
    }
    let (dir, temporary) = temporary_sibling(path)?;
    let write = || -> std::io::Result<()> {
        write_synced(&temporary, bytes, true)?;
        let linked = fs::hard_link(&temporary, path);
        fs::remove_file(&temporary)?;
        linked?;
        File::open(&dir)?.sync_all()
    };
    write().map_err(|error| {
        let _ = fs::remove_file(&temporary);
        match error.kind() {
            std::io::ErrorKind::AlreadyExists => exists(),
            _ => anyhow!("cannot create {what} {}: {error}", path.display()),
        }
    })
}

/// The directory of `path` and a hidden temporary name beside it (same
/// file system, so the move is atomic); the process id keeps two writers
/// of one file from sharing a temporary.
fn temporary_sibling(path: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} names no file", path.display()))?;
    let temporary = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    Ok((dir, temporary))
}

fn write_synced(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if private {
        // A leftover of a crashed run is never reused: its mode is not ours
        // to trust.
        options.create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_writes_whole_files_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cursor.json");
        replace(&path, b"first").unwrap();
        replace(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn create_private_is_owner_only_and_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        create_private(&path, b"secret", "key file").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let error = create_private(&path, b"other", "key file")
            .unwrap_err()
            .to_string();
        assert!(error.contains("already exists"), "{error}");
        assert_eq!(fs::read(&path).unwrap(), b"secret");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
