//! The normalization core that every layer of the family specializes.

use super::accumulation::widened;
use burn::tensor::Tensor;

/// Mean and biased variance of a tensor over some axes, with the centered
/// tensor they were computed from. Reduced axes are kept with size 1.
#[derive(Debug, Clone)]
pub struct Moments<const D: usize> {
    /// `x - mean`, shape of `x`.
    pub centered: Tensor<D>,
    /// The mean over the reduced axes.
    pub mean: Tensor<D>,
    /// The biased variance `mean((x - mean)^2)` over the reduced axes.
    pub variance: Tensor<D>,
}

/// Mean and biased variance of `x` over `axes`, stable for inputs whose mean is
/// large against their spread.
///
/// Summing raw f32 values of magnitude 1e4 loses about 1e-3 of absolute
/// precision per addition, which is the whole spread of an input with standard
/// deviation 1e-2. So the moments are taken of `x - s`, where the shift `s` is
/// the first element of each reduced slice: it lies within the data's range, so
/// the subtraction is exact (Sterbenz) and the sums only see values of the size
/// of the spread. The variance is then a second pass over the centered values,
/// never `E[x^2] - E[x]^2`. The shift is detached: the output does not depend
/// on it, so no gradient flows through it.
pub fn moments<const D: usize>(x: Tensor<D>, axes: &[usize]) -> Moments<D> {
    let shift = axes
        .iter()
        .fold(x.clone(), |s, &axis| s.narrow(axis, 0, 1))
        .detach();
    let shifted = x - shift.clone();
    let shifted_mean = shifted.clone().mean_dims(axes);
    let centered = shifted - shifted_mean.clone();
    let variance = centered.clone().square().mean_dims(axes);
    Moments {
        centered,
        mean: shifted_mean + shift,
        variance,
    }
}

/// `centered / sqrt(variance + epsilon)`, with `variance` broadcast.
///
/// Multiplies by the reciprocal square root as PyTorch does, so that results
/// round the same way.
pub fn standardize<const D: usize>(
    centered: Tensor<D>,
    variance: Tensor<D>,
    epsilon: f64,
) -> Tensor<D> {
    centered * variance.add_scalar(epsilon).sqrt().recip()
}

/// Whether `x` has no values: an empty batch, or a zero-size axis. Such an
/// input has no statistics, and the layouts' views of it cannot be taken
/// (Burn 0.22.1's reshape reads a 0 in the target shape as "keep this axis
/// of the source"): the layers give it [`without_values`]'s output.
pub(crate) fn has_no_values<const D: usize>(x: &Tensor<D>) -> bool {
    x.shape().num_elements() == 0
}

/// The output for an input without values, as PyTorch gives it: empty, of
/// `x`'s shape, and `x * gamma + beta` ([`affine`], `shape` as there), so
/// that `x`, `gamma` and `beta` stay in the graph with empty and zero
/// gradients.
pub(crate) fn without_values<const D: usize>(
    x: Tensor<D>,
    gamma: Option<Tensor<1>>,
    beta: Option<Tensor<1>>,
    shape: [usize; D],
) -> Tensor<D> {
    widened(x, [gamma, beta], |x, [gamma, beta]| {
        affine(x, gamma, beta, shape)
    })
}

/// What a statistic of no values is: NaN (`0 / 0`), `shape`, in `dtype`.
pub(crate) fn no_statistics<const D: usize, const L: usize>(
    shape: [usize; D],
    like: &Tensor<L>,
) -> Tensor<D> {
    Tensor::<D>::full(shape, f32::NAN, &like.device()).cast(like.dtype())
}

/// `x * gamma + beta`, with `gamma` and `beta` (flat, `[prod(shape)]`)
/// reshaped to `shape`, which must broadcast against `x`.
pub fn affine<const D: usize>(
    x: Tensor<D>,
    gamma: Option<Tensor<1>>,
    beta: Option<Tensor<1>>,
    shape: [usize; D],
) -> Tensor<D> {
    let x = match gamma {
        Some(gamma) => x * gamma.reshape(shape),
        None => x,
    };
    match beta {
        Some(beta) => x + beta.reshape(shape),
        None => x,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn moments_by_hand() {
        let x = Tensor::<2>::from_data(
            TensorData::from([[1.0f32, 2.0, 3.0, 4.0], [10.0, 10.0, 10.0, 14.0]]),
            &Device::flex(),
        );
        let m = moments(x, &[1]);
        // Row 0: mean 2.5, var (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25.
        // Row 1: mean 11, var (1 + 1 + 1 + 9) / 4 = 3.
        assert_eq!(values(m.mean), [2.5, 11.0]);
        assert_eq!(values(m.variance), [1.25, 3.0]);
        assert_eq!(
            values(m.centered),
            [-1.5, -0.5, 0.5, 1.5, -1.0, -1.0, -1.0, 3.0]
        );
    }

    #[test]
    fn standardize_and_affine_by_hand() {
        let device = Device::flex();
        let centered = Tensor::<2>::from_data(TensorData::from([[-3.0f32, 3.0]]), &device);
        let var = Tensor::<2>::from_data(TensorData::from([[9.0f32 - 1e-3]]), &device);
        let y = standardize(centered, var, 1e-3);
        assert_eq!(values(y.clone()), [-1.0, 1.0]);
        let gamma = Tensor::<1>::from_data(TensorData::from([2.0f32, 3.0]), &device);
        let beta = Tensor::<1>::from_data(TensorData::from([0.5f32, -0.5]), &device);
        assert_eq!(
            values(affine(y, Some(gamma), Some(beta), [1, 2])),
            [-1.5, 2.5]
        );
    }
}
