//! The one transfer (`talext copy SRC DST` and every command that moves an image): an image or
//! index between registries (`docker://REF` or a bare `host/repo:tag`), OCI layouts (`oci:DIR[:TAG]`) and oci-archives (`oci-archive:FILE[:TAG]`)
//! without re-encoding anything. Manifests and indexes travel as their raw bytes, so with all
//! platforms copied the destination digest is the source digest (image-spec "Digests"); blobs
//! the destination has are skipped; blobs go before the manifests that name them and child
//! manifests before their index, so no tag ever points at something missing. `--platform`
//! selects children of an index: one selected platform copies that image manifest itself, several
//! copy a new index listing only them.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::error::{Error, IoContext, Result};
use crate::oci::{self, Descriptor, Digest, Index, Manifest, Platform};
use crate::progress::{Kind, Shared};
use crate::registry::{BlobSource, PushOutcome, Reference, RegistryClient, RegistryOptions};
use crate::store::source::{Doc, Source};
use crate::store::{scratch, Output};
use crate::transport::Location;

/// What `copy` did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Copied {
    /// Digest of the manifest or index written at the destination.
    pub digest: String,
    pub media_type: String,
    pub blobs_copied: usize,
    pub blobs_skipped: usize,
    pub manifests: usize,
}

/// `talext copy --json`: where from, where to, and what moved.
#[derive(Debug, serde::Serialize)]
pub struct CopyReport<'a> {
    pub source: String,
    pub destination: String,
    #[serde(flatten)]
    pub copied: &'a Copied,
}

#[allow(clippy::large_enum_variant)]
enum Dst {
    /// An `oci:` layout or `oci-archive:`, published only at [`Dst::finish`].
    Layout { out: Output, tag: Option<String> },
    Registry {
        client: RegistryClient,
        reference: Reference,
    },
}

/// Blobs in flight at once unless `--jobs` says otherwise: enough to hide a registry's
/// per-request latency, few enough not to look like abuse.
pub const DEFAULT_JOBS: usize = 4;

/// How blobs move: how many at once, and where progress goes.
#[derive(Debug, Clone)]
pub struct Transfer {
    /// Blobs transferred concurrently (0 means [`DEFAULT_JOBS`]).
    pub jobs: usize,
    pub reporter: Shared,
}

impl Default for Transfer {
    fn default() -> Self {
        Transfer {
            jobs: DEFAULT_JOBS,
            reporter: Shared::default(),
        }
    }
}

/// Copy `src` to `dst`. `platforms` empty means every platform.
pub fn copy(
    src: &Location,
    dst: &Location,
    platforms: &[Platform],
    options: &RegistryOptions,
) -> Result<Copied> {
    copy_with(src, dst, platforms, options, &Transfer::default())
}

/// [`copy`] with explicit concurrency and progress. Every blob is confirmed before any
/// manifest is written; child manifests go before their index and the tag last. Signature tags
/// stay behind: builds, pulls and bundles call this; `talext copy` uses [`copy_carrying`].
pub fn copy_with(
    src: &Location,
    dst: &Location,
    platforms: &[Platform],
    options: &RegistryOptions,
    transfer: &Transfer,
) -> Result<Copied> {
    copy_between(src, dst, platforms, options, options, transfer, false)
}

/// [`copy_with`] with options (credentials above all) of its own for each side, as
/// `--src-creds` and `--dest-creds` give them, carrying the signature tags of every digest
/// copied when `signatures` is set: from a registry, layout or archive into a registry, or
/// into a layout or archive whose destination names a tag.
pub fn copy_between(
    src_loc: &Location,
    dst_loc: &Location,
    platforms: &[Platform],
    src_options: &RegistryOptions,
    dst_options: &RegistryOptions,
    transfer: &Transfer,
    signatures: bool,
) -> Result<Copied> {
    let (src, dst) = (src_loc, dst_loc);
    let scratch = scratch::dir("copy")?;
    let label = format!("{src}");
    let src = Source::open(src, src_options)?.ok_or_else(|| unsupported(src))?;
    let dst = open_destination(dst, dst_options)?;
    let root = src.root()?;
    let root = select_platforms(&src, root, platforms)?;
    let mut walk = Walk::default();
    walk.children_of(&src, &root)?;
    let signed = if signatures && dst.holds_signatures() {
        let digests: Vec<&str> = std::iter::once(root.digest.as_str())
            .chain(walk.manifests.iter().map(|d| d.digest.as_str()))
            .collect();
        signatures_of(&src, &digests, &mut walk.blobs)?
    } else {
        Vec::new()
    };
    let kind = match (&src, &dst) {
        (Source::Registry { .. }, Dst::Layout { .. }) => Kind::Pull,
        _ => Kind::Push,
    };
    let (copied, skipped) = move_blobs(
        &src,
        &dst,
        &walk.blobs,
        scratch.path(),
        transfer,
        kind,
        &label,
    )?;
    for doc in &walk.manifests {
        dst.put_manifest(doc)?;
    }
    dst.put_root(&src, &root, &signed)?;
    for (tag, _) in &signed {
        tracing::info!("copied the signatures `{tag}`");
    }
    Ok(Copied {
        digest: root.digest,
        media_type: root.media_type,
        blobs_copied: copied,
        blobs_skipped: skipped,
        manifests: walk.manifests.len() + 1,
    })
}

fn open_destination(loc: &Location, options: &RegistryOptions) -> Result<Dst> {
    match loc {
        Location::Oci { .. } | Location::OciArchive { .. } => match Output::open(loc)? {
            Some((out, tag)) => Ok(Dst::Layout { out, tag }),
            None => Err(unsupported(loc)),
        },
        Location::Registry(r) => {
            let reference = Reference::parse(r)?;
            let client = RegistryClient::new(options, &reference.registry)?;
            Ok(Dst::Registry { client, reference })
        }
        other => Err(unsupported(other)),
    }
}

fn unsupported(loc: &Location) -> Error {
    Error::input_hint(
        format!("`{loc}` cannot be copied"),
        "copy moves images between `docker://REF`, `oci:DIR[:TAG]` and `oci-archive:FILE[:TAG]`",
    )
}

impl Dst {
    fn has_blob(&self, desc: &Descriptor) -> Result<bool> {
        match self {
            Dst::Layout { out, .. } => Ok(out.layout().blob_size(&desc.digest) == Some(desc.size)),
            Dst::Registry { client, reference } => Ok(client
                .blob_exists(&reference.repository, desc.digest.as_str())?
                .is_some()),
        }
    }

    /// Copy a blob; `false` when a registry destination turned out to have it already.
    fn put_blob(&self, desc: &Descriptor, src: &Source, scratch: &Path) -> Result<bool> {
        match (self, src) {
            // Registry to layout: download straight into the layout (verified, then renamed).
            (Dst::Layout { out, .. }, Source::Registry { client, reference }) => {
                let path = out.layout().blob_path(&desc.digest);
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).at("creating", dir)?;
                }
                client.fetch_blob(
                    &reference.repository,
                    desc.digest.as_str(),
                    Some(desc.size),
                    &path,
                )?;
            }
            (Dst::Layout { out, .. }, Source::Layout { layout: from, .. }) => {
                let mut w = out.layout().blob_writer()?;
                let mut f = from.open_blob(desc)?;
                std::io::copy(&mut f, &mut w).map_err(|e| match e.kind() {
                    // The source's bytes are not what its descriptor says.
                    std::io::ErrorKind::InvalidData => {
                        Error::input(format!("copying from `{}`: {e}", from.root().display()))
                    }
                    _ => Error::Io {
                        op: "copying a blob into",
                        path: out.layout().root().to_path_buf(),
                        source: e,
                    },
                })?;
                w.commit(Some(&desc.digest))?;
            }
            (Dst::Registry { client, reference }, src) => {
                let repo = &reference.repository;
                // Inside one registry the blob is linked, not sent (distribution spec
                // "Mounting a blob from another repository").
                if let Source::Registry {
                    client: from,
                    reference: from_ref,
                } = src
                {
                    if from.registry() == client.registry()
                        && client.mount_blob(repo, &from_ref.repository, desc.digest.as_str())?
                    {
                        return Ok(true);
                    }
                }
                let file = src.blob_file(desc, scratch)?;
                let outcome = client.push_blob(
                    repo,
                    desc.digest.as_str(),
                    desc.size,
                    BlobSource::Path(&file),
                    None,
                )?;
                if matches!(src, Source::Registry { .. }) {
                    let _ = std::fs::remove_file(&file);
                }
                return Ok(outcome != PushOutcome::Existed);
            }
        }
        Ok(true)
    }

    /// Store a child manifest (by digest).
    fn put_manifest(&self, doc: &Doc) -> Result<()> {
        match self {
            Dst::Layout { out, .. } => {
                let stored = out.layout().put_bytes(&doc.bytes)?;
                debug_assert_eq!(stored.as_str(), doc.digest);
            }
            Dst::Registry { client, reference } => {
                client.put_manifest(
                    &reference.repository,
                    &doc.digest,
                    &doc.bytes,
                    &doc.media_type,
                )?;
            }
        }
        Ok(())
    }

    /// Store the top manifest or index and name it: the tag in a registry, or, in a layout or
    /// archive, the entries `build` writes (`crate::store::name_image`: the image under the tag,
    /// each platform manifest with its platform), published atomically.
    /// With it, `signed`: signature manifests (blobs already stored) under their tags, in the
    /// same `index.json` update as the image in a layout or archive, after the image's own tag
    /// in a registry.
    fn put_root(self, src: &Source, doc: &Doc, signed: &[(String, Doc)]) -> Result<()> {
        match self {
            Dst::Layout { out, tag } => {
                let digest = out.layout().put_bytes(&doc.bytes)?;
                let mut desc = Descriptor::new(&doc.media_type, digest, doc.bytes.len() as u64);
                if oci::is_manifest_type(&doc.media_type) {
                    desc.platform = Some(image_platform(src, doc)?);
                }
                let mut tagged = Vec::new();
                for (name, sig) in signed {
                    let digest = out.layout().put_bytes(&sig.bytes)?;
                    let mut d = Descriptor::new(&sig.media_type, digest, sig.bytes.len() as u64);
                    d.annotations
                        .insert(oci::ANN_REF_NAME.to_string(), name.clone());
                    tagged.push(d);
                }
                out.commit_tagged(&desc, tag.as_deref(), &tagged)
            }
            Dst::Registry { client, reference } => {
                let target = reference.tag_or_digest();
                if reference.digest.as_deref().is_some_and(|d| d != doc.digest) {
                    return Err(Error::input(format!(
                        "the destination names `{target}` but the image copied is `{}`",
                        doc.digest
                    )));
                }
                client.put_manifest(&reference.repository, target, &doc.bytes, &doc.media_type)?;
                for (name, sig) in signed {
                    client.put_manifest(
                        &reference.repository,
                        name,
                        &sig.bytes,
                        &sig.media_type,
                    )?;
                }
                Ok(())
            }
        }
    }

    /// Whether signature tags can be written here. In a layout without a tag the copied image
    /// is the only tagged entry readers that name none find; a signature tag beside it would
    /// make that ambiguous.
    fn holds_signatures(&self) -> bool {
        match self {
            Dst::Layout { tag: None, .. } => {
                tracing::warn!(
                    "signatures are kept in a layout or archive only when the destination names a tag"
                );
                false
            }
            _ => true,
        }
    }
}

/// The cosign signature and attestation manifests (`sha256-HEX.sig`, `sha256-HEX.att`) `src`
/// holds for `digests`, as `(tag, manifest)`; their blobs (capped) join `blobs` so they move
/// with the image's. Such a tag names a digest, not a repository, so it verifies in any
/// repository and registry it is copied to.
fn signatures_of(
    src: &Source,
    digests: &[&str],
    blobs: &mut Vec<Descriptor>,
) -> Result<Vec<(String, Doc)>> {
    use crate::sign::attest::{attestation_tag, MAX_ENVELOPE};
    use crate::sign::cosign::{signature_tag, MANIFEST_MEDIA_TYPE, MAX_BLOB};
    let mut out = Vec::new();
    let tags = digests.iter().flat_map(|d| {
        [
            signature_tag(d).map(|t| (t, MAX_BLOB)),
            attestation_tag(d).map(|t| (t, MAX_ENVELOPE)),
        ]
    });
    for tag in tags {
        let (tag, max) = tag?;
        let Some(doc) = src.tagged(&tag, MANIFEST_MEDIA_TYPE)? else {
            continue;
        };
        let manifest: Manifest = serde_json::from_slice(&doc.bytes)
            .map_err(|e| Error::input(format!("signature manifest `{tag}` is not valid: {e}")))?;
        for desc in std::iter::once(&manifest.config).chain(&manifest.layers) {
            if desc.size > max {
                return Err(Error::input(format!(
                    "signature blob `{}` of `{tag}` has {} bytes; refused",
                    desc.digest, desc.size
                )));
            }
            if !blobs.iter().any(|b| b.digest == desc.digest) {
                blobs.push(desc.clone());
            }
        }
        out.push((tag, doc));
    }
    Ok(out)
}

/// The platform an image manifest's config declares.
fn image_platform(src: &Source, doc: &Doc) -> Result<Platform> {
    let manifest: Manifest = serde_json::from_slice(&doc.bytes)
        .map_err(|e| Error::input(format!("manifest `{}` is not valid: {e}", doc.digest)))?;
    let config: oci::types::ConfigSummary = serde_json::from_slice(&src.config(&manifest.config)?)
        .map_err(|e| {
            Error::input(format!(
                "config `{}` is not valid: {e}",
                manifest.config.digest
            ))
        })?;
    Ok(Platform {
        architecture: config.architecture,
        os: config.os,
        os_version: None,
        variant: config.variant,
    })
}

/// What a copy moves: the blobs (each once) and the child manifests (each once), children
/// before the index that names them.
#[derive(Default)]
struct Walk {
    blobs: Vec<Descriptor>,
    manifests: Vec<Doc>,
    /// Child manifests and indexes already walked: an index that names one child many times, at
    /// several levels, is walked once per distinct document, not once per path.
    seen: std::collections::HashSet<Digest>,
    /// Blobs already listed.
    listed: std::collections::HashSet<Digest>,
}

impl Walk {
    /// Everything `doc` names, depth first: blobs of an image, or each child of an index (its
    /// contents, then the child manifest itself).
    fn children_of(&mut self, src: &Source, doc: &Doc) -> Result<()> {
        self.children_at(src, doc, 0)
    }

    fn children_at(&mut self, src: &Source, doc: &Doc, depth: usize) -> Result<()> {
        if oci::is_index_type(&doc.media_type) {
            if depth >= oci::MAX_INDEX_DEPTH {
                return Err(Error::input(format!(
                    "index `{}` nests indexes more than {} deep; refused",
                    doc.digest,
                    oci::MAX_INDEX_DEPTH
                )));
            }
            let index: Index = serde_json::from_slice(&doc.bytes)
                .map_err(|e| Error::input(format!("index `{}` is not valid: {e}", doc.digest)))?;
            for child in &index.manifests {
                if !self.seen.insert(child.digest.clone()) {
                    continue;
                }
                let child_doc = src.manifest(child)?;
                self.children_at(src, &child_doc, depth + 1)?;
                self.manifests.push(child_doc);
            }
            return Ok(());
        }
        if !oci::is_manifest_type(&doc.media_type) {
            return Err(Error::input(format!(
                "`{}` has media type `{}`, which copy does not support",
                doc.digest, doc.media_type
            )));
        }
        let manifest: Manifest = serde_json::from_slice(&doc.bytes)
            .map_err(|e| Error::input(format!("manifest `{}` is not valid: {e}", doc.digest)))?;
        for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
            // Non-distributable layers stay where their `urls` point (image-spec "urls").
            if blob.urls.as_ref().is_some_and(|u| !u.is_empty()) {
                continue;
            }
            if self.listed.insert(blob.digest.clone()) {
                self.blobs.push(blob.clone());
            }
        }
        Ok(())
    }
}

/// Copy the blobs the destination lacks, `transfer.jobs` at a time. Returns (copied, skipped);
/// on failure, the error of the first failing blob in order.
fn move_blobs(
    src: &Source,
    dst: &Dst,
    blobs: &[Descriptor],
    scratch: &Path,
    transfer: &Transfer,
    kind: Kind,
    label: &str,
) -> Result<(usize, usize)> {
    let reporter = &transfer.reporter;
    let total: u64 = blobs.iter().map(|b| b.size).sum();
    let task = reporter.start(kind, label, Some(total));
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let outcomes: Mutex<Vec<(usize, Result<bool>)>> = Mutex::new(Vec::new());
    let one = |blob: &Descriptor| -> Result<bool> {
        // A layout source pushed to a registry: `push_blob` asks the registry itself, so the
        // existence check is not sent twice.
        let pushes_itself = matches!((dst, src), (Dst::Registry { .. }, Source::Layout { .. }));
        if !pushes_itself && dst.has_blob(blob)? {
            return Ok(false);
        }
        tracing::info!("copying blob `{}` ({} bytes)", blob.digest, blob.size);
        dst.put_blob(blob, src, scratch)
    };
    let jobs = match transfer.jobs {
        0 => DEFAULT_JOBS,
        n => n,
    }
    .min(blobs.len())
    .max(1);
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= blobs.len() || failed.load(Ordering::Relaxed) {
                    break;
                }
                let r = one(&blobs[i]);
                if r.is_err() {
                    failed.store(true, Ordering::Relaxed);
                } else {
                    reporter.advance(task, blobs[i].size);
                }
                outcomes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((i, r));
            });
        }
    });
    reporter.finish(task);
    let mut outcomes = outcomes.into_inner().unwrap_or_else(|e| e.into_inner());
    outcomes.sort_by_key(|(i, _)| *i);
    let (mut copied, mut skipped) = (0, 0);
    for (_, r) in outcomes {
        if r? {
            copied += 1;
        } else {
            skipped += 1;
        }
    }
    Ok((copied, skipped))
}

/// Apply `--platform`: nothing for an empty list; for an index, its matching children (one
/// child becomes the root itself, several a new index with only them); for an image, a check
/// that its config names a wanted platform.
fn select_platforms(src: &Source, root: Doc, platforms: &[Platform]) -> Result<Doc> {
    if platforms.is_empty() {
        return Ok(root);
    }
    let wanted = |p: &Platform| platforms.iter().any(|w| p.matches(w));
    let names = platforms
        .iter()
        .map(|p| format!("`{p}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if !oci::is_index_type(&root.media_type) {
        let platform = image_platform(src, &root)?;
        if !wanted(&platform) {
            return Err(Error::input(format!(
                "the image is for `{platform}`, not {names}"
            )));
        }
        return Ok(root);
    }
    let mut value: serde_json::Value = serde_json::from_slice(&root.bytes)
        .map_err(|e| Error::input(format!("index `{}` is not valid: {e}", root.digest)))?;
    let entries = value
        .get("manifests")
        .and_then(|m| m.as_array())
        .cloned()
        .unwrap_or_default();
    let mut kept = Vec::new();
    for entry in entries {
        let desc: Descriptor = serde_json::from_value(entry.clone())
            .map_err(|e| Error::input(format!("index `{}` has a bad entry: {e}", root.digest)))?;
        if desc.platform.as_ref().is_some_and(&wanted) {
            kept.push((entry, desc));
        }
    }
    match kept.len() {
        0 => Err(Error::input(format!(
            "the index `{}` has no image for {names}",
            root.digest
        ))),
        1 => src.manifest(&kept[0].1),
        _ => {
            value["manifests"] =
                serde_json::Value::Array(kept.into_iter().map(|(v, _)| v).collect());
            let bytes = serde_json::to_vec(&value).map_err(|e| Error::internal(e.to_string()))?;
            let digest = Digest::of(&bytes).to_string();
            Ok(Doc {
                bytes,
                media_type: root.media_type,
                digest,
            })
        }
    }
}

/// Write `digest` to `--digestfile`.
pub fn write_digestfile(path: &Path, digest: &str) -> Result<()> {
    std::fs::write(path, digest).at("writing", path)
}

/// Parse `--platform` values (`linux/amd64`, `linux/arm64/v8`).
pub fn parse_platforms(values: &[String]) -> Result<Vec<Platform>> {
    values
        .iter()
        .map(|v| {
            Platform::parse(v)
                .ok_or_else(|| Error::input(format!("`{v}` is not a platform like `linux/amd64`")))
        })
        .collect()
}
