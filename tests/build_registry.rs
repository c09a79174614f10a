//! `talext build` against the reference registry: pushing the build (the same digest as an
//! `oci:` build of the same inputs), pulling a pinned registry source (pin verified, cached),
//! TLS with a test CA and htpasswd credentials from stdin or a `config.json`.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use base64::Engine as _;

use talext_kit::payload;
use talext_kit::registry::Registry;
use talext_kit::tools::{self, Outcome};

const TALEXT: &str = env!("CARGO_BIN_EXE_talext");

fn definition() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../extension/tailscale")
        .display()
        .to_string()
}

fn build(args: &[&str], cache: &Path) -> Outcome {
    tools::talext(TALEXT)
        .arg("build")
        .arg(definition())
        .args(args)
        .env("TALEXT_CACHE_DIR", cache)
        .env("DOCKER_CONFIG", cache.join("no-docker-config"))
        .env("REGISTRY_AUTH_FILE", cache.join("no-auth.json"))
        .run()
}

fn skopeo_digest(reference: &str) -> String {
    let out = tools::skopeo()
        .args(["inspect", "--tls-verify=false", "--raw", reference])
        .ok();
    talext_kit::registry::sha256(out.stdout.as_bytes())
}

#[test]
fn push_matches_the_layout_build_and_pinned_sources_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::plain();
    let source = payload::tailscale_standin(&tmp.path().join("src"));
    let source_arg = format!("tailscale={}", source.display());
    let cache = tmp.path().join("cache");

    // Acceptance 1: the pushed index is the one an `oci:` build of the same inputs makes.
    let target = format!("docker://{}/talos/tailscale:1.102.5", reg.addr);
    let pushed = build(&["--source", &source_arg, "--output", &target], &cache);
    assert_eq!(pushed.code, Some(0), "{}\n{}", pushed.line, pushed.stderr);
    let line = pushed.stdout.trim();
    let (name, digest) = line.split_once('@').expect("REF@sha256:…");
    assert_eq!(name, format!("{}/talos/tailscale:1.102.5", reg.addr));
    let layout = tmp.path().join("layout");
    let local = build(
        &[
            "--source",
            &source_arg,
            "--output",
            &format!("oci:{}:1.102.5", layout.display()),
        ],
        &cache,
    );
    assert_eq!(local.code, Some(0), "{}", local.stderr);
    assert_eq!(local.stdout.trim(), digest);
    assert_eq!(
        skopeo_digest(&reg.docker_ref("talos/tailscale:1.102.5")),
        digest
    );

    // Acceptance 3: an upstream stand-in pushed by skopeo is the build's source, pinned.
    tools::skopeo()
        .args(["copy", "--all", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:1.102.5", layout.display()))
        .arg(reg.docker_ref("upstream/tailscale:v1"))
        .ok();
    let up = skopeo_digest(&reg.docker_ref("upstream/tailscale:v1"));
    // The stand-in here is an extension image; take its container root as the payload.
    let def = tmp.path().join("def");
    fs::create_dir_all(&def).unwrap();
    fs::copy(
        Path::new(&definition()).join("tailscale.yaml"),
        def.join("tailscale.yaml"),
    )
    .unwrap();
    let text = fs::read_to_string(Path::new(&definition()).join("extension.yaml"))
        .unwrap()
        .replace(
            "    to: /usr/local/lib/containers/tailscale\n",
            "    to: /usr/local/lib/containers/tailscale\n    from: rootfs/usr/local/lib/containers/tailscale\n",
        );
    fs::write(def.join("extension.yaml"), text).unwrap();
    let pinned = format!("tailscale=docker://{}/upstream/tailscale:v1@{up}", reg.addr);
    let run = |src: &str, out: &str| {
        tools::talext(TALEXT)
            .args([
                "build",
                def.to_str().unwrap(),
                "--source",
                src,
                "--output",
                out,
            ])
            .env("TALEXT_CACHE_DIR", &cache)
            .run()
    };
    let first = run(&pinned, &format!("oci:{}", tmp.path().join("p1").display()));
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    assert!(
        cache.join("images/index.json").is_file(),
        "pulled sources are cached"
    );
    // The cached source gives the same image, even with the registry gone.
    drop(reg);
    let second = run(&pinned, &format!("oci:{}", tmp.path().join("p2").display()));
    assert_eq!(second.code, Some(0), "{}", second.stderr);
    assert_eq!(first.stdout, second.stdout);

    // A wrong pin fails with both digests in the message.
    let reg = Registry::plain();
    tools::skopeo()
        .args(["copy", "--all", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:1.102.5", layout.display()))
        .arg(reg.docker_ref("upstream/tailscale:v1"))
        .ok();
    let wrong = format!("sha256:{}", "0".repeat(64));
    let bad = run(
        &format!(
            "tailscale=docker://{}/upstream/tailscale:v1@{wrong}",
            reg.addr
        ),
        &format!("oci:{}", tmp.path().join("p3").display()),
    );
    assert_eq!(bad.code, Some(1), "{}", bad.stderr);
    assert!(
        bad.stderr.contains(&wrong) && bad.stderr.contains(&up),
        "{}",
        bad.stderr
    );
    assert!(!tmp.path().join("p3").exists());
}

#[test]
fn tls_registry_with_password_from_stdin_or_config_json() {
    let tmp = tempfile::tempdir().unwrap();
    let password = "s3cret-Pa55word";
    let reg = Registry::tls_with_auth("ci", password);
    let ca = reg.ca.clone().unwrap();
    let source = payload::tailscale_standin(&tmp.path().join("src"));
    let source_arg = format!("tailscale={}", source.display());
    let target = format!("docker://{}/talos/tailscale:1.102.5", reg.addr);
    let cache = tmp.path().join("cache");

    let with_stdin = |pw: &str, extra: &[&str]| {
        let mut child = talext_kit::tools::command(TALEXT)
            .args([
                "build",
                &definition(),
                "--source",
                &source_arg,
                "--output",
                &target,
            ])
            .args(["--username", "ci", "--password-stdin"])
            .args(extra)
            .env("TALEXT_CACHE_DIR", &cache)
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{pw}\n").as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let ca_arg = ca.to_str().unwrap();

    // A wrong password: exit 1, the registry named, the password never printed.
    let out = with_stdin("wrong-password", &["--ca-file", ca_arg]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&reg.addr), "{stderr}");
    assert!(!stderr.contains("wrong-password"), "{stderr}");

    // Without the CA and without --insecure, TLS does not verify.
    let out = with_stdin(password, &[]);
    assert_ne!(out.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&out.stderr).contains(password));

    // The right password on stdin with `--ca-file`.
    let out = with_stdin(password, &["--ca-file", ca_arg]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains(password));
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(printed.starts_with(&format!("{}/talos/tailscale:1.102.5@sha256:", reg.addr)));

    // The same from a Docker `config.json`.
    let docker = tmp.path().join("docker");
    fs::create_dir_all(&docker).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("ci:{password}"));
    fs::write(
        docker.join("config.json"),
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.addr),
    )
    .unwrap();
    let out = tools::talext(TALEXT)
        .args([
            "build",
            &definition(),
            "--source",
            &source_arg,
            "--output",
            &target,
        ])
        .args(["--ca-file", ca_arg])
        .env("DOCKER_CONFIG", &docker)
        .env("TALEXT_CACHE_DIR", &cache)
        .run();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout.trim(), printed);
}

/// Fan-out: each platform built by its own process with its own cache (as on separate CI
/// runners), then `talext index create` stitches them, into a registry and into a layout, with
/// exactly the digest of the one-machine build.
#[test]
fn platform_builds_stitched_by_index_create_give_the_one_machine_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::plain();
    let source = payload::tailscale_standin(&tmp.path().join("src"));
    let source_arg = format!("tailscale={}", source.display());
    let one = build(
        &[
            "--source",
            &source_arg,
            "--output",
            &format!("oci:{}:1", tmp.path().join("one").display()),
        ],
        &tmp.path().join("cache-one"),
    );
    assert_eq!(one.code, Some(0), "{}", one.stderr);
    let want = one.stdout.trim().to_string();

    // Two runners, started together, each with a cache of its own.
    let runner = |arch: &str, output: String| {
        let cache = tmp.path().join(format!("cache-{arch}"));
        let source_arg = source_arg.clone();
        let arch = arch.to_string();
        std::thread::spawn(move || {
            build(
                &[
                    "--source",
                    &source_arg,
                    "--platform",
                    &format!("linux/{arch}"),
                    "--output",
                    &output,
                ],
                &cache,
            )
        })
    };
    let repo = format!("{}/ext/tailscale", reg.addr);
    let a = runner("amd64", format!("docker://{repo}:1-amd64"));
    let b = runner("arm64", format!("docker://{repo}:1-arm64"));
    for r in [a.join().unwrap(), b.join().unwrap()] {
        assert_eq!(r.code, Some(0), "{}\n{}", r.line, r.stderr);
    }
    let index = |args: &[&str]| {
        tools::talext(TALEXT)
            .args(["index", "create"])
            .args(args)
            .env("DOCKER_CONFIG", tmp.path().join("no-docker-config"))
            .env("REGISTRY_AUTH_FILE", tmp.path().join("no-auth.json"))
            .run()
    };
    let amd = format!("{repo}:1-amd64");
    let arm = format!("{repo}:1-arm64");
    let made = index(&[&amd, &arm, "-o", &format!("docker://{repo}:1"), "--json"]);
    assert_eq!(made.code, Some(0), "{}", made.stderr);
    let v: serde_json::Value = serde_json::from_str(&made.stdout).unwrap();
    assert_eq!(v["digest"], want.as_str(), "{v}");
    assert_eq!(v["manifests"][0]["platform"], "linux/amd64");
    assert_eq!(v["manifests"][1]["platform"], "linux/arm64");
    assert_eq!(skopeo_digest(&reg.docker_ref("ext/tailscale:1")), want);
    // Every platform image skopeo reads back from the stitched index.
    for arch in ["amd64", "arm64"] {
        tools::skopeo()
            .args(["inspect", "--tls-verify=false", "--override-arch", arch])
            .arg(reg.docker_ref("ext/tailscale:1"))
            .ok();
    }

    // Layouts and archives as the runners' artifacts: the same digest, in a layout skopeo copies.
    let amd_layout = format!("oci:{}:1", tmp.path().join("amd64").display());
    let arm_archive = format!("oci-archive:{}:1", tmp.path().join("arm64.tar").display());
    for (arch, out) in [("amd64", &amd_layout), ("arm64", &arm_archive)] {
        let r = build(
            &[
                "--source",
                &source_arg,
                "--platform",
                &format!("linux/{arch}"),
                "--output",
                out,
            ],
            &tmp.path().join(format!("cache-{arch}")),
        );
        assert_eq!(r.code, Some(0), "{}", r.stderr);
    }
    let stitched = tmp.path().join("stitched");
    let made = index(&[
        &amd_layout,
        &arm_archive,
        "-o",
        &format!("oci:{}:1", stitched.display()),
    ]);
    assert_eq!(made.code, Some(0), "{}", made.stderr);
    assert_eq!(made.stdout.trim(), want);
    tools::skopeo()
        .args(["copy", "--all", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:1", stitched.display()))
        .arg(reg.docker_ref("ext/copied:1"))
        .ok();
    assert_eq!(skopeo_digest(&reg.docker_ref("ext/copied:1")), want);

    // Another order is another index; one platform twice is refused, naming both.
    let swapped = index(&[&arm, &amd, "-o", &format!("docker://{repo}:swapped")]);
    assert_eq!(swapped.code, Some(0), "{}", swapped.stderr);
    assert_ne!(swapped.stdout.trim(), want);
    let twice = index(&[&amd, &amd_layout, "-o", &format!("docker://{repo}:twice")]);
    assert_eq!(twice.code, Some(1), "{}", twice.stderr);
    assert!(
        twice.stderr.contains("`linux/amd64` comes from both"),
        "{}",
        twice.stderr
    );
}
