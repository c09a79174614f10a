//! What `rootfs/` may hold (contract §2.3, §3): Talos's allowlist with its plain-prefix match,
//! entry types Talos's untar mishandles, the special paths the imager treats apart (firmware,
//! kernel modules, CRI config), and the notes a loader left on the tree.

use super::{on_node, Finding};
use crate::rootfs::{base_name, parent, NodeKind, Tree};

/// `pkg/machinery/extensions/extensions.go` at Talos v1.14 (and the extensions validator at
/// `84cecb0`). Matched as plain string prefixes with no `/` boundary (contract §3.2).
const ALLOWED: &[&str] = &[
    "/etc/cri/conf.d",
    "/usr/lib/firmware",
    "/usr/lib/modules",
    "/usr/lib/ld-linux-x86-64.so.2",
    "/usr/lib/ld-linux-aarch64.so.1",
    "/usr/bin/ldconfig",
    "/etc/ld.so.conf",
    "/etc/ld.so.cache",
    "/usr/bin/nvidia-modprobe",
    "/usr/bin/nvidia-pcc",
    "/usr/bin/nvidia-smi",
    "/usr/bin/nvidia-ctk",
    "/usr/bin/nvidia-cdi-hook",
    "/usr/bin/nvme",
    "/usr/lib/udev/rules.d",
    "/usr/local",
    "/usr/share/glvnd",
    "/usr/share/egl",
    "/etc/vulkan",
];

/// Firmware trees the imager moves into the initramfs (`/lib/firmware` before v1.10).
const FIRMWARE: &[&str] = &["rootfs/usr/lib/firmware", "rootfs/lib/firmware"];
/// Module trees the imager runs depmod over (`/lib/modules` before v1.10).
const MODULES: &[&str] = &["rootfs/usr/lib/modules", "rootfs/lib/modules"];
const CRI_CONF: &str = "rootfs/etc/cri/conf.d";

/// Whether Talos's content walk accepts a non-directory at `abs` (a path starting with `/`).
pub(super) fn allowed(abs: &str) -> bool {
    ALLOWED.iter().any(|p| abs.starts_with(p))
}

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
        if !allowed(&abs) {
            out.push(Finding::new(
                "path-not-allowed",
                path.as_str(),
                format!("path `{abs}` is not allowed in extensions"),
                "put files under an allowed prefix: `/usr/local` (binaries, services, container roots), `/usr/lib/firmware`, `/usr/lib/modules`, `/usr/lib/udev/rules.d`, `/etc/cri/conf.d`, ...",
            ));
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

    // The imager copies `usr/lib/modules/<kver>/` for the target's one kernel release; without
    // such a directory the build fails (contract §3.4).
    for m in MODULES {
        if tree.get(m).is_some_and(|n| n.is_dir()) && !tree.children(m).any(|(_, n)| n.is_dir()) {
            out.push(Finding::new(
                "modules-no-kernel-release",
                *m,
                format!(
                    "`{}` holds no kernel-release directory; the imager fails copying kernel modules",
                    on_node(m)
                ),
                "put modules under `/usr/lib/modules/<kernel release of the target Talos>/` (e.g. `extras/x.ko`), or drop the empty directory",
            ));
        }
    }
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

    fn rules(tree: &Tree) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        check(tree, &mut out);
        out.into_iter().map(|f| (f.rule, f.path)).collect()
    }

    #[test]
    fn prefix_quirk_and_directories() {
        assert!(allowed("/usr/localfoo/x"));
        assert!(allowed("/usr/bin/nvme-cli"));
        assert!(allowed("/usr/lib/modulesX"));
        assert!(!allowed("/etc/foo.conf"));
        assert!(!allowed("/usr/lib64/a.so"));
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
