//! Where access-log lines go when they do not go through the log: a file (or stderr, for
//! JSON without a file), written by one dedicated thread so a request never waits for a disk.
//!
//! A request formats its line on its own thread and hands it over through a bounded channel
//! of [`QUEUE_LINES`] lines; when the channel is full the line is dropped and counted in
//! `fulcrum_access_log_dropped_total`. The writer appends what is queued in one batch and
//! flushes after each batch. SIGUSR1 makes it reopen the file at the same path (logrotate's
//! rename-then-signal, as nginx does); [`finish`] flushes what is queued before the process
//! exits (after a SIGTERM or SIGQUIT drain).

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use pingora_prometheus::prometheus::{self, IntCounter};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Lines that may wait for the writer; more are dropped.
pub const QUEUE_LINES: usize = 65_536;
/// Most lines written in one batch before a flush.
const BATCH_LINES: usize = 4096;
/// How often the writer looks at the reopen flag while idle.
const IDLE_WAKE: Duration = Duration::from_millis(100);
/// How long [`finish`] waits for the writer to flush.
const FINISH_WAIT: Duration = Duration::from_secs(5);

/// Where lines are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// The process's stderr.
    Stderr,
    /// A file, appended to.
    File(PathBuf),
}

/// The access-log file cannot be opened.
#[derive(Debug)]
pub struct OpenError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub source: io::Error,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot open {} for appending: {}",
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for OpenError {}

/// A message to the writer thread.
enum Msg {
    /// One line, without its newline.
    Line(String),
    /// Flush, then answer.
    Flush(SyncSender<()>),
}

/// The installed destination: the file opened at start, and the writer once it runs.
struct Sink {
    destination: Destination,
    /// The file opened by [`open`], taken by the writer thread when it starts.
    opened: Mutex<Option<File>>,
    /// Started on the first line, in the serving process (after Pingora daemonizes: a thread
    /// started before the fork would not exist in it).
    writer: OnceLock<SyncSender<Msg>>,
}

static SINK: OnceLock<Sink> = OnceLock::new();
static REOPEN: AtomicBool = AtomicBool::new(false);

/// `fulcrum_access_log_dropped_total`, registered in the default registry on first use.
fn dropped() -> &'static IntCounter {
    static C: OnceLock<IntCounter> = OnceLock::new();
    C.get_or_init(|| {
        let c = IntCounter::new(
            "fulcrum_access_log_dropped_total",
            "Access-log lines dropped because the writer fell behind",
        )
        .unwrap_or_else(|_| unreachable!("the name and help are valid"));
        let _ = prometheus::register(Box::new(c.clone()));
        c
    })
}

extern "C" fn on_sigusr1(_: nix::libc::c_int) {
    REOPEN.store(true, Ordering::Relaxed);
}

/// Make SIGUSR1 set the reopen flag (and not end the process, its default action).
fn handle_sigusr1() {
    let action = SigAction::new(
        SigHandler::Handler(on_sigusr1),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    if let Err(e) = unsafe { sigaction(Signal::SIGUSR1, &action) } {
        log::warn!("access log: cannot handle SIGUSR1: {e}");
    }
}

fn open_file(path: &Path) -> Result<File, OpenError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| OpenError {
            path: path.to_path_buf(),
            source,
        })
}

/// Open the destination now (before any port is bound, so a bad path stops the start) and
/// handle SIGUSR1. Lines are written from the first [`send`] on.
pub fn open(destination: Destination) -> Result<(), OpenError> {
    let opened = match &destination {
        Destination::File(path) => Some(open_file(path)?),
        Destination::Stderr => None,
    };
    dropped();
    handle_sigusr1();
    let _ = SINK.set(Sink {
        destination,
        opened: Mutex::new(opened),
        writer: OnceLock::new(),
    });
    Ok(())
}

/// Whether [`open`] installed a destination.
pub fn installed() -> bool {
    SINK.get().is_some()
}

/// Hand one line (without newline) to the writer; dropped and counted when it is behind.
pub fn send(line: String) {
    let Some(sink) = SINK.get() else { return };
    let tx = sink.writer.get_or_init(|| start_writer(sink));
    match tx.try_send(Msg::Line(line)) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => dropped().inc(),
    }
}

/// Write out every queued line; called once the server has stopped serving.
pub fn finish() {
    let Some(tx) = SINK.get().and_then(|s| s.writer.get()) else {
        return;
    };
    let (ack, done) = sync_channel(1);
    if tx.send(Msg::Flush(ack)).is_ok() {
        let _ = done.recv_timeout(FINISH_WAIT);
    }
}

fn start_writer(sink: &Sink) -> SyncSender<Msg> {
    let (tx, rx) = sync_channel(QUEUE_LINES);
    let out: Box<dyn Write + Send> = match &sink.destination {
        Destination::Stderr => Box::new(io::stderr()),
        Destination::File(path) => {
            let file = sink.opened.lock().ok().and_then(|mut f| f.take());
            match file.map_or_else(|| open_file(path), Ok) {
                Ok(f) => Box::new(f),
                Err(e) => {
                    log::error!("access log: {e}");
                    Box::new(io::sink())
                }
            }
        }
    };
    // Again in the serving process: a daemonizing parent may have replaced the handler.
    handle_sigusr1();
    let destination = sink.destination.clone();
    let spawned = std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || Writer::new(out, destination).run(rx));
    if let Err(e) = spawned {
        log::error!("access log: cannot start the writer thread: {e}");
    }
    tx
}

/// The writer thread's state.
struct Writer {
    out: BufWriter<Box<dyn Write + Send>>,
    destination: Destination,
}

impl Writer {
    fn new(out: Box<dyn Write + Send>, destination: Destination) -> Self {
        Writer {
            out: BufWriter::with_capacity(64 * 1024, out),
            destination,
        }
    }

    fn run(mut self, rx: Receiver<Msg>) {
        loop {
            let first = match rx.recv_timeout(IDLE_WAKE) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            self.reopen_if_asked();
            let Some(first) = first else { continue };
            self.handle(first);
            for m in rx.try_iter().take(BATCH_LINES) {
                self.handle(m);
            }
            self.flush();
        }
        self.flush();
    }

    fn handle(&mut self, m: Msg) {
        match m {
            Msg::Line(line) => {
                let _ = self
                    .out
                    .write_all(line.as_bytes())
                    .and_then(|()| self.out.write_all(b"\n"));
            }
            Msg::Flush(ack) => {
                self.flush();
                let _ = ack.send(());
            }
        }
    }

    fn flush(&mut self) {
        if let Err(e) = self.out.flush() {
            log::warn!("access log: write failed: {e}");
        }
    }

    /// After SIGUSR1: flush to the old file, then open the path anew.
    fn reopen_if_asked(&mut self) {
        if !REOPEN.swap(false, Ordering::Relaxed) {
            return;
        }
        let Destination::File(path) = self.destination.clone() else {
            return;
        };
        self.flush();
        match open_file(&path) {
            Ok(f) => {
                self.out = BufWriter::with_capacity(64 * 1024, Box::new(f));
                log::info!("access log: reopened {}", path.display());
            }
            Err(e) => {
                log::error!("access log: reopen after SIGUSR1: {e}; still writing the old file")
            }
        }
    }
}
