//! Exit codes, shared by every module's errors: 0 success, 1 bad input or failed validation,
//! 2 environment or internal failure (README "Exit codes").

/// Which exit code a failure maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// Bad input, failed validation, refused content: exit 1.
    User,
    /// The environment failed us (I/O, network, a bug): exit 2.
    Environment,
}

impl ExitKind {
    pub fn code(self) -> u8 {
        match self {
            ExitKind::User => 1,
            ExitKind::Environment => 2,
        }
    }
}
