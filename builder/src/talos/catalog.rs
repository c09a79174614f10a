//! A custom extensions catalog: the image a self-hosted Image Factory reads to resolve
//! extension names (reference §1.3, §1.5). Its filesystem holds two files at the root:
//!
//! * `image-digests` — one line per extension, `registry/repo:tag@sha256:<index digest>`; the
//!   factory skips lines without `@`, names each extension by the line's repository path
//!   (`acme/tailscale`) and pulls it from its own core registry (the host in the line is
//!   discarded), by digest.
//! * `descriptions.yaml` — a map keyed by those full lines, values `{author, description}`.
//!
//! Everything here is a pure function of its inputs; packing the tree into an image is the
//! image writer's job.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::goyaml::{self, GoValue};
use super::receipt::{is_sha256_digest, strip_tag, Receipt};
use crate::error::{Error, Result};
use crate::rootfs::{Node, Tree};

/// One extension in the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `registry/repo:tag@sha256:…`
    pub line: String,
    pub author: String,
    pub description: String,
}

impl Entry {
    /// The name schematics use: the repository path without the registry host.
    pub fn name(&self) -> String {
        extension_name(&self.line)
    }
}

/// `ghcr.io/siderolabs/tailscale:1.2@sha256:…` → `siderolabs/tailscale`.
pub fn extension_name(line: &str) -> String {
    let repo = strip_tag(line.split('@').next().unwrap_or(line));
    match repo.split_once('/') {
        // The first component is a registry host when it has a `.` or `:` or is `localhost`.
        Some((host, rest)) if host.contains('.') || host.contains(':') || host == "localhost" => {
            rest.to_string()
        }
        _ => repo.to_string(),
    }
}

/// A catalog: entries keyed by extension name, so ours replace existing ones of the same name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    pub entries: BTreeMap<String, Entry>,
}

#[derive(Debug, Deserialize)]
struct Description {
    #[serde(default)]
    author: String,
    #[serde(default)]
    description: String,
}

/// Check a catalog line: a tagged repository pinned by a sha256 digest.
pub fn check_line(line: &str) -> Result<()> {
    let (name, digest) = line
        .rsplit_once('@')
        .ok_or_else(|| Error::input(format!("catalog line `{line}` has no `@sha256:` digest")))?;
    if !is_sha256_digest(digest) {
        return Err(Error::input(format!(
            "catalog line `{line}` has no sha256 digest"
        )));
    }
    if strip_tag(name) == name || name.contains(char::is_whitespace) {
        return Err(Error::input_hint(
            format!("catalog line `{line}` has no tag"),
            "lines look like `registry/repo:tag@sha256:<digest>`",
        ));
    }
    Ok(())
}

impl Catalog {
    /// Read an existing catalog's two files (as extracted from an image).
    pub fn parse(image_digests: &str, descriptions: &str) -> Result<Self> {
        let descs: BTreeMap<String, Description> = if descriptions.trim().is_empty() {
            BTreeMap::new()
        } else {
            serde_yaml::from_str(descriptions).map_err(|e| {
                Error::input(format!(
                    "`descriptions.yaml` is not a map of lines to {{author, description}}: {e}"
                ))
            })?
        };
        let mut c = Catalog::default();
        for raw in image_digests.lines() {
            let line = raw.trim();
            // The factory skips lines without `@` (`extractExtensionList`).
            if line.is_empty() || !line.contains('@') {
                continue;
            }
            check_line(line)?;
            let d = descs.get(line);
            c.add(Entry {
                line: line.to_string(),
                author: d.map(|d| d.author.clone()).unwrap_or_default(),
                description: d.map(|d| d.description.clone()).unwrap_or_default(),
            });
        }
        Ok(c)
    }

    /// Add or replace (by extension name) one entry.
    pub fn add(&mut self, e: Entry) {
        self.entries.insert(e.name(), e);
    }

    /// Merge `ours` over `self`: an extension of the same name is replaced.
    pub fn merged(mut self, ours: Catalog) -> Catalog {
        for (_, e) in ours.entries {
            self.add(e);
        }
        self
    }

    /// `image-digests`: one line per extension, sorted by name, trailing newline.
    pub fn image_digests(&self) -> String {
        self.entries
            .values()
            .map(|e| format!("{}\n", e.line))
            .collect()
    }

    /// `descriptions.yaml`: keyed by the full image-digests line.
    pub fn descriptions_yaml(&self) -> String {
        if self.entries.is_empty() {
            return "{}\n".into();
        }
        let mut m: Vec<(String, GoValue)> = self
            .entries
            .values()
            .map(|e| {
                (
                    e.line.clone(),
                    GoValue::Map(vec![
                        ("author".into(), GoValue::str(&e.author)),
                        ("description".into(), GoValue::str(&e.description)),
                    ]),
                )
            })
            .collect();
        goyaml::sort_map_keys(&mut m);
        goyaml::marshal(&GoValue::Map(m), 2)
    }

    /// The catalog image's filesystem: the two files at the root, mode 0644.
    pub fn tree(&self) -> Tree {
        let mut t = Tree::new();
        t.insert(
            "descriptions.yaml",
            Node::inline(self.descriptions_yaml().into_bytes(), 0o644),
        );
        t.insert(
            "image-digests",
            Node::inline(self.image_digests().into_bytes(), 0o644),
        );
        t
    }
}

/// The catalog entry for a build that went to a registry.
pub fn entry_from_receipt(r: &Receipt, author: &str, description: Option<&str>) -> Result<Entry> {
    let reference =
        r.reference.as_deref().ok_or_else(|| {
            Error::input_hint(
            format!("receipt for `{}` has no registry reference (output `{}`)", r.name, r.output),
            "the factory pulls catalog entries from a registry: build with `--output docker://…`",
        )
        })?;
    let name = reference.split('@').next().unwrap_or(reference);
    let line = if strip_tag(name) == name {
        format!("{name}:{}@{}", r.version, r.digest)
    } else {
        format!("{name}@{}", r.digest)
    };
    check_line(&line)?;
    Ok(Entry {
        line,
        author: author.to_string(),
        description: description
            .map(str::to_string)
            .unwrap_or_else(|| format!("{} {} system extension", r.name, r.version)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", std::iter::repeat_n(c, 64).collect::<String>())
    }

    #[test]
    fn names_drop_the_registry() {
        assert_eq!(
            extension_name(&format!("ghcr.io/siderolabs/tailscale:1.2@{}", d('a'))),
            "siderolabs/tailscale"
        );
        assert_eq!(
            extension_name(&format!("127.0.0.1:5000/acme/tailscale:1@{}", d('a'))),
            "acme/tailscale"
        );
        assert_eq!(extension_name("acme/tailscale:1"), "acme/tailscale");
    }

    #[test]
    fn merge_replaces_by_name_and_keys_descriptions_by_line() {
        let official = format!(
            "ghcr.io/siderolabs/gvisor:20240101.0@{}\nghcr.io/siderolabs/tailscale:1.98.9@{}\n# comment without digest\n",
            d('1'),
            d('2')
        );
        let descs = format!(
            "ghcr.io/siderolabs/gvisor:20240101.0@{}:\n  author: Sidero Labs\n  description: gVisor\n",
            d('1')
        );
        let base = Catalog::parse(&official, &descs).unwrap();
        assert_eq!(base.entries.len(), 2);
        let mut ours = Catalog::default();
        ours.add(Entry {
            line: format!(
                "registry.example.com/siderolabs/tailscale:1.102.5@{}",
                d('3')
            ),
            author: "acme".into(),
            description: "tailscale 1.102.5".into(),
        });
        let c = base.merged(ours);
        assert_eq!(
            c.image_digests(),
            format!(
                "ghcr.io/siderolabs/gvisor:20240101.0@{}\nregistry.example.com/siderolabs/tailscale:1.102.5@{}\n",
                d('1'),
                d('3')
            )
        );
        let y = c.descriptions_yaml();
        let parsed: BTreeMap<String, BTreeMap<String, String>> = serde_yaml::from_str(&y).unwrap();
        for line in c.image_digests().lines() {
            assert!(parsed.contains_key(line), "{y}");
        }
        assert_eq!(
            parsed[&format!("ghcr.io/siderolabs/gvisor:20240101.0@{}", d('1'))]["author"],
            "Sidero Labs"
        );
        let t = c.tree();
        assert_eq!(
            t.children("").map(|(n, _)| n).collect::<Vec<_>>(),
            vec!["descriptions.yaml", "image-digests"]
        );
        assert_eq!(t.get("image-digests").unwrap().mode, 0o644);
    }

    #[test]
    fn receipts_become_lines() {
        let r = Receipt {
            name: "tailscale".into(),
            version: "1.102.5".into(),
            output: "docker://127.0.0.1:5000/acme/tailscale:1.102.5".into(),
            reference: Some(format!("127.0.0.1:5000/acme/tailscale:1.102.5@{}", d('c'))),
            digest: d('c'),
            platforms: vec![],
        };
        let e = entry_from_receipt(&r, "acme", None).unwrap();
        assert_eq!(
            e.line,
            format!("127.0.0.1:5000/acme/tailscale:1.102.5@{}", d('c'))
        );
        assert_eq!(e.name(), "acme/tailscale");
        let mut tar = r.clone();
        tar.reference = None;
        tar.output = "tar:/x.tar".into();
        assert!(entry_from_receipt(&tar, "acme", None).is_err());
    }
}
