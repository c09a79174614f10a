//! Hostile layers and tarballs through the binary: every class of entry an attacker (or a broken
//! tool) can put in a tar is either refused with exit 1 naming the entry, or accepted with the
//! verdict Talos itself gives it, by `talext build` (a definition whose source is `oci:LAYOUT`)
//! and by `talext validate oci:…` / `tar:…`. Legitimate input from a real tool (umoci, which
//! writes a `./` root entry) validates clean and builds.
//!
//! What Talos does with each class, from its sources at tag v1.12.0:
//! - `pkg/imager/profile/input.go`: an image input is flattened with `crane.Export` and unpacked
//!   with `archiver.Untar`; a `tarballPath` input is unpacked with `archiver.Untar` directly.
//! - `pkg/archiver/untar.go`: names are cleaned with `safepath.CleanPath` (`..` is clamped at the
//!   root, so a traversal lands elsewhere in the tree); files are created `O_EXCL` (a duplicate
//!   fails `file exists`) through whatever symlink their parent is (a write below a symlink to
//!   `/tmp` lands in the imager's `/tmp`); every type other than directory and symlink (hard
//!   links, devices, FIFOs) becomes a regular file, empty for links and devices; modes, setuid
//!   and setgid included, are kept with `chmod`.
//! - `pkg/machinery/extensions/validate.go`: special files are refused; setuid/setgid bits are
//!   not checked (the walk sees only the entry type), so Talos accepts them and so does talext.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use talext_kit::registry::write_layers_layout;
use talext_kit::tools::{self, read_tar, Outcome};

const BIN: &str = env!("CARGO_BIN_EXE_talext");
const TAG: &str = "img";

/// A tarball written header by header, so names and fields can be anything a hostile tool
/// writes (the `tar` crate's builder refuses `..` and non-UTF-8 names).
#[derive(Default)]
struct Tar(Vec<u8>);

const DIR: u8 = b'5';
const FILE: u8 = b'0';
const SYMLINK: u8 = b'2';
const HARDLINK: u8 = b'1';
const CHAR: u8 = b'3';

impl Tar {
    fn new() -> Self {
        Tar::default()
    }

    /// One entry: a ustar header with `name` and `link` (each at most 100 bytes) and `data`.
    fn raw(mut self, name: &[u8], kind: u8, mode: u32, link: &[u8], data: &[u8]) -> Self {
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.pad(data);
        self
    }

    fn pad(&mut self, data: &[u8]) {
        self.0.extend_from_slice(data);
        let rem = data.len() % 512;
        if rem != 0 {
            self.0.extend(std::iter::repeat_n(0u8, 512 - rem));
        }
    }

    fn dir(self, name: &str) -> Self {
        self.raw(name.as_bytes(), DIR, 0o755, b"", b"")
    }

    fn file(self, name: &str, data: &str) -> Self {
        self.raw(name.as_bytes(), FILE, 0o644, b"", data.as_bytes())
    }

    fn symlink(self, name: &str, target: &str) -> Self {
        self.raw(name.as_bytes(), SYMLINK, 0o777, target.as_bytes(), b"")
    }

    /// A PAX extended header (`x`) whose records apply to the next entry.
    fn pax(mut self, records: &[(&str, &[u8])]) -> Self {
        let mut body = Vec::new();
        for (key, value) in records {
            // Each record is `LEN KEY=VALUE\n`, LEN counting the whole record and itself.
            let rest = key.len() + value.len() + 3;
            let mut len = rest + rest.to_string().len();
            if len.to_string().len() != rest.to_string().len() {
                len += 1;
            }
            body.extend_from_slice(format!("{len} {key}=").as_bytes());
            body.extend_from_slice(value);
            body.push(b'\n');
        }
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..9].copy_from_slice(b"PaxHeader");
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_mode(0o644);
        h.set_size(body.len() as u64);
        h.set_mtime(0);
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.pad(&body);
        self
    }

    /// A file whose name is given by a PAX `path` record (any length, any bytes).
    fn pax_file(self, path: &[u8], data: &str) -> Self {
        self.pax(&[("path", path)]).file("placeholder", data)
    }

    /// A GNU sparse file (`S`) of `real` bytes holding one 512-byte data block at its end: a few
    /// bytes of archive that would expand to `real` bytes on disk.
    fn gnu_sparse(mut self, name: &str, real: u64) -> Self {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_entry_type(tar::EntryType::GNUSparse);
        h.set_mode(0o644);
        h.set_size(512);
        h.set_mtime(0);
        {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.sparse[0].set_offset(real - 512);
            gnu.sparse[0].set_length(512);
            gnu.set_real_size(real);
        }
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.pad(&[b'x'; 512]);
        self
    }

    fn finish(mut self) -> Vec<u8> {
        self.0.extend_from_slice(&[0u8; 1024]);
        self.0
    }
}

/// The good part every layer carries, so the payload selects something.
fn base() -> Tar {
    Tar::new()
        .dir("usr/")
        .dir("usr/bin/")
        .file("usr/bin/ok", "ok\n")
}

/// A definition whose source `src` is `oci:layout:img` beside it, grafted under
/// `/usr/local/lib/hostile`, for linux/amd64.
struct Def {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Def {
    fn new(layers: &[Vec<u8>]) -> Def {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("def");
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("extension.yaml"),
            "name: hostile\nversion: 1.0.0\ncompatibility:\n  talos: \">= v1.7.0\"\n\
             platforms:\n  - linux/amd64\nsources:\n  src:\n    location: oci:layout:img\n\
             payload:\n  - source: src\n    to: /usr/local/lib/hostile\n",
        )
        .unwrap();
        write_layers_layout(&dir.join("layout"), layers, "amd64", TAG);
        Def { _tmp: tmp, dir }
    }

    fn layout(&self) -> PathBuf {
        self.dir.join("layout")
    }

    fn out(&self) -> PathBuf {
        self.dir.join("../out")
    }

    fn build(&self) -> Outcome {
        tools::talext(BIN)
            .arg("build")
            .arg(&self.dir)
            .args(["--output", &format!("oci:{}:t", self.out().display())])
            .run()
    }

    /// The layer digests of the source image, bottom first.
    fn layer_digests(&self) -> Vec<String> {
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(self.layout().join("index.json")).unwrap()).unwrap();
        let manifest = blob(
            &self.layout(),
            index["manifests"][0]["digest"].as_str().unwrap(),
        );
        let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
        manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect()
    }
}

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    fs::read(layout.join("blobs/sha256").join(&digest["sha256:".len()..])).unwrap()
}

/// A build that must fail with exit 1, leave no output and report `rule` for `needle`.
fn refused_build(def: &Def, rule: &str, needles: &[&str]) -> Outcome {
    let out = def.build();
    if out.code != Some(1) {
        out.fail("expected exit code 1");
    }
    let line = out
        .stderr
        .lines()
        .find(|l| l.starts_with(&format!("error[{rule}]")))
        .unwrap_or_else(|| out.fail(&format!("no `error[{rule}]` finding")));
    for n in needles {
        assert!(line.contains(n), "`{n}` not in `{line}`:\n{}", out.stderr);
    }
    assert!(
        line.contains("source `src`"),
        "the finding names the source: {line}"
    );
    let mut lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with(&format!("error[{rule}]")))
        .collect();
    let all = lines.len();
    lines.sort();
    lines.dedup();
    assert_eq!(
        lines.len(),
        all,
        "each finding is reported once:\n{}",
        out.stderr
    );
    assert!(!def.out().exists(), "a refused build writes no output");
    assert!(out.stdout.is_empty(), "nothing on stdout: {}", out.stdout);
    out
}

fn validate(source: &str) -> Outcome {
    tools::talext(BIN).args(["validate", source]).run()
}

fn validate_json(source: &str) -> serde_json::Value {
    let out = tools::talext(BIN)
        .args(["validate", "--json", source])
        .run();
    out.json()
}

/// The rule ids a `validate --json` report holds.
fn rules_of(report: &serde_json::Value) -> Vec<String> {
    report["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["findings"].as_array().unwrap().clone())
        .map(|f| f["rule"].as_str().unwrap().to_string())
        .collect()
}

/// A plain extension tarball: `manifest.yaml` and `rootfs/usr/local/...`, then `extra` entries.
fn extension_tar(extra: impl FnOnce(Tar) -> Tar) -> Tar {
    let t = Tar::new()
        .file(
            "manifest.yaml",
            "version: v1alpha1\nmetadata:\n  name: hostile\n  version: 1.0.0\n  author: t\n  \
             description: t\n  compatibility:\n    talos:\n      version: \">= v1.7.0\"\n",
        )
        .dir("rootfs/")
        .dir("rootfs/usr/")
        .dir("rootfs/usr/local/")
        .dir("rootfs/usr/local/bin/")
        .file("rootfs/usr/local/bin/ok", "ok\n");
    extra(t)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, bytes).unwrap();
    p
}

fn tar_source(p: &Path) -> String {
    format!("tar:{}", p.display())
}

#[test]
fn traversal_in_a_layer_fails_the_build_naming_source_layer_and_entry() {
    let layer = base().file("../../../tmp/x", "escaped").finish();
    let def = Def::new(&[layer]);
    let digest = &def.layer_digests()[0];
    refused_build(
        &def,
        "path-escape",
        &["../../../tmp/x", "layer 0", digest.as_str()],
    );
    let report = validate_json(&format!("oci:{}:{TAG}", def.layout().display()));
    assert!(rules_of(&report).contains(&"path-escape".to_string()));
}

#[test]
fn writes_through_a_symlink_are_refused_in_layers() {
    // Relative link out of the tree, absolute link, and a link inside the tree.
    for (link, target) in [
        ("usr/esc", "../../../../tmp"),
        ("usr/abs", "/etc"),
        ("usr/inside", "bin"),
    ] {
        let layer = base()
            .symlink(link, target)
            .file(&format!("{link}/x"), "through the link")
            .finish();
        let def = Def::new(&[layer]);
        let entry = format!("`{link}/x`");
        let out = refused_build(
            &def,
            "path-through-symlink",
            &[&entry, target, "layer 0", "rootfs/usr/local/lib/hostile/"],
        );
        if target.starts_with('/') || target.starts_with("..") {
            assert!(
                out.stderr.contains("outside the image root"),
                "{}",
                out.stderr
            );
        }
    }
}

#[test]
fn writes_through_a_lower_layers_symlink_are_refused() {
    let lower = base().symlink("usr/lnk", "/tmp").finish();
    let upper = Tar::new()
        .file("usr/lnk/y", "through the lower link")
        .finish();
    let def = Def::new(&[lower, upper]);
    let digests = def.layer_digests();
    refused_build(
        &def,
        "path-through-symlink",
        &["usr/lnk/y", "/tmp", "layer 0", digests[0].as_str()],
    );
    let report = validate_json(&format!("oci:{}:{TAG}", def.layout().display()));
    assert!(rules_of(&report).contains(&"path-through-symlink".to_string()));
    // An upper layer that declares the directory replaces the symlink: legitimate.
    let lower = base().symlink("usr/lnk", "/tmp").finish();
    let upper = Tar::new()
        .dir("usr/lnk/")
        .file("usr/lnk/y", "a real directory")
        .finish();
    let def = Def::new(&[lower, upper]);
    let out = def.build();
    if out.code != Some(0) {
        out.fail("a directory replacing a symlink is legitimate");
    }
}

#[test]
fn writes_through_a_symlink_are_refused_in_plain_tarballs() {
    let tmp = tempfile::tempdir().unwrap();
    for (link, target) in [
        ("rootfs/usr/local/esc", "../../../../../tmp"),
        ("rootfs/usr/local/abs", "/etc"),
    ] {
        let tar =
            extension_tar(|t| t.symlink(link, target).file(&format!("{link}/x"), "x")).finish();
        let p = write(tmp.path(), "t.tar", &tar);
        let out = validate(&tar_source(&p));
        if out.code != Some(1) {
            out.fail("expected exit code 1");
        }
        assert!(
            out.stdout
                .contains(&format!("error[path-through-symlink] {link}/x")),
            "{}",
            out.stdout
        );
    }
    // The entry below first, the link after it: unpacked in order, the entry goes through.
    let tar = extension_tar(|t| {
        t.file("rootfs/usr/local/late/x", "x")
            .symlink("rootfs/usr/local/late", "/etc")
    })
    .finish();
    let p = write(tmp.path(), "late.tar", &tar);
    let report = validate_json(&tar_source(&p));
    assert!(
        rules_of(&report).contains(&"path-through-symlink".to_string()),
        "{report}"
    );
}

#[test]
fn a_definition_file_below_a_payload_symlink_is_refused() {
    let def = Def::new(&[base().symlink("usr/abs", "/etc").finish()]);
    let yaml = fs::read_to_string(def.dir.join("extension.yaml")).unwrap();
    fs::write(
        def.dir.join("extension.yaml"),
        format!("{yaml}files:\n  - src: extra\n    to: /usr/local/lib/hostile/usr/abs/passwd\n"),
    )
    .unwrap();
    fs::write(def.dir.join("extra"), "x").unwrap();
    let out = def.build();
    if out.code != Some(1) {
        out.fail("a file written through a payload symlink fails the build");
    }
    assert!(
        out.stderr
            .contains("error[path-through-symlink] rootfs/usr/local/lib/hostile/usr/abs/passwd"),
        "{}",
        out.stderr
    );
}

#[test]
fn writes_below_a_file_are_refused() {
    // In one layer, and below a file a lower layer puts where an upper layer wrote.
    let layer = base().file("usr/bin/ok/x", "below a file").finish();
    refused_build(&Def::new(&[layer]), "path-below-file", &["`usr/bin/ok/x`"]);
    let upper = Tar::new().file("usr/f/x", "below a lower file").finish();
    let def = Def::new(&[base().file("usr/f", "file").finish(), upper]);
    refused_build(&def, "path-below-file", &["`usr/f/x`", "layer 0"]);
    let tmp = tempfile::tempdir().unwrap();
    let tar = extension_tar(|t| t.file("rootfs/usr/local/bin/ok/x", "x")).finish();
    let report = validate_json(&tar_source(&write(tmp.path(), "f.tar", &tar)));
    assert_eq!(rules_of(&report), ["path-below-file"], "{report}");
}

#[test]
fn hard_links_outside_the_root_or_absolute_are_refused() {
    for target in ["../../etc/passwd", "/usr/bin/ok"] {
        let layer = base()
            .raw(b"usr/bin/h", HARDLINK, 0o644, target.as_bytes(), b"")
            .finish();
        let def = Def::new(&[layer]);
        refused_build(&def, "path-escape", &["usr/bin/h", target]);
    }
    let tmp = tempfile::tempdir().unwrap();
    let tar = extension_tar(|t| {
        t.raw(
            b"rootfs/usr/local/bin/h",
            HARDLINK,
            0o644,
            b"/etc/shadow",
            b"",
        )
    })
    .finish();
    let report = validate_json(&tar_source(&write(tmp.path(), "h.tar", &tar)));
    assert!(
        rules_of(&report).contains(&"path-escape".to_string()),
        "{report}"
    );
}

#[test]
fn device_nodes_are_refused() {
    let layer = base().raw(b"usr/null", CHAR, 0o666, b"", b"").finish();
    let def = Def::new(&[layer]);
    let out = def.build();
    if out.code != Some(1) {
        out.fail("a device node must fail the build");
    }
    assert!(
        out.stderr.contains("usr/null") && out.stderr.contains("character device"),
        "{}",
        out.stderr
    );
    let tmp = tempfile::tempdir().unwrap();
    let tar = extension_tar(|t| t.raw(b"rootfs/usr/local/null", CHAR, 0o666, b"", b"")).finish();
    let report = validate_json(&tar_source(&write(tmp.path(), "d.tar", &tar)));
    assert_eq!(rules_of(&report), ["special-file"], "{report}");
}

#[test]
fn setuid_and_setgid_bits_are_kept_as_talos_keeps_them() {
    let layer = base()
        .raw(b"usr/bin/suid", FILE, 0o4755, b"", b"#!/bin/sh\n")
        .raw(b"usr/bin/sgid", FILE, 0o2755, b"", b"#!/bin/sh\n")
        .finish();
    let def = Def::new(&[layer]);
    let out = def.build();
    if out.code != Some(0) {
        out.fail("setuid bits are accepted, as Talos accepts them");
    }
    let out_layout = def.out();
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(out_layout.join("index.json")).unwrap()).unwrap();
    let manifest = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["mediaType"] == "application/vnd.oci.image.manifest.v1+json")
        .unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(&out_layout, manifest["digest"].as_str().unwrap())).unwrap();
    let layer = blob(
        &out_layout,
        manifest["layers"][0]["digest"].as_str().unwrap(),
    );
    let entries = read_tar(&layer);
    let mode = |p: &str| {
        entries
            .iter()
            .find(|e| tools::clean_path(&e.path) == p)
            .unwrap_or_else(|| panic!("`{p}` in the output"))
            .mode
            & 0o7777
    };
    assert_eq!(mode("rootfs/usr/local/lib/hostile/usr/bin/suid"), 0o4755);
    assert_eq!(mode("rootfs/usr/local/lib/hostile/usr/bin/sgid"), 0o2755);
}

#[test]
fn pax_path_overrides_that_escape_are_refused() {
    let layer = base().pax_file(b"../../etc/evil", "x").finish();
    let def = Def::new(&[layer]);
    refused_build(&def, "path-escape", &["../../etc/evil"]);
    let tmp = tempfile::tempdir().unwrap();
    let tar = extension_tar(|t| t.pax_file(b"rootfs/../../etc/evil", "x")).finish();
    let report = validate_json(&tar_source(&write(tmp.path(), "p.tar", &tar)));
    assert_eq!(rules_of(&report), ["path-escape"], "{report}");
}

#[test]
fn duplicate_entries_follow_the_imager() {
    // A plain tarball: the imager's untar fails `file exists` on the second copy.
    let tmp = tempfile::tempdir().unwrap();
    let tar = extension_tar(|t| {
        t.file("rootfs/usr/local/bin/twice", "one")
            .file("rootfs/usr/local/bin/twice", "two")
    })
    .finish();
    let report = validate_json(&tar_source(&write(tmp.path(), "dup.tar", &tar)));
    assert_eq!(rules_of(&report), ["tarball-duplicate"], "{report}");
    // A layer: crane export keeps the first copy; talext does the same and warns.
    let layer = base()
        .file("usr/bin/twice", "first")
        .file("usr/bin/twice", "second")
        .finish();
    let def = Def::new(&[layer]);
    let out = def.build();
    if out.code != Some(0) {
        out.fail("a duplicate in a layer builds, as the imager flattens it");
    }
    assert!(
        out.stderr
            .contains("warning[layer-duplicate] rootfs/usr/local/lib/hostile/usr/bin/twice"),
        "{}",
        out.stderr
    );
    let report = validate_json(&format!("oci:{}:{TAG}", def.layout().display()));
    assert!(
        rules_of(&report).contains(&"layer-duplicate".to_string()),
        "{report}"
    );
}

#[test]
fn whiteouts_outside_the_root_are_refused() {
    for name in ["../.wh.passwd", "usr/.wh...", "usr/../../.wh.x"] {
        let layer = base().file(name, "").finish();
        let def = Def::new(&[layer]);
        refused_build(&def, "path-escape", &[]);
    }
}

/// Run talext with `RLIMIT_FSIZE` at 1 MiB: writing more to any file kills it, so a run that
/// ends with an exit code wrote nothing big.
fn validate_small_disk(source: &str) -> Outcome {
    tools::talext("/bin/sh")
        .args([
            "-c",
            "ulimit -f 2048 && exec \"$0\" validate \"$1\"",
            BIN,
            source,
        ])
        .run()
}

#[test]
fn huge_declared_sizes_fail_fast_without_filling_the_disk() {
    let tmp = tempfile::tempdir().unwrap();
    // An entry declaring 8 GiB - 1 followed by one block of data.
    let mut t = extension_tar(|t| t);
    let mut h = tar::Header::new_ustar();
    h.set_path("rootfs/usr/local/bin/huge").unwrap();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o755);
    h.set_size(0o77777777777);
    h.set_cksum();
    t.0.extend_from_slice(h.as_bytes());
    t.0.extend_from_slice(&[7u8; 512]);
    let p = write(tmp.path(), "huge.tar", &t.0);
    let started = Instant::now();
    let out = validate_small_disk(&tar_source(&p));
    if out.code != Some(1) {
        out.fail("a truncated huge entry is bad input");
    }
    assert!(out.stderr.contains("truncated"), "{}", out.stderr);
    assert!(started.elapsed() < Duration::from_secs(20));

    let def = Def::new(&[t.0.clone()]);
    let out = def.build();
    if out.code != Some(1) {
        out.fail("a truncated huge entry fails the build");
    }
    assert!(out.stderr.contains("layer 0"), "{}", out.stderr);
}

#[test]
fn huge_extended_headers_are_refused_before_they_are_read() {
    // A PAX header declaring 4 GiB, really there (zeros compress to a few MiB of gzip): read
    // whole, it would fill the memory.
    let mut t = extension_tar(|t| t);
    let mut h = tar::Header::new_ustar();
    h.set_path("PaxHeader").unwrap();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_size(4 << 30);
    h.set_cksum();
    t.0.extend_from_slice(h.as_bytes());
    t.0.extend(std::iter::repeat_n(b'0', 1 << 20));
    let def = Def::new(&[t.0.clone()]);
    let started = Instant::now();
    let out = def.build();
    if out.code != Some(1) {
        out.fail("a huge extended header is bad input");
    }
    assert!(
        out.stderr.contains("extended header declares"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("layer 0"), "{}", out.stderr);
    assert!(started.elapsed() < Duration::from_secs(20));
    let tmp = tempfile::tempdir().unwrap();
    let out = validate_small_disk(&tar_source(&write(tmp.path(), "x.tar", &t.0)));
    if out.code != Some(1) {
        out.fail("a huge extended header is bad input");
    }
}

#[test]
fn sparse_entries_are_refused_unexpanded() {
    const EIGHT_GIB: u64 = 8 << 30;
    let tmp = tempfile::tempdir().unwrap();
    let gnu = extension_tar(|t| t.gnu_sparse("rootfs/usr/local/bin/sparse", EIGHT_GIB)).finish();
    assert!(gnu.len() < 8 << 10, "a few KiB of tar");
    let pax = extension_tar(|t| {
        t.pax(&[
            ("GNU.sparse.major", b"1"),
            ("GNU.sparse.minor", b"0"),
            ("GNU.sparse.name", b"rootfs/usr/local/bin/sparse"),
            ("GNU.sparse.realsize", EIGHT_GIB.to_string().as_bytes()),
        ])
        .file(
            "rootfs/usr/local/bin/GNUSparseFile.0/sparse",
            "1\n8589934080\n512\n",
        )
    })
    .finish();
    for (name, bytes) in [("gnu.tar", &gnu), ("pax.tar", &pax)] {
        let p = write(tmp.path(), name, bytes);
        let started = Instant::now();
        let out = validate_small_disk(&tar_source(&p));
        if out.code != Some(1) {
            out.fail("a sparse entry is refused with exit 1");
        }
        assert!(out.stdout.contains("error[sparse-entry]"), "{}", out.stdout);
        assert!(started.elapsed() < Duration::from_secs(20));
    }
    let layer = base().gnu_sparse("usr/bin/sparse", EIGHT_GIB).finish();
    let def = Def::new(&[layer]);
    refused_build(&def, "sparse-entry", &["usr/bin/sparse"]);
}

#[test]
fn names_over_linux_limits_are_refused_with_a_short_message() {
    let tmp = tempfile::tempdir().unwrap();
    let long_component = format!("rootfs/usr/local/bin/{}", "n".repeat(70_000));
    let long_path = format!("rootfs/usr/local/{}x", "d/".repeat(2100));
    for (name, path) in [("c.tar", &long_component), ("p.tar", &long_path)] {
        let tar = extension_tar(|t| t.pax_file(path.as_bytes(), "x")).finish();
        let p = write(tmp.path(), name, &tar);
        let out = validate(&tar_source(&p));
        if out.code != Some(1) {
            out.fail("an over-long name is refused");
        }
        assert!(
            out.stdout.contains("error[path-too-long]"),
            "{}",
            out.stdout
        );
        assert!(
            out.stdout.len() < 2_000,
            "the report quotes an excerpt: {}",
            out.stdout.len()
        );
    }
    // A component of exactly NAME_MAX bytes is fine.
    let ok = format!("rootfs/usr/local/bin/{}", "n".repeat(255));
    let tar = extension_tar(|t| t.pax_file(ok.as_bytes(), "x")).finish();
    let out = validate(&tar_source(&write(tmp.path(), "ok.tar", &tar)));
    if out.code != Some(0) {
        out.fail("255 bytes is within NAME_MAX");
    }
    let layer = base()
        .pax_file(format!("usr/{}", "n".repeat(300)).as_bytes(), "x")
        .finish();
    let def = Def::new(&[layer]);
    let out = refused_build(&def, "path-too-long", &["300-byte component"]);
    assert!(out.stderr.len() < 4_000, "{}", out.stderr);
}

#[test]
fn non_utf8_names_are_refused_not_mangled() {
    let tmp = tempfile::tempdir().unwrap();
    // Two names a lossy conversion would both turn into `bin/a\u{fffd}`.
    let tar = extension_tar(|t| {
        t.raw(b"rootfs/usr/local/bin/a\xff", FILE, 0o755, b"", b"one")
            .raw(b"rootfs/usr/local/bin/a\xfe", FILE, 0o755, b"", b"two")
    })
    .finish();
    let p = write(tmp.path(), "u.tar", &tar);
    let out = validate(&tar_source(&p));
    if out.code != Some(1) {
        out.fail("non-UTF-8 names are refused");
    }
    assert_eq!(
        out.stdout.matches("error[name-not-unicode]").count(),
        2,
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("bin/a\\xff"), "{}", out.stdout);
    assert!(out.stdout.contains("bin/a\\xfe"), "{}", out.stdout);
    assert!(!out.stdout.contains('\u{fffd}'), "{}", out.stdout);
    // A directory source: refused with the bytes escaped.
    let dir = tmp.path().join("dir");
    fs::create_dir_all(dir.join("rootfs/usr/local")).unwrap();
    {
        use std::os::unix::ffi::OsStrExt;
        let name = std::ffi::OsStr::from_bytes(b"bad\xff");
        fs::write(dir.join("rootfs/usr/local").join(name), "x").unwrap();
    }
    let out = validate(dir.to_str().unwrap());
    if out.code != Some(1) {
        out.fail("a non-UTF-8 name in a directory is refused");
    }
    assert!(out.stderr.contains("bad\\xff"), "{}", out.stderr);
    assert!(!out.stderr.contains('\u{fffd}'), "{}", out.stderr);
    let layer = base()
        .raw(b"usr/bin/\xc0\xaf", FILE, 0o755, b"", b"x")
        .finish();
    let def = Def::new(&[layer]);
    refused_build(&def, "name-not-unicode", &["usr/bin/\\xc0\\xaf"]);
}

#[test]
fn control_characters_are_escaped_in_text_and_exact_in_json() {
    let tmp = tempfile::tempdir().unwrap();
    let name = "rootfs/etc/\x1b[31mred\nerror[fake] all good\t\u{202e}txt";
    let tar = extension_tar(|t| t.raw(name.as_bytes(), FILE, 0o644, b"", b"x")).finish();
    let p = write(tmp.path(), "c.tar", &tar);
    let out = validate(&tar_source(&p));
    if out.code != Some(1) {
        out.fail("the file is outside the allowlist");
    }
    assert!(
        !out.stdout.contains('\x1b'),
        "no raw escape: {:?}",
        out.stdout
    );
    assert!(!out.stdout.contains('\u{202e}'), "{:?}", out.stdout);
    assert!(
        !out.stdout.lines().any(|l| l.starts_with("error[fake]")),
        "no forged line: {}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("rootfs/etc/\\x1b[31mred\\nerror[fake] all good\\t\\u{202e}txt"),
        "{}",
        out.stdout
    );
    let report = validate_json(&tar_source(&p));
    let findings = report["subjects"][0]["findings"].as_array().unwrap();
    assert!(
        findings.iter().any(|f| f["path"] == name),
        "JSON carries the name exactly: {report}"
    );
    // `inspect` escapes too.
    let tar = extension_tar(|t| {
        t.dir("rootfs/usr/local/\x1b[2J/")
            .file("rootfs/usr/local/\x1b[2J/f", "x")
    })
    .finish();
    let p = write(tmp.path(), "i.tar", &tar);
    let out = tools::talext(BIN).args(["inspect", &tar_source(&p)]).ok();
    assert!(!out.stdout.contains('\x1b'), "{:?}", out.stdout);
    assert!(out.stdout.contains("\\x1b[2J"), "{}", out.stdout);
}

#[test]
fn non_tar_input_is_bad_input_and_never_echoed() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = "hunter2-secret-line:x:0:0:root:/root:/bin/sh\n".repeat(20);
    let p = write(tmp.path(), "passwd", secret.as_bytes());
    for source in [tar_source(&p), "tar:/etc/passwd".to_string()] {
        let out = validate(&source);
        if out.code != Some(1) {
            out.fail("a file that is not a tar is bad input");
        }
        for stream in [&out.stdout, &out.stderr] {
            assert!(!stream.contains("hunter2"), "{stream}");
            assert!(!stream.contains("root:x:0:0"), "{stream}");
            assert!(!stream.contains(":/root"), "{stream}");
        }
        assert!(
            out.stderr.contains("is not a readable tar"),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn plain_dot_root_entries_are_accepted() {
    // `.` (as umoci writes it) and `./` at the top of a layer are the root itself.
    for root in [".", "./"] {
        let layer = Tar::new()
            .raw(root.as_bytes(), DIR, 0o755, b"", b"")
            .dir("./usr/")
            .dir("./usr/bin/")
            .file("./usr/bin/ok", "ok\n")
            .finish();
        let def = Def::new(&[layer]);
        let out = def.build();
        if out.code != Some(0) {
            out.fail(&format!("a `{root}` root entry is legitimate"));
        }
        assert!(!out.stderr.contains("path-escape"), "{}", out.stderr);
    }
    // A root entry that is not a directory is not.
    let layer = base().symlink(".", "/").finish();
    refused_build(&Def::new(&[layer]), "path-escape", &[]);
}

/// Set up an extension image with the real `umoci`: init, new, unpack, add the extension's
/// files, repack. Returns the layout.
fn umoci_extension(dir: &Path) -> PathBuf {
    let layout = dir.join("layout");
    let image = format!("{}:{TAG}", layout.display());
    tools::umoci().args(["init", "--layout"]).arg(&layout).ok();
    tools::umoci().args(["new", "--image", &image]).ok();
    tools::umoci()
        .args([
            "config",
            "--image",
            &image,
            "--architecture",
            "amd64",
            "--os",
            "linux",
        ])
        .ok();
    let bundle = dir.join("bundle");
    let rootfs = tools::umoci_unpack(&layout, TAG, &bundle);
    fs::create_dir_all(rootfs.join("rootfs/usr/local/bin")).unwrap();
    fs::write(
        rootfs.join("manifest.yaml"),
        "version: v1alpha1\nmetadata:\n  name: umoci\n  version: 1.0.0\n  author: t\n  \
         description: t\n  compatibility:\n    talos:\n      version: \">= v1.7.0\"\n",
    )
    .unwrap();
    fs::write(
        rootfs.join("rootfs/usr/local/bin/hello"),
        "#!/bin/sh\necho hi\n",
    )
    .unwrap();
    tools::umoci()
        .args(["repack", "--image", &image])
        .arg(&bundle)
        .ok();
    layout
}

#[test]
fn an_umoci_built_image_with_a_root_entry_validates_clean_and_builds() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = umoci_extension(tmp.path());

    // umoci writes the root directory itself as an entry of the layer.
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&blob(
        &layout,
        index["manifests"][0]["digest"].as_str().unwrap(),
    ))
    .unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    let entries = read_tar(&blob(
        &layout,
        layers.last().unwrap()["digest"].as_str().unwrap(),
    ));
    assert!(
        entries
            .iter()
            .any(|e| e.path.split('/').all(|p| p.is_empty() || p == ".")),
        "umoci's layer has a root entry: {:?}",
        entries.iter().map(|e| &e.path).collect::<Vec<_>>()
    );

    let out = validate(&format!("oci:{}:{TAG}", layout.display()));
    if out.code != Some(0) {
        out.fail("an umoci-built extension image validates clean");
    }
    assert!(
        out.stdout.contains("ok: 0 errors, 0 warnings"),
        "{}",
        out.stdout
    );

    // And as a build source, through `--source NAME=oci:…`.
    let def = Def::new(&[base().finish()]);
    let out = tools::talext(BIN)
        .arg("build")
        .arg(&def.dir)
        .arg("--source")
        .arg(format!("src=oci:{}:{TAG}", layout.display()))
        .args(["--output", &format!("oci:{}:t", def.out().display())])
        .run();
    if out.code != Some(0) {
        out.fail("an umoci-built image builds");
    }
    assert!(!out.stderr.contains("path-escape"), "{}", out.stderr);
}
