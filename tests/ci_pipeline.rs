//! `ci/pipeline.sh`, the script behind the CI templates in `ci/`, run end to end: build the
//! Tailscale extension from the stand-in payload for amd64 and arm64, validate it, check that
//! rebuilds give the same digest, push it to a local plain-HTTP registry and then to a TLS
//! registry with credentials; skopeo reads what arrived. The templates themselves are parsed
//! and must call every step, giving the registry credential to the push step alone.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;
use talext_kit::payload::tailscale_standin;
use talext_kit::registry::{run, sha256, Registry};

const BIN: &str = env!("CARGO_BIN_EXE_talext");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// `bash ci/pipeline.sh STEP` from the repository root with `vars`, in an environment that
/// holds no credentials or talext settings of the caller.
fn pipeline(step: &str, vars: &[(&str, &str)]) -> Outcome {
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("ci/pipeline.sh"))
        .arg(step)
        .current_dir(repo());
    for (key, _) in std::env::vars() {
        if key.starts_with("TALEXT_")
            || [
                "SOURCE",
                "REGISTRY",
                "TAG",
                "OUT",
                "SOURCE_DATE_EPOCH",
                "RUST_LOG",
            ]
            .contains(&key.as_str())
        {
            cmd.env_remove(key);
        }
    }
    talext_kit::tools::isolate(&mut cmd);
    cmd.env("TALEXT", BIN)
        .env("NO_COLOR", "1")
        .env("DOCKER_CONFIG", "/nonexistent")
        .env("REGISTRY_AUTH_FILE", "/nonexistent/auth.json");
    for (key, value) in vars {
        cmd.env(key, value);
    }
    let out = cmd.output().expect("run bash");
    Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ok(step: &str, vars: &[(&str, &str)]) -> Outcome {
    let out = pipeline(step, vars);
    assert_eq!(
        out.code,
        Some(0),
        "ci/pipeline.sh {step} failed\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.stdout,
        out.stderr
    );
    out
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_pipeline_builds_validates_checks_reproducibility_and_pushes() {
    let plain = Registry::plain();
    let work = tempfile::tempdir().unwrap();
    let standin = tailscale_standin(&work.path().join("payload"));
    let source = format!("tailscale={}", standin.display());
    let out_dir = work.path().join("out");
    let out = out_dir.to_str().unwrap();
    let repository = format!("{}/ci/tailscale", plain.addr);
    let vars = [
        ("SOURCE", source.as_str()),
        ("OUT", out),
        ("REGISTRY", repository.as_str()),
    ];

    let all = ok("all", &vars);
    let digest = read(&out_dir.join("image.digest")).trim().to_string();
    assert!(digest.starts_with("sha256:"), "{digest}");
    // The tag defaults to the extension version; stdout is the receipt line and nothing else.
    let line = format!("{repository}:1.102.5@{digest}");
    assert_eq!(all.stdout, format!("{line}\n"));
    assert_eq!(read(&out_dir.join("receipt.txt")), format!("{line}\n"));
    for step in ["build", "validate", "reproducible", "push"] {
        assert!(
            all.stderr.contains(&format!("--- {step}")),
            "{step}: {}",
            all.stderr
        );
    }
    assert!(all.stderr.contains(&format!("reproducible: {digest}")));
    assert!(
        all.stderr.contains("without the cache") && all.stderr.contains("compare bytes"),
        "{}",
        all.stderr
    );
    assert!(!out_dir.join("repro-1").exists());

    // Both platforms were built, validated and pushed; the registry serves the built index.
    let build_receipt: serde_json::Value =
        serde_json::from_str(&read(&out_dir.join("build-receipt.json"))).unwrap();
    let arches: Vec<&str> = build_receipt["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(arches, ["amd64", "arm64"]);
    assert!(out_dir.join("validate.txt").is_file());
    let served = run(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{repository}:1.102.5"),
        ],
    );
    assert_eq!(sha256(&served), digest);
    for p in build_receipt["platforms"].as_array().unwrap() {
        let child = p["digest"].as_str().unwrap();
        let raw = run(
            "skopeo",
            &[
                "inspect",
                "--raw",
                "--tls-verify=false",
                &format!("docker://{repository}@{child}"),
            ],
        );
        assert_eq!(sha256(&raw), child);
    }

    // The JSON receipt names the registry image, and the catalog builder pins from it.
    let receipt: serde_json::Value =
        serde_json::from_str(&read(&out_dir.join("receipt.json"))).unwrap();
    assert_eq!(receipt["reference"], line);
    assert_eq!(receipt["output"], format!("docker://{repository}:1.102.5"));
    assert_eq!(receipt["digest"], digest);
    assert_eq!(receipt["platforms"], build_receipt["platforms"]);
    let catalog = work.path().join("catalog");
    let built = talext_kit::tools::command(BIN)
        .args(["catalog", "build", "--receipt"])
        .arg(out_dir.join("receipt.json"))
        .arg("--output")
        .arg(format!("dir:{}", catalog.display()))
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(built.status.success(), "{built:?}");
    assert!(
        read(&catalog.join("image-digests")).contains(&line),
        "{}",
        read(&catalog.join("image-digests"))
    );

    // Push the same build to a TLS registry with credentials from the environment: it
    // arrives under the chosen tag, and the password shows up nowhere.
    let password = "pipeline-secret-7f3a";
    let tls = Registry::tls_with_auth("ci", password);
    let secure = format!("{}/site/tailscale", tls.addr);
    let ca = tls.ca.clone().unwrap();
    let pushed = ok(
        "push",
        &[
            ("OUT", out),
            ("REGISTRY", &format!("docker://{secure}")),
            ("TAG", "stable"),
            ("TALEXT_REGISTRY_USERNAME", "ci"),
            ("TALEXT_REGISTRY_PASSWORD", password),
            ("TALEXT_REGISTRY_CA_FILE", ca.to_str().unwrap()),
        ],
    );
    assert_eq!(pushed.stdout, format!("{secure}:stable@{digest}\n"));
    assert!(!pushed.stdout.contains(password) && !pushed.stderr.contains(password));
    let served = run(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            &format!("ci:{password}"),
            &format!("docker://{secure}:stable"),
        ],
    );
    assert_eq!(sha256(&served), digest);

    // A wrong password fails the step without printing it.
    let refused = pipeline(
        "push",
        &[
            ("OUT", out),
            ("REGISTRY", &secure),
            ("TAG", "other"),
            ("TALEXT_REGISTRY_USERNAME", "ci"),
            ("TALEXT_REGISTRY_PASSWORD", "wrong-password-51c9"),
            ("TALEXT_REGISTRY_CA_FILE", ca.to_str().unwrap()),
        ],
    );
    assert_ne!(refused.code, Some(0));
    assert!(
        !refused.stderr.contains("wrong-password-51c9"),
        "{}",
        refused.stderr
    );
}

/// The reproducibility gate can fail: a `TALEXT` that changes one byte of the payload before
/// the second rebuild makes `reproducible` exit 1 and name the blobs that differ.
#[test]
fn the_reproducibility_gate_fails_when_a_byte_changes() {
    use std::os::unix::fs::PermissionsExt;
    let work = tempfile::tempdir().unwrap();
    let standin = tailscale_standin(&work.path().join("payload"));
    let os_release = talext_kit::payload::arch_tree(&standin, "arm64").join("etc/os-release");
    let source = format!("tailscale={}", standin.display());
    let out_dir = work.path().join("out");
    // Every call is counted; the second appends a byte to the arm64 payload first, as a build
    // reading something of its environment would differ.
    let wrapper = work.path().join("talext-flaky");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nn=$(cat '{count}' 2>/dev/null || echo 0)\nn=$((n + 1))\n\
             echo \"$n\" >'{count}'\n\
             if [ \"$n\" -eq 2 ]; then printf x >>'{file}'; fi\nexec '{bin}' \"$@\"\n",
            count = work.path().join("calls").display(),
            file = os_release.display(),
            bin = BIN,
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();

    let failed = pipeline(
        "reproducible",
        &[
            ("TALEXT", wrapper.to_str().unwrap()),
            ("SOURCE", source.as_str()),
            ("OUT", out_dir.to_str().unwrap()),
            ("PLATFORMS", "linux/arm64"),
        ],
    );
    assert_eq!(read(&work.path().join("calls")).trim(), "2");
    assert_eq!(
        failed.code,
        Some(1),
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        failed.stdout,
        failed.stderr
    );
    let err = &failed.stderr;
    assert!(err.contains("two builds differ"), "{err}");
    assert!(
        err.contains("`index.json` differs between the two rebuilds"),
        "{err}"
    );
    // Every blob of either rebuild that the other lacks is named, the changed layer included,
    // and the rebuilds are kept for a look.
    let blobs = |dir: &Path| -> std::collections::BTreeSet<String> {
        std::fs::read_dir(dir.join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let (first, second) = (
        blobs(&out_dir.join("repro-1")),
        blobs(&out_dir.join("repro-2")),
    );
    let only_first: Vec<_> = first.difference(&second).collect();
    let only_second: Vec<_> = second.difference(&first).collect();
    // The layer, the config (its diff_id), the manifest and the index changed.
    assert_eq!(only_first.len(), 4, "{only_first:?}\n{err}");
    assert_eq!(only_second.len(), 4, "{only_second:?}\n{err}");
    for hex in &only_first {
        assert!(
            err.contains(&format!(
                "`blobs/sha256/{hex}` is only in the first rebuild"
            )),
            "{hex}: {err}"
        );
    }
    for hex in &only_second {
        assert!(
            err.contains(&format!(
                "`blobs/sha256/{hex}` is only in the second rebuild"
            )),
            "{hex}: {err}"
        );
    }
    // Each is described by what it is.
    for media in ["index", "manifest", "config", "layer"] {
        assert!(
            err.contains(&format!("(application/vnd.oci.image.{media}.v1")),
            "{media}: {err}"
        );
    }
    assert!(err.contains("are kept in"), "{err}");
    assert!(!err.contains("reproducible: sha256:"), "{err}");
}

#[test]
fn misuse_is_refused_with_a_message() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let usage = pipeline("deploy", &[]);
    assert_eq!(usage.code, Some(2));
    assert!(usage.stderr.contains("usage:"), "{}", usage.stderr);
    let nothing_built = pipeline("push", &[("OUT", out.to_str().unwrap())]);
    assert_eq!(nothing_built.code, Some(2));
    assert!(
        nothing_built.stderr.contains("run `"),
        "{}",
        nothing_built.stderr
    );
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("image.digest"), "sha256:00\n").unwrap();
    let no_registry = pipeline("push", &[("OUT", out.to_str().unwrap())]);
    assert_eq!(no_registry.code, Some(2));
    assert!(
        no_registry.stderr.contains("set REGISTRY"),
        "{}",
        no_registry.stderr
    );
}

fn yaml(path: &str) -> Value {
    serde_yaml::from_str(&read(&repo().join(path))).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every `run:` / `script:` line of a template, with the environment names its step or job sets.
fn commands(template: &Value, ci: &str) -> Vec<(String, Vec<String>)> {
    let keys = |v: &Value| -> Vec<String> {
        v.as_mapping()
            .map(|m| {
                m.keys()
                    .filter_map(|k| k.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    if ci == "github" {
        for (_, job) in template["jobs"].as_mapping().unwrap() {
            for step in job["steps"].as_sequence().unwrap() {
                if let Some(run) = step["run"].as_str() {
                    out.push((run.to_string(), keys(&step["env"])));
                }
            }
        }
    } else {
        for (_, job) in template.as_mapping().unwrap() {
            let Some(script) = job["script"].as_sequence() else {
                continue;
            };
            let text: Vec<&str> = script.iter().filter_map(Value::as_str).collect();
            out.push((text.join("\n"), keys(&job["variables"])));
        }
    }
    out
}

/// The templates' fan-out: each platform built by `build` alone (its own OUT and cache, as on
/// its own runner), `stitch` makes the index, and `reproducible` finds it equal to one build of
/// both platforms; so does a one-machine `build`.
#[test]
fn platform_builds_stitch_into_the_one_machine_image() {
    let work = tempfile::tempdir().unwrap();
    let standin = tailscale_standin(&work.path().join("payload"));
    let source = format!("tailscale={}", standin.display());
    let out_dir = work.path().join("out");
    let out = out_dir.to_str().unwrap();
    for platform in ["linux/amd64", "linux/arm64"] {
        let dir = out_dir.join(platform.replace('/', "-"));
        let cache = work
            .path()
            .join(format!("cache-{}", platform.replace('/', "-")));
        ok(
            "build",
            &[
                ("SOURCE", source.as_str()),
                ("OUT", dir.to_str().unwrap()),
                ("PLATFORMS", platform),
                ("TALEXT_CACHE_DIR", cache.to_str().unwrap()),
            ],
        );
    }
    let vars = [("SOURCE", source.as_str()), ("OUT", out)];
    let stitched = ok("stitch", &vars);
    assert!(
        stitched.stderr.contains("stitched tailscale 1.102.5"),
        "{}",
        stitched.stderr
    );
    let digest = read(&out_dir.join("image.digest")).trim().to_string();
    let receipt: serde_json::Value =
        serde_json::from_str(&read(&out_dir.join("build-receipt.json"))).unwrap();
    assert_eq!(receipt["digest"], digest.as_str());
    assert_eq!(receipt["name"], "tailscale");
    let arches: Vec<&str> = receipt["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(arches, ["amd64", "arm64"]);
    ok("validate", &vars);
    let repro = ok("reproducible", &vars);
    assert!(
        repro.stderr.contains(&format!("reproducible: {digest}")),
        "{}",
        repro.stderr
    );
    let one = work.path().join("one");
    ok(
        "build",
        &[("SOURCE", source.as_str()), ("OUT", one.to_str().unwrap())],
    );
    assert_eq!(read(&one.join("image.digest")).trim(), digest);
    // A platform not built is named.
    let missing = pipeline(
        "stitch",
        &[("OUT", out), ("PLATFORMS", "linux/amd64,linux/riscv64")],
    );
    assert_eq!(missing.code, Some(2));
    assert!(
        missing.stderr.contains("no build of linux/riscv64"),
        "{}",
        missing.stderr
    );
}

#[test]
fn templates_call_every_step_and_scope_the_credential_to_push() {
    let script = read(&repo().join("ci/pipeline.sh"));
    let check = Command::new("bash")
        .args(["-n", "ci/pipeline.sh"])
        .current_dir(repo())
        .status()
        .unwrap();
    assert!(check.success(), "ci/pipeline.sh has a syntax error");
    for (path, ci, global) in [
        ("ci/github-actions.yml", "github", "env"),
        ("ci/gitlab-ci.yml", "gitlab", "variables"),
    ] {
        let template = yaml(path);
        let global = serde_yaml::to_string(&template[global]).unwrap();
        assert!(
            !global.contains("PASSWORD"),
            "{path}: a credential is set for every step"
        );
        let commands = commands(&template, ci);
        for step in ["build", "stitch", "validate", "reproducible", "push"] {
            let calls: Vec<_> = commands
                .iter()
                .filter(|(run, _)| run.contains(&format!("ci/pipeline.sh {step}")))
                .collect();
            assert_eq!(calls.len(), 1, "{path}: `ci/pipeline.sh {step}` once");
            let (run, env) = calls[0];
            let has_credential = run.contains("TALEXT_REGISTRY_PASSWORD")
                || env.iter().any(|k| k == "TALEXT_REGISTRY_PASSWORD");
            assert_eq!(
                has_credential,
                step == "push",
                "{path}: the credential belongs to `push` only"
            );
            assert!(
                script.contains(&format!("\n{step}) cmd_{step} ;;")),
                "ci/pipeline.sh lacks `{step}`"
            );
        }
        for (run, _) in &commands {
            assert!(
                !run.lines()
                    .any(|l| l.contains("echo") && l.contains("PASSWORD")),
                "{path}: a command prints the credential: {run}"
            );
            assert!(
                !run.contains("docker ") && !run.contains("dind"),
                "{path}: needs a Docker daemon: {run}"
            );
        }
    }
}
