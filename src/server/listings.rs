//! Whose listing is built and sent next.
//!
//! A listing of a large cache is megabytes of JSON, built on a blocking thread and
//! sent as fast as the client reads. Only [`LISTINGS_AT_ONCE`](super::LISTINGS_AT_ONCE)
//! run at a time. First come, first served let one user's slow readers hold every turn:
//! six of them on a 40k-entry listing made another user's listing wait 28 s (issue
//! #29). So each uid holds at most one turn at a time, and a freed turn goes to the
//! waiting uid that holds none and was served longest ago (a uid never served first),
//! to its oldest request: users take turns in rotation, and one user's many requests
//! queue behind each other, not in front of everyone else.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::oneshot;

/// How many uids' last turns are remembered for the rotation.
const REMEMBERED_UIDS: usize = 1024;

/// The turns to build and send listings.
pub struct Turns {
    inner: Mutex<Inner>,
}

struct Inner {
    free: usize,
    /// Uids holding a turn (at most one each).
    holding: Vec<u32>,
    /// Requests waiting, oldest first.
    waiting: VecDeque<(u32, oneshot::Sender<Turn>)>,
    /// When each uid was last given a turn (a counter of turns given), for rotation;
    /// at most [`REMEMBERED_UIDS`].
    served: Vec<(u32, u64)>,
    turns_given: u64,
}

/// One listing's turn; the next waiting request gets it when this is dropped.
pub struct Turn {
    turns: &'static Turns,
    uid: u32,
}

impl Turns {
    pub const fn new(at_once: usize) -> Turns {
        Turns {
            inner: Mutex::new(Inner {
                free: at_once,
                holding: Vec::new(),
                waiting: VecDeque::new(),
                served: Vec::new(),
                turns_given: 0,
            }),
        }
    }

    /// Waits up to `patience` for a turn for `uid`; `None` if none came.
    pub async fn acquire(&'static self, uid: u32, patience: Duration) -> Option<Turn> {
        let (tx, rx) = oneshot::channel();
        self.inner.lock().unwrap().waiting.push_back((uid, tx));
        self.hand_out();
        // A turn sent just as the wait ends is dropped with the channel: released.
        tokio::time::timeout(patience, rx).await.ok()?.ok()
    }

    /// Gives free turns to the oldest waiting requests of uids that hold none.
    fn hand_out(&'static self) {
        let mut refused = Vec::new();
        {
            let mut inner = self.inner.lock().unwrap();
            inner.waiting.retain(|(_, tx)| !tx.is_closed());
            while inner.free > 0 {
                let (holding, served) = (&inner.holding, &inner.served);
                let last_served = |uid: u32| {
                    served
                        .iter()
                        .find(|(u, _)| *u == uid)
                        .map_or(0, |(_, at)| *at)
                };
                // The oldest request of the uid served longest ago that holds no turn.
                let Some(next) = (0..inner.waiting.len())
                    .filter(|&i| !holding.contains(&inner.waiting[i].0))
                    .min_by_key(|&i| (last_served(inner.waiting[i].0), i))
                else {
                    break;
                };
                let (uid, tx) = inner.waiting.remove(next).expect("found above");
                inner.free -= 1;
                inner.holding.push(uid);
                inner.turns_given += 1;
                let given = inner.turns_given;
                match inner.served.iter_mut().find(|(u, _)| *u == uid) {
                    Some(entry) => entry.1 = given,
                    None => {
                        if inner.served.len() >= REMEMBERED_UIDS {
                            // The uid served longest ago is forgotten (it counts as
                            // served long ago anyway).
                            let oldest = (0..inner.served.len())
                                .min_by_key(|&i| inner.served[i].1)
                                .expect("not empty");
                            inner.served.swap_remove(oldest);
                        }
                        inner.served.push((uid, given));
                    }
                }
                if let Err(turn) = tx.send(Turn { turns: self, uid }) {
                    // It stopped waiting in between: released once the lock is free.
                    refused.push(turn);
                }
            }
        }
        drop(refused);
    }

    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.inner.lock().unwrap().waiting.len()
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        {
            let mut inner = self.turns.inner.lock().unwrap();
            inner.free += 1;
            if let Some(at) = inner.holding.iter().position(|u| *u == self.uid) {
                inner.holding.swap_remove(at);
            }
        }
        self.turns.hand_out();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(3600);

    #[tokio::test(start_paused = true)]
    async fn another_user_is_served_before_one_users_queue() {
        static TURNS: Turns = Turns::new(2);
        // Alice's slow readers: one turn, the rest queue.
        let first = TURNS.acquire(1000, LONG).await.unwrap();
        let queued: Vec<_> = (0..5)
            .map(|_| tokio::spawn(TURNS.acquire(1000, LONG)))
            .collect();
        tokio::task::yield_now().await;
        assert_eq!(TURNS.waiting(), 5, "alice holds one turn at a time");
        // Bob gets the second turn at once, though he came last.
        let bob = TURNS.acquire(1001, Duration::from_millis(1)).await;
        assert!(bob.is_some(), "bob waited behind alice's queue");
        // When alice's turn ends, her next request gets it; bob's turn is his until
        // he is done.
        drop(first);
        tokio::task::yield_now().await;
        assert_eq!(TURNS.waiting(), 4);
        drop(bob);
        for q in queued {
            q.abort();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn uids_take_turns_in_rotation() {
        static TURNS: Turns = Turns::new(1);
        let first = TURNS.acquire(1, LONG).await.unwrap();
        // Alice (1) queues two more, then carol (3) one: carol is next, not alice.
        let alice: Vec<_> = (0..2)
            .map(|_| tokio::spawn(TURNS.acquire(1, LONG)))
            .collect();
        tokio::task::yield_now().await;
        let carol = tokio::spawn(TURNS.acquire(3, LONG));
        tokio::task::yield_now().await;
        drop(first);
        let carols = carol.await.unwrap();
        assert!(
            carols.is_some(),
            "carol was served before alice's older requests"
        );
        assert_eq!(TURNS.waiting(), 2);
        drop(carols);
        for a in alice {
            assert!(a.await.unwrap().is_some());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_turn_given_up_goes_to_the_next() {
        static TURNS: Turns = Turns::new(1);
        let held = TURNS.acquire(1, LONG).await.unwrap();
        assert!(TURNS.acquire(2, Duration::from_secs(1)).await.is_none());
        let next = tokio::spawn(TURNS.acquire(3, LONG));
        tokio::task::yield_now().await;
        drop(held);
        assert!(next.await.unwrap().is_some());
        assert!(TURNS.acquire(4, Duration::from_millis(1)).await.is_some());
    }
}
