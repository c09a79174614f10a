//! Flags and entry points of the Talos-side commands: `config render|lint`, `schematic id|create`,
//! `imager-profile` and `catalog build`. Each parses its flags and calls a library function;
//! stdout carries only the command's data.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::catalog::{self, Catalog};
use super::catalog_image;
use super::lint::{self, Options};
use super::private::write_private;
use super::profile::{self, ExtensionSource, ProfileRequest};
use super::receipt::Receipt;
use super::render::{self, Secret};
use super::schematic::Schematic;
use super::spec::{self, Role};
use crate::error::{Error, IoContext, Result};
use crate::transport::Location;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Render Talos documents for the Tailscale extension from a spec (see manifests/README.md).
    Render(RenderArgs),
    /// Check Talos documents (configs, patches, multi-document files) for known traps.
    Lint(LintArgs),
    /// The `ExtensionServiceConfig` of any extension, checked against the configuration
    /// contract its definition declares.
    Esc(EscArgs),
    /// An `ImageVerificationConfig` (Talos v1.13+) that makes nodes require a public key's
    /// cosign signature on images of the given repositories.
    ImageVerification(crate::sign::cli::ImageVerificationArgs),
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The render spec (YAML; manifests/spec/example.yaml is a commented example).
    pub spec: PathBuf,
    /// Write `<DIR>/<node>.yaml` for every node instead of printing one node on stdout; the
    /// files are created 0600 (they hold the auth secret) and a replaced file keeps a stricter mode.
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Only this node (required on stdout when the spec lists several).
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Write a `${VAR}` placeholder instead of the auth secret (for committing).
    #[arg(long, env = "TALEXT_REDACT")]
    pub redact: bool,
    /// With `--output`: one patch per file under `<DIR>/<node>/`.
    #[arg(long, requires = "output")]
    pub split: bool,
}

#[derive(Debug, Args)]
pub struct LintArgs {
    /// YAML files or directories of them (`*.yaml`, `*.yml`).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Node role when the documents do not show it.
    #[arg(long, value_enum)]
    pub role: Option<RoleArg>,
    /// Treat all files as the configuration of one node (patches applied together).
    #[arg(long)]
    pub merged: bool,
    /// Talos release the configuration is for (`v1.14.0`): also report document kinds it does
    /// not have and conflicts only it checks.
    #[arg(long, value_name = "VERSION", env = "TALEXT_LINT_TALOS_VERSION")]
    pub talos_version: Option<String>,
    /// Print findings as a JSON array.
    #[arg(long)]
    pub json: bool,
    /// An extension definition directory whose `config:` contract its `ExtensionServiceConfig`
    /// is checked against (required keys, unknown keys, config files); repeatable.
    #[arg(long = "definition", value_name = "DIR")]
    pub definitions: Vec<PathBuf>,
}

/// `config esc`: the `ExtensionServiceConfig` of any extension, from its definition's contract.
#[derive(Debug, Args)]
pub struct EscArgs {
    /// The extension definition directory (its `config:` declares the keys).
    #[arg(default_value = "extension/tailscale")]
    pub definition: PathBuf,
    /// `KEY=VALUE`, or `KEY` alone to take the value from the environment variable `KEY`
    /// (required for secrets, so they stay off the command line); repeatable.
    #[arg(long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// Write here (0600, atomically) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// The contracts of `dirs`' definitions, by extension name.
fn contracts_of(
    dirs: &[PathBuf],
) -> Result<std::collections::BTreeMap<String, super::contract::Contract>> {
    let mut out = std::collections::BTreeMap::new();
    for dir in dirs {
        let loaded = crate::definition::load(dir)?;
        let Some(contract) = loaded.def.config else {
            return Err(Error::input_hint(
                format!("`{}` declares no `config:` contract", loaded.file.display()),
                "declare the environment the service reads under `config.environment` (extension/README.md)",
            ));
        };
        out.insert(loaded.def.name, contract);
    }
    Ok(out)
}

fn run_esc(a: EscArgs) -> Result<()> {
    let loaded = crate::definition::load(&a.definition)?;
    let contract = loaded.def.config.clone().ok_or_else(|| {
        Error::input_hint(
            format!("`{}` declares no `config:` contract", loaded.file.display()),
            "declare the environment the service reads under `config.environment` (extension/README.md)",
        )
    })?;
    let mut env = Vec::new();
    let mut inline = Vec::new();
    for e in &a.env {
        let (k, v) = super::contract::parse_env(e)?;
        if e.contains('=') {
            inline.push(k.clone());
        }
        env.push((k, v));
    }
    let text = super::contract::render_esc(&loaded.def.name, &contract, &env, &inline)?;
    match &a.output {
        Some(path) => super::private::write_private(path, text.as_bytes()),
        None => std::io::stdout()
            .lock()
            .write_all(text.as_bytes())
            .at("writing", "stdout"),
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RoleArg {
    Controlplane,
    Worker,
}

pub fn run_config(cmd: ConfigCommand) -> Result<()> {
    match cmd {
        ConfigCommand::Render(a) => run_render(a),
        ConfigCommand::Lint(a) => run_lint(a),
        ConfigCommand::Esc(a) => run_esc(a),
        ConfigCommand::ImageVerification(a) => {
            crate::sign::cli::run_image_verification(a).map(|_| ())
        }
    }
}

fn run_render(a: RenderArgs) -> Result<()> {
    let loaded = spec::load(&a.spec)?;
    let s = &loaded.spec;
    let nodes: Vec<_> =
        match &a.node {
            Some(n) => vec![s.nodes.iter().find(|x| &x.name == n).ok_or_else(|| {
                Error::input(format!("node `{n}` is not in `{}`", loaded.origin))
            })?],
            None => s.nodes.iter().collect(),
        };
    let secret = if a.redact {
        Secret::Redacted(s.tailscale.auth.placeholder())
    } else {
        Secret::Value(s.tailscale.auth.read_secret(&loaded.base)?)
    };
    let mut stdout = std::io::stdout().lock();
    match &a.output {
        None => {
            if nodes.len() != 1 {
                return Err(Error::input_hint(
                    format!("`{}` lists {} nodes", loaded.origin, nodes.len()),
                    "pick one with `--node NAME`, or write all with `-o DIR`",
                ));
            }
            let parts = render::render_node(s, nodes[0], &secret);
            stdout
                .write_all(render::combined(s, nodes[0], &parts).as_bytes())
                .at("writing", "stdout")?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).at("creating", dir)?;
            for node in nodes {
                let parts = render::render_node(s, node, &secret);
                if a.split {
                    let sub = dir.join(&node.name);
                    std::fs::create_dir_all(&sub).at("creating", &sub)?;
                    for p in &parts {
                        let path = sub.join(format!("{}.yaml", p.name));
                        write_private(&path, render::single(p).as_bytes())?;
                        writeln!(stdout, "{}", path.display()).at("writing", "stdout")?;
                    }
                } else {
                    let path = dir.join(format!("{}.yaml", node.name));
                    write_private(&path, render::combined(s, node, &parts).as_bytes())?;
                    writeln!(stdout, "{}", path.display()).at("writing", "stdout")?;
                }
                tracing::info!(node = %node.name, redacted = a.redact, "rendered");
            }
        }
    }
    Ok(())
}

fn yaml_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .at("reading", path)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                yaml_files(&p, out)?;
            } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(p);
            }
        }
    } else {
        out.push(path.to_path_buf());
    }
    Ok(())
}

fn run_lint(a: LintArgs) -> Result<()> {
    let mut files = Vec::new();
    for f in &a.files {
        yaml_files(f, &mut files)?;
    }
    let mut inputs = Vec::new();
    for f in &files {
        inputs.push((f.display().to_string(), read_input(f)?));
    }
    let opts = Options {
        role: a.role.map(|r| match r {
            RoleArg::Controlplane => Role::Controlplane,
            RoleArg::Worker => Role::Worker,
        }),
        merged: a.merged,
        talos_version: match &a.talos_version {
            None => None,
            Some(v) => Some(crate::release::Minor::of(v).ok_or_else(|| {
                Error::input_hint(
                    format!("`{v}` is not a Talos version"),
                    "write it as `v1.14.0`",
                )
            })?),
        },
        contracts: contracts_of(&a.definitions)?,
    };
    let findings = lint::lint(&inputs, &opts);
    let mut stdout = std::io::stdout().lock();
    if a.json {
        let text =
            serde_json::to_string_pretty(&findings).map_err(|e| Error::internal(e.to_string()))?;
        writeln!(stdout, "{text}").at("writing", "stdout")?;
    } else {
        stdout
            .write_all(lint::format_text(&findings).as_bytes())
            .at("writing", "stdout")?;
    }
    let errors = lint::error_count(&findings);
    let warnings = findings.len() - errors;
    tracing::info!(files = files.len(), errors, warnings, "lint finished");
    if errors > 0 {
        return Err(Error::Validation { errors });
    }
    Ok(())
}

/// Write an imager profile (`imager -` on stdin) that bakes our extension into boot media or an
/// installer. Extension entries are written in the order: receipts, images, OCI layouts, tarballs.
#[derive(Debug, Args)]
pub struct ImagerProfileArgs {
    #[arg(long, default_value = "amd64", value_parser = ["amd64", "arm64"])]
    pub arch: String,
    /// Talos platform (`metal`, `nocloud`, `aws`, …): the imager's `platform`, not an OCI
    /// platform (that is `--arch`).
    #[arg(long, default_value = "metal", value_name = "PLATFORM")]
    pub talos_platform: String,
    /// Old name of `--talos-platform`, kept so scripts go on working (with a warning).
    #[arg(long = "platform", hide = true, conflicts_with = "talos_platform")]
    pub old_platform: Option<String>,
    /// Talos version of the imager and base installer, `vX.Y.Z`.
    #[arg(long, value_name = "VERSION", env = "TALEXT_TALOS_VERSION")]
    pub talos_version: String,
    /// What the imager produces (`uki` without secure boot needs Talos v1.10 or later).
    #[arg(long, default_value = "installer", value_parser = profile::KINDS)]
    pub output_kind: String,
    /// Base installer image (default: ghcr.io/siderolabs/installer-base:<version> from v1.10,
    /// ghcr.io/siderolabs/installer:<version> before).
    #[arg(long, value_name = "REF")]
    pub base_installer: Option<String>,
    /// Build receipt (`talext build --receipt`): pins the extension by its index digest, or
    /// points at its `oci:` / `tar:` output; repeatable.
    #[arg(long = "receipt", value_name = "FILE")]
    pub receipts: Vec<PathBuf>,
    /// Extension image `REF@sha256:…`; repeatable.
    #[arg(long = "image", value_name = "REF")]
    pub images: Vec<String>,
    /// Extension as an OCI layout directory with per-platform index entries; repeatable.
    #[arg(long = "oci-path", value_name = "DIR")]
    pub oci_paths: Vec<PathBuf>,
    /// Extension as a plain filesystem tar (`tar:` output of build); repeatable.
    #[arg(long = "tarball", value_name = "FILE")]
    pub tarballs: Vec<PathBuf>,
    /// Bake this image cache into the output (`talext image-cache create`'s OCI layout, as the
    /// imager's `imageCache` input by `ociPath`); it must hold the profile's installer.
    #[arg(long, value_name = "DIR")]
    pub image_cache: Option<PathBuf>,
    /// With `--image-cache`: also write the machine configuration that uses it (atomically):
    /// the `IMAGECACHE` `VolumeConfig` sized to the cache, and `ImageCacheConfig` (Talos v1.14
    /// and later) or `.machine.features.imageCache.localEnabled` (v1.9 to v1.13).
    #[arg(long, value_name = "FILE", requires = "image_cache")]
    pub machine_config: Option<PathBuf>,
    /// An Image Factory schematic (YAML or JSON): also install the factory's virtual
    /// `schematic` extension for it (written as a `tarballPath` tar), so the media report the
    /// schematic ID as factory media do; prints the installer name the factory would use.
    #[arg(long, value_name = "FILE")]
    pub schematic: Option<PathBuf>,
    /// Where the schematic extension's tar goes (default: `schematic-<ID>.tar` in the current
    /// directory).
    #[arg(long, value_name = "FILE", requires = "schematic")]
    pub schematic_tarball: Option<PathBuf>,
    /// The Image Factory host of the printed installer name (default `factory.talos.dev`).
    #[arg(long, value_name = "HOST", requires = "schematic")]
    pub factory: Option<String>,
    /// Accept image references that are not pinned by digest.
    #[arg(long)]
    pub allow_unpinned: bool,
    /// Write the profile here (atomically) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Print `{profile, output, machineConfig, schematic}` on stdout: the profile as JSON, and
    /// the files written (the profile still goes to `--output` when given).
    #[arg(long)]
    pub json: bool,
    /// Require a cosign signature by this public key (PEM) on every extension image (in its
    /// registry or `oci:` layout) before it goes into the profile; a tarball cannot carry one.
    #[arg(long, env = "TALEXT_REQUIRE_SIGNATURE", value_name = "PUB")]
    pub require_signature: Option<PathBuf>,
    /// How to reach the registries signatures are read from (with `--require-signature`);
    /// `--insecure` also lets the imager pull over plain HTTP or unverified TLS
    /// (`forceInsecure`).
    #[command(flatten)]
    pub registry: crate::registry_args::RegistryArgs,
}

/// `--require-signature`: every extension the profile names is signed by `key`.
fn require_signatures(
    extensions: &[ExtensionSource],
    key: &std::path::Path,
    a: &ImagerProfileArgs,
) -> Result<()> {
    let options = a.registry.options()?;
    for e in extensions {
        let source = match e {
            ExtensionSource::Image { reference, .. } => format!("docker://{reference}"),
            ExtensionSource::OciPath(dir) => format!("oci:{}", dir.display()),
            ExtensionSource::Tarball(file) => {
                return Err(Error::input_hint(
                    format!(
                        "`{}` is a tarball, which carries no signature, and `--require-signature` is given",
                        file.display()
                    ),
                    "give the extension as a signed registry image (`--image`) or `--oci-path` layout",
                ))
            }
        };
        crate::sign::cli::require_signature(&source, key, &options)?;
    }
    Ok(())
}

pub fn run_imager_profile(a: ImagerProfileArgs, quiet: bool) -> Result<()> {
    let mut extensions = Vec::new();
    for r in &a.receipts {
        let receipt = Receipt::read(r)?;
        extensions.push(profile::source_from_receipt(
            &receipt,
            &a.arch,
            a.registry.insecure,
            a.allow_unpinned,
        )?);
    }
    for i in &a.images {
        extensions.push(profile::image_source(
            i,
            a.registry.insecure,
            a.allow_unpinned,
        )?);
    }
    extensions.extend(a.oci_paths.iter().cloned().map(ExtensionSource::OciPath));
    extensions.extend(a.tarballs.iter().cloned().map(ExtensionSource::Tarball));
    for e in &extensions {
        profile::check_local(e, &a.arch)?;
    }
    if let Some(key) = &a.require_signature {
        require_signatures(&extensions, key, &a)?;
    }
    let schematic = match &a.schematic {
        Some(file) => {
            let text = std::fs::read_to_string(file).at("reading", file)?;
            let parsed = super::schematic::Schematic::parse(&text, &file.display().to_string())?;
            let (id, canonical) = (parsed.id()?, parsed.canonical_yaml()?);
            let tar = match &a.schematic_tarball {
                Some(p) => p.clone(),
                None => std::env::current_dir()
                    .at("reading", ".")?
                    .join(format!("schematic-{id}.tar")),
            };
            let installer = crate::release::images::Closure {
                talos_version: a.talos_version.clone(),
                schematic: Some(id.clone()),
                factory: a.factory.clone(),
                ..Default::default()
            }
            .factory_installer()?
            .unwrap_or_default();
            extensions.push(ExtensionSource::Tarball(tar.clone()));
            Some((id, canonical, tar, installer))
        }
        None => None,
    };
    // Both documents are rendered before either is written.
    let machine_config = match (&a.machine_config, &a.image_cache) {
        (Some(file), Some(cache)) => Some((
            file,
            super::cache_config::render(
                &a.talos_version,
                super::cache_config::content_size(cache)?,
            )?,
        )),
        _ => None,
    };
    let text = profile::render(&ProfileRequest {
        arch: a.arch,
        platform: match a.old_platform {
            Some(p) => {
                tracing::warn!(
                    "`imager-profile --platform` is now `--talos-platform` (`--platform` means an OCI platform everywhere else)"
                );
                p
            }
            None => a.talos_platform,
        },
        talos_version: a.talos_version,
        output_kind: a.output_kind,
        base_installer: a.base_installer,
        insecure: a.registry.insecure,
        extensions,
        image_cache: a.image_cache,
    })?;
    if let Some((file, docs)) = &machine_config {
        write_atomic(file, docs.as_bytes())?;
    }
    if let Some((id, canonical, tar, installer)) = &schematic {
        super::schematic_ext::write(tar, id, canonical)?;
        if !quiet {
            eprintln!(
            "schematic `{id}`: extension written to `{}`; the Image Factory names its installer `{installer}`",
                tar.display()
            );
        }
    }
    if let Some(path) = &a.output {
        write_atomic(path, text.as_bytes())?;
    }
    if a.json {
        let profile: serde_json::Value = serde_yaml::from_str(&text)
            .map_err(|e| Error::internal(format!("the profile rendered is not YAML: {e}")))?;
        let report = serde_json::json!({
            "profile": profile,
            "output": a.output,
            "machineConfig": machine_config.as_ref().map(|(f, _)| f),
            "schematic": schematic.as_ref().map(|(id, _, tar, installer)| serde_json::json!({
                "id": id,
                "tarball": tar,
                "installer": installer,
            })),
        });
        return crate::cli::outln(pretty(&report)?);
    }
    if a.output.is_none() {
        crate::cli::out(text.as_bytes())?;
    }
    Ok(())
}

fn pretty(v: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string_pretty(v).map_err(|e| Error::internal(e.to_string()))
}

#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Build a custom extensions catalog (`image-digests` + `descriptions.yaml`) for a
    /// self-hosted Image Factory.
    Build(CatalogBuildArgs),
}

#[derive(Debug, Args)]
pub struct CatalogBuildArgs {
    /// Build receipt of an extension pushed to a registry; repeatable.
    #[arg(long = "receipt", value_name = "FILE")]
    pub receipts: Vec<PathBuf>,
    /// A catalog line `registry/repo:tag@sha256:…`; repeatable.
    #[arg(long = "image", value_name = "LINE")]
    pub images: Vec<String>,
    /// Author shown by the factory for our extensions.
    #[arg(long, default_value = "Custom build")]
    pub author: String,
    /// Description shown by the factory (default: `<name> <version> system extension`).
    #[arg(long)]
    pub description: Option<String>,
    /// Existing catalog to extend: a directory holding its `image-digests` and
    /// `descriptions.yaml`; our entries replace those of the same name.
    #[arg(long, value_name = "DIR")]
    pub merge: Option<PathBuf>,
    /// Where to write: `dir:DIR` (the two files), `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]` or
    /// `docker://REGISTRY/REPO:TAG` (tag it with the Talos version the factory serves).
    #[arg(short, long, value_name = "LOCATION")]
    pub output: String,
    /// Timestamp for the image (seconds since the epoch).
    #[arg(long, env = "SOURCE_DATE_EPOCH", default_value_t = 0)]
    pub epoch: u64,
    /// Print `{output, digest, extensions: [{name, image, author, description}]}` instead of
    /// the digest (`digest` is null for `dir:`).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: crate::registry_args::RegistryArgs,
}

/// The catalog the flags describe.
pub fn catalog_from_args(a: &CatalogBuildArgs) -> Result<Catalog> {
    if a.receipts.is_empty() && a.images.is_empty() {
        return Err(Error::input_hint(
            "no extension given",
            "pass `--receipt FILE` or `--image LINE`",
        ));
    }
    if a.description.is_some() && a.receipts.len() + a.images.len() > 1 {
        return Err(Error::input(
            "`--description` applies to a single extension",
        ));
    }
    let mut ours = Catalog::default();
    for r in &a.receipts {
        ours.add(catalog::entry_from_receipt(
            &Receipt::read(r)?,
            &a.author,
            a.description.as_deref(),
        )?);
    }
    for line in &a.images {
        let line = line.strip_prefix("docker://").unwrap_or(line);
        catalog::check_line(line)?;
        let name = catalog::extension_name(line);
        ours.add(catalog::Entry {
            line: line.to_string(),
            author: a.author.clone(),
            description: a
                .description
                .clone()
                .unwrap_or_else(|| format!("{name} system extension")),
        });
    }
    let base = match &a.merge {
        Some(dir) => {
            let digests = dir.join("image-digests");
            let descs = dir.join("descriptions.yaml");
            let d = std::fs::read_to_string(&digests).at("reading", &digests)?;
            let y = if descs.exists() {
                std::fs::read_to_string(&descs).at("reading", &descs)?
            } else {
                String::new()
            };
            Catalog::parse(&d, &y)?
        }
        None => Catalog::default(),
    };
    Ok(base.merged(ours))
}

pub fn run_catalog(cmd: CatalogCommand) -> Result<()> {
    let CatalogCommand::Build(a) = cmd;
    let c = catalog_from_args(&a)?;
    let tree = c.tree();
    let digest = if let Some(dir) = a.output.strip_prefix("dir:") {
        let dir = Path::new(dir);
        std::fs::create_dir_all(dir).at("creating", dir)?;
        for name in ["image-digests", "descriptions.yaml"] {
            write_atomic(&dir.join(name), &tree.read_all(name)?)?;
        }
        None
    } else {
        let cwd = std::env::current_dir().at("reading", ".")?;
        Some(match Location::parse(&a.output, &cwd)? {
            loc @ (Location::Oci { .. } | Location::OciArchive { .. }) => {
                let Some((out, tag)) = crate::store::Output::open(&loc)? else {
                    return Err(Error::internal("a catalog output that is not a layout"));
                };
                let (index, _) = catalog_image::write(out.layout(), &tree, a.epoch)?;
                out.commit(&index, tag.as_deref())?;
                index.digest.to_string()
            }
            Location::Registry(r) => {
                catalog_image::push(&tree, a.epoch, &r, &a.registry.options()?)?
            }
            Location::Dir(_) | Location::Tar(_) | Location::Deb(_) => {
                return Err(Error::input_hint(
                    format!("unsupported catalog output `{}`", a.output),
                    "write `dir:DIR`, `oci:DIR[:TAG]` or `oci-archive:FILE[:TAG]`",
                ))
            }
        })
    };
    if a.json {
        let extensions: Vec<_> = c
            .entries
            .iter()
            .map(|(name, e)| {
                serde_json::json!({
                    "name": name,
                    "image": e.line,
                    "author": e.author,
                    "description": e.description,
                })
            })
            .collect();
        return crate::cli::outln(pretty(&serde_json::json!({
            "output": a.output,
            "digest": digest,
            "extensions": extensions,
        }))?);
    }
    match digest {
        Some(d) => crate::cli::outln(d),
        None => crate::cli::outln(a.output.trim_start_matches("dir:")),
    }
}

#[derive(Debug, Subcommand)]
pub enum SchematicCommand {
    /// Print the Image Factory ID of a schematic file (`-` for stdin), computed offline.
    Id(SchematicIdArgs),
    /// Build a schematic from flags, print its ID and optionally write it.
    Create(SchematicCreateArgs),
}

#[derive(Debug, Args)]
pub struct SchematicIdArgs {
    /// Schematic YAML or JSON (`-` reads stdin).
    pub file: PathBuf,
    /// Print `{"id": …, "schematic": …}` like the factory's `POST /schematics`.
    #[arg(long)]
    pub json: bool,
    /// Print the canonical YAML the ID is the hash of, instead of the ID.
    #[arg(long, conflicts_with = "json")]
    pub canonical: bool,
    /// Decode as the Enterprise edition of the factory does: an `owner` is accepted.
    #[arg(long, env = "TALEXT_ENTERPRISE")]
    pub enterprise: bool,
}

#[derive(Debug, Args)]
pub struct SchematicCreateArgs {
    /// Extension name as the factory's catalog spells it (`siderolabs/tailscale`); repeatable,
    /// order matters for the ID.
    #[arg(long = "extension", value_name = "NAME")]
    pub extensions: Vec<String>,
    /// Extra kernel argument; repeatable.
    #[arg(long = "kernel-arg", value_name = "ARG")]
    pub kernel_args: Vec<String>,
    /// Initial META value `KEY=VALUE` (KEY 0–255, decimal or 0x hex); repeatable.
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    pub meta: Vec<String>,
    /// Write the canonical schematic YAML here (stdout keeps the ID).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Print `{"id": …, "schematic": …}`.
    #[arg(long)]
    pub json: bool,
}

pub fn run_schematic(cmd: SchematicCommand) -> Result<()> {
    let (schematic, json, canonical, output, private) = match cmd {
        SchematicCommand::Id(a) => {
            let text = read_input(&a.file)?;
            let s = Schematic::parse_for(&text, &a.file.display().to_string(), a.enterprise)?;
            (s, a.json, a.canonical, None, false)
        }
        SchematicCommand::Create(a) => {
            let meta = a
                .meta
                .iter()
                .map(|m| parse_meta(m))
                .collect::<Result<Vec<_>>>()?;
            let s = Schematic::with_extensions(&a.extensions, &a.kernel_args, &meta);
            s.validate(false)?;
            // META values are free-form and reach the node before its configuration does, so
            // a schematic carrying them is written like any other file that may hold a secret.
            let private = !a.meta.is_empty();
            (s, a.json, false, a.output, private)
        }
    };
    let yaml = schematic.canonical_yaml()?;
    let id = super::schematic::id_of(&yaml);
    match output {
        Some(path) if private => write_private(&path, yaml.as_bytes())?,
        Some(path) => write_atomic(&path, yaml.as_bytes())?,
        None => {}
    }
    let mut out = std::io::stdout().lock();
    let res = if json {
        let v = serde_json::json!({ "id": id, "schematic": yaml });
        writeln!(out, "{v}")
    } else if canonical {
        out.write_all(yaml.as_bytes())
    } else {
        writeln!(out, "{id}")
    };
    res.at("writing", "stdout")
}

fn parse_meta(s: &str) -> Result<(u8, String)> {
    let (k, v) = s.split_once('=').ok_or_else(|| {
        Error::input_hint(
            format!("`--meta {s}` is not KEY=VALUE"),
            "for example `--meta 0xa=value`",
        )
    })?;
    let key = if let Some(hex) = k.strip_prefix("0x").or_else(|| k.strip_prefix("0X")) {
        u8::from_str_radix(hex, 16).ok()
    } else {
        k.parse::<u8>().ok()
    };
    let key =
        key.ok_or_else(|| Error::input(format!("META key `{k}` is not a number from 0 to 255")))?;
    Ok((key, v.to_string()))
}

/// Read a file, or stdin for `-`.
pub fn read_input(path: &Path) -> Result<String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .at("reading", "stdin")?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).at("reading", path)
    }
}

/// Write a file through a temporary sibling and a rename, so readers never see half of it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::image::write_file_atomic(path, bytes)
}
