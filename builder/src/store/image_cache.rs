//! `talext image-cache create`: the image cache Talos boots from (the imager bakes it into boot
//! media; nodes read it from the `IMAGECACHE` volume), in the format `talosctl image
//! cache-create` writes (`siderolabs/talos` `pkg/imager/cache/cache.go` at v1.14.0-rc.1):
//!
//! ```text
//! blob/sha256-<hex>                                  configs and layers (and signature blobs)
//! manifests/<registry>/<repository>/reference/<tag>  the manifest or index the tag names
//! manifests/<registry>/<repository>/digest/sha256-<hex>
//!                                                    that document by digest, and every platform
//!                                                    manifest of it that the cache holds
//! ```
//!
//! A registry `host:port` is written `host_port_` (the cache must fit on vfat), Docker Hub as
//! `docker.io` (`index.docker.io` only when the reference spelled it). `--layout flat` leaves that
//! tree as the output; the default (`oci`) wraps it in an OCI image layout holding one image,
//! annotated with the (first) platform, whose single layer is the tree. Unlike `talosctl`, the
//! output is reproducible: the image's `created` time is `SOURCE_DATE_EPOCH` and the layer is
//! talext's deterministic tar; and images come from any store talext reads: registries, or
//! `oci:` / `oci-archive:` / bundle sources whose tags are the references.
//!
//! With one or several platforms, each image contributes its root document, and for each
//! platform the matching manifest, config and layers; with `all`, every platform of an index
//! and its platform-less children (attestations). With `--signatures`, the cosign signature
//! tags `sha256-<hex>.sig` (or the bare `sha256-<hex>` form) of each root digest are cached too
//! when the source has them, as `talosctl` does.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::oci::{self, Descriptor, Digest, Index, Manifest, Platform};
use crate::registry::{Reference, RegistryClient, RegistryOptions};
use crate::store::layout::Layout;
use crate::store::{scratch, Output};
use crate::transfer::{self, Transfer};
use crate::transport::Location;

/// How the cache is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheLayout {
    /// An OCI image layout with one image whose layer is the cache tree (Talos's default).
    Oci,
    /// The tree itself.
    Flat,
}

/// What to cache and where.
#[derive(Debug, Clone)]
pub struct Request {
    pub images: Vec<String>,
    /// Empty means every platform (`all`).
    pub platforms: Vec<Platform>,
    pub signatures: bool,
    /// Stores to take images from before asking their registry (tags are the references).
    pub sources: Vec<Location>,
    pub layout: CacheLayout,
    pub output: PathBuf,
    pub epoch: u64,
}

/// What was written.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Created {
    pub output: PathBuf,
    /// The wrapping image's manifest digest (`oci` layout only).
    pub digest: Option<String>,
    pub images: usize,
    pub blobs: usize,
    pub signatures: usize,
}

/// The directory of `registry` in the tree (`rewriteRegistry` in `cache.go`).
pub fn registry_dir(registry: &str, original: &str) -> String {
    let original = original.strip_prefix("docker://").unwrap_or(original);
    if registry == crate::registry::reference::DOCKER_HUB {
        return if original.starts_with("index.docker.io/") {
            "index.docker.io".into()
        } else {
            "docker.io".into()
        };
    }
    match registry.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => format!("{host}_{port}_"),
        _ => registry.to_string(),
    }
}

fn digest_name(d: &Digest) -> String {
    format!("sha256-{}", d.hex())
}

/// The cache tree being assembled.
struct Tree {
    root: PathBuf,
    blobs: usize,
}

impl Tree {
    fn write(&self, rel: &Path, bytes: &[u8]) -> Result<()> {
        let p = self.root.join(rel);
        if let Some(d) = p.parent() {
            fs::create_dir_all(d).at("creating", d)?;
        }
        fs::write(&p, bytes).at("writing", &p)?;
        set_mode(&p, 0o644)
    }

    fn blob(&mut self, from: &Layout, desc: &Descriptor) -> Result<()> {
        let dest = self.root.join("blob").join(digest_name(&desc.digest));
        if dest.exists() {
            return Ok(());
        }
        fs::create_dir_all(self.root.join("blob")).at("creating", &self.root)?;
        // Verified as it is copied: the cache is what nodes boot from.
        let mut r = from.open_blob(desc)?;
        let mut w = fs::File::create(&dest).at("creating", &dest)?;
        std::io::copy(&mut r, &mut w).map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => Error::input(e.to_string()),
            _ => Error::Io {
                op: "writing",
                path: dest.clone(),
                source: e,
            },
        })?;
        set_mode(&dest, 0o644)?;
        self.blobs += 1;
        Ok(())
    }

    /// A manifest under `digest/`, with its config and layers.
    fn image(&mut self, from: &Layout, dir: &Path, desc: &Descriptor) -> Result<()> {
        let bytes = from.read_document(&desc.digest)?;
        self.write(&dir.join("digest").join(digest_name(&desc.digest)), &bytes)?;
        let m: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| Error::input(format!("manifest `{}` is not valid: {e}", desc.digest)))?;
        for b in std::iter::once(&m.config).chain(&m.layers) {
            if b.urls.as_ref().is_some_and(|u| !u.is_empty()) {
                continue;
            }
            self.blob(from, b)?;
        }
        Ok(())
    }
}

fn set_mode(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).at("setting the mode of", p)
}

/// Where an image comes from: the first source layout that has a tag for it, else its registry.
fn locate(image: &str, r: &Reference, sources: &[(Location, Layout)]) -> Result<Location> {
    let names = [image.to_string(), r.to_string(), {
        let mut n = r.name();
        if let Some(t) = &r.tag {
            n = format!("{n}:{t}");
        }
        n
    }];
    for (loc, layout) in sources {
        for n in &names {
            if layout.resolve(Some(n)).is_ok() {
                return Ok(match loc {
                    Location::OciArchive { file, .. } => Location::OciArchive {
                        file: file.clone(),
                        tag: Some(n.clone()),
                    },
                    _ => Location::Oci {
                        dir: layout.root().to_path_buf(),
                        tag: Some(n.clone()),
                    },
                });
            }
        }
    }
    Ok(Location::Registry(image.to_string()))
}

/// Create the cache described by `req`.
pub fn create(req: &Request, options: &RegistryOptions, transfer: &Transfer) -> Result<Created> {
    if req.images.is_empty() {
        return Err(Error::input("no images to cache"));
    }
    if req.output.exists()
        && fs::read_dir(&req.output)
            .at("reading", &req.output)?
            .next()
            .is_some()
    {
        return Err(Error::input_hint(
            format!("`{}` exists and is not empty", req.output.display()),
            "give a new directory; an image cache is written whole",
        ));
    }
    let parent = crate::store::layout::parent_of(&req.output);
    // Each source opened once; an archive (a bundle) is read where it lies.
    let mut sources = Vec::new();
    for s in &req.sources {
        match s {
            Location::OciArchive { file, .. } => sources.push((s.clone(), Layout::in_tar(file)?)),
            Location::Oci { dir, .. } => sources.push((s.clone(), Layout::open(dir)?)),
            other => {
                return Err(Error::input_hint(
                    format!("`{other}` cannot be an image-cache source"),
                    "give `oci:DIR` or `oci-archive:FILE` (a bundle is one); registries are asked by the image references",
                ))
            }
        }
    }
    let work = scratch::dir("imgcache")?;
    let pulled = Layout::open_or_create(work.path().join("pulled"))?;
    let staged = scratch::dir_in(&parent, "imgcache")?;
    let mut tree = Tree {
        root: staged.path().join("tree"),
        blobs: 0,
    };
    fs::create_dir_all(tree.root.join("blob")).at("creating", &tree.root)?;
    let mut signatures = 0;
    for (i, image) in req.images.iter().enumerate() {
        let r = Reference::parse(image)?;
        let from = locate(image, &r, &sources)?;
        let tag = format!("image-{i}");
        let pulled_to = Location::Oci {
            dir: pulled.root().to_path_buf(),
            tag: Some(tag.clone()),
        };
        tracing::info!("caching `{image}` from `{from}`");
        let copied = transfer::copy_with(&from, &pulled_to, &[], options, transfer)
            .map_err(|e| prefix(image, e))?;
        if let Some(pin) = &r.digest {
            if *pin != copied.digest {
                return Err(Error::input(format!(
                    "`{image}` is pinned to `{pin}` but its source holds `{}`",
                    copied.digest
                )));
            }
        }
        let root = pulled.resolve(Some(&tag))?;
        let dir = PathBuf::from("manifests")
            .join(registry_dir(&r.registry, image))
            .join(&r.repository);
        let root_bytes = pulled.read_document(&root.digest)?;
        let ref_tag = match (&r.tag, &r.digest) {
            (Some(t), _) => Some(t.clone()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        if let Some(t) = &ref_tag {
            tree.write(&dir.join("reference").join(t), &root_bytes)?;
        }
        tree.write(
            &dir.join("digest").join(digest_name(&root.digest)),
            &root_bytes,
        )?;
        let media_type = oci::sniff_media_type(&root_bytes).unwrap_or(root.media_type.clone());
        if oci::is_index_type(&media_type) {
            let index: Index = serde_json::from_slice(&root_bytes)
                .map_err(|e| Error::input(format!("`{image}`: index is not valid: {e}")))?;
            let mut matched = 0;
            for child in &index.manifests {
                let real = child
                    .platform
                    .as_ref()
                    .filter(|p| p.os != "unknown" && !p.os.is_empty());
                let take = match (real, req.platforms.is_empty()) {
                    (Some(_), true) => true,
                    (Some(p), false) => req.platforms.iter().any(|w| p.matches(w)),
                    // Platform-less children (attestations) come along with `all`.
                    (None, all) => all,
                };
                if take && oci::is_manifest_type(&child.media_type) {
                    tree.image(&pulled, &dir, child)?;
                    matched += usize::from(real.is_some());
                }
            }
            if matched == 0 {
                return Err(Error::input(format!(
                    "`{image}` has no image for the platforms asked for"
                )));
            }
        } else if oci::is_manifest_type(&media_type) {
            tree.image(&pulled, &dir, &root)?;
        } else {
            return Err(Error::input(format!(
                "`{image}` is a `{media_type}`, neither an image nor an index"
            )));
        }
        if req.signatures {
            signatures += cache_signatures(
                &mut tree,
                &r,
                image,
                &from,
                &root.digest,
                &pulled,
                &dir,
                options,
                transfer,
            )?;
        }
    }
    let blobs = tree.blobs;
    let out = match req.layout {
        CacheLayout::Flat => {
            fs::rename(&tree.root, &req.output).at("moving the image cache to", &req.output)?;
            None
        }
        CacheLayout::Oci => Some(wrap(&tree.root, req)?),
    };
    drop(staged);
    Ok(Created {
        output: req.output.clone(),
        digest: out,
        images: req.images.len(),
        blobs,
        signatures,
    })
}

fn prefix(image: &str, e: Error) -> Error {
    match e {
        Error::Input { message, hint } => Error::Input {
            message: format!("`{image}`: {message}"),
            hint,
        },
        other => other,
    }
}

/// The cosign signature tags of `digest`, when the source has them.
#[allow(clippy::too_many_arguments)]
fn cache_signatures(
    tree: &mut Tree,
    r: &Reference,
    image: &str,
    from: &Location,
    digest: &Digest,
    pulled: &Layout,
    dir: &Path,
    options: &RegistryOptions,
    transfer: &Transfer,
) -> Result<usize> {
    let base = digest_name(digest);
    for sig_tag in [format!("{base}.sig"), base.clone()] {
        let sig_from = match from {
            Location::Registry(_) => {
                let client = RegistryClient::new(options, &r.registry)?;
                if client
                    .manifest_digest(&r.repository, &sig_tag, &[])?
                    .is_none()
                {
                    continue;
                }
                Location::Registry(format!("{}/{}:{sig_tag}", r.registry, r.repository))
            }
            Location::Oci { dir: src, .. } => {
                let name = format!("{}:{sig_tag}", r.name());
                if Layout::open(src)?.resolve(Some(&name)).is_err() {
                    continue;
                }
                Location::Oci {
                    dir: src.clone(),
                    tag: Some(name),
                }
            }
            _ => continue,
        };
        let tag = format!("sig-{}", digest.hex());
        let copied = transfer::copy_with(
            &sig_from,
            &Location::Oci {
                dir: pulled.root().to_path_buf(),
                tag: Some(tag.clone()),
            },
            &[],
            options,
            transfer,
        )
        .map_err(|e| prefix(image, e))?;
        let desc = pulled.resolve(Some(&tag))?;
        let bytes = pulled.read_document(&desc.digest)?;
        tree.write(&dir.join("reference").join(&sig_tag), &bytes)?;
        let mt = oci::sniff_media_type(&bytes).unwrap_or(desc.media_type.clone());
        if oci::is_index_type(&mt) {
            tree.write(&dir.join("digest").join(digest_name(&desc.digest)), &bytes)?;
            let index: Index = serde_json::from_slice(&bytes)
                .map_err(|e| Error::input(format!("signature index `{}`: {e}", copied.digest)))?;
            for child in &index.manifests {
                tree.image(pulled, dir, child)?;
            }
        } else {
            tree.image(pulled, dir, &desc)?;
        }
        return Ok(1);
    }
    Ok(0)
}

/// Wrap the tree in an OCI layout: one image with one layer, the platform annotated.
fn wrap(tree_dir: &Path, req: &Request) -> Result<String> {
    let platform = req
        .platforms
        .first()
        .cloned()
        .unwrap_or_else(|| Platform::linux("amd64"));
    let mut tree = crate::source::dir::load(tree_dir)?;
    tree.normalise()?;
    let Some((out, _)) = Output::open(&Location::Oci {
        dir: req.output.clone(),
        tag: None,
    })?
    else {
        return Err(Error::internal("an image cache that is not a layout"));
    };
    let built = crate::image::write_image(out.layout(), &tree, &platform, req.epoch)?;
    let desc = built.descriptor;
    out.commit(&desc, None)?;
    Ok(desc.digest.to_string())
}
