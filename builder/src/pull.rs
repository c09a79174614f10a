//! Registry sources: a pinned image is pulled one platform at a time into a content-addressed
//! cache (an OCI layout under the cache directory, tagged by pinned digest and architecture), so
//! the next build with the same pin reads it from disk. The pin is checked: a reference with both
//! a tag and a digest that the registry does not have fails with both digests named.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::oci::layout::Layout;
use crate::oci::Platform;
use crate::registry::{Reference, RegistryClient, RegistryOptions};
use crate::transfer;
use crate::transport::Location;

/// Where cached sources and layers live: `--cache-dir`, `TALEXT_CACHE_DIR`, then
/// `$XDG_CACHE_HOME/talext`, then `~/.cache/talext`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(d).join("talext"));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|h| PathBuf::from(h).join(".cache/talext"))
}

/// How sources are fetched.
#[derive(Debug, Clone, Default)]
pub struct Fetch {
    pub registry: RegistryOptions,
    /// `None`: no cache (every pull goes to a temporary layout, no layer is cached).
    pub cache_dir: Option<PathBuf>,
    /// Blobs transferred concurrently (0: `transfer::DEFAULT_JOBS`).
    pub jobs: usize,
    /// Where pulls, layer writes and pushes report progress.
    pub reporter: crate::progress::Shared,
}

impl Fetch {
    /// How `copy` should move blobs for this build.
    pub fn transfer(&self) -> transfer::Transfer {
        transfer::Transfer {
            jobs: self.jobs,
            reporter: self.reporter.clone(),
            mounts: None,
        }
    }
}

/// A pulled image: a layout and the tag of the platform image in it.
pub struct Pulled {
    pub layout: Layout,
    pub tag: String,
    /// The reference as the SBOM records it (pinned when the input was).
    pub label: String,
    _tmp: Option<tempfile::TempDir>,
}

/// Pull `reference` for `platform` (or find it in the cache).
pub fn pull(what: &str, reference: &str, platform: &Platform, fetch: &Fetch) -> Result<Pulled> {
    let r = Reference::parse(reference)?;
    let arch = &platform.architecture;
    let (layout, tmp) = match (&fetch.cache_dir, &r.digest) {
        (Some(dir), Some(_)) => {
            let d = dir.join("images");
            (Layout::open_or_create(&d)?, None)
        }
        _ => {
            if r.digest.is_none() {
                tracing::warn!(
                    "{what}: `{reference}` is not pinned by digest; the build is not reproducible"
                );
            }
            let t = crate::store::scratch::dir("pull")?;
            (Layout::open_or_create(t.path().join("layout"))?, Some(t))
        }
    };
    let tag = match &r.digest {
        Some(d) => format!("{}-{arch}", d.replace(':', "-")),
        None => format!("pull-{arch}"),
    };
    let label = r.to_string();
    if tmp.is_none() {
        if let Ok(desc) = layout.resolve(Some(&tag)) {
            match verify_cached(&layout, &desc) {
                Ok(()) => {
                    tracing::info!("{what}: using the cached `{label}`");
                    return Ok(Pulled {
                        layout,
                        tag,
                        label,
                        _tmp: tmp,
                    });
                }
                Err(e) => {
                    let msg = format!(
                        "{what}: the cached `{label}` failed verification and was evicted; pulling it again: {e}"
                    );
                    tracing::warn!("{msg}");
                    fetch.reporter.note(&format!("warning: {msg}"));
                }
            }
        }
    }
    check_pin(what, &r, &fetch.registry)?;
    tracing::info!("{what}: pulling `{label}` for {platform}");
    let dst = Location::Oci {
        dir: layout.root().to_path_buf(),
        tag: Some(tag.clone()),
    };
    transfer::copy_with(
        &Location::Registry(label.clone()),
        &dst,
        std::slice::from_ref(platform),
        &fetch.registry,
        &fetch.transfer(),
    )
    .map_err(|e| match e {
        Error::Input { message, hint } => Error::Input {
            message: format!("{what}: {message}"),
            hint,
        },
        other => other,
    })?;
    Ok(Pulled {
        layout,
        tag,
        label,
        _tmp: tmp,
    })
}

/// Re-hash every blob of a cached image (its manifests, config and layers: a few hundred
/// megabytes at most, read again from the page cache by the flattening that follows). A blob
/// that is missing, truncated or changed is removed, so the pull that follows fetches it again.
fn verify_cached(layout: &Layout, desc: &crate::oci::Descriptor) -> Result<()> {
    let mut stack = vec![(desc.clone(), 0)];
    while let Some((d, depth)) = stack.pop() {
        if depth > crate::oci::MAX_INDEX_DEPTH {
            return Err(Error::input(format!(
                "`{}` nests indexes too deeply",
                d.digest
            )));
        }
        let is_doc =
            crate::oci::is_index_type(&d.media_type) || crate::oci::is_manifest_type(&d.media_type);
        let checked = if is_doc {
            layout.read_document(&d.digest).map(Some)
        } else {
            layout.open_blob(&d).and_then(|mut r| {
                std::io::copy(&mut r, &mut std::io::sink())
                    .map(|_| None)
                    .map_err(|e| Error::input(e.to_string()))
            })
        };
        let bytes = match checked {
            Ok(b) => b,
            Err(e) => {
                let _ = std::fs::remove_file(layout.blob_path(&d.digest));
                return Err(e);
            }
        };
        if let Some(bytes) = bytes {
            if let Ok(i) = serde_json::from_slice::<crate::oci::Index>(&bytes) {
                stack.extend(i.manifests.into_iter().map(|c| (c, depth + 1)));
            }
            if let Ok(m) = serde_json::from_slice::<crate::oci::Manifest>(&bytes) {
                stack.push((m.config, depth + 1));
                stack.extend(m.layers.into_iter().map(|c| (c, depth + 1)));
            }
        }
    }
    Ok(())
}

/// A reference with a tag and a digest: when the registry does not have the pinned digest, say
/// what the tag points at now, so the user sees both digests.
fn check_pin(what: &str, r: &Reference, options: &RegistryOptions) -> Result<()> {
    let (Some(tag), Some(pin)) = (&r.tag, &r.digest) else {
        return Ok(());
    };
    let client = RegistryClient::new(options, &r.registry)?;
    if client.manifest_digest(&r.repository, pin, &[])?.is_some() {
        return Ok(());
    }
    let now = client.manifest_digest(&r.repository, tag, &[])?;
    Err(Error::input_hint(
        format!(
            "{what}: `{}/{}` has no manifest `{pin}` (the pinned digest); tag `{tag}` resolves to {}",
            r.registry,
            r.repository,
            now.map(|d| format!("`{d}`")).unwrap_or_else(|| "nothing".into())
        ),
        "check the pin: `skopeo inspect --format '{{.Digest}}' docker://REF` shows the digest a tag points at",
    ))
}
