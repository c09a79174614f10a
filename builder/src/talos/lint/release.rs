//! Rules from the release table (`crate::release::config`): a v1alpha1 field next to the
//! document that replaces it, which Talos refuses (`V1Alpha1ConflictValidate`), and, when the
//! release is known, document kinds that release does not have.

use super::{Finding, Located, Options, Severity};
use crate::release::config::{self, Document, Replaced, Set};
use crate::talos::doc::{Kind, Node};

/// Whether a v1alpha1 value counts as set, the way the Go field would after decoding.
fn is_set(node: &Node, set: Set) -> bool {
    if node.is_null() {
        return false;
    }
    match set {
        Set::Present => true,
        Set::NonEmpty => match &node.kind {
            Kind::Scalar { value, .. } => !value.is_empty(),
            Kind::Seq(items) => !items.is_empty(),
            Kind::Map(entries) => !entries.is_empty(),
        },
        Set::NonZero => node.as_str().is_some_and(|s| s != "0"),
        Set::True => node.is_true(),
    }
}

/// The conflicts of `doc` to check: every one when the release is known, otherwise only those
/// every release with the document has (no finding that depends on a newer release).
fn conflicts<'a>(doc: &'a Document, opts: &Options) -> impl Iterator<Item = &'a Replaced> {
    let minor = opts.talos_version;
    doc.replaces.iter().filter(move |r| match minor {
        Some(m) => r.since <= m,
        None => r.since == doc.since,
    })
}

fn place(other: &Located, of: &Located) -> String {
    let file = if other.file == of.file {
        String::new()
    } else {
        format!("{}, ", other.file)
    };
    format!(
        "{file}document {}, line {}",
        other.doc.index + 1,
        other.doc.line
    )
}

pub fn check_group(group: &[Located], opts: &Options, out: &mut Vec<Finding>) {
    let v1: Vec<&Located> = group.iter().filter(|d| d.doc.is_v1alpha1()).collect();
    for d in group {
        let Some(kind) = d.doc.kind() else { continue };
        let Some(doc) = config::document(kind) else {
            continue;
        };
        if let Some(m) = opts.talos_version {
            if doc.since > m {
                out.push(
                    d.finding(
                        "document-not-in-release",
                        Severity::Error,
                        d.doc
                            .root
                            .entry("kind")
                            .map(|e| e.line())
                            .unwrap_or(d.doc.line),
                        format!(
                            "`{kind}` documents exist from Talos {}; {m} does not know the kind",
                            doc.since
                        ),
                        format!(
                            "for {m} write the v1alpha1 field instead, or target Talos {} or later",
                            doc.since
                        ),
                    ),
                );
            }
        }
        for r in conflicts(doc, opts) {
            for v in &v1 {
                let Some(e) = v.doc.root.path_entry(r.field) else {
                    continue;
                };
                if !is_set(&e.value, r.set) {
                    continue;
                }
                out.push(v.finding(
                    "v1alpha1-conflict",
                    Severity::Error,
                    e.line(),
                    format!(
                        "`{}` (line {}) is set next to the `{kind}` document ({}) that replaces it; Talos refuses the configuration",
                        r.dotted(),
                        e.line(),
                        place(d, v),
                    ),
                    format!(
                        "remove `{}` from the v1alpha1 config and set it in `{kind}` (Talos {} and later)",
                        r.dotted(),
                        doc.since
                    ),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::talos::doc;

    #[test]
    fn set_follows_the_go_field() {
        let d =
            doc::parse("a: ~\nb: false\nc: true\nd: 0\ne: 6443\nf: []\ng: {}\nh: \"\"\n").unwrap();
        let n = |k: &str| d[0].root.get(k).unwrap();
        assert!(!is_set(n("a"), Set::Present));
        assert!(is_set(n("b"), Set::Present));
        assert!(!is_set(n("b"), Set::True));
        assert!(is_set(n("c"), Set::True));
        assert!(!is_set(n("d"), Set::NonZero));
        assert!(is_set(n("e"), Set::NonZero));
        assert!(!is_set(n("f"), Set::NonEmpty));
        assert!(is_set(n("g"), Set::Present));
        assert!(!is_set(n("h"), Set::NonEmpty));
    }
}
