//! Rules on the Tailscale environment's own semantics and on the machine config around it, in
//! the v1alpha1 fields and in the documents that replace them from v1.13/v1.14: node-IP and
//! etcd filters, KubeSpan endpoint filters, the install image, nameservers (tailscale.md §1.2,
//! §3, §5; forwarding sysctls are in `forwarding.rs`).

use super::env::{esc_env, is_tailscale, Env};
use super::{Finding, Located, Options, Severity};
use crate::release::config::{self, Form};
use crate::talos::doc::Node;
use crate::talos::net::tailnet_leaks;
use crate::talos::receipt::is_pinned;
use crate::talos::schematic::Schematic;
use crate::talos::spec::Role;

const KUBE_NODE: &str = "KubeNodeConfig";
const UNATTENDED: &str = "UnattendedInstallConfig";

/// Per-document checks of a tailscale `environment` (called from the ESC rules).
pub fn check_tailscale_env(d: &Located, env: &Env, out: &mut Vec<Finding>) {
    if env.entries.is_empty() {
        // Nothing to check; `esc-empty` or the nesting rules already report the document.
        return;
    }
    if let Some(e) = env.get("TS_ADVERTISE_TAGS") {
        out.push(d.finding(
            "ts-advertise-tags",
            Severity::Error,
            e.line,
            "`TS_ADVERTISE_TAGS` does not exist; containerboot ignores it and the node joins untagged",
            "pass tags as `TS_EXTRA_ARGS=--advertise-tags=tag:a,tag:b`",
        ));
    }
    let once_hint = "set `TS_AUTH_ONCE=true`: without it `tailscale up` re-runs with the auth key on every start, and an expired key logs the node out";
    match env.get("TS_AUTH_ONCE") {
        None => out.push(
            d.finding(
                "ts-auth-once",
                Severity::Warning,
                d.doc
                    .root
                    .entry("environment")
                    .map(|e| e.line())
                    .unwrap_or(d.doc.line),
                "`TS_AUTH_ONCE` is not set (containerboot's default is false)",
                once_hint,
            ),
        ),
        Some(e) if env.bool("TS_AUTH_ONCE") != Some(true) => out.push(d.finding(
            "ts-auth-once",
            Severity::Warning,
            e.line,
            format!("`TS_AUTH_ONCE={}` re-authenticates on every start", e.value),
            once_hint,
        )),
        _ => {}
    }
    let dns_hint = "the extension cannot rewrite Talos's read-only /etc/resolv.conf; keep `TS_ACCEPT_DNS=false` and use tailnet IPs or MagicDNS names from clients";
    if env.bool("TS_ACCEPT_DNS") == Some(true) {
        let e = env.get("TS_ACCEPT_DNS").expect("checked");
        out.push(d.finding(
            "ts-accept-dns",
            Severity::Warning,
            e.line,
            "`TS_ACCEPT_DNS` is true",
            dns_hint,
        ));
    }
    if let Some(e) = env.get("TS_EXTRA_ARGS") {
        if env
            .extra_args()
            .iter()
            .any(|a| *a == "--accept-dns" || *a == "--accept-dns=true")
        {
            out.push(d.finding(
                "ts-accept-dns",
                Severity::Warning,
                e.line,
                "`TS_EXTRA_ARGS` turns on `--accept-dns` (it overrides `TS_ACCEPT_DNS` since v1.86)",
                dns_hint,
            ));
        }
    }
    check_conflicts(d, env, out);
    let oauth = env.has("TS_CLIENT_SECRET")
        || env.has("TS_CLIENT_ID")
        || env
            .get("TS_AUTHKEY")
            .is_some_and(|e| e.value.starts_with("tskey-client-"));
    let tagged = env
        .extra_args()
        .iter()
        .any(|a| a.starts_with("--advertise-tags="));
    if oauth && !tagged {
        out.push(d.finding(
            "ts-oauth-tags",
            Severity::Error,
            env.get("TS_CLIENT_SECRET").or(env.get("TS_CLIENT_ID")).or(env.get("TS_AUTHKEY")).map(|e| e.line).unwrap_or(d.doc.line),
            "OAuth login without `--advertise-tags`; tailscale refuses it (\"oauth authkeys require --advertise-tags\")",
            "add `TS_EXTRA_ARGS=--advertise-tags=tag:…` with tags the OAuth client owns",
        ));
    }
}

/// containerboot's `settings.validate()` (tailscale.md §1.2): combinations it exits on.
fn check_conflicts(d: &Located, env: &Env, out: &mut Vec<Finding>) {
    let set = |k: &str| env.has(k);
    let mut pairs_found: Vec<(&str, &str, &str)> = Vec::new();
    let mut report =
        |a: &'static str, b: &'static str, why: &'static str| pairs_found.push((a, b, why));
    let auth_key = if set("TS_AUTHKEY") {
        "TS_AUTHKEY"
    } else {
        "TS_AUTH_KEY"
    };
    for other in [
        "TS_CLIENT_ID",
        "TS_CLIENT_SECRET",
        "TS_ID_TOKEN",
        "TS_AUDIENCE",
    ] {
        if set(auth_key) && set(other) {
            report(
                auth_key,
                other,
                "an auth key excludes OAuth and workload identity settings",
            );
        }
    }
    let userspace = env.bool("TS_USERSPACE") == Some(true);
    for k in [
        "TS_DEST_IP",
        "TS_EXPERIMENTAL_DEST_DNS_NAME",
        "TS_TAILNET_TARGET_IP",
        "TS_TAILNET_TARGET_FQDN",
    ] {
        if userspace && set(k) {
            report("TS_USERSPACE", k, "proxying needs kernel networking");
        }
    }
    if userspace && env.bool("TS_EXPERIMENTAL_ENABLE_FORWARDING_OPTIMIZATIONS") == Some(true) {
        report(
            "TS_USERSPACE",
            "TS_EXPERIMENTAL_ENABLE_FORWARDING_OPTIMIZATIONS",
            "forwarding optimisations need kernel networking",
        );
    }
    let pairs: [(&str, &str, &str); 6] = [
        (
            "TS_DEST_IP",
            "TS_EXPERIMENTAL_DEST_DNS_NAME",
            "only one proxy target may be set",
        ),
        (
            "TS_TAILNET_TARGET_IP",
            "TS_TAILNET_TARGET_FQDN",
            "only one egress target may be set",
        ),
        (
            "TS_ID_TOKEN",
            "TS_CLIENT_SECRET",
            "workload identity and OAuth secrets exclude each other",
        ),
        (
            "TS_ID_TOKEN",
            "TS_AUDIENCE",
            "give an ID token or an audience, not both",
        ),
        (
            "TS_AUDIENCE",
            "TS_CLIENT_SECRET",
            "workload identity and OAuth secrets exclude each other",
        ),
        (
            "TS_DEST_IP",
            "TS_SERVE_CONFIG",
            "a serve config cannot be combined with a proxy target",
        ),
    ];
    for (a, b, why) in pairs {
        if set(a) && set(b) {
            report(a, b, why);
        }
    }
    for k in ["TS_ID_TOKEN", "TS_AUDIENCE"] {
        if set(k) && !env.has("TS_CLIENT_ID") {
            let e = env.get(k).expect("set");
            out.push(d.finding(
                "ts-env-conflict",
                Severity::Error,
                e.line,
                format!("`{k}` without `TS_CLIENT_ID`; containerboot exits at start"),
                "workload identity federation needs `TS_CLIENT_ID`",
            ));
        }
    }
    if set("TS_EXPERIMENTAL_VERSIONED_CONFIG_DIR") {
        for k in [
            "TS_HOSTNAME",
            "TS_EXTRA_ARGS",
            "TS_AUTHKEY",
            "TS_ROUTES",
            "TS_ACCEPT_DNS",
            "TS_CLIENT_ID",
            "TS_CLIENT_SECRET",
            "TS_ID_TOKEN",
            "TS_AUDIENCE",
        ] {
            if set(k) {
                report(
                    "TS_EXPERIMENTAL_VERSIONED_CONFIG_DIR",
                    k,
                    "a config file replaces the individual settings",
                );
            }
        }
    }
    if env.bool("TS_ENABLE_HEALTH_CHECK") == Some(true) && set("TS_HEALTHCHECK_ADDR_PORT") {
        report(
            "TS_ENABLE_HEALTH_CHECK",
            "TS_HEALTHCHECK_ADDR_PORT",
            "the deprecated listener conflicts with the new one",
        );
    }
    for (a, b, why) in pairs_found {
        let line = env
            .get(b)
            .or(env.get(a))
            .map(|e| e.line)
            .unwrap_or(d.doc.line);
        out.push(d.finding(
            "ts-env-conflict",
            Severity::Error,
            line,
            format!("`{a}` together with `{b}`: {why}; containerboot exits at start"),
            "remove one of the two",
        ));
    }
    for k in [
        "TS_EGRESS_PROXIES_CONFIG_PATH",
        "TS_INGRESS_PROXIES_CONFIG_PATH",
    ] {
        if set(k) {
            let e = env.get(k).expect("set");
            out.push(d.finding(
                "ts-env-conflict",
                Severity::Error,
                e.line,
                format!("`{k}` only works inside Kubernetes; containerboot exits on a Talos host"),
                "remove it",
            ));
        }
    }
}

fn role_of(group: &[Located], v1: &[&Located], opts: &Options) -> Option<Role> {
    for d in v1 {
        match d.doc.root.path(&["machine", "type"]).and_then(Node::as_str) {
            Some("controlplane") | Some("init") => return Some(Role::Controlplane),
            Some("worker") => return Some(Role::Worker),
            _ => {}
        }
    }
    let cp_keys = ["etcd", "apiServer", "controllerManager", "scheduler"];
    if v1.iter().any(|d| {
        cp_keys
            .iter()
            .any(|k| d.doc.root.path(&["cluster", k]).is_some())
    }) {
        return Some(Role::Controlplane);
    }
    // From v1.14 the kube-apiserver and other control-plane settings are documents Talos
    // accepts on control planes only.
    if group.iter().any(|d| {
        d.doc
            .kind()
            .and_then(config::document)
            .is_some_and(|doc| doc.controlplane_only)
    }) {
        return Some(Role::Controlplane);
    }
    opts.role
}

fn first_list<'a>(
    v1: &[&'a Located],
    path: &[&str],
) -> Option<(&'a Located<'a>, usize, Vec<&'a str>)> {
    v1.iter().find_map(|d| {
        let e = d.doc.root.path_entry(path)?;
        Some((
            *d,
            e.line(),
            e.value.str_items().into_iter().map(|(s, _)| s).collect(),
        ))
    })
}

fn anchor_line(d: &Located, key: &str) -> usize {
    d.doc
        .root
        .entry(key)
        .map(|e| e.line())
        .unwrap_or(d.doc.line)
}

/// Rules across the documents of one node.
pub fn check_group(group: &[Located], opts: &Options, out: &mut Vec<Finding>) {
    let v1: Vec<&Located> = group.iter().filter(|d| d.doc.is_v1alpha1()).collect();
    let ts: Vec<&Located> = group.iter().filter(|d| is_tailscale(d)).collect();

    for d in group.iter().filter(|d| d.doc.is_json_patch()) {
        if group.len() > 1 {
            out.push(d.finding(
                "json6902-multidoc",
                Severity::Error,
                d.doc.line,
                "a JSON6902 patch next to other documents; Talos refuses JSON patches on multi-document configs",
                "rewrite it as a strategic-merge patch",
            ));
        }
    }

    for d in &v1 {
        if let Some(e) = d.doc.root.path_entry(&["machine", "install", "extensions"]) {
            out.push(d.finding(
                "install-extensions-deprecated",
                Severity::Warning,
                e.line(),
                "`machine.install.extensions` is deprecated since v1.5 and has no effect from v1.10",
                "bake the extension into the installer (imager or Image Factory) and set `machine.install.image`",
            ));
        }
    }

    // `.machine.install.image`, or from v1.14 `UnattendedInstallConfig.installer.image`.
    let images = v1
        .iter()
        .filter_map(|d| Some((*d, d.doc.root.path_entry(&["machine", "install", "image"])?)))
        .chain(
            group
                .iter()
                .filter(|d| d.doc.kind() == Some(UNATTENDED))
                .filter_map(|d| Some((d, d.doc.root.path_entry(&["installer", "image"])?))),
        );
    for (d, e) in images {
        let image = e.value.as_str().unwrap_or("");
        if !is_pinned(image) {
            out.push(d.finding(
                "install-image-unpinned",
                Severity::Warning,
                e.value.line,
                format!("install image `{image}` is not pinned by digest"),
                "append `@sha256:<digest>` (see `talext build --receipt`) so upgrades keep the installer that carries the extension",
            ));
        }
        if !ts.is_empty() {
            if let Some(why) = lacks_extension(image) {
                out.push(d.finding(
                    "install-image-no-extension",
                    Severity::Error,
                    e.value.line,
                    format!("install image `{image}` {why}; installing or upgrading with it removes ext-tailscale"),
                    "use an installer built with the extension (imager, or factory.talos.dev/metal-installer/4a0d65c669d46663f377e7161e50cfd570c401f26fd9e7bda34a0216b6f1922b:<version> for the official one)",
                ));
            }
        }
    }

    if ts.is_empty() {
        return;
    }
    let envs: Vec<(&Located, Env)> = ts.iter().map(|d| (*d, esc_env(d))).collect();
    super::forwarding::check(&v1, group, &envs, opts, out);
    node_ip(group, &v1, opts, out);
    if !v1.is_empty() && role_of(group, &v1, opts) == Some(Role::Controlplane) {
        match first_list(&v1, &["cluster", "etcd", "advertisedSubnets"]) {
            None => {
                let d = v1[0];
                out.push(d.finding(
                    "etcd-advertised-subnets",
                    Severity::Error,
                    anchor_line(d, "cluster").min(anchor_line(d, "machine")),
                    "control plane without `cluster.etcd.advertisedSubnets`; etcd may advertise its tailnet address",
                    "set it to the LAN subnets plus `!100.64.0.0/10` and `!fd7a:115c:a1e0::/48`",
                ));
            }
            Some((d, line, filters)) => leaks(
                d,
                line,
                &filters,
                "etcd-advertised-subnets-tailnet",
                "etcd peer address",
                out,
            ),
        }
    }

    kubespan(group, &v1, out);
    nameservers(group, &v1, out);
}

/// `.machine.network.nameservers`, or from v1.12 `ResolverConfig.nameservers[].address`
/// (`network/resolver.go`).
fn nameservers(group: &[Located], v1: &[&Located], out: &mut Vec<Finding>) {
    let mut lists: Vec<(&Located, usize, Vec<&str>)> = Vec::new();
    for d in v1 {
        if let Some(e) = d
            .doc
            .root
            .path_entry(&["machine", "network", "nameservers"])
        {
            let ns = e.value.str_items().into_iter().map(|(s, _)| s).collect();
            lists.push((*d, e.line(), ns));
        }
    }
    for d in group
        .iter()
        .filter(|d| d.doc.kind() == Some("ResolverConfig"))
    {
        if let Some(e) = d.doc.root.entry("nameservers") {
            let ns = e
                .value
                .items()
                .iter()
                .filter_map(|n| n.get("address").and_then(Node::as_str))
                .collect();
            lists.push((d, e.line(), ns));
        }
    }
    for (d, line, ns) in lists {
        if !ns.is_empty() && ns.iter().all(|s| *s == "100.100.100.100") {
            out.push(d.finding(
                "dns-quad100-only",
                Severity::Warning,
                line,
                "100.100.100.100 is the only nameserver; DNS breaks whenever ext-tailscale is down, and tailscaled needs DNS to start",
                "keep a LAN resolver; quad-100 answers only MagicDNS names on Talos",
            ));
        }
    }
}

/// The kubelet node IP filter: `.machine.kubelet.nodeIP.validSubnets`, or from v1.14
/// `KubeNodeConfig.nodeIP.validSubnets` (which takes `!` exclusions the same way).
fn node_ip(group: &[Located], v1: &[&Located], opts: &Options, out: &mut Vec<Finding>) {
    let docs: Vec<&Located> = group
        .iter()
        .filter(|d| d.doc.kind() == Some(KUBE_NODE))
        .collect();
    if v1.is_empty() && docs.is_empty() {
        // Only the extension's own documents: nothing says how the node is configured.
        return;
    }
    let mut found = false;
    let lists = v1
        .iter()
        .filter_map(|d| {
            Some((
                *d,
                d.doc
                    .root
                    .path_entry(&["machine", "kubelet", "nodeIP", "validSubnets"])?,
            ))
        })
        .chain(
            docs.iter()
                .filter_map(|d| Some((*d, d.doc.root.path_entry(&["nodeIP", "validSubnets"])?))),
        );
    for (d, e) in lists {
        found = true;
        let filters: Vec<&str> = e.value.str_items().into_iter().map(|(s, _)| s).collect();
        leaks(
            d,
            e.line(),
            &filters,
            "kubelet-valid-subnets-tailnet",
            "kubelet node IP",
            out,
        );
    }
    if found {
        return;
    }
    // Say the form the release uses: the v1.14 documents in the group, or the release given.
    let documents = !docs.is_empty()
        || group.iter().any(|d| d.doc.kind() == Some("KubeletConfig"))
        || opts.talos_version.is_some_and(|m| {
            config::release(m)
                .is_some_and(|r| matches!(r.forms.node_ip.form, Form::Document { .. }))
        });
    let fix = "the LAN subnets plus `!100.64.0.0/10` and `!fd7a:115c:a1e0::/48` (before bootstrap: changing it later breaks CNIs)";
    match docs.first() {
        Some(d) => out.push(d.finding(
            "kubelet-valid-subnets",
            Severity::Error,
            d.doc.line,
            "`KubeNodeConfig` without `nodeIP.validSubnets`; kubelet may register the node with its tailnet IP",
            format!("set `nodeIP.validSubnets` to {fix}"),
        )),
        None => {
            let d = v1[0];
            let (field, hint) = if documents {
                (
                    "`KubeNodeConfig.nodeIP.validSubnets`",
                    format!("add a `KubeNodeConfig` document with `nodeIP.validSubnets` set to {fix}"),
                )
            } else {
                (
                    "`machine.kubelet.nodeIP.validSubnets`",
                    format!("set it to {fix}"),
                )
            };
            out.push(d.finding(
                "kubelet-valid-subnets",
                Severity::Error,
                anchor_line(d, "machine"),
                format!("{field} is not set; kubelet may register the node with its tailnet IP"),
                hint,
            ));
        }
    }
}

fn leaks(
    d: &Located,
    line: usize,
    filters: &[&str],
    rule: &'static str,
    what: &str,
    out: &mut Vec<Finding>,
) {
    for range in tailnet_leaks(filters) {
        out.push(d.finding(
            rule,
            Severity::Error,
            line,
            format!("the {what} filter admits the tailnet range `{range}`"),
            format!("add `!{range}` after the LAN subnets (and keep LAN subnets out of the tailnet ranges)"),
        ));
    }
}

/// Why an installer reference is known to lack the extension.
fn lacks_extension(image: &str) -> Option<&'static str> {
    let name = image.split('@').next().unwrap_or(image);
    if crate::talos::receipt::strip_tag(name) == "ghcr.io/siderolabs/installer" {
        return Some("is the plain Talos installer without extensions");
    }
    if let Some(rest) = name.strip_prefix("factory.talos.dev/") {
        let empty = Schematic::default().id().ok()?;
        if rest
            .split('/')
            .nth(1)
            .map(|s| s.split(':').next().unwrap_or(s))
            == Some(empty.as_str())
        {
            return Some("is the Image Factory installer of the empty schematic");
        }
    }
    None
}

fn kubespan(group: &[Located], v1: &[&Located], out: &mut Vec<Finding>) {
    let mut sources: Vec<(&Located, usize, Option<&Node>)> = Vec::new();
    for d in v1 {
        if let Some(ks) = d.doc.root.path_entry(&["machine", "network", "kubespan"]) {
            if ks.value.get("enabled").is_some_and(Node::is_true) {
                sources.push((*d, ks.line(), ks.value.path(&["filters", "endpoints"])));
            }
        }
    }
    for d in group
        .iter()
        .filter(|d| d.doc.kind() == Some("KubeSpanConfig"))
    {
        if d.doc.root.get("enabled").is_some_and(Node::is_true) {
            sources.push((d, d.doc.line, d.doc.root.path(&["filters", "endpoints"])));
        }
    }
    let hint = "set the endpoint filters to `[\"0.0.0.0/0\", \"!100.64.0.0/10\", \"::/0\", \"!fd7a:115c:a1e0::/48\"]`";
    for (d, line, endpoints) in sources {
        match endpoints {
            None => out.push(d.finding(
                "kubespan-tailnet-endpoints",
                Severity::Error,
                line,
                "KubeSpan is enabled without endpoint filters; it will announce tailnet addresses as WireGuard endpoints",
                hint,
            )),
            Some(n) => {
                let filters: Vec<&str> = n.str_items().into_iter().map(|(s, _)| s).collect();
                for range in tailnet_leaks(&filters) {
                    out.push(d.finding(
                        "kubespan-tailnet-endpoints",
                        Severity::Error,
                        n.line,
                        format!("KubeSpan endpoint filters admit the tailnet range `{range}`"),
                        hint,
                    ));
                }
            }
        }
    }
}
