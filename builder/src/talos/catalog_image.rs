//! The catalog packed as an image and written where the factory can pull it: an OCI layout, an
//! OCI archive, or a registry (`docker://`), through the shared image writer and registry
//! client. The content itself comes from [`super::catalog`].

use crate::error::{Error, Result};
use crate::image;
use crate::oci::layout::Layout;
use crate::oci::{self, Platform};
use crate::registry::reference::Reference;
use crate::registry::RegistryOptions;
use crate::rootfs::Tree;
use crate::transport::Location;

/// Write the catalog into `layout` as a linux/amd64 + linux/arm64 image (the factory pulls with
/// its amd64 puller; an arm64 factory host resolves its own platform). Returns the index
/// descriptor and the platform manifests; the caller names it (`crate::store::Output`).
pub fn write(
    layout: &Layout,
    tree: &Tree,
    epoch: u64,
) -> Result<(oci::Descriptor, Vec<oci::Descriptor>)> {
    let mut manifests = Vec::new();
    for arch in ["amd64", "arm64"] {
        manifests.push(image::write_image(layout, tree, &Platform::linux(arch), epoch)?.descriptor);
    }
    let index = image::write_index(layout, &manifests)?;
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
    let work = crate::store::scratch::dir("catalog")?;
    let layout = Layout::open_or_create(work.path().join("layout"))?;
    let (index, _) = write(&layout, tree, epoch)?;
    image::tag_in_layout(&layout, &index, Some("catalog"))?;
    // The one transfer: blobs first, then each platform manifest by digest, then the index
    // under the tag, so the tag never points at something missing.
    let src = Location::Oci {
        dir: layout.root().to_path_buf(),
        tag: Some("catalog".into()),
    };
    let dst = Location::Registry(format!("{}/{}:{tag}", r.registry, r.repository));
    let copied = crate::transfer::copy(&src, &dst, &[], options)?;
    if copied.digest != index.digest.as_str() {
        return Err(Error::internal(format!(
            "the registry holds `{}` where `{}` was pushed",
            copied.digest, index.digest
        )));
    }
    Ok(index.digest.to_string())
}
