//! Long groups of contiguous values, split by columns: LayerNorm's and
//! RMSNorm's long rows backward, and forward those rows and GroupNorm's
//! and InstanceNorm's long groups where they are fewer than the threads
//! (a group is then a row of its `k * s` values, with one `gamma` per
//! channel's run of `s`).
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
//! The passes are the row schedule's three, over tiles: backward, the
//! rows' means (where the layout centers), the rows' `Σ g` and `Σ g xhat`
//! together with the parameter gradients' terms (each row's added to f64
//! sums, as long rows' are), then `dx`; forward, the means, the sums of
//! squares around them, then `y`. A forward by groups reads a row three
//! times from L2 where a thread has one; by tiles it streams the input from
//! memory for each pass, so it goes by tiles only where rows are too few to
//! give every thread one.

use super::backward::{DxSpan, GroupSums, drain};
use super::chunks::{Chunking, for_each_chunk, threads};
use super::forward::{RowOutput, Statistics, write_values};
use super::real::Real;
use super::shared::Shared;
use super::sums::RowTerms;
use super::{CHUNK_VALUES, GroupPass, simd};
use crate::backend::layout::{Centering, Grouping, Groups, Params};
use std::mem::MaybeUninit;
use std::ops::Range;

/// Values per row of a tile: the tile's `x`, `dy`, `dx` and weights of one
/// row stay in L1 between the loops that read them (4 x 16 KiB).
pub const TILE_VALUES: usize = 4_096;

/// Groups from this length take the column schedule: backward, one
/// thread's sums of a row's parameter gradients (24 bytes per column) then
/// outgrow its L2.
pub const LONG_GROUP_VALUES: usize = 32_768;

/// Whether `groups` take [`backward`]: long rows.
pub fn takes(groups: &Groups) -> bool {
    groups.layout.grouping.is_rows() && groups.size() >= LONG_GROUP_VALUES
}

/// Whether `groups` take [`forward`]: long rows or channel groups of one
/// sample (contiguous), fewer than the threads.
pub fn forward_takes(groups: &Groups) -> bool {
    groups.layout.grouping != Grouping::Channels
        && groups.size() >= LONG_GROUP_VALUES
        && groups.count() < threads()
}

/// Which pass a [`Tiles`] runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Each row's `Σ (x - shift)` over the tile.
    Means,
    /// Each row's `Σ ((x - shift) - m)²` over the tile.
    Squares,
    /// `y`.
    Outputs,
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
    beta: Option<&'a [T]>,
    /// Per row: its statistics, and after [`Stage::Sums`] its sums.
    rows: &'a [GroupSums<T>],
    /// `dy`, and `dx` (the same buffer when written in place); `y`.
    input: Shared<T>,
    out: Shared<T>,
    in_place: bool,
    /// Per row and tile (`row * tiles + tile`): `Σ (x - shift)` (means),
    /// `Σ ((x - shift) - m)²` (squares), or `Σ g` and `Σ g xhat` (sums).
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
    /// Tiles per group.
    fn tiles(&self) -> usize {
        self.groups.size().div_ceil(TILE_VALUES)
    }

    /// The columns of tile `t`, within a group.
    fn columns(&self, t: usize) -> Range<usize> {
        t * TILE_VALUES..((t + 1) * TILE_VALUES).min(self.groups.size())
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
        let (size, count) = (self.groups.size(), self.tiles());
        for t in tiles {
            let cols = self.columns(t);
            let len = cols.len();
            // The weights along a row (the backward's rows only).
            let w = match self.gamma {
                Some(w) if self.groups.layout.params() == Params::AlongRow => &w[cols.clone()],
                _ => &state.ones[..len],
            };
            if self.stage == Stage::Sums {
                state.dgamma[..len].fill(0.0);
                state.dbeta[..len].fill(0.0);
            }
            for row in 0..self.groups.count() {
                let at = row * size + cols.start;
                let x = &self.x[at..at + len];
                let sums = &self.rows[row];
                // SAFETY: each (row, tile) pair is one task's, and `dx`
                // is written only in the last pass, after `dy` was read.
                let part = row * count + t;
                match self.stage {
                    Stage::Means => unsafe {
                        self.parts[0].write(part, T::centered_sum(x, sums.shift, T::ZERO, false));
                    },
                    Stage::Squares => unsafe {
                        self.parts[0].write(part, T::centered_sum(x, sums.shift, sums.m, true));
                    },
                    Stage::Outputs => {
                        let y = unsafe { self.out.range_uninit(at, len) };
                        self.write_outputs(y, x, at, sums, cols.clone());
                    }
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
                        let span = DxSpan {
                            x,
                            begin: at,
                            input: self.input,
                            out: self.out,
                            in_place: self.in_place,
                        };
                        unsafe { span.write(sums, w) }
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

impl<'a, T: Real> Tiles<'a, T> {
    /// `y` of the tile's values `x` of a group with statistics `sums`,
    /// from `at` of the input (columns `cols` of the group): along a row
    /// with the parameters at `cols`, or channel run by channel run.
    #[inline(always)]
    fn write_outputs(
        &self,
        y: &mut [MaybeUninit<T>],
        x: &[T],
        at: usize,
        sums: &GroupSums<T>,
        cols: Range<usize>,
    ) {
        let output = RowOutput {
            x,
            shift: sums.shift,
            m: sums.m,
            r: sums.r,
            gamma: self.gamma,
            beta: self.beta,
        };
        if self.groups.layout.params() == Params::AlongRow {
            let along = RowOutput {
                gamma: self.gamma.map(|w| &w[cols.clone()]),
                beta: self.beta.map(|b| &b[cols]),
                ..output
            };
            write_values(y, &along);
            return;
        }
        let s = self.groups.s;
        let mut done = 0;
        while done < x.len() {
            let flat = at + done;
            let run = (s - flat % s).min(x.len() - done);
            let part = RowOutput {
                x: &x[done..done + run],
                ..output
            };
            part.write_channel(&mut y[done..done + run], self.groups.channel(flat));
            done += run;
        }
    }

    /// Runs `stage` over every tile, with the rows' statistics `rows`.
    fn run_stage(self, stage: Stage, rows: &'a [GroupSums<T>]) {
        let pass = Tiles {
            stage,
            rows,
            ..self
        };
        let chunking = Chunking {
            count: pass.tiles(),
            min: CHUNK_VALUES
                .div_ceil(pass.groups.count().max(1) * TILE_VALUES)
                .max(1),
            align: 1,
        };
        for_each_chunk(chunking, TileState::new, |state, chunk| {
            simd(&pass, state, chunk)
        });
    }
}

/// Row `row`'s total of its tiles' partial sums `part`, in tile order, in
/// f64.
fn total<T: Real>(part: &[T], row: usize, tiles: usize) -> T {
    let sum: f64 = part[row * tiles..(row + 1) * tiles]
        .iter()
        .map(|v| v.to_f64())
        .sum();
    T::from_f64(sum)
}

/// Each row's shift (its first value, or 0 where the layout does not
/// center) and `rstd`, the rest of its statistics to come.
fn starts<T: Real>(x: &[T], groups: &Groups, rstd: impl Fn(usize) -> T) -> Vec<GroupSums<T>> {
    let (len, centering) = (groups.size(), groups.layout.centering);
    let size = T::from_f64(len as f64);
    (0..groups.count())
        .map(|row| {
            let shift = match centering {
                Centering::Mean => x[row * len],
                Centering::None => T::ZERO,
            };
            GroupSums::new(
                (shift, T::ZERO, rstd(row)),
                (T::ZERO, T::ZERO),
                size,
                centering,
            )
        })
        .collect()
}

/// The rows' means where the layout centers ([`Stage::Means`]), into
/// `rows`.
fn means<'a, T: Real>(template: Tiles<'a, T>, rows: &mut [GroupSums<T>], part: &[T]) {
    if template.groups.layout.centering == Centering::Mean {
        template.run_stage(Stage::Means, rows);
        let (tiles, size) = (template.tiles(), T::from_f64(template.groups.size() as f64));
        for (row, sums) in rows.iter_mut().enumerate() {
            sums.m = total(part, row, tiles) / size;
        }
    }
}

/// The forward of groups that [`forward_takes`] takes, into `y` (every value
/// written); the formulas and the statistics are
/// [`forward`](super::forward)'s.
pub fn forward<T: Real>(
    x: &[T],
    groups: Groups,
    gamma: Option<&[T]>,
    beta: Option<&[T]>,
    epsilon: f64,
    y: &mut [MaybeUninit<T>],
) -> Statistics<T> {
    let (rows, size) = (groups.count(), groups.size());
    let tiles = size.div_ceil(TILE_VALUES);
    let mut part = vec![T::ZERO; rows * tiles];
    let template = Tiles {
        stage: Stage::Means,
        x,
        groups,
        gamma,
        beta,
        rows: &[],
        input: Shared(std::ptr::null_mut(), 0),
        out: Shared(y.as_mut_ptr().cast(), y.len()),
        in_place: false,
        parts: [
            Shared(part.as_mut_ptr(), part.len()),
            Shared(std::ptr::null_mut(), 0),
        ],
        dgamma: Shared(std::ptr::null_mut(), 0),
        dbeta: Shared(std::ptr::null_mut(), 0),
    };
    let mut stats = starts(x, &groups, |_| T::ZERO);
    means(template, &mut stats, &part);
    template.run_stage(Stage::Squares, &stats);
    let (values, eps) = (T::from_f64(size as f64), T::from_f64(epsilon));
    let var: Vec<T> = (0..rows)
        .map(|row| total(&part, row, tiles) / values)
        .collect();
    for (sums, &var) in stats.iter_mut().zip(&var) {
        sums.r = T::ONE / (var + eps).sqrt();
    }
    template.run_stage(Stage::Outputs, &stats);
    Statistics {
        mean: stats.iter().map(|r| r.shift + r.m).collect(),
        var,
        rstd: stats.iter().map(|r| r.r).collect(),
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
    let tiles = s.div_ceil(TILE_VALUES);
    let mut parts = [vec![T::ZERO; rows * tiles], vec![T::ZERO; rows * tiles]];
    let (mut dgamma, mut dbeta) = (vec![T::ZERO; s], vec![T::ZERO; s]);
    let [a, b] = parts.each_mut().map(|p| Shared(p.as_mut_ptr(), p.len()));
    let template = Tiles {
        stage: Stage::Means,
        x,
        groups,
        gamma,
        beta: None,
        rows: &[],
        input: Shared(dy as *mut T, x.len()),
        out: Shared(dx, x.len()),
        in_place: std::ptr::eq(dy, dx),
        parts: [a, b],
        dgamma: Shared(dgamma.as_mut_ptr(), s),
        dbeta: Shared(dbeta.as_mut_ptr(), s),
    };
    let mut sums = starts(x, &groups, |row| rstd[row]);
    means(template, &mut sums, &parts[0]);
    template.run_stage(Stage::Sums, &sums);
    let size = T::from_f64(s as f64);
    for (row, sums) in sums.iter_mut().enumerate() {
        *sums = GroupSums::new(
            (sums.shift, sums.m, sums.r),
            (total(&parts[0], row, tiles), total(&parts[1], row, tiles)),
            size,
            groups.layout.centering,
        );
    }
    template.run_stage(Stage::Gradients, &sums);
    (dgamma, dbeta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::layout::Layout;

    /// The forward by tiles against f64 statistics of the data: groups with
    /// a large mean and a small spread (the shift keeps their digits), one
    /// and two, a partial last tile, rows with and without centering,
    /// channel groups whose channels' runs straddle tiles (10,000 values
    /// each); and the same bits on every run, whichever thread takes which
    /// tiles.
    #[test]
    fn forward_by_columns_matches_f64() {
        let cases = [
            ([1, 1, 1, 70_001], Layout::LAYER),
            ([2, 1, 1, 40_000], Layout::LAYER),
            ([1, 1, 1, 70_001], Layout::RMS),
            ([2, 1, 1, 40_000], Layout::RMS),
            // GroupNorm(1, 4) and GroupNorm(2, 6) of one sample.
            ([1, 4, 1, 10_000], Layout::group(4)),
            ([1, 6, 1, 10_000], Layout::group(3)),
        ];
        for (shape, layout) in cases {
            let groups = Groups::of(&shape, layout);
            let (size, len) = (groups.size(), shape.iter().product::<usize>());
            let x: Vec<f32> = (0..len)
                .map(|i| ((i as f32) * 0.37).sin() * 0.01 + 1e3)
                .collect();
            let p = groups.params();
            let w: Vec<f32> = (0..p).map(|i| 0.5 + (i % 97) as f32 * 0.01).collect();
            let b: Vec<f32> = (0..p).map(|i| 0.25 - (i % 89) as f32 * 0.01).collect();
            // The parameter of value `i` of the input.
            let param = |i: usize| match layout.params() {
                Params::AlongRow => i % size,
                Params::PerChannel => groups.channel(i),
            };
            let run = || {
                let mut y = vec![MaybeUninit::<f32>::uninit(); len];
                let stats = forward(&x, groups, Some(&w), Some(&b), 1e-5, &mut y);
                // SAFETY: `forward` writes every value.
                let y: Vec<f32> = y.into_iter().map(|v| unsafe { v.assume_init() }).collect();
                (y, stats)
            };
            let (y, stats) = run();
            let what = format!("{shape:?} {layout:?}");
            for (g, values) in x.chunks(size).enumerate() {
                let n = size as f64;
                let mean = match layout.centering {
                    Centering::Mean => values.iter().map(|&v| v as f64).sum::<f64>() / n,
                    Centering::None => 0.0,
                };
                let var = values
                    .iter()
                    .map(|&v| (v as f64 - mean).powi(2))
                    .sum::<f64>()
                    / n;
                let rstd = 1.0 / (var + 1e-5).sqrt();
                let rel = |a: f32, e: f64| (a as f64 - e).abs() / e.abs().max(1e-30);
                assert!(
                    rel(stats.mean[g], mean) <= 1e-6 || mean == 0.0,
                    "{what} mean"
                );
                assert!(
                    rel(stats.var[g], var) <= 1e-4,
                    "{what} var {} vs {var}",
                    stats.var[g]
                );
                assert!(rel(stats.rstd[g], rstd) <= 1e-4, "{what} rstd");
                for (j, &v) in values.iter().enumerate() {
                    let i = g * size + j;
                    let want = (v as f64 - mean) * rstd * w[param(i)] as f64 + b[param(i)] as f64;
                    let got = y[i] as f64;
                    assert!(
                        (got - want).abs() <= 1e-3 * (1.0 + want.abs()),
                        "{what} y[{i}]: {got} vs {want}"
                    );
                }
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
            for _ in 0..5 {
                let (again, again_stats) = run();
                assert_eq!(bits(&again), bits(&y), "{what}");
                assert_eq!(bits(&again_stats.var), bits(&stats.var), "{what}");
            }
        }
    }
}
