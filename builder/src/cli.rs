//! Command-line parsing and the edge where errors are rendered and mapped to exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::build;
use crate::error::Error;
use crate::plan::Request;
use crate::transport::Location;

#[derive(Debug, Parser)]
#[command(
    name = "talext",
    version,
    about = "Build, validate and move Talos system extension images"
)]
pub struct Cli {
    /// Print nothing on stderr but errors.
    #[arg(short, long, global = true, env = "TALEXT_QUIET")]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an extension image from a definition directory.
    Build(BuildArgs),
    /// Show the resolved definition a build would use (YAML on stdout).
    Plan(DefinitionArgs),
}

#[derive(Debug, Args)]
pub struct DefinitionArgs {
    /// The extension definition directory.
    #[arg(default_value = "extension/tailscale")]
    pub dir: PathBuf,
    /// Override a source: `NAME=LOCATION` (a directory with `{arch}`, `oci:DIR[:TAG]`,
    /// `oci-archive:FILE[:TAG]`). Repeatable.
    #[arg(
        long = "source",
        value_name = "NAME=LOCATION",
        env = "TALEXT_SOURCE",
        value_delimiter = ';'
    )]
    pub sources: Vec<String>,
    /// Override the extension version.
    #[arg(long, env = "TALEXT_VERSION")]
    pub version: Option<String>,
    /// Platforms to build (`linux/amd64`, `linux/arm64`); repeatable or comma-separated.
    #[arg(long = "platform", env = "TALEXT_PLATFORM", value_delimiter = ',')]
    pub platforms: Vec<String>,
    /// Timestamp for every file and the image `created` time (seconds since the epoch).
    #[arg(long, env = "SOURCE_DATE_EPOCH", default_value_t = 0)]
    pub source_date_epoch: u64,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub def: DefinitionArgs,
    /// Where to write the image: `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`, `tar:FILE`.
    #[arg(short, long, env = "TALEXT_OUTPUT")]
    pub output: String,
}

impl DefinitionArgs {
    fn request(&self) -> Request {
        Request {
            dir: self.dir.clone(),
            sources: self.sources.clone(),
            version: self.version.clone(),
            platforms: self.platforms.clone(),
            epoch: self.source_date_epoch,
        }
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.quiet);
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            report(&err);
            ExitCode::from(err.exit_kind().code())
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, Error> {
    match cli.command {
        Command::Build(args) => {
            let cwd = std::env::current_dir().map_err(|e| Error::internal(e.to_string()))?;
            let output = Location::parse(&args.output, &cwd)?;
            let built = build::build(&args.def.request(), &output, &|_, _| Ok(()))?;
            println!("{}", built.digest);
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan(args) => {
            let plan = crate::plan::plan(&args.request())?;
            print!("{}", build::plan_yaml(&plan)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn init_logging(quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if quiet { "error" } else { "warn" };
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
