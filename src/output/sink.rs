//! Where NDJSON lines go: a file or standard output, buffered, with the first write error
//! kept so the run can end cleanly and say what failed.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

pub struct Sink {
    name: String,
    out: BufWriter<Counted>,
    /// The file behind `out`, when there is one: on a write error it is cut back to its last
    /// whole line, so a full disk never leaves half a record behind.
    file: Option<File>,
    lines: u64,
    error: Option<io::Error>,
}

/// Counts the bytes the OS accepted.
struct Counted {
    inner: Box<dyn Write + Send>,
    accepted: u64,
}

impl Write for Counted {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.accepted += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Sink {
    /// "-" is standard output.
    pub fn create(path: &Path) -> io::Result<Sink> {
        if path.as_os_str() == "-" {
            return Ok(Sink::from_writer("standard output", Box::new(io::stdout())));
        }
        // Readable too: after a failed write the file is read back to cut it at a line end.
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let keep = f.try_clone().ok();
        let mut sink = Sink::from_writer(&path.display().to_string(), Box::new(f));
        sink.file = keep;
        Ok(sink)
    }

    pub fn from_writer(name: &str, w: Box<dyn Write + Send>) -> Sink {
        Sink {
            name: name.to_string(),
            out: BufWriter::with_capacity(256 << 10, Counted { inner: w, accepted: 0 }),
            file: None,
            lines: 0,
            error: None,
        }
    }

    fn fail(&mut self, e: io::Error) {
        self.error = Some(e);
        let accepted = self.out.get_ref().accepted;
        if let Some(f) = self.file.as_mut() {
            cut_to_last_line(f, accepted);
        }
    }

    /// A sink that keeps nothing (for runs that only want the summary).
    pub fn discard() -> Sink {
        Sink::from_writer("nowhere", Box::new(io::sink()))
    }

    /// Writes one line; after the first error, further lines are dropped (and not counted).
    pub fn line(&mut self, s: &str) {
        if self.error.is_some() {
            return;
        }
        let r = self.out.write_all(s.as_bytes()).and_then(|_| self.out.write_all(b"\n"));
        match r {
            Ok(()) => self.lines += 1,
            Err(e) => self.fail(e),
        }
    }

    pub fn flush(&mut self) {
        if self.error.is_none() {
            if let Err(e) = self.out.flush() {
                self.fail(e);
            }
        }
    }

    pub fn lines(&self) -> u64 {
        self.lines
    }

    pub fn failed(&self) -> bool {
        self.error.is_some()
    }

    /// The first write error, with the sink's name.
    pub fn take_error(&mut self) -> Option<(String, io::Error)> {
        self.error.take().map(|e| (self.name.clone(), e))
    }
}

/// Truncates `f` after the last newline within its first `len` bytes (best effort: this
/// runs after a write already failed).
fn cut_to_last_line(f: &mut File, len: u64) {
    use std::io::{Read, Seek, SeekFrom};
    let start = len.saturating_sub(1 << 20);
    let mut tail = Vec::new();
    if f.seek(SeekFrom::Start(start)).is_err() || f.take(len - start).read_to_end(&mut tail).is_err() {
        return;
    }
    let keep = match tail.iter().rposition(|b| *b == b'\n') {
        Some(i) => start + i as u64 + 1,
        None => start,
    };
    let _ = f.set_len(keep);
}

/// A path argument for an output, as given on the command line.
pub fn describe(p: &Option<PathBuf>) -> String {
    match p {
        Some(p) if p.as_os_str() == "-" => "standard output".into(),
        Some(p) => p.display().to_string(),
        None => "off".into(),
    }
}
