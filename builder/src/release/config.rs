//! The machine-configuration documents of each release and the v1alpha1 fields each replaces or
//! conflicts with (see the module docs of `crate::release`).
//!
//! Three tables, read by `config render` and `config lint`:
//!
//! - [`DOCUMENTS`]: the multi-document kinds talext renders or lints, the release that first
//!   registers each, and the v1alpha1 fields its `V1Alpha1ConflictValidate` refuses next to it
//!   (Talos checks them in `pkg/machinery/config/container/validate.go`);
//! - [`RELEASES`]: one row per minor release: where each setting talext renders lives in the
//!   configuration that release's `talosctl gen config` writes (a v1alpha1 field or a document),
//!   and the forwarding sysctls Talos sets itself;
//! - the helpers [`release`], [`documents`], [`document`] that read them.
//!
//! Every fact names the file of `siderolabs/talos` and the tag it was read at; `main` is the
//! development branch that becomes v1.15 (read at commit `ad88231`, 2026-08-21), and the v1.14
//! facts were read at `v1.14.0-rc.1`, the newest v1.14 tag then.
//!
//! Conflicts that depend on the content of the document rather than on a v1alpha1 field being
//! set are left out: `HostnameConfig` against `.machine.features.stableHostname`,
//! `ResolverConfig.hostDNS` against `.machine.features.hostDNS` (v1.14), `TimeSyncConfig`,
//! `VolumeConfig` encryption, and the v1.14 Kubernetes documents talext never renders
//! (`KubeClusterConfig`, `KubeNetworkConfig`, `KubeProxyConfig`, …).

use super::Minor;

/// Where a fact was read: a path in `siderolabs/talos` at a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    pub path: &'static str,
    pub tag: &'static str,
}

const fn src(path: &'static str, tag: &'static str) -> Source {
    Source { path, tag }
}

/// When a v1alpha1 field counts as set for a conflict check (the Go field is a pointer, a
/// string, a list or a number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Set {
    /// Present and not null (a pointer to a struct, map or bool).
    Present,
    /// A non-empty string, list or map.
    NonEmpty,
    /// A number other than zero.
    NonZero,
    /// A boolean `true` (the Go accessor dereferences the pointer).
    True,
}

/// A v1alpha1 field a document refuses to sit next to.
#[derive(Debug, Clone, Copy)]
pub struct Replaced {
    /// Path of keys in the v1alpha1 document, `["machine", "kubelet", "nodeIP"]`.
    pub field: &'static [&'static str],
    pub set: Set,
    /// The first release whose conflict check refuses it.
    pub since: Minor,
    pub source: Source,
}

impl Replaced {
    /// `.machine.kubelet.nodeIP`, as Talos names the fields.
    pub fn dotted(&self) -> String {
        self.field.iter().map(|k| format!(".{k}")).collect()
    }
}

/// A machine-configuration document kind.
#[derive(Debug, Clone, Copy)]
pub struct Document {
    pub kind: &'static str,
    pub api_version: &'static str,
    /// The first release that registers the kind.
    pub since: Minor,
    /// Talos accepts it on control planes only (`ControlplaneOnlyDocument`).
    pub controlplane_only: bool,
    /// The v1alpha1 fields its `V1Alpha1ConflictValidate` refuses; empty when it has none.
    pub replaces: &'static [Replaced],
    pub source: Source,
}

const V1_7: Minor = Minor::new(1, 7);
const V1_8: Minor = Minor::new(1, 8);
const V1_9: Minor = Minor::new(1, 9);
const V1_12: Minor = Minor::new(1, 12);
const V1_13: Minor = Minor::new(1, 13);
const V1_14: Minor = Minor::new(1, 14);

const T14: &str = "v1.14.0-rc.1";

const NODE: &str = "pkg/machinery/config/types/k8s/node.go";
const KUBELET: &str = "pkg/machinery/config/types/k8s/kubelet.go";
const APISERVER: &str = "pkg/machinery/config/types/k8s/apiserver.go";
const CREDENTIAL_PROVIDER: &str = "pkg/machinery/config/types/k8s/credential_provider.go";
const UNATTENDED: &str = "pkg/machinery/config/types/runtime/unattended_install.go";
const KUBESPAN: &str = "pkg/machinery/config/types/network/kubespan.go";
const RESOLVER: &str = "pkg/machinery/config/types/network/resolver.go";
const HOSTNAME: &str = "pkg/machinery/config/types/network/hostname.go";
const IMAGE_CACHE: &str = "pkg/machinery/config/types/cri/image_cache.go";
const DISCOVERY: &str = "pkg/machinery/config/types/cluster/discovery_service.go";

const fn rep(field: &'static [&'static str], set: Set, since: Minor, source: Source) -> Replaced {
    Replaced {
        field,
        set,
        since,
        source,
    }
}

/// The document kinds talext renders or lints, oldest first.
pub static DOCUMENTS: &[Document] = &[
    Document {
        kind: "ExtensionServiceConfig",
        api_version: "v1alpha1",
        since: V1_7,
        controlplane_only: false,
        replaces: &[],
        source: src(
            "pkg/machinery/config/types/runtime/extensions/service_config.go",
            "v1.7.0",
        ),
    },
    Document {
        kind: "KubeSpanEndpointsConfig",
        api_version: "v1alpha1",
        since: V1_8,
        controlplane_only: false,
        replaces: &[],
        source: src(
            "pkg/machinery/config/types/network/kubespan_endpoints.go",
            "v1.8.0",
        ),
    },
    Document {
        kind: "VolumeConfig",
        api_version: "v1alpha1",
        since: V1_9,
        controlplane_only: false,
        // Only `STATE` and `EPHEMERAL` volumes conflict with v1alpha1 fields, depending on
        // their content (left out, see the module docs).
        replaces: &[],
        source: src(
            "pkg/machinery/config/types/block/volume_config.go",
            "v1.9.0",
        ),
    },
    Document {
        kind: "RegistryMirrorConfig",
        api_version: "v1alpha1",
        since: V1_12,
        controlplane_only: false,
        // Merged with `.machine.registries`; no conflict check.
        replaces: &[],
        source: src(
            "pkg/machinery/config/types/cri/registry_mirror.go",
            "v1.12.0",
        ),
    },
    Document {
        kind: "RegistryAuthConfig",
        api_version: "v1alpha1",
        since: V1_12,
        controlplane_only: false,
        replaces: &[],
        source: src("pkg/machinery/config/types/cri/registry_auth.go", "v1.12.0"),
    },
    Document {
        kind: "RegistryTLSConfig",
        api_version: "v1alpha1",
        since: V1_12,
        controlplane_only: false,
        replaces: &[],
        source: src("pkg/machinery/config/types/cri/registry_tls.go", "v1.12.0"),
    },
    Document {
        kind: "ResolverConfig",
        api_version: "v1alpha1",
        since: V1_12,
        controlplane_only: false,
        replaces: &[
            rep(
                &["machine", "network", "nameservers"],
                Set::NonEmpty,
                V1_12,
                src(RESOLVER, "v1.12.0"),
            ),
            rep(
                &["machine", "network", "searchDomains"],
                Set::Present,
                V1_12,
                src(RESOLVER, "v1.12.0"),
            ),
            rep(
                &["machine", "network", "disableSearchDomain"],
                Set::True,
                V1_12,
                src(RESOLVER, "v1.12.0"),
            ),
        ],
        source: src(RESOLVER, "v1.12.0"),
    },
    Document {
        kind: "HostnameConfig",
        api_version: "v1alpha1",
        since: V1_12,
        controlplane_only: false,
        replaces: &[rep(
            &["machine", "network", "hostname"],
            Set::NonEmpty,
            V1_12,
            src(HOSTNAME, "v1.12.0"),
        )],
        source: src(HOSTNAME, "v1.12.0"),
    },
    Document {
        kind: "KubeSpanConfig",
        api_version: "v1alpha1",
        since: V1_13,
        controlplane_only: false,
        replaces: &[rep(
            &["machine", "network", "kubespan"],
            Set::Present,
            V1_13,
            src(KUBESPAN, "v1.13.0"),
        )],
        source: src(KUBESPAN, "v1.13.0"),
    },
    Document {
        kind: "ImageVerificationConfig",
        api_version: "v1alpha1",
        since: V1_13,
        controlplane_only: false,
        replaces: &[],
        source: src(
            "pkg/machinery/config/types/security/image_verification.go",
            "v1.13.0",
        ),
    },
    Document {
        kind: "KubeNodeConfig",
        api_version: "v1alpha1",
        since: V1_14,
        controlplane_only: false,
        replaces: &[
            rep(
                &["machine", "kubelet", "nodeIP"],
                Set::Present,
                V1_14,
                src(NODE, T14),
            ),
            rep(
                &["machine", "kubelet", "skipNodeRegistration"],
                Set::Present,
                V1_14,
                src(NODE, T14),
            ),
            rep(
                &["machine", "kubelet", "registerWithFQDN"],
                Set::Present,
                V1_14,
                src(NODE, T14),
            ),
            rep(
                &["machine", "nodeLabels"],
                Set::Present,
                V1_14,
                src(NODE, T14),
            ),
            rep(
                &["machine", "nodeAnnotations"],
                Set::Present,
                V1_14,
                src(NODE, T14),
            ),
            rep(
                &["machine", "nodeTaints"],
                Set::Present,
                V1_14,
                src(NODE, T14),
            ),
            rep(
                &["cluster", "allowSchedulingOnControlPlanes"],
                Set::Present,
                V1_14,
                src(NODE, T14),
            ),
            rep(
                &["cluster", "allowSchedulingOnMasters"],
                Set::Present,
                V1_14,
                src(NODE, T14),
            ),
        ],
        source: src(NODE, T14),
    },
    Document {
        kind: "KubeletConfig",
        api_version: "v1alpha1",
        since: V1_14,
        controlplane_only: false,
        replaces: &[rep(
            &["machine", "kubelet"],
            Set::Present,
            V1_14,
            src(KUBELET, T14),
        )],
        source: src(KUBELET, T14),
    },
    Document {
        kind: "KubeCredentialProviderConfig",
        api_version: "v1alpha1",
        since: V1_14,
        controlplane_only: false,
        replaces: &[rep(
            &["machine", "kubelet"],
            Set::Present,
            V1_14,
            src(CREDENTIAL_PROVIDER, T14),
        )],
        source: src(CREDENTIAL_PROVIDER, T14),
    },
    Document {
        kind: "KubeAPIServerConfig",
        api_version: "v1alpha1",
        since: V1_14,
        controlplane_only: true,
        replaces: &[
            rep(
                &["cluster", "apiServer"],
                Set::Present,
                V1_14,
                src(APISERVER, T14),
            ),
            rep(
                &["cluster", "controlPlane", "localAPIServerPort"],
                Set::NonZero,
                V1_14,
                src(APISERVER, T14),
            ),
        ],
        source: src(APISERVER, T14),
    },
    Document {
        kind: "UnattendedInstallConfig",
        api_version: "v1alpha1",
        since: V1_14,
        controlplane_only: false,
        replaces: &[rep(
            &["machine", "install"],
            Set::Present,
            V1_14,
            src(UNATTENDED, T14),
        )],
        source: src(UNATTENDED, T14),
    },
    Document {
        kind: "SysctlConfig",
        api_version: "v1alpha1",
        since: V1_14,
        controlplane_only: false,
        // Merged with `.machine.sysctls`, the document winning on a key; no conflict check.
        replaces: &[],
        source: src("pkg/machinery/config/types/runtime/sysctl.go", T14),
    },
    Document {
        kind: "ImageCacheConfig",
        api_version: "v1alpha1",
        since: V1_14,
        controlplane_only: false,
        replaces: &[rep(
            &["machine", "features", "imageCache"],
            Set::Present,
            V1_14,
            src(IMAGE_CACHE, T14),
        )],
        source: src(IMAGE_CACHE, T14),
    },
    Document {
        kind: "DiscoveryServiceConfig",
        api_version: "v1alpha1",
        since: V1_14,
        controlplane_only: false,
        replaces: &[rep(
            &["cluster", "discovery"],
            Set::Present,
            V1_14,
            src(DISCOVERY, T14),
        )],
        source: src(DISCOVERY, T14),
    },
];

/// Where a setting lives in the configuration a release's `talosctl gen config` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// A field of the v1alpha1 document.
    V1Alpha1(&'static [&'static str]),
    /// A field of a document of this kind (`[]` is the document itself).
    Document {
        kind: &'static str,
        path: &'static [&'static str],
    },
}

/// A [`Form`] with the place it was read.
#[derive(Debug, Clone, Copy)]
pub struct Placed {
    pub form: Form,
    pub source: Source,
}

/// The settings talext renders, in the form the release's own generated config uses, so a
/// rendered patch never sits next to a document that refuses it.
#[derive(Debug, Clone, Copy)]
pub struct Forms {
    /// The kubelet node IP filter.
    pub node_ip: Placed,
    /// Extra SANs of the kube-apiserver certificate.
    pub api_server_sans: Placed,
    /// The installer image.
    pub install_image: Placed,
    /// KubeSpan (enabled, endpoint filters).
    pub kubespan: Placed,
    /// Kernel parameters.
    pub sysctls: Placed,
    /// SANs of the Talos API certificate.
    pub machine_sans: Placed,
    /// The subnets etcd advertises.
    pub etcd_subnets: Placed,
    /// Registry mirrors (`talext bundle push --mirror-config`).
    pub registry_mirrors: Placed,
    /// A registry's TLS settings, its CA above all.
    pub registry_tls: Placed,
}

/// A kernel parameter Talos sets itself at boot.
#[derive(Debug, Clone, Copy)]
pub struct SysctlDefault {
    pub key: &'static str,
    pub value: &'static str,
    /// Only when the kernel has IPv6.
    pub ipv6_only: bool,
    pub source: Source,
}

/// The configuration facts of one minor release.
#[derive(Debug, Clone, Copy)]
pub struct Release {
    pub minor: Minor,
    /// The tag the facts were read at (`main` for the release in development).
    pub tag: &'static str,
    /// The directory whose `registry.Register` calls list the document kinds of the release
    /// ([`documents`] filters [`DOCUMENTS`] by it).
    pub source: Source,
    pub forms: Forms,
    pub forwarding: &'static [SysctlDefault],
}

const V1ALPHA1: &str = "pkg/machinery/config/types/v1alpha1/v1alpha1_types.go";
const TYPES: &str = "pkg/machinery/config/types";
const GEN_INIT: &str = "pkg/machinery/config/generate/init.go";
const GEN_K8S: &str = "pkg/machinery/config/generate/kubernetes.go";
const GEN_NET: &str = "pkg/machinery/config/generate/network.go";
const KERNEL_DEFAULTS: &str =
    "internal/app/machined/pkg/controllers/runtime/kernel_param_defaults.go";

const fn v1(path: &'static [&'static str], tag: &'static str) -> Placed {
    Placed {
        form: Form::V1Alpha1(path),
        source: src(V1ALPHA1, tag),
    }
}

const fn doc(
    kind: &'static str,
    path: &'static [&'static str],
    gen: &'static str,
    tag: &'static str,
) -> Placed {
    Placed {
        form: Form::Document { kind, path },
        source: src(gen, tag),
    }
}

const NODE_IP_V1: &[&str] = &["machine", "kubelet", "nodeIP", "validSubnets"];
const API_SANS_V1: &[&str] = &["cluster", "apiServer", "certSANs"];
const INSTALL_V1: &[&str] = &["machine", "install", "image"];
const KUBESPAN_V1: &[&str] = &["machine", "network", "kubespan"];
const SYSCTLS_V1: &[&str] = &["machine", "sysctls"];
const MACHINE_SANS_V1: &[&str] = &["machine", "certSANs"];
const ETCD_V1: &[&str] = &["cluster", "etcd", "advertisedSubnets"];
const MIRRORS_V1: &[&str] = &["machine", "registries", "mirrors"];
const REGISTRY_CONFIG_V1: &[&str] = &["machine", "registries", "config"];
const GEN_REGISTRY: &str = "pkg/machinery/config/generate/registry.go";

/// `skipFallback` of a `.machine.registries.mirrors` entry exists from v1.9
/// (`MirrorSkipFallback` in `v1alpha1_types.go` at v1.9.0, absent at v1.8.0); the
/// `RegistryMirrorConfig` document has it from its first release.
pub const SKIP_FALLBACK_SINCE: Minor = Minor::new(1, 9);
pub const SKIP_FALLBACK_SOURCE: Source = src(V1ALPHA1, "v1.9.0");

/// Releases before v1.13: every setting is a v1alpha1 field.
const fn forms_v1alpha1(tag: &'static str) -> Forms {
    Forms {
        node_ip: v1(NODE_IP_V1, tag),
        api_server_sans: v1(API_SANS_V1, tag),
        install_image: v1(INSTALL_V1, tag),
        kubespan: v1(KUBESPAN_V1, tag),
        sysctls: v1(SYSCTLS_V1, tag),
        machine_sans: v1(MACHINE_SANS_V1, tag),
        etcd_subnets: v1(ETCD_V1, tag),
        registry_mirrors: v1(MIRRORS_V1, tag),
        registry_tls: v1(REGISTRY_CONFIG_V1, tag),
    }
}

/// v1.12: `gen config --registry-mirror` / `--registry-ca` write `RegistryMirrorConfig` and
/// `RegistryTLSConfig` documents instead of `.machine.registries` (contract
/// `MultidocNetworkConfigSupported`, greater than v1.11, in `generate/registry.go`).
const fn forms_v1_12(tag: &'static str) -> Forms {
    let mut f = forms_v1alpha1(tag);
    f.registry_mirrors = doc("RegistryMirrorConfig", &[], GEN_REGISTRY, tag);
    f.registry_tls = doc("RegistryTLSConfig", &[], GEN_REGISTRY, tag);
    f
}

/// v1.13: `gen config --with-kubespan` writes a `KubeSpanConfig` (contract
/// `KubeSpanMultidocConfig`, greater than v1.12).
const fn forms_v1_13(tag: &'static str) -> Forms {
    let mut f = forms_v1_12(tag);
    f.kubespan = doc("KubeSpanConfig", &[], GEN_NET, tag);
    f
}

/// v1.14 and later: the Kubernetes, install and sysctl settings move to documents (contract
/// `MultidocKubernetesConfigSupported`, `UnattendedInstallConfig`,
/// `MultidocSysctlConfigSupported`, all greater than v1.13); `gen config` leaves
/// `.machine.kubelet`, `.cluster.apiServer`, `.machine.install` and `.machine.sysctls` out.
/// `.machine.certSANs` and `.cluster.etcd` stay in v1alpha1.
const fn forms_v1_14(tag: &'static str) -> Forms {
    let mut f = forms_v1_13(tag);
    f.node_ip = doc("KubeNodeConfig", &["nodeIP", "validSubnets"], GEN_K8S, tag);
    f.api_server_sans = doc("KubeAPIServerConfig", &["certExtraSANs"], GEN_K8S, tag);
    f.install_image = doc(
        "UnattendedInstallConfig",
        &["installer", "image"],
        GEN_INIT,
        tag,
    );
    f.sysctls = doc("SysctlConfig", &["params"], GEN_INIT, tag);
    f
}

/// `net.ipv4.ip_forward=1` always and, when the kernel has IPv6,
/// `net.ipv6.conf.default.forwarding=1`; never `net.ipv6.conf.all.forwarding`.
macro_rules! forwarding {
    ($tag:expr) => {
        &[
            SysctlDefault {
                key: "net.ipv4.ip_forward",
                value: "1",
                ipv6_only: false,
                source: src(KERNEL_DEFAULTS, $tag),
            },
            SysctlDefault {
                key: "net.ipv6.conf.default.forwarding",
                value: "1",
                ipv6_only: true,
                source: src(KERNEL_DEFAULTS, $tag),
            },
        ]
    };
}

macro_rules! row {
    ($major:expr, $minor:expr, $tag:expr, $forms:ident) => {
        Release {
            minor: Minor::new($major, $minor),
            tag: $tag,
            source: src(TYPES, $tag),
            forms: $forms($tag),
            forwarding: forwarding!($tag),
        }
    };
}

/// One row per minor release in [`super::KNOWN`], oldest first.
pub static RELEASES: &[Release] = &[
    row!(1, 7, "v1.7.0", forms_v1alpha1),
    row!(1, 8, "v1.8.0", forms_v1alpha1),
    row!(1, 9, "v1.9.0", forms_v1alpha1),
    row!(1, 10, "v1.10.0", forms_v1alpha1),
    row!(1, 11, "v1.11.0", forms_v1alpha1),
    row!(1, 12, "v1.12.0", forms_v1_12),
    row!(1, 13, "v1.13.0", forms_v1_13),
    row!(1, 14, "v1.14.0-rc.1", forms_v1_14),
    row!(1, 15, "main", forms_v1_14),
];

/// The row of a minor release; a release newer than the table reads the newest row, one older
/// than v1.7 has none.
pub fn release(minor: Minor) -> Option<&'static Release> {
    let newest = RELEASES.last()?;
    if minor > newest.minor {
        return Some(newest);
    }
    RELEASES.iter().find(|r| r.minor == minor)
}

/// The document kinds of [`DOCUMENTS`] that `minor` registers.
pub fn documents(minor: Minor) -> impl Iterator<Item = &'static Document> {
    DOCUMENTS.iter().filter(move |d| d.since <= minor)
}

/// The document of this kind, whatever the release.
pub fn document(kind: &str) -> Option<&'static Document> {
    DOCUMENTS.iter().find(|d| d.kind == kind)
}

/// What Talos sets `key` to by itself on `minor`, if anything.
pub fn sysctl_default(minor: Option<Minor>, key: &str) -> Option<&'static SysctlDefault> {
    let row = match minor {
        Some(m) => release(m)?,
        None => RELEASES.last()?,
    };
    row.forwarding.iter().find(|s| s.key == key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::KNOWN;

    #[test]
    fn rows_follow_known() {
        let minors: Vec<Minor> = RELEASES.iter().map(|r| r.minor).collect();
        assert_eq!(minors, KNOWN);
        assert_eq!(release(Minor::new(1, 6)).map(|r| r.minor), None);
        assert_eq!(
            release(Minor::new(1, 16)).map(|r| r.minor),
            Some(Minor::new(1, 15))
        );
        assert_eq!(
            release(Minor::new(1, 11)).map(|r| r.minor),
            Some(Minor::new(1, 11))
        );
    }

    #[test]
    fn document_forms_exist_in_their_release() {
        for r in RELEASES {
            let f = &r.forms;
            for p in [
                f.node_ip,
                f.api_server_sans,
                f.install_image,
                f.kubespan,
                f.sysctls,
                f.machine_sans,
                f.etcd_subnets,
                f.registry_mirrors,
                f.registry_tls,
            ] {
                if let Form::Document { kind, .. } = p.form {
                    let d = document(kind).unwrap_or_else(|| panic!("{kind}"));
                    assert!(d.since <= r.minor, "{kind} on {}", r.minor);
                }
            }
        }
        assert_eq!(
            documents(Minor::new(1, 13))
                .filter(|d| d.kind == "KubeNodeConfig")
                .count(),
            0
        );
        let ks = document("KubeSpanConfig").unwrap();
        assert_eq!(ks.replaces[0].dotted(), ".machine.network.kubespan");
    }
}
