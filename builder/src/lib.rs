//! talext: build, validate and move Talos Linux system extension images without a Docker daemon.
//!
//! The pipeline (see `STYLE.md`): `definition` → `plan` → `rootfs` → `validate` → `layer` →
//! `image` → a sink in `oci` → a receipt. Each stage is a plain function over owned values;
//! `commands` wires them together and `cli` parses flags.

pub mod build;
pub mod cli;
pub mod definition;
pub mod error;
pub mod image;
pub mod layer;
pub mod oci;
pub mod plan;
pub mod rootfs;
pub mod sbom;
pub mod source;
pub mod tarw;
pub mod transport;

pub use error::{Error, ExitKind, Result};
