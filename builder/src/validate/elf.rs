//! ELF machine checks. Nothing in Talos looks at binaries: a single-arch image is used for any
//! target architecture (contract §2.1, §8.3 row 33), so an arm64 binary in an amd64 build only
//! fails on the node. Every regular file under `rootfs/` that starts with `\x7fELF` must be for
//! the requested machine, or, with no machine requested, all must agree. Firmware is skipped:
//! device firmware is often ELF for the device's own processor.

use std::collections::BTreeMap;

use super::{on_node, Finding, Options};
use crate::rootfs::{NodeKind, Tree};

const FIRMWARE: &[&str] = &["rootfs/usr/lib/firmware/", "rootfs/lib/firmware/"];

const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

/// A readable name for an ELF `e_machine` value.
pub fn machine_name(m: u16) -> String {
    let name = match m {
        3 => "x86 (i386)",
        8 => "MIPS",
        20 => "PowerPC",
        21 => "PowerPC64",
        22 => "s390",
        40 => "ARM (32-bit)",
        EM_X86_64 => "x86-64",
        EM_AARCH64 => "AArch64",
        243 => "RISC-V",
        258 => "LoongArch",
        _ => return format!("machine {m}"),
    };
    format!("{name} ({m})")
}

pub(super) fn check(tree: &Tree, opts: &Options, out: &mut Vec<Finding>) {
    let want = match opts.arch.as_deref() {
        None => None,
        Some("amd64") => Some(EM_X86_64),
        Some("arm64") => Some(EM_AARCH64),
        Some(other) => {
            out.push(Finding::new(
                "arch-invalid",
                ".",
                format!("architecture `{other}` is not one Talos builds for"),
                "pass `amd64` or `arm64`",
            ));
            return;
        }
    };

    let mut binaries: Vec<(&str, u16)> = Vec::new();
    for (path, node) in tree.below("rootfs") {
        if !matches!(node.kind, NodeKind::File { .. })
            || FIRMWARE.iter().any(|f| path.starts_with(f))
        {
            continue;
        }
        match tree.probe(path) {
            Ok(crate::rootfs::Head::Elf(Some(m))) => binaries.push((path, m)),
            Ok(_) => {}
            Err(e) => out.push(Finding::new(
                "read-error",
                path.as_str(),
                format!("cannot read `{}`: {e}", on_node(path)),
                "check the source is readable and not changing while it is validated",
            )),
        }
    }

    let hint = "build or fetch every binary for the target architecture (one image per platform)";
    if let Some(want) = want {
        let arch = opts.arch.as_deref().unwrap_or_default();
        for (path, m) in binaries.into_iter().filter(|(_, m)| *m != want) {
            out.push(Finding::new(
                "elf-machine",
                path,
                format!(
                    "`{}` is an ELF binary for {}, but `{arch}` needs {}",
                    on_node(path),
                    machine_name(m),
                    machine_name(want)
                ),
                hint,
            ));
        }
        return;
    }

    let mut counts: BTreeMap<u16, usize> = BTreeMap::new();
    for (_, m) in &binaries {
        *counts.entry(*m).or_default() += 1;
    }
    if counts.len() < 2 {
        return;
    }
    // The machine most binaries share is taken as intended (ties: the lower machine number).
    let (&major, _) = counts
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .expect("at least two machines");
    for (path, m) in binaries.into_iter().filter(|(_, m)| *m != major) {
        out.push(Finding::new(
            "elf-machine",
            path,
            format!(
                "`{}` is an ELF binary for {}, but the image's other binaries are for {}",
                on_node(path),
                machine_name(m),
                machine_name(major)
            ),
            format!("{hint}; pass `--arch` to name the intended one"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::Node;

    /// A minimal 64-bit little-endian ELF header for `machine`.
    pub fn elf(machine: u16) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = 1;
        h[6] = 1;
        h[16] = 2;
        h[18..20].copy_from_slice(&machine.to_le_bytes());
        h
    }

    fn run(arch: Option<&str>, files: &[(&str, Vec<u8>)]) -> Vec<Finding> {
        let mut t = Tree::new();
        for (p, b) in files {
            t.insert(p, Node::inline(b.clone(), 0o755));
        }
        let opts = Options {
            arch: arch.map(str::to_string),
            ..Options::default()
        };
        let mut out = Vec::new();
        check(&t, &opts, &mut out);
        out
    }

    #[test]
    fn machine_must_match_arch() {
        let files = [
            ("rootfs/usr/local/bin/a", elf(EM_X86_64)),
            ("rootfs/usr/local/bin/b", elf(EM_AARCH64)),
            ("rootfs/usr/local/bin/script", b"#!/bin/sh\n".to_vec()),
            ("rootfs/usr/lib/firmware/dsp.elf", elf(164)),
        ];
        let f = run(Some("amd64"), &files);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].path, "rootfs/usr/local/bin/b");
        assert_eq!(
            f[0].message,
            "`/usr/local/bin/b` is an ELF binary for AArch64 (183), but `amd64` needs x86-64 (62)"
        );
        let f = run(Some("arm64"), &files);
        assert_eq!(f[0].path, "rootfs/usr/local/bin/a");
    }

    #[test]
    fn mixed_machines_without_arch() {
        let f = run(
            None,
            &[
                ("rootfs/usr/local/bin/a", elf(EM_X86_64)),
                ("rootfs/usr/local/bin/b", elf(EM_AARCH64)),
                ("rootfs/usr/local/bin/c", elf(EM_X86_64)),
            ],
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule, "elf-machine");
        assert_eq!(f[0].path, "rootfs/usr/local/bin/b");
        assert!(run(None, &[("rootfs/usr/local/bin/a", elf(EM_AARCH64))]).is_empty());
    }

    #[test]
    fn big_endian_headers() {
        let mut h = elf(0);
        h[5] = 2;
        h[18..20].copy_from_slice(&22u16.to_be_bytes());
        use crate::rootfs::Head;
        assert_eq!(Head::of(&h), Head::Elf(Some(22)));
        assert_eq!(Head::of(b"\x7fELF"), Head::Elf(None));
        assert_eq!(Head::of(b"#!/bin/sh"), Head::NotElf);
    }
}
