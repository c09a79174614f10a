//! Talos's extension compatibility check (`pkg/machinery/extensions/validate.go`
//! `validateConstraints`): the constraint string is trimmed of `v` before digits, parsed as a
//! blang/semver range (`range.rs`) and checked against the target's core version (`semver.rs`),
//! with Talos's own error texts.

use std::fmt;

use super::range::Range;
use super::semver::Version;

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
    use crate::validate::semver::*;
    use std::cmp::Ordering;

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
