//! [`MinMaxScaler`]: each feature mapped linearly onto `[low, high]`.

use super::moments::{FeatureMoments, broadcast_shape};
use super::standard::{fitted, merge};
use crate::error::NormError;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

const SCALER: &str = "MinMaxScaler";

/// Maps each feature's fitted range `[min, max]` onto `[low, high]`
/// (default `[0, 1]`), as scikit-learn's `MinMaxScaler`:
/// `y = x * scale + offset` with `scale = (high - low) / (max - min)` and
/// `offset = low - min * scale`; a constant feature (`max = min`) gets
/// `scale = high - low` instead of dividing by zero. It is computed as
/// `(x - min) * scale + low`, the same map, because `x * scale + offset`
/// in f32 cancels two large terms for data far from zero (`min` is one of
/// the data's own values, so `x - min` is exact for nearby data).
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use burn_norm::scaler::MinMaxScaler;
///
/// let device = Device::flex();
/// let mut scaler = MinMaxScaler::new(1).with_range(-1.0, 1.0).unwrap();
/// scaler.partial_fit(&Tensor::<2>::from_floats([[0.0, 5.0], [10.0, 5.0]], &device)).unwrap();
/// let y = scaler.transform(Tensor::<2>::from_floats([[5.0, 5.0]], &device)).unwrap();
/// assert_eq!(y.into_data().try_to_vec::<f32>().unwrap(), vec![0.0, -1.0]);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MinMaxScaler {
    axis: usize,
    low: f64,
    high: f64,
    moments: Option<FeatureMoments>,
}

impl MinMaxScaler {
    /// An unfitted scaler for features along `axis`, onto `[0, 1]`.
    pub fn new(axis: usize) -> Self {
        Self {
            axis,
            low: 0.0,
            high: 1.0,
            moments: None,
        }
    }

    /// The target range `[low, high]`.
    ///
    /// # Errors
    /// Unless `low < high`, both finite.
    pub fn with_range(self, low: f64, high: f64) -> Result<Self, NormError> {
        if !(low.is_finite() && high.is_finite() && low < high) {
            return Err(NormError::InvalidConfig {
                layer: SCALER,
                field: "feature_range",
                expected: "finite (low, high) with low < high",
                got: format!("({low}, {high})"),
            });
        }
        Ok(Self { low, high, ..self })
    }

    /// Adds one batch to the fitted range.
    ///
    /// # Errors
    /// If the batch has no `axis`, is empty, holds NaN or infinity, or has
    /// another number of features than the batches before it.
    pub fn partial_fit<const D: usize>(&mut self, batch: &Tensor<D>) -> Result<(), NormError> {
        let stats = FeatureMoments::of_batch(SCALER, batch, self.axis)?;
        self.moments = Some(merge(SCALER, self.moments.take(), stats)?);
        Ok(())
    }

    /// Fits on every batch of `batches`, as [`partial_fit`](Self::partial_fit).
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

    /// Each feature's smallest value (`data_min_`).
    pub fn data_min(&self) -> Option<Vec<f64>> {
        self.moments.as_ref().map(|m| m.min.clone())
    }

    /// Each feature's largest value (`data_max_`).
    pub fn data_max(&self) -> Option<Vec<f64>> {
        self.moments.as_ref().map(|m| m.max.clone())
    }

    /// Each feature's factor (`scale_`).
    pub fn scale(&self) -> Option<Vec<f64>> {
        let m = self.moments.as_ref()?;
        Some(
            m.min
                .iter()
                .zip(&m.max)
                .map(|(&lo, &hi)| {
                    let range = if hi - lo == 0.0 { 1.0 } else { hi - lo };
                    (self.high - self.low) / range
                })
                .collect(),
        )
    }

    /// Each feature's offset (`min_`): `low - data_min * scale`.
    pub fn offset(&self) -> Option<Vec<f64>> {
        let m = self.moments.as_ref()?;
        Some(
            m.min
                .iter()
                .zip(self.scale()?)
                .map(|(&lo, s)| self.low - lo * s)
                .collect(),
        )
    }

    /// `(x - min) * scale + low` per feature (`x * scale + offset`), on
    /// `x`'s device and dtype.
    ///
    /// # Errors
    /// If the scaler is not fitted or `x` has another number of features.
    pub fn transform<const D: usize>(&self, x: Tensor<D>) -> Result<Tensor<D>, NormError> {
        let (min, scale) = self.parameters(&x)?;
        Ok(((x - min) * scale).add_scalar(self.low))
    }

    /// `(y - low) / scale + min`, the inverse of [`transform`](Self::transform).
    ///
    /// # Errors
    /// As [`transform`](Self::transform).
    pub fn inverse_transform<const D: usize>(&self, x: Tensor<D>) -> Result<Tensor<D>, NormError> {
        let (min, scale) = self.parameters(&x)?;
        Ok(x.sub_scalar(self.low) / scale + min)
    }

    /// `data_min` and `scale` as tensors that broadcast against `x`.
    fn parameters<const D: usize>(
        &self,
        x: &Tensor<D>,
    ) -> Result<(Tensor<D>, Tensor<D>), NormError> {
        let m = fitted(SCALER, &self.moments, x, self.axis)?;
        let shape = broadcast_shape(x.dims(), self.axis);
        let tensor = |v: Vec<f64>| {
            Tensor::<1>::from_data(TensorData::new(v, [m.features()]), (&x.device(), x.dtype()))
                .reshape(shape)
        };
        Ok((m.min.clone(), self.scale().expect("fitted")))
            .map(|(min, scale)| (tensor(min), tensor(scale)))
    }
}
