//! YAML with Go semantics: one reader and one writer for every YAML document talext shares with
//! a Go program (extension `manifest.yaml` and service files read by Talos and the extensions
//! validator, `ExtensionServiceConfig` and machine configs read by machined, schematics hashed
//! by the Image Factory, profiles read by the imager).
//!
//! Go reads these with go-yaml (v4 rc.4 in Talos v1.13 and the validator, v4 rc.6 in v1.14 and
//! the factory), whose decoder works on the parser's nodes: it sees each scalar's source text,
//! style and tag and resolves plain scalars itself, so `version: 1e3` is the string `1e3` in a
//! string field and `name: 0x10` stays `0x10`. A serde data model cannot give that: serde_yaml
//! (and its forks) resolve a plain scalar by the YAML 1.2 core schema before the target type is
//! known, and `1e3` reaches a `String` as `1000.0`. So the reader here is built on an
//! event-level parser, yaml-rust2, whose events carry every scalar's text, style, tag, anchor
//! and position, which is all go-yaml's decoder looks at; the tree ([`tree`]), the resolution of
//! scalars ([`scalar`]), the typed decoding ([`decode`], [`lenient`]) and the emitter
//! ([`emit`]) are ours and follow go-yaml's source, cited in each module.

pub mod decode;
pub mod emit;
pub mod lenient;
pub mod scalar;
pub mod tree;

pub use emit::{marshal, sort_map_keys, GoValue};
pub use tree::{documents, first_document, DResult, DecodeError, Document, Entry, Kind, Node};
