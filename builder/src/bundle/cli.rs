//! `talext bundle create|verify|push`: flags and output. Stdout carries data only (the mapping
//! of `push`, the summary of `create` and `verify`); progress goes to stderr unless `--quiet`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::error::{Error, Result};

#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Pull images (every platform) into one air-gap bundle: an OCI layout in a tar, with the
    /// original references and checksums.
    Create(CreateArgs),
    /// Check every blob and checksum of a bundle.
    Verify(VerifyArgs),
    /// Push every image of a bundle into a registry under a prefix, keeping repository paths,
    /// tags and digests; prints `original -> new@digest` per image.
    Push(PushArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The bundle to write.
    #[arg(short, long, value_name = "FILE.tar")]
    pub output: PathBuf,
    /// Registry references (`ghcr.io/acme/ext:v1`, `alpine@sha256:…`, `docker://…`).
    #[arg(value_name = "REF")]
    pub references: Vec<String>,
    /// A file of references, one per line; `#` starts a comment. Repeatable.
    #[arg(long = "images-file", value_name = "LIST", env = "TALEXT_IMAGES_FILE")]
    pub images_files: Vec<PathBuf>,
    /// Bundle what a Talos site needs: the images `talext images --closure FILE` lists (the
    /// release's images, a schematic's installer, receipts, added and dropped images, and
    /// `platforms`), with their signatures. YAML or JSON, unknown keys refused.
    #[arg(long, value_name = "FILE", env = "TALEXT_CLOSURE")]
    pub closure: Option<PathBuf>,
    /// Keep only these platforms of images named by tag (`linux/amd64`), repeatable or
    /// comma-separated; a closure's `platforms` adds to them. Default: every platform.
    #[arg(long = "platform", value_name = "OS/ARCH", value_delimiter = ',')]
    pub platforms: Vec<String>,
    /// Leave out the cosign signature and attestation tags (`sha256-HEX.sig`, `.att`, the
    /// referrers tag `sha256-HEX`) of each image and of its platform manifests, which are
    /// bundled by default when the registry has them.
    #[arg(long, env = "TALEXT_NO_SIGNATURES", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_signatures: bool,
    /// Print the bundle's contents as JSON instead of the text summary.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: crate::registry_args::RegistryArgs,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The bundle to check.
    pub file: PathBuf,
    /// Print the bundle's contents as JSON instead of the text summary.
    #[arg(long)]
    pub json: bool,
    /// Also check, offline, that a cosign signature by this public key (PEM) covers every
    /// image, from the signature tags bundled with it (the bundle is unpacked to a scratch
    /// directory for this).
    #[arg(long, value_name = "PUB", env = "TALEXT_VERIFY_KEY")]
    pub key: Option<PathBuf>,
    /// With `--key`: also require this attestation (`sbom`, `provenance` or a predicate type
    /// URI) by the key on every image; repeatable.
    #[arg(long = "attestation", value_name = "TYPE", requires = "key")]
    pub attestations: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The bundle to push.
    pub file: PathBuf,
    /// `REGISTRY[/PREFIX]`, e.g. `registry.internal:5000/mirror`.
    pub target: String,
    /// Print the mapping as a JSON array of `{source, target, digest, mediaType, status}`.
    #[arg(long)]
    pub json: bool,
    /// Also write the Talos configuration that mirrors every upstream registry of the bundle
    /// to where it was pushed (atomically; needs `--talos-version`): `RegistryMirrorConfig`
    /// documents from Talos v1.12 (with a `RegistryTLSConfig` holding the `--ca-file` CA over
    /// TLS), a `.machine.registries` patch before. Apply it as a config patch.
    #[arg(long, value_name = "FILE", env = "TALEXT_MIRROR_CONFIG")]
    pub mirror_config: Option<PathBuf>,
    /// The Talos release the nodes run (`v1.12.0`): which form `--mirror-config` writes.
    #[arg(long, value_name = "VERSION", env = "TALEXT_TALOS_VERSION")]
    pub talos_version: Option<String>,
    /// After pushing, sign every image again under its new name with this private key (the
    /// site's), as `talext sign` does; an encrypted key's password comes from
    /// `TALEXT_KEY_PASSWORD`. The bundled signatures are pushed too and stay valid.
    #[arg(long, value_name = "KEY", env = "TALEXT_RESIGN_KEY")]
    pub resign: Option<PathBuf>,
    #[command(flatten)]
    pub registry: crate::registry_args::RegistryArgs,
}

/// Run a `bundle` subcommand.
pub fn run(command: BundleCommand, quiet: bool) -> Result<()> {
    let progress = |msg: &str| {
        if !quiet {
            eprintln!("{msg}");
        }
    };
    match command {
        BundleCommand::Create(args) => {
            let mut references = args.references.clone();
            for file in &args.images_files {
                references.extend(super::read_images_file(file)?);
            }
            let mut platforms = args.platforms.clone();
            let signatures = !args.no_signatures;
            if let Some(file) = &args.closure {
                let closure = crate::release::images::Closure::read(file)?;
                references.extend(closure.resolve()?.into_iter().map(|l| l.image));
                platforms.extend(closure.platforms.iter().cloned());
            }
            let how = super::CreateOptions {
                platforms: crate::transfer::parse_platforms(&platforms)?,
                signatures,
            };
            let created = super::create(
                &references,
                &args.output,
                &args.registry.options()?,
                &how,
                &progress,
            )?;
            if args.json {
                print_json(&summary(&created.images, created.blobs))?;
            } else {
                for image in &created.images {
                    crate::cli::outln(image.pinned())?;
                }
            }
            progress(&format!(
                "wrote `{}`: {} image(s), {} blob(s), {} bytes",
                args.output.display(),
                created.images.len(),
                created.blobs,
                created.bytes
            ));
        }
        BundleCommand::Verify(args) => {
            let verified = match &args.key {
                None => super::verify(&args.file)?,
                Some(key) => {
                    let public = crate::sign::keys::load_public(key)?;
                    let (verified, verdicts) =
                        super::signatures::verify_file(&args.file, &public, &args.attestations)?;
                    let failed: Vec<String> = verdicts
                        .iter()
                        .filter_map(|(r, v)| v.as_ref().err().map(|why| format!("`{r}`: {why}")))
                        .collect();
                    if !failed.is_empty() {
                        return Err(Error::input(format!(
                            "{} of {} image(s) in `{}` are not verified by the key `{}`:\n  {}",
                            failed.len(),
                            verdicts.len(),
                            args.file.display(),
                            key.display(),
                            failed.join("\n  ")
                        )));
                    }
                    progress(&format!(
                        "every image ({}) is signed by the key `{}`",
                        verdicts.len(),
                        key.display()
                    ));
                    verified
                }
            };
            if args.json {
                print_json(&summary(&verified.images, verified.blobs))?;
            } else {
                for image in &verified.images {
                    crate::cli::outln(image.pinned())?;
                }
            }
            progress(&format!(
                "`{}` is intact: {} image(s), {} blob(s), {} bytes of content",
                args.file.display(),
                verified.images.len(),
                verified.blobs,
                verified.blob_bytes
            ));
        }
        BundleCommand::Push(args) => {
            // Checked before anything is pushed, so a bad flag costs nothing.
            let mirror = match (&args.mirror_config, &args.talos_version) {
                (Some(file), Some(version)) => Some((
                    file,
                    super::mirror::release_of(version)?,
                    super::mirror::read_ca(&args.registry.ca_files)?,
                )),
                (Some(file), None) => {
                    return Err(Error::input_hint(
                        format!("`--mirror-config {}` needs `--talos-version`", file.display()),
                        "the documents differ between releases: name the one the nodes run (`--talos-version v1.12.0`)",
                    ))
                }
                (None, _) => None,
            };
            // The key and its password are read before anything is pushed.
            let resign = match &args.resign {
                Some(path) => {
                    let password = crate::sign::keys::Password::from_stdin_or_env(false)?;
                    Some(crate::sign::keys::load_private(path, password.as_ref())?)
                }
                None => None,
            };
            let report = super::push(
                &args.file,
                &args.target,
                &args.registry.options()?,
                resign.as_ref(),
                &progress,
            )?;
            if args.json {
                print_json(&report.images)?;
            } else {
                for p in &report.images {
                    crate::cli::outln(format!("{} -> {}", p.source, p.target))?;
                }
            }
            let upstreams = report.upstreams();
            for source in &upstreams {
                progress(&super::mirror_hint(&report.target, source, report.scheme));
            }
            if let Some((file, minor, ca)) = mirror {
                let text = super::mirror::render(&report.site(ca), &upstreams, minor)?;
                super::mirror::write(file, &text)?;
                progress(&format!(
                    "wrote the registry mirrors for Talos {minor} to `{}`",
                    file.display()
                ));
            }
        }
    }
    Ok(())
}

fn summary(images: &[super::BundleImage], blobs: usize) -> serde_json::Value {
    serde_json::json!({ "images": images, "blobs": blobs })
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::internal(e.to_string()))?;
    crate::cli::outln(text)
}
