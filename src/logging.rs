//! Logging that never blocks the receiver. Log lines go to a bounded in-memory queue and a
//! writer thread of their own; when the reader of stderr stalls (a pipe nobody reads, a hung
//! terminal) the queue fills and further lines are dropped and counted, instead of blocking the
//! async workers that answer deliveries. The count of dropped lines is reported once it grows.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};

/// Lines held while the writer is behind; beyond this they are dropped.
const QUEUE_LINES: usize = 16_384;
/// How often the count of dropped lines is looked at.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Keeps the writer thread alive; dropping it flushes what is queued.
#[derive(Debug)]
pub struct LogGuard {
    _writer: WorkerGuard,
    stop: Arc<AtomicBool>,
    dropped: ErrorCounter,
}

impl LogGuard {
    /// How many lines were dropped because the log's reader did not keep up.
    pub fn dropped_lines(&self) -> usize {
        self.dropped.dropped_lines()
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Logs to stderr at the level in `ZOF_LOG` (default `default_filter`), without ever blocking.
pub fn init_stderr(default_filter: &str) -> LogGuard {
    let (writer, guard) =
        NonBlockingBuilder::default().lossy(true).buffered_lines_limit(QUEUE_LINES).finish(std::io::stderr());
    let dropped = writer.error_counter();
    let filter = tracing_subscriber::EnvFilter::try_from_env("ZOF_LOG").unwrap_or_else(|_| default_filter.into());
    // A second initialisation (tests, embedding) keeps the first subscriber.
    let _ = tracing_subscriber::fmt().with_writer(writer).with_env_filter(filter).try_init();
    let stop = Arc::new(AtomicBool::new(false));
    let (counter, stopped) = (dropped.clone(), stop.clone());
    let _ = std::thread::Builder::new().name("zof-log-drops".into()).spawn(move || report_drops(&counter, &stopped));
    LogGuard { _writer: guard, stop, dropped }
}

fn report_drops(counter: &ErrorCounter, stop: &AtomicBool) {
    let mut reported = 0;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(REPORT_EVERY);
        let now = counter.dropped_lines();
        if now > reported {
            tracing::warn!(
                dropped = now - reported,
                total = now,
                "log lines were dropped: the log's reader is not keeping up"
            );
            reported = now;
        }
    }
}
