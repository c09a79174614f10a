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
use crate::registry::RegistryOptions;
use crate::store::scratch;
use crate::store::sink::{self, Sink};
use crate::store::source::{Doc, Source};
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

/// Blobs in flight at once unless `--jobs` says otherwise: enough to hide a registry's
/// per-request latency, few enough not to look like abuse.
pub const DEFAULT_JOBS: usize = 4;

/// How blobs move: how many at once, and where progress goes.
#[derive(Debug, Clone)]
pub struct Transfer {
    /// Blobs transferred concurrently (0 means [`DEFAULT_JOBS`]).
    pub jobs: usize,
    pub reporter: Shared,
    /// Blobs already in some repository of the destination registry, learned in this run: a
    /// copy into another repository mounts them from there instead of sending them again
    /// (distribution spec "Mounting a blob from another repository").
    pub mounts: Option<std::sync::Arc<MountBook>>,
}

/// Which repository of the destination registry holds (or is receiving) each blob so far. The
/// first copy that needs a blob sends it; another copy that needs it waits for that upload
/// (a registry that receives one blob twice at once, or is asked for a manifest naming a blob
/// still being committed, can refuse the manifest), then mounts it into its own repository or
/// finds it there.
#[derive(Debug, Default)]
pub struct MountBook {
    holders: Mutex<std::collections::HashMap<Digest, (String, bool)>>,
    changed: std::sync::Condvar,
}

enum Claim {
    /// Send it (or find it there): nobody else is.
    Send,
    /// It is already in the repository being written.
    Present,
    /// It is in this other repository of the registry.
    MountFrom(String),
}

impl MountBook {
    fn claim(&self, digest: &Digest, repository: &str) -> Claim {
        let mut holders = self.holders.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match holders.get(digest) {
                None => {
                    holders.insert(digest.clone(), (repository.to_string(), false));
                    return Claim::Send;
                }
                Some((repo, true)) if repo == repository => return Claim::Present,
                Some((repo, true)) => return Claim::MountFrom(repo.clone()),
                Some((_, false)) => {
                    holders = self
                        .changed
                        .wait(holders)
                        .unwrap_or_else(|e| e.into_inner());
                }
            }
        }
    }

    /// After a refused mount: `repository` now receives `digest` itself; copies into it wait.
    fn take_over(&self, digest: &Digest, repository: &str) {
        let mut holders = self.holders.lock().unwrap_or_else(|e| e.into_inner());
        holders.insert(digest.clone(), (repository.to_string(), false));
    }

    /// The claim of `repository` on `digest` is over: the blob is there, or (`held` false) the
    /// upload failed and another copy may send it.
    fn settle(&self, digest: &Digest, repository: &str, held: bool) {
        let mut holders = self.holders.lock().unwrap_or_else(|e| e.into_inner());
        match holders.get_mut(digest) {
            Some((repo, ready)) if repo == repository => {
                if held {
                    *ready = true;
                } else if !*ready {
                    holders.remove(digest);
                }
            }
            None if held => {
                holders.insert(digest.clone(), (repository.to_string(), true));
            }
            _ => {}
        }
        self.changed.notify_all();
    }
}

impl Default for Transfer {
    fn default() -> Self {
        Transfer {
            jobs: DEFAULT_JOBS,
            reporter: Shared::default(),
            mounts: None,
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
    let src = Source::open(src_loc, src_options)?.ok_or_else(|| unsupported(src_loc))?;
    let dst = sink::open(dst_loc, dst_options)?;
    copy_opened(
        &src,
        dst,
        &src_loc.to_string(),
        platforms,
        transfer,
        signatures,
    )
}

/// [`copy_between`] from a store already open (one air-gap bundle read once for all its
/// images) into an opened sink; `label` names the source in progress lines.
pub fn copy_opened(
    src: &Source,
    dst: Sink,
    label: &str,
    platforms: &[Platform],
    transfer: &Transfer,
    signatures: bool,
) -> Result<Copied> {
    let scratch = scratch::dir("copy")?;
    let root = src.root()?;
    let root = select_platforms(src, root, platforms)?;
    let mut walk = Walk::default();
    walk.children_of(src, &root)?;
    let signed = if signatures && dst.holds_signatures() {
        let digests: Vec<String> = std::iter::once(root.digest.clone())
            .chain(walk.manifests.iter().map(|d| d.digest.clone()))
            .collect();
        signatures_of(src, &digests, &mut walk.blobs, &mut walk.manifests)?
    } else {
        Vec::new()
    };
    let kind = match (src, &dst) {
        (Source::Registry { .. }, Sink::Layout { .. }) => Kind::Pull,
        _ => Kind::Push,
    };
    let (copied, skipped) = move_blobs(
        src,
        &dst,
        &walk.blobs,
        scratch.path(),
        transfer,
        kind,
        label,
    )?;
    walk.put_manifests(
        &dst,
        match transfer.jobs {
            0 => DEFAULT_JOBS,
            n => n,
        },
    )?;
    dst.put_root(src, &root, &signed)?;
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

pub(crate) fn unsupported(loc: &Location) -> Error {
    Error::input_hint(
        format!("`{loc}` cannot be copied"),
        "copy moves images between `docker://REF`, `oci:DIR[:TAG]` and `oci-archive:FILE[:TAG]`",
    )
}

/// The cosign signature and attestation manifests (`sha256-HEX.sig`, `sha256-HEX.att`) and
/// the referrers-tag index (`sha256-HEX`, distribution spec "Referrers Tag Schema") `src` holds
/// for `digests`, as `(tag, document)`. Their blobs (capped) join `blobs`, and the referrer
/// manifests a referrers index lists join `manifests`, so they move with the image's and the
/// index names nothing missing. Such a tag names a digest, not a repository, so it verifies in
/// any repository and registry it is copied to.
fn signatures_of(
    src: &Source,
    digests: &[String],
    blobs: &mut Vec<Descriptor>,
    manifests: &mut Vec<Doc>,
) -> Result<Vec<(String, Doc)>> {
    use crate::sign::attest::{attestation_tag, MAX_ENVELOPE};
    use crate::sign::cosign::{referrers_tag, signature_tag, MANIFEST_MEDIA_TYPE, MAX_BLOB};
    let mut add_blobs = |tag: &str, m: &Manifest, max: u64| -> Result<()> {
        for desc in std::iter::once(&m.config).chain(&m.layers) {
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
        Ok(())
    };
    let parse = |tag: &str, doc: &Doc| -> Result<Manifest> {
        serde_json::from_slice(&doc.bytes)
            .map_err(|e| Error::input(format!("signature manifest `{tag}` is not valid: {e}")))
    };
    let mut out = Vec::new();
    for digest in digests {
        for (tag, max) in [
            (signature_tag(digest)?, MAX_BLOB),
            (attestation_tag(digest)?, MAX_ENVELOPE),
        ] {
            let Some(doc) = src.tagged(&tag, MANIFEST_MEDIA_TYPE)? else {
                continue;
            };
            add_blobs(&tag, &parse(&tag, &doc)?, max)?;
            out.push((tag, doc));
        }
        let tag = referrers_tag(digest)?;
        let Some(doc) = src.tagged(&tag, oci::MT_OCI_INDEX)? else {
            continue;
        };
        let index: Index = serde_json::from_slice(&doc.bytes)
            .map_err(|e| Error::input(format!("referrers index `{tag}` is not valid: {e}")))?;
        for referrer in &index.manifests {
            let m = src.manifest(referrer)?;
            add_blobs(&tag, &parse(&tag, &m)?, MAX_ENVELOPE)?;
            if !manifests.iter().any(|d| d.digest == m.digest) {
                manifests.push(m);
            }
        }
        out.push((tag, doc));
    }
    Ok(out)
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
    /// The height of each manifest walked: 0 for an image manifest, one more than its highest
    /// child for an index. Manifests of one height name none of each other.
    heights: std::collections::HashMap<Digest, usize>,
}

impl Walk {
    /// Everything `doc` names, depth first: blobs of an image, or each child of an index (its
    /// contents, then the child manifest itself).
    fn children_of(&mut self, src: &Source, doc: &Doc) -> Result<()> {
        self.children_at(src, doc, 0).map(drop)
    }

    /// Walk `doc`; returns its height.
    fn children_at(&mut self, src: &Source, doc: &Doc, depth: usize) -> Result<usize> {
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
            let mut height = 0;
            for child in &index.manifests {
                if !self.seen.insert(child.digest.clone()) {
                    height = height.max(self.heights.get(&child.digest).map_or(0, |h| h + 1));
                    continue;
                }
                let child_doc = src.manifest(child)?;
                let h = self.children_at(src, &child_doc, depth + 1)?;
                self.heights.insert(child.digest.clone(), h);
                height = height.max(h + 1);
                self.manifests.push(child_doc);
            }
            return Ok(height.max(1));
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
        Ok(0)
    }

    /// Store the child manifests walked, children before the indexes that name them. Into a
    /// registry, the manifests of one height go at the same time, `jobs` at once (each
    /// round trip is a wait on the registry, not work here).
    fn put_manifests(&self, dst: &Sink, jobs: usize) -> Result<()> {
        if !matches!(dst, Sink::Registry { .. }) {
            return self
                .manifests
                .iter()
                .try_for_each(|doc| dst.put_manifest(doc));
        }
        let height = |doc: &Doc| {
            doc.digest
                .parse::<Digest>()
                .ok()
                .and_then(|d| self.heights.get(&d).copied())
                .unwrap_or(0)
        };
        let top = self.manifests.iter().map(height).max().unwrap_or(0);
        for h in 0..=top {
            let level: Vec<&Doc> = self.manifests.iter().filter(|d| height(d) == h).collect();
            in_workers(&level, jobs, |doc| dst.put_manifest(doc))?;
        }
        Ok(())
    }
}

/// Copy the blobs the destination lacks, `transfer.jobs` at a time. Returns (copied, skipped);
/// on failure, the error of the first failing blob in order.
fn move_blobs(
    src: &Source,
    dst: &Sink,
    blobs: &[Descriptor],
    scratch: &Path,
    transfer: &Transfer,
    kind: Kind,
    label: &str,
) -> Result<(usize, usize)> {
    let reporter = &transfer.reporter;
    let total: u64 = blobs.iter().map(|b| b.size).sum();
    let task = reporter.start(kind, label, Some(total));
    let book = match dst {
        Sink::Registry { reference, .. } => transfer
            .mounts
            .as_deref()
            .map(|b| (b, reference.repository.as_str())),
        Sink::Layout { .. } => None,
    };
    let send = |blob: &Descriptor| -> Result<bool> {
        // A layout source pushed to a registry: `push_blob` asks the registry itself, so the
        // existence check is not sent twice.
        let pushes_itself = matches!((dst, src), (Sink::Registry { .. }, Source::Layout { .. }));
        if !pushes_itself && dst.has_blob(blob)? {
            return Ok(false);
        }
        tracing::info!("copying blob `{}` ({} bytes)", blob.digest, blob.size);
        dst.put_blob(blob, src, scratch)
    };
    let one = |blob: &Descriptor| -> Result<bool> {
        let (Some((book, repo)), Sink::Registry { client, .. }) = (book, dst) else {
            return send(blob);
        };
        match book.claim(&blob.digest, repo) {
            Claim::Present => return Ok(false),
            Claim::MountFrom(from) => {
                let mounted = client.mount_blob(repo, &from, blob.digest.as_str());
                if matches!(mounted, Ok(true)) {
                    tracing::info!("mounted blob `{}` from `{from}`", blob.digest);
                    book.settle(&blob.digest, repo, true);
                    return Ok(true);
                }
                // Declined (or failed): this copy sends it itself, as its own claim.
                book.take_over(&blob.digest, repo);
            }
            Claim::Send => {}
        }
        let sent = send(blob);
        book.settle(&blob.digest, repo, sent.is_ok());
        sent
    };
    let jobs = match transfer.jobs {
        0 => DEFAULT_JOBS,
        n => n,
    };
    let outcomes = in_workers(blobs, jobs, |blob| {
        let sent = one(blob)?;
        reporter.advance(task, blob.size);
        Ok(sent)
    });
    reporter.finish(task);
    let (mut copied, mut skipped) = (0, 0);
    for sent in outcomes? {
        if sent {
            copied += 1;
        } else {
            skipped += 1;
        }
    }
    Ok((copied, skipped))
}

/// Run `f` on every item, `jobs` threads at a time, each taking the next item as it finishes
/// one; no new item is started once one has failed. The results come in input order, and the
/// error returned is the first in input order.
pub fn in_workers<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    f: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let done: Mutex<Vec<(usize, Result<R>)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs.min(items.len()).max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= items.len() || failed.load(Ordering::Relaxed) {
                    break;
                }
                let r = f(&items[i]);
                if r.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                done.lock().unwrap_or_else(|e| e.into_inner()).push((i, r));
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// What `talext index create` made.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stitched {
    pub destination: String,
    pub digest: String,
    pub media_type: String,
    /// Each platform's manifest, in the index's order, with where it came from.
    pub manifests: Vec<StitchedManifest>,
    pub blobs_copied: usize,
    pub blobs_skipped: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct StitchedManifest {
    pub platform: String,
    pub digest: String,
    pub source: String,
}

/// `talext index create`: one index naming the platform images of `sources` (each an image, or
/// an index whose platform children are taken), in the order given, written to `dst` with
/// everything they name (like `docker buildx imagetools create`). Per-platform builds on
/// separate machines, stitched in the order of the definition's `platforms:`, give the digest
/// of the one-machine build, whose index is nothing but those descriptors. Attestation
/// entries (`unknown/unknown`) are left out; two sources for one platform are refused.
pub fn stitch(
    sources: &[Location],
    dst_loc: &Location,
    options: &RegistryOptions,
    transfer: &Transfer,
) -> Result<Stitched> {
    if sources.is_empty() {
        return Err(Error::input_hint(
            "no image to put in the index",
            "name each platform's image: `talext index create oci:amd64 oci:arm64 -o DST`",
        ));
    }
    let scratch = scratch::dir("index")?;
    let dst = sink::open(dst_loc, options)?;
    let mut descriptors: Vec<Descriptor> = Vec::new();
    let mut origin: Vec<String> = Vec::new();
    let mut opened = Vec::new();
    for loc in sources {
        let src = Source::open(loc, options)?.ok_or_else(|| unsupported(loc))?;
        let root = src.root()?;
        let mut children = Vec::new();
        if oci::is_index_type(&root.media_type) {
            let index: Index = serde_json::from_slice(&root.bytes).map_err(|e| {
                Error::input(format!(
                    "index `{}` in `{loc}` is not valid: {e}",
                    root.digest
                ))
            })?;
            for child in index.manifests {
                let Some(platform) = &child.platform else {
                    return Err(Error::input(format!(
                        "`{loc}` lists `{}` without a platform; an index of platform images needs one for each",
                        child.digest
                    )));
                };
                if platform.os == "unknown" {
                    continue;
                }
                if !oci::is_manifest_type(&child.media_type) {
                    return Err(Error::input(format!(
                        "`{loc}` lists `{}` of media type `{}`; only image manifests are stitched",
                        child.digest, child.media_type
                    )));
                }
                let doc = src.manifest(&child)?;
                children.push((child, doc));
            }
        } else if oci::is_manifest_type(&root.media_type) {
            let digest: Digest = root.digest.parse()?;
            let mut desc = Descriptor::new(&root.media_type, digest, root.bytes.len() as u64);
            desc.platform = Some(sink::image_platform(&src, &root)?);
            children.push((desc, root));
        } else {
            return Err(Error::input(format!(
                "`{loc}` holds `{}` of media type `{}`, not an image",
                root.digest, root.media_type
            )));
        }
        if children.is_empty() {
            return Err(Error::input(format!("`{loc}` holds no platform image")));
        }
        for (desc, _) in &children {
            let Some(platform) = desc.platform.clone() else {
                continue;
            };
            if let Some(i) = descriptors
                .iter()
                .position(|d| d.platform.as_ref() == Some(&platform))
            {
                return Err(Error::input_hint(
                    format!("`{platform}` comes from both `{}` and `{loc}`", origin[i]),
                    "give each platform once (`--platform` on `build` selects one)",
                ));
            }
            descriptors.push(desc.clone());
            origin.push(loc.to_string());
        }
        opened.push((src, children));
    }
    let (mut copied, mut skipped) = (0, 0);
    for (src, children) in &opened {
        let mut walk = Walk::default();
        for (_, doc) in children {
            walk.children_of(src, doc)?;
        }
        let (c, s) = move_blobs(
            src,
            &dst,
            &walk.blobs,
            scratch.path(),
            transfer,
            Kind::Push,
            "index",
        )?;
        copied += c;
        skipped += s;
        for (_, doc) in children {
            dst.put_manifest(doc)?;
        }
    }
    // All children OCI: an OCI index, as `build` writes; all Docker: a Docker manifest list.
    let docker = descriptors
        .iter()
        .all(|d| d.media_type == oci::MT_DOCKER_MANIFEST);
    let media_type = if docker {
        oci::MT_DOCKER_LIST
    } else {
        oci::MT_OCI_INDEX
    };
    let mut index = Index::new(Some(media_type));
    index.manifests = descriptors.clone();
    let bytes = crate::image::to_json(&index)?;
    let digest = Digest::of(&bytes).to_string();
    let doc = Doc {
        bytes,
        media_type: media_type.to_string(),
        digest: digest.clone(),
    };
    dst.put_root(&opened[0].0, &doc, &[])?;
    Ok(Stitched {
        destination: dst_loc.to_string(),
        digest,
        media_type: media_type.to_string(),
        manifests: descriptors
            .iter()
            .zip(origin)
            .map(|(d, source)| StitchedManifest {
                platform: d
                    .platform
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                digest: d.digest.to_string(),
                source,
            })
            .collect(),
        blobs_copied: copied,
        blobs_skipped: skipped,
    })
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
        let platform = sink::image_platform(src, &root)?;
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
