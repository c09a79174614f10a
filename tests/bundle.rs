//! `talext bundle create | verify | push` against two reference registries, checked with
//! skopeo: images (every platform) cross from registry A to registry B under a prefix with
//! their digests unchanged, the printed mapping names them, damage is found and named, and a
//! push killed midway completes when run again without resending what arrived.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use talext_kit::faultproxy::{Fault, FaultProxy, Rule};
use talext_kit::registry::{run, sha256, test_index, write_oci_layout, Registry, TestImage};
use talext_kit::tools::{self, Cmd};

fn talext() -> Cmd {
    tools::talext(env!("CARGO_BIN_EXE_talext"))
        .env("DOCKER_CONFIG", "/nonexistent")
        .env("REGISTRY_AUTH_FILE", "/nonexistent/auth.json")
}

/// `skopeo inspect --raw` bytes of a registry image.
fn raw(reference: &str) -> Vec<u8> {
    run(
        "skopeo",
        &["inspect", "--tls-verify=false", "--raw", reference],
    )
}

fn exists(reference: &str) -> bool {
    Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw", reference])
        .output()
        .unwrap()
        .status
        .success()
}

/// Put a layout's tagged image into a registry with skopeo, digests preserved.
fn seed(layout: &Path, tag: &str, dest: &str) {
    run(
        "skopeo",
        &[
            "--insecure-policy",
            "copy",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
            &format!("oci:{}:{tag}", layout.display()),
            dest,
        ],
    );
}

/// Registry A with a two-platform index `site/ext:v1` and a single image `tools/probe`, known
/// only by digest. Returns the index and the single image.
fn seed_registry_a(a: &Registry) -> (talext_kit::registry::Blob, TestImage) {
    let amd = TestImage::new("bundle amd64\n", "amd64");
    let arm = TestImage::new("bundle arm64\n", "arm64");
    let index = test_index(&[&amd, &arm]);
    let layout = a.scratch().join("seed-index");
    write_oci_layout(&layout, &[&amd, &arm], Some(&index), "v1");
    seed(&layout, "v1", &a.docker_ref("site/ext:v1"));
    let probe = TestImage::new("probe\n", "amd64");
    let layout = a.scratch().join("seed-probe");
    write_oci_layout(&layout, &[&probe], None, "tmp");
    seed(&layout, "tmp", &a.docker_ref("tools/probe:tmp"));
    (index, probe)
}

#[test]
fn bundles_cross_from_one_registry_to_another_with_digests_kept() {
    let a = Registry::plain();
    let b = Registry::plain();
    let (index, probe) = seed_registry_a(&a);
    let work = tempfile::tempdir().unwrap();
    let by_tag = format!("{}/site/ext:v1", a.addr);
    let by_digest = format!("{}/tools/probe@{}", a.addr, probe.manifest.digest);
    let list = work.path().join("images.txt");
    std::fs::write(
        &list,
        format!("# what the site needs\n\n{by_digest}   # pinned\n{by_tag}\n"),
    )
    .unwrap();
    let bundle = work.path().join("out/site.tar");

    // The positional reference and the list's duplicate collapse into one image.
    let out = talext()
        .args(["bundle", "create", "-o"])
        .arg(&bundle)
        .arg(format!("docker://{by_tag}"))
        .arg("--images-file")
        .arg(&list)
        .ok();
    assert_eq!(
        out.stdout,
        format!("{by_tag}@{}\n{by_digest}\n", index.digest)
    );
    // Deterministic: the same images give the same bytes.
    let again = work.path().join("again.tar");
    talext()
        .args(["-q", "bundle", "create", "-o"])
        .arg(&again)
        .args([&by_tag, &by_digest])
        .ok();
    assert_eq!(
        std::fs::read(&bundle).unwrap(),
        std::fs::read(&again).unwrap()
    );
    // No temporary files are left beside the bundle.
    let left: Vec<_> = std::fs::read_dir(bundle.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["site.tar"]);

    // The bundle is an oci-archive other tools read, and `sha256sum -c` checks it unpacked.
    let archive_ref = format!("oci-archive:{}:{by_tag}", bundle.display());
    assert_eq!(raw(&archive_ref), index.bytes);
    let unpacked = work.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    run(
        "tar",
        &[
            "-xf",
            bundle.to_str().unwrap(),
            "-C",
            unpacked.to_str().unwrap(),
        ],
    );
    let check = Command::new("sha256sum")
        .args(["--quiet", "-c", "SHA256SUMS"])
        .current_dir(&unpacked)
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    let bundle_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(unpacked.join("bundle.json")).unwrap()).unwrap();
    assert_eq!(bundle_json["format"], "talext-bundle");
    assert_eq!(bundle_json["images"][0]["reference"], by_tag);
    assert_eq!(bundle_json["images"][0]["digest"], index.digest);

    let verify = talext().args(["bundle", "verify"]).arg(&bundle).ok();
    assert!(verify.stdout.contains(&index.digest), "{}", verify.stdout);
    assert!(verify.stderr.contains("is intact"), "{}", verify.stderr);

    // Push under a prefix: repository paths, tags and digests survive.
    let target = format!("{}/air/gap", b.addr);
    let out = talext()
        .args(["bundle", "push"])
        .arg(&bundle)
        .arg(&target)
        .ok();
    let new_index = format!("{target}/site/ext:v1@{}", index.digest);
    let new_probe = format!("{target}/tools/probe@{}", probe.manifest.digest);
    assert_eq!(
        out.stdout,
        format!("{by_tag} -> {new_index}\n{by_digest} -> {new_probe}\n")
    );
    assert!(
        out.stderr.contains(&format!(
            "Talos mirror for `{}`: endpoint `http://{}/v2/air/gap` with `overridePath: true`",
            a.addr, b.addr
        )),
        "{}",
        out.stderr
    );
    for (on_a, on_b) in [
        // skopeo reads `repo:tag@digest` only without the tag.
        (
            format!("docker://{by_tag}"),
            format!("docker://{target}/site/ext@{}", index.digest),
        ),
        (
            format!("docker://{by_tag}"),
            format!("docker://{target}/site/ext:v1"),
        ),
        (
            format!("docker://{by_digest}"),
            format!("docker://{new_probe}"),
        ),
    ] {
        let (from, to) = (raw(&on_a), raw(&on_b));
        assert_eq!(sha256(&from), sha256(&to), "{on_a} vs {on_b}");
    }
    // Every platform came along.
    let children: serde_json::Value = serde_json::from_slice(&index.bytes).unwrap();
    for child in children["manifests"].as_array().unwrap() {
        let digest = child["digest"].as_str().unwrap();
        let on_b = raw(&format!("docker://{target}/site/ext@{digest}"));
        assert_eq!(sha256(&on_b), digest);
    }

    // Again, as JSON: everything is already there.
    let out = talext()
        .args(["bundle", "push", "--json"])
        .arg(&bundle)
        .arg(format!("docker://{target}"))
        .ok();
    let mapping = out.json();
    let mapping = mapping.as_array().unwrap();
    assert_eq!(mapping.len(), 2);
    assert_eq!(mapping[0]["source"], by_tag);
    assert_eq!(mapping[0]["target"], new_index);
    assert_eq!(mapping[0]["digest"], index.digest);
    assert_eq!(mapping[0]["status"], "present");
    assert_eq!(mapping[1]["target"], new_probe);
    assert_eq!(mapping[1]["status"], "present");
}

/// The byte offset of `member`'s content inside the tar at `path`.
fn member_offset(path: &Path, member: &str) -> (u64, u64) {
    let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        if entry.path().unwrap().to_string_lossy() == member {
            return (entry.raw_file_position(), entry.size());
        }
    }
    panic!("`{member}` is not in {}", path.display());
}

#[test]
fn damage_is_found_and_named_and_never_pushed() {
    let a = Registry::plain();
    let b = Registry::plain();
    let (index, probe) = seed_registry_a(&a);
    let work = tempfile::tempdir().unwrap();
    let bundle = work.path().join("site.tar");
    talext()
        .args(["-q", "bundle", "create", "-o"])
        .arg(&bundle)
        .arg(format!("{}/site/ext:v1", a.addr))
        .arg(format!("{}/tools/probe@{}", a.addr, probe.manifest.digest))
        .ok();
    let good = std::fs::read(&bundle).unwrap();

    // One flipped byte in a layer.
    let layer = &probe.layer.digest;
    let (offset, _) = member_offset(&bundle, &format!("blobs/sha256/{}", &layer[7..]));
    let mut bad = good.clone();
    bad[offset as usize + 10] ^= 0x55;
    let corrupt = work.path().join("corrupt.tar");
    std::fs::write(&corrupt, &bad).unwrap();
    let out = talext()
        .args(["bundle", "verify"])
        .arg(&corrupt)
        .fails_with(1);
    assert!(
        out.stderr.contains(&format!("blob `{layer}` is corrupt")),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout, "");
    let out = talext()
        .args(["bundle", "push"])
        .arg(&corrupt)
        .arg(format!("{}/air", b.addr))
        .fails_with(1);
    assert!(out.stderr.contains(layer.as_str()), "{}", out.stderr);
    assert!(!exists(&format!("docker://{}/air/site/ext:v1", b.addr)));

    // A damaged SHA256SUMS line is named too.
    let (offset, _) = member_offset(&bundle, "SHA256SUMS");
    let mut bad = good.clone();
    let at = offset as usize + 3;
    bad[at] = if bad[at] == b'0' { b'1' } else { b'0' };
    std::fs::write(&corrupt, &bad).unwrap();
    let out = talext()
        .args(["bundle", "verify"])
        .arg(&corrupt)
        .fails_with(1);
    assert!(out.stderr.contains("SHA256SUMS"), "{}", out.stderr);

    // Cut short, as by a failed transfer.
    let (offset, size) = member_offset(&bundle, &format!("blobs/sha256/{}", &index.digest[7..]));
    let truncated = work.path().join("truncated.tar");
    std::fs::write(&truncated, &good[..(offset + size / 2) as usize]).unwrap();
    let out = talext()
        .args(["bundle", "verify"])
        .arg(&truncated)
        .fails_with(1);
    assert!(out.stderr.contains("truncated"), "{}", out.stderr);

    // Not a bundle at all.
    let out = talext()
        .args(["bundle", "verify"])
        .arg(list_file(work.path()))
        .fails_with(1);
    assert!(out.stderr.contains("not a bundle"), "{}", out.stderr);
}

fn list_file(dir: &Path) -> PathBuf {
    let p = dir.join("not-a-bundle.txt");
    std::fs::write(&p, "hello\n".repeat(200)).unwrap();
    p
}

/// Content that gzip cannot shrink much, so blobs take a while to send through a slow proxy.
fn noise(seed: u64, len: usize) -> String {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'!' + (x % 90) as u8)
        })
        .collect()
}

/// Blob files the registry has stored (its filesystem driver keeps `blobs/sha256/xx/<hex>/data`).
fn stored_blobs(reg: &Registry) -> BTreeSet<String> {
    let root = reg
        .scratch()
        .join("storage/docker/registry/v2/blobs/sha256");
    let mut out = BTreeSet::new();
    for shard in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        for blob in std::fs::read_dir(shard.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if blob.path().join("data").is_file() {
                out.insert(format!("sha256:{}", blob.file_name().to_string_lossy()));
            }
        }
    }
    out
}

#[test]
fn a_killed_push_completes_when_run_again() {
    let a = Registry::plain();
    let b = Registry::plain();
    let work = tempfile::tempdir().unwrap();
    let mut refs = Vec::new();
    let mut images = Vec::new();
    for n in 0..5u64 {
        let img = TestImage::new(&noise(n, 256 << 10), "amd64");
        let layout = work.path().join(format!("seed{n}"));
        write_oci_layout(&layout, &[&img], None, "v1");
        seed(&layout, "v1", &a.docker_ref(&format!("many/img{n}:v1")));
        refs.push(format!("{}/many/img{n}:v1", a.addr));
        images.push(img);
    }
    let bundle = work.path().join("many.tar");
    talext()
        .args(["-q", "bundle", "create", "-o"])
        .arg(&bundle)
        .args(&refs)
        .ok();

    // B behind a proxy that makes every request slow; kill the push once some blobs arrived.
    let proxy = FaultProxy::start(&b.addr);
    proxy.add(Rule::new(Fault::Delay(Duration::from_millis(150))));
    let target = format!("{}/mirror", proxy.addr);
    let mut child = talext_kit::tools::command(env!("CARGO_BIN_EXE_talext"))
        .args(["bundle", "push"])
        .arg(&bundle)
        .arg(&target)
        .env("DOCKER_CONFIG", "/nonexistent")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let wanted: BTreeSet<String> = images
        .iter()
        .flat_map(|i| [i.layer.digest.clone(), i.config.digest.clone()])
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let arrived = stored_blobs(&b).intersection(&wanted).count();
        if arrived >= 3 {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("the push ended ({status}) before it could be interrupted: {err}");
        }
        assert!(Instant::now() < deadline, "no blob arrived in time");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let arrived = stored_blobs(&b);
    let last = format!("docker://{}/mirror/many/img4:v1", b.addr);
    assert!(!exists(&last), "the push finished before it was killed");

    // Run again, through the same proxy without delays: what arrived is not sent again.
    proxy.clear();
    let before = proxy.hits().len();
    let out = talext()
        .args(["bundle", "push"])
        .arg(&bundle)
        .arg(&target)
        .ok();
    let uploads: Vec<String> = proxy.hits()[before..]
        .iter()
        .filter(|h| h.method == "PUT" && h.path.contains("/blobs/uploads/"))
        .map(|h| h.path.clone())
        .collect();
    for digest in arrived.intersection(&wanted) {
        assert!(
            !uploads
                .iter()
                .any(|p| p.contains(&digest.replace(':', "%3A")) || p.contains(digest.as_str())),
            "`{digest}` was sent again: {uploads:?}"
        );
    }
    assert!(uploads.len() < wanted.len(), "{uploads:?}");
    let mut expected = String::new();
    for (n, img) in images.iter().enumerate() {
        expected.push_str(&format!(
            "{}/many/img{n}:v1 -> {target}/many/img{n}:v1@{}\n",
            a.addr, img.manifest.digest
        ));
        let on_b = raw(&format!("docker://{}/mirror/many/img{n}:v1", b.addr));
        assert_eq!(sha256(&on_b), img.manifest.digest);
    }
    assert_eq!(out.stdout, expected);
}
