//! `talext init NAME`: scaffold an extension definition (`extension/NAME/extension.yaml`, and
//! with `--service` a service file and a configuration contract) that `talext plan` accepts as
//! it is and whose comments say what to change. Nothing existing is overwritten.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use crate::error::{Error, IoContext, Result};

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The extension's name (`^[-_a-z0-9]+$`): its service, SBOM and directory name.
    pub name: String,
    /// Where the definition goes (default `extension/NAME`).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The source the payload comes from: a pinned image (`REGISTRY/REPO:TAG@sha256:…`),
    /// `oci:`, `oci-archive:`, `deb:`, `tar:` or a directory with `{arch}`.
    #[arg(long, value_name = "LOCATION", default_value = "payload/{arch}")]
    pub source: String,
    /// Also write a service file (the extension runs a container) and a configuration contract.
    #[arg(long)]
    pub service: bool,
}

fn definition(a: &InitArgs) -> String {
    let name = &a.name;
    let (service_line, payload_to, config) = if a.service {
        (
            format!("service: {name}.yaml\n"),
            format!("/usr/local/lib/containers/{name}"),
            format!(
                "# What the service reads from its ExtensionServiceConfig: `talext config esc` renders\n\
                 # it, `talext config lint --definition` checks it.\n\
                 config:\n  environment:\n    {key}_TOKEN:\n      required: true\n      secret: true\n      description: replace with the settings the service reads\n",
                key = name.to_uppercase().replace('-', "_")
            ),
        )
    } else {
        (String::new(), "/usr/local/bin".to_string(), String::new())
    };
    format!(
        "# The `{name}` system extension. Field reference: extension/README.md.\n\
         name: {name}\n\
         # The packaged software's version; with a pinned image source, `\"{{source.{name}.version}}\"`\n\
         # follows its tag.\n\
         version: 0.1.0\n\
         author: replace with the author\n\
         description: |\n  replace with what the extension adds to a Talos node\n\
         compatibility:\n  talos: \">= v1.7.0\"\n\
         platforms:\n  - linux/amd64\n  - linux/arm64\n\
         {service_line}\
         sources:\n  {name}:\n    # Pin registry images by digest; `{{arch}}` selects the platform's file or directory.\n    location: \"{source}\"\n\
         payload:\n  - source: {name}\n    to: {payload_to}\n\
         {config}",
        source = a.source
    )
}

fn service_file(name: &str) -> String {
    format!(
        "# The service machined runs for the `{name}` extension (contract: Talos's services.Spec).\n\
         name: {name}\n\
         container:\n  # Inside the container root /usr/local/lib/containers/{name}.\n  entrypoint: /usr/local/bin/{name}\n\
         depends:\n  - configuration: true\n  - network:\n      - addresses\n\
         restart: always\n"
    )
}

fn write_new(path: &Path, text: &str) -> Result<()> {
    if path.exists() {
        return Err(Error::input(format!(
            "`{}` already exists; `init` never overwrites",
            path.display()
        )));
    }
    crate::image::write_file_atomic(path, text.as_bytes())
}

pub fn run(a: InitArgs, quiet: bool) -> Result<ExitCode> {
    let valid = !a.name.is_empty()
        && a.name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !valid {
        return Err(Error::input_hint(
            format!("`{}` is not an extension name", a.name),
            "use lower-case letters, digits, `-` and `_` (`^[-_a-z0-9]+$`)",
        ));
    }
    let dir = a
        .dir
        .clone()
        .unwrap_or_else(|| Path::new("extension").join(&a.name));
    std::fs::create_dir_all(&dir).at("creating", &dir)?;
    let def = dir.join(crate::definition::DEFINITION_FILE);
    let service = dir.join(format!("{}.yaml", a.name));
    if a.service && service.exists() {
        return Err(Error::input(format!(
            "`{}` already exists; `init` never overwrites",
            service.display()
        )));
    }
    write_new(&def, &definition(&a))?;
    if a.service {
        write_new(&service, &service_file(&a.name))?;
    }
    if !quiet {
        eprintln!(
            "wrote `{}`{}; next: put the payload at the source, then `talext plan {}` and `talext build {}`",
            def.display(),
            if a.service { format!(" and `{}`", service.display()) } else { String::new() },
            dir.display(),
            dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
