//! Scalar decisions of go-yaml, following go.yaml.in/yaml/v4 v4.0.0-rc.6 (the version the Image
//! Factory pins): how `resolve` reads a plain scalar (`internal/libyaml/resolver.go`: null and
//! bool spellings, `strconv.ParseInt(s, 0, 64)` integers with `_` removed, floats, the
//! timestamp layouts of `parseTimestamp`), which strings the representer single-quotes for
//! YAML 1.1 readers (`representer.go`: `isOldBool`, `isBase60Float`, `looksLikeMerge`), what
//! `analyzeScalar` allows (`emitter.go`), and the double-quoted writer's escapes. Used by
//! [`super::emit`] to quote exactly where go-yaml quotes, and by the decoders to read
//! scalars as go-yaml reads them.

pub(super) struct Analysis {
    pub multiline: bool,
    pub block_plain_allowed: bool,
    pub single_quoted_allowed: bool,
    pub block_allowed: bool,
}

pub(super) fn is_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

pub(super) fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// libyaml's `is_printable` on UTF-8 (4-byte sequences count as non-printable).
pub(super) fn is_printable(c: char) -> bool {
    c == '\n'
        || ('\x20'..='\x7e').contains(&c)
        || ('\u{a0}'..='\u{d7ff}').contains(&c)
        || (('\u{e000}'..='\u{fffd}').contains(&c) && c != '\u{feff}')
}

/// `yaml_emitter_analyze_scalar`, block context only.
pub(super) fn analyze(s: &str) -> Analysis {
    if s.is_empty() {
        return Analysis {
            multiline: false,
            block_plain_allowed: true,
            single_quoted_allowed: true,
            block_allowed: false,
        };
    }
    let chars: Vec<char> = s.chars().collect();
    let mut block_indicators = s.starts_with("---") || s.starts_with("...");
    let (mut line_breaks, mut special, mut tabs) = (false, false, false);
    let (mut leading_space, mut leading_break, mut trailing_space, mut trailing_break) =
        (false, false, false, false);
    let (mut break_space, mut space_break) = (false, false);
    let (mut prev_space, mut prev_break) = (false, false);
    let mut preceded_by_ws = true;
    let n = chars.len();
    for i in 0..n {
        let c = chars[i];
        let followed_by_ws = i + 1 >= n || is_blank(chars[i + 1]);
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => block_indicators = true,
                '?' | ':' if followed_by_ws => block_indicators = true,
                '-' if followed_by_ws => block_indicators = true,
                _ => {}
            }
        } else {
            match c {
                ':' if followed_by_ws => block_indicators = true,
                '#' if preceded_by_ws => block_indicators = true,
                _ => {}
            }
        }
        if c == '\t' {
            tabs = true;
        } else if !is_printable(c) {
            special = true;
        }
        if c == ' ' {
            if i == 0 {
                leading_space = true;
            }
            if i + 1 == n {
                trailing_space = true;
            }
            if prev_break {
                break_space = true;
            }
            prev_space = true;
            prev_break = false;
        } else if is_break(c) {
            line_breaks = true;
            if i == 0 {
                leading_break = true;
            }
            if i + 1 == n {
                trailing_break = true;
            }
            if prev_space {
                space_break = true;
            }
            prev_space = false;
            prev_break = true;
        } else {
            prev_space = false;
            prev_break = false;
        }
        preceded_by_ws = is_blank(c) || is_break(c);
    }
    let mut a = Analysis {
        multiline: line_breaks,
        block_plain_allowed: true,
        single_quoted_allowed: true,
        block_allowed: true,
    };
    if leading_space || leading_break || trailing_space || trailing_break {
        a.block_plain_allowed = false;
    }
    if trailing_space {
        a.block_allowed = false;
    }
    if break_space {
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
    }
    if space_break || tabs || special {
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
    }
    if space_break || special {
        a.block_allowed = false;
    }
    if line_breaks || block_indicators {
        a.block_plain_allowed = false;
    }
    a
}

/// `shouldUseLiteralStyle`: at least two bytes and one character that is not whitespace.
pub(super) fn should_use_literal(s: &str) -> bool {
    s.contains('\n') && s.len() >= 2 && s.chars().any(|c| !c.is_whitespace())
}

/// Strings the representer single-quotes although they resolve to `!!str` in YAML 1.2: YAML 1.1
/// booleans (`isOldBool`), base-60 floats (`isBase60Float`) and the merge key (`looksLikeMerge`).
pub(super) fn needs_compat_quotes(s: &str) -> bool {
    is_old_bool(s) || is_base60_float(s) || s == "<<"
}

pub(super) fn is_old_bool(s: &str) -> bool {
    matches!(
        s,
        "y" | "Y"
            | "yes"
            | "Yes"
            | "YES"
            | "on"
            | "On"
            | "ON"
            | "n"
            | "N"
            | "no"
            | "No"
            | "NO"
            | "off"
            | "Off"
            | "OFF"
    )
}

/// `^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$`
pub(super) fn is_base60_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    if i >= b.len() || !b[i].is_ascii_digit() {
        return false;
    }
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
        i += 1;
    }
    let mut groups = 0;
    while i < b.len() && b[i] == b':' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() && i - start < 2 {
            i += 1;
        }
        match i - start {
            1 => {}
            2 if b[start] <= b'5' => {}
            _ => return false,
        }
        groups += 1;
    }
    if groups == 0 {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
            i += 1;
        }
    }
    i == b.len()
}

/// What go-yaml's `resolve("", s)` makes of a plain scalar (`internal/libyaml/resolver.go`).
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    Null,
    Bool(bool),
    /// Go's `int` (64 bits here).
    Int(i64),
    /// Only for values above `i64::MAX` (`strconv.ParseUint` after `ParseInt` failed).
    Uint(u64),
    Float(f64),
    Timestamp(Timestamp),
    /// `<<`, the merge key.
    Merge,
    Str,
}

/// A plain scalar read the way go-yaml reads it: the fixed spellings of null, booleans, `.inf`,
/// `.nan`, `-0` and `<<`, then (for a leading digit or sign) a timestamp, an integer in any
/// base `strconv.ParseInt(s, 0, 64)` accepts with `_` removed, an unsigned integer, or a float
/// matching go-yaml's float pattern that `strconv.ParseFloat` accepts; anything else is a string.
pub fn resolve_plain(s: &str) -> Resolved {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Resolved::Null,
        "true" | "True" | "TRUE" => return Resolved::Bool(true),
        "false" | "False" | "FALSE" => return Resolved::Bool(false),
        ".nan" | ".NaN" | ".NAN" => return Resolved::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Resolved::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Resolved::Float(f64::NEG_INFINITY),
        "-0" | "-0.0" => return Resolved::Float(-0.0),
        "<<" => return Resolved::Merge,
        _ => {}
    }
    let first = s.as_bytes()[0];
    if first == b'.' {
        // `strconv.ParseFloat` on the text as written (no `_` without a base prefix).
        return match go_parse_float(s) {
            Some(f) => Resolved::Float(f),
            None => Resolved::Str,
        };
    }
    if !(first.is_ascii_digit() || first == b'+' || first == b'-') {
        return Resolved::Str;
    }
    if first.is_ascii_digit() {
        if let Some(t) = parse_timestamp(s) {
            return Resolved::Timestamp(t);
        }
    }
    let plain: String = s.chars().filter(|&c| c != '_').collect();
    if let Some(i) = go_parse_int(&plain) {
        return Resolved::Int(i);
    }
    if let Some(u) = go_parse_uint(&plain) {
        return Resolved::Uint(u);
    }
    if is_yaml_float(&plain) {
        if let Some(f) = go_parse_float(&plain) {
            return Resolved::Float(f);
        }
    }
    Resolved::Str
}

/// A plain scalar that reads back as the same string.
pub(super) fn resolves_to_string(s: &str) -> bool {
    resolve_plain(s) == Resolved::Str
}

/// The digits and base `strconv.ParseInt(s, 0, …)` would read, sign stripped.
fn int_syntax(body: &str) -> Option<(&str, u32)> {
    let b = body.as_bytes();
    let (digits, radix) = if b.len() > 1 && b[0] == b'0' {
        match b[1] {
            b'x' | b'X' => (&body[2..], 16),
            b'o' | b'O' => (&body[2..], 8),
            b'b' | b'B' => (&body[2..], 2),
            _ => (&body[1..], 8),
        }
    } else {
        (body, 10)
    };
    (!digits.is_empty() && digits.chars().all(|c| c.is_digit(radix))).then_some((digits, radix))
}

/// `strconv.ParseInt(s, 0, 64)`.
pub(super) fn go_parse_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first()? {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    let (digits, radix) = int_syntax(body)?;
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    if neg {
        if magnitude <= i64::MAX as u64 + 1 {
            Some((magnitude as i64).wrapping_neg())
        } else {
            None
        }
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// `strconv.ParseUint(s, 0, 64)`: no sign.
pub(super) fn go_parse_uint(s: &str) -> Option<u64> {
    let (digits, radix) = int_syntax(s)?;
    u64::from_str_radix(digits, radix).ok()
}

/// `strconv.ParseFloat(s, 64)` for decimal text: out-of-range values are errors.
fn go_parse_float(s: &str) -> Option<f64> {
    if !is_yaml_float(s) {
        return None;
    }
    let f: f64 = s.parse().ok()?;
    (!f.is_infinite()).then_some(f)
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`
pub(super) fn is_yaml_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            digits(&mut i);
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// A `time.Time` as go-yaml's `parseTimestamp` produces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    pub year: u32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub nanos: u32,
    /// Offset east of UTC in seconds; `None` is UTC.
    pub offset: Option<i32>,
}

impl Timestamp {
    /// `t.Format(time.RFC3339Nano)`, how the representer writes a `time.Time`.
    pub fn rfc3339_nano(&self) -> String {
        let mut s = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        );
        if self.nanos != 0 {
            let frac = format!("{:09}", self.nanos);
            s.push('.');
            s.push_str(frac.trim_end_matches('0'));
        }
        match self.offset {
            None | Some(0) => s.push('Z'),
            Some(off) => {
                let sign = if off < 0 { '-' } else { '+' };
                let off = off.unsigned_abs();
                s.push_str(&format!("{sign}{:02}:{:02}", off / 3600, off / 60 % 60));
            }
        }
        s
    }
}

fn days_in(month: u32, year: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// go-yaml's `parseTimestamp`: four digits and `-`, then the first of the layouts
/// `2006-1-2T15:4:5.999999999Z07:00`, its lower-case `t` twin, `2006-1-2 15:4:5.999999999` and
/// `2006-1-2` that `time.Parse` accepts (with its range checks, days per month included).
pub fn parse_timestamp(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    if b.len() < 5 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
        return None;
    }
    // `getnum`: one digit, or two when the second is a digit.
    fn num(b: &[u8], i: &mut usize) -> Option<u32> {
        let d0 = *b.get(*i)?;
        if !d0.is_ascii_digit() {
            return None;
        }
        *i += 1;
        let mut v = u32::from(d0 - b'0');
        if let Some(&d1) = b.get(*i) {
            if d1.is_ascii_digit() {
                v = v * 10 + u32::from(d1 - b'0');
                *i += 1;
            }
        }
        Some(v)
    }
    let year: u32 = s[..4].parse().ok()?;
    let mut i = 5;
    let month = num(b, &mut i)?;
    if !(1..=12).contains(&month) || b.get(i) != Some(&b'-') {
        return None;
    }
    i += 1;
    let day = num(b, &mut i)?;
    let mut t = Timestamp {
        year,
        month,
        day,
        hour: 0,
        minute: 0,
        second: 0,
        nanos: 0,
        offset: None,
    };
    if day < 1 || day > days_in(month, year) {
        return None;
    }
    if i == b.len() {
        return Some(t);
    }
    let zoned = match b[i] {
        b'T' | b't' => true,
        b' ' => false,
        _ => return None,
    };
    i += 1;
    t.hour = num(b, &mut i)?;
    if b.get(i) != Some(&b':') {
        return None;
    }
    i += 1;
    t.minute = num(b, &mut i)?;
    if b.get(i) != Some(&b':') {
        return None;
    }
    i += 1;
    t.second = num(b, &mut i)?;
    if t.hour > 23 || t.minute > 59 || t.second > 59 {
        return None;
    }
    if matches!(b.get(i), Some(b'.' | b',')) && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &s[start..i.min(start + 9)];
        t.nanos = format!("{digits:0<9}").parse().ok()?;
    }
    if zoned {
        match b.get(i) {
            Some(b'Z') => i += 1,
            Some(&sign @ (b'+' | b'-')) => {
                let z = b.get(i + 1..i + 6)?;
                if z[2] != b':' || !z[..2].iter().chain(&z[3..]).all(u8::is_ascii_digit) {
                    return None;
                }
                let hh = i32::from(z[0] - b'0') * 10 + i32::from(z[1] - b'0');
                let mm = i32::from(z[3] - b'0') * 10 + i32::from(z[4] - b'0');
                if hh > 24 || mm > 60 {
                    return None;
                }
                let off = (hh * 60 + mm) * 60;
                t.offset = Some(if sign == b'-' { -off } else { off });
                i += 6;
            }
            _ => return None,
        }
    }
    (i == b.len()).then_some(t)
}

/// `yaml_emitter_write_double_quoted_scalar` with `unicode` on and no folding.
pub(super) fn double_quote(s: &str) -> String {
    let mut q = String::from("\"");
    for c in s.chars() {
        if !is_printable(c) || c == '\u{feff}' || is_break(c) || c == '"' || c == '\\' {
            q.push('\\');
            match c {
                '\0' => q.push('0'),
                '\x07' => q.push('a'),
                '\x08' => q.push('b'),
                '\t' => q.push('t'),
                '\n' => q.push('n'),
                '\x0b' => q.push('v'),
                '\x0c' => q.push('f'),
                '\r' => q.push('r'),
                '\x1b' => q.push('e'),
                '"' => q.push('"'),
                '\\' => q.push('\\'),
                '\u{85}' => q.push('N'),
                '\u{a0}' => q.push('_'),
                '\u{2028}' => q.push('L'),
                '\u{2029}' => q.push('P'),
                c => {
                    let v = c as u32;
                    if v <= 0xff {
                        q.push_str(&format!("x{v:02X}"));
                    } else if v <= 0xffff {
                        q.push_str(&format!("u{v:04X}"));
                    } else {
                        q.push_str(&format!("U{v:08X}"));
                    }
                }
            }
        } else {
            q.push(c);
        }
    }
    q.push('"');
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_follows_go_yaml() {
        assert_eq!(resolve_plain("012"), Resolved::Int(10));
        assert_eq!(resolve_plain("0o12"), Resolved::Int(10));
        assert_eq!(resolve_plain("0x_a"), Resolved::Int(10));
        assert_eq!(resolve_plain("08"), Resolved::Float(8.0));
        assert_eq!(
            resolve_plain("18446744073709551615"),
            Resolved::Uint(u64::MAX)
        );
        assert_eq!(resolve_plain("0x1ffffffffffffffff"), Resolved::Str);
        assert_eq!(resolve_plain("1e999"), Resolved::Str);
        assert_eq!(resolve_plain(".5_0"), Resolved::Str);
        assert_eq!(resolve_plain("yes"), Resolved::Str);
        assert_eq!(resolve_plain("2024-02-30"), Resolved::Str);
        assert_eq!(resolve_plain("<<"), Resolved::Merge);
        let Resolved::Timestamp(t) = resolve_plain("2024-2-3t4:05:06.5+01:30") else {
            panic!("not a timestamp");
        };
        assert_eq!(t.rfc3339_nano(), "2024-02-03T04:05:06.5+01:30");
        let Resolved::Timestamp(t) = resolve_plain("2024-01-02") else {
            panic!("not a timestamp");
        };
        assert_eq!(t.rfc3339_nano(), "2024-01-02T00:00:00Z");
    }
}
