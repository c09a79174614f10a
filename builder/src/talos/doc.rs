//! Multi-document YAML read with positions, for lints that must name the line of a key.
//!
//! Built on yaml-rust2's event parser: every mapping key, value and sequence item keeps its
//! 1-based line, duplicate keys are kept (Talos's decoder rejects them, so the linter reports
//! them), and scalars keep whether they were quoted (a plain `true` is a bool, `"true"` is not).

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// One document of a multi-document stream.
#[derive(Debug, Clone)]
pub struct Doc {
    /// 0-based position in the stream.
    pub index: usize,
    /// Line where the document's content starts.
    pub line: usize,
    pub root: Node,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub line: usize,
    pub value: Value,
}

#[derive(Debug, Clone)]
pub enum Value {
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<Entry>),
    /// An alias to an anchor (`*a`); not resolved.
    Alias,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub key_line: usize,
    pub value: Node,
}

/// A syntax error with its line.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    pub line: usize,
    pub message: String,
}

impl Node {
    pub fn entries(&self) -> &[Entry] {
        match &self.value {
            Value::Map(e) => e,
            _ => &[],
        }
    }

    pub fn items(&self) -> &[Node] {
        match &self.value {
            Value::Seq(i) => i,
            _ => &[],
        }
    }

    pub fn is_map(&self) -> bool {
        matches!(self.value, Value::Map(_))
    }

    pub fn is_seq(&self) -> bool {
        matches!(self.value, Value::Seq(_))
    }

    /// The first entry with this key.
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries().iter().find(|e| e.key == key)
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|e| &e.value)
    }

    /// Follow a path of keys through nested mappings.
    pub fn path(&self, keys: &[&str]) -> Option<&Node> {
        let mut n = self;
        for k in keys {
            n = n.get(k)?;
        }
        Some(n)
    }

    /// The entry at the end of a path (for the line of its key).
    pub fn path_entry(&self, keys: &[&str]) -> Option<&Entry> {
        let (last, parents) = keys.split_last()?;
        self.path(parents)?.entry(last)
    }

    /// Scalar text (quoted or not); `None` for collections and null.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, plain } if !(*plain && is_null(text)) => Some(text),
            _ => None,
        }
    }

    /// A YAML boolean `true` (plain `true`/`True`/`TRUE`).
    pub fn is_true(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true } if matches!(text.as_str(), "true" | "True" | "TRUE"))
    }

    /// Scalar items of a sequence, with their lines.
    pub fn str_items(&self) -> Vec<(&str, usize)> {
        self.items()
            .iter()
            .filter_map(|n| n.as_str().map(|s| (s, n.line)))
            .collect()
    }
}

fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
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
    let mut b = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut b, true).map_err(|e| SyntaxError {
        line: e.marker().line(),
        message: e.info().to_string(),
    })?;
    Ok(b.docs)
}

#[derive(Default)]
struct Builder {
    docs: Vec<Doc>,
    /// Open collections: the node under construction and, for maps, a pending key.
    stack: Vec<(Node, Option<(String, usize)>)>,
    doc_line: usize,
    count: usize,
}

impl Builder {
    fn attach(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => {
                let index = self.count;
                self.count += 1;
                let empty =
                    matches!(&node.value, Value::Scalar { text, plain: true } if is_null(text));
                if !empty {
                    self.docs.push(Doc {
                        index,
                        line: self.doc_line.max(node.line),
                        root: node,
                    });
                }
            }
            Some((parent, pending)) => match &mut parent.value {
                Value::Seq(items) => items.push(node),
                Value::Map(entries) => match pending.take() {
                    None => {
                        let key = match &node.value {
                            Value::Scalar { text, .. } => text.clone(),
                            _ => String::from("<complex key>"),
                        };
                        *pending = Some((key, node.line));
                    }
                    Some((key, key_line)) => entries.push(Entry {
                        key,
                        key_line,
                        value: node,
                    }),
                },
                _ => {}
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::DocumentStart => self.doc_line = line,
            Event::Scalar(text, style, _, _) => self.attach(Node {
                line,
                value: Value::Scalar {
                    text,
                    plain: style == TScalarStyle::Plain,
                },
            }),
            Event::Alias(_) => self.attach(Node {
                line,
                value: Value::Alias,
            }),
            Event::SequenceStart(..) => self.stack.push((
                Node {
                    line,
                    value: Value::Seq(Vec::new()),
                },
                None,
            )),
            Event::MappingStart(..) => self.stack.push((
                Node {
                    line,
                    value: Value::Map(Vec::new()),
                },
                None,
            )),
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((node, _)) = self.stack.pop() {
                    self.attach(node);
                }
            }
            _ => {}
        }
    }
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
        assert_eq!(esc.root.entry("name").unwrap().key_line, 4);
        assert_eq!(
            esc.root
                .entries()
                .iter()
                .filter(|e| e.key == "name")
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
        assert_eq!(vs.key_line, 13);
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
