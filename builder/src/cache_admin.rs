//! `talext cache ls|verify|prune`: what the cache directory holds, a full re-hash of every blob
//! in it (evicting what fails), and eviction (leftovers of killed runs, orphaned blobs, least
//! recently used layers down to `--max-size`). Prune holds the cache's exclusive lock, so it
//! never removes a blob a build is copying; blobs younger than [`GRACE`] that nothing names yet
//! are left alone, because a concurrent pull writes blobs before it names them.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, IoContext, Result};
use crate::layer::LayerInfo;
use crate::oci::{self, Digest, Index, Manifest};
use crate::store::layout::{open_regular, read_capped, Layout};
use crate::store::lock::Lock;
use crate::store::scratch;

/// Unnamed blobs younger than this may belong to a pull or build still running.
pub const GRACE: Duration = Duration::from_secs(3600);

#[derive(Debug, Args)]
pub struct CacheArgs {
    /// The cache directory (default `$XDG_CACHE_HOME/talext`, else `~/.cache/talext`).
    #[arg(long, env = "TALEXT_CACHE_DIR", value_name = "DIR", global = true)]
    pub cache_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: CacheCommand,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List cached layers and source images with their sizes.
    Ls {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Re-hash every cached blob; evict the ones that do not match their digest (exit 1 if any).
    Verify {
        /// Print `{blobs, bytes, evicted: [PATH]}` instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove leftovers of killed runs and orphaned blobs; with `--max-size`, evict the least
    /// recently used layers (then the oldest source images) until the cache fits.
    Prune {
        /// Largest size the cache may keep (`500M`, `10G`, `2GiB` or bytes).
        #[arg(long, env = "TALEXT_CACHE_MAX_SIZE", value_name = "SIZE")]
        max_size: Option<String>,
        /// Remove everything in the cache.
        #[arg(long)]
        all: bool,
        /// Print `{bytesFreed}` instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listing {
    pub root: PathBuf,
    pub layers: Vec<LayerEntry>,
    pub images: Vec<ImageEntry>,
    pub total_bytes: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LayerEntry {
    pub key: String,
    pub digest: String,
    pub size: u64,
    /// Seconds since the epoch of the last build that used it.
    pub last_used: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageEntry {
    pub tag: String,
    pub digest: String,
}

struct Dirs {
    root: PathBuf,
    layers: PathBuf,
    images: PathBuf,
}

impl Dirs {
    fn new(root: PathBuf) -> Self {
        Dirs {
            layers: root.join("layers"),
            images: root.join("images"),
            root,
        }
    }
}

pub fn run(args: CacheArgs) -> Result<bool> {
    let root = args
        .cache_dir
        .clone()
        .or_else(crate::pull::default_cache_dir)
        .ok_or_else(|| Error::input("no cache directory: set `--cache-dir` or `HOME`"))?;
    let dirs = Dirs::new(root);
    match args.command {
        CacheCommand::Ls { json } => {
            let l = list(&dirs)?;
            if json {
                crate::cli::outln(pretty(&l)?)?;
            } else {
                crate::cli::out(render(&l))?;
            }
            Ok(true)
        }
        CacheCommand::Verify { json } => {
            let (checked, bytes, bad) = verify(&dirs)?;
            for p in &bad {
                eprintln!(
                    "evicted `{}`: its content does not match its digest",
                    p.display()
                );
            }
            if json {
                crate::cli::outln(pretty(&serde_json::json!({
                    "blobs": checked,
                    "bytes": bytes,
                    "evicted": bad,
                }))?)?;
            } else {
                crate::cli::outln(format!(
                    "{checked} blob(s), {bytes} bytes verified, {} corrupt and evicted",
                    bad.len()
                ))?;
            }
            Ok(bad.is_empty())
        }
        CacheCommand::Prune {
            max_size,
            all,
            json,
        } => {
            let max = max_size.as_deref().map(parse_size).transpose()?;
            let freed = prune(&dirs, if all { Some(0) } else { max })?;
            if json {
                crate::cli::outln(pretty(&serde_json::json!({ "bytesFreed": freed }))?)?;
            } else {
                crate::cli::outln(format!("{freed} bytes freed"))?;
            }
            Ok(true)
        }
    }
}

fn pretty(v: &impl Serialize) -> Result<String> {
    serde_json::to_string_pretty(v).map_err(|e| Error::internal(e.to_string()))
}

fn mtime_secs(p: &Path) -> u64 {
    fs::symlink_metadata(p)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

fn layer_keys(dirs: &Dirs) -> Vec<(String, PathBuf, Option<LayerInfo>)> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dirs.layers.join("keys")) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(key) = name.strip_suffix(".json") else {
            continue;
        };
        let info = read_capped(&e.path(), 1 << 20)
            .ok()
            .and_then(|b| serde_json::from_slice::<LayerInfo>(&b).ok());
        out.push((key.to_string(), e.path(), info));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn list(dirs: &Dirs) -> Result<Listing> {
    let mut layers = Vec::new();
    for (key, path, info) in layer_keys(dirs) {
        if let Some(info) = info {
            layers.push(LayerEntry {
                key,
                digest: info.digest.to_string(),
                size: info.size,
                last_used: mtime_secs(&path),
            });
        }
    }
    let mut images = Vec::new();
    if let Ok(l) = Layout::open(&dirs.images) {
        for d in l.index()?.manifests {
            if let Some(tag) = d.ref_name() {
                images.push(ImageEntry {
                    tag: tag.to_string(),
                    digest: d.digest.to_string(),
                });
            }
        }
    }
    Ok(Listing {
        total_bytes: scratch::disk_usage(&dirs.root),
        root: dirs.root.clone(),
        layers,
        images,
    })
}

fn render(l: &Listing) -> String {
    let mut s = format!("cache `{}`: {} bytes\n", l.root.display(), l.total_bytes);
    for e in &l.layers {
        s.push_str(&format!(
            "layer  {}  {}  {} bytes\n",
            &e.key[..e.key.len().min(16)],
            e.digest,
            e.size
        ));
    }
    for i in &l.images {
        s.push_str(&format!("image  {}  {}\n", i.tag, i.digest));
    }
    s
}

/// Every blob file of a content-addressed directory, with the digest its name claims.
fn blob_files(dir: &Path) -> Vec<(Digest, PathBuf)> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir.join("blobs/sha256")) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Ok(d) = format!("sha256:{name}").parse::<Digest>() {
            out.push((d, e.path()));
        }
    }
    out.sort();
    out
}

fn hashes_to(path: &Path, digest: &Digest) -> Result<bool> {
    let Ok(mut f) = open_regular(path) else {
        return Ok(false);
    };
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).at("reading", path)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()) == digest.hex())
}

fn verify(dirs: &Dirs) -> Result<(usize, u64, Vec<PathBuf>)> {
    let _locks = locks(dirs)?;
    let (mut checked, mut bytes, mut bad) = (0, 0, Vec::new());
    for dir in [&dirs.layers, &dirs.images] {
        for (digest, path) in blob_files(dir) {
            checked += 1;
            bytes += fs::symlink_metadata(&path).map(|m| m.len()).unwrap_or(0);
            if !hashes_to(&path, &digest)? {
                fs::remove_file(&path).at("removing", &path)?;
                bad.push(path);
            }
        }
    }
    drop_dangling(dirs)?;
    Ok((checked, bytes, bad))
}

/// The exclusive locks prune and verify hold: the layer cache and the source cache.
fn locks(dirs: &Dirs) -> Result<Vec<Lock>> {
    let mut out = Vec::new();
    for d in [&dirs.layers, &dirs.images] {
        if d.is_dir() {
            out.push(Lock::exclusive(d)?);
        }
    }
    Ok(out)
}

/// Remove layer keys whose blob is gone, and source-cache tags whose content is incomplete.
fn drop_dangling(dirs: &Dirs) -> Result<()> {
    for (_, path, info) in layer_keys(dirs) {
        let ok = info.is_some_and(|i| {
            fs::symlink_metadata(Layout::at(&dirs.layers).blob_path(&i.digest))
                .is_ok_and(|m| m.len() == i.size)
        });
        if !ok {
            let _ = fs::remove_file(&path);
        }
    }
    if let Ok(images) = Layout::open(&dirs.images) {
        let mut index = images.index()?;
        index.manifests.retain(|d| {
            reachable(&images, std::slice::from_ref(d)).is_ok_and(|(_, complete)| complete)
        });
        write_index_locked(&images, index)?;
    }
    Ok(())
}

/// `index.json` rewritten while the caller already holds the layout's lock.
fn write_index_locked(l: &Layout, index: Index) -> Result<()> {
    let bytes = serde_json::to_vec(&index).map_err(|e| Error::internal(e.to_string()))?;
    crate::image::write_file_atomic(&l.root().join("index.json"), &bytes)
}

/// Every blob the descriptors name (documents and layers), and whether all are present.
fn reachable(l: &Layout, roots: &[oci::Descriptor]) -> Result<(HashSet<Digest>, bool)> {
    let mut seen = HashSet::new();
    let mut complete = true;
    let mut stack: Vec<(oci::Descriptor, usize)> = roots.iter().map(|d| (d.clone(), 0)).collect();
    while let Some((d, depth)) = stack.pop() {
        if !seen.insert(d.digest.clone()) {
            continue;
        }
        if l.blob_size(&d.digest) != Some(d.size) {
            complete = false;
            continue;
        }
        if depth > oci::MAX_INDEX_DEPTH {
            continue;
        }
        if oci::is_index_type(&d.media_type) || oci::is_manifest_type(&d.media_type) {
            let Ok(bytes) = l.read_document(&d.digest) else {
                complete = false;
                continue;
            };
            if let Ok(i) = serde_json::from_slice::<Index>(&bytes) {
                stack.extend(i.manifests.into_iter().map(|c| (c, depth + 1)));
            }
            if let Ok(m) = serde_json::from_slice::<Manifest>(&bytes) {
                stack.push((m.config, depth + 1));
                stack.extend(m.layers.into_iter().map(|c| (c, depth + 1)));
            }
        }
    }
    Ok((seen, complete))
}

fn old(path: &Path) -> bool {
    fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age >= GRACE)
}

fn prune(dirs: &Dirs, max: Option<u64>) -> Result<u64> {
    let before = scratch::disk_usage(&dirs.root);
    for d in [
        std::env::temp_dir(),
        dirs.root.clone(),
        dirs.layers.join("blobs/sha256"),
        dirs.images.join("blobs/sha256"),
    ] {
        scratch::reclaim(&d);
    }
    let _locks = locks(dirs)?;
    drop_dangling(dirs)?;
    let everything = max == Some(0);
    // Layers, least recently used first, until the cache fits.
    let mut keys: Vec<(u64, PathBuf, Option<LayerInfo>)> = layer_keys(dirs)
        .into_iter()
        .map(|(_, p, i)| (mtime_secs(&p), p, i))
        .collect();
    keys.sort_by_key(|k| k.0);
    if let Some(max) = max {
        for (_, path, _) in &keys {
            if scratch::disk_usage(&dirs.root) <= max && !everything {
                break;
            }
            let _ = fs::remove_file(path);
        }
    }
    // Layer blobs no key names.
    let named: HashSet<Digest> = layer_keys(dirs)
        .into_iter()
        .filter_map(|(_, _, i)| i.map(|i| i.digest))
        .collect();
    for (digest, path) in blob_files(&dirs.layers) {
        if !named.contains(&digest) && (everything || old(&path)) {
            let _ = fs::remove_file(&path);
        }
    }
    // Source images, oldest first (the newest are at the front of `index.json`).
    if let Ok(images) = Layout::open(&dirs.images) {
        let mut index = images.index()?;
        if let Some(max) = max {
            while !index.manifests.is_empty()
                && (everything || scratch::disk_usage(&dirs.root) > max)
            {
                index.manifests.pop();
                write_index_locked(&images, index.clone())?;
                remove_unreachable(&images, &index, true)?;
            }
        }
        remove_unreachable(&images, &index, everything)?;
    }
    let after = scratch::disk_usage(&dirs.root);
    Ok(before.saturating_sub(after))
}

fn remove_unreachable(l: &Layout, index: &Index, now: bool) -> Result<()> {
    let (keep, _) = reachable(l, &index.manifests)?;
    for (digest, path) in blob_files(l.root()) {
        if !keep.contains(&digest) && (now || old(&path)) {
            let _ = fs::remove_file(&path);
        }
    }
    Ok(())
}

/// `500M`, `10G`, `2GiB`, `1024` (bytes). Units are powers of 1024, as `du -h` shows them.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| Error::input(format!("`{s}` is not a size like `500M` or `10G`")))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => {
            return Err(Error::input(format!(
                "`{s}` is not a size like `500M` or `10G`"
            )))
        }
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| Error::input(format!("`{s}` is too large")))
}

/// How many bytes each part of the cache holds (for `ls` and the benchmark).
pub fn usage(root: &Path) -> BTreeMap<&'static str, u64> {
    let d = Dirs::new(root.to_path_buf());
    BTreeMap::from([
        ("layers", scratch::disk_usage(&d.layers)),
        ("images", scratch::disk_usage(&d.images)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("500M").unwrap(), 500 << 20);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5X").is_err());
    }
}
