//! The forwarding sysctls a Tailscale subnet router or exit node needs (tailscale.md §3.6),
//! read from `.machine.sysctls` or, from v1.14, a `SysctlConfig` document, against the
//! parameters Talos sets itself (the release table's forwarding defaults).

use super::env::Env;
use super::{Finding, Located, Options, Severity};
use crate::release::config;
use crate::talos::doc::Node;

/// A sysctl as the node will have it: a `SysctlConfig` document wins over `.machine.sysctls`
/// on the same key (`runtime/sysctl.go`, v1.14).
fn sysctl<'a>(v1: &[&'a Located], group: &'a [Located], key: &str) -> Option<&'a str> {
    group
        .iter()
        .filter(|d| d.doc.kind() == Some("SysctlConfig"))
        .find_map(|d| {
            d.doc
                .root
                .get("params")
                .and_then(|p| p.get(key))
                .and_then(Node::as_str)
        })
        .or_else(|| {
            v1.iter().find_map(|d| {
                d.doc
                    .root
                    .path(&["machine", "sysctls"])
                    .and_then(|s| s.get(key))
                    .and_then(Node::as_str)
            })
        })
}

/// Why forwarding through `key` is off on the node, if it is: set to something other than
/// `1`, or unset where Talos does not turn it on itself (the release table's defaults).
fn forwarding_off(
    v1: &[&Located],
    group: &[Located],
    key: &str,
    opts: &Options,
) -> Option<Option<String>> {
    match sysctl(v1, group, key) {
        Some("1") => None,
        Some(other) => Some(Some(other.to_string())),
        None => match config::sysctl_default(opts.talos_version, key) {
            Some(d) if d.value == "1" => None,
            _ => Some(None),
        },
    }
}

pub fn check(
    v1: &[&Located],
    group: &[Located],
    envs: &[(&Located, Env)],
    opts: &Options,
    out: &mut Vec<Finding>,
) {
    let sysctl_docs = group.iter().any(|d| d.doc.kind() == Some("SysctlConfig"));
    for (d, env) in envs {
        let line = env
            .get("TS_ROUTES")
            .or(env.get("TS_EXTRA_ARGS"))
            .map(|e| e.line)
            .unwrap_or(d.doc.line);
        let checks = [
            (
                env.needs_v6_forwarding(),
                "net.ipv6.conf.all.forwarding",
                "IPv6 routes or an exit node are",
            ),
            (
                env.needs_v4_forwarding(),
                "net.ipv4.ip_forward",
                "IPv4 routes are",
            ),
        ];
        for (needed, key, what) in checks {
            if !needed {
                continue;
            }
            let hint = format!("containerboot cannot write /proc/sys inside the extension and exits; set `{key}: \"1\"` in `machine.sysctls` (or, from v1.14, in a `SysctlConfig` document's `params`)");
            match forwarding_off(v1, group, key, opts) {
                None => {}
                Some(Some(value)) => out.push(d.finding(
                    "ts-routes-forwarding",
                    Severity::Error,
                    line,
                    format!("{what} advertised but `{key}` is set to \"{value}\""),
                    hint,
                )),
                Some(None) => {
                    let (severity, seen) = if v1.is_empty() && !sysctl_docs {
                        (Severity::Warning, "no machine config in this file sets")
                    } else {
                        (Severity::Error, "the machine config does not set")
                    };
                    out.push(d.finding(
                        "ts-routes-forwarding",
                        severity,
                        line,
                        format!("{what} advertised but {seen} `{key}: \"1\"` (Talos does not set it itself)"),
                        hint,
                    ));
                }
            }
        }
    }
}
