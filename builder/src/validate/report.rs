//! The validation report: findings grouped per subject (a platform like `linux/amd64`, or a
//! source path) and, when validated against Talos releases, a matrix with one column per target
//! release (its constraint verdict and the content findings of that release). Rendered as text or
//! as the documented JSON shape.

use serde::Serialize;

use super::{Finding, Severity, Verdict};
use crate::rootfs::escape;

/// One target release of one subject.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    /// The Talos version validated against (`v1.9.0`).
    pub talos: String,
    /// The release whose facts were applied (`v1.9`; the nearest known one for others).
    pub release: String,
    /// The `compatibility.talos` constraint against `talos`.
    pub constraint: Verdict,
    /// The image works on this target: no error here nor among the subject's own findings.
    pub ok: bool,
    pub errors: usize,
    pub warnings: usize,
    /// Findings of this target that not every target has (constraint, allowlist, kernel
    /// modules); those all targets share are the subject's.
    pub findings: Vec<Finding>,
}

/// Findings for one subject.
#[derive(Debug, Clone, Serialize)]
pub struct SubjectReport {
    pub subject: String,
    /// Findings that hold whatever the release, and those every target shares (so all of them
    /// with one target).
    pub findings: Vec<Finding>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TargetReport>,
}

impl SubjectReport {
    fn has_error(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }

    /// The targets the image works on.
    pub fn works_on(&self) -> Vec<&str> {
        self.targets
            .iter()
            .filter(|t| t.ok)
            .map(|t| t.talos.as_str())
            .collect()
    }

    /// Every finding once: the subject's own, then each target's not already listed.
    fn distinct(&self) -> Vec<&Finding> {
        let mut out: Vec<&Finding> = self.findings.iter().collect();
        for t in &self.targets {
            for f in &t.findings {
                if !out.contains(&f) {
                    out.push(f);
                }
            }
        }
        out
    }
}

/// Findings grouped per subject, with the target matrix when there is one.
///
/// JSON shape (`--json`):
///
/// ```json
/// {
///   "ok": false,                 // see `Report::failed`
///   "errors": 1,                 // distinct error findings over all subjects and targets
///   "warnings": 0,
///   "survey": false,             // true for a bare `validate`: every known release is a target
///   "targets": ["v1.9.0"],       // the Talos versions validated against, if any
///   "subjects": [
///     {
///       "subject": "linux/amd64",
///       "findings": [            // findings on every target (all of them for one target)
///         {
///           "rule": "hard-link",
///           "severity": "error",   // or "warning"
///           "path": "rootfs/usr/local/bin/b",
///           "message": "...",
///           "hint": "..."
///         }
///       ],
///       "targets": [             // one per target, in the order given
///         {
///           "talos": "v1.9.0",
///           "release": "v1.9",     // the release whose facts were applied
///           "constraint": "satisfied", // unconstrained, unsatisfied, unparsable, unknown
///           "ok": false,           // the image works on this target
///           "errors": 1, "warnings": 0, // counts of this target's own findings
///           "findings": [ ... ]    // findings of this target the others do not all have
///         }
///       ],
///       "works_on": ["v1.10.0"]  // the targets whose `ok` is true
///     }
///   ]
/// }
/// ```
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub subjects: Vec<SubjectReport>,
    /// Every known release is a target and the question is which ones the image works on.
    pub survey: bool,
}

impl Report {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, subject: impl Into<String>, findings: Vec<Finding>) {
        self.subjects.push(SubjectReport {
            subject: subject.into(),
            findings,
            targets: Vec::new(),
        });
    }

    /// A subject validated against targets: `findings` hold whatever the release, and each
    /// target's are its own. A finding every target has moves to the subject's (so a single
    /// target gives the same shape as no target). A target is `ok` when neither has an error.
    pub fn push_matrix(
        &mut self,
        subject: impl Into<String>,
        mut findings: Vec<Finding>,
        mut targets: Vec<(String, String, Verdict, Vec<Finding>)>,
    ) {
        let shared: Vec<Finding> = match targets.split_first() {
            Some((first, rest)) => first
                .3
                .iter()
                .filter(|f| rest.iter().all(|t| t.3.contains(f)))
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        for t in &mut targets {
            t.3.retain(|f| !shared.contains(f));
        }
        for f in shared {
            if !findings.contains(&f) {
                findings.push(f);
            }
        }
        let common_error = findings.iter().any(|f| f.severity == Severity::Error);
        let targets = targets
            .into_iter()
            .map(|(talos, release, constraint, findings)| {
                let errors = count(findings.iter(), Severity::Error);
                TargetReport {
                    talos,
                    release,
                    constraint,
                    ok: errors == 0 && !common_error,
                    errors,
                    warnings: count(findings.iter(), Severity::Warning),
                    findings,
                }
            })
            .collect();
        self.subjects.push(SubjectReport {
            subject: subject.into(),
            findings,
            targets,
        });
    }

    fn count(&self, severity: Severity) -> usize {
        self.subjects
            .iter()
            .map(|s| count(s.distinct().into_iter(), severity))
            .sum()
    }

    pub fn error_count(&self) -> usize {
        self.count(Severity::Error)
    }

    pub fn warning_count(&self) -> usize {
        self.count(Severity::Warning)
    }

    /// Whether validation failed: any error, or in a survey, a subject with an error whatever
    /// the release or working on no known release.
    pub fn failed(&self) -> bool {
        if self.survey {
            self.subjects
                .iter()
                .any(|s| s.has_error() || (!s.targets.is_empty() && s.works_on().is_empty()))
        } else {
            self.error_count() > 0
        }
    }

    fn target_names(&self) -> Vec<String> {
        self.subjects
            .first()
            .map(|s| s.targets.iter().map(|t| escape(&t.talos)).collect())
            .unwrap_or_default()
    }

    /// `error[rule] path: message` / `  hint: …` lines, a `== subject` heading per subject when
    /// there are several, a matrix per subject when there are several targets, then a summary
    /// line.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let headings = self.subjects.len() > 1;
        let matrix = self.survey || self.subjects.iter().any(|s| s.targets.len() > 1);
        for s in &self.subjects {
            if headings {
                out.push_str(&format!("== {}\n", escape(&s.subject)));
            }
            if !matrix {
                for f in s.distinct() {
                    finding_lines(&mut out, f);
                }
                continue;
            }
            render_matrix(&mut out, s, self.survey);
        }
        let names: Vec<String> = self.subjects.iter().map(|s| escape(&s.subject)).collect();
        let (e, w) = (self.error_count(), self.warning_count());
        out.push_str(&format!(
            "{}: {} {}, {} {} in {}",
            if self.failed() { "failed" } else { "ok" },
            e,
            plural(e, "error", "errors"),
            w,
            plural(w, "warning", "warnings"),
            names.join(", ")
        ));
        let targets = self.target_names();
        if self.survey {
            out.push_str(" on the known Talos releases");
        } else if !targets.is_empty() {
            out.push_str(&format!(" for Talos {}", targets.join(", ")));
        }
        out.push('\n');
        out
    }

    /// The documented JSON shape (see the type's doc).
    pub fn to_json(&self) -> serde_json::Value {
        let subjects: Vec<serde_json::Value> = self
            .subjects
            .iter()
            .map(|s| {
                let mut v = serde_json::json!({
                    "subject": s.subject,
                    "findings": s.findings,
                });
                if !s.targets.is_empty() {
                    v["targets"] = serde_json::json!(s.targets);
                    v["works_on"] = serde_json::json!(s.works_on());
                }
                v
            })
            .collect();
        let mut v = serde_json::json!({
            "ok": !self.failed(),
            "errors": self.error_count(),
            "warnings": self.warning_count(),
            "subjects": subjects,
        });
        let targets: Vec<&str> = self
            .subjects
            .first()
            .map(|s| s.targets.iter().map(|t| t.talos.as_str()).collect())
            .unwrap_or_default();
        if !targets.is_empty() {
            v["survey"] = serde_json::json!(self.survey);
            v["targets"] = serde_json::json!(targets);
        }
        v
    }
}

/// The subject's findings (those of every target among them), the matrix, then each target's
/// own findings under `-- <target>`, and which targets the image works on.
fn render_matrix(out: &mut String, s: &SubjectReport, survey: bool) {
    for f in &s.findings {
        finding_lines(out, f);
    }
    let width = s
        .targets
        .iter()
        .map(|t| escape(&t.talos).len())
        .max()
        .unwrap_or(0)
        .max("talos".len());
    out.push_str(&format!(
        "{:<width$}  {:<7}  {:<13}  result\n",
        "talos", "release", "constraint"
    ));
    for t in &s.targets {
        let result = if t.ok {
            "ok".to_string()
        } else if t.errors == 0 {
            "failed (the findings above)".to_string()
        } else {
            format!("{} {}", t.errors, plural(t.errors, "error", "errors"))
        };
        let result = if t.warnings > 0 {
            format!(
                "{result}, {} {}",
                t.warnings,
                plural(t.warnings, "warning", "warnings")
            )
        } else {
            result
        };
        out.push_str(&format!(
            "{:<width$}  {:<7}  {:<13}  {result}\n",
            escape(&t.talos),
            t.release,
            verdict_name(t.constraint),
        ));
    }
    for t in &s.targets {
        if t.findings.is_empty() {
            continue;
        }
        out.push_str(&format!("-- {}\n", escape(&t.talos)));
        for f in &t.findings {
            finding_lines(out, f);
        }
    }
    let works = s.works_on();
    let not: Vec<&str> = s
        .targets
        .iter()
        .filter(|t| !t.ok)
        .map(|t| t.talos.as_str())
        .collect();
    let list = |v: &[&str]| v.iter().map(|t| escape(t)).collect::<Vec<_>>().join(", ");
    let scope = if survey {
        "of the known Talos releases"
    } else {
        "of the targets"
    };
    match (works.is_empty(), not.is_empty()) {
        (true, _) => out.push_str(&format!("works on none {scope}\n")),
        (false, true) => out.push_str(&format!("works on every one {scope}: {}\n", list(&works))),
        (false, false) => out.push_str(&format!(
            "works on {}; not on {}\n",
            list(&works),
            list(&not)
        )),
    }
}

fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Satisfied => "satisfied",
        Verdict::Unconstrained => "unconstrained",
        Verdict::Unsatisfied => "unsatisfied",
        Verdict::Unparsable => "unparsable",
        Verdict::Unknown => "unknown",
    }
}

fn finding_lines(out: &mut String, f: &Finding) {
    // Names come from the image: escaped, so none can drive the terminal or fake a line of the
    // report (`--json` carries them exactly).
    let line = f.line.map(|l| format!(":{l}")).unwrap_or_default();
    out.push_str(&format!(
        "{}[{}] {}{line}: {}\n",
        f.severity.as_str(),
        f.rule,
        escape(&f.path),
        escape(&f.message)
    ));
    if !f.hint.is_empty() {
        out.push_str(&format!("  hint: {}\n", escape(&f.hint)));
    }
}

fn count<'a>(findings: impl Iterator<Item = &'a Finding>, severity: Severity) -> usize {
    findings.filter(|f| f.severity == severity).count()
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(rule: &'static str, path: &str) -> Finding {
        Finding::new(rule, path, format!("{rule} at `{path}`"), "fix it")
    }

    #[test]
    fn findings_every_target_has_move_to_the_subject() {
        let shared = f("path-not-allowed", "rootfs/etc/x");
        let own = f("path-not-allowed", "rootfs/lib/firmware/x");
        let mut r = Report::new();
        r.push_matrix(
            "linux/amd64",
            Vec::new(),
            vec![
                (
                    "v1.9.0".into(),
                    "v1.9".into(),
                    Verdict::Satisfied,
                    vec![shared.clone()],
                ),
                (
                    "v1.11.0".into(),
                    "v1.11".into(),
                    Verdict::Satisfied,
                    vec![shared.clone(), own.clone()],
                ),
            ],
        );
        let s = &r.subjects[0];
        assert_eq!(s.findings, vec![shared]);
        assert!(s.targets[0].findings.is_empty());
        assert_eq!(s.targets[1].findings, vec![own]);
        assert!(s.works_on().is_empty(), "the shared error fails both");
        assert_eq!(r.error_count(), 2);
        assert!(r.failed());
        let text = r.render_text();
        assert!(text.contains("-- v1.11.0\nerror[path-not-allowed] rootfs/lib/firmware/x"));
        assert!(!text.contains("-- v1.9.0"), "{text}");
        assert!(text.contains("works on none of the targets\n"), "{text}");
    }

    #[test]
    fn a_survey_fails_only_where_nothing_works() {
        let mut r = Report::new();
        r.survey = true;
        r.push_matrix(
            "x",
            Vec::new(),
            vec![
                (
                    "v1.9.0".into(),
                    "v1.9".into(),
                    Verdict::Satisfied,
                    vec![f("path-not-allowed", "rootfs/usr/lib/firmware/x")],
                ),
                (
                    "v1.10.0".into(),
                    "v1.10".into(),
                    Verdict::Satisfied,
                    Vec::new(),
                ),
            ],
        );
        assert!(!r.failed());
        assert_eq!(r.to_json()["ok"], true);
        assert_eq!(
            r.to_json()["subjects"][0]["works_on"],
            serde_json::json!(["v1.10.0"])
        );
    }
}
