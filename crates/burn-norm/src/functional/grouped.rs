//! The one entry point of every layer's math: normalize the groups that a
//! [`Layout`] describes, with the fused kernel where the backend has one and
//! composed from Burn's tensor operations elsewhere.

use super::accumulation::{in_dtype, widened};
use super::core::{affine, moments, standardize};
use super::running::{ChannelMoments, update_running_statistics};
use crate::backend::{self, Centering, Grouping, Layout, RunningInput, Statistics};
use burn::tensor::{DType, Tensor};

/// What [`normalize_groups`] returns.
pub(crate) struct GroupOutput<const D: usize> {
    /// The normalized input, in the input's shape.
    pub output: Tensor<D>,
    /// The statistics as computed (accumulation dtype, maybe tracked):
    /// converted only by [`statistics`](Self::statistics), so that the
    /// layers that drop them pay nothing for them. `None` where discarded.
    stats: Option<(Tensor<1>, Tensor<1>)>,
    dtype: DType,
}

/// Each group's statistics, flat, in the input's dtype (the running
/// statistics' where [`normalize_groups`] updated them), detached.
pub(crate) struct GroupStatistics {
    /// The mean (zeros where the layout does not center).
    pub mean: Tensor<1>,
    /// The biased variance (the mean square where the layout does not
    /// center).
    pub var: Tensor<1>,
}

impl<const D: usize> GroupOutput<D> {
    /// The statistics the output was normalized with.
    ///
    /// # Panics
    /// If [`normalize_groups`] was told to discard them (a bug in the
    /// calling layer, not a user error).
    pub fn statistics(&self) -> GroupStatistics {
        let (mean, var) = self
            .stats
            .as_ref()
            .expect("statistics requested from a normalization told to discard them");
        GroupStatistics {
            mean: mean.clone().detach().cast(self.dtype),
            var: var.clone().detach().cast(self.dtype),
        }
    }
}

/// Normalizes `x` (`[n, c, ..]` for channels; for rows, any rank whose
/// last axes, as many as the layout says, are the row; see
/// [`backend::layout`]) in the groups of `layout`, scaled and shifted by
/// `gamma`, `beta` (`[s]` along rows, `[g * k]` per channel).
/// Half-precision inputs are computed in f32. `statistics` says whether the
/// caller will ask for
/// [`GroupOutput::statistics`]. With `running`, those statistics are the
/// running statistics updated with the batch, per group
/// ([`update_running_statistics`]; see [`Statistics::Running`] for running
/// statistics of a channel that every sample's groups share), in their own
/// dtype, taken in the same operation as the output where the backend has
/// a kernel.
pub(crate) fn normalize_groups<const D: usize>(
    x: Tensor<D>,
    gamma: Option<Tensor<1>>,
    beta: Option<Tensor<1>>,
    layout: Layout,
    epsilon: f64,
    statistics: Statistics,
    running: Option<RunningInput>,
) -> GroupOutput<D> {
    let dtype = running.as_ref().map_or(x.dtype(), |r| r.mean.dtype());
    let kept = statistics != Statistics::Discarded || running.is_some();
    let mut stats = None;
    let output = widened(x, [gamma, beta], |x, [gamma, beta]| {
        // The running statistics in the dtype of the computation.
        let running = running.map(|r| RunningInput {
            mean: in_dtype(r.mean, x.dtype()),
            var: in_dtype(r.var, x.dtype()),
            update: r.update,
        });
        if backend::has_fused_kernel(&x.device(), x.dtype()) {
            let (y, s) = backend::normalize(x, gamma, beta, layout, epsilon, statistics, running);
            stats = Some((s.mean, s.var));
            return y;
        }
        // The composed path takes the `[n, g, k, s]` view.
        let dims = x.dims();
        let grouped = x.reshape(backend::layout::Groups::of(&dims, layout).shape());
        let (y, mean, var) = composed(grouped, gamma, beta, layout, epsilon);
        let y = y.reshape(dims);
        stats = Some(match running {
            Some(RunningInput {
                mean: rm,
                var: rv,
                update,
            }) => {
                // Per channel for every sample's groups: tiled, as the
                // kernels take group `g`'s from `g mod len`.
                let repeat = mean.dims()[0] / rm.dims()[0];
                let (rm, rv) = (rm.repeat_dim(0, repeat), rv.repeat_dim(0, repeat));
                let batch = ChannelMoments {
                    mean,
                    variance: var,
                    count: update.count,
                };
                let updated = update_running_statistics(rm, rv, &batch, update.factor);
                (updated.mean, updated.var)
            }
            None => (mean, var),
        });
        y
    });
    let stats = stats.expect("the closure always runs");
    GroupOutput {
        output,
        stats: kept.then_some(stats),
        dtype,
    }
}

fn composed(
    x: Tensor<4>,
    gamma: Option<Tensor<1>>,
    beta: Option<Tensor<1>>,
    layout: Layout,
    epsilon: f64,
) -> (Tensor<4>, Tensor<1>, Tensor<1>) {
    let [_, g, k, s] = x.dims();
    let axes: &[usize] = match layout.grouping {
        Grouping::Rows { .. } => &[3],
        Grouping::Channels => &[0, 2, 3],
        Grouping::SampleChannels { .. } => &[2, 3],
    };
    let params = match layout.grouping {
        Grouping::Rows { .. } => [1, 1, 1, s],
        Grouping::Channels | Grouping::SampleChannels { .. } => [1, g, k, 1],
    };
    let (xhat, mean, var) = match layout.centering {
        Centering::Mean => {
            let m = moments(x, axes);
            let var = m.variance.clone();
            (standardize(m.centered, m.variance, epsilon), m.mean, var)
        }
        Centering::None => {
            let mean_square = x.clone().square().mean_dims(axes);
            let xhat = standardize(x, mean_square.clone(), epsilon);
            (xhat, mean_square.zeros_like(), mean_square)
        }
    };
    let flat = |t: Tensor<4>| t.flatten::<1>(0, 3);
    (affine(xhat, gamma, beta, params), flat(mean), flat(var))
}
