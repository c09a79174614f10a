//! The built-layer cache, `<cache>/layers/`: a layer blob keyed by everything that determines its
//! bytes, so a rebuild with unchanged inputs neither loads its sources nor tars or compresses.
//!
//! The key is computed from the *inputs* of a platform's layer, before any source is loaded:
//! the tool version, the gzip level and block size, the epoch, the platform, the definition
//! file, the service file, the extension version, the `files` entries (their bytes: they are
//! small), and one identity per source:
//!
//! - an image in an OCI layout: the platform's image manifest digest (it names every layer by
//!   digest, so the flattened tree is a function of it);
//! - a registry image pinned by digest: that digest (the platform is part of the key); an
//!   unpinned reference is never cached, its content can change under the same name;
//! - an `oci-archive`: the archive file's stat identity (below) and tag, so it is not unpacked;
//! - a directory: a listing of every entry (path, type, mode, link target) where each regular
//!   file is identified by `(absolute path, size, mtime_ns, ctime_ns, device, inode)` rather than
//!   its bytes. Hashing the bytes would cost a full read of the payload, a large part of a cold
//!   build; stat identity is what `make`, `git`'s index and Bazel use, and ctime cannot be set
//!   back by a user, so a rewrite in place (even one restoring mtime) changes the key.
//!
//! Keying on inputs rather than on the assembled tree is what lets a hit skip flattening image
//! sources (decompressing every source layer), which would otherwise dominate a cached build.
//! Everything the assembled tree holds derives from these inputs: the manifest and service
//! files from the definition, the payload from the sources, the SBOM from the definition, the
//! source records (name, location, digest) and the platform.
//!
//! The tool itself is part of the key: `TALEXT_BUILD_ID`, a hash the build script computes over
//! every source file and the lock file, so any change to the code (one that alters layer bytes
//! or not) starts a fresh set of entries instead of serving a stale layer from a persistent CI
//! cache.
//!
//! An entry is `blobs/sha256/<hex>` (read-only) and `keys/<key>.json` (`LayerInfo`). Both are
//! written to a temporary name and renamed, the blob first, so a reader never sees a key
//! without its blob. A hit copies the blob into the output layout and re-hashes every byte as
//! it copies; a blob that does not match its digest is evicted and the layer rebuilt. A hit
//! touches its key, so `talext cache prune --max-size` evicts the least recently used first.
//! Writers and readers hold a shared lock on the cache directory, `prune` an exclusive one.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::error::{Error, IoContext, Result};
use crate::layer::{LayerInfo, GZIP_LEVEL};
use crate::oci::layout::Layout;
use crate::oci::{Descriptor, Digest, Platform};
use crate::plan::Plan;
use crate::registry::{Reference, RegistryOptions};
use crate::store::layout::read_capped;
use crate::store::lock::Lock;
use crate::store::scratch;
use crate::store::source::Source;
use crate::transport::Location;

/// Bumped when the key material changes shape.
const FORMAT: u32 = 2;
/// The identity of this build of talext (see the module docs).
pub const BUILD_ID: &str = env!("TALEXT_BUILD_ID");

/// A layer cache rooted at `<cache>/layers`.
#[derive(Debug, Clone)]
pub struct LayerCache {
    root: PathBuf,
}

/// The inputs of one platform's layer, hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key(String);

impl Key {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl LayerCache {
    /// The layer cache inside a cache directory (`--cache-dir`, `TALEXT_CACHE_DIR` or XDG).
    pub fn new(cache_dir: &Path) -> Self {
        LayerCache {
            root: cache_dir.join("layers"),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn key_path(&self, key: &Key) -> PathBuf {
        self.root.join("keys").join(format!("{}.json", key.0))
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm())
            .join(digest.hex())
    }

    /// The layer recorded under `key`, if its blob is still there with the recorded size.
    pub fn lookup(&self, key: &Key) -> Option<LayerInfo> {
        let path = self.key_path(key);
        let bytes = read_capped(&path, 1 << 20).ok()?;
        let info: LayerInfo = serde_json::from_slice(&bytes).ok()?;
        let meta = fs::symlink_metadata(self.blob_path(&info.digest)).ok()?;
        let hit = meta.is_file() && meta.len() == info.size;
        if hit {
            // Recently used: `prune --max-size` keeps it longest.
            let _ = fs::File::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_modified(std::time::SystemTime::now()));
        }
        hit.then_some(info)
    }

    /// Copy the cached blob of `info` into `layout`, verifying its digest as it is copied. A
    /// blob that fails is evicted with its key, and the error (exit 1 kind) returned, so the
    /// caller builds the layer instead.
    pub fn materialise(&self, key: &Key, info: &LayerInfo, layout: &Layout) -> Result<()> {
        if layout.blob_size(&info.digest) == Some(info.size) {
            return Ok(());
        }
        let _shared = self.shared_lock()?;
        let desc = Descriptor::new(
            crate::oci::MT_OCI_LAYER_GZIP,
            info.digest.clone(),
            info.size,
        );
        let result = (|| {
            let cached = Layout::at(&self.root);
            let (mut from, path) = cached.open_blob_file(&desc)?;
            let mut w = layout.blob_writer()?;
            std::io::copy(&mut from, &mut w).at("copying", &path)?;
            w.commit(Some(&info.digest)).map(|_| ())
        })();
        if let Err(e) = &result {
            if e.exit_kind() == crate::error::ExitKind::User {
                let _ = fs::remove_file(self.key_path(key));
                let _ = fs::remove_file(self.blob_path(&info.digest));
            }
        }
        result
    }

    /// Record the layer `info` whose blob is in `layout` under `key`.
    pub fn store(&self, key: &Key, info: &LayerInfo, layout: &Layout) -> Result<()> {
        fs::create_dir_all(&self.root).at("creating", &self.root)?;
        let _shared = self.shared_lock()?;
        let blob = self.blob_path(&info.digest);
        if fs::symlink_metadata(&blob).map(|m| m.len()).ok() != Some(info.size) {
            // Read-only in the cache; outputs get their own copy, so nothing done to an output
            // can reach the cache.
            copy_blob(&layout.blob_path(&info.digest), &blob, 0o444)?;
        }
        let bytes = serde_json::to_vec(info).map_err(|e| Error::internal(e.to_string()))?;
        write_atomic(&self.key_path(key), &bytes)
    }

    fn shared_lock(&self) -> Result<Lock> {
        fs::create_dir_all(&self.root).at("creating", &self.root)?;
        Lock::shared(&self.root)
    }

    /// The key of `platform`'s layer, or `None` when an input cannot be identified cheaply and
    /// reliably (an unpinned registry reference).
    pub fn key(&self, plan: &Plan, platform: &Platform) -> Result<Option<Key>> {
        let mut m = Material::default();
        m.line(&format!(
            "talext-layer {FORMAT} {} {BUILD_ID}",
            env!("CARGO_PKG_VERSION")
        ));
        m.line(&format!(
            "gzip libdeflate level {GZIP_LEVEL} block {}",
            crate::pgzip::BLOCK
        ));
        m.line(&format!("epoch {}", plan.source_date_epoch));
        m.line(&format!("platform {platform}"));
        m.line(&format!("version {}", plan.version));
        m.file("definition", &plan.definition)?;
        if let Some(service) = &plan.loaded.service {
            m.line(&format!("service {}", Digest::of(service)));
        }
        for f in &plan.loaded.def.files {
            m.file(&format!("files {}", f.src), &plan.loaded.dir.join(&f.src))?;
        }
        for (name, loc) in &plan.locations {
            m.line(&format!("source {name} {loc}"));
            if !source_identity(&mut m, name, loc, platform)? {
                return Ok(None);
            }
        }
        Ok(Some(Key(hex::encode(m.hash.finalize()))))
    }
}

#[derive(Default)]
struct Material {
    hash: Sha256,
}

impl Material {
    fn line(&mut self, s: &str) {
        self.hash.update(s.as_bytes());
        self.hash.update(b"\n");
    }

    fn file(&mut self, label: &str, path: &Path) -> Result<()> {
        let bytes = fs::read(path).at("reading", path)?;
        self.line(&format!("{label} {}", Digest::of(&bytes)));
        Ok(())
    }

    fn stat(&mut self, label: &str, path: &Path, meta: &fs::Metadata) {
        self.line(&format!(
            "{label} {} {} {} {} {} {}",
            path.display(),
            meta.len(),
            meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
            meta.dev(),
            meta.ino()
        ));
    }
}

/// Add the identity of one source; `false` when it has none worth caching on.
fn source_identity(m: &mut Material, name: &str, loc: &Location, p: &Platform) -> Result<bool> {
    match loc {
        Location::Dir(template) => {
            let dir = Location::dir_for(template, &p.architecture);
            let dir = fs::canonicalize(&dir).at("reading", &dir)?;
            walk(m, &dir, "")?;
            Ok(true)
        }
        Location::Oci { .. } => {
            let Some(Source::Layout { layout, tag, .. }) =
                Source::open(loc, &RegistryOptions::default())?
            else {
                return Err(Error::internal("a layout location opens as a layout"));
            };
            let what = format!("source `{name}` ({p})");
            let desc = layout
                .resolve(tag.as_deref())
                .map_err(|e| Error::input(format!("{what}: {e}")))?;
            let resolved = crate::source::image::resolve(&layout, &desc, p, &what)?;
            m.line(&format!("manifest {}", resolved.manifest_digest));
            Ok(true)
        }
        Location::OciArchive { file, .. } => {
            let meta = fs::metadata(file).at("reading", file)?;
            let file = fs::canonicalize(file).at("reading", file)?;
            m.stat("archive", &file, &meta);
            Ok(true)
        }
        Location::Registry(r) => match Reference::parse(r)?.digest {
            Some(d) => {
                m.line(&format!("pinned {d}"));
                Ok(true)
            }
            None => Ok(false),
        },
        Location::Tar(file) | Location::Deb(file) => {
            let file = Location::file_for(file, &p.architecture);
            let meta = fs::metadata(&file).at("reading", &file)?;
            let file = fs::canonicalize(&file).at("reading", &file)?;
            m.stat("archive", &file, &meta);
            Ok(true)
        }
    }
}

/// Every entry below `dir` in byte order of names: what `source::dir::load` reads.
fn walk(m: &mut Material, dir: &Path, rel: &str) -> Result<()> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).at("listing", dir)? {
        let entry = entry.at("listing", dir)?;
        names.push(entry.file_name());
    }
    names.sort();
    for name in names {
        let full = dir.join(&name);
        let path = format!("{rel}/{}", name.to_string_lossy());
        let meta = fs::symlink_metadata(&full).at("reading", &full)?;
        let ft = meta.file_type();
        let mode = meta.permissions().mode() & 0o7777;
        if ft.is_dir() {
            m.line(&format!("d {path} {mode:o}"));
            walk(m, &full, &path)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&full).at("reading link", &full)?;
            m.line(&format!("l {path} {}", target.display()));
        } else if ft.is_file() {
            m.stat(&format!("f {path} {mode:o}"), &full, &meta);
        } else {
            m.line(&format!("s {path} {mode:o} {:o}", meta.mode()));
        }
    }
    Ok(())
}

/// Copy a blob through a temporary file (the kernel may share extents: `copy_file_range`), give
/// it `mode`, then rename it into place.
fn copy_blob(from: &Path, to: &Path, mode: u32) -> Result<()> {
    let dir = to.parent().unwrap_or(Path::new("."));
    let tmp = scratch::file_in(dir, "blob")?;
    fs::copy(from, tmp.path()).at("copying a layer to", tmp.path())?;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(mode))
        .at("setting the mode of", tmp.path())?;
    tmp.persist(to).map_err(|e| Error::Io {
        op: "storing",
        path: to.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

fn write_atomic(dest: &Path, bytes: &[u8]) -> Result<()> {
    crate::image::write_file_atomic(dest, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_sees_content_rewrites_and_mode_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        fs::create_dir(d.join("bin")).unwrap();
        fs::write(d.join("bin/x"), b"one").unwrap();
        std::os::unix::fs::symlink("x", d.join("bin/y")).unwrap();
        let key = |d: &Path| {
            let mut m = Material::default();
            walk(&mut m, d, "").unwrap();
            hex::encode(m.hash.finalize())
        };
        let a = key(d);
        assert_eq!(a, key(d), "stable while nothing changes");
        // Same size, same mtime restored: ctime still moves.
        let mtime = fs::metadata(d.join("bin/x")).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(d.join("bin/x"), b"two").unwrap();
        fs::File::options()
            .write(true)
            .open(d.join("bin/x"))
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let b = key(d);
        assert_ne!(a, b);
        fs::set_permissions(d.join("bin/x"), fs::Permissions::from_mode(0o755)).unwrap();
        assert_ne!(b, key(d));
    }
}
