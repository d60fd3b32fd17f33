//! Batch renormalization (Ioffe, 2017): batch statistics corrected towards
//! the running ones.

use super::accumulation::widened;
use super::batch_norm::{BatchStatistics, batch_norm_train, channel_shape};
use super::core::affine;
use burn::tensor::Tensor;

/// The clipping limits of one step: `r` in `[1 / rmax, rmax]`, `d` in
/// `[-dmax, dmax]`. `rmax = 1`, `dmax = 0` is plain batch normalization.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RenormLimits {
    /// The largest correction of the scale, >= 1.
    pub rmax: f64,
    /// The largest correction of the shift (in running standard
    /// deviations), >= 0.
    pub dmax: f64,
}

/// The output of [`batch_renorm_train`]: the batch normalization's, with the
/// corrections applied.
#[derive(Debug, Clone)]
pub struct RenormStatistics<const D: usize> {
    /// The output and the batch statistics (for the running update).
    pub batch: BatchStatistics<D>,
    /// `r` per channel, `[C]`, detached.
    pub r: Tensor<1>,
    /// `d` per channel, `[C]`, detached.
    pub d: Tensor<1>,
}

/// Batch renormalization in training ([Ioffe, 2017](https://arxiv.org/abs/1702.03275)):
///
/// ```text
/// x̂ = (x - μ_B) / σ_B                          (batch statistics, as batch_norm_train)
/// r = clip(σ_B / σ, 1 / rmax, rmax),  d = clip((μ_B - μ) / σ, -dmax, dmax)
/// y = gamma * (x̂ r + d) + beta
/// ```
///
/// with `σ_B = sqrt(var_B + epsilon)` and the running `μ = running_mean`,
/// `σ = sqrt(running_var + epsilon)` (their values before this step's
/// update). `r` and `d` are constants for the gradient (stop-gradient), as
/// in the paper: gradients flow through `x̂` only.
///
/// # Shapes
/// - `x`: `[N, C, ...]`; `running_mean`, `running_var`, `gamma`, `beta`: `[C]`
/// - output: `[N, C, ...]`
pub fn batch_renorm_train<const D: usize>(
    x: Tensor<D>,
    running_mean: Tensor<1>,
    running_var: Tensor<1>,
    gamma: Option<Tensor<1>>,
    beta: Option<Tensor<1>>,
    epsilon: f64,
    limits: RenormLimits,
) -> RenormStatistics<D> {
    let shape = channel_shape(&x);
    let dtype = x.dtype();
    let normalized = batch_norm_train(x, None, None, epsilon);
    let sigma_b = normalized.variance.clone().add_scalar(epsilon).sqrt();
    let sigma = running_var.cast(dtype).add_scalar(epsilon).sqrt();
    let r = (sigma_b / sigma.clone())
        .clamp(1.0 / limits.rmax, limits.rmax)
        .detach();
    let d = ((normalized.mean.clone() - running_mean.cast(dtype)) / sigma)
        .clamp(-limits.dmax, limits.dmax)
        .detach();
    let corrected = normalized.output * r.clone().reshape(shape) + d.clone().reshape(shape);
    RenormStatistics {
        batch: BatchStatistics {
            // In f32 for half inputs, with the parameters in its dtype.
            output: widened(corrected, [gamma, beta], |c, [gamma, beta]| {
                affine(c, gamma, beta, shape)
            }),
            ..normalized
        },
        r,
        d,
    }
}
