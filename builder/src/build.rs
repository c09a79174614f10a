//! `talext build`: plan → load sources → assemble and validate each platform's tree → write the
//! image into the sink. Nothing is written until every platform has passed validation, and every
//! sink is written to a temporary path first, so a failed build leaves no output behind.

use std::collections::BTreeMap;
use std::io::BufWriter;
use std::path::Path;

use crate::cache::{Key, LayerCache};
use crate::error::{Error, Result};
use crate::image;
use crate::layer::LayerInfo;
use crate::oci::layout::Layout;
use crate::oci::{Descriptor, Digest, Platform};
use crate::plan::{self, LoadedSource, Plan, Request};
use crate::progress::Reporter;
use crate::registry::Reference;
use crate::rootfs::Tree;
use crate::store::layout::parent_of;
use crate::store::{scratch, Output};
use crate::talos::receipt::{PlatformDigest, Receipt};
use crate::transfer;
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
    let mut findings = validate::validate_tree(&pt.tree, &opts);
    if plan.loaded.service.is_some() {
        // The service file's own findings were reported once, against the definition.
        let generated = format!("rootfs/usr/local/etc/containers/{}.yaml", plan.name);
        findings.retain(|f| {
            !(f.path == generated && validate::service::DEFINITION_RULES.contains(&f.rule))
        });
    }
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

/// Plan the build, and check the definition's service file once, before any platform: what
/// Talos would refuse in it is reported at its line of the definition's file, not once per
/// platform against the image path it is copied to.
fn plan_checked(req: &Request) -> Result<Plan> {
    let plan = plan::plan(req)?;
    if let (Some(bytes), Some(file)) = (&plan.loaded.service, &plan.loaded.def.service) {
        let shown = plan.loaded.dir.join(file).display().to_string();
        let findings = validate::service::check_definition(bytes, &shown);
        if !findings.is_empty() {
            let mut report = validate::Report::new();
            report.push(shown.clone(), findings);
            eprint!("{}", report.render_text());
            if report.error_count() > 0 {
                return Err(Error::Validation {
                    errors: report.error_count(),
                });
            }
        }
    }
    Ok(plan)
}

/// Load, assemble and check one platform's tree.
fn prepare_platform(req: &Request, plan: &Plan, platform: Platform) -> Result<PlatformTree> {
    let mut sources = BTreeMap::new();
    for (name, loc) in &plan.locations {
        tracing::info!(source = %name, %platform, "loading source");
        sources.insert(
            name.clone(),
            plan::load_source(name, loc, plan.pin(name).as_ref(), &platform, &req.fetch)?,
        );
    }
    // The sources' entries move into the extension's tree (their staging directories and
    // pulled images are kept while the layer is written): one tree per platform is held.
    let tree = plan::assemble(plan, &platform, &mut sources)?;
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
    let plan = plan_checked(req)?;
    let platforms = parse_platforms(&plan)?;
    let trees = each_concurrently(platforms, |p| prepare_platform(req, &plan, p))?;
    Ok((plan, trees))
}

/// One platform ready to be written: its layer found in the cache, or its tree.
pub enum Prepared {
    Cached {
        platform: Platform,
        layer: LayerInfo,
        key: Key,
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
    let plan = plan_checked(req)?;
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
                return Ok(Prepared::Cached {
                    platform,
                    layer,
                    key: k.clone(),
                });
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

/// What signing a build attests besides the signatures: each platform manifest's SPDX SBOM
/// (the file the image holds) and the SLSA provenance of the whole build.
#[derive(Debug, Clone, Default)]
pub struct AttestationInputs {
    /// `(platform manifest digest, SBOM bytes)`.
    pub sboms: Vec<(Digest, Vec<u8>)>,
    /// The SLSA provenance v1 predicate (no timestamps: the same build attests the same bytes).
    pub provenance: serde_json::Value,
}

/// Build and write to `output`.
pub fn build(req: &Request, output: &Location) -> Result<Built> {
    build_inner(req, output, false).map(|(b, _)| b)
}

/// [`build`] into a registry, also returning what `--sign` attests.
pub fn build_for_signing(req: &Request, output: &Location) -> Result<(Built, AttestationInputs)> {
    build_inner(req, output, true)
}

/// The SLSA provenance v1 predicate of `plan` (`https://slsa.dev/provenance/v1`): the resolved
/// definition as the external parameters, the definition files and every source as resolved
/// dependencies (with the digest a source is pinned by), talext and its build identity as the
/// builder.
pub fn provenance(plan: &Plan) -> Result<serde_json::Value> {
    use serde_json::json;
    let mut deps = Vec::new();
    let mut files = vec![plan.loaded.file.clone()];
    if let Some(s) = &plan.loaded.def.service {
        files.push(plan.loaded.dir.join(s));
    }
    for f in &plan.loaded.def.files {
        files.push(plan.loaded.dir.join(&f.src));
    }
    for f in files {
        let bytes = std::fs::read(&f)
            .map_err(|e| Error::input(format!("reading `{}`: {e}", f.display())))?;
        let name = f
            .strip_prefix(&plan.loaded.dir)
            .unwrap_or(&f)
            .display()
            .to_string();
        deps.push(json!({
            "name": name,
            "digest": {"sha256": Digest::of(&bytes).hex()},
        }));
    }
    for (name, location) in &plan.sources {
        let mut d = json!({"name": name, "uri": location});
        if let Some((_, pin)) = location.rsplit_once("@sha256:") {
            if pin.len() == 64 && pin.bytes().all(|b| b.is_ascii_hexdigit()) {
                d["digest"] = json!({"sha256": pin});
            }
        }
        deps.push(d);
    }
    let definition = serde_json::to_value(plan).map_err(|e| Error::internal(e.to_string()))?;
    Ok(json!({
        "buildDefinition": {
            "buildType": "urn:talext:extension-build:v1",
            "externalParameters": {"definition": definition},
            "internalParameters": {"sourceDateEpoch": plan.source_date_epoch},
            "resolvedDependencies": deps,
        },
        "runDetails": {
            "builder": {
                "id": "urn:talext:builder",
                "version": {"talext": env!("CARGO_PKG_VERSION"), "build": crate::cache::BUILD_ID},
            },
        },
    }))
}

/// The SBOM file an extension image's layer holds (`rootfs/usr/local/share/spdx/NAME.spdx.json`).
fn sbom_in_layer(layout: &Layout, manifest: &Descriptor, name: &str) -> Result<Option<Vec<u8>>> {
    let m: crate::oci::Manifest = serde_json::from_slice(&layout.read_document(&manifest.digest)?)
        .map_err(|e| Error::internal(format!("manifest `{}`: {e}", manifest.digest)))?;
    let want = crate::sbom::path_for(name);
    for l in &m.layers {
        let blob = layout.open_blob(l)?;
        let mut tar = tar::Archive::new(flate2::read::MultiGzDecoder::new(blob));
        let io = |e: std::io::Error| Error::internal(format!("reading layer `{}`: {e}", l.digest));
        for entry in tar.entries().map_err(io)? {
            let mut entry = entry.map_err(io)?;
            let path = entry
                .path()
                .map_err(io)?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_string();
            if path == want {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(
                    &mut std::io::Read::take(&mut entry, 64 << 20),
                    &mut bytes,
                )
                .map_err(io)?;
                return Ok(Some(bytes));
            }
        }
    }
    Ok(None)
}

fn build_inner(
    req: &Request,
    output: &Location,
    attest: bool,
) -> Result<(Built, AttestationInputs)> {
    let mut inputs = AttestationInputs::default();
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
        req,
        plan: &plan,
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
            let scratch = scratch::dir("tar")?;
            let layout = Layout::open_or_create(scratch.path().join("layout"))?;
            let (index, platforms) = w.write_images(&layout, trees)?;
            image::persist(tar, file)?;
            Ok((built(index.digest, platforms), inputs))
        }
        Location::Oci { .. } | Location::OciArchive { .. } => {
            let Some((out, tag)) = Output::open(output)? else {
                return Err(Error::internal("an image output that is not a layout"));
            };
            let (index, platforms) = w.write_images(out.layout(), trees)?;
            out.commit(&index, tag.as_deref())?;
            Ok((built(index.digest, platforms), inputs))
        }
        Location::Dir(d) => Err(Error::input_hint(
            format!("`{d}` is not an output; outputs are `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]` or `tar:FILE`"),
            "prefix a layout directory with `oci:`",
        )),
        Location::Deb(d) => Err(Error::input(format!(
            "`deb:{}` is a source, not an output; outputs are `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]` or `tar:FILE`",
            d.display()
        ))),
        Location::Registry(r) => {
            // Build into a temporary layout, then push it: blobs first, children before the
            // index, the tag last (`crate::transfer`).
            let reference = Reference::parse(r)?;
            let work = scratch::dir("push")?;
            let layout = Layout::open_or_create(work.path().join("layout"))?;
            let (index, platforms) = w.write_images(&layout, trees)?;
            image::tag_in_layout(&layout, &index, Some("build"))?;
            let src = Location::Oci { dir: layout.root().to_path_buf(), tag: Some("build".into()) };
            let copied =
                transfer::copy_with(&src, output, &[], &req.fetch.registry, &req.fetch.transfer())?;
            if copied.digest != index.digest.as_str() {
                return Err(Error::internal(format!(
                    "the registry holds `{}` where `{}` was pushed",
                    copied.digest, index.digest
                )));
            }
            if attest {
                for p in &platforms {
                    if let Some(sbom) = sbom_in_layer(&layout, p, &plan.name)? {
                        inputs.sboms.push((p.digest.clone(), sbom));
                    }
                }
                inputs.provenance = provenance(&plan)?;
            }
            let mut b = built(index.digest, platforms);
            let mut shown = reference.name();
            if let Some(t) = &reference.tag {
                shown = format!("{shown}:{t}");
            }
            b.reference = Some(format!("{shown}@{}", b.digest));
            Ok((b, inputs))
        }
    }
}

/// What writing images needs besides the trees.
struct Writer<'a> {
    epoch: u64,
    cache: Option<&'a LayerCache>,
    reporter: &'a dyn Reporter,
    req: &'a Request,
    plan: &'a Plan,
}

impl Writer<'_> {
    /// One platform's image: the cached layer copied in (verified as it is copied), or the
    /// tree written (and cached). A cached layer that fails verification is evicted and the
    /// platform built from its sources instead.
    fn write_one(&self, layout: &Layout, p: Prepared) -> Result<Descriptor> {
        let (platform, layer) = match p {
            Prepared::Cached {
                platform,
                layer,
                key,
            } => match self.cache {
                Some(c) => match c.materialise(&key, &layer, layout) {
                    Ok(()) => (platform, layer),
                    Err(e) if e.exit_kind() == crate::error::ExitKind::User => {
                        let msg = format!(
                            "{platform}: the cached layer `{}` failed verification and was evicted; rebuilding: {e}",
                            layer.digest
                        );
                        tracing::warn!("{msg}");
                        self.reporter.note(&format!("warning: {msg}"));
                        let tree = prepare_platform(self.req, self.plan, platform)?;
                        return self.write_one(
                            layout,
                            Prepared::Tree {
                                tree: Box::new(tree),
                                key: Some(key),
                            },
                        );
                    }
                    Err(e) => return Err(e),
                },
                None => return Err(Error::internal("a cached layer without a cache")),
            },
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
    ) -> Result<(Descriptor, Vec<Descriptor>)> {
        let manifests = each_concurrently(prepared, |p| self.write_one(layout, p))?;
        let index = image::write_index(layout, &manifests)?;
        Ok((index, manifests))
    }
}

/// Write the plain filesystem tar to a temporary file beside `file`; the caller renames it.
fn write_tar_temp(tree: &Tree, epoch: u64, file: &Path) -> Result<tempfile::NamedTempFile> {
    let tmp = scratch::file_in(&parent_of(file), "tar")?;
    let w = crate::layer::write_tar(tree, epoch, BufWriter::with_capacity(1 << 20, tmp))?;
    w.into_inner()
        .map_err(|e| Error::internal(format!("writing `{}`: {}", file.display(), e.error())))
}

/// Write the plan as YAML (what `talext plan` prints).
pub fn plan_yaml(plan: &Plan) -> Result<String> {
    serde_yaml::to_string(plan).map_err(|e| Error::internal(e.to_string()))
}
