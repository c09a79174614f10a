//! Command-line parsing and the edge where errors are rendered and mapped to exit codes.
//!
//! Exit codes (README "Exit codes"): 0 success (and `--help`, `--version`), 1 bad input, usage
//! errors included, or failed validation, 2 environment or internal failure, 141 when stdout was
//! closed before everything was written (`talext inspect --json X | head -1`): the status a shell
//! reports for a writer killed by `SIGPIPE`, reached quietly instead of with a panic.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

use crate::build;
use crate::error::{Error, IoContext};
use crate::plan::Request;
use crate::transport::Location;

/// `--version`: the crate version, the commit it was built from, the target triple and the
/// build date (`SOURCE_DATE_EPOCH` at build time, `unknown` without it).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("TALEXT_GIT_COMMIT"),
    ", ",
    env!("TALEXT_TARGET"),
    ", built ",
    env!("TALEXT_BUILD_DATE"),
    ")"
);

/// Exit status when stdout is closed early: 128 + `SIGPIPE`, what a shell shows for `yes | head`.
pub const EXIT_BROKEN_PIPE: u8 = 141;

const MAIN_EXAMPLES: &str = "\
Examples:
  talext build extension/tailscale -o oci:out/tailscale:v1.80.0
  talext validate oci:out/tailscale:v1.80.0 --talos-version v1.10.0
  talext copy oci:out/tailscale:v1.80.0 registry.internal:5000/ext/tailscale:v1.80.0
  talext completions bash > /etc/bash_completion.d/talext";

const BUILD_EXAMPLES: &str = "\
Examples:
  talext build extension/tailscale -o oci:out/tailscale:v1.80.0
  talext build extension/tailscale --platform linux/amd64 --json \\
      -o docker://registry.internal:5000/ext/tailscale:v1.80.0";

const COPY_EXAMPLES: &str = "\
Examples:
  talext copy ghcr.io/acme/tailscale:v1.80.0 oci-archive:tailscale.tar
  talext copy --src-creds bot --src-password-stdin --platform linux/arm64 \\
      ghcr.io/acme/tailscale:v1.80.0 docker://registry.internal:5000/ext/tailscale:v1.80.0";

const VALIDATE_EXAMPLES: &str = "\
Examples:
  talext validate oci:out/tailscale:v1.80.0 --talos-version v1.10.0
  talext validate ghcr.io/siderolabs/tailscale:1.80.0 --json";

const BUNDLE_PUSH_EXAMPLES: &str = "\
Examples:
  talext bundle push airgap.tar registry.internal:5000/mirror
  talext bundle push airgap.tar 10.0.0.5:5000 --insecure --json
  talext bundle push airgap.tar registry.internal:5000/mirror --ca-file site-ca.pem \\
      --talos-version v1.13.0 --mirror-config mirrors.yaml";

#[derive(Debug, Parser)]
#[command(
    name = "talext",
    version = VERSION,
    about = "Build, validate and move Talos system extension images",
    after_help = MAIN_EXAMPLES
)]
pub struct Cli {
    /// Print nothing on stderr but errors.
    #[arg(short, long, global = true, env = "TALEXT_QUIET", value_parser = clap::builder::BoolishValueParser::new())]
    pub quiet: bool,
    /// More logs on stderr: `-v` info, `-vv` debug, `-vvv` trace (`RUST_LOG`, when set, wins).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Talos configuration for the Tailscale extension: render and lint.
    Config {
        #[command(subcommand)]
        command: crate::talos::cli::ConfigCommand,
    },
    /// Custom extensions catalogs for a self-hosted Image Factory.
    Catalog {
        #[command(subcommand)]
        command: crate::talos::cli::CatalogCommand,
    },
    /// Write an imager profile that bakes extensions into boot media or an installer.
    ImagerProfile(crate::talos::cli::ImagerProfileArgs),
    /// Image Factory schematics: compute IDs offline.
    Schematic {
        #[command(subcommand)]
        command: crate::talos::cli::SchematicCommand,
    },
    /// Build an extension image from a definition directory.
    #[command(after_help = BUILD_EXAMPLES)]
    Build(BuildArgs),
    /// Show the resolved definition a build would use, as `extension.yaml` (YAML on stdout).
    Plan(PlanArgs),
    /// Check an extension image against Talos's rules and report every finding.
    #[command(after_help = VALIDATE_EXAMPLES)]
    Validate(crate::validate::command::ValidateArgs),
    /// Describe an extension image: platforms, digests, sizes, manifest, services, tree.
    Inspect(InspectArgs),
    /// Copy an image or index between registries, OCI layouts and oci-archives, digests unchanged.
    #[command(after_help = COPY_EXAMPLES)]
    Copy(CopyArgs),
    /// Multi-platform indexes: stitch platform images built on separate machines into one.
    Index {
        #[command(subcommand)]
        command: IndexCommand,
    },
    /// Air-gap bundles: every image in one file, verified, pushed into a private registry.
    Bundle {
        #[command(subcommand)]
        command: crate::bundle::cli::BundleCommand,
    },
    /// The cache of pulled sources and built layers: list, verify, prune.
    Cache(crate::cache_admin::CacheArgs),
    /// The images a Talos release needs (installer, Kubernetes, etcd, CoreDNS, …), one per line.
    Images(ImagesArgs),
    /// The image cache Talos boots from (`talosctl image cache-create`'s format), reproducibly.
    ImageCache {
        #[command(subcommand)]
        command: ImageCacheCommand,
    },
    /// Signing keys: generate a cosign-compatible ECDSA P-256 key pair.
    Key {
        #[command(subcommand)]
        command: crate::sign::cli::KeyCommand,
    },
    /// Sign an image or index in a registry with a cosign-compatible `sha256-HEX.sig` signature.
    Sign(crate::sign::cli::SignArgs),
    /// Scaffold an extension definition (`extension/NAME/extension.yaml`) to fill in.
    Init(crate::init::InitArgs),
    /// Store a registry credential (checked first) where every talext command and skopeo find it.
    Login(crate::login::LoginArgs),
    /// Remove a registry credential stored by `login`.
    Logout(crate::login::LogoutArgs),
    /// Attach a signed in-toto attestation (an SBOM, a provenance) to an image in a registry.
    Attest(crate::sign::cli::AttestArgs),
    /// Check that a signature by a public key covers an image or index (registry, layout, archive).
    Verify(crate::sign::cli::VerifyArgs),
    /// A self-hosted Image Factory: the settings that verify images with your key.
    Factory {
        #[command(subcommand)]
        command: crate::sign::cli::FactoryCommand,
    },
    /// Print a shell completion script on stdout.
    #[command(
        visible_alias = "completion",
        after_help = "Examples:\n  talext completions bash > ~/.local/share/bash-completion/completions/talext\n  talext completions zsh > \"${fpath[1]}/_talext\"\n  talext completions fish > ~/.config/fish/completions/talext.fish"
    )]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages (`talext.1`, `talext-build.1`, …) into a directory.
    #[command(after_help = "Examples:\n  talext man /usr/local/share/man/man1")]
    Man {
        /// The directory to write into (created if missing).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// The Talos release (`v1.13.0`).
    #[arg(
        long,
        env = "TALEXT_TALOS_VERSION",
        value_name = "VERSION",
        required_unless_present = "closure"
    )]
    pub talos_version: Option<String>,
    /// Read the release, Kubernetes version, schematic, receipts, added and dropped images
    /// from a closure file (what `bundle create --closure` bundles); the flags add to it.
    #[arg(long, value_name = "FILE")]
    pub closure: Option<PathBuf>,
    /// An Image Factory schematic ID: list the factory's installer for it instead.
    #[arg(long, value_name = "ID")]
    pub schematic: Option<String>,
    /// The Kubernetes version (default: the release's `DefaultKubernetesVersion`).
    #[arg(long, env = "TALEXT_KUBERNETES_VERSION", value_name = "VERSION")]
    pub kubernetes_version: Option<String>,
    /// Add the extension a build receipt names (`talext build --receipt`), pinned; repeatable.
    #[arg(long = "receipt", value_name = "FILE")]
    pub receipts: Vec<PathBuf>,
    /// Add an image; repeatable.
    #[arg(long = "image", value_name = "REF")]
    pub add: Vec<String>,
    /// Drop the images of a role (`flannel`, `kube-proxy`, …) or repository; repeatable.
    #[arg(long = "drop", value_name = "ROLE|REPO")]
    pub drop: Vec<String>,
    /// Print JSON (`[{role, image}]`) instead of one image per line.
    #[arg(long)]
    pub json: bool,
}

impl ImagesArgs {
    /// The closure these flags describe: the `--closure` file, with the flags on top.
    pub fn closure(&self) -> crate::error::Result<crate::release::images::Closure> {
        let mut c = match &self.closure {
            Some(f) => crate::release::images::Closure::read(f)?,
            None => crate::release::images::Closure::default(),
        };
        if let Some(v) = &self.talos_version {
            c.talos_version = v.clone();
        }
        if let Some(v) = &self.kubernetes_version {
            c.kubernetes_version = Some(v.clone());
        }
        if let Some(id) = &self.schematic {
            c.schematic = Some(id.clone());
            c.schematic_file = None;
        }
        c.receipts.extend(self.receipts.iter().cloned());
        c.images.extend(self.add.iter().cloned());
        c.drop.extend(self.drop.iter().cloned());
        Ok(c)
    }
}

#[derive(Debug, Subcommand)]
pub enum ImageCacheCommand {
    /// Write an image cache for the imager (`imageCache` input) or an `IMAGECACHE` volume.
    Create(ImageCacheArgs),
}

#[derive(Debug, Args)]
pub struct ImageCacheArgs {
    /// Images to cache (`REGISTRY/REPO:TAG[@DIGEST]`).
    pub images: Vec<String>,
    /// More images, one per line (`#` comments allowed; `-` reads stdin).
    #[arg(long, env = "TALEXT_IMAGES_FILE", value_name = "FILE")]
    pub images_file: Option<PathBuf>,
    /// The directory to write (new or empty).
    #[arg(short, long, env = "TALEXT_OUTPUT", value_name = "DIR")]
    pub output: PathBuf,
    /// `oci` (an OCI layout holding one image whose layer is the cache) or `flat` (the tree).
    #[arg(long, default_value = "oci", value_parser = ["oci", "flat"])]
    pub layout: String,
    /// Platforms to cache (`linux/amd64`), repeatable or comma-separated, or `all`.
    #[arg(
        long = "platform",
        env = "TALEXT_PLATFORM",
        value_delimiter = ',',
        default_value = "linux/amd64"
    )]
    pub platforms: Vec<String>,
    /// Also cache each image's cosign signature tags when present.
    #[arg(long)]
    pub signatures: bool,
    /// Take images from this store first (`oci:DIR`, `oci-archive:FILE`, a bundle), by reference
    /// tag; repeatable. Images not found there come from their registry.
    #[arg(long = "from", value_name = "LOCATION")]
    pub from: Vec<String>,
    /// The wrapping image's `created` time (seconds since the epoch).
    #[arg(long, env = "SOURCE_DATE_EPOCH", default_value_t = 0)]
    pub source_date_epoch: u64,
    /// Print JSON instead of the digest.
    #[arg(long)]
    pub json: bool,
    #[arg(long, short = 'j', env = "TALEXT_JOBS", default_value_t = crate::transfer::DEFAULT_JOBS, value_name = "N")]
    pub jobs: usize,
    #[command(flatten)]
    pub registry: crate::registry_args::RegistryArgs,
}

#[derive(Debug, Subcommand)]
pub enum IndexCommand {
    /// One index naming each platform image given, in order, written with everything they name
    /// (`docker buildx imagetools create`): per-platform builds fanned out across CI runners,
    /// stitched in the order of the definition's `platforms:`, give the one-machine digest.
    #[command(
        after_help = "Examples:\n  talext build extension/tailscale --platform linux/amd64 -o docker://reg/ext/tailscale:1.102.5-amd64\n  talext build extension/tailscale --platform linux/arm64 -o docker://reg/ext/tailscale:1.102.5-arm64\n  talext index create reg/ext/tailscale:1.102.5-amd64 reg/ext/tailscale:1.102.5-arm64 \\\n      -o docker://reg/ext/tailscale:1.102.5"
    )]
    Create(IndexCreateArgs),
}

#[derive(Debug, Args)]
pub struct IndexCreateArgs {
    /// Platform images (or indexes, whose platform images are taken): `docker://REF`,
    /// `oci:DIR[:TAG]` or `oci-archive:FILE[:TAG]`, in the order the index lists them.
    #[arg(value_name = "SOURCE", required_unless_present = "from_receipts")]
    pub sources: Vec<String>,
    /// The build receipt of a platform build (`build --platform P --receipt FILE`); repeatable.
    /// Without SOURCEs, each receipt's output is a source; with them, each receipt's platform
    /// digests must be in the index. Their extension name and version must agree, and go into
    /// `--receipt`.
    #[arg(long = "from-receipt", value_name = "FILE")]
    pub from_receipts: Vec<PathBuf>,
    /// Write the build receipt of the stitched index (for `imager-profile --receipt`, `catalog
    /// build`), as one build of every platform would; needs `--from-receipt`.
    #[arg(long, value_name = "FILE", requires = "from_receipts")]
    pub receipt: Option<PathBuf>,
    /// Where to write the index: `docker://REF`, `oci:DIR[:TAG]` or `oci-archive:FILE[:TAG]`.
    #[arg(short, long, value_name = "LOCATION")]
    pub output: String,
    /// Also write the index digest to this file.
    #[arg(long, env = "TALEXT_DIGESTFILE", value_name = "FILE")]
    pub digestfile: Option<PathBuf>,
    /// Blobs transferred at once.
    #[arg(long, short = 'j', env = "TALEXT_JOBS", default_value_t = crate::transfer::DEFAULT_JOBS, value_name = "N")]
    pub jobs: usize,
    /// Print `{destination, digest, mediaType, manifests: [{platform, digest, source}],
    /// blobsCopied, blobsSkipped}` instead of the digest.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: crate::registry_args::RegistryArgs,
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// `docker://REF` (or a bare `host/repo:tag`), `oci:DIR[:TAG]` or `oci-archive:FILE[:TAG]`.
    pub source: String,
    /// Where to copy to, in the same forms.
    pub destination: String,
    /// Copy only these platforms of an index (`linux/amd64`); repeatable or comma-separated.
    /// Default: every platform, and the index unchanged.
    #[arg(long = "platform", env = "TALEXT_PLATFORM", value_delimiter = ',')]
    pub platforms: Vec<String>,
    /// Also write the digest of the copied manifest or index to this file.
    #[arg(long, env = "TALEXT_DIGESTFILE", value_name = "FILE")]
    pub digestfile: Option<PathBuf>,
    /// Blobs transferred at once.
    #[arg(long, short = 'j', env = "TALEXT_JOBS", default_value_t = crate::transfer::DEFAULT_JOBS, value_name = "N")]
    pub jobs: usize,
    /// Do not copy the image's `sha256-HEX.sig` signature tags with it.
    #[arg(long, env = "TALEXT_NO_SIGNATURES", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_signatures: bool,
    /// Print `{source, destination, digest, mediaType, manifests, blobsCopied, blobsSkipped}`
    /// as JSON instead of the digest.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub creds: crate::registry_args::CopyCredentialArgs,
    #[command(flatten)]
    pub registry: crate::registry_args::RegistryArgs,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// `docker://REF`, `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]` or an unpacked extension directory.
    pub source: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// For a registry image, also fetch its layers to show the extension inside (its
    /// `manifest.yaml`, services and tree). Without it only manifests and configs are read, as
    /// `skopeo inspect` does; local stores are always read whole.
    #[arg(long)]
    pub contents: bool,
    #[command(flatten)]
    pub registry: crate::registry_args::RegistryArgs,
}

#[derive(Debug, Args)]
pub struct DefinitionArgs {
    /// The extension definition directory; several (`extension/*`) build one after another,
    /// files among them (a README) are skipped.
    #[arg(default_value = "extension/tailscale", num_args = 1..)]
    pub dirs: Vec<PathBuf>,
    /// Override a source: `NAME=LOCATION` (a directory with `{arch}`, `oci:DIR[:TAG]`,
    /// `oci-archive:FILE[:TAG]`, `deb:FILE`, `tar:FILE`). Repeatable.
    #[arg(
        long = "source",
        value_name = "NAME=LOCATION",
        env = "TALEXT_SOURCE",
        value_delimiter = ';'
    )]
    pub sources: Vec<String>,
    /// Override the extension version (`metadata.version`), not talext's own.
    #[arg(long, env = "TALEXT_EXTENSION_VERSION")]
    pub version: Option<String>,
    /// Platforms to build (`linux/amd64`, `linux/arm64`); repeatable or comma-separated.
    #[arg(long = "platform", env = "TALEXT_PLATFORM", value_delimiter = ',')]
    pub platforms: Vec<String>,
    /// Timestamp for every file and the image `created` time (seconds since the epoch).
    #[arg(long, env = "SOURCE_DATE_EPOCH", default_value_t = 0)]
    pub source_date_epoch: u64,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub def: DefinitionArgs,
    /// Print `{definition, sourceDateEpoch, extension}` as JSON instead of YAML.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub def: DefinitionArgs,
    /// Where to write the image: `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`, `tar:FILE` (one
    /// platform's filesystem) or `docker://REGISTRY/REPO:TAG`.
    #[arg(short, long, env = "TALEXT_OUTPUT")]
    pub output: String,
    /// Also write the build receipt (name, version, output, digests) to this file.
    #[arg(long, env = "TALEXT_RECEIPT", value_name = "FILE")]
    pub receipt: Option<PathBuf>,
    /// Print the receipt as JSON on stdout instead of the digest.
    #[arg(long)]
    pub json: bool,
    /// Cache for pulled sources and built layers (default `$XDG_CACHE_HOME/talext`, else
    /// `~/.cache/talext`).
    #[arg(long, env = "TALEXT_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Do not read or write the cache.
    #[arg(long, env = "TALEXT_NO_CACHE", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_cache: bool,
    /// Blobs pulled or pushed at once.
    #[arg(long, short = 'j', env = "TALEXT_JOBS", default_value_t = crate::transfer::DEFAULT_JOBS, value_name = "N")]
    pub jobs: usize,
    #[command(flatten)]
    pub signing: crate::sign::cli::BuildSignArgs,
    #[command(flatten)]
    pub registry: crate::registry_args::RegistryArgs,
}

/// The extension version's env twin used to be `TALEXT_VERSION`, a name CI sets to pin talext
/// itself; it relabelled the extension without a word. Now it is ignored, and said so.
pub const OLD_VERSION_ENV: &str = "TALEXT_VERSION";

fn warn_old_version_env(quiet: bool) {
    if !quiet && std::env::var_os(OLD_VERSION_ENV).is_some() {
        eprintln!(
            "warning: `{OLD_VERSION_ENV}` is ignored; set `TALEXT_EXTENSION_VERSION` or pass \
             `--version` to override the extension version"
        );
    }
}

impl DefinitionArgs {
    /// The definition directories named (files skipped). With several, `--version` (one
    /// definition's) is refused, and each `--source NAME=…` goes to the definitions that
    /// declare a source `NAME`; one that no definition declares is refused.
    fn definitions(&self) -> Result<Vec<PathBuf>, Error> {
        if self.dirs.len() == 1 {
            return Ok(self.dirs.clone());
        }
        let dirs: Vec<PathBuf> = self.dirs.iter().filter(|d| !d.is_file()).cloned().collect();
        if dirs.len() > 1 && self.version.is_some() {
            return Err(Error::input_hint(
                "`--version` names one definition's version, and several definitions are given",
                "build the definitions one at a time to relabel one",
            ));
        }
        if dirs.is_empty() {
            return Err(Error::input(
                "none of the paths given is a definition directory",
            ));
        }
        if dirs.len() > 1 && !self.sources.is_empty() {
            let mut declared = std::collections::BTreeSet::new();
            for d in &dirs {
                declared.extend(crate::definition::load(d)?.def.sources.into_keys());
            }
            for o in &self.sources {
                let name = o.split_once('=').map_or(o.as_str(), |(n, _)| n);
                if !declared.contains(name) {
                    return Err(Error::input(format!(
                        "`--source {o}`: none of the definitions has a source named `{name}` (sources: {})",
                        declared.iter().cloned().collect::<Vec<_>>().join(", ")
                    )));
                }
            }
        }
        Ok(dirs)
    }

    fn request_for(&self, dir: &std::path::Path) -> Request {
        // Among several definitions, each takes the overrides of the sources it declares.
        let sources = if self.dirs.len() > 1 {
            match crate::definition::load(dir) {
                Ok(loaded) => self
                    .sources
                    .iter()
                    .filter(|o| {
                        let name = o.split_once('=').map_or(o.as_str(), |(n, _)| n);
                        loaded.def.sources.contains_key(name)
                    })
                    .cloned()
                    .collect(),
                Err(_) => self.sources.clone(),
            }
        } else {
            self.sources.clone()
        };
        Request {
            dir: dir.to_path_buf(),
            sources,
            version: self.version.clone(),
            platforms: self.platforms.clone(),
            epoch: self.source_date_epoch,
            fetch: Default::default(),
        }
    }
}

/// The whole command line, as parsed and as completions and man pages describe it.
pub fn command() -> clap::Command {
    Cli::command().mut_subcommand("bundle", |bundle| {
        bundle.mut_subcommand("push", |push| push.after_help(BUNDLE_PUSH_EXAMPLES))
    })
}

/// Build the definition in `dir` (named `name`) as `talext build` does; its receipt and the
/// line `build` prints.
fn build_one(
    args: &BuildArgs,
    dir: &std::path::Path,
    name: &str,
    reporter: &crate::progress::Shared,
    quiet: bool,
) -> Result<(crate::talos::receipt::Receipt, String), Error> {
    let cwd = std::env::current_dir().map_err(|e| Error::internal(e.to_string()))?;
    let output = Location::parse(&args.output.replace("{name}", name), &cwd)?;
    let mut req = args.def.request_for(dir);
    req.fetch = crate::pull::Fetch {
        registry: args.registry.options()?,
        cache_dir: if args.no_cache {
            None
        } else {
            args.cache_dir
                .clone()
                .or_else(crate::pull::default_cache_dir)
        },
        jobs: args.jobs,
        reporter: reporter.clone(),
    };
    let signer = args.signing.load(&output)?;
    let (built, attestations) = match signer {
        Some(_) => build::build_for_signing(&req, &output)?,
        None => (build::build(&req, &output)?, Default::default()),
    };
    let pushed = built.reference.as_deref();
    crate::sign::cli::sign_built(signer, pushed, &attestations, &req.fetch.registry, quiet)?;
    let receipt = built.receipt();
    if let Some(file) = &args.receipt {
        let file = PathBuf::from(file.to_string_lossy().replace("{name}", name));
        let json =
            serde_json::to_string_pretty(&receipt).map_err(|e| Error::internal(e.to_string()))?;
        crate::image::write_file_atomic(&file, format!("{json}\n").as_bytes())?;
    }
    Ok((receipt, built.stdout_line()))
}

pub fn main() -> ExitCode {
    quiet_on_broken_pipe();
    let cli = match command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(cli) => cli,
        Err(err) => return usage(&err),
    };
    init_logging(cli.quiet, cli.verbose);
    crate::store::scratch::clean_up_on_signals();
    // Scratch trees of runs that were killed (their process is gone) are reclaimed here.
    crate::store::scratch::reclaim(&std::env::temp_dir());
    match run(cli) {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) => ExitCode::from(EXIT_BROKEN_PIPE),
        Err(err) => {
            report(&err);
            ExitCode::from(err.exit_kind().code())
        }
    }
}

/// `--help` and `--version` print on stdout and exit 0; a usage error is bad input: exit 1,
/// not clap's 2, which the README keeps for environment failures.
fn usage(err: &clap::Error) -> ExitCode {
    let _ = err.print();
    if err.use_stderr() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Write `text` to stdout, all of it, and flush. Every command's data goes through here, so a
/// closed pipe surfaces as one error [`main`] recognises instead of a `println!` panic.
pub fn out(text: impl AsRef<[u8]>) -> Result<(), Error> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_ref())
        .and_then(|()| stdout.flush())
        .map_err(|source| Error::Io {
            op: "writing",
            path: PathBuf::from("stdout"),
            source,
        })
}

/// [`out`] with a newline.
pub fn outln(text: impl std::fmt::Display) -> Result<(), Error> {
    out(format!("{text}\n"))
}

/// Whether `err` is a write to a closed stdout (`EPIPE`), reported by [`out`] or by a command
/// that writes its own output.
pub fn is_broken_pipe(err: &Error) -> bool {
    matches!(
        err,
        Error::Io { path, source, .. }
            if path == Path::new("stdout") && source.kind() == std::io::ErrorKind::BrokenPipe
    )
}

/// A `print!` that meets a closed stdout panics; end such a run with [`EXIT_BROKEN_PIPE`] and no
/// message instead, as a `SIGPIPE` would. Every other panic keeps the default report.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if payload.starts_with("failed printing to stdout") && payload.contains("Broken pipe") {
            std::process::exit(EXIT_BROKEN_PIPE.into());
        }
        default(info)
    }));
}

/// Write one man page per command and subcommand into `dir`.
fn write_man_pages(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    use crate::error::IoContext as _;
    fn walk(cmd: clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> Result<(), Error> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
            walk(sub, dir, written)?;
        }
        let man = clap_mangen::Man::new(cmd);
        let path = dir.join(man.get_filename());
        let mut page = Vec::new();
        man.render(&mut page).at("rendering", &path)?;
        std::fs::write(&path, page).at("writing", &path)?;
        written.push(path);
        Ok(())
    }
    std::fs::create_dir_all(dir).at("creating", dir)?;
    let mut cmd = command().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    walk(cmd, dir, &mut written)?;
    written.sort();
    Ok(written)
}

fn run(cli: Cli) -> Result<ExitCode, Error> {
    let reporter = crate::progress::Bars::for_terminal(cli.quiet);
    match cli.command {
        Command::Config { command } => {
            crate::talos::cli::run_config(command)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Catalog { command } => {
            crate::talos::cli::run_catalog(command)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::ImagerProfile(args) => {
            crate::talos::cli::run_imager_profile(args, cli.quiet)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Schematic { command } => {
            crate::talos::cli::run_schematic(command)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Build(args) => {
            warn_old_version_env(cli.quiet);
            let dirs = args.def.definitions()?;
            let several = dirs.len() > 1;
            if several {
                for (flag, value) in [
                    ("--output", Some(args.output.as_str())),
                    (
                        "--receipt",
                        args.receipt.as_deref().and_then(|p| p.to_str()),
                    ),
                ] {
                    if value.is_some_and(|v| !v.contains("{name}")) {
                        return Err(Error::input_hint(
                            format!("`{flag}` must hold `{{name}}` when several definitions are built"),
                            "e.g. `--output oci:out/{name}` or `--output docker://registry.example.com/ext/{name}:latest`",
                        ));
                    }
                }
            }
            let mut receipts = Vec::new();
            for dir in &dirs {
                let name = crate::definition::load(dir)?.def.name;
                let receipt = build_one(&args, dir, &name, &reporter, cli.quiet)?;
                if !args.json {
                    outln(receipt.1)?;
                }
                receipts.push(receipt.0);
            }
            if several && !cli.quiet {
                eprintln!("built {} definitions", receipts.len());
            }
            if args.json {
                let json = if several {
                    serde_json::to_string_pretty(&receipts)
                } else {
                    serde_json::to_string_pretty(&receipts[0])
                }
                .map_err(|e| Error::internal(e.to_string()))?;
                outln(json)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect(args) => {
            let cwd = std::env::current_dir().map_err(|e| Error::internal(e.to_string()))?;
            let loc = Location::parse(&args.source, &cwd)?;
            let out =
                crate::inspect::inspect_location(&loc, &args.registry.options()?, args.contents)?;
            if args.json {
                outln(
                    serde_json::to_string_pretty(&out)
                        .map_err(|e| Error::internal(e.to_string()))?,
                )?;
            } else {
                self::out(crate::inspect::render_text(&out))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate(args) => {
            crate::validate::command::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Index {
            command: IndexCommand::Create(args),
        } => {
            let cwd = std::env::current_dir().map_err(|e| Error::internal(e.to_string()))?;
            let mut sources = args
                .sources
                .iter()
                .map(|s| Location::parse(s, &cwd))
                .collect::<Result<Vec<_>, _>>()?;
            let mut named: Option<(String, String, PathBuf)> = None;
            let mut expected = Vec::new();
            let from_receipts = sources.is_empty();
            for file in &args.from_receipts {
                let r = crate::talos::receipt::Receipt::read(file)?;
                match &named {
                    Some((n, v, first)) if (n, v) != (&r.name, &r.version) => {
                        return Err(Error::input(format!(
                            "`{}` is {} {} but `{}` is {n} {v}: one index holds one extension",
                            file.display(),
                            r.name,
                            r.version,
                            first.display()
                        )))
                    }
                    Some(_) => {}
                    None => named = Some((r.name.clone(), r.version.clone(), file.clone())),
                }
                if from_receipts {
                    let location = r.reference.clone().unwrap_or(r.output.clone());
                    sources.push(Location::parse(&location, &cwd)?);
                }
                for p in &r.platforms {
                    expected.push((
                        file.clone(),
                        format!("{}/{}", p.os, p.architecture),
                        p.digest.clone(),
                    ));
                }
            }
            let dst = Location::parse(&args.output, &cwd)?;
            let transfer = crate::transfer::Transfer {
                jobs: args.jobs,
                reporter: reporter.clone(),
                mounts: None,
            };
            let made =
                crate::transfer::stitch(&sources, &dst, &args.registry.options()?, &transfer)?;
            for (file, platform, digest) in &expected {
                if !made.manifests.iter().any(|m| &m.digest == digest) {
                    return Err(Error::input(format!(
                        "`{}` names `{digest}` for `{platform}`, which the index written to `{dst}` does not hold",
                        file.display()
                    )));
                }
            }
            if let Some(file) = &args.digestfile {
                crate::transfer::write_digestfile(file, &made.digest)?;
            }
            if let (Some(file), Some((name, version, _))) = (&args.receipt, named) {
                let reference = match &dst {
                    Location::Registry(r) => {
                        let r = crate::registry::Reference::parse(r)?;
                        let mut shown = r.name();
                        if let Some(t) = &r.tag {
                            shown = format!("{shown}:{t}");
                        }
                        Some(format!("{shown}@{}", made.digest))
                    }
                    _ => None,
                };
                let receipt = crate::talos::receipt::Receipt {
                    name,
                    version,
                    output: dst.to_string(),
                    reference,
                    digest: made.digest.clone(),
                    platforms: made
                        .manifests
                        .iter()
                        .map(|m| {
                            let (os, architecture) =
                                m.platform.split_once('/').unwrap_or((&m.platform, ""));
                            crate::talos::receipt::PlatformDigest {
                                os: os.to_string(),
                                architecture: architecture
                                    .split('/')
                                    .next()
                                    .unwrap_or_default()
                                    .to_string(),
                                digest: m.digest.clone(),
                            }
                        })
                        .collect(),
                };
                let json = serde_json::to_string_pretty(&receipt)
                    .map_err(|e| Error::internal(e.to_string()))?;
                crate::image::write_file_atomic(file, format!("{json}\n").as_bytes())?;
            }
            if !cli.quiet {
                eprintln!(
                    "wrote the index `{}` of {} platform(s) to `{dst}`: {} blob(s) sent, {} already present",
                    made.digest,
                    made.manifests.len(),
                    made.blobs_copied,
                    made.blobs_skipped
                );
            }
            if args.json {
                outln(
                    serde_json::to_string_pretty(&made)
                        .map_err(|e| Error::internal(e.to_string()))?,
                )?;
            } else {
                outln(&made.digest)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Copy(args) => {
            let cwd = std::env::current_dir().map_err(|e| Error::internal(e.to_string()))?;
            let src = Location::parse(&args.source, &cwd)?;
            let dst = Location::parse(&args.destination, &cwd)?;
            let platforms = crate::transfer::parse_platforms(&args.platforms)?;
            let transfer = crate::transfer::Transfer {
                jobs: args.jobs,
                reporter: reporter.clone(),
                mounts: None,
            };
            let (src_options, dst_options) = args.creds.sides(&args.registry.options()?)?;
            let copied = crate::transfer::copy_between(
                &src,
                &dst,
                &platforms,
                &src_options,
                &dst_options,
                &transfer,
                !args.no_signatures,
            )?;
            if let Some(file) = &args.digestfile {
                crate::transfer::write_digestfile(file, &copied.digest)?;
            }
            if !cli.quiet {
                eprintln!(
                    "copied `{}` to `{dst}`: {} manifest(s), {} blob(s) sent, {} already present",
                    copied.digest, copied.manifests, copied.blobs_copied, copied.blobs_skipped
                );
            }
            if args.json {
                let report = crate::transfer::CopyReport {
                    source: src.to_string(),
                    destination: dst.to_string(),
                    copied: &copied,
                };
                outln(
                    serde_json::to_string_pretty(&report)
                        .map_err(|e| Error::internal(e.to_string()))?,
                )?;
            } else {
                outln(&copied.digest)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bundle { command } => {
            crate::bundle::cli::run(command, cli.quiet)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Images(args) => {
            let list = args.closure()?.resolve()?;
            if args.json {
                outln(
                    serde_json::to_string_pretty(&list)
                        .map_err(|e| Error::internal(e.to_string()))?,
                )?;
            } else {
                for l in &list {
                    outln(&l.image)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::ImageCache {
            command: ImageCacheCommand::Create(args),
        } => {
            let cwd = std::env::current_dir().map_err(|e| Error::internal(e.to_string()))?;
            let mut images = args.images.clone();
            if let Some(f) = &args.images_file {
                images.extend(if f.as_os_str() == "-" {
                    let mut text = String::new();
                    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                        .at("reading", "stdin")?;
                    crate::bundle::parse_images_list(&text)
                } else {
                    crate::bundle::read_images_file(f)?
                });
            }
            let platforms = if args.platforms.iter().any(|p| p == "all") {
                Vec::new()
            } else {
                crate::transfer::parse_platforms(&args.platforms)?
            };
            let sources = args
                .from
                .iter()
                .map(|s| Location::parse(s, &cwd))
                .collect::<Result<Vec<_>, _>>()?;
            let req = crate::store::image_cache::Request {
                images,
                platforms,
                signatures: args.signatures,
                sources,
                layout: if args.layout == "flat" {
                    crate::store::image_cache::CacheLayout::Flat
                } else {
                    crate::store::image_cache::CacheLayout::Oci
                },
                output: cwd.join(&args.output),
                epoch: args.source_date_epoch,
            };
            let transfer = crate::transfer::Transfer {
                jobs: args.jobs,
                reporter: reporter.clone(),
                mounts: None,
            };
            let created =
                crate::store::image_cache::create(&req, &args.registry.options()?, &transfer)?;
            if args.json {
                outln(
                    serde_json::to_string_pretty(&created)
                        .map_err(|e| Error::internal(e.to_string()))?,
                )?;
            } else {
                outln(
                    created
                        .digest
                        .clone()
                        .unwrap_or_else(|| created.output.display().to_string()),
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Cache(args) => Ok(if crate::cache_admin::run(args)? {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }),
        Command::Key { command } => crate::sign::cli::run_key(command, cli.quiet),
        Command::Sign(args) => crate::sign::cli::run_sign(args, cli.quiet),
        Command::Verify(args) => crate::sign::cli::run_verify(args, cli.quiet),
        Command::Attest(args) => crate::sign::cli::run_attest(args, cli.quiet),
        Command::Login(args) => crate::login::run_login(args, cli.quiet),
        Command::Init(args) => crate::init::run(args, cli.quiet),
        Command::Logout(args) => crate::login::run_logout(args, cli.quiet),
        Command::Factory { command } => crate::sign::cli::run_factory(command),
        Command::Plan(args) => {
            warn_old_version_env(cli.quiet);
            let dirs = args.def.definitions()?;
            let mut plans = Vec::new();
            for dir in &dirs {
                plans.push(crate::plan::plan(&args.def.request_for(dir))?);
            }
            if args.json {
                let reports: Vec<_> = plans.iter().map(|p| p.report()).collect();
                let json = if reports.len() == 1 {
                    serde_json::to_string_pretty(&reports[0])
                } else {
                    serde_json::to_string_pretty(&reports)
                };
                outln(json.map_err(|e| Error::internal(e.to_string()))?)?;
            } else {
                for (i, plan) in plans.iter().enumerate() {
                    if i > 0 {
                        out("---\n")?;
                    }
                    out(plan.to_yaml()?)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command(), "talext", &mut script);
            out(script)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir } => {
            for page in write_man_pages(&dir)? {
                if !cli.quiet {
                    eprintln!("wrote `{}`", page.display());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn init_logging(quiet: bool, verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "warn,talext=info",
        (false, 2) => "warn,talext=debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(
            std::env::var_os("NO_COLOR").is_none()
                && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        )
        .without_time()
        .try_init();
}

/// Render an error as `error:` / `caused by:` / `hint:` on stderr.
pub fn report(err: &Error) {
    eprintln!("error: {err}");
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        eprintln!("caused by: {cause}");
        source = cause.source();
    }
    if let Some(hint) = err.hint() {
        eprintln!("hint: {hint}");
    }
}
