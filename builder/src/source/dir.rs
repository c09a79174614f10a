//! Load a directory on disk into a tree.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::error::{Error, IoContext, Result};
use crate::rootfs::{Content, Node, NodeKind, Special, Tree};

/// Walk `root` without following symlinks.
pub fn load(root: &Path) -> Result<Tree> {
    let mut tree = Tree::new();
    walk(root, root, &mut tree)?;
    Ok(tree)
}

fn walk(root: &Path, dir: &Path, tree: &mut Tree) -> Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .at("reading", dir)?
        .collect::<std::io::Result<Vec<_>>>()
        .at("reading", dir)?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let rel = path
            .strip_prefix(root)
            .map_err(|_| Error::internal("walk left its root"))?
            .to_str()
            .ok_or_else(|| Error::input(format!("`{}` is not valid UTF-8", path.display())))?
            .to_string();
        let md = fs::symlink_metadata(&path).at("reading", &path)?;
        let ft = md.file_type();
        let mode = md.mode() & 0o7777;
        let kind = if ft.is_dir() {
            NodeKind::Dir
        } else if ft.is_file() {
            NodeKind::File {
                content: Content::Disk(path.clone()),
                size: md.len(),
            }
        } else if ft.is_symlink() {
            let t = fs::read_link(&path).at("reading", &path)?;
            NodeKind::Symlink {
                target: t.to_string_lossy().into_owned(),
            }
        } else if ft.is_char_device() {
            NodeKind::Special(Special::CharDevice)
        } else if ft.is_block_device() {
            NodeKind::Special(Special::BlockDevice)
        } else if ft.is_fifo() {
            NodeKind::Special(Special::Fifo)
        } else {
            NodeKind::Special(Special::Socket)
        };
        let is_dir = ft.is_dir();
        tree.insert(&rel, Node { kind, mode });
        if is_dir {
            walk(root, &path, tree)?;
        }
    }
    Ok(())
}
