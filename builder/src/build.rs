//! `talext build`: plan → load sources → assemble and validate each platform's tree → write the
//! image into the sink. Nothing is written until every platform has passed validation, and every
//! sink is written to a temporary path first, so a failed build leaves no output behind.

use std::collections::BTreeMap;
use std::fs;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::image;
use crate::oci::layout::Layout;
use crate::oci::{archive, Descriptor, Digest, Platform};
use crate::plan::{self, LoadedSource, Plan, Request};
use crate::rootfs::Tree;
use crate::transport::Location;

/// What a build produced.
#[derive(Debug, Clone)]
pub struct Built {
    pub name: String,
    pub version: String,
    pub output: Location,
    /// The index digest (for `tar:` outputs, the sha256 of the tar).
    pub digest: Digest,
    /// Each platform's manifest descriptor (empty for `tar:`).
    pub platforms: Vec<Descriptor>,
}

/// A platform's assembled tree and the sources its files live in.
pub struct PlatformTree {
    pub platform: Platform,
    pub tree: Tree,
    _sources: BTreeMap<String, LoadedSource>,
}

/// Validation hook: returns an error when the tree must not be written. Findings are reported
/// by the hook itself.
pub type Check<'a> = &'a dyn Fn(&Plan, &PlatformTree) -> Result<()>;

/// Run the build up to (not including) the sink.
pub fn prepare(req: &Request, check: Check<'_>) -> Result<(Plan, Vec<PlatformTree>)> {
    let plan = plan::plan(req)?;
    let mut trees = Vec::new();
    for p in &plan.platforms {
        let platform =
            Platform::parse(p).ok_or_else(|| Error::input(format!("bad platform `{p}`")))?;
        let mut sources = BTreeMap::new();
        for (name, loc) in &plan.locations {
            tracing::info!(source = %name, %platform, "loading source");
            sources.insert(name.clone(), plan::load_source(name, loc, &platform)?);
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
pub fn build(req: &Request, output: &Location, check: Check<'_>) -> Result<Built> {
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
    let (plan, trees) = prepare(req, check)?;
    let epoch = plan.source_date_epoch;
    let built = |digest: Digest, platforms: Vec<Descriptor>| Built {
        name: plan.name.clone(),
        version: plan.version.clone(),
        output: output.clone(),
        digest,
        platforms,
    };
    match output {
        Location::Tar(file) => {
            let digest = write_tar_output(&trees[0].tree, epoch, file)?;
            Ok(built(digest, Vec::new()))
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
        Location::Registry(r) => Err(Error::input(format!(
            "pushing to `{r}` is not supported by this build; write `oci:DIR` and copy it"
        ))),
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
