//! The registry client: a blocking facade over the OCI distribution API for the synchronous rest
//! of talext, issued on `reqwest`: it needs the response headers (`Retry-After`,
//! `Content-Type`, `Docker-Content-Digest`, `Location`, `Range`, `Content-Length` of a blob),
//! retries, identity tokens, resumable uploads and the fallback when a cross-repository mount
//! answers 202 (see `reference/factory-and-airgap.md` §5.1), which client crates hide or lack.
//!
//! - [`reference`]: `docker://` and bare references, Docker Hub normalisation.
//! - [`auth`]: credential resolution (flags, `auth.json`, `config.json`, helpers), challenges,
//!   tokens.
//! - [`transport`]: TLS roots, `certs.d`, the plain-HTTP policy; `tls` the rustls verifier that
//!   also accepts a configured certificate as the server's own.
//! - [`retry`]: backoff with jitter, `Retry-After`, budgets.
//! - [`client`]: [`RegistryClient`] and its operations; `session` holds the request machinery
//!   (endpoint, challenges, tokens and where credentials may go, failures), `body` the bounded,
//!   hashed reads of answers, `upload` the blob pushes and `stream` their bodies.

pub mod auth;
mod body;
pub mod client;
pub mod error;
mod reader;
pub mod reference;
pub mod retry;
mod session;
mod stream;
mod tls;
pub mod transport;
mod upload;

use std::path::PathBuf;
use std::time::Duration;

pub use auth::{Credential, Secret};
pub use client::{BlobSource, PushOutcome, RawManifest, RegistryClient};
pub use error::{ErrorKind, RegistryError};
pub use reader::BlobStream;
pub use reference::Reference;
pub use retry::RetryPolicy;
pub use transport::TlsSettings;

/// Manifest media types asked for when the caller does not say.
pub const MANIFEST_MEDIA_TYPES: [&str; 4] = [
    crate::oci::MT_OCI_INDEX,
    crate::oci::MT_OCI_MANIFEST,
    crate::oci::MT_DOCKER_LIST,
    crate::oci::MT_DOCKER_MANIFEST,
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
