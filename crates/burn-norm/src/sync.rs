//! Statistics synchronized across data-parallel replicas: the interface a
//! synchronized [`BatchNorm`](crate::BatchNorm) sums through, and an
//! in-process implementation for replicas on threads.
//!
//! In data-parallel training each replica (a thread, a device, a process)
//! holds a copy of the model and a slice of the batch. A synchronized
//! BatchNorm normalizes every replica's slice with the statistics of the
//! whole batch: each replica sums its per-channel statistics with the
//! others' ([`Combiner::sum`]), and in the backward does the same with the
//! two per-channel sums of its gradient. The result equals one BatchNorm
//! over the whole batch (outputs, input gradients, running statistics; the
//! gamma/beta gradients are each replica's share, which data-parallel
//! training adds up as it adds every parameter's gradient).
//!
//! [`ThreadCombiner`] sums in process memory for replicas on threads (CPU
//! backends). For replicas on several GPUs a [`Combiner`] can wrap the
//! collective library that moves the data (NCCL, MPI, Burn's
//! `burn::tensor::distributed::all_reduce`); see the README's
//! "Synchronized BatchNorm" section for a sketch.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex};
use std::time::Duration;

/// Sums values element-wise over the replicas of one data-parallel group.
///
/// Each replica owns one `Combiner` (it knows which replica it is). A call
/// returns once every replica of the group has made the matching call, with
/// the same result on every replica. All replicas make the same calls in
/// the same order with slices of the same length: a synchronized
/// BatchNorm makes two per training forward and two per backward.
pub trait Combiner: Send + Sync + fmt::Debug {
    /// The element-wise sum of `values` over the replicas of the group.
    fn sum(&self, values: &[f64]) -> Vec<f64>;
}

/// A replica's handle on a [`Combiner`], as a layer holds it: cheap to
/// clone, and known to the backward pass by a number (the backend
/// operation that combines gradients carries plain data only).
#[derive(Clone)]
pub struct SyncReplica {
    registration: Arc<Registration>,
}

impl SyncReplica {
    /// This replica's handle on `combiner`.
    pub fn new(combiner: Arc<dyn Combiner>) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        registry().insert(id, combiner);
        SyncReplica {
            registration: Arc::new(Registration { id }),
        }
    }

    /// The number the backward pass finds the combiner by.
    pub(crate) fn id(&self) -> u64 {
        self.registration.id
    }

    /// [`Combiner::sum`] through this handle.
    pub fn sum(&self, values: &[f64]) -> Vec<f64> {
        combiner(self.id()).sum(values)
    }
}

impl fmt::Debug for SyncReplica {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SyncReplica")
            .field(&combiner(self.id()))
            .finish()
    }
}

/// Removes the combiner from the registry when the last handle goes.
struct Registration {
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        registry().remove(&self.id);
    }
}

type Registry = HashMap<u64, Arc<dyn Combiner>>;

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Default::default);
    // A panic elsewhere while the map was held left it consistent: every
    // operation on it is a single insert, remove or lookup.
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// The combiner registered as `id`.
///
/// # Panics
/// If no [`SyncReplica`] with that number is alive (a gradient computed
/// after its layer was dropped).
pub(crate) fn combiner(id: u64) -> Arc<dyn Combiner> {
    registry().get(&id).cloned().unwrap_or_else(|| {
        panic!("burn-norm: synchronized BatchNorm replica {id} no longer exists")
    })
}

/// Sums over `k` replicas that run on threads of one process.
///
/// ```
/// use burn_norm::sync::ThreadCombiner;
/// let replicas = ThreadCombiner::group(3);
/// let sums: Vec<Vec<f64>> = std::thread::scope(|s| {
///     let handles: Vec<_> = replicas
///         .iter()
///         .enumerate()
///         .map(|(rank, r)| s.spawn(move || r.sum(&[rank as f64, 1.0])))
///         .collect();
///     handles.into_iter().map(|h| h.join().unwrap()).collect()
/// });
/// assert!(sums.iter().all(|s| s == &[3.0, 3.0]));
/// ```
///
/// The sum is taken in replica order, so every replica gets the same bits,
/// run after run. A replica that waits more than [`ThreadCombiner::TIMEOUT`]
/// for the others panics, naming the replicas that have not arrived,
/// rather than hang (a replica that skipped a call, or died).
pub struct ThreadCombiner {
    rank: usize,
    shared: Arc<Shared>,
}

struct Shared {
    replicas: usize,
    round: Mutex<Round>,
    changed: Condvar,
}

/// One call's contributions and result; `result` stays until every
/// replica has taken it, so that a fast replica cannot start the next call
/// over a result the others still need.
#[derive(Default)]
struct Round {
    contributions: Vec<Option<Vec<f64>>>,
    result: Option<Arc<Vec<f64>>>,
    taken: usize,
}

impl ThreadCombiner {
    /// How long a replica waits for the others before it panics.
    pub const TIMEOUT: Duration = Duration::from_secs(120);

    /// Handles for `replicas` replicas, one per thread, in rank order.
    ///
    /// # Panics
    /// If `replicas` is 0.
    pub fn group(replicas: usize) -> Vec<SyncReplica> {
        assert!(replicas > 0, "ThreadCombiner::group: at least one replica");
        let shared = Arc::new(Shared {
            replicas,
            round: Mutex::new(Round {
                contributions: vec![None; replicas],
                ..Round::default()
            }),
            changed: Condvar::new(),
        });
        (0..replicas)
            .map(|rank| {
                SyncReplica::new(Arc::new(ThreadCombiner {
                    rank,
                    shared: shared.clone(),
                }))
            })
            .collect()
    }

    fn wait<'a>(
        &self,
        round: std::sync::MutexGuard<'a, Round>,
        done: impl Fn(&Round) -> bool,
    ) -> std::sync::MutexGuard<'a, Round> {
        let (round, timeout) = self
            .shared
            .changed
            .wait_timeout_while(round, Self::TIMEOUT, |r| !done(r))
            .unwrap_or_else(|e| e.into_inner());
        if timeout.timed_out() {
            let missing: Vec<usize> = round
                .contributions
                .iter()
                .enumerate()
                .filter(|(_, c)| c.is_none())
                .map(|(rank, _)| rank)
                .collect();
            panic!(
                "ThreadCombiner: replica {} waited {:?} for replicas {missing:?}: every replica must make the same calls",
                self.rank,
                Self::TIMEOUT
            );
        }
        round
    }
}

impl Combiner for ThreadCombiner {
    fn sum(&self, values: &[f64]) -> Vec<f64> {
        let shared = &self.shared;
        let round = shared.round.lock().unwrap_or_else(|e| e.into_inner());
        // The previous call's result is still being taken.
        let mut round = self.wait(round, |r| r.result.is_none());
        round.contributions[self.rank] = Some(values.to_vec());
        if round.contributions.iter().all(Option::is_some) {
            let parts: Vec<Vec<f64>> = round
                .contributions
                .iter_mut()
                .map(|c| c.take().expect("every replica contributed"))
                .collect();
            if let Some(other) = parts.iter().find(|p| p.len() != values.len()) {
                panic!(
                    "ThreadCombiner: replicas sent {} and {} values to one sum",
                    values.len(),
                    other.len()
                );
            }
            let sum = (0..values.len())
                .map(|i| parts.iter().map(|p| p[i]).sum())
                .collect();
            round.result = Some(Arc::new(sum));
            round.taken = 0;
            shared.changed.notify_all();
        }
        let mut round = self.wait(round, |r| r.result.is_some());
        let result = round.result.clone().expect("waited for it");
        round.taken += 1;
        if round.taken == shared.replicas {
            round.result = None;
            shared.changed.notify_all();
        }
        result.to_vec()
    }
}

impl fmt::Debug for ThreadCombiner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ThreadCombiner(replica {} of {})",
            self.rank, self.shared.replicas
        )
    }
}
