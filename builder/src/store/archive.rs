//! `oci-archive:FILE`: an OCI image layout carried as one plain tar (what skopeo and podman call
//! an oci-archive). Reading unpacks it into a temporary layout; writing packs a layout with the
//! deterministic tar writer into a temporary file next to the destination, then renames it.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use tempfile::TempDir;

use super::layout::Layout;
use crate::error::{Error, IoContext, Result};
use crate::rootfs::clean_path;
use crate::tarw::TarWriter;

/// A layout unpacked from an archive; the directory lives as long as this value.
pub struct Unpacked {
    pub layout: Layout,
    pub dir: TempDir,
}

/// Unpack `file` into a temporary layout. Only directories and regular files are accepted, and
/// only paths that stay inside the layout.
pub fn open(file: &Path) -> Result<Unpacked> {
    let f = File::open(file).at("opening", file)?;
    let dir = tempfile::Builder::new()
        .prefix("talext-archive-")
        .tempdir()
        .at("creating a temporary directory for", file)?;
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
        let Some(rel) = clean_path(&raw) else {
            if raw.trim_start_matches("./").is_empty() {
                continue;
            }
            return Err(bad(format!("entry `{raw}` escapes the archive")));
        };
        let dest = dir.path().join(&rel);
        match entry.header().entry_type() {
            tar::EntryType::Directory => fs::create_dir_all(&dest).at("creating", &dest)?,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if let Some(p) = dest.parent() {
                    fs::create_dir_all(p).at("creating", p)?;
                }
                let mut out = BufWriter::new(File::create(&dest).at("creating", &dest)?);
                io::copy(&mut entry, &mut out).map_err(|e| bad(format!("reading `{raw}`: {e}")))?;
                out.flush().at("writing", &dest)?;
            }
            other => return Err(bad(format!("entry `{raw}` has unsupported type {other:?}"))),
        }
    }
    let layout = Layout::open(dir.path()).map_err(|e| bad(e.to_string()))?;
    Ok(Unpacked { layout, dir })
}

/// Pack the layout at `src` into `dest` (written to a temporary file, then renamed).
pub fn write(src: &Layout, dest: &Path) -> Result<()> {
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::create_dir_all(parent).at("creating", parent)?;
    let tmp = tempfile::Builder::new()
        .prefix(".talext-")
        .tempfile_in(parent)
        .at("creating a temporary file in", parent)?;
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
