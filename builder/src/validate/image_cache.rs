//! Checking a Talos image cache (`talext image-cache create`, `talosctl image cache-create`;
//! format in `crate::store::image_cache`, from `siderolabs/talos` `pkg/imager/cache/cache.go` at
//! v1.14.0-rc.1) wherever it lies: the flat tree, or the OCI image that wraps it (its layer is
//! the tree), from any source `validate` and `inspect` read. A tree is a cache when its root has
//! `blob/` and `manifests/` and no `manifest.yaml`.
//!
//! Every `blob/sha256-<hex>` is re-hashed as it streams; every file under `manifests/` must be a
//! manifest or index, a `digest/sha256-<hex>` file must hash to its name, and everything an image
//! manifest names (config, layers) must be a blob of the declared size. An index's children are
//! looked up among the repository's `digest/` entries; a cache made for some platforms holds
//! only theirs, so a missing child is fine as long as one is there.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::Finding;
use crate::oci::{self, Digest, Index, Manifest};
use crate::rootfs::{NodeKind, Tree};
use crate::store::layout::MAX_DOCUMENT;

/// Whether `tree` is an image cache rather than an extension.
pub fn is_cache(tree: &Tree) -> bool {
    let dir = |p: &str| tree.get(p).is_some_and(|n| n.is_dir());
    dir("blob") && dir("manifests") && tree.get("manifest.yaml").is_none()
}

/// One image the cache names.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedImage {
    /// `registry/repository:tag` or `registry/repository@sha256:…` as the tree spells it.
    pub name: String,
    pub digest: String,
    pub media_type: String,
}

/// What a cache holds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub images: Vec<CachedImage>,
    pub blobs: usize,
    pub bytes: u64,
}

fn finding(rule: &'static str, path: &str, message: String, hint: &str) -> Finding {
    Finding::new(rule, path, message, hint)
}

const REBUILD: &str = "create the cache again (`talext image-cache create`); a damaged cache makes nodes pull, or fail to boot offline";

/// Check the cache in `tree`; the findings, and what it holds.
pub fn check(tree: &Tree) -> (Vec<Finding>, Summary) {
    let mut out = Vec::new();
    let mut summary = Summary::default();
    // Blobs: name → size, each re-hashed.
    let mut blobs: BTreeMap<String, u64> = BTreeMap::new();
    for (path, node) in tree.below("blob") {
        let NodeKind::File { size, .. } = &node.kind else {
            if !node.is_dir() {
                out.push(finding(
                    "image-cache-blob",
                    path,
                    format!("`{path}` is not a regular file"),
                    REBUILD,
                ));
            }
            continue;
        };
        let name = crate::rootfs::base_name(path);
        let Some(hex) = name
            .strip_prefix("sha256-")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        else {
            out.push(finding(
                "image-cache-blob",
                path,
                format!("`{path}` is not named `sha256-<hex>`"),
                REBUILD,
            ));
            continue;
        };
        let hashed = tree
            .open(path)
            .ok()
            .and_then(|r| oci::digest::hash_reader(r).ok());
        match hashed {
            Some((d, n)) if d.hex() == hex && n == *size => {
                blobs.insert(format!("sha256:{hex}"), *size);
                summary.blobs += 1;
                summary.bytes += size;
            }
            Some((d, _)) => out.push(finding(
                "image-cache-blob",
                path,
                format!("`{path}` holds content `{d}`, not what its name says"),
                REBUILD,
            )),
            None => out.push(finding(
                "image-cache-blob",
                path,
                format!("`{path}` cannot be read"),
                REBUILD,
            )),
        }
    }
    // Manifests, per repository: `<registry>/<repository>/{reference,digest}/<name>`.
    let mut docs: Vec<(String, String, String, Vec<u8>)> = Vec::new();
    for (path, node) in tree.below("manifests") {
        if node.is_dir() {
            continue;
        }
        let rest = path.trim_start_matches("manifests/");
        let parts: Vec<&str> = rest.rsplitn(3, '/').collect();
        let (name, kind, repo) = match parts.as_slice() {
            [name, kind @ ("reference" | "digest"), repo] if repo.contains('/') => {
                (*name, *kind, *repo)
            }
            _ => {
                out.push(finding(
                    "image-cache-manifest",
                    path,
                    format!("`{path}` is not `manifests/<registry>/<repository>/reference|digest/<name>`"),
                    REBUILD,
                ));
                continue;
            }
        };
        let bytes = match tree.read_head(path, MAX_DOCUMENT as usize + 1) {
            Ok(b) if b.len() as u64 <= MAX_DOCUMENT && node.is_file() => b,
            _ => {
                out.push(finding(
                    "image-cache-manifest",
                    path,
                    format!("`{path}` is not a readable manifest of at most {MAX_DOCUMENT} bytes"),
                    REBUILD,
                ));
                continue;
            }
        };
        docs.push((repo.to_string(), kind.to_string(), name.to_string(), bytes));
    }
    let mut by_digest: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (repo, kind, name, _) in &docs {
        if kind == "digest" {
            by_digest
                .entry(repo.clone())
                .or_default()
                .insert(name.replacen("sha256-", "sha256:", 1));
        }
    }
    for (repo, kind, name, bytes) in &docs {
        let path = format!("manifests/{repo}/{kind}/{name}");
        let digest = Digest::of(bytes);
        if kind == "digest" && name.replacen("sha256-", "sha256:", 1) != digest.as_str() {
            out.push(finding(
                "image-cache-manifest",
                &path,
                format!("`{path}` holds `{digest}`, not what its name says"),
                REBUILD,
            ));
            continue;
        }
        let media_type = oci::sniff_media_type(bytes).unwrap_or_default();
        if oci::is_index_type(&media_type) {
            let Ok(index) = serde_json::from_slice::<Index>(bytes) else {
                out.push(finding(
                    "image-cache-manifest",
                    &path,
                    format!("`{path}` is not a valid index"),
                    REBUILD,
                ));
                continue;
            };
            let have = by_digest.get(repo);
            let present = index
                .manifests
                .iter()
                .filter(|c| have.is_some_and(|h| h.contains(c.digest.as_str())))
                .count();
            if present == 0 && !index.manifests.is_empty() {
                out.push(finding(
                    "image-cache-manifest",
                    &path,
                    format!(
                        "none of the {} manifests the index `{path}` names is in the cache",
                        index.manifests.len()
                    ),
                    REBUILD,
                ));
            }
        } else if oci::is_manifest_type(&media_type) {
            let Ok(m) = serde_json::from_slice::<Manifest>(bytes) else {
                out.push(finding(
                    "image-cache-manifest",
                    &path,
                    format!("`{path}` is not a valid image manifest"),
                    REBUILD,
                ));
                continue;
            };
            for d in std::iter::once(&m.config).chain(&m.layers) {
                match blobs.get(d.digest.as_str()) {
                    Some(size) if *size == d.size => {}
                    Some(size) => out.push(finding(
                        "image-cache-blob",
                        &path,
                        format!(
                            "`{path}` names `{}` of {} bytes; the cache's blob has {size}",
                            d.digest, d.size
                        ),
                        REBUILD,
                    )),
                    None => out.push(finding(
                        "image-cache-blob",
                        &path,
                        format!("`{path}` names `{}`, which is not in `blob/`", d.digest),
                        REBUILD,
                    )),
                }
            }
        } else {
            out.push(finding(
                "image-cache-manifest",
                &path,
                format!("`{path}` is neither an image manifest nor an index"),
                REBUILD,
            ));
            continue;
        }
        if kind == "reference" {
            let (registry, repository) = repo.split_once('/').unwrap_or((repo, ""));
            let registry = match registry.strip_suffix('_') {
                Some(r) => r.replacen('_', ":", 1),
                None => registry.to_string(),
            };
            summary.images.push(CachedImage {
                name: format!("{registry}/{repository}:{name}"),
                digest: digest.to_string(),
                media_type,
            });
        }
    }
    if summary.images.is_empty() {
        out.push(finding(
            "image-cache-manifest",
            "manifests",
            "the cache names no image (no `manifests/<registry>/<repository>/reference/<tag>`)"
                .into(),
            REBUILD,
        ));
    }
    (out, summary)
}
