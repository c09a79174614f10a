//! The commands and options users reach for, through the binary, with their real output
//! checked: `inspect` (text and `--json`) of `oci:`, `oci-archive:` and `docker://` images,
//! `plan`, `validate` of `docker://` and `oci-archive:` images, `build` from `oci:` and
//! `oci-archive:` sources, a definition's `include`/`exclude` and `files:`, and
//! `ci/build-tailscale.sh` run offline on a stand-in payload.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use talext_kit::payload;
use talext_kit::registry::{sha256, write_oci_layout, Blob, Registry, TestImage};
use talext_kit::schema::{blob_path, read_json};
use talext_kit::tools::{self, read_tar, Cmd, Outcome, TarEntry};

const BIN: &str = env!("CARGO_BIN_EXE_talext");
const REF_NAME: &str = "org.opencontainers.image.ref.name";
const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const CONTAINER: &str = "rootfs/usr/local/lib/containers/tailscale";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn talext() -> Cmd {
    tools::talext(BIN)
        .env("DOCKER_CONFIG", "/nonexistent")
        .env("REGISTRY_AUTH_FILE", "/nonexistent/auth.json")
}

fn def() -> PathBuf {
    repo().join("extension/tailscale")
}

/// `talext build DEF --source tailscale=SOURCE --output OUTPUT --no-cache` plus `extra`; the
/// printed digest.
fn build(def: &Path, source: &str, output: &str, extra: &[&str]) -> String {
    let out = talext()
        .arg("build")
        .arg(def)
        .args(["--no-cache", "--source", &format!("tailscale={source}")])
        .args(["--output", output])
        .args(extra)
        .ok();
    let digest = out.stdout.trim().to_string();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71 && !digest.contains('\n'),
        "build printed `{}`",
        out.stdout
    );
    digest
}

/// The image manifests of an index blob in a layout, by `os/arch`.
fn platforms(layout: &Path, index: &str) -> BTreeMap<String, (String, Value)> {
    let index = read_json(&blob_path(layout, index));
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let p = &d["platform"];
            let digest = d["digest"].as_str().unwrap().to_string();
            let manifest = read_json(&blob_path(layout, &digest));
            (
                format!(
                    "{}/{}",
                    p["os"].as_str().unwrap(),
                    p["architecture"].as_str().unwrap()
                ),
                (digest, manifest),
            )
        })
        .collect()
}

/// Every entry of a platform's single layer, by path.
fn layer_entries(layout: &Path, manifest: &Value) -> BTreeMap<String, TarEntry> {
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{manifest}");
    let bytes = fs::read(blob_path(layout, layers[0]["digest"].as_str().unwrap())).unwrap();
    read_tar(&bytes)
        .into_iter()
        .map(|e| (tools::clean_path(&e.path).to_string(), e))
        .collect()
}

/// The stand-in payload's `{arch}` path, made once per test process.
fn standin() -> &'static Path {
    static S: std::sync::OnceLock<(tempfile::TempDir, PathBuf)> = std::sync::OnceLock::new();
    &S.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let p = payload::tailscale_standin(dir.path());
        (dir, p)
    })
    .1
}

#[test]
fn inspect_describes_layouts_archives_and_registry_images_alike() {
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let archive = work.path().join("ext.tar");
    let source = standin().to_str().unwrap();
    let digest = build(&def(), source, &format!("oci:{}:v1", layout.display()), &[]);
    assert_eq!(
        build(
            &def(),
            source,
            &format!("oci-archive:{}:v1", archive.display()),
            &[]
        ),
        digest
    );
    let registry = Registry::plain();
    let remote = format!("docker://{}/ext/tailscale:v1", registry.addr);
    talext()
        .args(["copy", &format!("oci:{}:v1", layout.display()), &remote])
        .ok();
    let images = platforms(&layout, &digest);
    assert_eq!(
        images.keys().collect::<Vec<_>>(),
        ["linux/amd64", "linux/arm64"]
    );

    let mut described = Vec::new();
    for loc in [
        format!("oci:{}:v1", layout.display()),
        format!("oci-archive:{}:v1", archive.display()),
        remote.clone(),
    ] {
        // A registry image's layers are read only when asked for.
        let contents: &[&str] = if loc == remote { &["--contents"] } else { &[] };
        let text = talext().args(["inspect", &loc]).args(contents).ok().stdout;
        let head = format!("{loc}\n  digest: {digest}\n  type:   {MT_INDEX}\n");
        assert!(text.starts_with(&head), "{text}");
        for (platform, (child, manifest)) in &images {
            let layer = &manifest["layers"][0];
            for line in [
                format!("\n{platform}  {child}\n"),
                format!(
                    "  layer:   {} application/vnd.oci.image.layer.v1.tar+gzip ({} bytes)\n",
                    layer["digest"].as_str().unwrap(),
                    layer["size"]
                ),
            ] {
                assert!(text.contains(&line), "`{line}` missing from:\n{text}");
            }
        }
        for line in [
            "  created: 1970-01-01T00:00:00Z\n",
            "  extension: tailscale 1.102.5 (talos >= v1.7.0)\n",
            "  author:  Tailscale Inc. (upstream image), packaged by its user with talext\n",
            "  service: tailscale (rootfs/usr/local/etc/containers/tailscale.yaml) entrypoint /usr/local/bin/containerboot restart always\n",
            "    rootfs/usr/local/lib: ",
        ] {
            assert_eq!(text.matches(line).count(), 2, "`{line}` twice in:\n{text}");
        }

        let mut json = talext()
            .args(["inspect", "--json", &loc])
            .args(contents)
            .ok()
            .json();
        assert_eq!(json["source"], json!(loc));
        assert_eq!(json["digest"], json!(digest));
        assert_eq!(json["media_type"], json!(MT_INDEX));
        let shown = json["platforms"].as_array().unwrap();
        assert_eq!(shown.len(), 2);
        for p in shown {
            let (child, manifest) = &images[p["platform"].as_str().unwrap()];
            assert_eq!(p["digest"], json!(child));
            assert_eq!(
                p["layers"],
                json!([{
                    "digest": manifest["layers"][0]["digest"],
                    "media_type": manifest["layers"][0]["mediaType"],
                    "size": manifest["layers"][0]["size"],
                }])
            );
            assert_eq!(p["manifest"]["metadata"]["name"], "tailscale");
            assert_eq!(p["manifest"]["metadata"]["version"], "1.102.5");
            assert_eq!(
                p["services"][0]["file"],
                "rootfs/usr/local/etc/containers/tailscale.yaml"
            );
            assert_eq!(
                p["services"][0]["definition"]["container"]["entrypoint"],
                "/usr/local/bin/containerboot"
            );
            // Three Tailscale binaries, busybox, os-release, the CA bundle; the service file
            // and the SBOM.
            assert!(p["tree"]["files"].as_u64().unwrap() >= 8, "{p}");
            assert!(p["tree"]["symlinks"].as_u64().unwrap() >= 6, "{p}");
        }
        json.as_object_mut().unwrap().remove("source");
        described.push(json);
    }
    // One image, one description, wherever it is stored.
    assert_eq!(described[0], described[1]);
    assert_eq!(described[0], described[2]);

    // `validate --platform` selects images of the index, as `copy --platform` does.
    let only_arm = talext()
        .args(["validate", &format!("oci:{}:v1", layout.display())])
        .args(["--platform", "linux/arm64", "--talos-version", "v1.13.0"])
        .ok()
        .stdout;
    assert!(
        only_arm.contains("linux/arm64") && !only_arm.contains("linux/amd64"),
        "{only_arm}"
    );
    let out = talext()
        .args(["validate", &format!("oci:{}:v1", layout.display())])
        .args(["--platform", "linux/s390x"])
        .fails_with(1);
    assert!(
        out.stderr.contains("has no `linux/s390x` image") && out.stderr.contains("linux/amd64"),
        "{}",
        out.stderr
    );

    // Without `--contents`, a registry image is described from its manifests and configs: with
    // every layer gone from the registry's storage, it still inspects, and `--contents` fails.
    let blobs = registry.storage().join("docker/registry/v2/blobs/sha256");
    for (_, manifest) in images.values() {
        let hex = manifest["layers"][0]["digest"].as_str().unwrap()["sha256:".len()..].to_string();
        std::fs::remove_dir_all(blobs.join(&hex[..2]).join(&hex)).unwrap();
    }
    let text = talext().args(["inspect", &remote]).ok().stdout;
    assert!(text.contains("layers not read"), "{text}");
    assert!(
        !text.contains("extension:") && !text.contains("tree:"),
        "{text}"
    );
    let json = talext().args(["inspect", "--json", &remote]).ok().json();
    assert_eq!(json["contents"], json!(false));
    let mut metadata_only = described[2].clone();
    metadata_only["contents"] = json!(false);
    for p in metadata_only["platforms"].as_array_mut().unwrap() {
        let p = p.as_object_mut().unwrap();
        p.remove("tree");
        p.insert("manifest".into(), json!(null));
        p.insert("services".into(), json!([]));
    }
    let mut shown = json.clone();
    shown.as_object_mut().unwrap().remove("source");
    assert_eq!(shown, metadata_only);
    talext()
        .args(["inspect", "--contents", &remote])
        .fails_with(1);
}

#[test]
fn plan_shows_the_definition_as_resolved() {
    let out = talext().arg("plan").arg(def()).ok().stdout;
    for line in [
        "name: tailscale\n",
        "version: 1.102.5\n",
        "compatibility:\n  talos: '>= v1.7.0'\n",
        "platforms:\n- linux/amd64\n- linux/arm64\n",
        "with SOURCE_DATE_EPOCH=0\n",
        "    location: docker.io/tailscale/tailscale:v1.102.5@sha256:c507f3a2a6ab1cabd8d809b98edeb41edbd5c3fb6ad9632ffd098b4c7d0b4065\n",
        "- source: tailscale\n  to: /usr/local/lib/containers/tailscale\n",
        "  - path: /sbin/iptables\n    target: xtables-nft-multi\n",
    ] {
        assert!(out.contains(line), "`{line}` missing from:\n{out}");
    }
    let out = talext()
        .arg("plan")
        .arg(def())
        .args(["--source", "tailscale=/srv/payload/{arch}"])
        .args(["--platform", "linux/arm64", "--version", "9.9.9-rc1"])
        .args(["--source-date-epoch", "1700000000"])
        .ok()
        .stdout;
    for line in [
        "version: 9.9.9-rc1\n",
        "platforms:\n- linux/arm64\n",
        "with SOURCE_DATE_EPOCH=1700000000\n",
        "    location: dir:/srv/payload/{arch}\n",
    ] {
        assert!(out.contains(line), "`{line}` missing from:\n{out}");
    }
    assert!(!out.contains("linux/amd64"), "{out}");
    let out = talext()
        .arg("plan")
        .arg(def())
        .args(["--source", "nosuch=/x"])
        .fails_with(1);
    assert!(out.stderr.contains("nosuch"), "{}", out.stderr);
}

/// Validating a registry image streams the layers it needs from the registry's answers, once
/// each: `--platform` reads that platform's layer only, and a body cut in the middle is taken
/// up again from where it broke off (`Range`), with the same verdict.
#[test]
fn validate_streams_registry_layers_once() {
    use talext_kit::faultproxy::{Fault, FaultProxy, Rule};
    let work = tempfile::tempdir().unwrap();
    let layout = format!("oci:{}:v1", work.path().join("ext").display());
    build(&def(), standin().to_str().unwrap(), &layout, &[]);
    let registry = Registry::plain();
    talext()
        .args([
            "copy",
            &layout,
            &format!("docker://{}/ext/stream:v1", registry.addr),
        ])
        .ok();
    let front = FaultProxy::start(&registry.addr);
    let remote = format!("docker://{}/ext/stream:v1", front.addr);
    let inspected = talext().args(["inspect", "--json", &remote]).ok().json();
    let layer = |platform: &str| -> String {
        let p = inspected["platforms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["platform"] == platform)
            .unwrap();
        p["layers"][0]["digest"].as_str().unwrap().to_string()
    };
    let (amd64, arm64) = (layer("linux/amd64"), layer("linux/arm64"));
    let gets = |digest: &str| {
        front
            .hits()
            .iter()
            .filter(|h| h.method == "GET" && h.path.ends_with(&format!("/blobs/{digest}")))
            .map(|h| h.header("range").unwrap_or("").to_string())
            .collect::<Vec<_>>()
    };
    assert!(gets(&amd64).is_empty() && gets(&arm64).is_empty());

    let out = talext()
        .args([
            "validate",
            "--talos-version",
            "v1.12.0",
            "--platform",
            "linux/arm64",
            &remote,
        ])
        .ok()
        .stdout;
    assert_eq!(
        out,
        format!("ok: 0 errors, 0 warnings in {remote} linux/arm64 for Talos v1.12.0\n")
    );
    assert_eq!(gets(&arm64), vec![String::new()], "the arm64 layer, once");
    assert!(gets(&amd64).is_empty(), "the amd64 layer was read");

    // The amd64 layer's answer is cut after 100 kB: the stream goes on from byte 100 000.
    front.add(
        Rule::new(Fault::ResetResponseBody { after: 100_000 })
            .method("GET")
            .path(&amd64)
            .times(1),
    );
    let out = talext()
        .args(["validate", "--talos-version", "v1.12.0", &remote])
        .ok()
        .stdout;
    assert_eq!(
        out,
        format!(
            "== {remote} linux/amd64\n== {remote} linux/arm64\n\
             ok: 0 errors, 0 warnings in {remote} linux/amd64, {remote} linux/arm64 for Talos v1.12.0\n"
        )
    );
    assert_eq!(
        gets(&amd64),
        vec![String::new(), "bytes=100000-".to_string()]
    );
    assert_eq!(
        gets(&arm64).len(),
        2,
        "one GET of the arm64 layer per validation"
    );

    // Cut again, and the registry then ignores the range: the whole body comes again, and the
    // bytes already read are skipped.
    front.add(
        Rule::new(Fault::ResetResponseBody { after: 150_000 })
            .method("GET")
            .path(&amd64)
            .times(1),
    );
    front.add(
        Rule::new(Fault::IgnoreRange)
            .method("GET")
            .path(&amd64)
            .times(1),
    );
    talext()
        .args([
            "validate",
            "--talos-version",
            "v1.12.0",
            "--platform",
            "linux/amd64",
            &remote,
        ])
        .ok();
    assert_eq!(gets(&amd64)[2..], ["", "bytes=150000-"]);

    // A registry that serves other bytes under the layer's digest (its storage damaged, same
    // length): refused with the digests named, nothing judged.
    let hex = &amd64["sha256:".len()..];
    let data = registry
        .storage()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    let mut bytes = fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&data, &bytes).unwrap();
    let out = talext()
        .args([
            "validate",
            "--talos-version",
            "v1.12.0",
            "--retry-max",
            "0",
            &remote,
        ])
        .fails_with(2);
    assert!(
        out.stderr.contains(&format!("does not match `{amd64}`")),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}

#[test]
fn validate_reads_registry_images_and_archives() {
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("ext.tar");
    let archived = format!("oci-archive:{}:v1", archive.display());
    build(&def(), standin().to_str().unwrap(), &archived, &[]);
    let registry = Registry::plain();
    let remote = format!("docker://{}/ext/tailscale:v1", registry.addr);
    talext().args(["copy", &archived, &remote]).ok();
    for loc in [&archived, &remote] {
        let out = talext()
            .args(["validate", "--talos-version", "v1.12.0", loc])
            .ok()
            .stdout;
        assert_eq!(
            out,
            format!(
                "== {loc} linux/amd64\n== {loc} linux/arm64\n\
                 ok: 0 errors, 0 warnings in {loc} linux/amd64, {loc} linux/arm64 for Talos v1.12.0\n"
            )
        );
        // Without a version, every known release is judged, each with its verdict.
        let survey = talext().args(["validate", loc]).ok().stdout;
        assert!(
            survey.contains("works on every one of the known Talos releases"),
            "{survey}"
        );
        let report = talext().args(["validate", "--json", loc]).ok().json();
        assert_eq!(report["ok"], true, "{report}");
        assert_eq!(
            (&report["errors"], &report["warnings"]),
            (&json!(0), &json!(0))
        );
        let subjects = report["subjects"].to_string();
        for platform in ["linux/amd64", "linux/arm64"] {
            assert!(subjects.contains(&format!("{loc} {platform}")), "{report}");
        }
    }
    // An image that is not an extension: every finding is reported, exit 1.
    let plain = TestImage::new("not an extension\n", "amd64");
    let layout = work.path().join("plain");
    write_oci_layout(&layout, &[&plain], None, "v1");
    let remote = format!("docker://{}/plain/image:v1", registry.addr);
    talext()
        .args(["copy", &format!("oci:{}:v1", layout.display()), &remote])
        .ok();
    let archive = work.path().join("plain.tar");
    talext()
        .args([
            "copy",
            &format!("oci:{}:v1", layout.display()),
            &format!("oci-archive:{}:v1", archive.display()),
        ])
        .ok();
    for loc in [remote, format!("oci-archive:{}:v1", archive.display())] {
        let out = talext()
            .args(["validate", "--talos-version", "v1.12.0", &loc])
            .fails_with(1);
        for line in [
            "error[unexpected-top-level] hello.txt: ",
            "error[rootfs-missing] rootfs: ",
            "error[manifest-missing] manifest.yaml: ",
            &format!("failed: 3 errors, 0 warnings in {loc} linux/amd64 for Talos v1.12.0\n"),
        ] {
            assert!(
                out.stdout.contains(line),
                "`{line}` missing from:\n{}",
                out.stdout
            );
        }
        let report = talext()
            .args(["validate", "--json", &loc])
            .fails_with(1)
            .json()
            .to_string();
        let report: Value = serde_json::from_str(&report).unwrap();
        assert_eq!(
            (&report["ok"], &report["errors"]),
            (&json!(false), &json!(3))
        );
        let report = report.to_string();
        for rule in ["unexpected-top-level", "rootfs-missing", "manifest-missing"] {
            assert!(report.contains(&format!("\"{rule}\"")), "{report}");
        }
    }
}

/// A gzip layer of the tree at `root` as a payload image's layer.
fn tree_layer(root: &Path) -> (Vec<u8>, Vec<u8>) {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    let mut paths: Vec<String> = tools::list_tree(root).into_keys().collect();
    paths.sort();
    for rel in paths {
        b.append_path_with_name(root.join(&rel), &rel).unwrap();
    }
    let plain = b.into_inner().unwrap();
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::fast());
    gz.write_all(&plain).unwrap();
    (plain, gz.finish().unwrap())
}

/// A two-platform payload image of the stand-in trees in a new layout at `dir`, tagged `v1`.
fn payload_layout(dir: &Path) {
    let mut blobs = Vec::new();
    let mut children = Vec::new();
    for arch in payload::ARCHES {
        let (plain, gz) = tree_layer(&payload::arch_tree(standin(), arch));
        let layer = Blob::new("application/vnd.oci.image.layer.v1.tar+gzip", gz);
        let config = Blob::new(
            "application/vnd.oci.image.config.v1+json",
            serde_json::to_vec(&json!({
                "architecture": arch, "os": "linux", "config": {},
                "rootfs": {"type": "layers", "diff_ids": [sha256(&plain)]},
            }))
            .unwrap(),
        );
        let manifest = Blob::new(
            MT_MANIFEST,
            serde_json::to_vec(&json!({
                "schemaVersion": 2, "mediaType": MT_MANIFEST,
                "config": config.descriptor(json!({})),
                "layers": [layer.descriptor(json!({}))],
            }))
            .unwrap(),
        );
        children
            .push(manifest.descriptor(json!({"platform": {"architecture": arch, "os": "linux"}})));
        blobs.extend([layer, config, manifest]);
    }
    let index = Blob::new(
        MT_INDEX,
        serde_json::to_vec(
            &json!({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": children}),
        )
        .unwrap(),
    );
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    for b in blobs.iter().chain([&index]) {
        fs::write(blob_path(dir, &b.digest), &b.bytes).unwrap();
    }
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let top = index.descriptor(json!({"annotations": {REF_NAME: "v1"}}));
    fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [top]})).unwrap(),
    )
    .unwrap();
}

#[test]
fn build_takes_oci_and_oci_archive_sources() {
    let work = tempfile::tempdir().unwrap();
    let payload_dir = work.path().join("payload");
    payload_layout(&payload_dir);
    let payload_tar = work.path().join("payload.tar");
    talext()
        .args([
            "copy",
            &format!("oci:{}:v1", payload_dir.display()),
            &format!("oci-archive:{}:v1", payload_tar.display()),
        ])
        .ok();
    let from_oci = work.path().join("from-oci");
    let from_archive = work.path().join("from-archive");
    let from_dir = work.path().join("from-dir");
    let digest = build(
        &def(),
        &format!("oci:{}:v1", payload_dir.display()),
        &format!("oci:{}:v1", from_oci.display()),
        &[],
    );
    assert_eq!(
        build(
            &def(),
            &format!("oci-archive:{}:v1", payload_tar.display()),
            &format!("oci:{}:v1", from_archive.display()),
            &[],
        ),
        digest,
        "an image in an archive builds what the same image in a layout builds"
    );
    let dir_digest = build(
        &def(),
        standin().to_str().unwrap(),
        &format!("oci:{}:v1", from_dir.display()),
        &[],
    );
    // The image of a tree builds the tree itself builds (only the SBOM, which records where
    // the source came from, differs).
    let shape = |layout: &Path, digest: &str| {
        platforms(layout, digest)
            .into_values()
            .map(|(_, m)| {
                layer_entries(layout, &m)
                    .into_iter()
                    .filter(|(p, _)| !p.starts_with("rootfs/usr/local/share/spdx/"))
                    .map(|(p, e)| (p, e.kind, e.mode, e.link, e.data))
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    assert!(shape(&from_oci, &digest) == shape(&from_dir, &dir_digest));
    for (platform, (_, manifest)) in platforms(&from_oci, &digest) {
        let arch = platform.trim_start_matches("linux/");
        let tree = payload::arch_tree(standin(), arch);
        let entries = layer_entries(&from_oci, &manifest);
        for (rel, node) in tools::list_tree(&tree) {
            let path = format!("{CONTAINER}/{rel}");
            let entry = entries
                .get(&path)
                .unwrap_or_else(|| panic!("`{path}` missing from the {platform} image"));
            match node {
                tools::Node::File { data, mode } => {
                    assert_eq!(entry.data, data, "`{path}` content");
                    assert_eq!(entry.mode & 0o7777, mode, "`{path}` mode");
                }
                tools::Node::Symlink { target } => {
                    // The definition's `links` repoint `iptables` and `ip6tables` at nft.
                    let want = if rel == "sbin/iptables" || rel == "sbin/ip6tables" {
                        "xtables-nft-multi".to_string()
                    } else {
                        target
                    };
                    assert_eq!(entry.link.as_deref(), Some(want.as_str()), "`{path}`")
                }
                tools::Node::Dir { .. } => assert_eq!(entry.kind, b'5', "`{path}`"),
                tools::Node::Other => {}
            }
            assert_eq!((entry.uid, entry.gid, entry.mtime), (0, 0, 0), "`{path}`");
        }
        let bin = &entries[&format!("{CONTAINER}/usr/local/bin/containerboot")];
        assert_eq!(
            payload::elf_machine_of(&bin.data),
            Some(payload::machine_of(arch))
        );
    }
}

#[test]
fn include_exclude_and_files_shape_the_tree() {
    let work = tempfile::tempdir().unwrap();
    let d = work.path().join("def");
    fs::create_dir_all(&d).unwrap();
    fs::copy(def().join("tailscale.yaml"), d.join("tailscale.yaml")).unwrap();
    fs::write(d.join("NOTICE"), "stand-in notice\n").unwrap();
    fs::write(d.join("hook.sh"), "#!/bin/sh\nexit 0\n").unwrap();
    fs::write(
        d.join("extension.yaml"),
        "name: tailscale\nversion: 1.0.0\ncompatibility:\n  talos: \">= v1.7.0\"\n\
         platforms:\n  - linux/amd64\nservice: tailscale.yaml\n\
         sources:\n  tailscale:\n    location: payload/{arch}\n\
         payload:\n\
         \x20 - source: tailscale\n    to: /usr/local/lib/containers/tailscale\n\
         \x20   include: [\"usr/local/bin/*\", \"etc/**\", \"bin/busybox\"]\n\
         \x20   exclude: [\"usr/local/bin/tailscale\", \"etc/ssl/certs\"]\n\
         \x20 - source: tailscale\n    from: etc/ssl/certs\n    to: /usr/local/share/certs\n\
         files:\n\
         \x20 - src: NOTICE\n    to: /usr/local/share/licenses/tailscale/NOTICE\n\
         \x20 - src: hook.sh\n    to: /usr/local/libexec/tailscale/hook.sh\n    mode: \"0750\"\n",
    )
    .unwrap();
    // The definition's own relative source location.
    let amd64 = d.join("payload/amd64");
    fs::create_dir_all(d.join("payload")).unwrap();
    let ok = Command::new("cp")
        .arg("-a")
        .arg(payload::arch_tree(standin(), "amd64"))
        .arg(&amd64)
        .status()
        .unwrap()
        .success();
    assert!(ok);

    let plan = talext().arg("plan").arg(&d).ok().stdout;
    assert!(
        plan.contains("  include:\n  - usr/local/bin/*\n  - etc/**\n  - bin/busybox\n"),
        "{plan}"
    );

    let layout = work.path().join("out");
    let out = talext()
        .arg("build")
        .arg(&d)
        .args([
            "--no-cache",
            "--output",
            &format!("oci:{}:v1", layout.display()),
        ])
        .ok();
    let digest = out.stdout.trim();
    let index = read_json(&blob_path(&layout, digest));
    let manifest_digest = index["manifests"]
        .as_array()
        .map_or(digest.to_string(), |m| {
            m[0]["digest"].as_str().unwrap().to_string()
        });
    let manifest = read_json(&blob_path(&layout, &manifest_digest));
    let entries = layer_entries(&layout, &manifest);
    let c = |p: &str| format!("{CONTAINER}/{p}");
    for kept in [
        c("usr/local/bin/containerboot"),
        c("usr/local/bin/tailscaled"),
        c("etc/os-release"),
        c("etc/ssl/cert.pem"),
        c("bin/busybox"),
        "rootfs/usr/local/share/certs/ca-certificates.crt".into(),
    ] {
        assert!(
            entries.contains_key(&kept),
            "`{kept}` missing: {:?}",
            entries.keys()
        );
    }
    for dropped in [
        c("usr/local/bin/tailscale"),
        c("etc/ssl/certs"),
        c("etc/ssl/certs/ca-certificates.crt"),
        c("bin/sh"),
        c("sbin"),
        c("usr/bin/env"),
        c("var/run"),
    ] {
        assert!(
            !entries.contains_key(&dropped),
            "`{dropped}` was not left out"
        );
    }
    assert_eq!(
        entries["rootfs/usr/local/share/certs/ca-certificates.crt"].data,
        fs::read(amd64.join("etc/ssl/certs/ca-certificates.crt")).unwrap()
    );
    let notice = &entries["rootfs/usr/local/share/licenses/tailscale/NOTICE"];
    assert_eq!(notice.data, b"stand-in notice\n");
    assert_eq!(notice.mode & 0o7777, 0o644);
    let hook = &entries["rootfs/usr/local/libexec/tailscale/hook.sh"];
    assert_eq!(hook.data, b"#!/bin/sh\nexit 0\n");
    assert_eq!(hook.mode & 0o7777, 0o750);

    // `umoci`, an independent reader, unpacks the same tree.
    let single = work.path().join("single");
    talext()
        .args([
            "copy",
            "--platform",
            "linux/amd64",
            &format!("oci:{}:v1", layout.display()),
            &format!("oci:{}:v1", single.display()),
        ])
        .ok();
    let rootfs = tools::umoci_unpack(&single, "v1", &work.path().join("bundle"));
    let hook = rootfs.join("rootfs/usr/local/libexec/tailscale/hook.sh");
    assert_eq!(
        fs::metadata(&hook).unwrap().permissions().mode() & 0o777,
        0o750
    );
    assert!(rootfs.join(c("usr/local/bin/containerboot")).is_file());
    assert!(!rootfs.join(c("usr/local/bin/tailscale")).exists());
    assert!(!rootfs.join(c("etc/ssl/certs")).exists());
}

#[test]
fn ci_build_script_builds_offline_from_a_given_source() {
    // A copy of the scripts and the definition, so the script's `out/` lands in a temporary
    // tree and not in the repository; `cargo` is a stand-in that records its arguments (the
    // release binary is the one under test, linked where the script runs it).
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("repo");
    fs::create_dir_all(root.join("ci")).unwrap();
    fs::create_dir_all(root.join("target/release")).unwrap();
    for script in ["build-tailscale.sh", "deps.sh"] {
        fs::copy(repo().join("ci").join(script), root.join("ci").join(script)).unwrap();
    }
    let ok = Command::new("cp")
        .arg("-a")
        .arg(repo().join("extension"))
        .arg(root.join("extension"))
        .status()
        .unwrap()
        .success();
    assert!(ok);
    std::os::unix::fs::symlink(BIN, root.join("target/release/talext")).unwrap();
    let shims = work.path().join("bin");
    fs::create_dir_all(&shims).unwrap();
    let log = work.path().join("cargo.log");
    fs::write(
        shims.join("cargo"),
        format!("#!/bin/sh\necho \"$*\" >> '{}'\n", log.display()),
    )
    .unwrap();
    fs::set_permissions(shims.join("cargo"), fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        shims.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |args: &[&str]| -> Outcome {
        let mut cmd = Command::new("bash");
        cmd.arg(root.join("ci/build-tailscale.sh")).args(args);
        tools::isolate(&mut cmd);
        cmd.env("PATH", &path)
            .env("TAILSCALE_SOURCE", standin())
            .env("DOCKER_CONFIG", "/nonexistent")
            .env("REGISTRY_AUTH_FILE", "/nonexistent/auth.json")
            .env_remove("TALEXT_OUTPUT")
            .env_remove("TALEXT_SOURCE");
        let out = cmd.output().unwrap();
        Outcome {
            line: format!("bash ci/build-tailscale.sh {}", args.join(" ")),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    };
    let out = run(&[]);
    if out.code != Some(0) {
        out.fail("expected exit code 0");
    }
    let digest = out.stdout.trim();
    assert!(
        digest.starts_with("sha256:") && out.stdout.lines().count() == 1,
        "stdout is the digest alone: {}",
        out.stdout
    );
    assert_eq!(
        fs::read_to_string(&log).unwrap(),
        "build --release --locked -p talext\n"
    );
    // `oci:out/tailscale:1.102.5` with its receipt beside it.
    let layout = root.join("out/tailscale");
    let index = read_json(&layout.join("index.json"));
    let tagged: Vec<&Value> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["annotations"][REF_NAME] == "1.102.5")
        .collect();
    assert_eq!(tagged.len(), 1, "{index}");
    assert_eq!(tagged[0]["digest"], json!(digest));
    let receipt = read_json(&root.join("out/tailscale.receipt.json"));
    assert!(receipt.to_string().contains(digest), "{receipt}");
    assert_eq!(platforms(&layout, digest).len(), 2);
    assert!(
        out.stderr.contains("receipt: out/tailscale.receipt.json"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("STAND-IN"), "{}", out.stderr);

    // Any `--output` form, given as the argument; the same source gives the same digest.
    let archive = work.path().join("elsewhere/tailscale.tar");
    fs::create_dir_all(archive.parent().unwrap()).unwrap();
    let out = run(&[&format!("oci-archive:{}:1.102.5", archive.display())]);
    if out.code != Some(0) {
        out.fail("expected exit code 0");
    }
    assert_eq!(out.stdout.trim(), digest);
    assert!(archive.is_file());
}
