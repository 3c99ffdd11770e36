//! Turns: ingest requests of one process that name the same identity take turns at it instead of
//! racing (`DynamoStore::taking_turns`).
//!
//! Two requests that write one customer at once both read it, and the second transaction to
//! commit fails its condition (its `last_at` or its identities moved) and is cancelled with every
//! other customer packed with it, to be read and written again. A request takes the identities of
//! those of its interactions that no other request holds, writes them, and gives them back; the
//! rest wait for the holder's turn to end. The conditions still decide what is written: turns
//! only spare the work a lost race throws away, in one process (the embedded store's `serve`).

use std::collections::HashSet;
use std::sync::Mutex;
use tokio::sync::Notify;

/// The identity keys that requests of this process are writing.
#[derive(Default)]
pub(super) struct Turns {
    held: Mutex<HashSet<String>>,
    released: Notify,
}

/// A request's hold on identity keys, given back when dropped (written, failed or cancelled).
pub(super) struct Turn<'t> {
    turns: &'t Turns,
    keys: Vec<String>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if let Ok(mut held) = self.turns.held.lock() {
            for key in &self.keys {
                held.remove(key);
            }
        }
        self.turns.released.notify_waiters();
    }
}

impl Turns {
    /// Takes the keys of the interactions (index and identity keys, in the batch's order) that
    /// no other request holds, waiting until at least one is free; returns the turn and the
    /// indices taken. An interaction that shares a key with an earlier one left waiting waits
    /// with it, so that a batch is still recorded in its order.
    pub(super) async fn take<'t>(&'t self, wanted: &[(usize, Vec<String>)]) -> (Turn<'t>, Vec<usize>) {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            // Registered before looking, so a release between the look and the wait is not missed.
            released.as_mut().enable();
            {
                let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let mut mine: HashSet<&str> = HashSet::new();
                let mut waiting: HashSet<&str> = HashSet::new();
                let mut taken = Vec::new();
                for (index, keys) in wanted {
                    let free = keys
                        .iter()
                        .all(|key| mine.contains(key.as_str()) || !(held.contains(key) || waiting.contains(key.as_str())));
                    if free {
                        mine.extend(keys.iter().map(String::as_str));
                        taken.push(*index);
                    } else {
                        waiting.extend(keys.iter().map(String::as_str));
                    }
                }
                if !taken.is_empty() {
                    let keys: Vec<String> = mine.into_iter().map(str::to_string).collect();
                    held.extend(keys.iter().cloned());
                    return (Turn { turns: self, keys }, taken);
                }
            }
            released.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn wanted(entries: &[(usize, &[&str])]) -> Vec<(usize, Vec<String>)> {
        entries
            .iter()
            .map(|(index, keys)| (*index, keys.iter().map(|k| k.to_string()).collect()))
            .collect()
    }

    #[tokio::test]
    async fn a_request_takes_what_is_free_and_waits_for_the_rest() {
        let turns = Turns::default();
        let (first, taken) = turns.take(&wanted(&[(0, &["a"]), (1, &["b"])])).await;
        assert_eq!(taken, vec![0, 1]);
        // "a" is held: only "c" is taken; "d" shares a key with the waiting one, so it waits too.
        let (second, taken) = turns.take(&wanted(&[(0, &["a", "d"]), (1, &["c"]), (2, &["d"])])).await;
        assert_eq!(taken, vec![1]);
        drop(second);
        // Nothing free: the request waits until the holder gives its keys back.
        let only_a = wanted(&[(0, &["a"])]);
        let wait = turns.take(&only_a);
        tokio::pin!(wait);
        assert!(tokio::time::timeout(Duration::from_millis(50), wait.as_mut()).await.is_err());
        drop(first);
        let (_third, taken) = tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .expect("taken once released");
        assert_eq!(taken, vec![0]);
    }

    #[tokio::test]
    async fn interactions_of_one_request_share_their_keys() {
        let turns = Turns::default();
        let (_turn, taken) = turns.take(&wanted(&[(0, &["a"]), (1, &["a", "b"]), (2, &["b"])])).await;
        assert_eq!(taken, vec![0, 1, 2]);
    }
}
