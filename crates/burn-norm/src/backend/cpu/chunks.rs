//! Spreading the CPU kernels' groups over threads: the calling thread and a
//! team of helpers that stay awake for a while between calls.
//!
//! Handing the helpers' share to rayon (`rayon::spawn`, the caller working
//! at once) left the kernels at the mercy of waking a sleeping thread. On
//! this project's 2-vCPU machine the scheduler often put the woken helper
//! on the caller's own CPU, where it waited behind the caller or shared
//! the core with it while the other CPU idled: LayerNorm [4096, 768] then
//! took 0.8-1.0 ms on two threads against 0.95 on one (PyTorch: 0.45), and
//! a plain test of two compute-bound threads showed the same (the woken
//! one took 37 ms for 25 ms of work; pinned apart, 25 and 25). PyTorch's
//! OpenMP threads spin after each parallel region, so back-to-back
//! operations find them running on their own cores. The team does the same
//! for [`spin`], then sleeps.
//!
//! Each participant of a call has a share of its indices, the same one
//! call after call, and takes chunks from its front, so that it streams
//! through memory; one that has finished takes from the back of the
//! others' ([`Shares`]). Helpers that arrive late find the work done (or
//! the call closed) and leave; the caller never waits for a helper that has
//! not started. One call uses the team at a time: a call made while another
//! holds it (two threads running kernels at once) works on its own thread
//! alone.

use super::shares::Shares;
use std::any::Any;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Work offered to the helpers: the call's loop over chunks for a given
/// participant (the caller is 0, helper `i` is `i + 1`), its lifetime
/// erased (see the safety comment in [`for_each_chunk`]).
type Work = &'static (dyn Fn(usize) + Sync);

/// What the caller and the helpers share, under [`Team::offer`]'s lock.
#[derive(Default)]
struct Offer {
    /// The call now open, if any.
    work: Option<Work>,
    /// Helpers the open call still takes: no more than it has chunks for
    /// beside the caller's (each participant costs an `init()` state).
    seats: usize,
    /// Helpers asleep on [`Team::wake`].
    parked: usize,
    /// The first panic of a helper inside the open call, for the caller to
    /// raise.
    panic: Option<Box<dyn Any + Send>>,
}

struct Team {
    /// Helper threads (rayon's thread count less the caller).
    size: usize,
    /// How long an idle helper looks for the next call ([`spin`]).
    spin: Duration,
    /// Bumped for each call offered; spinning helpers watch it.
    calls: AtomicU64,
    offer: Mutex<Offer>,
    wake: Condvar,
    /// Helpers inside the open call's work now.
    active: AtomicUsize,
    /// Held by the call using the team.
    taken: AtomicBool,
}

/// How long an idle helper keeps looking for the next call before it
/// sleeps: `BURN_NORM_SPIN_US` microseconds, 2,000 by default (0: sleep at
/// once, as rayon's workers do). Two milliseconds cover the gap between a
/// layer's calls in a training step of the examples (200 us did not: the
/// benchmark's LayerNorm [4096, 768] forward went from 0.57 to 0.97 ms);
/// GNU OpenMP spins for longer by default. Spinning yields the core to any
/// other runnable thread, so it costs idle time, not other threads' time.
fn spin() -> Duration {
    static SPIN: OnceLock<Duration> = OnceLock::new();
    *SPIN.get_or_init(|| {
        let micros = crate::backend::settings::count("BURN_NORM_SPIN_US", 0..=usize::MAX);
        Duration::from_micros(micros.unwrap_or(2_000) as u64)
    })
}

impl Team {
    /// The process's team: as many helpers as rayon's pool has threads,
    /// less the caller.
    fn get() -> &'static Team {
        static TEAM: OnceLock<&'static Team> = OnceLock::new();
        // `rayon::current_num_threads` honours RAYON_NUM_THREADS, the knob
        // Burn's CPU backends already answer to.
        TEAM.get_or_init(|| Team::start(rayon::current_num_threads().saturating_sub(1), spin()))
    }

    /// A team of `size` helper threads that spin for `spin` between calls;
    /// they live as long as the process.
    fn start(size: usize, spin: Duration) -> &'static Team {
        let team: &'static Team = Box::leak(Box::new(Team {
            size,
            spin,
            calls: AtomicU64::new(0),
            offer: Mutex::new(Offer::default()),
            wake: Condvar::new(),
            active: AtomicUsize::new(0),
            taken: AtomicBool::new(false),
        }));
        for i in 0..size {
            let spawned = std::thread::Builder::new()
                .name(format!("burn-norm-{i}"))
                .spawn(move || team.help(i + 1));
            if spawned.is_err() {
                // Fewer helpers only means less parallelism.
                break;
            }
        }
        team
    }

    fn lock(&self) -> MutexGuard<'_, Offer> {
        // Nothing runs user code under this lock, so a poisoned lock still
        // holds consistent data.
        self.offer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A helper's life: wait for a call (spinning, then asleep), join it
    /// as participant `participant`.
    fn help(&self, participant: usize) {
        let mut seen = self.calls.load(Ordering::Acquire);
        loop {
            seen = self.next_call(seen);
            let work = {
                let mut offer = self.lock();
                let Some(work) = offer.work.filter(|_| offer.seats > 0) else {
                    continue;
                };
                offer.seats -= 1;
                self.active.fetch_add(1, Ordering::AcqRel);
                work
            };
            let result = catch_unwind(AssertUnwindSafe(|| work(participant)));
            if let Err(panic) = result {
                self.lock().panic.get_or_insert(panic);
            }
            self.active.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Waits until a call after `seen` is offered and returns its number.
    fn next_call(&self, seen: u64) -> u64 {
        let start = Instant::now();
        let mut rounds = 0u32;
        loop {
            let now = self.calls.load(Ordering::Acquire);
            if now != seen {
                return now;
            }
            rounds = rounds.wrapping_add(1);
            if rounds.is_multiple_of(64) {
                if start.elapsed() >= self.spin {
                    break;
                }
                std::thread::yield_now();
            }
            std::hint::spin_loop();
        }
        let mut offer = self.lock();
        offer.parked += 1;
        // The caller bumps `calls` under the lock, so no call is missed.
        while self.calls.load(Ordering::Acquire) == seen {
            offer = self.wake.wait(offer).unwrap_or_else(|e| e.into_inner());
        }
        offer.parked -= 1;
        self.calls.load(Ordering::Acquire)
    }

    /// Offers `work` to up to `seats` helpers.
    fn open(&self, work: Work, seats: usize) {
        let mut offer = self.lock();
        offer.work = Some(work);
        offer.seats = seats;
        // A panic left by a call whose caller panicked as well.
        offer.panic = None;
        self.calls.fetch_add(1, Ordering::AcqRel);
        if offer.parked > 0 {
            self.wake.notify_all();
        }
    }
}

/// Closes the open call and waits for the helpers inside it, also when the
/// caller unwinds: only then may the borrowed data go away. Releases the
/// team.
struct Close(&'static Team);

impl Drop for Close {
    fn drop(&mut self) {
        let team = self.0;
        team.lock().work = None;
        // Helpers inside finish their current chunk (microseconds).
        let mut rounds = 0u32;
        while team.active.load(Ordering::Acquire) > 0 {
            rounds = rounds.wrapping_add(1);
            if rounds.is_multiple_of(64) {
                std::thread::yield_now();
            }
            std::hint::spin_loop();
        }
        team.taken.store(false, Ordering::Release);
    }
}

/// How a call's indices `0..count` are cut into chunks.
#[derive(Clone, Copy, Debug)]
pub struct Chunking {
    /// The indices to cover, `0..count`.
    pub count: usize,
    /// The fewest indices in a chunk (the last may have fewer).
    pub min: usize,
    /// Every chunk starts at a multiple of this: a unit of work that must
    /// not be split between chunks (blocks of rows whose sums are added up
    /// together), so that results do not depend on the schedule.
    pub align: usize,
}

/// Threads a call may use: the calling thread and its helpers.
pub fn threads() -> usize {
    Team::get().size + 1
}

/// Runs `work(state, chunk)` for consecutive chunks covering `0..count` as
/// `chunking` says, each index once, on the calling thread and on the
/// helpers that join before the work runs out. Each participating thread
/// gets its own `init()` state; the states are returned (the caller's
/// among them), in no particular order. A panic in `work` reaches the
/// caller.
pub fn for_each_chunk<S: Send>(
    chunking: Chunking,
    init: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, Range<usize>) + Sync,
) -> Vec<S> {
    for_each_chunk_with(Team::get(), chunking, init, work)
}

/// [`for_each_chunk`] with a given team.
fn for_each_chunk_with<S: Send>(
    team: &'static Team,
    chunking: Chunking,
    init: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, Range<usize>) + Sync,
) -> Vec<S> {
    let chunking = Chunking {
        min: chunking.min.max(1),
        ..chunking
    };
    let chunks = chunking.count.div_ceil(chunking.min);
    let shared = chunks > 1
        && team.size > 0
        && team
            .taken
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
    let threads = if shared {
        team.size.min(chunks - 1) + 1
    } else {
        1
    };
    let shares = Shares::new(chunking, threads);
    let states = Mutex::new(Vec::new());
    let run = |participant: usize| {
        let mut state = init();
        while let Some(range) = shares.take(participant) {
            work(&mut state, range);
        }
        states.lock().unwrap_or_else(|e| e.into_inner()).push(state);
    };
    if shared {
        let run: &(dyn Fn(usize) + Sync) = &run;
        // SAFETY: helpers take `run` from the offer under its lock and
        // count themselves active before releasing it; `Close` removes the
        // offer under the same lock and then waits until none is active,
        // before this function returns or unwinds. So every use of `run`
        // ends while it and what it borrows are alive.
        let run: Work = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), Work>(run) };
        let close = Close(team);
        team.open(run, chunks - 1);
        run(0);
        drop(close);
        if let Some(panic) = team.lock().panic.take() {
            resume_unwind(panic);
        }
    } else {
        run(0);
    }
    states.into_inner().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::{Chunking, Team, for_each_chunk, for_each_chunk_with};

    /// Chunks of at least `min` indices, unaligned.
    fn plain(count: usize, min: usize) -> Chunking {
        Chunking {
            count,
            min,
            align: 1,
        }
    }
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_index_once_and_every_state_returned() {
        for (count, per_chunk) in [(0, 4), (1, 4), (10, 3), (1000, 7), (64, 64), (65, 64)] {
            let seen: Vec<AtomicUsize> = (0..count).map(|_| Default::default()).collect();
            let states = for_each_chunk(
                plain(count, per_chunk),
                || 0usize,
                |visited, range| {
                    for i in range {
                        seen[i].fetch_add(1, Ordering::Relaxed);
                        *visited += 1;
                    }
                },
            );
            assert!(
                seen.iter().all(|n| n.load(Ordering::Relaxed) == 1),
                "{count}/{per_chunk}"
            );
            assert_eq!(states.iter().sum::<usize>(), count, "{count}/{per_chunk}");
            // No participant without a chunk to take (on a machine with
            // more threads than chunks).
            assert!(
                states.len() <= count.div_ceil(per_chunk).max(1),
                "{count}/{per_chunk}: {} states",
                states.len()
            );
        }
    }

    /// Calls from several threads at once (one holds the team, the others
    /// work alone), many times over: each still covers its indices once.
    #[test]
    fn concurrent_callers_each_cover_their_indices() {
        std::thread::scope(|s| {
            for t in 0..4 {
                s.spawn(move || {
                    for round in 0..200 {
                        let count = 50 + (t * 37 + round * 11) % 300;
                        let seen: Vec<AtomicUsize> =
                            (0..count).map(|_| Default::default()).collect();
                        for_each_chunk(
                            plain(count, 3),
                            || (),
                            |_, range| {
                                for i in range {
                                    seen[i].fetch_add(1, Ordering::Relaxed);
                                }
                            },
                        );
                        assert!(seen.iter().all(|n| n.load(Ordering::Relaxed) == 1));
                    }
                });
            }
        });
    }

    /// A call with two chunks takes one helper of a team of six, not all
    /// of them (each participant costs an `init()` state); the others join
    /// the next call.
    #[test]
    fn a_call_takes_no_more_helpers_than_it_has_chunks() {
        let team = Team::start(6, super::spin());
        for round in 0..20 {
            let states = for_each_chunk_with(
                team,
                plain(2, 1),
                || 0usize,
                |n, range| {
                    // Long enough for every spinning helper to notice.
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    *n += range.len();
                },
            );
            assert_eq!(states.iter().sum::<usize>(), 2, "round {round}");
            assert!(states.len() <= 2, "round {round}: {} states", states.len());
        }
        let states = for_each_chunk_with(team, plain(600, 1), || 0usize, |n, r| *n += r.len());
        assert_eq!(states.iter().sum::<usize>(), 600);
    }

    /// Aligned chunks start at multiples of `align` in a call with
    /// helpers, and still tile the range (the shares themselves are tested
    /// in `shares`).
    #[test]
    fn aligned_chunks_start_at_multiples() {
        let chunking = Chunking {
            count: 1003,
            min: 5,
            align: 8,
        };
        let seen: Vec<AtomicUsize> = (0..1003).map(|_| Default::default()).collect();
        for _ in 0..50 {
            for_each_chunk(
                chunking,
                || (),
                |_, range| {
                    assert_eq!(range.start % 8, 0, "{range:?}");
                    for i in range {
                        seen[i].fetch_add(1, Ordering::Relaxed);
                    }
                },
            );
        }
        assert!(seen.iter().all(|n| n.load(Ordering::Relaxed) == 50));
    }

    /// Helpers that sleep at once (no spinning) are woken for every call:
    /// the calls complete (a lost wake-up would hang here) and cover their
    /// indices once, with the helpers taking part.
    #[test]
    fn sleeping_helpers_are_woken_for_each_call() {
        let team = Team::start(2, std::time::Duration::ZERO);
        let mut helped = 0;
        for round in 0..50 {
            let seen: Vec<AtomicUsize> = (0..64).map(|_| Default::default()).collect();
            let states = for_each_chunk_with(
                team,
                plain(64, 1),
                || 0usize,
                |n, range| {
                    // Long enough for a woken helper to arrive.
                    std::thread::sleep(std::time::Duration::from_micros(200));
                    for i in range.clone() {
                        seen[i].fetch_add(1, Ordering::Relaxed);
                    }
                    *n += range.len();
                },
            );
            assert!(
                seen.iter().all(|n| n.load(Ordering::Relaxed) == 1),
                "round {round}"
            );
            helped += states.iter().filter(|&&n| n > 0).count().saturating_sub(1);
        }
        assert!(helped > 0, "no helper ever took part");
    }

    /// A panic inside the work reaches the caller, whichever thread ran the
    /// chunk, and leaves the team usable.
    #[test]
    fn a_panic_in_the_work_reaches_the_caller() {
        for _ in 0..20 {
            let result = std::panic::catch_unwind(|| {
                for_each_chunk(
                    plain(64, 1),
                    || (),
                    |_, range| {
                        if range.contains(&40) {
                            panic!("index 40");
                        }
                    },
                )
            });
            assert!(result.is_err());
        }
        let states = for_each_chunk(plain(100, 1), || 0usize, |n, r| *n += r.len());
        assert_eq!(states.iter().sum::<usize>(), 100);
    }
}
