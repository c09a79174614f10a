//! `talext validate SOURCE`: load a source, validate each image root in it against the Talos
//! versions selected (one, a list, a range, or every known release when none is given), print
//! the report on stdout (text, or `--json`), fail with [`Error::Validation`] when a selected
//! target has an error (or, without `--talos-version`, when the image works on no known release).

use std::path::Path;

use clap::Args;

use super::{targets, validate_matrix, Finding, Options, Report};
use crate::error::{Error, Result};
use crate::inspect;
use crate::registry::RegistryOptions;
use crate::source::{dir, tarball, tarball::LoadedTree};
use crate::transport::Location;

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// What to validate: a directory holding `manifest.yaml` and `rootfs/`, or `tar:FILE` for a
    /// plain filesystem tarball (`crane export` output).
    pub source: String,
    /// Talos versions to validate against: one (`v1.14.0`), a comma list (`v1.9.0,v1.12.0`) or
    /// a range (`v1.9.0..v1.14.0`, every known minor in it). Without it, reports which known
    /// releases the image works on.
    #[arg(long, env = "TALEXT_TALOS_VERSION", value_name = "VERSIONS")]
    pub talos_version: Option<String>,
    /// Validate only these platforms of an image index (`linux/arm64`, comma list or
    /// repeated), as `copy --platform` selects them; each image is checked against its own
    /// architecture. For a directory or `tar:` source, the architecture its binaries must have.
    #[arg(
        long,
        env = "TALEXT_PLATFORM",
        value_name = "OS/ARCH",
        value_delimiter = ','
    )]
    pub platform: Vec<String>,
    /// Architecture every ELF binary must be built for, whatever the image says it is.
    #[arg(long, env = "TALEXT_ARCH", value_parser = ["amd64", "arm64"])]
    pub arch: Option<String>,
    /// Expected `metadata.name` (like the extensions validator's `--pkg-name`).
    #[arg(long, env = "TALEXT_PKG_NAME")]
    pub pkg_name: Option<String>,
    /// Print the report as JSON (shape documented on `validate::Report`).
    #[arg(long)]
    pub json: bool,
    /// Also require a cosign signature by this public key (PEM) over the image's digest, in
    /// its registry, layout or archive; a missing or foreign signature is an error (exit 1)
    /// before anything else is checked.
    #[arg(long, env = "TALEXT_REQUIRE_SIGNATURE", value_name = "PUB")]
    pub require_signature: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub registry: crate::registry_args::RegistryArgs,
}

/// One image root to validate, named for the report.
pub struct Subject {
    pub name: String,
    pub tree: LoadedTree,
    /// The platform's architecture, for images (binaries must match it).
    pub arch: Option<String>,
    /// `os/arch` of an image's platform; `None` for a bare tree.
    pub platform: Option<String>,
    /// Findings about the image's structure rather than its tree.
    pub structure: Vec<Finding>,
}

impl Subject {
    fn tree(name: &str, tree: LoadedTree) -> Self {
        Subject {
            name: name.to_string(),
            tree,
            arch: None,
            platform: None,
            structure: Vec::new(),
        }
    }
}

/// The platform images of an `oci:` / `oci-archive:` / registry source, flattened: those of
/// `platforms` only when it is not empty.
fn open_image(
    loc: &Location,
    source: &str,
    registry: &RegistryOptions,
    platforms: &[crate::oci::Platform],
) -> Result<Vec<Subject>> {
    let opened = inspect::open(loc, registry)?;
    subjects_of(&opened, source, platforms)
}

/// The subjects of an opened image: the images of `platforms` (every one when empty), each
/// flattened once, the platforms at the same time; a platform the image does not have is an
/// error naming those it has. Findings about the structure go on the first subject.
pub fn subjects_of(
    opened: &inspect::Opened,
    source: &str,
    platforms: &[crate::oci::Platform],
) -> Result<Vec<Subject>> {
    let structure: Vec<Finding> = opened
        .structure
        .iter()
        .map(|(rule, msg)| {
            Finding::new(
                rule,
                source,
                msg.clone(),
                "rebuild or re-copy the image so every index entry carries its platform (`talext build`, `talext copy`)",
            )
        })
        .collect();
    if opened.images.is_empty() {
        return Err(Error::input(format!("`{source}` holds no image manifests")));
    }
    let has: Vec<String> = opened.images.iter().map(|i| i.platform()).collect();
    for p in platforms {
        let want = format!("{}/{}", p.os, p.architecture);
        if !has.contains(&want) {
            return Err(Error::input_hint(
                format!("`{source}` has no `{want}` image"),
                format!("it has {}", has.join(", ")),
            ));
        }
    }
    let selected: Vec<&inspect::PlatformImage> = opened
        .images
        .iter()
        .filter(|img| {
            platforms.is_empty()
                || platforms
                    .iter()
                    .any(|p| img.platform() == format!("{}/{}", p.os, p.architecture))
        })
        .collect();
    let flattened: Vec<Result<Subject>> = std::thread::scope(|scope| {
        let handles: Vec<_> = selected
            .iter()
            .map(|img| {
                scope.spawn(move || {
                    let staging = crate::store::scratch::dir("validate")?;
                    let tree = inspect::flatten(opened, img, staging.path())?;
                    Ok(Subject {
                        name: format!("{source} {}", img.platform()),
                        tree: LoadedTree::staged(tree, staging),
                        arch: Some(img.config.architecture.clone()),
                        platform: Some(img.platform()),
                        structure: Vec::new(),
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::internal("flattening an image panicked")))
            })
            .collect()
    });
    let mut out = flattened.into_iter().collect::<Result<Vec<_>>>()?;
    if let Some(first) = out.first_mut() {
        first.structure = structure;
    }
    Ok(out)
}

/// Turn a SOURCE argument into the image roots it holds (of an image, the images of
/// `platforms`, every one when empty). New transports add an arm here.
pub fn open_source(
    source: &str,
    registry: &RegistryOptions,
    platforms: &[crate::oci::Platform],
) -> Result<Vec<Subject>> {
    if let Some(file) = source.strip_prefix("tar:") {
        return Ok(vec![Subject::tree(source, tarball::load(Path::new(file))?)]);
    }
    let cwd = std::env::current_dir().map_err(|e| Error::internal(e.to_string()))?;
    if source.starts_with("oci:")
        || source.starts_with("oci-archive:")
        || source.starts_with("docker://")
    {
        return open_image(&Location::parse(source, &cwd)?, source, registry, platforms);
    }
    let path = Path::new(source);
    if path.is_dir() {
        return Ok(vec![Subject::tree(
            source,
            LoadedTree::plain(dir::load(path)?),
        )]);
    }
    if path.is_file() {
        return Err(Error::input_hint(
            format!("`{source}` is a file, not a directory"),
            format!("for a plain filesystem tarball write `tar:{source}`"),
        ));
    }
    // A bare `host/repo:tag` means a registry image, as it does for skopeo.
    if let (true, Ok(loc @ Location::Registry(_))) =
        (source.contains('/'), Location::parse(source, &cwd))
    {
        return open_image(&loc, source, registry, platforms);
    }
    if let Some((transport, _)) = source.split_once(':') {
        if !transport.contains('/') && !transport.contains('.') {
            return Err(Error::input_hint(
                format!("unknown source transport `{transport}:`"),
                "give a directory, `tar:FILE`, `oci:DIR[:TAG]` or `oci-archive:FILE[:TAG]`",
            ));
        }
    }
    Err(Error::input_hint(
        format!("source `{source}` does not exist"),
        "give a directory holding `manifest.yaml` and `rootfs/`, `tar:FILE`, `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]` or `docker://REF`",
    ))
}

/// Validate every subject of `source` against `targets` and build the report (`survey` when the
/// targets are every known release rather than a user's choice).
pub fn validate_source(
    source: &str,
    opts: &Options,
    targets: &[String],
    survey: bool,
    registry: &RegistryOptions,
) -> Result<Report> {
    validate_platforms(source, opts, &[], targets, survey, registry)
}

/// [`validate_source`] for the images of `platforms` only (all when empty); a platform the
/// image does not have is an error naming those it has.
pub fn validate_platforms(
    source: &str,
    opts: &Options,
    platforms: &[crate::oci::Platform],
    targets: &[String],
    survey: bool,
    registry: &RegistryOptions,
) -> Result<Report> {
    let mut report = Report::new();
    report.survey = survey;
    let subjects = open_source(source, registry, platforms)?;
    for subject in subjects {
        if super::image_cache::is_cache(&subject.tree) {
            // A Talos image cache, not an extension: its own checks, no release matrix.
            let mut findings = subject.structure;
            findings.extend(super::image_cache::check(&subject.tree).0);
            report.push(subject.name, findings);
            continue;
        }
        let mut o = opts.clone();
        if o.arch.is_none() {
            o.arch = subject.arch.clone();
        }
        let mut findings = subject.structure;
        let (common, columns) = validate_matrix(&subject.tree, &o, targets);
        findings.extend(common);
        report.push_matrix(subject.name, findings, columns);
    }
    Ok(report)
}

/// The command: report on stdout, exit status from the report's verdict.
pub fn run(args: &ValidateArgs) -> Result<()> {
    let spec = args
        .talos_version
        .as_deref()
        .filter(|s| !s.trim().is_empty());
    let (selected, survey) = match spec {
        Some(spec) => (
            targets::parse(spec).map_err(|e| Error::input_hint(e.message, e.hint))?,
            false,
        ),
        None => (targets::survey(), true),
    };
    let platforms = crate::transfer::parse_platforms(&args.platform)?;
    let arches: std::collections::BTreeSet<&str> =
        platforms.iter().map(|p| p.architecture.as_str()).collect();
    let opts = Options {
        talos_version: None,
        // One architecture names what a bare tree's binaries must be; an image's platforms
        // are each checked against their own.
        arch: match (args.arch.clone(), arches.len()) {
            (Some(a), _) => Some(a),
            (None, 1) => arches.first().map(|a| a.to_string()),
            _ => None,
        },
        pkg_name: args.pkg_name.clone(),
    };
    if let Some(key) = &args.require_signature {
        crate::sign::cli::require_signature(&args.source, key, &args.registry.options()?)?;
    }
    let report = validate_platforms(
        &args.source,
        &opts,
        &platforms,
        &selected,
        survey,
        &args.registry.options()?,
    )?;
    let rendered = if args.json {
        let mut s = serde_json::to_string_pretty(&report.to_json())
            .map_err(|e| Error::internal(format!("rendering the report: {e}")))?;
        s.push('\n');
        s
    } else {
        report.render_text()
    };
    print_stdout(&rendered)?;
    if report.failed() {
        return Err(Error::Validation {
            errors: report.error_count(),
        });
    }
    Ok(())
}

fn print_stdout(s: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|()| out.flush()) {
        // A closed pipe (`| head`) is not a failure of the validation.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.map_err(|e| Error::internal(format!("writing to stdout: {e}"))),
    }
}
