//! Spreading the CPU kernels' groups over threads, with the calling thread
//! working from the start.
//!
//! A rayon parallel iterator called from outside the pool hands all its
//! work to the pool's threads and blocks the caller until they are done:
//! every call pays for waking a worker, then for waking the caller. For a
//! 2 MiB LayerNorm (0.1-0.2 ms of work) on a 2-core machine that wake-up
//! decided the time: the same call took 0.18 ms or 0.5 ms depending on
//! the state the previous benchmark left the pool in. Here the caller takes
//! chunks from a shared counter at once, rayon's threads join in as they
//! wake, and the caller never waits for a helper that has not started: a
//! late helper finds the work done (or the call closed) and leaves.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Who is still inside a call's work.
#[derive(Default)]
struct Attendance {
    /// Set by the caller once it has run out of chunks: helpers arriving
    /// later must not touch the call's (borrowed) data.
    closed: bool,
    /// Helpers inside the work now.
    active: usize,
}

#[derive(Default)]
struct Roll {
    attendance: Mutex<Attendance>,
    left: Condvar,
}

impl Roll {
    fn lock(&self) -> MutexGuard<'_, Attendance> {
        // A helper that panicked left the count as it was; the caller's
        // wait below stays correct, so a poisoned lock is still usable.
        self.attendance.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Decrements the active count when a helper leaves, also by a panic.
struct Leave<'a>(&'a Roll);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        let mut attendance = self.0.lock();
        attendance.active -= 1;
        if attendance.active == 0 {
            self.0.left.notify_all();
        }
    }
}

/// Closes the call and waits for the helpers inside it, also when the
/// caller unwinds: only then may the borrowed data go away.
struct Close<'a>(&'a Roll);

impl Drop for Close<'_> {
    fn drop(&mut self) {
        let mut attendance = self.0.lock();
        attendance.closed = true;
        while attendance.active > 0 {
            attendance = self
                .0
                .left
                .wait(attendance)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Runs `work(state, chunk)` for consecutive chunks of `per_chunk` indices
/// covering `0..count`, each chunk once, on the calling thread and on as
/// many of rayon's threads as join before the work runs out. Each
/// participating thread gets its own `init()` state; the states are
/// returned (the caller's among them), in no particular order.
pub fn for_each_chunk<S: Send>(
    count: usize,
    per_chunk: usize,
    init: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, Range<usize>) + Sync,
) -> Vec<S> {
    let per_chunk = per_chunk.max(1);
    let chunks = count.div_ceil(per_chunk);
    let next = AtomicUsize::new(0);
    let states = Mutex::new(Vec::new());
    let run = || {
        let mut state = init();
        loop {
            let k = next.fetch_add(1, Ordering::Relaxed);
            if k >= chunks {
                break;
            }
            work(&mut state, k * per_chunk..((k + 1) * per_chunk).min(count));
        }
        states.lock().unwrap_or_else(|e| e.into_inner()).push(state);
    };
    // The caller is one worker; rayon's pool adds the others.
    let helpers = rayon::current_num_threads()
        .saturating_sub(1)
        .min(chunks.saturating_sub(1));
    if helpers > 0 {
        let roll = Arc::new(Roll::default());
        let run: &(dyn Fn() + Sync) = &run;
        // SAFETY: a helper calls `run` only between registering (with the
        // call not closed yet) and `Leave`; `Close` below closes the call
        // and waits until no helper is registered before this function
        // returns or unwinds, so `run` and what it borrows outlive every
        // use.
        let run: &'static (dyn Fn() + Sync) = unsafe { std::mem::transmute(run) };
        let _close = Close(&roll);
        for _ in 0..helpers {
            let roll = roll.clone();
            rayon::spawn(move || {
                {
                    let mut attendance = roll.lock();
                    if attendance.closed {
                        return;
                    }
                    attendance.active += 1;
                }
                let _leave = Leave(&roll);
                run();
            });
        }
        run();
    } else {
        run();
    }
    states.into_inner().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::for_each_chunk;

    #[test]
    fn every_index_once_and_every_state_returned() {
        for (count, per_chunk) in [(0, 4), (1, 4), (10, 3), (1000, 7), (64, 64), (65, 64)] {
            let seen: Vec<std::sync::atomic::AtomicUsize> =
                (0..count).map(|_| Default::default()).collect();
            let states = for_each_chunk(
                count,
                per_chunk,
                || 0usize,
                |visited, range| {
                    for i in range {
                        seen[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        *visited += 1;
                    }
                },
            );
            assert!(
                seen.iter()
                    .all(|n| n.load(std::sync::atomic::Ordering::Relaxed) == 1),
                "{count}/{per_chunk}"
            );
            assert_eq!(states.iter().sum::<usize>(), count, "{count}/{per_chunk}");
        }
    }
}
