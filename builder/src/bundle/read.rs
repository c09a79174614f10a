//! Reading a bundle: one streaming pass over the tar re-hashes every file, then the checks run on what was seen: each blob's
//! content against its name, each `SHA256SUMS` line, `bundle.json` against `index.json`, and
//! every manifest, config and layer each image names, with its size (image-spec
//! `descriptor.md`: content must match digest and size). Only manifests and metadata are kept in
//! memory; layers are streamed. Every problem is collected, so one run names all damage.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use super::{
    parse_bundle_file, BundleFile, BundleImage, BUNDLE_FILE, INDEX_FILE, LAYOUT_FILE, SUMS_FILE,
};
use crate::error::{Error, IoContext, Result};
use crate::oci::{self, Digest, HashingWriter, Index, Manifest, ANN_REF_NAME};

/// Blobs up to this size that look like JSON (a `{` after any whitespace) are kept on disk for
/// the reference walk: the size `push` (through `copy`) still reads as a manifest, so whatever
/// `push` would read as one, the walk reads too.
const KEEP_MAX: u64 = crate::store::layout::MAX_DOCUMENT;
/// Our own metadata files are small; refuse anything larger rather than read it into memory.
const META_MAX: u64 = 64 << 20;
const META_FILES: [&str; 4] = [LAYOUT_FILE, INDEX_FILE, BUNDLE_FILE, SUMS_FILE];

/// What a verified bundle holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub images: Vec<BundleImage>,
    /// Distinct blobs.
    pub blobs: usize,
    /// Total size of the blobs.
    pub blob_bytes: u64,
}

/// Check every file of the bundle at `file` without unpacking it.
pub fn verify(file: &Path) -> Result<Verified> {
    scan(file)?.check(file)
}

struct Seen {
    sha256: Digest,
    size: u64,
}

#[derive(Default)]
struct Scan {
    files: BTreeMap<String, Seen>,
    /// Our metadata files, in memory (each under [`META_MAX`]).
    kept: HashMap<String, Vec<u8>>,
    /// JSON-looking blobs up to [`KEEP_MAX`], on disk in a spill file.
    spilled: HashMap<String, std::path::PathBuf>,
    spill: Option<tempfile::TempDir>,
    problems: Vec<String>,
}

fn scan(file: &Path) -> Result<Scan> {
    let f = File::open(file).at("opening", file)?;
    let mut archive = tar::Archive::new(io::BufReader::with_capacity(1 << 20, f));
    let not_a_bundle = |e: &dyn std::fmt::Display| {
        Error::input_hint(
            format!("`{}` is not a bundle: {e}", file.display()),
            "give a file written by `talext bundle create`",
        )
    };
    let mut scan = Scan::default();
    let entries = archive.entries().map_err(|e| not_a_bundle(&e))?;
    for entry in entries {
        let mut entry = match entry {
            Ok(entry) => entry,
            Err(e) if scan.files.is_empty() => return Err(not_a_bundle(&e)),
            Err(e) => {
                scan.problems
                    .push(format!("the archive is damaged or truncated: {e}"));
                break;
            }
        };
        let raw = match entry.path() {
            Ok(p) => p.to_string_lossy().into_owned(),
            Err(e) => {
                scan.problems.push(format!("an entry has a bad name: {e}"));
                continue;
            }
        };
        let path = match crate::rootfs::classify_path(&raw) {
            // `.`, `./` and `/` name the bundle's root directory itself.
            crate::rootfs::Cleaned::Root => continue,
            crate::rootfs::Cleaned::Path(p) => p,
            crate::rootfs::Cleaned::Escapes => {
                scan.problems
                    .push(format!("entry `{}` escapes the bundle", raw.escape_debug()));
                continue;
            }
        };
        match entry.header().entry_type() {
            tar::EntryType::Directory => continue,
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            other => {
                scan.problems.push(format!(
                    "entry `{path}` is a {other:?}; bundles hold only files and directories"
                ));
                continue;
            }
        }
        let is_meta = META_FILES.contains(&path.as_str());
        if !is_meta && !path.starts_with("blobs/") {
            scan.problems
                .push(format!("`{path}` does not belong in a bundle"));
            continue;
        }
        if scan.files.contains_key(&path) {
            scan.problems
                .push(format!("`{path}` appears twice in the archive"));
            continue;
        }
        let size = entry.size();
        if is_meta && size > META_MAX {
            scan.problems
                .push(format!("`{path}` is implausibly large ({size} bytes)"));
            continue;
        }
        let small = !is_meta && size <= KEEP_MAX;
        // Small blobs may be manifests the walk reads later: those that look like JSON are
        // spilled to disk (not memory) as they are read; nothing else is written anywhere.
        let mut written: Option<std::path::PathBuf> = None;
        let mut spill: Option<BufWriter<File>> = None;
        // Bytes before the first one that is not JSON whitespace, until it decides.
        let mut pending = Vec::new();
        let mut hashed = HashingWriter::new(io::sink());
        let keep = is_meta;
        let mut first = None;
        let mut kept = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut damaged = None;
        loop {
            let n = match entry.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    damaged = Some(e);
                    break;
                }
            };
            let data = &buf[..n];
            hashed.write_all(data).at("reading", file)?;
            if keep {
                kept.extend_from_slice(data);
            }
            if !small {
                continue;
            }
            if first.is_none() {
                first = data
                    .iter()
                    .copied()
                    .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
                match first {
                    None => {
                        pending.extend_from_slice(data);
                        continue;
                    }
                    Some(b'{') => {
                        if scan.spill.is_none() {
                            scan.spill = Some(crate::store::scratch::dir("verify")?);
                        }
                        if let Some(dir) = &scan.spill {
                            let p = dir.path().join(scan.files.len().to_string());
                            let mut w = BufWriter::with_capacity(
                                1 << 16,
                                File::create(&p).at("creating", &p)?,
                            );
                            w.write_all(&pending).at("writing", &p)?;
                            spill = Some(w);
                            written = Some(p);
                        }
                    }
                    Some(_) => {}
                }
                pending = Vec::new();
            }
            if let (Some(w), Some(p)) = (spill.as_mut(), written.as_ref()) {
                w.write_all(data).at("writing", p)?;
            }
        }
        if let (Some(mut w), Some(p)) = (spill.take(), written.as_ref()) {
            w.flush().at("writing", p)?;
        }
        let (sha256, got, _) = hashed.finish();
        if let Some(e) = damaged {
            scan.problems.push(format!("`{path}` cannot be read: {e}"));
            break;
        }
        if got != size {
            scan.problems.push(format!(
                "the archive is truncated: `{path}` has {got} of its {size} bytes"
            ));
            break;
        }
        if keep {
            scan.kept.insert(path.clone(), kept);
        } else if let Some(p) = written {
            if small && first == Some(b'{') {
                scan.spilled.insert(path.clone(), p);
            } else {
                let _ = fs::remove_file(&p);
            }
        }
        scan.files.insert(path, Seen { sha256, size });
    }
    Ok(scan)
}

impl Scan {
    fn check(mut self, file: &Path) -> Result<Verified> {
        let mut problems = std::mem::take(&mut self.problems);
        let mut blobs: BTreeMap<Digest, u64> = BTreeMap::new();
        let mut corrupt: BTreeSet<String> = BTreeSet::new();
        for (path, seen) in &self.files {
            let Some(name) = path.strip_prefix("blobs/") else {
                continue;
            };
            let digest = name
                .split_once('/')
                .and_then(|(alg, hex)| format!("{alg}:{hex}").parse::<Digest>().ok())
                .filter(|d| d.algorithm() == "sha256");
            match digest {
                Some(digest) => {
                    if digest != seen.sha256 {
                        problems.push(format!(
                            "blob `{digest}` is corrupt: its content hashes to `{}`",
                            seen.sha256
                        ));
                        corrupt.insert(path.clone());
                    }
                    blobs.insert(digest, seen.size);
                }
                None => problems.push(format!("`{path}` is not a sha256 blob name")),
            }
        }
        self.check_sums(&corrupt, &mut problems);
        match self.kept.get(LAYOUT_FILE) {
            None => problems.push(format!("`{LAYOUT_FILE}` is missing")),
            Some(bytes) => {
                let version = serde_json::from_slice::<serde_json::Value>(bytes)
                    .ok()
                    .and_then(|v| v.get("imageLayoutVersion").cloned());
                if version.is_none() {
                    problems.push(format!("`{LAYOUT_FILE}` is not an OCI layout marker"));
                }
            }
        }
        let bundle = self.bundle_file(&mut problems);
        if let Some(bundle) = &bundle {
            Self::check_references(&bundle.images, &mut problems);
            let mut visited = BTreeSet::new();
            for image in &bundle.images {
                self.walk(
                    &image.digest,
                    image.size,
                    &image.media_type,
                    &image.reference,
                    &blobs,
                    &mut visited,
                    &mut problems,
                );
            }
        }
        if !problems.is_empty() {
            return Err(Error::input_hint(
                format!(
                    "`{}` failed verification: {}",
                    file.display(),
                    problems.join("; ")
                ),
                "copy the bundle again from where it was made; a damaged bundle is never pushed",
            ));
        }
        let bundle = bundle.expect("no problems means bundle.json was read");
        Ok(Verified {
            images: bundle.images,
            blobs: blobs.len(),
            blob_bytes: blobs.values().sum(),
        })
    }

    /// Every `SHA256SUMS` line matches its file, and every file has a line.
    fn check_sums(&self, corrupt: &BTreeSet<String>, problems: &mut Vec<String>) {
        let Some(text) = self.kept.get(SUMS_FILE) else {
            problems.push(format!("`{SUMS_FILE}` is missing"));
            return;
        };
        let text = String::from_utf8_lossy(text);
        let mut listed = BTreeSet::new();
        for (n, line) in text.lines().enumerate() {
            // `sha256sum` writes `HEX  PATH` (text mode) or `HEX *PATH` (binary mode).
            let parsed = line
                .split_once("  ")
                .or_else(|| line.split_once(" *"))
                .filter(|(hex, _)| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
            let Some((hex, path)) = parsed else {
                problems.push(format!("`{SUMS_FILE}` line {} is malformed", n + 1));
                continue;
            };
            listed.insert(path.to_string());
            match self.files.get(path) {
                None => problems.push(format!(
                    "`{path}` is listed in `{SUMS_FILE}` but missing from the archive"
                )),
                Some(seen) if !seen.sha256.hex().eq_ignore_ascii_case(hex) => {
                    if !corrupt.contains(path) {
                        problems.push(format!(
                            "`{path}` does not match its `{SUMS_FILE}` line: content hashes to `{}`",
                            seen.sha256
                        ));
                    }
                }
                Some(_) => {}
            }
        }
        for path in self.files.keys() {
            if path != SUMS_FILE && !listed.contains(path) {
                problems.push(format!("`{path}` is not listed in `{SUMS_FILE}`"));
            }
        }
    }

    /// `bundle.json`, checked against `index.json` entry by entry.
    fn bundle_file(&self, problems: &mut Vec<String>) -> Option<BundleFile> {
        let bundle = match self.kept.get(BUNDLE_FILE).map(|b| parse_bundle_file(b)) {
            None => {
                problems.push(format!("`{BUNDLE_FILE}` is missing"));
                None
            }
            Some(Err(e)) => {
                problems.push(e.to_string());
                None
            }
            Some(Ok(b)) => Some(b),
        };
        let index = match self
            .kept
            .get(INDEX_FILE)
            .map(|b| serde_json::from_slice::<Index>(b))
        {
            None => {
                problems.push(format!("`{INDEX_FILE}` is missing"));
                None
            }
            Some(Err(e)) => {
                problems.push(format!("`{INDEX_FILE}` is not a valid OCI index: {e}"));
                None
            }
            Some(Ok(i)) => Some(i),
        };
        let (bundle, index) = (bundle?, index?);
        if bundle.images.is_empty() {
            problems.push(format!("`{BUNDLE_FILE}` lists no images"));
        }
        if index.manifests.len() != bundle.images.len() {
            problems.push(format!(
                "`{INDEX_FILE}` has {} entries, `{BUNDLE_FILE}` lists {} images",
                index.manifests.len(),
                bundle.images.len()
            ));
            return None;
        }
        let mut consistent = true;
        for (desc, image) in index.manifests.iter().zip(&bundle.images) {
            if desc.ref_name() != Some(image.reference.as_str())
                || desc.digest != image.digest
                || desc.size != image.size
                || desc.media_type != image.media_type
            {
                consistent = false;
                problems.push(format!(
                    "`{INDEX_FILE}` entry `{}` ({}) disagrees with `{BUNDLE_FILE}` entry `{}` ({})",
                    desc.annotations
                        .get(ANN_REF_NAME)
                        .map_or("(unnamed)", String::as_str),
                    desc.digest,
                    image.reference,
                    image.digest
                ));
            }
        }
        consistent.then_some(bundle)
    }

    /// Check that `digest` is present with `size` bytes and, for a manifest or index, that
    /// everything it names is too. The walk is iterative and stops at
    /// [`oci::MAX_INDEX_DEPTH`] nested indexes, as every command's does. A document's kind is
    /// judged from its bytes when they are JSON, as `push` (through `copy`) judges it, so a
    /// descriptor whose media type hides a manifest still has that manifest's blobs checked.
    #[allow(clippy::too_many_arguments)]
    fn walk(
        &self,
        digest: &Digest,
        size: u64,
        media_type: &str,
        owner: &str,
        blobs: &BTreeMap<Digest, u64>,
        visited: &mut BTreeSet<(Digest, bool)>,
        problems: &mut Vec<String>,
    ) {
        // Each entry: (digest, size, media type, depth, whether it must be a manifest or an
        // index: an image itself or an index's entry, which `push` copies only as documents).
        let mut stack = vec![(digest.clone(), size, media_type.to_string(), 0usize, true)];
        while let Some((digest, size, media_type, depth, document)) = stack.pop() {
            // Seen as a plain blob is not seen as a document: each is checked once as each.
            if !visited.insert((digest.clone(), document)) {
                continue;
            }
            match blobs.get(&digest) {
                None => {
                    problems.push(format!(
                        "blob `{digest}` of `{owner}` is missing from the bundle"
                    ));
                    continue;
                }
                Some(&actual) if actual != size => {
                    problems.push(format!(
                        "blob `{digest}` of `{owner}` has {actual} bytes, its descriptor says {size}"
                    ));
                    continue;
                }
                Some(_) => {}
            }
            let bytes = self.kept(&digest);
            let sniffed = bytes.as_deref().and_then(oci::sniff_media_type);
            let declared_doc =
                oci::is_index_type(&media_type) || oci::is_manifest_type(&media_type);
            let kind = match (&sniffed, declared_doc) {
                (Some(mt), _) if oci::is_index_type(mt) || oci::is_manifest_type(mt) => {
                    if declared_doc && *mt != media_type {
                        problems.push(format!(
                            "`{digest}` of `{owner}` is declared `{media_type}` but is a `{mt}`"
                        ));
                    }
                    mt.clone()
                }
                (_, true) => media_type.clone(),
                _ if document => {
                    problems.push(format!(
                        "`{digest}` of `{owner}` is named as an image but is not an image manifest or index (`{media_type}`)"
                    ));
                    continue;
                }
                _ => continue,
            };
            let Some(bytes) = bytes else {
                problems.push(format!("manifest `{digest}` of `{owner}` is not JSON"));
                continue;
            };
            if oci::is_index_type(&kind) && depth >= oci::MAX_INDEX_DEPTH {
                problems.push(format!(
                    "index `{digest}` of `{owner}` nests indexes more than {} deep",
                    oci::MAX_INDEX_DEPTH
                ));
                continue;
            }
            let mut push = |d: &crate::oci::Descriptor, document: bool| {
                // Non-distributable content stays where its `urls` point (image-spec "urls").
                if d.urls.as_ref().is_none_or(|u| u.is_empty()) {
                    let mt = d.media_type.clone();
                    stack.push((d.digest.clone(), d.size, mt, depth + 1, document));
                }
            };
            if oci::is_index_type(&kind) {
                match serde_json::from_slice::<Index>(&bytes) {
                    Ok(index) => index.manifests.iter().for_each(|d| push(d, true)),
                    Err(e) => {
                        problems.push(format!("index `{digest}` of `{owner}` is not valid: {e}"))
                    }
                }
            } else {
                match serde_json::from_slice::<Manifest>(&bytes) {
                    Ok(m) => std::iter::once(&m.config)
                        .chain(&m.layers)
                        .for_each(|d| push(d, false)),
                    Err(e) => problems.push(format!(
                        "manifest `{digest}` of `{owner}` is not valid: {e}"
                    )),
                }
            }
        }
    }

    /// The bytes of a JSON-looking blob seen in the scan (spilled to disk, not kept in memory).
    fn kept(&self, digest: &Digest) -> Option<Vec<u8>> {
        let key = format!("blobs/sha256/{}", digest.hex());
        let path = self.spilled.get(&key)?;
        crate::store::layout::read_capped(path, KEEP_MAX).ok()
    }

    /// What `push` would refuse about an image's reference, found before "intact" is said:
    /// a reference that does not parse (or is not in its normal form), a pin to another digest,
    /// or one that cannot be re-homed under a registry.
    fn check_references(images: &[BundleImage], problems: &mut Vec<String>) {
        let neutral = super::push::Target {
            registry: "registry.invalid".into(),
            prefix: String::new(),
        };
        for image in images {
            let shown = image.reference.escape_debug().to_string();
            let parsed = match crate::registry::Reference::parse(&image.reference) {
                Ok(r) => r,
                Err(e) => {
                    problems.push(format!("image reference `{shown}` is not valid: {e}"));
                    continue;
                }
            };
            if parsed
                .digest
                .as_deref()
                .is_some_and(|d| d != image.digest.as_str())
            {
                problems.push(format!(
                    "image `{shown}` is pinned to another digest than the `{}` it holds",
                    image.digest
                ));
            }
            if let Err(e) = neutral.map(image) {
                problems.push(e.to_string());
            }
        }
    }
}
