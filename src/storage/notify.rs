//! A single-threaded "state changed" notifier: waiters take a ticket, check
//! their condition, then await the ticket; any `notify_all` after the ticket
//! was taken wakes them. Used by the log's writer to wake `wait_written`,
//! `wait_durable` and back-pressured appends. Shard-local, `!Send`.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
pub(crate) struct Notify {
    generation: Cell<u64>,
    wakers: RefCell<Vec<Waker>>,
}

impl Notify {
    /// Wakes everyone who took a ticket before this call.
    pub fn notify_all(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        for w in wakers {
            w.wake();
        }
    }

    /// A ticket: resolves at the first `notify_all` after this call.
    pub fn notified(&self) -> Notified<'_> {
        Notified {
            notify: self,
            generation: self.generation.get(),
        }
    }
}

pub(crate) struct Notified<'a> {
    notify: &'a Notify,
    generation: u64,
}

impl Future for Notified<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notify.generation.get() != self.generation {
            return Poll::Ready(());
        }
        // A waiter polled spuriously may register twice; the list is drained on
        // every notify, so it stays bounded by the polls between two notifies.
        self.notify.wakers.borrow_mut().push(cx.waker().clone());
        Poll::Pending
    }
}
