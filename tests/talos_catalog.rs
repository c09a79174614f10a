//! `talext catalog build`: the catalog image, read back with skopeo, holds `image-digests` lines
//! `registry/repo:tag@sha256:…` and a `descriptions.yaml` keyed by exactly those lines; an
//! existing catalog is merged by extension name.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn talext(args: &[&str]) -> Output {
    talext_kit::tools::command(env!("CARGO_BIN_EXE_talext"))
        .args(args)
        .output()
        .expect("run talext")
}

fn official() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/catalog/official")
}

fn receipt(dir: &Path) -> PathBuf {
    let h: String = std::iter::repeat_n('c', 64).collect();
    let v = serde_json::json!({
        "name": "tailscale", "version": "1.102.5",
        "output": "docker://127.0.0.1:5000/siderolabs/tailscale:1.102.5",
        "reference": format!("127.0.0.1:5000/siderolabs/tailscale:1.102.5@sha256:{h}"),
        "digest": format!("sha256:{h}"),
        "platforms": [{"os": "linux", "architecture": "amd64", "digest": format!("sha256:{h}")}],
    });
    let p = dir.join("receipt.json");
    std::fs::write(&p, v.to_string()).unwrap();
    p
}

/// `registry/repo:tag@sha256:<64 hex>`.
fn is_catalog_line(l: &str) -> bool {
    let Some((name, digest)) = l.rsplit_once('@') else {
        return false;
    };
    let hex = digest.strip_prefix("sha256:").unwrap_or("");
    let (repo, tag) = name.rsplit_once(':').unwrap_or(("", ""));
    hex.len() == 64
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
        && repo.contains('/')
        && !tag.is_empty()
        && !tag.contains('/')
}

fn check_catalog(digests: &str, descriptions: &str) -> Vec<String> {
    let lines: Vec<String> = digests.lines().map(String::from).collect();
    assert!(!lines.is_empty());
    for l in &lines {
        assert!(is_catalog_line(l), "bad line {l:?}");
    }
    let map: BTreeMap<String, BTreeMap<String, String>> =
        serde_yaml::from_str(descriptions).unwrap();
    assert_eq!(map.keys().cloned().collect::<Vec<_>>(), {
        let mut l = lines.clone();
        l.sort();
        l
    });
    for v in map.values() {
        assert!(
            v.contains_key("author") && v.contains_key("description"),
            "{v:?}"
        );
    }
    lines
}

/// Copy the image with skopeo to a `dir:` and untar its single layer.
fn unpack(src: &str, arch: &str, dest: &Path) -> BTreeMap<String, Vec<u8>> {
    let o = Command::new("skopeo")
        .args([
            "--override-os",
            "linux",
            "--override-arch",
            arch,
            "copy",
            src,
        ])
        .arg(format!("dir:{}", dest.display()))
        .output()
        .expect("skopeo");
    assert!(
        o.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dest.join("manifest.json")).unwrap()).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    let hex = layers[0]["digest"]
        .as_str()
        .unwrap()
        .strip_prefix("sha256:")
        .unwrap();
    let gz = std::fs::File::open(dest.join(hex)).unwrap();
    let mut files = BTreeMap::new();
    let mut ar = tar::Archive::new(flate2::read::MultiGzDecoder::new(gz));
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        assert_eq!(e.header().mode().unwrap() & 0o777, 0o644, "{path}");
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        files.insert(path, data);
    }
    files
}

#[test]
fn oci_layout_catalog_unpacks_to_the_two_files() {
    let tmp = tempfile::tempdir().unwrap();
    let r = receipt(tmp.path());
    let layout = tmp.path().join("catalog");
    let o = talext(&[
        "catalog",
        "build",
        "--receipt",
        r.to_str().unwrap(),
        "--merge",
        official().to_str().unwrap(),
        "-o",
        &format!("oci:{}:v1.11.5", layout.display()),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let digest = String::from_utf8(o.stdout).unwrap();
    assert!(digest.trim().starts_with("sha256:"), "{digest}");
    for arch in ["amd64", "arm64"] {
        let files = unpack(
            &format!("oci:{}:v1.11.5", layout.display()),
            arch,
            &tmp.path().join(arch),
        );
        assert_eq!(
            files.keys().cloned().collect::<Vec<_>>(),
            vec!["descriptions.yaml", "image-digests"]
        );
        let lines = check_catalog(
            std::str::from_utf8(&files["image-digests"]).unwrap(),
            std::str::from_utf8(&files["descriptions.yaml"]).unwrap(),
        );
        // The official tailscale line is replaced by ours; gvisor is kept.
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("ghcr.io/siderolabs/gvisor:20250505.0@sha256:"));
        assert!(lines[1].starts_with("127.0.0.1:5000/siderolabs/tailscale:1.102.5@sha256:ccc"));
    }
}

#[test]
fn archive_and_directory_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let r = receipt(tmp.path());
    let archive = tmp.path().join("catalog.tar");
    let o = talext(&[
        "catalog",
        "build",
        "--receipt",
        r.to_str().unwrap(),
        "-o",
        &format!("oci-archive:{}:v1.11.5", archive.display()),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let files = unpack(
        &format!("oci-archive:{}:v1.11.5", archive.display()),
        "amd64",
        &tmp.path().join("a"),
    );
    let lines = check_catalog(
        std::str::from_utf8(&files["image-digests"]).unwrap(),
        std::str::from_utf8(&files["descriptions.yaml"]).unwrap(),
    );
    assert_eq!(lines.len(), 1);

    let dir = tmp.path().join("dir");
    let line = format!(
        "registry.example.com/acme/zfs:2.4.3-v1.11.5@sha256:{}",
        "d".repeat(64)
    );
    let o = talext(&[
        "catalog",
        "build",
        "--image",
        &line,
        "--description",
        "ZFS",
        "--merge",
        official().to_str().unwrap(),
        "-o",
        &format!("dir:{}", dir.display()),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines = check_catalog(
        &std::fs::read_to_string(dir.join("image-digests")).unwrap(),
        &std::fs::read_to_string(dir.join("descriptions.yaml")).unwrap(),
    );
    assert_eq!(lines.len(), 3);
    assert!(lines.contains(&line));
    // The directory form is itself a valid `--merge` input and round-trips.
    let again = tmp.path().join("again");
    let o = talext(&[
        "catalog",
        "build",
        "--image",
        &line,
        "--description",
        "ZFS",
        "--merge",
        dir.to_str().unwrap(),
        "-o",
        &format!("dir:{}", again.display()),
    ]);
    assert!(o.status.success());
    for f in ["image-digests", "descriptions.yaml"] {
        assert_eq!(
            std::fs::read(dir.join(f)).unwrap(),
            std::fs::read(again.join(f)).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn unpinned_or_unregistered_entries_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let o = talext(&[
        "catalog",
        "build",
        "--image",
        "r.example/acme/x:1",
        "-o",
        &format!("dir:{}", tmp.path().display()),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let r = tmp.path().join("tar.json");
    std::fs::write(&r, r#"{"name":"tailscale","version":"1","output":"tar:/x.tar","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","platforms":[]}"#).unwrap();
    let o = talext(&[
        "catalog",
        "build",
        "--receipt",
        r.to_str().unwrap(),
        "-o",
        &format!("dir:{}", tmp.path().display()),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("registry"));
}

#[test]
fn registry_catalog_is_pullable_by_tag() {
    let reg = talext_kit::registry::Registry::plain();
    let tmp = tempfile::tempdir().unwrap();
    let r = receipt(tmp.path());
    let target = reg.docker_ref("siderolabs/extensions:v1.11.5");
    let o = talext(&[
        "catalog",
        "build",
        "--receipt",
        r.to_str().unwrap(),
        "--merge",
        official().to_str().unwrap(),
        "-o",
        &target,
    ]);
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stderr),
        reg.log()
    );
    let digest = String::from_utf8(o.stdout).unwrap();
    let out = tmp.path().join("pulled");
    let o = Command::new("skopeo")
        .args([
            "--override-os",
            "linux",
            "--override-arch",
            "amd64",
            "copy",
            "--src-tls-verify=false",
            &target,
        ])
        .arg(format!("dir:{}", out.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", &target])
        .output()
        .unwrap();
    let raw = o.stdout;
    let hex: String = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&raw))
    };
    assert_eq!(format!("sha256:{hex}"), digest.trim());
    let files = unpack(
        &format!("dir:{}", out.display()),
        "amd64",
        &tmp.path().join("again"),
    );
    let lines = check_catalog(
        std::str::from_utf8(&files["image-digests"]).unwrap(),
        std::str::from_utf8(&files["descriptions.yaml"]).unwrap(),
    );
    assert_eq!(lines.len(), 2);
}

/// The factory parses every line with go-containerregistry's `name.NewTag`, which allows only
/// lower-case repositories; one bad line makes it drop the whole catalog, so we refuse it.
#[test]
fn lines_the_factory_cannot_parse_are_refused_by_rule() {
    let tmp = tempfile::tempdir().unwrap();
    let h: String = std::iter::repeat_n('d', 64).collect();
    let line = format!("registry.example.com/Acme/Tail:1.0@sha256:{h}");
    let o = talext(&[
        "catalog",
        "build",
        "--image",
        &line,
        "-o",
        &format!("dir:{}", tmp.path().join("out").display()),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&line), "{err}");
    assert!(err.contains("`Acme/Tail` has `A`"), "{err}");
    assert!(err.contains("lower case"), "{err}");
    assert!(!tmp.path().join("out").exists());

    // In a catalog being merged, the error names the line number.
    let base = tmp.path().join("base");
    std::fs::create_dir(&base).unwrap();
    std::fs::write(
        base.join("image-digests"),
        format!("ghcr.io/siderolabs/gvisor:1@sha256:{h}\n{line}\n"),
    )
    .unwrap();
    let o = talext(&[
        "catalog",
        "build",
        "--image",
        &format!("registry.example.com/acme/tail:1.0@sha256:{h}"),
        "--merge",
        base.to_str().unwrap(),
        "-o",
        &format!("dir:{}", tmp.path().join("out").display()),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("`image-digests` line 2"), "{err}");

    for bad in [
        format!("registry.example.com/acme/tail:@sha256:{h}"),
        format!("registry.example.com/acme/tail:1+2@sha256:{h}"),
        format!(
            "registry.example.com/acme/tail:1@sha256:{}",
            h.to_uppercase()
        ),
        format!("registry.example.com:port/acme/tail:1@sha256:{h}"),
    ] {
        let o = talext(&[
            "catalog",
            "build",
            "--image",
            &bad,
            "-o",
            &format!("dir:{}", tmp.path().join("out").display()),
        ]);
        assert_eq!(o.status.code(), Some(1), "{bad} was accepted");
    }
}

/// A one-component Docker Hub name is `library/<name>` to go-containerregistry, so that is the
/// extension's name in the catalog.
#[test]
fn docker_hub_names_get_their_implicit_namespace() {
    let tmp = tempfile::tempdir().unwrap();
    let h: String = std::iter::repeat_n('e', 64).collect();
    let line = format!("tailscale:1.0@sha256:{h}");
    let dir = tmp.path().join("out");
    let o = talext(&[
        "catalog",
        "build",
        "--image",
        &line,
        "-o",
        &format!("dir:{}", dir.display()),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read_to_string(dir.join("image-digests")).unwrap(),
        format!("{line}\n")
    );
    let descs = std::fs::read_to_string(dir.join("descriptions.yaml")).unwrap();
    assert!(
        descs.contains("library/tailscale system extension"),
        "{descs}"
    );
}

#[test]
fn json_names_the_output_digest_and_every_extension() {
    let tmp = tempfile::tempdir().unwrap();
    let r = receipt(tmp.path());
    let layout = tmp.path().join("catalog");
    let out = format!("oci:{}:v1.11.5", layout.display());
    let o = talext(&[
        "catalog",
        "build",
        "--receipt",
        r.to_str().unwrap(),
        "--merge",
        official().to_str().unwrap(),
        "-o",
        &out,
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["output"], out.as_str());
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(v["digest"], index["manifests"][0]["digest"]);
    let names: Vec<&str> = v["extensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["siderolabs/gvisor", "siderolabs/tailscale"]);
    assert!(v["extensions"][1]["image"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:5000/siderolabs/tailscale:1.102.5@sha256:ccc"));
    // A `dir:` output has no digest.
    let dir = tmp.path().join("files");
    let o = talext(&[
        "catalog",
        "build",
        "--receipt",
        r.to_str().unwrap(),
        "-o",
        &format!("dir:{}", dir.display()),
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["digest"], serde_json::Value::Null);
    assert!(dir.join("image-digests").is_file());
}
