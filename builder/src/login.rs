//! `talext login` / `talext logout`: the credential of one registry stored in a containers
//! `auth.json` (containers-auth.json(5)), where every talext command, skopeo, podman and buildah
//! find it. The file is `--auth-file`, else `REGISTRY_AUTH_FILE`, else
//! `$XDG_RUNTIME_DIR/containers/auth.json`, else `$XDG_CONFIG_HOME/containers/auth.json`
//! (`~/.config/containers/auth.json`): the first containers file the credential search reads.
//! `login` checks the credential against the registry before it writes anything; the file is
//! written 0600, atomically, other entries kept. The password is read from stdin or
//! `TALEXT_REGISTRY_PASSWORD` only, and never printed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine as _;
use clap::Args;

use crate::error::{Error, Result};
use crate::registry::{Credential, RegistryClient};

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry: `HOST[:PORT]` (`docker.io` for Docker Hub).
    pub registry: String,
    #[command(flatten)]
    pub registry_args: crate::registry_args::RegistryArgs,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The registry whose credential is removed.
    #[arg(required_unless_present = "all")]
    pub registry: Option<String>,
    /// Remove every credential of the file.
    #[arg(long)]
    pub all: bool,
    /// The credentials file (default: as `login` chooses it).
    #[arg(long, env = "TALEXT_REGISTRY_AUTH_FILE", value_name = "FILE")]
    pub auth_file: Option<PathBuf>,
}

/// The `auths` key of `registry`: Docker Hub as `docker.io`, everything else as written.
fn key_of(registry: &str) -> String {
    let host = registry
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".into(),
        h => h.into(),
    }
}

/// Where `login` writes and `logout` removes.
pub fn login_file(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(f) = explicit {
        return Ok(f.to_path_buf());
    }
    crate::registry::auth::default_auth_files()
        .into_iter()
        .find(|f| f.file_name().is_some_and(|n| n == "auth.json"))
        .ok_or_else(|| {
            Error::input_hint(
                "no place for the credentials file: `HOME`, `XDG_RUNTIME_DIR` and `REGISTRY_AUTH_FILE` are all unset",
                "pass `--auth-file FILE`",
            )
        })
}

fn read_doc(file: &Path) -> Result<serde_json::Value> {
    match std::fs::read(file) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            Error::input(format!(
                "`{}` is not a credentials file: {e}",
                file.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(serde_json::json!({})),
        Err(e) => Err(Error::input(format!("reading `{}`: {e}", file.display()))),
    }
}

fn write_doc(file: &Path, doc: &serde_json::Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(doc).map_err(|e| Error::internal(e.to_string()))?;
    text.push('\n');
    crate::talos::private::write_private(file, text.as_bytes())
}

pub fn run_login(args: LoginArgs, quiet: bool) -> Result<ExitCode> {
    let options = args.registry_args.options()?;
    let Some(Credential::Basic { username, password }) = options.credential.clone() else {
        return Err(Error::input_hint(
            "`login` needs a user name and a password",
            "pass `--username USER --password-stdin` (or set `TALEXT_REGISTRY_PASSWORD`)",
        ));
    };
    let file = login_file(args.registry_args.auth_file.as_deref())?;
    let client = RegistryClient::new(&options, &args.registry)?;
    client.check_login()?;
    let mut doc = read_doc(&file)?;
    if !doc.is_object() {
        return Err(Error::input(format!(
            "`{}` is not a credentials file",
            file.display()
        )));
    }
    let auth = base64::engine::general_purpose::STANDARD
        .encode(format!("{username}:{}", password.expose()));
    let auths = doc
        .as_object_mut()
        .expect("checked above")
        .entry("auths")
        .or_insert_with(|| serde_json::json!({}));
    let Some(auths) = auths.as_object_mut() else {
        return Err(Error::input(format!(
            "`{}`: `auths` is not an object",
            file.display()
        )));
    };
    auths.insert(key_of(&args.registry), serde_json::json!({ "auth": auth }));
    write_doc(&file, &doc)?;
    if !quiet {
        eprintln!(
            "logged in to `{}` as `{username}`; the credential is in `{}`",
            args.registry,
            file.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_logout(args: LogoutArgs, quiet: bool) -> Result<ExitCode> {
    let file = login_file(args.auth_file.as_deref())?;
    let mut doc = read_doc(&file)?;
    let removed = match doc.get_mut("auths").and_then(|a| a.as_object_mut()) {
        Some(auths) if args.all => {
            let n = auths.len();
            auths.clear();
            n
        }
        Some(auths) => {
            let key = key_of(args.registry.as_deref().unwrap_or_default());
            let before = auths.len();
            // Scoped keys (`host/ns`) of the registry go too.
            auths.retain(|k, _| {
                let k = key_of(k);
                k != key && !k.starts_with(&format!("{key}/"))
            });
            before - auths.len()
        }
        None => 0,
    };
    if removed == 0 {
        return Err(Error::input(format!(
            "`{}` holds no credential for `{}`",
            file.display(),
            args.registry.as_deref().unwrap_or("any registry")
        )));
    }
    write_doc(&file, &doc)?;
    if !quiet {
        eprintln!("removed {removed} credential(s) from `{}`", file.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_containers_auth_json() {
        assert_eq!(key_of("index.docker.io"), "docker.io");
        assert_eq!(key_of("https://registry-1.docker.io/"), "docker.io");
        assert_eq!(key_of("127.0.0.1:5000"), "127.0.0.1:5000");
    }
}
