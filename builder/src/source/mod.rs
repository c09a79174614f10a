//! Sources: filesystem trees read from a directory, a plain tarball, or a (flattened) image.
//! Each loader returns a [`crate::rootfs::Tree`].
//!
//! The checks both tar loaders (image layers and plain tarballs) apply to every entry before it
//! reaches the tree live here: names must be UTF-8 and within Linux's limits, sparse entries are
//! refused unread, entry bytes are staged with reads and writes told apart (a malformed archive
//! is bad input, a full disk is the environment), and tar errors are quoted as a short escaped
//! excerpt, never as the input's bytes.

pub mod deb;
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

/// The registry's own error when `e` is a failure of a blob streamed from a registry
/// (`registry::BlobStream`), as it is; else `e` back.
pub(crate) fn from_registry(e: io::Error) -> std::result::Result<Error, io::Error> {
    let is_registry = e
        .get_ref()
        .is_some_and(|inner| inner.is::<crate::registry::RegistryError>());
    if !is_registry {
        return Err(e);
    }
    match e
        .into_inner()
        .map(|inner| inner.downcast::<crate::registry::RegistryError>())
    {
        Some(Ok(err)) => Ok(Error::Registry(err)),
        _ => Ok(Error::internal("a registry read failed")),
    }
}

/// A failure while reading an archive: malformed input (exit 1) unless the system failed.
pub(crate) fn read_failure(what: &str, e: io::Error) -> Error {
    use io::ErrorKind::*;
    let e = match from_registry(e) {
        Ok(err) => return err,
        Err(e) => e,
    };
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

/// Most bytes of one extended header (PAX records, a GNU long name or long link) a loader lets
/// the tar crate read. It reads them into memory whole, so a few KiB of gzip declaring a
/// gigabyte-long PAX header would otherwise fill the memory.
pub const MAX_EXTENDED_HEADER: u64 = 1 << 20;

const BLOCK: usize = 512;

/// A tar stream that fails on an extended header over [`MAX_EXTENDED_HEADER`] before the tar
/// crate reads it. It follows the archive's framing the way the tar crate does (headers parsed
/// with the crate's own types, PAX `size` overrides, GNU sparse extension blocks); where the
/// framing ends or breaks (the end-of-archive block, a bad checksum) it stops looking, since the
/// tar crate stops there too.
pub(crate) struct Bounded<R> {
    inner: R,
    state: Framing,
    /// The header or sparse extension block being collected.
    block: Vec<u8>,
    /// The records of the PAX header being read, with the number of bytes still to come.
    pax: Option<(Vec<u8>, u64)>,
    /// `size` from the last PAX header, for the next entry.
    pax_size: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Header,
    /// GNU sparse extension blocks, then `data` bytes of entry data.
    Sparse {
        data: u64,
    },
    /// Entry data and padding still to pass.
    Data {
        left: u64,
    },
    Off,
}

impl<R: Read> Bounded<R> {
    pub(crate) fn into_inner(self) -> R {
        self.inner
    }

    pub(crate) fn new(inner: R) -> Self {
        Bounded {
            inner,
            state: Framing::Header,
            block: Vec::with_capacity(BLOCK),
            pax: None,
            pax_size: None,
        }
    }

    fn scan(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match self.state {
                Framing::Off => return Ok(()),
                Framing::Data { left } => {
                    let k = (left.min(bytes.len() as u64)) as usize;
                    if let Some((records, want)) = &mut self.pax {
                        let take = (*want).min(k as u64) as usize;
                        records.extend_from_slice(&bytes[..take]);
                        *want -= take as u64;
                    }
                    bytes = &bytes[k..];
                    let left = left - k as u64;
                    self.state = Framing::Data { left };
                    if left == 0 {
                        self.state = Framing::Header;
                        if let Some((records, _)) = self.pax.take() {
                            self.pax_size = pax_size(&records);
                        }
                    }
                }
                Framing::Header | Framing::Sparse { .. } => {
                    let k = (BLOCK - self.block.len()).min(bytes.len());
                    self.block.extend_from_slice(&bytes[..k]);
                    bytes = &bytes[k..];
                    if self.block.len() == BLOCK {
                        let block = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK));
                        self.state = match self.state {
                            Framing::Sparse { data } if block[504] == 1 => Framing::Sparse { data },
                            Framing::Sparse { data } => data_of(data),
                            _ => self.header(&block)?,
                        };
                    }
                }
            }
        }
        Ok(())
    }

    /// What follows the header `block`.
    fn header(&mut self, block: &[u8]) -> io::Result<Framing> {
        if block.iter().all(|b| *b == 0) {
            return Ok(Framing::Off);
        }
        let h = tar::Header::from_byte_slice(block);
        let sum: u32 = block[..148]
            .iter()
            .chain(&block[156..])
            .map(|b| u32::from(*b))
            .sum::<u32>()
            + 8 * 32;
        let (Ok(cksum), Ok(size)) = (h.cksum(), h.entry_size()) else {
            return Ok(Framing::Off);
        };
        if sum != cksum {
            return Ok(Framing::Off);
        }
        let kind = h.entry_type();
        let recognised = h.as_gnu().is_some() || h.as_ustar().is_some();
        let read_whole =
            kind.is_gnu_longname() || kind.is_gnu_longlink() || kind.is_pax_local_extensions();
        if recognised && read_whole && size > MAX_EXTENDED_HEADER {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "an extended header declares {size} bytes; talext reads at most {MAX_EXTENDED_HEADER}"
                ),
            ));
        }
        let extension = read_whole || kind.is_pax_global_extensions();
        let size = if extension {
            if kind.is_pax_global_extensions() {
                // The entry after a global header gets no pending PAX records.
                self.pax_size = None;
            }
            size
        } else {
            self.pax_size.take().unwrap_or(size)
        };
        if recognised && kind.is_pax_local_extensions() {
            self.pax = Some((Vec::new(), size));
            if size == 0 {
                self.pax_size = None;
                self.pax = None;
            }
        }
        match h.as_gnu() {
            Some(gnu) if kind.is_gnu_sparse() && gnu.is_extended() => {
                Ok(Framing::Sparse { data: size })
            }
            _ => Ok(data_of(size)),
        }
    }
}

/// Entry data of `size` bytes, padded to a whole block.
fn data_of(size: u64) -> Framing {
    match size.checked_add(BLOCK as u64 - 1) {
        Some(n) if n & !(BLOCK as u64 - 1) == 0 => Framing::Header,
        Some(n) => Framing::Data {
            left: n & !(BLOCK as u64 - 1),
        },
        None => Framing::Off,
    }
}

/// The `size` record of PAX records, read as the tar crate reads it.
fn pax_size(records: &[u8]) -> Option<u64> {
    for ext in tar::PaxExtensions::new(records) {
        let ext = ext.ok()?;
        if ext.key() == Ok("size") {
            return ext.value().ok()?.parse().ok();
        }
    }
    None
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.scan(&buf[..n])?;
        Ok(n)
    }
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

    fn entries(bytes: &[u8]) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in tar::Archive::new(Bounded::new(bytes)).entries()? {
            let mut e = e?;
            let mut sink = Vec::new();
            e.read_to_end(&mut sink)?;
            out.push(String::from_utf8_lossy(&e.path_bytes()).into_owned());
        }
        Ok(out)
    }

    #[test]
    fn extended_headers_are_bounded_and_framing_followed() {
        let mut b = tar::Builder::new(Vec::new());
        let long = "d/".repeat(300) + "f";
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        b.append_data(&mut h, &long, &b"abc"[..]).unwrap();
        b.append_pax_extensions([("size", &b"5"[..]), ("path", &b"p"[..])])
            .unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_path("ignored").unwrap();
        h.set_size(0);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, &b""[..]).unwrap();
        b.get_mut().extend_from_slice(b"12345");
        b.get_mut().extend_from_slice(&[0u8; 507]);
        let mut h = tar::Header::new_ustar();
        h.set_size(1);
        h.set_mode(0o644);
        b.append_data(&mut h, "last", &b"z"[..]).unwrap();
        let ok = b.into_inner().unwrap();
        assert_eq!(entries(&ok).unwrap(), vec![long, "p".into(), "last".into()]);

        let mut bomb = tar::Header::new_ustar();
        bomb.set_path("PaxHeader").unwrap();
        bomb.set_entry_type(tar::EntryType::XHeader);
        bomb.set_size(4 << 30);
        bomb.set_cksum();
        let mut bytes = ok[..ok.len() - 1024].to_vec();
        bytes.extend_from_slice(bomb.as_bytes());
        bytes.extend_from_slice(&[b'9'; 4096]);
        let err = entries(&bytes).unwrap_err();
        assert!(
            err.to_string().contains("extended header declares"),
            "{err}"
        );
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
