//! The fast paths give the bytes of the slow ones: a cached rebuild writes the same blobs as an
//! uncached build, a changed source misses the cache, `--no-cache` leaves it alone, platforms
//! built together match platforms built one at a time, and a concurrent copy matches skopeo's.
//! No timings are asserted here; `ci/bench.sh` measures.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Mutex;

use talext::progress::{Kind, Reporter, Shared, TaskId};
use talext_kit::registry::{run, Registry};

const ARCHES: [(&str, u16); 2] = [("amd64", 62), ("arm64", 183)];

/// A stand-in ELF for `machine`: a real header, then `len` bytes of seeded noise and text, so
/// the layer spans several compression blocks.
fn elf(machine: u16, seed: u32, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; 64];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2; // 64-bit
    b[5] = 1; // little endian
    b[6] = 1;
    b[16] = 2; // ET_EXEC
    b[18..20].copy_from_slice(&machine.to_le_bytes());
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    while b.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        if x.is_multiple_of(3) {
            b.extend_from_slice(b"runtime.gopanic main.main ");
        } else {
            b.extend_from_slice(&x.to_le_bytes());
        }
    }
    b.truncate(len);
    b
}

/// The Tailscale definition with its source replaced by `payload/{arch}` directories laid out
/// like the upstream image.
fn fixture(root: &Path) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../extension/tailscale");
    let def = root.join("def");
    fs::create_dir_all(&def).unwrap();
    let yaml = fs::read_to_string(repo.join("extension.yaml")).unwrap();
    let yaml: String = yaml
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("location:") {
                "    location: payload/{arch}".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    fs::write(def.join("extension.yaml"), yaml + "\n").unwrap();
    fs::copy(repo.join("tailscale.yaml"), def.join("tailscale.yaml")).unwrap();
    for (arch, machine) in ARCHES {
        let p = def.join("payload").join(arch);
        fs::create_dir_all(p.join("usr/local/bin")).unwrap();
        fs::create_dir_all(p.join("bin")).unwrap();
        fs::create_dir_all(p.join("etc")).unwrap();
        for (i, name) in ["containerboot", "tailscale", "tailscaled"]
            .iter()
            .enumerate()
        {
            let f = p.join("usr/local/bin").join(name);
            fs::write(
                &f,
                elf(machine, i as u32 + machine as u32, 300_000 * (i + 1)),
            )
            .unwrap();
            let mut perm = fs::metadata(&f).unwrap().permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
            fs::set_permissions(&f, perm).unwrap();
        }
        fs::write(p.join("etc/os-release"), format!("ID=stand-in-{arch}\n")).unwrap();
        symlink("/usr/local/bin/tailscale", p.join("bin/ts")).unwrap();
    }
    def
}

fn talext(args: &[&str]) -> Output {
    talext_kit::tools::command(env!("CARGO_BIN_EXE_talext"))
        .args(args)
        .env("RUST_LOG", "talext=info")
        .env_remove("TALEXT_CACHE_DIR")
        .env_remove("TALEXT_NO_CACHE")
        .env_remove("SOURCE_DATE_EPOCH")
        .env("DOCKER_CONFIG", "/nonexistent")
        .env("REGISTRY_AUTH_FILE", "/nonexistent/auth.json")
        .output()
        .unwrap()
}

/// Build; returns (stdout, stderr).
fn build(def: &Path, out: &str, extra: &[&str]) -> (String, String) {
    let mut args = vec!["build", def.to_str().unwrap(), "--output", out];
    args.extend_from_slice(extra);
    let o = talext(&args);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "talext {args:?}: {stderr}");
    (
        String::from_utf8(o.stdout).unwrap().trim().to_string(),
        stderr,
    )
}

/// Every blob of a layout: file name → bytes.
fn blobs(layout: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

fn hits(stderr: &str) -> usize {
    stderr.matches("layer found in the cache").count()
}

fn keys(cache: &Path) -> usize {
    fs::read_dir(cache.join("layers/keys"))
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".json")
            })
            .count()
        })
        .unwrap_or(0)
}

#[test]
fn cached_rebuild_is_byte_identical_and_changes_miss() {
    let tmp = tempfile::tempdir().unwrap();
    let def = fixture(tmp.path());
    let cache = tmp.path().join("cache");
    let c = cache.to_str().unwrap();
    let out = |n: &str| tmp.path().join(n);
    let oci = |n: &str| format!("oci:{}", out(n).display());

    let (plain, _) = build(&def, &oci("plain"), &["--no-cache"]);
    let (cold, stderr) = build(&def, &oci("cold"), &["--cache-dir", c]);
    assert_eq!(hits(&stderr), 0, "{stderr}");
    assert_eq!(keys(&cache), 2);
    let (warm, stderr) = build(&def, &oci("warm"), &["--cache-dir", c]);
    assert_eq!(hits(&stderr), 2, "{stderr}");
    assert_eq!(plain, cold);
    assert_eq!(plain, warm);
    let reference = blobs(&out("plain"));
    assert_eq!(
        reference.len(),
        7,
        "index, 2 manifests, 2 configs, 2 layers"
    );
    assert_eq!(reference, blobs(&out("cold")));
    assert_eq!(reference, blobs(&out("warm")));
    // The cache follows the XDG convention when no directory is given.
    let o = talext_kit::tools::command(env!("CARGO_BIN_EXE_talext"))
        .args(["build", def.to_str().unwrap(), "--output", &oci("xdg-out")])
        .env("XDG_CACHE_HOME", tmp.path().join("xdg"))
        .env_remove("TALEXT_CACHE_DIR")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(keys(&tmp.path().join("xdg/talext")), 2);

    // Same size, new content: arm64 misses, amd64 still hits, and the arm64 layer changes.
    let f = def.join("payload/arm64/etc/os-release");
    fs::write(&f, "ID=stand-in-ARM64\n").unwrap();
    let (changed, stderr) = build(&def, &oci("changed"), &["--cache-dir", c]);
    assert_eq!(hits(&stderr), 1, "{stderr}");
    assert_ne!(changed, plain);
    assert_eq!(keys(&cache), 3);
    let (uncached, _) = build(&def, &oci("changed-plain"), &["--no-cache"]);
    assert_eq!(changed, uncached);
    assert_eq!(blobs(&out("changed")), blobs(&out("changed-plain")));

    // Only the modification time: still a miss (the layer is the same, the key is not).
    let f = def.join("payload/amd64/usr/local/bin/tailscale");
    fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1))
        .unwrap();
    let (touched, stderr) = build(&def, &oci("touched"), &["--cache-dir", c]);
    assert_eq!(hits(&stderr), 1, "{stderr}");
    assert_eq!(touched, changed);
    assert_eq!(keys(&cache), 4);

    // The epoch is part of the key.
    let (later, stderr) = build(
        &def,
        &oci("later"),
        &["--cache-dir", c, "--source-date-epoch", "1700000000"],
    );
    assert_eq!(hits(&stderr), 0, "{stderr}");
    assert_ne!(later, touched);
}

#[test]
fn no_cache_leaves_the_cache_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let def = fixture(tmp.path());
    let cache = tmp.path().join("cache");
    let c = cache.to_str().unwrap();
    let out = format!("oci:{}", tmp.path().join("a").display());
    build(&def, &out, &["--cache-dir", c, "--no-cache"]);
    assert!(!cache.exists(), "--no-cache created the cache");
    build(
        &def,
        &format!("oci:{}", tmp.path().join("b").display()),
        &["--cache-dir", c],
    );
    let listing = |p: &Path| {
        let mut v: Vec<(PathBuf, std::time::SystemTime)> = Vec::new();
        for e in walk(p) {
            v.push((
                e.clone(),
                fs::symlink_metadata(&e).unwrap().modified().unwrap(),
            ));
        }
        v.sort();
        v
    };
    let before = listing(&cache);
    let o = talext(&[
        "build",
        def.to_str().unwrap(),
        "--output",
        &format!("oci:{}", tmp.path().join("c").display()),
        "--cache-dir",
        c,
        "--no-cache",
    ]);
    assert!(o.status.success());
    assert_eq!(hits(&String::from_utf8_lossy(&o.stderr)), 0);
    assert_eq!(before, listing(&cache));
}

fn walk(p: &Path) -> Vec<PathBuf> {
    let mut v = vec![p.to_path_buf()];
    if p.is_dir() {
        for e in fs::read_dir(p).unwrap() {
            v.extend(walk(&e.unwrap().path()));
        }
    }
    v
}

fn receipt_digests(json: &str) -> Vec<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["architecture"].as_str().unwrap().to_string(),
                p["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn platforms_built_together_match_one_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let def = fixture(tmp.path());
    let oci = |n: &str| format!("oci:{}", tmp.path().join(n).display());
    let (both, _) = build(&def, &oci("both"), &["--no-cache", "--json"]);
    let both = receipt_digests(&both);
    let mut single = Vec::new();
    for (arch, _) in ARCHES {
        let (one, _) = build(
            &def,
            &oci(arch),
            &[
                "--no-cache",
                "--json",
                "--platform",
                &format!("linux/{arch}"),
            ],
        );
        single.extend(receipt_digests(&one));
    }
    assert_eq!(both, single);
}

/// kind, label, total, bytes done, finished.
type Event = (Kind, String, Option<u64>, u64, bool);

/// Records what the library reports.
#[derive(Default)]
struct Recorder(Mutex<Vec<Event>>);

impl Reporter for Recorder {
    fn start(&self, kind: Kind, label: &str, total: Option<u64>) -> TaskId {
        let mut v = self.0.lock().unwrap();
        v.push((kind, label.to_string(), total, 0, false));
        v.len() as u64 - 1
    }
    fn advance(&self, task: TaskId, bytes: u64) {
        self.0.lock().unwrap()[task as usize].3 += bytes;
    }
    fn finish(&self, task: TaskId) {
        self.0.lock().unwrap()[task as usize].4 = true;
    }
}

#[test]
fn builds_and_pushes_report_progress_through_the_injected_reporter() {
    let reg = Registry::plain();
    let tmp = tempfile::tempdir().unwrap();
    let def = fixture(tmp.path());
    let rec = std::sync::Arc::new(Recorder::default());
    let mut req = talext::plan::Request {
        dir: def.clone(),
        ..Default::default()
    };
    req.fetch.reporter = Shared(rec.clone());
    req.fetch.jobs = 3;
    let out = talext::transport::Location::Registry(format!("{}/perf/progress:v1", reg.addr));
    let built = talext::build::build(&req, &out).unwrap();
    let events = rec.0.lock().unwrap().clone();
    let layers: Vec<_> = events.iter().filter(|e| e.0 == Kind::Layer).collect();
    assert_eq!(layers.len(), 2, "{events:?}");
    for l in &layers {
        // The estimate counts headers and padding but not PAX records, of which there are none.
        assert_eq!(Some(l.3), l.2, "{l:?}");
        assert!(l.4);
    }
    let pushes: Vec<_> = events.iter().filter(|e| e.0 == Kind::Push).collect();
    assert_eq!(pushes.len(), 1, "{events:?}");
    // Every blob counts towards the total once, sent or found present.
    assert_eq!(Some(pushes[0].3), pushes[0].2, "{events:?}");
    assert!(pushes[0].4);
    assert_eq!(built.platforms.len(), 2);
}

#[test]
fn concurrent_copy_matches_skopeo() {
    let reg = Registry::plain();
    let tmp = tempfile::tempdir().unwrap();
    let def = fixture(tmp.path());
    let layout = tmp.path().join("img");
    let (digest, _) = build(
        &def,
        &format!("oci:{}:v1", layout.display()),
        &["--no-cache"],
    );
    let src = format!("oci:{}:v1", layout.display());
    let o = talext(&[
        "copy",
        "--jobs",
        "4",
        &src,
        &reg.docker_ref("perf/talext:v1"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), digest);
    run(
        "skopeo",
        &[
            "copy",
            "--all",
            "--dest-tls-verify=false",
            &src,
            &reg.docker_ref("perf/skopeo:v1"),
        ],
    );
    let raw = |r: &str| run("skopeo", &["inspect", "--tls-verify=false", "--raw", r]);
    assert_eq!(
        raw(&reg.docker_ref("perf/talext:v1")),
        raw(&reg.docker_ref("perf/skopeo:v1"))
    );
    // And back out of the registry into archives.
    let a = tmp.path().join("talext.tar");
    let b = tmp.path().join("skopeo.tar");
    let o = talext(&[
        "copy",
        "--jobs",
        "4",
        &reg.docker_ref("perf/talext:v1"),
        &format!("oci-archive:{}:v1", a.display()),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), digest);
    run(
        "skopeo",
        &[
            "copy",
            "--all",
            "--src-tls-verify=false",
            &reg.docker_ref("perf/skopeo:v1"),
            &format!("oci-archive:{}:v1", b.display()),
        ],
    );
    let inspect = |f: &Path| {
        run(
            "skopeo",
            &[
                "inspect",
                "--raw",
                &format!("oci-archive:{}:v1", f.display()),
            ],
        )
    };
    assert_eq!(inspect(&a), inspect(&b));
    let unpack = |f: &Path, d: &str| {
        let dir = tmp.path().join(d);
        fs::create_dir_all(&dir).unwrap();
        run(
            "tar",
            &["-xf", f.to_str().unwrap(), "-C", dir.to_str().unwrap()],
        );
        blobs(&dir)
    };
    assert_eq!(unpack(&a, "a"), unpack(&b, "b"));
}
