//! Layer normalization and RMS normalization: statistics per sample, over
//! the trailing axes.

use super::core::{has_no_values, without_values};
use super::grouped::normalize_groups;
use crate::backend::{Centering, Layout, Statistics};
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
/// Burn's tensor operations. Both compute the same formula. An input without
/// values (an empty batch) gives an empty output, as PyTorch.
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
    over_rows(x, normalized_dims, gamma, beta, Centering::Mean, epsilon)
}

/// Root-mean-square normalization ([Zhang & Sennrich,
/// 2019](https://arxiv.org/abs/1910.07467)) over the last `normalized_dims`
/// axes, as PyTorch's `rms_norm(x, normalized_shape, weight, eps)`:
///
/// `y = x / sqrt(mean(x²) + epsilon) * gamma`
///
/// with the mean over the last `normalized_dims` axes of each sample (no
/// centering, no shift).
///
/// # Shapes
/// - `x`: `[..., s_1, ..., s_k]` with `k = normalized_dims`
/// - `gamma`: `[s_1 * ... * s_k]`
/// - output: the shape of `x`
///
/// # Panics
/// If `normalized_dims` is 0 or more than the rank of `x`.
pub fn rms_norm<const D: usize>(
    x: Tensor<D>,
    normalized_dims: usize,
    gamma: Option<Tensor<1>>,
    epsilon: f64,
) -> Tensor<D> {
    over_rows(x, normalized_dims, gamma, None, Centering::None, epsilon)
}

/// The rows of the last `normalized_dims` axes, centered as `centering`
/// says.
fn over_rows<const D: usize>(
    x: Tensor<D>,
    normalized_dims: usize,
    gamma: Option<Tensor<1>>,
    beta: Option<Tensor<1>>,
    centering: Centering,
    epsilon: f64,
) -> Tensor<D> {
    assert!(
        (1..=D).contains(&normalized_dims),
        "normalization over the trailing axes: normalized_dims must be in 1..={D}, got {normalized_dims}"
    );
    let dims = x.dims();
    if has_no_values(&x) {
        let mut shape = dims;
        shape[..D - normalized_dims].fill(1);
        return without_values(x, gamma, beta, shape);
    }
    // The input as it is: the row's axes travel in the layout (see
    // `Groups::of`), and a reshape is one operation more under fusion.
    normalize_groups(
        x,
        gamma,
        beta,
        Layout::rows(normalized_dims, centering),
        epsilon,
        Statistics::Discarded,
        None,
    )
    .output
}
