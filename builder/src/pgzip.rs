//! Parallel gzip with deterministic output: the input is cut into fixed 1 MiB blocks, each block
//! is compressed on its own thread by libdeflate into a complete gzip member, and the members are
//! written in order. A gzip file is a series of members (RFC 1952 §2.2): Go's `compress/gzip`
//! (containerd, go-containerregistry and so the Talos imager, skopeo, umoci, buildah) and
//! `gzip -d` read them as one stream. The bytes depend only on the input, the level and the
//! block size, never on thread timing or the number of cores.
//!
//! libdeflate rather than zlib: at level 6 it is faster than zlib-rs and its output is smaller
//! than pigz -6 (see BENCHMARKS.md), which a streaming zlib-ng-style deflate is not.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::thread::JoinHandle;

/// Input block size. Part of the output format: changing it changes every layer digest.
pub const BLOCK: usize = 1 << 20;

type Job = JoinHandle<io::Result<Vec<u8>>>;

pub struct ParallelGzWriter<W: Write> {
    out: Option<W>,
    level: u32,
    buf: Vec<u8>,
    jobs: VecDeque<Job>,
    max_jobs: usize,
    members: u64,
}

impl<W: Write> ParallelGzWriter<W> {
    /// `threads` bounds the blocks compressed at once (and so the memory held: about two blocks
    /// per thread). 0 means the number of available cores.
    pub fn new(out: W, level: u32, threads: usize) -> Self {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        ParallelGzWriter {
            out: Some(out),
            level,
            buf: Vec::with_capacity(BLOCK),
            jobs: VecDeque::new(),
            max_jobs: threads.max(1),
            members: 0,
        }
    }

    fn out(&mut self) -> &mut W {
        self.out.as_mut().expect("writer used after finish")
    }

    fn dispatch(&mut self) -> io::Result<()> {
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(BLOCK));
        let level = self.level;
        while self.jobs.len() >= self.max_jobs {
            self.drain_one()?;
        }
        self.members += 1;
        self.jobs
            .push_back(std::thread::spawn(move || gzip_member(&data, level)));
        Ok(())
    }

    fn drain_one(&mut self) -> io::Result<()> {
        if let Some(job) = self.jobs.pop_front() {
            let bytes = job
                .join()
                .map_err(|_| io::Error::other("a compression thread panicked"))??;
            self.out().write_all(&bytes)?;
        }
        Ok(())
    }

    /// Compress what is left and return the inner writer. Empty input still makes one (empty)
    /// member: a gzip file has at least one.
    pub fn finish(mut self) -> io::Result<W> {
        if !self.buf.is_empty() || self.members == 0 {
            self.dispatch()?;
        }
        while !self.jobs.is_empty() {
            self.drain_one()?;
        }
        Ok(self.out.take().expect("writer used after finish"))
    }
}

impl<W: Write> Write for ParallelGzWriter<W> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let n = data.len();
        while !data.is_empty() {
            let take = (BLOCK - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == BLOCK {
                self.dispatch()?;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One block as a whole gzip member (libdeflate writes MTIME 0 and OS 255: nothing of the host).
fn gzip_member(data: &[u8], level: u32) -> io::Result<Vec<u8>> {
    let lvl = libdeflater::CompressionLvl::new(level as i32)
        .map_err(|e| io::Error::other(format!("gzip level {level}: {e:?}")))?;
    let mut c = libdeflater::Compressor::new(lvl);
    let mut out = vec![0u8; c.gzip_compress_bound(data.len())];
    let n = c
        .gzip_compress(data, &mut out)
        .map_err(|e| io::Error::other(format!("compressing a block: {e:?}")))?;
    out.truncate(n);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn compress(data: &[u8], threads: usize, chunk: usize) -> Vec<u8> {
        let mut w = ParallelGzWriter::new(Vec::new(), 6, threads);
        for c in data.chunks(chunk.max(1)) {
            w.write_all(c).unwrap();
        }
        w.finish().unwrap()
    }

    fn sample(n: usize) -> Vec<u8> {
        // Compressible but not trivial: a text-like pseudo-random stream.
        let mut x: u32 = 12345;
        (0..n)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                b"abcdefgh \n0123"[(x >> 16) as usize % 14]
            })
            .collect()
    }

    #[test]
    fn round_trips_and_ignores_thread_count() {
        for n in [0, 1, 1000, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 12345] {
            let data = sample(n);
            let a = compress(&data, 1, 7919);
            let b = compress(&data, 4, 65536);
            let c = compress(&data, 2, n.max(1));
            assert_eq!(a, b, "n={n}");
            assert_eq!(a, c, "n={n}");
            let mut back = Vec::new();
            flate2::read::MultiGzDecoder::new(&a[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "n={n}");
            // No host data in any member header: MTIME 0, OS unknown.
            assert_eq!(&a[..4], &[0x1f, 0x8b, 8, 0]);
            assert_eq!(&a[4..8], &[0, 0, 0, 0]);
        }
    }

    #[test]
    fn gzip_reads_it_as_one_stream() {
        let data = sample(2 * BLOCK + 77);
        let gz = compress(&data, 2, BLOCK);
        let mut child = std::process::Command::new("gzip")
            .args(["-dc"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("gzip");
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(&gz).unwrap());
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, data);
    }
}
