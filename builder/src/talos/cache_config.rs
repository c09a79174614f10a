//! `imager-profile --image-cache DIR --machine-config FILE`: the machine-configuration documents
//! a node needs to use the image cache the profile bakes in.
//!
//! - The `IMAGECACHE` volume: Talos provisions the image-cache partition only when a
//!   `VolumeConfig` named `IMAGECACHE` exists, defaulting to the system disk, `grow: false`,
//!   `minSize` 500 MiB and `maxSize` 1 GiB (`MinImageCacheSize`, `MaxImageCacheSize` in
//!   `internal/app/machined/pkg/controllers/cri/image_cache_config.go` at v1.9.0 and
//!   v1.14.0-rc.1), and creates the partition at `maxSize` when the disk has room
//!   (`internal/app/machined/pkg/controllers/block/internal/volumes/partition.go` at
//!   v1.14.0-rc.1). A cache larger than 1 GiB would not fit the default, so the document sizes
//!   the partition to the cache: `minSize` = the cache's content plus a tenth and 64 MiB for
//!   ext4's metadata, at least Talos's 500 MiB; `maxSize` = twice that, room for images added
//!   later. Sizes are written in MiB, which `ByteSize` reads with go-humanize
//!   (`pkg/machinery/config/types/block/byte_size.go`). `IMAGECACHE` is an allowed volume name
//!   from v1.9 (`block/volume_config.go` at v1.9.0 and v1.14.0-rc.1).
//! - The switch that turns the cache on, from the release table
//!   (`crate::release::extensions`, `image_cache`): `.machine.features.imageCache.localEnabled`
//!   from v1.9 to v1.13 (`v1alpha1_types.go`), the `ImageCacheConfig` document with
//!   `local.enabled` from v1.14 (`pkg/machinery/config/types/cri/image_cache.go` at
//!   v1.14.0-rc.1, which refuses the v1alpha1 field next to it).

use std::path::Path;

use crate::error::{Error, IoContext, Result};
use crate::goyaml::{self, GoValue};
use crate::release::extensions::{self, ImageCache};
use crate::release::{config, Minor};

const MIB: u64 = 1024 * 1024;
/// `MinImageCacheSize` (500 MiB).
const TALOS_MIN: u64 = 500 * MIB;
/// ext4 metadata and journal on top of the content.
const FS_OVERHEAD: u64 = 64 * MIB;

/// `minSize` and `maxSize` for a cache of `content` bytes, in bytes (whole MiB).
pub fn volume_sizes(content: u64) -> (u64, u64) {
    let need = content + content / 10 + FS_OVERHEAD;
    let min = need.div_ceil(MIB) * MIB;
    let min = min.max(TALOS_MIN);
    (min, min * 2)
}

/// The bytes the cache's files hold: the files of a flat tree, or the entries of the layers
/// of the OCI layout wrapping it (what the imager writes onto the partition).
pub fn content_size(dir: &Path) -> Result<u64> {
    if dir.join("manifests").is_dir() {
        return tree_size(dir);
    }
    let layout = crate::store::layout::Layout::open(dir)?;
    let desc = layout.resolve(None)?;
    let manifest: crate::oci::Manifest =
        serde_json::from_slice(&layout.read_document(&desc.digest)?).map_err(|e| {
            Error::input(format!(
                "`{}`: the image cache's manifest is not valid: {e}",
                dir.display()
            ))
        })?;
    let mut total = 0u64;
    for layer in &manifest.layers {
        let blob = layout.open_blob(layer)?;
        let tar = crate::source::image::decompress(blob).at("reading", dir)?;
        let mut archive = tar::Archive::new(tar);
        for entry in archive.entries().at("reading", dir)? {
            total += entry.at("reading", dir)?.size();
        }
    }
    Ok(total)
}

fn tree_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).at("reading", dir)? {
        let entry = entry.at("reading", dir)?;
        let meta = entry.metadata().at("reading", entry.path())?;
        total += if meta.is_dir() {
            tree_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// The documents for Talos `talos_version` and a cache of `content` bytes: the switch (a
/// v1alpha1 patch or an `ImageCacheConfig`), then the `IMAGECACHE` `VolumeConfig`.
pub fn render(talos_version: &str, content: u64) -> Result<String> {
    let minor = Minor::of(talos_version)
        .ok_or_else(|| Error::input(format!("`{talos_version}` is not a Talos version")))?;
    let (facts, _) = extensions::nearest(minor);
    let volume = config::document("VolumeConfig")
        .ok_or_else(|| Error::internal("the release table has no `VolumeConfig`"))?;
    if facts.image_cache.value == ImageCache::Absent || volume.since > minor {
        return Err(Error::input_hint(
            format!("Talos {minor} has no image cache"),
            "the image cache and its `IMAGECACHE` volume exist from Talos v1.9",
        ));
    }
    let s = |v: &str| GoValue::str(v);
    let t = GoValue::Bool(true);
    let switch = match facts.image_cache.value {
        ImageCache::Document => GoValue::Map(vec![
            ("apiVersion".into(), s("v1alpha1")),
            ("kind".into(), s("ImageCacheConfig")),
            ("local".into(), GoValue::Map(vec![("enabled".into(), t)])),
        ]),
        _ => GoValue::Map(vec![(
            "machine".into(),
            GoValue::Map(vec![(
                "features".into(),
                GoValue::Map(vec![(
                    "imageCache".into(),
                    GoValue::Map(vec![("localEnabled".into(), t)]),
                )]),
            )]),
        )]),
    };
    let (min, max) = volume_sizes(content);
    let mib = |b: u64| format!("{}MiB", b / MIB);
    let volume = GoValue::Map(vec![
        ("apiVersion".into(), s(volume.api_version)),
        ("kind".into(), s(volume.kind)),
        ("name".into(), s("IMAGECACHE")),
        (
            "provisioning".into(),
            GoValue::Map(vec![
                ("minSize".into(), s(&mib(min))),
                ("maxSize".into(), s(&mib(max))),
            ]),
        ),
    ]);
    let mut out = format!(
        "# Image cache for Talos {minor} ({} MiB of images), written by `talext imager-profile`.\n# Apply with the node's configuration (`talosctl gen config … --config-patch @FILE`).\n",
        content.div_ceil(MIB)
    );
    out.push_str(&goyaml::marshal(&switch, 2));
    out.push_str("---\n");
    out.push_str(&goyaml::marshal(&volume, 2));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(text: &str) -> String {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    #[test]
    fn sizes_cover_the_cache() {
        assert_eq!(volume_sizes(0), (500 * MIB, 1000 * MIB));
        let (min, max) = volume_sizes(2048 * MIB);
        assert_eq!(min, (2048 + 205 + 64) * MIB);
        assert_eq!(max, 2 * min);
    }

    #[test]
    fn switch_follows_the_release() {
        assert_eq!(
            body(&render("v1.14.0", 0).unwrap()),
            "apiVersion: v1alpha1\nkind: ImageCacheConfig\nlocal:\n  enabled: true\n---\napiVersion: v1alpha1\nkind: VolumeConfig\nname: IMAGECACHE\nprovisioning:\n  minSize: 500MiB\n  maxSize: 1000MiB\n"
        );
        assert!(body(&render("v1.13.2", 0).unwrap()).starts_with(
            "machine:\n  features:\n    imageCache:\n      localEnabled: true\n---\n"
        ));
        assert!(render("v1.8.0", 0)
            .unwrap_err()
            .to_string()
            .contains("has no image cache"));
    }
}
