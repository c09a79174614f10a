//! Extension service definitions in `rootfs/usr/local/etc/containers/` (contract §5): decoded
//! leniently and checked with Talos's `Spec.Validate` rules, then against what only shows up on a
//! node: duplicate names, a missing container root, an entrypoint that does not exist or cannot
//! run, and secrets written into the image.

use std::collections::BTreeMap;

use super::{on_node, Finding};
use crate::goyaml::lenient::{first_document, Decoder};
use crate::goyaml::Node as YamlNode;
use crate::rootfs::{join, Node, NodeKind, Tree};

const SPECS: &str = "rootfs/usr/local/etc/containers";
const CONTAINERS: &str = "rootfs/usr/local/lib/containers";
/// containerd's default `PATH` for a spec that sets none (`oci.populateDefaultUnixSpec`).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// `nethelpers.Status` values.
const NETWORK: &[&str] = &["addresses", "connectivity", "hostname", "etcfiles"];
/// `RestartKind` values (matched case-insensitively, like the generated `RestartKindString`).
const RESTART: &[&str] = &["always", "never", "untilsuccess"];

/// The fields of `services.Spec` this module checks.
#[derive(Debug, Default)]
pub(crate) struct Spec {
    name: String,
    entrypoint: String,
    environment: Vec<String>,
    args: Vec<String>,
    restart: Option<String>,
    depends: Vec<Dependency>,
    lines: Lines,
}

/// Lines of the fields [`validate_spec`] reports on (0: absent).
#[derive(Debug, Default)]
pub(crate) struct Lines {
    name: usize,
    restart: usize,
    entrypoint: usize,
}

#[derive(Debug, Default)]
struct Dependency {
    service: String,
    path: String,
    network: Vec<String>,
    time: bool,
    configuration: bool,
    line: usize,
}

pub(super) fn check(tree: &Tree, out: &mut Vec<Finding>) {
    // machined reads the directory in file name order; the first file to claim a name wins.
    let mut claimed: BTreeMap<String, String> = BTreeMap::new();
    for (file, node) in tree.children(SPECS) {
        let path = join(SPECS, file);
        if file.ends_with(".yml") {
            out.push(Finding::new(
                "service-yml",
                path.as_str(),
                format!("service definition `{file}` ends in `.yml`, which Talos silently ignores"),
                "rename it to end in `.yaml`",
            ));
            continue;
        }
        if !file.ends_with(".yaml") {
            continue;
        }
        let Some(spec) = decode(tree, &path, node, out) else {
            continue;
        };
        let before = out.len();
        validate_spec(&spec, &path, out);
        let talos_accepts = out.len() == before;

        let stem = file.trim_end_matches(".yaml");
        if !spec.name.is_empty() && stem != spec.name {
            out.push(Finding::new(
                "service-file-name",
                path.as_str(),
                format!(
                    "file `{file}` declares service `{}`; the service is `ext-{}`, not `ext-{stem}`",
                    spec.name, spec.name
                ),
                format!("name the file `{}.yaml`, as Talos's own extensions do", spec.name),
            ));
        }
        if talos_accepts {
            if let Some(first) = claimed.get(&spec.name) {
                out.push(Finding::new(
                    "service-duplicate",
                    path.as_str(),
                    format!(
                        "service `{}` is already declared by `{first}`; Talos skips this file as a duplicate",
                        spec.name
                    ),
                    "give each service a unique `name`, or remove one of the files",
                ));
            } else {
                claimed.insert(spec.name.clone(), file.to_string());
            }
        }
        if name_valid(&spec.name) {
            check_container(tree, &spec, &path, out);
        }
        check_environment(&spec, &path, out);
    }
}

fn decode(tree: &Tree, path: &str, node: &Node, out: &mut Vec<Finding>) -> Option<Spec> {
    let fail = |message: String| {
        Finding::new(
            "service-decode",
            path,
            message,
            "fix the YAML so it decodes into Talos's service spec (`name`, `container`, `depends`, `restart`)",
        )
    };
    let file = match &node.kind {
        NodeKind::File { .. } => path.to_string(),
        // machined opens the file on the node, so a symlink resolves inside the overlaid root.
        NodeKind::Symlink { .. } => match tree.resolve("rootfs", &on_node(path)) {
            Some(p) if tree.get(&p).is_some_and(Node::is_file) => p,
            _ => {
                out.push(fail(format!(
                    "`{}` is a symlink that does not lead to a file inside the image",
                    on_node(path)
                )));
                return None;
            }
        },
        NodeKind::HardLink { .. } => {
            out.push(fail(format!(
                "`{}` is a hard link, which Talos unpacks as an empty file",
                on_node(path)
            )));
            return None;
        }
        _ => {
            out.push(fail(format!("`{}` is not a regular file", on_node(path))));
            return None;
        }
    };
    let bytes = match tree.read_all(&file) {
        Ok(b) => b,
        Err(e) => {
            out.push(fail(format!("cannot read `{}`: {e}", on_node(path))));
            return None;
        }
    };
    decode_spec(&bytes, path, out)
}

/// The keys of `services.Spec` and its nested types, as go-yaml matches them
/// (`pkg/machinery/extensions/services/services.go` at v1.14.0-rc.1; `mounts` items are OCI
/// runtime-spec `Mount`s, which have no yaml tags, so go-yaml matches their lower-cased field
/// names). Talos decodes service files without `KnownFields`, so any other key is ignored.
const SPEC_KEYS: &[&str] = &["name", "container", "depends", "restart", "logToConsole"];
const CONTAINER_KEYS: &[&str] = &[
    "entrypoint",
    "environment",
    "environmentFile",
    "args",
    "mounts",
    "security",
];
const SECURITY_KEYS: &[&str] = &[
    "writeableSysfs",
    "maskedPaths",
    "readonlyPaths",
    "writeableRootfs",
    "rootfsPropagation",
];
const DEPENDENCY_KEYS: &[&str] = &["service", "path", "network", "time", "configuration"];
const MOUNT_KEYS: &[&str] = &[
    "destination",
    "type",
    "source",
    "options",
    "uidmappings",
    "gidmappings",
];

/// Keys Talos ignores, each reported with the known key it most likely means.
fn unknown_keys(
    map: Option<&YamlNode>,
    field: &str,
    known: &[&str],
    path: &str,
    out: &mut Vec<Finding>,
) {
    let Some(map) = map else {
        return;
    };
    for e in map.entries() {
        let key = e.name();
        if known.contains(&key) || e.key.is_merge() {
            continue;
        }
        let near = crate::error::did_you_mean(key, known.iter().copied());
        let at = if field.is_empty() {
            format!("`{key}`")
        } else {
            format!("`{field}.{key}`")
        };
        let (message, hint) = match near {
            Some(k) => (
                format!("{at} is not a key of Talos's service spec, which ignores it; did you mean `{k}`?"),
                format!("rename it to `{k}`"),
            ),
            None => (
                format!("{at} is not a key of Talos's service spec, which ignores it"),
                format!("the keys here are {}", known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")),
            ),
        };
        out.push(Finding::new("service-unknown-key", path, message, hint).at_line(e.line()));
    }
}

/// Decode a service file's bytes the way machined does, reporting what Talos would refuse (and
/// the keys it would ignore) at their lines of `path`.
pub(crate) fn decode_spec(bytes: &[u8], path: &str, out: &mut Vec<Finding>) -> Option<Spec> {
    let fail = |message: String, line: usize| {
        Finding::new(
            "service-decode",
            path,
            message,
            "fix the YAML so it decodes into Talos's service spec (`name`, `container`, `depends`, `restart`)",
        )
        .at_line(line)
    };
    let value = match first_document(bytes) {
        Ok(v) => v,
        Err(e) => {
            out.push(fail(
                format!("error loading extension service spec: {}", e.message),
                e.line,
            ));
            return None;
        }
    };

    let mut d = Decoder::default();
    let root = d.mapping(value.as_ref(), "(document)");
    let container = d.mapping(d.get(root, "container"), "container");
    let line = |n: Option<&YamlNode>| n.map_or(0, |n| n.line);
    let mut spec = Spec {
        name: d.string(d.get(root, "name"), "name"),
        entrypoint: d.string(d.get(container, "entrypoint"), "container.entrypoint"),
        environment: d.strings(d.get(container, "environment"), "container.environment"),
        args: d.strings(d.get(container, "args"), "container.args"),
        restart: d.get(root, "restart").map(|v| d.string(Some(v), "restart")),
        depends: Vec::new(),
        lines: Lines {
            name: line(d.get(root, "name")),
            restart: line(d.get(root, "restart")),
            entrypoint: line(d.get(container, "entrypoint")).max(line(container)),
        },
    };
    d.string(
        d.get(container, "environmentFile"),
        "container.environmentFile",
    );
    let mounts = d.seq(d.get(container, "mounts"), "container.mounts");
    let security = d.mapping(d.get(container, "security"), "container.security");
    for key in ["writeableRootfs", "writeableSysfs"] {
        d.bool(d.get(security, key), &format!("container.security.{key}"));
    }
    for key in ["maskedPaths", "readonlyPaths"] {
        d.strings(d.get(security, key), &format!("container.security.{key}"));
    }
    d.string(
        d.get(security, "rootfsPropagation"),
        "container.security.rootfsPropagation",
    );
    d.bool(d.get(root, "logToConsole"), "logToConsole");
    let mut maps = Vec::new();
    for (i, item) in mounts.into_iter().enumerate() {
        let field = format!("container.mounts[{i}]");
        maps.push((d.mapping(Some(item), &field), field, MOUNT_KEYS));
    }
    for (i, item) in d
        .seq(d.get(root, "depends"), "depends")
        .into_iter()
        .enumerate()
    {
        let field = format!("depends[{i}]");
        let m = d.mapping(Some(item), &field);
        spec.depends.push(Dependency {
            service: d.string(d.get(m, "service"), &format!("{field}.service")),
            path: d.string(d.get(m, "path"), &format!("{field}.path")),
            network: d.strings(d.get(m, "network"), &format!("{field}.network")),
            time: d.bool(d.get(m, "time"), &format!("{field}.time")),
            configuration: d.bool(d.get(m, "configuration"), &format!("{field}.configuration")),
            line: item.line,
        });
        maps.push((m, field, DEPENDENCY_KEYS));
    }
    if !d.errors.is_empty() {
        for e in d.errors {
            out.push(fail(
                format!("error loading extension service spec: {}", e.message),
                e.line,
            ));
        }
        return None;
    }
    unknown_keys(root, "", SPEC_KEYS, path, out);
    unknown_keys(container, "container", CONTAINER_KEYS, path, out);
    unknown_keys(security, "container.security", SECURITY_KEYS, path, out);
    for (m, field, known) in maps {
        unknown_keys(m, &field, known, path, out);
    }
    Some(spec)
}

/// A service file from an extension definition (before any image exists): decoded and checked
/// with Talos's `Spec.Validate` rules, every finding at its line of `path`.
pub fn check_definition(bytes: &[u8], path: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(spec) = decode_spec(bytes, path, &mut out) {
        validate_spec(&spec, path, &mut out);
    }
    out
}

/// The rules [`check_definition`] covers: what only the service file decides.
pub const DEFINITION_RULES: &[&str] = &[
    "service-decode",
    "service-name",
    "service-restart",
    "service-entrypoint-empty",
    "service-depends",
    "service-unknown-key",
];

fn name_valid(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// `Spec.Validate` plus the decode-time enum checks (contract §5.3).
fn validate_spec(spec: &Spec, path: &str, out: &mut Vec<Finding>) {
    if !name_valid(&spec.name) {
        out.push(
            Finding::new(
                "service-name",
                path,
                format!("name `{}` is invalid", spec.name),
                "use only lower-case letters, digits, `-` and `_` (`^[-_a-z0-9]+$`)",
            )
            .at_line(spec.lines.name),
        );
    }
    let restart_hint = "set `restart:` to `always`, `never` or `untilSuccess`";
    match spec.restart.as_deref() {
        None => out.push(
            Finding::new(
                "service-restart",
                path,
                "restart kind is invalid: RestartKind(0) (`restart` is missing)",
                restart_hint,
            )
            .at_line(spec.lines.name),
        ),
        Some(r) if !RESTART.contains(&r.to_lowercase().as_str()) => out.push(
            Finding::new(
                "service-restart",
                path,
                format!("`{r}` does not belong to RestartKind values"),
                restart_hint,
            )
            .at_line(spec.lines.restart),
        ),
        Some(_) => {}
    }
    if spec.entrypoint.is_empty() {
        out.push(
            Finding::new(
                "service-entrypoint-empty",
                path,
                "container endpoint can't be empty (`container.entrypoint`)",
                "set `container.entrypoint` to the program to run inside the container root",
            )
            .at_line(spec.lines.entrypoint),
        );
    }
    for (i, dep) in spec.depends.iter().enumerate() {
        let mut problem = |msg: String| {
            out.push(Finding::new(
                "service-depends",
                path,
                format!("`depends[{i}]`: {msg}"),
                "give each `depends` item exactly one of `service: <id>`, `path: /abs/path`, `network: [addresses|connectivity|hostname|etcfiles]`, `time: true`, `configuration: true`",
            )
            .at_line(dep.line))
        };
        for n in &dep.network {
            if !NETWORK.contains(&n.to_lowercase().as_str()) {
                problem(format!("`{n}` does not belong to Status values"));
            }
        }
        if !dep.path.is_empty() && !dep.path.starts_with('/') {
            problem(format!("path is not absolute: `{}`", dep.path));
        }
        let set = [
            !dep.service.is_empty(),
            !dep.path.is_empty(),
            !dep.network.is_empty(),
            dep.time,
            dep.configuration,
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if set == 0 {
            problem("no dependency specified".into());
        } else if set > 1 {
            problem("more than a single dependency is set".into());
        }
    }
}

/// The container root must exist (machined mounts an overlay on it before start) and the
/// entrypoint must resolve inside it to an executable file (contract §5.4).
fn check_container(tree: &Tree, spec: &Spec, path: &str, out: &mut Vec<Finding>) {
    let root_abs = format!("/usr/local/lib/containers/{}", spec.name);
    let root = match tree.resolve("rootfs", &root_abs) {
        Some(r) if tree.get(&r).is_some_and(Node::is_dir) => r,
        _ => {
            out.push(Finding::new(
                "service-container-root-missing",
                join(CONTAINERS, &spec.name),
                format!(
                    "service `{}` has no container root `{root_abs}`; the service fails before it starts",
                    spec.name
                ),
                format!("put the service's files (its root filesystem) under `rootfs{root_abs}/`"),
            ));
            return;
        }
    };
    let ep = spec.entrypoint.as_str();
    if ep.is_empty() {
        return;
    }
    let (found, searched) = if ep.contains('/') {
        (
            tree.resolve(&root, ep),
            format!("container root `{root_abs}`"),
        )
    } else {
        // A bare name is looked up in the container's PATH (the last PATH= entry wins).
        let path_var = spec
            .environment
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        let mut candidates = path_var
            .split(':')
            .filter(|d| !d.is_empty())
            .filter_map(|d| tree.resolve(&root, &format!("{d}/{ep}")))
            .collect::<Vec<_>>();
        let pick = candidates
            .iter()
            .position(|p| executable(tree.get(p)))
            .unwrap_or(0);
        let found = (!candidates.is_empty()).then(|| candidates.swap_remove(pick));
        (
            found,
            format!("the container's PATH `{path_var}` under `{root_abs}`"),
        )
    };
    match found {
        None => out.push(Finding::new(
            "service-entrypoint-missing",
            path,
            format!("entrypoint `{ep}` of service `{}` does not exist in {searched}", spec.name),
            format!(
                "ship the program at `rootfs{root_abs}/{}`, or fix `container.entrypoint` (it is resolved inside the container root)",
                ep.trim_start_matches("./").trim_start_matches('/')
            ),
        )),
        Some(p) if !executable(tree.get(&p)) => out.push(Finding::new(
            "service-entrypoint-not-executable",
            path,
            format!(
                "entrypoint `{ep}` of service `{}` resolves to `{}`, which is not an executable file",
                spec.name,
                on_node(&p)
            ),
            "make it a regular file with execute permission (`chmod 0755`)",
        )),
        Some(_) => {}
    }
}

fn executable(node: Option<&Node>) -> bool {
    matches!(
        node,
        Some(Node { kind: NodeKind::File { .. } | NodeKind::HardLink { .. }, mode }) if mode & 0o111 != 0
    )
}

/// Keys that name a secret, and values shaped like Tailscale / Headscale auth keys.
fn secret_key(key: &str) -> bool {
    let k = key.to_ascii_uppercase();
    [
        "PASSWORD", "PASSWD", "SECRET", "TOKEN", "AUTHKEY", "AUTH_KEY",
    ]
    .iter()
    .any(|p| k.contains(p))
}

fn secret_value(value: &str) -> bool {
    value.contains("tskey-") || value.contains("hskey-")
}

fn check_environment(spec: &Spec, path: &str, out: &mut Vec<Finding>) {
    let secret_hint = "remove it from the image and supply it on the node with an `ExtensionServiceConfig` document's `environment` (or an `environmentFile`); rotate the credential, it has been published with the image";
    for (i, entry) in spec.environment.iter().enumerate() {
        let Some((key, value)) = entry.split_once('=') else {
            out.push(Finding::new(
                "service-env-format",
                path,
                format!(
                    "`container.environment[{i}]` (`{entry}`) has no `=`; containerd treats it as unsetting the variable"
                ),
                "write environment entries as `KEY=value`",
            ));
            continue;
        };
        // A path to a file that holds the secret is not the secret itself.
        let points_at_file = ["_FILE", "_PATH", "_DIR"]
            .iter()
            .any(|s| key.to_ascii_uppercase().ends_with(s))
            && value.starts_with('/');
        if secret_value(value) || (secret_key(key) && !value.is_empty() && !points_at_file) {
            out.push(Finding::new(
                "service-secret",
                path,
                format!(
                    "`container.environment[{i}]` sets `{key}` to a literal secret baked into the image"
                ),
                secret_hint,
            ));
        }
    }
    for (i, arg) in spec.args.iter().enumerate() {
        if secret_value(arg) {
            out.push(Finding::new(
                "service-secret",
                path,
                format!("`container.args[{i}]` holds a literal auth key baked into the image"),
                secret_hint,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(files: &[(&str, &str)], extra: impl FnOnce(&mut Tree)) -> Vec<Finding> {
        let mut t = Tree::new();
        for (name, body) in files {
            t.insert(&join(SPECS, name), Node::inline(body.as_bytes(), 0o644));
        }
        extra(&mut t);
        let mut out = Vec::new();
        check(&t, &mut out);
        out
    }

    fn rules(f: &[Finding]) -> Vec<&'static str> {
        f.iter().map(|f| f.rule).collect()
    }

    const GOOD: &str = "name: hello\ncontainer:\n  entrypoint: ./hello\ndepends:\n  - network: [addresses]\nrestart: always\n";

    fn hello_root(t: &mut Tree) {
        t.insert(
            "rootfs/usr/local/lib/containers/hello/hello",
            Node::inline(&b"#!/bin/sh\n"[..], 0o755),
        );
    }

    #[test]
    fn good_spec_passes() {
        assert!(run(&[("hello.yaml", GOOD)], hello_root).is_empty());
    }

    #[test]
    fn talos_spec_rules() {
        let bad = "name: Hello\ncontainer:\n  entrypoint: ''\ndepends:\n  - service: cri\n    path: /x\n  - time: false\n  - path: run/x\n  - network: [internet]\nrestart: sometimes\nunknown: ignored\n";
        let f = run(&[("Hello.yaml", bad)], |_| {});
        assert_eq!(
            rules(&f),
            vec![
                "service-unknown-key",
                "service-name",
                "service-restart",
                "service-entrypoint-empty",
                "service-depends",
                "service-depends",
                "service-depends",
                "service-depends",
            ]
        );
        let f = &f[1..];
        let lines: Vec<Option<usize>> = f.iter().map(|f| f.line).collect();
        assert_eq!(lines, [1, 10, 3, 5, 7, 8, 9].map(Some).to_vec(), "{f:#?}");
        assert!(
            f[3].message.contains("more than a single dependency"),
            "{}",
            f[3].message
        );
        assert!(f[4].message.contains("no dependency specified"));
        assert!(f[5].message.contains("path is not absolute: `run/x`"));
        assert!(f[6]
            .message
            .contains("`internet` does not belong to Status values"));
        let missing = run(
            &[("x.yaml", "name: x\ncontainer: {entrypoint: /x}\n")],
            |_| {},
        );
        assert!(missing[0].message.contains("RestartKind(0)"));
    }

    #[test]
    fn ignored_keys_are_warned_with_the_key_meant() {
        let spec = "name: hello\ncontainer:\n  entrypoint: ./hello\n  security:\n    writableRootfs: true\n  mounts:\n    - {source: /a, destination: /a, type: bind, option: [rbind]}\ndepends:\n  - network: [addresses]\n    tme: true\nrestarts: always\nrestart: always\nfoo: 1\n";
        let f = run(&[("hello.yaml", spec)], hello_root);
        let got: Vec<(&str, Option<usize>, bool)> = f
            .iter()
            .map(|f| (f.rule, f.line, f.message.contains("did you mean")))
            .collect();
        assert_eq!(
            got,
            vec![
                ("service-unknown-key", Some(11), true),
                ("service-unknown-key", Some(13), false),
                ("service-unknown-key", Some(5), true),
                ("service-unknown-key", Some(7), true),
                ("service-unknown-key", Some(10), true),
            ],
            "{f:#?}"
        );
        assert!(f[0].message.contains("`restarts`") && f[0].message.contains("`restart`?"));
        assert!(
            f[2].message.contains("`container.security.writableRootfs`")
                && f[2].message.contains("`writeableRootfs`?")
        );
        assert!(f[3].message.contains("`options`?"), "{}", f[3].message);
        assert!(f
            .iter()
            .all(|f| f.severity == super::super::Severity::Warning));
    }

    #[test]
    fn scalars_are_read_as_talos_reads_them() {
        // A plain `0x10` is the service `0x10` (go-yaml keeps the text in a string field).
        let spec = GOOD.replace("name: hello", "name: 0x10");
        let f = run(&[("0x10.yaml", &spec)], |_| {});
        assert_eq!(rules(&f), vec!["service-container-root-missing"]);
        assert_eq!(f[0].path, "rootfs/usr/local/lib/containers/0x10");
    }

    #[test]
    fn restart_is_case_insensitive_and_yml_is_flagged() {
        let spec = GOOD.replace("always", "UntilSuccess");
        assert!(run(&[("hello.yaml", &spec)], hello_root).is_empty());
        assert_eq!(
            rules(&run(&[("hello.yml", GOOD)], hello_root)),
            vec!["service-yml"]
        );
    }

    #[test]
    fn type_errors_are_decode_errors() {
        let f = run(
            &[(
                "hello.yaml",
                "name: hello\ncontainer: [x]\nrestart: always\n",
            )],
            |_| {},
        );
        assert_eq!(rules(&f), vec!["service-decode"]);
        assert!(f[0].message.contains("`container` must be a mapping"));
    }

    #[test]
    fn duplicates_and_file_names() {
        let f = run(&[("a.yaml", GOOD), ("hello.yaml", GOOD)], hello_root);
        assert_eq!(rules(&f), vec!["service-file-name", "service-duplicate"]);
        assert_eq!(f[1].path, "rootfs/usr/local/etc/containers/hello.yaml");
    }

    #[test]
    fn container_root_and_entrypoint() {
        assert_eq!(
            rules(&run(&[("hello.yaml", GOOD)], |_| {})),
            vec!["service-container-root-missing"]
        );
        let f = run(&[("hello.yaml", GOOD)], |t| {
            t.insert(
                "rootfs/usr/local/lib/containers/hello/hello",
                Node::inline(&b"x"[..], 0o644),
            );
        });
        assert_eq!(rules(&f), vec!["service-entrypoint-not-executable"]);
        let f = run(&[("hello.yaml", GOOD)], |t| {
            t.insert(
                "rootfs/usr/local/lib/containers/hello/bin",
                Node::dir(0o755),
            );
        });
        assert_eq!(rules(&f), vec!["service-entrypoint-missing"]);
    }

    #[test]
    fn entrypoint_through_symlinks_and_path() {
        let spec = GOOD.replace("./hello", "/usr/local/bin/run");
        let f = run(&[("hello.yaml", &spec)], |t| {
            t.insert(
                "rootfs/usr/local/lib/containers/hello/app/run.sh",
                Node::inline(&b"#!/bin/sh\n"[..], 0o755),
            );
            t.insert(
                "rootfs/usr/local/lib/containers/hello/usr/local/bin/run",
                Node {
                    kind: NodeKind::Symlink {
                        target: "/app/run.sh".into(),
                    },
                    mode: 0o777,
                },
            );
        });
        assert!(f.is_empty(), "{f:?}");
        let bare = "name: hello\ncontainer:\n  entrypoint: hello\n  environment: [PATH=/opt/bin]\nrestart: always\n";
        let f = run(&[("hello.yaml", bare)], |t| {
            t.insert(
                "rootfs/usr/local/lib/containers/hello/opt/bin/hello",
                Node::inline(&b"x"[..], 0o755),
            );
        });
        assert!(f.is_empty(), "{f:?}");
        let f = run(&[("hello.yaml", bare)], hello_root);
        assert_eq!(rules(&f), vec!["service-entrypoint-missing"]);
    }

    #[test]
    fn environment_format_and_secrets_without_values() {
        let spec = GOOD.replace(
            "  entrypoint: ./hello\n",
            "  entrypoint: ./hello\n  environment:\n    - TS_AUTHKEY=tskey-auth-abc123\n    - NOEQUALS\n    - DB_PASSWORD=hunter2\n    - TS_ID_TOKEN_FILE=/var/run/token\n    - TS_EXTRA_ARGS=--login-server=x\n    - EMPTY_SECRET=\n    - OTHER=hskey-xyz\n  args: [\"--authkey=tskey-zzz\"]\n",
        );
        let f = run(&[("hello.yaml", &spec)], hello_root);
        assert_eq!(
            rules(&f),
            vec![
                "service-secret",
                "service-env-format",
                "service-secret",
                "service-secret",
                "service-secret"
            ]
        );
        for finding in &f {
            for secret in ["tskey-auth-abc123", "hunter2", "hskey-xyz", "tskey-zzz"] {
                assert!(!finding.message.contains(secret), "{}", finding.message);
                assert!(!finding.hint.contains(secret));
            }
        }
    }
}
