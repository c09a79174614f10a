//! Serialise a tree as a layer: a deterministic tar (sorted entries, uid/gid 0, mtime = the
//! build epoch, modes kept), hashed as it is written (the diff_id), gzip-compressed on every core
//! with a fixed backend, level and block size (`crate::pgzip`), and hashed again (the blob
//! digest), all in one pass.

use std::io::{self, Write};

use crate::error::{Error, Result};
use crate::oci::{Digest, HashingWriter};
use crate::pgzip::ParallelGzWriter;
use crate::progress::{Counting, Reporter, Silent, TaskId};
use crate::rootfs::{open_content, NodeKind, Tree};
use crate::tarw::TarWriter;

/// libdeflate at level 6, the level `gzip` and `pigz` default to. Changing the level, the backend or
/// `pgzip::BLOCK` changes every digest, so they are fixed here.
pub const GZIP_LEVEL: u32 = 6;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerInfo {
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// sha256 and size of the compressed blob.
    pub digest: Digest,
    pub size: u64,
}

/// Write the tree as an uncompressed tar into `out`. The tree must be normalised.
pub fn write_tar<W: Write>(tree: &Tree, mtime: u64, out: W) -> Result<W> {
    let mut w = TarWriter::new(out, mtime);
    let fail =
        |path: &str, e: io::Error| Error::internal(format!("writing `{path}` into the layer: {e}"));
    for (path, node) in &tree.entries {
        match &node.kind {
            NodeKind::Dir => w.dir(path, node.mode).map_err(|e| fail(path, e))?,
            NodeKind::File { content, size } => {
                let r = open_content(content)?;
                w.file(path, node.mode, *size, r)
                    .map_err(|e| fail(path, e))?
            }
            NodeKind::Symlink { target } => w
                .symlink(path, target, node.mode)
                .map_err(|e| fail(path, e))?,
            NodeKind::HardLink { .. } | NodeKind::Special(_) => {
                return Err(Error::internal(format!(
                    "`{path}` reached the layer writer without being normalised"
                )))
            }
        }
    }
    w.finish().map_err(|e| fail("end of archive", e))
}

/// Write the tree as a gzip layer into `out`, returning its digests and the writer.
/// `threads` bounds parallel compression (0: every core); the bytes never depend on it.
pub fn write_gzip_layer<W: Write>(
    tree: &Tree,
    mtime: u64,
    threads: usize,
    out: W,
) -> Result<(LayerInfo, W)> {
    write_gzip_layer_reporting(tree, mtime, threads, out, &Silent, 0)
}

/// The size of the tar [`write_tar`] writes for `tree`, less any PAX headers: the total a
/// progress bar counts towards.
pub fn tar_size_estimate(tree: &Tree) -> u64 {
    let mut n = 1024;
    for node in tree.entries.values() {
        n += 512;
        if let NodeKind::File { size, .. } = &node.kind {
            n += size.div_ceil(512) * 512;
        }
    }
    n
}

/// [`write_gzip_layer`], reporting the tar bytes written to `task` of `reporter`.
pub fn write_gzip_layer_reporting<W: Write>(
    tree: &Tree,
    mtime: u64,
    threads: usize,
    out: W,
    reporter: &dyn Reporter,
    task: TaskId,
) -> Result<(LayerInfo, W)> {
    let fail = |e: io::Error| Error::internal(format!("compressing the layer: {e}"));
    let blob = HashingWriter::new(out);
    let gz = ParallelGzWriter::new(blob, GZIP_LEVEL, threads);
    let tar = HashingWriter::new(gz);
    // The buffer sits outside the hash so file contents are read and hashed 1 MiB at a time
    // (`io::copy` reads straight into a `BufWriter`'s buffer).
    let buf = io::BufWriter::with_capacity(1 << 20, Counting::new(tar, reporter, task));
    let buf = write_tar(tree, mtime, buf)?;
    let counting = buf
        .into_inner()
        .map_err(|e| Error::internal(format!("compressing the layer: {}", e.error())))?;
    let (diff_id, _, gz) = counting.into_inner().finish();
    let blob = gz.finish().map_err(fail)?;
    let (digest, size, out) = blob.finish();
    Ok((
        LayerInfo {
            diff_id,
            digest,
            size,
        },
        out,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::Node;

    #[test]
    fn gzip_layer_is_deterministic_and_decodes_to_the_tar() {
        let mut t = Tree::new();
        t.insert(
            "rootfs/usr/local/bin/x",
            Node::inline(&b"#!/bin/sh\n"[..], 0o755),
        );
        t.insert(
            "manifest.yaml",
            Node::inline(&b"version: v1alpha1\n"[..], 0o644),
        );
        let (a, bytes_a) = write_gzip_layer(&t, 0, 0, Vec::new()).unwrap();
        let (b, bytes_b) = write_gzip_layer(&t, 0, 0, Vec::new()).unwrap();
        assert_eq!(a, b);
        assert_eq!(bytes_a, bytes_b);
        assert_eq!(a.digest, Digest::of(&bytes_a));
        let tar = write_tar(&t, 0, Vec::new()).unwrap();
        assert_eq!(a.diff_id, Digest::of(&tar));
        let mut dec = Vec::new();
        io::Read::read_to_end(
            &mut flate2::read::MultiGzDecoder::new(&bytes_a[..]),
            &mut dec,
        )
        .unwrap();
        assert_eq!(dec, tar);
        let (c, _) = write_gzip_layer(&t, 1, 1, Vec::new()).unwrap();
        assert_ne!(a.diff_id, c.diff_id, "mtime is part of the layer");
    }
}
