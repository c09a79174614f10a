//! The images a Talos release runs or installs with, per minor release: what `talext images`
//! lists for an air-gapped site. Each row reads Talos's own constants at the tag it cites:
//! `pkg/machinery/constants/constants.go` (`DefaultKubernetesVersion`, `DefaultEtcdVersion`,
//! `EtcdImage`, `DefaultCoreDNSVersion`, `CoreDNSImage`, `FlannelVersion`,
//! `KubeNetworkPoliciesVersion`, the Kubernetes image repositories), `pkg/images/list.go`
//! (`DefaultSandboxImage`, the flannel mirror, kube-network-policies) and `pkg/images/images.go`
//! (the installer, imager and extensions repositories). `installer-base` is built from v1.10 on
//! (`Makefile` target `installer-base` at v1.10.0, absent at v1.9.0).
//!
//! [`Closure`] adjusts a release's list the way a site needs it (an Image Factory schematic's
//! installer, receipts, added and dropped images); `talext images` and `bundle create
//! --closure` both resolve it, so what one prints is what the other bundles.

use std::path::{Path, PathBuf};

use super::Minor;
use crate::error::{Error, IoContext, Result};

/// The images of one release, with the tag its facts were read at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReleaseImages {
    pub minor: Minor,
    /// `DefaultKubernetesVersion`, without the `v`.
    pub kubernetes: &'static str,
    pub etcd: &'static str,
    pub coredns: &'static str,
    /// `ghcr.io/siderolabs/flannel:<this>`.
    pub flannel: &'static str,
    /// `registry.k8s.io/networking/kube-network-policies:<this>` (v1.13 and later).
    pub kube_network_policies: Option<&'static str>,
    /// `DefaultSandboxImage`; v1.7 takes containerd's own default, which Talos does not state.
    pub pause: Option<&'static str>,
    pub installer_base: bool,
    pub source: &'static str,
}

const K8S: &str = "registry.k8s.io";

/// One row per known minor, oldest first.
pub const IMAGES: &[ReleaseImages] = &[
    ReleaseImages {
        minor: Minor::new(1, 7),
        kubernetes: "1.30.0",
        etcd: "gcr.io/etcd-development/etcd:v3.5.13",
        coredns: "registry.k8s.io/coredns/coredns:v1.11.1",
        flannel: "v0.25.1",
        kube_network_policies: None,
        pause: None,
        installer_base: false,
        source: "siderolabs/talos pkg/machinery/constants/constants.go, pkg/images/list.go@v1.7.0",
    },
    ReleaseImages {
        minor: Minor::new(1, 8),
        kubernetes: "1.31.1",
        etcd: "gcr.io/etcd-development/etcd:v3.5.16",
        coredns: "registry.k8s.io/coredns/coredns:v1.11.3",
        flannel: "v0.25.6",
        kube_network_policies: None,
        pause: Some("registry.k8s.io/pause:3.9"),
        installer_base: false,
        source: "siderolabs/talos pkg/machinery/constants/constants.go, pkg/images/list.go@v1.8.0",
    },
    ReleaseImages {
        minor: Minor::new(1, 9),
        kubernetes: "1.32.0",
        etcd: "gcr.io/etcd-development/etcd:v3.5.17",
        coredns: "registry.k8s.io/coredns/coredns:v1.12.0",
        flannel: "v0.26.1",
        kube_network_policies: None,
        pause: Some("registry.k8s.io/pause:3.10"),
        installer_base: false,
        source: "siderolabs/talos pkg/machinery/constants/constants.go, pkg/images/list.go, Makefile@v1.9.0",
    },
    ReleaseImages {
        minor: Minor::new(1, 10),
        kubernetes: "1.33.0",
        etcd: "gcr.io/etcd-development/etcd:v3.5.21",
        coredns: "registry.k8s.io/coredns/coredns:v1.12.1",
        flannel: "v0.26.7",
        kube_network_policies: None,
        pause: Some("registry.k8s.io/pause:3.10"),
        installer_base: true,
        source: "siderolabs/talos pkg/machinery/constants/constants.go, pkg/images/list.go, Makefile@v1.10.0",
    },
    ReleaseImages {
        minor: Minor::new(1, 11),
        kubernetes: "1.34.0",
        etcd: "gcr.io/etcd-development/etcd:v3.6.4",
        coredns: "registry.k8s.io/coredns/coredns:v1.12.2",
        flannel: "v0.27.2",
        kube_network_policies: None,
        pause: Some("registry.k8s.io/pause:3.10"),
        installer_base: true,
        source: "siderolabs/talos pkg/machinery/constants/constants.go, pkg/images/list.go@v1.11.0",
    },
    ReleaseImages {
        minor: Minor::new(1, 12),
        kubernetes: "1.35.0",
        etcd: "registry.k8s.io/etcd:v3.6.7",
        coredns: "registry.k8s.io/coredns/coredns:v1.13.2",
        flannel: "v0.27.4",
        kube_network_policies: None,
        pause: Some("registry.k8s.io/pause:3.10"),
        installer_base: true,
        source: "siderolabs/talos pkg/machinery/constants/constants.go, pkg/images/list.go, pkg/images/images.go@v1.12.0",
    },
    ReleaseImages {
        minor: Minor::new(1, 13),
        kubernetes: "1.36.0",
        etcd: "registry.k8s.io/etcd:v3.6.9",
        coredns: "registry.k8s.io/coredns/coredns:v1.14.2",
        flannel: "v0.28.4",
        kube_network_policies: Some("v1.0.0"),
        pause: Some("registry.k8s.io/pause:3.10.1"),
        installer_base: true,
        source: "siderolabs/talos pkg/machinery/constants/constants.go, pkg/images/list.go, pkg/images/images.go@v1.13.0",
    },
    ReleaseImages {
        minor: Minor::new(1, 14),
        kubernetes: "1.37.0-rc.0",
        etcd: "registry.k8s.io/etcd:3.7.1",
        coredns: "registry.k8s.io/coredns/coredns:v1.14.6",
        flannel: "0.28.9",
        kube_network_policies: Some("v1.1.1"),
        pause: Some("registry.k8s.io/pause:3.10.2"),
        installer_base: true,
        source: "siderolabs/talos pkg/machinery/constants/constants.go, pkg/images/list.go, pkg/images/images.go@v1.14.0-rc.1",
    },
    ReleaseImages {
        minor: Minor::new(1, 15),
        kubernetes: "1.37.0-rc.1",
        etcd: "registry.k8s.io/etcd:3.7.1",
        coredns: "registry.k8s.io/coredns/coredns:v1.14.7",
        flannel: "0.28.9",
        kube_network_policies: Some("v1.1.1"),
        pause: Some("registry.k8s.io/pause:3.10.2"),
        installer_base: true,
        source: "siderolabs/talos pkg/machinery/constants/constants.go, pkg/images/list.go@main (v1.14.0-beta.1-84-gad8823176)",
    },
];

/// The row for `minor`.
pub fn for_minor(minor: Minor) -> Option<&'static ReleaseImages> {
    IMAGES.iter().find(|r| r.minor == minor)
}

/// One image of a release's list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Listed {
    /// What it is: `installer`, `kubelet`, `etcd`, …
    pub role: String,
    pub image: String,
}

/// The images Talos `talos_version` (`v1.13.0`) with Kubernetes `kubernetes` (default: the
/// release's) needs: the installer (and `installer-base` from v1.10), the imager, the
/// Kubernetes control plane and kubelet, etcd, CoreDNS, flannel, kube-network-policies (v1.13+),
/// the pause image, and the extensions catalog.
pub fn list(talos_version: &str, kubernetes: Option<&str>) -> Option<Vec<Listed>> {
    let row = for_minor(Minor::of(talos_version)?)?;
    let tag = if talos_version.starts_with('v') {
        talos_version.to_string()
    } else {
        format!("v{talos_version}")
    };
    let k8s = kubernetes.unwrap_or(row.kubernetes);
    let k8s = format!("v{}", k8s.trim_start_matches('v'));
    let mut out = Vec::new();
    let mut add = |role: &str, image: String| {
        out.push(Listed {
            role: role.to_string(),
            image,
        })
    };
    add("installer", format!("ghcr.io/siderolabs/installer:{tag}"));
    if row.installer_base {
        add(
            "installer-base",
            format!("ghcr.io/siderolabs/installer-base:{tag}"),
        );
    }
    add("imager", format!("ghcr.io/siderolabs/imager:{tag}"));
    add("kubelet", format!("ghcr.io/siderolabs/kubelet:{k8s}"));
    for c in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kube-proxy",
    ] {
        add(c, format!("{K8S}/{c}:{k8s}"));
    }
    add("etcd", row.etcd.to_string());
    add("coredns", row.coredns.to_string());
    add(
        "flannel",
        format!("ghcr.io/siderolabs/flannel:{}", row.flannel),
    );
    if let Some(v) = row.kube_network_policies {
        add(
            "kube-network-policies",
            format!("{K8S}/networking/kube-network-policies:{v}"),
        );
    }
    if let Some(p) = row.pause {
        add("pause", p.to_string());
    }
    add("extensions", format!("ghcr.io/siderolabs/extensions:{tag}"));
    Some(out)
}

/// The Image Factory the installer of a schematic comes from unless the closure names another.
pub const DEFAULT_FACTORY: &str = "factory.talos.dev";

/// What a site needs, as `talext images` flags or a closure file (`bundle create --closure`)
/// give it: a release's list, adjusted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Closure {
    /// The Talos release (`v1.13.0`).
    pub talos_version: String,
    /// Default: the release's `DefaultKubernetesVersion`.
    #[serde(default)]
    pub kubernetes_version: Option<String>,
    /// An Image Factory schematic ID: the installer becomes the factory's
    /// `<factory>/installer[-secureboot]/<id>:<version>`.
    #[serde(default)]
    pub schematic: Option<String>,
    /// A schematic file whose ID is computed as the factory does (instead of `schematic`).
    #[serde(default)]
    pub schematic_file: Option<PathBuf>,
    /// The factory host (default `factory.talos.dev`).
    #[serde(default)]
    pub factory: Option<String>,
    /// The secure-boot installer of the schematic.
    #[serde(default)]
    pub secureboot: bool,
    /// Build receipts (`talext build --receipt`) whose images are added.
    #[serde(default)]
    pub receipts: Vec<PathBuf>,
    /// Images added.
    #[serde(default)]
    pub images: Vec<String>,
    /// Roles (`flannel`) or repositories (`ghcr.io/siderolabs/flannel`) dropped.
    #[serde(default)]
    pub drop: Vec<String>,
    /// Platforms to bundle (`linux/amd64`); empty means every platform.
    #[serde(default)]
    pub platforms: Vec<String>,
}

impl Closure {
    /// Read a closure file (YAML or JSON; unknown keys are errors). Relative paths in it are
    /// read from the file's directory.
    pub fn read(path: &Path) -> Result<Closure> {
        let text = std::fs::read_to_string(path).at("reading", path)?;
        let mut closure: Closure = serde_yaml::from_str(&text)
            .map_err(|e| Error::input(format!("`{}`: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new(""));
        for p in closure
            .receipts
            .iter_mut()
            .chain(closure.schematic_file.iter_mut())
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(closure)
    }

    /// The images, in the release list's order, then receipts, then added images, minus the
    /// dropped ones.
    pub fn resolve(&self) -> Result<Vec<Listed>> {
        let mut list =
            list(&self.talos_version, self.kubernetes_version.as_deref()).ok_or_else(|| {
                Error::input_hint(
                    format!(
                        "`{}` is not a Talos release talext knows",
                        self.talos_version
                    ),
                    "known: v1.7 to v1.15 (`v1.13.0`)",
                )
            })?;
        if let Some(installer) = self.factory_installer()? {
            for l in list.iter_mut().filter(|l| l.role == "installer") {
                l.image = installer.clone();
            }
        }
        for r in &self.receipts {
            let receipt = crate::talos::receipt::Receipt::read(r)?;
            let image = receipt.reference.clone().ok_or_else(|| {
                Error::input(format!(
                    "`{}` names no registry image (built to `{}`)",
                    r.display(),
                    receipt.output
                ))
            })?;
            list.push(Listed {
                role: format!("extension:{}", receipt.name),
                image,
            });
        }
        for a in &self.images {
            crate::registry::Reference::parse(a)?;
            list.push(Listed {
                role: "added".into(),
                image: a.clone(),
            });
        }
        list.retain(|l| {
            !self
                .drop
                .iter()
                .any(|d| l.role == *d || l.image.split([':', '@']).next() == Some(d.as_str()))
        });
        Ok(list)
    }

    /// `<factory>/installer[-secureboot]/<id>:<version>`, the name the Image Factory serves a
    /// schematic's installer under (the metal installer; `getRequestedImage` in
    /// `siderolabs/image-factory` `internal/frontend/http/registry.go` at 26b95ca), when the
    /// closure names a schematic.
    pub fn factory_installer(&self) -> Result<Option<String>> {
        let id = match (&self.schematic, &self.schematic_file) {
            (Some(_), Some(f)) => {
                return Err(Error::input(format!(
                    "give `schematic` or `schematicFile` (`{}`), not both",
                    f.display()
                )))
            }
            (Some(id), None) => {
                if id.len() != 64 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                    return Err(Error::input(format!(
                        "schematic `{id}` is not a schematic ID (64 lower-case hex digits)"
                    )));
                }
                id.clone()
            }
            (None, Some(f)) => {
                let text = std::fs::read_to_string(f).at("reading", f)?;
                crate::talos::schematic::Schematic::parse(&text, &f.display().to_string())?.id()?
            }
            (None, None) => return Ok(None),
        };
        let tag = if self.talos_version.starts_with('v') {
            self.talos_version.clone()
        } else {
            format!("v{}", self.talos_version)
        };
        let factory = self.factory.as_deref().unwrap_or(DEFAULT_FACTORY);
        let kind = if self.secureboot {
            "installer-secureboot"
        } else {
            "installer"
        };
        Ok(Some(format!("{factory}/{kind}/{id}:{tag}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_minor_has_a_cited_row() {
        for m in super::super::KNOWN {
            let row = for_minor(*m).unwrap_or_else(|| panic!("no images row for {m}"));
            assert!(row.source.starts_with("siderolabs/talos "), "{m}");
            assert!(row.source.contains('@'), "{m}: the tag");
        }
    }

    #[test]
    fn v1_13_matches_its_constants() {
        let l = list("v1.13.0", None).unwrap();
        let has = |i: &str| l.iter().any(|x| x.image == i);
        assert!(has("ghcr.io/siderolabs/installer:v1.13.0"));
        assert!(has("ghcr.io/siderolabs/installer-base:v1.13.0"));
        assert!(has("ghcr.io/siderolabs/kubelet:v1.36.0"));
        assert!(has("registry.k8s.io/etcd:v3.6.9"));
        assert!(has("registry.k8s.io/coredns/coredns:v1.14.2"));
        let old = list("v1.9.6", Some("1.31.4")).unwrap();
        assert!(!old.iter().any(|x| x.role == "installer-base"));
        assert!(old
            .iter()
            .any(|x| x.image == "registry.k8s.io/kube-apiserver:v1.31.4"));
        assert!(list("v2.0.0", None).is_none());
    }

    #[test]
    fn closures_adjust_the_list() {
        let id = "4a0d65c669d46663f377e7161e50cfd570c401f26fd9e7bda34a0216b6f1922b";
        let c = Closure {
            talos_version: "v1.13.0".into(),
            schematic: Some(id.into()),
            images: vec!["docker.io/tailscale/tailscale:v1.80.0".into()],
            drop: vec!["flannel".into(), "registry.k8s.io/kube-proxy".into()],
            ..Closure::default()
        };
        let l = c.resolve().unwrap();
        let installer = l.iter().find(|x| x.role == "installer").unwrap();
        assert_eq!(
            installer.image,
            format!("factory.talos.dev/installer/{id}:v1.13.0")
        );
        assert!(!l
            .iter()
            .any(|x| x.role == "flannel" || x.role == "kube-proxy"));
        assert_eq!(
            l.last().unwrap().image,
            "docker.io/tailscale/tailscale:v1.80.0"
        );
        let bad = Closure {
            schematic: Some("nope".into()),
            ..c.clone()
        };
        assert!(bad
            .resolve()
            .unwrap_err()
            .to_string()
            .contains("not a schematic ID"));
        let strict: std::result::Result<Closure, _> =
            serde_yaml::from_str("talosVersion: v1.13.0\nextra: 1\n");
        assert!(strict.is_err());
    }
}
