//! Build script: `TALEXT_BUILD_ID`, a SHA-256 over every file under `src/`, `Cargo.toml` and the
//! workspace lock file (paths and bytes, in sorted order). The layer cache keys on it, so a build
//! of different code never serves a layer another build wrote (`src/cache.rs`).
//!
//! Also what `--version` prints besides the version: `TALEXT_TARGET`, the target triple, and
//! `TALEXT_GIT_COMMIT`, the short commit: `TALEXT_GIT_COMMIT` from the environment when set (a
//! source tarball has no `.git`), else `git rev-parse --short HEAD`, else `unknown`. A missing git never fails the build, and nothing else about the checkout (dirty
//! state, time) is read, so two builds of one commit stay identical.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

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

/// The short commit of the checkout, or `None` outside a git work tree or without git.
fn git_commit(manifest: &Path) -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(manifest)
        .output()
        .ok()?;
    let commit = String::from_utf8(out.stdout).ok()?.trim().to_string();
    let valid =
        out.status.success() && !commit.is_empty() && commit.bytes().all(|b| b.is_ascii_hexdigit());
    valid.then_some(commit)
}

/// A path git reports (`--absolute-git-dir`, `--git-common-dir`) for the checkout.
fn git_path(manifest: &Path, arg: &str) -> Option<PathBuf> {
    let out = Command::new("git")
        .args(["rev-parse", "--path-format=absolute", arg])
        .current_dir(manifest)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
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
    let commit = std::env::var("TALEXT_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git_commit(&manifest))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=TALEXT_GIT_COMMIT={commit}");
    println!("cargo:rerun-if-env-changed=TALEXT_GIT_COMMIT");
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_string());
    println!("cargo:rustc-env=TALEXT_TARGET={target}");
    // The build date `--version` shows: `SOURCE_DATE_EPOCH` (reproducible-builds.org), never
    // the clock, so the same sources build the same binary.
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let date = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .map(civil_date)
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=TALEXT_BUILD_DATE={date}");
    // A new commit or checkout re-runs this script: HEAD lives in the git dir (per work tree),
    // the branch it names in the common dir. Only existing paths, or cargo re-runs every time.
    let watched = [
        git_path(&manifest, "--git-dir").map(|d| d.join("HEAD")),
        git_path(&manifest, "--git-common-dir").map(|d| d.join("refs/heads")),
        git_path(&manifest, "--git-common-dir").map(|d| d.join("packed-refs")),
    ];
    for path in watched.into_iter().flatten().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=Cargo.toml");
    println!("cargo:rerun-if-changed=../Cargo.lock");
}

/// `YYYY-MM-DD` (UTC) of a Unix time (Howard Hinnant's `civil_from_days`).
fn civil_date(secs: i64) -> String {
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}
