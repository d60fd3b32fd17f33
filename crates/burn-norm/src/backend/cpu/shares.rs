//! Each thread's share of a call's indices: taken from its front by its
//! owner, and from its back by threads that have finished their own.
//!
//! A thread that gets the same indices call after call finds their data in
//! its own caches: the input rows it read last time, the gradient rows of a
//! training step (OpenMP's static schedule, which PyTorch uses, does the
//! same). A single counter shared by all handed the rows out in the order
//! threads arrived, so a row's thread changed from call to call: against
//! it, LayerNorm [4096, 768]'s forward took 0.96 times as long on this
//! 2-core machine (253 alternating pairs of bench processes), the other
//! rows level (docs/benchmarks.md, ninth session).

use super::chunks::Chunking;
use std::ops::Range;
use std::sync::{Mutex, MutexGuard};

/// The shares of one call: participant `p` owns the `p`-th of `threads`
/// nearly equal ranges, cut at multiples of [`Chunking::align`].
pub struct Shares {
    chunking: Chunking,
    /// Per share, what is left of it. A lock per chunk taken costs tens of
    /// nanoseconds against the microseconds of a chunk's work.
    left: Vec<Mutex<Range<usize>>>,
}

impl Shares {
    /// `threads` shares of `chunking`'s indices.
    pub fn new(chunking: Chunking, threads: usize) -> Self {
        let Chunking { count, align, .. } = chunking;
        let threads = threads.max(1);
        let cut = |p: usize| {
            (count / threads * p + count % threads * p / threads)
                .next_multiple_of(align.max(1))
                .min(count)
        };
        let left = (0..threads)
            .map(|p| Mutex::new(cut(p)..cut(p + 1)))
            .collect();
        Shares { chunking, left }
    }

    /// The next chunk for participant `p`: from the front of its own share
    /// (a quarter of what is left, at least `min`), or once that is done
    /// from the back of another's (half of what is left there). `None`
    /// when every share is done. Every chunk starts at a multiple of
    /// `align`.
    ///
    /// The owner's chunks shrink as its share does, so that a thread that
    /// runs slower (its lines in another core's cache) holds no large
    /// chunk at the end while the others wait: with halves, LayerNorm
    /// [4096, 768]'s forward took 1.2 times as long as with one shared
    /// counter in this machine's stretches without a shared cache (40
    /// pairs of processes), with quarters 0.98 times (56 pairs).
    pub fn take(&self, p: usize) -> Option<Range<usize>> {
        let n = self.left.len();
        if p < n
            && let Some(chunk) = self.take_front(p)
        {
            return Some(chunk);
        }
        (1..=n).map(|i| (p + i) % n).find_map(|v| self.take_back(v))
    }

    /// How many indices to take of `left`: `left / part`, at least `min`,
    /// whole multiples of `align`, at most all.
    fn size(&self, left: usize, part: usize) -> usize {
        let Chunking { min, align, .. } = self.chunking;
        (left / part)
            .max(min)
            .next_multiple_of(align.max(1))
            .min(left)
    }

    fn lock(&self, v: usize) -> MutexGuard<'_, Range<usize>> {
        // Ranges are updated in one assignment: a poisoned lock still holds
        // a consistent one.
        self.left[v].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take_front(&self, p: usize) -> Option<Range<usize>> {
        let mut left = self.lock(p);
        if left.is_empty() {
            return None;
        }
        let end = left.start + self.size(left.len(), 4);
        let chunk = left.start..end;
        left.start = end;
        Some(chunk)
    }

    fn take_back(&self, v: usize) -> Option<Range<usize>> {
        let align = self.chunking.align.max(1);
        let mut left = self.lock(v);
        if left.is_empty() {
            return None;
        }
        // The front is a multiple of `align`, so a start rounded down to
        // one never passes it.
        let start = ((left.end - self.size(left.len(), 2)) / align * align).max(left.start);
        let chunk = start..left.end;
        left.end = start;
        Some(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::{Chunking, Shares};

    fn chunking(count: usize, min: usize, align: usize) -> Chunking {
        Chunking { count, min, align }
    }

    /// Taken by one participant after another: the chunks tile the range,
    /// start at multiples of `align`, and each participant first gets its
    /// own share, front to back.
    #[test]
    fn shares_tile_the_range_each_from_its_owner_first() {
        for (count, min, align, threads) in [
            (4096, 128, 8, 2),
            (1003, 5, 8, 3),
            (10, 1, 1, 4),
            (3, 1, 1, 8),
            (0, 4, 1, 2),
            (65, 64, 1, 2),
        ] {
            let shares = Shares::new(chunking(count, min, align), threads);
            let mut owned = vec![Vec::new(); threads];
            for (p, chunks) in owned.iter_mut().enumerate() {
                while let Some(c) = shares.take_front(p) {
                    chunks.push(c);
                }
            }
            let all: Vec<_> = owned.iter().flatten().cloned().collect();
            assert!(all.windows(2).all(|w| w[0].end == w[1].start), "{all:?}");
            assert_eq!(all.first().map_or(0, |c| c.start), 0);
            assert_eq!(all.last().map_or(0, |c| c.end), count);
            assert!(all.iter().all(|c| c.start % align == 0), "{all:?}");
            // Nearly equal shares.
            let sizes: Vec<usize> = owned
                .iter()
                .map(|c| c.iter().map(|r| r.len()).sum())
                .collect();
            let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(hi - lo <= align.max(min.min(count)), "{sizes:?}");
            assert!(shares.take(0).is_none());
        }
    }

    /// A participant whose share is done takes from the back of the
    /// others' until everything is taken; its chunks start at multiples of
    /// `align`, and the owner's front and the thief's back never overlap.
    #[test]
    fn a_finished_participant_takes_from_the_back_of_the_others() {
        let shares = Shares::new(chunking(1003, 5, 8), 3);
        let mut seen = vec![0u8; 1003];
        let mut mark = |c: std::ops::Range<usize>| {
            assert_eq!(c.start % 8, 0, "{c:?}");
            for i in c {
                seen[i] += 1;
            }
        };
        // Participant 0 takes everything: its own share, then the others'.
        let first = shares.take(0).unwrap();
        assert_eq!(first.start, 0);
        mark(first);
        // The owner of share 1 takes one chunk from its front meanwhile.
        let front = shares.take(1).unwrap();
        assert_eq!(front.start, 336);
        mark(front);
        let mut stolen = Vec::new();
        while let Some(c) = shares.take(0) {
            if c.start >= 336 {
                stolen.push(c.clone());
            }
            mark(c);
        }
        assert!(seen.iter().all(|&n| n == 1));
        // Stolen from the back: each later chunk ends where an earlier
        // started, or in the next share.
        assert!(stolen.len() >= 2, "{stolen:?}");
        assert_eq!(stolen.iter().map(|c| c.end).max(), Some(1003));
        assert!(shares.take(1).is_none() && shares.take(2).is_none());
    }

    /// Participants without a share of their own (more helpers than
    /// shares) only take from the back of the others'.
    #[test]
    fn a_participant_without_a_share_only_takes_from_others() {
        let shares = Shares::new(chunking(100, 1, 1), 2);
        let c = shares.take(5).unwrap();
        assert_eq!(c.end, 50);
        let mut total = c.len();
        while let Some(c) = shares.take(5) {
            total += c.len();
        }
        assert_eq!(total, 100);
    }

    /// Threads racing on the same shares cover every index once, whatever
    /// order they take them in.
    #[test]
    fn racing_participants_take_each_index_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        for round in 0..50 {
            let count = 500 + round * 37;
            let shares = Shares::new(chunking(count, 3, 4), 3);
            let seen: Vec<AtomicUsize> = (0..count).map(|_| Default::default()).collect();
            std::thread::scope(|s| {
                for p in 0..3 {
                    let (shares, seen) = (&shares, &seen);
                    s.spawn(move || {
                        while let Some(c) = shares.take(p) {
                            assert_eq!(c.start % 4, 0);
                            for i in c {
                                seen[i].fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    });
                }
            });
            assert!(
                seen.iter().all(|n| n.load(Ordering::Relaxed) == 1),
                "round {round}"
            );
        }
    }
}
