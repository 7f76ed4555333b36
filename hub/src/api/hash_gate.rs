//! The hash gate: every argon2 run (login, password change, user creation) goes through it,
//! so a login flood can neither exhaust memory (each run holds about 19 MiB) nor take every
//! core from the API.
//!
//! At most `slots` hashes run at once, each on one of `slots` threads of the gate's own,
//! holding its slot until the hash is done (a client that hangs up mid-hash does not free the
//! slot early). Each thread owns one [`HashMemory`], argon2's working memory, allocated once
//! and handed to every hash it runs. Neither tokio's blocking pool (each thread that ran a
//! hash kept its buffer in its own malloc arena: 369 MB resident under a flood) nor a buffer
//! allocated per hash (glibc raises its mmap threshold after the first free, so later
//! buffers came from the heap, which fragmented by about a buffer every few hashes: 180 MB
//! after ten seconds of flood with one slot, 330 MB with one arena) keeps memory flat;
//! `slots` buffers for the process's life do. Waiters
//! queue in two bounded lanes: [`Lane::Priority`] for attempts on a user that exists and for
//! callers already logged in, [`Lane::Other`] for names no user has. A freed slot goes to the
//! priority lane first, so a real user waits behind a flood of invented names for at most
//! the hashes already running, one hash time when there is one slot per running hash. A
//! flood on real names is bounded by the login limiter (five failures per name), so the
//! priority lane stays short. When a lane is full the caller gets [`Busy`] at once (503 with
//! `Retry-After`) rather than a queue that grows without bound.
//!
//! The lanes are observable: under a flood an invented name is answered `busy` more often
//! than a real one. That reveals only whether a name exists, to someone able to flood from
//! more addresses than the limiter allows each (20 failures per address).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, mpsc};

use tokio::sync::oneshot;

/// Waiters allowed per slot in each lane.
const QUEUE_PER_SLOT: usize = 4;

/// Which queue an attempt waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// A user that exists, or a caller already logged in.
    Priority,
    /// A name no user has (the hash runs only so the answer takes as long).
    Other,
}

/// All slots busy and the lane's queue full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the hub is busy checking passwords")]
pub struct Busy;

/// Bounds concurrent password hashing; see the module documentation.
#[derive(Debug, Clone)]
pub struct HashGate {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    slots: usize,
    queue_limit: usize,
    state: Mutex<State>,
    /// To the gate's threads; they end when the gate (every clone and slot) is gone.
    jobs: mpsc::Sender<Job>,
}

type Job = Box<dyn FnOnce(&mut HashMemory) + Send>;

/// Argon2's working memory for one hash at a time: the blocks of the default parameters
/// (19 MiB), kept; a hash that needs more (a stored hash with a higher memory cost) gets a
/// buffer of its own for that hash only.
#[derive(Default)]
pub struct HashMemory {
    blocks: Vec<argon2::Block>,
}

impl HashMemory {
    /// `count` blocks to hash in.
    pub fn with_blocks<T>(
        &mut self,
        count: usize,
        hash: impl FnOnce(&mut [argon2::Block]) -> T,
    ) -> T {
        let kept = argon2::Params::DEFAULT.block_count();
        if count > kept {
            return hash(&mut vec![argon2::Block::default(); count]);
        }
        if self.blocks.len() < count {
            self.blocks.resize(count, argon2::Block::default());
        }
        hash(&mut self.blocks[..count])
    }
}

impl std::fmt::Debug for HashMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HashMemory({} blocks)", self.blocks.len())
    }
}

#[derive(Debug, Default)]
struct State {
    running: usize,
    priority: VecDeque<oneshot::Sender<Slot>>,
    other: VecDeque<oneshot::Sender<Slot>>,
}

/// The right to run one hash; passed on to the next waiter when dropped.
#[derive(Debug)]
pub struct Slot {
    inner: Option<Arc<Inner>>,
}

impl HashGate {
    /// A gate with `slots` concurrent hashes (at least one), and as many threads.
    pub fn new(slots: usize) -> HashGate {
        let slots = slots.max(1);
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..slots {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new().name("kitt-hash".into()).spawn(move || {
                let mut memory = HashMemory::default();
                loop {
                    // One thread waits on the channel at a time; the lock is not held while
                    // the job runs.
                    let Ok(job) = lock(&queue).recv() else { return };
                    // A panicking hash (argon2 does not panic) must not shrink the pool.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        job(&mut memory);
                    }));
                }
            });
            if let Err(error) = spawned {
                tracing::error!(%error, "Cannot start a password-hashing thread.");
            }
        }
        HashGate {
            inner: Arc::new(Inner {
                slots,
                queue_limit: slots * QUEUE_PER_SLOT,
                state: Mutex::new(State::default()),
                jobs,
            }),
        }
    }

    /// Half the cores, at least one and at most four: hashing never takes every core from
    /// the API.
    pub fn for_this_machine() -> HashGate {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        HashGate::new((cores / 2).clamp(1, 4))
    }

    /// Runs `work` (a hash, in the thread's [`HashMemory`]) on one of the gate's threads once
    /// a slot is free.
    pub async fn run<T: Send + 'static>(
        &self,
        lane: Lane,
        work: impl FnOnce(&mut HashMemory) -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let slot = self.acquire(lane).await?;
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |memory: &mut HashMemory| {
            let out = work(memory);
            drop(slot);
            let _ = done.send(out);
        });
        // Fails only if every thread failed to start.
        self.inner.jobs.send(job).map_err(|_| Busy)?;
        result.await.map_err(|_| Busy)
    }

    /// A slot, waiting in `lane` if none is free.
    pub async fn acquire(&self, lane: Lane) -> Result<Slot, Busy> {
        let waiting = {
            let mut state = lock(&self.inner.state);
            if state.running < self.inner.slots {
                state.running += 1;
                return Ok(Slot { inner: Some(self.inner.clone()) });
            }
            let queue = match lane {
                Lane::Priority => &mut state.priority,
                Lane::Other => &mut state.other,
            };
            if queue.len() >= self.inner.queue_limit {
                // Waiters that hung up still count until dropped here.
                queue.retain(|sender| !sender.is_closed());
            }
            if queue.len() >= self.inner.queue_limit {
                return Err(Busy);
            }
            let (sender, receiver) = oneshot::channel();
            queue.push_back(sender);
            receiver
        };
        waiting.await.map_err(|_| Busy)
    }

    /// (slots, waiters allowed in each lane).
    pub fn limits(&self) -> (usize, usize) {
        (self.inner.slots, self.inner.queue_limit)
    }

    /// (running, waiting in the priority lane, waiting in the other lane).
    pub fn load(&self) -> (usize, usize, usize) {
        let state = lock(&self.inner.state);
        (state.running, state.priority.len(), state.other.len())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else { return };
        let mut state = lock(&inner.state);
        loop {
            let Some(next) = state.priority.pop_front().or_else(|| state.other.pop_front()) else {
                state.running -= 1;
                return;
            };
            match next.send(Slot { inner: Some(inner.clone()) }) {
                Ok(()) => return,
                // The waiter hung up: disarm the slot that came back and try the next one.
                Err(mut slot) => slot.inner = None,
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls a future once; `Some` if it finished.
    fn poll_once<F: std::future::Future + Unpin>(future: &mut F) -> Option<F::Output> {
        let waker = std::task::Waker::noop();
        let mut context = std::task::Context::from_waker(waker);
        match std::pin::Pin::new(future).poll(&mut context) {
            std::task::Poll::Ready(out) => Some(out),
            std::task::Poll::Pending => None,
        }
    }

    #[test]
    fn a_freed_slot_goes_to_the_priority_lane_before_earlier_other_waiters() {
        let gate = HashGate::new(1);
        let running = poll_once(&mut Box::pin(gate.acquire(Lane::Other))).unwrap().unwrap();
        let mut flood: Vec<_> =
            (0..QUEUE_PER_SLOT).map(|_| Box::pin(gate.acquire(Lane::Other))).collect();
        for waiter in &mut flood {
            assert!(poll_once(waiter).is_none());
        }
        // The other lane is full: one more is refused at once.
        let refused = poll_once(&mut Box::pin(gate.acquire(Lane::Other))).unwrap();
        assert_eq!(refused.unwrap_err(), Busy);
        // A real user arrives last and gets the next slot.
        let mut real = Box::pin(gate.acquire(Lane::Priority));
        assert!(poll_once(&mut real).is_none());
        assert_eq!(gate.load(), (1, 1, QUEUE_PER_SLOT));
        drop(running);
        let real_slot = poll_once(&mut real).expect("the real user is next").unwrap();
        for waiter in &mut flood {
            assert!(poll_once(waiter).is_none(), "the flood waits");
        }
        drop(real_slot);
        assert!(poll_once(&mut flood[0]).expect("then the flood, in order").is_ok());
    }

    #[test]
    fn waiters_that_hang_up_neither_hold_slots_nor_fill_the_queue() {
        let gate = HashGate::new(1);
        let held = poll_once(&mut Box::pin(gate.acquire(Lane::Priority))).unwrap().unwrap();
        for _ in 0..10 * QUEUE_PER_SLOT {
            let mut gone = Box::pin(gate.acquire(Lane::Priority));
            assert!(poll_once(&mut gone).is_none());
            drop(gone);
        }
        let mut real = Box::pin(gate.acquire(Lane::Priority));
        assert!(poll_once(&mut real).is_none(), "queued, not refused");
        drop(held);
        let slot = poll_once(&mut real).expect("the hung-up waiters were skipped").unwrap();
        drop(slot);
        assert_eq!(gate.load(), (0, 0, 0));
    }

    #[tokio::test]
    async fn a_client_hanging_up_mid_hash_keeps_the_slot_until_the_hash_ends() {
        let gate = HashGate::new(1);
        let (started, is_started) = oneshot::channel::<()>();
        let (finish, finished) = std::sync::mpsc::channel::<()>();
        let request = tokio::spawn({
            let gate = gate.clone();
            async move {
                gate.run(Lane::Priority, move |_| {
                    let _ = started.send(());
                    let _ = finished.recv();
                })
                .await
            }
        });
        is_started.await.unwrap();
        request.abort();
        assert!(request.await.unwrap_err().is_cancelled());
        assert_eq!(gate.load(), (1, 0, 0), "the hash still runs and holds its slot");
        let mut next = Box::pin(gate.acquire(Lane::Priority));
        assert!(poll_once(&mut next).is_none());
        finish.send(()).unwrap();
        next.await.unwrap();
    }
}
