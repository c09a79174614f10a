//! `talext copy` between OCI layouts, oci-archives and the reference registry, checked with
//! skopeo: digests survive every hop, `--platform` selects, present blobs are skipped, and
//! failures exit with the right code without showing credentials or leaving a tag behind.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use talext_kit::faultproxy::{Fault, FaultProxy, Rule};
use talext_kit::registry::{run, test_index, write_oci_layout, Registry, TestImage};

fn talext(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = talext_kit::tools::command(env!("CARGO_BIN_EXE_talext"))
        .args(args)
        .env_remove("TALEXT_REGISTRY_USERNAME")
        .env_remove("TALEXT_REGISTRY_PASSWORD")
        .env("DOCKER_CONFIG", "/nonexistent")
        .env("REGISTRY_AUTH_FILE", "/nonexistent/auth.json")
        .env_remove("XDG_RUNTIME_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or("").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn ok(args: &[&str]) -> (String, String) {
    let out = talext(args, None);
    let (stdout, stderr) = (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    );
    assert!(out.status.success(), "talext {args:?} failed: {stderr}");
    (stdout.trim().to_string(), stderr)
}

fn skopeo_raw(image: &str) -> Vec<u8> {
    run("skopeo", &["inspect", "--tls-verify=false", "--raw", image])
}

#[test]
fn copies_keep_digests_across_layouts_archives_and_registries() {
    let reg = Registry::plain();
    let amd = TestImage::new("copy amd64\n", "amd64");
    let arm = TestImage::new("copy arm64\n", "arm64");
    let index = test_index(&[&amd, &arm]);
    let layout = reg.scratch().join("src");
    write_oci_layout(&layout, &[&amd, &arm], Some(&index), "v1");
    let digestfile = reg.scratch().join("digest");

    // Layout to registry: the index bytes arrive unchanged.
    let (digest, _) = ok(&[
        "copy",
        &format!("oci:{}:v1", layout.display()),
        &reg.docker_ref("copy/a:v1"),
        "--digestfile",
        digestfile.to_str().unwrap(),
    ]);
    assert_eq!(digest, index.digest);
    assert_eq!(std::fs::read_to_string(&digestfile).unwrap(), index.digest);
    assert_eq!(skopeo_raw(&reg.docker_ref("copy/a:v1")), index.bytes);

    // Again: every blob is already there.
    let (digest, stderr) = ok(&[
        "copy",
        &format!("oci:{}:v1", layout.display()),
        &reg.docker_ref("copy/a:v1"),
    ]);
    assert_eq!(digest, index.digest);
    assert!(
        stderr.contains("0 blob(s) sent, 4 already present"),
        "{stderr}"
    );

    // Registry to registry inside one registry (mounted), written as a bare reference.
    let (digest, _) = ok(&[
        "copy",
        &reg.docker_ref("copy/a:v1"),
        &format!("{}/copy/b:v2", reg.addr),
    ]);
    assert_eq!(digest, index.digest);
    assert_eq!(skopeo_raw(&reg.docker_ref("copy/b:v2")), index.bytes);

    // Registry to layout: skopeo reads the same index from it.
    let out = reg.scratch().join("out");
    let (digest, _) = ok(&[
        "copy",
        &reg.docker_ref("copy/b:v2"),
        &format!("oci:{}:v3", out.display()),
    ]);
    assert_eq!(digest, index.digest);
    assert_eq!(
        skopeo_raw(&format!("oci:{}:v3", out.display())),
        index.bytes
    );

    // One platform into an oci-archive: that image's own manifest, unpackable by umoci.
    let archive = reg.scratch().join("arm.tar");
    let (digest, _) = ok(&[
        "copy",
        "--platform",
        "linux/arm64",
        &reg.docker_ref("copy/a:v1"),
        &format!("oci-archive:{}:arm", archive.display()),
    ]);
    assert_eq!(digest, arm.manifest.digest);
    assert_eq!(
        skopeo_raw(&format!("oci-archive:{}:arm", archive.display())),
        arm.manifest.bytes
    );
    let unpacked = reg.scratch().join("arm-layout");
    run(
        "skopeo",
        &[
            "copy",
            &format!("oci-archive:{}:arm", archive.display()),
            &format!("oci:{}:arm", unpacked.display()),
        ],
    );
    let bundle = reg.scratch().join("bundle");
    run(
        "umoci",
        &[
            "unpack",
            "--rootless",
            "--image",
            &format!("{}:arm", unpacked.display()),
            bundle.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/hello.txt")).unwrap(),
        "copy arm64\n"
    );

    // oci-archive back to a registry.
    let (digest, _) = ok(&[
        "copy",
        &format!("oci-archive:{}:arm", archive.display()),
        &reg.docker_ref("copy/arm:v1"),
    ]);
    assert_eq!(digest, arm.manifest.digest);

    // Two platforms named: a new index with both, whose children keep their digests.
    let (digest, _) = ok(&[
        "copy",
        "--platform",
        "linux/arm64,linux/amd64",
        &reg.docker_ref("copy/a:v1"),
        &reg.docker_ref("copy/both:v1"),
    ]);
    let raw: serde_json::Value =
        serde_json::from_slice(&skopeo_raw(&reg.docker_ref("copy/both:v1"))).unwrap();
    assert_eq!(raw["manifests"].as_array().unwrap().len(), 2);
    assert_eq!(
        digest,
        talext_kit::registry::sha256(&skopeo_raw(&reg.docker_ref("copy/both:v1")))
    );

    // A platform the index lacks is a user error.
    let out = talext(
        &[
            "copy",
            "--platform",
            "linux/riscv64",
            &reg.docker_ref("copy/a:v1"),
            &reg.docker_ref("copy/none:v1"),
        ],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn credentials_from_stdin_and_refusals_without_leaks() {
    let password = "copy-Pa55word";
    let reg = Registry::tls_with_auth("bob", password);
    let img = TestImage::new("secured\n", "amd64");
    let layout = reg.scratch().join("src");
    write_oci_layout(&layout, &[&img], None, "v1");
    let ca = reg.ca.as_ref().unwrap().to_str().unwrap().to_string();
    let src = format!("oci:{}:v1", layout.display());
    let dst = reg.docker_ref("secure/img:v1");
    let args = [
        "copy",
        "--ca-file",
        &ca,
        "--username",
        "bob",
        "--password-stdin",
        &src,
        &dst,
    ];

    let out = talext(&args, Some("not-the-password\n"));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&reg.addr) && stderr.contains("refused the credentials"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("not-the-password") && !stderr.contains(password),
        "{stderr}"
    );

    let out = talext(&args, Some(&format!("{password}\n")));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains(password));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        img.manifest.digest
    );
}

#[test]
fn faults_beyond_the_budget_exit_2_without_a_tag() {
    let reg = Registry::plain();
    let proxy = FaultProxy::start(&reg.addr);
    proxy.add(
        Rule::new(Fault::Status(503))
            .method("PUT")
            .path("/blobs/uploads/"),
    );
    let img = TestImage::new("never arrives\n", "amd64");
    let layout = reg.scratch().join("src");
    write_oci_layout(&layout, &[&img], None, "v1");
    let out = talext(
        &[
            "copy",
            // One blob at a time, so the retries counted are one blob's.
            "--jobs",
            "1",
            "--retry-max",
            "2",
            "--retry-delay",
            "10ms",
            &format!("oci:{}:v1", layout.display()),
            &format!("docker://{}/faulty/img:v1", proxy.addr),
        ],
        None,
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&proxy.addr)
            && stderr.contains("push blob sha256:")
            && stderr.contains("after 3 attempts"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("retrying `push blob").count(), 2, "{stderr}");
    let inspect = Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            "--raw",
            &reg.docker_ref("faulty/img:v1"),
        ])
        .output()
        .unwrap();
    assert!(!inspect.status.success(), "the tag exists");
}

/// A layout blob is read once, as it is sent; one whose bytes do not match its digest is
/// refused by the registry, and the error names the blob and its damage; no tag is written.
#[test]
fn a_corrupt_layout_blob_is_named_and_no_tag_is_pushed() {
    let reg = Registry::plain();
    let img = TestImage::new(&"corrupt me\n".repeat(4096), "amd64");
    let layout = reg.scratch().join("corrupt");
    write_oci_layout(&layout, &[&img], None, "v1");
    let hex = img.layer.digest.trim_start_matches("sha256:");
    let path = layout.join("blobs/sha256").join(hex);
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let out = talext(
        &[
            "copy",
            &format!("oci:{}:v1", layout.display()),
            &format!("docker://{}/corrupt/img:v1", reg.addr),
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&img.layer.digest), "{stderr}");
    assert!(stderr.contains(&layout.display().to_string()), "{stderr}");
    let tag = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw"])
        .arg(format!("docker://{}/corrupt/img:v1", reg.addr))
        .output()
        .unwrap();
    assert!(!tag.status.success(), "a tag was pushed");
}

/// A two-platform copy into an empty repository, request by request through the proxy: each
/// blob is asked about once and sent once; every manifest goes after every blob and child it
/// names was confirmed (found, or its upload closed), the index after both platform manifests
/// and the tag last; the registry is asked about the tag once, after it is written. Asked
/// again, nothing is sent: the blobs are found and the manifests rewritten.
#[test]
fn a_copy_asks_about_each_blob_once_and_writes_manifests_in_order() {
    let reg = Registry::plain();
    let proxy = FaultProxy::start(&reg.addr);
    let amd = TestImage::new("amd64 bytes\n", "amd64");
    let arm = TestImage::new("arm64 bytes\n", "arm64");
    let index = test_index(&[&amd, &arm]);
    let layout = reg.scratch().join("two");
    write_oci_layout(&layout, &[&amd, &arm], Some(&index), "v1");
    let src = format!("oci:{}:v1", layout.display());
    ok(&["copy", &src, &format!("docker://{}/seq/img:v1", proxy.addr)]);
    let hits = proxy.hits();
    let at = |method: &str, needle: &str| -> Vec<usize> {
        hits.iter()
            .enumerate()
            .filter(|(_, h)| h.method == method && h.path.contains(needle))
            .map(|(i, _)| i)
            .collect()
    };
    let blobs = [&amd.layer, &amd.config, &arm.layer, &arm.config];
    for blob in blobs {
        let hex = &blob.digest["sha256:".len()..];
        assert_eq!(
            at("HEAD", hex).len(),
            1,
            "`{}` asked about once",
            blob.digest
        );
        assert_eq!(at("PUT", hex).len(), 1, "`{}` sent once", blob.digest);
    }
    let put_of = |digest: &str| at("PUT", &format!("/manifests/{digest}"));
    let (m_amd, m_arm) = (put_of(&amd.manifest.digest), put_of(&arm.manifest.digest));
    let (m_index, m_tag) = (put_of(&index.digest), put_of("v1"));
    assert_eq!(
        (m_amd.len(), m_arm.len(), m_index.len(), m_tag.len()),
        (1, 1, 0, 1),
        "the index goes under its tag only"
    );
    let last_blob = blobs
        .iter()
        .map(|b| at("PUT", &b.digest["sha256:".len()..])[0])
        .max()
        .unwrap();
    assert!(m_amd[0] > last_blob && m_arm[0] > last_blob);
    assert!(m_tag[0] > m_amd[0].max(m_arm[0]));
    assert_eq!(at("HEAD", "/manifests/").len(), 1, "{hits:#?}");
    assert!(at("HEAD", "/manifests/v1")[0] > m_tag[0]);
    assert_eq!(hits.len(), 1 + 4 * 3 + 3 + 1, "{hits:#?}");
    assert_eq!(
        skopeo_raw(&reg.docker_ref("seq/img:v1")),
        index.bytes,
        "the registry serves the index copied"
    );

    // Again: each blob found by one HEAD, none sent.
    let before = proxy.hits().len();
    ok(&["copy", &src, &format!("docker://{}/seq/img:v1", proxy.addr)]);
    let again = &proxy.hits()[before..];
    assert!(
        again
            .iter()
            .all(|h| !(h.method == "PUT" || h.method == "POST") || h.path.contains("/manifests/")),
        "{again:#?}"
    );
    assert_eq!(
        again
            .iter()
            .filter(|h| h.method == "HEAD" && h.path.contains("/blobs/"))
            .count(),
        4
    );
}
