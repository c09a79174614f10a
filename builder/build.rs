//! Build script: `TALEXT_BUILD_ID`, a SHA-256 over every file under `src/`, `Cargo.toml` and the
//! workspace lock file (paths and bytes, in sorted order). The layer cache keys on it, so a build
//! of different code never serves a layer another build wrote (`src/cache.rs`).

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let mut list = Vec::new();
    files(&manifest.join("src"), &mut list);
    list.push(manifest.join("Cargo.toml"));
    list.push(manifest.join("../Cargo.lock"));
    list.sort();
    let mut h = Sha256::new();
    for p in &list {
        let rel = p.strip_prefix(&manifest).unwrap_or(p);
        h.update(rel.to_string_lossy().as_bytes());
        h.update([0]);
        h.update(fs::read(p).unwrap_or_default());
        h.update([0]);
    }
    let id: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    println!("cargo:rustc-env=TALEXT_BUILD_ID={}", &id[..16]);
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=Cargo.toml");
    println!("cargo:rerun-if-changed=../Cargo.lock");
}
