//! talext: build, validate and move Talos Linux system extension images without a Docker daemon.
//!
//! The pipeline (see `STYLE.md`): `definition` → `plan` → `rootfs` → `validate` → `layer` →
//! `image` → a sink in `oci` → a receipt. Each stage is a plain function over owned values;
//! `commands` wires them together and `cli` parses flags.

pub mod cli;
pub mod error;
pub mod registry;
pub mod rootfs;
pub mod source;

pub use error::{Error, ExitKind, Result};
