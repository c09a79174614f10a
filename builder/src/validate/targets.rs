//! The Talos versions `validate --talos-version` selects: one version (`v1.14.0`), a comma list
//! (`v1.9.0,v1.12.3`) or a range (`v1.9.0..v1.14.0`: every known minor from the first version's
//! to the last's, each at `.0` except the ends, which keep the versions given). Without the flag
//! every known release is a target (a survey).

use super::semver::Version;
use crate::release::{Minor, KNOWN};

/// Why a `--talos-version` value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub message: String,
    pub hint: String,
}

fn refuse(message: String) -> SpecError {
    SpecError {
        message,
        hint: "pass a Talos version (`v1.14.0`), a comma list (`v1.9.0,v1.12.0`) or a range (`v1.9.0..v1.14.0`)".into(),
    }
}

/// One version of a spec, checked to parse the way Talos parses its own.
fn version(v: &str, whole: &str) -> Result<(String, Minor), SpecError> {
    let v = v.trim();
    Version::parse_tolerant(v).map_err(|e| {
        refuse(format!(
            "`--talos-version {whole}`: `{v}` is not a version: {e}"
        ))
    })?;
    let minor = Minor::of(v).ok_or_else(|| {
        refuse(format!(
            "`--talos-version {whole}`: `{v}` has no minor release"
        ))
    })?;
    Ok((v.to_string(), minor))
}

/// The representative version of a known minor (`v1.10.0`).
pub fn dot_zero(m: Minor) -> String {
    format!("{m}.0")
}

/// Every known release, at `.0`: what a bare `validate` checks.
pub fn survey() -> Vec<String> {
    KNOWN.iter().map(|m| dot_zero(*m)).collect()
}

/// The targets of a `--talos-version` value, in order, without duplicates.
pub fn parse(spec: &str) -> Result<Vec<String>, SpecError> {
    let mut out: Vec<String> = Vec::new();
    if let Some((from, to)) = spec.split_once("..") {
        let (from, lo) = version(from, spec)?;
        let (to, hi) = version(to, spec)?;
        if hi < lo {
            return Err(refuse(format!(
                "`--talos-version {spec}`: the range ends before it starts"
            )));
        }
        for m in KNOWN.iter().filter(|m| (lo..=hi).contains(*m)) {
            out.push(if *m == lo {
                from.clone()
            } else if *m == hi {
                to.clone()
            } else {
                dot_zero(*m)
            });
        }
        if out.is_empty() {
            return Err(SpecError {
                message: format!("`--talos-version {spec}` holds no release talext knows"),
                hint: format!("known releases: {} to {}", KNOWN[0], KNOWN[KNOWN.len() - 1]),
            });
        }
        return Ok(out);
    }
    for part in spec.split(',') {
        if part.trim().is_empty() {
            return Err(refuse(format!(
                "`--talos-version {spec}` has an empty entry"
            )));
        }
        let (v, _) = version(part, spec)?;
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_list_and_range() {
        assert_eq!(parse("v1.9.0").unwrap(), vec!["v1.9.0"]);
        assert_eq!(
            parse("v1.9.0, v1.12.3,v1.9.0").unwrap(),
            vec!["v1.9.0", "v1.12.3"]
        );
        assert_eq!(
            parse("v1.9.2..v1.12.1").unwrap(),
            vec!["v1.9.2", "v1.10.0", "v1.11.0", "v1.12.1"]
        );
        assert_eq!(parse("v1.7.0..v1.14.0").unwrap().len(), 8);
        assert_eq!(
            parse("v1.0.0..v1.7.5").unwrap(),
            vec!["v1.7.5"],
            "ends outside the table are cut to the known releases"
        );
        assert!(parse("v1.12.0..v1.9.0").is_err());
        assert!(parse("v1.0.0..v1.2.0").is_err());
        assert!(parse("banana").is_err());
        assert!(parse("v1.9.0,").is_err());
        assert_eq!(survey().first().unwrap(), "v1.7.0");
        assert_eq!(survey().len(), KNOWN.len());
    }
}
