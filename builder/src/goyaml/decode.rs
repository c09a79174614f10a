//! Decoding a node tree into Go types the way go-yaml v4 does (go.yaml.in/yaml/v4 v4.0.0-rc.6,
//! `internal/libyaml/constructor.go`, `resolver.go`): quoted and block scalars are strings; a
//! plain scalar resolves to null, bool, int, float, timestamp or string first
//! ([`resolve_plain`]); a string field takes any resolved scalar as its source text except a
//! timestamp (an error); a null leaves a field at its zero value and is dropped from a list of
//! strings or structs; an integer field takes ints and lossless floats in range; a bool field
//! also takes the YAML 1.1 words (`yes`, `off`); an enum with `UnmarshalText` gets the
//! scalar's text; duplicate keys are errors, and so are unknown fields where the Go side sets
//! `KnownFields(true)` ([`structure`]); `<<` merges mappings.
//!
//! The Image Factory decodes schematics this way (`image-factory:pkg/schematic/schematic.go` at
//! 26b95ca, strict); Talos reads extension manifests and service files with the same rules but
//! without `KnownFields` ([`super::lenient`]).

use std::collections::{BTreeSet, HashMap};

use base64::Engine as _;

use super::emit::{sort_any_map_keys, sort_map_keys, GoValue};
use super::scalar::{resolve_plain, Resolved, Timestamp};
use super::tree::{err, DResult, DecodeError, Entry, Kind, Node};

/// A scalar after go-yaml's `resolve(tag, value)`.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Timestamp(Timestamp),
    Merge,
    /// `!!str`, a quoted or block scalar, or a plain one that resolves to a string.
    Str(String),
    /// `!!binary`, decoded.
    Binary(String),
    /// A tag go-yaml does not resolve (`!`, `!foo`, `!!seq` on a scalar): a string with a tag.
    Other(String),
}

fn tag_name(s: &Scalar) -> &'static str {
    match s {
        Scalar::Null => "!!null",
        Scalar::Bool(_) => "!!bool",
        Scalar::Int(_) | Scalar::Uint(_) => "!!int",
        Scalar::Float(_) => "!!float",
        Scalar::Timestamp(_) => "!!timestamp",
        Scalar::Merge => "!!merge",
        Scalar::Str(_) => "!!str",
        Scalar::Binary(_) => "!!binary",
        Scalar::Other(_) => "!!str",
    }
}

fn from_resolved(r: Resolved, value: &str) -> Scalar {
    match r {
        Resolved::Null => Scalar::Null,
        Resolved::Bool(b) => Scalar::Bool(b),
        Resolved::Int(i) => Scalar::Int(i),
        Resolved::Uint(u) => Scalar::Uint(u),
        Resolved::Float(f) => Scalar::Float(f),
        Resolved::Timestamp(t) => Scalar::Timestamp(t),
        Resolved::Merge => Scalar::Merge,
        Resolved::Str => Scalar::Str(value.to_string()),
    }
}

/// `Constructor.scalar`'s first step: the tag and the resolved value.
pub fn resolve(node: &Node) -> DResult<Scalar> {
    let Kind::Scalar { value, plain } = &node.kind else {
        return Err(err(node, "expected a scalar"));
    };
    let tag = node.tag.as_str();
    // `indicatedString`: `!!str`, or a quoted or block scalar without a specific tag.
    if tag == "!!str" || ((tag.is_empty() || tag == "!") && !plain) {
        return Ok(Scalar::Str(value.clone()));
    }
    match tag {
        "" => Ok(from_resolved(resolve_plain(value), value)),
        "!!binary" => {
            let compact: String = value.chars().filter(|c| !c.is_whitespace()).collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map_err(|_| err(node, "!!binary value contains invalid base64 data"))?;
            let text = String::from_utf8(bytes).map_err(|_| {
                err(
                    node,
                    "a `!!binary` value that is not UTF-8 is not supported; compute this ID with the factory",
                )
            })?;
            Ok(Scalar::Binary(text))
        }
        "!!null" | "!!bool" | "!!int" | "!!float" | "!!timestamp" => {
            let mut r = resolve_plain(value);
            if tag != "!!timestamp" && matches!(r, Resolved::Timestamp(_)) {
                r = Resolved::Str;
            }
            let got = from_resolved(r, value);
            let ok = tag_name(&got) == tag;
            match (&got, tag) {
                _ if ok => Ok(got),
                (Scalar::Int(i), "!!float") => Ok(Scalar::Float(*i as f64)),
                _ => Err(err(
                    node,
                    format!("cannot construct {} `{value}` as a {tag}", tag_name(&got)),
                )),
            }
        }
        "!!merge" => Ok(Scalar::Merge),
        _ => Ok(Scalar::Other(value.clone())),
    }
}

fn scalar_text(node: &Node) -> &str {
    match &node.kind {
        Kind::Scalar { value, .. } => value,
        _ => "",
    }
}

fn kind_tag(node: &Node) -> &'static str {
    match &node.kind {
        Kind::Seq(_) => "!!seq",
        Kind::Map(_) => "!!map",
        Kind::Scalar { .. } => "!!str",
    }
}

fn type_error(node: &Node, tag: &str, go_type: &str) -> DecodeError {
    let shown = match &node.kind {
        Kind::Scalar { value, .. } => format!(" `{value}`"),
        _ => String::new(),
    };
    err(
        node,
        format!("cannot construct {tag}{shown} into `{go_type}`"),
    )
}

fn is_null(node: &Node) -> DResult<bool> {
    Ok(matches!(node.kind, Kind::Scalar { .. }) && resolve(node)? == Scalar::Null)
}

/// A Go `string` field. `None` leaves the field unset (a null, or `<<`).
pub fn string(node: &Node) -> DResult<Option<String>> {
    if !matches!(node.kind, Kind::Scalar { .. }) {
        return Err(type_error(node, kind_tag(node), "string"));
    }
    Ok(match resolve(node)? {
        Scalar::Null | Scalar::Merge => None,
        Scalar::Str(s) | Scalar::Binary(s) | Scalar::Other(s) => Some(s),
        Scalar::Bool(_) | Scalar::Int(_) | Scalar::Uint(_) | Scalar::Float(_) => {
            Some(scalar_text(node).to_string())
        }
        Scalar::Timestamp(_) => return Err(type_error(node, "!!timestamp", "string")),
    })
}

/// An unsigned integer field of at most `max`.
pub fn uint(node: &Node, max: u64, go_type: &str) -> DResult<Option<u64>> {
    if !matches!(node.kind, Kind::Scalar { .. }) {
        return Err(type_error(node, kind_tag(node), go_type));
    }
    let s = resolve(node)?;
    let v = match &s {
        Scalar::Null | Scalar::Merge => return Ok(None),
        Scalar::Int(i) if *i >= 0 => Some(*i as u64),
        Scalar::Uint(u) => Some(*u),
        Scalar::Float(f) if *f >= 0.0 && *f <= u64::MAX as f64 => {
            let u = *f as u64;
            (u as f64 == *f).then_some(u)
        }
        _ => None,
    };
    match v {
        Some(v) if v <= max => Ok(Some(v)),
        _ => Err(type_error(node, tag_name(&s), go_type)),
    }
}

/// A Go `bool` field; YAML 1.1 words are accepted from strings, as go-yaml does.
pub fn boolean(node: &Node) -> DResult<Option<bool>> {
    if !matches!(node.kind, Kind::Scalar { .. }) {
        return Err(type_error(node, kind_tag(node), "bool"));
    }
    let s = resolve(node)?;
    match &s {
        Scalar::Null | Scalar::Merge => Ok(None),
        Scalar::Bool(b) => Ok(Some(*b)),
        Scalar::Str(t) => match t.as_str() {
            "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Ok(Some(true)),
            "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => Ok(Some(false)),
            _ => Err(type_error(node, "!!str", "bool")),
        },
        other => Err(type_error(node, tag_name(other), "bool")),
    }
}

/// A field whose Go type implements `encoding.TextUnmarshaler`: the scalar's text, or `None`
/// for a null.
pub fn text(node: &Node, go_type: &str) -> DResult<Option<String>> {
    if !matches!(node.kind, Kind::Scalar { .. }) {
        return Err(err(
            node,
            format!(
                "cannot construct {} into `{go_type}` (TextUnmarshaler)",
                kind_tag(node)
            ),
        ));
    }
    Ok(match resolve(node)? {
        Scalar::Null => None,
        Scalar::Binary(s) => Some(s),
        _ => Some(scalar_text(node).to_string()),
    })
}

/// A Go slice: `None` for a null; items whose decoding leaves nothing (nulls) are dropped.
pub fn seq<T>(
    node: &Node,
    go_type: &str,
    mut item: impl FnMut(&Node) -> DResult<Option<T>>,
) -> DResult<Option<Vec<T>>> {
    match &node.kind {
        Kind::Seq(items) => {
            let mut out = Vec::new();
            for i in items {
                if let Some(v) = item(i)? {
                    out.push(v);
                }
            }
            Ok(Some(out))
        }
        Kind::Scalar { .. } if is_null(node)? => Ok(None),
        Kind::Scalar { .. } => Err(type_error(node, tag_name(&resolve(node)?), go_type)),
        Kind::Map(_) => Err(type_error(node, "!!map", go_type)),
    }
}

fn is_merge_key(node: &Node) -> DResult<bool> {
    Ok(matches!(node.kind, Kind::Scalar { .. }) && resolve(node)? == Scalar::Merge)
}

/// go-yaml's unique-keys check: two keys of the same kind and text.
fn check_unique(entries: &[Entry]) -> DResult<()> {
    let mut seen: HashMap<(&'static str, &str), usize> = HashMap::new();
    for Entry { key: k, .. } in entries {
        let kind = match k.kind {
            Kind::Scalar { .. } => "scalar",
            Kind::Seq(_) => "seq",
            Kind::Map(_) => "map",
        };
        if let Some(line) = seen.insert((kind, scalar_text(k)), k.line) {
            return Err(err(
                k,
                format!(
                    "mapping key `{}` already defined at line {line}",
                    scalar_text(k)
                ),
            ));
        }
    }
    Ok(())
}

/// The mappings a `<<` value merges in, in order.
fn merge_sources(node: &Node) -> DResult<Vec<&Node>> {
    let want = || {
        err(
            node,
            "map merge requires map or sequence of maps as the value",
        )
    };
    match &node.kind {
        Kind::Map(_) => Ok(vec![node]),
        Kind::Seq(items) => {
            if items.iter().all(|i| matches!(i.kind, Kind::Map(_))) {
                Ok(items.iter().collect())
            } else {
                Err(want())
            }
        }
        Kind::Scalar { .. } => Err(want()),
    }
}

/// A Go struct: each key names a field (`KnownFields`: unknown names are errors), `field`
/// decodes the value. A null leaves the struct at its zero value.
pub fn structure(
    node: &Node,
    go_type: &str,
    fields: &[&str],
    field: &mut dyn FnMut(&str, &Node) -> DResult<()>,
) -> DResult<()> {
    let mut done = BTreeSet::new();
    structure_inner(node, go_type, fields, field, &mut done)
}

fn structure_inner(
    node: &Node,
    go_type: &str,
    fields: &[&str],
    field: &mut dyn FnMut(&str, &Node) -> DResult<()>,
    done: &mut BTreeSet<String>,
) -> DResult<()> {
    let entries = match &node.kind {
        Kind::Map(entries) => entries,
        Kind::Scalar { .. } if is_null(node)? => return Ok(()),
        Kind::Scalar { .. } => return Err(type_error(node, tag_name(&resolve(node)?), go_type)),
        Kind::Seq(_) => return Err(type_error(node, "!!seq", go_type)),
    };
    check_unique(entries)?;
    let mut merges = Vec::new();
    let outer: BTreeSet<String> = done.clone();
    let mut mine = BTreeSet::new();
    for Entry { key: k, value: v } in entries {
        if is_merge_key(k)? {
            merges.push(v);
            continue;
        }
        let Some(name) = string(k)? else {
            continue;
        };
        // Keys of an enclosing mapping win over merged ones.
        if outer.contains(&name) {
            continue;
        }
        mine.insert(name.clone());
        if !fields.contains(&name.as_str()) {
            return Err(err(
                k,
                format!("field `{name}` not found in type `{go_type}`"),
            ));
        }
        field(&name, v)?;
    }
    done.extend(mine);
    for m in merges {
        for src in merge_sources(m)? {
            structure_inner(src, go_type, fields, field, done)?;
        }
    }
    Ok(())
}

/// A `map[string]any` field, keys sorted as go-yaml writes them.
pub fn any_map(node: &Node, go_type: &str) -> DResult<Option<GoValue>> {
    match &node.kind {
        Kind::Map(_) => {}
        Kind::Scalar { .. } if is_null(node)? => return Ok(None),
        Kind::Scalar { .. } => return Err(type_error(node, tag_name(&resolve(node)?), go_type)),
        Kind::Seq(_) => return Err(type_error(node, "!!seq", go_type)),
    }
    let mut strs: Vec<(String, GoValue)> = Vec::new();
    collect_string_map(node, &mut strs, &mut BTreeSet::new())?;
    sort_map_keys(&mut strs);
    Ok(Some(GoValue::Map(strs)))
}

fn collect_string_map(
    node: &Node,
    out: &mut Vec<(String, GoValue)>,
    done: &mut BTreeSet<String>,
) -> DResult<()> {
    let Kind::Map(entries) = &node.kind else {
        return Ok(());
    };
    check_unique(entries)?;
    let outer = done.clone();
    let mut merges = Vec::new();
    for Entry { key: k, value: v } in entries {
        if is_merge_key(k)? {
            merges.push(v);
            continue;
        }
        let Some(key) = string(k)? else {
            continue;
        };
        if outer.contains(&key) {
            continue;
        }
        done.insert(key.clone());
        if let Some(value) = any(v)? {
            out.retain(|(ek, _)| *ek != key);
            out.push((key, value));
        }
    }
    for m in merges {
        for src in merge_sources(m)? {
            collect_string_map(src, out, done)?;
        }
    }
    Ok(())
}

/// go-yaml's `isStringMap`: every key is a string or `<<`.
fn is_string_map(entries: &[Entry]) -> DResult<bool> {
    for Entry { key: k, .. } in entries {
        if !matches!(k.kind, Kind::Scalar { .. }) {
            return Ok(false);
        }
        if !matches!(
            resolve(k)?,
            Scalar::Str(_) | Scalar::Merge | Scalar::Other(_)
        ) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A value decoded into `any`: `None` when go-yaml sets nothing (a `<<` value).
pub fn any(node: &Node) -> DResult<Option<GoValue>> {
    match &node.kind {
        Kind::Scalar { .. } => Ok(match resolve(node)? {
            Scalar::Null => Some(GoValue::Null),
            Scalar::Bool(b) => Some(GoValue::Bool(b)),
            Scalar::Int(i) => Some(GoValue::Int(i)),
            Scalar::Uint(u) => Some(GoValue::Uint(u)),
            Scalar::Float(f) => Some(GoValue::Float(f)),
            Scalar::Timestamp(t) => Some(GoValue::Time(t)),
            Scalar::Merge => None,
            Scalar::Str(s) | Scalar::Binary(s) | Scalar::Other(s) => Some(GoValue::Str(s)),
        }),
        Kind::Seq(items) => {
            let mut out = Vec::new();
            for i in items {
                if let Some(v) = any(i)? {
                    out.push(v);
                }
            }
            Ok(Some(GoValue::Seq(out)))
        }
        Kind::Map(entries) if is_string_map(entries)? => {
            let mut strs = Vec::new();
            collect_string_map(node, &mut strs, &mut BTreeSet::new())?;
            sort_map_keys(&mut strs);
            Ok(Some(GoValue::Map(strs)))
        }
        Kind::Map(entries) => {
            check_unique(entries)?;
            let mut out: Vec<(GoValue, GoValue)> = Vec::new();
            let mut merges = Vec::new();
            for Entry { key: k, value: v } in entries {
                if is_merge_key(k)? {
                    merges.push(v);
                    continue;
                }
                if !matches!(k.kind, Kind::Scalar { .. }) {
                    return Err(err(
                        k,
                        "a mapping or sequence as a map key is not supported",
                    ));
                }
                let Some(key) = any(k)? else {
                    continue;
                };
                if let Some(value) = any(v)? {
                    out.retain(|(ek, _)| *ek != key);
                    out.push((key, value));
                }
            }
            for m in merges {
                for src in merge_sources(m)? {
                    match any(src)? {
                        Some(GoValue::AnyMap(more)) => {
                            for (k, v) in more {
                                if !out.iter().any(|(ek, _)| *ek == k) {
                                    out.push((k, v));
                                }
                            }
                        }
                        Some(GoValue::Map(more)) => {
                            for (k, v) in more {
                                let k = GoValue::Str(k);
                                if !out.iter().any(|(ek, _)| *ek == k) {
                                    out.push((k, v));
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            sort_any_map_keys(&mut out);
            Ok(Some(GoValue::AnyMap(out)))
        }
    }
}
