//! blang/semver v4.0.0 `ParseRange`, ported with its quirks (`range.go`): `splitAndTrim` keeps a
//! space after `<`, `>` or `=` and drops one-character terms, `splitORParts` rejects a leading or
//! trailing `||`, `expandWildcardVersion` rewrites `x` wildcards (and silently mangles some), and
//! every error text is kept byte for byte.

use std::cmp::Ordering;

use super::semver::{go_quote, Version};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "" | "=" | "==" => Op::Eq,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "<" => Op::Lt,
            "<=" => Op::Le,
            "!" | "!=" => Op::Ne,
            _ => return None,
        })
    }

    fn holds(self, v: &Version, bound: &Version) -> bool {
        let c = v.compare(bound);
        match self {
            Op::Eq => c == Ordering::Equal,
            Op::Ne => c != Ordering::Equal,
            Op::Gt => c == Ordering::Greater,
            Op::Ge => c != Ordering::Less,
            Op::Lt => c == Ordering::Less,
            Op::Le => c != Ordering::Greater,
        }
    }
}

/// A parsed range: OR of ANDs of comparators.
#[derive(Debug, Clone)]
pub struct Range {
    any_of: Vec<Vec<(Op, Version)>>,
}

impl Range {
    /// blang/semver v4 `ParseRange`, error texts included.
    pub fn parse(s: &str) -> Result<Range, String> {
        let parts = split_and_trim(s);
        let or_parts = split_or_parts(parts)?;
        let expanded = expand_wildcard_version(or_parts)?;
        let mut any_of = Vec::new();
        for and_parts in expanded {
            let mut all_of = Vec::new();
            for ap in and_parts {
                let (op_str, v_str) = split_comparator_version(&ap)?;
                let Some(op) = Op::parse(&op_str) else {
                    return Err(format!(
                        "Could not parse Range {}: Could not parse comparator {} in {}",
                        go_quote(&ap),
                        go_quote(&op_str),
                        go_quote(&format!("{op_str}{v_str}"))
                    ));
                };
                let v = Version::parse(&v_str).map_err(|e| {
                    format!(
                        "Could not parse Range {}: Could not parse version {} in {}: {e}",
                        go_quote(&ap),
                        go_quote(&v_str),
                        go_quote(&format!("{op_str}{v_str}"))
                    )
                })?;
                all_of.push((op, v));
            }
            any_of.push(all_of);
        }
        Ok(Range { any_of })
    }

    pub fn matches(&self, v: &Version) -> bool {
        self.any_of
            .iter()
            .any(|all| all.iter().all(|(op, bound)| op.holds(v, bound)))
    }
}

/// Split on spaces, except a space right after `>`, `<` or `=`; then drop every space.
/// Like the original, a one-character term is dropped (`last < i-1`).
fn split_and_trim(s: &str) -> Vec<String> {
    let b = s.as_bytes();
    let mut result: Vec<String> = Vec::new();
    let mut last: usize = 0;
    let mut last_char: u8 = 0;
    for (i, &c) in b.iter().enumerate() {
        if c == b' ' && !matches!(last_char, b'>' | b'<' | b'=') {
            if (last as isize) < i as isize - 1 {
                result.push(s[last..i].to_string());
            }
            last = i + 1;
        } else if c != b' ' {
            last_char = c;
        }
    }
    if (last as isize) < b.len() as isize - 1 {
        result.push(s[last..].to_string());
    }
    result.into_iter().map(|p| p.replace(' ', "")).collect()
}

fn split_or_parts(parts: Vec<String>) -> Result<Vec<Vec<String>>, String> {
    let mut out = Vec::new();
    let mut last = 0;
    for (i, p) in parts.iter().enumerate() {
        if p == "||" {
            if i == 0 {
                return Err("First element in range is '||'".into());
            }
            out.push(parts[last..i].to_vec());
            last = i + 1;
        }
    }
    if last == parts.len() {
        return Err("Last element in range is '||'".into());
    }
    out.push(parts[last..].to_vec());
    Ok(out)
}

fn split_comparator_version(s: &str) -> Result<(String, String), String> {
    match s.find(|c: char| c.is_ascii_digit()) {
        None => Err(format!(
            "Could not get version from string: {}",
            go_quote(s)
        )),
        Some(i) => Ok((s[..i].trim().to_string(), s[i..].to_string())),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Wildcard {
    None,
    Major,
    Minor,
    Patch,
}

fn wildcard_type(v: &str) -> Wildcard {
    let parts: Vec<&str> = v.split('.').collect();
    if parts.last() != Some(&"x") {
        return Wildcard::None;
    }
    match parts.len() {
        1 => Wildcard::Major,
        2 => Wildcard::Minor,
        3 => Wildcard::Patch,
        _ => Wildcard::None,
    }
}

fn version_from_wildcard(v: &str) -> String {
    let v2 = v.replacen(".x.x", ".x", 1).replacen(".x", ".0", 1);
    if v2.split('.').count() == 2 {
        format!("{v2}.0")
    } else {
        v2
    }
}

/// Go's `strconv.Atoi` as `incrementMajorVersion` / `incrementMinorVersion` use it; on failure
/// they yield an empty string, which the caller keeps (the original ignores the error).
fn increment_part(v: &str, idx: usize) -> String {
    let mut parts: Vec<String> = v.split('.').map(str::to_string).collect();
    let Some(p) = parts.get(idx) else {
        return String::new();
    };
    match p.parse::<i64>() {
        Ok(n) => {
            parts[idx] = (n + 1).to_string();
            parts.join(".")
        }
        Err(_) => String::new(),
    }
}

fn expand_wildcard_version(parts: Vec<Vec<String>>) -> Result<Vec<Vec<String>>, String> {
    let mut expanded = Vec::new();
    for p in parts {
        let mut new_parts = Vec::new();
        for ap in p {
            let (op, v) = split_comparator_version(&ap)?;
            let mut ap = ap;
            if ap.contains(".x") {
                let kind = wildcard_type(&v);
                let flat = version_from_wildcard(&v);
                let (result_op, increment) = match op.as_str() {
                    ">" => (">=", true),
                    ">=" => (">=", false),
                    "<" => ("<", false),
                    "<=" => ("<", true),
                    "" | "=" | "==" => {
                        new_parts.push(format!(">={flat}"));
                        ("<", true)
                    }
                    "!=" | "!" => {
                        new_parts.push(format!("<{flat}"));
                        (">=", true)
                    }
                    _ => ("", false),
                };
                let result_version = if increment {
                    match kind {
                        Wildcard::Patch => increment_part(&flat, 1),
                        Wildcard::Minor => increment_part(&flat, 0),
                        _ => String::new(),
                    }
                } else {
                    flat
                };
                ap = format!("{result_op}{result_version}");
            }
            new_parts.push(ap);
        }
        expanded.push(new_parts);
    }
    Ok(expanded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_expansion_matches_blang() {
        let exp = |s: &str| {
            expand_wildcard_version(vec![vec![s.to_string()]])
                .unwrap()
                .remove(0)
        };
        assert_eq!(exp(">1.2.x"), vec![">=1.3.0"]);
        assert_eq!(exp("<=1.2.x"), vec!["<1.3.0"]);
        assert_eq!(exp("!=1.x"), vec!["<1.0.0", ">=2.0.0"]);
        assert_eq!(exp("1.2.x"), vec![">=1.2.0", "<1.3.0"]);
        // blang quirk: `1.x.x` counts as a patch wildcard.
        assert_eq!(exp("1.x.x"), vec![">=1.0.0", "<1.1.0"]);
        // blang quirk: an unknown operator with a wildcard is dropped.
        assert_eq!(exp("~1.2.x"), vec!["1.2.0"]);
    }

    #[test]
    fn one_character_terms_are_dropped_like_blang() {
        assert_eq!(split_and_trim("1.0.0 x"), vec!["1.0.0"]);
        assert_eq!(split_and_trim(">= 1.0.0"), vec![">=1.0.0"]);
        assert!(split_and_trim("  ").is_empty());
    }
}
