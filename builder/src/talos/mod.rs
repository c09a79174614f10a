//! The Talos side of talext: configuration documents for the Tailscale extension (render and
//! lint), Image Factory schematics and their IDs, imager profiles for offline boot media, and a
//! custom extensions catalog a self-hosted Image Factory resolves names from.

pub mod cache_config;
pub mod catalog;
pub mod catalog_image;
pub mod cli;
pub mod contract;
pub mod doc;
pub mod lint;
pub mod net;
pub mod private;
pub mod profile;
pub mod receipt;
pub mod render;
pub mod schematic;
pub mod schematic_ext;
pub mod spec;
