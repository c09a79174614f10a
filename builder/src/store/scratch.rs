//! Temporary trees and files, all named so they can be found again: `talext-<kind>-<pid>-<random>`
//! in `TMPDIR`, `.talext-<kind>-<pid>-<random>` beside an output or inside a store (where the
//! oci-archive packer skips them). Every one is registered while it lives, so SIGINT and SIGTERM
//! remove them before the process exits; one left by a killed process (its pid gone) is removed
//! by the next run's [`reclaim`] or by `talext cache prune`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tempfile::{NamedTempFile, TempDir};

use crate::error::{IoContext, Result};

static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Remember a temporary path made elsewhere (with [`prefix`]) for removal on a signal.
pub fn register(path: &Path) {
    let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    // Most entries are gone by the time the list grows: keep it short.
    if live.len() >= 256 {
        live.retain(|p| p.symlink_metadata().is_ok());
    }
    live.push(path.to_path_buf());
}

/// Every kind of scratch entry talext makes; [`reclaim`] removes only names of these kinds.
const KINDS: &[&str] = &[
    "archive", "blob", "build", "bundle", "config", "copy", "file", "index", "inspect", "layout",
    "pull", "push", "source", "tar", "test", "validate", "verify", "catalog", "private",
    "imgcache", "deb",
];
/// The random part `tempfile` appends.
const RANDOM_LEN: usize = 6;

/// The name prefix of a scratch entry of `kind` (hidden: with a leading `.`).
pub fn prefix(kind: &str, hidden: bool) -> String {
    debug_assert!(KINDS.contains(&kind), "unknown scratch kind `{kind}`");
    format!(
        "{}talext-{kind}-{}-",
        if hidden { "." } else { "" },
        std::process::id()
    )
}

/// A temporary directory in `TMPDIR`.
pub fn dir(kind: &str) -> Result<TempDir> {
    let tmp = std::env::temp_dir();
    let d = tempfile::Builder::new()
        .prefix(&prefix(kind, false))
        .tempdir_in(&tmp)
        .at("creating a temporary directory in", &tmp)?;
    register(d.path());
    Ok(d)
}

/// A temporary directory inside `parent` (beside an output, so it can be renamed into place).
pub fn dir_in(parent: &Path, kind: &str) -> Result<TempDir> {
    fs::create_dir_all(parent).at("creating", parent)?;
    let d = tempfile::Builder::new()
        .prefix(&prefix(kind, true))
        .tempdir_in(parent)
        .at("creating a temporary directory in", parent)?;
    register(d.path());
    Ok(d)
}

/// A temporary file inside `parent` (0600 until the caller gives it a mode and renames it).
pub fn file_in(parent: &Path, kind: &str) -> Result<NamedTempFile> {
    fs::create_dir_all(parent).at("creating", parent)?;
    let f = tempfile::Builder::new()
        .prefix(&prefix(kind, true))
        .tempfile_in(parent)
        .at("creating a temporary file in", parent)?;
    register(f.path());
    Ok(f)
}

/// Remove every registered temporary path that still exists.
pub fn remove_all() {
    let live = std::mem::take(&mut *LIVE.lock().unwrap_or_else(|e| e.into_inner()));
    for p in live.iter().rev() {
        remove(p);
    }
}

fn remove(p: &Path) {
    match p.symlink_metadata() {
        Ok(m) if m.is_dir() => {
            // A worker thread may still be writing into it: a second pass catches late files.
            if fs::remove_dir_all(p).is_err() {
                let _ = fs::remove_dir_all(p);
            }
        }
        Ok(_) => {
            let _ = fs::remove_file(p);
        }
        Err(_) => {}
    }
}

/// Remove temporary paths on SIGINT and SIGTERM, then exit with 128 + the signal, as a shell
/// reports a process the signal ended. Called once by the binary.
pub fn clean_up_on_signals() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            remove_all();
            std::process::exit(128 + sig);
        }
    });
}

/// The pid in a scratch name (`talext-<kind>-<pid>-<random>` or `.talext-…`), only for the
/// exact shape talext writes, so no one else's file is ever taken for ours.
fn owner(name: &str) -> Option<u32> {
    let rest = name
        .strip_prefix('.')
        .unwrap_or(name)
        .strip_prefix("talext-")?;
    let mut parts = rest.splitn(3, '-');
    let (kind, pid, random) = (parts.next()?, parts.next()?, parts.next()?);
    let ours = KINDS.contains(&kind)
        && !pid.is_empty()
        && pid.bytes().all(|b| b.is_ascii_digit())
        && random.len() == RANDOM_LEN
        && random.bytes().all(|b| b.is_ascii_alphanumeric());
    ours.then(|| pid.parse().ok()).flatten()
}

fn alive(pid: u32) -> bool {
    pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists()
}

/// Remove scratch entries in `dir` whose owner process is gone; returns what was removed and
/// how many bytes it held. Entries of live processes (and names not ours) are left alone.
pub fn reclaim(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut removed = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return removed;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(owner) else {
            continue;
        };
        if alive(pid) {
            continue;
        }
        let path = entry.path();
        let size = disk_usage(&path);
        remove(&path);
        if path.symlink_metadata().is_err() {
            tracing::info!("removed `{}` left by process {pid}", path.display());
            removed.push((path, size));
        }
    }
    removed
}

/// Bytes held by regular files below `path` (not following symlinks).
pub fn disk_usage(path: &Path) -> u64 {
    let Ok(m) = path.symlink_metadata() else {
        return 0;
    };
    if !m.is_dir() {
        return if m.is_file() { m.len() } else { 0 };
    }
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_their_owner() {
        let d = dir_in(&std::env::temp_dir(), "test").unwrap();
        let name = d.path().file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(owner(&name), Some(std::process::id()));
        assert_eq!(owner("talext-copy-12-abcDE9"), Some(12));
        assert_eq!(owner(".talext-layout-12-abcDE9"), Some(12));
        assert_eq!(owner("talext-copy"), None);
        assert_eq!(owner("talext-copy-12-abc"), None, "not tempfile's suffix");
        assert_eq!(owner("talext-v1-2-3.tar"), None, "a user's file");
        assert_eq!(owner("other-copy-12-xxxxxx"), None);
    }

    #[test]
    fn reclaims_only_dead_owners() {
        let root = tempfile::tempdir().unwrap();
        // pid_max is at most 2^22: this pid cannot be running.
        let dead = root.path().join("talext-build-4999999-xxxxxx");
        fs::create_dir_all(dead.join("sub")).unwrap();
        fs::write(dead.join("sub/f"), b"12345").unwrap();
        let mine = root
            .path()
            .join(format!("talext-build-{}-y", std::process::id()));
        fs::create_dir(&mine).unwrap();
        let theirs = root.path().join("unrelated-4999999-zzzzzz");
        fs::create_dir(&theirs).unwrap();
        let removed = reclaim(root.path());
        assert_eq!(removed, vec![(dead.clone(), 5)]);
        assert!(!dead.exists() && mine.exists() && theirs.exists());
    }
}
