//! The `ExtensionServiceConfig` document as the lint rules read it: which documents are ESCs,
//! their name and the `KEY=VALUE` environment containerboot reads (tailscale.md §1). Shared by
//! the ESC rules (`esc.rs`) and the cross-document Tailscale rules (`machine.rs`).

use super::Located;
use crate::talos::doc::Node;

pub const KIND: &str = "ExtensionServiceConfig";

/// Set by the extension's own service file (`tailscale.yaml`); a copy in the environment list
/// is at best ignored and at worst changes where state lives.
pub const SERVICE_KEYS: [&str; 4] = ["TS_STATE_DIR", "TS_SOCKET", "TS_USERSPACE", "PATH"];

/// One `KEY=VALUE` entry of `environment`.
#[derive(Debug, Clone)]
pub struct EnvEntry<'a> {
    pub key: &'a str,
    pub value: &'a str,
    pub line: usize,
    /// Whether the entry had an `=` at all.
    pub has_eq: bool,
}

/// The tailscale service's environment as written in one document.
#[derive(Debug, Clone, Default)]
pub struct Env<'a> {
    pub entries: Vec<EnvEntry<'a>>,
}

impl<'a> Env<'a> {
    pub fn from_node(node: Option<&'a Node>) -> Self {
        let mut entries = Vec::new();
        if let Some(n) = node {
            for (s, line) in n.str_items() {
                let (key, value) = s.split_once('=').unwrap_or((s, ""));
                entries.push(EnvEntry {
                    key,
                    value,
                    line,
                    has_eq: s.contains('='),
                });
            }
        }
        Env { entries }
    }

    /// The first occurrence, which is what Go's `os.Getenv` returns for a duplicated key.
    pub fn get(&self, key: &str) -> Option<&EnvEntry<'a>> {
        self.entries.iter().find(|e| e.key == key)
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some_and(|e| !e.value.is_empty())
    }

    /// `strconv.ParseBool` of a key; `None` when unset or unparseable.
    pub fn bool(&self, key: &str) -> Option<bool> {
        self.get(key).and_then(|e| parse_bool(e.value))
    }

    pub fn extra_args(&self) -> Vec<&'a str> {
        self.get("TS_EXTRA_ARGS")
            .map(|e| e.value.split_whitespace().collect())
            .unwrap_or_default()
    }

    /// IPv6 routes or an exit node: needs `net.ipv6.conf.all.forwarding`.
    pub fn needs_v6_forwarding(&self) -> bool {
        self.exit_node() || self.routes().iter().any(|r| r.contains(':'))
    }

    pub fn needs_v4_forwarding(&self) -> bool {
        self.exit_node() || self.routes().iter().any(|r| !r.contains(':'))
    }

    pub fn exit_node(&self) -> bool {
        self.extra_args()
            .iter()
            .any(|a| *a == "--advertise-exit-node" || *a == "--advertise-exit-node=true")
    }

    pub fn routes(&self) -> Vec<&'a str> {
        self.get("TS_ROUTES")
            .map(|e| {
                e.value
                    .split(',')
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }
}

pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// An ExtensionServiceConfig-like document: the real kind, the never-released plural, or a
/// document with a top-level `ExtensionServiceConfig:` key (a shape seen in the wild).
pub fn is_esc(d: &Located) -> bool {
    matches!(d.doc.kind(), Some(KIND) | Some("ExtensionServicesConfig"))
}

/// Name of an ESC document (`name`, or `metadata.name` in the mis-nested shape).
pub fn esc_name<'a>(d: &'a Located) -> Option<&'a str> {
    d.doc
        .root
        .get("name")
        .or_else(|| d.doc.root.path(&["metadata", "name"]))
        .and_then(Node::as_str)
}

/// The environment list, also when nested under `spec:`.
pub fn esc_env<'a>(d: &'a Located) -> Env<'a> {
    let root = &d.doc.root;
    Env::from_node(
        root.get("environment")
            .or_else(|| root.path(&["spec", "environment"])),
    )
}

/// A tailscale ESC (named `tailscale`, or unnamed but carrying `TS_` variables), not a
/// `$patch: delete`.
pub fn is_tailscale(d: &Located) -> bool {
    if !is_esc(d) || d.doc.root.get("$patch").is_some() {
        return false;
    }
    match esc_name(d) {
        Some(n) => n == "tailscale",
        None => esc_env(d).entries.iter().any(|e| e.key.starts_with("TS_")),
    }
}
