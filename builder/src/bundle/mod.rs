//! Air-gap bundles: every image a site needs, all platforms, in one file that crosses the gap.
//!
//! A bundle is a plain, deterministic tar holding an OCI image layout (image-spec
//! `image-layout.md`) plus two files of our own:
//!
//! ```text
//! oci-layout          {"imageLayoutVersion":"1.0.0"}
//! index.json          one entry per image, `org.opencontainers.image.ref.name` = the original
//!                     normalised reference (also `io.containerd.image.name`, for `ctr import`)
//! bundle.json         {"format": "talext-bundle", "version": 1, "images": [{reference, digest,
//!                     mediaType, size}]}
//! SHA256SUMS          `sha256sum` lines over every other file
//! blobs/sha256/<hex>  manifests, indexes, configs and layers, exactly as the registry served them
//! ```
//!
//! Because it is an OCI layout in a tar, a bundle is also an `oci-archive` other tools read
//! (`skopeo copy oci-archive:FILE:REF …`), and after `tar xf`, `sha256sum -c SHA256SUMS` checks
//! it without talext.
//!
//! - [`create()`]: pull references into a staging layout with [`crate::transfer`], pack it.
//! - [`verify()`]: one streaming pass that re-hashes every file (nothing is held whole in memory).
//! - [`push()`]: verify in one streaming pass, then copy image by image, each blob read where it
//!   lies in the bundle, into `REGISTRY[/PREFIX]`, keeping repository paths, tags and digests;
//!   [`mirror`] renders the Talos registry-mirror configuration for where they went.

pub mod cli;
mod create;
pub mod mirror;
mod push;
mod read;
pub mod signatures;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::oci::Digest;

pub use create::{create, CreateOptions, Created};
pub use push::{mirror_hint, push, target_of, PushReport, Pushed, Status, Target};
pub use read::{verify, Verified};

/// `format` in `bundle.json`.
pub const FORMAT: &str = "talext-bundle";
/// The `bundle.json` version this talext writes and reads.
pub const VERSION: u32 = 1;
/// The names of the files beside `blobs/`.
pub const LAYOUT_FILE: &str = "oci-layout";
pub const INDEX_FILE: &str = "index.json";
pub const BUNDLE_FILE: &str = "bundle.json";
pub const SUMS_FILE: &str = "SHA256SUMS";
/// The annotation containerd's `ctr import` names images by.
pub const ANN_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// `bundle.json`: what the bundle holds, in the order the images were asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleFile {
    pub format: String,
    pub version: u32,
    pub images: Vec<BundleImage>,
}

/// One image of a bundle: the reference it was pulled by (normalised, e.g.
/// `docker.io/library/alpine:3.20`) and the manifest or index it resolved to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BundleImage {
    pub reference: String,
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

impl BundleImage {
    /// The reference pinned to its digest: `REF@DIGEST` (once, if the reference had it).
    pub fn pinned(&self) -> String {
        if self.reference.contains('@') {
            self.reference.clone()
        } else {
            format!("{}@{}", self.reference, self.digest)
        }
    }
}

/// Progress messages for stderr; the CLI drops them with `--quiet`.
pub type Progress<'a> = &'a (dyn Fn(&str) + Sync);

/// References from an `--images-file`: one per line; blank lines and `#` comments (whole-line
/// or trailing) are ignored.
pub fn read_images_file(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).at("reading", path)?;
    Ok(parse_images_list(&text))
}

/// The references of an images list (see [`read_images_file`]).
pub fn parse_images_list(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| {
            line.split_once('#')
                .map_or(line, |(before, _)| before)
                .trim()
        })
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect()
}

/// Parse `bundle.json` bytes strictly.
fn parse_bundle_file(bytes: &[u8]) -> Result<BundleFile> {
    let file: BundleFile = serde_json::from_slice(bytes)
        .map_err(|e| Error::input(format!("`{BUNDLE_FILE}` is not valid: {e}")))?;
    if file.format != FORMAT {
        return Err(Error::input(format!(
            "`{BUNDLE_FILE}` has format `{}`, expected `{FORMAT}`",
            file.format
        )));
    }
    if file.version != VERSION {
        return Err(Error::input_hint(
            format!(
                "`{BUNDLE_FILE}` has version {}, this talext reads version {VERSION}",
                file.version
            ),
            "use the talext release that wrote the bundle",
        ));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_lists_skip_comments_and_blanks() {
        let text = "# images for the site\n\nalpine:3.20\n  ghcr.io/a/b:v1   # pinned\n#x\n";
        assert_eq!(parse_images_list(text), ["alpine:3.20", "ghcr.io/a/b:v1"]);
    }

    #[test]
    fn bundle_file_is_strict() {
        let ok = br#"{"format":"talext-bundle","version":1,"images":[]}"#;
        assert!(parse_bundle_file(ok).is_ok());
        let extra = br#"{"format":"talext-bundle","version":1,"images":[],"x":1}"#;
        assert!(parse_bundle_file(extra).is_err());
        let future = br#"{"format":"talext-bundle","version":2,"images":[]}"#;
        assert!(parse_bundle_file(future)
            .unwrap_err()
            .to_string()
            .contains("version 2"));
    }
}
