//! `talext imager-profile`: a build receipt pins the extension by its index digest, local
//! outputs become `ociPath` / `tarballPath`, and sources the imager cannot read are refused.

use std::path::{Path, PathBuf};
use std::process::Output;

fn talext(args: &[&str]) -> Output {
    talext_kit::tools::command(env!("CARGO_BIN_EXE_talext"))
        .args(args)
        .output()
        .expect("run talext")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn hex(c: char) -> String {
    std::iter::repeat_n(c, 64).collect()
}

fn receipt(dir: &Path, output: &str, reference: Option<&str>, arches: &[&str]) -> PathBuf {
    let platforms: Vec<serde_json::Value> = arches
        .iter()
        .map(|a| serde_json::json!({"os": "linux", "architecture": a, "digest": format!("sha256:{}", hex('1'))}))
        .collect();
    let v = serde_json::json!({
        "name": "tailscale", "version": "1.102.5", "output": output,
        "reference": reference, "digest": format!("sha256:{}", hex('c')), "platforms": platforms,
    });
    let p = dir.join(format!("receipt-{}.json", arches.join("-")));
    std::fs::write(&p, v.to_string()).unwrap();
    p
}

fn profile(args: &[&str]) -> serde_yaml::Value {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("profile.yaml");
    let mut all = vec![
        "imager-profile",
        "--talos-version",
        "v1.11.5",
        "-o",
        out.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let o = talext(&all);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.stdout.is_empty());
    serde_yaml::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
}

fn plain_tar(dir: &Path) -> PathBuf {
    let p = dir.join("tailscale.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&p).unwrap());
    for (name, data) in [
        ("manifest.yaml", &b"version: v1alpha1\n"[..]),
        ("rootfs/usr/local/x", &b"x"[..]),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
    }
    b.finish().unwrap();
    p
}

#[test]
fn receipt_pins_the_built_index_digest() {
    let dir = tempfile::tempdir().unwrap();
    let r = receipt(
        dir.path(),
        "docker://127.0.0.1:5000/talos/tailscale:1.102.5",
        Some(&format!(
            "127.0.0.1:5000/talos/tailscale:1.102.5@sha256:{}",
            hex('c')
        )),
        &["amd64", "arm64"],
    );
    for arch in ["amd64", "arm64"] {
        let p = profile(&["--arch", arch, "--receipt", r.to_str().unwrap()]);
        assert_eq!(p["arch"], arch);
        assert_eq!(p["version"], "v1.11.5");
        assert_eq!(p["output"]["kind"], "installer");
        assert_eq!(
            p["input"]["baseInstaller"]["imageRef"],
            "ghcr.io/siderolabs/installer-base:v1.11.5"
        );
        assert_eq!(
            p["input"]["systemExtensions"][0]["imageRef"],
            format!("127.0.0.1:5000/talos/tailscale@sha256:{}", hex('c'))
        );
        assert_eq!(
            p["input"]["kernel"]["path"],
            format!("/usr/install/{arch}/vmlinuz")
        );
    }
}

#[test]
fn receipt_without_the_arch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let r = receipt(
        dir.path(),
        "docker://r/x:1",
        Some(&format!("r/x:1@sha256:{}", hex('c'))),
        &["amd64"],
    );
    let o = talext(&[
        "imager-profile",
        "--talos-version",
        "v1.11.5",
        "--arch",
        "arm64",
        "--receipt",
        r.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("linux/arm64"));
}

#[test]
fn tarball_points_at_a_tar_output() {
    let dir = tempfile::tempdir().unwrap();
    let tar = plain_tar(dir.path());
    let p = profile(&["--tarball", tar.to_str().unwrap()]);
    assert_eq!(
        p["input"]["systemExtensions"][0]["tarballPath"],
        tar.to_str().unwrap()
    );
    assert!(p["input"]["systemExtensions"][0].get("imageRef").is_none());

    let r = receipt(
        dir.path(),
        &format!("tar:{}", tar.display()),
        None,
        &["amd64"],
    );
    let p = profile(&["--receipt", r.to_str().unwrap(), "--output-kind", "iso"]);
    assert_eq!(
        p["input"]["systemExtensions"][0]["tarballPath"],
        tar.to_str().unwrap()
    );
    assert_eq!(p["output"]["kind"], "iso");
    assert_eq!(p["output"]["outFormat"], "raw");
}

#[test]
fn compressed_tarballs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("x.tar.gz");
    std::fs::write(&gz, [0x1f, 0x8b, 8, 0, 0, 0, 0, 0]).unwrap();
    let o = talext(&[
        "imager-profile",
        "--talos-version",
        "v1.11.5",
        "--tarball",
        gz.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("gzip"));
}

#[test]
fn oci_layouts_need_platform_entries() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    std::fs::create_dir(&layout).unwrap();
    let index = |platform: bool| {
        let mut d = serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{}", hex('d')), "size": 1});
        if platform {
            d["platform"] = serde_json::json!({"os": "linux", "architecture": "amd64"});
        }
        serde_json::json!({"schemaVersion": 2, "manifests": [d]}).to_string()
    };
    std::fs::write(layout.join("index.json"), index(false)).unwrap();
    let o = talext(&[
        "imager-profile",
        "--talos-version",
        "v1.11.5",
        "--oci-path",
        layout.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("linux/amd64"));
    std::fs::write(layout.join("index.json"), index(true)).unwrap();
    let p = profile(&["--oci-path", layout.to_str().unwrap()]);
    assert_eq!(
        p["input"]["systemExtensions"][0]["ociPath"],
        layout.to_str().unwrap()
    );
    let r = receipt(
        dir.path(),
        &format!("oci:{}:1.102.5", layout.display()),
        None,
        &["amd64"],
    );
    let p = profile(&["--receipt", r.to_str().unwrap()]);
    assert_eq!(
        p["input"]["systemExtensions"][0]["ociPath"],
        layout.to_str().unwrap()
    );
}

#[test]
fn unpinned_images_need_consent_and_insecure_is_forwarded() {
    let o = talext(&[
        "imager-profile",
        "--talos-version",
        "v1.11.5",
        "--image",
        "r.example/x:1.0",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let p = profile(&[
        "--image",
        "r.example/x:1.0",
        "--allow-unpinned",
        "--insecure",
    ]);
    assert_eq!(
        p["input"]["systemExtensions"][0]["imageRef"],
        "r.example/x:1.0"
    );
    assert_eq!(p["input"]["systemExtensions"][0]["forceInsecure"], true);
    assert_eq!(p["input"]["baseInstaller"]["forceInsecure"], true);
    let p = profile(&[
        "--image",
        &format!("r.example/x@sha256:{}", hex('e')),
        "--output-kind",
        "image",
    ]);
    assert_eq!(p["output"]["imageOptions"]["diskSize"], 1306525696u64);
    // The built-in `metal` profile's format (`pkg/imager/profile/default.go`, `.zst` from v1.8).
    assert_eq!(p["output"]["outFormat"], ".zst");
}

fn pinned() -> String {
    format!("r.example/x@sha256:{}", hex('e'))
}

#[test]
fn uki_and_cmdline_output_kinds() {
    for kind in ["uki", "cmdline"] {
        let p = profile(&["--image", &pinned(), "--output-kind", kind]);
        assert_eq!(p["output"]["kind"], kind);
        assert_eq!(p["output"]["outFormat"], "raw");
        assert_eq!(p["secureboot"], false);
        assert!(p["output"].get("imageOptions").is_none());
    }
    // Before v1.10 the imager builds a UKI only with secure boot (`pkg/imager/imager.go`).
    let o = talext(&[
        "imager-profile",
        "--talos-version",
        "v1.9.3",
        "--image",
        &pinned(),
        "--output-kind",
        "uki",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("builds a UKI only with secure boot"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = talext(&[
        "imager-profile",
        "--talos-version",
        "v1.9.3",
        "--image",
        &pinned(),
        "--output-kind",
        "cmdline",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn metal_image_format_follows_the_release() {
    let image = |version: &str, platform: &str| {
        let o = talext(&[
            "imager-profile",
            "--talos-version",
            version,
            "--talos-platform",
            platform,
            "--image",
            &pinned(),
            "--output-kind",
            "image",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let p: serde_yaml::Value = serde_yaml::from_slice(&o.stdout).unwrap();
        (
            p["output"]["outFormat"].as_str().unwrap().to_string(),
            p["input"]["baseInstaller"]["imageRef"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    };
    assert_eq!(
        image("v1.14.0", "metal"),
        (
            ".zst".into(),
            "ghcr.io/siderolabs/installer-base:v1.14.0".into()
        )
    );
    assert_eq!(
        image("v1.7.6", "metal"),
        (".xz".into(), "ghcr.io/siderolabs/installer:v1.7.6".into())
    );
    assert_eq!(image("v1.12.0", "nocloud").0, ".xz");
}

#[test]
fn committed_profile_matches_its_receipt() {
    let m = repo().join("manifests/imager");
    let o = talext(&[
        "imager-profile",
        "--talos-version",
        "v1.11.5",
        "--receipt",
        m.join("tailscale.receipt.json").to_str().unwrap(),
        "--base-installer",
        "registry.example.com/siderolabs/installer-base:v1.11.5",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        std::fs::read_to_string(m.join("installer.yaml")).unwrap()
    );
}

/// A flat image cache holding only `installer`'s tag entry and a (sparse) blob of `size` bytes.
fn flat_cache(dir: &Path, installer: &str, size: u64) -> PathBuf {
    let cache = dir.join("cache");
    let (repo, tag) = installer.rsplit_once(':').unwrap();
    let entry = cache.join("manifests").join(repo).join("reference");
    std::fs::create_dir_all(&entry).unwrap();
    std::fs::write(entry.join(tag), b"{}").unwrap();
    std::fs::create_dir_all(cache.join("blob")).unwrap();
    std::fs::File::create(cache.join("blob/sha256-00"))
        .unwrap()
        .set_len(size)
        .unwrap();
    cache
}

#[test]
fn image_cache_machine_config_follows_the_release() {
    let dir = tempfile::tempdir().unwrap();
    let tar = plain_tar(dir.path());
    // 700 MiB of cache: more than Talos's default 500 MiB minimum.
    let cache = flat_cache(
        dir.path(),
        "ghcr.io/siderolabs/installer-base:v1.13.0",
        700 << 20,
    );
    let machine = dir.path().join("machine.yaml");
    let run = |version: &str| {
        talext(&[
            "imager-profile",
            "--talos-version",
            version,
            "--tarball",
            tar.to_str().unwrap(),
            "--image-cache",
            cache.to_str().unwrap(),
            "--base-installer",
            "ghcr.io/siderolabs/installer-base:v1.13.0",
            "--machine-config",
            machine.to_str().unwrap(),
        ])
    };
    let o = run("v1.13.0");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&machine).unwrap();
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    assert_eq!(docs.len(), 2, "{text}");
    assert_eq!(
        docs[0]["machine"]["features"]["imageCache"]["localEnabled"].as_bool(),
        Some(true),
        "{text}"
    );
    assert_eq!(docs[1]["kind"], "VolumeConfig");
    assert_eq!(docs[1]["name"], "IMAGECACHE");
    // 700 MiB and the 2-byte manifest, + a tenth + 64 MiB, rounded up to a MiB; twice that.
    assert_eq!(docs[1]["provisioning"]["minSize"], "835MiB");
    assert_eq!(docs[1]["provisioning"]["maxSize"], "1670MiB");
    let lint = talext(&[
        "config",
        "lint",
        "--talos-version",
        "v1.13.0",
        machine.to_str().unwrap(),
    ]);
    assert!(
        lint.status.success(),
        "{}",
        String::from_utf8_lossy(&lint.stdout)
    );

    // Talos v1.8 has no image cache: refused, and nothing written.
    std::fs::remove_file(&machine).unwrap();
    let o = run("v1.8.4");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("has no image cache"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!machine.exists());
}

#[test]
fn schematic_adds_the_factory_virtual_extension() {
    let dir = tempfile::tempdir().unwrap();
    let tar = plain_tar(dir.path());
    let schematic = dir.path().join("schematic.yaml");
    // JSON is YAML: the ID is the canonical YAML's, whatever the spelling.
    std::fs::write(
        &schematic,
        r#"{"customization": {"systemExtensions": {"officialExtensions": ["siderolabs/tailscale"]}}}"#,
    )
    .unwrap();
    let id = "4a0d65c669d46663f377e7161e50cfd570c401f26fd9e7bda34a0216b6f1922b";
    let ext = dir.path().join("ext/schematic.tar");
    std::fs::create_dir_all(ext.parent().unwrap()).unwrap();
    let out = dir.path().join("profile.yaml");
    let o = talext(&[
        "imager-profile",
        "--talos-version",
        "v1.13.0",
        "--tarball",
        tar.to_str().unwrap(),
        "--schematic",
        schematic.to_str().unwrap(),
        "--schematic-tarball",
        ext.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("factory.talos.dev/installer/{id}:v1.13.0")),
        "{stderr}"
    );
    let p: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let exts = p["input"]["systemExtensions"].as_sequence().unwrap();
    assert_eq!(exts.len(), 2);
    assert_eq!(exts[1]["tarballPath"].as_str(), Some(ext.to_str().unwrap()));

    // The tar holds the manifest and the marker file the factory writes.
    let mut archive = tar::Archive::new(std::fs::File::open(&ext).unwrap());
    let mut manifest = String::new();
    let mut names = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        if name == "manifest.yaml" {
            std::io::Read::read_to_string(&mut entry, &mut manifest).unwrap();
        }
        names.push(name);
    }
    assert!(
        names.contains(&format!("rootfs/usr/local/share/schematic/{id}")),
        "{names:?}"
    );
    let m: serde_yaml::Value = serde_yaml::from_str(&manifest).unwrap();
    assert_eq!(m["version"], "v1alpha1");
    assert_eq!(m["metadata"]["name"], "schematic");
    assert_eq!(m["metadata"]["version"].as_str(), Some(id));
    assert_eq!(
        m["metadata"]["compatibility"]["talos"]["version"],
        ">= 1.0.0"
    );
    assert_eq!(
        m["metadata"]["extraInfo"].as_str(),
        Some("customization:\n    systemExtensions:\n        officialExtensions:\n            - siderolabs/tailscale\n")
    );
    // Talos's rules for v1.13 accept it; only the extensions repository's version format, which
    // Talos does not apply and the factory's own extension does not meet either, is reported.
    let v = talext(&[
        "validate",
        &format!("tar:{}", ext.display()),
        "--talos-version",
        "v1.13.0",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    let subject = &report["subjects"][0];
    let rules: Vec<&str> = subject["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["version-format"], "{report}");
    assert_eq!(subject["targets"][0]["constraint"], "satisfied", "{report}");
    assert_eq!(subject["targets"][0]["errors"], 0, "{report}");
}

#[test]
fn json_carries_the_profile_and_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let r = receipt(
        dir.path(),
        "docker://127.0.0.1:5000/talos/tailscale:1.102.5",
        Some(&format!(
            "127.0.0.1:5000/talos/tailscale:1.102.5@sha256:{}",
            hex('c')
        )),
        &["amd64"],
    );
    let args = [
        "imager-profile",
        "--talos-version",
        "v1.11.5",
        "--arch",
        "amd64",
        "--receipt",
        r.to_str().unwrap(),
    ];
    // On stdout: the same profile as the YAML, as JSON, with nothing written.
    let yaml = talext(&args);
    assert!(
        yaml.status.success(),
        "{}",
        String::from_utf8_lossy(&yaml.stderr)
    );
    let yaml: serde_json::Value = serde_yaml::from_slice(&yaml.stdout).unwrap();
    let mut with_json = args.to_vec();
    with_json.push("--json");
    let o = talext(&with_json);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["profile"], yaml);
    assert_eq!(v["output"], serde_json::Value::Null);
    assert_eq!(v["schematic"], serde_json::Value::Null);
    // With `--output`, the file holds the YAML and the JSON names it.
    let file = dir.path().join("profile.yaml");
    with_json.extend(["-o", file.to_str().unwrap()]);
    let o = talext(&with_json);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["output"], file.to_str().unwrap());
    let written: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(written, yaml);
}
