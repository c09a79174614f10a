//! Hostile layouts, archives, registries and bundles, through the binary: every command that
//! reads a store (`build` of a source, `validate`, `inspect`, `copy`, `bundle create`/`verify`/
//! `push`) refuses a blob whose bytes are not the ones its digest names, a blob that is a
//! symlink or a FIFO, a wrong declared size, an `index.json` that is not a small regular file,
//! and an index chain nested 20,000 deep, with exit 1 and the offending blob named, quickly and
//! writing nothing; an index that names one image a billion ways is read once; `bundle verify`
//! fails on every bundle that `bundle push` refuses, and such a push sends nothing.

use std::fs;
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use talext_kit::payload;
use talext_kit::registry::{sha256, Blob, Registry, TestImage};
use talext_kit::tools::{self, Outcome};

const BIN: &str = env!("CARGO_BIN_EXE_talext");
const REF_NAME: &str = "org.opencontainers.image.ref.name";
const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MT_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The longest any command may take on a hostile input before the test calls it a hang.
const PATIENCE: Duration = Duration::from_secs(60);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Run talext with `args` (isolated, no credentials), killing it after [`PATIENCE`].
fn talext(args: &[&str]) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut cmd = tools::command(BIN);
    cmd.args(args)
        .env("DOCKER_CONFIG", "/nonexistent")
        .env("REGISTRY_AUTH_FILE", "/nonexistent/auth.json")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap());
    let line = format!("talext {}", args.join(" "));
    let started = Instant::now();
    let mut child = cmd.spawn().expect("start talext");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > PATIENCE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{line}` still ran after {PATIENCE:?}: it hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Outcome {
        line,
        code: status.code(),
        stdout: String::from_utf8_lossy(&fs::read(&out).unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&fs::read(&err).unwrap()).into_owned(),
    }
}

fn expect(out: Outcome, code: i32) -> Outcome {
    if out.code != Some(code) {
        out.fail(&format!("expected exit code {code}"));
    }
    out
}

/// Exit 1 and `needle` in stderr.
fn refused(out: Outcome, needle: &str) -> Outcome {
    let out = expect(out, 1);
    if !out.stderr.contains(needle) {
        out.fail(&format!("stderr does not name `{needle}`"));
    }
    out
}

fn blob_file(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

fn hex(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

fn gzip(bytes: &[u8], comment: Option<Vec<u8>>) -> Vec<u8> {
    let mut b = flate2::GzBuilder::new().mtime(0);
    if let Some(c) = comment {
        b = b.comment(c);
    }
    let mut gz = b.write(Vec::new(), flate2::Compression::best());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(bytes), &mut out).unwrap();
    out
}

/// A gzip tar of the tree at `root` (symlinks kept as symlinks), uid/gid 0, mtime 0.
fn tar_tree(root: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.mode(tar::HeaderMode::Deterministic);
    let mut paths: Vec<(String, PathBuf)> = tools::list_tree(root)
        .into_keys()
        .map(|rel| (rel.clone(), root.join(&rel)))
        .collect();
    paths.sort();
    for (rel, full) in paths {
        b.append_path_with_name(&full, &rel).unwrap();
    }
    b.into_inner().unwrap()
}

/// Write a one-platform image of `layer_tar` into a new layout at `dir`, tagged `v1`.
fn write_image(dir: &Path, layer_tar: &[u8], arch: &str) {
    let layer = Blob::new(MT_LAYER, gzip(layer_tar, None));
    let config = Blob::new(
        MT_CONFIG,
        serde_json::to_vec(&json!({
            "architecture": arch, "os": "linux", "config": {},
            "rootfs": {"type": "layers", "diff_ids": [sha256(layer_tar)]},
        }))
        .unwrap(),
    );
    let manifest = Blob::new(
        MT_MANIFEST,
        serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": MT_MANIFEST,
            "config": config.descriptor(json!({})),
            "layers": [layer.descriptor(json!({}))],
        }))
        .unwrap(),
    );
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    for b in [&layer, &config, &manifest] {
        fs::write(blob_file(dir, &b.digest), &b.bytes).unwrap();
    }
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let top = manifest.descriptor(json!({"annotations": {REF_NAME: "v1"}}));
    fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [top]})).unwrap(),
    )
    .unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -a {} {}", from.display(), to.display());
}

/// The good fixtures, made once per test process: `payload`, a one-platform linux/amd64 image of
/// the Tailscale stand-in (a source for `build`), and `extension`, the extension image talext
/// built from it (what `validate`, `inspect` and `copy` read).
struct Fixtures {
    _dir: tempfile::TempDir,
    payload: PathBuf,
    extension: PathBuf,
}

fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let standin = payload::tailscale_standin(&dir.path().join("standin"));
        let tree = payload::arch_tree(&standin, "amd64");
        let payload = dir.path().join("payload");
        write_image(&payload, &tar_tree(&tree), "amd64");
        let extension = dir.path().join("extension");
        let def = repo().join("extension/tailscale");
        expect(
            talext(&[
                "build",
                def.to_str().unwrap(),
                "--platform",
                "linux/amd64",
                "--no-cache",
                "--source",
                &format!("tailscale=oci:{}:v1", payload.display()),
                "--output",
                &format!("oci:{}:v1", extension.display()),
            ]),
            0,
        );
        Fixtures {
            _dir: dir,
            payload,
            extension,
        }
    })
}

/// A private copy of a good fixture, to damage.
fn copy_of(good: &Path, work: &Path, name: &str) -> PathBuf {
    let to = work.join(name);
    copy_dir(good, &to);
    to
}

/// The first image manifest `index.json` reaches: (its digest, the manifest).
fn first_manifest(dir: &Path) -> (String, Value) {
    let index: Value = serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    let mut digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    loop {
        let doc: Value =
            serde_json::from_slice(&fs::read(blob_file(dir, &digest)).unwrap()).unwrap();
        match doc["manifests"].as_array() {
            Some(m) => digest = m[0]["digest"].as_str().unwrap().to_string(),
            None => return (digest, doc),
        }
    }
}

/// Replace every descriptor of `old` by one of `new` (`new_size` bytes) in every document of the
/// layout and in `index.json`, re-storing each changed document (and so on up to the top).
fn repoint(dir: &Path, old: &str, new: &str, new_size: u64) {
    fn swap(v: &mut Value, old: &str, new: &str, size: u64) -> bool {
        match v {
            Value::Object(m) => {
                let mut changed = false;
                if m.get("digest").and_then(Value::as_str) == Some(old) {
                    m.insert("digest".into(), json!(new));
                    m.insert("size".into(), json!(size));
                    changed = true;
                }
                for (_, child) in m.iter_mut() {
                    changed |= swap(child, old, new, size);
                }
                changed
            }
            Value::Array(a) => a.iter_mut().fold(false, |c, x| swap(x, old, new, size) | c),
            _ => false,
        }
    }
    let mut index: Value =
        serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    if swap(&mut index, old, new, new_size) {
        fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    }
    for entry in fs::read_dir(dir.join("blobs/sha256")).unwrap() {
        let path = entry.unwrap().path();
        let Ok(bytes) = fs::read(&path) else { continue };
        if !bytes.starts_with(b"{") || !String::from_utf8_lossy(&bytes).contains(old) {
            continue;
        }
        let Ok(mut doc) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        if swap(&mut doc, old, new, new_size) {
            let changed = serde_json::to_vec(&doc).unwrap();
            let digest = sha256(&changed);
            fs::write(blob_file(dir, &digest), &changed).unwrap();
            let this = format!("sha256:{}", path.file_name().unwrap().to_string_lossy());
            repoint(dir, &this, &digest, changed.len() as u64);
        }
    }
}

/// Edit the JSON document `digest` of the layout and re-point everything that names it.
fn edit_document(dir: &Path, digest: &str, f: impl FnOnce(&mut Value)) -> String {
    let mut doc: Value =
        serde_json::from_slice(&fs::read(blob_file(dir, digest)).unwrap()).unwrap();
    f(&mut doc);
    let bytes = serde_json::to_vec(&doc).unwrap();
    let new = sha256(&bytes);
    fs::write(blob_file(dir, &new), &bytes).unwrap();
    repoint(dir, digest, &new, bytes.len() as u64);
    new
}

/// The layer of the layout's image with one file changed: some KiB in the middle of the first
/// regular file whose path ends in `containerboot` become zeros (still an ELF of the same
/// machine and size). With `same_size`, as many KiB as make the new blob a little smaller, and
/// a gzip comment pads it to the old one's length.
fn swapped_layer(old: &[u8], same_size: bool) -> Vec<u8> {
    let plain = gunzip(old);
    let rewrite = |zeros: usize| {
        let mut archive = tar::Archive::new(plain.as_slice());
        let mut out = tar::Builder::new(Vec::new());
        let mut changed = false;
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut header = entry.header().clone();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
            if !changed && path.ends_with("containerboot") && header.entry_type().is_file() {
                let mid = data.len() / 4;
                data[mid..mid + zeros].fill(0);
                changed = true;
            }
            match entry.link_name().unwrap().map(|l| l.into_owned()) {
                Some(l) => out.append_link(&mut header, &path, l).unwrap(),
                None => out
                    .append_data(&mut header, &path, data.as_slice())
                    .unwrap(),
            }
        }
        assert!(changed, "the layer holds no containerboot");
        out.into_inner().unwrap()
    };
    if !same_size {
        let bytes = gzip(&rewrite(4096), None);
        assert_ne!(bytes.len(), old.len());
        return bytes;
    }
    for kib in (4..4096).step_by(4) {
        let plain = rewrite(kib << 10);
        let bytes = gzip(&plain, None);
        // FCOMMENT adds the comment and its terminating NUL; the reader caps header fields.
        if bytes.len() < old.len() && old.len() - bytes.len() < 30_000 {
            let room = old.len() - bytes.len() - 1;
            let padded = gzip(&plain, Some(vec![b'x'; room]));
            assert_eq!(padded.len(), old.len());
            return padded;
        }
    }
    panic!("no tar of the layer's size found");
}

/// `tar -C dir -cf file .`, as a user packs a layout into an oci-archive.
fn pack(dir: &Path, file: &Path) {
    let ok = std::process::Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg("-cf")
        .arg(file)
        .arg(".")
        .status()
        .unwrap()
        .success();
    assert!(ok, "tar of {}", dir.display());
}

/// Every command that reads `oci:`/`oci-archive:` locations, on the damaged copies `payload`
/// (read by `build` as a source) and `extension` (read by the others), each refused with exit 1
/// naming the damaged blob (`in_payload`, `in_extension`: its hex digest, which both the
/// digest and the blob's path show). Also through `oci-archive:` files made with `tar`.
fn all_refuse(work: &Path, payload: &Path, extension: &Path, in_payload: &str, in_extension: &str) {
    let def = repo().join("extension/tailscale");
    let def = def.to_str().unwrap();
    let (pa, ea) = (work.join("payload.tar"), work.join("extension.tar"));
    pack(payload, &pa);
    pack(extension, &ea);
    for (transport, src, ext) in [("oci", payload, extension), ("oci-archive", &pa, &ea)] {
        let src = format!("{transport}:{}:v1", src.display());
        let ext = format!("{transport}:{}:v1", ext.display());
        let out = work.join(format!("out-{transport}"));
        let cache = work.join("cache");
        refused(
            talext(&[
                "build",
                def,
                "--platform",
                "linux/amd64",
                "--cache-dir",
                cache.to_str().unwrap(),
                "--source",
                &format!("tailscale={src}"),
                "--output",
                &format!("oci:{}:x", out.display()),
            ]),
            in_payload,
        );
        assert!(!out.exists(), "a refused build wrote `{}`", out.display());
        refused(talext(&["validate", &ext]), in_extension);
        refused(talext(&["validate", "--json", &ext]), in_extension);
        refused(talext(&["inspect", &ext]), in_extension);
        refused(talext(&["inspect", "--json", &ext]), in_extension);
        for dest in [
            work.join(format!("copy-{transport}")),
            work.join(format!("copy-{transport}.tar")),
        ] {
            let kind = if dest.extension().is_some() {
                "oci-archive"
            } else {
                "oci"
            };
            refused(
                talext(&["copy", &ext, &format!("{kind}:{}:v1", dest.display())]),
                in_extension,
            );
            assert!(!dest.exists(), "a refused copy wrote `{}`", dest.display());
        }
    }
}

#[test]
fn the_good_fixtures_pass_every_command() {
    let f = fixtures();
    let work = tempfile::tempdir().unwrap();
    let def = repo().join("extension/tailscale");
    let (pa, ea) = (work.path().join("p.tar"), work.path().join("e.tar"));
    pack(&f.payload, &pa);
    pack(&f.extension, &ea);
    for (transport, src, ext) in [("oci", &f.payload, &f.extension), ("oci-archive", &pa, &ea)] {
        let ext = format!("{transport}:{}:v1", ext.display());
        expect(talext(&["validate", &ext]), 0);
        let shown = expect(talext(&["inspect", &ext]), 0);
        assert!(shown.stdout.contains("linux/amd64"), "{}", shown.stdout);
        let to = work.path().join(format!("c-{transport}"));
        expect(
            talext(&["copy", &ext, &format!("oci:{}:v1", to.display())]),
            0,
        );
        let out = expect(
            talext(&[
                "build",
                def.to_str().unwrap(),
                "--platform",
                "linux/amd64",
                "--no-cache",
                "--source",
                &format!("tailscale={transport}:{}:v1", src.display()),
                "--output",
                &format!("oci:{}:v1", work.path().join("b").display()),
            ]),
            0,
        );
        assert!(out.stdout.trim().starts_with("sha256:"), "{}", out.stdout);
    }
}

/// Copies of both fixtures with `damage(layout, layer descriptor)` applied to their layer;
/// returns them with the hex digest of the blob each command should name.
fn damaged(work: &Path, damage: impl Fn(&Path, &Value) -> String) -> [(PathBuf, String); 2] {
    let f = fixtures();
    [("payload", &f.payload), ("extension", &f.extension)].map(|(name, good)| {
        let dir = copy_of(good, work, name);
        let (_, manifest) = first_manifest(&dir);
        let named = damage(&dir, &manifest["layers"][0]);
        (dir, named)
    })
}

fn refused_everywhere(work: &Path, damage: impl Fn(&Path, &Value) -> String) {
    let [(p, in_p), (e, in_e)] = damaged(work, damage);
    all_refuse(work, &p, &e, &in_p, &in_e);
}

fn layer_digest(layer: &Value) -> String {
    hex(layer["digest"].as_str().unwrap()).to_string()
}

#[test]
fn a_layer_swapped_for_another_tar_of_the_same_size_is_refused() {
    let work = tempfile::tempdir().unwrap();
    refused_everywhere(work.path(), |dir, layer| {
        let path = blob_file(dir, layer["digest"].as_str().unwrap());
        fs::write(&path, swapped_layer(&fs::read(&path).unwrap(), true)).unwrap();
        layer_digest(layer)
    });
}

#[test]
fn a_layer_swapped_for_another_tar_of_another_size_is_refused() {
    let work = tempfile::tempdir().unwrap();
    refused_everywhere(work.path(), |dir, layer| {
        let path = blob_file(dir, layer["digest"].as_str().unwrap());
        fs::write(&path, swapped_layer(&fs::read(&path).unwrap(), false)).unwrap();
        layer_digest(layer)
    });
}

#[test]
fn a_layer_that_is_a_symlink_out_of_the_layout_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let outside = work.path().join("outside");
    fs::create_dir(&outside).unwrap();
    refused_everywhere(work.path(), |dir, layer| {
        // The very bytes the digest names, only not inside the layout.
        let path = blob_file(dir, layer["digest"].as_str().unwrap());
        let moved = outside.join(layer_digest(layer));
        fs::rename(&path, &moved).unwrap();
        symlink(&moved, &path).unwrap();
        layer_digest(layer)
    });
}

#[test]
fn a_layer_that_is_a_symlink_to_dev_zero_is_refused() {
    let work = tempfile::tempdir().unwrap();
    refused_everywhere(work.path(), |dir, layer| {
        let path = blob_file(dir, layer["digest"].as_str().unwrap());
        fs::remove_file(&path).unwrap();
        symlink("/dev/zero", &path).unwrap();
        layer_digest(layer)
    });
}

#[test]
fn a_blobs_directory_that_is_a_symlink_out_of_the_layout_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let outside = work.path().join("outside");
    fs::create_dir(&outside).unwrap();
    for (inner, name) in [("blobs", "whole"), ("blobs/sha256", "sha256")] {
        let work = work.path().join(name);
        fs::create_dir(&work).unwrap();
        let outside = outside.join(name);
        refused_everywhere(&work, |dir, _| {
            let moved = outside.join(dir.file_name().unwrap());
            fs::create_dir_all(&moved).unwrap();
            fs::rename(dir.join(inner), moved.join("blobs")).unwrap();
            symlink(moved.join("blobs"), dir.join(inner)).unwrap();
            inner.to_string()
        });
    }
}

#[test]
fn a_wrong_declared_layer_size_is_refused() {
    let work = tempfile::tempdir().unwrap();
    refused_everywhere(work.path(), |dir, layer| {
        let (manifest, _) = first_manifest(dir);
        let digest = layer["digest"].as_str().unwrap().to_string();
        edit_document(dir, &manifest, |m| m["layers"][0]["size"] = json!(7));
        hex(&digest).to_string()
    });
}

/// Makes a hostile file at a path.
type Make = dyn Fn(&Path);

#[test]
fn an_index_json_that_is_not_a_small_regular_file_is_refused_quickly() {
    let f = fixtures();
    let work = tempfile::tempdir().unwrap();
    let def = repo().join("extension/tailscale");
    let def = def.to_str().unwrap();
    let cases: [(&str, &Make); 3] = [
        ("dev-zero", &|p: &Path| symlink("/dev/zero", p).unwrap()),
        ("fifo", &|p: &Path| mkfifo(p)),
        ("whitespace", &|p: &Path| {
            let mut w = std::io::BufWriter::new(fs::File::create(p).unwrap());
            let spaces = vec![b' '; 1 << 20];
            for _ in 0..100 {
                w.write_all(&spaces).unwrap();
            }
            w.write_all(b"{\"schemaVersion\":2,\"manifests\":[]}")
                .unwrap();
            w.flush().unwrap();
        }),
    ];
    for (name, make) in cases {
        let dir = copy_of(&f.extension, work.path(), name);
        fs::remove_file(dir.join("index.json")).unwrap();
        make(&dir.join("index.json"));
        // The same layout packed as an oci-archive (`tar` keeps the link and the FIFO).
        let archive = work.path().join(format!("{name}.tar"));
        pack(&dir, &archive);
        for loc in [
            format!("oci:{}:v1", dir.display()),
            format!("oci-archive:{}:v1", archive.display()),
        ] {
            let started = Instant::now();
            let out = work.path().join(format!("out-{name}"));
            for args in [
                vec![
                    "build",
                    def,
                    "--platform",
                    "linux/amd64",
                    "--no-cache",
                    "--source",
                    &format!("tailscale={loc}"),
                    "--output",
                    &format!("oci:{}:v1", out.display()),
                ],
                vec!["validate", &loc],
                vec!["inspect", &loc],
                vec!["inspect", "--json", &loc],
                vec!["copy", &loc, &format!("oci:{}:v1", out.display())],
                vec![
                    "copy",
                    &loc,
                    &format!("oci-archive:{}.tar:v1", out.display()),
                ],
            ] {
                refused(talext(&args), "index.json");
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "`{loc}`: six refusals took {:?}",
                started.elapsed()
            );
            assert!(!out.exists(), "a refused command wrote `{}`", out.display());
        }
        // As a destination: refused before anything is written into it.
        let before = tools::list_tree(&dir).into_keys().collect::<Vec<_>>();
        let good = format!("oci:{}:v1", f.payload.display());
        let into = format!("oci:{}:v2", dir.display());
        refused(talext(&["copy", &good, &into]), "index.json");
        refused(
            talext(&[
                "build",
                def,
                "--platform",
                "linux/amd64",
                "--no-cache",
                "--source",
                &format!("tailscale={good}"),
                "--output",
                &into,
            ]),
            "index.json",
        );
        assert_eq!(
            tools::list_tree(&dir).into_keys().collect::<Vec<_>>(),
            before
        );
        if name == "whitespace" {
            // Refused before it is unpacked: with files capped at 50 MiB, unpacking it would
            // fail with "file too large" instead.
            let archived = format!("oci-archive:{}:v1", archive.display());
            let mut cmd = std::process::Command::new("sh");
            cmd.args(["-c", "ulimit -f 51200; exec \"$@\"", "sh", BIN, "validate"])
                .arg(&archived);
            tools::isolate(&mut cmd);
            let run = cmd.output().unwrap();
            let stderr = String::from_utf8_lossy(&run.stderr);
            assert_eq!(run.status.code(), Some(1), "{stderr}");
            assert!(stderr.contains("`index.json` is larger than"), "{stderr}");
        }
    }
}

/// A layout whose `index.json` names an index that names an index … `depth` deep, over a
/// one-layer linux/amd64 image, each entry with its platform so every reader descends.
fn deep_chain(dir: &Path, depth: usize) -> Vec<Blob> {
    let image = TestImage::new("deep\n", "amd64");
    let mut blobs = vec![
        image.layer.clone(),
        image.config.clone(),
        image.manifest.clone(),
    ];
    let mut top = image.platform_descriptor();
    for _ in 0..depth {
        let index = Blob::new(
            MT_INDEX,
            serde_json::to_vec(&json!({
                "schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [top],
            }))
            .unwrap(),
        );
        top = index.descriptor(json!({"platform": {"architecture": "amd64", "os": "linux"}}));
        blobs.push(index);
    }
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    for b in &blobs {
        fs::write(blob_file(dir, &b.digest), &b.bytes).unwrap();
    }
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut entry = top;
    entry["annotations"] = json!({REF_NAME: "v1"});
    fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [entry]})).unwrap(),
    )
    .unwrap();
    blobs
}

/// A hand-made bundle at `file`: `images` are (reference, descriptor of what it holds) and
/// `blobs` every blob; `index.json`, `bundle.json` and `SHA256SUMS` are written to agree.
fn write_bundle(file: &Path, images: &[(&str, Value)], blobs: &[Blob]) {
    let index = json!({
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": images.iter().map(|(r, d)| {
            let mut d = d.clone();
            d["annotations"] = json!({REF_NAME: r, "io.containerd.image.name": r});
            d
        }).collect::<Vec<_>>(),
    });
    let bundle = json!({
        "format": "talext-bundle",
        "version": 1,
        "images": images.iter().map(|(r, d)| json!({
            "reference": r, "digest": d["digest"], "mediaType": d["mediaType"], "size": d["size"],
        })).collect::<Vec<_>>(),
    });
    let mut files: Vec<(String, Vec<u8>)> = vec![
        (
            "oci-layout".into(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        ("index.json".into(), serde_json::to_vec(&index).unwrap()),
        ("bundle.json".into(), serde_json::to_vec(&bundle).unwrap()),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for b in blobs {
        if seen.insert(b.digest.clone()) {
            files.push((format!("blobs/sha256/{}", hex(&b.digest)), b.bytes.clone()));
        }
    }
    let sums: String = files
        .iter()
        .map(|(p, bytes)| format!("{}  {p}\n", hex(&sha256(bytes))))
        .collect();
    files.push(("SHA256SUMS".into(), sums.into_bytes()));
    let mut tar = tar::Builder::new(fs::File::create(file).unwrap());
    for dir in ["blobs", "blobs/sha256"] {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        tar.append_data(&mut h, dir, std::io::empty()).unwrap();
    }
    for (path, bytes) in &files {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(bytes.len() as u64);
        tar.append_data(&mut h, path, bytes.as_slice()).unwrap();
    }
    tar.finish().unwrap();
}

/// The repositories a registry holds.
fn catalog(registry: &Registry) -> Vec<String> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(&registry.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /v2/_catalog HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        registry.addr
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{answer}");
    let v: Value = serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect()
}

/// `bundle verify` and `bundle push` both refuse `file` with exit 1 and `needle` in stderr,
/// and the push sends nothing.
fn bundle_refused(file: &Path, registry: &Registry, needle: &str) {
    let file = file.to_str().unwrap();
    let out = refused(talext(&["bundle", "verify", file]), needle);
    assert!(!out.stderr.contains("intact"), "{}", out.stderr);
    refused(talext(&["bundle", "verify", "--json", file]), needle);
    refused(
        talext(&["bundle", "push", file, &format!("{}/mirror", registry.addr)]),
        needle,
    );
    assert_eq!(
        catalog(registry),
        Vec::<String>::new(),
        "a refused push sent images"
    );
}

#[test]
fn an_index_chain_20000_deep_is_refused_by_every_command() {
    let work = tempfile::tempdir().unwrap();
    let deep = work.path().join("deep");
    let blobs = deep_chain(&deep, 20_000);
    let def = repo().join("extension/tailscale");
    let loc = format!("oci:{}:v1", deep.display());
    let archive = work.path().join("deep.tar");
    pack(&deep, &archive);
    let archived = format!("oci-archive:{}:v1", archive.display());
    for loc in [&loc, &archived] {
        let out = work.path().join("out");
        for args in [
            vec![
                "build",
                def.to_str().unwrap(),
                "--platform",
                "linux/amd64",
                "--no-cache",
                "--source",
                &format!("tailscale={loc}"),
                "--output",
                &format!("oci:{}:v1", out.display()),
            ],
            vec!["validate", loc],
            vec!["inspect", loc],
            vec!["inspect", "--json", loc],
            vec!["copy", loc, &format!("oci:{}:v1", out.display())],
            vec![
                "copy",
                loc,
                &format!("oci-archive:{}.tar:v1", out.display()),
            ],
        ] {
            refused(talext(&args), "deep");
        }
        assert!(!out.exists());
    }
    // The same chain in a bundle.
    let registry = Registry::plain();
    let bundle = work.path().join("deep-bundle.tar");
    let top = blobs.last().unwrap();
    write_bundle(
        &bundle,
        &[("registry.example/site/deep:v1", top.descriptor(json!({})))],
        &blobs,
    );
    bundle_refused(&bundle, &registry, "deep");
}

#[test]
fn bundle_verify_fails_on_every_bundle_push_refuses() {
    let registry = Registry::plain();
    let work = tempfile::tempdir().unwrap();
    let image = TestImage::new("bundled\n", "amd64");
    let other = TestImage::new("other\n", "amd64");
    let blobs = [
        image.layer.clone(),
        image.config.clone(),
        image.manifest.clone(),
    ];
    let held = image.manifest.descriptor(json!({}));
    let long_repo = format!("registry.example/{}:v1", "a".repeat(256));
    let long_tag = format!("registry.example/site/app:{}", "t".repeat(129));
    let other_pin = format!("registry.example/site/app:v1@{}", other.manifest.digest);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "dot-dot",
            "registry.example/site/../app:v1".into(),
            "not valid",
        ),
        ("upper", "registry.example/Site/App:v1".into(), "not valid"),
        (
            "space",
            "registry.example/site/my app:v1".into(),
            "not valid",
        ),
        (
            "newline",
            "registry.example/site/app:v1\nfake".into(),
            "not valid",
        ),
        ("long-repo", long_repo, "not valid"),
        ("long-tag", long_tag, "not valid"),
        ("other-pin", other_pin, &other.manifest.digest),
    ];
    for (name, reference, needle) in &cases {
        let file = work.path().join(format!("{name}.tar"));
        write_bundle(&file, &[(reference, held.clone())], &blobs);
        bundle_refused(&file, &registry, needle);
    }
    // A media-type lie: the image is declared a layer, so a reader that trusts the media type
    // would not look inside it and miss that its layer is absent.
    let file = work.path().join("lie.tar");
    let mut lie = held.clone();
    lie["mediaType"] = json!(MT_LAYER);
    write_bundle(
        &file,
        &[("registry.example/site/app:v1", lie)],
        &[image.config.clone(), image.manifest.clone()],
    );
    bundle_refused(&file, &registry, &image.layer.digest);

    // The same lie with a manifest a reader must look harder at: JSON after whitespace, and
    // JSON padded past 4 MiB; each still a manifest to `push`, whose layer is missing.
    let mut padded = image.manifest.bytes.clone();
    padded.resize(5 << 20, b' ');
    for (name, bytes) in [
        (
            "spaced",
            [b" \n".to_vec(), image.manifest.bytes.clone()].concat(),
        ),
        ("padded", padded),
    ] {
        let manifest = Blob::new(MT_LAYER, bytes);
        let file = work.path().join(format!("lie-{name}.tar"));
        write_bundle(
            &file,
            &[(
                "registry.example/site/app:v1",
                manifest.descriptor(json!({})),
            )],
            &[image.config.clone(), manifest.clone()],
        );
        bundle_refused(&file, &registry, &image.layer.digest);
    }
    // An image that is no manifest at all (a layer), and an index naming a layer as one of
    // its images: `push` copies only manifests and indexes.
    let file = work.path().join("layer-image.tar");
    write_bundle(
        &file,
        &[(
            "registry.example/site/app:v1",
            image.layer.descriptor(json!({})),
        )],
        std::slice::from_ref(&image.layer),
    );
    bundle_refused(&file, &registry, &image.layer.digest);
    let index = Blob::new(
        MT_INDEX,
        serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": MT_INDEX,
            "manifests": [image.layer.descriptor(json!({"platform": {"architecture": "amd64", "os": "linux"}}))],
        }))
        .unwrap(),
    );
    let file = work.path().join("layer-in-index.tar");
    write_bundle(
        &file,
        &[("registry.example/site/app:v1", index.descriptor(json!({})))],
        &[image.layer.clone(), index.clone()],
    );
    bundle_refused(&file, &registry, &image.layer.digest);
    // The same, with the blob also a good image's config (seen as a blob first).
    let index = Blob::new(
        MT_INDEX,
        serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": MT_INDEX,
            "manifests": [
                image.config.descriptor(json!({"platform": {"architecture": "arm64", "os": "linux"}})),
                image.platform_descriptor(),
            ],
        }))
        .unwrap(),
    );
    let file = work.path().join("config-in-index.tar");
    write_bundle(
        &file,
        &[("registry.example/site/app:v1", index.descriptor(json!({})))],
        &[blobs.to_vec(), vec![index.clone()]].concat(),
    );
    bundle_refused(&file, &registry, &image.config.digest);

    // The same image under a good reference verifies and pushes.
    let file = work.path().join("good.tar");
    write_bundle(&file, &[("registry.example/site/app:v1", held)], &blobs);
    let out = expect(talext(&["bundle", "verify", file.to_str().unwrap()]), 0);
    assert!(out.stderr.contains("intact"), "{}", out.stderr);
    expect(
        talext(&[
            "bundle",
            "push",
            file.to_str().unwrap(),
            &format!("{}/mirror", registry.addr),
        ]),
        0,
    );
    assert_eq!(catalog(&registry), ["mirror/site/app"]);
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

#[test]
fn a_layer_that_is_a_fifo_is_refused_without_blocking() {
    let work = tempfile::tempdir().unwrap();
    refused_everywhere(work.path(), |dir, layer| {
        let path = blob_file(dir, layer["digest"].as_str().unwrap());
        fs::remove_file(&path).unwrap();
        mkfifo(&path);
        layer_digest(layer)
    });
}

#[test]
fn a_config_or_manifest_that_is_not_a_regular_file_is_refused() {
    // The config a symlink to `/dev/zero`.
    let work = tempfile::tempdir().unwrap();
    refused_everywhere(work.path(), |dir, _| {
        let (_, manifest) = first_manifest(dir);
        let config = manifest["config"]["digest"].as_str().unwrap();
        let path = blob_file(dir, config);
        fs::remove_file(&path).unwrap();
        symlink("/dev/zero", &path).unwrap();
        hex(config).to_string()
    });
    // The image manifest a FIFO.
    let work = tempfile::tempdir().unwrap();
    refused_everywhere(work.path(), |dir, _| {
        let (digest, _) = first_manifest(dir);
        let path = blob_file(dir, &digest);
        fs::remove_file(&path).unwrap();
        mkfifo(&path);
        hex(&digest).to_string()
    });
}

/// Put `blobs` into the registry's storage as the repository `repo`, `top` tagged `tag`
/// (distribution's filesystem layout), without a push: the registry would check each index's
/// children as it is put, and a chain 20,000 deep would take 20,000 requests.
fn seed_storage(registry: &Registry, repo: &str, tag: &str, blobs: &[Blob], top: &str) {
    let root = registry.scratch().join("storage/docker/registry/v2");
    let link = |path: PathBuf, digest: &str| {
        fs::create_dir_all(&path).unwrap();
        fs::write(path.join("link"), digest).unwrap();
    };
    let repo_dir = root.join("repositories").join(repo);
    for b in blobs {
        let h = hex(&b.digest);
        let dir = root.join("blobs/sha256").join(&h[..2]).join(h);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("data"), &b.bytes).unwrap();
        let kind = if b.media_type == MT_INDEX || b.media_type == MT_MANIFEST {
            "_manifests/revisions/sha256"
        } else {
            "_layers/sha256"
        };
        link(repo_dir.join(kind).join(h), &b.digest);
    }
    let tag_dir = repo_dir.join("_manifests/tags").join(tag);
    link(tag_dir.join("current"), top);
    link(tag_dir.join("index/sha256").join(hex(top)), top);
}

#[test]
fn an_index_chain_20000_deep_in_a_registry_is_refused_by_every_command() {
    let work = tempfile::tempdir().unwrap();
    let blobs = deep_chain(&work.path().join("deep"), 20_000);
    let top = blobs.last().unwrap().digest.clone();
    let registry = Registry::plain();
    seed_storage(&registry, "site/deep", "v1", &blobs, &top);
    let by_tag = format!("docker://{}/site/deep:v1", registry.addr);
    let pinned = format!("docker://{}/site/deep@{top}", registry.addr);
    // The registry serves it: the top index names the next one.
    let served = tools::skopeo()
        .args(["inspect", "--tls-verify=false", "--raw", &by_tag])
        .ok();
    assert!(served.stdout.contains(MT_INDEX), "{}", served.stdout);

    let def = repo().join("extension/tailscale");
    let out = work.path().join("out");
    let bundle = work.path().join("deep-bundle.tar");
    for args in [
        vec![
            "build",
            def.to_str().unwrap(),
            "--platform",
            "linux/amd64",
            "--no-cache",
            "--source",
            &format!("tailscale={pinned}"),
            "--output",
            &format!("oci:{}:v1", out.display()),
        ],
        vec!["validate", &by_tag],
        vec!["inspect", &by_tag],
        vec!["copy", &by_tag, &format!("oci:{}:v1", out.display())],
        vec![
            "copy",
            &by_tag,
            &format!("docker://{}/other/deep:v1", registry.addr),
        ],
        vec!["bundle", "create", "-o", bundle.to_str().unwrap(), &by_tag],
    ] {
        refused(talext(&args), "deep");
    }
    assert!(!out.exists(), "a refused command wrote `{}`", out.display());
    assert!(!bundle.exists(), "a refused bundle was written");
    assert_eq!(catalog(&registry), ["site/deep"]);
}

/// A layout whose top index names one index 1,000 times, which names one index 1,000 times,
/// which names one image 1,000 times: a billion paths to one image.
fn fan_out(dir: &Path) {
    let image = TestImage::new("fan\n", "amd64");
    let mut blobs = vec![
        image.layer.clone(),
        image.config.clone(),
        image.manifest.clone(),
    ];
    let mut child = image.platform_descriptor();
    for _ in 0..3 {
        let index = Blob::new(
            MT_INDEX,
            serde_json::to_vec(&json!({
                "schemaVersion": 2, "mediaType": MT_INDEX,
                "manifests": vec![child.clone(); 1000],
            }))
            .unwrap(),
        );
        child = index.descriptor(json!({"platform": {"architecture": "amd64", "os": "linux"}}));
        blobs.push(index);
    }
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    for b in &blobs {
        fs::write(blob_file(dir, &b.digest), &b.bytes).unwrap();
    }
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    child["annotations"] = json!({REF_NAME: "v1"});
    fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [child]})).unwrap(),
    )
    .unwrap();
}

#[test]
fn an_index_that_names_one_image_a_billion_ways_is_read_once() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("fan");
    fan_out(&dir);
    let loc = format!("oci:{}:v1", dir.display());
    let def = repo().join("extension/tailscale");
    let out = work.path().join("out");
    for args in [
        vec![
            "build",
            def.to_str().unwrap(),
            "--platform",
            "linux/amd64",
            "--no-cache",
            "--source",
            &format!("tailscale={loc}"),
            "--output",
            &format!("oci:{}:v1", out.display()),
        ],
        vec!["validate", &loc],
    ] {
        let started = Instant::now();
        let run = talext(&args);
        assert!(
            matches!(run.code, Some(0 | 1)),
            "{}: {:?}\n{}",
            run.line,
            run.code,
            run.stderr
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "`{}` took {:?}",
            run.line,
            started.elapsed()
        );
    }
    // Copied and described as what it is: one image, the index bytes kept.
    let started = Instant::now();
    let copy = work.path().join("copy");
    let top: Value = serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    let top = top["manifests"][0]["digest"].as_str().unwrap().to_string();
    let copied = expect(
        talext(&["copy", &loc, &format!("oci:{}:v1", copy.display())]),
        0,
    );
    assert!(
        copied.stdout.contains(&top) || copied.stderr.contains(&top),
        "{}",
        copied.stderr
    );
    assert_eq!(
        fs::read(blob_file(&copy, &top)).unwrap(),
        fs::read(blob_file(&dir, &top)).unwrap()
    );
    let shown = expect(talext(&["inspect", "--json", &loc]), 0).json();
    assert_eq!(shown["platforms"].as_array().unwrap().len(), 1, "{shown}");
    assert!(started.elapsed() < Duration::from_secs(30));
}
