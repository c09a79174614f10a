//! A YAML emitter that writes what go-yaml v4's `yaml.Marshal` writes for the values Talos and the
//! Image Factory serialise: block style, keys in the order given, sequences indented under their
//! key, empty collections as `{}` / `[]`, strings quoted only when go-yaml would quote them, and
//! no line folding (`Marshal` sets an unlimited line width).
//!
//! Quoting follows go.yaml.in/yaml/v4 v4.0.0-rc.6 (the version the Image Factory pins), whose
//! `Marshal` uses the v3 defaults with the legacy quote preference: a string that would read
//! back as another type is double-quoted (`internal/libyaml/desolver.go`), a YAML 1.1 boolean
//! (`yes`, `off`), a base-60 float or `<<` is single-quoted (`representer.go`, `stringv`), a
//! string the scalar analysis forbids plain is single-quoted, or double-quoted when single
//! quotes cannot hold it (`emitter.go`, `analyzeScalar`, `selectScalarStyle`), and a multi-line
//! string is a literal block whose indentation hint is written only for a leading space
//! (`writeBlockScalarHints`). A key longer than 128 bytes or spanning lines is written as a
//! complex `? key` / `: value` pair (`checkSimpleKey`).
//!
//! The Image Factory hashes these bytes to name a schematic (reference §1.2), so this follows
//! those functions closely for the shapes we emit; it is not a general YAML library.

use std::cmp::Ordering;

use super::scalar::{
    analyze, double_quote, is_break, needs_compat_quotes, resolves_to_string, should_use_literal,
    Timestamp,
};

/// A value as go-yaml's encoder sees it after reflection.
#[derive(Debug, Clone, PartialEq)]
pub enum GoValue {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(String),
    /// A `time.Time`, written in RFC 3339 with nanoseconds.
    Time(Timestamp),
    Seq(Vec<GoValue>),
    /// A struct (fields in declaration order) or a map already sorted with [`sort_map_keys`].
    Map(Vec<(String, GoValue)>),
    /// A `map[any]any` (keys of mixed types), sorted with [`sort_any_map_keys`].
    AnyMap(Vec<(GoValue, GoValue)>),
}

impl GoValue {
    pub fn str(s: impl Into<String>) -> Self {
        GoValue::Str(s.into())
    }

    /// An empty map, string or list; what `omitempty` drops.
    pub fn is_zero(&self) -> bool {
        match self {
            GoValue::Null => true,
            GoValue::Bool(b) => !b,
            GoValue::Int(i) => *i == 0,
            GoValue::Uint(u) => *u == 0,
            GoValue::Float(f) => *f == 0.0,
            GoValue::Str(s) => s.is_empty(),
            GoValue::Time(_) => false,
            GoValue::Seq(v) => v.is_empty(),
            GoValue::Map(m) => m.is_empty(),
            GoValue::AnyMap(m) => m.is_empty(),
        }
    }
}

/// Serialise one document the way `yaml.Marshal` does with the given indentation (go-yaml's
/// default is 4; Talos's own `Dump`s use 2).
pub fn marshal(value: &GoValue, indent: usize) -> String {
    let mut e = Emitter {
        out: String::new(),
        best_indent: indent.clamp(2, 9),
        column: 0,
        whitespace: true,
    };
    e.root(value);
    if e.column > 0 {
        e.newline();
    }
    e.out
}

/// Sort map keys with go-yaml's `keyList.Less` (a natural order: digit runs compare as numbers,
/// and at the first difference a letter sorts after a non-letter unless a digit preceded it).
pub fn sort_map_keys(entries: &mut [(String, GoValue)]) {
    entries.sort_by(|a, b| {
        if key_less(&a.0, &b.0) {
            Ordering::Less
        } else if key_less(&b.0, &a.0) {
            Ordering::Greater
        } else {
            Ordering::Equal
        }
    });
}

/// `keyList.Less` over keys of any type: numbers and booleans by value, then by Go kind
/// (`bool < int < uint < float64 < interface(nil) < string < struct(time)`), strings naturally.
pub fn sort_any_map_keys(entries: &mut [(GoValue, GoValue)]) {
    entries.sort_by(|a, b| {
        if any_key_less(&a.0, &b.0) {
            Ordering::Less
        } else if any_key_less(&b.0, &a.0) {
            Ordering::Greater
        } else {
            Ordering::Equal
        }
    });
}

fn go_kind(v: &GoValue) -> u8 {
    match v {
        GoValue::Bool(_) => 1,
        GoValue::Int(_) => 2,
        GoValue::Uint(_) => 7,
        GoValue::Float(_) => 14,
        GoValue::Null => 20,
        GoValue::AnyMap(_) | GoValue::Map(_) => 21,
        GoValue::Seq(_) => 23,
        GoValue::Str(_) => 24,
        GoValue::Time(_) => 25,
    }
}

fn key_number(v: &GoValue) -> Option<f64> {
    match v {
        GoValue::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        GoValue::Int(i) => Some(*i as f64),
        GoValue::Uint(u) => Some(*u as f64),
        GoValue::Float(f) => Some(*f),
        _ => None,
    }
}

fn any_key_less(a: &GoValue, b: &GoValue) -> bool {
    let (ak, bk) = (go_kind(a), go_kind(b));
    if let (Some(af), Some(bf)) = (key_number(a), key_number(b)) {
        if af != bf {
            return af < bf;
        }
        if ak != bk {
            return ak < bk;
        }
        return match (a, b) {
            (GoValue::Int(x), GoValue::Int(y)) => x < y,
            (GoValue::Uint(x), GoValue::Uint(y)) => x < y,
            (GoValue::Float(x), GoValue::Float(y)) => x < y,
            (GoValue::Bool(x), GoValue::Bool(y)) => !x && *y,
            _ => false,
        };
    }
    match (a, b) {
        (GoValue::Str(x), GoValue::Str(y)) => key_less(x, y),
        _ => ak < bk,
    }
}

fn key_less(a: &str, b: &str) -> bool {
    let ar: Vec<char> = a.chars().collect();
    let br: Vec<char> = b.chars().collect();
    let mut digits = false;
    let n = ar.len().min(br.len());
    for i in 0..n {
        if ar[i] == br[i] {
            digits = ar[i].is_ascii_digit();
            continue;
        }
        let al = ar[i].is_alphabetic();
        let bl = br[i].is_alphabetic();
        if al && bl {
            return ar[i] < br[i];
        }
        if al || bl {
            return if digits { al } else { bl };
        }
        let (mut an, mut bn): (i64, i64) = (0, 0);
        if ar[i] == '0' || br[i] == '0' {
            let mut j = i;
            while j > 0 && ar[j - 1].is_ascii_digit() {
                j -= 1;
                if ar[j] != '0' {
                    an = 1;
                    bn = 1;
                    break;
                }
            }
        }
        let mut ai = i;
        while ai < ar.len() && ar[ai].is_ascii_digit() {
            an = an.wrapping_mul(10).wrapping_add(ar[ai] as i64 - '0' as i64);
            ai += 1;
        }
        let mut bi = i;
        while bi < br.len() && br[bi].is_ascii_digit() {
            bn = bn.wrapping_mul(10).wrapping_add(br[bi] as i64 - '0' as i64);
            bi += 1;
        }
        if an != bn {
            return an < bn;
        }
        if ai != bi {
            return ai < bi;
        }
        return ar[i] < br[i];
    }
    ar.len() < br.len()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

/// Where a scalar or collection is being written.
#[derive(Debug, Clone, Copy)]
enum Place {
    /// The document root.
    Root,
    /// After `key:` in a block mapping whose keys sit at this indent.
    MapValue(usize),
    /// After `- ` of a sequence item whose dash sits at this indent.
    SeqItem(usize),
}

enum Key<'a> {
    Str(&'a str),
    /// A key of another type, already in its plain spelling.
    Plain(String),
}

struct Emitter {
    out: String,
    best_indent: usize,
    column: usize,
    /// go-yaml's `emitter.whitespace`: the last thing written was whitespace (or nothing).
    whitespace: bool,
}

impl Emitter {
    fn put(&mut self, s: &str) {
        for c in s.chars() {
            self.out.push(c);
            self.column += 1;
        }
        if !s.is_empty() {
            self.whitespace = false;
        }
    }

    fn newline(&mut self) {
        self.out.push('\n');
        self.column = 0;
        self.whitespace = true;
    }

    /// `yaml_emitter_write_indent`: break the line unless we are at the start of one.
    fn indent_to(&mut self, indent: usize) {
        if self.column > 0 {
            self.newline();
        }
        while self.column < indent {
            self.out.push(' ');
            self.column += 1;
        }
        self.whitespace = true;
    }

    /// go-yaml's `increaseIndent` for a block collection or scalar nested in `place`.
    fn child_indent(&self, place: Place) -> usize {
        match place {
            Place::Root => 0,
            Place::MapValue(i) => self.best_indent * ((i + self.best_indent) / self.best_indent),
            Place::SeqItem(d) => d + 2,
        }
    }

    fn root(&mut self, v: &GoValue) {
        self.node(v, Place::Root);
    }

    fn node(&mut self, v: &GoValue, place: Place) {
        match v {
            GoValue::Map(entries) if entries.is_empty() => self.flow_empty("{}"),
            GoValue::Seq(items) if items.is_empty() => self.flow_empty("[]"),
            GoValue::AnyMap(entries) if entries.is_empty() => self.flow_empty("{}"),
            GoValue::Map(entries) => {
                let indent = self.child_indent(place);
                for (n, (k, val)) in entries.iter().enumerate() {
                    // The first key of a mapping inside a sequence item shares the dash's line.
                    let same_line = n == 0 && matches!(place, Place::SeqItem(_));
                    self.entry(same_line, Key::Str(k), val, indent);
                }
            }
            GoValue::AnyMap(entries) => {
                let indent = self.child_indent(place);
                for (n, (k, val)) in entries.iter().enumerate() {
                    let same_line = n == 0 && matches!(place, Place::SeqItem(_));
                    let key = match k {
                        GoValue::Str(s) => Key::Str(s),
                        other => Key::Plain(plain_text(other)),
                    };
                    self.entry(same_line, key, val, indent);
                }
            }
            GoValue::Seq(items) => {
                let dash = match place {
                    Place::Root => 0,
                    Place::MapValue(i) => {
                        self.best_indent * ((i + self.best_indent) / self.best_indent)
                    }
                    Place::SeqItem(d) => d + 2,
                };
                for (n, item) in items.iter().enumerate() {
                    let same_line = n == 0 && matches!(place, Place::SeqItem(_));
                    if !same_line {
                        self.indent_to(dash);
                    } else if !self.whitespace {
                        self.put(" ");
                    }
                    self.put("-");
                    self.node(item, Place::SeqItem(dash));
                }
            }
            GoValue::Str(s) => {
                let indent = self.child_indent(place);
                self.scalar(s, false, indent);
            }
            other => {
                let text = plain_text(other);
                self.space();
                self.put(&text);
            }
        }
    }

    /// One `key: value` pair of a block mapping whose keys sit at `indent`. A key that is not
    /// simple (`checkSimpleKey`: over 128 bytes or multi-line) takes the `? key` / `: value` form.
    fn entry(&mut self, same_line: bool, key: Key<'_>, val: &GoValue, indent: usize) {
        if !same_line {
            self.indent_to(indent);
        }
        match key {
            Key::Str(k) if k.len() > 128 || analyze(k).multiline => {
                self.space();
                self.put("?");
                let key_indent = self.child_indent(Place::MapValue(indent));
                self.scalar(k, false, key_indent);
                self.indent_to(indent);
                self.put(":");
            }
            Key::Str(k) => {
                self.scalar(k, true, indent);
                self.put(":");
            }
            Key::Plain(text) => {
                self.space();
                self.put(&text);
                self.put(":");
            }
        }
        self.node(val, Place::MapValue(indent));
    }

    fn space(&mut self) {
        if !self.whitespace {
            self.put(" ");
        }
    }

    fn flow_empty(&mut self, s: &str) {
        self.space();
        self.put(s);
    }

    /// `stringv` + `yaml_emitter_select_scalar_style` + the writers.
    fn scalar(&mut self, s: &str, simple_key: bool, indent: usize) {
        let a = analyze(s);
        let mut style = if s.contains('\n') {
            if should_use_literal(s) {
                Style::Literal
            } else {
                Style::Double
            }
        } else if needs_compat_quotes(s) {
            Style::Single
        } else if !resolves_to_string(s) {
            Style::Double
        } else {
            Style::Plain
        };
        if simple_key && a.multiline {
            style = Style::Double;
        }
        if style == Style::Plain && (!a.block_plain_allowed || (s.is_empty() && simple_key)) {
            style = Style::Single;
        }
        if style == Style::Single && !a.single_quoted_allowed {
            style = Style::Double;
        }
        if style == Style::Literal && (!a.block_allowed || simple_key) {
            style = Style::Double;
        }
        match style {
            Style::Plain => {
                if !s.is_empty() {
                    self.space();
                }
                self.put(s);
            }
            Style::Single => {
                self.space();
                let mut q = String::from("'");
                for c in s.chars() {
                    if c == '\'' {
                        q.push('\'');
                    }
                    q.push(c);
                }
                q.push('\'');
                self.put(&q);
            }
            Style::Double => {
                self.space();
                let q = double_quote(s);
                self.put(&q);
            }
            Style::Literal => self.literal(s, indent),
        }
    }

    /// `writeLiteralScalar`: the header, a line break, then each line at `indent`.
    fn literal(&mut self, s: &str, indent: usize) {
        self.space();
        let mut head = String::from("|");
        // v4 writes an indentation hint only for a leading space (go-yaml issue 65).
        if s.starts_with(' ') {
            head.push_str(&self.best_indent.to_string());
        }
        // Chomping: `-` without a final break, `+` when the value ends in two breaks (or is a
        // single break), nothing for exactly one.
        let chars: Vec<char> = s.chars().collect();
        match chars.last() {
            Some(&c) if !is_break(c) => head.push('-'),
            Some(_) if chars.len() == 1 => head.push('+'),
            Some(_) if is_break(chars[chars.len() - 2]) => head.push('+'),
            _ => {}
        }
        self.put(&head);
        self.newline();
        let mut breaks = true;
        for c in chars {
            if is_break(c) {
                self.out.push(c);
                self.column = 0;
                breaks = true;
            } else {
                if breaks {
                    self.indent_to(indent);
                }
                self.out.push(c);
                self.column += 1;
                breaks = false;
            }
        }
        self.whitespace = true;
    }
}

fn plain_text(v: &GoValue) -> String {
    match v {
        GoValue::Null => "null".into(),
        GoValue::Bool(b) => b.to_string(),
        GoValue::Int(i) => i.to_string(),
        GoValue::Uint(u) => u.to_string(),
        GoValue::Float(f) => format_go_float(*f),
        GoValue::Time(t) => t.rfc3339_nano(),
        _ => unreachable!("collections and strings are written elsewhere"),
    }
}

/// `strconv.FormatFloat(f, 'g', -1, 64)` plus go-yaml's `.inf`/`.nan` spellings.
pub fn format_go_float(f: f64) -> String {
    if f.is_nan() {
        return ".nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            ".inf".into()
        } else {
            "-.inf".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    // Shortest round-tripping digits and decimal exponent, from Rust's `{:e}`.
    let sci = format!("{:e}", f.abs());
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if f < 0.0 { "-" } else { "" };
    // strconv's %g with the shortest precision switches to %e when exp < -4 || exp >= 6.
    if !(-4..6).contains(&exp) {
        let mut m = digits[..1].to_string();
        if digits.len() > 1 {
            m.push('.');
            m.push_str(&digits[1..]);
        }
        let es = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{m}e{es}{:02}", exp.abs());
    }
    let point = exp + 1;
    let s = if point <= 0 {
        format!("0.{}{}", "0".repeat((-point) as usize), digits)
    } else if point as usize >= digits.len() {
        format!("{}{}", digits, "0".repeat(point as usize - digits.len()))
    } else {
        format!(
            "{}.{}",
            &digits[..point as usize],
            &digits[point as usize..]
        )
    };
    format!("{sign}{s}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(entries: Vec<(&str, GoValue)>) -> GoValue {
        GoValue::Map(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    }

    #[test]
    fn nested_blocks_use_go_indentation() {
        let v = m(vec![(
            "customization",
            m(vec![
                (
                    "extraKernelArgs",
                    GoValue::Seq(vec![GoValue::str("noapic")]),
                ),
                (
                    "meta",
                    GoValue::Seq(vec![m(vec![
                        ("key", GoValue::Uint(10)),
                        ("value", GoValue::str("foo")),
                    ])]),
                ),
            ]),
        )]);
        assert_eq!(
            marshal(&v, 4),
            "customization:\n    extraKernelArgs:\n        - noapic\n    meta:\n        - key: 10\n          value: foo\n"
        );
        assert_eq!(
            marshal(&m(vec![("customization", m(vec![]))]), 4),
            "customization: {}\n"
        );
    }

    #[test]
    fn quoting_follows_go_yaml() {
        let q = |s: &str| marshal(&m(vec![("k", GoValue::str(s))]), 4);
        assert_eq!(q("plain"), "k: plain\n");
        assert_eq!(q("true"), "k: \"true\"\n");
        assert_eq!(q("yes"), "k: 'yes'\n");
        assert_eq!(q("off"), "k: 'off'\n");
        assert_eq!(q("1:20"), "k: '1:20'\n");
        assert_eq!(q("<<"), "k: '<<'\n");
        assert_eq!(q("10"), "k: \"10\"\n");
        assert_eq!(q("0x1f"), "k: \"0x1f\"\n");
        assert_eq!(q("1.5"), "k: \"1.5\"\n");
        assert_eq!(q("2024-01-02"), "k: \"2024-01-02\"\n");
        assert_eq!(q(""), "k: \"\"\n");
        assert_eq!(q("!100.64.0.0/10"), "k: '!100.64.0.0/10'\n");
        assert_eq!(q("a: b"), "k: 'a: b'\n");
        assert_eq!(q(" lead"), "k: ' lead'\n");
        assert_eq!(q("it's: x"), "k: 'it''s: x'\n");
        assert_eq!(q("tab\there"), "k: \"tab\\there\"\n");
        assert_eq!(q("console=ttyS0,115200"), "k: console=ttyS0,115200\n");
        assert_eq!(q("-x"), "k: -x\n");
        assert_eq!(q("- x"), "k: '- x'\n");
        assert_eq!(q("a #b"), "k: 'a #b'\n");
        assert_eq!(q("a#b"), "k: a#b\n");
    }

    #[test]
    fn literal_blocks() {
        let v = m(vec![(
            "c",
            m(vec![("cfg", GoValue::str("a: 1\n\nb: 2\n"))]),
        )]);
        assert_eq!(
            marshal(&v, 4),
            "c:\n    cfg: |\n        a: 1\n\n        b: 2\n"
        );
        let v = m(vec![("cfg", GoValue::str("x\ny"))]);
        assert_eq!(marshal(&v, 4), "cfg: |-\n    x\n    y\n");
        let v = m(vec![("cfg", GoValue::str("x\n\n"))]);
        assert_eq!(marshal(&v, 4), "cfg: |+\n    x\n\n");
        let v = m(vec![
            ("cfg", GoValue::str(" x\n")),
            ("num", GoValue::Int(1)),
        ]);
        assert_eq!(marshal(&v, 4), "cfg: |4\n     x\nnum: 1\n");
        let v = m(vec![("cfg", GoValue::str("trailing \nspace"))]);
        assert_eq!(marshal(&v, 4), "cfg: \"trailing \\nspace\"\n");
    }

    #[test]
    fn two_space_indent_for_talos_documents() {
        let v = m(vec![(
            "machine",
            m(vec![(
                "certSANs",
                GoValue::Seq(vec![GoValue::str("a"), GoValue::str("b")]),
            )]),
        )]);
        assert_eq!(marshal(&v, 2), "machine:\n  certSANs:\n    - a\n    - b\n");
    }

    #[test]
    fn natural_key_order() {
        let mut e: Vec<(String, GoValue)> = ["b", "a10", "a2", "A", "_x"]
            .iter()
            .map(|k| (k.to_string(), GoValue::Null))
            .collect();
        sort_map_keys(&mut e);
        let keys: Vec<&str> = e.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, vec!["_x", "A", "a2", "a10", "b"]);
    }

    #[test]
    fn long_and_multi_line_keys_are_complex() {
        let long = "k".repeat(129);
        let v = m(vec![
            (long.as_str(), GoValue::Int(1)),
            ("a\nb", GoValue::Int(2)),
        ]);
        assert_eq!(
            marshal(&v, 4),
            format!("? {long}\n: 1\n? |-\n    a\n    b\n: 2\n")
        );
        let v = m(vec![("k".repeat(128).as_str(), GoValue::Int(1))]);
        assert_eq!(marshal(&v, 4), format!("{}: 1\n", "k".repeat(128)));
    }

    #[test]
    fn leading_break_has_no_indent_hint() {
        let v = m(vec![("k", GoValue::Seq(vec![GoValue::str("\nx")]))]);
        assert_eq!(marshal(&v, 4), "k:\n    - |-\n\n      x\n");
    }

    #[test]
    fn mixed_keys_sort_by_kind() {
        let mut e = vec![
            (GoValue::str("b"), GoValue::Null),
            (GoValue::Int(2), GoValue::Null),
            (GoValue::Bool(true), GoValue::Null),
            (GoValue::Null, GoValue::Null),
        ];
        sort_any_map_keys(&mut e);
        assert_eq!(
            marshal(&GoValue::AnyMap(e), 4),
            "true: null\n2: null\nnull: null\nb: null\n"
        );
    }

    #[test]
    fn go_float_format() {
        assert_eq!(format_go_float(1.0), "1");
        assert_eq!(format_go_float(1.5), "1.5");
        assert_eq!(format_go_float(0.0001), "0.0001");
        assert_eq!(format_go_float(0.00001), "1e-05");
        assert_eq!(format_go_float(1e21), "1e+21");
        assert_eq!(format_go_float(123456789.0), "1.23456789e+08");
    }
}
