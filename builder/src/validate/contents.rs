//! What `rootfs/` may hold (contract §2.3, §3): the allowlist of the target release with its
//! plain-prefix match, entry types Talos's untar mishandles, the special paths the imager treats
//! apart (firmware, kernel modules under the target's kernel release, CRI config), and the notes a
//! loader left on the tree.

use super::{on_node, Finding};
use crate::release::extensions::ExtensionFacts;
use crate::rootfs::{base_name, parent, NodeKind, Tree};

/// Firmware trees the imager moves into the initramfs (`/lib/firmware` before v1.10).
const FIRMWARE: &[&str] = &["rootfs/usr/lib/firmware", "rootfs/lib/firmware"];
const CRI_CONF: &str = "rootfs/etc/cri/conf.d";

/// What every release checks the same way: entry types, paths below links, firmware symlinks and
/// CRI fragments. The allowlist and kernel modules are release facts ([`check_release`]).
pub(super) fn check(tree: &Tree, out: &mut Vec<Finding>) {
    for (path, node) in tree.below("rootfs") {
        let abs = on_node(path);
        // Loaders refuse over-long names; a payload grafted deep under `rootfs/` can still
        // exceed `PATH_MAX` on the node.
        if abs.len() >= crate::source::PATH_MAX {
            let shown = crate::rootfs::excerpt(path.as_bytes(), 96);
            out.push(Finding::new(
                "path-too-long",
                shown,
                format!(
                    "`{}` is {} bytes long on the node; Linux allows {}",
                    crate::rootfs::excerpt(abs.as_bytes(), 96),
                    abs.len(),
                    crate::source::PATH_MAX - 1
                ),
                "shorten the path, or graft the payload less deep",
            ));
        }
        // Loaders refuse entries below a non-directory; an assembled tree (a `files:` entry
        // below a payload symlink) is checked here, since Talos's untar would write through it.
        if let Some(up) = tree.get(parent(path)).filter(|n| !n.is_dir()) {
            let (rule, what) = match &up.kind {
                NodeKind::Symlink { target } => {
                    ("path-through-symlink", format!("a symlink to `{target}`"))
                }
                _ => ("path-below-file", "not a directory".to_string()),
            };
            out.push(Finding::new(
                rule,
                path.as_str(),
                format!(
                    "`{abs}` is below `{}`, which is {what}; unpacking it would write through it",
                    on_node(parent(path))
                ),
                "put the entry under a real directory",
            ));
        }
        match &node.kind {
            // validate.go never checks directories, so empty ones anywhere pass.
            NodeKind::Dir => continue,
            NodeKind::HardLink { target } => out.push(Finding::new(
                "hard-link",
                path.as_str(),
                format!(
                    "`{abs}` is a hard link to `{}`; Talos's untar turns hard links into empty files",
                    on_node(target)
                ),
                "store it as a regular file (or a symlink) instead of a hard link",
            )),
            NodeKind::Special(kind) => out.push(Finding::new(
                "special-file",
                path.as_str(),
                format!(
                    "special files are not allowed: `{abs}` is a {}",
                    kind.describe()
                ),
                "remove it; Talos unpacks devices, FIFOs and sockets as empty regular files and mounts extensions `nodev`",
            )),
            NodeKind::Symlink { target } => {
                if target.starts_with('/') && FIRMWARE.iter().any(|f| is_below(path, f)) {
                    out.push(Finding::new(
                        "firmware-absolute-symlink",
                        path.as_str(),
                        format!(
                            "firmware symlink `{abs}` points at the absolute path `{target}`, which the imager resolves on its own filesystem"
                        ),
                        "make the firmware symlink relative (for example `../vendor/file.bin`)",
                    ));
                }
            }
            NodeKind::File { .. } => {}
        }
        if is_below(path, CRI_CONF)
            && (parent(path) != CRI_CONF || !base_name(path).ends_with(".part"))
        {
            out.push(Finding::new(
                "cri-conf-ignored",
                path.as_str(),
                format!(
                    "`{abs}` is not a `*.part` file directly in `/etc/cri/conf.d`, so Talos does not merge it into the CRI config"
                ),
                "name CRI config fragments `/etc/cri/conf.d/<name>.part`",
            ));
        }
    }
}

/// The directories a container's `PATH` usually lists, in order (the Tailscale service's own).
const CONTAINER_PATH: [&str; 6] = [
    "usr/local/sbin",
    "usr/local/bin",
    "usr/sbin",
    "usr/bin",
    "sbin",
    "bin",
];

/// `iptables` and `ip6tables` found first on a container root's `PATH` that resolve to the legacy
/// backend (`xtables-legacy-multi` or a `*-legacy` name): kernels without legacy xtables (the
/// target's `legacy_xtables` fact, read from its kernel config) cannot run them, so the service
/// loses its firewall rules. A payload `links` entry repoints them at `xtables-nft-multi`.
fn check_legacy_iptables(tree: &Tree, facts: &ExtensionFacts, out: &mut Vec<Finding>) {
    let containers = "rootfs/usr/local/lib/containers";
    let roots: Vec<String> = tree
        .children(containers)
        .filter(|(_, n)| n.is_dir())
        .map(|(name, _)| format!("{containers}/{name}"))
        .collect();
    for root in roots {
        for tool in ["iptables", "ip6tables"] {
            let Some(found) = CONTAINER_PATH.iter().find_map(|dir| {
                let p = format!("{dir}/{tool}");
                tree.get(&format!("{root}/{p}")).map(|_| p)
            }) else {
                continue;
            };
            // Follow the links by hand, noting every name on the way.
            let mut names = vec![found.clone()];
            let mut rel = found.clone();
            for _ in 0..40 {
                let Some(crate::rootfs::NodeKind::Symlink { target }) =
                    tree.get(&format!("{root}/{rel}")).map(|n| &n.kind)
                else {
                    break;
                };
                rel = match target.strip_prefix('/') {
                    Some(abs) => abs.to_string(),
                    None => {
                        let dir = rel.rsplit_once('/').map_or("", |(d, _)| d);
                        crate::rootfs::clean_path(&format!("{dir}/{target}")).unwrap_or_default()
                    }
                };
                names.push(rel.clone());
            }
            if names.iter().any(|n| base_name(n).contains("legacy")) {
                out.push(Finding::new(
                    "iptables-legacy-backend",
                    format!("{root}/{found}"),
                    format!(
                        "`{tool}` on the container's PATH is the legacy backend (`{}`); Talos {} kernels have no legacy xtables",
                        names.join("` → `"),
                        facts.minor
                    ),
                    format!(
                        "point it at the nft backend with a payload link: `links: [{{path: /{found}, target: xtables-nft-multi}}]` ({})",
                        facts.legacy_xtables.source
                    ),
                ));
            }
        }
    }
}

/// The rules of one release (`facts`), for the Talos version `target` when one is given: the
/// allowlist (`pkg/machinery/extensions/extensions.go` of that release, matched as plain string
/// prefixes with no `/` boundary, contract §3.2) and the kernel modules tree, which the imager
/// copies from `<modules dir>/<kernel release of the target>` only
/// (`internal/pkg/extensions/kernel_modules.go`).
pub(super) fn check_release(
    tree: &Tree,
    facts: &ExtensionFacts,
    target: Option<&str>,
    out: &mut Vec<Finding>,
) {
    for (path, node) in tree.below("rootfs") {
        // validate.go never checks directories, so empty ones anywhere pass.
        if node.is_dir() {
            continue;
        }
        let abs = on_node(path);
        if !facts.allowed(&abs) {
            out.push(Finding::new(
                "path-not-allowed",
                path.as_str(),
                format!("path `{abs}` is not allowed in extensions"),
                allowlist_hint(facts, &abs),
            ));
        }
    }

    if !facts.legacy_xtables.value {
        check_legacy_iptables(tree, facts, out);
    }
    let modules = format!("rootfs{}", facts.modules_dir.value);
    if !tree.get(&modules).is_some_and(|n| n.is_dir()) {
        return;
    }
    let releases: Vec<&str> = tree
        .children(&modules)
        .filter(|(_, n)| n.is_dir())
        .map(|(p, _)| base_name(p))
        .collect();
    if releases.is_empty() {
        out.push(Finding::new(
            "modules-no-kernel-release",
            modules.as_str(),
            format!(
                "`{}` holds no kernel-release directory; the imager fails copying kernel modules",
                facts.modules_dir.value
            ),
            format!(
                "put modules under `{}/<kernel release of the target Talos>/` (e.g. `extras/x.ko`), or drop the empty directory",
                facts.modules_dir.value
            ),
        ));
        return;
    }
    let Some(target) = target else {
        return;
    };
    let have = releases
        .iter()
        .map(|r| format!("`{r}`"))
        .collect::<Vec<_>>()
        .join(", ");
    match facts.kernel_of(target) {
        Some(kernel) if !releases.contains(&kernel.release) => out.push(Finding::new(
            "modules-kernel-release",
            modules.as_str(),
            format!(
                "Talos `{target}` runs kernel `{}`, but `{}` holds modules for {have}; the imager fails copying kernel modules",
                kernel.release, facts.modules_dir.value
            ),
            format!(
                "build the modules against the kernel of the target and put them under `{}/{}/`",
                facts.modules_dir.value, kernel.release
            ),
        )),
        Some(_) => {}
        // Not this tag's kernel, but every known tag of the minor runs one kernel series (say
        // 6.18), and no module directory is for it: the modules cannot be for this kernel.
        None if series_of(facts).is_some_and(|series| {
            !releases
                .iter()
                .any(|r| r.starts_with(&format!("{series}.")))
        }) =>
        {
            let series = series_of(facts).unwrap_or_default();
            let kernels = facts.kernels.value;
            out.push(Finding::new(
                "modules-kernel-series",
                modules.as_str(),
                format!(
                    "every known tag of Talos {} ({} to {}) runs Linux {series}, but `{}` holds modules for {have}; the imager fails copying kernel modules",
                    facts.minor,
                    kernels[0].tag,
                    kernels[kernels.len() - 1].tag,
                    facts.modules_dir.value
                ),
                format!(
                    "build the modules against the Linux {series} kernel of the target (`uname -r` on it) and put them under `{}/<that release>/`",
                    facts.modules_dir.value
                ),
            ));
        }
        None => {
            let known = facts
                .kernels
                .value
                .iter()
                .map(|k| format!("{} `{}`", k.tag, k.release))
                .collect::<Vec<_>>();
            out.push(Finding::new(
                "modules-kernel-unknown",
                modules.as_str(),
                format!(
                    "the kernel release of Talos `{target}` is not in talext's table, so modules for {have} were not checked against it"
                ),
                format!(
                    "check `uname -r` on that release; known for {}: {}",
                    facts.minor,
                    known.join(", ")
                ),
            ));
        }
    }
}

/// The kernel series (`6.18`) every known tag of the release runs, if they all run one.
fn series_of(facts: &ExtensionFacts) -> Option<String> {
    let series = |release: &str| {
        let mut parts = release.split('.');
        Some(format!("{}.{}", parts.next()?, parts.next()?))
    };
    let mut all = facts.kernels.value.iter().map(|k| series(k.release));
    let first = all.next()??;
    all.all(|s| s.as_deref() == Some(first.as_str()))
        .then_some(first)
}

/// Where a path refused by this release may go instead: across the /usr merge (v1.10,
/// `/lib/firmware` to `/usr/lib/firmware` and so on) when the other side is allowed.
fn allowlist_hint(facts: &ExtensionFacts, abs: &str) -> String {
    for (old, new) in [
        ("/lib/firmware", "/usr/lib/firmware"),
        ("/lib/modules", "/usr/lib/modules"),
        (
            "/lib64/ld-linux-x86-64.so.2",
            "/usr/lib/ld-linux-x86-64.so.2",
        ),
        ("/sbin/ldconfig", "/usr/bin/ldconfig"),
    ] {
        for (from, to) in [(old, new), (new, old)] {
            if let Some(rest) = abs.strip_prefix(from) {
                let moved = format!("{to}{rest}");
                if facts.allowed(&moved) {
                    let side = if facts.minor < crate::release::Minor::new(1, 10) {
                        "before"
                    } else {
                        "from"
                    };
                    return format!(
                        "Talos {side} v1.10 takes this at `{moved}` (the /usr merge of v1.10 moved it); build one image per side of v1.10"
                    );
                }
            }
        }
    }
    "put files under a prefix the target release allows, such as `/usr/local` (binaries, services, container roots) or `/etc/cri/conf.d`".into()
}

/// Pass through what the loader noted (compressed or duplicate tarball entries, escapes...).
pub(super) fn check_notes(tree: &Tree, out: &mut Vec<Finding>) {
    for note in &tree.notes {
        out.push(Finding::new(
            note.rule,
            note.path.as_str(),
            note.message.as_str(),
            note_hint(note.rule),
        ));
    }
}

fn note_hint(rule: &str) -> &'static str {
    match rule {
        "tarball-compressed" => "give the imager an uncompressed tar (`crane export` output, or decompress it first)",
        "tarball-duplicate" => "write each path once; the imager's untar fails with `file exists` on the second",
        "tarball-whiteout" => "a plain tarball gets no whiteout processing, so the marker lands on the node as a file; remove it",
        "tarball-empty-path" => "remove the nameless entry; the imager fails with `empty tar header path`",
        "path-escape" => "keep every path and link target inside the image root",
        "path-through-symlink" => "store the entry under the symlink's target instead; a layer or tarball must never write through a link",
        "path-below-file" => "declare the parent as a directory (or remove the file that shadows it)",
        "path-too-long" => "shorten the name: Linux allows 255 bytes per component and 4095 per path",
        "name-not-unicode" => "rename the entry to UTF-8; talext does not change names' bytes",
        "sparse-entry" => "re-create the archive without sparse files (GNU tar without `--sparse`)",
        "layer-duplicate" => "write each path once per layer; tools disagree on which copy wins",
        "xattr-dropped" => "Talos keeps only `security.selinux`; file capabilities and other xattrs are lost, so do not rely on them",
        _ => "",
    }
}

fn is_below(path: &str, dir: &str) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::{Node, Special};

    fn v14() -> &'static ExtensionFacts {
        crate::release::extensions::of(crate::release::Minor::new(1, 14)).unwrap()
    }

    fn rules(tree: &Tree) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        check(tree, &mut out);
        check_release(tree, v14(), None, &mut out);
        out.into_iter().map(|f| (f.rule, f.path)).collect()
    }

    fn release_rules(tree: &Tree, minor: u16, target: &str) -> Vec<&'static str> {
        let facts = crate::release::extensions::of(crate::release::Minor::new(1, minor)).unwrap();
        let mut out = Vec::new();
        check_release(tree, facts, Some(target), &mut out);
        out.into_iter().map(|f| f.rule).collect()
    }

    #[test]
    fn allowlist_and_modules_follow_the_release() {
        let mut t = Tree::new();
        t.insert("rootfs/lib/firmware/x", Node::inline(&b"x"[..], 0o644));
        assert_eq!(release_rules(&t, 9, "v1.9.0"), Vec::<&str>::new());
        assert_eq!(release_rules(&t, 11, "v1.11.0"), vec!["path-not-allowed"]);
        let mut t = Tree::new();
        t.insert("rootfs/usr/lib/modules", Node::dir(0o755));
        t.insert("rootfs/usr/lib/modules/6.12.43-talos", Node::dir(0o755));
        t.insert(
            "rootfs/usr/lib/modules/6.12.43-talos/x.ko",
            Node::inline(&b"x"[..], 0o644),
        );
        assert_eq!(release_rules(&t, 11, "v1.11.0"), Vec::<&str>::new());
        assert_eq!(
            release_rules(&t, 11, "v1.11.1"),
            vec!["modules-kernel-release"]
        );
        assert_eq!(
            release_rules(&t, 11, "v1.11.99"),
            vec!["modules-kernel-unknown"]
        );
        assert_eq!(
            release_rules(&t, 14, "v1.14.0"),
            vec!["modules-kernel-series"],
            "v1.14 runs 6.18 on every known tag"
        );
        // Before the /usr merge the imager reads `/lib/modules`.
        let mut t = Tree::new();
        t.insert("rootfs/lib/modules", Node::dir(0o755));
        t.insert("rootfs/lib/modules/6.12.5-talos", Node::dir(0o755));
        t.insert(
            "rootfs/lib/modules/6.12.5-talos/x.ko",
            Node::inline(&b"x"[..], 0o644),
        );
        assert_eq!(release_rules(&t, 9, "v1.9.0"), Vec::<&str>::new());
        assert_eq!(
            release_rules(&t, 9, "v1.9.1"),
            vec!["modules-kernel-release"]
        );
    }

    #[test]
    fn prefix_quirk_and_directories() {
        assert!(v14().allowed("/usr/localfoo/x"));
        assert!(v14().allowed("/usr/bin/nvme-cli"));
        assert!(v14().allowed("/usr/lib/modulesX"));
        assert!(!v14().allowed("/etc/foo.conf"));
        assert!(!v14().allowed("/usr/lib64/a.so"));
        let mut t = Tree::new();
        t.insert("rootfs/etc/mydir", Node::dir(0o755));
        t.insert("rootfs/usr/local/bin/x", Node::inline(&b"x"[..], 0o777));
        t.insert("rootfs/etc/foo.conf", Node::inline(&b"x"[..], 0o644));
        assert_eq!(
            rules(&t),
            vec![("path-not-allowed", "rootfs/etc/foo.conf".into())]
        );
    }

    #[test]
    fn entries_below_a_symlink_or_file() {
        let mut t = Tree::new();
        t.insert(
            "rootfs/usr/local/l",
            Node {
                kind: NodeKind::Symlink {
                    target: "/etc".into(),
                },
                mode: 0o777,
            },
        );
        t.insert("rootfs/usr/local/l/x", Node::inline(&b"x"[..], 0o644));
        t.insert("rootfs/usr/local/f", Node::inline(&b"x"[..], 0o644));
        t.insert("rootfs/usr/local/f/y", Node::inline(&b"y"[..], 0o644));
        assert_eq!(
            rules(&t),
            vec![
                ("path-below-file", "rootfs/usr/local/f/y".into()),
                ("path-through-symlink", "rootfs/usr/local/l/x".into()),
            ]
        );
    }

    #[test]
    fn links_specials_firmware_modules_cri() {
        let mut t = Tree::new();
        let link = |target: &str| Node {
            kind: NodeKind::Symlink {
                target: target.into(),
            },
            mode: 0o777,
        };
        t.insert("rootfs/usr/local/bin/a", Node::inline(&b"x"[..], 0o755));
        t.insert(
            "rootfs/usr/local/bin/b",
            Node {
                kind: NodeKind::HardLink {
                    target: "rootfs/usr/local/bin/a".into(),
                },
                mode: 0o755,
            },
        );
        t.insert(
            "rootfs/usr/local/dev0",
            Node {
                kind: NodeKind::Special(Special::CharDevice),
                mode: 0o600,
            },
        );
        t.insert("rootfs/usr/lib/firmware/a.bin", link("/lib/firmware/b.bin"));
        t.insert("rootfs/usr/lib/firmware/c.bin", link("a.bin"));
        t.insert("rootfs/usr/lib/modules", Node::dir(0o755));
        t.insert(
            "rootfs/etc/cri/conf.d/20-x.part",
            Node::inline(&b"x"[..], 0o644),
        );
        t.insert(
            "rootfs/etc/cri/conf.d/x.toml",
            Node::inline(&b"x"[..], 0o644),
        );
        t.insert(
            "rootfs/etc/cri/conf.d/sub/y.part",
            Node::inline(&b"x"[..], 0o644),
        );
        let got = rules(&t);
        assert_eq!(
            got,
            vec![
                (
                    "cri-conf-ignored",
                    "rootfs/etc/cri/conf.d/sub/y.part".into()
                ),
                ("cri-conf-ignored", "rootfs/etc/cri/conf.d/x.toml".into()),
                (
                    "firmware-absolute-symlink",
                    "rootfs/usr/lib/firmware/a.bin".into()
                ),
                ("hard-link", "rootfs/usr/local/bin/b".into()),
                ("special-file", "rootfs/usr/local/dev0".into()),
                ("modules-no-kernel-release", "rootfs/usr/lib/modules".into()),
            ]
        );
    }
}
