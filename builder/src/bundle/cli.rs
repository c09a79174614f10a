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
    /// Also bundle the images' cosign signature tags (`sha256-HEX.sig`) when present
    /// (always with `--closure`).
    #[arg(long, env = "TALEXT_SIGNATURES", value_parser = clap::builder::BoolishValueParser::new())]
    pub signatures: bool,
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
            let mut signatures = args.signatures;
            if let Some(file) = &args.closure {
                let closure = crate::release::images::Closure::read(file)?;
                references.extend(closure.resolve()?.into_iter().map(|l| l.image));
                platforms.extend(closure.platforms.iter().cloned());
                signatures = true;
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
                    println!("{}", image.pinned());
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
            let verified = super::verify(&args.file)?;
            if args.json {
                print_json(&summary(&verified.images, verified.blobs))?;
            } else {
                for image in &verified.images {
                    println!("{}", image.pinned());
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
            let report = super::push(
                &args.file,
                &args.target,
                &args.registry.options()?,
                &progress,
            )?;
            if args.json {
                print_json(&report.images)?;
            } else {
                for p in &report.images {
                    println!("{} -> {}", p.source, p.target);
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
    println!("{text}");
    Ok(())
}
