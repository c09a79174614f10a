//! Advisory locks for stores that several threads and processes share: an OCI layout's
//! `index.json` (the source cache, an output layout many CI jobs write), an oci-archive being
//! rewritten, the caches. A lock is a `flock(2)` on the directory that holds what it guards (the
//! layout itself; the directory of an archive), so no lock file is left in anyone's output; it
//! is released when the value is dropped, and by the kernel when the process dies.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

/// An exclusive lock, held until dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
    path: PathBuf,
}

impl Lock {
    /// Wait for and take the exclusive lock on the directory `dir`.
    pub fn exclusive(dir: &Path) -> Result<Lock> {
        let file = open(dir)?;
        file.lock().at("locking", dir)?;
        tracing::trace!(lock = %dir.display(), "locked");
        Ok(Lock {
            _file: file,
            path: dir.to_path_buf(),
        })
    }

    /// Wait for and take a shared lock on `dir` (readers that must not see a prune).
    pub fn shared(dir: &Path) -> Result<Lock> {
        let file = open(dir)?;
        file.lock_shared().at("locking", dir)?;
        Ok(Lock {
            _file: file,
            path: dir.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn open(dir: &Path) -> Result<File> {
    OpenOptions::new().read(true).open(dir).at("opening", dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn one_holder_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        let inside = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..20 {
                        let _l = Lock::exclusive(path).unwrap();
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                        std::thread::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
    }
}
