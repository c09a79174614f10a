//! `oci-archive:FILE`: an OCI image layout carried as one plain tar (what skopeo and podman call
//! an oci-archive). Reading is done in place (`Layout::in_tar`: each blob is a range of the
//! tar, verified like any layout's as it is read); writing packs a layout with the
//! deterministic tar writer into a temporary file next to the destination, then renames it,
//! after unpacking what the archive already holds so the new content merges with it. Writers of one archive are
//! serialised by a lock on its directory and merge into what is already there, so concurrent
//! builds and copies into one archive keep each other's tags.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::layout::{parent_of, Layout, MAX_INDEX};
use super::lock::Lock;
use super::scratch;
use crate::error::{Error, IoContext, Result};
use crate::oci::Index;
use crate::rootfs::{classify_path, Cleaned};
use crate::tarw::TarWriter;

/// A layout unpacked from an archive; the directory lives as long as this value.
struct Unpacked {
    layout: Layout,
    _dir: TempDir,
}

/// Unpack `file` into a temporary layout (to merge into it). Only directories and regular
/// files are accepted, and only paths that stay inside the layout.
fn open(file: &Path) -> Result<Unpacked> {
    let f = super::layout::open_regular(file).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Error::Io {
            op: "opening",
            path: file.to_path_buf(),
            source: e,
        },
        _ => Error::input(format!("`{}` {e}; refused", file.display())),
    })?;
    let dir = scratch::dir("archive")?;
    let bad = |msg: String| {
        Error::input(format!(
            "`{}` is not a valid oci-archive: {msg}",
            file.display()
        ))
    };
    let mut archive = tar::Archive::new(io::BufReader::with_capacity(1 << 20, f));
    for entry in archive.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let raw = entry
            .path()
            .map_err(|e| bad(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let rel = match classify_path(&raw) {
            // `.`, `./` and `/` name the layout's root directory itself.
            Cleaned::Root => continue,
            Cleaned::Path(p) => p,
            Cleaned::Escapes => {
                return Err(bad(format!(
                    "entry `{}` escapes the archive",
                    raw.escape_debug()
                )))
            }
        };
        let dest = dir.path().join(&rel);
        match entry.header().entry_type() {
            tar::EntryType::Directory => fs::create_dir_all(&dest).at("creating", &dest)?,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                // The layout's own documents are read under a cap; refuse a larger one before
                // it is unpacked rather than write it out first.
                let size = entry.header().size().map_err(|e| bad(e.to_string()))?;
                if ["index.json", "oci-layout"].contains(&rel.as_str()) && size > MAX_INDEX {
                    return Err(bad(format!(
                        "`{rel}` is larger than {MAX_INDEX} bytes; refused"
                    )));
                }
                if let Some(p) = dest.parent() {
                    fs::create_dir_all(p).at("creating", p)?;
                }
                if dest.symlink_metadata().is_ok() {
                    return Err(bad(format!("entry `{}` appears twice", raw.escape_debug())));
                }
                let mut out = BufWriter::new(File::create(&dest).at("creating", &dest)?);
                io::copy(&mut entry, &mut out).map_err(|e| bad(format!("reading `{raw}`: {e}")))?;
                out.flush().at("writing", &dest)?;
            }
            other => {
                return Err(bad(format!(
                    "entry `{}` has unsupported type {other:?}",
                    raw.escape_debug()
                )))
            }
        }
    }
    let layout = Layout::open(dir.path()).map_err(|e| bad(e.to_string()))?;
    Ok(Unpacked { layout, _dir: dir })
}

/// Pack the layout at `src` into `dest` (written to a temporary file, then renamed).
pub fn write(src: &Layout, dest: &Path) -> Result<()> {
    let parent = parent_of(dest);
    let tmp = scratch::file_in(&parent, "archive")?;
    let mut paths = Vec::new();
    collect(src.root(), src.root(), &mut paths)?;
    paths.sort();
    let mut w = TarWriter::new(BufWriter::with_capacity(1 << 20, tmp), 0);
    for (rel, is_dir) in &paths {
        let full = src.root().join(rel);
        if *is_dir {
            w.dir(rel, 0o755).at("writing", dest)?;
        } else {
            let f = File::open(&full).at("opening", &full)?;
            let size = f.metadata().at("reading", &full)?.len();
            w.file(rel, 0o644, size, f).at("writing", dest)?;
        }
    }
    let tmp =
        w.finish().at("writing", dest)?.into_inner().map_err(|e| {
            Error::internal(format!("flushing `{}`: {}", dest.display(), e.error()))
        })?;
    tmp.as_file().sync_all().at("syncing", dest)?;
    crate::image::persist(tmp, dest)
}

/// An archive being written: blobs go into a private layout ([`ArchiveTarget::layout`]), and
/// [`ArchiveTarget::commit`], under the lock on the archive's directory, merges them into the
/// archive's current content (re-read at that moment), applies the `index.json` change and
/// replaces the archive. A write that fails before commit leaves the archive as it was.
pub struct ArchiveTarget {
    file: PathBuf,
    work: TempDir,
    layout: Layout,
}

impl ArchiveTarget {
    pub fn open(file: &Path) -> Result<ArchiveTarget> {
        // An existing archive is read at commit, under the lock (a damaged one fails there and
        // stays as it was); reading it now too would unpack it twice.
        let work = scratch::dir("archive")?;
        let layout = Layout::open_or_create(work.path().join("layout"))?;
        Ok(ArchiveTarget {
            file: file.to_path_buf(),
            work,
            layout,
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn commit<T>(self, update: impl Fn(&Layout, &mut Index) -> Result<T>) -> Result<T> {
        let parent = parent_of(&self.file);
        fs::create_dir_all(&parent).at("creating", &parent)?;
        let _lock = Lock::exclusive(&parent)?;
        scratch::reclaim(&parent);
        let out = if self.file.exists() {
            let current = open(&self.file)?;
            super::layout::move_blobs(&self.layout, &current.layout)?;
            let out = current
                .layout
                .update_index(|idx| update(&current.layout, idx))?;
            write(&current.layout, &self.file)?;
            out
        } else {
            let out = self.layout.update_index(|idx| update(&self.layout, idx))?;
            write(&self.layout, &self.file)?;
            out
        };
        drop(self.work);
        Ok(out)
    }
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, bool)>) -> Result<()> {
    for entry in fs::read_dir(dir).at("reading", dir)? {
        let entry = entry.at("reading", dir)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".tmp-") || name.starts_with(".talext-") {
            continue;
        }
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .map_err(|e| Error::internal(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let ft = entry.file_type().at("reading", &path)?;
        if ft.is_dir() {
            out.push((rel, true));
            collect(root, &path, out)?;
        } else if ft.is_file() {
            out.push((rel, false));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_and_unpack() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::open_or_create(dir.path().join("l")).unwrap();
        let d = l.put_bytes(b"hello").unwrap();
        let a = dir.path().join("out/x.tar");
        write(&l, &a).unwrap();
        let first = fs::read(&a).unwrap();
        write(&l, &a).unwrap();
        assert_eq!(first, fs::read(&a).unwrap(), "deterministic");
        let u = open(&a).unwrap();
        assert_eq!(u.layout.read_document(&d).unwrap(), b"hello");
    }
}
