//! An OCI image layout directory (image-spec `image-layout.md`): `oci-layout`, `index.json` and
//! content-addressed `blobs/<alg>/<hex>`, as a store other processes may share.
//!
//! - Blobs are written to a temporary file inside the layout and renamed into place once their
//!   digest is known, so a reader never sees a partial blob.
//! - `index.json` is changed only by [`Layout::update_index`]: read, modify and replace under an
//!   exclusive lock on the layout directory (`crate::store::lock`), so concurrent writers (two
//!   platforms pulling into the source cache, CI jobs building into one layout) never lose each
//!   other's entries.
//! - Every read is verified and bounded: blobs, `index.json` and `oci-layout` are opened without
//!   following symlinks and only as regular files, documents are size-capped, and a blob read
//!   through [`Layout::open_blob`] hashes as it streams and fails at the first byte past its
//!   descriptor's size or at EOF when the digest differs (readers read to the end, so the check
//!   at EOF always runs).
//! - A new layout is assembled beside its destination and renamed into place by
//!   [`Target::commit`], so a failed write leaves no layout behind.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use tempfile::{NamedTempFile, TempDir};

use super::lock::Lock;
use super::scratch;
use crate::error::{Error, IoContext, Result};
use crate::oci::{Descriptor, Digest, HashingWriter, Index};

const LAYOUT_FILE: &str = "oci-layout";
const LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
/// Manifests, indexes and configs are small; refuse to read anything bigger into memory.
pub const MAX_DOCUMENT: u64 = 16 << 20;
/// `index.json` of a layout: generous (a cache of thousands of images), but bounded.
pub const MAX_INDEX: u64 = 64 << 20;

#[derive(Debug, Clone)]
pub struct Layout {
    /// The layout's directory; for a layout read in place from a tar, the tar file.
    root: PathBuf,
    /// Set when the layout is the content of a tar (an oci-archive, a bundle) read where it
    /// lies: each file's place in the tar, so nothing is unpacked.
    tar: Option<std::sync::Arc<TarEntries>>,
}

/// Where each regular file of a tar-carried layout lies in the tar: path → (offset, size).
#[derive(Debug)]
pub struct TarEntries {
    entries: std::collections::HashMap<String, (u64, u64)>,
}

impl TarEntries {
    fn get(&self, rel: &str) -> Option<(u64, u64)> {
        self.entries.get(rel).copied()
    }
}

/// Open `path` for reading only if it is a regular file (not a symlink, FIFO or device).
pub fn open_regular(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        // Never follow a symlink out of the store, never block on a FIFO.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::new(io::ErrorKind::InvalidData, "is a symbolic link")
            } else {
                e
            }
        })?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "is not a regular file",
        ));
    }
    Ok(f)
}

/// Read a small regular file, refusing one larger than `cap`.
pub fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>> {
    let f = open_regular(path).map_err(|e| refuse(path, e))?;
    let mut buf = Vec::new();
    f.take(cap + 1).read_to_end(&mut buf).at("reading", path)?;
    if buf.len() as u64 > cap {
        return Err(Error::input(format!(
            "`{}` is larger than {cap} bytes; refused",
            path.display()
        )));
    }
    Ok(buf)
}

/// A refused or missing file in a store: not found and "not a regular file" are the input's
/// fault (exit 1); other I/O failures are the environment's.
fn refuse(path: &Path, e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::InvalidData => Error::input(format!("`{}` {e}; refused", path.display())),
        _ => Error::Io {
            op: "opening",
            path: path.to_path_buf(),
            source: e,
        },
    }
}

impl Layout {
    /// Open an existing layout: `oci-layout` and `index.json` must be present, regular files.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let marker = root.join(LAYOUT_FILE);
        if !marker.symlink_metadata().is_ok_and(|m| m.is_file()) {
            return Err(Error::input_hint(
                format!("`{}` is not an OCI image layout (no `{LAYOUT_FILE}` file)", root.display()),
                "give a directory written by `talext build --output oci:DIR`, `skopeo copy … oci:DIR` or `crane pull --format=oci`",
            ));
        }
        for dir in ["blobs", "blobs/sha256"] {
            let p = root.join(dir);
            if let Ok(m) = p.symlink_metadata() {
                if !m.is_dir() {
                    return Err(Error::input(format!(
                        "`{}` is not a directory (a symbolic link out of the layout?); refused",
                        p.display()
                    )));
                }
            }
        }
        let layout = Layout { root, tar: None };
        layout.index()?;
        Ok(layout)
    }

    /// Open a layout, creating an empty one when the directory does not exist or is empty.
    /// The new layout is assembled beside `root` and renamed into place, so a concurrent
    /// creator (two platforms pulling into one cache) never sees half of one.
    pub fn open_or_create(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        if root.join(LAYOUT_FILE).exists() {
            return Self::open(root);
        }
        check_empty(&root)?;
        let (staged, tmp) = Self::stage(&root)?;
        let staged_root = staged.root.clone();
        let _ = tmp.keep();
        match fs::rename(&staged_root, &root) {
            Ok(()) => Ok(Layout { root, tar: None }),
            Err(e) => {
                let _ = fs::remove_dir_all(&staged_root);
                if root.join(LAYOUT_FILE).exists() {
                    Self::open(root)
                } else {
                    Err(Error::Io {
                        op: "creating the layout",
                        path: root,
                        source: e,
                    })
                }
            }
        }
    }

    /// An empty layout in a scratch directory beside `root`, to be renamed onto it.
    fn stage(root: &Path) -> Result<(Layout, TempDir)> {
        let parent = parent_of(root);
        // Staged layouts of killed runs beside this destination go now.
        scratch::reclaim(&parent);
        let tmp = scratch::dir_in(&parent, "layout")?;
        fs::set_permissions(
            tmp.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .at("setting the mode of", tmp.path())?;
        fs::create_dir_all(tmp.path().join("blobs/sha256")).at("creating", tmp.path())?;
        let fresh = Layout {
            root: tmp.path().to_path_buf(),
            tar: None,
        };
        fresh.write_atomic(LAYOUT_FILE, LAYOUT_CONTENT)?;
        fresh.write_index(&Index::new(Some(crate::oci::MT_OCI_INDEX)))?;
        Ok((fresh, tmp))
    }

    /// A content-addressed blob directory that need not be a whole layout (the layer cache).
    pub(crate) fn at(root: &Path) -> Self {
        Layout {
            root: root.to_path_buf(),
            tar: None,
        }
    }

    /// The layout a tar carries (an oci-archive, an air-gap bundle), read where it lies: one
    /// pass over the tar's headers finds each file, and every later read seeks to it, so no
    /// copy is made. Only directories and regular files whose paths stay inside the layout are
    /// accepted; a file named twice, or an oversized `index.json`, is refused.
    pub fn in_tar(file: &Path) -> Result<Self> {
        let bad = |msg: String| {
            Error::input(format!(
                "`{}` is not a valid oci-archive: {msg}",
                file.display()
            ))
        };
        let f = open_regular(file).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::Io {
                op: "opening",
                path: file.to_path_buf(),
                source: e,
            },
            _ => Error::input(format!("`{}` {e}; refused", file.display())),
        })?;
        let total = f.metadata().at("reading", file)?.len();
        let mut archive = tar::Archive::new(io::BufReader::with_capacity(64 << 10, f));
        let mut entries = std::collections::HashMap::new();
        for entry in archive
            .entries_with_seek()
            .map_err(|e| bad(e.to_string()))?
        {
            let entry = entry.map_err(|e| bad(e.to_string()))?;
            let raw = entry
                .path()
                .map_err(|e| bad(e.to_string()))?
                .to_string_lossy()
                .into_owned();
            let rel = match crate::rootfs::classify_path(&raw) {
                crate::rootfs::Cleaned::Root => continue,
                crate::rootfs::Cleaned::Path(p) => p,
                crate::rootfs::Cleaned::Escapes => {
                    return Err(bad(format!(
                        "entry `{}` escapes the archive",
                        raw.escape_debug()
                    )))
                }
            };
            match entry.header().entry_type() {
                tar::EntryType::Directory => continue,
                tar::EntryType::Regular | tar::EntryType::Continuous => {}
                other => {
                    return Err(bad(format!(
                        "entry `{}` has unsupported type {other:?}",
                        raw.escape_debug()
                    )))
                }
            }
            // Sparse files and in-header extensions would move the data; plain entries only.
            if entry.header().as_gnu().is_some_and(|g| g.is_extended()) {
                return Err(bad(format!("entry `{}` is sparse", raw.escape_debug())));
            }
            let size = entry.size();
            let offset = entry.raw_file_position();
            if offset.checked_add(size).is_none_or(|end| end > total) {
                return Err(bad(format!("entry `{}` is truncated", raw.escape_debug())));
            }
            if ["index.json", LAYOUT_FILE].contains(&rel.as_str()) && size > MAX_INDEX {
                return Err(bad(format!(
                    "`{rel}` is larger than {MAX_INDEX} bytes; refused"
                )));
            }
            if entries.insert(rel, (offset, size)).is_some() {
                return Err(bad(format!("entry `{}` appears twice", raw.escape_debug())));
            }
        }
        if !entries.contains_key(LAYOUT_FILE) {
            return Err(bad(format!("it has no `{LAYOUT_FILE}` file")));
        }
        let layout = Layout {
            root: file.to_path_buf(),
            tar: Some(std::sync::Arc::new(TarEntries { entries })),
        };
        layout.index().map_err(|e| bad(e.to_string()))?;
        Ok(layout)
    }

    /// The file at `rel` of a tar-carried layout, opened at its first byte and limited to its
    /// size, with that size; `None` when the tar has no such file.
    fn tar_file(&self, tar: &TarEntries, rel: &str) -> Result<Option<(io::Take<File>, u64)>> {
        use std::io::{Seek, SeekFrom};
        let Some((offset, size)) = tar.get(rel) else {
            return Ok(None);
        };
        let mut f = open_regular(&self.root).map_err(|e| refuse(&self.root, e))?;
        f.seek(SeekFrom::Start(offset)).at("reading", &self.root)?;
        Ok(Some((f.take(size), size)))
    }

    /// Where a blob's bytes lie in the tar of a tar-carried layout: `(tar, offset)`.
    pub fn blob_range(&self, digest: &Digest) -> Option<(PathBuf, u64)> {
        let tar = self.tar.as_ref()?;
        let rel = format!("blobs/{}/{}", digest.algorithm(), digest.hex());
        tar.get(&rel).map(|(offset, _)| (self.root.clone(), offset))
    }

    /// Whether the layout is read in place from a tar.
    pub fn is_tar(&self) -> bool {
        self.tar.is_some()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm())
            .join(digest.hex())
    }

    /// The size of a blob if the layout has it as a regular file.
    pub fn blob_size(&self, digest: &Digest) -> Option<u64> {
        if let Some(tar) = &self.tar {
            let rel = format!("blobs/{}/{}", digest.algorithm(), digest.hex());
            return tar.get(&rel).map(|(_, size)| size);
        }
        fs::symlink_metadata(self.blob_path(digest))
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    }

    /// Store bytes as a blob (no-op when present).
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of(bytes);
        if self.blob_size(&digest) == Some(bytes.len() as u64) {
            return Ok(digest);
        }
        let mut w = self.blob_writer()?;
        w.write_all(bytes).at("writing blob in", &self.root)?;
        w.commit(Some(&digest))?;
        Ok(digest)
    }

    /// A writer for a new blob; [`BlobWriter::commit`] renames it into place under its digest.
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        let dir = self.root.join("blobs/sha256");
        let tmp = scratch::file_in(&dir, "blob")?;
        Ok(BlobWriter {
            inner: HashingWriter::new(io::BufWriter::with_capacity(1 << 20, tmp)),
            layout: self.clone(),
        })
    }

    /// Open a blob as a regular file, checking its size against the descriptor's, for a reader
    /// that streams it whole elsewhere and verifies the digest itself (a registry push, a
    /// [`BlobWriter`] committing with `expected`).
    pub fn open_blob_file(&self, desc: &Descriptor) -> Result<(io::Take<File>, PathBuf)> {
        let p = self.blob_path(&desc.digest);
        if let Some(tar) = &self.tar {
            let rel = format!("blobs/{}/{}", desc.digest.algorithm(), desc.digest.hex());
            let Some((f, len)) = self.tar_file(tar, &rel)? else {
                return Err(Error::input(format!(
                    "blob `{}` is missing from the layout `{}`",
                    desc.digest,
                    self.root.display()
                )));
            };
            if len != desc.size {
                return Err(Error::input(format!(
                    "blob `{}` in `{}` has {len} bytes where its descriptor says {}",
                    desc.digest,
                    self.root.display(),
                    desc.size
                )));
            }
            return Ok((f, p));
        }
        let f = open_regular(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::input(format!(
                    "blob `{}` is missing from the layout `{}`",
                    desc.digest,
                    self.root.display()
                ))
            } else {
                refuse(&p, e)
            }
        })?;
        let len = f.metadata().at("reading", &p)?.len();
        if len != desc.size {
            return Err(Error::input(format!(
                "blob `{}` in `{}` has {len} bytes where its descriptor says {}",
                desc.digest,
                self.root.display(),
                desc.size
            )));
        }
        Ok((f.take(u64::MAX), p))
    }

    /// Open a blob for streaming: the reader counts and hashes every byte, fails at the first
    /// byte past the descriptor's size, and at EOF when the size or digest differs. The check
    /// at EOF runs only if the reader is read to its end, so every caller does (a copy does by
    /// nature; flattening drains each layer after its tar's end-of-archive marker).
    pub fn open_blob(&self, desc: &Descriptor) -> Result<BlobReader> {
        let (f, path) = self.open_blob_file(desc)?;
        Ok(BlobReader::new(f, desc, path))
    }

    /// Read a small blob (manifest, index, config) and check its digest.
    pub fn read_document(&self, digest: &Digest) -> Result<Vec<u8>> {
        let p = self.blob_path(digest);
        let missing = || {
            Error::input(format!(
                "blob `{digest}` is missing from the layout `{}`",
                self.root.display()
            ))
        };
        let f: Box<dyn Read> = match &self.tar {
            Some(tar) => {
                let rel = format!("blobs/{}/{}", digest.algorithm(), digest.hex());
                match self.tar_file(tar, &rel)? {
                    Some((f, _)) => Box::new(f),
                    None => return Err(missing()),
                }
            }
            None => Box::new(open_regular(&p).map_err(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    missing()
                } else {
                    refuse(&p, e)
                }
            })?),
        };
        let mut buf = Vec::new();
        f.take(MAX_DOCUMENT + 1)
            .read_to_end(&mut buf)
            .at("reading", &p)?;
        if buf.len() as u64 > MAX_DOCUMENT {
            return Err(Error::input(format!(
                "blob `{digest}` in `{}` is too large to be a manifest or config",
                self.root.display()
            )));
        }
        let actual = Digest::of(&buf);
        if &actual != digest {
            return Err(Error::input(format!(
                "blob `{digest}` in `{}` is corrupt: its content hashes to `{actual}`",
                self.root.display()
            )));
        }
        Ok(buf)
    }

    pub fn index(&self) -> Result<Index> {
        let p = self.root.join("index.json");
        let bytes = match &self.tar {
            Some(tar) => {
                let Some((f, _)) = self.tar_file(tar, "index.json")? else {
                    return Err(Error::input(format!(
                        "`{}` has no `index.json`",
                        self.root.display()
                    )));
                };
                let mut buf = Vec::new();
                f.take(MAX_INDEX)
                    .read_to_end(&mut buf)
                    .at("reading", &self.root)?;
                buf
            }
            None => read_capped(&p, MAX_INDEX)?,
        };
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::input(format!("`{}` is not a valid OCI index: {e}", p.display())))
    }

    /// Read, change and replace `index.json` under the layout's lock: the only way entries are
    /// added or removed, so concurrent writers keep each other's.
    pub fn update_index<T>(&self, f: impl FnOnce(&mut Index) -> Result<T>) -> Result<T> {
        let _lock = Lock::exclusive(&self.root)?;
        let mut index = self.index()?;
        let out = f(&mut index)?;
        self.write_index(&index)?;
        Ok(out)
    }

    /// Replace `index.json` outright; only for a layout nobody else can see yet.
    fn write_index(&self, index: &Index) -> Result<()> {
        let bytes = serde_json::to_vec(index).map_err(|e| Error::internal(e.to_string()))?;
        self.write_atomic("index.json", &bytes)
    }

    /// Find the `index.json` entry named `tag` (annotation `org.opencontainers.image.ref.name`).
    /// Without a tag, the layout must hold exactly one tagged entry, or exactly one entry.
    pub fn resolve(&self, tag: Option<&str>) -> Result<Descriptor> {
        let index = self.index()?;
        let where_ = self.root.display();
        match tag {
            Some(t) => index
                .manifests
                .iter()
                .find(|d| d.ref_name() == Some(t))
                .cloned()
                .ok_or_else(|| {
                    let tags: Vec<&str> = index
                        .manifests
                        .iter()
                        .filter_map(|d| d.ref_name())
                        .collect();
                    Error::input_hint(
                        format!("no image tagged `{t}` in the layout `{where_}`"),
                        if tags.is_empty() {
                            "the layout has no tagged images".to_string()
                        } else {
                            format!("tags present: {}", tags.join(", "))
                        },
                    )
                }),
            None => {
                // Signature and attestation tags (`sha256-<hex>.sig`, cosign's forms) ride along
                // with an image; they are not a second image to choose between.
                let images: Vec<&Descriptor> = index
                    .manifests
                    .iter()
                    .filter(|d| !d.ref_name().is_some_and(is_signature_tag))
                    .collect();
                let tagged: Vec<&Descriptor> = images
                    .iter()
                    .copied()
                    .filter(|d| d.ref_name().is_some())
                    .collect();
                match (tagged.len(), images.len()) {
                    (1, _) => Ok(tagged[0].clone()),
                    (0, 1) => Ok(images[0].clone()),
                    (0, 0) => Err(Error::input(format!(
                        "the layout `{where_}` holds no images"
                    ))),
                    _ => Err(Error::input_hint(
                        format!("the layout `{where_}` holds several images; name one with `:TAG`"),
                        format!(
                            "tags present: {}",
                            tagged
                                .iter()
                                .filter_map(|d| d.ref_name())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )),
                }
            }
        }
    }

    fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let dest = self.root.join(name);
        let mut tmp = scratch::file_in(&self.root, "index")?;
        tmp.write_all(bytes).at("writing", &dest)?;
        tmp.as_file()
            .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .at("setting the mode of", &dest)?;
        tmp.as_file().sync_all().at("syncing", &dest)?;
        tmp.persist(&dest).map_err(|e| Error::Io {
            op: "replacing",
            path: dest.clone(),
            source: e.error,
        })?;
        Ok(())
    }
}

/// Move every blob of `from` that `into` lacks (a rename each, or a copy across file systems).
pub fn move_blobs(from: &Layout, into: &Layout) -> Result<()> {
    {
        let dir = from.root.join("blobs/sha256");
        let dest = into.root.join("blobs/sha256");
        fs::create_dir_all(&dest).at("creating", &dest)?;
        for entry in fs::read_dir(&dir).at("reading", &dir)? {
            let entry = entry.at("reading", &dir)?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let to = dest.join(&name);
            if to.symlink_metadata().is_ok_and(|m| m.is_file()) {
                continue;
            }
            if fs::rename(entry.path(), &to).is_err() {
                let tmp = scratch::file_in(&dest, "blob")?;
                fs::copy(entry.path(), tmp.path()).at("copying a blob to", &to)?;
                tmp.as_file()
                    .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
                    .at("setting the mode of", &to)?;
                tmp.persist(&to).map_err(|e| Error::Io {
                    op: "storing blob",
                    path: to.clone(),
                    source: e.error,
                })?;
            }
        }
        Ok(())
    }
}

/// cosign's tag forms for what belongs to `sha256:<hex>`: `.sig`, `.att`, `.sbom`, or bare (the
/// referrers-tag fallback).
pub fn is_signature_tag(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("sha256-") else {
        return false;
    };
    let hex = rest.split_once('.').map_or(rest, |(h, _)| h);
    let suffix_ok = matches!(
        rest.split_once('.').map(|(_, s)| s),
        None | Some("sig") | Some("att") | Some("sbom")
    );
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) && suffix_ok
}

/// The directory holding `p` (`.` for a bare name), where its temporary siblings go.
pub fn parent_of(p: &Path) -> PathBuf {
    match p.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn check_empty(root: &Path) -> Result<()> {
    if root.exists() && fs::read_dir(root).at("reading", root)?.next().is_some() {
        return Err(Error::input(format!(
            "`{}` exists, is not empty and is not an OCI image layout",
            root.display()
        )));
    }
    Ok(())
}

/// A layout being written as an output: blobs go into [`Target::layout`], and
/// [`Target::commit`] names them in `index.json`. An existing layout is written in place (blobs
/// are content-addressed, so extra ones harm nothing, and its `index.json` changes only at
/// commit, under its lock); a new one is staged beside the destination and appears only at
/// commit, so a write that fails leaves no destination behind.
pub struct Target {
    dest: PathBuf,
    layout: Layout,
    staged: Option<TempDir>,
}

impl Target {
    pub fn open(dest: &Path) -> Result<Target> {
        if dest.join(LAYOUT_FILE).exists() {
            return Ok(Target {
                dest: dest.to_path_buf(),
                layout: Layout::open(dest)?,
                staged: None,
            });
        }
        check_empty(dest)?;
        let (layout, tmp) = Layout::stage(dest)?;
        Ok(Target {
            dest: dest.to_path_buf(),
            layout,
            staged: Some(tmp),
        })
    }

    /// Where blobs and documents are written.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Apply `update` to `index.json` and publish: in place for an existing layout; for a new
    /// one by renaming the staged layout onto the destination, or, when another writer created
    /// the destination meanwhile, by moving the blobs into theirs and updating its index.
    pub fn commit<T>(
        self,
        update: impl Fn(&Layout, &mut Index) -> Result<T>,
    ) -> Result<(Layout, T)> {
        let Some(tmp) = self.staged else {
            let out = self.layout.update_index(|idx| update(&self.layout, idx))?;
            return Ok((self.layout, out));
        };
        let out = self.layout.update_index(|idx| update(&self.layout, idx))?;
        let staged_root = tmp.path().to_path_buf();
        match fs::rename(&staged_root, &self.dest) {
            Ok(()) => {
                let _ = tmp.keep();
                Ok((Layout::open(&self.dest)?, out))
            }
            Err(e) if self.dest.join(LAYOUT_FILE).exists() => {
                tracing::debug!(
                    "`{}` appeared meanwhile ({e}); merging",
                    self.dest.display()
                );
                let theirs = Layout::open(&self.dest)?;
                move_blobs(&self.layout, &theirs)?;
                let out = theirs.update_index(|idx| update(&theirs, idx))?;
                Ok((theirs, out))
            }
            Err(e) => Err(Error::Io {
                op: "moving the layout to",
                path: self.dest.clone(),
                source: e,
            }),
        }
    }
}

/// A blob being read from a layout: counts and hashes every byte, fails at the first byte past
/// the declared size, and at EOF when the size or digest is not the declared one.
pub struct BlobReader {
    file: io::Take<File>,
    hash: Sha256,
    want: Digest,
    size: u64,
    seen: u64,
    path: PathBuf,
}

impl BlobReader {
    fn new(file: io::Take<File>, desc: &Descriptor, path: PathBuf) -> Self {
        BlobReader {
            file,
            hash: Sha256::new(),
            want: desc.digest.clone(),
            size: desc.size,
            seen: 0,
            path,
        }
    }

    fn bad(&self, what: String) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("blob `{}` (`{}`) {what}", self.want, self.path.display()),
        )
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // One byte beyond the declared size is enough to know it is too long.
        let room = (self.size - self.seen.min(self.size)) as usize + 1;
        let len = buf.len().min(room);
        let n = self.file.read(&mut buf[..len])?;
        if n == 0 && !buf.is_empty() {
            if self.seen != self.size {
                return Err(self.bad(format!(
                    "ended after {} bytes, its descriptor says {}",
                    self.seen, self.size
                )));
            }
            let actual = hex::encode(self.hash.clone().finalize());
            if self.want.algorithm() == "sha256" && actual != self.want.hex() {
                return Err(self.bad(format!(
                    "is corrupt: its content hashes to `sha256:{actual}`"
                )));
            }
            return Ok(0);
        }
        self.seen += n as u64;
        if self.seen > self.size {
            return Err(self.bad(format!(
                "is longer than its descriptor's {} bytes",
                self.size
            )));
        }
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// A blob being written into a layout.
pub struct BlobWriter {
    inner: HashingWriter<io::BufWriter<NamedTempFile>>,
    layout: Layout,
}

impl BlobWriter {
    /// Finish the blob: check it against `expected` when given, then rename it into place.
    pub fn commit(self, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        let (digest, size, buf) = self.inner.finish();
        if let Some(want) = expected {
            if want != &digest {
                return Err(Error::input(format!(
                    "content does not match its digest: expected `{want}`, got `{digest}`"
                )));
            }
        }
        let tmp = buf
            .into_inner()
            .map_err(|e| Error::internal(format!("flushing a blob: {}", e.error())))?;
        let dest = self.layout.blob_path(&digest);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).at("creating", parent)?;
        }
        // Blobs are content, readable by whoever reads the layout (a temporary file is 0600).
        tmp.as_file()
            .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .at("setting the mode of", &dest)?;
        tmp.persist(&dest).map_err(|e| Error::Io {
            op: "storing blob",
            path: dest.clone(),
            source: e.error,
        })?;
        Ok((digest, size))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_tags_are_not_images() {
        let h = "a".repeat(64);
        assert!(is_signature_tag(&format!("sha256-{h}.sig")));
        assert!(is_signature_tag(&format!("sha256-{h}.att")));
        assert!(is_signature_tag(&format!("sha256-{h}")));
        assert!(!is_signature_tag(&format!("sha256-{h}.tar")));
        assert!(!is_signature_tag("sha256-abc.sig"));
        assert!(!is_signature_tag("v1.0"));
    }

    #[test]
    fn create_put_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::open_or_create(dir.path().join("l")).unwrap();
        let d = l.put_bytes(b"{}").unwrap();
        assert_eq!(l.read_document(&d).unwrap(), b"{}");
        // Readable by other tools, not the 0600 of a temporary file.
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(l.blob_path(&d)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        // Two creators racing for one directory both end up with the same layout.
        let shared = dir.path().join("shared");
        let (a, b) = std::thread::scope(|s| {
            let x = s.spawn(|| Layout::open_or_create(&shared).map(|l| l.root().to_path_buf()));
            let y = s.spawn(|| Layout::open_or_create(&shared).map(|l| l.root().to_path_buf()));
            (x.join().unwrap().unwrap(), y.join().unwrap().unwrap())
        });
        assert_eq!(a, b);
        let mut idx = l.index().unwrap();
        let mut desc = Descriptor::new(crate::oci::MT_OCI_MANIFEST, d.clone(), 2);
        desc.annotations
            .insert(crate::oci::ANN_REF_NAME.into(), "v1".into());
        idx.manifests.push(desc);
        l.write_index(&idx).unwrap();
        assert_eq!(l.resolve(Some("v1")).unwrap().digest, d);
        assert_eq!(l.resolve(None).unwrap().digest, d);
        assert!(l.resolve(Some("v2")).is_err());
        // corrupt blob detected
        fs::write(l.blob_path(&d), b"{ }").unwrap();
        assert!(l
            .read_document(&d)
            .unwrap_err()
            .to_string()
            .contains("corrupt"));
        let l2 = Layout::open(dir.path().join("l")).unwrap();
        assert!(l2.blob_size(&d).is_some());
        assert!(Layout::open(dir.path()).is_err());
    }
}
