//! The operator-facing render spec: a short YAML file naming the Talos version, the LAN, the
//! Tailscale settings and the nodes. Parsed strictly (unknown keys are errors with file:line);
//! `manifests/spec/example.yaml` is the commented example and `manifests/README.md` documents
//! every key.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::doc;
use super::net::{parse_prefix, PrefixError};
use crate::error::{Error, IoContext, Result};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Spec {
    /// Target Talos version, `vX.Y.Z`.
    pub talos_version: String,
    pub cluster: ClusterSpec,
    pub tailscale: TailscaleSpec,
    pub nodes: Vec<NodeSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterSpec {
    /// The LAN subnets node addresses live in; kubelet and etcd are pinned to them.
    pub lan_subnets: Vec<String>,
    /// KubeSpan is on in this cluster: keep tailnet addresses out of its endpoints.
    #[serde(default)]
    pub kubespan: bool,
    /// Installer image carrying the extension, pinned by digest.
    #[serde(default)]
    pub install_image: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TailscaleSpec {
    pub auth: AuthSpec,
    /// ACL tags (`tag:` is added when missing), passed as `--advertise-tags`.
    #[serde(default)]
    pub tags: Vec<String>,
    /// MagicDNS suffix (`example.ts.net`): node names under it go into the certificate SANs.
    #[serde(default)]
    pub tailnet: Option<String>,
    #[serde(default)]
    pub accept_dns: bool,
    #[serde(default = "yes")]
    pub auth_once: bool,
    /// Headscale or another control server URL (`--login-server`).
    #[serde(default)]
    pub login_server: Option<String>,
    /// Fixed UDP port for tailscaled (`--port`), for firewalls.
    #[serde(default)]
    pub port: Option<u16>,
    /// Tunnel MTU (`TS_DEBUG_MTU`), for underlays smaller than 1360 bytes.
    #[serde(default)]
    pub mtu: Option<u16>,
    /// `TS_DEBUG_FIREWALL_MODE`: `nftables`, `iptables` or `auto`.
    #[serde(default)]
    pub firewall_mode: Option<String>,
}

fn yes() -> bool {
    true
}

/// Where the auth secret comes from. Exactly one field is set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthSpec {
    /// File holding a `tskey-auth-…` key (relative paths are relative to the spec).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Environment variable holding the key.
    #[serde(default)]
    pub key_env: Option<String>,
    /// File holding an OAuth client secret (`tskey-client-…`).
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Environment variable holding the OAuth client secret.
    #[serde(default)]
    pub client_secret_env: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Controlplane,
    Worker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Controlplane => "controlplane",
            Role::Worker => "worker",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeSpec {
    /// File name of the rendered documents and default Tailscale hostname.
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub hostname: Option<String>,
    /// Subnet routes this node advertises (`TS_ROUTES`).
    #[serde(default)]
    pub routes: Vec<String>,
    /// Advertise this node as an exit node.
    #[serde(default)]
    pub exit_node: bool,
}

impl NodeSpec {
    pub fn hostname(&self) -> &str {
        self.hostname.as_deref().unwrap_or(&self.name)
    }
}

/// Which secret the auth settings name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    AuthKey,
    ClientSecret,
}

impl AuthSpec {
    pub fn kind(&self) -> AuthKind {
        if self.client_secret_file.is_some() || self.client_secret_env.is_some() {
            AuthKind::ClientSecret
        } else {
            AuthKind::AuthKey
        }
    }

    /// The placeholder `--redact` writes instead of the secret.
    pub fn placeholder(&self) -> String {
        let var = self
            .key_env
            .as_deref()
            .or(self.client_secret_env.as_deref())
            .unwrap_or(match self.kind() {
                AuthKind::AuthKey => "TS_AUTHKEY",
                AuthKind::ClientSecret => "TS_CLIENT_SECRET",
            });
        format!("${{{var}}}")
    }

    /// Read the secret. Errors name the file or variable, never the value.
    pub fn read_secret(&self, base: &Path) -> Result<String> {
        let secret = if let Some(f) = self.key_file.as_ref().or(self.client_secret_file.as_ref()) {
            let path = base.join(f);
            std::fs::read_to_string(&path).at("reading the tailscale secret", &path)?
        } else if let Some(v) = self.key_env.as_ref().or(self.client_secret_env.as_ref()) {
            std::env::var(v).map_err(|_| {
                Error::input_hint(
                    format!("environment variable `{v}` holding the tailscale secret is not set"),
                    "export it, or render with `--redact` to write a placeholder",
                )
            })?
        } else {
            return Err(Error::internal("auth source was validated"));
        };
        let secret = secret.trim().to_string();
        if secret.is_empty() {
            return Err(Error::input("the tailscale secret is empty"));
        }
        // Recognise the shapes from tailscale.md §1.4 without ever echoing the value.
        if secret.starts_with("tskey-api-")
            || secret.starts_with("tskey-scim-")
            || secret.starts_with("tskey-webhook-")
        {
            return Err(Error::input_hint(
                "the tailscale secret is an API token, not a login key",
                "create an auth key (`tskey-auth-…`) or an OAuth client secret (`tskey-client-…`)",
            ));
        }
        if self.kind() == AuthKind::AuthKey && secret.starts_with("tskey-client-") {
            return Err(Error::input_hint(
                "the auth key is an OAuth client secret",
                "use `clientSecretFile`/`clientSecretEnv` so tags are checked",
            ));
        }
        Ok(secret)
    }
}

/// A parsed spec and the directory relative paths in it are resolved against.
#[derive(Debug, Clone)]
pub struct LoadedSpec {
    pub spec: Spec,
    pub base: PathBuf,
    pub origin: String,
}

/// Parsed Talos version `vMAJOR.MINOR.PATCH[-pre]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TalosVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl TalosVersion {
    pub fn parse(s: &str) -> Option<Self> {
        let core = s.strip_prefix('v').unwrap_or(s);
        let core = core.split(['-', '+']).next()?;
        let mut it = core.split('.');
        let v = TalosVersion {
            major: it.next()?.parse().ok()?,
            minor: it.next()?.parse().ok()?,
            patch: it.next().map(|p| p.parse().ok()).unwrap_or(Some(0))?,
        };
        it.next().is_none().then_some(v)
    }

    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

impl std::fmt::Display for TalosVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)
    }
}

pub fn load(path: &Path) -> Result<LoadedSpec> {
    let text = std::fs::read_to_string(path).at("reading", path)?;
    let origin = path.display().to_string();
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let spec = parse(&text, &origin)?;
    Ok(LoadedSpec { spec, base, origin })
}

/// Decode and check a spec; every error names `origin:line`.
pub fn parse(text: &str, origin: &str) -> Result<Spec> {
    let spec: Spec = serde_yaml::from_str(text).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!("{origin}:{}:{}", l.line(), l.column()))
            .unwrap_or_else(|| origin.to_string());
        Error::input_hint(
            format!("{at}: {e}"),
            "see manifests/README.md for the spec format",
        )
    })?;
    let docs = doc::parse(text).unwrap_or_default();
    let root = docs.first().map(|d| d.root.clone());
    let line = |keys: &[&str]| -> usize {
        root.as_ref()
            .and_then(|r| {
                let mut n = r;
                for k in keys {
                    n = match k.parse::<usize>() {
                        Ok(i) => n.items().get(i)?,
                        Err(_) => n.get(k)?,
                    };
                }
                Some(n.line)
            })
            .unwrap_or(1)
    };
    let fail = |keys: &[&str], msg: String, hint: &str| -> Error {
        Error::input_hint(format!("{origin}:{}: {msg}", line(keys)), hint.to_string())
    };

    let v = TalosVersion::parse(&spec.talos_version).ok_or_else(|| {
        fail(
            &["talosVersion"],
            format!("`{}` is not a Talos version", spec.talos_version),
            "write it as `v1.11.5`",
        )
    })?;
    if !v.at_least(1, 7) {
        return Err(fail(
            &["talosVersion"],
            format!("Talos `{v}` is not supported: the `ExtensionServiceConfig` document the Tailscale extension reads was added in v1.7.0"),
            "before v1.7 the extension took its settings from `container.environmentFile` written with `machine.files`; upgrade to v1.7 or later first",
        ));
    }
    if spec.cluster.lan_subnets.is_empty() {
        return Err(fail(
            &["cluster", "lanSubnets"],
            "`lanSubnets` is empty".into(),
            "list the subnets node addresses live in",
        ));
    }
    for (i, s) in spec.cluster.lan_subnets.iter().enumerate() {
        let idx = i.to_string();
        let p = parse_prefix(s).map_err(|e| {
            fail(
                &["cluster", "lanSubnets", &idx],
                format!("LAN subnet `{s}`: {}", describe(&e)),
                "write a prefix such as `192.168.1.0/24`",
            )
        })?;
        if super::net::tailnet_leaks(&[s.as_str()]).len() == 1 && !p.is_default_route() {
            return Err(fail(
                &["cluster", "lanSubnets", &idx],
                format!("LAN subnet `{s}` overlaps the tailnet range"),
                "Tailscale uses 100.64.0.0/10 and fd7a:115c:a1e0::/48; a LAN there collides with tailnet addresses",
            ));
        }
    }
    if let Some(img) = &spec.cluster.install_image {
        if !super::receipt::is_pinned(img) {
            return Err(fail(
                &["cluster", "installImage"],
                format!("install image `{img}` is not pinned by digest"),
                "append `@sha256:<digest>`; an unpinned tag can be replaced by an installer without the extension",
            ));
        }
    }
    let a = &spec.tailscale.auth;
    let sources = [
        a.key_file.is_some(),
        a.key_env.is_some(),
        a.client_secret_file.is_some(),
        a.client_secret_env.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if sources != 1 {
        return Err(fail(
            &["tailscale", "auth"],
            "`auth` needs exactly one of `keyFile`, `keyEnv`, `clientSecretFile`, `clientSecretEnv`".into(),
            "secrets are read from a file or the environment, never written in the spec",
        ));
    }
    if a.kind() == AuthKind::ClientSecret && spec.tailscale.tags.is_empty() {
        return Err(fail(
            &["tailscale", "tags"],
            "an OAuth client secret needs `tags`".into(),
            "tailscale refuses OAuth logins without `--advertise-tags` (\"oauth authkeys require --advertise-tags\")",
        ));
    }
    for t in &spec.tailscale.tags {
        let name = t.strip_prefix("tag:").unwrap_or(t);
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(fail(
                &["tailscale", "tags"],
                format!("`{t}` is not a tag name"),
                "tags look like `tag:talos`",
            ));
        }
    }
    if let Some(m) = &spec.tailscale.firewall_mode {
        if !matches!(m.as_str(), "nftables" | "iptables" | "auto") {
            return Err(fail(
                &["tailscale", "firewallMode"],
                format!("unknown firewall mode `{m}`"),
                "use `nftables`, `iptables` or `auto`",
            ));
        }
    }
    if let Some(mtu) = spec.tailscale.mtu {
        if !(576..=9000).contains(&mtu) {
            return Err(fail(
                &["tailscale", "mtu"],
                format!("MTU `{mtu}` is out of range"),
                "the tailnet default is 1280; use underlay MTU minus 80",
            ));
        }
    }
    if let Some(url) = &spec.tailscale.login_server {
        if !(url.starts_with("https://") || url.starts_with("http://"))
            || url.contains(char::is_whitespace)
        {
            return Err(fail(
                &["tailscale", "loginServer"],
                format!("`{url}` is not a URL"),
                "for example `https://headscale.example.com`",
            ));
        }
    }
    if spec.nodes.is_empty() {
        return Err(fail(
            &["nodes"],
            "no nodes".into(),
            "list at least one node",
        ));
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, n) in spec.nodes.iter().enumerate() {
        let idx = i.to_string();
        if n.name.is_empty()
            || !n
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(fail(
                &["nodes", &idx, "name"],
                format!("node name `{}` is not usable as a file name", n.name),
                "use letters, digits, `-`, `_` or `.`",
            ));
        }
        if !names.insert(&n.name) {
            return Err(fail(
                &["nodes", &idx, "name"],
                format!("node `{}` is listed twice", n.name),
                "node names must be unique",
            ));
        }
        let h = n.hostname();
        if h.is_empty() || h.contains(char::is_whitespace) {
            return Err(fail(
                &["nodes", &idx],
                format!("hostname `{h}` is not valid"),
                "use a DNS label",
            ));
        }
        for (j, r) in n.routes.iter().enumerate() {
            let jdx = j.to_string();
            let p = parse_prefix(r).map_err(|e| {
                fail(
                    &["nodes", &idx, "routes", &jdx],
                    format!("route `{r}`: {}", describe(&e)),
                    "routes are prefixes such as `10.96.0.0/12`",
                )
            })?;
            if p.is_default_route() {
                return Err(fail(
                    &["nodes", &idx, "routes", &jdx],
                    format!("route `{r}` is a default route"),
                    "set `exitNode: true` instead of advertising 0.0.0.0/0 or ::/0",
                ));
            }
        }
    }
    Ok(spec)
}

pub fn describe(e: &PrefixError) -> String {
    match e {
        PrefixError::BareAddress => "a bare address is not a prefix (add `/32` or `/128`)".into(),
        PrefixError::Invalid => "not a prefix".into(),
        PrefixError::HostBits(m) => format!("has non-address bits set (did you mean `{m}`?)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = "talosVersion: v1.11.5\ncluster:\n  lanSubnets: [192.168.1.0/24]\ntailscale:\n  auth:\n    keyEnv: TS_KEY\nnodes:\n  - name: a\n    role: worker\n";

    #[test]
    fn minimal_spec() {
        let s = parse(OK, "s.yaml").unwrap();
        assert!(s.tailscale.auth_once);
        assert!(!s.tailscale.accept_dns);
        assert_eq!(s.nodes[0].hostname(), "a");
    }

    #[test]
    fn unknown_key_has_line() {
        let bad = OK.replace("  lanSubnets", "  lanSubnet");
        let err = parse(&bad, "s.yaml").unwrap_err().to_string();
        assert!(err.starts_with("s.yaml:3:"), "{err}");
    }

    #[test]
    fn semantic_errors_have_lines() {
        let bad = format!("{OK}    routes: [\"10.0.0.1/8\"]\n");
        let err = parse(&bad, "s.yaml").unwrap_err().to_string();
        assert!(err.starts_with("s.yaml:10:"), "{err}");
        assert!(err.contains("10.0.0.0/8"), "{err}");
        let old = OK.replace("v1.11.5", "v1.6.7");
        let err = parse(&old, "s.yaml").unwrap_err().to_string();
        assert!(err.contains("v1.7.0"), "{err}");
    }
}
