//! The read side of every image store: a [`Source`] is opened once from a location (an `oci:`
//! layout, an `oci-archive:`, a registry) and answers the same questions whatever it is:
//! resolve the reference to its root document, read a manifest or index by descriptor, read a
//! config, and hand over a blob verified against its descriptor. The transfer moves images out
//! of it, and `inspect` reads manifests and configs from it without touching a layer.

use std::path::{Path, PathBuf};

use super::scratch;
use crate::error::{Error, IoContext, Result};
use crate::oci::layout::Layout;
use crate::oci::{self, Descriptor};
use crate::registry::{Reference, RegistryClient, RegistryOptions};
use crate::transport::Location;

/// A manifest or index as its raw bytes.
pub struct Doc {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: String,
}

/// An opened image store to read from.
// One value per command: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Source {
    Layout {
        layout: Layout,
        tag: Option<String>,
        /// In a layout that names images by whole reference (an air-gap bundle:
        /// `registry/repo:tag`), the repository tags such as `sha256-HEX.sig` belong to.
        repository: Option<String>,
    },
    Registry {
        client: RegistryClient,
        reference: Reference,
    },
}

impl Source {
    /// Open `oci:`, `oci-archive:` or a registry reference; `None` for locations that hold no
    /// image store (a directory, a tarball).
    pub fn open(loc: &Location, options: &RegistryOptions) -> Result<Option<Source>> {
        Ok(Some(match loc {
            Location::Oci { dir, tag } => Source::Layout {
                layout: Layout::open(dir)?,
                tag: tag.clone(),
                repository: None,
            },
            // Read where it lies: each blob is a range of the archive, nothing is unpacked.
            Location::OciArchive { file, tag } => Source::Layout {
                layout: Layout::in_tar(file)?,
                tag: tag.clone(),
                repository: None,
            },
            Location::Registry(r) => {
                let reference = Reference::parse(r)?;
                let client = RegistryClient::new(options, &reference.registry)?;
                Source::Registry { client, reference }
            }
            _ => return Ok(None),
        }))
    }

    /// The document the reference names (a tag, a digest, or a layout's only image).
    pub fn root(&self) -> Result<Doc> {
        match self {
            Source::Layout { layout, tag, .. } => {
                let desc = layout.resolve(tag.as_deref())?;
                self.manifest(&desc)
            }
            Source::Registry { client, reference } => {
                let m =
                    client.get_manifest(&reference.repository, reference.tag_or_digest(), &[])?;
                Ok(Doc {
                    bytes: m.bytes,
                    media_type: m.media_type,
                    digest: m.digest,
                })
            }
        }
    }

    /// The manifest tagged `tag` (a signature tag such as `sha256-HEX.sig`), if there is one:
    /// in a registry by its tag, in a layout or archive by an `index.json` entry of that name.
    /// `accept` is the media type asked for.
    pub fn tagged(&self, tag: &str, accept: &str) -> Result<Option<Doc>> {
        match self {
            Source::Layout {
                layout, repository, ..
            } => {
                let index = layout.index()?;
                let name = match repository {
                    Some(repo) => format!("{repo}:{tag}"),
                    None => tag.to_string(),
                };
                match index
                    .manifests
                    .iter()
                    .find(|d| d.ref_name() == Some(name.as_str()))
                {
                    Some(d) => self.manifest(d).map(Some),
                    None => Ok(None),
                }
            }
            Source::Registry { client, reference } => {
                match client.get_manifest(&reference.repository, tag, &[accept]) {
                    Ok(m) => Ok(Some(Doc {
                        bytes: m.bytes,
                        media_type: m.media_type,
                        digest: m.digest,
                    })),
                    Err(e) if e.is_not_found() => Ok(None),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// A manifest or index by descriptor, verified against its digest and size cap.
    pub fn manifest(&self, desc: &Descriptor) -> Result<Doc> {
        match self {
            Source::Layout { layout, .. } => {
                let bytes = layout.read_document(&desc.digest)?;
                let media_type =
                    oci::sniff_media_type(&bytes).unwrap_or_else(|| desc.media_type.clone());
                Ok(Doc {
                    bytes,
                    media_type,
                    digest: desc.digest.to_string(),
                })
            }
            Source::Registry { client, reference } => {
                let m = client.get_manifest(
                    &reference.repository,
                    desc.digest.as_str(),
                    &[desc.media_type.as_str()],
                )?;
                Ok(Doc {
                    bytes: m.bytes,
                    media_type: m.media_type,
                    digest: m.digest,
                })
            }
        }
    }

    /// The bytes of a config blob (configs are blobs, not manifests, in a registry), verified.
    pub fn config(&self, desc: &Descriptor) -> Result<Vec<u8>> {
        match self {
            Source::Layout { layout, .. } => layout.read_document(&desc.digest),
            Source::Registry { client, reference } => {
                let dir = scratch::dir("config")?;
                let path = dir.path().join("config");
                client.fetch_blob(
                    &reference.repository,
                    desc.digest.as_str(),
                    Some(desc.size),
                    &path,
                )?;
                std::fs::read(&path).at("reading", &path)
            }
        }
    }

    /// A small blob's verified bytes (signature payloads, attestations); refused above `max`
    /// bytes before anything is read. `Ok(None)` when the blob does not match its descriptor
    /// (a tampered payload is a finding for the caller, not a failure of the store).
    pub fn small_blob(&self, desc: &Descriptor, max: u64) -> Result<Option<Vec<u8>>> {
        if desc.size > max {
            return Err(Error::input(format!(
                "blob `{}` has {} bytes, more than the {max} allowed here",
                desc.digest, desc.size
            )));
        }
        match self {
            Source::Layout { layout, .. } => {
                let mut r = match layout.open_blob(desc) {
                    Ok(r) => r,
                    Err(e) if e.exit_kind() == crate::error::ExitKind::User => {
                        tracing::debug!("blob `{}` refused: {e}", desc.digest);
                        return Ok(None);
                    }
                    Err(e) => return Err(e),
                };
                let mut out = Vec::new();
                match std::io::Read::read_to_end(&mut r, &mut out) {
                    Ok(_) => Ok(Some(out)),
                    Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                        tracing::debug!("blob `{}` refused: {e}", desc.digest);
                        Ok(None)
                    }
                    Err(e) => Err(Error::Io {
                        op: "reading",
                        path: layout.blob_path(&desc.digest),
                        source: e,
                    }),
                }
            }
            Source::Registry { client, reference } => {
                let dir = scratch::dir("blob")?;
                let path = dir.path().join("blob");
                // Checked against the digest as it downloads.
                match client.fetch_blob(
                    &reference.repository,
                    desc.digest.as_str(),
                    Some(desc.size),
                    &path,
                ) {
                    Ok(()) => std::fs::read(&path).at("reading", &path).map(Some),
                    Err(e) if e.exit_kind() == crate::error::ExitKind::User => {
                        tracing::debug!("blob `{}` refused: {e}", desc.digest);
                        Ok(None)
                    }
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// A blob as a stream for one pass, checked against its descriptor as it is read (the check
    /// at EOF runs only if the reader is read to its end). A registry's blob comes straight
    /// from the answer, nothing written to disk (`registry::BlobStream`); a layout's or
    /// archive's from its file.
    pub fn open_blob(&self, desc: &Descriptor) -> Result<Box<dyn std::io::Read + Send + '_>> {
        match self {
            Source::Layout { layout, .. } => Ok(Box::new(layout.open_blob(desc)?)),
            Source::Registry { client, reference } => Ok(Box::new(client.open_blob(
                &reference.repository,
                desc.digest.as_str(),
                desc.size,
            )?)),
        }
    }

    /// Read a layout's blob through and check it against its descriptor: the error says what
    /// is wrong with it (nothing to check for a registry, which verified it as it sent it).
    pub fn check_blob(&self, desc: &Descriptor) -> Result<()> {
        match self {
            Source::Layout { layout, .. } => {
                let mut r = layout.open_blob(desc)?;
                std::io::copy(&mut r, &mut std::io::sink()).map_err(|e| match e.kind() {
                    std::io::ErrorKind::InvalidData => {
                        Error::input(format!("in `{}`: {e}", layout.root().display()))
                    }
                    _ => Error::Io {
                        op: "reading",
                        path: layout.blob_path(&desc.digest),
                        source: e,
                    },
                })?;
                Ok(())
            }
            Source::Registry { .. } => Ok(()),
        }
    }

    /// Where a blob's bytes are, to send them: `(file, offset, downloaded)`. A layout's own
    /// file (or its range of the tar a tar-carried layout is), its size checked but its bytes
    /// not: a push streams them once and the registry checks their digest, and
    /// [`Source::check_blob`] names the damage when it refuses them. A registry's blob is
    /// downloaded into `scratch`, verified as it arrives.
    pub fn blob_file(&self, desc: &Descriptor, scratch: &Path) -> Result<(PathBuf, u64, bool)> {
        match self {
            Source::Layout { layout, .. } => {
                layout.open_blob_file(desc)?;
                let (file, offset) = layout
                    .blob_range(&desc.digest)
                    .unwrap_or_else(|| (layout.blob_path(&desc.digest), 0));
                Ok((file, offset, false))
            }
            Source::Registry { client, reference } => {
                let path = scratch.join(desc.digest.hex());
                client.fetch_blob(
                    &reference.repository,
                    desc.digest.as_str(),
                    Some(desc.size),
                    &path,
                )?;
                Ok((path, 0, true))
            }
        }
    }
}
