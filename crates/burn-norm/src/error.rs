//! The error type of every fallible call in this crate.

use burn::tensor::Device;
use thiserror::Error;

/// What went wrong when building a layer or running it.
///
/// Every message names the layer, what it expected and what it got, so that a
/// user can fix the call site without reading this crate.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum NormError {
    /// A configuration value is out of its valid range.
    #[error("{layer}: invalid config: `{field}` must be {expected}, got {got}")]
    InvalidConfig {
        /// The layer being configured, e.g. `BatchNorm`.
        layer: &'static str,
        /// The offending config field.
        field: &'static str,
        /// The valid range, in words.
        expected: &'static str,
        /// The value that arrived.
        got: String,
    },
    /// The input tensor has the wrong rank or shape.
    #[error("{layer}: expected input {expected}, got shape {got:?}")]
    InvalidInput {
        /// The layer that rejected the input.
        layer: &'static str,
        /// The expected shape, in words.
        expected: String,
        /// The shape that arrived.
        got: Vec<usize>,
    },
    /// Batch statistics were requested from a single value per channel, which
    /// has no variance (PyTorch raises the same error).
    #[error(
        "{layer}: expected more than 1 value per channel when training, got input shape {got:?}"
    )]
    SingleValuePerChannel {
        /// The layer that rejected the input.
        layer: &'static str,
        /// The shape that arrived.
        got: Vec<usize>,
    },
    /// Instance statistics were requested from a single spatial value, which
    /// has no variance (PyTorch raises the same error).
    #[error(
        "{layer}: expected more than 1 spatial value per channel when normalizing with instance statistics, got input shape {got:?}"
    )]
    SingleSpatialValue {
        /// The layer that rejected the input.
        layer: &'static str,
        /// The shape that arrived.
        got: Vec<usize>,
    },
    /// The input is on another device than the layer's parameters and
    /// buffers (Burn would stop deep inside the operation instead).
    #[error(
        "{layer}: the input is on {input} but the layer's tensors are on {held}: move the layer (`layer.to_device(&device)`) or the input (`x.to_device(&device)`)"
    )]
    DeviceMismatch {
        /// The layer.
        layer: &'static str,
        /// The input's device, as Burn prints it.
        input: String,
        /// The layer's devices, as Burn prints them.
        held: String,
    },
    /// The layer was asked for something its device cannot do.
    #[error("{layer}: {what} is not available on {device}")]
    UnsupportedDevice {
        /// The layer.
        layer: &'static str,
        /// What was asked, e.g. `synchronized statistics`.
        what: &'static str,
        /// The device, as Burn prints it.
        device: String,
    },
    /// A scaler was used before it saw any data.
    #[error("{scaler}: not fitted: call partial_fit or fit first")]
    NotFitted {
        /// The scaler.
        scaler: &'static str,
    },
    /// Data has another number of features than the scaler was fitted on.
    #[error("{scaler}: fitted on {fitted} features, got data with {got}")]
    FeatureMismatch {
        /// The scaler.
        scaler: &'static str,
        /// Features seen when fitting.
        fitted: usize,
        /// Features of the data that arrived.
        got: usize,
    },
    /// Data to fit on holds NaN or infinity.
    #[error("{scaler}: the data holds a non-finite value ({value}) at flat index {index}")]
    NonFiniteData {
        /// The scaler.
        scaler: &'static str,
        /// The value.
        value: f64,
        /// Its position in the batch, row-major.
        index: usize,
    },
    /// A checkpoint could not be read, written, or did not fit the model.
    #[error("checkpoint {path}: {problem}")]
    Checkpoint {
        /// The file.
        path: String,
        /// What went wrong (for a load: every missing and unexpected key and
        /// every shape mismatch).
        problem: String,
    },
    /// A BatchNorm cannot be folded into the layer before it.
    #[error("BatchNorm: cannot fold into the {target} before it: {reason}")]
    Fold {
        /// The layer it was to be folded into, e.g. `Conv2d`.
        target: String,
        /// Why not.
        reason: String,
    },
}

/// Checks that `input` is on the device of every tensor the layer holds
/// (`held`, from [`Module::devices`](burn::module::Module::devices)): Burn's
/// device equality, which ignores autodiff, so a layer built on an autodiff
/// device takes inputs on the plain one and back.
pub(crate) fn check_device(
    layer: &'static str,
    input: &Device,
    held: &[Device],
) -> Result<(), NormError> {
    if held.iter().all(|device| device == input) {
        return Ok(());
    }
    Err(NormError::DeviceMismatch {
        layer,
        input: format!("{input:?}"),
        held: match held {
            [one] => format!("{one:?}"),
            many => format!("{many:?}"),
        },
    })
}

/// Checks `epsilon` the way every layer of the family needs it.
pub(crate) fn check_epsilon(layer: &'static str, epsilon: f64) -> Result<(), NormError> {
    if epsilon.is_finite() && epsilon > 0.0 {
        Ok(())
    } else {
        Err(NormError::InvalidConfig {
            layer,
            field: "epsilon",
            expected: "finite and > 0",
            got: epsilon.to_string(),
        })
    }
}

/// Checks a feature count: a layer over zero features normalizes nothing.
pub(crate) fn check_features(
    layer: &'static str,
    field: &'static str,
    value: usize,
) -> Result<(), NormError> {
    if value > 0 {
        Ok(())
    } else {
        Err(NormError::InvalidConfig {
            layer,
            field,
            expected: "> 0",
            got: value.to_string(),
        })
    }
}

/// Checks a running-statistics momentum: `None` or a finite value in `[0, 1]`.
pub(crate) fn check_momentum(layer: &'static str, momentum: Option<f64>) -> Result<(), NormError> {
    match momentum {
        Some(m) if !(m.is_finite() && (0.0..=1.0).contains(&m)) => Err(NormError::InvalidConfig {
            layer,
            field: "momentum",
            expected: "None or a finite value in [0, 1]",
            got: m.to_string(),
        }),
        _ => Ok(()),
    }
}

/// Checks a `normalized_shape` against `d_model`.
pub(crate) fn check_normalized_shape(
    layer: &'static str,
    shape: &[usize],
    d_model: usize,
) -> Result<(), NormError> {
    if shape.is_empty() || shape.iter().product::<usize>() != d_model {
        return Err(NormError::InvalidConfig {
            layer,
            field: "normalized_shape",
            expected: "a non-empty shape whose product is d_model",
            got: format!("{shape:?} with d_model = {d_model}"),
        });
    }
    Ok(())
}

/// `[2, 3]` as `2, 3`, for messages.
pub(crate) fn join(shape: &[usize]) -> String {
    shape
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks that the trailing axes of an input of shape `dims` are
/// `normalized_shape` (LayerNorm, RMSNorm).
pub(crate) fn check_trailing_shape(
    layer: &'static str,
    dims: &[usize],
    normalized_shape: &[usize],
) -> Result<(), NormError> {
    let k = normalized_shape.len();
    if dims.len() < k || dims[dims.len() - k..] != *normalized_shape {
        return Err(NormError::InvalidInput {
            layer,
            expected: format!("[..., {}]", join(normalized_shape)),
            got: dims.to_vec(),
        });
    }
    Ok(())
}

/// Checks a channels-first input `[N, C, ...]`: `channels` on axis 1 and a
/// rank in `ranks` (`max` of `None`: no upper bound).
pub(crate) fn check_channel_input(
    layer: &'static str,
    dims: &[usize],
    channels: usize,
    ranks: (usize, Option<usize>),
) -> Result<(), NormError> {
    let (min, max) = ranks;
    let rank_ok = dims.len() >= min && max.is_none_or(|m| dims.len() <= m);
    if rank_ok && dims.get(1) == Some(&channels) {
        return Ok(());
    }
    let ranks = match max {
        Some(max) => format!("of rank {min} to {max}"),
        None => format!("of rank {min} or more"),
    };
    Err(NormError::InvalidInput {
        layer,
        expected: format!("[N, {channels}, ...] {ranks}"),
        got: dims.to_vec(),
    })
}
