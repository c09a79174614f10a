//! The registry error: which registry, repository and operation failed, what the registry said
//! (its error code and message from the distribution-spec error envelope), and whether the
//! retry budget ran out. Credentials never reach these values: messages taken from a registry
//! are scrubbed of every secret the client holds before they are stored.

use std::fmt;
use std::time::Duration;

use crate::exit::ExitKind;

/// A failed registry operation.
#[derive(Debug)]
pub struct RegistryError {
    /// Registry host (with port), empty when no registry was involved yet.
    pub registry: String,
    /// Repository path, empty for registry-wide operations.
    pub repository: String,
    /// What talext was doing, e.g. `push blob sha256:…` or `get manifest latest`.
    pub operation: String,
    pub kind: Box<ErrorKind>,
    /// Set when the failure is the last of several attempts.
    pub retries: Option<Exhausted>,
}

/// The retry budget that was spent before giving up.
#[derive(Debug, Clone, Copy)]
pub struct Exhausted {
    pub attempts: u32,
    pub elapsed: Duration,
}

#[derive(Debug)]
pub enum ErrorKind {
    /// The reference does not parse.
    BadReference { input: String, reason: String },
    /// 401/403, or the token service refused the credentials.
    Unauthorized {
        status: u16,
        code: Option<String>,
        message: Option<String>,
        /// No credential was presented: authentication is required, not refused.
        anonymous: bool,
    },
    /// The manifest, blob or repository is unknown.
    NotFound {
        code: Option<String>,
        message: Option<String>,
    },
    /// Any other HTTP status the registry answered with.
    Status {
        status: u16,
        code: Option<String>,
        message: Option<String>,
    },
    /// talext refused to do something unsafe (e.g. credentials over plain HTTP).
    Refused(String),
    /// Local configuration is unusable: a CA file, an auth file, a credential helper.
    Config(String),
    /// The connection failed (reset, TLS handshake).
    Network(String),
    /// Nothing could be reached at the address: the name does not resolve (`dns`), or the
    /// connection was refused. Retried once at most, since waiting rarely heals it.
    Unreachable { message: String, dns: bool },
    /// The registry stalled longer than the idle timeout, or a request outlived its deadline.
    Timeout(String),
    /// Content did not hash to the digest that names it.
    DigestMismatch { expected: String, actual: String },
    /// The registry broke the distribution protocol.
    Protocol(String),
    /// A local file could not be read or written.
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

impl RegistryError {
    pub fn new(
        registry: impl Into<String>,
        repository: impl Into<String>,
        operation: impl Into<String>,
        kind: ErrorKind,
    ) -> Self {
        RegistryError {
            registry: registry.into(),
            repository: repository.into(),
            operation: operation.into(),
            kind: Box::new(kind),
            retries: None,
        }
    }

    /// Exit 1 for what the user can fix (credentials, names, references, refused content);
    /// exit 2 for the network, a failing registry, or a spent retry budget. A registry that
    /// misbehaves (content that does not match its digest, a body longer than its descriptor,
    /// a stall) is a failing registry: exit 2.
    pub fn exit_kind(&self) -> ExitKind {
        if self.retries.is_some() {
            return ExitKind::Environment;
        }
        match &*self.kind {
            ErrorKind::BadReference { .. }
            | ErrorKind::Unauthorized { .. }
            | ErrorKind::NotFound { .. }
            | ErrorKind::Refused(_)
            | ErrorKind::Config(_) => ExitKind::User,
            ErrorKind::Status { status, .. }
                if (400..500).contains(status) && !matches!(status, 408 | 429) =>
            {
                ExitKind::User
            }
            ErrorKind::Status { .. }
            | ErrorKind::Network(_)
            | ErrorKind::Unreachable { .. }
            | ErrorKind::Timeout(_)
            | ErrorKind::DigestMismatch { .. }
            | ErrorKind::Protocol(_)
            | ErrorKind::Io { .. } => ExitKind::Environment,
        }
    }

    pub fn hint(&self) -> Option<&'static str> {
        match &*self.kind {
            ErrorKind::Unauthorized {
                anonymous: true, ..
            } => Some(
                "pass `--username` with `--password-stdin` (`--src-creds`/`--dest-creds` for one side of `copy`), or log in with `skopeo login` or `docker login`",
            ),
            ErrorKind::Unauthorized { status: 403, .. } => Some(
                "the registry knows these credentials but does not allow this operation with them: check the account's permissions on the repository",
            ),
            ErrorKind::Unauthorized { .. } => Some(
                "check the user name and password (`--username`, `--src-creds`/`--dest-creds`, or the entry in the auth file), or log in again with `skopeo login` or `docker login`",
            ),
            ErrorKind::Network(m) if m.contains("certificate") || m.contains("UnknownIssuer") => {
                Some("trust the registry's CA with `--ca-file`, or put it in `/etc/containers/certs.d/<host>/`")
            }
            ErrorKind::Unreachable { dns: true, .. } => Some(
                "check the registry's host name in the reference (and the DNS this machine uses); a name that does not resolve is not retried",
            ),
            ErrorKind::Unreachable { dns: false, .. } => Some(
                "check the registry's address and port in the reference, and that the registry is running and listening there",
            ),
            ErrorKind::Refused(_) => Some("pass `--insecure` to accept the risk"),
            ErrorKind::Timeout(_) => {
                Some("raise `--idle-timeout` (or `--timeout`) if the registry is only slow")
            }
            _ if self.retries.is_some() => {
                Some("raise `--retry-max` or `--retry-max-time` if the registry is only slow to recover")
            }
            _ => None,
        }
    }

    pub(crate) fn with_retries(mut self, attempts: u32, elapsed: Duration) -> Self {
        self.retries = Some(Exhausted { attempts, elapsed });
        self
    }

    /// Whether the registry said the thing does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(*self.kind, ErrorKind::NotFound { .. })
    }
}

fn registry_said(
    f: &mut fmt::Formatter<'_>,
    code: &Option<String>,
    message: &Option<String>,
) -> fmt::Result {
    match (code, message) {
        (Some(c), Some(m)) if !m.is_empty() => write!(f, " ({c}: {m})"),
        (Some(c), _) => write!(f, " ({c})"),
        (None, Some(m)) if !m.is_empty() => write!(f, " ({m})"),
        _ => Ok(()),
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let ErrorKind::BadReference { input, reason } = &*self.kind {
            return write!(f, "invalid image reference `{input}`: {reason}");
        }
        let place = match (self.registry.is_empty(), self.repository.is_empty()) {
            (false, false) => format!("`{}/{}`", self.registry, self.repository),
            (false, true) => format!("`{}`", self.registry),
            _ => "the registry".to_string(),
        };
        write!(f, "`{}` at {place} failed", self.operation)?;
        if let Some(r) = self.retries {
            let plural = if r.attempts == 1 { "" } else { "s" };
            write!(
                f,
                " after {} attempt{plural} in {:.1}s",
                r.attempts,
                r.elapsed.as_secs_f64()
            )?;
        }
        f.write_str(": ")?;
        match &*self.kind {
            ErrorKind::BadReference { .. } => unreachable!("rendered above"),
            ErrorKind::Unauthorized {
                status,
                code,
                message,
                anonymous: true,
            } => {
                write!(
                    f,
                    "authentication required: registry `{}` asked for credentials and none were sent ({status})",
                    self.registry
                )?;
                registry_said(f, code, message)
            }
            ErrorKind::Unauthorized {
                status: 403,
                code,
                message,
                anonymous: false,
            } => {
                write!(
                    f,
                    "access denied: registry `{}` refused this operation to the credentials given (403)",
                    self.registry
                )?;
                registry_said(f, code, message)
            }
            ErrorKind::Unauthorized {
                status,
                code,
                message,
                anonymous: false,
            } => {
                write!(
                    f,
                    "credentials refused: registry `{}` refused the credentials ({status})",
                    self.registry
                )?;
                registry_said(f, code, message)
            }
            ErrorKind::NotFound { code, message } => {
                f.write_str("not found")?;
                registry_said(f, code, message)
            }
            ErrorKind::Status {
                status,
                code,
                message,
            } => {
                write!(f, "registry answered {status}")?;
                if let Some(reason) = reqwest::StatusCode::from_u16(*status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                {
                    write!(f, " {}", reason.to_lowercase())?;
                }
                registry_said(f, code, message)
            }
            ErrorKind::Refused(m)
            | ErrorKind::Config(m)
            | ErrorKind::Protocol(m)
            | ErrorKind::Timeout(m) => f.write_str(m),
            ErrorKind::Network(m) => write!(f, "network: {m}"),
            ErrorKind::Unreachable { message, dns: true } => {
                write!(f, "cannot resolve `{}`: {message}", self.registry)
            }
            ErrorKind::Unreachable {
                message,
                dns: false,
            } => {
                write!(f, "cannot connect to `{}`: {message}", self.registry)
            }
            ErrorKind::DigestMismatch { expected, actual } => {
                write!(f, "content digest `{actual}` does not match `{expected}`")
            }
            ErrorKind::Io { path, source } => write!(f, "`{}`: {source}", path.display()),
        }
    }
}

impl std::error::Error for RegistryError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_kinds() {
        let e = |kind| RegistryError::new("r:1", "a/b", "op", kind);
        let unauthorized = ErrorKind::Unauthorized {
            status: 401,
            code: None,
            message: None,
            anonymous: false,
        };
        assert_eq!(e(unauthorized).exit_kind(), ExitKind::User);
        let unknown = ErrorKind::NotFound {
            code: Some("MANIFEST_UNKNOWN".into()),
            message: None,
        };
        assert_eq!(e(unknown).exit_kind(), ExitKind::User);
        assert_eq!(
            e(ErrorKind::Network("reset".into())).exit_kind(),
            ExitKind::Environment
        );
        let busy = ErrorKind::Status {
            status: 429,
            code: None,
            message: None,
        };
        assert_eq!(e(busy).exit_kind(), ExitKind::Environment);
        let spent = e(ErrorKind::Status {
            status: 400,
            code: None,
            message: None,
        })
        .with_retries(3, Duration::from_secs(1));
        assert_eq!(spent.exit_kind(), ExitKind::Environment);
    }

    #[test]
    fn message_names_registry_repository_operation_and_code() {
        let err = RegistryError::new(
            "127.0.0.1:5000",
            "ext/tailscale",
            "get manifest v1",
            ErrorKind::NotFound {
                code: Some("MANIFEST_UNKNOWN".into()),
                message: Some("manifest unknown".into()),
            },
        );
        assert_eq!(
            err.to_string(),
            "`get manifest v1` at `127.0.0.1:5000/ext/tailscale` failed: not found (MANIFEST_UNKNOWN: manifest unknown)"
        );
    }
}
