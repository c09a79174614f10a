//! `talext build`: plan → load sources → assemble and validate each platform's tree → write the
//! image into the sink. Nothing is written until every platform has passed validation, and every
//! sink is written to a temporary path first, so a failed build leaves no output behind.

use std::collections::BTreeMap;
use std::fs;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use crate::cache::{Key, LayerCache};
use crate::copy;
use crate::error::{Error, IoContext, Result};
use crate::image;
use crate::layer::LayerInfo;
use crate::oci::layout::Layout;
use crate::oci::{archive, Descriptor, Digest, Platform};
use crate::plan::{self, LoadedSource, Plan, Request};
use crate::progress::Reporter;
use crate::registry::Reference;
use crate::rootfs::Tree;
use crate::talos::receipt::{PlatformDigest, Receipt};
use crate::transport::Location;
use crate::validate;

/// What a build produced.
#[derive(Debug, Clone)]
pub struct Built {
    pub name: String,
    pub version: String,
    pub output: Location,
    /// The index digest (for `tar:` outputs too: the image whose filesystem the tar holds).
    pub digest: Digest,
    /// Each platform's manifest descriptor.
    pub platforms: Vec<Descriptor>,
    /// `registry/repo:tag@sha256:…` when the output is a registry.
    pub reference: Option<String>,
}

impl Built {
    /// What `build` prints on stdout: the pinned reference for a registry, else the digest.
    pub fn stdout_line(&self) -> String {
        self.reference
            .clone()
            .unwrap_or_else(|| self.digest.to_string())
    }

    /// The receipt other commands (`imager-profile`, `config render`) read.
    pub fn receipt(&self) -> Receipt {
        Receipt {
            name: self.name.clone(),
            version: self.version.clone(),
            output: self.output.to_string(),
            reference: self.reference.clone(),
            digest: self.digest.to_string(),
            platforms: self
                .platforms
                .iter()
                .filter_map(|d| {
                    d.platform.as_ref().map(|p| PlatformDigest {
                        os: p.os.clone(),
                        architecture: p.architecture.clone(),
                        digest: d.digest.to_string(),
                    })
                })
                .collect(),
        }
    }
}

/// A platform's assembled tree and the sources its files live in.
pub struct PlatformTree {
    pub platform: Platform,
    pub tree: Tree,
    _sources: BTreeMap<String, LoadedSource>,
}

/// Validate a platform's tree as `talext validate` would (the binaries must match the platform,
/// the name must be the definition's). Findings go to stderr; any error stops the build.
pub fn check(plan: &Plan, pt: &PlatformTree) -> Result<()> {
    let opts = validate::Options {
        talos_version: None,
        arch: Some(pt.platform.architecture.clone()),
        pkg_name: Some(plan.name.clone()),
    };
    let findings = validate::validate_tree(&pt.tree, &opts);
    if findings.is_empty() {
        return Ok(());
    }
    let mut report = validate::Report::new();
    report.push(pt.platform.to_string(), findings);
    eprint!("{}", report.render_text());
    match report.error_count() {
        0 => Ok(()),
        errors => Err(Error::Validation { errors }),
    }
}

/// Load, assemble and check one platform's tree.
fn prepare_platform(req: &Request, plan: &Plan, platform: Platform) -> Result<PlatformTree> {
    let mut sources = BTreeMap::new();
    for (name, loc) in &plan.locations {
        tracing::info!(source = %name, %platform, "loading source");
        sources.insert(
            name.clone(),
            plan::load_source(name, loc, &platform, &req.fetch)?,
        );
    }
    let tree = plan::assemble(plan, &platform, &sources)?;
    let pt = PlatformTree {
        platform,
        tree,
        _sources: sources,
    };
    check(plan, &pt)?;
    Ok(pt)
}

fn parse_platforms(plan: &Plan) -> Result<Vec<Platform>> {
    plan.platforms
        .iter()
        .map(|p| Platform::parse(p).ok_or_else(|| Error::input(format!("bad platform `{p}`"))))
        .collect()
}

/// Run `f` for every item on its own thread; results in input order, the first error (in input
/// order) wins. Platforms are few (two for Talos), so one thread each is the bound.
fn each_concurrently<T: Send, R: Send>(
    items: Vec<T>,
    f: impl Fn(T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    if items.len() <= 1 {
        return items.into_iter().map(f).collect();
    }
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .into_iter()
            .map(|item| s.spawn(move || f(item)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::internal("a build thread panicked")))
            })
            .collect()
    })
}

/// Run the build up to (not including) the sink. Platforms are prepared concurrently.
pub fn prepare(req: &Request) -> Result<(Plan, Vec<PlatformTree>)> {
    let plan = plan::plan(req)?;
    let platforms = parse_platforms(&plan)?;
    let trees = each_concurrently(platforms, |p| prepare_platform(req, &plan, p))?;
    Ok((plan, trees))
}

/// One platform ready to be written: its layer found in the cache, or its tree.
pub enum Prepared {
    Cached {
        platform: Platform,
        layer: LayerInfo,
    },
    Tree {
        tree: Box<PlatformTree>,
        /// Where to record the layer once written.
        key: Option<Key>,
    },
}

/// [`prepare`] through the layer cache: a platform whose inputs have a cached layer loads no
/// source at all (`crate::cache`).
pub fn prepare_cached(req: &Request, cache: Option<&LayerCache>) -> Result<(Plan, Vec<Prepared>)> {
    let plan = plan::plan(req)?;
    let platforms = parse_platforms(&plan)?;
    let reporter = &req.fetch.reporter;
    let prepared = each_concurrently(platforms, |platform| {
        let key = match cache {
            Some(c) => c.key(&plan, &platform)?,
            None => None,
        };
        if let (Some(c), Some(k)) = (cache, &key) {
            if let Some(layer) = c.lookup(k) {
                tracing::info!(%platform, key = k.as_str(), "layer found in the cache");
                reporter.note(&format!("{platform}: cached layer {}", layer.digest));
                return Ok(Prepared::Cached { platform, layer });
            }
        }
        let tree = prepare_platform(req, &plan, platform)?;
        Ok(Prepared::Tree {
            tree: Box::new(tree),
            key,
        })
    })?;
    Ok((plan, prepared))
}

/// Build and write to `output`.
pub fn build(req: &Request, output: &Location) -> Result<Built> {
    if let Location::Tar(_) = output {
        let n = if req.platforms.is_empty() {
            plan::plan(req)?.platforms.len()
        } else {
            req.platforms
                .iter()
                .flat_map(|p| p.split(','))
                .filter(|p| !p.trim().is_empty())
                .count()
        };
        if n != 1 {
            return Err(Error::input_hint(
                "`tar:` output holds one platform's filesystem",
                "select it with `--platform linux/amd64` (or `linux/arm64`)",
            ));
        }
    }
    let cache = match (output, &req.fetch.cache_dir) {
        (Location::Tar(_), _) | (_, None) => None,
        (_, Some(dir)) => Some(LayerCache::new(dir)),
    };
    let (plan, trees) = prepare_cached(req, cache.as_ref())?;
    let w = Writer {
        epoch: plan.source_date_epoch,
        cache: cache.as_ref(),
        reporter: &*req.fetch.reporter,
    };
    let built = |digest: Digest, platforms: Vec<Descriptor>| Built {
        name: plan.name.clone(),
        version: plan.version.clone(),
        output: output.clone(),
        digest,
        platforms,
        reference: None,
    };
    match output {
        Location::Tar(file) => {
            // The printed digest names the image whatever the sink: the image is assembled in a
            // scratch layout for its digests, and its filesystem written as the plain tar, which
            // is renamed into place only when both are done.
            let Some(Prepared::Tree { tree, .. }) = trees.first() else {
                return Err(Error::internal("a `tar:` output needs its tree"));
            };
            let tar = write_tar_temp(&tree.tree, w.epoch, file)?;
            let scratch = tempfile::Builder::new()
                .prefix("talext-tar-")
                .tempdir()
                .at("creating a temporary directory in", std::env::temp_dir())?;
            let layout = Layout::open_or_create(scratch.path().join("layout"))?;
            let (index, platforms) = w.write_images(&layout, trees, None)?;
            image::persist(tar, file)?;
            Ok(built(index, platforms))
        }
        Location::Oci { dir, tag } => {
            let (index, platforms) = write_layout_output(&w, trees, dir, tag.as_deref())?;
            Ok(built(index, platforms))
        }
        Location::OciArchive { file, tag } => {
            let work = tempfile::Builder::new()
                .prefix("talext-archive-")
                .tempdir()
                .at("creating a temporary directory for", file)?;
            let held;
            let layout = if file.exists() {
                held = archive::open(file)?;
                held.layout.clone()
            } else {
                Layout::open_or_create(work.path().join("layout"))?
            };
            let (index, platforms) = w.write_images(&layout, trees, tag.as_deref())?;
            archive::write(&layout, file)?;
            Ok(built(index, platforms))
        }
        Location::Dir(d) => Err(Error::input_hint(
            format!("`{d}` is not an output; outputs are `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]` or `tar:FILE`"),
            "prefix a layout directory with `oci:`",
        )),
        Location::Registry(r) => {
            // Build into a temporary layout, then push it: blobs first, children before the
            // index, the tag last (`crate::copy`).
            let reference = Reference::parse(r)?;
            let work = tempfile::Builder::new()
                .prefix("talext-push-")
                .tempdir()
                .at("creating a temporary directory in", std::env::temp_dir())?;
            let layout = Layout::open_or_create(work.path().join("layout"))?;
            let (index, platforms) = w.write_images(&layout, trees, Some("build"))?;
            let src = Location::Oci { dir: layout.root().to_path_buf(), tag: Some("build".into()) };
            let copied =
                copy::copy_with(&src, output, &[], &req.fetch.registry, &req.fetch.transfer())?;
            if copied.digest != index.as_str() {
                return Err(Error::internal(format!(
                    "the registry holds `{}` where `{index}` was pushed",
                    copied.digest
                )));
            }
            let mut b = built(index, platforms);
            let mut shown = reference.name();
            if let Some(t) = &reference.tag {
                shown = format!("{shown}:{t}");
            }
            b.reference = Some(format!("{shown}@{}", b.digest));
            Ok(b)
        }
    }
}

/// What writing images needs besides the trees.
struct Writer<'a> {
    epoch: u64,
    cache: Option<&'a LayerCache>,
    reporter: &'a dyn Reporter,
}

impl Writer<'_> {
    /// One platform's image: the cached layer linked in, or the tree written (and cached).
    fn write_one(&self, layout: &Layout, p: Prepared) -> Result<Descriptor> {
        let (platform, layer) = match p {
            Prepared::Cached { platform, layer } => {
                if let Some(c) = self.cache {
                    c.materialise(&layer, layout)?;
                }
                (platform, layer)
            }
            Prepared::Tree { tree, key } => {
                tracing::info!(platform = %tree.platform, "writing layer");
                let label = tree.platform.to_string();
                let layer =
                    image::write_layer(layout, &tree.tree, self.epoch, self.reporter, &label)?;
                if let (Some(c), Some(k)) = (self.cache, &key) {
                    // A cache that cannot be written costs the next build time, not this one.
                    if let Err(e) = c.store(k, &layer, layout) {
                        tracing::warn!("could not store the layer in the cache: {e}");
                    }
                }
                (tree.platform.clone(), layer)
            }
        };
        Ok(image::write_image_for(layout, layer, &platform, self.epoch)?.descriptor)
    }

    /// Every platform's image (concurrently), then the index naming them in platform order.
    fn write_images(
        &self,
        layout: &Layout,
        prepared: Vec<Prepared>,
        tag: Option<&str>,
    ) -> Result<(Digest, Vec<Descriptor>)> {
        let manifests = each_concurrently(prepared, |p| self.write_one(layout, p))?;
        let index = image::write_index(layout, &manifests)?;
        image::tag_in_layout(layout, &index, tag)?;
        Ok((index.digest, manifests))
    }
}

/// Into an existing layout, blobs go straight in (they are content-addressed) and `index.json`
/// is replaced atomically at the end; a new layout is written beside the destination and renamed.
fn write_layout_output(
    w: &Writer,
    trees: Vec<Prepared>,
    dir: &Path,
    tag: Option<&str>,
) -> Result<(Digest, Vec<Descriptor>)> {
    if dir.join("oci-layout").exists() {
        let layout = Layout::open(dir)?;
        return w.write_images(&layout, trees, tag);
    }
    if dir.exists() && fs::read_dir(dir).at("reading", dir)?.next().is_some() {
        return Err(Error::input(format!(
            "`{}` exists, is not empty and is not an OCI image layout",
            dir.display()
        )));
    }
    let parent = parent_of(dir);
    fs::create_dir_all(&parent).at("creating", &parent)?;
    let tmp = tempfile::Builder::new()
        .prefix(".talext-")
        .tempdir_in(&parent)
        .at("creating a temporary directory in", &parent)?;
    let layout = Layout::open_or_create(tmp.path().join("layout"))?;
    let out = w.write_images(&layout, trees, tag)?;
    if dir.exists() {
        fs::remove_dir(dir).at("replacing", dir)?;
    }
    fs::rename(layout.root(), dir).at("moving the layout to", dir)?;
    Ok(out)
}

/// Write the plain filesystem tar to a temporary file beside `file`; the caller renames it.
fn write_tar_temp(tree: &Tree, epoch: u64, file: &Path) -> Result<tempfile::NamedTempFile> {
    let parent = parent_of(file);
    fs::create_dir_all(&parent).at("creating", &parent)?;
    let tmp = tempfile::Builder::new()
        .prefix(".talext-")
        .tempfile_in(&parent)
        .at("creating a temporary file in", &parent)?;
    let w = crate::layer::write_tar(tree, epoch, BufWriter::with_capacity(1 << 20, tmp))?;
    w.into_inner()
        .map_err(|e| Error::internal(format!("writing `{}`: {}", file.display(), e.error())))
}

fn parent_of(p: &Path) -> PathBuf {
    match p.parent() {
        Some(x) if !x.as_os_str().is_empty() => x.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Write the plan as YAML (what `talext plan` prints).
pub fn plan_yaml(plan: &Plan) -> Result<String> {
    serde_yaml::to_string(plan).map_err(|e| Error::internal(e.to_string()))
}
