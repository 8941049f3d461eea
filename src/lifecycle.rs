//! The process's life around Pingora's: knowing when it drains, and telling `--reload` when
//! it owns its sockets.

use async_trait::async_trait;
use pingora_core::server::{ExecutionPhase, ShutdownWatch};
use pingora_core::services::background::BackgroundService;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use tokio::sync::broadcast::{error::RecvError, Receiver};

/// Set once this process hands its sockets over (SIGQUIT) or shuts down (SIGTERM).
static DRAINING: AtomicBool = AtomicBool::new(false);

/// Whether this process is draining: responses then close their connections, so keep-alive
/// clients reconnect (to the new process, during an upgrade) instead of sending their next
/// request on a connection that is about to be dropped.
pub fn draining() -> bool {
    DRAINING.load(Ordering::Relaxed)
}

/// Watches Pingora's execution phase and sets [`draining`]. A background service, so that it
/// runs in the (possibly daemonized) serving process.
pub struct DrainWatch(Mutex<Option<Receiver<ExecutionPhase>>>);

impl DrainWatch {
    /// A watch on the phases `Server::watch_execution_phase` reports.
    pub fn new(phases: Receiver<ExecutionPhase>) -> Self {
        DrainWatch(Mutex::new(Some(phases)))
    }
}

#[async_trait]
impl BackgroundService for DrainWatch {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let phases = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(mut phases) = phases else {
            return;
        };
        loop {
            tokio::select! {
                phase = phases.recv() => match phase {
                    Ok(ExecutionPhase::GracefulUpgradeTransferringFds
                        | ExecutionPhase::GracefulUpgradeCloseTimeout
                        | ExecutionPhase::GracefulTerminate
                        | ExecutionPhase::ShutdownStarted) => {
                        DRAINING.store(true, Ordering::Relaxed);
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                },
                _ = shutdown.changed() => {
                    DRAINING.store(true, Ordering::Relaxed);
                    return;
                }
            }
        }
    }
}

/// Writes `pid_file` once the process owns its listening sockets (Pingora writes it only when
/// daemonizing, and before the sockets are taken over); `--reload` waits for it.
pub struct PidFile(pub String);

#[async_trait]
impl BackgroundService for PidFile {
    async fn start(&self, _shutdown: ShutdownWatch) {
        if let Err(e) = std::fs::write(&self.0, format!("{}\n", std::process::id())) {
            log::warn!("cannot write pid file {}: {e}", self.0);
        }
    }
}
