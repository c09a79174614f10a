//! `talext key generate`, `talext sign`, `talext verify`, and the `--sign` flag of `build`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use p256::ecdsa::SigningKey;

use super::{cosign, keys};
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
    #[command(flatten)]
    pub registry: crate::registry_args::RegistryArgs,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The image or index: `docker://REGISTRY/REPO:TAG` or `REGISTRY/REPO@sha256:…`.
    pub reference: String,
    /// Public key (SubjectPublicKeyInfo PEM, e.g. `cosign.pub`).
    #[arg(long, env = "TALEXT_VERIFY_KEY", value_name = "FILE")]
    pub key: PathBuf,
    #[command(flatten)]
    pub registry: crate::registry_args::RegistryArgs,
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

/// Sign what `build` pushed (`reference` is its `registry/repo[:tag]@sha256:…`).
pub fn sign_built(
    key: Option<SigningKey>,
    reference: Option<&str>,
    options: &RegistryOptions,
    quiet: bool,
) -> Result<()> {
    let (Some(key), Some(reference)) = (key, reference) else {
        return Ok(());
    };
    let reference = Reference::parse(reference)?;
    let client = RegistryClient::new(options, &reference.registry)?;
    report(
        &cosign::sign_image(&client, &reference, &key, false)?,
        quiet,
        &reference,
    );
    Ok(())
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
    for s in &signed {
        println!("{}:{}@{}", reference.name(), s.tag, s.manifest);
    }
    Ok(ExitCode::SUCCESS)
}

/// `talext verify`: prints `REGISTRY/REPO@DIGEST` when a signature by the key covers the
/// digest `REF` names; exits 1 with the reason otherwise.
pub fn run_verify(args: VerifyArgs, quiet: bool) -> Result<ExitCode> {
    let key = keys::load_public(&args.key)?;
    let reference = Reference::parse(&args.reference)?;
    let client = RegistryClient::new(&args.registry.options()?, &reference.registry)?;
    let root = client.get_manifest(&reference.repository, reference.tag_or_digest(), &[])?;
    if let Some(d) = reference.digest.as_deref().filter(|d| *d != root.digest) {
        return Err(Error::input(format!(
            "the registry serves `{}` for `{d}`",
            root.digest
        )));
    }
    let pinned = format!("{}@{}", reference.name(), root.digest);
    match cosign::verify_digest(&client, &reference.repository, &root.digest, &key)? {
        Ok(()) => {
            if !quiet {
                eprintln!("verified `{pinned}` with the key `{}`", args.key.display());
            }
            println!("{pinned}");
            Ok(ExitCode::SUCCESS)
        }
        Err(reason) => Err(Error::input(format!(
            "`{pinned}` is not verified by the key `{}`: {reason}",
            args.key.display()
        ))),
    }
}
