//! Single-flight: one loader per key, however many callers wait for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

/// A loader's error, shared by every caller that waited for that loader.
pub type SharedError = Arc<dyn std::error::Error + Send + Sync + 'static>;

type Slot<T> = watch::Receiver<Option<T>>;

/// Flights in progress, by key; a finished flight hands its outcome `T` to its followers.
#[derive(Debug)]
pub(crate) struct SingleFlight<T> {
    flights: Mutex<HashMap<String, Slot<T>>>,
}

impl<T> Default for SingleFlight<T> {
    fn default() -> Self {
        Self { flights: Mutex::default() }
    }
}

/// The part a caller plays in a key's flight.
pub(crate) enum Role<'a, T> {
    /// Runs the loader and must [`Leader::finish`] (or be dropped, which lets the
    /// followers start over).
    Leader(Leader<'a, T>),
    /// Waits for the leader's outcome.
    Follower(Slot<T>),
}

/// The one caller running the loader of a key.
pub(crate) struct Leader<'a, T> {
    flights: &'a SingleFlight<T>,
    key: String,
    sender: watch::Sender<Option<T>>,
}

impl<T> SingleFlight<T> {
    /// Joins the flight of `key`, or starts it when none is in progress.
    pub(crate) fn join(&self, key: &str) -> Role<'_, T> {
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = flights.get(key) {
            return Role::Follower(slot.clone());
        }
        let (sender, receiver) = watch::channel(None);
        flights.insert(key.to_owned(), receiver);
        Role::Leader(Leader { flights: self, key: key.to_owned(), sender })
    }

    /// Number of flights in progress.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.flights.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl<T> Leader<'_, T> {
    /// Hands the outcome to every follower and ends the flight.
    pub(crate) fn finish(self, outcome: T) {
        self.sender.send_replace(Some(outcome));
        // Drop removes the flight.
    }
}

impl<T> Drop for Leader<'_, T> {
    fn drop(&mut self) {
        // Finished or cancelled: either way the next caller starts a new flight.
        // Followers of a cancelled flight see the sender closed and start over.
        self.flights.flights.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.key);
    }
}

/// Waits for the leader; `None` when it was cancelled without an outcome.
pub(crate) async fn follow<T: Clone>(mut slot: Slot<T>) -> Option<T> {
    match slot.wait_for(Option::is_some).await {
        Ok(outcome) => outcome.clone(),
        Err(_closed) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    type Outcome = Result<Bytes, String>;

    #[tokio::test]
    async fn followers_receive_the_leaders_outcome_and_the_flight_ends() {
        let flights = SingleFlight::<Outcome>::default();
        let Role::Leader(leader) = flights.join("k") else { panic!("first caller must lead") };
        let Role::Follower(slot) = flights.join("k") else { panic!("second caller must follow") };
        assert_eq!(flights.in_flight(), 1);
        leader.finish(Ok(Bytes::from_static(b"v")));
        assert_eq!(flights.in_flight(), 0);
        assert_eq!(follow(slot).await.unwrap().unwrap(), Bytes::from_static(b"v"));
    }

    #[tokio::test]
    async fn a_cancelled_leader_releases_its_followers() {
        let flights = SingleFlight::<Outcome>::default();
        let Role::Leader(leader) = flights.join("k") else { panic!("first caller must lead") };
        let Role::Follower(slot) = flights.join("k") else { panic!("second caller must follow") };
        drop(leader);
        assert!(follow(slot).await.is_none());
        assert!(matches!(flights.join("k"), Role::Leader(_)));
    }
}
