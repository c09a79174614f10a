//! The write side of every image store: a [`Sink`] is an `oci:` layout or `oci-archive:` being
//! staged ([`super::Output`]) or a registry repository. Whatever it is, it takes blobs first,
//! then child manifests by digest, then the root with its name (a tag in a registry; the
//! `index.json` entries `build` writes, with any signature tags, in one atomic update in a
//! layout or archive), so no name ever points at something missing.

use std::path::Path;
use std::sync::Arc;

use super::source::{Doc, Source};
use super::Output;
use crate::error::{Error, IoContext, Result};
use crate::oci::{self, Descriptor, Manifest, Platform};
use crate::registry::{BlobSource, PushOutcome, Reference, RegistryClient, RegistryOptions};
use crate::transport::Location;

/// An opened image store to write into.
#[allow(clippy::large_enum_variant)]
pub enum Sink {
    /// An `oci:` layout or `oci-archive:`, published only by [`Sink::put_root`].
    Layout { out: Output, tag: Option<String> },
    Registry {
        /// Shared by the sinks of one command into one registry (a bundle's images), so they
        /// share its connections, its endpoint probe and its tokens.
        client: Arc<RegistryClient>,
        reference: Reference,
    },
}

/// Open `oci:`, `oci-archive:` or a registry reference for writing.
pub fn open(loc: &Location, options: &RegistryOptions) -> Result<Sink> {
    match loc {
        Location::Oci { .. } | Location::OciArchive { .. } => match Output::open(loc)? {
            Some((out, tag)) => Ok(Sink::Layout { out, tag }),
            None => Err(crate::transfer::unsupported(loc)),
        },
        Location::Registry(r) => {
            let reference = Reference::parse(r)?;
            let client = RegistryClient::new(options, &reference.registry)?;
            Ok(Sink::Registry {
                client: Arc::new(client),
                reference,
            })
        }
        other => Err(crate::transfer::unsupported(other)),
    }
}

/// A sink for `reference` through `client` when it is open to the reference's registry (else
/// a client of its own, from `options`).
pub fn registry(
    client: &Arc<RegistryClient>,
    reference: Reference,
    options: &RegistryOptions,
) -> Result<Sink> {
    let client = if client.registry() == reference.registry {
        client.clone()
    } else {
        Arc::new(RegistryClient::new(options, &reference.registry)?)
    };
    Ok(Sink::Registry { client, reference })
}

impl Sink {
    pub fn has_blob(&self, desc: &Descriptor) -> Result<bool> {
        match self {
            Sink::Layout { out, .. } => Ok(out.layout().blob_size(&desc.digest) == Some(desc.size)),
            Sink::Registry { client, reference } => Ok(client
                .blob_exists(&reference.repository, desc.digest.as_str())?
                .is_some()),
        }
    }

    /// Copy a blob; `false` when a registry destination turned out to have it already.
    pub fn put_blob(&self, desc: &Descriptor, src: &Source, scratch: &Path) -> Result<bool> {
        match (self, src) {
            // Registry to layout: download straight into the layout (verified, then renamed).
            (Sink::Layout { out, .. }, Source::Registry { client, reference }) => {
                let path = out.layout().blob_path(&desc.digest);
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).at("creating", dir)?;
                }
                client.fetch_blob(
                    &reference.repository,
                    desc.digest.as_str(),
                    Some(desc.size),
                    &path,
                )?;
            }
            (Sink::Layout { out, .. }, Source::Layout { layout: from, .. }) => {
                let mut w = out.layout().blob_writer()?;
                let mut f = from.open_blob(desc)?;
                std::io::copy(&mut f, &mut w).map_err(|e| match e.kind() {
                    // The source's bytes are not what its descriptor says.
                    std::io::ErrorKind::InvalidData => {
                        Error::input(format!("copying from `{}`: {e}", from.root().display()))
                    }
                    _ => Error::Io {
                        op: "copying a blob into",
                        path: out.layout().root().to_path_buf(),
                        source: e,
                    },
                })?;
                w.commit(Some(&desc.digest))?;
            }
            (Sink::Registry { client, reference }, src) => {
                let repo = &reference.repository;
                // Inside one registry the blob is linked, not sent (distribution spec
                // "Mounting a blob from another repository").
                if let Source::Registry {
                    client: from,
                    reference: from_ref,
                } = src
                {
                    if from.registry() == client.registry()
                        && client.mount_blob(repo, &from_ref.repository, desc.digest.as_str())?
                    {
                        return Ok(true);
                    }
                }
                // A layout's blob is read once, as it is sent (the registry checks its digest);
                // a registry's is downloaded, verified, first.
                let (file, offset, downloaded) = src.blob_file(desc, scratch)?;
                let pushed = client.push_blob(
                    repo,
                    desc.digest.as_str(),
                    desc.size,
                    if offset == 0 {
                        BlobSource::Path(&file)
                    } else {
                        BlobSource::Range(&file, offset)
                    },
                    None,
                );
                if downloaded {
                    let _ = std::fs::remove_file(&file);
                }
                return match pushed {
                    Ok(outcome) => Ok(outcome != PushOutcome::Existed),
                    Err(e) => {
                        // Refused: a damaged source blob is named as such.
                        src.check_blob(desc)?;
                        Err(e.into())
                    }
                };
            }
        }
        Ok(true)
    }

    /// Store a child manifest (by digest).
    pub fn put_manifest(&self, doc: &Doc) -> Result<()> {
        match self {
            Sink::Layout { out, .. } => {
                let stored = out.layout().put_bytes(&doc.bytes)?;
                debug_assert_eq!(stored.as_str(), doc.digest);
            }
            Sink::Registry { client, reference } => {
                client.put_manifest(
                    &reference.repository,
                    &doc.digest,
                    &doc.bytes,
                    &doc.media_type,
                )?;
            }
        }
        Ok(())
    }

    /// Store the top manifest or index and name it: the tag in a registry, or, in a layout or
    /// archive, the entries `build` writes (`crate::store::name_image`: the image under the tag,
    /// each platform manifest with its platform), published atomically.
    /// With it, `signed`: signature manifests (blobs already stored) under their tags, in the
    /// same `index.json` update as the image in a layout or archive, after the image's own tag
    /// in a registry.
    pub fn put_root(self, src: &Source, doc: &Doc, signed: &[(String, Doc)]) -> Result<()> {
        match self {
            Sink::Layout { out, tag } => {
                let digest = out.layout().put_bytes(&doc.bytes)?;
                let mut desc = Descriptor::new(&doc.media_type, digest, doc.bytes.len() as u64);
                if oci::is_manifest_type(&doc.media_type) {
                    desc.platform = Some(image_platform(src, doc)?);
                }
                let mut tagged = Vec::new();
                for (name, sig) in signed {
                    let digest = out.layout().put_bytes(&sig.bytes)?;
                    let mut d = Descriptor::new(&sig.media_type, digest, sig.bytes.len() as u64);
                    d.annotations
                        .insert(oci::ANN_REF_NAME.to_string(), name.clone());
                    tagged.push(d);
                }
                out.commit_tagged(&desc, tag.as_deref(), &tagged)
            }
            Sink::Registry { client, reference } => {
                let target = reference.tag_or_digest();
                if reference.digest.as_deref().is_some_and(|d| d != doc.digest) {
                    return Err(Error::input(format!(
                        "the destination names `{target}` but the image copied is `{}`",
                        doc.digest
                    )));
                }
                client.put_manifest(&reference.repository, target, &doc.bytes, &doc.media_type)?;
                for (name, sig) in signed {
                    client.put_manifest(
                        &reference.repository,
                        name,
                        &sig.bytes,
                        &sig.media_type,
                    )?;
                }
                Ok(())
            }
        }
    }

    /// Whether signature tags can be written here. In a layout without a tag the copied image
    /// is the only tagged entry readers that name none find; a signature tag beside it would
    /// make that ambiguous.
    pub fn holds_signatures(&self) -> bool {
        match self {
            Sink::Layout { tag: None, .. } => {
                tracing::warn!(
                    "signatures are kept in a layout or archive only when the destination names a tag"
                );
                false
            }
            _ => true,
        }
    }
}

/// The platform an image manifest's config declares.
pub fn image_platform(src: &Source, doc: &Doc) -> Result<Platform> {
    let manifest: Manifest = serde_json::from_slice(&doc.bytes)
        .map_err(|e| Error::input(format!("manifest `{}` is not valid: {e}", doc.digest)))?;
    let config: oci::types::ConfigSummary = serde_json::from_slice(&src.config(&manifest.config)?)
        .map_err(|e| {
            Error::input(format!(
                "config `{}` is not valid: {e}",
                manifest.config.digest
            ))
        })?;
    Ok(Platform {
        architecture: config.architecture,
        os: config.os,
        os_version: None,
        variant: config.variant,
    })
}
