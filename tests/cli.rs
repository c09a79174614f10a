//! The command line through the binary: `--version`, `-v`, completions, man pages and examples,
//! exit codes of usage errors and of a closed stdout, env twins, `--json` shapes, per-side
//! credentials of `copy`, and the registry edges skopeo users expect (a CA certificate used as
//! the server's own, namespace-scoped `auth.json` keys, distinct authentication failures, no
//! long retries when nothing listens).

use std::path::Path;
use std::process::Stdio;

use serde_json::Value;
use talext_kit::registry::{write_oci_layout, TestImage};
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
    assert!(fish.stdout.contains("complete -c talext"), "{}", fish.stdout);
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
        assert!(text.starts_with(".ie \\n(.g") || text.contains(".TH"), "{page}");
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
    assert!(verbose.stderr.contains("copying blob"), "{}", verbose.stderr);
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
    for args in [
        vec!["inspect", "--json", src.as_str()],
        vec!["inspect", src.as_str()],
        vec!["completions", "bash"],
        vec!["--help"],
    ] {
        let mut child = command(BIN)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Close the read end before talext writes anything.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(
            matches!(out.status.code(), Some(0) | Some(141)),
            "{args:?}: {:?} {stderr}",
            out.status
        );
        if args[0] == "inspect" {
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

#[allow(dead_code)]
fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}
