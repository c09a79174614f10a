//! Every place an image lives, as a store: an OCI layout ([`layout`]), an oci-archive
//! ([`archive`]), a registry (`crate::registry`), and talext's own caches built on layouts.
//! [`source::Source`] is the one read side over all of them and [`sink::Sink`] the one write
//! side; `crate::transfer` moves images from one to the other.
//! Stores are shared state: writers lock ([`lock`]), stage ([`scratch`]) and rename, and every
//! read is verified and bounded. [`Output`] is the one way an image is written into a layout or
//! an archive, by `build` and `copy` alike, and [`name_image`] the one rule for `index.json`.

pub mod archive;
pub mod image_cache;
pub mod layout;
pub mod lock;
pub mod scratch;
pub mod sink;
pub mod source;

use std::collections::HashSet;

use crate::error::Result;
use crate::oci::{self, Descriptor, Digest, Index};
use crate::transport::Location;
use archive::ArchiveTarget;
use layout::{Layout, Target};

/// A layout or archive being written: blobs and documents go into [`Output::layout`] first,
/// then [`Output::commit`] names the image and publishes it atomically.
pub enum Output {
    Layout(Target),
    Archive(ArchiveTarget),
}

impl Output {
    /// Open `oci:` or `oci-archive:` for writing; `None` for other locations.
    pub fn open(loc: &Location) -> Result<Option<(Output, Option<String>)>> {
        Ok(match loc {
            Location::Oci { dir, tag } => Some((Output::Layout(Target::open(dir)?), tag.clone())),
            Location::OciArchive { file, tag } => {
                Some((Output::Archive(ArchiveTarget::open(file)?), tag.clone()))
            }
            _ => None,
        })
    }

    pub fn layout(&self) -> &Layout {
        match self {
            Output::Layout(t) => t.layout(),
            Output::Archive(a) => a.layout(),
        }
    }

    /// Name `root` (already stored, with its children) under `tag` and publish.
    pub fn commit(self, root: &Descriptor, tag: Option<&str>) -> Result<()> {
        self.commit_tagged(root, tag, &[])
    }

    /// [`Self::commit`], also recording `tagged` (stored documents with their
    /// `org.opencontainers.image.ref.name`, such as signature manifests) in the same update, each
    /// replacing an older entry of its name.
    pub fn commit_tagged(
        self,
        root: &Descriptor,
        tag: Option<&str>,
        tagged: &[Descriptor],
    ) -> Result<()> {
        let update = |l: &Layout, idx: &mut Index| {
            name_image(l, idx, root, tag)?;
            for d in tagged {
                idx.manifests
                    .retain(|e| e.ref_name().is_none() || e.ref_name() != d.ref_name());
                idx.manifests.push(d.clone());
            }
            Ok(())
        };
        match self {
            Output::Layout(t) => t.commit(update).map(|_| ()),
            Output::Archive(a) => a.commit(update),
        }
    }
}

/// The platform manifests an index names (empty for an image manifest or an unreadable doc).
fn children(layout: &Layout, desc: &Descriptor) -> Vec<Descriptor> {
    if !oci::is_index_type(&desc.media_type) {
        return Vec::new();
    }
    layout
        .read_document(&desc.digest)
        .ok()
        .and_then(|b| serde_json::from_slice::<Index>(&b).ok())
        .map(|i| i.manifests)
        .unwrap_or_default()
}

/// Record `root` in `index.json`: under `tag` when given, and, for an index, each platform
/// manifest as its own untagged entry with its platform, first, because the imager's
/// `ociPath` input takes the first entry whose platform matches and does not descend into an
/// index (contract §2.1). An older entry with the same tag is replaced together with the
/// platform entries it brought (unless another tag still names them); entries of other images
/// are kept.
pub fn name_image(
    layout: &Layout,
    index: &mut Index,
    root: &Descriptor,
    tag: Option<&str>,
) -> Result<()> {
    let new_children = children(layout, root);
    let mut stale: HashSet<Digest> = HashSet::new();
    if let Some(t) = tag {
        for old in index.manifests.iter().filter(|d| d.ref_name() == Some(t)) {
            stale.extend(children(layout, old).into_iter().map(|c| c.digest));
        }
    }
    index.manifests.retain(|d| match (tag, d.ref_name()) {
        (Some(t), Some(name)) => name != t,
        _ => true,
    });
    // Platform entries another remaining tag still names stay.
    let kept: HashSet<Digest> = index
        .manifests
        .iter()
        .filter(|d| d.ref_name().is_some())
        .flat_map(|d| children(layout, d))
        .map(|c| c.digest)
        .collect();
    let fresh: HashSet<&Digest> = new_children
        .iter()
        .map(|c| &c.digest)
        .chain([&root.digest])
        .collect();
    index.manifests.retain(|d| {
        d.ref_name().is_some()
            || !(fresh.contains(&d.digest)
                || (stale.contains(&d.digest) && !kept.contains(&d.digest)))
    });
    let mut entry = root.clone();
    entry.annotations.remove(oci::ANN_REF_NAME);
    if let Some(t) = tag {
        entry
            .annotations
            .insert(oci::ANN_REF_NAME.to_string(), t.to_string());
    }
    let mut list = vec![entry];
    list.extend(new_children.into_iter().filter(|c| c.platform.is_some()));
    list.append(&mut index.manifests);
    index.manifests = list;
    index.media_type = Some(oci::MT_OCI_INDEX.to_string());
    Ok(())
}
