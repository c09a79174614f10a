//! The image root's structure and `manifest.yaml` (contract §1, §7): what Talos's loader
//! (`pkg/machinery/extensions/load.go`), its constraint check (`validate.go`) and the extensions
//! validator's name and version checks enforce. Unlike the loader, every unexpected top-level
//! entry is reported, not just the first.

use std::sync::OnceLock;

use regex::Regex;

use super::constraint::{self, ConstraintError};
use super::semver::{self, Version};
use super::{Finding, Options};
use crate::goyaml::lenient::{first_document, Decoder};
use crate::rootfs::{NodeKind, Tree};

const MANIFEST: &str = "manifest.yaml";
const ROOTFS: &str = "rootfs";

/// The fields Talos reads from `manifest.yaml` (`pkg/machinery/extensions/metadata.go`).
#[derive(Debug, Default, Clone)]
pub(super) struct Manifest {
    version: String,
    name: String,
    meta_version: String,
    constraint: String,
}

/// Check structure and manifest, whatever the target release (the constraint's syntax, not its
/// verdict: see [`check_target`]). Returns whether `rootfs/` is a directory worth walking, and
/// the manifest when it decoded.
pub(super) fn check(
    tree: &Tree,
    opts: &Options,
    out: &mut Vec<Finding>,
) -> (bool, Option<Manifest>) {
    // load.go: every entry must be `manifest.yaml` or `rootfs`.
    for name in tree.entries.keys().filter(|k| !k.contains('/')) {
        if name != MANIFEST && name != ROOTFS {
            out.push(Finding::new(
                "unexpected-top-level",
                name,
                format!("unexpected file `{name}` beside `manifest.yaml` and `rootfs/`"),
                "an extension image root holds only `manifest.yaml` and `rootfs/`; move it under `rootfs/` (for example `rootfs/usr/local/...`) or drop it (a Dockerfile `WORKDIR` creates one)",
            ));
        }
    }

    let rootfs_ok = match tree.get(ROOTFS).map(|n| &n.kind) {
        None => {
            out.push(Finding::new(
                "rootfs-missing",
                ROOTFS,
                "extension rootfs is missing",
                "put the files the extension ships under `rootfs/` in the image root",
            ));
            false
        }
        Some(NodeKind::Dir) => true,
        Some(_) => {
            out.push(Finding::new(
                "rootfs-not-dir",
                ROOTFS,
                "`rootfs` is not a directory",
                "`rootfs` must be a directory holding the files the extension overlays onto `/`",
            ));
            false
        }
    };

    let Some(manifest) = load(tree, out) else {
        return (rootfs_ok, None);
    };

    if manifest.version != "v1alpha1" {
        out.push(Finding::new(
            "manifest-version",
            MANIFEST,
            format!(
                "unsupported manifest version: {}",
                semver::go_quote(&manifest.version)
            ),
            "set `version: v1alpha1` (the only version Talos knows)",
        ));
    }

    if manifest.name.is_empty() {
        out.push(Finding::new(
            "name-empty",
            MANIFEST,
            "`metadata.name` is empty",
            "set `metadata.name` to the extension's name; Talos shows it in `talosctl get extensions` and in errors",
        ));
    } else if let Some(pkg) = opts.pkg_name.as_deref() {
        if pkg != manifest.name {
            out.push(Finding::new(
                "name-mismatch",
                MANIFEST,
                format!(
                    "pkg name does not match extension name: `{pkg}` != `{}`",
                    manifest.name
                ),
                "make `metadata.name` equal the package name, or pass the right `--pkg-name`",
            ));
        }
    }

    if !version_format_ok(&manifest.meta_version) {
        out.push(Finding::new(
            "version-format",
            MANIFEST,
            format!(
                "invalid version format `{}` for extension `{}`",
                manifest.meta_version, manifest.name
            ),
            "use a semver such as `1.2.3` or `v1.2.3-rc.1` (no `+build`), `YYYYMMDD[.N]`, `<x.y.z>-v<talos version>` or `x.y`",
        ));
    }

    let fix = "write `metadata.compatibility.talos.version` as blang/semver ranges: full versions, operators `<`, `<=`, `>`, `>=`, `=`, `!=`, spaces for AND and `||` for OR, e.g. `>= v1.7.0` (no `~`, `^`, commas or partial versions)";
    if let Err(ConstraintError::Parse(m)) = constraint::parse_constraint(&manifest.constraint) {
        out.push(Finding::new("compatibility-parse", MANIFEST, m, fix));
    }
    (rootfs_ok, Some(manifest))
}

fn load(tree: &Tree, out: &mut Vec<Finding>) -> Option<Manifest> {
    let missing_hint = "add a `manifest.yaml` with `version: v1alpha1` and `metadata` (name, version, compatibility) to the image root";
    let decode =
        |message: String, hint: &str| Finding::new("manifest-decode", MANIFEST, message, hint);
    match tree.get(MANIFEST).map(|n| &n.kind) {
        None => {
            out.push(Finding::new(
                "manifest-missing",
                MANIFEST,
                "extension manifest is missing",
                missing_hint,
            ));
            return None;
        }
        Some(NodeKind::File { .. }) => {}
        Some(NodeKind::HardLink { .. }) => {
            out.push(decode(
                "`manifest.yaml` is a hard link, which Talos unpacks as an empty file".into(),
                "store `manifest.yaml` as a regular file",
            ));
            return None;
        }
        Some(_) => {
            out.push(decode(
                "`manifest.yaml` is not a regular file".into(),
                "store `manifest.yaml` as a regular file",
            ));
            return None;
        }
    }
    let bytes = match tree.read_all(MANIFEST) {
        Ok(b) => b,
        Err(e) => {
            out.push(decode(
                format!("cannot read `manifest.yaml`: {e}"),
                missing_hint,
            ));
            return None;
        }
    };
    let value = match first_document(&bytes) {
        Ok(Some(v)) => v,
        Ok(None) => {
            out.push(decode(
                "`manifest.yaml` holds no YAML document (EOF)".into(),
                missing_hint,
            ));
            return None;
        }
        Err(e) => {
            out.push(
                decode(
                    format!("cannot decode `manifest.yaml`: {}", e.message),
                    "fix the YAML syntax",
                )
                .at_line(e.line),
            );
            return None;
        }
    };

    let mut d = Decoder::default();
    let root = d.mapping(Some(&value), "(document)");
    let metadata = d.mapping(d.get(root, "metadata"), "metadata");
    let compat = d.mapping(d.get(metadata, "compatibility"), "metadata.compatibility");
    let talos = d.mapping(d.get(compat, "talos"), "metadata.compatibility.talos");
    let manifest = Manifest {
        version: d.string(d.get(root, "version"), "version"),
        name: d.string(d.get(metadata, "name"), "metadata.name"),
        meta_version: d.string(d.get(metadata, "version"), "metadata.version"),
        constraint: d.string(
            d.get(talos, "version"),
            "metadata.compatibility.talos.version",
        ),
    };
    for field in ["author", "description", "extraInfo"] {
        d.string(d.get(metadata, field), &format!("metadata.{field}"));
    }
    if !d.errors.is_empty() {
        // go-yaml reports type errors as an unmarshal error; Talos refuses the extension.
        for e in d.errors {
            out.push(decode(
                format!("cannot decode `manifest.yaml`: {}", e.message),
                "give the field the type Talos expects (see the manifest schema: strings under `metadata`, `compatibility.talos.version` a string)",
            ).at_line(e.line));
        }
        return None;
    }
    Some(manifest)
}

/// The extensions validator's five accepted `metadata.version` shapes (contract §7). `[0-9]`
/// stands for Go's ASCII-only `\d`.
fn version_format_ok(v: &str) -> bool {
    static RES: OnceLock<Vec<Regex>> = OnceLock::new();
    let res = RES.get_or_init(|| {
        let semver = r"[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?";
        [
            format!(r"^v?({semver})$"),
            r"^[0-9]{8}(\.[0-9])?$".to_string(),
            format!(r"^([0-9]+\.[0-9]+\.[0-9]+)-v({semver})(-([0-9]+)-g([0-9a-f]+)(-dirty)?)?$"),
            format!(r"^([0-9a-f]+)-v({semver})(-([0-9]+)-g([0-9a-f]+)(-dirty)?)?$"),
            r"^v?([0-9]+\.[0-9]+)$".to_string(),
        ]
        .iter()
        .map(|p| Regex::new(p).expect("static regex"))
        .collect()
    });
    res.iter().any(|re| re.is_match(v))
}

/// The `compatibility.talos` constraint against one target release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The constraint holds for the target.
    Satisfied,
    /// The manifest gives no constraint, so any release is accepted.
    Unconstrained,
    /// The constraint excludes the target.
    Unsatisfied,
    /// The constraint does not parse (Talos refuses the extension on every release).
    Unparsable,
    /// There is no decodable manifest, or the target version does not parse.
    Unknown,
}

/// Check the constraint against `target` (contract §1.2: its core version is compared).
pub(super) fn check_target(
    manifest: Option<&Manifest>,
    target: &str,
    out: &mut Vec<Finding>,
) -> Verdict {
    let version = match Version::parse_tolerant(target) {
        Ok(v) => v,
        Err(e) => {
            out.push(Finding::new(
                "talos-version-invalid",
                ".",
                format!("target Talos version `{target}` does not parse: {e}"),
                "pass a Talos version such as `v1.14.0`",
            ));
            return Verdict::Unknown;
        }
    };
    let Some(manifest) = manifest else {
        return Verdict::Unknown;
    };
    let c = &manifest.constraint;
    match constraint::check_constraint(c, &version) {
        Ok(()) if c.is_empty() => Verdict::Unconstrained,
        Ok(()) => Verdict::Satisfied,
        Err(ConstraintError::Parse(_)) => Verdict::Unparsable,
        Err(ConstraintError::Unsatisfied(m)) => {
            out.push(Finding::new(
                "compatibility-unsatisfied",
                MANIFEST,
                format!("error validating extension `{}`: {m}", manifest.name),
                format!(
                    "build for a Talos version the constraint allows, or widen the constraint to include `{}`",
                    version.core()
                ),
            ));
            Verdict::Unsatisfied
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_formats_of_the_extensions_validator() {
        for ok in [
            "1.2.3",
            "v1.2.3-rc.1",
            "20240501",
            "20240501.2",
            "535.129.03-v1.8.0-alpha.0-10-g336fa0f-dirty",
            "535.129.03-v1.8.0",
            "5815ee3-v1.8.0-alpha.0-10-g336fa0f",
            "4.3",
            "v4.3",
        ] {
            assert!(version_format_ok(ok), "{ok}");
        }
        // Go's `\d+` takes leading zeros, so a dotted date passes as semver.
        assert!(version_format_ok("2024.05.01"));
        assert!(version_format_ok("20240501.12"), "partial semver");
        for bad in ["1.2.3+meta", "v1", "1.2.3.4", "", "20240501.1a"] {
            assert!(!version_format_ok(bad), "{bad}");
        }
    }
}
