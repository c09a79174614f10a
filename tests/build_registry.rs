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
