//! [`StandardScaler`]: `(x - mean) / std` per feature.

use super::moments::{FeatureMoments, broadcast_shape};
use crate::error::NormError;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

const SCALER: &str = "StandardScaler";

/// Standardizes each feature to mean 0 and variance 1, as scikit-learn's
/// `StandardScaler`: `y = (x - mean) / scale` with `scale = sqrt(var)`, the
/// population variance; a constant feature (variance within f64 rounding
/// of 0) keeps `scale = 1` instead of dividing by zero. Centering and
/// scaling can each be turned off.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use burn_norm::scaler::StandardScaler;
///
/// let device = Device::flex();
/// let mut scaler = StandardScaler::new(1);          // features along axis 1
/// for batch in [[[1.0, 10.0], [3.0, 10.0]], [[5.0, 10.0], [7.0, 10.0]]] {
///     scaler.partial_fit(&Tensor::<2>::from_floats(batch, &device)).unwrap();
/// }
/// assert_eq!(scaler.mean().unwrap(), vec![4.0, 10.0]);
/// assert_eq!(scaler.scale().unwrap(), vec![5.0f64.sqrt(), 1.0]); // constant: 1
/// let y = scaler.transform(Tensor::<2>::from_floats([[4.0, 10.0]], &device)).unwrap();
/// assert_eq!(y.into_data().try_to_vec::<f32>().unwrap(), vec![0.0, 0.0]);
/// let json = serde_json::to_string(&scaler).unwrap(); // ships with the model
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StandardScaler {
    axis: usize,
    with_mean: bool,
    with_std: bool,
    moments: Option<FeatureMoments>,
}

impl StandardScaler {
    /// An unfitted scaler for features along `axis`, centering and scaling.
    pub fn new(axis: usize) -> Self {
        Self {
            axis,
            with_mean: true,
            with_std: true,
            moments: None,
        }
    }

    /// Whether [`transform`](Self::transform) subtracts the mean (default true).
    pub fn with_mean(self, with_mean: bool) -> Self {
        Self { with_mean, ..self }
    }

    /// Whether [`transform`](Self::transform) divides by the standard
    /// deviation (default true).
    pub fn with_std(self, with_std: bool) -> Self {
        Self { with_std, ..self }
    }

    /// Adds one batch to the statistics.
    ///
    /// # Errors
    /// If the batch has no `axis`, is empty, holds NaN or infinity, or has
    /// another number of features than the batches before it.
    pub fn partial_fit<const D: usize>(&mut self, batch: &Tensor<D>) -> Result<(), NormError> {
        let stats = FeatureMoments::of_batch(SCALER, batch, self.axis)?;
        self.moments = Some(merge(SCALER, self.moments.take(), stats)?);
        Ok(())
    }

    /// Fits on every batch of `batches` (after any earlier
    /// [`partial_fit`](Self::partial_fit)); with a Burn dataset, map its
    /// items to tensors: `scaler.fit(dataset.iter().map(to_tensor))`.
    ///
    /// # Errors
    /// As [`partial_fit`](Self::partial_fit).
    pub fn fit<const D: usize>(
        &mut self,
        batches: impl IntoIterator<Item = Tensor<D>>,
    ) -> Result<(), NormError> {
        for batch in batches {
            self.partial_fit(&batch)?;
        }
        Ok(())
    }

    /// The statistics gathered so far; `None` before any batch.
    pub fn moments(&self) -> Option<&FeatureMoments> {
        self.moments.as_ref()
    }

    /// The feature axis.
    pub fn axis(&self) -> usize {
        self.axis
    }

    /// Each feature's mean (scikit-learn's `mean_`).
    pub fn mean(&self) -> Option<Vec<f64>> {
        self.moments.as_ref().map(|m| m.mean.clone())
    }

    /// Each feature's population variance (`var_`).
    pub fn var(&self) -> Option<Vec<f64>> {
        self.moments.as_ref().map(FeatureMoments::var)
    }

    /// Each feature's divisor (`scale_`): the standard deviation, or 1 for a
    /// constant feature.
    pub fn scale(&self) -> Option<Vec<f64>> {
        let m = self.moments.as_ref()?;
        let n = m.count as f64;
        let eps = f64::EPSILON;
        Some(
            m.var()
                .iter()
                .zip(&m.mean)
                .map(|(&var, &mean)| {
                    // scikit-learn's `_is_constant_feature`: a variance below
                    // the rounding error of its own computation is zero.
                    let bound = n * eps * var + (n * mean * eps).powi(2);
                    if var <= bound { 1.0 } else { var.sqrt() }
                })
                .collect(),
        )
    }

    /// `(x - mean) / scale` per feature, on `x`'s device and dtype.
    ///
    /// # Errors
    /// If the scaler is not fitted or `x` has another number of features.
    pub fn transform<const D: usize>(&self, x: Tensor<D>) -> Result<Tensor<D>, NormError> {
        let (shift, scale) = self.parameters(&x)?;
        let x = match shift {
            Some(mean) => (x - mean.high) - mean.low,
            None => x,
        };
        Ok(match scale {
            Some(scale) => x / scale,
            None => x,
        })
    }

    /// `x * scale + mean`, the inverse of [`transform`](Self::transform).
    ///
    /// # Errors
    /// As [`transform`](Self::transform).
    pub fn inverse_transform<const D: usize>(&self, x: Tensor<D>) -> Result<Tensor<D>, NormError> {
        let (shift, scale) = self.parameters(&x)?;
        let x = match scale {
            Some(scale) => x * scale,
            None => x,
        };
        Ok(match shift {
            Some(mean) => (x + mean.low) + mean.high,
            None => x,
        })
    }

    /// The mean (split in two) and scale as tensors that broadcast against
    /// `x`, each `None` where turned off.
    #[allow(clippy::type_complexity)]
    fn parameters<const D: usize>(
        &self,
        x: &Tensor<D>,
    ) -> Result<(Option<SplitMean<D>>, Option<Tensor<D>>), NormError> {
        let m = fitted(SCALER, &self.moments, x, self.axis)?;
        let shape = broadcast_shape(x.dims(), self.axis);
        let tensor = |v: Vec<f64>| {
            Tensor::<1>::from_data(TensorData::new(v, [m.features()]), (&x.device(), x.dtype()))
                .reshape(shape)
        };
        // The mean rounded to f32 would be off by up to half an f32 step of
        // its magnitude (5e-4 at 1e4), which is 5% of a 1e-2 spread: it is
        // applied as its f32 value and the f32 of the remainder, `x - high`
        // being exact for data near the mean (Sterbenz).
        let high: Vec<f64> = m.mean.iter().map(|&v| v as f32 as f64).collect();
        let low: Vec<f64> = m.mean.iter().zip(&high).map(|(v, h)| v - h).collect();
        Ok((
            self.with_mean.then(|| SplitMean {
                high: tensor(high),
                low: tensor(low),
            }),
            self.with_std.then(|| tensor(self.scale().expect("fitted"))),
        ))
    }
}

/// A mean as the f32 nearest to it plus the f32 of what remains.
struct SplitMean<const D: usize> {
    high: Tensor<D>,
    low: Tensor<D>,
}

/// `previous` and `batch` merged, if they describe the same features.
pub(super) fn merge(
    scaler: &'static str,
    previous: Option<FeatureMoments>,
    batch: FeatureMoments,
) -> Result<FeatureMoments, NormError> {
    match previous {
        Some(p) if p.features() != batch.features() => Err(NormError::FeatureMismatch {
            scaler,
            fitted: p.features(),
            got: batch.features(),
        }),
        Some(p) => Ok(p.merge(&batch)),
        None => Ok(batch),
    }
}

/// The statistics, checked against `x`'s features.
pub(super) fn fitted<'a, const D: usize>(
    scaler: &'static str,
    moments: &'a Option<FeatureMoments>,
    x: &Tensor<D>,
    axis: usize,
) -> Result<&'a FeatureMoments, NormError> {
    let m = moments.as_ref().ok_or(NormError::NotFitted { scaler })?;
    let dims = x.dims();
    if axis >= D || dims[axis] != m.features() {
        return Err(NormError::FeatureMismatch {
            scaler,
            fitted: m.features(),
            got: if axis < D { dims[axis] } else { 0 },
        });
    }
    Ok(m)
}
