//! Process-wide shutdown: one trigger, any number of waiters on any thread.
//!
//! Built on a channel that is closed, never written: closing wakes every
//! receiver on every shard at once, and `is_triggered` is a cheap check.

use std::thread;

use nix::sys::signal::{SigSet, Signal};

/// Fires shutdown when dropped or when `trigger` is called.
pub struct ShutdownTrigger {
    tx: async_channel::Sender<()>,
}

/// Cloneable, Send: every shard and thread holds one.
#[derive(Clone)]
pub struct Shutdown {
    rx: async_channel::Receiver<()>,
}

impl Shutdown {
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = async_channel::bounded(1);
        (ShutdownTrigger { tx }, Shutdown { rx })
    }

    pub fn is_triggered(&self) -> bool {
        self.rx.is_closed()
    }

    /// Resolves once shutdown has been triggered. Cancellation-safe.
    pub async fn wait(&self) {
        // Nothing is ever sent: recv only returns when the channel closes.
        let _ = self.rx.recv().await;
    }
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        self.tx.close();
    }
}

/// Blocks SIGINT and SIGTERM in the calling thread (call it from `main`
/// before any other thread starts, so every thread inherits the mask) and
/// starts a thread that waits for either signal and then triggers shutdown.
/// A second signal exits the process at once.
pub fn install_signal_handler(trigger: ShutdownTrigger) -> std::io::Result<()> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.thread_block().map_err(std::io::Error::from)?;
    thread::Builder::new().name("signals".into()).spawn(move || {
        let mut first = true;
        loop {
            match set.wait() {
                Ok(sig) if first => {
                    tracing::info!(signal = ?sig, "shutdown requested");
                    trigger.trigger();
                    first = false;
                }
                Ok(sig) => {
                    tracing::warn!(signal = ?sig, "second signal: exiting now");
                    std::process::exit(130);
                }
                Err(e) => {
                    tracing::error!(error = %e, "sigwait failed");
                    return;
                }
            }
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Triggering wakes waiters on other threads and is visible to is_triggered.
    #[test]
    fn trigger_wakes_waiters() {
        let (trigger, shutdown) = Shutdown::new();
        let s2 = shutdown.clone();
        let waiter = thread::spawn(move || futures_lite_block_on(s2.wait()));
        assert!(!shutdown.is_triggered());
        trigger.trigger();
        waiter.join().unwrap();
        assert!(shutdown.is_triggered());
    }

    fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
        futures_lite::future::block_on(f)
    }
}
