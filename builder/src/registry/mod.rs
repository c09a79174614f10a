//! The registry client: a blocking facade over the OCI distribution API for the synchronous rest
//! of talext. References and media types come from `oci_client`; requests are issued on
//! `reqwest` (the HTTP stack `oci_client` uses) because `oci_client`'s request methods hide the
//! response headers this client needs (`Retry-After`, `Content-Type`, `Docker-Content-Digest`,
//! `Location`, `Content-Length` of a blob) and it has no retries, no identity tokens and no
//! fallback when a cross-repository mount answers 202 (see `reference/factory-and-airgap.md`
//! §5.1).
//!
//! - [`reference`]: `docker://` and bare references, Docker Hub normalisation.
//! - [`auth`]: credential resolution (flags, `auth.json`, `config.json`, helpers), challenges,
//!   tokens.
//! - [`transport`]: TLS roots, `certs.d`, the plain-HTTP policy.
//! - [`retry`]: backoff with jitter, `Retry-After`, budgets.
//! - [`client`]: [`RegistryClient`] and its operations; `session` holds the request machinery
//!   (endpoint, challenges, tokens and where credentials may go, failures), `body` the bounded,
//!   hashed reads of answers, and `upload` the blob pushes.

pub mod auth;
mod body;
pub mod client;
pub mod error;
pub mod reference;
pub mod retry;
mod session;
pub mod transport;
mod upload;

use std::io::Read as _;
use std::path::PathBuf;
use std::time::Duration;

pub use auth::{Credential, Secret};
pub use client::{BlobSource, PushOutcome, RawManifest, RegistryClient};
pub use error::{ErrorKind, RegistryError};
pub use reference::Reference;
pub use retry::RetryPolicy;
pub use transport::TlsSettings;

use crate::error::Error;

/// Manifest media types asked for when the caller does not say.
pub const MANIFEST_MEDIA_TYPES: [&str; 4] = [
    oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE,
    oci_client::manifest::OCI_IMAGE_MEDIA_TYPE,
    oci_client::manifest::IMAGE_MANIFEST_LIST_MEDIA_TYPE,
    oci_client::manifest::IMAGE_MANIFEST_MEDIA_TYPE,
];

/// How blobs are uploaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadMode {
    /// `POST` then one `PUT` with the whole blob (default; works everywhere).
    Monolithic,
    /// `POST`, then `PATCH` chunks of this many bytes, then `PUT`.
    Chunked { chunk_size: usize },
}

/// Everything a [`RegistryClient`] needs besides the registry name.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Credential for every registry, from `--username` and the password; wins over files.
    pub credential: Option<Credential>,
    /// `config.json` / `auth.json` files searched in order.
    pub auth_files: Vec<PathBuf>,
    pub tls: TlsSettings,
    pub retry: RetryPolicy,
    pub upload: UploadMode,
    /// The longest wait for the next bytes of an answer (headers or body) before the attempt
    /// fails; requests without a blob body must also complete within it.
    pub idle_timeout: Duration,
    /// A deadline for each request, from sending it to the last byte of its answer; `None`
    /// lets a transfer take as long as it keeps making progress.
    pub timeout: Option<Duration>,
}

/// How long an answer may stall before the attempt fails, unless configured.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

impl Default for RegistryOptions {
    /// No credentials, no ambient files: what tests and library users start from.
    fn default() -> Self {
        RegistryOptions {
            credential: None,
            auth_files: Vec::new(),
            tls: TlsSettings::default(),
            retry: RetryPolicy::default(),
            upload: UploadMode::Monolithic,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            timeout: None,
        }
    }
}

impl RegistryOptions {
    /// Defaults plus what the environment provides: the usual credential files and the
    /// `certs.d` directories.
    pub fn from_env() -> Self {
        RegistryOptions {
            auth_files: auth::default_auth_files(),
            tls: TlsSettings {
                certs_d_roots: transport::DEFAULT_CERTS_D
                    .iter()
                    .map(PathBuf::from)
                    .collect(),
                ..TlsSettings::default()
            },
            ..RegistryOptions::default()
        }
    }
}

/// Registry flags shared by every command that talks to a registry.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// User name for the registry; the password comes from `--password-stdin` or
    /// `TALEXT_REGISTRY_PASSWORD`.
    #[arg(long, env = "TALEXT_REGISTRY_USERNAME")]
    pub username: Option<String>,
    /// Read the registry password from standard input.
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
    /// Credentials file (Docker `config.json` or containers `auth.json` format) searched before
    /// the usual ones.
    #[arg(long, env = "TALEXT_REGISTRY_AUTH_FILE", value_name = "FILE")]
    pub auth_file: Option<PathBuf>,
    /// Trust this PEM CA bundle for registry TLS, besides the system roots (repeatable).
    #[arg(
        long = "ca-file",
        env = "TALEXT_REGISTRY_CA_FILE",
        value_name = "FILE",
        value_delimiter = ','
    )]
    pub ca_files: Vec<PathBuf>,
    /// Allow plain HTTP and unverified TLS to any registry, and sending credentials that way:
    /// anyone on the network path can read or alter the images and steal the credentials.
    #[arg(long, env = "TALEXT_REGISTRY_INSECURE", value_parser = clap::builder::BoolishValueParser::new())]
    pub insecure: bool,
    /// Retries of one registry operation after its first attempt.
    #[arg(long, env = "TALEXT_RETRY_MAX", default_value_t = 5, value_name = "N")]
    pub retry_max: u32,
    /// Stop retrying an operation this long after its first attempt (e.g. `90s`, `5m`).
    #[arg(long, env = "TALEXT_RETRY_MAX_TIME", default_value = "5m", value_parser = parse_duration, value_name = "DURATION")]
    pub retry_max_time: Duration,
    /// Delay before the first retry, doubled for each further one, with jitter.
    #[arg(long, env = "TALEXT_RETRY_DELAY", default_value = "500ms", value_parser = parse_duration, value_name = "DURATION")]
    pub retry_delay: Duration,
    /// Upload blobs in chunks instead of one request (some registries mishandle chunks).
    #[arg(long, env = "TALEXT_REGISTRY_CHUNKED", value_parser = clap::builder::BoolishValueParser::new())]
    pub chunked: bool,
    /// Chunk size in bytes for `--chunked`.
    #[arg(long, env = "TALEXT_REGISTRY_CHUNK_SIZE", default_value_t = 4 << 20, value_name = "BYTES")]
    pub chunk_size: usize,
    /// Fail an attempt when the registry sends nothing for this long (e.g. `60`, `90s`, `2m`).
    #[arg(long, env = "TALEXT_IDLE_TIMEOUT", default_value = "60", value_parser = parse_duration, value_name = "SECONDS")]
    pub idle_timeout: Duration,
    /// Fail an attempt whose request, answer included, takes longer than this (default: no
    /// deadline while bytes keep coming).
    #[arg(long, env = "TALEXT_TIMEOUT", value_parser = parse_duration, value_name = "SECONDS")]
    pub timeout: Option<Duration>,
}

/// Environment variable holding the password for `--username`.
pub const PASSWORD_ENV: &str = "TALEXT_REGISTRY_PASSWORD";

impl RegistryArgs {
    /// Resolve the flags into options, reading the password from stdin or the environment.
    pub fn options(&self) -> Result<RegistryOptions, Error> {
        let mut options = RegistryOptions::from_env();
        if let Some(file) = &self.auth_file {
            options.auth_files.insert(0, file.clone());
        }
        let env_password = std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty());
        options.credential = match (&self.username, self.password_stdin, env_password) {
            (Some(username), true, _) => {
                let mut password = String::new();
                std::io::stdin()
                    .read_to_string(&mut password)
                    .map_err(|e| {
                        Error::input(format!("cannot read the password from stdin: {e}"))
                    })?;
                let password = password.trim_end_matches(['\n', '\r']).to_string();
                if password.is_empty() {
                    return Err(Error::input("`--password-stdin` read an empty password"));
                }
                Some(Credential::Basic {
                    username: username.clone(),
                    password: Secret::new(password),
                })
            }
            (Some(username), false, Some(password)) => Some(Credential::Basic {
                username: username.clone(),
                password: Secret::new(password),
            }),
            (Some(_), false, None) => {
                return Err(Error::input_hint(
                    "`--username` needs a password",
                    format!("pass `--password-stdin` or set `{PASSWORD_ENV}`"),
                ))
            }
            (None, _, Some(_)) => {
                return Err(Error::input(format!(
                    "`{PASSWORD_ENV}` is set but `--username` is not"
                )))
            }
            (None, _, None) => None,
        };
        options.tls.ca_files = self.ca_files.clone();
        options.tls.insecure = self.insecure;
        options.retry = RetryPolicy {
            max_retries: self.retry_max,
            max_time: self.retry_max_time,
            initial_delay: self.retry_delay,
            ..RetryPolicy::default()
        };
        if self.idle_timeout.is_zero() {
            return Err(Error::input("`--idle-timeout` must be more than 0"));
        }
        if self.timeout.is_some_and(|t| t.is_zero()) {
            return Err(Error::input("`--timeout` must be more than 0"));
        }
        options.idle_timeout = self.idle_timeout;
        options.timeout = self.timeout;
        options.upload = if self.chunked {
            if self.chunk_size == 0 {
                return Err(Error::input("`--chunk-size` must be at least 1"));
            }
            UploadMode::Chunked {
                chunk_size: self.chunk_size,
            }
        } else {
            UploadMode::Monolithic
        };
        Ok(options)
    }
}

/// Parse `500ms`, `30s`, `5m`, `1h` or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like `500ms`, `30s` or `5m`"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("`{s}` has an unknown unit (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{s}` is out of range"))
}

impl From<RegistryError> for Error {
    fn from(err: RegistryError) -> Self {
        Error::Registry(Box::new(err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }
}
