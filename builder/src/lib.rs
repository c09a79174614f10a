//! talext: build, validate and move Talos Linux system extension images without a Docker daemon.
//!
//! The pipeline (see `STYLE.md`): `definition` → `plan` → `rootfs` → `validate` → `layer` →
//! `image` → a store (`store`: layouts, archives, image caches; `registry`) → a receipt. Images
//! move between stores through `transfer`; facts about Talos releases live in `release`. Each
//! stage is a plain function over owned values; `cli` parses flags and wires them together.

pub mod build;
pub mod bundle;
pub mod cache;
pub mod cache_admin;
pub mod cli;
pub mod definition;
pub mod error;
pub mod exit;
pub mod goyaml;
pub mod image;
pub mod init;
pub mod inspect;
pub mod layer;
pub mod login;
pub mod oci;
pub mod pgzip;
pub mod plan;
pub mod progress;
pub mod pull;
pub mod registry;
pub mod registry_args;
pub mod release;
pub mod rootfs;
pub mod sbom;
pub mod sign;
pub mod source;
pub mod store;
pub mod talos;
pub mod tarw;
pub mod transfer;
pub mod transport;
pub mod validate;

pub use error::{Error, ExitKind, Result};
