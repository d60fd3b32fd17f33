//! Data scalers, fitted once on the training data and shipped with the
//! model: [`StandardScaler`] (z-score) and [`MinMaxScaler`] (to a range),
//! scikit-learn's semantics.
//!
//! The features are along one axis chosen by the user (`1` for `[N, F]`
//! tables and for the channels of `[N, C, H, W]` images); every other axis
//! holds samples. Fitting reads each batch to the host once and merges
//! per-feature statistics in f64 ([`FeatureMoments`]); transforming runs on
//! the tensor's own device.

mod min_max;
mod moments;
mod standard;

pub use min_max::MinMaxScaler;
pub use moments::FeatureMoments;
pub use standard::StandardScaler;
