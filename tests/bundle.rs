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
    // One client for the whole push: the registry is probed once for five images.
    let probes = proxy.hits()[before..]
        .iter()
        .filter(|h| h.method == "GET" && h.path == "/v2/")
        .count();
    assert_eq!(probes, 1, "one `/v2/` probe for the whole bundle");
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

/// Every document of a multi-document YAML file.
fn documents(path: &Path) -> Vec<serde_yaml::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

/// `talext config lint` accepts the documents for `version`.
fn lints_clean(path: &Path, version: &str) {
    talext()
        .args(["config", "lint", "--talos-version", version])
        .arg(path)
        .ok();
}

const SCHEMATIC: &str = "4a0d65c669d46663f377e7161e50cfd570c401f26fd9e7bda34a0216b6f1922b";

/// Registry A holding a signed factory installer for `SCHEMATIC` (two platforms) and an
/// extension image; a closure naming them through the release list of v1.13 (every other role
/// dropped: their upstream registries are out of reach here). Returns the closure file, the
/// installer reference, its index, and the public key it is signed with.
fn seed_closure(
    a: &Registry,
    dir: &Path,
) -> (PathBuf, String, talext_kit::registry::Blob, PathBuf) {
    let amd = TestImage::new("installer amd64\n", "amd64");
    let arm = TestImage::new("installer arm64\n", "arm64");
    let index = test_index(&[&amd, &arm]);
    let layout = dir.join("seed-installer");
    write_oci_layout(&layout, &[&amd, &arm], Some(&index), "v1");
    let installer = format!("{}/installer/{SCHEMATIC}:v1.13.0", a.addr);
    seed(&layout, "v1", &format!("docker://{installer}"));
    let ext = TestImage::new("tailscale\n", "amd64");
    let layout = dir.join("seed-ext");
    write_oci_layout(&layout, &[&ext], None, "v1");
    seed(&layout, "v1", &a.docker_ref("siderolabs/tailscale:1.80.0"));
    let prefix = dir.join("site");
    talext()
        .args(["key", "generate", "--output-key-prefix"])
        .arg(&prefix)
        .ok();
    talext()
        .args(["sign", &installer, "--key"])
        .arg(dir.join("site.key"))
        .ok();
    let closure = dir.join("closure.yaml");
    std::fs::write(
        &closure,
        format!(
            "talosVersion: v1.13.0\nschematic: {SCHEMATIC}\nfactory: {}\nimages:\n  - {}/siderolabs/tailscale:1.80.0\ndrop: [installer-base, imager, kubelet, kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy, etcd, coredns, flannel, kube-network-policies, pause, extensions]\n",
            a.addr, a.addr
        ),
    )
    .unwrap();
    (closure, installer, index, dir.join("site.pub"))
}

#[test]
fn a_closure_crosses_with_its_signatures_and_the_mirror_config_names_the_site() {
    let a = Registry::plain();
    let b = Registry::plain();
    let work = tempfile::tempdir().unwrap();
    let (closure, installer, index, public) = seed_closure(&a, work.path());
    let tailscale = format!("{}/siderolabs/tailscale:1.80.0", a.addr);

    // `talext images` shows what the closure resolves to.
    let listed = talext().args(["images", "--closure"]).arg(&closure).ok();
    assert_eq!(listed.stdout, format!("{installer}\n{tailscale}\n"));

    let bundle = work.path().join("site.tar");
    let out = talext()
        .args(["bundle", "create", "-o"])
        .arg(&bundle)
        .arg("--closure")
        .arg(&closure)
        .ok();
    let sig_tag = format!("sha256-{}.sig", &index.digest[7..]);
    let sig = format!("{}/installer/{SCHEMATIC}:{sig_tag}", a.addr);
    // The installer, the signatures of its index and of each platform manifest, the extension.
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{}", out.stdout);
    assert_eq!(lines[0], format!("{installer}@{}", index.digest));
    assert!(
        lines[1].starts_with(&format!("{sig}@sha256:")),
        "{}",
        out.stdout
    );
    for line in &lines[2..4] {
        assert!(line.contains(".sig@sha256:"), "{}", out.stdout);
    }
    assert!(
        lines[4].starts_with(&format!("{tailscale}@sha256:")),
        "{}",
        out.stdout
    );

    // Without `--talos-version` the mirror config is refused before anything is pushed.
    let target = format!("{}/mirror", b.addr);
    let m11 = work.path().join("mirrors-1.11.yaml");
    let refused = talext()
        .args(["bundle", "push"])
        .arg(&bundle)
        .arg(&target)
        .arg("--mirror-config")
        .arg(&m11)
        .fails_with(1);
    assert!(
        refused.stderr.contains("needs `--talos-version`"),
        "{}",
        refused.stderr
    );
    assert!(!m11.exists());
    assert!(!exists(&format!(
        "docker://{target}/installer/{SCHEMATIC}:v1.13.0"
    )));

    // v1.11: a `.machine.registries` patch naming the plain-HTTP site under its prefix.
    talext()
        .args([
            "bundle",
            "push",
            "--talos-version",
            "v1.11.5",
            "--mirror-config",
        ])
        .arg(&m11)
        .arg(&bundle)
        .arg(&target)
        .ok();
    let docs = documents(&m11);
    assert_eq!(docs.len(), 1);
    let mirror = &docs[0]["machine"]["registries"]["mirrors"][a.addr.as_str()];
    assert_eq!(
        mirror["endpoints"][0].as_str(),
        Some(format!("http://{}/v2/mirror", b.addr).as_str())
    );
    assert_eq!(mirror["overridePath"].as_bool(), Some(true));
    assert_eq!(mirror["skipFallback"].as_bool(), Some(true));
    assert!(docs[0]["machine"]["registries"]["config"].is_null());
    lints_clean(&m11, "v1.11.5");

    // The images and the signature arrived; the signature verifies at the site.
    let pushed = format!("{target}/installer/{SCHEMATIC}:v1.13.0");
    assert_eq!(sha256(&raw(&format!("docker://{pushed}"))), index.digest);
    assert!(exists(&format!(
        "docker://{target}/installer/{SCHEMATIC}:{sig_tag}"
    )));
    talext()
        .args(["verify", &pushed, "--key"])
        .arg(&public)
        .ok();

    // v1.13 (documents from v1.12): one `RegistryMirrorConfig` per upstream registry.
    let m13 = work.path().join("mirrors-1.13.yaml");
    talext()
        .args([
            "-q",
            "bundle",
            "push",
            "--talos-version",
            "v1.13.0",
            "--mirror-config",
        ])
        .arg(&m13)
        .arg(&bundle)
        .arg(&target)
        .ok();
    let docs = documents(&m13);
    assert_eq!(docs.len(), 1);
    let d = &docs[0];
    assert_eq!(d["apiVersion"], "v1alpha1");
    assert_eq!(d["kind"], "RegistryMirrorConfig");
    assert_eq!(d["name"].as_str(), Some(a.addr.as_str()));
    assert_eq!(
        d["endpoints"][0]["url"].as_str(),
        Some(format!("http://{}/v2/mirror", b.addr).as_str())
    );
    assert_eq!(d["endpoints"][0]["overridePath"].as_bool(), Some(true));
    assert_eq!(d["skipFallback"].as_bool(), Some(true));
    lints_clean(&m13, "v1.13.0");

    // `--platform` narrows an image named by tag to that platform's manifest, which comes with
    // its own signature (`talext sign` signs every child too).
    let narrow = work.path().join("amd64.tar");
    let out = talext()
        .args(["-q", "bundle", "create", "--platform", "linux/amd64", "-o"])
        .arg(&narrow)
        .arg("--closure")
        .arg(&closure)
        .ok();
    let children: serde_json::Value = serde_json::from_slice(&index.bytes).unwrap();
    let amd64 = children["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == "amd64")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    assert_eq!(lines[0], format!("{installer}@{amd64}"));
    let amd64_sig = format!(
        "{}/installer/{SCHEMATIC}:sha256-{}.sig@",
        a.addr,
        &amd64[7..]
    );
    assert!(lines[1].starts_with(&amd64_sig), "{}", out.stdout);
}

#[test]
fn a_tls_site_gets_https_and_its_ca() {
    let a = Registry::plain();
    let b = Registry::tls_self_signed_ca();
    let ca = b.ca.clone().unwrap();
    let work = tempfile::tempdir().unwrap();
    let (closure, _, _, _) = seed_closure(&a, work.path());
    let bundle = work.path().join("site.tar");
    talext()
        .args(["-q", "bundle", "create", "-o"])
        .arg(&bundle)
        .arg("--closure")
        .arg(&closure)
        .ok();
    let pem = std::fs::read_to_string(&ca).unwrap();

    // v1.14: the mirror without a prefix (no `overridePath`), and the CA as a document.
    let m14 = work.path().join("mirrors-1.14.yaml");
    talext()
        .args([
            "-q",
            "bundle",
            "push",
            "--talos-version",
            "v1.14.0",
            "--ca-file",
        ])
        .arg(&ca)
        .arg("--mirror-config")
        .arg(&m14)
        .arg(&bundle)
        .arg(&b.addr)
        .ok();
    let docs = documents(&m14);
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0]["kind"], "RegistryMirrorConfig");
    assert_eq!(docs[0]["name"].as_str(), Some(a.addr.as_str()));
    assert_eq!(
        docs[0]["endpoints"][0]["url"].as_str(),
        Some(format!("https://{}", b.addr).as_str())
    );
    assert!(docs[0]["endpoints"][0]["overridePath"].is_null());
    assert_eq!(docs[1]["kind"], "RegistryTLSConfig");
    assert_eq!(docs[1]["name"].as_str(), Some(b.addr.as_str()));
    assert_eq!(docs[1]["ca"].as_str().map(str::trim), Some(pem.trim()));
    lints_clean(&m14, "v1.14.0");

    // v1.11: the same as `.machine.registries`, the CA base64-encoded (`Base64Bytes`).
    let m11 = work.path().join("mirrors-1.11.yaml");
    talext()
        .args([
            "-q",
            "bundle",
            "push",
            "--talos-version",
            "v1.11.5",
            "--ca-file",
        ])
        .arg(&ca)
        .arg("--mirror-config")
        .arg(&m11)
        .arg(&bundle)
        .arg(&b.addr)
        .ok();
    let docs = documents(&m11);
    assert_eq!(docs.len(), 1);
    let registries = &docs[0]["machine"]["registries"];
    assert_eq!(
        registries["mirrors"][a.addr.as_str()]["endpoints"][0].as_str(),
        Some(format!("https://{}", b.addr).as_str())
    );
    let encoded = registries["config"][b.addr.as_str()]["tls"]["ca"]
        .as_str()
        .unwrap();
    let decoded = decode_base64(encoded);
    assert_eq!(decoded.trim(), pem.trim());
    lints_clean(&m11, "v1.11.5");
}

fn decode_base64(text: &str) -> String {
    use base64::Engine as _;
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap(),
    )
    .unwrap()
}

/// A layer two bundled images share, in two repositories of the site registry, is sent once
/// and mounted into the second repository; the bundle is read in place (no copy of it is
/// unpacked under `TMPDIR`).
#[test]
fn a_shared_layer_is_sent_once_and_mounted_and_the_bundle_is_read_in_place() {
    let a = Registry::plain();
    let b = Registry::plain();
    let work = tempfile::tempdir().unwrap();
    let content = noise(99, 2 << 20);
    let mut refs = Vec::new();
    let mut layer = String::new();
    for (n, arch) in ["amd64", "arm64"].iter().enumerate() {
        let img = TestImage::new(&content, arch);
        layer = img.layer.digest.clone();
        let layout = work.path().join(format!("shared{n}"));
        write_oci_layout(&layout, &[&img], None, "v1");
        seed(&layout, "v1", &a.docker_ref(&format!("shared/img{n}:v1")));
        refs.push(format!("{}/shared/img{n}:v1", a.addr));
    }
    let bundle = work.path().join("shared.tar");
    talext()
        .args(["-q", "bundle", "create", "-o"])
        .arg(&bundle)
        .args(&refs)
        .ok();
    let proxy = FaultProxy::start(&b.addr);
    // No file talext writes may exceed 256 KiB (`ulimit -f`): a copy of the layer would kill it.
    let mut push = Command::new("sh");
    talext_kit::tools::isolate(&mut push);
    let out = push
        .arg("-c")
        .arg("ulimit -f 512; exec \"$@\"")
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_talext"))
        .args(["bundle", "push"])
        .arg(&bundle)
        .arg(format!("{}/site", proxy.addr))
        .env("DOCKER_CONFIG", "/nonexistent")
        .env("REGISTRY_AUTH_FILE", "/nonexistent/auth.json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hits = proxy.hits();
    let escaped = layer.replace(':', "%3A");
    let sent = hits
        .iter()
        .filter(|h| h.method == "PUT" && (h.path.contains(&escaped) || h.path.contains(&layer)))
        .count();
    let mounted = hits
        .iter()
        .filter(|h| {
            h.method == "POST"
                && h.path.contains("mount=")
                && (h.path.contains(&escaped) || h.path.contains(&layer))
        })
        .count();
    assert_eq!((sent, mounted), (1, 1), "{hits:#?}");
    for n in 0..2 {
        assert!(exists(&format!(
            "docker://{}/site/shared/img{n}:v1",
            b.addr
        )));
    }
}
