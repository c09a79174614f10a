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
            let created = super::create(
                &references,
                &args.output,
                &args.registry.options()?,
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
            let pushed = super::push(
                &args.file,
                &args.target,
                &args.registry.options()?,
                &progress,
            )?;
            if args.json {
                print_json(&pushed)?;
            } else {
                for p in &pushed {
                    println!("{} -> {}", p.source, p.target);
                }
            }
            let target = super::target_of(&args.target)?;
            let sources: std::collections::BTreeSet<String> = pushed
                .iter()
                .filter_map(|p| crate::registry::Reference::parse(&p.source).ok())
                .map(|r| r.registry)
                .collect();
            for source in sources {
                progress(&super::mirror_hint(&target, &source));
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
