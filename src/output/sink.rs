//! Where NDJSON lines go: a file or standard output, buffered, with the first write error
//! kept so the run can end cleanly and say what failed.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

pub struct Sink {
    name: String,
    out: BufWriter<Box<dyn Write + Send>>,
    lines: u64,
    error: Option<io::Error>,
}

impl Sink {
    /// "-" is standard output.
    pub fn create(path: &Path) -> io::Result<Sink> {
        if path.as_os_str() == "-" {
            return Ok(Sink::from_writer("standard output", Box::new(io::stdout())));
        }
        let f =
            File::create(path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(Sink::from_writer(&path.display().to_string(), Box::new(f)))
    }

    pub fn from_writer(name: &str, w: Box<dyn Write + Send>) -> Sink {
        Sink { name: name.to_string(), out: BufWriter::with_capacity(256 << 10, w), lines: 0, error: None }
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
            Err(e) => self.error = Some(e),
        }
    }

    pub fn flush(&mut self) {
        if self.error.is_none() {
            if let Err(e) = self.out.flush() {
                self.error = Some(e);
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

/// A path argument for an output, as given on the command line.
pub fn describe(p: &Option<PathBuf>) -> String {
    match p {
        Some(p) if p.as_os_str() == "-" => "standard output".into(),
        Some(p) => p.display().to_string(),
        None => "off".into(),
    }
}
