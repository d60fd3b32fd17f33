//! Per-feature statistics gathered in one streaming pass, in f64.

use crate::error::NormError;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// Count, mean, sum of squared deviations (`m2`), minimum and maximum of
/// each feature, over every batch seen so far.
///
/// Each batch is summarized exactly in f64 (its mean, then the squared
/// deviations from it: two passes), and summaries are merged with Chan et
/// al.'s pairwise formula, so that the result does not depend on how the
/// data was split into batches (up to f64 rounding) and a stream of a
/// billion values at mean 1e4 keeps its variance to ~1e-12 relative.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureMoments {
    /// Values seen per feature.
    pub count: u64,
    /// Mean of each feature.
    pub mean: Vec<f64>,
    /// `Σ (x - mean)²` of each feature.
    pub m2: Vec<f64>,
    /// Smallest value of each feature.
    pub min: Vec<f64>,
    /// Largest value of each feature.
    pub max: Vec<f64>,
}

/// Where the features are in a tensor: `axis`, with `inner` values of one
/// feature next to each other after it.
struct FeatureAxis {
    features: usize,
    inner: usize,
}

impl FeatureMoments {
    /// The statistics of one batch, features along `axis` of `batch`.
    pub(crate) fn of_batch<const D: usize>(
        scaler: &'static str,
        batch: &Tensor<D>,
        axis: usize,
    ) -> Result<Self, NormError> {
        let dims = batch.dims();
        let layout = feature_axis(scaler, &dims, axis)?;
        let values: Vec<f64> = batch
            .clone()
            .into_data()
            .convert::<f64>()
            .try_to_vec::<f64>()
            .expect("converted to f64 just above");
        let f = layout.features;
        let feature = |i: usize| (i / layout.inner) % f;
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(NormError::NonFiniteData {
                scaler,
                value: values[i],
                index: i,
            });
        }
        let count = (values.len() / f.max(1)) as u64;
        let mut sum = vec![0.0f64; f];
        let mut min = vec![f64::INFINITY; f];
        let mut max = vec![f64::NEG_INFINITY; f];
        for (i, &v) in values.iter().enumerate() {
            let j = feature(i);
            sum[j] += v;
            min[j] = min[j].min(v);
            max[j] = max[j].max(v);
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / count.max(1) as f64).collect();
        let mut m2 = vec![0.0f64; f];
        for (i, &v) in values.iter().enumerate() {
            let j = feature(i);
            let d = v - mean[j];
            m2[j] += d * d;
        }
        Ok(FeatureMoments {
            count,
            mean,
            m2,
            min,
            max,
        })
    }

    /// The statistics of `self`'s data and `other`'s together (Chan et al.,
    /// 1979): `mean = ma + d nb / n`, `m2 = m2a + m2b + d² na nb / n` with
    /// `d = mb - ma`.
    pub fn merge(&self, other: &Self) -> Self {
        if self.count == 0 {
            return other.clone();
        }
        if other.count == 0 {
            return self.clone();
        }
        let (na, nb) = (self.count as f64, other.count as f64);
        let n = na + nb;
        let zip = |a: &[f64], b: &[f64], f: &dyn Fn(f64, f64) -> f64| -> Vec<f64> {
            a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect()
        };
        let delta = zip(&other.mean, &self.mean, &|b, a| b - a);
        FeatureMoments {
            count: self.count + other.count,
            mean: zip(&self.mean, &delta, &|a, d| a + d * (nb / n)),
            m2: self
                .m2
                .iter()
                .zip(&other.m2)
                .zip(&delta)
                .map(|((a, b), d)| a + b + d * d * (na * nb / n))
                .collect(),
            min: zip(&self.min, &other.min, &f64::min),
            max: zip(&self.max, &other.max, &f64::max),
        }
    }

    /// Number of features.
    pub fn features(&self) -> usize {
        self.mean.len()
    }

    /// The population variance (`m2 / count`, as scikit-learn's `var_`).
    pub fn var(&self) -> Vec<f64> {
        self.m2
            .iter()
            .map(|m| m / self.count.max(1) as f64)
            .collect()
    }
}

/// Checks `axis` against `dims` and describes it.
fn feature_axis(
    scaler: &'static str,
    dims: &[usize],
    axis: usize,
) -> Result<FeatureAxis, NormError> {
    if axis >= dims.len() || dims.iter().product::<usize>() == 0 {
        return Err(NormError::InvalidInput {
            layer: scaler,
            expected: format!("a non-empty tensor with a feature axis {axis}"),
            got: dims.to_vec(),
        });
    }
    Ok(FeatureAxis {
        features: dims[axis],
        inner: dims[axis + 1..].iter().product(),
    })
}

/// The shape that a per-feature vector broadcasts to against `dims`.
pub(crate) fn broadcast_shape<const D: usize>(dims: [usize; D], axis: usize) -> [usize; D] {
    let mut shape = [1; D];
    shape[axis] = dims[axis];
    shape
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch summarized in closed form: `n` values `c + k h` (k = 0..n),
    /// mean `c + h (n - 1) / 2`, m2 `h² n (n² - 1) / 12`.
    fn arithmetic(c: f64, h: f64, n: u64) -> FeatureMoments {
        let nf = n as f64;
        FeatureMoments {
            count: n,
            mean: vec![c + h * (nf - 1.0) / 2.0],
            m2: vec![h * h * nf * (nf * nf - 1.0) / 12.0],
            min: vec![c],
            max: vec![c + h * (nf - 1.0)],
        }
    }

    /// A billion values at mean 1e4 in a thousand batches of a million: the
    /// merged mean and variance equal the closed form to 1e-9 relative (the
    /// issue asks 1e-6). The data is the arithmetic sequence
    /// `1e4 + k 1e-6`, k < 1e9, split in order.
    #[test]
    fn a_billion_values_at_mean_1e4_merge_exactly() {
        let (h, per, batches) = (1e-6, 1_000_000u64, 1000u64);
        let mut total = FeatureMoments {
            count: 0,
            mean: vec![0.0],
            m2: vec![0.0],
            min: vec![f64::INFINITY],
            max: vec![f64::NEG_INFINITY],
        };
        for b in 0..batches {
            total = total.merge(&arithmetic(1e4 + (b * per) as f64 * h, h, per));
        }
        let exact = arithmetic(1e4, h, per * batches);
        let rel = |a: f64, e: f64| ((a - e) / e).abs();
        assert_eq!(total.count, exact.count);
        assert!(rel(total.mean[0], exact.mean[0]) < 1e-12, "{total:?}");
        assert!(
            rel(total.var()[0], exact.var()[0]) < 1e-9,
            "var {} vs {}",
            total.var()[0],
            exact.var()[0]
        );
        assert_eq!(
            (total.min[0], total.max[0]),
            (exact.min[0], 1e4 + (per * batches - 1) as f64 * h)
        );
    }
}
