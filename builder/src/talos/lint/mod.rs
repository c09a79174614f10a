//! `config lint`: checks Talos documents users already have (full configs, strategic-merge
//! patches, multi-document files) for the traps in the Tailscale extension's field reports.
//! Every finding carries a rule id, the file, document and line, a message and a fix hint;
//! errors make the command exit 1 (STYLE habit 5: report every finding, not the first).
//!
//! Rules live in [`esc`] (the `ExtensionServiceConfig` document and its environment) and
//! [`machine`] (the v1alpha1 config, the documents that replace parts of it, and rules that need
//! both) and [`release`] (v1alpha1 fields next to the documents that replace them, from the
//! release table). By default each file is one node's configuration; [`Options::merged`] treats
//! all files as one node.

pub mod env;
pub mod esc;
pub mod forwarding;
pub mod machine;
pub mod release;

use serde::Serialize;

use super::doc::{self, Doc};
use super::spec::Role;
use crate::release::Minor;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub rule: &'static str,
    pub severity: Severity,
    pub file: String,
    /// 1-based document number in the file (0 when the finding is about the file).
    pub document: usize,
    /// `ExtensionServiceConfig/tailscale`, `v1alpha1`, …
    pub doc_label: String,
    pub line: usize,
    pub message: String,
    pub hint: String,
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Role of the node when the documents do not say (`machine.type`, `cluster.etcd`).
    pub role: Option<Role>,
    /// Lint all inputs as one node's configuration.
    pub merged: bool,
    /// The Talos release the configuration is for; unknown, only facts true of every release
    /// that has a document are applied.
    pub talos_version: Option<Minor>,
    /// Configuration contracts of extensions (`--definition`), by service name: their
    /// `ExtensionServiceConfig`s are checked against them.
    pub contracts: std::collections::BTreeMap<String, crate::talos::contract::Contract>,
}

/// A document and the file it came from.
pub struct Located<'a> {
    pub file: &'a str,
    pub doc: &'a Doc,
}

impl Located<'_> {
    pub fn label(&self) -> String {
        match self.doc.kind() {
            Some(kind) => match self.doc.root.get("name").and_then(|n| n.as_str()) {
                Some(name) => format!("{kind}/{name}"),
                None => kind.to_string(),
            },
            None if self.doc.is_json_patch() => "JSON patch".into(),
            None => "v1alpha1".into(),
        }
    }

    pub fn finding(
        &self,
        rule: &'static str,
        severity: Severity,
        line: usize,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Finding {
        Finding {
            rule,
            severity,
            file: self.file.to_string(),
            document: self.doc.index + 1,
            doc_label: self.label(),
            line,
            message: message.into(),
            hint: hint.into(),
        }
    }
}

/// Lint named inputs (`(file name, text)`).
pub fn lint(inputs: &[(String, String)], opts: &Options) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut parsed: Vec<(&str, Vec<Doc>)> = Vec::new();
    for (name, text) in inputs {
        match doc::parse(text) {
            Ok(docs) => parsed.push((name, docs)),
            Err(e) => findings.push(Finding {
                rule: "yaml-syntax",
                severity: Severity::Error,
                file: name.clone(),
                document: 0,
                doc_label: String::new(),
                line: e.line,
                message: format!("not valid YAML: {}", e.message),
                hint: "fix the syntax; Talos cannot load this file".into(),
            }),
        }
    }
    let groups: Vec<Vec<Located>> = if opts.merged {
        vec![parsed
            .iter()
            .flat_map(|(f, docs)| docs.iter().map(move |d| Located { file: f, doc: d }))
            .collect()]
    } else {
        parsed
            .iter()
            .map(|(f, docs)| docs.iter().map(|d| Located { file: f, doc: d }).collect())
            .collect()
    };
    for group in &groups {
        for d in group {
            duplicate_keys(d, &d.doc.root, &mut findings);
            esc::check_document(d, &mut findings);
            contract_check(d, opts, &mut findings);
        }
        esc::check_group(group, &mut findings);
        machine::check_group(group, opts, &mut findings);
        release::check_group(group, opts, &mut findings);
    }
    findings.sort_by(|a, b| (&a.file, a.line, a.rule).cmp(&(&b.file, b.line, b.rule)));
    findings.dedup();
    findings
}

/// An `ExtensionServiceConfig` of an extension whose contract is known: every required key
/// set, no key the service does not read, no `configFiles` path it does not take.
fn contract_check(d: &Located, opts: &Options, out: &mut Vec<Finding>) {
    if !env::is_esc(d) {
        return;
    }
    let Some(name) = env::esc_name(d) else {
        return;
    };
    let Some(contract) = opts.contracts.get(name) else {
        return;
    };
    let environment = env::esc_env(d);
    for (key, spec) in &contract.environment {
        if spec.required && !environment.has(key) {
            out.push(
                d.finding(
                    "contract-env-missing",
                    Severity::Error,
                    d.doc
                        .root
                        .entry("environment")
                        .map_or(d.doc.line, |e| e.line()),
                    format!("`{key}` is required by the `{name}` extension and not set"),
                    format!("add `{key}=…` to `environment`"),
                ),
            );
        }
    }
    for e in &environment.entries {
        if contract.environment.contains_key(e.key) {
            continue;
        }
        let (message, hint) = match contract.nearest(e.key) {
            Some(near) => (
                format!(
                    "`{}` is not read by the `{name}` extension; did you mean `{near}`?",
                    e.key
                ),
                format!("rename it to `{near}`"),
            ),
            None => (
                format!("`{}` is not read by the `{name}` extension", e.key),
                format!(
                    "its contract lists {}",
                    contract
                        .environment
                        .keys()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        };
        out.push(d.finding(
            "contract-env-unknown",
            Severity::Warning,
            e.line,
            message,
            hint,
        ));
    }
    let files = d.doc.root.get("configFiles");
    for f in files.map(|f| f.items()).unwrap_or_default() {
        if let Some(path) = f.get("mountPath").and_then(|p| p.as_str()) {
            if !contract.config_files.iter().any(|c| c == path) {
                out.push(d.finding(
                    "contract-config-file-unknown",
                    Severity::Warning,
                    f.line,
                    format!("`{path}` is not a config file the `{name}` extension reads"),
                    if contract.config_files.is_empty() {
                        "the extension declares no config files".to_string()
                    } else {
                        format!("it reads {}", contract.config_files.join(", "))
                    },
                ));
            }
        }
    }
}

/// go-yaml (and so Talos's decoder) refuses a mapping that repeats a key.
fn duplicate_keys(d: &Located, node: &doc::Node, out: &mut Vec<Finding>) {
    let entries = node.entries();
    for (i, e) in entries.iter().enumerate() {
        if let Some(first) = entries[..i].iter().find(|p| p.name() == e.name()) {
            out.push(d.finding(
                "yaml-duplicate-key",
                Severity::Error,
                e.line(),
                format!(
                    "key `{}` repeats the one on line {}",
                    e.name(),
                    first.line()
                ),
                "Talos's YAML decoder rejects duplicate keys; keep one",
            ));
        }
        duplicate_keys(d, &e.value, out);
    }
    for item in node.items() {
        duplicate_keys(d, item, out);
    }
}

/// Render findings as text: `FILE:LINE: error[rule]: message (document N, label)` + hint.
pub fn format_text(findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        let sev = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let at = if f.document == 0 {
            String::new()
        } else {
            format!(" (document {}, {})", f.document, f.doc_label)
        };
        out.push_str(&format!(
            "{}:{}: {sev}[{}]: {}{at}\n",
            f.file, f.line, f.rule, f.message
        ));
        out.push_str(&format!("  hint: {}\n", f.hint));
    }
    out
}

pub fn error_count(findings: &[Finding]) -> usize {
    findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count()
}
