//! The SBOM `talext build` writes into the image, read back out of the layers and checked against
//! independent readers: the SPDX 2.3 JSON schema (`ci/deps.sh` installs it), the stand-in's
//! own apk database, and `go version -m` for every Go binary of the payload.
//!
//! Talos lists an extension's SBOM packages as `SBOMItem` resources keyed by package name
//! (`internal/app/machined/pkg/controllers/runtime/sbom_item.go`, siderolabs/talos
//! v1.14.0-rc.1), so the extension's name must be carried by exactly one package, with the
//! extension's version.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use talext_kit::gobuild;
use talext_kit::payload::{self, ARCHES};
use talext_kit::registry::{self, Registry};
use talext_kit::schema::{self, blob_path, read_json};
use talext_kit::tools::{self, read_tar, Outcome};

const BIN: &str = env!("CARGO_BIN_EXE_talext");
const SBOM: &str = "rootfs/usr/local/share/spdx/tailscale.spdx.json";
const PAYLOAD_ROOT: &str = "/usr/local/lib/containers/tailscale";

fn tailscale_def() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../extension/tailscale")
}

/// `talext build DEF [--source tailscale=SOURCE] --output oci:OUT:TAG` with a private cache.
fn build(def: &Path, source: Option<&str>, out: &Path, cache: &Path) -> Outcome {
    let mut cmd = tools::talext(BIN).arg("build").arg(def);
    if let Some(s) = source {
        cmd = cmd.arg("--source").arg(format!("tailscale={s}"));
    }
    cmd.arg("--output")
        .arg(format!("oci:{}:v1", out.display()))
        .arg("--cache-dir")
        .arg(cache)
        .run()
}

fn ok(o: Outcome) -> String {
    assert_eq!(o.code, Some(0), "{}\n{}", o.line, o.stderr);
    o.stdout.trim().to_string()
}

/// Each platform's SBOM in the layout, by architecture, from the index the build printed.
fn sboms(layout: &Path, digest: &str) -> BTreeMap<String, Value> {
    let index = read_json(&blob_path(layout, digest));
    let mut out = BTreeMap::new();
    for desc in index["manifests"].as_array().expect("manifests") {
        let arch = desc["platform"]["architecture"]
            .as_str()
            .unwrap()
            .to_string();
        let manifest = read_json(&blob_path(layout, desc["digest"].as_str().unwrap()));
        let mut found = None;
        for layer in manifest["layers"].as_array().expect("layers") {
            let bytes = fs::read(blob_path(layout, layer["digest"].as_str().unwrap())).unwrap();
            for e in read_tar(&bytes) {
                if tools::clean_path(&e.path) == SBOM {
                    found = Some(serde_json::from_slice(&e.data).expect("the SBOM is JSON"));
                }
            }
        }
        out.insert(arch, found.expect("the image has an SBOM"));
    }
    out
}

fn packages(sbom: &Value) -> &Vec<Value> {
    sbom["packages"].as_array().expect("packages")
}

fn purl(p: &Value) -> Option<&str> {
    p["externalRefs"]
        .as_array()?
        .iter()
        .find(|r| r["referenceType"] == "purl")
        .and_then(|r| r["referenceLocator"].as_str())
}

/// What `go version -m` says a binary holds, as `(module, version)`: the main module, and each
/// dependency or the module replacing it.
fn modules_of(binary: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (kind, path, version) in gobuild::go_version_m(binary) {
        match kind.as_str() {
            "=>" => *out.last_mut().expect("`=>` after a module") = (path, version),
            _ => out.push((path, version)),
        }
    }
    out
}

#[test]
fn the_sbom_names_the_extension_once_and_lists_the_alpine_packages_and_go_modules() {
    let tmp = tempfile::tempdir().unwrap();
    let standin = payload::tailscale_standin(&tmp.path().join("src"));
    let out = tmp.path().join("out");
    let digest = ok(build(
        &tailscale_def(),
        Some(&standin.display().to_string()),
        &out,
        &tmp.path().join("cache"),
    ));
    let by_arch = sboms(&out, &digest);
    assert_eq!(by_arch.keys().cloned().collect::<Vec<_>>(), ARCHES);

    for arch in ARCHES {
        let sbom = &by_arch[arch];
        schema::assert_valid_spdx(sbom, &format!("the {arch} SBOM"));
        let pkgs = packages(sbom);

        // One package carries the extension's name, with its version; the source does not.
        let named: Vec<&Value> = pkgs.iter().filter(|p| p["name"] == "tailscale").collect();
        assert_eq!(
            named.len(),
            1,
            "{arch}: packages named `tailscale`: {named:?}"
        );
        assert_eq!(named[0]["versionInfo"], "1.102.5");
        assert!(
            pkgs.iter().any(|p| p["name"] == "tailscale-source"),
            "{arch}: the directory source is listed under its own name"
        );

        // The Alpine packages are those of the apk database, with purls.
        let got: BTreeSet<(String, String, String, String)> = pkgs
            .iter()
            .filter(|p| purl(p).is_some_and(|u| u.starts_with("pkg:apk/")))
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_string(),
                    p["versionInfo"].as_str().unwrap().to_string(),
                    p["licenseDeclared"].as_str().unwrap().to_string(),
                    purl(p).unwrap().to_string(),
                )
            })
            .collect();
        let want: BTreeSet<(String, String, String, String)> = payload::APK_PACKAGES
            .iter()
            .map(|(name, version, license, _)| {
                (
                    name.to_string(),
                    version.to_string(),
                    license.to_string(),
                    format!(
                        "pkg:apk/alpine/{name}@{version}?arch={}&distro=alpine-{}",
                        payload::apk_arch(arch),
                        payload::ALPINE_RELEASE
                    ),
                )
            })
            .collect();
        assert_eq!(got, want, "{arch}: Alpine packages");

        // The Go modules are exactly what `go version -m` reports for each binary.
        let tree = payload::arch_tree(&standin, arch);
        let mut want: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for name in payload::TAILSCALE_BINARIES {
            let on_node = format!("{PAYLOAD_ROOT}/usr/local/bin/{name}");
            let modules = modules_of(&tree.join("usr/local/bin").join(name));
            assert!(modules.len() >= 2, "{name}: {modules:?}");
            for m in modules {
                want.entry(m).or_default().insert(on_node.clone());
            }
        }
        let go: Vec<&Value> = pkgs
            .iter()
            .filter(|p| purl(p).is_some_and(|u| u.starts_with("pkg:golang/")))
            .collect();
        let got: BTreeSet<(String, String)> = go
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_string(),
                    p["versionInfo"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            got,
            want.keys().cloned().collect::<BTreeSet<_>>(),
            "{arch}: Go modules"
        );
        for p in &go {
            let (name, version) = (
                p["name"].as_str().unwrap(),
                p["versionInfo"].as_str().unwrap(),
            );
            let expected = match version {
                "(devel)" => format!("pkg:golang/{name}"),
                v => format!("pkg:golang/{name}@{v}"),
            };
            assert_eq!(purl(p), Some(expected.as_str()), "{arch}: purl of `{name}`");
            let comment = p["comment"].as_str().unwrap_or_default();
            for bin in &want[&(name.to_string(), version.to_string())] {
                assert!(
                    comment.contains(&format!("`{bin}`")),
                    "{arch}: `{name}` names `{bin}`: {comment}"
                );
            }
        }
        assert!(
            go.iter().all(|p| p["name"] != "golang.org/x/crypto"),
            "{arch}: a replaced module is listed as its replacement"
        );

        // Every payload package is tied to the extension.
        let top = named[0]["SPDXID"].as_str().unwrap();
        let contained: BTreeSet<&str> = sbom["relationships"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["spdxElementId"] == top && r["relationshipType"] == "CONTAINS")
            .map(|r| r["relatedSpdxElement"].as_str().unwrap())
            .collect();
        assert_eq!(contained.len(), payload::APK_PACKAGES.len() + go.len());
    }
}

/// Point `payload` of the Tailscale definition at `location`, taking the container root of an
/// extension image (the stand-in upstream here is itself a built extension).
fn pinned_definition(dir: &Path, location: &str) -> PathBuf {
    let def = dir.join("def");
    fs::create_dir_all(&def).unwrap();
    fs::copy(
        tailscale_def().join("tailscale.yaml"),
        def.join("tailscale.yaml"),
    )
    .unwrap();
    let text = fs::read_to_string(tailscale_def().join("extension.yaml")).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("location:") {
            out.push_str(&format!("    location: {location}\n"));
        } else if line == "    to: /usr/local/lib/containers/tailscale" {
            out.push_str(line);
            out.push_str("\n    from: rootfs/usr/local/lib/containers/tailscale\n");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    fs::write(def.join("extension.yaml"), out).unwrap();
    def
}

#[test]
fn a_pinned_source_makes_the_same_image_from_a_registry_a_mirror_a_layout_or_an_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let standin = payload::tailscale_standin(&tmp.path().join("src"));
    let upstream = tmp.path().join("upstream");
    ok(build(
        &tailscale_def(),
        Some(&standin.display().to_string()),
        &upstream,
        &cache,
    ));
    let layout = format!("oci:{}:v1", upstream.display());
    let archive = tmp.path().join("upstream.tar");
    tools::skopeo()
        .args(["copy", "--all"])
        .arg(&layout)
        .arg(format!("oci-archive:{}:v1", archive.display()))
        .ok();
    let reg = Registry::plain();
    tools::skopeo()
        .args(["copy", "--all", "--dest-tls-verify=false"])
        .arg(&layout)
        .arg(reg.docker_ref("upstream/tailscale:v1"))
        .ok();
    let pin = registry::sha256(
        tools::skopeo()
            .args(["inspect", "--tls-verify=false", "--raw"])
            .arg(reg.docker_ref("upstream/tailscale:v1"))
            .ok()
            .stdout
            .as_bytes(),
    );
    let reference = format!("{}/upstream/tailscale:v1@{pin}", reg.addr);
    let def = pinned_definition(tmp.path(), &format!("docker://{reference}"));

    let from_registry = ok(build(&def, None, &tmp.path().join("r"), &cache));
    let from_layout = ok(build(&def, Some(&layout), &tmp.path().join("l"), &cache));
    let from_archive = ok(build(
        &def,
        Some(&format!("oci-archive:{}:v1", archive.display())),
        &tmp.path().join("a"),
        &cache,
    ));
    tools::skopeo()
        .args(["copy", "--all", "--dest-tls-verify=false"])
        .arg(&layout)
        .arg(reg.docker_ref("mirror/tailscale:v1"))
        .ok();
    let mirror = format!("docker://{}/mirror/tailscale@{pin}", reg.addr);
    let from_mirror = ok(build(&def, Some(&mirror), &tmp.path().join("m"), &cache));
    assert_eq!(from_mirror, from_registry, "a mirror holding the pin");
    assert_eq!(from_layout, from_registry, "an `oci:` copy of the pin");
    assert_eq!(
        from_archive, from_registry,
        "an `oci-archive:` copy of the pin"
    );

    // The source is recorded as the pinned reference, under the repository's name.
    for (arch, sbom) in &sboms(&tmp.path().join("a"), &from_archive) {
        schema::assert_valid_spdx(sbom, &format!("the {arch} SBOM"));
        let repo = format!("{}/upstream/tailscale", reg.addr);
        let src: Vec<&Value> = packages(sbom)
            .iter()
            .filter(|p| p["name"] == repo.as_str())
            .collect();
        assert_eq!(src.len(), 1, "{arch}: {sbom:#}");
        assert_eq!(src[0]["versionInfo"], "v1");
        let locator = purl(src[0]).unwrap();
        assert!(
            locator.starts_with(&format!("pkg:oci/tailscale@sha256%3A{}?", &pin[7..])),
            "{arch}: {locator}"
        );
        assert_eq!(
            packages(sbom)
                .iter()
                .filter(|p| p["name"] == "tailscale")
                .count(),
            1
        );
    }

    // A copy of another image is recorded as given, not as the pin.
    let other = tmp.path().join("other");
    ok(tools::talext(BIN)
        .arg("build")
        .arg(tailscale_def())
        .arg("--source")
        .arg(format!("tailscale={}", standin.display()))
        .args(["--version", "9.9.9", "--output"])
        .arg(format!("oci:{}:v1", other.display()))
        .arg("--cache-dir")
        .arg(&cache)
        .run());
    let out = tmp.path().join("o");
    let mismatched = build(
        &def,
        Some(&format!("oci:{}:v1", other.display())),
        &out,
        &cache,
    );
    assert!(
        mismatched.stderr.contains("not the definition's pinned"),
        "{}",
        mismatched.stderr
    );
    let digest = ok(mismatched);
    assert_ne!(digest, from_registry);
    for sbom in sboms(&out, &digest).values() {
        assert!(packages(sbom)
            .iter()
            .any(|p| p["name"] == "tailscale-source"));
    }
}

#[test]
fn an_unreadable_go_build_information_fails_the_build_naming_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let standin = payload::tailscale_standin(&tmp.path().join("src"));
    let bin = payload::arch_tree(&standin, "amd64").join("usr/local/bin/containerboot");
    let mut bytes = fs::read(&bin).unwrap();
    let at = bytes
        .windows(14)
        .position(|w| w == b"\xff Go buildinf:")
        .expect("a Go build-information header");
    // The module information's length now runs far past the section.
    let version_len = bytes[at + 32] as usize;
    let len_at = at + 33 + version_len;
    bytes[len_at..len_at + 4].copy_from_slice(&[0xff, 0xff, 0xff, 0x0f]);
    fs::write(&bin, &bytes).unwrap();
    let out = build(
        &tailscale_def(),
        Some(&standin.display().to_string()),
        &tmp.path().join("out"),
        &tmp.path().join("cache"),
    );
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "`{PAYLOAD_ROOT}/usr/local/bin/containerboot`: the Go build information"
        )),
        "{}",
        out.stderr
    );
    assert!(
        !tmp.path().join("out").exists(),
        "a failed build leaves no output"
    );
}

/// `go version -m DIRS…`: each Go binary found (file symlinks followed, as Go does) with its Go
/// version and its `mod`, `dep` and `=>` lines.
type GoView = BTreeMap<PathBuf, (String, Vec<(String, String, String)>)>;

fn go_version_m_dirs(dirs: &[&Path]) -> GoView {
    let out = std::process::Command::new("go")
        .args(["version", "-m"])
        .args(dirs)
        .env("GOENV", "off")
        .output()
        .expect("running `go version -m`");
    let mut view = GoView::new();
    let mut current: Option<PathBuf> = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(rest) = line.strip_prefix('\t') {
            let f: Vec<&str> = rest.split('\t').collect();
            if matches!(f[0], "mod" | "dep" | "=>") {
                let entry = view.get_mut(current.as_ref().expect("a binary line first"));
                entry.expect("a binary").1.push((
                    f[0].to_string(),
                    f.get(1).unwrap_or(&"").to_string(),
                    f.get(2).unwrap_or(&"").trim().to_string(),
                ));
            }
        } else if let Some((path, version)) = line.split_once(": ") {
            current = Some(PathBuf::from(path));
            view.insert(PathBuf::from(path), (version.to_string(), Vec::new()));
        }
    }
    view
}

/// What talext's reader finds in the same directories.
fn talext_view(dirs: &[&Path]) -> GoView {
    use talext::sbom::gobin::{self, FileAt, Found};
    let mut view = GoView::new();
    let mut pending: Vec<PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let link = fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink();
            let Ok(meta) = fs::metadata(&path) else {
                continue;
            };
            if meta.is_dir() && !link {
                pending.push(path);
                continue;
            }
            if !meta.is_file() {
                continue;
            }
            let Ok(file) = fs::File::open(&path) else {
                continue;
            };
            let found = gobin::read(&mut FileAt {
                file,
                size: meta.len(),
            });
            let Ok(Found::Go(info)) = found else {
                continue;
            };
            let mut lines = Vec::new();
            let text = |v: &Option<String>| v.clone().unwrap_or_default();
            if let Some(m) = &info.main {
                lines.push(("mod".to_string(), m.path.clone(), text(&m.version)));
            }
            for d in &info.deps {
                lines.push(("dep".to_string(), d.path.clone(), text(&d.version)));
                if let Some(r) = &d.replace {
                    lines.push(("=>".to_string(), r.path.clone(), text(&r.version)));
                }
            }
            view.insert(path, (info.go_version, lines));
        }
    }
    view
}

#[test]
fn the_go_reader_agrees_with_go_version_on_real_binaries() {
    let tmp = tempfile::tempdir().unwrap();
    let standin = payload::tailscale_standin(&tmp.path().join("src"));
    let amd64 = payload::arch_tree(&standin, "amd64");
    let arm64 = payload::arch_tree(&standin, "arm64");
    // Debian's own Go binaries (built outside module mode), every other ELF file of the system
    // (which must not be taken for Go), and the stand-in's module-mode binaries of both
    // architectures.
    let dirs = [
        Path::new("/usr/bin"),
        Path::new("/usr/sbin"),
        &amd64,
        &arm64,
    ];
    let go = go_version_m_dirs(&dirs);
    let ours = talext_view(&dirs);
    assert!(
        go.keys().filter(|p| p.starts_with(&amd64)).count() >= 3,
        "{go:?}"
    );
    assert!(go.len() >= 6, "docker-registry, skopeo, umoci, go…: {go:?}");
    let only_go: Vec<_> = go.keys().filter(|p| !ours.contains_key(*p)).collect();
    let only_ours: Vec<_> = ours.keys().filter(|p| !go.contains_key(*p)).collect();
    assert!(
        only_go.is_empty() && only_ours.is_empty(),
        "Go binaries only `go version` finds: {only_go:?}; only talext finds: {only_ours:?}"
    );
    for (path, view) in &go {
        assert_eq!(&ours[path], view, "`{}`", path.display());
    }
}
