//! Signatures travel with their images: after `copy` has written an image, the signature
//! manifests of its digests (`sha256-HEX.sig`, for the root and each child) are copied from the
//! source to the destination, bytes unchanged, so they still verify there. A signature tag names
//! a digest, not a repository, so it stays valid in any repository and registry. In an OCI
//! layout a signature manifest is an `index.json` entry tagged `sha256-HEX.sig`, as skopeo and
//! cosign's layout support store it.

use std::path::Path;

use crate::error::{Error, IoContext, Result};
use crate::oci::layout::Layout;
use crate::oci::{self, Descriptor, Digest, Manifest};
use crate::registry::{BlobSource, Reference, RegistryClient, RegistryOptions};
use crate::store::scratch;
use crate::transport::Location;

use super::cosign::{signature_tag, MANIFEST_MEDIA_TYPE, MAX_BLOB};

/// Where signatures are read from or written to.
#[allow(clippy::large_enum_variant)]
enum End {
    Registry {
        client: RegistryClient,
        reference: Reference,
    },
    Layout {
        layout: Layout,
    },
}

impl End {
    fn open(loc: &Location, options: &RegistryOptions, writing: bool) -> Result<Option<End>> {
        Ok(Some(match loc {
            Location::Registry(r) => {
                let reference = Reference::parse(r)?;
                let client = RegistryClient::new(options, &reference.registry)?;
                End::Registry { client, reference }
            }
            // Without a tag the copied image is the layout's only tagged entry for readers that
            // name none; a signature tag beside it would make that ambiguous.
            Location::Oci { tag: None, .. } if writing => {
                tracing::warn!(
                    "signatures are kept in a layout only when the destination names a tag"
                );
                return Ok(None);
            }
            Location::Oci { dir, .. } => End::Layout {
                layout: Layout::open(dir)?,
            },
            // Archives hold no signatures talext could read without unpacking them a second
            // time, and one being written is already packed.
            _ => return Ok(None),
        }))
    }

    /// The signature manifest tagged `tag`, if there is one.
    fn manifest(&self, tag: &str) -> Result<Option<Vec<u8>>> {
        match self {
            End::Registry { client, reference } => {
                match client.get_manifest(&reference.repository, tag, &[MANIFEST_MEDIA_TYPE]) {
                    Ok(m) => Ok(Some(m.bytes)),
                    Err(e) if e.is_not_found() => Ok(None),
                    Err(e) => Err(e.into()),
                }
            }
            End::Layout { layout, .. } => {
                let index = layout.index()?;
                match index.manifests.iter().find(|d| d.ref_name() == Some(tag)) {
                    Some(d) => Ok(Some(layout.read_document(&d.digest)?)),
                    None => Ok(None),
                }
            }
        }
    }

    /// A blob's verified bytes (signature blobs are small).
    fn blob(&self, desc: &Descriptor, scratch: &Path) -> Result<Vec<u8>> {
        if desc.size > MAX_BLOB {
            return Err(Error::input(format!(
                "signature blob `{}` has {} bytes; refused",
                desc.digest, desc.size
            )));
        }
        match self {
            End::Registry { client, reference } => {
                let path = scratch.join(desc.digest.hex());
                client.fetch_blob(
                    &reference.repository,
                    desc.digest.as_str(),
                    Some(desc.size),
                    &path,
                )?;
                std::fs::read(&path).at("reading", &path)
            }
            End::Layout { layout, .. } => {
                let mut r = layout.open_blob(desc)?;
                let mut out = Vec::new();
                std::io::Read::read_to_end(&mut r, &mut out)
                    .map_err(|e| Error::input(format!("in `{}`: {e}", layout.root().display())))?;
                Ok(out)
            }
        }
    }

    fn put_blob(&self, bytes: &[u8]) -> Result<()> {
        let digest = Digest::of(bytes);
        match self {
            End::Registry { client, reference } => {
                client.push_blob(
                    &reference.repository,
                    digest.as_str(),
                    bytes.len() as u64,
                    BlobSource::Bytes(bytes),
                    None,
                )?;
            }
            End::Layout { layout, .. } => {
                layout.put_bytes(bytes)?;
            }
        }
        Ok(())
    }

    fn put_manifest(&self, tag: &str, bytes: &[u8]) -> Result<()> {
        match self {
            End::Registry { client, reference } => {
                client.put_manifest(&reference.repository, tag, bytes, MANIFEST_MEDIA_TYPE)?;
            }
            End::Layout { layout, .. } => {
                let digest = layout.put_bytes(bytes)?;
                let mut desc = Descriptor::new(MANIFEST_MEDIA_TYPE, digest, bytes.len() as u64);
                desc.annotations
                    .insert(oci::ANN_REF_NAME.to_string(), tag.to_string());
                layout.update_index(|idx| {
                    idx.manifests.retain(|d| d.ref_name() != Some(tag));
                    idx.manifests.push(desc);
                    Ok(())
                })?;
            }
        }
        Ok(())
    }
}

/// Copy the signature manifests of `digests` from `src` to `dst`; returns how many were
/// copied. Only registries and `oci:` layouts hold signatures; other locations copy none.
pub fn carry(
    src: &Location,
    dst: &Location,
    digests: &[String],
    src_options: &RegistryOptions,
    dst_options: &RegistryOptions,
) -> Result<usize> {
    let (Some(from), Some(to)) = (
        End::open(src, src_options, false)?,
        End::open(dst, dst_options, true)?,
    ) else {
        return Ok(0);
    };
    let scratch = scratch::dir("copy")?;
    let mut copied = 0;
    for digest in digests {
        let tag = signature_tag(digest)?;
        let Some(bytes) = from.manifest(&tag)? else {
            continue;
        };
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| Error::input(format!("signature manifest `{tag}` is not valid: {e}")))?;
        for desc in std::iter::once(&manifest.config).chain(&manifest.layers) {
            let blob = from.blob(desc, scratch.path())?;
            to.put_blob(&blob)?;
        }
        to.put_manifest(&tag, &bytes)?;
        tracing::info!("copied the signatures of `{digest}` (`{tag}`)");
        copied += 1;
    }
    Ok(copied)
}
