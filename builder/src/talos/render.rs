//! `config render`: from a [`Spec`], the documents one node needs — strategic-merge patches of
//! the v1alpha1 config and the Tailscale `ExtensionServiceConfig` — as multi-document YAML.
//!
//! Each concern is a separate [`Part`] (so `--split` can write one patch per file, the way
//! `manifests/patches/` holds them); the combined output merges the v1alpha1 parts into one
//! document, because a multi-document patch may hold only one v1alpha1 document.

use super::goyaml::{self, GoValue};
use super::net::{parse_prefix, TAILNET_V4, TAILNET_V6};
use super::spec::{NodeSpec, Role, Spec, TalosVersion};

/// Where the auth secret is mounted inside the extension container (read-only bind mount of an
/// `ExtensionServiceConfig.configFiles` entry, contract §6.2). containerboot passes
/// `TS_AUTHKEY=file:…` to `tailscale up`, whose CLI reads the file.
pub const AUTHKEY_PATH: &str = "/etc/tailscale/authkey";

/// The filters that keep tailnet addresses out of KubeSpan endpoints (tailscale.md §3.5).
pub const KUBESPAN_ENDPOINTS: [&str; 4] = [
    "0.0.0.0/0",
    "!100.64.0.0/10",
    "::/0",
    "!fd7a:115c:a1e0::/48",
];

/// One rendered document with the file name it has in split output.
#[derive(Debug, Clone)]
pub struct Part {
    /// `kubelet-node-ip`, `etcd-subnets`, `cert-sans`, `sysctls`, `kubespan`, `install-image`,
    /// `extension-service-config`.
    pub name: &'static str,
    /// Comment lines written above the document.
    pub comment: Vec<String>,
    pub value: GoValue,
    /// Part of the v1alpha1 config (merged in combined output) rather than its own document.
    pub v1alpha1: bool,
}

/// What `--redact` changes: the secret is replaced by a placeholder.
#[derive(Debug, Clone)]
pub enum Secret {
    Value(String),
    Redacted(String),
}

impl Secret {
    fn text(&self) -> &str {
        match self {
            Secret::Value(s) | Secret::Redacted(s) => s,
        }
    }
}

fn map(entries: Vec<(&str, GoValue)>) -> GoValue {
    GoValue::Map(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

fn strs<S: AsRef<str>>(items: &[S]) -> GoValue {
    GoValue::Seq(items.iter().map(|s| GoValue::str(s.as_ref())).collect())
}

/// LAN subnets followed by the tailnet exclusions (exclusions last, as Talos documents them).
fn node_filters(spec: &Spec) -> Vec<String> {
    let mut v = spec.cluster.lan_subnets.clone();
    v.push(format!("!{TAILNET_V4}"));
    v.push(format!("!{TAILNET_V6}"));
    v
}

/// The documents for one node, in output order.
pub fn render_node(spec: &Spec, node: &NodeSpec, secret: &Secret) -> Vec<Part> {
    let version = TalosVersion::parse(&spec.talos_version).expect("validated");
    let ts = &spec.tailscale;
    let mut parts = Vec::new();

    parts.push(Part {
        name: "kubelet-node-ip",
        comment: vec![
            "Pin the kubelet node IP to the LAN: Talos counts tailscale0's address as a node"
                .into(),
            "address, and a node registered with its tailnet IP breaks pod networking.".into(),
        ],
        value: map(vec![(
            "machine",
            map(vec![(
                "kubelet",
                map(vec![(
                    "nodeIP",
                    map(vec![("validSubnets", strs(&node_filters(spec)))]),
                )]),
            )]),
        )]),
        v1alpha1: true,
    });

    if node.role == Role::Controlplane {
        parts.push(Part {
            name: "etcd-subnets",
            comment: vec![
                "Keep etcd peers on the LAN, never on the tailnet (control planes only).".into(),
            ],
            value: map(vec![(
                "cluster",
                map(vec![(
                    "etcd",
                    map(vec![("advertisedSubnets", strs(&node_filters(spec)))]),
                )]),
            )]),
            v1alpha1: true,
        });
    }

    if let Some(tailnet) = &ts.tailnet {
        let host = node.hostname();
        let sans = vec![host.to_string(), format!("{host}.{tailnet}")];
        let mut v = vec![("machine", map(vec![("certSANs", strs(&sans))]))];
        if node.role == Role::Controlplane {
            v.push((
                "cluster",
                map(vec![("apiServer", map(vec![("certSANs", strs(&sans))]))]),
            ));
        }
        parts.push(Part {
            name: "cert-sans",
            comment: vec![
                "MagicDNS names in the Talos API (and, on control planes, kube-apiserver)".into(),
                "certificates; Talos adds the tailnet IP itself once it is up.".into(),
            ],
            value: map(v),
            v1alpha1: true,
        });
    }

    let v4_routes = node
        .routes
        .iter()
        .any(|r| parse_prefix(r).map(|p| p.is_v4()).unwrap_or(false));
    let v6_routes = node
        .routes
        .iter()
        .any(|r| parse_prefix(r).map(|p| !p.is_v4()).unwrap_or(false));
    if v4_routes || v6_routes || node.exit_node {
        let mut sysctls = Vec::new();
        if v4_routes || node.exit_node {
            sysctls.push(("net.ipv4.ip_forward", GoValue::str("1")));
        }
        if v6_routes || node.exit_node {
            sysctls.push(("net.ipv6.conf.all.forwarding", GoValue::str("1")));
        }
        parts.push(Part {
            name: "sysctls",
            comment: vec![
                "Forwarding for advertised routes: containerboot cannot write /proc/sys inside"
                    .into(),
                "the extension, and Talos does not enable net.ipv6.conf.all.forwarding itself."
                    .into(),
            ],
            value: map(vec![("machine", map(vec![("sysctls", map(sysctls))]))]),
            v1alpha1: true,
        });
    }

    if spec.cluster.kubespan {
        parts.push(Part {
            name: "kubespan",
            comment: vec![
                "KubeSpan must not use tailnet addresses as WireGuard endpoints".into(),
                "(WireGuard inside WireGuard, fragmenting at the tailnet's 1280 MTU).".into(),
            ],
            value: map(vec![(
                "machine",
                map(vec![(
                    "network",
                    map(vec![(
                        "kubespan",
                        map(vec![
                            ("enabled", GoValue::Bool(true)),
                            (
                                "filters",
                                map(vec![("endpoints", strs(&KUBESPAN_ENDPOINTS))]),
                            ),
                        ]),
                    )]),
                )]),
            )]),
            v1alpha1: true,
        });
    }

    if let Some(image) = &spec.cluster.install_image {
        parts.push(Part {
            name: "install-image",
            comment: vec![
                "The installer that carries the extension, pinned by digest: installing or".into(),
                "upgrading from an image without it silently removes ext-tailscale.".into(),
            ],
            value: map(vec![(
                "machine",
                map(vec![("install", map(vec![("image", GoValue::str(image))]))]),
            )]),
            v1alpha1: true,
        });
    }

    parts.push(Part {
        name: "extension-service-config",
        comment: vec![
            format!("Tailscale extension settings (ExtensionServiceConfig, Talos >= v1.7; target {version})."),
            "Replace the whole document when it changes: patches append to `environment`,".into(),
            "and for duplicated keys the older value wins.".into(),
        ],
        value: extension_service_config(spec, node, secret),
        v1alpha1: false,
    });
    parts
}

fn extension_service_config(spec: &Spec, node: &NodeSpec, secret: &Secret) -> GoValue {
    let ts = &spec.tailscale;
    // Never set TS_STATE_DIR, TS_SOCKET, TS_USERSPACE or PATH: the extension's service file sets
    // them and a second copy in the environment list is at best ignored (tailscale.md §0).
    let mut env = vec![
        format!("TS_AUTHKEY=file:{AUTHKEY_PATH}"),
        format!("TS_AUTH_ONCE={}", ts.auth_once),
        format!("TS_ACCEPT_DNS={}", ts.accept_dns),
        format!("TS_HOSTNAME={}", node.hostname()),
    ];
    if !node.routes.is_empty() {
        env.push(format!("TS_ROUTES={}", node.routes.join(",")));
    }
    let mut extra = Vec::new();
    if !ts.tags.is_empty() {
        let tags: Vec<String> = ts
            .tags
            .iter()
            .map(|t| {
                if t.starts_with("tag:") {
                    t.clone()
                } else {
                    format!("tag:{t}")
                }
            })
            .collect();
        extra.push(format!("--advertise-tags={}", tags.join(",")));
    }
    if let Some(url) = &ts.login_server {
        extra.push(format!("--login-server={url}"));
    }
    if node.exit_node {
        extra.push("--advertise-exit-node".into());
    }
    if !extra.is_empty() {
        env.push(format!("TS_EXTRA_ARGS={}", extra.join(" ")));
    }
    if let Some(port) = ts.port {
        env.push(format!("TS_TAILSCALED_EXTRA_ARGS=--port={port}"));
    }
    if let Some(mtu) = ts.mtu {
        env.push(format!("TS_DEBUG_MTU={mtu}"));
    }
    if let Some(mode) = &ts.firewall_mode {
        env.push(format!("TS_DEBUG_FIREWALL_MODE={mode}"));
    }
    map(vec![
        ("apiVersion", GoValue::str("v1alpha1")),
        ("kind", GoValue::str("ExtensionServiceConfig")),
        ("name", GoValue::str("tailscale")),
        (
            "configFiles",
            GoValue::Seq(vec![map(vec![
                ("content", GoValue::str(secret.text())),
                ("mountPath", GoValue::str(AUTHKEY_PATH)),
            ])]),
        ),
        ("environment", strs(&env)),
    ])
}

/// Deep-merge `b` into `a`: maps merge key by key (keeping `a`'s order), lists append, scalars
/// are replaced — Talos's strategic merge for the keys we emit.
pub fn merge(a: &mut GoValue, b: GoValue) {
    match (a, b) {
        (GoValue::Map(am), GoValue::Map(bm)) => {
            for (k, v) in bm {
                match am.iter_mut().find(|(ak, _)| *ak == k) {
                    Some((_, av)) => merge(av, v),
                    None => am.push((k, v)),
                }
            }
        }
        (GoValue::Seq(aseq), GoValue::Seq(bseq)) => aseq.extend(bseq),
        (a, b) => *a = b,
    }
}

fn write_doc(out: &mut String, comment: &[String], value: &GoValue) {
    for line in comment {
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(&goyaml::marshal(value, 2));
}

/// The combined multi-document patch for one node: one v1alpha1 document, then the others.
pub fn combined(spec: &Spec, node: &NodeSpec, parts: &[Part]) -> String {
    let mut out = format!(
        "# Rendered by `talext config render` for node `{}` ({}), Talos {}.\n# Apply as a strategic-merge patch: talosctl ... --config-patch @{}.yaml\n",
        node.name,
        node.role.as_str(),
        spec.talos_version,
        node.name
    );
    let mut v1 = GoValue::Map(Vec::new());
    let mut comment = Vec::new();
    for p in parts.iter().filter(|p| p.v1alpha1) {
        merge(&mut v1, p.value.clone());
        comment.push(format!("{}:", p.name));
        comment.extend(p.comment.iter().map(|l| format!("  {l}")));
    }
    // The kubelet filter is always rendered, so the v1alpha1 document is never empty.
    write_doc(&mut out, &comment, &v1);
    for p in parts.iter().filter(|p| !p.v1alpha1) {
        out.push_str("---\n");
        write_doc(&mut out, &p.comment, &p.value);
    }
    out
}

/// One standalone patch file.
pub fn single(part: &Part) -> String {
    let mut out = String::new();
    write_doc(&mut out, &part.comment, &part.value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::talos::spec;

    const SPEC: &str = "talosVersion: v1.11.5\ncluster:\n  lanSubnets: [192.168.1.0/24]\n  kubespan: true\ntailscale:\n  auth:\n    keyEnv: TS_KEY\n  tags: [talos]\n  tailnet: t.ts.net\nnodes:\n  - name: cp\n    role: controlplane\n    routes: [\"fd00::/64\"]\n  - name: w\n    role: worker\n";

    #[test]
    fn control_plane_gets_etcd_and_v6_forwarding() {
        let s = spec::parse(SPEC, "s").unwrap();
        let parts = render_node(&s, &s.nodes[0], &Secret::Redacted("${TS_KEY}".into()));
        let names: Vec<_> = parts.iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            vec![
                "kubelet-node-ip",
                "etcd-subnets",
                "cert-sans",
                "sysctls",
                "kubespan",
                "extension-service-config"
            ]
        );
        let out = combined(&s, &s.nodes[0], &parts);
        assert!(out.contains("net.ipv6.conf.all.forwarding: \"1\""), "{out}");
        assert!(!out.contains("net.ipv4.ip_forward"), "{out}");
        assert!(
            out.contains("- TS_EXTRA_ARGS=--advertise-tags=tag:talos\n"),
            "{out}"
        );
        assert!(out.contains("- TS_ROUTES=fd00::/64\n"), "{out}");
        assert!(out.contains("content: ${TS_KEY}\n"), "{out}");
        assert_eq!(out.matches("\n---\n").count(), 1, "{out}");
    }

    #[test]
    fn worker_has_no_cluster_keys() {
        let s = spec::parse(SPEC, "s").unwrap();
        let parts = render_node(&s, &s.nodes[1], &Secret::Redacted("x".into()));
        let out = combined(&s, &s.nodes[1], &parts);
        assert!(!out.contains("cluster:"), "{out}");
        assert!(!out.contains("sysctls"), "{out}");
    }
}
