//! Lenient decoding the way Talos decodes extension manifests and service definitions (go-yaml
//! without `KnownFields`, contract §1 and §5.1): only the first document is read, unknown keys
//! are ignored, a scalar in a string field is its source text (`1e3` stays `1e3`, `0x10` stays
//! `0x10`), but a type mismatch (a list where a string belongs) or a repeated key is an error.
//! Decoding goes on after an error so every problem is reported, each with its line.

use super::decode::{self, Scalar};
use super::tree::{self, DecodeError, Kind, Node};

/// Read the first YAML document. `Ok(None)` when the text holds no document at all (go-yaml's
/// decoder returns `EOF` there; a lone `---` is an empty document instead).
pub fn first_document(bytes: &[u8]) -> Result<Option<Node>, DecodeError> {
    let text = std::str::from_utf8(bytes).map_err(|e| DecodeError {
        line: 0,
        col: 0,
        message: format!("not UTF-8: {e}"),
    })?;
    match tree::first_document(text) {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.line == 0 && e.message == "EOF" => Ok(None),
        Err(e) => Err(e),
    }
}

/// Collects type errors while fields are read.
#[derive(Debug, Default)]
pub struct Decoder {
    pub errors: Vec<DecodeError>,
}

fn kind(v: &Node) -> &'static str {
    match &v.kind {
        Kind::Seq(_) => "a list",
        Kind::Map(_) => "a mapping",
        Kind::Scalar { .. } => match decode::resolve(v) {
            Ok(Scalar::Bool(_)) => "a boolean",
            Ok(Scalar::Int(_) | Scalar::Uint(_) | Scalar::Float(_)) => "a number",
            Ok(Scalar::Timestamp(_)) => "a timestamp",
            _ => "a string",
        },
    }
}

impl Decoder {
    fn fail(&mut self, node: &Node, message: String) {
        self.errors.push(DecodeError {
            line: node.line,
            col: node.col,
            message,
        });
    }

    /// The value at `key` in the mapping `m` (absent and null are the same). Keys merged in with
    /// `<<` are found after the mapping's own.
    pub fn get<'v>(&self, m: Option<&'v Node>, key: &str) -> Option<&'v Node> {
        let m = m?;
        if let Some(v) = m.get(key) {
            return (!v.is_null()).then_some(v);
        }
        m.entries()
            .iter()
            .filter(|e| e.key.is_merge())
            .flat_map(|e| match &e.value.kind {
                Kind::Map(_) => vec![&e.value],
                Kind::Seq(items) => items.iter().collect(),
                Kind::Scalar { .. } => Vec::new(),
            })
            .find_map(|src| self.get(Some(src), key))
    }

    /// A mapping, or `None` (with an error when something else is there, or when it repeats a
    /// key, which go-yaml refuses).
    pub fn mapping<'v>(&mut self, v: Option<&'v Node>, field: &str) -> Option<&'v Node> {
        let v = v.filter(|v| !v.is_null())?;
        if !v.is_map() {
            self.fail(v, format!("`{field}` must be a mapping, found {}", kind(v)));
            return None;
        }
        let entries = v.entries();
        for (i, e) in entries.iter().enumerate() {
            if let Some(first) = entries[..i]
                .iter()
                .find(|p| matches!(p.key.kind, Kind::Scalar { .. }) && p.name() == e.name())
            {
                self.fail(
                    &e.key,
                    format!(
                        "`{field}`: mapping key `{}` already defined at line {}",
                        e.name(),
                        first.line()
                    ),
                );
            }
        }
        Some(v)
    }

    /// A Go `string`: the scalar's source text; absent or null is empty.
    pub fn string(&mut self, v: Option<&Node>, field: &str) -> String {
        let Some(v) = v else {
            return String::new();
        };
        if !matches!(v.kind, Kind::Scalar { .. }) {
            self.fail(v, format!("`{field}` must be a string, found {}", kind(v)));
            return String::new();
        }
        match decode::string(v) {
            Ok(s) => s.unwrap_or_default(),
            Err(e) => {
                self.fail(v, format!("`{field}`: {}", e.message));
                String::new()
            }
        }
    }

    /// A Go `bool`; like go-yaml decoding into a `bool`, the YAML 1.1 spellings (`yes`, `on`,
    /// `n`...) are accepted too.
    pub fn bool(&mut self, v: Option<&Node>, field: &str) -> bool {
        let Some(v) = v else {
            return false;
        };
        match decode::boolean(v) {
            Ok(b) => b.unwrap_or(false),
            Err(_) => {
                let shown = match &v.kind {
                    Kind::Scalar { value, .. } => format!("`{value}`"),
                    _ => kind(v).to_string(),
                };
                self.fail(v, format!("`{field}` must be a boolean, found {shown}"));
                false
            }
        }
    }

    /// A list of values (absent or null is empty).
    pub fn seq<'v>(&mut self, v: Option<&'v Node>, field: &str) -> Vec<&'v Node> {
        let Some(v) = v.filter(|v| !v.is_null()) else {
            return Vec::new();
        };
        match &v.kind {
            Kind::Seq(items) => items.iter().collect(),
            _ => {
                self.fail(v, format!("`{field}` must be a list, found {}", kind(v)));
                Vec::new()
            }
        }
    }

    /// A Go `[]string`: scalars read as text; null items are dropped, as go-yaml v4 does.
    pub fn strings(&mut self, v: Option<&Node>, field: &str) -> Vec<String> {
        self.seq(v, field)
            .into_iter()
            .enumerate()
            .filter(|(_, item)| !item.is_null())
            .map(|(i, item)| self.string(Some(item), &format!("{field}[{i}]")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Node {
        first_document(text.as_bytes()).unwrap().unwrap()
    }

    #[test]
    fn documents() {
        assert!(first_document(b"").unwrap().is_none());
        assert!(first_document(b"# only a comment\n").unwrap().is_none());
        assert!(first_document(b"---\n").unwrap().unwrap().is_null());
        let v = doc("a: 1\n---\nb: 2\n");
        assert!(v.get("a").is_some() && v.get("b").is_none());
        assert!(first_document(b"a: [").is_err());
    }

    #[test]
    fn scalars_keep_their_source_text() {
        let v = doc("version: 1e3\nname: 1.10\nsvc: 0x10\nq: '007'\nb: yes\nn: ~\n");
        let mut d = Decoder::default();
        let m = d.mapping(Some(&v), "(document)");
        assert_eq!(d.string(d.get(m, "version"), "version"), "1e3");
        assert_eq!(d.string(d.get(m, "name"), "name"), "1.10");
        assert_eq!(d.string(d.get(m, "svc"), "svc"), "0x10");
        assert_eq!(d.string(d.get(m, "q"), "q"), "007");
        assert_eq!(d.string(d.get(m, "b"), "b"), "yes");
        assert_eq!(d.string(d.get(m, "n"), "n"), "");
        assert!(d.errors.is_empty(), "{:?}", d.errors);
    }

    #[test]
    fn type_errors_are_collected_with_lines() {
        let v = doc("s: [1]\nb: maybe\nn: 3\nt: on\nl: [a, ~, b]\n");
        let mut d = Decoder::default();
        let m = d.mapping(Some(&v), "(document)");
        assert_eq!(d.string(d.get(m, "n"), "n"), "3");
        assert!(d.bool(d.get(m, "t"), "t"));
        assert_eq!(d.strings(d.get(m, "l"), "l"), vec!["a", "b"]);
        d.string(d.get(m, "s"), "s");
        d.bool(d.get(m, "b"), "b");
        let shown: Vec<String> = d.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            shown,
            vec![
                "line 1: `s` must be a string, found a list".to_string(),
                "line 2: `b` must be a boolean, found `maybe`".to_string()
            ]
        );
    }

    #[test]
    fn repeated_keys_and_merges() {
        let v = doc("base: &b {x: 1}\nm:\n  <<: *b\n  y: 2\n  y: 3\n");
        let mut d = Decoder::default();
        let root = d.mapping(Some(&v), "(document)");
        let m = d.mapping(d.get(root, "m"), "m");
        assert_eq!(d.string(d.get(m, "x"), "m.x"), "1");
        assert_eq!(d.errors.len(), 1);
        assert_eq!(d.errors[0].line, 5);
        assert!(d.errors[0].message.contains("already defined at line 4"));
    }
}
