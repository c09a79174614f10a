//! Sources: filesystem trees read from a directory, a plain tarball, or a (flattened) image.
//! Each loader returns a [`crate::rootfs::Tree`].
//!
//! The checks both tar loaders (image layers and plain tarballs) apply to every entry before it
//! reaches the tree live here: names must be UTF-8 and within Linux's limits, sparse entries are
//! refused unread, entry bytes are staged with reads and writes told apart (a malformed archive
//! is bad input, a full disk is the environment), and tar errors are quoted as a short escaped
//! excerpt, never as the input's bytes.

pub mod dir;
pub mod image;
pub mod tarball;

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use crate::error::{Error, IoContext, Result};
use crate::rootfs::excerpt;

/// Longest path component Linux accepts (`NAME_MAX`, `include/uapi/linux/limits.h`).
pub const NAME_MAX: usize = 255;
/// Longest path Linux accepts (`PATH_MAX`, same header), terminating NUL included.
pub const PATH_MAX: usize = 4096;

/// How much of a hostile name a message quotes.
const SHOWN: usize = 96;

/// A name (entry path or link target) from a tar header as a string, or why it is refused as a
/// `(rule, message)` pair. Talos's Go unpacker would keep non-UTF-8 bytes as they are; talext's
/// trees are UTF-8, so such a name is refused rather than changed (a lossy conversion could make
/// two entries collide).
pub(crate) fn tar_name<'a>(
    raw: &'a [u8],
    what: &str,
) -> std::result::Result<&'a str, (&'static str, String)> {
    if raw.len() >= PATH_MAX {
        return Err((
            "path-too-long",
            format!(
                "{what} `{}` is {} bytes long; Linux allows {} (`PATH_MAX`)",
                excerpt(raw, SHOWN),
                raw.len(),
                PATH_MAX - 1
            ),
        ));
    }
    if let Some(long) = raw.split(|b| *b == b'/').find(|c| c.len() > NAME_MAX) {
        return Err((
            "path-too-long",
            format!(
                "{what} `{}` has a {}-byte component; Linux allows {NAME_MAX} (`NAME_MAX`)",
                excerpt(raw, SHOWN),
                long.len()
            ),
        ));
    }
    std::str::from_utf8(raw).map_err(|_| {
        (
            "name-not-unicode",
            format!(
                "{what} `{}` is not UTF-8; talext refuses it rather than change its bytes",
                excerpt(raw, SHOWN)
            ),
        )
    })
}

/// Whether a tar entry is sparse: the GNU `S` type, or PAX `GNU.sparse.*` records (formats 0.0
/// to 1.0, where the entry's data starts with the sparse map). Either is refused before its
/// data is read, so a few bytes declaring gigabytes of holes never expand to disk.
pub(crate) fn is_sparse<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<bool> {
    if entry.header().entry_type().is_gnu_sparse() {
        return Ok(true);
    }
    Ok(match entry.pax_extensions()? {
        Some(pax) => pax
            .flatten()
            .any(|ext| ext.key_bytes().starts_with(b"GNU.sparse.")),
        None => false,
    })
}

/// A tar reading error as a short message: the tar crate appends the header's name to some
/// errors (`… when getting cksum for <name>`), which for a file that is not a tar is that file's
/// first bytes, so that part is cut and the rest quoted as an escaped excerpt.
pub(crate) fn tar_error(e: &io::Error) -> String {
    let full = e.to_string();
    let head = full.split(" when ").next().unwrap_or(&full);
    let head = if head.starts_with("numeric field") {
        "a numeric header field does not hold a number"
    } else {
        head
    };
    excerpt(head.as_bytes(), 120)
}

/// A failure while reading an archive: malformed input (exit 1) unless the system failed.
pub(crate) fn read_failure(what: &str, e: io::Error) -> Error {
    use io::ErrorKind::*;
    match e.kind() {
        Other | InvalidData | InvalidInput | UnexpectedEof => {
            Error::input(format!("{what} is not a readable tar: {}", tar_error(&e)))
        }
        _ => Error::internal(format!("{what}: reading failed: {}", tar_error(&e))),
    }
}

/// Copy an entry's bytes to a new file at `dest`; the entry must hold the `declared` number of
/// bytes. Reading errors are the archive's ([`read_failure`]); writing errors name `dest`.
pub(crate) fn stage(entry: &mut impl Read, dest: &Path, declared: u64, what: &str) -> Result<u64> {
    let mut out = File::create(dest).at("creating", dest)?;
    let mut buf = vec![0u8; 256 << 10];
    let mut n = 0u64;
    loop {
        let k = match entry.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_failure(what, e)),
        };
        out.write_all(&buf[..k]).at("writing", dest)?;
        n += k as u64;
    }
    out.flush().at("writing", dest)?;
    if n != declared {
        return Err(Error::input(format!(
            "{what} is truncated: an entry declares {declared} bytes but the archive ends after {n}"
        )));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_utf8_and_within_limits() {
        assert_eq!(tar_name(b"usr/local/bin/x", "entry"), Ok("usr/local/bin/x"));
        let (rule, msg) = tar_name(b"usr/\xff\xfe", "entry").unwrap_err();
        assert_eq!(rule, "name-not-unicode");
        assert!(msg.contains("`usr/\\xff\\xfe`"), "{msg}");
        let long = format!("a/{}", "x".repeat(256));
        let (rule, msg) = tar_name(long.as_bytes(), "entry").unwrap_err();
        assert_eq!(rule, "path-too-long");
        assert!(msg.contains("256-byte component"), "{msg}");
        assert!(msg.len() < 300, "{msg}");
        let deep = "d/".repeat(2048);
        assert_eq!(
            tar_name(deep.as_bytes(), "entry").unwrap_err().0,
            "path-too-long"
        );
        assert!(tar_name(format!("a/{}", "x".repeat(255)).as_bytes(), "entry").is_ok());
    }

    #[test]
    fn tar_errors_quote_no_header_bytes() {
        let e = io::Error::other(
            "numeric field was not a number: t:x:0:0 when getting cksum for root:x:0:0:root:/root",
        );
        assert_eq!(
            tar_error(&e),
            "a numeric header field does not hold a number"
        );
        let e = io::Error::other("archive header checksum mismatch");
        assert!(read_failure("`x`", e)
            .to_string()
            .contains("checksum mismatch"));
    }
}
