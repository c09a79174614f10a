//! Open an extension image wherever it lives (`oci:`, `oci-archive:`; registries through
//! `crate::registry`) as a list of per-platform images, flatten one into a tree for validation,
//! and describe it all for `talext inspect`.

use serde::Serialize;

use crate::error::{Error, IoContext, Result};
use crate::oci::layout::Layout;
use crate::oci::types::ConfigSummary;
use crate::oci::{self, Descriptor, Digest, Index, Manifest};
use crate::registry::RegistryOptions;
use crate::rootfs::{NodeKind, Tree};
use crate::source;
use crate::store::source::Source;
use crate::transport::Location;

/// An image opened from a store, with every platform image it names.
pub struct Opened {
    pub label: String,
    /// Where the layers are read from when a platform image is flattened.
    pub source: Source,
    /// What the user named: an index or a single manifest.
    pub root: Descriptor,
    pub images: Vec<PlatformImage>,
    /// Problems with the image's structure (not its contents), as `(rule, message)`.
    pub structure: Vec<(&'static str, String)>,
}

pub struct PlatformImage {
    pub descriptor: Descriptor,
    pub manifest: Manifest,
    pub config: ConfigSummary,
}

impl PlatformImage {
    /// `os/arch` from the config (what the image says it is).
    pub fn platform(&self) -> String {
        format!("{}/{}", self.config.os, self.config.architecture)
    }
}

/// Open `loc`: an `oci:` layout, an `oci-archive:`, or a registry image. Only manifests and
/// configs are read here; a platform's layers are read when it is flattened, a registry's
/// streamed from its answers once (nothing is pulled into a temporary layout first).
pub fn open(loc: &Location, registry: &RegistryOptions) -> Result<Opened> {
    match loc {
        Location::Registry(r) => {
            let src = Source::open(loc, registry)?
                .ok_or_else(|| Error::internal("a registry location opens as a source"))?;
            let label = format!("docker://{r}");
            let (root, images, structure) = collect_root(&src, &label)?;
            // A registry image has no `index.json` of its own: the layout check does not apply.
            Ok(Opened {
                label,
                source: src,
                root,
                images,
                structure,
            })
        }
        Location::Oci { .. } | Location::OciArchive { .. } => match Source::open(loc, registry)? {
            Some(Source::Layout { layout, tag, .. }) => {
                open_layout(layout, tag.as_deref(), loc.to_string())
            }
            _ => Err(Error::internal("a layout location opens as a layout")),
        },
        other => Err(Error::input(format!("`{other}` is not an image location"))),
    }
}

/// Every image the root document of `src` names, with its descriptor.
type Collected = (Descriptor, Vec<PlatformImage>, Vec<(&'static str, String)>);

fn collect_root(src: &Source, label: &str) -> Result<Collected> {
    let root = src.root()?;
    let digest: Digest = root.digest.parse().map_err(|_| {
        Error::input(format!(
            "`{label}` answered with a bad digest `{}`",
            root.digest
        ))
    })?;
    let desc = Descriptor::new(&root.media_type, digest, root.bytes.len() as u64);
    let (mut images, mut structure) = (Vec::new(), Vec::new());
    let mut seen = std::collections::HashMap::new();
    collect(src, &desc, &mut images, &mut structure, &mut seen, 0)?;
    Ok((desc, images, structure))
}

/// Open the image named `tag` in a layout (also used for images pulled into a local layout).
pub fn open_layout(layout: Layout, tag: Option<&str>, label: String) -> Result<Opened> {
    let root = layout.resolve(tag)?;
    let mut structure = Vec::new();
    let mut images = Vec::new();
    let mut seen = std::collections::HashMap::new();
    let src = Source::Layout {
        layout: layout.clone(),
        tag: None,
        repository: None,
    };
    collect(&src, &root, &mut images, &mut structure, &mut seen, 0)?;
    // The imager's `ociPath` input takes the first `index.json` entry whose platform matches and
    // does not descend into an index (contract §2.1).
    if oci::is_index_type(&root.media_type) {
        let top = layout.index()?;
        for img in &images {
            // What the index says the image is (the imager selects on that), else its config.
            let (os, arch) = match &img.descriptor.platform {
                Some(p) => (p.os.as_str(), p.architecture.as_str()),
                None => (img.config.os.as_str(), img.config.architecture.as_str()),
            };
            let direct = top.manifests.iter().any(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| p.os == os && p.architecture == arch)
            });
            if !direct {
                structure.push((
                    "layout-platform-entry-missing",
                    format!(
                        "`index.json` of `{label}` lists no `{os}/{arch}` image manifest directly; the imager's `ociPath` input cannot use this layout"
                    ),
                ));
            }
        }
    }
    Ok(Opened {
        label,
        source: Source::Layout {
            layout,
            tag: None,
            repository: None,
        },
        root,
        images,
        structure,
    })
}

/// Collect the images `desc` names into `out`. Each document is read once: `seen` maps every
/// digest already visited to its image in `out` (if it is one), so an index that names the same
/// child many times, at several levels, costs one read per distinct document, not one per path.
fn collect(
    src: &Source,
    desc: &Descriptor,
    out: &mut Vec<PlatformImage>,
    structure: &mut Vec<(&'static str, String)>,
    seen: &mut std::collections::HashMap<Digest, Option<usize>>,
    depth: usize,
) -> Result<()> {
    if depth > 4 {
        return Err(Error::input("indexes nested too deeply"));
    }
    if seen.contains_key(&desc.digest) {
        return Ok(());
    }
    seen.insert(desc.digest.clone(), None);
    let bytes = src.manifest(desc)?.bytes;
    let mt = if desc.media_type.is_empty() {
        oci::sniff_media_type(&bytes).unwrap_or_default()
    } else {
        desc.media_type.clone()
    };
    if oci::is_index_type(&mt) {
        let index: Index = serde_json::from_slice(&bytes)
            .map_err(|e| Error::input(format!("index `{}` is not valid: {e}", desc.digest)))?;
        for child in &index.manifests {
            match &child.platform {
                None => structure.push((
                    "index-platform-missing",
                    format!(
                        "index `{}` names manifest `{}` without a platform; the imager treats it as linux/amd64 and skips it for `ociPath`",
                        desc.digest, child.digest
                    ),
                )),
                // Attestations and other non-image entries (buildx writes `unknown/unknown`).
                Some(p) if p.os == "unknown" => continue,
                Some(_) => {}
            }
            collect(src, child, out, structure, seen, depth + 1)?;
            let img = seen.get(&child.digest).copied().flatten().map(|i| &out[i]);
            if let (Some(p), Some(img)) = (&child.platform, img) {
                if p.os != img.config.os || p.architecture != img.config.architecture {
                    structure.push((
                        "config-platform-mismatch",
                        format!(
                            "index entry `{}` says `{p}` but its config says `{}`",
                            child.digest,
                            img.platform()
                        ),
                    ));
                }
            }
        }
        return Ok(());
    }
    if mt == oci::MT_DOCKER_SCHEMA1 || mt == oci::MT_DOCKER_SCHEMA1_SIGNED {
        structure.push((
            "manifest-schema-one",
            format!(
                "`{}` is a Docker schema 1 manifest, which the imager rejects",
                desc.digest
            ),
        ));
        return Ok(());
    }
    if !oci::is_manifest_type(&mt) {
        structure.push((
            "manifest-media-type",
            format!(
                "`{}` has media type `{mt}`, not an image manifest",
                desc.digest
            ),
        ));
        return Ok(());
    }
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| Error::input(format!("manifest `{}` is not valid: {e}", desc.digest)))?;
    let cfg = src.config(&manifest.config)?;
    let config: ConfigSummary = serde_json::from_slice(&cfg).map_err(|e| {
        Error::input(format!(
            "config `{}` is not valid: {e}",
            manifest.config.digest
        ))
    })?;
    // In a layout: present as a regular file of the declared size (a symlink or FIFO is
    // refused, not reported as missing); the bytes are verified when the layer is read.
    if let Source::Layout { layout, .. } = src {
        for l in &manifest.layers {
            layout.open_blob_file(l)?;
        }
    }
    seen.insert(desc.digest.clone(), Some(out.len()));
    out.push(PlatformImage {
        descriptor: desc.clone(),
        manifest,
        config,
    });
    Ok(())
}

/// Flatten one platform image into a tree (regular files staged under `staging`).
pub fn flatten(opened: &Opened, img: &PlatformImage, staging: &std::path::Path) -> Result<Tree> {
    std::fs::create_dir_all(staging).at("creating", staging)?;
    source::image::flatten(
        |d| opened.source.open_blob(d),
        &img.manifest,
        img.config
            .rootfs
            .as_ref()
            .map_or(&[][..], |r| r.diff_ids.as_slice()),
        staging,
        &format!("{} ({})", opened.label, img.platform()),
    )
}

/// `talext inspect` output.
#[derive(Debug, Serialize)]
pub struct Inspection {
    pub source: String,
    pub digest: Digest,
    pub media_type: String,
    /// Whether the layers were read (the extension's manifest, services and tree are shown).
    pub contents: bool,
    pub platforms: Vec<PlatformInspection>,
}

#[derive(Debug, Serialize)]
pub struct PlatformInspection {
    pub platform: String,
    pub digest: Digest,
    pub created: Option<String>,
    pub layers: Vec<LayerInspection>,
    pub manifest: Option<serde_json::Value>,
    pub services: Vec<ServiceInspection>,
    /// `None` when the layers were not read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tree: Option<TreeSummary>,
    /// When the tree is a Talos image cache: the images it holds (checked, see `validate`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_cache: Option<crate::validate::image_cache::Summary>,
}

fn cache_of(tree: &Tree) -> Option<crate::validate::image_cache::Summary> {
    crate::validate::image_cache::is_cache(tree)
        .then(|| crate::validate::image_cache::check(tree).1)
}

#[derive(Debug, Serialize)]
pub struct LayerInspection {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

#[derive(Debug, Serialize)]
pub struct ServiceInspection {
    pub file: String,
    pub definition: serde_json::Value,
}

#[derive(Debug, Default, Serialize)]
pub struct TreeSummary {
    pub directories: u64,
    pub files: u64,
    pub symlinks: u64,
    pub hard_links: u64,
    pub special: u64,
    pub bytes: u64,
    /// Top-level directories under `rootfs/` and their file bytes.
    pub top: Vec<(String, u64)>,
}

/// Describe a tree loaded from an extension image root.
pub fn describe_tree(
    tree: &Tree,
) -> (
    Option<serde_json::Value>,
    Vec<ServiceInspection>,
    TreeSummary,
) {
    let yaml = |bytes: Vec<u8>| -> Option<serde_json::Value> {
        serde_yaml::from_slice::<serde_yaml::Value>(&bytes)
            .ok()
            .and_then(|v| serde_json::to_value(v).ok())
    };
    let manifest = tree.read_all("manifest.yaml").ok().and_then(yaml);
    let mut services = Vec::new();
    for (name, node) in tree.children("rootfs/usr/local/etc/containers") {
        if node.is_file() {
            let path = format!("rootfs/usr/local/etc/containers/{name}");
            if let Some(def) = tree.read_all(&path).ok().and_then(yaml) {
                services.push(ServiceInspection {
                    file: path,
                    definition: def,
                });
            }
        }
    }
    let mut s = TreeSummary::default();
    let mut top: std::collections::BTreeMap<String, u64> = Default::default();
    for (path, node) in &tree.entries {
        match &node.kind {
            NodeKind::Dir => s.directories += 1,
            NodeKind::File { size, .. } => {
                s.files += 1;
                s.bytes += size;
                if let Some(rest) = path.strip_prefix("rootfs/") {
                    let key = rest.split('/').take(3).collect::<Vec<_>>().join("/");
                    *top.entry(key).or_default() += size;
                }
            }
            NodeKind::Symlink { .. } => s.symlinks += 1,
            NodeKind::HardLink { .. } => s.hard_links += 1,
            NodeKind::Special(_) => s.special += 1,
        }
    }
    s.top = top.into_iter().collect();
    (manifest, services, s)
}

/// Inspect a registry image from its manifests and configs alone: no layer is fetched, so the
/// extension's own `manifest.yaml`, services and tree are not shown (`--contents` reads them).
pub fn inspect_metadata(src: &Source, label: String) -> Result<Inspection> {
    let (root, images, _) = collect_root(src, &label)?;
    Ok(Inspection {
        source: label,
        digest: root.digest,
        media_type: root.media_type,
        contents: false,
        platforms: images
            .iter()
            .map(|img| platform_inspection(img, None))
            .collect(),
    })
}

fn platform_inspection(img: &PlatformImage, tree: Option<&Tree>) -> PlatformInspection {
    let (manifest, services, summary) = match tree.map(describe_tree) {
        Some((m, s, t)) => (m, s, Some(t)),
        None => (None, Vec::new(), None),
    };
    PlatformInspection {
        platform: img.platform(),
        digest: img.descriptor.digest.clone(),
        created: img.config.created.clone(),
        layers: img
            .manifest
            .layers
            .iter()
            .map(|l| LayerInspection {
                digest: l.digest.clone(),
                media_type: l.media_type.clone(),
                size: l.size,
            })
            .collect(),
        manifest,
        services,
        tree: summary,
        image_cache: tree.and_then(cache_of),
    }
}

/// Inspect every platform of an opened image.
pub fn inspect(opened: &Opened) -> Result<Inspection> {
    let staging = crate::store::scratch::dir("inspect")?;
    let mut platforms = Vec::new();
    for (i, img) in opened.images.iter().enumerate() {
        let tree = flatten(opened, img, &staging.path().join(i.to_string()))?;
        platforms.push(platform_inspection(img, Some(&tree)));
    }
    Ok(Inspection {
        source: opened.label.clone(),
        digest: opened.root.digest.clone(),
        media_type: opened.root.media_type.clone(),
        contents: true,
        platforms,
    })
}

/// Inspect any location: an image store, or a single tree (directory, `tar:`).
/// A registry image is read from its manifests and configs unless `contents` asks for its
/// layers; local stores are always read whole.
pub fn inspect_location(
    loc: &Location,
    registry: &RegistryOptions,
    contents: bool,
) -> Result<Inspection> {
    let tree_only = |tree: Tree, label: String, digest: Digest| {
        let (manifest, services, summary) = describe_tree(&tree);
        Inspection {
            source: label,
            digest: digest.clone(),
            media_type: "filesystem".into(),
            contents: true,
            platforms: vec![PlatformInspection {
                platform: "unknown".into(),
                digest,
                created: None,
                layers: Vec::new(),
                manifest,
                services,
                tree: Some(summary),
                image_cache: cache_of(&tree),
            }],
        }
    };
    match loc {
        Location::Dir(d) => {
            let tree = source::dir::load(std::path::Path::new(d))?;
            let digest = crate::plan::tree_digest(&tree)?;
            Ok(tree_only(tree, loc.to_string(), digest))
        }
        Location::Tar(file) => {
            let loaded = source::tarball::load(file)?;
            let f = std::fs::File::open(file).at("opening", file)?;
            let (digest, _) = crate::oci::digest::hash_reader(f).at("reading", file)?;
            Ok(tree_only(loaded.tree.clone(), loc.to_string(), digest))
        }
        Location::Registry(r) if !contents => {
            let src = Source::open(loc, registry)?
                .ok_or_else(|| Error::internal("a registry location opens as a source"))?;
            inspect_metadata(&src, format!("docker://{r}"))
        }
        _ => inspect(&open(loc, registry)?),
    }
}

/// Human-readable rendering of an inspection.
pub fn render_text(i: &Inspection) -> String {
    use std::fmt::Write;
    // Names and manifest fields come from the image: escaped, so none can drive the terminal
    // (`--json` carries them exactly).
    let e = |v: &str| crate::rootfs::escape(v);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}\n  digest: {}\n  type:   {}",
        e(&i.source),
        i.digest,
        e(&i.media_type)
    );
    if !i.contents {
        let _ = writeln!(
            s,
            "  layers not read: manifests and configs only (`--contents` reads the extension inside)"
        );
    }
    for p in &i.platforms {
        let _ = writeln!(s, "\n{}  {}", p.platform, p.digest);
        if let Some(c) = &p.created {
            let _ = writeln!(s, "  created: {}", e(c));
        }
        for l in &p.layers {
            let _ = writeln!(
                s,
                "  layer:   {} {} ({} bytes)",
                l.digest,
                e(&l.media_type),
                l.size
            );
        }
        if let Some(m) = &p.manifest {
            let md = &m["metadata"];
            let _ = writeln!(
                s,
                "  extension: {} {} (talos {})",
                e(md["name"].as_str().unwrap_or("?")),
                e(md["version"].as_str().unwrap_or("?")),
                e(md["compatibility"]["talos"]["version"]
                    .as_str()
                    .unwrap_or("any"))
            );
            if let Some(a) = md["author"].as_str() {
                let _ = writeln!(s, "  author:  {}", e(a));
            }
        } else if let Some(c) = &p.image_cache {
            let _ = writeln!(
                s,
                "  image cache: {} image(s), {} blob(s), {} bytes",
                c.images.len(),
                c.blobs,
                c.bytes
            );
            for img in &c.images {
                let _ = writeln!(s, "    {} {}", e(&img.name), img.digest);
            }
        } else if i.contents {
            let _ = writeln!(s, "  extension: no readable manifest.yaml");
        }
        for svc in &p.services {
            let d = &svc.definition;
            let _ = writeln!(
                s,
                "  service: {} ({}) entrypoint {} restart {}",
                e(d["name"].as_str().unwrap_or("?")),
                e(&svc.file),
                e(d["container"]["entrypoint"].as_str().unwrap_or("?")),
                e(d["restart"].as_str().unwrap_or("?"))
            );
        }
        let Some(t) = &p.tree else {
            continue;
        };
        let _ = writeln!(
            s,
            "  tree:    {} files ({} bytes), {} directories, {} symlinks, {} hard links, {} special",
            t.files, t.bytes, t.directories, t.symlinks, t.hard_links, t.special
        );
        for (dir, bytes) in &t.top {
            let _ = writeln!(s, "    rootfs/{}: {bytes} bytes", e(dir));
        }
    }
    s
}
