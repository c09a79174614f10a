//! Parallel gzip with deterministic output, in the manner of pigz: the input is cut into fixed
//! 1 MiB blocks, each block is deflated on its own thread with the previous 32 KiB of input as a
//! preset dictionary and ended with a sync flush, and the blocks are written in order. The
//! result is one ordinary gzip member. Its bytes depend only on the input, the level and the
//! block size, never on thread timing or the number of cores.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::thread::JoinHandle;

use flate2::{Compress, Compression, FlushCompress, Status};

/// Input block size. Part of the output format: changing it changes every layer digest.
pub const BLOCK: usize = 1 << 20;
/// Deflate's window: the dictionary carried from one block into the next.
const DICT: usize = 32 << 10;

type Job = JoinHandle<io::Result<Vec<u8>>>;

pub struct ParallelGzWriter<W: Write> {
    out: Option<W>,
    level: u32,
    buf: Vec<u8>,
    dict: Option<Vec<u8>>,
    jobs: VecDeque<Job>,
    max_jobs: usize,
    crc: crc32fast::Hasher,
    len: u64,
    header_written: bool,
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
            dict: None,
            jobs: VecDeque::new(),
            max_jobs: threads.max(1),
            crc: crc32fast::Hasher::new(),
            len: 0,
            header_written: false,
        }
    }

    fn out(&mut self) -> &mut W {
        self.out.as_mut().expect("writer used after finish")
    }

    fn header(&mut self) -> io::Result<()> {
        if !self.header_written {
            // ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=255 (unknown): nothing from the host.
            self.out()
                .write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])?;
            self.header_written = true;
        }
        Ok(())
    }

    fn dispatch(&mut self, last: bool) -> io::Result<()> {
        self.header()?;
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(BLOCK));
        let dict = self.dict.take();
        if !last {
            self.dict = Some(data[data.len().saturating_sub(DICT)..].to_vec());
        }
        let level = self.level;
        while self.jobs.len() >= self.max_jobs {
            self.drain_one()?;
        }
        self.jobs.push_back(std::thread::spawn(move || {
            deflate_block(&data, dict.as_deref(), level, last)
        }));
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

    /// Write the last block and the gzip trailer; returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.dispatch(true)?;
        while !self.jobs.is_empty() {
            self.drain_one()?;
        }
        let crc = self.crc.clone().finalize();
        let isize = (self.len & 0xffff_ffff) as u32;
        let mut out = self.out.take().expect("writer used after finish");
        out.write_all(&crc.to_le_bytes())?;
        out.write_all(&isize.to_le_bytes())?;
        Ok(out)
    }
}

impl<W: Write> Write for ParallelGzWriter<W> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let n = data.len();
        self.crc.update(data);
        self.len += n as u64;
        while !data.is_empty() {
            let room = BLOCK - self.buf.len();
            let take = room.min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == BLOCK {
                self.dispatch(false)?;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Raw-deflate one block; a sync flush ends every block but the last, which ends the stream.
fn deflate_block(data: &[u8], dict: Option<&[u8]>, level: u32, last: bool) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(Compression::new(level), false);
    if let Some(d) = dict {
        c.set_dictionary(d).map_err(io::Error::other)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(data.len() / 2 + 4096);
    loop {
        if out.capacity() - out.len() < 16 << 10 {
            out.reserve(out.capacity().max(64 << 10));
        }
        let consumed = c.total_in() as usize;
        let status = c
            .compress_vec(&data[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let done_input = c.total_in() as usize == data.len();
        let room_left = out.len() < out.capacity();
        match status {
            Status::StreamEnd => break,
            _ if !last && done_input && room_left => break,
            _ => {}
        }
    }
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
            flate2::read::GzDecoder::new(&a[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "n={n}");
        }
    }

    #[test]
    fn size_close_to_single_stream() {
        let data = sample(4 * BLOCK);
        let par = compress(&data, 2, BLOCK);
        let mut single = flate2::write::GzEncoder::new(Vec::new(), Compression::new(6));
        single.write_all(&data).unwrap();
        let single = single.finish().unwrap();
        assert!(
            par.len() <= single.len() + single.len() / 50 + 64,
            "{} vs {}",
            par.len(),
            single.len()
        );
    }
}
