//! The Go modules embedded in a Go binary, read from its ELF `.go.buildinfo` section: what
//! `go version -m BINARY` prints, without running Go.
//!
//! The section (written by the Go linker since Go 1.13; described in the Go source at
//! `src/debug/buildinfo/buildinfo.go`, `src/cmd/go/internal/modload/build.go` and, for the text,
//! `src/runtime/debug/mod.go`, tag go1.19)
//! starts with a 32-byte header: the 14 magic bytes `\xff Go buildinf:`, the pointer size, and a
//! flags byte. From Go 1.18 the flags have bit 2 set and two strings follow the header inline,
//! each as an unsigned varint length and its bytes: the Go version, then the module information.
//! The module information is the text `go version -m` shows (tab-separated `path`, `mod`,
//! `dep`, `=>` and `build` lines) between two 16-byte sentinels. Older binaries (Go 1.13 to
//! 1.17) hold pointers to the two strings instead, followed here through the sections'
//! addresses; one whose pointers lead nowhere in the file is skipped. A binary whose section
//! headers were stripped is not recognised as Go (Go's own reader would scan the data segment
//! for the magic).
//!
//! Everything is read through [`ReadAt`] with fixed bounds, so a hostile or truncated file costs
//! at most a few megabytes of reads, never a panic. An ELF file whose section headers cannot be
//! read is simply not a Go binary; a `.go.buildinfo` that is there but unreadable is an error.

use std::io::{self, Read, Seek, SeekFrom};

/// The magic at the start of `.go.buildinfo`.
pub const MAGIC: &[u8; 14] = b"\xff Go buildinf:";
/// Flag bit: the version strings follow the header inline (Go 1.18 and later).
const FLAG_INLINE: u8 = 2;
/// The most section-header table read (65,536 headers of 64 bytes).
const MAX_SECTION_TABLE: u64 = 4 << 20;
/// The most section-name table read.
const MAX_NAMES: u64 = 1 << 20;
/// The most of `.go.buildinfo` read; real ones are a few kilobytes.
const MAX_BUILDINFO: u64 = 1 << 20;
/// Sentinel length around the module information.
const SENTINEL: usize = 16;

/// Random access to a file's bytes.
pub trait ReadAt {
    fn size(&self) -> u64;
    /// Exactly `len` bytes at `offset`; the caller has checked they lie inside [`ReadAt::size`].
    fn read_at(&mut self, offset: u64, len: usize) -> io::Result<Vec<u8>>;
}

impl ReadAt for &[u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn read_at(&mut self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        self.get(start..start.saturating_add(len))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| io::ErrorKind::UnexpectedEof.into())
    }
}

/// A file on disk of known size.
pub struct FileAt {
    pub file: std::fs::File,
    pub size: u64,
}

impl ReadAt for FileAt {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&mut self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        self.file.seek(SeekFrom::Start(offset))?;
        let mut buf = vec![0; len];
        self.file.read_exact(&mut buf)?;
        Ok(buf)
    }
}

/// A module as the build information names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub path: String,
    /// `None` when the line has none (a directory replacement).
    pub version: Option<String>,
    pub sum: Option<String>,
    /// The `=>` line after it, when the module was replaced.
    pub replace: Option<Box<Module>>,
}

/// What a Go binary says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    /// `go1.19.8`.
    pub go_version: String,
    /// The main package (`path` line).
    pub path: Option<String>,
    /// The main module (`mod` line); absent for binaries built outside module mode.
    pub main: Option<Module>,
    pub deps: Vec<Module>,
}

/// What [`read`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Not an ELF file, or one without a `.go.buildinfo` section.
    NotGo,
    /// A Go binary from before Go 1.18 whose pointer-format build information could not be
    /// followed within the file.
    PointerFormat,
    Go(BuildInfo),
}

/// Why a file that looked like a Go binary could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub String);

fn bad(msg: impl Into<String>) -> Malformed {
    Malformed(msg.into())
}

/// Read the build information of the ELF file behind `src`.
pub fn read(src: &mut impl ReadAt) -> Result<Found, Malformed> {
    let size = src.size();
    if size < 64 {
        return Ok(Found::NotGo);
    }
    let head = fetch(src, 0, 64, "the ELF header")?;
    if &head[..4] != b"\x7fELF" {
        return Ok(Found::NotGo);
    }
    let elf = match Elf::parse(&head) {
        Some(e) => e,
        None => return Ok(Found::NotGo),
    };
    // An ELF file whose section headers cannot be read is not taken for a Go binary: only a
    // `.go.buildinfo` that is there and unreadable is an error (firmware and other odd ELF
    // files must not fail the build).
    let sections = match elf.sections(src) {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!("an ELF file without readable section headers: {e}");
            return Ok(Found::NotGo);
        }
    };
    let Some(info) = sections.iter().find(|s| s.name == b".go.buildinfo") else {
        return Ok(Found::NotGo);
    };
    let data = fetch(
        src,
        info.offset,
        info.size.min(MAX_BUILDINFO),
        "`.go.buildinfo`",
    )?;
    match parse_buildinfo(&data)? {
        Found::PointerFormat => Ok(pointer_format(src, &sections, &data)
            .map(Found::Go)
            .unwrap_or(Found::PointerFormat)),
        found => Ok(found),
    }
}

/// The strings of a pointer-format header (Go 1.13 to 1.17): after the magic, the pointer size
/// and the flags (bit 1: big-endian), two pointers to Go string headers (data pointer, length)
/// for the version and the module information, resolved through the sections' addresses.
/// `None` when they cannot be followed within the file.
fn pointer_format(src: &mut impl ReadAt, sections: &[Section], data: &[u8]) -> Option<BuildInfo> {
    let width = usize::from(data[14]);
    if width != 4 && width != 8 || data.len() < 16 + 2 * width {
        return None;
    }
    let e = Endian(data[15] & 1 != 0);
    let word = |b: &[u8]| {
        if width == 8 {
            e.u64(b)
        } else {
            u64::from(e.u32(b))
        }
    };
    let mut at_address = |addr: u64, len: u64| -> Option<Vec<u8>> {
        let s = sections.iter().find(|s| {
            s.addr != 0
                && s.addr <= addr
                && addr
                    .checked_add(len)
                    .is_some_and(|end| end <= s.addr.saturating_add(s.size))
        })?;
        fetch(src, s.offset + (addr - s.addr), len, "a Go string").ok()
    };
    let mut string = |ptr: u64| -> Option<Vec<u8>> {
        let header = at_address(ptr, 2 * width as u64)?;
        let len = word(&header[width..]);
        (len <= MAX_BUILDINFO).then_some(())?;
        at_address(word(&header), len)
    };
    let version = string(word(&data[16..]))?;
    let modinfo = string(word(&data[16 + width..]))?;
    finish(&version, &modinfo).ok()
}

/// Bytes `[offset, offset + len)` of `src`, refused when they lie outside the file.
fn fetch(src: &mut impl ReadAt, offset: u64, len: u64, what: &str) -> Result<Vec<u8>, Malformed> {
    let end = offset.checked_add(len);
    if end.is_none_or(|e| e > src.size()) {
        return Err(bad(format!(
            "{what} ({len} bytes at offset {offset}) lies outside the {}-byte file",
            src.size()
        )));
    }
    let len = usize::try_from(len).map_err(|_| bad(format!("{what} is too large")))?;
    src.read_at(offset, len)
        .map_err(|e| bad(format!("reading {what}: {e}")))
}

/// The parts of an ELF header that locate the section headers (ELF specification, "ELF
/// Header" and "Sections"; 32- and 64-bit, either byte order).
struct Elf {
    wide: bool,
    big: bool,
    shoff: u64,
    shentsize: u64,
    shnum: u64,
    shstrndx: u64,
}

impl Elf {
    fn parse(h: &[u8]) -> Option<Elf> {
        let wide = match h[4] {
            1 => false,
            2 => true,
            _ => return None,
        };
        let big = match h[5] {
            1 => false,
            2 => true,
            _ => return None,
        };
        let r = Endian(big);
        Some(if wide {
            Elf {
                wide,
                big,
                shoff: r.u64(&h[0x28..]),
                shentsize: r.u16(&h[0x3a..]).into(),
                shnum: r.u16(&h[0x3c..]).into(),
                shstrndx: r.u16(&h[0x3e..]).into(),
            }
        } else {
            Elf {
                wide,
                big,
                shoff: r.u32(&h[0x20..]).into(),
                shentsize: r.u16(&h[0x2e..]).into(),
                shnum: r.u16(&h[0x30..]).into(),
                shstrndx: r.u16(&h[0x32..]).into(),
            }
        })
    }

    /// One section header, its name not yet looked up.
    fn section(&self, s: &[u8]) -> (u32, Section) {
        let r = Endian(self.big);
        let (name, kind, addr, offset, size, link) = if self.wide {
            (
                r.u32(s),
                r.u32(&s[4..]),
                r.u64(&s[16..]),
                r.u64(&s[24..]),
                r.u64(&s[32..]),
                r.u32(&s[40..]),
            )
        } else {
            (
                r.u32(s),
                r.u32(&s[4..]),
                r.u32(&s[12..]).into(),
                r.u32(&s[16..]).into(),
                r.u32(&s[20..]).into(),
                r.u32(&s[24..]),
            )
        };
        let section = Section {
            name: Vec::new(),
            kind,
            addr,
            offset,
            size,
            link,
        };
        (name, section)
    }

    /// The sections that have bytes in the file (not `SHT_NOBITS`), with their names; none
    /// when the file has no section headers.
    fn sections(&self, src: &mut impl ReadAt) -> Result<Vec<Section>, Malformed> {
        const SHT_NOBITS: u32 = 8;
        const SHN_XINDEX: u64 = 0xffff;
        if self.shoff == 0 {
            return Ok(Vec::new());
        }
        let min = if self.wide { 64 } else { 40 };
        if self.shentsize < min {
            return Err(bad(format!(
                "section headers of {} bytes are shorter than the {min} an ELF file needs",
                self.shentsize
            )));
        }
        let first = fetch(src, self.shoff, self.shentsize, "the first section header")?;
        let (_, first) = self.section(&first);
        // Extended numbering: with 65,280 sections or more, the count and the name-table index
        // live in the first section header (ELF specification, "Sections").
        let shnum = if self.shnum == 0 {
            first.size
        } else {
            self.shnum
        };
        let shstrndx = if self.shstrndx == SHN_XINDEX {
            first.link.into()
        } else {
            self.shstrndx
        };
        let table_len = shnum
            .checked_mul(self.shentsize)
            .filter(|n| *n <= MAX_SECTION_TABLE)
            .ok_or_else(|| bad(format!("{shnum} section headers is more than talext reads")))?;
        if shstrndx >= shnum {
            return Ok(Vec::new());
        }
        let table = fetch(src, self.shoff, table_len, "the section headers")?;
        let entry = |i: u64| {
            let at = (i * self.shentsize) as usize;
            self.section(&table[at..at + self.shentsize as usize])
        };
        let (_, names) = entry(shstrndx);
        if names.kind == SHT_NOBITS || names.size > MAX_NAMES {
            return Err(bad(format!(
                "the section-name table ({} bytes) is not one talext reads",
                names.size
            )));
        }
        let names = fetch(src, names.offset, names.size, "the section-name table")?;
        let mut out = Vec::new();
        for i in 0..shnum {
            let (name, mut section) = entry(i);
            if section.kind == SHT_NOBITS {
                continue;
            }
            let Some(rest) = names.get(name as usize..) else {
                continue;
            };
            let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
            section.name = rest[..end].to_vec();
            out.push(section);
        }
        Ok(out)
    }
}

/// A section header with its name.
struct Section {
    name: Vec<u8>,
    kind: u32,
    /// The virtual address it is loaded at (0 when not loaded).
    addr: u64,
    offset: u64,
    size: u64,
    link: u32,
}

#[derive(Clone, Copy)]
struct Endian(bool);

impl Endian {
    fn u16(self, b: &[u8]) -> u16 {
        let a = [b[0], b[1]];
        if self.0 {
            u16::from_be_bytes(a)
        } else {
            u16::from_le_bytes(a)
        }
    }
    fn u32(self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        if self.0 {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    }
    fn u64(self, b: &[u8]) -> u64 {
        let mut a = [0; 8];
        a.copy_from_slice(&b[..8]);
        if self.0 {
            u64::from_be_bytes(a)
        } else {
            u64::from_le_bytes(a)
        }
    }
}

/// Parse the contents of a `.go.buildinfo` section.
pub fn parse_buildinfo(data: &[u8]) -> Result<Found, Malformed> {
    if data.len() < 32 || &data[..MAGIC.len()] != MAGIC {
        return Err(bad(
            "`.go.buildinfo` does not start with the Go build-information magic",
        ));
    }
    if data[15] & FLAG_INLINE == 0 {
        return Ok(Found::PointerFormat);
    }
    let mut at = 32;
    let version = inline_string(data, &mut at, "the Go version")?;
    let modinfo = inline_string(data, &mut at, "the module information")?;
    finish(version, modinfo).map(Found::Go)
}

/// The build information from its two strings, the Go version and the module information.
fn finish(version: &[u8], modinfo: &[u8]) -> Result<BuildInfo, Malformed> {
    let version = std::str::from_utf8(version)
        .map_err(|_| bad("the Go version is not UTF-8"))?
        .to_string();
    // The module information sits between two 16-byte sentinels; the text inside ends with a
    // newline, so a wrapped block has one 17 bytes from its end.
    let inner = if modinfo.len() > 2 * SENTINEL && modinfo[modinfo.len() - SENTINEL - 1] == b'\n' {
        &modinfo[SENTINEL..modinfo.len() - SENTINEL]
    } else {
        modinfo
    };
    let text =
        std::str::from_utf8(inner).map_err(|_| bad("the module information is not UTF-8"))?;
    let mut info = parse_modinfo(text)?;
    info.go_version = version;
    Ok(info)
}

/// An unsigned-varint-prefixed string at `*at`, advancing past it.
fn inline_string<'a>(data: &'a [u8], at: &mut usize, what: &str) -> Result<&'a [u8], Malformed> {
    let mut len: u64 = 0;
    let mut shift = 0;
    loop {
        let b = *data
            .get(*at)
            .ok_or_else(|| bad(format!("`.go.buildinfo` ends inside the length of {what}")))?;
        *at += 1;
        if shift > 63 || (shift == 63 && b > 1) {
            return Err(bad(format!("the length of {what} overflows")));
        }
        len |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    let end = usize::try_from(len)
        .ok()
        .and_then(|l| at.checked_add(l))
        .filter(|e| *e <= data.len())
        .ok_or_else(|| {
            bad(format!(
                "{what} ({len} bytes) runs past the end of `.go.buildinfo` ({} bytes read)",
                data.len()
            ))
        })?;
    let s = &data[*at..end];
    *at = end;
    Ok(s)
}

/// Parse the module information text (`go version -m` without the file-name line).
pub fn parse_modinfo(text: &str) -> Result<BuildInfo, Malformed> {
    let mut info = BuildInfo {
        go_version: String::new(),
        path: None,
        main: None,
        deps: Vec::new(),
    };
    // The module the next `=>` line replaces: the main module or the last dependency.
    enum Last {
        None,
        Main,
        Dep,
    }
    let mut last = Last::None;
    for (i, line) in text.split('\n').enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let mut fields = line.split('\t');
        let key = fields.next().unwrap_or_default();
        let rest: Vec<&str> = fields.collect();
        match key {
            "path" => {
                info.path = rest.first().map(|s| s.to_string());
                last = Last::None;
            }
            "mod" => {
                info.main = Some(module(n, key, &rest)?);
                last = Last::Main;
            }
            "dep" => {
                info.deps.push(module(n, key, &rest)?);
                last = Last::Dep;
            }
            "=>" => {
                let m = Box::new(module(n, key, &rest)?);
                let target = match last {
                    Last::Main => info.main.as_mut(),
                    Last::Dep => info.deps.last_mut(),
                    Last::None => None,
                };
                match target {
                    Some(t) if t.replace.is_none() => t.replace = Some(m),
                    _ => {
                        return Err(bad(format!(
                            "module information line {n}: `=>` follows no module it could replace"
                        )))
                    }
                }
            }
            _ => last = Last::None,
        }
    }
    Ok(info)
}

fn module(n: usize, key: &str, fields: &[&str]) -> Result<Module, Malformed> {
    let field = |i: usize| {
        fields
            .get(i)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let path = field(0).ok_or_else(|| {
        bad(format!(
            "module information line {n}: `{key}` names no module path"
        ))
    })?;
    if path.chars().any(|c| c.is_control() || c == ' ') {
        return Err(bad(format!(
            "module information line {n}: `{}` is not a module path",
            crate::rootfs::escape(&path)
        )));
    }
    Ok(Module {
        path,
        version: field(1),
        sum: field(2),
        replace: None,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const MODINFO: &str = "path\ttailscale.com/cmd/tailscaled\n\
mod\ttailscale.com\t(devel)\t\n\
dep\tgithub.com/tailscale/wireguard-go\tv0.0.0-20250716170648-1d0488a3d7da\th1:abc=\n\
dep\tgolang.org/x/crypto\tv0.41.0\n\
=>\tgithub.com/tailscale/golang-x-crypto\tv0.0.0-20250404221719-a5573b049869\t\n\n\
dep\tgolang.org/x/sys\tv0.35.0\t\n\
build\t-compiler=gc\nbuild\tGOARCH=amd64\n";

    /// A `.go.buildinfo` section in the Go 1.18+ inline format.
    pub fn section(version: &str, modinfo: &str) -> Vec<u8> {
        let mut d = MAGIC.to_vec();
        d.extend([8, FLAG_INLINE]);
        d.resize(32, 0);
        let mut wrapped = vec![0x30; SENTINEL];
        wrapped.extend(modinfo.as_bytes());
        wrapped.extend([0xf9; SENTINEL]);
        for s in [version.as_bytes(), &wrapped[..]] {
            let mut n = s.len();
            while n >= 0x80 {
                d.push((n as u8) | 0x80);
                n >>= 7;
            }
            d.push(n as u8);
            d.extend(s);
        }
        d
    }

    /// A 64-bit little-endian ELF file whose only named sections are `.shstrtab` and `name`
    /// holding `body`.
    pub fn elf_with(name: &str, body: &[u8], machine: u16) -> Vec<u8> {
        elf_sections(&[(name, 0, body)], machine)
    }

    /// A 64-bit little-endian ELF file with `.shstrtab` and the sections `(name, address, body)`.
    pub fn elf_sections(sections: &[(&str, u64, &[u8])], machine: u16) -> Vec<u8> {
        let mut f = vec![0u8; 64];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[6] = 1;
        f[16] = 2;
        f[18..20].copy_from_slice(&machine.to_le_bytes());
        let mut names = String::from("\0.shstrtab\0");
        let mut placed = Vec::new();
        for (name, addr, body) in sections {
            placed.push((names.len() as u32, *addr, f.len() as u64, body.len() as u64));
            names.push_str(name);
            names.push('\0');
            f.extend(*body);
        }
        let names_off = f.len() as u64;
        f.extend(names.as_bytes());
        while !f.len().is_multiple_of(8) {
            f.push(0);
        }
        let shoff = f.len() as u64;
        let sh = |name: u32, kind: u32, addr: u64, off: u64, size: u64| {
            let mut s = vec![0u8; 64];
            s[..4].copy_from_slice(&name.to_le_bytes());
            s[4..8].copy_from_slice(&kind.to_le_bytes());
            s[16..24].copy_from_slice(&addr.to_le_bytes());
            s[24..32].copy_from_slice(&off.to_le_bytes());
            s[32..40].copy_from_slice(&size.to_le_bytes());
            s
        };
        f.extend(sh(0, 0, 0, 0, 0));
        f.extend(sh(1, 3, 0, names_off, names.len() as u64));
        for (name, addr, off, size) in placed {
            f.extend(sh(name, 1, addr, off, size));
        }
        let count = 2 + sections.len() as u16;
        f[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
        f[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        f[0x3c..0x3e].copy_from_slice(&count.to_le_bytes());
        f[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
        f
    }

    /// A Go 1.13–1.17 binary: a pointer-format `.go.buildinfo` at 0x1000 whose pointers lead to
    /// string headers and strings in `.rodata` at 0x2000.
    pub fn pointer_format_elf(version: &str, modinfo: &str) -> Vec<u8> {
        let mut wrapped = vec![0x30; SENTINEL];
        wrapped.extend(modinfo.as_bytes());
        wrapped.extend([0xf9; SENTINEL]);
        let mut ro = Vec::new();
        let (v_at, m_at) = (0x2000u64 + 32, 0x2000u64 + 32 + version.len() as u64);
        for (at, len) in [(v_at, version.len()), (m_at, wrapped.len())] {
            ro.extend(at.to_le_bytes());
            ro.extend((len as u64).to_le_bytes());
        }
        ro.extend(version.as_bytes());
        ro.extend(&wrapped);
        let mut info = MAGIC.to_vec();
        info.extend([8, 0]);
        info.extend(0x2000u64.to_le_bytes());
        info.extend(0x2010u64.to_le_bytes());
        info.resize(32, 0);
        elf_sections(
            &[(".go.buildinfo", 0x1000, &info), (".rodata", 0x2000, &ro)],
            62,
        )
    }

    fn read_bytes(b: &[u8]) -> Result<Found, Malformed> {
        read(&mut &b[..])
    }

    #[test]
    fn reads_modules_with_replacements() {
        let elf = elf_with(".go.buildinfo", &section("go1.19.8", MODINFO), 62);
        let Found::Go(info) = read_bytes(&elf).unwrap() else {
            panic!("not read as Go");
        };
        assert_eq!(info.go_version, "go1.19.8");
        assert_eq!(info.path.as_deref(), Some("tailscale.com/cmd/tailscaled"));
        let main = info.main.unwrap();
        assert_eq!(
            (main.path.as_str(), main.version.as_deref()),
            ("tailscale.com", Some("(devel)"))
        );
        assert_eq!(info.deps.len(), 3);
        assert_eq!(info.deps[0].sum.as_deref(), Some("h1:abc="));
        let r = info.deps[1].replace.as_ref().unwrap();
        assert_eq!(r.path, "github.com/tailscale/golang-x-crypto");
        assert_eq!(
            r.version.as_deref(),
            Some("v0.0.0-20250404221719-a5573b049869")
        );
        assert!(info.deps[2].replace.is_none());
    }

    #[test]
    fn non_go_files_and_old_binaries() {
        assert_eq!(read_bytes(b"#!/bin/sh\n").unwrap(), Found::NotGo);
        assert_eq!(read_bytes(&[0u8; 100]).unwrap(), Found::NotGo);
        let other = elf_with(".data", b"hello", 62);
        assert_eq!(read_bytes(&other).unwrap(), Found::NotGo);
        // A header with no section table at all (stripped with `sstrip`).
        let mut none = other.clone();
        none[0x28..0x30].fill(0);
        assert_eq!(read_bytes(&none).unwrap(), Found::NotGo);
        // Pointers that lead nowhere in the file: skipped, not an error.
        let mut old = MAGIC.to_vec();
        old.extend([8, 0]);
        old.resize(64, 0);
        let elf = elf_with(".go.buildinfo", &old, 62);
        assert_eq!(read_bytes(&elf).unwrap(), Found::PointerFormat);
    }

    #[test]
    fn pointer_format_binaries_are_followed() {
        let elf = pointer_format_elf("go1.16.15", MODINFO);
        let Found::Go(info) = read_bytes(&elf).unwrap() else {
            panic!("not read as Go");
        };
        assert_eq!(info.go_version, "go1.16.15");
        assert_eq!(info.main.unwrap().path, "tailscale.com");
        assert_eq!(info.deps.len(), 3);
        // A string length beyond the section, or a pointer outside every section, is skipped.
        for (at, value) in [(8usize, u64::MAX), (0, 0x9000)] {
            let mut bad = elf.clone();
            let ro = 64 + 32; // `.rodata` follows the 32-byte `.go.buildinfo`
            bad[ro + at..ro + at + 8].copy_from_slice(&value.to_le_bytes());
            assert_eq!(read_bytes(&bad).unwrap(), Found::PointerFormat);
        }
    }

    #[test]
    fn truncated_and_hostile_inputs_are_errors() {
        let good = elf_with(".go.buildinfo", &section("go1.19.8", MODINFO), 62);
        // Every truncation of the file either stops being an ELF worth reading or is refused.
        for cut in 0..good.len() {
            if let Ok(Found::Go(_)) = read_bytes(&good[..cut]) {
                panic!("a file cut at {cut} bytes still read as complete");
            }
        }
        let sec = section("go1.19.8", MODINFO);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"\xff Go buildinf:".to_vec(), "does not start"),
            (
                {
                    let mut s = sec.clone();
                    s.truncate(60);
                    s
                },
                "runs past the end",
            ),
            (
                {
                    let mut s = sec[..32].to_vec();
                    s.extend([0xff; 11]);
                    s
                },
                "overflows",
            ),
            (
                {
                    let mut s = sec[..32].to_vec();
                    s.extend([0xff, 0xff, 0xff, 0xff, 0x0f]);
                    s
                },
                "runs past the end",
            ),
            (section("go1\u{0}", "=>\tx\tv1\n"), "follows no module"),
            (section("go1", "mod\t\tv1\n"), "names no module path"),
            (section("go1", "dep\ta b\tv1\n"), "is not a module path"),
            (
                section("go1", "mod\ta\tv1\n=>\tb\tv2\n=>\tc\tv3\n"),
                "follows no module",
            ),
        ];
        for (body, want) in cases {
            let err = parse_buildinfo(&body).unwrap_err().to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
        // Section headers that point outside the file, or claim absurd sizes.
        let mut far = good.clone();
        let shoff = u64::from_le_bytes(far[0x28..0x30].try_into().unwrap()) as usize;
        far[shoff + 128 + 24..shoff + 128 + 32].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(read_bytes(&far).unwrap_err().0.contains("outside"));
        // Section headers that cannot be read make the file not a Go binary, not an error.
        let mut many = good.clone();
        many[0x3c..0x3e].copy_from_slice(&0xfff0u16.to_le_bytes());
        let mut tiny = good.clone();
        tiny[0x3a..0x3c].copy_from_slice(&8u16.to_le_bytes());
        let mut names = good;
        names[shoff + 64 + 32..shoff + 64 + 40].copy_from_slice(&(2u64 << 20).to_le_bytes());
        for odd in [many, tiny, names] {
            assert_eq!(read_bytes(&odd).unwrap(), Found::NotGo);
        }
    }

    #[test]
    fn modinfo_without_sentinels_and_without_modules() {
        let info = parse_modinfo("path\tmvdan.cc/sh/v3/cmd/shfmt\nbuild\tGOOS=linux\n").unwrap();
        assert_eq!(info.path.as_deref(), Some("mvdan.cc/sh/v3/cmd/shfmt"));
        assert!(info.main.is_none() && info.deps.is_empty());
        // A directory replacement has no version.
        let info = parse_modinfo("mod\tm\t(devel)\ndep\tx\tv1\n=>\t../x\t\t\n").unwrap();
        let r = info.deps[0].replace.as_ref().unwrap();
        assert_eq!((r.path.as_str(), r.version.as_deref()), ("../x", None));
    }
}
