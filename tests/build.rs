//! `talext build` against independent readers: skopeo and umoci read what it writes, the OCI
//! image-spec JSON schemas check every document, and the layer tarballs are read the way the
//! Talos imager flattens them (`pkg/imager`, go-containerregistry `crane.Export`).
//!
//! Payloads are stand-ins for the upstream `tailscale/tailscale` image built from Debian's static
//! busybox and Go toolchain for both architectures (`talext_kit::payload`); the golden fixture under
//! `tests/fixtures/golden/` pins the digest of a tiny, package-independent build.

use std::collections::BTreeSet;
use std::fs;

use serde_json::Value;
use support::*;
use talext_kit::payload::{self, ARCHES, TAILSCALE_BINARIES};
use talext_kit::schema::{self, blob_path, read_json, MEDIA_INDEX, MEDIA_MANIFEST};
use talext_kit::tools::{self, list_tree, read_tar, Node, TarEntry};

#[path = "build/support.rs"]
mod support;

/// The committed digest of the golden build (`tests/fixtures/golden`, both platforms, epoch 0).
/// Change it only together with a deliberate change to the image format, and say so in the
/// CHANGELOG.
const GOLDEN_DIGEST: &str =
    "sha256:d8da130f3f0c80282303b71de49a9c6d0e1374813870edd5ff7cce305cc2e14c";

#[test]
fn build_is_reproducible_and_follows_source_date_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let source = payload::tailscale_standin(&tmp.path().join("src"));
    let (a, b, c, d) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
        tmp.path().join("d"),
    );

    // The rebuild reads no cache, so it really builds, and runs from another directory with
    // another TMPDIR, umask, locale and time zone on one CPU: nothing of that may reach a byte.
    let first = printed_digest(&build(&source, &oci(&a, TAG)).ok());
    let second = printed_digest(
        &build_elsewhere(&source, &oci(&b, TAG), &tmp.path().join("elsewhere")).ok(),
    );
    assert_eq!(first, second, "two builds of the same input");
    let (bytes_a, bytes_b) = (bytes_of(&a), bytes_of(&b));
    assert_eq!(
        bytes_a.keys().collect::<Vec<_>>(),
        bytes_b.keys().collect::<Vec<_>>(),
        "the two layouts hold the same files"
    );
    for (path, data) in &bytes_a {
        assert!(
            bytes_b[path] == *data,
            "`{path}` differs between the two builds"
        );
    }

    let later = printed_digest(
        &build(&source, &oci(&c, TAG))
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .ok(),
    );
    assert_ne!(later, first, "SOURCE_DATE_EPOCH must change the digest");
    let by_flag = printed_digest(
        &build(&source, &oci(&d, TAG))
            .args(["--source-date-epoch", "1700000000"])
            .ok(),
    );
    assert_eq!(
        by_flag, later,
        "`--source-date-epoch` and `SOURCE_DATE_EPOCH` agree"
    );

    for (layout, digest, epoch) in [(&a, &first, 0), (&c, &later, 1_700_000_000)] {
        let images = images(layout, digest);
        assert_eq!(
            images.keys().map(String::as_str).collect::<Vec<_>>(),
            ARCHES
        );
        for (arch, image) in &images {
            assert_eq!(
                image.config["created"],
                rfc3339(epoch),
                "{arch} config `created`"
            );
            assert_layers_fit_talos(layout, image, epoch);
        }
    }
}

#[test]
fn index_and_layout_are_valid_oci_with_both_platforms() {
    let tmp = tempfile::tempdir().unwrap();
    let source = payload::tailscale_standin(&tmp.path().join("src"));
    let out = tmp.path().join("out");
    let digest = printed_digest(&build(&source, &oci(&out, TAG)).ok());

    // skopeo resolves the tag to the multi-platform index.
    let raw = tools::skopeo_inspect_raw(&oci(&out, TAG));
    assert_eq!(raw["mediaType"], MEDIA_INDEX);
    assert_eq!(raw["schemaVersion"], 2);
    assert_eq!(
        raw,
        read_json(&blob_path(&out, &digest)),
        "the tag names the printed digest"
    );
    let mut platforms: Vec<(String, String)> = raw["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert_eq!(d["mediaType"], MEDIA_MANIFEST);
            (
                d["platform"]["os"].as_str().unwrap().to_owned(),
                d["platform"]["architecture"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    platforms.sort();
    assert_eq!(
        platforms,
        [
            ("linux".into(), "amd64".into()),
            ("linux".into(), "arm64".into())
        ]
    );
    let images = images(&out, &digest);

    // index.json also lists each platform manifest with its platform, because the imager's
    // `ociPath` takes the first top-level entry whose platform matches and skips nested indexes
    // (contract §2.1).
    let top = read_json(&out.join("index.json"));
    let entries = top["manifests"].as_array().unwrap();
    let tagged: Vec<&Value> = entries
        .iter()
        .filter(|d| d["annotations"][REF_NAME] == TAG)
        .collect();
    assert_eq!(tagged.len(), 1, "one entry tagged `{TAG}` in {top}");
    assert_eq!(tagged[0]["digest"], digest.as_str());
    assert_eq!(tagged[0]["mediaType"], MEDIA_INDEX);
    for arch in ARCHES {
        let first = entries
            .iter()
            .find(|d| d["platform"]["os"] == "linux" && d["platform"]["architecture"] == arch)
            .unwrap_or_else(|| panic!("index.json has no entry with platform linux/{arch}: {top}"));
        assert_eq!(first["mediaType"], MEDIA_MANIFEST, "linux/{arch} entry");
        assert_eq!(
            first["digest"],
            images[arch].manifest_digest.as_str(),
            "linux/{arch} entry"
        );
        assert_eq!(images[arch].config["architecture"], arch);
        assert_eq!(images[arch].config["os"], "linux");
    }

    let checked = schema::validate_layout(&out);
    assert_eq!(checked.indexes, vec![digest]);
    assert_eq!(checked.manifests.len(), 2);
    assert_eq!(checked.configs.len(), 2);
}

#[test]
fn each_platform_unpacks_to_the_tailscale_extension() {
    let tmp = tempfile::tempdir().unwrap();
    let source = payload::tailscale_standin(&tmp.path().join("src"));
    let out = tmp.path().join("out");
    let digest = printed_digest(&build(&source, &oci(&out, TAG)).ok());
    let images = images(&out, &digest);

    for arch in ARCHES {
        let single = tmp.path().join(format!("copy-{arch}"));
        tools::skopeo_copy(&oci(&out, TAG), &oci(&single, "x"), Some(arch));
        let copied = read_json(&single.join("index.json"));
        assert_eq!(
            copied["manifests"][0]["digest"],
            images[arch].manifest_digest.as_str(),
            "skopeo picked the {arch} manifest, unchanged"
        );
        let root = tools::umoci_unpack(&single, "x", &tmp.path().join(format!("bundle-{arch}")));
        let top: Vec<String> = fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let top: BTreeSet<String> = top.into_iter().collect();
        assert_eq!(
            top,
            BTreeSet::from(["manifest.yaml".to_owned(), "rootfs".to_owned()]),
            "{arch}: image root"
        );

        check_manifest_yaml(&root.join("manifest.yaml"));
        check_service(&root.join(SERVICE));
        // `iptables` and `ip6tables` first on the service's PATH are the nft backend: Talos
        // kernels from v1.12 have no legacy xtables (the upstream image links the legacy one).
        let croot = root.join(PAYLOAD_ROOT);
        for tool in ["iptables", "ip6tables"] {
            assert_eq!(
                on_service_path(&croot, tool).as_deref(),
                Some("sbin/xtables-nft-multi"),
                "{arch}: `{tool}` on the service PATH"
            );
        }
        let sbom = read_json(&root.join(SBOM));
        assert!(
            sbom["spdxVersion"]
                .as_str()
                .unwrap_or("")
                .starts_with("SPDX-"),
            "{arch}: SBOM {sbom}"
        );

        // The whole source tree arrives under the payload root, and nothing else does, but for
        // the definition's `links`: `iptables` and `ip6tables` repointed at the nft backend.
        let mut expected = list_tree(&payload::arch_tree(&source, arch));
        for link in ["sbin/iptables", "sbin/ip6tables"] {
            let old = expected.insert(
                link.to_string(),
                Node::Symlink {
                    target: "xtables-nft-multi".into(),
                },
            );
            assert!(
                matches!(old, Some(Node::Symlink { .. })),
                "{arch}: `{link}` in the source"
            );
        }
        let got = list_tree(&root.join(PAYLOAD_ROOT));
        let expected_paths: BTreeSet<&String> = expected.keys().collect();
        let got_paths: BTreeSet<&String> = got.keys().collect();
        assert_eq!(got_paths, expected_paths, "{arch}: payload paths");
        for (path, want) in &expected {
            match (want, &got[path]) {
                (Node::File { mode: m1, data: d1 }, Node::File { mode: m2, data: d2 }) => {
                    assert!(d1 == d2, "{arch}: content of `{path}`");
                    assert_eq!(
                        m1 & 0o111 != 0,
                        m2 & 0o111 != 0,
                        "{arch}: executable bit of `{path}`"
                    );
                }
                (Node::Symlink { target: t1 }, Node::Symlink { target: t2 }) => {
                    assert_eq!(t1, t2, "{arch}: target of `{path}`")
                }
                (Node::Dir { .. }, Node::Dir { .. }) => {}
                (w, g) => panic!("{arch}: `{path}` should be {w:?}, is {g:?}"),
            }
        }
        let bin = root.join(PAYLOAD_ROOT).join("usr/local/bin");
        for name in TAILSCALE_BINARIES {
            assert_eq!(
                payload::elf_machine(&bin.join(name)),
                Some(payload::machine_of(arch)),
                "{arch}: {name}"
            );
        }
        // The hard-linked pair arrives as two regular files with the same content.
        let pair = [bin.join("tailscale"), bin.join("tailscaled")];
        for p in &pair {
            assert!(
                fs::symlink_metadata(p).unwrap().file_type().is_file(),
                "`{}`",
                p.display()
            );
        }
        assert!(
            fs::read(&pair[0]).unwrap() == fs::read(&pair[1]).unwrap(),
            "{arch}: tailscale and tailscaled differ"
        );

        // Ownership and times as stored: every entry 0:0 at the epoch, no hard links.
        assert_layers_fit_talos(&out, &images[arch], 0);
        let layer = flattened(&out, &images[arch]);
        for name in ["tailscale", "tailscaled"] {
            let path = format!("{PAYLOAD_ROOT}/usr/local/bin/{name}");
            let e = layer
                .iter()
                .find(|e| tools::clean_path(&e.path) == path)
                .unwrap_or_else(|| panic!("`{path}` in layer"));
            assert_eq!(e.kind, b'0', "`{path}` is a regular file in the layer");
            assert!(!e.data.is_empty(), "`{path}` has content in the layer");
        }
    }
}

#[test]
fn a_foreign_binary_fails_the_build_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let source = payload::tailscale_standin(&tmp.path().join("src"));
    let planted = payload::plant_foreign_elf(&source);
    let planted = planted.to_string_lossy();

    let out = tmp.path().join("out");
    let run = build(&source, &oci(&out, TAG)).fails_with(1);
    assert!(
        run.stderr.contains(&*planted),
        "the error names `{planted}`:\n{}",
        run.stderr
    );
    assert!(
        run.stdout.is_empty(),
        "no digest on failure:\n{}",
        run.stdout
    );
    assert!(!out.exists(), "a failed build left `{}`", out.display());

    for output in [
        format!("oci-archive:{}/x.tar:{TAG}", tmp.path().display()),
        format!("tar:{}/y.tar", tmp.path().display()),
    ] {
        let run = build(&source, &output)
            .args(["--platform", "linux/arm64"])
            .fails_with(1);
        assert!(run.stderr.contains(&*planted), "{}", run.stderr);
    }
    let left: Vec<String> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["src"], "failed builds left files behind");

    // A failed build into an existing layout leaves it exactly as it was.
    let amd64_only = printed_digest(
        &build(&source, &oci(&out, "good"))
            .args(["--platform", "linux/amd64"])
            .ok(),
    );
    let before = list_tree(&out);
    build(&source, &oci(&out, TAG)).fails_with(1);
    assert!(
        list_tree(&out) == before,
        "the failed build changed the existing layout"
    );
    assert_eq!(
        tools::skopeo_inspect_raw(&oci(&out, "good")),
        read_json(&blob_path(&out, &amd64_only))
    );
}

#[test]
fn plain_tar_output_is_what_the_imager_takes_as_tarball_path() {
    let tmp = tempfile::tempdir().unwrap();
    let source = payload::tailscale_standin(&tmp.path().join("src"));
    let tarball = tmp.path().join("tailscale-amd64.tar");
    let layout = tmp.path().join("layout");
    let from_tar = printed_digest(
        &build(&source, &format!("tar:{}", tarball.display()))
            .args(["--platform", "linux/amd64"])
            .ok(),
    );
    let from_oci = printed_digest(
        &build(&source, &oci(&layout, TAG))
            .args(["--platform", "linux/amd64"])
            .ok(),
    );
    // Uncompressed (the imager has no gzip support for `tarballPath`, contract §2.1).
    let bytes = fs::read(&tarball).unwrap();
    assert_eq!(tools::compression_of(&bytes), "none");
    assert_eq!(&bytes[257..262], b"ustar", "a plain tar header first");

    let entries = read_tar(&bytes);
    let top: BTreeSet<&str> = entries
        .iter()
        .map(|e| tools::clean_path(&e.path).split('/').next().unwrap())
        .collect();
    assert_eq!(top, BTreeSet::from(["manifest.yaml", "rootfs"]));
    let mut seen = BTreeSet::new();
    for e in &entries {
        let path = tools::clean_path(&e.path);
        // Untar opens files with exclusive create: a repeated path fails (contract §2.3).
        assert!(seen.insert(path), "`{path}` twice");
        assert_ne!(
            e.kind, b'1',
            "`{path}` is a hard link; the imager would unpack it empty"
        );
        assert_eq!(
            (e.uid, e.gid, e.mtime),
            (0, 0, 0),
            "`{path}` owner and time"
        );
    }

    // The tarball holds the amd64 image's filesystem exactly.
    let images = images(&layout, &from_oci);
    let key = |e: &TarEntry| {
        (
            tools::clean_path(&e.path).to_owned(),
            e.kind,
            e.mode,
            e.link.clone(),
            e.data.clone(),
        )
    };
    let mut in_tar: Vec<_> = entries.iter().map(key).collect();
    let mut in_image: Vec<_> = flattened(&layout, &images["amd64"])
        .iter()
        .map(key)
        .collect();
    in_tar.sort();
    in_image.sort();
    assert!(
        in_tar == in_image,
        "tar output differs from the amd64 image"
    );
    assert_eq!(
        entries
            .iter()
            .find(|e| tools::clean_path(&e.path)
                == "rootfs/usr/local/lib/containers/tailscale/usr/local/bin/tailscaled")
            .map(|e| e.data.len()),
        Some(
            fs::metadata(talext_kit::gobuild::binary("amd64", "tailscaled"))
                .unwrap()
                .len() as usize
        )
    );

    // `tar:` holds one platform; asking for two is refused and leaves no file.
    let two = tmp.path().join("two.tar");
    build(&source, &format!("tar:{}", two.display())).fails_with(1);
    assert!(!two.exists());

    // Stdout carries the OCI index digest for every sink, so a `tar:` build can be matched with
    // the same build pushed or written as a layout.
    assert_eq!(
        from_tar, from_oci,
        "the printed digest names the same image whatever the sink"
    );
}

#[test]
fn oci_archive_output_is_read_by_skopeo() {
    let tmp = tempfile::tempdir().unwrap();
    let source = payload::tailscale_standin(&tmp.path().join("src"));
    let archive = tmp.path().join("tailscale.tar");
    let layout = tmp.path().join("layout");
    let reference = format!("oci-archive:{}:{TAG}", archive.display());
    let digest = printed_digest(&build(&source, &reference).ok());
    assert_eq!(
        digest,
        printed_digest(&build(&source, &oci(&layout, TAG)).ok())
    );

    let raw = tools::skopeo_inspect_raw(&reference);
    assert_eq!(
        raw,
        read_json(&blob_path(&layout, &digest)),
        "the archive holds the same index"
    );
    let images = images(&layout, &digest);
    for arch in ARCHES {
        let copy = tmp.path().join(format!("copy-{arch}"));
        tools::skopeo_copy(&reference, &oci(&copy, "x"), Some(arch));
        let checked = schema::validate_layout(&copy);
        assert_eq!(
            checked.manifests,
            vec![images[arch].manifest_digest.clone()],
            "{arch}"
        );
    }
}

#[test]
fn a_second_image_joins_an_existing_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let source = payload::tailscale_standin(&tmp.path().join("src"));
    let out = tmp.path().join("out");
    let first = printed_digest(&build(&source, &oci(&out, TAG)).ok());
    let second = printed_digest(
        &build(&source, &oci(&out, "1.102.6"))
            .args(["--version", "1.102.6"])
            .ok(),
    );
    assert_ne!(first, second);

    assert_eq!(
        tools::skopeo_inspect_raw(&oci(&out, TAG)),
        read_json(&blob_path(&out, &first))
    );
    assert_eq!(
        tools::skopeo_inspect_raw(&oci(&out, "1.102.6")),
        read_json(&blob_path(&out, &second))
    );
    let checked = schema::validate_layout(&out);
    assert_eq!(checked.indexes.len(), 2, "both images stay listed");
    let single = tmp.path().join("single");
    tools::skopeo_copy(&oci(&out, "1.102.6"), &oci(&single, "x"), Some("arm64"));
    let root = tools::umoci_unpack(&single, "x", &tmp.path().join("bundle"));
    let manifest = fs::read_to_string(root.join("manifest.yaml")).unwrap();
    assert!(
        manifest.contains("1.102.6"),
        "`--version` reaches manifest.yaml:\n{manifest}"
    );
}

#[test]
fn receipt_and_json_carry_the_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let source = payload::tailscale_standin(&tmp.path().join("src"));
    let receipt = tmp.path().join("receipt.json");
    let plain = printed_digest(
        &build(&source, &oci(&tmp.path().join("a"), TAG))
            .arg("--receipt")
            .arg(&receipt)
            .ok(),
    );
    let text =
        fs::read_to_string(&receipt).unwrap_or_else(|e| panic!("`--receipt` wrote nothing: {e}"));
    assert!(
        text.contains(&plain),
        "the receipt names the digest:\n{text}"
    );

    let run = build(&source, &oci(&tmp.path().join("b"), TAG))
        .arg("--json")
        .ok();
    let json = run.json();
    assert!(
        json.to_string().contains(&plain),
        "`--json` carries the digest:\n{}",
        run.stdout
    );
}

/// The file `tool` resolves to on the Tailscale service's `PATH`, inside the container root
/// `croot` (absolute links resolve against it, as they do in the container), relative to it.
fn on_service_path(croot: &std::path::Path, tool: &str) -> Option<String> {
    const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    let service = fs::read_to_string(tailscale_def().join("tailscale.yaml")).unwrap();
    assert!(
        service.contains(&format!("PATH={PATH}")),
        "the service PATH changed"
    );
    for dir in PATH.split(':') {
        let mut rel = format!("{}/{tool}", dir.trim_start_matches('/'));
        for _ in 0..40 {
            let full = croot.join(&rel);
            let meta = fs::symlink_metadata(&full).ok();
            match meta {
                None => break,
                Some(m) if m.file_type().is_symlink() => {
                    let t = fs::read_link(&full).unwrap().to_string_lossy().into_owned();
                    rel = if let Some(abs) = t.strip_prefix('/') {
                        abs.to_string()
                    } else {
                        let parent = rel.rsplit_once('/').map_or("", |(p, _)| p);
                        format!("{parent}/{t}")
                    };
                }
                Some(_) => return Some(rel),
            }
        }
    }
    None
}

#[test]
fn golden_digest_is_pinned() {
    let tmp = tempfile::tempdir().unwrap();
    let source = golden_payload(&tmp.path().join("src"));
    let out = tmp.path().join("out");
    let run = tools::talext(BIN)
        .arg("build")
        .arg(repo().join("tests/fixtures/golden"))
        .arg("--source")
        .arg(format!("golden={}", source.display()))
        .args(["--output", &oci(&out, "golden")])
        .ok();
    let digest = printed_digest(&run);
    schema::validate_layout(&out);
    let images = images(&out, &digest);
    let detail: Vec<String> = images
        .iter()
        .map(|(arch, i)| {
            format!(
                "{arch}: manifest {} config {}",
                i.manifest_digest, i.manifest["config"]["digest"]
            )
        })
        .collect();
    assert_eq!(
        digest,
        GOLDEN_DIGEST,
        "the golden build's digest changed ({}); if the image format change is deliberate, update \
         `GOLDEN_DIGEST` and note it in the CHANGELOG",
        detail.join("; ")
    );
}

#[test]
fn payload_links_must_replace_links_and_resolve_to_files() {
    let tmp = tempfile::tempdir().unwrap();
    let source = payload::tailscale_standin(&tmp.path().join("src"));
    let original = fs::read_to_string(tailscale_def().join("extension.yaml")).unwrap();
    for (links, complaint) in [
        (
            "      - path: /usr/local/bin/tailscale\n        target: xtables-nft-multi\n",
            "would replace a file or directory",
        ),
        (
            "      - path: /sbin/iptables\n        target: xtables-nft-missing\n",
            "which is not a file in the payload",
        ),
        (
            "      - path: /\n        target: xtables-nft-multi\n",
            "names no path inside the payload",
        ),
    ] {
        let def = tmp.path().join("def");
        let _ = fs::remove_dir_all(&def);
        fs::create_dir_all(&def).unwrap();
        fs::copy(
            tailscale_def().join("tailscale.yaml"),
            def.join("tailscale.yaml"),
        )
        .unwrap();
        let (head, _) = original
            .split_once("    links:\n")
            .expect("the definition has links");
        let rest = original
            .split_once("        target: xtables-nft-multi\n      - path: /sbin/ip6tables\n        target: xtables-nft-multi\n")
            .expect("the two links")
            .1;
        fs::write(
            def.join("extension.yaml"),
            format!("{head}    links:\n{links}{rest}"),
        )
        .unwrap();
        let out = tmp.path().join("out");
        let o = tools::talext(BIN)
            .arg("build")
            .arg(&def)
            .arg("--source")
            .arg(format!("tailscale={}", source.display()))
            .args(["--no-cache", "--output"])
            .arg(format!("oci:{}", out.display()))
            .fails_with(1);
        assert!(o.stderr.contains(complaint), "{}", o.stderr);
        assert!(!out.exists());
    }
}
