//! Files that may hold a secret (a rendered node configuration carries the Tailscale auth key):
//! written owner-only, whatever the umask, through a temporary sibling and a rename so neither a
//! reader nor another user ever sees the bytes under a wider mode.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, IoContext, Result};

/// The mode of a new secret-holding file: read and write for its owner only.
pub const PRIVATE_MODE: u32 = 0o600;

/// The mode `dest` gets: 0600 for a new file; an existing regular file keeps whatever of its
/// owner bits it has (0400 stays 0400) and loses every group and other bit, so replacing a file
/// never loosens its mode. A symlink at `dest` is replaced, not followed, so its target's mode
/// does not count.
pub fn private_mode(dest: &Path) -> u32 {
    match std::fs::symlink_metadata(dest) {
        Ok(m) if m.file_type().is_file() => m.mode() & PRIVATE_MODE,
        _ => PRIVATE_MODE,
    }
}

/// Write `bytes` to `dest` with [`private_mode`]. The temporary file is created 0600 in the same
/// directory (a rename never crosses file systems and keeps the mode), given its final mode by
/// its descriptor before the first byte is written, synced, then renamed over `dest`.
pub fn write_private(dest: &Path, bytes: &[u8]) -> Result<()> {
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent).at("creating", parent)?;
    let mode = private_mode(dest);
    let mut tmp = tempfile::Builder::new()
        .prefix(&crate::store::scratch::prefix("private", true))
        .permissions(std::fs::Permissions::from_mode(PRIVATE_MODE))
        .tempfile_in(parent)
        .at("creating a temporary file in", parent)?;
    crate::store::scratch::register(tmp.path());
    // The umask only ever removes bits at creation; setting the mode explicitly makes it exact.
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .at("setting the mode of", dest)?;
    tmp.write_all(bytes).at("writing", dest)?;
    tmp.as_file().sync_all().at("writing", dest)?;
    tmp.persist(dest).map_err(|e| Error::Io {
        op: "writing",
        path: dest.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn new_files_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("node.yaml");
        write_private(&f, b"secret").unwrap();
        assert_eq!(mode_of(&f), 0o600);
        assert_eq!(std::fs::read(&f).unwrap(), b"secret");
    }

    #[test]
    fn replacing_tightens_a_wide_mode_and_keeps_a_stricter_one() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("node.yaml");
        std::fs::write(&f, b"old").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&f, b"new").unwrap();
        assert_eq!(mode_of(&f), 0o600);
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o400)).unwrap();
        write_private(&f, b"newer").unwrap();
        assert_eq!(mode_of(&f), 0o400);
        assert_eq!(std::fs::read(&f).unwrap(), b"newer");
    }

    #[test]
    fn a_symlink_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, b"keep").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
        let f = dir.path().join("node.yaml");
        std::os::unix::fs::symlink(&target, &f).unwrap();
        write_private(&f, b"secret").unwrap();
        assert!(std::fs::symlink_metadata(&f).unwrap().file_type().is_file());
        assert_eq!(mode_of(&f), 0o600);
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    }
}
