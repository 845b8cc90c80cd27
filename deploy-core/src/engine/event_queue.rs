//! The bounded queue that carries a rollout's events to its handle.
//!
//! The engine never waits for its reader: a rollout must not stall because nobody
//! reads its events. The queue holds at most `capacity` events; a send to a full
//! queue drops the oldest queued event and counts it, and the reader gets one
//! [`RolloutEvent::Lagged`] with that count in the dropped events' place, then the
//! newest events (as tokio's broadcast channel reports `Lagged`). Memory is bounded
//! by the capacity whatever the reader does.
//!
//! A `VecDeque` behind a mutex rather than a tokio channel: tokio's channels
//! allocate their slots in blocks of 32 and keep up to two blocks (8.7 KB for a
//! `RolloutEvent`) even when every event is read at once, which was a quarter of
//! what a waiting rollout kept (benches/many_rollouts.rs); a rollout emits a few
//! events per step, so this keeps a handful.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use super::RolloutEvent;

/// Above this many slots an emptied queue gives its memory back: a backlog that a
/// slow reader let grow is not kept for the rest of the rollout.
const KEPT_CAPACITY: usize = 8;

/// What the mutex guards.
struct Queue {
    events: VecDeque<RolloutEvent>,
    /// Events dropped from the front since the reader last saw a `Lagged`.
    missed: u64,
    /// The reader waiting for an event, woken by a send and by the last sender's drop.
    waker: Option<Waker>,
}

struct Shared {
    queue: Mutex<Queue>,
    capacity: usize,
    senders: AtomicUsize,
    receiver_alive: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A new queue holding at most `capacity` events (at least one): its sending and
/// receiving ends.
pub(crate) fn event_queue(capacity: usize) -> (EventSender, EventReceiver) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue { events: VecDeque::new(), missed: 0, waker: None }),
        capacity: capacity.max(1),
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
    /// Queues `event` without ever waiting: a full queue drops its oldest event
    /// (the reader learns how many with a `Lagged`). Fails (dropping `event`) when
    /// nobody can receive it any more.
    pub(crate) fn send(&self, event: RolloutEvent) -> Result<(), Closed> {
        if self.is_closed() {
            return Err(Closed);
        }
        let waker = {
            let mut queue = self.shared.lock();
            if queue.events.len() >= self.shared.capacity {
                queue.events.pop_front();
                queue.missed += 1;
            }
            queue.events.push_back(event);
            queue.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
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
            // Taken under the lock, so a receiver that saw a sender left has
            // registered its waker before this looks.
            let waker = self.shared.lock().waker.take();
            if let Some(waker) = waker {
                waker.wake();
            }
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
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next event if there is one, or registers `cx` to be woken by the next
    /// send or by the last sender going away.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<RolloutEvent>> {
        let mut queue = self.shared.lock();
        if let Some(event) = Self::take(&mut queue) {
            return Poll::Ready(Some(event));
        }
        if self.shared.senders.load(Ordering::Acquire) == 0 {
            return Poll::Ready(None);
        }
        queue.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// An event already queued, without waiting.
    pub(crate) fn try_recv(&mut self) -> Option<RolloutEvent> {
        Self::take(&mut self.shared.lock())
    }

    /// The `Lagged` owed to the reader first, then the oldest event kept.
    fn take(queue: &mut Queue) -> Option<RolloutEvent> {
        if queue.missed > 0 {
            let missed = std::mem::take(&mut queue.missed);
            return Some(RolloutEvent::Lagged { missed });
        }
        let event = queue.events.pop_front();
        if queue.events.is_empty() && queue.events.capacity() > KEPT_CAPACITY {
            queue.events.shrink_to(KEPT_CAPACITY);
        }
        event
    }

    /// Stops receiving: later sends fail (the run stops building events) and what is
    /// queued is dropped now, not when the run ends.
    pub(crate) fn close(&mut self) {
        self.shared.receiver_alive.store(false, Ordering::Release);
        let mut queue = self.shared.lock();
        queue.events = VecDeque::new();
        queue.missed = 0;
        queue.waker = None;
    }
}

impl std::fmt::Debug for EventReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let queue = self.shared.lock();
        f.debug_struct("EventReceiver")
            .field("queued", &queue.events.len())
            .field("missed", &queue.missed)
            .field("capacity", &self.shared.capacity)
            .finish()
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
    use crate::engine::DecisionKind;

    fn event(n: usize) -> RolloutEvent {
        RolloutEvent::Decision { kind: DecisionKind::Note { message: format!("event {n}") } }
    }

    fn message(event: Option<RolloutEvent>) -> Option<String> {
        event.map(|e| e.to_string())
    }

    #[tokio::test]
    async fn events_arrive_in_order_and_the_end_is_seen_after_the_last() {
        let (tx, mut rx) = event_queue(16);
        let second = tx.clone();
        tx.send(event(1)).unwrap();
        second.send(event(2)).unwrap();
        drop(tx);
        assert_eq!(message(rx.recv().await).as_deref(), Some("event 1"));
        drop(second);
        assert_eq!(message(rx.recv().await).as_deref(), Some("event 2"));
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_for_a_send_and_for_the_last_drop() {
        let (tx, mut rx) = event_queue(16);
        let waiter = tokio::spawn(async move {
            let first = message(rx.recv().await);
            let end = rx.recv().await.is_none();
            (first, end)
        });
        tokio::task::yield_now().await;
        tx.send(event(7)).unwrap();
        tokio::task::yield_now().await;
        drop(tx);
        let (first, end) = waiter.await.unwrap();
        assert_eq!(first.as_deref(), Some("event 7"));
        assert!(end);
    }

    #[tokio::test]
    async fn without_a_receiver_the_sender_is_closed_and_keeps_nothing() {
        let (tx, rx) = event_queue(16);
        tx.send(event(1)).unwrap();
        drop(rx);
        assert!(tx.is_closed());
        assert!(tx.send(event(2)).is_err());
        assert!(tx.shared.lock().events.is_empty());
    }

    #[test]
    fn a_drained_backlog_gives_its_memory_back() {
        let (tx, mut rx) = event_queue(1000);
        for n in 0..1000 {
            tx.send(event(n)).unwrap();
        }
        while rx.try_recv().is_some() {}
        assert!(rx.shared.lock().events.capacity() <= KEPT_CAPACITY);
    }

    #[tokio::test]
    async fn a_full_queue_drops_the_oldest_and_the_reader_gets_lagged_then_the_newest() {
        let (tx, mut rx) = event_queue(3);
        for n in 0..10 {
            tx.send(event(n)).unwrap();
            assert!(tx.shared.lock().events.len() <= 3, "never more than the capacity queued");
        }
        drop(tx);
        assert_eq!(rx.recv().await, Some(RolloutEvent::Lagged { missed: 7 }));
        for n in 7..10 {
            assert_eq!(message(rx.recv().await), Some(format!("event {n}")));
        }
        assert!(rx.recv().await.is_none());
    }

    #[test]
    fn a_lag_after_reading_counts_only_the_events_dropped_since() {
        let (tx, mut rx) = event_queue(2);
        tx.send(event(0)).unwrap();
        assert_eq!(message(rx.try_recv()).as_deref(), Some("event 0"));
        for n in 1..5 {
            tx.send(event(n)).unwrap();
        }
        assert_eq!(rx.try_recv(), Some(RolloutEvent::Lagged { missed: 2 }));
        assert_eq!(message(rx.try_recv()).as_deref(), Some("event 3"));
        assert_eq!(message(rx.try_recv()).as_deref(), Some("event 4"));
        assert_eq!(rx.try_recv(), None);
        tx.send(event(5)).unwrap();
        assert_eq!(message(rx.try_recv()).as_deref(), Some("event 5"), "no second lag without a drop");
    }
}
