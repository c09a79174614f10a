//! `imager-profile --schematic FILE`: the virtual `schematic` extension the Image Factory adds
//! to every image it builds, so media built with our own imager profile answer
//! `talosctl get extensions` as factory media do, and upgrade tools that pick an installer by
//! schematic ID find one.
//!
//! What the factory writes (`siderolabs/image-factory` `internal/artifacts/schematic.go` at
//! 26b95ca): a plain tar holding `manifest.yaml` (extension manifest `v1alpha1`, metadata
//! `name: schematic`, `version: <schematic ID>`, compatibility `>= 1.0.0`, and `extraInfo` = the
//! canonical schematic YAML for Talos releases with overlays, v1.7 and later, which are all the
//! releases talext knows), the directories `rootfs/usr/local/share/schematic/` and one empty
//! file named by the ID below them. The manifest is marshalled by go-yaml (4-space indent); the
//! metadata fields are in the order of `pkg/machinery/extensions/metadata.go` (v1.14.0-rc.1).
//! The installer the factory would serve for it is `<factory>/installer/<ID>:<version>`
//! ([`crate::release::images::Closure::factory_installer`]).

use std::path::Path;

use crate::error::{Error, Result};
use crate::goyaml::{self, GoValue};
use crate::tarw::TarWriter;

/// The extension manifest for schematic `id` whose canonical YAML is `canonical`.
pub fn manifest_yaml(id: &str, canonical: &str) -> String {
    let s = |v: &str| GoValue::str(v);
    let metadata = GoValue::Map(vec![
        ("name".into(), s("schematic")),
        ("version".into(), s(id)),
        ("author".into(), s("talext")),
        (
            "description".into(),
            s(&format!(
                "Image Factory schematic {id}, recorded by talext imager-profile."
            )),
        ),
        (
            "compatibility".into(),
            GoValue::Map(vec![(
                "talos".into(),
                GoValue::Map(vec![("version".into(), s(">= 1.0.0"))]),
            )]),
        ),
        ("extraInfo".into(), s(canonical)),
    ]);
    let manifest = GoValue::Map(vec![
        ("version".into(), s("v1alpha1")),
        ("metadata".into(), metadata),
    ]);
    goyaml::marshal(&manifest, 4)
}

/// The extension as the uncompressed tar the imager's `tarballPath` reads, deterministic.
pub fn tarball(id: &str, canonical: &str) -> Result<Vec<u8>> {
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::internal(format!("`{id}` is not a schematic ID")));
    }
    let manifest = manifest_yaml(id, canonical);
    let io = |e: std::io::Error| Error::internal(format!("writing the schematic extension: {e}"));
    let mut w = TarWriter::new(Vec::new(), 0);
    w.file(
        "manifest.yaml",
        0o644,
        manifest.len() as u64,
        manifest.as_bytes(),
    )
    .map_err(io)?;
    for dir in [
        "rootfs",
        "rootfs/usr",
        "rootfs/usr/local",
        "rootfs/usr/local/share",
        "rootfs/usr/local/share/schematic",
    ] {
        w.dir(dir, 0o755).map_err(io)?;
    }
    w.file(
        &format!("rootfs/usr/local/share/schematic/{id}"),
        0o644,
        0,
        &b""[..],
    )
    .map_err(io)?;
    w.finish().map_err(io)
}

/// Write the extension's tar to `path` atomically.
pub fn write(path: &Path, id: &str, canonical: &str) -> Result<()> {
    crate::image::write_file_atomic(path, &tarball(id, canonical)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4a0d65c669d46663f377e7161e50cfd570c401f26fd9e7bda34a0216b6f1922b";
    const CANONICAL: &str =
        "customization:\n    systemExtensions:\n        officialExtensions:\n            - siderolabs/tailscale\n";

    #[test]
    fn the_manifest_names_the_schematic() {
        let m = manifest_yaml(ID, CANONICAL);
        assert!(m.starts_with(&format!(
            "version: v1alpha1\nmetadata:\n    name: schematic\n    version: {ID}\n    author: talext\n"
        )), "{m}");
        assert!(
            m.contains("    compatibility:\n        talos:\n            version: '>= 1.0.0'\n"),
            "{m}"
        );
        assert!(m.ends_with("    extraInfo: |\n        customization:\n            systemExtensions:\n                officialExtensions:\n                    - siderolabs/tailscale\n"), "{m}");
    }

    #[test]
    fn the_tarball_holds_the_manifest_and_the_marker_file() {
        let bytes = tarball(ID, CANONICAL).unwrap();
        assert_eq!(bytes, tarball(ID, CANONICAL).unwrap());
        let mut archive = tar::Archive::new(&bytes[..]);
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "manifest.yaml".to_string(),
                "rootfs/".into(),
                "rootfs/usr/".into(),
                "rootfs/usr/local/".into(),
                "rootfs/usr/local/share/".into(),
                "rootfs/usr/local/share/schematic/".into(),
                format!("rootfs/usr/local/share/schematic/{ID}"),
            ]
        );
        assert!(tarball("x", CANONICAL).is_err());
    }
}
