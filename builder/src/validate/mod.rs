//! Validation of an extension image root (`manifest.yaml` + `rootfs/`) against everything Talos,
//! its imager and siderolabs' extensions validator enforce (contract §1–§3, §5, §7), plus the
//! traps none of them catch (hard links unpacked empty, a service whose container root is
//! missing, binaries for the wrong machine, secrets baked into a service definition).
//!
//! [`validate_tree`] returns every finding rather than stopping at the first, each with a stable
//! rule id (see [`RULES`]), a path inside the image, a message and a hint. The rules that changed
//! between Talos releases (the allowlist, kernel modules, the constraint verdict) read the
//! release table (`crate::release::extensions`) for the target; [`validate_matrix`] checks one
//! image against several targets at once. [`Report`] groups findings per subject (a platform such
//! as `linux/amd64`, or a source path) and renders them, with the matrix when there is one.

pub mod command;
pub mod constraint;
mod contents;
mod elf;
pub mod image_cache;
mod manifest;
pub mod range;
mod report;
pub mod semver;
pub mod service;
pub mod targets;

use serde::Serialize;

pub use manifest::Verdict;
pub use report::{Report, SubjectReport, TargetReport};

use crate::release::extensions::{self as facts, ExtensionFacts};
use crate::release::{Minor, NEWEST_RELEASED};
use crate::rootfs::Tree;

/// How bad a finding is: errors fail `talext validate` (exit 1), warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One problem found in an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable kebab-case rule id (one of [`RULES`], or a loader's note rule).
    pub rule: &'static str,
    pub severity: Severity,
    /// Path inside the image root (`rootfs/etc/foo.conf`, `manifest.yaml`), or `.` for the root.
    pub path: String,
    /// 1-based line in the file at `path`, where the problem is a line of a YAML file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

impl Finding {
    /// A finding whose severity is the rule's own (from [`RULES`]; unknown rules are errors).
    pub fn new(
        rule: &'static str,
        path: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Finding {
            rule,
            severity: severity_of(rule),
            path: path.into(),
            line: None,
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// The same finding, at `line` of its file (0 is no line).
    pub fn at_line(mut self, line: usize) -> Self {
        self.line = (line > 0).then_some(line);
        self
    }
}

/// What to check against.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Talos version the image must be compatible with (`v1.14.0`, pre-release allowed; only its
    /// core version is compared, contract §1.2), whose release facts the content rules apply.
    /// Without it only the constraint's syntax is checked, against the rules of the newest
    /// released Talos.
    pub talos_version: Option<String>,
    /// `amd64` or `arm64`: the ELF machine every binary must have. Without it, binaries for
    /// different machines in one tree are an error.
    pub arch: Option<String>,
    /// Expected `metadata.name` (the extensions validator's `--pkg-name`).
    pub pkg_name: Option<String>,
}

/// A rule in the catalogue.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub id: &'static str,
    pub severity: Severity,
    pub summary: &'static str,
}

const fn rule(id: &'static str, severity: Severity, summary: &'static str) -> Rule {
    Rule {
        id,
        severity,
        summary,
    }
}

use Severity::{Error as E, Warning as W};

/// Every rule `validate_tree` reports, with its severity.
pub const RULES: &[Rule] = &[
    // Structure and manifest (contract §1, §7).
    rule(
        "manifest-missing",
        E,
        "the image root has no `manifest.yaml`",
    ),
    rule("rootfs-missing", E, "the image root has no `rootfs/`"),
    rule("rootfs-not-dir", E, "`rootfs` is not a directory"),
    rule(
        "unexpected-top-level",
        E,
        "an entry beside `manifest.yaml` and `rootfs/`",
    ),
    rule("manifest-decode", E, "`manifest.yaml` cannot be decoded"),
    rule("manifest-version", E, "`version` is not `v1alpha1`"),
    rule("name-empty", E, "`metadata.name` is empty"),
    rule(
        "name-mismatch",
        E,
        "`metadata.name` differs from the expected package name",
    ),
    rule(
        "version-format",
        E,
        "`metadata.version` matches none of the validator's formats",
    ),
    rule(
        "compatibility-parse",
        E,
        "the Talos version constraint does not parse",
    ),
    rule(
        "compatibility-unsatisfied",
        E,
        "the constraint excludes the target Talos version",
    ),
    rule(
        "talos-version-invalid",
        E,
        "the target Talos version given does not parse",
    ),
    rule(
        "talos-version-unknown",
        W,
        "no release facts for the target; the nearest known release's are applied",
    ),
    // Contents (contract §2.3, §3).
    rule(
        "path-not-allowed",
        E,
        "a file outside Talos's extension allowlist",
    ),
    rule(
        "hard-link",
        E,
        "a hard link, which Talos unpacks as an empty file",
    ),
    rule("special-file", E, "a device, FIFO or socket"),
    rule(
        "firmware-absolute-symlink",
        E,
        "a firmware symlink with an absolute target",
    ),
    rule(
        "modules-no-kernel-release",
        E,
        "a modules directory without a kernel release",
    ),
    rule(
        "modules-kernel-release",
        E,
        "kernel modules for another kernel than the target's",
    ),
    rule(
        "modules-kernel-series",
        E,
        "kernel modules for another kernel series than every known tag of the target's",
    ),
    rule(
        "modules-kernel-unknown",
        W,
        "kernel modules, but the target's kernel release is not known",
    ),
    rule(
        "iptables-legacy-backend",
        W,
        "a container's `iptables` is the legacy backend, which the target's kernel lacks",
    ),
    rule(
        "cri-conf-ignored",
        W,
        "a CRI config entry Talos does not merge",
    ),
    // Loader notes (contract §2.1, §2.3).
    rule(
        "tarball-compressed",
        E,
        "a compressed tarball, which the imager cannot read",
    ),
    rule("tarball-duplicate", E, "a path twice in a plain tarball"),
    rule("tarball-whiteout", E, "a whiteout file in a plain tarball"),
    rule("tarball-empty-path", E, "a tar entry with an empty name"),
    rule(
        "path-escape",
        E,
        "an entry whose path or link escapes the root",
    ),
    rule(
        "path-through-symlink",
        E,
        "an entry written below a symlink (through the link when unpacked)",
    ),
    rule(
        "path-below-file",
        E,
        "an entry written below a regular file or other non-directory",
    ),
    rule("path-too-long", E, "a name over `NAME_MAX` or `PATH_MAX`"),
    rule(
        "name-not-unicode",
        E,
        "an entry name or link target that is not UTF-8",
    ),
    rule(
        "sparse-entry",
        E,
        "a sparse tar entry, refused rather than expanded",
    ),
    rule(
        "layer-duplicate",
        W,
        "a path twice in one image layer (the first is kept)",
    ),
    rule(
        "xattr-dropped",
        W,
        "an extended attribute Talos drops when unpacking",
    ),
    // Services (contract §5).
    rule(
        "service-yml",
        E,
        "a `.yml` service definition, which Talos ignores",
    ),
    rule(
        "service-decode",
        E,
        "a service definition that cannot be decoded",
    ),
    rule("service-name", E, "a service name Talos rejects"),
    rule(
        "service-restart",
        E,
        "`restart` missing or not a restart kind",
    ),
    rule(
        "service-entrypoint-empty",
        E,
        "`container.entrypoint` is empty",
    ),
    rule("service-depends", E, "an invalid `depends` item"),
    rule(
        "service-unknown-key",
        W,
        "a key Talos's service spec does not have, which it ignores (often a typo)",
    ),
    rule(
        "service-duplicate",
        E,
        "a service name declared by an earlier file",
    ),
    rule(
        "service-file-name",
        W,
        "the file name differs from the service name",
    ),
    rule(
        "service-container-root-missing",
        E,
        "no container root for the service",
    ),
    rule(
        "service-entrypoint-missing",
        E,
        "the entrypoint does not exist in the container",
    ),
    rule(
        "service-entrypoint-not-executable",
        E,
        "the entrypoint is not executable",
    ),
    rule("service-env-format", W, "an environment entry without `=`"),
    rule(
        "service-secret",
        E,
        "a secret written into a service definition",
    ),
    // Binaries.
    rule("elf-machine", E, "an ELF binary for another machine"),
    rule(
        "arch-invalid",
        E,
        "the architecture given is not `amd64` or `arm64`",
    ),
    rule("read-error", E, "a file in the source could not be read"),
    // Image structure (contract §2.1, §8.3), checked on `oci:`, `oci-archive:` and registry images.
    rule(
        "index-platform-missing",
        E,
        "an index entry without a platform",
    ),
    rule(
        "layout-platform-entry-missing",
        W,
        "`index.json` lists no platform manifest directly (no `ociPath` use)",
    ),
    rule(
        "config-platform-mismatch",
        E,
        "an index entry's platform differs from its config",
    ),
    rule("manifest-schema-one", E, "a Docker schema 1 manifest"),
    rule(
        "manifest-media-type",
        W,
        "an index entry that is not an image manifest",
    ),
    // Talos image caches (`crate::store::image_cache`), recognised wherever they lie.
    rule(
        "image-cache-blob",
        E,
        "an image cache blob that is missing, misnamed or not what its name says",
    ),
    rule(
        "image-cache-manifest",
        E,
        "an image cache manifest that is invalid, misplaced, not what its name says, or names nothing the cache holds",
    ),
];

/// The catalogue entry for a rule id.
pub fn find_rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

fn severity_of(id: &str) -> Severity {
    find_rule(id).map_or(Severity::Error, |r| r.severity)
}

/// Validate an extension image root. Returns every finding, in a stable order: structure and
/// manifest (with the constraint verdict for `opts.talos_version`), then contents (with the
/// loader's notes and the target release's allowlist and kernel modules), services and binaries.
pub fn validate_tree(tree: &Tree, opts: &Options) -> Vec<Finding> {
    let mut out = Vec::new();
    let (rootfs_ok, manifest) = manifest::check(tree, opts, &mut out);
    let target = opts.talos_version.as_deref();
    let release = match target {
        Some(t) => {
            manifest::check_target(manifest.as_ref(), t, &mut out);
            facts_for(t, &mut out)
        }
        None => newest(),
    };
    contents::check_notes(tree, &mut out);
    if rootfs_ok {
        contents::check(tree, &mut out);
        contents::check_release(tree, release, target, &mut out);
        service::check(tree, &mut out);
        elf::check(tree, opts, &mut out);
    }
    out
}

/// One target's column of a matrix: the version, the release whose facts applied, the
/// constraint verdict and the findings that depend on the release.
pub type TargetFindings = (String, String, Verdict, Vec<Finding>);

/// Validate an image root against several Talos versions: the findings that hold whatever the
/// release (`opts.talos_version` is ignored), and per target the constraint verdict and the
/// content findings of that release.
pub fn validate_matrix(
    tree: &Tree,
    opts: &Options,
    targets: &[String],
) -> (Vec<Finding>, Vec<TargetFindings>) {
    let mut common = Vec::new();
    let (rootfs_ok, manifest) = manifest::check(tree, opts, &mut common);
    contents::check_notes(tree, &mut common);
    if rootfs_ok {
        contents::check(tree, &mut common);
        service::check(tree, &mut common);
        elf::check(tree, opts, &mut common);
    }
    let columns = targets
        .iter()
        .map(|t| {
            let mut found = Vec::new();
            let verdict = manifest::check_target(manifest.as_ref(), t, &mut found);
            let release = facts_for(t, &mut found);
            if rootfs_ok {
                contents::check_release(tree, release, Some(t), &mut found);
            }
            (t.clone(), release.minor.to_string(), verdict, found)
        })
        .collect();
    (common, columns)
}

fn newest() -> &'static ExtensionFacts {
    facts::of(NEWEST_RELEASED).expect("the newest released minor has a row")
}

/// The release facts for a target version; a warning when talext has none for its minor.
fn facts_for(target: &str, out: &mut Vec<Finding>) -> &'static ExtensionFacts {
    let Some(minor) = Minor::of(target) else {
        // `talos-version-invalid` was reported by the constraint check.
        return newest();
    };
    let (row, own) = facts::nearest(minor);
    if !own {
        out.push(Finding::new(
            "talos-version-unknown",
            ".",
            format!(
                "talext has no facts for Talos {minor} (target `{target}`); the rules of {} are applied",
                row.minor
            ),
            format!(
                "validate against a release talext knows ({} to {})",
                crate::release::KNOWN[0],
                crate::release::KNOWN[crate::release::KNOWN.len() - 1]
            ),
        ));
    }
    row
}

/// Display form of a tree path under `rootfs/`: `/usr/local/bin/x`.
fn on_node(path: &str) -> String {
    format!("/{}", path.strip_prefix("rootfs/").unwrap_or(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_ids_are_unique_kebab_case() {
        let mut seen = std::collections::BTreeSet::new();
        for r in RULES {
            assert!(seen.insert(r.id), "duplicate rule {}", r.id);
            assert!(
                r.id.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                "{}",
                r.id
            );
        }
    }

    #[test]
    fn report_renders_text_and_json() {
        let mut r = Report::new();
        r.push(
            "linux/amd64",
            vec![
                Finding::new(
                    "path-not-allowed",
                    "rootfs/etc/x",
                    "path `/etc/x` is not allowed in extensions",
                    "move it",
                ),
                Finding::new("cri-conf-ignored", "rootfs/etc/cri/conf.d/a", "ignored", ""),
            ],
        );
        assert_eq!(r.error_count(), 1);
        assert_eq!(r.warning_count(), 1);
        let text = r.render_text();
        assert_eq!(
            text,
            "error[path-not-allowed] rootfs/etc/x: path `/etc/x` is not allowed in extensions\n  hint: move it\nwarning[cri-conf-ignored] rootfs/etc/cri/conf.d/a: ignored\nfailed: 1 error, 1 warning in linux/amd64\n"
        );
        let j = r.to_json();
        assert_eq!(j["ok"], false);
        assert_eq!(j["subjects"][0]["findings"][0]["severity"], "error");
        assert_eq!(j["subjects"][0]["findings"][1]["rule"], "cri-conf-ignored");
    }

    #[test]
    fn text_escapes_names_and_json_keeps_them() {
        let mut r = Report::new();
        let name = "rootfs/etc/\x1b[2J\nok: 0 errors";
        r.push(
            "linux/amd64",
            vec![Finding::new(
                "path-not-allowed",
                name,
                format!("path `/{name}` is not allowed"),
                "",
            )],
        );
        let text = r.render_text();
        assert!(!text.contains('\x1b'), "{text}");
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(
            text.contains("rootfs/etc/\\x1b[2J\\nok: 0 errors"),
            "{text}"
        );
        assert_eq!(r.to_json()["subjects"][0]["findings"][0]["path"], name);
    }

    #[test]
    fn unknown_rules_are_errors() {
        assert_eq!(
            Finding::new("from-a-loader", ".", "m", "h").severity,
            Severity::Error
        );
    }
}
