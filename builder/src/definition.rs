//! The extension definition: `extension/<name>/extension.yaml`, strictly parsed (an unknown key
//! is an error naming the file and line), plus the service file it points at. `ExtensionDef` is
//! what a user wrote; `crate::plan` resolves it against command-line overrides.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::rootfs::clean_path;

pub const DEFINITION_FILE: &str = "extension.yaml";
pub const DEFAULT_PLATFORMS: [&str; 2] = ["linux/amd64", "linux/arm64"];
/// The architectures the Talos imager accepts (`pkg/imager/profile/profile.go`).
pub const SUPPORTED_ARCHES: [&str; 2] = ["amd64", "arm64"];

/// `extension.yaml`. Field-by-field reference: `extension/README.md`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExtensionDef {
    /// `metadata.name` in `manifest.yaml`; also the service and SBOM file names.
    pub name: String,
    /// `metadata.version`.
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `metadata.extraInfo` (Talos ≥ 1.7 shows it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_info: Option<String>,
    /// Talos compatibility (`metadata.compatibility.talos.version`).
    pub compatibility: Compatibility,
    /// SPDX licence expression of the payload, for the SBOM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// CPE 2.3 name for the SBOM; `{version}` is replaced by the version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpe: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub homepage: Option<String>,
    /// Platforms to build, `linux/amd64` and/or `linux/arm64`.
    #[serde(default = "default_platforms")]
    pub platforms: Vec<String>,
    /// Service definition file (relative to the definition directory), installed as
    /// `rootfs/usr/local/etc/containers/<name>.yaml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Named sources: filesystem trees per platform.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sources: BTreeMap<String, SourceDef>,
    /// What of each source goes where under `rootfs/`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub payload: Vec<PayloadDef>,
    /// Extra files from the definition directory (docs, licences).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileDef>,
    /// The configuration contract of the service: the environment it reads and the
    /// `configFiles` it takes (`crate::talos::contract`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<crate::talos::contract::Contract>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compatibility {
    /// A Talos version constraint such as `>= v1.7.0`.
    pub talos: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceDef {
    /// `docker://REF@sha256:…` (or a bare pinned reference), `oci:DIR[:TAG]`,
    /// `oci-archive:FILE[:TAG]`, or a directory with an `{arch}` placeholder.
    pub location: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayloadDef {
    /// The source name.
    pub source: String,
    /// Destination directory under `rootfs/`, e.g. `/usr/local/lib/containers/tailscale`.
    pub to: String,
    /// Sub-directory of the source to take (default: its root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Glob patterns (relative to `from`) to keep; empty keeps everything. A matched directory
    /// keeps everything below it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Glob patterns (relative to `from`) to drop, with everything below them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// Symlinks placed in the payload after it is taken, replacing a symlink the source has at
    /// that path (e.g. pointing `iptables` at the nft backend). Each must resolve, inside the
    /// payload, to a regular file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<LinkDef>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkDef {
    /// Where the link goes, relative to the payload's `to` (a leading `/` is allowed).
    pub path: String,
    /// What it points at, exactly as written into the link: relative to the link's directory,
    /// or absolute within the payload (the container's root).
    pub target: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDef {
    /// File in the definition directory.
    pub src: String,
    /// Destination path under `rootfs/`.
    pub to: String,
    /// Octal mode as a string, default `"0644"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

fn default_platforms() -> Vec<String> {
    DEFAULT_PLATFORMS.iter().map(|s| s.to_string()).collect()
}

/// A definition loaded from its directory.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub dir: PathBuf,
    pub file: PathBuf,
    pub def: ExtensionDef,
    /// The service file's bytes, when the definition has one.
    pub service: Option<Vec<u8>>,
}

/// Load and check `DIR/extension.yaml`.
pub fn load(dir: &Path) -> Result<Loaded> {
    let file = dir.join(DEFINITION_FILE);
    if !file.is_file() {
        return Err(Error::input_hint(
            format!("no extension definition at `{}`", file.display()),
            "an extension directory holds `extension.yaml`; see `extension/README.md`",
        ));
    }
    let text = fs::read_to_string(&file).at("reading", &file)?;
    let def: ExtensionDef = serde_yaml::from_str(&text)
        .map_err(|e| Error::input(format!("`{}`: {e}", file.display())))?;
    check(&def, &file)?;
    let service = match &def.service {
        Some(s) => {
            let p = dir.join(s);
            Some(fs::read(&p).map_err(|e| {
                Error::input(format!(
                    "`{}`: field `service` names `{}`, which cannot be read: {e}",
                    file.display(),
                    p.display()
                ))
            })?)
        }
        None => None,
    };
    for f in &def.files {
        let p = dir.join(&f.src);
        if !p.is_file() {
            return Err(Error::input(format!(
                "`{}`: `files` entry `{}` does not exist",
                file.display(),
                p.display()
            )));
        }
    }
    Ok(Loaded {
        dir: dir.to_path_buf(),
        file,
        def,
        service,
    })
}

fn check(def: &ExtensionDef, file: &Path) -> Result<()> {
    let at = |field: &str, msg: String| {
        Error::input(format!("`{}`: field `{field}`: {msg}", file.display()))
    };
    if def.name.is_empty()
        || !def
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(at(
            "name",
            format!(
                "`{}` must match `^[-_a-z0-9]+$` (it names the service and its files)",
                def.name
            ),
        ));
    }
    if def.version.trim().is_empty() {
        return Err(at("version", "must not be empty".into()));
    }
    check_platforms(&def.platforms).map_err(|m| at("platforms", m))?;
    for p in &def.payload {
        if !def.sources.contains_key(&p.source) {
            return Err(at(
                "payload.source",
                format!(
                    "`{}` is not a source of this definition (sources: {})",
                    p.source,
                    def.sources.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        rootfs_dest(&p.to).map_err(|m| at("payload.to", m))?;
        if let Some(from) = &p.from {
            if from.split('/').any(|c| c == "..") {
                return Err(at(
                    "payload.from",
                    format!("`{from}` must stay inside the source"),
                ));
            }
        }
        for g in p.include.iter().chain(&p.exclude) {
            globset::Glob::new(g)
                .map_err(|e| at("payload.include/exclude", format!("`{g}`: {e}")))?;
        }
    }
    for f in &def.files {
        rootfs_dest(&f.to).map_err(|m| at("files.to", m))?;
        if let Some(m) = &f.mode {
            parse_mode(m).map_err(|m| at("files.mode", m))?;
        }
    }
    Ok(())
}

/// Check a platform list: each `linux/amd64` or `linux/arm64`, no duplicates, not empty.
pub fn check_platforms(list: &[String]) -> std::result::Result<(), String> {
    if list.is_empty() {
        return Err("at least one platform is needed".into());
    }
    for (i, p) in list.iter().enumerate() {
        let ok = p
            .strip_prefix("linux/")
            .is_some_and(|a| SUPPORTED_ARCHES.contains(&a));
        if !ok {
            return Err(format!(
                "`{p}` is not a platform Talos extensions are built for (linux/amd64, linux/arm64)"
            ));
        }
        if list[..i].contains(p) {
            return Err(format!("`{p}` is listed twice"));
        }
    }
    Ok(())
}

/// A destination under `rootfs/`, cleaned; it must not escape.
pub fn rootfs_dest(to: &str) -> std::result::Result<String, String> {
    if to.split('/').any(|c| c == "..") {
        return Err(format!("`{to}` must stay inside `rootfs/`"));
    }
    clean_path(to).ok_or_else(|| format!("`{to}` names no path under `rootfs/`"))
}

pub fn parse_mode(m: &str) -> std::result::Result<u32, String> {
    let digits = m.strip_prefix("0o").unwrap_or(m);
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|v| *v <= 0o7777)
        .ok_or_else(|| format!("`{m}` is not an octal file mode such as \"0644\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) {
        fs::write(dir.join(DEFINITION_FILE), text).unwrap();
    }

    #[test]
    fn unknown_key_names_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "name: x\nversion: 1.0.0\ncompatibility:\n  talos: \">= v1.7.0\"\nbogus: 1\n",
        );
        let err = load(d.path()).unwrap_err().to_string();
        assert!(err.contains("extension.yaml"), "{err}");
        assert!(err.contains("bogus"), "{err}");
        assert!(err.contains("line 5"), "{err}");
    }

    #[test]
    fn payload_must_name_a_source_and_stay_inside() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "name: x\nversion: 1.0.0\ncompatibility: {talos: \">= v1.7.0\"}\nsources: {a: {location: /x}}\npayload: [{source: b, to: /usr/local}]\n",
        );
        assert!(load(d.path()).unwrap_err().to_string().contains("`b`"));
        write(
            d.path(),
            "name: x\nversion: 1.0.0\ncompatibility: {talos: \">= v1.7.0\"}\nsources: {a: {location: /x}}\npayload: [{source: a, to: /usr/../../etc}]\n",
        );
        assert!(load(d.path())
            .unwrap_err()
            .to_string()
            .contains("payload.to"));
    }

    #[test]
    fn platforms_checked() {
        assert!(check_platforms(&["linux/amd64".into()]).is_ok());
        assert!(check_platforms(&["linux/riscv64".into()]).is_err());
        assert!(check_platforms(&["linux/amd64".into(), "linux/amd64".into()]).is_err());
        assert!(check_platforms(&[]).is_err());
    }

    #[test]
    fn the_tailscale_definition_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../extension/tailscale");
        let l = load(&dir).unwrap();
        assert_eq!(l.def.name, "tailscale");
        assert_eq!(l.def.compatibility.talos, ">= v1.7.0");
        assert!(l.service.is_some());
    }
}
