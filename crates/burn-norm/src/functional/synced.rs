//! Synchronized batch normalization: one BatchNorm over a batch split
//! across data-parallel replicas.

use super::accumulation::{accumulation_dtype, in_dtype};
use super::batch_norm::{BatchStatistics, channel_shape};
use super::core::{affine, no_statistics, standardize, without_values};
use crate::backend::combine_sum;
use crate::sync::SyncReplica;
use burn::tensor::{FloatDType, Tensor};

/// [`batch_norm_train`](super::batch_norm_train) with the statistics of the
/// whole batch, of which `x` is this replica's slice: every replica calls
/// it with its slice (any number of samples, same channels and spatial
/// size), and each gets its slice of what one BatchNorm over the whole
/// batch gives.
///
/// Statistics, per channel, in three sums over the replicas: the count
/// `N` and a shift (the replicas' first values averaged: the same on every
/// replica, and within the data's range, so that `x - shift` is exact and
/// small for data far from zero, as [`moments`](super::moments) does with
/// one slice's first value); the sum of `x - shift`, which gives the mean;
/// the squared deviations from that mean. Never `E[x²] - E[x]²`.
/// `var = Σ (x - mean)² / N`, biased; the returned `count` is `N` (the
/// running variance's Bessel correction is the whole batch's, as PyTorch's
/// `SyncBatchNorm`). A replica's slice may be empty; where every slice is,
/// the outputs are empty, `count` is 0 and the statistics are NaN.
///
/// Gradients: the two sums are [`CombineOps`](crate::backend::CombineOps)
/// operations, whose backward sums the gradient over the replicas, so the
/// input gradient is the whole batch's; `gamma`'s and `beta`'s are this
/// replica's share (data-parallel training sums them over the replicas
/// with every other parameter's).
///
/// Composed from Burn's tensor operations (no fused kernel); on the
/// backends the combine operation runs on (flex, ndarray, wgpu).
///
/// # Shapes
/// - `x`: `[n, C, ...]` (this replica's `n`); `gamma`, `beta`: `[C]`
/// - output: `[n, C, ...]`; statistics `[C]`
pub fn batch_norm_train_synced<const D: usize>(
    x: Tensor<D>,
    gamma: Option<Tensor<1>>,
    beta: Option<Tensor<1>>,
    epsilon: f64,
    replica: &SyncReplica,
) -> BatchStatistics<D> {
    // Half precision is widened to f32 for the statistics and the output,
    // as everywhere in the crate, and narrowed back at the end.
    let narrow: Option<FloatDType> = accumulation_dtype(x.dtype()).map(|_| x.dtype().into());
    let x = match accumulation_dtype(x.dtype()) {
        Some(wide) => x.cast(wide),
        None => x,
    };
    // The parameters take the dtype computed in, whatever theirs is.
    let dtype = x.dtype();
    let (gamma, beta) = (
        gamma.map(|t| in_dtype(t, dtype)),
        beta.map(|t| in_dtype(t, dtype)),
    );
    let dims = x.dims();
    let (n, c) = (dims[0], dims[1]);
    let s = dims[2..].iter().product::<usize>();
    // Round one, constants: N, the number of replicas with values, their
    // first values. A replica's slice may be empty (a last batch smaller
    // than the replicas): it takes part in every round with nothing.
    let mut head = vec![(n * s) as f64, 0.0];
    if n * s > 0 {
        let first = x.clone().reshape([n, c, s]).narrow(0, 0, 1).narrow(2, 0, 1);
        let first = first.reshape([c]);
        head[1] = 1.0;
        head.extend(first.detach().into_data().convert::<f64>().iter::<f64>());
    } else {
        head.extend(std::iter::repeat_n(0.0, c));
    }
    let head = replica.sum(&head);
    let (count, replicas) = (head[0], head[1]);
    // Every replica sees the same count, so all stop here together.
    assert!(
        count != 1.0,
        "BatchNorm: expected more than 1 value per channel over the replicas when training, got {count}"
    );
    if count == 0.0 {
        // No values anywhere: empty outputs, still tied to gamma and beta
        // (zero gradients, as PyTorch), and no statistics (NaN, 0 / 0).
        let output = without_values(x.clone(), gamma, beta, channel_shape(&x));
        return BatchStatistics {
            mean: no_statistics([c], &x),
            variance: no_statistics([c], &x),
            output: match narrow {
                Some(original) => output.cast(original),
                None => output,
            },
            count: 0,
        };
    }
    // Every slice's spatial size is the same, and not 0 here: an empty
    // slice is `[0, c, s]`, a view Burn's reshape can take.
    let x = x.reshape([n, c, s]);
    let shift: Vec<f32> = head[2..].iter().map(|&v| (v / replicas) as f32).collect();
    let shift = Tensor::<1>::from_data(shift.as_slice(), &x.device())
        .cast(x.dtype())
        .reshape([1, c, 1]);
    // Rounds two and three, differentiable: the mean of `x - shift`, then
    // the squared deviations from it.
    let shifted = x - shift.clone();
    let local_sum = shifted.clone().sum_dims(&[0, 2]).reshape([c]);
    let shifted_mean = combine_sum(local_sum, replica).div_scalar(count);
    let centered = shifted - shifted_mean.clone().reshape([1, c, 1]);
    let squares = centered.clone().square().sum_dims(&[0, 2]).reshape([c]);
    let variance = combine_sum(squares, replica).div_scalar(count);
    let mean = shifted_mean + shift.reshape([c]);
    let output = affine(
        standardize(centered, variance.clone().reshape([1, c, 1]), epsilon),
        gamma,
        beta,
        [1, c, 1],
    );
    let output = output.reshape(dims);
    BatchStatistics {
        output: match narrow {
            Some(original) => output.cast(original),
            None => output,
        },
        mean: mean.detach(),
        variance: variance.detach(),
        count: count as usize,
    }
}
