//! Progress of long work (pulls, layer writes, pushes) as events sent to a [`Reporter`]. The
//! library never draws anything itself: it reports bytes done against a total, and whoever runs
//! it decides what to show. [`Silent`] is the default (tests, library use, `-q`, no TTY);
//! [`Bars`] draws indicatif bars on stderr for the CLI (STYLE habit 8).

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// What a task is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Downloading blobs of a source image.
    Pull,
    /// Writing (tar, hash, compress, hash) one platform's layer.
    Layer,
    /// Uploading or copying blobs to a destination.
    Push,
}

impl Kind {
    fn verb(self) -> &'static str {
        match self {
            Kind::Pull => "pull",
            Kind::Layer => "layer",
            Kind::Push => "push",
        }
    }
}

/// A task started on a reporter.
pub type TaskId = u64;

/// Receives progress events. Implementations must be cheap: `advance` is called for every
/// buffer written.
pub trait Reporter: Send + Sync {
    /// A task of `total` bytes (when known) begins.
    fn start(&self, kind: Kind, label: &str, total: Option<u64>) -> TaskId;
    /// `bytes` more bytes of the task are done.
    fn advance(&self, task: TaskId, bytes: u64);
    /// The task ended (successfully or not).
    fn finish(&self, task: TaskId);
    /// A one-line message for the user (`cached layer for linux/amd64`).
    fn note(&self, _message: &str) {}
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Reporter for Silent {
    fn start(&self, _: Kind, _: &str, _: Option<u64>) -> TaskId {
        0
    }
    fn advance(&self, _: TaskId, _: u64) {}
    fn finish(&self, _: TaskId) {}
}

/// A shared reporter, cheap to clone into requests and worker threads.
#[derive(Clone)]
pub struct Shared(pub Arc<dyn Reporter>);

impl Shared {
    pub fn new(r: impl Reporter + 'static) -> Self {
        Shared(Arc::new(r))
    }
}

impl Default for Shared {
    fn default() -> Self {
        Shared(Arc::new(Silent))
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reporter")
    }
}

impl std::ops::Deref for Shared {
    type Target = dyn Reporter;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

/// A writer that reports the bytes passing through it to a task.
pub struct Counting<'a, W> {
    inner: W,
    reporter: &'a dyn Reporter,
    task: TaskId,
    pending: u64,
}

impl<'a, W: Write> Counting<'a, W> {
    pub fn new(inner: W, reporter: &'a dyn Reporter, task: TaskId) -> Self {
        Counting {
            inner,
            reporter,
            task,
            pending: 0,
        }
    }

    /// Report what is pending and return the inner writer.
    pub fn into_inner(mut self) -> W {
        self.report();
        self.inner
    }

    fn report(&mut self) {
        if self.pending > 0 {
            self.reporter.advance(self.task, self.pending);
            self.pending = 0;
        }
    }
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.pending += n as u64;
        // Batch events: one per 256 KiB keeps the cost invisible next to compression.
        if self.pending >= 256 << 10 {
            self.report();
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Bars on stderr: one per task, bytes and rate, cleared when the task ends.
pub struct Bars {
    multi: MultiProgress,
    next: AtomicU64,
    bars: Mutex<Vec<(TaskId, ProgressBar)>>,
    color: bool,
}

impl Bars {
    /// Bars drawn on stderr; `color` false (`NO_COLOR`) draws them without colour.
    pub fn new(color: bool) -> Self {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            next: AtomicU64::new(1),
            bars: Mutex::new(Vec::new()),
            color,
        }
    }

    /// The reporter the CLI installs: bars when stderr is a terminal and `quiet` is off,
    /// colour unless `NO_COLOR` is set (<https://no-color.org>), silence otherwise.
    pub fn for_terminal(quiet: bool) -> Shared {
        let tty = io::IsTerminal::is_terminal(&io::stderr());
        if quiet || !tty {
            return Shared::default();
        }
        let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        Shared::new(Bars::new(color))
    }

    fn style(&self, known: bool) -> ProgressStyle {
        let bar = if self.color {
            "{bar:30.cyan/blue}"
        } else {
            "{bar:30}"
        };
        let template = if known {
            format!("{{prefix:>5}} {{msg:40!}} {bar} {{bytes:>10}}/{{total_bytes:<10}} {{binary_bytes_per_sec:>12}}")
        } else {
            "{prefix:>5} {msg:40!} {bytes:>10} {binary_bytes_per_sec:>12}".to_string()
        };
        ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ")
    }

    fn find(&self, task: TaskId) -> Option<ProgressBar> {
        let bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        bars.iter()
            .find(|(t, _)| *t == task)
            .map(|(_, b)| b.clone())
    }
}

impl Reporter for Bars {
    fn start(&self, kind: Kind, label: &str, total: Option<u64>) -> TaskId {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let bar = match total {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::no_length(),
        };
        let bar = self.multi.add(bar);
        bar.set_style(self.style(total.is_some()));
        bar.set_prefix(kind.verb());
        bar.set_message(label.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        self.bars
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((id, bar));
        id
    }

    fn advance(&self, task: TaskId, bytes: u64) {
        if let Some(b) = self.find(task) {
            b.inc(bytes);
        }
    }

    fn finish(&self, task: TaskId) {
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = bars.iter().position(|(t, _)| *t == task) {
            let (_, b) = bars.remove(i);
            b.finish_and_clear();
            self.multi.remove(&b);
        }
    }

    fn note(&self, message: &str) {
        let _ = self.multi.println(message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records events, for tests of the stages that report.
    type Entry = (Kind, String, Option<u64>, u64);
    #[derive(Default)]
    struct Log(Mutex<Vec<Entry>>);

    impl Reporter for Log {
        fn start(&self, kind: Kind, label: &str, total: Option<u64>) -> TaskId {
            let mut l = self.0.lock().unwrap();
            l.push((kind, label.to_string(), total, 0));
            l.len() as u64 - 1
        }
        fn advance(&self, task: TaskId, bytes: u64) {
            self.0.lock().unwrap()[task as usize].3 += bytes;
        }
        fn finish(&self, _: TaskId) {}
    }

    #[test]
    fn counting_reports_every_byte_once() {
        let log = Log::default();
        let t = log.start(Kind::Layer, "x", Some(1 << 20));
        let mut w = Counting::new(Vec::new(), &log, t);
        for _ in 0..1000 {
            w.write_all(&[7u8; 1000]).unwrap();
        }
        let out = w.into_inner();
        assert_eq!(out.len(), 1_000_000);
        assert_eq!(log.0.lock().unwrap()[0].3, 1_000_000);
    }
}
