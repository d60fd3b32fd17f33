//! Layer normalization: statistics per sample, over the trailing axes.

use super::accumulation::widened;
use super::core::{affine, moments, standardize};
use crate::backend;
use burn::tensor::Tensor;

/// Layer normalization over the last `normalized_dims` axes.
///
/// `y = (x - mean) / sqrt(var + epsilon) * gamma + beta`, where `mean` and the
/// biased `var` are taken over the last `normalized_dims` axes of each sample,
/// as PyTorch's `layer_norm(x, normalized_shape)` with
/// `normalized_shape = x.shape[-normalized_dims:]`.
///
/// On backends with a fused kernel (see [`crate::backend`]) this is one
/// operation with a handwritten backward; elsewhere it is composed from
/// Burn's tensor operations. Both compute the same formula.
///
/// # Shapes
/// - `x`: `[..., s_1, ..., s_k]` with `k = normalized_dims`
/// - `gamma`, `beta`: `[s_1 * ... * s_k]`, the row-major flattening of
///   PyTorch's `weight` / `bias` of shape `[s_1, ..., s_k]`
/// - output: the shape of `x`
///
/// # Panics
/// If `normalized_dims` is 0 or more than the rank of `x`.
pub fn layer_norm<const D: usize>(
    x: Tensor<D>,
    normalized_dims: usize,
    gamma: Option<Tensor<1>>,
    beta: Option<Tensor<1>>,
    epsilon: f64,
) -> Tensor<D> {
    assert!(
        (1..=D).contains(&normalized_dims),
        "layer_norm: normalized_dims must be in 1..={D}, got {normalized_dims}"
    );
    let axes: Vec<usize> = (D - normalized_dims..D).collect();
    widened(x, [gamma, beta], |x, [gamma, beta]| {
        let dims = x.dims();
        if backend::has_fused_kernel(&x.device(), x.dtype()) {
            // One fused operation over the rows of [samples, 1, normalized size].
            let d: usize = dims[D - normalized_dims..].iter().product();
            let rows = x.shape().num_elements() / d.max(1);
            let (y, _) = backend::normalize(x.reshape([rows, 1, d]), gamma, beta, false, epsilon);
            return y.reshape(dims);
        }
        let mut shape = [1; D];
        for &axis in &axes {
            shape[axis] = dims[axis];
        }
        let m = moments(x, &axes);
        affine(
            standardize(m.centered, m.variance, epsilon),
            gamma,
            beta,
            shape,
        )
    })
}
