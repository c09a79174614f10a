//! Multi-document YAML read with positions, for lints that must name the line of a key.
//!
//! The documents are [`crate::goyaml`] trees, the reader every Go-side document goes through:
//! every mapping key, value and sequence item keeps its 1-based line, duplicate keys are kept
//! (Talos's decoder rejects them, so the linter reports them), aliases are expanded as go-yaml
//! expands them, and scalars keep whether they were quoted (a plain `true` is a bool, `"true"`
//! is not).

pub use crate::goyaml::{Entry, Kind, Node};

/// One non-empty document of a multi-document stream.
#[derive(Debug, Clone)]
pub struct Doc {
    /// 0-based position in the stream.
    pub index: usize,
    /// Line where the document's content starts.
    pub line: usize,
    pub root: Node,
}

/// A syntax error with its line.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    pub line: usize,
    pub message: String,
}

impl Doc {
    /// `kind` of a typed document (`ExtensionServiceConfig`, …); `None` for the v1alpha1 config
    /// (which has `version:`, not `kind:`) and patches of it.
    pub fn kind(&self) -> Option<&str> {
        self.root.get("kind").and_then(Node::as_str)
    }

    /// The v1alpha1 machine config or a strategic-merge patch of it: a mapping with `machine`,
    /// `cluster` or `version` at the top and no `kind`.
    pub fn is_v1alpha1(&self) -> bool {
        self.kind().is_none()
            && self.root.is_map()
            && ["machine", "cluster", "version", "debug", "persist"]
                .iter()
                .any(|k| self.root.get(k).is_some())
    }

    /// A JSON6902 patch: a top-level list of `op`/`path` objects.
    pub fn is_json_patch(&self) -> bool {
        self.root.is_seq()
            && self
                .root
                .items()
                .iter()
                .any(|i| i.get("op").is_some() && i.get("path").is_some())
    }
}

/// Parse a multi-document stream. Empty documents (a lone `---`, comments only) are dropped.
pub fn parse(text: &str) -> Result<Vec<Doc>, SyntaxError> {
    let docs = crate::goyaml::documents(text, usize::MAX).map_err(|e| SyntaxError {
        line: e.line,
        message: e.message,
    })?;
    Ok(docs
        .into_iter()
        .filter(|d| !d.root.is_null())
        .map(|d| Doc {
            index: d.index,
            line: d.line,
            root: d.root,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_duplicates() {
        let text = "# c\napiVersion: v1alpha1\nkind: ExtensionServiceConfig\nname: tailscale\nenvironment:\n  - A=1\n  - A=2\nname: again\n---\nmachine:\n  kubelet:\n    nodeIP:\n      validSubnets: [\"10.0.0.0/8\"]\n";
        let docs = parse(text).unwrap();
        assert_eq!(docs.len(), 2);
        let esc = &docs[0];
        assert_eq!(esc.kind(), Some("ExtensionServiceConfig"));
        assert_eq!(esc.root.entry("name").unwrap().line(), 4);
        assert_eq!(
            esc.root
                .entries()
                .iter()
                .filter(|e| e.name() == "name")
                .count(),
            2
        );
        let env = esc.root.get("environment").unwrap().str_items();
        assert_eq!(env, vec![("A=1", 6), ("A=2", 7)]);
        let v = &docs[1];
        assert!(v.is_v1alpha1());
        let vs = v
            .root
            .path_entry(&["machine", "kubelet", "nodeIP", "validSubnets"])
            .unwrap();
        assert_eq!(vs.line(), 13);
        assert_eq!(v.index, 1);
    }

    #[test]
    fn syntax_errors_have_lines() {
        let err = parse("a: 1\nb: [\n").unwrap_err();
        assert!(err.line >= 2, "{err:?}");
    }

    #[test]
    fn quoted_true_is_not_a_bool() {
        let d = parse("a: true\nb: \"true\"\nc:\n").unwrap();
        assert!(d[0].root.get("a").unwrap().is_true());
        assert!(!d[0].root.get("b").unwrap().is_true());
        assert_eq!(d[0].root.get("c").unwrap().as_str(), None);
    }
}
