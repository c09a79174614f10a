//! Image Factory schematics: the document users submit to `POST /schematics`, and the ID the
//! factory gives it, computed offline.
//!
//! The factory decodes the body strictly into its Go struct, re-encodes it with go-yaml v4's
//! `yaml.Marshal` (4-space indent, struct field order, `omitempty`) and names it by the SHA-256 of
//! those bytes (reference §1.2, `image-factory:pkg/schematic/schematic.go`). We do the same:
//! [`Schematic::parse`] is as strict as the factory (unknown keys are errors), and
//! [`Schematic::canonical_yaml`] goes through [`super::goyaml`], our port of go-yaml's emitter.

use std::collections::BTreeSet;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::goyaml::{self, GoValue};
use crate::error::{Error, Result};

/// `schematic.Schematic`: keys in serialisation order `owner`, `overlay`, `customization`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schematic {
    /// Enterprise only; the community factory rejects a non-empty owner.
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub overlay: Overlay,
    #[serde(default)]
    pub customization: Customization,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overlay {
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub name: String,
    /// Free-form options passed to the overlay (`map[string]any`, emitted with sorted keys).
    #[serde(default)]
    pub options: Option<serde_yaml::Mapping>,
}

/// Field order is part of the ID (the factory's struct comment forbids reordering it).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Customization {
    #[serde(default)]
    pub embedded_machine_configuration: String,
    #[serde(default)]
    pub extra_kernel_args: Vec<String>,
    #[serde(default)]
    pub meta: Vec<MetaValue>,
    #[serde(default)]
    pub system_extensions: SystemExtensions,
    /// `auto` (the zero value, omitted), `dual-boot`, `grub` or `sd-boot`.
    #[serde(default)]
    pub bootloader: String,
    #[serde(default)]
    pub secureboot: SecureBoot,
    #[serde(default)]
    pub disk_image: DiskImage,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaValue {
    /// A META tag, 0–255; YAML spellings such as `0xa` are accepted, as by the factory.
    pub key: u8,
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SystemExtensions {
    #[serde(default)]
    pub official_extensions: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecureBoot {
    /// `if-safe` (the zero value, omitted), `off`, `manual` or `force`.
    #[serde(default)]
    pub enroll_keys: String,
    #[serde(default)]
    pub include_well_known_certificates: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DiskImage {
    /// Omitted when 0 (the factory then uses 512).
    #[serde(default)]
    pub sector_size: u32,
}

impl Schematic {
    /// A schematic that only lists official (or catalog) extensions, plus optional kernel args
    /// and META values: what `schematic create` builds.
    pub fn with_extensions(
        extensions: &[String],
        kernel_args: &[String],
        meta: &[(u8, String)],
    ) -> Self {
        Schematic {
            customization: Customization {
                extra_kernel_args: kernel_args.to_vec(),
                meta: meta
                    .iter()
                    .map(|(key, value)| MetaValue {
                        key: *key,
                        value: value.clone(),
                    })
                    .collect(),
                system_extensions: SystemExtensions {
                    official_extensions: extensions.to_vec(),
                },
                ..Customization::default()
            },
            ..Schematic::default()
        }
    }

    /// Decode a schematic as the factory does: YAML or JSON, unknown keys refused.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let schematic: Schematic = if text.trim().is_empty() {
            Schematic::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| {
                let at = e
                    .location()
                    .map(|l| format!("{origin}:{}:{}", l.line(), l.column()))
                    .unwrap_or_else(|| origin.to_string());
                Error::input_hint(
                    format!("{at}: invalid schematic: {e}"),
                    "the Image Factory decodes schematics strictly; see manifests/schematic/ for the accepted keys",
                )
            })?
        };
        schematic.validate()?;
        Ok(schematic)
    }

    /// The checks the factory makes before it stores a schematic.
    pub fn validate(&self) -> Result<()> {
        let c = &self.customization;
        if !matches!(
            c.bootloader.as_str(),
            "" | "auto" | "dual-boot" | "grub" | "sd-boot"
        ) {
            return Err(Error::input(format!(
                "unknown bootloader `{}` (expected `auto`, `dual-boot`, `grub` or `sd-boot`)",
                c.bootloader
            )));
        }
        if !matches!(
            c.secureboot.enroll_keys.as_str(),
            "" | "if-safe" | "off" | "manual" | "force"
        ) {
            return Err(Error::input(format!(
                "unknown secureboot enrollKeys `{}` (expected `off`, `manual`, `if-safe` or `force`)",
                c.secureboot.enroll_keys
            )));
        }
        let mut seen = BTreeSet::new();
        for name in &c.system_extensions.official_extensions {
            if name.trim().is_empty() {
                return Err(Error::input("empty extension name in `officialExtensions`"));
            }
            if !seen.insert(name) {
                return Err(Error::input(format!(
                    "extension `{name}` is listed twice in `officialExtensions`"
                )));
            }
        }
        if let Some(opts) = &self.overlay.options {
            for (k, v) in opts {
                if !k.is_string() {
                    return Err(Error::input(
                        "overlay option keys must be strings (the factory decodes them into map[string]any)",
                    ));
                }
                to_go(v)?;
            }
        }
        Ok(())
    }

    /// The bytes the factory hashes: go-yaml v4 `Marshal` of the decoded struct.
    pub fn canonical_yaml(&self) -> Result<String> {
        Ok(goyaml::marshal(&self.to_go()?, 4))
    }

    /// Lower-case hex SHA-256 of [`Self::canonical_yaml`].
    pub fn id(&self) -> Result<String> {
        Ok(id_of(&self.canonical_yaml()?))
    }

    fn to_go(&self) -> Result<GoValue> {
        let mut top = Vec::new();
        if !self.owner.is_empty() {
            top.push(("owner".to_string(), GoValue::str(&self.owner)));
        }
        // `overlay` is omitempty: dropped when every field is zero.
        let mut overlay = Vec::new();
        push_str(&mut overlay, "image", &self.overlay.image);
        push_str(&mut overlay, "name", &self.overlay.name);
        if let Some(opts) = self.overlay.options.as_ref().filter(|o| !o.is_empty()) {
            overlay.push((
                "options".to_string(),
                to_go(&serde_yaml::Value::Mapping(opts.clone()))?,
            ));
        }
        if !(self.overlay.image.is_empty() && self.overlay.name.is_empty() && overlay.is_empty()) {
            // A non-zero struct emits its non-omitempty fields even when empty.
            let mut full = vec![
                ("image".to_string(), GoValue::str(&self.overlay.image)),
                ("name".to_string(), GoValue::str(&self.overlay.name)),
            ];
            full.extend(overlay.into_iter().filter(|(k, _)| k == "options"));
            top.push(("overlay".to_string(), GoValue::Map(full)));
        }
        let c = &self.customization;
        let mut cust = Vec::new();
        push_str(
            &mut cust,
            "embeddedMachineConfiguration",
            &c.embedded_machine_configuration,
        );
        if !c.extra_kernel_args.is_empty() {
            cust.push((
                "extraKernelArgs".to_string(),
                GoValue::Seq(c.extra_kernel_args.iter().map(GoValue::str).collect()),
            ));
        }
        if !c.meta.is_empty() {
            let items = c
                .meta
                .iter()
                .map(|m| {
                    GoValue::Map(vec![
                        ("key".to_string(), GoValue::Uint(m.key as u64)),
                        ("value".to_string(), GoValue::str(&m.value)),
                    ])
                })
                .collect();
            cust.push(("meta".to_string(), GoValue::Seq(items)));
        }
        if !c.system_extensions.official_extensions.is_empty() {
            let list = c
                .system_extensions
                .official_extensions
                .iter()
                .map(GoValue::str)
                .collect();
            cust.push((
                "systemExtensions".to_string(),
                GoValue::Map(vec![("officialExtensions".to_string(), GoValue::Seq(list))]),
            ));
        }
        if !matches!(c.bootloader.as_str(), "" | "auto") {
            cust.push(("bootloader".to_string(), GoValue::str(&c.bootloader)));
        }
        let mut sb = Vec::new();
        if !matches!(c.secureboot.enroll_keys.as_str(), "" | "if-safe") {
            sb.push((
                "enrollKeys".to_string(),
                GoValue::str(&c.secureboot.enroll_keys),
            ));
        }
        if c.secureboot.include_well_known_certificates {
            sb.push((
                "includeWellKnownCertificates".to_string(),
                GoValue::Bool(true),
            ));
        }
        if !sb.is_empty() {
            cust.push(("secureboot".to_string(), GoValue::Map(sb)));
        }
        if c.disk_image.sector_size != 0 {
            cust.push((
                "diskImage".to_string(),
                GoValue::Map(vec![(
                    "sectorSize".to_string(),
                    GoValue::Uint(c.disk_image.sector_size as u64),
                )]),
            ));
        }
        // `customization` is not omitempty: an empty one is written as `{}`.
        top.push(("customization".to_string(), GoValue::Map(cust)));
        Ok(GoValue::Map(top))
    }
}

/// The schematic ID of canonical YAML bytes.
pub fn id_of(canonical: &str) -> String {
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

fn push_str(out: &mut Vec<(String, GoValue)>, key: &str, value: &str) {
    if !value.is_empty() {
        out.push((key.to_string(), GoValue::str(value)));
    }
}

/// A decoded `any` value as go-yaml re-encodes it: maps with sorted keys.
fn to_go(v: &serde_yaml::Value) -> Result<GoValue> {
    use serde_yaml::Value;
    Ok(match v {
        Value::Null => GoValue::Null,
        Value::Bool(b) => GoValue::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                GoValue::Int(i)
            } else if let Some(u) = n.as_u64() {
                GoValue::Uint(u)
            } else {
                GoValue::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => GoValue::str(s),
        Value::Sequence(items) => GoValue::Seq(items.iter().map(to_go).collect::<Result<_>>()?),
        Value::Mapping(m) => {
            let mut entries = Vec::new();
            for (k, v) in m {
                let key = k
                    .as_str()
                    .ok_or_else(|| Error::input("overlay option keys must be strings"))?;
                entries.push((key.to_string(), to_go(v)?));
            }
            goyaml::sort_map_keys(&mut entries);
            GoValue::Map(entries)
        }
        Value::Tagged(_) => return Err(Error::input(
            "tagged values in overlay options are not supported; compute this ID with the factory",
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The six vectors from `image-factory:pkg/schematic/schematic_test.go` and the Tailscale one
    /// (reference §1.2).
    #[test]
    fn factory_vectors() {
        let cases: &[(&str, &str, &str)] = &[
            ("", "customization: {}\n", "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"),
            ("{}", "customization: {}\n", "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"),
            ("customization: {}", "customization: {}\n", "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"),
            ("customization:\n  extraKernelArgs: []\n", "customization: {}\n", "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"),
            (
                "customization:\n  extraKernelArgs: [noapic, nolapic]\n",
                "customization:\n    extraKernelArgs:\n        - noapic\n        - nolapic\n",
                "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c",
            ),
            (
                "customization:\n  meta:\n    - key: 0xa\n      value: foo\n",
                "customization:\n    meta:\n        - key: 10\n          value: foo\n",
                "d308a2a5ee2277bed5fbaa104fcbc8d59122abfa737df987a95b4ca763459a7f",
            ),
            (
                "{\"overlay\": {\"name\": \"rpi_generic\", \"image\": \"siderolabs/sbc-raspberrypi\"}}",
                "overlay:\n    image: siderolabs/sbc-raspberrypi\n    name: rpi_generic\ncustomization: {}\n",
                "ee21ef4a5ef808a9b7484cc0dda0f25075021691c8c09a276591eedb638ea1f9",
            ),
            (
                "customization:\n  secureboot:\n    includeWellKnownCertificates: true\n",
                "customization:\n    secureboot:\n        includeWellKnownCertificates: true\n",
                "fa8e05f142a851d3ee568eb0a8e5841eaf6b0ebc8df9a63df16ac5ed2c04f3e6",
            ),
            (
                "customization:\n  diskImage:\n    sectorSize: 4096\n",
                "customization:\n    diskImage:\n        sectorSize: 4096\n",
                "92833e9ddd9bb9e11b2464fa5525429f01866306d52ebd882ee08d7918f6d1ea",
            ),
            (
                "customization:\n  systemExtensions:\n    officialExtensions:\n      - siderolabs/tailscale\n",
                "customization:\n    systemExtensions:\n        officialExtensions:\n            - siderolabs/tailscale\n",
                "4a0d65c669d46663f377e7161e50cfd570c401f26fd9e7bda34a0216b6f1922b",
            ),
        ];
        for (input, canonical, id) in cases {
            let s = Schematic::parse(input, "test").unwrap();
            assert_eq!(&s.canonical_yaml().unwrap(), canonical, "input {input:?}");
            assert_eq!(&s.id().unwrap(), id, "input {input:?}");
        }
    }

    #[test]
    fn built_schematic_matches_parsed_one() {
        let built = Schematic::with_extensions(&["siderolabs/tailscale".into()], &[], &[]);
        assert_eq!(
            built.id().unwrap(),
            "4a0d65c669d46663f377e7161e50cfd570c401f26fd9e7bda34a0216b6f1922b"
        );
    }

    #[test]
    fn unknown_keys_are_refused_with_a_line() {
        let err = Schematic::parse("customization:\n  extensions: [x]\n", "s.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("s.yaml:2:"), "{err}");
        assert!(err.contains("extensions"), "{err}");
    }

    #[test]
    fn extension_order_matters() {
        let a = Schematic::with_extensions(&["a/x".into(), "b/y".into()], &[], &[]);
        let b = Schematic::with_extensions(&["b/y".into(), "a/x".into()], &[], &[]);
        assert_ne!(a.id().unwrap(), b.id().unwrap());
    }

    #[test]
    fn embedded_config_is_a_literal_block() {
        let s = Schematic {
            customization: Customization {
                embedded_machine_configuration: "apiVersion: v1alpha1\nkind: HostnameConfig\n"
                    .into(),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            s.canonical_yaml().unwrap(),
            "customization:\n    embeddedMachineConfiguration: |\n        apiVersion: v1alpha1\n        kind: HostnameConfig\n"
        );
    }

    #[test]
    fn overlay_options_are_sorted() {
        let s = Schematic::parse(
            "overlay:\n  image: i\n  name: nm\n  options:\n    z: 1\n    a: \"true\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(
            s.canonical_yaml().unwrap(),
            "overlay:\n    image: i\n    name: nm\n    options:\n        a: \"true\"\n        z: 1\ncustomization: {}\n"
        );
    }
}
