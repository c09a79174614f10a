//! The node tree every YAML reader in talext works on: what go-yaml v4's parser hands its decoder
//! (`yaml.Node`: kind, tag, style, value, line and column, content), built from yaml-rust2's
//! events. Scalars keep their source text and whether they were plain, so a decoder can resolve
//! them the way go-yaml does ([`super::decode::resolve`]); mapping entries keep their order and
//! duplicates (go-yaml refuses duplicates when it decodes, and the linter reports them);
//! aliases are expanded by copying, bounded so a small document cannot grow without end.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Aliases are expanded by copying; this bounds what a small document can expand to.
const MAX_NODES: usize = 200_000;
/// Decoding recurses per level; go-yaml bounds nesting too.
const MAX_DEPTH: usize = 500;

/// A syntax or decoding error at a position of the text.
#[derive(Debug, Clone)]
pub struct DecodeError {
    /// 1-based; 0 when the error has no position (an empty stream).
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl DecodeError {
    /// `file:line:col: message` (`file: message` without a position).
    pub fn located(&self, file: &str) -> String {
        if self.line == 0 {
            format!("{file}: {}", self.message)
        } else {
            format!("{file}:{}:{}: {}", self.line, self.col, self.message)
        }
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            f.write_str(&self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

pub type DResult<T> = std::result::Result<T, DecodeError>;

#[derive(Debug, Clone)]
pub struct Node {
    pub line: usize,
    pub col: usize,
    /// `""` (none), `"!"` (non-specific), `"!!str"` style short tags, or a full custom tag.
    pub tag: String,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub enum Kind {
    Scalar { value: String, plain: bool },
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// One `key: value` of a mapping, in source order.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: Node,
    pub value: Node,
}

impl Entry {
    /// The key's text (empty for a collection used as a key).
    pub fn name(&self) -> &str {
        self.key.text()
    }

    /// The line of the key.
    pub fn line(&self) -> usize {
        self.key.line
    }
}

/// One document of a stream.
#[derive(Debug, Clone)]
pub struct Document {
    /// 0-based position in the stream.
    pub index: usize,
    /// Line where the document's content starts.
    pub line: usize,
    pub root: Node,
}

pub(super) fn err(node: &Node, message: impl Into<String>) -> DecodeError {
    DecodeError {
        line: node.line,
        col: node.col,
        message: message.into(),
    }
}

fn at_mark(mark: &Marker, message: impl Into<String>) -> DecodeError {
    DecodeError {
        line: mark.line(),
        col: mark.col() + 1,
        message: message.into(),
    }
}

fn short_tag(tag: Option<Tag>) -> String {
    let Some(t) = tag else {
        return String::new();
    };
    let full = format!("{}{}", t.handle, t.suffix);
    if t.handle.is_empty() && t.suffix == "!" {
        "!".into()
    } else if let Some(rest) = full.strip_prefix("tag:yaml.org,2002:") {
        format!("!!{rest}")
    } else {
        full
    }
}

/// The first document of a stream, aliases expanded. An empty stream is an error (`EOF`), as
/// for go-yaml's `Decoder.Decode`; what follows the first document is not read.
pub fn first_document(text: &str) -> DResult<Node> {
    documents(text, 1)?
        .into_iter()
        .next()
        .map(|d| d.root)
        .ok_or(DecodeError {
            line: 0,
            col: 0,
            message: "EOF".into(),
        })
}

/// Up to `max` documents of a stream, in order (a lone `---` is a document holding a null).
pub fn documents(text: &str, max: usize) -> DResult<Vec<Document>> {
    // go-yaml's reader drops a byte order mark at the start of the stream.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<(Node, usize, Option<Node>)> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut count = 0usize;
    let mut root: Option<Node> = None;
    let mut docs = Vec::new();
    let mut doc_line = 0usize;
    if max == 0 {
        return Ok(docs);
    }
    loop {
        let (event, mark) = parser
            .next_token()
            .map_err(|e| at_mark(e.marker(), e.info()))?;
        let at = |kind: Kind, tag: Option<Tag>, m: &Marker| Node {
            line: m.line(),
            col: m.col() + 1,
            tag: short_tag(tag),
            kind,
        };
        let (node, anchor) = match event {
            Event::StreamEnd => return Ok(docs),
            Event::DocumentStart => {
                doc_line = mark.line();
                continue;
            }
            Event::DocumentEnd => {
                if let Some(r) = root.take() {
                    docs.push(Document {
                        index: docs.len(),
                        line: doc_line.max(r.line),
                        root: r,
                    });
                    if docs.len() >= max {
                        return Ok(docs);
                    }
                }
                anchors.clear();
                continue;
            }
            Event::Scalar(value, style, anchor, tag) => (
                at(
                    Kind::Scalar {
                        value,
                        plain: style == TScalarStyle::Plain,
                    },
                    tag,
                    &mark,
                ),
                anchor,
            ),
            Event::Alias(id) => {
                let node = anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| at_mark(&mark, "unknown anchor"))?;
                count += size(&node);
                (node, 0)
            }
            Event::SequenceStart(..) | Event::MappingStart(..) if stack.len() >= MAX_DEPTH => {
                return Err(at_mark(
                    &mark,
                    format!("document nested deeper than {MAX_DEPTH} levels"),
                ));
            }
            Event::SequenceStart(anchor, tag) => {
                stack.push((at(Kind::Seq(Vec::new()), tag, &mark), anchor, None));
                continue;
            }
            Event::MappingStart(anchor, tag) => {
                stack.push((at(Kind::Map(Vec::new()), tag, &mark), anchor, None));
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some((node, anchor, _)) => (node, anchor),
                None => continue,
            },
            _ => continue,
        };
        count += 1;
        if count > MAX_NODES {
            return Err(err(&node, "document too large after alias expansion"));
        }
        if anchor != 0 {
            anchors.insert(anchor, node.clone());
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some((parent, _, pending)) => match &mut parent.kind {
                Kind::Seq(items) => items.push(node),
                Kind::Map(entries) => match pending.take() {
                    None => *pending = Some(node),
                    Some(key) => entries.push(Entry { key, value: node }),
                },
                Kind::Scalar { .. } => {}
            },
        }
    }
}

fn size(n: &Node) -> usize {
    match &n.kind {
        Kind::Scalar { .. } => 1,
        Kind::Seq(items) => 1 + items.iter().map(size).sum::<usize>(),
        Kind::Map(entries) => {
            1 + entries
                .iter()
                .map(|e| size(&e.key) + size(&e.value))
                .sum::<usize>()
        }
    }
}

/// go-yaml's null spellings for a plain scalar (`resolver.go`).
fn is_null_text(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

impl Node {
    /// A scalar's source text; empty for collections.
    pub fn text(&self) -> &str {
        match &self.kind {
            Kind::Scalar { value, .. } => value,
            _ => "",
        }
    }

    pub fn entries(&self) -> &[Entry] {
        match &self.kind {
            Kind::Map(e) => e,
            _ => &[],
        }
    }

    pub fn items(&self) -> &[Node] {
        match &self.kind {
            Kind::Seq(i) => i,
            _ => &[],
        }
    }

    pub fn is_map(&self) -> bool {
        matches!(self.kind, Kind::Map(_))
    }

    pub fn is_seq(&self) -> bool {
        matches!(self.kind, Kind::Seq(_))
    }

    /// A plain, untagged null (`~`, `null`, empty).
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { value, plain: true } if self.tag.is_empty() && is_null_text(value))
            || (self.tag == "!!null" && matches!(self.kind, Kind::Scalar { .. }))
    }

    /// A merge key: a plain `<<`, or one tagged `!!merge`.
    pub fn is_merge(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { value, plain } if (*plain && self.tag.is_empty() && value == "<<") || self.tag == "!!merge")
    }

    /// The first entry with this key.
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries().iter().find(|e| e.name() == key)
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
        match &self.kind {
            Kind::Scalar { value, .. } if !self.is_null() => Some(value),
            _ => None,
        }
    }

    /// A YAML boolean `true` (plain `true`/`True`/`TRUE`).
    pub fn is_true(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { value, plain: true } if matches!(value.as_str(), "true" | "True" | "TRUE"))
    }

    /// Scalar items of a sequence, with their lines.
    pub fn str_items(&self) -> Vec<(&str, usize)> {
        self.items()
            .iter()
            .filter_map(|n| n.as_str().map(|s| (s, n.line)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_lines_and_duplicates() {
        let text = "# c\napiVersion: v1alpha1\nkind: ExtensionServiceConfig\nname: tailscale\nenvironment:\n  - A=1\n  - A=2\nname: again\n---\nmachine:\n  kubelet:\n    nodeIP:\n      validSubnets: [\"10.0.0.0/8\"]\n";
        let docs = documents(text, usize::MAX).unwrap();
        assert_eq!(docs.len(), 2);
        let esc = &docs[0].root;
        assert_eq!(esc.entry("name").unwrap().line(), 4);
        assert_eq!(
            esc.entries().iter().filter(|e| e.name() == "name").count(),
            2
        );
        let env = esc.get("environment").unwrap().str_items();
        assert_eq!(env, vec![("A=1", 6), ("A=2", 7)]);
        let vs = docs[1]
            .root
            .path_entry(&["machine", "kubelet", "nodeIP", "validSubnets"])
            .unwrap();
        assert_eq!(vs.line(), 13);
        assert_eq!((docs[1].index, docs[1].line), (1, 10));
    }

    #[test]
    fn only_the_first_document_is_read() {
        // A syntax error after the first document does not matter to `Decoder.Decode`.
        let root = first_document("a: 1\n---\nb: [\n").unwrap();
        assert_eq!(root.get("a").unwrap().text(), "1");
        assert_eq!(first_document("").unwrap_err().message, "EOF");
        assert!(first_document("---\n").unwrap().is_null());
    }

    #[test]
    fn aliases_are_expanded_and_bounded() {
        let root = first_document("a: &x {k: v}\nb: *x\n").unwrap();
        assert_eq!(root.path(&["b", "k"]).unwrap().text(), "v");
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..8 {
            let prev = if i == 0 {
                "a".to_string()
            } else {
                format!("l{}", i - 1)
            };
            bomb.push_str(&format!("l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        assert!(first_document(&bomb)
            .unwrap_err()
            .message
            .contains("too large"));
    }

    #[test]
    fn syntax_errors_have_lines() {
        let e = first_document("a: 1\nb: [\n").unwrap_err();
        assert!(e.line >= 2, "{e:?}");
        assert!(
            e.located("x.yaml").starts_with("x.yaml:"),
            "{}",
            e.located("x.yaml")
        );
    }

    #[test]
    fn quoted_true_is_not_a_bool() {
        let d = first_document("a: true\nb: \"true\"\nc:\nd: !!null x\n").unwrap();
        assert!(d.get("a").unwrap().is_true());
        assert!(!d.get("b").unwrap().is_true());
        assert_eq!(d.get("c").unwrap().as_str(), None);
        assert_eq!(d.get("d").unwrap().as_str(), None);
    }
}
