//! `talext build`: plan → load sources → assemble and validate each platform's tree → write the
//! image into the sink. Nothing is written until every platform has passed validation, and every
//! sink is written to a temporary path first, so a failed build leaves no output behind.

use std::collections::BTreeMap;
use std::fs;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use crate::copy;
use crate::error::{Error, IoContext, Result};
use crate::image;
use crate::oci::layout::Layout;
use crate::oci::{archive, Descriptor, Digest, Platform};
use crate::plan::{self, LoadedSource, Plan, Request};
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

/// Run the build up to (not including) the sink.
pub fn prepare(req: &Request) -> Result<(Plan, Vec<PlatformTree>)> {
    let plan = plan::plan(req)?;
    let mut trees = Vec::new();
    for p in &plan.platforms {
        let platform =
            Platform::parse(p).ok_or_else(|| Error::input(format!("bad platform `{p}`")))?;
        let mut sources = BTreeMap::new();
        for (name, loc) in &plan.locations {
            tracing::info!(source = %name, %platform, "loading source");
            sources.insert(
                name.clone(),
                plan::load_source(name, loc, &platform, &req.fetch)?,
            );
        }
        let tree = plan::assemble(&plan, &platform, &sources)?;
        let pt = PlatformTree {
            platform,
            tree,
            _sources: sources,
        };
        check(&plan, &pt)?;
        trees.push(pt);
    }
    Ok((plan, trees))
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
    let (plan, trees) = prepare(req)?;
    let epoch = plan.source_date_epoch;
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
            // scratch layout for its digests, and its filesystem written as the plain tar.
            let scratch = tempfile::Builder::new()
                .prefix("talext-tar-")
                .tempdir()
                .at("creating a temporary directory in", std::env::temp_dir())?;
            let layout = Layout::open_or_create(scratch.path().join("layout"))?;
            let (index, platforms) = write_images(&layout, &trees, epoch, None)?;
            write_tar_output(&trees[0].tree, epoch, file)?;
            Ok(built(index, platforms))
        }
        Location::Oci { dir, tag } => {
            let (index, platforms) = write_layout_output(&trees, epoch, dir, tag.as_deref())?;
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
            let (index, platforms) = write_images(&layout, &trees, epoch, tag.as_deref())?;
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
            let (index, platforms) = write_images(&layout, &trees, epoch, Some("build"))?;
            let src = Location::Oci { dir: layout.root().to_path_buf(), tag: Some("build".into()) };
            let copied = copy::copy(&src, output, &[], &req.fetch.registry)?;
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

fn write_images(
    layout: &Layout,
    trees: &[PlatformTree],
    epoch: u64,
    tag: Option<&str>,
) -> Result<(Digest, Vec<Descriptor>)> {
    let mut manifests = Vec::new();
    for t in trees {
        tracing::info!(platform = %t.platform, "writing layer");
        manifests.push(image::write_image(layout, &t.tree, &t.platform, epoch)?.descriptor);
    }
    let index = image::write_index(layout, &manifests)?;
    image::tag_in_layout(layout, &index, tag)?;
    Ok((index.digest, manifests))
}

/// Into an existing layout, blobs go straight in (they are content-addressed) and `index.json`
/// is replaced atomically at the end; a new layout is written beside the destination and renamed.
fn write_layout_output(
    trees: &[PlatformTree],
    epoch: u64,
    dir: &Path,
    tag: Option<&str>,
) -> Result<(Digest, Vec<Descriptor>)> {
    if dir.join("oci-layout").exists() {
        let layout = Layout::open(dir)?;
        return write_images(&layout, trees, epoch, tag);
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
    let out = write_images(&layout, trees, epoch, tag)?;
    if dir.exists() {
        fs::remove_dir(dir).at("replacing", dir)?;
    }
    fs::rename(layout.root(), dir).at("moving the layout to", dir)?;
    Ok(out)
}

fn write_tar_output(tree: &Tree, epoch: u64, file: &Path) -> Result<Digest> {
    let parent = parent_of(file);
    fs::create_dir_all(&parent).at("creating", &parent)?;
    let tmp = tempfile::Builder::new()
        .prefix(".talext-")
        .tempfile_in(&parent)
        .at("creating a temporary file in", &parent)?;
    let w = crate::oci::HashingWriter::new(BufWriter::with_capacity(1 << 20, tmp));
    let w = crate::layer::write_tar(tree, epoch, w)?;
    let (digest, _, buf) = w.finish();
    let tmp = buf
        .into_inner()
        .map_err(|e| Error::internal(format!("writing `{}`: {}", file.display(), e.error())))?;
    tmp.persist(file).map_err(|e| Error::Io {
        op: "writing",
        path: file.to_path_buf(),
        source: e.error,
    })?;
    Ok(digest)
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
