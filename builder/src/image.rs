//! Turn per-platform trees into an OCI image in a layout: one gzip layer, a config carrying
//! `os`/`architecture`, `rootfs.diff_ids` and `created` = the epoch (no entrypoint: Talos ignores
//! the config, contract §2.1), an image manifest, and an index whose every manifest descriptor
//! carries its platform. All JSON is serialised from ordered types, so bytes are reproducible.

use std::io::Write;

use serde::Serialize;

use crate::error::{Error, IoContext, Result};
use crate::layer::{self, LayerInfo};
use crate::oci::layout::Layout;
use crate::oci::{self, Descriptor, Index, Manifest, Platform};
use crate::progress::{Kind, Reporter, Silent};
use crate::rootfs::Tree;

#[derive(Serialize)]
struct Config<'a> {
    created: &'a str,
    architecture: &'a str,
    os: &'a str,
    config: EmptyObject,
    rootfs: RootFs<'a>,
}

#[derive(Serialize)]
struct EmptyObject {}

#[derive(Serialize)]
struct RootFs<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    diff_ids: Vec<&'a str>,
}

/// One platform's image written into a layout.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// The manifest descriptor, with its platform.
    pub descriptor: Descriptor,
    pub layer: LayerInfo,
}

/// Write `tree` as a single-layer image for `platform` into `layout`.
pub fn write_image(
    layout: &Layout,
    tree: &Tree,
    platform: &Platform,
    epoch: u64,
) -> Result<BuiltImage> {
    let info = write_layer(layout, tree, epoch, &Silent, &platform.to_string())?;
    write_image_for(layout, info, platform, epoch)
}

/// Write `tree` as a gzip layer blob into `layout`, reporting progress as `label`.
pub fn write_layer(
    layout: &Layout,
    tree: &Tree,
    epoch: u64,
    reporter: &dyn Reporter,
    label: &str,
) -> Result<LayerInfo> {
    let writer = layout.blob_writer()?;
    let task = reporter.start(Kind::Layer, label, Some(layer::tar_size_estimate(tree)));
    let written = layer::write_gzip_layer_reporting(tree, epoch, 0, writer, reporter, task);
    reporter.finish(task);
    let (info, writer) = written?;
    writer.commit(Some(&info.digest))?;
    Ok(info)
}

/// Write the config and manifest of a single-layer image whose layer blob is in `layout`.
pub fn write_image_for(
    layout: &Layout,
    info: LayerInfo,
    platform: &Platform,
    epoch: u64,
) -> Result<BuiltImage> {
    let created = rfc3339(epoch);
    let config = Config {
        created: &created,
        architecture: &platform.architecture,
        os: &platform.os,
        config: EmptyObject {},
        rootfs: RootFs {
            kind: "layers",
            diff_ids: vec![info.diff_id.as_str()],
        },
    };
    let config_bytes = to_json(&config)?;
    let config_digest = layout.put_bytes(&config_bytes)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(oci::MT_OCI_MANIFEST.to_string()),
        config: Descriptor::new(oci::MT_OCI_CONFIG, config_digest, config_bytes.len() as u64),
        layers: vec![Descriptor::new(
            oci::MT_OCI_LAYER_GZIP,
            info.digest.clone(),
            info.size,
        )],
        annotations: Default::default(),
    };
    let manifest_bytes = to_json(&manifest)?;
    let digest = layout.put_bytes(&manifest_bytes)?;
    let mut descriptor = Descriptor::new(oci::MT_OCI_MANIFEST, digest, manifest_bytes.len() as u64);
    descriptor.platform = Some(platform.clone());
    Ok(BuiltImage {
        descriptor,
        layer: info,
    })
}

/// Write the index naming every platform's manifest.
pub fn write_index(layout: &Layout, manifests: &[Descriptor]) -> Result<Descriptor> {
    let mut index = Index::new(Some(oci::MT_OCI_INDEX));
    index.manifests = manifests.to_vec();
    let bytes = to_json(&index)?;
    let digest = layout.put_bytes(&bytes)?;
    Ok(Descriptor::new(
        oci::MT_OCI_INDEX,
        digest,
        bytes.len() as u64,
    ))
}

/// Record a built index in the layout's `index.json` under `tag` (`crate::store::name_image`).
pub fn tag_in_layout(layout: &Layout, index: &Descriptor, tag: Option<&str>) -> Result<()> {
    layout.update_index(|idx| crate::store::name_image(layout, idx, index, tag))
}

/// Compact JSON of an ordered type.
pub fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::internal(format!("serialising JSON: {e}")))
}

/// Seconds since the epoch as RFC 3339 UTC (`1970-01-01T00:00:00Z`).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Write bytes to a file through a temporary path in the same directory, then rename.
pub fn write_file_atomic(dest: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let mut tmp = crate::store::scratch::file_in(parent, "file")?;
    tmp.write_all(bytes).at("writing", dest)?;
    persist(tmp, dest)
}

/// Give a finished temporary file the mode an ordinary output has (0644: a temporary file is
/// created 0600) and rename it to `dest`.
pub fn persist(tmp: tempfile::NamedTempFile, dest: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .at("setting the mode of", dest)?;
    tmp.persist(dest).map_err(|e| Error::Io {
        op: "writing",
        path: dest.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
