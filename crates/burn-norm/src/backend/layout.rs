//! How a fused-normalization input splits into groups: the one description
//! that the CPU kernels, the CubeCL kernels and the fusion metadata share.
//!
//! The input is `[n, c, s]`, row-major. A *group* is the set of values one
//! mean and variance are taken over:
//! - [`Grouping::Rows`] (LayerNorm): each `[s]` row; `gamma`, `beta` are `[s]`.
//! - [`Grouping::Channels`] (BatchNorm training): each channel's `n` rows of
//!   `s`, `c * s` apart; `gamma`, `beta` are `[c]`.

/// Which values share one mean and variance; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grouping {
    Rows,
    Channels,
}

/// The `[n, c, s]` extents and the grouping.
#[derive(Clone, Copy, Debug)]
pub struct Groups {
    pub n: usize,
    pub c: usize,
    pub s: usize,
    pub grouping: Grouping,
}

impl Groups {
    /// The groups of an `[n, c, s]` input: rows (LayerNorm) or, with
    /// `per_channel`, channels (training BatchNorm).
    pub fn of(shape: &[usize], per_channel: bool) -> Self {
        match *shape {
            [n, c, s] => Groups {
                n,
                c,
                s,
                grouping: if per_channel {
                    Grouping::Channels
                } else {
                    Grouping::Rows
                },
            },
            _ => panic!(
                "burn-norm's fused normalization expects an [n, c, s] tensor, got shape {shape:?}"
            ),
        }
    }

    /// Number of groups (statistics).
    pub fn count(&self) -> usize {
        match self.grouping {
            Grouping::Rows => self.n * self.c,
            Grouping::Channels => self.c,
        }
    }

    /// Length of `gamma` and `beta` (and of their gradients).
    pub fn params(&self) -> usize {
        match self.grouping {
            Grouping::Rows => self.s,
            Grouping::Channels => self.c,
        }
    }

    /// Values per group.
    pub fn size(&self) -> usize {
        match self.grouping {
            Grouping::Rows => self.s,
            Grouping::Channels => self.n * self.s,
        }
    }

    /// The input's shape, `[n, c, s]`.
    pub fn shape(&self) -> Vec<usize> {
        vec![self.n, self.c, self.s]
    }
}
