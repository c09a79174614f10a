//! Lenient YAML decoding the way Talos decodes manifests and service definitions (go-yaml without
//! strict mode, contract §1 and §5.1): only the first document is read, unknown keys are ignored,
//! a scalar fits a string field, but a type mismatch (a list where a string belongs) is an error.
//! Decoding goes on after a type error so every problem is reported.

use serde::Deserialize;
use serde_yaml::{Mapping, Value};

/// Read the first YAML document. `Ok(None)` when the text holds no document at all (go-yaml's
/// decoder returns `EOF` there; a lone `---` is an empty document instead).
pub fn first_document(bytes: &[u8]) -> Result<Option<Value>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    let has_content = text.lines().any(|l| {
        let l = l.trim();
        !l.is_empty() && !l.starts_with('#')
    });
    if !has_content {
        return Ok(None);
    }
    let mut docs = serde_yaml::Deserializer::from_str(text);
    match docs.next() {
        None => Ok(None),
        Some(doc) => Value::deserialize(doc).map(Some).map_err(|e| e.to_string()),
    }
}

/// Collects type errors while fields are read.
#[derive(Debug, Default)]
pub struct Decoder {
    pub errors: Vec<String>,
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

fn untag(v: &Value) -> &Value {
    match v {
        Value::Tagged(t) => untag(&t.value),
        v => v,
    }
}

impl Decoder {
    /// The value at `key` in `m` (absent and null are the same).
    pub fn get<'v>(&self, m: Option<&'v Mapping>, key: &str) -> Option<&'v Value> {
        m?.get(key).map(untag).filter(|v| !v.is_null())
    }

    /// A mapping, or `None` (with an error when something else is there).
    pub fn mapping<'v>(&mut self, v: Option<&'v Value>, field: &str) -> Option<&'v Mapping> {
        match v.map(untag) {
            None | Some(Value::Null) => None,
            Some(Value::Mapping(m)) => Some(m),
            Some(other) => {
                self.errors.push(format!(
                    "`{field}` must be a mapping, found {}",
                    kind(other)
                ));
                None
            }
        }
    }

    /// A scalar read as text; absent or null is empty.
    pub fn string(&mut self, v: Option<&Value>, field: &str) -> String {
        match v.map(untag) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Bool(b)) => b.to_string(),
            Some(Value::Number(n)) => n.to_string(),
            Some(other) => {
                self.errors
                    .push(format!("`{field}` must be a string, found {}", kind(other)));
                String::new()
            }
        }
    }

    /// A boolean; like go-yaml v3 decoding into a `bool`, the YAML 1.1 spellings (`yes`, `on`,
    /// `n`...) are accepted too.
    pub fn bool(&mut self, v: Option<&Value>, field: &str) -> bool {
        match v.map(untag) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => match s.as_str() {
                "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => true,
                "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => false,
                _ => {
                    self.errors
                        .push(format!("`{field}` must be a boolean, found `{s}`"));
                    false
                }
            },
            Some(other) => {
                self.errors.push(format!(
                    "`{field}` must be a boolean, found {}",
                    kind(other)
                ));
                false
            }
        }
    }

    /// A list of values (absent or null is empty).
    pub fn seq<'v>(&mut self, v: Option<&'v Value>, field: &str) -> Vec<&'v Value> {
        match v.map(untag) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Sequence(s)) => s.iter().map(untag).collect(),
            Some(other) => {
                self.errors
                    .push(format!("`{field}` must be a list, found {}", kind(other)));
                Vec::new()
            }
        }
    }

    /// A list of scalars read as text.
    pub fn strings(&mut self, v: Option<&Value>, field: &str) -> Vec<String> {
        self.seq(v, field)
            .into_iter()
            .enumerate()
            .map(|(i, item)| self.string(Some(item), &format!("{field}[{i}]")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents() {
        assert_eq!(first_document(b"").unwrap(), None);
        assert_eq!(first_document(b"# only a comment\n").unwrap(), None);
        assert_eq!(first_document(b"---\n").unwrap(), Some(Value::Null));
        let v = first_document(b"a: 1\n---\nb: 2\n").unwrap().unwrap();
        assert!(v.get("a").is_some() && v.get("b").is_none());
        assert!(first_document(b"a: [").is_err());
    }

    #[test]
    fn type_errors_are_collected() {
        let v = first_document(b"s: [1]\nb: maybe\nn: 3\nt: on\n")
            .unwrap()
            .unwrap();
        let m = v.as_mapping();
        let mut d = Decoder::default();
        assert_eq!(d.string(d.get(m, "n"), "n"), "3");
        assert!(d.bool(d.get(m, "t"), "t"));
        d.string(d.get(m, "s"), "s");
        d.bool(d.get(m, "b"), "b");
        assert_eq!(
            d.errors,
            vec![
                "`s` must be a string, found a list".to_string(),
                "`b` must be a boolean, found `maybe`".to_string()
            ]
        );
    }
}
