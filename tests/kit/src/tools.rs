//! Wrappers around the programs the tests drive: the `talext` binary under test and the
//! independent readers `skopeo` and `umoci`. Every run captures stdout and stderr, and a failed
//! expectation panics showing the command line, the exit status and both streams.
//!
//! Also here: reading a layer or plain tarball the way the Talos imager does, detecting the
//! compression from the bytes rather than the media type (go-containerregistry `mutate.extract`).

use std::ffi::OsStr;
use std::io::Read;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// A command about to run; build it with [`talext`], [`skopeo`] or [`umoci`].
pub struct Cmd {
    cmd: Command,
    shown: Vec<String>,
}

/// What a finished command left behind.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The command line, for messages.
    pub line: String,
    /// The exit code, `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// The talext binary at `bin` (pass `env!("CARGO_BIN_EXE_talext")`), with an environment that
/// cannot leak into the result: no inherited `SOURCE_DATE_EPOCH`, no colour, no `RUST_LOG`, and a
/// private `HOME`, cache and config for this test process, so no run reads or writes the
/// developer's own `~/.cache/talext` or registry credentials. A test that wants its own cache
/// passes `--cache-dir` or sets `TALEXT_CACHE_DIR` / `XDG_CACHE_HOME` again.
pub fn talext(bin: impl AsRef<Path>) -> Cmd {
    let mut cmd = Cmd::new(bin.as_ref().as_os_str());
    isolate(&mut cmd.cmd);
    cmd
}

/// A `std::process::Command` for the talext binary at `bin`, isolated like [`talext`], for
/// tests that drive stdin themselves.
pub fn command(bin: impl AsRef<Path>) -> Command {
    let mut cmd = Command::new(bin.as_ref());
    isolate(&mut cmd);
    cmd
}

/// The environment every talext run under test gets (see [`talext`]).
pub fn isolate(cmd: &mut Command) -> &mut Command {
    let home = private_home();
    cmd.env_remove("SOURCE_DATE_EPOCH")
        .env_remove("RUST_LOG")
        .env_remove("TALEXT_CACHE_DIR")
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("DOCKER_CONFIG")
        .env_remove("XDG_RUNTIME_DIR")
        .env("HOME", home)
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("NO_COLOR", "1")
}

/// One empty home directory per test process, in the system temporary directory under a
/// recognisable name (a static is never dropped, so it outlives the process).
pub fn private_home() -> &'static Path {
    static HOME: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    HOME.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("talext-test-home-")
            .tempdir()
            .expect("creating a private HOME for the tests")
    })
    .path()
}

/// The talext binary at `bin`, isolated like [`talext`], in an environment unlike the test's
/// own, for the second half of a build-twice test: run from the empty directory `scratch/cwd`
/// with `TMPDIR` at `scratch/tmp`, `umask 077`, another locale and time zone, and pinned to one
/// CPU with `taskset` when it can be (`util-linux`). Arguments must not be relative paths.
pub fn talext_elsewhere(bin: impl AsRef<Path>, scratch: &Path) -> Cmd {
    let (cwd, tmp) = (scratch.join("cwd"), scratch.join("tmp"));
    for dir in [&cwd, &tmp] {
        std::fs::create_dir_all(dir)
            .unwrap_or_else(|e| panic!("creating `{}`: {e}", dir.display()));
    }
    let mut cmd = Cmd::new("sh".as_ref());
    isolate(&mut cmd.cmd);
    let mut cmd = cmd
        .arg("-c")
        .arg("umask 077; exec \"$@\"")
        .arg("sh")
        .env("TMPDIR", &tmp)
        .env("LC_ALL", "C.UTF-8")
        .env("LANG", "C.UTF-8")
        .env("TZ", "Pacific/Kiritimati")
        .current_dir(&cwd);
    if let Some(cpu) = one_cpu() {
        cmd = cmd.args(["taskset", "-c", &cpu]);
    }
    cmd.arg(bin.as_ref())
}

/// A CPU this process may run on, when `taskset` can pin a program to it.
fn one_cpu() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?
        .trim();
    let cpu: String = list.chars().take_while(char::is_ascii_digit).collect();
    let works = Command::new("taskset")
        .args(["-c", &cpu, "true"])
        .status()
        .is_ok_and(|s| s.success());
    (!cpu.is_empty() && works).then_some(cpu)
}

/// `skopeo --insecure-policy`: the tests copy between local layouts only, so no signature
/// policy applies, and a fresh machine may lack `/etc/containers/policy.json`.
pub fn skopeo() -> Cmd {
    Cmd::new("skopeo".as_ref()).arg("--insecure-policy")
}

/// `umoci`.
pub fn umoci() -> Cmd {
    Cmd::new("umoci".as_ref())
}

impl Cmd {
    fn new(program: &OsStr) -> Self {
        Cmd {
            cmd: Command::new(program),
            shown: vec![program.to_string_lossy().into_owned()],
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.shown.push(arg.as_ref().to_string_lossy().into_owned());
        self.cmd.arg(arg);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for arg in args {
            self = self.arg(arg);
        }
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Self {
        self.shown
            .insert(0, format!("{key}={}", value.as_ref().to_string_lossy()));
        self.cmd.env(key, value);
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cmd.current_dir(dir);
        self
    }

    /// Run and return whatever happened.
    pub fn run(mut self) -> Outcome {
        let line = self.shown.join(" ");
        let out = self
            .cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot start `{line}`: {e}"));
        Outcome {
            line,
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Run and panic unless it exits 0.
    pub fn ok(self) -> Outcome {
        let out = self.run();
        if out.code != Some(0) {
            out.fail("expected exit code 0");
        }
        out
    }

    /// Run and panic unless it exits with `code`.
    pub fn fails_with(self, code: i32) -> Outcome {
        let out = self.run();
        if out.code != Some(code) {
            out.fail(&format!("expected exit code {code}"));
        }
        out
    }
}

impl Outcome {
    /// Panic with `why`, the command line, the exit status and both streams.
    pub fn fail(&self, why: &str) -> ! {
        panic!(
            "{why}: `{}` exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.line,
            self.code.map_or("a signal".to_owned(), |c| c.to_string()),
            self.stdout,
            self.stderr
        );
    }

    /// Stdout parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| self.fail(&format!("stdout is not JSON ({e})")))
    }
}

/// `skopeo inspect --raw REF`, parsed.
pub fn skopeo_inspect_raw(reference: &str) -> Value {
    skopeo().args(["inspect", "--raw", reference]).ok().json()
}

/// `skopeo copy [--override-arch ARCH] FROM TO`.
pub fn skopeo_copy(from: &str, to: &str, arch: Option<&str>) -> Outcome {
    let mut cmd = skopeo().arg("copy");
    if let Some(arch) = arch {
        cmd = cmd.args(["--override-os", "linux", "--override-arch", arch]);
    }
    cmd.args([from, to]).ok()
}

/// `umoci unpack --rootless --image LAYOUT:TAG BUNDLE`; returns `BUNDLE/rootfs`, the image's
/// filesystem. Rootless mode keeps the run independent of the caller's privileges.
pub fn umoci_unpack(layout: &Path, tag: &str, bundle: &Path) -> std::path::PathBuf {
    umoci()
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:{tag}", layout.display()))
        .arg(bundle)
        .ok();
    bundle.join("rootfs")
}

/// One entry of a tarball, as a reader sees it.
#[derive(Debug, Clone)]
pub struct TarEntry {
    pub path: String,
    /// The raw type flag: `b'0'` file, `b'1'` hard link, `b'2'` symlink, `b'5'` directory …
    pub kind: u8,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub uname: String,
    pub gname: String,
    pub link: Option<String>,
    pub data: Vec<u8>,
}

/// How a blob is compressed, judged from its first bytes.
pub fn compression_of(bytes: &[u8]) -> &'static str {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        "gzip"
    } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        "zstd"
    } else {
        "none"
    }
}

/// Every entry of a tarball that may be gzip- or zstd-compressed or plain, in archive order.
pub fn read_tar(bytes: &[u8]) -> Vec<TarEntry> {
    let plain: Vec<u8> = match compression_of(bytes) {
        "gzip" => {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(bytes)
                .read_to_end(&mut out)
                .unwrap_or_else(|e| panic!("gunzip: {e}"));
            out
        }
        "zstd" => zstd::decode_all(bytes).unwrap_or_else(|e| panic!("zstd: {e}")),
        _ => bytes.to_vec(),
    };
    let mut archive = tar::Archive::new(plain.as_slice());
    let mut out = Vec::new();
    for entry in archive
        .entries()
        .unwrap_or_else(|e| panic!("reading tar: {e}"))
    {
        let mut entry = entry.unwrap_or_else(|e| panic!("reading tar entry: {e}"));
        let header = entry.header().clone();
        let path = entry
            .path()
            .unwrap_or_else(|e| panic!("tar entry path: {e}"))
            .to_string_lossy()
            .into_owned();
        let link = entry
            .link_name()
            .unwrap_or_else(|e| panic!("tar link of `{path}`: {e}"))
            .map(|l| l.to_string_lossy().into_owned());
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .unwrap_or_else(|e| panic!("reading `{path}` from tar: {e}"));
        out.push(TarEntry {
            kind: header.entry_type().as_byte(),
            mode: header
                .mode()
                .unwrap_or_else(|e| panic!("mode of `{path}`: {e}")),
            uid: header
                .uid()
                .unwrap_or_else(|e| panic!("uid of `{path}`: {e}")),
            gid: header
                .gid()
                .unwrap_or_else(|e| panic!("gid of `{path}`: {e}")),
            mtime: header
                .mtime()
                .unwrap_or_else(|e| panic!("mtime of `{path}`: {e}")),
            uname: header
                .username()
                .ok()
                .flatten()
                .unwrap_or_default()
                .to_owned(),
            gname: header
                .groupname()
                .ok()
                .flatten()
                .unwrap_or_default()
                .to_owned(),
            link,
            data,
            path,
        });
    }
    out
}

/// A path as the imager cleans it: no leading `./` or `/`, no trailing `/`.
pub fn clean_path(path: &str) -> &str {
    let path = path.trim_start_matches("./").trim_start_matches('/');
    path.trim_end_matches('/')
}

/// One node of a directory tree on disk, as [`list_tree`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir { mode: u32 },
    File { mode: u32, data: Vec<u8> },
    Symlink { target: String },
    Other,
}

/// Every entry under `root` (not `root` itself) by relative path, without following symlinks.
pub fn list_tree(root: &Path) -> std::collections::BTreeMap<String, Node> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries =
            std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("listing `{}`: {e}", dir.display()));
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| panic!("listing `{}`: {e}", dir.display()))
                .path();
            let meta = std::fs::symlink_metadata(&path)
                .unwrap_or_else(|e| panic!("stat `{}`: {e}", path.display()));
            let rel = path
                .strip_prefix(root)
                .expect("below the root")
                .to_string_lossy()
                .into_owned();
            let mode = meta.permissions().mode() & 0o7777;
            let node = if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path)
                    .unwrap_or_else(|e| panic!("readlink `{}`: {e}", path.display()));
                Node::Symlink {
                    target: target.to_string_lossy().into_owned(),
                }
            } else if meta.is_dir() {
                stack.push(path.clone());
                Node::Dir { mode }
            } else if meta.is_file() {
                let data = std::fs::read(&path)
                    .unwrap_or_else(|e| panic!("reading `{}`: {e}", path.display()));
                Node::File { mode, data }
            } else {
                Node::Other
            };
            out.insert(rel, node);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_command_shows_both_streams() {
        let caught = std::panic::catch_unwind(|| {
            Cmd::new("sh".as_ref())
                .args(["-c", "echo out; echo err >&2; exit 3"])
                .ok()
        });
        let message = *caught.unwrap_err().downcast::<String>().unwrap();
        assert!(message.contains("exited with 3"), "{message}");
        assert!(
            message.contains("out") && message.contains("err"),
            "{message}"
        );
        let out = Cmd::new("sh".as_ref()).args(["-c", "exit 3"]).fails_with(3);
        assert_eq!(out.code, Some(3));
    }

    #[test]
    fn talext_runs_without_an_inherited_epoch() {
        let out = talext("/usr/bin/env").env("EXTRA", "1").ok();
        assert!(!out.stdout.contains("SOURCE_DATE_EPOCH="));
        assert!(out.stdout.contains("NO_COLOR=1"));
        assert!(out.line.starts_with("EXTRA=1 /usr/bin/env"));
    }

    #[test]
    fn tarballs_in_any_compression_read_the_same() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_path("manifest.yaml").unwrap();
        header.set_size(3);
        header.set_mode(0o644);
        header.set_mtime(7);
        header.set_uid(0);
        header.set_gid(0);
        header.set_cksum();
        builder.append(&header, &b"v: 1"[..3]).unwrap();
        let plain = builder.into_inner().unwrap();

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &plain).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(plain.as_slice(), 1).unwrap();

        for (bytes, kind) in [(&plain, "none"), (&gz, "gzip"), (&zst, "zstd")] {
            assert_eq!(compression_of(bytes), kind);
            let entries = read_tar(bytes);
            assert_eq!(entries.len(), 1);
            assert_eq!(entries[0].path, "manifest.yaml");
            assert_eq!(entries[0].data, b"v: ");
            assert_eq!(entries[0].mtime, 7);
        }
        assert_eq!(clean_path("./rootfs/"), "rootfs");
    }
}
