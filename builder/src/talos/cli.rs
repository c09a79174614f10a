//! Flags and entry points of the Talos-side commands: `config render|lint`, `schematic id|create`,
//! `imager-profile` and `catalog build`. Each parses its flags and calls a library function;
//! stdout carries only the command's data.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::schematic::Schematic;
use crate::error::{Error, IoContext, Result};

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
    let (schematic, json, canonical, output) = match cmd {
        SchematicCommand::Id(a) => {
            let text = read_input(&a.file)?;
            let s = Schematic::parse(&text, &a.file.display().to_string())?;
            (s, a.json, a.canonical, None)
        }
        SchematicCommand::Create(a) => {
            let meta = a
                .meta
                .iter()
                .map(|m| parse_meta(m))
                .collect::<Result<Vec<_>>>()?;
            let s = Schematic::with_extensions(&a.extensions, &a.kernel_args, &meta);
            s.validate()?;
            (s, a.json, false, a.output)
        }
    };
    let yaml = schematic.canonical_yaml()?;
    let id = super::schematic::id_of(&yaml);
    if let Some(path) = output {
        write_atomic(&path, yaml.as_bytes())?;
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
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).at("creating a temporary file in", &dir)?;
    tmp.write_all(bytes).at("writing", tmp.path())?;
    tmp.persist(path).map_err(|e| e.error).at("writing", path)?;
    Ok(())
}
