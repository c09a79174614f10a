//! The crate-wide error type: every module's typed error folds into [`Error`], which knows its
//! exit code (1 for user or validation failures, 2 for environment or internal ones) and an
//! optional hint. Rendering happens once, in `main`.

use std::path::{Path, PathBuf};

pub use crate::exit::ExitKind;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input from the user: a flag, a definition, a reference, a refused entry.
    #[error("{message}")]
    Input {
        message: String,
        hint: Option<String>,
    },
    /// An I/O failure on a named path.
    #[error("{op} `{path}`")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Something in the environment or in talext itself went wrong.
    #[error("{message}")]
    Internal { message: String },
    /// Validation found errors; the findings were already reported.
    #[error("validation failed with {errors} error(s)")]
    Validation { errors: usize },
    /// A registry operation failed; the error names registry, repository and operation.
    #[error(transparent)]
    Registry(Box<crate::registry::RegistryError>),
}

impl Error {
    pub fn input(message: impl Into<String>) -> Self {
        Error::Input {
            message: message.into(),
            hint: None,
        }
    }

    pub fn input_hint(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Input {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal {
            message: message.into(),
        }
    }

    pub fn exit_kind(&self) -> ExitKind {
        match self {
            Error::Input { .. } | Error::Validation { .. } => ExitKind::User,
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ExitKind::User
            }
            Error::Io { .. } | Error::Internal { .. } => ExitKind::Environment,
            Error::Registry(err) => err.exit_kind(),
        }
    }

    pub fn hint(&self) -> Option<&str> {
        match self {
            Error::Input { hint, .. } => hint.as_deref(),
            Error::Registry(err) => err.hint(),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<crate::registry::RegistryError> for Error {
    fn from(err: crate::registry::RegistryError) -> Self {
        Error::Registry(Box::new(err))
    }
}

/// Attach the operation and path to an I/O error.
pub trait IoContext<T> {
    fn at(self, op: &'static str, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, op: &'static str, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|source| Error::Io {
            op,
            path: path.as_ref().to_path_buf(),
            source,
        })
    }
}

/// The name in `known` a user most likely meant by `given` (at most two edits apart, case
/// aside), for "did you mean" hints.
pub fn did_you_mean<'a>(given: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let given = given.to_lowercase();
    known
        .into_iter()
        .map(|k| (strsim::damerau_levenshtein(&given, &k.to_lowercase()), k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}
