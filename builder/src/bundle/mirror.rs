//! `talext bundle push --mirror-config FILE`: the Talos configuration that makes nodes pull
//! every upstream registry a bundle names from the site registry it was pushed into.
//!
//! The form comes from the release table (`crate::release::config`, `Forms::registry_mirrors`
//! and `registry_tls`):
//!
//! - Talos v1.12 and later: one `RegistryMirrorConfig` document per upstream registry (`name`
//!   = the upstream host, `endpoints[].url`, `endpoints[].overridePath`, `skipFallback`;
//!   `pkg/machinery/config/types/cri/registry_mirror.go` at v1.12.0 and v1.14.0-rc.1) and, with
//!   `--ca-file` over TLS, one `RegistryTLSConfig` (`name` = the site registry `host:port`,
//!   `ca` = the PEM text; `cri/registry_tls.go` at the same tags);
//! - before: a v1alpha1 patch of `.machine.registries.mirrors.<upstream>` (`endpoints`,
//!   `overridePath` per mirror, `skipFallback` from v1.9) and
//!   `.machine.registries.config.<host:port>.tls.ca`, a `Base64Bytes` field, so the PEM is
//!   base64-encoded (`pkg/machinery/config/types/v1alpha1/v1alpha1_types.go`).
//!
//! `push` keeps repository paths and drops the upstream host (`REGISTRY/PREFIX/<repository>`),
//! so every upstream mirrors to the same endpoint. Without a prefix the endpoint is the
//! registry itself and containerd appends `/v2`; under a prefix it is `…/v2/PREFIX` with
//! `overridePath: true`, which makes containerd take the path as the API root. The scheme is
//! the one the registry answered `push` on. `skipFallback: true` is set where the release has
//! it: an air-gapped node has no upstream to fall back to, and trying one only delays the pull.

use std::path::Path;

use base64::Engine as _;

use super::Target;
use crate::error::{Error, IoContext, Result};
use crate::goyaml::{self, GoValue};
use crate::registry::transport::Scheme;
use crate::release::config::{self, Form, SKIP_FALLBACK_SINCE};
use crate::release::Minor;

/// The site registry the images were pushed into.
#[derive(Debug, Clone)]
pub struct Site {
    pub target: Target,
    pub scheme: Scheme,
    /// PEM text of the CA the nodes must trust for it (`--ca-file`), over TLS only.
    pub ca: Option<String>,
}

impl Site {
    /// The mirror endpoint nodes pull from, and whether it needs `overridePath`.
    pub fn endpoint(&self) -> (String, bool) {
        let scheme = self.scheme.as_str();
        if self.target.prefix.is_empty() {
            (format!("{scheme}://{}", self.target.registry), false)
        } else {
            (
                format!(
                    "{scheme}://{}/v2/{}",
                    self.target.registry, self.target.prefix
                ),
                true,
            )
        }
    }
}

/// Read the PEM CA bundle of `--ca-file` (several files are concatenated).
pub fn read_ca(files: &[std::path::PathBuf]) -> Result<Option<String>> {
    let mut out = String::new();
    for f in files {
        let text = std::fs::read_to_string(f).at("reading", f)?;
        if !text.contains("-----BEGIN CERTIFICATE-----") {
            return Err(Error::input(format!(
                "`{}` holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
                f.display()
            )));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    Ok((!out.is_empty()).then_some(out))
}

/// The Talos release `version` names, checked against the release table.
pub fn release_of(version: &str) -> Result<Minor> {
    let minor = Minor::of(version)
        .ok_or_else(|| Error::input(format!("`{version}` is not a Talos version (`v1.13.0`)")))?;
    if config::release(minor).is_none() {
        return Err(Error::input_hint(
            format!("`{version}` is older than the Talos releases talext knows"),
            "known: v1.7 and later",
        ));
    }
    Ok(minor)
}

/// The mirror documents for `upstreams` (registry hosts such as `docker.io`, sorted and
/// de-duplicated by the caller) on Talos `minor`, with a comment saying how to apply them.
pub fn render(site: &Site, upstreams: &[String], minor: Minor) -> Result<String> {
    let release = config::release(minor)
        .ok_or_else(|| Error::input(format!("Talos {minor} is older than talext knows")))?;
    let upstreams: Vec<&String> = upstreams
        .iter()
        .filter(|u| **u != site.target.registry)
        .collect();
    if upstreams.is_empty() {
        return Err(Error::input(
            "the bundle names no upstream registry to mirror",
        ));
    }
    let (url, override_path) = site.endpoint();
    let ca = match (&site.ca, site.scheme) {
        (Some(ca), Scheme::Https) => Some(ca.as_str()),
        _ => None,
    };
    let skip_fallback = minor >= SKIP_FALLBACK_SINCE;
    let s = |v: &str| GoValue::str(v);
    let mut docs: Vec<GoValue> = Vec::new();
    match release.forms.registry_mirrors.form {
        Form::Document { kind, .. } => {
            for upstream in &upstreams {
                let mut endpoint = vec![("url".to_string(), s(&url))];
                if override_path {
                    endpoint.push(("overridePath".into(), GoValue::Bool(true)));
                }
                let mut d = vec![
                    ("apiVersion".to_string(), s("v1alpha1")),
                    ("kind".into(), s(kind)),
                    ("name".into(), s(upstream)),
                    (
                        "endpoints".into(),
                        GoValue::Seq(vec![GoValue::Map(endpoint)]),
                    ),
                ];
                if skip_fallback {
                    d.push(("skipFallback".into(), GoValue::Bool(true)));
                }
                docs.push(GoValue::Map(d));
            }
        }
        Form::V1Alpha1(path) => {
            let mut mirrors = Vec::new();
            for upstream in &upstreams {
                let mut m = vec![("endpoints".to_string(), GoValue::Seq(vec![s(&url)]))];
                if override_path {
                    m.push(("overridePath".into(), GoValue::Bool(true)));
                }
                if skip_fallback {
                    m.push(("skipFallback".into(), GoValue::Bool(true)));
                }
                mirrors.push((upstream.to_string(), GoValue::Map(m)));
            }
            goyaml::sort_map_keys(&mut mirrors);
            docs.push(nest(path, GoValue::Map(mirrors)));
        }
    }
    if let Some(ca) = ca {
        match release.forms.registry_tls.form {
            Form::Document { kind, .. } => docs.push(GoValue::Map(vec![
                ("apiVersion".to_string(), s("v1alpha1")),
                ("kind".into(), s(kind)),
                ("name".into(), s(&site.target.registry)),
                ("ca".into(), s(ca)),
            ])),
            Form::V1Alpha1(path) => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(ca.as_bytes());
                let tls = GoValue::Map(vec![(
                    "tls".to_string(),
                    GoValue::Map(vec![("ca".to_string(), GoValue::Str(encoded))]),
                )]);
                let config = nest(
                    path,
                    GoValue::Map(vec![(site.target.registry.clone(), tls)]),
                );
                // Both live under `.machine.registries`: one v1alpha1 patch.
                match docs.first_mut() {
                    Some(first) => crate::talos::render::merge(first, config),
                    None => docs.push(config),
                }
            }
        }
    }
    let mut out = format!(
        "# Registry mirrors for Talos {minor}: pull {} from `{}`, written by `talext bundle push`.\n# Apply with `talosctl gen config … --config-patch @FILE` or `talosctl patch machineconfig --patch @FILE`.\n",
        upstreams
            .iter()
            .map(|u| format!("`{u}`"))
            .collect::<Vec<_>>()
            .join(", "),
        url
    );
    for (i, d) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&goyaml::marshal(d, 2));
    }
    Ok(out)
}

/// `value` under the keys of `path`, outermost first.
fn nest(path: &[&str], value: GoValue) -> GoValue {
    path.iter()
        .rev()
        .fold(value, |v, k| GoValue::Map(vec![(k.to_string(), v)]))
}

/// Write the rendered documents to `path` atomically.
pub fn write(path: &Path, text: &str) -> Result<()> {
    crate::image::write_file_atomic(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(target: &str, scheme: Scheme, ca: Option<&str>) -> Site {
        Site {
            target: super::super::target_of(target).unwrap(),
            scheme,
            ca: ca.map(str::to_string),
        }
    }

    fn body(text: &str) -> String {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn documents_from_v1_12() {
        let s = site("reg.io:5000/air", Scheme::Https, Some(PEM));
        let up = ["docker.io".to_string(), "ghcr.io".to_string()];
        let out = render(&s, &up, Minor::new(1, 12)).unwrap();
        assert_eq!(
            body(&out),
            "apiVersion: v1alpha1\nkind: RegistryMirrorConfig\nname: docker.io\nendpoints:\n  - url: https://reg.io:5000/v2/air\n    overridePath: true\nskipFallback: true\n---\napiVersion: v1alpha1\nkind: RegistryMirrorConfig\nname: ghcr.io\nendpoints:\n  - url: https://reg.io:5000/v2/air\n    overridePath: true\nskipFallback: true\n---\napiVersion: v1alpha1\nkind: RegistryTLSConfig\nname: reg.io:5000\nca: |\n  -----BEGIN CERTIFICATE-----\n  MIIB\n  -----END CERTIFICATE-----\n"
        );
    }

    #[test]
    fn v1alpha1_patch_before_v1_12() {
        let s = site("reg.io:5000", Scheme::Https, Some(PEM));
        let up = ["ghcr.io".to_string(), "docker.io".to_string()];
        let out = render(&s, &up, Minor::new(1, 11)).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(PEM);
        assert_eq!(
            body(&out),
            format!("machine:\n  registries:\n    mirrors:\n      docker.io:\n        endpoints:\n          - https://reg.io:5000\n        skipFallback: true\n      ghcr.io:\n        endpoints:\n          - https://reg.io:5000\n        skipFallback: true\n    config:\n      reg.io:5000:\n        tls:\n          ca: {b64}\n")
        );
        // No `skipFallback` before v1.9; no CA over plain HTTP.
        let s = site("reg.io:5000/m", Scheme::Http, Some(PEM));
        let out = render(&s, &up[..1], Minor::new(1, 8)).unwrap();
        assert_eq!(
            body(&out),
            "machine:\n  registries:\n    mirrors:\n      ghcr.io:\n        endpoints:\n          - http://reg.io:5000/v2/m\n        overridePath: true\n"
        );
    }

    #[test]
    fn the_site_itself_is_not_mirrored() {
        let s = site("reg.io:5000", Scheme::Http, None);
        assert!(render(&s, &["reg.io:5000".to_string()], Minor::new(1, 14)).is_err());
        assert!(release_of("v1.6.0").is_err());
        assert!(release_of("latest").is_err());
        assert_eq!(release_of("v1.14.0-rc.1").unwrap(), Minor::new(1, 14));
    }
}
