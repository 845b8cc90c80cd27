//! The queue that carries a rollout's events to its handle.
//!
//! Unbounded like the `tokio::sync::mpsc` channel it replaces, but its memory follows
//! its backlog: tokio's unbounded channel allocates its slots in blocks of 32 events
//! and keeps up to two blocks per channel (8.7 KB for a `RolloutEvent`) even when
//! the handle reads every event as it comes, which was a quarter of what a waiting
//! rollout kept (benches/many_rollouts.rs). A rollout emits a few events per step,
//! so a `VecDeque` behind a mutex costs nothing measurable and keeps a handful.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

use super::RolloutEvent;

/// Above this many slots an emptied queue gives its memory back: a backlog that a
/// slow reader let grow is not kept for the rest of the rollout.
const KEPT_CAPACITY: usize = 8;

struct Shared {
    queue: Mutex<VecDeque<RolloutEvent>>,
    /// The receiver waits here; a send, and the last sender going away, wake it.
    ready: Notify,
    senders: AtomicUsize,
    receiver_alive: AtomicBool,
}

/// A new queue: its sending and receiving ends.
pub(crate) fn event_queue() -> (EventSender, EventReceiver) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(VecDeque::new()),
        ready: Notify::new(),
        senders: AtomicUsize::new(1),
        receiver_alive: AtomicBool::new(true),
    });
    (EventSender { shared: Arc::clone(&shared) }, EventReceiver { shared })
}

/// The receiver is gone: the event was dropped.
#[derive(Debug)]
pub(crate) struct Closed;

/// The run's end: cloned wherever the run emits.
pub(crate) struct EventSender {
    shared: Arc<Shared>,
}

impl EventSender {
    /// Queues `event`; fails (dropping it) when nobody can receive it any more.
    pub(crate) fn send(&self, event: RolloutEvent) -> Result<(), Closed> {
        if self.is_closed() {
            return Err(Closed);
        }
        self.shared.queue.lock().unwrap_or_else(PoisonError::into_inner).push_back(event);
        self.shared.ready.notify_one();
        Ok(())
    }

    /// Whether the receiver is gone (nobody listens: events need not be built).
    pub(crate) fn is_closed(&self) -> bool {
        !self.shared.receiver_alive.load(Ordering::Acquire)
    }
}

impl Clone for EventSender {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::AcqRel);
        Self { shared: Arc::clone(&self.shared) }
    }
}

impl Drop for EventSender {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last sender: a waiting receiver learns that no event will come.
            self.shared.ready.notify_one();
        }
    }
}

/// The handle's end.
pub(crate) struct EventReceiver {
    shared: Arc<Shared>,
}

impl EventReceiver {
    /// The next event, waiting for it; `None` once every sender is gone and the
    /// queue is empty.
    pub(crate) async fn recv(&mut self) -> Option<RolloutEvent> {
        let shared = Arc::clone(&self.shared);
        loop {
            // Registered before looking, so that a send between the look and the
            // wait is not missed.
            let notified = shared.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(event) = self.try_recv() {
                return Some(event);
            }
            if shared.senders.load(Ordering::Acquire) == 0 {
                // A send that raced the last drop is still delivered.
                return self.try_recv();
            }
            notified.await;
        }
    }

    /// An event already queued, without waiting.
    pub(crate) fn try_recv(&mut self) -> Option<RolloutEvent> {
        let mut queue = self.shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let event = queue.pop_front();
        if queue.is_empty() && queue.capacity() > KEPT_CAPACITY {
            queue.shrink_to(KEPT_CAPACITY);
        }
        event
    }

    /// Stops receiving: later sends fail (the run stops building events) and what is
    /// queued is dropped now, not when the run ends.
    pub(crate) fn close(&mut self) {
        self.shared.receiver_alive.store(false, Ordering::Release);
        self.shared.queue.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

impl std::fmt::Debug for EventReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let queued = self.shared.queue.lock().unwrap_or_else(PoisonError::into_inner).len();
        f.debug_struct("EventReceiver").field("queued", &queued).finish()
    }
}

impl Drop for EventReceiver {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(n: usize) -> RolloutEvent {
        RolloutEvent::Decision { message: format!("event {n}") }
    }

    fn message(event: Option<RolloutEvent>) -> Option<String> {
        match event {
            Some(RolloutEvent::Decision { message }) => Some(message),
            _ => None,
        }
    }

    #[tokio::test]
    async fn events_arrive_in_order_and_the_end_is_seen_after_the_last() {
        let (tx, mut rx) = event_queue();
        let second = tx.clone();
        tx.send(decision(1)).unwrap();
        second.send(decision(2)).unwrap();
        drop(tx);
        assert_eq!(message(rx.recv().await).as_deref(), Some("event 1"));
        drop(second);
        assert_eq!(message(rx.recv().await).as_deref(), Some("event 2"));
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_for_a_send_and_for_the_last_drop() {
        let (tx, mut rx) = event_queue();
        let waiter = tokio::spawn(async move {
            let first = message(rx.recv().await);
            let end = rx.recv().await.is_none();
            (first, end)
        });
        tokio::task::yield_now().await;
        tx.send(decision(7)).unwrap();
        tokio::task::yield_now().await;
        drop(tx);
        let (first, end) = waiter.await.unwrap();
        assert_eq!(first.as_deref(), Some("event 7"));
        assert!(end);
    }

    #[tokio::test]
    async fn without_a_receiver_the_sender_is_closed_and_keeps_nothing() {
        let (tx, rx) = event_queue();
        tx.send(decision(1)).unwrap();
        drop(rx);
        assert!(tx.is_closed());
        assert!(tx.send(decision(2)).is_err());
        assert!(tx.shared.queue.lock().unwrap().is_empty());
    }

    #[test]
    fn a_drained_backlog_gives_its_memory_back() {
        let (tx, mut rx) = event_queue();
        for n in 0..1000 {
            tx.send(decision(n)).unwrap();
        }
        while rx.try_recv().is_some() {}
        assert!(rx.shared.queue.lock().unwrap().capacity() <= KEPT_CAPACITY);
    }
}
