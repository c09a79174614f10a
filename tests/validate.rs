//! `talext validate` run as a binary over every case in `tests/fixtures/validate/`. Each case is an
//! unpacked extension image (`manifest.yaml` + `rootfs/`) and an `expect.yaml`:
//!
//! ```yaml
//! rules: [path-not-allowed]   # the exact set of rule ids reported; [] for a good case
//! exit: 0                     # optional; default 1 when rules is non-empty, else 0
//! args: [--arch, amd64]       # optional extra flags
//! source: tar                 # optional: dir (default), tar, tar-gzip or oci (packed by the test)
//! image: {platform: none}     # optional, with `source: oci`: how to damage the image structure
//! setup:                      # optional: entries git cannot store, made by the test
//!   - {kind: hardlink, path: rootfs/usr/local/bin/b, target: rootfs/usr/local/bin/a}
//! ```
//!
//! Setup kinds on the copied directory: `dir` (empty directory), `mode`, `elf` (a minimal ELF
//! header for `machine`), `fifo`, `socket`. Kinds only a tarball can carry: `hardlink`,
//! `chardev`, `duplicate`, `escape` (a raw `..` name), `emptyname`, `xattr` (a PAX xattr record).

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    rules: Vec<String>,
    #[serde(default)]
    exit: Option<i32>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    setup: Vec<Setup>,
    #[serde(default)]
    image: ImageSpec,
}

/// How the test shapes an `oci:` fixture (contract §2.1, §8.3): by default a correct
/// single-platform linux/amd64 image, indexed, with the platform manifest also listed directly
/// in `index.json`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageSpec {
    /// `none` drops the platform from the index entry.
    #[serde(default)]
    platform: Option<String>,
    /// Architecture written into the config (default amd64).
    #[serde(default)]
    config_arch: Option<String>,
    /// Leave the platform manifest out of `index.json` (only the tagged index is listed).
    #[serde(default)]
    no_direct_entry: bool,
    /// Add a Docker schema 1 manifest to the index.
    #[serde(default)]
    schema1: bool,
    /// Add an index entry whose media type is not an image manifest.
    #[serde(default)]
    artifact: bool,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
enum Setup {
    Dir { path: String },
    Mode { path: String, mode: String },
    Elf { path: String, machine: u16 },
    Fifo { path: String },
    Socket { path: String },
    Hardlink { path: String, target: String },
    Chardev { path: String },
    Duplicate { path: String },
    Escape { path: String },
    Emptyname,
    Xattr { path: String, name: String },
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/validate")
}

fn talext(args: &[&str]) -> Output {
    talext_kit::tools::command(env!("CARGO_BIN_EXE_talext"))
        .args(args)
        .env_remove("TALEXT_TALOS_VERSION")
        .env_remove("TALEXT_ARCH")
        .env_remove("TALEXT_PKG_NAME")
        .output()
        .expect("running talext")
}

/// A minimal 64-bit little-endian ELF header.
fn elf(machine: u16) -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = 2;
    h[5] = 1;
    h[6] = 1;
    h[16] = 2;
    h[18..20].copy_from_slice(&machine.to_le_bytes());
    h
}

/// Copy a directory, keeping symlinks and modes.
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    let mut names: Vec<_> = fs::read_dir(from)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for name in names {
        let (src, dst) = (from.join(&name), to.join(&name));
        let meta = fs::symlink_metadata(&src).unwrap();
        if meta.file_type().is_symlink() {
            symlink(fs::read_link(&src).unwrap(), &dst).unwrap();
        } else if meta.is_dir() {
            copy_tree(&src, &dst);
        } else {
            fs::copy(&src, &dst).unwrap();
            fs::set_permissions(&dst, meta.permissions()).unwrap();
        }
    }
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(0);
    h
}

/// Pack `root` into a plain tar the way `crane export` lays it out (no `./` prefix).
fn pack(root: &Path, setup: &[Setup]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut paths = Vec::new();
    collect(root, root, &mut paths);
    for rel in &paths {
        let full = root.join(rel);
        let meta = fs::symlink_metadata(&full).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        for s in setup {
            if let Setup::Xattr { path, name } = s {
                if path == rel {
                    let key = format!("SCHILY.xattr.{name}");
                    b.append_pax_extensions([(key.as_str(), &b"\x01\x00\x00\x02"[..])])
                        .unwrap();
                }
            }
        }
        let ft = meta.file_type();
        if ft.is_symlink() {
            let mut h = header(tar::EntryType::Symlink, 0o777, 0);
            b.append_link(&mut h, rel, fs::read_link(&full).unwrap())
                .unwrap();
        } else if ft.is_dir() {
            let mut h = header(tar::EntryType::Directory, mode, 0);
            b.append_data(&mut h, format!("{rel}/"), &b""[..]).unwrap();
        } else {
            let data = fs::read(&full).unwrap();
            let mut h = header(tar::EntryType::Regular, mode, data.len() as u64);
            b.append_data(&mut h, rel, &data[..]).unwrap();
        }
    }
    for s in setup {
        match s {
            Setup::Hardlink { path, target } => {
                let mut h = header(tar::EntryType::Link, 0o755, 0);
                b.append_link(&mut h, path, target).unwrap();
            }
            Setup::Chardev { path } => {
                let mut h = header(tar::EntryType::Char, 0o600, 0);
                h.set_device_major(1).unwrap();
                h.set_device_minor(3).unwrap();
                b.append_data(&mut h, path, &b""[..]).unwrap();
            }
            Setup::Duplicate { path } => {
                let data = fs::read(root.join(path)).unwrap();
                let mut h = header(tar::EntryType::Regular, 0o755, data.len() as u64);
                b.append_data(&mut h, path, &data[..]).unwrap();
            }
            Setup::Escape { path } => raw_entry(&mut b, path),
            Setup::Emptyname => raw_entry(&mut b, ""),
            _ => {}
        }
    }
    b.into_inner().unwrap()
}

/// An empty regular file under a name `append_data` would refuse (`..`, empty).
fn raw_entry(b: &mut tar::Builder<Vec<u8>>, name: &str) {
    let mut h = header(tar::EntryType::Regular, 0o644, 0);
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_cksum();
    b.append(&h, &b""[..]).unwrap();
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for name in names {
        let full = dir.join(&name);
        out.push(
            full.strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string(),
        );
        if fs::symlink_metadata(&full).unwrap().is_dir() {
            collect(root, &full, out);
        }
    }
}

/// Prepare a fixture in `work` and return the SOURCE argument for it.
fn prepare(case: &Path, expect: &Expect, work: &Path) -> String {
    let root = work.join("image");
    copy_tree(case, &root);
    fs::remove_file(root.join("expect.yaml")).ok();
    for s in &expect.setup {
        match s {
            Setup::Dir { path } => fs::create_dir_all(root.join(path)).unwrap(),
            Setup::Mode { path, mode } => {
                let mode = u32::from_str_radix(mode, 8).unwrap();
                fs::set_permissions(root.join(path), fs::Permissions::from_mode(mode)).unwrap();
            }
            Setup::Elf { path, machine } => {
                let p = root.join(path);
                fs::create_dir_all(p.parent().unwrap()).unwrap();
                fs::write(&p, elf(*machine)).unwrap();
                fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
            }
            Setup::Fifo { path } => {
                let st = Command::new("mkfifo")
                    .arg(root.join(path))
                    .status()
                    .unwrap();
                assert!(st.success(), "mkfifo");
            }
            Setup::Socket { path } => {
                // The socket file stays behind when the listener is dropped.
                drop(std::os::unix::net::UnixListener::bind(root.join(path)).unwrap());
            }
            _ => {}
        }
    }
    match expect.source.as_deref().unwrap_or("dir") {
        "dir" => root.to_str().unwrap().to_string(),
        kind @ ("tar" | "tar-gzip") => {
            let mut bytes = pack(&root, &expect.setup);
            if kind == "tar-gzip" {
                let mut e =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(&bytes).unwrap();
                bytes = e.finish().unwrap();
            }
            let file = work.join("image.tar");
            fs::write(&file, bytes).unwrap();
            format!("tar:{}", file.display())
        }
        "oci" => {
            let layer = pack(&root, &expect.setup);
            let dir = work.join("layout");
            write_oci(&dir, &layer, &expect.image);
            format!("oci:{}:fixture", dir.display())
        }
        other => panic!("unknown source kind `{other}`"),
    }
}

fn put_blob(dir: &Path, bytes: &[u8]) -> (String, usize) {
    use sha2::Digest as _;
    let hex = hex::encode(sha2::Sha256::digest(bytes));
    fs::write(dir.join("blobs/sha256").join(&hex), bytes).unwrap();
    (format!("sha256:{hex}"), bytes.len())
}

fn write_oci(dir: &Path, layer_tar: &[u8], spec: &ImageSpec) {
    use serde_json::json;
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(layer_tar).unwrap();
    let (layer, layer_size) = put_blob(dir, &gz.finish().unwrap());
    let arch = spec.config_arch.as_deref().unwrap_or("amd64");
    let config =
        json!({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}});
    let (cfg, cfg_size) = put_blob(dir, config.to_string().as_bytes());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": cfg_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": layer_size}],
    });
    let (m, m_size) = put_blob(dir, manifest.to_string().as_bytes());
    let mut entry = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m, "size": m_size});
    if spec.platform.as_deref() != Some("none") {
        entry["platform"] = json!({"architecture": "amd64", "os": "linux"});
    }
    let mut children = vec![entry.clone()];
    if spec.schema1 {
        let (d, n) = put_blob(dir, br#"{"schemaVersion":1,"fsLayers":[]}"#);
        children.push(json!({"mediaType": "application/vnd.docker.distribution.manifest.v1+prettyjws", "digest": d, "size": n, "platform": {"architecture": "arm64", "os": "linux"}}));
    }
    if spec.artifact {
        let (d, n) = put_blob(dir, br#"{"signature":"none"}"#);
        children.push(json!({"mediaType": "application/vnd.example.signature.v1+json", "digest": d, "size": n, "platform": {"architecture": "arm", "os": "linux"}}));
    }
    let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": children});
    let (i, i_size) = put_blob(dir, index.to_string().as_bytes());
    let mut top = vec![json!({
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": i, "size": i_size,
        "annotations": {"org.opencontainers.image.ref.name": "fixture"},
    })];
    if !spec.no_direct_entry {
        top.push(entry);
    }
    let layout_index = json!({"schemaVersion": 2, "manifests": top});
    fs::write(dir.join("index.json"), layout_index.to_string()).unwrap();
}

fn load_expect(case: &Path) -> Expect {
    let text = fs::read_to_string(case.join("expect.yaml")).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", case.display()))
}

fn cases() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn every_fixture_reports_exactly_its_rules() {
    let mut failures = Vec::new();
    for case in cases() {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let expect = load_expect(&case);
        let work = tempfile::tempdir().unwrap();
        let source = prepare(&case, &expect, work.path());
        let mut args = vec!["validate", source.as_str(), "--json"];
        args.extend(expect.args.iter().map(String::as_str));
        let out = talext(&args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report: serde_json::Value = match serde_json::from_str(&stdout) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!(
                    "{name}: stdout is not JSON ({e}); stderr: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
                continue;
            }
        };
        let findings = all_findings(&report);
        let got: BTreeSet<&str> = findings
            .iter()
            .map(|f| f["rule"].as_str().unwrap())
            .collect();
        let want: BTreeSet<&str> = expect.rules.iter().map(String::as_str).collect();
        if got != want {
            failures.push(format!(
                "{name}: expected rules {want:?}, got {got:?}\n{stdout}"
            ));
        }
        let has_error = findings.iter().any(|f| f["severity"] == "error");
        let want_exit = expect.exit.unwrap_or(if want.is_empty() { 0 } else { 1 });
        let code = out.status.code().unwrap_or(-1);
        // A bare `validate` surveys every known release: errors on some of them do not fail it.
        let survey = report["survey"] == true;
        if code != want_exit
            || (!survey && (code == 1) != has_error)
            || (code == 1 && !has_error)
            || report["ok"] != (code == 0)
        {
            failures.push(format!(
                "{name}: exit {code}, expected {want_exit} (error findings: {has_error})"
            ));
        }
        for f in &findings {
            for key in ["path", "message", "hint"] {
                if f[key].as_str().is_none_or(str::is_empty) {
                    failures.push(format!("{name}: finding without a {key}: {f}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every finding of a `--json` report: each subject's own and each of its targets'.
fn all_findings(report: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut out = Vec::new();
    for s in report["subjects"].as_array().unwrap() {
        out.extend(s["findings"].as_array().unwrap());
        for t in s["targets"].as_array().into_iter().flatten() {
            out.extend(t["findings"].as_array().unwrap());
        }
    }
    out
}

/// A fixture prepared in a fresh directory: (keep-alive, SOURCE argument).
fn staged(name: &str) -> (tempfile::TempDir, String) {
    let case = fixtures().join(name);
    let work = tempfile::tempdir().unwrap();
    let source = prepare(&case, &load_expect(&case), work.path());
    (work, source)
}

#[test]
fn every_rule_has_a_fixture() {
    let mut covered = BTreeSet::new();
    for case in cases() {
        covered.extend(load_expect(&case).rules);
    }
    // Reachable only through the library (the CLI refuses such flags first) or an I/O fault.
    let library_only = ["arch-invalid", "talos-version-invalid", "read-error"];
    // Entries git cannot store or `pack` cannot write (sparse, non-UTF-8, over-long names,
    // writes through links) are crafted header by header in `tests/hostile_input.rs`, which
    // must name the rule.
    let hostile = include_str!("hostile_input.rs");
    let missing: Vec<&str> = talext::validate::RULES
        .iter()
        .map(|r| r.id)
        .filter(|id| {
            !covered.contains(*id)
                && !library_only.contains(id)
                && !hostile.contains(&format!("\"{id}\""))
        })
        .collect();
    assert!(missing.is_empty(), "rules without a fixture: {missing:?}");
}

#[test]
fn talos_version_decides_compatibility() {
    let (_work, src) = staged("good-compat-new");
    let src = src.as_str();
    let old = talext(&["validate", src, "--talos-version", "v1.6.0"]);
    assert_eq!(old.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&old.stdout);
    assert!(
        stdout.contains("version constraint >= v1.7.0 can't be satisfied with Talos version 1.6.0"),
        "{stdout}"
    );
    let new = talext(&["validate", src, "--talos-version", "v1.14.0"]);
    assert_eq!(
        new.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&new.stdout)
    );
}

#[test]
fn text_report_shape() {
    let (_work, src) = staged("bad-path-not-allowed");
    let out = talext(&["validate", &src, "--talos-version", "v1.14.0"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0],
        "error[path-not-allowed] rootfs/etc/foo.conf: path `/etc/foo.conf` is not allowed in extensions"
    );
    assert!(lines[1].starts_with("  hint: "), "{stdout}");
    assert!(
        stdout.contains("error[path-not-allowed] rootfs/etc/x: "),
        "{stdout}"
    );
    assert!(
        stdout.contains("error[path-not-allowed] rootfs/usr/lib64/a.so: "),
        "{stdout}"
    );
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with("failed: 3 errors, 0 warnings in "),
        "{stdout}"
    );
    assert!(
        lines.last().unwrap().ends_with(" for Talos v1.14.0"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("validation failed with 3 error(s)"),
        "{stderr}"
    );
}

#[test]
fn secrets_are_never_printed() {
    let (_work, src) = staged("bad-service-secret");
    for json in [false, true] {
        let mut args = vec!["validate", src.as_str()];
        if json {
            args.push("--json");
        }
        let out = talext(&args);
        assert_eq!(out.status.code(), Some(1));
        for stream in [&out.stdout, &out.stderr] {
            let s = String::from_utf8_lossy(stream);
            assert!(!s.contains("kFIXTURE0000"), "secret leaked: {s}");
        }
        assert!(String::from_utf8_lossy(&out.stdout).contains("TS_AUTHKEY"));
    }
}

#[test]
fn bad_sources_are_user_errors() {
    let out = talext(&["validate", "/nonexistent/talext-extension"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not exist"), "{stderr}");

    let file = fixtures().join("good-minimal/manifest.yaml");
    let out = talext(&["validate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("hint: for a plain filesystem tarball write `tar:"));

    let out = talext(&["validate", "tar:/nonexistent/x.tar"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.tar"));

    let out = talext(&["validate", "/tmp", "--talos-version", "banana"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn library_reports_bad_options_as_findings() {
    let tree = talext::source::dir::load(&fixtures().join("good-minimal")).unwrap();
    let opts = talext::validate::Options {
        talos_version: Some("banana".into()),
        arch: Some("riscv64".into()),
        pkg_name: None,
    };
    let rules: Vec<&str> = talext::validate::validate_tree(&tree, &opts)
        .iter()
        .map(|f| f.rule)
        .collect();
    // The fixture's expect.yaml is an unexpected top-level entry when loaded as it is.
    assert_eq!(
        rules,
        vec![
            "unexpected-top-level",
            "talos-version-invalid",
            "arch-invalid"
        ]
    );
}

/// The rule ids of one target of a `--json` report (its own findings and the subject's).
fn rules_for<'a>(report: &'a serde_json::Value, talos: &str) -> BTreeSet<&'a str> {
    let s = &report["subjects"][0];
    let t = s["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["talos"] == talos)
        .unwrap_or_else(|| panic!("no target {talos} in {report}"));
    s["findings"]
        .as_array()
        .unwrap()
        .iter()
        .chain(t["findings"].as_array().unwrap())
        .map(|f| f["rule"].as_str().unwrap())
        .collect()
}

fn json_of(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn usr_merge_moves_firmware_between_v1_9_and_v1_11() {
    let (_w1, lib) = staged("good-firmware-lib");
    let (_w2, usr) = staged("good-firmware-usr");
    for (src, ok, refused) in [(&lib, "v1.9.0", "v1.11.0"), (&usr, "v1.11.0", "v1.9.0")] {
        let out = talext(&["validate", src, "--talos-version", ok]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let out = talext(&["validate", src, "--talos-version", refused]);
        assert_eq!(out.status.code(), Some(1));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("error[path-not-allowed] rootfs/"),
            "{stdout}"
        );
        assert!(
            stdout.contains("the /usr merge of v1.10 moved it"),
            "{stdout}"
        );
    }
}

#[test]
fn a_range_prints_a_matrix() {
    let (_work, src) = staged("good-firmware-usr");
    let out = talext(&["validate", &src, "--talos-version", "v1.7.0..v1.14.0"]);
    assert_eq!(out.status.code(), Some(1), "v1.7 to v1.9 refuse it");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let header = stdout
        .lines()
        .position(|l| l.starts_with("talos ") && l.contains("constraint"))
        .unwrap_or_else(|| panic!("no matrix header: {stdout}"));
    let rows: Vec<&str> = stdout.lines().skip(header + 1).take(8).collect();
    let want = [
        "v1.7.0", "v1.8.0", "v1.9.0", "v1.10.0", "v1.11.0", "v1.12.0", "v1.13.0", "v1.14.0",
    ];
    for (row, talos) in rows.iter().zip(want) {
        assert!(row.starts_with(talos), "{row} / {stdout}");
        assert!(row.contains("satisfied"), "{row}");
        let ok = !matches!(talos, "v1.7.0" | "v1.8.0" | "v1.9.0");
        assert_eq!(row.ends_with("  ok"), ok, "{row}");
    }
    assert!(stdout.contains("-- v1.9.0\nerror[path-not-allowed] rootfs/usr/lib/firmware/x: "));
    assert!(stdout.contains(
        "works on v1.10.0, v1.11.0, v1.12.0, v1.13.0, v1.14.0; not on v1.7.0, v1.8.0, v1.9.0\n"
    ));
    assert!(
        stdout
            .lines()
            .last()
            .unwrap()
            .starts_with("failed: 1 error, 0 warnings in "),
        "{stdout}"
    );

    let out = talext(&[
        "validate",
        &src,
        "--json",
        "--talos-version",
        "v1.7.0..v1.14.0",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report = json_of(&out);
    assert_eq!(report["ok"], false);
    assert_eq!(report["survey"], false);
    assert_eq!(report["targets"].as_array().unwrap().len(), 8);
    let targets = report["subjects"][0]["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 8);
    assert_eq!(targets[0]["talos"], "v1.7.0");
    assert_eq!(targets[0]["release"], "v1.7");
    assert_eq!(targets[0]["constraint"], "satisfied");
    assert_eq!(targets[0]["ok"], false);
    assert_eq!(targets[0]["errors"], 1);
    assert_eq!(targets[3]["ok"], true);
    assert_eq!(
        report["subjects"][0]["works_on"],
        serde_json::json!(["v1.10.0", "v1.11.0", "v1.12.0", "v1.13.0", "v1.14.0"])
    );
    assert!(rules_for(&report, "v1.9.0").contains("path-not-allowed"));
    assert!(rules_for(&report, "v1.10.0").is_empty());
}

#[test]
fn a_list_selects_exactly_its_versions() {
    let (_work, src) = staged("good-firmware-lib");
    let out = talext(&[
        "validate",
        &src,
        "--json",
        "--talos-version",
        "v1.8.2,v1.9.0",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let report = json_of(&out);
    assert_eq!(report["targets"], serde_json::json!(["v1.8.2", "v1.9.0"]));
    let out = talext(&["validate", &src, "--talos-version", "v1.9.0,v1.10.0"]);
    assert_eq!(out.status.code(), Some(1), "one selected target fails");
    let out = talext(&["validate", &src, "--talos-version", "v1.12.0..v1.9.0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("range ends before it starts"));
}

#[test]
fn a_bare_validate_says_where_the_image_works() {
    let (_work, src) = staged("good-firmware-lib");
    let out = talext(&["validate", &src]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "it works on some known releases: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("works on v1.7.0, v1.8.0, v1.9.0; not on v1.10.0, "),
        "{stdout}"
    );
    assert!(stdout.contains("v1.15.0"), "every known release: {stdout}");
    let report = json_of(&talext(&["validate", &src, "--json"]));
    assert_eq!(report["survey"], true);
    assert_eq!(report["ok"], true);
    assert_eq!(
        report["subjects"][0]["works_on"],
        serde_json::json!(["v1.7.0", "v1.8.0", "v1.9.0"])
    );
    let known: Vec<String> = talext::release::KNOWN
        .iter()
        .map(|m| format!("{m}.0"))
        .collect();
    assert_eq!(report["targets"], serde_json::json!(known));

    // An image no known release accepts fails.
    let (_work, bad) = staged("bad-path-not-allowed");
    let out = talext(&["validate", &bad]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("works on none of the known Talos releases"),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .last()
            .unwrap()
            .starts_with("failed: 3 errors, 0 warnings in "),
        "findings every release shares are counted once: {stdout}"
    );
}

#[test]
fn kernel_modules_follow_the_target_kernel() {
    let (_work, src) = staged("bad-modules-kernel-release");
    let out = talext(&["validate", &src, "--talos-version", "v1.9.0..v1.11.0"]);
    let report = json_of(&talext(&[
        "validate",
        &src,
        "--json",
        "--talos-version",
        "v1.9.0..v1.11.0",
    ]));
    assert_eq!(out.status.code(), Some(1));
    // Built for v1.9.0's kernel, in the /usr path v1.9 refuses; v1.10 and v1.11 run other kernels.
    assert_eq!(
        rules_for(&report, "v1.9.0"),
        BTreeSet::from(["path-not-allowed"])
    );
    for talos in ["v1.10.0", "v1.11.0"] {
        assert_eq!(
            rules_for(&report, talos),
            BTreeSet::from(["modules-kernel-release"]),
            "{talos}"
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Talos `v1.11.0` runs kernel `6.12.43-talos`"),
        "{stdout}"
    );
}

#[test]
fn every_known_minor_has_a_cited_row() {
    use talext::release::extensions;
    for minor in talext::release::KNOWN {
        let row = extensions::of(*minor).unwrap_or_else(|| panic!("no row for {minor}"));
        for (fact, source) in row.citations() {
            for part in source.split("; ") {
                let (repo, rest) = part.split_once(' ').unwrap_or_default();
                let (path, tag) = rest.split_once('@').unwrap_or_default();
                assert!(
                    ["siderolabs/talos", "siderolabs/pkgs"].contains(&repo)
                        && !path.is_empty()
                        && !path.contains(' ')
                        && !tag.is_empty(),
                    "{minor} {fact}: `{part}` is not `owner/repo path@tag`"
                );
            }
        }
        assert!(!row.kernels.value.is_empty(), "{minor} has no kernel");
    }
    assert_eq!(
        extensions::TABLE.len(),
        talext::release::KNOWN.len(),
        "one row per known minor, no more"
    );
}
