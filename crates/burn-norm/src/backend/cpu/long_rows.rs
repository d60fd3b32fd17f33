//! The backward of LayerNorm's and RMSNorm's long rows, split by columns.
//!
//! Split by rows ([`backward`](super::backward)'s schedule), each thread
//! keeps sums of the parameter gradients as long as a row, and the threads'
//! sums are added at the end. For a LayerNorm over whole `[128, 128, 128]`
//! samples (rows of 2,097,152 values) that was 48 MB of new buffers per
//! thread and call, whose fresh pages cost most of the training step, and
//! with a single row one thread did all the work. Here each pass goes over
//! *tiles* of [`TILE_VALUES`] columns, all the rows of a tile in one task:
//! a tile's parameter gradients are that task's alone to write, and each
//! row's sums are added over its tiles in tile order, whatever the schedule.
//!
//! The passes are the row schedule's three, over tiles: the rows' means
//! (where the layout centers), the rows' `Σ g` and `Σ g xhat` together with
//! the parameter gradients' terms (each row's added to f64 sums, as long
//! rows' are), then `dx`.

use super::backward::{GroupSums, drain};
use super::chunks::{Chunking, for_each_chunk};
use super::real::Real;
use super::shared::Shared;
use super::sums::RowTerms;
use super::{CHUNK_VALUES, GroupPass, simd};
use crate::backend::layout::{Centering, Groups};
use std::ops::Range;

/// Values per row of a tile: the tile's `x`, `dy`, `dx` and weights of one
/// row stay in L1 between the loops that read them (4 x 16 KiB).
pub const TILE_VALUES: usize = 4_096;

/// Rows from this length take the column schedule: one thread's sums of
/// the parameter gradients (24 bytes per column) then outgrow its L2.
pub const LONG_ROW_VALUES: usize = 32_768;

/// Whether `groups` (rows) take [`backward`].
pub fn takes(groups: &Groups) -> bool {
    groups.s >= LONG_ROW_VALUES
}

/// Which pass a [`Tiles`] runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Each row's `Σ (x - shift)` over the tile.
    Means,
    /// Each row's `Σ g`, `Σ g xhat` over the tile, and the tile's
    /// parameter gradients.
    Sums,
    /// `dx`.
    Gradients,
}

/// One pass over a range of tiles.
#[derive(Clone, Copy)]
struct Tiles<'a, T> {
    stage: Stage,
    x: &'a [T],
    groups: Groups,
    gamma: Option<&'a [T]>,
    /// Per row: its statistics, and after [`Stage::Sums`] its sums.
    rows: &'a [GroupSums<T>],
    /// `dy`, and `dx` (the same buffer when written in place).
    input: Shared<T>,
    out: Shared<T>,
    in_place: bool,
    /// Per row and tile (`row * tiles + tile`): `Σ (x - shift)` (means),
    /// or `Σ g` and `Σ g xhat` (sums).
    parts: [Shared<T>; 2],
    /// The parameter gradients, `[s]` each.
    dgamma: Shared<T>,
    dbeta: Shared<T>,
}

/// A task's buffers, one tile long.
struct TileState<T> {
    /// The current row's parameter-gradient terms, in `T`.
    block_dgamma: Vec<T>,
    block_dbeta: Vec<T>,
    /// The tile's parameter gradients, in f64.
    dgamma: Vec<f64>,
    dbeta: Vec<f64>,
    /// The weights without gamma.
    ones: Vec<T>,
}

impl<T: Real> TileState<T> {
    fn new() -> Self {
        TileState {
            block_dgamma: vec![T::ZERO; TILE_VALUES],
            block_dbeta: vec![T::ZERO; TILE_VALUES],
            dgamma: vec![0.0; TILE_VALUES],
            dbeta: vec![0.0; TILE_VALUES],
            ones: vec![T::ONE; TILE_VALUES],
        }
    }
}

impl<T: Real> Tiles<'_, T> {
    /// Tiles per row.
    fn tiles(&self) -> usize {
        self.groups.s.div_ceil(TILE_VALUES)
    }

    /// The columns of tile `t`.
    fn columns(&self, t: usize) -> Range<usize> {
        t * TILE_VALUES..((t + 1) * TILE_VALUES).min(self.groups.s)
    }
}

impl<T: Real> GroupPass for Tiles<'_, T> {
    type State = TileState<T>;

    fn groups(&self) -> Groups {
        self.groups
    }

    #[inline(always)]
    fn with_groups(&self, groups: Groups) -> Self {
        Tiles { groups, ..*self }
    }

    #[inline(always)]
    fn run(&self, state: &mut TileState<T>, tiles: Range<usize>) {
        let Groups { n, c, s, .. } = self.groups;
        let count = self.tiles();
        for t in tiles {
            let cols = self.columns(t);
            let len = cols.len();
            let w = match self.gamma {
                Some(w) => &w[cols.clone()],
                None => &state.ones[..len],
            };
            if self.stage == Stage::Sums {
                state.dgamma[..len].fill(0.0);
                state.dbeta[..len].fill(0.0);
            }
            for row in 0..n * c {
                let at = row * s + cols.start;
                let x = &self.x[at..at + len];
                let sums = &self.rows[row];
                // SAFETY: each (row, tile) pair is one task's, and `dx`
                // is written only in the last pass, after `dy` was read.
                let part = row * count + t;
                match self.stage {
                    Stage::Means => unsafe {
                        self.parts[0].write(part, T::centered_sum(x, sums.shift, T::ZERO, false));
                    },
                    Stage::Sums => {
                        let terms = RowTerms {
                            x,
                            dy: unsafe { self.input.range(at, len) as &[T] },
                            w,
                            shift: sums.shift,
                            m: sums.m,
                            r: sums.r,
                        };
                        let (dgamma, dbeta) = (
                            &mut state.block_dgamma[..len],
                            &mut state.block_dbeta[..len],
                        );
                        let row_sums = T::row_sums(terms, dgamma, dbeta);
                        drain(dgamma, &mut state.dgamma[..len]);
                        drain(dbeta, &mut state.dbeta[..len]);
                        unsafe {
                            self.parts[0].write(part, row_sums.g);
                            self.parts[1].write(part, row_sums.gx);
                        }
                    }
                    Stage::Gradients => {
                        if self.in_place {
                            let dx = unsafe { self.out.range(at, len) };
                            for ((slot, &v), &w) in dx.iter_mut().zip(x).zip(w) {
                                *slot = sums.dx(v, *slot, w);
                            }
                        } else {
                            let (dx, dy) = unsafe {
                                (
                                    self.out.range_uninit(at, len),
                                    self.input.range(at, len) as &[T],
                                )
                            };
                            for (((slot, &v), &d), &w) in dx.iter_mut().zip(x).zip(dy).zip(w) {
                                slot.write(sums.dx(v, d, w));
                            }
                        }
                    }
                }
            }
            if self.stage == Stage::Sums {
                // SAFETY: the tile's columns are this task's.
                let (dgamma, dbeta) = unsafe {
                    (
                        self.dgamma.range_uninit(cols.start, len),
                        self.dbeta.range_uninit(cols.start, len),
                    )
                };
                for (slot, &v) in dgamma.iter_mut().zip(&state.dgamma[..len]) {
                    slot.write(T::from_f64(v));
                }
                for (slot, &v) in dbeta.iter_mut().zip(&state.dbeta[..len]) {
                    slot.write(T::from_f64(v));
                }
            }
        }
    }
}

/// The backward of rows that [`takes`] takes: writes `dx` (over `dy` where
/// they are the same buffer) and returns `dgamma`, `dbeta`; the formulas
/// are [`backward`](super::backward)'s.
///
/// # Safety
/// As `backward_raw`: `dy` and `dx` point to `x.len()` values each, the
/// same buffer or disjoint.
pub unsafe fn backward<T: Real>(
    x: &[T],
    groups: Groups,
    rstd: &[T],
    gamma: Option<&[T]>,
    dy: *const T,
    dx: *mut T,
) -> (Vec<T>, Vec<T>) {
    let (rows, s) = (groups.count(), groups.s);
    let size = T::from_f64(s as f64);
    let tiles = s.div_ceil(TILE_VALUES);
    let mut parts = [vec![T::ZERO; rows * tiles], vec![T::ZERO; rows * tiles]];
    let (mut dgamma, mut dbeta) = (vec![T::ZERO; s], vec![T::ZERO; s]);
    let centering = groups.layout.centering;
    // Shift, mean and `rstd` per row; the sums come after the means.
    let mut sums: Vec<GroupSums<T>> = (0..rows)
        .map(|row| {
            let shift = match centering {
                Centering::Mean => x[row * s],
                Centering::None => T::ZERO,
            };
            GroupSums::new(
                (shift, T::ZERO, rstd[row]),
                (T::ZERO, T::ZERO),
                size,
                centering,
            )
        })
        .collect();
    let run = |stage,
               sums: &[GroupSums<T>],
               parts: &mut [Vec<T>; 2],
               dgamma: &mut [T],
               dbeta: &mut [T]| {
        let [a, b] = parts.each_mut().map(|p| Shared(p.as_mut_ptr(), p.len()));
        let pass = Tiles {
            stage,
            x,
            groups,
            gamma,
            rows: sums,
            input: Shared(dy as *mut T, x.len()),
            out: Shared(dx, x.len()),
            in_place: std::ptr::eq(dy, dx),
            parts: [a, b],
            dgamma: Shared(dgamma.as_mut_ptr(), s),
            dbeta: Shared(dbeta.as_mut_ptr(), s),
        };
        let chunking = Chunking {
            count: tiles,
            min: CHUNK_VALUES.div_ceil(rows * TILE_VALUES).max(1),
            align: 1,
        };
        for_each_chunk(chunking, TileState::new, |state, chunk| {
            simd(&pass, state, chunk)
        });
    };
    // The row's sums over its tiles, in tile order, in f64.
    let total = |part: &[T], row: usize| {
        let sum: f64 = part[row * tiles..(row + 1) * tiles]
            .iter()
            .map(|v| v.to_f64())
            .sum();
        T::from_f64(sum)
    };
    if centering == Centering::Mean {
        run(Stage::Means, &sums, &mut parts, &mut dgamma, &mut dbeta);
        for (row, sums) in sums.iter_mut().enumerate() {
            sums.m = total(&parts[0], row) / size;
        }
    }
    run(Stage::Sums, &sums, &mut parts, &mut dgamma, &mut dbeta);
    for (row, sums) in sums.iter_mut().enumerate() {
        *sums = GroupSums::new(
            (sums.shift, sums.m, sums.r),
            (total(&parts[0], row), total(&parts[1], row)),
            size,
            centering,
        );
    }
    run(Stage::Gradients, &sums, &mut parts, &mut dgamma, &mut dbeta);
    (dgamma, dbeta)
}
