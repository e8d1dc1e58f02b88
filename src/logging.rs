//! Logging that never blocks the receiver. Log lines go to a bounded in-memory queue and a
//! writer thread of their own; when the reader of stderr stalls (a pipe nobody reads, a hung
//! terminal) the queue fills and further lines are dropped and counted, instead of blocking the
//! async workers that answer deliveries. The writer thread sleeps on its queue; when lines were
//! dropped, the next line that gets through is preceded by one that says how many.
//!
//! The receivers that run for a long time (the desktop app and `zof-approvals serve`) also keep
//! log files ([`init_with_files`]): one file a day (`zof-approvals.YYYY-MM-DD.log`, UTC dates) in
//! the log folder ([`default_log_dir`]), the last [`KEEP_LOG_FILES`] kept, each at most
//! [`MAX_FILE_BYTES`]. The file has a queue and
//! a writer thread of its own too, so a slow disk drops lines rather than delaying a delivery.
//! Nothing logs a secret or a request body, at any level.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use chrono::{NaiveDate, Utc};
use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Lines held while the writer is behind; beyond this they are dropped. The queue's slots are
/// allocated and touched when it is made (32 bytes each, one queue per destination), so this is
/// resident memory from the start: 4,096 is 128 KiB a queue (16,384 was half a MiB), and still
/// holds a burst of lines while a slow reader (a terminal) catches up.
const QUEUE_LINES: usize = 4_096;
/// The writer thread gathers the lines it takes in one pass over its queue into one write of up
/// to this many bytes, and writes what it holds whenever the queue is empty: under a burst a log
/// costs one system call per buffer instead of one per line, and a single line is never held back.
const WRITE_BUFFER_BYTES: usize = 16 * 1024;
/// Log files are named `zof-approvals.YYYY-MM-DD.log`.
pub const LOG_FILE_PREFIX: &str = "zof-approvals";
pub const LOG_FILE_SUFFIX: &str = "log";
/// How many daily files are kept; older ones are deleted when a new one starts.
pub const KEEP_LOG_FILES: usize = 7;
/// A day's file stops growing at this size (a flood of debug lines cannot fill the disk: the
/// folder holds at most [`KEEP_LOG_FILES`] times this); the rest of that day's lines are dropped,
/// after one line that says so.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;
const CAPPED_NOTE: &[u8] = b"-- this log file reached its size limit: further lines today are dropped --\n";
/// The environment variable that sets the level (`ZOF_LOG=debug`, or any `EnvFilter` directive).
pub const LEVEL_ENV: &str = "ZOF_LOG";

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("cannot find the home directory to keep logs in; pass --log-dir")]
    NoHome,
    #[error("cannot create the log folder {path}: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("cannot open a log file in {path}: {source}")]
    OpenFile { path: PathBuf, source: tracing_appender::rolling::InitError },
}

/// The OS's folder for log files: `$XDG_STATE_HOME/zof-approvals/logs` (`~/.local/state/...`) on
/// Linux; elsewhere, where there is no state dir, `logs` in the data dir.
pub fn default_log_dir() -> Result<PathBuf, LoggingError> {
    let dirs = directories::ProjectDirs::from("ai", "Zof", "zof-approvals").ok_or(LoggingError::NoHome)?;
    Ok(match dirs.state_dir() {
        Some(state) => state.join("logs"),
        None => dirs.data_dir().join("logs"),
    })
}

/// The log folder for a receiver: `log_dir` when given; else `logs` in an overridden data dir
/// (`--data-dir`, as tests and portable setups use, so they leave nothing in the user's folders);
/// else [`default_log_dir`].
pub fn resolve_log_dir(log_dir: Option<&Path>, data_dir: Option<&Path>) -> Result<PathBuf, LoggingError> {
    match (log_dir, data_dir) {
        (Some(dir), _) => Ok(dir.to_path_buf()),
        (None, Some(data)) => Ok(data.join("logs")),
        (None, None) => default_log_dir(),
    }
}

/// Keeps the writer threads alive; dropping it flushes what is queued.
#[derive(Debug)]
pub struct LogGuard {
    _writers: Vec<WorkerGuard>,
    dropped: Vec<ErrorCounter>,
    dir: Option<PathBuf>,
}

impl LogGuard {
    /// How many lines were dropped because a log's writer did not keep up.
    pub fn dropped_lines(&self) -> usize {
        self.dropped.iter().map(ErrorCounter::dropped_lines).sum()
    }

    /// The folder the log files go to, when there are any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }
}

fn lossy(writer: impl std::io::Write + Send + 'static) -> (NonBlocking, WorkerGuard) {
    let counter: Arc<OnceLock<ErrorCounter>> = Arc::new(OnceLock::new());
    let seen = counter.clone();
    let dropped = move || seen.get().map_or(0, ErrorCounter::dropped_lines);
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUE_LINES)
        .finish(ReportsDrops::new(std::io::BufWriter::with_capacity(WRITE_BUFFER_BYTES, writer), dropped));
    let _ = counter.set(writer.error_counter());
    (writer, guard)
}

/// Says in the log itself how many lines were dropped, just before the next line that got
/// through. Runs on the writer thread, which sleeps on its queue: nothing wakes to look.
struct ReportsDrops<W, D> {
    inner: W,
    dropped: D,
    reported: usize,
}

impl<W: Write, D: Fn() -> usize> ReportsDrops<W, D> {
    fn new(inner: W, dropped: D) -> ReportsDrops<W, D> {
        ReportsDrops { inner, dropped, reported: 0 }
    }
}

impl<W: Write, D: Fn() -> usize> Write for ReportsDrops<W, D> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let now = (self.dropped)();
        if now > self.reported {
            let note = format!(
                "-- {} log lines were dropped: the log's reader is not keeping up ({now} in all) --\n",
                now - self.reported
            );
            self.reported = now;
            self.inner.write_all(note.as_bytes())?;
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn filter(default_filter: &str) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_env(LEVEL_ENV).unwrap_or_else(|_| default_filter.into())
}

/// Logs to stderr at the level in `ZOF_LOG` (default `default_filter`), without ever blocking.
pub fn init_stderr(default_filter: &str) -> LogGuard {
    let (writer, guard) = lossy(std::io::stderr());
    let dropped = writer.error_counter();
    // A second initialisation (tests, embedding) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_ansi(stderr_wants_colour())
        .with_writer(writer)
        .with_env_filter(filter(default_filter))
        .try_init();
    guard_with(vec![guard], vec![dropped], None)
}

/// Logs to stderr and to daily files in `dir` (created if missing), at the level in `ZOF_LOG`
/// (default `default_filter`), without ever blocking. Fails only when the folder or today's
/// file cannot be opened; the caller then falls back to [`init_stderr`].
pub fn init_with_files(default_filter: &str, dir: &Path) -> Result<LogGuard, LoggingError> {
    let appender = log_file_appender(dir)?;
    let (stderr, stderr_guard) = lossy(std::io::stderr());
    let (file, file_guard) = lossy(appender);
    let dropped = vec![stderr.error_counter(), file.error_counter()];
    let _ = tracing_subscriber::registry()
        .with(filter(default_filter))
        .with(tracing_subscriber::fmt::layer().with_ansi(stderr_wants_colour()).with_writer(stderr))
        .with(tracing_subscriber::fmt::layer().with_ansi(false).with_writer(file))
        .try_init();
    Ok(guard_with(vec![stderr_guard, file_guard], dropped, Some(dir.to_path_buf())))
}

/// Colour codes only for a person at a terminal: never into a pipe, a file or the journal, where
/// they would be noise, and never when `NO_COLOR` is set (<https://no-color.org>).
fn stderr_wants_colour() -> bool {
    use std::io::IsTerminal;
    wants_colour(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR").as_deref())
}

/// `NO_COLOR` counts when it is set to anything but the empty string, as no-color.org says.
fn wants_colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(std::ffi::OsStr::is_empty)
}

/// One file a day in `dir`, the last [`KEEP_LOG_FILES`] kept, each at most [`MAX_FILE_BYTES`].
fn log_file_appender(dir: &Path) -> Result<CappedFile<RollingFileAppender>, LoggingError> {
    std::fs::create_dir_all(dir).map_err(|source| LoggingError::CreateDir { path: dir.into(), source })?;
    let appender = RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_prefix(LOG_FILE_PREFIX)
        .filename_suffix(LOG_FILE_SUFFIX)
        .max_log_files(KEEP_LOG_FILES)
        .build(dir)
        .map_err(|source| LoggingError::OpenFile { path: dir.into(), source })?;
    // A restart on the same day appends to that day's file: count what it holds already.
    let today = Utc::now().date_naive();
    let written = std::fs::metadata(dir.join(file_name(today))).map_or(0, |m| m.len());
    Ok(CappedFile { inner: appender, cap: MAX_FILE_BYTES, day: today, written, capped: false })
}

/// The name the appender gives the file of `day` (UTC, as the appender dates them).
fn file_name(day: NaiveDate) -> String {
    format!("{LOG_FILE_PREFIX}.{}.{LOG_FILE_SUFFIX}", day.format("%Y-%m-%d"))
}

/// Drops a day's lines beyond `cap` bytes. Runs on the file's writer thread only.
#[derive(Debug)]
struct CappedFile<W> {
    inner: W,
    cap: u64,
    day: NaiveDate,
    written: u64,
    capped: bool,
}

impl<W: Write> CappedFile<W> {
    fn write_on(&mut self, today: NaiveDate, buf: &[u8]) -> std::io::Result<usize> {
        if today != self.day {
            (self.day, self.written, self.capped) = (today, 0, false);
        }
        if self.written + buf.len() as u64 > self.cap {
            if !self.capped {
                self.capped = true;
                self.inner.write_all(CAPPED_NOTE)?;
            }
            return Ok(buf.len());
        }
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
}

impl<W: Write> Write for CappedFile<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_on(Utc::now().date_naive(), buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn guard_with(writers: Vec<WorkerGuard>, dropped: Vec<ErrorCounter>, dir: Option<PathBuf>) -> LogGuard {
    LogGuard { _writers: writers, dropped, dir }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_file_is_created_in_a_new_folder_with_the_daily_name() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("state/logs");
        let mut appender = log_file_appender(&logs).unwrap();
        appender.write_all(b"a line\n").unwrap();
        appender.flush().unwrap();
        drop(appender);
        let names: Vec<String> =
            std::fs::read_dir(&logs).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
        assert_eq!(names, vec![format!("zof-approvals.{today}.log")]);
        assert_eq!(std::fs::read_to_string(logs.join(&names[0])).unwrap(), "a line\n");
        let reopened = log_file_appender(&logs).unwrap();
        assert_eq!(reopened.written, 7, "a restart counts what today's file holds");
    }

    #[test]
    fn a_day_s_file_stops_at_its_size_limit_and_says_so_once_and_the_next_day_starts_afresh() {
        let day = NaiveDate::from_ymd_opt(2026, 5, 1).unwrap();
        let mut file = CappedFile { inner: Vec::new(), cap: 10, day, written: 0, capped: false };
        for line in [&b"12345\n"[..], b"67890\n", b"abcde\n"] {
            assert_eq!(file.write_on(day, line).unwrap(), line.len(), "a dropped line still counts as written");
        }
        let next = day.succ_opt().unwrap();
        file.write_on(next, b"next\n").unwrap();
        let expected = [&b"12345\n"[..], CAPPED_NOTE, b"next\n"].concat();
        assert_eq!(String::from_utf8(file.inner).unwrap(), String::from_utf8(expected).unwrap());
    }

    #[test]
    fn colour_is_for_terminals_only_and_never_with_no_color() {
        let set = Some(std::ffi::OsStr::new("1"));
        assert!(wants_colour(true, None));
        assert!(!wants_colour(false, None), "a pipe or a file gets no escape codes");
        assert!(!wants_colour(true, set), "NO_COLOR wins over a terminal");
        assert!(wants_colour(true, Some(std::ffi::OsStr::new(""))), "an empty NO_COLOR is unset");
    }

    #[test]
    fn dropped_lines_are_reported_once_before_the_next_line_that_gets_through() {
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = dropped.clone();
        let mut log = ReportsDrops::new(Vec::new(), move || count.load(std::sync::atomic::Ordering::Relaxed));
        log.write_all(b"one\n").unwrap();
        dropped.store(3, std::sync::atomic::Ordering::Relaxed);
        log.write_all(b"two\n").unwrap();
        log.write_all(b"three\n").unwrap();
        let expected =
            "one\n-- 3 log lines were dropped: the log's reader is not keeping up (3 in all) --\ntwo\nthree\n";
        assert_eq!(String::from_utf8(log.inner).unwrap(), expected);
    }

    #[test]
    fn a_log_folder_that_cannot_be_created_is_a_named_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"").unwrap();
        let err = log_file_appender(&file.join("logs")).unwrap_err();
        assert!(matches!(err, LoggingError::CreateDir { .. }), "{err}");
        assert!(err.to_string().contains("a-file"), "{err}");
    }
}
