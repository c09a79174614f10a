//! Resolve a definition against command-line overrides into a build plan (what `talext plan`
//! prints), then load each source for a platform and assemble the extension's tree:
//! `manifest.yaml` + `rootfs/` with the service file, the payload, extra files and the SBOM.

use std::collections::BTreeMap;
use std::path::PathBuf;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

use crate::definition::{self, check_platforms, parse_mode, rootfs_dest, ExtensionDef};
use crate::error::{Error, IoContext, Result};
use crate::oci::{layout::Layout, Digest, Platform};
use crate::pull::{self, Fetch};
use crate::registry::Reference;
use crate::rootfs::{join, Content, LoadNote, Node, NodeKind, Tree};
use crate::sbom::{self, SourceRecord};
use crate::source;
use crate::store::source::Source;
use crate::transport::Location;

/// What the user asked for.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub dir: PathBuf,
    /// `NAME=LOCATION` overrides.
    pub sources: Vec<String>,
    pub version: Option<String>,
    /// Platforms (each `linux/ARCH`); empty means the definition's.
    pub platforms: Vec<String>,
    pub epoch: u64,
    /// How registry sources are fetched and cached.
    pub fetch: Fetch,
}

/// The resolved definition.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub definition: PathBuf,
    pub name: String,
    pub version: String,
    pub compatibility: String,
    pub platforms: Vec<String>,
    pub source_date_epoch: u64,
    pub sources: BTreeMap<String, String>,
    pub payload: Vec<definition::PayloadDef>,
    pub files: Vec<definition::FileDef>,
    #[serde(skip)]
    pub locations: BTreeMap<String, Location>,
    #[serde(skip)]
    pub loaded: definition::Loaded,
}

/// The definition's `version:` with `{source.NAME.tag}` (the tag the source `NAME` is pinned
/// at in the definition, e.g. `v1.102.5`) and `{source.NAME.version}` (that tag without a
/// leading `v`) filled in, so bumping the pinned `location:` (what Renovate does) is the one line
/// that changes a release. The definition's own location counts, not a `--source` override: an
/// offline rebuild from a copy keeps the version.
pub fn version_from_sources(
    template: &str,
    def: &ExtensionDef,
    file: &std::path::Path,
) -> Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{source.") {
        out.push_str(&rest[..start]);
        let after = &rest[start + "{source.".len()..];
        let end = after.find('}').ok_or_else(|| {
            Error::input(format!(
                "`{}`: field `version`: an unclosed `{{source.`",
                file.display()
            ))
        })?;
        let (name, field) = after[..end].rsplit_once('.').unwrap_or((&after[..end], ""));
        let source = def.sources.get(name).ok_or_else(|| {
            Error::input(format!(
                "`{}`: field `version` names the source `{name}`, which the definition does not have",
                file.display()
            ))
        })?;
        let dir = file.parent().unwrap_or(std::path::Path::new("."));
        // Only a registry reference that spells its tag has one (no implicit `latest`).
        let tag = match Location::parse(&source.location, dir) {
            Ok(Location::Registry(r)) => {
                let name = r.split('@').next().unwrap_or_default();
                let last = name.rsplit('/').next().unwrap_or_default();
                last.split_once(':').map(|(_, t)| t.to_string())
            }
            _ => None,
        };
        let tag = tag.ok_or_else(|| {
            Error::input_hint(
                format!(
                    "`{}`: field `version` takes the tag of the source `{name}`, but `{}` has no tag",
                    file.display(),
                    source.location
                ),
                "pin the source as `REGISTRY/REPO:TAG@sha256:…`",
            )
        })?;
        match field {
            "tag" => out.push_str(&tag),
            "version" => out.push_str(
                tag.strip_prefix('v')
                    .filter(|t| t.starts_with(|c: char| c.is_ascii_digit()))
                    .unwrap_or(&tag),
            ),
            other => {
                return Err(Error::input(format!(
                    "`{}`: field `version`: `{{source.{name}.{other}}}` is not known (`tag` or `version`)",
                    file.display()
                )))
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

pub fn plan(req: &Request) -> Result<Plan> {
    let loaded = definition::load(&req.dir)?;
    let def = &loaded.def;
    let cwd = std::env::current_dir().at("reading", ".")?;
    let mut locations = BTreeMap::new();
    for (name, s) in &def.sources {
        locations.insert(name.clone(), Location::parse(&s.location, &loaded.dir)?);
    }
    for o in &req.sources {
        let (name, loc) = o.split_once('=').ok_or_else(|| {
            Error::input_hint(
                format!("`--source {o}` is not `NAME=LOCATION`"),
                "e.g. `--source tailscale=payload/{arch}`",
            )
        })?;
        if !def.sources.contains_key(name) {
            return Err(Error::input(format!(
                "`--source {o}`: the definition has no source named `{name}` (sources: {})",
                def.sources.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        locations.insert(name.to_string(), Location::parse(loc, &cwd)?);
    }
    let mut platforms: Vec<String> = if req.platforms.is_empty() {
        def.platforms.clone()
    } else {
        req.platforms
            .iter()
            .flat_map(|p| p.split(','))
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect()
    };
    platforms.dedup();
    check_platforms(&platforms).map_err(|m| Error::input(format!("`--platform`: {m}")))?;
    if let Some(extra) = platforms.iter().find(|p| !def.platforms.contains(p)) {
        return Err(Error::input(format!(
            "`--platform {extra}`: the definition `{}` builds only {}",
            loaded.file.display(),
            def.platforms.join(", ")
        )));
    }
    let version = match &req.version {
        Some(v) => v.clone(),
        None => version_from_sources(&def.version, def, &loaded.file)?,
    };
    if version.trim().is_empty() {
        return Err(Error::input("`--version` must not be empty"));
    }
    Ok(Plan {
        definition: loaded.file.clone(),
        name: def.name.clone(),
        version,
        compatibility: def.compatibility.talos.clone(),
        platforms,
        source_date_epoch: req.epoch,
        sources: locations
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect(),
        payload: def.payload.clone(),
        files: def.files.clone(),
        locations,
        loaded,
    })
}

/// `talext plan --json`: the definition file, the epoch, and the resolved definition in the
/// definition's own format under `extension`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanReport {
    pub definition: PathBuf,
    pub source_date_epoch: u64,
    pub extension: ExtensionDef,
}

impl Plan {
    /// The definition with the overrides applied (`--version`, `--platform`, `--source`), in
    /// the format of `extension.yaml`, so that what `plan` prints builds again. A source left
    /// alone keeps the location as written (relative to the definition directory); an
    /// overridden one is written resolved, with an absolute path.
    pub fn resolved(&self) -> ExtensionDef {
        let mut def = self.loaded.def.clone();
        def.version = self.version.clone();
        def.platforms = self.platforms.clone();
        for (name, source) in def.sources.iter_mut() {
            let Some(loc) = self.locations.get(name) else {
                continue;
            };
            let as_written = Location::parse(&source.location, &self.loaded.dir).ok();
            if as_written.as_ref() != Some(loc) {
                source.location = loc.to_string();
            }
        }
        def
    }

    /// The definition's own registry reference for source `name` when it pins a digest: what
    /// the SBOM records for any copy of that image (`load_source`).
    pub fn pin(&self, name: &str) -> Option<Reference> {
        let s = self.loaded.def.sources.get(name)?;
        match Location::parse(&s.location, &self.loaded.dir).ok()? {
            Location::Registry(r) => Reference::parse(&r).ok().filter(|r| r.digest.is_some()),
            _ => None,
        }
    }

    /// What `talext plan --json` prints.
    pub fn report(&self) -> PlanReport {
        PlanReport {
            definition: self.definition.clone(),
            source_date_epoch: self.source_date_epoch,
            extension: self.resolved(),
        }
    }

    /// What `talext plan` prints: a comment naming the definition and epoch, then the resolved
    /// definition as YAML that `talext build` reads back.
    pub fn to_yaml(&self) -> Result<String> {
        let body =
            serde_yaml::to_string(&self.resolved()).map_err(|e| Error::internal(e.to_string()))?;
        Ok(format!(
            "# resolved from `{}` with SOURCE_DATE_EPOCH={}\n{body}",
            self.definition.display(),
            self.source_date_epoch
        ))
    }
}

/// A source loaded for one platform. Holds the temporary directories its files live in.
pub struct LoadedSource {
    pub tree: Tree,
    pub record: SourceRecord,
    _staging: Option<TempDir>,
    _pulled: Option<pull::Pulled>,
}

/// What the SBOM records a source image as: a copy of the definition's pinned image (the
/// definition pins `@sha256:…` and the copy's index or manifest has that digest) is recorded as
/// the pinned reference, whatever transport delivered it, so a build from an `oci:` layout, an
/// `oci-archive:` or a mirror makes the same image as one that pulls the pin. Otherwise the
/// registry reference it was pulled by, or nothing for a local copy.
fn recorded_image(
    what: &str,
    pin: Option<&Reference>,
    pulled: Option<Reference>,
    digests: &[&str],
) -> Option<Reference> {
    if let Some(pin) = pin {
        let wanted = pin.digest.as_deref().unwrap_or_default();
        if digests.contains(&wanted) {
            return Some(pin.clone());
        }
        tracing::warn!(
            "{what}: the image given is not the definition's pinned `{pin}`; the SBOM records it as given"
        );
    }
    pulled
}

/// Load a source's tree for `platform`. `pin` is the definition's pinned reference for it
/// ([`Plan::pin`]), which an overriding copy of the same image is recorded as.
pub fn load_source(
    name: &str,
    loc: &Location,
    pin: Option<&Reference>,
    platform: &Platform,
    fetch: &Fetch,
) -> Result<LoadedSource> {
    let arch = &platform.architecture;
    let what = format!("source `{name}` ({platform})");
    let from_layout =
        |layout: &Layout, tag: Option<&str>, pulled: Option<Reference>| -> Result<LoadedSource> {
            let desc = layout
                .resolve(tag)
                .map_err(|e| Error::input(format!("{what}: {e}")))?;
            let resolved = source::image::resolve(layout, &desc, platform, &what)?;
            let staging = crate::store::scratch::dir("source")?;
            let diff_ids = resolved
                .config
                .rootfs
                .as_ref()
                .map_or(&[][..], |r| r.diff_ids.as_slice());
            let mut tree = source::image::flatten(
                |d| layout.open_blob(d),
                &resolved.manifest,
                diff_ids,
                staging.path(),
                &what,
            )?;
            tree.resolve_hard_links()?;
            let pulled_digest = pulled.as_ref().and_then(|r| r.digest.clone());
            let mut digests = vec![resolved.root.as_str(), resolved.manifest_digest.as_str()];
            digests.extend(pulled_digest.as_deref());
            let image = recorded_image(&what, pin, pulled, &digests);
            Ok(LoadedSource {
                tree,
                record: SourceRecord {
                    name: name.to_string(),
                    image,
                    digest: resolved.manifest_digest,
                },
                _staging: Some(staging),
                _pulled: None,
            })
        };
    match loc {
        Location::Dir(template) => {
            let dir = Location::dir_for(template, arch);
            if !dir.is_dir() {
                return Err(Error::input_hint(
                    format!("{what}: directory `{}` does not exist", dir.display()),
                    if template.contains("{arch}") {
                        "`{arch}` is replaced by `amd64` or `arm64`".to_string()
                    } else {
                        "add `{arch}` to the path when the trees differ per platform".to_string()
                    },
                ));
            }
            let mut tree = source::dir::load(&dir)?;
            tree.resolve_hard_links()?;
            let digest = tree_digest(&tree)?;
            Ok(LoadedSource {
                tree,
                record: SourceRecord {
                    name: name.to_string(),
                    image: None,
                    digest,
                },
                _staging: None,
                _pulled: None,
            })
        }
        Location::Oci { .. } | Location::OciArchive { .. } => {
            match Source::open(loc, &fetch.registry)? {
                Some(Source::Layout { layout, tag, .. }) => {
                    from_layout(&layout, tag.as_deref(), None)
                }
                _ => Err(Error::internal("a layout location opens as a layout")),
            }
        }
        Location::Tar(file) | Location::Deb(file) => {
            let file = Location::file_for(file, arch);
            if !file.is_file() {
                return Err(Error::input(format!(
                    "{what}: `{}` does not exist",
                    file.display()
                )));
            }
            let loaded = match loc {
                Location::Deb(_) => source::deb::load(&file)?,
                _ => source::tarball::load_source(&file)?,
            };
            let f = std::fs::File::open(&file).at("opening", &file)?;
            let (digest, _) = crate::oci::digest::hash_reader(f).at("reading", &file)?;
            let (mut tree, staging) = loaded.into_parts();
            tree.resolve_hard_links()?;
            Ok(LoadedSource {
                tree,
                record: SourceRecord {
                    name: name.to_string(),
                    image: None,
                    digest,
                },
                _staging: staging,
                _pulled: None,
            })
        }
        Location::Registry(r) => {
            let pulled = pull::pull(&what, r, platform, fetch)?;
            let reference = Reference::parse(&pulled.label)?;
            let mut src = from_layout(&pulled.layout, Some(&pulled.tag), Some(reference))?;
            src._pulled = Some(pulled);
            Ok(src)
        }
    }
}

/// A content digest of a directory tree, for the SBOM: every entry's path, type, mode and (for
/// files) the sha256 of its bytes, in order. The files are hashed on every core, and each file's
/// first bytes are noted as it is read (see [`crate::rootfs::DiskFile`]).
pub fn tree_digest(tree: &Tree) -> Result<Digest> {
    let files: Vec<(&String, &Content)> = tree
        .entries
        .iter()
        .filter_map(|(path, node)| match &node.kind {
            NodeKind::File { content, .. } => Some((path, content)),
            _ => None,
        })
        .collect();
    // Raw sha256 values (32 bytes a file here, not a digest string).
    // Taken 256 files at a time, so the workers rarely meet on the queue.
    let chunks: Vec<&[(&String, &Content)]> = files.chunks(256).collect();
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let sums = crate::transfer::in_workers(&chunks, jobs, |chunk| {
        chunk
            .iter()
            .map(|(path, content)| {
                hash_content(content).map_err(|e| Error::internal(format!("hashing `{path}`: {e}")))
            })
            .collect::<Result<Vec<[u8; 32]>>>()
    })?;
    let mut sums = sums.iter().flatten();
    let mut h = Sha256::new();
    for (path, node) in &tree.entries {
        h.update(path.as_bytes());
        h.update([0]);
        match &node.kind {
            NodeKind::Dir => h.update(format!("d {:o}", node.mode)),
            NodeKind::File { .. } => {
                let sum = sums
                    .next()
                    .ok_or_else(|| Error::internal("a file of the tree was not hashed"))?;
                h.update(format!("f {:o} sha256:{}", node.mode, hex::encode(sum)));
            }
            NodeKind::Symlink { target } => h.update(format!("l {target}")),
            NodeKind::HardLink { target } => h.update(format!("h {target}")),
            NodeKind::Special(s) => h.update(format!("s {}", s.describe())),
        }
        h.update([0]);
    }
    Ok(Digest::from_sha256(&h.finalize()))
}

/// The sha256 of a file's bytes; a file on disk has its first bytes noted on the way.
fn hash_content(content: &Content) -> std::io::Result<[u8; 32]> {
    use std::io::Read as _;
    let file = match content {
        Content::Inline(bytes) => return Ok(Sha256::digest(bytes).into()),
        Content::Disk(file) => file,
    };
    let mut f = std::fs::File::open(file.path())?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut h = Sha256::new();
    let mut head = Vec::with_capacity(crate::rootfs::HEAD_LEN);
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if head.len() < crate::rootfs::HEAD_LEN {
            let take = n.min(crate::rootfs::HEAD_LEN - head.len());
            head.extend_from_slice(&buf[..take]);
        }
        h.update(&buf[..n]);
    }
    file.note_head(&head);
    Ok(h.finalize().into())
}

#[derive(Serialize)]
struct ManifestYaml<'a> {
    version: &'static str,
    metadata: Metadata<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Metadata<'a> {
    name: &'a str,
    version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    author: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    compatibility: CompatYaml<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    extra_info: Option<&'a str>,
}

#[derive(Serialize)]
struct CompatYaml<'a> {
    talos: TalosYaml<'a>,
}

#[derive(Serialize)]
struct TalosYaml<'a> {
    version: &'a str,
}

/// `manifest.yaml` for the image root (contract §1).
pub fn manifest_yaml(def: &ExtensionDef, version: &str) -> Result<Vec<u8>> {
    let m = ManifestYaml {
        version: "v1alpha1",
        metadata: Metadata {
            name: &def.name,
            version,
            author: def.author.as_deref(),
            description: def.description.as_deref().map(str::trim_end),
            compatibility: CompatYaml {
                talos: TalosYaml {
                    version: &def.compatibility.talos,
                },
            },
            extra_info: def.extra_info.as_deref(),
        },
    };
    serde_yaml::to_string(&m)
        .map(String::into_bytes)
        .map_err(|e| Error::internal(format!("serialising manifest.yaml: {e}")))
}

/// Assemble the extension tree for one platform from its loaded sources.
pub fn assemble(
    plan: &Plan,
    platform: &Platform,
    sources: &mut BTreeMap<String, LoadedSource>,
) -> Result<Tree> {
    let def = &plan.loaded.def;
    let mut tree = Tree::new();
    tree.insert(
        "manifest.yaml",
        Node::inline(manifest_yaml(def, &plan.version)?, 0o644),
    );
    tree.insert("rootfs", Node::dir(0o755));
    if let Some(service) = &plan.loaded.service {
        tree.insert(
            &format!("rootfs/usr/local/etc/containers/{}.yaml", def.name),
            Node::inline(service.clone(), 0o644),
        );
    }
    for (i, p) in def.payload.iter().enumerate() {
        let last_use = !def.payload[i + 1..].iter().any(|q| q.source == p.source);
        let src = sources
            .get_mut(&p.source)
            .ok_or_else(|| Error::internal(format!("source `{}` was not loaded", p.source)))?;
        let dest = join("rootfs", &rootfs_dest(&p.to).map_err(Error::input)?);
        graft(&mut tree, &mut src.tree, p, &dest, last_use)?;
    }
    carry_notes(&mut tree, def, &*sources)?;
    for f in &def.files {
        let dest = join("rootfs", &rootfs_dest(&f.to).map_err(Error::input)?);
        if tree.get(&dest).is_some() {
            return Err(Error::input(format!(
                "`files` entry `{}` collides with `{dest}` from the payload",
                f.src
            )));
        }
        let src = plan.loaded.dir.join(&f.src);
        let size = std::fs::metadata(&src).at("reading", &src)?.len();
        let mode = f
            .mode
            .as_deref()
            .map(parse_mode)
            .transpose()
            .map_err(Error::input)?
            .unwrap_or(0o644);
        tree.insert(
            &dest,
            Node {
                kind: NodeKind::File {
                    content: Content::Disk(crate::rootfs::DiskFile::new(src)),
                    size,
                },
                mode,
            },
        );
    }
    let records: Vec<SourceRecord> = sources.values().map(|s| s.record.clone()).collect();
    // The payload's packages and modules, read from the tree before the SBOM joins it.
    let contents = sbom::scan(&tree)?;
    let cpe = def
        .cpe
        .as_ref()
        .map(|c| c.replace("{version}", &plan.version));
    let sbom = sbom::render(&sbom::Input {
        name: &def.name,
        version: &plan.version,
        license: def.license.as_deref(),
        cpe,
        homepage: def.homepage.as_deref(),
        supplier: def.author.as_deref(),
        platform: &platform.to_string(),
        epoch: plan.source_date_epoch,
        sources: &records,
        contents: &contents,
    })?;
    let sbom_path = sbom::path_for(&def.name);
    if tree.get(&sbom_path).is_some() {
        return Err(Error::input(format!(
            "the payload already has `{sbom_path}`, where talext writes the SBOM"
        )));
    }
    tree.insert(&sbom_path, Node::inline(sbom, 0o644));
    tree.normalise()?;
    Ok(tree)
}

fn globset(patterns: &[String]) -> Result<Option<GlobSet>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let g = globset::GlobBuilder::new(p.trim_start_matches('/'))
            .literal_separator(true)
            .build()
            .or_else(|_| Glob::new(p))
            .map_err(|e| Error::input(format!("glob `{p}`: {e}")))?;
        b.add(g);
    }
    b.build().map(Some).map_err(|e| Error::input(e.to_string()))
}

/// `path` or one of its ancestors matches.
fn matches_self_or_ancestor(set: &GlobSet, path: &str) -> bool {
    let mut p = path;
    loop {
        if set.is_match(p) {
            return true;
        }
        match p.rsplit_once('/') {
            Some((up, _)) => p = up,
            None => return false,
        }
    }
}

/// What a payload entry takes from its source: the entries below `from` that `include` keeps
/// and `exclude` does not drop, by path relative to `from`.
struct Selection {
    from: String,
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

impl Selection {
    fn new(p: &definition::PayloadDef) -> Result<Self> {
        Ok(Selection {
            from: p
                .from
                .as_deref()
                .and_then(crate::rootfs::clean_path)
                .unwrap_or_default(),
            include: globset(&p.include)?,
            exclude: globset(&p.exclude)?,
        })
    }

    /// `path` (a clean source path) relative to `from`, when the payload takes it.
    fn pick<'a>(&self, path: &'a str) -> Option<&'a str> {
        let rel = if self.from.is_empty() {
            path
        } else {
            path.strip_prefix(self.from.as_str())?.strip_prefix('/')?
        };
        if rel.is_empty() {
            return None;
        }
        if let Some(ex) = &self.exclude {
            if matches_self_or_ancestor(ex, rel) {
                return None;
            }
        }
        if let Some(inc) = &self.include {
            // Keep matches, everything below a matched directory, and the directories leading
            // to a match (added as ancestors by `graft`).
            if !matches_self_or_ancestor(inc, rel) {
                return None;
            }
        }
        Some(rel)
    }
}

/// Carry the sources' loader notes into the assembled tree, for the build's validation
/// (`build::check`) to report with every other finding: an entry a loader refused (an escape, a
/// write through a symlink, a sparse file...) fails the build, naming the source, the layer and
/// the entry. A note's path is re-rooted where the payload grafts it; a path the payload does
/// not take (or one outside the source's root) is shown as the source has it. Notes of warning
/// severity about entries the payload does not take are dropped; hard-link notes too, since the
/// build turns hard links into regular files.
fn carry_notes(
    tree: &mut Tree,
    def: &ExtensionDef,
    sources: &BTreeMap<String, LoadedSource>,
) -> Result<()> {
    let mut done = std::collections::BTreeSet::new();
    for p in &def.payload {
        if !done.insert(p.source.as_str()) {
            continue;
        }
        let Some(src) = sources.get(&p.source) else {
            continue;
        };
        let mut picks = Vec::new();
        for q in def.payload.iter().filter(|q| q.source == p.source) {
            let dest = join("rootfs", &rootfs_dest(&q.to).map_err(Error::input)?);
            picks.push((Selection::new(q)?, dest));
        }
        for note in &src.tree.notes {
            if note.rule == "hard-link" {
                continue;
            }
            // Only a clean source path has a place in the extension (not `../x`, not `.`).
            let clean = crate::rootfs::clean_path(&note.path).is_some_and(|c| c == note.path);
            let grafted = picks
                .iter()
                .filter(|_| clean)
                .find_map(|(sel, dest)| sel.pick(&note.path).map(|rel| join(dest, rel)));
            let is_error = crate::validate::find_rule(note.rule)
                .is_none_or(|r| r.severity == crate::validate::Severity::Error);
            if grafted.is_none() && !is_error {
                continue;
            }
            tree.notes.push(LoadNote {
                rule: note.rule,
                path: grafted.unwrap_or_else(|| note.path.clone()),
                message: format!("source `{}`: {}", p.source, note.message),
            });
        }
    }
    Ok(())
}

/// Put a payload's `links` in place: each replaces a symlink (never a file or directory) and must
/// resolve, within the payload, to a regular file, so a definition written for one layout of
/// the upstream image fails loudly on another instead of shipping a dangling link.
fn place_links(tree: &mut Tree, p: &definition::PayloadDef, dest: &str) -> Result<()> {
    let shown = |l: &definition::LinkDef| crate::rootfs::escape(&l.path);
    for l in &p.links {
        let Some(rel) = crate::rootfs::clean_path(&l.path) else {
            return Err(Error::input(format!(
                "payload of source `{}`: link `{}` names no path inside the payload",
                p.source,
                shown(l)
            )));
        };
        if l.target.is_empty() {
            return Err(Error::input(format!(
                "payload of source `{}`: link `{}` has an empty target",
                p.source,
                shown(l)
            )));
        }
        let at = join(dest, &rel);
        match tree.get(&at).map(|n| &n.kind) {
            None | Some(NodeKind::Symlink { .. }) => {}
            Some(_) => {
                return Err(Error::input(format!(
                "payload of source `{}`: link `{}` would replace a file or directory of the source",
                p.source,
                shown(l)
            )))
            }
        }
        tree.insert(
            &at,
            Node {
                kind: NodeKind::Symlink {
                    target: l.target.clone(),
                },
                mode: 0o777,
            },
        );
    }
    for l in &p.links {
        let rel = crate::rootfs::clean_path(&l.path).unwrap_or_default();
        let resolved = tree.resolve(dest, &rel);
        if !resolved
            .as_deref()
            .and_then(|r| tree.get(r))
            .is_some_and(Node::is_file)
        {
            return Err(Error::input_hint(
                format!(
                    "payload of source `{}`: link `{}` points at `{}`, which is not a file in the payload",
                    p.source,
                    shown(l),
                    crate::rootfs::escape(&l.target)
                ),
                "check where the source image keeps the target (`talext inspect` lists the tree)",
            ));
        }
    }
    Ok(())
}

/// Copy the selected part of `src` under `dest` in `tree`; on the source's `last_use`, move it.
fn graft(
    tree: &mut Tree,
    src: &mut Tree,
    p: &definition::PayloadDef,
    dest: &str,
    last_use: bool,
) -> Result<()> {
    let sel = Selection::new(p)?;
    let from = sel.from.clone();
    if !from.is_empty() && !src.get(&from).is_some_and(Node::is_dir) {
        return Err(Error::input(format!(
            "payload of source `{}`: `from: {from}` is not a directory in the source",
            p.source
        )));
    }
    let root_mode = src.get(&from).map(|n| n.mode).unwrap_or(0o755);
    if !tree.get(dest).is_some_and(Node::is_dir) {
        if tree.get(dest).is_some() {
            return Err(Error::input(format!(
                "payload destination `{dest}` is already a file"
            )));
        }
        tree.insert(dest, Node::dir(root_mode));
    }
    let mut selected = 0usize;
    // Place one source entry; `dir_mode` gives the mode of a source directory.
    let mut place = |path: &str, node: Node, dir_mode: &dyn Fn(&str) -> Option<u32>| {
        let Some(rel) = sel.pick(path) else {
            return Ok(());
        };
        let target = join(dest, rel);
        if let Some(existing) = tree.get(&target) {
            if existing.is_dir() && node.is_dir() {
                return Ok(());
            }
            return Err(Error::input(format!(
                "payload of source `{}` collides at `{}` with an entry already placed there",
                p.source,
                crate::rootfs::escape(&target)
            )));
        }
        // Keep the source's modes for the directories leading to this entry.
        let mut anc = String::new();
        for part in rel.split('/').take(rel.split('/').count() - 1) {
            anc = join(&anc, part);
            let t = join(dest, &anc);
            if tree.get(&t).is_none() {
                let mode = dir_mode(&join(&from, &anc)).unwrap_or(0o755);
                tree.insert(&t, Node::dir(mode));
            }
        }
        tree.insert(&target, node);
        selected += 1;
        Ok(())
    };
    if last_use {
        // No later payload reads this source: its entries move into the extension's tree as
        // they are placed, so the two trees are never held whole at once. A directory comes
        // before everything below it, so its mode is known when its entries are placed.
        let entries = std::mem::take(&mut src.entries);
        let mut dirs = std::collections::HashMap::new();
        let inside = |path: &str| {
            from.is_empty()
                || path == from
                || path
                    .strip_prefix(from.as_str())
                    .is_some_and(|r| r.starts_with('/'))
        };
        for (path, node) in entries.into_iter().filter(|(path, _)| inside(path)) {
            if node.is_dir() {
                dirs.insert(path.clone(), node.mode);
            }
            place(&path, node, &|d| dirs.get(d).copied())?;
        }
    } else {
        for (path, node) in src.under(&from) {
            place(path, node.clone(), &|d| src.get(d).map(|n| n.mode))?;
        }
    }
    place_links(tree, p, dest)?;
    if selected == 0 {
        let refused = src
            .notes
            .iter()
            .find(|n| n.rule != "hard-link")
            .map(|n| {
                format!(
                    "; the loader refused entries, e.g. {}",
                    crate::rootfs::escape(&n.message)
                )
            })
            .unwrap_or_default();
        return Err(Error::input(format!(
            "payload of source `{}` selects nothing{}{refused}",
            p.source,
            if sel.include.is_some() {
                " (check `include`)"
            } else {
                ""
            }
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_follows_the_pinned_tag() {
        let def: ExtensionDef = serde_yaml::from_str(
            "name: x\nversion: '{source.up.version}'\ncompatibility: {talos: '>= v1.7.0'}\nplatforms: [linux/amd64]\n\
             sources:\n  up: {location: 'docker.io/acme/x:v1.2.3@sha256:0000000000000000000000000000000000000000000000000000000000000000'}\n  dir: {location: payload}\n\
             payload: [{source: up, to: /usr/local/lib/containers/x}]\n",
        )
        .unwrap();
        let f = std::path::Path::new("extension.yaml");
        let v = |t: &str| version_from_sources(t, &def, f);
        assert_eq!(v("{source.up.version}").unwrap(), "1.2.3");
        assert_eq!(v("{source.up.tag}-talos1").unwrap(), "v1.2.3-talos1");
        assert_eq!(v("2.0.0").unwrap(), "2.0.0");
        assert!(v("{source.nope.tag}")
            .unwrap_err()
            .to_string()
            .contains("`nope`"));
        assert!(v("{source.dir.tag}")
            .unwrap_err()
            .to_string()
            .contains("has no tag"));
        assert!(v("{source.up.digest}")
            .unwrap_err()
            .to_string()
            .contains("not known"));
    }
}
