//! `talext key generate`, `talext sign`, `talext verify`, and the `--sign` flag of `build`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use p256::ecdsa::SigningKey;

use super::{attest, cosign, keys};
use crate::error::{Error, Result};
use crate::registry::{Reference, RegistryClient, RegistryOptions};
use crate::transport::Location;

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Write a new ECDSA P-256 key pair: `NAME.key` (PKCS#8 PEM, mode 0600) and `NAME.pub`.
    Generate(GenerateArgs),
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Path prefix of the two files, as in `cosign generate-key-pair`.
    #[arg(long, default_value = "cosign", value_name = "NAME")]
    pub output_key_prefix: String,
}

/// Where the private key comes from and how its password is read.
#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// Private key: PKCS#8 PEM (`talext key generate`) or a cosign key file.
    #[arg(long, env = "TALEXT_SIGN_KEY", value_name = "FILE")]
    pub key: PathBuf,
    /// Read the password of an encrypted cosign key from stdin (else `TALEXT_KEY_PASSWORD`).
    #[arg(long, conflicts_with = "password_stdin")]
    pub key_password_stdin: bool,
}

impl KeyArgs {
    pub fn load(&self) -> Result<SigningKey> {
        let password = keys::Password::from_stdin_or_env(self.key_password_stdin)?;
        keys::load_private(&self.key, password.as_ref())
    }
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// The image or index: `docker://REGISTRY/REPO:TAG` or `REGISTRY/REPO@sha256:…`.
    pub reference: String,
    #[command(flatten)]
    pub key: KeyArgs,
    /// Also push each signature as an OCI 1.1 referrer of what it signs, with the `sha256-HEX`
    /// referrers-tag fallback for registries without the referrers API.
    #[arg(long, env = "TALEXT_SIGN_REFERRERS", value_parser = clap::builder::BoolishValueParser::new())]
    pub referrers: bool,
    /// Print `{reference, signatures: [{digest, tag, manifest, changed}]}` on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: crate::registry_args::RegistryArgs,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The image or index: `docker://REGISTRY/REPO:TAG`, `REGISTRY/REPO@sha256:…`,
    /// `oci:DIR[:TAG]` or `oci-archive:FILE[:TAG]` (signatures travel with `copy`).
    pub reference: String,
    /// Public key (SubjectPublicKeyInfo PEM, e.g. `cosign.pub`).
    #[arg(long, env = "TALEXT_VERIFY_KEY", value_name = "FILE")]
    pub key: PathBuf,
    /// Also require an attestation of this type signed by the key: `sbom` (SPDX, checked on
    /// every platform manifest of an index), `provenance` (SLSA v1, on the digest named), or a
    /// predicate type URI; repeatable.
    #[arg(long = "attestation", value_name = "TYPE")]
    pub attestations: Vec<String>,
    /// Print `{reference, digest, key, attestations}` on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: crate::registry_args::RegistryArgs,
}

/// `talext attest`.
#[derive(Debug, Args)]
pub struct AttestArgs {
    /// The image or index: `docker://REGISTRY/REPO:TAG` or `REGISTRY/REPO@sha256:…`.
    pub reference: String,
    #[command(flatten)]
    pub key: KeyArgs,
    /// The predicate: a JSON file (an SPDX document, a SLSA provenance predicate, …).
    #[arg(long, value_name = "FILE")]
    pub predicate: PathBuf,
    /// `sbom` (`https://spdx.dev/Document`), `provenance` (`https://slsa.dev/provenance/v1`)
    /// or a predicate type URI.
    #[arg(long = "type", value_name = "TYPE")]
    pub kind: String,
    /// Print `{reference, digest, predicateType, tag, changed}` on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: crate::registry_args::RegistryArgs,
}

/// `talext attest`: a signed in-toto statement about the digest `REF` names, in its
/// `sha256-HEX.att` tag.
pub fn run_attest(args: AttestArgs, quiet: bool) -> Result<ExitCode> {
    let key = args.key.load()?;
    let predicate: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&args.predicate)
            .map_err(|e| Error::input(format!("reading `{}`: {e}", args.predicate.display())))?,
    )
    .map_err(|e| Error::input(format!("`{}` is not JSON: {e}", args.predicate.display())))?;
    let reference = Reference::parse(&args.reference)?;
    let client = RegistryClient::new(&args.registry.options()?, &reference.registry)?;
    let root = client.get_manifest(&reference.repository, reference.tag_or_digest(), &[])?;
    if let Some(d) = reference.digest.as_deref().filter(|d| *d != root.digest) {
        return Err(Error::input(format!(
            "the registry serves `{}` for `{d}`",
            root.digest
        )));
    }
    let a = attest::attest_digest(
        &client,
        &reference.repository,
        &reference.name(),
        &root.digest,
        &attest::predicate_type(&args.kind),
        predicate,
        &key,
    )?;
    if !quiet {
        report_attested(std::slice::from_ref(&a), &reference);
    }
    if args.json {
        crate::cli::outln(pretty(&serde_json::json!({
            "reference": reference.name(),
            "digest": a.digest,
            "predicateType": a.predicate_type,
            "tag": format!("{}:{}", reference.name(), a.tag),
            "changed": a.changed,
        }))?)?;
    } else {
        crate::cli::outln(format!("{}:{}", reference.name(), a.tag))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Every attestation `kinds` names, signed by `key`, about the image at `loc`: an SBOM on each
/// platform manifest of an index (or on the image itself), anything else on the digest named.
pub fn verify_attestations(
    loc: &Location,
    options: &RegistryOptions,
    key: &p256::ecdsa::VerifyingKey,
    kinds: &[String],
) -> Result<std::result::Result<(), String>> {
    if kinds.is_empty() {
        return Ok(Ok(()));
    }
    let src = crate::store::source::Source::open(loc, options)?.ok_or_else(|| {
        Error::input(format!("`{loc}` holds no image an attestation could cover"))
    })?;
    verify_attestations_in(&src, key, kinds)
}

/// [`verify_attestations`] in an opened store.
pub fn verify_attestations_in(
    src: &crate::store::source::Source,
    key: &p256::ecdsa::VerifyingKey,
    kinds: &[String],
) -> Result<std::result::Result<(), String>> {
    let root = src.root()?;
    let mut platforms = Vec::new();
    if crate::oci::is_index_type(&root.media_type) {
        let index: crate::oci::Index = serde_json::from_slice(&root.bytes)
            .map_err(|e| Error::input(format!("index `{}` is not valid: {e}", root.digest)))?;
        platforms.extend(
            index
                .manifests
                .iter()
                .filter(|d| d.platform.as_ref().is_none_or(|p| p.os != "unknown"))
                .map(|d| d.digest.to_string()),
        );
    } else {
        platforms.push(root.digest.clone());
    }
    for kind in kinds {
        let predicate_type = attest::predicate_type(kind);
        let subjects = if predicate_type == attest::SPDX_PREDICATE {
            platforms.clone()
        } else {
            vec![root.digest.clone()]
        };
        for digest in subjects {
            if let Err(reason) = attest::verify_attestation(src, &digest, &predicate_type, key)? {
                return Ok(Err(format!("`{digest}`: {reason}")));
            }
        }
    }
    Ok(Ok(()))
}

/// `build --sign`.
#[derive(Debug, Clone, Args)]
pub struct BuildSignArgs {
    /// Sign the pushed index and each platform manifest with this private key (registry
    /// outputs only; an encrypted key's password comes from `TALEXT_KEY_PASSWORD`).
    #[arg(long = "sign", env = "TALEXT_SIGN_KEY", value_name = "FILE")]
    pub sign: Option<PathBuf>,
}

impl BuildSignArgs {
    /// The key, loaded before anything is built so a bad key or password costs no build.
    pub fn load(&self, output: &Location) -> Result<Option<SigningKey>> {
        let Some(path) = &self.sign else {
            return Ok(None);
        };
        if !matches!(output, Location::Registry(_)) {
            return Err(Error::input_hint(
                "`--sign` needs a registry output",
                "push with `--output docker://REGISTRY/REPO:TAG`, or sign later with `talext sign`",
            ));
        }
        let password = keys::Password::from_stdin_or_env(false)?;
        keys::load_private(path, password.as_ref()).map(Some)
    }
}

/// Sign what `build` pushed (`reference` is its `registry/repo[:tag]@sha256:…`), and attest
/// it: each platform manifest's SBOM, and the provenance of the index and of each platform.
pub fn sign_built(
    key: Option<SigningKey>,
    reference: Option<&str>,
    attestations: &crate::build::AttestationInputs,
    options: &RegistryOptions,
    quiet: bool,
) -> Result<()> {
    let (Some(key), Some(reference)) = (key, reference) else {
        return Ok(());
    };
    let reference = Reference::parse(reference)?;
    let client = RegistryClient::new(options, &reference.registry)?;
    let signed = cosign::sign_image(&client, &reference, &key, false)?;
    report(&signed, quiet, &reference);
    let (repo, identity) = (&reference.repository, reference.name());
    let mut attested = Vec::new();
    for (digest, sbom) in &attestations.sboms {
        let predicate: serde_json::Value = serde_json::from_slice(sbom)
            .map_err(|e| Error::internal(format!("the SBOM of `{digest}` is not JSON: {e}")))?;
        attested.push(attest::attest_digest(
            &client,
            repo,
            &identity,
            digest.as_str(),
            attest::SPDX_PREDICATE,
            predicate,
            &key,
        )?);
    }
    if !attestations.provenance.is_null() {
        for s in &signed {
            attested.push(attest::attest_digest(
                &client,
                repo,
                &identity,
                &s.digest,
                attest::SLSA_PREDICATE,
                attestations.provenance.clone(),
                &key,
            )?);
        }
    }
    if !quiet {
        report_attested(&attested, &reference);
    }
    Ok(())
}

fn report_attested(attested: &[attest::Attested], reference: &Reference) {
    for a in attested {
        let what = if a.changed {
            "attested"
        } else {
            "already attested"
        };
        eprintln!(
            "{what} `{}` ({}) as `{}:{}`",
            a.digest,
            a.predicate_type,
            reference.name(),
            a.tag
        );
    }
}

fn report(signed: &[cosign::Signed], quiet: bool, reference: &Reference) {
    if quiet {
        return;
    }
    for s in signed {
        let what = if s.changed {
            "signed"
        } else {
            "already signed"
        };
        eprintln!("{what} `{}` as `{}:{}`", s.digest, reference.name(), s.tag);
    }
}

pub fn run_key(command: KeyCommand, quiet: bool) -> Result<ExitCode> {
    match command {
        KeyCommand::Generate(args) => {
            let private = PathBuf::from(format!("{}.key", args.output_key_prefix));
            let public = PathBuf::from(format!("{}.pub", args.output_key_prefix));
            let pair = keys::generate()?;
            keys::write_pair(&pair, &private, &public)?;
            if !quiet {
                eprintln!(
                    "wrote the private key `{}` and the public key `{}`",
                    private.display(),
                    public.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `talext sign`: prints each signature tag it wrote or found, `REGISTRY/REPO:sha256-HEX.sig`.
pub fn run_sign(args: SignArgs, quiet: bool) -> Result<ExitCode> {
    let key = args.key.load()?;
    let reference = Reference::parse(&args.reference)?;
    let client = RegistryClient::new(&args.registry.options()?, &reference.registry)?;
    let signed = cosign::sign_image(&client, &reference, &key, args.referrers)?;
    report(&signed, quiet, &reference);
    if args.json {
        let signatures: Vec<_> = signed
            .iter()
            .map(|s| {
                serde_json::json!({
                    "digest": s.digest,
                    "tag": format!("{}:{}", reference.name(), s.tag),
                    "manifest": s.manifest,
                    "changed": s.changed,
                })
            })
            .collect();
        crate::cli::outln(pretty(&serde_json::json!({
            "reference": reference.name(),
            "signatures": signatures,
        }))?)?;
    } else {
        for s in &signed {
            crate::cli::outln(format!("{}:{}@{}", reference.name(), s.tag, s.manifest))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Verify the image `loc` names (a registry reference, `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`)
/// against `key`: `Ok(Ok(pinned))` with `NAME@DIGEST` when a signature by the key covers its
/// digest, `Ok(Err(reason))` when none does.
pub fn verify_location(
    loc: &Location,
    options: &crate::registry::RegistryOptions,
    key: &p256::ecdsa::VerifyingKey,
) -> Result<std::result::Result<String, String>> {
    let src = crate::store::source::Source::open(loc, options)?.ok_or_else(|| {
        Error::input_hint(
            format!("`{loc}` holds no image a signature could cover"),
            "signatures are kept beside images in registries, `oci:` layouts and `oci-archive:` files",
        )
    })?;
    let root = src.root()?;
    let pinned = match loc {
        Location::Registry(r) => {
            let reference = Reference::parse(r)?;
            if let Some(d) = reference.digest.as_deref().filter(|d| *d != root.digest) {
                return Err(Error::input(format!(
                    "the registry serves `{}` for `{d}`",
                    root.digest
                )));
            }
            format!("{}@{}", reference.name(), root.digest)
        }
        other => format!("{other}@{}", root.digest),
    };
    Ok(match cosign::verify_digest(&src, &root.digest, key)? {
        Ok(()) => Ok(pinned),
        Err(reason) => Err(format!("`{pinned}` is not verified: {reason}")),
    })
}

/// `--require-signature PUB`: the image `source` names must carry a signature by the key, or
/// this is an error naming the reason. Returns the verified `NAME@DIGEST`.
pub fn require_signature(
    source: &str,
    key: &std::path::Path,
    options: &crate::registry::RegistryOptions,
) -> Result<String> {
    let public = keys::load_public(key)?;
    let cwd = std::env::current_dir().map_err(|e| Error::internal(e.to_string()))?;
    let loc = Location::parse(source, &cwd)?;
    match verify_location(&loc, options, &public)? {
        Ok(pinned) => {
            tracing::info!("`{pinned}` is signed by `{}`", key.display());
            Ok(pinned)
        }
        Err(reason) => Err(Error::input_hint(
            format!("{reason} (required key `{}`)", key.display()),
            "sign it with `talext sign REF --key KEY` (or `build --sign`), and copy it with its signatures",
        )),
    }
}

/// `talext verify`: prints `NAME@DIGEST` when a signature by the key covers the digest `REF`
/// names; exits 1 with the reason otherwise.
pub fn run_verify(args: VerifyArgs, quiet: bool) -> Result<ExitCode> {
    let key = keys::load_public(&args.key)?;
    let cwd = std::env::current_dir().map_err(|e| Error::internal(e.to_string()))?;
    let loc = Location::parse(&args.reference, &cwd)?;
    let options = args.registry.options()?;
    match verify_location(&loc, &options, &key)? {
        Ok(pinned) => {
            if let Err(reason) = verify_attestations(&loc, &options, &key, &args.attestations)? {
                return Err(Error::input(format!(
                    "`{pinned}` is signed, but an attestation is missing: {reason} (key `{}`)",
                    args.key.display()
                )));
            }
            if !quiet {
                eprintln!("verified `{pinned}` with the key `{}`", args.key.display());
            }
            if args.json {
                let digest = pinned.rsplit_once('@').map_or("", |(_, d)| d);
                crate::cli::outln(pretty(&serde_json::json!({
                    "reference": pinned,
                    "digest": digest,
                    "key": args.key,
                    "attestations": args.attestations,
                }))?)?;
            } else {
                crate::cli::outln(&pinned)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(reason) => Err(Error::input(format!(
            "{reason} (key `{}`)",
            args.key.display()
        ))),
    }
}

/// `talext factory config`.
#[derive(Debug, Args)]
pub struct FactoryConfigArgs {
    /// The public key (PEM) images and the catalog are signed with.
    #[arg(long, value_name = "FILE")]
    pub public_key: PathBuf,
    /// Where the factory finds that key inside its container (default: the path given).
    #[arg(long, value_name = "PATH")]
    pub key_path: Option<String>,
    /// The core registry the factory pulls the imager, installer-base, catalog and extensions
    /// from (`artifacts.core.registry`), e.g. the site registry of an air gap.
    #[arg(long, value_name = "HOST")]
    pub registry: Option<String>,
    /// The extensions catalog repository under that registry
    /// (`artifacts.core.components.extensionManifest`).
    #[arg(long, value_name = "REPO")]
    pub extension_manifest: Option<String>,
    /// The core registry speaks plain HTTP or has an unverifiable certificate.
    #[arg(long)]
    pub insecure: bool,
    /// Write here (atomically) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum FactoryCommand {
    /// The Image Factory settings (`--config FILE`) that verify images with a public key
    /// instead of Sigstore's keyless identities, which an air gap cannot reach.
    Config(FactoryConfigArgs),
}

/// `talext config image-verification`.
#[derive(Debug, Args)]
pub struct ImageVerificationArgs {
    /// The public key (PEM) the images must be signed with.
    #[arg(long, value_name = "FILE")]
    pub public_key: PathBuf,
    /// An image repository (or glob, `registry/ns/*`) to require the key for; repeatable.
    /// Docker Hub names are written the way Talos matches them (`index.docker.io/…`).
    #[arg(long = "image", value_name = "REPO", required = true)]
    pub images: Vec<String>,
    /// The Talos release of the nodes (v1.13 or later).
    #[arg(long, value_name = "VERSION", env = "TALEXT_TALOS_VERSION")]
    pub talos_version: String,
    /// Write here (atomically) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// The public key's PEM, checked to be a P-256 key cosign and Talos can use.
fn public_pem(path: &std::path::Path) -> Result<String> {
    keys::load_public(path)?;
    std::fs::read_to_string(path)
        .map_err(|e| Error::input(format!("reading `{}`: {e}", path.display())))
}

fn emit(output: Option<&std::path::Path>, text: &str) -> Result<ExitCode> {
    match output {
        Some(path) => crate::talos::cli::write_atomic(path, text.as_bytes())?,
        None => crate::cli::out(text)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn pretty(v: &serde_json::Value) -> Result<String> {
    serde_json::to_string_pretty(v).map_err(|e| Error::internal(e.to_string()))
}

pub fn run_factory(command: FactoryCommand) -> Result<ExitCode> {
    match command {
        FactoryCommand::Config(a) => {
            public_pem(&a.public_key)?;
            let key_path = a
                .key_path
                .clone()
                .unwrap_or_else(|| a.public_key.display().to_string());
            let text = super::policy::factory_config(
                &key_path,
                a.registry.as_deref(),
                a.insecure,
                a.extension_manifest.as_deref(),
            );
            emit(a.output.as_deref(), &text)
        }
    }
}

pub fn run_image_verification(a: ImageVerificationArgs) -> Result<ExitCode> {
    let pem = public_pem(&a.public_key)?;
    let text = super::policy::image_verification_config(&a.images, &pem, &a.talos_version)?;
    emit(a.output.as_deref(), &text)
}
