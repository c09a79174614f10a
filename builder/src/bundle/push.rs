//! `talext bundle push FILE REGISTRY[/PREFIX]`: verify the bundle in one streaming pass, then
//! copy each image, read in place from the bundle, into the private registry with [`crate::transfer`]
//! (blobs the registry has are skipped after a `HEAD`, children before their index, the tag
//! last), under `REGISTRY/PREFIX/<original repository path>`. A tag reference keeps its tag; a
//! digest-only one is pushed by digest. Manifests travel as raw bytes, so each image keeps its
//! digest, and an image whose tag (or digest) already names the right manifest is skipped
//! whole: a re-run after an interruption sends only what is missing.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::{BundleImage, Progress};
use crate::error::{Error, Result};
use crate::oci::layout::Layout;
use crate::oci::Digest;
use crate::registry::transport::Scheme;
use crate::registry::{Reference, RegistryClient, RegistryOptions};
use crate::store::source::Source;
use crate::transfer;

/// Where `push` puts images: a registry host and an optional repository prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host[:port]`, as written in references.
    pub registry: String,
    /// Path prepended to every repository, without leading or trailing `/`; may be empty.
    pub prefix: String,
}

/// What happened to one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Sent now (blobs the registry already had were skipped).
    Pushed,
    /// The registry already had the image under its new name.
    Present,
}

/// One line of the mapping `push` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pushed {
    /// The reference the image was bundled from.
    pub source: String,
    /// `REGISTRY/PREFIX/REPO[:TAG]@DIGEST`.
    pub target: String,
    pub digest: Digest,
    pub media_type: String,
    pub status: Status,
}

/// Parse `REGISTRY[/PREFIX]` (`docker://` allowed in front). The registry must look like a
/// host (a dot, a port or `localhost`), or it would be read as a Docker Hub namespace.
pub fn target_of(input: &str) -> Result<Target> {
    let bare = input.strip_prefix("docker://").unwrap_or(input);
    let bare = bare.trim_end_matches('/');
    let (registry, prefix) = bare.split_once('/').unwrap_or((bare, ""));
    if registry.is_empty() {
        return Err(Error::input(format!("`{input}` names no registry")));
    }
    let probe = if prefix.is_empty() {
        format!("{registry}/probe")
    } else {
        format!("{registry}/{prefix}/probe")
    };
    let parsed = Reference::parse(&probe).map_err(|_| {
        Error::input(format!(
            "`{input}` is not `REGISTRY[/PREFIX]`: the prefix must be a lower-case repository path"
        ))
    })?;
    if parsed.registry != registry {
        return Err(Error::input_hint(
            format!("`{registry}` does not look like a registry host"),
            "write the host with its domain or port (`registry.internal`, `registry:5000`, `localhost`)",
        ));
    }
    Ok(Target {
        registry: registry.to_string(),
        prefix: prefix.to_string(),
    })
}

impl Target {
    /// The new home of `image`: the reference to push to (tag, or digest when the original had
    /// no tag) and the `REF@DIGEST` to print.
    pub fn map(&self, image: &BundleImage) -> Result<(String, String)> {
        let original = Reference::parse(&image.reference)?;
        let repository = if self.prefix.is_empty() {
            original.repository.clone()
        } else {
            format!("{}/{}", self.prefix, original.repository)
        };
        let name = format!("{}/{repository}", self.registry);
        let (push_to, printed) = match &original.tag {
            Some(tag) => (
                format!("{name}:{tag}"),
                format!("{name}:{tag}@{}", image.digest),
            ),
            None => (
                format!("{name}@{}", image.digest),
                format!("{name}@{}", image.digest),
            ),
        };
        Reference::parse(&printed).map_err(|e| {
            Error::input(format!(
                "`{}` cannot be pushed as `{printed}`: {e}",
                image.reference
            ))
        })?;
        Ok((push_to, printed))
    }
}

/// The Talos registry mirror that serves `source_registry`'s images from where `push` put
/// them: `machine.registries.mirrors.<source>.endpoints` (or `RegistryMirrorConfig` in Talos
/// 1.12+). Under a prefix the endpoint carries the path and needs `overridePath: true`, which
/// makes containerd use the endpoint path as is instead of appending `/v2`. The scheme is the
/// one the registry answered `push` on: `http://` for a plain-HTTP registry, else `https://`
/// (`--mirror-config` writes the documents, see [`super::mirror`]).
pub fn mirror_hint(target: &Target, source_registry: &str, scheme: Scheme) -> String {
    let site = super::mirror::Site {
        target: target.clone(),
        scheme,
        ca: None,
    };
    match site.endpoint() {
        (url, false) => format!("Talos mirror for `{source_registry}`: endpoint `{url}`"),
        (url, true) => format!(
            "Talos mirror for `{source_registry}`: endpoint `{url}` with `overridePath: true`"
        ),
    }
}

/// What `push` did: the mapping in bundle order, and where it went.
#[derive(Debug, Clone)]
pub struct PushReport {
    pub images: Vec<Pushed>,
    pub target: Target,
    /// The scheme the registry answered on (`https` when nothing was asked of it).
    pub scheme: Scheme,
}

impl PushReport {
    /// The upstream registries the pushed images came from, sorted, each once.
    pub fn upstreams(&self) -> Vec<String> {
        let set: std::collections::BTreeSet<String> = self
            .images
            .iter()
            .filter_map(|p| Reference::parse(&p.source).ok())
            .map(|r| r.registry)
            .collect();
        set.into_iter().collect()
    }

    /// The site registry as [`super::mirror`] renders it, trusting `ca` over TLS.
    pub fn site(&self, ca: Option<String>) -> super::mirror::Site {
        super::mirror::Site {
            target: self.target.clone(),
            scheme: self.scheme,
            ca,
        }
    }
}

/// Images pushed at once, each with its own blobs in flight ([`transfer::DEFAULT_JOBS`]).
pub const IMAGE_JOBS: usize = 4;

/// Push every image of the bundle at `file` to `target` (`REGISTRY[/PREFIX]`): the bundle is
/// verified whole in one streaming pass, then read where it lies (nothing is unpacked; the
/// bundle may sit on read-only media), [`IMAGE_JOBS`] images at a time. A blob already sent
/// into one repository is mounted into the next that needs it instead of sent again.
pub fn push(
    file: &Path,
    target: &str,
    options: &RegistryOptions,
    resign: Option<&p256::ecdsa::SigningKey>,
    progress: Progress,
) -> Result<PushReport> {
    let target = target_of(target)?;
    progress(&format!("verifying `{}`", file.display()));
    let verified = super::read::verify(file)?;
    progress(&format!(
        "verified {} image(s), {} blob(s), {} bytes",
        verified.images.len(),
        verified.blobs,
        verified.blob_bytes
    ));
    let layout = Layout::in_tar(file)?;
    let plan = plan(&target, &verified.images)?;
    // One client for every image: one endpoint probe, one pool of connections, one set of
    // tokens, however many images the bundle holds.
    let client = std::sync::Arc::new(RegistryClient::new(options, &target.registry)?);
    let transfer = transfer::Transfer {
        mounts: Some(std::sync::Arc::new(transfer::MountBook::default())),
        ..Default::default()
    };
    let one = |image: &BundleImage, push_to: &str, printed: &str| -> Result<Pushed> {
        let reference = Reference::parse(push_to)?;
        let present = client.manifest_digest(
            &reference.repository,
            reference.tag_or_digest(),
            &[image.media_type.as_str()],
        )?;
        let status = if present.as_deref() == Some(image.digest.as_str()) {
            progress(&format!("`{push_to}` is already present"));
            Status::Present
        } else {
            progress(&format!("pushing `{}` to `{push_to}`", image.reference));
            let src = Source::Layout {
                layout: layout.clone(),
                tag: Some(image.reference.clone()),
                repository: None,
            };
            let dst = crate::store::sink::registry(&client, reference.clone(), options)?;
            let copied = transfer::copy_opened(&src, dst, &image.reference, &[], &transfer, false)?;
            if copied.digest != image.digest.as_str() {
                return Err(Error::internal(format!(
                    "`{push_to}` was written as `{}`, the bundle holds `{}`",
                    copied.digest, image.digest
                )));
            }
            progress(&format!(
                "pushed `{push_to}`: {} blob(s) sent, {} already present",
                copied.blobs_copied, copied.blobs_skipped
            ));
            Status::Pushed
        };
        Ok(Pushed {
            source: image.reference.clone(),
            target: printed.to_string(),
            digest: image.digest.clone(),
            media_type: image.media_type.clone(),
            status,
        })
    };
    let out = transfer::in_workers(&plan, IMAGE_JOBS, |(image, push_to, printed)| {
        one(image, push_to, printed)
    })?;
    let pushed: Vec<(BundleImage, String)> = plan
        .iter()
        .map(|(image, push_to, _)| ((*image).clone(), push_to.clone()))
        .collect();
    if let Some(key) = resign {
        let n = super::signatures::resign(&client, &pushed, key, progress)?;
        progress(&format!("re-signed {n} manifest(s) with the site key"));
    }
    Ok(PushReport {
        images: out,
        scheme: client.scheme().unwrap_or(Scheme::Https),
        target,
    })
}

/// Map every image, refusing two images that would land on one tag with different content
/// (e.g. `docker.io/acme/x:1` and `ghcr.io/acme/x:1` under the same prefix).
fn plan<'a>(
    target: &Target,
    images: &'a [BundleImage],
) -> Result<Vec<(&'a BundleImage, String, String)>> {
    let mut claimed: BTreeMap<String, &BundleImage> = BTreeMap::new();
    let mut out = Vec::new();
    for image in images {
        let (push_to, printed) = target.map(image)?;
        if let Some(other) = claimed.get(&push_to) {
            if other.digest != image.digest {
                return Err(Error::input_hint(
                    format!(
                        "`{}` and `{}` would both be pushed as `{push_to}`",
                        other.reference, image.reference
                    ),
                    "bundle images from different registries under different prefixes, or push them separately",
                ));
            }
        }
        claimed.insert(push_to.clone(), image);
        out.push((image, push_to, printed));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn image(reference: &str) -> BundleImage {
        BundleImage {
            reference: reference.to_string(),
            digest: D.parse().unwrap(),
            media_type: crate::oci::MT_OCI_INDEX.to_string(),
            size: 2,
        }
    }

    #[test]
    fn targets_parse() {
        let t = target_of("docker://registry.internal:5000/mirror/site/").unwrap();
        assert_eq!(t.registry, "registry.internal:5000");
        assert_eq!(t.prefix, "mirror/site");
        assert_eq!(target_of("localhost").unwrap().prefix, "");
        assert!(target_of("myregistry/prefix")
            .unwrap_err()
            .to_string()
            .contains("does not look like a registry host"));
        assert!(target_of("reg.io/Upper").is_err());
        assert!(target_of("").is_err());
    }

    #[test]
    fn tags_are_kept_and_digests_pinned() {
        let t = target_of("reg.io:5000/air").unwrap();
        let (push_to, printed) = t.map(&image("docker.io/library/alpine:3.20")).unwrap();
        assert_eq!(push_to, "reg.io:5000/air/library/alpine:3.20");
        assert_eq!(printed, format!("reg.io:5000/air/library/alpine:3.20@{D}"));
        let (push_to, printed) = t.map(&image(&format!("ghcr.io/a/b@{D}"))).unwrap();
        assert_eq!(push_to, format!("reg.io:5000/air/a/b@{D}"));
        assert_eq!(printed, push_to);
        let t = target_of("reg.io").unwrap();
        let (push_to, _) = t.map(&image(&format!("ghcr.io/a/b:v1@{D}"))).unwrap();
        assert_eq!(push_to, "reg.io/a/b:v1");
    }

    #[test]
    fn mirror_hints_carry_the_prefix() {
        let t = target_of("reg.io:5000/air/gap").unwrap();
        assert_eq!(
            mirror_hint(&t, "docker.io", Scheme::Https),
            "Talos mirror for `docker.io`: endpoint `https://reg.io:5000/v2/air/gap` with `overridePath: true`"
        );
        let t = target_of("reg.io").unwrap();
        assert_eq!(
            mirror_hint(&t, "ghcr.io", Scheme::Https),
            "Talos mirror for `ghcr.io`: endpoint `https://reg.io`"
        );
        // A registry that answered over plain HTTP.
        assert_eq!(
            mirror_hint(&t, "ghcr.io", Scheme::Http),
            "Talos mirror for `ghcr.io`: endpoint `http://reg.io`"
        );
        let t = target_of("127.0.0.1:5000/air").unwrap();
        assert_eq!(
            mirror_hint(&t, "docker.io", Scheme::Http),
            "Talos mirror for `docker.io`: endpoint `http://127.0.0.1:5000/v2/air` with `overridePath: true`"
        );
    }

    #[test]
    fn colliding_tags_are_refused() {
        let t = target_of("reg.io").unwrap();
        let mut other = image("ghcr.io/acme/x:1");
        other.digest = format!("sha256:{}", "1".repeat(64)).parse().unwrap();
        let images = [image("docker.io/acme/x:1"), other];
        assert!(plan(&t, &images)
            .unwrap_err()
            .to_string()
            .contains("would both be pushed"));
        let same = [image("docker.io/acme/x:1"), image("ghcr.io/acme/x:1")];
        assert_eq!(plan(&t, &same).unwrap().len(), 2);
    }
}
