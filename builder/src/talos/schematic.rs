//! Image Factory schematics: the document users submit to `POST /schematics`, and the ID the
//! factory gives it, computed offline.
//!
//! The factory (`image-factory:pkg/schematic/schematic.go` at 26b95ca) decodes the body strictly
//! into its Go structs ([`crate::goyaml::decode`], go-yaml v4 rules), refuses an `owner` unless it runs as the
//! Enterprise edition (`Schematic.Validate`), re-encodes the structs with go-yaml v4's
//! `yaml.Marshal` (4-space indent, struct field order, `omitempty`) and names the schematic by
//! the SHA-256 of those bytes (reference §1.2). [`Schematic::parse`] does the same decoding and
//! [`Schematic::canonical_yaml`] goes through [`crate::goyaml::emit`], our go-yaml v4 emitter. Nothing
//! else is checked at creation: duplicate or empty `officialExtensions` entries and any
//! `enrollKeys` string are stored as given (the factory only looks at them when it builds an
//! image). The bootloader is Talos's `imageropts.BootloaderKind`
//! (`talos:pkg/machinery/imager/imageropts` at v1.14.0-rc.1, the version the factory pins), an
//! enum read case-insensitively from its names `none`, `dual-boot`, `sd-boot` and `grub`.

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::goyaml::{self, decode, DResult, DecodeError, GoValue, Node};

/// `schematic.Schematic`: keys in serialisation order `owner`, `overlay`, `customization`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Schematic {
    /// Enterprise only; the community factory rejects a non-empty owner.
    pub owner: String,
    pub overlay: Overlay,
    pub customization: Customization,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overlay {
    pub image: String,
    pub name: String,
    /// Free-form options passed to the overlay (`map[string]any`), keys in go-yaml's order.
    pub options: Vec<(String, GoValue)>,
}

/// Field order is part of the ID (the factory's struct comment forbids reordering it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Customization {
    pub embedded_machine_configuration: String,
    pub extra_kernel_args: Vec<String>,
    pub meta: Vec<MetaValue>,
    pub system_extensions: SystemExtensions,
    pub bootloader: Bootloader,
    pub secureboot: SecureBoot,
    pub disk_image: DiskImage,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetaValue {
    /// A META tag, 0–255; YAML spellings such as `0xa` or `012` are read as go-yaml reads them.
    pub key: u8,
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SystemExtensions {
    pub official_extensions: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SecureBoot {
    /// Stored as given; omitted only when empty (an explicit `if-safe` is kept).
    pub enroll_keys: String,
    pub include_well_known_certificates: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DiskImage {
    /// Omitted when 0 (the factory then uses 512).
    pub sector_size: u64,
}

/// `imageropts.BootloaderKind`; `None` is the zero value and is omitted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Bootloader {
    #[default]
    None,
    DualBoot,
    SdBoot,
    Grub,
}

impl Bootloader {
    /// `BootloaderKindString`: an exact name, else its lower-case form.
    pub fn from_name(s: &str) -> Option<Self> {
        let pick = |n: &str| match n {
            "none" => Some(Bootloader::None),
            "dual-boot" => Some(Bootloader::DualBoot),
            "sd-boot" => Some(Bootloader::SdBoot),
            "grub" => Some(Bootloader::Grub),
            _ => None,
        };
        pick(s).or_else(|| pick(&s.to_lowercase()))
    }

    /// `MarshalText`.
    pub fn name(self) -> &'static str {
        match self {
            Bootloader::None => "none",
            Bootloader::DualBoot => "dual-boot",
            Bootloader::SdBoot => "sd-boot",
            Bootloader::Grub => "grub",
        }
    }
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

    /// Decode a schematic as the community factory does: YAML or JSON, first document only,
    /// unknown keys refused, `owner` refused.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        Self::parse_for(text, origin, false)
    }

    /// [`Self::parse`], for the Enterprise edition when `enterprise` is set (an `owner` is
    /// accepted).
    pub fn parse_for(text: &str, origin: &str, enterprise: bool) -> Result<Self> {
        let schematic = goyaml::first_document(text)
            .and_then(|root| Self::from_node(&root))
            .map_err(|e| {
                let at = if e.line == 0 {
                    origin.to_string()
                } else {
                    format!("{origin}:{}:{}", e.line, e.col)
                };
                Error::input_hint(
                    format!("{at}: invalid schematic: {}", e.message),
                    "the Image Factory decodes schematics strictly; see manifests/schematic/ for the accepted keys",
                )
            })?;
        schematic.validate(enterprise)?;
        Ok(schematic)
    }

    /// `Schematic.Validate`: the only check the factory makes before it stores a schematic.
    pub fn validate(&self, enterprise: bool) -> Result<()> {
        if !enterprise && !self.owner.is_empty() {
            return Err(Error::input_hint(
                "invalid schematic: `owner` is only supported in the Enterprise edition",
                "drop `owner`, or pass `--enterprise` for an Enterprise factory",
            ));
        }
        Ok(())
    }

    fn from_node(root: &Node) -> DResult<Self> {
        let mut s = Schematic::default();
        decode::structure(
            root,
            "schematic.Schematic",
            &["owner", "overlay", "customization"],
            &mut |k, v| {
                match k {
                    "owner" => set(&mut s.owner, decode::string(v)?),
                    "overlay" => s.overlay.decode(v)?,
                    _ => s.customization.decode(v)?,
                }
                Ok(())
            },
        )?;
        Ok(s)
    }

    /// The bytes the factory hashes: go-yaml v4 `Marshal` of the decoded struct.
    pub fn canonical_yaml(&self) -> Result<String> {
        Ok(goyaml::marshal(&self.to_go(), 4))
    }

    /// Lower-case hex SHA-256 of [`Self::canonical_yaml`].
    pub fn id(&self) -> Result<String> {
        Ok(id_of(&self.canonical_yaml()?))
    }

    fn to_go(&self) -> GoValue {
        let mut top = Vec::new();
        push_str(&mut top, "owner", &self.owner);
        // `overlay` is omitempty: dropped when every field is zero; a non-zero one keeps its
        // non-omitempty `image` and `name` even when empty.
        let o = &self.overlay;
        if !(o.image.is_empty() && o.name.is_empty() && o.options.is_empty()) {
            let mut overlay = vec![
                ("image".to_string(), GoValue::str(&o.image)),
                ("name".to_string(), GoValue::str(&o.name)),
            ];
            if !o.options.is_empty() {
                overlay.push(("options".to_string(), GoValue::Map(o.options.clone())));
            }
            top.push(("overlay".to_string(), GoValue::Map(overlay)));
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
        if c.bootloader != Bootloader::None {
            cust.push(("bootloader".to_string(), GoValue::str(c.bootloader.name())));
        }
        let mut sb = Vec::new();
        push_str(&mut sb, "enrollKeys", &c.secureboot.enroll_keys);
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
                    GoValue::Uint(c.disk_image.sector_size),
                )]),
            ));
        }
        // `customization` is not omitempty: an empty one is written as `{}`.
        top.push(("customization".to_string(), GoValue::Map(cust)));
        GoValue::Map(top)
    }
}

impl Overlay {
    fn decode(&mut self, node: &Node) -> DResult<()> {
        decode::structure(
            node,
            "schematic.Overlay",
            &["image", "name", "options"],
            &mut |k, v| {
                match k {
                    "image" => set(&mut self.image, decode::string(v)?),
                    "name" => set(&mut self.name, decode::string(v)?),
                    _ => match decode::any_map(v, "map[string]interface {}")? {
                        Some(GoValue::Map(m)) => self.options = m,
                        _ => self.options.clear(),
                    },
                }
                Ok(())
            },
        )
    }
}

impl Customization {
    fn decode(&mut self, node: &Node) -> DResult<()> {
        decode::structure(
            node,
            "schematic.Customization",
            &[
                "embeddedMachineConfiguration",
                "extraKernelArgs",
                "meta",
                "systemExtensions",
                "bootloader",
                "secureboot",
                "diskImage",
            ],
            &mut |k, v| {
                match k {
                    "embeddedMachineConfiguration" => {
                        set(&mut self.embedded_machine_configuration, decode::string(v)?)
                    }
                    "extraKernelArgs" => set(
                        &mut self.extra_kernel_args,
                        decode::seq(v, "[]string", decode::string)?,
                    ),
                    "meta" => set(
                        &mut self.meta,
                        decode::seq(v, "[]schematic.MetaValue", MetaValue::decode)?,
                    ),
                    "systemExtensions" => self.system_extensions.decode(v)?,
                    "bootloader" => {
                        if let Some(t) = decode::text(v, "imageropts.BootloaderKind")? {
                            self.bootloader = Bootloader::from_name(&t).ok_or_else(|| DecodeError {
                                line: v.line,
                                col: v.col,
                                message: format!(
                                    "`{t}` does not belong to BootloaderKind values (`none`, `dual-boot`, `sd-boot`, `grub`)"
                                ),
                            })?;
                        }
                    }
                    "secureboot" => self.secureboot.decode(v)?,
                    _ => decode::structure(
                        v,
                        "schematic.DiskImageCustomization",
                        &["sectorSize"],
                        &mut |_, v| {
                            set(
                                &mut self.disk_image.sector_size,
                                decode::uint(v, u64::MAX, "uint")?,
                            );
                            Ok(())
                        },
                    )?,
                }
                Ok(())
            },
        )
    }
}

impl MetaValue {
    /// A list item: a null item is dropped, a mapping fills `key` and `value`.
    fn decode(node: &Node) -> DResult<Option<MetaValue>> {
        if matches!(node.kind, goyaml::Kind::Scalar { .. })
            && decode::resolve(node)? == decode::Scalar::Null
        {
            return Ok(None);
        }
        let mut m = MetaValue {
            key: 0,
            value: String::new(),
        };
        decode::structure(
            node,
            "schematic.MetaValue",
            &["key", "value"],
            &mut |k, v| {
                match k {
                    "key" => {
                        if let Some(key) = decode::uint(v, u8::MAX as u64, "uint8")? {
                            m.key = key as u8;
                        }
                    }
                    _ => set(&mut m.value, decode::string(v)?),
                }
                Ok(())
            },
        )?;
        Ok(Some(m))
    }
}

impl SystemExtensions {
    fn decode(&mut self, node: &Node) -> DResult<()> {
        decode::structure(
            node,
            "schematic.SystemExtensions",
            &["officialExtensions"],
            &mut |_, v| {
                set(
                    &mut self.official_extensions,
                    decode::seq(v, "[]string", decode::string)?,
                );
                Ok(())
            },
        )
    }
}

impl SecureBoot {
    fn decode(&mut self, node: &Node) -> DResult<()> {
        decode::structure(
            node,
            "schematic.SecureBootCustomization",
            &["enrollKeys", "includeWellKnownCertificates"],
            &mut |k, v| {
                match k {
                    "enrollKeys" => set(&mut self.enroll_keys, decode::string(v)?),
                    _ => set(
                        &mut self.include_well_known_certificates,
                        decode::boolean(v)?,
                    ),
                }
                Ok(())
            },
        )
    }
}

/// Assign a decoded value; `None` (a null) leaves the field as it was.
fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *field = v;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The six vectors from `image-factory:pkg/schematic/schematic_test.go` and the Tailscale one
    /// (reference §1.2).
    #[test]
    fn factory_vectors() {
        let cases: &[(&str, &str, &str)] = &[
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

    #[test]
    fn overlay_options_decode_as_go_any() {
        let s = Schematic::parse(
            "overlay:\n  image: i\n  name: nm\n  options: {z: 1, 1: x, n: ~, t: 2024-01-02, l: [a, ~], m: {2: b}}\n",
            "t",
        )
        .unwrap();
        assert_eq!(
            s.canonical_yaml().unwrap(),
            "overlay:\n    image: i\n    name: nm\n    options:\n        \"1\": x\n        l:\n            - a\n            - null\n        m:\n            2: b\n        'n': null\n        t: 2024-01-02T00:00:00Z\n        z: 1\ncustomization: {}\n"
        );
    }

    #[test]
    fn merge_keys_and_tags() {
        let s = Schematic::parse("base: &b {extraKernelArgs: [a]}\n", "t");
        assert!(s.is_err(), "unknown top-level key");
        let s = Schematic::parse(
            "customization:\n  <<: {extraKernelArgs: [a], meta: [{key: !!float 1, value: !!binary eA==}]}\n  extraKernelArgs: [b]\n",
            "t",
        )
        .unwrap();
        assert_eq!(s.customization.extra_kernel_args, vec!["b".to_string()]);
        assert_eq!(s.customization.meta[0].key, 1);
        assert_eq!(s.customization.meta[0].value, "x");
    }
}
