//! `talext bundle create`: pull every reference (all platforms and the index untouched, unless
//! `--platform` narrows an image named by tag) into a staging OCI layout next to the output,
//! with the cosign signature and attestation tags of each image and its platform manifests
//! (unless `--no-signatures`), then pack it with the deterministic tar writer into a temporary file that is
//! renamed into place, so an interrupted run never leaves a half bundle under the final name.
//! The same references and registry content give the same bytes.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read};
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::{
    BundleFile, BundleImage, Progress, ANN_CONTAINERD_NAME, BUNDLE_FILE, FORMAT, INDEX_FILE,
    LAYOUT_FILE, SUMS_FILE, VERSION,
};
use crate::error::{Error, IoContext, Result};
use crate::oci::layout::Layout;
use crate::oci::{Descriptor, Digest, Index, Platform, ANN_REF_NAME, MT_OCI_INDEX};
use crate::registry::{Reference, RegistryClient, RegistryOptions};
use crate::tarw::TarWriter;
use crate::transfer;
use crate::transport::Location;

/// The `oci-layout` file (image-spec `image-layout.md`).
pub(super) const LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// What `create` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub images: Vec<BundleImage>,
    /// Distinct blobs in the bundle (manifests and indexes included).
    pub blobs: usize,
    /// Size of the bundle file.
    pub bytes: u64,
}

/// How `create` copies each image.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Platforms to keep of an index referenced by tag; empty means every platform. A
    /// reference pinned by digest is always copied whole: a subset would have another digest.
    pub platforms: Vec<Platform>,
    /// Also bundle the cosign signature and attestation tags of each image and of its platform
    /// manifests (`sha256-HEX.sig`, `.att`, the bare `sha256-HEX` referrers tag) when its
    /// registry has them, as images of their own under the image's repository, so `push` puts
    /// them where cosign looks.
    pub signatures: bool,
}

/// Write a bundle of `references` (registry references, tags or digests, normalised the way
/// Docker does; duplicates collapse) to `output`.
pub fn create(
    references: &[String],
    output: &Path,
    options: &RegistryOptions,
    how: &CreateOptions,
    progress: Progress,
) -> Result<Created> {
    let refs = normalise(references)?;
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::create_dir_all(parent).at("creating", parent)?;
    // Staged beside the output, not in `/tmp`: a bundle is as large as its images.
    let staging = crate::store::scratch::dir_in(parent, "bundle")?;
    let dir = staging.path().join("layout");
    // Each reference (and its signatures) is fetched by one of a few workers into the one
    // staging layout (its `index.json` changes under its lock); the list keeps input order.
    let one = |reference: &String| -> Result<Vec<BundleImage>> {
        progress(&format!("fetching `{reference}`"));
        let pinned = Reference::parse(reference)?.digest.is_some();
        let platforms = if pinned { &[][..] } else { &how.platforms[..] };
        let image = fetch(reference, &dir, platforms, options, progress)?;
        let mut out = vec![image];
        if how.signatures {
            let digest = out[0].digest.clone();
            let mut digests = vec![digest.clone()];
            if crate::oci::is_index_type(&out[0].media_type) {
                let staged = Layout::open(&dir)?;
                let index: Index = serde_json::from_slice(&staged.read_document(&digest)?)
                    .map_err(|e| Error::input(format!("index `{digest}` is not valid: {e}")))?;
                digests.extend(index.manifests.into_iter().map(|d| d.digest));
            }
            for sig in signature_refs(reference, &digests, options)? {
                progress(&format!("fetching the signature `{sig}`"));
                out.push(fetch(&sig, &dir, &[], options, progress)?);
            }
        }
        Ok(out)
    };
    // The staging layout exists before the workers write into it.
    Layout::open_or_create(&dir)?;
    let fetched = transfer::in_workers(&refs, super::push::IMAGE_JOBS, one)?;
    let mut images = Vec::new();
    let mut seen = BTreeSet::new();
    for list in fetched {
        for image in list {
            if seen.insert(image.reference.clone()) {
                images.push(image);
            }
        }
    }
    let layout = Layout::open(&dir)?;
    let index = index_of(&images);
    let index_bytes = serde_json::to_vec(&index).map_err(|e| Error::internal(e.to_string()))?;
    let bundle = BundleFile {
        format: FORMAT.to_string(),
        version: VERSION,
        images: images.clone(),
    };
    let mut bundle_bytes =
        serde_json::to_vec_pretty(&bundle).map_err(|e| Error::internal(e.to_string()))?;
    bundle_bytes.push(b'\n');
    progress(&format!("writing `{}`", output.display()));
    let blobs = pack(&layout, &index_bytes, &bundle_bytes, output)?;
    let bytes = fs::metadata(output).at("reading", output)?.len();
    Ok(Created {
        images,
        blobs,
        bytes,
    })
}

/// Copy `reference` into the staging layout at `dir`.
fn fetch(
    reference: &str,
    dir: &Path,
    platforms: &[Platform],
    options: &RegistryOptions,
    progress: Progress,
) -> Result<BundleImage> {
    let copied = transfer::copy(
        &Location::Registry(reference.to_string()),
        &Location::Oci {
            dir: dir.to_path_buf(),
            tag: None,
        },
        platforms,
        options,
    )?;
    let layout = Layout::open(dir)?;
    let digest: Digest = copied.digest.parse()?;
    let size = layout
        .blob_size(&digest)
        .ok_or_else(|| Error::internal(format!("`{digest}` is missing from the staging layout")))?;
    progress(&format!(
        "fetched `{reference}` as `{digest}`: {} blob(s) downloaded, {} shared",
        copied.blobs_copied, copied.blobs_skipped
    ));
    Ok(BundleImage {
        reference: reference.to_string(),
        digest,
        media_type: copied.media_type,
        size,
    })
}

/// The signature tags of `digests` (an image and its platform manifests) that the registry of
/// `reference` has, as references in the image's repository: cosign's `sha256-HEX.sig` and
/// `sha256-HEX.att`, and the referrers tag `sha256-HEX`.
fn signature_refs(
    reference: &str,
    digests: &[Digest],
    options: &RegistryOptions,
) -> Result<Vec<String>> {
    let r = Reference::parse(reference)?;
    let client = RegistryClient::new(options, &r.registry)?;
    let mut out = Vec::new();
    for digest in digests {
        let base = format!("sha256-{}", digest.hex());
        for tag in [format!("{base}.sig"), format!("{base}.att"), base] {
            if client.manifest_digest(&r.repository, &tag, &[])?.is_some() {
                out.push(format!("{}/{}:{tag}", r.registry, r.repository));
            }
        }
    }
    Ok(out)
}

/// Parse, normalise and de-duplicate the references, keeping their order.
fn normalise(references: &[String]) -> Result<Vec<String>> {
    if references.is_empty() {
        return Err(Error::input_hint(
            "no images to bundle",
            "name references as arguments or list them in `--images-file`",
        ));
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for r in references {
        let name = Reference::parse(r)?.to_string();
        if seen.insert(name.clone()) {
            out.push(name);
        }
    }
    Ok(out)
}

/// `index.json`: one entry per image, named by its original reference (image-spec
/// `image-layout.md`: `org.opencontainers.image.ref.name` names an entry; its grammar admits
/// `/`, `:` and `@`, so a full reference fits).
fn index_of(images: &[BundleImage]) -> Index {
    let mut index = Index::new(Some(MT_OCI_INDEX));
    for image in images {
        let mut desc = Descriptor::new(&image.media_type, image.digest.clone(), image.size);
        desc.annotations
            .insert(ANN_REF_NAME.to_string(), image.reference.clone());
        desc.annotations
            .insert(ANN_CONTAINERD_NAME.to_string(), image.reference.clone());
        index.manifests.push(desc);
    }
    index
}

/// Pack the bundle: metadata first (so a reader knows what to expect before the blobs), then
/// `blobs/sha256/` in name order. Returns the number of blobs.
fn pack(layout: &Layout, index: &[u8], bundle: &[u8], output: &Path) -> Result<usize> {
    let blob_dir = layout.root().join("blobs/sha256");
    let mut blobs = Vec::new();
    for entry in fs::read_dir(&blob_dir).at("reading", &blob_dir)? {
        let entry = entry.at("reading", &blob_dir)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let digest: Digest = format!("sha256:{name}").parse()?;
        blobs.push(digest);
    }
    if let Ok(others) = fs::read_dir(layout.root().join("blobs")) {
        for other in others.flatten() {
            if other.file_name() != "sha256" {
                return Err(Error::input(format!(
                    "the images hold `{}` content; bundles carry sha256 content only",
                    other.file_name().to_string_lossy()
                )));
            }
        }
    }
    blobs.sort();
    let mut sums: Vec<(String, String)> = vec![
        (LAYOUT_FILE.to_string(), hex_sha256(LAYOUT_CONTENT)),
        (INDEX_FILE.to_string(), hex_sha256(index)),
        (BUNDLE_FILE.to_string(), hex_sha256(bundle)),
    ];
    // A blob's name is the sha256 of its content; the copy below checks that it still is.
    sums.extend(
        blobs
            .iter()
            .map(|d| (format!("blobs/sha256/{}", d.hex()), d.hex().to_string())),
    );
    sums.sort();
    let sums_text: String = sums
        .iter()
        .map(|(path, hex)| format!("{hex}  {path}\n"))
        .collect();

    let parent = output.parent().filter(|p| !p.as_os_str().is_empty());
    let parent = parent.unwrap_or(Path::new("."));
    let tmp = crate::store::scratch::file_in(parent, "bundle")?;
    let mut w = TarWriter::new(BufWriter::with_capacity(1 << 20, tmp), 0);
    let small: [(&str, &[u8]); 4] = [
        (LAYOUT_FILE, LAYOUT_CONTENT),
        (INDEX_FILE, index),
        (BUNDLE_FILE, bundle),
        (SUMS_FILE, sums_text.as_bytes()),
    ];
    for (name, bytes) in small {
        w.file(name, 0o644, bytes.len() as u64, bytes)
            .at("writing", output)?;
    }
    w.dir("blobs", 0o755).at("writing", output)?;
    w.dir("blobs/sha256", 0o755).at("writing", output)?;
    for digest in &blobs {
        let path = layout.blob_path(digest);
        let f = File::open(&path).at("opening", &path)?;
        let size = f.metadata().at("reading", &path)?.len();
        let mut reader = HashingReader::new(f);
        w.file(
            &format!("blobs/sha256/{}", digest.hex()),
            0o644,
            size,
            &mut reader,
        )
        .at("writing", output)?;
        let actual = reader.digest();
        if &actual != digest {
            return Err(Error::internal(format!(
                "blob `{digest}` changed on disk while the bundle was written (now `{actual}`)"
            )));
        }
    }
    let tmp = w
        .finish()
        .at("writing", output)?
        .into_inner()
        .map_err(|e| Error::internal(format!("flushing `{}`: {}", output.display(), e.error())))?;
    tmp.as_file().sync_all().at("syncing", output)?;
    crate::image::persist(tmp, output)?;
    Ok(blobs.len())
}

pub(super) fn hex_sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes).as_slice())
}

/// A reader that hashes what passes through it.
pub(super) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> HashingReader<R> {
    pub(super) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
        }
    }

    pub(super) fn digest(self) -> Digest {
        Digest::from_sha256(&self.hasher.finalize())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}
