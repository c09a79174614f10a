//! The extension's SPDX 2.3 JSON SBOM, installed at `rootfs/usr/local/share/spdx/<name>.spdx.json`
//! where Talos reads extension SBOMs. Deterministic: `created` is the build epoch, packages are
//! in a fixed order with stable SPDX ids, and the document namespace is derived from the
//! document's own content.
//!
//! Talos turns every package of the document into an `SBOMItem` resource keyed by the package
//! name, the last package of a name setting its version
//! (`internal/app/machined/pkg/controllers/runtime/sbom_item.go`, siderolabs/talos
//! v1.14.0-rc.1). So exactly one package carries the extension's name and version; sources are
//! named after their image repository (or `<source>-source`), and a payload package that happens
//! to share the extension's name is renamed. The payload is described as what it is: the
//! Alpine packages of each container root (`apk`) and the Go modules of each Go binary
//! (`gobin`), found by one scan of the assembled tree (`scan`).
//!
//! Payload packages keep their own names, as SPDX and scanners expect. Talos reads extension
//! SBOMs after its own, so a payload package named like one of Talos's own (its SBOM lists
//! `iptables` and `zlib`, `Dockerfile` at v1.14.0-rc.1) replaces that item's version in
//! `talosctl get sbomitems`.

pub mod apk;
pub mod gobin;
pub mod scan;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::error::Result;
use crate::image::{rfc3339, to_json};
use crate::oci::Digest;
use crate::registry::Reference;

pub use scan::{scan, Contents};

pub fn path_for(name: &str) -> String {
    format!("rootfs/usr/local/share/spdx/{name}.spdx.json")
}

/// A source as the SBOM records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRecord {
    pub name: String,
    /// The registry reference the image is recorded as, when there is one: the reference it
    /// was pulled by, or the definition's pinned reference when a local copy is that image.
    /// Local paths are never recorded (they name the build host, not the image).
    pub image: Option<Reference>,
    /// The platform image's manifest digest, or the content digest of a directory tree.
    pub digest: Digest,
}

pub struct Input<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub license: Option<&'a str>,
    pub cpe: Option<String>,
    pub homepage: Option<&'a str>,
    pub supplier: Option<&'a str>,
    pub platform: &'a str,
    pub epoch: u64,
    pub sources: &'a [SourceRecord],
    pub contents: &'a Contents,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    spdx_version: &'static str,
    data_license: &'static str,
    #[serde(rename = "SPDXID")]
    spdx_id: &'static str,
    name: String,
    document_namespace: String,
    creation_info: CreationInfo,
    packages: Vec<Package>,
    relationships: Vec<Relationship>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreationInfo {
    created: String,
    creators: Vec<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Package {
    name: String,
    #[serde(rename = "SPDXID")]
    spdx_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_info: Option<String>,
    supplier: String,
    download_location: &'static str,
    files_analyzed: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    checksums: Vec<Checksum>,
    #[serde(skip_serializing_if = "Option::is_none")]
    homepage: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_info: Option<String>,
    license_concluded: String,
    license_declared: String,
    copyright_text: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    external_refs: Vec<ExternalRef>,
}

impl Package {
    /// A package about which nothing is asserted but its name and version.
    fn bare(name: String, spdx_id: String, version: Option<String>) -> Self {
        Package {
            name,
            spdx_id,
            version_info: version,
            supplier: "NOASSERTION".into(),
            download_location: "NOASSERTION",
            files_analyzed: false,
            checksums: Vec::new(),
            homepage: None,
            source_info: None,
            license_concluded: "NOASSERTION".into(),
            license_declared: "NOASSERTION".into(),
            copyright_text: "NOASSERTION",
            comment: None,
            external_refs: Vec::new(),
        }
    }

    fn purl(mut self, locator: String) -> Self {
        self.external_refs.push(ExternalRef {
            reference_category: "PACKAGE-MANAGER",
            reference_type: "purl",
            reference_locator: locator,
        });
        self
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Checksum {
    algorithm: &'static str,
    checksum_value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExternalRef {
    reference_category: &'static str,
    reference_type: &'static str,
    reference_locator: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Relationship {
    spdx_element_id: String,
    relationship_type: &'static str,
    related_spdx_element: String,
}

/// An SPDX id fragment: letters, digits, `.` and `-` (SPDX 2.3 §7.2).
fn spdx_ref(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Percent-encode everything but unreserved characters and those in `keep` (package-url
/// specification, "Character encoding").
fn pct(s: &str, keep: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let c = b as char;
        if c.is_ascii_alphanumeric() || "-._~".contains(c) || keep.contains(c) {
            out.push(c);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A license field as SPDX takes it: an expression of license ids, `AND`, `OR`, `WITH` and
/// parentheses. What cannot be one (Alpine's `custom` and `custom:…`, free text) is not
/// asserted; ids are not checked against the SPDX license list.
fn license_expression(s: &str) -> Option<String> {
    let id = |t: &str| {
        t.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.+".contains(c))
            && t.starts_with(|c: char| c.is_ascii_alphabetic())
            && !t.eq_ignore_ascii_case("custom")
    };
    let ok = !s.trim().is_empty()
        && s.split(|c: char| c.is_whitespace() || c == '(' || c == ')')
            .filter(|t| !t.is_empty())
            .all(|t| {
                id(t)
                    || t.strip_prefix("DocumentRef-")
                        .is_some_and(|r| r.split(':').all(id))
            });
    ok.then(|| s.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Hands out SPDX ids, each once, in the order asked.
#[derive(Default)]
struct Ids(BTreeSet<String>);

impl Ids {
    fn take(&mut self, kind: &str, parts: &[&str]) -> String {
        let base = format!("SPDXRef-{kind}-{}", spdx_ref(&parts.join("-")));
        let mut id = base.clone();
        let mut n = 1;
        while !self.0.insert(id.clone()) {
            n += 1;
            id = format!("{base}-{n}");
        }
        id
    }
}

/// The name a payload package is listed under: its own, unless that is the extension's.
fn distinct(name: &str, extension: &str, kind: &str) -> String {
    if name == extension {
        format!("{name} ({kind})")
    } else {
        name.to_string()
    }
}

/// A sorted, comma-separated list of backquoted paths.
fn paths(set: &BTreeSet<String>) -> String {
    set.iter()
        .map(|p| format!("`{p}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Render the SBOM.
pub fn render(input: &Input<'_>) -> Result<Vec<u8>> {
    let mut ids = Ids::default();
    let license = input.license.unwrap_or("NOASSERTION").to_string();
    let pkg_id = ids.take("Package", &[input.name]);
    let mut top = Package::bare(
        input.name.to_string(),
        pkg_id.clone(),
        Some(input.version.to_string()),
    );
    top.supplier = input
        .supplier
        .map(|s| format!("Organization: {s}"))
        .unwrap_or_else(|| "NOASSERTION".into());
    top.homepage = input.homepage.map(str::to_string);
    top.license_concluded = license.clone();
    top.license_declared = license;
    top.comment = Some(format!("Talos system extension for {}", input.platform));
    top.external_refs = input
        .cpe
        .iter()
        .map(|c| ExternalRef {
            reference_category: "SECURITY",
            reference_type: "cpe23Type",
            reference_locator: c.clone(),
        })
        .collect();
    let mut packages = vec![top];
    let mut relationships = vec![Relationship {
        spdx_element_id: "SPDXRef-DOCUMENT".into(),
        relationship_type: "DESCRIBES",
        related_spdx_element: pkg_id.clone(),
    }];
    let mut relate = |from: &str, kind: &'static str, to: &str| {
        relationships.push(Relationship {
            spdx_element_id: from.to_string(),
            relationship_type: kind,
            related_spdx_element: to.to_string(),
        })
    };

    for s in input.sources {
        let id = ids.take("Source", &[&s.name]);
        let mut name = match &s.image {
            Some(r) => r.name(),
            None => format!("{}-source", s.name),
        };
        while name == input.name {
            name.push_str("-source");
        }
        let mut p = Package::bare(name, id.clone(), None);
        p.checksums.push(Checksum {
            algorithm: "SHA256",
            checksum_value: s.digest.hex().to_string(),
        });
        p.comment = Some(match &s.image {
            Some(r) => format!(
                "source `{}` for {}: image `{r}`, platform manifest {}",
                s.name, input.platform, s.digest
            ),
            None => format!("source `{}` for {}: {}", s.name, input.platform, s.digest),
        });
        if let Some(r) = &s.image {
            p.version_info = r.tag.clone();
            if let Some(pin) = &r.digest {
                // Package-url `oci` type: the name is the last path segment of the repository.
                let last = r.repository.rsplit('/').next().unwrap_or(&r.repository);
                let mut purl = format!(
                    "pkg:oci/{}@{}?repository_url={}",
                    pct(last, ""),
                    pct(pin, ""),
                    pct(&r.name(), "/")
                );
                if let Some(tag) = &r.tag {
                    purl.push_str(&format!("&tag={}", pct(tag, "")));
                }
                p = p.purl(purl);
            }
        }
        packages.push(p);
        relate(&pkg_id, "GENERATED_FROM", &id);
    }

    // Alpine packages, one per (name, version, arch, release), naming the roots they are in.
    let mut apks: BTreeMap<ApkKey, (&apk::ApkPackage, BTreeSet<String>)> = BTreeMap::new();
    for root in &input.contents.apk {
        for a in &root.packages {
            let key = (
                a.name.as_str(),
                a.version.as_str(),
                a.arch.as_deref(),
                root.release.as_deref(),
            );
            apks.entry(key)
                .or_insert_with(|| (a, BTreeSet::new()))
                .1
                .insert(root.root.clone());
        }
    }
    for ((name, version, arch, release), (a, roots)) in apks {
        let id = ids.take("Apk", &[name, version]);
        let mut purl = format!("pkg:apk/alpine/{}@{}", pct(name, ""), pct(version, ""));
        let mut q = Vec::new();
        if let Some(arch) = arch {
            q.push(format!("arch={}", pct(arch, "")));
        }
        if let Some(r) = release {
            q.push(format!("distro=alpine-{}", pct(r, "")));
        }
        if !q.is_empty() {
            purl.push('?');
            purl.push_str(&q.join("&"));
        }
        let mut p = Package::bare(
            distinct(name, input.name, "apk"),
            id.clone(),
            Some(version.to_string()),
        )
        .purl(purl);
        if let Some(l) = a.license.as_deref().and_then(license_expression) {
            p.license_declared = l;
        }
        p.source_info = a
            .origin
            .as_ref()
            .map(|o| format!("built from the Alpine package origin `{o}`"));
        p.comment = Some(format!("Alpine package installed in {}", paths(&roots)));
        packages.push(p);
        relate(&pkg_id, "CONTAINS", &id);
    }

    // Go modules, one per (path, version), each naming the binaries it is in.
    let mut mods: BTreeMap<GoKey, GoModule> = BTreeMap::new();
    for bin in &input.contents.go {
        let Some(main) = &bin.info.main else {
            tracing::debug!(
                "`{}` was built outside module mode; it names no modules for the SBOM",
                bin.path
            );
            continue;
        };
        let main_key = effective(main);
        let mut dep_keys = Vec::new();
        for d in &bin.info.deps {
            let k = effective(d);
            dep_keys.push(k);
            let g = go_entry(&mut mods, k);
            g.dep_of.insert(bin.path.clone());
            if let Some(r) = &d.replace {
                g.replaces.insert(match &d.version {
                    Some(v) => format!("`{} {v}`", d.path),
                    None => format!("`{}`", d.path),
                });
                if is_local(&r.path) {
                    g.replaces
                        .insert(format!("(from the directory `{}`)", r.path));
                }
            }
        }
        let g = go_entry(&mut mods, main_key);
        g.main_of.insert(format!(
            "`{}` (`{}`, {})",
            bin.path,
            bin.info.path.as_deref().unwrap_or("?"),
            bin.info.go_version
        ));
        g.deps.extend(dep_keys);
    }
    let mut go_ids: BTreeMap<(&str, Option<&str>), String> = BTreeMap::new();
    for (&(path, version), g) in &mods {
        let id = ids.take("Go", &[path, version.unwrap_or("")]);
        go_ids.insert((path, version), id.clone());
        let mut purl = format!("pkg:golang/{}", pct(path, "/"));
        if let Some(v) = version.filter(|v| *v != "(devel)") {
            purl.push('@');
            purl.push_str(&pct(v, ""));
        }
        let mut p = Package::bare(
            distinct(path, input.name, "go module"),
            id,
            version.map(str::to_string),
        )
        .purl(purl);
        let mut notes = Vec::new();
        if !g.main_of.is_empty() {
            let mains: Vec<&str> = g.main_of.iter().map(String::as_str).collect();
            notes.push(format!("Go main module of {}", mains.join(", ")));
        }
        if !g.dep_of.is_empty() {
            notes.push(format!("Go module compiled into {}", paths(&g.dep_of)));
        }
        if !g.replaces.is_empty() {
            notes.push(format!(
                "replacing {}",
                g.replaces.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        p.comment = Some(notes.join("; "));
        packages.push(p);
    }
    for (k, g) in &mods {
        let id = &go_ids[k];
        relate(&pkg_id, "CONTAINS", id);
        for d in &g.deps {
            relate(id, "DEPENDS_ON", &go_ids[d]);
        }
    }

    let name = format!("{}-{}", input.name, input.version);
    let mut doc = Document {
        spdx_version: "SPDX-2.3",
        data_license: "CC0-1.0",
        spdx_id: "SPDXRef-DOCUMENT",
        name: name.clone(),
        document_namespace: String::new(),
        creation_info: CreationInfo {
            created: rfc3339(input.epoch),
            creators: vec!["Tool: talext"],
        },
        packages,
        relationships,
    };
    // The namespace must be unique per document: derive it from everything else in it.
    let digest = Digest::of(&to_json(&doc)?);
    doc.document_namespace = format!(
        "https://spdx.org/spdxdocs/{}-{}",
        spdx_ref(&name),
        &digest.hex()[..32]
    );
    let mut out =
        serde_json::to_vec_pretty(&doc).map_err(|e| crate::Error::internal(e.to_string()))?;
    out.push(b'\n');
    Ok(out)
}

/// An Alpine package's identity: name, version, architecture, Alpine release.
type ApkKey<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a str>);

type GoKey<'a> = (&'a str, Option<&'a str>);

/// What the SBOM says about one Go module.
#[derive(Default)]
struct GoModule<'a> {
    /// The binaries it is the main module of (with their main package and Go version).
    main_of: BTreeSet<String>,
    /// The binaries it is a dependency of.
    dep_of: BTreeSet<String>,
    /// The modules it replaces.
    replaces: BTreeSet<String>,
    /// As a main module, the modules its binaries depend on.
    deps: BTreeSet<GoKey<'a>>,
}

fn go_entry<'m, 'a>(
    mods: &'m mut BTreeMap<GoKey<'a>, GoModule<'a>>,
    k: GoKey<'a>,
) -> &'m mut GoModule<'a> {
    mods.entry(k).or_default()
}

/// A replacement by a directory (`=> ../x`) rather than by another module version.
fn is_local(path: &str) -> bool {
    path.starts_with("./") || path.starts_with("../") || path.starts_with('/')
}

/// The module whose code a binary holds: the replacement when there is one, except that a
/// directory replacement keeps the replaced module's path (a directory is not a module).
fn effective(m: &gobin::Module) -> (&str, Option<&str>) {
    match &m.replace {
        Some(r) if is_local(&r.path) => (m.path.as_str(), None),
        Some(r) => (r.path.as_str(), r.version.as_deref()),
        None => (m.path.as_str(), m.version.as_deref()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIN: &str = "sha256:c507f3a2a6ab1cabd8d809b98edeb41edbd5c3fb6ad9632ffd098b4c7d0b4065";

    fn input<'a>(sources: &'a [SourceRecord], contents: &'a Contents) -> Input<'a> {
        Input {
            name: "tailscale",
            version: "1.102.5",
            license: Some("BSD-3-Clause"),
            cpe: Some("cpe:2.3:a:tailscale:tailscale:1.102.5:*:*:*:*:*:*:*".into()),
            homepage: None,
            supplier: None,
            platform: "linux/amd64",
            epoch: 0,
            sources,
            contents,
        }
    }

    fn contents() -> Contents {
        let info = gobin::parse_modinfo(gobin::tests::MODINFO).unwrap();
        let mut cb = info.clone();
        cb.path = Some("tailscale.com/cmd/containerboot".into());
        cb.deps.truncate(1);
        Contents {
            apk: vec![scan::ApkRoot {
                root: "/usr/local/lib/containers/tailscale".into(),
                release: Some("3.22.1".into()),
                packages: apk::parse(
                    "db",
                    b"P:tailscale\nV:1.0-r0\nA:x86_64\nL:custom\n\nP:musl\nV:1.2.5-r10\nA:x86_64\nL:MIT\no:musl\n",
                )
                .unwrap(),
            }],
            go: vec![
                scan::GoBinary {
                    path: "/c/usr/local/bin/tailscaled".into(),
                    info: gobin::BuildInfo {
                        go_version: "go1.19.8".into(),
                        ..info
                    },
                },
                scan::GoBinary {
                    path: "/c/usr/local/bin/containerboot".into(),
                    info: gobin::BuildInfo {
                        go_version: "go1.19.8".into(),
                        ..cb
                    },
                },
            ],
        }
    }

    fn by_name<'v>(v: &'v serde_json::Value, name: &str) -> Vec<&'v serde_json::Value> {
        v["packages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["name"] == name)
            .collect()
    }

    #[test]
    fn deterministic_and_content_addressed() {
        let sources = vec![SourceRecord {
            name: "tailscale".into(),
            image: Some(
                Reference::parse(&format!("docker.io/tailscale/tailscale:v1@{PIN}")).unwrap(),
            ),
            digest: Digest::of(b"x"),
        }];
        let c = contents();
        let a = render(&input(&sources, &c)).unwrap();
        assert_eq!(a, render(&input(&sources, &c)).unwrap());
        let v: serde_json::Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(v["spdxVersion"], "SPDX-2.3");
        assert_eq!(v["creationInfo"]["created"], "1970-01-01T00:00:00Z");
        assert_eq!(v["packages"][0]["licenseDeclared"], "BSD-3-Clause");
        let other = Input {
            version: "1.102.6",
            ..input(&sources, &c)
        };
        let b: serde_json::Value = serde_json::from_slice(&render(&other).unwrap()).unwrap();
        assert_ne!(v["documentNamespace"], b["documentNamespace"]);
    }

    #[test]
    fn one_package_carries_the_extension_name_and_version() {
        let sources = vec![
            SourceRecord {
                name: "tailscale".into(),
                image: Some(
                    Reference::parse(&format!("docker.io/tailscale/tailscale:v1.102.5@{PIN}"))
                        .unwrap(),
                ),
                digest: Digest::of(b"x"),
            },
            SourceRecord {
                name: "extra".into(),
                image: None,
                digest: Digest::of(b"y"),
            },
        ];
        let c = contents();
        let v: serde_json::Value =
            serde_json::from_slice(&render(&input(&sources, &c)).unwrap()).unwrap();
        let named = by_name(&v, "tailscale");
        assert_eq!(named.len(), 1, "{v:#}");
        assert_eq!(named[0]["versionInfo"], "1.102.5");
        let src = by_name(&v, "docker.io/tailscale/tailscale");
        assert_eq!(src[0]["versionInfo"], "v1.102.5");
        assert_eq!(
            src[0]["checksums"][0]["checksumValue"],
            Digest::of(b"x").hex()
        );
        assert_eq!(
            src[0]["externalRefs"][0]["referenceLocator"],
            format!("pkg:oci/tailscale@sha256%3A{}?repository_url=docker.io/tailscale/tailscale&tag=v1.102.5", &PIN[7..])
        );
        assert_eq!(by_name(&v, "extra-source").len(), 1);
        // The apk package that shares the extension's name is renamed; `custom` is no license.
        let apk = by_name(&v, "tailscale (apk)");
        assert_eq!(apk[0]["licenseDeclared"], "NOASSERTION");
        let musl = by_name(&v, "musl");
        assert_eq!(
            musl[0]["externalRefs"][0]["referenceLocator"],
            "pkg:apk/alpine/musl@1.2.5-r10?arch=x86_64&distro=alpine-3.22.1"
        );
        assert_eq!(musl[0]["licenseDeclared"], "MIT");
    }

    #[test]
    fn go_modules_are_shared_and_replacements_honoured() {
        let c = contents();
        let v: serde_json::Value =
            serde_json::from_slice(&render(&input(&[], &c)).unwrap()).unwrap();
        let main = by_name(&v, "tailscale.com");
        assert_eq!(main.len(), 1);
        assert_eq!(main[0]["versionInfo"], "(devel)");
        assert_eq!(
            main[0]["externalRefs"][0]["referenceLocator"],
            "pkg:golang/tailscale.com"
        );
        assert!(by_name(&v, "golang.org/x/crypto").is_empty());
        let x = by_name(&v, "github.com/tailscale/golang-x-crypto");
        assert_eq!(
            x[0]["externalRefs"][0]["referenceLocator"],
            "pkg:golang/github.com/tailscale/golang-x-crypto@v0.0.0-20250404221719-a5573b049869"
        );
        assert!(x[0]["comment"]
            .as_str()
            .unwrap()
            .contains("replacing `golang.org/x/crypto v0.41.0`"));
        let wg = by_name(&v, "github.com/tailscale/wireguard-go");
        assert!(wg[0]["comment"]
            .as_str()
            .unwrap()
            .contains("`/c/usr/local/bin/containerboot`, `/c/usr/local/bin/tailscaled`"));
        let main_id = main[0]["SPDXID"].as_str().unwrap();
        let deps = v["relationships"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["spdxElementId"] == main_id && r["relationshipType"] == "DEPENDS_ON")
            .count();
        assert_eq!(deps, 3);
        // SPDX ids are unique.
        let ids: BTreeSet<_> = v["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["SPDXID"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), v["packages"].as_array().unwrap().len());
    }
}
