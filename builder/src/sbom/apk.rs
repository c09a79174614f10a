//! Alpine's installed-package database, `lib/apk/db/installed`, as the SBOM reads it.
//!
//! The format (apk-tools, `doc/apk-package.5` and the "Installed database" page of the Alpine
//! wiki): one stanza per package, stanzas separated by a blank line; each line is a one-letter
//! field, a colon and the value. `P` is the name, `V` the version, `A` the architecture, `L` the
//! license and `o` the origin (the source package). File lists (`F`, `R`, `Z`, ...) and every
//! other field are skipped. A stanza without a name or version is an error naming the line.

use crate::error::{Error, Result};
use crate::rootfs::excerpt;

/// The largest database read (Alpine's full `world` is a few megabytes).
pub const MAX_DB: u64 = 64 << 20;

/// One installed package.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApkPackage {
    pub name: String,
    pub version: String,
    pub arch: Option<String>,
    pub license: Option<String>,
    pub origin: Option<String>,
}

/// Parse a database; `path` names it in errors. Packages come back sorted and deduplicated.
pub fn parse(path: &str, bytes: &[u8]) -> Result<Vec<ApkPackage>> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        Error::input(format!(
            "`{path}` line {line}: the apk database is not UTF-8"
        ))
    })?;
    let mut out = Vec::new();
    let mut cur = Stanza::default();
    for (i, line) in text.split('\n').enumerate() {
        let line_no = i + 1;
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            cur.finish(path, &mut out)?;
            continue;
        }
        let Some((key, value)) = line.split_once(':').filter(|(k, _)| k.len() == 1) else {
            return Err(Error::input(format!(
                "`{path}` line {line_no}: `{}` is not a `X:value` field of the apk database",
                excerpt(line.as_bytes(), 60)
            )));
        };
        if cur.start == 0 {
            cur.start = line_no;
        }
        let slot = match key {
            "P" => &mut cur.pkg.name,
            "V" => &mut cur.pkg.version,
            "A" => cur.pkg.arch.get_or_insert_with(String::new),
            "L" => cur.pkg.license.get_or_insert_with(String::new),
            "o" => cur.pkg.origin.get_or_insert_with(String::new),
            _ => continue,
        };
        if !slot.is_empty() {
            return Err(Error::input(format!(
                "`{path}` line {line_no}: a second `{key}:` field in the package that starts on line {}",
                cur.start
            )));
        }
        if value.is_empty() || value.chars().any(char::is_control) {
            return Err(Error::input(format!(
                "`{path}` line {line_no}: field `{key}:` has an empty or unprintable value `{}`",
                excerpt(value.as_bytes(), 60)
            )));
        }
        slot.push_str(value);
    }
    cur.finish(path, &mut out)?;
    out.sort();
    out.dedup();
    Ok(out)
}

#[derive(Default)]
struct Stanza {
    start: usize,
    pkg: ApkPackage,
}

impl Stanza {
    fn finish(&mut self, path: &str, out: &mut Vec<ApkPackage>) -> Result<()> {
        if self.start == 0 {
            return Ok(());
        }
        let done = std::mem::take(self);
        let missing = match (done.pkg.name.is_empty(), done.pkg.version.is_empty()) {
            (true, _) => "`P:` (name)",
            (_, true) => "`V:` (version)",
            _ => {
                out.push(done.pkg);
                return Ok(());
            }
        };
        Err(Error::input(format!(
            "`{path}` line {}: the package has no {missing} field",
            done.start
        )))
    }
}

/// The Alpine release from `etc/alpine-release` (`3.22.1`), when it looks like one.
pub fn release(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?;
    let first = text.lines().next()?.trim();
    let ok = !first.is_empty()
        && first.len() <= 32
        && first
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    ok.then(|| first.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DB: &str = "C:Q1abc=\nP:musl\nV:1.2.5-r10\nA:x86_64\nS:412345\nI:987654\n\
T:the musl c library (libc) implementation\nU:https://musl.libc.org/\nL:MIT\no:musl\n\
m:Natanael Copa <ncopa@alpinelinux.org>\nt:1730000000\nc:abcdef\nF:lib\nR:ld-musl-x86_64.so.1\n\
a:0:0:755\nZ:Q1xyz=\n\nP:busybox\nV:1.37.0-r18\nA:x86_64\nL:GPL-2.0-only\no:busybox\n\
D:so:libc.musl-x86_64.so.1\n\nP:ca-certificates-bundle\nV:20250619-r0\nA:x86_64\n\
L:MPL-2.0 AND MIT\no:ca-certificates\n";

    #[test]
    fn reads_names_versions_and_fields() {
        let pkgs = parse("db", DB.as_bytes()).unwrap();
        let names: Vec<_> = pkgs.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["busybox", "ca-certificates-bundle", "musl"]);
        assert_eq!(
            pkgs[1],
            ApkPackage {
                name: "ca-certificates-bundle".into(),
                version: "20250619-r0".into(),
                arch: Some("x86_64".into()),
                license: Some("MPL-2.0 AND MIT".into()),
                origin: Some("ca-certificates".into()),
            }
        );
        // Blank lines at either end, CRLF and repeated separators are tolerated.
        let loose = format!("\n\n{}\n\n\n", DB.replace('\n', "\r\n"));
        assert_eq!(parse("db", loose.as_bytes()).unwrap(), pkgs);
        assert!(parse("db", b"").unwrap().is_empty());
    }

    #[test]
    fn refuses_broken_databases_naming_the_line() {
        let cases: &[(&[u8], &str)] = &[
            (
                b"P:musl\nV:1\n\nV:2\n",
                "`db` line 4: the package has no `P:` (name) field",
            ),
            (
                b"P:musl\nA:x86_64\n",
                "`db` line 1: the package has no `V:` (version) field",
            ),
            (
                b"P:musl\nV:1\nP:again\n",
                "`db` line 3: a second `P:` field",
            ),
            (
                b"P:musl\nnot a field\n",
                "`db` line 2: `not a field` is not",
            ),
            (b"P:musl\nV:\n", "`db` line 2: field `V:` has an empty"),
            (
                b"P:mu\x1bsl\n",
                "`db` line 1: field `P:` has an empty or unprintable value `mu\\x1bsl`",
            ),
            (
                b"P:musl\nV:1\xff\n",
                "`db` line 2: the apk database is not UTF-8",
            ),
            // Truncated after the name, and in the middle of a field name.
            (
                &DB.as_bytes()[..16],
                "`db` line 1: the package has no `V:` (version) field",
            ),
            (&DB.as_bytes()[..17], "`db` line 3: `V` is not"),
        ];
        for (bytes, want) in cases {
            let err = parse("db", bytes).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn alpine_release() {
        assert_eq!(release(b"3.22.1\n").as_deref(), Some("3.22.1"));
        assert_eq!(
            release(b"3.23_alpha20250101\n").as_deref(),
            Some("3.23_alpha20250101")
        );
        assert_eq!(release(b"\n"), None);
        assert_eq!(release(b"3.22 & more"), None);
        assert_eq!(release(b"\xff"), None);
    }
}
