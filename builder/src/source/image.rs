//! Flatten a container image into a tree, the way go-containerregistry's `crane export` does for
//! the Talos imager (contract §2.2): layers from the top down, each path taken from the topmost
//! layer that has it; `.wh.<name>` hides a path in lower layers and `.wh..wh..opq` hides the
//! lower contents of its directory; compression is detected from the bytes (gzip, zstd or none).
//! Regular files are written to a staging directory so memory does not grow with the payload.

use std::collections::{HashMap, HashSet};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::oci::layout::Layout;
use crate::oci::types::ConfigSummary;
use crate::oci::{self, Descriptor, Digest, Index, Manifest, Platform};
use crate::rootfs::{
    base_name, classify_path, escape, excerpt, parent, Cleaned, Content, DiskFile, LoadNote, Node,
    NodeKind, Special, Tree,
};

/// One platform's image picked out of a layout.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The digest the user named (an index or a manifest).
    pub root: Digest,
    /// The platform's image manifest.
    pub manifest_digest: Digest,
    pub manifest: Manifest,
    pub config: ConfigSummary,
}

/// Resolve `desc` (an index or a manifest in `layout`) to the image for `want`. Nested indexes
/// are followed. A single-manifest image must declare the wanted platform in its config: the
/// imager would use it whatever its architecture (contract §8.3 case 33), so we refuse here.
pub fn resolve(
    layout: &Layout,
    desc: &Descriptor,
    want: &Platform,
    what: &str,
) -> Result<Resolved> {
    resolve_at(
        layout,
        &desc.digest,
        &desc.media_type,
        desc.digest.clone(),
        want,
        what,
        0,
    )
}

fn resolve_at(
    layout: &Layout,
    digest: &Digest,
    media_type: &str,
    root: Digest,
    want: &Platform,
    what: &str,
    depth: usize,
) -> Result<Resolved> {
    if depth > 4 {
        return Err(Error::input(format!("{what}: indexes nested too deeply")));
    }
    let bytes = layout.read_document(digest)?;
    let mt = if media_type.is_empty() {
        oci::sniff_media_type(&bytes).unwrap_or_default()
    } else {
        media_type.to_string()
    };
    if mt == oci::MT_DOCKER_SCHEMA1 || mt == oci::MT_DOCKER_SCHEMA1_SIGNED {
        return Err(Error::input(format!(
            "{what}: Docker schema 1 manifests are not supported (Talos's imager rejects them too)"
        )));
    }
    if oci::is_index_type(&mt) {
        let index: Index = serde_json::from_slice(&bytes)
            .map_err(|e| Error::input(format!("{what}: index `{digest}` is not valid: {e}")))?;
        let child = index
            .manifests
            .iter()
            .find(|d| d.platform.as_ref().is_some_and(|p| p.matches(want)))
            .ok_or_else(|| {
                let have: Vec<String> = index
                    .manifests
                    .iter()
                    .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
                    .collect();
                Error::input_hint(
                    format!("{what}: no `{want}` image in index `{digest}`"),
                    format!(
                        "platforms present: {}",
                        if have.is_empty() {
                            "none".into()
                        } else {
                            have.join(", ")
                        }
                    ),
                )
            })?;
        return resolve_at(
            layout,
            &child.digest,
            &child.media_type,
            root,
            want,
            what,
            depth + 1,
        );
    }
    if !oci::is_manifest_type(&mt) {
        return Err(Error::input(format!(
            "{what}: `{digest}` has media type `{mt}`, which is neither an image index nor an image manifest"
        )));
    }
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| Error::input(format!("{what}: manifest `{digest}` is not valid: {e}")))?;
    let cfg_bytes = layout.read_document(&manifest.config.digest)?;
    let config: ConfigSummary = serde_json::from_slice(&cfg_bytes).map_err(|e| {
        Error::input(format!(
            "{what}: config `{}` is not valid: {e}",
            manifest.config.digest
        ))
    })?;
    if config.os != want.os || config.architecture != want.architecture {
        return Err(Error::input_hint(
            format!(
                "{what}: image `{digest}` is for `{}/{}`, not `{want}`",
                config.os, config.architecture
            ),
            "give a multi-platform index, or a separate source per platform",
        ));
    }
    Ok(Resolved {
        root,
        manifest_digest: digest.clone(),
        manifest,
        config,
    })
}

/// Flatten the image's layers into a tree whose regular files live in `staging`; `open` hands
/// over each layer's bytes as a stream checked against its descriptor (a layout's file, or a
/// registry's answer read once).
///
/// Every layer is read to its end, so its digest and size are checked even though the tar
/// reader stops at the end-of-archive marker, and the uncompressed stream is checked against the
/// config's `rootfs.diff_ids` (image-spec `config.md`) when the config lists one per layer.
pub fn flatten<R: Read + Send>(
    open: impl Fn(&Descriptor) -> Result<R>,
    manifest: &Manifest,
    diff_ids: &[String],
    staging: &Path,
    what: &str,
) -> Result<Tree> {
    let mut f = Flattener {
        tree: Tree::new(),
        seen: HashMap::new(),
        whiteouts: HashSet::new(),
        opaques: HashSet::new(),
        staging: staging.to_path_buf(),
        counter: 0,
    };
    let diff_ids = (diff_ids.len() == manifest.layers.len()).then_some(diff_ids);
    for (i, layer) in manifest.layers.iter().enumerate().rev() {
        let mut blob = open(layer)?;
        let drained = |blob: &mut R| {
            io::copy(blob, &mut io::sink()).map(drop).map_err(|e| {
                super::from_registry(e)
                    .unwrap_or_else(|e| Error::input(format!("{what}: layer {i}: {e}")))
            })
        };
        let diff_id = match f.layer(&mut blob, i, &layer.digest, what) {
            Ok(d) => d,
            // The bytes are read as they arrive, before their digest can be known: when they
            // do not make a tar, whether they are the blob the descriptor names decides which
            // error is true. A damaged blob (or a registry serving other bytes) is named as
            // such, not as a malformed layer.
            Err(e @ Error::Registry(_)) => return Err(e),
            Err(e) => {
                drained(&mut blob)?;
                return Err(e);
            }
        };
        // The rest of the blob (past the tar's end, the compressor's trailer): reading it to EOF
        // is what makes the reader check the digest.
        drained(&mut blob)?;
        if let Some(want) = diff_ids.map(|d| &d[i]) {
            if *want != diff_id.as_str() {
                return Err(Error::input(format!(
                    "{what}: layer {i} (`{}`) uncompresses to `{diff_id}`, but the config's \
                     `rootfs.diff_ids` says `{want}`",
                    layer.digest
                )));
            }
        }
    }
    Ok(f.tree)
}

struct Flattener {
    tree: Tree,
    /// Paths taken from an upper layer, with whether they are directories.
    seen: HashMap<String, bool>,
    whiteouts: HashSet<String>,
    opaques: HashSet<String>,
    staging: PathBuf,
    counter: u64,
}

/// Open a layer's bytes as a tar stream, whatever its compression.
pub fn decompress<'a>(blob: impl Read + Send + 'a) -> io::Result<Box<dyn Read + Send + 'a>> {
    let mut r = BufReader::with_capacity(1 << 20, blob);
    let head = {
        use io::BufRead;
        r.fill_buf()?
            .get(..4)
            .map(|h| h.to_vec())
            .unwrap_or_default()
    };
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(r))
    } else if head == [0x28, 0xb5, 0x2f, 0xfd] {
        Box::new(zstd::stream::read::Decoder::with_buffer(r)?)
    } else {
        Box::new(r)
    })
}

impl Flattener {
    fn hidden(&self, path: &str) -> bool {
        if self.whiteouts.contains(path) {
            return true;
        }
        let mut p = path;
        while let Some((up, _)) = p.rsplit_once('/') {
            if self.whiteouts.contains(up)
                || self.opaques.contains(up)
                || self.seen.get(up) == Some(&false)
            {
                return true;
            }
            p = up;
        }
        false
    }

    fn stage(&mut self, r: &mut impl Read, declared: u64, at: &str) -> Result<(PathBuf, u64)> {
        self.counter += 1;
        let p = self.staging.join(format!("f{}", self.counter));
        let n = super::stage(r, &p, declared, at)?;
        Ok((p, n))
    }

    fn note(&mut self, rule: &'static str, path: impl Into<String>, message: String) {
        self.tree.notes.push(LoadNote {
            rule,
            path: path.into(),
            message,
        });
    }

    /// Read one layer into the tree; returns the digest of its uncompressed stream (its
    /// `diff_id`), read to the end.
    fn layer(
        &mut self,
        blob: impl Read + Send,
        index: usize,
        digest: &Digest,
        what: &str,
    ) -> Result<Digest> {
        let at = format!("{what}: layer {index} (`{digest}`)");
        let bad = |e: io::Error| super::read_failure(&at, e);
        // Notes name the layer; the subject (or, in a build, the source) is named by the caller.
        let lay = format!("layer {index} (`{digest}`)");
        let tar = crate::oci::digest::HashingReader::new(decompress(blob).map_err(bad)?);
        let mut archive = tar::Archive::new(super::Bounded::new(tar));
        let mut layer_whiteouts = HashSet::new();
        let mut layer_opaques = HashSet::new();
        // Regular files of this layer (taken or shadowed), for hard links to point at.
        let mut layer_files: HashMap<String, (PathBuf, u64)> = HashMap::new();
        // Staged copies of shadowed files that a hard link ended up using.
        let mut kept: HashSet<PathBuf> = HashSet::new();
        // What each path of this layer is so far, for entries written below a non-directory.
        let mut layer_kinds: HashMap<String, Seen> = HashMap::new();
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let kind = entry.header().entry_type();
            if matches!(
                kind,
                tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
            ) {
                continue;
            }
            let raw_bytes = entry.path_bytes().into_owned();
            let raw = match super::tar_name(&raw_bytes, "entry") {
                Ok(s) => s.to_string(),
                Err((rule, msg)) => {
                    self.note(rule, excerpt(&raw_bytes, 96), format!("{lay}: {msg}"));
                    continue;
                }
            };
            // Only links have a target; other entries' link field is ignored, as Talos does.
            let is_link = matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link);
            let link = match entry.link_name_bytes().filter(|_| is_link) {
                None => None,
                Some(b) => match super::tar_name(&b, &format!("link target of `{raw}`")) {
                    Ok(s) => Some(s.to_string()),
                    Err((rule, msg)) => {
                        self.note(rule, raw.clone(), format!("{lay}: {msg}"));
                        continue;
                    }
                },
            };
            if super::is_sparse(&mut entry).map_err(bad)? {
                self.note(
                    "sparse-entry",
                    raw.clone(),
                    format!("{lay}: `{raw}` is a sparse file; talext refuses sparse entries rather than expand them"),
                );
                continue;
            }
            let path = match classify_path(&raw) {
                // The root directory itself (`.`, `./`); anything else there is refused.
                Cleaned::Root if kind == tar::EntryType::Directory => continue,
                Cleaned::Root => {
                    self.note(
                        "path-escape",
                        raw.clone(),
                        format!("{lay}: entry `{raw}` names the image root but is not a directory"),
                    );
                    continue;
                }
                Cleaned::Escapes => {
                    self.note(
                        "path-escape",
                        raw.clone(),
                        format!("{lay}: entry `{raw}` escapes the image root"),
                    );
                    continue;
                }
                Cleaned::Path(p) => p,
            };
            // Talos's untar creates a file below a symlink through it, so a layer that writes
            // below its own symlink (or file) is refused (`pkg/archiver/untar.go`, Talos v1.12.0).
            let through = ancestors(&path).find_map(|a| {
                layer_kinds
                    .get(a)
                    .filter(|s| !matches!(s, Seen::Dir))
                    .map(|s| (a.to_string(), s.clone()))
            });
            if let Some((anc, seen)) = through {
                let (rule, msg) =
                    below_non_dir(&format!("`{path}`"), &anc, &seen, "in the same layer");
                self.note(rule, path, format!("{lay}: {msg}"));
                continue;
            }
            let name = base_name(&path);
            if let Some(hidden) = name.strip_prefix(".wh.") {
                let dir = parent(&path).to_string();
                if hidden == ".wh..opq" {
                    layer_opaques.insert(dir);
                } else if hidden.is_empty() || hidden == "." || hidden == ".." {
                    self.note(
                        "path-escape",
                        path.clone(),
                        format!("{lay}: whiteout `{path}` names no entry inside `/{dir}`"),
                    );
                } else {
                    layer_whiteouts.insert(crate::rootfs::join(&dir, hidden));
                }
                continue;
            }
            let this = match kind {
                tar::EntryType::Directory => Seen::Dir,
                tar::EntryType::Symlink => Seen::Symlink(link.clone().unwrap_or_default()),
                _ => Seen::Other,
            };
            if let Some(prev) = layer_kinds.get(&path) {
                if !(matches!(prev, Seen::Dir) && this == Seen::Dir) {
                    // crane export (the imager's flattening) keeps a layer's first entry for a
                    // path; extracting the layer as a tar keeps the last. Keep the first.
                    self.note(
                        "layer-duplicate",
                        path.clone(),
                        format!("{lay}: `{path}` appears more than once; the first entry is kept, as the Talos imager does"),
                    );
                    continue;
                }
            }
            layer_kinds.insert(path.clone(), this.clone());
            let mode = entry.header().mode().unwrap_or(0o644) & 0o7777;
            let shadowed = self.hidden(&path) || self.seen.contains_key(&path);
            let implicit_dir =
                !self.seen.contains_key(&path) && self.tree.get(&path).is_some_and(Node::is_dir);
            if implicit_dir && !shadowed && kind != tar::EntryType::Directory {
                // Upper layers wrote below `path` without declaring it a directory: applied in
                // order, they write through what this layer puts there.
                let below = self
                    .tree
                    .below(&path)
                    .next()
                    .map(|(k, _)| k.clone())
                    .unwrap_or_else(|| path.clone());
                let (rule, msg) = below_non_dir(
                    &format!("`{below}` (from a layer above)"),
                    &path,
                    &this,
                    &format!("in {lay}"),
                );
                self.note(rule, below, msg);
            }
            if kind.is_file() || kind == tar::EntryType::Continuous {
                let declared = entry.size();
                if shadowed || implicit_dir {
                    // Kept only while this layer is read, in case a hard link names it.
                    let staged = self.stage(&mut entry, declared, &at)?;
                    layer_files.insert(path, staged);
                    continue;
                }
                let (p, size) = self.stage(&mut entry, declared, &at)?;
                layer_files.insert(path.clone(), (p.clone(), size));
                self.take(
                    path,
                    Node {
                        kind: NodeKind::File {
                            content: Content::Disk(DiskFile::new(p)),
                            size,
                        },
                        mode,
                    },
                    false,
                );
                continue;
            }
            if shadowed {
                continue;
            }
            let node = match kind {
                tar::EntryType::Directory => {
                    if implicit_dir {
                        if let Some(n) = self.tree.entries.get_mut(&path) {
                            n.mode = mode;
                        }
                        self.seen.insert(path, true);
                        continue;
                    }
                    Node::dir(mode)
                }
                _ if implicit_dir => continue,
                tar::EntryType::Symlink => Node {
                    kind: NodeKind::Symlink {
                        target: link.unwrap_or_default(),
                    },
                    mode,
                },
                tar::EntryType::Link => {
                    let raw_target = link.unwrap_or_default();
                    let target = match classify_path(&raw_target) {
                        _ if raw_target.starts_with('/') => None,
                        Cleaned::Path(t) => Some(t),
                        _ => None,
                    };
                    let Some(target) = target else {
                        self.note(
                            "path-escape",
                            path.clone(),
                            format!("{lay}: hard link `{path}` points at `{raw_target}`, outside the image root (hard link targets are relative to it)"),
                        );
                        continue;
                    };
                    match layer_files.get(&target) {
                        // The target was taken from this layer: keep the link, the tree has it.
                        Some((p, _)) if matches!(self.tree.get(&target).map(|n| &n.kind), Some(NodeKind::File { content: Content::Disk(t), .. }) if t.path() == p.as_path()) => {
                            Node { kind: NodeKind::HardLink { target }, mode }
                        }
                        // The target was shadowed by an upper layer: the link keeps this layer's bytes.
                        Some((p, size)) => {
                            kept.insert(p.clone());
                            self.note(
                                "hard-link",
                                path.clone(),
                                format!("`{path}` is a hard link to `{target}`; Talos unpacks hard links as empty files"),
                            );
                            Node { kind: NodeKind::File { content: Content::Disk(DiskFile::new(p.as_path())), size: *size }, mode }
                        }
                        None => {
                            return Err(Error::input(format!(
                                "{at}: hard link `{}` points at `{}`, which is not an earlier file of the same layer",
                                escape(&path),
                                escape(&target)
                            )))
                        }
                    }
                }
                tar::EntryType::Char => Node {
                    kind: NodeKind::Special(Special::CharDevice),
                    mode,
                },
                tar::EntryType::Block => Node {
                    kind: NodeKind::Special(Special::BlockDevice),
                    mode,
                },
                tar::EntryType::Fifo => Node {
                    kind: NodeKind::Special(Special::Fifo),
                    mode,
                },
                other => {
                    return Err(Error::input(format!(
                        "{at}: entry `{}` has an unsupported tar type {other:?}",
                        escape(&path)
                    )))
                }
            };
            let is_dir = node.is_dir();
            self.take(path, node, is_dir);
        }
        self.whiteouts.extend(layer_whiteouts);
        self.opaques.extend(layer_opaques);
        // Staged copies of shadowed files are no longer needed.
        for (path, (p, _)) in layer_files {
            let used = kept.contains(&p)
                || matches!(self.tree.get(&path).map(|n| &n.kind), Some(NodeKind::File { content: Content::Disk(t), .. }) if t.path() == p.as_path());
            if !used {
                let _ = std::fs::remove_file(p);
            }
        }
        // The uncompressed stream to its end (padding after the end-of-archive marker too).
        let mut rest = archive.into_inner();
        io::copy(&mut rest, &mut io::sink()).map_err(bad)?;
        Ok(rest.into_inner().finish())
    }

    fn take(&mut self, path: String, node: Node, is_dir: bool) {
        self.seen.insert(path.clone(), is_dir);
        self.tree.insert(&path, node);
    }
}

/// What a path of the layer being read is, for entries written below it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Dir,
    Symlink(String),
    Other,
}

/// Every proper ancestor of a clean path, nearest the root first (`a`, `a/b` for `a/b/c`).
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

/// The finding for an entry (`shown`, quoted) written below `anc`, which is not a directory.
fn below_non_dir(shown: &str, anc: &str, seen: &Seen, place: &str) -> (&'static str, String) {
    match seen {
        Seen::Symlink(target) => (
            "path-through-symlink",
            format!(
                "{shown} is written below `{anc}`, a symlink to `{target}` {place}; unpacking it would write through the link{}",
                if target.starts_with('/') || classify_path(&join_link(anc, target)) == Cleaned::Escapes {
                    ", outside the image root"
                } else {
                    ""
                }
            ),
        ),
        _ => (
            "path-below-file",
            format!("{shown} is written below `{anc}`, which is not a directory {place}"),
        ),
    }
}

/// Where a relative symlink at `link` points, as a raw path from the root.
fn join_link(link: &str, target: &str) -> String {
    crate::rootfs::join(parent(link), target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::to_json;
    use std::io::Write;

    enum E<'a> {
        F(&'a str, &'a [u8]),
        D(&'a str),
        L(&'a str, &'a str),
        H(&'a str, &'a str),
        C(&'a str),
    }

    fn layer(entries: &[E]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o755);
            h.set_mtime(0);
            match e {
                E::F(p, data) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, p, *data).unwrap();
                }
                E::D(p) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    b.append_data(&mut h, p, &b""[..]).unwrap();
                }
                E::L(p, t) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    b.append_link(&mut h, p, t).unwrap();
                }
                E::H(p, t) => {
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_size(0);
                    b.append_link(&mut h, p, t).unwrap();
                }
                E::C(p) => {
                    h.set_entry_type(tar::EntryType::Char);
                    h.set_size(0);
                    b.append_data(&mut h, p, &b""[..]).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    /// A layout holding one image made of `layers` (bottom first), with Docker or OCI types.
    fn image(dir: &Path, layers: Vec<Vec<u8>>, docker: bool, arch: &str) -> (Layout, Descriptor) {
        let l = Layout::open_or_create(dir).unwrap();
        let cfg = format!(
            r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}}}}"#
        );
        let cd = l.put_bytes(cfg.as_bytes()).unwrap();
        let (mt_m, mt_c, mt_l) = if docker {
            (
                oci::MT_DOCKER_MANIFEST,
                oci::MT_DOCKER_CONFIG,
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
            )
        } else {
            (
                oci::MT_OCI_MANIFEST,
                oci::MT_OCI_CONFIG,
                oci::MT_OCI_LAYER_GZIP,
            )
        };
        let layers = layers
            .into_iter()
            .map(|b| Descriptor::new(mt_l, l.put_bytes(&b).unwrap(), b.len() as u64))
            .collect();
        let m = Manifest {
            schema_version: 2,
            media_type: Some(mt_m.into()),
            config: Descriptor::new(mt_c, cd, cfg.len() as u64),
            layers,
            annotations: Default::default(),
        };
        let mb = to_json(&m).unwrap();
        let md = l.put_bytes(&mb).unwrap();
        let mut idx = Index::new(Some(oci::MT_OCI_INDEX));
        let mut d = Descriptor::new(mt_m, md, mb.len() as u64);
        d.platform = Some(Platform::linux(arch));
        idx.manifests.push(d);
        let ib = to_json(&idx).unwrap();
        let id = l.put_bytes(&ib).unwrap();
        (l, Descriptor::new(oci::MT_OCI_INDEX, id, ib.len() as u64))
    }

    fn flat(l: &Layout, d: &Descriptor, staging: &Path) -> Tree {
        let r = resolve(l, d, &Platform::linux("amd64"), "test").unwrap();
        flatten(|d| l.open_blob(d), &r.manifest, &[], staging, "test").unwrap()
    }

    #[test]
    fn whiteouts_opaque_dirs_and_mixed_compression() {
        let t = tempfile::tempdir().unwrap();
        let bottom = layer(&[
            E::D("etc"),
            E::F("etc/keep", b"k"),
            E::F("etc/old", b"o"),
            E::D("var"),
            E::F("var/a", b"a"),
            E::D("opt"),
            E::F("opt/x", b"x"),
            E::F("shadow/file", b"lower"),
        ]);
        let middle = layer(&[
            E::F("etc/.wh.old", b""),
            E::D("var"),
            E::F("var/.wh..wh..opq", b""),
            E::F("var/b", b"b"),
        ]);
        let top = layer(&[E::F("opt", b"now a file"), E::F("shadow/file", b"upper")]);
        let zstd_middle = zstd::encode_all(&middle[..], 3).unwrap();
        let (l, d) = image(
            &t.path().join("l"),
            vec![gzip(&bottom), zstd_middle, top],
            false,
            "amd64",
        );
        let staging = t.path().join("s");
        std::fs::create_dir_all(&staging).unwrap();
        let tree = flat(&l, &d, &staging);
        assert!(tree.get("etc/keep").is_some());
        assert!(tree.get("etc/old").is_none(), "whited out");
        assert!(tree.get("etc/.wh.old").is_none(), "markers never written");
        assert!(
            tree.get("var/a").is_none(),
            "opaque dir hides lower contents"
        );
        assert!(tree.get("var/b").is_some());
        assert!(
            tree.get("opt/x").is_none(),
            "a file in an upper layer hides a lower directory"
        );
        assert!(tree.get("opt").unwrap().is_file());
        assert_eq!(tree.read_all("shadow/file").unwrap(), b"upper");
    }

    #[test]
    fn hard_links_symlinks_specials_and_escapes() {
        let t = tempfile::tempdir().unwrap();
        let one = layer(&[
            E::F("bin/busybox", b"ELF"),
            E::H("bin/sh", "bin/busybox"),
            E::L("bin/ls", "/bin/busybox"),
            E::C("dev/null"),
        ]);
        let mut raw = one.clone();
        // A `../` entry written by hand, since the tar crate refuses to.
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..12].copy_from_slice(b"../etc/evil\0");
        h.set_size(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        raw.truncate(raw.len() - 1024);
        raw.extend_from_slice(h.as_bytes());
        raw.extend_from_slice(&[0u8; 1024]);
        let (l, d) = image(&t.path().join("l"), vec![raw], true, "amd64");
        let staging = t.path().join("s");
        std::fs::create_dir_all(&staging).unwrap();
        let mut tree = flat(&l, &d, &staging);
        assert!(matches!(
            tree.get("bin/sh").unwrap().kind,
            NodeKind::HardLink { .. }
        ));
        assert!(matches!(
            tree.get("bin/ls").unwrap().kind,
            NodeKind::Symlink { .. }
        ));
        assert!(matches!(
            tree.get("dev/null").unwrap().kind,
            NodeKind::Special(Special::CharDevice)
        ));
        assert_eq!(tree.notes.len(), 1);
        assert_eq!(tree.notes[0].rule, "path-escape");
        tree.resolve_hard_links().unwrap();
        assert_eq!(tree.read_all("bin/sh").unwrap(), b"ELF");
        let err = tree.normalise().unwrap_err().to_string();
        assert!(err.contains("dev/null"), "{err}");
    }

    #[test]
    fn root_entries_writes_through_links_and_duplicates() {
        let t = tempfile::tempdir().unwrap();
        let mut lower = layer(&[E::D("."), E::F("a/f", b"lower"), E::L("l", "/tmp")]);
        // A file below this layer's own symlink, written by hand like an attacker would.
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..3].copy_from_slice(b"l/x");
        h.set_size(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        lower.truncate(lower.len() - 1024);
        lower.extend_from_slice(h.as_bytes());
        lower.extend_from_slice(&[0u8; 1024]);
        let upper = layer(&[E::F("u/y", b"up"), E::F("dup", b"1"), E::F("dup", b"2")]);
        let through = layer(&[E::L("u", "../../etc")]);
        let (l, d) = image(
            &t.path().join("l"),
            vec![through, lower, upper],
            false,
            "amd64",
        );
        let staging = t.path().join("s");
        std::fs::create_dir_all(&staging).unwrap();
        let tree = flat(&l, &d, &staging);
        let notes: Vec<(&str, &str)> = tree
            .notes
            .iter()
            .map(|n| (n.rule, n.path.as_str()))
            .collect();
        assert_eq!(
            notes,
            vec![
                ("layer-duplicate", "dup"),
                ("path-through-symlink", "l/x"),
                ("path-through-symlink", "u/y"),
            ]
        );
        assert!(tree.notes[2].message.contains("outside the image root"));
        assert_eq!(tree.read_all("dup").unwrap(), b"1", "the first copy wins");
        assert_eq!(tree.read_all("a/f").unwrap(), b"lower");
    }

    #[test]
    fn platform_resolution() {
        let t = tempfile::tempdir().unwrap();
        let (l, d) = image(
            &t.path().join("l"),
            vec![layer(&[E::F("a", b"a")])],
            false,
            "arm64",
        );
        let err = resolve(&l, &d, &Platform::linux("amd64"), "src")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no `linux/amd64` image"), "{err}");
        assert!(resolve(&l, &d, &Platform::linux("arm64"), "src").is_ok());
        // A single manifest for the wrong architecture is refused, not used silently.
        let idx: Index = serde_json::from_slice(&l.read_document(&d.digest).unwrap()).unwrap();
        let mut m = idx.manifests[0].clone();
        m.platform = None;
        let err = resolve(&l, &m, &Platform::linux("amd64"), "src")
            .unwrap_err()
            .to_string();
        assert!(err.contains("is for `linux/arm64`"), "{err}");
    }
}
