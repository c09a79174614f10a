//! Helpers for the `talext build` tests: running a build, finding each platform's image
//! through the printed index digest, reading layers as the imager flattens them, and checking
//! what Talos reads from `manifest.yaml` and the service definition.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use talext_kit::payload::ARCHES;
use talext_kit::schema::{blob_path, read_json, MEDIA_INDEX, MEDIA_MANIFEST};
use talext_kit::tools::{self, list_tree, read_tar, Cmd, Node, Outcome, TarEntry};

pub const BIN: &str = env!("CARGO_BIN_EXE_talext");
pub const TAG: &str = "1.102.5";
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The payload's place in the extension (`extension/tailscale/extension.yaml`).
pub const PAYLOAD_ROOT: &str = "rootfs/usr/local/lib/containers/tailscale";
pub const SERVICE: &str = "rootfs/usr/local/etc/containers/tailscale.yaml";
pub const SBOM: &str = "rootfs/usr/local/share/spdx/tailscale.spdx.json";

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn tailscale_def() -> PathBuf {
    repo().join("extension/tailscale")
}

/// `talext build extension/tailscale --source tailscale=SOURCE --output OUTPUT`.
pub fn build(source: &Path, output: &str) -> Cmd {
    tools::talext(BIN)
        .arg("build")
        .arg(tailscale_def())
        .arg("--source")
        .arg(format!("tailscale={}", source.display()))
        .args(["--output", output])
}

/// [`build`] again without the layer cache, in another environment (see
/// [`tools::talext_elsewhere`]: other cwd, TMPDIR, umask, locale, time zone, one CPU), with
/// `scratch` for its working directories.
pub fn build_elsewhere(source: &Path, output: &str, scratch: &Path) -> Cmd {
    tools::talext_elsewhere(BIN, scratch)
        .arg("build")
        .arg(tailscale_def())
        .arg("--source")
        .arg(format!("tailscale={}", source.display()))
        .args(["--output", output, "--no-cache"])
}

/// The bytes of every file under `dir` (blobs, `index.json`, `oci-layout`) by relative path.
pub fn bytes_of(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    files_of(dir)
        .into_iter()
        .filter_map(|(path, node)| match node {
            Node::File { data, .. } => Some((path, data)),
            _ => None,
        })
        .collect()
}

/// The digest a successful build printed; stdout must hold that and nothing else.
pub fn printed_digest(out: &Outcome) -> String {
    let digest = out.stdout.strip_suffix('\n').unwrap_or(&out.stdout);
    let hex = digest.strip_prefix("sha256:").unwrap_or("");
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        out.fail("stdout must be exactly `sha256:<64 lowercase hex>`");
    }
    digest.to_owned()
}

pub fn oci(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

/// One platform image of a layout, found through the index the build printed.
pub struct Image {
    pub manifest_digest: String,
    pub manifest: Value,
    pub config: Value,
}

/// The index blob `digest` of `layout` and its image for each platform, keyed by architecture.
pub fn images(layout: &Path, digest: &str) -> BTreeMap<String, Image> {
    let index = read_json(&blob_path(layout, digest));
    assert_eq!(
        index["mediaType"], MEDIA_INDEX,
        "the printed digest names an image index"
    );
    let mut out = BTreeMap::new();
    for desc in index["manifests"].as_array().expect("index manifests") {
        assert_eq!(desc["mediaType"], MEDIA_MANIFEST, "index entry {desc}");
        assert_eq!(desc["platform"]["os"], "linux", "index entry {desc}");
        let arch = desc["platform"]["architecture"]
            .as_str()
            .expect("architecture")
            .to_owned();
        let manifest_digest = desc["digest"].as_str().expect("digest").to_owned();
        let manifest = read_json(&blob_path(layout, &manifest_digest));
        let config = read_json(&blob_path(
            layout,
            manifest["config"]["digest"].as_str().unwrap(),
        ));
        let previous = out.insert(
            arch.clone(),
            Image {
                manifest_digest,
                manifest,
                config,
            },
        );
        assert!(previous.is_none(), "two index entries for `{arch}`");
    }
    out
}

/// The image's filesystem as the imager flattens it: layers applied in order, later paths win.
pub fn flattened(layout: &Path, image: &Image) -> Vec<TarEntry> {
    let mut by_path: BTreeMap<String, TarEntry> = BTreeMap::new();
    for layer in image.manifest["layers"].as_array().expect("layers") {
        let bytes = fs::read(blob_path(layout, layer["digest"].as_str().unwrap())).unwrap();
        for entry in read_tar(&bytes) {
            let path = tools::clean_path(&entry.path).to_owned();
            assert!(
                !path.rsplit('/').next().unwrap_or("").starts_with(".wh."),
                "whiteout `{path}`"
            );
            by_path.insert(path, entry);
        }
    }
    by_path.into_values().collect()
}

/// Everything the layer tarballs of `image` must satisfy for Talos, whatever the payload.
pub fn assert_layers_fit_talos(layout: &Path, image: &Image, epoch: u64) {
    for layer in image.manifest["layers"].as_array().expect("layers") {
        let digest = layer["digest"].as_str().unwrap();
        let entries = read_tar(&fs::read(blob_path(layout, digest)).unwrap());
        let mut seen = BTreeSet::new();
        for e in &entries {
            let path = tools::clean_path(&e.path);
            // An image root holds exactly `manifest.yaml` and `rootfs` (Talos `extensions/load.go`).
            let top = path.split('/').next().unwrap();
            assert!(
                top == "manifest.yaml" || top == "rootfs",
                "`{path}` outside the extension layout"
            );
            assert!(
                seen.insert(path.to_owned()),
                "`{path}` appears twice in layer `{digest}`"
            );
            assert_eq!((e.uid, e.gid), (0, 0), "`{path}` must be owned by 0:0");
            assert_eq!(e.mtime, epoch, "mtime of `{path}`");
            // Talos's untar turns a tar hard link into an empty file (`pkg/archiver/untar.go`).
            assert_ne!(
                e.kind, b'1',
                "`{path}` is a hard link; Talos would unpack it empty"
            );
            assert!(
                matches!(e.kind, b'0' | b'2' | b'5'),
                "`{path}` has tar type `{}`",
                e.kind as char
            );
        }
    }
}

pub fn rfc3339(epoch: u64) -> &'static str {
    match epoch {
        0 => "1970-01-01T00:00:00Z",
        1_700_000_000 => "2023-11-14T22:13:20Z",
        other => panic!("no fixed text for epoch {other}"),
    }
}

pub fn files_of(dir: &Path) -> BTreeMap<String, Node> {
    list_tree(dir)
        .into_iter()
        .filter(|(_, node)| !matches!(node, Node::Dir { .. }))
        .collect()
}

pub fn check_manifest_yaml(path: &Path) {
    let text = fs::read_to_string(path).unwrap();
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("manifest.yaml: {e}\n{text}"));
    // Contract §1: `version` must be exactly `v1alpha1`; the rest is what the definition says.
    assert_eq!(doc["version"].as_str(), Some("v1alpha1"), "{text}");
    assert_eq!(
        doc["metadata"]["name"].as_str(),
        Some("tailscale"),
        "{text}"
    );
    assert_eq!(doc["metadata"]["version"].as_str(), Some(TAG), "{text}");
    assert_eq!(
        doc["metadata"]["compatibility"]["talos"]["version"].as_str(),
        Some(">= v1.7.0"),
        "{text}"
    );
}

pub fn check_service(path: &Path) {
    let text =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("reading `{}`: {e}", path.display()));
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("service: {e}\n{text}"));
    assert_eq!(doc["name"].as_str(), Some("tailscale"), "{text}");
    let depends = doc["depends"]
        .as_sequence()
        .unwrap_or_else(|| panic!("`depends` list\n{text}"));
    let has = |key: &str| {
        depends
            .iter()
            .find(|d| !d[key].is_null())
            .map(|d| d[key].clone())
    };
    assert_eq!(
        has("service")
            .and_then(|v| v.as_str().map(str::to_owned))
            .as_deref(),
        Some("cri"),
        "{text}"
    );
    assert_eq!(
        has("configuration").and_then(|v| v.as_bool()),
        Some(true),
        "{text}"
    );
    let network: BTreeSet<String> = has("network")
        .and_then(|v| v.as_sequence().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    for need in ["addresses", "connectivity", "etcfiles"] {
        assert!(
            network.contains(need),
            "network dependency `{need}`\n{text}"
        );
    }

    let container = &doc["container"];
    assert_eq!(
        container["entrypoint"].as_str(),
        Some("/usr/local/bin/containerboot"),
        "{text}"
    );
    let env: BTreeMap<String, String> = container["environment"]
        .as_sequence()
        .unwrap_or_else(|| panic!("`environment` list\n{text}"))
        .iter()
        .map(|v| {
            let (k, v) = v.as_str().unwrap().split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let path: BTreeSet<&str> = env["PATH"].split(':').collect();
    for dir in ["/usr/local/bin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        assert!(path.contains(dir), "PATH lacks `{dir}`\n{text}");
    }
    assert_eq!(env["TS_SOCKET"], "/var/run/tailscale/tailscaled.sock");
    assert_eq!(env["TS_STATE_DIR"], "/var/lib/tailscale");
    assert_eq!(env["TS_USERSPACE"], "false");
    assert_eq!(
        container["security"]["writeableSysfs"].as_bool(),
        Some(true),
        "{text}"
    );

    let mounts = container["mounts"]
        .as_sequence()
        .unwrap_or_else(|| panic!("`mounts` list\n{text}"));
    for (dest, needs) in [
        ("/dev/net/tun", &["rw"][..]),
        ("/var/run/tailscale", &["rw"][..]),
        ("/var/lib/tailscale", &["rw"][..]),
        ("/etc/ssl/certs", &["rbind", "ro"][..]),
    ] {
        let mount = mounts
            .iter()
            .find(|m| m["destination"].as_str() == Some(dest))
            .unwrap_or_else(|| panic!("no mount at `{dest}`\n{text}"));
        assert_eq!(
            mount["source"].as_str(),
            Some(dest),
            "host path = container path\n{text}"
        );
        assert_eq!(mount["type"].as_str(), Some("bind"), "{text}");
        let options: BTreeSet<&str> = mount["options"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|o| o.as_str())
            .collect();
        for need in needs {
            assert!(
                options.contains(need),
                "mount `{dest}` lacks `{need}`\n{text}"
            );
        }
        assert!(
            options.contains("bind") || options.contains("rbind"),
            "mount `{dest}` is a bind\n{text}"
        );
    }
    assert_eq!(doc["restart"].as_str(), Some("always"), "{text}");
}

/// Copy the committed golden payload with fixed modes, then add what git cannot hold: a hard
/// link and an empty directory.
pub fn golden_payload(into: &Path) -> PathBuf {
    let fixture = repo().join("tests/fixtures/golden/payload");
    for arch in ARCHES {
        let from = fixture.join(arch);
        let to = into.join(arch);
        fs::create_dir_all(&to).unwrap();
        for (path, node) in list_tree(&from) {
            let target = to.join(&path);
            match node {
                Node::Dir { .. } => fs::create_dir_all(&target).unwrap(),
                Node::File { mode, data } => {
                    fs::create_dir_all(target.parent().unwrap()).unwrap();
                    fs::write(&target, data).unwrap();
                    let mode = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
                    fs::set_permissions(&target, fs::Permissions::from_mode(mode)).unwrap();
                }
                Node::Symlink { target: link } => {
                    fs::create_dir_all(target.parent().unwrap()).unwrap();
                    std::os::unix::fs::symlink(link, &target).unwrap();
                }
                Node::Other => panic!("unexpected node `{path}` in the golden fixture"),
            }
        }
        fs::hard_link(
            to.join("usr/local/bin/golden"),
            to.join("usr/local/bin/golden-hardlink"),
        )
        .unwrap();
        fs::create_dir_all(to.join("var/lib/golden")).unwrap();
        for (path, node) in list_tree(&to) {
            if let Node::Dir { .. } = node {
                fs::set_permissions(to.join(path), fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
        fs::set_permissions(&to, fs::Permissions::from_mode(0o755)).unwrap();
    }
    into.join("{arch}")
}
