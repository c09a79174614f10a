//! Load a directory on disk into a tree: symlinks are kept (never followed) with their target,
//! regular files stay on disk, devices, FIFOs and sockets become [`NodeKind::Special`]. Hard
//! links on disk are ordinary files here: only a tar archive can carry a hard link entry.
//! Entries are read in byte order of their names, so the result is deterministic.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, IoContext, Result};
use crate::rootfs::{escape, excerpt, join, Content, Node, NodeKind, Special, Tree};

/// Read the tree rooted at `path` (the root itself is not an entry).
pub fn load(path: &Path) -> Result<Tree> {
    let meta = fs::metadata(path).at("reading", path)?;
    if !meta.is_dir() {
        return Err(Error::input(format!(
            "`{}` is not a directory",
            path.display()
        )));
    }
    let mut tree = Tree::new();
    walk(path, "", &mut tree)?;
    Ok(tree)
}

fn walk(dir: &Path, rel: &str, tree: &mut Tree) -> Result<()> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).at("listing", dir)? {
        let entry = entry.at("listing", dir)?;
        // Trees are UTF-8: a name that is not is refused, never converted lossily (two names
        // could become one).
        let name = entry.file_name().into_string().map_err(|raw| {
            Error::input(format!(
                "`{}/{}` has a name that is not UTF-8",
                escape(&dir.display().to_string()),
                excerpt(raw.as_bytes(), 96)
            ))
        })?;
        names.push(name);
    }
    names.sort();
    for name in names {
        let full = dir.join(&name);
        let tree_path = join(rel, &name);
        let meta = fs::symlink_metadata(&full).at("reading", &full)?;
        let ft = meta.file_type();
        let mode = meta.permissions().mode() & 0o7777;
        let kind = if ft.is_dir() {
            NodeKind::Dir
        } else if ft.is_symlink() {
            let target = fs::read_link(&full).at("reading link", &full)?;
            let target = target.into_os_string().into_string().map_err(|raw| {
                Error::input(format!(
                    "symlink `{}` has a target that is not UTF-8: `{}`",
                    escape(&full.display().to_string()),
                    excerpt(raw.as_bytes(), 96)
                ))
            })?;
            NodeKind::Symlink { target }
        } else if ft.is_file() {
            NodeKind::File {
                content: Content::Disk(crate::rootfs::DiskFile::new(full.as_path())),
                size: meta.len(),
            }
        } else if ft.is_fifo() {
            NodeKind::Special(Special::Fifo)
        } else if ft.is_socket() {
            NodeKind::Special(Special::Socket)
        } else if ft.is_char_device() {
            NodeKind::Special(Special::CharDevice)
        } else if ft.is_block_device() {
            NodeKind::Special(Special::BlockDevice)
        } else {
            return Err(Error::input(format!(
                "`{}` has a file type talext does not know",
                full.display()
            )));
        };
        let is_dir = matches!(kind, NodeKind::Dir);
        tree.insert(&tree_path, Node { kind, mode });
        if is_dir {
            walk(&full, &tree_path, tree)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn loads_files_links_dirs_and_specials() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::create_dir_all(root.join("rootfs/usr/local/bin")).unwrap();
        fs::create_dir_all(root.join("rootfs/etc/empty")).unwrap();
        fs::write(root.join("manifest.yaml"), "version: v1alpha1\n").unwrap();
        let bin = root.join("rootfs/usr/local/bin/a");
        fs::write(&bin, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o4755)).unwrap();
        fs::hard_link(&bin, root.join("rootfs/usr/local/bin/b")).unwrap();
        symlink("/bin/busybox", root.join("rootfs/usr/local/bin/sh")).unwrap();
        let _sock = std::os::unix::net::UnixListener::bind(root.join("rootfs/sock")).unwrap();

        let t = load(root).unwrap();
        let paths: Vec<&str> = t.entries.keys().map(String::as_str).collect();
        assert_eq!(
            paths,
            vec![
                "manifest.yaml",
                "rootfs",
                "rootfs/etc",
                "rootfs/etc/empty",
                "rootfs/sock",
                "rootfs/usr",
                "rootfs/usr/local",
                "rootfs/usr/local/bin",
                "rootfs/usr/local/bin/a",
                "rootfs/usr/local/bin/b",
                "rootfs/usr/local/bin/sh",
            ]
        );
        let a = t.get("rootfs/usr/local/bin/a").unwrap();
        assert_eq!(a.mode, 0o4755);
        assert!(a.is_file());
        assert!(t.get("rootfs/usr/local/bin/b").unwrap().is_file());
        assert!(matches!(
            &t.get("rootfs/usr/local/bin/sh").unwrap().kind,
            NodeKind::Symlink { target } if target == "/bin/busybox"
        ));
        assert!(matches!(
            t.get("rootfs/sock").unwrap().kind,
            NodeKind::Special(Special::Socket)
        ));
        assert_eq!(
            t.read_all("rootfs/usr/local/bin/b").unwrap(),
            b"#!/bin/sh\n"
        );
    }

    #[test]
    fn errors_name_the_path() {
        let err = load(Path::new("/nonexistent/talext-dir")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/talext-dir"), "{err}");
    }
}
