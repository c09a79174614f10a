//! A deterministic tar writer: ustar headers, uid/gid 0, no user or group names, the caller's
//! mtime, and a PAX extended header only where ustar cannot hold a value (long paths or link
//! targets, non-ASCII names, sizes of 8 GiB and more). Our own emitter, because the bytes of
//! every header are part of a layer digest (STYLE habit 3).

use std::io::{self, Read, Write};

const BLOCK: usize = 512;

/// Kinds of entries talext writes. Hard links and special files never reach a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryType {
    File,
    Dir,
    Symlink,
}

pub struct TarWriter<W: Write> {
    out: W,
    mtime: u64,
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W, mtime: u64) -> Self {
        TarWriter { out, mtime }
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// A directory; `path` without trailing slash (one is added, as Go and GNU tar do).
    pub fn dir(&mut self, path: &str, mode: u32) -> io::Result<()> {
        self.header(&format!("{path}/"), EntryType::Dir, mode, 0, "")
    }

    pub fn symlink(&mut self, path: &str, target: &str, mode: u32) -> io::Result<()> {
        self.header(path, EntryType::Symlink, mode, 0, target)
    }

    /// A regular file of exactly `size` bytes read from `content`. A source that yields a
    /// different length is an error, not a corrupt archive.
    pub fn file(&mut self, path: &str, mode: u32, size: u64, content: impl Read) -> io::Result<()> {
        self.header(path, EntryType::File, mode, size, "")?;
        let copied = io::copy(&mut content.take(size), &mut self.out)?;
        if copied != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("`{path}` changed while it was read: expected {size} bytes, got {copied}"),
            ));
        }
        self.pad(size)
    }

    /// The two zero blocks that end an archive. Returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; BLOCK * 2])?;
        Ok(self.out)
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let rem = (size % BLOCK as u64) as usize;
        if rem != 0 {
            self.out.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }

    fn header(
        &mut self,
        path: &str,
        kind: EntryType,
        mode: u32,
        size: u64,
        link: &str,
    ) -> io::Result<()> {
        let mut pax: Vec<(&str, String)> = Vec::new();
        let (name, prefix) = match split_ustar_name(path) {
            Some(np) if path.is_ascii() => np,
            _ => {
                pax.push(("path", path.to_string()));
                (truncate(path, 100), "")
            }
        };
        let linkname = if link.len() > 100 || !link.is_ascii() {
            pax.push(("linkpath", link.to_string()));
            truncate(link, 100)
        } else {
            link
        };
        let size_field = if size > 0o77777777777 {
            pax.push(("size", size.to_string()));
            0
        } else {
            size
        };
        let mtime = self.mtime.min(0o77777777777);
        if !pax.is_empty() {
            let mut records = Vec::new();
            for (k, v) in &pax {
                records.extend_from_slice(pax_record(k, v).as_bytes());
            }
            let base = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
            let pax_name = format!("PaxHeaders.0/{}", truncate(base, 80));
            let h = raw_header(&pax_name, "", b'x', 0, records.len() as u64, mtime, "");
            self.out.write_all(&h)?;
            self.out.write_all(&records)?;
            self.pad(records.len() as u64)?;
        }
        let flag = match kind {
            EntryType::File => b'0',
            EntryType::Dir => b'5',
            EntryType::Symlink => b'2',
        };
        let h = raw_header(
            name,
            prefix,
            flag,
            mode & 0o7777,
            size_field,
            mtime,
            linkname,
        );
        self.out.write_all(&h)
    }
}

/// Split a path into ustar `name` (≤100) and `prefix` (≤155) at a `/`, if it fits.
fn split_ustar_name(path: &str) -> Option<(&str, &str)> {
    if path.len() <= 100 {
        return Some((path, ""));
    }
    if path.len() > 256 {
        return None;
    }
    // The prefix must end at a slash; take the longest prefix that leaves a name of ≤100.
    let bytes = path.as_bytes();
    for i in (0..bytes.len().min(156)).rev() {
        if bytes[i] == b'/' {
            let (prefix, name) = (&path[..i], &path[i + 1..]);
            if !name.is_empty() && name.len() <= 100 && prefix.len() <= 155 {
                return Some((name, prefix));
            }
            break;
        }
    }
    None
}

fn truncate(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A PAX record `"<len> <key>=<value>\n"` where `<len>` counts the whole record.
fn pax_record(key: &str, value: &str) -> String {
    let body = key.len() + value.len() + 3; // space, '=', newline
    let mut len = body + 1;
    while len.to_string().len() + body != len {
        len = len.to_string().len() + body;
    }
    format!("{len} {key}={value}\n")
}

fn raw_header(
    name: &str,
    prefix: &str,
    flag: u8,
    mode: u32,
    size: u64,
    mtime: u64,
    link: &str,
) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    put(&mut h[0..100], name.as_bytes());
    octal(&mut h[100..108], mode as u64);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], mtime);
    h[156] = flag;
    put(&mut h[157..257], link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    octal(&mut h[329..337], 0);
    octal(&mut h[337..345], 0);
    put(&mut h[345..500], prefix.as_bytes());
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    let chk = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(chk.as_bytes());
    h
}

fn put(field: &mut [u8], value: &[u8]) {
    field[..value.len()].copy_from_slice(value);
}

/// Zero-padded octal, NUL-terminated, filling the field.
fn octal(field: &mut [u8], value: u64) {
    let s = format!("{:0width$o}", value, width = field.len() - 1);
    field[..s.len()].copy_from_slice(s.as_bytes());
    field[s.len()] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_back(bytes: &[u8]) -> Vec<(String, u8, u64, String, Vec<u8>)> {
        let mut a = tar::Archive::new(bytes);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let path = e.path().unwrap().to_string_lossy().into_owned();
                let kind = e.header().entry_type().as_byte();
                let mtime = e.header().mtime().unwrap();
                let link = e
                    .link_name()
                    .unwrap()
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (path, kind, mtime, link, data)
            })
            .collect()
    }

    #[test]
    fn round_trips_through_the_tar_crate() {
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(90));
        let very_long = "x/".repeat(150) + "end";
        let mut w = TarWriter::new(Vec::new(), 1_700_000_000);
        w.dir("usr", 0o755).unwrap();
        w.file("usr/a", 0o644, 5, &b"hello"[..]).unwrap();
        w.symlink("usr/b", &"t".repeat(150), 0o777).unwrap();
        w.file(&long, 0o600, 0, &b""[..]).unwrap();
        w.file(&very_long, 0o755, 3, &b"abc"[..]).unwrap();
        w.file("caf\u{e9}", 0o644, 1, &b"x"[..]).unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len() % 512, 0);
        let got = read_back(&bytes);
        assert_eq!(got[0].0, "usr/");
        assert_eq!(
            got[1],
            (
                "usr/a".into(),
                b'0',
                1_700_000_000,
                String::new(),
                b"hello".to_vec()
            )
        );
        assert_eq!(got[2].3, "t".repeat(150));
        assert_eq!(got[3].0, long);
        assert_eq!(got[4].0, very_long);
        assert_eq!(got[4].4, b"abc");
        assert_eq!(got[5].0, "caf\u{e9}");
    }

    #[test]
    fn pax_only_where_needed() {
        let mut w = TarWriter::new(Vec::new(), 0);
        w.file("short", 0o644, 0, &b""[..]).unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(
            bytes.len(),
            512 * 3,
            "one header and the end marker, no PAX"
        );
        assert_eq!(bytes[156], b'0');
    }

    #[test]
    fn short_content_is_an_error() {
        let mut w = TarWriter::new(Vec::new(), 0);
        assert!(w.file("f", 0o644, 10, &b"abc"[..]).is_err());
    }

    #[test]
    fn pax_record_length_counts_itself() {
        let r = pax_record("path", "a");
        assert_eq!(r, "9 path=a\n");
        assert_eq!(r.len(), 9);
        let r = pax_record("path", &"y".repeat(95));
        assert_eq!(r.len().to_string(), r.split(' ').next().unwrap());
    }
}
