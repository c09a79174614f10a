//! A custom extensions catalog: the image a self-hosted Image Factory reads to resolve
//! extension names (reference §1.3, §1.5). Its filesystem holds two files at the root:
//!
//! * `image-digests` — one line per extension, `registry/repo:tag@sha256:<index digest>`; the
//!   factory skips lines without `@`, names each extension by the line's repository path
//!   (`acme/tailscale`) and pulls it from its own core registry (the host in the line is
//!   discarded), by digest.
//! * `descriptions.yaml` — a map keyed by those full lines, values `{author, description}`.
//!
//! The factory (`image-factory:internal/artifacts/versions.go`, `extractExtensionList`, at
//! 26b95ca) trims each line, cuts it at the first `@` and parses the part before it with
//! go-containerregistry's `name.NewTag` (default, non-strict options); one line it cannot parse
//! makes the whole catalog fail to load. [`parse_line`] applies the same rules
//! (`go-containerregistry:pkg/name/{tag,repository,registry,check}.go` at v0.21.9-11-g3f4ff3c):
//! a first component with `.` or `:` or equal to `localhost` is the registry and must be a valid
//! URI authority; the repository is 1–255 characters of `a-z0-9_-./` (so never upper case); a
//! tag is 1–128 characters of `A-Za-z0-9_-.`. With no registry the name is Docker Hub's
//! (`index.docker.io`, `docker.io` being its alias) and a one-component repository gets the
//! implicit `library/` namespace, so `tailscale:1.0@…` is the extension `library/tailscale`. We
//! also require what the factory needs to pull the image: a tag and a `sha256` digest.
//!
//! Everything here is a pure function of its inputs; packing the tree into an image is the
//! image writer's job.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::receipt::{is_sha256_digest, strip_tag, Receipt};
use crate::error::{Error, Result};
use crate::goyaml::{self, GoValue};
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

/// `ghcr.io/siderolabs/tailscale:1.2@sha256:…` → `siderolabs/tailscale`; a Docker Hub name
/// gets its implicit namespace (`tailscale:1` → `library/tailscale`), as `RepositoryStr` does.
pub fn extension_name(line: &str) -> String {
    let tagged = line.split_once('@').map(|(t, _)| t).unwrap_or(line);
    match parse_tagged(tagged) {
        Ok(r) => r.repository,
        Err(_) => {
            let repo = strip_tag(tagged);
            match repo.split_once('/') {
                Some((host, rest)) if is_registry_part(host) => rest.to_string(),
                _ => repo.to_string(),
            }
        }
    }
}

/// A catalog line as go-containerregistry reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRef {
    /// `index.docker.io` when the line names none (or `docker.io`).
    pub registry: String,
    /// `RepositoryStr`: with `library/` for a one-component Docker Hub name.
    pub repository: String,
    pub tag: String,
    pub digest: String,
}

const DEFAULT_REGISTRY: &str = "index.docker.io";
const REPOSITORY_CHARS: &str = "abcdefghijklmnopqrstuvwxyz0123456789_-./";
const TAG_CHARS: &str = "abcdefghijklmnopqrstuvwxyz0123456789_-.ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// `NewRepository`'s split: the first component is a registry when it is `localhost` or has a
/// `.` or `:`.
fn is_registry_part(s: &str) -> bool {
    s == "localhost" || s.contains(['.', ':'])
}

/// `checkElement`: a length in characters and an alphabet.
fn check_element(
    what: &str,
    element: &str,
    allowed: &str,
    min: usize,
    max: usize,
) -> std::result::Result<(), String> {
    let n = element.chars().count();
    if n < min || n > max {
        return Err(format!(
            "{what} `{element}` must be between {min} and {max} characters long"
        ));
    }
    if let Some(bad) = element.chars().find(|c| !allowed.contains(*c)) {
        return Err(format!(
            "{what} `{element}` has `{bad}`; it can only contain the characters `{allowed}`"
        ));
    }
    Ok(())
}

/// `checkRegistry`: `url.Parse("//" + name)` must give back `name` as the host, so only the
/// characters Go's URL parser allows in a host, an optional `:port` of digits, and an IPv6
/// literal in brackets.
fn check_registry(name: &str) -> std::result::Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "registry `{name}` is not a valid RFC 3986 URI authority ({why})"
        ))
    };
    let (host, port) = if let Some(rest) = name.strip_prefix('[') {
        match rest.rfind(']') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => return bad("missing `]`"),
        }
    } else {
        match name.rfind(':') {
            Some(i) => (&name[..i], &name[i..]),
            None => (name, ""),
        }
    };
    let digits = |p: &str| p.chars().all(|c| c.is_ascii_digit());
    let port_ok = port.is_empty() || port.strip_prefix(':').is_some_and(digits);
    if !port_ok {
        return bad("the port is not a number");
    }
    let allowed = |c: char| {
        !c.is_ascii() || c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:[]<>\"".contains(c)
    };
    if let Some(c) = host.chars().find(|c| !allowed(*c)) {
        return bad(&format!("`{c}` is not allowed in a host"));
    }
    Ok(())
}

/// `name.NewTag` with default options, plus our requirement of an explicit tag.
fn parse_tagged(tagged: &str) -> std::result::Result<LineRef, String> {
    let (base, tag) = match tagged.rsplit_once(':') {
        Some((base, tag)) if !tag.contains('/') => (base, tag),
        _ => return Err("no tag".into()),
    };
    if tag.is_empty() {
        return Err("no tag name after the colon".into());
    }
    check_element("tag", tag, TAG_CHARS, 1, 128)?;
    if base.is_empty() {
        return Err("no repository name".into());
    }
    let (registry, repo) = match base.split_once('/') {
        Some((first, rest)) if is_registry_part(first) => (first, rest),
        _ => ("", base),
    };
    check_element("repository", repo, REPOSITORY_CHARS, 1, 255)?;
    check_registry(registry)?;
    let registry = match registry {
        "" | "docker.io" => DEFAULT_REGISTRY,
        r => r,
    };
    let repository = if registry == DEFAULT_REGISTRY && !repo.contains('/') {
        format!("library/{repo}")
    } else {
        repo.to_string()
    };
    Ok(LineRef {
        registry: registry.to_string(),
        repository,
        tag: tag.to_string(),
        digest: String::new(),
    })
}

/// Parse a catalog line the way the factory does, refusing what it (or the pull by digest
/// that follows) would refuse; the error says which rule.
pub fn parse_line(line: &str) -> std::result::Result<LineRef, String> {
    if line.contains(char::is_whitespace) {
        return Err("white space in the line".into());
    }
    let (tagged, digest) = line
        .split_once('@')
        .ok_or_else(|| "no `@sha256:` digest".to_string())?;
    if !is_sha256_digest(digest) {
        return Err(format!(
            "digest `{digest}` is not `sha256:` and 64 lower-case hex digits"
        ));
    }
    let mut r = parse_tagged(tagged)?;
    r.digest = digest.to_string();
    Ok(r)
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

/// Check a catalog line: a tagged repository go-containerregistry can parse, pinned by a sha256
/// digest.
pub fn check_line(line: &str) -> Result<()> {
    check_line_at(line, None)
}

fn check_line_at(line: &str, at: Option<usize>) -> Result<()> {
    parse_line(line).map(|_| ()).map_err(|rule| {
        let place = match at {
            Some(n) => format!("`image-digests` line {n}: "),
            None => String::new(),
        };
        Error::input_hint(
            format!("{place}catalog line `{line}`: {rule}"),
            "lines look like `registry/repo:tag@sha256:<digest>`, repository in lower case; the Image Factory parses them with go-containerregistry and refuses the whole catalog over one bad line",
        )
    })
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
        for (n, raw) in image_digests.lines().enumerate() {
            let line = raw.trim();
            // The factory skips lines without `@` (`extractExtensionList`).
            if line.is_empty() || !line.contains('@') {
                continue;
            }
            check_line_at(line, Some(n + 1))?;
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
    fn lines_follow_go_containerregistry() {
        let ok = |l: &str| parse_line(&format!("{l}@{}", d('a'))).unwrap();
        let r = ok("tailscale:1.0");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_str()),
            ("index.docker.io", "library/tailscale", "1.0")
        );
        assert_eq!(ok("docker.io/tailscale:1").repository, "library/tailscale");
        assert_eq!(
            ok("docker.io/acme/tailscale:1").repository,
            "acme/tailscale"
        );
        assert_eq!(ok("ghcr.io/tailscale:1").repository, "tailscale");
        assert_eq!(ok("localhost/x:1").registry, "localhost");
        assert_eq!(ok("[::1]:5000/a/b:V1_x-y.z").tag, "V1_x-y.z");
        assert_eq!(
            extension_name(&format!("tailscale:1.0@{}", d('a'))),
            "library/tailscale"
        );
        let bad = |l: &str| parse_line(&format!("{l}@{}", d('a'))).unwrap_err();
        assert!(bad("registry.example.com/Acme/Tail:1.0").contains("`Acme/Tail` has `A`"));
        assert!(bad("Acme/tail:1").contains("repository"));
        assert!(bad("r.example.com/a b:1").contains("white space"));
        assert!(bad("r.example.com/a:").contains("after the colon"));
        assert!(bad("r.example.com/a:1+2").contains("tag"));
        assert!(bad(&format!("r.example.com/a:{}", "t".repeat(129))).contains("128"));
        assert!(bad("r.example.com/a").contains("no tag"));
        assert!(bad("r.example.com:x/a:1").contains("port"));
        assert!(bad("r{x}.com/a:1").contains("host"));
        assert!(bad("r.example.com/a@b:1").contains("digest"));
        assert!(parse_line("r.example.com/a:1@sha256:ABC")
            .unwrap_err()
            .contains("digest"));
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
