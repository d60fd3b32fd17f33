//! What a fused normalization computes, as data: the one description that
//! the CPU kernels, the CubeCL kernels, the fusion metadata and the
//! autodiff backward all read.
//!
//! The input is always `[n, g, k, s]`, row-major: `n` samples, `c = g * k`
//! channels in `g` blocks of `k`, `s` values per channel and sample (the
//! spatial size; LayerNorm's rows are `[rows, 1, 1, d]`). A [`Layout`] says
//! which values share one mean and variance (its [`Grouping`]), which
//! `gamma`/`beta` a value uses (its [`Params`], which follow the grouping),
//! and whether the mean is removed (its [`Centering`]):
//!
//! | layer        | grouping                   | params            | centering |
//! |--------------|----------------------------|-------------------|-----------|
//! | LayerNorm    | `Rows`: each `[s]` row     | `AlongRow`: `[s]` | `Mean`    |
//! | RMSNorm      | `Rows`                     | `AlongRow`        | `None`    |
//! | BatchNorm    | `Channels`: a channel over the batch (`k = 1`) | `PerChannel`: `[c]` | `Mean` |
//! | GroupNorm    | `SampleChannels`: `k` channels of one sample | `PerChannel` | `Mean` |
//! | InstanceNorm | `SampleChannels` with `k = 1` | `PerChannel`   | `Mean`    |

/// Which values share one mean and variance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Grouping {
    /// Each `[s]` row: `n * c` groups of `s` values.
    Rows,
    /// Each block of `k` channels over the whole batch: `g` groups of
    /// `n * k * s` values, `c * s` apart between samples.
    Channels,
    /// Each block of `k` channels of one sample: `n * g` groups of `k * s`
    /// contiguous values.
    SampleChannels,
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
    /// LayerNorm: rows, centered.
    pub const LAYER: Layout = Layout {
        grouping: Grouping::Rows,
        centering: Centering::Mean,
    };
    /// RMSNorm: rows, not centered.
    pub const RMS: Layout = Layout {
        grouping: Grouping::Rows,
        centering: Centering::None,
    };
    /// Training BatchNorm: channels over the batch.
    pub const BATCH: Layout = Layout {
        grouping: Grouping::Channels,
        centering: Centering::Mean,
    };
    /// GroupNorm and InstanceNorm: blocks of channels of each sample.
    pub const GROUP: Layout = Layout {
        grouping: Grouping::SampleChannels,
        centering: Centering::Mean,
    };

    /// Which parameter a value uses: along the row for rows, per channel
    /// otherwise.
    pub fn params(&self) -> Params {
        match self.grouping {
            Grouping::Rows => Params::AlongRow,
            Grouping::Channels | Grouping::SampleChannels => Params::PerChannel,
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
    /// The groups of an `[n, g, k, s]` input.
    ///
    /// # Panics
    /// If `shape` is not of rank 4 (the functional layer always reshapes),
    /// or has no values (the functional layer gives those an empty output
    /// without the kernels: there are no statistics to take).
    pub fn of(shape: &[usize], layout: Layout) -> Self {
        match *shape {
            [n, g, k, s] if n * g * k * s > 0 => Groups {
                n,
                c: g * k,
                k,
                s,
                layout,
            },
            _ => panic!(
                "burn-norm's fused normalization expects an [n, g, k, s] tensor with values, got shape {shape:?}"
            ),
        }
    }

    /// Number of groups (statistics).
    pub fn count(&self) -> usize {
        match self.layout.grouping {
            Grouping::Rows => self.n * self.c,
            Grouping::Channels => self.c / self.k.max(1),
            Grouping::SampleChannels => self.n * (self.c / self.k.max(1)),
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
            Grouping::Rows => self.s,
            Grouping::Channels => self.n * self.k * self.s,
            Grouping::SampleChannels => self.k * self.s,
        }
    }

    /// The input's shape, `[n, g, k, s]`.
    pub fn shape(&self) -> Vec<usize> {
        vec![self.n, self.c / self.k.max(1), self.k, self.s]
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
        assert_eq!(of([2, 3, 2, 5], Layout::GROUP), (6, 10, 6));
        // InstanceNorm: one block per channel.
        assert_eq!(of([2, 6, 1, 5], Layout::GROUP), (12, 5, 6));
    }
}
