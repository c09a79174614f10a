//! `talext image-cache create` against the reference registry: the tree follows the format
//! `talosctl image cache-create` writes (`siderolabs/talos` `pkg/imager/cache/cache.go`,
//! v1.14.0-rc.1), read here by a walker written from that description; a registry with a port,
//! a nested repository and a Docker Hub name; one platform or all; the OCI wrapping read by
//! skopeo and `tar`; the same digest twice, and the same from a bundle with the registry gone.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use talext_kit::payload;
use talext_kit::registry::{sha256, Registry};
use talext_kit::tools::{self, Outcome};

const BIN: &str = env!("CARGO_BIN_EXE_talext");

fn ok(o: Outcome) -> Outcome {
    assert_eq!(o.code, Some(0), "{}\n{}", o.line, o.stderr);
    o
}

/// A two-platform extension image built from the stand-in payload, in a layout tagged `v1`.
fn image_layout(dir: &Path) -> PathBuf {
    let src = payload::tailscale_standin(&dir.join("src"));
    let out = dir.join("built");
    ok(tools::talext(BIN)
        .arg("build")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../extension/tailscale"))
        .args(["--no-cache", "--source"])
        .arg(format!("tailscale={}", src.display()))
        .arg("--output")
        .arg(format!("oci:{}:v1", out.display()))
        .run());
    out
}

fn raw(reference: &str) -> String {
    tools::skopeo()
        .args(["inspect", "--tls-verify=false", "--raw", reference])
        .ok()
        .stdout
}

/// Every file below `root`, relative.
fn files(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    out
}

/// The reader: from `reference/<tag>`, the document; for each platform manifest it lists (or
/// the manifest itself), `digest/sha256-<hex>` and every blob under `blob/`, each hashing to its
/// name. Returns the platforms found.
fn walk(root: &Path, repo_dir: &str, tag: &str) -> BTreeSet<String> {
    let dir = root.join("manifests").join(repo_dir);
    let top = fs::read(dir.join("reference").join(tag))
        .unwrap_or_else(|e| panic!("`{repo_dir}` reference `{tag}`: {e}"));
    let digest = sha256(&top);
    let by_digest = fs::read(dir.join("digest").join(digest.replace(':', "-"))).unwrap();
    assert_eq!(
        by_digest, top,
        "the tag's document is also stored by digest"
    );
    let v: Value = serde_json::from_slice(&top).unwrap();
    let mut platforms = BTreeSet::new();
    let manifests: Vec<(Option<String>, String)> = match v["manifests"].as_array() {
        Some(list) => list
            .iter()
            .map(|d| {
                (
                    d["platform"]["architecture"].as_str().map(str::to_string),
                    d["digest"].as_str().unwrap().to_string(),
                )
            })
            .collect(),
        None => vec![(None, digest.clone())],
    };
    for (arch, d) in manifests {
        let Ok(bytes) = fs::read(dir.join("digest").join(d.replace(':', "-"))) else {
            continue;
        };
        assert_eq!(sha256(&bytes), d);
        let m: Value = serde_json::from_slice(&bytes).unwrap();
        for b in std::iter::once(&m["config"]).chain(m["layers"].as_array().unwrap()) {
            let bd = b["digest"].as_str().unwrap();
            let blob = fs::read(root.join("blob").join(bd.replace(':', "-")))
                .unwrap_or_else(|e| panic!("blob `{bd}` of `{d}`: {e}"));
            assert_eq!(sha256(&blob), bd);
        }
        platforms.insert(arch.unwrap_or_else(|| "(image)".into()));
    }
    platforms
}

fn create(args: &[&str], out: &Path) -> Outcome {
    ok(tools::talext(BIN)
        .args(["image-cache", "create", "--output"])
        .arg(out)
        .args(args)
        .run())
}

#[test]
fn the_cache_follows_talos_format_and_is_reproducible() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::plain();
    let built = image_layout(tmp.path());
    let installer = reg.docker_ref("siderolabs/installer:v1.14.0");
    let nested = reg.docker_ref("nested/a/b:1");
    for target in [&installer, &nested] {
        tools::skopeo()
            .args(["copy", "--all", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:v1", built.display()))
            .arg(target)
            .ok();
    }
    // A Docker Hub name, served from a layout whose tag is the reference (as a bundle's are).
    let hub = tmp.path().join("hub");
    ok(tools::talext(BIN)
        .args(["copy", "--platform", "linux/amd64"])
        .arg(format!("oci:{}:v1", built.display()))
        .arg(format!("oci:{}:x", hub.display()))
        .run());
    let index_path = hub.join("index.json");
    let text = fs::read_to_string(&index_path)
        .unwrap()
        .replace("\"x\"", "\"docker.io/library/alpine:3.20\"");
    fs::write(&index_path, text).unwrap();

    let images = [
        format!("{}/siderolabs/installer:v1.14.0", reg.addr),
        format!("{}/nested/a/b:1", reg.addr),
        "alpine:3.20".to_string(),
    ];
    let mut args: Vec<&str> = images.iter().map(String::as_str).collect();
    let from = format!("oci:{}", hub.display());
    args.extend(["--from", &from, "--layout", "flat"]);
    let flat = tmp.path().join("flat");
    create(&args, &flat);
    let host = reg.addr.replace(':', "_") + "_";
    assert_eq!(
        walk(&flat, &format!("{host}/siderolabs/installer"), "v1.14.0"),
        BTreeSet::from(["amd64".to_string()]),
        "one platform by default"
    );
    assert_eq!(
        fs::read_to_string(flat.join(format!(
            "manifests/{host}/siderolabs/installer/reference/v1.14.0"
        )))
        .unwrap(),
        raw(&installer),
        "the tag's document is the registry's bytes"
    );
    walk(&flat, &format!("{host}/nested/a/b"), "1");
    assert_eq!(
        walk(&flat, "docker.io/library/alpine", "3.20"),
        BTreeSet::from(["(image)".to_string()])
    );
    assert!(files(&flat)
        .iter()
        .all(|f| f.starts_with("blob/sha256-") || f.starts_with("manifests/")));

    // Every platform.
    let all = tmp.path().join("all");
    let mut all_args = args.clone();
    all_args.extend(["--platform", "all"]);
    create(&all_args, &all);
    assert_eq!(
        walk(&all, &format!("{host}/siderolabs/installer"), "v1.14.0"),
        BTreeSet::from(["amd64".to_string(), "arm64".to_string()])
    );

    // The OCI wrapping, twice: one digest; skopeo reads it; its layer is the tree.
    let mut oci_args: Vec<&str> = images.iter().map(String::as_str).collect();
    oci_args.extend(["--from", &from, "--source-date-epoch", "1700000000"]);
    let one = create(&oci_args, &tmp.path().join("one")).stdout;
    let two = create(&oci_args, &tmp.path().join("two")).stdout;
    assert_eq!(one, two, "reproducible");
    let index: Value =
        serde_json::from_slice(&fs::read(tmp.path().join("one/index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(index["manifests"][0]["platform"]["architecture"], "amd64");
    assert_eq!(index["manifests"][0]["digest"], one.trim());
    let inspected = tools::skopeo()
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}", tmp.path().join("one").display()))
        .ok();
    let manifest: Value = serde_json::from_str(&inspected.stdout).unwrap();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .replace(':', "/");
    let listing = std::process::Command::new("tar")
        .arg("-tzf")
        .arg(tmp.path().join("one/blobs").join(layer))
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listing.stdout).into_owned();
    for f in files(&flat) {
        assert!(
            listed.lines().any(|l| l.trim_start_matches("./") == f),
            "`{f}` in the layer"
        );
    }

    // `validate` and `inspect` recognise a cache, flat or wrapped, and check it.
    for cache in [
        format!("oci:{}", tmp.path().join("one").display()),
        flat.display().to_string(),
    ] {
        let v = ok(tools::talext(BIN)
            .args(["validate", "--json", &cache])
            .run())
        .json();
        assert_eq!(v["errors"], 0, "{v}");
        let shown = ok(tools::talext(BIN).args(["inspect", &cache]).run()).stdout;
        assert!(shown.contains("image cache: 3 image(s)"), "{shown}");
        assert!(
            shown.contains(&format!("{}/siderolabs/installer:v1.14.0", reg.addr)),
            "{shown}"
        );
        let json = ok(tools::talext(BIN).args(["inspect", "--json", &cache]).run()).json();
        assert_eq!(
            json["platforms"][0]["image_cache"]["images"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
    }
    // A flipped byte in a blob, and a blob gone, are found and named.
    let damaged = tmp.path().join("damaged");
    copy_dir(&flat, &damaged);
    let blob = fs::read_dir(damaged.join("blob"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = fs::read(&blob).unwrap();
    bytes[0] ^= 1;
    fs::write(&blob, &bytes).unwrap();
    let out = tools::talext(BIN)
        .args(["validate", "--json", damaged.to_str().unwrap()])
        .fails_with(1);
    assert!(out.stdout.contains("image-cache-blob"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains(blob.file_name().unwrap().to_str().unwrap()),
        "{}",
        out.stdout
    );
    fs::remove_file(&blob).unwrap();
    let out = tools::talext(BIN)
        .args(["validate", damaged.to_str().unwrap()])
        .fails_with(1);
    assert!(
        out.stdout.contains("which is not in `blob/`"),
        "{}",
        out.stdout
    );

    // The imager profile takes the cache when it holds the profile's installer, and says so
    // plainly when it does not (an offline install would stall pulling it).
    // With `--machine-config`, the documents that use it: the cache switch of v1.14 and the
    // `IMAGECACHE` volume, sized to hold it.
    for cache in [tmp.path().join("one"), flat.clone()] {
        let machine = tmp.path().join("machine.yaml");
        let profile = ok(tools::talext(BIN)
            .args([
                "imager-profile",
                "--talos-version",
                "v1.14.0",
                "--base-installer",
            ])
            .arg(&images[0])
            .arg("--oci-path")
            .arg(&built)
            .arg("--image-cache")
            .arg(&cache)
            .arg("--machine-config")
            .arg(&machine)
            .run());
        let text = fs::read_to_string(&machine).unwrap();
        let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
        assert_eq!(docs.len(), 2, "{text}");
        assert_eq!(docs[0]["kind"], "ImageCacheConfig");
        assert_eq!(docs[0]["local"]["enabled"].as_bool(), Some(true));
        assert_eq!(docs[1]["kind"], "VolumeConfig");
        assert_eq!(docs[1]["name"], "IMAGECACHE");
        let mib = |key: &str| -> u64 {
            let v = docs[1]["provisioning"][key].as_str().unwrap();
            v.strip_suffix("MiB").unwrap().parse().unwrap()
        };
        let content: u64 = files(&flat)
            .iter()
            .map(|f| fs::metadata(flat.join(f)).unwrap().len())
            .sum();
        assert!(mib("minSize") * 1024 * 1024 > content, "{text}");
        assert!(mib("maxSize") >= mib("minSize"), "{text}");
        ok(tools::talext(BIN)
            .args(["config", "lint", "--talos-version", "v1.14.0"])
            .arg(&machine)
            .run());
        assert!(
            profile
                .stdout
                .contains(&format!("imageCache:\n    ociPath: {}", cache.display())),
            "{}",
            profile.stdout
        );
        let missing = tools::talext(BIN)
            .args(["imager-profile", "--talos-version", "v1.14.0", "--oci-path"])
            .arg(&built)
            .arg("--image-cache")
            .arg(&cache)
            .fails_with(1);
        assert!(
            missing.stderr.contains(
                "does not hold the installer `ghcr.io/siderolabs/installer-base:v1.14.0`"
            ),
            "{}",
            missing.stderr
        );
    }

    // From a bundle of the same images, with the registry gone: the same cache.
    let bundle = tmp.path().join("bundle.tar");
    ok(tools::talext(BIN)
        .args(["-q", "bundle", "create", "-o"])
        .arg(&bundle)
        .args(&images[..2])
        .run());
    drop(reg);
    let from_bundle = format!("oci-archive:{}", bundle.display());
    let mut b_args: Vec<&str> = images.iter().map(String::as_str).collect();
    b_args.extend([
        "--from",
        &from_bundle,
        "--from",
        &from,
        "--source-date-epoch",
        "1700000000",
    ]);
    let three = create(&b_args, &tmp.path().join("three")).stdout;
    assert_eq!(three, one, "a bundle gives the registry's cache");
}

#[test]
fn bad_requests_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::plain();
    let out = tmp.path().join("cache");
    let o = tools::talext(BIN)
        .args(["image-cache", "create", "--output"])
        .arg(&out)
        .arg(format!("{}/missing/image:v1", reg.addr))
        .run();
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert!(o.stderr.contains("missing/image"), "{}", o.stderr);
    assert!(!out.exists());
    let litter: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(litter.is_empty(), "{litter:?}");
    fs::create_dir(&out).unwrap();
    fs::write(out.join("x"), b"x").unwrap();
    let o = tools::talext(BIN)
        .args(["image-cache", "create", "--output"])
        .arg(&out)
        .arg("alpine:3.20")
        .run();
    assert_eq!(o.code, Some(1));
    assert!(o.stderr.contains("not empty"), "{}", o.stderr);
}

#[test]
fn images_lists_what_a_release_needs() {
    let o = ok(tools::talext(BIN)
        .args(["images", "--talos-version", "v1.13.0"])
        .run());
    let lines: Vec<&str> = o.stdout.lines().collect();
    for want in [
        "ghcr.io/siderolabs/installer:v1.13.0",
        "ghcr.io/siderolabs/installer-base:v1.13.0",
        "ghcr.io/siderolabs/kubelet:v1.36.0",
        "registry.k8s.io/etcd:v3.6.9",
        "registry.k8s.io/coredns/coredns:v1.14.2",
        "registry.k8s.io/kube-apiserver:v1.36.0",
        "ghcr.io/siderolabs/extensions:v1.13.0",
    ] {
        assert!(lines.contains(&want), "{want} in {lines:?}");
    }
    let old = ok(tools::talext(BIN)
        .args(["images", "--talos-version", "v1.9.6", "--kubernetes-version", "1.31.4"])
        .args(["--drop", "flannel", "--image", "ghcr.io/acme/ext:1@sha256:0000000000000000000000000000000000000000000000000000000000000000", "--json"])
        .run())
    .json();
    let images: Vec<&str> = old
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["image"].as_str().unwrap())
        .collect();
    assert!(
        !images.iter().any(|i| i.contains("installer-base")),
        "{images:?}"
    );
    assert!(!images.iter().any(|i| i.contains("flannel")), "{images:?}");
    assert!(images.contains(&"registry.k8s.io/kube-apiserver:v1.31.4"));
    assert!(images.iter().any(|i| i.starts_with("ghcr.io/acme/ext:1@")));
    let bad = tools::talext(BIN)
        .args(["images", "--talos-version", "v0.9.0"])
        .run();
    assert_eq!(bad.code, Some(1), "{}", bad.stderr);
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), &target).unwrap();
        }
    }
}
