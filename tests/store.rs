//! Stores as shared, trustworthy state, through the binary: concurrent builds and copies into
//! one cache and one layout (and one archive) keep every entry; a flipped byte in any cached blob
//! is detected, evicted and rebuilt; fresh-cache builds of a pinned two-platform registry
//! source always succeed with one digest; a failed copy leaves no destination; `copy` writes
//! the per-platform entries the imager's `ociPath` needs; a rebuild under a tag replaces that
//! tag's entries; killed runs leave nothing that the next run does not reclaim.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use talext_kit::payload;
use talext_kit::registry::{sha256, Registry};
use talext_kit::schema::{blob_path, read_json};
use talext_kit::tools::{self, Outcome};

const BIN: &str = env!("CARGO_BIN_EXE_talext");
const REF_NAME: &str = "org.opencontainers.image.ref.name";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn def() -> PathBuf {
    repo().join("extension/tailscale")
}

fn build(source: &str, output: &str, cache: &Path) -> Outcome {
    tools::talext(BIN)
        .arg("build")
        .arg(def())
        .args(["--source", source, "--output", output, "--cache-dir"])
        .arg(cache)
        .run()
}

fn ok(o: Outcome) -> Outcome {
    assert_eq!(o.code, Some(0), "{}\n{}", o.line, o.stderr);
    o
}

/// Every blob a layout names exists and hashes to its name; returns tag → digest.
fn check_layout(dir: &Path) -> BTreeMap<String, String> {
    let index = read_json(&dir.join("index.json"));
    let mut tags = BTreeMap::new();
    let mut stack: Vec<Value> = index["manifests"].as_array().unwrap().clone();
    for d in &stack {
        if let Some(t) = d["annotations"][REF_NAME].as_str() {
            assert!(
                tags.insert(t.to_string(), d["digest"].as_str().unwrap().to_string())
                    .is_none(),
                "tag `{t}` appears twice in `{}`",
                dir.display()
            );
        }
    }
    let mut seen = BTreeSet::new();
    while let Some(d) = stack.pop() {
        let digest = d["digest"].as_str().unwrap().to_string();
        if !seen.insert(digest.clone()) {
            continue;
        }
        let path = blob_path(dir, &digest);
        let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{digest} missing: {e}"));
        assert_eq!(
            sha256(&bytes),
            digest,
            "blob `{}` is corrupt",
            path.display()
        );
        assert_eq!(bytes.len() as u64, d["size"].as_u64().unwrap());
        let mt = d["mediaType"].as_str().unwrap_or("");
        if mt.contains("index") || mt.contains("manifest") {
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            if let Some(m) = v["manifests"].as_array() {
                stack.extend(m.iter().cloned());
            }
            if v["config"].is_object() {
                stack.push(v["config"].clone());
                stack.extend(v["layers"].as_array().unwrap().iter().cloned());
            }
        }
    }
    tags
}

#[test]
fn concurrent_builds_and_copies_keep_every_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let src = payload::tailscale_standin(&tmp.path().join("src"));
    let source = format!("tailscale={}", src.display());
    let cache = tmp.path().join("cache");
    let shared = tmp.path().join("shared");
    // A source image for the copies, built once.
    let origin = tmp.path().join("origin");
    let digest = ok(build(
        &source,
        &format!("oci:{}:v1", origin.display()),
        &cache,
    ))
    .stdout
    .trim()
    .to_string();
    let (procs, rounds) = (8, 25);
    std::thread::scope(|s| {
        for p in 0..procs {
            let (source, cache, shared, origin, digest) =
                (&source, &cache, &shared, &origin, &digest);
            s.spawn(move || {
                for r in 0..rounds {
                    let tag = format!("p{p}-r{r}");
                    let out = format!("oci:{}:{tag}", shared.display());
                    let o = if (p + r) % 2 == 0 {
                        build(source, &out, cache)
                    } else {
                        tools::talext(BIN)
                            .arg("copy")
                            .arg(format!("oci:{}:v1", origin.display()))
                            .arg(&out)
                            .run()
                    };
                    assert_eq!(o.code, Some(0), "{tag}: {}\n{}", o.line, o.stderr);
                    assert_eq!(o.stdout.trim(), digest.as_str(), "{tag}");
                }
            });
        }
    });
    let tags = check_layout(&shared);
    assert_eq!(tags.len(), procs * rounds, "every tag survives: {tags:?}");
    assert!(tags.values().all(|d| *d == digest));
    // Two platform entries (what the imager's `ociPath` reads), not one pair per writer.
    let index = read_json(&shared.join("index.json"));
    let untagged: Vec<&Value> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["annotations"][REF_NAME].is_null())
        .collect();
    assert_eq!(untagged.len(), 2, "{untagged:?}");
    assert!(untagged
        .iter()
        .all(|d| d["platform"]["architecture"].is_string()));
    // Nothing left behind in the layout or beside it.
    let litter: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .chain(fs::read_dir(shared.join("blobs/sha256")).unwrap())
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    assert!(litter.is_empty(), "{litter:?}");
}

#[test]
fn concurrent_writers_of_one_archive_keep_every_tag() {
    let tmp = tempfile::tempdir().unwrap();
    let src = payload::tailscale_standin(&tmp.path().join("src"));
    let source = format!("tailscale={}", src.display());
    let cache = tmp.path().join("cache");
    let origin = tmp.path().join("origin");
    ok(build(
        &source,
        &format!("oci:{}:v1", origin.display()),
        &cache,
    ));
    let archive = tmp.path().join("out.tar");
    std::thread::scope(|s| {
        for p in 0..4 {
            let (source, cache, archive, origin) = (&source, &cache, &archive, &origin);
            s.spawn(move || {
                for r in 0..4 {
                    let out = format!("oci-archive:{}:p{p}-r{r}", archive.display());
                    if p % 2 == 0 {
                        ok(build(source, &out, cache));
                    } else {
                        ok(tools::talext(BIN)
                            .arg("copy")
                            .arg(format!("oci:{}:v1", origin.display()))
                            .arg(&out)
                            .run());
                    }
                }
            });
        }
    });
    let unpacked = tmp.path().join("unpacked");
    fs::create_dir(&unpacked).unwrap();
    let st = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(check_layout(&unpacked).len(), 16);
}

#[test]
fn a_flipped_byte_in_a_cached_layer_is_evicted_and_rebuilt() {
    let tmp = tempfile::tempdir().unwrap();
    let src = payload::tailscale_standin(&tmp.path().join("src"));
    let source = format!("tailscale={}", src.display());
    let cache = tmp.path().join("cache");
    let first = tmp.path().join("first");
    let digest = ok(build(&source, &format!("oci:{}", first.display()), &cache))
        .stdout
        .trim()
        .to_string();
    let blobs = cache.join("layers/blobs/sha256");
    let mut flipped = 0;
    for e in fs::read_dir(&blobs).unwrap().flatten() {
        let p = e.path();
        let mut perms = fs::metadata(&p).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        fs::set_permissions(&p, perms).unwrap();
        let mut bytes = fs::read(&p).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x01;
        fs::write(&p, &bytes).unwrap();
        flipped += 1;
    }
    assert_eq!(flipped, 2, "one cached layer per platform");
    let second = tmp.path().join("second");
    let o = ok(build(&source, &format!("oci:{}", second.display()), &cache));
    assert_eq!(
        o.stdout.trim(),
        digest,
        "the rebuilt image is the same image"
    );
    assert!(o.stderr.contains("failed verification"), "{}", o.stderr);
    check_layout(&second);
    // The bad entries were replaced by good ones: a third build hits the cache cleanly.
    let third = tmp.path().join("third");
    let o = ok(build(&source, &format!("oci:{}", third.display()), &cache));
    assert!(!o.stderr.contains("failed verification"), "{}", o.stderr);
    let v = ok(tools::talext(BIN)
        .args(["cache", "verify", "--cache-dir"])
        .arg(&cache)
        .run());
    assert!(v.stdout.contains("0 corrupt"), "{}", v.stdout);
}

#[test]
fn cache_verify_evicts_and_prune_reclaims() {
    let tmp = tempfile::tempdir().unwrap();
    let src = payload::tailscale_standin(&tmp.path().join("src"));
    let source = format!("tailscale={}", src.display());
    let cache = tmp.path().join("cache");
    ok(build(
        &source,
        &format!("oci:{}", tmp.path().join("o").display()),
        &cache,
    ));
    let ls = ok(tools::talext(BIN)
        .args(["cache", "ls", "--json", "--cache-dir"])
        .arg(&cache)
        .run())
    .json();
    assert_eq!(ls["layers"].as_array().unwrap().len(), 2, "{ls}");
    // Corrupt one blob: verify evicts it and says so with exit 1.
    let blob = fs::read_dir(cache.join("layers/blobs/sha256"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    fs::set_permissions(&blob, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    fs::write(&blob, b"not a layer").unwrap();
    let v = tools::talext(BIN)
        .args(["cache", "verify", "--cache-dir"])
        .arg(&cache)
        .fails_with(1);
    assert!(v.stderr.contains("evicted"), "{}", v.stderr);
    assert!(!blob.exists());
    let ls = ok(tools::talext(BIN)
        .args(["cache", "ls", "--json", "--cache-dir"])
        .arg(&cache)
        .run())
    .json();
    assert_eq!(ls["layers"].as_array().unwrap().len(), 1, "{ls}");
    // A scratch tree of a killed run (its pid gone) is reclaimed by prune; a live one is kept.
    let dead = cache.join(".talext-build-4999999-abcdef");
    fs::create_dir_all(dead.join("x")).unwrap();
    fs::write(dead.join("x/f"), vec![0u8; 4096]).unwrap();
    let p = ok(tools::talext(BIN)
        .args(["cache", "prune", "--cache-dir"])
        .arg(&cache)
        .run());
    assert!(!dead.exists(), "{}", p.stdout);
    // `--max-size 0` empties it.
    ok(tools::talext(BIN)
        .args(["cache", "prune", "--max-size", "0", "--cache-dir"])
        .arg(&cache)
        .run());
    let ls = ok(tools::talext(BIN)
        .args(["cache", "ls", "--json", "--cache-dir"])
        .arg(&cache)
        .run())
    .json();
    assert!(ls["layers"].as_array().unwrap().is_empty(), "{ls}");
}

/// A two-platform extension image pushed to `reg` as `upstream/ext:v1`, and a definition whose
/// source is it, pinned by digest, taking the image's container root as the payload. Returns
/// the definition directory and the `--source` value.
fn pinned_source(dir: &Path, reg: &Registry) -> (PathBuf, String) {
    let tmp = dir;
    let src = payload::tailscale_standin(&tmp.join("src"));
    let layout = tmp.join("upstream");
    ok(build(
        &format!("tailscale={}", src.display()),
        &format!("oci:{}:v1", layout.display()),
        &tmp.join("c0"),
    ));
    tools::skopeo()
        .args(["copy", "--all", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(reg.docker_ref("upstream/ext:v1"))
        .ok();
    let digest = sha256(
        tools::skopeo()
            .args(["inspect", "--tls-verify=false", "--raw"])
            .arg(reg.docker_ref("upstream/ext:v1"))
            .ok()
            .stdout
            .as_bytes(),
    );
    // The extension image's own container root is the payload.
    let d = tmp.join("def");
    fs::create_dir_all(&d).unwrap();
    fs::copy(def().join("tailscale.yaml"), d.join("tailscale.yaml")).unwrap();
    let text = fs::read_to_string(def().join("extension.yaml")).unwrap().replace(
        "    to: /usr/local/lib/containers/tailscale\n",
        "    to: /usr/local/lib/containers/tailscale\n    from: rootfs/usr/local/lib/containers/tailscale\n",
    );
    fs::write(d.join("extension.yaml"), text).unwrap();
    let pinned = format!("tailscale=docker://{}/upstream/ext:v1@{digest}", reg.addr);
    (d, pinned)
}

#[test]
fn fresh_cache_builds_of_a_pinned_two_platform_source_always_succeed() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::plain();
    let (d, pinned) = pinned_source(tmp.path(), &reg);
    let mut digests = BTreeSet::new();
    for i in 0..30 {
        let o = tools::talext(BIN)
            .arg("build")
            .arg(&d)
            .args(["--source", &pinned, "--output"])
            .arg(format!(
                "oci:{}",
                tmp.path().join(format!("o{i}")).display()
            ))
            .arg("--cache-dir")
            .arg(tmp.path().join(format!("cache{i}")))
            .run();
        assert_eq!(o.code, Some(0), "build {i}: {}", o.stderr);
        digests.insert(o.stdout.trim().to_string());
    }
    assert_eq!(digests.len(), 1, "{digests:?}");
}

#[test]
fn a_failed_copy_leaves_no_destination_and_copies_are_imager_ready() {
    let tmp = tempfile::tempdir().unwrap();
    let src = payload::tailscale_standin(&tmp.path().join("src"));
    let origin = tmp.path().join("origin");
    ok(build(
        &format!("tailscale={}", src.display()),
        &format!("oci:{}:v1", origin.display()),
        &tmp.path().join("cache"),
    ));
    // `copy` into a new layout writes what `build` writes: the tagged index and one entry
    // per platform, so `imager-profile --oci-path` takes it.
    let copied = tmp.path().join("copied");
    ok(tools::talext(BIN)
        .arg("copy")
        .arg(format!("oci:{}:v1", origin.display()))
        .arg(format!("oci:{}:v1", copied.display()))
        .run());
    assert_eq!(
        read_json(&copied.join("index.json")),
        read_json(&origin.join("index.json"))
    );
    let profile = tools::talext(BIN)
        .args(["imager-profile", "--talos-version", "v1.12.0", "--oci-path"])
        .arg(&copied)
        .run();
    assert_eq!(profile.code, Some(0), "{}", profile.stderr);
    // Corrupt one layer of the origin: the copy fails naming the blob and leaves nothing.
    let index = read_json(&origin.join("index.json"));
    let child = index["manifests"][1]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest = read_json(&blob_path(&origin, &child));
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let path = blob_path(&origin, &layer);
    let mut bytes = fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    fs::write(&path, &bytes).unwrap();
    for dst in [
        format!("oci:{}", tmp.path().join("new").display()),
        format!("oci-archive:{}", tmp.path().join("new.tar").display()),
    ] {
        let o = tools::talext(BIN)
            .arg("copy")
            .arg(format!("oci:{}:v1", origin.display()))
            .arg(&dst)
            .fails_with(1);
        assert!(o.stderr.contains(&layer), "{}", o.stderr);
    }
    assert!(!tmp.path().join("new").exists());
    assert!(!tmp.path().join("new.tar").exists());
    let litter: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    assert!(litter.is_empty(), "{litter:?}");
    // An existing destination (here an empty layout umoci made) keeps its old `index.json`.
    let existing = tmp.path().join("existing");
    tools::umoci()
        .args(["init", "--layout"])
        .arg(&existing)
        .ok();
    let before = fs::read(existing.join("index.json")).unwrap();
    tools::talext(BIN)
        .arg("copy")
        .arg(format!("oci:{}:v1", origin.display()))
        .arg(format!("oci:{}:v2", existing.display()))
        .fails_with(1);
    assert_eq!(fs::read(existing.join("index.json")).unwrap(), before);
    // A destination that already holds the blob does not need the corrupt copy: it succeeds.
    ok(tools::talext(BIN)
        .arg("copy")
        .arg(format!("oci:{}:v1", origin.display()))
        .arg(format!("oci:{}:v2", copied.display()))
        .run());
}

#[test]
fn rebuilding_a_tag_replaces_its_platform_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let src = payload::tailscale_standin(&tmp.path().join("src"));
    let source = format!("tailscale={}", src.display());
    let out = tmp.path().join("out");
    let cache = tmp.path().join("cache");
    for epoch in ["1", "2", "3"] {
        ok(tools::talext(BIN)
            .arg("build")
            .arg(def())
            .args([
                "--source",
                &source,
                "--source-date-epoch",
                epoch,
                "--output",
            ])
            .arg(format!("oci:{}:latest", out.display()))
            .arg("--cache-dir")
            .arg(&cache)
            .run());
    }
    let index = read_json(&out.join("index.json"));
    assert_eq!(index["manifests"].as_array().unwrap().len(), 3, "{index}");
}

#[test]
fn an_archive_copy_appends_to_the_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let src = payload::tailscale_standin(&tmp.path().join("src"));
    let origin = tmp.path().join("origin");
    ok(build(
        &format!("tailscale={}", src.display()),
        &format!("oci:{}:v1", origin.display()),
        &tmp.path().join("cache"),
    ));
    let archive = tmp.path().join("a.tar");
    for tag in ["one", "two"] {
        ok(tools::talext(BIN)
            .arg("copy")
            .arg(format!("oci:{}:v1", origin.display()))
            .arg(format!("oci-archive:{}:{tag}", archive.display()))
            .run());
    }
    for tag in ["one", "two"] {
        tools::skopeo()
            .arg("inspect")
            .arg(format!("oci-archive:{}:{tag}", archive.display()))
            .ok();
    }
}

#[test]
fn interrupted_runs_leave_nothing_the_next_run_keeps() {
    let tmp = tempfile::tempdir().unwrap();
    let src = payload::tailscale_standin(&tmp.path().join("src"));
    let scratch = tmp.path().join("tmp");
    fs::create_dir(&scratch).unwrap();
    // A build that is interrupted with SIGTERM while it works removes its scratch trees.
    let mut child = tools::command(BIN)
        .arg("build")
        .arg(def())
        .args([
            "--source",
            &format!("tailscale={}", src.display()),
            "--no-cache",
            "--output",
        ])
        .arg(format!("oci:{}", tmp.path().join("out").display()))
        .env("TMPDIR", &scratch)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until it has created something, then stop it.
    let start = std::time::Instant::now();
    while fs::read_dir(&scratch).unwrap().next().is_none()
        && start.elapsed() < std::time::Duration::from_secs(20)
    {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    unsafe_kill(child.id(), 15);
    let status = child.wait().unwrap();
    let left: Vec<_> = fs::read_dir(&scratch)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(status.code() == Some(143) || status.success(), "{status:?}");
    assert!(left.is_empty(), "{left:?}");
    // A tree left by a process that no longer exists is reclaimed by the next run.
    let stale = scratch.join("talext-source-4999999-xyzxyz");
    fs::create_dir_all(stale.join("deep")).unwrap();
    ok(tools::talext(BIN)
        .args(["plan"])
        .arg(def())
        .env("TMPDIR", &scratch)
        .run());
    assert!(!stale.exists());
}

fn unsafe_kill(pid: u32, sig: i32) {
    let st = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(st.success());
}

/// A small tmpfs, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> SmallDisk {
        fs::create_dir_all(dir).unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(
            st.success(),
            "mounting a tmpfs at `{}` (the tests run as root, as CI does)",
            dir.display()
        );
        SmallDisk(dir.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_is_an_environment_failure_that_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let src = payload::tailscale_standin(&tmp.path().join("src"));
    let source = format!("tailscale={}", src.display());
    let origin = tmp.path().join("origin");
    ok(build(
        &source,
        &format!("oci:{}:v1", origin.display()),
        &tmp.path().join("cache"),
    ));
    let disk = SmallDisk::mount(&tmp.path().join("small"), "256k");
    for (what, o) in [
        (
            "build",
            tools::talext(BIN)
                .arg("build")
                .arg(def())
                .args(["--source", &source, "--no-cache", "--output"])
                .arg(format!("oci:{}", disk.0.join("built").display()))
                .run(),
        ),
        (
            "copy",
            tools::talext(BIN)
                .arg("copy")
                .arg(format!("oci:{}:v1", origin.display()))
                .arg(format!("oci:{}", disk.0.join("copied").display()))
                .run(),
        ),
        (
            "copy to an archive",
            tools::talext(BIN)
                .arg("copy")
                .arg(format!("oci:{}:v1", origin.display()))
                .arg(format!("oci-archive:{}", disk.0.join("a.tar").display()))
                .env("TMPDIR", &disk.0)
                .run(),
        ),
    ] {
        assert_eq!(o.code, Some(2), "{what}: {}\n{}", o.line, o.stderr);
        let left: Vec<_> = fs::read_dir(&disk.0)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "{what} left {left:?}");
    }
}

#[test]
fn a_flipped_byte_in_the_source_cache_is_evicted_and_pulled_again() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::plain();
    let (d, pinned) = pinned_source(tmp.path(), &reg);
    let cache = tmp.path().join("cache");
    let run = |epoch: &str, out: &str| {
        tools::talext(BIN)
            .arg("build")
            .arg(&d)
            .args([
                "--source",
                &pinned,
                "--source-date-epoch",
                epoch,
                "--output",
            ])
            .arg(format!("oci:{}", tmp.path().join(out).display()))
            .arg("--cache-dir")
            .arg(&cache)
            .run()
    };
    let first = ok(run("1", "a"));
    // Flip a byte in every large blob of the source cache (the layers), keeping sizes.
    let mut flipped = 0;
    for e in fs::read_dir(cache.join("images/blobs/sha256"))
        .unwrap()
        .flatten()
    {
        let p = e.path();
        let mut bytes = fs::read(&p).unwrap();
        if bytes.len() < 4096 {
            continue;
        }
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x01;
        fs::write(&p, &bytes).unwrap();
        flipped += 1;
    }
    assert!(flipped >= 2, "one layer per platform at least");
    // Another epoch misses the layer cache, so the source cache is read: it is verified,
    // evicted and pulled again, and the image is the one a clean cache gives.
    let second = ok(run("2", "b"));
    assert!(
        second.stderr.contains("failed verification"),
        "{}",
        second.stderr
    );
    let clean = ok(tools::talext(BIN)
        .arg("build")
        .arg(&d)
        .args([
            "--source",
            &pinned,
            "--source-date-epoch",
            "2",
            "--no-cache",
            "--output",
        ])
        .arg(format!("oci:{}", tmp.path().join("c").display()))
        .run());
    assert_eq!(second.stdout, clean.stdout);
    assert_ne!(first.stdout, second.stdout, "another epoch, another image");
}
