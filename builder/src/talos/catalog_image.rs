//! The catalog packed as an image and written where the factory can pull it: an OCI layout, an
//! OCI archive, or a registry (`docker://`), through the shared image writer and registry
//! client. The content itself comes from [`super::catalog`].

use crate::error::{Error, Result};
use crate::image;
use crate::oci::layout::Layout;
use crate::oci::{self, Manifest, Platform};
use crate::registry::client::BlobSource;
use crate::registry::reference::Reference;
use crate::registry::{RegistryClient, RegistryOptions};
use crate::rootfs::Tree;

/// Write the catalog into `layout` as a linux/amd64 + linux/arm64 image (the factory pulls with
/// its amd64 puller; an arm64 factory host resolves its own platform) and tag it. Returns the
/// index descriptor's digest.
pub fn write(
    layout: &Layout,
    tree: &Tree,
    epoch: u64,
    tag: Option<&str>,
) -> Result<(oci::Descriptor, Vec<oci::Descriptor>)> {
    let mut manifests = Vec::new();
    for arch in ["amd64", "arm64"] {
        manifests.push(image::write_image(layout, tree, &Platform::linux(arch), epoch)?.descriptor);
    }
    let index = image::write_index(layout, &manifests)?;
    image::tag_in_layout(layout, &index, tag)?;
    Ok((index, manifests))
}

/// Push the catalog to `target` (`REGISTRY/REPO[:TAG]`, the tag usually the Talos version).
pub fn push(tree: &Tree, epoch: u64, target: &str, options: &RegistryOptions) -> Result<String> {
    let r = Reference::parse(target).map_err(|e| Error::Registry(Box::new(e)))?;
    if r.digest.is_some() {
        return Err(Error::input_hint(
            format!("`{target}` names a digest; a catalog is pushed under a tag"),
            "use `docker://REGISTRY/REPO:<talos version>`",
        ));
    }
    let tag = r.tag.clone().unwrap_or_else(|| "latest".to_string());
    let work = tempfile::Builder::new()
        .prefix("talext-catalog-")
        .tempdir()
        .map_err(|e| Error::internal(format!("creating a temporary directory: {e}")))?;
    let layout = Layout::open_or_create(work.path().join("layout"))?;
    let (index, manifests) = write(&layout, tree, epoch, None)?;
    let client = RegistryClient::new(options, &r.registry)?;
    // Blobs first, then each platform manifest by digest, then the index under the tag, so the
    // tag never points at something missing.
    for m in &manifests {
        let bytes = layout.read_document(&m.digest)?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| Error::internal(format!("reading the manifest we wrote: {e}")))?;
        for blob in std::iter::once(&manifest.config).chain(manifest.layers.iter()) {
            let path = layout.blob_path(&blob.digest);
            client.push_blob(
                &r.repository,
                &blob.digest.to_string(),
                blob.size,
                BlobSource::Path(&path),
                None,
            )?;
        }
        client.put_manifest(&r.repository, &m.digest.to_string(), &bytes, &m.media_type)?;
    }
    let bytes = layout.read_document(&index.digest)?;
    client.put_manifest(&r.repository, &tag, &bytes, oci::MT_OCI_INDEX)?;
    Ok(index.digest.to_string())
}
