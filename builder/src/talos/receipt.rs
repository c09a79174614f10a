//! The build receipt: what `talext build --receipt FILE` writes and `build --json` prints, and
//! what `imager-profile --receipt` and `config render` read to pin an extension by digest.
//!
//! ```json
//! {"name":"tailscale","version":"1.102.5",
//!  "output":"docker://127.0.0.1:5000/talos/tailscale:1.102.5",
//!  "reference":"127.0.0.1:5000/talos/tailscale:1.102.5@sha256:<index hex>",
//!  "digest":"sha256:<index hex>",
//!  "platforms":[{"os":"linux","architecture":"amd64","digest":"sha256:<manifest hex>"}]}
//! ```
//!
//! `output` may also be `oci:DIR:TAG`, `oci-archive:FILE:TAG` or `tar:FILE`; `reference` is then
//! absent or null.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// Extension name (`manifest.yaml` `metadata.name`).
    pub name: String,
    /// Extension version (`manifest.yaml` `metadata.version`).
    pub version: String,
    /// Where the build went, spelled as a transport (`docker://…`, `oci:…`, `oci-archive:…`,
    /// `tar:…`).
    pub output: String,
    /// `registry/repo:tag@sha256:…` when the output is a registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Digest of the image index (or of the single manifest).
    pub digest: String,
    #[serde(default)]
    pub platforms: Vec<PlatformDigest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformDigest {
    pub os: String,
    pub architecture: String,
    pub digest: String,
}

impl Receipt {
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).at("reading", path)?;
        serde_json::from_str(&text).map_err(|e| {
            Error::input_hint(
                format!("`{}` is not a build receipt: {e}", path.display()),
                "write one with `talext build --receipt FILE`",
            )
        })
    }

    /// The registry reference pinned by the index digest (`repo@sha256:…`, tag dropped), when the
    /// build went to a registry.
    pub fn pinned_reference(&self) -> Option<String> {
        let reference = self.reference.as_deref()?;
        let repo = reference.split('@').next().unwrap_or(reference);
        Some(format!("{}@{}", strip_tag(repo), self.digest))
    }
}

/// `host:5000/a/b:tag` → `host:5000/a/b` (a `:` after the last `/` starts the tag).
pub fn strip_tag(reference: &str) -> &str {
    let name = reference.split('@').next().unwrap_or(reference);
    let slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
    match name[slash..].rfind(':') {
        Some(i) => &name[..slash + i],
        None => name,
    }
}

/// `sha256:` followed by 64 lower-case hex digits.
pub fn is_sha256_digest(d: &str) -> bool {
    d.parse::<crate::oci::Digest>()
        .is_ok_and(|d| d.algorithm() == "sha256")
}

/// A reference pinned by digest: `…@sha256:<64 hex>`.
pub fn is_pinned(reference: &str) -> bool {
    reference
        .rsplit_once('@')
        .is_some_and(|(name, d)| !name.is_empty() && is_sha256_digest(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipt_round_trip_and_pin() {
        let hex = "a".repeat(64);
        let json = format!(
            r#"{{"name":"tailscale","version":"1.102.5","output":"docker://127.0.0.1:5000/talos/tailscale:1.102.5","reference":"127.0.0.1:5000/talos/tailscale:1.102.5@sha256:{hex}","digest":"sha256:{hex}","platforms":[{{"os":"linux","architecture":"amd64","digest":"sha256:{hex}"}}]}}"#
        );
        let r: Receipt = serde_json::from_str(&json).unwrap();
        assert_eq!(
            r.pinned_reference().unwrap(),
            format!("127.0.0.1:5000/talos/tailscale@sha256:{hex}")
        );
        assert_eq!(serde_json::to_string(&r).unwrap(), json);
        let mut oci = r.clone();
        oci.reference = None;
        assert_eq!(oci.pinned_reference(), None);
        let no_ref: Receipt = serde_json::from_str(&json.replace(
            &format!(r#""reference":"127.0.0.1:5000/talos/tailscale:1.102.5@sha256:{hex}","#),
            r#""reference":null,"#,
        ))
        .unwrap();
        assert_eq!(no_ref.reference, None);
    }

    #[test]
    fn tags_and_pins() {
        assert_eq!(strip_tag("host:5000/a/b:1.2"), "host:5000/a/b");
        assert_eq!(strip_tag("host:5000/a/b"), "host:5000/a/b");
        assert!(is_pinned(&format!("r/x@sha256:{}", "0".repeat(64))));
        assert!(!is_pinned("r/x:1.0"));
        assert!(!is_pinned("r/x@sha256:abc"));
    }
}
