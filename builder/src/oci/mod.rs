//! The OCI image model: digests, descriptors, manifests, indexes and media types. Manifests and
//! indexes we did not write are always carried as their raw bytes, so a digest survives every
//! hop. The places images live are in `crate::store`.

pub mod digest;
pub mod types;

pub use crate::store::{archive, layout};

pub use digest::{Digest, HashingWriter};
pub use types::{Descriptor, Index, Manifest, Platform};

pub const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MT_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MT_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MT_OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MT_DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const MT_DOCKER_SCHEMA1_SIGNED: &str =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const MT_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// How deep indexes may nest (an index of indexes of …) before a walk refuses the image: deep
/// enough for every real image (attestation and signature indexes add one level), shallow
/// enough that a crafted chain costs nothing. Every command walks with this one limit.
pub const MAX_INDEX_DEPTH: usize = 4;

/// Annotation naming an `index.json` entry (OCI image layout).
pub const ANN_REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const ANN_CREATED: &str = "org.opencontainers.image.created";

pub fn is_index_type(mt: &str) -> bool {
    mt == MT_OCI_INDEX || mt == MT_DOCKER_LIST
}

pub fn is_manifest_type(mt: &str) -> bool {
    mt == MT_OCI_MANIFEST || mt == MT_DOCKER_MANIFEST
}

/// What a manifest document is, judged from its `mediaType` field or, when absent (allowed by
/// OCI), from its shape.
pub fn sniff_media_type(bytes: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    if let Some(mt) = v.get("mediaType").and_then(|m| m.as_str()) {
        return Some(mt.to_string());
    }
    if v.get("manifests").is_some() {
        Some(MT_OCI_INDEX.to_string())
    } else if v.get("layers").is_some() {
        Some(MT_OCI_MANIFEST.to_string())
    } else if v.get("fsLayers").is_some() {
        Some(MT_DOCKER_SCHEMA1.to_string())
    } else {
        None
    }
}
