//! Where the logs go: standard output, through tracing-appender's non-blocking writer. A request
//! thread formats its line and hands it to a queue; one writer thread drains the queue into a
//! 64 KiB buffer and writes it out whenever the queue is empty (so lines reach stdout at once
//! when the gateway is quiet, and in large writes when it is busy).
//!
//! Loss policy: when nobody reads standard output (a full pipe, a stalled log shipper), the
//! writer thread blocks, never a request. Up to [`QUEUE_LINES`] lines wait in memory; after
//! that new lines are dropped, and counted: `jwtgate_log_lines_dropped_total`. Lines still
//! queued when the process exits are written out first (for at most [`EXIT_WAIT`]).

use std::io::{self, BufWriter};
use std::sync::{Mutex, OnceLock};

use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};

/// Most log lines waiting for standard output before new ones are dropped.
pub const QUEUE_LINES: usize = 16 * 1024;

const BUFFER: usize = 64 * 1024;

/// The writer, its drop counter, and its thread's guard (dropping it writes out what is
/// queued).
struct Output {
    writer: NonBlocking,
    dropped: ErrorCounter,
    guard: Mutex<Option<WorkerGuard>>,
}

static OUTPUT: OnceLock<Output> = OnceLock::new();

/// The log writer for standard output (see the module docs): one queue and one writer thread
/// per process.
pub fn stdout() -> NonBlocking {
    OUTPUT
        .get_or_init(|| {
            let (writer, guard) = NonBlockingBuilder::default()
                .lossy(true)
                .buffered_lines_limit(QUEUE_LINES)
                .thread_name("jwtgate-logs")
                .finish(BufWriter::with_capacity(BUFFER, io::stdout()));
            Output {
                dropped: writer.error_counter(),
                writer,
                guard: Mutex::new(Some(guard)),
            }
        })
        .writer
        .clone()
}

/// Lines dropped because standard output was not taking them fast enough.
pub fn dropped_lines() -> u64 {
    OUTPUT.get().map_or(0, |o| o.dropped.dropped_lines() as u64)
}

/// Writes out what is queued and stops the writer thread (call before the process exits),
/// waiting at most [`EXIT_WAIT`]: when standard output is blocked, the rest is lost rather than
/// the exit.
pub fn flush() {
    let Some(Output { guard, .. }) = OUTPUT.get() else {
        return;
    };
    let Some(guard) = guard.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return;
    };
    // The guard's drop waits for the writer thread, and prints to standard output itself when
    // the queue stays full: on a thread of its own, so that a blocked stdout cannot hold the
    // exit.
    let (done, wait) = std::sync::mpsc::channel();
    let dropping = std::thread::Builder::new()
        .name("jwtgate-logs-exit".into())
        .spawn(move || {
            drop(guard);
            let _ = done.send(());
        });
    if dropping.is_ok() {
        let _ = wait.recv_timeout(EXIT_WAIT);
    }
}

/// How long an exit waits for queued log lines to be written.
pub const EXIT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
