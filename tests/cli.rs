//! The command line through the binary: `--version`, `-v`, completions, man pages and examples,
//! exit codes of usage errors and of a closed stdout, env twins, `--json` shapes, per-side
//! credentials of `copy`, and the registry edges skopeo users expect (a CA certificate used as
//! the server's own, namespace-scoped `auth.json` keys, distinct authentication failures, no
//! long retries when nothing listens).

use std::path::Path;
use std::process::Stdio;

use serde_json::Value;
use talext_kit::registry::{write_oci_layout, Registry, TestImage};
use talext_kit::tools::{command, talext};

const BIN: &str = env!("CARGO_BIN_EXE_talext");

/// An `oci:` layout holding one small image tagged `v1`, in `dir`.
fn layout(dir: &Path) -> String {
    let img = TestImage::new("cli test", "amd64");
    write_oci_layout(dir, &[&img], None, "v1");
    format!("oci:{}:v1", dir.display())
}

#[test]
fn version_names_the_commit_and_target() {
    let out = talext(BIN).arg("--version").ok();
    let line = out.stdout.trim();
    assert!(line.starts_with("talext 0."), "{line}");
    assert!(line.contains("(commit "), "{line}");
    assert!(
        line.contains(std::env::consts::ARCH),
        "the target triple is missing: {line}"
    );
}

#[test]
fn command_line_definition_is_consistent() {
    // clap's own checks: no two flags share a name or short, every `requires` names a flag.
    talext::cli::command().debug_assert();
}

#[test]
fn help_carries_examples_and_exits_0() {
    for cmd in [
        vec!["--help"],
        vec!["build", "--help"],
        vec!["copy", "--help"],
        vec!["validate", "--help"],
        vec!["bundle", "push", "--help"],
    ] {
        let out = talext(BIN).args(&cmd).ok();
        assert!(out.stdout.contains("Examples:"), "{cmd:?}: {}", out.stdout);
    }
}

#[test]
fn usage_errors_exit_1() {
    let out = talext(BIN).arg("--no-such-flag").fails_with(1);
    assert!(out.stderr.contains("--no-such-flag"), "{}", out.stderr);
    talext(BIN).arg("copy").fails_with(1);
    talext(BIN).args(["completions", "tcsh"]).fails_with(1);
    // No subcommand: clap prints the help on stderr, still a usage error.
    talext(BIN).fails_with(1);
}

#[test]
fn completions_for_each_shell() {
    let bash = talext(BIN).args(["completions", "bash"]).ok();
    assert!(bash.stdout.contains("_talext"), "{}", bash.stdout);
    assert!(bash.stdout.contains("copy"), "{}", bash.stdout);
    let zsh = talext(BIN).args(["completions", "zsh"]).ok();
    assert!(zsh.stdout.starts_with("#compdef talext"), "{}", zsh.stdout);
    let fish = talext(BIN).args(["completion", "fish"]).ok();
    assert!(
        fish.stdout.contains("complete -c talext"),
        "{}",
        fish.stdout
    );
    // bash reads the script without a syntax error.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("talext.bash");
    std::fs::write(&script, &bash.stdout).unwrap();
    let status = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn man_pages_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let man = dir.path().join("man1");
    talext(BIN).arg("man").arg(&man).ok();
    for page in [
        "talext.1",
        "talext-build.1",
        "talext-copy.1",
        "talext-validate.1",
        "talext-bundle-push.1",
    ] {
        let text = std::fs::read_to_string(man.join(page))
            .unwrap_or_else(|e| panic!("reading `{page}`: {e}"));
        assert!(
            text.starts_with(".ie \\n(.g") || text.contains(".TH"),
            "{page}"
        );
    }
    let copy = std::fs::read_to_string(man.join("talext-copy.1")).unwrap();
    assert!(copy.contains("Examples"), "{copy}");
}

#[test]
fn verbose_shows_info_logs() {
    let dir = tempfile::tempdir().unwrap();
    let src = layout(&dir.path().join("src"));
    let quiet = talext(BIN)
        .args(["copy", &src])
        .arg(format!("oci:{}:v1", dir.path().join("a").display()))
        .ok();
    assert!(!quiet.stderr.contains("copying blob"), "{}", quiet.stderr);
    let verbose = talext(BIN)
        .args(["-v", "copy", &src])
        .arg(format!("oci:{}:v1", dir.path().join("b").display()))
        .ok();
    assert!(
        verbose.stderr.contains("copying blob"),
        "{}",
        verbose.stderr
    );
    // `RUST_LOG` wins over `-v`.
    let ruled = talext(BIN)
        .env("RUST_LOG", "error")
        .args(["-vv", "copy", &src])
        .arg(format!("oci:{}:v1", dir.path().join("c").display()))
        .ok();
    assert!(!ruled.stderr.contains("copying blob"), "{}", ruled.stderr);
}

#[test]
fn closed_stdout_ends_quietly_with_141() {
    let dir = tempfile::tempdir().unwrap();
    let src = layout(&dir.path().join("src"));
    let cache = dir.path().join("cache").display().to_string();
    for args in [
        vec!["inspect", "--json", src.as_str()],
        vec!["inspect", src.as_str()],
        vec!["completions", "bash"],
        // The cache listing, printed in one write.
        vec!["cache", "ls", "--cache-dir", cache.as_str()],
        vec!["--help"],
    ] {
        // A pipe whose read end is closed before talext starts: every write meets `EPIPE`.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = command(BIN)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(
            matches!(out.status.code(), Some(0) | Some(141)),
            "{args:?}: {:?} {stderr}",
            out.status
        );
        if args[0] != "--help" {
            assert_eq!(out.status.code(), Some(141), "{args:?}: {stderr}");
            assert!(stderr.is_empty(), "{args:?}: {stderr}");
        }
    }
    // And through a shell pipe, as users write it.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("'{BIN}' inspect --json '{src}' | head -1"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "{");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

const TAILSCALE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../extension/tailscale");

/// A copy of the Tailscale definition directory in `dir`.
fn definition_copy(dir: &Path) -> std::path::PathBuf {
    let def = dir.join("tailscale");
    std::fs::create_dir_all(&def).unwrap();
    for file in ["extension.yaml", "tailscale.yaml"] {
        std::fs::copy(Path::new(TAILSCALE).join(file), def.join(file)).unwrap();
    }
    def
}

#[test]
fn plan_prints_the_definition_format_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let def = definition_copy(dir.path());
    let first = talext(BIN)
        .arg("plan")
        .arg(&def)
        .args(["--version", "9.9.9", "--platform", "linux/arm64"])
        .args(["--source", "tailscale=oci:elsewhere:v1"])
        .current_dir(dir.path())
        .ok();
    for key in [
        "compatibility:\n  talos:",
        "platforms:",
        "sources:",
        "location:",
    ] {
        assert!(first.stdout.contains(key), "{key}: {}", first.stdout);
    }
    assert!(
        !first.stdout.contains("source_date_epoch"),
        "{}",
        first.stdout
    );
    assert!(!first.stdout.contains(": null"), "{}", first.stdout);
    let elsewhere = format!("oci:{}:v1", dir.path().join("elsewhere").display());
    assert!(first.stdout.contains(&elsewhere), "{}", first.stdout);
    // What plan printed is a definition: fed back, it plans to the same thing.
    std::fs::write(def.join("extension.yaml"), &first.stdout).unwrap();
    let second = talext(BIN).arg("plan").arg(&def).ok();
    assert_eq!(first.stdout, second.stdout);
    // `--json`: the definition's keys under `extension`.
    let out = json(&talext(BIN).args(["plan", "--json"]).arg(&def).ok().stdout);
    assert_eq!(out["sourceDateEpoch"], 0);
    assert_eq!(out["extension"]["version"], "9.9.9");
    assert_eq!(out["extension"]["compatibility"]["talos"], ">= v1.7.0");
    assert_eq!(
        out["extension"]["sources"]["tailscale"]["location"],
        elsewhere
    );
    assert_eq!(
        out["extension"]["platforms"],
        serde_json::json!(["linux/arm64"])
    );
}

#[test]
fn extension_version_env_twin_is_not_talext_version() {
    let plan = |env: &[(&str, &str)]| {
        let mut cmd = talext(BIN).args(["plan", "--json", TAILSCALE]);
        for (k, v) in env {
            cmd = cmd.env(k, v);
        }
        cmd.ok()
    };
    let pinned = plan(&[("TALEXT_VERSION", "0.1.0")]);
    assert_eq!(json(&pinned.stdout)["extension"]["version"], "1.102.5");
    assert!(
        pinned.stderr.contains("`TALEXT_VERSION` is ignored")
            && pinned.stderr.contains("`TALEXT_EXTENSION_VERSION`"),
        "{}",
        pinned.stderr
    );
    let relabelled = plan(&[("TALEXT_EXTENSION_VERSION", "2.0.0")]);
    assert_eq!(json(&relabelled.stdout)["extension"]["version"], "2.0.0");
    assert!(relabelled.stderr.is_empty(), "{}", relabelled.stderr);
}

#[test]
fn copy_json_reports_what_moved() {
    let dir = tempfile::tempdir().unwrap();
    let src = layout(&dir.path().join("src"));
    let dst = format!("oci:{}:v1", dir.path().join("dst").display());
    let first = talext(BIN).args(["copy", "--json", &src, &dst]).ok();
    let report = json(&first.stdout);
    assert!(report["digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(
        report["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(report["manifests"], 1);
    assert_eq!(report["blobsCopied"], 2);
    assert_eq!(report["blobsSkipped"], 0);
    assert_eq!(report["source"], src);
    assert_eq!(report["destination"], dst);
    let again = json(&talext(BIN).args(["copy", "--json", &src, &dst]).ok().stdout);
    assert_eq!(again["blobsCopied"], 0);
    assert_eq!(again["blobsSkipped"], 2);
    // Without `--json`, stdout is the digest alone.
    let plain = talext(BIN).args(["copy", &src, &dst]).ok();
    assert_eq!(plain.stdout.trim(), report["digest"].as_str().unwrap());
}

/// Run `talext` with `stdin` fed to it.
fn with_stdin(args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = command(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn copy_credentials_per_side() {
    let src_reg = Registry::plain_with_auth("alice", "src-secret-1");
    let dst_reg = Registry::plain_with_auth("bob", "dst-secret-2");
    let dir = tempfile::tempdir().unwrap();
    let layout = layout(&dir.path().join("src"));
    let src = format!("docker://{}/ext/a:v1", src_reg.addr);
    let dst = format!("docker://{}/mirror/a:v1", dst_reg.addr);
    let fast = ["--retry-max", "0"];
    // Seed the source registry: `--dest-creds` with the password inline.
    talext(BIN)
        .args(["copy", &layout, &src, "--dest-creds", "alice:src-secret-1"])
        .args(fast)
        .ok();
    // Each side with its own user; the destination's password from stdin.
    let out = with_stdin(
        &[
            "copy",
            &src,
            &dst,
            "--src-creds",
            "alice:src-secret-1",
            "--dest-creds",
            "bob",
            "--dest-password-stdin",
            "--retry-max",
            "0",
        ],
        "dst-secret-2\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The source's credential is not sent to the destination.
    let out = talext(BIN)
        .args(["copy", &src, &dst, "--src-creds", "alice:src-secret-1"])
        .args(fast)
        .fails_with(1);
    assert!(out.stderr.contains(&dst_reg.addr), "{}", out.stderr);
    assert!(!out.stderr.contains(&src_reg.addr), "{}", out.stderr);
    // The password of a side comes from its env twin; a wrong one is refused, never echoed.
    let out = talext(BIN)
        .args([
            "copy",
            &src,
            &dst,
            "--src-creds",
            "alice",
            "--dest-creds",
            "bob",
        ])
        .env("TALEXT_SRC_PASSWORD", "src-secret-1")
        .env("TALEXT_DEST_PASSWORD", "wrong-secret-3")
        .args(fast)
        .fails_with(1);
    assert!(out.stderr.contains("credentials refused"), "{}", out.stderr);
    for secret in ["src-secret-1", "dst-secret-2", "wrong-secret-3"] {
        assert!(!out.stderr.contains(secret), "{}", out.stderr);
    }
    // A user without a password says where one may come from.
    let out = talext(BIN)
        .args(["copy", &src, &dst, "--src-creds", "alice"])
        .fails_with(1);
    assert!(out.stderr.contains("TALEXT_SRC_PASSWORD"), "{}", out.stderr);
    // Env twins of the flags work too, and their values stay out of `--help`.
    let help = talext(BIN)
        .args(["copy", "--help"])
        .env("TALEXT_SRC_CREDS", "alice:src-secret-1")
        .ok();
    assert!(!help.stdout.contains("src-secret-1"), "{}", help.stdout);
}

#[test]
fn self_signed_ca_certificate_given_with_ca_file_is_accepted() {
    let reg = Registry::tls_self_signed_ca();
    let cert = reg.ca.clone().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = layout(&dir.path().join("src"));
    let dst = format!("docker://{}/self/signed:v1", reg.addr);
    let fast = ["--retry-max", "0"];
    // Without `--ca-file` the certificate is unknown: refused at once, with the hint.
    let out = talext(BIN).args(["copy", &src, &dst]).args(fast).run();
    assert_ne!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stderr.contains("--ca-file"), "{}", out.stderr);
    // With it, the certificate that is its own CA is the server's and is accepted.
    talext(BIN)
        .args(["copy", &src, &dst, "--ca-file"])
        .arg(&cert)
        .args(fast)
        .ok();
    let out = talext(BIN)
        .args(["inspect", "--json", &dst, "--ca-file"])
        .arg(&cert)
        .ok();
    assert!(json(&out.stdout).is_object());
    // Another self-signed CA does not stand in for it: only the exact certificate is accepted.
    let other = tempfile::tempdir().unwrap();
    let (other_cert, _) = talext_kit::registry::make_self_signed_ca(other.path());
    let out = talext(BIN)
        .args(["inspect", &dst, "--ca-file"])
        .arg(&other_cert)
        .args(fast)
        .run();
    assert_ne!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stderr.to_lowercase().contains("certificate"),
        "{}",
        out.stderr
    );
}

fn auth_entry(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!(r#"{{"auth":"{auth}"}}"#)
}

#[test]
fn auth_file_keys_scoped_to_a_namespace() {
    let reg = Registry::plain_with_auth("ci", "right-secret");
    let dir = tempfile::tempdir().unwrap();
    let src = layout(&dir.path().join("src"));
    let auth = dir.path().join("auth.json");
    // The registry-wide key is stale; `team` has the right password, `team/legacy` a stale one.
    std::fs::write(
        &auth,
        format!(
            r#"{{"auths":{{"{a}":{stale},"{a}/team":{right},"{a}/team/legacy":{stale}}}}}"#,
            a = reg.addr,
            stale = auth_entry("ci", "stale-secret"),
            right = auth_entry("ci", "right-secret"),
        ),
    )
    .unwrap();
    let copy = |repo: &str| {
        talext(BIN)
            .args(["copy", &src])
            .arg(format!("docker://{}/{repo}:v1", reg.addr))
            .arg("--auth-file")
            .arg(&auth)
            .args(["--retry-max", "0"])
            .run()
    };
    let ok = copy("team/app");
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);
    for repo in [
        "team/legacy",
        "team/legacy/old",
        "other/app",
        "teamwork/app",
    ] {
        let out = copy(repo);
        assert_eq!(out.code, Some(1), "{repo}: {}", out.stderr);
        assert!(
            out.stderr.contains("credentials refused"),
            "{repo}: {}",
            out.stderr
        );
        assert!(!out.stderr.contains("secret"), "{repo}: {}", out.stderr);
    }
}

#[test]
fn anonymous_and_refused_read_differently() {
    let reg = Registry::plain_with_auth("ci", "right-secret");
    let dir = tempfile::tempdir().unwrap();
    let src = layout(&dir.path().join("src"));
    let dst = format!("docker://{}/ext/app:v1", reg.addr);
    let anonymous = talext(BIN)
        .args(["copy", &src, &dst, "--retry-max", "0"])
        .fails_with(1);
    assert!(
        anonymous.stderr.contains("authentication required")
            && anonymous.stderr.contains("none were sent")
            && !anonymous.stderr.contains("credentials refused"),
        "{}",
        anonymous.stderr
    );
    assert!(
        anonymous.stderr.contains("hint: pass `--username`"),
        "{}",
        anonymous.stderr
    );
    let refused = talext(BIN)
        .args([
            "copy",
            &src,
            &dst,
            "--retry-max",
            "0",
            "--dest-creds",
            "ci:wrong-secret",
        ])
        .fails_with(1);
    assert!(
        refused.stderr.contains("credentials refused")
            && !refused.stderr.contains("authentication required"),
        "{}",
        refused.stderr
    );
    assert!(
        refused
            .stderr
            .contains("hint: check the user name and password"),
        "{}",
        refused.stderr
    );
    assert!(
        !refused.stderr.contains("wrong-secret"),
        "{}",
        refused.stderr
    );
}

#[test]
fn unreachable_registries_fail_fast_with_an_address_hint() {
    let port = talext_kit::registry::free_port();
    let start = std::time::Instant::now();
    let out = talext(BIN)
        .args(["inspect", &format!("docker://127.0.0.1:{port}/ext/app:v1")])
        .fails_with(2);
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(
        out.stderr
            .contains(&format!("cannot connect to `127.0.0.1:{port}`")),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("hint: check the registry's address and port"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("--retry-max"), "{}", out.stderr);
    assert!(!out.stderr.contains("retrying"), "{}", out.stderr);

    let start = std::time::Instant::now();
    let out = talext(BIN)
        .args([
            "inspect",
            "docker://registry.talext-test.invalid/ext/app:v1",
        ])
        .fails_with(2);
    assert!(
        start.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert!(
        out.stderr
            .contains("cannot resolve `registry.talext-test.invalid`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("hint: check the registry's host name"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("--retry-max"), "{}", out.stderr);
}

#[test]
fn bundle_push_mirror_hint_names_the_scheme_the_registry_answered_on() {
    let upstream = Registry::plain();
    let mirror = Registry::plain();
    let dir = tempfile::tempdir().unwrap();
    let src = layout(&dir.path().join("src"));
    let image = format!("{}/ext/app:v1", upstream.addr);
    talext(BIN).args(["copy", &src, &image]).ok();
    let bundle = dir.path().join("airgap.tar");
    talext(BIN)
        .args(["bundle", "create", "-o"])
        .arg(&bundle)
        .arg(&image)
        .ok();
    let out = talext(BIN)
        .args(["bundle", "push"])
        .arg(&bundle)
        .arg(format!("{}/air", mirror.addr))
        .ok();
    let hint = format!(
        "Talos mirror for `{}`: endpoint `http://{}/v2/air` with `overridePath: true`",
        upstream.addr, mirror.addr
    );
    assert!(out.stderr.contains(&hint), "{}", out.stderr);
    assert!(!out.stderr.contains("https://"), "{}", out.stderr);
}

#[test]
fn service_file_problems_are_reported_once_at_the_definition_line() {
    let dir = tempfile::tempdir().unwrap();
    let def = definition_copy(dir.path());
    let service = def.join("tailscale.yaml");
    let good = std::fs::read_to_string(&service).unwrap();
    let payload = talext_kit::payload::tailscale_standin(&dir.path().join("payload"));
    let source = format!("tailscale={}", payload.display());
    let build = |out: &str| {
        talext(BIN)
            .arg("build")
            .arg(&def)
            .args(["--source", &source, "--no-cache", "--output"])
            .arg(format!("oci:{}", dir.path().join(out).display()))
    };

    // Keys Talos ignores: a warning each, at its line, with the key meant; the build goes on.
    let typo = good
        .replace("writeableRootfs: false", "writableRootfs: false")
        .replace("restart: always", "restart: always\nrestarts: never");
    std::fs::write(&service, &typo).unwrap();
    let out = build("typo").ok();
    let line_of =
        |text: &str, needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let shown = service.display().to_string();
    for (key, meant) in [
        ("writableRootfs", "writeableRootfs"),
        ("restarts", "restart"),
    ] {
        let at = format!("{shown}:{}", line_of(&typo, &format!("{key}:")));
        let warnings: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.contains("service-unknown-key") && l.contains(&format!("{key}`")))
            .collect();
        assert_eq!(warnings.len(), 1, "once, not per platform: {}", out.stderr);
        assert!(
            warnings[0].contains(&at) && warnings[0].contains(&format!("did you mean `{meant}`?")),
            "{}",
            out.stderr
        );
    }
    assert!(
        !out.stderr.contains("rootfs/usr/local/etc/containers"),
        "{}",
        out.stderr
    );

    // What Talos refuses stops the build before any platform, at the definition's line.
    let bad = good.replace("restart: always", "restart: sometimes");
    std::fs::write(&service, &bad).unwrap();
    let out = build("bad").fails_with(1);
    let at = format!("{shown}:{}", line_of(&bad, "restart: sometimes"));
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("error[service-restart]"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", out.stderr);
    assert!(errors[0].contains(&at), "{}", out.stderr);
    assert!(!dir.path().join("bad").exists());
}

#[test]
fn login_stores_a_checked_credential_every_reader_finds() {
    use std::os::unix::fs::PermissionsExt;
    let reg = Registry::tls_with_auth("ci", "login-secret-5");
    let ca = reg.ca.clone().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = layout(&dir.path().join("src"));
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let stored = home.join(".config/containers/auth.json");
    // Each run with this test's own HOME: the default credentials file is under it.
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut cmd = talext_kit::tools::command(BIN);
        cmd.args(args);
        if args[0] != "logout" {
            cmd.arg("--ca-file").arg(&ca).args(["--retry-max", "0"]);
        }
        cmd.env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.unwrap_or("").as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let dst = format!("docker://{}/team/app:v1", reg.addr);
    let login = |password: &str| {
        run(
            &["login", &reg.addr, "--username", "ci", "--password-stdin"],
            Some(&format!("{password}\n")),
        )
    };

    // A wrong password is refused by the registry, and nothing is written.
    let out = login("wrong-secret-6");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(!stored.exists());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("wrong-secret-6"));

    // The right one is stored 0600, never shown, and every later command uses it.
    let out = login("login-secret-5");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("login-secret-5") && out.stdout.is_empty(),
        "{stderr}"
    );
    let mode = std::fs::metadata(&stored).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let doc = json(&std::fs::read_to_string(&stored).unwrap());
    assert!(doc["auths"][&reg.addr]["auth"].is_string(), "{doc}");
    let out = run(&["copy", &src, &dst], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // skopeo reads the same file.
    talext_kit::tools::skopeo()
        .args(["inspect", "--raw", "--tls-verify=false", "--authfile"])
        .arg(&stored)
        .arg(&dst)
        .ok();

    // `logout` removes it; the registry then refuses the copy.
    let out = run(&["logout", &reg.addr], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json(&std::fs::read_to_string(&stored).unwrap());
    assert!(doc["auths"].get(&reg.addr).is_none(), "{doc}");
    let out = run(&["copy", &src, &dst], None);
    assert_eq!(out.status.code(), Some(1));
    let out = run(&["logout", &reg.addr], None);
    assert_eq!(out.status.code(), Some(1), "nothing left to remove");
}

/// A minimal extension definition in `dir` whose one source is `location`: busybox at
/// `/usr/local/bin/busybox`.
fn busybox_definition(dir: &Path, name: &str, location: &str, from: &str) -> std::path::PathBuf {
    let def = dir.join(name);
    std::fs::create_dir_all(&def).unwrap();
    std::fs::write(
        def.join("extension.yaml"),
        format!(
            "name: {name}\nversion: 1.35.0\nauthor: tests\ndescription: busybox from a package\n\
             compatibility:\n  talos: \">= v1.7.0\"\nplatforms: [linux/amd64, linux/arm64]\n\
             sources:\n  bb:\n    location: {location}\npayload:\n  - source: bb\n    from: {from}\n    include: [busybox]\n    to: /usr/local/bin\n"
        ),
    )
    .unwrap();
    def
}

#[test]
fn packages_and_tarballs_are_sources_for_every_platform() {
    let dir = tempfile::tempdir().unwrap();
    // The packages, and tarballs of their files: gzip and xz compressed.
    let pkgs = dir.path().join("pkgs");
    std::fs::create_dir_all(&pkgs).unwrap();
    for arch in ["amd64", "arm64"] {
        let deb = talext_kit::payload::deb(arch);
        std::fs::copy(&deb, pkgs.join(format!("busybox_{arch}.deb"))).unwrap();
        let unpacked = dir.path().join(format!("unpacked-{arch}"));
        command("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(&unpacked)
            .status()
            .unwrap();
        for (ext, flag) in [("tar.gz", "-z"), ("tar.xz", "-J")] {
            let out = std::process::Command::new("tar")
                .arg(flag)
                .arg("-cf")
                .arg(pkgs.join(format!("busybox_{arch}.{ext}")))
                .arg("-C")
                .arg(&unpacked)
                .arg(".")
                .status()
                .unwrap();
            assert!(out.success());
        }
    }
    let cases = [
        (
            "bb-deb",
            format!("deb:{}/busybox_{{arch}}.deb", pkgs.display()),
        ),
        (
            "bb-targz",
            format!("tar:{}/busybox_{{arch}}.tar.gz", pkgs.display()),
        ),
        (
            "bb-tarxz",
            format!("tar:{}/busybox_{{arch}}.tar.xz", pkgs.display()),
        ),
    ];
    let mut digests = Vec::new();
    for (name, location) in &cases {
        let def = busybox_definition(dir.path(), name, location, "bin");
        let out = dir.path().join(format!("out-{name}"));
        let built = talext(BIN)
            .arg("build")
            .arg(&def)
            .args(["--no-cache", "--output"])
            .arg(format!("oci:{}:v1", out.display()))
            .ok();
        digests.push(built.stdout.trim().to_string());
        // Each platform holds its own architecture's busybox (validate checks the ELF machine).
        for arch in ["amd64", "arm64"] {
            talext(BIN)
                .args(["validate", &format!("oci:{}:v1", out.display())])
                .args(["--platform", &format!("linux/{arch}"), "--pkg-name", name])
                .args(["--talos-version", "v1.13.0"])
                .ok();
        }
    }
    assert_eq!(digests.len(), 3);

    // Several definitions in one run (`talext build extension/*`): a README among them is
    // skipped, the output and the receipt name each definition with `{name}`.
    let many = dir.path().join("many");
    std::fs::create_dir_all(&many).unwrap();
    std::fs::write(many.join("README.md"), "definitions\n").unwrap();
    let mut args: Vec<std::path::PathBuf> = vec![many.join("README.md")];
    for (name, location) in &cases[..2] {
        args.push(busybox_definition(&many, name, location, "bin"));
    }
    let out_tpl = format!("oci:{}/{{name}}:v1", dir.path().join("all").display());
    let receipt_tpl = format!("{}/{{name}}.json", dir.path().join("receipts").display());
    std::fs::create_dir_all(dir.path().join("receipts")).unwrap();
    let built = talext(BIN)
        .arg("build")
        .args(&args)
        .args([
            "--no-cache",
            "--output",
            &out_tpl,
            "--receipt",
            &receipt_tpl,
            "--json",
        ])
        .ok();
    let receipts = json(&built.stdout);
    assert_eq!(receipts.as_array().unwrap().len(), 2, "{receipts}");
    assert!(
        built.stderr.contains("built 2 definitions"),
        "{}",
        built.stderr
    );
    for (i, (name, _)) in cases[..2].iter().enumerate() {
        assert_eq!(receipts[i]["name"], *name);
        assert_eq!(
            receipts[i]["digest"],
            digests[i].as_str(),
            "same bytes as built alone"
        );
        assert!(dir
            .path()
            .join("all")
            .join(name)
            .join("index.json")
            .is_file());
        assert!(dir
            .path()
            .join("receipts")
            .join(format!("{name}.json"))
            .is_file());
    }
    // Without `{name}` the outputs would collide: refused before anything is built.
    let out = talext(BIN)
        .arg("build")
        .args(&args)
        .args(["--no-cache", "--output", "oci:one-for-all"])
        .fails_with(1);
    assert!(out.stderr.contains("{name}"), "{}", out.stderr);

    // A bzip2 tarball is refused by name.
    let bz = pkgs.join("x.tar.bz2");
    std::fs::write(&bz, b"BZh91AY&SY").unwrap();
    let def = busybox_definition(dir.path(), "bb-bz", &format!("tar:{}", bz.display()), "bin");
    let out = talext(BIN)
        .arg("build")
        .arg(&def)
        .args(["--no-cache", "--output"])
        .arg(format!("oci:{}", dir.path().join("never").display()))
        .fails_with(1);
    assert!(out.stderr.contains("bzip2"), "{}", out.stderr);
    assert!(!dir.path().join("never").exists());
}

#[test]
fn talext_builds_its_own_image_and_the_binary_inside_runs() {
    let dir = tempfile::tempdir().unwrap();
    // The binary `ci/dist.sh` would place in `dist/amd64/`: here, the one under test.
    let bin_dir = dir.path().join("bin/amd64");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::fs::copy(BIN, bin_dir.join("talext")).unwrap();
    let def = concat!(env!("CARGO_MANIFEST_DIR"), "/../extension/talext");
    let layout = dir.path().join("image");
    let image = format!("oci:{}:0.1.0", layout.display());
    talext(BIN)
        .args(["build", def, "--no-cache", "--output", &image])
        .arg("--source")
        .arg(format!("talext={}/bin/{{arch}}", dir.path().display()))
        .ok();
    talext(BIN)
        .args(["validate", &image, "--talos-version", "v1.13.0"])
        .ok();
    let raw = talext_kit::tools::skopeo()
        .args(["inspect", "--raw", &image])
        .ok()
        .stdout;
    assert!(json(&raw)["manifests"].is_array(), "{raw}");
    let root = talext_kit::tools::umoci_unpack(&layout, "0.1.0", &dir.path().join("bundle"));
    let inside = root.join("rootfs/usr/local/bin/talext");
    let out = std::process::Command::new(&inside)
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("talext 0."),
        "{out:?}"
    );

    // The GitHub Action installs it from the image: its step, run as the runner would (with
    // `GITHUB_ACTION_PATH` and `GITHUB_PATH`), puts a working binary on the PATH.
    let ci = concat!(env!("CARGO_MANIFEST_DIR"), "/../ci/setup-talext");
    let action: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(format!("{ci}/action.yml")).unwrap())
            .unwrap();
    let step = &action["runs"]["steps"][0];
    assert_eq!(action["runs"]["using"], "composite");
    let dest = dir.path().join("installed");
    let github_path = dir.path().join("github_path");
    let run = std::process::Command::new("bash")
        .arg("-c")
        .arg(step["run"].as_str().unwrap())
        .env("GITHUB_ACTION_PATH", ci)
        .env("GITHUB_PATH", &github_path)
        .env("TALEXT_IMAGE", &image)
        .env("TALEXT_DEST", &dest)
        .output()
        .unwrap();
    assert!(run.status.success(), "{run:?}");
    assert!(
        String::from_utf8_lossy(&run.stdout).starts_with("talext 0."),
        "{run:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&github_path).unwrap().trim(),
        dest.display().to_string()
    );
    let installed = std::process::Command::new(dest.join("talext"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(installed.status.success());
}

#[test]
fn init_scaffolds_a_definition_that_builds_once_its_payload_is_there() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| talext(BIN).args(args).current_dir(dir.path());
    run(&["init", "demo", "--service"]).ok();
    let def = dir.path().join("extension/demo");
    assert!(def.join("extension.yaml").is_file() && def.join("demo.yaml").is_file());
    // Never over what exists.
    let again = run(&["init", "demo"]).fails_with(1);
    assert!(
        again.stderr.contains("never overwrites"),
        "{}",
        again.stderr
    );
    run(&["init", "Bad Name"]).fails_with(1);
    // The payload the comments ask for: the service's entrypoint for each platform.
    for arch in ["amd64", "arm64"] {
        let bin = def.join(format!("payload/{arch}/usr/local/bin"));
        std::fs::create_dir_all(&bin).unwrap();
        let target = bin.join("demo");
        std::fs::copy(talext_kit::payload::busybox(arch), &target).unwrap();
    }
    let out = format!("oci:{}:v1", dir.path().join("out").display());
    run(&["build", "extension/demo", "--no-cache", "--output", &out]).ok();
    run(&["validate", &out, "--talos-version", "v1.13.0"]).ok();
    // Its contract renders the service's configuration.
    let esc = talext(BIN)
        .args(["config", "esc", "extension/demo", "--env", "DEMO_TOKEN"])
        .env("DEMO_TOKEN", "t0k")
        .current_dir(dir.path())
        .ok();
    assert!(
        esc.stdout.contains("name: demo") && esc.stdout.contains("DEMO_TOKEN=t0k"),
        "{}",
        esc.stdout
    );
}

/// `talext build extension/*` over the repository's own definitions: the README among them is
/// skipped, each `--source` goes to the definition that declares it, every definition builds;
/// a `--source` no definition declares, and `--version` with several, are refused.
#[test]
fn every_definition_in_the_repository_builds_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let standin = talext_kit::payload::tailscale_standin(&dir.path().join("standin"));
    let bin_dir = dir.path().join("bin/amd64");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::fs::copy(BIN, bin_dir.join("talext")).unwrap();
    let ext = concat!(env!("CARGO_MANIFEST_DIR"), "/../extension");
    let mut all: Vec<std::path::PathBuf> = std::fs::read_dir(ext)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    all.sort();
    let definitions: Vec<String> = all
        .iter()
        .filter(|p| p.join("extension.yaml").is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(definitions.len() >= 2, "{definitions:?}");
    assert!(all.iter().any(|p| p.is_file()), "a README among them");
    let sources = [
        format!("tailscale={}", standin.display()),
        format!("talext={}/bin/{{arch}}", dir.path().display()),
    ];
    let out_tpl = format!("oci:{}/{{name}}:v1", dir.path().join("out").display());
    let built = talext(BIN)
        .arg("build")
        .args(&all)
        .args(["--source", &sources[0], "--source", &sources[1]])
        .args(["--no-cache", "--output", &out_tpl, "--json"])
        .ok();
    let receipts = json(&built.stdout);
    let names: Vec<&str> = receipts
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, definitions);
    for name in &definitions {
        assert!(dir
            .path()
            .join("out")
            .join(name)
            .join("index.json")
            .is_file());
    }
    let out = talext(BIN)
        .arg("build")
        .args(&all)
        .args(["--source", "nosuch=/tmp", "--output", &out_tpl])
        .fails_with(1);
    assert!(
        out.stderr
            .contains("none of the definitions has a source named `nosuch`"),
        "{}",
        out.stderr
    );
    let out = talext(BIN)
        .arg("build")
        .args(&all)
        .args(["--version", "9.9.9", "--output", &out_tpl])
        .fails_with(1);
    assert!(
        out.stderr
            .contains("`--version` names one definition's version"),
        "{}",
        out.stderr
    );
}
