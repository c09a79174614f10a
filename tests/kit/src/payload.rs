//! Stand-in payloads for the Tailscale extension, built from real Debian binaries.
//!
//! The upstream `tailscale/tailscale` image is an Alpine root with busybox, a CA bundle, an apk
//! database and three static Go binaries in `/usr/local/bin`. The stand-in keeps that shape for
//! both `amd64` and `arm64`: the system executables are copies of Debian's static busybox for
//! that architecture and the Tailscale ones are Go binaries built in module mode
//! (`crate::gobuild`), so the ELF headers and Go build information are real and an
//! architecture check or an SBOM has something true to look at. `lib/apk/db/installed` lists
//! the Alpine packages of the upstream image ([`APK_PACKAGES`]).
//!
//! The `.deb`s come from `apt-get download` into `tests/.cache/debs/` and are reused while they
//! are there. The host must know the `arm64` architecture (`dpkg --add-architecture arm64`, done
//! by `.ci/run`); if the packages cannot be fetched the caller panics rather than skipping.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use sha2::Digest as _;

/// The Talos architectures (`pkg/imager/profile/profile.go` accepts exactly these two).
pub const ARCHES: [&str; 2] = ["amd64", "arm64"];

/// The Debian package whose `/bin/busybox` is the stand-in for every executable.
const PACKAGE: &str = "busybox-static";

/// Busybox applets linked the way Alpine links them: `bin/` holds the shell tools, `sbin/` the
/// system ones. Each is `(path, target)`; relative and absolute targets are both represented.
const APPLET_LINKS: &[(&str, &str)] = &[
    ("bin/sh", "busybox"),
    ("bin/ls", "busybox"),
    ("bin/cat", "busybox"),
    ("sbin/ip", "../bin/busybox"),
    ("sbin/ifconfig", "/bin/busybox"),
    ("usr/bin/env", "../../bin/busybox"),
];

/// A relative and an absolute symlink that are not applets, as in the upstream root.
const OTHER_LINKS: &[(&str, &str)] = &[
    ("etc/ssl/cert.pem", "certs/ca-certificates.crt"),
    ("var/run", "/run"),
];

/// The two iptables backends of Alpine's `iptables` package (multi-call binaries in `/sbin`).
pub const XTABLES: [&str; 2] = ["sbin/xtables-nft-multi", "sbin/xtables-legacy-multi"];

/// iptables as the upstream image leaves it: the nft names point at the nft backend, but
/// `iptables` and `ip6tables` themselves are linked to the legacy backend (the upstream
/// `Dockerfile` does this after `apk add iptables ip6tables`), which kernels without legacy
/// xtables (Talos 1.12 and later) cannot use.
const IPTABLES_LINKS: &[(&str, &str)] = &[
    ("sbin/iptables-nft", "xtables-nft-multi"),
    ("sbin/ip6tables-nft", "xtables-nft-multi"),
    ("sbin/iptables-legacy", "xtables-legacy-multi"),
    ("sbin/ip6tables-legacy", "xtables-legacy-multi"),
    ("sbin/iptables", "/sbin/iptables-legacy"),
    ("sbin/ip6tables", "/sbin/ip6tables-legacy"),
];

/// The three Tailscale executables of the upstream image (`/usr/local/bin`).
pub const TAILSCALE_BINARIES: [&str; 3] = ["containerboot", "tailscale", "tailscaled"];

/// Where [`plant_foreign_elf`] puts the wrong-architecture binary, relative to the tree root.
pub const FOREIGN_ELF: &str = "usr/local/bin/tailscale-amd64-helper";

/// The Alpine packages of the upstream image, as `(name, version, license, origin)`, in the order
/// its apk database lists them.
pub const APK_PACKAGES: &[(&str, &str, &str, &str)] = &[
    (
        "alpine-baselayout-data",
        "3.7.0-r0",
        "GPL-2.0-only",
        "alpine-baselayout",
    ),
    ("musl", "1.2.5-r10", "MIT", "musl"),
    ("busybox", "1.37.0-r18", "GPL-2.0-only", "busybox"),
    ("busybox-binsh", "1.37.0-r18", "GPL-2.0-only", "busybox"),
    (
        "alpine-baselayout",
        "3.7.0-r0",
        "GPL-2.0-only",
        "alpine-baselayout",
    ),
    ("alpine-keys", "2.5-r0", "MIT", "alpine-keys"),
    ("alpine-release", "3.22.1-r0", "MIT", "alpine-base"),
    (
        "ca-certificates-bundle",
        "20250619-r0",
        "MPL-2.0 AND MIT",
        "ca-certificates",
    ),
    ("libcrypto3", "3.5.1-r0", "Apache-2.0", "openssl"),
    ("libssl3", "3.5.1-r0", "Apache-2.0", "openssl"),
    ("ssl_client", "1.37.0-r18", "GPL-2.0-only", "busybox"),
    ("zlib", "1.3.1-r2", "Zlib", "zlib"),
    ("apk-tools", "2.14.9-r2", "GPL-2.0-only", "apk-tools"),
    ("scanelf", "1.3.8-r1", "GPL-2.0-only", "pax-utils"),
    (
        "musl-utils",
        "1.2.5-r10",
        "MIT AND BSD-2-Clause AND GPL-2.0-or-later",
        "musl",
    ),
    (
        "ca-certificates",
        "20250619-r0",
        "MPL-2.0 AND MIT",
        "ca-certificates",
    ),
    ("libmnl", "1.0.5-r2", "LGPL-2.1-or-later", "libmnl"),
    ("libnftnl", "1.2.9-r0", "GPL-2.0-or-later", "libnftnl"),
    ("iptables", "1.8.11-r1", "GPL-2.0-or-later", "iptables"),
    ("ip6tables", "1.8.11-r1", "GPL-2.0-or-later", "iptables"),
    (
        "iproute2-minimal",
        "6.15.0-r0",
        "GPL-2.0-or-later",
        "iproute2",
    ),
];

/// The Alpine release of the upstream image (`etc/alpine-release`).
pub const ALPINE_RELEASE: &str = "3.22.1";

/// Alpine's name for a Talos architecture (apk's `A:` field).
pub fn apk_arch(arch: &str) -> &'static str {
    match arch {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        other => panic!("unknown architecture `{other}`"),
    }
}

/// `lib/apk/db/installed` for [`APK_PACKAGES`]: each stanza with the fields apk writes
/// (checksum, size, description, URL, maintainer, build time, commit, a file entry), so a
/// reader has to skip what it does not use.
pub fn apk_installed(arch: &str) -> String {
    let mut db = String::new();
    for (i, (name, version, license, origin)) in APK_PACKAGES.iter().enumerate() {
        let sum = hex::encode(sha2::Sha256::digest(format!("{name}-{version}")))[..27].to_string();
        db.push_str(&format!(
            "C:Q1{sum}=\nP:{name}\nV:{version}\nA:{}\nS:{}\nI:{}\nT:{name} (stand-in)\n\
             U:https://alpinelinux.org/\nL:{license}\no:{origin}\n\
             m:Alpine maintainers <alpine-devel@lists.alpinelinux.org>\nt:{}\nc:{}\n\
             D:so:libc.musl-{}.so.1\nF:usr/share/{name}\nR:README\na:0:0:644\nZ:Q1{sum}=\n\n",
            apk_arch(arch),
            10_000 + i * 137,
            40_960 + i * 4096,
            1_750_000_000 + i,
            &sum[..20],
            apk_arch(arch),
        ));
    }
    db
}

const OS_RELEASE: &str = "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.22.1\n\
PRETTY_NAME=\"Alpine Linux v3.22\"\nHOME_URL=\"https://alpinelinux.org/\"\n";

/// Build the stand-in Tailscale payload for both architectures under `dir` (`dir/amd64`,
/// `dir/arm64`) and return `dir/{arch}`, the location form `talext build --source` takes.
///
/// `usr/local/bin/tailscale` and `usr/local/bin/tailscaled` are one hard-linked pair.
pub fn tailscale_standin(dir: &Path) -> PathBuf {
    for arch in ARCHES {
        build_tree(&dir.join(arch), arch, &busybox(arch));
    }
    dir.join("{arch}")
}

/// Copy the amd64 busybox into the arm64 tree of a stand-in made by [`tailscale_standin`]
/// (`standin` is the `{arch}` path it returned). Returns the planted file's path relative to the
/// tree root, which is [`FOREIGN_ELF`].
pub fn plant_foreign_elf(standin: &Path) -> PathBuf {
    let arm64 = arch_tree(standin, "arm64");
    let target = arm64.join(FOREIGN_ELF);
    copy_executable(&busybox("amd64"), &target);
    PathBuf::from(FOREIGN_ELF)
}

/// The tree of one architecture inside a `{arch}` location.
pub fn arch_tree(standin: &Path, arch: &str) -> PathBuf {
    PathBuf::from(standin.to_string_lossy().replace("{arch}", arch))
}

/// Path to Debian's static busybox for `arch`, fetched and extracted on first use.
pub fn busybox(arch: &str) -> PathBuf {
    assert!(ARCHES.contains(&arch), "unknown architecture `{arch}`");
    static EXTRACTED: OnceLock<Mutex<()>> = OnceLock::new();
    let _guard = EXTRACTED
        .get_or_init(|| Mutex::new(()))
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let out = cache_dir().join("busybox").join(arch).join("bin/busybox");
    if out.is_file() {
        return out;
    }
    let deb = deb(arch);
    let staging = cache_dir().join(format!("busybox/.{arch}.{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    mkdir(&cache_dir().join("busybox"));
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&staging));
    let extracted = staging.join("bin/busybox");
    assert_eq!(
        elf_machine(&extracted),
        Some(machine_of(arch)),
        "`{}` from `{}` is not an {arch} ELF",
        extracted.display(),
        deb.display()
    );
    let final_dir = cache_dir().join("busybox").join(arch);
    let _ = fs::remove_dir_all(&final_dir);
    fs::rename(&staging, &final_dir)
        .unwrap_or_else(|e| panic!("moving `{}` into place: {e}", staging.display()));
    out
}

/// The ELF `e_machine` of a file, or `None` if it is not an ELF file.
pub fn elf_machine(path: &Path) -> Option<u16> {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("reading `{}`: {e}", path.display()));
    elf_machine_of(&bytes)
}

/// The ELF `e_machine` of a byte buffer (little-endian ELF only, which both arches are).
pub fn elf_machine_of(bytes: &[u8]) -> Option<u16> {
    if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" || bytes[5] != 1 {
        return None;
    }
    Some(u16::from_le_bytes([bytes[18], bytes[19]]))
}

/// The ELF machine number for a Talos architecture (`EM_X86_64`, `EM_AARCH64`).
pub fn machine_of(arch: &str) -> u16 {
    match arch {
        "amd64" => 62,
        "arm64" => 183,
        other => panic!("unknown architecture `{other}`"),
    }
}

/// `tests/.cache`, shared by every test binary of the workspace (gitignored).
pub fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache")
}

fn build_tree(root: &Path, arch: &str, busybox: &Path) {
    if root.exists() {
        fs::remove_dir_all(root).unwrap_or_else(|e| panic!("clearing `{}`: {e}", root.display()));
    }
    for dir in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/local/bin",
        "etc/ssl/certs",
        "var/lib",
        "lib/apk/db",
        "tmp",
    ] {
        mkdir(&root.join(dir));
    }
    copy_executable(busybox, &root.join("bin/busybox"));
    for x in XTABLES {
        copy_executable(busybox, &root.join(x));
    }
    for (path, target) in APPLET_LINKS.iter().chain(OTHER_LINKS).chain(IPTABLES_LINKS) {
        let at = root.join(path);
        symlink(target, &at).unwrap_or_else(|e| panic!("linking `{}`: {e}", at.display()));
    }
    let bin = root.join("usr/local/bin");
    copy_executable(
        &crate::gobuild::binary(arch, "containerboot"),
        &bin.join("containerboot"),
    );
    copy_executable(
        &crate::gobuild::binary(arch, "tailscaled"),
        &bin.join("tailscale"),
    );
    // The hard-linked pair: Talos's untar turns a tar hard link into an empty file
    // (`pkg/archiver/untar.go`), so the builder has to write both as regular files.
    fs::hard_link(bin.join("tailscale"), bin.join("tailscaled"))
        .unwrap_or_else(|e| panic!("hard-linking in `{}`: {e}", bin.display()));
    write(
        &root.join("etc/ssl/certs/ca-certificates.crt"),
        ca_bundle().as_bytes(),
        0o644,
    );
    write(&root.join("etc/os-release"), OS_RELEASE.as_bytes(), 0o644);
    write(
        &root.join("etc/alpine-release"),
        format!("{ALPINE_RELEASE}\n").as_bytes(),
        0o644,
    );
    write(
        &root.join("lib/apk/db/installed"),
        apk_installed(arch).as_bytes(),
        0o644,
    );
}

/// A real PEM certificate made by `openssl`, once per process.
fn ca_bundle() -> &'static str {
    static PEM: OnceLock<String> = OnceLock::new();
    PEM.get_or_init(|| {
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        let cert = dir.path().join("ca.pem");
        run(Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-days", "3650", "-subj", "/CN=talext test root"])
            .arg("-keyout")
            .arg(dir.path().join("ca.key"))
            .arg("-out")
            .arg(&cert));
        fs::read_to_string(&cert).unwrap_or_else(|e| panic!("reading `{}`: {e}", cert.display()))
    })
}

/// The cached `.deb` for `arch`, downloaded with `apt-get download` when absent.
/// Debian's `busybox-static` package for `arch`, downloaded on first use.
pub fn deb(arch: &str) -> PathBuf {
    let debs = cache_dir().join("debs");
    if let Some(found) = find_deb(&debs, arch) {
        return found;
    }
    mkdir(&debs);
    // Download into a private directory and rename, so a concurrent run never sees half a file.
    let staging = debs.join(format!(".download-{arch}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    mkdir(&staging);
    // `_apt` cannot write into the cache when running as root; apt then downloads as root.
    let _ = fs::set_permissions(&staging, fs::Permissions::from_mode(0o777));
    let out = Command::new("apt-get")
        .args(["download", "-q", &format!("{PACKAGE}:{arch}")])
        .current_dir(&staging)
        .output()
        .unwrap_or_else(|e| panic!("running `apt-get download`: {e}"));
    assert!(
        out.status.success(),
        "`apt-get download {PACKAGE}:{arch}` failed ({}); the stand-in payload needs it \
         (for arm64 run `dpkg --add-architecture arm64 && apt-get update` once)\n\
         stdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let got = find_deb(&staging, arch)
        .unwrap_or_else(|| panic!("`apt-get download {PACKAGE}:{arch}` left no `.deb`"));
    let name = got.file_name().expect("a file name").to_owned();
    fs::rename(&got, debs.join(&name))
        .unwrap_or_else(|e| panic!("moving `{}` into the cache: {e}", got.display()));
    let _ = fs::remove_dir_all(&staging);
    debs.join(name)
}

fn find_deb(dir: &Path, arch: &str) -> Option<PathBuf> {
    let suffix = format!("_{arch}.deb");
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with(&format!("{PACKAGE}_")) && name.ends_with(&suffix)
        })
        .collect();
    found.sort();
    found.pop()
}

fn copy_executable(from: &Path, to: &Path) {
    if let Some(parent) = to.parent() {
        mkdir(parent);
    }
    fs::copy(from, to).unwrap_or_else(|e| panic!("copying `{}`: {e}", from.display()));
    fs::set_permissions(to, fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod `{}`: {e}", to.display()));
}

fn write(path: &Path, bytes: &[u8], mode: u32) {
    fs::write(path, bytes).unwrap_or_else(|e| panic!("writing `{}`: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod `{}`: {e}", path.display()));
}

fn mkdir(path: &Path) {
    fs::create_dir_all(path).unwrap_or_else(|e| panic!("creating `{}`: {e}", path.display()));
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running `{cmd:?}`: {e}"));
    assert!(
        out.status.success(),
        "`{cmd:?}` failed ({})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn both_arches_carry_real_elf_of_their_own_machine() {
        let dir = tempfile::tempdir().unwrap();
        let standin = tailscale_standin(dir.path());
        assert!(standin.ends_with("{arch}"));
        for arch in ARCHES {
            let tree = arch_tree(&standin, arch);
            let mut binaries = vec!["bin/busybox".to_owned()];
            binaries.extend(TAILSCALE_BINARIES.map(|b| format!("usr/local/bin/{b}")));
            for bin in &binaries {
                assert_eq!(
                    elf_machine(&tree.join(bin)),
                    Some(machine_of(arch)),
                    "{arch}: {bin}"
                );
            }
            let ts = fs::metadata(tree.join("usr/local/bin/tailscale")).unwrap();
            let tsd = fs::metadata(tree.join("usr/local/bin/tailscaled")).unwrap();
            assert_eq!(
                ts.ino(),
                tsd.ino(),
                "{arch}: tailscale and tailscaled are one inode"
            );
            assert_eq!(ts.nlink(), 2);
            assert_eq!(
                fs::read_link(tree.join("bin/sh")).unwrap(),
                Path::new("busybox")
            );
            assert_eq!(
                fs::read_link(tree.join("sbin/ifconfig")).unwrap(),
                Path::new("/bin/busybox")
            );
            let pem = fs::read_to_string(tree.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
            assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
            assert!(tree.join("etc/os-release").is_file());
        }
    }

    #[test]
    fn planted_foreign_elf_is_amd64_inside_the_arm64_tree() {
        let dir = tempfile::tempdir().unwrap();
        let standin = tailscale_standin(dir.path());
        let rel = plant_foreign_elf(&standin);
        let planted = arch_tree(&standin, "arm64").join(&rel);
        assert_eq!(elf_machine(&planted), Some(machine_of("amd64")));
        assert!(!arch_tree(&standin, "amd64").join(&rel).exists());
    }

    #[test]
    fn non_elf_has_no_machine() {
        assert_eq!(elf_machine_of(b"#!/bin/sh\necho hi\n"), None);
    }
}
