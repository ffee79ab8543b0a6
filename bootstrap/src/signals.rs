//! Stop signals: SIGTERM (what container runtimes send) and SIGINT (ctrl-c).
//!
//! [`StopSignals`] receives them one after the other (`ingest` stops on the first and gives up
//! on the batch in hand at the second); [`wait_for_stop_signal`] resolves at the first.

use std::io;

use tokio::signal::unix::{signal, Signal, SignalKind};

/// Which stop signal arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    Terminate,
    Interrupt,
}

impl StopSignal {
    /// `SIGTERM` or `SIGINT`, for logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Terminate => "SIGTERM",
            Self::Interrupt => "SIGINT",
        }
    }
}

/// SIGTERM and SIGINT handlers, installed by [`StopSignals::listen`]: from then on neither
/// signal ends the process by itself.
pub struct StopSignals {
    terminate: Signal,
    interrupt: Signal,
}

impl StopSignals {
    /// Installs the handlers; must be called within a Tokio runtime.
    pub fn listen() -> io::Result<Self> {
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// The next stop signal.
    pub async fn recv(&mut self) -> StopSignal {
        tokio::select! {
            _ = self.terminate.recv() => StopSignal::Terminate,
            _ = self.interrupt.recv() => StopSignal::Interrupt,
        }
    }
}

/// Resolves at the first SIGTERM or SIGINT. Should the handlers not install, only ctrl-c
/// (as far as Tokio can still watch for it) ends the wait.
pub async fn wait_for_stop_signal() {
    match StopSignals::listen() {
        Ok(mut signals) => {
            signals.recv().await;
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_sigterm_is_received_instead_of_ending_the_process() {
        let mut signals = StopSignals::listen().expect("handlers");
        let status = tokio::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .await
            .expect("kill runs");
        assert!(status.success());
        let received = tokio::time::timeout(Duration::from_secs(10), signals.recv()).await;
        assert_eq!(received, Ok(StopSignal::Terminate));
    }
}
