//! Stand-in Go binaries for the Tailscale payload, built with Debian's Go toolchain (`golang-go`,
//! installed by `ci/deps.sh`) so their `.go.buildinfo` is the real thing.
//!
//! Debian's own Go binaries are built outside module mode and carry no `mod` or `dep` lines, so
//! they would not exercise the SBOM. These are built in module mode from a tiny module named
//! like Tailscale's, with three vendored dependencies (one of them replaced by another module,
//! as Tailscale's `go.mod` replaces some), entirely offline: `-mod=vendor`, `GOPROXY=off`. The
//! dependency sources are stubs that only carry the upstream module paths and versions.
//!
//! Each binary is built once per architecture into `tests/.cache/go/` and reused. The Go cache
//! lives there too, and `GOENV=off` keeps Go away from the user's configuration.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use crate::payload::{cache_dir, elf_machine, machine_of};

/// The main packages built, as `(binary name, package directory)`.
pub const COMMANDS: [(&str, &str); 2] = [
    ("containerboot", "cmd/containerboot"),
    ("tailscaled", "cmd/tailscaled"),
];

/// The stand-in module's `go.mod`: three dependencies, one replaced.
const GO_MOD: &str = "module tailscale.com

go 1.19

require (
\tgithub.com/tailscale/wireguard-go v0.0.0-20250716170648-1d0488a3d7da
\tgolang.org/x/crypto v0.41.0
\tgolang.org/x/sys v0.35.0
)

replace golang.org/x/crypto => github.com/tailscale/golang-x-crypto v0.0.0-20250404221719-a5573b049869
";

/// `vendor/modules.txt` matching [`GO_MOD`] (what `go mod vendor` writes).
const MODULES_TXT: &str = "# github.com/tailscale/wireguard-go v0.0.0-20250716170648-1d0488a3d7da
## explicit; go 1.19
github.com/tailscale/wireguard-go/tun
# golang.org/x/crypto v0.41.0 => github.com/tailscale/golang-x-crypto v0.0.0-20250404221719-a5573b049869
## explicit; go 1.19
golang.org/x/crypto/blake2s
# golang.org/x/sys v0.35.0
## explicit; go 1.19
golang.org/x/sys/unix
# golang.org/x/crypto => github.com/tailscale/golang-x-crypto v0.0.0-20250404221719-a5573b049869
";

/// `(path, contents)` of every other source file.
const SOURCES: &[(&str, &str)] = &[
    (
        "vendor/github.com/tailscale/wireguard-go/tun/tun.go",
        "package tun\n\nconst Name = \"tun\"\n",
    ),
    (
        "vendor/golang.org/x/crypto/blake2s/blake2s.go",
        "package blake2s\n\nconst Size = 32\n",
    ),
    (
        "vendor/golang.org/x/sys/unix/unix.go",
        "package unix\n\nconst Name = \"linux\"\n",
    ),
    (
        "cmd/tailscaled/main.go",
        "package main\n\nimport (\n\t\"os\"\n\n\t\"github.com/tailscale/wireguard-go/tun\"\n\t\
\"golang.org/x/crypto/blake2s\"\n\t\"golang.org/x/sys/unix\"\n)\n\nfunc main() {\n\t\
if blake2s.Size > 0 {\n\t\tos.Stdout.WriteString(\"tailscaled stand-in \" + tun.Name + \" \" + unix.Name + \"\\n\")\n\t}\n}\n",
    ),
    (
        "cmd/containerboot/main.go",
        "package main\n\nimport (\n\t\"os\"\n\n\t\"golang.org/x/sys/unix\"\n)\n\n\
func main() {\n\tos.Stdout.WriteString(\"containerboot stand-in \" + unix.Name + \"\\n\")\n}\n",
    ),
];

/// The stand-in Go binary `name` (one of [`COMMANDS`]) for `arch`, built on first use.
pub fn binary(arch: &str, name: &str) -> PathBuf {
    let (_, pkg) = COMMANDS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no stand-in Go command `{name}`"));
    static BUILDING: OnceLock<Mutex<()>> = OnceLock::new();
    let _guard = BUILDING
        .get_or_init(|| Mutex::new(()))
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let out = cache_dir().join("go").join(arch).join(name);
    if out.is_file() {
        return out;
    }
    let root = cache_dir().join("go");
    let src = root.join(format!(".src.{}", std::process::id()));
    let _ = fs::remove_dir_all(&src);
    write_module(&src);
    let staging = root.join(format!(".{arch}-{name}.{}", std::process::id()));
    let status = Command::new("go")
        .args(["build", "-trimpath", "-buildvcs=false", "-o"])
        .arg(&staging)
        .arg(format!("./{pkg}"))
        .current_dir(&src)
        .env("GOENV", "off")
        .env("GOFLAGS", "-mod=vendor")
        .env("GOPROXY", "off")
        .env("GOSUMDB", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOCACHE", root.join("cache"))
        .env("GOPATH", root.join("gopath"))
        .env("CGO_ENABLED", "0")
        .env("GOOS", "linux")
        .env("GOARCH", arch)
        .output()
        .unwrap_or_else(|e| {
            panic!("running `go build` (install `golang-go`, see `ci/deps.sh`): {e}")
        });
    let _ = fs::remove_dir_all(&src);
    assert!(
        status.status.success(),
        "`go build ./{pkg}` for {arch} failed ({})\n{}",
        status.status,
        String::from_utf8_lossy(&status.stderr)
    );
    assert_eq!(
        elf_machine(&staging),
        Some(machine_of(arch)),
        "`{}` is not an {arch} ELF",
        staging.display()
    );
    fs::create_dir_all(out.parent().expect("a parent"))
        .unwrap_or_else(|e| panic!("creating `{}`: {e}", root.display()));
    fs::rename(&staging, &out)
        .unwrap_or_else(|e| panic!("moving `{}` into place: {e}", staging.display()));
    out
}

fn write_module(dir: &Path) {
    let files = [("go.mod", GO_MOD), ("vendor/modules.txt", MODULES_TXT)];
    for (path, text) in files.iter().chain(SOURCES) {
        let p = dir.join(path);
        fs::create_dir_all(p.parent().expect("a parent"))
            .unwrap_or_else(|e| panic!("creating `{}`: {e}", dir.display()));
        fs::write(&p, text).unwrap_or_else(|e| panic!("writing `{}`: {e}", p.display()));
    }
}

/// What `go version -m BINARY` reports, as `(kind, module path, version)` for its `mod`, `dep`
/// and `=>` lines: the independent reader of the binaries' build information.
pub fn go_version_m(binary: &Path) -> Vec<(String, String, String)> {
    let out = Command::new("go")
        .args(["version", "-m"])
        .arg(binary)
        .env("GOENV", "off")
        .env("GOTOOLCHAIN", "local")
        .output()
        .unwrap_or_else(|e| panic!("running `go version -m`: {e}"));
    assert!(
        out.status.success(),
        "`go version -m {}` failed: {}",
        binary.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.trim_start_matches('\t').split('\t').collect();
            matches!(f[0], "mod" | "dep" | "=>").then(|| {
                (
                    f[0].to_string(),
                    f.get(1).unwrap_or(&"").to_string(),
                    f.get(2).unwrap_or(&"").to_string(),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_module_mode_with_a_replacement() {
        let bin = binary("arm64", "tailscaled");
        let lines = go_version_m(&bin);
        assert_eq!(
            lines[0],
            ("mod".into(), "tailscale.com".into(), "(devel)".into())
        );
        assert!(lines.contains(&(
            "=>".into(),
            "github.com/tailscale/golang-x-crypto".into(),
            "v0.0.0-20250404221719-a5573b049869".into()
        )));
        assert_eq!(lines.iter().filter(|l| l.0 == "dep").count(), 3);
    }
}
