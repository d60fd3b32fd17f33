//! What a fused normalization computes, as data: the one description that
//! the CPU kernels, the CubeCL kernels, the fusion metadata and the
//! autodiff backward all read.
//!
//! The input is read as `[n, g, k, s]`, row-major: `n` samples, `c = g * k`
//! channels in `g` blocks of `k`, `s` values per channel and sample (the
//! spatial size; LayerNorm's rows are `[rows, 1, 1, d]`). The layers'
//! inputs come as they are, `[n, c, ..]` and `[.., s_1, .., s_a]` of any
//! rank (a row of `d = s_1 * .. * s_a` values), and [`Groups::of`] reads
//! them so. A [`Layout`] says
//! which values share one mean and variance (its [`Grouping`]), which
//! `gamma`/`beta` a value uses (its [`Params`], which follow the grouping),
//! and whether the mean is removed (its [`Centering`]):
//!
//! | layer        | grouping                   | params            | centering |
//! |--------------|----------------------------|-------------------|-----------|
//! | LayerNorm    | `Rows { axes }`: each row of the last `axes` axes | `AlongRow`: `[s]` | `Mean` |
//! | RMSNorm      | `Rows { axes }`            | `AlongRow`        | `None`    |
//! | BatchNorm    | `Channels`: a channel over the batch (`k = 1`) | `PerChannel`: `[c]` | `Mean` |
//! | GroupNorm    | `SampleChannels { per_group: k }`: `k` channels of one sample | `PerChannel` | `Mean` |
//! | InstanceNorm | `SampleChannels { per_group: 1 }` | `PerChannel` | `Mean`    |

/// Which values share one mean and variance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Grouping {
    /// Each row of the input's last `axes` axes, `s` values (their
    /// product): `n * c` groups of `s` contiguous values. The count travels
    /// with the grouping because the input does not say it (LayerNorm's
    /// `normalized_dims`; the CubeCL kernels take the row's length from the
    /// extents: [`Layout::compiled`]).
    Rows {
        /// Trailing axes per row, at least 1.
        axes: usize,
    },
    /// Each block of `k` channels over the whole batch: `g` groups of
    /// `n * k * s` values, `c * s` apart between samples.
    Channels,
    /// Each block of `per_group` channels of one sample (`k`): `n * g`
    /// groups of `k * s` contiguous values. The count travels with the
    /// grouping because the input, `[n, c, ..]`, does not say it (the
    /// CubeCL kernels take it from the extents: [`Layout::compiled`]).
    SampleChannels {
        /// Channels per group, `k`: GroupNorm's `C / G`, InstanceNorm's 1.
        per_group: usize,
    },
}

impl Grouping {
    /// Whether the groups are rows, of any number of axes.
    pub const fn is_rows(&self) -> bool {
        matches!(self, Grouping::Rows { .. })
    }
}

/// Which `gamma` and `beta` a value uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Params {
    /// Position `j` of a row uses `gamma[j]`: `[s]` parameters.
    AlongRow,
    /// Every value of channel `ch` uses `gamma[ch]`: `[c]` parameters.
    PerChannel,
}

/// Whether the mean is removed before scaling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Centering {
    /// `xhat = (x - mean) / sqrt(var + eps)`, biased variance.
    Mean,
    /// `xhat = x / sqrt(mean(x²) + eps)` (RMSNorm); the statistics are the
    /// mean square, and the backward has no mean term.
    None,
}

/// A normalization as the kernels see it; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Layout {
    /// Which values share statistics.
    pub grouping: Grouping,
    /// Whether the mean is removed.
    pub centering: Centering,
}

impl Layout {
    /// LayerNorm over the last axis: rows, centered.
    pub const LAYER: Layout = Layout::layer(1);
    /// RMSNorm over the last axis: rows, not centered.
    pub const RMS: Layout = Layout::rms(1);
    /// Training BatchNorm: channels over the batch.
    pub const BATCH: Layout = Layout {
        grouping: Grouping::Channels,
        centering: Centering::Mean,
    };
    /// InstanceNorm: each channel of each sample.
    pub const INSTANCE: Layout = Layout::group(1);

    /// Rows of the last `axes` axes, centered as `centering` says.
    pub const fn rows(axes: usize, centering: Centering) -> Layout {
        Layout {
            grouping: Grouping::Rows { axes },
            centering,
        }
    }

    /// LayerNorm over the last `axes` axes.
    pub const fn layer(axes: usize) -> Layout {
        Layout::rows(axes, Centering::Mean)
    }

    /// RMSNorm over the last `axes` axes.
    pub const fn rms(axes: usize) -> Layout {
        Layout::rows(axes, Centering::None)
    }

    /// GroupNorm: blocks of `per_group` channels of each sample.
    pub const fn group(per_group: usize) -> Layout {
        Layout {
            grouping: Grouping::SampleChannels { per_group },
            centering: Centering::Mean,
        }
    }

    /// The layout as the CubeCL kernels are compiled for it: its counts (a
    /// row's axes, a group's channels) set to 1. The kernels take the
    /// extents at run time and branch on the kinds alone, so one compiled
    /// kernel serves every count. With the counts in, a new count compiled
    /// the kernels again: on lavapipe a GroupNorm forward's first call with
    /// 4, 8 or 16 channels per group after 2 (128 values a group each
    /// time) took 7.7-9.7 ms, against 0.4-1.3 ms without. (Groups of a
    /// new size still compile theirs where the teams' shapes differ.)
    pub fn compiled(self) -> Layout {
        let grouping = match self.grouping {
            Grouping::Rows { .. } => Grouping::Rows { axes: 1 },
            Grouping::Channels => Grouping::Channels,
            Grouping::SampleChannels { .. } => Grouping::SampleChannels { per_group: 1 },
        };
        Layout { grouping, ..self }
    }

    /// Which parameter a value uses: along the row for rows, per channel
    /// otherwise.
    pub fn params(&self) -> Params {
        match self.grouping {
            Grouping::Rows { .. } => Params::AlongRow,
            Grouping::Channels | Grouping::SampleChannels { .. } => Params::PerChannel,
        }
    }
}

/// The extents of one input and its layout.
#[derive(Clone, Copy, Debug)]
pub struct Groups {
    /// Samples.
    pub n: usize,
    /// Channels, `g * k`.
    pub c: usize,
    /// Channels per block.
    pub k: usize,
    /// Values per channel and sample.
    pub s: usize,
    /// What is computed.
    pub layout: Layout,
}

impl Groups {
    /// The groups of an input as the layers pass it: for channels (a
    /// BatchNorm's over the batch, a GroupNorm's or InstanceNorm's of each
    /// sample), `[n, c, ...]` of any rank from 2, the trailing axes the
    /// channel's values in each sample; for rows, any rank whose last
    /// `axes` axes are the row. The layers' inputs reach the kernels
    /// without a reshape: under Burn's fusion each reshape is one more
    /// operation for the host to queue, and there are four in a training
    /// step.
    ///
    /// # Panics
    /// If `shape` is not of such a rank (rows: from 1 axis to the rank),
    /// has channels that do not split in groups of `per_group` (the layers
    /// check these first), or has no values (the functional layer gives
    /// those an empty output without the kernels: there are no statistics
    /// to take).
    pub fn of(shape: &[usize], layout: Layout) -> Self {
        let values: usize = shape.iter().product();
        let groups = match (shape, layout.grouping) {
            (_, _) if values == 0 => None,
            (_, Grouping::Rows { axes }) if (1..=shape.len()).contains(&axes) => {
                let s: usize = shape[shape.len() - axes..].iter().product();
                Some([values / s, 1, 1, s])
            }
            // One channel per group (`k = 1`): the kernels write BatchNorm's
            // `dgamma[g]` for group `g`.
            (&[n, c, ..], Grouping::Channels) => Some([n, c, 1, values / (n * c)]),
            (&[n, c, ..], Grouping::SampleChannels { per_group: k })
                if k > 0 && c.is_multiple_of(k) =>
            {
                Some([n, c / k, k, values / (n * c)])
            }
            _ => None,
        };
        let Some([n, g, k, s]) = groups else {
            panic!(
                "burn-norm's fused normalization expects a tensor with values, of shape [n, c, ..] for channels (c a multiple of the channels per group), [.., row axes] for rows (1 to rank row axes); got shape {shape:?} for {:?}",
                layout.grouping
            )
        };
        Groups {
            n,
            c: g * k,
            k,
            s,
            layout,
        }
    }

    /// The same extents with the layout the CubeCL kernels are compiled
    /// for ([`Layout::compiled`]); the counts stay in `k` and `s`.
    pub fn compiled(self) -> Groups {
        Groups {
            layout: self.layout.compiled(),
            ..self
        }
    }

    /// Number of groups (statistics).
    pub fn count(&self) -> usize {
        match self.layout.grouping {
            Grouping::Rows { .. } => self.n * self.c,
            Grouping::Channels => self.c / self.k.max(1),
            Grouping::SampleChannels { .. } => self.n * (self.c / self.k.max(1)),
        }
    }

    /// Length of `gamma` and `beta` (and of their gradients).
    pub fn params(&self) -> usize {
        match self.layout.params() {
            Params::AlongRow => self.s,
            Params::PerChannel => self.c,
        }
    }

    /// Values per group.
    pub fn size(&self) -> usize {
        match self.layout.grouping {
            Grouping::Rows { .. } => self.s,
            Grouping::Channels => self.n * self.k * self.s,
            Grouping::SampleChannels { .. } => self.k * self.s,
        }
    }

    /// The input as `[n, g, k, s]` (rows: `[rows, 1, 1, row]`).
    pub fn shape(&self) -> [usize; 4] {
        [self.n, self.c / self.k.max(1), self.k, self.s]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every layer's counts for an input of 2 samples, 6 channels (in 3
    /// blocks of 2 for GroupNorm) and 5 values per channel.
    #[test]
    fn counts_per_layout() {
        let of = |shape: [usize; 4], layout| {
            let g = Groups::of(&shape, layout);
            (g.count(), g.size(), g.params())
        };
        // LayerNorm over rows of 30: 2 rows.
        assert_eq!(of([2, 1, 1, 30], Layout::LAYER), (2, 30, 30));
        assert_eq!(of([2, 1, 1, 30], Layout::RMS), (2, 30, 30));
        assert_eq!(of([2, 6, 1, 5], Layout::BATCH), (6, 10, 6));
        assert_eq!(of([2, 6, 1, 5], Layout::group(2)), (6, 10, 6));
        // InstanceNorm: one block per channel.
        assert_eq!(of([2, 6, 1, 5], Layout::INSTANCE), (12, 5, 6));
    }

    /// Rows of any rank over one axis: the last axis is the row, the others
    /// count rows, as the `[rows, 1, 1, row]` the functional layer used to reshape to.
    #[test]
    fn rows_of_any_rank() {
        for shape in [
            &[30][..],
            &[2, 30],
            &[2, 3, 30],
            &[2, 3, 4, 30],
            &[2, 3, 4, 5, 30],
        ] {
            let g = Groups::of(shape, Layout::LAYER);
            let rows = shape.iter().product::<usize>() / 30;
            assert_eq!(
                (g.count(), g.size(), g.params()),
                (rows, 30, 30),
                "{shape:?}"
            );
            assert_eq!(g.shape().iter().product::<usize>(), rows * 30);
        }
    }

    /// The kernels' layout keeps the kinds (which values share statistics,
    /// whether the mean is removed) and drops the counts, which the extents
    /// keep.
    #[test]
    fn compiled_layouts_keep_kinds_not_counts() {
        for (a, b) in [
            (Layout::group(2), Layout::group(8)),
            (Layout::group(3), Layout::INSTANCE),
            (Layout::layer(1), Layout::layer(3)),
            (Layout::rms(1), Layout::rms(2)),
        ] {
            assert_eq!(a.compiled(), b.compiled());
        }
        assert_ne!(Layout::INSTANCE.compiled(), Layout::BATCH.compiled());
        assert_ne!(Layout::LAYER.compiled(), Layout::RMS.compiled());
        let g = Groups::of(&[2, 8, 5], Layout::group(4)).compiled();
        assert_eq!(
            (g.count(), g.size(), g.params(), g.shape()),
            (4, 20, 8, [2, 2, 4, 5])
        );
        let rows = Groups::of(&[3, 4, 5], Layout::layer(2)).compiled();
        assert_eq!(
            (rows.count(), rows.size(), rows.shape()),
            (3, 20, [3, 1, 1, 20])
        );
    }

    /// Rows over several trailing axes: their product is the row, as the
    /// `[rows, d]` the functional layer used to reshape to.
    #[test]
    fn rows_over_several_axes() {
        for (shape, axes, d) in [
            (&[2, 3, 4, 5][..], 1, 5),
            (&[2, 3, 4, 5], 2, 20),
            (&[2, 3, 4, 5], 3, 60),
            (&[2, 3, 4, 5], 4, 120),
            (&[10, 12], 2, 120),
        ] {
            let g = Groups::of(shape, Layout::layer(axes));
            assert_eq!(
                (g.count(), g.size(), g.params()),
                (120 / d, d, d),
                "{shape:?} {axes}"
            );
            assert_eq!(g.shape(), [120 / d, 1, 1, d]);
            assert_eq!(Groups::of(shape, Layout::rms(axes)).shape(), g.shape());
        }
    }

    /// Rows over no axis, or over more axes than the input has, are refused
    /// by name.
    #[test]
    fn rows_need_one_to_rank_axes() {
        for axes in [0, 3] {
            let refused = std::panic::catch_unwind(|| Groups::of(&[4, 5], Layout::layer(axes)));
            let message = refused.expect_err("refused");
            let message = message.downcast_ref::<String>().expect("a message");
            assert!(message.contains("1 to rank row axes"), "{message}");
        }
    }

    /// BatchNorm's channels of any rank from 2: `[n, c, ..]`, as the
    /// `[n, c, 1, values]` the functional layer used to reshape to.
    #[test]
    fn channels_of_any_rank() {
        for shape in [&[4, 6][..], &[4, 6, 5], &[4, 6, 5, 3], &[4, 6, 5, 3, 2]] {
            let g = Groups::of(shape, Layout::BATCH);
            let values = shape.iter().product::<usize>() / 6;
            assert_eq!(
                (g.count(), g.size(), g.params()),
                (6, values, 6),
                "{shape:?}"
            );
            assert_eq!(g.shape(), [4, 6, 1, values / 4]);
        }
    }

    /// GroupNorm's and InstanceNorm's channels of any rank from 2, in
    /// groups of `per_group`: `[n, c, ..]`, as the `[n, c / k, k, values]`
    /// the functional layer used to reshape to.
    #[test]
    fn sample_channels_of_any_rank() {
        for shape in [&[4, 6][..], &[4, 6, 5], &[4, 6, 5, 3], &[4, 6, 5, 3, 2]] {
            let spatial = shape.iter().product::<usize>() / 24;
            for (layout, k) in [(Layout::INSTANCE, 1), (Layout::group(3), 3)] {
                let g = Groups::of(shape, layout);
                assert_eq!(
                    (g.count(), g.size(), g.params()),
                    (4 * 6 / k, k * spatial, 6),
                    "{shape:?} {layout:?}"
                );
                assert_eq!(g.shape(), [4, 6 / k, k, spatial]);
            }
        }
    }

    /// Channels that do not split in the layout's groups are refused by
    /// name (the layers check first and return an error).
    #[test]
    #[should_panic(expected = "c a multiple of the channels per group")]
    fn sample_channels_split_evenly() {
        Groups::of(&[2, 6, 5], Layout::group(4));
    }
}
