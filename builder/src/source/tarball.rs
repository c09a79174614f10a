//! Load a plain filesystem tarball (what the imager's `tarballPath` takes, contract §2.1: a
//! `crane export` of an extension image, root holding `manifest.yaml` and `rootfs/`) into a
//! tree. What the imager would trip over is kept as a [`LoadNote`] rather than an error, so
//! validation can report it next to every other finding: compression (the imager reads only a
//! plain tar, but talext decompresses gzip and zstd so the other rules still run), duplicate
//! paths (`file exists`), entries escaping the root, whiteout files (no whiteout processing for
//! tarballs) and extended attributes Talos drops. Regular files are extracted to a staging
//! directory, so memory use does not grow with the archive.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::ops::Deref;
use std::path::Path;

use tar::EntryType;
use tempfile::TempDir;

use crate::error::{Error, IoContext, Result};
use crate::rootfs::{
    base_name, classify_path, escape, excerpt, Cleaned, Content, LoadNote, Node, NodeKind, Special,
    Tree,
};

/// A tree together with the staging directory its file contents live in; the directory is
/// removed when this is dropped, so keep it alive as long as the tree is read.
#[derive(Debug)]
pub struct LoadedTree {
    pub tree: Tree,
    staging: Option<TempDir>,
}

impl LoadedTree {
    /// A tree whose contents need no staging (a directory on disk, inline bytes).
    pub fn plain(tree: Tree) -> Self {
        LoadedTree {
            tree,
            staging: None,
        }
    }

    /// A tree whose `Content::Disk` files live in `staging`.
    pub fn staged(tree: Tree, staging: TempDir) -> Self {
        LoadedTree {
            tree,
            staging: Some(staging),
        }
    }

    pub fn staging_dir(&self) -> Option<&Path> {
        self.staging.as_ref().map(TempDir::path)
    }

    /// The tree and the directory its files are staged in (kept alive as long as the tree).
    pub fn into_parts(self) -> (Tree, Option<TempDir>) {
        (self.tree, self.staging)
    }
}

impl Deref for LoadedTree {
    type Target = Tree;
    fn deref(&self) -> &Tree {
        &self.tree
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Zstd,
}

/// A compressed stream read whole: gzip, zstd, xz or none, by its magic bytes (`what` names it
/// in errors).
pub(crate) fn decompress<'a>(
    mut r: impl io::BufRead + 'a,
    what: &Path,
) -> Result<Box<dyn Read + 'a>> {
    let magic = r.fill_buf().at("reading", what)?;
    Ok(if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(r))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(r).at("reading", what)?)
    } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(r))
    } else if magic.starts_with(b"BZh") {
        return Err(Error::input(format!(
            "`{}` is bzip2 compressed, which is not read; recompress it with gzip, zstd or xz",
            what.display()
        )));
    } else {
        Box::new(r)
    })
}

/// A tarball as a build source (`tar:FILE`): plain, gzip, zstd or xz compressed, read as the
/// loader reads every tree (paths cleaned, escapes and links checked).
pub fn load_source(path: &Path) -> Result<LoadedTree> {
    let file = BufReader::new(File::open(path).at("opening", path)?);
    let reader = decompress(file, path)?;
    let staging = crate::store::scratch::dir("tar")?;
    let mut tree = Tree::new();
    read_entries(reader, path, staging.path(), &mut tree)?;
    Ok(LoadedTree::staged(tree, staging))
}

/// Read the tarball at `path`.
pub fn load(path: &Path) -> Result<LoadedTree> {
    let mut file = File::open(path).at("opening", path)?;
    let mut magic = [0u8; 6];
    let n = read_up_to(&mut file, &mut magic).at("reading", path)?;
    let magic = &magic[..n];
    let compression = if magic.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) || magic.starts_with(b"BZh") {
        return Err(Error::input_hint(
            format!("`{}` is xz or bzip2 compressed", path.display()),
            "the imager's `tarballPath` takes a plain, uncompressed tar (`crane export` output); decompress it first",
        ));
    } else {
        Compression::None
    };
    drop(file);
    let file = BufReader::new(File::open(path).at("opening", path)?);
    let reader: Box<dyn Read> = match compression {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(file)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(file).at("reading", path)?),
    };

    let staging = crate::store::scratch::dir("tar")?;
    let mut tree = Tree::new();
    if compression != Compression::None {
        let kind = if compression == Compression::Gzip {
            "gzip"
        } else {
            "zstd"
        };
        tree.notes.push(LoadNote {
            rule: "tarball-compressed",
            path: ".".into(),
            message: format!(
                "`{}` is {kind}-compressed; the imager's `tarballPath` reads only a plain tar (`archive/tar: invalid tar header`)",
                path.display()
            ),
        });
    }
    read_entries(reader, path, staging.path(), &mut tree)?;
    Ok(LoadedTree::staged(tree, staging))
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn note(tree: &mut Tree, rule: &'static str, path: &str, message: String) {
    tree.notes.push(LoadNote {
        rule,
        path: path.to_string(),
        message,
    });
}

pub(crate) fn read_entries(
    reader: impl Read,
    src: &Path,
    staging: &Path,
    tree: &mut Tree,
) -> Result<()> {
    let what = format!("`{}`", src.display());
    let bad = |e: io::Error| super::read_failure(&what, e);
    let mut archive = tar::Archive::new(super::Bounded::new(reader));
    let mut staged = 0u64;
    // Directories the tarball declares (the others were created for entries below them).
    let mut declared_dirs: HashSet<String> = HashSet::new();
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let header = entry.header();
        let etype = header.entry_type();
        if matches!(
            etype,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            continue;
        }
        let mode = header.mode().map_err(bad)? & 0o7777;
        let raw_bytes = entry.path_bytes().into_owned();
        let raw = match super::tar_name(&raw_bytes, "tar entry") {
            Ok(s) => s.to_string(),
            Err((rule, msg)) => {
                note(tree, rule, &excerpt(&raw_bytes, 96), msg);
                continue;
            }
        };
        if raw.is_empty() {
            note(
                tree,
                "tarball-empty-path",
                ".",
                "a tar entry has an empty name; the imager fails with `empty tar header path`"
                    .into(),
            );
            continue;
        }
        // Only links have a target; other entries' link field is ignored, as Talos does.
        let is_link = matches!(etype, EntryType::Symlink | EntryType::Link);
        let link = match entry.link_name_bytes().filter(|_| is_link) {
            None => None,
            Some(b) => match super::tar_name(&b, &format!("link target of `{raw}`")) {
                Ok(s) => Some(s.to_string()),
                Err((rule, msg)) => {
                    note(tree, rule, &raw, msg);
                    continue;
                }
            },
        };
        if super::is_sparse(&mut entry).map_err(bad)? {
            note(
                tree,
                "sparse-entry",
                &raw,
                format!("`{raw}` is a sparse file; talext refuses sparse entries rather than expand them"),
            );
            continue;
        }
        let path = match classify_path(&raw) {
            Cleaned::Root if etype == EntryType::Directory => continue, // the root itself (`./`)
            Cleaned::Root => {
                note(
                    tree,
                    "path-escape",
                    &raw,
                    format!("tar entry `{raw}` names the image root but is not a directory"),
                );
                continue;
            }
            Cleaned::Escapes => {
                note(
                    tree,
                    "path-escape",
                    &raw,
                    format!("tar entry `{raw}` escapes the image root"),
                );
                continue;
            }
            Cleaned::Path(p) => p,
        };
        // The imager's untar creates a file below a symlink through it (`pkg/archiver/untar.go`,
        // Talos v1.12.0), so an entry below a symlink or a file of the tarball is refused.
        if let Some((anc, node)) =
            ancestors(&path).find_map(|a| tree.get(a).filter(|n| !n.is_dir()).map(|n| (a, n)))
        {
            let (rule, msg) = match &node.kind {
                NodeKind::Symlink { target } => (
                    "path-through-symlink",
                    format!("`{path}` is written below `{anc}`, a symlink to `{target}`; the imager's untar would write through the link"),
                ),
                _ => (
                    "path-below-file",
                    format!("`{path}` is written below `{anc}`, which is not a directory"),
                ),
            };
            note(tree, rule, &path, msg);
            continue;
        }

        if let Some(pax) = entry.pax_extensions().map_err(bad)? {
            for ext in pax.flatten() {
                let key = ext.key().unwrap_or_default();
                let attr = key
                    .strip_prefix("SCHILY.xattr.")
                    .or_else(|| key.strip_prefix("LIBARCHIVE.xattr."));
                if let Some(attr) = attr {
                    if attr != "security.selinux" {
                        note(
                            tree,
                            "xattr-dropped",
                            &path,
                            format!("extended attribute `{attr}` on `{path}` is dropped when Talos unpacks the image"),
                        );
                    }
                }
            }
        }

        let kind = match etype {
            EntryType::Directory => NodeKind::Dir,
            EntryType::Symlink => NodeKind::Symlink {
                target: link.unwrap_or_default(),
            },
            EntryType::Link => {
                let target = link.unwrap_or_default();
                match classify_path(&target) {
                    Cleaned::Path(t) if !target.starts_with('/') => {
                        NodeKind::HardLink { target: t }
                    }
                    _ => {
                        note(
                            tree,
                            "path-escape",
                            &path,
                            format!(
                                "hard link `{path}` points at `{target}`, outside the image root (hard link targets are relative to it)"
                            ),
                        );
                        continue;
                    }
                }
            }
            EntryType::Char => NodeKind::Special(Special::CharDevice),
            EntryType::Block => NodeKind::Special(Special::BlockDevice),
            EntryType::Fifo => NodeKind::Special(Special::Fifo),
            EntryType::Regular | EntryType::Continuous => {
                // Contents go to the staging directory; a duplicate is staged too, then dropped.
                staged += 1;
                let file = staging.join(format!("{staged:08}"));
                let declared = entry.size();
                let size = super::stage(&mut entry, &file, declared, &what)?;
                NodeKind::File {
                    content: Content::Disk(crate::rootfs::DiskFile::new(file)),
                    size,
                }
            }
            other => {
                return Err(Error::input(format!(
                    "tar entry `{}` in `{}` has type {other:?}, which talext cannot load",
                    escape(&raw),
                    src.display()
                )))
            }
        };

        if base_name(&path).starts_with(".wh.") {
            note(
                tree,
                "tarball-whiteout",
                &path,
                format!("`{path}` is a whiteout marker; a plain tarball gets no whiteout processing, so it is unpacked as a file"),
            );
        }

        let new_is_dir = matches!(kind, NodeKind::Dir);
        match tree.entries.get_mut(&path) {
            // Directories are created with MkdirAll: seeing one twice is harmless.
            Some(existing) if existing.is_dir() && new_is_dir => existing.mode = mode,
            // Earlier entries were written below a directory nobody declared, which this entry
            // now makes a symlink or a file: unpacked in order, they went through it.
            Some(existing) if existing.is_dir() && !declared_dirs.contains(&path) => {
                let below = tree
                    .below(&path)
                    .next()
                    .map(|(k, _)| k.clone())
                    .unwrap_or_default();
                let (rule, made) = match &kind {
                    NodeKind::Symlink { target } => {
                        ("path-through-symlink", format!("a symlink to `{target}`"))
                    }
                    _ => ("path-below-file", "not a directory".to_string()),
                };
                note(
                    tree,
                    rule,
                    &below,
                    format!("`{below}` is written below `{path}`, which a later entry makes {made}"),
                );
            }
            Some(_) => note(
                tree,
                "tarball-duplicate",
                &path,
                format!("`{path}` appears more than once in the tarball; the imager's untar fails with `file exists`"),
            ),
            None => tree.insert(&path, Node { kind, mode }),
        }
        if new_is_dir {
            declared_dirs.insert(path);
        }
    }
    Ok(())
}

/// Every proper ancestor of a clean path, nearest the root first (`a`, `a/b` for `a/b/c`).
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: EntryType, size: u64, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h
    }

    fn build(dir: &Path, name: &str, compress: Option<&str>) -> std::path::PathBuf {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |h: &mut tar::Header, path: &str, data: &[u8]| {
            b.append_data(h, path, data).unwrap();
        };
        add(
            &mut header(EntryType::Regular, 4, 0o644),
            "manifest.yaml",
            b"x: 1",
        );
        add(&mut header(EntryType::Directory, 0, 0o755), "rootfs/", b"");
        add(
            &mut header(EntryType::Regular, 4, 0o755),
            "rootfs/usr/local/bin/a",
            b"abcd",
        );
        add(
            &mut header(EntryType::Regular, 1, 0o755),
            "rootfs/usr/local/bin/a",
            b"z",
        );
        add(&mut header(EntryType::Directory, 0, 0o700), "rootfs/", b"");
        add(
            &mut header(EntryType::Fifo, 0, 0o644),
            "rootfs/usr/local/fifo",
            b"",
        );
        add(
            &mut header(EntryType::Regular, 0, 0o644),
            "rootfs/usr/local/.wh.old",
            b"",
        );
        let mut link = header(EntryType::Link, 0, 0o755);
        b.append_link(
            &mut link,
            "rootfs/usr/local/bin/b",
            "rootfs/usr/local/bin/a",
        )
        .unwrap();
        let mut sym = header(EntryType::Symlink, 0, 0o777);
        b.append_link(&mut sym, "rootfs/usr/local/bin/sh", "/bin/busybox")
            .unwrap();
        // `append_data` refuses `..`, so write the name into the header by hand.
        let mut esc = header(EntryType::Regular, 0, 0o644);
        esc.as_old_mut().name[..9].copy_from_slice(b"../escape");
        esc.set_cksum();
        b.append(&esc, &b""[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        let bytes = match compress {
            Some("gzip") => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                io::Write::write_all(&mut e, &bytes).unwrap();
                e.finish().unwrap()
            }
            Some("zstd") => zstd::encode_all(&bytes[..], 1).unwrap(),
            _ => bytes,
        };
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn loads_entries_and_notes_traps() {
        let tmp = tempfile::tempdir().unwrap();
        let t = load(&build(tmp.path(), "x.tar", None)).unwrap();
        let rules: Vec<(&str, &str)> = t.notes.iter().map(|n| (n.rule, n.path.as_str())).collect();
        assert_eq!(
            rules,
            vec![
                ("tarball-duplicate", "rootfs/usr/local/bin/a"),
                ("tarball-whiteout", "rootfs/usr/local/.wh.old"),
                ("path-escape", "../escape"),
            ]
        );
        assert_eq!(t.read_all("rootfs/usr/local/bin/a").unwrap(), b"abcd");
        assert_eq!(t.get("rootfs").unwrap().mode, 0o700);
        assert!(matches!(
            &t.get("rootfs/usr/local/bin/b").unwrap().kind,
            NodeKind::HardLink { target } if target == "rootfs/usr/local/bin/a"
        ));
        assert!(matches!(
            t.get("rootfs/usr/local/fifo").unwrap().kind,
            NodeKind::Special(Special::Fifo)
        ));
        assert!(matches!(
            &t.get("rootfs/usr/local/bin/sh").unwrap().kind,
            NodeKind::Symlink { target } if target == "/bin/busybox"
        ));
        let staged = t.staging_dir().unwrap().to_path_buf();
        assert!(staged.exists());
        drop(t);
        assert!(!staged.exists());
    }

    #[test]
    fn compressed_tarballs_load_with_a_note() {
        let tmp = tempfile::tempdir().unwrap();
        for c in ["gzip", "zstd"] {
            let t = load(&build(tmp.path(), c, Some(c))).unwrap();
            assert_eq!(t.notes[0].rule, "tarball-compressed");
            assert!(t.notes[0].message.contains(c));
            assert_eq!(t.read_all("manifest.yaml").unwrap(), b"x: 1");
        }
    }

    #[test]
    fn xattrs_other_than_selinux_are_noted() {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([
            ("SCHILY.xattr.security.capability", &b"\x01"[..]),
            ("SCHILY.xattr.security.selinux", &b"system_u"[..]),
        ])
        .unwrap();
        b.append_data(
            &mut header(EntryType::Regular, 1, 0o755),
            "rootfs/usr/local/bin/ping",
            &b"x"[..],
        )
        .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("x.tar");
        std::fs::write(&p, b.into_inner().unwrap()).unwrap();
        let t = load(&p).unwrap();
        assert_eq!(t.notes.len(), 1);
        assert_eq!(t.notes[0].rule, "xattr-dropped");
        assert!(t.notes[0].message.contains("security.capability"));
    }

    #[test]
    fn garbage_is_an_error_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("junk.tar");
        std::fs::write(&p, vec![7u8; 1024]).unwrap();
        let err = load(&p).unwrap_err();
        assert!(err.to_string().contains("junk.tar"), "{err}");
    }
}
