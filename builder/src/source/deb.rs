//! A Debian package as a build source (`deb:FILE`): its files, the `data.tar` member of the
//! `ar` archive (deb(5): `debian-binary`, `control.tar.*`, `data.tar[.gz|.xz|.zst]`), read as
//! any tarball source is. Maintainer scripts and the control archive are not run or used.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use super::tarball::{decompress, read_entries, LoadedTree};
use crate::error::{Error, IoContext, Result};
use crate::rootfs::Tree;

const AR_MAGIC: &[u8] = b"!<arch>\n";

/// Load the files of the package at `path`.
pub fn load(path: &Path) -> Result<LoadedTree> {
    let mut file = BufReader::new(File::open(path).at("opening", path)?);
    let mut magic = [0u8; 8];
    file.read_exact(&mut magic).map_err(|_| {
        Error::input(format!(
            "`{}` is not a Debian package (too short)",
            path.display()
        ))
    })?;
    if magic != AR_MAGIC {
        return Err(Error::input_hint(
            format!(
                "`{}` is not a Debian package (no `ar` archive header)",
                path.display()
            ),
            "give a `.deb` file, as `apt-get download` writes it",
        ));
    }
    loop {
        let mut header = [0u8; 60];
        match file.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(Error::input(format!(
                    "`{}` holds no `data.tar` member",
                    path.display()
                )))
            }
            Err(e) => return Err(e).at("reading", path),
        }
        if &header[58..60] != b"`\n" {
            return Err(Error::input(format!(
                "`{}`: a damaged `ar` member header",
                path.display()
            )));
        }
        let name = String::from_utf8_lossy(&header[..16])
            .trim_end()
            .trim_end_matches('/')
            .to_string();
        let size: u64 = String::from_utf8_lossy(&header[48..58])
            .trim()
            .parse()
            .map_err(|_| {
                Error::input(format!("`{}`: member `{name}` has no size", path.display()))
            })?;
        if name.starts_with("data.tar") {
            let member = std::io::Read::take(&mut file, size);
            let reader = decompress(BufReader::new(member), path)?;
            let staging = crate::store::scratch::dir("deb")?;
            let mut tree = Tree::new();
            read_entries(reader, path, staging.path(), &mut tree)?;
            return Ok(LoadedTree::staged(tree, staging));
        }
        // Members are padded to an even size.
        let skip = size + (size % 2);
        std::io::copy(
            &mut std::io::Read::take(&mut file, skip),
            &mut std::io::sink(),
        )
        .at("reading", path)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, data: &[u8]) -> Vec<u8> {
        let mut h = format!(
            "{name:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            0,
            0,
            0,
            100644,
            data.len()
        )
        .into_bytes();
        h.extend_from_slice(data);
        if data.len() % 2 == 1 {
            h.push(b'\n');
        }
        h
    }

    #[test]
    fn what_is_not_a_package_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.deb");
        std::fs::write(&p, b"not an archive at all").unwrap();
        assert!(load(&p)
            .unwrap_err()
            .to_string()
            .contains("not a Debian package"));
        let mut ar = AR_MAGIC.to_vec();
        ar.extend(member("debian-binary", b"2.0\n"));
        ar.extend(member("control.tar.gz", b"abc"));
        std::fs::write(&p, &ar).unwrap();
        assert!(load(&p)
            .unwrap_err()
            .to_string()
            .contains("no `data.tar` member"));
        ar.extend(b"garbage that is no header");
        std::fs::write(&p, &ar).unwrap();
        assert!(load(&p).is_err());
        // A data member that is not a tar: an error, not a panic.
        let mut ar = AR_MAGIC.to_vec();
        ar.extend(member("data.tar", b"definitely not tar"));
        std::fs::write(&p, &ar).unwrap();
        assert!(load(&p).is_err());
    }
}
