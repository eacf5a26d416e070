//! Where the logs go: standard output through one 64 KiB buffer, written out every 100 ms, when
//! it fills, and before the process exits (nginx's `access_log ... buffer=64k flush=100ms`).
//! An access log line per request then costs a copy under an uncontended lock, not a `write`
//! system call; the price is that a killed process (SIGKILL, a crash) loses at most the last
//! 100 ms of lines.

use std::io::{self, BufWriter, Write};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long a line may wait in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

const BUFFER: usize = 64 * 1024;

/// The process's log output (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct Output {
    out: &'static Mutex<BufWriter<Sink>>,
    /// Each line goes out at once.
    terminal: bool,
}

/// Standard output.
#[derive(Debug)]
struct Sink(io::Stdout);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

static OUTPUT: OnceLock<Mutex<BufWriter<Sink>>> = OnceLock::new();

impl Output {
    /// The buffered standard output, and a thread that writes it out every [`FLUSH_EVERY`].
    /// On a terminal lines go out at once (a person is reading).
    pub fn stdout(terminal: bool) -> Output {
        let mut started = false;
        let out = OUTPUT.get_or_init(|| {
            started = true;
            Mutex::new(BufWriter::with_capacity(BUFFER, Sink(io::stdout())))
        });
        if started && !terminal {
            // Best effort: without the thread, lines still go out when the buffer fills and
            // at exit.
            let _ = std::thread::Builder::new()
                .name("jwtgate-logs".into())
                .spawn(|| loop {
                    std::thread::sleep(FLUSH_EVERY);
                    flush();
                });
        }
        Output { out, terminal }
    }
}

/// Writes out what the log buffer holds (call before the process exits).
pub fn flush() {
    if let Some(out) = OUTPUT.get() {
        let _ = lock(out).flush();
    }
}

fn lock(out: &Mutex<BufWriter<Sink>>) -> MutexGuard<'_, BufWriter<Sink>> {
    // A panic while holding the lock cannot leave the buffer in a state worse than a torn
    // line; keep logging.
    out.lock().unwrap_or_else(|e| e.into_inner())
}

/// One event's write (the formatter writes each event's line in one call).
#[derive(Debug)]
pub struct Line<'a>(MutexGuard<'a, BufWriter<Sink>>, bool);

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)?;
        if self.1 {
            self.0.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        // The buffer is written out by the flusher, not after every line.
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Output {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line(lock(self.out), self.terminal)
    }
}
