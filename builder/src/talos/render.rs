//! `config render`: from a [`Spec`], the documents one node needs — strategic-merge patches of
//! the v1alpha1 config and the Tailscale `ExtensionServiceConfig` — as multi-document YAML.
//!
//! Each concern is a separate [`Part`] (so `--split` can write one patch per file, the way
//! `manifests/patches/` holds them); the combined output merges the v1alpha1 parts into one
//! document, because a multi-document patch may hold only one v1alpha1 document.
//!
//! Where a setting goes is read from the release table (`crate::release::config`): from v1.13
//! KubeSpan is a `KubeSpanConfig` document, from v1.14 the node IP, the kube-apiserver SANs, the
//! install image and the sysctls are `KubeNodeConfig`, `KubeAPIServerConfig`,
//! `UnattendedInstallConfig` and `SysctlConfig` documents, as `talosctl gen config` writes them.

use super::net::{parse_prefix, TAILNET_V4, TAILNET_V6};
use super::spec::{NodeSpec, Role, Spec, TalosVersion};
use crate::goyaml::{self, GoValue};
use crate::release::config::{self, Form, Placed, Release};
use crate::release::Minor;

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
    /// `kubelet-node-ip`, `etcd-subnets`, `cert-sans`, `api-server-cert-sans` (v1.14+),
    /// `sysctls`, `kubespan`, `install-image`, `extension-service-config`.
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

/// Put `value` where `placed` says the release keeps it: nested under a v1alpha1 path, or in
/// a document of its kind (`apiVersion` and `kind` first, as Talos writes them).
fn place(placed: &Placed, value: GoValue) -> (GoValue, bool) {
    fn nest(path: &[&str], value: GoValue) -> GoValue {
        path.iter().rev().fold(value, |v, k| map(vec![(k, v)]))
    }
    match placed.form {
        Form::V1Alpha1(path) => (nest(path, value), true),
        Form::Document { kind, path } => {
            let api_version = config::document(kind)
                .map(|d| d.api_version)
                .unwrap_or("v1alpha1");
            let mut doc = map(vec![
                ("apiVersion", GoValue::str(api_version)),
                ("kind", GoValue::str(kind)),
            ]);
            merge(&mut doc, nest(path, value));
            (doc, false)
        }
    }
}

fn part(name: &'static str, comment: Vec<String>, placed: &Placed, value: GoValue) -> Part {
    let (value, v1alpha1) = place(placed, value);
    Part {
        name,
        comment,
        value,
        v1alpha1,
    }
}

/// The configuration facts of the spec's release (the spec refuses releases before v1.7, the
/// first row of the table; a newer release than the table reads its newest row).
pub fn release_of(spec: &Spec) -> &'static Release {
    Minor::of(&spec.talos_version)
        .and_then(config::release)
        .expect("the spec was validated")
}

/// The documents for one node, in output order, in the forms the target release's own
/// `talosctl gen config` uses (never a v1alpha1 field next to the document that replaces it).
pub fn render_node(spec: &Spec, node: &NodeSpec, secret: &Secret) -> Vec<Part> {
    let version = TalosVersion::parse(&spec.talos_version).expect("validated");
    let forms = &release_of(spec).forms;
    let ts = &spec.tailscale;
    let mut parts = Vec::new();
    let cp = node.role == Role::Controlplane;

    parts.push(part(
        "kubelet-node-ip",
        vec![
            "Pin the kubelet node IP to the LAN: Talos counts tailscale0's address as a node"
                .into(),
            "address, and a node registered with its tailnet IP breaks pod networking.".into(),
        ],
        &forms.node_ip,
        strs(&node_filters(spec)),
    ));

    if cp {
        parts.push(part(
            "etcd-subnets",
            vec!["Keep etcd peers on the LAN, never on the tailnet (control planes only).".into()],
            &forms.etcd_subnets,
            strs(&node_filters(spec)),
        ));
    }

    if let Some(tailnet) = &ts.tailnet {
        let host = node.hostname();
        let sans = vec![host.to_string(), format!("{host}.{tailnet}")];
        let comment = vec![
            "MagicDNS names in the Talos API (and, on control planes, kube-apiserver)".into(),
            "certificates; Talos adds the tailnet IP itself once it is up.".into(),
        ];
        let (mut value, v1alpha1) = place(&forms.machine_sans, strs(&sans));
        let mut api_doc = None;
        if cp {
            let (api, api_v1) = place(&forms.api_server_sans, strs(&sans));
            if api_v1 == v1alpha1 {
                merge(&mut value, api);
            } else {
                api_doc = Some(api);
            }
        }
        parts.push(Part {
            name: "cert-sans",
            comment,
            value,
            v1alpha1,
        });
        if let Some(value) = api_doc {
            parts.push(Part {
                name: "api-server-cert-sans",
                comment: vec![
                    "MagicDNS names in the kube-apiserver certificate (control planes only). A patch"
                        .into(),
                    "of the KubeAPIServerConfig `talosctl gen config` writes: alone it lacks `image`."
                        .into(),
                ],
                value,
                v1alpha1: false,
            });
        }
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
        parts.push(part(
            "sysctls",
            vec![
                "Forwarding for advertised routes: containerboot cannot write /proc/sys inside"
                    .into(),
                "the extension, and Talos does not enable net.ipv6.conf.all.forwarding itself."
                    .into(),
            ],
            &forms.sysctls,
            map(sysctls),
        ));
    }

    if spec.cluster.kubespan {
        let mut filters = vec![("endpoints", strs(&KUBESPAN_ENDPOINTS))];
        let mut comment = vec![
            "KubeSpan must not use tailnet addresses as WireGuard endpoints".into(),
            "(WireGuard inside WireGuard, fragmenting at the tailnet's 1280 MTU).".into(),
        ];
        if matches!(forms.kubespan.form, Form::Document { .. }) {
            // The tailscale0 address is a node address KubeSpan would otherwise route to
            // its peers; the tailnet stays reachable over tailscale0 itself.
            filters.push(("excludeAdvertisedNetworks", strs(&[TAILNET_V4, TAILNET_V6])));
            comment.push(
                "Nor announce the tailnet ranges as networks reachable over KubeSpan.".into(),
            );
        }
        parts.push(part(
            "kubespan",
            comment,
            &forms.kubespan,
            map(vec![
                ("enabled", GoValue::Bool(true)),
                ("filters", map(filters)),
            ]),
        ));
    }

    if let Some(image) = &spec.cluster.install_image {
        let mut comment = vec![
            "The installer that carries the extension, pinned by digest: installing or".into(),
            "upgrading from an image without it silently removes ext-tailscale.".into(),
        ];
        if matches!(forms.install_image.form, Form::Document { .. }) {
            comment.push(
                "A patch of the UnattendedInstallConfig `talosctl gen config --install-disk`"
                    .into(),
            );
            comment.push("writes: alone it lacks `provisioning.diskSelector`.".into());
        }
        parts.push(part(
            "install-image",
            comment,
            &forms.install_image,
            GoValue::str(image),
        ));
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
    // `machine` before `cluster`, as Talos writes the document.
    if let GoValue::Map(m) = &mut v1 {
        m.sort_by_key(|(k, _)| k != "machine");
    }
    // From v1.14 a worker without tailnet SANs may have no v1alpha1 setting at all.
    let mut first = true;
    if !matches!(&v1, GoValue::Map(m) if m.is_empty()) {
        write_doc(&mut out, &comment, &v1);
        first = false;
    }
    for p in parts.iter().filter(|p| !p.v1alpha1) {
        if !first {
            out.push_str("---\n");
        }
        first = false;
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

    #[test]
    fn v1_14_worker_without_sans_has_no_v1alpha1_document() {
        let text = SPEC
            .replace("v1.11.5", "v1.14.0")
            .replace("  tailnet: t.ts.net\n", "");
        let s = spec::parse(&text, "s").unwrap();
        let parts = render_node(&s, &s.nodes[1], &Secret::Redacted("x".into()));
        assert!(parts.iter().all(|p| !p.v1alpha1));
        let out = combined(&s, &s.nodes[1], &parts);
        assert!(!out.contains("machine:"), "{out}");
        assert!(out.contains("kind: KubeNodeConfig\n"), "{out}");
        assert!(out.contains("kind: KubeSpanConfig\n"), "{out}");
        assert!(!out.starts_with("---"), "{out}");
        assert_eq!(out.matches("\n---\n").count(), 2, "{out}");
    }

    #[test]
    fn v1_13_moves_only_kubespan() {
        let s = spec::parse(&SPEC.replace("v1.11.5", "v1.13.2"), "s").unwrap();
        let parts = render_node(&s, &s.nodes[0], &Secret::Redacted("x".into()));
        let docs: Vec<_> = parts
            .iter()
            .filter(|p| !p.v1alpha1)
            .map(|p| p.name)
            .collect();
        assert_eq!(docs, vec!["kubespan", "extension-service-config"]);
        let out = combined(&s, &s.nodes[0], &parts);
        assert!(out.contains("  apiServer:\n    certSANs:\n"), "{out}");
        assert!(out.contains("  excludeAdvertisedNetworks:\n"), "{out}");
    }
}
