//! Talos's extension compatibility check (contract §1.2): a port of blang/semver v4.0.0's
//! `Version` (`Parse`, `ParseTolerant`, semver 2.0 precedence; `ParseRange` is in `range.rs`) plus Talos's own steps from
//! `pkg/machinery/extensions/validate.go`: every `v` directly before a digit is removed from the
//! constraint, and the target is reduced to its core version before the range is applied.
//!
//! Error texts are kept byte for byte, because users compare them with what the imager prints.
//! One known divergence: Go's `unicode.IsDigit` also matches non-ASCII decimal digits when it
//! splits an operator from its version; here only ASCII digits do. Such a constraint is rejected
//! either way, only the wording of the error differs.

use std::cmp::Ordering;
use std::fmt;

pub use super::range::Range;

const NUMBERS: &str = "0123456789";
const ALPHANUM: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-0123456789";

/// A pre-release identifier: numeric ones sort before alphanumeric ones (semver 2.0 §11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pre {
    Num(u64),
    Alpha(String),
}

impl Pre {
    fn compare(&self, other: &Pre) -> Ordering {
        match (self, other) {
            (Pre::Num(a), Pre::Num(b)) => a.cmp(b),
            (Pre::Num(_), Pre::Alpha(_)) => Ordering::Less,
            (Pre::Alpha(_), Pre::Num(_)) => Ordering::Greater,
            (Pre::Alpha(a), Pre::Alpha(b)) => a.cmp(b),
        }
    }
}

impl fmt::Display for Pre {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pre::Num(n) => write!(f, "{n}"),
            Pre::Alpha(s) => f.write_str(s),
        }
    }
}

/// A semantic version as blang/semver models it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    pub pre: Vec<Pre>,
    /// Build metadata: kept, printed, never compared.
    pub build: Vec<String>,
}

impl Version {
    /// blang/semver `Parse`: strict `MAJOR.MINOR.PATCH[-PRE][+BUILD]`, no `v` prefix.
    pub fn parse(s: &str) -> Result<Version, String> {
        if s.is_empty() {
            return Err("Version string empty".into());
        }
        let parts: Vec<&str> = s.splitn(3, '.').collect();
        if parts.len() != 3 {
            return Err("No Major.Minor.Patch elements found".into());
        }
        let major = parse_number(parts[0], "Major")?;
        let minor = parse_number(parts[1], "Minor")?;

        let mut patch_str = parts[2];
        let mut build: Vec<&str> = Vec::new();
        let mut pre: Vec<&str> = Vec::new();
        if let Some(i) = patch_str.find('+') {
            build = patch_str[i + 1..].split('.').collect();
            patch_str = &patch_str[..i];
        }
        if let Some(i) = patch_str.find('-') {
            pre = patch_str[i + 1..].split('.').collect();
            patch_str = &patch_str[..i];
        }
        let patch = parse_number(patch_str, "Patch")?;

        let mut v = Version {
            major,
            minor,
            patch,
            pre: Vec::new(),
            build: Vec::new(),
        };
        for p in pre {
            v.pre.push(parse_pre(p)?);
        }
        for b in build {
            if b.is_empty() {
                return Err("Build meta data is empty".into());
            }
            if !contains_only(b, ALPHANUM) {
                return Err(format!(
                    "Invalid character(s) found in build meta data {}",
                    go_quote(b)
                ));
            }
            v.build.push(b.to_string());
        }
        Ok(v)
    }

    /// blang/semver `ParseTolerant`: trims spaces and one leading `v`, drops leading zeros and
    /// fills in a missing minor or patch. Talos parses its own version tag this way.
    pub fn parse_tolerant(s: &str) -> Result<Version, String> {
        let s = s.trim();
        let s = s.strip_prefix('v').unwrap_or(s);
        let mut parts: Vec<String> = s.splitn(3, '.').map(str::to_string).collect();
        for p in parts.iter_mut() {
            if p.len() > 1 {
                let mut t = p.trim_start_matches('0').to_string();
                if t.is_empty() || !t.as_bytes()[0].is_ascii_digit() {
                    t.insert(0, '0');
                }
                *p = t;
            }
        }
        if parts.len() < 3 {
            if parts
                .last()
                .is_some_and(|p| p.contains('+') || p.contains('-'))
            {
                return Err("Short version cannot contain PreRelease/Build meta data".into());
            }
            while parts.len() < 3 {
                parts.push("0".into());
            }
        }
        Version::parse(&parts.join("."))
    }

    /// Major, minor and patch only: what Talos compares a constraint against.
    pub fn core(&self) -> Version {
        Version {
            major: self.major,
            minor: self.minor,
            patch: self.patch,
            pre: Vec::new(),
            build: Vec::new(),
        }
    }

    /// Precedence per semver 2.0 (build metadata ignored).
    pub fn compare(&self, o: &Version) -> Ordering {
        let core = (self.major, self.minor, self.patch).cmp(&(o.major, o.minor, o.patch));
        if core != Ordering::Equal {
            return core;
        }
        match (self.pre.is_empty(), o.pre.is_empty()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Greater,
            (false, true) => return Ordering::Less,
            _ => {}
        }
        for (a, b) in self.pre.iter().zip(&o.pre) {
            let c = a.compare(b);
            if c != Ordering::Equal {
                return c;
            }
        }
        self.pre.len().cmp(&o.pre.len())
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        for (i, p) in self.pre.iter().enumerate() {
            f.write_str(if i == 0 { "-" } else { "." })?;
            write!(f, "{p}")?;
        }
        for (i, b) in self.build.iter().enumerate() {
            f.write_str(if i == 0 { "+" } else { "." })?;
            f.write_str(b)?;
        }
        Ok(())
    }
}

/// `part` is `Major`, `Minor` or `Patch`, as the original's messages spell it.
fn parse_number(s: &str, part: &str) -> Result<u64, String> {
    if !contains_only(s, NUMBERS) {
        return Err(format!(
            "Invalid character(s) found in {} number {}",
            part.to_lowercase(),
            go_quote(s)
        ));
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(format!(
            "{part} number must not contain leading zeroes {}",
            go_quote(s)
        ));
    }
    parse_uint(s)
}

/// Go's `strconv.ParseUint(s, 10, 64)` on a string already known to hold only digits.
fn parse_uint(s: &str) -> Result<u64, String> {
    if s.is_empty() {
        return Err(format!(
            "strconv.ParseUint: parsing {}: invalid syntax",
            go_quote(s)
        ));
    }
    s.parse::<u64>().map_err(|_| {
        format!(
            "strconv.ParseUint: parsing {}: value out of range",
            go_quote(s)
        )
    })
}

fn parse_pre(s: &str) -> Result<Pre, String> {
    if s.is_empty() {
        return Err("Prerelease is empty".into());
    }
    if contains_only(s, NUMBERS) {
        if s.len() > 1 && s.starts_with('0') {
            return Err(format!(
                "Numeric PreRelease version must not contain leading zeroes {}",
                go_quote(s)
            ));
        }
        return parse_uint(s).map(Pre::Num);
    }
    if contains_only(s, ALPHANUM) {
        return Ok(Pre::Alpha(s.to_string()));
    }
    Err(format!(
        "Invalid character(s) found in prerelease {}",
        go_quote(s)
    ))
}

fn contains_only(s: &str, set: &str) -> bool {
    s.chars().all(|c| set.contains(c))
}

/// Go's `%q` for a string: double quotes, Go escapes for the unprintable.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32))
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Talos's `trim`: remove every `v` that sits directly before an ASCII digit.
pub fn trim_v(constraint: &str) -> String {
    let mut b = constraint.as_bytes().to_vec();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'v' && i + 1 < b.len() && b[i + 1].is_ascii_digit() {
            b.remove(i);
        }
        i += 1;
    }
    // Only ASCII bytes were removed, so the rest is still valid UTF-8.
    String::from_utf8(b).unwrap_or_else(|_| constraint.to_string())
}

/// Why a constraint did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConstraintError {
    /// `error parsing Talos version constraint: …`
    Parse(String),
    /// `version constraint … can't be satisfied with Talos version …`
    Unsatisfied(String),
}

impl fmt::Display for ConstraintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConstraintError::Parse(m) | ConstraintError::Unsatisfied(m) => f.write_str(m),
        }
    }
}

/// Parse a constraint the way Talos does (empty means no constraint).
pub fn parse_constraint(constraint: &str) -> Result<Option<Range>, ConstraintError> {
    if constraint.is_empty() {
        return Ok(None);
    }
    Range::parse(&trim_v(constraint))
        .map(Some)
        .map_err(|e| ConstraintError::Parse(format!("error parsing Talos version constraint: {e}")))
}

/// Talos's `validateConstraints` against a target version (its core version is compared and
/// printed, as the v1.9+ imager does after cutting the profile version).
pub fn check_constraint(constraint: &str, talos: &Version) -> Result<(), ConstraintError> {
    let Some(range) = parse_constraint(constraint)? else {
        return Ok(());
    };
    let core = talos.core();
    if range.matches(&core) {
        Ok(())
    } else {
        Err(ConstraintError::Unsatisfied(format!(
            "version constraint {constraint} can't be satisfied with Talos version {core}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse_tolerant(s).unwrap()
    }

    fn ok(c: &str, target: &str) -> bool {
        check_constraint(c, &v(target)).is_ok()
    }

    fn parse_err(c: &str) -> String {
        match check_constraint(c, &v("v1.14.0")) {
            Err(ConstraintError::Parse(m)) => m,
            other => panic!("expected a parse error for {c:?}, got {other:?}"),
        }
    }

    // Contract §8.1 rows 10–18, target v1.14.0-beta.1 unless stated.
    #[test]
    fn row10_newer_constraint_fails_with_talos_text() {
        let err = check_constraint(">= v1.15.0", &v("v1.14.0")).unwrap_err();
        assert_eq!(
            err,
            ConstraintError::Unsatisfied(
                "version constraint >= v1.15.0 can't be satisfied with Talos version 1.14.0".into()
            )
        );
    }

    #[test]
    fn row11_and_12_prerelease_of_target_is_dropped() {
        assert!(!ok("< v1.14.0", "v1.14.0-beta.1"));
        assert!(ok(">= v1.14.0", "v1.14.0-beta.1"));
        assert!(ok(">= v1.14.0-alpha.1", "v1.14.0-beta.1"));
        assert!(!ok("!= v1.14.0", "v1.14.0-beta.1"));
    }

    #[test]
    fn row13_partial_version() {
        assert_eq!(
            parse_err(">= v1.5"),
            "error parsing Talos version constraint: Could not parse Range \">=1.5\": Could not parse version \"1.5\" in \">=1.5\": No Major.Minor.Patch elements found"
        );
    }

    #[test]
    fn row14_tilde_and_caret() {
        assert_eq!(
            parse_err("~1.5.0"),
            "error parsing Talos version constraint: Could not parse Range \"~1.5.0\": Could not parse comparator \"~\" in \"~1.5.0\""
        );
        assert!(parse_err("^1.5.0").contains("Could not parse comparator \"^\""));
    }

    #[test]
    fn row15_comma() {
        assert_eq!(
            parse_err(">= v1.5.0, < v2.0.0"),
            "error parsing Talos version constraint: Could not parse Range \">=1.5.0,\": Could not parse version \"1.5.0,\" in \">=1.5.0,\": Invalid character(s) found in patch number \"0,\""
        );
    }

    #[test]
    fn row16_and_or_wildcard() {
        assert!(ok(">= v1.5.0 < v2.0.0", "v1.14.0-beta.1"));
        assert!(ok("< v1.0.0 || >= v1.5.0", "v1.14.0-beta.1"));
        assert!(ok("1.14.x", "v1.14.0-beta.1"));
        assert!(!ok("1.13.x", "v1.14.0"));
        assert!(ok("v1.x", "v1.14.0"));
        assert!(ok(">= 1.5.x", "v1.14.0"));
        assert!(!ok(">= v1.5.0 < v1.14.0", "v1.14.0"));
    }

    #[test]
    fn row17_empty_constraint_always_holds() {
        assert!(ok("", "v0.1.0"));
        assert!(ok("", "v9.9.9"));
        assert!(parse_constraint("").unwrap().is_none());
    }

    #[test]
    fn row18_whitespace_only() {
        assert_eq!(
            parse_err("  "),
            "error parsing Talos version constraint: Last element in range is '||'"
        );
    }

    #[test]
    fn acceptance_versions() {
        assert!(!ok(">= v1.7.0", "v1.6.0"));
        assert!(ok(">= v1.7.0", "v1.14.0"));
    }

    #[test]
    fn or_errors_and_bare_words() {
        assert_eq!(
            parse_err("|| 1.0.0"),
            "error parsing Talos version constraint: First element in range is '||'"
        );
        assert_eq!(
            parse_err("latest"),
            "error parsing Talos version constraint: Could not get version from string: \"latest\""
        );
    }

    #[test]
    fn operators_and_spaces_after_them() {
        assert!(ok("> 1.13.9", "1.14.0"));
        assert!(ok("<= 1.14.0", "1.14.0"));
        assert!(ok("= 1.14.0", "1.14.0"));
        assert!(ok("==1.14.0", "1.14.0"));
        assert!(ok("!1.13.0", "1.14.0"));
        assert!(ok(">=   1.14.0   <2.0.0", "1.14.0"));
    }

    #[test]
    fn version_parsing_errors() {
        assert_eq!(Version::parse("").unwrap_err(), "Version string empty");
        assert_eq!(
            Version::parse("01.2.3").unwrap_err(),
            "Major number must not contain leading zeroes \"01\""
        );
        assert_eq!(
            Version::parse("1.a.3").unwrap_err(),
            "Invalid character(s) found in minor number \"a\""
        );
        assert_eq!(
            Version::parse("1.2.3-01").unwrap_err(),
            "Numeric PreRelease version must not contain leading zeroes \"01\""
        );
        assert_eq!(
            Version::parse("1.2.3-a..b").unwrap_err(),
            "Prerelease is empty"
        );
        assert_eq!(
            Version::parse("1.2.3+a_b").unwrap_err(),
            "Invalid character(s) found in build meta data \"a_b\""
        );
        assert_eq!(
            Version::parse("1..3").unwrap_err(),
            "strconv.ParseUint: parsing \"\": invalid syntax"
        );
        assert_eq!(
            Version::parse("1.2.3-rc.1+b.2").unwrap().to_string(),
            "1.2.3-rc.1+b.2"
        );
    }

    #[test]
    fn prerelease_precedence_semver_2() {
        let order = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
        ];
        for w in order.windows(2) {
            let a = Version::parse(w[0]).unwrap();
            let b = Version::parse(w[1]).unwrap();
            assert_eq!(a.compare(&b), Ordering::Less, "{} < {}", w[0], w[1]);
        }
        let a = Version::parse("1.0.0+a").unwrap();
        let b = Version::parse("1.0.0+b").unwrap();
        assert_eq!(a.compare(&b), Ordering::Equal);
    }

    #[test]
    fn tolerant_parse_of_talos_tags() {
        assert_eq!(v("v1.14.0-beta.1").to_string(), "1.14.0-beta.1");
        assert_eq!(v(" v1.14 ").to_string(), "1.14.0");
        assert_eq!(v("v01.02.03").to_string(), "1.2.3");
        assert!(Version::parse_tolerant("v1.14-beta.1").is_err());
    }

    #[test]
    fn trim_removes_v_before_digits_only() {
        assert_eq!(trim_v(">= v1.5.0"), ">= 1.5.0");
        assert_eq!(trim_v("v1.0.0 || v2.0.0-dev"), "1.0.0 || 2.0.0-dev");
        assert_eq!(trim_v("1.0.0-vx"), "1.0.0-vx");
    }

    #[test]
    fn go_quote_escapes() {
        assert_eq!(go_quote("a\"b\\c\n\x01"), "\"a\\\"b\\\\c\\n\\x01\"");
    }
}
