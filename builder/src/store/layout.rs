//! An OCI image layout directory (image-spec `image-layout.md`): `oci-layout`, `index.json` and
//! content-addressed `blobs/<alg>/<hex>`. Blobs are written to a temporary file inside the
//! layout and renamed into place once their digest is known, so a reader never sees a partial
//! blob; `index.json` is replaced atomically the same way.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use super::{Descriptor, Digest, HashingWriter, Index};
use crate::error::{Error, IoContext, Result};

const LAYOUT_FILE: &str = "oci-layout";
const LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
/// Manifests, indexes and configs are small; refuse to read anything bigger into memory.
pub const MAX_DOCUMENT: u64 = 16 << 20;

#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// Open an existing layout: `oci-layout` and `index.json` must be present.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let marker = root.join(LAYOUT_FILE);
        if !marker.is_file() {
            return Err(Error::input_hint(
                format!("`{}` is not an OCI image layout (no `{LAYOUT_FILE}` file)", root.display()),
                "give a directory written by `talext build --output oci:DIR`, `skopeo copy … oci:DIR` or `crane pull --format=oci`",
            ));
        }
        let layout = Layout { root };
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
        if root.exists() && fs::read_dir(&root).at("reading", &root)?.next().is_some() {
            return Err(Error::input(format!(
                "`{}` exists, is not empty and is not an OCI image layout",
                root.display()
            )));
        }
        let parent = match root.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).at("creating", &parent)?;
        let tmp = tempfile::Builder::new()
            .prefix(".talext-layout-")
            .tempdir_in(&parent)
            .at("creating a temporary directory in", &parent)?;
        fs::create_dir_all(tmp.path().join("blobs/sha256")).at("creating", tmp.path())?;
        let fresh = Layout {
            root: tmp.path().to_path_buf(),
        };
        fresh.write_atomic(LAYOUT_FILE, LAYOUT_CONTENT)?;
        fresh.write_index(&Index::new(Some(super::MT_OCI_INDEX)))?;
        // Renaming onto a missing or empty directory succeeds; if another creator got there
        // first the target is not empty and theirs is used.
        let staged = tmp.keep();
        fs::set_permissions(&staged, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .at("setting the mode of", &staged)?;
        match fs::rename(&staged, &root) {
            Ok(()) => Ok(Layout { root }),
            Err(e) => {
                let _ = fs::remove_dir_all(&staged);
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

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm())
            .join(digest.hex())
    }

    /// The size of a blob if the layout has it.
    pub fn blob_size(&self, digest: &Digest) -> Option<u64> {
        fs::metadata(self.blob_path(digest))
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
        fs::create_dir_all(&dir).at("creating", &dir)?;
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&dir)
            .at("creating a temporary blob in", &dir)?;
        Ok(BlobWriter {
            inner: HashingWriter::new(io::BufWriter::with_capacity(1 << 20, tmp)),
            layout: self.clone(),
        })
    }

    /// Open a blob for streaming.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let p = self.blob_path(digest);
        File::open(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::input(format!(
                    "blob `{digest}` is missing from the layout `{}`",
                    self.root.display()
                ))
            } else {
                Error::Io {
                    op: "opening",
                    path: p,
                    source: e,
                }
            }
        })
    }

    /// Read a small blob (manifest, index, config) and check its digest.
    pub fn read_document(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.open_blob(digest)?
            .take(MAX_DOCUMENT + 1)
            .read_to_end(&mut buf)
            .at("reading", self.blob_path(digest))?;
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
        let bytes = fs::read(&p).at("reading", &p)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::input(format!("`{}` is not a valid OCI index: {e}", p.display())))
    }

    pub fn write_index(&self, index: &Index) -> Result<()> {
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
                let tagged: Vec<&Descriptor> = index
                    .manifests
                    .iter()
                    .filter(|d| d.ref_name().is_some())
                    .collect();
                match (tagged.len(), index.manifests.len()) {
                    (1, _) => Ok(tagged[0].clone()),
                    (0, 1) => Ok(index.manifests[0].clone()),
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
        let mut tmp =
            NamedTempFile::new_in(&self.root).at("creating a temporary file in", &self.root)?;
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
        let mut desc = Descriptor::new(super::super::MT_OCI_MANIFEST, d.clone(), 2);
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
